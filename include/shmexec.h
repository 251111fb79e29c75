/*
 * shmexec.h — the C interface of libshmexec, a shared-memory process pool.
 *
 * This header is written by hand and is the contract: names, types, values
 * of the codes and the meaning of every function are fixed once released.
 * The library is evolved by adding functions or struct_size-checked fields,
 * never by changing a signature.
 *
 * Conventions
 *   - Every function that can fail returns an int: SHMX_OK (0) or a
 *     negative SHMX_E... code. shmx_strerror() names a code.
 *   - Memory the library returns is released with the function named in
 *     the comment of the function that returned it; releasing NULL is a
 *     no-op.
 *   - Handles are opaque. A pool handle may be used from many threads.
 *   - In a process forked (without exec) from one that loaded the library,
 *     every call returns SHMX_EFORKED at once (checked before the runtime
 *     is entered). Start pools in processes that will not fork, or exec.
 *   - The library installs no signal handler the host relies on and must
 *     never be dlclose()d.
 */
#ifndef SHMEXEC_H
#define SHMEXEC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHMX_VERSION_MAJOR 0
#define SHMX_VERSION_MINOR 1
#define SHMX_VERSION_PATCH 0
#define SHMX_VERSION_NUMBER (SHMX_VERSION_MAJOR * 10000 + SHMX_VERSION_MINOR * 100 + SHMX_VERSION_PATCH)

/* Returns: the library's SHMX_VERSION_NUMBER (which may differ from the
   header's if an older or newer library is loaded). */
uint32_t shmx_version_number(void);

/* Codes. SHMX_OK is 0; errors are negative and fixed forever. A job's
   outcome (shmx_result.status) uses the same codes. */
#define SHMX_OK                0
#define SHMX_EINVAL           -1  /* bad argument, unknown job */
#define SHMX_ETIMEDOUT        -2  /* a wait ran out (shmx_wait), or a job ran past its timeout (status) */
#define SHMX_EFULL            -3  /* no free job slot (non-blocking submit) */
#define SHMX_ECLOSED          -4  /* the pool is closed or closing */
#define SHMX_EHANDLER         -5  /* the handler failed; see shmx_result.error */
#define SHMX_EWORKER_CRASHED  -6  /* the worker running the job died */
#define SHMX_ECANCELLED       -7  /* the job was cancelled */
#define SHMX_EUNKNOWN_HANDLER -8  /* no handler of that name in the workers */
#define SHMX_ETOO_LARGE       -9  /* input or output over max_payload */
#define SHMX_EFORKED          -10 /* called in a forked child of a process that used the library */
#define SHMX_EPOOL_DEAD       -11 /* the pool's supervisor died */
#define SHMX_ENOMEM           -12 /* out of memory */
#define SHMX_ESYS             -13 /* a system call failed; see shmx_last_error */
#define SHMX_EWORKER_START    -14 /* no worker is alive and the last start failed (bad command, crash at start-up, failing init); the pool keeps trying */
#define SHMX_EINTR            -15 /* shmx_wait_any woken by shmx_wake_any, no job reported */

/* Returns: a static string naming code; never NULL ("unknown error code"
   for a code this library does not know). */
const char *shmx_strerror(int code);

typedef struct shmx_pool shmx_pool; /* opaque */
typedef uint64_t shmx_job;

