"""CPython's own tests of multiprocessing.Pool and concurrent.futures,
pointed at shmexec.Pool and shmexec.Executor. run.py runs each test in a
process of its own, with a deadline; not_applicable.txt lists, with a
reason each, the tests that check multiprocessing's internals or a failure
behaviour that shmexec deliberately does better.

Needs the interpreter's `test` package (Debian: libpython3.11-testsuite)."""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import _paths  # noqa: E402,F401  (sys.path: the checkout's package, or the installed one)

import shmexec  # noqa: E402
import test._test_multiprocessing as tm  # noqa: E402

try:  # Python 3.12 and later: a package of modules
    from test.test_concurrent_futures import (executor as _cf_executor, test_as_completed as _cf_as_completed,  # noqa: E402
                                              test_deadlock as _cf_deadlock, test_init as _cf_init,
                                              test_process_pool as _cf_process_pool, test_shutdown as _cf_shutdown,
                                              test_wait as _cf_wait, util as _cf_util)

    class tcf:  # noqa: N801 - the names of 3.11's one module
        ExecutorMixin, BaseTestCase = _cf_util.ExecutorMixin, _cf_util.BaseTestCase
        ExecutorTest = _cf_executor.ExecutorTest
        WaitTests = _cf_wait.WaitTests
        AsCompletedTests = _cf_as_completed.AsCompletedTests
        ProcessPoolExecutorTest = _cf_process_pool.ProcessPoolExecutorTest
        InitializerMixin, FailingInitializerMixin = _cf_init.InitializerMixin, _cf_init.FailingInitializerMixin
        ProcessPoolShutdownTest = _cf_shutdown.ProcessPoolShutdownTest
        ExecutorDeadlockTest = _cf_deadlock.ExecutorDeadlockTest
        setUpModule = staticmethod(_cf_util.setup_module)
except ImportError:  # Python 3.11: one module
    import test.test_concurrent_futures as tcf  # noqa: E402


# Each class is built as CPython's own are: the tests, then the mixin that
# names the pool or executor, then the TestCase base.

# -- multiprocessing.Pool ---------------------------------------------------

class ShmexecPoolMixin(tm.ProcessesMixin):
    Pool = staticmethod(shmexec.Pool)


class PoolTest(tm._TestPool, ShmexecPoolMixin, unittest.TestCase):
    pass


class MultiprocessingPoolIsShmexec:
    """CPython's tests of worker errors and worker lifetimes build their
    pools with multiprocessing.Pool(...) itself, not with the mixin's
    Pool: it names shmexec.Pool while each of them runs (one test a
    process, run.py)."""

    def setUp(self):
        import multiprocessing

        saved = multiprocessing.Pool
        multiprocessing.Pool = shmexec.Pool
        self.addCleanup(setattr, multiprocessing, "Pool", saved)
        super().setUp()


class PoolWorkerErrorsTest(MultiprocessingPoolIsShmexec, tm._TestPoolWorkerErrors, ShmexecPoolMixin, unittest.TestCase):
    pass


class PoolWorkerLifetimeTest(MultiprocessingPoolIsShmexec, tm._TestPoolWorkerLifetime, ShmexecPoolMixin, unittest.TestCase):
    def test_worker_finalization_via_atexit_handler_of_multiprocessing(self):
        # CPython's runs its script (bpo-38744, bpo-39360: a pool still
        # open at interpreter exit, held by a global) with `from
        # multiprocessing import Pool` in a child interpreter, which the
        # patch above cannot reach: the same script with shmexec's Pool.
        import test.support.script_helper

        cmd = """if 1:
            from shmexec import Pool
            problem = None
            class A:
                def __init__(self):
                    self.pool = Pool(processes=1)
            def test():
                global problem
                problem = A()
                problem.pool.map(float, tuple(range(10)))
            if __name__ == "__main__":
                test()
        """
        path = os.pathsep.join(p for p in sys.path if p)
        rc, out, err = test.support.script_helper.assert_python_ok("-c", cmd, PYTHONPATH=path)
        self.assertEqual(rc, 0)


# -- concurrent.futures -----------------------------------------------------

class ShmexecExecutorMixin(tcf.ExecutorMixin):
    executor_type = shmexec.Executor
    # shmexec starts workers with exec, as the spawn start method does; the
    # tests' own synchronization objects come from that context.
    ctx = "spawn"


class ExecutorTest(tcf.ExecutorTest, ShmexecExecutorMixin, tcf.BaseTestCase):
    pass


class WaitTests(tcf.WaitTests, ShmexecExecutorMixin, tcf.BaseTestCase):
    pass


class AsCompletedTests(tcf.AsCompletedTests, ShmexecExecutorMixin, tcf.BaseTestCase):
    pass


class ProcessPoolExecutorTest(tcf.ProcessPoolExecutorTest, ShmexecExecutorMixin, tcf.BaseTestCase):
    pass


class InitializerTest(tcf.InitializerMixin, ShmexecExecutorMixin, tcf.BaseTestCase):
    pass


class FailingInitializerTest(tcf.FailingInitializerMixin, ShmexecExecutorMixin, tcf.BaseTestCase):
    pass


class ShutdownTest(tcf.ProcessPoolShutdownTest, ShmexecExecutorMixin, tcf.BaseTestCase):
    pass


def setUpModule():
    tcf.setUpModule()


class ExecutorDeadlockTest(tcf.ExecutorDeadlockTest, ShmexecExecutorMixin, tcf.BaseTestCase):
    pass
