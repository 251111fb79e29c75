"""The bench's command line and how it words its ratios (its figures
are measurements, checked by running it: make test-python)."""

import os
import subprocess
import sys
import unittest

import _paths  # noqa: E402  (sys.path: the checkout's package, or the installed one)

from shmexec import bench  # noqa: E402


class BenchTest(unittest.TestCase):
    def test_ratio_words(self):
        for theirs, ours, want in ((10, 2, "5.0x faster"), (1, 1, "1.0x faster"), (4, 5, "1.2x slower"),
                                   (1, 4, "4.0x slower"), (1, 0, "-"), (0, 1, "-"), (float("nan"), 1, "-")):
            with self.subTest(theirs=theirs, ours=ours):
                self.assertEqual(bench.faster(theirs, ours), want)

    def test_warm_every_worker(self):
        # Calls until every worker has answered, and no more; gives up
        # after `most` calls where one worker takes them all.
        for answers, workers, most, want in (([7, 7, 9, 7], 2, 4, 3), ([7, 9], 2, 4, 2), ([7] * 9, 2, 4, 4),
                                             ([5, 5, 6, 5, 7], 3, 8, 5), ([5], 1, 4, 1)):
            with self.subTest(answers=answers, workers=workers):
                it = iter(answers)
                calls = []

                def call():
                    calls.append(1)
                    return next(it), b"payload"

                bench._warm_every_worker(call, workers, most)
                self.assertEqual(len(calls), want)
        self.assertEqual(bench.echo_where(b"x"), (os.getpid(), b"x"))

    def test_bench_command_line(self):
        # -h prints the options and measures nothing; a mistyped or
        # conflicting option is an error, not a silent full run.
        env = dict(os.environ, PYTHONPATH=_paths.PYTHONPATH)
        for args, code, want in ((["--help"], 0, "--peers"), (["--bogus"], 2, "unrecognized arguments: --bogus"),
                                 (["--peers", "--tails"], 2, "not allowed with argument")):
            with self.subTest(args=args):
                r = subprocess.run([sys.executable, "-m", "shmexec.bench", *args], capture_output=True, text=True,
                                   timeout=60, env=env)
                self.assertEqual(r.returncode, code, r.stdout + r.stderr)
                self.assertIn(want, r.stdout + r.stderr)
                self.assertNotIn("round trip", r.stdout)


if __name__ == "__main__":
    unittest.main()
