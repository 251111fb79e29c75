"""ctypes bindings of libshmexec (include/shmexec.h is the contract): the
library, loaded once per process, its status codes and structs, and the
fork flag that every call checks first."""

import ctypes
import os
import threading

SHMX_OK = 0
SHMX_EINVAL = -1
SHMX_ETIMEDOUT = -2
SHMX_EFULL = -3
SHMX_ECLOSED = -4
SHMX_EHANDLER = -5
SHMX_EWORKER_CRASHED = -6
SHMX_ECANCELLED = -7
SHMX_EUNKNOWN_HANDLER = -8
SHMX_ETOO_LARGE = -9
SHMX_EFORKED = -10
SHMX_EPOOL_DEAD = -11
SHMX_ENOMEM = -12
SHMX_ESYS = -13
SHMX_EWORKER_START = -14
SHMX_EINTR = -15


class PoolConfig(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("workers", ctypes.c_uint32),
        ("worker_argv", ctypes.POINTER(ctypes.c_char_p)),
        ("queue_depth", ctypes.c_uint32),
        ("max_payload", ctypes.c_uint64),
        ("max_tasks_per_worker", ctypes.c_uint32),
        ("retries", ctypes.c_uint32),
        ("job_timeout_ns", ctypes.c_int64),
        ("pass_fds", ctypes.POINTER(ctypes.c_int)),
        ("n_pass_fds", ctypes.c_uint32),
        ("ready_workers", ctypes.c_uint32),
    ]


class Result(ctypes.Structure):
    _fields_ = [
        ("status", ctypes.c_int),
        ("data", ctypes.c_void_p),
        ("len", ctypes.c_size_t),
        ("error", ctypes.c_char_p),
        ("worker_pid", ctypes.c_int32),
        ("signal", ctypes.c_int32),
        ("exit_code", ctypes.c_int32),
    ]


class Stats(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("page_size", ctypes.c_uint32),
                ("submitted", ctypes.c_uint64), ("collected", ctypes.c_uint64), ("retried", ctypes.c_uint64),
                ("worker_deaths", ctypes.c_uint64), ("respawned", ctypes.c_uint64),
                ("queued", ctypes.c_uint32), ("slots", ctypes.c_uint32), ("slots_in_use", ctypes.c_uint32),
                ("pages", ctypes.c_uint32), ("pages_in_use", ctypes.c_uint32), ("reserved", ctypes.c_uint32)]


class Buffer(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("len", ctypes.c_size_t), ("id", ctypes.c_uint64)]


class SubmitOpts(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("retries", ctypes.c_int32), ("timeout_ns", ctypes.c_int64),
                ("flags", ctypes.c_uint32), ("group", ctypes.c_uint32)]


SUBMIT_OWN_WAIT = 1
SUBMIT_NOWAIT = 2


class Task(ctypes.Structure):
    _fields_ = [
        ("handler", ctypes.c_char_p),
        ("input", ctypes.c_void_p),
        ("in_len", ctypes.c_size_t),
        ("out", ctypes.c_void_p),
        ("id", ctypes.c_uint64),
    ]


_HERE = os.path.dirname(os.path.abspath(__file__))
# A checkout: python/shmexec next to make's build/ and include/.
_CHECKOUT = os.path.normpath(os.path.join(_HERE, "..", ".."))


def find_library():
    """The path of the library this package loads: $SHMEXEC_LIB, else the
    copy bundled in the package (an installed wheel: libshmexec.so.0, named
    by its SONAME), else a checkout's
    build/libshmexec.so, else libshmexec.so.0 where the dynamic loader
    finds it (make install)."""
    env = os.environ.get("SHMEXEC_LIB")
    if env:
        return env
    for cand in (os.path.join(_HERE, "libshmexec.so.0"), os.path.join(_CHECKOUT, "build", "libshmexec.so")):
        if os.path.exists(cand):
            return os.path.normpath(cand)
    return "libshmexec.so.0"


def include_dir():
    """The folder of shmexec.h: bundled in the package, or a checkout's
    include/."""
    for cand in (os.path.join(_HERE, "include"), os.path.join(_CHECKOUT, "include")):
        if os.path.exists(os.path.join(cand, "shmexec.h")):
            return cand
    raise FileNotFoundError("shmexec: no shmexec.h next to the package (install the wheel, or use a checkout)")


