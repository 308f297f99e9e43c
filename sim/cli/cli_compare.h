/* cli_compare: the `etchsim compare` command. Part of the command line:
 * prints and returns exit codes (0 ok, 1 a failed run, 2 usage). */
#ifndef CLI_COMPARE_H
#define CLI_COMPARE_H
#ifdef __cplusplus
extern "C" {
#endif

int es_cli_compare(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
