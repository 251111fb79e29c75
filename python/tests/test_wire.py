"""The frames of _wire on their own: what each kind of call and value
travels as, and that every frame reads back as it was written."""

import marshal
import os
import sys
import unittest

import _paths  # noqa: E402,F401  (sys.path: the checkout's package, or the installed one)

from shmexec import _wire  # noqa: E402
import helpers  # noqa: E402


class WireTest(unittest.TestCase):
    def call_frame(self, args, kwargs):
        parts, total = _wire.dumps_call(helpers.add, _wire.function_ref(helpers.add), args, kwargs)
        frame = _wire.join(parts)
        self.assertEqual(len(frame), total)
        return frame

    def test_plain_arguments_travel_marshalled(self):
        frame = self.call_frame((1, "a", None, 2.5, True, b"ab"), {"k": -3})
        self.assertTrue(_wire.is_call(frame))
        self.assertTrue(_wire.is_plain_call(frame))
        fn, args, kwargs = _wire.loads_call(frame, {})
        self.assertIs(fn, helpers.add)
        self.assertEqual((args, kwargs), ((1, "a", None, 2.5, True, b"ab"), {"k": -3}))
        self.assertIs(type(args[5]), bytes)
        self.assertEqual(marshal.loads(frame[4:]), (_wire.function_ref(helpers.add), args, kwargs))
        # From a longer buffer, as a worker's reused input buffer.
        buf = bytearray(frame) + b"\xfestale bytes of an earlier frame"
        self.assertEqual(_wire.loads_plain_call(memoryview(buf)[4:], {})[1:], (args, kwargs))

    def test_other_arguments_travel_pickled(self):
        # bytearray: marshal would read it back as bytes.
        for args, kwargs in [((helpers.Color.RED,), {}), ((1,), {"c": helpers.Name("x")}), (([1, 2],), {}), ((bytearray(b"ab"),), {})]:
            frame = self.call_frame(args, kwargs)
            self.assertTrue(_wire.is_call(frame))
            self.assertFalse(_wire.is_plain_call(frame))
            k = int.from_bytes(frame[4:8], "little")
            self.assertEqual(frame[8 + k], 0x80)  # a pickle
            fn, got_args, got_kwargs = _wire.loads_call(frame, {})
            self.assertIs(fn, helpers.add)
            self.assertEqual((got_args, got_kwargs), (args, kwargs))
            self.assertEqual([type(a) for a in got_args], [type(a) for a in args])

    def test_functions_are_unpickled_once(self):
        functions = {}
        frame = self.call_frame((1, 2), {})
        _wire.loads_call(frame, functions)
        self.assertEqual(list(functions.values()), [helpers.add])
        key = next(iter(functions))
        functions[key] = helpers.double  # the cache answers, not pickle
        self.assertIs(_wire.loads_call(frame, functions)[0], helpers.double)

    def test_plain_values_travel_in_value_frames(self):
        for v in [None, True, 0, 2**100, 1.25, "", "é\ud800", "z" * 100_000, b"", b"x" * (_wire.BIG - 1)]:
            frame = _wire.join(_wire.dumps_value(v)[0])
            self.assertTrue(_wire.is_value(frame))
            self.assertEqual(_wire.loads(frame), ("ok", v))
            self.assertIs(type(_wire.loads(frame)[1]), type(v))
            # From a longer buffer, as a caller's reused one: what follows
            # the frame is ignored.
            buf = bytearray(frame) + b"\x01stale bytes of an earlier frame"
            self.assertEqual(_wire.load_value(memoryview(buf)[4:]), v)

    def test_other_values_travel_pickled(self):
        for v in [helpers.Color.RED, helpers.Name("n"), [1], {"a": 1}, (1,), bytearray(b"x"), b"x" * _wire.BIG, 1j]:
            frame = _wire.join(_wire.dumps_value(v)[0])
            self.assertFalse(_wire.is_value(frame))
            got = _wire.loads(frame)
            self.assertEqual(got, ("ok", v))
            self.assertIs(type(got[1]), type(v))

    def test_small_batches_of_plain_items_travel_marshalled(self):
        key = _wire.function_ref(helpers.add)
        cases = [("batch1", [1, "a", None, 2.5, True, b"ab", 2**100]), ("batch1", range(3, 9)),
                 ("batch", [(1, 2), ("a", "b"), ()]), ("batch1", [7] * _wire.BATCH_FRAME_ITEMS)]
        for kind, items in cases:
            with self.subTest(kind=kind, items=items):
                parts, total = _wire.dumps_batch(kind, helpers.add, key, items, "the items")
                frame = _wire.join(parts)
                self.assertEqual(len(frame), total)
                self.assertEqual(frame[3], _wire.PLAIN_BATCH)
                self.assertFalse(_wire.is_call(frame))
                self.assertFalse(_wire.is_value(frame))
                # From a longer buffer, as a worker's reused input buffer.
                buf = bytearray(frame) + b"\xfdstale bytes of an earlier frame"
                fn, got_kind, got = _wire.loads_plain_batch(memoryview(buf)[4:], {})
                self.assertIs(fn, helpers.add)
                self.assertEqual((got_kind, list(got)), (kind, list(items)))
                self.assertEqual([type(a) for a in got], [type(a) for a in items])

    def test_other_batches_travel_pickled(self):
        key = _wire.function_ref(helpers.add)
        cases = [("batch1", [1, helpers.Color.RED], key), ("batch1", [bytearray(b"x")], key), ("batch1", [[1]], key),
                 ("batch1", [b"x" * _wire.BIG], key), ("batch", [(1, [2])], key), ("batch", [[1, 2]], key),
                 ("batch1", [7] * (_wire.BATCH_FRAME_ITEMS + 1), key),
                 ("batch1", [1, 2], None)]  # a callable with no key (not a plain function)
        for kind, items, k in cases:
            with self.subTest(kind=kind, items=items[:3], key=k is not None):
                frame = _wire.join(_wire.dumps_batch(kind, helpers.add, k, items, "the items")[0])
                self.assertNotEqual(frame[3], _wire.PLAIN_BATCH)
                got_kind, fn, got = _wire.loads(frame)
                self.assertEqual((got_kind, fn, got), (kind, helpers.add, items))
                self.assertEqual([type(a) for a in got], [type(a) for a in items])

    def test_a_batchs_plain_values_travel_in_a_value_frame(self):
        for outs in ([1, "a", None, 2.5, True, b"x"], [], [0] * _wire.BATCH_FRAME_ITEMS):
            frame = _wire.join(_wire.dumps_batch_result(False, outs, helpers.add)[0])
            self.assertTrue(_wire.is_value(frame))
            self.assertEqual(_wire.loads(frame), ("ok", (False, outs)))
        failure = _wire.Failure(_wire.error_outcome(ValueError("x")))
        for failed, outs in ((False, [helpers.Color.RED]), (False, [[1]]), (False, [0] * (_wire.BATCH_FRAME_ITEMS + 1)),
                             (True, [1, failure])):
            frame = _wire.join(_wire.dumps_batch_result(failed, outs, helpers.add)[0])
            self.assertFalse(_wire.is_value(frame))
            ok, (got_failed, got) = _wire.loads(frame)
            self.assertEqual((ok, got_failed, len(got)), ("ok", failed, len(outs)))
            self.assertEqual([type(v) for v in got], [type(v) for v in outs])

    def test_no_frame_kind_is_mistaken_for_another(self):
        value = _wire.join(_wire.dumps_value(1)[0])
        pickled = _wire.join(_wire.dumps_parts(("ok", [1]))[0])
        call = self.call_frame((1,), {})
        oob = _wire.join(_wire.dumps_parts(("ok", [bytes(_wire.BIG)] * 3))[0])
        pickled_call = self.call_frame((helpers.Color.RED,), {})
        batch = _wire.join(_wire.dumps_batch("batch1", helpers.add, _wire.function_ref(helpers.add), [1], "the items")[0])
        frames = (value, pickled, call, oob, pickled_call, batch)
        self.assertEqual([_wire.is_value(f) for f in frames], [True, False, False, False, False, False])
        self.assertEqual([_wire.is_call(f) for f in frames], [False, False, True, False, True, False])
        self.assertEqual([_wire.is_plain_call(f) for f in frames], [False, False, True, False, False, False])
        self.assertEqual([f[3] == _wire.PLAIN_BATCH for f in frames], [False, False, False, False, False, True])
        self.assertFalse(_wire.is_call(b"\0\0\0"))
        self.assertEqual(_wire.loads(oob)[1], [bytes(_wire.BIG)] * 3)

    def test_out_of_band_buffers_are_aligned_and_marked(self):
        # Each buffer starts at a multiple of 64 bytes into the frame; the
        # KEEP bit is set for a buffer the rebuilt object keeps (Adopting,
        # as a numpy array) and not for bytes and bytearrays (copied).
        import struct

        n = _wire.HUGE
        obj = ("ok", [b"a" * (_wire.BIG + 1), helpers.Adopting(bytearray(b"k") * n), bytearray(b"c") * (_wire.BIG + 3)])
        frame = _wire.join(_wire.dumps_parts(obj)[0])
        count = struct.unpack_from("<I", frame)[0]
        lens = struct.unpack_from("<%dQ" % count, frame, 4)
        off = 4 + 8 * count + lens[0]
        seen = []
        for ln in lens[1:]:
            off += -off % 64
            k = ln & (_wire._KEEP - 1)
            seen.append((frame[off:off + 1], k, bool(ln & _wire._KEEP), bool(ln & _wire._READONLY)))
            off += k
        self.assertEqual(off, len(frame))
        self.assertEqual(seen, [(b"a", _wire.BIG + 1, False, True), (b"k", n, True, False), (b"c", _wire.BIG + 3, False, False)])
        # views() is asked for the kept buffer only, at its offset; what it
        # gives is what the object gets.
        asked = []

        def views(off, k, readonly):
            asked.append((frame[off:off + 1], k, readonly))
            return memoryview(bytearray(b"v") * k)

        got = _wire.loads(frame, views)[1]
        self.assertEqual(asked, [(b"k", n, False)])
        self.assertEqual((got[0], bytes(got[1].buf[:1]), got[2]), (obj[1][0], b"v", obj[1][2]))
        self.assertEqual((type(got[0]), type(got[2])), (bytes, bytearray))
        # Without views, or when it gives None: a copy of its own.
        for v in (None, lambda off, k, readonly: None):
            kept = _wire.loads(frame, v)[1][1].buf
            self.assertEqual((type(kept), len(kept), kept[:1]), (bytearray, n, b"k"))


