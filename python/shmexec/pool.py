"""shmexec.Pool: the multiprocessing.Pool interface over the engine of
a shmexec Executor (_engine), without concurrent.futures. Unlike
multiprocessing.Pool it does not hang when a worker dies or an exception
cannot be unpickled: the task fails with WorkerCrashed or RemoteError
and the pool goes on."""

import ctypes
import queue
import threading
import time
import warnings

from . import _errors, _lib, _reduction, _wire
from ._errors import check_fork
from ._engine import _CLOSED, _ENDED, _FINISHED, _RUN, _SHUTDOWN, _SLICE_NS, _TERMINATED, Engine, check_chunksize, check_context, sequence

# multiprocessing.pool's names for a pool's states, its RUN, CLOSE and
# TERMINATE (code in the wild, and CPython's own tests, read and set
# Pool._state); not imported from it: multiprocessing.pool imports
# subprocess, multiprocessing.connection and more, which nothing here uses
# (test_pool checks that the names are its).
_STATE_NAMES = {_RUN: "RUN", _SHUTDOWN: "CLOSE", _CLOSED: "CLOSE"}  # joined after close: still CLOSE
_STATES = {"RUN": _RUN, "CLOSE": _SHUTDOWN, "TERMINATE": _TERMINATED}


class AsyncResult:
    """The result of an asynchronous call of a Pool, as multiprocessing's:
    get, wait, ready, successful. A subclass says when it is ready
    (ready, _ended) and what it holds (_take, _succeeded): a map's
    (_MapResult) or a call's (_CallResult, _CallbackResult)."""

    def wait(self, timeout=None):
        self._ended(timeout)

    def get(self, timeout=None):
        """The value (a list for a map); raises the task's exception, or
        multiprocessing.TimeoutError if it is not ready within timeout."""
        if not self._ended(timeout):
            _timed_out()
        try:
            return self._take()
        finally:
            self = None  # no cycle through this frame with the exception it raises (see _take)

    def successful(self):
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._succeeded()


class _MapResult(AsyncResult):
    """map_async's and starmap_async's result. It is ready once every
    batch has ended (or the map's iterable raised), and its callbacks
    have run."""

    def __init__(self, stream, tb_type, callback=None, error_callback=None, ex=None):
        self._ex = ex  # for a stream of job numbers
        self._stream = stream
        self._tb_type = tb_type
        self._done = threading.Event()
        self._callback, self._error_callback = callback, error_callback
        self._outcome = None
        stream.on_complete(self._finish)

    def _finish(self, stream):
        # Ready even if a callback raises: its exception goes on to
        # whoever settled the result (the future's callback runner logs
        # it), and get() returns the task's own outcome. (A raising
        # callback ends multiprocessing's result thread, and get() waits
        # for ever.)
        try:
            try:
                value = self._value(stream)
            except BaseException as e:  # noqa: B902
                self._outcome = (False, e)
                if self._error_callback:
                    self._error_callback(e)
            else:
                self._outcome = (True, value)
                if self._callback:
                    self._callback(value)
        finally:
            self._stream = None  # the batches, and their results, are ours no longer
            self._done.set()

    def _value(self, stream):
        batches = stream.all_batches()
        out = []
        for k, b in enumerate(batches):
            try:
                ok, v = _outcome(self._ex, b)  # every batch has ended
                if ok != "ok":
                    raise v
                out.extend(_wire.batch_values(v, self._tb_type))
            except BaseException:
                for job in batches[k + 1:]:  # the first failure is the map's: the others' outcomes are dropped
                    if type(job) is int:
                        self._ex._abandon(job)
                raise
        if stream.error is not None:
            raise stream.error
        return out

    def ready(self):
        return self._done.is_set()

    def _ended(self, timeout):
        return self._done.wait(timeout)

    def _take(self):
        self._observed = True
        ok, v = self._outcome
        if ok:
            return v
        try:
            raise v
        finally:
            v = self = None  # no cycle through this frame, as concurrent.futures' Future.result

    def _succeeded(self):
        return self._outcome[0]

    _observed = False

    def __del__(self):
        # A failure nobody asked about is reported; an error_callback
        # counts as asking.
        try:
            if self._done.is_set() and not self._observed and not self._error_callback and not self._outcome[0]:
                _errors.report_unretrieved(self._outcome[1])
        except Exception:
            pass


