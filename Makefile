# shmexec — build, test, demo, benchmarks.
#
#   make demo   the main job: a demo of shmexec across processes
#   make test   everything that must pass (Go with -race and crash points, fuzz briefly)
#   make bench  benchmarks, each beside its baseline from the same run
#   make fuzz   longer fuzzing of everything that reads shared memory
#   make model  model-check the ring and job protocols with spin (long)

GO        ?= go
# make test fuzzes by count, not by time: with a duration, Go 1.26's fuzz
# coordinator can fail a target with "context deadline exceeded" as the
# time runs out (golang/go#75804, fixed in 1.27), which CI hit once on a
# loaded machine with no failing input. 100,000 runs are 1-6 s a target here.
FUZZTIME  ?= 100000x
LONGFUZZ  ?= 2m
CRASHTAGS := -tags shmexec_crash

FUZZ_TARGETS := \
	./shm:FuzzParseHeader \
	./ring:FuzzDecodeCell \
	./ring:FuzzRingOps \
	./executor:FuzzDecodeBatch \
	./executor:FuzzDecodeBatchResult \
	./executor:FuzzPayloadRefs \
	./executor:FuzzParseTicket

.PHONY: all build lib c-examples test soak test-go test-go-module test-c test-python test-cpython test-python-newer test-install test-bench fuzz-quick fuzz bench bench-plots demo vet clean install model model-quick

# (Defined before the first rule that names them: make expands a rule's
# prerequisites as it reads the rule.)
LIB      := build/libshmexec.so
CFLAGS_C := -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -Iinclude
C_EXAMPLES := build/pool_demo build/crash_demo build/attach_demo
C_TESTS    := build/ctest

all: build lib c-examples $(C_TESTS)

build:
	$(GO) build ./...

# libshmexec.so: only shmx_* exported (version script), with a SONAME,
# and a Go runtime with two small changes (internal/rtpatch: the flags it
# prints, or none and a warning where the toolchain's runtime does not fit).

lib: $(LIB)

RTPATCH = $(shell GO=$(GO) $(GO) run ./internal/rtpatch -out build/_rtpatch)

$(LIB): $(shell find capi executor ring shm internal server -name '*.go' -o -name '*.c' -o -name '*.h' -o -name '*.map') include/shmexec.h go.mod
	mkdir -p build
	$(GO) build $(RTPATCH) -buildmode=c-shared \
		-ldflags "-extldflags '-Wl,--version-script=$(CURDIR)/capi/shmexec.map -Wl,-soname,libshmexec.so.0'" \
		-o $(LIB) ./capi
	rm -f build/libshmexec.h   # cgo's generated header is not the contract
	ln -sf libshmexec.so build/libshmexec.so.0

# The shmexec command (serve, stat); go's cache decides what to rebuild.
build/shmexec: FORCE
	mkdir -p build
	$(GO) build -o $@ ./cmd/shmexec

# The benchmark command, a module of its own (bench/go.mod) so that its
# plotting libraries are not the shmexec module's dependencies.
build/shmexec-bench: FORCE
	mkdir -p build
	cd bench && $(GO) build -o ../$@ .

FORCE:

# C programs: the examples a user would copy (examples/c), the C ABI's
# tests (tests/c) and the C benchmark (bench/c), each also under ASan.
C_SRC = $(firstword $(wildcard examples/c/$(1).c tests/c/$(1).c bench/c/$(1).c))

.SECONDEXPANSION:
build/%: $$(call C_SRC,%) include/shmexec.h $(LIB)
	$(CC) $(CFLAGS_C) -o $@ $< -Lbuild -lshmexec -Wl,-rpath,'$$ORIGIN'

build/%-asan: $$(call C_SRC,%) include/shmexec.h $(LIB)
	$(CC) $(CFLAGS_C) -fsanitize=address -g -o $@ $< -Lbuild -lshmexec -Wl,-rpath,'$$ORIGIN'

c-examples: $(C_EXAMPLES)

