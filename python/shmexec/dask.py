"""shmexec as the process executor of Dask workers.

A Dask worker runs its tasks in threads: a task that segfaults kills the
whole worker and every result it holds. With this plugin each Dask
worker gets a shmexec Executor, and the tasks given to it run in
crash-isolated worker processes on that machine: a task whose process
dies ends with WorkerCrashed (which Dask's ``retries=`` retries), one
past its timeout is killed and ends with TimeoutError, and the Dask
worker goes on with every result it held.

From the command line, on every machine::

    dask worker tcp://scheduler:8786 --preload shmexec.dask [--shmexec-processes N]
        [--shmexec-name processes] [--shmexec-default] [--shmexec-timeout S]
        [--shmexec-retries N] [--shmexec-initializer module:function]

From Python::

    client.register_plugin(shmexec.dask.ShmexecExecutor(default=True))

Tasks run in the processes when annotated, ``with
dask.annotate(executor="processes"): ...``, or all of them when the
executor is the worker's default (``default=True``, ``--shmexec-default``);
the worker's thread pool then stays available as ``executor="threads"``.

Only importable where ``distributed`` is installed; the rest of shmexec
never imports Dask. See docs/DASK.md.
"""

import importlib

import click
from distributed.diagnostics.plugin import WorkerPlugin

from .executor import Executor

__all__ = ["ShmexecExecutor", "dask_setup", "dask_teardown"]


class ShmexecExecutor(WorkerPlugin):
    """A worker plugin that gives each Dask worker a shmexec Executor,
    as ``worker.executors[name]``, and shuts it down with the worker.

    processes: worker processes per Dask worker (default: the Dask
    worker's nthreads, the number of tasks it runs at once). default:
    make it the worker's default executor too, so that every task runs in
    it (the worker's previous default stays as ``executors["threads"]``).
    timeout, retries, initializer, initargs, max_tasks_per_child: as
    shmexec.Executor's."""

    idempotent = False

    def __init__(self, name="processes", *, processes=None, default=False, timeout=None, retries=0,
                 initializer=None, initargs=(), max_tasks_per_child=None):
        if not isinstance(name, str) or not name or name in ("default", "actor", "offload"):
            raise ValueError(f"shmexec.dask: bad executor name {name!r} (not one of Dask's own)")
        if processes is not None and (type(processes) is not int or processes <= 0):
            raise ValueError(f"shmexec.dask: processes must be a positive integer, not {processes!r}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"shmexec.dask: timeout must be positive, not {timeout!r}")
        if type(retries) is not int or retries < 0:
            raise ValueError(f"shmexec.dask: retries must be a non-negative integer, not {retries!r}")
        self.name = "shmexec-" + name  # the plugin's name: one plugin per executor name
        self.executor_name = name
        self.processes = processes
        self.default = default
        self.options = dict(timeout=timeout, retries=retries, initializer=initializer, initargs=tuple(initargs),
                            max_tasks_per_child=max_tasks_per_child)
        self._executor = None
        self._replaced = None

    def setup(self, worker):
        if self.executor_name in worker.executors:
            raise ValueError(f"shmexec.dask: the worker already has an executor named {self.executor_name!r}")
        ex = Executor(self.processes or worker.state.nthreads, **self.options)
        self._executor = ex
        worker.executors[self.executor_name] = ex
        if self.default:
            self._replaced = worker.executors["default"]
            worker.executors.setdefault("threads", self._replaced)
            worker.executors["default"] = ex

    def teardown(self, worker):
        ex, self._executor = self._executor, None
        if ex is None:
            return
        if worker.executors.get(self.executor_name) is ex:
            del worker.executors[self.executor_name]
        if self.default and worker.executors.get("default") is ex:
            worker.executors["default"] = self._replaced
            if worker.executors.get("threads") is self._replaced:
                del worker.executors["threads"]
        # Tasks still queued in it end with CancelledError; running ones
        # finish (as the worker's own thread pool does at close).
        ex.shutdown(wait=True, cancel_futures=True)

    def __getstate__(self):  # sent to the workers as configuration only
        state = self.__dict__.copy()
        state["_executor"] = state["_replaced"] = None
        return state


def _load(ref):
    """The object that "module:attribute" names."""
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise click.BadParameter(f"{ref!r}: give module:function")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@click.command()
@click.option("--shmexec-name", default="processes", show_default=True, help="the executor's name, for dask.annotate(executor=...)")
@click.option("--shmexec-processes", type=click.IntRange(min=1), default=None, help="worker processes (default: the worker's nthreads)")
@click.option("--shmexec-default/--no-shmexec-default", default=False, show_default=True, help="run every task in the processes")
@click.option("--shmexec-timeout", type=click.FloatRange(min=0, min_open=True), default=None, help="seconds a task may run before its process is killed")
@click.option("--shmexec-retries", type=click.IntRange(min=0), default=0, show_default=True, help="re-runs of a task whose process died")
@click.option("--shmexec-initializer", default=None, help="module:function to run in each process at start")
async def dask_setup(worker, shmexec_name, shmexec_processes, shmexec_default, shmexec_timeout, shmexec_retries, shmexec_initializer):
    """The preload: ``dask worker ... --preload shmexec.dask``."""
    init = _load(shmexec_initializer) if shmexec_initializer else None
    plugin = ShmexecExecutor(shmexec_name, processes=shmexec_processes, default=shmexec_default,
                             timeout=shmexec_timeout, retries=shmexec_retries, initializer=init)
    await worker.plugin_add(plugin, name=plugin.name, catch_errors=False)


def dask_teardown(worker):
    """Nothing to do: the plugin's teardown shuts the executor down."""
