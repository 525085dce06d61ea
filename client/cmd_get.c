/*
 * cmd_get.c -- `sense get ID...`: documents by id, with their text and meta.
 * An id the collection does not hold is named on stderr and makes the exit
 * status 1; the others are still printed.
 */
#include <getopt.h>
#include <string.h>

#include "client.h"

static const char get_usage[] =
    "usage: sense get [options] ID...\n"
    "\n"
    "Print documents by id: a header line (id, chunks, meta), then the text.\n"
    "\n"
    "options:\n"
    "  --collection NAME  the collection (default 'default')\n"
    "  --json             print the daemon's reply line\n"
    "  --socket PATH      the daemon's socket\n"
    "  -h, --help         this help\n"
    "\n"
    "exit status: 0 ok, 1 error (or an id not found), 2 usage, 3 cannot\n"
    "connect to the daemon\n";

int sn_cmd_get(int argc, char **argv)
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
        case 'h': fputs(get_usage, stdout); return SN_EXIT_OK;
        default: fputs(get_usage, stderr); return SN_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        sn_cli_error("get: which ids?");
        fputs(get_usage, stderr);
        return SN_EXIT_USAGE;
    }
    ids = json_array();
    for (int i = optind; i < argc; i++) {
        json_t *s = json_string(argv[i]);
        if (!s) {
            sn_cli_error("get: id '%s' is not utf-8", argv[i]);
            json_decref(ids);
            return SN_EXIT_USAGE;
        }
        json_array_append_new(ids, s);
    }
    if ((rc = sn_cli_connect(&conn)))
        goto out;
    req = json_object();
    json_object_set_new(req, "op", json_string("get"));
    json_object_set_new(req, "collection", json_string(collection));
    json_object_set(req, "ids", ids);
    rc = sn_cli_call(conn, req, &reply, &raw, 0);
    if (json && raw)
        printf("%s\n", raw);
    if (rc)
        goto out;
    json_t *docs = json_object_get(reply, "docs"), *d;
    size_t i;
    if (!json) {
        json_array_foreach(docs, i, d) {
            const char *id = json_string_value(json_object_get(d, "id"));
            const char *text = json_string_value(json_object_get(d, "text"));
            char *meta = json_dumps(json_object_get(d, "meta"), JSON_COMPACT);
            printf("== %s (%lld chunk%s) %s\n%s\n", id ? id : "?",
                   (long long)json_integer_value(json_object_get(d, "chunks")),
                   json_integer_value(json_object_get(d, "chunks")) == 1
                       ? ""
                       : "s",
                   meta ? meta : "{}", text ? text : "");
            free(meta);
        }
    }
    /* name the ids that did not come back */
    for (int a = optind; a < argc; a++) {
        int found = 0;
        json_array_foreach(docs, i, d) {
            const char *id = json_string_value(json_object_get(d, "id"));
            if (id && !strcmp(id, argv[a]))
                found = 1;
        }
        if (!found) {
            sn_cli_error("'%s': not found in '%s'", argv[a], collection);
            rc = SN_EXIT_ERROR;
        }
    }
out:
    json_decref(ids);
    json_decref(req);
    json_decref(reply);
    sn_cli_close(conn);
    return rc;
}
