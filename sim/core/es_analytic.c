/* es_analytic: closed-form occupancy per op and the uncontended composition
 * of a token's trip around the chip (see es_analytic.h). */
#include "es_analytic.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int64_t vec(const es_chip *c, int64_t elems, int passes)
{
    return passes * es_ceil_div(elems, c->tile.vec_width) + c->tile.vec_latency;
}

/* One pass of k tokens over a tensor on lanes shared by them: its lanes' cycles or its weights', whichever is longer
 * (k x cells below 2^62: cells below 2^61 by the table's limits, and k at most 2^16, split so it cannot overflow). */
static int64_t shared_pass(int64_t k, int64_t cells, int64_t lanes, int64_t store_cycles)
{
    int64_t q = cells / lanes, r = cells % lanes, lane_cycles;
    if (__builtin_mul_overflow(k, q, &lane_cycles)) return INT64_MAX / 4;
    lane_cycles += es_ceil_div(k * r, lanes); /* k x r < 2^16 x 2^40 */
    return lane_cycles > store_cycles ? lane_cycles : store_cycles;
}

/* es_an_matvec with tpr tokens a pass (a tile's tokens_per_read, or the head's). */
static int64_t matvec_tpr(const es_chip *c, const es_rom_geom *rom, int64_t lanes, int64_t cells, int64_t bits,
                          int64_t n, int64_t tpr)
{
    int64_t lane_cycles = es_ceil_div(cells, lanes);
    int64_t rom_cycles = es_ceil_div(bits, rom->banks * rom->row_bits);
    if (c->tile.lanes_shared) { /* the lanes serve a pass's k tokens together: k x cells / lanes cycles */
        int64_t full = n / tpr, rest = n % tpr;
        int64_t t = full * shared_pass(tpr, cells, lanes, rom_cycles);
        return t + (rest ? shared_pass(rest, cells, lanes, rom_cycles) : 0) + rom->latency + c->tile.lane_depth;
    }
    int64_t per_pass = lane_cycles > rom_cycles ? lane_cycles : rom_cycles;
    return es_ceil_div(n, tpr) * per_pass + rom->latency + c->tile.lane_depth;
}

int64_t es_an_matvec(const es_chip *c, const es_rom_geom *rom, int64_t lanes, int64_t cells,
                     int64_t bits, int64_t n)
{
    return matvec_tpr(c, rom, lanes, cells, bits, n, c->tile.tokens_per_read);
}

/* The tokens one pass over tensor x's weights serves: a tile's tokens_per_read, or the head's for the LM head. */
static int64_t tensor_tpr(const es_chip *c, const es_map_tensor *x)
{
    return x->tile >= 0 ? c->tile.tokens_per_read : c->head.tokens_per_read;
}

int64_t es_an_store_occ(const es_map *pm, const es_op *op, int64_t n)
{
    const es_chip *c = pm->chip;
    if (c->store.kind == ES_STORE_ROM || !c->store.chip_scope) return 0;
    if (op->kind != ES_OP_MATVEC && op->kind != ES_OP_EMBED) return 0;
    const es_map_tensor *x = &pm->tensors[op->tensor];
    int64_t bw = x->geom.banks * x->geom.row_bits;
    if (op->kind == ES_OP_EMBED) return es_ceil_div(n * (x->bits / pm->model->tensors[op->tensor].rows), bw);
    return es_ceil_div(n, tensor_tpr(c, x)) * es_ceil_div(x->bits, bw);
}

/* The positions a token with ctx positions of context attends to: all of them, or a sliding window's last w. */
static int64_t seen(int64_t ctx, int64_t w) { return w > 0 && ctx > w ? w : ctx; }

/* The positions n tokens at p + 1 .. p + n attend to, summed (a window w, or 0; exact in a double below 2^53). */
static double seen_sum(int64_t n, int64_t p, int64_t w)
{
    double a = (double)(p + 1), b = (double)(p + n), dw = (double)w;
    if (w <= 0 || p + n <= w) return (a + b) * (double)n / 2.0;
    if (p + 1 > w) return (double)n * dw;
    return (a + dw) * (dw - a + 1.0) / 2.0 + (b - dw) * dw;
}

/* The window of a layer's attention (gpt-oss's sliding layers), 0 for full attention. */
static int64_t layer_window(const es_model *m, int64_t layer)
{
    if (m->sliding_window <= 0) return 0;
    const es_op *a = es_model_op(m, layer, ES_OP_ATTN);
    return a ? a->window : 0;
}

int64_t es_an_kv_store_occ(const es_map *pm, const es_op *op, int64_t n, int64_t p)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    if (!c->kv.in_store) return 0;
    int64_t bw = c->store.ports * c->store.port_bits, kvb = es_chip_kv_bits_per_pos(c, m);
    if (op->kind == ES_OP_SCAN) return n * es_ceil_div(2 * es_chip_state_bits(c, m), bw);
    if (op->kind != ES_OP_ATTN) return 0;
    int64_t cyc = es_ceil_div(n * kvb, bw); /* the tokens' K and V written */
    for (int64_t ctx = p + 1; ctx <= p + n; ctx++) /* each token's context read (a sliding layer: its window) */
        cyc += es_ceil_div(seen(ctx, op->window) * kvb, bw);
    return cyc;
}

/* n tokens of one sequence at positions p.. through attention over a window of w positions (0: all). */
static int64_t attention(const es_chip *c, const es_model *m, int64_t n, int64_t p, int64_t w)
{
    int64_t kvb = es_chip_kv_bits_per_pos(c, m), pb = es_chip_kv_port_bits(c);
    int64_t cyc = es_ceil_div(n * kvb, pb) + n * c->tile.attn_latency; /* write the chunk's K and V */
    /* each token: reading its context, or scoring it, whichever takes longer. When a position's
     * bits take at least 1 / attn_ppc of a port cycle, reading does for every context length
     * (ceil is monotone), and one division per token does */
    if (kvb * c->tile.attn_ppc >= pb)
        for (int64_t ctx = p + 1; ctx <= p + n; ctx++) cyc += es_ceil_div(seen(ctx, w) * kvb, pb);
    else
        for (int64_t ctx = p + 1; ctx <= p + n; ctx++) cyc += es_ceil_div(seen(ctx, w), c->tile.attn_ppc);
    return cyc;
}

