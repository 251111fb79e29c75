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
	./ring:FuzzRingOps \
	./executor:FuzzDecodeBatch \
	./executor:FuzzDecodeBatchResult \
	./executor:FuzzPayloadRefs

.PHONY: all build test test-go fuzz-quick fuzz bench demo vet clean

all: build

build:
	$(GO) build ./...

vet:
	$(GO) vet ./...
	$(GO) vet $(CRASHTAGS) ./...

test: vet test-go fuzz-quick

# The race runtime sleeps 1 s at every process exit by default; the tests
# start hundreds of worker processes.
test-go:
	GORACE=atexit_sleep_ms=0 $(GO) test -race $(CRASHTAGS) -count=1 -timeout 15m ./...

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
	$(GO) test -run '^$$' -bench RoundTrip -benchtime 20000x -count 1 ./executor
	$(GO) test -run '^$$' -bench Map -benchtime 1000000x -count 1 ./executor
	$(GO) test -run '^$$' -bench Recovery -benchtime 50x -count 1 ./executor

demo:
	$(GO) run ./examples/go/ringdemo
	$(GO) run ./examples/go/pooldemo

clean:
	rm -rf build
