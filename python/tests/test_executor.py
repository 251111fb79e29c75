import concurrent.futures as cf
import functools
import gc
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
import warnings

import _paths  # noqa: E402,F401  (sys.path: the checkout's package, or the installed one)

import shmexec  # noqa: E402
import helpers  # noqa: E402

DEADLINE = 5  # seconds any single wait may take before the test fails


class ExecutorTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ex = shmexec.Executor(max_workers=2)

    @classmethod
    def tearDownClass(cls):
        cls.ex.shutdown()

    def test_submit_and_map(self):
        self.assertEqual(self.ex.submit(helpers.add, 2, 3).result(DEADLINE), 5)
        self.assertEqual(list(self.ex.map(helpers.add, range(1000), range(1000), timeout=DEADLINE)), [2 * i for i in range(1000)])
        self.assertEqual(list(self.ex.map(helpers.add, [1, 2], [3, 4], chunksize=1)), [4, 6])

    def test_map_timeout_counts_from_the_call(self):
        # As concurrent.futures has it: the whole map's results must come
        # within timeout of the call, not each batch within timeout of
        # the last (6 sleeps of 0.5 s on 2 workers take 1.5 s).
        import time

        start = time.monotonic()
        it = self.ex.map(helpers.sleep, [0.5] * 6, timeout=1.0, chunksize=1)
        with self.assertRaises(TimeoutError):
            list(it)
        self.assertLess(time.monotonic() - start, 1.4)
        self.assertEqual(self.ex.submit(helpers.add, 2, 2).result(DEADLINE), 4)

    def test_map_with_buffersize_reads_the_iterables_as_results_are_taken(self):
        # Python 3.14's buffersize: at most that many batches submitted
        # and not yet given out, so that an endless iterable works.
        read = []

        def endless():
            i = 0
            while True:
                read.append(i)
                yield i
                i += 1

        it = self.ex.map(helpers.double, endless(), buffersize=4, timeout=DEADLINE)
        self.assertEqual(len(read), 4)
        self.assertEqual([next(it) for _ in range(10)], [2 * i for i in range(10)])
        self.assertEqual(len(read), 14)
        it.close()
        self.assertEqual(len(read), 14)
        self.assertEqual(list(self.ex.map(helpers.add, range(5), range(10, 100), buffersize=2, timeout=DEADLINE)),
                         [10, 12, 14, 16, 18])
        it = self.ex.map(helpers.double, iter(range(10)), buffersize=2, chunksize=3, timeout=DEADLINE)
        self.assertEqual(list(it), [2 * i for i in range(10)])
        with self.assertRaises(ValueError):
            list(self.ex.map(helpers.fail_on_odd, range(6), buffersize=2, timeout=DEADLINE))
        with self.assertRaisesRegex(ValueError, "buffersize must be None or > 0"):
            self.ex.map(helpers.double, [1], buffersize=0)
        with self.assertRaisesRegex(TypeError, "buffersize must be an integer or None"):
            self.ex.map(helpers.double, [1], buffersize=2.0)
        # A worker killed under a batch: that batch raises the crash,
        # the iterator stops (what it had not given out is cancelled),
        # and the executor goes on at full size.
        read.clear()
        it = self.ex.map(helpers.sigkill_self_holding, endless(), buffersize=2, timeout=DEADLINE)
        with self.assertRaises(shmexec.WorkerCrashed):
            next(it)
        with self.assertRaises(StopIteration):
            next(it)
        self.assertEqual(len(read), 3)  # two at the call, one more before the first wait
        helpers.wait_running_at_once(self.ex, 2, DEADLINE * 4)
        start = time.monotonic()
        with self.assertRaises(TimeoutError):
            list(self.ex.map(helpers.sleep, [0.5] * 4, buffersize=1, timeout=0.2))
        self.assertLess(time.monotonic() - start, 1.0)
        self.assertEqual(self.ex.submit(helpers.add, 2, 2).result(DEADLINE), 4)

    def test_exception_arrives_as_its_type(self):
        with self.assertRaisesRegex(ValueError, "nope"):
            self.ex.submit(helpers.boom, "nope").result(DEADLINE)

    def test_mismatched_init_exception_is_remote_error(self):
        f = self.ex.submit(helpers.raise_mismatched)
        with self.assertRaises(shmexec.RemoteError) as cm:
            f.result(DEADLINE)
        self.assertEqual(cm.exception.type_name, "Mismatched")
        self.assertIn("1-2", cm.exception.message)
        self.assertIn("raise_mismatched", cm.exception.traceback)
        self.assertEqual(self.ex.submit(helpers.add, 1, 1).result(DEADLINE), 2)  # the pool lives on

    def test_base_exceptions_end_the_task_only(self):
        for fn, exc in ((helpers.system_exit, SystemExit), (helpers.keyboard_interrupt, KeyboardInterrupt)):
            with self.assertRaises(exc):
                self.ex.submit(fn).result(DEADLINE)
        self.assertEqual(self.ex.submit(helpers.add, 1, 2).result(DEADLINE), 3)

    def test_worker_killed(self):
        with self.assertRaises(shmexec.WorkerCrashed) as cm:
            self.ex.submit(helpers.sigkill_self).result(DEADLINE)
        self.assertEqual(cm.exception.signal, signal.SIGKILL)
        self.assertGreater(cm.exception.pid, 0)
        # What code written for ProcessPoolExecutor catches, too; only
        # the task fails (the executor goes on, below).
        from concurrent.futures.process import BrokenProcessPool

        self.assertIsInstance(cm.exception, BrokenProcessPool)
        back = pickle.loads(pickle.dumps(cm.exception))
        self.assertEqual((type(back), str(back)), (type(cm.exception), str(cm.exception)))
        with self.assertRaises(BrokenProcessPool) as cm:
            self.ex.submit(helpers.exit_now, 7).result(DEADLINE)
        self.assertEqual(cm.exception.exit_code, 7)
        # Full size again: two tasks run at once on two workers.
        helpers.wait_running_at_once(self.ex, 2, DEADLINE)
        self.assertEqual(self.ex.submit(helpers.add, 2, 2).result(DEADLINE), 4)

    def test_killed_worker_seen_through_callbacks(self):
        # Nobody waits in result(): the crash reaches the future through
        # the collector thread (shmx_wait_any), as do the other jobs.
        got = []
        fs = [self.ex.submit(helpers.sigkill_self)] + [self.ex.submit(helpers.add, i, 1) for i in range(50)]
        for f in fs:
            f.add_done_callback(got.append)
        done, not_done = cf.wait(fs, timeout=DEADLINE)
        self.assertFalse(not_done, f"{len(not_done)} jobs never finished")
        self.assertIsInstance(fs[0].exception(0), shmexec.WorkerCrashed)
        self.assertEqual([f.result(0) for f in fs[1:]], [i + 1 for i in range(50)])
        deadline = time.monotonic() + DEADLINE  # callbacks run just after wait() is told
        while len(got) < len(fs) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual(len(got), len(fs))
        self.assertEqual(self.ex.submit(helpers.add, 2, 2).result(DEADLINE), 4)

    def test_kill_during_map(self):
        items = [0.001] * 200
        f = self.ex.submit(helpers.sigkill_self)
        results = list(self.ex.map(helpers.sleep, items, timeout=DEADLINE))
        self.assertEqual(results, items)
        with self.assertRaises(shmexec.WorkerCrashed):
            f.result(DEADLINE)

    def test_worker_cannot_start_a_pool(self):
        self.assertIn("cannot start a pool", self.ex.submit(helpers.nested_pool).result(DEADLINE))

    def test_work_fails_where_its_feeder_thread_cannot_start(self):
        # A thread cannot start while the interpreter finalizes, or past a
        # limit on threads (CPython's gh-109047, whose test Python 3.13
        # runs against ProcessPoolExecutor: suites.py runs it against
        # shmexec there). The map's work fails, with the
        # BrokenProcessPool of ProcessPoolExecutor (a Pool's: a
        # RuntimeError), a later map starts the thread, and the shutdown
        # neither raises nor hangs (until 2026-12-08 the map raised the
        # RuntimeError and the shutdown then failed to join the thread).
        from concurrent.futures.process import BrokenProcessPool
        from unittest import mock

        start = threading.Thread.start

        def refuse_the_feeder(thread):
            if thread.name == "shmexec-feeder":
                raise RuntimeError("can't create new thread at interpreter shutdown")
            return start(thread)

        ex = shmexec.Executor(1)
        pool = shmexec.Pool(1)
        try:
            errors = []
            with mock.patch.object(threading.Thread, "start", refuse_the_feeder):
                it = ex.map(helpers.echo, range(10))
                with self.assertRaisesRegex(BrokenProcessPool, "cannot start the thread that feeds the pool") as cm:
                    list(it)
                self.assertIsInstance(cm.exception.__cause__, RuntimeError)
                r = pool.map_async(helpers.echo, range(10), error_callback=errors.append)
                with self.assertRaisesRegex(RuntimeError, "cannot start the thread that feeds the pool"):
                    r.get(DEADLINE)
                self.assertEqual(len(errors), 1)
                with self.assertRaisesRegex(RuntimeError, "cannot start the thread that feeds the pool"):
                    next(pool.imap(helpers.echo, range(10)))
            self.assertEqual(list(ex.map(helpers.echo, range(10))), list(range(10)))
            self.assertEqual(pool.map_async(helpers.echo, range(10)).get(DEADLINE), list(range(10)))
            # Where no thread at all can start (Python 3.12's atexit
            # callbacks on): shutdown(wait=False) does not fail, its tasks
            # still end, and a later shutdown closes the pool; a pool
            # collected while it runs has its workers killed instead of
            # being left running.
            f = ex.submit(helpers.sleep_then_pid, 0.2)
            lost = shmexec.Pool(1)
            pids = lost._ex._worker_pids()
            with mock.patch.object(threading.Thread, "start", side_effect=RuntimeError("can't create new thread")):
                ex.shutdown(wait=False)
                self.assertIsInstance(f.result(DEADLINE), int)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ResourceWarning)
                    del lost
                    gc.collect()
            deadline = time.monotonic() + DEADLINE
            while any(helpers.shmexec_process_alive(pid) for pid in pids) and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertFalse(any(helpers.shmexec_process_alive(pid) for pid in pids), "the workers of a pool collected where no thread can start")
        finally:
            pool.close()
            pool.join()
            ex.shutdown(wait=True)

    def test_unsendable_arguments_fail_their_future(self):
        # As ProcessPoolExecutor's and multiprocessing's: the future (the
        # AsyncResult) fails, and a loop of submits goes on. The error is a
        # TypeError that says what could not be sent, and a
        # pickle.PicklingError, which code written for either catches.
        # (Until 2026-12-07 submit raised it, a TypeError only.)
        import pickle

        f = self.ex.submit(helpers.echo, threading_lock())
        with self.assertRaisesRegex(TypeError, "cannot send the arguments of 'echo'.*lock"):
            f.result(DEADLINE)
        self.assertIsInstance(f.exception(), pickle.PicklingError)
        self.assertIsInstance(self.ex.submit_with(helpers.echo, (threading_lock(),)).exception(DEADLINE), pickle.PicklingError)
        # submit_with takes args and kwargs as a call does: any iterable,
        # any mapping; what a call would refuse fails the future, the same way.
        self.assertEqual(self.ex.submit_with(helpers.add, [1], {"b": 2}).result(DEADLINE), 3)
        with self.assertRaisesRegex(TypeError, r"^helpers\.add\(\) argument after \*\* must be a mapping, not list$"):
            self.ex.submit_with(helpers.add, (1,), [("b", 2)]).result(DEADLINE)
        pool = shmexec.Pool(1)
        try:
            errors = []
            r = pool.apply_async(helpers.echo, (threading_lock(),), error_callback=errors.append)
            with self.assertRaises(pickle.PicklingError):
                r.get(DEADLINE)
            self.assertEqual(len(errors), 1)
            self.assertIsInstance(errors[0], TypeError)
            with self.assertRaises(pickle.PicklingError):
                pool.apply(helpers.echo, (threading_lock(),))
            self.assertEqual(pool.apply(helpers.echo, (5,)), 5)
            # A map_async's function that cannot be sent fails its result,
            # as multiprocessing's does: get() raises, error_callback runs
            # in a pool thread, never in the call, and callback never.
            for star in (False, True):
                calls = []
                call = pool.starmap_async if star else pool.map_async
                r = call(functools.partial(helpers.echo, threading_lock()), [(1,), (2,)], callback=calls.append,
                         error_callback=lambda e: calls.append((e, threading.current_thread())))
                with self.assertRaises(pickle.PicklingError):
                    r.get(DEADLINE)
                self.assertTrue(r.ready())
                self.assertFalse(r.successful())
                self.assertEqual(len(calls), 1, calls)
                self.assertIsInstance(calls[0][0], pickle.PicklingError)
                self.assertIsNot(calls[0][1], threading.current_thread())
            self.assertEqual(pool.map(helpers.echo, [5, 6]), [5, 6])
        finally:
            pool.terminate()
        self.assertEqual(self.ex.submit(helpers.echo, 5).result(DEADLINE), 5)
        # A map's batch that cannot be sent fails where its results would
        # be, with a buffersize too (until 2026-12-07 map() raised it).
        for kwargs in ({}, {"buffersize": 2}):
            it = self.ex.map(helpers.echo, [1, threading_lock(), 3], **kwargs)
            self.assertEqual(next(it), 1)
            with self.assertRaises(pickle.PicklingError):
                next(it)
        # So does a function that cannot be sent: each batch fails with it.
        # The map returns, its first result raises, and the iterator ends
        # there, as concurrent.futures' does; the batches it did not give
        # out are dropped without an "exception was never retrieved".
        # Pool.imap raises it for each item, as multiprocessing's does.
        unsendable = functools.partial(helpers.echo, threading_lock())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for kwargs in ({}, {"chunksize": 1}, {"buffersize": 2}):
                it = self.ex.map(unsendable, [1, 2, 3], **kwargs)
                with self.assertRaises(pickle.PicklingError):
                    next(it)
                self.assertEqual(list(it), [])
            del it
            gc.collect()
        self.assertEqual([str(w.message) for w in caught if "never retrieved" in str(w.message)], [])
        pool = shmexec.Pool(1)
        try:
            it = pool.imap(unsendable, [1, 2, 3])
            raised = []
            for _ in range(3):
                with self.assertRaises(pickle.PicklingError) as cm:
                    next(it)
                raised.append(cm.exception)
            self.assertEqual(list(it), [])
            # Each item's its own, as multiprocessing's: one object raised
            # again and again would grow its traceback with every raise.
            self.assertEqual(len({id(e) for e in raised}), 3)
        finally:
            pool.terminate()
        # Submitted, then a shutdown that does not wait (CPython's
        # test_shutdown_deadlock_pickle, which reads ProcessPoolExecutor's
        # internals): the future fails, and nothing hangs.
        ex = shmexec.Executor(1)
        ex.submit(helpers.echo, 1).result(DEADLINE)
        f = ex.submit(helpers.echo, threading_lock())
        ex.shutdown(wait=False)
        with self.assertRaises(pickle.PicklingError):
            f.result(DEADLINE)
        ex.shutdown(wait=True)

    def test_an_unsendable_result_is_named_as_the_result(self):
        # The task ran: the error says its result could not come back,
        # not that the call could not go (until 2026-12-06 it said "cannot
        # send the call to a worker"); the pool goes on.
        import pickle

        pool = shmexec.Pool(1)
        try:
            calls = {
                "submit": (lambda: self.ex.submit(helpers.make_lock).result(DEADLINE), "the result of 'make_lock'"),
                "Pool.apply": (lambda: pool.apply(helpers.make_lock), "the result of 'make_lock'"),
                "Pool.map": (lambda: pool.map(helpers.make_lock, [1, 2]), "the results of a map of 'make_lock'"),
            }
            for name, (call, what) in calls.items():
                with self.subTest(name):
                    with self.assertRaises(TypeError) as cm:
                        call()
                    self.assertIsInstance(cm.exception, pickle.PicklingError)  # as ProcessPoolExecutor's is
                    self.assertIn(f"cannot send {what} back from the worker", str(cm.exception))
                    self.assertIn("lock", str(cm.exception))
            self.assertEqual(pool.apply(helpers.echo, (5,)), 5)
        finally:
            pool.terminate()

    def test_large_bytes(self):
        b = os.urandom(1 << 20) * 64  # 64 MiB
        self.assertEqual(self.ex.submit(helpers.length, b).result(DEADLINE), len(b))
        self.assertEqual(self.ex.submit(helpers.echo, b).result(DEADLINE), b)

    def test_payloads_copied_by_threads_arrive_whole(self):
        # From 8 MiB on, each copy of a payload is split among threads
        # (shmx_copy): content that never repeats, at sizes that split
        # unevenly, must arrive byte for byte both ways.
        for n in (8 << 20, (8 << 20) + 12345, (33 << 20) + 7):
            data = os.urandom(n)
            self.assertEqual(self.ex.submit(helpers.echo, data).result(DEADLINE), data)
            self.assertEqual(self.ex.submit(helpers.echo, bytearray(data)).result(DEADLINE), data)
            self.assertEqual(self.ex.submit(helpers.echo, memoryview(data)[1:]).result(DEADLINE), data[1:])

    def test_results_around_the_fetch_buffer_reach_each_future(self):
        # A future's outcome is fetched into a per-thread buffer when it
        # fits (shmx_wait_into) and from C memory when not: outputs on
        # both sides of the buffer's size, and failures, fetched by four
        # threads at once, each must reach its own future whole.
        sizes = [0, 1, 100, (64 << 10) - 200, (64 << 10) - 1, 64 << 10, (64 << 10) + 1, 200 << 10]

        def one_thread(seed):
            for i in range(40):
                n = sizes[(seed + i) % len(sizes)]
                data = bytes([seed]) * (n // 2) + os.urandom(n - n // 2)
                fut = self.ex.submit(helpers.echo, data)
                failing = self.ex.submit(helpers.boom, f"thread {seed} call {i}")
                self.assertEqual(fut.result(DEADLINE), data)
                with self.assertRaisesRegex(ValueError, f"thread {seed} call {i}$"):
                    failing.result(DEADLINE)

        with cf.ThreadPoolExecutor(4) as threads:
            for f in [threads.submit(one_thread, seed) for seed in range(4)]:
                f.result(60)

    def test_large_results_outlive_the_space_they_arrived_in(self):
        # Results of 4 MiB and more are decoded where the worker wrote them
        # (shmx_results_in_place), and that space is then reused: what the
        # caller keeps, through every way a result is fetched, must not
        # change (an adopting object keeps the very buffer it is given).
        n = 5 << 20
        kept = [self.ex.submit(helpers.echo, bytes([1]) * n).result(DEADLINE),
                self.ex.submit(helpers.adopting, n, 2, True).result(DEADLINE),
                self.ex.submit(helpers.adopting, n, 3, False).result(DEADLINE)]
        with shmexec.Pool(2) as pool:
            kept.append(pool.apply(helpers.echo, (bytearray([4]) * n,)))
            kept += pool.map(helpers.zeros, [n, n + 1], chunksize=1)
        done = cf.as_completed([self.ex.submit(helpers.echo, bytes([i]) * n) for i in range(10, 16)], timeout=DEADLINE)
        self.assertEqual(sorted(f.result()[0] for f in done), list(range(10, 16)))
        self.assertEqual(kept[0], bytes([1]) * n)
        self.assertEqual([a.summary() for a in kept[1:3]], [(n, 2, 2, True), (n, 3, 3, False)])
        self.assertEqual(kept[3], bytearray([4]) * n)
        self.assertEqual([(type(z), len(z), z.count(0)) for z in kept[4:]], [(bytes, n, n), (bytes, n + 1, n + 1)])

    def test_buffers_keep_their_types(self):
        # Large bytes and bytearrays, and memoryviews, travel out of band;
        # each arrives as what was sent, shared references stay shared.
        big = os.urandom(1 << 20)
        ba = bytearray(big[: 100_000])
        mv = memoryview(bytearray(range(256)) * 4).cast("i")
        out, same = self.ex.submit(helpers.describe, big, big, ba, mv, memoryview(b"ro"), memoryview(b"")).result(DEADLINE)
        self.assertEqual(out, [("bytes", 1 << 20, None), ("bytes", 1 << 20, None), ("bytearray", 100_000, None),
                               ("memoryview", 256, ("i", False)), ("memoryview", 2, ("B", True)), ("memoryview", 0, ("B", True))])
        self.assertTrue(same)
        self.assertEqual(self.ex.submit(helpers.echo, {"k": [ba]}).result(DEADLINE), {"k": [ba]})
        self.assertEqual(self.ex.submit(helpers.echo, mv).result(DEADLINE).tolist(), mv.tolist())

    def test_large_submits_return_at_once_however_full_the_pool(self):
        # Large calls go straight into the segment from the caller's thread
        # while there is room, and to the feeder once the job slots or the
        # arena are full: submit never waits for the worker.
        with shmexec.Executor(max_workers=1) as ex:
            first = ex.submit(helpers.sleep, 1.0)
            big = [bytes([i % 256]) * (64 << 10) for i in range(1100)]  # more than the pool's 1,024 job slots
            t = time.monotonic()
            fs = [ex.submit(helpers.length, b) for b in big]
            took = time.monotonic() - t
            self.assertLess(took, 0.8, "a submit waited for the busy worker")
            self.assertFalse(first.done())
            self.assertEqual([f.result(DEADLINE * 4) for f in fs], [len(b) for b in big])
            self.assertEqual(first.result(DEADLINE), 1.0)

    def test_a_call_sent_by_value_leaves_no_buffer_exported(self):
        # A lambda among the arguments makes pickle fail and cloudpickle
        # send the call; the failed attempt's buffers must not stay alive
        # (in a cycle with its exception), exporting the caller's
        # memoryview: release() would refuse, and the garbage collector
        # would later clear the view while exported (a crash at exit).
        ba = bytearray(b"abcdef" * 20_000)
        m = memoryview(ba)
        out, _ = self.ex.submit(helpers.describe, lambda: 1, m).result(DEADLINE)
        self.assertEqual(out[1], ("memoryview", len(ba), ("B", False)))
        m.release()  # BufferError if anything still exports it
        ba.extend(b"resizable again")

    def test_result_timeout_then_wait(self):
        # A result() that runs out just as the job ends must not lose the
        # job for wait() and callbacks (the collector is told of it while
        # this thread still holds it).
        for i in range(200):
            f = self.ex.submit(helpers.sleep, 0.001)
            try:
                f.result(0.001)
            except cf.TimeoutError:
                pass
            done, _ = cf.wait([f], timeout=10)
            self.assertEqual(done, {f}, f"job {i} never finished for wait()")

    @staticmethod
    def _result_that_holds_the_job(ex, f, meanwhile=lambda: None):
        """f.result() with a limit that runs out, whose second look at the
        job (still running) holds it 0.3 s after calling meanwhile: the
        job ends, and shmx_wait_any reports it, while this thread holds
        it. Returns f once it is done, or None after DEADLINE (the job is
        then delivered by hand, so that shutdown does not wait for ever)."""
        main, fetch = threading.current_thread(), ex._fetch

        def slow_second_look(job, ns, kept=None):
            rc, outcome = fetch(job, ns, kept)
            if ns == 0 and outcome is None and threading.current_thread() is main:
                meanwhile()
                time.sleep(0.3)
            return rc, outcome

        ex._fetch = slow_second_look
        try:
            f.result(0.001)
        except cf.TimeoutError:
            pass
        finally:
            del ex._fetch
        done, _ = cf.wait([f], timeout=DEADLINE)
        if f in done:
            return f
        ex._wait_one(f._job, 0)
        return None

    def test_a_report_while_another_thread_holds_the_job(self):
        # shmx_wait_any reports an ended job once. The report may come while
        # the thread of a result() that ran out still holds the job; the
        # job must still be delivered.
        f = self.ex.submit(helpers.sleep, 0.05)
        self.assertIs(self._result_that_holds_the_job(self.ex, f), f,
                      "the job reported while another thread held it was never delivered")
        self.assertEqual(f.result(0), 0.05)

    def test_a_crash_reported_while_another_thread_holds_the_job(self):
        # The same, with the job ended by its worker's SIGKILL from outside:
        # the crash reaches the future once, as the job's one outcome.
        with tempfile.TemporaryDirectory() as d, shmexec.Executor(1) as ex:
            mark = os.path.join(d, "started")
            f = ex.submit(helpers.mark_then_sleep, mark, 60)
            helpers.wait_marks(mark, 1, DEADLINE)
            [pid] = ex._worker_pids()
            self.assertIs(self._result_that_holds_the_job(ex, f, lambda: os.kill(pid, signal.SIGKILL)), f,
                          "the crash reported while another thread held the job was never delivered")
            e = f.exception(0)
            self.assertIsInstance(e, shmexec.WorkerCrashed)
            self.assertEqual((e.pid, e.signal), (pid, signal.SIGKILL))
            self.assertEqual(ex.submit(helpers.add, 1, 2).result(DEADLINE), 3)  # a new worker took its place

    def test_wait_and_as_completed(self):
        fs = [self.ex.submit(helpers.sleep, 0.01 * i) for i in range(5)]
        done, not_done = cf.wait(fs, timeout=DEADLINE)
        self.assertEqual(len(done), 5)
        self.assertFalse(not_done)
        self.assertEqual(sorted(f.result() for f in cf.as_completed(fs, timeout=DEADLINE)), [0.01 * i for i in range(5)])

    def test_callbacks(self):
        got = []
        f = self.ex.submit(helpers.add, 1, 2)
        f.add_done_callback(lambda fut: got.append(fut.result()))
        f.result(DEADLINE)
        cf.wait([f], timeout=DEADLINE)
        for _ in range(100):
            if got:
                break
            import time
            time.sleep(0.01)
        self.assertEqual(got, [3])

    def test_others_join_a_future_as_its_waiter_settles_it(self):
        # result() settles a future without a lock while nobody else has
        # looked at it; a thread that joins just then (result, a
        # callback, cf.wait) must still get the value, and a callback
        # must run exactly once. A barrier lines the two threads up so
        # that the join lands within microseconds of the settle.
        import threading

        rounds = 300
        barrier = threading.Barrier(2, timeout=DEADLINE)
        futures = [None] * rounds
        seen = [[] for _ in range(rounds)]
        errors = []

        def joiner():
            try:
                for i in range(rounds):
                    barrier.wait()
                    f = futures[i]
                    how = i % 3
                    if how == 0:
                        seen[i].append(f.result(DEADLINE))
                    elif how == 1:
                        f.add_done_callback(lambda fut, i=i: seen[i].append(fut.result(0)))
                    else:
                        done, _ = cf.wait([f], timeout=DEADLINE)
                        seen[i].extend(x.result(0) for x in done)
            except BaseException as e:  # reported by the main thread
                errors.append(e)
                barrier.abort()

        t = threading.Thread(target=joiner, daemon=True)
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # the GIL changes hands as often as it can
        try:
            t.start()
            for i in range(rounds):
                futures[i] = self.ex.submit(helpers.add, i, 0)
                barrier.wait()
                self.assertEqual(futures[i].result(DEADLINE), i)
            t.join(DEADLINE)
        finally:
            sys.setswitchinterval(interval)
        self.assertFalse(t.is_alive(), "the joining thread hangs")
        self.assertEqual(errors, [])
        deadline = time.monotonic() + DEADLINE
        while any(len(s) != 1 for s in seen) and time.monotonic() < deadline:
            time.sleep(0.01)  # a callback runs in the thread that settles, just after result() returns
        self.assertEqual(seen, [[i] for i in range(rounds)])

    def test_unobserved_failure_warns(self):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            f = self.ex.submit(helpers.boom, "unseen")
            cf.wait([f], timeout=DEADLINE)
            del f
            gc.collect()
        self.assertTrue(any("never retrieved" in str(x.message) for x in w), [str(x.message) for x in w])



def threading_lock():
    import threading
    return threading.Lock()


class EnvironmentTest(unittest.TestCase):
    def test_workers_start_from_the_environment_of_the_moment(self):
        # As with multiprocessing: what the program put in os.environ
        # after importing shmexec reaches the workers, and a worker
        # respawned after a crash sees the environment of its respawn.
        name = "SHMEXEC_TEST_ENVIRONMENT"
        os.environ[name] = "first"
        try:
            with shmexec.Executor(max_workers=1) as ex:
                self.assertEqual(ex.submit(helpers.getenv, name).result(DEADLINE), "first")
                os.environ[name] = "second"
                with self.assertRaises(shmexec.WorkerCrashed):
                    ex.submit(helpers.sigkill_self).result(DEADLINE)
                self.assertEqual(ex.submit(helpers.getenv, name).result(DEADLINE), "second")
        finally:
            del os.environ[name]


def _glibc_mallinfo2():
    import ctypes
    import platform
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL(None).mallinfo2)
    except AttributeError:  # glibc < 2.33
        return False


