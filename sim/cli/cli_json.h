/* cli_json: JSON pieces the commands (C and C++) share. */
#ifndef CLI_JSON_H
#define CLI_JSON_H
#include <stdint.h>
#include <cjson/cJSON.h>
#ifdef __cplusplus
extern "C" {
#endif

/* Token ids ids[0..n) as a JSON array of numbers (the caller owns it). */
cJSON *es_ids_json(const int32_t *ids, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
