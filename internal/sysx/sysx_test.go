//go:build linux

package sysx

import (
	"errors"
	"os/exec"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestFutexWaitTimeout(t *testing.T) {
	var w atomic.Uint32
	start := time.Now()
	if err := FutexWait(&w, 0, 20*time.Millisecond); !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrInterrupted) {
		t.Fatalf("FutexWait = %v, want a timeout", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("a 20ms wait took %v", el)
	}
}

func TestFutexValueMismatch(t *testing.T) {
	var w atomic.Uint32
	w.Store(1)
	if err := FutexWait(&w, 0, time.Second); err != nil {
		t.Fatalf("FutexWait on a changed value = %v, want nil at once", err)
	}
}

func TestFutexWake(t *testing.T) {
	var w atomic.Uint32
	done := make(chan error, 1)
	go func() {
		for w.Load() == 0 {
			if err := FutexWait(&w, 0, 5*time.Second); err != nil && !errors.Is(err, ErrInterrupted) {
				done <- err
				return
			}
		}
		done <- nil
	}()
	time.Sleep(10 * time.Millisecond)
	w.Store(1)
	if _, err := FutexWake(&w, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("waiter not woken within 3s")
	}
}

func TestMemfdSealed(t *testing.T) {
	f, err := MemfdCreate("t", 8192)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := CheckSealed(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(4096); err == nil {
		t.Fatal("a sealed memfd could be shrunk")
	}
}

func TestPidfd(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep binary:", err)
	}
	defer cmd.Wait()
	pfd, err := PidfdOpen(cmd.Process.Pid)
	if err != nil {
		cmd.Process.Kill()
		t.Fatal(err)
	}
	defer pfd.Close()
	if exited, err := PidfdWaitExit(pfd, 10*time.Millisecond); exited || err != nil {
		t.Fatalf("live process: exited=%v err=%v", exited, err)
	}
	if err := PidfdKill(pfd, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if exited, err := PidfdWaitExit(pfd, 5*time.Second); !exited || err != nil {
		t.Fatalf("killed process: exited=%v err=%v", exited, err)
	}
}

func TestMoveOff(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var mask unix.CPUSet
	if err := unix.SchedGetaffinity(0, &mask); err != nil {
		t.Fatal(err)
	}
	before := CPU()
	if before < 0 || !mask.IsSet(before) {
		t.Fatalf("CPU() = %d, not in the thread's mask", before)
	}
	if mask.Count() < 2 {
		if MoveOff() {
			t.Fatal("MoveOff moved a thread whose mask allows one CPU")
		}
		t.Skip("the thread may run on one CPU only")
	}
	for i := 0; i < 10; i++ {
		from := CPU()
		if !MoveOff() {
			t.Fatalf("MoveOff did not move the thread off CPU %d (mask of %d CPUs)", from, mask.Count())
		}
		if now := CPU(); now == from {
			t.Fatalf("MoveOff reported a move, but the thread is still on CPU %d", from)
		}
		var after unix.CPUSet
		if err := unix.SchedGetaffinity(0, &after); err != nil {
			t.Fatal(err)
		}
		if after != mask {
			t.Fatalf("MoveOff left the mask at %v CPUs, want it as it was (%v)", after.Count(), mask.Count())
		}
	}
}
