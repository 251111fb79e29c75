/*
 * ctest: the C ABI's tests, run by `make test`. The program is also its
 * own worker. It prints one line per check and "N passed, M failed".
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmexec.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static int passed, failed;

#define CHECK(cond, ...) do { \
    if (cond) { passed++; } else { failed++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } \
} while (0)

static int echo(void *ctx, const void *in, size_t len, shmx_output *out) {
    (void)ctx;
    return shmx_output_set(out, in, len);
}

static int sleepy(void *ctx, const void *in, size_t len, shmx_output *out) {
    (void)ctx; (void)out;
    int ms = 0;
    if (len == sizeof ms) memcpy(&ms, in, sizeof ms);
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return 0;
}

/* signals: input {how, sig}: how 0 raise(sig), 1 kill(getpid(), sig),
   2 pthread_kill(pthread_self(), sig), 3 a real fault of that kind. */
static volatile int zero = 0;
static int signals(void *ctx, const void *in, size_t len, shmx_output *out) {
    (void)ctx; (void)out;
    int a[2] = {0, 0};
    if (len != sizeof a) return SHMX_EINVAL;
    memcpy(a, in, sizeof a);
    switch (a[0]) {
    case 0: raise(a[1]); break;
    case 1: kill(getpid(), a[1]); break;
    case 2: pthread_kill(pthread_self(), a[1]); break;
    case 3:
        if (a[1] == SIGSEGV) *(volatile int *)(uintptr_t)zero = 1;
        if (a[1] == SIGFPE) a[0] = a[0] / zero;
        if (a[1] == SIGILL) __builtin_trap();
        if (a[1] == SIGABRT) abort();
        break;
    }
    return 0;
}

/* write_passed: writes its input to the first descriptor the pool passed on. */
static int write_passed(void *ctx, const void *in, size_t len, shmx_output *out) {
    (void)ctx; (void)out;
    const char *fds = getenv("SHMEXEC_PASS_FDS");
    if (!fds || !*fds) return SHMX_EINVAL;
    return write(atoi(fds), in, len) == (ssize_t)len ? 0 : SHMX_ESYS;
}

/* started: says so on the first passed descriptor, then sleeps as sleepy. */
static int started(void *ctx, const void *in, size_t len, shmx_output *out) {
    int rc = write_passed(ctx, "s", 1, out);
    return rc ? rc : sleepy(ctx, in, len, out);
}

static int fails(void *ctx, const void *in, size_t len, shmx_output *out) {
    (void)ctx; (void)in; (void)len;
    if (len == 0) return SHMX_EINVAL; /* no shmx_output_error: EHANDLER + strerror */
    return shmx_output_error(out, "ValueError", "bad input"), 1;
}

static int big(void *ctx, const void *in, size_t len, shmx_output *out) {
    (void)ctx; (void)in; (void)len;
    return shmx_output_alloc(out, (size_t)1 << 30) ? 0 : SHMX_ETOO_LARGE;
}

/* The value of the environment variable named by the input ("" if unset). */
static int env(void *ctx, const void *in, size_t len, shmx_output *out) {
    (void)ctx;
    char name[64];
    if (len >= sizeof name) return SHMX_EINVAL;
    memcpy(name, in, len);
    name[len] = 0;
    const char *v = getenv(name);
    return shmx_output_set(out, v ? v : "", v ? strlen(v) : 0);
}

/* child: whether this process is a worker, then what a program it runs
   inherits: every SHMEXEC_ variable but SHMEXEC_PASS_FDS, and its open
   descriptors. */
static int child(void *ctx, const void *in, size_t len, shmx_output *out) {
    (void)ctx; (void)in; (void)len;
    char buf[4096];
    int n = snprintf(buf, sizeof buf, "worker %d\n", shmx_is_worker());
    FILE *f = popen("env | grep '^SHMEXEC_' | grep -v '^SHMEXEC_PASS_FDS='; ls /proc/$$/fd", "r");
    if (!f) return SHMX_ESYS;
    n += (int)fread(buf + n, 1, sizeof buf - (size_t)n, f);
    return pclose(f) == -1 ? SHMX_ESYS : shmx_output_set(out, buf, (size_t)n);
}

static int init_fail;
static int init_ok(void *ctx) { (void)ctx; return init_fail; }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static shmx_pool *make_pool(uint32_t workers, uint32_t depth, int64_t timeout_ns) {
    shmx_pool_config cfg;
    shmx_pool_config_init(&cfg);
    cfg.workers = workers;
    cfg.queue_depth = depth;
    cfg.max_payload = 1 << 20;
    cfg.job_timeout_ns = timeout_ns;
    shmx_pool *pool = NULL;
    int rc = shmx_pool_create(&cfg, &pool);
    if (rc != SHMX_OK) {
        printf("FAIL create: %s: %s\n", shmx_strerror(rc), shmx_last_error());
        exit(1);
    }
    return pool;
}

/* run submits one job and waits for it; returns its status. */
static int run(shmx_pool *pool, const char *handler, const void *in, size_t len, shmx_result *res) {
    shmx_job job;
    int rc = shmx_submit(pool, handler, in, len, &job);
    if (rc != SHMX_OK) return rc;
    rc = shmx_wait(pool, job, 20000000000LL, res);
    if (rc != SHMX_OK) return rc;
    return res->status;
}

/* Workers start from the environment as the program has it when they
   start, as posix_spawn(..., environ) gives it: the library's Go runtime
   took its own copy when the program started, before this setenv. */
static void test_environment(void) {
    CHECK(setenv("SHMX_CTEST_ENV", "set-after-load", 1) == 0, "setenv");
    shmx_pool *pool = make_pool(1, 0, 0);
    shmx_result res;
    const char *name = "SHMX_CTEST_ENV";
    CHECK(run(pool, "env", name, strlen(name), &res) == SHMX_OK && res.len == 14 && memcmp(res.data, "set-after-load", 14) == 0,
          "a worker sees a variable set after the library was loaded: %.*s", (int)res.len, res.data ? (const char *)res.data : "");
    shmx_result_release(pool, &res);
    unsetenv("SHMX_CTEST_ENV");
    /* A worker stays one, but a program it runs is not one: it gets
       neither the handshake nor the pool's memory. */
    const char *want = "worker 1\n0\n1\n2\n";
    CHECK(run(pool, "child", NULL, 0, &res) == SHMX_OK && res.len == strlen(want) && memcmp(res.data, want, res.len) == 0,
          "a worker's child inherits no handshake and no descriptor of the pool: %.*s", (int)res.len,
          res.data ? (const char *)res.data : "");
    shmx_result_release(pool, &res);
    shmx_pool_close(pool, -1);
}

