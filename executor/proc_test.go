package executor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmexec/shmexec/internal/crashpoint"
	"github.com/shmexec/shmexec/internal/testutil"
)

// --- child roles --------------------------------------------------------

// childClient attaches as a client (segment on fd 3, ticket on a line
// from fd 4), runs SHMX_T_JOBS jobs of SHMX_T_HANDLER, writes "ok N" or the
// first error to stdout and exits 0.
func childClient() int {
	line, err := bufio.NewReader(os.NewFile(4, "ticket")).ReadString('\n')
	if err != nil {
		fmt.Println("no ticket:", err)
		return 1
	}
	t, err := ParseTicket(strings.TrimSpace(line))
	if err != nil {
		fmt.Println(err)
		return 1
	}
	c, err := Connect(os.NewFile(3, "segment"), t)
	if err != nil {
		fmt.Println("connect:", err)
		return 1
	}
	if seed := os.Getenv("SHMX_T_SCRIBBLE"); seed != "" {
		n, _ := strconv.ParseUint(seed, 10, 64)
		var ranges [][2]int
		for _, r := range strings.Split(os.Getenv("SHMX_T_SCRIBBLE_RANGES"), ",") {
			var off, size int
			if _, err := fmt.Sscanf(r, "%d:%d", &off, &size); err == nil && size > 0 {
				ranges = append(ranges, [2]int{off, size})
			}
		}
		return scribble(n, ranges)
	}
	defer c.Close()
	n, handler, input := testutil.EnvInt("SHMX_T_JOBS", 1), os.Getenv("SHMX_T_HANDLER"), os.Getenv("SHMX_T_INPUT")
	// SHMX_T_PAD makes every input that much longer, so it travels in arena
	// pages; SHMX_T_HOLD allocates a zero-copy buffer it never releases.
	pad := strings.Repeat("x", testutil.EnvInt("SHMX_T_PAD", 0))
	if testutil.EnvInt("SHMX_T_HOLD", 0) == 1 {
		if _, err := c.AllocBuffer(1 << 20); err != nil {
			fmt.Println("alloc buffer:", err)
			return 0
		}
	}
	if testutil.EnvInt("SHMX_T_ONEBYONE", 0) == 1 {
		// Round trips, one job at a time: the client polls its outqueue
		// (with its spin bit set) nearly all the time.
		fmt.Println("submitted")
		for i := 0; i < n; i++ {
			f, err := c.Submit(context.Background(), handler, []byte(strconv.Itoa(i)))
			if err != nil {
				fmt.Println("submit:", err)
				return 0
			}
			if out, err := f.WaitTimeout(time.Minute); err != nil || string(out) != strconv.Itoa(i) {
				fmt.Printf("job %d: %q, %v\n", i, out, err)
				return 0
			}
		}
		fmt.Println("ok", n)
		return 0
	}
	var fs []*Future
	for i := 0; i < n; i++ {
		in := input
		if in == "" {
			in = strconv.Itoa(i) + pad
		}
		f, err := c.Submit(context.Background(), handler, []byte(in))
		if err != nil {
			fmt.Println("submit:", err)
			return 0
		}
		fs = append(fs, f)
	}
	fmt.Println("submitted")
	for i, f := range fs {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := f.Wait(ctx)
		cancel()
		switch {
		case errors.Is(err, ErrPoolDead):
			fmt.Println("pooldead")
			return 0
		case err != nil:
			fmt.Println("error:", err)
			return 0
		case input == "" && string(out) != strconv.Itoa(i)+pad:
			fmt.Printf("wrong result %d: %q\n", i, out)
			return 0
		}
	}
	fmt.Println("ok", n)
	return 0
}

