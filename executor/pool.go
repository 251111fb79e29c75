package executor

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/shmexec/shmexec/ring"
	"github.com/shmexec/shmexec/shm"
)

// Pool is a running pool: the supervisor of its workers and the owner of
// its segment.
type Pool struct {
	cfg    Config
	seg    *shm.Segment
	l      *layout
	sup    *ring.Party
	client *Client

	spawnc  chan spawnReq
	events  chan procEvent
	quit    chan struct{}
	stopped chan struct{}
	// exited gets a value when a worker's alive flag turns false
	// (exitedLocked), for waitWorkers; it holds at most one, which only
	// says to look again.
	exited chan struct{}
	// watchers counts the goroutines that watch attached clients'
	// processes (watchClient); shutdown waits for them.
	watchers sync.WaitGroup

	// mu guards the workers and clients lists, every field of their
	// workerProc and clientProc records. The pool's
	// shutdown state is not here: it is the segment's state word
	// (layout.poolState), which clients read too.
	mu      sync.Mutex
	workers []*workerProc
	clients []*clientProc
	// lastStartErr is why the latest start of a worker failed.
	lastStartErr string
	backlog      []pendingEnq  // monitor only: values the supervisor could not enqueue yet
	ticks        atomic.Uint64 // how many times the monitor has ticked (tests read it)

	closeErr error
	once     sync.Once
	// kill is closed by Terminate: a Close that waits for jobs stops
	// waiting and kills them (waitIdle).
	kill     chan struct{}
	killOnce sync.Once
}

// New creates a pool and starts its workers. It returns once every worker
// is ready (Config.ReadyWorkers of them, when set), or an error that says
// why they could not start (a bad command, a worker that exits at once, a
// failing initializer).
func New(cfg Config) (*Pool, error) {
	if IsWorker() {
		return nil, fmt.Errorf("%w (call ServeIfWorker, or check shmx_is_worker, before creating pools)", ErrNestedPool)
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	slots := 2
	for slots < cfg.QueueDepth {
		slots *= 2
	}
	inline := (cfg.InlineSize + 7) &^ 7
	g := geometry{
		workers:    cfg.Workers,
		clients:    cfg.MaxClients,
		slots:      slots,
		inline:     inline,
		pages:      max(int((cfg.ArenaSize+pageSize-1)/pageSize), 1),
		maxPayload: uint64(cfg.MaxPayload),
	}
	seg, err := shm.Create("shmexec-pool", g.specs())
	if err != nil {
		return nil, err
	}
	p := &Pool{
		cfg: cfg, seg: seg,
		spawnc:  make(chan spawnReq),
		events:  make(chan procEvent, 64),
		quit:    make(chan struct{}),
		stopped: make(chan struct{}),
		kill:    make(chan struct{}),
		exited:  make(chan struct{}, 1),
	}
	ok := false
	defer func() {
		if !ok {
			p.Terminate()
		}
	}()
	if p.l, err = openLayout(seg, true, g); err != nil {
		seg.Close()
		return nil, err
	}
	l := p.l
	l.control.Uint32(ctlSupPID).Store(uint32(os.Getpid()))
	l.control.Uint64(ctlDefTimeout).Store(uint64(cfg.JobTimeout))
	l.control.Uint32(ctlDefRetries).Store(uint32(cfg.Retries))
	gen, _ := l.parties.Activate(0)
	if p.sup, err = l.parties.Join(0, gen); err != nil {
		return nil, err
	}
	l.poolState().Store(poolOpen)
	if p.client, err = p.newClientParties(0, os.Getpid()); err != nil {
		return nil, err
	}
	go p.spawner()
	p.mu.Lock()
	for i := 0; i < cfg.Workers; i++ {
		// alive: reserved for the spawn below, so the monitor's tick
		// does not start it too.
		p.workers = append(p.workers, &workerProc{index: i, alive: true})
	}
	p.mu.Unlock()
	go p.monitor()
	for _, w := range p.workers {
		if err := p.spawn(w); err != nil {
			p.mu.Lock()
			for _, w := range p.workers {
				if w.cmd == nil {
					p.exitedLocked(w) // reserved, never started: nothing to wait for
				}
			}
			p.mu.Unlock()
			return nil, fmt.Errorf("%w: %v", ErrWorkerStart, err)
		}
	}
	if err := p.waitReady(); err != nil {
		return nil, err
	}
	ok = true
	return p, nil
}

// newClientParties activates client slot c's parties and returns its
// in-process Client (for c == 0) or nil.
func (p *Pool) newClientParties(c, pid int) (*Client, error) {
	l := p.l
	subGen, err := l.parties.Activate(l.g.clientSubParty(c))
	if err != nil {
		return nil, err
	}
	colGen, err := l.parties.Activate(l.g.clientColParty(c))
	if err != nil {
		return nil, err
	}
	rec := l.client(c)
	rec.Uint32(crPID).Store(uint32(pid))
	rec.Uint32(crGen).Store(uint32(subGen)<<16 | uint32(colGen))
	rec.Uint32(crState).Store(clientActive)
	if c != 0 {
		p.clients = append(p.clients, &clientProc{index: c, subGen: subGen, colGen: colGen, pid: pid, state: clientActive})
		return nil, nil
	}
	sub, err := l.parties.Join(l.g.clientSubParty(c), subGen)
	if err != nil {
		return nil, err
	}
	col, err := l.parties.Join(l.g.clientColParty(c), colGen)
	if err != nil {
		return nil, err
	}
	return newClient(l, c, sub, col, SubmitOptions{Timeout: p.cfg.JobTimeout, Retries: p.cfg.Retries}, nil), nil
}

// Client returns the pool owner's client.
func (p *Pool) Client() *Client { return p.client }

// Submit is p.Client().Submit.
func (p *Pool) Submit(ctx context.Context, handler string, input []byte) (*Future, error) {
	return p.SubmitWith(ctx, handler, input, SubmitOptions{Retries: -1})
}

// SubmitWith is p.Client().SubmitWith: it fails at once with
// ErrWorkerStart while no worker can start.
func (p *Pool) SubmitWith(ctx context.Context, handler string, input []byte, opts SubmitOptions) (*Future, error) {
	return p.client.SubmitWith(ctx, handler, input, opts)
}
