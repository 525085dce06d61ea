/*
 * cmd_senses.c -- `sense senses SUBCOMMAND`: the daemon's sense inventory.
 *
 *   add LEMMA SENSE [--gloss G] EXAMPLE...   one sense (sense.add)
 *   add --file FILE                          a JSON-lines inventory
 *   list [LEMMA] [--examples]                sense.list, paged
 *   rm LEMMA [SENSE]                         sense.remove
 *   import-wordnet ...                       in this process: cmd_wordnet.c
 *
 * An inventory file holds one sense per line, in the format of
 * data/senses-demo.jsonl: {"lemma": ..., "sense": ..., "gloss": ...
 * (optional), "examples": [text or {"text", "start", "end"}, ...]}. Its
 * senses go to the daemon in sense.add requests of at most --batch examples
 * (SN_SENSES_BATCH_BYTES of JSON, SN_MAX_SENSES senses), one
 * request in flight; each request is one transaction, so a failure leaves
 * the batches before it in place. A line with more examples than a batch
 * is split. Errors the daemon names by position ("senses[3].examples[1]:")
 * are reported by file and line.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

#define SN_SENSES_BATCH 256             /* examples per request, default */
#define SN_SENSES_BATCH_BYTES (4u << 20)
#define SN_SENSES_PAGE SN_LIST_DEFAULT  /* lemmas per sense.list request */

static const char senses_usage[] =
    "usage: sense senses <subcommand> [<args>]\n"
    "\n"
    "The sense inventory that 'sense which' chooses from: for each lemma,\n"
    "its senses, each with example sentences (and a gloss).\n"
    "\n"
    "subcommands:\n"
    "  add LEMMA SENSE [--gloss G] EXAMPLE...\n"
    "                  add a sense, or more examples to it\n"
    "  add --file FILE add the senses of a JSON-lines file (one sense a\n"
    "                  line, as in data/senses-demo.jsonl)\n"
    "  list [LEMMA]    the lemmas with senses, or the senses of LEMMA\n"
    "  rm LEMMA [SENSE]\n"
    "                  remove a sense, or every sense of LEMMA\n"
    "  import-wordnet  import WordNet's senses into a database (runs in\n"
    "                  this process, no daemon needed)\n"
    "\n"
    "Each subcommand takes --help.\n"
    "\n"
    "exit status: 0 ok, 1 error, 2 usage, 3 cannot connect to the daemon\n";

static const char add_usage[] =
    "usage: sense senses add [options] LEMMA SENSE [EXAMPLE...]\n"
    "       sense senses add [options] --file FILE\n"
    "\n"
    "Add a sense of LEMMA named SENSE (any name: 'snake', 'bank.n.01'), or\n"
    "more examples to it. Each EXAMPLE is a sentence that uses the lemma in\n"
    "that sense (inflected forms count: 'pythons'); a sense may also be\n"
    "given by its --gloss alone. Adding an example twice stores it once.\n"
    "\n"
    "With --file, FILE ('-' for stdin) holds one sense per line:\n"
    "  {\"lemma\": \"python\", \"sense\": \"snake\", \"gloss\": \"...\",\n"
    "   \"examples\": [\"The python coiled...\",\n"
    "                {\"text\": \"...\", \"start\": 4, \"end\": 10}]}\n"
    "(gloss optional; start and end give the lemma's place, in characters).\n"
    "\n"
    "options:\n"
    "  --gloss TEXT       the sense's definition\n"
    "  --file FILE        add the senses of a JSON-lines file\n"
    "  --batch N          examples per request with --file (default 256)\n"
    "  --json             print the daemon's reply lines\n"
    "  --socket PATH      the daemon's socket\n"
    "  -h, --help         this help\n"
    "\n"
    "exit status: 0 ok, 1 error (an example without its lemma, a bad line),\n"
    "2 usage, 3 cannot connect to the daemon\n";

