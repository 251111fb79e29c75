package main

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"
import (
	"errors"
	"os"
	"syscall"
	"unsafe"

	"github.com/shmexec/shmexec/executor"
)

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
	if err == nil {
		return C.SHMX_OK
	}
	return errCode(err)
}

// errCode is code for a non-nil error. Apart from code, because the
// target of errors.As escapes to the heap where it is declared: in code
// it was allocated on every call, the success of every wait included.
func errCode(err error) C.int {
	var ce *executor.CrashError
	switch {
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
	case errors.Is(err, executor.ErrPoolClosed), errors.Is(err, os.ErrClosed):
		// os.ErrClosed: one of the pool's files closed under the call by
		// a close (ErrPoolClosed was os.ErrClosed itself until it had a
		// text of its own, and these mapped here with it)
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