def _mapped_copies():
    """The files named libshmexec.so* mapped into this process now, as
    (device, inode) -> path."""
    found = {}
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                path = parts[5].strip() if len(parts) == 6 else ""  # anonymous mappings have no path
                if os.path.basename(path).startswith("libshmexec.so"):
                    try:
                        st = os.stat(path)
                    except OSError:
                        continue
                    found[(st.st_dev, st.st_ino)] = path
    except OSError:  # no /proc: nothing to compare with
        pass
    return found


def load():
    """The library and its path, loaded on the first call (later calls
    return the same). Not at import: the library starts a Go runtime,
    whose threads a fork does not copy, so a process forked after the
    load cannot use it (forked()); one that imports shmexec, even its
    Pool, and forks before it makes a pool leaves its children free to
    make their own, as multiprocessing's Pool does."""
    global _loaded, LIB, LIBRARY_PATH, HELD
    if _loaded is not None:
        return _loaded
    with _load_lock:  # threads that make their first pools at once load it once
        if _loaded is not None:
            return _loaded
        lib, path = _load()
        # The same library (dlopen hands back the loaded copy) through
        # PyDLL, whose calls keep the GIL: for a call that never blocks, a
        # few microseconds (the feeder's submit with SUBMIT_NOWAIT).
        # Through LIB every call gives the GIL up, and with other Python
        # threads running (the caller, the collector) taking it back
        # waits for one of them to give it up in turn.
        HELD = ctypes.PyDLL(path)
        LIB, LIBRARY_PATH = lib, path
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _loaded = lib, path
    return _loaded


_loaded = None
_load_lock = threading.Lock()


