"""`python -m shmexec.bench --dask`: a Dask worker whose tasks run in its
2 threads beside the same worker with a 2-process shmexec executor
(shmexec.dask), measured in one run on a local cluster bound to
127.0.0.1 with no dashboard. Needs distributed."""

from .bench import _alternating, faster


def cpu(n):
    """Pure-Python CPU work: holds the GIL, so 2 threads run it one at a time."""
    s = 0
    for i in range(n):
        s = (s + i * i) % 1_000_003
    return s


def tiny(x):
    return x


def _run(client, fn, args, annotation):
    import dask

    with dask.annotate(executor=annotation):
        futures = client.map(fn, args, pure=False)
    client.gather(futures)


def measure(quick=False):
    from distributed import Client, LocalCluster

    from .dask import ShmexecExecutor

    n_cpu, works = (8, [100_000]) if quick else (40, [300_000, 1_200_000])  # about 20 ms and 80 ms a task here
    n_tiny = 200 if quick else 2000
    rounds = 1 if quick else 5
    r = {"dask_workers": 1, "threads": 2, "processes": 2, "n_cpu_tasks": n_cpu, "n_tiny_tasks": n_tiny, "rounds": rounds, "cpu": {}}
    # loopback only, the HTTP servers too; no dashboard
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                      worker_dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False}) as cluster, \
            Client(cluster) as client:
        register = getattr(client, "register_plugin", None) or client.register_worker_plugin
        register(ShmexecExecutor(processes=2))
        # warm both paths: the shmexec processes import Dask's task runner once
        for ann in ("default", "processes"):
            _run(client, tiny, range(20), ann)
        for work in works:  # medians of alternating rounds, so that both see the same machine
            threads, processes = _alternating([lambda: _run(client, cpu, [work] * n_cpu, "default"),
                                               lambda: _run(client, cpu, [work] * n_cpu, "processes")], rounds)
            r["cpu"][str(work)] = {"threads": threads, "processes": processes}
        threads, processes = _alternating([lambda: _run(client, tiny, range(n_tiny), "default"),
                                           lambda: _run(client, tiny, range(n_tiny), "processes")], rounds)
    r.update(tiny_threads=threads / n_tiny, tiny_processes=processes / n_tiny)
    return r


def report(r):
    print(f"Dask: one worker, {r['threads']} threads vs a {r['processes']}-process shmexec executor (median of {r['rounds']} alternating rounds)")
    for work, c in r["cpu"].items():
        print(f"  {r['n_cpu_tasks']} CPU-bound pure-Python tasks of cpu({int(work):,}): threads {c['threads']:.3f} s,"
              f" shmexec processes {c['processes']:.3f} s  ->  shmexec is {faster(c['threads'], c['processes'])}")
    print(f"  a tiny task, per task over {r['n_tiny_tasks']}: threads {r['tiny_threads'] * 1e6:.0f} us, shmexec processes {r['tiny_processes'] * 1e6:.0f} us"
          f"  ({(r['tiny_processes'] - r['tiny_threads']) * 1e6:+.0f} us a task)")
