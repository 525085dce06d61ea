/*
 * cmd_delete.c -- `sense delete ID...`: remove documents (their chunks and
 * vectors too). Deleting an id that is not there is not an error: the
 * summary says how many existed.
 */
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
    sn_cli_ids_t r;
    int rc = sn_cli_ids_call(argc, argv, SN_OP_DELETE, delete_usage, &r);
    if (!rc && r.reply && !r.json) {
        long long n = json_integer_value(json_object_get(r.reply, "deleted"));
        printf("deleted %lld of %d document%s from '%s'\n", n, r.n_ids,
               r.n_ids == 1 ? "" : "s", r.collection);
    }
    json_decref(r.reply);
    return rc;
}
