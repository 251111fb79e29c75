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
status -> exception mapping), _spawn (worker command and main module),
_reduction (what can be sent), _wire (frames and result decoding),
executor (Executor and Future), pool (Pool and AsyncResult).
"""

from ._errors import ForkedError, PoolClosed, PoolDead, RemoteError, ShmexecError, WorkerCrashed, WorkerStartError
from ._lib import LIBRARY_PATH, get_include, get_library, version
from .executor import Executor, Future
from .pool import AsyncResult, Pool


__all__ = [
    "Executor",
    "Future",
    "Pool",
    "AsyncResult",
    "ShmexecError",
    "ForkedError",
    "PoolClosed",
    "PoolDead",
    "RemoteError",
    "WorkerCrashed",
    "WorkerStartError",
    "LIBRARY_PATH",
    "get_include",
    "get_library",
    "version",
]
