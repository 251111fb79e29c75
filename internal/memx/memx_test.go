package memx

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestCopy(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 4095, ParallelFrom - 1, ParallelFrom, ParallelFrom + 12345, 3*ParallelFrom + 7} {
		src := make([]byte, n+64)
		for i := range src {
			src[i] = byte(r.Uint32())
		}
		for _, off := range []int{0, 1, 63} { // destinations not aligned to anything
			dst := make([]byte, n+off+1)
			dst[n+off] = 0xAB
			if got := Copy(dst[off:n+off], src[3:n+3]); got != n {
				t.Fatalf("n %d: Copy returned %d", n, got)
			}
			if !bytes.Equal(dst[off:n+off], src[3:n+3]) {
				t.Fatalf("n %d off %d: copy differs", n, off)
			}
			if dst[n+off] != 0xAB {
				t.Fatalf("n %d off %d: wrote past the end", n, off)
			}
		}
	}
	// The shorter of the two, as copy.
	if got := Copy(make([]byte, 3), []byte("abcdef")); got != 3 {
		t.Fatalf("Copy into 3 bytes returned %d", got)
	}
	if got := Copy(make([]byte, ParallelFrom*2), make([]byte, ParallelFrom+1)); got != ParallelFrom+1 {
		t.Fatalf("Copy of a shorter source returned %d", got)
	}
}

func TestClone(t *testing.T) {
	if Clone(nil) != nil || Clone([]byte{}) != nil {
		t.Fatal("Clone of an empty slice is not nil")
	}
	for _, n := range []int{5, ParallelFrom + 3} {
		b := bytes.Repeat([]byte{7, 8, 9}, n/3+1)[:n]
		c := Clone(b)
		if !bytes.Equal(b, c) || &c[0] == &b[0] {
			t.Fatalf("Clone of %d bytes: not an equal copy", n)
		}
	}
}

func TestThreads(t *testing.T) {
	if k := threads(ParallelFrom - 1); k != 1 {
		t.Fatalf("threads below ParallelFrom: %d", k)
	}
	if k := threads(1 << 40); k < 1 || k > maxThreads {
		t.Fatalf("threads for 1 TiB: %d", k)
	}
}

// Copy against the built-in copy, warm and into fresh memory.
func BenchmarkCopy(b *testing.B) {
	for _, n := range []int{4 << 20, 8 << 20, 16 << 20, 64 << 20} {
		src := bytes.Repeat([]byte{1}, n) // written: an untouched source reads the kernel's zero page
		dst := bytes.Repeat([]byte{2}, n)
		b.Run(fmt.Sprintf("copy/%dMiB", n>>20), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				copy(dst, src)
			}
		})
		b.Run(fmt.Sprintf("Copy/%dMiB", n>>20), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				Copy(dst, src)
			}
		})
	}
}
