/* es_cost: what a chip costs to build and to run, per million tokens. The inputs are keys with sources:
 * the wafer (cost.* of the process table), the card (cost.* of the chip file) and the deployment
 * (models/deploy/NAME.json: electricity, PUE, lifetime, utilization); the run gives tokens/s and watts.
 *
 *   gross dies     N = floor(pi (d/2)^2 / A - pi d / sqrt(2 A)),  d = wafer diameter - 2 x edge exclusion
 *   yield          Y = exp(-A D0) (poisson), ((1 - exp(-A D0)) / (A D0))^2 (murphy),
 *                      (1 + A D0 / alpha)^-alpha (negative_binomial); A in cm2 here, mm2 above
 *   die            wafer_usd / (N Y)
 *   card           cost.card_usd, else die + package_test_usd + board_usd (+ hbm_usd_per_gb x
 *                  store.capacity_bytes / 1e9 for an HBM store: its stacks, off the die)
 *   system         card + host_usd_per_card
 *   capex / s      system / (lifetime_years x 31,557,600 s x utilization)   (a Julian year of seconds)
 *   energy / s     (card W + host_w_per_card) x PUE x electricity_usd_per_kwh / 3.6e6 J per kWh
 *   $ / M tokens   (capex / s + energy / s) / tokens_per_s x 1e6
 *
 * Energy is charged while the card serves (its utilization); idle time's power is not counted. */
#ifndef ES_COST_H
#define ES_COST_H
#include "es_cfg.h"
#include "es_chip.h"
#include "es_err.h"
#ifdef __cplusplus
extern "C" {
#endif

/* A deployment (models/deploy/NAME.json, every number sourced). */
typedef struct es_deploy {
    char path[512];
    char name[64];
    es_cfg cfg;                /* after --set deploy.KEY=VALUE */
    double usd_per_kwh;        /* electricity_usd_per_kwh */
    double pue;                /* pue: facility power / IT power */
    double lifetime_years;     /* lifetime_years: the hardware's amortization period */
    double utilization;        /* utilization: the fraction of its life the card serves */
} es_deploy;

/* Load a deployment by name (models/deploy/NAME.json) or path; sets are "KEY=VALUE" strings (a
 * leading "deploy." is dropped) applied before reading. Every key is range-checked; an unknown one is
 * an error naming it. */
int es_deploy_load(es_deploy *d, const char *spec, const char *const *sets, int n_sets, es_err *e);
void es_deploy_free(es_deploy *d);
/* The deployment keys: name, kind ('d' number, 'x' text), range and meaning, for the README and help. */
typedef struct es_deploy_key { const char *key; char kind; double lo, hi; const char *note; } es_deploy_key;
const es_deploy_key *es_deploy_keys(int *n);

const char *es_yield_name(int model); /* "poisson", "murphy", "negative_binomial" */
/* Whole dies of die_mm2 on a wafer of wafer_mm diameter less edge_mm at its rim (the formula above). */
double es_dies_per_wafer(double wafer_mm, double edge_mm, double die_mm2);
/* The fraction of dies of die_mm2 without a killing defect at d0_cm2 defects per cm2. */
double es_die_yield(int model, double die_mm2, double d0_cm2, double alpha);

typedef struct es_cost {
    int card_given;            /* the card's price came from cost.card_usd */
    double die_mm2, dies_per_wafer, yield, die_usd; /* 0 when card_given */
    double hbm_gb, hbm_usd;    /* an HBM store's GB (store.capacity_bytes / 1e9) and price in a die-derived card; else 0 */
    double card_usd, system_usd;
    double watts, host_w, tokens_per_s, joules_per_token;
    double capex_usd_per_s, energy_usd_per_s;
    double capex_usd_per_m_tokens, energy_usd_per_m_tokens, usd_per_m_tokens;
} es_cost;

/* The cost of chip c (die of die_mm2) under deployment d, serving tokens_per_s at watts card power:
 * -1 and an error naming the missing key when c lacks its cost inputs, or when no die fits the wafer. */
int es_cost_compute(const es_chip *c, const es_deploy *d, double die_mm2, double watts, double tokens_per_s,
                    double joules_per_token, es_cost *out, es_err *e);
/* sum += x: another card of a system. Every dollar, dollar rate and host figure adds (es_cost_compute is linear
 * in the card's price and in watts); the run's figures (watts, tokens/s, J/token) and the die's per-die figures
 * (dies per wafer, yield) stay sum's; card_given holds only if both cards were priced outright. */
void es_cost_add(es_cost *sum, const es_cost *x);

#ifdef __cplusplus
}
#endif
#endif
