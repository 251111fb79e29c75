//go:build linux

package sysx

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// futex operations, process-shared (no FUTEX_PRIVATE_FLAG).
const (
	futexWait = 0 // FUTEX_WAIT
	futexWake = 1 // FUTEX_WAKE
)

// FutexWait sleeps while *addr == val, for at most timeout (timeout < 0:
// no limit). It returns nil when woken or when *addr != val on entry,
// ErrTimeout when the timeout ran out, ErrInterrupted on EINTR. A nil
// return does not mean the condition changed: callers re-check.
//
// It uses Syscall6, not RawSyscall, so the Go scheduler knows the thread
// is blocked.
func FutexWait(addr *atomic.Uint32, val uint32, timeout time.Duration) error {
	var ts *unix.Timespec
	if timeout >= 0 {
		t := unix.NsecToTimespec(int64(timeout))
		ts = &t
	}
	_, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWait,
		uintptr(val), uintptr(unsafe.Pointer(ts)), 0, 0)
	switch e {
	case 0, unix.EAGAIN:
		return nil
	case unix.ETIMEDOUT:
		return ErrTimeout
	case unix.EINTR:
		return ErrInterrupted
	default:
		return fmt.Errorf("futex wait: %w", e)
	}
}

// FutexWake wakes up to n waiters sleeping on addr (in any process) and
// returns how many it woke.
func FutexWake(addr *atomic.Uint32, n int) (int, error) {
	r, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWake,
		uintptr(n), 0, 0, 0)
	if e != 0 {
		return 0, fmt.Errorf("futex wake: %w", e)
	}
	return int(r), nil
}

// MemfdCreate creates an anonymous memory file of the given size that
// allows sealing, sizes it and seals it against shrinking and growing (and
// against further seals), so that no process holding it can cut the
// mapping short under another (which would raise SIGBUS in the reader).
// The file is close-on-exec; pass it to children explicitly.
func MemfdCreate(name string, size int64) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+name)
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, fmt.Errorf("size memfd: %w", err)
	}
	seals := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal memfd: %w", err)
	}
	return f, nil
}

// CheckSealed reports an error unless f is sealed against shrinking and
// growing.
func CheckSealed(f *os.File) error {
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		return fmt.Errorf("get seals: %w", err)
	}
	want := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW
	if seals&want != want {
		return fmt.Errorf("file is not sealed against resizing (seals %#x)", seals)
	}
	return nil
}

// PidfdOpen returns a pidfd for pid. The pidfd becomes readable when the
// process exits; unlike the pid, it cannot come to name another process.
func PidfdOpen(pid int) (*os.File, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("pidfd:%d", pid)), nil
}

// PidfdWaitExit blocks until the process behind pidfd has exited or the
// timeout runs out (timeout < 0: no limit). It reports whether the process
// has exited. It does not reap the process.
func PidfdWaitExit(pidfd *os.File, timeout time.Duration) (bool, error) {
	ms := -1
	if timeout >= 0 {
		ms = int((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	fds := []unix.PollFd{{Fd: int32(pidfd.Fd()), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, ms)
		if errors.Is(err, unix.EINTR) {
			return false, ErrInterrupted
		}
		if err != nil {
			return false, fmt.Errorf("poll pidfd: %w", err)
		}
		return n > 0, nil
	}
}

// PidfdKill sends sig to the process behind pidfd. Unlike kill(2) it
// cannot reach a different process that reused the pid.
func PidfdKill(pidfd *os.File, sig syscall.Signal) error {
	if err := unix.PidfdSendSignal(int(pidfd.Fd()), sig, nil, 0); err != nil {
		return fmt.Errorf("pidfd_send_signal: %w", err)
	}
	return nil
}

// SetPdeathsig asks the kernel to send sig to this process when the thread
// that created it exits. Call it on a locked OS thread in the child; see
// prctl(2) PR_SET_PDEATHSIG.
func SetPdeathsig(sig syscall.Signal) error {
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(sig), 0, 0, 0); err != nil {
		return fmt.Errorf("prctl PR_SET_PDEATHSIG: %w", err)
	}
	return nil
}

// Getppid returns the parent's pid (after a parent death it is the
// reaper's).
func Getppid() int { return unix.Getppid() }

// Yield gives the caller's CPU to another runnable thread, if one waits
// for it (sched_yield); otherwise it returns at once. A spin-wait calls it
// now and then, so that the party it waits for, when the scheduler put it
// on the same CPU, gets to run. Raw: it never blocks, and the Go
// scheduler need not know.
func Yield() { unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0) }

// CPU returns the number of the CPU the calling thread runs on (getcpu),
// or -1. The thread may be moved the moment after.
func CPU() int {
	var cpu uint32
	if _, _, e := unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), 0, 0); e != 0 {
		return -1
	}
	return int(cpu)
}

