package ring

import (
	"testing"
	"time"
)

// sleeper dequeues one value in a goroutine with a long timeout and
// reports it, or an error, on the returned channel.
func sleeper(f fixture, p *Party, timeout time.Duration) <-chan error {
	errc := make(chan error, 1)
	go func() {
		_, err := f.r.Dequeue(p, timeout)
		errc <- err
	}()
	return errc
}

// sleeping waits until party idx has its sleeper bit set on not-empty.
func sleeping(t *testing.T, f fixture, idx int) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); f.r.notEmpty.sleepers[idx/64].Load()&(1<<(idx%64)) == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("party %d did not go to sleep within 3s", idx)
		}
		time.Sleep(time.Millisecond)
	}
}

// spinFixture is a ring of 4 cells whose waiters sleep at once, and
// three parties (indices 0, 1, 2).
func spinFixture(t *testing.T) (fixture, *Party, *Party, *Party) {
	f := newFixture(t, 4, 3)
	f.r.Spin = 0
	return f, f.join(t, 0), f.join(t, 1), f.join(t, 2)
}

// asleep starts a dequeue by p (party index idx) that times out after
// timeout, and waits until it sleeps.
func asleep(t *testing.T, f fixture, p *Party, idx int, timeout time.Duration) <-chan error {
	errc := sleeper(f, p, timeout)
	sleeping(t, f, idx)
	return errc
}

// enqueueWakes enqueues v and fails unless the enqueue woke the
// sleepers (bumped the futex word), as it must when no consumer spins.
func enqueueWakes(t *testing.T, f fixture, prod *Party, v uint32, what string) {
	t.Helper()
	seq := f.r.notEmpty.seq.Load()
	if err := f.r.TryEnqueue(prod, v); err != nil {
		t.Fatal(err)
	}
	if f.r.notEmpty.seq.Load() == seq {
		t.Fatalf("%s did not wake the sleeper", what)
	}
}

func within(t *testing.T, errc <-chan error, d time.Duration, what string) {
	t.Helper()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(d):
		t.Fatalf("%s: not within %v", what, d)
	}
}

// While a consumer spins, an enqueue does not wake sleepers (the futex
// word stays put); the spinner then takes one value of two and its
// EndSpin passes the other on to the sleeper at once.
func TestSpinnerSkipsWakesAndPassesOn(t *testing.T) {
	f, prod, spinner, other := spinFixture(t)
	errc := asleep(t, f, other, 2, 20*time.Second)
	if !f.r.StartSpin(spinner) {
		t.Fatal("StartSpin with no other spinner did not set the bit")
	}
	if f.r.StartSpin(other) {
		t.Fatal("a second spinner was let in")
	}
	seq := f.r.notEmpty.seq.Load()
	for v := uint32(1); v <= 2; v++ {
		if err := f.r.TryEnqueue(prod, v); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.r.notEmpty.seq.Load(); got != seq {
		t.Fatalf("enqueue with a spinner bumped the futex word %d -> %d (a wake)", seq, got)
	}
	select {
	case err := <-errc:
		t.Fatalf("the sleeper woke while the spinner spun: %v", err)
	case <-time.After(30 * time.Millisecond):
	}
	if _, err := f.r.TryDequeue(spinner); err != nil {
		t.Fatal(err)
	}
	f.r.EndSpin(spinner)
	within(t, errc, 2*time.Second, "the second value after the spinner's EndSpin")
}

// A spinner that never ends its spin (stopped, not dead) delays a
// consumer that slept after it began by about stuckSpinner, not by the
// consumer's own timeout; that consumer then ends the stuck spin, so
// that the next values wake sleepers at once.
func TestStuckSpinnerDelaysBriefly(t *testing.T) {
	f, prod, spinner, other := spinFixture(t)
	f.r.StartSpin(spinner)
	errc := asleep(t, f, other, 2, 20*time.Second)
	if err := f.r.TryEnqueue(prod, 9); err != nil {
		t.Fatal(err)
	}
	within(t, errc, 20*stuckSpinner+time.Second, "a value behind a stuck spinner")
	for deadline := time.Now().Add(3 * time.Second); anySet(f.r.notEmpty.spinners); {
		if time.Now().After(deadline) {
			t.Fatal("the stuck spinner's bit was not cleared")
		}
		time.Sleep(time.Millisecond)
	}
	errc = asleep(t, f, other, 2, 20*time.Second)
	enqueueWakes(t, f, prod, 10, "an enqueue after the stuck spin was ended")
	within(t, errc, 2*time.Second, "a value after the stuck spin was ended")
}

// A spinner that keeps starting new spins is not taken for stuck.
func TestBusySpinnerIsNotStuck(t *testing.T) {
	f, _, spinner, other := spinFixture(t)
	f.r.StartSpin(spinner)
	errc := sleeper(f, other, 3*stuckSpinner)
	stop := time.Now().Add(5 * stuckSpinner)
	for time.Now().Before(stop) { // a spinner between jobs: end, start again
		f.r.EndSpin(spinner)
		f.r.StartSpin(spinner)
		time.Sleep(100 * time.Microsecond)
	}
	if !anySet(f.r.notEmpty.spinners) {
		t.Fatal("a busy spinner's bit was taken from it")
	}
	f.r.EndSpin(spinner)
	if err := <-errc; err != ErrTimeout {
		t.Fatalf("the sleeper on an empty ring: %v", err)
	}
}

// A dead spinner's bit is cleared by recovery, which wakes the sleepers.
func TestRecoveryClearsDeadSpinner(t *testing.T) {
	f, spinner, prod, other := spinFixture(t) // Recover below names party 0
	errc := asleep(t, f, other, 2, 20*time.Second)
	f.r.StartSpin(spinner)
	if err := f.r.TryEnqueue(prod, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := f.r.Recover(f.pt, 0, spinner.gen); err != nil {
		t.Fatal(err)
	}
	if f.r.notEmpty.spinners[0].Load() != 0 {
		t.Fatal("recovery left the dead party's spin bit")
	}
	within(t, errc, 2*time.Second, "the value after the spinner's recovery")
}

// A blocking dequeue spins with its bit set and clears it on every way
// out: with a value, and on a timeout.
func TestDequeueSpinBit(t *testing.T) {
	f := newFixture(t, 4, 2)
	prod, cons := f.join(t, 0), f.join(t, 1)
	f.r.Spin = 5 * time.Millisecond
	if _, err := f.r.Dequeue(cons, 20*time.Millisecond); err != ErrTimeout {
		t.Fatalf("dequeue on an empty ring: %v", err)
	}
	if f.r.notEmpty.spinners[0].Load() != 0 {
		t.Fatal("a timed-out dequeue left its spin bit")
	}
	// A spin that outlasts the watch below: with a 5 ms spin, a loaded
	// machine (make test, -race) ran the whole spin while this goroutine
	// was off the CPU, and the dequeue went to sleep unseen (6 runs in 40
	// with three CPU hogs).
	f.r.Spin = 10 * time.Second
	done := make(chan error, 1)
	go func() {
		_, err := f.r.Dequeue(cons, 5*time.Second)
		done <- err
	}()
	for deadline := time.Now().Add(3 * time.Second); f.r.notEmpty.spinners[0].Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("a blocking dequeue did not set its spin bit")
		}
	}
	if err := f.r.TryEnqueue(prod, 1); err != nil {
		t.Fatal(err)
	}
	within(t, done, 3*time.Second, "dequeue while spinning")
	if f.r.notEmpty.spinners[0].Load() != 0 {
		t.Fatal("a dequeue that got its value left its spin bit")
	}
}

