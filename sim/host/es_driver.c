/* es_driver: SQ/CQ rings, the scheduler and request bookkeeping (see
 * es_driver.h). Single-threaded: the host program and the device model run
 * as cooperative SystemC processes, so no locking is needed. */
#include "es_driver.h"
#include <stdlib.h>
#include <string.h>

struct es_drv {
    es_drv_cfg cfg;
    const es_dev_ops *ops;
    void *dev;
    es_sqe *sq;              /* (sq_depth) host writes at tail, device reads at head */
    int sq_head, sq_tail;
    es_cqe *cq;              /* (cq_depth) device writes at tail, host reads at head */
    int cq_head, cq_tail;
    es_req_result *res;      /* (n) requests in add order */
    int64_t n, cap;
    int64_t *heap;           /* (n_pend) SPF: min-heap of request indices; FCFS: FIFO */
    int64_t n_pend, pend_head;
    int64_t kv_used, in_flight, max_in_flight, max_kv_used, done;
};

es_drv *es_drv_open(const es_drv_cfg *cfg, const es_dev_ops *ops, void *dev, es_err *e)
{
    if (cfg->kv_positions < 1 || cfg->sq_depth < 2 || cfg->cq_depth < 2 || cfg->prefix_tokens < 0 ||
        cfg->prefix_tokens >= cfg->kv_positions || (cfg->policy != ES_POLICY_FCFS && cfg->policy != ES_POLICY_SPF)) {
        es_fail(e, "driver: bad configuration (KV %lld positions, prefix %lld, queues %d/%d)",
                (long long)cfg->kv_positions, (long long)cfg->prefix_tokens, cfg->sq_depth, cfg->cq_depth);
        return NULL;
    }
    es_drv *d = calloc(1, sizeof *d);
    if (!d) { es_fail(e, "driver: out of memory"); return NULL; }
    d->cfg = *cfg;
    d->ops = ops;
    d->dev = dev;
    d->sq = calloc((size_t)cfg->sq_depth, sizeof *d->sq);
    d->cq = calloc((size_t)cfg->cq_depth, sizeof *d->cq);
    if (!d->sq || !d->cq) { es_drv_close(d); es_fail(e, "driver: out of memory"); return NULL; }
    return d;
}

void es_drv_close(es_drv *d)
{
    if (!d) return;
    free(d->sq);
    free(d->cq);
    free(d->res);
    free(d->heap);
    free(d);
}

static int64_t kv_need(const es_req_result *r) { return r->prompt_tokens + r->max_new; }

static int before(const es_drv *d, int64_t a, int64_t b)
{
    const es_req_result *x = &d->res[a], *y = &d->res[b];
    return x->prompt_tokens != y->prompt_tokens ? x->prompt_tokens < y->prompt_tokens : a < b;
}

static void heap_push(es_drv *d, int64_t i)
{
    int64_t k = d->n_pend++;
    d->heap[k] = i;
    while (k > 0 && before(d, d->heap[k], d->heap[(k - 1) / 2])) {
        int64_t p = (k - 1) / 2, t = d->heap[p];
        d->heap[p] = d->heap[k];
        d->heap[k] = t;
        k = p;
    }
}

static int64_t pend_peek(const es_drv *d)
{
    if (d->cfg.policy == ES_POLICY_FCFS) return d->pend_head < d->n_pend ? d->heap[d->pend_head] : -1;
    return d->n_pend > 0 ? d->heap[0] : -1;
}

static void pend_pop(es_drv *d)
{
    if (d->cfg.policy == ES_POLICY_FCFS) { d->pend_head++; return; }
    d->heap[0] = d->heap[--d->n_pend];
    int64_t k = 0;
    for (;;) {
        int64_t l = 2 * k + 1, r = l + 1, m = k;
        if (l < d->n_pend && before(d, d->heap[l], d->heap[m])) m = l;
        if (r < d->n_pend && before(d, d->heap[r], d->heap[m])) m = r;
        if (m == k) break;
        int64_t t = d->heap[m];
        d->heap[m] = d->heap[k];
        d->heap[k] = t;
        k = m;
    }
}

int es_drv_add(es_drv *d, int64_t id, int64_t prompt_tokens, int64_t max_new, es_err *e)
{
    if (prompt_tokens < 1 || max_new < 1 || prompt_tokens > UINT32_MAX || max_new > 65535)
        return es_fail(e, "request %lld: %lld prompt tokens, %lld to generate: out of range", (long long)id,
                       (long long)prompt_tokens, (long long)max_new);
    if (d->cfg.prefix_tokens + prompt_tokens + max_new > d->cfg.kv_positions)
        return es_fail(e, "request %lld needs %lld KV positions with the prefix; the chip holds %lld",
                       (long long)id, (long long)(d->cfg.prefix_tokens + prompt_tokens + max_new),
                       (long long)d->cfg.kv_positions);
    if (d->n == d->cap) {
        int64_t cap = d->cap ? 2 * d->cap : 1024;
        es_req_result *r = realloc(d->res, (size_t)cap * sizeof *r);
        int64_t *h = r ? realloc(d->heap, (size_t)cap * sizeof *h) : NULL;
        if (r) d->res = r;
        if (!h) return es_fail(e, "driver: out of memory");
        d->heap = h;
        d->cap = cap;
    }
    es_req_result *r = &d->res[d->n];
    memset(r, 0, sizeof *r);
    r->id = id;
    r->prompt_tokens = prompt_tokens;
    r->max_new = max_new;
    r->submit_ns = r->first_ns = r->done_ns = -1;
    if (d->cfg.policy == ES_POLICY_SPF) heap_push(d, d->n);
    else d->heap[d->n_pend++] = d->n;
    d->n++;
    return 0;
}

