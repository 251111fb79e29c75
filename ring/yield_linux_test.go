package ring

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmexec/shmexec/internal/testutil"
)

// firstCPU is the lowest CPU this process may run on.
func firstCPU(t *testing.T) int {
	_, cpu := testutil.CPUs(t)
	return cpu
}

// pinThread locks the calling goroutine to its thread (for good: the
// thread ends with the goroutine) and that thread to cpu.
func pinThread(cpu int) error {
	runtime.LockOSThread()
	var one unix.CPUSet
	one.Set(cpu)
	return unix.SchedSetaffinity(0, &one) // 0: this thread
}

// pingPongOnOneCPU runs up to turns round trips between two parties
// pinned to cpu, over two rings whose spins never end in a sleep, for at
// most budget; it returns how many were done, how long they took, and
// whether the echoing party's spins reported a yield to another thread
// (TookTurns).
func pingPongOnOneCPU(t *testing.T, cpu, turns int, budget time.Duration) (int, time.Duration, bool) {
	t.Helper()
	f := newFixture(t, 4, 2)
	back, err := Init(heapView(int(Size(4))), 8, 4)
	if err != nil {
		t.Fatal(err)
	}
	f.r.Spin, back.Spin = time.Hour, time.Hour
	pinger, ponger := f.join(t, 0), f.join(t, 1)
	const stop = 1 << 20
	echoed, result := make(chan error, 1), make(chan error, 1)
	var yielded atomic.Bool
	go func() {
		err := pinThread(cpu)
		for err == nil {
			var v uint32
			if v, err = f.r.Dequeue(ponger, time.Minute); err == nil && v == stop {
				break
			}
			if err == nil {
				err = back.Enqueue(ponger, v, time.Minute)
			}
		}
		yielded.Store(ponger.TookTurns()) // before the send that ends the wait for it
		echoed <- err
	}()
	var n int
	var took time.Duration
	go func() {
		if err := pinThread(cpu); err != nil {
			result <- err
			return
		}
		start := time.Now()
		for ; n < turns && time.Since(start) < budget; n++ {
			if err := f.r.Enqueue(pinger, uint32(n), time.Minute); err != nil {
				result <- err
				return
			}
			if v, err := back.Dequeue(pinger, time.Minute); err != nil || v != uint32(n) {
				t.Errorf("turn %d: got %d, %v", n, v, err)
				break
			}
		}
		took = time.Since(start)
		result <- f.r.Enqueue(pinger, stop, time.Minute)
	}()
	for _, c := range []chan error{result, echoed} {
		select {
		case err := <-c:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(time.Minute):
			t.Fatal("the ping-pong did not end within a minute")
		}
	}
	return n, took, yielded.Load()
}

// TestSpinnersOnOneCPUTakeTurns pins two parties that ping-pong to one
// CPU, with a spin that never ends in a sleep: each waiter must give the
// CPU to the party it waits for, or every turn waits for the scheduler
// to preempt the spinner (milliseconds, where a yield takes
// microseconds). This is the case of a pool with more spinning processes
// than cores. An attempt during which yields came back late (a host
// that stole the CPU meanwhile) turns yields off for a second, as it
// would in use; it is not counted, and the test tries again (and skips
// if the CPU stays that busy).
func TestSpinnersOnOneCPUTakeTurns(t *testing.T) {
	cpu := firstCPU(t)
	const turns, budget, attempts = 2000, 400 * time.Millisecond, 10
	for i := 0; i < attempts; i++ {
		if i > 0 {
			time.Sleep(100 * time.Millisecond) // a neighbour's burst may pass
		}
		yieldsOffUntil.Store(0)
		slowYields.Store(0)
		n, took, yielded := pingPongOnOneCPU(t, cpu, turns, budget)
		if yieldsOffUntil.Load() != 0 {
			t.Logf("attempt %d: yields came back late, and went off (%d round trips in %v)", i+1, n, took)
			continue
		}
		if n < turns {
			t.Fatalf("%d of %d round trips in %v with both parties on CPU %d: the spinners do not give way", n, turns, took, cpu)
		}
		if !yielded {
			t.Fatalf("%d round trips with both parties on CPU %d, and the echoing party's waits never reported a yield to another thread", n, cpu)
		}
		t.Logf("%d round trips on CPU %d in %v", turns, cpu, took)
		return
	}
	// Every attempt shared the CPU with something busier than a peer (the
	// back-off's own case, TestGiveWayBacksOffFromAHog): nothing learnt.
	t.Skipf("in each of %d attempts yields came back late: CPU %d is busy with other work", attempts, cpu)
}

// TestGiveWayBacksOffFromAHog: a CPU-bound thread on the same CPU wins
// a spinner's yield and keeps the CPU for its slice; after that the
// process's spins stop yielding for yieldBackoff, or every later yield
// would cost a slice too.
func TestGiveWayBacksOffFromAHog(t *testing.T) {
	cpu := firstCPU(t)
	var running, done atomic.Bool
	hog := make(chan error, 1)
	go func() {
		err := pinThread(cpu)
		running.Store(true)
		for err == nil && !done.Load() {
		}
		hog <- err
	}()
	checked := make(chan error, 1)
	go func() { checked <- backsOff(cpu, &running) }() // on a thread of its own: pinned, it ends with the goroutine
	err := <-checked
	done.Store(true)
	if herr := <-hog; herr != nil {
		t.Fatal(herr)
	}
	yieldsOffUntil.Store(0)
	if err != nil {
		t.Fatal(err)
	}
}

// backsOff pins this goroutine to cpu beside a running hog and checks
// that GiveWay turns yields off once it has lost the CPU to it.
func backsOff(cpu int, running *atomic.Bool) error {
	if err := pinThread(cpu); err != nil {
		return err
	}
	for !running.Load() {
		GiveWay()
	}
	yieldsOffUntil.Store(0)
	offers := 0
	for deadline := time.Now().Add(5 * time.Second); yieldsOffUntil.Load() == 0; offers++ {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d yields beside a CPU-bound thread on CPU %d, none of them lost the CPU for %v", offers, cpu, yieldSlow)
		}
		GiveWay()
	}
	start := time.Now()
	for i := 0; i < 100; i++ {
		GiveWay()
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		return fmt.Errorf("100 offers after the back-off took %v: they still yield to the hog", d)
	}
	if off := time.Duration(yieldsOffUntil.Load()) - time.Since(clockBase); off < yieldBackoff/2 {
		return fmt.Errorf("yields are off for %v more, want about %v", off, yieldBackoff)
	}
	return nil
}
