"""shmexec: a process pool over shared memory.

    import shmexec
    with shmexec.Executor(max_workers=4) as ex:
        print(list(ex.map(pow, [2, 3], [10, 10])))

Executor is a concurrent.futures.Executor. Workers are `python -m
shmexec.worker` processes started with exec (never fork); calls travel as
pickles (protocol 5, buffers out of band) through the shared segment.
A task whose worker dies raises WorkerCrashed; an exception that cannot be
rebuilt in the caller arrives as RemoteError; nothing hangs.
"""

import concurrent.futures as _cf
import ctypes
import os
import pickle
import sys
import threading
import time
import warnings

from . import _lib, _wire

__all__ = ["Executor", "Pool", "RemoteError", "WorkerCrashed", "ForkedError", "PoolClosed", "ShmexecError"]

_LIB, LIBRARY_PATH = _lib.load()
_ZERO_COPY_FROM = 64 << 10  # payloads this large are written straight into the segment
_SLICE_NS = 100_000_000  # a caller waits in slices this long, so that Ctrl-C works
_UNFETCHED = 1  # a Result.status no C call sets (codes are <= 0)
_OK = _lib.SHMX_OK
# shmx_call_into for Executor._call, without argtypes: _call passes C
# values, and converting ten arguments through argtypes costs 0.45 us, as
# much as the C call itself.
_CALL_INTO = _LIB["shmx_call_into"]
_SLICE_C = ctypes.c_int64(_SLICE_NS)
_BIG_C = ctypes.c_size_t(_wire.BIG)
_forked = False


def _after_fork_in_child():
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)


class ShmexecError(Exception):
    """Base of shmexec's own errors."""


class ForkedError(ShmexecError):
    """The process was forked from one that used shmexec: pools cannot be
    used in the child (start them after the fork, or use exec)."""


class PoolDead(ShmexecError):
    """The process that served the pool (shmexec serve) died."""


class PoolClosed(ShmexecError):
    """The pool is closed."""


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


def _check_fork():
    if _forked:
        raise ForkedError("this process was forked from one that used shmexec; use pools only in the process that made them")


def _strerror(rc):
    return _LIB.shmx_strerror(rc).decode()


def _last_error():
    return (_LIB.shmx_last_error() or b"").decode(errors="replace")


def _worker_argv(initializer, initargs):
    """The worker command: this interpreter, with shmexec importable from
    where it is loaded now, and the main script for __main__ functions."""
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    main = _main_ref()
    init = ""
    if initializer is not None:
        init = bytes(_wire.dumps((_check_sendable(initializer, "initializer"), tuple(initargs)))).hex()
    boot = (
        "import sys; sys.path[:0] = %r; from shmexec.worker import main; sys.exit(main(sys.argv[1:]))"
        % ([pkg_parent] + [p for p in sys.path if p],)
    )
    return [sys.executable, "-c", boot, main, init]


def _main_ref():
    """How a worker finds the caller's main module, as multiprocessing's
    spawn does: "mod:NAME" when it was run with -m, "path:FILE" for a
    script, "" when there is none to load (a console, or a package's
    __main__ like `python -m unittest`, whose top level must not run)."""
    m = sys.modules.get("__main__")
    spec = getattr(m, "__spec__", None)
    if spec is not None:
        name = spec.name
        if name == "__main__" or name.endswith(".__main__"):
            return ""
        return "mod:" + name
    f = getattr(m, "__file__", None)
    return "path:" + os.path.abspath(f) if f else ""


_sendable = {}  # plain function -> (served, its key in call frames), for the few a program sends
_FUNCTION_TYPES = (type(_check_fork), type(len))


def _function_ref(fn, served=False, what="function"):
    """Checks that a worker can find fn — failing at submit time, in the
    caller, with what to do — and returns the key that names it in call
    frames (_wire.function_ref), or None for a callable that is not a
    plain function (it is pickled with each call)."""
    if type(fn) not in _FUNCTION_TYPES:
        _check_sendable_slow(fn, what, served)
        return None
    hit = _sendable.get(fn)
    if hit is not None and hit[0] is served:
        return hit[1]
    _check_sendable_slow(fn, what, served)
    ref = _wire.function_ref(fn)
    if len(_sendable) < 4096:
        _sendable[fn] = (served, ref)
    return ref


