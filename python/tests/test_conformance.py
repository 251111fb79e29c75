"""The behaviours that make shmexec a drop-in for multiprocessing.Pool and
concurrent.futures beyond what CPython's own suites check (those run in
tests/cpython): async calls return at once, nothing hangs on the way
down, iterables that raise, tracebacks, references, timeouts, resource
hygiene, pools that cannot be sent, and functions sent by value."""

import concurrent.futures as cf
import gc
import multiprocessing
import multiprocessing.pool
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import warnings
import weakref

import _paths  # noqa: E402,F401  (sys.path: the checkout's package, or the installed one)

import shmexec  # noqa: E402
import helpers  # noqa: E402

T = 60  # seconds any single wait may take before the test fails


def raising_after(n, exc=ValueError):
    for i in range(n):
        yield i
    raise exc("the iterable broke")


class Big:
    """An object whose collection a test can see."""

    def __init__(self):
        self.payload = bytearray(1 << 20)

    def method(self, x):
        return x + 1


class Runner:
    def __init__(self, pool):
        self.pool = pool

    def run(self, x):
        return x


run_script = helpers.run_script


class AsyncMeansAsync(unittest.TestCase):
    def test_map_async_of_ten_thousand_returns_at_once_and_terminate_ends_it(self):
        p = shmexec.Pool(2)
        t0 = time.monotonic()
        r = p.map_async(time.sleep, [0.1] * 10000, chunksize=1)
        self.assertLess(time.monotonic() - t0, 0.5, "map_async waited for room in the pool")
        t0 = time.monotonic()
        p.terminate()
        self.assertLess(time.monotonic() - t0, 2.0, "terminate after map_async")
        t0 = time.monotonic()
        p.join()
        self.assertLess(time.monotonic() - t0, 2.0, "join after terminate")
        r.wait(T)
        self.assertTrue(r.ready())
        with self.assertRaises(shmexec.PoolClosed):
            r.get(0)

    def test_every_async_call_returns_at_once_on_a_full_pool(self):
        with shmexec.Pool(1) as p:
            blocker = p.apply_async(helpers.sleep, (4.0,))  # the one worker is busy: the job slots fill up
            t0 = time.monotonic()
            rs = [p.apply_async(helpers.add, (i, 1)) for i in range(3000)]  # more than the pool's 1024 job slots
            it = p.imap(helpers.double, range(3000))
            un = p.imap_unordered(helpers.double, range(3000))
            ma = p.starmap_async(helpers.add, [(i, i) for i in range(3000)], chunksize=1)
            self.assertLess(time.monotonic() - t0, 1.5, "async calls waited for room in the pool")
            self.assertEqual([r.get(T) for r in rs], [i + 1 for i in range(3000)])
            self.assertEqual(list(it), [2 * i for i in range(3000)])
            self.assertEqual(sorted(un), [2 * i for i in range(3000)])
            self.assertEqual(ma.get(T), [2 * i for i in range(3000)])
            self.assertEqual(blocker.get(T), 4.0)
        with shmexec.Executor(1) as ex:
            ex.submit(helpers.sleep, 4.0)
            t0 = time.monotonic()
            fs = [ex.submit(helpers.add, i, 1) for i in range(3000)]
            m = ex.map(helpers.double, range(3000), chunksize=1)
            self.assertLess(time.monotonic() - t0, 1.5, "submit and map waited for room in the pool")
            self.assertEqual([f.result(T) for f in fs], [i + 1 for i in range(3000)])
            self.assertEqual(list(m), [2 * i for i in range(3000)])

    def test_queued_futures_can_be_cancelled(self):
        with shmexec.Executor(1) as ex:
            ex.submit(helpers.sleep, 0.5)
            fs = [ex.submit(helpers.add, i, 1) for i in range(2000)]
            cancelled = [f for f in fs[::2] if f.cancel()]
            self.assertGreater(len(cancelled), 900, "queued tasks could not be cancelled")
            for f in fs:
                if not f.cancelled():
                    self.assertEqual(f.result(T), fs.index(f) + 1)


