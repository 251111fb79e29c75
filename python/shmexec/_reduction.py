"""What can be sent to a worker, and how: checked at submit time, in the
caller, with what to do instead.

A function travels by reference (its pickle: module and qualified name)
when a worker can import it: that is cheaper and keeps the module's state.
What pickle cannot send by reference — lambdas, closures, nested
functions, functions of __main__ (a script, `python -c`, a console, a
notebook) and functions that live in no importable module, such as the
copies that frameworks deserialize — travels by value, pickled with
cloudpickle, once per function object (a weak cache). Arguments are
pickled with pickle, and with cloudpickle where pickle fails or names
something of a main module that workers do not load."""

import collections
import copyreg
import io
import pickle
import sys
import threading
import types
import weakref

from . import _spawn

_cloudpickle_module = False  # not looked for yet


def _cloudpickle():
    """cloudpickle, imported when something first needs it (most programs
    send only what pickle sends, and a worker rarely pickles a function),
    or None where it is not installed: what needs it is then refused,
    saying so."""
    global _cloudpickle_module
    if _cloudpickle_module is False:
        try:
            import cloudpickle as _cloudpickle_module
        except ImportError:
            _cloudpickle_module = None
    return _cloudpickle_module

_FUNCTION = types.FunctionType
_BUILTIN = type(len)
_MAIN = _spawn.MAIN_MODULES

# function -> (lost_main, key): keys of the functions a program sends, kept no
# longer than the functions themselves. Builtins cannot be weakly
# referenced; they live as long as their modules anyway.
_keys = weakref.WeakKeyDictionary()
_builtin_keys = {}


class SendError(TypeError, pickle.PicklingError):
    """What a task would send (its function, its arguments, its result)
    cannot be pickled: a TypeError, as shmexec has always said, and a
    pickle.PicklingError, as multiprocessing and concurrent.futures raise
    for what their pickler refuses; code written for either catches it."""


class NotSendable(TypeError):
    """An object that belongs to this process (a pool) was found in what a
    task would send to a worker."""


def refuse_pickling(obj, protocol=None):
    """__reduce_ex__ of Pool and Executor: they belong to this process."""
    raise NotSendable(f"a {type(obj).__module__}.{type(obj).__qualname__} cannot be sent to a worker")


def function_ref(fn, lost_main=False, what="function"):
    """The key that names fn in call frames (see _wire.dumps_call): its
    pickle by reference, or by value (cloudpickle) where a worker could not
    import it. None for a callable that is not a plain function: it is
    pickled with each call. Raises TypeError, at submit time, for what
    cannot be sent. lost_main: the workers do not load this program's
    main module (Engine._lost_main)."""
    t = type(fn)
    if t is _FUNCTION:
        hit = _keys.get(fn)
        if hit is not None and hit[0] is lost_main:
            return hit[1]
        key = _function_key(fn, lost_main, what)
        _keys[fn] = (lost_main, key)
        return key
    if t is _BUILTIN:
        key = _builtin_keys.get(fn)
        if key is None:
            key = _function_key(fn, lost_main, what)
            if len(_builtin_keys) < 4096:
                _builtin_keys[fn] = key
        return key
    if not callable(fn):
        raise TypeError(f"shmexec cannot call {fn!r}: it is not callable")
    return None


def check_sendable(fn, what="function", lost_main=False):
    """Raises TypeError, at submit time, for a function a worker could not
    get; returns fn. A callable that is not a plain function is checked
    by pickling it now."""
    if function_ref(fn, lost_main, what) is None:
        dumps(fn, what=f"the {what} {_name(fn)}", roots=[(fn, _root_name(fn))], lost_main=lost_main)
    return fn