if __name__ == "__main__":
    unittest.main()


class ForkingPicklerTest(unittest.TestCase):
    def test_the_kept_pickler_survives_failures_and_reductions_that_pickle(self):
        # _reduction keeps one pickler with multiprocessing's reducers a
        # thread: a dump that fails leaves nothing behind for the next, a
        # reduction that sends something itself gets a pickler of its
        # own, and out-of-band buffers go to each dump's own callback.
        import pickle
        import multiprocessing.reduction  # noqa: F401 - its reducers are what is kept
        from shmexec import _reduction

        dumps = _reduction._forking_dumps(pickle)

        class Nested:
            def __reduce__(self):
                return pickle.loads, (dumps([1, 2, 3], 5, [].append),)

        def lock_then(value):
            import threading

            return [value, threading.Lock()]

        for _ in range(2):
            with self.assertRaises(TypeError):
                dumps(lock_then(1), 5, [].append)
            got = []
            data = dumps(["a", Nested(), pickle.PickleBuffer(b"xyz")], 5, got.append)
            self.assertEqual(len(got), 1)
            value = pickle.loads(data, buffers=got)
            self.assertEqual([value[0], value[1], bytes(value[2])], ["a", [1, 2, 3], b"xyz"])
            self.assertEqual(pickle.loads(dumps({"k": (1, 2)}, 5, [].append)), {"k": (1, 2)})
