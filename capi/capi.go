// Command capi is libshmexec.so: the C ABI of shmexec, built with
// -buildmode=c-shared. include/shmexec.h is its contract.
//
// The public shmx_* functions are C (shim.c): they check the fork guard
// before the Go runtime is entered and call the shmxgo_* functions here.
// No Go pointer crosses into C: pools, jobs and outputs are numbers that
// index tables on the Go side.
package main

/*
#cgo CFLAGS: -I${SRCDIR}/../include -Wall
#include <stdlib.h>
#include <string.h>
#include "shim.h"

extern char **environ;
static inline char **shmxint_environ(void) { return environ; }
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/shmexec/shmexec/executor"
	"github.com/shmexec/shmexec/server"
)

func main() {}

// minProcs is the fewest Ps the library's runtime runs with. Here most
// Ps are not running Go code: a thread that called in from C or Python
// keeps its P while it is back in C (the runtime counts it as a system
// call), and so does a goroutine asleep on a futex. With GOMAXPROCS at
// the core count (2 on a small machine) no P is then idle, so the
// runtime's monitor thread takes Ps back every 20 us and keeps waking at
// that rate, preempting spinning callers and workers. With 8 Ps a Python
// apply loop made half the context switches (9,300 against 17,300 per
// 12,000 calls on the 2-core machine of docs/BENCHMARKS.md) and its p50
// moved from 12.3-14.0 to 11.4-12.8 us. The library's Go code is short
// and mostly waits, so more Ps than cores costs little: the kernel
// shares the cores among whatever is runnable. GOMAXPROCS, if set, wins.
const minProcs = 8

func init() {
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < minProcs {
		runtime.GOMAXPROCS(minProcs)
	}
}

// handles maps the numbers C holds to Go objects.
type handles[T any] struct {
	mu   sync.Mutex
	next uint64
	m    map[uint64]T
}

func (h *handles[T]) add(v T) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[uint64]T{}
	}
	h.next++
	h.m[h.next] = v
	return h.next
}

func (h *handles[T]) get(id uint64) (T, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.m[id]
	return v, ok
}

func (h *handles[T]) del(id uint64) {
	h.mu.Lock()
	delete(h.m, id)
	h.mu.Unlock()
}

// take removes id and returns what it named: of two threads that take
// the same id (a handle closed twice at once, one buffer submitted by
// two), one gets it.
func (h *handles[T]) take(id uint64) (T, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.m[id]
	delete(h.m, id)
	return v, ok
}

// pool is a handle: a pool this process owns (p set), or one it attached
// to through shmexec serve (p nil). c submits either way.
type pool struct {
	p       *executor.Pool
	c       *executor.Client
	mu      sync.Mutex
	jobs    map[uint64]*executor.Future
	buffers handles[*executor.Buffer]

	// For shmx_wait_any: once it has been called, a job that ends with
	// no thread in shmx_wait for it is queued in ready (by the executor's
	// OnDone hook, no goroutine per job) and sig is poked; waiting
	// counts the threads in shmx_wait on each job (wait_any leaves those
	// jobs to them, and is not woken for them). own holds the jobs
	// submitted with SHMX_SUBMIT_OWN_WAIT, which wait_any never reports;
	// forgot those given up with shmx_forget, dropped as they end. A job
	// leaves both when it leaves jobs.
	anyOn   bool
	ready   []uint64
	sig     chan struct{}
	waiting map[uint64]int
	own     map[uint64]bool
	forgot  map[uint64]bool
	quit    chan struct{}
	onDone  func(*executor.Future)

	// inPlace is shmx_results_in_place's minimum (0: results are copied).
	inPlace atomic.Int64
}

// heldResults maps the data pointer of each result left in the segment
// (shmx_results_in_place) to its job, for shmx_result_release, which gets
// no pool handle it can count on.
var heldResults sync.Map // unsafe.Pointer -> *executor.Future

func newPool(p *executor.Pool, c *executor.Client) *pool {
	np := &pool{p: p, c: c, jobs: map[uint64]*executor.Future{}, sig: make(chan struct{}, 1),
		waiting: map[uint64]int{}, own: map[uint64]bool{}, forgot: map[uint64]bool{}, quit: make(chan struct{})}
	np.onDone = func(f *executor.Future) {
		np.mu.Lock()
		if np.forgot[f.ID()] {
			np.drop(f.ID(), f)
		} else {
			np.announce(f.ID())
		}
		np.mu.Unlock()
	}
	return np
}

// untrack removes job id from the handle's books (fetched, or dropped).
// p.mu held.
func (p *pool) untrack(id uint64) {
	delete(p.jobs, id)
	delete(p.own, id)
	delete(p.forgot, id)
}

// drop untracks job id, which has ended, and frees its output: nobody
// will fetch it. p.mu held.
func (p *pool) drop(id uint64, f *executor.Future) {
	p.untrack(id)
	discard(f)
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
	if !p.anyOn || p.waiting[id] > 0 || p.own[id] {
		return
	}
	if _, pending := p.jobs[id]; !pending {
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

// announceIfDone announces job id if it has ended. p.mu held.
func (p *pool) announceIfDone(id uint64, f *executor.Future) {
	select {
	case <-f.Done():
		p.announce(id)
	default:
	}
}

var pools handles[*pool]

func setErr(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	cs := C.CString(msg)
	C.shmxint_set_last_error(cs)
	C.free(unsafe.Pointer(cs))
}

// code maps an error to its SHMX_ code.
func code(err error) C.int {
	var ce *executor.CrashError
	switch {
	case err == nil:
		return C.SHMX_OK
	case errors.As(err, &ce):
		return C.SHMX_EWORKER_CRASHED
	case errors.Is(err, executor.ErrHandler):
		return C.SHMX_EHANDLER
	case errors.Is(err, executor.ErrTimeout):
		return C.SHMX_ETIMEDOUT
	case errors.Is(err, executor.ErrCancelled):
		return C.SHMX_ECANCELLED
	case errors.Is(err, executor.ErrUnknownHandler):
		return C.SHMX_EUNKNOWN_HANDLER
	case errors.Is(err, executor.ErrTooLarge):
		return C.SHMX_ETOO_LARGE
	case errors.Is(err, executor.ErrPoolDead):
		return C.SHMX_EPOOL_DEAD
	case errors.Is(err, executor.ErrPoolClosed):
		return C.SHMX_ECLOSED
	case errors.Is(err, executor.ErrFull):
		return C.SHMX_EFULL
	case errors.Is(err, executor.ErrWorkerStart):
		return C.SHMX_EWORKER_START
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return C.SHMX_ESYS
	}
	return C.SHMX_EINVAL
}

func lookup(cp *C.shmx_pool) (*pool, bool) { return pools.get(uint64(cp.id)) }

// track remembers a submitted job's future under its number for
// shmx_wait, or reports the submit's error. flags: the submit's
// SHMX_SUBMIT_ bits.
func (p *pool) track(f *executor.Future, err error, flags C.uint32_t, job *C.shmx_job) C.int {
	if err != nil {
		setErr(err)
		return code(err)
	}
	p.mu.Lock()
	p.jobs[f.ID()] = f
	if flags&C.SHMX_SUBMIT_OWN_WAIT != 0 {
		p.own[f.ID()] = true
	}
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
	for id, f := range p.jobs {
		p.drop(id, f)
	}
}

// submitOpts are the options of a job this handle submits: its time
// limit (0: the pool's) and retries (-1: the pool's), its output copied
// into C memory, and OnDone for shmx_wait_any.
func (p *pool) submitOpts(timeoutNS C.int64_t, retries C.int32_t) executor.SubmitOptions {
	return executor.SubmitOptions{Timeout: time.Duration(timeoutNS), Retries: int(retries), Output: cOutput, OnDone: p.onDone,
		InPlace: int(p.inPlace.Load())}
}

//export shmxgo_results_in_place
func shmxgo_results_in_place(cp *C.shmx_pool, minLen C.size_t) C.int {
	p, ok := lookup(cp)
	if !ok {
		return C.SHMX_EINVAL
	}
	if p.p == nil {
		setErr(errors.New("results stay copied for a handle attached to a served pool: the server may reuse their space once it detaches"))
		return C.SHMX_EINVAL
	}
	switch {
	case minLen == 0:
	case minLen < C.SHMXINT_HUGE_OUTPUT:
		minLen = C.SHMXINT_HUGE_OUTPUT
	case uint64(minLen) > 1<<62:
		minLen = 1 << 62
	}
	p.inPlace.Store(int64(minLen))
	return C.SHMX_OK
}

//export shmxgo_release_in_place
func shmxgo_release_in_place(data unsafe.Pointer) C.int {
	f, ok := heldResults.LoadAndDelete(data)
	if !ok {
		return 0
	}
	f.(*executor.Future).Release()
	return 1
}

// input is a view of the caller's bytes; submit copies them into the
// segment before it returns.
func input(data unsafe.Pointer, n C.size_t) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(data), int(n))
}

// cEnviron is the process's environment as C sees it now: workers inherit
// what the program set with setenv (or Python's os.environ) after the
// library was loaded, as they would from posix_spawn(..., environ).
// os.Environ is Go's copy, taken when the runtime started.
func cEnviron() []string {
	var env []string
	for p := C.shmxint_environ(); p != nil && *p != nil; p = (**C.char)(unsafe.Add(unsafe.Pointer(p), unsafe.Sizeof(p))) {
		env = append(env, C.GoString(*p))
	}
	return env
}

//export shmxgo_pool_create
func shmxgo_pool_create(cfg *C.shmx_pool_config, out **C.shmx_pool) C.int {
	gc := executor.Config{
		Workers:           int(cfg.workers),
		QueueDepth:        int(cfg.queue_depth),
		MaxPayload:        int64(cfg.max_payload),
		MaxTasksPerWorker: int(cfg.max_tasks_per_worker),
		Retries:           int(cfg.retries),
		JobTimeout:        time.Duration(cfg.job_timeout_ns),
		Environ:           cEnviron,
	}
	if cfg.max_payload > 1<<40 || cfg.job_timeout_ns < 0 {
		setErr(errors.New("max_payload over 1 TiB or negative job_timeout_ns"))
		return C.SHMX_EINVAL
	}
	if cfg.worker_argv != nil {
		argv := unsafe.Slice(cfg.worker_argv, 1<<16)
		for i := 0; argv[i] != nil; i++ {
			gc.WorkerArgv = append(gc.WorkerArgv, C.GoString(argv[i]))
		}
		if len(gc.WorkerArgv) == 0 {
			setErr(errors.New("worker_argv is empty"))
			return C.SHMX_EINVAL
		}
	}
	p, err := executor.New(gc)
	if err != nil {
		setErr(err)
		if errors.Is(err, executor.ErrNestedPool) {
			return C.SHMX_EINVAL
		}
		if errors.Is(err, executor.ErrWorkerStart) {
			return C.SHMX_EWORKER_START
		}
		return code(err)
	}
	cp := (*C.shmx_pool)(C.malloc(C.size_t(unsafe.Sizeof(C.shmx_pool{}))))
	if cp == nil {
		p.Terminate()
		return C.SHMX_ENOMEM
	}
	cp.id = C.uint64_t(pools.add(newPool(p, p.Client())))
	*out = cp
	setErr(nil)
	return C.SHMX_OK
}

//export shmxgo_pool_attach
func shmxgo_pool_attach(socket *C.char, out **C.shmx_pool) C.int {
	c, err := server.Attach(C.GoString(socket))
	if err != nil {
		setErr(err)
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EACCES) {
			return C.SHMX_ESYS
		}
		return C.SHMX_EINVAL
	}
	cp := (*C.shmx_pool)(C.malloc(C.size_t(unsafe.Sizeof(C.shmx_pool{}))))
	if cp == nil {
		c.Close()
		return C.SHMX_ENOMEM
	}
	cp.id = C.uint64_t(pools.add(newPool(nil, c)))
	*out = cp
	setErr(nil)
	return C.SHMX_OK
}

//export shmxgo_pool_close
func shmxgo_pool_close(cp *C.shmx_pool, timeoutNS C.int64_t, terminate C.int) C.int {
	p, ok := pools.take(uint64(cp.id))
	if !ok {
		return C.SHMX_EINVAL
	}
	close(p.quit)
	defer p.freeUnwaited()
	var err error
	if p.p == nil {
		// Attached: detach (the server's pool goes on).
		err = p.c.Close()
		setErr(err)
		if err != nil {
			return C.SHMX_ESYS
		}
		return C.SHMX_OK
	}
	if terminate != 0 {
		err = p.p.Terminate()
	} else {
		d := executor.DefaultCloseTimeout
		if timeoutNS >= 0 {
			d = time.Duration(timeoutNS)
		}
		err = p.p.CloseTimeout(d)
	}
	setErr(err)
	if err != nil {
		return C.SHMX_ETIMEDOUT
	}
	return C.SHMX_OK
}

//export shmxgo_submit
func shmxgo_submit(cp *C.shmx_pool, handler *C.char, data unsafe.Pointer, n C.size_t, job *C.shmx_job, block C.int) C.int {
	p, ok := lookup(cp)
	if !ok {
		return C.SHMX_EINVAL
	}
	opts := p.submitOpts(0, -1)
	if block == 0 {
		f, err := p.c.TrySubmitWith(C.GoString(handler), input(data, n), opts)
		return p.track(f, err, 0, job)
	}
	if p.p != nil {
		f, err := p.p.SubmitWith(context.Background(), C.GoString(handler), input(data, n), opts)
		return p.track(f, err, 0, job)
	}
	f, err := p.c.SubmitWith(context.Background(), C.GoString(handler), input(data, n), opts)
	return p.track(f, err, 0, job)
}

//export shmxgo_submit_with
func shmxgo_submit_with(cp *C.shmx_pool, handler *C.char, data unsafe.Pointer, n C.size_t, timeoutNS C.int64_t, retries C.int32_t,
	flags C.uint32_t, job *C.shmx_job) C.int {
	p, ok := lookup(cp)
	if !ok || retries < -1 {
		return C.SHMX_EINVAL
	}
	f, err := p.c.SubmitWith(context.Background(), C.GoString(handler), input(data, n),
		p.submitOpts(timeoutNS, retries))
	return p.track(f, err, flags, job)
}

//export shmxgo_wait
func shmxgo_wait(cp *C.shmx_pool, job C.shmx_job, timeoutNS C.int64_t, res *C.shmx_result) C.int {
	p, ok := lookup(cp)
	if !ok {
		return C.SHMX_EINVAL
	}
	p.mu.Lock()
	f, ok := p.jobs[uint64(job)]
	if !ok || p.forgot[uint64(job)] {
		p.mu.Unlock()
		setErr(fmt.Errorf("no pending job %d", uint64(job)))
		return C.SHMX_EINVAL
	}
	p.waiting[uint64(job)]++
	p.mu.Unlock()
	return p.await(uint64(job), f, timeoutNS, res)
}

//export shmxgo_call
func shmxgo_call(cp *C.shmx_pool, handler *C.char, data unsafe.Pointer, n C.size_t, timeoutNS C.int64_t, retries C.int32_t,
	flags C.uint32_t, waitNS C.int64_t, job *C.shmx_job, res *C.shmx_result) C.int {
	p, ok := lookup(cp)
	if !ok || retries < -1 {
		return C.SHMX_EINVAL
	}
	f, err := p.c.SubmitWith(context.Background(), C.GoString(handler), input(data, n),
		p.submitOpts(timeoutNS, retries))
	if err != nil {
		setErr(err)
		return code(err)
	}
	id := f.ID()
	// Tracked as waited for from the start: shmx_wait_any never hears of
	// it unless this wait runs out (and then not if it is the caller's own).
	p.mu.Lock()
	p.jobs[id] = f
	if flags&C.SHMX_SUBMIT_OWN_WAIT != 0 {
		p.own[id] = true
	}
	p.waiting[id]++
	p.mu.Unlock()
	*job = C.shmx_job(id)
	return p.await(id, f, waitNS, res)
}

// await waits for job (f) for at most timeoutNS (< 0: no limit) on behalf
// of a caller counted in p.waiting, and fills res with its outcome: the
// body of shmx_wait.
func (p *pool) await(job uint64, f *executor.Future, timeoutNS C.int64_t, res *C.shmx_result) C.int {
	out, err := f.WaitTimeout(time.Duration(timeoutNS))
	p.mu.Lock()
	if p.waiting[job]--; p.waiting[job] <= 0 {
		delete(p.waiting, job)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// It may have finished just now, and OnDone passed it over while
		// this thread waited: announce it now.
		p.announceIfDone(job, f)
		p.mu.Unlock()
		return C.SHMX_ETIMEDOUT
	}
	if _, still := p.jobs[job]; !still || p.forgot[job] {
		// Another thread waiting for the same job took the result (one
		// copy in C memory, with one owner), or forgot the job.
		p.mu.Unlock()
		setErr(fmt.Errorf("job %d was waited for or forgotten by another thread", job))
		return C.SHMX_EINVAL
	}
	p.untrack(job)
	p.mu.Unlock()
	*res = C.shmx_result{status: code(err)}
	if err == nil {
		if len(out) > 0 {
			// C memory from cOutput: the result was copied once, out of
			// the segment; or, left in place, the segment itself.
			res.data = unsafe.Pointer(&out[0])
			res.len = C.size_t(len(out))
			if f.InPlace() {
				heldResults.Store(res.data, f)
			}
		}
		return C.SHMX_OK
	}
	var he *executor.HandlerError
	var ce *executor.CrashError
	detail := err.Error()
	switch {
	case errors.As(err, &he):
		detail = he.Type + ": " + he.Message
		if he.Traceback != "" {
			detail += "\n" + he.Traceback
		}
	case errors.As(err, &ce):
		res.worker_pid, res.signal, res.exit_code = C.int32_t(ce.PID), C.int32_t(ce.Signal), C.int32_t(ce.ExitCode)
	}
	res.error = C.CString(detail)
	return C.SHMX_OK
}

//export shmxgo_wait_any
func shmxgo_wait_any(cp *C.shmx_pool, timeoutNS C.int64_t, job *C.shmx_job) C.int {
	p, ok := lookup(cp)
	if !ok {
		return C.SHMX_EINVAL
	}
	p.mu.Lock()
	if !p.anyOn {
		p.anyOn = true
		for id, f := range p.jobs {
			p.announceIfDone(id, f)
		}
	}
	p.mu.Unlock()
	var timeout <-chan time.Time
	if timeoutNS >= 0 {
		t := time.NewTimer(time.Duration(timeoutNS))
		defer t.Stop()
		timeout = t.C
	}
	for {
		p.mu.Lock()
		for len(p.ready) > 0 {
			id := p.ready[0]
			p.ready = p.ready[1:]
			_, pending := p.jobs[id]
			if pending && p.waiting[id] == 0 {
				if len(p.ready) > 0 {
					p.poke() // more for another thread in wait_any
				}
				p.mu.Unlock()
				*job = C.shmx_job(id)
				return C.SHMX_OK
			}
			// fetched already, or a thread in shmx_wait takes it
		}
		p.ready = nil
		p.mu.Unlock()
		select {
		case <-p.sig:
		case <-timeout:
			return C.SHMX_ETIMEDOUT
		case <-p.quit:
			return C.SHMX_ECLOSED
		}
	}
}

// poke wakes one thread in shmx_wait_any.
func (p *pool) poke() {
	select {
	case p.sig <- struct{}{}:
	default:
	}
}

//export shmxgo_buffer_alloc
func shmxgo_buffer_alloc(cp *C.shmx_pool, n C.size_t, buf *C.shmx_buffer) C.int {
	p, ok := lookup(cp)
	if !ok {
		return C.SHMX_EINVAL
	}
	b, err := p.c.AllocBuffer(int(n))
	if err != nil {
		setErr(err)
		return code(err)
	}
	buf.id = C.uint64_t(p.buffers.add(b))
	buf.len = n
	if n > 0 {
		buf.data = unsafe.Pointer(&b.Bytes()[0]) // shared memory, not Go memory
	}
	return C.SHMX_OK
}

//export shmxgo_submit_buffer
func shmxgo_submit_buffer(cp *C.shmx_pool, handler *C.char, buf *C.shmx_buffer, timeoutNS C.int64_t, retries C.int32_t,
	flags C.uint32_t, job *C.shmx_job) C.int {
	p, ok := lookup(cp)
	if !ok || retries < -1 {
		return C.SHMX_EINVAL
	}
	b, ok := p.buffers.take(uint64(buf.id))
	if !ok {
		return C.SHMX_EINVAL
	}
	f, err := p.c.SubmitBuffer(context.Background(), C.GoString(handler), b,
		p.submitOpts(timeoutNS, retries))
	if err != nil {
		b.Release()
	}
	return p.track(f, err, flags, job)
}

//export shmxgo_buffer_release
func shmxgo_buffer_release(cp *C.shmx_pool, buf *C.shmx_buffer) {
	p, ok := lookup(cp)
	if !ok {
		return
	}
	if b, ok := p.buffers.take(uint64(buf.id)); ok {
		b.Release()
	}
}

//export shmxgo_cancel
func shmxgo_cancel(cp *C.shmx_pool, job C.shmx_job, kill C.int) C.int {
	p, ok := lookup(cp)
	if !ok {
		return C.SHMX_EINVAL
	}
	p.mu.Lock()
	f, ok := p.jobs[uint64(job)]
	p.mu.Unlock()
	if !ok || !f.Cancel(kill != 0) {
		return C.SHMX_EINVAL
	}
	return C.SHMX_OK
}

//export shmxgo_forget
func shmxgo_forget(cp *C.shmx_pool, job C.shmx_job) C.int {
	p, ok := lookup(cp)
	if !ok {
		return C.SHMX_EINVAL
	}
	id := uint64(job)
	p.mu.Lock()
	defer p.mu.Unlock()
	f, ok := p.jobs[id]
	if !ok || p.forgot[id] {
		setErr(fmt.Errorf("no pending job %d", id))
		return C.SHMX_EINVAL
	}
	select {
	case <-f.Done():
		p.drop(id, f)
	default:
		// OnDone drops it. A thread in shmx_wait for it finds it gone.
		p.forgot[id] = true
	}
	return C.SHMX_OK
}

//export shmxgo_is_worker
func shmxgo_is_worker() C.int {
	if executor.IsWorker() {
		return 1
	}
	return 0
}

// output is what a C handler writes through its shmx_output.
type output struct {
	ctx     context.Context
	data    []byte
	zeroBuf []byte
	errType string
	errMsg  string
	failed  bool
}

var outputs handles[*output]

func outputOf(co *C.shmx_output) (*output, bool) { return outputs.get(uint64(co.id)) }

//export shmxgo_output_set
func shmxgo_output_set(co *C.shmx_output, data unsafe.Pointer, n C.size_t) C.int {
	o, ok := outputOf(co)
	if !ok {
		return C.SHMX_EINVAL
	}
	if n > 0 {
		o.data = C.GoBytes(data, C.int(n))
	} else {
		o.data = []byte{}
	}
	o.zeroBuf = nil
	return C.SHMX_OK
}

//export shmxgo_output_alloc
func shmxgo_output_alloc(co *C.shmx_output, n C.size_t) unsafe.Pointer {
	o, ok := outputOf(co)
	if !ok {
		return nil
	}
	b, err := executor.OutputBuffer(o.ctx, int(n))
	if err != nil || len(b) == 0 {
		return nil
	}
	o.zeroBuf, o.data = b, nil
	return unsafe.Pointer(&b[0]) // shared memory, not Go memory
}

//export shmxgo_output_error
func shmxgo_output_error(co *C.shmx_output, typ, msg *C.char) C.int {
	o, ok := outputOf(co)
	if !ok {
		return C.SHMX_EINVAL
	}
	o.failed, o.errType, o.errMsg = true, C.GoString(typ), C.GoString(msg)
	return C.SHMX_OK
}

var workerStarted atomic.Bool

//export shmxgo_worker_main
func shmxgo_worker_main(hs *C.shmx_handler, n C.size_t, initFn unsafe.Pointer, initCtx unsafe.Pointer) C.int {
	if workerStarted.Swap(true) {
		fmt.Fprintln(os.Stderr, "shmx_worker_main called twice")
		return 2
	}
	cfg := executor.WorkerConfig{Handlers: map[string]executor.Handler{}}
	for _, h := range unsafe.Slice(hs, int(n)) {
		if h.name == nil || h.fn == nil {
			fmt.Fprintln(os.Stderr, "shmx_worker_main: a handler with no name or no function")
			return 2
		}
		fn, ctx := h.fn, h.ctx
		cfg.Handlers[C.GoString(h.name)] = func(gctx context.Context, in []byte) ([]byte, error) {
			return callC(gctx, fn, ctx, in)
		}
	}
	if initFn != nil {
		cfg.Init = func() error {
			if rc := C.shmxint_call_init((*[0]byte)(initFn), initCtx); rc != 0 {
				return fmt.Errorf("init returned %d", int(rc))
			}
			return nil
		}
	}
	return C.int(executor.RunWorker(cfg))
}

func callC(ctx context.Context, fn C.shmx_handler_fn, cctx unsafe.Pointer, in []byte) ([]byte, error) {
	o := &output{ctx: ctx}
	id := outputs.add(o)
	defer outputs.del(id)
	co := (*C.shmx_output)(C.malloc(C.size_t(unsafe.Sizeof(C.shmx_output{}))))
	if co == nil {
		return nil, errors.New("out of memory")
	}
	defer C.free(unsafe.Pointer(co))
	co.id = C.uint64_t(id)
	var inp unsafe.Pointer
	if len(in) > 0 {
		inp = unsafe.Pointer(&in[0]) // shared memory, not Go memory
	}
	rc := C.shmxint_call_handler(fn, cctx, inp, C.size_t(len(in)), co)
	return o.result(rc)
}

// result is what a C handler's output and return code make of the job.
func (o *output) result(rc C.int) ([]byte, error) {
	switch {
	case o.failed:
		return nil, &executor.HandlerError{Type: o.errType, Message: o.errMsg}
	case rc != 0:
		return nil, &executor.HandlerError{Type: "HandlerReturned", Message: fmt.Sprintf("handler returned %d (%s)", int(rc), C.GoString(C.shmx_strerror(rc)))}
	case o.zeroBuf != nil:
		return o.zeroBuf, nil
	}
	return o.data, nil
}

// The pull-style worker.

var theWorker *executor.Worker

type task struct {
	t    *executor.Task
	o    *output
	oid  uint64
	co   *C.shmx_output
	name *C.char
}

var tasks handles[*task]

//export shmxgo_worker_open
func shmxgo_worker_open() C.int {
	if theWorker != nil || workerStarted.Load() {
		setErr(errors.New("the worker is already open"))
		return C.SHMX_EINVAL
	}
	w, err := executor.OpenWorker()
	if err != nil {
		setErr(err)
		return C.SHMX_EINVAL
	}
	theWorker = w
	return C.SHMX_OK
}

//export shmxgo_worker_ready
func shmxgo_worker_ready(cw *C.shmx_worker) C.int {
	if theWorker == nil {
		return C.SHMX_EINVAL
	}
	theWorker.Ready()
	return C.SHMX_OK
}

//export shmxgo_worker_next
func shmxgo_worker_next(cw *C.shmx_worker, timeoutNS C.int64_t, ct *C.shmx_task) C.int {
	if theWorker == nil {
		return C.SHMX_EINVAL
	}
	t, err := theWorker.Next(time.Duration(timeoutNS))
	switch {
	case errors.Is(err, executor.ErrWorkerExit):
		return C.SHMX_ECLOSED
	case errors.Is(err, executor.ErrTimeout):
		return C.SHMX_ETIMEDOUT
	case err != nil:
		setErr(err)
		return C.SHMX_ESYS
	}
	tk := &task{t: t, o: &output{ctx: t.Context()}}
	tk.oid = outputs.add(tk.o)
	tk.co = (*C.shmx_output)(C.malloc(C.size_t(unsafe.Sizeof(C.shmx_output{}))))
	tk.name = C.CString(t.Handler)
	if tk.co == nil || tk.name == nil {
		t.Finish(nil, errors.New("out of memory in the worker"))
		return C.SHMX_ENOMEM
	}
	tk.co.id = C.uint64_t(tk.oid)
	ct.handler = tk.name
	if len(t.Input) > 0 {
		ct.in = unsafe.Pointer(&t.Input[0]) // shared memory, not Go memory
	}
	ct.in_len = C.size_t(len(t.Input))
	ct.out = tk.co
	ct.id = C.uint64_t(tasks.add(tk))
	return C.SHMX_OK
}

//export shmxgo_task_done
func shmxgo_task_done(cw *C.shmx_worker, ct *C.shmx_task, rc C.int) C.int {
	tk, ok := tasks.take(uint64(ct.id))
	if !ok {
		return C.SHMX_EINVAL
	}
	out, err := tk.o.result(rc)
	tk.t.Finish(out, err)
	tk.free()
	return C.SHMX_OK
}

//export shmxgo_task_reply
func shmxgo_task_reply(cw *C.shmx_worker, ct *C.shmx_task, data unsafe.Pointer, n C.size_t) C.int {
	tk, ok := tasks.take(uint64(ct.id))
	if !ok {
		return C.SHMX_EINVAL
	}
	// The caller's bytes, copied once, straight into the segment by
	// Finish (C memory, not Go memory: nothing to pin). They replace
	// whatever was set through the task's output.
	tk.t.Finish(unsafe.Slice((*byte)(data), int(n)), nil)
	tk.free()
	return C.SHMX_OK
}

func (tk *task) free() {
	outputs.del(tk.oid)
	C.free(unsafe.Pointer(tk.co))
	C.free(unsafe.Pointer(tk.name))
}
