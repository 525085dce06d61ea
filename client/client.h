/*
 * client.h -- shared by the files of the `sense` command-line program.
 *
 * Exit codes, for every command: 0 ok, 1 error (an error reply, a model that
 * fails to load, bad input text), 2 usage, 3 cannot connect to the daemon.
 */
#ifndef SENSE_CLIENT_H
#define SENSE_CLIENT_H

#include <stdio.h>

enum { SN_EXIT_OK = 0, SN_EXIT_ERROR = 1, SN_EXIT_USAGE = 2,
       SN_EXIT_CONNECT = 3 };

#define SN_MAX_LINE (16u << 20) /* an input line: 16 MiB at most */

/* `sense embed ...`: argv[0] is "embed". */
int sn_cmd_embed(int argc, char **argv);

/* Print "sense: <msg>\n" to stderr. */
void sn_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
