#define _XOPEN_SOURCE 700 /* M_PI */
/* es_cost: dies per wafer, yield, die, card and system cost, and dollars per million tokens (see
 * es_cost.h for the formulas); the deployment file's reader. */
#include "es_cost.h"
#include "es_model.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const es_deploy_key KEYS[] = {
    {"name", 'x', 0, 0, "the deployment's name"},
    {"description", 'x', 0, 0, "what it is, for people (optional)"},
    {"electricity_usd_per_kwh", 'd', 0, 10, "the price of electricity, US dollars per kWh"},
    {"pue", 'd', 1, 5, "power usage effectiveness: facility power / IT power"},
    {"lifetime_years", 'd', 0.1, 50, "years over which the hardware is amortized"},
    {"utilization", 'd', 0.001, 1, "the fraction of its life a card serves at the run's tokens/s"},
};
#define N_KEYS ((int)(sizeof KEYS / sizeof *KEYS))

const es_deploy_key *es_deploy_keys(int *n)
{
    *n = N_KEYS;
    return KEYS;
}

static int read_deploy(es_deploy *d, es_err *e)
{
    const char *allowed[N_KEYS + 1];
    for (int i = 0; i < N_KEYS; i++) allowed[i] = KEYS[i].key;
    allowed[N_KEYS] = NULL;
    if (!cJSON_IsObject(d->cfg.root)) return es_fail(e, "%s: expected a JSON object of deployment keys", d->path);
    if (es_cfg_only_keys(d->cfg.root, d->path, "", allowed, e)) return -1;
    double *out[] = {&d->usd_per_kwh, &d->pue, &d->lifetime_years, &d->utilization};
    if (es_cfg_str(&d->cfg, "name", d->name, sizeof d->name, e)) return -1;
    for (int i = 2; i < N_KEYS; i++)
        if (es_cfg_num(&d->cfg, KEYS[i].key, KEYS[i].lo, KEYS[i].hi, out[i - 2], e)) return -1;
    return 0;
}

int es_deploy_load(es_deploy *d, const char *spec, const char *const *sets, int n_sets, es_err *e)
{
    memset(d, 0, sizeof *d);
    if (es_resolve(spec, "deploy", NULL, d->path, sizeof d->path, e)) {
        es_err inner = *e;
        return es_fail(e, "--deploy %s", inner.msg);
    }
    if (es_cfg_load(&d->cfg, d->path, e)) return -1;
    for (int i = 0; i < n_sets; i++) {
        char key[256];
        const char *s = sets[i], *eq = strchr(s, '=');
        if (!strncmp(s, "deploy.", 7)) s += 7;
        if (!eq || eq <= s || (size_t)(eq - s) >= sizeof key) {
            es_deploy_free(d);
            return es_fail(e, "--set %s: expected deploy.KEY=VALUE", sets[i]);
        }
        memcpy(key, s, (size_t)(eq - s));
        key[eq - s] = 0;
        if (es_cfg_set(&d->cfg, key, eq + 1, e)) { /* named as given: deploy.KEY */
            es_err in = *e;
            const char *why = strrchr(in.msg, ':');
            es_fail(e, "%s: --set deploy.%s%s", d->path, key, why ? why : ": cannot be set");
            es_deploy_free(d);
            return -1;
        }
    }
    if (read_deploy(d, e)) {
        es_deploy_free(d);
        return -1;
    }
    return 0;
}

void es_deploy_free(es_deploy *d) { es_cfg_free(&d->cfg); }

const char *es_yield_name(int model)
{
    return model == ES_YIELD_POISSON ? "poisson" : model == ES_YIELD_MURPHY ? "murphy"
         : model == ES_YIELD_NEG_BINOMIAL ? "negative_binomial" : "none";
}

double es_dies_per_wafer(double wafer_mm, double edge_mm, double die_mm2)
{
    double d = wafer_mm - 2 * edge_mm;
    if (d <= 0 || die_mm2 <= 0) return 0;
    double n = M_PI * (d / 2) * (d / 2) / die_mm2 - M_PI * d / sqrt(2 * die_mm2);
    return n > 0 ? floor(n) : 0;
}

double es_die_yield(int model, double die_mm2, double d0_cm2, double alpha)
{
    double ad = die_mm2 / 100.0 * d0_cm2; /* expected defects per die */
    switch (model) {
    case ES_YIELD_POISSON: return exp(-ad);
    case ES_YIELD_MURPHY: return ad > 0 ? pow((1 - exp(-ad)) / ad, 2) : 1; /* its limit at no defects */
    case ES_YIELD_NEG_BINOMIAL: return pow(1 + ad / alpha, -alpha);
    default: return 0;
    }
}

