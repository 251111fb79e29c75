"""Feeding the pool from a thread of its own, so that asynchronous calls
return at once however full the pool is (multiprocessing's Pool has its
task-handler thread for the same reason).

An Executor hands the Feeder what it could not, or need not, submit from
the calling thread: a call that met a full pool (QueuedCall), and the
batches of an asynchronous map (Stream), which the feeder pickles and
submits one by one as job slots free, so that a map of a million items
returns before the first is pickled. The feeder keeps the order in which
work was handed over."""

import collections
import threading
import time
import weakref

from . import _wire
from ._errors import PoolClosed, callback_raised


class QueuedCall:
    """A call whose frame is made, waiting for the feeder to submit it.
    Its future stays pending (cancellable) until then."""

    __slots__ = ("parts", "total", "timeout", "retries", "future")

    def __init__(self, parts, total, timeout, retries, future):
        self.parts, self.total, self.timeout, self.retries, self.future = parts, total, timeout, retries, future

    def feed(self, ex, stopped):
        if stopped() or not self.future.set_running_or_notify_cancel():
            return
        try:
            job = ex._submit_parts(self.parts, self.total, self.timeout, self.retries, track=False, intake=False)
        except BaseException as e:  # noqa: B902 - the call's own failure ends its future
            self.future.set_exception(e)
            return
        finally:
            self.parts = None  # keep no reference to the arguments
        ex._attach(self.future, job)

    def fail(self, exc):
        if self.future.set_running_or_notify_cancel():
            self.future.set_exception(exc)

    def cancel(self):
        self.future.cancel()


def drop_batch(fut):
    """Cancels the future of a map's batch that its reader will not take
    (it stopped, at a failure or early), as concurrent.futures cancels a
    map's futures: one that has ended already does not report its
    exception as never retrieved."""
    fut._observed = True
    fut.cancel()