typedef struct shmx_pool_config {
    uint32_t struct_size;           /* sizeof(shmx_pool_config), set by shmx_pool_config_init */
    uint32_t workers;               /* 0: one per CPU the process may run on (its affinity) */
    const char *const *worker_argv; /* NULL-terminated; NULL: this executable */
    uint32_t queue_depth;           /* job slots; 0: 1024 */
    uint64_t max_payload;           /* bytes; 0: 64 MiB */
    uint32_t max_tasks_per_worker;  /* 0: unlimited */
    uint32_t retries;               /* re-runs after a worker crash; 0: none */
    int64_t job_timeout_ns;         /* 0: none */
    /* Descriptors every worker gets, as 4, 5, ... in order (its
       environment's SHMEXEC_PASS_FDS names them). Workers get no other
       descriptor of this process but 0, 1, 2 and the pool's own: one the
       program made inheritable is closed in the worker before it runs
       anything. (A config from a header without these fields, whose
       struct_size ends before them, passes none.) */
    const int *pass_fds;
    uint32_t n_pass_fds;
    /* How many workers shmx_pool_create waits for before it returns (at
       most workers; 0, as shmx_pool_config_init sets it: all); the others
       start while the first jobs run. A start that fails in every worker
       fails the create either way. */
    uint32_t ready_workers;
} shmx_pool_config;

/* Fills cfg with the defaults and sets struct_size. */
void shmx_pool_config_init(shmx_pool_config *cfg);

/* Starts a pool and its workers; returns once they are ready (cfg->
   ready_workers of them, when set). Each worker
   (a respawned one too) starts with the process's environment as it is
   when that worker starts, as posix_spawn(..., environ) would give it.
   Returns: SHMX_OK and *out, to be released with shmx_pool_close or
   shmx_pool_terminate; SHMX_EINVAL for a bad config, or in a process
   that is itself a pool worker (workers may not start pools: that would
   never end in a program that creates its pool before checking
   shmx_is_worker); SHMX_EWORKER_START if the workers cannot start
   (shmx_last_error() says why). */
int shmx_pool_create(const shmx_pool_config *cfg, shmx_pool **out);

/* Attaches this process as a client of the pool that `shmexec serve`
   serves on the Unix socket socket_path. The handle then works with
   shmx_submit, shmx_wait and the rest; shmx_pool_close detaches (the
   served pool goes on) and shmx_pool_terminate does the same. If this
   process dies, the server reclaims its queued jobs and space. If the
   server dies, waits return SHMX_EPOOL_DEAD.
   Returns: SHMX_OK and *out; SHMX_ESYS if the socket cannot be reached
   (no such file, nobody listening, no permission); SHMX_EINVAL if the
   server refuses (shmx_last_error() says why, e.g. a uid it does not
   allow) or answers something else. */
int shmx_pool_attach(const char *socket_path, shmx_pool **out);

/* Stops intake, lets queued jobs finish for at most timeout_ns (< 0: the
   library's default of one minute), stops the workers and frees the pool.
   Jobs not waited for are discarded. For a handle from shmx_pool_attach:
   detaches, and jobs not waited for are abandoned. NULL: no-op.
   Another thread may be calling with the handle meanwhile (waiting for
   a job, say): its call ends, and every call with the handle after the
   close returns SHMX_EINVAL (the handle's few bytes are kept for that).
   Returns: SHMX_OK, or SHMX_ETIMEDOUT if jobs had to be killed;
   SHMX_EINVAL for a handle closed already. */
int shmx_pool_close(shmx_pool *pool, int64_t timeout_ns);

/* Kills the workers, fails pending jobs and frees the pool; the handle
   then behaves as after shmx_pool_close. NULL: no-op. While another
   thread's shmx_pool_close of the handle waits for jobs, it ends that
   wait: the jobs are killed, that close returns SHMX_ETIMEDOUT, and this
   call returns once the workers are gone.
   Returns: SHMX_OK; SHMX_EINVAL for a handle closed already. */
int shmx_pool_terminate(shmx_pool *pool);

/* The pool's worker processes: *n is set to the number of worker slots,
   and pids[i] (for i < cap) to the pid of slot i's process, or 0 while
   the slot has none (between a death and its replacement, or while its
   start is backed off after failures). pids may be NULL when cap is 0. Works for an
   attached handle too (the server's workers).
   Returns: SHMX_OK; SHMX_EINVAL for a closed handle or NULL n. */
int shmx_pool_workers(shmx_pool *pool, int32_t *pids, size_t cap, size_t *n);

/* A snapshot of the pool's counters and space (the figures of `shmexec
   stat`). Set struct_size to sizeof(shmx_stats) before the call: a
   library newer than the header fills only the fields the header knows. */
