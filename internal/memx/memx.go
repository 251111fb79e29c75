// Package memx copies large payloads with several threads: one thread's
// copy of a payload far larger than the caches runs at a fraction of the
// memory bandwidth that two or more together reach, and a fresh
// destination's page faults (the kernel zeroing each page) are then taken
// in parallel too.
package memx

import (
	"runtime"
	"sync"
	"unsafe"
)

const (
	// ParallelFrom is the size from which Copy uses more than one thread.
	// Below it a copy takes under a millisecond, and waking helpers would
	// cost more than it saves.
	ParallelFrom = 8 << 20
	// piece is the least each thread copies; split points fall on
	// multiples of it in the destination's address space, so that no two
	// threads fault in the same (huge) page.
	piece = 2 << 20
	// maxThreads caps the threads of one copy: past four, a copy is
	// bound by the memory bus, and other work wants the cores.
	maxThreads = 4
)

// Copy copies src to dst (min of their lengths, as copy does; they must
// not overlap) and returns the number of bytes copied.
func Copy(dst, src []byte) int {
	n := min(len(dst), len(src))
	k := threads(n)
	if k <= 1 {
		return copy(dst, src[:n])
	}
	// Split points: multiples of piece in dst's address space.
	base := uintptr(unsafe.Pointer(unsafe.SliceData(dst)))
	cut := func(i int) int {
		if i == k {
			return n
		}
		at := uintptr(n/k*i) + base
		at = (at + piece - 1) &^ (piece - 1)
		return min(int(at-base), n)
	}
	var wg sync.WaitGroup
	for i := 1; i < k; i++ {
		lo, hi := cut(i), cut(i+1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			copy(dst[lo:hi], src[lo:hi])
		}()
	}
	copy(dst[:cut(1)], src[:cut(1)])
	wg.Wait()
	return n
}

// Clone returns a copy of b, made with Copy; nil for an empty b, as
// append([]byte(nil), b...).
func Clone(b []byte) []byte {
	if len(b) < ParallelFrom {
		return append([]byte(nil), b...)
	}
	out := make([]byte, len(b))
	Copy(out, b)
	return out
}

// threads returns how many threads copy n bytes: one per ParallelFrom/2
// bytes, no more than the CPUs this process may run on, nor maxThreads.
func threads(n int) int {
	if n < ParallelFrom {
		return 1
	}
	return min(n/(ParallelFrom/2), runtime.NumCPU(), maxThreads)
}
