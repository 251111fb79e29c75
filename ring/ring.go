package ring

import (
	"fmt"
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/shmexec/shmexec/internal/crashpoint"
	"github.com/shmexec/shmexec/shm"
)

// Ring region layout (every field on its own 64-byte cache line, so that
// producers and consumers do not false-share):
//
//	off  field
//	  0  header: magic "RNG1" (uint32), log2 capacity (uint32), ring id (uint32)
//	 64  head: next producer ticket (uint64)     - producers CAS it forward
//	128  tail: next consumer ticket (uint64)     - consumers CAS it forward
//	192  not-empty futex word (uint32)           - producers bump it to wake consumers
//	256  not-empty sleepers: 4 x uint64 bitmask  - a bit per sleeping consumer party
//	320  not-full futex word (uint32)            - consumers bump it to wake producers
//	384  not-full sleepers: 4 x uint64 bitmask   - a bit per sleeping producer party
//	448  not-empty spinners: 4 x uint64 bitmask - a bit per consumer polling before it sleeps,
//	     then spins begun (uint64)              - tells a stuck spinner from a busy one
//	512  cells: capacity x uint64 (see cell.go)
//
// head and tail are hints that anyone may move forward past a cell that is
// already claimed ("helping"); the claim itself is the CAS on the cell,
// which records its owner. So a party that dies between claiming and
// moving head or tail blocks nobody.
const (
	ringMagic     = 0x31474e52 // "RNG1"
	offHeader     = 0
	offHead       = 64
	offTail       = 128
	offNotEmpty   = 192
	offEmptySleep = 256
	offNotFull    = 320
	offFullSleep  = 384
	offEmptySpin  = 448
	offCells      = 512

	// MinCapacity and MaxCapacity bound a ring's number of cells.
	MinCapacity = 2
	MaxCapacity = 1 << 24
)

// Size returns the region size a ring of the given capacity needs.
func Size(capacity int) uint64 { return offCells + 8*uint64(capacity) }

// Ring is one process's handle on a ring in shared memory. Its methods may
// be called from many goroutines, each with its own Party.
type Ring struct {
	id       uint16
	capacity uint64
	mask     uint64
	shift    uint

	head, tail *atomic.Uint64
	cells      []atomic.Uint64
	notEmpty   waitq // consumers sleep here
	notFull    waitq // producers sleep here

	// Spin is how long a blocking operation keeps re-checking the ring
	// before it sleeps on the futex. Set it before use; 0 sleeps at once.
	Spin time.Duration

	stop atomic.Pointer[error]
}

// DefaultSpin is the initial Spin: long enough to catch the reply of a
// peer that answers at once (a round trip of a tiny job is a few
// microseconds), short enough that a waiter on a 2-core machine soon gives
// the core back. A spinning waiter pauses the CPU between checks and does
// not yield to the Go scheduler: for a goroutine locked to its thread (a
// call from C) each yield costs two context switches.
const DefaultSpin = 50 * time.Microsecond

// YieldAfter is how long a spin-wait runs before it also offers its CPU
// to other runnable threads (GiveWay, once per clock read). With more
// spinning processes than cores — a pool of n workers and its caller on
// n cores — the scheduler sometimes puts a waiter on the core of the
// party it waits for; a spin that never yields then keeps that party off
// the core for the whole spin, on every round trip, until the load
// balancer moves one of them. Before YieldAfter the spin stays pure: the
// reply of a busy peer on another core comes sooner.
const YieldAfter = 5 * time.Microsecond

// Init lays out an empty ring of the given capacity (a power of two) in a
// zeroed region and returns a handle. The creator calls it once, before
// the segment is shared.
func Init(v shm.View, id uint16, capacity int) (*Ring, error) {
	if capacity < MinCapacity || capacity > MaxCapacity || capacity&(capacity-1) != 0 {
		return nil, fmt.Errorf("ring: capacity %d is not a power of two in [%d, %d]", capacity, MinCapacity, MaxCapacity)
	}
	if uint64(v.Len()) < Size(capacity) {
		return nil, fmt.Errorf("ring: region of %d bytes is too small for %d cells", v.Len(), capacity)
	}
	v.Uint32(offHeader + 4).Store(uint32(bits.TrailingZeros(uint(capacity))))
	v.Uint32(offHeader + 8).Store(uint32(id))
	v.Uint32(offHeader).Store(ringMagic) // last: Open checks it
	return Open(v)
}

