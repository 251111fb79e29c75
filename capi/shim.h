/* Internal declarations shared by shim.c and the Go side (not installed). */
#ifndef SHMX_SHIM_H
#define SHMX_SHIM_H
#include <stdint.h>
#include "shmexec.h"

struct shmx_pool {
    uint64_t id;                     /* in the Go side's table while open */
    struct shmx_pool *next_retired;  /* once closed: kept, see shim.c */
};
struct shmx_output { uint64_t id; };
struct shmx_worker {
    uint64_t id;
    void *in_buf; /* shmx_worker_input_buffer: small inputs are copied here */
    size_t in_cap;
};

/* shmx_copy's size from which it calls the Go side (memx.ParallelFrom,
   which capi checks it equals); below it, memcpy. */
#define SHMXINT_PARALLEL_COPY_FROM (8 << 20)

int shmxint_call_handler(shmx_handler_fn fn, void *ctx, const void *in, size_t len, shmx_output *out);
int shmxint_call_init(int (*init)(void *), void *ctx);
void shmxint_set_last_error(const char *msg);

/* A job's output in C memory, freed by shmx_result_release. Outputs of
   SHMXINT_HUGE_OUTPUT bytes or more get a mapping of their own whose
   pages the kernel may fault in as transparent huge pages. */
#define SHMXINT_HUGE_OUTPUT ((size_t)4 << 20)
void *shmxint_output_alloc(size_t n);
void shmxint_output_free(const void *p, size_t n);
/* Frees a successful result's output: in place in the segment
   (shmx_results_in_place, which leaves only outputs of at least
   SHMXINT_HUGE_OUTPUT bytes there) or in C memory. */
void shmxint_result_free(const void *p, size_t n);
#endif
