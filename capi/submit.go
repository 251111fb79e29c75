package main

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"
import (
	"context"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/shmexec/shmexec/executor"
	"github.com/shmexec/shmexec/internal/memx"
)

// input is a view of the caller's bytes; submit copies them into the
// segment before it returns.
func input(data unsafe.Pointer, n C.size_t) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(data), int(n))
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
	flags C.uint64_t, job *C.shmx_job) C.int {
	p, ok := lookup(cp)
	if !ok || retries < -1 {
		return C.SHMX_EINVAL
	}
	f, err := p.submitBytes(handler, data, n, timeoutNS, retries, flags)
	return p.track(f, err, flags, job)
}

// submitBytes submits a copy of the n bytes at data, waiting for a free
// job slot unless flags has SHMX_SUBMIT_NOWAIT (then ErrFull).
func (p *pool) submitBytes(handler *C.char, data unsafe.Pointer, n C.size_t, timeoutNS C.int64_t, retries C.int32_t,
	flags C.uint64_t) (*executor.Future, error) {
	opts := p.submitOpts(timeoutNS, retries)
	if flags&C.SHMX_SUBMIT_NOWAIT != 0 {
		return p.c.TrySubmitWith(C.GoString(handler), input(data, n), opts)
	}
	return p.c.SubmitWith(context.Background(), C.GoString(handler), input(data, n), opts)
}

//export shmxgo_call
func shmxgo_call(cp *C.shmx_pool, handler *C.char, data unsafe.Pointer, n C.size_t, timeoutNS C.int64_t, retries C.int32_t,
	flags C.uint64_t, waitNS C.int64_t, job *C.shmx_job, res *C.shmx_result) C.int {
	p, ok := lookup(cp)
	if !ok || retries < -1 {
		return C.SHMX_EINVAL
	}
	f, err := p.submitBytes(handler, data, n, timeoutNS, retries, flags)
	if err != nil {
		setErr(err)
		return code(err)
	}
	id := f.ID()
	// Tracked as waited for from the start: shmx_wait_any never hears of
	// it unless this wait runs out (and then not if it is the caller's own).
	p.mu.Lock()
	j := p.add(f, flags)
	j.waiters++
	p.mu.Unlock()
	*job = C.shmx_job(id)
	return p.await(id, j, waitNS, res)
}

//export shmxgo_wait
func shmxgo_wait(cp *C.shmx_pool, job C.shmx_job, timeoutNS C.int64_t, res *C.shmx_result) C.int {
	p, ok := lookup(cp)
	if !ok {
		return C.SHMX_EINVAL
	}
	p.mu.Lock()
	j, ok := p.jobs[uint64(job)]
	if !ok || j.forgot {
		p.mu.Unlock()
		setErr(fmt.Errorf("no pending job %d", uint64(job)))
		return C.SHMX_EINVAL
	}
	j.waiters++
	p.mu.Unlock()
	return p.await(uint64(job), j, timeoutNS, res)
}

// await waits for job (j) for at most timeoutNS (< 0: no limit) on behalf
// of a caller counted in j.waiters, and fills res with its outcome: the
// body of shmx_wait.
func (p *pool) await(id uint64, j *job, timeoutNS C.int64_t, res *C.shmx_result) C.int {
	f := j.f
	out, err := f.WaitSleeping(time.Duration(timeoutNS)) // a C thread: parking would hand its P over and back
	p.mu.Lock()
	j.waiters--
	if errors.Is(err, context.DeadlineExceeded) {
		// It may have finished just now, and OnDone passed it over while
		// this thread waited: announce it now.
		p.announceIfDone(id, f)
		p.mu.Unlock()
		return C.SHMX_ETIMEDOUT
	}
	if cur, still := p.jobs[id]; !still || cur != j || j.forgot {
		// Another thread waiting for the same job took the result (one
		// copy in C memory, with one owner), or forgot the job.
		p.mu.Unlock()
		setErr(fmt.Errorf("job %d was waited for or forgotten by another thread", id))
		return C.SHMX_EINVAL
	}
	p.remove(id, j)
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
		for id, j := range p.jobs {
			p.announceIfDone(id, j.f)
		}
	}
	p.mu.Unlock()
	return p.waitReady(&p.any, anyReports, false, timeoutNS, job)
}