typedef struct shmx_stats {
    uint32_t struct_size;
    uint32_t page_size;      /* bytes in an arena page */
    uint64_t submitted;      /* jobs submitted, by every client */
    uint64_t collected;      /* results collected, by every client */
    uint64_t retried;        /* jobs re-run after a worker crash */
    uint64_t worker_deaths;  /* workers that died or were killed */
    uint64_t respawned;      /* workers started in place of others */
    uint32_t queued;         /* jobs waiting in the inqueue */
    uint32_t slots;          /* job slots */
    uint32_t slots_in_use;
    uint32_t pages;          /* arena pages: where large inputs and outputs live */
    uint32_t pages_in_use;   /* by queued and running jobs, and outputs held in place */
    uint32_t reserved;
} shmx_stats;

/* Returns: SHMX_OK with *st filled in; SHMX_EINVAL for a closed handle,
   a NULL st or a struct_size under that of this header's first version. */
int shmx_pool_stats(shmx_pool *pool, shmx_stats *st);

/* Queues a job for handler with a copy of data. Blocks while every job
   slot is in use. Returns: SHMX_OK and *job; SHMX_ETOO_LARGE,
   SHMX_ECLOSED, SHMX_EINVAL. */
int shmx_submit(shmx_pool *pool, const char *handler, const void *data, size_t len, shmx_job *job);

/* shmx_submit that returns SHMX_EFULL instead of blocking: when every job
   slot is in use, or when an input too large for its slot finds no room
   in the pool's shared memory now. */
int shmx_try_submit(shmx_pool *pool, const char *handler, const void *data, size_t len, shmx_job *job);

/* Per-job options for shmx_submit_with. */
typedef struct shmx_submit_opts {
    uint32_t struct_size; /* sizeof(shmx_submit_opts), set by shmx_submit_opts_init */
    int32_t retries;      /* re-runs after a worker crash; -1: the pool's */
    int64_t timeout_ns;   /* the job's time limit; 0: the pool's; < 0: none */
    uint32_t flags;       /* SHMX_SUBMIT_* bits; 0: none */
    uint32_t group;       /* the job's group for shmx_wait_group; 0: none */
} shmx_submit_opts;

/* The job is the submitter's to fetch with shmx_wait: shmx_wait_any never
   reports it. A caller that waits for its jobs in order (a binding's map)
   then wakes no collector thread for them; if it gives up on one, it
   calls shmx_forget. (An opts whose struct_size is 16, from a header
   that had no flags, is read without them.) */
#define SHMX_SUBMIT_OWN_WAIT 1u

/* shmx_submit_with, shmx_call and shmx_submit_buffer_with return
   SHMX_EFULL instead of waiting for a free job slot, or for room in the
   pool's shared memory for an input too large for its slot: the submit
   never blocks (a binding that feeds the pool from a thread of its own
   when it is full). A buffer refused so stays the caller's: submit it
   again or release it. */
#define SHMX_SUBMIT_NOWAIT 2u

/* Fills opts with "the pool's defaults" and sets struct_size. */
void shmx_submit_opts_init(shmx_submit_opts *opts);

/* shmx_submit with per-job options (opts may be NULL: the pool's). */
int shmx_submit_with(shmx_pool *pool, const char *handler, const void *data, size_t len,
                     const shmx_submit_opts *opts, shmx_job *job);

typedef struct shmx_result {
    int status;          /* SHMX_OK or the job's error code */
    const void *data;    /* output when status == SHMX_OK (NULL if empty) */
    size_t len;
    const char *error;   /* NUL-terminated detail otherwise: "Type: message\ntraceback" */
    int32_t worker_pid, signal, exit_code; /* set for SHMX_EWORKER_CRASHED */
} shmx_result;

