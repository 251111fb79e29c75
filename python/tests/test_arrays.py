"""Large arrays without copies (_views): a numpy array (any object that
keeps its out-of-band buffer) of 4 MiB or more reaches the worker as a
private copy-on-write mapping of the segment, and a result as a view of
the segment held until the last object over it is gone."""

import gc
import os
import shutil
import signal
import tempfile
import time
import unittest

import _paths  # noqa: E402,F401  (sys.path: the checkout's package, or the installed one)

import shmexec  # noqa: E402
import helpers  # noqa: E402

try:
    import numpy
except ImportError:  # numpy is the tests' dependency (requirements.txt), not the package's
    numpy = None

MIB = 1 << 20
T = 30


def wait_for(cond, what, timeout=T):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        gc.collect()
        time.sleep(0.01)


@unittest.skipIf(numpy is None, "numpy is not installed (python/tests/requirements.txt installs it)")
class ArraysTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pool = shmexec.Pool(1)  # one worker: every call reaches the one that kept something

    @classmethod
    def tearDownClass(cls):
        cls.pool.terminate()

    def pages(self):
        return self.pool.stats()["pages_in_use"]

    def test_the_worker_reads_a_large_array_in_place(self):
        a = numpy.arange(2 * MIB, dtype=numpy.int32)  # 8 MiB
        root, writable, misalign, total = self.pool.apply(helpers.array_info, (a,))
        self.assertEqual((root, writable, misalign), ("mmap", True, 0))
        self.assertEqual(total, int(a.sum(dtype=numpy.int64)))
        # Under 4 MiB: a copy of its own, as before.
        small = numpy.arange(MIB // 4, dtype=numpy.int32)
        self.assertEqual(self.pool.apply(helpers.array_info, (small,))[:2], ("bytearray", True))
        # A read-only array arrives read-only.
        a.flags.writeable = False
        self.assertEqual(self.pool.apply(helpers.array_info, (a,))[:2], ("mmap", False))

    def test_writes_in_the_worker_stay_private(self):
        a = numpy.ones(8 * MIB, dtype=numpy.uint8)
        self.assertEqual(self.pool.apply(helpers.scribble, (a,)), 2)
        self.assertEqual(int(a[0]), 1)
        # A retry after the worker is SIGKILLed mid-task, holding the
        # input mapped, reads the input as the caller sent it, though the
        # first run wrote over all of it; the pool gets its worker back.
        d = tempfile.mkdtemp(prefix="shmexec-test-")
        self.addCleanup(shutil.rmtree, d, True)
        marker = os.path.join(d, "ran")
        with shmexec.Executor(1, retries=1) as ex:
            f = ex.submit(helpers.scribble_then_wait, a, marker)
            wait_for(lambda: os.path.exists(marker), "the first run to write over its input")
            (victim,) = ex._worker_pids()
            os.kill(victim, signal.SIGKILL)
            got = f.result(T)
            wait_for(lambda: [p for p in ex._worker_pids() if p and p != victim], "a worker in the killed one's place")
            self.assertGreaterEqual(ex.stats()["retried"], 1)
        self.assertEqual(got, 8 * MIB)

    def test_a_kept_input_stays_intact(self):
        # The worker keeps two inputs past their tasks; later inputs land
        # where those were, and the kept arrays still read what they were.
        with shmexec.Pool(1) as one:
            self.assertEqual(one.apply(helpers.keep_array, (numpy.full(8 * MIB, 1, dtype=numpy.uint8),)), 1)
            self.assertEqual(one.apply(helpers.keep_array, (numpy.full(8 * MIB, 2, dtype=numpy.uint8),)), 2)
            for v in range(3, 9):
                one.apply(helpers.echo, (numpy.full(8 * MIB, v, dtype=numpy.uint8),))
            self.assertEqual(one.apply(helpers.kept_arrays), [8 * MIB, 16 * MIB])

    def test_a_large_result_is_held_until_collected(self):
        base = self.pages()
        r = self.pool.apply(helpers.ones, (16 * MIB,))
        self.assertTrue(helpers.buffer_root(r).startswith("c_char_Array_"), helpers.buffer_root(r))
        self.assertTrue(r.flags.writeable)
        self.assertEqual(int(r.sum(dtype=numpy.int64)), 16 * MIB)
        page = self.pool.stats()["page_size"]
        held = self.pages()
        self.assertGreaterEqual(held, base + 16 * MIB // page, "the held result's pages are in use")
        view = r[::2]  # an array over it keeps it held too
        del r
        gc.collect()
        self.assertGreaterEqual(self.pages(), base + 16 * MIB // page, "released while a view of it lives")
        self.assertEqual(int(view.sum(dtype=numpy.int64)), 8 * MIB)
        del view
        wait_for(lambda: self.pages() <= base, f"the arena's pages back to {base} (now {self.pages()})")

    def test_echo_both_ways(self):
        a = numpy.random.default_rng(1).integers(0, 1 << 30, size=4 * MIB, dtype=numpy.int64)  # 32 MiB
        r = self.pool.apply(helpers.echo, (a,))
        self.assertTrue(numpy.array_equal(r, a))
        self.assertEqual(r.dtype, a.dtype)
        self.assertEqual(r.ctypes.data % 64, 0)
        f = numpy.asfortranarray(a.reshape(2048, -1))
        rf = self.pool.apply(helpers.echo, (f,))
        self.assertTrue(numpy.array_equal(rf, f) and rf.flags.f_contiguous)
        with shmexec.Executor(1) as ex:
            self.assertTrue(numpy.array_equal(ex.submit(helpers.echo, a).result(T), a))
            self.assertTrue(all(numpy.array_equal(x, a) for x in ex.map(helpers.echo, [a, a])))

    def test_bytes_and_memoryviews_keep_their_types(self):
        b = bytes(range(256)) * (32 * 1024)  # 8 MiB
        got = self.pool.apply(helpers.echo, (b,))
        self.assertIs(type(got), bytes)
        self.assertEqual(got, b)
        ba = self.pool.apply(helpers.echo, (bytearray(b),))
        self.assertIs(type(ba), bytearray)
        self.assertEqual(ba, b)
        m = memoryview(bytearray(b)).cast("I", (1024, 2048))
        gm = self.pool.apply(helpers.echo, (m,))
        self.assertEqual((type(gm), gm.format, gm.shape, gm.readonly), (memoryview, "I", (1024, 2048), False))
        self.assertEqual(gm.tobytes(), b)
        ro = self.pool.apply(helpers.echo, (memoryview(b),))
        self.assertTrue(ro.readonly)
        self.assertEqual(ro.tobytes(), b)

    def test_results_outlive_the_pool(self):
        p = shmexec.Pool(1)
        r = p.apply(helpers.ones, (8 * MIB,))
        p.terminate()
        p.join()
        with self.assertRaises(shmexec.PoolClosed):
            p.stats()
        self.assertEqual(int(r.sum(dtype=numpy.int64)), 8 * MIB)
        r[:] = 3  # still this process's to change
        self.assertEqual(int(r[-1]), 3)
        del r
        gc.collect()

    def test_many_held_results(self):
        # More held results than half the arena: later ones are copied
        # into private memory instead, and all read right.
        with shmexec.Pool(1) as p:
            st = p.stats()
            n = (st["pages"] * st["page_size"]) // (16 * MIB) + 2
            rs = [p.apply(helpers.ones, (16 * MIB,)) for _ in range(n)]
            self.assertTrue(all(int(r[0]) == 1 and int(r[-1]) == 1 for r in rs))
            base_roots = {helpers.buffer_root(r)[:13] for r in rs}
            self.assertEqual(base_roots, {"c_char_Array_"})
            del rs
            wait_for(lambda: p.stats()["pages_in_use"] == 0, "every held result released")


if __name__ == "__main__":
    unittest.main()
