"""`python -m shmexec.bench`: shmexec beside multiprocessing.Pool and
ProcessPoolExecutor, measured in the same run, printed as ratios.

    python -m shmexec.bench [--quick] [--json] [--peers | --dask | --startup | --tails]

--json prints every figure as one JSON object (for `shmexec bench`).
--peers measures every importable pool (loky, pebble, billiard, mpire
beside multiprocessing and ProcessPoolExecutor) with the same tasks,
instead; --dask, a Dask worker's threads beside a shmexec executor in it
(shmexec.dask; needs distributed); --startup, how long a short script
that makes a pool takes, beside multiprocessing's and loky's; --tails,
the tail of one worker's round trips apart from the CPU time a
hypervisor steals.
"""

import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import sys
import threading
import time

import shmexec


def noop(x=None):
    return x


def echo(b):
    return b


def echo_where(b):
    """echo, and the pid of the worker that ran it (_warm_every_worker)."""
    return os.getpid(), b


def _warm_every_worker(call, workers=2, most=4):
    """Calls call(), an echo_where of a payload, until each of the pool's
    workers has answered one (at most `most` calls): a worker's first
    touch of the pool's shared pages for a payload that size costs a page
    fault per 4 KiB, once (about 18,000 for 64 MiB), which is not what is
    measured. Calls one after the other can all reach the worker that
    answered last, and calls at once the only one started yet."""
    seen = set()
    for _ in range(most):
        seen.add(call()[0])
        if len(seen) >= workers:
            return


# Calls of a few items (measure's "small"), by what a Pool is asked.
SMALL_CALLS = {
    "map of 10": lambda p: p.map(noop, range(10)),
    "map of 1000": lambda p: p.map(noop, range(1000)),
    "starmap of 10": lambda p: p.starmap(noop, [(i,) for i in range(10)]),
    "map_async of 10, get()": lambda p: p.map_async(noop, range(10)).get(),
    "imap of 10": lambda p: list(p.imap(noop, range(10))),
    "imap_unordered of 10": lambda p: list(p.imap_unordered(noop, range(10))),
}

# Many tiny tasks one at a time (measure's "streams"), as a program that
# keeps multiprocessing's default chunksize of 1 sends them: n items each.
STREAM_CALLS = {
    "imap": lambda p, n: list(p.imap(noop, range(n))),
    "imap_unordered": lambda p, n: list(p.imap_unordered(noop, range(n))),
    "map_async, chunksize=1, get()": lambda p, n: p.map_async(noop, range(n), chunksize=1).get(),
    "apply_async, then get() each": lambda p, n: [r.get() for r in [p.apply_async(noop, (i,)) for i in range(n)]],
    "apply_async(callback=), then wait() each": lambda p, n: _with_callbacks(p, n),
}


def _with_callbacks(p, n):
    out = []
    for r in [p.apply_async(noop, (i,), callback=out.append) for i in range(n)]:
        r.wait()
    return out


# A task that outlasts every caller's spin (100 us), so that what a pool
# adds to it includes waking the caller: its own clock, busy, not asleep.
WORK = 1e-3


def work(_=None):
    end = time.perf_counter() + WORK
    while time.perf_counter() < end:
        pass


# A lambda has no importable name: it travels by value (cloudpickle),
# pickled once, beside noop, which travels by reference.
noop_by_value = lambda x=None: x  # noqa: E731


def _cpu_jiffies():
    """(all, steal): this machine's CPU time so far, in clock ticks, from
    /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal (guest time is in user already)
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


def steal_share(before, after):
    """The share of CPU time the hypervisor gave to others between two
    _cpu_jiffies (on a VM, stolen time stalls whatever runs, and shows
    as tail latency); None where unknown."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    return (after[1] - before[1]) / (after[0] - before[0])


