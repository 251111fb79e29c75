// Command squares is a program outside the shmexec module that uses it as
// any Go program would: it requires github.com/shmexec/shmexec (here
// through a replace directive to this checkout; elsewhere `go get
// github.com/shmexec/shmexec`), registers a handler, serves as a worker
// when the pool re-executes it, and runs jobs on a pool of two workers.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/shmexec/shmexec/executor"
)

func main() {
	executor.Handle("square", func(ctx context.Context, in []byte) ([]byte, error) {
		n, err := strconv.Atoi(string(in))
		if err != nil {
			return nil, fmt.Errorf("not a number: %q", in)
		}
		return []byte(strconv.Itoa(n * n)), nil
	})
	executor.ServeIfWorker() // a worker process serves jobs here and exits

	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "squares:", err)
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
	inputs := make([][]byte, 1000)
	for i := range inputs {
		inputs[i] = []byte(strconv.Itoa(i))
	}
	outs, err := pool.Client().Map(ctx, "square", inputs)
	if err != nil {
		return err
	}
	sum := 0
	for i, r := range outs {
		if r.Err != nil {
			return fmt.Errorf("square(%d): %w", i, r.Err)
		}
		n, _ := strconv.Atoi(string(r.Output))
		sum += n
	}
	f, err := pool.Submit(ctx, "square", []byte("x"))
	if err != nil {
		return err
	}
	if _, err := f.Wait(ctx); !errors.Is(err, executor.ErrHandler) {
		return fmt.Errorf("a bad input: %v, want a handler error", err)
	}
	fmt.Printf("sum of 1000 squares from 2 worker processes: %d; a bad input: a handler error\n", sum)
	if want := 999 * 1000 * 1999 / 6; sum != want {
		return fmt.Errorf("sum %d, want %d", sum, want)
	}
	return nil
}
