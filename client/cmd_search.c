/*
 * cmd_search.c -- `sense search QUERY`: the documents that best match, by
 * words and by meaning (hybrid, the default), or by one of the two.
 *
 * The words of QUERY are joined with spaces. --filter KEY=VALUE (repeatable)
 * keeps documents whose meta has KEY equal to VALUE; VALUE is read as JSON
 * when it is a number, true, false, null or a quoted string, else taken as
 * a string.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

static const char search_usage[] =
    "usage: sense search [options] QUERY...\n"
    "\n"
    "Search a collection for the documents that best match QUERY: by its\n"
    "words (BM25 over stemmed words and character trigrams; with WordNet\n"
    "installed, the query words' synonyms count a little too) and by\n"
    "meaning (the model's vectors) together, each weighed by how much it\n"
    "knows of the query. A document is one result; its best chunk is the\n"
    "snippet.\n"
    "\n"
    "options:\n"
    "  -k N               how many results (default 10, at most 1000)\n"
    "  --mode MODE        hybrid (default), vector (meaning only) or\n"
    "                     lexical (words only; no encoding)\n"
    "  --chunks           rank chunks, not documents (a long document may\n"
    "                     take several places)\n"
    "  --ef N             search beam of an HNSW index (1..10000): higher\n"
    "                     finds more of the true nearest chunks, slower;\n"
    "                     default: grows with the collection (64 at 10k\n"
    "                     chunks and fewer, +128 for each tenfold); with\n"
    "                     a daemon run with --hnsw ivf: the lists scanned\n"
    "                     (default a fifth of them)\n"
    "  --filter KEY=VALUE only documents whose meta has KEY equal to VALUE\n"
    "                     (repeatable; VALUE is JSON if it parses as a\n"
    "                     number, true, false, null or \"string\", else a\n"
    "                     string)\n"
    "  --collection NAME  the collection (default 'default')\n"
    "  --json             print the daemon's reply line\n"
    "  --socket PATH      the daemon's socket\n"
    "  -h, --help         this help\n"
    "\n"
    "exit status: 0 ok, 1 error, 2 usage, 3 cannot connect to the daemon\n";

/* Print s on one line, newlines as spaces, at most max bytes (cut on a
 * character boundary). */
static void put_line(const char *s, size_t max)
{
    size_t len = strlen(s), show = len;
    if (show > max) {
        show = max;
        while (show > 0 && ((unsigned char)s[show] & 0xC0) == 0x80)
            show--;
    }
    for (size_t i = 0; i < show; i++)
        putchar(s[i] == '\n' || s[i] == '\r' || s[i] == '\t' ? ' ' : s[i]);
    if (show < len)
        fputs("...", stdout);
    putchar('\n');
}

