package ring

import (
	"fmt"
	"sync/atomic"

	"github.com/shmexec/shmexec/shm"
)

// The party table is a region of RecordSize-byte records, one per party
// that may touch the segment's rings. Record layout:
//
//	off  size  field    written by
//	  0     8  ident    the supervisor only: status (bits 0-7), generation
//	                    (8-23), pid (32-63)
//	  8     8  pending  the party (and recovery after its death): phase
//	                    (0-7), op (8-15), ring id (16-31), n values (32-39),
//	                    m claimed (40-47), recovery mask (48-63)
//	 16     8  ticket   the party: first ticket of the pending operation
//	 24     8  reserved
//	 32    64  values   the party: up to MaxBatch values of the operation
//	 96    32  reserved
//
// The pending word is written last when an operation is announced and
// first when it ends, so recovery never reads a half-written intent.
const (
	RecordSize = 128
	// MaxParties bounds the party table: the sleeper masks have one bit
	// per party.
	MaxParties = 256
	// MaxBatch is the most values one operation moves; batch calls move
	// more in several operations.
	MaxBatch = 16

	recIdent   = 0
	recPending = 8
	recTicket  = 16
	recValues  = 32
)

// Party status in the ident word.
const (
	statusFree   = 0
	statusActive = 1
)

// Operations and phases in the pending word.
const (
	opEnq = 1
	opDeq = 2

	phaseIdle      = 0
	phaseClaiming  = 1 // intent written, cells being claimed (enq and deq)
	phaseClaimed   = 2 // enq: m cells claimed, being published
	phaseHold      = 3 // deq: m cells taken, being released
	phaseDelivered = 4 // deq: values returned to the caller
	phaseAborting  = 5 // enq, set by recovery: mask = values not enqueued
	phaseReclaim   = 6 // deq, set by recovery: mask = cells to release
	phaseEnqueued  = 7 // enq: all m values published; custody until the next operation
)

type pending struct {
	phase, op uint8
	ring      uint16
	n, m      uint8
	mask      uint16
}

func (p pending) word() uint64 {
	return uint64(p.phase) | uint64(p.op)<<8 | uint64(p.ring)<<16 |
		uint64(p.n)<<32 | uint64(p.m)<<40 | uint64(p.mask)<<48
}

func decodePending(w uint64) pending {
	return pending{
		phase: uint8(w), op: uint8(w >> 8), ring: uint16(w >> 16),
		n: uint8(w >> 32), m: uint8(w >> 40), mask: uint16(w >> 48),
	}
}

// PartiesSize returns the region size for a table of n parties.
func PartiesSize(n int) uint64 { return uint64(n) * RecordSize }

// Parties is the party table.
type Parties struct {
	v shm.View
	n int
}

// OpenParties wraps a party-table region. The number of parties follows
// from the region's size.
func OpenParties(v shm.View) (*Parties, error) {
	n := v.Len() / RecordSize
	if n == 0 || n > MaxParties || v.Len()%RecordSize != 0 {
		return nil, fmt.Errorf("%w: party table of %d bytes (want a multiple of %d, at most %d records)",
			ErrCorrupt, v.Len(), RecordSize, MaxParties)
	}
	return &Parties{v: v, n: n}, nil
}

// Len returns the number of party records.
func (pt *Parties) Len() int { return pt.n }

func (pt *Parties) record(idx int) shm.View {
	if idx < 0 || idx >= pt.n {
		panic(fmt.Sprintf("ring: party index %d out of [0, %d)", idx, pt.n))
	}
	return pt.v.Sub(idx*RecordSize, RecordSize)
}

func makeIdent(status uint8, gen uint16, pid int) uint64 {
	return uint64(status) | uint64(gen)<<8 | uint64(uint32(pid))<<32
}

// Ident is the decoded ident word of a party record.
type Ident struct {
	Active bool
	Gen    uint16
	PID    int
}

// Ident returns the record's ident word, decoded. The record is shared
// memory: a dead party may have scribbled on it.
func (pt *Parties) Ident(idx int) Ident {
	w := pt.record(idx).Uint64(recIdent).Load() // pairs with the stores in Activate and Free
	return Ident{Active: uint8(w) == statusActive, Gen: uint16(w >> 8), PID: int(uint32(w >> 32))}
}

