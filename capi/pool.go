package main

/*
#include <stdlib.h>
#include "shim.h"

extern char **environ;
static inline char **shmxint_environ(void) { return environ; }
*/
import "C"
import (
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/shmexec/shmexec/executor"
	"github.com/shmexec/shmexec/internal/sysx"
	"github.com/shmexec/shmexec/server"
)

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
		ReadyWorkers:      int(cfg.ready_workers),
		Environ:           cEnviron,
	}
	if cfg.n_pass_fds > 0 {
		// Duplicates: the pool keeps them for every worker it starts,
		// and the program's descriptors stay the program's.
		for i, fd := range unsafe.Slice(cfg.pass_fds, int(cfg.n_pass_fds)) {
			f, err := sysx.DupFD(int(fd), fmt.Sprintf("pass_fds[%d]", i))
			if err != nil {
				for _, g := range gc.PassFiles {
					g.Close()
				}
				setErr(fmt.Errorf("pass_fds[%d]: %w", i, err))
				return C.SHMX_EINVAL
			}
			gc.PassFiles = append(gc.PassFiles, f)
		}
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
		closeAll(gc.PassFiles)
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
		closeAll(gc.PassFiles)
		return C.SHMX_ENOMEM
	}
	np := newPool(p, p.Client())
	np.passFiles = gc.PassFiles
	cp.id = C.uint64_t(pools.add(np))
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

// closing holds the pools whose close is under way, taken from pools by
// the thread that closes them, so that a terminate from another thread
// meanwhile kills their workers rather than wait out the close's grace.
// closeMu makes the move from pools to closing one step for the others.
var (
	closing handles[*pool]
	closeMu sync.Mutex
)

// shmxgo_pool_close closes (or terminates) the pool of cp; *took is set to
// 1 in the call that took the handle, which the shim then retires. A
// terminate while another thread's close waits for jobs ends that wait
// (the close returns SHMX_ETIMEDOUT) and returns SHMX_OK once the pool is
// down, without taking the handle.
//
//export shmxgo_pool_close
func shmxgo_pool_close(cp *C.shmx_pool, timeoutNS C.int64_t, terminate C.int, took *C.int) C.int {
	id := uint64(cp.id)
	closeMu.Lock()
	p, ok := pools.take(id)
	if ok {
		closing.put(id, p)
	} else if q, busy := closing.get(id); busy && terminate != 0 && q.p != nil {
		closeMu.Unlock()
		q.p.Terminate() // the close's error is the close's to report
		setErr(nil)
		return C.SHMX_OK
	}
	closeMu.Unlock()
	if !ok {
		return C.SHMX_EINVAL
	}
	*took = 1
	defer closing.del(id)
	close(p.quit)
	p.any.signal(math.MaxInt32) // every thread in shmx_wait_any: it returns SHMX_ECLOSED
	p.mu.Lock()
	for _, g := range p.groups {
		g.signal(math.MaxInt32) // and in shmx_wait_group
	}
	p.mu.Unlock()
	defer p.freeUnwaited()
	defer closeAll(p.passFiles) // the workers are gone by then
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

//export shmxgo_pool_workers
func shmxgo_pool_workers(cp *C.shmx_pool, pids *C.int32_t, capacity C.size_t, n *C.size_t) C.int {
	p, ok := lookup(cp)
	if !ok {
		return C.SHMX_EINVAL
	}
	ws := p.c.Stats().Workers
	*n = C.size_t(len(ws))
	if capacity == 0 {
		return C.SHMX_OK
	}
	out := unsafe.Slice(pids, int(capacity))
	for i := range out {
		out[i] = 0
		if i < len(ws) && ws[i].State != "empty" && ws[i].State != "failed" {
			out[i] = C.int32_t(ws[i].PID)
		}
	}
	return C.SHMX_OK
}

//export shmxgo_pool_stats
func shmxgo_pool_stats(cp *C.shmx_pool, st *C.shmx_stats) C.int {
	p, ok := lookup(cp)
	if !ok {
		return C.SHMX_EINVAL
	}
	s := p.c.Stats()
	st.page_size = C.uint32_t(s.PageSize)
	st.submitted = C.uint64_t(s.Submitted)
	st.collected = C.uint64_t(s.Collected)
	st.retried = C.uint64_t(s.Retried)
	st.worker_deaths = C.uint64_t(s.WorkerDeaths)
	st.respawned = C.uint64_t(s.Respawned)
	st.queued = C.uint32_t(s.Queued)
	st.slots = C.uint32_t(s.Slots)
	st.slots_in_use = C.uint32_t(s.SlotsInUse)
	st.pages = C.uint32_t(s.Pages)
	st.pages_in_use = C.uint32_t(s.PagesInUse)
	return C.SHMX_OK
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
