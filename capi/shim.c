/*
 * The public shmx_* functions. Each checks the fork guard in C, before the
 * Go runtime is entered (a forked child of a process running Go has one
 * thread and a runtime whose other threads are gone: entering it hangs),
 * then calls the Go side (shmxgo_*, hidden by the version script).
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shim.h"
#include "_cgo_export.h"

static volatile sig_atomic_t shmx_forked;

static void shmx_atfork_child(void) { shmx_forked = 1; }

__attribute__((constructor)) static void shmx_ctor(void) {
    pthread_atfork(NULL, NULL, shmx_atfork_child);
}

#define GUARD(ret) do { if (shmx_forked) return (ret); } while (0)

static __thread char last_error[512];

void shmxint_set_last_error(const char *msg) {
    snprintf(last_error, sizeof last_error, "%s", msg ? msg : "");
}

const char *shmx_last_error(void) {
    if (shmx_forked) return "called in a forked child: the library cannot be used after fork without exec";
    return last_error;
}

uint32_t shmx_version_number(void) { return SHMX_VERSION_NUMBER; }

const char *shmx_strerror(int code) {
    switch (code) {
    case SHMX_OK: return "success";
    case SHMX_EINVAL: return "invalid argument";
    case SHMX_ETIMEDOUT: return "timed out";
    case SHMX_EFULL: return "pool queue full";
    case SHMX_ECLOSED: return "pool closed";
    case SHMX_EHANDLER: return "handler failed";
    case SHMX_EWORKER_CRASHED: return "worker crashed";
    case SHMX_ECANCELLED: return "job cancelled";
    case SHMX_EUNKNOWN_HANDLER: return "unknown handler";
    case SHMX_ETOO_LARGE: return "payload too large";
    case SHMX_EFORKED: return "called in a forked child process";
    case SHMX_EPOOL_DEAD: return "pool supervisor died";
    case SHMX_ENOMEM: return "out of memory";
    case SHMX_ESYS: return "system call failed";
    case SHMX_EWORKER_START: return "workers fail to start";
    case SHMX_EINTR: return "woken by shmx_wake_any";  /* the lowest code: ctest names each down to it */
    }
    return "unknown error code";
}

void shmx_pool_config_init(shmx_pool_config *cfg) {
    if (!cfg) return;
    memset(cfg, 0, sizeof *cfg);
    cfg->struct_size = sizeof *cfg;
}

/* The first version of shmx_pool_config ended before pass_fds. */
#define SHMXINT_CONFIG_V1_SIZE offsetof(shmx_pool_config, pass_fds)

int shmx_pool_create(const shmx_pool_config *cfg, shmx_pool **out) {
    GUARD(SHMX_EFORKED);
    if (!cfg || !out || cfg->struct_size < SHMXINT_CONFIG_V1_SIZE) return SHMX_EINVAL;
    shmx_pool_config full;
    memset(&full, 0, sizeof full);
    memcpy(&full, cfg, cfg->struct_size < sizeof full ? cfg->struct_size : sizeof full);
    if (full.n_pass_fds && !full.pass_fds) return SHMX_EINVAL;
    return shmxgo_pool_create(&full, out);
}

int shmx_pool_attach(const char *socket_path, shmx_pool **out) {
    GUARD(SHMX_EFORKED);
    if (!socket_path || !*socket_path || !out) return SHMX_EINVAL;
    return shmxgo_pool_attach((char *)socket_path, out);
}

/* A closed handle is kept, never freed: another thread may be calling
   with it as it closes (a binding's thread waiting for a job while
   another terminates the pool), and a call that reads it after the close
   must find an id that names no pool (SHMX_EINVAL), not freed memory.
   That costs a few bytes per pool closed in the process's life; they
   stay reachable from here, so leak checkers do not count them. */
static pthread_mutex_t retired_mu = PTHREAD_MUTEX_INITIALIZER;
static shmx_pool *retired;

/* Closes pool; of two threads closing one handle, the one that took it
   retires it (the other gets SHMX_EINVAL, or, terminating while the
   first still waits for jobs, ends that wait). */
static int close_pool(shmx_pool *pool, int64_t timeout_ns, int terminate) {
    int took = 0;
    int rc = shmxgo_pool_close(pool, timeout_ns, terminate, &took);
    if (took) {
        pthread_mutex_lock(&retired_mu);
        pool->next_retired = retired;
        retired = pool;
        pthread_mutex_unlock(&retired_mu);
    }
    return rc;
}

