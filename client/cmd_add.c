/*
 * cmd_add.c -- `sense add FILE...|-`: documents into a collection.
 *
 * A plain file becomes one document whose id is the path as given and
 * whose text is the file's contents (UTF-8; other files are skipped with a
 * warning). `-` (stdin) and files ending in .jsonl are JSON lines, one
 * document each: {"id": string or integer (optional), "text": string,
 * "meta": object (optional)}.
 *
 * Documents go to the daemon in `add` requests of at most --batch
 * documents and SN_ADD_BATCH_BYTES of JSON, --in-flight of them at a time
 * (default 2) on one connection; the daemon replies, in order, once a
 * batch is durable. Two in flight keep the daemon's encoder busy with
 * batch N+1 while its storage thread commits batch N (bench/README.md,
 * "Ingest at scale"); one alternates them. A progress line is drawn on
 * stderr when stderr is a terminal.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"

#define SN_ADD_BATCH_DOCS 64
#define SN_ADD_IN_FLIGHT 2  /* default --in-flight */
#define SN_ADD_MAX_IN_FLIGHT 16
#define SN_ADD_BATCH_BYTES (4u << 20)
#define SN_ADD_MAX_DOC (15u << 20) /* JSON of one document */

static const char add_usage[] =
    "usage: sense add [options] FILE...|-\n"
    "\n"
    "Add documents to a collection. A file is one document (its id is the\n"
    "path as given); '-' (stdin) and files ending in .jsonl hold one JSON\n"
    "object per line: {\"id\": ..., \"text\": ..., \"meta\": {...}} (id and\n"
    "meta optional). A document whose id exists is replaced.\n"
    "\n"
    "options:\n"
    "  --collection NAME  the collection (default 'default')\n"
    "  --index KIND       the index of a collection this creates: auto\n"
    "                     (default: exact search while small, HNSW past\n"
    "                     a measured size), flat (exact) or hnsw\n"
    "  --batch N          documents per request (default 64)\n"
    "  --in-flight N      requests sent before waiting for a reply (1..16,\n"
    "                     default 2: the daemon encodes one batch while it\n"
    "                     stores the one before)\n"
    "  --json             print the daemon's reply lines\n"
    "  --socket PATH      the daemon's socket\n"
    "  -h, --help         this help\n"
    "\n"
    "exit status: 0 ok, 1 error (or a file skipped), 2 usage, 3 cannot\n"
    "connect to the daemon\n";

typedef struct {
    sn_cli_conn_t *conn;
    const char *collection;
    const char *index;  /* NULL: the daemon's default */
    int json;
    int batch_max;
    json_t *docs;       /* the batch being filled */
    int depth;          /* --in-flight */
    size_t sent[SN_ADD_MAX_IN_FLIGHT]; /* documents of each request out */
    int head, n_out;    /* ring of requests awaiting their reply */
    int failed;         /* a reply was an error: send no more */
    size_t batch_bytes;
    long n_docs, n_chunks, n_sent;
    long total;         /* documents expected, or -1 when unknown */
    int tty;
} adder_t;

static void progress(adder_t *a, int final)
{
    if (!a->tty)
        return;
    if (final) {
        fputs("\r\033[K", stderr);
        return;
    }
    if (a->total > 0) {
        int width = 30, fill = (int)(a->n_sent * width / a->total);
        fprintf(stderr, "\radding [%.*s%*s] %ld/%ld documents",
                fill, "##############################", width - fill, "",
                a->n_sent, a->total);
    } else {
        fprintf(stderr, "\radding %ld documents", a->n_sent);
    }
    fflush(stderr);
}

/* Read the reply to the oldest request out and count what it added. */
static int recv_reply(adder_t *a)
{
    json_t *reply = NULL;
    const char *raw = NULL;
    size_t n = a->sent[a->head];
    int rc = sn_cli_recv(a->conn, &reply, &raw, 0);

    a->head = (a->head + 1) % SN_ADD_MAX_IN_FLIGHT;
    a->n_out--;
    if (a->json && raw)
        printf("%s\n", raw);
    if (!rc) {
        json_t *chunks = json_object_get(reply, "chunks"), *v;
        size_t i;
        a->n_docs += (long)json_array_size(json_object_get(reply, "ids"));
        json_array_foreach(chunks, i, v)
            a->n_chunks += (long)json_integer_value(v);
        json_t *cut = json_object_get(reply, "truncated"), *ids;
        ids = json_object_get(reply, "ids");
        json_array_foreach(cut, i, v)
            if (json_integer_value(v) > 0 && !a->json)
                fprintf(stderr, "sense: warning: '%s': %lld chunk(s) longer "
                                "than the model's maximum, cut\n",
                        json_string_value(json_array_get(ids, i)),
                        (long long)json_integer_value(v));
    } else {
        a->failed = 1;
    }
    a->n_sent += (long)n;
    json_decref(reply);
    progress(a, 0);
    return rc;
}

