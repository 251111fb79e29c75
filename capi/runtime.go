// Command capi is libshmexec.so: the C ABI of shmexec, built with
// -buildmode=c-shared. include/shmexec.h is its contract.
//
// The public shmx_* functions are C (shim.c): they check the fork guard
// before the Go runtime is entered and call the shmxgo_* functions of
// this package. No Go pointer crosses into C: pools, jobs, buffers and
// outputs are numbers that index tables on the Go side (handles.go).
//
//	runtime.go  the library's Go runtime settings
//	handles.go  the tables of handles that C holds
//	errors.go   errors to SHMX_ codes and the thread's last message
//	jobs.go     a pool handle's books of the jobs it submitted
//	pool.go     creating, attaching and closing pools
//	submit.go   submitting, waiting, buffers, cancel and forget
//	worker.go   the worker side: shmx_worker_main (push) and
//	            shmx_worker_next (pull)
package main

/*
#cgo CFLAGS: -I${SRCDIR}/../include -Wall
*/
import "C"
import (
	"os"
	"runtime"
)

func main() {}

// minProcs is the fewest Ps the library's runtime runs with. Here most
// Ps are not running Go code: a thread that called in from C or Python
// keeps its P while it is back in C (the runtime counts it as a system
// call), and so does a goroutine asleep on a futex. With GOMAXPROCS at
// the core count (2 on a small machine) no P is then idle, and the
// runtime's monitor thread takes a P in a system call back after one of
// its 20 us looks when no other P is idle, and keeps waking at that rate
// (docs/BENCHMARKS.md has what that cost). The library's Go code is short
// and mostly waits, so more Ps than cores costs little: the kernel shares
// the cores among whatever is runnable. GOMAXPROCS, if set, wins. (The
// monitor's other reason to take Ps back, a scheduling tick that a
// thread calling in from C never moves, is mended in the runtime the
// library is built with: internal/rtpatch.)
const minProcs = 8

func init() {
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < minProcs {
		runtime.GOMAXPROCS(minProcs)
	}
}
