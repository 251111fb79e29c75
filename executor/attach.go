package executor

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/shmexec/shmexec/internal/sysx"
	"github.com/shmexec/shmexec/ring"
	"github.com/shmexec/shmexec/shm"
)

// ClientTicket is what another process needs, besides the segment's file
// descriptor, to attach as a client: its client slot and the generations
// of that slot's two parties.
type ClientTicket struct {
	Index          int
	SubGen, ColGen uint16
}

func (t ClientTicket) String() string { return fmt.Sprintf("%d:%d:%d", t.Index, t.SubGen, t.ColGen) }

// ParseTicket parses the form String writes.
func ParseTicket(s string) (ClientTicket, error) {
	var t ClientTicket
	if _, err := fmt.Sscanf(s, "%d:%d:%d", &t.Index, &t.SubGen, &t.ColGen); err != nil {
		return t, fmt.Errorf("executor: bad client ticket %q", s)
	}
	return t, nil
}

// AddClient reserves a client slot for the process pid and returns its
// ticket. The supervisor watches pid: when it exits, its queued jobs are
// dropped and its slots, outqueue and arena pages reclaimed. Pass the
// ticket and File() to that process, which calls Connect.
func (p *Pool) AddClient(pid int) (ClientTicket, error) {
	pfd, err := sysx.PidfdOpen(pid)
	if err != nil {
		return ClientTicket{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing || p.l.poolState().Load() != poolOpen {
		pfd.Close()
		return ClientTicket{}, ErrPoolClosed
	}
	for c := 1; c < p.l.g.clients; c++ {
		if p.l.client(c).Uint32(crState).Load() != clientFree {
			continue
		}
		if _, err := p.newClientParties(c, pid); err != nil {
			pfd.Close()
			return ClientTicket{}, err
		}
		cp := p.clients[len(p.clients)-1]
		cp.pidfd = pfd
		go p.watchClient(cp)
		return ClientTicket{Index: c, SubGen: cp.subGen, ColGen: cp.colGen}, nil
	}
	pfd.Close()
	return ClientTicket{}, fmt.Errorf("executor: all %d client slots in use", p.l.g.clients-1)
}

// File returns the segment's memfd, to pass to a client process.
func (p *Pool) File() *os.File { return p.seg.File() }

func (p *Pool) watchClient(cp *clientProc) {
	for {
		exited, err := sysx.PidfdWaitExit(cp.pidfd, 100*time.Millisecond)
		select {
		case <-p.quit:
			return
		default:
		}
		// A client that closed (its record says so) detached; one that
		// exited without closing died. Either way it is reclaimed.
		detached := p.l.client(cp.index).Uint32(crState).Load() == clientDead
		if detached || exited || (err != nil && !errors.Is(err, sysx.ErrInterrupted)) {
			select {
			case p.events <- procEvent{client: cp.index, gen: cp.subGen, detach: detached}:
			case <-p.quit:
			}
			return
		}
	}
}

// clientDied starts reclaiming what client c left, whether it died or
// detached.
func (p *Pool) clientDied(c int, subGen uint16, detached bool) {
	p.mu.Lock()
	var cp *clientProc
	for _, x := range p.clients {
		if x.index == c && x.subGen == subGen {
			cp = x
		}
	}
	p.mu.Unlock()
	if cp == nil || cp.state == clientDead {
		return
	}
	cp.state = clientDead
	l := p.l
	l.client(c).Uint32(crState).Store(clientDead)
	if detached {
		l.counter(ctrDetached).Add(1)
	} else {
		l.counter(ctrClientDeaths).Add(1)
	}
	p.recoverParty(l.g.clientSubParty(c), cp.subGen, crashInfo{})
	p.recoverParty(l.g.clientColParty(c), cp.colGen, crashInfo{})
	p.reapClient(cp)
}

// reapClients goes on reclaiming dead clients' slots (results of jobs
// that were running when the client died arrive later).
func (p *Pool) reapClients() {
	p.mu.Lock()
	var dead []*clientProc
	for _, cp := range p.clients {
		if cp.state == clientDead {
			dead = append(dead, cp)
		}
	}
	p.mu.Unlock()
	for _, cp := range dead {
		p.reapClient(cp)
	}
}

// reapClient frees what dead client cp still has: results in its
// outqueue, its queued jobs (dropped), finished jobs. Once nothing refers
// to the client slot it becomes free for another client.
func (p *Pool) reapClient(cp *clientProc) {
	l := p.l
	c := cp.index
	out := l.outq[c]
	for {
		v, err := out.TryDequeue(p.sup)
		if err != nil {
			break
		}
		if idx := refIdx(v); idx < l.g.slots && p.freeSlot(idx, refSeq(v), slotDone) {
			l.counter(ctrReclaimed).Add(1)
		}
	}
	p.sup.Release()
	busy := 0
	for idx := 0; idx < l.g.slots; idx++ {
		st := l.slotState(idx)
		cur := st.Load()
		if wState(cur) == slotFree || int(unpackMeta(l.slot(idx).Uint64(slMeta).Load()).client) != c {
			continue
		}
		switch wState(cur) {
		case slotQueued:
			// Still in the inqueue: the worker that dequeues it frees it.
			st.CompareAndSwap(cur, stateWord(slotDropped, 0, wSeq(cur), 0))
		case slotDone:
			if !p.ownerAlive(wOwner(cur)) && p.freeSlot(idx, wSeq(cur), slotDone) {
				l.counter(ctrReclaimed).Add(1)
				continue
			}
		}
		busy++
	}
	if busy == 0 && out.Len() == 0 {
		l.parties.Free(l.g.clientSubParty(c), cp.subGen)
		l.parties.Free(l.g.clientColParty(c), cp.colGen)
		l.client(c).Uint32(crState).Store(clientFree)
		p.mu.Lock()
		for i, x := range p.clients {
			if x == cp {
				p.clients = append(p.clients[:i], p.clients[i+1:]...)
				break
			}
		}
		p.mu.Unlock()
		if cp.pidfd != nil {
			cp.pidfd.Close()
			cp.pidfd = nil
		}
	}
}

// ownerAlive reports whether owner is a live worker (which will publish
// what it holds).
func (p *Pool) ownerAlive(owner uint32) bool {
	party, gen := int(owner>>16), uint16(owner)
	p.mu.Lock()
	defer p.mu.Unlock()
	i := party - 1
	return i >= 0 && i < len(p.workers) && p.workers[i].alive && p.workers[i].gen == gen
}

// Connect attaches this process as a client of the pool whose segment is
// f, with the ticket the supervisor's AddClient gave. On success the
// client owns f. If the supervisor dies, pending and later calls fail
// with ErrPoolDead.
func Connect(f *os.File, t ClientTicket) (*Client, error) {
	seg, err := shm.Attach(f)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Client, error) {
		seg.Close()
		return nil, err
	}
	l, err := openLayout(seg, false, geometry{})
	if err != nil {
		return fail(err)
	}
	if t.Index <= 0 || t.Index >= l.g.clients {
		return fail(fmt.Errorf("executor: client slot %d out of [1, %d)", t.Index, l.g.clients))
	}
	sub, err := l.parties.Join(l.g.clientSubParty(t.Index), t.SubGen)
	if err != nil {
		return fail(err)
	}
	col, err := l.parties.Join(l.g.clientColParty(t.Index), t.ColGen)
	if err != nil {
		return fail(err)
	}
	defaults := SubmitOptions{
		Timeout: time.Duration(l.control.Uint64(ctlDefTimeout).Load()),
		Retries: int(l.control.Uint32(ctlDefRetries).Load()),
	}
	c := newClient(l, t.Index, sub, col, defaults)
	c.external = seg
	pfd, err := sysx.PidfdOpen(int(l.control.Uint32(ctlSupPID).Load()))
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("executor: watch supervisor: %w", err)
	}
	c.supPidfd = pfd
	c.watchDone = make(chan struct{})
	go c.watchSupervisor()
	return c, nil
}