def _percentiles(lat):
    """p50, p99 and p99.9 of sorted latencies."""
    return {"p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99)], "p999": lat[min(len(lat) - 1, int(len(lat) * 0.999))]}


def _latencies(calls, n, rounds=10):
    """Round-trip percentiles of each call, measured in alternating rounds
    (n calls each in all), so that every call sees the same machine: a
    burst of other work on a 2-core machine hits them all alike. Each
    figure carries the share of CPU time stolen meanwhile (steal), and
    "quiet": the percentiles of the call's rounds during which /proc/stat
    counted no stolen time (with how many there were; None if none)."""
    before = _cpu_jiffies()
    lats = [[] for _ in calls]
    quiet = [[] for _ in calls]
    quiet_rounds = [0] * len(calls)
    per = max(1, n // rounds)
    for _ in range(rounds):
        for i, call in enumerate(calls):
            lat, start = [], _cpu_jiffies()
            for _ in range(per):
                t = time.perf_counter()
                call()
                lat.append(time.perf_counter() - t)
            end = _cpu_jiffies()
            lats[i] += lat
            if start is not None and end is not None and end[1] == start[1]:
                quiet[i] += lat
                quiet_rounds[i] += 1
    steal = steal_share(before, _cpu_jiffies())
    out = []
    for lat, q, k in zip(lats, quiet, quiet_rounds):
        lat.sort()
        q.sort()
        out.append(dict(_percentiles(lat), steal=steal, quiet=dict(_percentiles(q), rounds=k, of=rounds) if q else None))
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
            cf.ProcessPoolExecutor(2, mp_context=ctx) as ppe, shmexec.Pool(1) as sp1:
        # Every worker started and idle before anything is timed: spawned
        # workers import for a while, and would steal the CPU from
        # whatever is measured first.
        list(ppe.map(noop, range(20)))
        pool.map(noop, range(20), chunksize=1)
        for warm in (ex.submit(noop).result, lambda: sp.apply(noop), lambda: sp.apply(noop_by_value), lambda: pool.apply(noop),
                     ppe.submit(noop).result, lambda: sp1.apply(noop)):
            for _ in range(50):
                warm()
        time.sleep(0.5)
        # pool_apply_1: the tail of a pool of one worker, which no other
        # worker can cover for.
        r["pool_apply"], r["mp_apply"], r["apply"], r["ppe_submit"], r["pool_apply_by_value"], r["pool_apply_1"] = _latencies(
            [lambda: sp.apply(noop), lambda: pool.apply(noop), lambda: ex.submit(noop).result(), lambda: ppe.submit(noop).result(),
             lambda: sp.apply(noop_by_value), lambda: sp1.apply(noop)], n_rt)

        # What each pool adds to a task of WORK seconds (the round trip
        # less WORK): the caller has stopped spinning by the time the
        # result comes, and sleeps.
        work_lats = _latencies([lambda: sp.apply(work), lambda: pool.apply(work), lambda: ex.submit(work).result()],
                               20 if quick else 300)
        for k, lat in zip(("pool_apply_work", "mp_apply_work", "apply_work"), work_lats):
            r[k] = {q: lat[q] - WORK for q in ("p50", "p99")}
        # apply_async().get(): the same call through an AsyncResult
        r["pool_apply_async"], r["mp_apply_async"] = _latencies([lambda: sp.apply_async(noop).get(), lambda: pool.apply_async(noop).get()],
                                                                200 if quick else 2000)

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

        # the small calls a program makes every day: each figure the
        # median of alternating rounds of 20 calls, per call
        r["small"] = {}
        for name, call in SMALL_CALLS.items():
            ours, theirs = _alternating([lambda: [call(sp) for _ in range(20)], lambda: [call(pool) for _ in range(20)]], reps)
            r["small"][name] = {"shmexec": ours / 20, "mp": theirs / 20}
        n_stream = 300 if quick else 2000
        r["streams"] = {"n": n_stream}
        for name, call in STREAM_CALLS.items():
            ours, theirs = _alternating([lambda: call(sp, n_stream), lambda: call(pool, n_stream)], reps)
            r["streams"][name] = {"shmexec": ours / n_stream, "mp": theirs / n_stream}

        r["echo"] = {}
        for size in sizes:
            data = b"x" * size
            reps = max(2 if quick else 5, min(200, (8 << 20) // size))
            ours = theirs = float("inf")
            _warm_every_worker(lambda: ex.submit(echo_where, data).result())
            _warm_every_worker(lambda: pool.apply(echo_where, (data,)))
            for _ in range(reps):  # alternately, so that both see the same machine
                ours = min(ours, _timed(lambda: ex.submit(echo, data).result()))
                theirs = min(theirs, _timed(lambda: pool.apply(echo, (data,))))
            r["echo"][str(size)] = {"shmexec": ours, "mp_apply": theirs}
    return r


def measure_peers(quick=False):
    """Every importable pool (shmexec's two, multiprocessing's, and the
    peers of _peers) with the same tasks in one run, 2 workers each: apply
    round-trip percentiles, a map of tiny tasks over a list, a 64 MiB
    `bytes` echo and a 64 MiB numpy echo (where numpy is installed). Each
    figure is the median of alternating rounds, all pools alive at once
    (the idle ones sleep), so that each round sees the same machine."""
    from . import _peers

    try:
        import numpy
    except ImportError:
        numpy = None
    n_rt, n_map, size, rounds = (200, 10_000, 4 << 20, 3) if quick else (3000, 100_000, 64 << 20, 5)
    pools = []
    try:
        for _name, make in _peers.available():
            pools.append(make())
        for p in pools:  # every worker started and idle before anything is timed
            p.map(noop, list(range(20)))
            for _ in range(20):
                p.apply(noop, None)
        time.sleep(0.5)
        lats = _latencies([lambda p=p: p.apply(noop, None) for p in pools], n_rt, rounds=rounds)
        work_lats = _latencies([lambda p=p: p.apply(work, None) for p in pools], 20 if quick else 150, rounds=rounds)
        items = list(range(n_map))
        maps = _alternating([lambda p=p: p.map(noop, items[: int(n_map * p.map_scale)]) for p in pools], rounds)
        data = b"x" * size
        for p in pools:
            _warm_every_worker(lambda: p.apply(echo_where, data))
        echo_bytes = _alternating([lambda p=p: p.apply(echo, data) for p in pools], rounds)
        echo_np = [None] * len(pools)
        if numpy is not None:
            arr = numpy.ones(size // 8)
            for p in pools:
                _warm_every_worker(lambda: p.apply(echo_where, arr))
            echo_np = _alternating([lambda p=p: p.apply(echo, arr) for p in pools], rounds)
    finally:
        for p in pools:
            p.close()
    return {"n_roundtrip": n_rt, "n_map": n_map, "echo_size": size, "rounds": rounds, "steal": lats[0]["steal"] if lats else None, "pools": {
        p.name: {"apply_p50": lat["p50"], "apply_p99": lat["p99"], "work_p50": wl["p50"] - WORK, "map": m / p.map_scale,
                 "map_scaled": p.map_scale != 1.0, "echo_bytes": eb, "echo_numpy": en}
        for p, lat, wl, m, eb, en in zip(pools, lats, work_lats, maps, echo_bytes, echo_np)}}


def report_peers(r):
    size = r["echo_size"]
    unit = f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"
    print(f"\nEvery pool, 2 workers, the same tasks, median of {r['rounds']} alternating rounds"
          f" (x: how many times multiprocessing.Pool's time):")
    print(f"| pool | apply p50 | apply p99 | {WORK * 1e3:g} ms task, time over it p50 | map of {r['n_map']:,} tiny tasks |"
          f" {unit} bytes echo | {unit} numpy echo |")
    print("|---|---|---|---|---|---|---|")
    base = r["pools"]["multiprocessing.Pool"]

    def cell(v, b, unit_s=1e3, fmt="{:.1f} ms"):
        if v is None:
            return "-"
        return (fmt.format(v * unit_s)) + (f" ({b / v:.2g}x)" if b else "")

    for name, f in r["pools"].items():
        print(f"| {name} | {cell(f['apply_p50'], base['apply_p50'], 1e6, '{:.1f} us')} | {cell(f['apply_p99'], base['apply_p99'], 1e6, '{:.0f} us')}"
              f" | {cell(f.get('work_p50'), base.get('work_p50'), 1e6, '{:.0f} us')}"
              f" | {cell(f['map'], base['map'])}{' (1/10 run, x10)' if f['map_scaled'] else ''} | {cell(f['echo_bytes'], base['echo_bytes'])}"
              f" | {cell(f['echo_numpy'], base['echo_numpy'])} |")
    if r.get("steal") is not None:
        print(f"\nCPU time stolen by the hypervisor while the applies were timed: {r['steal'] * 100:.1f}% (it sets the p99s)")


# Short scripts create pools often: each program below is run as a fresh
# interpreter; "pass" is the interpreter's own start.
_STARTUP = {
    "python -c pass": "pass",
    "import shmexec": "import shmexec",
    "shmexec.Pool(2), first result, close": "import shmexec\nwith shmexec.Pool(2) as p: p.apply(abs, (-1,))",
    "multiprocessing spawn Pool(2), first result, close":
        "import multiprocessing as mp\nif __name__ == '__main__':\n    with mp.get_context('spawn').Pool(2) as p: p.apply(abs, (-1,))",
    "multiprocessing fork Pool(2), first result, close":
        "import multiprocessing as mp\nif __name__ == '__main__':\n    with mp.get_context('fork').Pool(2) as p: p.apply(abs, (-1,))",
    "loky executor(2), first result, shutdown":
        "import loky\nif __name__ == '__main__':\n    with loky.ProcessPoolExecutor(2) as ex: ex.submit(abs, -1).result()",
}


def measure_startup(quick=False):
    """Wall time of each _STARTUP program in a fresh interpreter, the
    median of alternating rounds (loky's only where it is importable)."""
    import importlib.util
    import subprocess

    import compileall
    import os

    # The standard library's modules are compiled already; this package's
    # are too once pip has installed it, but not in a checkout run with
    # PYTHONDONTWRITEBYTECODE (9 modules compiled again by every process
    # cost it ~15 ms). Compiled here, where the folder is writable.
    compileall.compile_dir(os.path.dirname(os.path.abspath(shmexec.__file__)), quiet=2)
    progs = {k: v for k, v in _STARTUP.items() if "loky" not in k or importlib.util.find_spec("loky")}
    rounds = 3 if quick else 9
    times = {k: [] for k in progs}
    for _ in range(rounds):
        for k, code in progs.items():
            # A blocking wait, with the deadline on a timer: subprocess's
            # wait with a timeout polls, in sleeps that grow to 50 ms,
            # and would round each time up to its next poll.
            t = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-c", code])
            deadline = threading.Timer(120, proc.kill)
            deadline.start()
            rc = proc.wait()
            elapsed = time.perf_counter() - t
            deadline.cancel()
            if rc != 0:
                raise RuntimeError(f"start-up program {k!r} exited with status {rc}")
            times[k].append(elapsed)
    return {"rounds": rounds, "startup": {k: sorted(v)[len(v) // 2] for k, v in times.items()}}


def measure_tails(quick=False):
    """Pool.apply round trips on one worker in short bursts after pauses,
    each burst filed by whether /proc/stat counted any stolen CPU time
    during it: the tail of the pool itself, and the tail a hypervisor
    adds (a VM whose host steals time stalls round trips for
    milliseconds). Percentiles in seconds; a group with no burst is
    None."""
    bursts, per, pause = (6, 500, 0.1) if quick else (30, 3000, 0.3)
    groups = {"no_steal": [], "steal": []}
    counted = {"no_steal": 0, "steal": 0}
    with shmexec.Pool(1) as p:
        for _ in range(200):
            p.apply(noop)
        for _ in range(bursts):
            time.sleep(pause)  # lets a host's quota refill, as between the calls of a short script
            before, lat = _cpu_jiffies(), []
            for _ in range(per):
                t = time.perf_counter()
                p.apply(noop)
                lat.append(time.perf_counter() - t)
            after = _cpu_jiffies()
            key = "steal" if before is None or after is None or after[1] != before[1] else "no_steal"
            groups[key].extend(lat)
            counted[key] += 1
    out = {"bursts": bursts, "calls_per_burst": per}
    for key, lat in groups.items():
        lat.sort()
        out[key] = dict(_percentiles(lat), bursts=counted[key]) if lat else None
    return out


def report_tails(r):
    print(f"Pool.apply with 1 worker, {r['bursts']} bursts of {r['calls_per_burst']} calls after pauses:")
    for key, what in (("no_steal", "bursts with no CPU time stolen"), ("steal", "bursts during which the hypervisor stole CPU time")):
        g = r[key]
        if g is None:
            print(f"  {what}: none")
        else:
            print(f"  {what} ({g['bursts']}): p50 {g['p50'] * 1e6:.1f} us, p99 {g['p99'] * 1e6:.1f} us ({g['p99'] / g['p50']:.1f}x p50)")


def faster(theirs, ours):
    """How ours compares with theirs (times, lower is better): "5.2x
    faster", or for a ratio under 1 "1.3x slower" rather than "0.8x
    faster"."""
    if not ours > 0 or not theirs > 0:
        return "-"
    r = theirs / ours
    return f"{r:.1f}x faster" if r >= 1 else f"{1 / r:.1f}x slower"


def _parse(argv):
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m shmexec.bench",
        description="shmexec beside multiprocessing.Pool and ProcessPoolExecutor, measured in the same run, printed as ratios.",
    )
    ap.add_argument("--quick", action="store_true", help="fewer rounds and calls (a smoke run, not figures)")
    ap.add_argument("--json", action="store_true", help="print every figure as one JSON object (for `shmexec bench`)")
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--peers", action="store_true", help="every importable pool (loky, pebble, billiard, mpire) with the same tasks")
    what.add_argument("--dask", action="store_true", help="a Dask worker's threads beside a shmexec executor in it (needs distributed)")
    what.add_argument("--startup", action="store_true", help="how long a short script that makes a pool takes, beside multiprocessing's and loky's")
    what.add_argument("--tails", action="store_true", help="one worker's round-trip tail, apart from the CPU time a hypervisor steals")
    return ap.parse_args(argv)


def main(argv=None):
    a = _parse(sys.argv[1:] if argv is None else argv)
    if a.dask:
        from . import _dask_bench  # needs distributed

        r = _dask_bench.measure(a.quick)
        print(json.dumps(r)) if a.json else _dask_bench.report(r)
        return
    if a.startup:
        r = measure_startup(a.quick)
        if a.json:
            print(json.dumps(r))
        else:
            print(f"Start-up, a fresh interpreter each, median of {r['rounds']} alternating rounds:")
            for k, v in r["startup"].items():
                print(f"  {k}: {v * 1e3:.0f} ms")
        return
    if a.tails:
        r = measure_tails(a.quick)
        print(json.dumps(r)) if a.json else report_tails(r)
        return
    if a.peers:
        r = measure_peers(a.quick)
        print(json.dumps(r)) if a.json else report_peers(r)
        return
    r = measure(a.quick)
    if a.json:
        print(json.dumps(r))
        return
    print(f"shmexec {shmexec.version()} — Python {sys.version.split()[0]}, 2 workers each, one run")

    def row(name, ours, base):
        print(f"{name}: shmexec {ours * 1e3:.3f} ms")
        for bname, b in base.items():
            print(f"    {bname}: {b * 1e3:.3f} ms  ->  shmexec is {faster(b, ours)}")

    for q in ("p50", "p99"):
        row(f"Pool.apply round trip {q}", r["pool_apply"][q], {"multiprocessing.Pool.apply": r["mp_apply"][q]})
        row(f"Executor.submit().result() round trip {q}", r["apply"][q], {"ProcessPoolExecutor.submit().result()": r["ppe_submit"][q]})
        row(f"Pool.apply of a lambda (sent by value) round trip {q}", r["pool_apply_by_value"][q],
            {"multiprocessing.Pool.apply of a module function": r["mp_apply"][q], "shmexec Pool.apply of a module function (by reference)": r["pool_apply"][q]})
    one = r["pool_apply_1"]
    print(f"Pool.apply round trip with 1 worker: p50 {one['p50'] * 1e3:.3f} ms, p99 {one['p99'] * 1e3:.3f} ms"
          f" (p99 {one['p99'] / one['p50']:.1f}x p50)")
    if one["steal"] is not None:
        print(f"    CPU time stolen by the hypervisor while round trips were measured: {one['steal'] * 100:.1f}%"
              f" (a stolen slice stalls a round trip for milliseconds)")
    if one.get("quiet"):
        q = one["quiet"]
        print(f"    in the {q['rounds']} of {q['of']} rounds with no stolen time counted: p50 {q['p50'] * 1e3:.3f} ms,"
              f" p99 {q['p99'] * 1e3:.3f} ms (p99 {q['p99'] / q['p50']:.1f}x p50)")
    print(f"Executor.submit().result() p50 is {r['apply']['p50'] / r['pool_apply']['p50']:.2f}x Pool.apply's")
    for q in ("p50", "p99"):
        row(f"Pool.apply_async().get() round trip {q}", r["pool_apply_async"][q], {"multiprocessing.Pool.apply_async().get()": r["mp_apply_async"][q]})
    for q in ("p50", "p99"):
        row(f"Pool.apply of a {WORK * 1e3:g} ms task, time over the task {q}", r["pool_apply_work"][q],
            {"multiprocessing.Pool.apply": r["mp_apply_work"][q], "shmexec Executor.submit().result()": r["apply_work"][q]})
    row(f"Pool.map of {r['n_map']:,} tiny tasks, a range (median of alternating runs)", r["pool_map"], {"multiprocessing Pool.map (default chunksize)": r["mp_map"],
        "Pool.map chunksize=1 (1/10 run, x10)": r["mp_map_chunksize1"]})
    row(f"Pool.map of {r['n_map']:,} tiny tasks, a list", r["pool_map_list"], {"multiprocessing Pool.map (default chunksize)": r["mp_map_list"]})
    row(f"Executor.map of {r['n_map']:,} tiny tasks", r["map"], {"ProcessPoolExecutor.map": r["ppe_map"]})
    for name, t in r["small"].items():
        row(f"Pool {name}, per call (median of alternating runs)", t["shmexec"], {"multiprocessing.Pool": t["mp"]})
    streams = dict(r["streams"])
    n_stream = streams.pop("n")
    for name, t in streams.items():
        row(f"Pool {name} of {n_stream:,} tiny tasks, per task (median of alternating runs)", t["shmexec"], {"multiprocessing.Pool": t["mp"]})
    biggest = max(r["echo"], key=int)
    row(f"{int(biggest) >> 20 or int(biggest) >> 10} {'MiB' if int(biggest) >= 1 << 20 else 'KiB'} echo", r["echo"][biggest]["shmexec"],
        {"multiprocessing.Pool.apply": r["echo"][biggest]["mp_apply"]})


if __name__ == "__main__":
    main()