// Open returns a handle on the ring that Init laid out in v, after
// checking its header against the region.
func Open(v shm.View) (*Ring, error) {
	if v.Len() < offCells {
		return nil, fmt.Errorf("%w: ring region of %d bytes is smaller than its header", ErrCorrupt, v.Len())
	}
	if m := v.Uint32(offHeader).Load(); m != ringMagic {
		return nil, fmt.Errorf("%w: ring magic %#x", ErrCorrupt, m)
	}
	log2 := v.Uint32(offHeader + 4).Load()
	id := v.Uint32(offHeader + 8).Load()
	if log2 < 1 || 1<<log2 > MaxCapacity {
		return nil, fmt.Errorf("%w: ring capacity 2^%d", ErrCorrupt, log2)
	}
	if id > 0xffff {
		return nil, fmt.Errorf("%w: ring id %d", ErrCorrupt, id)
	}
	capacity := uint64(1) << log2
	if uint64(v.Len()) < Size(int(capacity)) {
		return nil, fmt.Errorf("%w: ring of %d cells does not fit its %d-byte region", ErrCorrupt, capacity, v.Len())
	}
	r := &Ring{
		id:       uint16(id),
		capacity: capacity,
		mask:     capacity - 1,
		shift:    uint(log2),
		head:     v.Uint64(offHead),
		tail:     v.Uint64(offTail),
		cells:    v.Uint64s(offCells, int(capacity)),
		notEmpty: newWaitq(v, offNotEmpty, offEmptySleep, offEmptySpin),
		notFull:  newWaitq(v, offNotFull, offFullSleep, 0),
		Spin:     DefaultSpin,
	}
	return r, nil
}

// ID returns the ring's id, as given to Init.
func (r *Ring) ID() uint16 { return r.id }

// Capacity returns the number of cells.
func (r *Ring) Capacity() int { return int(r.capacity) }

// Len returns how many tickets are between tail and head: an estimate of
// the values queued, for counters. It may be stale by the time it returns.
func (r *Ring) Len() int {
	t := r.tail.Load() // pairs with the CAS in advance
	h := r.head.Load() // pairs with the CAS in advance
	if h < t {
		return 0
	}
	return int(h - t)
}

func (r *Ring) lap(ticket uint64) uint32 { return uint32(ticket>>r.shift) & lapMask }

func (r *Ring) cell(ticket uint64) *atomic.Uint64 { return &r.cells[ticket&r.mask] }

// advance moves a ticket counter (head or tail) forward to at least to.
// Counters only grow, so a CAS that fails because another party moved it
// further is fine.
func advance(ctr *atomic.Uint64, to uint64) {
	for {
		cur := ctr.Load() // pairs with the CAS below in other parties
		if cur >= to || ctr.CompareAndSwap(cur, to) {
			return
		}
	}
}

// tryEnqueue claims up to len(vs) (<= MaxBatch) consecutive cells at the
// head and publishes vs into them. It returns how many it enqueued, or
// ErrFull if it could enqueue none.
func (r *Ring) tryEnqueue(p *Party, vs []uint32) (int, error) {
	for {
		h := r.head.Load() // pairs with advance's CAS
		L := r.lap(h)
		w := r.cell(h).Load() // pairs with the claim/publish/release of this cell by other parties
		st, d := cellState(w), lapDiff(cellLap(w), L)
		switch {
		case st > StateSkip || (st == StateEmpty || st == StateSkip) && cellPayload(w) != 0:
			return 0, fmt.Errorf("%w: producer at ticket %d found cell word %#x", ErrCorrupt, h, w)
		case d == 0 && st == StateEmpty:
		case d >= 0:
			// Already claimed at this lap, or further: head is stale.
			r.head.CompareAndSwap(h, h+1)
			continue
		case d == -1 && st != StateEmpty:
			// The cell still holds the previous lap's ticket.
			return 0, ErrFull
		default:
			return 0, fmt.Errorf("%w: producer at ticket %d found %v", ErrCorrupt, h, mustDecode(w))
		}

		// Step intent: announce ticket and values before claiming.
		p.announce(opEnq, r.id, h, vs)
		crashpoint.Hit("ring.enq.intent")

		// Step claim: each cell CAS Empty(L) -> Claimed(L, owner).
		m := 0
		for m < len(vs) {
			t := h + uint64(m)
			lap := r.lap(t)
			if !r.cell(t).CompareAndSwap(makeCell(StateEmpty, lap, 0), makeCell(StateClaimed, lap, p.owner)) {
				break
			}
			m++
			crashpoint.Hit("ring.enq.claim")
		}
		if m == 0 {
			p.pending.Store(0) // lost the race for cell h; pairs with the load in Recover
			continue
		}
		advance(r.head, h+uint64(m))

		// Step claimed: from here on, recovery knows which cells are ours.
		p.setPhase(opEnq, r.id, phaseClaimed, len(vs), m)
		crashpoint.Hit("ring.enq.claimed")

		// Step publish: only the owner writes a claimed cell.
		for i := 0; i < m; i++ {
			t := h + uint64(i)
			r.cell(t).Store(makeCell(StateFull, r.lap(t), vs[i])) // pairs with the consumer's load and CAS
			crashpoint.Hit("ring.enq.publish")
		}

		// Step done: the record keeps saying what was enqueued until the
		// party's next operation or Release, so that a caller who dies
		// before recording "enqueued" in its own state can be told.
		p.setPhase(opEnq, r.id, phaseEnqueued, len(vs), m)
		crashpoint.Hit("ring.enq.done")
		r.notEmpty.wake()
		return m, nil
	}
}

