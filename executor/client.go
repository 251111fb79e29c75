package executor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shmexec/shmexec/internal/crashpoint"
	"github.com/shmexec/shmexec/internal/memx"
	"github.com/shmexec/shmexec/internal/sysx"
	"github.com/shmexec/shmexec/ring"
	"github.com/shmexec/shmexec/shm"
)

// Client submits jobs to a pool and collects their results through its
// own outqueue. The pool owner's Client comes from Pool.Client; another
// process gets one from Connect. Methods are safe for concurrent use.
type Client struct {
	l        *layout
	index    int
	subParty *ring.Party // producer on the inqueue, consumer of the free ring
	colParty *ring.Party // consumer of the outqueue, producer on the free ring
	subMu    sync.Mutex
	colMu    sync.Mutex // who drains the outqueue: the collector or a waiter
	taken    []int      // colMu
	names    nameCache
	slotHint atomic.Uint32
	defaults SubmitOptions

	mu      sync.Mutex
	futures map[uint32]*Future
	nextID  atomic.Uint64
	stopErr error // set once the client stops (pool closed or dead)

	unobserved atomic.Int64
	// inPlace counts the arena pages of outputs held in place
	// (SubmitOptions.InPlace), at most half the arena.
	inPlace   atomic.Int64
	stopping  chan struct{}
	collected chan struct{}
	stopOnce  sync.Once

	// Set for a client attached with Connect.
	external  *shm.Segment
	supPidfd  *os.File
	watchDone chan struct{}
	dead      atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// SubmitOptions override the pool's defaults for one job.
type SubmitOptions struct {
	// Timeout bounds the job's run time; its worker is killed past it.
	// 0: the pool's JobTimeout. Negative: none.
	Timeout time.Duration
	// Retries is how many times the job is re-run after a worker crash.
	// -1: the pool's Retries.
	Retries int
	// Output, if set, allocates the memory a successful job's output (of
	// n > 0 bytes) is copied into, instead of the Go heap; the memory is
	// then the caller's. A binding gives it C memory, so that a result is
	// copied once, straight out of the segment.
	Output func(n int) []byte
	// OnDone, if set, is called once when the job has ended, after Done
	// is closed, in the goroutine that collected the result. It must not
	// block. A binding uses it to hand finished jobs to a thread that
	// waits for any of them, without a goroutine per job.
	OnDone func(*Future)
	// InPlace, if > 0, leaves a successful output of at least InPlace
	// bytes where the worker wrote it, in the segment: Wait returns a
	// view of it, and Future.Release must free it (InPlace then reports
	// true). A binding whose caller decodes the output at once saves a
	// copy of it. Outputs held in place take arena space that jobs also
	// need, so they are copied instead (as without InPlace) while held
	// ones fill half the arena, or when the output is inline. A
	// client attached with Connect always copies: once it detaches, the
	// server may give the space to another client.
	InPlace int
}

// newClient starts the client's collector. external is the segment
// mapping of a client that Connect attached (nil for the pool owner's).
func newClient(l *layout, index int, sub, col *ring.Party, defaults SubmitOptions, external *shm.Segment) *Client {
	c := &Client{
		l: l, index: index, subParty: sub, colParty: col, defaults: defaults, external: external,
		futures:   map[uint32]*Future{},
		stopping:  make(chan struct{}),
		collected: make(chan struct{}),
	}
	go c.collect()
	return c
}

// waitSpin is how long Wait polls for the result before it parks. Waking
// a parked goroutine costs tens of microseconds on a small machine, more
// than a job of a binding's worker takes, so the spin must outlast a
// Python worker's round trip (docs/BENCHMARKS.md). Polling yields the
// goroutine every 16 checks.
const waitSpin = 100 * time.Microsecond

// Future is the pending result of one job.
type Future struct {
	c    *Client
	ref  uint32
	id   uint64
	done chan struct{}
	out  []byte
	err  error
	obs  *observed // set, before done is closed, when the job failed
	// alloc, onDone and inPlace are SubmitOptions.Output, OnDone and
	// InPlace.
	alloc   func(n int) []byte
	onDone  func(*Future)
	inPlace int
	// sleep is futPending, futSleeping while a thread sleeps on it in
	// WaitSleeping, or futDone once complete has closed done.
	sleep atomic.Uint32
	// held: the output is in the arena's pages [first, first+npages),
	// owned by the collector party, until Release.
	held          atomic.Bool
	first, npages int
}

// observed tracks whether a failed job's error was ever read; a cleanup
// counts the future as unobserved when it is garbage collected unread.
// Only failed futures get one: a cleanup costs the runtime about as much
// as the rest of a submit.
type observed struct {
	seen atomic.Bool
}

// ID returns the job's number, unique within its client.
func (f *Future) ID() uint64 { return f.id }

// Done returns a channel closed when the job has ended.
func (f *Future) Done() <-chan struct{} { return f.done }

// Wait blocks until the job ends or ctx is done, and returns the job's
// output or its terminal error. If ctx ends first it returns ctx's error
// and the job goes on. It may be called many times, from any goroutine.
func (f *Future) Wait(ctx context.Context) ([]byte, error) {
	if f.poll(waitSpin) {
		return f.taken()
	}
	select {
	case <-f.done:
		return f.taken()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// WaitTimeout is Wait with a time limit instead of a context (d < 0: no
// limit): it returns context.DeadlineExceeded when d passes first. It
// arms no timer for a job that ends while it polls, so a caller that
// waits in slices pays nothing for them.
func (f *Future) WaitTimeout(d time.Duration) ([]byte, error) {
	start := time.Now()
	if f.spinFor(d) {
		return f.taken()
	}
	if d < 0 {
		<-f.done
		return f.taken()
	}
	left := d - time.Since(start)
	if left <= 0 {
		return nil, context.DeadlineExceeded
	}
	t := time.NewTimer(left)
	defer t.Stop()
	select {
	case <-f.done:
		return f.taken()
	case <-t.C:
		return nil, context.DeadlineExceeded
	}
}

// The states of Future.sleep.
const (
	futPending  = 0
	futSleeping = 1 // a thread sleeps, or is about to, in WaitSleeping
	futDone     = 2
)

// WaitSleeping is WaitTimeout for a goroutine locked to its thread, as a
// C thread's is inside a cgo callback: once the spin is over it sleeps in
// the kernel, on a futex in the future, instead of parking. A locked
// goroutine that parks hands its thread's P to another thread, which
// hands it back when the goroutine is woken: two more thread wakes on
// every wait that outlasts the spin. WaitSleeping holds its thread, so it
// is not for goroutines that are many.
func (f *Future) WaitSleeping(d time.Duration) ([]byte, error) {
	start := time.Now()
	if f.spinFor(d) {
		return f.taken()
	}
	for {
		select {
		case <-f.done:
			return f.taken()
		default:
		}
		left := time.Duration(-1)
		if d >= 0 {
			if left = d - time.Since(start); left <= 0 {
				return nil, context.DeadlineExceeded
			}
		}
		// complete closes done before it sets futDone, and wakes the
		// sleepers if it finds futSleeping: a wake is not lost between
		// the check above and the sleep.
		if !f.sleep.CompareAndSwap(futPending, futSleeping) && f.sleep.Load() != futSleeping {
			continue // done: seen at the top
		}
		switch err := sysx.FutexWait(&f.sleep, futSleeping, left); {
		case err == nil, errors.Is(err, sysx.ErrTimeout), errors.Is(err, sysx.ErrInterrupted):
		default:
			// No futex to sleep on: park for what is left (none: no limit).
			return f.WaitTimeout(left)
		}
	}
}

// spinFor polls for the job's end for waitSpin, or for d if that is
// shorter (d < 0: no limit), and reports whether it has ended.
func (f *Future) spinFor(d time.Duration) bool { return f.poll(spinWithin(d)) }

// spinWithin is the spin of a wait that may last d (< 0: no limit):
// waitSpin, or d if that is shorter.
func spinWithin(d time.Duration) time.Duration {
	if d >= 0 && d < waitSpin {
		return d
	}
	return waitSpin
}

// taken returns the ended job's outcome, which counts as seen.
func (f *Future) taken() ([]byte, error) {
	if f.obs != nil {
		f.obs.seen.Store(true)
	}
	return f.out, f.err
}

// poll reports whether the job has ended, checking for up to spin (waitSpin: a tiny job's result comes back
// within microseconds, and waking a parked goroutine costs more).
func (f *Future) poll(spin time.Duration) bool { return f.c.spinUntil(spin, f.done, nil, 0) }

// SpinUntil polls the outqueue for up to the spin a Future's wait does
// (waitSpin, or limit if that is shorter; limit < 0: no shorter), taking
// the results that arrive as a waiting Future does, until the event count
// ev moves on from seq, and reports whether it did. For a thread that
// waits for what a result's SubmitOptions.OnDone brings about (the C
// API's shmx_wait_group): the results are taken in this thread, and no
// worker wakes the collector goroutine for them meanwhile.
func (c *Client) SpinUntil(ev *atomic.Uint32, seq uint32, limit time.Duration) bool {
	return c.spinUntil(spinWithin(limit), nil, ev, seq)
}

// spinUntil polls the outqueue for up to spin (once if spin <= 0),
// taking what has arrived, until done is closed or ev moves on from seq
// (a nil done or ev: not that), and reports whether one of them did.
func (c *Client) spinUntil(spin time.Duration, done <-chan struct{}, ev *atomic.Uint32, seq uint32) bool {
	if spin > 0 && c.l.enter() {
		// Say so on the outqueue: a worker then skips waking the
		// collector goroutine for the result this goroutine will take.
		out := c.l.outq[c.index]
		spinning := out.StartSpin(c.colParty)
		c.l.exit()
		if spinning {
			defer func() {
				if c.l.enter() { // else the segment is gone, and its bits with it
					out.EndSpin(c.colParty)
					c.l.exit()
				}
			}()
		}
	}
	for start, i := time.Now(), 0; ; i++ {
		select {
		case <-done:
			return true
		default:
		}
		if ev != nil && ev.Load() != seq {
			return true
		}
		if i > 0 && spin <= 0 {
			return false
		}
		if i%16 == 15 {
			switch elapsed := time.Since(start); {
			case elapsed > spin:
				// A tiny job's result comes within microseconds; a spin
				// that outlasts it may have kept the worker off this
				// very CPU. Say where, for the worker (worker.separate).
				c.noteCPU()
				return false
			case elapsed > ring.YieldAfter:
				if ring.GiveWay() {
					c.noteCPU()
				}
			}
		}
		if c.colMu.TryLock() {
			if c.l.enter() {
				c.drain()
				c.l.exit()
			}
			c.colMu.Unlock()
		} else {
			sysx.Pause() // not Gosched: see ring.DefaultSpin
		}
	}
}

// noteCPU records, for the workers, the CPU this thread runs on: its
// spin for a result has just given the CPU to another thread, maybe the
// worker it waits for (worker.separate).
func (c *Client) noteCPU() {
	if cpu := sysx.CPU(); cpu >= 0 && c.l.enter() {
		c.l.client(c.index).Uint32(crCPU).Store(uint32(cpu) + 1)
		c.l.exit()
	}
}

// Result returns the job's output and error; ok is false while the job
// has not ended.
func (f *Future) Result() (out []byte, err error, ok bool) {
	select {
	case <-f.done:
		out, err := f.taken()
		return out, err, true
	default:
		return nil, nil, false
	}
}

// InPlace reports whether the job's output is held in the segment
// (SubmitOptions.InPlace) until Release.
func (f *Future) InPlace() bool { return f.held.Load() }

// Release frees an output held in place: the bytes Wait returned must not
// be used after it. It does nothing for an output that was copied, and on
// a second call. Closing the pool leaves a held output readable until it
// is released.
func (f *Future) Release() {
	if !f.held.CompareAndSwap(true, false) {
		return
	}
	c := f.c
	c.l.unhold(func() { c.l.freePages(f.first, f.npages, pageOwner(pageParty, c.colParty.Owner())) })
	c.inPlace.Add(-int64(f.npages))
}

// keepInPlace makes the n-byte output of collected slot idx (job ref),
// which is in arena pages when outRef says so, f's own until f.Release:
// its pages move to the collector party, so releasing the slot leaves
// them, and the client's death frees them. It reports false, changing
// nothing, when the output is to be copied instead.
func (c *Client) keepInPlace(f *Future, ref uint32, outRef uint64, n int) bool {
	if f == nil || f.inPlace <= 0 || n < f.inPlace || outRef&refArena == 0 || c.external != nil {
		return false
	}
	first, np := int(outRef&^refArena), max(pagesFor(uint64(n)), 1)
	if c.inPlace.Add(int64(np)) > int64(len(c.l.pages)/2) {
		c.inPlace.Add(-int64(np))
		return false
	}
	from, to := pageOwner(pageOutput, ref), pageOwner(pageParty, c.colParty.Owner())
	if err := c.l.setOwner(first, np, from, to); err != nil {
		// Not this job's pages (a bad ref): the output is copied, or
		// found corrupt, as before.
		c.inPlace.Add(-int64(np))
		return false
	}
	f.first, f.npages = first, np
	c.l.hold()
	f.held.Store(true)
	return true
}

func (f *Future) complete(out []byte, err error) {
	f.out, f.err = out, err
	if err != nil {
		f.obs = &observed{}
		c := f.c
		runtime.AddCleanup(f, func(o *observed) {
			if !o.seen.Load() {
				c.unobserved.Add(1)
				if c.l.enter() {
					c.l.client(c.index).Uint64(crUnobserved).Add(1)
					c.l.exit()
				}
			}
		}, f.obs)
	}
	close(f.done)
	if f.sleep.Swap(futDone) == futSleeping {
		sysx.FutexWake(&f.sleep, math.MaxInt32)
	}
	if f.onDone != nil {
		f.onDone(f)
	}
}

// Submit queues a job for handler with input and returns its future. It
// blocks while every job slot is in use (backpressure), until ctx ends.
// It fails at once with ErrTooLarge for an input over MaxPayload and with
// ErrPoolClosed after Close.
func (c *Client) Submit(ctx context.Context, handler string, input []byte) (*Future, error) {
	return c.SubmitWith(ctx, handler, input, SubmitOptions{Retries: -1})
}

// SubmitWith is Submit with per-job options.
func (c *Client) SubmitWith(ctx context.Context, handler string, input []byte, opts SubmitOptions) (*Future, error) {
	return c.submit(ctx, handler, input, nil, opts, true)
}

// TrySubmit is Submit that fails with ErrFull instead of waiting for a
// free job slot, or for arena space for an input too large to travel in
// the slot: it never blocks.
func (c *Client) TrySubmit(handler string, input []byte) (*Future, error) {
	return c.TrySubmitWith(handler, input, SubmitOptions{Retries: -1})
}

// TrySubmitWith is TrySubmit with per-job options.
func (c *Client) TrySubmitWith(handler string, input []byte, opts SubmitOptions) (*Future, error) {
	return c.submit(context.Background(), handler, input, nil, opts, false)
}

func (c *Client) checkOpen() error {
	if c.dead.Load() {
		return ErrPoolDead
	}
	switch st := c.l.poolState().Load(); {
	case st == poolDead:
		return ErrPoolDead
	case st >= poolClosing:
		return ErrPoolClosed
	}
	c.mu.Lock()
	err := c.stopErr
	c.mu.Unlock()
	if err != nil {
		return err
	}
	// The start-up state turns clear on the supervisor's first tick after
	// a worker is ready; a submit in between is not refused.
	if reason := c.l.startFailure(); reason != "" && !c.l.anyWorkerReady() {
		return fmt.Errorf("%w: %s", ErrWorkerStart, reason)
	}
	return nil
}

func (c *Client) submit(ctx context.Context, handler string, input []byte, buf *Buffer, opts SubmitOptions, block bool) (*Future, error) {
	if !c.l.enter() {
		return nil, ErrPoolClosed
	}
	defer c.l.exit()
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	n := uint64(len(input))
	if buf != nil {
		n = uint64(buf.n)
	}
	if n > c.l.g.maxPayload {
		return nil, fmt.Errorf("%w: input of %d bytes, pool maximum %d", ErrTooLarge, n, c.l.g.maxPayload)
	}
	hid, err := c.l.intern(&c.names, handler, c.subParty.Owner())
	if err != nil {
		return nil, err
	}
	if opts.Timeout == 0 {
		opts.Timeout = c.defaults.Timeout
	}
	if opts.Retries < 0 {
		opts.Retries = c.defaults.Retries
	}

	owner := c.subParty.Owner()
	idx, cur, err := c.allocSlot(ctx, owner, block)
	if err != nil {
		return nil, err
	}
	st := c.l.slotState(idx)
	seq := wSeq(cur)
	crashpoint.Hit("job.fill")
	sl := c.l.slot(idx)
	id := c.nextID.Add(1)
	sl.Uint64(slMeta).Store(packMeta(uint16(c.index), hid, 0, 0))
	sl.Uint64(slJobID).Store(id)
	to := int64(opts.Timeout)
	if to < 0 {
		to = 0
	}
	sl.Uint64(slTimeout).Store(uint64(to))
	sl.Uint64(slDeadline).Store(0)
	sl.Uint32(slRetries).Store(uint32(opts.Retries))
	sl.Uint64(slOutRef).Store(0)
	sl.Uint64(slOutLen).Store(0)
	ref := slotRef(idx, seq)
	if err := c.writeInput(idx, ref, sl, input, buf, block); err != nil {
		c.l.releaseSlot(idx, cur, false)
		return nil, err
	}
	f := &Future{c: c, ref: ref, id: id, done: make(chan struct{}), alloc: opts.Output, onDone: opts.OnDone, inPlace: opts.InPlace}
	c.mu.Lock()
	c.futures[ref] = f
	c.mu.Unlock()
	// Queued under our name until the enqueue is done: if we die in
	// between, recovery asks our ring record whether the job got in.
	queued := stateWord(slotQueued, owner, seq, 0)
	c.subMu.Lock()
	st.Store(queued)
	crashpoint.Hit("job.queued")
	// The inqueue has room for every slot twice over: waiting here is
	// brief, while workers step over cells of crashed parties.
	err = c.l.inq.Enqueue(c.subParty, ref, 10*time.Second)
	if err == nil {
		st.CompareAndSwap(queued, stateWord(slotQueued, 0, seq, 0)) // fails if a worker leased it already
	}
	c.subMu.Unlock()
	if err != nil {
		c.mu.Lock()
		delete(c.futures, ref)
		c.mu.Unlock()
		c.l.releaseSlot(idx, queued, false)
		return nil, fmt.Errorf("executor: queue job: %w (%s)", err, c.l.inq.Debug())
	}
	c.l.client(c.index).Uint64(crSubmitted).Add(1)
	return f, nil
}

// allocSlot claims a free job slot, waiting for one if block is set.
func (c *Client) allocSlot(ctx context.Context, owner uint32, block bool) (int, uint64, error) {
	for {
		if idx, cur, ok := c.l.allocSlot(owner, &c.slotHint); ok {
			return idx, cur, nil
		}
		if !block {
			return 0, 0, ErrFull
		}
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		if err := c.checkOpen(); err != nil {
			return 0, 0, err
		}
		var idx int
		var cur uint64
		if c.l.slotFreed().wait(50*time.Millisecond, func() (ok bool) {
			idx, cur, ok = c.l.allocSlot(owner, &c.slotHint)
			return ok
		}) {
			return idx, cur, nil
		}
	}
}

// writeInput puts the job's input in its slot, or in arena pages, which
// it waits for only if block is set (else ErrFull).
func (c *Client) writeInput(idx int, ref uint32, sl shm.View, input []byte, buf *Buffer, block bool) error {
	if buf != nil {
		if err := c.l.setOwner(buf.first, buf.npages, buf.owner, pageOwner(pageInput, ref)); err != nil {
			return fmt.Errorf("executor: submit buffer: %w", err)
		}
		buf.used = true
		sl.Uint64(slInRef).Store(refArena | uint64(buf.first))
		sl.Uint64(slInLen).Store(uint64(buf.n))
		return nil
	}
	if len(input) <= c.l.g.inline {
		b, _ := sl.Bytes(slotHeader, uint64(len(input)))
		copy(b, input)
		sl.Uint64(slInRef).Store(0)
		sl.Uint64(slInLen).Store(uint64(len(input)))
		return nil
	}
	alloc := c.l.allocPagesNow
	if block {
		alloc = c.l.allocPagesWait
	}
	first, err := alloc(pagesFor(uint64(len(input))), pageOwner(pageInput, ref))
	if err != nil {
		return err
	}
	memx.Copy(c.l.arenaBytes(first, uint64(len(input))), input)
	sl.Uint64(slInRef).Store(refArena | uint64(first))
	sl.Uint64(slInLen).Store(uint64(len(input)))
	return nil
}

// Cancel asks for the job to end with ErrCancelled. A queued job never
// runs. A running job is killed (its worker is SIGKILLed and replaced)
// only if kill is true. It reports whether the cancel took effect; a job
// that already ended keeps its result.
func (f *Future) Cancel(kill bool) bool {
	c, l := f.c, f.c.l
	if !l.enter() {
		return false
	}
	defer l.exit()
	idx, seq := refIdx(f.ref), refSeq(f.ref)
	st := l.slotState(idx)
	for {
		cur := st.Load()
		if wSeq(cur) != seq {
			return false
		}
		switch wState(cur) {
		case slotQueued:
			// Take the job back: its inqueue entry becomes stale.
			owner := c.colParty.Owner()
			c.subMu.Lock()
			if !st.CompareAndSwap(cur, stateWord(slotDone, owner, seq, wFlags(cur))) {
				c.subMu.Unlock()
				continue
			}
			sl := l.slot(idx)
			m := unpackMeta(sl.Uint64(slMeta).Load())
			sl.Uint64(slOutRef).Store(0)
			sl.Uint64(slOutLen).Store(0)
			sl.Uint64(slMeta).Store(packMeta(m.client, m.handler, m.attempts, codeCancelled))
			l.counter(ctrFailed + codeCancelled).Add(1)
			l.outq[c.index].Enqueue(c.subParty, f.ref, -1)
			c.subMu.Unlock()
			return true
		case slotRunning:
			if !kill {
				return false
			}
			if wFlags(cur)&flagCancelReq != 0 || st.CompareAndSwap(cur, cur|uint64(flagCancelReq)<<56) {
				return true
			}
		default:
			return false
		}
	}
}

// collect is the client's background outqueue consumer: it waits until
// results arrive and drains them. A goroutine in Future.Wait may drain
// them itself (colMu decides who), which saves a goroutine hand-off on a
// round trip of a tiny job.
//
// It sleeps on the futex at once, without the spin of WaitReady. A
// spinning collector kept its spin bit from one result to the next, so
// that callers polling for their own results polled beside it: on two
// cores the collector, a polling caller and a working worker then shared
// two CPUs.
func (c *Client) collect() {
	defer close(c.collected)
	l := c.l
	out := l.outq[c.index]
	for {
		err := out.SleepReady(c.colParty, 100*time.Millisecond)
		if errors.Is(err, ring.ErrTimeout) {
			select {
			case <-c.stopping:
				if c.pending() == 0 {
					return
				}
			default:
			}
			if c.external != nil && l.poolState().Load() >= poolClosed {
				// The supervisor closed the pool; what it could deliver,
				// it has.
				c.stop(ErrPoolClosed)
			}
			continue
		}
		if err != nil {
			c.stop(err)
			return
		}
		c.colMu.Lock()
		err = c.drain()
		c.colMu.Unlock()
		if err != nil {
			c.stop(err)
			return
		}
	}
}

// drain takes every result that is ready. colMu is held.
func (c *Client) drain() error {
	l := c.l
	out := l.outq[c.index]
	owner := c.colParty.Owner()
	var buf [ring.MaxBatch]uint32
	for {
		n, err := out.TryDequeueBatch(c.colParty, buf[:])
		if err == ring.ErrEmpty { // never wrapped: the ring's own loops compare it so
			return nil
		}
		if err != nil {
			return err
		}
		// Take every slot first: once the next ring operation starts,
		// the ring no longer remembers what this batch held.
		taken := c.taken[:0]
		for _, v := range buf[:n] {
			idx, seq := refIdx(v), refSeq(v)
			if idx >= l.g.slots {
				continue
			}
			st := l.slotState(idx)
			for {
				cur := st.Load()
				if wState(cur) != slotDone || wSeq(cur) != seq {
					break // a stale duplicate (the supervisor re-published it)
				}
				if st.CompareAndSwap(cur, stateWord(slotCollecting, owner, seq, 0)) {
					taken = append(taken, idx)
					break
				}
			}
		}
		c.colParty.Release()
		for _, idx := range taken {
			crashpoint.Hit("job.collect")
			c.finish(idx)
		}
		c.taken = taken
	}
}

// finish reads a collected slot's result, frees the slot and completes
// its future.
func (c *Client) finish(idx int) {
	l := c.l
	st := l.slotState(idx)
	seq := wSeq(st.Load())
	sl := l.slot(idx)
	m := unpackMeta(sl.Uint64(slMeta).Load())
	ref := slotRef(idx, seq)
	c.mu.Lock()
	f := c.futures[ref]
	delete(c.futures, ref)
	c.mu.Unlock()
	var out []byte
	var err error
	outRef := sl.Uint64(slOutRef).Load()
	data, perr := l.payload(idx, outRef, sl.Uint64(slOutLen).Load(), true)
	switch {
	case perr != nil:
		err = &HandlerError{Type: "CorruptOutput", Message: perr.Error()}
	case m.code == codeOK && c.keepInPlace(f, ref, outRef, len(data)):
		out = data
	case m.code == codeOK && len(data) > 0 && f != nil && f.alloc != nil:
		out = f.alloc(len(data))
		memx.Copy(out, data)
	case m.code == codeOK:
		out = memx.Clone(data)
	case m.code == codeHandlerError:
		err = decodeHandlerError(data)
	case m.code == codeWorkerCrashed:
		ce := &CrashError{
			PID:      int(sl.Uint32(slCrashPID).Load()),
			Signal:   syscall.Signal(int32(sl.Uint32(slCrashSig).Load())),
			ExitCode: int(int32(sl.Uint32(slCrashEx).Load())),
			Attempts: int(m.attempts),
		}
		err = ce
	default:
		err = codeError(m.code, string(data))
	}
	l.releaseSlot(idx, st.Load(), false)
	l.client(c.index).Uint64(crCollected).Add(1)
	if f != nil {
		f.complete(out, err)
	}
}

func (c *Client) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.futures)
}

// stop fails every pending future with err and refuses new submits.
func (c *Client) stop(err error) {
	c.mu.Lock()
	if c.stopErr == nil {
		c.stopErr = err
	}
	fs := c.futures
	c.futures = map[uint32]*Future{}
	c.mu.Unlock()
	for _, f := range fs {
		f.complete(nil, err)
	}
}

// shutdown stops the collector once no future is pending (or at once with
// force) and waits for it.
func (c *Client) shutdown(force error) {
	c.stopOnce.Do(func() { close(c.stopping) })
	if force != nil {
		c.stop(force)
		c.l.outq[c.index].Interrupt(force)
	}
	<-c.collected
}

// Unobserved returns how many jobs failed without anyone reading their
// error: futures that were garbage collected after a failure that no Wait
// or Result returned. (Like asyncio's "exception was never retrieved".)
func (c *Client) Unobserved() int64 { return c.unobserved.Load() }
