"""Chaos from outside: a thread SIGKILLs random workers of an
Executor(retries=3) while a stream of tasks flows, every 20 ms and then
every 5 ms (a start-up storm: workers die while they start, as under the
OOM killer). Every task must end exactly once, with its own value or a
terminal error (WorkerCrashed once its retries are spent, WorkerStartError
while no worker could start); none may wait past its deadline; the pool
must be back at full size within a second after the kills stop.

Brief here (make test); SHMEXEC_SOAK=1 runs it for minutes (make soak).
The figures (tasks, kills, throughput during and after) go to stderr."""

import contextlib
import multiprocessing
import os
import random
import signal
import sys
import threading
import time
import unittest

import _paths  # noqa: E402,F401  (sys.path: the checkout's package, or the installed one)

import shmexec  # noqa: E402
import helpers  # noqa: E402

SOAK = bool(os.environ.get("SHMEXEC_SOAK"))
DEADLINE = 30  # seconds any task may take, from its submit to its result
IN_FLIGHT = 64


def tag(i):
    return i, os.getpid()


class Killer(threading.Thread):
    """SIGKILLs a random worker of ex every `every` seconds, by the pid the
    pool reports (the workers are this process's children: a pid cannot be
    reused before the pool has reaped it). With ready_only, only workers
    that have answered a task (seen, a set of pids) are killed: jobs flow
    between the kills. Without, workers die while they start too."""

    def __init__(self, ex, every, seen, ready_only):
        super().__init__(daemon=True)
        self.ex, self.every, self.seen, self.ready_only = ex, every, seen, ready_only
        self.stop = threading.Event()
        self.kills = 0

    def run(self):
        rng = random.Random()
        while not self.stop.wait(self.every):
            pids = [p for p in self.ex._worker_pids() if p and (p in self.seen or not self.ready_only)]
            if pids:
                try:
                    os.kill(rng.choice(pids), signal.SIGKILL)
                    self.kills += 1
                except ProcessLookupError:
                    pass


class Stream:
    """Submits tag(i) for i = 0, 1, ... with at most IN_FLIGHT pending, and
    checks each result as it is collected, in order."""

    def __init__(self, ex):
        self.ex = ex
        self.next = 0
        self.pending = []
        self.ok = self.crashed = self.start_failed = 0
        self.seen = set()  # pids of workers that returned a value

    def run_for(self, seconds):
        end = time.monotonic() + seconds
        n0 = self.next
        while time.monotonic() < end:
            while len(self.pending) < IN_FLIGHT:
                try:
                    self.pending.append((self.next, time.monotonic(), self.ex.submit(tag, self.next)))
                except shmexec.WorkerStartError:  # refused at once: no worker is alive just now
                    self.start_failed += 1
                    self.next += 1
                    time.sleep(0.001)
                    break
                self.next += 1
            if not self.pending:
                continue
            self.collect(self.pending.pop(0))
        return self.next - n0

    def drain(self):
        while self.pending:
            self.collect(self.pending.pop(0))

    def collect(self, item):
        i, submitted, f = item
        left = submitted + DEADLINE - time.monotonic()
        try:
            v, pid = f.result(max(left, 0))
        except shmexec.WorkerCrashed:
            self.crashed += 1
        except shmexec.WorkerStartError:
            self.start_failed += 1
        except TimeoutError:
            raise AssertionError(f"task {i} had no result {DEADLINE} s after its submit") from None
        else:
            if v != i:
                raise AssertionError(f"task {i} returned task {v}'s value")
            self.ok += 1
            self.seen.add(pid)


def slow_tag(i):
    time.sleep(0.002)
    return i, os.getpid()