static void test_basics(void) {
    shmx_pool *pool = make_pool(2, 0, 0);
    shmx_result res;
    CHECK(run(pool, "echo", "abc", 3, &res) == SHMX_OK && res.len == 3 && memcmp(res.data, "abc", 3) == 0, "echo");
    shmx_result_release(pool, &res);
    CHECK(res.data == NULL && res.error == NULL, "release clears");
    shmx_result_release(pool, NULL);

    CHECK(run(pool, "fails", "x", 1, &res) == SHMX_EHANDLER && strstr(res.error, "ValueError: bad input"), "handler error: %s", res.error);
    shmx_result_release(pool, &res);
    CHECK(run(pool, "fails", NULL, 0, &res) == SHMX_EHANDLER && strstr(res.error, "invalid argument"), "handler rc: %s", res.error);
    shmx_result_release(pool, &res);
    CHECK(run(pool, "nosuch", NULL, 0, &res) == SHMX_EUNKNOWN_HANDLER, "unknown handler");
    shmx_result_release(pool, &res);
    CHECK(run(pool, "big", NULL, 0, &res) == SHMX_EHANDLER || res.status == SHMX_ETOO_LARGE, "output too large: %d", res.status);
    shmx_result_release(pool, &res);

    shmx_job job;
    static char huge[(1 << 20) + 1];
    CHECK(shmx_submit(pool, "echo", huge, sizeof huge, &job) == SHMX_ETOO_LARGE, "input too large");
    CHECK(shmx_submit(NULL, "echo", "", 0, &job) == SHMX_EINVAL, "NULL pool");
    CHECK(shmx_submit(pool, NULL, "", 0, &job) == SHMX_EINVAL, "NULL handler");
    CHECK(shmx_wait(pool, 999999, 0, &res) == SHMX_EINVAL, "unknown job");

    /* Zero-copy input. */
    shmx_buffer buf;
    CHECK(shmx_buffer_alloc(pool, 100000, &buf) == SHMX_OK && buf.data && buf.len == 100000, "buffer alloc");
    memset(buf.data, 'z', buf.len);
    CHECK(shmx_submit_buffer(pool, "echo", &buf, &job) == SHMX_OK && buf.id == 0, "submit buffer");
    CHECK(shmx_submit_buffer(pool, "echo", &buf, &job) == SHMX_EINVAL, "a submitted buffer cannot be reused");
    CHECK(shmx_wait(pool, job, -1, &res) == SHMX_OK && res.status == SHMX_OK && res.len == 100000 && ((const char *)res.data)[99999] == 'z', "zero-copy echo");
    shmx_result_release(pool, &res);
    /* ... with per-job options: a time limit the sleepy handler runs past. */
    shmx_submit_opts opts;
    shmx_submit_opts_init(&opts);
    opts.timeout_ns = 50000000;
    CHECK(shmx_buffer_alloc(pool, sizeof(int), &buf) == SHMX_OK, "buffer alloc for sleepy");
    int long_ms = 3000;
    memcpy(buf.data, &long_ms, sizeof long_ms);
    CHECK(shmx_submit_buffer_with(pool, "sleepy", &buf, &opts, &job) == SHMX_OK && buf.id == 0, "submit buffer with options");
    CHECK(shmx_wait(pool, job, -1, &res) == SHMX_OK && res.status == SHMX_ETIMEDOUT, "its timeout applies: %d", res.status);
    shmx_result_release(pool, &res);
    opts.struct_size = 1;
    CHECK(shmx_buffer_alloc(pool, 4, &buf) == SHMX_OK, "buffer alloc");
    CHECK(shmx_submit_buffer_with(pool, "echo", &buf, &opts, &job) == SHMX_EINVAL, "bad opts refused");
    shmx_buffer_release(pool, &buf);
    CHECK(shmx_buffer_alloc(pool, (size_t)1 << 30, &buf) == SHMX_ETOO_LARGE, "buffer over max_payload");
    CHECK(shmx_buffer_alloc(pool, 10, &buf) == SHMX_OK, "buffer alloc 2");
    shmx_buffer_release(pool, &buf);
    shmx_buffer_release(pool, &buf);

    /* ETIMEDOUT from a wait, then the job still ends. */
    int ms = 300;
    shmx_submit(pool, "sleepy", &ms, sizeof ms, &job);
    CHECK(shmx_wait(pool, job, 0, &res) == SHMX_ETIMEDOUT, "wait 0 on a running job");
    CHECK(shmx_wait(pool, job, 10000000, &res) == SHMX_ETIMEDOUT, "wait 10ms on a running job");
    CHECK(shmx_wait(pool, job, -1, &res) == SHMX_OK && res.status == SHMX_OK, "the job then ends");
    shmx_result_release(pool, &res);
    CHECK(shmx_wait(pool, job, 0, &res) == SHMX_EINVAL, "a job is forgotten once waited for");

    /* shmx_call: submit and wait in one call. */
    CHECK(shmx_call(pool, "echo", "xyz", 3, NULL, -1, &job, &res) == SHMX_OK && res.status == SHMX_OK && res.len == 3 &&
          memcmp(res.data, "xyz", 3) == 0, "call");
    shmx_result_release(pool, &res);
    CHECK(shmx_wait(pool, job, 0, &res) == SHMX_EINVAL, "a called job is forgotten");
    CHECK(shmx_call(pool, "fails", "x", 1, NULL, -1, &job, &res) == SHMX_OK && res.status == SHMX_EHANDLER &&
          strstr(res.error, "ValueError: bad input"), "call of a failing handler");
    shmx_result_release(pool, &res);
    ms = 200;
    CHECK(shmx_call(pool, "sleepy", &ms, sizeof ms, NULL, 20000000, &job, &res) == SHMX_ETIMEDOUT, "call past its wait");
    CHECK(shmx_wait(pool, job, -1, &res) == SHMX_OK && res.status == SHMX_OK, "... then shmx_wait gets it");
    shmx_result_release(pool, &res);
    opts.struct_size = sizeof opts;
    opts.timeout_ns = 50000000;
    long_ms = 3000;
    CHECK(shmx_call(pool, "sleepy", &long_ms, sizeof long_ms, &opts, -1, &job, &res) == SHMX_OK && res.status == SHMX_ETIMEDOUT,
          "call with options: its time limit applies: %d", res.status);
    shmx_result_release(pool, &res);
    CHECK(shmx_call(pool, "echo", huge, sizeof huge, NULL, -1, &job, &res) == SHMX_ETOO_LARGE, "call: input too large");
    CHECK(shmx_call(pool, "echo", "", 0, NULL, -1, &job, NULL) == SHMX_EINVAL, "call: NULL result");

    /* shmx_call_into: a small output lands in the caller's buffer. */
    char small[8];
    CHECK(shmx_call_into(pool, "echo", "xyz", 3, NULL, -1, small, sizeof small, &job, &res) == SHMX_OK &&
          res.status == SHMX_OK && res.data == NULL && res.len == 3 && memcmp(small, "xyz", 3) == 0, "call_into");
    shmx_result_release(pool, &res); /* nothing to free; allowed */
    CHECK(shmx_call_into(pool, "echo", "0123456789", 10, NULL, -1, small, sizeof small, &job, &res) == SHMX_OK &&
          res.status == SHMX_OK && res.data != NULL && res.len == 10 && memcmp(res.data, "0123456789", 10) == 0,
          "call_into: an output over the buffer comes as from shmx_call");
    shmx_result_release(pool, &res);
    CHECK(shmx_call_into(pool, "fails", "x", 1, NULL, -1, small, sizeof small, &job, &res) == SHMX_OK &&
          res.status == SHMX_EHANDLER && strstr(res.error, "ValueError: bad input"), "call_into of a failing handler");
    shmx_result_release(pool, &res);
    CHECK(shmx_call_into(pool, "echo", "xyz", 3, NULL, -1, NULL, 0, &job, &res) == SHMX_OK && res.data != NULL &&
          res.len == 3, "call_into without a buffer");
    shmx_result_release(pool, &res);
    CHECK(shmx_call_into(pool, "echo", "xyz", 3, NULL, -1, NULL, 8, &job, &res) == SHMX_EINVAL, "call_into: NULL buffer");

    /* shmx_wait_into: shmx_wait with the same buffer for small outputs. */
    memset(small, 0, sizeof small);
    CHECK(shmx_submit(pool, "echo", "abc", 3, &job) == SHMX_OK &&
          shmx_wait_into(pool, job, -1, small, sizeof small, &res) == SHMX_OK && res.status == SHMX_OK &&
          res.data == NULL && res.len == 3 && memcmp(small, "abc", 3) == 0, "wait_into");
    shmx_result_release(pool, &res); /* nothing to free; allowed */
    CHECK(shmx_wait_into(pool, job, 0, small, sizeof small, &res) == SHMX_EINVAL, "a job is forgotten once waited for into a buffer");
    CHECK(shmx_submit(pool, "echo", "0123456789", 10, &job) == SHMX_OK &&
          shmx_wait_into(pool, job, -1, small, sizeof small, &res) == SHMX_OK && res.status == SHMX_OK &&
          res.data != NULL && res.len == 10 && memcmp(res.data, "0123456789", 10) == 0,
          "wait_into: an output over the buffer comes as from shmx_wait");
    shmx_result_release(pool, &res);
    CHECK(shmx_submit(pool, "fails", "x", 1, &job) == SHMX_OK &&
          shmx_wait_into(pool, job, -1, small, sizeof small, &res) == SHMX_OK && res.status == SHMX_EHANDLER &&
          strstr(res.error, "ValueError: bad input"), "wait_into of a failing handler");
    shmx_result_release(pool, &res);
    ms = 300;
    CHECK(shmx_submit(pool, "sleepy", &ms, sizeof ms, &job) == SHMX_OK &&
          shmx_wait_into(pool, job, 10000000, small, sizeof small, &res) == SHMX_ETIMEDOUT, "wait_into 10ms on a running job");
    CHECK(shmx_wait_into(pool, job, -1, NULL, 8, &res) == SHMX_EINVAL, "wait_into: NULL buffer");
    CHECK(shmx_wait_into(pool, job, -1, NULL, 0, &res) == SHMX_OK && res.status == SHMX_OK, "wait_into without a buffer");
    shmx_result_release(pool, &res);
    CHECK(shmx_wait_into(pool, 999999, 0, small, sizeof small, &res) == SHMX_EINVAL, "wait_into: unknown job");

    /* Cancel of a queued job. */
    ms = 300;
    shmx_job a, b;
    shmx_submit(pool, "sleepy", &ms, sizeof ms, &a);
    shmx_submit(pool, "sleepy", &ms, sizeof ms, &job);
    shmx_submit(pool, "sleepy", &ms, sizeof ms, &b);
    CHECK(shmx_cancel(pool, b, 0) == SHMX_OK, "cancel queued");
    CHECK(shmx_wait(pool, b, -1, &res) == SHMX_OK && res.status == SHMX_ECANCELLED, "cancelled: %d", res.status);
    shmx_result_release(pool, &res);
    shmx_wait(pool, a, -1, &res); shmx_result_release(pool, &res);
    shmx_wait(pool, job, -1, &res); shmx_result_release(pool, &res);
    CHECK(shmx_pool_close(pool, -1) == SHMX_OK, "close");
    CHECK(shmx_pool_close(NULL, 0) == SHMX_OK && shmx_pool_terminate(NULL) == SHMX_OK, "NULL close");
}

