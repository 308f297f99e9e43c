/* cli_chip: the `etchsim chip` command (derive). Part of the command line:
 * prints and returns exit codes (0 ok, 1 bad input, 2 usage). */
#ifndef CLI_CHIP_H
#define CLI_CHIP_H
#ifdef __cplusplus
extern "C" {
#endif

int es_cli_chip(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
