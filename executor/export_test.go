package executor

import "syscall"

// killWorker SIGKILLs worker i if it is up (past start-up); for tests,
// which must only kill processes they started, through the pool's own
// handle.
func (p *Pool) killWorker(i int) bool { return p.killIf(i, true) }

// killStarting SIGKILLs worker i if its process runs but is not ready
// yet (it starts up), as the OOM killer may.
func (p *Pool) killStarting(i int) bool { return p.killIf(i, false) }

func (p *Pool) killIf(i int, ready bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.workers[i]
	if w.alive && w.cmd != nil && w.cmd.Process != nil && w.gen == uint16(p.l.worker(i).Uint32(wrGen).Load()) &&
		workerReady(p.l.worker(i).Uint32(wrState).Load()) == ready {
		return w.cmd.Process.Signal(syscall.SIGKILL) == nil
	}
	return false
}

// workerPIDs returns the pid of each worker's latest process.
func (p *Pool) workerPIDs() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var pids []int
	for _, w := range p.workers {
		if w.cmd != nil && w.cmd.Process != nil {
			pids = append(pids, w.cmd.Process.Pid)
		}
	}
	return pids
}

// clientsEvicted reports whether every attached client the supervisor
// knows of has been marked dead (or reclaimed already).
func (p *Pool) clientsEvicted() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cp := range p.clients {
		if cp.state != clientDead {
			return false
		}
	}
	return true
}
