/* cli_budget: the `etchsim budget check` command. Part of the command line:
 * prints and returns exit codes (0 within budget, 1 a budget violated, 2 the
 * check could not be made). */
#ifndef CLI_BUDGET_H
#define CLI_BUDGET_H
#ifdef __cplusplus
extern "C" {
#endif

int es_cli_budget(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
