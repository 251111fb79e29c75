package executor

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmexec/shmexec/internal/sysx"
	"github.com/shmexec/shmexec/ring"
	"github.com/shmexec/shmexec/shm"
)

// Region kinds of a pool segment. docs/PROTOCOL.md, "Pool segment".
const (
	kindParties = 1
	kindRing    = 2 // index 0: inqueue, 1+c: outqueue of client c
	kindSlots   = 3
	kindPages   = 4
	kindArena   = 5
	kindNames   = 6
	kindControl = 7
	kindWorkers = 8
	kindClients = 9

	ringInq     = 1
	ringOutBase = 16

	// Version is the release, the same as SHMX_VERSION_* in
	// include/shmexec.h (a test checks).
	Version = "0.1.0"

	// ProtocolVersion is the pool protocol spoken over a segment, checked
	// in the worker handshake and in the control region.
	ProtocolVersion = 1

	controlMagic = 0x4c4f4f5058484d53 // "SMHXPOOL"
	maxSlots     = 1 << 16
	maxNames     = 256
	nameEntry    = 64
	maxNameLen   = nameEntry - 8
	pageSize     = 64 << 10
	slotHeader   = 128
	workerRec    = 64
	clientRec    = 64
)

// Control region:
//
//	 0  magic u64
//	 8  pool state u32                 supervisor
//	12  supervisor pid u32             supervisor, at creation
//	16  workers, clients, slots, inline size: 4 x u32
//	32  pages u32, page size u32
//	40  max payload u64
//	48  protocol version u32
//	64  counters: numCounters x u64    (see the counter constants)
const (
	ctlMagic      = 0
	ctlState      = 8
	ctlSupPID     = 12
	ctlWorkers    = 16
	ctlClients    = 20
	ctlSlots      = 24
	ctlInline     = 28
	ctlPages      = 32
	ctlPageSize   = 36
	ctlMaxPayload = 40
	ctlProto      = 48
	ctlDefRetries = 52  // u32: the pool's default Retries
	ctlDefTimeout = 56  // i64: the pool's default JobTimeout in ns
	ctlSlotFreed  = 256 // u32 futex word: bumped when a slot is freed and someone waits
	ctlSlotWait   = 260 // u32: how many submitters wait for a free slot
	ctlStartEv    = 272 // u32 futex word: bumped when a worker turns ready or a start fails, and someone waits
	ctlStartWait  = 276 // u32: how many wait for either (New)
	// The start-up state, written by the supervisor only: ctlStartSeq is
	// odd while no worker can start (no worker is ready and the last
	// start failed), and then ctlStartWhy holds the reason, ctlStartLen
	// bytes of it, written before the word turned odd.
	ctlStartSeq = 264 // u32
	ctlStartLen = 268 // u32, at most startWhyMax
	ctlStartWhy = 1024
	startWhyMax = 1024
	ctlCounters = 64
)

// Pool states in the control region.
const (
	poolOpen    = 1
	poolClosing = 2 // no new submits; queued jobs finish
	poolClosed  = 3 // workers told to exit; pending jobs fail PoolClosed
	poolDead    = 4
)

// Counters in the control region (index into the counter array).
const (
	ctrFailed        = 0  // + result code: failures by kind, codes 1..8
	ctrRecovered     = 9  // jobs taken back from dead workers
	ctrRetried       = 10 // re-runs after a crash
	ctrRespawned     = 11
	ctrWorkerDeaths  = 12
	ctrStartFailures = 13
	ctrRepublished   = 14 // results the supervisor published for a dead worker
	ctrClientDeaths  = 15
	ctrReclaimed     = 16 // slots reclaimed from dead clients
	ctrDetached      = 17 // clients that detached by Close (not deaths)
	numCounters      = 18
)

// Job slot states (bits 0-7 of the state word).
const (
	slotFree       = 0
	slotFilling    = 1 // owner: the submitting client's party
	slotQueued     = 2 // in the inqueue; owner 0
	slotRunning    = 3 // leased; owner: the worker's party
	slotDone       = 4 // result written; being or been published; owner: publisher
	slotCollecting = 5 // owner: the collecting client's party
	slotDropped    = 6 // its client died while it was queued; the worker that dequeues it frees it
)

