package executor

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmexec/shmexec/internal/testutil"
)

// threads lists the thread ids of process pid.
func threads(t *testing.T, pid int) []int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		t.Fatal(err)
	}
	tids := make([]int, 0, len(tasks))
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		tids = append(tids, tid)
	}
	return tids
}

// setThreadsMask gives every thread of process pid the CPU mask m.
func setThreadsMask(t *testing.T, pid int, m *unix.CPUSet) {
	t.Helper()
	for _, tid := range threads(t, pid) {
		if err := unix.SchedSetaffinity(tid, m); err != nil && err != unix.ESRCH {
			t.Fatalf("sched_setaffinity(%d): %v", tid, err)
		}
	}
}

// pinCaller locks the test's goroutine to its thread and that thread to
// cpu until the test ends, and returns the mask of cpu alone; the thread
// gets mask all back at the end.
func pinCaller(t *testing.T, cpu int, all unix.CPUSet) unix.CPUSet {
	t.Helper()
	runtime.LockOSThread()
	var one unix.CPUSet
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.SchedSetaffinity(0, &all)
		runtime.UnlockOSThread()
	})
	return one
}

// TestWorkerMovesOffItsCallersCPU puts a worker on the CPU of a caller
// pinned there, then calls back to back: a caller that spins for each
// result and a worker that spins for each job then take turns on that
// CPU, each yielding to the other, while another CPU is free. The worker
// must notice, from its yields and the CPU where the caller's yielded,
// and move away (Stats: Moved), leaving its threads' CPU masks as they
// were.
func TestWorkerMovesOffItsCallersCPU(t *testing.T) {
	all, cpu := testutil.CPUs(t)
	if all.Count() < 2 {
		t.Skip("this process may run on one CPU only")
	}
	p := newPool(t, Config{Workers: 1})
	ctx := context.Background()
	call := func() {
		t.Helper()
		f, err := p.Submit(ctx, "empty", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	call() // the worker is up
	pid := p.Stats().Workers[0].PID

	// The caller's thread stays on cpu. The worker's go there, then get
	// their mask back, and stay until something moves them: the worker
	// itself, or on a busy machine the kernel's load balancer, after which
	// they are put back, as a caller's wake-up would.
	one := pinCaller(t, cpu, all)

	deadline := time.Now().Add(30 * time.Second)
	calls := 0
	for p.Stats().Workers[0].Moved == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls from a caller on CPU %d, the worker put there every 100, and it never moved off", calls, cpu)
		}
		setThreadsMask(t, pid, &one)
		call() // the worker runs on cpu now
		setThreadsMask(t, pid, &all)
		for i := 0; i < 100; i++ {
			call()
		}
		calls += 101
	}
	t.Logf("the worker moved off CPU %d after at most %d calls", cpu, calls)
	for _, tid := range threads(t, pid) {
		var m unix.CPUSet
		if err := unix.SchedGetaffinity(tid, &m); err != nil {
			continue // the thread is gone
		}
		if m != all {
			t.Errorf("worker thread %d has a mask of %d CPUs after the move, want its %d back", tid, m.Count(), all.Count())
		}
	}
}

// TestACallerWhoseSpinRunsOutSaysWhere: a wait whose spin runs out
// before what it waits for comes records the caller thread's CPU in its
// client record (crCPU), as a spin's yield that let another thread run
// does. A tiny job's result comes within microseconds; where it does not,
// the worker may be waiting for the caller's very CPU (worker.separate).
// The spin here is shorter than ring.YieldAfter, so that it never yields.
func TestACallerWhoseSpinRunsOutSaysWhere(t *testing.T) {
	all, cpu := testutil.CPUs(t)
	p := newPool(t, Config{Workers: 1})
	pinCaller(t, cpu, all)
	c := p.client
	rec := c.l.client(c.index).Uint32(crCPU)
	rec.Store(0)
	var never atomic.Uint32
	if c.SpinUntil(&never, 0, 2*time.Microsecond) {
		t.Fatal("SpinUntil reported an event that never came")
	}
	if got := rec.Load(); got != uint32(cpu)+1 {
		t.Fatalf("after a spin from CPU %d ran out, crCPU = %d; want %d", cpu, got, cpu+1)
	}
}
