/* cli_db: the `etchsim db check` command. Part of the command line: prints and
 * returns exit codes (0 the database is whole and every run finished, 1 not, 2
 * the check could not be made). */
#ifndef CLI_DB_H
#define CLI_DB_H
#ifdef __cplusplus
extern "C" {
#endif

int es_cli_db(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
