package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/shmexec/shmexec/internal/crashpoint"
	"github.com/shmexec/shmexec/internal/memx"
	"github.com/shmexec/shmexec/internal/sysx"
	"github.com/shmexec/shmexec/ring"
	"github.com/shmexec/shmexec/shm"
)

// Handler runs one job in a worker process. in is a view of the job's
// input in shared memory: read it, do not modify it or keep it after
// returning. The returned bytes become the job's output (copied into the
// segment, unless they were allocated with OutputBuffer). A returned error
// or a panic ends the job with a HandlerError; the worker lives on.
type Handler func(ctx context.Context, in []byte) ([]byte, error)

var registry = struct {
	sync.Mutex
	handlers map[string]Handler
	init     func() error
}{handlers: map[string]Handler{}}

// Handle registers h under name for this process's workers. Call it
// before ServeIfWorker, typically from init or the top of main. It panics
// on an empty or too long name and on a second registration of a name.
func Handle(name string, h Handler) {
	if name == "" || len(name) > maxNameLen || h == nil {
		panic(fmt.Sprintf("executor: Handle(%q): name must be 1 to %d bytes and h non-nil", name, maxNameLen))
	}
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.handlers[name]; dup {
		panic(fmt.Sprintf("executor: handler %q registered twice", name))
	}
	registry.handlers[name] = h
}

// SetInitializer sets a function each worker process runs once before its
// first job: the place to open connections in the child rather than
// inherit them. If it returns an error the worker exits and the pool
// reports a start-up failure.
func SetInitializer(f func() error) {
	registry.Lock()
	registry.init = f
	registry.Unlock()
}

// IsWorker reports whether this process was started as a pool worker: its
// environment holds the handshake, or it has attached as a worker (which
// takes the handshake out of its environment).
func IsWorker() bool { return attached.Load() || os.Getenv(envCookie) == cookieValue }

// attached is set once this process has attached as the worker it was
// started as (attachWorker).
var attached atomic.Bool

// handshakeEnv is what a worker's environment holds for its attach and
// nothing after it: attachWorker takes it out, so that a program a task
// runs (a shell, a script that makes a pool of its own, a Go program that
// calls ServeIfWorker) does not take itself for this pool's worker.
// envPassFDs stays: it names the descriptors of Config.PassFiles, which
// are the program's own.
var handshakeEnv = []string{envCookie, envProtocol, envWorker, envFD, envSupervisor, envMaxTasks, envStderrFD}

// ServeIfWorker turns this process into a worker and exits when it was
// started as one (the handshake is in its environment); otherwise it
// returns at once. Call it at the top of main, after registering handlers.
func ServeIfWorker() {
	if !IsWorker() {
		return
	}
	dieBySignals()
	registry.Lock()
	cfg := WorkerConfig{Handlers: registry.handlers, Init: registry.init}
	registry.Unlock()
	os.Exit(RunWorker(cfg))
}

// WorkerConfig is what a worker process serves.
type WorkerConfig struct {
	Handlers map[string]Handler
	Init     func() error
}

// RunWorker serves jobs until the pool closes or the worker's task limit
// is reached, and returns the exit status the process should use. Run by
// hand (no handshake), it says so and returns 2.
func RunWorker(cfg WorkerConfig) int {
	if !IsWorker() {
		fmt.Fprintln(os.Stderr, "This program is a shmexec pool worker: a pool starts it with the handshake it needs. There is nothing to do when it is run by hand.")
		return exitNotWorker
	}
	w, err := attachWorker(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "shmexec worker: %v\n", err)
		return exitAttachError
	}
	return w.serve()
}

// Worker is the pull-style side of a worker process, for bindings that
// run their own loop (the C ABI's shmx_worker_next, Python's worker):
// OpenWorker, any set-up, Ready, then Next and Task.Finish until Next
// returns ErrWorkerExit. Use it from one goroutine.
type Worker struct{ w *worker }

// ErrWorkerExit is returned by Worker.Next when the worker should exit
// with status 0: the pool is closing or the task limit is reached.
var ErrWorkerExit = errors.New("shmexec: worker should exit")

