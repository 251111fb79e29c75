"""The engine under shmexec.Executor and shmexec.Pool: a pool of worker
processes that share memory with the caller, and how the results of jobs
reach the threads that wait for them. It imports no concurrent.futures
(nor the logging module that imports): a Pool runs on the engine alone,
and a script that makes one does not pay for them. executor has
Executor, the engine as a concurrent.futures.Executor, and its Future,
which the engine imports when it makes its first future."""

import atexit
import collections
import ctypes
import functools
import itertools
import os
import signal
import sys
import threading
import time
import weakref

from . import _errors, _lib, _reduction, _spawn, _wire
from ._errors import PoolClosed, ShmexecError, check_fork
from ._feeder import Feeder, QueuedCall, Stream, drop_batch, start_daemon

_LIB = None  # the library and the functions below: bound by _bind as the first engine is made
_OK = _lib.SHMX_OK
_ZERO_COPY_FROM = 64 << 10  # payloads this large are written straight into the segment
_SLICE_NS = 100_000_000  # a caller waits in slices this long, so that Ctrl-C works
# A call's arguments and its result, each pickled, may take this many
# bytes unless the pool's max_payload says otherwise; the pool's arena is
# twice as large, with a word of page table per 4 KiB, which recovery and
# stats() scan: hence a bound.
DEFAULT_MAX_PAYLOAD = 256 << 20
MAX_PAYLOAD_LIMIT = 64 << 30
_UNFETCHED = 1  # a Result.status no C call sets (codes are <= 0)
_CALL_INTO = _SUBMIT_WITH = _WAIT_INTO = _RELEASE = _SUBMIT_HELD = None


def _bind():
    """Loads the library (_lib.load: with the first pool, not at import)
    and binds the names the engine calls it by."""
    global _LIB, _CALL_INTO, _SUBMIT_WITH, _WAIT_INTO, _RELEASE, _SUBMIT_HELD
    if _LIB is not None:
        return
    lib = _lib.LIB
    # shmx_call_into for Engine._call, without argtypes: _call passes C
    # values, and converting ten arguments through argtypes costs as much
    # as the C call itself.
    _CALL_INTO = lib["shmx_call_into"]
    _SUBMIT_WITH = lib["shmx_submit_with"]  # for _try_submit_now, likewise
    _WAIT_INTO = lib["shmx_wait_into"]  # for _fetch, likewise
    _RELEASE = lib["shmx_result_release"]  # for every fetch of a result
    # The feeder's submit with SUBMIT_NOWAIT of a payload that is copied
    # (under _ZERO_COPY_FROM), which never blocks, with the GIL kept
    # (_lib.HELD).
    _SUBMIT_HELD = _lib.HELD["shmx_submit_with"]
    _LIB = lib

# A future's states, as concurrent.futures spells them (executor checks
# that it still does).
_PENDING, _RUNNING, _FINISHED = "PENDING", "RUNNING", "FINISHED"
_CANCELLED, _CANCELLED_AND_NOTIFIED = "CANCELLED", "CANCELLED_AND_NOTIFIED"
_ENDED = frozenset((_FINISHED, _CANCELLED, _CANCELLED_AND_NOTIFIED))  # states that never change
_SLICE_C = ctypes.c_int64(_SLICE_NS)
_BIG_C = ctypes.c_size_t(_wire.BIG)
_Future = None  # executor.Future, once the first future is made (Engine._new_future)

# The executor's states, in order; each moves only forward, under the
# books' lock. The C handle is valid in every state: a closed one answers
# SHMX_EINVAL.
_RUN = 0  # accepting tasks
_SHUTDOWN = 1  # no new tasks; the collector finishes what is pending, then the handle closes
_TERMINATED = 2  # terminate(): workers killed, pending tasks raise PoolClosed
_CLOSED = 3  # the handle was closed after a shutdown


class _Books:
    """Who fetches each job's result, and where its outcome goes.

    A finished job is fetched (shmx_wait) by exactly one thread: the caller
    waiting for it (Future.result, Pool.apply, Pool.map) or the collector
    thread, which shmx_wait_any wakes for jobs that nobody waits for.

    Invariant, under lock: every job this executor submitted and has not
    delivered is in at most one of
      pending  job -> its Future, which the outcome settles;
      own      jobs of the thread that submitted them (Pool.map's
               batches): that thread fetches them in order, or forgets them;
      early    job -> outcome, fetched before its submitter tracked it (a
               tiny job ends within microseconds) or for an untracked
               Pool.apply job or Pool.imap batch; its submitter (the
               imap's iterator) takes it from here;
      streamed job -> (stream, index): the batches of Pool.imap,
               imap_unordered and map_async (untracked, no future) not
               yet fetched. Their outcomes go to early, where the
               stream's reader takes them, and the stream is told
               (Stream.batch_done); a shutdown's close waits for them, so
               that an iterator read after join still has every result.
               Pool.imap's and imap_unordered's are a job group's, which
               the collector is never told of (Stream.group: imap's
               reader fetches each in order, imap_unordered's is told of
               each by the group): a shutdown's close fetches those no
               reader has;
    and claimed holds the jobs some thread is inside shmx_wait for (at
    most one thread fetches a job at a time; fetched is notified as a
    claim ends). No outcome is ever dropped. calls has an entry for
    each thread inside _call (Pool.apply), whose untracked jobs a
    shutdown's close waits for too. state is the executor's (_RUN ...
    _CLOSED), the one record of shutting down. handoff holds the work
    handed to the collector thread (Engine._hand_over), while collecting
    says it still runs.
    """

    __slots__ = ("lock", "fetched", "waiting", "pending", "own", "early", "streamed", "claimed", "calls", "state", "dropped",
                 "handoff", "collecting")

    def __init__(self):
        self.lock = threading.Lock()
        self.fetched = threading.Condition(self.lock)
        self.waiting = 0  # threads in wait(): notify costs nothing when there are none, the common case
        self.pending = {}
        self.own = set()
        self.early = {}
        self.streamed = {}
        self.claimed = set()
        # The streams of Pool.imap iterators that were collected: their
        # outcomes are dropped by the collector thread (_drop_abandoned),
        # since the finalizer may run where this thread holds the lock.
        # Appended and popped without the lock.
        self.dropped = collections.deque()
        self.calls = []  # one None a call: counted and uncounted in one C call each, which an interrupt cannot cut in two
        self.state = _RUN
        self.handoff = collections.deque()  # (fn, args): appended under the lock, popped without it (the collector's)
        self.collecting = True

    def wait(self, timeout=None):
        """fetched.wait, under lock."""
        self.waiting += 1
        try:
            return self.fetched.wait(timeout)
        finally:
            self.waiting -= 1

    def notify(self):
        """Wakes the threads in wait(), under lock: a claim ended, a job
        left the books, or the pool was terminated."""
        if self.waiting:
            self.fetched.notify_all()


class _CallSlot:
    """What one shmx_call_into (Engine._call) or shmx_wait_into (the
    fetch of a future's job, _fetch) needs, made once and reused by later
    calls: a buffer for a small result, the job number, the result, and
    their C references; the quick submit (_try_submit_now) borrows its C
    values too. A thread takes a slot off Engine._slots for one C call
    and puts it back after."""

    __slots__ = ("addr", "view", "body", "job", "ns", "len", "res", "job_ref", "res_ref", "_buf")

    def __init__(self):
        self._buf = (ctypes.c_char * _wire.BIG)()
        self.addr = ctypes.c_void_p(ctypes.addressof(self._buf))
        self.view = memoryview(self._buf).cast("B")
        self.body = self.view[4:]  # a value frame's body (_wire.load_value)
        self.job, self.ns, self.len, self.res = ctypes.c_uint64(), ctypes.c_int64(), ctypes.c_size_t(), _lib.Result()
        self.job_ref, self.res_ref = ctypes.byref(self.job), ctypes.byref(self.res)

    def outcome(self, pool, tb_type):
        """The outcome of the job that a shmx_call_into or shmx_wait_into
        with this slot fetched (res): from the buffer, or from C memory
        (an output too large for the buffer, a failure), which is then
        released."""
        res = self.res
        if res.data or res.status != _OK:
            try:
                return _wire.outcome(res, tb_type)
            finally:
                _RELEASE(pool, self.res_ref)
        n = res.len  # the output is in the buffer: nothing to release
        if n > 4 and self.view[3] == _wire.VALUE:  # _wire.is_value, inline: this runs for every apply
            try:
                return ("ok", _wire.load_value(self.body))
            except BaseException as e:  # noqa: B902 - a result that cannot be decoded
                return _wire.undecodable(e)
        return _wire.frame_outcome(self.view[:n], tb_type)


