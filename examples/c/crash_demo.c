/*
 * crash_demo: a handler that segfaults on some inputs. Those jobs end with
 * SHMX_EWORKER_CRASHED (with the worker's pid and signal); every other job
 * ends OK; the pool replaces the dead workers and keeps its size.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "shmexec.h"

static int fragile(void *ctx, const void *in, size_t len, shmx_output *out) {
    (void)ctx;
    int x = 0;
    if (len == sizeof x) memcpy(&x, in, sizeof x);
    if (x % 10 == 7) {
        volatile int *p = NULL;
        *p = 1; /* SIGSEGV: the worker dies */
    }
    x = -x;
    return shmx_output_set(out, &x, sizeof x);
}

int main(void) {
    if (shmx_is_worker()) {
        shmx_handler h = {"fragile", fragile, NULL};
        return shmx_worker_main(&h, 1, NULL, NULL);
    }
    shmx_pool_config cfg;
    shmx_pool_config_init(&cfg);
    cfg.workers = 2;
    shmx_pool *pool;
    int rc = shmx_pool_create(&cfg, &pool);
    if (rc != SHMX_OK) {
        fprintf(stderr, "crash_demo: create: %s: %s\n", shmx_strerror(rc), shmx_last_error());
        return 1;
    }
    enum { N = 40 };
    shmx_job jobs[N];
    for (int i = 0; i < N; i++) {
        if (shmx_submit(pool, "fragile", &i, sizeof i, &jobs[i]) != SHMX_OK) return 1;
    }
    int ok = 0, crashed = 0, wrong = 0;
    for (int i = 0; i < N; i++) {
        shmx_result res;
        if (shmx_wait(pool, jobs[i], 30000000000LL, &res) != SHMX_OK) {
            fprintf(stderr, "crash_demo: job %d did not end\n", i);
            return 1;
        }
        int y = 0;
        if (res.status == SHMX_OK && res.len == sizeof y) memcpy(&y, res.data, sizeof y);
        if (i % 10 == 7) {
            if (res.status == SHMX_EWORKER_CRASHED && res.signal == SIGSEGV && res.worker_pid > 0) {
                crashed++;
                if (crashed == 1) printf("job %d: %s: %s\n", i, shmx_strerror(res.status), res.error);
            } else {
                wrong++;
            }
        } else if (res.status == SHMX_OK && y == -i) {
            ok++;
        } else {
            wrong++;
            fprintf(stderr, "job %d: %s %s\n", i, shmx_strerror(res.status), res.error ? res.error : "");
        }
        shmx_result_release(pool, &res);
    }
    printf("crash_demo: %d jobs OK, %d ended SHMX_EWORKER_CRASHED (SIGSEGV in the handler), %d wrong\n", ok, crashed, wrong);
    rc = shmx_pool_close(pool, -1);
    return wrong != 0 || ok != N - N / 10 || crashed != N / 10 || rc != SHMX_OK;
}