// startClient starts a client child attached to p and returns it with a
// reader of its stdout.
func startClient(t *testing.T, p *Pool, env ...string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	tr, tw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := testutil.Child(t, "client", []*os.File{p.File(), tr}, env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tr.Close()
	ticket, err := p.AddClient(cmd.Process.Pid)
	if err != nil {
		cmd.Process.Kill()
		t.Fatal(err)
	}
	fmt.Fprintln(tw, ticket)
	tw.Close()
	return cmd, bufio.NewReader(stdout)
}

func readLine(t *testing.T, r *bufio.Reader, d time.Duration) string {
	t.Helper()
	c := make(chan string, 1)
	go func() {
		s, _ := r.ReadString('\n')
		c <- strings.TrimSpace(s)
	}()
	select {
	case s := <-c:
		return s
	case <-time.After(d):
		t.Fatalf("no line from the child within %v", d)
		return ""
	}
}

// --- tests --------------------------------------------------------------

func TestExternalClient(t *testing.T) {
	p := newPool(t, Config{})
	cmd, out := startClient(t, p, "SHMX_T_JOBS=2000", "SHMX_T_HANDLER=echo")
	if s := readLine(t, out, 20*time.Second); s != "submitted" {
		t.Fatalf("client: %q", s)
	}
	if s := readLine(t, out, 30*time.Second); s != "ok 2000" {
		t.Fatalf("client: %q", s)
	}
	if err := testutil.WaitTimeout(t, cmd, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// The owner's client still works alongside.
	if out, err := run(t, p, "echo", []byte("owner")); err != nil || string(out) != "owner" {
		t.Fatal(out, err)
	}
	waitQuiet(t, p)
	waitClientsFree(t, p)
}

func waitClientsFree(t *testing.T, p *Pool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		n := len(p.clients)
		p.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d client slots not reclaimed", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestClientKilled: a client SIGKILLed with jobs queued and running; the
// supervisor drops them, reclaims its slots, pages and client slot, and the
// pool serves others on.
func TestClientKilled(t *testing.T) {
	p := newPool(t, Config{QueueDepth: 64})
	cmd, out := startClient(t, p, "SHMX_T_JOBS=60", "SHMX_T_HANDLER=sleep", "SHMX_T_INPUT=20")
	if s := readLine(t, out, 20*time.Second); s != "submitted" {
		t.Fatalf("client: %q", s)
	}
	time.Sleep(30 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	testutil.WaitTimeout(t, cmd, 10*time.Second)
	waitQuiet(t, p)
	waitClientsFree(t, p)
	if d := p.Stats().ClientDeaths; d != 1 {
		t.Fatalf("ClientDeaths = %d", d)
	}
	if out, err := run(t, p, "echo", []byte("after")); err != nil || string(out) != "after" {
		t.Fatal(out, err)
	}
}

// TestClientKilledWhilePolling: a client doing round trips one by one
// polls its outqueue with its spin bit set, and is SIGKILLed there. The
// supervisor's recovery must clear that bit (a stale one would make
// workers skip waking the next client in that slot), and a new client
// gets its jobs.
func TestClientKilledWhilePolling(t *testing.T) {
	p := newPool(t, Config{Workers: 2})
	for round := 0; round < 3; round++ {
		cmd, out := startClient(t, p, "SHMX_T_JOBS=100000000", "SHMX_T_HANDLER=echo", "SHMX_T_ONEBYONE=1")
		if s := readLine(t, out, 20*time.Second); s != "submitted" {
			t.Fatalf("client: %q", s)
		}
		time.Sleep(50 * time.Millisecond) // round trips under way
		cmd.Process.Signal(syscall.SIGKILL)
		testutil.WaitTimeout(t, cmd, 10*time.Second)
		waitQuiet(t, p)
		waitClientsFree(t, p)
		for i, q := range p.l.outq {
			if n := q.Spinners(); n != 0 {
				t.Fatalf("round %d: outqueue %d keeps %d spin bits after its client died", round, i, n)
			}
		}
		cmd, out = startClient(t, p, "SHMX_T_JOBS=300", "SHMX_T_HANDLER=echo", "SHMX_T_ONEBYONE=1")
		readLine(t, out, 20*time.Second)
		if s := readLine(t, out, 30*time.Second); s != "ok 300" {
			t.Fatalf("round %d: the next client: %q", round, s)
		}
		testutil.WaitTimeout(t, cmd, 10*time.Second)
		waitClientsFree(t, p)
	}
	if d := p.Stats().ClientDeaths; d != 3 {
		t.Fatalf("ClientDeaths = %d", d)
	}
}

// TestWorkerCrashPoints kills the worker right after each step of the job
// lifecycle it takes (and the ring steps inside it), and checks that the
// job ends exactly once: as WorkerCrashed where the job had started and had
// no retry, as OK otherwise; and that the pool recovers its size and leaks
// nothing.
func TestWorkerCrashPoints(t *testing.T) {
	if !crashpoint.Enabled {
		t.Skip("crash points need -tags shmexec_crash (make test sets it)")
	}
	for _, tc := range []struct {
		point   string
		started bool // the job had started: no retry means WorkerCrashed
	}{
		{"ring.deq.intent", false}, {"ring.deq.claim", false}, {"ring.deq.hold", false},
		{"ring.deq.release", false}, {"ring.deq.done", false},
		{"job.lease", true}, {"job.run", true}, {"job.result", true}, {"job.done", false},
		{"ring.enq.intent", false}, {"ring.enq.claim", false}, {"ring.enq.claimed", false},
		{"ring.enq.publish", false}, {"ring.enq.done", false},
	} {
		for _, retries := range []int{0, 1} {
			t.Run(fmt.Sprintf("%s/retries%d", tc.point, retries), func(t *testing.T) {
				p := newPool(t, Config{Workers: 1, spawnEnv: func(w, n int) []string {
					if n == 0 {
						return []string{crashpoint.EnvVar + "=" + tc.point + "@1"}
					}
					return nil
				}})
				out, err := run(t, p, "echo", []byte("x"), SubmitOptions{Retries: retries})
				if tc.started && retries == 0 {
					var ce *CrashError
					if !errors.As(err, &ce) || ce.Signal != syscall.SIGKILL {
						t.Fatalf("got %q, %v; want WorkerCrashed by SIGKILL", out, err)
					}
				} else if err != nil || string(out) != "x" {
					t.Fatalf("got %q, %v; want OK", out, err)
				}
				// The result may come back before the supervisor has seen
				// the death (a crash after publishing).
				for deadline := time.Now().Add(10 * time.Second); p.Stats().WorkerDeaths != 1; {
					if time.Now().After(deadline) {
						t.Fatalf("the crash point was not hit: %+v", p.Stats())
					}
					time.Sleep(time.Millisecond)
				}
				waitFullSize(t, p)
				if out, err := run(t, p, "echo", []byte("y")); err != nil || string(out) != "y" {
					t.Fatalf("after recovery: %q, %v", out, err)
				}
				waitQuiet(t, p)
			})
		}
	}
}

// TestClientCrashPoints kills a client process right after each step it
// takes; the supervisor reclaims everything it held.
func TestClientCrashPoints(t *testing.T) {
	if !crashpoint.Enabled {
		t.Skip("crash points need -tags shmexec_crash (make test sets it)")
	}
	for _, point := range []string{"job.fill@3", "job.queued@3", "job.collect@3", "ring.deq.claim@1", "ring.deq.hold@1",
		"ring.deq.done@1", "ring.enq.claimed@3", "ring.enq.done@3"} {
		for _, big := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/arena=%v", point, big), func(t *testing.T) {
				p := newPool(t, Config{QueueDepth: 16})
				env := []string{"SHMX_T_JOBS=10", "SHMX_T_HANDLER=echo", crashpoint.EnvVar + "=" + point}
				if big {
					// Inputs, outputs and a held buffer in arena pages: all
					// must come back when the client dies.
					env = append(env, "SHMX_T_PAD=100000", "SHMX_T_HOLD=1")
				}
				cmd, _ := startClient(t, p, env...)
				err := testutil.WaitTimeout(t, cmd, 30*time.Second)
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("client did not die at %s: %v", point, err)
				}
				waitQuiet(t, p)
				waitClientsFree(t, p)
				if out, err := run(t, p, "echo", []byte("z")); err != nil || string(out) != "z" {
					t.Fatalf("after the client's death: %q, %v", out, err)
				}
			})
		}
	}
}

