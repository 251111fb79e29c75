"""The Python side of `make demo`: a shmexec Executor beside the failures
that break multiprocessing.Pool and ProcessPoolExecutor."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import shmexec  # noqa: E402


def square(x):
    return x * x


def die():
    os.kill(os.getpid(), signal.SIGKILL)


class BadInit(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")


def raise_bad_init():
    raise BadInit(1, 2)


def main():
    with shmexec.Executor(max_workers=2, timeout=5) as ex:
        t = time.perf_counter()
        out = list(ex.map(square, range(100_000)))
        assert out == [i * i for i in range(100_000)]
        print(f"Python: map of 100,000 calls on 2 worker processes in {time.perf_counter() - t:.2f} s, all correct")
        try:
            ex.submit(die).result(30)
        except shmexec.WorkerCrashed as e:
            print(f"a task that SIGKILLs its worker: WorkerCrashed({e}) — the pool goes on")
        try:
            ex.submit(raise_bad_init).result(30)
        except shmexec.RemoteError as e:
            print(f"an exception multiprocessing.Pool cannot unpickle (it hangs): RemoteError {e.type_name}: {e.message}")
        print("after both:", ex.submit(square, 12).result(30))


if __name__ == "__main__":
    main()