static void test_timeout_and_full(void) {
    shmx_pool *pool = make_pool(1, 2, 200000000LL); /* 1 worker, 2 slots, 200 ms timeout */
    shmx_result res;
    int ms = 10000;
    double t0 = now();
    CHECK(run(pool, "sleepy", &ms, sizeof ms, &res) == SHMX_ETIMEDOUT && now() - t0 < 5, "job timeout: %d after %.2fs", res.status, now() - t0);
    shmx_result_release(pool, &res);
    /* A per-job timeout, and a job that opts out of the pool's. */
    shmx_submit_opts o;
    shmx_submit_opts_init(&o);
    o.timeout_ns = 100000000LL;
    shmx_job jt;
    ms = 10000;
    CHECK(shmx_submit_with(pool, "sleepy", &ms, sizeof ms, &o, &jt) == SHMX_OK, "submit_with");
    CHECK(shmx_wait(pool, jt, -1, &res) == SHMX_OK && res.status == SHMX_ETIMEDOUT, "per-job timeout: %d", res.status);
    shmx_result_release(pool, &res);
    o.timeout_ns = -1;
    ms = 400;
    CHECK(shmx_submit_with(pool, "sleepy", &ms, sizeof ms, &o, &jt) == SHMX_OK, "submit_with no timeout");
    CHECK(shmx_wait(pool, jt, -1, &res) == SHMX_OK && res.status == SHMX_OK, "no timeout: a 400 ms job past the pool's 200 ms: %d", res.status);
    shmx_result_release(pool, &res);
    o.struct_size = 2;
    CHECK(shmx_submit_with(pool, "sleepy", &ms, sizeof ms, &o, &jt) == SHMX_EINVAL, "opts struct_size");
    ms = 100;
    shmx_job j1, j2, j3;
    shmx_submit(pool, "sleepy", &ms, sizeof ms, &j1);
    shmx_submit(pool, "sleepy", &ms, sizeof ms, &j2);
    CHECK(shmx_try_submit(pool, "sleepy", &ms, sizeof ms, &j3) == SHMX_EFULL, "try_submit on a full pool");
    /* SHMX_SUBMIT_NOWAIT: shmx_submit_with, shmx_call and
       shmx_submit_buffer_with say SHMX_EFULL at once; a buffer refused so
       stays the caller's, to submit later. */
    shmx_submit_opts nw;
    shmx_submit_opts_init(&nw);
    nw.flags = SHMX_SUBMIT_NOWAIT;
    t0 = now();
    CHECK(shmx_submit_with(pool, "sleepy", &ms, sizeof ms, &nw, &j3) == SHMX_EFULL && now() - t0 < 0.05, "NOWAIT submit on a full pool");
    CHECK(shmx_call(pool, "sleepy", &ms, sizeof ms, &nw, -1, &j3, &res) == SHMX_EFULL && now() - t0 < 0.05, "NOWAIT call on a full pool");
    shmx_buffer b;
    CHECK(shmx_buffer_try_alloc(pool, sizeof ms, &b) == SHMX_OK && b.data && b.len == sizeof ms, "buffer try_alloc");
    int one = 1;
    memcpy(b.data, &one, sizeof one);
    t0 = now();
    CHECK(shmx_submit_buffer_with(pool, "sleepy", &b, &nw, &j3) == SHMX_EFULL && now() - t0 < 0.05, "NOWAIT buffer submit on a full pool");
    CHECK(b.id != 0 && b.data, "a buffer refused for a full pool is still the caller's");
    shmx_wait(pool, j1, -1, &res); shmx_result_release(pool, &res);
    shmx_wait(pool, j2, -1, &res); shmx_result_release(pool, &res);
    CHECK(shmx_submit_buffer_with(pool, "sleepy", &b, &nw, &j3) == SHMX_OK && b.id == 0, "the refused buffer submitted with room");
    CHECK(shmx_wait(pool, j3, -1, &res) == SHMX_OK && res.status == SHMX_OK, "its job ran: %d", res.status);
    shmx_result_release(pool, &res);
    ms = 1;
    CHECK(shmx_submit_with(pool, "sleepy", &ms, sizeof ms, &nw, &j3) == SHMX_OK, "NOWAIT submit with room");
    shmx_wait(pool, j3, -1, &res); shmx_result_release(pool, &res);
    /* shmx_buffer_try_alloc: SHMX_EFULL at once when the arena has no room
       now, where shmx_buffer_alloc would wait; room again once freed. */
    enum { NB = 4096 };
    static shmx_buffer held[NB];
    int nheld = 0, rc = SHMX_OK;
    t0 = now();
    while (nheld < NB && (rc = shmx_buffer_try_alloc(pool, (size_t)1 << 20, &held[nheld])) == SHMX_OK) nheld++;
    CHECK(rc == SHMX_EFULL && nheld > 0 && now() - t0 < 2, "try_alloc fills the arena, then SHMX_EFULL at once: rc %d after %d buffers", rc, nheld);
    CHECK(shmx_buffer_try_alloc(pool, (size_t)1 << 30, &b) == SHMX_ETOO_LARGE, "try_alloc over max_payload");
    /* With no arena page left, a submit that must not wait (shmx_try_submit,
       SHMX_SUBMIT_NOWAIT) of an input too large for its job slot says
       SHMX_EFULL at once, where shmx_submit waits for pages. */
    enum { NP = 1024 };
    static shmx_buffer pages[NP];
    int npages = 0;
    while (npages < NP && shmx_buffer_try_alloc(pool, 1, &pages[npages]) == SHMX_OK) npages++;
    CHECK(npages < NP, "the arena's last pages taken: %d", npages);
    static char big[64 << 10];
    t0 = now();
    rc = shmx_try_submit(pool, "sleepy", big, sizeof big, &j3);
    CHECK(rc == SHMX_EFULL && now() - t0 < 0.5, "try_submit needing pages of a full arena: rc %d after %.2fs", rc, now() - t0);
    t0 = now();
    rc = shmx_submit_with(pool, "sleepy", big, sizeof big, &nw, &j3);
    CHECK(rc == SHMX_EFULL && now() - t0 < 0.5, "NOWAIT submit needing pages of a full arena: rc %d after %.2fs", rc, now() - t0);
    while (npages > 0) shmx_buffer_release(pool, &pages[--npages]);
    shmx_buffer_release(pool, &held[--nheld]);
    CHECK(shmx_buffer_try_alloc(pool, (size_t)1 << 20, &b) == SHMX_OK, "try_alloc after a release");
    shmx_buffer_release(pool, &b);
    while (nheld > 0) shmx_buffer_release(pool, &held[--nheld]);
    CHECK(shmx_pool_close(pool, -1) == SHMX_OK, "close");
}

/* shmx_pool_workers: one live pid per worker slot, 0 while a slot has no
   process. */
static void test_workers(void) {
    shmx_pool *pool = make_pool(2, 0, 0);
    size_t n = 0;
    int32_t pids[4] = {-1, -1, -1, -1};
    CHECK(shmx_pool_workers(pool, NULL, 0, &n) == SHMX_OK && n == 2, "two worker slots: %zu", n);
    CHECK(shmx_pool_workers(pool, pids, 4, &n) == SHMX_OK && n == 2, "workers");
    CHECK(pids[0] > 0 && pids[1] > 0 && pids[0] != pids[1] && pids[2] == 0 && pids[3] == 0, "pids %d %d %d %d", pids[0], pids[1], pids[2], pids[3]);
    CHECK(kill(pids[0], 0) == 0 && kill(pids[1], 0) == 0, "the pids are live processes");
    CHECK(shmx_pool_workers(pool, NULL, 1, &n) == SHMX_EINVAL && shmx_pool_workers(pool, pids, 1, NULL) == SHMX_EINVAL, "bad arguments");
    CHECK(shmx_pool_close(pool, -1) == SHMX_OK, "close");
    CHECK(shmx_pool_workers(pool, pids, 4, &n) == SHMX_EINVAL, "a closed handle");
}

/* Every signal that kills a process by default kills the worker with
   that signal, raised (raise, kill, pthread_kill) or by a real fault, and
   the job ends SHMX_EWORKER_CRASHED with that signal number. */
static void test_fatal_signals(void) {
    shmx_pool *pool = make_pool(1, 0, 0);
    static const int fatal[] = {SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGUSR1, SIGSEGV,
                                SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGSYS};
    shmx_result res;
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++) {
        for (int how = 0; how < 3; how++) {
            int a[2] = {how, fatal[i]};
            int rc = run(pool, "signals", a, sizeof a, &res);
            CHECK(rc == SHMX_EWORKER_CRASHED && res.signal == fatal[i], "signal %d (%s) sent by way %d: status %d, signal %d",
                  fatal[i], strsignal(fatal[i]), how, rc, res.signal);
            shmx_result_release(pool, &res);
        }
    }
    static const int faults[] = {SIGSEGV, SIGFPE, SIGILL, SIGABRT};
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) {
        int a[2] = {3, faults[i]};
        int rc = run(pool, "signals", a, sizeof a, &res);
        CHECK(rc == SHMX_EWORKER_CRASHED && res.signal == faults[i], "a real %s: status %d, signal %d", strsignal(faults[i]), rc, res.signal);
        shmx_result_release(pool, &res);
    }
    CHECK(shmx_pool_close(pool, -1) == SHMX_OK, "close");
}

/* one_worker_passing: cfg for a pool of one worker that gets *fd passed on. */
static void one_worker_passing(shmx_pool_config *cfg, int *fd) {
    shmx_pool_config_init(cfg);
    cfg->workers = 1;
    cfg->pass_fds = fd;
    cfg->n_pass_fds = 1;
}

/* Workers inherit no descriptor the program made inheritable: the
   reader of a pipe whose write end is inheritable sees EOF once the
   program closes that end while workers run. pass_fds hands one on. */
static void test_no_inherited_descriptors(void) {
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    fcntl(p[0], F_SETFD, 0); /* inheritable, both ends */
    fcntl(p[1], F_SETFD, 0);
    shmx_pool *pool = make_pool(2, 0, 0);
    shmx_result res;
    int ms = 50;
    CHECK(run(pool, "sleepy", &ms, sizeof ms, &res) == SHMX_OK, "the workers run");
    shmx_result_release(pool, &res);
    close(p[1]);
    struct pollfd pfd = {p[0], POLLIN, 0};
    char c;
    CHECK(poll(&pfd, 1, 10000) == 1 && read(p[0], &c, 1) == 0, "EOF on the pipe: no worker holds its write end");
    close(p[0]);
    CHECK(shmx_pool_close(pool, -1) == SHMX_OK, "close");

    CHECK(pipe(p) == 0, "pipe");
    shmx_pool_config cfg;
    one_worker_passing(&cfg, &p[1]);
    CHECK(shmx_pool_create(&cfg, &pool) == SHMX_OK, "a pool with pass_fds");
    CHECK(run(pool, "passed", "hi", 2, &res) == SHMX_OK, "a worker writes to the passed descriptor");
    shmx_result_release(pool, &res);
    char buf[2] = {0, 0};
    CHECK(read(p[0], buf, 2) == 2 && memcmp(buf, "hi", 2) == 0, "... and it arrives");
    CHECK(shmx_pool_close(pool, -1) == SHMX_OK, "close");
    CHECK(fcntl(p[1], F_GETFD) >= 0, "the program's own descriptor stays open");
    close(p[0]);
    close(p[1]);
    int bad = 987654;
    cfg.pass_fds = &bad;
    CHECK(shmx_pool_create(&cfg, &pool) == SHMX_EINVAL, "a pass_fds entry that is not open");
    cfg.pass_fds = NULL;
    CHECK(shmx_pool_create(&cfg, &pool) == SHMX_EINVAL, "n_pass_fds without pass_fds");
}

/* A worker SIGKILLed from outside while its caller waits for the job in
   shmx_wait_into: the wait ends at once with SHMX_EWORKER_CRASHED and
   the worker's pid and signal, the pool is back at full size, and the
   next result lands in the caller's buffer again. */
/* A pool of one worker (p: the pipe its "started" handler writes to),
   running a job of a minute that has started; *pid is the worker's. */
static shmx_pool *pool_running_a_minute_job(int p[2], int32_t *pid, const shmx_submit_opts *opts, shmx_job *job) {
    CHECK(pipe(p) == 0, "pipe");
    shmx_pool_config cfg;
    one_worker_passing(&cfg, &p[1]);
    shmx_pool *pool;
    CHECK(shmx_pool_create(&cfg, &pool) == SHMX_OK, "a pool with pass_fds");
    size_t n = 0;
    CHECK(shmx_pool_workers(pool, pid, 1, &n) == SHMX_OK && n == 1 && *pid > 0, "the worker's pid");
    int ms = 60000;
    CHECK(shmx_submit_with(pool, "started", &ms, sizeof ms, opts, job) == SHMX_OK, "submit a job that runs a minute");
    struct pollfd pfd = {p[0], POLLIN, 0};
    char c;
    CHECK(poll(&pfd, 1, 10000) == 1 && read(p[0], &c, 1) == 1, "the job has started");
    return pool;
}

