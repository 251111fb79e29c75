package ring

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSpinnersOnOneCPUTakeTurns pins two parties that ping-pong over
// two rings to one CPU, with a spin that never ends in a sleep: each
// waiter must give the CPU to the party it waits for, or every turn waits
// for the scheduler to preempt the spinner (milliseconds, where a yield
// takes microseconds). This is the case of a pool with more spinning
// processes than cores.
func TestSpinnersOnOneCPUTakeTurns(t *testing.T) {
	var mine unix.CPUSet
	if err := unix.SchedGetaffinity(0, &mine); err != nil {
		t.Skipf("no CPU affinity here: %v", err)
	}
	cpu := -1
	for i := 0; i < 1024 && cpu < 0; i++ {
		if mine.IsSet(i) {
			cpu = i
		}
	}
	f := newFixture(t, 4, 2)
	back, err := Init(heapView(int(Size(4))), 8, 4)
	if err != nil {
		t.Fatal(err)
	}
	f.r.Spin, back.Spin = time.Hour, time.Hour
	pinger, ponger := f.join(t, 0), f.join(t, 1)

	pin := func() error {
		runtime.LockOSThread() // left locked: the thread ends with its goroutine
		var one unix.CPUSet
		one.Set(cpu)
		return unix.SchedSetaffinity(0, &one) // 0: this thread
	}
	const turns, budget, stop = 2000, 2 * time.Second, 1 << 20
	echoed := make(chan error, 1)
	go func() {
		if err := pin(); err != nil {
			echoed <- err
			return
		}
		for {
			v, err := f.r.Dequeue(ponger, time.Minute)
			if err == nil && v != stop {
				err = back.Enqueue(ponger, v, time.Minute)
			}
			if err != nil || v == stop {
				echoed <- err
				return
			}
		}
	}()
	result := make(chan error, 1)
	var took time.Duration
	go func() {
		if err := pin(); err != nil {
			result <- err
			return
		}
		start, n := time.Now(), 0
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
		if n < turns {
			took = 0
			t.Errorf("%d of %d round trips in %v with both parties on CPU %d: the spinners do not give way", n, turns, took, cpu)
		}
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
	if took > 0 {
		t.Logf("%d round trips on CPU %d in %v", turns, cpu, took)
	}
}
