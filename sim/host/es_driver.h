/* es_driver: the host driver, as a host program would use it. It owns a
 * submission queue (SQ) and a completion queue (CQ) in host memory, which
 * the device reads and writes across the PCIe link, and a scheduler that
 * keeps as many sequences in flight as the chip's KV SRAM holds.
 *
 * The API is asynchronous: es_drv_submit() writes one SQ entry and rings the
 * doorbell; es_drv_poll() takes completions without blocking; es_drv_wait()
 * blocks, in simulated time, until the device signals. es_drv_run() is the
 * scheduler loop built on them. The device side calls es_drv_sq_pop() and
 * es_drv_cq_push(). Time is whatever the device callbacks say it is. */
#ifndef ES_DRIVER_H
#define ES_DRIVER_H
#include <stdint.h>
#include "es_err.h"
#ifdef __cplusplus
extern "C" {
#endif

enum { ES_SQE_SEQ = 1, ES_SQE_PREFIX = 2 };          /* opcodes */
enum { ES_CQE_FIRST = 1, ES_CQE_LAST = 2 };          /* completion flags */
enum { ES_POLICY_FCFS = 0, ES_POLICY_SPF = 1 };      /* first come first served, shortest prompt first */

typedef struct es_sqe {      /* 64 bytes, as the device reads it */
    uint32_t opcode;         /* ES_SQE_SEQ or ES_SQE_PREFIX */
    uint32_t seq;            /* sequence id: a slot the host reuses once a request is done */
    uint32_t prompt_tokens;  /* tokens to prefill (after the shared prefix) */
    uint32_t max_new;        /* tokens to generate; 0 for a prefix */
    uint32_t start_pos;      /* first position: the shared prefix length, or 0 */
    uint32_t kv_positions;   /* KV positions the sequence holds while in flight */
    uint32_t tag;            /* the host's request id (low 32 bits), echoed in logs */
    uint32_t adapter;        /* the LoRA adapter it uses: its id + 1 (0: none) */
    uint8_t reserved[32];
} es_sqe;

typedef struct es_cqe {      /* 16 bytes, as the device writes it */
    uint32_t seq;            /* sequence id (slot) */
    uint32_t token;          /* token id (timing mode: 0) */
    uint16_t idx;            /* output index of the token */
    uint16_t flags;          /* ES_CQE_FIRST, ES_CQE_LAST */
    uint32_t status;         /* 0 */
} es_cqe;

#ifdef __cplusplus
static_assert(sizeof(es_sqe) == 64, "SQ entries are 64 bytes");
static_assert(sizeof(es_cqe) == 16, "CQ entries are 16 bytes");
#else
_Static_assert(sizeof(es_sqe) == 64, "SQ entries are 64 bytes");
_Static_assert(sizeof(es_cqe) == 16, "CQ entries are 16 bytes");
#endif

typedef struct es_dev_ops {
    void (*doorbell)(void *dev);   /* the SQ tail moved */
    void (*wait)(void *dev);       /* block until the device signals a completion */
    double (*now_ns)(void *dev);   /* current time */
} es_dev_ops;

typedef struct es_drv_cfg {
    int64_t kv_positions;    /* KV capacity, positions per layer */
    int policy;              /* ES_POLICY_FCFS or ES_POLICY_SPF */
    int64_t prefix_tokens;   /* shared prefix computed once per batch; 0: none */
    int sq_depth, cq_depth;  /* ring sizes (entries) */
    int window;              /* requests read ahead from the source; SPF picks the
                                shortest among them (FCFS: 1 is enough) */
    int64_t per_request;     /* > 0: every request holds this many units of kv_positions, whatever its
                                length (a state-space model's fixed state); 0: prompt + generated */
    int32_t prefix_adapter;  /* the LoRA adapter the shared prefix is computed with: its id + 1 (0: none) */
} es_drv_cfg;

typedef struct es_req_result {
    int64_t id;              /* as the source gave it */
    int64_t prompt_tokens;   /* tokens after the shared prefix */
    int64_t max_new;
    double submit_ns;        /* written to the SQ */
    double first_ns;         /* first completion read by the host */
    double done_ns;          /* last completion read by the host */
    int64_t tokens;          /* completions received */
} es_req_result;

/* Where requests come from and where finished ones go. The driver pulls
 * requests only as it can admit them, so a batch of any size takes memory
 * for its window and its sequences in flight only. */
typedef struct es_drv_source {
    /* 1 and the next request, 0 when there are no more, -1 on error (e filled); *adapter: the LoRA adapter it uses
       (-1: none; -1 unless set) */
    int (*next)(void *arg, int64_t *id, int64_t *prompt_tokens, int64_t *max_new, int32_t *adapter, es_err *e);
    /* a request's last completion was read; slot is the SQ sequence id it had */
    int (*done)(void *arg, const es_req_result *r, uint32_t slot, es_err *e);
    void *arg;
} es_drv_source;

typedef struct es_drv es_drv;

es_drv *es_drv_open(const es_drv_cfg *cfg, const es_dev_ops *ops, void *dev, es_err *e);
void es_drv_close(es_drv *d);
/* Asynchronous primitives. submit: 0, or -1 when the SQ is full. */
int es_drv_submit(es_drv *d, const es_sqe *s);
int es_drv_poll(es_drv *d, es_cqe *out, int max);
void es_drv_wait(es_drv *d);
/* The scheduler loop: submits the prefix (if any), then requests in policy
 * order as KV capacity frees, until the source is empty and every request
 * has its last token. Sequence ids (slots) are reused once a request is done;
 * the prefix, if any, holds slot 0. A request that could never fit the KV
 * capacity is an error. */
int es_drv_run(es_drv *d, const es_drv_source *src, es_err *e);
/* Device side. pop: 1 and the entry, or 0 when the SQ is empty. push: 0, or
 * -1 when the CQ is full (the device must wait and retry). */
int es_drv_sq_pop(es_drv *d, es_sqe *out);
int es_drv_cq_push(es_drv *d, const es_cqe *c);

#ifdef __cplusplus
}
#endif
#endif