def _check_sendable(fn, what="function", served=False):
    """Fails at submit time, in the caller, for what a worker cannot find."""
    _function_ref(fn, served, what)
    return fn


def _check_sendable_slow(fn, what, served):
    name = getattr(fn, "__qualname__", repr(fn))
    if served and getattr(fn, "__module__", None) in ("__main__", "__mp_main__"):
        raise TypeError(
            f"shmexec cannot send the {what} {name!r} to a served pool: its workers were started by "
            "`shmexec serve`, not from this script, so they cannot find functions of __main__. "
            "Put it in a module the workers can import."
        )
    if "<lambda>" in name or "<locals>" in name:
        raise TypeError(
            f"shmexec cannot send the {what} {name!r} to a worker: lambdas and functions defined inside "
            "other functions cannot be found by name in another process. Define it at module level."
        )
    try:
        pickle.dumps(fn, protocol=5)
    except Exception as e:
        raise TypeError(f"shmexec cannot send the {what} {fn!r} to a worker: {e}. Define it at module level.") from None
    return fn


class _Future(_cf.Future):
    """A concurrent.futures.Future that warns when its exception was never
    retrieved, as asyncio does."""

    _observed = False
    _ex = None
    _job = None

    def result(self, timeout=None):
        self._observed = True
        if self._ex is not None and not self.done():
            self._ex._wait_here(self, timeout)
        return super().result(timeout)

    def exception(self, timeout=None):
        self._observed = True
        if self._ex is not None and not self.done():
            self._ex._wait_here(self, timeout)
        return super().exception(timeout)

    def __del__(self):
        try:
            if not self._observed and self.done() and not self.cancelled() and super().exception(0) is not None:
                warnings.warn(
                    f"shmexec: a task's exception was never retrieved: {super().exception(0)!r}",
                    RuntimeWarning,
                    stacklevel=2,
                )
        except Exception:
            pass


def _outcome(res):
    """The value or exception a finished job's result stands for."""
    st = res.status
    if st == _lib.SHMX_OK:
        data = memoryview((ctypes.c_char * res.len).from_address(res.data)).cast("B") if res.len else b""
        return _wire.loads(data)  # copies out what it keeps; res is released after
    err = (res.error or b"").decode(errors="replace")
    if st == _lib.SHMX_EWORKER_CRASHED:
        how = f"killed by signal {res.signal}" if res.signal else f"exited with status {res.exit_code}"
        return ("exc", WorkerCrashed(f"worker pid {res.worker_pid} {how} while running the task", res.worker_pid, res.signal, res.exit_code))
    if st == _lib.SHMX_ETIMEDOUT:
        return ("exc", TimeoutError(err or "the task ran past its timeout; its worker was killed"))
    if st == _lib.SHMX_ECANCELLED:
        return ("exc", _cf.CancelledError(err))
    if st == _lib.SHMX_ECLOSED:
        return ("exc", PoolClosed(err))
    if st == _lib.SHMX_EPOOL_DEAD:
        return ("exc", PoolDead(err or "the process serving the pool died"))
    return ("exc", ShmexecError(f"{_strerror(st)}: {err}"))


def _decoded(res):
    """The outcome of a fetched result (not yet released): ("ok", value)
    or ("exc", exception); a small value is copied out with one call."""
    if res.status == _lib.SHMX_OK and 0 < res.len < _wire.BIG:
        return _decoded_frame(ctypes.string_at(res.data, res.len))
    try:
        return _rebuild(_outcome(res))
    except Exception as e:  # a result that cannot be decoded
        return ("exc", RemoteError(type(e).__qualname__, str(e), ""))


def _decoded_frame(frame):
    """The outcome of a successful job's output frame (bytes-like)."""
    try:
        outcome = _wire.loads(frame)
        return _rebuild(outcome) if outcome[0] == "err" else outcome
    except Exception as e:  # a result that cannot be decoded
        return ("exc", RemoteError(type(e).__qualname__, str(e), ""))


