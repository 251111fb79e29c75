"""How calls and outcomes travel: pickle protocol 5 with out-of-band
buffers, framed as  u32 n | n x u64 lengths | pickle | buffers."""

import io
import pickle
import struct
import traceback


def dumps_parts(obj):
    """The framed pickle of obj as a list of buffers and its total size,
    so that a large payload can be written straight to its destination."""
    bufs = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=bufs.append)
    raws = [b.raw() for b in bufs]
    head = struct.pack("<IQ", len(raws) + 1, len(data)) + b"".join(struct.pack("<Q", m.nbytes) for m in raws)
    parts = [head, data] + raws
    return parts, sum(memoryview(p).nbytes for p in parts)


def write_parts(parts, addr):
    """Copies parts one after another to the memory at addr."""
    import ctypes

    for p in parts:
        m = memoryview(p).cast("B")
        n = m.nbytes
        if not n:
            continue
        if not m.readonly:
            src = (ctypes.c_char * n).from_buffer(m)
        elif isinstance(m.obj, bytes) and len(m.obj) == n:
            src = ctypes.c_char_p(m.obj)  # points into the bytes object: no copy
        else:
            src = bytes(m)
        ctypes.memmove(addr, src, n)
        addr += n


def join(parts):
    """The parts of dumps_parts as one writable bytearray."""
    out = bytearray()
    for p in parts:
        out += p
    return out


def dumps(obj):
    return join(dumps_parts(obj)[0])


def loads(b):
    mv = memoryview(b)
    (n,) = struct.unpack_from("<I", mv, 0)
    lens = struct.unpack_from("<%dQ" % n, mv, 4)
    off = 4 + 8 * n
    data = mv[off:off + lens[0]]
    off += lens[0]
    bufs = []
    for ln in lens[1:]:
        bufs.append(mv[off:off + ln])
        off += ln
    return pickle.loads(data, buffers=bufs)


def error_outcome(exc):
    """The outcome of a task that raised: the exception pickled when it can
    be, and always its type name, message and traceback text."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        blob = pickle.dumps(exc, protocol=5)
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
