// Command shmexec serves a pool of worker processes to other processes
// and watches it.
//
//	shmexec serve --socket PATH [--workers N] [--socket-mode 0600] [--allow-group G]... -- WORKER_CMD...
//	shmexec stat --socket PATH [--json] [--interval 1s] [--count N]
//	shmexec bench [ARGS...]   runs shmexec-bench, which sits beside it
//	shmexec version
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shmexec/shmexec/executor"
	"github.com/shmexec/shmexec/server"
)

const usage = `usage:
  shmexec serve --socket PATH [--workers N] [--socket-mode 0600] [--allow-group G]... -- WORKER_CMD...
  shmexec stat --socket PATH [--json] [--interval 1s] [--count N]
  shmexec bench [--quick] [--json] [--save FILE] [--plots DIR]   (runs shmexec-bench beside this binary)
  shmexec version
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "stat":
		err = stat(os.Args[2:], os.Stdout)
	case "bench":
		err = runBench(os.Args[2:])
	case "version":
		fmt.Printf("shmexec %s (pool protocol %d)\n", executor.Version, executor.ProtocolVersion)
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "shmexec: unknown command %q\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0) // -h: the flag set has printed its usage
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "shmexec %s: %v\n", os.Args[1], err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

type groupList []uint32

func (g *groupList) String() string { return fmt.Sprint(*g) }

func (g *groupList) Set(s string) error {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		*g = append(*g, uint32(n))
		return nil
	}
	grp, err := user.LookupGroup(s)
	if err != nil {
		return fmt.Errorf("no group %q", s)
	}
	n, _ := strconv.ParseUint(grp.Gid, 10, 32)
	*g = append(*g, uint32(n))
	return nil
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	socket := fs.String("socket", "", "path of the Unix socket to serve on (required)")
	workers := fs.Int("workers", 0, "worker processes (0: one per CPU)")
	depth := fs.Int("queue-depth", 0, "job slots (0: the default)")
	maxPayload := fs.Int64("max-payload", 256<<20, "largest input or output in bytes")
	modeStr := fs.String("socket-mode", "0600", "permission bits of the socket file")
	drain := fs.Duration("drain", time.Minute, "on SIGTERM or SIGINT, how long queued jobs may take to finish")
	var groups groupList
	fs.Var(&groups, "allow-group", "a group (name or gid) whose members may connect; repeatable")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	argv := fs.Args()
	if *socket == "" || len(argv) == 0 {
		return usageError{errors.New("need --socket PATH and a worker command after --")}
	}
	mode, err := strconv.ParseUint(*modeStr, 8, 32)
	if err != nil || mode > 0o777 {
		return usageError{fmt.Errorf("bad --socket-mode %q", *modeStr)}
	}
	p, err := executor.New(executor.Config{
		Workers: *workers, QueueDepth: *depth, MaxPayload: *maxPayload, WorkerArgv: argv,
	})
	if err != nil {
		return err
	}
	srv, err := server.Listen(p, server.Config{Socket: *socket, Mode: os.FileMode(mode), AllowGroups: groups})
	if err != nil {
		p.Terminate()
		return err
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	fmt.Fprintf(os.Stderr, "shmexec serve: %d workers running %q; serving on %s (pid %d)\n",
		len(p.Stats().Workers), strings.Join(argv, " "), *socket, os.Getpid())
	select {
	case sig := <-sigs:
		fmt.Fprintf(os.Stderr, "shmexec serve: %v: draining (at most %v)\n", sig, *drain)
	case err = <-served:
	}
	srv.Close()
	if cerr := p.CloseTimeout(*drain); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

func stat(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("stat", flag.ContinueOnError)
	socket := fs.String("socket", "", "path of the served pool's socket (required)")
	asJSON := fs.Bool("json", false, "print one snapshot as JSON and exit")
	interval := fs.Duration("interval", time.Second, "refresh interval of the live view")
	count := fs.Int("count", 0, "stop after this many refreshes (0: until interrupted)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *socket == "" {
		return usageError{errors.New("need --socket PATH")}
	}
	f, err := server.OpenStats(*socket)
	if err != nil {
		return err
	}
	defer f.Close()
	if *asJSON {
		s, err := executor.ReadStats(f)
		if err != nil {
			return err
		}
		return writeJSON(out, s)
	}
	return liveView(f, out, *interval, *count, *socket)
}

// runBench runs the benchmark command, shmexec-bench, from the directory
// of this executable: it is a command of its own (bench/, a module of its
// own) so that its plotting libraries stay out of this module.
func runBench(args []string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	path := filepath.Join(filepath.Dir(self), "shmexec-bench")
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%s not found: build it with `make build/shmexec-bench`", path)
	}
	return syscall.Exec(path, append([]string{path}, args...), os.Environ())
}
