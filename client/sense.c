/*
 * sense.c -- main() of the `sense` command-line program: global options and
 * dispatch to the commands.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "client.h"
#include "sense/sense.h"

static const char usage[] =
    "usage: sense [--version] [--help] <command> [<args>]\n"
    "\n"
    "commands:\n"
    "  embed     encode texts in-process with a model folder, no daemon\n"
    "\n"
    "'sense <command> --help' describes a command.\n";

void sn_cli_error(const char *fmt, ...)
{
    va_list ap;
    fputs("sense: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return SN_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return SN_EXIT_OK;
    }
    if (!strcmp(cmd, "--version")) {
        printf("sense %s\n", SN_VERSION);
        return SN_EXIT_OK;
    }
    if (!strcmp(cmd, "embed"))
        return sn_cmd_embed(argc - 1, argv + 1);
    sn_cli_error("'%s' is not a command; see 'sense --help'", cmd);
    return SN_EXIT_USAGE;
}
