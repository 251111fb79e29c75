package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmexec/shmexec/executor"
	"github.com/shmexec/shmexec/internal/testutil"
)

// listenChildEnv names the socket path at which the test binary, run as a
// child, listens and stops once bound (TestListenAfterAKilledServer).
const listenChildEnv = "SHMEXEC_TEST_LISTEN_AND_STOP"

func TestMain(m *testing.M) {
	if path := os.Getenv(listenChildEnv); path != "" {
		testHookBound = func() {
			fmt.Println("bound")
			select {} // until killed
		}
		Listen(nil, Config{Socket: path})
		os.Exit(3)
	}
	executor.Handle("echo", func(ctx context.Context, in []byte) ([]byte, error) { return in, nil })
	executor.ServeIfWorker()
	testutil.Main(m, nil)
}

func TestCheckPeer(t *testing.T) {
	for _, tc := range []struct {
		name          string
		uid, gid      uint32
		groups, allow []uint32
		ok            bool
	}{
		{"same uid", 1000, 1000, nil, nil, true},
		{"other uid", 1001, 1001, []uint32{1001}, nil, false},
		{"other uid, group not allowed", 1001, 1001, []uint32{27}, []uint32{50}, false},
		{"primary group allowed", 1001, 50, nil, []uint32{50}, true},
		{"supplementary group allowed", 1001, 1001, []uint32{27, 50}, []uint32{50}, true},
	} {
		err := CheckPeer(tc.uid, tc.gid, tc.groups, 1000, tc.allow)
		if (err == nil) != tc.ok {
			t.Errorf("%s: got %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "uid 1001") || !strings.Contains(err.Error(), "--allow-group")) {
			t.Errorf("%s: the message should name the uid and the way out: %v", tc.name, err)
		}
	}
}

func TestParseGroups(t *testing.T) {
	status := "Name:\tx\nUid:\t0\t0\t0\t0\nGroups:\t4 24 27 \nNgid:\t0\n"
	got := parseGroups(status)
	if len(got) != 3 || got[0] != 4 || got[2] != 27 {
		t.Fatalf("parseGroups = %v", got)
	}
	if g := parseGroups("Groups:\n"); len(g) != 0 {
		t.Fatalf("no groups: %v", g)
	}
}

func servedPool(t *testing.T) (*executor.Pool, *Server, string) {
	t.Helper()
	p, err := executor.New(executor.Config{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "pool.sock")
	s, err := Listen(p, Config{Socket: sock})
	if err != nil {
		p.Terminate()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		s.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10s of Close")
		}
		p.Terminate()
	})
	return p, s, sock
}