class _CallSlot:
    """What one shmx_call_into needs, made once and reused by later calls
    (Executor._call): a buffer for a small result, the job number, the
    result, and their C references."""

    __slots__ = ("addr", "view", "body", "job", "res", "job_ref", "res_ref", "_buf")

    def __init__(self):
        self._buf = (ctypes.c_char * _wire.BIG)()
        self.addr = ctypes.c_void_p(ctypes.addressof(self._buf))
        self.view = memoryview(self._buf).cast("B")
        self.body = self.view[4:]  # a value frame's body (_wire.load_value)
        self.job, self.res = ctypes.c_uint64(), _lib.Result()
        self.job_ref, self.res_ref = ctypes.byref(self.job), ctypes.byref(self.res)

    def outcome(self, n):
        """The outcome of the n-byte output frame in the buffer."""
        if n > 4 and self.view[3] == _wire.VALUE:  # _wire.is_value, inline: this runs for every apply
            try:
                return ("ok", _wire.load_value(self.body))
            except Exception as e:  # a result that cannot be decoded
                return ("exc", RemoteError(type(e).__qualname__, str(e), ""))
        return _decoded_frame(self.view[:n])


def _rebuild(outcome):
    """('ok', value) -> value; ('err', ...) -> the exception to raise."""
    if outcome[0] == "exc":
        return outcome
    if outcome[0] == "ok":
        return outcome
    _, blob, type_name, message, tb = outcome
    if blob is not None:
        try:
            exc = pickle.loads(blob)
            if isinstance(exc, BaseException):
                return ("exc", exc)
        except Exception:
            pass
    return ("exc", RemoteError(type_name, message, tb))


def _sequence(iterable):
    """iterable as something to slice into batches: a list, tuple or range
    as it is (a slice of a range is a range: its batches pickle small),
    anything else as a list."""
    if type(iterable) in (list, tuple, range):
        return iterable
    return list(iterable)


