// cli_common: see cli_common.h.
#include "cli_common.h"
#include "cli_rom.h"

namespace es {

Loaded::~Loaded()
{
    if (have_m) es_model_free(&m);
    if (have_c) es_chip_free(&c);
}

int load(const std::string &model, const std::string &chip, const std::vector<std::string> &sets,
         const std::string &rom, Loaded &L, es_err *e)
{
    if (es_model_load(&L.m, model.c_str(), e)) return -1;
    L.have_m = true;
    std::vector<const char *> sv;
    for (auto &s : sets) sv.push_back(s.c_str());
    if (es_chip_load(&L.c, chip.c_str(), sv.data(), (int)sv.size(), e)) return -1;
    L.have_c = true;
    if (!rom.empty() && es_apply_rom(rom.c_str(), &L.c, &L.m, e)) return -1;
    return es_chip_check_fit(&L.c, &L.m, e);
}

cJSON *area_json(const es_area &a)
{
    cJSON *j = cJSON_CreateObject();
    for (int i = 0; i < ES_AREA_N; i++) {
        cJSON *k = cJSON_AddObjectToObject(j, es_area_name(i));
        cJSON_AddNumberToObject(k, "mm2", a.mm2[i]);
        cJSON_AddNumberToObject(k, "transistors", a.tr[i]);
        cJSON_AddNumberToObject(k, "leakage_w", a.leak_w[i]);
    }
    return j;
}

} // namespace es
