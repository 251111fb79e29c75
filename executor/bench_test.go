package executor

import (
	"context"
	"errors"
	"io"
	"sort"
	"testing"
	"time"

	"github.com/shmexec/shmexec/internal/testutil"
)

// Benchmarks, each beside its baseline from the same run:
//
//	go test -run '^$' -bench . -benchtime 20000x ./executor
//
// RoundTrip/pool is an empty job from this process to one worker and
// back; RoundTrip/pipe is an 8-byte ping-pong with a child over two pipes.
// Both report p50 and p99 in ns. Map reports jobs/s for b.N empty jobs.

func reportLatency(b *testing.B, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) }
	b.ReportMetric(pct(0.50), "p50-ns")
	b.ReportMetric(pct(0.99), "p99-ns")
}

func BenchmarkRoundTrip(b *testing.B) {
	b.Run("pool", func(b *testing.B) {
		p := newPool(b, Config{Workers: 1})
		c := p.Client()
		ctx := context.Background()
		for i := 0; i < 100; i++ { // warm up
			f, _ := c.Submit(ctx, "empty", nil)
			f.Wait(ctx)
		}
		lat := make([]time.Duration, b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			start := time.Now()
			f, err := c.Submit(ctx, "empty", nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.Wait(ctx); err != nil {
				b.Fatal(err)
			}
			lat[i] = time.Since(start)
		}
		b.StopTimer()
		reportLatency(b, lat)
	})
	b.Run("pipe", func(b *testing.B) {
		cmd, toChild, fromChild := testutil.StartPipeChild(b, testutil.PipeEchoRole)
		var buf [8]byte
		lat := make([]time.Duration, b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			start := time.Now()
			toChild.Write(buf[:])
			if _, err := io.ReadFull(fromChild, buf[:]); err != nil {
				b.Fatal(err)
			}
			lat[i] = time.Since(start)
		}
		b.StopTimer()
		toChild.Close()
		testutil.WaitTimeout(b, cmd, 10*time.Second)
		fromChild.Close()
		reportLatency(b, lat)
	})
}

// BenchmarkMap runs b.N empty jobs through Map on two workers.
func BenchmarkMap(b *testing.B) {
	p := newPool(b, Config{Workers: 2, QueueDepth: 1024})
	in := make([][]byte, b.N)
	b.ResetTimer()
	start := time.Now()
	res, err := p.Client().Map(context.Background(), "empty", in)
	el := time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "jobs/s")
}

// BenchmarkRecovery measures the time from a worker's SIGKILL to its
// job's terminal result (WorkerCrashed), and to the pool's full size.
func BenchmarkRecovery(b *testing.B) {
	p := newPool(b, Config{Workers: 1})
	c := p.Client()
	ctx := context.Background()
	toResult := make([]time.Duration, b.N)
	toFull := make([]time.Duration, b.N)
	for i := 0; i < b.N; i++ {
		f, err := c.Submit(ctx, "sleep", []byte("60000"))
		if err != nil {
			b.Fatal(err)
		}
		for p.Stats().Workers[0].Current != int64(refIdx(f.ref)) {
			time.Sleep(100 * time.Microsecond)
		}
		start := time.Now()
		if !p.killWorker(0) {
			b.Fatal("no worker to kill")
		}
		if _, err := f.Wait(ctx); !errors.Is(err, ErrWorkerCrashed) {
			b.Fatalf("killed job: %v", err)
		}
		toResult[i] = time.Since(start)
		for p.Stats().Workers[0].State != "idle" {
			time.Sleep(50 * time.Microsecond)
		}
		toFull[i] = time.Since(start)
	}
	sort.Slice(toResult, func(i, j int) bool { return toResult[i] < toResult[j] })
	sort.Slice(toFull, func(i, j int) bool { return toFull[i] < toFull[j] })
	b.ReportMetric(float64(toResult[len(toResult)/2].Microseconds()), "result-p50-us")
	b.ReportMetric(float64(toFull[len(toFull)/2].Microseconds()), "fullsize-p50-us")
}
