// Package server serves a pool to other processes over a Unix socket and
// attaches clients to a served pool.
//
// A client connects and sends one request line: "attach" or "stat". The
// server checks the peer's credentials (SO_PEERCRED: the server's own uid,
// or a member of an allowed group), then answers with one line, "ok ..."
// carrying the segment's file descriptor (SCM_RIGHTS) or "error MESSAGE".
// "attach" reserves a client slot for the peer's pid (the pool watches the
// pid and reclaims the slot when it exits) and sends the ticket; "stat"
// sends a read-only descriptor, so an observer cannot write to the pool.
// Nothing is named in /dev/shm: the segment is an anonymous memfd.
package server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shmexec/shmexec/executor"
)

// Config says where and to whom a pool is served.
type Config struct {
	// Socket is the path of the Unix socket. A stale socket file (one
	// nobody listens on) is replaced; any other file there is an error.
	Socket string
	// Mode is the socket file's permission bits; 0 means 0600.
	Mode os.FileMode
	// AllowGroups are group ids whose members may connect besides the
	// server's own uid.
	AllowGroups []uint32
	// Log receives one line per refused connection and per error; nil
	// means os.Stderr.
	Log io.Writer
}

// Server serves one pool.
type Server struct {
	pool *executor.Pool
	cfg  Config
	ln   *net.UnixListener
	uid  uint32
	wg   sync.WaitGroup
	once sync.Once
}

// requestTimeout bounds how long a connection may take to send its request.
const requestTimeout = 5 * time.Second

// Listen creates the socket for p. Call Serve to accept connections.
func Listen(p *executor.Pool, cfg Config) (*Server, error) {
	if cfg.Socket == "" {
		return nil, errors.New("server: no socket path")
	}
	if cfg.Mode == 0 {
		cfg.Mode = 0o600
	}
	if cfg.Log == nil {
		cfg.Log = os.Stderr
	}
	if len(cfg.Socket) >= maxSocketPath {
		return nil, fmt.Errorf("server: socket path %s is %d bytes long; a client can connect to one of at most %d", cfg.Socket, len(cfg.Socket), maxSocketPath-1)
	}
	if err := removeStale(cfg.Socket); err != nil {
		return nil, err
	}
	ln, err := listenPrivately(cfg.Socket, cfg.Mode)
	if err != nil {
		return nil, fmt.Errorf("server: listen on %s: %w", cfg.Socket, err)
	}
	return &Server{pool: p, cfg: cfg, ln: ln, uid: uint32(os.Getuid())}, nil
}

// maxSocketPath is the size of sockaddr_un's sun_path on Linux, its
// terminating NUL included.
const maxSocketPath = 108

// privatePrefix begins the name of the directory, beside the socket path,
// in which listenPrivately makes the socket.
const privatePrefix = ".shmexec-listen-"

// listenPrivately makes a socket listening at path with the given mode,
// such that the path never names a socket that refuses a connection (bind
// creates the file before listen) or one with a wider mode than asked.
// The socket is bound in a new directory beside path that only this user
// may enter, listens, is given its mode, and is then hard-linked to path:
// link fails if another server took the path since removeStale, as bind
// would (rename would replace it). The directory's name is reached
// through /proc/self/fd, so its length does not count against sun_path;
// and nothing changes the process's umask, which every thread and every
// worker the pool starts meanwhile would inherit.
func listenPrivately(path string, mode os.FileMode) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	removeLeftovers(dir)
	priv, err := os.MkdirTemp(dir, privatePrefix) // mode 0700
	if err != nil {
		return nil, err
	}
	defer os.Remove(priv)
	d, err := os.Open(priv)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	sock := filepath.Join(priv, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: "/proc/self/fd/" + strconv.Itoa(int(d.Fd())) + "/s", Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false) // Server.Close removes path; the name bound is gone by then
	defer os.Remove(sock)
	testHookBound()
	if err := os.Chmod(sock, mode); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Link(sock, path); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// testHookBound runs once the socket is bound in its private directory:
