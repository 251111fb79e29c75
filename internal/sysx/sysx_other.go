//go:build !linux

package sysx

import (
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
)

func notSupported(what string) error {
	return fmt.Errorf("%s on %s: %w", what, runtime.GOOS, ErrNotSupported)
}

func FutexWait(addr *atomic.Uint32, val uint32, timeout time.Duration) error {
	return notSupported("futex wait")
}
func FutexWake(addr *atomic.Uint32, n int) (int, error) { return 0, notSupported("futex wake") }
func MemfdCreate(name string, size int64) (*os.File, error) {
	return nil, notSupported("memfd_create")
}
func CheckSealed(f *os.File) error        { return notSupported("file seals") }
func PidfdOpen(pid int) (*os.File, error) { return nil, notSupported("pidfd_open") }
func PidfdWaitExit(pidfd *os.File, timeout time.Duration) (bool, error) {
	return false, notSupported("pidfd wait")
}
func PidfdKill(pidfd *os.File, sig syscall.Signal) error { return notSupported("pidfd_send_signal") }
func SetPdeathsig(sig syscall.Signal) error              { return notSupported("PR_SET_PDEATHSIG") }
func Getppid() int                                       { return os.Getppid() }

// Yield does nothing here (see sysx_linux.go).
func Yield() {}

// CPU is unknown here (see sysx_linux.go).
func CPU() int { return -1 }

// MoveOff does nothing here (see sysx_linux.go).
func MoveOff() bool { return false }

// Monotonic returns a process-local monotonic clock in nanoseconds.
func Monotonic() int64 { return int64(time.Since(start)) }

var start = time.Now()

func Dup(f *os.File) (*os.File, error) { return nil, notSupported("dup") }

func DieBySignal(sig syscall.Signal) error { return notSupported("die by signal") }

func CloseInherited(keep []int) error { return notSupported("close inherited descriptors") }

func DupFD(fd int, name string) (*os.File, error) { return nil, notSupported("dup") }

func MoveFD(from, to int) error { return notSupported("dup3") }

func SignalName(sig syscall.Signal) string { return fmt.Sprintf("signal %d", int(sig)) }