// tryDequeue takes up to len(buf) (<= MaxBatch) consecutive values at the
// tail. It returns how many it took, or ErrEmpty if none was ready.
func (r *Ring) tryDequeue(p *Party, buf []uint32) (int, error) {
	for {
		t := r.tail.Load() // pairs with advance's CAS
		L := r.lap(t)
		w := r.cell(t).Load() // pairs with the producer's publish store
		st, d := cellState(w), lapDiff(cellLap(w), L)
		switch {
		case st > StateSkip || (st == StateEmpty || st == StateSkip) && cellPayload(w) != 0:
			return 0, fmt.Errorf("%w: consumer at ticket %d found cell word %#x", ErrCorrupt, t, w)
		case d == 0 && st == StateFull:
		case d == 0 && st == StateSkip:
			// A dead producer's claim, turned into a skip by recovery:
			// step over it.
			if r.cell(t).CompareAndSwap(w, makeCell(StateEmpty, L+1, 0)) {
				r.tail.CompareAndSwap(t, t+1)
				r.notFull.wake()
			}
			continue
		case d == 0 && (st == StateEmpty || st == StateClaimed), d == -1:
			// Nothing published at the tail yet. (At d == -1 a consumer of
			// the previous lap has moved the tail on but not yet released
			// this cell, so no producer can have filled it.)
			return 0, ErrEmpty
		case d >= 0:
			// Taken at this lap, or further: tail is stale.
			r.tail.CompareAndSwap(t, t+1)
			continue
		default:
			return 0, fmt.Errorf("%w: consumer at ticket %d found %v", ErrCorrupt, t, mustDecode(w))
		}

		// Read ahead: how many consecutive cells are full at their lap.
		buf[0] = cellPayload(w)
		n := 1
		for n < len(buf) {
			u := t + uint64(n)
			w2 := r.cell(u).Load() // pairs with the producer's publish store
			if w2 != makeCell(StateFull, r.lap(u), cellPayload(w2)) {
				break
			}
			buf[n] = cellPayload(w2)
			n++
		}

		// Step intent.
		p.announce(opDeq, r.id, t, buf[:n])
		crashpoint.Hit("ring.deq.intent")

		// Step claim: each cell CAS Full(L, v) -> Taken(L, owner).
		m := 0
		for m < n {
			u := t + uint64(m)
			lap := r.lap(u)
			if !r.cell(u).CompareAndSwap(makeCell(StateFull, lap, buf[m]), makeCell(StateTaken, lap, p.owner)) {
				break
			}
			m++
			crashpoint.Hit("ring.deq.claim")
		}
		if m == 0 {
			p.pending.Store(0) // pairs with the load in Recover
			continue
		}

		// Step hold: the values are ours, the cells not yet released.
		p.setPhase(opDeq, r.id, phaseHold, n, m)
		crashpoint.Hit("ring.deq.hold")
		advance(r.tail, t+uint64(m))

		// Step release: hand the cells to the next lap's producers.
		for i := 0; i < m; i++ {
			u := t + uint64(i)
			r.cell(u).Store(makeCell(StateEmpty, r.lap(u)+1, 0)) // pairs with the producer's load and claim CAS
			crashpoint.Hit("ring.deq.release")
		}

		// Step done: the values are the caller's; custody stays in the
		// record until the party's next operation or Release.
		p.setPhase(opDeq, r.id, phaseDelivered, n, m)
		crashpoint.Hit("ring.deq.done")
		r.notFull.wake()
		return m, nil
	}
}

func mustDecode(w uint64) Cell {
	c, _ := DecodeCell(w)
	return c
}

// Debug describes the ring's counters and the cells at the tail and head,
// for error messages and diagnostics.
func (r *Ring) Debug() string {
	h, t := r.head.Load(), r.tail.Load()
	return fmt.Sprintf("ring %d: tail %d (cell %v), head %d (cell %v), capacity %d",
		r.id, t, mustDecode(r.cell(t).Load()), h, mustDecode(r.cell(h).Load()), r.capacity)
}

// Snapshot returns the values of the Full cells between tail and head,
// in ticket order, and how many cells there are in other states. It is
// for audits of a quiet ring (no operation in flight); on a busy ring it
// is a blur.
func (r *Ring) Snapshot() (values []uint32, other int) {
	t, h := r.tail.Load(), r.head.Load()
	if h > r.capacity && t < h-r.capacity {
		// tail lags (a consumer died before helping it on): the tickets
		// before head-capacity were all taken.
		t = h - r.capacity
	}
	for u := t; u < h; u++ {
		w := r.cell(u).Load()
		switch d := lapDiff(cellLap(w), r.lap(u)); {
		case d == 0 && cellState(w) == StateFull:
			values = append(values, cellPayload(w))
		case d > 0:
			// taken and reused: counted at its own ticket
		default:
			other++
		}
	}
	return values, other
}