def _function_key(fn, lost_main, what):
    by_value = getattr(fn, "__module__", None) in _MAIN
    if not by_value:
        try:
            return pickle.dumps(fn, protocol=5)
        except Exception as e:
            reason = e
    else:
        reason = None
    cloudpickle = _cloudpickle()
    if cloudpickle is None:
        if by_value and not lost_main:
            try:
                return pickle.dumps(fn, protocol=5)  # the worker loads __main__, as spawn does
            except Exception as e:
                reason = e
        raise SendError(
            f"shmexec cannot send the {what} {_name(fn)} to a worker: "
            + (f"{reason}. " if reason is not None else "its workers cannot import this program's __main__. ")
            + "Functions that have no importable name (lambdas, closures, functions of __main__ or of a "
            "notebook) travel by value with cloudpickle, which is not installed: pip install cloudpickle, "
            "or define the function at the top level of a module."
        ) from None
    try:
        return cloudpickle.dumps(fn, protocol=5)
    except Exception as e:
        raise SendError(f"shmexec cannot send the {what} {_name(fn)} to a worker: {explain(e, [(fn, 'the function')])}") from None


def dumps(obj, buffer_callback=None, what="the call", roots=None, to="to a worker", lost_main=False, inherit=False):
    """The pickle (protocol 5) of obj: pickle's, or cloudpickle's where
    pickle fails, or names something of this program's main module by
    reference where the workers do not load it (lost_main): a class
    defined in a console, say, which cloudpickle sends by value (a string
    "__main__" in the data only costs that second pickling). Raises
    TypeError saying what could not be sent,
    where to, and where for a pool found inside obj (roots: (object,
    name) pairs to search, named as the caller knows them; default obj
    itself). An error that an object's own __reduce__ raises is raised as
    it is. inherit: pickled with multiprocessing's reducers, under a
    _spawn.Inheritance (a pool's initializer and its arguments)."""
    def refused(e, hint=""):
        return SendError(f"shmexec cannot send {what} {to}: {explain(e, roots or [(obj, _root_name(obj))])}{hint}")

    def attempt(module, load=False):
        # The buffers of an attempt that fails are dropped, not sent
        # beside those of the one that succeeds.
        got = []
        dumper = _inheriting_dumps(module) if inherit else _forking_dumps(module, load)
        data = dumper(obj, protocol=5) if buffer_callback is None else dumper(obj, protocol=5, buffer_callback=got.append)
        if lost_main and module is pickle and (b"__main__" in data or b"__mp_main__" in data):
            raise _MainByName()
        for b in got:
            buffer_callback(b)
        return data

    try:
        return attempt(pickle)
    except NotSendable as e:
        raise refused(e) from None
    except Exception as e:
        first = e
    if not inherit and "multiprocessing.reduction" not in sys.modules:
        # multiprocessing's reducers send what plain pickle cannot (a
        # socket): loaded, and tried, only where plain pickle failed.
        try:
            return attempt(pickle, load=True)
        except NotSendable as e:
            raise refused(e) from None
        except Exception:  # noqa: B902 - first, plain pickle's, says it
            pass
    # first's traceback holds this frame, whose locals hold first: a
    # cycle, and with it obj, whose memoryviews the buffers of the failed
    # attempt still export. The garbage collector would clear such a view
    # while it is exported (a BufferError, then a crash at exit), so every
    # way out of here drops first first.
    try:
        cloudpickle = _cloudpickle()
        if cloudpickle is not None:
            try:
                return attempt(cloudpickle)
            except NotSendable as e:
                raise refused(e) from None
            except Exception as e:
                first = e  # cloudpickle's word, where it too fails
        if isinstance(first, pickle.PicklingError) or (isinstance(first, (AttributeError, TypeError)) and "pickle" in str(first)):
            hint = "" if cloudpickle is not None else " (pip install cloudpickle to send lambdas, closures and functions of __main__ by value)"
            raise refused(first, hint) from None
        raise first  # an object's own __reduce__ raised: the caller sees its error
    finally:
        first = None


_forking = {}  # module -> (the sizes of its tables, dumps): _forking_dumps's, made once for both


