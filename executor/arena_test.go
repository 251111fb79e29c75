package executor

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

func testArena(pages int) *layout { return &layout{pages: make([]atomic.Uint64, pages)} }

// A map submits its batches before any is freed. The next map must get
// the same pages again, not walk on through the arena (fresh pages fault
// in on first touch, and all of them stay resident).
func TestAllocPagesReusesTheLowestFreePages(t *testing.T) {
	l := testArena(64)
	for round := 0; round < 5; round++ {
		var got []int
		for i := 0; i < 13; i++ {
			first, err := l.allocPages(1, pageOwner(pageInput, uint32(i)))
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, first)
		}
		for i, first := range got {
			if first != i {
				t.Fatalf("round %d: run %d at page %d, want %d (pages %v)", round, i, first, i, got)
			}
			l.freePages(first, 1, pageOwner(pageInput, uint32(i)))
		}
	}
}

func TestAllocPagesFirstFit(t *testing.T) {
	l := testArena(8)
	a, b, c := pageOwner(pageInput, 1), pageOwner(pageInput, 2), pageOwner(pageOutput, 3)
	mustAlloc := func(n int, owner uint64, want int) {
		t.Helper()
		first, err := l.allocPages(n, owner)
		if err != nil || first != want {
			t.Fatalf("allocPages(%d) = %d, %v; want %d", n, first, err, want)
		}
	}
	mustAlloc(2, a, 0)
	mustAlloc(1, b, 2)
	mustAlloc(2, c, 3)
	l.freePages(2, 1, b)
	mustAlloc(2, b, 5) // the one-page hole is too small
	mustAlloc(1, b, 2) // and is filled by the next single page
	if _, err := l.allocPages(2, a); !errors.Is(err, errArenaFull) {
		t.Fatalf("a 2-page run with 1 page free: %v, want errArenaFull", err)
	}
	mustAlloc(1, a, 7)
	if _, err := l.allocPages(9, a); !errors.Is(err, errArenaFull) {
		t.Fatalf("a run larger than the arena: %v, want errArenaFull", err)
	}
	for i := range l.pages {
		if l.pages[i].Load() == 0 {
			t.Fatalf("page %d free in a full arena", i)
		}
	}
}

// Parties that allocate and free at once never get the same page.
func TestAllocPagesConcurrent(t *testing.T) {
	l := testArena(32)
	var wg sync.WaitGroup
	var clash atomic.Int64
	for p := 0; p < 4; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				n := 1 + (i+p)%3
				owner := pageOwner(pageInput, uint32(p<<16|i))
				first, err := l.allocPages(n, owner)
				if err != nil {
					continue // full for now
				}
				for j := first; j < first+n; j++ {
					if l.pages[j].Load() != owner {
						clash.Add(1)
					}
				}
				l.freePages(first, n, owner)
			}
		}(p)
	}
	wg.Wait()
	if clash.Load() != 0 {
		t.Fatalf("%d pages held by another party during their owner's use", clash.Load())
	}
	if n := l.pagesInUse(); n != 0 {
		t.Fatalf("%d pages still in use", n)
	}
}

// The worst case of a first-fit scan: the arena's first half in use by
// one-page runs.
func BenchmarkAllocPagesCrowded(b *testing.B) {
	l := testArena(8192)
	for i := 0; i < 4096; i++ {
		if _, err := l.allocPages(1, pageOwner(pageInput, uint32(i))); err != nil {
			b.Fatal(err)
		}
	}
	owner := pageOwner(pageOutput, 1)
	for b.Loop() {
		first, err := l.allocPages(1, owner)
		if err != nil {
			b.Fatal(err)
		}
		l.freePages(first, 1, owner)
	}
}
