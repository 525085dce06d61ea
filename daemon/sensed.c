/*
 * sensed.c -- main() of the sense daemon.
 *
 * This build parses the daemon's options and loads and checks the model, so
 * a model folder can be validated ahead of time (`sensed --model PATH
 * --check`). The socket server, the store and the scheduler are not in this
 * build yet: without --check it says so and exits 1 rather than pretending
 * to serve.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "sense/sense.h"

static const char usage[] =
    "usage: sensed [--model PATH|default] [--check] [--help] [--version]\n"
    "\n"
    "  --model PATH   model folder, or 'default' (the default model)\n"
    "  --check        load and validate the model, print a summary, exit\n";

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"check", no_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'v'},
        {NULL, 0, NULL, 0},
    };
    const char *model_path = "default";
    int check = 0, c;
    char err[512];

    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'c': check = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        case 'v': printf("sensed %s\n", SN_VERSION); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    sn_model_t *model = NULL;
    if (sn_model_load(model_path, &model, err, sizeof err)) {
        fprintf(stderr, "sensed: cannot load model: %s\n", err);
        return 1;
    }
    fprintf(stderr, "sensed: model %s: dim %d, max %d tokens\n",
            sn_model_name(model), sn_model_dim(model),
            sn_model_max_tokens(model));
    sn_model_free(model);
    if (check)
        return 0;
    fprintf(stderr, "sensed: the socket server is not in this build yet\n");
    return 1;
}