def _forking_table(module, reduction):
    """The dispatch table of multiprocessing's ForkingPickler for module
    (pickle or cloudpickle): the reducers registered with
    multiprocessing.reduction before module's own. For pickle a dict, in
    which the C pickler looks a type up without a Python call."""
    extra = reduction.ForkingPickler._extra_reducers
    if module is pickle:
        table = dict(copyreg.dispatch_table)
        table.update(extra)
        return table
    return collections.ChainMap(extra, module.Pickler.dispatch_table)


def _pickler_dumps(module, table, name):
    """A pickler class of module's with table for its dispatch table (a
    class attribute: pickle's C Pickler reads it as it is made), and a
    dumps that makes one a call."""
    pickler = type(name, (module.Pickler,), {"dispatch_table": table})

    def dumps(obj, protocol, buffer_callback=None):
        f = io.BytesIO()
        pickler(f, protocol, buffer_callback=buffer_callback).dump(obj)
        return f.getvalue()

    return pickler, dumps


def _forking_dumps(module, load=False):
    """module's dumps (pickle's or cloudpickle's) with the reducers of
    multiprocessing.reduction.ForkingPickler, which multiprocessing pickles
    everything it sends with: a Connection or a socket as a descriptor
    that the worker duplicates through multiprocessing's resource sharer
    (plain pickle would send a Connection as the number of a descriptor
    of this process), and what a program registers
    (multiprocessing.reduction.register). Where multiprocessing.reduction
    is not loaded nothing is registered, and this is module.dumps (load:
    loads it). The pickler is made again when a table grows (a reducer
    registered again for a type that has one is not seen)."""
    reduction = sys.modules.get("multiprocessing.reduction")
    if reduction is None:
        if not load:
            return module.dumps
        from multiprocessing import reduction
    base = copyreg.dispatch_table if module is pickle else module.Pickler.dispatch_table
    sizes = (len(reduction.ForkingPickler._extra_reducers), len(base))
    made = _forking.get(module)
    if made is not None and made[0] == sizes:
        return made[1]
    pickler, fresh = _pickler_dumps(module, _forking_table(module, reduction), "ForkingPickler")
    if module is not pickle:  # cloudpickle's pickler keeps state from one dump to the next: one a call
        _forking[module] = (sizes, fresh)
        return fresh
    local = threading.local()

    def dumps(obj, protocol, buffer_callback=None):
        # Each thread keeps one pickler of protocol 5, which costs a third
        # of making one a call; one that is in use (an object's reduction
        # that sends something itself) is not shared.
        kept = getattr(local, "kept", None)
        if protocol != 5 or buffer_callback is None or kept is False:
            return fresh(obj, protocol, buffer_callback)
        if kept is None:
            f, bufs = io.BytesIO(), []
            kept = (f, pickler(f, 5, buffer_callback=bufs.append), bufs)
        f, p, bufs = kept
        local.kept = False
        try:
            p.dump(obj)
            data = f.getvalue()
            for b in bufs:
                buffer_callback(b)
        finally:
            f.seek(0)
            f.truncate()  # the stream no longer shares data's memory
            p.clear_memo()
            bufs.clear()
            local.kept = kept
        return data

    _forking[module] = (sizes, dumps)
    return dumps


def _inheriting_dumps(module):
    """module's dumps (pickle's or cloudpickle's) with multiprocessing's
    reducers (_forking_table), as its spawn pickles what a child inherits
    (under _spawn.Inheritance): a Connection, a socket, the arena of a
    shared value as a descriptor the worker gets, rather than as the
    number of a descriptor it lacks (outside an Inheritance,
    _forking_dumps sends those through multiprocessing's resource sharer
    instead), and its locks by name."""
    from multiprocessing import reduction

    sync = sys.modules.get("multiprocessing.synchronize")  # none of its locks exists before it is imported
    locks = (sync.Lock, sync.RLock, sync.Semaphore, sync.BoundedSemaphore) if sync is not None else ()
    table = collections.ChainMap(dict.fromkeys(locks, _pickle_lock), _forking_table(module, reduction))
    return _pickler_dumps(module, table, "InheritingPickler")[1]


