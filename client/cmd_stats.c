/*
 * cmd_stats.c -- `sense stats`: the daemon's model, queues, connections and
 * collections.
 */
#include <getopt.h>
#include <string.h>

#include "client.h"

static const char stats_usage[] =
    "usage: sense stats [options]\n"
    "\n"
    "Show the daemon's model, uptime, queues and collections (documents,\n"
    "chunks, index kind).\n"
    "\n"
    "options:\n"
    "  --json             print the daemon's reply line\n"
    "  --socket PATH      the daemon's socket\n"
    "  -h, --help         this help\n"
    "\n"
    "exit status: 0 ok, 1 error, 2 usage, 3 cannot connect to the daemon\n";

static long long int_of(json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

static const char *str_of(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "?";
}

int sn_cmd_stats(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},
        {"socket", required_argument, NULL, 's'},
        {"collection", required_argument, NULL, 'c'}, /* accepted, unused */
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *raw = NULL;
    json_t *req = NULL, *reply = NULL;
    sn_cli_conn_t *conn = NULL;
    int json = 0, c, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 's': sn_cli_socket_opt = optarg; break;
        case 'c': break;
        case 'h': fputs(stats_usage, stdout); return SN_EXIT_OK;
        default: fputs(stats_usage, stderr); return SN_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        sn_cli_error("stats: unexpected argument '%s'", argv[optind]);
        return SN_EXIT_USAGE;
    }
    if ((rc = sn_cli_connect(&conn)))
        return rc;
    req = json_object();
    json_object_set_new(req, "op", json_string(sn_op_name(SN_OP_STATS)));
    rc = sn_cli_call(conn, req, &reply, &raw, 0);
    if (json && raw)
        printf("%s\n", raw);
    if (rc || json)
        goto out;
    json_t *q = json_object_get(reply, "queue");
    printf("model        %s (dim %lld, max %lld tokens)\n",
           str_of(reply, "model"), int_of(reply, "dim"),
           int_of(reply, "max_tokens"));
    printf("uptime       %.1f s\n",
           json_number_value(json_object_get(reply, "uptime")));
    printf("queue        %lld to embed, %lld for storage\n",
           int_of(q, "embed"), int_of(q, "storage"));
    printf("workers      %lld\n", int_of(reply, "workers"));
    printf("connections  %lld\n", int_of(reply, "connections"));
    printf("requests     %lld\n", int_of(reply, "requests"));
    json_t *cols = json_object_get(reply, "collections"), *col;
    size_t i;
    printf("collections  %zu\n", json_array_size(cols));
    json_array_foreach(cols, i, col) {
        printf("  %-20s %8lld docs %9lld chunks  %-5s %s\n",
               str_of(col, "name"), int_of(col, "docs"),
               int_of(col, "chunks"), str_of(col, "index"),
               str_of(col, "model"));
    }
out:
    json_decref(req);
    json_decref(reply);
    sn_cli_close(conn);
    return rc;
}
