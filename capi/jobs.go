package main

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"
import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/shmexec/shmexec/executor"
	"github.com/shmexec/shmexec/internal/sysx"
)

// pool is a handle: a pool this process owns (p set), or one it attached
// to through shmexec serve (p nil). c submits either way.
//
// Its books: jobs holds one entry for each job the handle submitted and
// has not yet handed over — fetched by shmx_wait, or dropped (forgotten
// and ended, or the handle closed). Everything the handle knows of a job
// is in its entry, so it leaves the books whole.
//
// For shmx_wait_any: once it has been called (anyOn), a job that ends
// and is neither waited for, nor its submitter's own, nor forgotten is
// queued in ready (by the executor's OnDone hook: no goroutine per job)
// and sig is poked. ready may hold stale numbers (jobs fetched since);
// wait_any skips what is no longer in jobs.
//
// For shmx_wait_group: a job submitted with a group (opts.group) is
// never reported to wait_any; when it ends, unless waited for or
// forgotten, it is queued in its group's ready list, and the threads in
// shmx_wait_group for that group are signalled. groups holds a group
// while it has jobs in the books or threads waiting on it.
type pool struct {
	p       *executor.Pool
	c       *executor.Client
	mu      sync.Mutex // guards jobs, anyOn and ready
	jobs    map[uint64]*job
	buffers handles[*executor.Buffer]

	anyOn  bool
	ready  []uint64
	groups map[uint32]*group
	quit   chan struct{}
	onDone func(*executor.Future)
	// sig is an event count for the threads in shmx_wait_any, which are C
	// threads: they sleep on it in the kernel rather than park (a parked
	// locked goroutine hands its thread's P over and back). poke bumps it
	// and wakes one of them if sleepers says any sleeps.
	sig      atomic.Uint32
	sleepers atomic.Int32

	// inPlace is shmx_results_in_place's minimum (0: results are copied).
	inPlace atomic.Int64

	// passFiles are the duplicates of shmx_pool_config.pass_fds that the
	// pool gives its workers; closed with the handle.
	passFiles []*os.File
}

// job is a pool handle's entry for one job it submitted.
type job struct {
	f       *executor.Future
	waiters int    // threads in shmx_wait or shmx_call for it: wait_any leaves it to them
	own     bool   // submitted with SHMX_SUBMIT_OWN_WAIT: wait_any never reports it
	forgot  bool   // given up with shmx_forget: dropped as it ends, never fetched
	group   uint32 // its group (opts.group), or 0: shmx_wait_group reports it, wait_any never
}

// reported says whether shmx_wait_any may report j as ended.
func (j *job) reported() bool { return j.waiters == 0 && !j.own && !j.forgot && j.group == 0 }

// groupReported says whether shmx_wait_group may report j as ended.
func (j *job) groupReported() bool { return j.waiters == 0 && !j.forgot && j.group != 0 }

// group is one job group's books for shmx_wait_group: its finished jobs
// not yet reported (ready, which may hold stale numbers as wait_any's
// does), how many of its jobs are in the pool's books, and an event count
// for the threads waiting on it, as the pool's sig is for wait_any.
type group struct {
	ready    []uint64
	jobs     int
	waiting  int // threads in shmx_wait_group for it (p.mu)
	sig      atomic.Uint32
	sleepers atomic.Int32
}

// signal bumps g.sig and wakes up to n of the threads asleep on it.
func (g *group) signal(n int) {
	g.sig.Add(1) // pairs with shmx_wait_group's load of sig, after its sleepers.Add
	if g.sleepers.Load() > 0 {
		sysx.FutexWake(&g.sig, n)
	}
}

// groupOf returns group id's books, made if there are none. p.mu held.
func (p *pool) groupOf(id uint32) *group {
	g := p.groups[id]
	if g == nil {
		if p.groups == nil {
			p.groups = map[uint32]*group{}
		}
		g = &group{}
		p.groups[id] = g
	}
	return g
}

// tidyGroup forgets group id's books once nothing refers to them: no job
// of it in the books, no thread waiting on it. p.mu held.
func (p *pool) tidyGroup(id uint32) {
	if g := p.groups[id]; g != nil && g.jobs == 0 && g.waiting == 0 {
		delete(p.groups, id)
	}
}

// remove takes job id (j) out of the books. p.mu held.
func (p *pool) remove(id uint64, j *job) {
	delete(p.jobs, id)
	if j.group != 0 {
		if g := p.groups[j.group]; g != nil {
			g.jobs--
		}
		p.tidyGroup(j.group)
	}
}

// heldResults maps the data pointer of each result left in the segment
// (shmx_results_in_place) to its job, for shmx_result_release, which gets
// no pool handle it can count on.
var heldResults sync.Map // unsafe.Pointer -> *executor.Future

func newPool(p *executor.Pool, c *executor.Client) *pool {
	np := &pool{p: p, c: c, jobs: map[uint64]*job{}, quit: make(chan struct{})}
	np.onDone = func(f *executor.Future) {
		np.mu.Lock()
		if j, ok := np.jobs[f.ID()]; ok && j.forgot {
			np.drop(f.ID())
		} else {
			np.announce(f.ID())
		}
		np.mu.Unlock()
	}
	return np
}

// add enters a submitted job in the books and returns its entry. flags:
// the submit's SHMX_SUBMIT_ bits, its group in the top 32 (shim.c). p.mu
// held.
func (p *pool) add(f *executor.Future, flags C.uint64_t) *job {
	j := &job{f: f, own: flags&C.SHMX_SUBMIT_OWN_WAIT != 0, group: uint32(flags >> 32)}
	p.jobs[f.ID()] = j
	if j.group != 0 {
		p.groupOf(j.group).jobs++
	}
	return j
}