//export shmxgo_wake_any
func shmxgo_wake_any(cp *C.shmx_pool) C.int {
	p, ok := lookup(cp)
	if !ok {
		return C.SHMX_EINVAL
	}
	p.mu.Lock()
	p.any.woken = true
	p.mu.Unlock()
	p.any.signal(1) // after woken is set: a waiter that loaded sig before sees it move, one after sees woken
	return C.SHMX_OK
}

//export shmxgo_wait_group
func shmxgo_wait_group(cp *C.shmx_pool, gid C.uint32_t, timeoutNS C.int64_t, job *C.shmx_job) C.int {
	p, ok := lookup(cp)
	if !ok || gid == 0 {
		return C.SHMX_EINVAL
	}
	id := uint32(gid)
	p.mu.Lock()
	g := p.groupOf(id)
	g.waiting++ // keeps g in p.groups until this thread leaves
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		g.waiting--
		p.tidyGroup(id)
		p.mu.Unlock()
	}()
	// Unlike shmx_wait_any's collector, its reader polls the outqueue
	// first, as a thread in shmx_wait does.
	return p.waitReady(&g.readyQueue, groupReports, true, timeoutNS, job)
}

//export shmxgo_buffer_alloc
func shmxgo_buffer_alloc(cp *C.shmx_pool, n C.size_t, wait C.int, buf *C.shmx_buffer) C.int {
	p, ok := lookup(cp)
	if !ok {
		return C.SHMX_EINVAL
	}
	alloc := p.c.AllocBuffer
	if wait == 0 {
		alloc = p.c.TryAllocBuffer
	}
	b, err := alloc(int(n))
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
	flags C.uint64_t, job *C.shmx_job) C.int {
	p, ok := lookup(cp)
	if !ok || retries < -1 {
		return C.SHMX_EINVAL
	}
	if flags&C.SHMX_SUBMIT_NOWAIT != 0 {
		// Full: the buffer stays the caller's (in the table, unused).
		b, ok := p.buffers.get(uint64(buf.id))
		if !ok {
			return C.SHMX_EINVAL
		}
		f, err := p.c.TrySubmitBuffer(C.GoString(handler), b, p.submitOpts(timeoutNS, retries))
		if errors.Is(err, executor.ErrFull) {
			setErr(err)
			return C.SHMX_EFULL
		}
		p.buffers.del(uint64(buf.id))
		if err != nil {
			b.Release()
		}
		return p.track(f, err, flags, job)
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

// shmx_copy enters Go from the size at which memx.Copy uses threads.
var _ = [1]struct{}{}[memx.ParallelFrom-C.SHMXINT_PARALLEL_COPY_FROM]

//export shmxgo_copy
func shmxgo_copy(dst, src unsafe.Pointer, n C.size_t) {
	memx.Copy(unsafe.Slice((*byte)(dst), n), unsafe.Slice((*byte)(src), n))
}

//export shmxgo_cancel
func shmxgo_cancel(cp *C.shmx_pool, job C.shmx_job, kill C.int) C.int {
	p, ok := lookup(cp)
	if !ok {
		return C.SHMX_EINVAL
	}
	p.mu.Lock()
	j, ok := p.jobs[uint64(job)]
	p.mu.Unlock()
	if !ok || !j.f.Cancel(kill != 0) {
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
	j, ok := p.jobs[id]
	if !ok || j.forgot {
		setErr(fmt.Errorf("no pending job %d", id))
		return C.SHMX_EINVAL
	}
	select {
	case <-j.f.Done():
		p.drop(id)
	default:
		// OnDone drops it. A thread in shmx_wait for it finds it gone.
		j.forgot = true
	}
	return C.SHMX_OK
}
