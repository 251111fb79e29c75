package ring

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/shmexec/shmexec/internal/testutil"
	"github.com/shmexec/shmexec/shm"
)

// Benchmarks across two processes: the test binary re-executed as the
// peer. Each ring figure has its pipe baseline in the same run:
//
//	go test -run '^$' -bench . -benchtime 200000x ./ring
//
// Compare ns/op of RoundTrip/spin and RoundTrip/futex with RoundTrip/pipe,
// and values/s of Throughput/ring with Throughput/pipe.

func init() {
	benchRoles["ring-echo"] = childEcho
	benchRoles[testutil.PipeEchoRole] = testutil.PipeEcho
	benchRoles["pipe-sink"] = childPipeSink
}

var benchRoles = map[string]func() int{}

// echoFixture is a segment with two rings: ping (id 1) and pong (id 2).
func echoFixture(b *testing.B) (*procFixture, *Ring) {
	seg, err := shm.Create("ring-bench", []shm.RegionSpec{
		{Kind: kindParties, Size: PartiesSize(4)},
		{Kind: kindRing, Index: 0, Size: Size(1024)},
		{Kind: kindRing, Index: 1, Size: Size(1024)},
		{Kind: kindControl, Size: 4096},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { seg.Close() })
	f, err := openProcFixture(seg)
	if err != nil {
		b.Fatal(err)
	}
	v0, _ := seg.Region(kindRing, 0)
	v1, _ := seg.Region(kindRing, 1)
	if f.r, err = Init(v0, 1, 1024); err != nil {
		b.Fatal(err)
	}
	pong, err := Init(v1, 2, 1024)
	if err != nil {
		b.Fatal(err)
	}
	return f, pong
}

// childEcho dequeues from ring 0 and enqueues to ring 1 until it sees the
// stop value.
func childEcho() int {
	c, err := attachChild()
	if err != nil {
		return childFail(err)
	}
	v1, _ := c.f.seg.Region(kindRing, 1)
	pong, err := Open(v1)
	if err != nil {
		return childFail(err)
	}
	spin := time.Duration(testutil.EnvInt("SHMX_T_SPIN", int(DefaultSpin)))
	c.f.r.Spin, pong.Spin = spin, spin
	for {
		v, err := c.f.r.Dequeue(c.party, time.Minute)
		if err != nil {
			return childFail(err)
		}
		if v == stopValue {
			return 0
		}
		if err := pong.Enqueue(c.party, v, time.Minute); err != nil {
			return childFail(err)
		}
	}
}

func BenchmarkRoundTrip(b *testing.B) {
	for _, mode := range []struct {
		name string
		spin time.Duration
	}{{"spin", time.Hour}, {"futex", 0}} {
		b.Run(mode.name, func(b *testing.B) {
			f, pong := echoFixture(b)
			me := f.join(b, 1)
			cmd, _ := f.spawn(b, "ring-echo", 0, fmt.Sprintf("SHMX_T_SPIN=%d", mode.spin))
			f.r.Spin, pong.Spin = mode.spin, mode.spin
			// Warm up: the child is started and echoing.
			f.r.Enqueue(me, 1, time.Minute)
			pong.Dequeue(me, time.Minute)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := f.r.Enqueue(me, uint32(i), time.Minute); err != nil {
					b.Fatal(err)
				}
				if v, err := pong.Dequeue(me, time.Minute); err != nil || v != uint32(i) {
					b.Fatalf("echo = %d, %v", v, err)
				}
			}
			b.StopTimer()
			f.r.Enqueue(me, stopValue, time.Minute)
			testutil.WaitTimeout(b, cmd, 10*time.Second)
		})
	}
	b.Run("pipe", func(b *testing.B) {
		cmd, w, r := testutil.StartPipeChild(b, testutil.PipeEchoRole)
		var buf [8]byte
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			binary.LittleEndian.PutUint64(buf[:], uint64(i))
			if _, err := w.Write(buf[:]); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(r, buf[:]); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		w.Close()
		testutil.WaitTimeout(b, cmd, 10*time.Second)
		r.Close()
	})
}

// childPipeSink reads 4-byte values until EOF and then writes the count.
func childPipeSink() int {
	in, out := os.NewFile(3, "in"), os.NewFile(4, "out")
	buf := make([]byte, 64<<10)
	var total uint64
	for {
		n, err := in.Read(buf)
		total += uint64(n)
		if err != nil {
			break
		}
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], total/4)
	out.Write(b[:])
	return 0
}

// BenchmarkThroughput moves b.N values from a producer process to this
// one: through the ring with batch operations, and through a pipe with
// the same batch size.
func BenchmarkThroughput(b *testing.B) {
	b.Run("ring", func(b *testing.B) {
		f, _ := echoFixture(b)
		me := f.join(b, 1)
		cmd, _ := f.spawn(b, "ring-producer", 0, fmt.Sprintf("SHMX_T_N=%d", b.N), "SHMX_T_BATCH=256")
		buf := make([]uint32, MaxBatch)
		b.ResetTimer()
		start := time.Now()
		for got := 0; got < b.N; {
			n, err := f.r.DequeueBatch(me, buf, time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "values/s")
		testutil.WaitTimeout(b, cmd, 10*time.Second)
	})
	b.Run("pipe", func(b *testing.B) {
		// The pipe side: this process writes batches, the child counts.
		cmd, w, r := testutil.StartPipeChild(b, "pipe-sink")
		batch := make([]byte, 4*256)
		b.ResetTimer()
		start := time.Now()
		for sent := 0; sent < b.N; sent += 256 {
			n := min(256, b.N-sent)
			if _, err := w.Write(batch[:4*n]); err != nil {
				b.Fatal(err)
			}
		}
		w.Close()
		var cnt [8]byte
		io.ReadFull(r, cnt[:])
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "values/s")
		testutil.WaitTimeout(b, cmd, 10*time.Second)
		r.Close()
	})
}