int shmx_pool_close(shmx_pool *pool, int64_t timeout_ns) {
    GUARD(SHMX_EFORKED);
    if (!pool) return SHMX_OK;
    return close_pool(pool, timeout_ns, 0);
}

int shmx_pool_terminate(shmx_pool *pool) {
    GUARD(SHMX_EFORKED);
    if (!pool) return SHMX_OK;
    return close_pool(pool, 0, 1);
}

int shmx_pool_workers(shmx_pool *pool, int32_t *pids, size_t cap, size_t *n) {
    GUARD(SHMX_EFORKED);
    if (!pool || !n || (!pids && cap)) return SHMX_EINVAL;
    return shmxgo_pool_workers(pool, pids, cap, n);
}

int shmx_pool_stats(shmx_pool *pool, shmx_stats *st) {
    GUARD(SHMX_EFORKED);
    if (!pool || !st || st->struct_size < sizeof(shmx_stats)) return SHMX_EINVAL;
    uint32_t size = st->struct_size;
    memset(st, 0, sizeof *st);
    st->struct_size = size;
    return shmxgo_pool_stats(pool, st);
}

int shmx_submit(shmx_pool *pool, const char *handler, const void *data, size_t len, shmx_job *job) {
    GUARD(SHMX_EFORKED);
    if (!pool || !handler || !job || (!data && len)) return SHMX_EINVAL;
    return shmxgo_submit(pool, (char *)handler, (void *)data, len, job, 1);
}

int shmx_try_submit(shmx_pool *pool, const char *handler, const void *data, size_t len, shmx_job *job) {
    GUARD(SHMX_EFORKED);
    if (!pool || !handler || !job || (!data && len)) return SHMX_EINVAL;
    return shmxgo_submit(pool, (char *)handler, (void *)data, len, job, 0);
}

void shmx_submit_opts_init(shmx_submit_opts *opts) {
    if (!opts) return;
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->retries = -1;
}

/* The first version of shmx_submit_opts ended before flags. */
#define SHMXINT_OPTS_V1_SIZE offsetof(shmx_submit_opts, flags)

/* The time limit, retries, flags and group of opts (NULL: the pool's,
   none, none); flags gets the group in its top 32 bits, where the Go side
   reads it (capi/jobs.go, add). 0 for an opts too small to be one, with
   flags this library does not know, or for a job both its submitter's
   own and a group's. */
static int split_opts(const shmx_submit_opts *opts, int64_t *timeout, int32_t *retries, uint64_t *flags) {
    if (opts && opts->struct_size < SHMXINT_OPTS_V1_SIZE) return 0;
    *timeout = opts ? opts->timeout_ns : 0;
    *retries = opts ? opts->retries : -1;
    int full = opts && opts->struct_size >= sizeof(shmx_submit_opts);
    uint32_t bits = full ? opts->flags : 0, group = full ? opts->group : 0;
    *flags = (uint64_t)group << 32 | bits;
    if ((bits & ~(SHMX_SUBMIT_OWN_WAIT | SHMX_SUBMIT_NOWAIT)) != 0) return 0;
    return !(group && (bits & SHMX_SUBMIT_OWN_WAIT));
}

int shmx_submit_with(shmx_pool *pool, const char *handler, const void *data, size_t len,
                     const shmx_submit_opts *opts, shmx_job *job) {
    GUARD(SHMX_EFORKED);
    if (!pool || !handler || !job || (!data && len)) return SHMX_EINVAL;
    int64_t timeout;
    int32_t retries;
    uint64_t flags;
    if (!split_opts(opts, &timeout, &retries, &flags)) return SHMX_EINVAL;
    return shmxgo_submit_with(pool, (char *)handler, (void *)data, len, timeout, retries, flags, job);
}

int shmx_call(shmx_pool *pool, const char *handler, const void *data, size_t len,
              const shmx_submit_opts *opts, int64_t wait_ns, shmx_job *job, shmx_result *res) {
    GUARD(SHMX_EFORKED);
    if (!pool || !handler || !job || !res || (!data && len)) return SHMX_EINVAL;
    int64_t timeout;
    int32_t retries;
    uint64_t flags;
    if (!split_opts(opts, &timeout, &retries, &flags)) return SHMX_EINVAL;
    return shmxgo_call(pool, (char *)handler, (void *)data, len, timeout, retries, flags, wait_ns, job, res);
}

