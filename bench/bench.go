package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shmexec/shmexec/executor"
	"github.com/shmexec/shmexec/internal/sysx"
)

// The handlers the bench's Go workers (this binary, re-executed) run.
func registerBenchHandlers() {
	executor.Handle("empty", func(ctx context.Context, in []byte) ([]byte, error) { return nil, nil })
	executor.Handle("echo", func(ctx context.Context, in []byte) ([]byte, error) { return in, nil })
	executor.Handle("echo-zc", func(ctx context.Context, in []byte) ([]byte, error) {
		out, err := executor.OutputBuffer(ctx, len(in))
		if err != nil {
			return nil, err
		}
		copy(out, in) // straight into the segment
		return out, nil
	})
	executor.Handle("sleep", func(ctx context.Context, in []byte) ([]byte, error) {
		ms, _ := strconv.Atoi(string(in))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return nil, nil
	})
	executor.Handle("spin", func(ctx context.Context, in []byte) ([]byte, error) {
		us, _ := strconv.Atoi(string(in))
		for end := time.Now().Add(time.Duration(us) * time.Microsecond); time.Now().Before(end); {
		}
		return nil, nil
	})
}

type baseline struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Ratio float64 `json:"ratio"` // how many times better shmexec is (> 1: better)
}

type figure struct {
	Group     string     `json:"group"`
	Name      string     `json:"name"`
	Unit      string     `json:"unit"`
	Lower     bool       `json:"lower_is_better"`
	Value     float64    `json:"value"`
	Baselines []baseline `json:"baselines,omitempty"`
}

type payloadRow struct {
	Size       int     `json:"size"`
	Copy       float64 `json:"go_copy_gbps"`
	ZeroCopy   float64 `json:"go_zero_copy_gbps"`
	Memcpy     float64 `json:"memcpy_gbps"`
	PyShmexec  float64 `json:"python_shmexec_gbps,omitempty"`
	PyPoolEcho float64 `json:"python_pool_apply_gbps,omitempty"`
}

type scaleRow struct {
	Workers   int     `json:"workers"`
	EmptyRate float64 `json:"empty_jobs_per_s"`
	SpinRate  float64 `json:"spin_50us_jobs_per_s"`
}

type benchReport struct {
	Date     string               `json:"date"`
	Command  string               `json:"command"`
	Machine  map[string]string    `json:"machine"`
	Quick    bool                 `json:"quick"`
	Figures  []figure             `json:"figures"`
	Latency  map[string][]float64 `json:"latency_us"` // sorted samples
	Payload  []payloadRow         `json:"payload"`
	Scaling  []scaleRow           `json:"scaling"`
	Peers    *peerReport          `json:"peers,omitempty"`
	Notes    []string             `json:"notes"`
	warnings []string
}

func (r *benchReport) add(f figure) {
	f.Baselines = append([]baseline(nil), f.Baselines...) // callers share slices
	for i := range f.Baselines {
		b := &f.Baselines[i]
		if f.Value > 0 && b.Value > 0 {
			if f.Lower {
				b.Ratio = b.Value / f.Value
			} else {
				b.Ratio = f.Value / b.Value
			}
		}
	}
	r.Figures = append(r.Figures, f)
}

func (r *benchReport) note(format string, a ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, a...))
}

