package executor

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shmexec/shmexec/internal/sysx"
)

const (
	// A worker that fails to start is started again after a back-off that
	// doubles from startBackoff up to startBackoffMax: the pool never stops
	// trying, and heals within about a second once the cause is gone.
	startBackoff    = 10 * time.Millisecond
	startBackoffMax = time.Second
	// newStartTries is how many times in a row every worker may fail to
	// start before New reports the failure (a broken command is reported
	// at once, not after StartTimeout).
	newStartTries = 3
	// The supervisor ticks every tickInterval while anything it watches
	// may need it within milliseconds: a running job with a deadline or
	// a cancel request, a worker dead, starting or exiting, a backlog, a
	// dead client, a closing pool. While nothing does, each calm tick
	// doubles the interval up to tickCalm, so that an idle or busy pool
	// does not wake a thread 500 times a second on a machine whose cores
	// its caller and workers keep busy (each wake preempts one of them).
	// A deadline or cancel request that appears while it is calm is seen
	// within tickCalm; any event (a worker's exit, a client's death, a
	// request) makes it tick fast at once.
	tickInterval = 2 * time.Millisecond
	tickCalm     = 16 * time.Millisecond
	// clientPoll is how often a client's watcher looks up from waiting for
	// the client's exit, to see whether the pool is shutting down.
	clientPoll = 25 * time.Millisecond
)

type workerProc struct {
	index     int
	gen       uint16
	cmd       *exec.Cmd
	alive     bool
	failures  int // consecutive start-up failures
	spawned   int // processes started for this index
	nextStart time.Time
	log       *startLog // the standard error of the process now starting
}

type spawnReq struct {
	cmd *exec.Cmd
	res chan error
}

// procEvent is what the monitor goroutine is told: a worker process
// exited, a client died or detached, or a function to run on it.
type procEvent struct {
	kind   eventKind
	index  int              // the worker's or client's index
	gen    uint16           // the worker's generation, or the client's submit party's
	state  *os.ProcessState // evWorkerExit
	detach bool             // evClientGone: the client detached by Close rather than died
	run    func()           // evRun
}

type eventKind uint8

const (
	evWorkerExit eventKind = iota + 1
	evClientGone
	evRun
)

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
		envPassFDs+"="+passFDs(len(p.cfg.PassFiles)),
	)
	if p.cfg.spawnEnv != nil {
		cmd.Env = append(cmd.Env, p.cfg.spawnEnv(w.index, w.spawned)...)
	}
	w.spawned++
	cmd.ExtraFiles = append([]*os.File{p.seg.File()}, p.cfg.PassFiles...)
	cmd.Stdout = p.cfg.Stdout
	logr, logw, err := os.Pipe()
	if err != nil {
		l.parties.Free(party, gen)
		return fmt.Errorf("cannot start a worker: %w", err)
	}
	defer logw.Close() // the child has its copy
	cmd.Stderr = logw
	if f, ok := p.cfg.Stderr.(*os.File); ok {
		cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", envStderrFD, segmentFD+len(cmd.ExtraFiles)))
		cmd.ExtraFiles = append(cmd.ExtraFiles, f)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	rec := l.worker(w.index)
	rec.Uint64(wrCurrent).Store(0)
	rec.Uint32(wrGen).Store(uint32(gen))
	rec.Uint32(wrState).Store(workerStarting)
	res := make(chan error, 1)
	p.spawnc <- spawnReq{cmd: cmd, res: res}
	if err := <-res; err != nil {
		logr.Close()
		rec.Uint32(wrState).Store(workerFailed)
		l.parties.Free(party, gen)
		p.mu.Lock()
		p.exitedLocked(w)
		p.mu.Unlock()
		return fmt.Errorf("cannot start the worker command %v: %w", argv, err)
	}
	rec.Uint32(wrPID).Store(uint32(cmd.Process.Pid))
	l.parties.SetPID(party, gen, cmd.Process.Pid)
	// A worker that writes to the pool's standard error itself once ready
	// (envStderrFD) first waits until all it wrote through the pipe is
	// forwarded, so that its output stays in the order it wrote it.
	log := newStartLog(logr, p.cfg.Stderr, func() {
		w := rec.Uint32(wrStartLog)
		w.Store(uint32(gen))
		sysx.FutexWake(w, math.MaxInt32)
	})
	p.mu.Lock()
	w.gen, w.cmd, w.alive, w.log = gen, cmd, true, log
	p.mu.Unlock()
	go func() {
		cmd.Wait() // os.Process waits on a pidfd on Linux: no pid-reuse race
		log.drain(100 * time.Millisecond)
		p.events <- procEvent{kind: evWorkerExit, index: w.index, gen: gen, state: cmd.ProcessState}
	}()
	return nil
}

