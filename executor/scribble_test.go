package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shmexec/shmexec/internal/testutil"
)

// soak reports whether the long runs were asked for (make soak).
func soak() bool { return os.Getenv("SHMEXEC_SOAK") != "" }

// scribble is a client process gone bad: it maps the segment (descriptor
// 3) writable and writes random bytes at random offsets of the given
// ranges of it (all of it if none) until it is killed. Half the writes
// land in the first 64 KiB of a range, where its headers are.
func scribble(seed uint64, ranges [][2]int) int {
	var st syscall.Stat_t
	if err := syscall.Fstat(3, &st); err != nil {
		fmt.Println("fstat:", err)
		return 1
	}
	mem, err := syscall.Mmap(3, 0, int(st.Size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		fmt.Println("mmap:", err)
		return 1
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	fmt.Println("scribbling")
	if ranges == nil {
		ranges = [][2]int{{0, len(mem)}}
	}
	for i := 0; ; i++ {
		r := ranges[rng.IntN(len(ranges))]
		span := r[1]
		if rng.IntN(2) == 0 {
			span = min(span, 64<<10)
		}
		off := r[0] + rng.IntN(span)
		n := min(1+rng.IntN(8), len(mem)-off)
		for j := range n {
			switch rng.IntN(4) {
			case 0:
				mem[off+j] = 0
			case 1:
				mem[off+j] = 0xff
			default:
				mem[off+j] = byte(rng.Uint32())
			}
		}
		switch {
		case seed/3%2 == 1: // a slow scribbler: jobs run between its writes
			time.Sleep(time.Millisecond)
		case i%32 == 0:
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// TestScribblerHarmsNoOne: memory written by another process is untrusted.
// While a client process scribbles random bytes over the segment, other
// callers' jobs (from this process, through the supervisor's own client)
// must each end by their deadline, with a result or an error; the
// supervisor and the workers must not panic or hang; killing the
// scribbler evicts it; and the pool still closes, its workers gone. Data
// of jobs in flight may be changed (one pool is one trust domain): wrong
// results are counted, not failed on. make soak runs many seeds, longer.
func TestScribblerHarmsNoOne(t *testing.T) {
	seeds, d := 6, time.Second
	if soak() {
		seeds, d = testutil.EnvInt("SHMEXEC_SCRIBBLE_SEEDS", 40), 5*time.Second
	}
	base := uint64(time.Now().UnixNano())
	for i := range seeds {
		seed := base + uint64(i)
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) { scribbleRun(t, seed, d) })
	}
}

func scribbleRun(t *testing.T, seed uint64, d time.Duration) {
	var logged bytes.Buffer
	stderr := &lockedWriter{w: &logged} // what the workers write to standard error
	p, err := New(Config{Workers: 2, WorkerArgv: []string{os.Args[0], "-test.run=^$"}, QueueDepth: 64, Stderr: stderr, StartTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// Three kinds of run, by seed: the whole segment; everything but its
	// header and control words (which, scribbled, soon stop the pool);
	// only the job paths (rings, slots, page tables, arena). Each fast
	// (a write every few microseconds) or slow (one a millisecond).
	var ranges []string
	for _, r := range p.seg.Header().Regions {
		switch {
		case seed%3 == 1 && r.Kind != kindControl,
			seed%3 == 2 && (r.Kind == kindRing || r.Kind == kindSlots || r.Kind == kindPages || r.Kind == kindArena):
			ranges = append(ranges, fmt.Sprintf("%d:%d", r.Offset, r.Size))
		}
	}
	cmd, out := startClient(t, p, "SHMX_T_SCRIBBLE="+strconv.FormatUint(seed, 10), "SHMX_T_SCRIBBLE_RANGES="+strings.Join(ranges, ","))
	if s := readLine(t, out, 10*time.Second); s != "scribbling" {
		cmd.Process.Kill()
		t.Fatalf("scribbler: %q", s)
	}
	const jobDeadline = 2 * time.Second
	var (
		mu                        sync.Mutex
		done, failed, wrong, lost int
		late                      []string
		kinds                     = map[string]int{}
	)
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				in := fmt.Sprintf("%d-%d", g, i)
				if i%5 == 0 {
					in += strings.Repeat("x", 8<<10) // through arena pages
				}
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), jobDeadline)
				f, err := p.Submit(ctx, "echo", []byte(in))
				var res []byte
				if err == nil {
					res, err = f.Wait(ctx)
				}
				cancel()
				took := time.Since(start)
				mu.Lock()
				switch {
				case took > jobDeadline+time.Second:
					late = append(late, fmt.Sprintf("%s after %v (%v)", in[:min(len(in), 12)], took, err))
				case errors.Is(err, context.DeadlineExceeded):
					lost++
				case err != nil:
					failed++
					if kinds[firstWords(err.Error())]++; kinds[firstWords(err.Error())] == 1 {
						t.Logf("first %q: %v (%#v)", firstWords(err.Error()), err, err)
					}
				case string(res) != in:
					wrong++
				default:
					done++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(time.Millisecond) // a pool the scribbler broke fails fast: do not spin on it
				}
			}
		}()
	}
	waitGroup(t, &wg, d+2*jobDeadline+5*time.Second, "callers")
	cmd.Process.Kill()
	cmd.Wait()
	// The supervisor tells that the scribbler died (its pidfd, not the
	// segment) and evicts it; reclaiming all it held may not finish when
	// its records were scribbled, so only the eviction is asserted.
	for deadline := time.Now().Add(10 * time.Second); !p.clientsEvicted(); {
		if time.Now().After(deadline) {
			t.Fatal("the killed scribbler was not evicted within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(late) > 0 {
		t.Errorf("calls that ended past their deadline: %v", late)
	}
	// The supervisor still answers and closes, within its bounds.
	closed := make(chan error, 1)
	go func() { closed <- p.CloseTimeout(2 * time.Second) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return within 30 s after the scribbler")
	}
	for _, pid := range p.workerPIDs() {
		if !waitGone(pid, 10*time.Second) {
			t.Errorf("worker %d still runs after Close", pid)
		}
	}
	stderr.mu.Lock()
	s := logged.String()
	stderr.mu.Unlock()
	if strings.Contains(s, "panic") || strings.Contains(s, "fatal error") || strings.Contains(s, "SIGSEGV") {
		t.Errorf("a worker panicked or faulted:\n%s", s)
	}
	t.Logf("seed %d (kind %d): %d jobs right, %d failed %v, %d timed out, %d wrong data; worker deaths %d",
		seed, seed%3, done, failed, kinds, lost, wrong, p.Stats().WorkerDeaths)
}

func waitGroup(t *testing.T, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	c := make(chan struct{})
	go func() { wg.Wait(); close(c) }()
	select {
	case <-c:
	case <-time.After(d):
		t.Fatalf("%s still waiting after %v", what, d)
	}
}

func waitGone(pid int, d time.Duration) bool {
	for deadline := time.Now().Add(d); !processGone(pid); {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// firstWords is an error's kind, for the tally: its first few words.
func firstWords(s string) string {
	w := strings.Fields(s)
	return strings.Join(w[:min(len(w), 5)], " ")
}
