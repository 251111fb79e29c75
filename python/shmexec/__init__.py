"""shmexec: a process pool over shared memory.

    import shmexec
    with shmexec.Executor(max_workers=4) as ex:
        print(list(ex.map(pow, [2, 3], [10, 10])))

Executor is a concurrent.futures.Executor and Pool has the interface of
multiprocessing.Pool. Workers are `python -m shmexec.worker` processes
started with exec (never fork); calls travel as pickles (protocol 5,
buffers out of band) through the shared segment. A task whose worker dies
raises WorkerCrashed; an exception that cannot be rebuilt in the caller
arrives as RemoteError; nothing hangs.

The modules, each one concern (private helpers flow one way, toward _lib):
_lib (the library, its codes, the fork flag), _errors (exceptions and the
status -> exception mapping; _crash, an Executor's WorkerCrashed that is
also a BrokenProcessPool, imported at the first crash), _spawn (worker command and main module),
_reduction (what can be sent), _wire (frames and result decoding),
_engine (the pool under both faces, without concurrent.futures),
executor (Executor and Future), pool (Pool and AsyncResult).
"""

# Each public name and the module that defines it. The package imports a
# module when one of its names is first used (PEP 562), so that `import
# shmexec` costs almost nothing, and a worker process (`python -m
# shmexec.worker`, which imports this package first) imports only what it
# runs: neither concurrent.futures nor multiprocessing.
_WHERE = {
    "Executor": "executor",
    "Future": "executor",
    "Pool": "pool",
    "AsyncResult": "pool",
    "ShmexecError": "_errors",
    "ForkedError": "_errors",
    "PoolClosed": "_errors",
    "PoolDead": "_errors",
    "RemoteError": "_errors",
    "WorkerCrashed": "_errors",
    "WorkerStartError": "_errors",
    "LIBRARY_PATH": "_lib",
    "get_include": "_lib",
    "get_library": "_lib",
    "version": "_lib",
}

__all__ = list(_WHERE)


def __getattr__(name):
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value  # found here from now on, without this call
    return value


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