static void test_kill_while_waiting_into(void) {
    int p[2];
    int32_t pid = 0, now_pid = 0;
    size_t n = 0;
    shmx_job job;
    shmx_pool *pool = pool_running_a_minute_job(p, &pid, NULL, &job);
    CHECK(kill(pid, SIGKILL) == 0, "SIGKILL the worker");
    char small[8];
    shmx_result res;
    double t0 = now();
    int rc = shmx_wait_into(pool, job, 20000000000LL, small, sizeof small, &res);
    CHECK(rc == SHMX_OK && res.status == SHMX_EWORKER_CRASHED && res.signal == SIGKILL && res.worker_pid == pid && now() - t0 < 10,
          "the wait ends with the crash: rc %d, status %d, signal %d, pid %d (worker %d)", rc, res.status, res.signal, res.worker_pid, pid);
    shmx_result_release(pool, &res);
    for (t0 = now(); now() - t0 < 10; ) {
        if (shmx_pool_workers(pool, &now_pid, 1, &n) == SHMX_OK && now_pid > 0 && now_pid != pid) break;
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
    }
    CHECK(now_pid > 0 && now_pid != pid, "a new worker in its place: %d", now_pid);
    CHECK(shmx_submit(pool, "echo", "after", 5, &job) == SHMX_OK &&
          shmx_wait_into(pool, job, 20000000000LL, small, sizeof small, &res) == SHMX_OK && res.status == SHMX_OK &&
          res.data == NULL && res.len == 5 && memcmp(small, "after", 5) == 0, "the next result lands in the buffer");
    shmx_result_release(pool, &res);
    CHECK(shmx_pool_close(pool, -1) == SHMX_OK, "close");
    close(p[0]);
    close(p[1]);
}

static void test_fork_guard(void) {
    shmx_pool *pool = make_pool(1, 0, 0);
    pid_t pid = fork();
    if (pid == 0) {
        /* The child: every call fails at once, nothing hangs. */
        shmx_job job;
        shmx_result res;
        int ok = shmx_submit(pool, "echo", "x", 1, &job) == SHMX_EFORKED &&
                 shmx_wait(pool, 1, -1, &res) == SHMX_EFORKED &&
                 shmx_is_worker() == SHMX_EFORKED &&
                 shmx_pool_close(pool, 0) == SHMX_EFORKED &&
                 shmx_call_into(pool, "echo", "x", 1, NULL, -1, NULL, 8, &job, &res) == SHMX_EFORKED &&
                 shmx_wait_into(pool, 1, -1, NULL, 8, &res) == SHMX_EFORKED;
        shmx_task t = {0};
        ok = ok && shmx_task_reply_next(NULL, &t, "", 0, 0, NULL) == SHMX_EFORKED;
        ok = ok && shmx_worker_input_buffer(NULL, NULL, 0) == SHMX_EFORKED;
        ok = ok && shmx_worker_slot(NULL, NULL) == SHMX_EFORKED;
        shmx_pool_config cfg;
        shmx_pool_config_init(&cfg);
        shmx_pool *p2;
        ok = ok && shmx_pool_create(&cfg, &p2) == SHMX_EFORKED;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    double t0 = now();
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0 && now() - t0 < 5, "forked child gets SHMX_EFORKED at once");
    shmx_result res;
    CHECK(run(pool, "echo", "y", 1, &res) == SHMX_OK, "the parent's pool still works after fork");
    shmx_result_release(pool, &res);
    CHECK(shmx_pool_close(pool, -1) == SHMX_OK, "close");
}

static void test_terminate_in_flight(void) {
    shmx_pool *pool = make_pool(2, 0, 0);
    int ms = 30000;
    shmx_job jobs[6];
    for (int i = 0; i < 6; i++) shmx_submit(pool, "sleepy", &ms, sizeof ms, &jobs[i]);
    double t0 = now();
    CHECK(shmx_pool_terminate(pool) == SHMX_OK && now() - t0 < 10, "terminate with jobs in flight took %.2fs", now() - t0);
    pool = make_pool(2, 0, 0);
    ms = 20;
    for (int i = 0; i < 6; i++) shmx_submit(pool, "sleepy", &ms, sizeof ms, &jobs[i]);
    CHECK(shmx_pool_close(pool, -1) == SHMX_OK, "close with jobs in flight finishes them");
}

struct closer { shmx_pool *pool; int rc; double took; };

static void *close_in_thread(void *arg) {
    struct closer *c = arg;
    double t0 = now();
    c->rc = shmx_pool_close(c->pool, -1);
    c->took = now() - t0;
    return NULL;
}

/* A terminate while another thread's close waits for long jobs kills
   them at once: neither call waits for the jobs, whichever thread took
   the handle first. */
static void test_terminate_during_close(void) {
    shmx_pool *pool = make_pool(2, 0, 0);
    int ms = 30000;
    shmx_job jobs[4];
    for (int i = 0; i < 4; i++) shmx_submit(pool, "sleepy", &ms, sizeof ms, &jobs[i]);
    int32_t pids[2] = {0, 0};
    size_t n = 0;
    shmx_pool_workers(pool, pids, 2, &n);
    struct closer c = {pool, -1, 0};
    pthread_t t;
    pthread_create(&t, NULL, close_in_thread, &c);
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL); /* the close waits for the jobs by now */
    double t0 = now();
    int rc = shmx_pool_terminate(pool);
    double took = now() - t0;
    pthread_join(t, NULL);
    CHECK(rc == SHMX_OK && took < 10, "terminate during a close: %s after %.2fs", shmx_strerror(rc), took);
    CHECK((c.rc == SHMX_ETIMEDOUT || c.rc == SHMX_EINVAL) && c.took < 10, "the close cut short: %s after %.2fs",
          shmx_strerror(c.rc), c.took);
    for (size_t i = 0; i < n && i < 2; i++) CHECK(pids[i] > 0 && kill(pids[i], 0) != 0, "worker %d gone", (int)pids[i]);
    CHECK(shmx_pool_terminate(pool) == SHMX_EINVAL, "a terminate after both: the handle is closed");
}

static void test_bad_workers(void) {
    shmx_pool_config cfg;
    shmx_pool_config_init(&cfg);
    cfg.workers = 1;
    const char *argv[] = {"/nonexistent/worker", NULL};
    cfg.worker_argv = argv;
    shmx_pool *pool;
    CHECK(shmx_pool_create(&cfg, &pool) == SHMX_EWORKER_START && strstr(shmx_last_error(), "nonexistent"), "bad worker path: %s", shmx_last_error());
    /* The environment of a process running Go is read once at start-up,
       so the worker learns to fail its init from its argv. */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = 0;
    const char *argv2[] = {self, "--init-fail", NULL};
    cfg.worker_argv = argv2;
    CHECK(shmx_pool_create(&cfg, &pool) == SHMX_EWORKER_START && strstr(shmx_last_error(), "initializer"), "failing init: %s", shmx_last_error());
    shmx_pool_config small = cfg;
    small.struct_size = 4;
    CHECK(shmx_pool_create(&small, &pool) == SHMX_EINVAL, "struct_size too small");
    CHECK(shmx_pool_create(NULL, &pool) == SHMX_EINVAL, "NULL config");
}

/* The pull-style worker loop: what a binding runs instead of
   shmx_worker_main. */
static int pull_worker(void) {
    shmx_worker *w;
    if (shmx_worker_open(&w) != SHMX_OK) return 3;
    /* Inputs of up to 8 bytes arrive in inbuf ("where" tells). */
    static char inbuf[8];
    if (shmx_worker_input_buffer(NULL, inbuf, sizeof inbuf) != SHMX_EINVAL || shmx_worker_input_buffer(w, NULL, 1) != SHMX_EINVAL ||
        shmx_worker_input_buffer(w, inbuf, sizeof inbuf) != SHMX_OK)
        return 7;
    uint32_t slot = 99;
    if (shmx_worker_slot(NULL, &slot) != SHMX_EINVAL || shmx_worker_slot(w, NULL) != SHMX_EINVAL ||
        shmx_worker_slot(w, &slot) != SHMX_OK)
        return 8;
    shmx_worker_ready(w);
    const int64_t slice = 1000000000LL;
    shmx_task t;
    int next = shmx_worker_next(w, slice, &t);
    for (;; next = shmx_worker_next(w, slice, &t)) {
    have_next:
        if (next == SHMX_ETIMEDOUT) continue;
        if (next == SHMX_ECLOSED) return 0;
        if (next != SHMX_OK) return 4;
        int rc;
        if (strcmp(t.handler, "echo") == 0) {
            rc = echo(NULL, t.in, t.in_len, t.out);
        } else if (strcmp(t.handler, "slot") == 0) {
            rc = shmx_output_set(t.out, &slot, sizeof slot);
        } else if (strcmp(t.handler, "where") == 0) {
            /* 'b' if the input is in inbuf, 's' if in shared memory; then the input. */
            char *o = shmx_output_alloc(t.out, t.in_len + 1);
            o[0] = t.in == (const void *)inbuf ? 'b' : 's';
            memcpy(o + 1, t.in, t.in_len);
            rc = 0;
        } else if (strcmp(t.handler, "nested") == 0) {
            /* A worker may not start a pool of its own. */
            shmx_pool_config cfg;
            shmx_pool_config_init(&cfg);
            shmx_pool *p2;
            int got = shmx_pool_create(&cfg, &p2);
            if (got == SHMX_OK) shmx_pool_terminate(p2);
            rc = shmx_output_set(t.out, &got, sizeof got);
        } else if (strcmp(t.handler, "upper") == 0 || strcmp(t.handler, "upper_next") == 0) {
            /* Output and end in one call; it replaces an error set first.
               upper_next also waits for the next task in that call. */
            char o[64];
            size_t k = t.in_len < sizeof o ? t.in_len : sizeof o;
            for (size_t i = 0; i < k; i++) o[i] = (char)(((const char *)t.in)[i] & ~0x20);
            shmx_output_error(t.out, "Ignored", "replaced by the reply");
            if (strcmp(t.handler, "upper_next") == 0) {
                if (shmx_task_reply_next(w, &t, o, k, slice, NULL) != SHMX_EINVAL) return 6;
                next = shmx_task_reply_next(w, &t, o, k, slice, &t);
                goto have_next;
            }
            if (shmx_task_reply(w, &t, o, k) != SHMX_OK || t.id != 0) return 5;
            continue;
        } else if (strcmp(t.handler, "cow") == 0) {
            /* shmx_task_input_file: a private mapping of the input reads
               what the task reads, and writing it changes nothing shared.
               'y' if so, else what failed. */
            int fd = -1;
            uint64_t off = 0;
            char verdict = 'y';
            if (shmx_task_input_file(w, NULL, &fd, &off) != SHMX_EINVAL || shmx_task_input_file(w, &t, NULL, &off) != SHMX_EINVAL)
                verdict = 'a';
            else if (shmx_task_input_file(w, &t, &fd, &off) != SHMX_OK)
                verdict = 'f';
            else {
                size_t page = (size_t)sysconf(_SC_PAGESIZE), skip = (size_t)(off % page);
                unsigned char *m = mmap(NULL, skip + t.in_len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, (off_t)(off - skip));
                if (m == MAP_FAILED)
                    verdict = 'm';
                else {
                    if (memcmp(m + skip, t.in, t.in_len) != 0) verdict = 'd';
                    unsigned char first = ((const unsigned char *)t.in)[0];
                    m[skip] = (unsigned char)~first;
                    if (((const unsigned char *)t.in)[0] != first) verdict = 'w';
                    munmap(m, skip + t.in_len);
                }
            }
            rc = shmx_output_set(t.out, &verdict, 1);
        } else if (strcmp(t.handler, "rev") == 0) {
            char *o = shmx_output_alloc(t.out, t.in_len); /* zero-copy */
            for (size_t i = 0; i < t.in_len; i++) o[i] = ((const char *)t.in)[t.in_len - 1 - i];
            rc = 0;
        } else {
            shmx_output_error(t.out, "LookupError", t.handler);
            rc = 1;
        }
        shmx_task_done(w, &t, rc);
    }
}