# The C ABI's tests: the header compiles as strict C and as C++, the
# library exports only shmx_ names and has a SONAME, the C tests and
# examples pass, also under AddressSanitizer (leak checking included).
test-c: $(C_EXAMPLES) $(C_TESTS) build/cbench build/ctest-asan build/pool_demo-asan build/crash_demo-asan
	printf '#include "shmexec.h"\nint main(void) { return (int)shmx_version_number() < 0; }\n' > build/hdr.c
	$(CC) -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude -c -o build/hdr.o build/hdr.c
	cp build/hdr.c build/hdr.cpp
	$(CXX) -std=c++17 -Wall -Werror -Iinclude -c -o build/hdr-cpp.o build/hdr.cpp
	@bad=$$(nm -D --defined-only $(LIB) | awk '{print $$3}' | grep -v '^shmx_'); \
		if [ -n "$$bad" ]; then echo "libshmexec.so exports more than shmx_ names: $$bad"; exit 1; fi
	@readelf -d $(LIB) | grep -q 'SONAME.*libshmexec.so.0' || { echo "libshmexec.so has no SONAME"; exit 1; }
	@$(GO) version -m $(LIB) | grep -q -- '-tags=shmexec_rtpatch' || { echo "libshmexec.so was built without internal/rtpatch's runtime change"; exit 1; }
	rm -rf build/prefix && $(MAKE) --no-print-directory install PREFIX=$(CURDIR)/build/prefix
	PKG_CONFIG_PATH=build/prefix/lib/pkgconfig sh -c '$(CC) -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror $$(pkg-config --cflags shmexec) -o build/installed_demo examples/c/pool_demo.c $$(pkg-config --libs shmexec) -Wl,-rpath,$(CURDIR)/build/prefix/lib'
	timeout 300 ./build/installed_demo 100
	timeout 300 ./build/ctest
	timeout 300 ./build/pool_demo 20000
	timeout 300 ./build/crash_demo
	@# Sanitizer reports of worker processes do not change the exit status
	@# of the program under test: look for them in the output.
	timeout 300 ./build/ctest-asan > build/asan.log 2>&1 || { cat build/asan.log; exit 1; }
	timeout 300 ./build/pool_demo-asan 5000 >> build/asan.log 2>&1 || { cat build/asan.log; exit 1; }
	timeout 300 ./build/crash_demo-asan >> build/asan.log 2>&1 || { cat build/asan.log; exit 1; }
	@! grep -E 'ERROR: (Address|Leak)Sanitizer' build/asan.log || { echo "sanitizer reports above"; exit 1; }
	@grep -E '^[0-9]+ passed, 0 failed' build/asan.log

vet:
	$(GO) vet ./...
	$(GO) vet $(CRASHTAGS) ./...
	cd bench && $(GO) vet ./...

test: vet model-quick test-go test-go-module test-c test-python test-cpython test-python-newer test-install test-bench fuzz-quick

# The Promela models of docs/model (spin from Debian's packages): small
# configurations and the mutants that must fail in make test; the full
# configurations that docs/model/README.md reports in make model.
model-quick:
	docs/model/check.sh quick

model:
	docs/model/check.sh full

PYTHON ?= python3

# The Python binding's tests, against the real library.
test-python: $(LIB) build/shmexec build/attach_demo
	cd python && timeout 600 $(PYTHON) -m unittest discover -s tests -v
	cd python && timeout 300 $(PYTHON) -m shmexec.bench --quick > /dev/null
	cd python && timeout 120 $(PYTHON) -m shmexec.bench --tails --quick > /dev/null
	cd python && if $(PYTHON) -c 'import distributed' 2>/dev/null; then timeout 300 $(PYTHON) -m shmexec.bench --dask --quick > /dev/null; fi

# CPython's own tests of multiprocessing.Pool and concurrent.futures
# against shmexec (python/tests/cpython/run.py): each test in a process of
# its own with a deadline; not_applicable.txt lists, with reasons, the few
# that do not apply. Needs an interpreter with the `test` package:
# Debian's python3 with libpython3.11-testsuite (.ci/run installs it).
CPYTHON ?= /usr/bin/python3

test-cpython: $(LIB)
	cd python/tests/cpython && timeout 1200 $(CPYTHON) run.py -j 2 --deadline 120

# The package on a newer Python than python3 (3.11): the Python tests, and
# CPython 3.13's own tests of the pool and the executor (whose
# concurrent.futures tests are a package of modules; suites.py reads both
# layouts), in a virtual environment with the pinned cloudpickle. Where no
# Python 3.13 is installed (PYTHON_NEWER: /usr/bin/python3.13, or pyenv's)
# it says so and is skipped.
PYTHON_NEWER ?= $(firstword $(wildcard /usr/bin/python3.13 /usr/local/bin/python3.13 $(HOME)/.pyenv/versions/3.13*/bin/python3.13))

