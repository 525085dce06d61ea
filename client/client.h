/*
 * client.h -- shared by the files of the `sense` command-line program.
 *
 * sense.c parses the global options and dispatches to one file per command
 * (cmd_embed.c, cmd_tokenize.c, cmd_add.c, cmd_search.c, cmd_get.c, cmd_delete.c,
 * cmd_stats.c, cmd_which.c, and cmd_senses.c with its subcommands, of which
 * import-wordnet is cmd_wordnet.c); conn.c is the daemon's socket, spoken
 * as newline-delimited JSON (docs/protocol.md).
 *
 * Exit codes, for every command: 0 ok, 1 error (an error reply, a model that
 * fails to load, bad input text), 2 usage, 3 cannot connect to the daemon.
 */
#ifndef SENSE_CLIENT_H
#define SENSE_CLIENT_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "sense/protocol.h" /* op names, limits */
#include "sense/sense.h" /* sn_utf8_valid, error codes */

enum { SN_EXIT_OK = 0, SN_EXIT_ERROR = 1, SN_EXIT_USAGE = 2,
       SN_EXIT_CONNECT = 3 };

#define SN_MAX_LINE SN_MAX_LINE_DEFAULT /* an input line: what sensed takes */
#define SN_CLI_MAX_REPLY (1u << 30) /* a reply line: 1 GiB at most */

/* The commands: argv[0] is the command's name. */
int sn_cmd_embed(int argc, char **argv);
int sn_cmd_add(int argc, char **argv);
int sn_cmd_search(int argc, char **argv);
int sn_cmd_get(int argc, char **argv);
int sn_cmd_delete(int argc, char **argv);
int sn_cmd_stats(int argc, char **argv);
int sn_cmd_which(int argc, char **argv);
int sn_cmd_senses(int argc, char **argv);
int sn_cmd_pull(int argc, char **argv);
int sn_cmd_tokenize(int argc, char **argv);
/* `sense check [--collection NAME] [--repair]`. */
int sn_cmd_check(int argc, char **argv);
/* `sense senses import-wordnet`: argv[0] is the subcommand's name. */
int sn_cmd_import_wordnet(int argc, char **argv);

/* Print "sense: <msg>\n" to stderr. */
void sn_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* An integer option's value: arg in [min, max] into *out and 0, else
 * "sense: OPT: 'ARG' is not in MIN..MAX" and -1. */
int sn_cli_int_arg(const char *opt, const char *arg, long min, long max,
                   int *out);

/* ---- conn.c: talking to sensed ----------------------------------------------- */

/* --socket PATH, when given (before or after the command); NULL otherwise. */
extern const char *sn_cli_socket_opt;

/* The socket path: --socket, else $SENSE_SOCKET, else
 * $XDG_RUNTIME_DIR/sense.sock, else /tmp/sense-$UID/sense.sock (as sensed
 * resolves it). */
void sn_cli_socket_path(char *buf, size_t len);

typedef struct sn_cli_conn sn_cli_conn_t;

/* Connect. On failure prints "sense: cannot connect to 'PATH': REASON" and
 * a hint to start the daemon, and returns SN_EXIT_CONNECT. */
int sn_cli_connect(sn_cli_conn_t **out);
void sn_cli_close(sn_cli_conn_t *c); /* NULL is a no-op */

/* Send `req` (given an "id" here) and read its reply. On success *reply is
 * the parsed reply (the caller decrefs it) and, if raw is non-NULL, *raw
 * its line without the newline (valid until the next call). Returns 0 when
 * the reply says ok, SN_EXIT_ERROR after printing "sense: MESSAGE (CODE)"
 * for an error reply (unless quiet) or a broken connection. */
int sn_cli_call(sn_cli_conn_t *c, json_t *req, json_t **reply,
                const char **raw, int quiet);
/* sn_cli_call in two halves, for requests pipelined on one connection:
 * the daemon answers them in order, so the n-th sn_cli_recv reads the
 * reply to the n-th sn_cli_send. */
int sn_cli_send(sn_cli_conn_t *c, json_t *req);
int sn_cli_recv(sn_cli_conn_t *c, json_t **reply, const char **raw,
                int quiet);

/* `sense get|delete [--collection NAME] [--json] [--socket PATH] ID...`:
 * parse those options, send {"op": op, "collection", "ids"} and wait for
 * the reply; with --json print its raw line. Returns the exit status, with
 * out->reply (owned by the caller, NULL on failure) for the command to
 * print. */
typedef struct {
    const char *collection;
    int json;
    char **ids; /* into argv */
    int n_ids;
    json_t *reply;
} sn_cli_ids_t;

int sn_cli_ids_call(int argc, char **argv, sn_op_t op,
                    const char *usage, sn_cli_ids_t *out);

/* Print a reply's error as "sense: MESSAGE (CODE)". */
void sn_cli_print_error(json_t *reply);

#endif
