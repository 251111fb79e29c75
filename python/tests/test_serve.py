"""`shmexec serve` / `shmexec stat` with C and Python clients, against the
real binaries (build/shmexec, build/attach_demo) and library."""

import contextlib
import io
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

import _paths  # noqa: E402  (sys.path: the checkout's package, or the installed one)

HERE = _paths.HERE
BIN = os.environ.get("SHMEXEC_BIN", os.path.join(_paths.BUILD, "shmexec"))
ATTACH_DEMO = os.path.join(_paths.BUILD, "attach_demo")
ENV = dict(os.environ, PYTHONPATH=_paths.PYTHONPATH)

import shmexec  # noqa: E402
import served_funcs  # noqa: E402
from shmexec._progress import Progress  # noqa: E402


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@unittest.skipUnless(os.path.exists(BIN) and os.path.exists(ATTACH_DEMO), "build/shmexec and build/attach_demo are built by make")
class ServeTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="shmexec-serve-")
        os.chmod(self.dir, 0o755)  # another uid must reach the socket
        self.sock = os.path.join(self.dir, "pool.sock")
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, proc):
        self.procs.append(proc)
        return proc

    def attach_demo_for_anyone(self):
        """attach_demo and the library it loads, copied into this test's
        world-readable folder: another uid can run them wherever the
        checkout lives (a clone under a mode-0700 folder, say)."""
        exe = os.path.join(self.dir, "attach_demo")
        shutil.copy(ATTACH_DEMO, exe)
        shutil.copy(os.path.realpath(os.path.join(os.path.dirname(ATTACH_DEMO), "libshmexec.so.0")),
                    os.path.join(self.dir, "libshmexec.so.0"))  # attach_demo's rpath is $ORIGIN
        for f in ("attach_demo", "libshmexec.so.0"):
            os.chmod(os.path.join(self.dir, f), 0o755)
        return exe

    def serve(self, *extra):
        self.serve_log = open(os.path.join(self.dir, "serve.log"), "w+")
        self.addCleanup(self.serve_log.close)
        cmd = [BIN, "serve", "--socket", self.sock, "--workers", "2", *extra,
               "--", sys.executable, "-m", "shmexec.worker", "--handlers", "served_funcs"]
        p = self.start(subprocess.Popen(cmd, env=ENV, stdout=self.serve_log, stderr=subprocess.STDOUT))
        wait_for(lambda: os.path.exists(self.sock) or p.poll() is not None, 30, "the socket")
        self.assertIsNone(p.poll(), self.log())
        return p

    def log(self):
        self.serve_log.flush()
        with open(self.serve_log.name) as f:
            return f.read()

    def stat(self):
        out = subprocess.run([BIN, "stat", "--socket", self.sock, "--json"], capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        return json.loads(out.stdout)

    def python_client(self, body):
        script = os.path.join(self.dir, "client.py")
        with open(script, "w") as f:
            f.write(textwrap.dedent(body))
        return self.start(subprocess.Popen([sys.executable, script, self.sock], env=ENV, stdout=subprocess.PIPE, text=True))

    def test_c_and_python_clients_python_killed_mid_map(self):
        serve = self.serve()
        py = self.python_client("""
            import sys, shmexec, served_funcs
            with shmexec.Pool(connect=sys.argv[1]) as pool:
                print("mapping", flush=True)
                pool.map(served_funcs.slow_square, range(20000), chunksize=4)
                print("finished", flush=True)
        """)
        self.assertEqual(py.stdout.readline().strip(), "mapping")
        c = self.start(subprocess.Popen([ATTACH_DEMO, self.sock, "3000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        time.sleep(0.3)
        os.kill(py.pid, signal.SIGKILL)  # in the middle of its map
        py.wait(10)
        out, err = c.communicate(timeout=120)
        self.assertEqual(c.returncode, 0, err)
        self.assertEqual(out.strip(), "attach_demo: 3000 ok")

        # The dead client's queued jobs, slots and outqueue are reclaimed.
        def reclaimed():
            s = self.stat()
            return s["client_deaths"] >= 1 and [c["index"] for c in s["clients"]] == [0] and s["slots_in_use"] == 0 and s["queued"] == 0
        wait_for(reclaimed, 30, "the dead client's space to be reclaimed")
        s = self.stat()
        self.assertEqual(s["clients_detached"], 1)  # the C client
        self.assertEqual(s["pages_in_use"], 0)
        self.assertEqual(len(s["workers"]), 2)

        # SIGTERM drains and exits cleanly, removing the socket.
        serve.send_signal(signal.SIGTERM)
        self.assertEqual(serve.wait(60), 0, self.log())
        self.assertFalse(os.path.exists(self.sock))

    def test_python_client_with_progress_and_errors(self):
        self.serve()
        err = io.StringIO()
        with shmexec.Executor(connect=self.sock) as ex, contextlib.redirect_stderr(err):
            self.assertEqual(list(ex.map(served_funcs.square, range(500), progress=True)), [x * x for x in range(500)])
            self.assertEqual(ex.submit(served_funcs.square, 12).result(30), 144)
            # The server may give a detached client's space to another:
            # results of a served pool are always copied out.
            self.assertEqual(shmexec._lib.LIB.shmx_results_in_place(ex._pool, 4 << 20), shmexec._lib.SHMX_EINVAL)
            # A function of the client's __main__ travels by value
            # (cloudpickle): the server's workers never load that script.
            self.assertEqual(ex.submit(_local_square, 3).result(30), 9)
        self.assertIn("500/500 100.0%", err.getvalue())
        err = io.StringIO()
        with shmexec.Pool(connect=self.sock) as pool, contextlib.redirect_stderr(err):
            got = sorted(pool.imap_unordered(served_funcs.square, range(200), chunksize=10, progress=True))
            self.assertEqual(got, sorted(x * x for x in range(200)))
            self.assertEqual(pool.starmap(pow, [(2, 3)], progress=True), [8])
        self.assertIn("200/200 100.0%", err.getvalue())
        self.assertIn("1/1 100.0%", err.getvalue())
        with self.assertRaisesRegex(ValueError, "server's to set"):
            shmexec.Executor(4, connect=self.sock)
        with self.assertRaisesRegex(ValueError, "server's to set"):
            shmexec.Executor(connect=self.sock, max_payload=1 << 30)
        with self.assertRaisesRegex(shmexec.ShmexecError, "cannot attach"):
            shmexec.Executor(connect=os.path.join(self.dir, "none.sock"))

    def test_a_client_scripts_classes_and_functions_travel_by_value(self):
        # The server's workers never load a client's script: its
        # functions, and the classes of what it sends, go by value, in
        # every kind of frame (items that are not plain, an instance as
        # an argument), and an instance comes back as the client's class.
        self.serve()
        py = self.python_client("""
            import sys, shmexec
            class P:
                def __init__(self, x):
                    self.x = x
            def bump(p):
                return P(p.x + 1)
            def read(d):
                return d["k"] * 2
            with shmexec.Pool(connect=sys.argv[1]) as pool:
                got = pool.map(bump, [P(1), P(2)])
                print([type(q) is P for q in got], [q.x for q in got], pool.map(read, [{"k": 3}]),
                      pool.apply(bump, (P(5),)).x, flush=True)
        """)
        out, _ = py.communicate(timeout=120)
        self.assertEqual((py.returncode, out.strip()), (0, "[True, True] [2, 3] [6] 6"), self.log())

    def test_serve_killed_clients_get_pool_dead_and_workers_exit(self):
        serve = self.serve()
        py = self.python_client("""
            import sys, time, shmexec, served_funcs
            ex = shmexec.Executor(connect=sys.argv[1])
            f = ex.submit(served_funcs.sleep, 60)
            print("submitted", flush=True)
            try:
                f.result(30)
                print("no error")
            except shmexec.PoolDead:
                print("PoolDead", time.time(), flush=True)
        """)
        self.assertEqual(py.stdout.readline().strip(), "submitted")
        wait_for(lambda: any(w["state"] == "busy" for w in self.stat()["workers"]), 30, "the job to run")
        pids = [w["pid"] for w in self.stat()["workers"]]
        killed_at = time.time()
        os.kill(serve.pid, signal.SIGKILL)
        serve.wait(10)
        line = py.stdout.readline().split()
        self.assertEqual(line[:1], ["PoolDead"], line)
        self.assertLess(float(line[1]) - killed_at, 1.0, "PoolDead came more than 1 s after the kill")
        py.wait(10)

        def gone(pid):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    return f.read().split(")")[-1].split()[0] == "Z"
            except FileNotFoundError:
                return True
        wait_for(lambda: all(gone(p) for p in pids), 5, f"workers {pids} to exit")

    @unittest.skipUnless(os.getuid() == 0 and shutil.which("setpriv"), "needs root and setpriv to run a client as another uid")
    def test_peer_not_allowed_is_refused(self):
        self.serve("--socket-mode", "0666")
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        r = subprocess.run(nobody + [self.attach_demo_for_anyone(), self.sock, "10"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("permission denied: uid 65534", r.stderr)
        self.assertIn("--allow-group", r.stderr)
        wait_for(lambda: "refused pid" in self.log(), 10, "the server's log line")
        self.assertIn("uid 65534", self.log())

    @unittest.skipUnless(os.getuid() == 0 and shutil.which("setpriv"), "needs root and setpriv to run a client as another uid")
    def test_allowed_group_may_attach(self):
        self.serve("--socket-mode", "0666", "--allow-group", "65534")
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        r = subprocess.run(nobody + [self.attach_demo_for_anyone(), self.sock, "50"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stdout.strip(), "attach_demo: 50 ok")

    def test_stat_live_view_on_a_terminal(self):
        self.serve()
        self.assertEqual(subprocess.run([ATTACH_DEMO, self.sock, "100"], capture_output=True, timeout=60).returncode, 0)
        master, slave = pty.openpty()
        p = self.start(subprocess.Popen([BIN, "stat", "--socket", self.sock, "--interval", "200ms", "--count", "3"],
                                        stdout=slave, stderr=slave, close_fds=True))
        os.close(slave)
        out = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.5)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the other side closed
                    break
                if not chunk:
                    break
                out += chunk
            elif p.poll() is not None:
                break
        os.close(master)
        self.assertEqual(p.wait(10), 0)
        text = out.decode(errors="replace")
        self.assertEqual(text.count("\x1b[H\x1b[2J"), 3, "three redraws in place")
        self.assertIn("WORKER", text)
        self.assertIn("collected 100", text)
        self.assertRegex(text, r"throughput \d+ jobs/s")
        for w in self.stat()["workers"]:
            self.assertIn(str(w["pid"]), text)

    def test_stat_of_nothing(self):
        r = subprocess.run([BIN, "stat", "--socket", self.sock, "--json"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("connect to", r.stderr)
        r = subprocess.run([BIN, "serve", "--socket", self.sock], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("worker command", r.stderr)


def _local_square(x):
    return x * x


_local_square.__module__ = "__main__"  # as if defined in the client's script


class ProgressTest(unittest.TestCase):
    def test_lines_when_not_a_terminal(self):
        s = io.StringIO()
        p = Progress(100, stream=s)
        for _ in range(100):
            p.update(1)
        lines = s.getvalue().splitlines()
        self.assertTrue(lines[0].startswith("shmexec [") and "0/100" in lines[0])
        self.assertIn("100/100 100.0%", lines[-1])
        self.assertLessEqual(len(lines), 13, "occasional lines, not one per item")

    def test_in_place_on_a_terminal(self):
        class Tty(io.StringIO):
            def isatty(self):
                return True
        s = Tty()
        p = Progress(10, stream=s)
        p.update(10)
        self.assertIn("\r\x1b[K", s.getvalue())
        self.assertTrue(s.getvalue().endswith("\n"))
        self.assertIn("10/10", s.getvalue())


if __name__ == "__main__":
    unittest.main()
