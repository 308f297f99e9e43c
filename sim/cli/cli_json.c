/* cli_json: JSON pieces the commands share (see cli_json.h). */
#include "cli_json.h"

cJSON *es_ids_json(const int32_t *ids, int64_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (int64_t i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
    return a;
}