/* Every reply still due; the first error's code. */
static int drain(adder_t *a)
{
    int rc = 0;
    while (a->n_out > 0) {
        int r = recv_reply(a);
        if (!rc)
            rc = r;
    }
    return rc;
}

/* Send the batch being filled; then, with --in-flight requests out, wait
 * for the oldest one's reply. */
static int send_batch(adder_t *a)
{
    json_t *req;
    size_t n = json_array_size(a->docs);
    int rc;
    if (!n)
        return 0;
    if (a->failed)
        return SN_EXIT_ERROR;
    req = json_object();
    if (!req) {
        sn_cli_error("out of memory");
        return SN_EXIT_ERROR;
    }
    json_object_set_new(req, "op", json_string(sn_op_name(SN_OP_ADD)));
    json_object_set_new(req, "collection", json_string(a->collection));
    if (a->index)
        json_object_set_new(req, "index", json_string(a->index));
    json_object_set(req, "docs", a->docs);
    rc = sn_cli_send(a->conn, req);
    json_decref(req);
    json_array_clear(a->docs);
    a->batch_bytes = 0;
    if (rc) {
        drain(a);
        return rc;
    }
    a->sent[(a->head + a->n_out) % SN_ADD_MAX_IN_FLIGHT] = n;
    a->n_out++;
    while (a->n_out >= a->depth)
        if ((rc = recv_reply(a)))
            return drain(a), rc;
    return 0;
}

/* Queue one document (stolen), sending the batch when full. */
static int add_doc(adder_t *a, json_t *doc, const char *where)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    size_t len = text ? strlen(text) : 0;
    free(text);
    if (!len) {
        json_decref(doc);
        sn_cli_error("%s: out of memory", where);
        return SN_EXIT_ERROR;
    }
    if (len > SN_ADD_MAX_DOC) {
        json_decref(doc);
        sn_cli_error("%s: document too large (%zu bytes of JSON; at most %u "
                     "MiB)", where, len, SN_ADD_MAX_DOC >> 20);
        return SN_EXIT_ERROR;
    }
    if (json_array_size(a->docs) &&
        a->batch_bytes + len > SN_ADD_BATCH_BYTES) {
        int rc = send_batch(a);
        if (rc) {
            json_decref(doc);
            return rc;
        }
    }
    json_array_append_new(a->docs, doc);
    a->batch_bytes += len;
    if ((int)json_array_size(a->docs) >= a->batch_max)
        return send_batch(a);
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static int add_jsonl(adder_t *a, FILE *fp, const char *name)
{
    char *line = NULL, where[4200];
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int rc = 0;
    while (!rc && (n = getline(&line, &cap, fp)) >= 0) {
        json_error_t jerr;
        lineno++;
        snprintf(where, sizeof where, "%s:%ld", name, lineno);
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (n == 0)
            continue;
        if ((size_t)n > SN_MAX_LINE) {
            sn_cli_error("%s: longer than %u bytes", where, SN_MAX_LINE);
            rc = SN_EXIT_ERROR;
            break;
        }
        json_t *in = json_loadb(line, (size_t)n, JSON_ALLOW_NUL, &jerr);
        json_t *id = json_object_get(in, "id");
        json_t *text = json_object_get(in, "text");
        json_t *meta = json_object_get(in, "meta");
        if (!in || !json_is_object(in)) {
            sn_cli_error("%s: %s", where,
                         in ? "not a JSON object" : jerr.text);
        } else if (!json_is_string(text)) {
            sn_cli_error("%s: \"text\" must be a string", where);
        } else if (id && !json_is_string(id) && !json_is_integer(id) &&
                   !json_is_null(id)) {
            sn_cli_error("%s: \"id\" must be a string or an integer", where);
        } else if (meta && !json_is_object(meta) && !json_is_null(meta)) {
            sn_cli_error("%s: \"meta\" must be an object", where);
        } else {
            json_t *doc = json_object();
            json_object_set(doc, "text", text);
            if (json_is_string(id)) {
                json_object_set(doc, "id", id);
            } else if (json_is_integer(id)) {
                char buf[32];
                snprintf(buf, sizeof buf, "%lld",
                         (long long)json_integer_value(id));
                json_object_set_new(doc, "id", json_string(buf));
            }
            if (json_is_object(meta))
                json_object_set(doc, "meta", meta);
            json_decref(in);
            rc = add_doc(a, doc, where);
            continue;
        }
        json_decref(in);
        rc = SN_EXIT_ERROR;
    }
    free(line);
    return rc;
}

/* A plain file: one document. Returns 0, an exit code, or -1 when the file
 * was skipped (not text). */
