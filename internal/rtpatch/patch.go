// Command rtpatch writes the two changes that libshmexec.so's Go runtime
// carries, as an overlay for go build (-overlay), and prints the flags
// that build the library with them:
//
//	go run ./internal/rtpatch -out build/_rtpatch
//	-overlay=/abs/build/_rtpatch/overlay.json -tags=shmexec_rtpatch
//
// Both are about the runtime's monitor thread (sysmon), which a program
// whose threads call in from C wakes far more than a Go program.
//
// The first: a goroutine that leaves a system call starts a new
// scheduling slice on its P (runtime.exitsyscall increments the P's
// schedtick, as runtime.execute does for a goroutine it schedules). sysmon
// preempts a goroutine whose P has not moved its scheduling tick for
// 10 ms, and takes back a P that sits in a system call on such a stale
// tick at every look, every 20 us once it is awake. A C or Python thread
// that calls into the library never passes through the scheduler: to the
// runtime it leaves a cgo call (exitsyscall) on entry and enters one on
// return, so its P's tick stands still however often it calls in. So every
// 10 ms of calls its goroutine, locked to the thread, is asked to stop (a
// hand-off of its P to another thread and back, two or three thread wakes
// in the middle of a call), and the monitor, retaking Ps at every look,
// never backs off and wakes thousands of times a second. The same holds
// for the library's own goroutines that sleep in futex waits and leave
// them on another P. With the change, a thread that calls in within 10 ms
// of its last call is running a fresh slice, as it is; the monitor then
// backs off to its 10 ms looks.
//
// The second: sysmon, woken from its deep sleep by a thread that leaves a
// system call, backs off at once (its next looks 40 us, 80 us, ... apart,
// up to 10 ms) instead of looking every 20 us for 50 looks first. sysmon
// sleeps deeply once every P is idle: in a worker that waited over 10 ms
// for a task, in a caller that made no call for as long. The first call
// or task after such a pause woke it, and its 20 us looks (70 us and more
// with the kernel's timer slack) took a vCPU from the caller or a worker
// some 60 times in the next 35 ms. The runtime already leaves its
// back-off alone after a wake by a timer ("to avoid adding system load to
// applications that spend most of their time sleeping", as its comment
// says); after a wake by a system call it now starts the back-off. A P
// that must be retaken still is, at the next look (at most 10 ms later),
// and a retake still starts the 20 us looks again.
//
// docs/BENCHMARKS.md ("The Go runtime's clock, mended" and "The
// monitor's wake after a pause") has what each costs and saves. Only the
// library is built this way: the Go packages, their tests and Go programs
// that import them use the stock runtime.
//
// The changes are made to the toolchain's own runtime/proc.go at build
// time, each at a text that must occur exactly once. Where one does not (a
// Go release whose exitsyscall or sysmon differs), rtpatch says so on
// stderr, prints nothing on stdout and exits with status 3: the library
// is then built with the stock runtime, which is correct, only slower.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Tag is the build tag the library is built with when it carries the
// changes, so that `go version -m libshmexec.so` tells (make test checks).
const Tag = "shmexec_rtpatch"

// An edit replaces old, which must occur exactly once in proc.go, by new;
// needs, if set, is a text the new one relies on, which must occur
// exactly once too.
type edit struct{ old, new, needs string }