int sn_cmd_search(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"collection", required_argument, NULL, 'c'},
        {"mode", required_argument, NULL, 'm'},
        {"chunks", no_argument, NULL, 'C'},
        {"ef", required_argument, NULL, 'e'},
        {"filter", required_argument, NULL, 'f'},
        {"json", no_argument, NULL, 'j'},
        {"socket", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *collection = "default", *raw = NULL, *mode = NULL;
    int chunks = 0;
    json_t *filter = json_object(), *req = NULL, *reply = NULL;
    sn_cli_conn_t *conn = NULL;
    char *query = NULL;
    int json = 0, k = 10, ef = 0, c, rc = SN_EXIT_USAGE;

    optind = 1;
    while ((c = getopt_long(argc, argv, "hk:", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': collection = optarg; break;
        case 'm':
            if (sn_search_mode_parse(optarg) < 0) {
                sn_cli_error("--mode: '%s' is not hybrid, vector or lexical",
                             optarg);
                goto out;
            }
            mode = optarg;
            break;
        case 'C': chunks = 1; break;
        case 'e':
            if (sn_cli_int_arg("--ef", optarg, 1, SN_MAX_EF, &ef))
                goto out;
            break;
        case 'k':
            if (sn_cli_int_arg("-k", optarg, 1, SN_MAX_K, &k))
                goto out;
            break;
        case 'f': {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg) {
                sn_cli_error("--filter: '%s' is not KEY=VALUE", optarg);
                goto out;
            }
            *eq = '\0';
            json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
            if (!v || json_is_object(v) || json_is_array(v)) {
                json_decref(v);
                v = json_string(eq + 1);
            }
            if (!v) {
                sn_cli_error("--filter: '%s' is not utf-8", eq + 1);
                goto out;
            }
            json_object_set_new(filter, optarg, v);
            break;
        }
        case 'j': json = 1; break;
        case 's': sn_cli_socket_opt = optarg; break;
        case 'h':
            fputs(search_usage, stdout);
            rc = SN_EXIT_OK;
            goto out;
        default: fputs(search_usage, stderr); goto out;
        }
    }
    if (optind >= argc) {
        sn_cli_error("search: what query?");
        fputs(search_usage, stderr);
        goto out;
    }
    size_t qlen = 0;
    for (int i = optind; i < argc; i++)
        qlen += strlen(argv[i]) + 1;
    query = malloc(qlen + 1);
    if (!query) {
        rc = SN_EXIT_ERROR;
        goto out;
    }
    query[0] = '\0';
    for (int i = optind; i < argc; i++) {
        if (i > optind)
            strcat(query, " ");
        strcat(query, argv[i]);
    }
    if (!sn_utf8_valid(query, strlen(query), NULL)) {
        sn_cli_error("search: the query is not utf-8");
        rc = SN_EXIT_ERROR;
        goto out;
    }
    if ((rc = sn_cli_connect(&conn)))
        goto out;
    req = json_object();
    json_object_set_new(req, "op", json_string(sn_op_name(SN_OP_SEARCH)));
    json_object_set_new(req, "collection", json_string(collection));
    json_object_set_new(req, "query", json_string(query));
    json_object_set_new(req, "k", json_integer(k));
    if (mode)
        json_object_set_new(req, "mode", json_string(mode));
    if (chunks)
        json_object_set_new(req, "group", json_string("chunk"));
    if (ef)
        json_object_set_new(req, "ef", json_integer(ef));
    if (json_object_size(filter))
        json_object_set(req, "filter", filter);
    rc = sn_cli_call(conn, req, &reply, &raw, 0);
    if (json && raw)
        printf("%s\n", raw);
    if (rc || json)
        goto out;
    if (json_is_true(json_object_get(reply, "truncated")))
        fprintf(stderr, "sense: warning: the query is longer than the "
                        "model's %lld tokens: only its beginning is "
                        "searched\n",
                (long long)json_integer_value(
                    json_object_get(reply, "n_tokens")));
    json_t *results = json_object_get(reply, "results"), *r, *l;
    json_t *lists = json_object_get(reply, "lists");
    size_t i;
    printf("%s search", json_string_value(json_object_get(reply, "mode"))
                            ? json_string_value(json_object_get(reply, "mode"))
                            : "?");
    json_array_foreach(lists, i, l)
        printf("%s%s", i ? " + " : ", from ", json_string_value(l));
    if (!json_array_size(lists))
        printf(", nothing matched");
    putchar('\n');
    if (!json_array_size(results))
        printf("no results\n");
    json_array_foreach(results, i, r) {
        const char *id = json_string_value(json_object_get(r, "id"));
        const char *text = json_string_value(json_object_get(r, "text"));
        printf("%2zu. %.4f  %s  (chunk %lld, chars %lld-%lld)\n    ", i + 1,
               json_number_value(json_object_get(r, "score")),
               id ? id : "?",
               (long long)json_integer_value(json_object_get(r, "chunk")),
               (long long)json_integer_value(json_object_get(r, "start")),
               (long long)json_integer_value(json_object_get(r, "end")));
        put_line(text ? text : "", 200);
    }
out:
    json_decref(filter);
    json_decref(req);
    json_decref(reply);
    free(query);
    sn_cli_close(conn);
    return rc;
}