/* SSM: the selective scan of n tokens of one sequence: each token updates
 * intermediate x state_size state elements at tile.scan.elems_per_cycle, and
 * reads and writes its state (es_chip_state_bits) over a KV SRAM port, in turn. */
static int64_t scan(const es_chip *c, const es_model *m, int64_t n)
{
    int64_t w = c->tile.scan_width > 0 ? c->tile.scan_width : 1;
    int64_t upd = es_ceil_div(m->ssm_inner * m->ssm_state, w);
    int64_t sram = es_ceil_div(2 * es_chip_state_bits(c, m), es_chip_kv_port_bits(c));
    return n * ((upd > sram ? upd : sram) + c->tile.scan_latency);
}

/* A matrix-vector product with tensor t for n tokens, on the lanes and ROM the placement table gives it. */
static int64_t mv(const es_map *pm, const es_tensor *t, int64_t n)
{
    const es_map_tensor *x = es_map_tensor_of(pm, t);
    return matvec_tpr(pm->chip, &x->geom, x->lanes, x->cells, x->bits, n, tensor_tpr(pm->chip, x));
}

/* Why the vector unit and not the lanes: a tile's lanes are select cells wired to its ROM banks, decoding the etched
 * weights' bits (tile.lanes.cell_bits per cell); the adapter's A and B come from the KV SRAM in kv.element_format,
 * and the vector unit's FMA element lanes (tile.vector.elems_per_cycle) take any operand. One multiply-add is one
 * vector op (energy.vector_op_fj); the stream is KV SRAM reads (energy.sram_read_fj_per_bit). */
void es_an_adapter(const es_map *pm, int k, int i, int64_t n, int64_t *occ, int64_t *port, int64_t *lat)
{
    const es_chip *c = pm->chip;
    *occ = *port = *lat = 0;
    es_map_lora x = es_map_lora_of(pm, k, i);
    if (x.bits <= 0) return;
    int64_t macs = es_ceil_div(n * x.macs, c->tile.vec_width);
    *port = es_ceil_div(n, c->tile.tokens_per_read) * es_ceil_div(x.bits, es_chip_kv_port_bits(c));
    *occ = macs > *port ? macs : *port;
    *lat = c->tile.vec_latency;
}

void es_an_adapter_events(const es_map *pm, int k, int i, int64_t n, es_events *ev)
{
    es_map_lora x = es_map_lora_of(pm, k, i);
    if (x.bits <= 0) return;
    ev->kv_rd_bits += (double)es_ceil_div(n, pm->chip->tile.tokens_per_read) * (double)x.bits;
    ev->vec_ops += (double)n * (double)x.macs;
}

/* A matrix product and its adapter, one after the other (es_an_layer's sum). */
static int64_t mva(const es_map *pm, const es_tensor *t, int64_t n)
{
    int64_t occ, port, lat;
    es_an_adapter(pm, pm->an_adapter, (int)(t - pm->model->tensors), n, &occ, &port, &lat);
    return mv(pm, t, n) + occ + lat;
}

/* One expert's work for n of its tokens, on its own partition: gate, up,
 * SiLU x up (the partition's element-wise stage, vector width), down. */
int64_t es_an_expert_chain(const es_map *pm, int64_t layer, int64_t e, int64_t n)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    static const es_role rs[3] = {ES_ROLE_GATE, ES_ROLE_UP, ES_ROLE_DOWN};
    int64_t t = vec(c, n * m->expert_ffn, 1);
    for (int k = 0; k < 3; k++) t += mv(pm, es_model_expert(m, layer, rs[k], e), n);
    return t;
}

/* The experts of n tokens when the analytical model cannot know the routing:
 * the n x top_k activations spread evenly over min(experts, n x top_k)
 * experts, which run in parallel; exact for one token. */
static int64_t experts_even(const es_map *pm, int64_t layer, int64_t n, int64_t *active)
{
    const es_model *m = pm->model;
    int64_t pairs = n * m->top_k, d = pairs < m->experts ? pairs : m->experts;
    if (active) *active = d;
    return es_an_expert_chain(pm, layer, 0, es_ceil_div(pairs, d));
}

int64_t es_an_op(const es_map *pm, const es_op *op, int64_t n, int64_t p)
{
    int64_t occ, lat;
    es_an_op_split(pm, op, n, p, &occ, &lat);
    return occ + lat;
}

void es_an_op_split(const es_map *pm, const es_op *op, int64_t n, int64_t p, int64_t *occ,
                    int64_t *lat)
{
    const es_chip *c = pm->chip;
    *lat = 0;
    switch (op->kind) {
    case ES_OP_RMSNORM:
    case ES_OP_ROPE:
    case ES_OP_ADD:
    case ES_OP_SILU_MUL:
    case ES_OP_ROUTE:
    case ES_OP_CONV:
        *lat = c->tile.vec_latency;
        *occ = vec(c, n * op->elems, op->kind == ES_OP_RMSNORM ? 2 : 1) - *lat;
        return;
    case ES_OP_MATVEC:
        *lat = pm->tensors[op->tensor].geom.latency + c->tile.lane_depth; /* the tile's ROM, or the LM head's */
        *occ = es_an_op_total(pm, op, n, p) - *lat;
        return;
    default:
        *occ = es_an_op_total(pm, op, n, p);
        return;
    }
}

/* The whole of an op's time; attention, the embedding lookup and the sampler
 * hold their resource for all of it. */
int64_t es_an_op_total(const es_map *pm, const es_op *op, int64_t n, int64_t p)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    switch (op->kind) {
    case ES_OP_EMBED: return es_an_embed(pm, n);
    case ES_OP_RMSNORM: return vec(c, n * op->elems, 2);
    case ES_OP_ROPE:
    case ES_OP_ADD:
    case ES_OP_SILU_MUL: return vec(c, n * op->elems, 1);
    case ES_OP_ATTN: return attention(c, m, n, p, op->window);
    case ES_OP_SAMPLE: return es_ceil_div(n * op->elems, c->head.sampler_width) + c->head.sampler_latency;
    case ES_OP_ROUTE: return vec(c, n * op->elems, 1);
    case ES_OP_EXPERTS: return experts_even(pm, op->layer, n, NULL);
    case ES_OP_CONV: return vec(c, n * op->elems, 1);
    case ES_OP_SCAN: return scan(c, m, n);
    case ES_OP_MATVEC: return mv(pm, &m->tensors[op->tensor], n); /* a tile's partition, or the head */
    }
    return 0;
}