static int add_file(adder_t *a, const char *path)
{
    FILE *fp = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0, bad = 0;
    int rc = 0;
    if (!fp) {
        sn_cli_error("cannot open '%s': %s", path, strerror(errno));
        return SN_EXIT_ERROR;
    }
    for (;;) {
        if (cap - len < 65536) {
            cap = cap ? cap * 2 : 65536;
            char *p = realloc(buf, cap);
            if (!p) {
                sn_cli_error("'%s': out of memory", path);
                rc = SN_EXIT_ERROR;
                goto out;
            }
            buf = p;
        }
        size_t n = fread(buf + len, 1, cap - len, fp);
        len += n;
        if (len > SN_ADD_MAX_DOC) {
            sn_cli_error("'%s': larger than %u MiB", path,
                         SN_ADD_MAX_DOC >> 20);
            rc = SN_EXIT_ERROR;
            goto out;
        }
        if (n == 0)
            break;
    }
    if (ferror(fp)) {
        sn_cli_error("cannot read '%s': %s", path, strerror(errno));
        rc = SN_EXIT_ERROR;
        goto out;
    }
    if (!sn_utf8_valid(buf, len, &bad)) {
        if (a->tty)
            fputs("\r\033[K", stderr);
        sn_cli_error("skipping '%s': not utf-8 text (byte %zu)", path, bad);
        rc = -1;
        goto out;
    }
    json_t *doc = json_object();
    json_t *text = json_stringn(buf, len);
    if (!doc || !text) {
        json_decref(doc);
        json_decref(text);
        sn_cli_error("'%s': out of memory", path);
        rc = SN_EXIT_ERROR;
        goto out;
    }
    json_object_set_new(doc, "id", json_string(path));
    json_object_set_new(doc, "text", text);
    rc = add_doc(a, doc, path);
out:
    free(buf);
    fclose(fp);
    return rc;
}

int sn_cmd_add(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"collection", required_argument, NULL, 'c'},
        {"index", required_argument, NULL, 'i'},
        {"batch", required_argument, NULL, 'b'},
        {"in-flight", required_argument, NULL, 'f'},
        {"json", no_argument, NULL, 'j'},
        {"socket", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    adder_t a = {0};
    int c, rc = 0, skipped = 0;

    a.collection = "default";
    a.batch_max = SN_ADD_BATCH_DOCS;
    a.depth = SN_ADD_IN_FLIGHT;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': a.collection = optarg; break;
        case 'i':
            if (strcmp(optarg, "auto") && strcmp(optarg, "flat") &&
                strcmp(optarg, "hnsw")) {
                sn_cli_error("--index: '%s' is not auto, flat or hnsw",
                             optarg);
                return SN_EXIT_USAGE;
            }
            a.index = optarg;
            break;
        case 'b':
            if (sn_cli_int_arg("--batch", optarg, 1, SN_MAX_DOCS,
                               &a.batch_max))
                return SN_EXIT_USAGE;
            break;
        case 'f':
            if (sn_cli_int_arg("--in-flight", optarg, 1,
                               SN_ADD_MAX_IN_FLIGHT, &a.depth))
                return SN_EXIT_USAGE;
            break;
        case 'j': a.json = 1; break;
        case 's': sn_cli_socket_opt = optarg; break;
        case 'h': fputs(add_usage, stdout); return SN_EXIT_OK;
        default: fputs(add_usage, stderr); return SN_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        sn_cli_error("add: which files? ('-' for JSON lines on stdin)");
        fputs(add_usage, stderr);
        return SN_EXIT_USAGE;
    }
    a.total = argc - optind;
    for (int i = optind; i < argc; i++)
        if (!strcmp(argv[i], "-") || ends_with(argv[i], ".jsonl"))
            a.total = -1;
    if ((rc = sn_cli_connect(&a.conn)))
        return rc;
    a.docs = json_array();
    a.tty = isatty(STDERR_FILENO);
    for (int i = optind; i < argc && !rc; i++) {
        if (!strcmp(argv[i], "-")) {
            rc = add_jsonl(&a, stdin, "stdin");
        } else if (ends_with(argv[i], ".jsonl")) {
            FILE *fp = fopen(argv[i], "r");
            if (!fp) {
                sn_cli_error("cannot open '%s': %s", argv[i],
                             strerror(errno));
                rc = SN_EXIT_ERROR;
                break;
            }
            rc = add_jsonl(&a, fp, argv[i]);
            fclose(fp);
        } else {
            rc = add_file(&a, argv[i]);
            if (rc < 0) {
                skipped++;
                a.n_sent++;
                rc = 0;
            }
        }
    }
    if (!rc)
        rc = send_batch(&a);
    int rc2 = drain(&a); /* the replies still due, whatever happened */
    if (!rc)
        rc = rc2;
    progress(&a, 1);
    if (!a.json && (!rc || a.n_docs))
        printf("added %ld document%s (%ld chunk%s) to '%s'\n", a.n_docs,
               a.n_docs == 1 ? "" : "s", a.n_chunks,
               a.n_chunks == 1 ? "" : "s", a.collection);
    if (skipped && !rc) {
        sn_cli_error("%d file%s skipped", skipped, skipped == 1 ? "" : "s");
        rc = SN_EXIT_ERROR;
    }
    json_decref(a.docs);
    sn_cli_close(a.conn);
    return rc;
}
