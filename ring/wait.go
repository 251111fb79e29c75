package ring

import (
	"errors"
	"math"
	"math/bits"
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
//
// Not-empty also has a mask of spinning consumers: a consumer that polls
// the ring before it sleeps sets its bit, and a producer that sees any
// spin bit skips the wake (the spinner will see the value). Whoever clears
// a spin bit then re-checks the ring and wakes the sleepers if it is not
// empty ("pass on", endSpin): a value published while the bit was set was
// published before the producer read the bit, so the re-check sees it
// unless someone took it. A dead spinner's bit is cleared by recovery,
// which wakes everyone. docs/model/ring.pml checks this.
type waitq struct {
	seq      *atomic.Uint32
	sleepers []atomic.Uint64 // MaxParties bits
	spinners []atomic.Uint64 // MaxParties bits; nil: no spinning (not-full)
	spins    *atomic.Uint64  // spins begun, to tell a stuck spinner (same line as spinners)
}

func newWaitq(v shm.View, seqOff, maskOff, spinOff int) waitq {
	q := waitq{seq: v.Uint32(seqOff), sleepers: v.Uint64s(maskOff, MaxParties/64)}
	if spinOff > 0 {
		q.spinners = v.Uint64s(spinOff, MaxParties/64)
		q.spins = v.Uint64(spinOff + 8*MaxParties/64)
	}
	return q
}

func (q *waitq) register(idx uint16) {
	q.sleepers[idx/64].Or(1 << (idx % 64)) // pairs with the loads in wake
}

func (q *waitq) unregister(idx uint16) {
	q.sleepers[idx/64].And(^uint64(1 << (idx % 64))) // pairs with the loads in wake
}

func anySet(m []atomic.Uint64) bool {
	for i := range m {
		if m[i].Load() != 0 {
			return true
		}
	}
	return false
}

func (q *waitq) wake() {
	if anySet(q.spinners) { // pairs with startSpin's Or and endSpin's And
		return
	}
	if anySet(q.sleepers) { // pairs with register's Or
		q.wakeAll()
	}
}

func (q *waitq) wakeAll() {
	q.seq.Add(1) // pairs with the sleeper's load of seq before FUTEX_WAIT
	sysx.FutexWake(q.seq, math.MaxInt32)
}

// startSpin sets idx's spin bit unless another party's is set (one
// spinner is enough: the others sleep and are not woken while it spins).
// It reports whether it set the bit.
func (q *waitq) startSpin(idx uint16) bool {
	if q.spinners == nil || anySet(q.spinners) {
		return false
	}
	q.spinners[idx/64].Or(1 << (idx % 64)) // pairs with the loads in wake
	q.spins.Add(1)
	return true
}

// StartSpin tells producers that p is about to poll the ring for values
// (TryDequeueBatch in a loop), so that they skip waking sleepers. It
// reports whether it did so: false when another party spins already (p
// may poll all the same). Each true must be followed by EndSpin.
func (r *Ring) StartSpin(p *Party) bool { return r.notEmpty.startSpin(p.idx) }

// EndSpin ends p's spin: it clears p's spin bit and wakes the sleepers if
// the ring is not empty, since producers did not wake them meanwhile.
func (r *Ring) EndSpin(p *Party) { r.endSpin(p.idx) }

func (r *Ring) endSpin(idx uint16) {
	r.notEmpty.spinners[idx/64].And(^uint64(1 << (idx % 64))) // pairs with the loads in wake
	r.passOn()
}

// passOn wakes the sleepers if the ring is not empty: what whoever clears
// a spin bit owes them, since producers skipped their wakes meanwhile.
func (r *Ring) passOn() {
	if r.canDequeue() {
		r.notEmpty.wake()
	}
}

// Spinners returns how many parties hold a spin bit now (for tests and
// counters; stale as soon as it returns).
func (r *Ring) Spinners() int {
	n := 0
	for i := range r.notEmpty.spinners {
		n += bits.OnesCount64(r.notEmpty.spinners[i].Load())
	}
	return n
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

// A yield that kept its caller off the CPU for longer than yieldSlow ran
// something other than a peer's tiny turn: a CPU-bound process that
// shares the core, whose slice is milliseconds, or the host of a VM that
// took the CPU meanwhile. Steal comes and goes; a CPU-bound neighbour
// wins every yield (a yielding thread loses the wake-up preference a
// sleeping one keeps). So after yieldStreak slow yields in a row, the
// spins of this process stop yielding for yieldBackoff and go back to
// spinning, then sleeping.
const (
	yieldSlow    = 100 * time.Microsecond
	yieldStreak  = 3
	yieldBackoff = time.Second
)

var (
	clockBase      = time.Now()
	yieldsOffUntil atomic.Int64 // since clockBase, in nanoseconds
	slowYields     atomic.Int32 // in a row
)

// GiveWay offers the caller's CPU to other runnable threads (sched_yield)
// from a spin-wait past YieldAfter, unless recent offers showed that a
// process other than a peer competes for it (yieldSlow). It reports
// whether another thread ran meanwhile (yieldShared): the caller shares
// its CPU with one that wants it.
func GiveWay() bool {
	now := int64(time.Since(clockBase))
	if now < yieldsOffUntil.Load() {
		return false
	}
	sysx.Yield()
	after := int64(time.Since(clockBase))
	switch {
	case after-now <= int64(yieldSlow):
		if slowYields.Load() != 0 {
			slowYields.Store(0)
		}
	case slowYields.Add(1) >= yieldStreak:
		slowYields.Store(0)
		yieldsOffUntil.Store(after + int64(yieldBackoff))
	}
	return after-now > int64(yieldShared)
}

// yieldShared: a yield that kept its caller off the CPU for longer let
// another thread run. With none waiting, sched_yield returns in well
// under a microsecond; a switch to another thread and back costs more.
const yieldShared = 2 * time.Microsecond

// shortTurn: a sleep woken sooner was a turn about with the waker (see
// waiter.wait). A spin lasts 50 us (DefaultSpin); where the party that
// would end it cannot run, because it waits for this one's CPU, it runs
// once the spin gives up and sleeps, and wakes this one tens of
// microseconds later. A sleep between the calls of a program that does
// work of its own between them lasts longer.
const shortTurn = 200 * time.Microsecond

// waiter paces one blocking operation: spin, then sleep on the futex,
// until ready reports true, the deadline passes or the ring is
// interrupted. A consumer's waiter spins with its spin bit set, and only
// if no other consumer spins; done ends the spin.
type waiter struct {
	deadline  time.Time
	forever   bool
	spin      time.Duration // 0: sleep at once
	spins     int
	spinUntil time.Time
	spinBit   bool
}

func newWaiter(timeout, spin time.Duration) waiter {
	if timeout < 0 {
		return waiter{forever: true, spin: spin}
	}
	return waiter{deadline: time.Now().Add(timeout), spin: spin}
}

// wait returns nil when ready() may have become true, or an error. A
// spinning waiter reads the clock once in 16 calls: a read costs about as
// much as the pause between two checks of the ring.
func (w *waiter) wait(r *Ring, q *waitq, p *Party, ready func() bool) error {
	if err := r.stopped(); err != nil {
		return err
	}
	if w.spins%16 == 0 && !w.forever && !time.Now().Before(w.deadline) {
		return ErrTimeout
	}
	if w.spin > 0 {
		if w.spins == 0 {
			w.spinUntil = time.Now().Add(w.spin)
			if q.spinners != nil {
				if w.spinBit = q.startSpin(p.idx); !w.spinBit {
					w.spinUntil = time.Time{} // another consumer spins: sleep
				}
			}
		}
		w.spins++
		if w.spins%16 != 0 && !w.spinUntil.IsZero() {
			sysx.Pause()
			return nil
		}
		if now := time.Now(); now.Before(w.spinUntil) {
			if w.spinUntil.Sub(now) < w.spin-YieldAfter && GiveWay() {
				p.tookTurns.Store(true)
			}
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
	w.done(r, p) // after register: a pass-on may wake this party too
	watch, spins := false, uint64(0)
	if anySet(q.spinners) && (remaining < 0 || remaining > stuckSpinner) {
		// Another party spins, so producers do not wake this one; if it
		// stops running (SIGSTOP, a debugger) without dying, look again
		// soon.
		watch, spins, remaining = true, q.spins.Load(), stuckSpinner
	}
	seq := q.seq.Load() // pairs with wakeAll's Add
	if ready() {
		return nil
	}
	if err := r.stopped(); err != nil {
		return err
	}
	// A sleep is no spinner's turn, unless the wake came within
	// shortTurn: then the party's thread slept only until the thread that
	// woke it, maybe on its CPU, ran a step (TookTurns).
	p.tookTurns.Store(false)
	slept := time.Now()
	err := sysx.FutexWait(q.seq, seq, remaining)
	if d := time.Since(slept); err == nil && d > yieldShared && d < shortTurn {
		p.tookTurns.Store(true)
	}
	if watch && errors.Is(err, sysx.ErrTimeout) && q.spins.Load() == spins && anySet(q.spinners) {
		// No spin began for stuckSpinner and a bit is still set: its
		// spinner stopped running (a spin lasts Spin). End its spin for
		// it, pass on included, so that producers wake sleepers again
		// while it is stopped. If it runs again, it spins without its
		// bit, which only costs wakes.
		for i := range q.spinners {
			if b := q.spinners[i].Load(); b != 0 {
				q.spinners[i].And(^b)
			}
		}
		r.passOn()
	}
	switch {
	case err == nil, errors.Is(err, sysx.ErrTimeout), errors.Is(err, sysx.ErrInterrupted):
		// Re-check the ring, the stop flag and the deadline.
		return nil
	default:
		return err
	}
}

// stuckSpinner bounds a consumer's sleep while another consumer holds a
// spin bit: a spinner that stops running without dying delays a value
// by at most about this much.
const stuckSpinner = 10 * time.Millisecond

// done ends the waiter's spin, if it holds a spin bit: every way out of a
// consumer's blocking operation calls it.
func (w *waiter) done(r *Ring, p *Party) {
	if w.spinBit {
		w.spinBit = false
		r.endSpin(p.idx)
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
