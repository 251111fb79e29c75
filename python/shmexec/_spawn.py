"""Starting workers, as multiprocessing's spawn does: the worker command
(this interpreter, with shmexec importable from where it is loaded now),
the preparation data that every worker reads before it runs anything
(the caller's main module, sys.argv, multiprocessing's authentication
key, the parent process, the initializer, and the descriptors that
multiprocessing's objects among its arguments hold), and the worker's
side of it: loading the main module, and being a worker to
multiprocessing."""

import os
import pickle
import sys
import types

# True while a worker loads the caller's main module: creating a pool
# then means the script lacks its `if __name__ == "__main__":` guard.
bootstrapping = False

# In a worker: the caller's main module as load_main ran it, or None.
_main = None

# In a worker: (name, pid, sentinel) of the caller, read_preparation's;
# its slot in the pool, join_multiprocessing's.
_parent = _slot = None

# The authentication key of multiprocessing's managers and connections
# (current_process().authkey) that this process and its pools' workers
# share, once authkey() or read_preparation has set it.
_authkey = None

# The names a program's main module goes by: __main__ where it runs,
# __mp_main__ where a worker loads it (here, as multiprocessing's spawn).
MAIN_MODULES = ("__main__", "__mp_main__")


def worker_argv():
    """The command that starts a worker of a pool made in this process:
    --prep, its preparation data in the last descriptor the pool passes
    (Preparation)."""
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    boot = (
        "import sys; sys.path[:0] = %r; from shmexec.worker import main; sys.exit(main(sys.argv[1:]))"
        % ([pkg_parent] + [p for p in sys.path if p],)
    )
    return [sys.executable, "-c", boot, "--prep"]


