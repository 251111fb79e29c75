package shm

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// View is a bounds-checked window on part of a segment.
//
// Two kinds of accessors: Uint64, Uint32 and Sub take offsets computed by
// the caller's own code from validated sizes and panic on misuse (a bug);
// Bytes and Check take offsets read from shared memory and return an error.
// The zero View is empty.
type View struct {
	b    []byte
	base uint64 // offset of b[0] in the segment, for messages
}

// ViewOf wraps ordinary memory as a View, for tests of code that runs on
// shared memory. b must be 8-byte aligned.
func ViewOf(b []byte) View {
	if len(b) > 0 && uintptr(unsafe.Pointer(&b[0]))%8 != 0 {
		panic("shm: ViewOf needs 8-byte aligned memory")
	}
	return View{b: b}
}

// Len returns the size of the view in bytes.
func (v View) Len() int { return len(v.b) }

// Base returns the view's offset in its segment.
func (v View) Base() uint64 { return v.base }

func (v View) mustWord(off, size int) unsafe.Pointer {
	if off < 0 || off > len(v.b)-size || off%size != 0 {
		panic(fmt.Sprintf("shm: %d-byte word at offset %d outside or misaligned in a %d-byte view", size, off, len(v.b)))
	}
	return unsafe.Pointer(&v.b[off])
}

// Uint64 returns the 64-bit word at off for atomic access. It panics if off
// is out of bounds or not 8-byte aligned.
func (v View) Uint64(off int) *atomic.Uint64 { return (*atomic.Uint64)(v.mustWord(off, 8)) }

// Uint32 returns the 32-bit word at off for atomic access. It panics if off
// is out of bounds or not 4-byte aligned.
func (v View) Uint32(off int) *atomic.Uint32 { return (*atomic.Uint32)(v.mustWord(off, 4)) }

// Sub returns the view [off, off+n). It panics if that is not inside v.
func (v View) Sub(off, n int) View {
	if off < 0 || n < 0 || off > len(v.b)-n {
		panic(fmt.Sprintf("shm: sub-view [%d, +%d) outside a %d-byte view", off, n, len(v.b)))
	}
	return View{b: v.b[off : off+n : off+n], base: v.base + uint64(off)}
}

// Check reports an error unless [off, off+n) lies inside the view. Use it
// on offsets and lengths read from shared memory.
func (v View) Check(off, n uint64) error {
	if off > uint64(len(v.b)) || n > uint64(len(v.b))-off {
		return fmt.Errorf("range [%d, +%d) outside the %d-byte region at segment offset %d", off, n, len(v.b), v.base)
	}
	return nil
}

// Bytes returns [off, off+n) of the view, or an error if that range is not
// inside it. Use it on offsets and lengths read from shared memory.
func (v View) Bytes(off, n uint64) ([]byte, error) {
	if err := v.Check(off, n); err != nil {
		return nil, err
	}
	return v.b[off : off+n : off+n], nil
}

// Uint64s returns n consecutive 64-bit words starting at off, for atomic
// access. It panics if they are not inside v or off is not 8-byte aligned.
func (v View) Uint64s(off, n int) []atomic.Uint64 {
	if n == 0 {
		return nil
	}
	if n < 0 || off < 0 || off%8 != 0 || off > len(v.b) || n > (len(v.b)-off)/8 {
		panic(fmt.Sprintf("shm: %d words at offset %d outside or misaligned in a %d-byte view", n, off, len(v.b)))
	}
	return unsafe.Slice((*atomic.Uint64)(unsafe.Pointer(&v.b[off])), n)
}
