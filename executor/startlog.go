package executor

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// startLogTail is how much of a starting worker's standard error a
// startLog keeps; startLineMax, how much of its last line a start-up
// failure quotes.
const (
	startLogTail = 4 << 10
	startLineMax = 300
)

// startLog reads a starting worker's standard error from a pipe until the
// worker is ready (it then writes to the pool's standard error itself) or
// has exited: it forwards every byte to out at once, and keeps the tail so
// that a start-up failure can say what the worker last wrote.
type startLog struct {
	mu   sync.Mutex
	tail []byte
	done chan struct{} // closed when the pipe is at end of file
}

// newStartLog forwards what r brings to out, and calls ended once
// everything has been forwarded (the pipe is at end of file, or broken).
func newStartLog(r *os.File, out io.Writer, ended func()) *startLog {
	s := &startLog{done: make(chan struct{})}
	go s.copy(r, out, ended)
	return s
}

func (s *startLog) copy(r *os.File, out io.Writer, ended func()) {
	defer close(s.done)
	defer ended()
	defer r.Close()
	buf := make([]byte, 16<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			out.Write(buf[:n]) // as an inherited descriptor would: a failed write loses the bytes, not the worker
			s.mu.Lock()
			s.tail = append(s.tail, buf[:n]...)
			if over := len(s.tail) - startLogTail; over > 0 {
				s.tail = append(s.tail[:0], s.tail[over:]...)
			}
			s.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// drain waits at most d for the pipe to be at end of file, so that the
// tail holds all the worker wrote (a process the worker started may hold
// the pipe open). The goroutine that reaps the worker calls it, so that
// the monitor never waits.
func (s *startLog) drain(d time.Duration) {
	select {
	case <-s.done:
	case <-time.After(d):
	}
}

// lastLine returns the last line the worker wrote that is not blank,
// shortened to startLineMax bytes.
func (s *startLog) lastLine() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	text := bytes.TrimRight(s.tail, " \t\r\n")
	if i := bytes.LastIndexByte(text, '\n'); i >= 0 {
		text = text[i+1:]
	}
	line := strings.ToValidUTF8(strings.TrimSpace(string(text)), "?")
	if len(line) > startLineMax {
		line = "..." + strings.ToValidUTF8(line[len(line)-startLineMax:], "")
	}
	return line
}

// withStderr adds to a start-up failure's reason the last line the
// worker wrote to standard error, if it wrote one.
func withStderr(reason string, log *startLog) string {
	if log == nil {
		return reason
	}
	if line := log.lastLine(); line != "" {
		return fmt.Sprintf("%s; the last line it wrote to standard error was %q", reason, line)
	}
	return reason
}