// TestDroppedJobOrphanedByWorker is the interleaving the Promela model
// (docs/model/job.pml) found: a client dies with a job queued, the
// supervisor marks the job Dropped, and the worker that dequeues its
// reference dies before freeing it. Recovery must free the slot (it used
// to put back only Queued references), or the slot and the client slot
// stay taken for ever.
func TestDroppedJobOrphanedByWorker(t *testing.T) {
	if !crashpoint.Enabled {
		t.Skip("crash points need -tags shmexec_crash (make test sets it)")
	}
	for _, point := range []string{"ring.deq.hold@2", "ring.deq.done@2"} {
		t.Run(point, func(t *testing.T) {
			p := newPool(t, Config{Workers: 1, spawnEnv: func(w, n int) []string {
				if n == 0 {
					return []string{crashpoint.EnvVar + "=" + point}
				}
				return nil
			}})
			// The only worker is busy for a while (its first dequeue).
			busy, err := p.Submit(context.Background(), "sleep", []byte("700"))
			if err != nil {
				t.Fatal(err)
			}
			cmd, out := startClient(t, p, "SHMX_T_JOBS=1", "SHMX_T_HANDLER=echo")
			if s := readLine(t, out, 20*time.Second); s != "submitted" {
				t.Fatalf("client: %q", s)
			}
			cmd.Process.Signal(syscall.SIGKILL)
			testutil.WaitTimeout(t, cmd, 10*time.Second)
			// Wait for the supervisor to drop the dead client's queued job
			// while the worker is still busy.
			dropped := false
			for deadline := time.Now().Add(5 * time.Second); !dropped; {
				for idx := 0; idx < p.l.g.slots; idx++ {
					if wState(p.l.slotState(idx).Load()) == slotDropped {
						dropped = true
					}
				}
				if time.Now().After(deadline) {
					t.Fatal("the dead client's job was not marked Dropped within 5s")
				}
				time.Sleep(time.Millisecond)
			}
			if _, err := busy.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			// The worker dies at its second dequeue: the Dropped reference.
			for deadline := time.Now().Add(10 * time.Second); p.Stats().WorkerDeaths != 1; {
				if time.Now().After(deadline) {
					t.Fatalf("the crash point was not hit: %+v", p.Stats())
				}
				time.Sleep(time.Millisecond)
			}
			waitFullSize(t, p)
			waitQuiet(t, p)
			waitClientsFree(t, p)
		})
	}
}

