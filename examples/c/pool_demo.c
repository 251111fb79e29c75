/*
 * pool_demo: one program that is both the client and the worker of a
 * shmexec pool. Run normally it starts a pool of workers (this same
 * executable, re-executed), runs 100,000 jobs over them and prints a
 * summary; started by the pool, shmx_is_worker() is 1 and it serves jobs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmexec.h"

/* square: input is a uint64, output its square. */
static int square(void *ctx, const void *in, size_t len, shmx_output *out) {
    (void)ctx;
    uint64_t x;
    if (len != sizeof x) return shmx_output_error(out, "ValueError", "want 8 bytes"), 1;
    memcpy(&x, in, sizeof x);
    x *= x;
    return shmx_output_set(out, &x, sizeof x);
}

/* upper: zero-copy output, the input upper-cased. */
static int upper(void *ctx, const void *in, size_t len, shmx_output *out) {
    (void)ctx;
    char *buf = shmx_output_alloc(out, len);
    if (!buf && len) return SHMX_ETOO_LARGE;
    for (size_t i = 0; i < len; i++) {
        char c = ((const char *)in)[i];
        buf[i] = (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
    }
    return 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    if (shmx_is_worker()) {
        shmx_handler handlers[] = {{"square", square, NULL}, {"upper", upper, NULL}};
        return shmx_worker_main(handlers, 2, NULL, NULL);
    }
    const int n = argc > 1 ? atoi(argv[1]) : 100000;
    shmx_pool_config cfg;
    shmx_pool_config_init(&cfg);
    cfg.workers = 2;
    shmx_pool *pool;
    int rc = shmx_pool_create(&cfg, &pool);
    if (rc != SHMX_OK) {
        fprintf(stderr, "pool_demo: create: %s: %s\n", shmx_strerror(rc), shmx_last_error());
        return 1;
    }
    double start = now();
    shmx_job *jobs = malloc(sizeof *jobs * (size_t)n);
    int bad = 0, window = 512;
    for (int i = 0; i < n + window; i++) {
        if (i < n) {
            uint64_t x = (uint64_t)i;
            rc = shmx_submit(pool, "square", &x, sizeof x, &jobs[i]);
            if (rc != SHMX_OK) {
                fprintf(stderr, "pool_demo: submit: %s\n", shmx_strerror(rc));
                return 1;
            }
        }
        int j = i - window; /* collect in order, a window behind */
        if (j >= 0 && j < n) {
            shmx_result res;
            rc = shmx_wait(pool, jobs[j], -1, &res);
            uint64_t y = 0;
            if (rc == SHMX_OK && res.status == SHMX_OK && res.len == sizeof y) memcpy(&y, res.data, sizeof y);
            if (rc != SHMX_OK || res.status != SHMX_OK || y != (uint64_t)j * (uint64_t)j) bad++;
            shmx_result_release(pool, &res);
        }
    }
    double el = now() - start;
    printf("C pool: %d jobs on 2 C worker processes in %.3f s (%.0f jobs/s), %d wrong\n", n, el, n / el, bad);

    shmx_job j;
    shmx_result res;
    const char *msg = "hello from shared memory";
    shmx_submit(pool, "upper", msg, strlen(msg), &j);
    shmx_wait(pool, j, -1, &res);
    printf("upper (zero-copy output): %.*s\n", (int)res.len, (const char *)res.data);
    shmx_result_release(pool, &res);

    shmx_submit(pool, "nosuch", NULL, 0, &j);
    shmx_wait(pool, j, -1, &res);
    printf("unknown handler: %s (%s)\n", shmx_strerror(res.status), res.error);
    shmx_result_release(pool, &res);

    free(jobs);
    rc = shmx_pool_close(pool, -1);
    return bad || rc != SHMX_OK;
}
