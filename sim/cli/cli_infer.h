/* cli_infer: the `etchsim infer` command: the FP32 reference forward pass
 * (sim/func/es_ref.h) on a model's real weights, with no chip. Part of the
 * command line: prints and returns exit codes (0 ok, 1 bad input, 2 usage). */
#ifndef CLI_INFER_H
#define CLI_INFER_H
#ifdef __cplusplus
extern "C" {
#endif

int es_cli_infer(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