/* Waits for job to end, for at most timeout_ns (< 0: no limit; 0: do not
   wait). Returns: SHMX_OK when the job has ended — its outcome is in
   res->status and res must be released with shmx_result_release; the job
   is then forgotten. SHMX_ETIMEDOUT when it has not ended yet (the job
   stays; wait again). SHMX_EINVAL for an unknown job, or when another
   thread waiting for the same job got it. */
int shmx_wait(shmx_pool *pool, shmx_job job, int64_t timeout_ns, shmx_result *res);

/* Submits a job and waits for it in one call: shmx_submit_with, then
   shmx_wait(job, wait_ns, res) — for a caller that waits for its own job
   at once (a binding's apply). shmx_wait_any does not report the job
   while this call waits for it.
   Returns: a submit error as shmx_submit_with (no job); otherwise as
   shmx_wait: SHMX_OK with the outcome in res (release it), or
   SHMX_ETIMEDOUT with *job still pending — wait for it with shmx_wait
   (or cancel it) as for any submitted job. */
int shmx_call(shmx_pool *pool, const char *handler, const void *data, size_t len,
              const shmx_submit_opts *opts, int64_t wait_ns, shmx_job *job, shmx_result *res);

/* shmx_call for a caller that keeps a buffer for small outputs: a
   successful output of at most cap bytes is copied into buf, and res then
   has data NULL and len the output's size (nothing of it to free: a
   binding saves a copy-out and a shmx_result_release call). A larger
   output, a failure or a wait that runs out comes as from shmx_call.
   Returns: as shmx_call; SHMX_EINVAL also for a NULL buf with cap > 0. */
int shmx_call_into(shmx_pool *pool, const char *handler, const void *data, size_t len,
                   const shmx_submit_opts *opts, int64_t wait_ns, void *buf, size_t cap,
                   shmx_job *job, shmx_result *res);

/* shmx_wait for a caller that keeps a buffer for small outputs, as
   shmx_call_into does: a successful output of at most cap bytes is
   copied into buf, and res then has data NULL and len the output's size
   (nothing of it to free). A larger output or a failure comes as from
   shmx_wait. For a binding that submits a job, hands out its future and
   fetches the outcome when it is asked for.
   Returns: as shmx_wait; SHMX_EINVAL also for a NULL buf with cap > 0. */
int shmx_wait_into(shmx_pool *pool, shmx_job job, int64_t timeout_ns, void *buf, size_t cap, shmx_result *res);

/* Frees what res points to and clears it; NULL-safe. */
void shmx_result_release(shmx_pool *pool, shmx_result *res);

/* Leaves successful outputs of at least min_len bytes (raised to 4 MiB;
   0: none, the default) in the pool's shared memory instead of copying
   them into C memory: res->data then points into the segment, read only,
   until shmx_result_release, which must follow once the output has been
   read (a binding that decodes it at once saves a copy of it). Held
   outputs take space that running jobs need for their data: while those
   held by this handle fill half the pool's payload space, further outputs
   are copied as before. One held when the pool closes stays
   readable until it is released.
   Returns: SHMX_OK; SHMX_EINVAL for a handle from shmx_pool_attach (a
   served pool's space may go to another client once this one detaches,
   so its outputs are always copied). */
int shmx_results_in_place(shmx_pool *pool, size_t min_len);

/* Zero-copy input: a buffer in the pool's shared memory. Fill
   buffer->data (buffer->len bytes), then shmx_submit_buffer hands it to
   the job without a copy; the worker's handler reads it in place. */
typedef struct shmx_buffer {
    void *data;
    size_t len;
    uint64_t id; /* the library's; do not change */
} shmx_buffer;

/* Waits while the inputs and outputs of other jobs fill the pool's shared
   memory (up to 10 s).
   Returns: SHMX_OK with buf filled in, to be passed to shmx_submit_buffer
   or released with shmx_buffer_release; SHMX_ETOO_LARGE over max_payload,
   over the arena's size, or when no space freed up within those 10 s. */
int shmx_buffer_alloc(shmx_pool *pool, size_t len, shmx_buffer *buf);

