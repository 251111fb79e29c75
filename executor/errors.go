package executor

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Result codes as stored in a job slot and exported through the C ABI
// (where they are negated and offset; see include/shmexec.h).
const (
	codeOK             = 0
	codeHandlerError   = 1
	codeWorkerCrashed  = 2
	codeTimeout        = 3
	codeCancelled      = 4
	codePoolClosed     = 5
	codeUnknownHandler = 6
	codeTooLarge       = 7
	codeWorkerStart    = 8 // no worker is alive and the last start failed
	numCodes           = 8 // the highest code
)

// Sentinel errors. A job's terminal error matches exactly one of them with
// errors.Is; the typed errors below carry the detail.
var (
	// ErrHandler: the handler returned an error or panicked.
	ErrHandler = errors.New("shmexec: handler failed")
	// ErrWorkerCrashed: the worker running the job died (and the job's
	// retries, if any, are spent).
	ErrWorkerCrashed = errors.New("shmexec: worker crashed")
	// ErrTimeout: the job ran past its timeout; its worker was killed.
	// It is os.ErrDeadlineExceeded, so os.IsTimeout also holds.
	ErrTimeout = os.ErrDeadlineExceeded
	// ErrCancelled: the job was cancelled before it ended.
	ErrCancelled = errors.New("shmexec: job cancelled")
	// ErrPoolClosed: the pool was closed or terminated before the job ran,
	// or a submit came after Close. errors.Is(err, os.ErrClosed) holds for
	// it too; its text is its own, not os.ErrClosed's "file already
	// closed".
	ErrPoolClosed error = poolClosedError{}
	// ErrUnknownHandler: no handler of that name is registered in the
	// worker.
	ErrUnknownHandler = errors.New("shmexec: unknown handler")
	// ErrTooLarge: an input or output exceeded the pool's MaxPayload.
	ErrTooLarge = errors.New("shmexec: payload too large")
	// ErrPoolDead: the supervisor died; nothing more will happen.
	ErrPoolDead = errors.New("shmexec: pool supervisor died")
	// ErrFull: a non-blocking submit found no free job slot.
	ErrFull = errors.New("shmexec: pool queue full")
	// ErrWorkerStart: no worker is alive and the last start failed (a
	// broken command, a crash at start-up, a failing initializer); the
	// error says why. The pool goes on starting workers, with back-off,
	// and runs jobs again once one is ready.
	ErrWorkerStart = errors.New("shmexec: workers fail to start")
	// ErrNestedPool: New was called in a pool worker. Workers may not
	// start pools (as multiprocessing's daemonic processes may not have
	// children): a program that creates its pool before checking whether
	// it is a worker would otherwise start pools without end.
	ErrNestedPool = errors.New("shmexec: a pool worker cannot start a pool of its own")
)

// HandlerError is the error of a job whose handler failed.
type HandlerError struct {
	Type      string // the error's type name, e.g. "*fs.PathError" or "panic"
	Message   string
	Traceback string // a stack trace for panics
}

func (e *HandlerError) Error() string {
	if e.Type == "" {
		return "handler: " + e.Message
	}
	return fmt.Sprintf("handler: %s: %s", e.Type, e.Message)
}

// Is makes errors.Is(err, ErrHandler) hold.
func (e *HandlerError) Is(target error) bool { return target == ErrHandler }

// CrashError is the error of a job whose worker died.
type CrashError struct {
	PID      int
	Signal   syscall.Signal // 0 if the worker exited
	ExitCode int            // -1 if it was killed by a signal
	Attempts int            // how many workers the job has been run on
}

func (e *CrashError) Error() string {
	how := fmt.Sprintf("exited with status %d", e.ExitCode)
	if e.Signal != 0 {
		how = fmt.Sprintf("killed by signal %d (%s)", int(e.Signal), unix.SignalName(e.Signal))
	}
	s := fmt.Sprintf("worker pid %d %s", e.PID, how)
	if e.Attempts > 1 {
		s += fmt.Sprintf(" (poison job: crashed %d workers)", e.Attempts)
	}
	return s
}

// Is makes errors.Is(err, ErrWorkerCrashed) hold.
func (e *CrashError) Is(target error) bool { return target == ErrWorkerCrashed }

// codeError returns the error for a non-OK result code with detail text.
func codeError(code uint16, detail string) error {
	wrap := func(sentinel error) error {
		if detail == "" {
			return sentinel
		}
		return fmt.Errorf("%w: %s", sentinel, detail)
	}
	switch code {
	case codeTimeout:
		return &TimeoutError{Detail: detail}
	case codeCancelled:
		return wrap(ErrCancelled)
	case codePoolClosed:
		return wrap(ErrPoolClosed)
	case codeUnknownHandler:
		return wrap(ErrUnknownHandler)
	case codeTooLarge:
		return wrap(ErrTooLarge)
	case codeWorkerStart:
		return wrap(ErrWorkerStart)
	}
	return fmt.Errorf("shmexec: result code %d: %s", code, detail)
}

// poolClosedError is ErrPoolClosed: the pool's own text, and os.ErrClosed
// for errors.Is (what ErrPoolClosed was before it had a text of its own).
type poolClosedError struct{}

func (poolClosedError) Error() string { return "shmexec: pool closed" }

// Is makes errors.Is(err, os.ErrClosed) hold.
func (poolClosedError) Is(target error) bool { return target == os.ErrClosed }

// TimeoutError is the error of a job that ran past its timeout. It
// matches ErrTimeout (os.ErrDeadlineExceeded) with errors.Is, and
// os.IsTimeout reports true for it.
type TimeoutError struct{ Detail string }

func (e *TimeoutError) Error() string {
	if e.Detail == "" {
		return "shmexec: job timed out"
	}
	return "shmexec: job timed out: " + e.Detail
}

// Timeout reports true, for os.IsTimeout and net.Error-style checks.
func (e *TimeoutError) Timeout() bool { return true }

// Is makes errors.Is(err, ErrTimeout) hold.
func (e *TimeoutError) Is(target error) bool { return target == ErrTimeout }
