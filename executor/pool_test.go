package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestRoundTripSizes(t *testing.T) {
	p := newPool(t, Config{MaxPayload: 4 << 20})
	for _, n := range []int{0, 1, 255, 256, 257, 64 << 10, 3<<20 + 17} {
		in := make([]byte, n)
		for i := range in {
			in[i] = byte(i * 7)
		}
		out, err := run(t, p, "echo", in)
		if err != nil || !bytes.Equal(out, in) {
			t.Fatalf("echo of %d bytes: %d bytes back, %v", n, len(out), err)
		}
	}
	waitQuiet(t, p)
}

func TestZeroCopyBufferReachesWorker(t *testing.T) {
	p := newPool(t, Config{MaxPayload: 4 << 20})
	buf, err := p.Client().AllocBuffer(3 << 20)
	if err != nil {
		t.Fatal(err)
	}
	var want uint64
	for i := range buf.Bytes() {
		buf.Bytes()[i] = byte(i)
		want += uint64(byte(i))
	}
	f, err := p.Client().SubmitBuffer(context.Background(), "sum", buf, SubmitOptions{Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	out, err := waitFor(t, f)
	if err != nil || string(out) != strconv.FormatUint(want, 10) {
		t.Fatalf("sum of a zero-copy input = %s, %v; want %d", out, err, want)
	}
	out, err = run(t, p, "big", []byte(strconv.Itoa(2<<20)))
	if err != nil || len(out) != 2<<20 || out[12345] != byte(12345%256) {
		t.Fatalf("zero-copy output: %d bytes, %v", len(out), err)
	}
	// With a time limit the handler's context wraps the task's own: the
	// output buffer is found through both.
	out, err = run(t, p, "big", []byte(strconv.Itoa(1<<20)), SubmitOptions{Timeout: 10 * time.Second, Retries: -1})
	if err != nil || len(out) != 1<<20 || out[54321] != byte(54321%256) {
		t.Fatalf("zero-copy output of a job with a timeout: %d bytes, %v", len(out), err)
	}
	b2, _ := p.Client().AllocBuffer(100)
	b2.Release()
	b2.Release()
	waitQuiet(t, p)
}

// TestHundredThousandJobs: the test binary is client and worker at once.
func TestHundredThousandJobs(t *testing.T) {
	n := 100000
	if testing.Short() {
		n = 10000
	}
	p := newPool(t, Config{QueueDepth: 1024})
	futures := make(chan *Future, 512)
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			f, err := p.Submit(context.Background(), "echo", []byte(strconv.Itoa(i)))
			if err != nil {
				errc <- err
				close(futures)
				return
			}
			futures <- f
		}
		close(futures)
		errc <- nil
	}()
	i := 0
	for f := range futures {
		out, err := waitFor(t, f)
		if err != nil || string(out) != strconv.Itoa(i) {
			t.Fatalf("job %d: %q, %v", i, out, err)
		}
		i++
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if i != n {
		t.Fatalf("%d results, want %d", i, n)
	}
	waitQuiet(t, p)
}

func TestMapKeepsOrderAcrossWorkers(t *testing.T) {
	p := newPool(t, Config{})
	in := make([][]byte, 5000)
	for i := range in {
		in[i] = []byte(strconv.Itoa(i))
	}
	res, err := p.Client().Map(context.Background(), "echo", in)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil || string(r.Output) != strconv.Itoa(i) {
			t.Fatalf("item %d: %q, %v", i, r.Output, r.Err)
		}
	}
	res, _ = p.Client().Map(context.Background(), "fail", in[:10])
	for i, r := range res {
		var he *HandlerError
		if !errors.As(r.Err, &he) || !strings.Contains(he.Message, strconv.Itoa(i)) {
			t.Fatalf("failing item %d: %v", i, r.Err)
		}
	}
	// Slow items spread over both workers rather than batching on one.
	slow := make([][]byte, 4)
	for i := range slow {
		slow[i] = []byte("100")
	}
	res, _ = p.Client().Map(context.Background(), "sleeppid", slow)
	pids := map[string]bool{}
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		pids[string(r.Output)] = true
	}
	if len(pids) != 2 {
		t.Errorf("4 slow items ran on %d worker(s), want both", len(pids))
	}
}

func TestHandlerErrorsAndPanicsEndTheJobOnly(t *testing.T) {
	p := newPool(t, Config{})
	_, err := run(t, p, "fail", []byte("x"))
	var he *HandlerError
	if !errors.As(err, &he) || !errors.Is(err, ErrHandler) || he.Type != "*errors.errorString" || he.Message != `failed on "x"` {
		t.Fatalf("fail: %#v", err)
	}
	_, err = run(t, p, "panic", []byte("y"))
	if !errors.As(err, &he) || he.Type != "panic" || he.Message != "boom: y" || !strings.Contains(he.Traceback, "goroutine") {
		t.Fatalf("panic: %#v", err)
	}
	_, err = run(t, p, "nosuch", nil)
	if !errors.Is(err, ErrUnknownHandler) {
		t.Fatalf("unknown handler: %v", err)
	}
	if out, err := run(t, p, "echo", []byte("still fine")); err != nil || string(out) != "still fine" {
		t.Fatalf("after errors: %q, %v", out, err)
	}
	if p.Stats().WorkerDeaths != 0 {
		t.Fatal("a handler error or panic killed a worker")
	}
}

// TestFatalSignalsKillGoWorkers: every signal that ends a process by
// default, sent by the task to its process or to its own thread, kills
// the Go worker with that signal, and the job ends WorkerCrashed with it.
func TestFatalSignalsKillGoWorkers(t *testing.T) {
	p := newPool(t, Config{Workers: 2})
	for _, sig := range fatalSignals {
		for _, how := range []string{"kill", "tkill"} {
			in := fmt.Sprintf("%d:%s", sig.(syscall.Signal), how)
			_, err := run(t, p, "signal", []byte(in))
			var ce *CrashError
			if !errors.As(err, &ce) || ce.Signal != sig.(syscall.Signal) {
				t.Errorf("%v sent by %s: %v, want WorkerCrashed by that signal", sig, how, err)
			}
		}
	}
	waitFullSize(t, p)
}

