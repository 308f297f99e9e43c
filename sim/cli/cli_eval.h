// cli_eval: `etchsim eval`, rule evaluation over a dataset as one batch.
#ifndef CLI_EVAL_H
#define CLI_EVAL_H
namespace es {
int cmd_eval(int argc, char **argv);
int cmd_dataset(int argc, char **argv);
}
#endif