def _chunk_sizes(n, workers):
    """The batch sizes a map of n items is sent in by default: as
    multiprocessing's Pool.map, about n / (4 x workers) each, but a small
    one first, so that a worker starts while the next are pickled, and
    shrinking toward the end, so that the workers finish together and the
    caller decodes the last results while little else is left to run
    (Pool.map of 100,000 tiny tasks on 2 cores: about 10% faster than equal
    batches, measured side by side)."""
    if n <= 0:
        return []
    big = max(1, n // (workers * 4))
    small = max(1, big // 4)
    sizes = [min(small, n)]
    left = n - sizes[0]
    while left > 0:
        if left <= small * workers:  # the last round: one batch each
            k = min(workers, left)
            sizes += [left // k + (j < left % k) for j in range(k)]
            break
        c = min(big, max(small, left // (workers + 1)))
        sizes.append(c)
        left -= c
    return sizes


def _batch_values(result):
    """The values of a batch job's items; raises the first item's
    exception."""
    failed, outs = result
    if not failed:
        return outs
    for v in outs:
        if type(v) is _wire.Failure:
            raise _rebuild(v.outcome)[1]
    return outs


class Executor(_cf.Executor):
    """A concurrent.futures.Executor whose workers are processes that share
    memory with the caller.

    max_workers: worker processes (default: one per CPU).
    initializer(*initargs): runs once in each worker before its first task.
    max_tasks_per_child: a worker exits and is replaced after that many.
    timeout: seconds a task may run before its worker is killed (it then
        raises TimeoutError).
    retries: re-runs of a task whose worker died before it raises
        WorkerCrashed.
    connect: the socket path of a pool that `shmexec serve` serves: attach
        to it instead of starting workers (its workers, their number and
        their initializer are the server's; timeout and retries apply to
        this client's calls). If the server dies, calls raise PoolDead.
    """

    def __init__(self, max_workers=None, *, initializer=None, initargs=(), max_tasks_per_child=None, timeout=None, retries=0, connect=None):
        _check_fork()
        self._served = connect is not None
        self._call_timeout, self._call_retries = None, None
        if self._served:
            if max_workers is not None or initializer is not None or max_tasks_per_child is not None:
                raise ValueError("max_workers, initializer and max_tasks_per_child are the server's to set when connect is given")
            self._pool = ctypes.c_void_p()
            rc = _LIB.shmx_pool_attach(os.fsencode(connect), ctypes.byref(self._pool))
            if rc != _lib.SHMX_OK:
                self._pool = None
                raise ShmexecError(f"cannot attach to the pool at {connect}: {_last_error()}")
            self._call_timeout = timeout
            self._call_retries = retries or None
            self._workers = os.cpu_count() or 1
            self._start_collector()
            return
        if getattr(sys.modules.get("shmexec.worker"), "bootstrapping", False):
            raise RuntimeError(
                "shmexec: a pool is being created while a worker loads the main script: the script "
                "creates pools at module level. Put that code under `if __name__ == \"__main__\":`."
            )
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        cfg = _lib.PoolConfig()
        _LIB.shmx_pool_config_init(ctypes.byref(cfg))
        cfg.workers = max_workers or 0
        cfg.max_tasks_per_worker = max_tasks_per_child or 0
        cfg.retries = retries
        cfg.max_payload = 256 << 20  # pickled arguments of a 64 MiB bytes and more
        cfg.job_timeout_ns = int(timeout * 1e9) if timeout else 0
        argv = [a.encode() for a in _worker_argv(initializer, initargs)]
        arr = (ctypes.c_char_p * (len(argv) + 1))(*argv, None)
        cfg.worker_argv = ctypes.cast(arr, ctypes.POINTER(ctypes.c_char_p))
        self._pool = ctypes.c_void_p()
        rc = _LIB.shmx_pool_create(ctypes.byref(cfg), ctypes.byref(self._pool))
        if rc != _lib.SHMX_OK:
            self._pool = None
            raise ShmexecError(f"cannot start the pool: {_strerror(rc)}: {_last_error()}")
        # Outputs of 4 MiB and more are decoded where the worker wrote them,
        # a copy fewer (every path that fetches a result releases it right
        # after decoding it; _wire.loads copies out what it keeps).
        rc = _LIB.shmx_results_in_place(self._pool, _wire.HUGE)
        if rc != _lib.SHMX_OK:
            _LIB.shmx_pool_terminate(self._pool)
            self._pool = None
            raise ShmexecError(f"cannot start the pool: results in place: {_strerror(rc)}: {_last_error()}")
        self._workers = max_workers or os.cpu_count() or 1
        self._start_collector()

    def _start_collector(self):
        self._lock = threading.Lock()
        self._pending = {}  # job id -> future
        self._slots = []  # _CallSlots free for the next _call
        self._claimed = set()  # jobs a thread is fetching (see _wait_one)
        self._fetched = threading.Condition(self._lock)  # a claim ended
        self._early = {}  # outcomes of jobs fetched before they were tracked
        self._own = set()  # jobs submitted with own=True that their thread has yet to fetch
        self._shutdown = False
        self._terminating = False
        self._collector = threading.Thread(target=self._collect, name="shmexec-collector", daemon=True)
        self._collector.start()

    # -- submitting -------------------------------------------------------

    def _check_open(self):
        _check_fork()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")

    @staticmethod
    def _submit_failed(rc):
        if rc == _lib.SHMX_ETOO_LARGE:
            return ValueError(f"shmexec: the call's arguments are too large for the pool: {_last_error()}")
        return ShmexecError(f"submit: {_strerror(rc)}: {_last_error()}")

    def _opts(self, timeout, retries, own=False):
        """The C submit options for per-call timeout and retries (None:
        this executor's, then the pool's), or None for the pool's. own:
        the job is the submitting thread's to fetch (_fetch_own), and the
        collector is never woken for it."""
        if timeout is None:
            timeout = self._call_timeout
        if retries is None:
            retries = self._call_retries
        if timeout is None and retries is None and not own:
            return None
        opts = _lib.SubmitOpts()
        _LIB.shmx_submit_opts_init(ctypes.byref(opts))
        if timeout is not None:
            opts.timeout_ns = int(timeout * 1e9) if timeout > 0 else -1
        if retries is not None:
            opts.retries = retries
        if own:
            opts.flags = _lib.SUBMIT_OWN_WAIT
        return ctypes.byref(opts)

    def _submit_parts(self, parts, total, timeout=None, retries=None, track=True):
        """Submits a framed pickle (dumps_parts). A large one is written
        straight into a buffer in the segment (one copy, no frame)."""
        if total < _ZERO_COPY_FROM:
            return self._submit_payload(_wire.join(parts), timeout, retries, track)
        self._check_open()
        buf = _lib.Buffer()
        rc = _LIB.shmx_buffer_alloc(self._pool, total, ctypes.byref(buf))
        if rc != _lib.SHMX_OK:
            raise self._submit_failed(rc)
        try:
            _wire.write_parts(parts, buf.data)
        except BaseException:
            _LIB.shmx_buffer_release(self._pool, ctypes.byref(buf))
            raise
        job = ctypes.c_uint64()
        rc = _LIB.shmx_submit_buffer_with(self._pool, b"py", ctypes.byref(buf), self._opts(timeout, retries), ctypes.byref(job))
        if rc != _lib.SHMX_OK:
            _LIB.shmx_buffer_release(self._pool, ctypes.byref(buf))
            raise self._submit_failed(rc)
        return self._track(job.value) if track else job.value

    def _submit_payload(self, payload, timeout=None, retries=None, track=True, own=False):
        """Submits a frame; returns its future, or with track=False its job
        (own=True: a job for _fetch_own, which this thread must fetch or
        forget)."""
        self._check_open()
        job = ctypes.c_uint64()
        rc = _LIB.shmx_submit_with(self._pool, b"py", payload, len(payload), self._opts(timeout, retries, own), ctypes.byref(job))
        if rc != _lib.SHMX_OK:
            raise self._submit_failed(rc)
        if own:
            with self._lock:  # shutdown(wait=True) waits until it is fetched
                self._own.add(job.value)
        return self._track(job.value) if track else job.value

    def _fetch_own(self, job):
        """The outcome of a job submitted with own=True, waited for in this
        thread in slices (so that Ctrl-C works). Raises PoolClosed if the
        pool is terminated meanwhile. If this raises, the job is still
        this thread's, to forget."""
        while True:
            if self._pool is None or self._terminating:
                raise PoolClosed("the pool was terminated")
            rc, outcome = self._fetch(job, _SLICE_NS)  # a handle closed meanwhile answers SHMX_EINVAL
            if outcome is not None:
                with self._lock:
                    self._own.discard(job)
                if rc != _lib.SHMX_OK and self._terminating:
                    raise PoolClosed("the pool was terminated")
                return outcome

    def _forget_own(self, jobs):
        """Gives up own jobs that will not be fetched: their outcomes are
        dropped as they end."""
        with self._lock:
            pool = self._pool
            for job in jobs:
                if job in self._own:
                    self._own.discard(job)
                    if pool is not None:
                        _LIB.shmx_forget(pool, job)

    def _own_batch_values(self, jobs):
        """The values of own batch jobs (_submit_batches with own=True),
        fetched in order in this thread: no future, no collector thread.
        The first failure is raised, as multiprocessing's map does, and
        counts as the report of the others, whose jobs are forgotten."""
        out = []
        try:
            for job in jobs:
                outcome = self._fetch_own(job)
                if outcome[0] != "ok":
                    raise outcome[1]
                out.extend(_batch_values(outcome[1]))
        except BaseException:
            self._forget_own(jobs)
            raise
        return out

    def _submit_batches(self, fn, items, chunksize, star, progress=False, own=False):
        """Submits items in batch jobs of chunksize (None: sized so that
        every worker gets several) and returns their futures (own=True:
        their jobs, for _own_batch_values); each result goes through
        _batch_values. star: items are argument tuples, else single
        arguments. progress: show a progress bar on stderr (or pass a
        _progress.Progress)."""
        _check_sendable(fn, served=self._served)
        kind = "batch" if star else "batch1"
        sizes = _chunk_sizes(len(items), self._workers) if chunksize is None else None
        bar = None
        if progress:
            from ._progress import Progress

            bar = progress if isinstance(progress, Progress) else Progress(len(items))
        # Each batch is submitted as soon as it is pickled, so that the
        # workers start while the rest is pickled (pickling everything
        # first measured slower once waiting stopped yielding the CPU:
        # 0.8-1.5x multiprocessing's Pool.map against 1.0-1.7x).
        futures = []
        try:
            i = 0
            while i < len(items):
                n = sizes[len(futures)] if sizes else chunksize
                chunk = items[i:i + n]
                i += n
                f = self._submit_payload(_wire.dumps((kind, fn, chunk)), track=not own, own=own)
                if bar is not None:
                    f.add_done_callback(bar.callback(n))
                futures.append(f)
        except BaseException:
            if own:  # nobody will fetch those submitted already
                self._forget_own(futures)
            raise
        return futures

    def _track(self, job):
        fut = _Future()
        fut._ex, fut._job = self, job
        fut.set_running_or_notify_cancel()
        with self._lock:
            outcome = self._early.pop(job, None)
            if outcome is None:
                self._pending[job] = fut
        if outcome is not None:
            self._settle(fut, outcome)
        return fut

    def _call_parts(self, fn, args, kwargs):
        """The frame of the call fn(*args, **kwargs), as dumps_parts gives
        it. Raises TypeError for what cannot be sent."""
        ref = _function_ref(fn, self._served)
        try:
            if ref is None:
                return _wire.dumps_parts(("call", fn, (args, kwargs)))
            return _wire.dumps_call(fn, ref, args, kwargs)
        except Exception as e:
            raise TypeError(f"shmexec cannot send the arguments of {getattr(fn, '__qualname__', fn)!r} to a worker: {e}") from None

    def submit(self, fn, /, *args, **kwargs):
        _check_fork()
        return self._submit_parts(*self._call_parts(fn, args, kwargs))

    def _call(self, fn, args, kwargs):
        """fn(*args, **kwargs) in a worker, waited for in this thread:
        its value, or its exception raised (Pool.apply). A small call is
        submitted and waited for in one C call (shmx_call), for a first
        slice of 100 ms; no other thread hears of the job unless it runs
        longer."""
        if _forked:
            _check_fork()
        parts, total = self._call_parts(fn, args if type(args) is tuple else tuple(args),
                                        kwargs if type(kwargs) is dict else dict(kwargs))
        if total >= _ZERO_COPY_FROM or self._shutdown:
            self._check_open()
            return self._wait_direct(self._submit_parts(parts, total, track=False))
        payload = _wire.join(parts)
        opts = None if self._call_timeout is None and self._call_retries is None else self._opts(None, None)
        # A slot per call in progress (list pop and append are atomic):
        # threads, and a signal handler that calls apply, each get their own.
        slot = self._slots.pop() if self._slots else _CallSlot()
        res = slot.res
        res.status = _UNFETCHED
        slot.job.value = 0
        try:
            rc = _CALL_INTO(self._pool, b"py", payload, ctypes.c_size_t(len(payload)), opts, _SLICE_C, slot.addr, _BIG_C,
                            slot.job_ref, slot.res_ref)
            if rc == _OK:
                if res.data or res.status != _OK:
                    try:
                        outcome = _decoded(res)
                    finally:
                        _LIB.shmx_result_release(self._pool, slot.res_ref)
                else:  # the output is in the slot's buffer: nothing to release
                    outcome = slot.outcome(res.len)
        except BaseException:
            # Interrupted (Ctrl-C) as the call returned: free what it
            # fetched, or give the job up as _wait_direct does.
            if res.status != _UNFETCHED:
                _LIB.shmx_result_release(self._pool, slot.res_ref)
            elif slot.job.value:
                self._abandon(slot.job.value)
            raise
        finally:
            job = slot.job.value
            self._slots.append(slot)
        if rc != _OK:
            if rc == _lib.SHMX_ETIMEDOUT:
                return self._wait_direct(job)
            raise self._submit_failed(rc)
        if outcome[0] == "ok":
            return outcome[1]
        raise outcome[1]

    def submit_with(self, fn, args=(), kwargs=None, *, timeout=None, retries=None):
        """submit with per-call options: timeout (seconds the task may run
        before its worker is killed and it raises TimeoutError; 0: none)
        and retries (re-runs after a worker crash). None: the pool's."""
        _check_fork()
        parts, total = self._call_parts(fn, tuple(args), dict(kwargs or {}))
        return self._submit_parts(parts, total, timeout, retries)

    def map(self, fn, *iterables, timeout=None, chunksize=None, progress=False):
        """Like Executor.map. Items are sent in chunks: chunksize if given,
        otherwise sized so that every worker gets several chunks.
        progress=True shows a progress bar on stderr."""
        _check_fork()
        star = len(iterables) != 1
        items = list(zip(*iterables)) if star else _sequence(iterables[0])
        if not items:
            return iter(())
        # A batch job per future, not a job of the iterating thread's own
        # (as Pool.map's): an iterator may be left unconsumed, and
        # shutdown(wait=True) must not wait for it. timeout counts from
        # this call, as concurrent.futures has it.
        deadline = None if timeout is None else time.monotonic() + timeout
        futures = self._submit_batches(fn, items, chunksize, star, progress)

        def results():
            try:
                for f in futures:
                    yield from _batch_values(f.result(None if deadline is None else max(0, deadline - time.monotonic())))
            finally:
                for f in futures:
                    f.cancel()
        return results()

    # -- collecting -------------------------------------------------------
    #
    # A finished job is fetched (shmx_wait) by exactly one thread: the
    # caller waiting for it (Future.result, Pool.apply) or the collector,
    # which shmx_wait_any wakes for the jobs nobody waits for. _claimed
    # holds the jobs a thread is fetching. The collector can learn of a job
    # before its submitter has tracked it (a tiny job ends within
    # microseconds): it fetches it anyway and keeps the outcome in _early
    # until the submitter comes for it, so no outcome is ever dropped.

    def _fetch(self, job, ns):
        """shmx_wait for job for at most ns (< 0: no limit). Returns the C
        code and the job's outcome, ("ok", value) or ("exc", exception),
        or None while the job has not ended."""
        res = _lib.Result()
        rc = _LIB.shmx_wait(self._pool, job, ns, ctypes.byref(res))
        if rc == _lib.SHMX_ETIMEDOUT:
            return rc, None
        if rc != _lib.SHMX_OK:
            if rc == _lib.SHMX_EPOOL_DEAD:
                return rc, ("exc", PoolDead("the process serving the pool died"))
            return rc, ("exc", ShmexecError(f"wait: {_strerror(rc)}: {_last_error()}"))
        try:
            return rc, _decoded(res)
        finally:
            _LIB.shmx_result_release(self._pool, ctypes.byref(res))

    @staticmethod
    def _settle(fut, outcome):
        if outcome[0] == "ok":
            fut.set_result(outcome[1])
        else:
            fut.set_exception(outcome[1])

    def _wait_one(self, job, ns, untracked=False):
        """Fetches job, waiting at most ns (< 0: no limit), and settles its
        future; with no future (a submitter that has not tracked it yet, or
        an untracked Pool.apply job) keeps the outcome in _early. A job
        another thread is fetching is left to it. Returns the C code, or None if the job
        was not this thread's."""
        with self._lock:
            if job in self._claimed or self._pool is None:
                return None
            if ns != 0 and not untracked and job not in self._pending:
                return None  # settled already
            self._claimed.add(job)
        rc = None
        try:
            rc, outcome = self._fetch(job, ns)
            if outcome is not None:
                with self._lock:
                    fut = self._pending.pop(job, None)
                    if fut is None and (rc != _lib.SHMX_EINVAL or untracked):  # EINVAL: fetched or forgotten by another thread
                        self._early[job] = outcome
                if fut is not None:
                    self._settle(fut, outcome)
        finally:
            with self._lock:
                self._claimed.discard(job)
                self._fetched.notify_all()
        if rc == _lib.SHMX_ETIMEDOUT and ns != 0:
            # It may have ended as the wait ran out and been announced to
            # the collector while this thread still held it: look again.
            self._wait_one(job, 0)
        return rc

    def _wait_direct(self, job):
        """Waits for an untracked job in the calling thread and returns its
        value or raises its exception (Pool.apply: no future, no hand-off
        to another thread). Waits in slices, so that Ctrl-C works."""
        try:
            while True:
                with self._lock:
                    while job in self._claimed:  # the collector is fetching it
                        self._fetched.wait()
                    outcome = self._early.pop(job, None)
                if outcome is not None:
                    break
                self._wait_one(job, _SLICE_NS, untracked=True)
        except BaseException:
            self._abandon(job)
            raise
        if outcome[0] == "ok":
            return outcome[1]
        raise outcome[1]

    def _abandon(self, job):
        """Gives up an untracked job whose caller was interrupted (Ctrl-C):
        an outcome fetched already is dropped here, and the library drops
        one still to come (shmx_forget)."""
        with self._lock:
            while job in self._claimed:  # the collector is fetching it
                self._fetched.wait()
            if self._early.pop(job, None) is None and self._pool is not None:
                _LIB.shmx_forget(self._pool, job)

    def _wait_here(self, fut, timeout):
        """Waits for fut's job in the calling thread (ctypes releases the
        GIL): a round trip then costs no hand-off to the collector thread.
        If the collector is waiting on it just now, the future's own wait
        takes over."""
        self._wait_one(fut._job, -1 if timeout is None else max(0, int(timeout * 1e9)))

    def _collect(self):
        """Finishes futures nobody waits for in their own thread (callbacks,
        wait, as_completed). shmx_wait_any leaves a job that a caller waits
        for in result() to that caller, and does not wake this thread for
        it: a round trip then involves no hand-off between threads."""
        job = ctypes.c_uint64()
        while True:
            with self._lock:
                done = (self._shutdown and not self._pending and not self._own) or self._terminating
            if done:
                return
            rc = _LIB.shmx_wait_any(self._pool, 50_000_000, ctypes.byref(job))
            if rc == _lib.SHMX_OK:
                self._wait_one(job.value, 0)
            elif rc != _lib.SHMX_ETIMEDOUT:
                return

    # -- shutting down ----------------------------------------------------

    def shutdown(self, wait=True, *, cancel_futures=False):
        if _forked or self._pool is None:
            return
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
            pending = list(self._pending.items())
        if cancel_futures:
            for job, fut in pending:
                if _LIB.shmx_cancel(self._pool, job, 0) == _lib.SHMX_OK:
                    pass
        if wait:
            self._collector.join()
            _LIB.shmx_pool_close(self._pool, -1)
        else:
            threading.Thread(target=self._close_later, daemon=True).start()
            return
        self._pool = None

    def terminate(self):
        """Kills the workers now; pending tasks raise PoolClosed. For a
        served pool (connect=) it detaches: the server's workers go on."""
        if _forked or self._pool is None:
            return
        with self._lock:
            self._shutdown = True
            self._terminating = True
        self._collector.join()
        with self._lock:
            pool, self._pool = self._pool, None
        _LIB.shmx_pool_terminate(pool)
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
        for fut in pending:
            if not fut.done():
                fut.set_exception(PoolClosed("the pool was terminated"))

    def _close_later(self):
        self._collector.join()
        _LIB.shmx_pool_close(self._pool, -1)
        self._pool = None

    def __del__(self):
        try:
            if getattr(self, "_pool", None) is not None and not _forked:
                self.shutdown(wait=False)
        except Exception:
            pass


def version():
    n = _LIB.shmx_version_number()
    return f"{n // 10000}.{n // 100 % 100}.{n % 100}"


from .pool import Pool  # noqa: E402  (Pool builds on Executor)