int64_t es_an_link_occ(const es_chip *c, int64_t bits) { return es_ceil_div(bits, c->link.width); }

static int64_t ns_to_cycles(const es_chip *c, double ns)
{
    double cyc = ns * c->clock_hz / 1e9;
    int64_t i = (int64_t)cyc;
    return (double)i < cyc ? i + 1 : i;
}

int64_t es_an_host_occ(const es_chip *c, int64_t bytes)
{
    return ns_to_cycles(c, (double)bytes / c->host.bw * 1e9);
}

int64_t es_an_host_lat(const es_chip *c) { return ns_to_cycles(c, c->host.latency_ns); }

int64_t es_an_card_occ(const es_chip *c, int64_t bits)
{
    return ns_to_cycles(c, (double)bits / c->card_link.bits_per_s * 1e9);
}

int64_t es_an_card_lat(const es_chip *c) { return ns_to_cycles(c, c->card_link.latency_ns); }

void es_an_allreduce(const es_map *pm, int64_t n, int64_t bits_each, int64_t *occ, int64_t *lat, double *bits)
{
    const es_model *m = pm->model;
    const es_chip *c = pm->chip;
    *occ = *lat = 0;
    *bits = 0;
    if (m->tp <= 1) return;
    int64_t N = n * (bits_each > 0 ? bits_each : m->hidden * c->link.elem_bits), T = m->tp;
    int64_t sent = es_ceil_div(2 * (T - 1) * N, T);
    *occ = es_an_card_occ(c, sent);
    *lat = 2 * (T - 1) * es_an_card_lat(c);
    *bits = (double)sent;
}

void es_an_alltoall(const es_map *pm, int64_t tokens, int64_t *occ, int64_t *lat, double *bits)
{
    const es_chip *c = pm->chip;
    int64_t N = tokens * pm->model->hidden * c->link.elem_bits;
    *occ = es_an_card_occ(c, N);
    *lat = es_an_card_lat(c);
    *bits = (double)N;
}

double es_an_remote_share(const es_model *m)
{
    int64_t E = es_model_experts_all(m), k = m->top_k;
    if (m->experts >= E || k <= 0) return 0;
    double all_here = 1; /* C(experts, k) / C(E, k): every one of the k drawn among this chip's */
    for (int64_t i = 0; i < k; i++) all_here *= (double)(m->experts - i) / (double)(E - i);
    return 1 - (all_here > 0 ? all_here : 0);
}

int64_t es_an_allreduce_cyc(const es_map *pm, int64_t n, int64_t bits_each)
{
    int64_t occ, lat;
    double bits;
    es_an_allreduce(pm, n, bits_each, &occ, &lat, &bits);
    return occ + lat;
}

/* ---- composition ---- */


int64_t es_an_embed(const es_map *pm, int64_t n)
{
    const es_tensor *t = es_model_tensor(pm->model, -1, ES_ROLE_EMBED);
    const es_map_tensor *x = es_map_tensor_of(pm, t); /* in the embedding ROM, or the LM head's when tied */
    const es_rom_geom *r = &x->geom;
    return es_ceil_div(n * (x->bits / t->rows), r->banks * r->row_bits) + r->latency;
}

int64_t es_an_layer(const es_map *pm, int64_t layer, int64_t n, int64_t p)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    int64_t H = m->hidden, F = m->ffn, Q = m->heads * m->head_dim, KV = m->kv_heads * m->head_dim;
    int64_t t = 0;
    if (m->ssm_state > 0) {
        static const es_role mv4[4] = {ES_ROLE_SSM_IN, ES_ROLE_SSM_X, ES_ROLE_SSM_DT, ES_ROLE_SSM_OUT};
        int64_t I = m->ssm_inner;
        t += vec(c, n * H, 2);                                         /* RMSNorm */
        for (int k = 0; k < 4; k++) t += mv(pm, es_model_tensor(m, layer, mv4[k]), n);
        t += vec(c, n * I * m->ssm_conv, 1);                           /* conv1d */
        t += 2 * vec(c, n * I, 1);                                     /* softplus(dt), y x SiLU(z) */
        t += scan(c, m, n);
        return t + vec(c, n * H, 1);                                   /* residual */
    }
    if (m->experts > 0) {
        static const es_role att[4] = {ES_ROLE_Q, ES_ROLE_K, ES_ROLE_V, ES_ROLE_O};
        t += 2 * vec(c, n * H, 2);                                     /* two RMSNorms */
        for (int k = 0; k < 4; k++) t += mva(pm, es_model_tensor(m, layer, att[k]), n);
        if (m->qk_norm) t += vec(c, n * Q, 2) + vec(c, n * KV, 2);     /* RMSNorm of q and of k */
        t += vec(c, n * (Q + KV), 1) + attention(c, m, n, p, layer_window(m, layer)); /* RoPE, attention */
        t += 2 * vec(c, n * H, 1);                                     /* two residual adds */
        t += mv(pm, es_model_tensor(m, layer, ES_ROLE_ROUTER), n); /* the router's scores */
        if (m->attn_bias) /* gpt-oss: the q, k, v and o biases, each its own add */
            t += vec(c, n * Q, 1) + 2 * vec(c, n * KV, 1) + vec(c, n * H, 1);
        if (m->router_bias) t += vec(c, n * es_model_experts_all(m), 1); /* gpt-oss: the router's bias */
        t += vec(c, n * es_model_experts_all(m), 1);                   /* top-k of them */
        t += experts_even(pm, layer, n, NULL);                       /* the experts, in parallel */
        return t + vec(c, n * m->top_k * H, 1);                        /* weighted sum of k outputs */
    }
    t += 2 * vec(c, n * H, 2);                                        /* two RMSNorms */
    static const es_role qkvo[4] = {ES_ROLE_Q, ES_ROLE_K, ES_ROLE_V, ES_ROLE_O};
    static const es_role ffn[3] = {ES_ROLE_GATE, ES_ROLE_UP, ES_ROLE_DOWN};
    for (int k = 0; k < 4; k++) t += mva(pm, es_model_tensor(m, layer, qkvo[k]), n);
    t += vec(c, n * (Q + KV), 1);                                     /* RoPE on q and k */
    t += attention(c, m, n, p, 0);
    t += 2 * vec(c, n * H, 1);                                        /* two residual adds */
    for (int k = 0; k < 3; k++) t += mva(pm, es_model_tensor(m, layer, ffn[k]), n);
    t += vec(c, n * F, 1);                                            /* SiLU(gate) * up */
    return t + 2 * es_an_allreduce_cyc(pm, n, 0);                     /* a shard: after o and after down */
}

