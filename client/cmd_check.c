/*
 * cmd_check.c -- `sense check [--repair]`: the daemon reads every stored
 * vector back and lists the damaged ones (not finite, not of unit length,
 * the wrong size: bit rot the database's own checks cannot see); such a
 * vector is already left out of the search index. With --repair each
 * document that has one is added again, same id, text and meta: the daemon
 * chunks and embeds its stored text anew, replacing the damaged chunks.
 */
#include <getopt.h>
#include <string.h>

#include "client.h"

static const char check_usage[] =
    "usage: sense check [options]\n"
    "\n"
    "Read every stored vector back and list the damaged ones (left out of\n"
    "the search index until repaired).\n"
    "\n"
    "options:\n"
    "  --collection NAME  only this collection (default: all of them)\n"
    "  --repair           embed the documents with damaged vectors again,\n"
    "                     from their stored text\n"
    "  --json             print the daemon's reply line\n"
    "  --socket PATH      the daemon's socket\n"
    "  -h, --help         this help\n"
    "\n"
    "exit status: 0 nothing damaged (or all repaired), 1 damaged vectors\n"
    "left or an error, 2 usage, 3 cannot connect to the daemon\n";

/* Add document `id` of `coll` again from what get returns. 0 or an exit
 * status (the error printed). */
static int repair_doc(sn_cli_conn_t *conn, const char *coll, const char *id)
{
    json_t *req = json_pack("{s:s, s:s, s:[s]}", "op", "get", "collection",
                            coll, "ids", id);
    json_t *reply = NULL, *add = NULL, *added = NULL;
    int rc = sn_cli_call(conn, req, &reply, NULL, 0);
    if (rc)
        goto out;
    json_t *d = json_array_get(json_object_get(reply, "docs"), 0);
    if (!d) {
        sn_cli_error("'%s' in '%s': gone since the check", id, coll);
        goto out;
    }
    add = json_pack("{s:s, s:s, s:[{s:s, s:O, s:O}]}", "op", "add",
                    "collection", coll, "docs", "id", id, "text",
                    json_object_get(d, "text"), "meta",
                    json_object_get(d, "meta"));
    if (!add) {
        sn_cli_error("out of memory");
        rc = SN_EXIT_ERROR;
        goto out;
    }
    if ((rc = sn_cli_call(conn, add, &added, NULL, 0)) == 0)
        printf("repaired %s / %s\n", coll, id);
out:
    json_decref(req);
    json_decref(reply);
    json_decref(add);
    json_decref(added);
    return rc;
}

int sn_cmd_check(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"collection", required_argument, NULL, 'c'},
        {"repair", no_argument, NULL, 'r'},
        {"json", no_argument, NULL, 'j'},
        {"socket", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *coll = NULL, *raw = NULL;
    json_t *req = NULL, *reply = NULL;
    sn_cli_conn_t *conn = NULL;
    int json = 0, repair = 0, c, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': coll = optarg; break;
        case 'r': repair = 1; break;
        case 'j': json = 1; break;
        case 's': sn_cli_socket_opt = optarg; break;
        case 'h': fputs(check_usage, stdout); return SN_EXIT_OK;
        default: fputs(check_usage, stderr); return SN_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        sn_cli_error("check: unexpected argument '%s'", argv[optind]);
        return SN_EXIT_USAGE;
    }
    if ((rc = sn_cli_connect(&conn)))
        return rc;
    req = json_pack("{s:s, s:i}", "op", "check", "limit", SN_MAX_CHECK);
    if (coll)
        json_object_set_new(req, "collection", json_string(coll));
    if ((rc = sn_cli_call(conn, req, &reply, &raw, 0)))
        goto out;
    if (json)
        printf("%s\n", raw);
    long long n_checked = json_integer_value(json_object_get(reply,
                                                             "checked"));
    long long n_bad = json_integer_value(json_object_get(reply, "damaged"));
    json_t *chunks = json_object_get(reply, "chunks"), *ch;
    size_t i;
    if (!json) {
        json_array_foreach(chunks, i, ch)
            printf("damaged: %s / %s chunk %lld: %s\n",
                   json_string_value(json_object_get(ch, "collection")),
                   json_string_value(json_object_get(ch, "id")),
                   (long long)json_integer_value(json_object_get(ch, "chunk")),
                   json_string_value(json_object_get(ch, "problem")));
        printf("%lld vectors checked, %lld damaged\n", n_checked, n_bad);
    }
    if (!n_bad)
        goto out;
    if (!repair) {
        if (!json)
            printf("run 'sense check --repair' to embed them again\n");
        rc = SN_EXIT_ERROR;
        goto out;
    }
    if ((size_t)n_bad > json_array_size(chunks))
        sn_cli_error("only the first %zu damaged chunks were listed; run "
                     "'sense check --repair' again after this",
                     json_array_size(chunks));
    /* each document once (its chunks are listed together, in id order) */
    const char *last_coll = NULL, *last_id = NULL;
    json_array_foreach(chunks, i, ch) {
        const char *cl = json_string_value(json_object_get(ch, "collection"));
        const char *id = json_string_value(json_object_get(ch, "id"));
        if (!cl || !id)
            continue;
        if (last_id && !strcmp(cl, last_coll) && !strcmp(id, last_id))
            continue;
        last_coll = cl;
        last_id = id;
        int r = repair_doc(conn, cl, id);
        if (r)
            rc = r;
    }
out:
    json_decref(req);
    json_decref(reply);
    sn_cli_close(conn);
    return rc;
}
