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

// The accessors are on every path through the rings and the slots,
// several times a job, so they are kept small enough to inline: what
// they panic with or return on a bad offset is a value whose message is
// formatted only when it is read (wordError, subError, rangeError).

// Uint64 returns the 64-bit word at off for atomic access. It panics if off
// is out of bounds or not 8-byte aligned.
func (v View) Uint64(off int) *atomic.Uint64 {
	if off < 0 || off > len(v.b)-8 || off&7 != 0 {
		panic(wordError{off, 8, len(v.b)})
	}
	return (*atomic.Uint64)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(v.b)), off))
}

// Uint32 returns the 32-bit word at off for atomic access. It panics if off
// is out of bounds or not 4-byte aligned.
func (v View) Uint32(off int) *atomic.Uint32 {
	if off < 0 || off > len(v.b)-4 || off&3 != 0 {
		panic(wordError{off, 4, len(v.b)})
	}
	return (*atomic.Uint32)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(v.b)), off))
}

// wordError and subError are the panics of a misused View.
type wordError struct{ off, size, n int }

func (e wordError) Error() string {
	return fmt.Sprintf("shm: %d-byte word at offset %d outside or misaligned in a %d-byte view", e.size, e.off, e.n)
}

type subError struct{ off, n, size int }

func (e subError) Error() string {
	return fmt.Sprintf("shm: sub-view [%d, +%d) outside a %d-byte view", e.off, e.n, e.size)
}

// Sub returns the view [off, off+n). It panics if that is not inside v.
func (v View) Sub(off, n int) View {
	if off < 0 || n < 0 || off > len(v.b)-n {
		panic(subError{off, n, len(v.b)})
	}
	return View{b: v.b[off : off+n : off+n], base: v.base + uint64(off)}
}

// Check reports an error unless [off, off+n) lies inside the view. Use it
// on offsets and lengths read from shared memory.
func (v View) Check(off, n uint64) error {
	if off > uint64(len(v.b)) || n > uint64(len(v.b))-off {
		return rangeError{off, n, uint64(len(v.b)), v.base}
	}
	return nil
}

// rangeError is Check's error, formatted when it is read.
type rangeError struct{ off, n, size, base uint64 }

func (e rangeError) Error() string {
	return fmt.Sprintf("range [%d, +%d) outside the %d-byte region at segment offset %d", e.off, e.n, e.size, e.base)
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