def full_size_after(ex, n, deadline=10):
    """Seconds until n tasks run at once on n workers, polling."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline:
        start = time.monotonic()
        try:
            fs = [ex.submit(helpers.sleep_then_pid, 0.05) for _ in range(n)]
        except shmexec.WorkerStartError:  # no worker is alive yet
            time.sleep(0.005)
            continue
        pids = set()
        for f in fs:
            try:
                pids.add(f.result(DEADLINE))
            except (shmexec.WorkerCrashed, shmexec.WorkerStartError):
                pass
        if len(pids) == n and time.monotonic() - start < 0.05 * n:
            return start - t0
    raise AssertionError(f"the pool was not back at {n} workers {deadline} s after the kills stopped")


class ChaosFromOutside(unittest.TestCase):
    def test_kills_while_tasks_flow_and_while_workers_start(self):
        steady, storm, calm = (60, 20, 10) if SOAK else (2, 1, 1)
        with shmexec.Executor(2, retries=3) as ex:
            s = Stream(ex)
            s.run_for(0.2)  # warm
            phases = []
            for every, seconds, ready_only in ((0.020, steady, True), (0.005, storm, False)):
                k = Killer(ex, every, s.seen, ready_only)
                k.start()
                t0 = time.monotonic()
                n = s.run_for(seconds)
                k.stop.set()
                k.join(5)
                phases.append((every, n, k.kills, time.monotonic() - t0))
            s.drain()
            heal = full_size_after(ex, 2)
            t0 = time.monotonic()
            n_calm = s.run_for(calm)
            s.drain()
            calm_rate = n_calm / (time.monotonic() - t0)
        total = s.ok + s.crashed + s.start_failed
        self.assertEqual(total, s.next, "tasks lost")
        for every, n, kills, secs in phases:
            sys.stderr.write(f"\n  kill every {every * 1000:.0f} ms: {n} tasks, {kills} kills, {n / secs:.0f} tasks/s")
            self.assertGreater(kills, 0)
        sys.stderr.write(
            f"\n  after: {calm_rate:.0f} tasks/s; back at full size {heal:.3f} s after the kills stopped;"
            f" {s.ok} ok, {s.crashed} WorkerCrashed (retries spent), {s.start_failed} WorkerStartError\n"
        )
        self.assertLess(heal, 1.0, "the pool took more than a second to be back at full size")
        self.assertGreater(s.ok, 0)

    def test_shutdown_and_terminate_while_workers_are_killed(self):
        # A close delivers every outcome, through the collector, for
        # futures nobody waits on (callbacks only), while workers die under
        # it; a terminate ends every future at once. Either way: each
        # future ends exactly once, the call returns by its deadline, and
        # every worker the pool had is gone after.
        for how in ("shutdown", "terminate"):
            with self.subTest(how=how):
                ex = shmexec.Executor(2, retries=3)
                calls, lock, seen = {}, threading.Lock(), set()

                def done(f, calls=calls, lock=lock, seen=seen):
                    with lock:
                        calls[f] = calls.get(f, 0) + 1
                    if not f.cancelled() and f.exception() is None:
                        seen.add(f.result()[1])

                fs = []
                for i in range(300):
                    f = ex.submit(slow_tag, i)
                    f.add_done_callback(done)
                    fs.append((i, f))
                # Only workers that have run a task: jobs go on running
                # between the kills (killed starts fail the queue at once).
                killer = Killer(ex, 0.010, seen, ready_only=True)
                killer.start()
                pids = set()
                # The kills begin before the close: at least 50 ms of them,
                # and a first kill (a slow machine may take longer to
                # answer the first task, and only then may a worker die).
                t_min, t_max = time.monotonic() + 0.05, time.monotonic() + DEADLINE
                while time.monotonic() < t_min or (killer.kills == 0 and time.monotonic() < t_max):
                    pids.update(p for p in ex._worker_pids() if p)
                    time.sleep(0.005)
                unfinished = sum(not f.done() for _, f in fs)
                closer = threading.Thread(target=ex.shutdown if how == "shutdown" else ex.terminate, daemon=True)
                closer.start()
                closer.join(DEADLINE)
                killer.stop.set()
                killer.join(5)
                self.assertFalse(closer.is_alive(), f"{how} did not return within {DEADLINE} s while workers were killed")
                self.assertGreater(unfinished, 0, "every task had ended before the close: nothing was tested")
                self.assertGreater(killer.kills, 0)
                ended = {"value": 0, "crashed": 0, "start": 0, "closed": 0}
                for i, f in fs:
                    self.assertTrue(f.done(), f"task {i} not ended after {how}")
                    try:
                        v, _ = f.result(0)
                    except shmexec.WorkerCrashed:
                        ended["crashed"] += 1
                    except shmexec.WorkerStartError:
                        ended["start"] += 1
                    except shmexec.PoolClosed:
                        self.assertEqual(how, "terminate", f"task {i}: PoolClosed from a shutdown that waits")
                        ended["closed"] += 1
                    else:
                        self.assertEqual(v, i, f"task {i} got another task's value")
                        ended["value"] += 1
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and len(calls) < len(fs):
                    time.sleep(0.01)  # a callback runs in the thread that ended the future
                with lock:
                    self.assertEqual(sorted(calls.values()), [1] * len(fs), "a callback ran other than once")
                alive = set(pids)
                while alive and time.monotonic() < deadline:
                    alive = {p for p in alive if helpers.shmexec_process_alive(p)}
                    time.sleep(0.01)
                self.assertEqual(alive, set(), f"workers left after {how}")
                sys.stderr.write(f"\n  {how} with a kill every 10 ms: {killer.kills} kills, {unfinished} tasks unfinished at the call, {ended}")

    def test_kills_while_streams_of_single_tasks_flow(self):
        # imap, imap_unordered and map_async with chunksize 1 keep no
        # future per task (the executor's books hold their outcomes until
        # the reader takes them). Workers that have answered a task die
        # under them every 20 ms: every item still ends once, with its
        # value or a terminal error (WorkerCrashed once its retry is spent,
        # WorkerStartError while no worker could start), by its deadline;
        # a map_async gives its list or its first failure; nothing is left
        # in the books; the pool is back at full size after.
        n = 1500 if SOAK else 300
        with shmexec.Pool(2, retries=1) as p:
            ex = p._ex
            seen = {pid for _, pid in p.map(slow_tag, range(4), chunksize=1)}
            killer = Killer(ex, 0.020, seen, ready_only=True)
            killer.start()
            try:
                for ordered in (True, False):
                    it = (p.imap if ordered else p.imap_unordered)(slow_tag, range(n))
                    got, crashed = [], 0
                    while True:
                        try:
                            v, pid = it.next(timeout=DEADLINE)
                        except StopIteration:
                            break
                        except (shmexec.WorkerCrashed, shmexec.WorkerStartError):
                            crashed += 1
                        except multiprocessing.TimeoutError:
                            self.fail(f"imap (ordered={ordered}): no item for {DEADLINE} s")
                        else:
                            got.append(v)
                            seen.add(pid)
                    self.assertEqual(len(got) + crashed, n, f"ordered={ordered}: items lost or doubled")
                    self.assertEqual(len(set(got)), len(got), f"ordered={ordered}: an item given twice")
                    if ordered:
                        self.assertEqual(got, sorted(got), "imap out of order")
                    sys.stderr.write(f"\n  imap (ordered={ordered}) under kills: {len(got)} values, {crashed} terminal errors")
                r = p.map_async(slow_tag, range(n), chunksize=1)
                try:
                    values = r.get(DEADLINE)
                except (shmexec.WorkerCrashed, shmexec.WorkerStartError) as e:
                    outcome = type(e).__name__
                except multiprocessing.TimeoutError:
                    self.fail(f"map_async: no result {DEADLINE} s after its submit")
                else:
                    self.assertEqual([v for v, _ in values], list(range(n)))
                    outcome = "every value"
                sys.stderr.write(f"\n  map_async under kills: {outcome}; {killer.kills} kills in all")
            finally:
                killer.stop.set()
                killer.join(5)
            self.assertGreater(killer.kills, 0)
            helpers.wait_nothing_kept(ex, DEADLINE)
            self.assertLess(full_size_after(ex, 2), 1.0, "the pool took more than a second to be back at full size")

    def test_kills_while_apply_async_results_flow(self):
        self._kills_while_apply_async_results_flow(early=False)

    def test_kills_while_apply_async_results_come_early(self):
        # The same, with every outcome fetched by the collector before its
        # submitter has recorded the job (as where tiny tasks end before
        # their submit returns): the future of a call with callbacks is
        # then settled by the collector, handed over (Engine._hand_over),
        # crashes included (no retry here, so that the kills make some).
        self._kills_while_apply_async_results_flow(early=True)

    def _kills_while_apply_async_results_flow(self, early):
        # An apply_async result is its future (pool._CallResult), and a
        # callback goes on the future's list before the submit
        # (_CallbackResult): nothing else records the call's end.
        # Workers that have answered a task die every 20 ms under a flow
        # of them, half got at once in this thread, half left to the
        # collector and got later. Every call ends once, with its value or
        # a terminal error (WorkerCrashed once its retry is spent,
        # WorkerStartError while no worker could start), by its deadline;
        # exactly one of callback and error_callback has run, once, when
        # the result is ready, and it agrees with get(); nothing is left in
        # the books; the pool is back at full size after.
        n = 1500 if SOAK else 300
        with shmexec.Pool(2, retries=0 if early else 1) as p:  # early: every killed call is a crash to hand over
            ex = p._ex
            seen = {pid for _, pid in p.map(slow_tag, range(4), chunksize=1)}
            ran = {}  # i -> the callbacks that ran for call i
            lock = threading.Lock()

            def on(kind, i):
                def cb(_):
                    with lock:
                        ran.setdefault(i, []).append(kind)
                return cb

            ok = crashed = 0

            def check(i, r):
                nonlocal ok, crashed
                try:
                    v, pid = r.get(DEADLINE)
                except (shmexec.WorkerCrashed, shmexec.WorkerStartError):
                    crashed += 1
                    kind = "error"
                except multiprocessing.TimeoutError:
                    self.fail(f"apply_async {i}: no result {DEADLINE} s after get()")
                else:
                    self.assertEqual(v, i, f"call {i} returned call {v}'s value")
                    seen.add(pid)
                    ok += 1
                    kind = "value"
                self.assertTrue(r.ready())
                self.assertEqual(r.successful(), kind == "value")
                if i % 3:
                    with lock:
                        self.assertEqual(ran.get(i), [kind], f"call {i}: the callbacks that ran")

            killer = Killer(ex, 0.020, seen, ready_only=True)
            killer.start()
            try:
                with helpers.outcomes_come_early(ex, DEADLINE) if early else contextlib.nullcontext([]) as missed:
                    later = []
                    for i in range(n):
                        if i % 3:
                            r = p.apply_async(slow_tag, (i,), callback=on("value", i), error_callback=on("error", i))
                        else:
                            r = p.apply_async(slow_tag, (i,))
                        if i % 2:
                            later.append((i, r))
                        else:
                            check(i, r)
                    for i, r in later:
                        check(i, r)
            finally:
                killer.stop.set()
                killer.join(5)
            self.assertEqual(missed, [], "outcomes that did not come early")
            self.assertEqual(ok + crashed, n, "calls lost or doubled")
            sys.stderr.write(f"\n  apply_async under kills{' (outcomes early)' if early else ''}: {ok} values, {crashed} terminal errors,"
                             f" {killer.kills} kills")
            if early:
                self.assertGreater(crashed, 0, "no crash came early: the handed-over crash was not tested")
            self.assertGreater(killer.kills, 0)
            helpers.wait_nothing_kept(ex, DEADLINE)
            self.assertLess(full_size_after(ex, 2), 1.0, "the pool took more than a second to be back at full size")

    def test_kills_while_descriptors_pass_to_tasks(self):
        # A task's argument may be a multiprocessing Connection (or a
        # socket): it travels as a descriptor that the worker fetches from
        # this process's resource sharer as it unpickles the call. Workers
        # that have answered die every 20 ms while tasks flow, each with a
        # pipe end to write its number into. Every task ends once, by its
        # deadline: with its value, and then its number came through its
        # pipe; or with a terminal error (WorkerCrashed, WorkerStartError,
        # or the error of a retry whose descriptor the killed run had
        # fetched already). The resource sharer is never wedged by a worker
        # killed in the middle of a fetch: a descriptor still passes after,
        # and the pool is back at full size.
        with shmexec.Executor(2, retries=1) as ex:
            seen = {pid for _, pid in ex.map(slow_tag, range(4), chunksize=1)}
            outcomes = {"value": 0, "crashed": 0, "start": 0, "fetch": 0}
            pending = []

            def collect(i, r, f):
                try:
                    pid = f.result(DEADLINE)
                except shmexec.WorkerCrashed:
                    outcomes["crashed"] += 1
                except shmexec.WorkerStartError:
                    outcomes["start"] += 1
                except TimeoutError:
                    self.fail(f"task {i}: no result {DEADLINE} s after its submit")
                except (OSError, EOFError, shmexec.RemoteError):  # a retry's fetch of a descriptor taken already
                    outcomes["fetch"] += 1
                else:
                    outcomes["value"] += 1
                    seen.add(pid)
                    self.assertTrue(r.poll(DEADLINE), f"task {i} returned, and nothing came through its pipe")
                    self.assertEqual(r.recv_bytes(), str(i).encode())
                r.close()

            killer = Killer(ex, 0.020, seen, ready_only=True)
            killer.start()
            n, end = 0, time.monotonic() + (20 if SOAK else 1.5)
            try:
                while time.monotonic() < end:
                    i, n = n, n + 1
                    r, w = multiprocessing.Pipe(duplex=False)
                    try:
                        pending.append((i, r, ex.submit(helpers.send_through, w, str(i).encode())))
                    except shmexec.WorkerStartError:  # refused at once: no worker is alive just now
                        outcomes["start"] += 1
                        r.close()
                    w.close()
                    if len(pending) > 16:
                        collect(*pending.pop(0))
                for item in pending:
                    collect(*item)
            finally:
                killer.stop.set()
                killer.join(5)
            self.assertEqual(sum(outcomes.values()), n, f"tasks lost or doubled: {outcomes}")
            self.assertGreater(killer.kills, 0)
            sys.stderr.write(f"\n  descriptors under kills: {outcomes}, {killer.kills} kills")
            r, w = multiprocessing.Pipe(duplex=False)
            self.assertIsInstance(ex.submit(helpers.send_through, w, b"after").result(DEADLINE), int)
            self.assertTrue(r.poll(DEADLINE))
            self.assertEqual(r.recv_bytes(), b"after")
            helpers.wait_nothing_kept(ex, DEADLINE)
            self.assertLess(full_size_after(ex, 2), 1.0, "the pool took more than a second to be back at full size")

    def test_close_and_join_while_workers_are_killed_under_streams(self):
        # A close waits until every outcome of imap's, imap_unordered's
        # and map_async's batches is fetched (they have no future; the
        # collector is never told of imap's and imap_unordered's, whose
        # unread batches the close fetches itself), so that an iterator
        # read after join has them all, as multiprocessing's has. Workers
        # die under it: join returns by its deadline, every item of the
        # iterator read after it ends once (its value or a terminal
        # error), the map_async is ready, and no worker is left. A second
        # imap_unordered is read by a thread all along: its reader is
        # asleep on its job group when the close comes, and must neither
        # be stranded nor lose or double an item.
        n = 1500 if SOAK else 300
        p = shmexec.Pool(2, retries=1)
        try:
            ex = p._ex
            seen = {pid for _, pid in p.map(slow_tag, range(4), chunksize=1)}
            pids = set(pid for pid in ex._worker_pids() if pid)
            first = {}  # pid -> when first seen: one alive for 150 ms has started, and may be killed

            def watch():
                now = time.monotonic()
                for pid in ex._worker_pids():
                    if pid:
                        pids.add(pid)
                        if now - first.setdefault(pid, now) > 0.15:
                            seen.add(pid)

            def drain(iterator, timeout=0):
                # (values, terminal errors) of an iterator; read after
                # join everything is there, so no next() waits
                values, failed = [], 0
                while True:
                    try:
                        v, _ = iterator.next(timeout=timeout)
                    except StopIteration:
                        return values, failed
                    except (shmexec.WorkerCrashed, shmexec.WorkerStartError):
                        failed += 1
                    else:
                        values.append(v)

            killer = Killer(ex, 0.020, seen, ready_only=True)
            killer.start()
            it = p.imap(slow_tag, range(n))
            un = p.imap_unordered(slow_tag, range(n))
            live = []  # what the reading thread got
            live_reader = threading.Thread(target=lambda: live.append(drain(p.imap_unordered(slow_tag, range(n)), DEADLINE)), daemon=True)
            live_reader.start()
            r = p.map_async(slow_tag, range(n), chunksize=1)
            # the kills begin before the close: at least 50 ms of them,
            # and a first one
            t_min, t_max = time.monotonic() + 0.05, time.monotonic() + DEADLINE
            while time.monotonic() < t_min or (killer.kills == 0 and time.monotonic() < t_max):
                watch()
                time.sleep(0.005)
            self.assertFalse(r.ready(), "the map had ended before the close: nothing was tested")
            p.close()
            joiner = threading.Thread(target=p.join, daemon=True)
            joiner.start()
            while joiner.is_alive() and time.monotonic() < t_max:
                watch()
                time.sleep(0.005)
            killer.stop.set()
            killer.join(5)
            self.assertFalse(joiner.is_alive(), f"join did not return within {DEADLINE} s while workers were killed")
            live_reader.join(max(0.0, t_max - time.monotonic()) + 1)
            self.assertFalse(live_reader.is_alive(), "the reader waiting on its group at the close was stranded")
            self.assertGreater(killer.kills, 0)
            self.assertTrue(r.ready(), "map_async not ready after join")
            try:
                self.assertEqual([v for v, _ in r.get(0)], list(range(n)))
            except (shmexec.WorkerCrashed, shmexec.WorkerStartError):
                pass  # its first failure: a task whose retry was spent
            got, failed = drain(it)
            self.assertEqual(len(got) + failed, n, "items lost or doubled")
            self.assertEqual(got, sorted(set(got)), "imap out of order, or an item given twice")
            got_un, failed_un = drain(un)
            self.assertEqual(len(got_un) + failed_un, n, "imap_unordered: items lost or doubled")
            self.assertEqual(len(set(got_un)), len(got_un), "imap_unordered: an item given twice")
            (got_live, failed_live), = live
            self.assertEqual(len(got_live) + failed_live, n, "imap_unordered read through the close: items lost or doubled")
            self.assertEqual(len(set(got_live)), len(got_live), "imap_unordered read through the close: an item given twice")
            deadline = time.monotonic() + 5
            alive = set(pids)
            while alive and time.monotonic() < deadline:
                alive = {pid for pid in alive if helpers.shmexec_process_alive(pid)}
                time.sleep(0.01)
            self.assertEqual(alive, set(), "workers left after join")
            sys.stderr.write(f"\n  close and join under kills: {killer.kills} kills, imap {len(got)} values and {failed} terminal errors, "
                             f"imap_unordered {len(got_un)} and {failed_un}, read through the close {len(got_live)} and {failed_live}")
        finally:
            p.terminate()


if __name__ == "__main__":
    unittest.main()