// TestWorkersInheritNoDescriptors: a pipe whose ends this process made
// inheritable is not open in the workers (its reader sees EOF once this
// process closes the write end); PassFiles hands a descriptor on.
func TestWorkersInheritNoDescriptors(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, f := range []*os.File{r, w} {
		// Inheritable, through SyscallConn: Fd() would put the pipe in
		// blocking mode, and the read deadline below would not apply.
		rc, err := f.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var ferr error
		if err := rc.Control(func(fd uintptr) { _, ferr = unix.FcntlInt(fd, unix.F_SETFD, 0) }); err != nil || ferr != nil {
			t.Fatal(err, ferr)
		}
	}
	p := newPool(t, Config{Workers: 2})
	waitFullSize(t, p)
	if _, err := run(t, p, "sleep", []byte("20")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	r.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := r.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("read of the pipe after closing its write end: %d, %v; want EOF (a worker holds the write end)", n, err)
	}

	r2, w2, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	defer w2.Close()
	p2 := newPool(t, Config{Workers: 1, PassFiles: []*os.File{w2}})
	if _, err := run(t, p2, "passed", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	r2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(r2, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("from the passed descriptor: %q, %v", buf, err)
	}
}

// TestStartFailuresNeverStrandCallers: while no worker can start, a job
// queued before and jobs submitted meanwhile end promptly with
// ErrWorkerStart and the reason, in one sentence; the pool goes on
// trying, and runs jobs again as soon as a worker starts.
func TestStartFailuresNeverStrandCallers(t *testing.T) {
	p := newPool(t, Config{Workers: 1, Stderr: io.Discard, spawnEnv: func(w, n int) []string {
		if n >= 1 && n <= 5 { // the worker's restarts fail for a while
			return []string{"TEST_INIT=fail"}
		}
		return nil
	}})
	if !p.killWorker(0) {
		t.Fatal("no worker to kill")
	}
	queued, err := p.Submit(context.Background(), "echo", []byte("q"))
	if err != nil && !errors.Is(err, ErrWorkerStart) {
		t.Fatal(err)
	}
	start := time.Now()
	if queued != nil {
		if _, err := waitFor(t, queued); !errors.Is(err, ErrWorkerStart) || !strings.Contains(err.Error(), "initializer failed") ||
			!strings.Contains(err.Error(), `standard error was "shmexec worker 0: initializer failed: initializer refuses"`) {
			t.Fatalf("a job queued while the worker could not start: %v, want ErrWorkerStart saying why", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("the queued job waited %v for its ErrWorkerStart", d)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); p.Stats().StartFailure == ""; {
		if time.Now().After(deadline) {
			t.Fatalf("no start failure in Stats: %+v", p.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	_, err = p.Submit(context.Background(), "echo", []byte("x"))
	if !errors.Is(err, ErrWorkerStart) || strings.Count(err.Error(), "fail to start") != 1 || strings.Contains(err.Error(), "by killed") {
		t.Fatalf("a submit while no worker can start: %v, want one ErrWorkerStart sentence", err)
	}
	waitHealed(t, p) // by itself, once the cause is gone
	if s := p.Stats(); s.StartFailures < 5 {
		t.Fatalf("start failures counted: %d, want 5", s.StartFailures)
	}
}

// TestWorkerStderr: what a worker writes to standard error while it
// starts reaches the pool's Stderr (through the supervisor, which keeps
// the tail for a start-up failure); once ready, the worker writes to the
// pool's Stderr directly, and its descriptor 2 is that file.
func TestWorkerStderr(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := newPool(t, Config{Workers: 1, Stderr: f, spawnEnv: func(w, n int) []string {
		return []string{"TEST_INIT_SAY=starting up"}
	}})
	f1, err := p.Submit(context.Background(), "stderr", []byte("from a job\n"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := waitFor(t, f1)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd())); string(out) != want {
		t.Fatalf("a ready worker's descriptor 2 is %q, want the pool's Stderr %q", out, want)
	}
	if b, _ := os.ReadFile(f.Name()); string(b) != "starting up\nfrom a job\n" {
		t.Fatalf("the pool's Stderr got %q", b)
	}
}

// TestWorkerKilledWhileItsStartLogIsForwarded: a worker that has moved
// the pool's stderr onto its descriptor 2 waits, before it is ready, for
// the supervisor to forward what it wrote to the start-up pipe (at most
// startLogWait). Here a process each start begins holds that pipe open,
// so every start waits out the bound; the worker is SIGKILLed inside the
// wait, again and again. Each kill is a start-up crash; the pool starts
// the worker again, is back at full size by its deadline (the wait never
// strands a start), and a job then ends once, with its value.
func TestWorkerKilledWhileItsStartLogIsForwarded(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stderr, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	t.Cleanup(func() { // the holders die with their worker (Pdeathsig); if one did not, stop it by its pid
		b, _ := os.ReadFile(f.Name())
		for _, line := range strings.Split(string(b), "\n") {
			if pid, err := strconv.Atoi(strings.TrimPrefix(line, "holder ")); err == nil && strings.HasPrefix(line, "holder ") {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	p := newPool(t, Config{Workers: 1, Stderr: f, spawnEnv: func(w, n int) []string {
		return []string{"TEST_INIT=hold-stderr"}
	}})
	// by pid: a killed process keeps its state until it is reaped
	signalled := map[int]bool{p.Stats().Workers[0].PID: true}
	if !p.killWorker(0) {
		t.Fatal("no worker to kill")
	}
	inWait, kills := 0, 1 // the first kill was of a ready worker
	for deadline := time.Now().Add(30 * time.Second); inWait < 3; time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d kills of a worker waiting for its start-up output in 30 s; want 3", inWait)
		}
		w := p.Stats().Workers[0]
		if signalled[w.PID] {
			continue
		}
		switch fd2, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/2", w.PID)); {
		case w.State == "starting" && fd2 == stderr && p.killStarting(0):
			signalled[w.PID] = true // between the move of the pool's stderr onto 2 and ready: in the wait
			inWait++
			kills++
		case w.State == "idle" && p.killWorker(0):
			signalled[w.PID] = true // it got through the wait first: start it again
			kills++
		}
	}
	start := time.Now()
	waitFullSize(t, p)
	t.Logf("%d kills in the wait, %d in all; back at full size %v after the last", inWait, kills, time.Since(start))
	if deaths := p.Stats().WorkerDeaths; deaths != uint64(kills) {
		t.Fatalf("%d worker deaths counted after %d processes killed", deaths, kills)
	}
	if out, err := run(t, p, "echo", []byte("x")); err != nil || string(out) != "x" {
		t.Fatalf("after the kills: %q, %v", out, err)
	}
	waitQuiet(t, p)
}

// TestWorkersKilledWhileStartingAreCrashes: workers SIGKILLed from
// outside while they start, again and again (as the OOM killer does under
// memory pressure): the pool reports them as killed, not as a broken
// command; jobs fail at once with ErrWorkerStart instead of waiting; the
// pool never stops trying, and runs jobs again once starts succeed.
func TestWorkersKilledWhileStartingAreCrashes(t *testing.T) {
	var slow atomic.Bool
	slow.Store(true)
	p := newPool(t, Config{Workers: 1, Stderr: io.Discard, spawnEnv: func(w, n int) []string {
		if n >= 1 && slow.Load() {
			return []string{"TEST_INIT=sleep"} // restarts start slowly: there is time to kill them
		}
		return nil
	}})
	if !p.killWorker(0) {
		t.Fatal("no worker to kill")
	}
	kills := 0
	for deadline := time.Now().Add(30 * time.Second); kills < 8; {
		if p.killStarting(0) {
			kills++
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d kills of a starting worker in 30s; want 8 (the pool stopped starting workers?)", kills)
		}
		time.Sleep(time.Millisecond)
	}
	reason := ""
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(reason, "killed by SIGKILL during start-up"); {
		if reason = p.Stats().StartFailure; time.Now().After(deadline) {
			t.Fatalf("start failure %q; want a worker killed by SIGKILL during start-up", reason)
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	if f, err := p.Submit(context.Background(), "echo", []byte("x")); err == nil {
		_, err = waitFor(t, f)
		if !errors.Is(err, ErrWorkerStart) {
			t.Fatalf("a job while no worker can start: %v, want ErrWorkerStart", err)
		}
	} else if !errors.Is(err, ErrWorkerStart) || !strings.Contains(err.Error(), "killed by SIGKILL") || strings.Count(err.Error(), "fail to start") != 1 {
		t.Fatalf("a submit while no worker can start: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the job waited %v for its ErrWorkerStart", d)
	}
	slow.Store(false)
	p.killStarting(0) // the slow one still starting: the next start is quick
	waitHealed(t, p)
	if d := describeExit(42, 0, 1); !strings.Contains(d, "exited with status 1") || strings.Contains(d, "killed") {
		t.Fatalf("an exit at start-up reads as a kill: %q", d)
	}
}

func TestTooLargeInputAndOutputFail(t *testing.T) {
	p := newPool(t, Config{MaxPayload: 1 << 20})
	if _, err := p.Submit(context.Background(), "echo", make([]byte, 1<<20+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("input over MaxPayload: %v", err)
	}
	if _, err := run(t, p, "big", []byte(strconv.Itoa(2<<20))); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("output over MaxPayload: %v", err)
	}
	if _, err := p.Submit(context.Background(), strings.Repeat("h", 100), nil); err == nil {
		t.Fatal("a 100-byte handler name was accepted")
	}
	waitQuiet(t, p)
}

func TestWorkerCrashEndsItsJobOnly(t *testing.T) {
	p := newPool(t, Config{})
	for _, tc := range []struct {
		handler, in string
		sig         syscall.Signal
		code        int
	}{{"kill", "", syscall.SIGKILL, -1}, {"exit", "7", 0, 7}} {
		_, err := run(t, p, tc.handler, []byte(tc.in))
		var ce *CrashError
		if !errors.As(err, &ce) || !errors.Is(err, ErrWorkerCrashed) {
			t.Fatalf("%s: %v, want a CrashError", tc.handler, err)
		}
		if ce.PID <= 0 || ce.Signal != tc.sig || ce.ExitCode != tc.code || ce.Attempts != 1 {
			t.Fatalf("%s: %+v", tc.handler, ce)
		}
		waitFullSize(t, p)
	}
	if out, err := run(t, p, "echo", []byte("ok")); err != nil || string(out) != "ok" {
		t.Fatalf("after crashes: %q, %v", out, err)
	}
	if s := p.Stats(); s.Respawned < 2 || s.WorkerDeaths < 2 {
		t.Fatalf("stats after two crashes: %+v", s)
	}
	waitQuiet(t, p)
}

// An idle worker spins on the inqueue with its spin bit set, and
// producers then skip the wake. SIGKILL it there: the other worker must
// still get every job at once (recovery clears the dead party's bit and
// wakes everyone; a sleeper would also end a stuck spin), nothing is
// lost, and the pool gets back to full size.
func TestKillSpinningIdleWorker(t *testing.T) {
	p := newPool(t, Config{Workers: 2})
	for round := 0; round < 6; round++ {
		out, err := run(t, p, "pid", nil)
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(string(out))
		// It has just published the result and gone back to the inqueue,
		// where an idle worker spins before it sleeps.
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 20; i++ {
			start := time.Now()
			if out, err := run(t, p, "echo", []byte("x")); err != nil || string(out) != "x" {
				t.Fatalf("round %d job %d after killing pid %d: %q, %v", round, i, pid, out, err)
			}
			// 1 s is a worker's wait slice: a job that waited for it was
			// not woken.
			if el := time.Since(start); el > 500*time.Millisecond {
				t.Fatalf("round %d job %d after killing the spinning worker took %v", round, i, el)
			}
		}
		waitFullSize(t, p)
	}
	waitQuiet(t, p)
}

func TestRetryAndPoison(t *testing.T) {
	p := newPool(t, Config{})
	marker := filepath.Join(t.TempDir(), "crashed")
	out, err := run(t, p, "crashonce", []byte(marker), SubmitOptions{Retries: 1})
	if err != nil || string(out) != "survived" {
		t.Fatalf("crash once with a retry: %q, %v", out, err)
	}
	_, err = run(t, p, "kill", nil, SubmitOptions{Retries: 2})
	var ce *CrashError
	if !errors.As(err, &ce) || ce.Attempts != 3 || !strings.Contains(ce.Error(), "poison") {
		t.Fatalf("poison job: %v", err)
	}
	waitFullSize(t, p)
	if out, err := run(t, p, "echo", []byte("alive")); err != nil || string(out) != "alive" {
		t.Fatalf("after a poison job: %q, %v", out, err)
	}
}

func TestJobPastTimeoutIsKilled(t *testing.T) {
	p := newPool(t, Config{JobTimeout: 200 * time.Millisecond})
	start := time.Now()
	_, err := run(t, p, "sleep", []byte("20000"))
	if !errors.Is(err, ErrTimeout) || !os.IsTimeout(err) {
		t.Fatalf("stuck job: %v, want ErrTimeout", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("timeout of 200ms took %v", el)
	}
	// A job with a longer own timeout is fine.
	if _, err := run(t, p, "sleep", []byte("300"), SubmitOptions{Timeout: 5 * time.Second, Retries: -1}); err != nil {
		t.Fatal(err)
	}
	waitFullSize(t, p)
	waitQuiet(t, p)
}

// shortWaitsRunOut checks that wait, a limited wait for a job that runs
// on, returns context.DeadlineExceeded for limits of 0 and 20 ms, and
// that both return promptly.
func shortWaitsRunOut(t *testing.T, name string, wait func(time.Duration) ([]byte, error)) {
	t.Helper()
	start := time.Now()
	for _, d := range []time.Duration{0, 20 * time.Millisecond} {
		if _, err := wait(d); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s(%v) on a running job: %v", name, d, err)
		}
	}
	if el := time.Since(start); el > 250*time.Millisecond {
		t.Fatalf("two short waits took %v", el)
	}
}

func TestWaitTimeout(t *testing.T) {
	p := newPool(t, Config{Workers: 1})
	c := p.Client()
	f, err := c.Submit(context.Background(), "sleep", []byte("300"))
	if err != nil {
		t.Fatal(err)
	}
	shortWaitsRunOut(t, "WaitTimeout", f.WaitTimeout)
	if _, err := f.WaitTimeout(-1); err != nil {
		t.Fatalf("WaitTimeout(-1): %v", err)
	}
	if _, err := f.WaitTimeout(0); err != nil {
		t.Fatalf("WaitTimeout(0) on an ended job: %v", err)
	}
	g, _ := c.Submit(context.Background(), "pid", nil)
	if out, err := g.WaitTimeout(10 * time.Second); err != nil || len(out) == 0 {
		t.Fatalf("WaitTimeout of a quick job: %q, %v", out, err)
	}
	waitQuiet(t, p)
}

type waitOutcome struct {
	out []byte
	err error
}

// startSleepingWait runs f.WaitSleeping(d) on a goroutine locked to its
// thread, as a C caller's is; awaitSleeper takes its outcome.
func startSleepingWait(f *Future, d time.Duration) <-chan waitOutcome {
	got := make(chan waitOutcome, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		out, err := f.WaitSleeping(d)
		got <- waitOutcome{out, err}
	}()
	return got
}

// awaitSleeper returns what a startSleepingWait got, failing the test if
// it does not return within 20 s (a sleeper nobody woke).
func awaitSleeper(t *testing.T, got <-chan waitOutcome) ([]byte, error) {
	t.Helper()
	select {
	case o := <-got:
		return o.out, o.err
	case <-time.After(20 * time.Second):
		t.Fatal("WaitSleeping did not return within 20s")
		return nil, nil
	}
}

func sleepingWait(t *testing.T, f *Future, d time.Duration) ([]byte, error) {
	t.Helper()
	return awaitSleeper(t, startSleepingWait(f, d))
}

// WaitSleeping, the wait of C callers, sleeps on the future's futex once
// its spin is over. Every way a job ends must wake it: a result (for every
// thread asleep on the future), its worker's death, a terminate; and a
// limit must end the wait while the job goes on.
func TestWaitSleeping(t *testing.T) {
	p := newPool(t, Config{Workers: 2})
	c := p.Client()
	f, err := c.Submit(context.Background(), "sleep", []byte("300"))
	if err != nil {
		t.Fatal(err)
	}
	shortWaitsRunOut(t, "WaitSleeping", func(d time.Duration) ([]byte, error) { return sleepingWait(t, f, d) })
	var sleepers []<-chan waitOutcome
	for i := 0; i < 4; i++ {
		sleepers = append(sleepers, startSleepingWait(f, -1))
	}
	for i, got := range sleepers {
		if out, err := awaitSleeper(t, got); err != nil || string(out) != "300" {
			t.Fatalf("sleeper %d of the job: %q, %v", i, out, err)
		}
	}
	if out, err := sleepingWait(t, f, 0); err != nil || string(out) != "300" {
		t.Fatalf("WaitSleeping(0) on an ended job: %q, %v", out, err)
	}

	// A worker killed from outside while its caller sleeps.
	g, _ := c.Submit(context.Background(), "sleep", []byte("30000"))
	waitBusy(t, p, 1)
	go func() {
		time.Sleep(50 * time.Millisecond) // the caller's spin is long over
		for _, w := range p.Stats().Workers {
			if w.State == "busy" && w.PID > 0 {
				syscall.Kill(w.PID, syscall.SIGKILL)
			}
		}
	}()
	var ce *CrashError
	if _, err := sleepingWait(t, g, -1); !errors.As(err, &ce) || ce.Signal != syscall.SIGKILL {
		t.Fatalf("the sleeping caller of a killed worker's job: %v, want a CrashError by SIGKILL", err)
	}
	waitFullSize(t, p)

	// A terminate while the caller sleeps.
	h, _ := c.Submit(context.Background(), "sleep", []byte("30000"))
	waitBusy(t, p, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		p.Terminate()
	}()
	_, err = sleepingWait(t, h, -1)
	if !errors.Is(err, ErrPoolClosed) || !errors.Is(err, os.ErrClosed) {
		t.Fatalf("the sleeping caller of a job its pool's terminate ended: %v, want ErrPoolClosed", err)
	}
	if err.Error() != "shmexec: pool closed: the pool was terminated while the job ran" {
		t.Fatalf("the terminated job's error reads %q (%T), want the pool's own text", err, err)
	}
}

func TestCancelQueuedAndRunningJobs(t *testing.T) {
	p := newPool(t, Config{Workers: 1})
	c := p.Client()
	busy, _ := c.Submit(context.Background(), "sleep", []byte("300"))
	queued, _ := c.Submit(context.Background(), "pid", nil)
	if !queued.Cancel(false) {
		t.Fatal("cancel of a queued job did not take")
	}
	if _, err := waitFor(t, queued); !errors.Is(err, ErrCancelled) {
		t.Fatalf("cancelled queued job: %v", err)
	}
	if _, err := waitFor(t, busy); err != nil {
		t.Fatalf("the running job: %v", err)
	}
	long, _ := c.Submit(context.Background(), "sleep", []byte("20000"))
	for p.Stats().Workers[0].Current != int64(refIdx(long.ref)) {
		time.Sleep(time.Millisecond)
	}
	if long.Cancel(false) {
		t.Fatal("cancel without kill took effect on a running job")
	}
	if !long.Cancel(true) {
		t.Fatal("cancel with kill of a running job did not take")
	}
	if _, err := waitFor(t, long); !errors.Is(err, ErrCancelled) {
		t.Fatalf("killed job: %v", err)
	}
	waitFullSize(t, p)
	waitQuiet(t, p)
}

// TestEnvironReadAtEverySpawn: Config.Environ is read at every spawn, respawns included,
// and WorkerEnv still applies on top of it.
func TestEnvironReadAtEverySpawn(t *testing.T) {
	var value atomic.Value
	value.Store("first")
	p := newPool(t, Config{
		Workers:   1,
		WorkerEnv: []string{"SHMX_T_EXTRA=extra"},
		Environ: func() []string {
			return append(os.Environ(), "SHMX_T_ENVIRON="+value.Load().(string))
		},
	})
	for _, tc := range []struct{ name, want string }{{"SHMX_T_ENVIRON", "first"}, {"SHMX_T_EXTRA", "extra"}} {
		if out, err := run(t, p, "env", []byte(tc.name)); err != nil || string(out) != tc.want {
			t.Fatalf("%s = %q, %v; want %q", tc.name, out, err, tc.want)
		}
	}
	value.Store("second")
	var ce *CrashError
	if _, err := run(t, p, "kill", nil); !errors.As(err, &ce) {
		t.Fatalf("kill: %v, want a CrashError", err)
	}
	if out, err := run(t, p, "env", []byte("SHMX_T_ENVIRON")); err != nil || string(out) != "second" {
		t.Fatalf("after a respawn: %q, %v; want \"second\"", out, err)
	}
}

func TestBadWorkerCommand(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"missing", Config{WorkerArgv: []string{"/nonexistent/worker"}}, "no such file"},
		{"exits at once", Config{WorkerArgv: []string{"/bin/false"}}, "exited with status 1"},
		{"not a worker", Config{WorkerArgv: []string{"/bin/true"}}, "exited with status 0"},
		{"initializer fails", Config{WorkerEnv: []string{"TEST_INIT=fail"}}, "initializer failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Workers = 2
			if cfg.WorkerArgv == nil {
				cfg.WorkerArgv = []string{os.Args[0], "-test.run=^$"}
			}
			cfg.Stderr = &bytes.Buffer{}
			start := time.Now()
			p, err := New(cfg)
			if err == nil {
				p.Terminate()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, ErrWorkerStart) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v; want ErrWorkerStart mentioning %q", err, tc.want)
			}
			if el := time.Since(start); el > 8*time.Second {
				t.Fatalf("giving up took %v", el)
			}
		})
	}
}

// sayPID makes a worker's initializer write "starting PID" to stderr,
// for killOnSay.
const sayPID = "TEST_INIT_SAY=starting {pid}"

// killOnSay is a pool's Stderr that SIGKILLs each process that writes
// "starting PID" to it (sayPID), after delay if that is set, and keeps
// their pids.
type killOnSay struct {
	delay  time.Duration
	mu     sync.Mutex
	buf    []byte
	killed []int
}

func (k *killOnSay) Write(b []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.buf = append(k.buf, b...)
	for i := bytes.IndexByte(k.buf, '\n'); i >= 0; i = bytes.IndexByte(k.buf, '\n') {
		var pid int
		if _, err := fmt.Sscanf(string(k.buf[:i]), "starting %d", &pid); err == nil && pid > 0 {
			if k.delay > 0 {
				time.AfterFunc(k.delay, func() { syscall.Kill(pid, syscall.SIGKILL) })
			} else {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			k.killed = append(k.killed, pid)
		}
		k.buf = k.buf[i+1:]
	}
	return len(b), nil
}

// New waits for its workers on the control region's ready event. Each
// worker's first two starts are SIGKILLed while New waits (two failed
// starts in a row, under the three that fail New): New must see them
// started again and return once both are ready, without waiting out
// the 30 s those starts would sleep or its own start timeout.
func TestWorkersKilledWhileNewWaits(t *testing.T) {
	k := &killOnSay{}
	start := time.Now()
	p := newPool(t, Config{Workers: 2, Stderr: k, StartTimeout: 30 * time.Second, spawnEnv: func(w, n int) []string {
		if n < 2 {
			return []string{sayPID, "TEST_INIT=sleep"}
		}
		return nil
	}})
	took := time.Since(start)
	k.mu.Lock()
	killed := len(k.killed)
	k.mu.Unlock()
	if killed != 4 {
		t.Fatalf("%d starting workers killed while New waited; want 4", killed)
	}
	if took > 20*time.Second {
		t.Fatalf("New took %v through 4 killed starts", took)
	}
	for i, w := range p.Stats().Workers {
		if w.State != "idle" && w.State != "busy" {
			t.Fatalf("worker %d is %q after New returned; want both ready", i, w.State)
		}
	}
	if out, err := run(t, p, "echo", []byte("x")); err != nil || string(out) != "x" {
		t.Fatalf("a job after the kills: %q, %v", out, err)
	}
	t.Logf("New returned %v after 4 kills of starting workers", took.Round(time.Millisecond))
}

// TestNewReportsStartsKilledEveryTime: every start of every worker is
// SIGKILLed from outside while New waits. Once each worker has failed to
// start newStartTries times in a row, New must say so, naming the
// signal, well before its start timeout, and every killed process must
// be gone.
func TestNewReportsStartsKilledEveryTime(t *testing.T) {
	k := &killOnSay{}
	start := time.Now()
	p, err := New(Config{Workers: 2, WorkerArgv: []string{os.Args[0], "-test.run=^$"}, Stderr: k,
		StartTimeout: 30 * time.Second, WorkerEnv: []string{sayPID, "TEST_INIT=sleep"}})
	took := time.Since(start)
	if err == nil {
		p.Terminate()
		t.Fatal("New succeeded with every start killed")
	}
	if !errors.Is(err, ErrWorkerStart) || !strings.Contains(err.Error(), "SIGKILL") {
		t.Fatalf("New: %v; want ErrWorkerStart naming SIGKILL", err)
	}
	if took > 10*time.Second {
		t.Fatalf("New gave up after %v", took)
	}
	k.mu.Lock()
	killed := append([]int(nil), k.killed...)
	k.mu.Unlock()
	if len(killed) < 2*newStartTries {
		t.Fatalf("New gave up after %d killed starts; want at least %d", len(killed), 2*newStartTries)
	}
	for _, pid := range killed {
		for deadline := time.Now().Add(5 * time.Second); syscall.Kill(pid, 0) == nil; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("killed worker %d is still there 5 s after New returned", pid)
			}
		}
	}
	t.Logf("New gave up %v after %d killed starts: %v", took.Round(time.Millisecond), len(killed), err)
}

// A worker that is ready is SIGKILLed while New still waits for the
// other: New must count it out, be woken by its replacement turning
// ready, and return with both workers alive and ready, long before its
// start timeout. Worker 1 turns ready at about 1 s; worker 0 at once,
// and is killed 300 ms after its initializer has said its pid (ready
// follows at once, after at most startLogWait); its replacement turns
// ready at about 2.3 s, after worker 1, so that only the replacement's
// ready can end New's wait.
func TestReadyWorkerKilledWhileNewWaits(t *testing.T) {
	k := &killOnSay{delay: 3 * startLogWait}
	start := time.Now()
	p := newPool(t, Config{Workers: 2, Stderr: k, StartTimeout: 30 * time.Second, spawnEnv: func(w, n int) []string {
		switch {
		case w == 0 && n == 0:
			return []string{sayPID}
		case w == 0:
			return []string{"TEST_INIT=sleep", "TEST_INIT_SLEEP=2s"}
		}
		return []string{"TEST_INIT=sleep", "TEST_INIT_SLEEP=1s"}
	}})
	took := time.Since(start)
	st := p.Stats()
	k.mu.Lock()
	killed := append([]int(nil), k.killed...)
	k.mu.Unlock()
	if len(killed) != 1 || st.WorkerDeaths != 1 || st.StartFailures != 0 {
		t.Fatalf("%d killed, %d deaths, %d start failures; want one ready worker killed", len(killed), st.WorkerDeaths, st.StartFailures)
	}
	if took < 2*time.Second || took > 20*time.Second {
		t.Fatalf("New returned after %v; want once the replacement is ready (about 2.3 s)", took)
	}
	for i, w := range st.Workers {
		if w.State != "idle" && w.State != "busy" {
			t.Fatalf("worker %d is %q after New returned; want both ready", i, w.State)
		}
		if w.PID == killed[0] || syscall.Kill(w.PID, 0) != nil {
			t.Fatalf("worker %d is pid %d, killed or gone, after New returned", i, w.PID)
		}
	}
	if out, err := run(t, p, "echo", []byte("x")); err != nil || string(out) != "x" {
		t.Fatalf("a job after the kill: %q, %v", out, err)
	}
	t.Logf("New returned %v after a ready worker's death", took.Round(time.Millisecond))
}

// A start-up event's wait with no time left looks once and returns: a
// futex wait takes a negative timeout as no limit, and New computes what
// is left of its start timeout as it goes.
func TestEventWaitWithNoTimeLeft(t *testing.T) {
	p := newPool(t, Config{Workers: 1})
	for _, d := range []time.Duration{0, -time.Nanosecond, -time.Hour} {
		done := make(chan bool, 1)
		go func() { done <- p.l.startEvent().wait(d, func() bool { return false }) }()
		select {
		case got := <-done:
			if got {
				t.Fatalf("wait(%v) = true with ok false", d)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("wait(%v) with ok false still sleeps after 5 s", d)
		}
	}
}

// A worker that cannot exit when Close tells it to (stopped, SIGSTOP)
// is SIGKILLed after the second that Close gives workers to exit; it returns
// once it is gone, woken by its exit rather than waiting out the 5 s it
// allows a killed worker, and nothing is left of it.
func TestCloseKillsAStoppedWorker(t *testing.T) {
	p := newPool(t, Config{Workers: 2})
	pid := p.Stats().Workers[0].PID
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGKILL) // if the pool left it
	start := time.Now()
	if err := p.Close(); err != nil {
		t.Fatalf("Close with a stopped idle worker: %v", err)
	}
	took := time.Since(start)
	if took > 4*time.Second {
		t.Fatalf("Close took %v: it waited out its wait for the killed worker", took)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("the stopped worker %d is still there after Close (kill 0: %v)", pid, err)
	}
	t.Logf("Close returned after %v", took.Round(time.Millisecond))
}

// With ReadyWorkers 1, New returns once one worker is up, and jobs run on
// it while the others start; by default it waits for all of them.
func TestReadyWorkers(t *testing.T) {
	slow := []string{"TEST_INIT=sleep-unless-first"}
	start := time.Now()
	p := newPool(t, Config{Workers: 2, ReadyWorkers: 1, WorkerEnv: slow})
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("New took %v: it waited for the worker that starts in 30 s", el)
	}
	for i := 0; i < 3; i++ {
		if out, err := run(t, p, "init", nil); err != nil || !strings.HasPrefix(string(out), "initialized in ") {
			t.Fatalf("job %d while a worker starts: %q, %v", i, out, err)
		}
	}
	_, err := New(Config{Workers: 2, WorkerArgv: []string{os.Args[0], "-test.run=^$"}, WorkerEnv: slow,
		StartTimeout: time.Second, Stderr: &bytes.Buffer{}})
	if !errors.Is(err, ErrWorkerStart) || !strings.Contains(err.Error(), "1 of 2 workers ready") {
		t.Fatalf("New waiting for all, one worker slow: %v; want ErrWorkerStart, 1 of 2 ready", err)
	}
	if _, err := New(Config{Workers: 2, ReadyWorkers: 3}); err == nil || !strings.Contains(err.Error(), "ReadyWorkers 3") {
		t.Fatalf("ReadyWorkers over Workers: %v", err)
	}
}

// A pool that returned with one worker ready is used while the other
// starts. SIGKILL the ready one in the middle of a job, and the job ends
// with a CrashError instead of waiting for the worker still starting; kill
// the starting one too, and it is started again, and jobs run once the
// first is back. (In between no worker is ready and the last start
// failed: submits may fail at once with ErrWorkerStart, by design.)
func TestKillsWhileWorkersStillStart(t *testing.T) {
	p := newPool(t, Config{Workers: 2, ReadyWorkers: 1, WorkerEnv: []string{"TEST_INIT=sleep-unless-first"}})
	f, err := p.Submit(context.Background(), "sleep", []byte("10000"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().Workers[0].State != "busy" {
		if time.Now().After(deadline) {
			t.Fatalf("the job never started: %+v", p.Stats().Workers)
		}
		time.Sleep(time.Millisecond)
	}
	if !p.killWorker(0) {
		t.Fatal("worker 0 could not be killed")
	}
	start := time.Now()
	var ce *CrashError
	if _, err := waitFor(t, f); !errors.As(err, &ce) {
		t.Fatalf("the killed worker's job: %v, want a CrashError", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("the killed worker's job took %v to end", el)
	}
	pid := p.Stats().Workers[1].PID
	if !p.killStarting(1) {
		t.Fatalf("worker 1 is not starting: %+v", p.Stats().Workers)
	}
	deadline = time.Now().Add(10 * time.Second)
	for w := p.Stats().Workers[0]; w.State != "idle" && w.State != "busy"; w = p.Stats().Workers[0] {
		if time.Now().After(deadline) {
			t.Fatalf("the killed ready worker was not replaced: %+v", w)
		}
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < 3; i++ {
		if out, err := run(t, p, "echo", []byte("y")); err != nil || string(out) != "y" {
			t.Fatalf("job %d after the kills: %q, %v", i, out, err)
		}
	}
	deadline = time.Now().Add(10 * time.Second)
	for w := p.Stats().Workers[1]; w.PID == pid || w.PID == 0; w = p.Stats().Workers[1] {
		if time.Now().After(deadline) {
			t.Fatalf("the killed starting worker was not started again: %+v", w)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestInitializerAndMaxTasks(t *testing.T) {
	p := newPool(t, Config{Workers: 1, MaxTasksPerWorker: 3})
	out, err := run(t, p, "init", nil)
	if err != nil || !strings.HasPrefix(string(out), "initialized in ") {
		t.Fatalf("init: %q, %v", out, err)
	}
	pids := map[string]bool{}
	for i := 0; i < 10; i++ {
		out, err := run(t, p, "pid", nil)
		if err != nil {
			t.Fatal(err)
		}
		pids[string(out)] = true
	}
	if len(pids) < 3 {
		t.Fatalf("10 jobs with 3 tasks per worker ran in %d processes", len(pids))
	}
	if d := p.Stats().WorkerDeaths; d != 0 {
		t.Fatalf("task-limit exits counted as %d deaths", d)
	}
}

// submitN submits n jobs of handler with input in, failing the test if
// one cannot be submitted.
func submitN(t *testing.T, p *Pool, n int, handler, in string) []*Future {
	t.Helper()
	fs := make([]*Future, n)
	for i := range fs {
		f, err := p.Submit(context.Background(), handler, []byte(in))
		if err != nil {
			t.Fatal(err)
		}
		fs[i] = f
	}
	return fs
}

func TestCloseFinishesQueued(t *testing.T) {
	p := newPool(t, Config{})
	fs := submitN(t, p, 20, "sleep", "20")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for i, f := range fs {
		if _, err := waitFor(t, f); err != nil {
			t.Fatalf("job %d after Close: %v", i, err)
		}
	}
	if _, err := p.Submit(context.Background(), "echo", nil); !errors.Is(err, ErrPoolClosed) || !errors.Is(err, os.ErrClosed) ||
		err.Error() != "shmexec: pool closed" {
		t.Fatalf("submit after Close: %v, want ErrPoolClosed, which reads so", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestTerminateDuringClose: a Terminate while a Close waits for jobs
// (another goroutine's) ends that wait at once: the jobs are killed, the
// Close says so, and Terminate returns once the pool is down.
func TestTerminateDuringClose(t *testing.T) {
	p, err := New(Config{Workers: 2, WorkerArgv: []string{os.Args[0], "-test.run=^$"}, QueueDepth: 16})
	if err != nil {
		t.Fatal(err)
	}
	fs := submitN(t, p, 4, "sleep", "30000")
	waitBusy(t, p, 2)
	pids := []int{p.Stats().Workers[0].PID, p.Stats().Workers[1].PID}
	closed := make(chan error, 1)
	go func() { closed <- p.CloseTimeout(time.Minute) }()
	deadline := time.Now().Add(10 * time.Second)
	for p.l.poolState().Load() != poolClosing { // the Close waits for the jobs now
		if time.Now().After(deadline) {
			t.Fatal("Close never started")
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	if err := p.Terminate(); err == nil || !strings.Contains(err.Error(), "terminated while jobs still ran") {
		t.Errorf("Terminate during Close: %v, want the Close's error, which says so", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("Terminate during Close took %v", el)
	}
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("worker %d is still there when Terminate returns", pid)
		}
	}
	select {
	case err := <-closed:
		if err == nil || !strings.Contains(err.Error(), "terminated while jobs still ran; killed") {
			t.Fatalf("the Close that Terminate cut short: %v, want its jobs killed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return after Terminate")
	}
	for i, f := range fs {
		if _, err := waitFor(t, f); !errors.Is(err, ErrPoolClosed) {
			t.Fatalf("job %d: %v, want ErrPoolClosed", i, err)
		}
	}
}

func TestTerminateFailsPendingAtOnce(t *testing.T) {
	p := newPool(t, Config{})
	fs := submitN(t, p, 10, "sleep", "30000")
	waitBusy(t, p, p.cfg.Workers) // jobs running and queued
	start := time.Now()
	if err := p.Terminate(); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("Terminate took %v", el)
	}
	for i, f := range fs {
		if _, err := waitFor(t, f); !errors.Is(err, ErrPoolClosed) {
			t.Fatalf("job %d after Terminate: %v", i, err)
		}
	}
}

func TestStatsFromAnotherMapping(t *testing.T) {
	p := newPool(t, Config{})
	run(t, p, "fail", nil)
	s, err := ReadStats(p.File())
	if err != nil {
		t.Fatal(err)
	}
	if s.Failed["handler_error"] != 1 || s.Submitted != 1 || s.Collected != 1 || len(s.Workers) != 2 || s.Workers[0].PID == 0 {
		t.Fatalf("stats through a read-only mapping: %+v", s)
	}
	_ = fmt.Sprint
}

func TestUnobservedFailures(t *testing.T) {
	p := newPool(t, Config{})
	c := p.Client()
	func() {
		f, _ := c.Submit(context.Background(), "fail", nil)
		<-f.Done() // ended, but its error is never read
		g, _ := c.Submit(context.Background(), "fail", nil)
		waitFor(t, g) // read: observed
	}()
	waitUnobserved(t, c, 1)
}

// A job whose worker is SIGKILLed ends in a CrashError that recovery
// delivers, not the worker; dropped unread, it counts as unobserved like
// a handler's error, in the client and in the segment's client record
// (what shmexec stat shows), and a crash that was read does not.
func TestUnobservedCrashesAreCounted(t *testing.T) {
	p := newPool(t, Config{Workers: 1})
	c := p.Client()
	func() {
		f, err := c.Submit(context.Background(), "kill", nil) // the worker SIGKILLs itself
		if err != nil {
			t.Fatal(err)
		}
		<-f.Done() // ended, but its error is never read
		g, err := c.Submit(context.Background(), "kill", nil)
		if err != nil {
			t.Fatal(err)
		}
		var ce *CrashError
		if _, err := waitFor(t, g); !errors.As(err, &ce) {
			t.Fatalf("a killed worker's job: %v, want a CrashError", err)
		}
	}()
	waitUnobserved(t, c, 1)
	if !c.l.enter() {
		t.Fatal("segment gone")
	}
	got := c.l.client(c.index).Uint64(crUnobserved).Load()
	c.l.exit()
	if got != 1 {
		t.Fatalf("segment's unobserved count = %d, want 1", got)
	}
}

// waitUnobserved collects garbage until c counts want unobserved
// failures, for at most 10 s.
func waitUnobserved(t *testing.T, c *Client, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.Unobserved() != want {
		if time.Now().After(deadline) {
			t.Fatalf("Unobserved = %d after GC, want %d", c.Unobserved(), want)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMapStream(t *testing.T) {
	p := newPool(t, Config{})
	in := make(chan []byte)
	go func() {
		for i := 0; i < 3000; i++ {
			in <- []byte(strconv.Itoa(i))
		}
		close(in)
	}()
	i := 0
	for r := range p.Client().MapStream(context.Background(), "echo", in) {
		if r.Err != nil || string(r.Output) != strconv.Itoa(i) {
			t.Fatalf("item %d: %q, %v", i, r.Output, r.Err)
		}
		i++
	}
	if i != 3000 {
		t.Fatalf("%d results, want 3000", i)
	}
}

func TestWorkerCannotStartPool(t *testing.T) {
	p := newPool(t, Config{Workers: 1})
	out, err := run(t, p, "nested", nil)
	if err != nil || !strings.Contains(string(out), "cannot start a pool") {
		t.Fatalf("a pool started inside a worker: %q, %v", out, err)
	}
}

// TestWorkersChildrenAreNotWorkers: a program a task runs gets none of
// the worker's handshake (it would take itself for the worker, and one
// that makes a pool could not) and none of the pool's descriptors, while
// the worker itself still is one (TestWorkerCannotStartPool).
func TestWorkersChildrenAreNotWorkers(t *testing.T) {
	p := newPool(t, Config{Workers: 1})
	// The first worker, then the one that replaces it after a SIGKILL,
	// which the supervisor starts with a handshake of its own.
	for round := 0; round < 2; round++ {
		if round == 1 {
			if !p.killWorker(0) {
				t.Fatal("no worker to kill")
			}
			waitFullSize(t, p)
		}
		out, err := run(t, p, "child", nil)
		if err != nil {
			t.Fatal(err)
		}
		env, fds, ok := strings.Cut(string(out), "fds:\n")
		if !ok {
			t.Fatalf("the child's output: %q", out)
		}
		for _, kv := range strings.Split(env, "\n") {
			if strings.HasPrefix(kv, "SHMEXEC_") && !strings.HasPrefix(kv, envPassFDs+"=") {
				t.Errorf("round %d: a worker's child has %s in its environment", round, kv)
			}
		}
		if got := strings.Fields(fds); !slices.Equal(got, []string{"0", "1", "2"}) {
			t.Errorf("round %d: a worker's child has descriptors %v open, want 0, 1 and 2 only", round, got)
		}
		if out, err := run(t, p, "nested", nil); err != nil || !strings.Contains(string(out), "cannot start a pool") {
			t.Fatalf("round %d: a pool started inside the worker after its child ran: %q, %v", round, out, err)
		}
	}
}

// TestMapWithCrash: when the workers running a Map's items die, those
// items end with the crash, Map returns, and the pool serves the next Map.
func TestMapWithCrash(t *testing.T) {
	p := newPool(t, Config{})
	res, err := p.Client().Map(context.Background(), "kill", [][]byte{nil, nil, nil})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		var ce *CrashError
		if !errors.As(r.Err, &ce) {
			t.Fatalf("item %d of a Map whose workers die: %v", i, r.Err)
		}
	}
	waitFullSize(t, p)
	in := make([][]byte, 2000)
	for i := range in {
		in[i] = []byte(strconv.Itoa(i))
	}
	res, err = p.Client().Map(context.Background(), "echo", in)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil || string(r.Output) != strconv.Itoa(i) {
			t.Fatalf("item %d after the crashes: %q, %v", i, r.Output, r.Err)
		}
	}
}

// TestOutputAllocator: SubmitOptions.Output receives the output's size
// and the output lands in the memory it returned; failures do not call it.
func TestOutputAllocator(t *testing.T) {
	p := newPool(t, Config{Workers: 1})
	var calls []int
	var mine []byte
	alloc := func(n int) []byte {
		calls = append(calls, n)
		mine = make([]byte, n, n+8)
		return mine
	}
	ctx := context.Background()
	f, err := p.SubmitWith(ctx, "echo", []byte("into my memory"), SubmitOptions{Retries: -1, Output: alloc})
	if err != nil {
		t.Fatal(err)
	}
	out, err := f.Wait(ctx)
	if err != nil || string(out) != "into my memory" {
		t.Fatalf("%q %v", out, err)
	}
	if len(calls) != 1 || calls[0] != len(out) || &out[0] != &mine[0] {
		t.Fatalf("allocator calls %v; output not in its memory", calls)
	}
	f, err = p.SubmitWith(ctx, "fail", []byte("x"), SubmitOptions{Retries: -1, Output: alloc})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Wait(ctx); !errors.Is(err, ErrHandler) || len(calls) != 1 {
		t.Fatalf("a failed job: %v, allocator calls %v", err, calls)
	}
}

// OnDone runs once per job, after Done is closed, for results and
// failures alike (a handler error, a worker SIGKILLed mid-job), also
// when nobody waits for the job.
func TestOnDoneRunsOncePerJob(t *testing.T) {
	p := newPool(t, Config{Workers: 2})
	ctx := context.Background()
	var mu sync.Mutex
	seen := map[uint64]int{}
	all := make(chan struct{}, 64)
	onDone := func(f *Future) {
		select {
		case <-f.Done():
		default:
			t.Errorf("OnDone for job %d before Done was closed", f.ID())
		}
		mu.Lock()
		seen[f.ID()]++
		mu.Unlock()
		all <- struct{}{}
	}
	var fs []*Future
	for i := 0; i < 40; i++ {
		h := "echo"
		switch i % 10 {
		case 3, 7:
			h = "fail"
		case 5:
			h = "kill" // the worker SIGKILLs itself: WorkerCrashed
		}
		f, err := p.SubmitWith(ctx, h, []byte("x"), SubmitOptions{Retries: 0, OnDone: onDone})
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	deadline := time.After(30 * time.Second)
	for range fs {
		select {
		case <-all:
		case <-deadline:
			t.Fatalf("OnDone ran for %d of %d jobs", len(seen), len(fs))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	crashed := 0
	for _, f := range fs {
		if seen[f.ID()] != 1 {
			t.Fatalf("job %d: OnDone ran %d times", f.ID(), seen[f.ID()])
		}
		var ce *CrashError
		if _, err, _ := f.Result(); errors.As(err, &ce) {
			crashed++
		}
	}
	if crashed != 4 {
		t.Fatalf("%d jobs ended WorkerCrashed, want the 4 killed ones", crashed)
	}
}

// Outputs left in place (SubmitOptions.InPlace): a view of the segment,
// freed by Release; copied instead below the threshold, inline, or once
// held outputs fill half the arena; readable after Close until released.
func TestOutputInPlace(t *testing.T) {
	p := newPool(t, Config{Workers: 1, MaxPayload: 4 << 20, ArenaSize: 16 << 20})
	arena, _ := p.l.arena.Bytes(0, uint64(p.l.arena.Len()))
	inArena := func(b []byte) bool {
		return len(b) > 0 && uintptr(unsafe.Pointer(&b[0])) >= uintptr(unsafe.Pointer(&arena[0])) &&
			uintptr(unsafe.Pointer(&b[0])) < uintptr(unsafe.Pointer(&arena[0]))+uintptr(len(arena))
	}
	ctx := context.Background()
	opts := SubmitOptions{Retries: -1, InPlace: 1 << 20}
	big := func() *Future {
		f, err := p.SubmitWith(ctx, "big", []byte(strconv.Itoa(3<<20)), opts)
		if err != nil {
			t.Fatal(err)
		}
		out, err := waitFor(t, f)
		if err != nil || len(out) != 3<<20 || out[12345] != byte(12345%256) {
			t.Fatalf("big: %d bytes, %v", len(out), err)
		}
		return f
	}
	f := big()
	if out, _ := f.Wait(ctx); !f.InPlace() || !inArena(out) {
		t.Fatalf("a 3 MiB output with InPlace 1 MiB: in place %v, in the arena %v", f.InPlace(), inArena(out))
	}
	if s := p.Stats(); s.PagesInUse != 48 || s.SlotsInUse != 0 {
		t.Fatalf("held output: %d pages, %d slots in use; want 48 pages (3 MiB), no slot", s.PagesInUse, s.SlotsInUse)
	}
	// Half the 256-page arena is 128 pages: a third 48-page output is
	// copied while two are held.
	g, h := big(), big()
	if !g.InPlace() {
		t.Fatal("a second output was not left in place")
	}
	if out, _ := h.Wait(ctx); h.InPlace() || inArena(out) {
		t.Fatal("an output past half the arena was left in place")
	}
	h.Release() // a copied output: nothing to free
	f.Release()
	f.Release()
	g.Release()
	waitQuiet(t, p)
	for _, in := range [][]byte{[]byte("small"), make([]byte, 512<<10)} {
		h, err := p.SubmitWith(ctx, "echo", in, opts)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := waitFor(t, h); err != nil || !bytes.Equal(out, in) || h.InPlace() || inArena(out) {
			t.Fatalf("echo of %d bytes under the threshold: in place %v, %v", len(in), h.InPlace(), err)
		}
	}
	// A worker SIGKILLed while an output is held: recovery frees what
	// the dead worker's job owned, not the held pages.
	f = big()
	out, _ := f.Wait(ctx)
	if _, err := run(t, p, "kill", nil); !errors.Is(err, ErrWorkerCrashed) {
		t.Fatalf("kill: %v", err)
	}
	waitFullSize(t, p)
	if g := big(); !g.InPlace() || out[3<<20-1] != byte((3<<20-1)%256) || p.Stats().PagesInUse != 96 {
		t.Fatalf("after a worker's death: in place %v, %d pages in use (want 96)", g.InPlace(), p.Stats().PagesInUse)
	} else {
		g.Release()
	}
	f.Release()
	waitQuiet(t, p)
	// Closed with an output held: it stays readable until released.
	f = big()
	out, _ = f.Wait(ctx)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if out[3<<20-1] != byte((3<<20-1)%256) {
		t.Fatal("a held output changed after Close")
	}
	f.Release()
}

// A worker whose output finds the arena full waits for space (it used to
// fail the job at once with "no arena space").
func TestOutputWaitsForSpace(t *testing.T) {
	p := newPool(t, Config{Workers: 1, MaxPayload: 4 << 20, ArenaSize: 16 << 20})
	var hogs []*Buffer // 14 MiB of the 16
	for range 4 {
		b, err := p.Client().AllocBuffer(7 << 19)
		if err != nil {
			t.Fatal(err)
		}
		hogs = append(hogs, b)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		for _, b := range hogs {
			b.Release()
		}
	}()
	start := time.Now()
	out, err := run(t, p, "big", []byte(strconv.Itoa(3<<20)))
	if err != nil || len(out) != 3<<20 {
		t.Fatalf("an output that had to wait for space: %d bytes, %v", len(out), err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("the output took %v: it did not wait for the held space", d)
	}
	waitQuiet(t, p)
}

// TestStartFailureReasonIsTheLatest: the start-up state carries the
// latest failure's reason, not the first one's, and clears.
func TestStartFailureReasonIsTheLatest(t *testing.T) {
	l := smallLayout(t, "startstate")
	if got := l.startFailure(); got != "" {
		t.Fatalf("a new pool's start-up state: %q", got)
	}
	l.setStartFailure("worker pid 1 was killed by SIGKILL during start-up")
	l.setStartFailure("the worker command exited with status 1 during start-up (pid 2)")
	if got := l.startFailure(); got != "the worker command exited with status 1 during start-up (pid 2)" {
		t.Fatalf("after two failures the reason is %q, want the second", got)
	}
	l.setStartFailure("")
	if got := l.startFailure(); got != "" {
		t.Fatalf("after a worker is ready: %q", got)
	}
}

// The supervisor ticks slowly while nothing it watches needs it (calm),
// and fast while a running job has a deadline; a deadline that appears
// while it is calm is still enforced.
func TestSupervisorTicksSlowlyWhenCalm(t *testing.T) {
	p := newPool(t, Config{Workers: 1})
	waitFullSize(t, p)
	rate := func(d time.Duration) float64 { // ticks a second, over d
		n := p.ticks.Load()
		time.Sleep(d)
		return float64(p.ticks.Load()-n) / d.Seconds()
	}
	time.Sleep(100 * time.Millisecond) // past the ramp from the fast tick
	calm := rate(500 * time.Millisecond)
	// A job that runs long under a deadline keeps the tick fast.
	f, err := p.Client().SubmitWith(context.Background(), "sleep", []byte("20000"), SubmitOptions{Timeout: 10 * time.Second, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	waitJobRunning(t, p, f)
	watched := rate(500 * time.Millisecond)
	// The fast tick is 500 a second and the calm one 62.5: between them
	// lies a wide margin for a loaded machine's late timers.
	if calm > 120 || watched < 150 {
		t.Errorf("ticks a second: %.0f while calm (want about %.1f), %.0f with a deadline to watch (want about %.0f)",
			calm, float64(time.Second/tickCalm), watched, float64(time.Second/tickInterval))
	}
	if !f.Cancel(true) {
		t.Fatal("cancel of the running job failed")
	}
	if _, err := waitFor(t, f); err == nil {
		t.Fatal("the cancelled job succeeded")
	}
	// Calm again, a job with a short deadline is killed in time.
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if _, err := run(t, p, "sleep", []byte("20000"), SubmitOptions{Timeout: 100 * time.Millisecond, Retries: -1}); !errors.Is(err, ErrTimeout) {
		t.Fatalf("a job past its deadline: %v, want ErrTimeout", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("a timeout of 100ms took %v", el)
	}
	waitFullSize(t, p)
}

// waitJobRunning waits until f's job runs in a worker.
func waitJobRunning(t *testing.T, p *Pool, f *Future) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Millisecond) {
		if wState(p.l.slotState(refIdx(f.ref)).Load()) == slotRunning {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the job did not start running within 20s")
		}
	}
}

// While the supervisor ticks slowly (a job without a deadline runs, every
// worker is up), a cancel-and-kill request and a SIGKILL from outside
// still end each job with exactly one result, and the pool gets its
// workers back.
func TestKillsWhileTheSupervisorIsCalm(t *testing.T) {
	p := newPool(t, Config{Workers: 1})
	waitFullSize(t, p)
	calmRunning := func() *Future {
		t.Helper()
		f, err := p.Client().SubmitWith(context.Background(), "sleep", []byte("20000"), SubmitOptions{Retries: -1})
		if err != nil {
			t.Fatal(err)
		}
		waitJobRunning(t, p, f)
		time.Sleep(100 * time.Millisecond) // the tick has slowed to tickCalm
		return f
	}
	f := calmRunning()
	start := time.Now()
	if !f.Cancel(true) {
		t.Fatal("cancel of the running job failed")
	}
	if _, err := waitFor(t, f); !errors.Is(err, ErrCancelled) {
		t.Fatalf("a job cancelled and killed while the supervisor was calm: %v, want ErrCancelled", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("cancel and kill took %v", el)
	}
	waitFullSize(t, p)

	f = calmRunning()
	if !p.killWorker(0) {
		t.Fatal("the worker was not up to be killed")
	}
	var ce *CrashError
	if _, err := waitFor(t, f); !errors.As(err, &ce) {
		t.Fatalf("a job whose worker was SIGKILLed while the supervisor was calm: %v, want a CrashError", err)
	}
	waitFullSize(t, p)
	if out, err := run(t, p, "echo", []byte("back")); err != nil || string(out) != "back" {
		t.Fatalf("after the kills: %q, %v", out, err)
	}
}
