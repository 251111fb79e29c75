package executor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/shmexec/shmexec/ring"
)

// Config configures a pool. The zero value of each field picks the
// default named in its comment.
type Config struct {
	// Workers is the number of worker processes. 0: one per CPU.
	Workers int
	// WorkerArgv is the command that starts a worker. nil: this
	// executable, with no arguments.
	WorkerArgv []string
	// WorkerEnv is added to the workers' environment.
	WorkerEnv []string
	// Environ returns the environment a worker starts from, read at each
	// spawn (respawns included). nil: os.Environ(). A library loaded
	// into a C or Python program passes the C environment here: Go's
	// copy of it is taken once, when the runtime starts, and misses what
	// the program sets afterwards.
	Environ func() []string
	// QueueDepth is the number of job slots: jobs submitted and not yet
	// collected. Rounded up to a power of two. 0: 1024.
	QueueDepth int
	// MaxPayload bounds one job's input and output. 0: 64 MiB.
	MaxPayload int64
	// ArenaSize is the shared space for payloads that do not fit inline.
	// 0: 2 x MaxPayload, at least 16 MiB. The memory is only used as
	// touched.
	ArenaSize int64
	// InlineSize is how many bytes of input and of output travel inside
	// the job slot itself. 0: 256.
	InlineSize int
	// MaxTasksPerWorker makes a worker exit (and be replaced) after that
	// many jobs. 0: unlimited.
	MaxTasksPerWorker int
	// JobTimeout is the default time limit of a job; its worker is killed
	// past it. 0: none.
	JobTimeout time.Duration
	// Retries is the default number of re-runs of a job after its worker
	// crashed. 0: none.
	Retries int
	// StartTimeout bounds how long New waits for the workers to come up.
	// 0: 10 s.
	StartTimeout time.Duration
	// ReadyWorkers is how many workers New waits for before it returns;
	// the others come up while the first jobs run. 0: all of them. A
	// start that fails in every worker fails New either way.
	ReadyWorkers int
	// MaxClients is the number of clients (the owner's included) that can
	// be attached at once. 0: 8.
	MaxClients int
	// PassFiles are descriptors every worker gets, as descriptors 4, 5,
	// ... in order (SHMEXEC_PASS_FDS in its environment names them).
	// Workers get no other descriptor of this process but standard input,
	// output and error and the pool's own: one this process made
	// inheritable (a socket, a pipe) is closed in the worker before it
	// runs anything, as subprocess's close_fds does.
	PassFiles []*os.File
	// Stdout and Stderr receive the workers' standard output and error.
	// nil: this process's (as multiprocessing's workers write to their
	// parent's).
	Stdout io.Writer
	Stderr io.Writer

	// spawnEnv, for tests, adds environment entries to one spawn of a
	// worker (by index and how many times that index was spawned before).
	spawnEnv func(worker, spawned int) []string
}

func (c *Config) setDefaults() error {
	if c.Workers == 0 {
		c.Workers = runtime.NumCPU()
	}
	if c.QueueDepth == 0 {
		c.QueueDepth = 1024
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = 64 << 20
	}
	if c.ArenaSize == 0 {
		c.ArenaSize = max(2*c.MaxPayload, 16<<20)
	}
	if c.InlineSize == 0 {
		c.InlineSize = 256
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 10 * time.Second
	}
	if c.MaxClients == 0 {
		c.MaxClients = 8
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	// os/exec copies each worker's output from its own goroutine.
	if _, ok := c.Stdout.(*os.File); !ok {
		c.Stdout = &lockedWriter{w: c.Stdout}
	}
	if _, ok := c.Stderr.(*os.File); !ok {
		c.Stderr = &lockedWriter{w: c.Stderr}
	}
	switch {
	case c.Workers < 1 || 1+c.Workers+2*c.MaxClients > ring.MaxParties:
		return fmt.Errorf("executor: %d workers and %d clients: at most %d processes in all", c.Workers, c.MaxClients, ring.MaxParties)
	case c.QueueDepth < 1 || c.QueueDepth > maxSlots:
		return fmt.Errorf("executor: QueueDepth %d out of [1, %d]", c.QueueDepth, maxSlots)
	case c.MaxPayload < 0 || c.ArenaSize < 0 || c.InlineSize < 0 || c.InlineSize > 1<<20:
		return errors.New("executor: negative MaxPayload, ArenaSize or InlineSize, or InlineSize over 1 MiB")
	case c.MaxTasksPerWorker < 0 || c.Retries < 0 || c.JobTimeout < 0:
		return errors.New("executor: negative MaxTasksPerWorker, Retries or JobTimeout")
	case c.ReadyWorkers < 0 || c.ReadyWorkers > c.Workers:
		return fmt.Errorf("executor: ReadyWorkers %d out of [0, %d workers]", c.ReadyWorkers, c.Workers)
	}
	if c.WorkerArgv == nil {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("executor: find this executable for the workers: %w", err)
		}
		c.WorkerArgv = []string{exe}
	}
	if len(c.WorkerArgv) == 0 || c.WorkerArgv[0] == "" {
		return errors.New("executor: empty WorkerArgv")
	}
	return nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
