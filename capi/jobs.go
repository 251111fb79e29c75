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
// queued in any (by the executor's OnDone hook: no goroutine per job).
//
// For shmx_wait_group: a job submitted with a group (opts.group) is
// never reported to wait_any; when it ends, unless waited for or
// forgotten, it is queued in its group's queue. groups holds a group
// while it has jobs in the books or threads waiting on it.
type pool struct {
	p       *executor.Pool
	c       *executor.Client
	mu      sync.Mutex // guards jobs, anyOn, the queues' ready lists and groups
	jobs    map[uint64]*job
	buffers handles[*executor.Buffer]

	anyOn  bool
	any    readyQueue
	groups map[uint32]*group
	quit   chan struct{}
	onDone func(*executor.Future)

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

// The rules of waitReady's two kinds of queue (functions whose callers
// name a job otherwise).
var (
	anyReports   = (*job).reported
	groupReports = (*job).groupReported
)

// readyQueue is a queue of finished jobs for the threads that wait for
// whichever ends first: shmx_wait_any's (pool.any) or a job group's
// (shmx_wait_group). ready (p.mu) may hold stale numbers (jobs fetched
// since): a waiter skips what is no longer in the books. sig is an event
// count for the waiting threads, which are C threads: they sleep on it in
// the kernel rather than park (a parked locked goroutine hands its
// thread's P over and back); signal bumps it and wakes them if sleepers
// says any sleeps. woken (p.mu) is a wake that shmx_wake_any asked for
// and no waiter has taken yet: the next waiter to find nothing ready
// returns SHMX_EINTR, whether it was asleep then or came later.
type readyQueue struct {
	ready    []uint64
	woken    bool
	sig      atomic.Uint32
	sleepers atomic.Int32
}

// signal bumps q.sig and wakes up to n of the threads asleep on it (one
// that has not yet gone to sleep sees the change and does not).
func (q *readyQueue) signal(n int) {
	q.sig.Add(1) // pairs with waitReady's load of sig, after its sleepers.Add
	if q.sleepers.Load() > 0 {
		sysx.FutexWake(&q.sig, n)
	}
}

// group is one job group's books for shmx_wait_group: its queue, how many
// of its jobs are in the pool's books, and how many threads wait on it.
type group struct {
	readyQueue
	jobs    int
	waiting int
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
	switch j, ok := p.jobs[id]; {
	case ok && j.groupReported():
		g := p.groupOf(j.group)
		p.enqueue(&g.readyQueue, id, g.jobs)
	case ok && p.anyOn && j.reported():
		p.enqueue(&p.any, id, len(p.jobs))
	}
}

// enqueue queues finished job id in q and wakes one of its waiters; q
// serves at most jobs jobs of the books. p.mu held.
func (p *pool) enqueue(q *readyQueue, id uint64, jobs int) {
	if len(q.ready) >= 2*jobs+64 {
		// Entries of jobs fetched by shmx_wait since are stale: drop them,
		// so that a caller who no longer waits on q leaks nothing.
		live := q.ready[:0]
		for _, r := range q.ready {
			if _, pending := p.jobs[r]; pending {
				live = append(live, r)
			}
		}
		q.ready = live
	}
	q.ready = append(q.ready, id)
	q.signal(1)
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
// shmx_wait, or reports the submit's error. flags: as add's (the
// SHMX_SUBMIT_ bits, the group in the top 32).
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

// await sleeps until q.sig moves on from seq (read before the caller last
// looked at what it waits for), for at most d (< 0: no limit), or returns
// early (a signal); the caller looks again either way.
func (q *readyQueue) await(seq uint32, d time.Duration) {
	switch err := sysx.FutexWait(&q.sig, seq, d); {
	case err == nil, errors.Is(err, sysx.ErrInterrupted), errors.Is(err, sysx.ErrTimeout):
	default: // no futex here: look again soon
		if d < 0 || d > time.Millisecond {
			d = time.Millisecond
		}
		time.Sleep(d)
	}
}

// waitReady waits for at most timeoutNS (< 0: no limit) until q has a job
// that reported says may be reported, and sets *job to it: the body of
// shmx_wait_any and shmx_wait_group. spin: first poll the outqueue for
// as long as a wait spins (Client.SpinUntil), taking the results in this
// thread. Returns SHMX_OK, SHMX_ETIMEDOUT, or SHMX_ECLOSED once the handle
// is closing.
func (p *pool) waitReady(q *readyQueue, reported func(*job) bool, spin bool, timeoutNS C.int64_t, job *C.shmx_job) C.int {
	start := time.Now()
	for {
		seq := q.sig.Load()
		if rc, done := p.next(q, reported, job); done {
			return rc
		}
		left := time.Duration(-1)
		if timeoutNS >= 0 {
			if left = time.Duration(timeoutNS) - time.Since(start); left <= 0 {
				return C.SHMX_ETIMEDOUT
			}
		}
		if spin {
			// A tiny job's result comes within microseconds, and this
			// thread then takes it itself, with no thread woken.
			spin = false
			if p.c.SpinUntil(&q.sig, seq, left) {
				continue
			}
		}
		// Counted as a sleeper before the last look at ready and quit: a
		// signal after that look then wakes this thread, or has moved sig
		// on before it sleeps.
		q.sleepers.Add(1)
		seq = q.sig.Load()
		if rc, done := p.next(q, reported, job); done {
			q.sleepers.Add(-1)
			return rc
		}
		q.await(seq, left)
		q.sleepers.Add(-1)
	}
}

// next takes the next job of q that reported says may be reported into
// *job (SHMX_OK), or says the handle is closing (SHMX_ECLOSED), or takes
// q's wake (SHMX_EINTR) when no job is ready; done is false when there is
// none of these.
func (p *pool) next(q *readyQueue, reported func(*job) bool, job *C.shmx_job) (rc C.int, done bool) {
	p.mu.Lock()
	for len(q.ready) > 0 {
		id := q.ready[0]
		q.ready = q.ready[1:]
		if j, pending := p.jobs[id]; pending && reported(j) {
			if len(q.ready) > 0 || q.woken {
				q.signal(1) // more for another waiting thread
			}
			p.mu.Unlock()
			*job = C.shmx_job(id)
			return C.SHMX_OK, true
		}
		// fetched already, or a thread in shmx_wait takes it
	}
	q.ready = nil
	if q.woken {
		q.woken = false
		p.mu.Unlock()
		return C.SHMX_EINTR, true
	}
	p.mu.Unlock()
	select {
	case <-p.quit:
		return C.SHMX_ECLOSED, true
	default:
		return 0, false
	}
}