// drop removes job id, which has ended, from the books and frees its
// output: nobody will fetch it. p.mu held.
func (p *pool) drop(id uint64) {
	if j, ok := p.jobs[id]; ok {
		p.remove(id, j)
		discard(j.f)
	}
}

// discard frees the output of an ended job that nobody fetched: in place
// in the segment, or in C memory.
func discard(f *executor.Future) {
	if f.InPlace() {
		f.Release()
	} else if out, err, ok := f.Result(); ok && err == nil && len(out) > 0 {
		C.shmxint_output_free(unsafe.Pointer(&out[0]), C.size_t(len(out)))
	}
}

// announce queues a finished job for shmx_wait_any, unless wait_any is
// not in use, a thread in shmx_wait takes it, its submitter fetches it
// (SHMX_SUBMIT_OWN_WAIT) or it was fetched already (a job submitted but
// not yet tracked is announced by track). p.mu held.
func (p *pool) announce(id uint64) {
	j, ok := p.jobs[id]
	if ok && j.groupReported() {
		p.announceToGroup(id, j.group)
		return
	}
	if !ok || !p.anyOn || !j.reported() {
		return
	}
	if len(p.ready) >= 2*len(p.jobs)+64 {
		// Entries of jobs fetched by shmx_wait since are stale: drop them,
		// so that a caller who no longer calls wait_any leaks nothing.
		live := p.ready[:0]
		for _, r := range p.ready {
			if _, pending := p.jobs[r]; pending {
				live = append(live, r)
			}
		}
		p.ready = live
	}
	p.ready = append(p.ready, id)
	p.poke()
}

// announceToGroup queues finished job id for shmx_wait_group on its
// group. p.mu held.
func (p *pool) announceToGroup(id uint64, gid uint32) {
	g := p.groupOf(gid)
	if len(g.ready) >= 2*g.jobs+64 {
		live := g.ready[:0] // drop the stale entries, as announce does
		for _, r := range g.ready {
			if _, pending := p.jobs[r]; pending {
				live = append(live, r)
			}
		}
		g.ready = live
	}
	g.ready = append(g.ready, id)
	g.signal(1)
}

// announceIfDone announces job id if it has ended. p.mu held.
func (p *pool) announceIfDone(id uint64, f *executor.Future) {
	select {
	case <-f.Done():
		p.announce(id)
	default:
	}
}

// track remembers a submitted job's future under its number for
// shmx_wait, or reports the submit's error. flags: the submit's
// SHMX_SUBMIT_ bits.
func (p *pool) track(f *executor.Future, err error, flags C.uint64_t, job *C.shmx_job) C.int {
	if err != nil {
		setErr(err)
		return code(err)
	}
	p.mu.Lock()
	p.add(f, flags)
	// It may have ended before it was tracked, when OnDone could not
	// find it.
	p.announceIfDone(f.ID(), f)
	p.mu.Unlock()
	*job = C.shmx_job(f.ID())
	return C.SHMX_OK
}

// cOutput allocates a job's output in C memory (freed by
// shmx_result_release, or when the pool handle closes with the job not
// waited for).
func cOutput(n int) []byte {
	p := C.shmxint_output_alloc(C.size_t(n))
	if p == nil {
		panic("shmexec: out of memory for a job's output")
	}
	return unsafe.Slice((*byte)(p), n)
}

// freeUnwaited frees the C outputs of jobs that finished and were never
// waited for. p is no longer reachable from C.
func (p *pool) freeUnwaited() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id := range p.jobs {
		p.drop(id)
	}
}

// submitOpts are the options of a job this handle submits: its time
// limit (0: the pool's) and retries (-1: the pool's), its output copied
// into C memory, and OnDone for shmx_wait_any.
func (p *pool) submitOpts(timeoutNS C.int64_t, retries C.int32_t) executor.SubmitOptions {
	return executor.SubmitOptions{Timeout: time.Duration(timeoutNS), Retries: int(retries), Output: cOutput, OnDone: p.onDone,
		InPlace: int(p.inPlace.Load())}
}

// poke wakes one thread in shmx_wait_any (one that has not yet gone to
// sleep sees the change to p.sig and does not).
func (p *pool) poke() { p.signal(1) }

// signal bumps p.sig and wakes up to n of the threads asleep on it.
func (p *pool) signal(n int) {
	p.sig.Add(1) // pairs with shmx_wait_any's load of sig, after its sleepers.Add
	if p.sleepers.Load() > 0 {
		sysx.FutexWake(&p.sig, n)
	}
}

// awaitSignal sleeps until p.sig moves on from seq (read before the
// caller last looked at what it waits for), for at most d (< 0: no
// limit), or returns early (a signal); the caller looks again either way.
func (p *pool) awaitSignal(seq uint32, d time.Duration) { awaitEvent(&p.sig, seq, d) }

// awaitEvent sleeps until the event count sig moves on from seq, as
// awaitSignal for p.sig.
func awaitEvent(sig *atomic.Uint32, seq uint32, d time.Duration) {
	switch err := sysx.FutexWait(sig, seq, d); {
	case err == nil, errors.Is(err, sysx.ErrInterrupted), errors.Is(err, sysx.ErrTimeout):
	default: // no futex here: look again soon
		if d < 0 || d > time.Millisecond {
			d = time.Millisecond
		}
		time.Sleep(d)
	}
}
