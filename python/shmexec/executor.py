"""shmexec.Executor: a concurrent.futures.Executor whose workers are
processes that share memory with the caller, and its Future. Both are
faces of the engine (_engine), which Pool runs on without them: this
module is the one that imports concurrent.futures."""

import concurrent.futures as _cf
import threading
import time

from . import _errors, _lib
from ._engine import _CANCELLED, _CANCELLED_AND_NOTIFIED, _ENDED, _FINISHED, _OK, _PENDING, _RUNNING, Engine

# The engine spells a future's states itself, so as not to import
# concurrent.futures; they must be concurrent.futures' own.
if (_PENDING, _RUNNING, _FINISHED, _CANCELLED, _CANCELLED_AND_NOTIFIED) != (
        _cf._base.PENDING, _cf._base.RUNNING, _cf._base.FINISHED, _cf._base.CANCELLED, _cf._base.CANCELLED_AND_NOTIFIED):
    raise ImportError("shmexec: this Python's concurrent.futures names a future's states otherwise than shmexec expects")


class _LazyCondition:
    """Future._condition, made on first use: a future whose result is
    fetched by the thread that waits for it is settled without one
    (Future._settle), and a Condition costs as much to make as the C
    round trip of a tiny job. A non-data descriptor: once made, the
    instance's own attribute is found first. dict.setdefault is atomic, so two threads
    that ask at once get the same one."""

    def __get__(self, fut, owner=None):
        if fut is None:
            return self
        return fut.__dict__.setdefault("_condition", threading.Condition())


# What concurrent.futures.Future.__init__ sets; Future.__init__ sets the
# same without the condition, or, on a Python whose Future sets more,
# calls it.
_FUTURE_FIELDS = frozenset(("_condition", "_state", "_result", "_exception", "_waiters", "_done_callbacks"))
_LEAN_FUTURE = frozenset(vars(_cf.Future())) == _FUTURE_FIELDS


class Future(_cf.Future):
    """A concurrent.futures.Future that waits for its job in the calling
    thread (no hand-off to another thread) and reports, as it is
    collected, an exception that was never retrieved."""

    _observed = False
    _ex = None
    _job = None
    _condition = _LazyCondition()

    def __init__(self):
        if not _LEAN_FUTURE:
            super().__init__()
            return
        self._state = _PENDING
        self._result = self._exception = None
        self._waiters = []
        self._done_callbacks = []

    def set_result(self, result):
        if "_condition" in self.__dict__ or self._state != _RUNNING:
            return super().set_result(result)
        # Nobody has looked at this future from another thread (waiting,
        # add_done_callback, wait or as_completed all make its
        # condition): it is settled without a lock. One that arrives
        # meanwhile makes the condition before it reads the state, so it
        # either sees FINISHED or is seen below and notified as the base
        # class would. Callbacks put on the list before the future was
        # shared (Pool.apply_async's) run here too.
        self._result = result
        self._state = _FINISHED
        if "_condition" in self.__dict__:
            with self._condition:
                for waiter in self._waiters:
                    waiter.add_result(self)
                self._condition.notify_all()
            self._invoke_callbacks()
        elif self._done_callbacks:
            self._invoke_callbacks()

    def _invoke_callbacks(self):
        # They run once, as the future ends, and are dropped then: a
        # callback that refers back to what holds the future (a map's
        # stream, an apply_async's result) would otherwise leave a cycle
        # for the cyclic garbage collector, for every call. (One added
        # later runs at once, and is never kept.) What a callback raises
        # is reported (_errors.callback_raised).
        callbacks, self._done_callbacks = self._done_callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except BaseException:  # noqa: B902
                _errors.callback_raised(self)

    def result(self, timeout=None):
        self._observed = True
        left = self._wait(timeout)
        if self._state == _FINISHED and self._exception is None:
            return self._result  # settled (by this thread, as a rule): no second trip through the condition
        try:
            return super().result(left)
        finally:
            self = None  # no cycle through this frame with the exception it raises, as concurrent.futures' own result()

    def exception(self, timeout=None):
        self._observed = True
        return super().exception(self._wait(timeout))

    def cancel(self):
        """Cancels the task if it has not started: one still in this
        executor's queue, or queued in the pool (its job never runs).
        Returns whether the future is cancelled."""
        if super().cancel():
            return True
        ex, job = self._ex, self._job
        if ex is None or job is None or self.done() or not ex._open:
            return False
        if _lib.LIB.shmx_cancel(ex._pool, job, 0) != _OK:
            return False  # it runs already (or has ended)
        self._mark_cancelled()
        return True

    def _mark_cancelled(self):
        """The job was taken back before it ran (its outcome is
        ECANCELLED): the future is cancelled, as a pending one would be.
        Whichever comes first, cancel() or the fetched outcome, does it."""
        with self._condition:
            if self._state != _RUNNING:
                return
            self._state = _CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            self._condition.notify_all()
        self._invoke_callbacks()

    def _settle(self, outcome):
        """Ends the future with its job's outcome, ("ok", value) or
        ("exc", exception), unless it was cancelled meanwhile (the
        engine's books call it). One section of the future's condition:
        set_result and set_exception refuse a cancelled future
        themselves, so there is no separate cancelled() check before
        them."""
        kind, value = outcome
        if kind == "exc" and type(value) is _cf.CancelledError:
            self._mark_cancelled()  # only shmx_cancel, which Future.cancel calls, ends a job so
            return
        try:
            if kind == "ok":
                self.set_result(value)
            else:
                self.set_exception(value)
        except _cf.InvalidStateError:
            if not self.cancelled():
                raise  # settled twice: a bug, not a race with cancel

    def _wait(self, timeout):
        """Waits for the job in this thread, if it has one yet, and returns
        what is left of timeout for the base class's wait: one deadline
        for both."""
        if self._state in _ENDED:  # no lock needed: an ended state is final
            return timeout
        ex = self._ex
        if ex is not None and ex._books.handoff:
            ex._run_handed_here()  # a callback in the collector may wait for what was handed to it
            if self._state in _ENDED:
                return timeout
        if self._job is None:
            return timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        self._ex._wait_here(self, timeout)
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def __del__(self):
        try:  # the last reference: no other thread reads the state, and no lock is needed (or made)
            if not self._observed and self._state == _FINISHED and self._exception is not None:
                _errors.report_unretrieved(self._exception)
        except Exception:
            pass