def __getattr__(name):
    # LIB, HELD and LIBRARY_PATH, from the first load (then globals).
    if name in ("LIB", "HELD", "LIBRARY_PATH"):
        load()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _load():
    path = find_library()
    # Each copy of the library carries a Go runtime of its own, and two in
    # one process fight over signals and threads: refuse a second copy (a
    # checkout's and an installed one, or one a C extension loaded).
    others = _mapped_copies()
    if others:
        try:
            st = os.stat(path)
            mine = (st.st_dev, st.st_ino)
        except OSError:
            mine = None
        if mine not in others:
            raise ImportError(
                f"shmexec: this process has loaded the shmexec library from {sorted(others.values())[0]!r} already; "
                f"loading a second copy ({path!r}) would start a second Go runtime. Use one copy: "
                "set SHMEXEC_LIB to the loaded one, or import shmexec from the same installation."
            )
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        raise ImportError(
            f"shmexec: cannot load the library {path!r} ({e}); reinstall the package, run `make lib` "
            "in a checkout, or set SHMEXEC_LIB to the path of libshmexec.so"
        ) from None
    vp, i, u64, i64, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64, ctypes.c_int64, ctypes.c_size_t
    sigs = {
        "shmx_version_number": (ctypes.c_uint32, []),
        "shmx_strerror": (ctypes.c_char_p, [i]),
        "shmx_last_error": (ctypes.c_char_p, []),
        "shmx_pool_config_init": (None, [ctypes.POINTER(PoolConfig)]),
        "shmx_pool_create": (i, [ctypes.POINTER(PoolConfig), ctypes.POINTER(vp)]),
        "shmx_pool_attach": (i, [ctypes.c_char_p, ctypes.POINTER(vp)]),
        "shmx_pool_close": (i, [vp, i64]),
        "shmx_pool_terminate": (i, [vp]),
        "shmx_pool_workers": (i, [vp, ctypes.POINTER(ctypes.c_int32), sz, ctypes.POINTER(sz)]),
        "shmx_pool_stats": (i, [vp, ctypes.POINTER(Stats)]),
        "shmx_task_input_file": (i, [vp, vp, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(u64)]),
        "shmx_submit": (i, [vp, ctypes.c_char_p, vp, sz, ctypes.POINTER(u64)]),
        "shmx_try_submit": (i, [vp, ctypes.c_char_p, vp, sz, ctypes.POINTER(u64)]),
        "shmx_submit_opts_init": (None, [ctypes.POINTER(SubmitOpts)]),
        "shmx_submit_with": (i, [vp, ctypes.c_char_p, vp, sz, ctypes.POINTER(SubmitOpts), ctypes.POINTER(u64)]),
        "shmx_call": (i, [vp, ctypes.c_char_p, vp, sz, ctypes.POINTER(SubmitOpts), i64, ctypes.POINTER(u64), ctypes.POINTER(Result)]),
        "shmx_call_into": (i, [vp, ctypes.c_char_p, vp, sz, ctypes.POINTER(SubmitOpts), i64, vp, sz, ctypes.POINTER(u64), ctypes.POINTER(Result)]),
        "shmx_wait": (i, [vp, u64, i64, ctypes.POINTER(Result)]),
        "shmx_wait_into": (i, [vp, u64, i64, vp, sz, ctypes.POINTER(Result)]),
        "shmx_result_release": (None, [vp, ctypes.POINTER(Result)]),
        "shmx_results_in_place": (i, [vp, sz]),
        "shmx_cancel": (i, [vp, u64, i]),
        "shmx_forget": (i, [vp, u64]),
        "shmx_wait_any": (i, [vp, i64, ctypes.POINTER(u64)]),
        "shmx_wake_any": (i, [vp]),
        "shmx_wait_group": (i, [vp, ctypes.c_uint32, i64, ctypes.POINTER(u64)]),
        "shmx_buffer_alloc": (i, [vp, sz, ctypes.POINTER(Buffer)]),
        "shmx_buffer_try_alloc": (i, [vp, sz, ctypes.POINTER(Buffer)]),
        "shmx_submit_buffer": (i, [vp, ctypes.c_char_p, ctypes.POINTER(Buffer), ctypes.POINTER(u64)]),
        "shmx_submit_buffer_with": (i, [vp, ctypes.c_char_p, ctypes.POINTER(Buffer), ctypes.POINTER(SubmitOpts), ctypes.POINTER(u64)]),
        "shmx_buffer_release": (None, [vp, ctypes.POINTER(Buffer)]),
        "shmx_copy": (None, [vp, vp, sz]),
        "shmx_is_worker": (i, []),
        "shmx_worker_open": (i, [ctypes.POINTER(vp)]),
        "shmx_worker_ready": (i, [vp]),
        "shmx_worker_slot": (i, [vp, ctypes.POINTER(ctypes.c_uint32)]),
        "shmx_worker_input_buffer": (i, [vp, vp, sz]),
        "shmx_worker_next": (i, [vp, i64, ctypes.POINTER(Task)]),
        "shmx_task_done": (i, [vp, ctypes.POINTER(Task), i]),
        "shmx_task_reply": (i, [vp, ctypes.POINTER(Task), vp, sz]),
        "shmx_task_reply_next": (i, [vp, ctypes.POINTER(Task), vp, sz, i64, ctypes.POINTER(Task)]),
        "shmx_output_set": (i, [vp, vp, sz]),
        "shmx_output_alloc": (vp, [vp, sz]),
        "shmx_output_error": (i, [vp, ctypes.c_char_p, ctypes.c_char_p]),
    }
    for name, (res, args) in sigs.items():
        try:
            f = getattr(lib, name)
        except AttributeError:
            raise ImportError(
                f"shmexec: the library {path!r} has no {name}: it is older than this package. Use the library "
                "built with it (`make lib` in a checkout, or reinstall), or point SHMEXEC_LIB at a current one"
            ) from None
        f.restype = res
        f.argtypes = args
    return lib, path


# -- the fork flag ---------------------------------------------------------
#
# A process forked from one that had loaded the library must not use it:
# the library's threads did not survive the fork (the C side refuses with
# SHMX_EFORKED; this flag lets the binding say so before it calls). The
# hook is registered by the load.

_forked = False


def _after_fork_in_child():
    global _forked
    _forked = True


def forked():
    """Whether this process was forked from one that loaded the library."""
    return _forked


def strerror(rc):
    """The library's static description of status code rc."""
    return load()[0].shmx_strerror(rc).decode()


def last_error():
    """The detail of this thread's last failed library call."""
    return (load()[0].shmx_last_error() or b"").decode(errors="replace")


def get_include():
    """The folder that holds shmexec.h, for building C code against this
    copy of the library (as numpy.get_include())."""
    return include_dir()


def get_library():
    """The path of the libshmexec.so this process loaded (LIBRARY_PATH),
    for ctypes users and for linking C code against the same copy."""
    return load()[1]


def version():
    """The library's version, "MAJOR.MINOR.PATCH"."""
    n = load()[0].shmx_version_number()
    return f"{n // 10000}.{n // 100 % 100}.{n % 100}"