def _pickle_lock(lock):
    """A multiprocessing lock or semaphore, as its spawn pickles it: by the
    name of its semaphore, which a lock made with the fork context lacks
    (it is unlinked at once), so that no process but a forked child can
    open it (before Python 3.12 a worker would use its address, and
    crash)."""
    if lock._semlock.name is None:
        raise pickle.PicklingError(
            f"a multiprocessing {type(lock).__name__} made with the fork context (multiprocessing's default on Linux "
            "before Python 3.14) can only be shared with forked children; shmexec starts its workers as the spawn "
            "start method does. Make it, and the queues and shared values that hold one, with "
            "multiprocessing.get_context(\"spawn\"), or use a multiprocessing.Manager()'s")
    return lock.__reduce_ex__(5)


class _MainByName(pickle.PicklingError):
    def __init__(self):
        super().__init__("it names a class or function of __main__, which the workers cannot import: they do not "
                         "load this program's main module (a console, python -c, a notebook, or shmexec serve's workers)")


def explain(exc, roots):
    """The reason a pickling failed: for a pool (NotSendable) found under
    one of roots ((object, name) pairs), the path where it was found;
    else the error's own text."""
    path = None
    for obj, name in roots:
        path = find_pool(obj, name)
        if path is not None:
            break
    if path is not None:
        where, pool = path
        return (f"{where} is a {type(pool).__module__}.{type(pool).__qualname__}: a pool belongs to the process "
                "that made it (its workers, queues and shared memory) and cannot be pickled. Pass the task "
                "what it needs instead of the pool")
    return f"{type(exc).__name__}: {exc}"


def find_pool(root, name, limit=2000):
    """(path, pool) for the first shmexec pool or executor reachable from
    root (called name) through attributes, bound methods, closures and
    items of lists, tuples, sets and dicts, or None. Paths read like code:
    Runner.pool, args[0], kwargs['pool']."""
    from ._engine import Engine  # the types, imported late: _engine imports this module
    from .pool import Pool

    seen = set()
    todo = [(root, name)]
    while todo and len(seen) < limit:
        obj, path = todo.pop(0)
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (Engine, Pool)):
            return path, obj
        if isinstance(obj, (str, bytes, bytearray, int, float, type(None))):
            continue
        if isinstance(obj, types.MethodType):
            todo.append((obj.__self__, path if path == type(obj.__self__).__qualname__ else f"{path}.__self__"))
            continue
        if isinstance(obj, dict):
            todo.extend((v, f"{path}[{k!r}]") for k, v in list(obj.items())[:200])
            continue
        if isinstance(obj, (list, tuple, set, frozenset)):
            todo.extend((v, f"{path}[{i}]") for i, v in enumerate(list(obj)[:200]))
            continue
        if isinstance(obj, types.FunctionType):
            for cell, name in zip(obj.__closure__ or (), obj.__code__.co_freevars):
                try:
                    todo.append((cell.cell_contents, f"{path}.<closure {name}>"))
                except ValueError:
                    pass
            continue
        d = getattr(obj, "__dict__", None)
        if isinstance(d, dict):
            todo.extend((v, f"{path}.{k}") for k, v in list(d.items())[:200])
        for k in getattr(type(obj), "__slots__", ()):
            if isinstance(k, str) and hasattr(obj, k):
                todo.append((getattr(obj, k), f"{path}.{k}"))
    return None


def _root_name(root):
    if isinstance(root, types.MethodType):
        return type(root.__self__).__qualname__
    return "the object"


def call_roots(fn, args, kwargs):
    """The (object, name) pairs of a call, to search for a pool in."""
    return ([(fn, _root_name(fn) if isinstance(fn, types.MethodType) else "the function")]
            + [(a, f"args[{i}]") for i, a in enumerate(args)]
            + [(v, f"kwargs[{k!r}]") for k, v in kwargs.items()])


def _name(fn):
    return repr(getattr(fn, "__qualname__", None) or fn)
