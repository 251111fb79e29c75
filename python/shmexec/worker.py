"""The worker process of a shmexec pool: `python -m shmexec.worker`,
started by the pool (never by hand). It runs calls that arrive as pickled
(function, args, kwargs) and sends back pickled outcomes."""

import ctypes
import itertools
import os
import sys

from . import _lib, _spawn, _views, _wire


# Functions named by call frames, by key: a worker unpickles each once.
_functions = _wire.FUNCTIONS


def _run_call(payload, views=None):
    """Runs the call or the map's batch of a frame (payload, a view that
    may be longer than the frame: marshal and pickle stop where it ends)
    and returns its outcome as framed parts. views: for _wire.loads
    (large arrays read in place)."""
    try:
        tag = payload[3] if len(payload) > 4 else None  # a frame's kind (_wire), tested inline: the hot path
        if tag == _PLAIN_CALL:
            fn, args, kwargs = _wire.loads_plain_call(payload[4:], _functions)
            return _wire.dumps_value(fn(*args, **kwargs), fn)
        if tag == _PLAIN_BATCH:
            fn, kind, items = _wire.loads_plain_batch(payload[4:], _functions)
            return _run_batch(fn, kind, items)
        if _wire.is_call(payload):
            fn, args, kwargs = _wire.loads_call(payload, _functions)
            return _wire.dumps_value(fn(*args, **kwargs), fn)
        kind, fn, items = _wire.loads(payload, views)
        if kind == "call":
            args, kwargs = items
            return _wire.dumps_result(("ok", fn(*args, **kwargs)), fn)
        return _run_batch(fn, kind, items)
    except BaseException as e:  # noqa: B902
        try:
            return _wire.dumps_parts(_wire.error_outcome(e))
        except BaseException as e2:  # noqa: B902
            return _wire.dumps_parts(("err", None, type(e2).__qualname__, str(e2), ""))


_PLAIN_CALL, _PLAIN_BATCH = _wire.PLAIN_CALL, _wire.PLAIN_BATCH


def _run_batch(fn, kind, items):
    """A batch: one value per item ("batch1": one argument each, "batch":
    an argument tuple each), a Failure for an item that raised, and
    whether any did. Each item runs once: after a failure the same
    iterator goes on with the next item."""
    it = iter(items)
    outs, failed = [], False
    while True:
        try:
            outs.extend(itertools.starmap(fn, it) if kind == "batch" else map(fn, it))
            break
        except BaseException as e:  # noqa: B902 - a task's exception ends that item only
            outs.append(_wire.Failure(_wire.error_outcome(e)))
            failed = True
    return _wire.dumps_batch_result(failed, outs, fn)


def _run_named(handlers, name, payload):
    """Runs a raw-bytes handler: a function of the --handlers module that
    takes the input bytes and returns bytes (str is encoded as UTF-8).
    Returns (parts, total, error): error is (type, message) on failure."""
    fn = getattr(handlers, name, None) if handlers is not None and not name.startswith("_") else None
    if not callable(fn):
        where = f"module {handlers.__name__}" if handlers is not None else "this worker (start it with --handlers MODULE)"
        return [], 0, ("UnknownHandler", f"no handler {name!r} in {where}")
    try:
        out = fn(bytes(payload))
        if isinstance(out, str):
            out = out.encode()
        out = memoryview(b"" if out is None else out).cast("B")
        return [out], out.nbytes, None
    except BaseException as e:  # noqa: B902 - a task's exception ends that task only
        return [], 0, (type(e).__qualname__, str(e))


def _forget_handshake():
    """shmx_worker_open has taken the pool's handshake out of the process's
    environment, so that a program a task runs does not take itself for
    this pool's worker; os.environ, a copy made at start-up (and what
    subprocess's env=dict(os.environ) passes on), forgets it too."""
    getenv = ctypes.CDLL(None).getenv
    getenv.restype, getenv.argtypes = ctypes.c_char_p, [ctypes.c_char_p]
    for k in [k for k in os.environ if k.startswith("SHMEXEC_")]:
        if getenv(os.fsencode(k)) is None:
            del os.environ[k]


def _keep_freed_memory():
    """glibc serves each allocation of 32 MiB and more with its own mmap
    and unmaps it when it is freed, so every large bytes object a worker
    builds (a task's argument, its result) faults in fresh pages: for
    64 MiB, about half of an echo's time. A worker instead takes large
    blocks from its heap and keeps up to _KEEP freed at the heap's top, so
    that the next large task reuses pages it has touched, and returns what
    it keeps to the system once it has been idle for a wait slice (one
    second): the function returned, malloc_trim. Not done, and None
    returned, where the C library is not glibc or where the environment
    tunes glibc's malloc itself (GLIBC_TUNABLES naming glibc.malloc, or a
    MALLOC_*_ variable): those settings stand."""
    env = os.environ
    if "glibc.malloc." in env.get("GLIBC_TUNABLES", "") or any(k.startswith("MALLOC_") and k.endswith("_") for k in env):
        return None
    try:
        libc = ctypes.CDLL(None)
        mallopt, trim = libc.mallopt, libc.malloc_trim
        trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    # M_TRIM_THRESHOLD first: with only M_MMAP_MAX set, the first large
    # free would hand its pages back at once (the threshold is 128 KiB).
    if mallopt(_M_TRIM_THRESHOLD, _KEEP) != 1 or mallopt(_M_MMAP_MAX, 0) != 1:
        return None
    return lambda: trim(0)


