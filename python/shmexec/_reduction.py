"""What can be sent to a worker, and how a function is named in a call
frame: checked at submit time, in the caller, with what to do instead."""

import pickle

from . import _wire

_sendable = {}  # plain function -> (served, its key in call frames), for the few a program sends
_FUNCTION_TYPES = (type(lambda: None), type(len))


def function_ref(fn, served=False, what="function"):
    """Checks that a worker can find fn — failing at submit time, in the
    caller, with what to do — and returns the key that names it in call
    frames (_wire.function_ref), or None for a callable that is not a
    plain function (it is pickled with each call). served: the pool's
    workers were started by `shmexec serve`, not by this process."""
    if type(fn) not in _FUNCTION_TYPES:
        _check(fn, what, served)
        return None
    hit = _sendable.get(fn)
    if hit is not None and hit[0] is served:
        return hit[1]
    _check(fn, what, served)
    ref = _wire.function_ref(fn)
    if len(_sendable) < 4096:
        _sendable[fn] = (served, ref)
    return ref


def check_sendable(fn, what="function", served=False):
    """Raises TypeError, at submit time, for what a worker cannot find;
    returns fn."""
    function_ref(fn, served, what)
    return fn


def _check(fn, what, served):
    name = getattr(fn, "__qualname__", repr(fn))
    if served and getattr(fn, "__module__", None) in ("__main__", "__mp_main__"):
        raise TypeError(
            f"shmexec cannot send the {what} {name!r} to a served pool: its workers were started by "
            "`shmexec serve`, not from this script, so they cannot find functions of __main__. "
            "Put it in a module the workers can import."
        )
    if "<lambda>" in name or "<locals>" in name:
        raise TypeError(
            f"shmexec cannot send the {what} {name!r} to a worker: lambdas and functions defined inside "
            "other functions cannot be found by name in another process. Define it at module level."
        )
    try:
        pickle.dumps(fn, protocol=5)
    except Exception as e:
        raise TypeError(f"shmexec cannot send the {what} {fn!r} to a worker: {e}. Define it at module level.") from None