static const char list_usage[] =
    "usage: sense senses list [options] [LEMMA]\n"
    "\n"
    "Without LEMMA: the lemmas that have senses, alphabetically, with their\n"
    "numbers of senses and examples, then the totals. With LEMMA: its\n"
    "senses, in the order they were added, with their glosses.\n"
    "\n"
    "options:\n"
    "  --examples         with LEMMA: also each sense's examples, the\n"
    "                     lemma [bracketed]\n"
    "  --offset N         without LEMMA: skip the first N lemmas\n"
    "  --limit N          without LEMMA: at most N lemmas (default: all)\n"
    "  --json             print the daemon's reply lines\n"
    "  --socket PATH      the daemon's socket\n"
    "  -h, --help         this help\n"
    "\n"
    "exit status: 0 ok, 1 error (LEMMA has no senses), 2 usage, 3 cannot\n"
    "connect to the daemon\n";

static const char rm_usage[] =
    "usage: sense senses rm [options] LEMMA [SENSE]\n"
    "\n"
    "Remove the sense SENSE of LEMMA with all its examples, or without\n"
    "SENSE every sense of LEMMA.\n"
    "\n"
    "options:\n"
    "  --json             print the daemon's reply line\n"
    "  --socket PATH      the daemon's socket\n"
    "  -h, --help         this help\n"
    "\n"
    "exit status: 0 ok, 1 error (nothing to remove), 2 usage, 3 cannot\n"
    "connect to the daemon\n";

/* Print s on one line: newlines and tabs as spaces. */
static void put_flat(const char *s, size_t len)
{
    for (size_t i = 0; s && i < len; i++)
        putchar(s[i] == '\n' || s[i] == '\r' || s[i] == '\t' ? ' ' : s[i]);
}

static int parse_count(const char *opt, const char *s, long min, long max,
                       long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        sn_cli_error("%s: '%s' is not in %ld..%ld", opt, s, min, max);
        return SN_EXIT_USAGE;
    }
    *out = v;
    return 0;
}

/* ---- add --file ------------------------------------------------------------ */

typedef struct {
    sn_cli_conn_t *conn;
    const char *name;     /* the file, for messages */
    int json;
    int batch_max;        /* examples per request */
    json_t *senses;       /* the batch being filled */
    long *lines;          /* per batch entry: its line */
    int *ex_off;          /* per batch entry: its first example's index in
                           * the line (a split line) */
    size_t cap;
    int n_ex;             /* examples in the batch */
    size_t bytes;
    long n_added, n_senses;
} loader_t;

/* The daemon's "senses[N].examples[K]: msg" as "FILE:LINE: examples[K']:
 * msg", for an error in the batch just sent. */
