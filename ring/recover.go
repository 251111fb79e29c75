package ring

import (
	"errors"
	"fmt"
)

// OrphanKind says what became of a value that a dead party was moving.
type OrphanKind uint8

const (
	// NotEnqueued: a dead producer's value that is not in the ring (its
	// claimed cell, if any, is now a skip cell).
	NotEnqueued OrphanKind = iota + 1
	// Undelivered: a dead consumer had taken the value out of the ring but
	// its dequeue never returned it, so the consumer never acted on it.
	Undelivered
	// MaybeDelivered: a dead consumer's dequeue had returned the value and
	// the consumer had not yet released it: it may or may not have acted
	// on it. This is the one case where a value can be seen twice.
	MaybeDelivered
	// Enqueued: a dead producer's last enqueue had completed and it had not
	// yet released it: the value is in the ring (or already consumed).
	// Nothing is to be done about it; the caller may need to know.
	Enqueued
)

func (k OrphanKind) String() string {
	switch k {
	case NotEnqueued:
		return "not-enqueued"
	case Undelivered:
		return "undelivered"
	case MaybeDelivered:
		return "maybe-delivered"
	case Enqueued:
		return "enqueued"
	}
	return fmt.Sprintf("orphan-kind-%d", uint8(k))
}

// Orphan is a value that recovery took from a dead party.
type Orphan struct {
	Ring  uint16
	Value uint32
	Kind  OrphanKind
}

// Recover repairs what the dead party idx of generation gen left in
// rings and returns the values it was moving. gen must come from the
// supervisor's own memory, not from the party's record.
//
// Call it only once the party is certainly dead (its process has exited),
// from one goroutine of the supervisor. It is idempotent: if it is
// interrupted it can run again, and a second run after a complete one
// returns nothing. Other parties may go on using the rings meanwhile.
//
// It returns the orphans even when it also returns an error; an error
// means the party's record or a cell was corrupt (the dead party wrote
// garbage), and recovery did what it safely could.
func Recover(pt *Parties, idx int, gen uint16, rings []*Ring) ([]Orphan, error) {
	rec := pt.record(idx)
	owner := uint32(idx)<<16 | uint32(gen)
	pendingWord := rec.Uint64(recPending)
	var orphans []Orphan
	var errs []error

	pw := pendingWord.Load() // pairs with the party's stores in announce and setPhase
	pd := decodePending(pw)
	if pd.phase != phaseIdle {
		t := rec.Uint64(recTicket).Load()
		var vals [MaxBatch]uint32
		for i := range vals {
			vals[i] = rec.Uint32(recValues + 4*i).Load()
		}
		r := findRing(rings, pd.ring)
		switch {
		case r == nil:
			errs = append(errs, fmt.Errorf("%w: party %d pending on unknown ring %d", ErrCorrupt, idx, pd.ring))
		case pd.n == 0 || pd.n > MaxBatch || pd.m > pd.n:
			errs = append(errs, fmt.Errorf("%w: party %d pending %+v", ErrCorrupt, idx, pd))
		default:
			o, err := r.recoverPending(pendingWord, pd, t, vals[:pd.n], owner)
			orphans = append(orphans, o...)
			if err != nil {
				errs = append(errs, fmt.Errorf("party %d: %w", idx, err))
			}
		}
	}

	// Safety net: with a well-formed record nothing is left, but a dead
	// party may have scribbled on its record. No cell may stay owned by it.
	for _, r := range rings {
		if n := r.sweep(owner); n > 0 {
			errs = append(errs, fmt.Errorf("%w: party %d held %d cells of ring %d that its record did not name; their values are lost",
				ErrCorrupt, idx, n, r.id))
		}
		r.notEmpty.unregister(uint16(idx))
		r.notFull.unregister(uint16(idx))
		r.notEmpty.spinners[idx/64].And(^uint64(1 << (idx % 64))) // producers skipped wakes for it
		r.WakeAll()
	}
	pendingWord.Store(0) // last: a rerun before this point redoes the same work
	return orphans, errors.Join(errs...)
}

func findRing(rings []*Ring, id uint16) *Ring {
	for _, r := range rings {
		if r.id == id {
			return r
		}
	}
	return nil
}

