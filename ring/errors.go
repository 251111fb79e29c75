package ring

import (
	"errors"
	"os"
)

var (
	// ErrFull is returned by a non-blocking enqueue on a full ring.
	ErrFull = errors.New("ring: full")
	// ErrEmpty is returned by a non-blocking dequeue on an empty ring.
	ErrEmpty = errors.New("ring: empty")
	// ErrTimeout is returned by a blocking operation whose timeout ran out.
	ErrTimeout = os.ErrDeadlineExceeded
	// ErrCorrupt is wrapped by errors about shared memory that no correct
	// party could have written. The caller treats the writer as crashed.
	ErrCorrupt = errors.New("ring: corrupt shared state")
	// ErrNotMember is returned when a party record does not match the
	// identity a process was given.
	ErrNotMember = errors.New("ring: party record does not match")
)
