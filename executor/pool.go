package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shmexec/shmexec/internal/sysx"
	"github.com/shmexec/shmexec/ring"
	"github.com/shmexec/shmexec/shm"
)

// Config configures a pool. The zero value of each field picks the
// default named in its comment.
type Config struct {
	// Workers is the number of worker processes. 0: one per CPU.
	Workers int
	// WorkerArgv is the command that starts a worker. nil: this
	// executable, with no arguments.
	WorkerArgv []string
	// WorkerEnv is added to the workers' environment.
	WorkerEnv []string
	// Environ returns the environment a worker starts from, read at each
	// spawn (respawns included). nil: os.Environ(). A library loaded
	// into a C or Python program passes the C environment here: Go's
	// copy of it is taken once, when the runtime starts, and misses what
	// the program sets afterwards.
	Environ func() []string
	// QueueDepth is the number of job slots: jobs submitted and not yet
	// collected. Rounded up to a power of two. 0: 1024.
	QueueDepth int
	// MaxPayload bounds one job's input and output. 0: 64 MiB.
	MaxPayload int64
	// ArenaSize is the shared space for payloads that do not fit inline.
	// 0: 2 x MaxPayload, at least 16 MiB. The memory is only used as
	// touched.
	ArenaSize int64
	// InlineSize is how many bytes of input and of output travel inside
	// the job slot itself. 0: 256.
	InlineSize int
	// MaxTasksPerWorker makes a worker exit (and be replaced) after that
	// many jobs. 0: unlimited.
	MaxTasksPerWorker int
	// JobTimeout is the default time limit of a job; its worker is killed
	// past it. 0: none.
	JobTimeout time.Duration
	// Retries is the default number of re-runs of a job after its worker
	// crashed. 0: none.
	Retries int
	// StartTimeout bounds how long New waits for the workers to come up.
	// 0: 10 s.
	StartTimeout time.Duration
	// MaxClients is the number of clients (the owner's included) that can
	// be attached at once. 0: 8.
	MaxClients int
	// Stderr receives the workers' standard error. nil: os.Stderr.
	Stderr io.Writer

	// spawnEnv, for tests, adds environment entries to one spawn of a
	// worker (by index and how many times that index was spawned before).
	spawnEnv func(worker, spawned int) []string
}

const (
	// startFailureLimit is how many times in a row a worker may die
	// before becoming ready before the pool stops respawning it.
	startFailureLimit = 5
	tickInterval      = 2 * time.Millisecond
)

func (c *Config) setDefaults() error {
	if c.Workers == 0 {
		c.Workers = runtime.NumCPU()
	}
	if c.QueueDepth == 0 {
		c.QueueDepth = 1024
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = 64 << 20
	}
	if c.ArenaSize == 0 {
		c.ArenaSize = max(2*c.MaxPayload, 16<<20)
	}
	if c.InlineSize == 0 {
		c.InlineSize = 256
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 10 * time.Second
	}
	if c.MaxClients == 0 {
		c.MaxClients = 8
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	if _, ok := c.Stderr.(*os.File); !ok {
		// os/exec copies each worker's output from its own goroutine.
		c.Stderr = &lockedWriter{w: c.Stderr}
	}
	switch {
	case c.Workers < 1 || 1+c.Workers+2*c.MaxClients > ring.MaxParties:
		return fmt.Errorf("executor: %d workers and %d clients: at most %d processes in all", c.Workers, c.MaxClients, ring.MaxParties)
	case c.QueueDepth < 1 || c.QueueDepth > maxSlots:
		return fmt.Errorf("executor: QueueDepth %d out of [1, %d]", c.QueueDepth, maxSlots)
	case c.MaxPayload < 0 || c.ArenaSize < 0 || c.InlineSize < 0 || c.InlineSize > 1<<20:
		return errors.New("executor: negative MaxPayload, ArenaSize or InlineSize, or InlineSize over 1 MiB")
	case c.MaxTasksPerWorker < 0 || c.Retries < 0 || c.JobTimeout < 0:
		return errors.New("executor: negative MaxTasksPerWorker, Retries or JobTimeout")
	}
	if c.WorkerArgv == nil {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("executor: find this executable for the workers: %w", err)
		}
		c.WorkerArgv = []string{exe}
	}
	if len(c.WorkerArgv) == 0 || c.WorkerArgv[0] == "" {
		return errors.New("executor: empty WorkerArgv")
	}
	return nil
}

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

	mu          sync.Mutex // guards workers, clients, broken
	workers     []*workerProc
	clients     []*clientProc
	broken      error
	closing     bool
	terminating atomic.Bool
	backlog     []pendingEnq // monitor only: values the supervisor could not enqueue yet
	closeErr    error
	once        sync.Once
}