func bench(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "a few seconds, small counts (for CI; no figure is meaningful)")
	asJSON := fs.Bool("json", false, "print every figure as JSON instead of the table")
	plots := fs.String("plots", "", "write PNG plots into this directory (make bench: build/plots; make bench-plots: docs)")
	python := fs.String("python", "python3", "the Python interpreter for the Python figures (\"\": skip them)")
	save := fs.String("save", "", "also write every figure as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	r := &benchReport{
		Date:    time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		Command: "shmexec-bench " + strings.Join(args, " "),
		Machine: machine(),
		Quick:   *quick,
		Latency: map[string][]float64{},
	}
	n := 20000
	if *quick {
		n = 500
	}
	steps := []struct {
		name string
		run  func() error
	}{
		{"round trips (Go and baselines)", func() error { return benchRoundTrips(r, n) }},
		{"throughput (Go)", func() error { return benchThroughput(r, *quick) }},
		{"C", func() error { return benchC(r, n) }},
		{"Python", func() error { return benchPython(r, *python, *quick) }},
		{"Python peers", func() error { return benchPeers(r, *python, *quick) }},
		{"payload sizes", func() error { return benchPayload(r, *quick) }},
		{"recovery", func() error { return benchRecovery(r, *quick) }},
		{"scaling", func() error { return benchScaling(r, *quick) }},
	}
	for _, s := range steps {
		fmt.Fprintf(os.Stderr, "shmexec bench: %s...\n", s.name)
		if err := s.run(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	if dir := *plots; dir != "" {
		files, err := writePlots(r, dir)
		if err != nil {
			return err
		}
		r.note("plots: %s", strings.Join(files, ", "))
	}
	if *save != "" {
		f, err := os.Create(*save)
		if err != nil {
			return err
		}
		err = writeJSON(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	if *asJSON {
		return writeJSON(out, r)
	}
	printTable(out, r)
	return nil
}

func machine() map[string]string {
	m := map[string]string{"cpus": strconv.Itoa(runtime.NumCPU()), "go": runtime.Version(), "os": runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb)
		m["memory"] = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m["kernel"] = unix.ByteSliceToString(u.Release[:])
	}
	return m
}

// percentiles returns p50, p99 and p99.9 of sorted samples.
func percentiles(s []float64) (float64, float64, float64) {
	at := func(q float64) float64 { return s[min(len(s)-1, int(float64(len(s))*q))] }
	return at(0.5), at(0.99), at(0.999)
}

func micros(d []time.Duration) []float64 {
	out := make([]float64, len(d))
	for i, x := range d {
		out[i] = float64(x) / 1e3
	}
	sort.Float64s(out)
	return out
}

// --- round trips -----------------------------------------------------------

func benchRoundTrips(r *benchReport, n int) error {
	p, err := executor.New(executor.Config{Workers: 1})
	if err != nil {
		return err
	}
	defer p.Close()
	ctx := context.Background()
	lat := make([]time.Duration, n)
	for i := -200; i < n; i++ {
		t := time.Now()
		f, err := p.Submit(ctx, "empty", nil)
		if err != nil {
			return err
		}
		if _, err := f.Wait(ctx); err != nil {
			return err
		}
		if i >= 0 {
			lat[i] = time.Since(t)
		}
	}
	r.Latency["Go→Go pool"] = micros(lat)
	for _, kind := range []string{"pipe", "futex", "spin"} {
		l, err := pingPong(kind, n)
		if err != nil {
			return err
		}
		r.Latency[kind+" ping-pong"] = micros(l)
	}
	g50, g99, g999 := percentiles(r.Latency["Go→Go pool"])
	for _, q := range []struct {
		name string
		v    float64
		idx  int
	}{{"p50", g50, 0}, {"p99", g99, 1}, {"p99.9", g999, 2}} {
		var bs []baseline
		for _, k := range []string{"pipe ping-pong", "futex ping-pong", "spin ping-pong"} {
			a, b, c := percentiles(r.Latency[k])
			bs = append(bs, baseline{Name: k, Value: []float64{a, b, c}[q.idx]})
		}
		r.add(figure{Group: "round trip, empty job", Name: "Go→Go " + q.name, Unit: "µs", Lower: true, Value: q.v, Baselines: bs})
	}
	r.note("round trips: 1 worker; baselines are two processes ping-ponging 8 bytes: over pipes, over a shared futex word (the floor for a sleeping worker), and spinning on shared memory (the floor for a busy one)")
	return nil
}

// pingPong measures n round trips with a child process of this binary.
func pingPong(kind string, n int) ([]time.Duration, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "__bench-child", kind)
	cmd.Stderr = os.Stderr
	lat := make([]time.Duration, n)
	switch kind {
	case "pipe":
		toR, toW, _ := os.Pipe()
		fromR, fromW, _ := os.Pipe()
		cmd.ExtraFiles = []*os.File{toR, fromW}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		toR.Close()
		fromW.Close()
		var b [8]byte
		for i := -200; i < n; i++ {
			t := time.Now()
			toW.Write(b[:])
			if _, err := io.ReadFull(fromR, b[:]); err != nil {
				return nil, err
			}
			if i >= 0 {
				lat[i] = time.Since(t)
			}
		}
		toW.Close()
		fromR.Close()
	default:
		f, words, err := sharedWords()
		if err != nil {
			return nil, err
		}
		defer f.Close()
		cmd.ExtraFiles = []*os.File{f}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		ping, pong := &words[0], &words[16]
		for i := -200; i < n; i++ {
			v := uint32(i + 1000)
			t := time.Now()
			ping.Store(v)
			if kind == "futex" {
				sysx.FutexWake(ping, 1)
				for pong.Load() != v {
					sysx.FutexWait(pong, pong.Load(), time.Second)
				}
			} else {
				for pong.Load() != v {
				}
			}
			if i >= 0 {
				lat[i] = time.Since(t)
			}
		}
		ping.Store(^uint32(0)) // stop
		sysx.FutexWake(ping, 1)
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("%s child: %w", kind, err)
	}
	return lat, nil
}

func sharedWords() (*os.File, []atomic.Uint32, error) {
	f, err := sysx.MemfdCreate("shmexec-bench", 4096)
	if err != nil {
		return nil, nil, err
	}
	words, err := mapWords(f)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, words, nil
}

func mapWords(f *os.File) ([]atomic.Uint32, error) {
	b, err := syscall.Mmap(int(f.Fd()), 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return unsafe.Slice((*atomic.Uint32)(unsafe.Pointer(&b[0])), 1024), nil
}

// benchChild is the other end of a ping-pong.
func benchChild(kind string) error {
	switch kind {
	case "pipe":
		in, out := os.NewFile(3, "in"), os.NewFile(4, "out")
		var b [8]byte
		for {
			if _, err := io.ReadFull(in, b[:]); err != nil {
				return nil
			}
			out.Write(b[:])
		}
	case "futex", "spin":
		words, err := mapWords(os.NewFile(3, "shm"))
		if err != nil {
			return err
		}
		ping, pong := &words[0], &words[16]
		last := uint32(0)
		for {
			v := ping.Load()
			for v == last {
				if kind == "futex" {
					sysx.FutexWait(ping, last, time.Second)
				}
				v = ping.Load()
			}
			if v == ^uint32(0) {
				return nil
			}
			last = v
			pong.Store(v)
			if kind == "futex" {
				sysx.FutexWake(pong, 1)
			}
		}
	}
	return fmt.Errorf("unknown child %q", kind)
}

// --- throughput ------------------------------------------------------------

func mapRate(workers, jobs int, handler string, input []byte) (float64, error) {
	p, err := executor.New(executor.Config{Workers: workers, QueueDepth: 1024})
	if err != nil {
		return 0, err
	}
	defer p.Close()
	in := make([][]byte, jobs)
	for i := range in {
		in[i] = input
	}
	t := time.Now()
	res, err := p.Client().Map(context.Background(), handler, in)
	el := time.Since(t)
	if err != nil {
		return 0, err
	}
	for _, x := range res {
		if x.Err != nil {
			return 0, x.Err
		}
	}
	return float64(jobs) / el.Seconds(), nil
}

func benchThroughput(r *benchReport, quick bool) error {
	jobs := 1_000_000
	if quick {
		jobs = 20_000
	}
	rate, err := mapRate(2, jobs, "empty", nil)
	if err != nil {
		return err
	}
	r.add(figure{Group: "throughput, tiny jobs", Name: fmt.Sprintf("Go Map, %d empty jobs, 2 workers", jobs), Unit: "jobs/s", Value: rate})
	return nil
}

// --- C -------------------------------------------------------------------

func benchC(r *benchReport, n int) error {
	self, _ := os.Executable()
	cb := filepath.Join(filepath.Dir(self), "cbench")
	if _, err := os.Stat(cb); err != nil {
		r.note("C figures skipped: %s not found (make build/cbench)", cb)
		return nil
	}
	out, err := exec.Command(cb, strconv.Itoa(n), "--json").Output()
	if err != nil {
		return fmt.Errorf("%s: %w", cb, err)
	}
	var c map[string]float64
	if err := json.Unmarshal(out, &c); err != nil {
		return fmt.Errorf("%s: %w: %s", cb, err, out)
	}
	// The floors are C programs ping-ponging a word of shared memory in
	// the same run: spinning (what a busy worker could reach) and with
	// futex sleeps after the same pauses as the sleeping-worker rounds.
	for _, q := range []string{"p50", "p99", "p999"} {
		name := strings.Replace(q, "p999", "p99.9", 1)
		us := func(k string) float64 { return c[k+"_"+q+"_ns"] / 1e3 }
		r.add(figure{Group: "round trip, empty job", Name: "C→C " + name + ", busy worker", Unit: "µs", Lower: true,
			Value: us("c_rt"), Baselines: []baseline{{Name: "C spin ping-pong", Value: us("c_spin")}, {Name: "C pipe ping-pong", Value: us("c_pipe")}}})
		r.add(figure{Group: "round trip, empty job", Name: "C→C " + name + ", sleeping worker", Unit: "µs", Lower: true,
			Value: us("c_rt_sleeping"), Baselines: []baseline{{Name: "C futex ping-pong after the same pauses", Value: us("c_futex_paused")}}})
	}
	r.note("C round trips: busy worker = jobs back to back, so that the worker still polls when the next comes; sleeping worker = a 1 ms pause before each job, so that every waiter has gone to its futex sleep")
	r.add(figure{Group: "throughput, tiny jobs", Name: "C batch submit (windows of 512, 1 worker)", Unit: "jobs/s", Value: c["c_batch_jobs_per_s"]})
	return nil
}

// --- Python ----------------------------------------------------------------

// pyLat: Python round-trip percentiles, in seconds, and the share of
// CPU time the hypervisor stole while they were measured (0: none, or
// unknown); Quiet: the percentiles of the rounds with no stolen time
// counted (nil: there was none).
type pyLat struct {
	P50, P99, P999, Steal float64
	Quiet                 *quietLat
}

type quietLat struct {
	P50    float64 `json:"p50"`
	P99    float64 `json:"p99"`
	Rounds int     `json:"rounds"`
	Of     int     `json:"of"`
}

type pyReport struct {
	PoolApply pyLat `json:"pool_apply"`
	ByValue   pyLat `json:"pool_apply_by_value"`
	OneWorker pyLat `json:"pool_apply_1"`
	Apply     pyLat `json:"apply"`
	MPApply   pyLat `json:"mp_apply"`
	PPESubmit pyLat `json:"ppe_submit"`
	// What each pool adds to a 1 ms task (the round trip less the task).
	PoolWork  pyLat   `json:"pool_apply_work"`
	MPWork    pyLat   `json:"mp_apply_work"`
	ApplyWork pyLat   `json:"apply_work"`
	NMap      int     `json:"n_map"`
	PoolMap   float64 `json:"pool_map"`
	Map       float64
	MPMap     float64 `json:"mp_map"`
	MPMap1    float64 `json:"mp_map_chunksize1"`
	PoolMapL  float64 `json:"pool_map_list"`
	MPMapL    float64 `json:"mp_map_list"`
	PPEMap    float64 `json:"ppe_map"`
	Echo      map[string]struct {
		Shmexec float64 `json:"shmexec"`
		MPApply float64 `json:"mp_apply"`
	} `json:"echo"`
}

func (l *pyLat) UnmarshalJSON(b []byte) error {
	var m struct {
		P50   float64   `json:"p50"`
		P99   float64   `json:"p99"`
		P999  float64   `json:"p999"`
		Steal float64   `json:"steal"`
		Quiet *quietLat `json:"quiet"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*l = pyLat{P50: m.P50, P99: m.P99, P999: m.P999, Steal: m.Steal, Quiet: m.Quiet}
	return nil
}

var pyResults *pyReport

// runPythonBench runs `python -m shmexec.bench --json [flags]` from the
// python/ folder beside this program and decodes its output into v. It
// reports false (with a note) when there is nothing to run.
func runPythonBench(r *benchReport, python string, quick bool, v any, flags ...string) (bool, error) {
	if python == "" {
		r.note("Python figures skipped (--python \"\")")
		return false, nil
	}
	self, _ := os.Executable()
	pydir := filepath.Join(filepath.Dir(self), "..", "python")
	if _, err := os.Stat(filepath.Join(pydir, "shmexec", "bench.py")); err != nil {
		r.note("Python figures skipped: no python/shmexec next to %s", filepath.Dir(self))
		return false, nil
	}
	args := append([]string{"-m", "shmexec.bench", "--json"}, flags...)
	if quick {
		args = append(args, "--quick")
	}
	cmd := exec.Command(python, args...)
	cmd.Dir = pydir
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return false, fmt.Errorf("%s %s: %w", python, strings.Join(args, " "), err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		return false, fmt.Errorf("python bench output: %w: %.200s", err, out)
	}
	return true, nil
}

func benchPython(r *benchReport, python string, quick bool) error {
	var p pyReport
	if ok, err := runPythonBench(r, python, quick, &p); !ok {
		return err
	}
	pyResults = &p
	quantiles := []struct {
		name string
		get  func(pyLat) float64
	}{{"p50", func(l pyLat) float64 { return l.P50 }}, {"p99", func(l pyLat) float64 { return l.P99 }}, {"p99.9", func(l pyLat) float64 { return l.P999 }}}
	for _, q := range quantiles {
		r.add(figure{Group: "round trip, empty job", Name: "Python→Python Pool.apply " + q.name, Unit: "µs", Lower: true, Value: q.get(p.PoolApply) * 1e6,
			Baselines: []baseline{{Name: "multiprocessing.Pool.apply", Value: q.get(p.MPApply) * 1e6}}})
		r.add(figure{Group: "round trip, empty job", Name: "Python→Python Executor.submit().result() " + q.name, Unit: "µs", Lower: true, Value: q.get(p.Apply) * 1e6,
			Baselines: []baseline{{Name: "ProcessPoolExecutor.submit().result()", Value: q.get(p.PPESubmit) * 1e6}}})
		r.add(figure{Group: "round trip, empty job", Name: "Python Pool.apply of a lambda (by value) " + q.name, Unit: "µs", Lower: true, Value: q.get(p.ByValue) * 1e6,
			Baselines: []baseline{{Name: "shmexec Pool.apply of a module function (by reference)", Value: q.get(p.PoolApply) * 1e6},
				{Name: "multiprocessing.Pool.apply", Value: q.get(p.MPApply) * 1e6}}})
		if q.name != "p50" { // the tail of one worker against its own median (the p99 ≤ 10× p50)
			r.add(figure{Group: "round trip, empty job", Name: "Python Pool.apply, 1 worker, " + q.name, Unit: "µs", Lower: true, Value: q.get(p.OneWorker) * 1e6,
				Baselines: []baseline{{Name: "its p50", Value: p.OneWorker.P50 * 1e6}}})
		}
	}
	for _, q := range quantiles[:2] {
		r.add(figure{Group: "round trip, 1 ms job", Name: "Python Pool.apply, time over the job, " + q.name, Unit: "µs", Lower: true, Value: q.get(p.PoolWork) * 1e6,
			Baselines: []baseline{{Name: "multiprocessing.Pool.apply", Value: q.get(p.MPWork) * 1e6},
				{Name: "shmexec Executor.submit().result()", Value: q.get(p.ApplyWork) * 1e6}}})
	}
	if q := p.OneWorker.Quiet; q != nil {
		r.add(figure{Group: "round trip, empty job", Name: fmt.Sprintf("Python Pool.apply, 1 worker, p99 in the %d of %d rounds with no stolen time", q.Rounds, q.Of),
			Unit: "µs", Lower: true, Value: q.P99 * 1e6, Baselines: []baseline{{Name: "their p50", Value: q.P50 * 1e6}}})
	}
	if p.OneWorker.Steal > 0 {
		r.note("Python round trips: the hypervisor stole %.1f%% of this machine's CPU time while they were measured (/proc/stat); each stolen slice stalls a round trip for milliseconds, and sets the p99", p.OneWorker.Steal*100)
	}
	rate := func(t float64) float64 { return float64(p.NMap) / t }
	r.add(figure{Group: "throughput, tiny jobs", Name: fmt.Sprintf("Python Pool.map, range(%d), 2 workers", p.NMap), Unit: "jobs/s", Value: rate(p.PoolMap),
		Baselines: []baseline{{Name: "multiprocessing Pool.map, default chunksize", Value: rate(p.MPMap)}, {Name: "Pool.map, chunksize=1", Value: rate(p.MPMap1)}}})
	r.add(figure{Group: "throughput, tiny jobs", Name: fmt.Sprintf("Python Pool.map, a list of %d tasks, 2 workers", p.NMap), Unit: "jobs/s", Value: rate(p.PoolMapL),
		Baselines: []baseline{{Name: "multiprocessing Pool.map, default chunksize", Value: rate(p.MPMapL)}}})
	r.add(figure{Group: "throughput, tiny jobs", Name: fmt.Sprintf("Python Executor.map, %d tasks, 2 workers", p.NMap), Unit: "jobs/s", Value: rate(p.Map),
		Baselines: []baseline{{Name: "ProcessPoolExecutor.map", Value: rate(p.PPEMap)}}})
	return nil
}

// --- payload sizes ---------------------------------------------------------

func benchPayload(r *benchReport, quick bool) error {
	sizes := []int{64, 1 << 10, 16 << 10, 256 << 10, 4 << 20, 64 << 20}
	if quick {
		sizes = sizes[:5]
	}
	p, err := executor.New(executor.Config{Workers: 1, MaxPayload: 128 << 20})
	if err != nil {
		return err
	}
	defer p.Close()
	ctx := context.Background()
	c := p.Client()
	for _, size := range sizes {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i)
		}
		reps := max(3, min(2000, (64<<20)/size))
		if quick {
			reps = max(2, reps/20)
		}
		best := func(run func() error) (time.Duration, error) {
			b := time.Duration(1 << 62)
			for i := 0; i < reps; i++ {
				t := time.Now()
				if err := run(); err != nil {
					return 0, err
				}
				b = min(b, time.Since(t))
			}
			return b, nil
		}
		tc, err := best(func() error {
			f, err := c.Submit(ctx, "echo", data)
			if err != nil {
				return err
			}
			out, err := f.Wait(ctx)
			if err == nil && len(out) != size {
				err = fmt.Errorf("echo of %d bytes returned %d", size, len(out))
			}
			return err
		})
		if err != nil {
			return err
		}
		tz, err := best(func() error {
			buf, err := c.AllocBuffer(size)
			if err != nil {
				return err
			}
			copy(buf.Bytes(), data) // the data is made in the segment
			f, err := c.SubmitBuffer(ctx, "echo-zc", buf, executor.SubmitOptions{})
			if err != nil {
				buf.Release()
				return err
			}
			_, err = f.Wait(ctx)
			return err
		})
		if err != nil {
			return err
		}
		dst := make([]byte, size)
		tm, _ := best(func() error { copy(dst, data); return nil })
		gbps := func(bytes int, d time.Duration) float64 { return float64(bytes) / d.Seconds() / 1e9 }
		row := payloadRow{Size: size, Copy: gbps(2*size, tc), ZeroCopy: gbps(2*size, tz), Memcpy: gbps(size, tm)}
		if pyResults != nil {
			if e, ok := pyResults.Echo[strconv.Itoa(size)]; ok {
				row.PyShmexec, row.PyPoolEcho = 2*float64(size)/e.Shmexec/1e9, 2*float64(size)/e.MPApply/1e9
			}
		}
		r.Payload = append(r.Payload, row)
	}
	r.note("payload: round-trip throughput = bytes sent + bytes returned per second, best of several echoes; memcpy is one copy of the payload in one process")
	last := r.Payload[len(r.Payload)-1]
	bs := []baseline{{Name: "memcpy (one copy)", Value: last.Memcpy}}
	if last.PyPoolEcho > 0 {
		bs = append(bs, baseline{Name: "Python multiprocessing.Pool.apply echo", Value: last.PyPoolEcho})
	}
	r.add(figure{Group: "payload", Name: fmt.Sprintf("Go echo round trip, %s, zero-copy", humanSize(last.Size)), Unit: "GB/s", Value: last.ZeroCopy, Baselines: bs})
	r.add(figure{Group: "payload", Name: fmt.Sprintf("Go echo round trip, %s, copying", humanSize(last.Size)), Unit: "GB/s", Value: last.Copy, Baselines: bs})
	if last.PyShmexec > 0 {
		r.add(figure{Group: "payload", Name: fmt.Sprintf("Python echo round trip, %s", humanSize(last.Size)), Unit: "GB/s", Value: last.PyShmexec,
			Baselines: []baseline{{Name: "Python multiprocessing.Pool.apply echo", Value: last.PyPoolEcho}}})
	}
	return nil
}

func humanSize(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// --- recovery --------------------------------------------------------------

func benchRecovery(r *benchReport, quick bool) error {
	n := 30
	if quick {
		n = 3
	}
	p, err := executor.New(executor.Config{Workers: 1})
	if err != nil {
		return err
	}
	defer p.Close()
	ctx := context.Background()
	toResult := make([]time.Duration, n)
	toFull := make([]time.Duration, n)
	for i := 0; i < n; i++ {
		f, err := p.Submit(ctx, "sleep", []byte("60000"))
		if err != nil {
			return err
		}
		var pid int
		deadline := time.Now().Add(30 * time.Second)
		for {
			w := p.Stats().Workers[0]
			if w.State == "busy" && w.Job == f.ID() {
				pid = w.PID
				break
			}
			if time.Now().After(deadline) {
				return errors.New("the sleeping job did not start within 30s")
			}
			time.Sleep(100 * time.Microsecond)
		}
		start := time.Now()
		syscall.Kill(pid, syscall.SIGKILL)
		if _, err := f.Wait(ctx); !errors.Is(err, executor.ErrWorkerCrashed) {
			return fmt.Errorf("killed job ended with %v", err)
		}
		toResult[i] = time.Since(start)
		for {
			w := p.Stats().Workers[0]
			if w.State == "idle" && w.PID != pid {
				break
			}
			if time.Now().After(deadline) {
				return errors.New("the pool did not get its worker back within 30s")
			}
			time.Sleep(50 * time.Microsecond)
		}
		toFull[i] = time.Since(start)
	}
	res, full := micros(toResult), micros(toFull)
	r.add(figure{Group: "recovery", Name: "SIGKILL → the job's WorkerCrashed result, p50", Unit: "ms", Lower: true, Value: res[len(res)/2] / 1e3})
	r.add(figure{Group: "recovery", Name: "SIGKILL → pool at full size again, p50", Unit: "ms", Lower: true, Value: full[len(full)/2] / 1e3})
	return nil
}

// --- scaling ---------------------------------------------------------------

func benchScaling(r *benchReport, quick bool) error {
	counts := []int{1, 2}
	for w := 4; w <= runtime.NumCPU(); w *= 2 {
		counts = append(counts, w)
	}
	if runtime.NumCPU() > 2 && counts[len(counts)-1] != runtime.NumCPU() {
		counts = append(counts, runtime.NumCPU())
	}
	empty, spin := 200_000, 20_000
	if quick {
		empty, spin, counts = 5_000, 500, counts[:min(2, len(counts))]
	}
	for _, w := range counts {
		e, err := mapRate(w, empty, "empty", nil)
		if err != nil {
			return err
		}
		s, err := mapRate(w, spin, "spin", []byte("50"))
		if err != nil {
			return err
		}
		r.Scaling = append(r.Scaling, scaleRow{Workers: w, EmptyRate: e, SpinRate: s})
	}
	r.note("scaling: Map throughput against worker count on this machine (%d CPUs); jobs that spin 50 µs show how work spreads, empty jobs show the client's limit", runtime.NumCPU())
	if runtime.NumCPU() <= 2 {
		r.note("scaling: this machine has %d CPUs, so the curve stops there; run `shmexec bench` on a larger machine for more", runtime.NumCPU())
	}
	return nil
}

// --- output ----------------------------------------------------------------

func printTable(out io.Writer, r *benchReport) {
	fmt.Fprintf(out, "shmexec bench — %s — %s CPUs (%s), %s, kernel %s, %s\n", r.Date, r.Machine["cpus"], r.Machine["cpu"], r.Machine["memory"], r.Machine["kernel"], r.Machine["go"])
	if r.Quick {
		fmt.Fprintln(out, "QUICK RUN: small counts, the figures mean nothing")
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	group := ""
	rank := map[string]int{}
	for _, f := range r.Figures {
		if _, ok := rank[f.Group]; !ok {
			rank[f.Group] = len(rank)
		}
	}
	figs := append([]figure(nil), r.Figures...)
	sort.SliceStable(figs, func(i, j int) bool { return rank[figs[i].Group] < rank[figs[j].Group] })
	for _, f := range figs {
		if f.Group != group {
			group = f.Group
			fmt.Fprintf(tw, "\n%s\t\t\t\n", strings.ToUpper(group))
		}
		fmt.Fprintf(tw, "  %s\t%s %s\t\t\n", f.Name, num(f.Value), f.Unit)
		for _, b := range f.Baselines {
			fmt.Fprintf(tw, "      vs %s\t%s %s\t%s\t\n", b.Name, num(b.Value), f.Unit, ratioWords(b.Ratio, f.Lower))
		}
	}
	tw.Flush()
	fmt.Fprintln(out, "\nPAYLOAD (round trip GB/s)")
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "size\tGo copy\tGo zero-copy\tmemcpy\tPython shmexec\tPython Pool.apply\t")
	for _, p := range r.Payload {
		fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t\n", humanSize(p.Size), p.Copy, p.ZeroCopy, p.Memcpy, p.PyShmexec, p.PyPoolEcho)
	}
	tw.Flush()
	fmt.Fprintln(out, "\nSCALING (Map throughput, jobs/s)")
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workers\tempty jobs\t50 µs jobs\t")
	for _, s := range r.Scaling {
		fmt.Fprintf(tw, "%d\t%.0f\t%.0f\t\n", s.Workers, s.EmptyRate, s.SpinRate)
	}
	tw.Flush()
	fmt.Fprintln(out)
	for _, n := range r.Notes {
		fmt.Fprintln(out, "note:", n)
	}
}

// ratioWords says how shmexec compares: "5.20x faster", "0.5x" reads as
// "2.00x slower".
func ratioWords(ratio float64, lower bool) string {
	better, worse := "better", "worse"
	if lower {
		better, worse = "faster", "slower"
	}
	switch {
	case ratio <= 0:
		return "-"
	case ratio >= 1:
		return fmt.Sprintf("%.2fx %s", ratio, better)
	}
	return fmt.Sprintf("%.2fx %s", 1/ratio, worse)
}

func num(v float64) string {
	switch {
	case v >= 1e5:
		return fmt.Sprintf("%.3g", v)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}
