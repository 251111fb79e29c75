"""What the package offers C and ctypes users, and its one-library rule."""

import ctypes.util
import os
import shutil
import subprocess
import sys
import tempfile
import types
import unittest

import _paths  # noqa: E402  (sys.path: the checkout's package, or the installed one)

import shmexec  # noqa: E402


class PackagingTest(unittest.TestCase):
    def test_include_and_library(self):
        inc = shmexec.get_include()
        self.assertTrue(os.path.isfile(os.path.join(inc, "shmexec.h")), inc)
        with open(os.path.join(inc, "shmexec.h")) as f:
            self.assertIn("#define SHMX_VERSION_NUMBER", f.read())
        self.assertEqual(shmexec.get_library(), shmexec.LIBRARY_PATH)
        self.assertTrue(os.path.isfile(shmexec.get_library()))
        self.assertRegex(shmexec.version(), r"^\d+\.\d+\.\d+$")

    def test_all_is_complete(self):
        # submodules (executor, pool; dask and bench once imported) are not names of the API
        public = {n for n in dir(shmexec) if not n.startswith("_") and not isinstance(getattr(shmexec, n), types.ModuleType)}
        self.assertEqual(public - set(shmexec.__all__), set(), "public names missing from __all__")
        for n in shmexec.__all__:
            self.assertTrue(hasattr(shmexec, n), n)

    def test_imports_cost_only_what_is_used(self):
        # A short script pays for what it uses: import shmexec loads neither
        # the library nor concurrent.futures; shmexec.Pool no
        # concurrent.futures (nor logging, which that imports: 4 ms of a
        # start-up) and no multiprocessing (it imports
        # multiprocessing.TimeoutError only to raise it); a worker (which
        # imports the package, then shmexec.worker) loads no
        # concurrent.futures, multiprocessing, cloudpickle or traceback
        # (about 40 ms together).
        heavy = ["concurrent.futures", "logging", "multiprocessing", "cloudpickle", "traceback", "shmexec._lib", "shmexec.executor"]
        # (what the interpreter's start imported, site and .pth files, is not the package's)
        probe = "import sys\nbefore = set(sys.modules)\n{}\nprint(' '.join(m for m in %r if m in sys.modules and m not in before))" % (heavy,)
        env = dict(os.environ, PYTHONPATH=_paths.PYTHONPATH)
        for code, allowed in (("import shmexec", set()),
                              ("import shmexec.worker", {"shmexec._lib"}),
                              ("import shmexec; shmexec.Pool", {"shmexec._lib"}),
                              ("import shmexec\nwith shmexec.Pool(1) as p: p.apply(abs, (-1,)); p.map(abs, range(99))",
                               {"shmexec._lib"}),
                              ("import shmexec; shmexec.Executor", {"shmexec._lib", "shmexec.executor", "concurrent.futures",
                                                                   "logging", "traceback"})):
            with self.subTest(code=code):
                r = subprocess.run([sys.executable, "-c", probe.format(code)], capture_output=True, text=True, timeout=60, env=env)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(set(r.stdout.split()), allowed)
        for name in ("Pool", "Executor", "WorkerCrashed", "version"):
            r = subprocess.run([sys.executable, "-c", f"import shmexec; print(shmexec.{name}.__name__)"],
                               capture_output=True, text=True, timeout=60, env=env)
            self.assertEqual((r.returncode, r.stdout.strip()), (0, name), r.stderr)
        with self.assertRaisesRegex(AttributeError, "has no attribute 'Nothing'"):
            shmexec.Nothing

    def test_a_second_copy_of_the_library_is_refused(self):
        # A process that has one copy of the library (here loaded by ctypes,
        # as a C extension might) must not load another: that would start a
        # second Go runtime. The import says so instead.
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        other = os.path.join(d, "libshmexec.so.0")
        shutil.copy(shmexec.LIBRARY_PATH, other)
        # (neither import shmexec nor its names load the library: the first
        # pool does, or LIBRARY_PATH)
        code = f"import ctypes; ctypes.CDLL({other!r})\nimport shmexec\ntry:\n    shmexec.Executor(1)\nexcept ImportError as e:\n    print('refused:', e)\nelse:\n    print('loaded', shmexec.LIBRARY_PATH)\n"
        env = dict(os.environ, PYTHONPATH=_paths.PYTHONPATH)
        env.pop("SHMEXEC_LIB", None)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("refused:", r.stdout)
        self.assertIn("second Go runtime", r.stdout)
        self.assertIn(other, r.stdout)
        # The same copy, loaded first by ctypes, is fine.
        code = f"import ctypes; ctypes.CDLL({shmexec.LIBRARY_PATH!r})\nimport shmexec\nprint(shmexec.Executor(1).submit(abs, -2).result())\n"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "2"), r.stderr)

    def test_a_library_older_than_the_package_is_refused(self):
        # SHMEXEC_LIB may point at a build that lacks functions the package
        # calls: the load (with the first pool) names the library and the
        # missing function, not ctypes' "undefined symbol". Any library
        # without the shmx_ names stands for one (libm here).
        libm = ctypes.util.find_library("m")
        if libm is None:
            self.skipTest("no libm to stand for an old library")
        env = dict(os.environ, PYTHONPATH=_paths.PYTHONPATH, SHMEXEC_LIB=libm)
        code = "import shmexec\ntry:\n    shmexec.Pool(1)\nexcept ImportError as e:\n    print('refused:', e)\n"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("refused:", r.stdout)
        self.assertIn("is older than this package", r.stdout)
        self.assertIn(libm, r.stdout)

    def test_self_check(self):
        env = dict(os.environ, PYTHONPATH=_paths.PYTHONPATH)
        r = subprocess.run([sys.executable, "-m", "shmexec"], capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for line in ("round trip through a pool of 2 workers: ok", "map of 1000 calls: ok", "closed: ok"):
            self.assertIn(line, r.stdout)
        r = subprocess.run([sys.executable, "-m", "shmexec", "--nothing"], capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertNotIn("round trip", r.stdout)


if __name__ == "__main__":
    unittest.main()