// Flags (bits 56-63 of the state word).
const (
	flagTimedOut  = 1 << 0 // the supervisor killed the worker for the deadline
	flagCancelReq = 1 << 1 // the client asked to cancel (and kill if running)
)

// The state word of a job slot: one CAS moves a slot between states.
//
// Memory ordering: every write to a slot's other fields (meta, refs,
// payloads, crash info) is made by the slot's holder before the CAS that
// hands the slot on (Filling->Queued, Running->Done, Done->Collecting...),
// and every reader loads the state word, and checks state and sequence,
// before it reads them. Go's atomics are sequentially consistent, so each
// load of a state word pairs with the CAS of the transition it checks for
// (the table in docs/PROTOCOL.md §6). Page owner words pair the same way:
// the CAS that claims a page precedes every write to it, and the CAS that
// frees it follows the last read.
//
//	bits 0-7 state, 8-39 owner (party index << 16 | generation),
//	40-55 sequence (bumped each time the slot is allocated), 56-63 flags
func stateWord(state uint8, owner uint32, seq uint16, flags uint8) uint64 {
	return uint64(state) | uint64(owner)<<8 | uint64(seq)<<40 | uint64(flags)<<56
}

func wState(w uint64) uint8  { return uint8(w) }
func wOwner(w uint64) uint32 { return uint32(w >> 8) }
func wSeq(w uint64) uint16   { return uint16(w >> 40) }
func wFlags(w uint64) uint8  { return uint8(w >> 56) }

// Job slot layout (slotHeader bytes, then 2 x inline bytes: input, output):
//
//	  0  state word u64              CAS by whoever moves the slot
//	  8  meta u64: client (0-15), handler id (16-31), attempts (32-47), result code (48-63)
//	 16  job id u64                  the client's number for the job
//	 24  timeout ns i64
//	 32  deadline, CLOCK_MONOTONIC ns i64, set by the worker at lease
//	 40  input ref u64, 48 input len u64
//	 56  output ref u64, 64 output len u64
//	 72  crash pid u32, 76 crash signal i32, 80 crash exit code i32, 84 retries allowed u32
//	 88  reserved
//	128  inline input, then inline output
//
// A payload ref with bit 63 set names arena pages (bits 0-31: first page);
// otherwise the payload is inline.
const (
	slState    = 0
	slMeta     = 8
	slJobID    = 16
	slTimeout  = 24
	slDeadline = 32
	slInRef    = 40
	slInLen    = 48
	slOutRef   = 56
	slOutLen   = 64
	slCrashPID = 72
	slCrashSig = 76
	slCrashEx  = 80
	slRetries  = 84

	refArena = 1 << 63
)

func packMeta(client, handler, attempts, code uint16) uint64 {
	return uint64(client) | uint64(handler)<<16 | uint64(attempts)<<32 | uint64(code)<<48
}

type meta struct{ client, handler, attempts, code uint16 }

func unpackMeta(w uint64) meta {
	return meta{uint16(w), uint16(w >> 16), uint16(w >> 32), uint16(w >> 48)}
}

// Ring values name a slot and the sequence it had when queued, so a stale
// entry (the slot was since freed and reused) is recognised and skipped.
func slotRef(idx int, seq uint16) uint32 { return uint32(idx) | uint32(seq)<<16 }
func refIdx(v uint32) int                { return int(v & 0xffff) }
func refSeq(v uint32) uint16             { return uint16(v >> 16) }

// Worker record (workerRec bytes), written by the supervisor and its worker:
//
//	0 state u32, 4 pid u32, 8 generation u32, 12 restarts u32,
//	16 current job u64 (slotRef | 1<<32 while valid), 24 jobs done u64,
//	32 last exit u64 (signal << 32 | exit code), 40 moves off the CPU of
//	its job's caller u64 (worker.separate), 48 the last generation whose
//	start-up output the supervisor forwarded to its end u32 (startLog)
const (
	wrState    = 0
	wrPID      = 4
	wrGen      = 8
	wrRestarts = 12
	wrCurrent  = 16
	wrDone     = 24
	wrLastExit = 32
	wrMoved    = 40
	wrStartLog = 48
)