/* Occupancy of each of a tile's resources for one work item of n tokens of
 * one sequence at positions p..: the lanes, the vector unit, the attention
 * engine; and the item's whole time in the tile. */
static void tile_resources(const es_map *pm, int64_t tile, int64_t n, int64_t p,
                           double *lanes, double *vector, double *attn, double *whole)
{
    const es_model *m = pm->model;
    double part[ES_PART_N] = {0};
    *lanes = *vector = *attn = *whole = 0;
    for (int i = 0; i < m->n_ops; i++) {
        const es_op *op = &m->ops[i];
        if (pm->ops[i].tile != tile || tile < 0) continue; /* the ops the table gives this tile */
        int64_t occ, lat;
        es_an_op_split(pm, op, n, p, &occ, &lat);
        if (op->kind == ES_OP_EXPERTS) { /* its experts run in parallel on their own partitions */
            part[1] += (double)occ;
        } else if (op->res == ES_RES_LANES) {
            part[pm->ops[i].part] += (double)occ; /* MoE: the attention partition (0) */
        } else if (op->res == ES_RES_ATTN || op->res == ES_RES_SCAN) {
            *attn += (double)occ;
        } else {
            *vector += (double)occ;
        }
        *whole += (double)(occ + lat);
        if (op->kind == ES_OP_MATVEC && m->tp > 1 && (m->tensors[op->tensor].role == ES_ROLE_O ||
                                                      m->tensors[op->tensor].role == ES_ROLE_DOWN))
            *whole += (double)es_an_allreduce_cyc(pm, n, 0); /* a shard's all-reduce (the ring's own bound: not here) */
        if (op->kind == ES_OP_MATVEC) { /* its adapter: the vector unit, and the KV port its A and B stream over */
            int64_t a_occ, a_port, a_lat;
            es_an_adapter(pm, pm->an_adapter, op->tensor, n, &a_occ, &a_port, &a_lat);
            *vector += (double)a_occ;
            *attn += (double)a_port;
            *whole += (double)(a_occ + a_lat);
        }
    }
    /* the lanes as a resource: striped, one; partitioned, the busiest partition */
    for (int g = 0; g < ES_PART_N; g++)
        if (part[g] > *lanes) *lanes = part[g];
}

/* One pass of s tokens of s sequences, each at position p, through tile `tile`: its ops for s tokens at once, but
 * attention once per sequence (one token, its own context). */
static int64_t tile_sync_pass(const es_map *pm, int64_t tile, int64_t s, int64_t p)
{
    const es_model *m = pm->model;
    int64_t t = 0;
    for (int i = 0; i < m->n_ops; i++) {
        const es_op *op = &m->ops[i];
        if (pm->ops[i].tile != tile) continue;
        t += op->kind == ES_OP_ATTN || op->kind == ES_OP_SCAN ? s * es_an_op(pm, op, 1, p) : es_an_op(pm, op, s, p);
        if (op->kind == ES_OP_MATVEC && m->tp > 1 && (m->tensors[op->tensor].role == ES_ROLE_O ||
                                                      m->tensors[op->tensor].role == ES_ROLE_DOWN))
            t += es_an_allreduce_cyc(pm, s, 0); /* a shard: the s tokens' partial sums all-reduced */
    }
    return t;
}

double es_an_tile_token_bound(const es_map *pm, int64_t tile, int64_t p)
{
    const es_chip *c = pm->chip;
    int64_t g = c->tile.tokens_per_read;
    double lanes, vector, attn, whole, attn1, l1, v1, w1;
    tile_resources(pm, tile, g, p, &lanes, &vector, &attn, &whole);
    tile_resources(pm, tile, 1, p, &l1, &v1, &attn1, &w1);
    /* g tokens of g sequences: the shared part once, attention once per sequence */
    whole = whole - attn + (double)g * attn1;
    double b = lanes / (double)g;
    if (vector / (double)g > b) b = vector / (double)g;
    if (attn1 * (double)c->kv.tiles_per_group > b) b = attn1 * (double)c->kv.tiles_per_group; /* shared ports */
    if (whole / (double)(g * c->tile.slots) > b) b = whole / (double)(g * c->tile.slots);
    return b;
}

int64_t es_an_tile(const es_map *pm, int64_t tile, int64_t n, int64_t p)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    int64_t first = tile * c->tile.layers, last = first + c->tile.layers, t = 0;
    if (last > m->layers) last = m->layers;
    for (int64_t l = first; l < last; l++) t += es_an_layer(pm, l, n, p);
    return t;
}

int64_t es_an_head_n(const es_map *pm, int64_t n)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    const es_tensor *lm = es_model_tensor(m, -1, ES_ROLE_LM_HEAD);
    int64_t V = m->tp > 1 ? es_ceil_div(m->vocab, m->tp) : m->vocab; /* a shard: its part of the vocabulary */
    return vec(c, n * m->hidden, 2) + mv(pm, lm, n) +
           es_ceil_div(n * V, c->head.sampler_width) + c->head.sampler_latency +
           es_an_allreduce_cyc(pm, n, 64); /* a shard: the best score and id of each chip */
}

