/* fuzz_dataset: the CSV and JSONL record readers on arbitrary bytes; the
 * first byte picks the format. Every record must come back OK, BAD with a
 * reason, or end the file; nothing may crash or leak. */
#include "fuzz_common.h"
#include "es_dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const char *p = fuzz_path((data[0] & 1) ? ".jsonl" : ".csv");
    if (fuzz_write(p, data + 1, size - 1)) return 0;
    es_dataset *d;
    es_err e;
    if (es_dataset_open(&d, p, &e)) return 0;
    es_record rec;
    char reason[160];
    for (int i = 0; i < 100000; i++) {
        int rc = es_dataset_next(d, &rec, reason, sizeof reason, &e);
        if (rc == ES_REC_EOF || rc == ES_REC_ERR) break;
        if (rc == ES_REC_OK)
            for (int k = 0; k < rec.n_fields; k++)
                if (!rec.names[k] || !rec.values[k]) abort();
        if (rc == ES_REC_BAD && !reason[0]) abort();
    }
    es_dataset_close(d);
    return 0;
}
