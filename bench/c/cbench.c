/*
 * cbench: round trip of an empty job from C to a C worker, beside a pipe
 * ping-pong with a child process, in the same run, and the throughput of
 * empty jobs submitted in batches. Prints p50 and p99 of each and their
 * ratio; with --json, one JSON object for shmexec-bench.
 *
 *   ./build/cbench [iterations] [--json]
 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static void report(const char *what, const char *key, long long *lat, int n, long long *p50) {
    qsort(lat, (size_t)n, sizeof *lat, cmp);
    *p50 = lat[n / 2];
    if (json) {
        printf("\"%s_p50_ns\": %lld, \"%s_p99_ns\": %lld, \"%s_p999_ns\": %lld, ", key, lat[n / 2], key,
               lat[(int)(n * 0.99)], key, lat[(int)(n * 0.999)]);
        return;
    }
    printf("%-28s p50 %8.2f us   p99 %8.2f us\n", what, lat[n / 2] / 1e3, lat[(int)(n * 0.99)] / 1e3);
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
    int n = 20000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) json = 1;
        else n = atoi(argv[i]);
    }
    if (n < 10) n = 10;
    long long *lat = malloc(sizeof *lat * (size_t)n);
    if (json) printf("{");

    shmx_pool_config cfg;
    shmx_pool_config_init(&cfg);
    cfg.workers = 1;
    shmx_pool *pool;
    if (shmx_pool_create(&cfg, &pool) != SHMX_OK) {
        fprintf(stderr, "bench: %s\n", shmx_last_error());
        return 1;
    }
    for (int i = -200; i < n; i++) {
        long long t = now_ns();
        shmx_job job;
        shmx_result res;
        if (shmx_submit(pool, "empty", NULL, 0, &job) != SHMX_OK || shmx_wait(pool, job, -1, &res) != SHMX_OK || res.status != SHMX_OK) {
            fprintf(stderr, "bench: job failed\n");
            return 1;
        }
        shmx_result_release(pool, &res);
        if (i >= 0) lat[i] = now_ns() - t;
    }
    long long pool_p50, pipe_p50;
    report("C -> C worker, empty job", "c_rt", lat, n, &pool_p50);

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
    if (json) {
        printf("\"iterations\": %d}\n", n);
        free(lat);
        return 0;
    }
    printf("ratio: the pool's round trip is %.1fx %s than the pipe's (p50)\n",
           pool_p50 < pipe_p50 ? (double)pipe_p50 / pool_p50 : (double)pool_p50 / pipe_p50,
           pool_p50 < pipe_p50 ? "faster" : "slower");
    free(lat);
    return 0;
}
