/*
 * bench_ir.c -- retrieval quality and cost of `search` through the real
 * daemon, on a folder in the ../shared/ir format, with plain FTS5 BM25
 * measured beside it in the same run.
 *
 * The folder holds corpus.jsonl ({"id", "text"} per line) and
 * queries.jsonl ({"qid", "text", "target"}: the one relevant document).
 * The program starts sensed (next to this program, or --sensed PATH) on a
 * socket and a fresh database in a mkdtemp folder (or --db PATH: reused
 * when it already holds the collection, so a tuning run need not ingest
 * again), adds the corpus through `add` (requests of 64 documents, one
 * connection), then sends every query as a `search` (k 10, documents as
 * results) in each mode: hybrid, vector, lexical. Printed per mode:
 * Recall@1, Recall@10 and MRR@10 over documents -- over all queries and
 * over the two halves of a random split (seed --seed): the weights were
 * tuned on half A, half B is what they did not see -- and search p50/p99
 * (ms, one client, one request in flight, query encoding included).
 * Then ingest documents/s and the database's bytes per document, split by
 * what holds them (dbstat): chunk rows (vectors), documents (text), the
 * FTS5 tables, the rest; and the raw vector bytes (chunks x dim x 4).
 *
 * The baseline: the same corpus in an in-memory SQLite FTS5 table
 * (tokenize 'porter unicode61'), each query's words quoted and OR-ed,
 * ranked by bm25(): what a user comparing us with plain keyword search
 * gets. Its latency is in-process (no socket, no encoding).
 *
 * Usage: bench_ir DIR [--sensed PATH] [--model PATH|default] [--db PATH]
 *                 [--seed N] [--limit N]
 * --limit: only the first N queries. Run on a quiet machine and say the
 * load (uptime) beside the speed figures.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define K 10
#define COLL "ir"

static char g_dir[] = "/tmp/sense-bench-ir-XXXXXX";
static char g_sock[100], g_db[512], g_log[256];
static const char *g_sensed, *g_model = "default";
static pid_t g_pid;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "bench_ir: %s%s%s\n", what, err ? ": " : "",
            err ? err : "");
    if (g_pid > 0) {
        kill(g_pid, SIGKILL);
        waitpid(g_pid, NULL, 0);
        fprintf(stderr, "(sensed log: %s)\n", g_log);
    }
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- data ---------------------------------------------------------------- */

typedef struct {
    char *id, *text, *target;
} item_t;

static item_t *read_jsonl(const char *path, const char *id_key, int *n_out)
{
    FILE *f = fopen(path, "r");
    item_t *v = NULL;
    int n = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;

    if (!f)
        die(path, strerror(errno));
    while (getline(&line, &lcap, f) > 0) {
        json_error_t jerr;
        json_t *j = json_loads(line, 0, &jerr);
        if (!j)
            die(path, jerr.text);
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            v = realloc(v, (size_t)cap * sizeof *v);
            if (!v)
                die("out of memory", NULL);
        }
        const char *id = json_string_value(json_object_get(j, id_key));
        const char *text = json_string_value(json_object_get(j, "text"));
        const char *tgt = json_string_value(json_object_get(j, "target"));
        if (!id || !text)
            die(path, "a line without id or text");
        v[n].id = strdup(id);
        v[n].text = strdup(text);
        v[n].target = tgt ? strdup(tgt) : NULL;
        n++;
        json_decref(j);
    }
    free(line);
    fclose(f);
    *n_out = n;
    return v;
}

/* ---- the daemon ------------------------------------------------------------ */

typedef struct {
    int fd;
    char *buf;
    size_t len, cap;
} conn_t;