static void test_pull_worker(void) {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = 0;
    const char *argv[] = {self, "--pull", NULL};
    shmx_pool_config cfg;
    shmx_pool_config_init(&cfg);
    cfg.workers = 2;
    cfg.max_tasks_per_worker = 5;
    cfg.worker_argv = argv;
    shmx_pool *pool;
    CHECK(shmx_pool_create(&cfg, &pool) == SHMX_OK, "pool of pull-style workers: %s", shmx_last_error());
    shmx_result res;
    int good = 0;
    for (int i = 0; i < 20; i++) {
        if (run(pool, "rev", "abc", 3, &res) == SHMX_OK && res.len == 3 && memcmp(res.data, "cba", 3) == 0) good++;
        shmx_result_release(pool, &res);
    }
    CHECK(good == 20, "pull worker, zero-copy output, across task-limit restarts: %d of 20", good);
    /* shmx_worker_slot: each of the two slots, across task-limit
       restarts (a replacement takes its slot). */
    good = 0;
    for (int i = 0; i < 40; i++) {
        uint32_t s = 99;
        if (run(pool, "slot", NULL, 0, &res) == SHMX_OK && res.len == sizeof s && (memcpy(&s, res.data, sizeof s), s < 2)) good++;
        shmx_result_release(pool, &res);
    }
    CHECK(good == 40, "shmx_worker_slot in 0..1: %d of 40", good);
    CHECK(run(pool, "upper", "abc", 3, &res) == SHMX_OK && res.len == 3 && memcmp(res.data, "ABC", 3) == 0, "shmx_task_reply");
    shmx_result_release(pool, &res);
    CHECK(run(pool, "upper", NULL, 0, &res) == SHMX_OK && res.len == 0, "shmx_task_reply with no output");
    shmx_result_release(pool, &res);
    /* Replies that wait for the next task in the same call, across the
       worker's task limit (5): the call then returns SHMX_ECLOSED. */
    good = 0;
    for (int i = 0; i < 12; i++) {
        if (run(pool, "upper_next", "ab", 2, &res) == SHMX_OK && res.len == 2 && memcmp(res.data, "AB", 2) == 0) good++;
        shmx_result_release(pool, &res);
    }
    CHECK(good == 12, "shmx_task_reply_next, across task-limit restarts: %d of 12", good);
    /* shmx_worker_input_buffer (8 bytes): a small input is copied there,
       a larger one stays in shared memory; after reply_next too. */
    const char *ins[] = {"12345678", "123456789", "a", "0123456789abcdef"};
    good = 0;
    for (int i = 0; i < 12; i++) {
        const char *in = ins[i % 4];
        size_t k = strlen(in);
        if (run(pool, "where", in, k, &res) == SHMX_OK && res.len == k + 1 &&
            ((const char *)res.data)[0] == (k <= 8 ? 'b' : 's') && memcmp((const char *)res.data + 1, in, k) == 0)
            good++;
        shmx_result_release(pool, &res);
        if (run(pool, "upper_next", "ab", 2, &res) == SHMX_OK) good++;
        shmx_result_release(pool, &res);
    }
    CHECK(good == 24, "shmx_worker_input_buffer: %d of 24", good);
    /* shmx_task_input_file, for an input copied into the input buffer
       and for one read in shared memory (2 MiB: in arena pages). */
    size_t big_len = 2 << 20;
    char *big_in = malloc(big_len);
    memset(big_in, 'x', big_len);
    big_in[0] = 'q';
    CHECK(run(pool, "cow", "abcd", 4, &res) == SHMX_OK && res.len == 1 && ((const char *)res.data)[0] == 'y',
          "shmx_task_input_file, a small input: %c", res.len == 1 ? ((const char *)res.data)[0] : '?');
    shmx_result_release(pool, &res);
    CHECK(run(pool, "cow", big_in, big_len, &res) == SHMX_OK && res.len == 1 && ((const char *)res.data)[0] == 'y',
          "shmx_task_input_file, a 2 MiB input: %c", res.len == 1 ? ((const char *)res.data)[0] : '?');
    shmx_result_release(pool, &res);
    free(big_in);
    CHECK(run(pool, "nope", NULL, 0, &res) == SHMX_EHANDLER && strstr(res.error, "LookupError: nope"), "pull worker error");
    shmx_result_release(pool, &res);
    int got = 0;
    CHECK(run(pool, "nested", NULL, 0, &res) == SHMX_OK && res.len == sizeof got && (memcpy(&got, res.data, sizeof got), got == SHMX_EINVAL),
          "a worker cannot start a pool: %d", got);
    shmx_result_release(pool, &res);
    CHECK(shmx_pool_close(pool, -1) == SHMX_OK, "close");
    shmx_worker *w;
    CHECK(shmx_worker_open(&w) == SHMX_EINVAL, "worker_open outside a pool");
    shmx_task t = {0};
    CHECK(shmx_task_reply(NULL, &t, "", 0) == SHMX_EINVAL, "task_reply without a task");
    int fd;
    uint64_t off;
    CHECK(shmx_task_input_file(NULL, &t, &fd, &off) == SHMX_EINVAL, "task_input_file without a worker");
    CHECK(shmx_task_reply_next(NULL, &t, "", 0, 0, &t) == SHMX_EINVAL, "task_reply_next without a task");
}

/* shmx_wait_any reports each finished job once, leaves a job to a thread
   that waits for it, and times out when nothing is left. */
static void test_wait_any(void) {
    shmx_pool *pool = make_pool(2, 0, 0);
    if (!pool) return;
    shmx_job jobs[3], got;
    int ms = 20;
    for (int i = 0; i < 3; i++) CHECK(shmx_submit(pool, "sleepy", &ms, sizeof ms, &jobs[i]) == SHMX_OK, "submit %d", i);
    int seen[3] = {0};
    for (int i = 0; i < 3; i++) {
        CHECK(shmx_wait_any(pool, 10000000000LL, &got) == SHMX_OK, "wait_any %d", i);
        for (int k = 0; k < 3; k++) seen[k] += got == jobs[k];
        shmx_result res;
        CHECK(shmx_wait(pool, got, 0, &res) == SHMX_OK && res.status == SHMX_OK, "the reported job is finished");
        shmx_result_release(pool, &res);
    }
    CHECK(seen[0] == 1 && seen[1] == 1 && seen[2] == 1, "each job reported once: %d %d %d", seen[0], seen[1], seen[2]);
    CHECK(shmx_wait_any(pool, 30000000, &got) == SHMX_ETIMEDOUT, "nothing left: timeout");
    /* A job waited for in shmx_wait is not reported. */
    shmx_job mine;
    CHECK(shmx_submit(pool, "sleepy", &ms, sizeof ms, &mine) == SHMX_OK, "submit");
    shmx_result res;
    CHECK(shmx_wait(pool, mine, -1, &res) == SHMX_OK && res.status == SHMX_OK, "wait");
    shmx_result_release(pool, &res);
    CHECK(shmx_wait_any(pool, 30000000, &got) == SHMX_ETIMEDOUT, "a job fetched by shmx_wait is not reported");
    CHECK(shmx_call(pool, "sleepy", &ms, sizeof ms, NULL, -1, &mine, &res) == SHMX_OK && res.status == SHMX_OK, "call");
    shmx_result_release(pool, &res);
    CHECK(shmx_wait_any(pool, 30000000, &got) == SHMX_ETIMEDOUT, "a job fetched by shmx_call is not reported");
    CHECK(shmx_call(pool, "sleepy", &ms, sizeof ms, NULL, 0, &mine, &res) == SHMX_ETIMEDOUT, "call that does not wait");
    CHECK(shmx_wait_any(pool, 10000000000LL, &got) == SHMX_OK && got == mine, "... is reported once it ends");
    CHECK(shmx_wait(pool, mine, 0, &res) == SHMX_OK && res.status == SHMX_OK, "... and fetched");
    shmx_result_release(pool, &res);
    CHECK(shmx_wait_any(NULL, 0, &got) == SHMX_EINVAL, "NULL pool");
    CHECK(shmx_pool_close(pool, -1) == SHMX_OK, "close");
}

/* This process's resident memory in KiB, from /proc/self/status. */
static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    fclose(f);
    return kib;
}

/* SHMX_SUBMIT_OWN_WAIT keeps a job from shmx_wait_any; shmx_forget drops
   a job's outcome whether it has ended or not; an opts of the first,
   16-byte version of the struct is still accepted. */