# glibc's malloc.h; _KEEP bounds what a busy worker holds freed.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_KEEP = 256 << 20


def _default_signals():
    """Signals that kill a process by default kill this worker too, with
    that signal, so that the task it ran ends WorkerCrashed with it:
    Python turns SIGINT into KeyboardInterrupt and ignores SIGXFSZ
    (shmx_worker_open has put handlers on the faults and SIGPIPE that
    raise them again with their default action)."""
    import signal

    for sig in (signal.SIGINT, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)


def main(argv=None):
    """argv: [--handlers MODULE] [--prep]: --prep, a Python pool's worker,
    whose preparation data (_spawn.Preparation) is in the last descriptor
    the pool passed. Jobs for the
    handler "py" are pickled calls; any other handler name is a function of
    MODULE that maps input bytes to output bytes, so that C and Go clients
    can call Python code (for example through `shmexec serve`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    handlers = None
    if argv[:1] == ["--handlers"] and len(argv) > 1:
        import importlib

        try:
            handlers = importlib.import_module(argv[1])
        except BaseException as e:  # noqa: B902
            sys.stderr.write(f"shmexec worker: cannot import the handlers module {argv[1]}: {type(e).__name__}: {e}\n")
            return 3
        del argv[:2]
    lib, _ = _lib.load()
    w = ctypes.c_void_p()
    if lib.shmx_worker_open(ctypes.byref(w)) != _lib.SHMX_OK:
        sys.stderr.write("shmexec.worker is a pool worker: a pool starts it. There is nothing to do when it is run by hand.\n")
        return 2
    _forget_handshake()
    _default_signals()
    trim = _keep_freed_memory()  # before the main module and the initializer, which may set their own
    prep = _spawn.read_preparation() if argv[:1] == ["--prep"] else {"main": "", "init": b""}
    init_blob = prep["init"]
    slot = ctypes.c_uint32()
    _spawn.join_multiprocessing(slot.value if lib.shmx_worker_slot(w, ctypes.byref(slot)) == _lib.SHMX_OK else None)
    _spawn.load_main(prep["main"])
    if init_blob:
        try:
            fn, args = _wire.loads(init_blob)
            fn(*args)
        except BaseException as e:  # noqa: B902
            sys.stderr.write(f"shmexec worker: initializer failed: {type(e).__name__}: {e}\n")
            return 3
    # A small input arrives in this buffer, where it is read as a view,
    # without a ctypes call (string_at costs as much as a short task).
    inbuf = (ctypes.c_char * _wire.BIG)()
    inview = memoryview(inbuf).cast("B")
    lib.shmx_worker_input_buffer(w, inbuf, _wire.BIG - 1)
    lib.shmx_worker_ready(w)
    task = _lib.Task()
    ref = ctypes.byref(task)
    # The two calls of every task, without argtypes: their arguments are
    # C values already, and converting them through argtypes costs more
    # than the C call itself.
    next_task, reply_next = lib["shmx_worker_next"], lib["shmx_task_reply_next"]
    big, huge, c_size = _wire.BIG, _wire.HUGE, ctypes.c_size_t
    slice_ns = ctypes.c_int64(1_000_000_000)
    trimmed = True
    rc = next_task(w, slice_ns, ref)
    while True:
        if rc == _lib.SHMX_ETIMEDOUT:
            if not trimmed and trim is not None:
                trim()  # idle for a slice: what the heap keeps goes back
            trimmed = True
            rc = next_task(w, slice_ns, ref)
            continue
        trimmed = False
        if rc == _lib.SHMX_ECLOSED:
            return 0
        if rc != _lib.SHMX_OK:
            sys.stderr.write(f"shmexec worker: next: {lib.shmx_strerror(rc).decode()}\n")
            return 4
        n, handler, err, views = task.in_len, task.handler, None, None
        if n >= big:  # a view of the segment: its buffers are copied once, where they land
            payload = _wire.view_at(task.input, n)
        else:  # in inbuf, until the next task
            payload = inview[:n]
        if handler == b"py":
            # Arrays of HUGE bytes and more are mapped, not copied.
            views = _views.InputViews(lib, w, ref) if n >= huge else None
            parts, total = _run_call(payload, views)
        else:
            parts, total, err = _run_named(handlers, handler.decode(errors="replace"), payload)
        del payload
        if err is None and total < big and views is None:
            # Copied once, into shared memory, as the task ends; and back
            # to waiting for the next task in the same call.
            out = _wire.join(parts) if total else b""
            rc = reply_next(w, ref, out, c_size(len(out)), slice_ns, ref)
            continue
        if err is None:
            # Straight into shared memory: the output needs no other copy.
            addr = lib.shmx_output_alloc(task.out, total)
            if addr:
                _wire.write_parts(parts, addr)
            else:
                err = ("ResultTooLarge", f"the task's result, {total} bytes pickled, is larger than the pool's max_payload "
                                         "(a pool made with a larger max_payload= takes it)")
        del parts
        if views is not None:
            # Before the reply, which frees the input's pages: what still
            # holds a view of them gets private copies.
            try:
                views.close()
            except MemoryError as e:
                err = ("MemoryError", str(e))
        if err is not None:
            lib.shmx_output_error(task.out, err[0].encode(), err[1].encode(errors="replace"))
        lib.shmx_task_done(w, ref, 0 if err is None else 1)
        rc = next_task(w, slice_ns, ref)


if __name__ == "__main__":
    sys.exit(main())
