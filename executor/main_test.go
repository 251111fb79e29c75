package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmexec/shmexec/internal/testutil"
)

// The test binary is client and worker at once: a pool started by a test
// re-executes it, and TestMain serves as a worker when the handshake is
// in the environment.

var initValue string

func registerTestHandlers() {
	Handle("echo", func(ctx context.Context, in []byte) ([]byte, error) { return in, nil })
	Handle("empty", func(ctx context.Context, in []byte) ([]byte, error) { return nil, nil })
	Handle("fail", func(ctx context.Context, in []byte) ([]byte, error) {
		return nil, fmt.Errorf("failed on %q", in)
	})
	Handle("panic", func(ctx context.Context, in []byte) ([]byte, error) { panic("boom: " + string(in)) })
	Handle("sleep", func(ctx context.Context, in []byte) ([]byte, error) {
		ms, _ := strconv.Atoi(string(in))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return in, nil
	})
	Handle("kill", func(ctx context.Context, in []byte) ([]byte, error) {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	})
	// signal sends its worker the signal numbered in its input, to the
	// process ("kill") or to its own thread ("tkill": how raise does it).
	Handle("signal", func(ctx context.Context, in []byte) ([]byte, error) {
		num, how, _ := strings.Cut(string(in), ":")
		n, _ := strconv.Atoi(num)
		if how == "tkill" {
			syscall.Tgkill(os.Getpid(), syscall.Gettid(), syscall.Signal(n))
		} else {
			syscall.Kill(os.Getpid(), syscall.Signal(n))
		}
		time.Sleep(2 * time.Second)
		return []byte("survived"), nil
	})
	// passed writes its input to the first descriptor of Config.PassFiles.
	Handle("passed", func(ctx context.Context, in []byte) ([]byte, error) {
		fd, err := strconv.Atoi(strings.Split(os.Getenv(envPassFDs), ",")[0])
		if err != nil {
			return nil, err
		}
		_, err = os.NewFile(uintptr(fd), "passed").Write(in)
		return nil, err
	})
	Handle("exit", func(ctx context.Context, in []byte) ([]byte, error) {
		code, _ := strconv.Atoi(string(in))
		os.Exit(code)
		return nil, nil
	})
	// crashonce dies the first time it sees a marker path that does not
	// exist yet, and succeeds once it does.
	Handle("crashonce", func(ctx context.Context, in []byte) ([]byte, error) {
		if _, err := os.Stat(string(in)); errors.Is(err, os.ErrNotExist) {
			os.WriteFile(string(in), nil, 0o600)
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
		return []byte("survived"), nil
	})
	Handle("sleeppid", func(ctx context.Context, in []byte) ([]byte, error) {
		ms, _ := strconv.Atoi(string(in))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return []byte(strconv.Itoa(os.Getpid())), nil
	})
	Handle("env", func(ctx context.Context, in []byte) ([]byte, error) { return []byte(os.Getenv(string(in))), nil })
	Handle("pid", func(ctx context.Context, in []byte) ([]byte, error) {
		return []byte(strconv.Itoa(os.Getpid())), nil
	})
	Handle("nested", func(ctx context.Context, in []byte) ([]byte, error) {
		p, err := New(Config{Workers: 1})
		if err == nil {
			p.Terminate()
			return []byte("a worker started a pool"), nil
		}
		return []byte(err.Error()), nil
	})
	Handle("init", func(ctx context.Context, in []byte) ([]byte, error) { return []byte(initValue), nil })
	// child runs a shell that prints its environment, a line "fds:", and
	// the descriptors it has open: what a program a task runs inherits.
	Handle("child", func(ctx context.Context, in []byte) ([]byte, error) {
		return exec.CommandContext(ctx, "/bin/sh", "-c", "env; echo fds:; ls /proc/$$/fd").Output()
	})
	// big returns n bytes written straight into an output buffer.
	Handle("big", func(ctx context.Context, in []byte) ([]byte, error) {
		n, _ := strconv.Atoi(string(in))
		b, err := OutputBuffer(ctx, n)
		if err != nil {
			return nil, err
		}
		for i := range b {
			b[i] = byte(i)
		}
		return b, nil
	})
	// sum returns the byte sum of the input (to check large inputs).
	Handle("sum", func(ctx context.Context, in []byte) ([]byte, error) {
		var s uint64
		for _, b := range in {
			s += uint64(b)
		}
		return []byte(strconv.FormatUint(s, 10)), nil
	})
	// stderr writes its input to standard error and returns what
	// descriptor 2 is.
	Handle("stderr", func(ctx context.Context, in []byte) ([]byte, error) {
		os.Stderr.Write(in)
		target, err := os.Readlink("/proc/self/fd/2")
		return []byte(target), err
	})
	SetInitializer(func() error {
		// TEST_INIT_SAY: a line on stderr first ("{pid}" stands for the
		// worker's pid: "starting {pid}" tells killOnSay who to kill).
		if say := os.Getenv("TEST_INIT_SAY"); say != "" {
			fmt.Fprintln(os.Stderr, strings.ReplaceAll(say, "{pid}", strconv.Itoa(os.Getpid())))
		}
		switch os.Getenv("TEST_INIT") {
		case "fail":
			return errors.New("initializer refuses")
		case "exit":
			os.Exit(1)
		case "sleep": // a start-up of TEST_INIT_SLEEP (a duration), or of 30 s: long enough to be killed in
			d := 30 * time.Second
			if v := os.Getenv("TEST_INIT_SLEEP"); v != "" {
				var err error
				if d, err = time.ParseDuration(v); err != nil {
					return err
				}
			}
			time.Sleep(d)
		case "hold-stderr": // a process that keeps the start-up pipe open (its descriptor 2)
			holder := exec.Command("sleep", "30")
			holder.Stderr = os.Stderr
			holder.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			if err := holder.Start(); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "holder %d\n", holder.Process.Pid)
		case "sleep-unless-first": // worker 0 starts at once, the others take 30 s
			if !strings.HasPrefix(startedAs, "0:") {
				time.Sleep(30 * time.Second)
			}
		}
		initValue = "initialized in " + strconv.Itoa(os.Getpid())
		return nil
	})
}

