package ring

import (
	"errors"
	"math"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/shmexec/shmexec/internal/sysx"
	"github.com/shmexec/shmexec/shm"
)

// waitq is an event count in shared memory: a futex word that wakers bump
// and a bitmask of the parties sleeping on it.
//
// Sleeper: set own bit; read seq; re-check the ring; FUTEX_WAIT(seq).
// Waker:   change the ring; read the mask; if non-zero, bump seq and
//
//	FUTEX_WAKE all.
//
// All accesses are sequentially consistent, so either the sleeper's
// re-check sees the change or the waker sees the sleeper's bit; in the
// second case the bump makes FUTEX_WAIT return at once if it has not slept
// yet. The mask costs the waker one load and no syscall when nobody sleeps.
type waitq struct {
	seq      *atomic.Uint32
	sleepers []atomic.Uint64 // MaxParties bits
}

func newWaitq(v shm.View, seqOff, maskOff int) waitq {
	return waitq{seq: v.Uint32(seqOff), sleepers: v.Uint64s(maskOff, MaxParties/64)}
}

func (q *waitq) register(idx uint16) {
	q.sleepers[idx/64].Or(1 << (idx % 64)) // pairs with the loads in wake
}

func (q *waitq) unregister(idx uint16) {
	q.sleepers[idx/64].And(^uint64(1 << (idx % 64))) // pairs with the loads in wake
}

func (q *waitq) wake() {
	for i := range q.sleepers {
		if q.sleepers[i].Load() != 0 { // pairs with register's Or
			q.wakeAll()
			return
		}
	}
}

func (q *waitq) wakeAll() {
	q.seq.Add(1) // pairs with the sleeper's load of seq before FUTEX_WAIT
	sysx.FutexWake(q.seq, math.MaxInt32)
}

// Interrupt makes every blocking operation on this handle, now and later,
// return err (for example when the pool is known dead). Other processes'
// handles are not affected, though their sleepers wake once and re-check.
func (r *Ring) Interrupt(err error) {
	if err == nil {
		panic("ring: Interrupt with a nil error")
	}
	r.stop.Store(&err)
	r.notEmpty.wakeAll()
	r.notFull.wakeAll()
}

// WakeAll wakes every sleeper on the ring, in every process. Recovery
// calls it after repairing cells that sleepers may be waiting behind.
func (r *Ring) WakeAll() {
	r.notEmpty.wakeAll()
	r.notFull.wakeAll()
}

func (r *Ring) stopped() error {
	if e := r.stop.Load(); e != nil {
		return *e
	}
	return nil
}

// waiter paces one blocking operation: spin, then sleep on the futex,
// until ready reports true, the deadline passes or the ring is
// interrupted.
type waiter struct {
	deadline  time.Time
	forever   bool
	spins     int
	spinUntil time.Time
}

func newWaiter(timeout time.Duration) waiter {
	if timeout < 0 {
		return waiter{forever: true}
	}
	return waiter{deadline: time.Now().Add(timeout)}
}

// wait returns nil when ready() may have become true, or an error.
func (w *waiter) wait(r *Ring, q *waitq, p *Party, ready func() bool) error {
	if err := r.stopped(); err != nil {
		return err
	}
	if !w.forever && !time.Now().Before(w.deadline) {
		return ErrTimeout
	}
	if r.Spin > 0 {
		if w.spins == 0 {
			w.spinUntil = time.Now().Add(r.Spin)
		}
		w.spins++
		if w.spins%16 != 0 {
			return nil
		}
		runtime.Gosched()
		if time.Now().Before(w.spinUntil) {
			return nil
		}
	}
	var remaining time.Duration = -1
	if !w.forever {
		remaining = time.Until(w.deadline)
		if remaining <= 0 {
			return ErrTimeout
		}
	}
	q.register(p.idx)
	defer q.unregister(p.idx)
	seq := q.seq.Load() // pairs with wakeAll's Add
	if ready() {
		return nil
	}
	if err := r.stopped(); err != nil {
		return err
	}
	err := sysx.FutexWait(q.seq, seq, remaining)
	switch {
	case err == nil, errors.Is(err, sysx.ErrTimeout), errors.Is(err, sysx.ErrInterrupted):
		// Re-check the ring, the stop flag and the deadline.
		return nil
	default:
		return err
	}
}

// canEnqueue reports whether the cell at the head looks free. It is a hint
// for the waiter, not a promise.
func (r *Ring) canEnqueue() bool {
	h := r.head.Load()
	w := r.cell(h).Load()
	return !(lapDiff(cellLap(w), r.lap(h)) == -1 && cellState(w) != StateEmpty)
}

// canDequeue reports whether the cell at the tail looks ready. A hint.
func (r *Ring) canDequeue() bool {
	t := r.tail.Load()
	w := r.cell(t).Load()
	st, d := cellState(w), lapDiff(cellLap(w), r.lap(t))
	return !(d == 0 && (st == StateEmpty || st == StateClaimed) || d == -1)
}
