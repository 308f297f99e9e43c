/* test_driver: the host driver against a scripted device (no SystemC).
 * The fake device serves one SQ entry per wait: it completes every token of
 * the oldest fetched sequence, so the scheduler's bookkeeping can be checked.
 *   1.x  every request is submitted once and finishes once; KV never exceeded
 *   2.x  SQ full: submission waits and nothing is lost (SQ of 2 entries)
 *   3.x  SPF submits the shortest prompt in its window first; FCFS keeps order
 *   4.x  the shared prefix goes first, on slot 0, and is never reused
 *   5.x  a request that cannot fit the KV is an error naming it */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "es_driver.h"

#include "test_check.h"

typedef struct dev {
    es_drv *d;
    double t;
    es_sqe fly[4096];          /* fetched, not yet finished */
    int n_fly;
    int64_t kv, kv_max, kv_cap;
    int doorbells, prefix_seen, prefix_first;
    int64_t fetched_order[4096];
    int n_fetched;
} dev;

static void op_doorbell(void *p) { ((dev *)p)->doorbells++; }
static double op_now(void *p) { return ((dev *)p)->t; }

/* fetch everything on the SQ, then finish the oldest sequence */
static void op_wait(void *p)
{
    dev *v = p;
    es_sqe s;
    while (es_drv_sq_pop(v->d, &s)) {
        if (s.opcode == ES_SQE_PREFIX) {
            v->prefix_seen++;
            v->prefix_first = v->n_fetched == 0 && s.seq == 0;
            v->kv += s.kv_positions;
            continue;
        }
        v->fly[v->n_fly++] = s;
        v->fetched_order[v->n_fetched++] = s.tag;
        v->kv += s.kv_positions;
        if (v->kv > v->kv_max) v->kv_max = v->kv;
    }
    if (v->n_fly == 0) return;
    es_sqe q = v->fly[0];
    memmove(v->fly, v->fly + 1, (size_t)(--v->n_fly) * sizeof *v->fly);
    for (uint32_t i = 0; i < q.max_new; i++) {
        es_cqe c = {q.seq, 0, (uint16_t)i, (uint16_t)((i == 0 ? ES_CQE_FIRST : 0) | (i + 1 == q.max_new ? ES_CQE_LAST : 0)), 0};
        v->t += 1;
        while (es_drv_cq_push(v->d, &c)) { /* a small CQ: the host must drain it first */
            fprintf(stderr, "CQ full in the fake device\n");
            exit(1);
        }
    }
    v->kv -= q.kv_positions;
}

static const es_dev_ops ops = {op_doorbell, op_wait, op_now};

typedef struct src {
    int64_t n, next;
    const int64_t *prompt;     /* per request */
    int done_count[4096];
    int64_t slot_of[4096];
    int bad_slot;
} src;

static int s_next(void *p, int64_t *id, int64_t *prompt, int64_t *max_new, int32_t *adapter, es_err *e)
{
    (void)e;
    (void)adapter; /* none */
    src *s = p;
    if (s->next >= s->n) return 0;
    *id = s->next;
    *prompt = s->prompt[s->next];
    *max_new = 3;
    s->next++;
    return 1;
}

static int s_done(void *p, const es_req_result *r, uint32_t slot, es_err *e)
{
    (void)e;
    src *s = p;
    s->done_count[r->id]++;
    s->slot_of[r->id] = slot;
    if (r->tokens != 3 || r->first_ns > r->done_ns || r->submit_ns > r->first_ns) s->bad_slot++;
    return 0;
}

static int run(int policy, int sq, int window, int64_t prefix, int64_t cap, int64_t n, const int64_t *prompt,
               dev *v, src *s, es_err *e)
{
    memset(v, 0, sizeof *v);
    memset(s, 0, sizeof *s);
    v->kv_cap = cap;
    s->n = n;
    s->prompt = prompt;
    es_drv_cfg cfg = {cap, policy, prefix, sq, 64, window, 0, 0};
    v->d = es_drv_open(&cfg, &ops, v, e);
    if (!v->d) return -1;
    es_drv_source so = {s_next, s_done, s};
    int rc = es_drv_run(v->d, &so, e);
    es_drv_close(v->d);
    return rc;
}

int main(void)
{
    es_err e;
    dev v;
    src s;
    int64_t prompt[300];
    for (int i = 0; i < 300; i++) prompt[i] = 1 + (i * 37) % 50; /* 1..50 tokens */
    /* 1.x */
    CHECK(run(ES_POLICY_FCFS, 256, 1024, 0, 200, 300, prompt, &v, &s, &e) == 0, "fcfs: %s", e.msg);
    int once = 1;
    for (int i = 0; i < 300; i++) once &= s.done_count[i] == 1;
    CHECK(once && s.bad_slot == 0, "1.1 every request finished exactly once with 3 tokens");
    CHECK(v.kv_max <= 200, "1.2 KV held %lld > 200", (long long)v.kv_max);
    int in_order = 1;
    for (int i = 0; i < v.n_fetched; i++) in_order &= v.fetched_order[i] == i;
    CHECK(in_order && v.n_fetched == 300, "3.1 FCFS fetched in order");
    /* 2.x: an SQ of 2 entries holds one request at a time */
    CHECK(run(ES_POLICY_FCFS, 2, 1024, 0, 1000, 300, prompt, &v, &s, &e) == 0, "small SQ: %s", e.msg);
    once = 1;
    for (int i = 0; i < 300; i++) once &= s.done_count[i] == 1;
    CHECK(once && v.n_fetched == 300, "2.1 nothing lost with a full SQ");
    /* 3.x SPF: under KV pressure the shortest prompts of the window go first */
    CHECK(run(ES_POLICY_SPF, 256, 1024, 0, 60, 300, prompt, &v, &s, &e) == 0, "spf: %s", e.msg);
    int64_t first_ten = 0;
    for (int i = 0; i < 10; i++) first_ten += prompt[v.fetched_order[i]];
    CHECK(first_ten < 10 * 10, "3.2 SPF first ten prompts sum to %lld tokens", (long long)first_ten);
    CHECK(v.kv_max <= 60, "3.3 KV held %lld > 60", (long long)v.kv_max);
    /* 4.x prefix */
    CHECK(run(ES_POLICY_FCFS, 256, 1024, 20, 200, 50, prompt, &v, &s, &e) == 0, "prefix: %s", e.msg);
    CHECK(v.prefix_seen == 1 && v.prefix_first, "4.1 prefix fetched once, first, on slot 0");
    int slot0 = 0;
    for (int i = 0; i < 50; i++) slot0 |= s.slot_of[i] == 0;
    CHECK(!slot0, "4.2 no request took the prefix's slot");
    /* 5.x */
    int64_t big[1] = {500};
    CHECK(run(ES_POLICY_FCFS, 256, 1024, 0, 200, 1, big, &v, &s, &e) != 0 && strstr(e.msg, "request 0 needs 503"),
          "5.1 oversize: %s", e.msg);
    printf("%d passed, %d failed\n", passes, fails);
    return fails ? 1 : 0;
}
