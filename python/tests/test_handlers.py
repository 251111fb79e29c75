"""Raw-bytes handlers of a Python worker (`python -m shmexec.worker
--handlers MODULE`), called by name through the C ABI as a C client or
`shmexec serve` would: a value, a handler that raises, an unknown or
private name, and an output over the pool's max payload."""

import ctypes
import os
import sys
import unittest

import _paths  # noqa: E402,F401  (sys.path: the checkout's package, or the installed one)

import shmexec  # noqa: E402
from shmexec import _lib  # noqa: E402

L = shmexec._lib.LIB


class NamedHandlerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cfg = _lib.PoolConfig()
        L.shmx_pool_config_init(ctypes.byref(cfg))
        cfg.workers = 1
        cfg.max_payload = 1 << 20
        boot = "import sys; sys.path[:0] = %r; from shmexec.worker import main; sys.exit(main(sys.argv[1:]))" % (
            [p for p in sys.path if p],)
        argv = [a.encode() for a in (sys.executable, "-c", boot, "--handlers", "served_funcs")]
        cls._argv = (ctypes.c_char_p * (len(argv) + 1))(*argv, None)
        cfg.worker_argv = ctypes.cast(cls._argv, ctypes.POINTER(ctypes.c_char_p))
        cls.pool = ctypes.c_void_p()
        rc = L.shmx_pool_create(ctypes.byref(cfg), ctypes.byref(cls.pool))
        assert rc == _lib.SHMX_OK, rc

    @classmethod
    def tearDownClass(cls):
        L.shmx_pool_close(cls.pool, 30_000_000_000)

    def call(self, handler, data):
        """(status, output or error text) of one call, waited for 30 s at most."""
        job, res = ctypes.c_uint64(), _lib.Result()
        rc = L.shmx_call(self.pool, handler.encode(), data, len(data), None, 30_000_000_000, ctypes.byref(job), ctypes.byref(res))
        self.assertEqual(rc, _lib.SHMX_OK, f"{handler}: the call itself failed or timed out: {rc}")
        try:
            if res.status == _lib.SHMX_OK:
                return res.status, ctypes.string_at(res.data, res.len) if res.len else b""
            return res.status, (res.error or b"").decode()
        finally:
            L.shmx_result_release(self.pool, ctypes.byref(res))

    def test_value(self):
        for _ in range(3):  # the worker goes on after each
            self.assertEqual(self.call("upper", b"abc"), (_lib.SHMX_OK, b"ABC"))

    def test_failures_end_their_task_only(self):
        st, err = self.call("fails", b"xy")
        self.assertEqual(st, _lib.SHMX_EHANDLER)
        self.assertIn("ValueError: bad bytes: b'xy'", err)
        for name in ("nosuch", "_private"):
            st, err = self.call(name, b"")
            self.assertEqual(st, _lib.SHMX_EHANDLER, name)
            self.assertIn(f"UnknownHandler: no handler {name!r} in module served_funcs", err)
        st, err = self.call("grow", b"")
        self.assertEqual(st, _lib.SHMX_EHANDLER)
        self.assertIn("ResultTooLarge", err)
        self.assertEqual(self.call("upper", b"ok"), (_lib.SHMX_OK, b"OK"))


if __name__ == "__main__":
    unittest.main()
