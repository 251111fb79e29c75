// Command pooldemo shows the Go executor: a pool of worker processes (this
// same binary, re-executed) runs 100,000 jobs; a job that kills its own
// worker ends with WorkerCrashed while the pool replaces the worker and
// the other jobs go on; a stuck job is timed out.
//
// Run it with `make demo` or `go run ./examples/go/pooldemo`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/shmexec/shmexec/executor"
)

func main() {
	executor.Handle("square", func(ctx context.Context, in []byte) ([]byte, error) {
		n, err := strconv.Atoi(string(in))
		if err != nil {
			return nil, err
		}
		return []byte(strconv.Itoa(n * n)), nil
	})
	executor.Handle("die", func(ctx context.Context, in []byte) ([]byte, error) {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	})
	executor.Handle("hang", func(ctx context.Context, in []byte) ([]byte, error) {
		select {}
	})
	executor.ServeIfWorker() // in a worker process this never returns

	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pooldemo:", err)
		os.Exit(1)
	}
}

func run() error {
	pool, err := executor.New(executor.Config{Workers: 2})
	if err != nil {
		return err
	}
	defer pool.Close()
	ctx := context.Background()
	c := pool.Client()

	const n = 100000
	in := make([][]byte, n)
	for i := range in {
		in[i] = []byte(strconv.Itoa(i))
	}
	start := time.Now()
	res, err := c.Map(ctx, "square", in)
	if err != nil {
		return err
	}
	for i, r := range res {
		if r.Err != nil || string(r.Output) != strconv.Itoa(i*i) {
			return fmt.Errorf("job %d: %q, %v", i, r.Output, r.Err)
		}
	}
	fmt.Printf("Map: %d jobs on 2 worker processes in %v, all results correct\n", n, time.Since(start).Round(time.Millisecond))

	f, _ := c.Submit(ctx, "die", nil)
	g, _ := c.Submit(ctx, "square", []byte("12"))
	_, err = f.Wait(ctx)
	var ce *executor.CrashError
	if !errors.As(err, &ce) {
		return fmt.Errorf("the killed job ended with %v", err)
	}
	fmt.Printf("a job that SIGKILLs its worker: %v\n", err)
	out, err := g.Wait(ctx)
	fmt.Printf("the job queued beside it: %s, %v\n", out, err)

	h, _ := c.SubmitWith(ctx, "hang", nil, executor.SubmitOptions{Timeout: 200 * time.Millisecond, Retries: -1})
	_, err = h.Wait(ctx)
	fmt.Printf("a job stuck past its 200 ms timeout: %v (os.IsTimeout: %v)\n", err, os.IsTimeout(err))

	time.Sleep(50 * time.Millisecond)
	s := pool.Stats()
	fmt.Printf("pool: %d workers up, %d respawned, %d worker deaths, %d slots in use, failures %v\n",
		len(s.Workers), s.Respawned, s.WorkerDeaths, s.SlotsInUse, s.Failed)
	return nil
}