class Preparation:
    """What a worker of a pool made here learns before it runs anything,
    as multiprocessing's spawn sends its preparation data down a pipe:
    the main module to load (main_ref), the caller's sys.argv, the
    authentication key of multiprocessing's managers and connections,
    its parent process (for multiprocessing.parent_process()), and the
    pickled initializer. It lives in an anonymous file that every worker
    (a respawned one too) inherits and reads from offset 0: not on the
    command line, whose arguments hold 128 KiB each and which every user
    of the machine can read.

    main: main_ref(). heirs: the Inheritance under which the initializer
    was pickled, after the program's pass_fds. fds: what every worker
    gets after those: the descriptors the initializer's arguments hold,
    the parent's sentinel, and last this file. (A memfd, as the pool's
    segment is: where there is none, there is no pool.)"""

    def __init__(self, main, init_blob, heirs):
        parent = ("MainProcess", os.getpid(), heirs.duplicate_for_child(_parent_sentinel()))
        process = sys.modules.get("multiprocessing.process")
        if process is not None:
            parent = (process.current_process().name,) + parent[1:]
        data = pickle.dumps({"main": main, "argv": list(sys.argv), "authkey": authkey(), "init": bytes(init_blob),
                             "passed": heirs.first, "parent": parent}, protocol=5)
        fd = os.memfd_create("shmexec-prep", os.MFD_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.fds = heirs.fds + [fd]

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# The read end of a pipe whose write end this process holds, unused,
# until it exits: a worker's multiprocessing.parent_process() waits on it,
# as on the sentinel multiprocessing's spawn hands a child.
_sentinel = None


def _parent_sentinel():
    global _sentinel
    if _sentinel is None:
        _sentinel = os.pipe()
    return _sentinel[0]


# In a worker: the descriptors its pool passed it, in order, as
# SHMEXEC_PASS_FDS named them before read_preparation kept only the
# program's own there.
_passed = []


class InheritedFd:
    """A descriptor a worker inherited, as multiprocessing's reduction.DupFd
    gives it: the index-th the pool passes, which detach() gives as its
    number in the worker (SHMEXEC_PASS_FDS's)."""

    def __init__(self, index):
        self.index = index

    def detach(self):
        return _passed[self.index]


class Inheritance:
    """As a context: multiprocessing's spawning Popen while a pool's
    initializer and its arguments are pickled, so that multiprocessing's
    locks, queues, pipes, shared values and sockets among them pickle as
    multiprocessing's spawn pickles them for a child it starts: a
    semaphore by its name, a descriptor as one the child inherits. Every
    worker gets those descriptors (fds) as the pool's pass_fds from index
    first on. What is pickled under it must be pickled with
    multiprocessing's reducers (_reduction.dumps(inherit=True)), which also
    refuse a lock made with the fork context, which no process but a
    forked child can open."""

    def __init__(self, first):
        self.first, self.fds = first, []
        self._context = self._before = None

    def duplicate_for_child(self, fd):
        """fd's index among the descriptors the pool passes."""
        self.fds.append(fd)
        return self.first + len(self.fds) - 1

    DupFd = InheritedFd  # reduction.DupFd: popen.DupFd(popen.duplicate_for_child(fd))

    def __enter__(self):
        # Without multiprocessing imported there is none of its objects to
        # pickle: nothing to stand for.
        self._context = sys.modules.get("multiprocessing.context")
        if self._context is not None:
            self._before = self._context.get_spawning_popen()
            self._context.set_spawning_popen(self)
        return self

    def __exit__(self, *exc):
        if self._context is not None:
            self._context.set_spawning_popen(self._before)


def read_preparation():
    """In a worker: the Preparation's data, from the last descriptor the
    pool passed, which is closed then; sets sys.argv, the authentication
    key and the parent, and keeps SHMEXEC_PASS_FDS to the program's own
    pass_fds."""
    global _passed, _authkey, _parent
    _passed = [int(fd) for fd in os.environ["SHMEXEC_PASS_FDS"].split(",")]
    fd = _passed[-1]
    chunks, off = [], 0
    while True:
        b = os.pread(fd, 1 << 20, off)
        if not b:
            break
        chunks.append(b)
        off += len(b)
    os.close(fd)
    prep = pickle.loads(b"".join(chunks))
    sys.argv[:] = prep["argv"]
    name, pid, sentinel = prep["parent"]
    _authkey, _parent = prep["authkey"], (name, pid, _passed[sentinel])
    os.set_inheritable(_passed[sentinel], False)  # as spawn's child has it (an os.dup): not a grandchild's
    os.environ["SHMEXEC_PASS_FDS"] = ",".join(map(str, _passed[:prep["passed"]]))
    return prep


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


def authkey():
    """The key a pool made here hands its workers, as multiprocessing's
    spawn hands its children the parent's: a multiprocessing.Manager's
    proxies (a Manager().Queue() passed to a task, say) then connect from
    a worker as they do from the caller. multiprocessing's own key where
    it is imported; else one made now, which becomes its key when it is
    imported (importing it costs 4 ms that a program that never uses it
    need not pay)."""
    global _authkey
    process = sys.modules.get("multiprocessing.process")
    if process is not None:
        return bytes(process.current_process().authkey)
    if _authkey is None:
        _authkey = os.urandom(32)
        when_imported(_share_authkey)
    return _authkey


def _share_authkey(process):
    process.current_process().authkey = _authkey


def join_multiprocessing(slot):
    """In a worker: makes it a child of the caller to multiprocessing, as
    its spawn makes one, once multiprocessing's modules are imported (by
    the main module, the initializer or a task). current_process() is named
    ShmexecPoolWorker-<pid>, as multiprocessing's pool workers are named
    SpawnPoolWorker-<n>, not "MainProcess": code that asks whether it
    runs in the main process (`current_process().name == "MainProcess"`,
    `parent_process() is None`) and logging's %(processName)s then tell
    a worker from the caller; parent_process() is the caller, and the
    authentication key the caller's (read_preparation); shared memory
    is not tracked (_untrack_shared_memory). Importing
    multiprocessing here would cost every worker's start 5 ms, so
    finders wait for its imports instead. slot: the worker's
    (shmx_worker_slot)."""
    global _slot
    _slot = slot
    when_imported(_as_a_worker)
    when_imported(_untrack_shared_memory, "multiprocessing.resource_tracker")


def _as_a_worker(process):
    me = process.current_process()
    me.name = f"ShmexecPoolWorker-{os.getpid()}"
    # (n,) in the n-th worker slot, from 1, as a multiprocessing pool's
    # workers are numbered: code picks a GPU or a seed by
    # current_process()._identity[0]. A replacement keeps its slot's.
    if _slot is not None:
        me._identity = (_slot + 1,)
    if _authkey is not None:
        me.authkey = _authkey
    if _parent is not None and hasattr(process, "_ParentProcess"):
        process._parent_process = process._ParentProcess(*_parent)


def _untrack_shared_memory(resource_tracker):
    """In a worker: multiprocessing's resource tracker is told of no shared
    memory, as with Python 3.13's SharedMemory(track=False). Python 3.11
    registers every SharedMemory a process attaches to, and a worker's
    own tracker would unlink the caller's segments when the worker exits.
    (multiprocessing's spawn children share the caller's tracker instead;
    a tracker ends only once every holder of its pipe has, so a caller
    that stops its tracker, as CPython's tests do, would wait for the
    pool's workers.) What a worker creates, it unlinks."""
    register, unregister = resource_tracker.register, resource_tracker.unregister

    def untracked(method):
        return lambda name, rtype: None if rtype == "shared_memory" else method(name, rtype)

    resource_tracker.register, resource_tracker.unregister = untracked(register), untracked(unregister)


def when_imported(fn, name="multiprocessing.process"):
    """fn(module) once the module name is imported: now, if it is."""
    if name in sys.modules:
        fn(sys.modules[name])
    else:
        sys.meta_path.insert(0, _OnImport(name, fn))


class _OnImport:
    """A meta path finder that finds nothing itself: when the module name
    is imported, it has the module found as it would be, and that spec's
    own loader (made for this import alone) calls fn(module) once the
    module has run; then it removes itself."""

    def __init__(self, name, fn):
        self._name, self._fn = name, fn

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self._name:
            return None
        sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(fullname)
        run = getattr(getattr(spec, "loader", None), "exec_module", None)
        if run is not None:
            fn = self._fn

            def exec_module(module):
                run(module)
                fn(module)

            spec.loader.exec_module = exec_module
        return spec