int es_drv_submit(es_drv *d, const es_sqe *s)
{
    int next = (d->sq_tail + 1) % d->cfg.sq_depth;
    if (next == d->sq_head) return -1;
    d->sq[d->sq_tail] = *s;
    d->sq_tail = next;
    d->ops->doorbell(d->dev);
    return 0;
}

int es_drv_poll(es_drv *d, es_cqe *out, int max)
{
    int k = 0;
    while (k < max && d->cq_head != d->cq_tail) {
        out[k++] = d->cq[d->cq_head];
        d->cq_head = (d->cq_head + 1) % d->cfg.cq_depth;
    }
    return k;
}

void es_drv_wait(es_drv *d)
{
    if (d->cq_head == d->cq_tail) d->ops->wait(d->dev);
}

int es_drv_sq_pop(es_drv *d, es_sqe *out)
{
    if (d->sq_head == d->sq_tail) return 0;
    *out = d->sq[d->sq_head];
    d->sq_head = (d->sq_head + 1) % d->cfg.sq_depth;
    return 1;
}

int es_drv_cq_push(es_drv *d, const es_cqe *c)
{
    int next = (d->cq_tail + 1) % d->cfg.cq_depth;
    if (next == d->cq_head) return -1;
    d->cq[d->cq_tail] = *c;
    d->cq_tail = next;
    return 0;
}

int es_drv_run(es_drv *d, es_err *e)
{
    if (d->cfg.prefix_tokens > 0) {
        es_sqe s;
        memset(&s, 0, sizeof s);
        s.opcode = ES_SQE_PREFIX;
        s.seq = (uint32_t)d->n;   /* the id after the last request */
        s.prompt_tokens = (uint32_t)d->cfg.prefix_tokens;
        s.kv_positions = (uint32_t)d->cfg.prefix_tokens;
        if (es_drv_submit(d, &s)) return es_fail(e, "driver: SQ full at the start");
        d->kv_used = d->cfg.prefix_tokens;
    }
    es_cqe buf[64];
    while (d->done < d->n) {
        int64_t i;
        while ((i = pend_peek(d)) >= 0 && d->kv_used + kv_need(&d->res[i]) <= d->cfg.kv_positions) {
            es_req_result *r = &d->res[i];
            es_sqe s;
            memset(&s, 0, sizeof s);
            s.opcode = ES_SQE_SEQ;
            s.seq = (uint32_t)i;
            s.prompt_tokens = (uint32_t)r->prompt_tokens;
            s.max_new = (uint32_t)r->max_new;
            s.start_pos = (uint32_t)d->cfg.prefix_tokens;
            s.kv_positions = (uint32_t)kv_need(r);
            if (es_drv_submit(d, &s)) break; /* SQ full: wait for the device to drain it */
            pend_pop(d);
            r->submit_ns = d->ops->now_ns(d->dev);
            d->kv_used += kv_need(r);
            if (d->kv_used > d->max_kv_used) d->max_kv_used = d->kv_used;
            if (++d->in_flight > d->max_in_flight) d->max_in_flight = d->in_flight;
        }
        if (d->in_flight == 0)
            return es_fail(e, "driver: nothing in flight and nothing admissible (%lld of %lld done)",
                           (long long)d->done, (long long)d->n);
        es_drv_wait(d);
        int k;
        while ((k = es_drv_poll(d, buf, 64)) > 0)
            for (int j = 0; j < k; j++) {
                if (buf[j].seq >= d->n) return es_fail(e, "driver: completion for unknown sequence %u", buf[j].seq);
                es_req_result *r = &d->res[buf[j].seq];
                double t = d->ops->now_ns(d->dev);
                if (r->tokens++ == 0) r->first_ns = t;
                if (buf[j].flags & ES_CQE_LAST) {
                    r->done_ns = t;
                    d->done++;
                    d->in_flight--;
                    d->kv_used -= kv_need(r);
                }
            }
    }
    d->kv_used -= d->cfg.prefix_tokens;
    return 0;
}

const es_req_result *es_drv_results(const es_drv *d, int64_t *n)
{
    *n = d->n;
    return d->res;
}

int64_t es_drv_max_in_flight(const es_drv *d) { return d->max_in_flight; }
int64_t es_drv_max_kv_used(const es_drv *d) { return d->max_kv_used; }