// killWorkersRandomly SIGKILLs a random worker of p every lo to
// lo+span milliseconds (seeded by seed) until the returned stop is
// called, which returns how many it killed.
func killWorkersRandomly(p *Pool, seed int64, lo, span int) (stop func() int) {
	done := make(chan struct{})
	kills := make(chan int, 1)
	go func() {
		rng := rand.New(rand.NewSource(seed))
		k := 0
		defer func() { kills <- k }()
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Duration(lo+rng.Intn(span)) * time.Millisecond):
				if p.killWorker(rng.Intn(p.cfg.Workers)) {
					k++
				}
			}
		}
	}()
	return func() int {
		close(done)
		return <-kills
	}
}

// TestRandomWorkerKillsLoseNoJob kills a random worker every few milliseconds while 20,000
// quick and slow jobs run. Every job ends exactly once, OK or
// WorkerCrashed; the pool ends at full size with nothing leaked.
func TestRandomWorkerKillsLoseNoJob(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 3000
	}
	p := newPool(t, Config{Workers: 2, QueueDepth: 512})
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	stopKills := killWorkersRandomly(p, seed, 2, 8)
	futures := make([]*Future, 0, n)
	inputs := make([]string, 0, n)
	for i := 0; i < n; i++ {
		h, in := "echo", strconv.Itoa(i)
		if i%50 == 0 {
			h, in = "sleep", strconv.Itoa(1+i%3)
		}
		submitted := make(chan struct{})
		go func() {
			select {
			case <-submitted:
			case <-time.After(20 * time.Second):
				panic(fmt.Sprintf("submit %d stuck for 20s: %s; stats %+v", i, p.l.inq.Debug(), p.Stats()))
			}
		}()
		f, err := p.Submit(context.Background(), h, []byte(in))
		close(submitted)
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
		inputs = append(inputs, in)
	}
	ok, crashed := 0, 0
	for i, f := range futures {
		out, err := waitFor(t, f)
		var ce *CrashError
		switch {
		case err == nil && string(out) == inputs[i]:
			ok++
		case errors.As(err, &ce):
			crashed++
		default:
			t.Fatalf("job %d: %q, %v", i, out, err)
		}
	}
	k := stopKills()
	waitFullSize(t, p)
	waitQuiet(t, p)
	s := p.Stats()
	t.Logf("%d jobs: %d ok, %d crashed; %d kills; stats %+v", n, ok, crashed, k, s)
	if k == 0 {
		t.Fatal("no worker was killed")
	}
	if s.Submitted != uint64(n) || s.Collected != uint64(n) {
		t.Fatalf("submitted %d, collected %d, want %d each", s.Submitted, s.Collected, n)
	}
}

