/*
 * cmd_get.c -- `sense get ID...`: documents by id, with their text and meta.
 * An id the collection does not hold is named on stderr and makes the exit
 * status 1; the others are still printed.
 */
#include <stdlib.h>
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
    sn_cli_ids_t r;
    int rc = sn_cli_ids_call(argc, argv, SN_OP_GET, get_usage, &r);
    if (rc || !r.reply)
        goto out;
    json_t *docs = json_object_get(r.reply, "docs"), *d;
    size_t i;
    if (!r.json) {
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
    for (int a = 0; a < r.n_ids; a++) {
        int found = 0;
        json_array_foreach(docs, i, d) {
            const char *id = json_string_value(json_object_get(d, "id"));
            if (id && !strcmp(id, r.ids[a]))
                found = 1;
        }
        if (!found) {
            sn_cli_error("'%s': not found in '%s'", r.ids[a], r.collection);
            rc = SN_EXIT_ERROR;
        }
    }
out:
    json_decref(r.reply);
    return rc;
}
