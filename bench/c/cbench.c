/*
 * cbench: round trip of an empty job from C to a C worker, beside the
 * floors measured in the same run: two processes ping-ponging a word of
 * shared memory by spinning (the floor for a busy worker) and by futex
 * sleeps (the floor for a sleeping one), and a pipe ping-pong. The pool is
 * measured twice: back to back, so that the worker is still polling when
 * the next job comes (busy), and with a pause between jobs longer than any
 * spin, so that the worker has gone to sleep (sleeping); the futex floor is
 * measured with the same pauses. Then the throughput of empty jobs
 * submitted in batches. Prints p50 and p99 of each and the ratios; with
 * --json, one JSON object for shmexec-bench.
 *
 *   ./build/cbench [iterations] [--json]
 *   ./build/cbench --profile N
 *
 * --profile runs only N busy round trips and prints nothing else: a
 * workload for a profiler (callgrind counts each C call's instructions,
 * docs/BENCHMARKS.md), without the floors' forked processes.
 */
#define _DEFAULT_SOURCE /* syscall, MAP_ANONYMOUS */
#include <linux/futex.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmexec.h"

extern char **environ;

static int empty(void *ctx, const void *in, size_t len, shmx_output *out) {
    (void)ctx; (void)in; (void)len; (void)out;
    return 0;
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static int json;

/* The pause between jobs that lets every waiter reach its futex sleep: far
 * longer than the ring's spin (50 us) and the client's. */
#define PAUSE_NS 1000000L

static void pause_between(void) {
    struct timespec ts = {0, PAUSE_NS};
    nanosleep(&ts, NULL);
}

static void futex_wait(uint32_t *w, uint32_t old) {
    syscall(SYS_futex, w, FUTEX_WAIT, old, NULL, NULL, 0);
}

static void futex_wake(uint32_t *w) {
    syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* ping_pong measures n round trips of a word with a forked child over
 * shared memory: spinning on it, or sleeping on it with futexes (then with
 * a pause before each ping when paused is set). The words sit on separate
 * cache lines, as the ring's are. */
static int ping_pong(int futex, int paused, long long *lat, int n) {
    uint32_t *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return -1;
    uint32_t *ping = &m[0], *pong = &m[16];
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        uint32_t last = 0;
        for (;;) {
            uint32_t v;
            while ((v = __atomic_load_n(ping, __ATOMIC_ACQUIRE)) == last) {
                if (futex) futex_wait(ping, last);
                else __builtin_ia32_pause();
            }
            if (v == UINT32_MAX) _exit(0);
            last = v;
            __atomic_store_n(pong, v, __ATOMIC_RELEASE);
            if (futex) futex_wake(pong);
        }
    }
    for (int i = -200; i < n; i++) {
        uint32_t v = (uint32_t)(i + 1000);
        if (paused) pause_between();
        long long t = now_ns();
        __atomic_store_n(ping, v, __ATOMIC_RELEASE);
        if (futex) futex_wake(ping);
        uint32_t got;
        while ((got = __atomic_load_n(pong, __ATOMIC_ACQUIRE)) != v) {
            if (futex) futex_wait(pong, got);
            else __builtin_ia32_pause();
        }
        if (i >= 0) lat[i] = now_ns() - t;
    }
    __atomic_store_n(ping, UINT32_MAX, __ATOMIC_RELEASE);
    futex_wake(ping);
    waitpid(pid, NULL, 0);
    munmap(m, 4096);
    return 0;
}

/* round_trips measures n empty jobs, one at a time, each waited for. */
static int round_trips(shmx_pool *pool, int paused, long long *lat, int n) {
    for (int i = -200; i < n; i++) {
        if (paused) pause_between();
        long long t = now_ns();
        shmx_job job;
        shmx_result res;
        if (shmx_submit(pool, "empty", NULL, 0, &job) != SHMX_OK || shmx_wait(pool, job, -1, &res) != SHMX_OK || res.status != SHMX_OK) {
            fprintf(stderr, "bench: job failed: %s\n", shmx_last_error());
            return -1;
        }
        shmx_result_release(pool, &res);
        if (i >= 0) lat[i] = now_ns() - t;
    }
    return 0;
}

static void report(const char *what, const char *key, long long *lat, int n, long long *p50) {
    qsort(lat, (size_t)n, sizeof *lat, cmp);
    *p50 = lat[n / 2];
    if (json) {
        printf("\"%s_p50_ns\": %lld, \"%s_p99_ns\": %lld, \"%s_p999_ns\": %lld, ", key, lat[n / 2], key,
               lat[(int)(n * 0.99)], key, lat[(int)(n * 0.999)]);
        return;
    }
    printf("%-42s p50 %8.2f us   p99 %8.2f us\n", what, lat[n / 2] / 1e3, lat[(int)(n * 0.99)] / 1e3);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--pipe-echo") == 0) {
        char b[8];
        while (read(0, b, sizeof b) == (ssize_t)sizeof b) {
            if (write(1, b, sizeof b) != (ssize_t)sizeof b) return 1;
        }
        return 0;
    }
    if (shmx_is_worker()) {
        shmx_handler h = {"empty", empty, NULL};
        return shmx_worker_main(&h, 1, NULL, NULL);
    }
    int n = 20000, profile = 0;
    const char *usage = "usage: cbench [iterations] [--json]\n       cbench --profile N\n";
    for (int i = 1; i < argc; i++) {
        char *end;
        if (strcmp(argv[i], "--json") == 0) json = 1;
        else if (strcmp(argv[i], "--profile") == 0) profile = 1;
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if ((n = (int)strtol(argv[i], &end, 10)) <= 0 || *end) {
            fprintf(stderr, "cbench: not a number of iterations: %s\n%s", argv[i], usage);
            return 2;
        }
    }
    if (n < 10) n = 10;
    long long *lat = malloc(sizeof *lat * (size_t)n);

    shmx_pool_config cfg;
    shmx_pool_config_init(&cfg);
    cfg.workers = 1;
    shmx_pool *pool;
    if (shmx_pool_create(&cfg, &pool) != SHMX_OK) {
        fprintf(stderr, "bench: %s\n", shmx_last_error());
        return 1;
    }
    if (profile) {
        int rc = round_trips(pool, 0, lat, n);
        shmx_pool_close(pool, -1);
        free(lat);
        return rc ? 1 : 0;
    }
    if (json) printf("{");
    long long pool_p50, pipe_p50, sleep_p50, spin_p50, futex_p50, futex_paused_p50;
    if (round_trips(pool, 0, lat, n)) return 1;
    report("C -> C, busy worker", "c_rt", lat, n, &pool_p50);
    /* Paused rounds take PAUSE_NS each: a fifth as many. */
    int np = n / 5 < 10 ? 10 : n / 5;
    if (round_trips(pool, 1, lat, np)) return 1;
    report("C -> C, sleeping worker", "c_rt_sleeping", lat, np, &sleep_p50);

    /* Throughput: empty jobs submitted in batches of 512, then waited for. */
    enum { WINDOW = 512 };
    shmx_job win[WINDOW];
    int total = n * 5;
    long long t0 = now_ns();
    for (int done = 0; done < total; done += WINDOW) {
        int m = total - done < WINDOW ? total - done : WINDOW;
        for (int i = 0; i < m; i++) {
            if (shmx_submit(pool, "empty", NULL, 0, &win[i]) != SHMX_OK) return 1;
        }
        for (int i = 0; i < m; i++) {
            shmx_result res;
            if (shmx_wait(pool, win[i], -1, &res) != SHMX_OK || res.status != SHMX_OK) return 1;
            shmx_result_release(pool, &res);
        }
    }
    double rate = total / ((now_ns() - t0) / 1e9);
    if (json) printf("\"c_batch_jobs_per_s\": %.0f, ", rate);
    else printf("%-28s %.0f jobs/s (%d empty jobs, batches of %d, 1 worker)\n", "C batch submit", rate, total, WINDOW);
    shmx_pool_close(pool, -1);

    /* The pipe baseline: this program re-executed as an echo child. */
    int to[2], from[2];
    if (pipe(to) || pipe(from)) return 1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to[0], 0);
    posix_spawn_file_actions_adddup2(&fa, from[1], 1);
    posix_spawn_file_actions_addclose(&fa, to[1]);
    posix_spawn_file_actions_addclose(&fa, from[0]);
    char self[4096];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    self[k > 0 ? k : 0] = 0;
    char *cargv[] = {self, "--pipe-echo", NULL};
    pid_t pid;
    if (posix_spawn(&pid, self, &fa, NULL, cargv, environ) != 0) return 1;
    close(to[0]);
    close(from[1]);
    char b[8] = {0};
    for (int i = -200; i < n; i++) {
        long long t = now_ns();
        if (write(to[1], b, sizeof b) != (ssize_t)sizeof b || read(from[0], b, sizeof b) != (ssize_t)sizeof b) return 1;
        if (i >= 0) lat[i] = now_ns() - t;
    }
    close(to[1]);
    waitpid(pid, NULL, 0);
    report("C pipe ping-pong (baseline)", "c_pipe", lat, n, &pipe_p50);

    if (ping_pong(0, 0, lat, n)) return 1;
    report("spin ping-pong (floor, busy)", "c_spin", lat, n, &spin_p50);
    if (ping_pong(1, 0, lat, n)) return 1;
    report("futex ping-pong", "c_futex", lat, n, &futex_p50);
    if (ping_pong(1, 1, lat, np)) return 1;
    report("futex ping-pong, paused (floor, sleeping)", "c_futex_paused", lat, np, &futex_paused_p50);
    if (json) {
        printf("\"iterations\": %d}\n", n);
        free(lat);
        return 0;
    }
    printf("ratios (p50): busy worker %.2fx the spin floor; sleeping worker %.2fx the paused futex floor; "
           "busy worker %.2fx the pipe\n",
           (double)pool_p50 / spin_p50, (double)sleep_p50 / futex_paused_p50, (double)pool_p50 / pipe_p50);
    free(lat);
    return 0;
}