// TestWorkerKillsDuringLargePayloads kills a random worker every few
// milliseconds while jobs whose input and output live in the arena flow:
// 256 KiB to 9 MiB, the largest copied by several threads (memx). Every
// party takes the lowest free pages (first fit), so a dead worker's pages
// are the next ones everybody claims: each job must end once, OK with its
// own bytes or with a CrashError, and once all are collected the pool is
// at full size and holds no page.
func TestWorkerKillsDuringLargePayloads(t *testing.T) {
	n := 240
	if testing.Short() {
		n = 60
	}
	p := newPool(t, Config{Workers: 2, QueueDepth: 64, MaxPayload: 16 << 20, ArenaSize: 128 << 20})
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	sizes := []int{256 << 10, 1 << 20, 9<<20 + 4321}
	base := make([][]byte, len(sizes))
	for i, sz := range sizes {
		base[i] = make([]byte, sz)
		rng.Read(base[i])
	}
	stopKills := killWorkersRandomly(p, seed+1, 3, 10)
	// The job's number at every 64 KiB of its input, so that bytes of
	// another job's payload cannot pass for its own.
	input := func(i int) []byte {
		b := append([]byte(nil), base[i%len(sizes)]...)
		for off := 0; off+8 <= len(b); off += pageSize {
			copy(b[off:], strconv.AppendInt(make([]byte, 0, 8), int64(10000000+i), 10))
		}
		return b
	}
	ok, crashed := 0, 0
	const window = 8
	for first := 0; first < n; first += window {
		var futures []*Future
		var inputs [][]byte
		for i := first; i < min(first+window, n); i++ {
			in := input(i)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			f, err := p.Submit(ctx, "echo", in)
			cancel()
			if err != nil {
				t.Fatalf("submit %d (%d bytes): %v; stats %+v", i, len(in), err, p.Stats())
			}
			futures, inputs = append(futures, f), append(inputs, in)
		}
		for j, f := range futures {
			out, err := waitFor(t, f)
			var ce *CrashError
			switch {
			case err == nil && bytes.Equal(out, inputs[j]):
				ok++
			case err == nil:
				t.Fatalf("job %d: %d bytes back, not its own %d", first+j, len(out), len(inputs[j]))
			case errors.As(err, &ce):
				crashed++
			default:
				t.Fatalf("job %d: %v", first+j, err)
			}
		}
	}
	k := stopKills()
	waitFullSize(t, p)
	waitQuiet(t, p)
	s := p.Stats()
	t.Logf("%d jobs: %d ok, %d crashed; %d kills; stats %+v", n, ok, crashed, k, s)
	if k == 0 || crashed == 0 {
		t.Fatalf("%d kills, %d jobs crashed: the test killed no worker during a job", k, crashed)
	}
	if s.Submitted != uint64(n) || s.Collected != uint64(n) {
		t.Fatalf("submitted %d, collected %d, want %d each", s.Submitted, s.Collected, n)
	}
}

// childSupervisor runs a pool of 2 workers and a client process, writes
// the workers' pids to stdout, and waits to be killed.
func childSupervisor() int {
	p, err := New(Config{Workers: 2, WorkerArgv: []string{os.Args[0], "-test.run=^$"}, QueueDepth: 16})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	var pids []string
	for _, w := range p.Stats().Workers {
		pids = append(pids, strconv.Itoa(w.PID))
	}
	fmt.Println("workers", strings.Join(pids, " "))
	// A client process that waits on a long job.
	tr, tw, _ := os.Pipe()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), testutil.ChildEnv+"=client", "SHMX_T_HANDLER=sleep", "SHMX_T_INPUT=60000")
	cmd.ExtraFiles = []*os.File{p.File(), tr}
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Println("error", err)
		return 1
	}
	tk, err := p.AddClient(cmd.Process.Pid)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Fprintln(tw, tk)
	fmt.Println("client", cmd.Process.Pid)
	select {}
}

func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && s[i+2] == 'Z'
}

// TestSupervisorKilled: SIGKILL the supervisor; its workers are gone
// within 1 s and its client's wait returns PoolDead within 1 s.
func TestSupervisorKilled(t *testing.T) {
	cmd := testutil.Child(t, "supervisor", nil)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	line := readLine(t, out, 20*time.Second)
	if !strings.HasPrefix(line, "workers ") {
		cmd.Process.Kill()
		t.Fatalf("supervisor: %q", line)
	}
	var workers []int
	for _, f := range strings.Fields(line)[1:] {
		pid, _ := strconv.Atoi(f)
		workers = append(workers, pid)
	}
	if l := readLine(t, out, 10*time.Second); !strings.HasPrefix(l, "client ") {
		cmd.Process.Kill()
		t.Fatalf("supervisor: %q", l)
	}
	if l := readLine(t, out, 10*time.Second); l != "submitted" {
		cmd.Process.Kill()
		t.Fatalf("client: %q", l)
	}
	time.Sleep(50 * time.Millisecond) // the long job is running
	killed := time.Now()
	cmd.Process.Signal(syscall.SIGKILL)
	// Read the client's verdict before Wait, which closes the pipe.
	l := readLine(t, out, 2*time.Second)
	testutil.WaitTimeout(t, cmd, 5*time.Second)
	if l != "pooldead" {
		t.Fatalf("client after the supervisor's death: %q", l)
	}
	if el := time.Since(killed); el > time.Second {
		t.Errorf("client learned of the death after %v", el)
	}
	for _, pid := range workers {
		for !processGone(pid) {
			if time.Since(killed) > time.Second {
				t.Fatalf("worker %d alive 1s after the supervisor's death", pid)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