func bit(i int) uint16 { return 1 << uint(i) }

// recoverPending handles the operation named in a dead party's record.
// See docs/PROTOCOL.md, "Recovery".
func (r *Ring) recoverPending(pendingWord interface{ Store(uint64) }, pd pending, t uint64, vals []uint32, owner uint32) ([]Orphan, error) {
	var orphans []Orphan
	add := func(mask uint16, kind OrphanKind) {
		for i := range vals {
			if mask&bit(i) != 0 {
				orphans = append(orphans, Orphan{Ring: r.id, Value: vals[i], Kind: kind})
			}
		}
	}
	all := uint16(1<<len(vals) - 1)
	ownedBy := func(i int, state uint8) bool {
		u := t + uint64(i)
		return r.cell(u).Load() == makeCell(state, r.lap(u), owner)
	}
	switch {
	case pd.op == opEnq && (pd.phase == phaseClaiming || pd.phase == phaseClaimed || pd.phase == phaseAborting):
		mask := pd.mask
		switch pd.phase {
		case phaseClaiming:
			// Nothing was published; any cell we claimed becomes a skip.
			mask = all
		case phaseClaimed:
			// Cells still claimed were not published; values past m were
			// never claimed. Decide once and record it, so that a rerun
			// after the skips below decides the same.
			mask = 0
			for i := range vals {
				if i >= int(pd.m) || ownedBy(i, StateClaimed) {
					mask |= bit(i)
				}
			}
			pd.phase, pd.mask = phaseAborting, mask
			pendingWord.Store(pd.word())
		}
		for i := range vals {
			if mask&bit(i) != 0 {
				u := t + uint64(i)
				lap := r.lap(u)
				r.cell(u).CompareAndSwap(makeCell(StateClaimed, lap, owner), makeCell(StateSkip, lap, 0))
			}
		}
		add(mask, NotEnqueued)
	case pd.op == opEnq && pd.phase == phaseEnqueued:
		add(uint16(1<<pd.m-1), Enqueued)
	case pd.op == opDeq && (pd.phase == phaseClaiming || pd.phase == phaseReclaim):
		mask := pd.mask
		if pd.phase == phaseClaiming {
			mask = 0
			for i := range vals {
				if ownedBy(i, StateTaken) {
					mask |= bit(i)
				}
			}
			pd.phase, pd.mask = phaseReclaim, mask
			pendingWord.Store(pd.word())
		}
		r.release(t, mask, owner)
		add(mask, Undelivered)
	case pd.op == opDeq && pd.phase == phaseHold:
		mask := uint16(1<<pd.m - 1)
		r.release(t, mask, owner)
		add(mask, Undelivered)
	case pd.op == opDeq && pd.phase == phaseDelivered:
		add(uint16(1<<pd.m-1), MaybeDelivered)
	default:
		return nil, fmt.Errorf("%w: pending %+v", ErrCorrupt, pd)
	}
	return orphans, nil
}

// release hands the cells in mask that owner still holds to the next lap.
func (r *Ring) release(t uint64, mask uint16, owner uint32) {
	for i := 0; i < MaxBatch; i++ {
		if mask&bit(i) != 0 {
			u := t + uint64(i)
			lap := r.lap(u)
			r.cell(u).CompareAndSwap(makeCell(StateTaken, lap, owner), makeCell(StateEmpty, lap+1, 0))
		}
	}
}

// sweep frees every cell still owned by owner and returns how many it
// found.
func (r *Ring) sweep(owner uint32) int {
	n := 0
	for i := range r.cells {
		w := r.cells[i].Load()
		if cellPayload(w) != owner {
			continue
		}
		lap := cellLap(w)
		switch cellState(w) {
		case StateClaimed:
			if r.cells[i].CompareAndSwap(w, makeCell(StateSkip, lap, 0)) {
				n++
			}
		case StateTaken:
			if r.cells[i].CompareAndSwap(w, makeCell(StateEmpty, lap+1, 0)) {
				n++
			}
		}
	}
	return n
}

// Recover is the package-level Recover for a single ring, for tests.
func (r *Ring) Recover(pt *Parties, idx int, gen uint16) ([]Orphan, error) {
	return Recover(pt, idx, gen, []*Ring{r})
}
