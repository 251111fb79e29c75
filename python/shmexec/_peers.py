"""The peers of `python -m shmexec.bench`: each process pool that is
importable here (multiprocessing and ProcessPoolExecutor always; loky,
pebble, billiard and mpire where installed), driven through one small
adapter so that every pool runs the same tasks in the same run."""

import concurrent.futures as cf
import multiprocessing as mp


class Peer:
    """A pool of 2 workers: apply(fn, arg) waits for one call; map(fn,
    items) returns the list of results. map_scale < 1 marks a pool
    whose map of tiny tasks takes seconds (one task per message): it is
    run over that fraction of the items and its time scaled up."""

    def __init__(self, name, pool, apply, map_, close, map_scale=1.0):
        self.name, self.pool, self._apply, self._map, self._close = name, pool, apply, map_, close
        self.map_scale = map_scale

    def apply(self, fn, arg):
        return self._apply(self.pool, fn, arg)

    def map(self, fn, items):
        return self._map(self.pool, fn, items)

    def close(self):
        self._close(self.pool)


def _futures(name, pool, map_scale):
    return Peer(name, pool, lambda p, f, a: p.submit(f, a).result(), lambda p, f, xs: list(p.map(f, xs)),
                lambda p: p.shutdown(), map_scale)


def _mp_like(name, pool):
    return Peer(name, pool, lambda p, f, a: p.apply(f, (a,)), lambda p, f, xs: p.map(f, xs), lambda p: (p.terminate(), p.join()))


def available(workers=2):
    """(name, make) for each pool that can be imported, in table order."""
    import shmexec

    out = [
        ("shmexec.Pool", lambda: _mp_like("shmexec.Pool", shmexec.Pool(workers))),
        ("shmexec.Executor", lambda: _futures("shmexec.Executor", shmexec.Executor(workers), 1.0)),
        ("multiprocessing.Pool", lambda: _mp_like("multiprocessing.Pool", mp.get_context("spawn").Pool(workers))),
        ("ProcessPoolExecutor", lambda: _futures("ProcessPoolExecutor", cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")), 0.1)),
    ]
    try:
        import loky
    except ImportError:
        try:
            from joblib.externals import loky  # joblib's copy
        except ImportError:
            loky = None
    if loky is not None:
        out.append(("loky", lambda: _futures("loky", loky.ProcessPoolExecutor(workers), 0.1)))
    try:
        import pebble
    except ImportError:
        pass
    else:
        out.append(("pebble", lambda: Peer("pebble", pebble.ProcessPool(max_workers=workers), lambda p, f, a: p.schedule(f, (a,)).result(),
                                           lambda p, f, xs: list(p.map(f, xs).result()), lambda p: (p.stop(), p.join()), 0.1)))
    try:
        import billiard
    except ImportError:
        pass
    else:
        out.append(("billiard", lambda: _mp_like("billiard", billiard.get_context("spawn").Pool(workers))))
    try:
        import mpire
    except ImportError:
        pass
    else:
        def make_mpire():
            # Two pools: in mpire 2.10.2 a map after an apply on the same
            # WorkerPool calls the function with an extra argument.
            pools = [mpire.WorkerPool(n_jobs=workers, start_method="spawn") for _ in range(2)]
            for p in pools:
                p.__enter__()
            return Peer("mpire", pools, lambda p, f, a: p[0].apply(f, (a,)), lambda p, f, xs: p[1].map(f, xs, progress_bar=False),
                        lambda p: [q.__exit__(None, None, None) for q in p])
        out.append(("mpire", make_mpire))
    return out
