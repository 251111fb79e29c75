// Command shmexec-bench measures shmexec beside its baselines and peers,
// all in one run: round trips from Go, C and Python, throughput, payload
// sizes, recovery and scaling. It prints a table of ratios (or JSON) and
// can draw plots. It lives in a module of its own so that the plotting
// libraries it needs are not dependencies of the shmexec module.
//
//	shmexec-bench [--quick] [--json] [--save FILE] [--plots DIR] [--python python3]
//
// It expects to run from the build directory of a checkout: the C
// benchmark (cbench) beside it, the Python package in ../python.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/shmexec/shmexec/executor"
)

func main() {
	// The bench's Go workers are this binary, re-executed by its pools.
	registerBenchHandlers()
	executor.ServeIfWorker()
	if len(os.Args) == 3 && os.Args[1] == "__bench-child" {
		if err := benchChild(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "shmexec-bench child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if err := bench(os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0) // -h: the flag set has printed its usage
		}
		fmt.Fprintf(os.Stderr, "shmexec-bench: %v\n", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
