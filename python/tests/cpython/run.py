"""Runs CPython's Pool and Executor tests against shmexec (suites.py),
each test in a process of its own with a deadline, so that a hang fails
that test by name. Every test must pass, or be listed in
not_applicable.txt with its reason; a listed test that passes fails the
run too (the list must stay short and true).

    python3 run.py [-j JOBS] [--deadline SECONDS] [TEST_ID_PREFIX...]

Run with an interpreter that has the `test` package (Debian's
/usr/bin/python3 with libpython3.11-testsuite)."""

import argparse
import concurrent.futures
import os
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def not_applicable():
    """test id -> reason, from not_applicable.txt."""
    out = {}
    with open(os.path.join(HERE, "not_applicable.txt")) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            test_id, _, reason = line.partition(":")
            if not reason.strip():
                raise SystemExit(f"not_applicable.txt: {test_id} has no reason")
            out[test_id.strip()] = reason.strip()
    return out


def test_ids():
    sys.path.insert(0, HERE)
    import suites

    ids = []

    def walk(s):
        for t in s:
            if isinstance(t, unittest.TestSuite):
                walk(t)
            else:
                ids.append(t.id())
    walk(unittest.defaultTestLoader.loadTestsFromModule(suites))
    return sorted(ids)


def run_one(test_id, deadline):
    env = dict(os.environ)
    start = time.monotonic()
    try:
        r = subprocess.run([sys.executable, "-m", "unittest", "-v", test_id], cwd=HERE, env=env,
                           capture_output=True, text=True, timeout=deadline)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return test_id, "hang", f"no result within {deadline} s\n{out}{err}", time.monotonic() - start
    text = r.stdout + r.stderr
    if r.returncode == 0:
        status = "skipped" if "skipped" in text.splitlines()[0:3] and "OK (skipped=1)" in text else "passed"
        return test_id, status, text, time.monotonic() - start
    return test_id, "failed", text, time.monotonic() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-j", type=int, default=2)
    ap.add_argument("--deadline", type=float, default=120)
    ap.add_argument("-v", action="store_true", help="print the output of failures in full")
    ap.add_argument("prefix", nargs="*")
    a = ap.parse_args()
    listed = not_applicable()
    ids = [t for t in test_ids() if not a.prefix or any(t.startswith(p) or t.split(".", 1)[1].startswith(p) for p in a.prefix)]
    unknown = [t for t in listed if t not in set(test_ids())]
    results = {}
    with concurrent.futures.ThreadPoolExecutor(a.j) as pool:
        for test_id, status, text, secs in pool.map(lambda t: run_one(t, a.deadline), ids):
            results[test_id] = (status, text)
            print(f"{status:8} {secs:5.1f}s {test_id}" + (f"   (listed: {listed[test_id]})" if test_id in listed else ""), flush=True)
    passed = [t for t, (s, _) in results.items() if s in ("passed", "skipped") and t not in listed]
    expected = [t for t, (s, _) in results.items() if s not in ("passed", "skipped") and t in listed]
    bad = [t for t, (s, _) in results.items() if s not in ("passed", "skipped") and t not in listed]
    stale = [t for t, (s, _) in results.items() if s in ("passed", "skipped") and t in listed]
    for t in bad:
        status, text = results[t]
        print(f"\n==== {status.upper()}: {t}\n" + (text if a.v else "\n".join(text.splitlines()[-25:])))
    for t in stale:
        print(f"\n==== LISTED BUT PASSES: {t} ({listed[t]}): take it off not_applicable.txt")
    for t in unknown:
        print(f"\n==== LISTED BUT NOT A TEST: {t}")
    print(f"\nCPython conformance: {len(passed)} passed, {len(expected)} not applicable (listed), "
          f"{len(bad)} failed, {len(stale)} listed but passing")
    print(f"{len(passed)} passed, {len(bad) + len(stale) + len(unknown)} failed, {len(expected)} skipped")
    return 1 if bad or stale or unknown else 0


if __name__ == "__main__":
    sys.exit(main())
