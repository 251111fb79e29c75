"""Functions the tests send to workers (they must be importable there)."""

import contextlib
import enum
import os
import pickle
import signal
import subprocess
import sys
import threading
import time


def add(a, b):
    return a + b


def echo(x):
    return x


def zeros(n):
    return bytes(n)


def text(n):
    return "y" * n


def double(x):
    return x * 2


def boom(msg):
    raise ValueError(msg)


class Mismatched(Exception):
    """An exception whose __init__ does not match its args: unpickling it
    fails, which hangs multiprocessing.Pool."""

    def __init__(self, a, b):
        super().__init__(f"{a}-{b}")


def raise_mismatched():
    raise Mismatched(1, 2)


def raise_timeout():
    raise TimeoutError("the task's own")


def sigkill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def sigkill_self_holding(_payload=None):
    """Dies by SIGKILL, holding what set_init kept (a multiprocessing lock)
    if it is one, and its argument (a large input in the arena)."""
    lock = globals().get("_init_value")
    if hasattr(lock, "acquire"):
        lock.acquire()
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)


def with_init_lock(x):
    """x, once the lock set_init kept is free."""
    with _init_value:
        return x


def exit_now(code):
    os._exit(code)


def system_exit():
    raise SystemExit(3)


def keyboard_interrupt():
    raise KeyboardInterrupt


def sleep(s):
    time.sleep(s)
    return s


def sleep_then_len(s, data):
    time.sleep(s)
    return len(data)


def sleep_then_boom(s, msg):
    time.sleep(s)
    raise ValueError(msg)