// edits: exitsyscall's step that every goroutine leaving a system call
// with a P takes, whether it kept its P or got another, followed by a new
// slice; and sysmon's reset of its back-off after a wake by a system call,
// made a start of the back-off.
var edits = []edit{
	{
		old: "\t\t// Increment the syscalltick for P, since we're exiting a syscall.\n\t\tpp.syscalltick++\n",
		new: "\t\t// Increment the syscalltick for P, since we're exiting a syscall.\n\t\tpp.syscalltick++\n" +
			"\t\t// shmexec (internal/rtpatch): leaving a system call, or a cgo call\n" +
			"\t\t// for a call in from C, starts a new slice for sysmon's preemption clock.\n" +
			"\t\tpp.schedtick++\n",
	},
	{
		old: "\t\t\t\tif syscallWake {\n\t\t\t\t\tidle = 0\n\t\t\t\t\tdelay = 20\n\t\t\t\t}\n",
		new: "\t\t\t\tif syscallWake {\n" +
			"\t\t\t\t\t// shmexec (internal/rtpatch): back off at once, as after a\n" +
			"\t\t\t\t\t// timer's wake (next looks 40us, 80us, ... apart).\n" +
			"\t\t\t\t\tidle = 51\n\t\t\t\t\tdelay = 20\n\t\t\t\t}\n",
		// idle = 51 starts the doubling only where it starts past 50.
		needs: "\t\t} else if idle > 50 { // start doubling the sleep after 1ms...\n",
	},
}

// errNoAnchor: the toolchain's proc.go is not one the changes fit.
var errNoAnchor = errors.New("runtime/proc.go has not exactly once each text that rtpatch changes (exitsyscall's syscalltick step; sysmon's reset after a syscall wake, and where its back-off starts doubling)")

// Patch returns proc.go (runtime/proc.go's text) with every edit made, or
// errNoAnchor if any edit's texts are not there exactly once (then none is
// made: the library gets both changes or neither).
func Patch(proc []byte) ([]byte, error) {
	for _, e := range edits {
		if bytes.Count(proc, []byte(e.old)) != 1 || e.needs != "" && bytes.Count(proc, []byte(e.needs)) != 1 {
			return nil, errNoAnchor
		}
	}
	for _, e := range edits {
		proc = bytes.Replace(proc, []byte(e.old), []byte(e.new), 1)
	}
	return proc, nil
}

// write puts the changed copy of goroot's runtime/proc.go and the overlay
// that names it in dir, and returns the overlay's absolute path.
func write(goroot, dir string) (string, error) {
	orig := filepath.Join(goroot, "src", "runtime", "proc.go")
	src, err := os.ReadFile(orig)
	if err != nil {
		return "", err
	}
	out, err := Patch(src)
	if err != nil {
		return "", fmt.Errorf("%s: %w", orig, err)
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	changed := filepath.Join(dir, "proc.go")
	if err := os.WriteFile(changed, out, 0o644); err != nil {
		return "", err
	}
	overlay, err := json.Marshal(map[string]map[string]string{"Replace": {orig: changed}})
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "overlay.json")
	return path, os.WriteFile(path, overlay, 0o644)
}

// goroot asks the go command (GO, else go on PATH) where its toolchain
// is: the one that will build the library, not the one that built rtpatch
// (GOTOOLCHAIN may pick another).
func goroot() (string, error) {
	gocmd := os.Getenv("GO")
	if gocmd == "" {
		gocmd = "go"
	}
	out, err := exec.Command(gocmd, "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("%s env GOROOT: %w", gocmd, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func main() {
	// The default starts with an underscore so that ./... patterns (go
	// vet, go test) pass over the changed copy, a file of package runtime.
	dir := flag.String("out", "build/_rtpatch", "where to write the changed proc.go and overlay.json")
	root := flag.String("goroot", "", "the toolchain to change (default: go env GOROOT)")
	flag.Parse()
	if *root == "" {
		r, err := goroot()
		if err != nil {
			fmt.Fprintln(os.Stderr, "rtpatch:", err)
			os.Exit(1)
		}
		*root = r
	}
	path, err := write(*root, *dir)
	if errors.Is(err, errNoAnchor) {
		fmt.Fprintf(os.Stderr, "rtpatch: %v; building libshmexec.so with the stock Go runtime (correct, but its calls from C and Python are preempted every 10 ms, and its monitor thread wakes often: docs/BENCHMARKS.md)\n", err)
		os.Exit(3)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rtpatch:", err)
		os.Exit(1)
	}
	fmt.Printf("-overlay=%s -tags=%s\n", path, Tag)
}