int64_t es_an_head(const es_map *pm) { return es_an_head_n(pm, 1); }

double es_an_head_per_token(const es_map *pm)
{
    int64_t g = pm->chip->head.tokens_per_read;
    return g == 1 ? (double)es_an_head(pm) : (double)es_an_head_n(pm, g) / (double)g;
}

static int64_t act_hop(const es_chip *c, const es_model *m, int64_t n)
{
    return es_an_link_occ(c, n * m->hidden * c->link.elem_bits) + c->link.latency;
}

int64_t es_an_decode_step(const es_map *pm, int64_t p)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    int64_t tiles = es_chip_tiles(c, m);
    int64_t t = es_an_link_occ(c, c->link.token_id_bits) + c->link.latency; /* sampler -> embed */
    t += es_an_embed(pm, 1) + es_an_allreduce_cyc(pm, 1, 0); /* a shard: the row from the chip holding it */
    t += (tiles + 1) * act_hop(c, m, 1);
    for (int64_t i = 0; i < tiles; i++) t += es_an_tile(pm, i, 1, p);
    return t + es_an_head(pm);
}

int64_t es_an_period_ps(const es_chip *c) { return (int64_t)(1e12 / c->clock_hz + 0.5); }

int64_t es_an_cycle_to(const es_chip *from, int64_t cyc, const es_chip *to)
{
    uint64_t a = (uint64_t)es_an_period_ps(from), b = (uint64_t)es_an_period_ps(to);
    return a == b ? cyc : (int64_t)(((uint64_t)cyc * a + b - 1) / b);
}

/* Chip k holding one token of an expert-parallel stage (its first chip; the stage: the chips after it holding the same
 * layers): the expected cycles of its clock its MoE layers add when a token's experts are not all there (the share
 * es_an_remote_share), each layer: the dispatch over k's link, the expert chain on the other chip (its cycles) and
 * the combine over that chip's link, back on k's clock, less the chain k would have run itself. Another chip of
 * another clock: its part converted once (exact when k's period is a whole multiple of its, as the simulation's
 * edges then agree; else up to one of k's cycles a layer short); several others: the slowest. */
static int64_t remote_experts(const es_map *const *pms, int n, int k)
{
    const es_model *m = pms[k]->model;
    int64_t occ, lat, worst = 0;
    double bits;
    es_an_alltoall(pms[k], 1, &occ, &lat, &bits);
    for (int j = k + 1; j < n && pms[j]->model->layer_base == m->layer_base; j++) {
        const es_map *o = pms[j];
        int64_t o_occ, o_lat, d = 0;
        es_an_alltoall(o, 1, &o_occ, &o_lat, &bits);
        for (int64_t l = 0; l < m->layers; l++)
            d += occ + lat + es_an_cycle_to(o->chip, experts_even(o, l, 1, NULL) + o_occ + o_lat, pms[k]->chip) -
                 experts_even(pms[k], l, 1, NULL);
        if (d > worst) worst = d;
    }
    return (int64_t)llround(es_an_remote_share(m) * (double)worst);
}

int64_t es_an_system_decode_step(const es_map *const *pms, int n, int64_t p)
{
    const es_chip *last = pms[n - 1]->chip;
    /* the sampled token back to the embedding: on the die, or over the last chip's card link to the first (its
     * cycles, from the sample at 0), arriving on the first chip's clock */
    int64_t t = n == 1 ? es_an_link_occ(last, last->link.token_id_bits) + last->link.latency
                       : es_an_cycle_to(last, es_an_card_occ(last, last->link.token_id_bits) + es_an_card_lat(last),
                                        pms[0]->chip);
    int prev = -1; /* the chip the token was on before chip k: of an expert-parallel stage, its first */
    for (int k = 0; k < n; k++) { /* t: cycles of chip k's clock */
        const es_map *pm = pms[k];
        const es_chip *c = pm->chip;
        const es_model *m = pm->model;
        if (k > 0 && m->experts_all > 0 && pms[k - 1]->model->layer_base == m->layer_base)
            continue; /* an expert-parallel stage: one token is on its first chip (the others' share is below) */
        if (m->has_embed) /* then the link to tile 0 */
            t += es_an_embed(pm, 1) + es_an_allreduce_cyc(pm, 1, 0) + act_hop(c, m, 1);
        else { /* the previous chip's last tile sends over its card link */
            const es_chip *pc = pms[prev]->chip;
            t = es_an_cycle_to(pc, t + es_an_card_occ(pc, m->hidden * pc->link.elem_bits) + es_an_card_lat(pc), c);
        }
        t += (pm->tiles - 1) * act_hop(c, m, 1); /* between its tiles */
        for (int64_t i = 0; i < pm->tiles; i++) t += es_an_tile(pm, i, 1, p);
        if (m->experts_all > 0) t += remote_experts(pms, n, k); /* when an expert is elsewhere */
        if (m->has_head) t += act_hop(c, m, 1) + es_an_head(pm);
        prev = k;
    }
    return es_an_cycle_to(last, t, pms[0]->chip); /* the next sample, on the first chip's (the host's) clock */
}

int64_t es_an_ttft(const es_map *pm, int64_t prompt)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    /* Flow shop: each chunk visits host link, embed, then link+tile per tile;
     * the last chunk then crosses one more link to the head. free[] holds when
     * each stage next becomes free. Unbounded buffers are assumed, which the
     * bounded FIFOs match as long as no stage is slower than its successor. */
    int64_t tiles = es_chip_tiles(c, m);
    int64_t *freebuf = calloc((size_t)(2 + 2 * tiles), sizeof *freebuf);
    if (!freebuf) return -1;
    int64_t hl = es_an_host_lat(c), done = 0;
    for (int64_t p = 0; p < prompt; p += c->sched.prefill_chunk) {
        int64_t n = prompt - p < c->sched.prefill_chunk ? prompt - p : c->sched.prefill_chunk;
        int64_t arrive = 0, s = 0;
#define STAGE(occ, lat) do { int64_t st = arrive > freebuf[s] ? arrive : freebuf[s]; \
        freebuf[s] = st + (occ); arrive = freebuf[s] + (lat); s++; } while (0)
        STAGE(es_an_host_occ(c, c->host.cmd_bytes + n * c->host.token_bytes), hl);
        STAGE(es_an_embed(pm, n) + es_an_allreduce_cyc(pm, n, 0), 0);
        for (int64_t i = 0; i < tiles; i++) {
            STAGE(es_an_link_occ(c, n * m->hidden * c->link.elem_bits), c->link.latency);
            STAGE(es_an_tile(pm, i, n, p), 0);
        }
