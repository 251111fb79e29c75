"""A progress bar on stderr for map and imap: count, rate and ETA, drawn in
place on a terminal and as an occasional line otherwise."""

import sys
import threading
import time


class Progress:
    def __init__(self, total, stream=None, label="shmexec"):
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self.done = 0
        self.start = time.monotonic()
        self._lock = threading.Lock()
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_draw = 0.0
        self._last_pct = -1
        self._closed = False
        self._draw(force=True)

    def update(self, n):
        with self._lock:
            if self._closed:
                return
            self.done += n
            self._draw(force=self.done >= self.total)
            if self.done >= self.total:
                self._closed = True
                if self._tty:
                    self.stream.write("\n")
                    self.stream.flush()

    def callback(self, n):
        """A done-callback for a future that counts for n items."""
        return lambda _f: self.update(n)

    def line(self):
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta = "--:--" if left != left else "%d:%02d" % divmod(int(left + 0.5), 60)
        pct = 100.0 * self.done / self.total if self.total else 100.0
        width = 30
        fill = int(width * self.done / self.total) if self.total else width
        return "%s [%s%s] %d/%d %5.1f%% %.0f/s ETA %s" % (
            self.label, "#" * fill, "." * (width - fill), self.done, self.total, pct, rate, eta)

    def _draw(self, force=False):
        now = time.monotonic()
        if self._tty:
            if force or now - self._last_draw >= 0.1:
                self.stream.write("\r\x1b[K" + self.line())
                self.stream.flush()
                self._last_draw = now
            return
        # Not a terminal: a line at start, every 10% or 5 s, and at the end.
        pct = int(10 * self.done / self.total) if self.total else 10
        if force or pct > self._last_pct or now - self._last_draw >= 5:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self._last_draw, self._last_pct = now, pct
