/*
 * sense.c -- main() of the `sense` command-line program: global options and
 * dispatch to the commands, one file each.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "client.h"
#include "sense/sense.h"

static const char usage[] =
    "usage: sense [--socket PATH] [--version] [--help] <command> [<args>]\n"
    "\n"
    "commands:\n"
    "  embed     encode texts: in-process with --model PATH|NAME, else by\n"
    "            the daemon\n"
    "  tokenize  a model's tokenizer alone: ids, tokens and offsets\n"
    "  add       add text files or JSON-lines documents to a collection\n"
    "  search    the chunks nearest in meaning to a query\n"
    "  get       documents by id\n"
    "  delete    remove documents by id\n"
    "  stats     the daemon's model, queues and collections\n"
    "  which     which sense of a word a text means\n"
    "  senses    the sense inventory: add, list, rm, import-wordnet\n"
    "  check     read every stored vector back; --repair embeds the\n"
    "            damaged ones again from their text\n"
    "  pull      download a model from the Hugging Face hub by its id\n"
    "            (org/name); then --model org/name loads it\n"
    "\n"
    "options:\n"
    "  --socket PATH   the daemon's socket (default $SENSE_SOCKET, else\n"
    "                  $XDG_RUNTIME_DIR/sense.sock, else\n"
    "                  /tmp/sense-$UID/sense.sock); start the daemon with\n"
    "                  `sensed`\n"
    "\n"
    "Each command takes --help. The commands that talk to the daemon take\n"
    "--json (print the daemon's raw reply lines); those on documents take\n"
    "--collection NAME (default 'default').\n"
    "\n"
    "exit status: 0 ok, 1 error, 2 usage, 3 cannot connect to the daemon\n";

void sn_cli_error(const char *fmt, ...)
{
    va_list ap;
    fputs("sense: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int sn_cli_int_arg(const char *opt, const char *arg, long min, long max,
                   int *out)
{
    char *end;
    long v = strtol(arg, &end, 10);
    if (end == arg || *end || v < min || v > max) {
        sn_cli_error("%s: '%s' is not in %ld..%ld", opt, arg, min, max);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {
        {"embed", sn_cmd_embed}, {"add", sn_cmd_add},
        {"search", sn_cmd_search}, {"get", sn_cmd_get},
        {"delete", sn_cmd_delete}, {"stats", sn_cmd_stats},
        {"which", sn_cmd_which}, {"senses", sn_cmd_senses},
        {"pull", sn_cmd_pull}, {"tokenize", sn_cmd_tokenize},
        {"check", sn_cmd_check},
    };
    int i = 1;

    /* global options, before the command */
    while (i < argc && argv[i][0] == '-') {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return SN_EXIT_OK;
        }
        if (!strcmp(a, "--version")) {
            printf("sense %s\n", SN_VERSION);
            return SN_EXIT_OK;
        }
        if (!strcmp(a, "--socket")) {
            if (i + 1 >= argc) {
                sn_cli_error("--socket needs a path");
                return SN_EXIT_USAGE;
            }
            sn_cli_socket_opt = argv[i + 1];
            i += 2;
            continue;
        }
        if (!strncmp(a, "--socket=", 9)) {
            sn_cli_socket_opt = a + 9;
            i++;
            continue;
        }
        sn_cli_error("unknown option '%s'; see 'sense --help'", a);
        return SN_EXIT_USAGE;
    }
    if (i >= argc) {
        fputs(usage, stderr);
        return SN_EXIT_USAGE;
    }
    const char *cmd = argv[i];
    if (!strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return SN_EXIT_OK;
    }
    for (size_t k = 0; k < sizeof cmds / sizeof *cmds; k++)
        if (!strcmp(cmd, cmds[k].name))
            return cmds[k].fn(argc - i, argv + i);
    sn_cli_error("'%s' is not a command; see 'sense --help'", cmd);
    return SN_EXIT_USAGE;
}