#undef STAGE
        done = arrive;
    }
    free(freebuf);
    /* last chunk: its final token continues to the head, then to the host */
    done += act_hop(c, m, 1) + es_an_head(pm);
    return done + es_an_host_occ(c, c->host.cpl_bytes) + hl;
}

int64_t es_an_sync_step(const es_map *pm, int64_t s, int64_t p)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    /* the s sampled tokens, one item each, through the token-id link, the embedding and the hop to the first tile,
     * each stage taking them in turn: the first's whole way, then the slowest stage for each of the others */
    int64_t tok = es_an_link_occ(c, c->link.token_id_bits), emb = es_an_embed(pm, 1) + es_an_allreduce_cyc(pm, 1, 0),
            hop = es_an_link_occ(c, m->hidden * c->link.elem_bits);
    int64_t each = tok > emb ? tok : emb;
    if (hop > each) each = hop;
    int64_t t = tok + c->link.latency + emb + hop + c->link.latency + (s - 1) * each;
    /* then one pass of the s tokens through every tile (the weights read once for all of them, attention once per
     * sequence), the group hopping on in one go between tiles and to the head, and one head pass over them */
    for (int64_t i = 0; i < es_chip_tiles(c, m); i++) {
        if (i > 0) t += act_hop(c, m, s);
        t += tile_sync_pass(pm, i, s, p);
    }
    return t + act_hop(c, m, s) + es_an_head_n(pm, s);
}

void es_an_summarize(const es_map *pm, int64_t prompt, int64_t gen,
                     es_an_summary *s)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    memset(s, 0, sizeof *s);
    double total = 0;
    for (int64_t k = 1; k < gen; k++) total += (double)es_an_decode_step(pm, prompt + k - 1);
    s->decode_tokens_per_s = gen > 1 ? (double)(gen - 1) / total * c->clock_hz : 0;
    s->ttft_cycles = (double)es_an_ttft(pm, prompt);
    int64_t mid = prompt + gen / 2;
    s->step_mid_cycles = (double)es_an_decode_step(pm, mid);
    /* per token at saturation: a tile takes tokens_per_read waiting tokens per
     * pass over the weights (attention still per token), the head head.lanes.tokens_per_read a pass */
    int64_t tiles = es_chip_tiles(c, m), b = (int64_t)(es_an_head_per_token(pm) + 0.999999);
    for (int64_t i = 0; i < tiles; i++) {
        double t = es_an_tile_token_bound(pm, i, mid);
        if (t > (double)b) b = (int64_t)(t + 0.999999);
    }
    int64_t other[3] = {es_an_embed(pm, 1), es_an_link_occ(c, m->hidden * c->link.elem_bits),
                        es_an_host_occ(c, c->host.cpl_bytes)};
    for (int i = 0; i < 3; i++)
        if (other[i] > b) b = other[i];
    /* a chip-scope weight store serves every tile and the head: per token, each tile's weights once per
     * tokens_per_read tokens, the LM head's and an embedding row once (0 with ROM or a store per tile); with
     * kv.in_store also each token's KV, written and its context read at the middle of generation */
    double store = 0;
    for (int i = 0; i < m->n_ops; i++) {
        const es_op *op = &m->ops[i];
        int64_t g = pm->ops[i].tile >= 0 ? c->tile.tokens_per_read : op->kind == ES_OP_EMBED ? 1 : c->head.tokens_per_read;
        store += (double)es_an_store_occ(pm, op, g) / (double)g + (double)es_an_kv_store_occ(pm, op, 1, mid);
    }
    if (store > (double)b) b = (int64_t)(store + 0.999999);
    s->bottleneck_cycles = (double)b;
    s->kv_slots = m->ssm_state > 0 ? pm->kv_slots : pm->kv_positions / (prompt + gen); /* less an adapter's share */
    if (c->tile.sync_step) { /* one synchronous step carries every sequence: see es_an_sync_step */
        int64_t full = c->tile.tokens_per_read < c->head.tokens_per_read ? c->tile.tokens_per_read : c->head.tokens_per_read;
        s->knee_streams = full < s->kv_slots ? full : s->kv_slots;
        if (s->knee_streams < 1) s->knee_streams = 1;
        s->sat_tokens_per_s = (double)s->knee_streams / (double)es_an_sync_step(pm, s->knee_streams, mid) * c->clock_hz;
        return;
    }
    int64_t pipe = (int64_t)((s->step_mid_cycles + (double)b - 1) / (double)b);
    s->knee_streams = pipe < s->kv_slots ? pipe : s->kv_slots;
    double by_streams = (double)s->knee_streams / s->step_mid_cycles, by_unit = 1.0 / (double)b;
    s->sat_tokens_per_s = (by_streams < by_unit ? by_streams : by_unit) * c->clock_hz;
}

void es_an_expert_events(const es_map *pm, int64_t layer, int64_t e, int64_t n, es_events *ev)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    static const es_role rs[3] = {ES_ROLE_GATE, ES_ROLE_UP, ES_ROLE_DOWN};
    memset(ev, 0, sizeof *ev);
    ev->vec_ops = (double)n * (double)m->expert_ffn; /* SiLU x up */
    for (int k = 0; k < 3; k++) {
        const es_tensor *t = es_model_expert(m, layer, rs[k], e);
        const es_map_tensor *x = es_map_tensor_of(pm, t);
        const es_wfmt *f = &c->store.fmt[es_tensor_fmt_role(t)];
        *(x->store == ES_STORE_ROM ? &ev->rom_bits : &ev->store_bits) +=
            (double)es_ceil_div(n, c->tile.tokens_per_read) * (double)x->bits;
        ev->cell_macs += (double)n * (double)x->cells;
        if (f->group > 0) ev->vec_ops += (double)n * (double)t->rows * (double)es_ceil_div(t->cols, f->group);
        if (c->gating == ES_GATING_UNIT) { /* the expert's lanes, for its projection's occupancy */
            int64_t occ = mv(pm, t, n) - x->geom.latency - c->tile.lane_depth;
            ev->reg_bit_cycles += (double)occ * (double)x->lanes * (double)es_chip_lane_copies(c) * c->tile.reg_bits_cell;
        }
    }
    if (c->gating == ES_GATING_UNIT) /* SiLU x up on the vector unit */
        ev->reg_bit_cycles += (double)es_ceil_div(n * m->expert_ffn, c->tile.vec_width) * (double)c->tile.vec_width * c->tile.reg_bits_vec;
}

