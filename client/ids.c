/*
 * ids.c -- what `sense get ID...` and `sense delete ID...` share: their
 * options (--collection, --json, --socket, --help), the request
 * {"op": OP, "collection": ..., "ids": [...]} and its round trip. Each
 * command then only says how to print the reply.
 */
#include <getopt.h>
#include <string.h>

#include "client.h"

int sn_cli_ids_call(int argc, char **argv, sn_op_t op,
                    const char *usage, sn_cli_ids_t *out)
{
    static const struct option longopts[] = {
        {"collection", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'j'},
        {"socket", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    json_t *req = NULL, *ids = NULL;
    sn_cli_conn_t *conn = NULL;
    const char *raw = NULL;
    int c, rc;

    memset(out, 0, sizeof *out);
    out->collection = "default";
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': out->collection = optarg; break;
        case 'j': out->json = 1; break;
        case 's': sn_cli_socket_opt = optarg; break;
        case 'h': fputs(usage, stdout); return SN_EXIT_OK;
        default: fputs(usage, stderr); return SN_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        sn_cli_error("%s: which ids?", sn_op_name(op));
        fputs(usage, stderr);
        return SN_EXIT_USAGE;
    }
    out->ids = argv + optind;
    out->n_ids = argc - optind;
    ids = json_array();
    for (int i = 0; i < out->n_ids; i++) {
        json_t *s = json_string(out->ids[i]);
        if (!s) {
            sn_cli_error("%s: id '%s' is not utf-8", sn_op_name(op),
                         out->ids[i]);
            json_decref(ids);
            return SN_EXIT_USAGE;
        }
        json_array_append_new(ids, s);
    }
    if ((rc = sn_cli_connect(&conn)))
        goto out;
    req = json_object();
    json_object_set_new(req, "op", json_string(sn_op_name(op)));
    json_object_set_new(req, "collection", json_string(out->collection));
    json_object_set(req, "ids", ids);
    rc = sn_cli_call(conn, req, &out->reply, &raw, 0);
    if (out->json && raw)
        printf("%s\n", raw);
out:
    json_decref(ids);
    json_decref(req);
    sn_cli_close(conn);
    return rc;
}