static void loader_error(loader_t *l, json_t *reply)
{
    json_t *e = json_object_get(reply, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    int i_sense = -1, i_ex = -1, n = 0;
    if (!msg)
        msg = "error";
    if (sscanf(msg, "senses[%d]%n", &i_sense, &n) == 1 && i_sense >= 0 &&
        (size_t)i_sense < json_array_size(l->senses)) {
        const char *rest = msg + n;
        int m = 0;
        if (sscanf(rest, ".examples[%d]%n", &i_ex, &m) == 1 && i_ex >= 0) {
            rest += m;
            if (!strncmp(rest, ": ", 2))
                rest += 2;
            sn_cli_error("%s:%ld: examples[%d]: %s (%s)", l->name,
                         l->lines[i_sense], i_ex + l->ex_off[i_sense], rest,
                         code ? code : "?");
            return;
        }
        if (!strncmp(rest, ": ", 2))
            rest += 2;
        sn_cli_error("%s:%ld: %s (%s)", l->name, l->lines[i_sense], rest,
                     code ? code : "?");
        return;
    }
    sn_cli_error("%s: %s (%s)", l->name, msg, code ? code : "?");
}

static int loader_send(loader_t *l)
{
    json_t *req, *reply = NULL;
    const char *raw = NULL;
    size_t n = json_array_size(l->senses);
    int rc;
    if (!n)
        return 0;
    req = json_object();
    if (!req) {
        sn_cli_error("out of memory");
        return SN_EXIT_ERROR;
    }
    json_object_set_new(req, "op", json_string(sn_op_name(SN_OP_SENSE_ADD)));
    json_object_set(req, "senses", l->senses);
    rc = sn_cli_call(l->conn, req, &reply, &raw, 1);
    json_decref(req);
    if (l->json && raw)
        printf("%s\n", raw);
    if (rc && reply)
        loader_error(l, reply);
    if (!rc) {
        l->n_added += (long)json_integer_value(json_object_get(reply,
                                                               "added"));
        for (size_t i = 0; i < n; i++)
            l->n_senses += l->ex_off[i] == 0;
    }
    json_array_clear(l->senses);
    l->n_ex = 0;
    l->bytes = 0;
    json_decref(reply);
    return rc;
}

/* Queue one sense entry (stolen) of n_ex examples from `line`. */
static int loader_push(loader_t *l, json_t *entry, int n_ex, long line,
                       int ex_off)
{
    char *text = json_dumps(entry, JSON_COMPACT);
    size_t len = text ? strlen(text) : 0;
    size_t n = json_array_size(l->senses);
    int rc;
    free(text);
    if (!len) {
        json_decref(entry);
        sn_cli_error("%s:%ld: out of memory", l->name, line);
        return SN_EXIT_ERROR;
    }
    if (n && (l->n_ex + n_ex > l->batch_max ||
              n >= SN_MAX_SENSES ||
              l->bytes + len > SN_SENSES_BATCH_BYTES)) {
        if ((rc = loader_send(l))) {
            json_decref(entry);
            return rc;
        }
        n = 0;
    }
    if (n >= l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        long *lines = realloc(l->lines, cap * sizeof *lines);
        if (lines)
            l->lines = lines;
        int *off = realloc(l->ex_off, cap * sizeof *off);
        if (off)
            l->ex_off = off;
        if (!lines || !off) {
            json_decref(entry);
            sn_cli_error("out of memory");
            return SN_EXIT_ERROR;
        }
        l->cap = cap;
    }
    l->lines[n] = line;
    l->ex_off[n] = ex_off;
    json_array_append_new(l->senses, entry);
    l->n_ex += n_ex;
    l->bytes += len;
    return 0;
}

/* One line: checked for shape here (the daemon checks the rest), split
 * when it has more examples than a batch. */
static int loader_line(loader_t *l, json_t *in, long line)
{
    json_t *lemma = json_object_get(in, "lemma");
    json_t *sense = json_object_get(in, "sense");
    json_t *gloss = json_object_get(in, "gloss");
    json_t *ex = json_object_get(in, "examples");
    const char *bad = NULL;

    if (!json_is_object(in))
        bad = "not a JSON object";
    else if (!json_is_string(lemma))
        bad = "\"lemma\" must be a string";
    else if (!json_is_string(sense))
        bad = "\"sense\" must be a string";
    else if (gloss && !json_is_string(gloss))
        bad = "\"gloss\" must be a string";
    else if (ex && !json_is_array(ex))
        bad = "\"examples\" must be an array";
    else if (!json_array_size(ex) && !gloss)
        bad = "no \"examples\" and no \"gloss\"";
    if (bad) {
        sn_cli_error("%s:%ld: %s", l->name, line, bad);
        return SN_EXIT_ERROR;
    }
    size_t n_ex = json_array_size(ex), off = 0;
    do {
        size_t k = n_ex - off > (size_t)l->batch_max ? (size_t)l->batch_max
                                                     : n_ex - off;
        json_t *entry = json_object(), *slice = json_array();
        json_object_set(entry, "lemma", lemma);
        json_object_set(entry, "sense", sense);
        if (gloss)
            json_object_set(entry, "gloss", gloss);
        for (size_t i = 0; i < k; i++)
            json_array_append(slice, json_array_get(ex, off + i));
        if (k)
            json_object_set_new(entry, "examples", slice);
        else
            json_decref(slice);
        int rc = loader_push(l, entry, k ? (int)k : 1, line, (int)off);
        if (rc)
            return rc;
        off += k;
    } while (off < n_ex);
    return 0;
}

static int add_file(const char *path, int batch, int json)
{
    loader_t l = {0};
    FILE *fp = strcmp(path, "-") ? fopen(path, "r") : stdin;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int rc = 0;

    if (!fp) {
        sn_cli_error("cannot open '%s': %s", path, strerror(errno));
        return SN_EXIT_ERROR;
    }
    l.name = fp == stdin ? "stdin" : path;
    l.json = json;
    l.batch_max = batch;
    if ((rc = sn_cli_connect(&l.conn)))
        goto out;
    l.senses = json_array();
    while (!rc && (n = getline(&buf, &cap, fp)) >= 0) {
        json_error_t jerr;
        lineno++;
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
            buf[--n] = '\0';
        if (n == 0)
            continue;
        if ((size_t)n > SN_MAX_LINE) {
            sn_cli_error("%s:%ld: longer than %u bytes", l.name, lineno,
                         SN_MAX_LINE);
            rc = SN_EXIT_ERROR;
            break;
        }
        json_t *in = json_loadb(buf, (size_t)n, 0, &jerr);
        if (!in) {
            sn_cli_error("%s:%ld: %s", l.name, lineno, jerr.text);
            rc = SN_EXIT_ERROR;
            break;
        }
        rc = loader_line(&l, in, lineno);
        json_decref(in);
    }
    if (!rc && ferror(fp)) {
        sn_cli_error("cannot read '%s': %s", l.name, strerror(errno));
        rc = SN_EXIT_ERROR;
    }
    if (!rc)
        rc = loader_send(&l);
    if (!json && (!rc || l.n_added))
        printf("added %ld example%s of %ld sense%s from '%s'%s\n", l.n_added,
               l.n_added == 1 ? "" : "s", l.n_senses,
               l.n_senses == 1 ? "" : "s", l.name,
               rc ? " before the error" : "");
out:
    free(buf);
    free(l.lines);
    free(l.ex_off);
    json_decref(l.senses);
    sn_cli_close(l.conn);
    if (fp && fp != stdin)
        fclose(fp);
    return rc;
}

static int cmd_add(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"gloss", required_argument, NULL, 'g'},
        {"file", required_argument, NULL, 'f'},
        {"batch", required_argument, NULL, 'b'},
        {"json", no_argument, NULL, 'j'},
        {"socket", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *gloss = NULL, *file = NULL, *raw = NULL;
    json_t *req = NULL, *reply = NULL, *ex = NULL;
    sn_cli_conn_t *conn = NULL;
    long batch = SN_SENSES_BATCH;
    int json = 0, c, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'g': gloss = optarg; break;
        case 'f': file = optarg; break;
        case 'b':
            if ((rc = parse_count("--batch", optarg, 1, SN_MAX_EXAMPLES,
                                  &batch)))
                return rc;
            break;
        case 'j': json = 1; break;
        case 's': sn_cli_socket_opt = optarg; break;
        case 'h': fputs(add_usage, stdout); return SN_EXIT_OK;
        default: fputs(add_usage, stderr); return SN_EXIT_USAGE;
        }
    }
    if (file) {
        if (optind < argc || gloss) {
            sn_cli_error("senses add: --file takes no LEMMA, SENSE, "
                         "examples or --gloss");
            fputs(add_usage, stderr);
            return SN_EXIT_USAGE;
        }
        return add_file(file, (int)batch, json);
    }
    if (argc - optind < 2 || (argc - optind == 2 && !gloss)) {
        sn_cli_error(argc - optind < 2 ? "senses add: which lemma and sense?"
                                       : "senses add: give examples, or "
                                         "--gloss");
        fputs(add_usage, stderr);
        return SN_EXIT_USAGE;
    }
    for (int i = optind; i < argc; i++)
        if (!sn_utf8_valid(argv[i], strlen(argv[i]), NULL)) {
            sn_cli_error("senses add: '%s' is not utf-8", argv[i]);
            return SN_EXIT_USAGE;
        }
    if (gloss && !sn_utf8_valid(gloss, strlen(gloss), NULL)) {
        sn_cli_error("senses add: the gloss is not utf-8");
        return SN_EXIT_USAGE;
    }
    if ((rc = sn_cli_connect(&conn)))
        return rc;
    req = json_object();
    ex = json_array();
    for (int i = optind + 2; i < argc; i++)
        json_array_append_new(ex, json_string(argv[i]));
    json_object_set_new(req, "op", json_string(sn_op_name(SN_OP_SENSE_ADD)));
    json_object_set_new(req, "lemma", json_string(argv[optind]));
    json_object_set_new(req, "sense", json_string(argv[optind + 1]));
    if (gloss)
        json_object_set_new(req, "gloss", json_string(gloss));
    json_object_set(req, "examples", ex);
    rc = sn_cli_call(conn, req, &reply, &raw, 0);
    if (json && raw)
        printf("%s\n", raw);
    if (!rc && !json) {
        long long n = json_integer_value(json_object_get(reply, "added"));
        if (json_array_size(ex))
            printf("added %lld example%s to sense '%s' of '%s'\n", n,
                   n == 1 ? "" : "s", argv[optind + 1], argv[optind]);
        else
            printf("added sense '%s' of '%s' by its gloss\n",
                   argv[optind + 1], argv[optind]);
    }
    json_decref(ex);
    json_decref(req);
    json_decref(reply);
    sn_cli_close(conn);
    return rc;
}