func TestAttachAndDetach(t *testing.T) {
	p, _, sock := servedPool(t)
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	c, err := Attach(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f, err := c.Submit(ctx, "echo", []byte("over the socket"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := f.Wait(ctx); err != nil || string(out) != "over the socket" {
		t.Fatalf("%q %v", out, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// The detached client's slot comes back; it is not counted as a death.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := p.Stats()
		if s.Detached == 1 && len(s.Clients) == 1 {
			if s.ClientDeaths != 0 {
				t.Fatalf("a detach counted as a death: %+v", s)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client slot not freed after detach: %+v", s)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The read-only descriptor serves stats and cannot be mapped writable.
	ro, err := OpenStats(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	st, err := executor.ReadStats(ro)
	if err != nil || st.Collected < 1 || st.State != "open" {
		t.Fatalf("ReadStats: %+v %v", st, err)
	}
	if mode := accessMode(t, ro); mode != os.O_RDONLY {
		t.Fatalf("stat descriptor is not read-only: access mode %#x", mode)
	}
}

func TestBadRequestsAndPaths(t *testing.T) {
	_, _, sock := servedPool(t)
	if _, _, err := request(sock, "steal"); err == nil || !strings.Contains(err.Error(), "unknown request") {
		t.Fatalf("unknown request: %v", err)
	}
	if _, err := Attach(filepath.Join(t.TempDir(), "nothing.sock")); err == nil {
		t.Fatal("attach to no socket succeeded")
	}
	// A second server on a live socket is refused; a stale one is replaced.
	p2, err := executor.New(executor.Config{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Terminate()
	if _, err := Listen(p2, Config{Socket: sock}); err == nil || !strings.Contains(err.Error(), "another server") {
		t.Fatalf("second server on a live socket: %v", err)
	}
	stale := filepath.Join(t.TempDir(), "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	s2, err := Listen(p2, Config{Socket: stale})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	s2.Close()
	notSock := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notSock, nil, 0o600)
	if _, err := Listen(p2, Config{Socket: notSock}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
}

func accessMode(t *testing.T, f *os.File) int {
	t.Helper()
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fl & unix.O_ACCMODE
}

// A client that connects as soon as the socket's path exists (a script
// that waits for the file, as the Python tests do) must be let in: bind
// creates the file before listen, so a socket bound at its path refused
// such a client now and then (3 of 300 here). The path must also go
// with Close.
func TestSocketPathAppearsListening(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.sock")
	refused := 0
	for i := 0; i < 1000; i++ {
		stop := make(chan struct{})
		dialed := make(chan error, 1)
		go func() {
			for {
				select {
				case <-stop:
					dialed <- nil
					return
				default:
				}
				if _, err := os.Lstat(path); err == nil {
					c, err := net.Dial("unix", path)
					if err == nil {
						c.Close()
					}
					dialed <- err
					return
				}
			}
		}()
		s, err := Listen(nil, Config{Socket: path})
		if err != nil {
			close(stop)
			t.Fatal(err)
		}
		err = <-dialed
		close(stop)
		if err != nil {
			refused++
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("socket path after Listen: %v, %v", fi, err)
		}
		s.Close()
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("socket path after Close: %v", err)
		}
	}
	if refused > 0 {
		t.Fatalf("%d of 1000 clients that connected once the path existed were refused", refused)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".shmexec-*")); len(left) > 0 {
		t.Fatalf("names left beside the path: %v", left)
	}
}

// Listen must not change the process's umask, even for an instant: every
// file another thread creates meanwhile, and every worker the pool
// starts meanwhile (for life), would get it. A thread creates files while
// sockets come and go, and each file must have the mode the umask gives.
func TestListenLeavesUmask(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.sock")
	mask := syscall.Umask(0o022)
	syscall.Umask(mask)
	want := os.FileMode(0o666) &^ os.FileMode(mask)
	stop := make(chan struct{})
	bad := make(chan os.FileMode, 1)
	created := 0
	go func() {
		defer close(bad)
		name := filepath.Join(dir, "f")
		for {
			select {
			case <-stop:
				return
			default:
			}
			f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
			if err != nil {
				continue
			}
			fi, err := f.Stat()
			f.Close()
			os.Remove(name)
			created++
			if err == nil && fi.Mode().Perm() != want {
				bad <- fi.Mode().Perm()
				return
			}
		}
	}()
	for i := 0; i < 2000; i++ {
		s, err := Listen(nil, Config{Socket: path})
		if err != nil {
			close(stop)
			t.Fatal(err)
		}
		s.Close()
		if len(bad) > 0 {
			break
		}
	}
	close(stop)
	if m, ok := <-bad; ok {
		t.Fatalf("a file created while Listen ran got mode %v, not %v: the umask changed", m, want)
	}
	if created == 0 {
		t.Fatal("the creating thread never ran")
	}
}

// A server killed inside Listen leaves its private directory (and the
// socket in it) beside the path. The next Listen there removes such a
// directory once it is older than leftoverAge, and leaves a young one (a
// live server's, held for microseconds) and one that holds other files.
func TestListenRemovesLeftovers(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, age time.Duration, socket bool, other bool) string {
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if socket {
			ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(d, "s"), Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			ln.SetUnlinkOnClose(false)
			ln.Close()
		}
		if other {
			os.WriteFile(filepath.Join(d, "keep"), nil, 0o600)
		}
		then := time.Now().Add(-age)
		if err := os.Chtimes(d, then, then); err != nil {
			t.Fatal(err)
		}
		return d
	}
	old := mk(privatePrefix+"1", 2*leftoverAge, true, false)
	oldEmpty := mk(privatePrefix+"2", 2*leftoverAge, false, false)
	young := mk(privatePrefix+"3", 0, true, false)
	full := mk(privatePrefix+"4", 2*leftoverAge, true, true)
	other := mk("not-ours", 2*leftoverAge, true, false)
	s, err := Listen(nil, Config{Socket: filepath.Join(dir, "p.sock")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, d := range []string{old, oldEmpty} {
		if _, err := os.Lstat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("leftover %s not removed: %v", d, err)
		}
	}
	for _, d := range []string{young, full, other} {
		if _, err := os.Lstat(d); err != nil {
			t.Errorf("%s removed: %v", d, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, privatePrefix+"*")); len(left) != 2 {
		t.Errorf("private directories after Listen: %v (want the young one and the full one)", left)
	}
}

// The socket is bound through /proc/self/fd, so a path as long as a
// client can connect to works, and a longer one is refused with a
// message that says why.
func TestListenPathLength(t *testing.T) {
	dir := t.TempDir()
	pad := maxSocketPath - 1 - len(dir) - len("/.sock")
	if pad <= 0 {
		t.Skipf("the test directory %s is too long", dir)
	}
	path := filepath.Join(dir, strings.Repeat("x", pad)+".sock")
	s, err := Listen(nil, Config{Socket: path})
	if err != nil {
		t.Fatalf("a %d-byte path: %v", len(path), err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the %d-byte path: %v", len(path), err)
	}
	c.Close()
	s.Close()
	long := filepath.Join(dir, strings.Repeat("x", pad+1)+".sock")
	if _, err := Listen(nil, Config{Socket: long}); err == nil || !strings.Contains(err.Error(), "at most 107") {
		t.Fatalf("a %d-byte path: %v", len(long), err)
	}
}

// A server SIGKILLed inside Listen, its socket bound in the private
// directory but not yet linked to the path, leaves that directory behind
// with the socket in it, and nothing at the path. Once the directory is
// older than leftoverAge, the next Listen there removes it, and serves.
func TestListenAfterAKilledServer(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.sock")
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), listenChildEnv+"="+path)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() }) // a no-op once it is killed and reaped below
	bound := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		bound <- line
	}()
	select {
	case line := <-bound:
		if line != "bound\n" {
			t.Fatalf("the child server said %q, not bound", line)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the child server did not bind within 20s")
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	left, _ := filepath.Glob(filepath.Join(dir, privatePrefix+"*"))
	if len(left) != 1 {
		t.Fatalf("private directories after the kill: %v, want one", left)
	}
	if fi, err := os.Lstat(filepath.Join(left[0], "s")); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("the killed server's socket in %s: %v, %v", left[0], fi, err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the path after the kill: %v, want nothing there", err)
	}
	then := time.Now().Add(-2 * leftoverAge)
	if err := os.Chtimes(left[0], then, then); err != nil {
		t.Fatal(err)
	}
	s, err := Listen(nil, Config{Socket: path})
	if err != nil {
		t.Fatalf("Listen after the killed server: %v", err)
	}
	defer s.Close()
	if _, err := os.Lstat(left[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the killed server's directory is still there: %v", err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the new server: %v", err)
	}
	c.Close()
}
