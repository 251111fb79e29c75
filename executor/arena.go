package executor

import (
	"errors"
	"fmt"
	"time"
)

// The arena holds payloads too large for a slot's inline space, in
// pageSize pages. The page table has one word per page: 0 when free,
// otherwise the page's owner, claimed by CAS 0 -> owner. Ownership is in
// the word itself, so a dead process's pages are found by their owner and
// freed; no lock is ever held.
//
//	owner word: kind (bits 32-35) | id (bits 0-31)
//	kind 1: input of job slotRef id    kind 2: output of job slotRef id
//	kind 3: party owner id's: a zero-copy buffer (not yet attached to a
//	        job), or an output a collector holds in place (Future.Release)
const (
	pageInput  = 1
	pageOutput = 2
	pageParty  = 3
)

func pageOwner(kind uint64, id uint32) uint64 { return kind<<32 | uint64(id) }

var errArenaFull = errors.New("arena full")

func pagesFor(n uint64) int { return int((n + pageSize - 1) / pageSize) }

// allocPages claims a run of n free pages for owner and returns the first
// page: the lowest run that is free (first fit). Allocations thus reuse
// the pages freed last, which every party has mapped and in its cache,
// and the arena's resident memory stays at the most it ever held at once.
// A search that went on from where the last one ended would walk the
// whole arena while several runs are in use (a map's batches, a stream of
// large inputs), touching fresh pages: a page fault per 4 KiB, and every
// page of the arena resident in the end. The scan reads the page table
// with plain loads and claims only a run that looked free: a failed claim
// would take the table's cache line from the other parties.
func (l *layout) allocPages(n int, owner uint64) (int, error) {
	total := len(l.pages)
	if n <= 0 || n > total {
		return 0, errArenaFull
	}
	for s := 0; s+n <= total; {
		if busy := l.lastBusy(s, n); busy >= 0 {
			s = busy + 1
			continue
		}
		got := 0
		for got < n && l.pages[s+got].CompareAndSwap(0, owner) { // pairs with the CAS in freePages
			got++
		}
		if got == n {
			return s, nil
		}
		for i := 0; i < got; i++ { // another party claimed a page of the run first
			l.pages[s+i].CompareAndSwap(owner, 0)
		}
		s += got + 1
	}
	return 0, errArenaFull
}

// lastBusy returns the last page of [s, s+n) that is owned, or -1.
func (l *layout) lastBusy(s, n int) int {
	for i := s + n - 1; i >= s; i-- {
		if l.pages[i].Load() != 0 {
			return i
		}
	}
	return -1
}

// allocPagesWait is allocPages that waits (with back-off, up to 10 s) for
// space other jobs are still using, or outputs held in place
// (SubmitOptions.InPlace) that their callers are about to release. Clients
// wait for space for inputs, workers for outputs: a worker that failed an
// output at once failed jobs that ran beside other large ones.
// allocPagesNow is allocPages for a caller that must not wait: ErrFull
// while other jobs' inputs and outputs fill the arena, ErrTooLarge when
// it could never hold n pages.
func (l *layout) allocPagesNow(n int, owner uint64) (int, error) {
	first, err := l.allocPages(n, owner)
	if err == nil {
		return first, nil
	}
	if n > len(l.pages) {
		return 0, fmt.Errorf("%w: no arena space for %d pages of %d", ErrTooLarge, n, len(l.pages))
	}
	return 0, fmt.Errorf("%w: no arena space for %d pages now", ErrFull, n)
}

func (l *layout) allocPagesWait(n int, owner uint64) (int, error) {
	delay := 50 * time.Microsecond
	deadline := time.Now().Add(10 * time.Second)
	for {
		first, err := l.allocPages(n, owner)
		if err == nil {
			return first, nil
		}
		if n > len(l.pages) || time.Now().After(deadline) {
			return 0, fmt.Errorf("%w: no arena space for %d pages of %d", ErrTooLarge, n, len(l.pages))
		}
		time.Sleep(delay)
		delay = min(2*delay, 10*time.Millisecond)
	}
}