/* The step shmx_call_into and shmx_wait_into add to the call they make
   (whose code is r): a successful output of at most cap bytes moves into
   buf, and res keeps its length with data NULL. */
static int into_buffer(int r, shmx_result *res, void *buf, size_t cap) {
    if (r == SHMX_OK && res->status == SHMX_OK && res->data && res->len <= cap) {
        memcpy(buf, res->data, res->len);
        shmxint_result_free(res->data, res->len);
        res->data = NULL; /* res->len stays: the output is in buf */
    }
    return r;
}

int shmx_call_into(shmx_pool *pool, const char *handler, const void *data, size_t len,
                   const shmx_submit_opts *opts, int64_t wait_ns, void *buf, size_t cap,
                   shmx_job *job, shmx_result *res) {
    GUARD(SHMX_EFORKED);
    if (!buf && cap) return SHMX_EINVAL;
    return into_buffer(shmx_call(pool, handler, data, len, opts, wait_ns, job, res), res, buf, cap);
}

int shmx_wait(shmx_pool *pool, shmx_job job, int64_t timeout_ns, shmx_result *res) {
    GUARD(SHMX_EFORKED);
    if (!pool || !res) return SHMX_EINVAL;
    return shmxgo_wait(pool, job, timeout_ns, res);
}

int shmx_wait_into(shmx_pool *pool, shmx_job job, int64_t timeout_ns, void *buf, size_t cap, shmx_result *res) {
    GUARD(SHMX_EFORKED);
    if (!buf && cap) return SHMX_EINVAL;
    return into_buffer(shmx_wait(pool, job, timeout_ns, res), res, buf, cap);
}

/* A fresh 64 MiB output copied into malloc'd pages costs 16,384 page
   faults, more than the copy itself; with 2 MiB pages it costs 32.
   madvise only: where the kernel gives no huge pages, these are ordinary
   pages. */