@unittest.skipUnless(_glibc_mallinfo2(), "glibc's malloc only (mallinfo2: glibc 2.33 and later)")
class WorkerMemoryTest(unittest.TestCase):
    """A Python worker takes large blocks from its heap and keeps them
    when freed (the next large task reuses touched pages), and gives them
    back once idle for a second."""

    BIG = 64 << 20

    def test_large_blocks_are_kept_while_busy_and_returned_when_idle(self):
        with shmexec.Executor(max_workers=1) as ex:
            held, free, rss = ex.submit(helpers.malloc_after_big, self.BIG).result(DEADLINE)
            self.assertLess(held, self.BIG, "a 64 MiB block was mmapped, not taken from the heap")
            self.assertGreaterEqual(free, self.BIG, "the freed block was not kept")
            pid = ex.submit(helpers.pid).result(DEADLINE)
            self.assertGreaterEqual(rss, self.BIG)
            # Idle now: within a few wait slices its resident memory falls.
            deadline = time.monotonic() + 15
            while (now := helpers.rss_anon(pid)) > rss - self.BIG // 2:
                if time.monotonic() > deadline:
                    self.fail(f"an idle worker still holds {now >> 20} MiB (it held {rss >> 20} MiB after the task)")
                time.sleep(0.1)

    def test_the_environment_s_malloc_settings_stand(self):
        os.environ["GLIBC_TUNABLES"] = "glibc.malloc.mmap_max=65536"
        try:
            with shmexec.Executor(max_workers=1) as ex:
                held, _, _ = ex.submit(helpers.malloc_after_big, self.BIG).result(DEADLINE)
        finally:
            del os.environ["GLIBC_TUNABLES"]
        self.assertGreaterEqual(held, self.BIG, "glibc's own setting (mmap large blocks) was overridden")


