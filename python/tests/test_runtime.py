"""The library's Go runtime and the threads that call into it."""

import os
import subprocess
import sys
import textwrap
import unittest

import _paths  # noqa: E402  (sys.path: the checkout's package, or the installed one)

# A child process calls into the library back to back for a second from
# its one thread and prints how many times that thread gave up its CPU.
# The call (shmx_results_in_place on a closed pool's handle) enters Go,
# looks the handle up, allocates nothing and returns, so nothing of the
# library's own makes the thread wait.
_CHILD = textwrap.dedent("""
    import threading, time
    import shmexec
    from shmexec import _lib, _wire

    def switches():
        with open(f"/proc/self/task/{threading.get_native_id()}/status") as f:
            return next(int(l.split(":")[1]) for l in f if l.startswith("voluntary_ctxt_switches"))

    with shmexec.Executor(max_workers=1) as ex:
        ex.submit(int).result()
        handle = ex._pool
        call = _lib.LIB.shmx_results_in_place
        assert call(handle, _wire.HUGE) == 0
    # Closed: the handle stays valid memory, and every call on it enters
    # Go and answers SHMX_EINVAL; no thread of the pool is left to take
    # the GIL from this one.
    assert call(handle, _wire.HUGE) != 0 and threading.active_count() == 1, threading.enumerate()
    for _ in range(1000):
        call(handle, _wire.HUGE)
    before, calls, start = switches(), 0, time.monotonic()
    while time.monotonic() - start < 1.0:
        call(handle, _wire.HUGE)
        calls += 1
    print(switches() - before, calls)
""")


class GoRuntimeTest(unittest.TestCase):
    def test_a_thread_that_calls_in_back_to_back_keeps_its_cpu(self):
        # The stock Go runtime asks the goroutine of a thread that calls in
        # from C to stop once its P's scheduling tick has stood still for
        # 10 ms, which it always has for such a thread (it never passes
        # through the scheduler), and the stop hands the thread's P to
        # another thread and back: 43-49 voluntary switches in the second here.
        # The library is built with internal/rtpatch's change, under which
        # leaving a system call (or a cgo call, for a call in from C)
        # starts a new slice: none. A few are allowed for whatever else
        # the kernel makes the thread wait for.
        out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=60,
                             env=dict(os.environ, PYTHONPATH=_paths.PYTHONPATH))
        self.assertEqual(out.returncode, 0, out.stderr)
        switched, calls = map(int, out.stdout.split())
        self.assertGreater(calls, 10_000, "the calls were too slow to tell anything")
        self.assertLessEqual(switched, 3, f"the calling thread gave up its CPU {switched} times in {calls} calls over 1 s: "
                             "is the library built without internal/rtpatch's runtime change?")


if __name__ == "__main__":
    unittest.main()