static void test_own_wait_and_forget(void) {
    shmx_pool *pool = make_pool(2, 0, 0);
    if (!pool) return;
    shmx_submit_opts own;
    shmx_submit_opts_init(&own);
    own.flags = SHMX_SUBMIT_OWN_WAIT;
    shmx_job jobs[3], got;
    shmx_result res;
    int ms = 20;
    for (int i = 0; i < 3; i++) CHECK(shmx_submit_with(pool, "sleepy", &ms, sizeof ms, &own, &jobs[i]) == SHMX_OK, "own submit %d", i);
    CHECK(shmx_wait_any(pool, 300000000, &got) == SHMX_ETIMEDOUT, "wait_any does not report own jobs");
    for (int i = 0; i < 3; i++) {
        CHECK(shmx_wait(pool, jobs[i], 0, &res) == SHMX_OK && res.status == SHMX_OK, "own job %d fetched by shmx_wait", i);
        shmx_result_release(pool, &res);
    }
    ms = 100;
    CHECK(shmx_call(pool, "sleepy", &ms, sizeof ms, &own, 0, &jobs[0], &res) == SHMX_ETIMEDOUT, "own call that does not wait");
    CHECK(shmx_wait_any(pool, 400000000, &got) == SHMX_ETIMEDOUT, "... is not reported when it ends");
    CHECK(shmx_wait(pool, jobs[0], 0, &res) == SHMX_OK && res.status == SHMX_OK, "... and is fetched");
    shmx_result_release(pool, &res);

    /* Flags this library does not know are refused; a 16-byte opts has
       none (its flags field is not read). */
    own.flags = 4;
    CHECK(shmx_submit_with(pool, "sleepy", &ms, sizeof ms, &own, &jobs[0]) == SHMX_EINVAL, "unknown flag refused");
    own.flags = SHMX_SUBMIT_OWN_WAIT;
    own.struct_size = 16;
    ms = 1;
    CHECK(shmx_submit_with(pool, "sleepy", &ms, sizeof ms, &own, &jobs[0]) == SHMX_OK, "a 16-byte opts is accepted");
    CHECK(shmx_wait_any(pool, 10000000000LL, &got) == SHMX_OK && got == jobs[0], "... without flags: wait_any reports the job");
    CHECK(shmx_wait(pool, got, 0, &res) == SHMX_OK, "... fetched");
    shmx_result_release(pool, &res);

    /* shmx_forget: of a running job, then of an ended one. */
    ms = 100;
    CHECK(shmx_submit(pool, "sleepy", &ms, sizeof ms, &jobs[0]) == SHMX_OK, "submit");
    CHECK(shmx_forget(pool, jobs[0]) == SHMX_OK, "forget a running job");
    CHECK(shmx_wait(pool, jobs[0], -1, &res) == SHMX_EINVAL, "shmx_wait does not know a forgotten job");
    CHECK(shmx_forget(pool, jobs[0]) == SHMX_EINVAL, "forget twice");
    CHECK(shmx_wait_any(pool, 400000000, &got) == SHMX_ETIMEDOUT, "a forgotten job is not reported when it ends");
    ms = 1;
    CHECK(shmx_submit(pool, "sleepy", &ms, sizeof ms, &jobs[0]) == SHMX_OK, "submit");
    CHECK(shmx_wait_any(pool, 10000000000LL, &got) == SHMX_OK && got == jobs[0], "it ends");
    CHECK(shmx_forget(pool, jobs[0]) == SHMX_OK, "forget an ended job");
    CHECK(shmx_wait(pool, jobs[0], 0, &res) == SHMX_EINVAL, "... it is gone");
    CHECK(shmx_forget(pool, 123456789) == SHMX_EINVAL && shmx_forget(NULL, 1) == SHMX_EINVAL, "forget: unknown job, NULL pool");
    CHECK(shmx_pool_close(pool, -1) == SHMX_OK, "close");

    /* Forgotten outputs are freed: 64 forgotten echoes of 1 MiB (C memory)
       would leave this process 64 MiB larger. */
    pool = make_pool(2, 0, 0);
    if (!pool) return;
    size_t n = 1 << 20;
    char *in = calloc(1, n);
    CHECK(run(pool, "echo", in, n, &res) == SHMX_OK, "warm-up echo");
    shmx_result_release(pool, &res);
    long before = rss_kib();
    for (int i = 0; i < 64; i++) {
        int ok = shmx_submit(pool, "echo", in, n, &jobs[0]) == SHMX_OK;
        if (ok && i % 2) { /* half of them after they end */
            ok = shmx_wait_any(pool, 10000000000LL, &got) == SHMX_OK && got == jobs[0];
        }
        ok = ok && shmx_forget(pool, jobs[0]) == SHMX_OK;
        if (!ok) {
            CHECK(0, "forgotten echo %d", i);
            break;
        }
    }
    struct timespec settle = {0, 300000000}; /* the last ones end */
    nanosleep(&settle, NULL);
    long after = rss_kib();
#ifdef UNDER_ASAN
    printf("skip: forgotten outputs are freed (RSS %ld -> %ld KiB): ASan's quarantine keeps freed memory\n", before, after);
#else
    CHECK(before > 0 && after - before < 32 << 10, "forgotten outputs are freed: RSS %ld -> %ld KiB", before, after);
#endif
    free(in);
    CHECK(shmx_pool_close(pool, -1) == SHMX_OK, "close");
}

struct waiter { shmx_pool *pool; shmx_job job; int rc; shmx_result res; };

static void *wait_in_thread(void *arg) {
    struct waiter *w = arg;
    w->rc = shmx_wait(w->pool, w->job, -1, &w->res);
    return NULL;
}

/* A thread waiting for a finished job: in shmx_wait_group for group, or
   in shmx_wait_any for group 0. */
struct any_waiter { shmx_pool *pool; uint32_t group; int rc; shmx_job got; double took; };

static void *wait_any_in_thread(void *arg) {
    struct any_waiter *w = arg;
    double t0 = now();
    w->rc = w->group ? shmx_wait_group(w->pool, w->group, 10000000000LL, &w->got) : shmx_wait_any(w->pool, 10000000000LL, &w->got);
    w->took = now() - t0;
    return NULL;
}

/* Threads asleep in shmx_wait_any: each job that ends wakes one of them
   (three jobs, three threads, each reported once), and a close wakes
   every one still asleep, which returns SHMX_ECLOSED at once rather than
   when its 10 s limit runs out. */
static void test_wait_any_threads(void) {
    shmx_pool *pool = make_pool(3, 0, 0);
    if (!pool) return;
    enum { N = 3 };
    struct any_waiter w[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        w[i] = (struct any_waiter){pool, 0, -1, 0, 0};
        pthread_create(&t[i], NULL, wait_any_in_thread, &w[i]);
    }
    struct timespec settle = {0, 100000000}; /* asleep before the jobs end */
    nanosleep(&settle, NULL);
    shmx_job jobs[N];
    int ms = 50;
    for (int i = 0; i < N; i++) CHECK(shmx_submit(pool, "sleepy", &ms, sizeof ms, &jobs[i]) == SHMX_OK, "submit %d", i);
    int seen[N] = {0};
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        CHECK(w[i].rc == SHMX_OK && w[i].took < 5, "thread %d in wait_any: rc %d after %.3f s", i, w[i].rc, w[i].took);
        for (int k = 0; k < N; k++) seen[k] += w[i].rc == SHMX_OK && w[i].got == jobs[k];
        shmx_result res;
        if (w[i].rc == SHMX_OK && shmx_wait(pool, w[i].got, 0, &res) == SHMX_OK) shmx_result_release(pool, &res);
    }
    CHECK(seen[0] == 1 && seen[1] == 1 && seen[2] == 1, "each job reported to one thread: %d %d %d", seen[0], seen[1], seen[2]);
    for (int i = 0; i < N; i++) {
        w[i] = (struct any_waiter){pool, 0, -1, 0, 0};
        pthread_create(&t[i], NULL, wait_any_in_thread, &w[i]);
    }
    nanosleep(&settle, NULL);
    CHECK(shmx_pool_close(pool, -1) == SHMX_OK, "close while threads wait in wait_any");
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        CHECK(w[i].rc == SHMX_ECLOSED && w[i].took < 5, "thread %d in wait_any at the close: rc %d after %.3f s", i, w[i].rc, w[i].took);
    }
}

/* shmx_wake_any: a thread asleep in shmx_wait_any returns SHMX_EINTR at
   once; a wake with nobody waiting is kept for the next call (two wakes
   before it are one); a job that has ended is reported before the wake. */
static void test_wake_any(void) {
    shmx_pool *pool = make_pool(1, 0, 0);
    if (!pool) return;
    struct any_waiter w = {pool, 0, -1, 0, 0};
    pthread_t t;
    pthread_create(&t, NULL, wait_any_in_thread, &w);
    struct timespec settle = {0, 100000000}; /* asleep before the wake */
    nanosleep(&settle, NULL);
    CHECK(shmx_wake_any(pool) == SHMX_OK, "wake");
    pthread_join(t, NULL);
    CHECK(w.rc == SHMX_EINTR && w.took < 5, "a thread asleep in wait_any is woken: rc %d after %.3f s", w.rc, w.took);
    shmx_job got, job;
    CHECK(shmx_wait_any(pool, 30000000, &got) == SHMX_ETIMEDOUT, "a wake is taken once");
    CHECK(shmx_wake_any(pool) == SHMX_OK && shmx_wake_any(pool) == SHMX_OK, "wake twice, nobody waiting");
    double t0 = now();
    CHECK(shmx_wait_any(pool, 10000000000LL, &got) == SHMX_EINTR && now() - t0 < 5, "a wake is kept for the next wait");
    CHECK(shmx_wait_any(pool, 30000000, &got) == SHMX_ETIMEDOUT, "two wakes before a wait are one");
    int ms = 1;
    shmx_result res;
    CHECK(shmx_submit(pool, "sleepy", &ms, sizeof ms, &job) == SHMX_OK, "submit");
    CHECK(shmx_wait_any(pool, 10000000000LL, &got) == SHMX_OK && got == job, "the job ends");
    /* One worker runs its jobs in order: once a second job is fetched,
       the first has ended, unreported yet. */
    shmx_job second;
    shmx_submit_opts own;
    shmx_submit_opts_init(&own);
    own.flags = SHMX_SUBMIT_OWN_WAIT;
    CHECK(shmx_submit(pool, "sleepy", &ms, sizeof ms, &job) == SHMX_OK, "submit again");
    CHECK(shmx_submit_with(pool, "sleepy", &ms, sizeof ms, &own, &second) == SHMX_OK, "submit a second");
    CHECK(shmx_wait(pool, second, -1, &res) == SHMX_OK && res.status == SHMX_OK, "the second ends");
    shmx_result_release(pool, &res);
    CHECK(shmx_wake_any(pool) == SHMX_OK, "wake with a job ended");
    CHECK(shmx_wait_any(pool, 10000000000LL, &got) == SHMX_OK && got == job, "the ended job comes before the wake");
    CHECK(shmx_wait_any(pool, 10000000000LL, &got) == SHMX_EINTR, "... and the wake after it");
    CHECK(shmx_wait(pool, job, 0, &res) == SHMX_OK, "fetch");
    shmx_result_release(pool, &res);
    CHECK(shmx_wake_any(NULL) == SHMX_EINVAL, "NULL pool");
    CHECK(shmx_pool_close(pool, -1) == SHMX_OK, "close");
}