// OpenWorker attaches this process as the worker the pool started it as.
// It fails in a process that was not started as a worker.
func OpenWorker() (*Worker, error) {
	if !IsWorker() {
		return nil, errors.New("shmexec: not started as a pool worker")
	}
	w, err := attachWorker(WorkerConfig{})
	if err != nil {
		return nil, err
	}
	return &Worker{w: w}, nil
}

// Ready tells the pool that start-up (an initializer) is over. A worker
// that dies before Ready counts as failing to start.
func (W *Worker) Ready() { W.w.ready() }

// Slot is the worker's slot in the pool, 0 to Config.Workers - 1: a
// worker that replaces a dead one, or one that reached its task limit,
// takes its slot.
func (W *Worker) Slot() int { return W.w.index }

// Next waits for a job for at most timeout (< 0: no limit) and leases it.
// It returns ErrTimeout (os.ErrDeadlineExceeded) when none came, and
// ErrWorkerExit when the worker should exit. Handler names are the task's
// to interpret; batch tasks of Client.Map (handler "\x00batch") need a
// worker with a handler table (RunWorker).
func (W *Worker) Next(timeout time.Duration) (*Task, error) { return W.w.next(timeout) }

// InputFile returns the pool segment's file and where t's input starts in
// it, for a worker that maps the input again: a private copy-on-write
// mapping gives a handler a copy of it that it may change, and that stays
// valid after Finish, without copying what is not changed. ok is false
// for an empty input. The file stays the worker's; do not close it.
func (W *Worker) InputFile(t *Task) (f *os.File, off int64, ok bool) {
	off, ok = W.w.l.seg.FileOffset(t.Input)
	return W.w.l.seg.File(), off, ok
}

type worker struct {
	cfg      WorkerConfig
	l        *layout
	party    *ring.Party
	index    int
	rec      shm.View
	maxTasks int
	tasks    int
	stderrFD int // the pool's standard error until ready (envStderrFD), or -1

	// After a job whose wait yielded the CPU to another thread, or
	// slept only a turn (ring.Party.TookTurns), the next call of next
	// looks whether the worker shares its client's CPU (separate); lookAt
	// is that client, -1 for none. A move comes moveGap after the last
	// (lastMove) at the earliest.
	lookAt            int
	lastMove, moveGap int64 // sysx.Monotonic, nanoseconds
}

// Bounds of the gap between two moves of a worker (separate): the gap
// doubles while moves come back within sharingAgain of each other, as
// where every CPU is busy and a move finds company again at once.
const (
	minMoveGap   = int64(time.Millisecond)
	maxMoveGap   = int64(100 * time.Millisecond)
	sharingAgain = int64(10 * time.Millisecond)
)

// separate moves the worker's thread to another CPU if it runs on the
// CPU where a spin of the client last yielded or ran out (crCPU). There a
// caller that spins for its result and a worker that spins for its next
// job take turns, each yielding to the other on every round trip, or,
// where the yield does not hand the CPU over, each spinning in vain and
// then sleeping until the other wakes it, while another CPU idles; the
// kernel leaves two threads that both ran within the last half
// millisecond where they are, and a wake-up of a sleeping worker by its
// caller often puts it on the caller's CPU (docs/BENCHMARKS.md,
// "Spinners taking turns on one CPU, once more", and "Taking turns by
// sleeping").
func (w *worker) separate(client int) {
	if client >= w.l.g.clients {
		return
	}
	cpu := w.l.client(client).Uint32(crCPU).Load()
	if cpu == 0 || int(cpu-1) != sysx.CPU() {
		return
	}
	now := sysx.Monotonic()
	if w.lastMove != 0 && now < w.lastMove+w.moveGap {
		return
	}
	if w.lastMove != 0 && now-w.lastMove < sharingAgain {
		w.moveGap = min(max(2*w.moveGap, minMoveGap), maxMoveGap)
	} else {
		w.moveGap = minMoveGap
	}
	w.lastMove = now
	if sysx.MoveOff() {
		w.rec.Uint64(wrMoved).Add(1)
	}
}