class OptionsTest(unittest.TestCase):
    def test_timeout_kills_the_task(self):
        with shmexec.Executor(max_workers=1, timeout=0.3) as ex:
            with self.assertRaises(TimeoutError):
                ex.submit(helpers.sleep, 30).result(DEADLINE)
            self.assertEqual(ex.submit(helpers.add, 1, 1).result(DEADLINE), 2)

    def test_per_call_timeout(self):
        with shmexec.Executor(max_workers=1) as ex:
            with self.assertRaises(TimeoutError):
                ex.submit_with(helpers.sleep, (30,), timeout=0.3).result(DEADLINE)
            self.assertEqual(ex.submit_with(helpers.add, (1, 2)).result(DEADLINE), 3)
        with shmexec.Executor(max_workers=1, timeout=0.2) as ex:
            self.assertEqual(ex.submit_with(helpers.sleep, (0.5,), timeout=0).result(DEADLINE), 0.5)
            # A large argument goes straight into the segment, options and all.
            big = b"x" * (1 << 20)
            self.assertEqual(ex.submit_with(helpers.sleep_then_len, (0.5, big), timeout=0).result(DEADLINE), len(big))
            with self.assertRaises(TimeoutError):
                ex.submit_with(helpers.sleep_then_len, (30, big), timeout=0.3).result(DEADLINE)

    def test_retries(self):
        marker = os.path.join(tempfile.mkdtemp(), "m")
        with shmexec.Executor(max_workers=1, retries=1) as ex:
            self.assertEqual(ex.submit(helpers.crash_once, marker).result(DEADLINE), "survived")

    def test_initializer_and_max_tasks(self):
        with shmexec.Executor(max_workers=1, initializer=helpers.set_init, initargs=("hello",), max_tasks_per_child=2) as ex:
            self.assertEqual(ex.submit(helpers.get_init).result(DEADLINE), "hello")
            pids = {ex.submit(helpers.pid).result(DEADLINE) for _ in range(6)}
            self.assertGreaterEqual(len(pids), 3)

    def test_max_payload_bounds_each_call_and_raises_with_the_pool(self):
        # 256 MiB a call by default; multiprocessing has no bound, so a
        # program that sends more makes its pool with a larger one.
        n = 3 << 20
        with shmexec.Executor(1, max_payload=2 << 20) as ex:
            with self.assertRaises(ValueError) as cm:
                ex.submit(helpers.length, b"x" * n)
            self.assertIn("max_payload=", str(cm.exception))
            with self.assertRaises(shmexec.ShmexecError) as cm:
                ex.submit(helpers.zeros, n).result(DEADLINE)
            self.assertIn("ResultTooLarge", str(cm.exception))
            self.assertIn("max_payload=", str(cm.exception))
            self.assertEqual(ex.submit(helpers.length, b"x" * (1 << 20)).result(DEADLINE), 1 << 20)  # the pool goes on
        with shmexec.Pool(1, max_payload=8 << 20) as p:
            self.assertEqual(p.apply(helpers.length, (b"x" * n,)), n)
            self.assertEqual(len(p.apply(helpers.zeros, (n,))), n)
            # The larger arena's pages that a killed worker held (its
            # input) are recovered, and the next large call runs.
            with self.assertRaises(shmexec.WorkerCrashed):
                p.apply(helpers.sigkill_self_holding, (b"y" * n,))
            deadline = time.monotonic() + DEADLINE
            while p.stats()["pages_in_use"] and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertEqual(p.stats()["pages_in_use"], 0, "the dead worker's pages were not recovered")
            self.assertEqual(p.apply(helpers.length, (b"z" * n,)), n)
        for bad, err in ((0, ValueError), (1 << 19, ValueError), (65 << 30, ValueError), (1.5, TypeError), ("8", TypeError)):
            with self.assertRaises(err, msg=repr(bad)):
                shmexec.Executor(1, max_payload=bad)

    def test_shutdown_cancel_futures(self):
        ex = shmexec.Executor(max_workers=1)
        fs = [ex.submit(helpers.sleep, 0.3) for _ in range(5)]
        ex.shutdown(wait=True, cancel_futures=True)
        outcomes = []
        for f in fs:
            try:
                outcomes.append(f.result(DEADLINE))
            except cf.CancelledError:
                outcomes.append("cancelled")
        # Queued tasks never run; a running one finishes.
        self.assertGreaterEqual(outcomes[1:].count("cancelled"), 3, outcomes)

    def test_terminate_and_kill_workers(self):
        # Python 3.14's: shutdown(cancel_futures=True), and the workers
        # killed at once, their tasks ending.
        tmp = self.enterContext(tempfile.TemporaryDirectory())
        for stop in ("terminate_workers", "kill_workers"):
            ex = shmexec.Executor(2)
            helpers.wait_running_at_once(ex, 2)
            marks = os.path.join(tmp, stop)
            running = [ex.submit(helpers.mark_then_sleep, marks, 30) for _ in range(2)]
            helpers.wait_marks(marks, 2)
            queued = [ex.submit(helpers.sleep, 30) for _ in range(4)]
            pids = ex._worker_pids()
            start = time.monotonic()
            getattr(ex, stop)()
            for f in running:
                with self.assertRaises(shmexec.PoolClosed):
                    f.result(DEADLINE)
            for f in queued:
                with self.assertRaises((cf.CancelledError, shmexec.PoolClosed)):
                    f.result(DEADLINE)
            self.assertLess(time.monotonic() - start, DEADLINE)
            self.assertFalse([p for p in pids if helpers.shmexec_process_alive(p)], f"workers alive after {stop}")
            with self.assertRaises(RuntimeError):
                ex.submit(helpers.add, 1, 1)
            getattr(ex, stop)()  # again: nothing left to do
            ex.shutdown()

    def test_shutdown(self):
        ex = shmexec.Executor(max_workers=1)
        f = ex.submit(helpers.sleep, 0.1)
        ex.shutdown(wait=True)
        self.assertEqual(f.result(0), 0.1)
        with self.assertRaises(RuntimeError):
            ex.submit(helpers.add, 1, 1)
        ex.shutdown()  # again: no-op