/* shmx_wait_group reports the finished jobs of its group, each once, and
   no others; shmx_wait_any never reports them; a job waited for in
   shmx_wait, or forgotten, is not reported, one whose shmx_wait timed
   out is once it ends; a thread asleep on a group is woken by its job's
   end and by a close (SHMX_ECLOSED). */
static void test_wait_group(void) {
    shmx_pool *pool = make_pool(3, 0, 0);
    if (!pool) return;
    shmx_submit_opts g7, g8;
    shmx_submit_opts_init(&g7);
    g7.group = 7;
    g8 = g7;
    g8.group = 8;
    shmx_job mine[3], other, plain, got;
    shmx_result res;
    int ms = 20;
    for (int i = 0; i < 3; i++) CHECK(shmx_submit_with(pool, "sleepy", &ms, sizeof ms, &g7, &mine[i]) == SHMX_OK, "submit to group 7: %d", i);
    CHECK(shmx_submit_with(pool, "sleepy", &ms, sizeof ms, &g8, &other) == SHMX_OK, "submit to group 8");
    CHECK(shmx_submit(pool, "sleepy", &ms, sizeof ms, &plain) == SHMX_OK, "submit without a group");
    int seen[3] = {0};
    for (int i = 0; i < 3; i++) {
        CHECK(shmx_wait_group(pool, 7, 10000000000LL, &got) == SHMX_OK, "wait_group 7: %d", i);
        for (int k = 0; k < 3; k++) seen[k] += got == mine[k];
        CHECK(shmx_wait(pool, got, 0, &res) == SHMX_OK && res.status == SHMX_OK, "the reported job is finished");
        shmx_result_release(pool, &res);
    }
    CHECK(seen[0] == 1 && seen[1] == 1 && seen[2] == 1, "each job of group 7 reported once: %d %d %d", seen[0], seen[1], seen[2]);
    CHECK(shmx_wait_group(pool, 7, 30000000, &got) == SHMX_ETIMEDOUT, "group 7 has nothing left: timeout");
    CHECK(shmx_wait_any(pool, 10000000000LL, &got) == SHMX_OK && got == plain, "wait_any reports the job without a group");
    CHECK(shmx_wait(pool, got, 0, &res) == SHMX_OK, "... fetched");
    shmx_result_release(pool, &res);
    CHECK(shmx_wait_any(pool, 30000000, &got) == SHMX_ETIMEDOUT, "wait_any does not report a group's jobs");
    CHECK(shmx_wait_group(pool, 8, 10000000000LL, &got) == SHMX_OK && got == other, "group 8 reports its job");
    CHECK(shmx_wait(pool, got, 0, &res) == SHMX_OK, "... fetched");
    shmx_result_release(pool, &res);

    /* Waited for in shmx_wait: not reported; a wait that timed out
       leaves it to the group once it ends; forgotten: not reported. */
    CHECK(shmx_submit_with(pool, "sleepy", &ms, sizeof ms, &g7, &mine[0]) == SHMX_OK, "submit");
    CHECK(shmx_wait(pool, mine[0], -1, &res) == SHMX_OK && res.status == SHMX_OK, "wait");
    shmx_result_release(pool, &res);
    CHECK(shmx_wait_group(pool, 7, 30000000, &got) == SHMX_ETIMEDOUT, "a job fetched by shmx_wait is not reported");
    ms = 100;
    CHECK(shmx_submit_with(pool, "sleepy", &ms, sizeof ms, &g7, &mine[0]) == SHMX_OK, "submit");
    CHECK(shmx_wait(pool, mine[0], 0, &res) == SHMX_ETIMEDOUT, "a wait that runs out");
    CHECK(shmx_wait_group(pool, 7, 10000000000LL, &got) == SHMX_OK && got == mine[0], "... leaves the job to the group");
    CHECK(shmx_wait(pool, got, 0, &res) == SHMX_OK, "... fetched");
    shmx_result_release(pool, &res);
    CHECK(shmx_submit_with(pool, "sleepy", &ms, sizeof ms, &g7, &mine[0]) == SHMX_OK, "submit");
    CHECK(shmx_forget(pool, mine[0]) == SHMX_OK, "forget it");
    CHECK(shmx_wait_group(pool, 7, 400000000, &got) == SHMX_ETIMEDOUT, "a forgotten job is not reported when it ends");

    /* Refused: group 0, a job both own and a group's, no pool. */
    CHECK(shmx_wait_group(pool, 0, 0, &got) == SHMX_EINVAL, "group 0");
    CHECK(shmx_wait_group(NULL, 7, 0, &got) == SHMX_EINVAL, "NULL pool");
    g7.flags = SHMX_SUBMIT_OWN_WAIT;
    CHECK(shmx_submit_with(pool, "sleepy", &ms, sizeof ms, &g7, &mine[0]) == SHMX_EINVAL, "own and a group's");
    g7.flags = 0;

    /* A thread asleep on the group wakes for its job, and at the close. */
    struct any_waiter w = {pool, 7, -1, 0, 0};
    pthread_t t;
    pthread_create(&t, NULL, wait_any_in_thread, &w);
    struct timespec settle = {0, 100000000}; /* asleep before the job ends */
    nanosleep(&settle, NULL);
    ms = 50;
    CHECK(shmx_submit_with(pool, "sleepy", &ms, sizeof ms, &g7, &mine[0]) == SHMX_OK, "submit");
    pthread_join(t, NULL);
    CHECK(w.rc == SHMX_OK && w.got == mine[0] && w.took < 5, "the sleeping thread gets its group's job: rc %d after %.3f s", w.rc, w.took);
    if (w.rc == SHMX_OK && shmx_wait(pool, w.got, 0, &res) == SHMX_OK) shmx_result_release(pool, &res);
    w = (struct any_waiter){pool, 9, -1, 0, 0};
    pthread_create(&t, NULL, wait_any_in_thread, &w);
    nanosleep(&settle, NULL);
    CHECK(shmx_pool_close(pool, -1) == SHMX_OK, "close while a thread waits on a group");
    pthread_join(t, NULL);
    CHECK(w.rc == SHMX_ECLOSED && w.took < 5, "the thread on the group at the close: rc %d after %.3f s", w.rc, w.took);
}

/* A worker SIGKILLed from outside while a thread sleeps in
   shmx_wait_any, or in shmx_wait_group for the job's group: the crashed
   job is reported to that thread at once, not when its 10 s limit runs
   out, and its outcome is the crash. */
static void test_kill_while_waiting_any(uint32_t group) {
    int p[2];
    int32_t pid = 0;
    shmx_job job;
    shmx_submit_opts opts;
    shmx_submit_opts_init(&opts);
    opts.group = group;
    shmx_pool *pool = pool_running_a_minute_job(p, &pid, &opts, &job);
    struct any_waiter w = {pool, group, -1, 0, 0};
    pthread_t t;
    pthread_create(&t, NULL, wait_any_in_thread, &w);
    struct timespec settle = {0, 100000000}; /* asleep before the kill */
    nanosleep(&settle, NULL);
    CHECK(kill(pid, SIGKILL) == 0, "SIGKILL the worker");
    pthread_join(t, NULL);
    CHECK(w.rc == SHMX_OK && w.got == job && w.took < 5, "the sleeping thread (group %u) gets the crashed job: rc %d, job %llu (want %llu) after %.3f s",
          group, w.rc, (unsigned long long)w.got, (unsigned long long)job, w.took);
    shmx_result res;
    CHECK(shmx_wait(pool, job, 0, &res) == SHMX_OK && res.status == SHMX_EWORKER_CRASHED && res.signal == SIGKILL && res.worker_pid == pid,
          "its outcome is the crash: status %d, signal %d, pid %d (worker %d)", res.status, res.signal, res.worker_pid, pid);
    shmx_result_release(pool, &res);
    CHECK(shmx_pool_close(pool, -1) == SHMX_OK, "close");
    close(p[0]);
    close(p[1]);
}

/* Two threads wait for one job: one gets the result, the other EINVAL
   (the result is one copy with one owner). */
static void test_two_waiters(void) {
    shmx_pool *pool = make_pool(1, 0, 0);
    if (!pool) return;
    int ms = 100;
    struct waiter a = {pool, 0, 0, {0}}, b;
    CHECK(shmx_submit(pool, "sleepy", &ms, sizeof ms, &a.job) == SHMX_OK, "submit");
    b = a;
    pthread_t ta, tb;
    pthread_create(&ta, NULL, wait_in_thread, &a);
    pthread_create(&tb, NULL, wait_in_thread, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK((a.rc == SHMX_OK) + (b.rc == SHMX_OK) == 1 && (a.rc == SHMX_EINVAL || b.rc == SHMX_EINVAL),
          "one waiter gets it: %d %d", a.rc, b.rc);
    if (a.rc == SHMX_OK) shmx_result_release(pool, &a.res);
    if (b.rc == SHMX_OK) shmx_result_release(pool, &b.res);
    CHECK(shmx_pool_close(pool, -1) == SHMX_OK, "close");
}

/* A thread waits for a job while another terminates the pool: the wait
   ends, and every call with the handle afterwards returns SHMX_EINVAL
   instead of reading freed memory (which the ASan build would report);
   so does a second close. */
static void test_close_while_waiting(void) {
    shmx_pool *pool = make_pool(1, 0, 0);
    if (!pool) return;
    int ms = 5000;
    struct waiter w = {pool, 0, 0, {0}};
    CHECK(shmx_submit(pool, "sleepy", &ms, sizeof ms, &w.job) == SHMX_OK, "submit");
    pthread_t t;
    pthread_create(&t, NULL, wait_in_thread, &w);
    struct timespec settle = {0, 100000000};
    nanosleep(&settle, NULL);
    double t0 = now();
    CHECK(shmx_pool_terminate(pool) == SHMX_OK, "terminate while a thread waits");
    pthread_join(t, NULL);
    CHECK(now() - t0 < 10 && (w.rc == SHMX_EINVAL || (w.rc == SHMX_OK && w.res.status != SHMX_OK)),
          "the wait ends without the job's output: %d", w.rc);
    if (w.rc == SHMX_OK) shmx_result_release(NULL, &w.res);
    shmx_result res;
    shmx_job job;
    CHECK(shmx_wait(pool, w.job, 0, &res) == SHMX_EINVAL, "wait after terminate");
    CHECK(shmx_submit(pool, "echo", "x", 1, &job) == SHMX_EINVAL, "submit after terminate");
    CHECK(shmx_pool_close(pool, -1) == SHMX_EINVAL && shmx_pool_terminate(pool) == SHMX_EINVAL, "a second close");
    /* Its memory is not reused: a freed handle would come back from
       malloc as the next pool's, and calls with the stale one would act
       on that pool. */
    shmx_pool *next = make_pool(1, 0, 0);
    CHECK(next != pool && shmx_submit(pool, "echo", "x", 1, &job) == SHMX_EINVAL, "a closed handle never names a later pool");
    CHECK(shmx_pool_close(next, -1) == SHMX_OK, "close the later pool");
}

/* Whether p lies in a shared mapping of this process (the pool's
   segment), per /proc/self/maps; C memory for an output is private. */
static int in_shared_mapping(const void *p) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return -1;
    char line[512];
    int shared = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && (unsigned long)p >= lo && (unsigned long)p < hi) {
            shared = perms[3] == 's';
            break;
        }
    }
    fclose(f);
    return shared;
}