type workerProc struct {
	index     int
	gen       uint16
	cmd       *exec.Cmd
	alive     bool
	failures  int // consecutive start-up failures
	spawned   int // processes started for this index
	nextStart time.Time
	gaveUp    bool
	lastErr   string
}

type clientProc struct {
	index          int
	subGen, colGen uint16
	pid            int
	pidfd          *os.File
	state          int // clientActive, clientDead (reaping)
}

type spawnReq struct {
	cmd *exec.Cmd
	res chan error
}

type procEvent struct {
	worker int
	gen    uint16
	state  *os.ProcessState
	client int    // >= 0 for a client death
	detach bool   // the client detached by Close rather than died
	run    func() // client -2: run this on the monitor
}

// New creates a pool and starts its workers. It returns once every worker
// is ready, or an error that says why they could not start (a bad
// command, a worker that exits at once, a failing initializer).
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
	return newClient(l, c, sub, col, SubmitOptions{Timeout: p.cfg.JobTimeout, Retries: p.cfg.Retries}), nil
}

// Client returns the pool owner's client.
func (p *Pool) Client() *Client { return p.client }

// Submit is p.Client().Submit.
func (p *Pool) Submit(ctx context.Context, handler string, input []byte) (*Future, error) {
	return p.SubmitWith(ctx, handler, input, SubmitOptions{Retries: -1})
}

// SubmitWith is p.Client().SubmitWith, failing at once with ErrWorkerStart
// when no worker can start.
func (p *Pool) SubmitWith(ctx context.Context, handler string, input []byte, opts SubmitOptions) (*Future, error) {
	if err := p.brokenErr(); err != nil {
		return nil, err
	}
	return p.client.SubmitWith(ctx, handler, input, opts)
}

func (p *Pool) brokenErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.broken
}

// spawner starts worker processes from one locked OS thread, which lives
// as long as the pool: PR_SET_PDEATHSIG fires when the thread that
// forked a child exits, not when the process does.
func (p *Pool) spawner() {
	runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
	for req := range p.spawnc {
		req.res <- req.cmd.Start()
	}
}

