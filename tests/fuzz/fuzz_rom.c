/* fuzz_rom: the ROM image reader on arbitrary bytes: open (header and
 * index checks), verify every bank, read back every tensor. */
#include "fuzz_common.h"
#include "es_rom.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = fuzz_path(".rom");
    if (fuzz_write(p, data, size)) return 0;
    es_rom_image img;
    es_err e;
    if (es_rom_open(&img, p, &e) == 0) {
        es_rom_verify(&img, &e);
        for (int i = 0; i < img.n_tensors; i++) {
            if (img.tensors[i].bytes > (1 << 24)) continue;
            void *buf = malloc((size_t)img.tensors[i].bytes + 1);
            if (buf) es_rom_tensor_bytes(&img, i, buf, &e);
            free(buf);
        }
        es_rom_close(&img);
    }
    return 0;
}
