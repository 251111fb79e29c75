"""`python -m shmexec`: a short self-check. Exits 0 when a pool of two
workers starts, answers a call and a map, and closes; 1 when not."""

import argparse
import operator
import sys
import time

import shmexec


def main(argv=None):
    argparse.ArgumentParser(
        prog="python -m shmexec",
        description="A short self-check: starts a pool of 2 workers, runs a call and a map of 1000 calls, and closes it.",
        epilog="The figures are `python -m shmexec.bench`'s.",
    ).parse_args(argv)
    print(f"shmexec {shmexec.version()}, library {shmexec.LIBRARY_PATH}")
    t = time.perf_counter()
    with shmexec.Executor(max_workers=2) as ex:
        started = time.perf_counter()
        got = ex.submit(operator.mul, 6, 7).result(timeout=30)
        done = time.perf_counter()
        if got != 42:
            print(f"round trip through a pool of 2 workers: FAILED (6 * 7 gave {got!r})")
            return 1
        print(f"round trip through a pool of 2 workers: ok (pool start {(started - t) * 1e3:.1f} ms, "
              f"first call {(done - started) * 1e3:.1f} ms)")
        got = list(ex.map(pow, range(1000), [2] * 1000, timeout=30))
        if got != [i * i for i in range(1000)]:
            print("map of 1000 calls: FAILED (wrong results)")
            return 1
        print("map of 1000 calls: ok")
    print(f"closed: ok ({(time.perf_counter() - t) * 1e3:.1f} ms in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