/* The register bits of the resource an op holds (clock_gating "unit": clocked while it is booked). */
static double op_register_bits(const es_map *pm, const es_op *op)
{
    const es_chip *c = pm->chip;
    switch (op->kind) {
    case ES_OP_EMBED: return 0; /* a ROM lookup */
    case ES_OP_ATTN:
    case ES_OP_SCAN: return (double)c->tile.attn_ppc * c->tile.reg_bits_attn;
    case ES_OP_SAMPLE: return (double)c->head.sampler_width * c->head.reg_bits_sampler;
    case ES_OP_EXPERTS: return 0; /* es_an_expert_events, per expert */
    case ES_OP_MATVEC: { /* its partition's lanes, or the head's (one token at a time) */
        double lanes = (double)es_map_op_of(pm, op)->lanes;
        if (op->layer < 0) return lanes * c->tile.reg_bits_cell;
        return lanes * (double)es_chip_lane_copies(c) * c->tile.reg_bits_cell;
    }
    default: return (double)c->tile.vec_width * c->tile.reg_bits_vec;
    }
}

static void op_events(const es_map *pm, const es_op *op, int64_t n, int64_t p, es_events *ev);

void es_an_op_events(const es_map *pm, const es_op *op, int64_t n, int64_t p,
                     es_events *ev)
{
    const es_chip *c = pm->chip;
    int64_t occ = 0, lat;
    if (c->gating == ES_GATING_UNIT) es_an_op_split(pm, op, n, p, &occ, &lat);
    es_an_op_events_occ(pm, op, n, p, occ, ev);
}

void es_an_op_events_occ(const es_map *pm, const es_op *op, int64_t n, int64_t p, int64_t occ,
                         es_events *ev)
{
    const es_chip *c = pm->chip;
    op_events(pm, op, n, p, ev);
    if (c->gating == ES_GATING_UNIT && op->kind != ES_OP_EXPERTS)
        ev->reg_bit_cycles = (double)occ * op_register_bits(pm, op);
}

static void op_events(const es_map *pm, const es_op *op, int64_t n, int64_t p, es_events *ev)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    memset(ev, 0, sizeof *ev);
    double dn = (double)n;
    switch (op->kind) {
    case ES_OP_EMBED: {
        const es_tensor *t = &m->tensors[op->tensor];
        const es_map_tensor *x = &pm->tensors[op->tensor];
        *(x->store == ES_STORE_ROM ? &ev->rom_bits : &ev->store_bits) = dn * (double)x->bits / (double)t->rows;
        break;
    }
    case ES_OP_RMSNORM: ev->vec_ops = 2 * dn * (double)op->elems; break;
    case ES_OP_ROPE:
    case ES_OP_ADD:
    case ES_OP_SILU_MUL: ev->vec_ops = dn * (double)op->elems; break;
    case ES_OP_SAMPLE: ev->vec_ops = dn * (double)op->elems; break;
    case ES_OP_ROUTE: ev->vec_ops = dn * (double)op->elems; break;
    case ES_OP_CONV: ev->vec_ops = dn * (double)op->elems; break;
    case ES_OP_SCAN: /* decay, input and output products per state element; state read and written */
        ev->attn_macs = 3.0 * dn * (double)op->elems;
        ev->state_rd_bits = ev->state_wr_bits = dn * (double)es_chip_state_bits(c, m);
        break;
    case ES_OP_EXPERTS: {
        int64_t d = 0, pairs = n * m->top_k;
        experts_even(pm, op->layer, n, &d);
        es_an_expert_events(pm, op->layer, 0, es_ceil_div(pairs, d), ev);
        es_events_scale(ev, (double)d);
        break;
    }
    case ES_OP_MATVEC: {
        const es_tensor *t = &m->tensors[op->tensor];
        const es_map_tensor *x = &pm->tensors[op->tensor];
        const es_wfmt *f = &c->store.fmt[es_tensor_fmt_role(t)];
        *(x->store == ES_STORE_ROM ? &ev->rom_bits : &ev->store_bits) =
            (double)es_ceil_div(n, tensor_tpr(c, x)) * (double)x->bits;
        ev->cell_macs = dn * (double)x->cells;
        if (f->group > 0) /* one scale multiply per group per output row */
            ev->vec_ops = dn * (double)t->rows * (double)es_ceil_div(t->cols, f->group);
        break;
    }
    case ES_OP_ATTN: {
        /* positions read: p + 1 .. p + n (a sliding layer: at most its window each), summed */
        double kvb = (double)es_chip_kv_bits_per_pos(c, m), ctx_sum = seen_sum(n, p, op->window);
        ev->attn_macs = 2.0 * (double)(m->heads * m->head_dim) * ctx_sum;
        ev->kv_rd_bits = kvb * ctx_sum;
        ev->kv_wr_bits = kvb * dn;
        ev->vec_ops = (double)m->heads * ctx_sum; /* softmax exp-and-sum */
        break;
    }
    }
}

/* The least time n tokens of one item can hold each tile resource, when the
 * tile may group it with other items: an item of n >= tokens_per_read tokens
 * is served alone (a group never exceeds tokens_per_read tokens); a smaller
 * one may share its pass with others, so it costs at least n /
 * tokens_per_read of a full pass. Attention is per sequence. res[0..2]:
 * lanes, vector, attention; res[3]: the item's whole time / items_in_flight. */
