package executor

import (
	"errors"
	"fmt"
	"syscall"
	"time"
)

// DefaultCloseTimeout bounds Close: queued jobs that have not finished by
// then are failed with ErrPoolClosed and their workers killed.
const DefaultCloseTimeout = time.Minute

// Close stops intake, lets queued and running jobs finish (for at most
// DefaultCloseTimeout), stops the workers and frees the segment. It is
// idempotent: later calls, and Terminate after it, return its result.
func (p *Pool) Close() error { return p.CloseTimeout(DefaultCloseTimeout) }

// CloseTimeout is Close with its own bound on waiting for queued jobs.
func (p *Pool) CloseTimeout(d time.Duration) error {
	p.once.Do(func() { p.closeErr = p.shutdown(d) })
	return p.closeErr
}

// Terminate kills the workers at once, fails every pending job with
// ErrPoolClosed and frees the segment. Idempotent, like Close. During a
// Close that waits for jobs, it ends that wait at once (the Close then
// returns its "killed" error) and returns when the pool is down.
func (p *Pool) Terminate() error {
	p.killOnce.Do(func() { close(p.kill) })
	p.once.Do(func() { p.closeErr = p.shutdown(0) })
	return p.closeErr
}

// shutdown takes the pool through the segment's states, which are its only
// record of shutting down: closing (no new submits; queued jobs finish,
// for at most grace), then closed (workers stop; a job still running then
// is killed and ends with PoolClosed, see crashedJob). grace 0: Terminate.
func (p *Pool) shutdown(grace time.Duration) error {
	l := p.l
	if l == nil { // New failed before the layout existed
		return p.seg.Close()
	}
	var errs []error
	l.poolState().Store(poolClosing)
	kill := grace <= 0
	if !kill && !p.waitIdle(time.Now().Add(grace)) {
		if p.terminating() {
			errs = append(errs, errors.New("executor: close: terminated while jobs still ran; killed"))
		} else {
			errs = append(errs, fmt.Errorf("executor: close: jobs still running after %v; killed", grace))
		}
		kill = true
	}
	l.poolState().Store(poolClosed)

	// Stop the workers: an exit value each, then SIGKILL for those that do
	// not go within a second (or at once when killing).
	if !kill {
		n := len(p.aliveWorkers())
		p.runOnMonitor(func() {
			for i := 0; i < n; i++ {
				p.supEnqueue(l.inq, exitValue)
			}
		})
		p.waitWorkers(time.Now().Add(time.Second))
	}
	for _, w := range p.aliveWorkers() {
		p.mu.Lock()
		if w.cmd != nil {
			w.cmd.Process.Signal(syscall.SIGKILL)
		}
		p.mu.Unlock()
	}
	if !p.waitWorkers(time.Now().Add(5 * time.Second)) {
		errs = append(errs, errors.New("executor: close: workers did not exit within 5s of SIGKILL"))
	}
	// Whatever is still queued ends with PoolClosed, delivered to its
	// client like any result.
	p.runOnMonitor(func() { p.failQueued(codePoolClosed, "the pool was closed before the job ran", nil) })
	if p.client != nil {
		deadline := time.Now().Add(time.Second)
		for p.client.pending() > 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		p.client.shutdown(ErrPoolClosed)
	}
	close(p.quit)
	<-p.stopped
	close(p.spawnc)
	// An AddClient that saw the pool open has added its watcher by the
	// time p.mu is free; any later one sees it closed.
	p.mu.Lock()
	p.mu.Unlock()     //nolint:staticcheck // an empty critical section, on purpose
	p.watchers.Wait() // each closes its client's pidfd within clientPoll
	if err := l.unmap(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (p *Pool) aliveWorkers() []*workerProc {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*workerProc
	for _, w := range p.workers {
		if w.alive {
			out = append(out, w)
		}
	}
	return out
}

// waitWorkers waits until the monitor has seen every worker exit (for at
// most until deadline), woken by each exit (exitedLocked).
func (p *Pool) waitWorkers(deadline time.Time) bool {
	for len(p.aliveWorkers()) > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		t := time.NewTimer(left)
		select {
		case <-p.exited:
		case <-t.C:
		}
		t.Stop()
	}
	return true
}

// exitedLocked records that worker w is no longer alive (exited, or
// never started) and tells waitWorkers to look again; a value already
// waiting in p.exited says the same. p.mu is held.
func (p *Pool) exitedLocked(w *workerProc) {
	w.alive = false
	select {
	case p.exited <- struct{}{}:
	default:
	}
}

// terminating reports whether Terminate has been called (from any
// goroutine).
func (p *Pool) terminating() bool {
	select {
	case <-p.kill:
		return true
	default:
		return false
	}
}

// waitIdle waits until no job is queued or running and the owner's
// client has collected everything; false at the deadline, or at once
// when Terminate is called meanwhile.
func (p *Pool) waitIdle(deadline time.Time) bool {
	l := p.l
	for {
		busy := false
		for idx := 0; idx < l.g.slots && !busy; idx++ {
			switch wState(l.slotState(idx).Load()) {
			case slotFilling, slotQueued, slotRunning:
				busy = true
			}
		}
		if !busy && (p.client == nil || p.client.pending() == 0) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		if p.terminating() {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}