class Stream:
    """The batches of one asynchronous map, in order, as the feeder
    submits them: futures (make_future makes one a batch), or, with
    make_future None, job numbers whose outcomes the executor keeps for
    the readers (feed). chunks yields the frames of the batches (it
    pickles as it goes, and raises what the map's iterable raises).
    Readers: next_batch(deadline) in order; take(i) for the batches that
    report, a queue, is told of as they end (then None at the stream's
    end); or on_complete for when every batch has ended. A batch whose
    frame cannot be made ends with that error; an error of the iterable
    ends the stream (error), after the batches before it, as
    multiprocessing has it."""

    def __init__(self, chunks, make_future, progress=None, report=None, group=0, by_job=False):
        self._chunks = chunks
        self._make_future = make_future  # None: job numbers instead of futures (feed)
        self._progress = progress
        # Taken as `with self._lock`: a Condition's __enter__ is Python,
        # and a Ctrl-C raised in it once it has taken the lock leaves the
        # lock held for ever; the lock's own is C, after which nothing is
        # raised before the block is entered.
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self.batches = []  # the batch futures so far (readers pop from the front)
        self._taken = 0  # batches a reader has taken (in order, or by job: took)
        # The job number next_batch gave out last: its reader may still be
        # reading it, or may have lost it to a Ctrl-C as the call returned.
        self._out = None
        self.ended = False
        self.error = None  # what the iterable raised, if it did
        self._left = 0  # batches not yet done
        self._cancelled = False
        self._complete = []  # callbacks for when ended and every batch done
        self._report = report  # a queue told of each batch's end (batch_done)
        self.abandoned = False  # job numbers only: the reader is gone (abandon)
        self._submitted = 0  # job numbers only: batches numbered so far
        # Job numbers only: a job group of the stream's own
        # (shmx_wait_group), 0 for none. The collector is never woken for
        # a group's jobs: its reader fetches each batch itself, in order
        # (Pool.imap), or as the group reports it (by_job:
        # Pool.imap_unordered), so that each result passes from the
        # worker to the reader, not through the collector thread too.
        # by_job: the reader takes batches by job number (took), so the
        # stream keeps each untaken job's index (_index), and the indices
        # of batches that could not be sent, which no group reports
        # (_failed).
        self.group = group
        self.by_job = by_job
        if by_job:
            self._index = {}
            self._failed = collections.deque()

    # -- the feeder's side --------------------------------------------

    def feed(self, ex, stopped):
        """Pickles and submits every batch, in order (the feeder's).
        A stream of futures (make_future) gives each batch a future; a
        stream of job numbers (Pool.imap, imap_unordered, map_async)
        submits each as an untracked job (Executor._submit_streamed),
        whose outcome goes to the executor's early outcomes, where readers
        take it (Executor._wait_untracked), and the executor calls
        batch_done as each ends: no future, no callback per batch. Such a
        stream submits every batch, whether a reader is there or not; once
        it is gone (abandon), each is abandoned as it is submitted."""
        step = self._feed_future if self._make_future is not None else self._feed_job
        try:
            while not stopped() and not self._cancelled:
                try:
                    n, frame = next(self._chunks)
                except StopIteration:
                    break
                except BaseException as e:  # noqa: B902 - the iterable's error ends the map
                    self._end(e)
                    return
                step(ex, n, frame)
            if stopped():
                self._end(PoolClosed("the pool was terminated"))
                return
        finally:
            self._chunks = None
        self._end(None)

    def _feed_future(self, ex, n, frame):
        fut = self._make_future()
        if not fut.set_running_or_notify_cancel():
            return
        if isinstance(frame, BaseException):
            fut.set_exception(frame)
        else:
            try:
                job = ex._submit_parts(*frame, track=False, intake=False)
            except BaseException as e:  # noqa: B902
                fut.set_exception(e)
            else:
                ex._attach(fut, job)
        self._add(fut, n)

    def _feed_job(self, ex, n, frame):
        with self._lock:
            i = self._submitted
            self._submitted += 1
            self._left += 1
        if not isinstance(frame, BaseException):
            try:
                frame = ex._submit_streamed(*frame, self, i)
            except BaseException as e:  # noqa: B902
                frame = e  # the batch's own failure: it has ended
        with self._lock:
            gone = self.abandoned
            if not gone:
                if self.by_job:
                    if type(frame) is int:
                        self._index[frame] = len(self.batches)
                    else:
                        self._failed.append(len(self.batches))
                self.batches.append(frame)
                self._cond.notify_all()
        if type(frame) is not int:
            self.batch_done(i)  # a batch that could not be sent has ended
        elif gone:
            ex._abandon(frame)

    def batch_done(self, i):
        """Batch i has ended (its future is done; or its outcome is in the
        executor's early outcomes, or it could not be sent): counted for
        on_complete, and told to the report queue."""
        with self._lock:
            self._left -= 1
            complete = self.ended and self._left == 0
            report = self._report
        if report is not None:
            report.put(i)
        if complete:
            self._fire()

    def abandon(self, ex):
        """A stream of job numbers whose reader is gone: the outcomes of
        its batches are dropped, those to come as they are submitted."""
        with self._lock:
            self.abandoned = True
            jobs = [j for j in self.batches if type(j) is int]  # a taken batch is None
            if type(self._out) is int:
                jobs.append(self._out)  # read already, or not: the library answers SHMX_EINVAL for a job fetched
                self._out = None
            self.batches = []
            self._taken = 0
            if self.by_job:
                self._index.clear()
                self._failed.clear()
            self._cond.notify_all()
        for job in jobs:
            ex._abandon(job)

    def fail(self, exc):
        self._end(exc if not self.ended else None)

    def cancel(self):
        """Stops feeding: batches not yet submitted never are."""
        self._cancelled = True
        with self._lock:
            pending = [f for f in self.batches if f is not None]
        for f in pending:
            drop_batch(f)

    def _add(self, fut, n):
        with self._lock:
            self.batches.append(fut)
            i = len(self.batches) - 1
            self._left += 1
            self._cond.notify_all()
        if self._progress is not None:
            fut.add_done_callback(self._progress.callback(n))
        fut.add_done_callback(lambda _, i=i: self.batch_done(i))

    def _end(self, error):
        with self._lock:
            if self.ended:
                return
            self.ended = True
            if error is not None:
                self.error = error
            complete = self._left == 0
            report = self._report
            self._cond.notify_all()
        if report is not None:
            report.put(None)
        if complete:
            self._fire()

    def _fire(self):
        # It runs in whichever thread ended the last batch: the collector,
        # a reader, the feeder. What a callback raises (an AsyncResult's
        # passes on its user's callback's exception) is reported
        # (_errors.callback_raised), and stops nothing.
        with self._lock:
            callbacks, self._complete = self._complete, None
        for cb in callbacks or ():
            try:
                cb(self)
            except BaseException:  # noqa: B902
                callback_raised(self)

    # -- the readers' side --------------------------------------------

    def on_complete(self, cb):
        """Calls cb(stream) once the stream has ended and every batch is
        done (at once if that is so already)."""
        with self._lock:
            if self._complete is not None:
                if not (self.ended and self._left == 0):
                    self._complete.append(cb)
                    return
                self._complete = None
        cb(self)

    def next_batch(self, deadline=None):
        """The next batch future (or job number, or exception: feed)
        in order, removed from the stream (so that its result is not
        kept), or None at the end; raises TimeoutError if none has been
        submitted by deadline (time.monotonic)."""
        with self._lock:
            if not self._wait_for_more(deadline):
                raise TimeoutError()
            if self._taken < len(self.batches):
                f = self.batches[self._taken]
                self.batches[self._taken] = None
                self._taken += 1
                if type(f) is int:
                    self._out = f
                return f
            return None

    # -- the reader of a group (Pool.imap_unordered) --------------------

    def group_state(self):
        """(ended, batches not yet taken, a batch that could not be sent,
        removed from the stream, or None), for the reader of a group."""
        with self._lock:
            failed = None
            if self._failed:
                i = self._failed.popleft()
                failed, self.batches[i] = self.batches[i], None
                self._taken += 1
            return self.ended, len(self.batches) - self._taken, failed

    def wait_listed(self, job):
        """Waits until the feeder has put job, which the group has just
        reported, in the stream (it may report a job that ends as soon as
        it is submitted): its outcome is then in the executor's books
        (Executor._submit_streamed), where the reader takes it. False if
        the stream was abandoned meanwhile."""
        with self._lock:
            while job not in self._index and not self.abandoned:
                self._cond.wait()
            return not self.abandoned

    def took(self, job):
        """The reader of a group has taken job's outcome."""
        with self._lock:
            i = self._index.pop(job)
            self.batches[i] = None
            self._taken += 1

    def untaken_jobs(self):
        """The jobs of the group its reader has not taken: after the
        pool's close, whose shutdown fetched them (or a terminate)."""
        with self._lock:
            return list(self._index)

    def wait_for_batches(self, deadline=None):
        """Waits until the stream has a batch its group's reader has not
        taken, or has ended; False if deadline (time.monotonic) passes
        first."""
        with self._lock:
            return self._wait_for_more(deadline)

    def _wait_for_more(self, deadline):
        """Waits until the stream has a batch no reader has taken, or has
        ended; False if deadline (time.monotonic) passes first. _cond
        held."""
        while self._taken >= len(self.batches) and not self.ended:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._cond.wait(left)
        return True

    def count(self):
        """How many batches have been submitted so far."""
        with self._lock:
            return len(self.batches)

    def take(self, i):
        """Batch i's future (or job number, or exception), removed from the
        stream (for the reader of report); waits until the feeder has put
        it there."""
        with self._lock:
            while i >= len(self.batches):
                self._cond.wait()
            f, self.batches[i] = self.batches[i], None
            return f

    def all_batches(self):
        """The batch futures, once the stream is complete."""
        with self._lock:
            return [f for f in self.batches if f is not None]


