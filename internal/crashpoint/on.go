//go:build shmexec_crash

package crashpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// Enabled reports whether this build has crash points.
const Enabled = true

var (
	armed     string
	remaining atomic.Int64
	hook      atomic.Pointer[func(string)]
)

// SetHook makes Hit call f (for every point) before anything else, or
// stops that when f is nil. In-process tests use it to stop an operation
// at a step by panicking, to check recovery without a real process.
func SetHook(f func(name string)) {
	if f == nil {
		hook.Store(nil)
		return
	}
	hook.Store(&f)
}

func init() {
	spec := os.Getenv(EnvVar)
	if spec == "" {
		return
	}
	name, count := spec, int64(1)
	if i := strings.LastIndexByte(spec, '@'); i >= 0 {
		n, err := strconv.ParseInt(spec[i+1:], 10, 64)
		if err != nil || n < 1 {
			panic(fmt.Sprintf("crashpoint: bad %s=%q", EnvVar, spec))
		}
		name, count = spec[:i], n
	}
	if !Known(name) {
		panic(fmt.Sprintf("crashpoint: %s names unknown point %q", EnvVar, name))
	}
	armed = name
	remaining.Store(count)
}

// Hit kills the process with SIGKILL if name is the armed point and this
// is the n-th pass.
func Hit(name string) {
	if f := hook.Load(); f != nil {
		(*f)(name)
	}
	if armed == "" || name != armed {
		return
	}
	if remaining.Add(-1) == 0 {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL cannot be caught; never run past the point
	}
}