func parseHandshake() (index, party, gen, fd, sup, maxTasks int, err error) {
	if v := os.Getenv(envProtocol); v != strconv.Itoa(ProtocolVersion) {
		return 0, 0, 0, 0, 0, 0, fmt.Errorf("protocol version %q, this worker speaks %d", v, ProtocolVersion)
	}
	if _, err = fmt.Sscanf(os.Getenv(envWorker), "%d:%d:%d", &index, &party, &gen); err != nil {
		return 0, 0, 0, 0, 0, 0, fmt.Errorf("bad %s=%q", envWorker, os.Getenv(envWorker))
	}
	if fd, err = strconv.Atoi(os.Getenv(envFD)); err != nil {
		return 0, 0, 0, 0, 0, 0, fmt.Errorf("bad %s", envFD)
	}
	if sup, err = strconv.Atoi(os.Getenv(envSupervisor)); err != nil {
		return 0, 0, 0, 0, 0, 0, fmt.Errorf("bad %s", envSupervisor)
	}
	maxTasks, _ = strconv.Atoi(os.Getenv(envMaxTasks))
	return
}

func attachWorker(cfg WorkerConfig) (*worker, error) {
	if attached.Load() {
		return nil, errors.New("this process has attached as a worker already")
	}
	index, party, gen, fd, sup, maxTasks, err := parseHandshake()
	if err != nil {
		return nil, err
	}
	// Before anything else: close what this process inherited by
	// accident (descriptors the pool owner had made inheritable). The
	// runtime's and the program's own descriptors are close-on-exec, so
	// any other one was inherited.
	keep := []int{fd}
	for _, s := range strings.Split(os.Getenv(envPassFDs), ",") {
		if n, err := strconv.Atoi(s); err == nil {
			keep = append(keep, n)
		}
	}
	stderrFD := -1
	if n, err := strconv.Atoi(os.Getenv(envStderrFD)); err == nil && n > 2 {
		stderrFD = n
		keep = append(keep, n)
	}
	if err := sysx.CloseInherited(keep); err != nil {
		return nil, fmt.Errorf("close inherited descriptors: %w", err)
	}
	// The handshake was read: out of the environment, and the segment and
	// the pool's standard error out of what programs this worker runs
	// inherit (dup3 onto 2 at ready makes a new, inheritable, 2).
	attached.Store(true)
	for _, k := range handshakeEnv {
		os.Unsetenv(k) // in a C or Python host, its C environment too (the runtime's cgo unsetenv)
	}
	syscall.CloseOnExec(fd)
	if stderrFD > 2 {
		syscall.CloseOnExec(stderrFD)
	}
	// Exit with the supervisor. The parent set PR_SET_PDEATHSIG before
	// exec; if it died before that, our parent is already someone else.
	if sysx.Getppid() != sup {
		os.Exit(exitOrphaned)
	}
	go watchSupervisor(sup)
	f := os.NewFile(uintptr(fd), "shmexec-segment")
	seg, err := shm.Attach(f)
	if err != nil {
		return nil, err
	}
	l, err := openLayout(seg, false, geometry{})
	if err != nil {
		return nil, err
	}
	if index < 0 || index >= l.g.workers || party != l.g.workerParty(index) {
		return nil, fmt.Errorf("worker index %d / party %d do not fit the pool", index, party)
	}
	p, err := l.parties.Join(party, uint16(gen))
	if err != nil {
		return nil, err
	}
	w := &worker{cfg: cfg, l: l, party: p, index: index, rec: l.worker(index), maxTasks: maxTasks, stderrFD: stderrFD, lookAt: -1}
	return w, nil
}

// watchSupervisor exits the process when the supervisor dies.
func watchSupervisor(pid int) {
	pfd, err := sysx.PidfdOpen(pid)
	if err != nil {
		os.Exit(exitOrphaned)
	}
	for {
		exited, err := sysx.PidfdWaitExit(pfd, -1)
		if exited || (err != nil && !errors.Is(err, sysx.ErrInterrupted)) {
			os.Exit(exitOrphaned)
		}
	}
}