/* shmx_buffer_alloc that returns SHMX_EFULL at once instead of waiting for
   space. */
int shmx_buffer_try_alloc(shmx_pool *pool, size_t len, shmx_buffer *buf);

/* Queues a job whose input is buf (which then belongs to the job: do not
   touch or release it). Blocks like shmx_submit.
   Returns: SHMX_OK and *job; SHMX_EINVAL for a used or unknown buffer. */
int shmx_submit_buffer(shmx_pool *pool, const char *handler, shmx_buffer *buf, shmx_job *job);

/* shmx_submit_buffer with per-job options (NULL: the pool's), as
   shmx_submit_with. Returns as shmx_submit_buffer; SHMX_EINVAL also for a
   bad opts. */
int shmx_submit_buffer_with(shmx_pool *pool, const char *handler, shmx_buffer *buf,
                            const shmx_submit_opts *opts, shmx_job *job);

/* Frees a buffer that was not submitted; a used or zeroed one is a no-op. */
void shmx_buffer_release(shmx_pool *pool, shmx_buffer *buf);

/* Copies len bytes from src to dst, which must not overlap, as memcpy
   does; from 8 MiB on with several threads (up to 4, no more than the
   CPUs this process may use), as the library copies payloads itself. For
   code that fills a shmx_buffer or shmx_output_alloc memory, or copies a
   result out: one thread's copy of a large payload reaches a fraction of
   the memory bandwidth. In a forked child it is memcpy. */
void shmx_copy(void *dst, const void *src, size_t len);

/* Waits until a job of this handle has finished that no thread is waiting
   for in shmx_wait, and sets *job to it; fetch its result with shmx_wait
   (which then returns at once). Meant for a binding's collector thread:
   a thread that waits for its own job in shmx_wait keeps it, and the
   collector is not woken for it, nor for a job submitted with
   SHMX_SUBMIT_OWN_WAIT or with a group (shmx_wait_group). Each finished
   job is reported once (again only if a shmx_wait on it timed out
   meanwhile).
   Returns: SHMX_OK and *job; SHMX_ETIMEDOUT after timeout_ns (< 0: no
   limit); SHMX_ECLOSED once the handle is being closed; SHMX_EINTR when
   shmx_wake_any woke it and no job was there to report. */
int shmx_wait_any(shmx_pool *pool, int64_t timeout_ns, shmx_job *job);

/* Wakes a thread in shmx_wait_any: the first call of shmx_wait_any that
   finds no job to report returns SHMX_EINTR, whether it was waiting
   already or comes later (a wake is kept until one call takes it, and
   wakes asked for before then are one wake). A job that has ended is
   still reported first. For a binding that hands its collector thread
   work of its own: queue it, then wake the collector, which looks at its
   queue when shmx_wait_any returns SHMX_EINTR; no wake is lost between
   the collector's last look and its wait.
   Returns: SHMX_OK; SHMX_EINVAL for a NULL pool. */
int shmx_wake_any(shmx_pool *pool);

/* Waits until a job of group has finished that no thread is waiting for
   in shmx_wait, and sets *job to it; fetch its result with shmx_wait
   (which then returns at once). A job belongs to a group when it is
   submitted with opts.group set to it (any number but 0, the caller's
   choice); shmx_wait_any never reports such a job. For a caller that
   takes whichever of its own jobs ends first (a binding's
   imap_unordered): no collector thread is woken for them, and the jobs of
   other groups and of wait_any are not its concern. A job cannot be both
   SHMX_SUBMIT_OWN_WAIT and a group's (the submit returns SHMX_EINVAL).
   Each finished job is reported once (again only if a shmx_wait on it
   timed out meanwhile); shmx_forget drops a job from its group.
   Returns: SHMX_OK and *job; SHMX_ETIMEDOUT after timeout_ns (< 0: no
   limit); SHMX_ECLOSED once the handle is being closed; SHMX_EINVAL for
   group 0. */
int shmx_wait_group(shmx_pool *pool, uint32_t group, int64_t timeout_ns, shmx_job *job);

