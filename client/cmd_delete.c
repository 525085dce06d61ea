/*
 * cmd_delete.c -- `sense delete ID...`: remove documents (their chunks and
 * vectors too). Deleting an id that is not there is not an error: the
 * summary says how many existed.
 */
#include <getopt.h>
#include <string.h>

#include "client.h"

static const char delete_usage[] =
    "usage: sense delete [options] ID...\n"
    "\n"
    "Delete documents by id. Ids that do not exist are ignored; the summary\n"
    "counts the documents deleted.\n"
    "\n"
    "options:\n"
    "  --collection NAME  the collection (default 'default')\n"
    "  --json             print the daemon's reply line\n"
    "  --socket PATH      the daemon's socket\n"
    "  -h, --help         this help\n"
    "\n"
    "exit status: 0 ok, 1 error, 2 usage, 3 cannot connect to the daemon\n";

int sn_cmd_delete(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"collection", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},
        {"socket", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *collection = "default", *raw = NULL;
    json_t *req = NULL, *reply = NULL, *ids = NULL;
    sn_cli_conn_t *conn = NULL;
    int json = 0, c, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': collection = optarg; break;
        case 'j': json = 1; break;
        case 's': sn_cli_socket_opt = optarg; break;
        case 'h': fputs(delete_usage, stdout); return SN_EXIT_OK;
        default: fputs(delete_usage, stderr); return SN_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        sn_cli_error("delete: which ids?");
        fputs(delete_usage, stderr);
        return SN_EXIT_USAGE;
    }
    ids = json_array();
    for (int i = optind; i < argc; i++) {
        json_t *s = json_string(argv[i]);
        if (!s) {
            sn_cli_error("delete: id '%s' is not utf-8", argv[i]);
            json_decref(ids);
            return SN_EXIT_USAGE;
        }
        json_array_append_new(ids, s);
    }
    if ((rc = sn_cli_connect(&conn)))
        goto out;
    req = json_object();
    json_object_set_new(req, "op", json_string("delete"));
    json_object_set_new(req, "collection", json_string(collection));
    json_object_set(req, "ids", ids);
    rc = sn_cli_call(conn, req, &reply, &raw, 0);
    if (json && raw)
        printf("%s\n", raw);
    if (!rc && !json) {
        long long n = json_integer_value(json_object_get(reply, "deleted"));
        printf("deleted %lld of %d document%s from '%s'\n", n, argc - optind,
               argc - optind == 1 ? "" : "s", collection);
    }
out:
    json_decref(ids);
    json_decref(req);
    json_decref(reply);
    sn_cli_close(conn);
    return rc;
}
