# shmexec — build, test, demo, benchmarks.
#
#   make demo   the main job: a demo of shmexec across processes
#   make test   everything that must pass (Go with -race and crash points, fuzz briefly)
#   make bench  benchmarks, each beside its baseline from the same run
#   make fuzz   longer fuzzing of everything that reads shared memory

GO        ?= go
FUZZTIME  ?= 5s
LONGFUZZ  ?= 2m
CRASHTAGS := -tags shmexec_crash

FUZZ_TARGETS := \
	./shm:FuzzParseHeader \
	./ring:FuzzDecodeCell \
	./ring:FuzzRingOps

.PHONY: all build test test-go fuzz-quick fuzz bench demo vet clean

all: build

build:
	$(GO) build ./...

vet:
	$(GO) vet ./...
	$(GO) vet $(CRASHTAGS) ./...

test: vet test-go fuzz-quick

test-go:
	$(GO) test -race $(CRASHTAGS) -count=1 -timeout 15m ./...

fuzz-quick:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

fuzz:
	$(MAKE) fuzz-quick FUZZTIME=$(LONGFUZZ)

bench:
	$(GO) test -run '^$$' -bench . -benchtime 200000x -count 1 ./ring

demo:
	$(GO) run ./examples/go/ringdemo

clean:
	rm -rf build
