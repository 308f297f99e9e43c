/* es_driver: SQ/CQ rings, the scheduler and request bookkeeping (see
 * es_driver.h). Single-threaded: the host program and the device model run
 * as cooperative SystemC processes, so no locking is needed. */
#include "es_driver.h"
#include <stdlib.h>
#include <string.h>

typedef struct pend {        /* a request read from the source, not yet submitted */
    int64_t id, prompt, max_new, order;
    int32_t adapter;         /* -1: none */
} pend;

struct es_drv {
    es_drv_cfg cfg;
    const es_dev_ops *ops;
    void *dev;
    es_sqe *sq;              /* (sq_depth) host writes at tail, device reads at head */
    int sq_head, sq_tail;
    es_cqe *cq;              /* (cq_depth) device writes at tail, host reads at head */
    int cq_head, cq_tail;
    pend *win;               /* (window) read-ahead requests */
    int n_win;
    int64_t n_read;          /* requests read from the source */
    es_req_result *fly;      /* (n_slots) by slot: requests in flight */
    uint32_t *free_slots;    /* (n_free) slots to reuse */
    int64_t n_slots, n_free, cap_slots;
    int64_t kv_used, in_flight;
};

/* The KV units a request holds while in flight. */
static int64_t holds(const es_drv *d, const pend *p)
{
    return d->cfg.per_request > 0 ? d->cfg.per_request : p->prompt + p->max_new;
}

es_drv *es_drv_open(const es_drv_cfg *cfg, const es_dev_ops *ops, void *dev, es_err *e)
{
    if (cfg->kv_positions < 1 || cfg->sq_depth < 2 || cfg->cq_depth < 2 || cfg->prefix_tokens < 0 ||
        cfg->prefix_tokens >= cfg->kv_positions || cfg->window < 1 || cfg->per_request < 0 ||
        (cfg->per_request > 0 && cfg->prefix_tokens > 0) || cfg->prefix_adapter < 0 ||
        (cfg->policy != ES_POLICY_FCFS && cfg->policy != ES_POLICY_SPF)) {
        es_fail(e, "driver: bad configuration (KV %lld positions, prefix %lld, queues %d/%d, window %d)",
                (long long)cfg->kv_positions, (long long)cfg->prefix_tokens, cfg->sq_depth, cfg->cq_depth,
                cfg->window);
        return NULL;
    }
    es_drv *d = calloc(1, sizeof *d);
    if (!d) { es_fail(e, "driver: out of memory"); return NULL; }
    d->cfg = *cfg;
    d->ops = ops;
    d->dev = dev;
    d->sq = calloc((size_t)cfg->sq_depth, sizeof *d->sq);
    d->cq = calloc((size_t)cfg->cq_depth, sizeof *d->cq);
    d->win = calloc((size_t)cfg->window, sizeof *d->win);
    if (!d->sq || !d->cq || !d->win) { es_drv_close(d); es_fail(e, "driver: out of memory"); return NULL; }
    return d;
}

