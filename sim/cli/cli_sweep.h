/* cli_sweep: the `etchsim sweep` command. Part of the command line: prints
 * and returns exit codes (0 every point done, 1 some failed, 2 usage or a bad
 * grid). */
#ifndef CLI_SWEEP_H
#define CLI_SWEEP_H
#ifdef __cplusplus
extern "C" {
#endif

int es_cli_sweep(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
