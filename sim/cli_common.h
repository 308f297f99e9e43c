// cli_common: pieces the commands share: loading a model and a chip (with
// --set overrides, an optional ROM image and the fit check), and the JSON
// of an area breakdown.
#ifndef CLI_COMMON_H
#define CLI_COMMON_H
#include <string>
#include <vector>
#include <cjson/cJSON.h>
#include "es_area.h"
#include "es_chip.h"
#include "es_model.h"

namespace es {

struct Loaded {
    es_model m{};
    es_chip c{};
    bool have_m = false, have_c = false;
    Loaded() = default;
    Loaded(const Loaded &) = delete;
    Loaded &operator=(const Loaded &) = delete;
    ~Loaded();
};

int load(const std::string &model, const std::string &chip, const std::vector<std::string> &sets,
         const std::string &rom, Loaded &L, es_err *e);
cJSON *area_json(const es_area &a);

} // namespace es
#endif
