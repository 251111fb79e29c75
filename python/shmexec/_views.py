"""Large out-of-band buffers without copies. A frame's buffer that the
object rebuilt from it keeps (a numpy array's, a memoryview's: _wire's
KEEP bit) and that is at least _wire.HUGE bytes is handed over as a view
of memory that stays valid as long as the object holds it:

- in a worker, of a private copy-on-write mapping of the segment's pages
  that hold it (InputViews): the task reads the caller's bytes where they
  are, and may change them as it could a copy (its writes go to pages of
  its own, and a retry reads the input unchanged). A view still held when
  the task ends (a function kept its argument) gets its pages copied, in
  place, before the input's space is freed;
- in the caller, of the result where the worker wrote it (HeldResult):
  the result stays held (shmx_results_in_place) until the last object
  over it is garbage-collected, which releases it."""

import ctypes
import mmap
import weakref

from . import _lib

_PAGE = mmap.PAGESIZE
_MAP_PRIVATE_COW = dict(flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)

try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:
    _libc = None


def libc_function(name, restype, argtypes):
    """The C library's function name with its types set, or None where
    there is none (not Linux's libc): what needs it is skipped then."""
    fn = getattr(_libc, name, None) if _libc is not None else None
    if fn is not None:
        fn.restype, fn.argtypes = restype, argtypes
    return fn


_mmap = libc_function("mmap", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long])
_mremap = libc_function("mremap", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p])
_munmap = libc_function("munmap", ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t])
if _mremap is None or _munmap is None:  # inputs are copied instead
    _mmap = None
_MAP_FAILED = ctypes.c_void_p(-1).value
_MREMAP_MAYMOVE, _MREMAP_FIXED = 1, 2


def _address(m):
    """The address of an mmap's memory."""
    c = ctypes.c_char.from_buffer(m)
    try:
        return ctypes.addressof(c)
    finally:
        del c


def _privatize(addr, n):
    """Replaces the n bytes of mapping at addr by a private copy of them,
    at the same address (a new anonymous mapping filled, then moved over
    the old one in one call: the address is never unmapped meanwhile)."""
    p = _mmap(None, n, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    if p is None or p == _MAP_FAILED:
        raise MemoryError(f"cannot copy a kept input of {n} bytes: mmap: errno {ctypes.get_errno()}")
    _lib.LIB.shmx_copy(p, addr, n)  # threads for a large one, as every payload copy
    if _mremap(p, n, n, _MREMAP_MAYMOVE | _MREMAP_FIXED, addr) != addr:
        err = ctypes.get_errno()
        _munmap(p, n)
        raise MemoryError(f"cannot copy a kept input of {n} bytes: mremap: errno {err}")


class InputViews:
    """Views of the input of a task (task_ref, of worker w, with lib the
    worker's handle of the library) for loads; close them as the task
    ends, before the task's reply (which frees the input's pages)."""

    __slots__ = ("_lib", "_w", "_task", "_fd", "_off", "_maps")

    def __init__(self, lib, w, task_ref):
        self._lib, self._w, self._task = lib, w, task_ref
        self._fd = None
        self._maps = []

    def __call__(self, off, n, readonly):
        """A view of the n bytes at offset off of the input, or None when
        it cannot be mapped (the caller copies them then)."""
        if _mmap is None:
            return None
        if self._fd is None:
            fd, foff = ctypes.c_int(), ctypes.c_uint64()
            if self._lib.shmx_task_input_file(self._w, self._task, ctypes.byref(fd), ctypes.byref(foff)) != _lib.SHMX_OK:
                return None
            self._fd, self._off = fd.value, foff.value
        at = self._off + off
        skip = at % _PAGE
        try:
            m = mmap.mmap(self._fd, skip + n, offset=at - skip, **_MAP_PRIVATE_COW)
        except OSError:  # out of mappings or memory: a copy will do
            return None
        self._maps.append(m)
        view = memoryview(m)[skip:skip + n]
        return view.toreadonly() if readonly else view

    def close(self):
        """Unmaps the views nothing holds any more, and turns the pages of
        those still held into private copies. Raises MemoryError if that
        fails (the task then fails: its function kept an input that could
        not be kept)."""
        maps, self._maps = self._maps, []
        error = None
        for m in maps:
            try:
                m.close()
            except BufferError:  # exported: an object the task made still holds it
                try:
                    _privatize(_address(m), len(m))
                except MemoryError as e:
                    error = e
        if error is not None:
            raise error


class HeldResult:
    """Views of a result's bytes, for loads; the first one takes the
    result over from res (the caller's release then frees nothing), and
    the last one to go releases it."""

    __slots__ = ("_res", "_whole")

    def __init__(self, res):
        self._res, self._whole = res, None

    def __call__(self, off, n, readonly):
        whole = self._whole
        if whole is None:
            res = self._res
            own = _lib.Result()
            ctypes.memmove(ctypes.byref(own), ctypes.byref(res), ctypes.sizeof(own))
            res.data, res.len = None, 0
            whole = (ctypes.c_char * own.len).from_address(own.data)
            # Not at exit: an exit handler may still read the array, and
            # the process's end frees the space anyway.
            weakref.finalize(whole, _release, own).atexit = False
            self._whole = whole = memoryview(whole).cast("B")
        view = whole[off:off + n]
        return view.toreadonly() if readonly else view


def _release(res):
    _lib.LIB.shmx_result_release(None, ctypes.byref(res))