void *shmxint_output_alloc(size_t n) {
    if (n < SHMXINT_HUGE_OUTPUT) return malloc(n);
    const size_t huge = (size_t)2 << 20, page = (size_t)sysconf(_SC_PAGESIZE);
    size_t len = (n + page - 1) & ~(page - 1);
    char *m = mmap(NULL, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    /* keep a 2 MiB-aligned stretch of len bytes; give back the slack */
    char *p = (char *)(((uintptr_t)m + huge - 1) & ~(uintptr_t)(huge - 1));
    if (p > m) munmap(m, (size_t)(p - m));
    if (m + len + huge > p + len) munmap(p + len, (size_t)(m + len + huge - (p + len)));
    (void)madvise(p, len, MADV_HUGEPAGE);
    return p;
}

void shmxint_output_free(const void *p, size_t n) {
    if (!p) return;
    if (n < SHMXINT_HUGE_OUTPUT) {
        free((void *)p);
        return;
    }
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    munmap((void *)p, (n + page - 1) & ~(page - 1));
}

/* In a forked child the Go side cannot be entered; unmapping the child's
   view of an output left in the segment is then right too: the pages are
   the parent's to free, and the child cannot use the pool. */
void shmxint_result_free(const void *p, size_t n) {
    if (p && n >= SHMXINT_HUGE_OUTPUT && !shmx_forked && shmxgo_release_in_place((void *)p)) return;
    shmxint_output_free(p, n);
}

int shmx_results_in_place(shmx_pool *pool, size_t min_len) {
    GUARD(SHMX_EFORKED);
    if (!pool) return SHMX_EINVAL;
    return shmxgo_results_in_place(pool, min_len);
}

void shmx_result_release(shmx_pool *pool, shmx_result *res) {
    (void)pool;
    if (!res) return;
    shmxint_result_free(res->data, res->len);
    free((void *)res->error);
    memset(res, 0, sizeof *res);
}

int shmx_buffer_alloc(shmx_pool *pool, size_t len, shmx_buffer *buf) {
    GUARD(SHMX_EFORKED);
    if (!pool || !buf) return SHMX_EINVAL;
    memset(buf, 0, sizeof *buf);
    return shmxgo_buffer_alloc(pool, len, 1, buf);
}

int shmx_buffer_try_alloc(shmx_pool *pool, size_t len, shmx_buffer *buf) {
    GUARD(SHMX_EFORKED);
    if (!pool || !buf) return SHMX_EINVAL;
    memset(buf, 0, sizeof *buf);
    return shmxgo_buffer_alloc(pool, len, 0, buf);
}

int shmx_submit_buffer_with(shmx_pool *pool, const char *handler, shmx_buffer *buf,
                            const shmx_submit_opts *opts, shmx_job *job) {
    GUARD(SHMX_EFORKED);
    if (!pool || !handler || !buf || !job || !buf->id) return SHMX_EINVAL;
    int64_t timeout;
    int32_t retries;
    uint64_t flags;
    if (!split_opts(opts, &timeout, &retries, &flags)) return SHMX_EINVAL;
    int rc = shmxgo_submit_buffer(pool, (char *)handler, buf, timeout, retries, flags, job);
    if (rc == SHMX_OK) memset(buf, 0, sizeof *buf);
    return rc;
}

int shmx_submit_buffer(shmx_pool *pool, const char *handler, shmx_buffer *buf, shmx_job *job) {
    return shmx_submit_buffer_with(pool, handler, buf, NULL, job);
}

void shmx_buffer_release(shmx_pool *pool, shmx_buffer *buf) {
    if (shmx_forked || !pool || !buf || !buf->id) return;
    shmxgo_buffer_release(pool, buf);
    memset(buf, 0, sizeof *buf);
}

void shmx_copy(void *dst, const void *src, size_t len) {
    if (shmx_forked || len < SHMXINT_PARALLEL_COPY_FROM) {
        if (len) memcpy(dst, src, len);
        return;
    }
    shmxgo_copy(dst, (void *)src, len);
}

int shmx_wait_any(shmx_pool *pool, int64_t timeout_ns, shmx_job *job) {
    GUARD(SHMX_EFORKED);
    if (!pool || !job) return SHMX_EINVAL;
    return shmxgo_wait_any(pool, timeout_ns, job);
}

int shmx_wake_any(shmx_pool *pool) {
    GUARD(SHMX_EFORKED);
    if (!pool) return SHMX_EINVAL;
    return shmxgo_wake_any(pool);
}

int shmx_wait_group(shmx_pool *pool, uint32_t group, int64_t timeout_ns, shmx_job *job) {
    GUARD(SHMX_EFORKED);
    if (!pool || !job || !group) return SHMX_EINVAL;
    return shmxgo_wait_group(pool, group, timeout_ns, job);
}

int shmx_cancel(shmx_pool *pool, shmx_job job, int kill) {
    GUARD(SHMX_EFORKED);
    if (!pool) return SHMX_EINVAL;
    return shmxgo_cancel(pool, job, kill);
}

int shmx_forget(shmx_pool *pool, shmx_job job) {
    GUARD(SHMX_EFORKED);
    if (!pool) return SHMX_EINVAL;
    return shmxgo_forget(pool, job);
}

int shmx_is_worker(void) {
    GUARD(SHMX_EFORKED);
    return shmxgo_is_worker();
}

/* In a worker process a signal that kills a process by default must kill
   the worker with that signal, so that the job reports it: a fault in a C
   handler (the Go runtime would print a traceback and exit 2 instead), or
   one the task sends itself with raise, kill or pthread_kill (which the Go
   runtime's handlers drop for these signals). The handler puts the
   default action back and raises the signal again: SA_NODEFER leaves it
   unblocked, so the kernel kills the process with it at once, whether it
   came from a faulting instruction or from a sender. */
static void shmx_die_by_fault(int sig) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigaction(sig, &sa, NULL);
    raise(sig);
}

static void shmx_fault_kills(void) {
    static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGPIPE};
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = shmx_die_by_fault;
        sa.sa_flags = SA_ONSTACK | SA_NODEFER;
        sigaction(faults[i], &sa, NULL);
    }
}

int shmx_worker_main(const shmx_handler *handlers, size_t n, int (*init)(void *ctx), void *init_ctx) {
    GUARD(SHMX_EFORKED);
    if (!handlers && n) return 2;
    if (shmxgo_is_worker()) shmx_fault_kills();
    return shmxgo_worker_main((shmx_handler *)handlers, n, (void *)init, init_ctx);
}

