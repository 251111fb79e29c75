//go:build amd64 || arm64

package sysx

// Pause tells the CPU that the caller spins (one PAUSE or YIELD
// instruction): a spin-wait then gives a sibling hyperthread its cycles
// and leaves the loop cheaply when the awaited store lands. One, not the
// Go runtime's 30: a PAUSE takes tens of cycles on current x86, and 30
// of them between checks slow a ring round trip several times (ring
// BenchmarkRoundTrip/spin shows it). Unlike runtime.Gosched it never
// enters the scheduler, which for a goroutine locked to its thread —
// every call into Go from C, such as a Python binding's — costs two
// context switches.
func Pause()
