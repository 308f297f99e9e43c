/* cli_rom: the `etchsim rom` command (build, inspect, verify). Part of the
 * command line: prints and returns exit codes (0 ok, 1 bad input or a failed
 * check, 2 usage). `run --rom` loads an image with es_apply_rom (weights/es_rom.h). */
#ifndef CLI_ROM_H
#define CLI_ROM_H
#include "es_chip.h"
#include "es_err.h"
#include "es_model.h"
#ifdef __cplusplus
extern "C" {
#endif

int es_cli_rom(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