// Activate makes record idx active under the next generation and returns
// that generation. Only the supervisor calls it, for a free record, before
// the party's process starts.
func (pt *Parties) Activate(idx int) (uint16, error) {
	rec := pt.record(idx)
	id := pt.Ident(idx)
	if id.Active {
		return 0, fmt.Errorf("activate party %d: still active (generation %d)", idx, id.Gen)
	}
	gen := id.Gen + 1
	rec.Uint64(recPending).Store(0) // a fresh party starts idle; pairs with nothing (not yet shared)
	rec.Uint64(recIdent).Store(makeIdent(statusActive, gen, 0))
	return gen, nil
}

// SetPID records the party's process id, for observers.
func (pt *Parties) SetPID(idx int, gen uint16, pid int) {
	pt.record(idx).Uint64(recIdent).Store(makeIdent(statusActive, gen, pid)) // pairs with the load in Ident
}

// Free marks record idx free, keeping its generation so the next
// Activate moves past it. Only the supervisor calls it, after Recover.
func (pt *Parties) Free(idx int, gen uint16) {
	pt.record(idx).Uint64(recIdent).Store(makeIdent(statusFree, gen, 0)) // pairs with the load in Ident
}

// Join returns the handle through which a party process acts as record
// idx of generation gen. It fails if the record is not active under that
// generation.
func (pt *Parties) Join(idx int, gen uint16) (*Party, error) {
	if idx < 0 || idx >= pt.n {
		return nil, fmt.Errorf("%w: index %d out of [0, %d)", ErrNotMember, idx, pt.n)
	}
	id := pt.Ident(idx)
	if !id.Active || id.Gen != gen {
		return nil, fmt.Errorf("%w: record %d is %+v, want active generation %d", ErrNotMember, idx, id, gen)
	}
	rec := pt.record(idx)
	p := &Party{
		idx:     uint16(idx),
		gen:     gen,
		owner:   uint32(idx)<<16 | uint32(gen),
		pending: rec.Uint64(recPending),
		ticket:  rec.Uint64(recTicket),
	}
	for i := range p.values {
		p.values[i] = rec.Uint32(recValues + 4*i)
	}
	return p, nil
}

// Party is one actor's handle: a producer, a consumer or both (one
// operation at a time). Use it from one goroutine at a time.
type Party struct {
	idx, gen uint16
	owner    uint32

	// The party's own record. Only this party writes it while it lives.
	pending *atomic.Uint64
	ticket  *atomic.Uint64
	values  [MaxBatch]*atomic.Uint32

	// tookTurns: this party's thread took turns on its CPU with another
	// (a spin of it gave the CPU away, or a sleep of it was woken within
	// shortTurn), and no longer sleep of it came since. Go memory, this
	// process's only.
	tookTurns atomic.Bool
}

// TookTurns reports, once, whether a spin-wait of p gave its CPU to
// another thread (GiveWay), or a sleep of p's was woken within shortTurn,
// since its last call, with no longer sleep of p's since: p's thread shares its
// CPU with one that wants to run, maybe the very party it waits for,
// which p's spins keep from running (executor's worker then looks where
// its caller runs). A party that slept longer was not taking turns with
// another; where one sleeps between jobs, sharing the CPU of the party
// that wakes it is what makes the wake cheap.
func (p *Party) TookTurns() bool {
	if !p.tookTurns.Load() {
		return false
	}
	p.tookTurns.Store(false)
	return true
}

// Index returns the party's record index.
func (p *Party) Index() int { return int(p.idx) }

// Generation returns the party's generation.
func (p *Party) Generation() uint16 { return p.gen }

// Release ends the party's custody of the values its last operation
// moved: after it, recovery no longer reports them. Call it once the
// values are recorded somewhere recovery of the caller's own state will
// find them. Starting another operation has the same effect.
func (p *Party) Release() {
	p.pending.Store(0) // pairs with the load in Recover
}

// announce writes the intent of an operation: ticket and values first,
// the pending word last.
func (p *Party) announce(op uint8, ring uint16, ticket uint64, vals []uint32) {
	p.pending.Store(0) // end the previous operation's custody first; pairs with the load in Recover
	p.ticket.Store(ticket)
	for i, v := range vals {
		p.values[i].Store(v)
	}
	p.pending.Store(pending{phase: phaseClaiming, op: op, ring: ring, n: uint8(len(vals))}.word())
}

func (p *Party) setPhase(op uint8, ring uint16, phase uint8, n, m int) {
	p.pending.Store(pending{phase: phase, op: op, ring: ring, n: uint8(n), m: uint8(m)}.word()) // pairs with the load in Recover
}

// Owner returns the party's owner word (index << 16 | generation), the
// value that marks what it holds in shared memory.
func (p *Party) Owner() uint32 { return p.owner }
