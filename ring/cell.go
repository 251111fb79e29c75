package ring

import "fmt"

// A cell is one 64-bit word:
//
//	63    61 60                        32 31                         0
//	+-------+----------------------------+----------------------------+
//	| state |  lap (29 bits, mod 2^29)   |  payload (32 bits)         |
//	+-------+----------------------------+----------------------------+
//
// The payload is the value for Full cells, the owner (party index << 16 |
// generation) for Claimed and Taken cells, and zero for Empty and Skip.
// Ticket t lives in cell t mod capacity at lap t / capacity (mod 2^29).
// A zeroed ring is valid: every cell is Empty at lap 0.
//
// Per ticket the cell goes through
//
//	Empty(L) -claim-> Claimed(L,producer) -publish-> Full(L,v) -claim-> Taken(L,consumer) -release-> Empty(L+1)
//	                  Claimed(L,dead producer) -recover-> Skip(L) -step over-> Empty(L+1)
//	                                                    Taken(L,dead consumer) -recover-> Empty(L+1)
//
// Every transition is a single CAS or a store by the cell's owner.
const (
	StateEmpty   = 0
	StateClaimed = 1
	StateFull    = 2
	StateTaken   = 3
	StateSkip    = 4

	lapBits   = 29
	lapMask   = 1<<lapBits - 1
	lapShift  = 32
	stateBits = 61
)

var stateNames = [...]string{"empty", "claimed", "full", "taken", "skip"}

// Cell is a decoded cell word.
type Cell struct {
	State   uint8
	Lap     uint32
	Payload uint32
}

func (c Cell) String() string {
	if int(c.State) < len(stateNames) {
		return fmt.Sprintf("%s(lap %d, %#x)", stateNames[c.State], c.Lap, c.Payload)
	}
	return fmt.Sprintf("invalid-state-%d(lap %d, %#x)", c.State, c.Lap, c.Payload)
}

func makeCell(state uint8, lap uint32, payload uint32) uint64 {
	return uint64(state)<<stateBits | uint64(lap&lapMask)<<lapShift | uint64(payload)
}

func cellState(w uint64) uint8    { return uint8(w >> stateBits) }
func cellLap(w uint64) uint32     { return uint32(w>>lapShift) & lapMask }
func cellPayload(w uint64) uint32 { return uint32(w) }

// DecodeCell decodes a cell word read from shared memory and reports an
// error if no correct party could have written it.
func DecodeCell(w uint64) (Cell, error) {
	c := Cell{State: cellState(w), Lap: cellLap(w), Payload: cellPayload(w)}
	switch c.State {
	case StateEmpty, StateSkip:
		if c.Payload != 0 {
			return c, fmt.Errorf("%w: %v has a payload", ErrCorrupt, c)
		}
	case StateClaimed, StateTaken, StateFull:
	default:
		return c, fmt.Errorf("%w: cell word %#x has no valid state", ErrCorrupt, w)
	}
	return c, nil
}

// lapDiff returns cell lap minus ticket lap, modulo 2^29, as a signed
// number in [-2^28, 2^28).
func lapDiff(cell, ticket uint32) int32 {
	d := (cell - ticket) & lapMask
	if d >= 1<<(lapBits-1) {
		return int32(d) - 1<<lapBits
	}
	return int32(d)
}