def sequence(iterable):
    """iterable as something to slice into batches: a list, tuple or range
    as it is (a slice of a range is a range: its batches pickle small),
    anything else as a list."""
    if type(iterable) in (list, tuple, range):
        return iterable
    return list(iterable)


def chunk_sizes(n, workers):
    """The batch sizes a map of n items is sent in by default:
    multiprocessing's Pool.map's, ceil(n / (4 x workers)) each, the last
    one what is left. Each batch costs a round trip (a submit that may wake
    a worker, a fetch), which outweighs what smaller first and last batches
    save (docs/BENCHMARKS.md, "Small calls against multiprocessing")."""
    if n <= 0:
        return []
    size = -(-n // (workers * 4))
    return [min(size, n - i) for i in range(0, n, size)]


class Engine:
    """A pool of worker processes and the books of its jobs: Executor (in
    executor, with concurrent.futures' interface) and Pool (whose _ex it
    is) are each a face of one. The constructor's arguments are
    Executor's."""

    def __init__(self, max_workers=None, mp_context=None, initializer=None, initargs=(), *, max_tasks_per_child=None,
                 timeout=None, retries=0, pass_fds=(), connect=None, max_payload=None, _tb_type=_wire.FUTURES_TRACEBACK):
        check_fork()
        _bind()
        check_context(mp_context)
        if max_tasks_per_child is not None:
            if type(max_tasks_per_child) is not int:
                raise TypeError("max_tasks_per_child must be an integer")
            if max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
        self._tb_type = _tb_type  # the type of an exception's __cause__ that carries the worker's traceback
        self._served = connect is not None
        # The main module the workers load (main_ref), or none: served,
        # they are the server's; or this program has none (a console,
        # python -c, a notebook). Where none, what the main module
        # defines travels by value (_reduction).
        main = "" if self._served else _spawn.main_ref()
        self._lost_main = not main
        self._call_timeout, self._call_retries = None, None
        self._pool = ctypes.c_void_p()
        try:
            if self._served:
                if max_workers is not None or initializer is not None or max_tasks_per_child is not None or pass_fds or \
                        max_payload is not None:
                    raise ValueError("max_workers, initializer, max_tasks_per_child, pass_fds and max_payload are the server's to "
                                     "set when connect is given")
                rc = _LIB.shmx_pool_attach(os.fsencode(connect), ctypes.byref(self._pool))
                if rc != _OK:
                    self._pool = None
                    raise ShmexecError(f"cannot attach to the pool at {connect}: {_lib.last_error()}")
                self._call_timeout = timeout
                self._call_retries = retries or None
                self._workers = default_workers()  # the server's count is its own: this sizes a map's batches
                self._start_collector()
                return
            if _spawn.bootstrapping:
                raise RuntimeError(
                    "shmexec: a pool is being created while a worker loads the main script: the script "
                    "creates pools at module level. Put that code under `if __name__ == \"__main__\":`."
                )
            if max_workers is not None and max_workers <= 0:
                raise ValueError("max_workers must be greater than 0")
            if max_payload is not None:
                if type(max_payload) is not int:
                    raise TypeError(f"max_payload must be an int (bytes), not {type(max_payload).__name__}")
                if not 1 << 20 <= max_payload <= MAX_PAYLOAD_LIMIT:
                    raise ValueError(f"max_payload must be from 1 MiB to {MAX_PAYLOAD_LIMIT >> 30} GiB, not {max_payload} bytes")
            cfg = _lib.PoolConfig()
            _LIB.shmx_pool_config_init(ctypes.byref(cfg))
            cfg.workers = self._workers = max_workers or default_workers()
            cfg.max_tasks_per_worker = max_tasks_per_child or 0
            cfg.retries = retries
            # The arena is twice that (address space, touched only as used).
            cfg.max_payload = max_payload or DEFAULT_MAX_PAYLOAD
            cfg.job_timeout_ns = int(timeout * 1e9) if timeout else 0
            # The constructor returns once one worker is ready, as
            # multiprocessing's returns at once: the others start while the
            # first tasks run. A start that fails in every worker still
            # fails it.
            cfg.ready_workers = 1
            fds = [int(fd) for fd in pass_fds]
            init = b""
            # The initializer's arguments are the pool's (respawned workers
            # run it again), as multiprocessing's Pool keeps them: the
            # semaphores of its locks then live as long as the pool does.
            self._initargs = tuple(initargs)
            with _spawn.Inheritance(len(fds)) as heirs:
                if initializer is not None:
                    # By key, as a task's function: by value where a worker
                    # could not import it (python -c, a console, a notebook).
                    # Any other callable is pickled here with its arguments.
                    key = _reduction.function_ref(initializer, self._lost_main, "initializer")
                    init = _wire.dumps((initializer if key is None else _wire.ByKey(key), self._initargs),
                                       what="the initializer and its arguments", lost_main=self._lost_main, inherit=True)
            prep = _spawn.Preparation(main, init, heirs)
            fds += prep.fds
            argv = [a.encode() for a in _spawn.worker_argv()]
            arr = (ctypes.c_char_p * (len(argv) + 1))(*argv, None)
            cfg.worker_argv = ctypes.cast(arr, ctypes.POINTER(ctypes.c_char_p))
            fd_arr = (ctypes.c_int * len(fds))(*fds)
            cfg.pass_fds, cfg.n_pass_fds = ctypes.cast(fd_arr, ctypes.POINTER(ctypes.c_int)), len(fds)
            try:
                rc = _LIB.shmx_pool_create(ctypes.byref(cfg), ctypes.byref(self._pool))
            finally:
                prep.close()  # the pool has its own duplicate
            if rc != _OK:
                self._pool = None
                if rc == _lib.SHMX_EWORKER_START:
                    raise _errors.WorkerStartError(f"cannot start the pool: {_lib.last_error()}")
                if rc == _lib.SHMX_EINVAL and _LIB.shmx_is_worker():  # the library's refusal, worded for Python
                    raise ShmexecError("cannot start a pool in a shmexec worker: a worker cannot start a pool of its own, as "
                                       "a multiprocessing.Pool worker cannot start processes (a program that a task runs can)")
                raise ShmexecError(f"cannot start the pool: {_lib.strerror(rc)}: {_lib.last_error()}")
            # Outputs of 4 MiB and more are decoded where the worker wrote them,
            # a copy fewer (every path that fetches a result releases it right
            # after decoding it; _wire.loads copies out what it keeps).
            rc = _LIB.shmx_results_in_place(self._pool, _wire.HUGE)
            if rc != _OK:
                raise ShmexecError(f"cannot start the pool: results in place: {_lib.strerror(rc)}: {_lib.last_error()}")
            self._start_collector()
        except BaseException:
            # Failed, or interrupted (a Ctrl-C lands as the library's create
            # returns), once the library may have made the pool: its
            # workers go now, not when the program exits.
            if self._pool is not None and self._pool.value:
                _LIB.shmx_pool_terminate(self._pool)
            self._pool = None
            raise

    def _start_collector(self):
        self._books = _Books()
        self._slots = []  # _CallSlots free for the next C call (_take_slot)
        self._close_lock = threading.Lock()  # held while a shutdown closes the handle
        self._feeder = Feeder(self, functools.partial(_terminated, self._books))
        self._opts_made = {}  # _opts' C options, built once each (the C side only reads them)
        self._groups = itertools.count(1)  # the job groups of Pool.imap_unordered's streams
        self._collector = threading.Thread(target=_collect, args=(weakref.ref(self), self._books, self._pool), name="shmexec-collector",
                                           daemon=True)
        self._collector.start()  # refused in an atexit callback on Python 3.12.1: the constructor terminates the pool
        _live.add(self)

    # What happens to a pool still open when the interpreter exits: an
    # Executor finishes its tasks first and takes no new ones once the
    # main thread has ended, as concurrent.futures' do (_python_exit); a
    # Pool's engine is terminated after the other threads have ended and
    # the atexit callbacks registered after it have run, as
    # multiprocessing's pools are (_pools_exit): until then it works.
    _at_exit_terminate = False

    @property
    def _open(self):
        """Whether the C handle is still open (not closed or terminated)."""
        return self._books.state < _TERMINATED

    @property
    def _mp_context(self):
        """The multiprocessing context that workers are started like:
        spawn (exec), as ProcessPoolExecutor names it."""
        import multiprocessing

        return multiprocessing.get_context("spawn")

    @property
    def _max_workers(self):
        """The number of worker processes, as ProcessPoolExecutor names it."""
        return self._workers

    def _worker_pids(self):
        """The pid of each worker slot's process (0 while it has none)."""
        n = ctypes.c_size_t()
        pids = (ctypes.c_int32 * max(1, self._workers))()
        if _LIB.shmx_pool_workers(self._pool, pids, len(pids), ctypes.byref(n)) != _OK:
            return []
        return list(pids[:n.value])

    def stats(self):
        """A snapshot of the pool's counters and space, as a dict:
        submitted, collected, retried, worker_deaths, respawned (every
        client's), queued, slots and slots_in_use, and pages, pages_in_use
        and page_size (the arena, where large arguments and results live:
        a result held in place, see docs, keeps its pages until the last
        array over it is gone)."""
        check_fork()
        st = _lib.Stats(struct_size=ctypes.sizeof(_lib.Stats))
        rc = _LIB.shmx_pool_stats(self._pool, ctypes.byref(st))  # SHMX_EINVAL once the handle is closed
        if rc == _lib.SHMX_EINVAL and self._books.state >= _SHUTDOWN:
            raise PoolClosed("the pool is closed")
        if rc != _OK:
            raise _errors.call_error(rc, "stats")
        return {name: getattr(st, name) for name, _ in st._fields_ if name not in ("struct_size", "reserved")}

    @property
    def _processes(self):
        """pid -> a handle of each live worker process, as
        ProcessPoolExecutor's (code in the wild reads it)."""
        return {pid: WorkerProcess(pid) for pid in self._worker_pids() if pid}

    # -- submitting -------------------------------------------------------

    def _check_open(self):
        check_fork()
        if _exiting and not self._at_exit_terminate:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")
        if self._books.state != _RUN:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def _opts(self, timeout, retries, own=False, nowait=False, group=0):
        """The C submit options for per-call timeout and retries (None:
        this executor's, then the pool's), or None for the pool's. own:
        the job is the submitting thread's to fetch (_fetch_own), and the
        collector is never woken for it. nowait: the submit says
        SHMX_EFULL instead of waiting for room. group: the job's group
        (shmx_wait_group), 0 for none."""
        if timeout is None:
            timeout = self._call_timeout
        if retries is None:
            retries = self._call_retries
        if timeout is None and retries is None and not own and not nowait and not group:
            return None
        key = (timeout, retries, own, nowait, group)
        ref = self._opts_made.get(key)
        if ref is not None:
            return ref
        if len(self._opts_made) >= 64:  # many per-call timeouts: start over
            self._opts_made.clear()
        opts = _lib.SubmitOpts()
        _LIB.shmx_submit_opts_init(ctypes.byref(opts))
        if timeout is not None:
            opts.timeout_ns = int(timeout * 1e9) if timeout > 0 else -1
        if retries is not None:
            opts.retries = retries
        opts.flags = (_lib.SUBMIT_OWN_WAIT if own else 0) | (_lib.SUBMIT_NOWAIT if nowait else 0)
        opts.group = group
        ref = self._opts_made[key] = ctypes.byref(opts)  # (keeps opts alive)
        return ref

    def _submit_parts(self, parts, total, timeout=None, retries=None, track=True, intake=True, group=0):
        """Submits a framed pickle (dumps_parts), waiting for room. A large
        one is written straight into a buffer in the segment (one copy, no
        frame). intake=False: work accepted before a shutdown (the
        feeder's), submitted after it. group: as _submit_payload."""
        if total < _ZERO_COPY_FROM:
            return self._submit_payload(_wire.join(parts), timeout, retries, track, intake=intake, group=group)
        if intake:
            self._check_open()
        buf = _lib.Buffer()
        job = ctypes.c_uint64()
        try:
            rc = _LIB.shmx_buffer_alloc(self._pool, total, ctypes.byref(buf))
            if rc != _OK:
                raise self._submit_error(rc)
            _wire.write_parts(parts, buf.data)
            rc = _LIB.shmx_submit_buffer_with(self._pool, b"py", ctypes.byref(buf), self._opts(timeout, retries, group=group),
                                              ctypes.byref(job))
            if rc != _OK:
                raise self._submit_error(rc)
            return self._track(job.value) if track else job.value
        except BaseException:
            if job.value:
                self._give_up(job.value)
            raise
        finally:
            # Allocated and not submitted (a refused submit leaves it ours):
            # also where Ctrl-C lands as the allocation returns.
            if buf.id:
                _LIB.shmx_buffer_release(self._pool, ctypes.byref(buf))

    def _submit_error(self, rc):
        """The exception for a submit that returned rc. A handle that a
        terminate retired under the call (a feeder thread's submit, a
        caller's racing the terminate) answers SHMX_EINVAL: that is the
        pool closed, as for a submit that was waiting when it ended."""
        if rc == _lib.SHMX_EINVAL and self._books.state >= _TERMINATED:
            return PoolClosed("the pool was terminated")
        return _errors.call_error(rc, "submit")

    def _submit_payload(self, payload, timeout=None, retries=None, track=True, own=False, intake=True, group=0):
        """Submits a frame; returns its future, or with track=False its job
        (own=True: a job for _fetch_own, which this thread must fetch or
        forget). group: the job's group (shmx_wait_group), which
        shmx_wait_any never reports (a batch of Pool.imap or
        imap_unordered, _submit_streamed)."""
        if intake:
            self._check_open()
        job = ctypes.c_uint64()
        try:
            rc = _lib.SHMX_EFULL
            if not intake and len(payload) < _ZERO_COPY_FROM:
                # The feeder's submit, which shares the GIL with the caller
                # and the collector: first without giving it up (_lib.HELD).
                # (A caller alone gains nothing by keeping it.)
                rc = _SUBMIT_HELD(self._pool, b"py", payload, ctypes.c_size_t(len(payload)),
                                  self._opts(timeout, retries, own, nowait=True, group=group), ctypes.byref(job))
            if rc == _lib.SHMX_EFULL:  # no room now: wait for it, the GIL given up
                rc = _LIB.shmx_submit_with(self._pool, b"py", payload, len(payload), self._opts(timeout, retries, own, group=group),
                                           ctypes.byref(job))
            if rc != _OK:
                raise self._submit_error(rc)
            if own:
                with self._books.lock:  # shutdown(wait=True) waits until it is fetched
                    self._books.own.add(job.value)
            return self._track(job.value) if track else job.value
        except BaseException:
            if job.value:
                self._give_up(job.value, own)
            raise

    def _fetch_own(self, job):
        """The outcome of a job submitted with own=True, waited for in this
        thread in slices (so that Ctrl-C works). Raises PoolClosed if the
        pool is terminated meanwhile. If this raises, the job is still
        this thread's, to forget."""
        books = self._books
        while True:
            if books.state >= _TERMINATED:
                raise PoolClosed("the pool was terminated")
            rc, outcome = self._fetch(job, _SLICE_NS)  # a handle closed meanwhile answers SHMX_EINVAL
            if outcome is not None:
                _locked(books.lock, functools.partial(_own_done, books, [job]))  # a shutdown may wait for the last of them
                if rc != _OK and books.state >= _TERMINATED:
                    raise PoolClosed("the pool was terminated")
                return outcome

    def _forget_own(self, jobs):
        """Gives up own jobs that will not be fetched: their outcomes are
        dropped as they end. Every one of jobs is forgotten by the library,
        in the books or not yet (one submitted as a Ctrl-C landed, before
        its submitter noted it) or not any more (fetched: the library
        answers SHMX_EINVAL). Runs to its end through a second Ctrl-C,
        raised after it (_abandon)."""
        _locked(self._books.lock, functools.partial(self._forget_own_held, jobs), again=True)

    def _forget_own_held(self, jobs):
        """_forget_own's body, under the books' lock: the books first, in
        one step, so that a shutdown never waits for a job that was
        forgotten."""
        _own_done(self._books, jobs)
        if self._open:
            for job in jobs:
                _LIB.shmx_forget(self._pool, job)  # SHMX_EINVAL for a job forgotten already

    def _own_batch_values(self, jobs):
        """The values of own batch jobs (_own_batches),
        fetched in order in this thread: no future, no collector thread.
        The first failure is raised, as multiprocessing's map does, and
        counts as the report of the others, whose jobs are forgotten."""
        out = []
        try:
            for job in jobs:
                outcome = self._fetch_own(job)
                if outcome[0] != "ok":
                    raise outcome[1]
                out.extend(_wire.batch_values(outcome[1], self._tb_type))
        except BaseException:
            self._forget_own(jobs)
            raise
        return out

    def _own_batches(self, fn, items, chunksize, star):
        """Submits items in batch jobs from this thread, as jobs of its own
        (their numbers, for _own_batch_values): Pool.map and starmap, which
        wait for them at once. Each batch is submitted as soon as it is
        pickled, so that the workers start while the rest is pickled."""
        kind, key, what = self._batch_kind(fn, star)
        jobs = []
        try:
            for n, chunk in _chunks(items, chunksize, self._workers):
                jobs.append(self._submit_payload(_wire.join(_wire.dumps_batch(kind, fn, key, chunk, what, self._lost_main)[0]),
                                                 track=False, own=True))
        except BaseException:
            self._forget_own(jobs)  # nobody will fetch those submitted already
            raise
        return jobs

    def _batch_kind(self, fn, star):
        """(kind, key, what) for _wire.dumps_batch of fn's batches; raises
        TypeError, before anything is submitted, if fn cannot be sent."""
        key = _reduction.function_ref(fn, self._lost_main)  # raises for a function that cannot be sent
        if key is None:  # a callable that is not a plain function: checked by pickling it now
            _reduction.check_sendable(fn, lost_main=self._lost_main)
        return "batch" if star else "batch1", key, f"the items of a map of {_reduction._name(fn)}"

    def _map_kind(self, fn, star):
        """_batch_kind(fn, star) for an asynchronous map, or the exception
        that says fn cannot be sent: that fails each batch, as one that
        cannot be pickled does (multiprocessing and concurrent.futures
        pickle the function with each batch, in a thread of theirs)."""
        try:
            return self._batch_kind(fn, star)
        except Exception as e:  # noqa: B902 - the map's own failure
            return e

    def _batch_frame(self, kind, fn, star, chunk):
        """The pickled batch of chunk (_wire.dumps_batch), or the exception
        that fails it: its pickling's, or, where fn could not be sent
        (kind is _map_kind's exception), fn's, tried again for this batch
        as multiprocessing pickles it with each: every batch gets an error
        object of its own, whose traceback is its own."""
        if isinstance(kind, BaseException):
            kind = self._map_kind(fn, star)
            if isinstance(kind, BaseException):
                return kind
        batch, key, what = kind
        try:
            return _wire.dumps_batch(batch, fn, key, chunk, what, self._lost_main)
        except Exception as e:  # noqa: B902 - ends this batch, not the map
            return e

    def _stream(self, fn, items, chunksize, star, progress=False, untracked=False, report=None, reader=None):
        """A Stream of batch jobs over items (a sequence, or an iterator
        that the feeder consumes as it goes), built and submitted by the
        feeder: the asynchronous maps. chunksize None: sized so that every
        worker gets several (for a sequence; 1 for an iterator).
        untracked: a stream of job numbers, not futures (unless progress
        is shown), whose readers take the outcomes with _wait_untracked:
        no future and no callbacks per batch, which cost more than a tiny
        task (Pool.imap, imap_unordered, map_async). report: a queue that
        such a stream tells of each batch's end (Stream.batch_done).
        reader: how the reader of an untracked stream takes its batches,
        "in order" (Pool.imap) or "as they end" (Pool.imap_unordered):
        the batches are then a job group's, and the collector is never
        woken for them (Stream.group). The stream is fed (_feed) once its
        reader exists: a Ctrl-C between the two then leaves no batch
        that no reader would take (or drop, when it is collected)."""
        kind = self._map_kind(fn, star)
        self._check_open()
        bar = None
        if progress:
            from ._progress import Progress

            bar = progress if isinstance(progress, Progress) else Progress(len(items) if hasattr(items, "__len__") else None)

        def frames():
            for n, chunk in _chunks(items, chunksize, self._workers):
                yield n, self._batch_frame(kind, fn, star, chunk)

        by_number = untracked and bar is None
        group = next(self._groups) % 0xFFFFFFFF + 1 if reader is not None and by_number else 0  # never 0: no group
        stream = Stream(frames(), None if by_number else self._new_future, bar, None if group else report, group,
                        by_job=group != 0 and reader == "as they end")
        return stream

    def _feed(self, stream, reader):
        """Queues stream (of _stream) for the feeder, which submits its
        batches; returns reader, the object that takes its results."""
        self._feeder.put(stream)
        return reader

    def _take_slot(self):
        """A _CallSlot for one C call, to be put back on _slots after it
        (list pop and append are atomic: threads, and a signal handler
        that calls in, each get their own)."""
        return self._slots.pop() if self._slots else _CallSlot()

    def _new_future(self):
        global _Future
        if _Future is None:  # the first future of the process: executor imports concurrent.futures
            from .executor import Future as _Future
        fut = _Future()
        fut._ex = self
        return fut

    def _attach(self, fut, job):
        """Makes fut the future of job, which was just submitted: the
        collector, or a thread waiting in fut.result(), settles it. One
        that has ended already (fetched by the collector into early) is
        settled here, or, if it has callbacks (apply_async's, put on it
        before the submit), by the collector (_settle_off)."""
        books = self._books
        with books.lock:
            fut._job = job
            outcome = books.early.pop(job, None)
            if outcome is None:
                books.pending[job] = fut
        if outcome is not None:
            self._settle_off(fut, outcome)
        return fut

    def _settle_off(self, fut, outcome):
        """Settles fut, which no other thread can settle, with outcome in
        this thread, but for the callbacks it has already: those of
        apply_async and map_async, which multiprocessing runs in its
        result thread, never inside the call that was given them (where a
        lock the caller holds, or a sys.exit(), would meet the caller).
        Such a future is settled by the collector (_hand_over)."""
        if fut._done_callbacks:
            self._hand_over(fut._settle, outcome)
        else:
            fut._settle(outcome)

    def _run_handed_here(self):
        """Runs the work handed to the collector now, if this thread is the
        collector: a callback there that waits for a future it was handed
        (an apply_async of its own that ended at once) would otherwise
        wait for itself."""
        if threading.current_thread() is self._collector:
            _run_handed(self._books)

    def _hand_over(self, fn, *args):
        """Has the collector thread run fn(*args), after what it is doing
        (shmx_wake_any wakes it); here if it has ended."""
        books = self._books
        with books.lock:
            queued = books.collecting
            if queued:
                books.handoff.append((fn, args))
        if queued:
            _LIB.shmx_wake_any(self._pool)  # a wake lost to a Ctrl-C here: the collector looks again within 50 ms
        else:
            fn(*args)

    def _track(self, job, fut=None):
        """The future of job, just submitted: fut (a pending one of
        _new_future that no other thread has seen) or a new one."""
        if fut is None:
            fut = self._new_future()
        fut._state = _RUNNING  # set_running_or_notify_cancel of a future nobody has seen yet
        return self._attach(fut, job)

    def _try_submit_now(self, parts, total, timeout=None, retries=None):
        """Submits a small call from this thread if the pool has room and
        nothing is queued before it; returns its job, or None (then the
        feeder submits it)."""
        if not self._feeder.idle():
            return None
        opts = self._opts(timeout, retries, nowait=True)
        if total >= _ZERO_COPY_FROM:
            return self._try_submit_buffer(parts, total, opts)
        payload = _wire.join(parts)
        slot = self._take_slot()
        slot.job.value = 0
        try:
            slot.len.value = len(payload)
            rc = _SUBMIT_WITH(self._pool, b"py", payload, slot.len, opts, slot.job_ref)
            job = slot.job.value
        except BaseException:
            if slot.job.value:
                self._give_up(slot.job.value)
            raise
        finally:
            self._slots.append(slot)
        if rc == _lib.SHMX_EFULL:
            return None
        if rc != _OK:
            raise self._submit_error(rc)
        return job

    def _try_submit_buffer(self, parts, total, opts):
        """_try_submit_now for a large call: written straight into a buffer
        in the segment and submitted, if the arena and the job slots have
        room now; else None, and nothing is left behind."""
        buf = _lib.Buffer()
        job = ctypes.c_uint64()
        try:
            rc = _LIB.shmx_buffer_try_alloc(self._pool, total, ctypes.byref(buf))
            if rc == _lib.SHMX_EFULL:
                return None
            if rc != _OK:
                raise self._submit_error(rc)
            _wire.write_parts(parts, buf.data)
            rc = _LIB.shmx_submit_buffer_with(self._pool, b"py", ctypes.byref(buf), opts, ctypes.byref(job))
        except BaseException:
            if job.value:
                self._give_up(job.value)
            raise
        finally:
            if buf.id:  # not submitted (a refused submit leaves it ours; Ctrl-C may land as the allocation returns)
                _LIB.shmx_buffer_release(self._pool, ctypes.byref(buf))
        if rc == _lib.SHMX_EFULL:
            return None
        if rc != _OK:
            raise self._submit_error(rc)
        return job.value

    def _submit_call(self, parts, total, timeout=None, retries=None, fut=None):
        """The future of a call: submitted at once when there is room,
        else handed to the feeder (the future stays pending until then).
        fut: a pending future of _new_future to use, that no other thread
        has seen. The caller has checked that the executor is open (and
        for a fork); a shutdown since, while the call was pickled, is
        caught here."""
        if self._books.state != _RUN:
            self._check_open()
        job = self._try_submit_now(parts, total, timeout, retries)
        if job is not None:
            try:
                return self._track(job, fut)
            except BaseException:
                self._give_up(job)  # interrupted (Ctrl-C) as _track was entered
                raise
        if fut is None:
            fut = self._new_future()
        self._feeder.put(QueuedCall(parts, total, timeout, retries, fut))
        return fut

    def _call_parts(self, fn, args, kwargs):
        """The frame of the call fn(*args, **kwargs), as dumps_parts gives
        it. Raises TypeError (a _reduction.SendError) for what cannot be
        sent, and what an object's own __reduce__ raises."""
        ref = _reduction.function_ref(fn, self._lost_main)
        if ref is None:
            return _wire.dumps_parts(("call", fn, (args, kwargs)), f"the call of {_reduction._name(fn)}",
                                     _reduction.call_roots(fn, args, kwargs), lost_main=self._lost_main)
        return _wire.dumps_call(fn, ref, args, kwargs, self._lost_main)

    def submit(self, fn, /, *args, **kwargs):
        """Schedules fn(*args, **kwargs) and returns its Future, at once:
        when the pool is full the call waits in this executor's queue.
        What cannot be sent to a worker fails the future, as
        ProcessPoolExecutor's does (_refused); raises RuntimeError after
        shutdown."""
        self._check_open()  # checks for a fork too
        return self._submit_new(fn, args, kwargs)

    def _submit_new(self, fn, args, kwargs, timeout=None, retries=None, fut=None):
        """The future (fut, or a new one) of the call fn(*args, **kwargs),
        pickled and submitted (_submit_call); what cannot be pickled, or
        args and kwargs that fn(*args, **kwargs) would refuse, fail the
        future (_refused). submit, submit_with, Pool.apply_async."""
        try:
            if type(args) is not tuple or type(kwargs) is not dict:
                args, kwargs = call_args(fn, args, kwargs)
            parts, total = self._call_parts(fn, args, kwargs)
        except Exception as e:  # noqa: B902 - the call's own failure
            return self._refused(e, fut)
        return self._submit_call(parts, total, timeout, retries, fut)

    def _refused(self, exc, fut=None):
        """fut (or a new future), failed with exc: the call could not be
        made (call_args) or pickled (a TypeError that is also a
        pickle.PicklingError, or what an object's own __reduce__ raised).
        concurrent.futures and multiprocessing pickle a call in a thread of
        theirs and fail its future or result so; the caller's loop of
        submits goes on."""
        if fut is None:
            fut = self._new_future()
        fut._state = _RUNNING  # set_running_or_notify_cancel of a future nobody has seen yet
        self._settle_off(fut, ("exc", exc))
        return fut

    def _call(self, fn, args, kwargs):
        """fn(*args, **kwargs) in a worker, waited for in this thread:
        its value, or its exception raised (Pool.apply). Counted in
        books.calls meanwhile: a close() and join() from another thread
        wait for the call, as multiprocessing's do, rather than close the
        handle under it."""
        if _lib.forked():
            check_fork()
        books = self._books
        counted = False
        try:
            with books.lock:
                # No call between the two: a Ctrl-C raised as the append
                # returns finds the call counted, and uncounts it below.
                counted = True
                books.calls.append(None)
            return self._call_here(fn, args, kwargs)
        finally:
            if counted:
                books.calls.pop()  # the first call here: a pending Ctrl-C is raised after it, not before
                with books.lock:
                    books.notify()  # a close may wait for the last of them (and looks again every 50 ms)

    def _call_here(self, fn, args, kwargs):
        """_call's body. A small call is submitted and waited for in one
        C call (shmx_call_into), for a first slice of 100 ms; no other
        thread hears of the job unless it runs longer."""
        if type(args) is not tuple or type(kwargs) is not dict:
            args, kwargs = call_args(fn, args, kwargs)
        parts, total = self._call_parts(fn, args, kwargs)
        if total >= _ZERO_COPY_FROM or self._books.state != _RUN:
            self._check_open()
            job = self._submit_parts(parts, total, track=False)
        else:
            payload = _wire.join(parts)
            opts = None if self._call_timeout is None and self._call_retries is None else self._opts(None, None)
            slot = self._take_slot()
            res = slot.res
            res.status = _UNFETCHED
            slot.job.value = 0
            try:
                rc = _CALL_INTO(self._pool, b"py", payload, ctypes.c_size_t(len(payload)), opts, _SLICE_C, slot.addr, _BIG_C,
                                slot.job_ref, slot.res_ref)
                if rc == _OK:
                    outcome = slot.outcome(self._pool, self._tb_type)
            except BaseException:
                # Interrupted (Ctrl-C) as the call returned: free what it
                # fetched, or give the job up as below.
                if res.status != _UNFETCHED:
                    _RELEASE(self._pool, slot.res_ref)
                elif slot.job.value:
                    self._abandon(slot.job.value)
                raise
            finally:
                job = slot.job.value
                self._slots.append(slot)
            if rc == _OK:
                job = 0  # fetched by the call
            elif rc != _lib.SHMX_ETIMEDOUT:
                raise self._submit_error(rc)
        if job:  # a large call, or one that outlasted its first slice: waited for here, in slices
            try:
                outcome = self._wait_untracked(job)
            except BaseException:
                # Interrupted (Ctrl-C), as the wait was entered too: the
                # job is given up, its outcome dropped as it comes.
                self._abandon(job)
                raise
        if outcome[0] == "ok":
            return outcome[1]
        raise outcome[1]

    def submit_with(self, fn, args=(), kwargs=None, *, timeout=None, retries=None):
        """submit with per-call options: timeout (seconds the task may run
        before its worker is killed and it raises TimeoutError; 0: none)
        and retries (re-runs after a worker crash). None: the pool's."""
        check_fork()
        self._check_open()
        return self._submit_new(fn, args, {} if kwargs is None else kwargs, timeout, retries)

    def map(self, fn, *iterables, timeout=None, chunksize=None, buffersize=None, progress=False):
        """Like Executor.map: returns an iterator of the results in order,
        at once (the feeder pickles and submits the items). Items are sent
        in batches: of chunksize if given, otherwise sized so that every
        worker gets several. The iterator raises TimeoutError if the next
        result is not there by timeout seconds after this call, and holds
        no result it has given out. buffersize (Python 3.14's): the
        iterables are read as results are taken, with at most that many
        batches (of chunksize, or 1, items) submitted and not yet given
        out, so that an endless or huge iterable takes bounded memory.
        progress=True shows a progress bar on stderr."""
        check_fork()
        self._check_open()
        check_chunksize(chunksize)
        if buffersize is not None:
            if type(buffersize) is not int:
                raise TypeError("buffersize must be an integer or None")
            if buffersize < 1:
                raise ValueError("buffersize must be None or > 0")
            return self._map_buffered(fn, iterables, timeout, chunksize or 1, buffersize, progress)
        star = len(iterables) != 1
        items = list(zip(*iterables)) if star else sequence(iterables[0])
        if not items:
            return iter(())
        deadline = None if timeout is None else time.monotonic() + timeout
        stream = self._stream(fn, items, chunksize, star, progress)
        return self._feed(stream, self._results(stream, deadline))

    def _map_buffered(self, fn, iterables, timeout, chunksize, buffersize, progress):
        """map with a buffersize: the first buffersize batches are
        submitted now, then one more as each batch's results are taken,
        from the taking thread (as concurrent.futures does it). A batch
        goes as a call does (_submit_call): at once, or after what the
        feeder holds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        star = len(iterables) != 1
        kind = self._map_kind(fn, star)
        bar = None
        if progress:
            from ._progress import Progress

            if not all(hasattr(it, "__len__") for it in iterables):
                raise ValueError("progress=True with buffersize= needs iterables that have a length")
            bar = progress if isinstance(progress, Progress) else Progress(min(len(it) for it in iterables))
        batches = _chunks(zip(*iterables) if star else iter(iterables[0]), chunksize, self._workers)

        def submit(n, chunk):
            frame = self._batch_frame(kind, fn, star, chunk)  # a failure ends this batch, not the map (as without a buffersize)
            fut = self._refused(frame) if isinstance(frame, BaseException) else self._submit_call(*frame)
            if bar is not None:
                fut.add_done_callback(bar.callback(n))
            return fut

        fs = collections.deque(submit(n, chunk) for n, chunk in itertools.islice(batches, buffersize))
        return self._buffered_results(fs, batches, submit, deadline)

    def _buffered_results(self, fs, batches, submit, deadline):
        """_map_buffered's iterator: each batch taken is replaced by the
        next, submitted before the wait (so that buffersize stay in
        flight); the batches not taken are cancelled when it stops."""
        try:
            while fs:
                more = next(batches, None)  # raises what the iterables raise
                if more is not None:
                    fs.append(submit(*more))
                f = fs.popleft()
                values = self._batch_values(f, deadline)
                del f
                while values:
                    yield values.pop()
        finally:
            for f in fs:
                drop_batch(f)

    def _batch_values(self, f, deadline):
        """The values of batch future f, waited for until deadline
        (time.monotonic; None: no limit), last first: the map iterators
        pop them, so that a value given out is not kept."""
        values = _wire.batch_values(f.result(None if deadline is None else max(0.0, deadline - time.monotonic())), self._tb_type)
        values.reverse()
        return values

    def _results(self, stream, deadline=None):
        """The values of a stream's batches, in order; each batch future
        and each value is dropped as it is given out. Stops the stream if
        the iterator is closed early."""
        try:
            while True:
                f = stream.next_batch(deadline)
                if f is None:
                    break
                values = self._batch_values(f, deadline)
                del f
                while values:
                    yield values.pop()
            if stream.error is not None:
                raise stream.error
        finally:
            stream.cancel()

    # -- collecting (see _Books) ------------------------------------------

    def _fetch(self, job, ns, kept=None):
        """shmx_wait for job for at most ns (< 0: no limit). Returns the C
        code and the job's outcome, ("ok", value) or ("exc", exception),
        or None while the job has not ended. kept: a list that gets the
        (code, outcome) of a job fetched as an interrupt (Ctrl-C) landed,
        which is then raised: the library has forgotten the job, so that
        outcome is the only one its future will get."""
        slot = self._take_slot()
        res = slot.res
        res.status = _UNFETCHED
        try:
            slot.job.value, slot.ns.value = job, ns
            rc = _WAIT_INTO(self._pool, slot.job, slot.ns, slot.addr, _BIG_C, slot.res_ref)
            if rc == _lib.SHMX_ETIMEDOUT:
                return rc, None
            if rc != _OK:
                return rc, ("exc", _errors.call_error(rc, "wait"))
            return rc, slot.outcome(self._pool, self._tb_type)
        except BaseException:
            # Interrupted (Ctrl-C) as the wait returned with the outcome:
            # it is kept if it can be, and what it holds is freed (a second
            # release is a no-op).
            if res.status != _UNFETCHED:
                if kept is not None:
                    kept.append((_OK, self._salvage(slot)))
                _RELEASE(self._pool, slot.res_ref)
            raise
        finally:
            self._slots.append(slot)

    def _salvage(self, slot):
        """The outcome a slot fetched, for a fetch that an interrupt cut
        short (_fetch): decoded again, or, where the interrupted decoding
        had released it already, an error that says it was lost."""
        try:
            return slot.outcome(self._pool, self._tb_type)
        except BaseException as e:  # noqa: B902 - a second Ctrl-C, or what was released: the outcome is lost, the future still ends
            return ("exc", ShmexecError(f"the task's outcome was lost: {type(e).__name__} was raised as it was fetched"))

    def _wait_group(self, group, ns, got):
        """shmx_wait_group: waits at most ns (< 0: no limit) for a job of
        group to end and puts it in got (a c_uint64, which keeps it when
        the caller is interrupted as the call returns). Returns the C
        code: SHMX_ECLOSED or SHMX_EINVAL once the handle is closed."""
        return _LIB.shmx_wait_group(self._pool, group, ns, ctypes.byref(got))

    @staticmethod
    def _deliver(outcome, fut, streamed):
        """Hands a fetched job's outcome to its future and its stream (of
        _wait_one's books), outside the books' lock."""
        if fut is not None:
            fut._settle(outcome)  # a thread that finds the job unclaimed and not pending waits on fut itself
        if streamed is not None:
            streamed[0].batch_done(streamed[1])

    def _wait_one(self, job, ns, untracked=False, reported=False, streamed=False):
        """Fetches job, waiting at most ns (< 0: no limit), and settles its
        future; with no future (a submitter that has not tracked it yet, or
        an untracked Pool.apply job) keeps the outcome in early. A job
        another thread is fetching is left to it, unless reported:
        shmx_wait_any has just reported it (the collector), which it does
        once, so this thread takes it once that thread lets go without it
        (a wait of its own that ran out just before the job ended).
        streamed: only a job still in books.streamed (a shutdown's fetch
        of what no reader has: a reader may have taken it meanwhile).
        Returns the C code, or None if the job was not this thread's."""
        books = self._books
        only_streamed = streamed
        rc = outcome = fut = streamed = None
        kept = []
        claimed = False
        try:
            with books.lock:
                while reported and job in books.claimed and books.state < _TERMINATED:
                    books.wait()  # a claim ends, and a terminate comes, with notify
                if job in books.claimed or not self._open or (only_streamed and job not in books.streamed):
                    return None
                if ns != 0 and not untracked and job not in books.pending:
                    return None  # settled already
                # Marked before the claim: an interrupt (Ctrl-C) between
                # the two leaves no claim behind, which every later wait
                # for the job would wait on for ever.
                claimed = True
                books.claimed.add(job)
            rc, outcome = self._fetch(job, ns, kept)
        finally:
            if claimed:
                if outcome is None and kept:  # fetched as an interrupt landed: placed and delivered all the same
                    rc, outcome = kept[0]
                later = None  # a Ctrl-C that cut the wait for the lock short, raised once the claim is dropped
                placed = False
                while not placed:
                    try:
                        with books.lock:  # one lock section: the outcome placed, the claim dropped
                            placed = True
                            # No call until the claim is dropped: Python raises a
                            # pending KeyboardInterrupt after a call, never after
                            # an operator, a subscript or a del.
                            if outcome is not None:
                                if job in books.streamed:
                                    streamed = books.streamed[job]
                                    del books.streamed[job]
                                if job in books.pending:
                                    fut = books.pending[job]
                                    del books.pending[job]
                                # EINVAL: fetched or forgotten by another thread. An
                                # outcome in early already is the job's: a fetch that
                                # then finds the job gone adds nothing.
                                elif job not in books.early and (rc != _lib.SHMX_EINVAL or untracked):
                                    books.early[job] = outcome
                            books.claimed -= {job}
                            try:
                                books.notify()
                            except BaseException:
                                books.notify()  # the interrupt came as notify was entered
                                raise
                    except BaseException as e:
                        if placed:
                            later = later or e
                            break
                        later = e  # Python's waits for a lock end at a signal whose handler raises
                if kept or later is not None:  # the interrupt goes on from here: the outcome's future and stream hear of it first
                    self._deliver(outcome, fut, streamed)
                if later is not None:
                    try:
                        raise later
                    finally:
                        later = None  # no cycle through this frame (an iterator in the traceback waits for the garbage collector)
        self._deliver(outcome, fut, streamed)
        if rc == _lib.SHMX_ETIMEDOUT and ns != 0:
            # It may have ended as the wait ran out: look again, rather
            # than leave it to the collector.
            self._wait_one(job, 0)
        return rc

    def _wait_untracked(self, job, deadline=None):
        """The outcome of an untracked job (Pool.apply's, a Pool.imap
        batch), fetched in this thread or taken from early where another
        thread put it; None if deadline (time.monotonic) passes first.
        Waits in slices, so that Ctrl-C works; the job stays this
        thread's if it raises."""
        books = self._books
        while True:
            with books.lock:
                while job in books.claimed:  # the collector is fetching it
                    books.wait()
                outcome = books.early.pop(job, None)
                if outcome is None and books.state >= _TERMINATED:
                    # terminated under the call: no thread can fetch the
                    # job any more (_wait_one refuses at once)
                    how = "terminated" if books.state == _TERMINATED else "closed"
                    outcome = ("exc", PoolClosed(f"the pool was {how}"))
            if outcome is not None:
                return outcome
            ns = _SLICE_NS
            if deadline is not None:
                ns = min(ns, int((deadline - time.monotonic()) * 1e9))
                if ns <= 0:
                    return None
            self._wait_one(job, ns, untracked=True)

    def _drop_abandoned(self):
        """Drops the outcomes of the Pool.imap iterators collected since
        the last call (books.dropped); their tasks run on."""
        dropped = self._books.dropped
        while True:
            try:
                stream = dropped.popleft()
            except IndexError:
                return
            stream.abandon(self)

    def _submit_streamed(self, parts, total, stream, i):
        """Submits batch i of a stream of job numbers (Stream.feed:
        work accepted before a shutdown) as an untracked job and returns
        its number. Its outcome goes to early, fetched by the collector
        or by a reader (_wait_untracked) — by the reader alone, or a
        shutdown's close, for a stream whose reader fetches (Pool.imap,
        imap_unordered) — and stream.batch_done(i) follows; until then it is in
        books.streamed, which a shutdown's close waits for."""
        job = self._submit_parts(parts, total, track=False, intake=False, group=stream.group)
        books = self._books
        with books.lock:
            ended = job in books.early  # fetched already
            if not ended:
                books.streamed[job] = (stream, i)
        if ended:
            stream.batch_done(i)
        return job

    def _give_up(self, job, own=False):
        """Gives up a job submitted as an interrupt (Ctrl-C) landed, before
        its submitter had its number or its future: nobody would take its
        outcome, and an own job's would hold a shutdown for ever."""
        if own:
            self._forget_own([job])
        else:
            self._abandon(job, unless_tracked=True)

    def _abandon(self, job, unless_tracked=False):
        """Gives up an untracked job whose caller was interrupted (Ctrl-C):
        an outcome fetched already is dropped here, and the library drops
        one still to come (shmx_forget). unless_tracked: not a job that
        has a future by now (settled as it ends). It runs to its end
        through a second interrupt (Ctrl-C pressed again as the first's
        cleanup runs), which is raised after it: cut short, the job's
        outcome would stay in early for good."""
        _locked(self._books.lock, functools.partial(self._abandon_held, job, unless_tracked), again=True)

    def _abandon_held(self, job, unless_tracked):
        """_abandon's body, under the books' lock; done again from the
        start if an interrupt cuts it short, so each step may find its
        work done."""
        books = self._books
        if unless_tracked and job in books.pending:
            return
        while job in books.claimed:  # the collector is fetching it
            books.wait()
        if job in books.streamed:
            del books.streamed[job]
        if job in books.early:
            del books.early[job]
        elif self._open:
            _LIB.shmx_forget(self._pool, job)  # SHMX_EINVAL for a job forgotten already
        books.notify()  # a shutdown may wait for the last streamed job

    def _wait_here(self, fut, timeout):
        """Waits for fut's job in the calling thread (ctypes releases the
        GIL): a round trip then costs no hand-off to the collector thread.
        If the collector is waiting on it just now, the future's own wait
        takes over. Waits in slices, so that Ctrl-C works (a signal's
        handler runs when a slice returns)."""
        job = fut._job
        deadline = None if timeout is None else time.monotonic() + timeout
        while fut._state not in _ENDED:
            ns = _SLICE_NS if deadline is None else min(_SLICE_NS, max(0, int((deadline - time.monotonic()) * 1e9)))
            if self._wait_one(job, ns) != _lib.SHMX_ETIMEDOUT or ns < _SLICE_NS:
                return  # fetched, another thread's to fetch, or the time is up

    # -- shutting down ----------------------------------------------------

    def _delivered(self):
        """Whether a shut-down executor has delivered every outcome: no
        future pending, no batch of a map's own, no call waited for in
        its thread, nothing left to feed. books.lock held."""
        books = self._books
        return books.state == _SHUTDOWN and not books.pending and not books.own and not books.streamed and not books.calls \
            and not books.handoff and self._feeder.idle()

    def _stop_intake(self):
        """Refuses new tasks from now on; returns the futures pending, or
        None if the executor had stopped taking tasks already."""
        books = self._books
        with books.lock:
            if books.state != _RUN:
                return None
            books.state = _SHUTDOWN
            pending = list(books.pending.items())
        self._feeder.close()
        return pending

    def shutdown(self, wait=True, *, cancel_futures=False):
        """Takes no more tasks; those submitted run on (cancel_futures:
        those not yet running are cancelled, but for the oldest one per
        worker, as ProcessPoolExecutor runs those it has sent on). wait: returns once every
        task has ended and the workers have exited; else at once, and the
        pool closes when its tasks have ended."""
        if _lib.forked() or self._pool is None:
            return
        pending = self._stop_intake()
        if cancel_futures:
            self._feeder.cancel_queued()
            # The oldest task for each worker is spared, running or not:
            # ProcessPoolExecutor has its workers' next calls on their way
            # to them already, and those run, so a shutdown right after a
            # burst of submits still runs some, whether or not a worker
            # has taken one yet.
            for job, fut in (pending or [])[self._workers:]:
                fut.cancel()  # the tasks not yet running
        if wait:
            self._close_handle()
        elif pending is not None:
            # Where no thread can start, the handle closes as the process
            # exits (its workers end with it); shutdown does not fail.
            start_daemon(self._close_handle, "shmexec-close")

    def _close_handle(self):
        """After shutdown: waits until the collector has delivered what is
        pending, then closes the handle (waiting for the workers). Any
        number of threads may call it; each returns once it is closed."""
        if threading.current_thread() is self._collector:
            # A callback that the collector runs waits for what only the
            # collector delivers: the close goes on in a thread of its
            # own, and the caller hears that it could not wait, as
            # concurrent.futures' and multiprocessing's callbacks do.
            if self._books.state == _SHUTDOWN:
                start_daemon(self._close_handle, "shmexec-close")
            raise RuntimeError("cannot wait for the pool in its own collector thread, where this callback runs: "
                               "it closes once its tasks have ended, as after shutdown(wait=False) or close()")
        with self._close_lock:
            if self._books.state != _SHUTDOWN:
                return
            self._feeder.join()
            # Until every outcome is delivered (each delivery notifies
            # fetched, and so does a terminate; the slice covers the
            # feeder going idle); then the close wakes the collector from
            # shmx_wait_any (SHMX_ECLOSED) rather than leaving it to find
            # out as its slice runs out.
            books = self._books
            while True:
                with books.lock:
                    if not (books.state == _SHUTDOWN and not self._delivered() and self._collector.is_alive()):
                        break
                    unread = self._unread_batches()
                    if not unread:
                        books.wait(0.05)
                        continue
                for job in unread:  # into early, for an iterator read after join
                    self._wait_one(job, _SLICE_NS, untracked=True, streamed=True)
            _LIB.shmx_pool_close(self._pool, -1)  # SHMX_EINVAL if terminate closed it first
            self._collector.join()
            with self._books.lock:
                if self._books.state == _SHUTDOWN:
                    self._books.state = _CLOSED

    def _unread_batches(self):
        """The batches of Pool.imap and imap_unordered that no thread is
        fetching: the collector is never told of those
        (a job group's, Stream.group), so a shutdown's close fetches those
        their readers have not. books.lock held."""
        books = self._books
        return [job for job, (stream, _) in books.streamed.items() if stream.group and job not in books.claimed]

    def terminate(self):
        """Kills the workers now; pending tasks raise PoolClosed. For a
        served pool (connect=) it detaches: the server's workers go on."""
        if _lib.forked() or self._pool is None:
            return
        books = self._books
        with books.lock:
            if books.state >= _TERMINATED:
                if books.state == _CLOSED:  # joined after close: nothing left to kill, but named terminated now
                    books.state = _TERMINATED
                return
            books.state = _TERMINATED
            books.notify()  # a collector waiting out another thread's claim gives up
        closed = PoolClosed("the pool was terminated")
        self._feeder.fail_queued(closed)
        _LIB.shmx_pool_terminate(self._pool)  # SHMX_EINVAL if a shutdown closed it first
        if threading.current_thread() is not self._collector:  # a callback may terminate
            self._collector.join()  # woken by the terminate (SHMX_ECLOSED) from shmx_wait_any
        self._feeder.join(10)  # a submit it was blocked in has returned by now
        with books.lock:
            pending = list(books.pending.values())
            books.pending.clear()
            streamed = list(books.streamed.values())  # their readers get PoolClosed (_wait_untracked)
            books.streamed.clear()
        for fut in pending:
            if not fut.done():
                fut.set_exception(closed)
        for stream, i in streamed:
            stream.batch_done(i)

    def __del__(self):
        # An executor nobody references any longer (its threads hold it
        # weakly: _collect, Feeder) shuts down as ProcessPoolExecutor's
        # does: its tasks run on, then its workers exit. From a thread of
        # its own: a collection may run this where a thread of this
        # executor holds books.lock.
        try:
            if getattr(self, "_pool", None) is not None and not _lib.forked():
                self._shut_down_later()
        except Exception:
            pass

    def _shut_down_later(self):
        """shutdown(wait=False) from a thread of its own, for a finalizer
        (this one, Pool's): a collection may run one where a thread of this
        engine holds books.lock, which shutdown takes. While the
        interpreter finalizes (a pool made after _pools_exit ran), no
        thread starts and other threads are frozen where they are: the
        workers are killed with no lock taken, as they are wherever no
        thread can start (the library takes a second
        terminate of the handle, the collector's wait ends)."""
        if self._books.state != _RUN:
            return
        if sys.is_finalizing() or isinstance(start_daemon(self.shutdown, "shmexec-finalizer", wait=False), RuntimeError):
            _LIB.shmx_pool_terminate(self._pool)

    __reduce_ex__ = _reduction.refuse_pickling


def _locked(lock, body, again=False):
    """body() with lock held, for bookkeeping that must happen even when
    a Ctrl-C comes while this thread waits for the lock (Python's waits
    for a lock end at a signal whose handler raises): the wait is taken
    up again, and the interrupt raised after body. again: body is done
    again, from the start, when an interrupt (_errors.interrupt) cuts it
    short too. Returns body's value."""
    later = None
    while True:
        entered = False
        try:
            with lock:
                entered = True
                value = body()
            break
        except BaseException as e:
            if entered and not (again and _errors.interrupt(e)):
                raise
            later = e
    if later is not None:
        try:
            raise later
        finally:
            later = None  # no cycle through this frame: what the traceback holds is freed when it is
    return value


def _own_done(books, jobs):
    """Drops jobs from books.own (lock held), in one step."""
    books.own.difference_update(jobs)
    books.notify()


def _terminated(books):
    return books.state >= _TERMINATED


def _collect(ref, books, pool):
    """The collector thread: finishes futures nobody waits for in their own
    thread (callbacks, wait, as_completed). shmx_wait_any leaves a job
    that a caller waits for in result() to that caller, and does not wake
    this thread for it: a round trip then involves no hand-off between
    threads. It holds its engine (ref) only between its waits, so that an
    Executor nobody references any longer is collected (Engine.__del__);
    a job reported after that has nobody to tell."""
    job = ctypes.c_uint64()
    while True:
        ex = ref()
        if ex is None:
            return
        if books.handoff:
            _run_handed(books)
        if books.dropped:
            ex._drop_abandoned()
        with books.lock:
            done = ex._delivered() or books.state >= _TERMINATED
        ex = None
        if done:
            _stop_collecting(books)
            return
        rc = _LIB.shmx_wait_any(pool, 50_000_000, ctypes.byref(job))
        if rc == _OK:
            ex = ref()
            if ex is None:
                return
            ex._wait_one(job.value, 0, reported=True)
            ex = None
        elif rc != _lib.SHMX_ETIMEDOUT and rc != _lib.SHMX_EINTR:  # EINTR: handed work (Engine._hand_over)
            _stop_collecting(books)
            return


def _stop_collecting(books):
    """The collector's last step: work handed over from now on runs where
    it is handed over (Engine._hand_over), and what was handed before runs
    here."""
    with books.lock:
        books.collecting = False
    _run_handed(books)


def _run_handed(books):
    """Runs the work handed to the collector (Engine._hand_over), in order;
    then wakes a shutdown's close, which waits for it (_delivered)."""
    handoff = books.handoff
    while True:
        try:
            fn, args = handoff.popleft()
        except IndexError:
            break
        fn(*args)
    with books.lock:
        books.notify()


_live = weakref.WeakSet()  # the engines of this process, for _python_exit and _pools_exit
_exiting = False  # the main thread has ended: Executors take no new tasks


def _python_exit():
    """When the main thread ends, before the other threads are joined (as
    concurrent.futures' own): Executors take no new tasks, and each one
    still open finishes its tasks."""
    global _exiting
    _exiting = True
    for ex in list(_live):
        if not ex._at_exit_terminate:
            try:
                ex.shutdown(wait=True)
            except Exception:
                pass


def _pools_exit():
    """At exit, among the atexit callbacks (as multiprocessing's own, which
    it registers when its first pool is made): each Pool still open is
    terminated. A thread that outlives the main one, and an atexit
    callback registered after this, may still use a Pool."""
    for ex in list(_live):
        if ex._at_exit_terminate:
            try:
                ex.terminate()
            except Exception:
                pass


try:
    threading._register_atexit(_python_exit)
except RuntimeError:  # first imported after the main thread ended (in an atexit callback)
    _exiting = True
atexit.register(_pools_exit)


def check_context(ctx):
    """Accepts a multiprocessing context (or none) whose children start as
    a fresh interpreter that imports what it is sent, as shmexec's workers
    do: "spawn", or "forkserver" (each child forked from a server process
    that was itself spawned; Python 3.14's default on Linux). A "fork"
    context's children inherit the caller's memory, which no exec'd worker
    can: refused. Anything else is a TypeError."""
    if ctx is None:
        return
    if not hasattr(ctx, "get_start_method"):
        raise TypeError(f"the context must be a multiprocessing context, such as multiprocessing.get_context('spawn'), "
                        f"not {type(ctx).__name__}")
    method = ctx.get_start_method()
    if method not in (None, "spawn", "forkserver"):
        raise ValueError(f"shmexec starts workers with exec, as the 'spawn' start method does; it cannot use a "
                         f"{method!r} context, whose children inherit the caller's memory (pass none, or "
                         "multiprocessing.get_context('spawn'))")


def call_args(fn, args, kwargs):
    """args and kwargs as the tuple and the dict of fn(*args, **kwargs),
    which multiprocessing's workers call as given: a TypeError worded as
    Python's own for args that are not iterable or kwargs that are not a
    mapping (a list of pairs is not one)."""
    if type(args) is not tuple:
        try:
            it = iter(args)
        except TypeError:
            raise TypeError(f"{_function_str(fn)} argument after * must be an iterable, not {type(args).__name__}") from None
        args = tuple(it)
    if type(kwargs) is not dict:
        if not hasattr(type(kwargs), "keys"):
            raise TypeError(f"{_function_str(fn)} argument after ** must be a mapping, not {type(kwargs).__name__}")
        kwargs = dict(kwargs)
    return args, kwargs


def _function_str(fn):
    """fn as Python names it in a call's TypeError (_PyObject_FunctionStr)."""
    qualname, module = getattr(fn, "__qualname__", None), getattr(fn, "__module__", None)
    if not isinstance(qualname, str):
        return str(fn)
    return f"{module}.{qualname}()" if isinstance(module, str) and module != "builtins" else f"{qualname}()"


def default_workers():
    """The number of workers a pool gets by default: the CPUs this process
    may run on, as Python 3.13's multiprocessing and concurrent.futures
    count them (os.process_cpu_count), not every CPU of the machine (a
    container's or taskset's limit counts)."""
    count = getattr(os, "process_cpu_count", None)
    if count is not None:
        return count() or 1
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_chunksize(chunksize):
    if chunksize is not None and (type(chunksize) is not int or chunksize < 1):
        raise ValueError("chunksize must be >= 1.")


def _chunks(items, chunksize, workers):
    """(n, items) batches of items: a sequence is sliced (chunksize None:
    chunk_sizes), anything else is consumed as it goes, chunksize (or 1)
    at a time."""
    if hasattr(items, "__getitem__") and hasattr(items, "__len__"):
        sizes = chunk_sizes(len(items), workers) if chunksize is None else None
        i, k = 0, 0
        while i < len(items):
            n = sizes[k] if sizes else chunksize
            k += 1
            yield n, items[i:i + n]
            i += n
        return
    it = iter(items)
    n = chunksize or 1
    while True:
        chunk = list(itertools.islice(it, n))  # raises what the iterable raises
        if not chunk:
            return
        yield len(chunk), chunk


class WorkerProcess:
    """A worker process as Pool._pool and Executor._processes give it, by
    pid: a view for code that inspects multiprocessing's pools, not a
    handle the pool depends on."""

    def __init__(self, pid):
        self.pid = pid
        self.exitcode = None

    def is_alive(self):
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def terminate(self):
        """SIGTERM: the pool reports the task it ran as WorkerCrashed and
        replaces the worker."""
        os.kill(self.pid, signal.SIGTERM)

    def kill(self):
        os.kill(self.pid, signal.SIGKILL)

    def __repr__(self):
        return f"<shmexec worker pid={self.pid}>"