// setOwner moves pages [first, first+n) from owner from to owner to. It
// fails if any page is not owned by from, and then gives the pages it had
// moved back to from: a failed move changes nothing.
func (l *layout) setOwner(first, n int, from, to uint64) error {
	if first < 0 || n < 0 || first+n > len(l.pages) {
		return fmt.Errorf("pages [%d, +%d) outside the arena", first, n)
	}
	for i := first; i < first+n; i++ {
		if !l.pages[i].CompareAndSwap(from, to) {
			got := l.pages[i].Load()
			for j := first; j < i; j++ {
				l.pages[j].CompareAndSwap(to, from)
			}
			return fmt.Errorf("page %d is owned by %#x, not %#x", i, got, from)
		}
	}
	return nil
}

// freePages frees pages [first, first+n) that owner holds.
func (l *layout) freePages(first, n int, owner uint64) {
	if first < 0 || n < 0 || first+n > len(l.pages) {
		return
	}
	for i := first; i < first+n; i++ {
		l.pages[i].CompareAndSwap(owner, 0)
	}
}

// freeOwned frees every page owned by owner and returns how many. Recovery
// uses it when it cannot trust the refs a dead process wrote.
func (l *layout) freeOwned(owner uint64) int {
	n := 0
	for i := range l.pages {
		if l.pages[i].Load() == owner && l.pages[i].CompareAndSwap(owner, 0) {
			n++
		}
	}
	return n
}

// pagesInUse counts owned pages.
func (l *layout) pagesInUse() int {
	n := 0
	for i := range l.pages {
		if l.pages[i].Load() != 0 {
			n++
		}
	}
	return n
}

// payload returns the bytes a ref names in slot idx: inline (which selects
// the slot's input or output inline area) or arena pages, after checking
// every bound. The ref and length come from shared memory.
func (l *layout) payload(idx int, ref, n uint64, output bool) ([]byte, error) {
	if n > l.g.maxPayload {
		return nil, fmt.Errorf("payload of %d bytes exceeds the pool's %d", n, l.g.maxPayload)
	}
	if ref&refArena == 0 {
		if n > uint64(l.g.inline) {
			return nil, fmt.Errorf("inline payload of %d bytes exceeds %d", n, l.g.inline)
		}
		off := uint64(slotHeader)
		if output {
			off += uint64(l.g.inline)
		}
		return l.slot(idx).Bytes(off, n)
	}
	first := ref &^ refArena
	if first >= uint64(len(l.pages)) {
		return nil, fmt.Errorf("payload page %d outside the arena", first)
	}
	return l.arena.Bytes(first*pageSize, n)
}

// arenaBytes returns the bytes of pages [first, first+n) for writing.
func (l *layout) arenaBytes(first int, n uint64) []byte {
	b, err := l.arena.Bytes(uint64(first)*pageSize, n)
	if err != nil {
		panic(fmt.Sprintf("executor: %v", err)) // first and n come from allocPages
	}
	return b
}

// freeSlotPages frees the arena pages that slot idx's input and output
// refs name. The refs come from shared memory; freePages only frees pages
// that carry this job's owner word, so a bad ref frees nothing it should
// not.
func (l *layout) freeSlotPages(idx int, seq uint16) {
	sl := l.slot(idx)
	ref := slotRef(idx, seq)
	if r := sl.Uint64(slInRef).Load(); r&refArena != 0 {
		l.freePages(int(r&^refArena), max(pagesFor(sl.Uint64(slInLen).Load()), 1), pageOwner(pageInput, ref))
	}
	if r := sl.Uint64(slOutRef).Load(); r&refArena != 0 {
		l.freePages(int(r&^refArena), max(pagesFor(sl.Uint64(slOutLen).Load()), 1), pageOwner(pageOutput, ref))
	}
}
