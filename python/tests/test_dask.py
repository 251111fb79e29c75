"""shmexec as the process executor of Dask workers (shmexec.dask), with a
real Dask cluster: a scheduler and two workers, each a process this test
starts in a process group of its own, bound to 127.0.0.1 (its HTTP server
too) with dashboards off, and stopped by its group at the end (or by
PR_SET_PDEATHSIG if this process is killed). One worker gets shmexec by
--preload (executor "processes", with --shmexec-default: all its tasks
run in processes); Client.register_plugin gives both workers two more
("isolated", and "limited" with a 1 s timeout).

Skipped, saying why, where distributed cannot be imported."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import _paths  # noqa: E402  (sys.path: the checkout's package, or the installed one)

try:
    import dask
    import distributed
    from distributed import Client

    import shmexec.dask
except ImportError as e:  # pragma: no cover - where Dask is not installed
    dask = None
    SKIP = f"Dask is not installed for {sys.executable} ({e}); .ci/run installs it"
else:
    SKIP = None

import dask_tasks  # noqa: E402
import shmexec  # noqa: E402

T = 60  # seconds any one wait may take


def gone(pid):
    """Whether process pid has exited (or is a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def die_with_parent():
    """In a child before exec: SIGTERM when this test process dies, even
    by SIGKILL, so that a killed test run leaves no cluster behind."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def wait_until(cond, what, deadline=T):
    end = time.monotonic() + deadline
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"{what} within {deadline} s")
        time.sleep(0.05)


@unittest.skipIf(SKIP, SKIP)
class DaskCluster(unittest.TestCase):
    procs = []

    @classmethod
    def start(cls, args, name):
        log = open(os.path.join(cls.tmp, name + ".log"), "w")
        env = dict(os.environ, PYTHONPATH=_paths.PYTHONPATH)
        p = subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True, cwd=cls.tmp, preexec_fn=die_with_parent)
        cls.procs.append((p, log))
        return p

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="shmexec-dask-")
        sched_file = os.path.join(cls.tmp, "scheduler.json")
        cls.start(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                   "--dashboard-address", "127.0.0.1:0", "--scheduler-file", sched_file], "scheduler")
        try:
            wait_until(lambda: os.path.exists(sched_file) and os.path.getsize(sched_file) > 0, "the scheduler wrote its address")
            with open(sched_file) as f:
                cls.address = json.load(f)["address"]
            common = ["distributed.cli.dask_worker", cls.address, "--host", "127.0.0.1", "--no-dashboard",
                      "--dashboard-address", "127.0.0.1:0", "--nthreads", "2",
                      "--no-nanny", "--death-timeout", "60"]
            cls.start(common + ["--name", "preloaded", "--preload", "shmexec.dask", "--shmexec-default",
                                "--shmexec-processes", "2"], "worker-preloaded")
            cls.start(common + ["--name", "plugged"], "worker-plugged")
            cls.client = Client(cls.address, timeout=T)
            cls.client.wait_for_workers(2, timeout=T)
            cls.workers = {info["name"]: addr for addr, info in cls.client.scheduler_info(n_workers=-1)["workers"].items()}
            # Client.register_plugin in newer Dask (2026.8 tested), register_worker_plugin in older (2022.12 tested)
            register = getattr(cls.client, "register_plugin", None) or cls.client.register_worker_plugin
            register(shmexec.dask.ShmexecExecutor("isolated", processes=2))
            register(shmexec.dask.ShmexecExecutor("limited", processes=1, timeout=1))
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        client = getattr(cls, "client", None)
        pids = []
        try:
            if client is not None:
                try:
                    for name, where in (("isolated", None), ("limited", None), ("processes", [cls.workers["preloaded"]])):
                        for ps in client.run(dask_tasks.executor_pids, name=name, workers=where).values():
                            pids += ps
                finally:
                    client.close()
        finally:
            for p, log in reversed(cls.procs):  # workers first, then the scheduler
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGTERM)  # the group this test created for it
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(30)
                log.close()
            cls.procs = []
        if client is not None and not pids:
            raise AssertionError("no shmexec process found in the Dask workers, to check that they end with the cluster")
        if pids:
            wait_until(lambda: all(gone(pid) for pid in pids), "every shmexec process gone after the cluster closed", 20)
        cls.left = pids

    def on(self, name):
        return {"workers": [self.workers[name]], "allow_other_workers": False}

    def test_a_graph_of_cpu_tasks_gives_the_same_result_in_processes_as_in_threads(self):
        def graph(annotation, worker):
            with dask.annotate(executor=annotation):
                parts = [dask.delayed(dask_tasks.cpu)(10_000 + i) for i in range(100)]
                return dask.delayed(dask_tasks.total)(*parts).compute(**self.on(worker))

        want = sum(dask_tasks.cpu(10_000 + i) for i in range(100))
        self.assertEqual(graph("default", "plugged"), want)  # threads
        self.assertEqual(graph("isolated", "plugged"), want)
        self.assertEqual(graph("default", "preloaded"), want)  # its default is shmexec
        self.assertEqual(graph("threads", "preloaded"), want)  # the worker's own threads, still there

    def test_tasks_run_in_shmexec_processes(self):
        dask_pid = self.client.run(os.getpid, workers=[self.workers["plugged"]])[self.workers["plugged"]]
        with dask.annotate(executor="isolated"):
            pid, ppid = self.client.submit(dask_tasks.where, pure=False, **self.on("plugged")).result(T)
        self.assertNotEqual(pid, dask_pid)
        self.assertEqual(ppid, dask_pid)  # a shmexec process of that Dask worker
        dask_pid = self.client.run(os.getpid, workers=[self.workers["preloaded"]])[self.workers["preloaded"]]
        pid, ppid = self.client.submit(dask_tasks.where, pure=False, **self.on("preloaded")).result(T)
        self.assertEqual(ppid, dask_pid)  # no annotation: the default executor is shmexec

    def test_crashes_reach_the_client_as_WorkerCrashed_and_the_worker_keeps_its_results(self):
        for worker, annotation in (("plugged", "isolated"), ("preloaded", "default")):
            dask_pid = self.client.run(os.getpid, workers=[self.workers[worker]])[self.workers[worker]]
            held = self.client.submit(dask_tasks.cpu, 5000, pure=False, **self.on(worker))  # a result the worker holds
            self.assertEqual(held.result(T), dask_tasks.cpu(5000))
            for fn, args in ((dask_tasks.segfault, ()), (dask_tasks.exit_now, (7,)), (dask_tasks.sigkill_self, ())):
                with self.subTest(worker=worker, task=fn.__name__), dask.annotate(executor=annotation):
                    f = self.client.submit(fn, *args, pure=False, **self.on(worker))
                    with self.assertRaises(shmexec.WorkerCrashed) as cm:
                        f.result(T)
                    if fn is dask_tasks.segfault:
                        self.assertEqual(cm.exception.signal, signal.SIGSEGV)
                    elif fn is dask_tasks.sigkill_self:
                        self.assertEqual(cm.exception.signal, signal.SIGKILL)
                    else:
                        self.assertEqual(cm.exception.exit_code, 7)
            # The Dask worker is the same process, still has the result, and
            # runs the next tasks.
            self.assertEqual(self.client.run(os.getpid, workers=[self.workers[worker]])[self.workers[worker]], dask_pid)
            self.assertEqual(self.client.who_has([held])[held.key], (self.workers[worker],))
            self.assertEqual(self.client.gather(held), dask_tasks.cpu(5000))
            with dask.annotate(executor=annotation):
                self.assertEqual(self.client.submit(dask_tasks.cpu, 10, pure=False, **self.on(worker)).result(T), dask_tasks.cpu(10))

    def test_a_killed_dask_worker_leaves_no_shmexec_process(self):
        # A Dask worker of its own, SIGKILLed by its pid (not its group,
        # which its shmexec processes share): they must exit with it, as
        # the failure model promises when a pool's owner dies.
        doomed = self.start(["distributed.cli.dask_worker", self.address, "--host", "127.0.0.1", "--no-dashboard",
                             "--dashboard-address", "127.0.0.1:0", "--nthreads", "2", "--no-nanny", "--death-timeout", "60",
                             "--name", "doomed", "--preload", "shmexec.dask", "--shmexec-processes", "2"], "worker-doomed")
        self.client.wait_for_workers(3, timeout=T)
        addr = next(a for a, info in self.client.scheduler_info(n_workers=-1)["workers"].items() if info["name"] == "doomed")
        with dask.annotate(executor="processes"):
            pid, ppid = self.client.submit(dask_tasks.where, pure=False, workers=[addr], allow_other_workers=False).result(T)
        self.assertEqual(ppid, doomed.pid)
        pids = []
        for name in ("processes", "isolated", "limited"):
            pids += self.client.run(dask_tasks.executor_pids, name=name, workers=[addr])[addr]
        self.assertIn(pid, pids)
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(T)
        wait_until(lambda: all(gone(p) for p in pids), f"the killed Dask worker's shmexec processes {pids} gone", 20)
        with dask.annotate(executor="isolated"):  # the others go on
            self.assertEqual(self.client.submit(dask_tasks.cpu, 10, pure=False, **self.on("plugged")).result(T), dask_tasks.cpu(10))

    def test_retries_rerun_a_task_whose_process_crashed(self):
        marker = os.path.join(self.tmp, "crashed-once")
        with dask.annotate(executor="isolated"):
            f = self.client.submit(dask_tasks.crash_once, marker, retries=1, pure=False, **self.on("plugged"))
        self.assertEqual(f.result(T), "survived")
        self.assertTrue(os.path.exists(marker))

    def test_a_task_past_its_timeout_is_killed_with_TimeoutError(self):
        t0 = time.monotonic()
        with dask.annotate(executor="limited"):
            f = self.client.submit(dask_tasks.sleep, 30, pure=False, **self.on("plugged"))
            with self.assertRaises(TimeoutError):
                f.result(T)
            self.assertLess(time.monotonic() - t0, 20)
            self.assertEqual(self.client.submit(dask_tasks.sleep, 0.01, pure=False, **self.on("plugged")).result(T), 0.01)

    def test_a_task_exception_keeps_its_type_and_the_worker_traceback(self):
        with dask.annotate(executor="isolated"):
            f = self.client.submit(dask_tasks.boom, "no", pure=False, **self.on("plugged"))
        with self.assertRaises(ValueError) as cm:
            f.result(T)
        self.assertEqual(str(cm.exception), "no")
        import traceback

        tb = "".join(traceback.format_tb(f.traceback()))
        self.assertIn("dask_tasks.py", tb)  # the frame of the task, in the shmexec process
        self.assertIn("boom", tb)

    def test_large_results_come_back(self):
        import numpy

        with dask.annotate(executor="isolated"):
            f = self.client.submit(dask_tasks.big_array, 4 << 20, pure=False, **self.on("plugged"))
            n = self.client.submit(len, f, **self.on("plugged")).result(T)
        self.assertEqual(n, 4 << 20)
        a = f.result(T)
        self.assertTrue(numpy.array_equal(a[-3:], numpy.arange((4 << 20) - 3, 4 << 20)))


@unittest.skipIf(SKIP, SKIP)
class PluginArguments(unittest.TestCase):
    def test_bad_arguments_are_refused(self):
        for kw in ({"processes": 0}, {"timeout": -1}, {"retries": -1}):
            with self.subTest(**kw), self.assertRaises(ValueError):
                shmexec.dask.ShmexecExecutor(**kw)
        with self.assertRaises(ValueError):
            shmexec.dask.ShmexecExecutor("default")

    def test_the_rest_of_shmexec_does_not_import_dask(self):
        code = "import shmexec, sys; assert 'distributed' not in sys.modules and 'dask' not in sys.modules, sorted(sys.modules)"
        subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, PYTHONPATH=_paths.PYTHONPATH), timeout=T)


if __name__ == "__main__":
    unittest.main()
