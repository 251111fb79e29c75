#!/bin/sh
# serve_demo: one pool served to a C client and a Python client at once.
# `shmexec serve` runs Python workers whose raw-bytes handlers C can call
# (--handlers) and which run Python calls by reference; `shmexec stat`
# shows the pool. Run from the repository root after `make` (make demo
# does it).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/shmexec-serve-demo.XXXXXX")
sock=$dir/pool.sock
export PYTHONPATH="$root/python:$root/python/tests"
"$root/build/shmexec" serve --socket "$sock" --workers 2 \
	-- python3 -m shmexec.worker --handlers served_funcs &
serve=$!
trap 'kill $serve 2>/dev/null || true; rm -rf "$dir"' EXIT INT TERM
i=0
while [ ! -S "$sock" ]; do
	i=$((i + 1)); [ $i -lt 300 ] || { echo "serve did not start" >&2; exit 1; }
	sleep 0.1
done
"$root/build/attach_demo" "$sock" 20000 &
c=$!
python3 - "$sock" <<'PY'
import sys, shmexec, served_funcs
with shmexec.Pool(connect=sys.argv[1]) as pool:
    total = sum(pool.map(served_funcs.square, range(100_000), progress=True))
print(f"python client: sum of squares below 100,000 = {total}")
PY
wait $c
"$root/build/shmexec" stat --socket "$sock" --count 1
kill -TERM $serve
wait $serve
echo "serve drained and exited on SIGTERM"