// waitReady waits until every worker has attached and run its
// initializer, or reports why not.
func (p *Pool) waitReady() error {
	deadline := time.Now().Add(p.cfg.StartTimeout)
	need := p.cfg.ReadyWorkers
	if need == 0 {
		need = p.cfg.Workers
	}
	// Woken by each worker that turns ready and each start that fails
	// (the start-up event), both looked at once New counts as a waiter.
	var failed string
	settled := func() bool {
		if p.l.readyWorkers() >= need {
			return true
		}
		failed = p.startsFailed(newStartTries)
		return failed != ""
	}
	for !p.l.startEvent().wait(time.Until(deadline), settled) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %d of %d workers ready after %v (%d needed)", ErrWorkerStart, p.l.readyWorkers(), p.cfg.Workers, p.cfg.StartTimeout, need)
		}
	}
	if failed != "" {
		return fmt.Errorf("%w: %s", ErrWorkerStart, failed)
	}
	return nil
}

// monitor is the supervisor's loop: it learns of deaths at once (from the
// pidfd-backed waits) and checks deadlines and cancel requests on a tick.
func (p *Pool) monitor() {
	defer close(p.stopped)
	interval := tickInterval
	tick := time.NewTimer(interval)
	defer tick.Stop()
	for {
		select {
		case ev := <-p.events:
			switch ev.kind {
			case evRun:
				ev.run()
			case evClientGone:
				p.clientDied(ev.index, ev.gen, ev.detach)
			case evWorkerExit:
				p.workerExited(ev)
			}
			if interval != tickInterval { // what follows an event (a respawn, a reap) comes on the fast tick
				interval = tickInterval
				tick.Reset(interval)
			}
		case <-tick.C:
			p.ticks.Add(1)
			if p.tick() {
				interval = min(2*interval, tickCalm)
			} else {
				interval = tickInterval
			}
			tick.Reset(interval)
		case <-p.quit:
			return
		}
	}
}