func (w *worker) serve() int {
	if w.cfg.Init != nil {
		if err := runInit(w.cfg.Init); err != nil {
			fmt.Fprintf(os.Stderr, "shmexec worker %d: initializer failed: %v\n", w.index, err)
			return exitInitFailed
		}
	}
	w.ready()
	for {
		t, err := w.next(-1)
		switch {
		case errors.Is(err, errStop):
			return exitOK
		case err != nil:
			fmt.Fprintf(os.Stderr, "shmexec worker %d: %v\n", w.index, err)
			return exitAttachError
		}
		out, err := w.run(t)
		t.Finish(out, err)
	}
}

// ready tells the supervisor that start-up is over.
func (w *worker) ready() {
	if w.stderrFD > 2 {
		// From now on write to the pool's standard error directly, not
		// through the supervisor's start-up pipe (see envStderrFD). This
		// closes the worker's end of the pipe; what it wrote there goes
		// out first.
		if err := sysx.MoveFD(w.stderrFD, 2); err != nil {
			fmt.Fprintf(os.Stderr, "shmexec worker %d: %v\n", w.index, err)
		} else {
			w.awaitStartLog()
		}
		w.stderrFD = -1
	}
	w.rec.Uint32(wrState).Store(workerIdle) // pairs with the supervisor's start-up check
	w.l.startEvent().signal()               // for New (Pool.waitReady)
}

// startLogWait bounds a ready worker's wait for its start-up output to be
// forwarded: a process it started may hold the pipe open, and then the
// supervisor never sees its end.
const startLogWait = 100 * time.Millisecond