static int sock_connect(void)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", g_sock);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/* Send a request (JSON, dumped here with its '\n') and parse the reply. */
static json_t *call(conn_t *c, json_t *req)
{
    char *s = json_dumps(req, JSON_COMPACT);
    size_t len, off = 0;
    json_error_t jerr;
    json_t *rep;

    if (!s)
        die("out of memory", NULL);
    len = strlen(s);
    s[len] = '\n'; /* json_dumps leaves room: the NUL */
    while (off < len + 1) {
        ssize_t w = write(c->fd, s + off, len + 1 - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("write to socket", strerror(errno));
        off += (size_t)w;
    }
    free(s);
    c->len = 0;
    for (;;) {
        char *nl;
        ssize_t r;
        if (c->cap - c->len < 65536) {
            c->cap = c->cap ? c->cap * 2 : 1 << 20;
            if (!(c->buf = realloc(c->buf, c->cap)))
                die("out of memory", NULL);
        }
        r = read(c->fd, c->buf + c->len, c->cap - c->len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die("read from socket", r ? strerror(errno) : "closed");
        nl = memchr(c->buf + c->len, '\n', (size_t)r);
        c->len += (size_t)r;
        if (nl) {
            *nl = '\0';
            break;
        }
    }
    rep = json_loads(c->buf, 0, &jerr);
    if (!rep || !json_is_true(json_object_get(rep, "ok")))
        die("error reply", c->buf);
    return rep;
}

static void daemon_start(void)
{
    conn_t c = {0};
    g_pid = fork();
    if (g_pid < 0)
        die("fork", strerror(errno));
    if (g_pid == 0) {
        int fd = open(g_log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(g_sensed, g_sensed, "--socket", g_sock, "--db", g_db,
              "--model", g_model, (char *)NULL);
        _exit(127);
    }
    for (;;) {
        int st;
        if ((c.fd = sock_connect()) >= 0)
            break;
        if (waitpid(g_pid, &st, WNOHANG) == g_pid) {
            g_pid = 0;
            die("sensed exited during startup; log", g_log);
        }
        usleep(20000);
    }
    close(c.fd);
}

static void daemon_stop(void)
{
    int st;
    if (g_pid <= 0)
        return;
    kill(g_pid, SIGTERM);
    waitpid(g_pid, &st, 0);
    g_pid = 0;
}

/* ---- measures ---------------------------------------------------------------- */

typedef struct {
    double r1, r10, mrr;
    int n;
} score_t;

static void score_add(score_t *s, int rank)
{
    s->n++;
    if (rank == 1)
        s->r1++;
    if (rank >= 1 && rank <= K) {
        s->r10++;
        s->mrr += 1.0 / rank;
    }
}

static void score_print(const char *label, const score_t *s)
{
    int n = s->n ? s->n : 1;
    printf("  %-7s R@1 %.3f  R@10 %.3f  MRR@10 %.3f", label, s->r1 / n,
           s->r10 / n, s->mrr / n);
}

typedef struct {
    const char *name;
    score_t all, half[2];
    double *ms;
    int n_lists[4];
} mode_t_;

static void report(mode_t_ *m, int n_q)
{
    qsort(m->ms, (size_t)n_q, sizeof *m->ms, cmp_double);
    printf("%-8s", m->name);
    score_print("all", &m->all);
    printf("   p50 %.2f ms  p99 %.2f ms\n", m->ms[n_q / 2],
           m->ms[(int)(n_q * 0.99)]);
    printf("%-8s", "");
    score_print("half A", &m->half[0]);
    printf("\n%-8s", "");
    score_print("half B", &m->half[1]);
    printf("\n");
}

/* Plain FTS5 BM25: words quoted and OR-ed. */
static char *or_words(const char *text)
{
    size_t cap = strlen(text) * 8 + 16, len = 0;
    char *out = malloc(cap);
    const unsigned char *p = (const unsigned char *)text;
    if (!out)
        die("out of memory", NULL);
    out[0] = '\0';
    while (*p) {
        while (*p && !(*p >= 0x80 || (*p >= '0' && *p <= '9') ||
                       ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z')))
            p++;
        if (!*p)
            break;
        const unsigned char *w = p;
        while (*p >= 0x80 || (*p >= '0' && *p <= '9') ||
               ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z'))
            p++;
        len += (size_t)snprintf(out + len, cap - len, "%s\"%.*s\"",
                                len ? " OR " : "", (int)(p - w), w);
    }
    return out;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *db_arg = NULL;
    unsigned seed = 1202;
    int limit = 0, n_docs, n_q;
    char path[1024];

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sensed") && i + 1 < argc)
            g_sensed = argv[++i];
        else if (!strcmp(argv[i], "--model") && i + 1 < argc)
            g_model = argv[++i];
        else if (!strcmp(argv[i], "--db") && i + 1 < argc)
            db_arg = argv[++i];
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--limit") && i + 1 < argc)
            limit = atoi(argv[++i]);
        else if (argv[i][0] != '-' && !dir)
            dir = argv[i];
        else {
            fprintf(stderr, "usage: bench_ir DIR [--sensed PATH] [--model "
                            "PATH|default] [--db PATH] [--seed N] "
                            "[--limit N]\n");
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "usage: bench_ir DIR [options]\n");
        return 2;
    }
    static char sensed_buf[1024];
    if (!g_sensed) {
        ssize_t n = readlink("/proc/self/exe", sensed_buf,
                             sizeof sensed_buf - 16);
        if (n <= 0)
            die("readlink /proc/self/exe", strerror(errno));
        sensed_buf[n] = '\0';
        char *slash = strrchr(sensed_buf, '/');
        strcpy(slash + 1, "sensed");
        g_sensed = sensed_buf;
    }
    snprintf(path, sizeof path, "%s/corpus.jsonl", dir);
    item_t *docs = read_jsonl(path, "id", &n_docs);
    snprintf(path, sizeof path, "%s/queries.jsonl", dir);
    item_t *qs = read_jsonl(path, "qid", &n_q);
    if (limit > 0 && limit < n_q)
        n_q = limit;
    if (!mkdtemp(g_dir))
        die("mkdtemp", strerror(errno));
    snprintf(g_sock, sizeof g_sock, "%s/s.sock", g_dir);
    snprintf(g_log, sizeof g_log, "%s/sensed.log", g_dir);
    snprintf(g_db, sizeof g_db, "%s", db_arg ? db_arg : "");
    if (!db_arg)
        snprintf(g_db, sizeof g_db, "%s/sense.db", g_dir);

    /* the split: a Fisher-Yates shuffle by the seed, first half is A */
    int *half = calloc((size_t)n_q, sizeof *half), *perm = malloc(
        (size_t)n_q * sizeof *perm);
    srand(seed);
    for (int i = 0; i < n_q; i++)
        perm[i] = i;
    for (int i = n_q - 1; i > 0; i--) {
        int j = rand() % (i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int i = 0; i < n_q; i++)
        half[perm[i]] = i >= n_q / 2;

    printf("bench_ir %s: %d documents, %d queries (split seed %u), model "
           "%s\n", dir, n_docs, n_q, seed, g_model);
    daemon_start();
    conn_t c = {.fd = sock_connect()};
    if (c.fd < 0)
        die("connect", strerror(-c.fd));

    /* ingest, unless the database holds the collection already */
    json_t *req = json_pack("{s:i, s:s}", "id", 1, "op", "stats");
    json_t *rep = call(&c, req), *colls = json_object_get(rep, "collections");
    int have = 0;
    for (size_t i = 0; i < json_array_size(colls); i++) {
        json_t *cj = json_array_get(colls, i);
        if (!strcmp(json_string_value(json_object_get(cj, "name")), COLL) &&
            json_integer_value(json_object_get(cj, "docs")) == n_docs)
            have = 1;
    }
    json_decref(req);
    json_decref(rep);
    double t0 = now(), ingest_s = 0;
    if (!have) {
        for (int i = 0; i < n_docs; i += BATCH) {
            json_t *arr = json_array();
            for (int j = i; j < n_docs && j < i + BATCH; j++)
                json_array_append_new(arr, json_pack("{s:s, s:s}", "id",
                                                     docs[j].id, "text",
                                                     docs[j].text));
            req = json_pack("{s:i, s:s, s:s, s:o}", "id", 2, "op", "add",
                            "collection", COLL, "docs", arr);
            json_decref(call(&c, req));
            json_decref(req);
        }
        ingest_s = now() - t0;
    }

    /* searches */
    static const char *modes[] = {"hybrid", "vector", "lexical"};
    mode_t_ m[3] = {{0}};
    for (int mi = 0; mi < 3; mi++) {
        m[mi].name = modes[mi];
        m[mi].ms = calloc((size_t)n_q, sizeof(double));
    }
    for (int qi = 0; qi < n_q; qi++) {
        for (int mi = 0; mi < 3; mi++) {
            req = json_pack("{s:i, s:s, s:s, s:s, s:i, s:s}", "id", 3, "op",
                            "search", "collection", COLL, "query",
                            qs[qi].text, "k", K, "mode", modes[mi]);
            double t = now();
            rep = call(&c, req);
            m[mi].ms[qi] = (now() - t) * 1e3;
            json_t *res = json_object_get(rep, "results");
            int rank = 0;
            for (size_t r = 0; r < json_array_size(res); r++) {
                const char *id = json_string_value(
                    json_object_get(json_array_get(res, r), "id"));
                if (id && !strcmp(id, qs[qi].target)) {
                    rank = (int)r + 1;
                    break;
                }
            }
            score_add(&m[mi].all, rank);
            score_add(&m[mi].half[half[qi]], rank);
            json_decref(rep);
            json_decref(req);
        }
    }
    close(c.fd);
    free(c.buf);
    daemon_stop();

    /* database size, by what holds it */
    sqlite3 *db;
    sqlite3_stmt *s;
    double vec_pages = 0, doc_pages = 0, fts_pages = 0, other = 0;
    double raw_vec = 0, text_bytes = 0;
    if (sqlite3_open_v2(g_db, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        die("open the database", sqlite3_errmsg(db));
    if (sqlite3_prepare_v2(db, "SELECT name, sum(pgsize) FROM dbstat GROUP "
                           "BY name", -1, &s, NULL) != SQLITE_OK)
        die("dbstat", sqlite3_errmsg(db));
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(s, 0);
        double b = sqlite3_column_double(s, 1);
        if (!strcmp(name, "chunks"))
            vec_pages += b;
        else if (!strcmp(name, "documents"))
            doc_pages += b;
        else if (!strncmp(name, "documents_fts", 13) ||
                 !strncmp(name, "documents_tri", 13))
            fts_pages += b;
        else
            other += b;
    }
    sqlite3_finalize(s);
    if (sqlite3_prepare_v2(db, "SELECT (SELECT sum(length(vector)) FROM "
                           "chunks), (SELECT sum(length(CAST(text AS BLOB)))"
                           " FROM documents)", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
        raw_vec = sqlite3_column_double(s, 0);
        text_bytes = sqlite3_column_double(s, 1);
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    struct stat sb;
    if (stat(g_db, &sb) != 0)
        die(g_db, strerror(errno));

    /* the baseline: plain FTS5 BM25 */
    score_t b_all = {0}, b_half[2] = {{0}};
    double *b_ms = calloc((size_t)n_q, sizeof *b_ms);
    sqlite3_open(":memory:", &db);
    sqlite3_exec(db, "CREATE VIRTUAL TABLE f USING fts5(id UNINDEXED, text, "
                 "tokenize = 'porter unicode61')", NULL, NULL, NULL);
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    sqlite3_prepare_v2(db, "INSERT INTO f (id, text) VALUES (?1, ?2)", -1, &s,
                       NULL);
    for (int i = 0; i < n_docs; i++) {
        sqlite3_bind_text(s, 1, docs[i].id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, docs[i].text, -1, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_DONE)
            die("fts5 insert", sqlite3_errmsg(db));
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (sqlite3_prepare_v2(db, "SELECT id FROM f WHERE f MATCH ?1 ORDER BY "
                           "bm25(f) LIMIT 10", -1, &s, NULL) != SQLITE_OK)
        die("fts5 query", sqlite3_errmsg(db));
    for (int qi = 0; qi < n_q; qi++) {
        char *m_or = or_words(qs[qi].text);
        int rank = 0, r = 0;
        double t = now();
        sqlite3_bind_text(s, 1, m_or, -1, SQLITE_TRANSIENT);
        while (sqlite3_step(s) == SQLITE_ROW) {
            r++;
            if (!rank && !strcmp((const char *)sqlite3_column_text(s, 0),
                                 qs[qi].target))
                rank = r;
        }
        sqlite3_reset(s);
        b_ms[qi] = (now() - t) * 1e3;
        free(m_or);
        score_add(&b_all, rank);
        score_add(&b_half[half[qi]], rank);
    }
    sqlite3_finalize(s);
    sqlite3_close(db);

    printf("\nmode     quality (documents, k 10)                          "
           "latency (one client)\n");
    for (int mi = 0; mi < 3; mi++)
        report(&m[mi], n_q);
    mode_t_ b = {.name = "bm25", .all = b_all, .ms = b_ms};
    b.half[0] = b_half[0];
    b.half[1] = b_half[1];
    report(&b, n_q);
    printf("(bm25: plain FTS5, porter unicode61, words OR-ed, in-process)\n");
    /* the "never below the better of its two lists", per measure */
    {
        int n = n_q ? n_q : 1;
        double r_v = m[1].all.r10 / n, r_l = m[2].all.r10 / n;
        double q_v = m[1].all.mrr / n, q_l = m[2].all.mrr / n;
        printf("hybrid - better list: R@10 %+.3f (%s), MRR@10 %+.3f (%s); "
               "- bm25: R@10 %+.3f, MRR@10 %+.3f\n",
               m[0].all.r10 / n - (r_v > r_l ? r_v : r_l),
               r_v > r_l ? "vector" : "lexical",
               m[0].all.mrr / n - (q_v > q_l ? q_v : q_l),
               q_v > q_l ? "vector" : "lexical",
               (m[0].all.r10 - b_all.r10) / n, (m[0].all.mrr - b_all.mrr) / n);
    }
    if (ingest_s > 0)
        printf("\ningest: %d documents in %.1f s: %.1f docs/s\n", n_docs,
               ingest_s, n_docs / ingest_s);
    else
        printf("\ningest: reused the database '%s'\n", g_db);
    printf("database: %.0f bytes, %.0f per document; pages: chunks %.1f MB "
           "(raw vectors %.1f MB: %.2fx), documents %.1f MB (text %.1f MB), "
           "fts %.1f MB, other %.1f MB\n",
           (double)sb.st_size, sb.st_size / (double)n_docs, vec_pages / 1e6,
           raw_vec / 1e6, raw_vec > 0 ? vec_pages / raw_vec : 0,
           doc_pages / 1e6, text_bytes / 1e6, fts_pages / 1e6, other / 1e6);
    printf("database / (raw vectors + text + fts): %.2f\n",
           sb.st_size / (raw_vec + text_bytes + fts_pages));
    return 0;
}
