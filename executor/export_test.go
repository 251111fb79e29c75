package executor

import "syscall"

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
