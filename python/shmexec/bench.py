"""`python -m shmexec.bench`: shmexec beside multiprocessing.Pool and
ProcessPoolExecutor, measured in the same run, printed as ratios.

    python -m shmexec.bench [--quick] [--json] [--dask]

--json prints every figure as one JSON object (for `shmexec bench`).
--dask measures a Dask worker's threads beside a shmexec executor in it
instead (shmexec.dask; needs distributed).
"""

import concurrent.futures as cf
import json
import multiprocessing as mp
import sys
import time

import shmexec


def noop(x=None):
    return x


def echo(b):
    return b


# A lambda has no importable name: it travels by value (cloudpickle),
# pickled once, beside noop, which travels by reference.
noop_by_value = lambda x=None: x  # noqa: E731


def _latencies(calls, n, rounds=10):
    """Round-trip percentiles of each call, measured in alternating rounds
    (n calls each in all), so that every call sees the same machine: a
    burst of other work on a 2-core machine hits them all alike."""
    lats = [[] for _ in calls]
    per = max(1, n // rounds)
    for _ in range(rounds):
        for call, lat in zip(calls, lats):
            for _ in range(per):
                t = time.perf_counter()
                call()
                lat.append(time.perf_counter() - t)
    out = []
    for lat in lats:
        lat.sort()
        out.append({"p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99)], "p999": lat[min(len(lat) - 1, int(len(lat) * 0.999))]})
    return out


def _timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def _alternating(fs, reps):
    """The median time of each function over reps alternating runs."""
    times = [[] for _ in fs]
    for _ in range(reps):
        for f, t in zip(fs, times):
            t.append(_timed(f))
    return [sorted(t)[len(t) // 2] for t in times]


def measure(quick=False):
    """Returns every figure, in seconds, keyed by what was measured. Each
    shmexec figure is taken beside its multiprocessing counterpart, in
    the same process, with the same number of workers."""
    n_rt = 200 if quick else 5000
    n_map = 10_000 if quick else 100_000
    sizes = [64, 1 << 10, 16 << 10, 256 << 10, 4 << 20] + ([] if quick else [64 << 20])
    ctx = mp.get_context("spawn")
    r = {"workers": 2, "n_roundtrip": n_rt, "n_map": n_map}
    with shmexec.Executor(max_workers=2) as ex, shmexec.Pool(2) as sp, ctx.Pool(2) as pool, \
            cf.ProcessPoolExecutor(2, mp_context=ctx) as ppe:
        # Every worker started and idle before anything is timed: spawned
        # workers import for a while, and would steal the CPU from
        # whatever is measured first.
        list(ppe.map(noop, range(20)))
        pool.map(noop, range(20), chunksize=1)
        for warm in (ex.submit(noop).result, lambda: sp.apply(noop), lambda: sp.apply(noop_by_value), lambda: pool.apply(noop),
                     ppe.submit(noop).result):
            for _ in range(50):
                warm()
        time.sleep(0.5)
        r["pool_apply"], r["mp_apply"], r["apply"], r["ppe_submit"], r["pool_apply_by_value"] = _latencies(
            [lambda: sp.apply(noop), lambda: pool.apply(noop), lambda: ex.submit(noop).result(), lambda: ppe.submit(noop).result(),
             lambda: sp.apply(noop_by_value)], n_rt)

        # map: medians of alternating runs, over a range (which both
        # pools slice as they like: shmexec sends ranges, multiprocessing
        # tuples) and over a list
        items = range(n_map)
        reps = 3 if quick else 7
        r["pool_map"], r["mp_map"] = _alternating([lambda: sp.map(noop, items), lambda: pool.map(noop, items)], reps)
        as_list = list(items)
        r["pool_map_list"], r["mp_map_list"] = _alternating([lambda: sp.map(noop, as_list), lambda: pool.map(noop, as_list)], reps)
        r["map"] = _timed(lambda: list(ex.map(noop, items)))
        r["ppe_map"] = _timed(lambda: list(ppe.map(noop, items)))
        r["mp_map_chunksize1"] = _timed(lambda: pool.map(noop, items[: n_map // 10], chunksize=1)) * 10  # 1/10 run, scaled

        r["echo"] = {}
        for size in sizes:
            data = b"x" * size
            reps = max(2 if quick else 5, min(200, (8 << 20) // size))
            ours = theirs = float("inf")
            # Untimed first: two calls each, so that both workers of each
            # pool have run one (a worker's first touch of the pool's
            # shared pages for a payload this size costs a page fault per
            # 4 KiB, once: 64 MiB took 100-250 ms more the first time).
            for _ in range(2):
                ex.submit(echo, data).result()
                pool.apply(echo, (data,))
            for _ in range(reps):  # alternately, so that both see the same machine
                ours = min(ours, _timed(lambda: ex.submit(echo, data).result()))
                theirs = min(theirs, _timed(lambda: pool.apply(echo, (data,))))
            r["echo"][str(size)] = {"shmexec": ours, "mp_apply": theirs}
    return r


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--dask" in argv:
        from . import _dask_bench  # needs distributed

        r = _dask_bench.measure("--quick" in argv)
        print(json.dumps(r)) if "--json" in argv else _dask_bench.report(r)
        return
    r = measure("--quick" in argv)
    if "--json" in argv:
        print(json.dumps(r))
        return
    print(f"shmexec {shmexec.version()} — Python {sys.version.split()[0]}, 2 workers each, one run")

    def row(name, ours, base):
        print(f"{name}: shmexec {ours * 1e3:.3f} ms")
        for bname, b in base.items():
            print(f"    {bname}: {b * 1e3:.3f} ms  ->  shmexec is {b / ours:.1f}x faster")

    for q in ("p50", "p99"):
        row(f"Pool.apply round trip {q}", r["pool_apply"][q], {"multiprocessing.Pool.apply": r["mp_apply"][q]})
        row(f"Executor.submit().result() round trip {q}", r["apply"][q], {"ProcessPoolExecutor.submit().result()": r["ppe_submit"][q]})
        row(f"Pool.apply of a lambda (sent by value) round trip {q}", r["pool_apply_by_value"][q],
            {"multiprocessing.Pool.apply of a module function": r["mp_apply"][q], "shmexec Pool.apply of a module function (by reference)": r["pool_apply"][q]})
    row(f"Pool.map of {r['n_map']:,} tiny tasks, a range (median of alternating runs)", r["pool_map"], {"multiprocessing Pool.map (default chunksize)": r["mp_map"],
        "Pool.map chunksize=1 (1/10 run, x10)": r["mp_map_chunksize1"]})
    row(f"Pool.map of {r['n_map']:,} tiny tasks, a list", r["pool_map_list"], {"multiprocessing Pool.map (default chunksize)": r["mp_map_list"]})
    row(f"Executor.map of {r['n_map']:,} tiny tasks", r["map"], {"ProcessPoolExecutor.map": r["ppe_map"]})
    biggest = max(r["echo"], key=int)
    row(f"{int(biggest) >> 20 or int(biggest) >> 10} {'MiB' if int(biggest) >= 1 << 20 else 'KiB'} echo", r["echo"][biggest]["shmexec"],
        {"multiprocessing.Pool.apply": r["echo"][biggest]["mp_apply"]})


if __name__ == "__main__":
    main()