/* Asks for job to end with SHMX_ECANCELLED: a queued job never runs; a
   running one is killed with its worker only if kill is non-zero.
   Returns: SHMX_OK if the cancel took effect, SHMX_EINVAL otherwise. */
int shmx_cancel(shmx_pool *pool, shmx_job job, int kill);

/* Gives up job: it runs on, but its outcome is discarded when it ends
   (at once if it has ended), and shmx_wait and shmx_wait_any no longer
   know it. For a caller that stops waiting for jobs it will never fetch
   (an interrupted wait, a map that raised at its first failure), so that
   their outcomes are not kept until the pool closes.
   Returns: SHMX_OK; SHMX_EINVAL for an unknown job (never submitted, or
   fetched or forgotten already). */
int shmx_forget(shmx_pool *pool, shmx_job job);

/* Returns: a NUL-terminated description of the last error this thread got
   from a pool call, or "" — valid until the thread's next call. */
const char *shmx_last_error(void);

/* ---- Worker side ------------------------------------------------------ */

typedef struct shmx_output shmx_output; /* where a handler puts its result */

/* Copies len bytes as the job's output. Returns: SHMX_OK, SHMX_ETOO_LARGE. */
int shmx_output_set(shmx_output *out, const void *data, size_t len);

/* Zero-copy: returns len writable bytes in shared memory that become the
   job's output when the handler returns 0; NULL if too large. */
void *shmx_output_alloc(shmx_output *out, size_t len);

/* Ends the job with SHMX_EHANDLER and this type and message (copied).
   Returns: SHMX_OK. */
int shmx_output_error(shmx_output *out, const char *type, const char *message);

/* A handler returns 0 for success. Non-zero without shmx_output_error ends
   the job with SHMX_EHANDLER and shmx_strerror of the value returned. */
typedef int (*shmx_handler_fn)(void *ctx, const void *in, size_t in_len, shmx_output *out);
typedef struct shmx_handler {
    const char *name;
    shmx_handler_fn fn;
    void *ctx;
} shmx_handler;

/* Returns: 1 if this process was started as a pool worker, else 0 (still
   1 once shmx_worker_main or shmx_worker_open has taken the handshake out
   of the environment: a program the worker runs gets 0). */
int shmx_is_worker(void);

/* Serves jobs until the pool closes; init (may be NULL) runs once first,
   non-zero aborts start-up. In a worker process it makes a fault in a
   handler (SIGSEGV, SIGBUS, SIGFPE, SIGILL) kill the worker with that
   signal, which its job then reports (SHMX_EWORKER_CRASHED, .signal).
   Run in a process that is not a worker it says so and returns 2.
   Returns: the process exit status to use. */
int shmx_worker_main(const shmx_handler *handlers, size_t n, int (*init)(void *ctx), void *init_ctx);

/* Pull-style worker, for bindings that run their own loop (and for C
   programs that prefer one): shmx_worker_open, any set-up, then
   shmx_worker_ready, then shmx_worker_next / shmx_task_done until next
   returns SHMX_ECLOSED. Use it from one thread. */
typedef struct shmx_worker shmx_worker; /* opaque; lives until the process exits */

typedef struct shmx_task {
    const char *handler; /* NUL-terminated name the job was submitted for */
    const void *in;      /* the input, in shared memory: read only, valid until shmx_task_done */
    size_t in_len;
    shmx_output *out;    /* for shmx_output_set / _alloc / _error */
    uint64_t id;         /* the library's; do not change */
} shmx_task;

/* Attaches this process as the pool worker it was started as, and makes a
   fault in it kill it by its signal (see shmx_worker_main).
   Returns: SHMX_OK and *out; SHMX_EINVAL if not started as a worker. */
int shmx_worker_open(shmx_worker **out);

/* The worker's slot in its pool, from 0 to workers - 1, in *slot: a
   worker that replaces a dead one, or one that reached its task limit,
   takes its slot (to pick a GPU, say, or a seed).
   Returns: SHMX_OK; SHMX_EINVAL for a NULL w or slot. */
