package executor

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/shmexec/shmexec/internal/sysx"
	"github.com/shmexec/shmexec/ring"
)

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
	case l.poolState().Load() >= poolClosed:
		// shutdown kills running jobs' workers only after it has stored
		// poolClosed (a drain that finished has none running).
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

// failQueued ends every queued job with code and detail (the pool cannot
// run them), unless stop (nil: never) says the reason has gone: it is
// asked before each job, since a submit may queue one, and a worker
// become ready to run it, while the jobs are failed. Monitor goroutine
// only.
func (p *Pool) failQueued(code uint16, detail string, stop func() bool) {
	l := p.l
	for idx := 0; idx < l.g.slots; idx++ {
		if stop != nil && stop() {
			return
		}
		st := l.slotState(idx)
		cur := st.Load()
		if wState(cur) != slotQueued {
			continue
		}
		if st.CompareAndSwap(cur, stateWord(slotDone, p.sup.Owner(), wSeq(cur), 0)) {
			p.finishSlot(idx, wSeq(cur), code, detail, crashInfo{})
		}
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

type clientProc struct {
	index          int
	subGen, colGen uint16
	pid            int
	state          int // clientActive, clientDead (reaping)
}

// watchClient reports when client cp exits or detaches. It owns cp's
// pidfd, and closes it when it returns: on that report, or within
// clientPoll once the pool is shutting down (which waits for it).
func (p *Pool) watchClient(cp *clientProc, pidfd *os.File) {
	defer p.watchers.Done()
	defer pidfd.Close()
	for {
		exited, err := sysx.PidfdWaitExit(pidfd, clientPoll)
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
			case p.events <- procEvent{kind: evClientGone, index: cp.index, gen: cp.subGen, detach: detached}:
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
		if x.index == c && x.subGen == subGen && x.state != clientDead {
			cp = x
		}
	}
	if cp != nil {
		cp.state = clientDead // under p.mu, as every field of the record
	}
	p.mu.Unlock()
	if cp == nil {
		return
	}
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
// that were running when the client died arrive later). It reports
// whether there were any to reap.
func (p *Pool) reapClients() bool {
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
	return len(dead) > 0
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