func (p *Pool) spawn(w *workerProc) error {
	l := p.l
	party := l.g.workerParty(w.index)
	gen, err := l.parties.Activate(party)
	if err != nil {
		return err
	}
	argv := p.cfg.WorkerArgv
	cmd := exec.Command(argv[0], argv[1:]...)
	environ := os.Environ
	if p.cfg.Environ != nil {
		environ = p.cfg.Environ
	}
	cmd.Env = append(environ(), p.cfg.WorkerEnv...)
	cmd.Env = append(cmd.Env,
		envCookie+"="+cookieValue,
		envProtocol+"="+strconv.Itoa(ProtocolVersion),
		fmt.Sprintf("%s=%d:%d:%d", envWorker, w.index, party, gen),
		fmt.Sprintf("%s=%d", envFD, segmentFD),
		fmt.Sprintf("%s=%d", envSupervisor, os.Getpid()),
		fmt.Sprintf("%s=%d", envMaxTasks, p.cfg.MaxTasksPerWorker),
	)
	if p.cfg.spawnEnv != nil {
		cmd.Env = append(cmd.Env, p.cfg.spawnEnv(w.index, w.spawned)...)
	}
	w.spawned++
	cmd.ExtraFiles = []*os.File{p.seg.File()}
	cmd.Stdout = p.cfg.Stderr
	cmd.Stderr = p.cfg.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	rec := l.worker(w.index)
	rec.Uint64(wrCurrent).Store(0)
	rec.Uint32(wrGen).Store(uint32(gen))
	rec.Uint32(wrState).Store(workerStarting)
	res := make(chan error, 1)
	p.spawnc <- spawnReq{cmd: cmd, res: res}
	if err := <-res; err != nil {
		rec.Uint32(wrState).Store(workerFailed)
		l.parties.Free(party, gen)
		p.mu.Lock()
		w.alive = false
		p.mu.Unlock()
		return fmt.Errorf("start worker %v: %w", argv, err)
	}
	rec.Uint32(wrPID).Store(uint32(cmd.Process.Pid))
	l.parties.SetPID(party, gen, cmd.Process.Pid)
	p.mu.Lock()
	w.gen, w.cmd, w.alive = gen, cmd, true
	p.mu.Unlock()
	go func() {
		cmd.Wait() // os.Process waits on a pidfd on Linux: no pid-reuse race
		p.events <- procEvent{worker: w.index, gen: gen, state: cmd.ProcessState, client: -1}
	}()
	return nil
}