/* ---- list ------------------------------------------------------------------- */

/* An example with the code points [start, end) in brackets. */
static void put_marked(const char *s, long long start, long long end)
{
    size_t len = strlen(s), b0 = len, b1 = len;
    long long cp = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && ((unsigned char)s[i] & 0xC0) == 0x80)
            continue;
        if (cp == start && b0 == len)
            b0 = i;
        if (cp == end) {
            b1 = i;
            break;
        }
        cp++;
    }
    if (b1 < b0)
        b1 = b0;
    put_flat(s, b0);
    if (b0 < len) {
        putchar('[');
        put_flat(s + b0, b1 - b0);
        putchar(']');
        put_flat(s + b1, len - b1);
    }
    putchar('\n');
}

static int list_lemma(sn_cli_conn_t *conn, const char *lemma, int examples,
                      int json)
{
    json_t *req = json_object(), *reply = NULL, *senses, *s;
    const char *raw = NULL;
    size_t i;
    int rc, width = 0;

    json_object_set_new(req, "op", json_string(sn_op_name(SN_OP_SENSE_LIST)));
    json_object_set_new(req, "lemma", json_string(lemma));
    if (examples)
        json_object_set_new(req, "examples", json_true());
    rc = sn_cli_call(conn, req, &reply, &raw, 0);
    if (json && raw)
        printf("%s\n", raw);
    if (rc)
        goto out;
    senses = json_object_get(reply, "senses");
    const char *model = json_string_value(json_object_get(reply, "model"));
    const char *folded = json_string_value(json_object_get(reply, "lemma"));
    if (!json_array_size(senses)) {
        sn_cli_error("no senses of '%s' for model '%s'", lemma,
                     model ? model : "?");
        rc = SN_EXIT_ERROR;
        goto out;
    }
    if (json)
        goto out;
    json_array_foreach(senses, i, s) {
        const char *name = json_string_value(json_object_get(s, "sense"));
        int w = name ? (int)strlen(name) : 1;
        if (w > width)
            width = w > 24 ? 24 : w;
    }
    printf("%s: %zu sense%s (model '%s')\n", folded ? folded : lemma,
           json_array_size(senses), json_array_size(senses) == 1 ? "" : "s",
           model ? model : "?");
    json_array_foreach(senses, i, s) {
        const char *name = json_string_value(json_object_get(s, "sense"));
        const char *gloss = json_string_value(json_object_get(s, "gloss"));
        long long n = json_integer_value(json_object_get(s, "n_examples"));
        printf("  %-*s  %3lld example%s", width, name ? name : "?", n,
               n == 1 ? " " : "s");
        if (gloss) {
            fputs("  ", stdout);
            put_flat(gloss, strlen(gloss));
        }
        putchar('\n');
        json_t *ex = json_object_get(s, "examples"), *e;
        size_t k;
        json_array_foreach(ex, k, e) {
            const char *text = json_string_value(json_object_get(e, "text"));
            fputs("      ", stdout);
            put_marked(text ? text : "",
                       json_integer_value(json_object_get(e, "start")),
                       json_integer_value(json_object_get(e, "end")));
        }
    }
out:
    json_decref(req);
    json_decref(reply);
    return rc;
}