// Worker states.
const (
	workerEmpty    = 0
	workerStarting = 1
	workerIdle     = 2
	workerBusy     = 3
	workerExiting  = 4
	workerFailed   = 5
)

// Client record (clientRec bytes):
//
//	0 state u32, 4 pid u32, 8 generation u32, 16 submitted u64, 24 collected u64,
//	32 failures never observed u64, 40 the CPU + 1 of its last spin that
//	yielded to another thread or ran out u32 (0: none yet)
const (
	crState      = 0
	crPID        = 4
	crGen        = 8
	crSubmitted  = 16
	crCollected  = 24
	crUnobserved = 32
	crCPU        = 40

	clientFree   = 0
	clientActive = 1
	clientDead   = 2 // being reclaimed
)

// geometry is what the control region says about the segment; every
// process checks it against the regions before use.
type geometry struct {
	workers, clients, slots, inline, pages int
	maxPayload                             uint64
}

// Parties: 0 is the supervisor, 1..workers the workers, then two per
// client (its submitter and its collector).
func (g geometry) parties() int             { return 1 + g.workers + 2*g.clients }
func (g geometry) workerParty(i int) int    { return 1 + i }
func (g geometry) clientSubParty(c int) int { return 1 + g.workers + 2*c }
func (g geometry) clientColParty(c int) int { return 2 + g.workers + 2*c }

// ringCap is the capacity of the inqueue and the outqueues: twice the
// slots, so that the few extra cells a queue can hold for a while (skip
// cells of dead producers, stale entries of cancelled jobs, results
// published again for a dead worker) never make it full for a slot's own
// entry.
func (g geometry) ringCap() int { return 2 * g.slots }

func (g geometry) slotSize() int { return slotHeader + 2*g.inline }

func (g geometry) specs() []shm.RegionSpec {
	specs := []shm.RegionSpec{
		{Kind: kindControl, Size: 4096},
		{Kind: kindParties, Size: ring.PartiesSize(g.parties())},
		{Kind: kindRing, Index: 0, Size: ring.Size(g.ringCap())},
		{Kind: kindSlots, Size: uint64(g.slots * g.slotSize())},
		{Kind: kindPages, Size: uint64(8 * max(g.pages, 1))},
		{Kind: kindNames, Size: maxNames * nameEntry},
		{Kind: kindWorkers, Size: uint64(g.workers * workerRec)},
		{Kind: kindClients, Size: uint64(g.clients * clientRec)},
		{Kind: kindArena, Size: uint64(max(g.pages, 1)) * pageSize, Align: 4096},
	}
	for c := 0; c < g.clients; c++ {
		specs = append(specs, shm.RegionSpec{Kind: kindRing, Index: uint32(1 + c), Size: ring.Size(g.ringCap())})
	}
	return specs
}

// layout holds the views of a pool segment, shared by supervisor, workers
// and clients.
type layout struct {
	// mu guards the mapping: operations that touch the segment from
	// outside the pool's own goroutines hold it for reading; unmap takes
	// it for writing, so no access can race the unmap.
	mu       sync.RWMutex
	unmapped bool
	// holds counts outputs left in place (Future.Release frees them):
	// unmap leaves the segment mapped while any is held, and the last
	// release unmaps it, so that a held output stays readable.
	holds     atomic.Int64
	segClosed bool // mu

	seg     *shm.Segment
	g       geometry
	control shm.View
	parties *ring.Parties
	inq     *ring.Ring
	outq    []*ring.Ring
	rings   []*ring.Ring // all of them, for recovery
	slots   shm.View
	pages   []atomic.Uint64
	arena   shm.View
	names   shm.View
	workers shm.View
	clients shm.View
}

func (l *layout) counter(i int) *atomic.Uint64 { return l.control.Uint64(ctlCounters + 8*i) }
func (l *layout) poolState() *atomic.Uint32    { return l.control.Uint32(ctlState) }

func (l *layout) slot(i int) shm.View { return l.slots.Sub(i*l.g.slotSize(), l.g.slotSize()) }
func (l *layout) slotState(i int) *atomic.Uint64 {
	return l.slots.Uint64(i*l.g.slotSize() + slState)
}
func (l *layout) worker(i int) shm.View { return l.workers.Sub(i*workerRec, workerRec) }
func (l *layout) client(c int) shm.View { return l.clients.Sub(c*clientRec, clientRec) }

