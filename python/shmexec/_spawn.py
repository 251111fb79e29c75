"""Starting workers, as multiprocessing's spawn does: the worker command
(this interpreter, with shmexec importable from where it is loaded now),
the reference to the caller's main module that travels with it, and the
worker's side of loading that module."""

import os
import sys
import types

# True while a worker loads the caller's main module: creating a pool
# then means the script lacks its `if __name__ == "__main__":` guard.
bootstrapping = False

# In a worker: the caller's main module as load_main ran it, or None.
_main = None

# The names a program's main module goes by: __main__ where it runs,
# __mp_main__ where a worker loads it (here, as multiprocessing's spawn).
MAIN_MODULES = ("__main__", "__mp_main__")


def worker_argv(init_blob):
    """The command that starts a worker of a pool made in this process.
    init_blob: the pickled (initializer, initargs), or b"" for none."""
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    boot = (
        "import sys; sys.path[:0] = %r; from shmexec.worker import main; sys.exit(main(sys.argv[1:]))"
        % ([pkg_parent] + [p for p in sys.path if p],)
    )
    return [sys.executable, "-c", boot, main_ref(), bytes(init_blob).hex()]


def main_ref():
    """How a worker finds the caller's main module, as multiprocessing's
    spawn does: "mod:NAME" when it was run with -m, "path:FILE" for a
    script, "" when there is none to load (a console, python -c, a
    program read from standard input, or a package's __main__ like
    `python -m unittest`, whose top level must not run)."""
    m = sys.modules.get("__main__")
    spec = getattr(m, "__spec__", None)
    if spec is not None:
        name = spec.name
        if name == "__main__" or name.endswith(".__main__"):
            return ""
        return "mod:" + name
    f = getattr(m, "__file__", None)  # "<stdin>" for a program read from standard input
    return "path:" + os.path.abspath(f) if f and os.path.isfile(f) else ""


def load_main(ref):
    """In a worker: makes functions of the caller's main module (ref, from
    main_ref) importable, as the spawn start method does: runs it as
    __mp_main__ (its `if __name__ == "__main__"` block does not run) and
    aliases it as __main__. What it defined before an error stays
    available; the error is written to stderr."""
    if not ref:
        return
    kind, _, what = ref.partition(":")
    global bootstrapping
    mod = type(sys)("__mp_main__")
    try:
        if kind == "mod":
            import importlib.util

            spec = importlib.util.find_spec(what)
            code = spec.loader.get_code(what)
            mod.__file__ = spec.origin
        elif kind == "path" and os.path.exists(what):
            with open(what, "rb") as f:
                code = compile(f.read(), what, "exec")
            mod.__file__ = what
        else:
            return
        sys.modules["__mp_main__"] = sys.modules["__main__"] = mod
        global _main
        _main = mod
        bootstrapping = True
        exec(code, mod.__dict__)
    except BaseException as e:  # noqa: B902
        sys.stderr.write(f"shmexec worker: while loading the main module {what}: {type(e).__name__}: {e}\n")
    finally:
        bootstrapping = False


def own_function(fn):
    """In a worker: fn, a function that came by value, as the worker's
    own function of the same name in the caller's main module, when
    load_main ran that module and defined the name there with the same
    code. A function of __main__ travels by value (cloudpickle), and a
    function rebuilt so has a globals dict of its own; the worker's own
    has the module's, which the initializer and the module's top level
    set, as a function of the main module has under multiprocessing's
    spawn. Anything else (a lambda, a closure, a function defined under
    the `if __name__ == "__main__":` guard or redefined there) is fn as
    it came."""
    mod = _main
    if mod is None or type(fn) is not types.FunctionType or fn.__module__ not in MAIN_MODULES:
        return fn
    own = mod.__dict__.get(fn.__name__)
    if fn.__qualname__ == fn.__name__ and type(own) is types.FunctionType and own.__code__ == fn.__code__:
        return own
    return fn


def name_the_process():
    """In a worker: once multiprocessing.process is imported (by the main
    module, the initializer or a task), its current_process() is named
    ShmexecPoolWorker-<pid>, as multiprocessing's pool workers are named
    SpawnPoolWorker-<n>, not "MainProcess": code that asks whether it
    runs in the main process (`current_process().name == "MainProcess"`)
    and logging's %(processName)s then tell a worker from the caller.
    Importing multiprocessing here would cost every worker's start 5 ms,
    so a finder waits for its import instead."""
    if "multiprocessing.process" in sys.modules:
        _rename(sys.modules["multiprocessing.process"])
    else:
        sys.meta_path.insert(0, _NameOnImport())


def _rename(module):
    module.current_process().name = f"ShmexecPoolWorker-{os.getpid()}"


class _NameOnImport:
    """A meta path finder that finds nothing itself: when
    multiprocessing.process is imported, it has the module found as it
    would be, and that spec's own loader (made for this import alone)
    renames the process once the module has run; then it removes
    itself."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "multiprocessing.process":
            return None
        sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(fullname)
        run = getattr(getattr(spec, "loader", None), "exec_module", None)
        if run is not None:
            def exec_module(module):
                run(module)
                _rename(module)

            spec.loader.exec_module = exec_module
        return spec