static int list_all(sn_cli_conn_t *conn, long offset, long limit, int json)
{
    json_t *reply = NULL, *total = NULL;
    const char *raw = NULL;
    char *model = NULL;
    long n_shown = 0;
    int rc = 0;

    for (;;) {
        long want = limit < 0 ? SN_SENSES_PAGE
                              : (limit - n_shown < SN_SENSES_PAGE
                                     ? limit - n_shown
                                     : SN_SENSES_PAGE);
        if (want <= 0)
            break;
        json_t *req = json_object(), *lemmas, *x;
        size_t i;
        json_object_set_new(req, "op",
                            json_string(sn_op_name(SN_OP_SENSE_LIST)));
        json_object_set_new(req, "offset", json_integer(offset + n_shown));
        json_object_set_new(req, "limit", json_integer(want));
        json_decref(reply);
        rc = sn_cli_call(conn, req, &reply, &raw, 0);
        json_decref(req);
        if (json && raw)
            printf("%s\n", raw);
        if (rc)
            break;
        lemmas = json_object_get(reply, "lemmas");
        if (!model) {
            const char *m = json_string_value(json_object_get(reply, "model"));
            model = strdup(m ? m : "?");
        }
        json_decref(total);
        total = json_incref(json_object_get(reply, "total"));
        json_array_foreach(lemmas, i, x) {
            if (json)
                break;
            const char *lemma = json_string_value(json_object_get(x, "lemma"));
            long long ns = json_integer_value(json_object_get(x, "n_senses"));
            long long ne = json_integer_value(json_object_get(x,
                                                              "n_examples"));
            printf("%-20s %3lld sense%s %5lld example%s\n",
                   lemma ? lemma : "?", ns, ns == 1 ? " " : "s", ne,
                   ne == 1 ? "" : "s");
        }
        n_shown += (long)json_array_size(lemmas);
        if ((long)json_array_size(lemmas) < want)
            break;
    }
    if (!rc && !json) {
        long long nl = json_integer_value(json_object_get(total, "lemmas"));
        long long ns = json_integer_value(json_object_get(total, "senses"));
        long long ne = json_integer_value(json_object_get(total, "examples"));
        if (nl == 0)
            printf("no senses for model '%s'; add some with 'sense senses "
                   "add'\n", model ? model : "?");
        else
            printf("%lld lemma%s, %lld sense%s, %lld example%s (model "
                   "'%s')\n", nl, nl == 1 ? "" : "s", ns, ns == 1 ? "" : "s",
                   ne, ne == 1 ? "" : "s", model ? model : "?");
    }
    free(model);
    json_decref(total);
    json_decref(reply);
    return rc;
}