// openLayout maps the regions of seg. With create, it also writes the
// control region and initialises the rings (the segment must be new).
func openLayout(seg *shm.Segment, create bool, g geometry) (*layout, error) {
	l := &layout{seg: seg}
	region := func(kind, index uint32) shm.View {
		v, err := seg.Region(kind, index)
		if err != nil {
			panic(err) // checked by validate below before any call
		}
		return v
	}
	for _, k := range []uint32{kindControl, kindParties, kindSlots, kindPages, kindArena, kindNames, kindWorkers, kindClients} {
		if _, err := seg.Region(k, 0); err != nil {
			return nil, fmt.Errorf("pool segment: %w", err)
		}
	}
	l.control = region(kindControl, 0)
	if create {
		c := l.control
		c.Uint32(ctlWorkers).Store(uint32(g.workers))
		c.Uint32(ctlClients).Store(uint32(g.clients))
		c.Uint32(ctlSlots).Store(uint32(g.slots))
		c.Uint32(ctlInline).Store(uint32(g.inline))
		c.Uint32(ctlPages).Store(uint32(g.pages))
		c.Uint32(ctlPageSize).Store(pageSize)
		c.Uint64(ctlMaxPayload).Store(g.maxPayload)
		c.Uint32(ctlProto).Store(ProtocolVersion)
		c.Uint64(ctlMagic).Store(controlMagic)
	} else {
		c := l.control
		if c.Uint64(ctlMagic).Load() != controlMagic {
			return nil, fmt.Errorf("pool segment: not a pool (control magic %#x)", c.Uint64(ctlMagic).Load())
		}
		if v := c.Uint32(ctlProto).Load(); v != ProtocolVersion {
			return nil, fmt.Errorf("pool segment: protocol version %d, this library speaks %d", v, ProtocolVersion)
		}
		if ps := c.Uint32(ctlPageSize).Load(); ps != pageSize {
			return nil, fmt.Errorf("pool segment: page size %d, want %d", ps, pageSize)
		}
		g = geometry{
			workers:    int(c.Uint32(ctlWorkers).Load()),
			clients:    int(c.Uint32(ctlClients).Load()),
			slots:      int(c.Uint32(ctlSlots).Load()),
			inline:     int(c.Uint32(ctlInline).Load()),
			pages:      int(c.Uint32(ctlPages).Load()),
			maxPayload: c.Uint64(ctlMaxPayload).Load(),
		}
	}
	if err := l.validate(seg, g); err != nil {
		return nil, err
	}
	l.g = g
	var err error
	if l.parties, err = ring.OpenParties(region(kindParties, 0)); err != nil {
		return nil, err
	}
	openRing := func(index uint32, id uint16) (*ring.Ring, error) {
		v, err := seg.Region(kindRing, index)
		if err != nil {
			return nil, fmt.Errorf("pool segment: %w", err)
		}
		if create {
			return ring.Init(v, id, g.ringCap())
		}
		r, err := ring.Open(v)
		if err == nil && (r.ID() != id || r.Capacity() != g.ringCap()) {
			err = fmt.Errorf("pool segment: ring %d has id %d and %d cells, want %d and %d", index, r.ID(), r.Capacity(), id, g.ringCap())
		}
		return r, err
	}
	if l.inq, err = openRing(0, ringInq); err != nil {
		return nil, err
	}
	l.rings = []*ring.Ring{l.inq}
	for c := 0; c < g.clients; c++ {
		r, err := openRing(uint32(1+c), uint16(ringOutBase+c))
		if err != nil {
			return nil, err
		}
		l.outq = append(l.outq, r)
		l.rings = append(l.rings, r)
	}
	l.slots = region(kindSlots, 0)
	l.pages = region(kindPages, 0).Uint64s(0, g.pages)
	l.arena = region(kindArena, 0)
	l.names = region(kindNames, 0)
	l.workers = region(kindWorkers, 0)
	l.clients = region(kindClients, 0)
	return l, nil
}