// watchSupervisor ends everything with ErrPoolDead when the supervisor
// process exits.
func (c *Client) watchSupervisor() {
	defer close(c.watchDone)
	for {
		select {
		case <-c.stopping:
			return
		default:
		}
		exited, err := sysx.PidfdWaitExit(c.supPidfd, 100*time.Millisecond)
		if exited || (err != nil && !errors.Is(err, sysx.ErrInterrupted)) {
			c.poolDead()
			return
		}
	}
}

func (c *Client) poolDead() {
	c.dead.Store(true)
	c.stop(ErrPoolDead)
	if !c.l.enter() {
		return
	}
	defer c.l.exit()
	for _, r := range []*ring.Ring{c.l.inq, c.l.outq[c.index]} {
		r.Interrupt(ErrPoolDead)
	}
}

// Close detaches a client that Connect attached: pending jobs end with
// ErrPoolClosed, the supervisor reclaims the client's slot, and the
// segment is unmapped. The pool owner's client is closed by Pool.Close.
// Idempotent.
func (c *Client) Close() error {
	if c.external == nil {
		return errors.New("executor: the pool owner's client closes with the pool")
	}
	c.closeOnce.Do(func() {
		c.stopOnce.Do(func() { close(c.stopping) })
		if c.watchDone != nil {
			<-c.watchDone
		}
		c.shutdown(ErrPoolClosed)
		if !c.dead.Load() {
			c.l.client(c.index).Uint32(crState).Store(clientDead)
		}
		if c.supPidfd != nil {
			c.supPidfd.Close()
		}
		c.closeErr = c.l.unmap()
	})
	return c.closeErr
}

// ReadStats reads a pool's counters through a read-only mapping of its
// segment f, as an observer in another process does (it never writes to
// the pool). f stays the caller's.
func ReadStats(f *os.File) (Stats, error) {
	dup, err := sysx.Dup(f)
	if err != nil {
		return Stats{}, err
	}
	seg, err := shm.AttachReadOnly(dup)
	if err != nil {
		dup.Close()
		return Stats{}, err
	}
	defer seg.Close()
	l, err := openLayout(seg, false, geometry{})
	if err != nil {
		return Stats{}, err
	}
	return l.stats(), nil
}
