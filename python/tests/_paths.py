"""Where the tests find shmexec and the checkout's programs.

By default the tests run against the checkout: python/ goes in front of
sys.path, and the library is the checkout's build/libshmexec.so. With
SHMEXEC_TEST_INSTALLED=1 they run against the installed package only
(make test-install: a wheel in a fresh virtual environment, the tests
copied outside the checkout): nothing is added to sys.path, and importing
shmexec from anywhere but site-packages fails the run. SHMEXEC_BUILD
names the folder of build/shmexec and build/attach_demo (default: the
checkout's build/)."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.dirname(HERE)
INSTALLED = os.environ.get("SHMEXEC_TEST_INSTALLED") == "1"
BUILD = os.environ.get("SHMEXEC_BUILD") or os.path.join(os.path.dirname(PYDIR), "build")

# The folders a child Python process needs on PYTHONPATH to import
# shmexec as this process does, and the tests' helper modules.
PATH = [HERE] if INSTALLED else [PYDIR, HERE]
for p in reversed(PATH):
    if p not in sys.path:
        sys.path.insert(0, p)
PYTHONPATH = os.pathsep.join(PATH)

import shmexec  # noqa: E402

if INSTALLED:
    where = os.path.dirname(os.path.abspath(shmexec.__file__))
    if "site-packages" not in where.split(os.sep) or os.environ.get("SHMEXEC_LIB"):
        raise SystemExit(f"SHMEXEC_TEST_INSTALLED=1, but shmexec was imported from {where} "
                         f"(SHMEXEC_LIB={os.environ.get('SHMEXEC_LIB')!r}), not from an installed package")
    if not shmexec.LIBRARY_PATH.startswith(where + os.sep):
        raise SystemExit(f"the installed shmexec loaded {shmexec.LIBRARY_PATH}, not its bundled library")
