/* cli_rom: the `etchsim rom` command (build, inspect, verify) and the
 * `--rom` option of `run`. Part of the command line: prints and returns
 * exit codes (0 ok, 1 bad input or a failed check, 2 usage). */
#ifndef CLI_ROM_H
#define CLI_ROM_H
#include "es_chip.h"
#include "es_err.h"
#include "es_model.h"
#ifdef __cplusplus
extern "C" {
#endif

int es_cli_rom(int argc, char **argv);
/* Load a ROM image for `run --rom`: check it was built for this model and
 * this chip's ROM geometry, then make the model's tensors and the chip's
 * area use the image's bit counts and formats. */
int es_apply_rom(const char *path, es_chip *c, es_model *m, es_err *e);

#ifdef __cplusplus
}
#endif
#endif