// a test makes a server stop there, to kill it.
var testHookBound = func() {}

// leftoverAge is how old a private directory of listenPrivately must be
// before removeLeftovers takes it for one whose server died in it: a live
// one holds it for microseconds.
const leftoverAge = time.Minute

// removeLeftovers removes, from dir, the private directories that a
// server killed inside listenPrivately left behind, with their socket.
func removeLeftovers(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), privatePrefix) {
			continue
		}
		fi, err := e.Info()
		if err != nil || time.Since(fi.ModTime()) < leftoverAge {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Getuid() {
			continue
		}
		priv := filepath.Join(dir, e.Name())
		os.Remove(filepath.Join(priv, "s"))
		os.Remove(priv) // fails, and leaves it, if it holds anything else
	}
}

// removeStale removes a socket file that nobody listens on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("server: %s exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("server: %s: another server is listening there", path)
	}
	return os.Remove(path)
}

// Serve accepts connections until Close. It returns nil after Close.
func (s *Server) Serve() error {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				s.wg.Wait()
				return nil
			}
			return fmt.Errorf("server: accept: %w", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			if err := s.handle(c); err != nil {
				fmt.Fprintf(s.cfg.Log, "shmexec serve: %v\n", err)
			}
		}()
	}
}

// Close stops accepting and removes the socket file. The pool is the
// caller's to close.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		err = s.ln.Close()
		os.Remove(s.cfg.Socket)
	})
	return err
}

// Addr returns the socket path.
func (s *Server) Addr() string { return s.cfg.Socket }

func (s *Server) handle(c *net.UnixConn) error {
	cred, err := peerCred(c)
	if err != nil {
		return err
	}
	// Read the request first, also from a peer about to be refused: a
	// socket closed with unread data resets the connection, and the peer
	// might not read the refusal.
	c.SetReadDeadline(time.Now().Add(requestTimeout))
	line, rerr := bufio.NewReader(c).ReadString('\n')
	groups := peerGroups(int(cred.Pid))
	if err := CheckPeer(cred.Uid, cred.Gid, groups, s.uid, s.cfg.AllowGroups); err != nil {
		reply(c, "error "+err.Error(), -1)
		return fmt.Errorf("refused pid %d (uid %d, gid %d): %v", cred.Pid, cred.Uid, cred.Gid, err)
	}
	if rerr != nil {
		return fmt.Errorf("pid %d: reading its request: %v", cred.Pid, rerr)
	}
	switch req := strings.TrimSpace(line); req {
	case "attach":
		t, err := s.pool.AddClient(int(cred.Pid))
		if err != nil {
			reply(c, "error "+err.Error(), -1)
			return fmt.Errorf("pid %d: attach: %v", cred.Pid, err)
		}
		return reply(c, "ok "+t.String(), int(s.pool.File().Fd()))
	case "stat":
		// A read-only descriptor of the same memfd: the observer cannot
		// map it writable.
		ro, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(int(s.pool.File().Fd())), os.O_RDONLY, 0)
		if err != nil {
			reply(c, "error "+err.Error(), -1)
			return err
		}
		defer ro.Close()
		return reply(c, "ok", int(ro.Fd()))
	default:
		reply(c, fmt.Sprintf("error unknown request %q (want attach or stat)", req), -1)
		return fmt.Errorf("pid %d: unknown request %q", cred.Pid, req)
	}
}

func reply(c *net.UnixConn, msg string, fd int) error {
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	_, _, err := c.WriteMsgUnix([]byte(msg+"\n"), oob, nil)
	return err
}

func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if cerr != nil {
		return nil, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	return cred, nil
}

// peerGroups reads the supplementary groups of process pid.
func peerGroups(pid int) []uint32 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil
	}
	return parseGroups(string(b))
}