// validate checks the geometry against the regions' sizes, so that every
// later index computed from it stays inside its region.
func (l *layout) validate(seg *shm.Segment, g geometry) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("pool segment: "+format, args...)
	}
	if g.workers < 1 || g.clients < 1 || g.parties() > ring.MaxParties {
		return bad("%d workers and %d clients (at most %d parties in all)", g.workers, g.clients, ring.MaxParties)
	}
	if g.slots < 2 || g.slots > maxSlots || g.slots&(g.slots-1) != 0 {
		return bad("%d job slots is not a power of two in [2, %d]", g.slots, maxSlots)
	}
	if g.inline < 0 || g.inline%8 != 0 || g.inline > 1<<20 {
		return bad("inline size %d", g.inline)
	}
	need := map[uint32]uint64{
		kindSlots:   uint64(g.slots * g.slotSize()),
		kindPages:   uint64(8 * g.pages),
		kindArena:   uint64(g.pages) * pageSize,
		kindWorkers: uint64(g.workers * workerRec),
		kindClients: uint64(g.clients * clientRec),
		kindNames:   maxNames * nameEntry,
	}
	for kind, n := range need {
		v, err := seg.Region(kind, 0)
		if err != nil {
			return bad("%v", err)
		}
		if uint64(v.Len()) < n {
			return bad("region kind %d has %d bytes, needs %d", kind, v.Len(), n)
		}
	}
	return nil
}

// enter reports whether the segment is still mapped and, if so, keeps it
// mapped until exit.
func (l *layout) enter() bool {
	l.mu.RLock()
	if l.unmapped {
		l.mu.RUnlock()
		return false
	}
	return true
}

func (l *layout) exit() { l.mu.RUnlock() }

// unmap waits for every entered operation to exit, then unmaps, or, while
// an output is held in place, leaves that to the last unhold.
func (l *layout) unmap() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.unmapped {
		return nil
	}
	l.unmapped = true
	if l.holds.Load() > 0 {
		return nil
	}
	l.segClosed = true
	return l.seg.Close()
}

// hold keeps the segment mapped past unmap until a matching unhold. Call
// it while the segment is certainly mapped: between enter and exit, or in
// the collector goroutine, which unmap outlives.
func (l *layout) hold() { l.holds.Add(1) }