// awaitStartLog waits, for at most startLogWait, until the supervisor has
// forwarded all the worker wrote to its start-up pipe, which the worker's
// side has just closed (startLog).
func (w *worker) awaitStartLog() {
	word := w.rec.Uint32(wrStartLog)
	for deadline := time.Now().Add(startLogWait); ; {
		cur := word.Load()
		if cur == uint32(w.party.Generation()) {
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		sysx.FutexWait(word, cur, left) // woken by the supervisor's store, or any change: look again
	}
}

// errStop tells a worker to exit: the pool is closing or the worker's
// task limit is reached.
var errStop = ErrWorkerExit

// next waits for a job (for at most timeout; < 0: until one comes or the
// worker must stop) and leases it.
func (w *worker) next(timeout time.Duration) (*Task, error) {
	if w.maxTasks > 0 && w.tasks >= w.maxTasks {
		w.rec.Uint32(wrState).Store(workerExiting)
		return nil, errStop
	}
	if w.lookAt >= 0 { // after the last job's result, off its round trip
		w.separate(w.lookAt)
		w.lookAt = -1
	}
	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		slice := time.Second
		if timeout >= 0 {
			slice = min(slice, time.Until(deadline))
			if slice <= 0 {
				return nil, ErrTimeout
			}
		}
		v, err := w.l.inq.Dequeue(w.party, slice)
		if errors.Is(err, ring.ErrTimeout) {
			if w.l.poolState().Load() >= poolClosed {
				return nil, errStop
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if v == exitValue {
			w.party.Release()
			return nil, errStop
		}
		if t := w.lease(v); t != nil {
			if w.party.TookTurns() {
				w.lookAt = int(t.m.client)
			}
			return t, nil
		}
	}
}

// run runs a leased task with this worker's handlers.
func (w *worker) run(t *Task) ([]byte, error) {
	h, ok := w.cfg.Handlers[t.Handler]
	if t.Handler == batchHandler {
		h, ok = w.runBatch, true
	}
	if !ok {
		return nil, fmt.Errorf("%w: no handler %q in worker pid %d", ErrUnknownHandler, t.Handler, os.Getpid())
	}
	if t.inErr != nil {
		return nil, t.inErr
	}
	return callHandler(t.ctx, h, t.Input)
}

func runInit(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}

// exitValue in the inqueue tells one worker to exit (Close sends one per
// worker). It is not a valid slot reference: slot indices are below
// maxSlots with sequence 0xffff only for the last slot, which a pool of
// maxSlots slots never has.
const exitValue = 0xffffffff

// Task is a job leased to this worker process: its slot is Running under
// the worker's name until Finish.
type Task struct {
	// Handler is the name the job was submitted for ("" if its id names
	// no interned handler).
	Handler string
	// Input is a view of the job's input in shared memory: read it, do not
	// change it or keep it after Finish.
	Input []byte

	w      *worker
	idx    int
	seq    uint16
	owner  uint32
	m      meta
	sl     shm.View
	ctx    context.Context
	cancel context.CancelFunc
	inErr  error
	done   bool
	// The job's context, which holds the books of its output buffer, in
	// the task's own allocation: a lease allocates once.
	jobCtx taskCtx
}

// lease takes the slot v names for this worker, or returns nil for a
// stale or dropped entry.
func (w *worker) lease(v uint32) *Task {
	l := w.l
	idx, seq := refIdx(v), refSeq(v)
	if idx >= l.g.slots {
		fmt.Fprintf(os.Stderr, "shmexec worker %d: inqueue value %#x names no slot; skipped\n", w.index, v)
		w.party.Release()
		return nil
	}
	st := l.slotState(idx)
	cur := st.Load()
	if wSeq(cur) != seq {
		w.party.Release() // stale: the slot was reused; its job was handled elsewhere
		return nil
	}
	switch wState(cur) {
	case slotQueued:
	case slotDropped:
		// Its client died while it was queued: free it.
		l.releaseSlot(idx, cur, true)
		return nil
	default:
		w.party.Release()
		return nil
	}
	owner := w.party.Owner()
	for !st.CompareAndSwap(cur, stateWord(slotRunning, owner, seq, wFlags(cur))) {
		// The submitter clears its name from the state word right after
		// its enqueue, and a client may cancel: look again.
		cur = st.Load()
		if wState(cur) != slotQueued || wSeq(cur) != seq {
			w.party.Release()
			return nil
		}
	}
	crashpoint.Hit("job.lease")
	w.rec.Uint64(wrCurrent).Store(uint64(v) | 1<<32)
	w.rec.Uint32(wrState).Store(workerBusy)
	w.party.Release() // custody is now the lease

	sl := l.slot(idx)
	t := &Task{w: w, idx: idx, seq: seq, owner: owner, sl: sl, m: unpackMeta(sl.Uint64(slMeta).Load())}
	t.jobCtx = taskCtx{Context: context.Background(), jc: jobCtx{w: w, idx: idx, seq: seq, first: -1}}
	t.ctx = &t.jobCtx
	if to := int64(sl.Uint64(slTimeout).Load()); to > 0 {
		sl.Uint64(slDeadline).Store(uint64(sysx.Monotonic() + to))
		t.ctx, t.cancel = context.WithTimeout(t.ctx, time.Duration(to))
	}
	t.Handler, _ = l.nameAt(t.m.handler)
	if in, err := l.payload(idx, sl.Uint64(slInRef).Load(), sl.Uint64(slInLen).Load(), false); err != nil {
		t.inErr = &HandlerError{Type: "CorruptInput", Message: err.Error()}
	} else {
		t.Input = in
	}
	return t
}

// Context returns the task's context: it carries the job's deadline and
// is what OutputBuffer needs.
func (t *Task) Context() context.Context { return t.ctx }

// Finish ends the task with out, or with err: a *HandlerError, an error
// matching ErrUnknownHandler or ErrTooLarge, or any other error (a
// HandlerError with its type name). It publishes the result to the job's
// client. A second call does nothing.
func (t *Task) Finish(out []byte, err error) {
	if t.done {
		return
	}
	t.done = true
	if t.cancel != nil {
		defer t.cancel()
	}
	w, l := t.w, t.w.l
	code, detail := uint16(codeOK), ""
	var he *HandlerError
	switch {
	case err == nil:
	case errors.Is(err, ErrUnknownHandler):
		code, detail = codeUnknownHandler, strings.TrimPrefix(err.Error(), ErrUnknownHandler.Error()+": ")
	case errors.Is(err, ErrTooLarge):
		code, detail = codeTooLarge, strings.TrimPrefix(err.Error(), ErrTooLarge.Error()+": ")
	case errors.As(err, &he):
		code, detail = codeHandlerError, encodeHandlerError(he.Type, he.Message, he.Traceback)
	default:
		code, detail = codeHandlerError, encodeHandlerError(fmt.Sprintf("%T", err), err.Error(), "")
	}
	w.writeResult(t.idx, t.seq, t.sl, t.m, out, code, detail, &t.jobCtx.jc)
	crashpoint.Hit("job.result")
	st := l.slotState(t.idx)
	for {
		// Only this worker moves its leased slot; a failed CAS means the
		// flags changed under us (a cancel request). Retry with them.
		c := st.Load()
		if wState(c) != slotRunning || wOwner(c) != t.owner {
			break
		}
		if st.CompareAndSwap(c, stateWord(slotDone, t.owner, t.seq, wFlags(c))) {
			break
		}
	}
	crashpoint.Hit("job.done")
	w.publish(t.idx, t.seq, t.m.client)
	w.rec.Uint64(wrCurrent).Store(0)
	w.rec.Uint64(wrDone).Add(1)
	w.rec.Uint32(wrState).Store(workerIdle)
	w.tasks++
}

// publish puts a done slot into its client's outqueue. The outqueue has a
// cell for every slot, so it never waits long; a client that is gone is
// handled by the supervisor.
func (w *worker) publish(idx int, seq uint16, client uint16) {
	if int(client) >= len(w.l.outq) {
		return // corrupt meta; the supervisor reclaims Done slots of no client
	}
	w.l.outq[client].Enqueue(w.party, slotRef(idx, seq), -1)
}

type jobCtxKey struct{}

// taskCtx is context.WithValue(parent, jobCtxKey{}, &jc), without an
// allocation of its own.
type taskCtx struct {
	context.Context
	jc jobCtx
}

func (c *taskCtx) Value(key any) any {
	if key == (jobCtxKey{}) {
		return &c.jc
	}
	return c.Context.Value(key)
}

type jobCtx struct {
	w      *worker
	idx    int
	seq    uint16
	first  int // pages of the output buffer, -1 if none
	npages int
	buf    []byte
}

// OutputBuffer returns a writable buffer of n bytes in the segment for the
// output of the job that ctx belongs to. A handler that fills it and
// returns it (or a prefix of it) sends its result without a copy. It
// fails outside a job or if n exceeds the pool's MaxPayload.
func OutputBuffer(ctx context.Context, n int) ([]byte, error) {
	jc, ok := ctx.Value(jobCtxKey{}).(*jobCtx)
	if !ok {
		return nil, errors.New("executor: OutputBuffer outside a job")
	}
	l := jc.w.l
	if n < 0 || uint64(n) > l.g.maxPayload {
		return nil, fmt.Errorf("%w: output buffer of %d bytes, pool maximum %d", ErrTooLarge, n, l.g.maxPayload)
	}
	if jc.buf != nil {
		return nil, errors.New("executor: OutputBuffer called twice for one job")
	}
	np := max(pagesFor(uint64(n)), 1)
	first, err := l.allocPagesWait(np, pageOwner(pageOutput, slotRef(jc.idx, jc.seq)))
	if err != nil {
		return nil, err
	}
	jc.first, jc.npages = first, np
	jc.buf = l.arenaBytes(first, uint64(n))
	return jc.buf, nil
}

func callHandler(ctx context.Context, h Handler, in []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &HandlerError{Type: "panic", Message: fmt.Sprint(r), Traceback: string(debug.Stack())}
		}
	}()
	crashpoint.Hit("job.run")
	return h(ctx, in)
}