void es_drv_close(es_drv *d)
{
    if (!d) return;
    free(d->sq);
    free(d->cq);
    free(d->win);
    free(d->fly);
    free(d->free_slots);
    free(d);
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

static int64_t take_slot(es_drv *d)
{
    if (d->n_free > 0) return d->free_slots[--d->n_free];
    if (d->n_slots == d->cap_slots) {
        int64_t cap = d->cap_slots ? 2 * d->cap_slots : 256;
        es_req_result *f = realloc(d->fly, (size_t)cap * sizeof *f);
        uint32_t *fs = f ? realloc(d->free_slots, (size_t)cap * sizeof *fs) : NULL;
        if (f) d->fly = f;
        if (!fs) return -1;
        d->free_slots = fs;
        d->cap_slots = cap;
    }
    return d->n_slots++;
}

/* The window entry to submit next: FCFS the oldest, SPF the shortest prompt. */
static int pick(const es_drv *d)
{
    int best = -1;
    for (int i = 0; i < d->n_win; i++) {
        const pend *p = &d->win[i];
        if (best < 0) { best = i; continue; }
        const pend *b = &d->win[best];
        int better = d->cfg.policy == ES_POLICY_SPF
                         ? (p->prompt != b->prompt ? p->prompt < b->prompt : p->order < b->order)
                         : p->order < b->order;
        if (better) best = i;
    }
    return best;
}

/* Read requests from the source until the window is full or it runs dry. */
static int refill(es_drv *d, const es_drv_source *src, int *open, es_err *e)
{
    while (*open && d->n_win < d->cfg.window) {
        pend p;
        p.adapter = -1;
        int rc = src->next(src->arg, &p.id, &p.prompt, &p.max_new, &p.adapter, e);
        if (rc < 0) return -1;
        if (rc == 0) { *open = 0; break; }
        if (p.adapter < -1)
            return es_fail(e, "request %lld: adapter %d (expected an adapter id, or -1 for none)", (long long)p.id,
                           (int)p.adapter);
        if (p.prompt < 1 || p.max_new < 1 || p.prompt > UINT32_MAX || p.max_new > 65535)
            return es_fail(e, "request %lld: %lld prompt tokens, %lld to generate: out of range",
                           (long long)p.id, (long long)p.prompt, (long long)p.max_new);
        if (d->cfg.per_request == 0 && d->cfg.prefix_tokens + p.prompt + p.max_new > d->cfg.kv_positions)
            return es_fail(e, "request %lld needs %lld KV positions with the prefix; the chip holds %lld",
                           (long long)p.id, (long long)(d->cfg.prefix_tokens + p.prompt + p.max_new),
                           (long long)d->cfg.kv_positions);
        p.order = d->n_read++;
        d->win[d->n_win++] = p;
    }
    return 0;
}

int es_drv_run(es_drv *d, const es_drv_source *src, es_err *e)
{
    int open = 1;
    if (d->cfg.prefix_tokens > 0) {
        int64_t slot = take_slot(d);
        es_sqe s;
        memset(&s, 0, sizeof s);
        s.opcode = ES_SQE_PREFIX;
        s.seq = (uint32_t)slot;
        s.prompt_tokens = (uint32_t)d->cfg.prefix_tokens;
        s.kv_positions = (uint32_t)d->cfg.prefix_tokens;
        s.adapter = (uint32_t)d->cfg.prefix_adapter;
        if (slot != 0 || es_drv_submit(d, &s)) return es_fail(e, "driver: cannot submit the shared prefix");
        d->kv_used = d->cfg.prefix_tokens;
    }
    es_cqe buf[64];
    if (refill(d, src, &open, e)) return -1;
    while (d->n_win > 0 || d->in_flight > 0) {
        /* admit while the KV holds the next request and the SQ has room */
        int i;
        while ((i = pick(d)) >= 0 && d->kv_used + holds(d, &d->win[i]) <= d->cfg.kv_positions) {
            pend p = d->win[i];
            int64_t slot = take_slot(d);
            if (slot < 0) return es_fail(e, "driver: out of memory");
            es_sqe s;
            memset(&s, 0, sizeof s);
            s.opcode = ES_SQE_SEQ;
            s.seq = (uint32_t)slot;
            s.prompt_tokens = (uint32_t)p.prompt;
            s.max_new = (uint32_t)p.max_new;
            s.start_pos = (uint32_t)d->cfg.prefix_tokens;
            s.kv_positions = (uint32_t)holds(d, &p);
            s.tag = (uint32_t)p.id;
            s.adapter = (uint32_t)(p.adapter + 1);
            if (es_drv_submit(d, &s)) { /* SQ full: give the slot back, wait for the device */
                d->free_slots[d->n_free++] = (uint32_t)slot;
                break;
            }
            d->win[i] = d->win[--d->n_win];
            es_req_result *r = &d->fly[slot];
            memset(r, 0, sizeof *r);
            r->id = p.id;
            r->prompt_tokens = p.prompt;
            r->max_new = p.max_new;
            r->submit_ns = d->ops->now_ns(d->dev);
            r->first_ns = r->done_ns = -1;
            d->kv_used += holds(d, &p);
            d->in_flight++;
            if (refill(d, src, &open, e)) return -1;
        }
        if (d->in_flight == 0) /* cannot happen: every request fits an empty chip */
            return es_fail(e, "driver: nothing in flight and nothing admissible");
        es_drv_wait(d);
        int k;
        while ((k = es_drv_poll(d, buf, 64)) > 0)
            for (int j = 0; j < k; j++) {
                uint32_t slot = buf[j].seq;
                if (slot >= d->n_slots) return es_fail(e, "driver: completion for unknown sequence %u", slot);
                es_req_result *r = &d->fly[slot];
                double t = d->ops->now_ns(d->dev);
                if (r->tokens++ == 0) r->first_ns = t;
                if (buf[j].flags & ES_CQE_LAST) {
                    r->done_ns = t;
                    d->in_flight--;
                    d->kv_used -= d->cfg.per_request > 0 ? d->cfg.per_request : r->prompt_tokens + r->max_new;
                    if (src->done && src->done(src->arg, r, slot, e)) return -1;
                    d->free_slots[d->n_free++] = slot;
                }
            }
        if (refill(d, src, &open, e)) return -1;
    }
    d->kv_used -= d->cfg.prefix_tokens;
    return 0;
}