// SleepReady never spins, even with Spin set and no other spinner: it
// sets no spin bit, so that a producer's enqueue wakes it (the futex word
// moves), and it returns once a value is ready, or ErrTimeout.
func TestSleepReadySleepsAtOnce(t *testing.T) {
	f := newFixture(t, 4, 2)
	prod, cons := f.join(t, 0), f.join(t, 1)
	f.r.Spin = time.Second
	start := time.Now()
	if err := f.r.SleepReady(cons, 20*time.Millisecond); err != ErrTimeout {
		t.Fatalf("SleepReady on an empty ring: %v", err)
	}
	if d := time.Since(start); d > time.Second/2 {
		t.Fatalf("SleepReady timed out after %v: it spun", d)
	}
	done := make(chan error, 1)
	go func() { done <- f.r.SleepReady(cons, 20*time.Second) }()
	sleeping(t, f, 1)
	if f.r.notEmpty.spinners[0].Load() != 0 {
		t.Fatal("SleepReady set a spin bit")
	}
	enqueueWakes(t, f, prod, 7, "an enqueue beside SleepReady")
	within(t, done, 3*time.Second, "SleepReady with a value enqueued")
	if v, err := f.r.TryDequeue(cons); err != nil || v != 7 {
		t.Fatalf("SleepReady took the value: %v, %v", v, err)
	}
}

// A spinning wait reads the clock once in 16 checks, yet a zero timeout
// still fails at the first check, and a short one on time.
func TestSpinningWaitKeepsItsDeadline(t *testing.T) {
	f := newFixture(t, 4, 2)
	cons := f.join(t, 1)
	f.r.Spin = time.Second
	for _, timeout := range []time.Duration{0, 5 * time.Millisecond} {
		start := time.Now()
		if _, err := f.r.Dequeue(cons, timeout); err != ErrTimeout {
			t.Fatalf("Dequeue(%v) on an empty ring: %v", timeout, err)
		}
		if d := time.Since(start); d > timeout+200*time.Millisecond {
			t.Fatalf("Dequeue(%v) returned after %v", timeout, d)
		}
	}
}