// workerExited recovers what a dead worker held and replaces it.
func (p *Pool) workerExited(ev procEvent) {
	p.mu.Lock()
	w := p.workers[ev.index]
	if w.gen != ev.gen || !w.alive {
		p.mu.Unlock()
		return
	}
	p.exitedLocked(w)
	log := w.log
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

	if l.poolState().Load() >= poolClosed {
		return
	}
	var reason string
	if !wasReady {
		reason = withStderr(describeExit(pid, sig, code), log)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if wasReady {
		w.failures = 0
		w.nextStart = time.Now()
	} else {
		p.startFailed(w, reason)
	}
}

// startFailed records that worker w failed to start (its process could
// not be started, or it died before it was ready), schedules its next
// start with capped exponential back-off, and updates the pool's
// start-up state. p.mu is held.
func (p *Pool) startFailed(w *workerProc, reason string) {
	w.failures++
	p.lastStartErr = reason
	p.l.counter(ctrStartFailures).Add(1)
	p.l.worker(w.index).Uint32(wrState).Store(workerFailed)
	w.nextStart = time.Now().Add(min(startBackoff<<min(w.failures, 16), startBackoffMax))
	p.checkStarts()
	p.l.startEvent().signal() // for New (waitReady)
}

// startsFailed returns the last start-up failure if every worker has
// failed to start at least n times in a row (and so none is ready), or "".
func (p *Pool) startsFailed(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.workers {
		if w.failures < n {
			return ""
		}
	}
	return p.lastStartErr
}

// checkStarts keeps the pool's start-up state, in the segment for every
// client to read: failing while no worker is ready and the last start
// failed (submits then fail at once with ErrWorkerStart, and the monitor
// fails what is queued); clear as soon as a worker is ready. It returns
// the reason while failing, else "": the supervisor acts on what it
// knows, not on the segment's copy, which any client could have written.
// p.mu is held.
func (p *Pool) checkStarts() string {
	l := p.l
	if l.anyWorkerReady() {
		l.setStartFailure("")
		return ""
	}
	failed := false
	for _, w := range p.workers {
		failed = failed || w.failures > 0
	}
	if !failed {
		return ""
	}
	l.setStartFailure(p.lastStartErr) // the latest failure's reason
	return p.lastStartErr
}

func workerReady(state uint32) bool {
	return state == workerIdle || state == workerBusy || state == workerExiting
}

// describeExit says, in one clause, how a worker that was not yet ready
// ended: killed by a signal (a crash, such as the OOM killer's: the
// command is not to blame), or exited (the command is broken).
func describeExit(pid int, sig syscall.Signal, code int) string {
	if sig != 0 {
		return fmt.Sprintf("worker pid %d was killed by %s during start-up", pid, sysx.SignalName(sig))
	}
	switch code {
	case exitInitFailed:
		return fmt.Sprintf("the workers' initializer failed (worker pid %d exited with status %d)", pid, code)
	case exitOK, exitNotWorker:
		return fmt.Sprintf("the worker command does not serve as a worker (pid %d exited with status %d): does it call ServeIfWorker or shmx_worker_main?", pid, code)
	}
	return fmt.Sprintf("the worker command exited with status %d during start-up (pid %d)", code, pid)
}

// tick enforces deadlines and cancel requests, respawns workers whose
// back-off has passed, and reclaims what dead clients left.
//
// It reports whether the pool is calm: nothing it watches needs a look
// within milliseconds (see tickCalm).
func (p *Pool) tick() (calm bool) {
	l := p.l
	p.flushBacklog()
	calm = len(p.backlog) == 0 && l.poolState().Load() == poolOpen
	now := sysx.Monotonic()
	for idx := 0; idx < l.g.slots; idx++ {
		st := l.slotState(idx)
		cur := st.Load()
		if wState(cur) != slotRunning {
			continue
		}
		flags := wFlags(cur)
		kill := false
		dl := int64(l.slot(idx).Uint64(slDeadline).Load())
		if flags&flagCancelReq != 0 {
			kill = true
		} else if dl > 0 && now > dl && flags&flagTimedOut == 0 {
			if st.CompareAndSwap(cur, cur|uint64(flagTimedOut)<<56) {
				kill = true
			}
		}
		if kill || dl > 0 {
			calm = false
		}
		if kill {
			p.killOwner(wOwner(cur))
		}
	}
	p.mu.Lock()
	for _, w := range p.workers {
		if st := l.worker(w.index).Uint32(wrState).Load(); !w.alive || st != workerIdle && st != workerBusy {
			calm = false // dead, starting or exiting (a start failure included): it, or its replacement, is watched on the fast tick
		}
	}
	closed := l.poolState().Load() >= poolClosed
	var failing string
	if !closed {
		failing = p.checkStarts()
	}
	var due []*workerProc
	for _, w := range p.workers {
		if !w.alive && !closed && time.Now().After(w.nextStart) {
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
			p.startFailed(w, err.Error())
			p.mu.Unlock()
			continue
		}
		l.counter(ctrRespawned).Add(1)
		l.worker(w.index).Uint32(wrRestarts).Add(1)
	}
	if failing != "" {
		// No worker can start: what is queued ends now, with the reason,
		// instead of waiting for a worker that may never come. failing
		// was read before the spawns above, and a worker started earlier
		// may have become ready since: then a job queued meanwhile (its
		// submit saw the ready worker) is left to run.
		p.failQueued(codeWorkerStart, failing, l.anyWorkerReady)
	}
	return !p.reapClients() && calm
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

// runOnMonitor runs f on the monitor goroutine (which owns recovery) and
// waits for it.
func (p *Pool) runOnMonitor(f func()) {
	done := make(chan struct{})
	select {
	case p.events <- procEvent{kind: evRun, run: func() { f(); close(done) }}:
		<-done
	case <-p.stopped:
		f()
	}
}

// passFDs names the descriptors that n PassFiles have in a worker: the
// ones after the segment's.
func passFDs(n int) string {
	fds := make([]string, n)
	for i := range fds {
		fds[i] = strconv.Itoa(segmentFD + 1 + i)
	}
	return strings.Join(fds, ",")
}