static void tile_item_bound(const es_map *pm, int64_t n, int64_t p, double *res)
{
    const es_chip *c = pm->chip;
    double l, v, a, w, al, vl, aa, wl;
    tile_resources(pm, 0, n, p, &l, &v, &a, &w);
    if (n < c->tile.tokens_per_read) {
        tile_resources(pm, 0, c->tile.tokens_per_read, 0, &al, &vl, &aa, &wl);
        double share = (double)n / (double)c->tile.tokens_per_read;
        l = al * share;
        v = vl * share;
        w = (wl - aa) * share + a;
    }
    res[0] += l;
    res[1] += v;
    res[2] += a * (double)c->kv.tiles_per_group;
    res[3] += w / (double)c->tile.slots;
}

void es_an_batch(const es_map *pm, int64_t n, int64_t prefix, int64_t prompt, int64_t gen,
                 double *busy, double *fill, double *upper)
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    int64_t ch = c->sched.prefill_chunk;
    double tr[4] = {0, 0, 0, 0}, embed = 0, link = 0, host = 0; /* tile 0's resources, as every tile's */
    double serial = 0, s1 = 0; /* tile 0 taking items one at a time, ungrouped */
    /* the shared prefix, once */
    for (int64_t p = 0; p < prefix; p += ch) {
        int64_t k = prefix - p < ch ? prefix - p : ch;
        tile_item_bound(pm, k, p, tr);
        serial += (double)es_an_tile(pm, 0, k, p);
        embed += (double)es_an_embed(pm, k);
        link += (double)es_an_link_occ(c, k * m->hidden * c->link.elem_bits);
        host += (double)es_an_host_occ(c, c->host.cmd_bytes + k * c->host.token_bytes);
    }
    /* one sequence */
    double t1[4] = {0, 0, 0, 0}, e1 = 0, l1 = 0, h1 = 0;
    for (int64_t p = 0; p < prompt; p += ch) {
        int64_t k = prompt - p < ch ? prompt - p : ch;
        tile_item_bound(pm, k, prefix + p, t1);
        s1 += (double)es_an_tile(pm, 0, k, prefix + p);
        e1 += (double)es_an_embed(pm, k);
        l1 += (double)es_an_link_occ(c, k * m->hidden * c->link.elem_bits);
        h1 += (double)es_an_host_occ(c, c->host.cmd_bytes + k * c->host.token_bytes);
    }
    for (int64_t g = 1; g < gen; g++) {
        tile_item_bound(pm, 1, prefix + prompt + g - 1, t1);
        s1 += (double)es_an_tile(pm, 0, 1, prefix + prompt + g - 1);
        e1 += (double)es_an_embed(pm, 1);
        l1 += (double)es_an_link_occ(c, m->hidden * c->link.elem_bits);
    }
    double tile = 0;
    for (int k = 0; k < 4; k++) {
        tr[k] += (double)n * t1[k];
        if (tr[k] > tile) tile = tr[k];
    }
    embed += (double)n * e1;
    link += (double)n * l1;
    host += (double)n * h1;
    double head = (double)(n * gen) * es_an_head_per_token(pm);
    double cpl = (double)(n * gen) * (double)es_an_host_occ(c, c->host.cpl_bytes);
    serial += (double)n * s1;
    double b = tile, u = serial;
    double other[5] = {embed, link, host, head, cpl};
    for (int i = 0; i < 5; i++) {
        if (other[i] > b) b = other[i];
        if (other[i] > u) u = other[i];
    }
    *busy = b;
    double f = (double)es_an_ttft(pm, prefix + prompt);
    for (int64_t g = 1; g < gen; g++) f += (double)es_an_decode_step(pm, prefix + prompt + g - 1);
    *fill = 2 * f; /* filling at the start, draining at the end */
    *upper = u + *fill;
}

double es_an_utilization(const es_map *pm, const es_area *a, int64_t p, double busy[5])
{
    const es_chip *c = pm->chip;
    const es_model *m = pm->model;
    double lanes = 0, vector = 0, attn = 0;
    for (int i = 0; i < m->n_ops; i++) { /* tile 0, as every tile */
        const es_op *op = &m->ops[i];
        if (pm->ops[i].tile != 0) continue;
        int64_t occ, lat;
        es_an_op_split(pm, op, 1, p, &occ, &lat);
        if (op->kind == ES_OP_EXPERTS) { /* top_k chains on expert partitions, each a share of the lanes */
            static const es_role rs[3] = {ES_ROLE_GATE, ES_ROLE_UP, ES_ROLE_DOWN};
            for (int k = 0; k < 3; k++) {
                const es_tensor *t = es_model_expert(m, op->layer, rs[k], 0);
                const es_map_tensor *x = es_map_tensor_of(pm, t);
                int64_t tot = mv(pm, t, 1);
                lanes += (double)m->top_k * (double)(tot - x->geom.latency - c->tile.lane_depth) * (double)x->lanes /
                         (double)c->tile.lanes;
            }
            /* an expert's SiLU x up runs in its own partition: counted with its chain above */
        } else if (op->res == ES_RES_LANES) {
            lanes += (double)occ * (double)pm->ops[i].lanes / (double)c->tile.lanes;
        } else if (op->res == ES_RES_ATTN || op->res == ES_RES_SCAN) {
            attn += (double)occ;
        } else {
            vector += (double)occ;
        }
    }
    double step = (double)es_an_decode_step(pm, p), tiles = (double)es_chip_tiles(c, m);
    double head = (double)es_an_head(pm), emb = (double)es_an_embed(pm, 1);
    double area_u[5] = {es_area_of_unit(c, m, a, "tile0.lanes"), es_area_of_unit(c, m, a, "tile0.vector"),
                        es_area_of_unit(c, m, a, "tile0.attention"), es_area_of_unit(c, m, a, "head"),
                        es_area_of_unit(c, m, a, "embed")};
    double t[5] = {lanes, vector, attn, head, emb};
    double active = 0;
    for (int k = 0; k < 5; k++) {
        busy[k] = t[k] / step;
        active += area_u[k] * t[k] * (k < 3 ? tiles : 1.0);
    }
    return active / (a->total_mm2 * step);
}
