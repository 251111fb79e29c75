/*
 * attach_demo: a C client of a pool that `shmexec serve` serves.
 *
 *   attach_demo SOCKET [N]
 *
 * Attaches to the pool at SOCKET, sends N jobs (default 1000) to the
 * handler "upper" in batches, checks every result and prints
 * "attach_demo: N ok". The workers are the server's: for example Python
 * workers with raw-bytes handlers,
 *   shmexec serve --socket /tmp/s -- python3 -m shmexec.worker --handlers mymodule
 * Exit status: 0 all correct, 1 a job failed or came back wrong, 2 usage
 * or attach failure, 3 the server died (SHMX_EPOOL_DEAD).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmexec.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: attach_demo SOCKET [N]\n");
        return 2;
    }
    const int n = argc > 2 ? atoi(argv[2]) : 1000;
    shmx_pool *pool;
    int rc = shmx_pool_attach(argv[1], &pool);
    if (rc != SHMX_OK) {
        fprintf(stderr, "attach_demo: attach %s: %s: %s\n", argv[1], shmx_strerror(rc), shmx_last_error());
        return 2;
    }
    enum { BATCH = 64 };
    shmx_job jobs[BATCH];
    char in[64], want[64];
    int ok = 0, status = 0;
    for (int base = 0; base < n && status == 0; base += BATCH) {
        int m = n - base < BATCH ? n - base : BATCH;
        for (int i = 0; i < m; i++) {
            int len = snprintf(in, sizeof in, "job %d of attach_demo", base + i);
            rc = shmx_submit(pool, "upper", in, (size_t)len, &jobs[i]);
            if (rc != SHMX_OK) {
                fprintf(stderr, "attach_demo: submit: %s: %s\n", shmx_strerror(rc), shmx_last_error());
                m = i;
                status = rc == SHMX_EPOOL_DEAD ? 3 : 1;
                break;
            }
        }
        for (int i = 0; i < m; i++) {
            shmx_result res;
            rc = shmx_wait(pool, jobs[i], -1, &res);
            if (rc == SHMX_OK && res.status == SHMX_EPOOL_DEAD) rc = SHMX_EPOOL_DEAD;
            if (rc != SHMX_OK || res.status != SHMX_OK) {
                fprintf(stderr, "attach_demo: job %d: %s: %s\n", base + i,
                        shmx_strerror(rc != SHMX_OK ? rc : res.status), rc == SHMX_OK && res.error ? res.error : "");
                status = rc == SHMX_EPOOL_DEAD ? 3 : 1;
                if (rc == SHMX_OK) shmx_result_release(pool, &res);
                continue;
            }
            int len = snprintf(want, sizeof want, "JOB %d OF ATTACH_DEMO", base + i);
            if (res.len != (size_t)len || memcmp(res.data, want, (size_t)len) != 0) {
                fprintf(stderr, "attach_demo: job %d: wrong result %.*s\n", base + i, (int)res.len, (const char *)res.data);
                status = 1;
            } else {
                ok++;
            }
            shmx_result_release(pool, &res);
        }
    }
    shmx_pool_close(pool, -1);
    if (status == 0) printf("attach_demo: %d ok\n", ok);
    return status;
}