// startedAs is the worker's identity from its handshake, which is gone
// from the environment once it has attached.
var startedAs = os.Getenv(envWorker)

func TestMain(m *testing.M) {
	registerTestHandlers()
	ServeIfWorker()
	testutil.Main(m, map[string]func() int{
		"supervisor": childSupervisor,
		"client":     childClient,
	})
}

// newPool starts a pool of the test binary and closes it at the end.
func newPool(t testing.TB, cfg Config) *Pool {
	t.Helper()
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	if cfg.WorkerArgv == nil {
		cfg.WorkerArgv = []string{os.Args[0], "-test.run=^$"}
	}
	if cfg.QueueDepth == 0 {
		cfg.QueueDepth = 256
	}
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = 8 << 20
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Terminate(); err != nil {
			t.Errorf("Terminate: %v", err)
		}
	})
	return p
}

// run submits one job and waits for it, failing the test if it does not
// end within 20 s.
func run(t testing.TB, p *Pool, handler string, in []byte, opts ...SubmitOptions) ([]byte, error) {
	t.Helper()
	o := SubmitOptions{Retries: -1}
	if len(opts) > 0 {
		o = opts[0]
	}
	f, err := p.Client().SubmitWith(context.Background(), handler, in, o)
	if err != nil {
		t.Fatalf("submit %s: %v", handler, err)
	}
	return waitFor(t, f)
}

func waitFor(t testing.TB, f *Future) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := f.Wait(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		l := f.c.l
		idx := refIdx(f.ref)
		cur := l.slotState(idx).Load()
		t.Fatalf("job %d (slot %d seq %d) did not end within 20s: slot state %d owner %#x seq %d meta %+v; %s; %s",
			f.ID(), idx, refSeq(f.ref), wState(cur), wOwner(cur), wSeq(cur), unpackMeta(l.slot(idx).Uint64(slMeta).Load()),
			l.inq.Debug(), l.outq[f.c.index].Debug())
	}
	return out, err
}

// waitFullSize waits until every worker is up and idle again.
func waitFullSize(t testing.TB, p *Pool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		up := 0
		for _, w := range p.Stats().Workers {
			if w.State == "idle" || w.State == "busy" {
				up++
			}
		}
		if up == p.cfg.Workers {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool not back to %d workers within 20s: %+v", p.cfg.Workers, p.Stats().Workers)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitHealed waits until the pool no longer reports a start-up failure,
// is at full size, and runs a job.
func waitHealed(t *testing.T, p *Pool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); p.Stats().StartFailure != ""; {
		if time.Now().After(deadline) {
			t.Fatalf("the pool did not heal: %+v", p.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitFullSize(t, p)
	if out, err := run(t, p, "echo", []byte("y")); err != nil || string(out) != "y" {
		t.Fatalf("after healing: %q, %v", out, err)
	}
}

// waitBusy waits until n workers run a job.
func waitBusy(t testing.TB, p *Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		busy := 0
		for _, w := range p.Stats().Workers {
			if w.State == "busy" {
				busy++
			}
		}
		if busy >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d workers busy after 20s, want %d: %+v", busy, n, p.Stats().Workers)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitQuiet waits until every slot and page is free again: nothing leaked.
func waitQuiet(t testing.TB, p *Pool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := p.Stats()
		if s.SlotsInUse == 0 && s.PagesInUse == 0 && s.Queued == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slots or pages leaked: %d slots, %d pages, %d queued", s.SlotsInUse, s.PagesInUse, s.Queued)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