def start_daemon(target, name, **kwargs):
    """A started daemon thread that runs target(**kwargs), or the
    RuntimeError that refused it: Python 3.12 and later refuse a thread
    while the interpreter shuts down (from its atexit callbacks on), and
    so does a limit on threads."""
    thread = threading.Thread(target=target, kwargs=kwargs, name=name, daemon=True)
    try:
        thread.start()
    except RuntimeError as e:
        return e
    return thread


def no_thread(e, executor):
    """The error of work that could not be queued because the feeder thread
    could not start (RuntimeError e): for an Executor, the BrokenProcessPool
    that ProcessPoolExecutor's work then fails with, else a RuntimeError."""
    message = f"shmexec cannot start the thread that feeds the pool: {e}"
    if executor:
        from concurrent.futures.process import BrokenProcessPool

        error = BrokenProcessPool(message)
    else:
        error = RuntimeError(message)
    error.__cause__ = e
    return error


class Feeder:
    """The thread that submits queued work, in order. Started on first
    use; it ends when its executor stops taking work and nothing is left,
    or at once when the executor is terminated (what is left then fails
    with PoolClosed)."""

    def __init__(self, ex, stopped):
        # Its executor by a weak reference, held strongly only while an
        # item is fed, so that an executor nobody references any longer is
        # collected (and shut down) although this thread runs; stopped:
        # whether it is terminated, a callable that does not hold it.
        self._ex = weakref.ref(ex)
        self._stopped = stopped
        self._lock = threading.RLock()  # taken as `with self._lock`, as Stream's
        self._cond = threading.Condition(self._lock)
        self._queue = collections.deque()
        self._busy = False  # an item is being fed
        self._thread = None
        self._closing = False

    def idle(self):
        """Whether nothing is queued or being fed: everything handed over
        has been fed, and a caller may submit itself without overtaking
        queued work. It reads without the lock (a lock section is most of
        the cost of asking, on every submit): the feeder marks itself busy
        before it takes an item off the queue, so no reader sees neither
        the item queued nor the feeder busy."""
        return not self._queue and not self._busy

    def put(self, item):
        """Queues item for the thread, started here on first use. Where no
        thread can start (the interpreter is finalizing, or a limit on
        threads), item fails instead (no_thread), as ProcessPoolExecutor's
        work does when its feeder thread cannot start (gh-109047); a later
        put tries again."""
        with self._lock:
            if self._thread is None:
                started = start_daemon(self._run, "shmexec-feeder")
                if isinstance(started, RuntimeError):
                    refused = started
                else:
                    self._thread, refused = started, None
            else:
                refused = None
            if refused is None:
                self._queue.append(item)
                self._cond.notify()
                return
        ex = self._ex()
        item.fail(no_thread(refused, ex is None or ex._tb_type == _wire.FUTURES_TRACEBACK))

    def close(self):
        """No more work will come: the thread ends once the queue is empty."""
        with self._lock:
            self._closing = True
            self._cond.notify()

    def cancel_queued(self):
        """Cancels the futures of everything queued (shutdown with
        cancel_futures)."""
        for item in self._take_queued():
            item.cancel()

    def fail_queued(self, exc):
        """Ends everything queued with exc (terminate)."""
        for item in self._take_queued():
            item.fail(exc)

    def _take_queued(self):
        with self._lock:
            items = list(self._queue)
            self._queue.clear()
        return items

    def join(self, timeout=None):
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)

    def _run(self):
        stopped = self._stopped
        while True:
            with self._lock:
                while not self._queue and not self._closing and not stopped():
                    self._cond.wait(0.1)
                if stopped() or (self._closing and not self._queue):
                    break
                self._busy = True  # before the pop: see idle
                item = self._queue.popleft()
            try:
                ex = self._ex()
                if ex is None:  # collected: whatever was queued has no reader
                    return
                item.feed(ex, stopped)
            finally:
                ex = item = None  # a stream's futures hold the executor too
                with self._lock:
                    self._busy = False
        if stopped():
            self.fail_queued(PoolClosed("the pool was terminated"))
