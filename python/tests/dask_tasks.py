"""Tasks for test_dask: imported by reference in the Dask workers and in
their shmexec processes (the tests put this folder on PYTHONPATH)."""

import ctypes
import os
import signal
import time


def cpu(n):
    """Pure-Python CPU work (holds the GIL): a sum of squares mod a prime."""
    s = 0
    for i in range(n):
        s = (s + i * i) % 1_000_003
    return s


def total(*xs):
    return sum(xs)


def where():
    """The pid of the process the task runs in, and its parent's."""
    return os.getpid(), os.getppid()


def segfault():
    ctypes.string_at(0)


def exit_now(code):
    os._exit(code)


def sigkill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def crash_once(marker):
    """SIGKILLs its process the first time (marker absent), then returns."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


def sleep(s):
    time.sleep(s)
    return s


def boom(msg):
    raise ValueError(msg)


def big_array(n):
    import numpy

    return numpy.arange(n, dtype=numpy.int64)


def executor_pids(dask_worker, name="processes"):
    """Run by Client.run in a Dask worker: its shmexec processes' pids."""
    ex = dask_worker.executors.get(name)
    return [] if ex is None else [p for p in ex._worker_pids() if p]
