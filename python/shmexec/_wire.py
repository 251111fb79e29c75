"""How calls and outcomes travel: pickle protocol 5 with out-of-band
buffers, framed as  u32 n | n x u64 lengths | pickle | buffers; two
shorter frames for the small calls and values of a round trip: a call
frame (dumps_call) and a value frame (dumps_value). docs/PROTOCOL.md
describes every frame. The last part turns a fetched result into an
outcome: ("ok", value) or ("exc", exception)."""

import ctypes
import marshal
import pickle
import struct

from . import _errors, _lib, _reduction, _spawn, _views

# bytes and bytearray objects this large travel out of band: the pickle
# holds a reference, the frame holds their bytes, copied once.
BIG = 64 << 10
# Rebuilt objects this large get their pages faulted in as transparent
# huge pages where the kernel allows it (madvise mode): a fresh 64 MiB
# object then costs 32 page faults instead of 16,384. (Under a hypervisor
# that takes back the guest's free 2 MiB blocks, virtio-balloon's free
# page reporting, a huge page allocated after a few idle seconds is
# faulted in again by the host, and costs more than small pages would:
# docs/BENCHMARKS.md, "Fresh memory".) Buffers this large
# that the rebuilt object keeps (a numpy array's) are not copied at all
# where the receiver can give a view that stays valid (_views).
HUGE = 4 << 20
_MADV_HUGEPAGE = 14

_api = ctypes.pythonapi
_new_bytes = _api.PyBytes_FromStringAndSize
_new_bytes.restype, _new_bytes.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_ssize_t]
_new_bytearray = _api.PyByteArray_FromStringAndSize
_new_bytearray.restype, _new_bytearray.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_ssize_t]
_madvise = _views.libc_function("madvise", ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int])
_memory_view = _api.PyMemoryView_FromMemory
_memory_view.restype, _memory_view.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int]
_PyBUF_WRITE = 0x200


def view_at(addr, n):
    """A writable memoryview (format B) of the n bytes at addr, which the
    caller keeps valid while the view is used. Not (c_char * n): ctypes
    makes a type for each new length n, which costs more than copying
    64 KiB, and payload sizes rarely repeat."""
    return _memory_view(addr, n, _PyBUF_WRITE)


class _PyBuffer(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p), ("len", ctypes.c_ssize_t),
                ("itemsize", ctypes.c_ssize_t), ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
                ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
                ("suboffsets", ctypes.c_void_p), ("internal", ctypes.c_void_p)]