// encodeHandlerError packs the parts of a handler error as the output of a
// failed job: type, message and traceback separated by NUL bytes.
func encodeHandlerError(typ, msg, tb string) string {
	return typ + "\x00" + msg + "\x00" + tb
}

func decodeHandlerError(b []byte) *HandlerError {
	parts := strings.SplitN(string(b), "\x00", 3)
	for len(parts) < 3 {
		parts = append(parts, "")
	}
	return &HandlerError{Type: parts[0], Message: parts[1], Traceback: parts[2]}
}

// writeResult stores the job's result code and output (or error detail).
func (w *worker) writeResult(idx int, seq uint16, sl shm.View, m meta, out []byte, code uint16, detail string, jc *jobCtx) {
	l := w.l
	if code != codeOK {
		out = []byte(detail)
		if jc != nil && jc.first >= 0 {
			l.freePages(jc.first, jc.npages, pageOwner(pageOutput, slotRef(idx, seq)))
		}
		jc = nil
	}
	if uint64(len(out)) > l.g.maxPayload {
		code, out = codeTooLarge, []byte(fmt.Sprintf("output of %d bytes exceeds the pool's MaxPayload of %d", len(out), l.g.maxPayload))
		if jc != nil && jc.first >= 0 {
			l.freePages(jc.first, jc.npages, pageOwner(pageOutput, slotRef(idx, seq)))
		}
		jc = nil
	}
	var ref uint64
	switch {
	case jc != nil && jc.first >= 0 && len(out) > 0 && len(jc.buf) > 0 && unsafe.SliceData(out) == unsafe.SliceData(jc.buf) && len(out) <= len(jc.buf):
		ref = refArena | uint64(jc.first) // zero-copy: the handler filled our buffer
	case len(out) <= l.g.inline:
		b, _ := sl.Bytes(uint64(slotHeader+l.g.inline), uint64(len(out)))
		copy(b, out)
	default:
		if jc != nil && jc.first >= 0 {
			l.freePages(jc.first, jc.npages, pageOwner(pageOutput, slotRef(idx, seq)))
		}
		first, err := l.allocPagesWait(pagesFor(uint64(len(out))), pageOwner(pageOutput, slotRef(idx, seq)))
		if err != nil {
			code, out = codeTooLarge, []byte(fmt.Sprintf("no arena space for an output of %d bytes", len(out)))
			b, _ := sl.Bytes(uint64(slotHeader+l.g.inline), uint64(min(len(out), l.g.inline)))
			copy(b, out)
			out = out[:len(b)]
			break
		}
		memx.Copy(l.arenaBytes(first, uint64(len(out))), out)
		ref = refArena | uint64(first)
	}
	if jc != nil && jc.first >= 0 && ref != refArena|uint64(jc.first) {
		l.freePages(jc.first, jc.npages, pageOwner(pageOutput, slotRef(idx, seq)))
	}
	sl.Uint64(slOutRef).Store(ref)
	sl.Uint64(slOutLen).Store(uint64(len(out)))
	m.code = code
	sl.Uint64(slMeta).Store(packMeta(m.client, m.handler, m.attempts, m.code))
	if code != codeOK {
		l.counter(ctrFailed + int(code)).Add(1)
	}
}

