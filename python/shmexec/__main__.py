"""`python -m shmexec`: a short self-check."""

import operator
import time

import shmexec


def main():
    print(f"shmexec {shmexec.version()}, library {shmexec.LIBRARY_PATH}")
    with shmexec.Executor(max_workers=2) as ex:
        t = time.perf_counter()
        assert ex.submit(operator.mul, 6, 7).result(timeout=30) == 42
        print(f"round trip through a pool of 2 workers: ok ({(time.perf_counter() - t) * 1e3:.1f} ms, start-up included)")
        assert list(ex.map(pow, range(1000), [2] * 1000)) == [i * i for i in range(1000)]
        print("map of 1000 calls: ok")


if __name__ == "__main__":
    main()