class _CallResult(AsyncResult):
    """apply_async's result when it has no callbacks: its future is all
    of it. Nothing runs for it as the call ends (no Event, no done
    callback), so the thread that fetches the outcome, most often the
    collector while the caller submits the next call, only settles the
    future. The future reports an exception nobody retrieved."""

    def __init__(self, fut):
        self._fut = fut

    def ready(self):
        return self._fut._state in _ENDED

    def _ended(self, timeout):
        """Waits up to timeout (None: for ever) until ready, fetching the
        outcome in this thread (and running the callbacks here) where no
        other thread has it; whether it is ready. Otherwise (the call is
        still queued in the feeder, or another thread fetches it) it waits
        on the future's condition, which settling the future notifies, as
        does the callback of a _CallbackResult."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._fut._wait(timeout)
        if self.ready():
            return True
        cond = self._fut._condition  # made before ready() is read again: see Future.set_result
        with cond:
            while not self.ready():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                cond.wait(left)
        return True

    def _take(self):
        try:
            return self._fut.result(0)
        finally:
            self = None  # no cycle through this frame with the future's exception

    def _succeeded(self):
        return self._fut._state == _FINISHED and self._fut._exception is None  # (not cancelled)


class _CallbackResult(_CallResult):
    """apply_async's result with a callback or an error_callback. It is
    ready once the callback has run, as multiprocessing's is (get returns
    after it): the thread that settles the future runs it."""

    def __init__(self, fut, callback, error_callback):
        self._fut = fut
        self._callback, self._error_callback = callback, error_callback
        self._called = False
        # The future is not submitted yet: no other thread sees it, and
        # the callback goes on its list without its condition (which
        # add_done_callback would make for every call).
        fut._done_callbacks.append(self._run)

    def _run(self, fut):
        # Ready even if a callback raises: its exception goes on to the
        # future's callback runner, which logs it, and get() gives the
        # task's own outcome. (A raising callback ends multiprocessing's
        # result thread, and its get() waits for ever.)
        try:
            if fut._state == _FINISHED and fut._exception is None:
                if self._callback is not None:
                    self._callback(fut._result)
            elif self._error_callback is not None:
                fut._observed = True  # the error_callback counts as asking
                self._error_callback(fut._exception if fut._state == _FINISHED else _errors.cancelled_error()())
        finally:
            self._called = True
            cond = fut.__dict__.get("_condition")  # made by a waiter in another thread (_ended)
            if cond is not None:
                with cond:
                    cond.notify_all()

    def ready(self):
        return self._called


class Pool:
    """multiprocessing.Pool's interface: apply, apply_async, map, map_async,
    imap, imap_unordered, starmap, starmap_async, close, terminate, join.
    The asynchronous calls return at once; the pool's feeder submits
    their tasks as room frees. context: a "spawn" or "forkserver"
    multiprocessing context, or None (workers are always started with
    exec; a "fork" context is refused). connect=PATH attaches
    to a pool that `shmexec serve` serves; timeout=, retries=, pass_fds=
    and max_payload= are shmexec.Executor's."""

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None, context=None, **kwargs):
        if processes is not None and processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None and (type(maxtasksperchild) is not int or maxtasksperchild <= 0):
            raise ValueError("maxtasksperchild must be a positive int or None")
        check_context(context)
        self._ex = Engine(processes, initializer=initializer, initargs=initargs, max_tasks_per_child=maxtasksperchild,
                          _tb_type=_wire.POOL_TRACEBACK, **kwargs)
        self._ex._at_exit_terminate = True

    # The pool's state is its engine's: running, closed (close: no new
    # tasks; join waits for the rest) or terminated.

    @property
    def _state(self):
        """multiprocessing.pool's name of the state: RUN, CLOSE or TERMINATE."""
        return _STATE_NAMES.get(self._ex._books.state, "TERMINATE")

    @_state.setter
    def _state(self, name):
        self._ex._books.state = _STATES[name]

    @property
    def _processes(self):
        """The number of worker processes."""
        return self._ex._workers

    @property
    def _pool(self):
        """The worker processes, one a worker slot, as multiprocessing's
        Pool lists them (each with pid, is_alive(), terminate())."""
        from ._engine import WorkerProcess

        return [WorkerProcess(pid) for pid in self._ex._worker_pids()]

    def stats(self):
        """The pool's counters and space: Executor.stats."""
        return self._ex.stats()

    def _check_running(self):
        check_fork()
        if self._ex._books.state != _RUN:
            raise ValueError("Pool not running")

    def apply(self, func, args=(), kwds={}):
        """func(*args, **kwds) in a worker, waited for here."""
        if self._ex._books.state != _RUN:
            raise ValueError("Pool not running")
        return self._ex._call(func, args, kwds)  # checks for a fork

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        """func(*args, **kwds) in a worker; returns an AsyncResult at once.
        callback (of the value) or error_callback (of the exception) runs
        in the thread that fetches the result: one waiting in get() or
        wait(), else the pool's collector thread."""
        self._check_running()
        # The result is made before the submit: a caller that waits at
        # once (get) is then waiting before a tiny job ends, and fetches
        # it itself rather than through the collector thread. What cannot
        # be pickled, or args that are not iterable and kwds that are not
        # a mapping, fail it: get() raises it, as multiprocessing's does.
        fut = self._ex._new_future()
        if callback is None and error_callback is None:
            result = _CallResult(fut)
        else:
            result = _CallbackResult(fut, callback, error_callback)
        self._ex._submit_new(func, args, kwds, fut=fut)
        return result

    # The map family takes progress=True to show a progress bar on stderr
    # (count, rate, ETA; in place on a terminal, occasional lines otherwise).

    def _items(self, iterable, star):
        """A map's items as a sequence, consumed here as multiprocessing's
        map does (what the iterable raises, raises here)."""
        return [tuple(a) for a in iterable] if star else sequence(iterable)

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None, progress=False):
        self._check_running()
        check_chunksize(chunksize)
        stream = self._ex._stream(func, self._items(iterable, False), chunksize, False, progress, untracked=True)
        return self._ex._feed(stream, _MapResult(stream, _wire.POOL_TRACEBACK, callback, error_callback, self._ex))

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None, progress=False):
        self._check_running()
        check_chunksize(chunksize)
        stream = self._ex._stream(func, self._items(iterable, True), chunksize, True, progress, untracked=True)
        return self._ex._feed(stream, _MapResult(stream, _wire.POOL_TRACEBACK, callback, error_callback, self._ex))

    def map(self, func, iterable, chunksize=None, progress=False):
        return self._map_here(func, iterable, chunksize, False, progress)

    def starmap(self, func, iterable, chunksize=None, progress=False):
        return self._map_here(func, iterable, chunksize, True, progress)

    def _map_here(self, func, iterable, chunksize, star, progress):
        """map and starmap: the batches are fetched in the calling thread,
        in order, as jobs of its own: no future, no AsyncResult, and the
        collector thread is not woken for them (it would take the GIL from
        this thread as each batch ends). The first failure is raised, as
        multiprocessing does, and counts as the report of the others."""
        self._check_running()
        check_chunksize(chunksize)
        items = self._items(iterable, star)
        if progress:
            return self.map_async(func, items, chunksize, progress=progress).get() if not star else \
                self.starmap_async(func, items, chunksize, progress=progress).get()
        return self._ex._own_batch_values(self._ex._own_batches(func, items, chunksize, star))

    def imap(self, func, iterable, chunksize=1, progress=False):
        """An iterator of func's results in order (an IMapIterator),
        returned at once; the iterable is consumed by the pool's feeder as
        room frees. A task's exception is raised where its result would
        be, and iteration goes on after it; if the iterable raises, the
        results before it come first, then its exception."""
        self._check_running()
        check_chunksize(chunksize)
        stream = self._ex._stream(func, iterable, chunksize, False, progress, untracked=True, reader="in order")
        return self._ex._feed(stream, IMapIterator(self._ex, stream, True, self._ex._tb_type))

    def imap_unordered(self, func, iterable, chunksize=1, progress=False):
        """imap, with each batch's results as soon as it ends."""
        self._check_running()
        check_chunksize(chunksize)
        ends = queue.SimpleQueue()  # with a progress bar, whose batches are futures
        stream = self._ex._stream(func, iterable, chunksize, False, progress, untracked=True, report=ends, reader="as they end")
        return self._ex._feed(stream, IMapIterator(self._ex, stream, False, self._ex._tb_type, ends))

    def close(self):
        """No new tasks; those submitted run on (join waits for them)."""
        self._ex._stop_intake()

    def terminate(self):
        """Kills the workers now; pending tasks raise PoolClosed."""
        self._ex.terminate()

    def join(self):
        """Waits, after close, until every task has run and the workers
        have exited; after terminate, returns at once."""
        state = self._ex._books.state
        if state == _RUN:
            raise ValueError("Pool is still running")
        if state == _SHUTDOWN:
            self._ex._close_handle()

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, *exc):
        self.terminate()  # as multiprocessing.Pool does

    def __repr__(self):
        return f"<{type(self).__module__}.{type(self).__qualname__} state={self._state} pool_size={self._processes}>"

    def __del__(self):
        # As multiprocessing's: a pool collected while it runs was never
        # closed; its engine shuts down without waiting.
        try:
            if self._ex._books.state == _RUN and not _lib.forked():  # a forked child's copy is not its pool
                warnings.warn(f"unclosed running multiprocessing pool {self!r}", ResourceWarning, source=self)
                self._ex._shut_down_later()
        except Exception:
            pass

    __reduce_ex__ = _reduction.refuse_pickling


