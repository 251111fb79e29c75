package executor

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/shmexec/shmexec/internal/testutil"
)

// TestChaosSoak (make soak): a stream of jobs (SHMEXEC_CHAOS_JOBS,
// 1,000,000 by default) through a pool with Retries 3 while a random
// worker is SIGKILLed every 10 ms, then as many jobs again with no kills
// for a tenth as long. Every job ends exactly once with its own value or
// WorkerCrashed (its retries spent); none waits past its deadline; the
// pool is back at full size within a second of the last kill. Logs jobs,
// kills, and throughput during and after the kills.
func TestChaosSoak(t *testing.T) {
	if !soak() {
		t.Skip("a soak: make soak runs it (SHMEXEC_SOAK=1)")
	}
	n := testutil.EnvInt("SHMEXEC_CHAOS_JOBS", 1_000_000)
	p := newPool(t, Config{Workers: 2, QueueDepth: 512, Retries: 3})
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	stop := make(chan struct{})
	kills := make(chan int, 1)
	go func() {
		k := 0
		defer func() { kills <- k }()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if p.killWorker(rng.IntN(2)) {
					k++
				}
			}
		}
	}()
	ok, crashed, d := chaosStream(t, p, n, 0)
	close(stop)
	k := <-kills
	healStart := time.Now()
	waitFullSize(t, p)
	heal := time.Since(healStart)
	after := n / 10
	ok2, crashed2, d2 := chaosStream(t, p, after, n)
	t.Logf("with a kill every 10 ms: %d jobs in %v (%.0f jobs/s): %d ok, %d WorkerCrashed after 3 retries; %d kills; back at full size %v after the last kill",
		n, d.Round(time.Millisecond), float64(n)/d.Seconds(), ok, crashed, k, heal.Round(time.Millisecond))
	t.Logf("after the kills: %d jobs in %v (%.0f jobs/s): %d ok, %d crashed", after, d2.Round(time.Millisecond), float64(after)/d2.Seconds(), ok2, crashed2)
	if heal > time.Second {
		t.Errorf("the pool took %v to be back at full size after the kills, want <= 1 s", heal)
	}
	if crashed2 != 0 {
		t.Errorf("%d jobs crashed with no kills", crashed2)
	}
	if s := p.Stats(); s.Submitted != s.Collected {
		t.Errorf("submitted %d, collected %d", s.Submitted, s.Collected)
	}
}

// chaosStream runs n echo jobs, at most 256 in flight, numbered from
// base, and checks that each ends once with its own input or
// WorkerCrashed, within 30 s.
func chaosStream(t *testing.T, p *Pool, n, base int) (ok, crashed int, d time.Duration) {
	t.Helper()
	type flight struct {
		f  *Future
		in string
		at time.Time
	}
	window := make(chan flight, 256)
	errc := make(chan error, 1)
	start := time.Now()
	go func() {
		defer close(window)
		for i := range n {
			in := strconv.Itoa(base + i)
			f, err := p.Submit(context.Background(), "echo", []byte(in))
			if err != nil {
				errc <- err
				return
			}
			window <- flight{f, in, time.Now()}
		}
	}()
	for fl := range window {
		ctx, cancel := context.WithDeadline(context.Background(), fl.at.Add(30*time.Second))
		out, err := fl.f.Wait(ctx)
		cancel()
		var ce *CrashError
		switch {
		case err == nil && string(out) == fl.in:
			ok++
		case errors.As(err, &ce):
			crashed++
		default:
			t.Fatalf("job %s: %q, %v (stats %+v)", fl.in, out, err, p.Stats())
		}
	}
	select {
	case err := <-errc:
		t.Fatalf("submit: %v", err)
	default:
	}
	if ok+crashed != n {
		t.Fatalf("%d jobs ended, want %d", ok+crashed, n)
	}
	return ok, crashed, time.Since(start)
}