void es_cost_add(es_cost *sum, const es_cost *x)
{
    sum->card_given = sum->card_given && x->card_given;
    sum->die_mm2 += x->die_mm2;
    sum->die_usd += x->die_usd;
    sum->hbm_gb += x->hbm_gb;
    sum->hbm_usd += x->hbm_usd;
    sum->card_usd += x->card_usd;
    sum->system_usd += x->system_usd;
    sum->host_w += x->host_w;
    sum->capex_usd_per_s += x->capex_usd_per_s;
    sum->energy_usd_per_s += x->energy_usd_per_s;
    sum->capex_usd_per_m_tokens += x->capex_usd_per_m_tokens;
    sum->energy_usd_per_m_tokens += x->energy_usd_per_m_tokens;
    sum->usd_per_m_tokens += x->usd_per_m_tokens;
}

int es_cost_compute(const es_chip *c, const es_deploy *d, double die_mm2, double watts, double tokens_per_s,
                    double joules_per_token, es_cost *o, es_err *e)
{
    const es_cost_cfg *k = &c->cost;
    memset(o, 0, sizeof *o);
    if (!k->have_card)
        return es_fail(e, "%s: no cost section (cost.card_usd, or cost.package_test_usd and cost.board_usd, with "
                          "cost.host_usd_per_card and cost.host_w_per_card): its cost is not known", c->path);
    if (!k->card_given && !k->have_wafer)
        return es_fail(e, "%s: no cost section (cost.wafer_usd, ...): the die's cost is not known (or give the "
                          "card's price, cost.card_usd, in %s)", c->proc.path, c->path);
    if (!(tokens_per_s > 0)) return es_fail(e, "%s: the run made no tokens: no cost per token", c->path);
    if (!k->card_given && c->store.kind == ES_STORE_HBM && !k->hbm_given)
        return es_fail(e, "%s: key 'cost.hbm_usd_per_gb' is missing: the weights' HBM stacks are off the die, so a card "
                          "priced from its die needs their price per GB (or give the card's price, cost.card_usd)",
                       c->path);
    o->card_given = k->card_given;
    if (k->card_given) {
        o->card_usd = k->card_usd;
    } else {
        o->die_mm2 = die_mm2;
        o->dies_per_wafer = es_dies_per_wafer(k->wafer_mm, k->edge_mm, die_mm2);
        o->yield = es_die_yield(k->yield_model, die_mm2, k->d0_cm2, k->alpha);
        if (o->dies_per_wafer < 1 || !(o->yield > 0))
            return es_fail(e, "%s: a die of %.1f mm2 %s on a %.0f mm wafer with %.1f mm edge exclusion (keys "
                              "cost.wafer_diameter_mm, cost.edge_exclusion_mm)", c->proc.path, die_mm2,
                           o->dies_per_wafer < 1 ? "does not fit" : "never yields", k->wafer_mm, k->edge_mm);
        o->die_usd = k->wafer_usd / (o->dies_per_wafer * o->yield);
        if (c->store.kind == ES_STORE_HBM) { /* the stacks, off the die (their price is given: checked above) */
            o->hbm_gb = (double)c->store.capacity_bytes / 1e9;
            o->hbm_usd = k->hbm_usd_per_gb * o->hbm_gb;
        }
        o->card_usd = o->die_usd + k->package_test_usd + k->board_usd + o->hbm_usd;
    }
    o->system_usd = o->card_usd + k->host_usd;
    o->watts = watts;
    o->host_w = k->host_w;
    o->tokens_per_s = tokens_per_s;
    o->joules_per_token = joules_per_token;
    const double year_s = 365.25 * 86400; /* a Julian year */
    o->capex_usd_per_s = o->system_usd / (d->lifetime_years * year_s * d->utilization);
    o->energy_usd_per_s = (watts + k->host_w) * d->pue * d->usd_per_kwh / 3.6e6;
    o->capex_usd_per_m_tokens = o->capex_usd_per_s / tokens_per_s * 1e6;
    o->energy_usd_per_m_tokens = o->energy_usd_per_s / tokens_per_s * 1e6;
    o->usd_per_m_tokens = (o->capex_usd_per_s + o->energy_usd_per_s) / tokens_per_s * 1e6;
    return 0;
}
