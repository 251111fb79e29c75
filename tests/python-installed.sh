#!/usr/bin/env bash
# The Python package as a user gets it, tested from a fresh environment:
#  1. `python -m build` makes the sdist and, from the sdist, the wheel
#     (build isolation: pip fetches the build requirements from the index,
#     as a user's pip does), so the sdist is proven to hold what it needs;
#  2. the wheel is a platform wheel that bundles the library and header;
#  3. a new virtual environment gets the wheel with pip, and the Python
#     tests run from a folder outside the checkout, with the venv's python
#     called by its full path (not activated), against the installed
#     package only (tests/_paths.py fails the run otherwise);
#  4. the README's one-liner, the self-check, the worker run by hand, and
#     a C program built against get_include() and the bundled library.
# Usage: tests/python-installed.sh [PYTHON]   (make test-install)
set -euo pipefail
PYTHON=${1:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
dist=$root/build/dist
tools=$root/build/venv-build
work=$(mktemp -d "${TMPDIR:-/tmp}/shmexec-installed.XXXXXX")
trap 'rm -rf "$work"' EXIT
say() { printf '== %s\n' "$*"; }

version=$(sed -n 's/^#define SHMX_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)/\2/p' "$root/include/shmexec.h" | paste -sd.)

say "build the sdist and the wheel (python -m build, pinned)"
if [ ! -x "$tools/bin/python" ]; then
    "$PYTHON" -m venv "$tools"
    "$tools/bin/pip" install --quiet "build==1.6.1"
fi
rm -rf "$dist"
(cd "$root" && "$tools/bin/python" -m build --outdir "$dist" . > "$work/build.log" 2>&1) || { cat "$work/build.log"; exit 1; }
wheel=$dist/shmexec-$version-py3-none-linux_x86_64.whl
sdist=$dist/shmexec-$version.tar.gz
ls -l "$dist"
[ -f "$wheel" ] || { echo "no $wheel (a platform wheel, py3-none-linux_x86_64)"; exit 1; }
[ -f "$sdist" ] || { echo "no $sdist"; exit 1; }
"$PYTHON" - "$wheel" "$sdist" <<'PY'
import sys, tarfile, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
for need in ("shmexec/__init__.py", "shmexec/worker.py", "shmexec/libshmexec.so.0", "shmexec/include/shmexec.h"):
    assert need in names, f"the wheel lacks {need}"
meta = next(n for n in names if n.endswith(".dist-info/WHEEL"))
wheel = zipfile.ZipFile(sys.argv[1]).read(meta).decode()
assert "Root-Is-Purelib: false" in wheel and "Tag: py3-none-linux_x86_64" in wheel, wheel
members = {m.split("/", 1)[1] for m in tarfile.open(sys.argv[2]).getnames() if "/" in m}
for need in ("go.mod", "go.sum", "setup.py", "include/shmexec.h", "capi/shim.c", "capi/shmexec.map", "executor/pool.go", "ring/ring.go",
             "internal/sysx/pause_amd64.s", "internal/rtpatch/patch.go"):
    assert need in members, f"the sdist lacks {need}"
assert not any(m.endswith("_test.go") for m in members), "the sdist carries Go tests"
print(f"wheel: {len(names)} files; sdist: {len(members)} files")
PY

say "the wheel's library carries the Go runtime change (internal/rtpatch)"
(cd "$work" && "$PYTHON" -c 'import sys, zipfile; open("lib.so", "wb").write(zipfile.ZipFile(sys.argv[1]).read("shmexec/libshmexec.so.0"))' "$wheel")
"${GO:-go}" version -m "$work/lib.so" | grep -q -- '-tags=shmexec_rtpatch' ||
    { echo "the wheel's libshmexec.so was built without internal/rtpatch's change"; "${GO:-go}" version -m "$work/lib.so"; exit 1; }
rm -f "$work/lib.so"

say "a fresh virtual environment gets the wheel"
"$PYTHON" -m venv "$work/venv"
py=$work/venv/bin/python   # by full path: the venv is never activated
"$py" -m pip install --quiet "$wheel"
# the tests' own dependencies (Dask, numpy), pinned; without them test_dask skips, saying why
"$py" -m pip install --quiet -r "$root/python/tests/requirements.txt" ||
    echo "python-installed: the test requirements could not be installed; test_dask will skip" >&2
cd "$work"   # outside the checkout from here on
env -u PYTHONPATH -u SHMEXEC_LIB "$py" -c 'import shmexec, sys; print("installed:", shmexec.__file__, shmexec.LIBRARY_PATH)'

say "the README's command, the self-check, the worker run by hand"
out=$(env -u PYTHONPATH -u SHMEXEC_LIB "$py" -c "import shmexec; print(shmexec.Executor(2).submit(abs, -3).result())")
[ "$out" = 3 ] || { echo "README command printed $out, want 3"; exit 1; }
env -u PYTHONPATH -u SHMEXEC_LIB "$py" -m shmexec
rc=0; env -u PYTHONPATH -u SHMEXEC_LIB "$py" -m shmexec.worker 2> worker.err || rc=$?
[ "$rc" = 2 ] && grep -q "a pool starts it" worker.err || { echo "shmexec.worker by hand: exit $rc, $(cat worker.err)"; exit 1; }

say "a C program built against get_include() and the bundled library"
inc=$(env -u PYTHONPATH "$py" -c 'import shmexec; print(shmexec.get_include())')
lib=$(env -u PYTHONPATH "$py" -c 'import shmexec, os; print(os.path.dirname(shmexec.get_library()))')
case "$inc" in "$work"/venv/*) ;; *) echo "get_include() is $inc, not in the venv"; exit 1;; esac
cc -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -I"$inc" -o pool_demo "$root/examples/c/pool_demo.c" \
    -L"$lib" -l:libshmexec.so.0 -Wl,-rpath,"$lib"
./pool_demo 1000

say "the Python tests against the installed package, from $work"
cp -r "$root/python/tests" "$work/tests"
env -u PYTHONPATH -u SHMEXEC_LIB SHMEXEC_TEST_INSTALLED=1 SHMEXEC_BUILD="$root/build" \
    timeout 600 "$py" -m unittest discover -s tests -v
