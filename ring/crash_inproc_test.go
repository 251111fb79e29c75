//go:build shmexec_crash

package ring

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shmexec/shmexec/internal/crashpoint"
)

type died struct{ point string }

// runUntil runs op with crash point point armed to "kill" (panic out of)
// the operation at its nth pass. It reports whether the point was hit.
func runUntil(point string, nth int, op func()) (hit bool) {
	count := 0
	crashpoint.SetHook(func(name string) {
		if name == point {
			count++
			if count == nth {
				panic(died{point})
			}
		}
	})
	defer crashpoint.SetHook(nil)
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(died); !ok {
				panic(r)
			}
			hit = true
		}
	}()
	op()
	return false
}

// flowsAgain checks that the ring still moves values in order after a
// recovery, across more than one lap.
func flowsAgain(t *testing.T, f fixture, p *Party) {
	t.Helper()
	for i := uint32(0); i < uint32(3*f.r.Capacity()); i++ {
		if err := f.r.Enqueue(p, 1000+i, time.Second); err != nil {
			t.Fatalf("after recovery, enqueue: %v", err)
		}
		v, err := f.r.Dequeue(p, time.Second)
		if err != nil || v != 1000+i {
			t.Fatalf("after recovery, dequeue = %d, %v; want %d", v, err, 1000+i)
		}
	}
}

// TestCrashPointsInProcess stops an operation at every ring step (on heap
// memory, by panicking out of it), recovers the party and checks that
// nothing is lost and the ring flows again. The cross-process test does
// the same with SIGKILL.
func TestCrashPointsInProcess(t *testing.T) {
	for _, point := range crashpoint.Names {
		if !strings.HasPrefix(point, "ring.") {
			continue
		}
		for _, batch := range []int{1, 5} {
			for _, nth := range []int{1, 2} {
				f := newFixture(t, 8, 2)
				victim, helper := f.join(t, 0), f.join(t, 1)
				// Move the ring off lap 0 so that laps wrap in the test.
				for i := 0; i < 11; i++ {
					f.r.TryEnqueue(helper, 99)
					f.r.TryDequeue(helper)
				}
				if strings.HasPrefix(point, "ring.enq.") {
					testProducerDeath(t, f, victim, helper, point, batch, nth)
				} else {
					testConsumerDeath(t, f, victim, helper, point, batch, nth)
				}
			}
		}
	}
}

func testProducerDeath(t *testing.T, f fixture, victim, helper *Party, point string, batch, nth int) {
	var received []uint32
	var completed, handed uint32
	hit := runUntil(point, nth, func() {
		for next := uint32(1); next <= 40; {
			chunk := make([]uint32, 0, batch)
			for i := 0; i < batch; i++ {
				chunk = append(chunk, next+uint32(i))
			}
			handed = chunk[len(chunk)-1]
			n, err := f.r.TryEnqueueBatch(victim, chunk)
			if errors.Is(err, ErrFull) {
				received = append(received, f.drain(t, helper)...)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			next += uint32(n)
			completed = next - 1
		}
	})
	if !hit {
		t.Fatalf("%s@%d batch %d: crash point never reached", point, nth, batch)
	}
	orphans, err := f.r.Recover(f.pt, 0, victim.gen)
	if err != nil {
		t.Fatalf("%s: recover: %v", point, err)
	}
	received = append(received, f.drain(t, helper)...)
	if err := checkProducerDeath(received, orphans, completed, handed); err != nil {
		t.Fatalf("%s@%d batch %d: %v", point, nth, batch, err)
	}
	flowsAgain(t, f, helper)
}

func testConsumerDeath(t *testing.T, f fixture, victim, helper *Party, point string, batch, nth int) {
	const total = 8
	for v := uint32(1); v <= total; v++ {
		if err := f.r.TryEnqueue(helper, v); err != nil {
			t.Fatal(err)
		}
	}
	var logged []uint32
	hit := runUntil(point, nth, func() {
		buf := make([]uint32, batch)
		for {
			n, err := f.r.TryDequeueBatch(victim, buf)
			if errors.Is(err, ErrEmpty) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			logged = append(logged, buf[:n]...)
			victim.Release()
		}
	})
	if !hit {
		t.Fatalf("%s@%d batch %d: crash point never reached", point, nth, batch)
	}
	orphans, err := f.r.Recover(f.pt, 0, victim.gen)
	if err != nil {
		t.Fatalf("%s: recover: %v", point, err)
	}
	again, err := f.r.Recover(f.pt, 0, victim.gen)
	if err != nil || len(again) != 0 {
		t.Fatalf("%s: second recover = %v, %v; want nothing", point, again, err)
	}
	rest := f.drain(t, helper)
	if err := checkConsumerDeath(logged, rest, orphans, total); err != nil {
		t.Fatalf("%s@%d batch %d: %v", point, nth, batch, err)
	}
	flowsAgain(t, f, helper)
}