_get_buffer = _api.PyObject_GetBuffer
_get_buffer.restype, _get_buffer.argtypes = ctypes.c_int, [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
_release_buffer = _api.PyBuffer_Release
_release_buffer.restype, _release_buffer.argtypes = None, [ctypes.POINTER(_PyBuffer)]


def _copy(addr, src, n):
    """Every payload copy: shmx_copy, which is memcpy below the size from
    which it splits a copy among threads, and costs what ctypes.memmove
    does. Looked up at the first copy (the library loads with the first
    pool, not at import), which rebinds this name to it."""
    global _copy
    _copy = _lib.LIB.shmx_copy
    return _copy(addr, src, n)


def copy_to(addr, src):
    """Copies the contiguous buffer src (read-only ones too: bytes, a
    read-only view of the segment) to addr, without an intermediate copy.
    Returns the number of bytes copied."""
    view = _PyBuffer()
    _get_buffer(src, ctypes.byref(view), 0)  # PyBUF_SIMPLE; raises BufferError if not contiguous
    try:
        _copy(addr, view.buf, view.len)
        return view.len
    finally:
        _release_buffer(ctypes.byref(view))


def _fill(addr, src, n):
    """Copies the n bytes of src to addr, a fresh allocation whose pages
    are untouched: asks for huge pages first."""
    if _madvise is not None:
        lo = (addr + (1 << 21) - 1) & ~((1 << 21) - 1)
        hi = (addr + n) & ~((1 << 21) - 1)
        if hi > lo:
            _madvise(lo, hi - lo, _MADV_HUGEPAGE)  # advice only: failure changes nothing
    copy_to(addr, src)


def _rebuild_bytes(buf):
    """bytes from an out-of-band buffer: the buffer itself when loads made
    it bytes (it gives every such buffer as an object of its own), else a
    copy (a view of the segment, or of C memory)."""
    if type(buf) is bytes:
        return buf
    n = memoryview(buf).nbytes
    if n < HUGE:
        return bytes(buf)
    b = _new_bytes(None, n)  # contents undefined until filled: filled at once
    _fill(ctypes.cast(ctypes.c_char_p(b), ctypes.c_void_p).value, buf, n)
    return b


def _rebuild_bytearray(buf):
    if type(buf) is bytearray:
        return buf
    n = memoryview(buf).nbytes
    if n < HUGE:
        return bytearray(buf)
    b = _new_bytearray(None, n)
    _fill(ctypes.addressof((ctypes.c_char * n).from_buffer(b)), buf, n)
    return b


class _OutOfBand:
    """Stands for a large bytes or bytearray in what is pickled, so that
    its bytes travel out of band (the C pickler does not consult
    reducer_override for these types)."""

    __slots__ = ("obj", "pb")

    def __init__(self, obj):
        self.obj, self.pb = obj, None

    def __reduce_ex__(self, protocol):
        obj = self.obj
        if type(obj) is memoryview:
            m = obj if obj.contiguous else memoryview(obj.tobytes()).cast(obj.format, obj.shape)
            return _rebuild_memoryview, (pickle.PickleBuffer(m), obj.readonly, obj.format, obj.shape)
        rebuild = _rebuild_bytes if type(obj) is bytes else _rebuild_bytearray
        self.pb = pickle.PickleBuffer(obj)  # its rebuilder copies it: dumps_parts leaves KEEP off
        return rebuild, (self.pb,)


def _rebuild_memoryview(buf, readonly, fmt, shape):
    """A memoryview like the one sent (format, shape, read-only or not),
    over the buffer loads gave: a copy, or a view that stays valid."""
    m = memoryview(buf)
    if readonly and not m.readonly:
        m = m.toreadonly()
    if fmt == "B" and len(shape) == 1:
        return m
    try:
        return m.cast(fmt, shape)
    except (TypeError, ValueError):  # a format cast() does not take
        return m


_LIFTED = (tuple, list, dict, bytes, bytearray, memoryview)


def _lift(obj, memo, depth=3):
    """obj with every large bytes or bytearray, and every memoryview, near
    its top (in tuples, lists and dicts of up to 16 items, 3 levels down;
    deeper ones are pickled in band) replaced by an _OutOfBand; obj itself
    when there is none, with nothing built (this runs for every call).
    Each container is read once. A container or buffer met twice is
    replaced by one copy, so shared references stay shared (memo: id ->
    replacement)."""
    t = type(obj)
    if t is bytes or t is bytearray or t is memoryview:
        if t is not memoryview and len(obj) < BIG:
            return obj
        new = memo.get(id(obj))
        if new is None:
            new = memo[id(obj)] = _OutOfBand(obj)
        return new
    if not depth or (t is not tuple and t is not list and t is not dict) or len(obj) > 16:
        return obj
    new = memo.get(id(obj))
    if new is not None:
        return new
    items = list(obj.values()) if t is dict else obj
    lifted = None
    for i, v in enumerate(items):
        tv = type(v)
        if tv is memoryview or tv in _LIFTED and v:  # (an empty container holds nothing to lift)
            nv = _lift(v, memo, depth - 1)
            if nv is not v:
                if lifted is None:
                    lifted = list(items)
                lifted[i] = nv
    if lifted is None:  # the common case: nothing to lift, nothing built
        return obj
    new = memo[id(obj)] = dict(zip(obj.keys(), lifted)) if t is dict else t(lifted)
    return new


_HEAD = struct.Struct("<IQ")
# The top bits of an out-of-band buffer's length in a frame. READONLY: the
# buffer was read-only. KEEP: the object rebuilt from it may keep it (all
# but shmexec's own bytes and bytearray rebuilders, which copy it), so it
# must get memory that stays valid: a copy (bytes if read-only, else a
# bytearray), or from HUGE bytes on a view that stays (_views).
_READONLY = 1 << 63
_KEEP = 1 << 62
_LENGTH = _KEEP - 1
# Each out-of-band buffer starts this far into the frame (zeros pad the
# gap), so that an array over one is aligned as its own allocation is.
_ALIGN = 64
_ZEROS = bytes(_ALIGN)


def dumps_parts(obj, what="the call", roots=None, to="to a worker", lost_main=False, inherit=False):
    """The framed pickle of obj as a list of buffers and its total size,
    so that a large payload can be written straight to its destination.
    Pickled with pickle, or cloudpickle where pickle fails; raises
    TypeError for what cannot be sent (what, roots, to, lost_main,
    inherit: see _reduction.dumps)."""
    memo = {}
    return _dumps_lifted(_lift(obj, memo), memo, what, roots, to, lost_main, inherit)


def _dumps_lifted(obj, memo, what, roots, to="to a worker", lost_main=False, inherit=False):
    """dumps_parts of obj, which _lift has made with memo."""
    bufs = []
    data = _reduction.dumps(obj, bufs.append, what, roots, to, lost_main, inherit)
    if not bufs:
        return [_HEAD.pack(1, len(data)), data], 12 + len(data)
    copied = {id(o.pb) for o in memo.values() if type(o) is _OutOfBand and o.pb is not None}
    raws = [b.raw() for b in bufs]
    head = _HEAD.pack(len(raws) + 1, len(data)) + b"".join(
        struct.pack("<Q", m.nbytes | (_READONLY if m.readonly else 0) | (0 if id(b) in copied else _KEEP))
        for b, m in zip(bufs, raws))
    parts = [head, data]
    off = len(head) + len(data)
    for m in raws:
        pad = -off % _ALIGN
        if pad:
            parts.append(_ZEROS[:pad])
        parts.append(m)
        off += pad + m.nbytes
    return parts, off


# A call of a plain function travels in a call frame that names the
# function by its pickle (its key), which the caller makes once per
# function and a worker unpickles once (unpickling a function imports and
# searches its module each time):
# - when every argument is of a plain type: u32 0xfe000000 | the
#   marshalled (key, args, kwargs) (marshal writes and reads these in a
#   third of pickle's time);
# - otherwise: u32 0 | u32 k | the k-byte key | the pickle of (args, kwargs).
# No frame of dumps_parts starts with either tag (a count of parts is at
# least 1, and far below 0xfd000000, the batch frame's tag). A call whose
# arguments hold buffers to send out of band travels as a ("call", fn,
# (args, kwargs)) frame instead.
_CALL = struct.Struct("<II")
_U32 = struct.Struct("<I")
_CALL_TAG = b"\0\0\0\0"
# A frame's kind is in its fourth byte (the top byte of its u32 tag), for
# hot paths that test it inline: frame[3] == PLAIN_CALL or VALUE.
PLAIN_CALL = 0xFE
_PLAIN_CALL_TAG = bytes((0, 0, 0, PLAIN_CALL))

# A batch frame: u32 0xfd000000 | the marshalled (key, kind, items): a
# map's batch of at most BATCH_FRAME_ITEMS items of plain types, its
# function by key. Pickling a general frame costs several microseconds
# more than the marshal, and so does unpickling the function in the
# worker, which a task of a map with chunksize 1 pays every time.
PLAIN_BATCH = 0xFD
_PLAIN_BATCH_TAG = bytes((0, 0, 0, PLAIN_BATCH))
BATCH_FRAME_ITEMS = 32

# A value frame: u32 0xff000000 | the marshalled value: the outcome
# ("ok", value) of a call that returned a value of a plain type, or
# ("ok", (False, values)) of a batch of at most BATCH_FRAME_ITEMS items
# whose values are all plain.
VALUE = 0xFF
_VALUE_TAG = bytes((0, 0, 0, VALUE))
_MARSHAL = 4  # marshal's format 4, which every Python since 3.4 reads

# Exactly these types (not subclasses: marshal refuses those, and pickle
# keeps their class) travel marshalled; bytes too while under BIG (larger
# ones travel out of band). Not bytearray: marshal reads it back as bytes.
_PLAIN = frozenset((type(None), bool, int, float, str))


def _plain_bytes(v):
    """Whether v is bytes small enough to travel marshalled (the hot paths
    test type(v) in _PLAIN first, inline)."""
    return type(v) is bytes and len(v) < BIG


def _all_plain(values):
    """Whether every one of values is of a plain type, so that they travel
    marshalled: a call's arguments, a batch's items, its values."""
    for v in values:
        if type(v) not in _PLAIN and not _plain_bytes(v):
            return False
    return True


def function_ref(fn):
    """The key that names fn in a call frame (_reduction.function_ref)."""
    return _reduction.function_ref(fn)


def dumps_call(fn, key, args, kwargs, lost_main=False):
    """The call fn(*args, **kwargs) as parts and their total size, like
    dumps_parts: a call frame (key: _reduction.function_ref(fn)) when
    nothing in the arguments travels out of band."""
    if _all_plain(args) and _all_plain(kwargs.values()):
        frame = _PLAIN_CALL_TAG + marshal.dumps((key, args, kwargs), _MARSHAL)
        return [frame], len(frame)
    bufs = []
    roots = _reduction.call_roots(fn, args, kwargs)
    what = f"the arguments of {_reduction._name(fn)}"
    both, memo = (args, kwargs), {}
    lifted = _lift(both, memo)
    if lifted is not both:  # a large bytes or a memoryview: out of band, pickled once
        return _dumps_lifted(("call", ByKey(key), lifted), memo, what, roots, lost_main=lost_main)
    data = _reduction.dumps(lifted, bufs.append, what, roots, lost_main=lost_main)
    if bufs:  # an object whose own reduction gives a PickleBuffer (a numpy array)
        return dumps_parts(("call", ByKey(key), both), what, roots, lost_main=lost_main)
    head = _CALL.pack(0, len(key)) + key
    return [head, data], len(head) + len(data)


def _plain_items(kind, items):
    """Whether every item of a batch of kind ("batch1": an argument an
    item; "batch": an argument tuple an item) is of a plain type."""
    if kind == "batch1":
        return _all_plain(items)
    for t in items:
        if type(t) is not tuple or not _all_plain(t):
            return False
    return True


def dumps_batch(kind, fn, key, items, what, lost_main=False):
    """The frame of a map's batch, fn over items (kind: "batch1", one
    argument an item; "batch", an argument tuple an item), as parts and
    their total size like dumps_parts: a batch frame when fn has a key
    (_reduction.function_ref) and the items are few and of plain types,
    else a general frame of (kind, fn, items). what: the items, named
    if they cannot be sent."""
    if key is not None and len(items) <= BATCH_FRAME_ITEMS and _plain_items(kind, items):
        if type(items) is not list and type(items) is not tuple:
            items = list(items)  # a slice of a range, say: marshal takes lists and tuples
        frame = _PLAIN_BATCH_TAG + marshal.dumps((key, kind, items), _MARSHAL)
        return [frame], len(frame)
    return dumps_parts((kind, fn if key is None else ByKey(key), items), what, lost_main=lost_main)


def loads_plain_batch(body, functions):
    """(fn, kind, items) of a batch frame, from its body (as
    loads_plain_call)."""
    key, kind, items = marshal.loads(body)
    return _function(key, functions), kind, items


def is_call(b):
    """Whether the frame b is a call frame (dumps_call)."""
    return len(b) > 4 and (b[3] == PLAIN_CALL or b[:4] == _CALL_TAG)


def is_plain_call(b):
    """Whether the frame b (at least 4 bytes) is a call frame with
    marshalled arguments (its body: b past a 4-byte tag)."""
    return b[3] == PLAIN_CALL


def _function(key, functions):
    fn = functions.get(key)
    if fn is None:
        fn = _spawn.own_function(pickle.loads(key))
        if len(functions) < 4096:
            functions[key] = fn
    return fn


class ByKey:
    """A plain function inside a pickled frame (a map's batch of items
    that are not plain, a call with buffers out of band, an initializer),
    pickled as its key (_reduction.function_ref): by value where a worker
    could not import it, as in the frames that name it by key. Pickled
    directly, a function of __main__ would go by reference, which a
    worker started from `python -c`, a console or a notebook cannot
    resolve."""

    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key

    def __reduce__(self):
        return function_by_key, (self.key,)


def function_by_key(key):
    """In a worker: the function of a key that travelled inside a pickle
    (ByKey), unpickled once per key."""
    return _function(key, FUNCTIONS)


# In a worker: what each function key was unpickled to, for every frame
# that names a function by key (the worker's loads_* pass it).
FUNCTIONS = {}


def loads_plain_call(body, functions):
    """(fn, args, kwargs) of a call frame with marshalled arguments, from
    its body. Bytes after the frame are ignored (marshal.loads stops where
    the value ends), so body may be a view of a longer buffer."""
    key, args, kwargs = marshal.loads(body)
    return _function(key, functions), args, kwargs


def loads_call(b, functions):
    """(fn, args, kwargs) of the call frame b; functions caches what each
    function key was unpickled to."""
    if is_plain_call(b):
        return loads_plain_call(memoryview(b)[4:], functions)
    k = _U32.unpack_from(b, 4)[0]
    args, kwargs = pickle.loads(memoryview(b)[8 + k:])
    return _function(bytes(b[8:8 + k]), functions), args, kwargs


def dumps_value(v, fn=None):
    """dumps_parts(("ok", v)): a value frame when v is of a plain type.
    fn: the function that returned v, named if v cannot be sent."""
    if type(v) in _PLAIN or _plain_bytes(v):
        frame = _VALUE_TAG + marshal.dumps(v, _MARSHAL)
        return [frame], len(frame)
    return dumps_result(("ok", v), fn)


def dumps_batch_result(failed, outs, fn):
    """dumps_parts(("ok", (failed, outs))), the outcome of a batch: a
    value frame when no item failed and the values are few and plain."""
    if not failed and len(outs) <= BATCH_FRAME_ITEMS and _all_plain(outs):
        frame = _VALUE_TAG + marshal.dumps((False, outs), _MARSHAL)
        return [frame], len(frame)
    return dumps_result(("ok", (failed, outs)), fn, batch=True)


def dumps_result(outcome, fn, batch=False):
    """dumps_parts of a worker's outcome; one that cannot be sent back
    raises TypeError naming fn's result (batch: a map's results)."""
    what = f"the {'results of a map' if batch else 'result'} of {_reduction._name(fn)}" if fn is not None else "a result"
    return dumps_parts(outcome, what, [(outcome[1], "the results" if batch else "the result")], "back from the worker")


def is_value(b):
    """Whether the frame b (at least 4 bytes) is a value frame."""
    return b[3] == VALUE


def load_value(body):
    """The value of a value frame from its body: the frame past its 4-byte
    tag. Bytes after the value are ignored (marshal.loads stops where it
    ends), so body may be a view of a buffer longer than the frame."""
    return marshal.loads(body)


def write_parts(parts, addr):
    """Copies parts one after another to the memory at addr. Small parts
    (a frame's head, its pickle, the padding before a buffer) are joined
    and copied in one C call, bytes with shmx_copy (which takes
    bytes as they are), and only other buffers through copy_to: each C
    call costs about as much as copying 64 KiB."""
    small = []
    for p in parts:
        if len(p) < _SMALL_PART and type(p) is bytes:
            small.append(p)
            continue
        if small:
            addr += _copy_bytes(addr, small[0] if len(small) == 1 else b"".join(small))
            small = []
        addr += _copy_bytes(addr, p) if type(p) is bytes else copy_to(addr, p)
    if small:
        _copy_bytes(addr, small[0] if len(small) == 1 else b"".join(small))


# Bytes parts shorter than this are joined before they are copied.
_SMALL_PART = 4096


def _copy_bytes(addr, b):
    n = len(b)
    _copy(addr, b, n)  # takes bytes as they are: no buffer request
    return n


def join(parts):
    """The parts of dumps_parts as one bytes object."""
    n = len(parts)
    return parts[0] + parts[1] if n == 2 else parts[0] if n == 1 and type(parts[0]) is bytes else b"".join(parts)


def dumps(obj, what="the call", lost_main=False, inherit=False):
    return join(dumps_parts(obj, what, lost_main=lost_main, inherit=inherit)[0])


def loads(b, views=None):
    """The object of a frame of dumps_parts or dumps_value (an outcome).
    views(off, n, readonly), if given, gives a view of the frame's n bytes
    at offset off that stays valid after the frame is gone, or None: an
    out-of-band buffer of HUGE bytes or more that the object keeps is then
    not copied (_views)."""
    if b[:4] == b"\x01\0\0\0":  # one part, no buffers: the pickle after the 12-byte head
        return pickle.loads(memoryview(b)[12:])
    if is_value(b):
        return ("ok", load_value(memoryview(b)[4:]))
    n, first = _HEAD.unpack_from(b, 0)
    if n == 1:
        return pickle.loads(memoryview(b)[12:12 + first])
    mv = memoryview(b)
    lens = struct.unpack_from("<%dQ" % n, mv, 4)
    off = 4 + 8 * n
    data = mv[off:off + lens[0]]
    off += lens[0]
    # b is a view of the segment or of C memory that is reused or freed
    # once the frame is read. A buffer that shmexec's own rebuilders copy
    # is given as a view of b; one that the rebuilt object may keep (a
    # numpy array does, as would any class whose __reduce_ex__ gives a
    # PickleBuffer) as an object of its own: a view that stays, else a copy.
    bufs = []
    for ln in lens[1:]:
        n = ln & _LENGTH
        off += -off % _ALIGN
        buf = None
        if not ln & _KEEP:
            buf = mv[off:off + n]
        elif n >= HUGE and views is not None:
            buf = views(off, n, bool(ln & _READONLY))
        if buf is None:
            view = mv[off:off + n]
            buf = _rebuild_bytes(view) if ln & _READONLY else _rebuild_bytearray(view)
        bufs.append(buf)
        off += n
    return pickle.loads(data, buffers=bufs)


def error_outcome(exc):
    """The outcome of a task that raised: the exception pickled when it can
    be (its traceback travels as text), and always its type name, message
    and traceback text."""
    import traceback  # in a worker, only once a task raises

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        exc.__traceback__ = None  # its frames would keep the task's objects alive
        blob = _reduction.dumps(exc)
    except BaseException:
        blob = None
    return ("err", blob, type(exc).__qualname__, str(exc), tb)


class Failure:
    """An item of a batch that raised: its error outcome (see
    error_outcome). Values of items that succeeded travel bare."""

    __slots__ = ("outcome",)

    def __init__(self, outcome):
        self.outcome = outcome

    def __reduce__(self):
        return (Failure, (self.outcome,))


# -- outcomes of fetched results ------------------------------------------


# The type of an exception's __cause__ that carries the worker's
# traceback: concurrent.futures' for an Executor, multiprocessing's for a
# Pool (each API's own tests check for its type), named by (module,
# class) and imported when a task first raises (concurrent.futures.process
# imports most of multiprocessing). It also tells the two apart for a
# task whose worker died (_errors.job_error).
FUTURES_TRACEBACK = ("concurrent.futures.process", "_RemoteTraceback")
POOL_TRACEBACK = ("multiprocessing.pool", "RemoteTraceback")


def _traceback_type(tb_type):
    module, name = tb_type
    return getattr(__import__(module, fromlist=[name]), name)


def undecodable(e):
    """The outcome of a result whose decoding raised e, from the except
    block that caught it: the result's own failure, which fails its task
    and nothing more; an interrupt (_errors.interrupt) is raised again."""
    if _errors.interrupt(e):
        raise  # noqa: PLE0704 - the exception being handled
    return ("exc", _errors.RemoteError(type(e).__qualname__, str(e), ""))


def outcome(res, tb_type=FUTURES_TRACEBACK):
    """The outcome of a fetched result res (a _lib.Result, not yet
    released): ("ok", value) or ("exc", exception). A small value is
    copied out with one call; loads copies out what it keeps of a large
    one, or takes res over while an array over it lives (_views), so res
    is released right after either way."""
    if res.status == _lib.SHMX_OK and 0 < res.len < BIG:
        return frame_outcome(ctypes.string_at(res.data, res.len), tb_type)
    try:
        if res.status != _lib.SHMX_OK:
            return ("exc", _errors.job_error(res, tb_type == FUTURES_TRACEBACK))
        data = view_at(res.data, res.len) if res.len else b""
        return rebuild(loads(data, _views.HeldResult(res) if res.len >= HUGE else None), tb_type)
    except BaseException as e:  # noqa: B902 - a result that cannot be decoded
        return undecodable(e)


def frame_outcome(frame, tb_type=FUTURES_TRACEBACK):
    """The outcome of a successful job's output frame (bytes-like)."""
    try:
        out = loads(frame)
        return rebuild(out, tb_type) if out[0] == "err" else out
    except BaseException as e:  # noqa: B902 - a result that cannot be decoded
        return undecodable(e)


def rebuild(out, tb_type=FUTURES_TRACEBACK):
    """An outcome as loads gives it, with an error outcome ("err", ...)
    turned into ("exc", the exception to raise): the pickled exception
    when it unpickles, else a RemoteError; either way with the worker's
    traceback as its __cause__ (a tb_type), as multiprocessing and
    concurrent.futures give it, so that an uncaught one prints where in
    the worker it happened."""
    if out[0] != "err":
        return out
    _, blob, type_name, message, tb = out
    exc = None
    if blob is not None:
        try:
            exc = pickle.loads(blob)
        except BaseException as e:  # noqa: B902 - the exception cannot be rebuilt here: a RemoteError stands for it
            if _errors.interrupt(e):
                raise
    if not isinstance(exc, BaseException):
        exc = _errors.RemoteError(type_name, message, tb)
    if tb:
        exc.__cause__ = _traceback_type(tb_type)('\n"""\n%s"""' % tb)
    return ("exc", exc)


def batch_values(result, tb_type=FUTURES_TRACEBACK):
    """The values of a batch job's items (its value: (failed, values));
    raises the first failed item's exception."""
    failed, outs = result
    if not failed:
        return outs
    for v in outs:
        if type(v) is Failure:
            raise rebuild(v.outcome, tb_type)[1]
    return outs