static int cmd_list(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"examples", no_argument, NULL, 'e'},
        {"offset", required_argument, NULL, 'o'},
        {"limit", required_argument, NULL, 'l'},
        {"json", no_argument, NULL, 'j'},
        {"socket", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    sn_cli_conn_t *conn = NULL;
    long offset = 0, limit = -1;
    int json = 0, examples = 0, c, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'e': examples = 1; break;
        case 'o':
            if ((rc = parse_count("--offset", optarg, 0, 0x7fffffffL,
                                  &offset)))
                return rc;
            break;
        case 'l':
            if ((rc = parse_count("--limit", optarg, 1, 0x7fffffffL, &limit)))
                return rc;
            break;
        case 'j': json = 1; break;
        case 's': sn_cli_socket_opt = optarg; break;
        case 'h': fputs(list_usage, stdout); return SN_EXIT_OK;
        default: fputs(list_usage, stderr); return SN_EXIT_USAGE;
        }
    }
    if (argc - optind > 1) {
        sn_cli_error("senses list: one lemma at most");
        fputs(list_usage, stderr);
        return SN_EXIT_USAGE;
    }
    if (optind < argc &&
        !sn_utf8_valid(argv[optind], strlen(argv[optind]), NULL)) {
        sn_cli_error("senses list: '%s' is not utf-8", argv[optind]);
        return SN_EXIT_USAGE;
    }
    if ((rc = sn_cli_connect(&conn)))
        return rc;
    if (optind < argc)
        rc = list_lemma(conn, argv[optind], examples, json);
    else
        rc = list_all(conn, offset, limit, json);
    sn_cli_close(conn);
    return rc;
}