// unhold ends a hold: it runs free while the segment is in use, and
// unmaps the segment if unmap was called meanwhile and this was the last
// hold (free is then skipped: nobody uses the pages any more).
func (l *layout) unhold(free func()) {
	if l.enter() {
		free()
		l.holds.Add(-1)
		l.exit()
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holds.Add(-1) == 0 && !l.segClosed {
		l.segClosed = true
		_ = l.seg.Close() // as Close's would have been: nothing left to report it to
	}
}

// allocSlot claims a free slot for owner: CAS Free -> Filling(owner)
// with the next sequence, searching from *hint. It returns the slot and
// its new state word, or ok false when every slot is in use.
func (l *layout) allocSlot(owner uint32, hint *atomic.Uint32) (idx int, cur uint64, ok bool) {
	n := l.g.slots
	start := int(hint.Load())
	for i := 0; i < n; i++ {
		idx = (start + i) & (n - 1)
		st := l.slotState(idx)
		w := st.Load() // pairs with the CAS in releaseSlot
		if wState(w) != slotFree {
			continue
		}
		next := stateWord(slotFilling, owner, wSeq(w)+1, 0)
		if st.CompareAndSwap(w, next) {
			hint.Store(uint32(idx + 1))
			return idx, next, true
		}
	}
	return 0, 0, false
}

// releaseSlot frees slot idx, whose state word is cur: it frees the job's
// pages, then marks the slot Free, and wakes submitters waiting for one.
// With scan, pages are found by their owner word rather than by the
// slot's refs (which a dead process may not have written). It reports
// false if the slot changed under it.
func (l *layout) releaseSlot(idx int, cur uint64, scan bool) bool {
	seq := wSeq(cur)
	st := l.slotState(idx)
	if st.Load() != cur {
		return false
	}
	// Pages first: once Free, the slot may be reused at once. Only the
	// slot's current holder calls this, so the pages are still its own.
	if scan {
		l.freeOwned(pageOwner(pageInput, slotRef(idx, seq)))
		l.freeOwned(pageOwner(pageOutput, slotRef(idx, seq)))
	} else {
		l.freeSlotPages(idx, seq)
	}
	if !st.CompareAndSwap(cur, stateWord(slotFree, 0, seq, 0)) {
		return false
	}
	l.slotFreed().signal()
	return true
}

// An event is a futex word of the control region that a process bumps
// when something that others may wait for has happened, beside a count
// of those waiting, so that it costs no system call while none waits.
type event struct{ word, waiters *atomic.Uint32 }

// slotFreed: a job slot was freed (releaseSlot), for submitters waiting
// for one.
func (l *layout) slotFreed() event {
	return event{l.control.Uint32(ctlSlotFreed), l.control.Uint32(ctlSlotWait)}
}

// startEvent: a worker turned ready (worker.ready), or a start failed
// (Pool.startFailed), for New.
func (l *layout) startEvent() event {
	return event{l.control.Uint32(ctlStartEv), l.control.Uint32(ctlStartWait)}
}

// signal bumps the word and wakes its waiters, if any. Call it after
// making true what they look for.
func (e event) signal() {
	if e.waiters.Load() > 0 { // pairs with the Add in wait
		e.word.Add(1)
		sysx.FutexWake(e.word, math.MaxInt32)
	}
}

// wait reports true if ok() holds, looked at once the caller counts as
// a waiter; else it sleeps until the event is signalled, or for at most
// d (d <= 0: not at all), and reports false.
func (e event) wait(d time.Duration, ok func() bool) bool {
	e.waiters.Add(1)
	defer e.waiters.Add(^uint32(0))
	seen := e.word.Load()
	if ok() {
		return true
	}
	if d > 0 { // FutexWait takes a negative timeout as no limit
		sysx.FutexWait(e.word, seen, d)
	}
	return false
}

// setStartFailure records the pool's start-up state (supervisor only):
// failing with reason, or, for "", working. Clients read it with
// startFailure; the reason is written before the state word says
// failing, and replaced only while the word is even.
func (l *layout) setStartFailure(reason string) {
	seq := l.control.Uint32(ctlStartSeq)
	failing := seq.Load()&1 == 1
	b := []byte(reason)
	if len(b) > startWhyMax {
		b = b[:startWhyMax]
	}
	switch {
	case reason == "" && failing:
		seq.Add(1) // pairs with the Load in startFailure
	case reason != "" && failing && l.startFailure() != string(b):
		// A newer failure: the word turns even while the text changes
		// (a reader then sees no failure, or the new one, never a mix).
		seq.Add(1)
		fallthrough
	case reason != "" && !failing:
		dst, _ := l.control.Bytes(ctlStartWhy, uint64(len(b)))
		copy(dst, b)
		l.control.Uint32(ctlStartLen).Store(uint32(len(b)))
		seq.Add(1) // publishes the reason: pairs with the Load in startFailure
	}
}

// anyWorkerReady reports whether a worker's state word says it is ready.
func (l *layout) anyWorkerReady() bool { return l.readyWorkers() > 0 }

// readyWorkers counts the workers whose state word says they are ready.
func (l *layout) readyWorkers() int {
	n := 0
	for i := 0; i < l.g.workers; i++ {
		if workerReady(l.worker(i).Uint32(wrState).Load()) {
			n++
		}
	}
	return n
}

// startFailure returns why no worker can start, or "" while the pool's
// workers start (or it has not said otherwise). What it reads was written
// by the supervisor: untrusted, bounds-checked.
func (l *layout) startFailure() string {
	seq := l.control.Uint32(ctlStartSeq)
	s := seq.Load() // pairs with the Adds in setStartFailure
	if s&1 == 0 {
		return ""
	}
	n := uint64(min(l.control.Uint32(ctlStartLen).Load(), startWhyMax))
	b, err := l.control.Bytes(ctlStartWhy, n)
	if err != nil {
		return "no worker can start"
	}
	reason := string(b)
	if seq.Load() != s || reason == "" { // changed while read
		return "no worker can start"
	}
	return reason
}