func parseGroups(status string) []uint32 {
	for _, line := range strings.Split(status, "\n") {
		rest, ok := strings.CutPrefix(line, "Groups:")
		if !ok {
			continue
		}
		var gs []uint32
		for _, f := range strings.Fields(rest) {
			if g, err := strconv.ParseUint(f, 10, 32); err == nil {
				gs = append(gs, uint32(g))
			}
		}
		return gs
	}
	return nil
}

// CheckPeer decides whether a peer with uid, primary gid and supplementary
// groups may use a server running as self that allows the groups allow.
func CheckPeer(uid, gid uint32, groups []uint32, self uint32, allow []uint32) error {
	if uid == self {
		return nil
	}
	for _, a := range allow {
		if gid == a {
			return nil
		}
		for _, g := range groups {
			if g == a {
				return nil
			}
		}
	}
	who := fmt.Sprintf("uid %d", self)
	if len(allow) > 0 {
		who += fmt.Sprintf(" and members of groups %v", allow)
	}
	return fmt.Errorf("permission denied: uid %d (gid %d) may not use this pool; it serves %s (see --allow-group)", uid, gid, who)
}

// request connects to the server at socket, sends req and returns the
// answer's words after "ok" and the descriptor that came with it.
func request(socket, req string) ([]string, *os.File, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("shmexec: connect to %s: %w", socket, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(requestTimeout))
	// MSG_NOSIGNAL: a server that refused us may have closed already, and
	// in a C program (libshmexec) SIGPIPE would kill the process. Its
	// answer is still there to read.
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	var werr error
	if err := raw.Write(func(fd uintptr) bool {
		werr = unix.Sendmsg(int(fd), []byte(req+"\n"), nil, nil, unix.MSG_NOSIGNAL)
		return werr != unix.EAGAIN
	}); err != nil {
		return nil, nil, fmt.Errorf("shmexec: %s: %w", socket, err)
	}
	if werr != nil && !errors.Is(werr, syscall.EPIPE) && !errors.Is(werr, syscall.ECONNRESET) {
		return nil, nil, fmt.Errorf("shmexec: %s: %w", socket, werr)
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, nil, fmt.Errorf("shmexec: %s: reading the answer: %w", socket, err)
	}
	var f *os.File
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err == nil && len(msgs) == 1 {
			if fds, err := unix.ParseUnixRights(&msgs[0]); err == nil && len(fds) == 1 {
				unix.CloseOnExec(fds[0])
				f = os.NewFile(uintptr(fds[0]), "shmexec-segment")
			}
		}
	}
	answer := strings.TrimSpace(string(buf[:n]))
	if msg, ok := strings.CutPrefix(answer, "error "); ok {
		if f != nil {
			f.Close()
		}
		return nil, nil, fmt.Errorf("shmexec: the server at %s refused: %s", socket, msg)
	}
	words := strings.Fields(answer)
	if len(words) == 0 || words[0] != "ok" || f == nil {
		if f != nil {
			f.Close()
		}
		return nil, nil, fmt.Errorf("shmexec: %s: unexpected answer %q", socket, answer)
	}
	return words[1:], f, nil
}

// Attach connects to the pool served at socket as a client. Close the
// client to detach; if this process dies, the server reclaims what it held.
func Attach(socket string) (*executor.Client, error) {
	words, f, err := request(socket, "attach")
	if err != nil {
		return nil, err
	}
	if len(words) != 1 {
		f.Close()
		return nil, fmt.Errorf("shmexec: %s: bad attach answer %v", socket, words)
	}
	t, err := executor.ParseTicket(words[0])
	if err != nil {
		f.Close()
		return nil, err
	}
	c, err := executor.Connect(f, t)
	if err != nil {
		f.Close()
		return nil, err
	}
	return c, nil
}

// OpenStats returns a read-only descriptor of the segment served at
// socket, for executor.ReadStats.
func OpenStats(socket string) (*os.File, error) {
	_, f, err := request(socket, "stat")
	return f, err
}