class NothingHangs(unittest.TestCase):
    def test_sys_exit_in_the_collector_thread_ends_one_task_not_the_collector(self):
        # The pool's collector thread fetches the outcomes that no caller
        # waits for in result(), decodes them and runs their callbacks. A
        # SystemExit there, from a result whose unpickling calls
        # sys.exit() or from a callback that does, ended the thread (until
        # 2026-12-07), and with it every later future that nobody waited
        # for in result(): concurrent.futures.wait() and callbacks waited
        # for ever (as ProcessPoolExecutor's manager thread and
        # multiprocessing's result thread do). Now that future fails with
        # RemoteError, the callback's exception is logged, and the
        # collector goes on. In the main thread, which signals' handlers
        # raise in, a SystemExit goes on as it is.
        with shmexec.Executor(2) as ex:
            fs = [ex.submit(helpers.exit_at_unpickle) for _ in range(3)]
            done, _ = cf.wait(fs, timeout=10)  # the collector fetches them
            self.assertEqual(len(done), 3)
            for f in fs:
                self.assertIsInstance(f.exception(0), shmexec.RemoteError)
                self.assertIn("SystemExit", str(f.exception(0)))
            with self.assertLogs("concurrent.futures", "ERROR") as logs:
                f = ex.submit(helpers.sleep, 0.3)  # pending as its callback is added (else the callback runs here, at once)
                f.add_done_callback(lambda f: sys.exit(3))
                deadline = time.monotonic() + 10
                while not logs.records and time.monotonic() < deadline:  # the collector runs the callback
                    time.sleep(0.01)
            self.assertIn("exception calling callback", logs.output[0])
            later = [ex.submit(helpers.add, i, 1) for i in range(3)]
            done, _ = cf.wait(later, timeout=10)
            self.assertEqual(len(done), 3, "the collector thread ended")
            with self.assertRaises(SystemExit):  # decoded in this, the main, thread, which waits as the task ends
                ex.submit(helpers.exit_at_unpickle, 0.3).result(10)
            self.assertEqual(ex.submit(helpers.add, 2, 2).result(10), 4)
        with shmexec.Pool(2) as p:
            with self.assertLogs("concurrent.futures", "ERROR") as logs:
                r = p.map_async(helpers.double, range(10), callback=lambda v: sys.exit(4))
                self.assertEqual(r.get(10), [2 * i for i in range(10)])
                a = p.apply_async(helpers.add, (1, 1), callback=lambda v: sys.exit(5))
                deadline = time.monotonic() + 10
                while not a.ready() and time.monotonic() < deadline:  # the collector runs its callback (get() would run it here)
                    time.sleep(0.01)
                self.assertEqual(a.get(0), 2)
                later = [p.apply_async(helpers.add, (i, 1), callback=lambda v: None) for i in range(3)]
                deadline = time.monotonic() + 10
                while not all(r.ready() for r in later) and time.monotonic() < deadline:
                    time.sleep(0.01)
                self.assertEqual([r.get(0) for r in later], [1, 2, 3], "the collector thread ended")
            self.assertEqual(len(logs.output), 2)

    def test_waiting_for_the_pool_from_its_own_callback_raises_instead_of_hanging(self):
        # A done callback that nobody's result() runs, runs in the pool's
        # collector thread, which delivers the outcomes a shutdown waits
        # for: waiting there would wait for itself. As concurrent.futures'
        # and multiprocessing's (whose join raises "cannot join current
        # thread"), it raises RuntimeError; the pool closes by itself once
        # its tasks end, and a terminate there works.
        import threading

        def run_in_callback(submit, stop):
            got, ran = [], threading.Event()

            def callback(_):
                try:
                    stop()
                    got.append(None)
                except BaseException as e:  # noqa: B902
                    got.append(e)
                ran.set()

            submit(callback)
            self.assertTrue(ran.wait(T), "the callback never finished: it waits for itself")
            return got[0]

        ex = shmexec.Executor(2)
        pids = ex._worker_pids()
        others = [ex.submit(helpers.sleep, 0.3) for _ in range(2)]
        err = run_in_callback(lambda cb: ex.submit(helpers.add, 1, 1).add_done_callback(cb), ex.shutdown)
        self.assertIsInstance(err, RuntimeError)
        self.assertEqual([f.result(T) for f in others], [0.3, 0.3])
        with self.assertRaises(RuntimeError):
            ex.submit(helpers.add, 1, 1)
        end = time.monotonic() + T
        while [pid for pid in pids if helpers.shmexec_process_alive(pid)]:
            self.assertLess(time.monotonic(), end, "the executor shut down from its callback never closed")
            time.sleep(0.02)

        p = shmexec.Pool(2)

        def close_and_join():
            p.close()
            p.join()

        err = run_in_callback(lambda cb: p.apply_async(helpers.add, (1, 2), callback=cb), close_and_join)
        self.assertIsInstance(err, RuntimeError)
        p.join()  # from this thread it waits, and returns

        ex = shmexec.Executor(2)
        slow = []

        def submit_then_slow(cb):
            f = ex.submit(helpers.sleep, 0.5)
            slow.extend(ex.submit(helpers.sleep, 30) for _ in range(2))
            f.add_done_callback(cb)

        start = time.monotonic()
        self.assertIsNone(run_in_callback(submit_then_slow, ex.terminate))
        for f in slow:
            self.assertIsInstance(f.exception(T), shmexec.PoolClosed)
        self.assertLess(time.monotonic() - start, 15)

    def test_close_and_join_finish_what_is_queued(self):
        p = shmexec.Pool(2)
        r = p.map_async(helpers.double, range(5000), chunksize=1)
        p.close()
        t0 = time.monotonic()
        p.join()
        self.assertLess(time.monotonic() - t0, T)
        self.assertEqual(r.get(0), [2 * i for i in range(5000)])

    def test_terminate_while_feeding_and_while_running(self):
        for _ in range(3):
            p = shmexec.Pool(1)
            a = p.map_async(time.sleep, [0.05] * 3000, chunksize=1)
            b = p.apply_async(helpers.sleep, (30,))
            it = p.imap(time.sleep, [0.05] * 3000)
            un = p.imap_unordered(time.sleep, [0.05] * 3000)
            t0 = time.monotonic()
            p.terminate()
            p.join()
            self.assertLess(time.monotonic() - t0, 5.0)
            for r in (a, b):
                with self.assertRaises(shmexec.PoolClosed):
                    r.get(T)
            with self.assertRaises(shmexec.PoolClosed):
                list(it)
            with self.assertRaises(shmexec.PoolClosed):
                list(un)

    def test_shutdown_waits_for_queued_tasks_and_cancel_futures_cancels_them(self):
        ex = shmexec.Executor(1)
        fs = [ex.submit(helpers.add, i, 1) for i in range(3000)]
        ex.shutdown(wait=True)
        self.assertTrue(all(f.done() for f in fs))
        self.assertEqual([f.result(0) for f in fs], [i + 1 for i in range(3000)])
        ex = shmexec.Executor(1)
        fs = [ex.submit(helpers.sleep, 0.01) for _ in range(3000)]
        ex.shutdown(wait=True, cancel_futures=True)
        self.assertTrue(all(f.done() for f in fs))
        self.assertGreater(sum(f.cancelled() for f in fs), 2000)

    def test_interpreter_exit_with_tasks_running(self):
        # concurrent.futures' scenarios (test_interpreter_shutdown,
        # test_hang_gh83386, test_submit_after_interpreter_shutdown): an
        # Executor still open at exit finishes its tasks; one shut down
        # without waiting too; a submit from an atexit handler is refused.
        r = run_script("""
            import atexit, shmexec, helpers, sys
            def late():
                try:
                    ex.submit(helpers.add, 1, 1)
                except RuntimeError as e:
                    print("refused:", e, flush=True)
            if __name__ == "__main__":
                ex = shmexec.Executor(2)
                atexit.register(late)
                ex.submit(helpers.sleep_then_print, 0.5, "apple")
                ex2 = shmexec.Executor(2)
                ex2.submit(helpers.sleep_then_print, 0.5, "banana")
                ex2.shutdown(wait=False)
        """)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("apple", r.stdout)
        self.assertIn("banana", r.stdout)
        self.assertIn("refused: cannot schedule new futures after interpreter shutdown", r.stdout)

    def test_a_terminals_ctrl_c_reaches_the_workers_too(self):
        # A terminal's Ctrl-C sends SIGINT to the whole foreground process
        # group: the caller and every worker. The caller's map raises
        # KeyboardInterrupt; the workers die of it (their tasks end
        # WorkerCrashed, not KeyboardInterrupt inside the task) and are
        # replaced; the pools work on and close. (multiprocessing's map
        # waits for ever for the tasks of the workers that died.) The
        # script runs in a process group of its own, which this test
        # made and signals.
        import textwrap

        script = textwrap.dedent("""
            import sys, time, shmexec, helpers

            if __name__ == "__main__":
                p, ex = shmexec.Pool(2), shmexec.Executor(2)
                helpers.wait_running_at_once(p._ex, 2)  # every worker started, each to die of the SIGINT
                helpers.wait_running_at_once(ex, 2)
                f = ex.submit(helpers.sleep, 3)
                print("ready", flush=True)
                try:
                    p.map(helpers.sleep, [3] * 4)
                    print("map not interrupted")
                except KeyboardInterrupt:
                    print("map interrupted", flush=True)
                try:
                    f.result(10)
                    print("the running future: no error")
                except shmexec.WorkerCrashed:
                    print("the running future: WorkerCrashed", flush=True)
                print("after:", p.apply(helpers.add, (1, 2)), ex.submit(helpers.add, 2, 2).result(10), flush=True)
                helpers.wait_running_at_once(p._ex, 2)
                helpers.wait_running_at_once(ex, 2)
                print("deaths:", p._ex.stats()["worker_deaths"], ex.stats()["worker_deaths"], flush=True)
                p.terminate()
                ex.shutdown(cancel_futures=True)
                print("closed", flush=True)
        """)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "script.py")
            with open(path, "w") as f:
                f.write(script)
            env = dict(os.environ, PYTHONPATH=_paths.PYTHONPATH)
            proc = subprocess.Popen([sys.executable, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=env, cwd=d, start_new_session=True)
            try:
                self.assertEqual(proc.stdout.readline(), "ready\n")
                time.sleep(0.3)  # the map's tasks are running
                os.killpg(proc.pid, signal.SIGINT)  # the group this test created
                out, err = proc.communicate(timeout=60)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.communicate()
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("map interrupted\nthe running future: WorkerCrashed\nafter: 3 4\ndeaths: 2 2\nclosed\n", out)

    def test_ctrl_c_while_a_pool_starts_leaves_no_worker(self):
        # Ctrl-C while Pool() waits for its first worker lands in Python as
        # the library's create returns, inside the constructor: the pool
        # it made must not outlive it. (Until 2026-12-07 its workers ran
        # on until the program exited: in a console, for the session.)
        r = run_script("""
            import os, signal, threading, time, traceback, shmexec, helpers

            def workers():
                return [c for c in helpers.children(os.getpid()) if helpers.shmexec_process_alive(c)]

            def interrupt_as_workers_start():
                deadline = time.monotonic() + 10
                while not workers() and time.monotonic() < deadline:
                    time.sleep(0.001)
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

            if __name__ == "__main__":
                inside = 0
                for attempt in range(30):
                    t = threading.Thread(target=interrupt_as_workers_start)
                    t.start()
                    p, in_constructor = None, False
                    try:
                        p = shmexec.Pool(2)
                        time.sleep(5)  # an interrupt that came after the constructor lands here
                    except KeyboardInterrupt as e:
                        in_constructor = any(f.name == "__init__" and f.filename.endswith("_engine.py")
                                             for f in traceback.extract_tb(e.__traceback__))
                    t.join()
                    if p is not None:
                        p.terminate()
                    deadline = time.monotonic() + 5
                    while workers() and time.monotonic() < deadline:
                        time.sleep(0.01)
                    if in_constructor:
                        inside += 1
                        print("left:", workers(), flush=True)
                    if inside == 3:
                        break
                print("interrupted inside the constructor:", inside)
        """, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("interrupted inside the constructor: 3", r.stdout)
        self.assertEqual(r.stdout.count("left: []"), 3, r.stdout)

    def test_a_pool_works_until_the_atexit_callbacks_after_it(self):
        # As multiprocessing's: a Pool still open when the main thread ends
        # serves the threads that outlive it and the atexit callbacks
        # registered after it was made, and is terminated after them. A
        # Pool first made in an atexit callback works too, and its workers
        # are gone when the program has exited. (Until 2026-12-07 the Pool
        # was terminated as the main thread ended, and an Executor or Pool
        # first made in an atexit callback could not be imported.)
        r = run_script("""
            import atexit, os, threading, time, shmexec, helpers
            def late_pool():
                global late
                try:
                    threading.Thread(target=print).start()
                except RuntimeError as e:  # Python 3.12.1 starts no thread at exit; no pool can start (multiprocessing's neither)
                    no_thread = str(e)
                    try:
                        shmexec.Pool(2)
                    except RuntimeError as e2:
                        print("late pool refused as a thread is:", str(e2) == no_thread, flush=True)
                        print("late pids:", *(pid for pid in helpers.children(os.getpid()) if helpers.shmexec_process_alive(pid)), flush=True)
                    return
                late = shmexec.Pool(2)
                print("late pool:", late.map(helpers.double, range(3)), flush=True)
                print("late pids:", *late._ex._worker_pids(), flush=True)
                ex = shmexec.Executor(1)
                try:
                    ex.submit(helpers.add, 1, 1)
                except RuntimeError as e:
                    print("late executor refused:", e, flush=True)
            def flush():
                print("atexit:", p.map(helpers.double, range(3)), flush=True)
            def outlives_main():
                time.sleep(0.3)
                print("thread:", sum(p.map(helpers.double, range(100))), flush=True)
            if __name__ == "__main__":
                atexit.register(late_pool)  # before the first pool: runs after _pools_exit
                p = shmexec.Pool(2)
                atexit.register(flush)
                threading.Thread(target=outlives_main).start()
        """)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("thread: 9900", r.stdout)
        self.assertIn("atexit: [0, 2, 4]", r.stdout)
        self.assertNotIn("Traceback", r.stderr)
        pids = [int(w) for line in r.stdout.splitlines() if line.startswith("late pids:") for w in line.split()[2:]]
        if "late pool refused" in r.stdout:
            self.assertIn("late pool refused as a thread is: True", r.stdout)
            self.assertEqual(pids, [], "the workers of a pool whose thread could not start outlive its constructor")
        else:
            self.assertIn("late pool: [0, 2, 4]", r.stdout)
            self.assertIn("late executor refused: cannot schedule new futures after interpreter shutdown", r.stdout)
            self.assertEqual(len(pids), 2, r.stdout)
        deadline = time.monotonic() + 5
        while any(helpers.shmexec_process_alive(pid) for pid in pids):
            self.assertLess(time.monotonic(), deadline, f"the late pool's workers {pids} outlived the program by 5 s")
            time.sleep(0.01)


class IterablesThatRaise(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pool = shmexec.Pool(2)
        cls.tmp = tempfile.mkdtemp(prefix="shmexec-test-")

    @classmethod
    def tearDownClass(cls):
        import shutil

        cls.pool.terminate()
        shutil.rmtree(cls.tmp, True)

    def test_imap_gives_the_results_before_the_error(self):
        for chunksize in (1, 2, 3):
            it = self.pool.imap(helpers.double, raising_after(7), chunksize)
            got = []
            with self.assertRaisesRegex(ValueError, "the iterable broke"):
                for v in it:
                    got.append(v)
            self.assertEqual(got, [2 * i for i in range(7 // chunksize * chunksize)], chunksize)

    def test_imap_unordered_gives_the_results_before_the_error(self):
        got = []
        with self.assertRaisesRegex(ValueError, "the iterable broke"):
            for v in self.pool.imap_unordered(helpers.double, raising_after(5), 1):
                got.append(v)
        self.assertEqual(sorted(got), [0, 2, 4, 6, 8])

    def test_imap_goes_on_after_a_failing_task(self):
        # As multiprocessing's (with its default chunksize of 1): next()
        # raises a task's exception, and the next call gives the item
        # after it; a task whose worker died is no different. Here for
        # every chunksize (multiprocessing's iterator ends at the first
        # exception when chunksize > 1).
        def drain(it):
            out = []
            while True:
                try:
                    out.append(next(it))
                except StopIteration:
                    return out
                except Exception as e:
                    out.append(type(e).__name__ + (str(e) if isinstance(e, ValueError) else ""))

        items = [0, 1, 2, -1, 4, 5, 6]
        # A batch whose worker died fails as a whole, once.
        wants = {1: [0, "ValueError1", 2, "WorkerCrashed", 4, "ValueError5", 6],
                 2: [0, "ValueError1", "WorkerCrashed", 4, "ValueError5", 6],
                 7: ["WorkerCrashed"]}
        for chunksize, want in wants.items():
            with self.subTest(chunksize=chunksize):
                self.assertEqual(drain(self.pool.imap(helpers.fail_on_odd, items, chunksize)), want)
                self.assertEqual(sorted(map(str, drain(self.pool.imap_unordered(helpers.fail_on_odd, items, chunksize)))),
                                 sorted(map(str, want)))

    def test_a_dropped_imap_iterator_runs_every_item(self):
        # As multiprocessing's: the items go on being run after the
        # iterator is dropped (until 2026-12-06 the feeder stopped).
        import functools
        import threading

        for ordered in (True, False):
            with self.subTest(ordered=ordered):
                path = os.path.join(self.tmp, f"log-{ordered}")
                go_on = threading.Event()

                def items():
                    for i in range(20):
                        if i == 5:
                            self.assertTrue(go_on.wait(T))
                        yield 2 * i

                call = self.pool.imap if ordered else self.pool.imap_unordered
                it = call(functools.partial(helpers.log_then_fail_on_odd, path), items())
                next(it)
                del it
                gc.collect()
                go_on.set()
                helpers.wait_marks(path, 20)

    def test_imap_next_takes_a_timeout(self):
        for ordered in (True, False):
            with self.subTest(ordered=ordered):
                call = self.pool.imap if ordered else self.pool.imap_unordered
                it = call(helpers.sleep, [1.0, 0.0] if ordered else [1.0])
                t0 = time.monotonic()
                with self.assertRaises(multiprocessing.TimeoutError):
                    it.next(timeout=0.05)
                self.assertLess(time.monotonic() - t0, 0.9)
                self.assertEqual(it.next(timeout=T), 1.0)  # the timed-out wait lost nothing
                if ordered:
                    self.assertEqual(next(it), 0.0)
                with self.assertRaises(StopIteration):
                    it.next(timeout=T)

    def test_map_and_map_async_raise_the_iterable_error(self):
        with self.assertRaisesRegex(ValueError, "the iterable broke"):
            self.pool.map(helpers.double, raising_after(5))
        with self.assertRaisesRegex(ValueError, "the iterable broke"):
            self.pool.map_async(helpers.double, raising_after(5))
        with shmexec.Executor(2) as ex, self.assertRaisesRegex(ValueError, "the iterable broke"):
            ex.map(helpers.double, raising_after(5))


class Tracebacks(unittest.TestCase):
    def test_the_worker_traceback_is_the_cause(self):
        with shmexec.Pool(1) as p:
            for call in (lambda: p.apply(helpers.boom, ("x",)), lambda: p.apply_async(helpers.boom, ("x",)).get(T),
                         lambda: p.map(helpers.boom, ["x"]), lambda: list(p.imap(helpers.boom, ["x"]))):
                with self.assertRaises(ValueError) as cm:
                    call()
                self.assertIs(type(cm.exception.__cause__), multiprocessing.pool.RemoteTraceback)
                self.assertIn("raise ValueError(msg)", cm.exception.__cause__.tb)
        with shmexec.Executor(1) as ex:
            with self.assertRaises(ValueError) as cm:
                ex.submit(helpers.boom, "x").result(T)
            self.assertIs(type(cm.exception.__cause__), cf.process._RemoteTraceback)
            self.assertIn("raise ValueError(msg)", cm.exception.__cause__.tb)
            with self.assertRaises(shmexec.RemoteError) as cm:
                ex.submit(helpers.raise_mismatched).result(T)
            self.assertIn("raise_mismatched", cm.exception.traceback)
            self.assertIn("raise_mismatched", cm.exception.__cause__.tb)


class NoReferenceKept(unittest.TestCase):
    def test_a_bound_method_does_not_keep_its_object(self):
        with shmexec.Executor(1) as ex:
            big = Big()
            ref = weakref.ref(big)
            f = ex.submit(big.method, 1)
            del big
            gc.collect()
            self.assertIsNone(ref(), "the executor kept the bound method's object after sending it")
            self.assertEqual(f.result(T), 2)

    def test_arguments_and_results_are_not_kept(self):
        with shmexec.Pool(2) as p:
            arg = Big()
            ref = weakref.ref(arg)
            r = p.apply_async(helpers.length, (arg.payload,))
            self.assertEqual(r.get(T), 1 << 20)
            del arg, r
            gc.collect()
            self.assertIsNone(ref())
        with shmexec.Executor(2) as ex:
            for obj in ex.map(helpers.make_big, range(5)):
                ref = weakref.ref(obj)
                del obj
                gc.collect()
                self.assertIsNone(ref(), "Executor.map's iterator kept a result it had given out")

    def test_functions_sent_by_value_are_cached_weakly(self):
        with shmexec.Executor(1) as ex:
            fn = eval("lambda x: x * 3")
            ref = weakref.ref(fn)
            self.assertEqual(ex.submit(fn, 2).result(T), 6)
            self.assertEqual(ex.submit(fn, 3).result(T), 9)
            del fn
            gc.collect()
            self.assertIsNone(ref(), "the cache of pickled functions kept a function alive")


class Timeouts(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ex = shmexec.Executor(2)
        cls.pool = shmexec.Pool(2)

    @classmethod
    def tearDownClass(cls):
        cls.ex.shutdown(wait=False, cancel_futures=True)
        cls.pool.terminate()

    def test_future_result_returns_at_its_timeout(self):
        for timeout in (0.3, 1.0):
            f = self.ex.submit(helpers.sleep, 5)
            t0 = time.monotonic()
            with self.assertRaises(TimeoutError):
                f.result(timeout=timeout)
            self.assertLess(time.monotonic() - t0, timeout + 0.25)
            self.assertGreaterEqual(time.monotonic() - t0, timeout)
            with self.assertRaises(TimeoutError):
                f.exception(timeout=0.1)
            f.cancel()

    def test_async_result_get_returns_at_its_timeout(self):
        r = self.pool.apply_async(helpers.sleep, (5,))
        t0 = time.monotonic()
        with self.assertRaises(multiprocessing.TimeoutError):
            r.get(0.5)
        self.assertLess(time.monotonic() - t0, 0.75)

    def test_executor_map_timeout_counts_from_the_call(self):
        t0 = time.monotonic()
        it = self.ex.map(helpers.sleep, [0, 0, 3], timeout=1)
        got = []
        with self.assertRaises(TimeoutError):
            for v in it:
                got.append(v)
        self.assertEqual(got, [0, 0])
        self.assertLess(time.monotonic() - t0, 1.5)
        # Several items in one batch: the next result is not there by the
        # deadline, so the iterator raises then, not when the batch ends.
        t0 = time.monotonic()
        with self.assertRaises(TimeoutError):
            list(self.ex.map(helpers.sleep, [0, 0, 3], timeout=1, chunksize=3))
        self.assertLess(time.monotonic() - t0, 1.5)


def _ppid(pid):
    """pid's parent, or 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


class ResourceHygiene(unittest.TestCase):
    def test_a_running_pool_collected_warns_as_multiprocessing(self):
        p = shmexec.Pool(1)
        self.assertEqual(p._processes, 1)
        self.assertEqual(len(p._pool), 1)
        self.assertTrue(p._pool[0].is_alive())
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            del p
            gc.collect()
        self.assertTrue([x for x in w if issubclass(x.category, ResourceWarning)
                         and str(x.message).startswith("unclosed running multiprocessing pool")], [str(x.message) for x in w])

    def test_an_executor_nobody_references_shuts_down_as_concurrent_futures(self):
        # As ProcessPoolExecutor's: once nobody holds the executor, the
        # tasks it was given run to their end and then its workers exit
        # (its threads hold it weakly). Dropped with a task still
        # running, and after a map nobody kept.
        def wait_gone(pids):
            end = time.monotonic() + T
            while [pid for pid in pids if helpers.shmexec_process_alive(pid)]:
                if time.monotonic() > end:
                    self.fail(f"the workers of an executor nobody holds are still there after {T} s: {pids}")
                time.sleep(0.02)

        with tempfile.TemporaryDirectory() as d:
            marks = os.path.join(d, "marks")
            ex = shmexec.Executor(2)
            self.assertEqual(list(ex.map(helpers.double, range(100))), [2 * i for i in range(100)])
            ex.submit(helpers.mark_then_sleep, marks, 0.5)
            pids = ex._worker_pids()
            self.assertEqual(len(pids), 2)
            del ex
            gc.collect()
            helpers.wait_marks(marks, 1, T)
            wait_gone(pids)
            self.assertTrue(os.path.exists(marks))

            def used_once():
                ex = shmexec.Executor(1)
                return ex._worker_pids(), list(ex.map(helpers.double, [1, 2, 3]))

            pids, out = used_once()
            self.assertEqual(out, [2, 4, 6])
            gc.collect()
            wait_gone(pids)

            # Dropped with a task running whose worker is then killed:
            # the crash ends the task (nobody hears of it), and the pool
            # still closes, its replacement worker too, with no hang.
            def workers_here():
                return [int(p) for p in os.listdir("/proc") if p.isdigit() and helpers.shmexec_process_alive(p)
                        and _ppid(p) == os.getpid()]

            before = set(workers_here())
            killed = os.path.join(d, "killed")
            ex = shmexec.Executor(1)
            pid = ex._worker_pids()[0]
            ex.submit(helpers.mark_then_sleep, killed, 30)
            helpers.wait_marks(killed, 1, T)
            del ex
            gc.collect()
            os.kill(pid, signal.SIGKILL)
            end = time.monotonic() + T
            while set(workers_here()) - before:
                self.assertLess(time.monotonic(), end, "the workers of a dropped executor whose worker was killed stayed")
                time.sleep(0.02)

    def test_a_pool_collected_where_its_lock_is_held_does_not_deadlock(self):
        # A collection may finalize a pool in any thread, one of the
        # engine's own among them, which may hold the engine's lock then:
        # the finalizer must not take it there.
        import threading

        for make in (lambda: shmexec.Pool(1), lambda: shmexec.Executor(1)):
            box = [make()]
            engine = weakref.ref(getattr(box[0], "_ex", box[0]))
            books = engine()._books
            finished = threading.Event()

            def drop_holding_the_lock():
                with books.lock:
                    box.clear()  # the last reference
                    gc.collect()
                finished.set()

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                threading.Thread(target=drop_holding_the_lock, daemon=True).start()
                self.assertTrue(finished.wait(T), "a pool finalized where its engine's lock was held deadlocked")
            end = time.monotonic() + T
            while engine() is not None and engine()._books.state == shmexec._engine._RUN:  # the shutdown has not begun
                self.assertLess(time.monotonic(), end, "the collected pool never shut down")
                time.sleep(0.01)

    def test_pool_and_executor_answer_like_multiprocessing(self):
        with shmexec.Pool(3) as p:
            self.assertEqual(p._processes, 3)
            pids = [w.pid for w in p._pool]
            self.assertEqual(len(set(pids)), 3)
            self.assertTrue(all(pid > 0 for pid in pids))
        with shmexec.Executor(2) as ex:
            self.assertEqual(ex._max_workers, 2)
            self.assertEqual(len(ex._processes), 2)

    def test_outcomes_the_caller_caused_are_not_reported(self):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            p = shmexec.Pool(1)
            rs = [p.apply_async(helpers.sleep, (0.2,)) for _ in range(20)]
            p.terminate()
            ex = shmexec.Executor(1)
            fs = [ex.submit(helpers.sleep, 0.05) for _ in range(50)]
            ex.shutdown(cancel_futures=True)
            ex = shmexec.Executor(1)
            gs = [ex.submit(helpers.sleep, 0.2) for _ in range(5)]
            for g in gs:
                g.cancel()
            ex.shutdown()
            del p, rs, fs, gs, ex
            gc.collect()
        self.assertEqual([str(x.message) for x in w if "never retrieved" in str(x.message)], [])

    def test_an_unobserved_failure_is_still_reported(self):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            with shmexec.Executor(1) as ex:
                f = ex.submit(helpers.boom, "nobody looked")
                cf.wait([f], T)
                del f
                gc.collect()
        self.assertTrue([x for x in w if "never retrieved" in str(x.message)])


class PoolsAreNotSendable(unittest.TestCase):
    def test_the_error_names_the_pool_and_where_it_was_found(self):
        with shmexec.Pool(1) as p, shmexec.Executor(1) as ex:
            r = Runner(p)
            for call, where in ((lambda: p.apply(r.run, (1,)), "Runner.pool"),
                                (lambda: ex.submit(r.run, 1).result(T), "Runner.pool"),  # the future fails
                                (lambda: ex.submit(helpers.echo, p).result(T), "args[0]"),
                                (lambda: ex.submit(helpers.describe, x={"p": ex}).result(T), "kwargs['x']['p']"),
                                (lambda: p.apply_async(helpers.echo, (p,)).get(T), "args[0]"),
                                (lambda: p.map(helpers.echo, [r]), "")):
                with self.assertRaises(TypeError) as cm:
                    call()
                msg = str(cm.exception)
                self.assertIn(where, msg)
                self.assertIn("shmexec.", msg)
                self.assertNotIn("ctypes", msg)
                self.assertNotIn("Define it at module level", msg)


def _plain(x):
    return x + 1


class FunctionsByValue(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ex = shmexec.Executor(2)

    @classmethod
    def tearDownClass(cls):
        cls.ex.shutdown()

    def test_lambda_closure_exec_and_method(self):
        k = 10

        def closure(x):
            return x + k

        ns = {}
        exec("def made(x):\n    return x * 2\n", ns)
        import cloudpickle

        # What a framework (Dask) hands an executor: a copy of a function
        # rebuilt from its serialized form, which no module names.
        rebuilt = cloudpickle.loads(cloudpickle.dumps(lambda x: x - 1))
        cases = [(lambda x: x * 5, 2, 10), (closure, 1, 11), (ns["made"], 4, 8), (Big().method, 1, 2), (_plain, 1, 2),
                 (rebuilt, 5, 4)]
        for fn, arg, want in cases:
            self.assertEqual(self.ex.submit(fn, arg).result(T), want, fn)
        with shmexec.Pool(2) as p:
            self.assertEqual(p.map(lambda x: -x, range(5)), [0, -1, -2, -3, -4])
            self.assertEqual(list(p.imap(closure, range(3))), [10, 11, 12])
            self.assertEqual(p.apply(lambda: "applied"), "applied")

    def test_functions_of_python_c_and_of_a_script_without_a_guard(self):
        code = ("import shmexec\ndef f(x):\n    return x * 7\n"
                "with shmexec.Executor(1) as ex:\n    print(ex.submit(f, 6).result(60))\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=T,
                           env=dict(os.environ, PYTHONPATH=_paths.PYTHONPATH))
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "42"), r.stderr)
        self.assertNotIn("Can't get attribute", r.stderr)
        # No `if __name__ == "__main__":` guard: the workers must not run
        # the script's pool again (with multiprocessing's spawn, each would).
        r = run_script("""
            import shmexec
            def f(x):
                return x + 100
            with shmexec.Pool(2) as p:
                print(p.map(f, [1, 2, 3]))
        """)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "[101, 102, 103]"), r.stderr)

    def test_a_scripts_functions_see_what_its_initializer_set_as_with_spawn(self):
        # The idiom of multiprocessing's docs: the initializer sets a
        # global of the main module, the tasks read it. A function of the
        # main module travels by value, and must still run as the worker's
        # own function of that module, whose globals the initializer set:
        # every call below answers as multiprocessing's spawn pool does.
        r = run_script("""
            import multiprocessing, shmexec
            G = None
            N = 1
            def init(x):
                global G, H
                G, H = x, x + 1
            def read(_=None):
                return (G, H, N)
            def read_d(d):
                return (G, d["k"], N)
            def read_b(b):
                return (G, len(b), N)
            def run(pool):
                return [pool.apply(read, (0,)), pool.map(read, range(3)), pool.map(read_d, [{"k": 1}, {"k": 2}]),
                        list(pool.imap(read_d, [{"k": 3}])), pool.apply(read_b, (b"x" * (1 << 20),)),
                        pool.starmap(read, [(0,)])]
            if __name__ == "__main__":
                N = 5  # the parent's own change: a spawned worker runs the module's top level, N = 1
                def guarded(_):
                    return ("by value", N)  # defined here only: by value, with the parent's N
                with shmexec.Pool(2, initializer=init, initargs=(7,)) as p:
                    got = run(p)
                    print(p.apply(guarded, (0,)))
                with multiprocessing.get_context("spawn").Pool(2, initializer=init, initargs=(7,)) as p:
                    want = run(p)
                with shmexec.Executor(2, initializer=init, initargs=(8,)) as ex:
                    print(ex.submit(read).result(60), list(ex.map(read_d, [{"k": 4}])))
                print(got == want, got[0])
        """)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines(), ["('by value', 5)", "(8, 9, 1) [(8, 4, 1)]", "True (7, 8, 1)"], r.stderr)

    def test_a_killed_workers_task_runs_again_with_what_the_initializer_set(self):
        # A task whose worker is SIGKILLed ends with WorkerCrashed, or
        # runs again on a replacement worker when it allows retries: that
        # worker must run the initializer and take the script's function
        # as its own again, and decode frames that carry the function by
        # key (a map over dicts). The pool is back at its size after.
        r = run_script("""
            import os, signal, time, shmexec
            G = None
            def init(x):
                global G
                G = x
            def once(d):
                if not os.path.exists(d["marker"]):  # the first run anywhere dies
                    open(d["marker"], "w").close()
                    os.kill(os.getpid(), signal.SIGKILL)
                return (G, d["k"], os.getpid())
            def back_to(pool, n):
                deadline = time.monotonic() + 30
                while len([w for w in pool._pool if w.is_alive()]) != n:
                    if time.monotonic() > deadline:
                        raise SystemExit("the pool did not get back to %d workers" % n)
                    time.sleep(0.02)
            if __name__ == "__main__":
                with shmexec.Executor(2, initializer=init, initargs=(7,), retries=1) as ex:
                    print(ex.submit(once, {"marker": "m1", "k": 1}).result(60)[:2])
                with shmexec.Pool(2, initializer=init, initargs=(8,), retries=1) as p:
                    got = p.map(once, [{"marker": "m2", "k": k} for k in range(3)])
                    print([g[:2] for g in got])
                with shmexec.Pool(2, initializer=init, initargs=(9,)) as p:
                    try:
                        p.map(once, [{"marker": "m3", "k": 0}])
                    except shmexec.WorkerCrashed:
                        print("WorkerCrashed")
                    back_to(p, 2)
                    print(p.map(once, [{"marker": "m3", "k": 1}])[0][:2])
        """)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines(), ["(7, 1)", "[(8, 0), (8, 1), (8, 2)]", "WorkerCrashed", "(9, 1)"], r.stderr)

    def test_functions_and_classes_of_python_c_and_stdin_in_every_frame(self):
        # Typed into `python -c` or read from standard input (as into a
        # console or a notebook), the functions have no module a worker
        # can load: each travels by value, the initializer and the
        # function of a frame that carries it inside its pickle (items
        # that are not plain, a large bytes argument) included. So do the
        # classes, whose instances pickle would name by reference: one
        # goes out as an argument and comes back as itself.
        code = ("import os, shmexec\n"
                "class P:\n    def __init__(self, x):\n        self.x = x\n"
                "def init(x):\n    os.environ['SHMX_T_INIT'] = str(x)\n"
                "def read(d):\n    return (os.environ.get('SHMX_T_INIT'), d['k'])\n"
                "def size(b):\n    return len(b)\n"
                "def bump(p):\n    return P(p.x + 1)\n"
                "with shmexec.Pool(2, initializer=init, initargs=(3,)) as p:\n"
                "    print(p.map(read, [{'k': 1}, {'k': 2}]), list(p.imap_unordered(read, [{'k': 3}])),\n"
                "          p.apply(size, (b'x' * (1 << 20),)), p.apply(read, ({'k': 4},)))\n"
                "    got = p.map(bump, [P(1), P(2)])\n"
                "    print([type(q) is P for q in got], [q.x for q in got])\n")
        for how in ("-c", "stdin"):
            args, stdin = ([sys.executable, "-c", code], None) if how == "-c" else ([sys.executable, "-"], code)
            r = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=T,
                               env=dict(os.environ, PYTHONPATH=_paths.PYTHONPATH))
            self.assertEqual((r.returncode, r.stdout.splitlines()),
                             (0, ["[('3', 1), ('3', 2)] [('3', 3)] 1048576 ('3', 4)", "[True, True] [2, 3]"]),
                             f"{how}: {r.stderr}")

    def test_without_cloudpickle_functions_by_reference_still_work(self):
        code = ("import sys\nsys.modules['cloudpickle'] = None\nimport shmexec, operator\n"
                "def typed_here():\n    return 1\n"
                "with shmexec.Executor(1) as ex:\n"
                "    print(ex.submit(operator.add, 2, 3).result(60))\n"
                "    try:\n        ex.submit(lambda: 1).result(60)\n    except TypeError as e:\n        print('refused:', e)\n"
                "    try:\n        ex.submit(typed_here).result(60)\n    except TypeError as e:\n        print('refused:', e)\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=T,
                           env=dict(os.environ, PYTHONPATH=_paths.PYTHONPATH))
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "5")
        self.assertIn("refused:", lines[1])
        self.assertIn("pip install cloudpickle", lines[1])
        # A function typed into python -c has no module the workers load:
        # without cloudpickle its future fails at once, and it is not sent
        # by a reference that the worker cannot resolve.
        self.assertEqual(len(lines), 3, r.stdout)
        self.assertIn("refused:", lines[2])
        self.assertIn("cannot import this program's __main__", lines[2])



class SignalsKillTheWorker(unittest.TestCase):
    """Every signal that kills a process by default kills the worker with
    that signal, whether the task sent it itself or it was a real fault,
    and the task raises WorkerCrashed with that signal number."""

    FATAL = ["SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGUSR1", "SIGSEGV",
             "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGSYS"]

    def test_signals_sent_by_the_task_and_real_faults(self):
        import signal

        with shmexec.Executor(2) as ex:
            cases = [(getattr(signal, n), how) for n in self.FATAL for how in ("kill", "raise", "thread")]
            cases += [(signal.SIGSEGV, "fault"), (signal.SIGABRT, "fault")]
            futures = [(sig, how, ex.submit(helpers.kill_self_with, sig, how)) for sig, how in cases]
            wrong = []
            for sig, how, f in futures:
                try:
                    f.result(T)
                    wrong.append(f"{signal.Signals(sig).name} by {how}: the task returned")
                except shmexec.WorkerCrashed as e:
                    if e.signal != sig:
                        wrong.append(f"{signal.Signals(sig).name} by {how}: crashed with signal {e.signal}")
                except BaseException as e:  # noqa: B902
                    wrong.append(f"{signal.Signals(sig).name} by {how}: {type(e).__name__}: {e}")
            self.assertEqual(wrong, [])


class WorkersInheritNothing(unittest.TestCase):
    """Workers start with standard input, output and error and the pool's
    own descriptors only, as subprocess's close_fds=True gives; pass_fds
    hands some on deliberately."""

    def test_inheritable_socket_and_pipe_are_closed_in_workers(self):
        import select
        import socket

        sock = socket.socket()
        sock.set_inheritable(True)
        r, w = os.pipe()
        os.set_inheritable(r, True)
        os.set_inheritable(w, True)
        try:
            with shmexec.Executor(2) as ex:
                helpers.wait_running_at_once(ex, 2)
                mine = {fd: (os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in (sock.fileno(), r, w)}
                for _ in range(6):  # both workers
                    theirs = ex.submit(helpers.open_files).result(T)
                    self.assertEqual([fd for fd, f in mine.items() if f in theirs], [], "descriptors open in a worker")
                # The pipe's reader sees EOF once this process closes its
                # end: no worker holds a copy.
                os.close(w)
                w = None
                ready, _, _ = select.select([r], [], [], 10)
                self.assertTrue(ready, "the pipe's reader saw no EOF: a worker holds its write end")
                self.assertEqual(os.read(r, 1), b"")
        finally:
            sock.close()
            os.close(r)
            if w is not None:
                os.close(w)

    def test_programs_a_task_runs_are_not_workers(self):
        # A worker's handshake and the pool's memory stay the worker's: a
        # program it runs (here one that makes a pool of its own, which a
        # worker may not) gets neither, whether it inherits the process's
        # environment or a copy of os.environ.
        with shmexec.Executor(1) as ex:
            self.assertLessEqual(set(ex.submit(helpers.shmexec_environ).result(T)), set(helpers.shmexec_environ()) | {"SHMEXEC_PASS_FDS"})
            for copy_env in (False, True):
                rc, out, err = ex.submit(helpers.program_with_a_pool, copy_env).result(T)
                self.assertEqual((rc, out), (0, "7\n"), err)
            self.assertEqual(ex.submit(helpers.shell_descriptors).result(T), [0, 1, 2])
            self.assertIn("cannot start a pool", ex.submit(helpers.nested_pool).result(T))

    def test_pass_fds_hands_a_descriptor_on(self):
        r, w = os.pipe()
        try:
            with shmexec.Executor(1, pass_fds=[w]) as ex:
                self.assertEqual(ex.submit(helpers.write_to_passed, b"hi").result(T), 2)
                self.assertEqual(os.read(r, 2), b"hi")
            with self.assertRaises(shmexec.ShmexecError):
                shmexec.Executor(1, pass_fds=[987654])
        finally:
            os.close(r)
            os.close(w)


class StartFailuresNeverStrandCallers(unittest.TestCase):
    def test_tasks_fail_promptly_while_no_worker_can_start_and_run_again_after(self):
        d = tempfile.mkdtemp()
        marker = os.path.join(d, "block")
        try:
            with shmexec.Executor(1, initializer=helpers.init_unless, initargs=(marker,)) as ex:
                self.assertEqual(ex.submit(helpers.add, 1, 1).result(T), 2)
                open(marker, "w").close()  # from now on the worker cannot start
                for proc in ex._processes.values():
                    proc.kill()
                t0 = time.monotonic()
                while True:
                    try:
                        f = ex.submit(helpers.add, 2, 2)
                        f.result(T)
                    except shmexec.WorkerStartError as e:
                        msg = str(e)
                        break
                    except shmexec.WorkerCrashed:
                        pass
                    self.assertLess(time.monotonic() - t0, 10, "no WorkerStartError while the worker cannot start")
                self.assertIn("initializer failed", msg)
                self.assertEqual(msg.count("fail to start"), 1, msg)
                self.assertLess(time.monotonic() - t0, 5)
                os.unlink(marker)  # the cause is gone: the pool heals by itself
                t0 = time.monotonic()
                while True:
                    try:
                        self.assertEqual(ex.submit(helpers.add, 3, 3).result(T), 6)
                        break
                    except shmexec.WorkerStartError:
                        self.assertLess(time.monotonic() - t0, 10, "the pool did not heal")
                        time.sleep(0.05)
        finally:
            import shutil

            shutil.rmtree(d, True)

    def test_a_broken_command_fails_the_constructor_in_one_sentence(self):
        with self.assertRaises(shmexec.WorkerStartError) as cm:
            shmexec.Executor(1, initializer=helpers.boom, initargs=("no",))
        self.assertEqual(str(cm.exception).count("fail to start"), 1, str(cm.exception))
        self.assertIn("initializer failed", str(cm.exception))
        # the reason ends with the last line the worker wrote to stderr
        self.assertIn('standard error was "shmexec worker: initializer failed: ValueError: no"', str(cm.exception))


class WorkersAreNotTheMainProcess(unittest.TestCase):
    def test_current_process_names_a_worker(self):
        # multiprocessing.current_process() in a worker is not the
        # "MainProcess" it is in the caller, whether multiprocessing was
        # imported by the script's top level (which the worker runs) or
        # only by a task; logging's %(processName)s says the same.
        r = run_script("""
            import multiprocessing, os, shmexec
            def name(_):
                return multiprocessing.current_process().name
            def late(_):
                import logging
                rec = logging.LogRecord("t", 20, "f", 1, "m", None, None)
                return rec.processName
            if __name__ == "__main__":
                with shmexec.Pool(2) as p:
                    names = set(p.map(name, range(8), chunksize=1)) | set(p.map(late, range(8), chunksize=1))
                print(multiprocessing.current_process().name, all(n.startswith("ShmexecPoolWorker-") for n in names))
        """)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "MainProcess True"), r.stderr)
        code = ("import shmexec\n"
                "def name(_):\n    import multiprocessing\n    return multiprocessing.current_process().name\n"
                "with shmexec.Pool(1) as p:\n    print(p.apply(name, (0,)).startswith('ShmexecPoolWorker-'))\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=T,
                           env=dict(os.environ, PYTHONPATH=_paths.PYTHONPATH))
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "True"), r.stderr)

    def test_workers_are_numbered_as_a_pools_are(self):
        # current_process()._identity[0] picks a GPU or a seed in much
        # code written for multiprocessing's pools, whose workers are
        # numbered from 1; a replacement keeps its slot's number.
        import signal

        def both(ex):
            # Two tasks at once, each long enough that the other worker
            # takes the second.
            return {f.result(T) for f in [ex.submit(helpers.sleep_then_identity, 0.3) for _ in range(2)]}

        with shmexec.Executor(2) as ex:
            helpers.wait_running_at_once(ex, 2)
            first = both(ex)
            self.assertEqual({i for i, _ in first}, {(1,), (2,)})
            for pid in ex._processes:
                os.kill(pid, signal.SIGKILL)
            helpers.wait_running_at_once(ex, 2)  # the replacements
            again = both(ex)
            self.assertEqual({i for i, _ in again}, {(1,), (2,)})
            self.assertEqual({p for _, p in again} & {p for _, p in first}, set())


if __name__ == "__main__":
    unittest.main()


class MultiprocessingsReducers(unittest.TestCase):
    """multiprocessing pickles what it sends with its ForkingPickler: a
    Connection or a socket as a descriptor that the other process
    duplicates (through multiprocessing's resource sharer), and a type
    registered with multiprocessing.reduction.register by its reducer. So
    does shmexec (until 2026-12-08 plain pickle sent a Connection as the
    number of one of the caller's descriptors, which in the worker was
    another file or none, and could not send a socket)."""

    def test_connections_sockets_and_registered_types_travel_as_with_multiprocessing(self):
        import socket

        helpers.register_reducer()
        for make in (lambda: shmexec.Pool(1, initializer=helpers.register_reducer),
                     lambda: shmexec.Executor(1, initializer=helpers.register_reducer)):
            with make() as p, self.subTest(type(p).__name__):
                def call(f, *args):
                    return p.apply(f, args) if isinstance(p, shmexec.Pool) else p.submit(f, *args).result(T)

                r, w = multiprocessing.Pipe(duplex=False)
                call(helpers.send_through, w, b"through a pipe")
                self.assertTrue(r.poll(T))
                self.assertEqual(r.recv_bytes(), b"through a pipe")
                a, b = socket.socketpair()
                with a, b:
                    b.settimeout(T)
                    call(helpers.send_through, a, b"through a socket")
                    self.assertEqual(b.recv(100), b"through a socket")
                    # beside a lambda, which only cloudpickle sends
                    call(helpers.call_on, lambda end: helpers.send_through(end, b"and by value"), a)
                    self.assertEqual(b.recv(100), b"and by value")
                self.assertEqual(call(helpers.registered_value, helpers.Registered(1)), 2)  # the caller's reducer
                self.assertEqual(call(helpers.make_registered, 5).v, 6)  # the worker's, for the result

    def test_a_socket_where_multiprocessing_was_never_imported(self):
        # Plain pickle cannot send a socket: multiprocessing's reducers are
        # loaded for it, and only then.
        r = run_script("""
            import socket, sys, shmexec, helpers
            if __name__ == "__main__":
                with shmexec.Pool(1) as p:
                    print(p.apply(helpers.add, (1, 2)), "multiprocessing.reduction" in sys.modules)
                    a, b = socket.socketpair()
                    b.settimeout(60)
                    p.apply(helpers.send_through, (a, b"hello"))
                    print(b.recv(100), "multiprocessing.reduction" in sys.modules)
        """)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split("\n")[:2], ["3 False", "b'hello' True"])


class WorkersGetWhatASpawnedChildGets(unittest.TestCase):
    """What multiprocessing's spawn hands a child before it runs anything
    (its preparation data) reaches every worker, a respawned one too: the
    caller's sys.argv, the authentication key of multiprocessing's
    managers, initializer arguments of any size (not on the command line),
    and multiprocessing's locks, queues, pipes and shared values among
    them when they are made with the spawn context."""

    def test_sys_argv_and_a_top_level_that_reads_it_as_with_spawn(self):
        r = run_script("""
            import multiprocessing, sys, shmexec
            MODE = sys.argv[1]  # a top level that reads the script's arguments: the worker runs it
            def mode(_):
                return MODE, sys.argv[1:]
            if __name__ == "__main__":
                with shmexec.Pool(2) as p:
                    got = p.map(mode, range(4))
                with multiprocessing.get_context("spawn").Pool(2) as p:
                    want = p.map(mode, range(4))
                print(got == want, got[0])
        """, args=("fast", "--n=3"))
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "True ('fast', ['fast', '--n=3'])"), r.stderr)

    def test_parent_process_is_the_caller_as_with_spawn(self):
        want = ("MainProcess", os.getpid(), True)
        with multiprocessing.get_context("spawn").Pool(1) as p:
            self.assertEqual(p.apply(helpers.parent), want)
        with shmexec.Pool(2) as p:
            self.assertEqual(set(p.map(helpers.parent, range(8), chunksize=1)), {want})

    def test_initializer_arguments_of_any_size_and_off_the_command_line(self):
        secret = "token-" + os.urandom(8).hex()
        with shmexec.Executor(2, initializer=helpers.set_init, initargs=((secret, b"x" * (4 << 20)),)) as ex:
            helpers.wait_running_at_once(ex, 2)
            for _ in range(6):  # both workers
                self.assertEqual(ex.submit(helpers.init_head).result(T), (secret, 4 << 20))
                self.assertEqual(ex.submit(helpers.prep_files).result(T), [], "the preparation data is left open")
            for pid in ex._processes:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read()
                self.assertNotIn(secret.encode(), cmdline)
                self.assertNotIn(secret.encode().hex().encode(), cmdline)

    def test_a_managers_proxies_work_in_workers(self):
        with multiprocessing.get_context("spawn").Manager() as m:
            q = m.Queue()
            with shmexec.Pool(2) as p:
                self.assertEqual(p.starmap(helpers.put, [(q, i) for i in range(4)]), [0, 1, 2, 3])
            self.assertEqual(sorted(q.get(timeout=T) for _ in range(4)), [0, 1, 2, 3])
        # multiprocessing imported only once the pool runs: the key its
        # import makes is the one the workers already have.
        r = run_script("""
            import sys, shmexec
            def put(q, x):
                q.put(x)
                return x
            if __name__ == "__main__":
                with shmexec.Pool(2) as p:
                    assert "multiprocessing" not in sys.modules
                    import multiprocessing
                    with multiprocessing.get_context("spawn").Manager() as m:
                        q = m.Queue()
                        print(p.starmap(put, [(q, i) for i in range(3)]), sorted(q.get(timeout=60) for _ in range(3)))
        """)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "[0, 1, 2] [0, 1, 2]"), r.stderr)

    def test_spawn_context_locks_queues_values_and_pipes_as_initargs(self):
        import signal

        ctx = multiprocessing.get_context("spawn")
        # A SimpleQueue: its put has written the item when the task
        # returns, whereas a Queue's feeder thread may still hold it (and
        # its lock) when the worker is killed below.
        lock, counter, arr, q, ev = ctx.Lock(), ctx.Value("i", 0), ctx.Array("i", 4), ctx.SimpleQueue(), ctx.Event()
        a, b = ctx.Pipe()
        ev.set()
        r, w = os.pipe()
        try:
            with shmexec.Pool(2, initializer=helpers.set_init, initargs=((lock, counter, arr, q, ev, b),), pass_fds=[w]) as p:
                first = p.map(helpers.use_held, range(20), chunksize=1)
                pids = {pid for *_, pid in first}
                for pid in pids:  # their replacements must get the same
                    os.kill(pid, signal.SIGKILL)
                second = p.map(helpers.use_held, range(20, 40), chunksize=1)
            # Each worker saw the event set, and SHMEXEC_PASS_FDS names the
            # program's pass_fds alone (the inherited pipe end is fd 5).
            self.assertEqual({(s, fds) for s, fds, _ in first + second}, {(True, "4")})
            self.assertEqual({pid for *_, pid in second} & pids, set())
            self.assertEqual((counter.value, sum(arr)), (40, 40))
            got, deadline = [], time.monotonic() + T
            while len(got) < 40 and time.monotonic() < deadline:  # (a SimpleQueue's get takes no timeout)
                if q.empty():
                    time.sleep(0.01)
                else:
                    got.append(q.get())
            self.assertEqual(sorted(got), list(range(40)))
            sent = []
            while len(sent) < 40 and a.poll(T):
                sent.append(a.recv())
            self.assertEqual(sorted(sent), list(range(40)))
        finally:
            os.close(r)
            os.close(w)
        queue = ctx.Queue()
        with shmexec.Executor(2, initializer=helpers.set_init, initargs=(queue,)) as ex:
            self.assertEqual(list(ex.map(helpers.put_init, range(10))), list(range(10)))
        self.assertEqual(sorted(queue.get(timeout=T) for _ in range(10)), list(range(10)))
        queue.close()

    def test_shared_memory_outlives_the_workers_that_attach_to_it(self):
        # Workers that exit (maxtasksperchild=1) after they attached to the
        # caller's SharedMemory: with a resource tracker of their own that
        # tracks it, it would unlink the segment as they exit. Shared
        # memory imported before the pool and only after it.
        for late in (False, True):
            r = run_script(f"""
                import os, sys, shmexec
                if not {late}:
                    from multiprocessing import shared_memory
                def touch(name, i):
                    from multiprocessing import shared_memory
                    s = shared_memory.SharedMemory(name=name)
                    s.buf[i] = 1
                    s.close()
                    return os.getpid()
                if __name__ == "__main__":
                    with shmexec.Pool(2, maxtasksperchild=1) as p:
                        from multiprocessing import shared_memory
                        s = shared_memory.SharedMemory(create=True, size=4096)
                        pids = p.starmap(touch, [(s.name, i) for i in range(6)], chunksize=1)
                        p.close()
                        p.join()
                    again = shared_memory.SharedMemory(name=s.name)  # FileNotFoundError once unlinked
                    print(len(set(pids)), sum(again.buf[:6]))
                    again.close()
                    s.close()
                    s.unlink()
            """)
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "6 6"), f"late={late}: {r.stderr}")
            self.assertNotIn("resource_tracker", r.stderr, f"late={late}")

    def test_a_worker_killed_holding_an_inherited_lock_strands_no_caller(self):
        # The lock is multiprocessing's: a worker killed while it holds it
        # leaves it held, as under multiprocessing. A task that then waits
        # for it ends at its timeout, its worker is replaced, and the pool
        # goes on: no caller waits for ever.
        import signal

        lock = multiprocessing.get_context("spawn").Lock()
        with shmexec.Executor(1, initializer=helpers.set_init, initargs=(lock,), timeout=1) as ex:
            with self.assertRaises(shmexec.WorkerCrashed) as cm:
                ex.submit(helpers.sigkill_self_holding).result(T)
            self.assertEqual(cm.exception.signal, signal.SIGKILL)
            self.assertFalse(lock.acquire(timeout=0), "the killed worker's hold on the lock was lost")
            t0 = time.monotonic()
            with self.assertRaises(TimeoutError):
                ex.submit(helpers.with_init_lock, 1).result(T)
            self.assertLess(time.monotonic() - t0, 10)
            self.assertEqual(ex.submit(helpers.add, 2, 3).result(T), 5)  # a replacement worker

    def test_inherited_objects_need_no_cloudpickle(self):
        r = run_script("""
            import sys
            sys.modules["cloudpickle"] = None
            import multiprocessing, shmexec, helpers
            if __name__ == "__main__":
                ctx = multiprocessing.get_context("spawn")
                counter, (a, b) = ctx.Value("i", 0), ctx.Pipe()
                init = (ctx.Lock(), counter, ctx.Array("i", 2), ctx.SimpleQueue(), ctx.Event(), b)
                with shmexec.Pool(2, initializer=helpers.set_init, initargs=(init,)) as p:
                    p.map(helpers.use_held, range(6))
                print(counter.value, sorted(a.recv() for _ in range(6) if a.poll(60)))
        """)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "6 [0, 1, 2, 3, 4, 5]"), r.stderr)

    def test_spawn_and_forkserver_contexts_are_taken_and_fork_is_refused(self):
        # Python 3.14's default context on Linux is forkserver's: its
        # children are fresh interpreters, as shmexec's workers are, and
        # its locks have names that a worker opens.
        forkserver = multiprocessing.get_context("forkserver")
        lock = forkserver.Lock()
        with shmexec.Pool(1, initializer=helpers.set_init, initargs=(lock,), context=forkserver) as p:
            self.assertEqual(p.apply(helpers.add, (1, 2)), 3)
        with shmexec.Executor(1, mp_context=multiprocessing.get_context("spawn")) as ex:
            self.assertEqual(ex.submit(helpers.add, 2, 2).result(T), 4)
        with self.assertRaisesRegex(ValueError, "'fork' context"):
            shmexec.Pool(1, context=multiprocessing.get_context("fork"))
        with self.assertRaisesRegex(ValueError, "'fork' context"):
            shmexec.Executor(1, mp_context=multiprocessing.get_context("fork"))
        # What is not a context at all is refused too (until 2026-12-08 it
        # was taken, and ignored).
        for bad in ("spawn", 5):
            with self.assertRaisesRegex(TypeError, "must be a multiprocessing context"):
                shmexec.Pool(1, context=bad)
            with self.assertRaisesRegex(TypeError, "must be a multiprocessing context"):
                shmexec.Executor(1, mp_context=bad)

    def test_a_fork_context_lock_is_refused_saying_what_to_do(self):
        # Its semaphore is unlinked as it is made: only a forked child can
        # use it (before Python 3.12 a spawned one crashed on it).
        fork = multiprocessing.get_context("fork")
        for obj in (fork.Lock(), fork.Value("i", 0), fork.Queue()):
            with self.assertRaises(TypeError) as cm:
                shmexec.Pool(1, initializer=helpers.set_init, initargs=(obj,))
            self.assertIn('multiprocessing.get_context("spawn")', str(cm.exception))
