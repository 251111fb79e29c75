"""`python -m shmexec.bench`: shmexec beside multiprocessing.Pool and
ProcessPoolExecutor, measured in the same run, printed as ratios.

    python -m shmexec.bench [--quick]
"""

import concurrent.futures as cf
import multiprocessing as mp
import statistics
import sys
import time

import shmexec


def noop(x=None):
    return x


def echo(b):
    return b


def _latency(call, n):
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        lat.append(time.perf_counter() - t)
    lat.sort()
    return lat[len(lat) // 2], lat[int(len(lat) * 0.99)]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    quick = "--quick" in argv
    n_rt = 200 if quick else 5000
    n_map = 10_000 if quick else 100_000
    big = b"x" * ((8 if quick else 64) << 20)
    ctx = mp.get_context("spawn")
    rows = []
    with shmexec.Executor(max_workers=2) as ex, ctx.Pool(2) as pool, cf.ProcessPoolExecutor(2, mp_context=ctx) as ppe:
        for warm in (ex.submit(noop).result, lambda: pool.apply(noop), ppe.submit(noop).result):
            warm()
        s = _latency(lambda: ex.submit(noop).result(), n_rt)
        m = _latency(lambda: pool.apply(noop), n_rt)
        p = _latency(lambda: ppe.submit(noop).result(), n_rt)
        rows.append(("apply round trip p50", s[0], {"multiprocessing.Pool.apply": m[0], "ProcessPoolExecutor.submit": p[0]}, "s"))
        rows.append(("apply round trip p99", s[1], {"multiprocessing.Pool.apply": m[1], "ProcessPoolExecutor.submit": p[1]}, "s"))

        def timed(f):
            t = time.perf_counter()
            f()
            return time.perf_counter() - t

        items = range(n_map)
        ts = timed(lambda: list(ex.map(noop, items)))
        tm = timed(lambda: pool.map(noop, items))
        tm1 = timed(lambda: pool.map(noop, items[: n_map // 10], chunksize=1)) * 10  # scaled: chunksize=1 is slow
        tp = timed(lambda: list(ppe.map(noop, items)))
        rows.append((f"map of {n_map:,} tiny tasks", ts, {"Pool.map (default chunksize)": tm, "Pool.map chunksize=1 (1/10 run, x10)": tm1, "ProcessPoolExecutor.map": tp}, "s"))

        ts = timed(lambda: ex.submit(echo, big).result())
        tm = timed(lambda: pool.apply(echo, (big,)))
        rows.append((f"{len(big) >> 20} MiB echo", ts, {"multiprocessing.Pool.apply": tm}, "s"))
    print(f"shmexec {shmexec.version()} — Python {sys.version.split()[0]}, 2 workers each, one run")
    for name, ours, base, unit in rows:
        print(f"{name}: shmexec {ours * 1e3:.3f} ms")
        for bname, b in base.items():
            print(f"    {bname}: {b * 1e3:.3f} ms  ->  shmexec is {b / ours:.1f}x faster")


if __name__ == "__main__":
    main()
