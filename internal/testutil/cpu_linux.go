package testutil

import (
	"testing"

	"golang.org/x/sys/unix"
)

// CPUs returns the calling thread's CPU mask and the lowest CPU in it; it
// skips the test where the mask cannot be read or is empty.
func CPUs(t testing.TB) (unix.CPUSet, int) {
	t.Helper()
	var mask unix.CPUSet
	if err := unix.SchedGetaffinity(0, &mask); err != nil {
		t.Skipf("no CPU affinity here: %v", err)
	}
	for cpu := 0; cpu < 1024; cpu++ {
		if mask.IsSet(cpu) {
			return mask, cpu
		}
	}
	t.Skip("no CPU in this thread's affinity mask")
	return mask, -1
}