// fatalSignals are the signals whose default action ends a process and
// which the Go runtime, left to itself, turns into something else in a
// Go worker: a user-sent SIGSEGV, SIGBUS, SIGFPE or SIGILL into a crash
// report and exit status 2, SIGQUIT into a goroutine dump, SIGPIPE (on a
// descriptor other than stdout) into nothing.
var fatalSignals = []os.Signal{syscall.SIGSEGV, syscall.SIGBUS, syscall.SIGFPE, syscall.SIGILL, syscall.SIGQUIT,
	syscall.SIGABRT, syscall.SIGTRAP, syscall.SIGSYS, syscall.SIGPIPE, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGALRM, syscall.SIGXCPU, syscall.SIGXFSZ, syscall.SIGVTALRM}

// dieBySignals makes a Go worker die by any of fatalSignals that reaches
// it, so that the job it ran ends WorkerCrashed with that signal, as a C
// or Python worker's does: the signal is caught, its default action put
// back, and the signal sent again. (A fault in Go code is a panic, which
// fails the job as a handler error.)
func dieBySignals() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, fatalSignals...)
	go func() {
		sig := (<-ch).(syscall.Signal)
		runtime.LockOSThread() // the signal goes to this thread, where it is unblocked
		err := sysx.DieBySignal(sig)
		fmt.Fprintf(os.Stderr, "shmexec worker: could not die by %v: %v\n", sig, err)
		os.Exit(128 + int(sig))
	}()
}
