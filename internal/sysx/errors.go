package sysx

import (
	"errors"
	"os"
)

var (
	// ErrNotSupported is returned on systems without the needed calls.
	ErrNotSupported = errors.New("sysx: not supported on this system")
	// ErrInterrupted is returned by a wait that a signal interrupted (EINTR).
	// The caller decides whether to wait again.
	ErrInterrupted = errors.New("sysx: wait interrupted by a signal")
	// ErrTimeout is returned by a wait whose timeout ran out.
	ErrTimeout = os.ErrDeadlineExceeded
)