// MoveOff moves the calling thread off the CPU it runs on, to another CPU
// its affinity mask allows, and leaves the mask as it was: the kernel
// migrates a thread at once when its mask stops allowing its CPU, and
// widening the mask again does not move it back. It reports whether the
// thread moved: not where the mask allows one CPU only. Another thread
// that changes this thread's mask at the same moment may find its change
// undone.
func MoveOff() bool {
	runtime.LockOSThread() // both calls on the same thread
	defer runtime.UnlockOSThread()
	var mask unix.CPUSet
	if unix.SchedGetaffinity(0, &mask) != nil {
		return false
	}
	cpu := CPU()
	if cpu < 0 || !mask.IsSet(cpu) || mask.Count() < 2 {
		return false
	}
	others := mask
	others.Clear(cpu)
	if unix.SchedSetaffinity(0, &others) != nil {
		return false
	}
	// Widening the mask back fails only if its CPUs went away meanwhile
	// (a cpuset shrunk): the thread then keeps a part of its old mask.
	unix.SchedSetaffinity(0, &mask)
	return true
}

// Monotonic returns CLOCK_MONOTONIC in nanoseconds. Unlike Go's monotonic
// reading it is the same clock in every process, so deadlines written to
// shared memory mean the same to all.
func Monotonic() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// Dup returns a close-on-exec duplicate of f's descriptor.
func Dup(f *os.File) (*os.File, error) { return DupFD(int(f.Fd()), f.Name()) }

// DieBySignal ends this process with sig, as the kernel does for a
// signal whose action is the default: the action is set back to SIG_DFL
// (the Go runtime's handler is replaced, not just told to stop
// forwarding, as os/signal.Reset would), the signal is unblocked in this
// thread and sent to it. It returns only if sig's default action does not
// end a process, or the sending failed.
func DieBySignal(sig syscall.Signal) error {
	// struct kernel_sigaction: handler, flags, restorer, mask.
	var act [4]uint64 // all zero: SIG_DFL, no flags, empty mask
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act[0])), 0, 8, 0, 0); e != 0 {
		return fmt.Errorf("sigaction %v: %w", sig, e)
	}
	var set unix.Sigset_t
	set.Val[(sig-1)/64] |= 1 << ((uint(sig) - 1) % 64)
	if err := unix.PthreadSigmask(unix.SIG_UNBLOCK, &set, nil); err != nil {
		return fmt.Errorf("unblock %v: %w", sig, err)
	}
	return unix.Tgkill(unix.Getpid(), unix.Gettid(), sig)
}

// CloseInherited closes every descriptor above standard error that is
// not close-on-exec and not in keep: in a process just started by exec,
// those it inherited. Descriptors opened since (by the Go runtime, or
// Python's) are close-on-exec and stay open.
func CloseInherited(keep []int) error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 || slices.Contains(keep, fd) {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			continue // gone (the directory's own), or not inherited
		}
		if err := unix.Close(fd); err != nil {
			errs = append(errs, fmt.Errorf("close %d: %w", fd, err))
		}
	}
	return errors.Join(errs...)
}

// DupFD returns a close-on-exec duplicate of descriptor fd as a file of
// its own: the caller's fd stays the caller's.
func DupFD(fd int, name string) (*os.File, error) {
	n, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup %d: %w", fd, err)
	}
	return os.NewFile(uintptr(n), name), nil
}

// MoveFD makes descriptor to a copy of from (closing what to was) and
// closes from.
func MoveFD(from, to int) error {
	if err := unix.Dup3(from, to, 0); err != nil {
		return fmt.Errorf("dup %d onto %d: %w", from, to, err)
	}
	return unix.Close(from)
}

// SignalName is sig's name, "SIGKILL", or "signal N" for one without.
func SignalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return n
	}
	return fmt.Sprintf("signal %d", int(sig))
}
