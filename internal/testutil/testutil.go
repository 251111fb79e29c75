// Package testutil holds helpers shared by shmexec's tests: a TestMain
// that fails the run on leaked file descriptors or child processes, and
// re-execution of the test binary as a child process.
package testutil

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ChildEnv names the environment variable that tells a re-executed test
// binary which child role to play.
const ChildEnv = "SHMEXEC_TEST_CHILD"

// Main runs the tests, or a child role when the test binary was
// re-executed by Child. After the tests it fails the run if file
// descriptors or child processes were left behind.
func Main(m *testing.M, roles map[string]func() int) {
	if role := os.Getenv(ChildEnv); role != "" {
		f, ok := roles[role]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown child role %q\n", role)
			os.Exit(2)
		}
		os.Exit(f())
	}
	before := openFDs()
	code := m.Run()
	if code == 0 {
		// Give exiting children and closing descriptors a moment.
		deadline := time.Now().Add(5 * time.Second)
		var leakedFDs []string
		var kids []int
		for {
			leakedFDs = diff(openFDs(), before)
			kids = children()
			if (len(leakedFDs) == 0 && len(kids) == 0) || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(leakedFDs) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: leaked file descriptors: %s\n", strings.Join(leakedFDs, ", "))
			code = 1
		}
		if len(kids) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: leaked child processes: %v\n", kids)
			code = 1
		}
	}
	os.Exit(code)
}

func openFDs() map[string]string {
	ents, _ := os.ReadDir("/proc/self/fd")
	m := map[string]string{}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue // the descriptor ReadDir itself used
		}
		if target == "anon_inode:[eventpoll]" || target == "anon_inode:[eventfd]" {
			continue // the Go runtime's network poller, created on first use
		}
		m[e.Name()] = target
	}
	return m
}

func diff(now, before map[string]string) []string {
	var out []string
	for fd, target := range now {
		if before[fd] != target {
			out = append(out, fd+"->"+target)
		}
	}
	sort.Strings(out)
	return out
}

// children lists the pids of this process's live (or unreaped) children.
func children() []int {
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	var kids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may contain spaces and parens.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == self {
			kids = append(kids, pid)
		}
	}
	return kids
}

// Child returns a command that re-runs this test binary in the given
// role, with extra environment entries and the given files as fds 3, 4...
// It is started in its own process group so a test can kill it and its
// children without touching anything else.
func Child(t testing.TB, role string, files []*os.File, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), ChildEnv+"="+role)
	cmd.Env = append(cmd.Env, env...)
	cmd.ExtraFiles = files
	cmd.Stderr = os.Stderr
	return cmd
}

// WaitTimeout waits for cmd to exit, for at most d; on timeout it kills
// the process (by pid, which this test started) and fails the test.
func WaitTimeout(t testing.TB, cmd *exec.Cmd, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		t.Fatalf("child %d (%v) did not exit within %v", cmd.Process.Pid, cmd.Args, d)
		return nil
	}
}

// PipeEchoRole is the name of the role PipeEcho plays; a test's TestMain
// lists it to use StartPipeEcho.
const PipeEchoRole = "pipe-echo"

// PipeEcho is a child role: it copies 8-byte messages from fd 3 back to fd
// 4 until EOF. It is the pipe ping-pong baseline of the benchmarks.
func PipeEcho() int {
	in, out := os.NewFile(3, "in"), os.NewFile(4, "out")
	var buf [8]byte
	for {
		if _, err := io.ReadFull(in, buf[:]); err != nil {
			return 0
		}
		if _, err := out.Write(buf[:]); err != nil {
			return 1
		}
	}
}

// StartPipeChild starts role with a pipe to its fd 3 and one from its fd
// 4, and returns the child, the write end to it and the read end from it.
func StartPipeChild(t testing.TB, role string) (*exec.Cmd, *os.File, *os.File) {
	t.Helper()
	childIn, toChild, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fromChild, childOut, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := Child(t, role, []*os.File{childIn, childOut})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	childIn.Close()
	childOut.Close()
	return cmd, toChild, fromChild
}

// EnvInt returns the integer in the environment variable name, or def if
// it is unset. A child role reads its parameters with it; a value that is
// not a number is a bug in the test that set it, so it panics.
func EnvInt(name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(fmt.Sprintf("%s=%q: %v", name, s, err))
	}
	return n
}