class Executor(Engine, _cf.Executor):
    """A concurrent.futures.Executor whose workers are processes that share
    memory with the caller.

    The arguments are ProcessPoolExecutor's, in its order, and then
    shmexec's own:

    max_workers: worker processes (default: one per CPU this process may
        run on, as Python 3.13's os.process_cpu_count() counts them).
    mp_context: accepted for ProcessPoolExecutor's signature; workers are
        always started with exec, as the "spawn" start method does. A
        "spawn" or "forkserver" context (whose children are as fresh) is
        accepted, a "fork" context refused (ValueError).
    initializer(*initargs): runs once in each worker before its first task.
    max_tasks_per_child: a worker exits and is replaced after that many.
    timeout: seconds a task may run before its worker is killed (it then
        raises TimeoutError).
    retries: re-runs of a task whose worker died before it raises
        WorkerCrashed (which from an Executor is also the
        BrokenProcessPool that ProcessPoolExecutor's callers catch).
    pass_fds: descriptors every worker gets, as 4, 5, ... in order (the
        worker's SHMEXEC_PASS_FDS names them). Workers get no other
        descriptor of this process but standard input, output and error,
        and after these those that multiprocessing's spawn would hand a
        child: the ones multiprocessing objects among initargs hold, and
        the parent's sentinel. One made
        inheritable here is closed in them, as subprocess's close_fds
        does.
    max_payload: the most bytes a call's pickled arguments, and its
        pickled result, may take (default 256 MiB; at most 64 GiB). The
        pool reserves twice that in shared address space, which takes
        memory only as payloads use it. A call over it raises ValueError,
        a result over it fails its task saying so.
    connect: the socket path of a pool that `shmexec serve` serves: attach
        to it instead of starting workers (its workers, their number and
        their initializer are the server's; timeout and retries apply to
        this client's calls). If the server dies, calls raise PoolDead.

    The constructor returns once one worker is ready; tasks run on it
    while the others start. It raises WorkerStartError when no worker can
    start (a bad command, an initializer that fails in each of them).
    """

    def terminate_workers(self):
        """Python 3.14's ProcessPoolExecutor.terminate_workers: shuts down
        with cancel_futures=True and kills the workers at once (shmexec
        kills them with SIGKILL either way: see kill_workers). The tasks
        they were running raise PoolClosed; the executor takes no more."""
        self._force_shutdown()

    def kill_workers(self):
        """Python 3.14's ProcessPoolExecutor.kill_workers: as
        terminate_workers, which kills the workers too."""
        self._force_shutdown()

    def _force_shutdown(self):
        self.shutdown(wait=False, cancel_futures=True)
        self.terminate()
