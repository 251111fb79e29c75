"""shmexec's exceptions, the mapping from a job's C status to the exception
it raises, the one report of a failure nobody retrieved, and the one of a
callback that raised."""

import sys
import warnings

from . import _lib


class ShmexecError(Exception):
    """Base of shmexec's own errors."""


class ForkedError(ShmexecError):
    """The process was forked from one that used shmexec: pools cannot be
    used in the child (start them after the fork, or use exec)."""


class PoolDead(ShmexecError):
    """The process that served the pool (shmexec serve) died."""


class PoolClosed(ShmexecError):
    """The pool is closed."""


class WorkerStartError(ShmexecError):
    """No worker can start (a broken command, a failing initializer, or
    workers killed while they start): the task never ran. The message
    says why; the pool goes on trying and runs tasks again once a worker
    starts."""


class WorkerCrashed(ShmexecError):
    """The worker process running the task died (killed, segfault,
    os._exit). pid, signal and exit_code say how."""

    def __init__(self, message, pid=0, signal=0, exit_code=0):
        super().__init__(message)
        self.pid, self.signal, self.exit_code = pid, signal, exit_code


class RemoteError(ShmexecError):
    """An exception raised in a task that could not be rebuilt in the
    caller: its type name, message and the worker's traceback text."""

    def __init__(self, type_name, message, traceback_text):
        super().__init__(f"{type_name}: {message}")
        self.type_name, self.message, self.traceback = type_name, message, traceback_text

    def __str__(self):
        return f"{self.type_name}: {self.message}\n\nworker traceback:\n{self.traceback}"


def check_fork():
    """Raises ForkedError in a process forked from one that used shmexec."""
    if _lib.forked():
        raise ForkedError("this process was forked from one that used shmexec; use pools only in the process that made them")


def job_error(res, executor=True):
    """The exception that a fetched result res (a _lib.Result whose status
    is not SHMX_OK) stands for; executor: for an Executor's task, whose
    crash is also a BrokenProcessPool (_crash), else a Pool's."""
    st = res.status
    err = (res.error or b"").decode(errors="replace")
    if st == _lib.SHMX_EWORKER_CRASHED:
        how = f"killed by signal {res.signal}" if res.signal else f"exited with status {res.exit_code}"
        cls = WorkerCrashed
        if executor:
            from ._crash import ExecutorWorkerCrashed as cls
        return cls(f"worker pid {res.worker_pid} {how} while running the task", res.worker_pid, res.signal, res.exit_code)
    if st == _lib.SHMX_ETIMEDOUT:
        return TimeoutError(err or "the task ran past its timeout; its worker was killed")
    if st == _lib.SHMX_ECANCELLED:
        return cancelled_error()(err)
    if st == _lib.SHMX_ECLOSED:
        return PoolClosed(err)
    if st == _lib.SHMX_EPOOL_DEAD:
        return PoolDead(err or "the process serving the pool died")
    if st == _lib.SHMX_EWORKER_START:
        return WorkerStartError(err or "no worker can start")
    return ShmexecError(f"{_lib.strerror(st)}: {err}")


def cancelled_error():
    """concurrent.futures.CancelledError, imported when it is first needed:
    only a future is ever cancelled, a Pool imports concurrent.futures
    only once it makes its first future, and a worker never does."""
    from concurrent.futures import CancelledError

    return CancelledError


def call_error(rc, what):
    """The exception for a library call (what: "submit", "wait") that
    returned rc, with this thread's last error as its detail."""
    if rc == _lib.SHMX_ETOO_LARGE:
        return ValueError(f"shmexec: the call's arguments are too large for the pool: {_lib.last_error()} "
                          "(a pool made with a larger max_payload= takes them)")
    if rc == _lib.SHMX_EPOOL_DEAD:
        return PoolDead("the process serving the pool died")
    if rc == _lib.SHMX_ECLOSED:
        return PoolClosed(f"{what}: the pool is closed")
    if rc == _lib.SHMX_EWORKER_START:
        return WorkerStartError(_lib.last_error())
    return ShmexecError(f"{what}: {_lib.strerror(rc)}: {_lib.last_error()}")


def report_unretrieved(exc):
    """Reports a task's exception that nobody retrieved, as asyncio reports
    "exception was never retrieved" (Future and AsyncResult both call it
    as they are collected). An outcome that the caller caused — a cancel,
    or the pool closed or terminated under the task — is not reported."""
    cf = sys.modules.get("concurrent.futures._base")  # where no one imported it, exc is not one of its
    if isinstance(exc, PoolClosed) or cf is not None and isinstance(exc, cf.CancelledError):
        return
    warnings.warn(f"shmexec: a task's exception was never retrieved: {exc!r}", RuntimeWarning, stacklevel=3)


def interrupt(e):
    """Whether e must go on as it is, wherever shmexec catches what code it
    runs for a task raises (a result's unpickling, a callback) or cuts a
    clean-up short: an exception that is not an Exception
    (KeyboardInterrupt, SystemExit, ...) raised in the main thread, where
    signals' handlers raise. In any other thread (the pool's collector)
    no signal's handler runs, and such an exception is the code's own: it
    would end the thread, and with it every future that no caller waits
    for in result()."""
    if isinstance(e, Exception):
        return False
    import threading

    return threading.current_thread() is threading.main_thread()


def callback_raised(what):
    """Reports the exception that a callback of what (a future, a stream)
    raised, from the except block that caught it: logged, as
    concurrent.futures logs a done callback's; raised again where it is
    an interrupt, as concurrent.futures does in the main thread."""
    if interrupt(sys.exc_info()[1]):
        raise  # noqa: PLE0704 - the exception being handled, the main thread's to handle
    import logging  # only now: a Pool's script need not import it

    logging.getLogger("concurrent.futures").exception("exception calling callback for %r", what)