/* ---- rm ---------------------------------------------------------------------- */

static int cmd_rm(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},
        {"socket", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    json_t *req = NULL, *reply = NULL;
    sn_cli_conn_t *conn = NULL;
    const char *raw = NULL, *lemma, *sense;
    int json = 0, c, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 's': sn_cli_socket_opt = optarg; break;
        case 'h': fputs(rm_usage, stdout); return SN_EXIT_OK;
        default: fputs(rm_usage, stderr); return SN_EXIT_USAGE;
        }
    }
    if (argc - optind < 1 || argc - optind > 2) {
        sn_cli_error(argc - optind < 1 ? "senses rm: which lemma?"
                                       : "senses rm: one lemma and at most "
                                         "one sense");
        fputs(rm_usage, stderr);
        return SN_EXIT_USAGE;
    }
    lemma = argv[optind];
    sense = argc - optind == 2 ? argv[optind + 1] : NULL;
    if (!sn_utf8_valid(lemma, strlen(lemma), NULL) ||
        (sense && !sn_utf8_valid(sense, strlen(sense), NULL))) {
        sn_cli_error("senses rm: the lemma and sense must be utf-8");
        return SN_EXIT_USAGE;
    }
    if ((rc = sn_cli_connect(&conn)))
        return rc;
    req = json_object();
    json_object_set_new(req, "op",
                        json_string(sn_op_name(SN_OP_SENSE_REMOVE)));
    json_object_set_new(req, "lemma", json_string(lemma));
    if (sense)
        json_object_set_new(req, "sense", json_string(sense));
    rc = sn_cli_call(conn, req, &reply, &raw, 0);
    if (json && raw)
        printf("%s\n", raw);
    if (!rc) {
        long long n = json_integer_value(json_object_get(reply, "removed"));
        if (n == 0) {
            if (sense)
                sn_cli_error("no sense '%s' of '%s' to remove", sense, lemma);
            else
                sn_cli_error("no senses of '%s' to remove", lemma);
            rc = SN_EXIT_ERROR;
        } else if (!json) {
            if (sense)
                printf("removed sense '%s' of '%s'\n", sense, lemma);
            else
                printf("removed %lld sense%s of '%s'\n", n, n == 1 ? "" : "s",
                       lemma);
        }
    }
    json_decref(req);
    json_decref(reply);
    sn_cli_close(conn);
    return rc;
}

/* ---- dispatch ------------------------------------------------------------------ */

int sn_cmd_senses(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } subs[] = {
        {"add", cmd_add},
        {"list", cmd_list},
        {"rm", cmd_rm},
        {"import-wordnet", sn_cmd_import_wordnet},
    };
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(senses_usage, stdout);
            return SN_EXIT_OK;
        }
        if (!strcmp(argv[i], "--socket") && i + 1 < argc) {
            sn_cli_socket_opt = argv[i + 1];
            i += 2;
            continue;
        }
        if (!strncmp(argv[i], "--socket=", 9)) {
            sn_cli_socket_opt = argv[i] + 9;
            i++;
            continue;
        }
        sn_cli_error("senses: unknown option '%s'; see 'sense senses --help'",
                     argv[i]);
        return SN_EXIT_USAGE;
    }
    if (i >= argc) {
        sn_cli_error("senses: which subcommand?");
        fputs(senses_usage, stderr);
        return SN_EXIT_USAGE;
    }
    for (size_t k = 0; k < sizeof subs / sizeof *subs; k++)
        if (!strcmp(argv[i], subs[k].name))
            return subs[k].fn(argc - i, argv + i);
    sn_cli_error("senses: '%s' is not a subcommand; see 'sense senses "
                 "--help'", argv[i]);
    return SN_EXIT_USAGE;
}