/* shmx_results_in_place: large outputs are read where the worker wrote
   them, until shmx_result_release; smaller ones are copied; a forked
   child's release neither hangs nor frees the parent's; one held across
   shmx_pool_close stays readable until released. */
static void test_results_in_place(void) {
    shmx_pool_config cfg;
    shmx_pool_config_init(&cfg);
    cfg.workers = 1;
    cfg.max_payload = 16 << 20;
    shmx_pool *pool = NULL;
    if (shmx_pool_create(&cfg, &pool) != SHMX_OK) {
        CHECK(0, "create: %s", shmx_last_error());
        return;
    }
    CHECK(shmx_results_in_place(NULL, 1) == SHMX_EINVAL, "in place: NULL pool");
    CHECK(shmx_results_in_place(pool, 1) == SHMX_OK, "in place from 1 byte (raised to 4 MiB)");
    size_t n = 8 << 20;
    unsigned char *in = malloc(n);
    for (size_t i = 0; i < n; i++) in[i] = (unsigned char)(i * 13);
    shmx_result res, small;
    shmx_stats st0 = {.struct_size = sizeof st0}, st1 = {.struct_size = sizeof st1};
    shmx_stats bad = {.struct_size = 8};
    CHECK(shmx_pool_stats(pool, &bad) == SHMX_EINVAL && shmx_pool_stats(pool, NULL) == SHMX_EINVAL && shmx_pool_stats(NULL, &st0) == SHMX_EINVAL,
          "stats: a short struct, NULL");
    CHECK(shmx_pool_stats(pool, &st0) == SHMX_OK && st0.page_size > 0 && st0.pages > 0 && st0.slots > 0 && st0.struct_size == sizeof st0,
          "stats: %u pages of %u bytes, %u slots", st0.pages, st0.page_size, st0.slots);
    CHECK(run(pool, "echo", in, n, &res) == SHMX_OK && res.len == n && memcmp(res.data, in, n) == 0, "8 MiB echo in place");
    CHECK(shmx_pool_stats(pool, &st1) == SHMX_OK && st1.pages_in_use >= st0.pages_in_use + n / st0.page_size &&
          st1.submitted == st0.submitted + 1 && st1.collected == st0.collected + 1,
          "stats: an output held in place takes its pages (%u in use, %u before)", st1.pages_in_use, st0.pages_in_use);
    CHECK(in_shared_mapping(res.data) == 1, "an 8 MiB output is read in the segment");
    CHECK(run(pool, "echo", in, 1 << 20, &small) == SHMX_OK && small.len == 1 << 20 && memcmp(small.data, in, 1 << 20) == 0 &&
          in_shared_mapping(small.data) == 0, "a 1 MiB output (under 4 MiB) is copied into private memory");
    shmx_result_release(pool, &small);
    {
        shmx_result held;
        CHECK(run(pool, "echo", in, n, &held) == SHMX_OK, "a second output held in place");
        shmx_stats a = {.struct_size = sizeof a}, b = {.struct_size = sizeof b};
        shmx_pool_stats(pool, &a);
        shmx_result_release(pool, &held);
        shmx_pool_stats(pool, &b);
        CHECK(b.pages_in_use + n / st0.page_size <= a.pages_in_use, "stats: releasing it frees its pages (%u, then %u)", a.pages_in_use,
              b.pages_in_use);
    }
    pid_t pid = fork();
    if (pid == 0) {
        shmx_result_release(pool, &res); /* unmaps the child's view only */
        _exit(res.data == NULL ? 0 : 1);
    }
    int status = 0;
    double t0 = now();
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0 && now() - t0 < 5, "a forked child releases an output in place at once");
    CHECK(memcmp(res.data, in, n) == 0, "the parent's output is intact after the child's release");
    shmx_result_release(pool, &res);
    CHECK(res.data == NULL, "release clears an output in place");
    for (int i = 0; i < 20; i++) { /* released space is reused, not leaked (64 MiB of payload space) */
        in[0] = (unsigned char)i;
        int ok = run(pool, "echo", in, n, &res) == SHMX_OK && res.len == n && ((const unsigned char *)res.data)[0] == i &&
                 in_shared_mapping(res.data) == 1;
        shmx_result_release(pool, &res);
        if (!ok) {
            CHECK(0, "echo %d in place", i);
            break;
        }
    }
    /* Forgotten outputs held in place are released: past half the
       payload space (4 of them) outputs would be copied instead. */
    for (int i = 0; i < 8; i++) {
        shmx_job job, got;
        int ok = shmx_submit(pool, "echo", in, n, &job) == SHMX_OK;
        if (ok && i % 2) ok = shmx_wait_any(pool, 10000000000LL, &got) == SHMX_OK && got == job;
        if (!ok || shmx_forget(pool, job) != SHMX_OK) {
            CHECK(0, "forgotten echo in place %d", i);
            break;
        }
    }
    CHECK(run(pool, "echo", in, n, &res) == SHMX_OK && res.len == n && in_shared_mapping(res.data) == 1,
          "after 8 forgotten outputs, the next is still held in place");
    shmx_result_release(pool, &res);
    CHECK(run(pool, "echo", in, n, &res) == SHMX_OK && res.len == n, "echo before close");
    CHECK(shmx_pool_close(pool, -1) == SHMX_OK, "close with an output held in place");
    CHECK(memcmp(res.data, in, n) == 0, "an output held in place is readable after close");
    shmx_result_release(NULL, &res);
    free(in);
}

/* shmx_copy copies exactly len bytes, below and above the size from which
   it uses threads, at odd offsets, and in a forked child (memcpy there). */
static int copy_ok(size_t len, size_t off) {
    unsigned char *src = malloc(len + 64), *dst = malloc(len + 64);
    if (!src || !dst) {
        free(src);
        free(dst);
        return 0;
    }
    for (size_t i = 0; i < len + 64; i++) src[i] = (unsigned char)(i * 131 + (i >> 12));
    memset(dst, 0xAB, len + 64);
    shmx_copy(dst + off, src + 3, len);
    int ok = memcmp(dst + off, src + 3, len) == 0 && dst[off + len] == 0xAB && (off == 0 || dst[off - 1] == 0xAB);
    free(src);
    free(dst);
    return ok;
}

static void test_copy(void) {
    size_t mib = (size_t)1 << 20;
    size_t lens[] = {0, 1, 4095, 8 * mib - 1, 8 * mib, 8 * mib + 12345, 33 * mib + 7};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        CHECK(copy_ok(lens[i], 0) && copy_ok(lens[i], 1) && copy_ok(lens[i], 63), "shmx_copy of %zu bytes", lens[i]);
    }
    pid_t pid = fork();
    if (pid == 0) _exit(copy_ok(9 * mib, 5) ? 0 : 1);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "shmx_copy in a forked child");
}

/* ready_workers: at most workers; 1 returns once one worker is ready and
   the pool runs jobs (python/tests and executor's TestReadyWorkers check
   that it does not wait for a slow one). */
static void test_ready_workers(void) {
    shmx_pool_config cfg;
    shmx_pool_config_init(&cfg);
    CHECK(cfg.ready_workers == 0, "ready_workers defaults to 0 (all)");
    cfg.workers = 2;
    cfg.ready_workers = 3;
    shmx_pool *pool = NULL;
    CHECK(shmx_pool_create(&cfg, &pool) == SHMX_EINVAL && strstr(shmx_last_error(), "ReadyWorkers"), "ready_workers over workers: %s", shmx_last_error());
    cfg.ready_workers = 1;
    CHECK(shmx_pool_create(&cfg, &pool) == SHMX_OK, "ready_workers 1: %s", shmx_last_error());
    shmx_result res;
    CHECK(run(pool, "echo", "r", 1, &res) == SHMX_OK && res.len == 1, "a job on a pool that waited for one worker");
    shmx_result_release(pool, &res);
    CHECK(shmx_pool_close(pool, -1) == SHMX_OK, "close");
}

static void test_misc(void) {
    CHECK(shmx_version_number() == SHMX_VERSION_NUMBER, "version");
    CHECK(strcmp(shmx_strerror(12345), "unknown error code") == 0, "strerror of an unknown code");
    for (int c = 0; c >= SHMX_EINTR; c--) CHECK(shmx_strerror(c) != NULL && strcmp(shmx_strerror(c), "unknown error code") != 0, "strerror %d", c);
    shmx_handler h = {"echo", echo, NULL};
    CHECK(shmx_worker_main(&h, 1, NULL, NULL) == 2, "worker_main outside a pool returns 2");
}

int main(int argc, char **argv) {
    init_fail = argc > 1 && strcmp(argv[1], "--init-fail") == 0;
    if (shmx_is_worker() && argc > 1 && strcmp(argv[1], "--pull") == 0) return pull_worker();
    if (shmx_is_worker()) {
        shmx_handler hs[] = {{"echo", echo, NULL}, {"sleepy", sleepy, NULL}, {"fails", fails, NULL}, {"big", big, NULL},
                             {"env", env, NULL}, {"signals", signals, NULL},
                             {"passed", write_passed, NULL}, {"started", started, NULL}, {"child", child, NULL}};
        return shmx_worker_main(hs, sizeof hs / sizeof hs[0], init_ok, NULL);
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    test_misc();
    test_copy();
    test_ready_workers();
    test_wait_any();
    test_wait_any_threads();
    test_wake_any();
    test_kill_while_waiting_any(0);
    test_kill_while_waiting_any(3);
    test_own_wait_and_forget();
    test_wait_group();
    test_two_waiters();
    test_close_while_waiting();
    test_basics();
    test_environment();
    test_timeout_and_full();
    test_fork_guard();
    test_workers();
    test_fatal_signals();
    test_kill_while_waiting_into();
    test_no_inherited_descriptors();
    test_terminate_in_flight();
    test_terminate_during_close();
    test_bad_workers();
    test_pull_worker();
    test_results_in_place();
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
