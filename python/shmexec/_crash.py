"""The exception of a task whose worker died, as shmexec.Executor raises
it: imported at the first such crash, since concurrent.futures.process
imports most of multiprocessing."""

from concurrent.futures.process import BrokenProcessPool

from ._errors import WorkerCrashed


class ExecutorWorkerCrashed(WorkerCrashed, BrokenProcessPool):
    """WorkerCrashed, and also the BrokenProcessPool that code written for
    ProcessPoolExecutor catches when a worker dies. Only the task fails:
    the executor replaces the worker and goes on (ProcessPoolExecutor's
    would be broken for good)."""