static struct shmx_worker the_worker = {1, NULL, 0}; /* one per process, never freed */

int shmx_worker_open(shmx_worker **out) {
    GUARD(SHMX_EFORKED);
    if (!out) return SHMX_EINVAL;
    int rc = shmxgo_worker_open();
    if (rc == SHMX_OK) {
        shmx_fault_kills();
        *out = &the_worker;
    }
    return rc;
}

int shmx_worker_slot(const shmx_worker *w, uint32_t *slot) {
    GUARD(SHMX_EFORKED);
    if (!w || !slot) return SHMX_EINVAL;
    return shmxgo_worker_slot((shmx_worker *)w, slot);
}

int shmx_worker_ready(shmx_worker *w) {
    GUARD(SHMX_EFORKED);
    if (!w) return SHMX_EINVAL;
    return shmxgo_worker_ready(w);
}

int shmx_worker_input_buffer(shmx_worker *w, void *buf, size_t cap) {
    GUARD(SHMX_EFORKED);
    if (!w || (!buf && cap)) return SHMX_EINVAL;
    w->in_buf = cap ? buf : NULL;
    w->in_cap = cap;
    return SHMX_OK;
}

int shmx_worker_next(shmx_worker *w, int64_t timeout_ns, shmx_task *task) {
    GUARD(SHMX_EFORKED);
    if (!w || !task) return SHMX_EINVAL;
    memset(task, 0, sizeof *task);
    int rc = shmxgo_worker_next(w, timeout_ns, task);
    if (rc == SHMX_OK && w->in_buf && task->in_len <= w->in_cap && task->in_len > 0) {
        memcpy(w->in_buf, task->in, task->in_len);
        task->in = w->in_buf;
    }
    return rc;
}

int shmx_task_input_file(shmx_worker *w, const shmx_task *task, int *fd, uint64_t *offset) {
    GUARD(SHMX_EFORKED);
    if (!w || !task || !task->id || !fd || !offset) return SHMX_EINVAL;
    return shmxgo_task_input_file((shmx_task *)task, fd, offset);
}

int shmx_task_done(shmx_worker *w, shmx_task *task, int rc) {
    GUARD(SHMX_EFORKED);
    if (!w || !task || !task->id) return SHMX_EINVAL;
    int r = shmxgo_task_done(w, task, rc);
    memset(task, 0, sizeof *task);
    return r;
}

int shmx_task_reply(shmx_worker *w, shmx_task *task, const void *data, size_t len) {
    GUARD(SHMX_EFORKED);
    if (!w || !task || !task->id || (!data && len)) return SHMX_EINVAL;
    static const char empty;
    int r = shmxgo_task_reply(w, task, data ? (void *)data : (void *)&empty, len);
    memset(task, 0, sizeof *task);
    return r;
}

int shmx_task_reply_next(shmx_worker *w, shmx_task *task, const void *data, size_t len,
                         int64_t timeout_ns, shmx_task *next) {
    GUARD(SHMX_EFORKED);
    if (!next) return SHMX_EINVAL;
    int r = shmx_task_reply(w, task, data, len);
    return r == SHMX_OK ? shmx_worker_next(w, timeout_ns, next) : r;
}

int shmx_output_set(shmx_output *out, const void *data, size_t len) {
    GUARD(SHMX_EFORKED);
    if (!out || (!data && len)) return SHMX_EINVAL;
    return shmxgo_output_set(out, (void *)data, len);
}

void *shmx_output_alloc(shmx_output *out, size_t len) {
    if (shmx_forked || !out) return NULL;
    return shmxgo_output_alloc(out, len);
}

int shmx_output_error(shmx_output *out, const char *type, const char *message) {
    GUARD(SHMX_EFORKED);
    if (!out) return SHMX_EINVAL;
    return shmxgo_output_error(out, (char *)(type ? type : ""), (char *)(message ? message : ""));
}

int shmxint_call_handler(shmx_handler_fn fn, void *ctx, const void *in, size_t len, shmx_output *out) {
    return fn(ctx, in, len, out);
}

int shmxint_call_init(int (*init)(void *), void *ctx) { return init(ctx); }