// waitReady waits until every worker has attached and run its
// initializer, or reports why not.
func (p *Pool) waitReady() error {
	deadline := time.Now().Add(p.cfg.StartTimeout)
	for {
		ready := 0
		for i := 0; i < p.cfg.Workers; i++ {
			if workerReady(p.l.worker(i).Uint32(wrState).Load()) {
				ready++
			}
		}
		if ready == p.cfg.Workers {
			return nil
		}
		if err := p.brokenErr(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %d of %d workers ready after %v", ErrWorkerStart, ready, p.cfg.Workers, p.cfg.StartTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// monitor is the supervisor's loop: it learns of deaths at once (from the
// pidfd-backed waits) and checks deadlines and cancel requests on a tick.
func (p *Pool) monitor() {
	defer close(p.stopped)
	tick := time.NewTicker(tickInterval)
	defer tick.Stop()
	for {
		select {
		case ev := <-p.events:
			switch {
			case ev.run != nil:
				ev.run()
			case ev.client >= 0:
				p.clientDied(ev.client, ev.gen, ev.detach)
			default:
				p.workerExited(ev)
			}
		case <-tick.C:
			p.tick()
		case <-p.quit:
			return
		}
	}
}

// workerExited recovers what a dead worker held and replaces it.
func (p *Pool) workerExited(ev procEvent) {
	p.mu.Lock()
	w := p.workers[ev.worker]
	if w.gen != ev.gen || !w.alive {
		p.mu.Unlock()
		return
	}
	w.alive = false
	closing := p.closing
	p.mu.Unlock()

	l := p.l
	party := l.g.workerParty(w.index)
	rec := l.worker(w.index)
	wasReady := workerReady(rec.Uint32(wrState).Load())
	rec.Uint32(wrState).Store(workerEmpty) // before its jobs' results go out
	pid, sig, code := ev.state.Pid(), syscall.Signal(0), ev.state.ExitCode()
	if ws, ok := ev.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		sig, code = ws.Signal(), -1
	}
	rec.Uint64(wrLastExit).Store(uint64(uint32(sig))<<32 | uint64(uint32(int32(code))))
	clean := code == exitOK && sig == 0
	if !clean {
		l.counter(ctrWorkerDeaths).Add(1)
	}
	p.recoverParty(party, w.gen, crashInfo{pid: pid, sig: sig, code: code})
	l.parties.Free(party, w.gen)
	rec.Uint64(wrCurrent).Store(0)

	if closing || l.poolState().Load() >= poolClosed {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if wasReady {
		w.failures = 0
		w.nextStart = time.Now()
	} else {
		w.failures++
		l.counter(ctrStartFailures).Add(1)
		w.lastErr = describeExit(pid, sig, code)
		if w.failures >= startFailureLimit {
			w.gaveUp = true
			rec.Uint32(wrState).Store(workerFailed)
			p.checkBroken()
			return
		}
		w.nextStart = time.Now().Add(time.Duration(10<<w.failures) * time.Millisecond)
	}
}

func workerReady(state uint32) bool {
	return state == workerIdle || state == workerBusy || state == workerExiting
}

func describeExit(pid int, sig syscall.Signal, code int) string {
	if sig != 0 {
		return fmt.Sprintf("worker pid %d was killed by %v during start-up", pid, sig)
	}
	switch code {
	case exitInitFailed:
		return fmt.Sprintf("worker pid %d: its initializer failed (exit status %d)", pid, code)
	case exitOK, exitNotWorker:
		return fmt.Sprintf("worker pid %d did not serve as a worker (exit status %d): does the worker program call ServeIfWorker or shmx_worker_main?", pid, code)
	}
	return fmt.Sprintf("worker pid %d exited with status %d during start-up", pid, code)
}

// checkBroken marks the pool broken when every worker has given up, and
// fails what is queued. p.mu is held.
func (p *Pool) checkBroken() {
	for _, w := range p.workers {
		if !w.gaveUp {
			return
		}
	}
	if p.broken != nil {
		return
	}
	p.broken = fmt.Errorf("%w: %s; gave up after %d tries", ErrWorkerStart, p.workers[0].lastErr, startFailureLimit)
	go p.runOnMonitor(func() { p.failQueued(codeWorkerStart, p.broken) })
}

// failQueued ends every queued job with code (the pool cannot run them).
func (p *Pool) failQueued(code uint16, err error) {
	l := p.l
	for idx := 0; idx < l.g.slots; idx++ {
		st := l.slotState(idx)
		cur := st.Load()
		if wState(cur) != slotQueued {
			continue
		}
		if st.CompareAndSwap(cur, stateWord(slotDone, p.sup.Owner(), wSeq(cur), 0)) {
			p.finishSlot(idx, wSeq(cur), code, err.Error(), crashInfo{})
		}
	}
}

type crashInfo struct {
	pid  int
	sig  syscall.Signal
	code int
}

// recoverParty repairs the rings and job slots a dead party left. Only
// the monitor goroutine calls it.
func (p *Pool) recoverParty(party int, gen uint16, ci crashInfo) {
	l := p.l
	orphans, err := ring.Recover(l.parties, party, gen, l.rings)
	if err != nil {
		fmt.Fprintf(p.cfg.Stderr, "shmexec: recover party %d: %v\n", party, err)
	}
	owner := uint32(party)<<16 | uint32(gen)
	// What the party's last ring operation says it had finished putting
	// into a ring: those values are there; slots that still carry the
	// party's name and are not among them are not.
	enqueued := map[uint64]bool{}
	for _, o := range orphans {
		if o.Kind == ring.Enqueued {
			enqueued[uint64(o.Ring)<<32|uint64(o.Value)] = true
			continue
		}
		if o.Kind == ring.NotEnqueued {
			continue // the slot scan below finds the slot by its name
		}
		// A value the party took out of a ring and had not yet made its
		// own: put it back if nobody else has it.
		switch {
		case o.Ring == ringInq:
			idx, seq := refIdx(o.Value), refSeq(o.Value)
			if idx < l.g.slots {
				cur := l.slotState(idx).Load()
				switch {
				case wSeq(cur) != seq:
				case wState(cur) == slotQueued:
					p.supEnqueue(l.inq, o.Value)
				case wState(cur) == slotDropped:
					// Its client died; the worker was to free it and did
					// not (found by docs/model/job.pml).
					if l.releaseSlot(idx, cur, true) {
						l.counter(ctrReclaimed).Add(1)
					}
				}
			}
		case o.Ring >= ringOutBase:
			// A result the dead client took out of its outqueue and had
			// not yet made its own: nobody will collect it.
			idx, seq := refIdx(o.Value), refSeq(o.Value)
			if idx < l.g.slots && p.freeSlot(idx, seq, slotDone) {
				l.counter(ctrReclaimed).Add(1)
			}
		}
	}
	for idx := 0; idx < l.g.slots; idx++ {
		st := l.slotState(idx)
		cur := st.Load()
		if wOwner(cur) != owner {
			continue
		}
		seq := wSeq(cur)
		switch wState(cur) {
		case slotRunning:
			p.crashedJob(idx, cur, ci)
		case slotFilling, slotCollecting:
			// A dead client's slot being filled or emptied.
			if p.freeSlot(idx, seq, wState(cur)) {
				l.counter(ctrReclaimed).Add(1)
			}
		case slotQueued:
			// Its submitter died around the inqueue enqueue.
			if enqueued[uint64(ringInq)<<32|uint64(slotRef(idx, seq))] {
				st.CompareAndSwap(cur, stateWord(slotQueued, 0, seq, 0))
			} else if l.releaseSlot(idx, cur, true) {
				l.counter(ctrReclaimed).Add(1)
			}
		case slotDone:
			// Finished but maybe not published: publish (again). The
			// client drops a duplicate by its sequence.
			if st.CompareAndSwap(cur, stateWord(slotDone, p.sup.Owner(), seq, wFlags(cur))) {
				l.counter(ctrRepublished).Add(1)
				p.publish(idx, seq)
			}
		}
	}
	l.recoverNames(owner)
	l.freeOwned(pageOwner(pageParty, owner))
}

// crashedJob decides the fate of a job whose worker died: timed out,
// cancelled, retried, or failed as crashed.
func (p *Pool) crashedJob(idx int, cur uint64, ci crashInfo) {
	l := p.l
	st := l.slotState(idx)
	seq, flags := wSeq(cur), wFlags(cur)
	sl := l.slot(idx)
	m := unpackMeta(sl.Uint64(slMeta).Load())
	m.attempts++
	l.counter(ctrRecovered).Add(1)
	l.freeOwned(pageOwner(pageOutput, slotRef(idx, seq)))
	sl.Uint64(slOutRef).Store(0)
	sl.Uint64(slOutLen).Store(0)
	retries := sl.Uint32(slRetries).Load()
	detail := ""
	switch {
	case p.terminating.Load():
		m.code = codePoolClosed
		detail = "the pool was terminated while the job ran"
	case flags&flagTimedOut != 0:
		m.code = codeTimeout
		detail = fmt.Sprintf("job ran past its %v timeout; worker pid %d was killed",
			time.Duration(sl.Uint64(slTimeout).Load()), ci.pid)
	case flags&flagCancelReq != 0:
		m.code = codeCancelled
		detail = fmt.Sprintf("cancelled while running; worker pid %d was killed", ci.pid)
	case uint32(m.attempts) <= retries && l.poolState().Load() == poolOpen:
		sl.Uint64(slMeta).Store(packMeta(m.client, m.handler, m.attempts, 0))
		if st.CompareAndSwap(cur, stateWord(slotQueued, 0, seq, 0)) {
			l.counter(ctrRetried).Add(1)
			p.supEnqueue(l.inq, slotRef(idx, seq))
		}
		return
	default:
		m.code = codeWorkerCrashed
	}
	sl.Uint64(slMeta).Store(packMeta(m.client, m.handler, m.attempts, m.code))
	if st.CompareAndSwap(cur, stateWord(slotDone, p.sup.Owner(), seq, 0)) {
		p.finishSlot(idx, seq, m.code, detail, ci)
	}
}

// finishSlot writes a supervisor-made result into a slot the supervisor
// holds as Done, and publishes it.
func (p *Pool) finishSlot(idx int, seq uint16, code uint16, detail string, ci crashInfo) {
	l := p.l
	sl := l.slot(idx)
	m := unpackMeta(sl.Uint64(slMeta).Load())
	m.code = code
	if code == codeWorkerCrashed && m.attempts == 0 {
		m.attempts = 1
	}
	sl.Uint32(slCrashPID).Store(uint32(ci.pid))
	sl.Uint32(slCrashSig).Store(uint32(ci.sig))
	sl.Uint32(slCrashEx).Store(uint32(int32(ci.code)))
	d := []byte(detail)
	if len(d) > l.g.inline {
		d = d[:l.g.inline]
	}
	b, _ := sl.Bytes(uint64(slotHeader+l.g.inline), uint64(len(d)))
	copy(b, d)
	sl.Uint64(slOutRef).Store(0)
	sl.Uint64(slOutLen).Store(uint64(len(d)))
	sl.Uint64(slMeta).Store(packMeta(m.client, m.handler, m.attempts, m.code))
	if code != codeOK {
		l.counter(ctrFailed + int(min(code, numCodes))).Add(1)
	}
	p.publish(idx, seq)
}

// publish puts a Done slot into its client's outqueue, or frees it if the
// client is gone.
func (p *Pool) publish(idx int, seq uint16) {
	l := p.l
	c := int(unpackMeta(l.slot(idx).Uint64(slMeta).Load()).client)
	if c >= l.g.clients || l.client(c).Uint32(crState).Load() != clientActive {
		p.freeSlot(idx, seq, wState(l.slotState(idx).Load()))
		return
	}
	p.supEnqueue(l.outq[c], slotRef(idx, seq))
}

// freeSlot frees slot idx if it is still in state from with sequence seq.
func (p *Pool) freeSlot(idx int, seq uint16, from uint8) bool {
	l := p.l
	cur := l.slotState(idx).Load()
	if wState(cur) != from || wSeq(cur) != seq {
		return false
	}
	return l.releaseSlot(idx, cur, true)
}

type pendingEnq struct {
	r *ring.Ring
	v uint32
}

// supEnqueue puts v into r for the supervisor without blocking the
// monitor: if r is full for the moment it keeps v and tries again on
// every tick. Monitor goroutine only.
func (p *Pool) supEnqueue(r *ring.Ring, v uint32) {
	if len(p.backlog) == 0 && r.TryEnqueue(p.sup, v) == nil {
		p.sup.Release()
		return
	}
	p.backlog = append(p.backlog, pendingEnq{r, v})
}

func (p *Pool) flushBacklog() {
	for len(p.backlog) > 0 {
		e := p.backlog[0]
		if e.r.TryEnqueue(p.sup, e.v) != nil {
			return
		}
		p.sup.Release()
		p.backlog = p.backlog[1:]
	}
}

// tick enforces deadlines and cancel requests, respawns workers whose
// back-off has passed, and reclaims what dead clients left.
func (p *Pool) tick() {
	l := p.l
	p.flushBacklog()
	now := sysx.Monotonic()
	for idx := 0; idx < l.g.slots; idx++ {
		st := l.slotState(idx)
		cur := st.Load()
		if wState(cur) != slotRunning {
			continue
		}
		flags := wFlags(cur)
		kill := false
		if flags&flagCancelReq != 0 {
			kill = true
		} else if dl := int64(l.slot(idx).Uint64(slDeadline).Load()); dl > 0 && now > dl && flags&flagTimedOut == 0 {
			if st.CompareAndSwap(cur, cur|uint64(flagTimedOut)<<56) {
				kill = true
			}
		}
		if kill {
			p.killOwner(wOwner(cur))
		}
	}
	p.mu.Lock()
	closing := p.closing
	var due []*workerProc
	for _, w := range p.workers {
		if !w.alive && !w.gaveUp && !closing && time.Now().After(w.nextStart) {
			w.alive = true // reserved for this spawn
			due = append(due, w)
		}
	}
	p.mu.Unlock()
	for _, w := range due {
		if l.poolState().Load() != poolOpen && l.poolState().Load() != poolClosing {
			break
		}
		if err := p.spawn(w); err != nil {
			p.mu.Lock()
			w.failures++
			w.lastErr = err.Error()
			if w.failures >= startFailureLimit {
				w.gaveUp = true
				p.checkBroken()
			} else {
				w.nextStart = time.Now().Add(time.Duration(10<<w.failures) * time.Millisecond)
			}
			p.mu.Unlock()
			continue
		}
		l.counter(ctrRespawned).Add(1)
		l.worker(w.index).Uint32(wrRestarts).Add(1)
	}
	p.reapClients()
}

// killWorker SIGKILLs worker i if it is up (past start-up); for tests,
// which must only kill processes they started, through the pool's own
// handle.
func (p *Pool) killWorker(i int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.workers[i]
	if w.alive && w.cmd != nil && workerReady(p.l.worker(i).Uint32(wrState).Load()) {
		return w.cmd.Process.Signal(syscall.SIGKILL) == nil
	}
	return false
}

// killOwner SIGKILLs the worker whose party owner word is owner.
func (p *Pool) killOwner(owner uint32) {
	party, gen := int(owner>>16), uint16(owner)
	i := party - 1
	p.mu.Lock()
	defer p.mu.Unlock()
	if i < 0 || i >= len(p.workers) {
		return
	}
	w := p.workers[i]
	if w.alive && w.cmd != nil && w.gen == gen {
		w.cmd.Process.Signal(syscall.SIGKILL) // os.Process signals through its pidfd
	}
}

// Stats is a snapshot of the pool's counters.
type Stats struct {
	State         string `json:"state"` // open, closing, closed or dead
	SupervisorPID int    `json:"supervisor_pid"`

	Submitted  uint64            `json:"submitted"`
	Collected  uint64            `json:"collected"`
	Unobserved uint64            `json:"unobserved"` // failures whose error nobody read
	Failed     map[string]uint64 `json:"failed"`     // by kind
	Recovered  uint64            `json:"recovered"`
	Retried    uint64            `json:"retried"`
	Respawned  uint64            `json:"respawned"`

	WorkerDeaths  uint64 `json:"worker_deaths"`
	StartFailures uint64 `json:"start_failures"`
	Republished   uint64 `json:"republished"`
	ClientDeaths  uint64 `json:"client_deaths"`
	Detached      uint64 `json:"clients_detached"` // clients that left by Close
	Reclaimed     uint64 `json:"reclaimed"`

	Queued     int `json:"queued"` // inqueue length
	SlotsInUse int `json:"slots_in_use"`
	Slots      int `json:"slots"`
	PagesInUse int `json:"pages_in_use"`
	Pages      int `json:"pages"`

	Workers []WorkerStats `json:"workers"`
	Clients []ClientStats `json:"clients"` // client slots in use (0 is the pool owner's)
}

// WorkerStats is one worker's state.
type WorkerStats struct {
	PID      int    `json:"pid"`
	State    string `json:"state"`
	Current  int64  `json:"current_slot"` // slot of the current job, -1 if none
	Job      uint64 `json:"current_job"`  // its job id, 0 if none
	Done     uint64 `json:"done"`
	Restarts uint32 `json:"restarts"`
}

// ClientStats is one attached client's state.
type ClientStats struct {
	Index     int    `json:"index"`
	PID       int    `json:"pid"`
	State     string `json:"state"` // active, or dead while being reclaimed
	Submitted uint64 `json:"submitted"`
	Collected uint64 `json:"collected"`
	Outqueue  int    `json:"outqueue"` // results waiting in its outqueue
	Slots     int    `json:"slots"`    // job slots that are its
}

func poolStateName(st uint32) string {
	switch st {
	case poolOpen:
		return "open"
	case poolClosing:
		return "closing"
	case poolClosed:
		return "closed"
	case poolDead:
		return "dead"
	}
	return fmt.Sprintf("state-%d", st)
}

var workerStateNames = []string{"empty", "starting", "idle", "busy", "exiting", "failed"}

var codeNames = []string{"ok", "handler_error", "worker_crashed", "timeout", "cancelled", "pool_closed", "unknown_handler", "too_large", "worker_start"}

// Stats reads the counters from the segment. After Close it returns the
// zero Stats.
func (p *Pool) Stats() Stats {
	if !p.l.enter() {
		return Stats{}
	}
	defer p.l.exit()
	return p.l.stats()
}

func (l *layout) stats() Stats {
	s := Stats{Failed: map[string]uint64{}}
	s.State = poolStateName(l.poolState().Load())
	s.SupervisorPID = int(l.control.Uint32(ctlSupPID).Load())
	for c := 0; c < l.g.clients; c++ {
		s.Submitted += l.client(c).Uint64(crSubmitted).Load()
		s.Collected += l.client(c).Uint64(crCollected).Load()
		s.Unobserved += l.client(c).Uint64(crUnobserved).Load()
	}
	for code := 1; code <= numCodes; code++ {
		if n := l.counter(ctrFailed + code).Load(); n > 0 {
			s.Failed[codeNames[code]] = n
		}
	}
	s.Recovered = l.counter(ctrRecovered).Load()
	s.Retried = l.counter(ctrRetried).Load()
	s.Respawned = l.counter(ctrRespawned).Load()
	s.WorkerDeaths = l.counter(ctrWorkerDeaths).Load()
	s.StartFailures = l.counter(ctrStartFailures).Load()
	s.Republished = l.counter(ctrRepublished).Load()
	s.ClientDeaths = l.counter(ctrClientDeaths).Load()
	s.Detached = l.counter(ctrDetached).Load()
	s.Reclaimed = l.counter(ctrReclaimed).Load()
	s.Queued = l.inq.Len()
	perClient := make([]int, l.g.clients)
	for idx := 0; idx < l.g.slots; idx++ {
		if wState(l.slotState(idx).Load()) != slotFree {
			s.SlotsInUse++
			if c := int(unpackMeta(l.slot(idx).Uint64(slMeta).Load()).client); c < l.g.clients {
				perClient[c]++
			}
		}
	}
	s.Slots = l.g.slots
	s.PagesInUse = l.pagesInUse()
	s.Pages = l.g.pages
	for c := 0; c < l.g.clients; c++ {
		r := l.client(c)
		st := r.Uint32(crState).Load()
		if st == clientFree && c != 0 {
			continue
		}
		name := "active"
		if st == clientDead {
			name = "dead"
		}
		s.Clients = append(s.Clients, ClientStats{
			Index: c, PID: int(r.Uint32(crPID).Load()), State: name,
			Submitted: r.Uint64(crSubmitted).Load(), Collected: r.Uint64(crCollected).Load(),
			Outqueue: l.outq[c].Len(), Slots: perClient[c],
		})
	}
	for i := 0; i < l.g.workers; i++ {
		r := l.worker(i)
		st := int(r.Uint32(wrState).Load())
		name := "?"
		if st < len(workerStateNames) {
			name = workerStateNames[st]
		}
		cur, job := int64(-1), uint64(0)
		if c := r.Uint64(wrCurrent).Load(); c&(1<<32) != 0 && refIdx(uint32(c)) < l.g.slots {
			cur = int64(refIdx(uint32(c)))
			job = l.slot(int(cur)).Uint64(slJobID).Load()
		}
		s.Workers = append(s.Workers, WorkerStats{
			PID: int(r.Uint32(wrPID).Load()), State: name, Current: cur, Job: job,
			Done: r.Uint64(wrDone).Load(), Restarts: r.Uint32(wrRestarts).Load(),
		})
	}
	return s
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
