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
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/shmexec/shmexec/executor"
)

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

//export shmxgo_worker_slot
func shmxgo_worker_slot(cw *C.shmx_worker, slot *C.uint32_t) C.int {
	if theWorker == nil {
		return C.SHMX_EINVAL
	}
	*slot = C.uint32_t(theWorker.Slot())
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

//export shmxgo_task_input_file
func shmxgo_task_input_file(ct *C.shmx_task, fd *C.int, offset *C.uint64_t) C.int {
	tk, ok := tasks.get(uint64(ct.id))
	if !ok || theWorker == nil {
		return C.SHMX_EINVAL
	}
	f, off, ok := theWorker.InputFile(tk.t)
	if !ok {
		setErr(errors.New("the task's input is empty"))
		return C.SHMX_EINVAL
	}
	*fd, *offset = C.int(f.Fd()), C.uint64_t(off)
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
