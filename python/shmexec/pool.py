"""shmexec.Pool: the multiprocessing.Pool interface over a shmexec
Executor. Unlike multiprocessing.Pool it does not hang when a worker dies
or an exception cannot be unpickled: the task fails with WorkerCrashed or
RemoteError and the pool goes on."""

import concurrent.futures as cf
import multiprocessing
import threading

from . import _errors, _wire
from ._errors import check_fork
from .executor import _RUN, _SHUTDOWN, Executor, sequence


class AsyncResult:
    """The result of apply_async / map_async: get, wait, ready, successful."""

    def __init__(self, futures, single, callback=None, error_callback=None):
        self._futures = futures
        self._single = single
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._left = len(futures)
        self._callback, self._error_callback = callback, error_callback
        if not futures:
            self._finish()
        for f in futures:
            f.add_done_callback(self._one_done)

    def _one_done(self, _):
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._finish()

    def _finish(self):
        try:
            value = self._value()
        except BaseException as e:  # noqa: B902
            self._outcome = (False, e)
            if self._error_callback:
                self._error_callback(e)
        else:
            self._outcome = (True, value)
            if self._callback:
                self._callback(value)
        self._done.set()

    _outcome = None

    def _value(self):
        """The value, built once (a map's list can be large)."""
        if self._outcome is not None:
            ok, v = self._outcome
            if ok:
                return v
            raise v
        if self._single:
            return self._futures[0].result(0)
        out = []
        for f in self._futures:
            out.extend(f.result(0))
        return out

    def ready(self):
        return self._done.is_set()

    def wait(self, timeout=None):
        self._done.wait(timeout)

    def successful(self):
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return all(f.exception(0) is None for f in self._futures)

    def get(self, timeout=None):
        if not self._done.wait(timeout):
            raise multiprocessing.TimeoutError
        self._observed = True
        return self._value()

    _observed = False

    def __del__(self):
        # A failure nobody asked about is reported; an error_callback
        # counts as asking.
        try:
            if self._done.is_set() and not self._observed and not self._error_callback:
                for f in self._futures:
                    if f.exception(0) is not None:
                        _errors.report_unretrieved(f.exception(0))
                        break
        except Exception:
            pass


class Pool:
    """multiprocessing.Pool's interface: apply, apply_async, map, map_async,
    imap, imap_unordered, starmap, starmap_async, close, terminate, join.
    connect=PATH attaches to a pool that `shmexec serve` serves."""

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None, **kwargs):
        self._ex = Executor(processes, initializer=initializer, initargs=initargs, max_tasks_per_child=maxtasksperchild, **kwargs)

    # The pool's state is its executor's: running, closed (close: no new
    # tasks; join waits for the rest) or terminated.

    def _check_running(self):
        check_fork()
        if self._ex._books.state != _RUN:
            raise ValueError("Pool not running")

    def apply(self, func, args=(), kwds={}):
        if self._ex._books.state != _RUN:
            raise ValueError("Pool not running")
        return self._ex._call(func, args, kwds)  # checks for a fork

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        self._check_running()
        return AsyncResult([self._ex.submit(func, *args, **kwds)], True, callback, error_callback)

    # The map family takes progress=True to show a progress bar on stderr
    # (count, rate, ETA; in place on a terminal, occasional lines otherwise).

    def _chunks(self, func, iterable, chunksize, star, progress=False, own=False):
        self._check_running()
        items = [tuple(a) for a in iterable] if star else sequence(iterable)
        return self._ex._submit_batches(func, items, chunksize, star, progress, own)

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None, progress=False):
        return AsyncResult([_Unbatch(f) for f in self._chunks(func, iterable, chunksize, False, progress)], False, callback, error_callback)

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None, progress=False):
        return AsyncResult([_Unbatch(f) for f in self._chunks(func, iterable, chunksize, True, progress)], False, callback, error_callback)

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
        if not progress:
            return self._ex._own_batch_values(self._chunks(func, iterable, chunksize, star, own=True))
        futures = self._chunks(func, iterable, chunksize, star, progress)
        out = []
        try:
            for f in futures:
                out.extend(_wire.batch_values(f.result()))
        except BaseException:
            for f in futures:
                f._observed = True
            raise
        return out

    def imap(self, func, iterable, chunksize=1, progress=False):
        futures = [_Unbatch(f) for f in self._chunks(func, iterable, chunksize, False, progress)]

        def gen():
            for f in futures:
                yield from f.result()
        return gen()

    def imap_unordered(self, func, iterable, chunksize=1, progress=False):
        futures = [_Unbatch(f) for f in self._chunks(func, iterable, chunksize, False, progress)]

        def gen():
            for f in cf.as_completed(futures):
                yield from f.result()
        return gen()

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


class _Unbatch(cf.Future):
    """A future of a batch job whose result is the list of its items'
    values (raising the first item's exception)."""

    def __init__(self, batch_future):
        super().__init__()
        self._inner = batch_future
        batch_future.add_done_callback(self._copy)

    def _copy(self, f):
        try:
            values = _wire.batch_values(f.result(0))
        except BaseException as e:  # noqa: B902
            self.set_exception(e)
        else:
            self.set_result(values)