class ProcessTest(unittest.TestCase):
    def run_script(self, code):
        return helpers.run_script(code, DEADLINE)

    def test_function_from_main_script(self):
        r = self.run_script("""
            import shmexec

            def triple(x):
                return 3 * x

            print("module level ran")
            if __name__ == "__main__":
                with shmexec.Executor(max_workers=1) as ex:
                    print("result", ex.submit(triple, 14).result(60))
        """)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("result 42", r.stdout)

    def test_script_without_main_guard(self):
        # Under spawn such a script starts pools in every worker, forever.
        r = self.run_script('''
            import shmexec, operator

            def triple(x):
                return 3 * x

            ex = shmexec.Executor(max_workers=1)
            print("result", ex.submit(triple, 5).result(60))
            ex.shutdown()
        ''')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.count("result 15"), 1, r.stdout)
        self.assertIn("if __name__", r.stderr)

    def test_supervisor_killed(self):
        # The pool's owner SIGKILLed: its Python workers are gone within 1 s.
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "owner.py")
            with open(path, "w") as f:
                f.write(textwrap.dedent('''
                    import operator, sys, time, shmexec
                    if __name__ == "__main__":
                        ex = shmexec.Executor(max_workers=2)
                        ex.submit(operator.add, 1, 2).result(60)
                        print("ready", flush=True)
                        time.sleep(60)
                '''))
            env = dict(os.environ, PYTHONPATH=_paths.PYTHONPATH)
            owner = subprocess.Popen([sys.executable, path], stdout=subprocess.PIPE, text=True, env=env)
            try:
                self.assertEqual(owner.stdout.readline().strip(), "ready")
                workers = helpers.children(owner.pid)
                self.assertEqual(len(workers), 2, workers)
                owner.send_signal(signal.SIGKILL)  # only the process this test started
                owner.wait(DEADLINE)
                deadline = time.monotonic() + 1.0
                while any(helpers.shmexec_process_alive(p) for p in workers):
                    self.assertLess(time.monotonic(), deadline, f"workers {workers} outlived their pool's owner by 1 s")
                    time.sleep(0.01)
            finally:
                if owner.poll() is None:
                    owner.kill()
                    owner.wait()
                owner.stdout.close()

    def test_fork_after_import(self):
        r = self.run_script("""
            import os, time, shmexec, operator
            ex = shmexec.Executor(max_workers=1)
            pid = os.fork()
            if pid == 0:
                t = time.monotonic()
                try:
                    ex.submit(operator.add, 1, 2)
                    os._exit(1)
                except shmexec.ForkedError:
                    os._exit(0 if time.monotonic() - t < 5 else 2)
            _, status = os.waitpid(pid, 0)
            print("child", os.waitstatus_to_exitcode(status))
            print("parent", ex.submit(operator.add, 1, 2).result(60))
            ex.shutdown()
        """)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("child 0", r.stdout)
        self.assertIn("parent 3", r.stdout)

    def test_fork_before_the_first_pool(self):
        # A program that imports shmexec's Pool and Executor (as it would
        # multiprocessing's) and forks before it makes a pool: the library
        # is not loaded yet, so each child makes pools of its own (as a
        # forked child can make a multiprocessing.Pool). Once the parent
        # has made one, a forked child gets ForkedError. (Until
        # 2026-12-07 the library loaded with the import of either class,
        # and every child forked after it got ForkedError.)
        r = self.run_script("""
            import os, operator, multiprocessing
            from shmexec import Pool, Executor, ForkedError

            def use():
                try:
                    with Pool(2) as p, Executor(1) as ex:
                        return f"{p.map(abs, [-1, -2])} {ex.submit(operator.add, 1, 2).result(60)}"
                except ForkedError:
                    return "ForkedError"

            def child_says(q):
                q.put(use())

            def forked_use():
                r, w = os.pipe()
                pid = os.fork()
                if pid == 0:
                    os.write(w, use().encode())
                    os._exit(0)
                os.close(w)
                got = os.read(r, 100).decode()
                os.waitpid(pid, 0)
                os.close(r)
                return got

            if __name__ == "__main__":
                loaded = any("libshmexec" in line for line in open("/proc/self/maps"))
                print("loaded at import:", loaded)
                print("os.fork child:", forked_use())
                ctx = multiprocessing.get_context("fork")
                q = ctx.Queue()
                pr = ctx.Process(target=child_says, args=(q,))
                pr.start()
                print("fork Process child:", q.get(timeout=60))
                pr.join(60)
                print("parent:", use())
                print("os.fork child after the parent's pool:", forked_use())
        """)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("loaded at import: False", r.stdout)
        self.assertIn("os.fork child: [1, 2] 3", r.stdout)
        self.assertIn("fork Process child: [1, 2] 3", r.stdout)
        self.assertIn("parent: [1, 2] 3", r.stdout)
        self.assertIn("os.fork child after the parent's pool: ForkedError", r.stdout)

    def test_a_forked_child_exits_as_usual(self):
        # A child forked while a Pool and an Executor are open, that ends
        # as a Python program does (its atexit callbacks, then the
        # finalization that collects the copies of both), exits at once
        # and leaves the parent's pools as they were. Until 2026-12-07 the
        # copy of the Pool, collected as the child's interpreter finalized,
        # started a thread to shut its pool down, and the child hung.
        r = self.run_script("""
            import os, sys, time, signal, shmexec, operator
            p = shmexec.Pool(2)
            ex = shmexec.Executor(1)
            for how in ("sys.exit", "the end of the program", "a dropped copy"):
                pid = os.fork()
                if pid == 0:
                    if how == "a dropped copy":
                        del p, ex  # collected now, then the child exits as usual
                    if how == "sys.exit":
                        sys.exit(0)
                    break
                deadline = time.monotonic() + 3  # within the test's DEADLINE for the whole script
                while os.waitpid(pid, os.WNOHANG)[0] == 0:
                    if time.monotonic() > deadline:
                        os.kill(pid, signal.SIGKILL)  # the child this script forked
                        os.waitpid(pid, 0)
                        print("hung:", how)
                        break
                    time.sleep(0.01)
                else:
                    print("exited:", how)
            else:
                print("parent", p.apply(operator.add, (1, 2)), ex.submit(operator.add, 2, 2).result(60))
                p.close()
                p.join()
                ex.shutdown()
        """)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("hung", r.stdout)
        self.assertEqual(r.stdout.count("exited:"), 3, r.stdout)
        self.assertIn("parent 3 4", r.stdout)
        self.assertNotIn("ResourceWarning", r.stderr)


if __name__ == "__main__":
    unittest.main()