class IMapIterator:
    """The iterator of Pool.imap and imap_unordered, as multiprocessing's:
    next(timeout) raises multiprocessing.TimeoutError when no result comes
    within timeout seconds; a task's exception is raised by the next()
    that reaches its item, and the next() after it goes on with the
    following item (for every chunksize: multiprocessing's iterator ends
    there when chunksize > 1); what the iterable raised comes after the
    results before it. Every item is run, whether the iterator is read
    to its end or dropped, as multiprocessing's are (close and join wait
    for them; terminate stops them)."""

    def __init__(self, ex, stream, ordered, tb_type, ends=None):
        self._ex = ex
        self._stream = stream
        self._tb_type = tb_type
        self._values = []  # the outcomes of the batch being given out, last first
        self._finished = False
        self._ordered = ordered
        self._batch = None  # ordered: the batch waited for, kept when a wait runs out
        if not ordered:
            self._ends = ends  # the stream's report: indices of ended batches, then None at its end
            self._taken = 0
            self._over = False
            # A stream with a group: the job its group reported last, until
            # it is taken (kept here when the call is interrupted as the
            # wait returns); once the pool is closed, the jobs not taken.
            self._got = ctypes.c_uint64() if stream.by_job else None
            self._rest = None

    def __iter__(self):
        return self

    def next(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._values:
            if self._finished:
                raise StopIteration
            if self._ordered:
                outcome = self._next_ordered(deadline)
            elif self._got is not None:
                outcome = self._next_in_group(deadline)
            else:
                outcome = self._next_unordered(deadline)
            if outcome is None:
                self._finished = True
                if self._stream.error is not None:
                    raise self._stream.error
                raise StopIteration
            ok, v = outcome
            del outcome
            if ok != "ok":
                try:
                    raise v  # a failure of the whole batch (its worker died), raised once
                finally:
                    # No cycle through this frame (the exception's traceback
                    # holds it): a dropped iterator gives its batches up at
                    # once, not at the next garbage collection.
                    v = self = None
            _, values = v
            values.reverse()
            self._values = values
        v = self._values.pop()
        if type(v) is _wire.Failure:
            raise _wire.rebuild(v.outcome, self._tb_type)[1]
        return v

    __next__ = next

    def _next_ordered(self, deadline):
        """The outcome of the next batch in order, or None at the end. A
        wait that runs out (or is interrupted) keeps the batch for the
        next call."""
        if self._batch is None:
            try:
                self._batch = self._stream.next_batch(deadline)
            except TimeoutError:
                _timed_out()
            if self._batch is None:
                return None
        outcome = _outcome(self._ex, self._batch, deadline)
        if outcome is None:
            _timed_out()
        self._batch = None
        return outcome

    def _next_in_group(self, deadline):
        """The outcome of the next batch to end, or None at the end, for a
        stream whose batches are a job group's: the group reports each
        to this thread as it ends (shmx_wait_group), which fetches it;
        batches that could not be sent come from the stream. Waits in
        slices, so that Ctrl-C works."""
        ex, stream, got = self._ex, self._stream, self._got
        while True:
            if got.value:
                job = got.value
                if not stream.wait_listed(job):
                    return None  # abandoned: not read any more
                outcome = ex._wait_untracked(job)  # it has ended: at once
                stream.took(job)
                got.value = 0
                return outcome
            ended, untaken, failed = stream.group_state()
            if failed is not None:
                return ("exc", failed)
            if not untaken:
                if ended:
                    return None
                if not stream.wait_for_batches(deadline):
                    _timed_out()
                continue
            # A deadline that has passed still gets one look that does not
            # wait (next(timeout=0) after join: the close has them all).
            ns = _SLICE_NS if deadline is None else max(0, min(_SLICE_NS, int((deadline - time.monotonic()) * 1e9)))
            rc = ex._wait_group(stream.group, ns, got)
            if rc == _lib.SHMX_ETIMEDOUT and ns < _SLICE_NS and not got.value:
                _timed_out()
            if rc in (_lib.SHMX_ECLOSED, _lib.SHMX_EINVAL):
                # Closed: the shutdown fetched the rest into the books, or
                # a terminate ended them (PoolClosed).
                if self._rest is None:
                    self._rest = stream.untaken_jobs()
                if not self._rest:
                    return None
                got.value = self._rest.pop()

    def _next_unordered(self, deadline):
        """The outcome of the next batch to end, or None at the end."""
        while not (self._over and self._taken == self._stream.count()):
            try:
                i = self._ends.get(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                _timed_out()
            if i is None:
                self._over = True
                continue
            self._taken += 1
            return _outcome(self._ex, self._stream.take(i))  # it has ended
        return None

    def __del__(self):
        # The results not read are dropped as they come (the tasks run),
        # by the collector thread: this may run wherever the garbage
        # collector does, in a thread that holds the engine's lock.
        try:
            if self._stream._make_future is None:
                self._ex._books.dropped.append(self._stream)
        except Exception:
            pass



def _outcome(ex, batch, deadline=None):
    """A Stream batch's outcome, ("ok", (failed, values)) or ("exc", e),
    or None if deadline (time.monotonic) passes first: for a job number,
    taken from the engine's early outcomes (or fetched); for an
    exception (a batch that could not be sent), that; for a future, its
    result."""
    if type(batch) is int:
        return ex._wait_untracked(batch, deadline)
    if isinstance(batch, BaseException):
        return ("exc", batch)
    cancelled = _errors.cancelled_error()
    try:  # the wait, which may be interrupted (the batch stays the caller's)
        batch.exception(None if deadline is None else max(0.0, deadline - time.monotonic()))
    except TimeoutError:  # concurrent.futures' since Python 3.11
        return None
    except cancelled:
        pass  # the outcome, raised by result()
    try:
        return ("ok", batch.result(0))
    except BaseException as e:  # noqa: B902 - the batch's own outcome
        return ("exc", e)


def _timed_out():
    import multiprocessing  # imported here: 5 ms of a short script's start that only a timeout needs

    raise multiprocessing.TimeoutError from None