int shmx_worker_slot(const shmx_worker *w, uint32_t *slot);

/* Tells the pool that start-up is over (a worker that exits before is a
   start-up failure). From then on descriptor 2 is the pool's standard
   error itself, where it was a pipe the pool forwarded; the call first
   waits (at most 100 ms) until all written to the pipe is forwarded, so
   that the worker's output stays in order. Returns: SHMX_OK. */
int shmx_worker_ready(shmx_worker *w);

/* Makes shmx_worker_next (and shmx_task_reply_next) copy an input of at
   most cap bytes into buf and point task->in there, instead of at shared
   memory; larger inputs stay in shared memory. For a worker whose
   language reads foreign memory through a costly call (Python's ctypes):
   it reads a small input from memory of its own, at a fixed address. buf
   is overwritten by the next task's input and must stay valid while the
   worker runs; a cap of 0 turns the copying off.
   Returns: SHMX_OK; SHMX_EINVAL for a NULL w, or a NULL buf with cap > 0. */
int shmx_worker_input_buffer(shmx_worker *w, void *buf, size_t cap);

/* Waits for a job for at most timeout_ns (< 0: no limit). A worker whose
   wait keeps giving its CPU to the caller that submits to it (both on one
   CPU, yielding to each other or sleeping briefly in turn) moves the
   calling thread to another CPU of its affinity mask, and leaves the mask
   as it was (also in shmx_worker_main).
   Returns: SHMX_OK with *task, to be ended with shmx_task_done;
   SHMX_ETIMEDOUT when none came; SHMX_ECLOSED when the worker should exit
   with status 0 (the pool is closing or max_tasks_per_worker is reached). */
int shmx_worker_next(shmx_worker *w, int64_t timeout_ns, shmx_task *task);

/* Where task's input lies in the pool's shared memory file: *fd, a
   descriptor of the file (the library's: do not close it) and *offset,
   where the input starts in it (task->in may point at a copy in the
   input buffer). For a worker that maps the input again: a private
   copy-on-write mapping (MAP_PRIVATE) gives a handler a copy of it that
   it may change and keep after the task, without copying a page it does
   not change. Such a mapping reads what the file holds: it must not be
   read after the task unless every page is private by then (written, or
   replaced by a copy).
   Returns: SHMX_OK; SHMX_EINVAL for an unknown task or one with an empty
   input. */
int shmx_task_input_file(shmx_worker *w, const shmx_task *task, int *fd, uint64_t *offset);

/* Ends task as a handler returning rc would (0: the output set through
   task->out; non-zero without shmx_output_error: SHMX_EHANDLER and
   shmx_strerror(rc)), publishes the result and clears *task.
   Returns: SHMX_OK; SHMX_EINVAL for an unknown task. */
int shmx_task_done(shmx_worker *w, shmx_task *task, int rc);

/* Ends task successfully with the len bytes at data as its output (copied
   into the pool before it returns), replacing anything set through
   task->out: shmx_output_set and shmx_task_done(w, task, 0) in one call.
   Returns: SHMX_OK; SHMX_EINVAL for an unknown task. */
int shmx_task_reply(shmx_worker *w, shmx_task *task, const void *data, size_t len);

/* shmx_task_reply, then shmx_worker_next(w, timeout_ns, next) in one call
   (next may be task): a worker that answers from a language with costly
   foreign calls pays one per job, and is back waiting for the next job
   before its caller can submit it, so that submit finds it spinning
   instead of waking another worker.
   Returns: SHMX_EINVAL for an unknown task or a NULL next (nothing
   replied or waited for); otherwise as shmx_worker_next. */
int shmx_task_reply_next(shmx_worker *w, shmx_task *task, const void *data, size_t len,
                         int64_t timeout_ns, shmx_task *next);

#ifdef __cplusplus
}
#endif

#endif /* SHMEXEC_H */