def children(pid):
    """The pids whose parent is pid, from /proc."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(name))
    return out


def shmexec_process_alive(pid):
    """Whether pid runs a shmexec process (a zombie, or a reused pid that is
    not ours, does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline") as f:
            cmdline = f.read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and "shmexec" in cmdline


def _exit_now():
    sys.exit(1)


class ExitAtUnpickle:
    """Calls sys.exit(1) where it is unpickled (as CPython's
    test_concurrent_futures has it)."""

    def __reduce__(self):
        return _exit_now, ()


def exit_at_unpickle(delay=0):
    time.sleep(delay)
    return ExitAtUnpickle()


def pid():
    return os.getpid()


def sleep_then_pid(s):
    time.sleep(s)
    return os.getpid()


def sleep_then_mark(s, path):
    """Sleeps s seconds, then appends a line to path: a test polls for the
    line to know that the task has ended."""
    time.sleep(s)
    with open(path, "a") as f:
        f.write("done\n")
    return s


def make_lock(x=None):
    """A result no pickler can send back."""
    import threading

    return threading.Lock()


def fail_on_odd(x):
    """x, or ValueError(x) if x is odd; the worker exits (code 3) on -1."""
    if x == -1:
        os._exit(3)
    if x % 2:
        raise ValueError(x)
    return x


def log_then_fail_on_odd(path, x, y=0):
    """Appends "x" to path (one write, so that workers do not interleave),
    then raises ValueError(x) if x + y is odd, else returns x + y: a test
    counts how often each item ran."""
    with open(path, "a") as f:
        f.write(f"{x}\n")
    if (x + y) % 2:
        raise ValueError(x)
    return x + y


def mark_then_sleep(path, s):
    """Appends a line to path, then sleeps s seconds: a test polls for the
    line (wait_marks) to know that the task has started."""
    with open(path, "a") as f:
        f.write("started\n")
    time.sleep(s)
    return s


def wait_marks(path, n, deadline=30):
    """Waits until path has n lines (sleep_then_mark); fails after
    deadline seconds."""
    end = time.monotonic() + deadline
    while True:
        try:
            with open(path) as f:
                if len(f.readlines()) >= n:
                    return
        except FileNotFoundError:
            pass
        if time.monotonic() > end:
            raise AssertionError(f"{n} tasks did not end within {deadline} s ({path})")
        time.sleep(0.005)


def wait_nothing_kept(ex, deadline=30):
    """Waits until ex (an Executor) keeps no outcome for a reader: none in
    early, no stream batch awaited, no collected iterator's to drop;
    fails after deadline seconds."""
    books = ex._books
    end = time.monotonic() + deadline
    while books.early or books.streamed or books.dropped:
        if time.monotonic() > end:
            raise AssertionError(f"{len(books.early)} outcomes kept, {len(books.streamed)} awaited after {deadline} s")
        time.sleep(0.01)


def wait_running_at_once(ex, n, deadline=30):
    """Waits until n tasks run at once on n different workers of ex (an
    Executor): the pool is at full size, and every task submitted before
    has ended (the queue is FIFO and a worker runs one task at a time).
    Fails after deadline seconds."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        start = time.monotonic()
        fs = [ex.submit(sleep_then_pid, 0.3) for _ in range(n)]
        pids = {f.result(deadline) for f in fs}
        if len(pids) == n and time.monotonic() - start < 0.3 * n:
            return
    raise AssertionError(f"{n} tasks did not run at once on {n} workers within {deadline} s")


def crash_once(marker):
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


_init_value = None


def set_init(v):
    global _init_value
    _init_value = v


def get_init():
    return _init_value


def length(b):
    return len(b)


def nested_pool():
    import shmexec

    try:
        shmexec.Executor(max_workers=1).shutdown()
    except shmexec.ShmexecError as e:
        return str(e)
    return "a worker started a pool"


def describe(*args):
    """The type, length and, for memoryviews, format and read-only flag
    of each argument, and whether the first two are one object."""
    out = [(type(a).__name__, len(a) if hasattr(a, "__len__") else None,
            (a.format, a.readonly) if isinstance(a, memoryview) else None) for a in args]
    return out, len(args) > 1 and args[0] is args[1]


def typed_call(*args, **kwargs):
    """The exact type and repr of every argument, keyword ones by name."""
    return [(type(a).__name__, repr(a)) for a in args], {k: (type(v).__name__, repr(v)) for k, v in kwargs.items()}


class Color(enum.IntEnum):
    RED = 1


class Name(str):
    pass


def subclassed(kind):
    """A value of a subclass of a plain type (they travel pickled)."""
    return {"enum": Color.RED, "str": Name("n"), "bool": True}[kind]


def program_with_a_pool(copy_env):
    """Runs, as a task may, a Python program that makes a pool of its own,
    with the worker's C environment (copy_env False) or with
    env=dict(os.environ), as scripts often pass it: (exit status, output,
    error output)."""
    import shmexec

    os.environ["PYTHONPATH"] = os.path.dirname(os.path.dirname(shmexec.__file__))  # the C environment's too
    env = dict(os.environ) if copy_env else None
    code = "import shmexec\nwith shmexec.Pool(1) as p:\n    print(p.apply(abs, (-7,)))"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout, r.stderr[-2000:]


def shell_descriptors():
    """The descriptors a shell that a task runs has open, everything the
    worker has inheritable passed on (close_fds=False, as os.system and
    most C and Go programs start theirs)."""
    out = subprocess.run(["/bin/sh", "-c", "ls /proc/$$/fd"], close_fds=False, capture_output=True, text=True, timeout=60)
    return sorted(int(fd) for fd in out.stdout.split())


def shmexec_environ():
    return sorted(k for k in os.environ if k.startswith("SHMEXEC_"))


def getenv(name):
    return os.environ.get(name)


class Adopting:
    """Pickles as a numpy array does under protocol 5: its buffer travels
    out of band, and unpickling adopts the buffer it is given, without a
    copy (so the buffer must outlive the frame it arrived in)."""

    def __init__(self, buf):
        self.buf = buf

    def __reduce_ex__(self, protocol):
        if protocol >= 5:
            return Adopting, (pickle.PickleBuffer(self.buf),)
        return Adopting, (bytes(self.buf),)

    def summary(self):
        m = memoryview(self.buf)
        return m.nbytes, m[0], m[-1], m.readonly


def adopting(n, v, readonly):
    """An Adopting of n bytes of value v, over bytes or a bytearray."""
    return Adopting(bytes([v]) * n if readonly else bytearray([v]) * n)


_kept = []


def keep(obj):
    """Keeps obj past the end of the task (a cache would)."""
    _kept.append(obj)
    return obj.summary()


def kept():
    return [o.summary() for o in _kept]


def sleep_then_print(s, text):
    time.sleep(s)
    print(text, flush=True)


class Made:
    """A result object whose collection a test can watch."""

    def __init__(self, i):
        self.i = i


def make_big(i):
    return Made(i)


def kill_self_with(sig, how):
    """Sends this worker sig: how "kill" (os.kill), "raise"
    (signal.raise_signal), "thread" (pthread_kill of this thread), or
    "fault" (a real fault of that kind, where there is one)."""
    import ctypes
    import signal
    import threading

    if how == "kill":
        os.kill(os.getpid(), sig)
    elif how == "raise":
        signal.raise_signal(sig)
    elif how == "thread":
        signal.pthread_kill(threading.get_ident(), sig)
    elif how == "fault" and sig == signal.SIGSEGV:
        ctypes.string_at(0)
    elif how == "fault" and sig == signal.SIGABRT:
        os.abort()
    time.sleep(1)  # a signal delivered a little later still ends the task
    return "survived"


def open_files():
    """(device, inode) of every descriptor open in this worker."""
    out = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            st = os.fstat(int(name))
        except OSError:
            continue
        out.add((st.st_dev, st.st_ino))
    return out


def write_to_passed(data):
    """Writes data to the first descriptor the pool passed on."""
    fd = int(os.environ["SHMEXEC_PASS_FDS"].split(",")[0])
    return os.write(fd, data)


def use_held(x):
    """Uses what set_init kept, multiprocessing's objects that a worker
    inherits: (lock, counter, array, queue, event, pipe end) each once.
    Returns (whether the event is set, SHMEXEC_PASS_FDS, this pid)."""
    lock, counter, arr, q, ev, conn = _init_value
    with counter.get_lock():
        counter.value += 1
    with lock:
        arr[x % len(arr)] += 1
    q.put(x)
    conn.send(x)
    return ev.is_set(), os.environ.get("SHMEXEC_PASS_FDS"), os.getpid()


def init_head():
    """The first item of what set_init kept, and the length of the second."""
    return _init_value[0], len(_init_value[1])


def prep_files():
    """The descriptors of this worker that are a pool's preparation data
    (which the worker closes once it has read it)."""
    out = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if "shmexec-prep" in os.readlink(f"/proc/self/fd/{name}"):
                out.append(int(name))
        except OSError:
            pass
    return out


def parent(_=None):
    """multiprocessing.parent_process() of this worker: (name, pid, alive)."""
    import multiprocessing

    p = multiprocessing.parent_process()
    return p and (p.name, p.pid, p.is_alive())


def sleep_then_identity(s):
    """(multiprocessing.current_process()._identity, pid) of this worker,
    after s seconds (so that tasks given at once run in different
    workers)."""
    import multiprocessing

    time.sleep(s)
    return multiprocessing.current_process()._identity, os.getpid()


def put_init(x):
    """Puts x on the queue set_init kept."""
    _init_value.put(x)
    return x


def put(q, x):
    q.put(x)
    return x


def argv():
    import sys

    return sys.argv


def sleep_unless_first(folder):
    """An initializer that returns at once in the first worker to run it
    (the one that creates folder/first) and sleeps 30 s in the others."""
    try:
        os.close(os.open(os.path.join(folder, "first"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        time.sleep(30)


def init_unless(path):
    """An initializer that fails while path exists."""
    if os.path.exists(path):
        raise RuntimeError(f"the marker {path} blocks start-up")


def run_script(code, timeout=60, env=None, args=()):
    """Runs code (dedented) as a script file of its own, in a temporary
    folder, with shmexec importable as the tests import it, and args on
    its command line; returns the CompletedProcess."""
    import subprocess
    import sys
    import tempfile
    import textwrap

    import _paths

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "script.py")
        with open(path, "w") as f:
            f.write(textwrap.dedent(code))
        e = dict(os.environ, PYTHONPATH=_paths.PYTHONPATH)
        e.update(env or {})
        return subprocess.run([sys.executable, path, *args], capture_output=True, text=True, timeout=timeout, env=e, cwd=d)


def buffer_root(obj):
    """The type name of the object that owns obj's memory, following
    numpy bases and memoryview objects (mmap: a mapping of the segment;
    c_char_Array_N: a result read where the worker wrote it)."""
    b = obj
    while True:
        base = getattr(b, "base", None)
        if base is not None and not isinstance(b, memoryview):
            b = base
        elif isinstance(b, memoryview) and b.obj is not None and b.obj is not b:
            b = b.obj
        elif isinstance(b, Adopting):
            b = b.buf
        else:
            return type(b).__name__


def array_info(a):
    """Where a large argument's memory is, and what can be done with it."""
    import numpy

    return buffer_root(a), bool(a.flags.writeable), a.ctypes.data % 64, int(numpy.sum(a, dtype=numpy.int64))


def scribble_then_wait(a, marker):
    """The first time (marker is created then): writes over its argument
    and waits to be killed. A retry returns the sum of what it reads."""
    import numpy

    if os.path.exists(marker):
        return int(numpy.sum(a, dtype=numpy.int64))
    a[:] = 0
    open(marker, "w").close()
    time.sleep(60)
    return -1


def scribble(a):
    a += 1
    return int(a[0])


def keep_array(a):
    _kept.append(a)
    return len(_kept)


def kept_arrays():
    import numpy

    return [int(numpy.sum(a, dtype=numpy.int64)) for a in _kept if hasattr(a, "dtype")]


def ones(n):
    import numpy

    return numpy.ones(n, dtype=numpy.uint8)


def malloc_after_big(n):
    """In a worker: glibc's mallinfo2 (mmapped bytes, free heap bytes)
    while n bytes are held and after they are freed, and the process's
    private resident memory (RssAnon, bytes) after the free."""
    import ctypes

    class Info(ctypes.Structure):
        _fields_ = [(f, ctypes.c_size_t) for f in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    info = ctypes.CDLL(None).mallinfo2
    info.restype = Info
    b = b"x" * n  # written: bytes(n) is calloc's, whose fresh pages stay untouched
    held = info().hblkhd
    del b
    return held, info().fordblks, rss_anon(os.getpid())


def rss_anon(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) << 10
    raise LookupError("no RssAnon")


@contextlib.contextmanager
def outcomes_come_early(ex, deadline=60):
    """Within it, each job that ex submits ends, and the collector fetches
    its outcome (books.early), before its submitter records it
    (Engine._attach waits for that): as on a machine where a tiny task
    ends before its submit returns. In the collector thread the attach
    fetches the outcome itself, as the collector would. Yields a list of
    the jobs whose outcome had not come by the deadline."""
    books, attach, missed = ex._books, ex._attach, []

    def slow_attach(fut, job):
        end = time.monotonic() + deadline
        while job not in books.early and time.monotonic() < end:
            if threading.current_thread() is ex._collector:
                ex._wait_one(job, 0, reported=True)
            time.sleep(0.001)
        if job not in books.early:
            missed.append(job)
        return attach(fut, job)

    ex._attach = slow_attach
    try:
        yield missed
    finally:
        del ex._attach


def send_through(end, data):
    """Sends data through end, a multiprocessing Connection or a socket
    that the worker got as an argument; returns the worker's pid."""
    if hasattr(end, "send_bytes"):
        end.send_bytes(data)
    else:
        end.sendall(data)
    return os.getpid()


class Registered:
    """A type whose own pickling fails, sent with the reducer that this
    module registers with multiprocessing.reduction, in the caller and in
    each worker that imports it (as multiprocessing's users register theirs)."""

    def __init__(self, v):
        self.v = v

    def __reduce__(self):
        raise TypeError("Registered is sent only with its registered reducer")


def _rebuild_registered(v):
    return Registered(v + 1)  # each trip adds 1: the reducer ran


def _reduce_registered(obj):
    return _rebuild_registered, (obj.v,)


def registered_value(obj):
    return obj.v


def make_registered(v):
    return Registered(v)


def register_reducer():
    """Registers Registered's reducer (multiprocessing.reduction.register)."""
    from multiprocessing import reduction

    reduction.register(Registered, _reduce_registered)


def call_on(f, *args):
    """f(*args), in the worker: f travels as an argument (a lambda, by
    value with cloudpickle)."""
    return f(*args)
