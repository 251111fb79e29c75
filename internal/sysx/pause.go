//go:build amd64 || arm64

package sysx

// Pause tells the CPU that the caller spins (30 PAUSE or YIELD
// instructions, as the Go runtime's own spin-waits use): a spin-wait then
// gives a sibling hyperthread its cycles and leaves the loop cheaply when
// the awaited store lands. Unlike runtime.Gosched it never enters the
// scheduler, which for a goroutine locked to its thread — every call into
// Go from C, such as a Python binding's — costs two context switches.
func Pause()