test-python-newer: $(LIB) build/shmexec build/attach_demo
	@if [ -z "$(PYTHON_NEWER)" ]; then echo "test-python-newer: SKIPPED, no Python 3.13 installed"; exit 0; fi; \
	set -e; venv=$(CURDIR)/build/venv-newer; \
	[ -x $$venv/bin/python ] || $(PYTHON_NEWER) -m venv $$venv; \
	$$venv/bin/pip install --quiet $$(grep -E '^(cloudpickle|numpy)==' python/tests/requirements.txt); \
	$$venv/bin/python -V; \
	cd python && timeout 600 $$venv/bin/python -m unittest discover -s tests; \
	cd tests/cpython && timeout 1200 $$venv/bin/python run.py -j 2 --deadline 120

# The Python package as a user installs it: sdist and wheel built with
# python -m build, the wheel installed into a fresh venv, the Python tests
# run from outside the checkout against it (tests/python-installed.sh).
test-install: build/shmexec build/attach_demo
	tests/python-installed.sh $(PYTHON)

# A Go program outside this module that uses it (examples/go-module).
test-go-module:
	mkdir -p build
	cd examples/go-module && $(GO) vet ./... && $(GO) build -o ../../build/squares .
	timeout 120 ./build/squares

# The race runtime sleeps 1 s at every process exit by default; the tests
# start hundreds of worker processes.
test-go:
	GORACE=atexit_sleep_ms=0 $(GO) test -race $(CRASHTAGS) -count=1 -timeout 15m ./...
	cd bench && $(GO) test -race -count=1 ./...

# Long runs (docs/RELIABILITY.md): the scribbler over many seeds, the Go
# pool's chaos soak (1,000,000 jobs, a kill every 10 ms), and the Python
# Executor's (a kill every 20 ms, then every 5 ms while workers start).
# Each writes its figures to build/soak-*.log as well.
soak: lib build/shmexec build/attach_demo
	mkdir -p build
	SHMEXEC_SOAK=1 $(GO) test -count=1 -timeout 60m -v -run '^(TestScribblerHarmsNoOne|TestChaosSoak)$$' ./executor > build/soak-go.log 2>&1; \
		rc=$$?; grep -a -E '^(--- |ok|FAIL|PASS)|jobs' build/soak-go.log | grep -a -v -E '^    --- PASS'; exit $$rc
	cd python/tests && SHMEXEC_SOAK=1 timeout 1800 $(PYTHON) -m unittest -v test_chaos > ../../build/soak-python.log 2>&1; \
		rc=$$?; tail -8 ../../build/soak-python.log; exit $$rc

fuzz-quick:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

fuzz:
	$(MAKE) fuzz-quick FUZZTIME=$(LONGFUZZ)

# All figures in one run, each beside its baselines (docs/BENCHMARKS.md):
# the table on stdout, every figure in build/bench.json, plots in
# build/plots. bench-plots redraws the plots that docs/ shows.
bench: lib build/shmexec build/shmexec-bench build/cbench
	$(GO) test -run '^$$' -bench . -benchtime 200000x -count 1 ./ring
	./build/shmexec bench --save build/bench.json --plots build/plots

bench-plots: lib build/shmexec build/shmexec-bench build/cbench
	./build/shmexec bench --save build/bench.json --plots docs

# CI: the whole bench runs, briefly, and its JSON is complete (no timing
# is asserted).
test-bench: lib build/shmexec build/shmexec-bench build/cbench
	./build/shmexec bench --quick --json > build/bench-quick.json
	$(PYTHON) -c 'import json,sys; r=json.load(open("build/bench-quick.json")); g={f["group"] for f in r["figures"]}; need={"round trip, empty job","throughput, tiny jobs","payload","recovery"}; n={f["name"] for f in r["figures"]}; c={"C→C p50, busy worker","C→C p50, sleeping worker"}; sys.exit(0 if need <= g and c <= n and r["payload"] and r["scaling"] and r["latency_us"] else "bench JSON lacks figures: %s" % sorted((need - g) | (c - n)))'

demo: c-examples build/shmexec
	$(GO) run ./examples/go/ringdemo
	$(GO) run ./examples/go/pooldemo
	./build/pool_demo
	./build/crash_demo
	cd python && $(PYTHON) -m shmexec && $(PYTHON) ../examples/python/demo.py
	examples/serve_demo.sh

PREFIX ?= /usr/local

install: $(LIB)
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 0755 $(LIB) $(DESTDIR)$(PREFIX)/lib/libshmexec.so.0
	ln -sf libshmexec.so.0 $(DESTDIR)$(PREFIX)/lib/libshmexec.so
	install -m 0644 include/shmexec.h $(DESTDIR)$(PREFIX)/include/shmexec.h
	sed -e 's|@PREFIX@|$(PREFIX)|' capi/shmexec.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/shmexec.pc

clean:
	rm -rf build
