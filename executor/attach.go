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
	if p.l.poolState().Load() != poolOpen {
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
		p.watchers.Add(1)
		go p.watchClient(cp, pfd)
		return ClientTicket{Index: c, SubGen: cp.subGen, ColGen: cp.colGen}, nil
	}
	pfd.Close()
	return ClientTicket{}, fmt.Errorf("executor: all %d client slots in use", p.l.g.clients-1)
}

// File returns the segment's memfd, to pass to a client process.
func (p *Pool) File() *os.File { return p.seg.File() }

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
	c := newClient(l, t.Index, sub, col, defaults, seg)
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
