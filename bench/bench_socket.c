/*
 * bench_socket.c -- the daemon end to end: what a client of sensed gets over
 * its Unix socket, next to the same work done in-process in the same run.
 *
 * It starts the real sensed (next to this program in the build folder, or
 * --sensed PATH) on a socket and database in a mkdtemp folder, and measures:
 *
 *   startup  time from fork/exec to the first `stats` reply, and the
 *            daemon's VmRSS (/proc/PID/status) then and after the ingest.
 *   encode   `embed` requests of 1, 8 and 32 texts of ~16 and ~128 tokens
 *            from 1 and 8 concurrent clients (each its own connection, one
 *            request in flight), as sentences/s and tokens/s, against
 *            sn_model_embed on the same texts in the same batches on one
 *            thread in this process (OpenBLAS threads as the environment
 *            says), and the ratio socket / in-process.
 *   ingest   --docs short documents (~16 tokens) through `add` in requests
 *            of 32 on one connection into a fresh collection, against
 *            `embed` of the same texts in the same requests: documents/s
 *            and the ratio (the cost of chunking, storage and the durable
 *            SQLite commit on top of encoding).
 *   search   (--search) for each --search-sizes N: stops the daemon, makes
 *            N synthetic clustered normalized --dim vectors and the
 *            queries (bench/synth.h, bench_search.c's data), finds each
 *            query's exact top 10 by brute force (sgemm, apart from
 *            faiss), and writes the vectors into two collections of the
 *            daemon's database through the store API: Flat and HNSW.
 *            Then for each index kind of --search-kinds (flat, hnsw, sq8,
 *            faiss: sensed --hnsw), one query at a time:
 *              in-process  sn_store_search_vec on one thread: the store
 *                      alone (the first search builds the index on every
 *                      core: timed apart, with the saved file's size);
 *              socket  the daemon restarted on that database with that
 *                      --hnsw (it loads the saved index), `search`
 *                      requests with the query `vector` from 1, 8 and 32
 *                      clients (one request in flight each), and with
 *                      --ef E,... one client per beam ("ef");
 *            queries/s, p50, p99 and recall@10 against the exact top 10,
 *            from the replies' ids. Flat runs max(100, Q x 10k / N) of
 *            the Q queries. A text query costs one `embed` more (see the
 *            encode rows).
 *
 * Texts are built from a fixed word list, each text different, and sized
 * with the model's own tokenizer; the token counts printed are the model's.
 * The model is `--model default` (use-lite) unless --model PATH is given
 * (any folder sensed loads, e.g. a MiniLM-shaped one).
 *
 * Usage: bench_socket [--sensed PATH] [--model PATH|default]
 *                     [--threads N] [--reps R] [--docs N] [--no-encode]
 *                     [--no-ingest] [--search] [--search-sizes N,N,...]
 *                     [--search-kinds flat,hnsw,sq8,faiss] [--ef E,...]
 *                     [--queries Q] [--dim D] [--db-dir DIR]
 * --db-dir DIR keeps the socket, log and database in DIR (made if missing)
 * instead of a temporary folder, and leaves them there: a later run with the
 * same DIR and sizes finds the collections filled (the data is made from a
 * fixed seed) and their index files saved, and skips both -- for comparing
 * search code at 1M without an 8-minute build each time.
 * Defaults: reps 3 (seconds of work per encode cell, roughly), docs 2000,
 * search sizes 10000, 1000 queries, 384 dimensions;
 * --threads is sensed's encoder worker count (default: the daemon's, 1).
 * The daemon's log goes to a file in the temporary folder, printed on
 * failure. Run on a quiet machine; 2 cores are easily disturbed.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
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

#include <jansson.h>
#include <sqlite3.h>

#include <cblas.h>

#include "sense/embed.h"
#include "sense/store.h"
#include "synth.h"
#include "../index/store_int.h"

#define MAX_CLIENTS 32
#define MAX_SIZES 8
#define K 10

/* ---- small helpers ------------------------------------------------------- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static char g_dir_tmp[] = "/tmp/sense-bench-sock-XXXXXX";
static const char *g_dir = g_dir_tmp; /* --db-dir: kept, reused */
static int g_keep;
static char g_sock[100], g_db[256], g_log[256];
static pid_t g_pid;

static void print_log(void)
{
    FILE *f = fopen(g_log, "r");
    char line[1024];
    if (!f)
        return;
    fprintf(stderr, "--- sensed log (%s) ---\n", g_log);
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "bench_socket: %s%s%s\n", what, err ? ": " : "",
            err ? err : "");
    if (g_pid > 0) {
        kill(g_pid, SIGKILL);
        waitpid(g_pid, NULL, 0);
        print_log();
    }
    exit(1);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A field of /proc/PID/status in kB ("VmRSS:", "RssAnon:"). */
static long status_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    size_t len = strlen(field);
    long kb = -1;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, len))
            kb = strtol(line + len, NULL, 10);
    fclose(f);
    return kb;
}

static long vm_rss_kb(pid_t pid) { return status_kb(pid, "VmRSS:"); }

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- texts ------------------------------------------------------------- */

static const char *words[] = {
    "the", "river", "bank", "was", "flooded", "after", "heavy", "rain",
    "and", "people", "moved", "their", "cars", "to", "higher", "ground",
    "a", "python", "swallowed", "rabbit", "whole", "while", "scientists",
    "watched", "from", "distance", "market", "prices", "rose", "sharply",
    "during", "morning", "trading", "session", "children", "played",
    "football", "in", "park", "near", "old", "library", "engineers",
    "measured", "latency", "of", "new", "database", "server", "under",
    "load", "she", "wrote", "letter", "her", "grandmother", "about",
    "summer", "holiday", "mountains", "committee", "approved", "budget",
    "for", "next", "year", "despite", "strong", "objections", "bright",
    "stars", "filled", "night", "sky", "above", "quiet", "village",
    "compiler", "optimizes", "loops", "by", "unrolling", "them", "twice",
    "fresh", "bread", "smelled", "wonderful", "small", "bakery", "corner",
};
#define N_WORDS ((int)(sizeof words / sizeof *words))

/* n texts of about `target` tokens (specials included) for `tok`; each
 * starts at another word so that no two are alike. */
static char **make_texts(const sn_tokenizer_t *tok, int max_tok, int n,
                         int target, long *n_tokens)
{
    char **t = calloc((size_t)n, sizeof *t), err[256];
    sn_encoding_t enc = {0};
    *n_tokens = 0;
    if (!t)
        die("out of memory", NULL);
    for (int i = 0; i < n; i++) {
        size_t cap = 4096, len = 0;
        char *s = malloc(cap);
        int w = (int)(rnd() % N_WORDS), got = 0;
        if (!s)
            die("out of memory", NULL);
        s[0] = '\0';
        while (got < target && got < max_tok) {
            const char *word = words[w++ % N_WORDS];
            if (len + strlen(word) + 2 > cap)
                break;
            len += (size_t)sprintf(s + len, "%s%s", len ? " " : "", word);
            if (sn_tokenizer_encode(tok, s, len, max_tok, &enc, err,
                                    sizeof err) < 0)
                die("tokenize", err);
            got = enc.n_tokens;
        }
        *n_tokens += got;
        t[i] = s;
    }
    sn_encoding_free(&enc);
    return t;
}

/* ---- the daemon --------------------------------------------------------- */

static const char *g_sensed, *g_model = "default";
static int g_threads;
static sn_hnsw_kind_t g_hnsw; /* sensed --hnsw */

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

/* A connection with a read buffer for reply lines. */
typedef struct {
    int fd;
    char *buf;
    size_t len, cap;
} conn_t;

static void conn_open(conn_t *c)
{
    c->fd = sock_connect();
    if (c->fd < 0)
        die("cannot connect", strerror(-c->fd));
    c->len = 0;
    c->cap = 1 << 20;
    c->buf = malloc(c->cap);
    if (!c->buf)
        die("out of memory", NULL);
}

static void conn_close(conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    c->fd = -1;
    c->buf = NULL;
}

/* Send one request line (with its '\n') and read one reply line into
 * c->buf (NUL-terminated); returns the reply's length. The reply must say
 * "ok":true. */
static size_t conn_call(conn_t *c, const char *req, size_t req_len)
{
    size_t off = 0;
    while (off < req_len) {
        ssize_t w = write(c->fd, req + off, req_len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("write to socket", strerror(errno));
        off += (size_t)w;
    }
    c->len = 0;
    for (;;) {
        char *nl;
        ssize_t r;
        if (c->cap - c->len < 65536) {
            c->cap *= 2;
            c->buf = realloc(c->buf, c->cap);
            if (!c->buf)
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
            if (!strstr(c->buf, "\"ok\":true"))
                die("error reply", c->buf);
            return (size_t)(nl - c->buf);
        }
    }
}

/* Start sensed; returns seconds from fork to the first stats reply and
 * fills model_id and dim from it when asked. */
static double daemon_start(char *model_id, size_t id_len, int *dim)
{
    static const char stats[] = "{\"id\":1,\"op\":\"stats\"}\n";
    double t0 = now();
    char threads[16];
    conn_t c;

    snprintf(threads, sizeof threads, "%d", g_threads);
    const char *hnsw = sn_hnsw_kind_name(g_hnsw);
    g_pid = fork();
    if (g_pid < 0)
        die("fork", strerror(errno));
    if (g_pid == 0) {
        int fd = open(g_log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (g_threads > 0)
            execl(g_sensed, g_sensed, "--socket", g_sock, "--db", g_db,
                  "--model", g_model, "--log-level", "warn", "--hnsw", hnsw,
                  "--threads", threads, (char *)NULL);
        else
            execl(g_sensed, g_sensed, "--socket", g_sock, "--db", g_db,
                  "--model", g_model, "--log-level", "warn", "--hnsw", hnsw,
                  (char *)NULL);
        _exit(127);
    }
    for (;;) {
        int st;
        c.fd = sock_connect();
        if (c.fd >= 0)
            break;
        if (waitpid(g_pid, &st, WNOHANG) == g_pid) {
            g_pid = 0;
            print_log();
            die("sensed exited during startup", g_sensed);
        }
        if (now() - t0 > 120)
            die("sensed did not listen within 120 s", NULL);
        usleep(1000);
    }
    c.len = 0;
    c.cap = 1 << 16;
    c.buf = malloc(c.cap);
    if (!c.buf)
        die("out of memory", NULL);
    conn_call(&c, stats, sizeof stats - 1);
    t0 = now() - t0;
    if (model_id || dim) {
        json_error_t je;
        json_t *r = json_loads(c.buf, 0, &je);
        if (!r)
            die("bad stats reply", je.text);
        if (model_id)
            snprintf(model_id, id_len, "%s",
                     json_string_value(json_object_get(r, "model_id")));
        if (dim)
            *dim = (int)json_integer_value(json_object_get(r, "dim"));
        json_decref(r);
    }
    conn_close(&c);
    return t0;
}

static void daemon_stop(void)
{
    int st;
    if (g_pid <= 0)
        return;
    kill(g_pid, SIGTERM);
    if (waitpid(g_pid, &st, 0) != g_pid || !WIFEXITED(st) ||
        WEXITSTATUS(st) != 0)
        fprintf(stderr, "bench_socket: warning: sensed did not exit 0\n");
    g_pid = 0;
}

/* ---- request building ----------------------------------------------------- */

static char *json_line(json_t *req, size_t *len)
{
    char *s = json_dumps(req, JSON_COMPACT);
    size_t n;
    if (!s)
        die("out of memory", NULL);
    n = strlen(s);
    s = realloc(s, n + 2);
    if (!s)
        die("out of memory", NULL);
    s[n] = '\n';
    s[n + 1] = '\0';
    *len = n + 1;
    json_decref(req);
    return s;
}

static char *embed_req(char **texts, int n, size_t *len)
{
    json_t *req = json_object(), *arr = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, json_string(texts[i]));
    json_object_set_new(req, "op", json_string("embed"));
    json_object_set_new(req, "texts", arr);
    return json_line(req, len);
}

static char *add_req(char **texts, int i0, int n, const char *coll,
                     size_t *len)
{
    json_t *req = json_object(), *arr = json_array();
    for (int i = 0; i < n; i++) {
        char id[32];
        json_t *d = json_object();
        snprintf(id, sizeof id, "d%d", i0 + i);
        json_object_set_new(d, "id", json_string(id));
        json_object_set_new(d, "text", json_string(texts[i0 + i]));
        json_array_append_new(arr, d);
    }
    json_object_set_new(req, "op", json_string("add"));
    json_object_set_new(req, "collection", json_string(coll));
    json_object_set_new(req, "docs", arr);
    return json_line(req, len);
}

/* ---- concurrent clients -------------------------------------------------- */

/* Each client sends its own list of prepared request lines, one at a time,
 * and records each request's latency. */
typedef struct {
    char **reqs;
    size_t *lens;
    int n;
    double *lat;
} client_t;

static void *client_main(void *arg)
{
    client_t *cl = arg;
    conn_t c;
    conn_open(&c);
    for (int i = 0; i < cl->n; i++) {
        double t = now();
        conn_call(&c, cl->reqs[i], cl->lens[i]);
        cl->lat[i] = now() - t;
    }
    conn_close(&c);
    return NULL;
}

/* Runs n_clients clients over `reqs` (client j takes requests j, j + n,
 * ...); returns the wall time; fills lat_out (n_reqs entries) if given. */
static double run_clients(char **reqs, size_t *lens, int n_reqs,
                          int n_clients, double *lat_out)
{
    client_t cl[MAX_CLIENTS];
    pthread_t th[MAX_CLIENTS];
    double t;
    int k = 0;

    for (int j = 0; j < n_clients; j++) {
        int n = 0;
        cl[j].reqs = malloc((size_t)n_reqs * sizeof(char *));
        cl[j].lens = malloc((size_t)n_reqs * sizeof(size_t));
        cl[j].lat = malloc((size_t)n_reqs * sizeof(double));
        if (!cl[j].reqs || !cl[j].lens || !cl[j].lat)
            die("out of memory", NULL);
        for (int i = j; i < n_reqs; i += n_clients) {
            cl[j].reqs[n] = reqs[i];
            cl[j].lens[n++] = lens[i];
        }
        cl[j].n = n;
    }
    t = now();
    for (int j = 0; j < n_clients; j++)
        if (pthread_create(&th[j], NULL, client_main, &cl[j]))
            die("pthread_create", NULL);
    for (int j = 0; j < n_clients; j++)
        pthread_join(th[j], NULL);
    t = now() - t;
    for (int j = 0; j < n_clients; j++) {
        for (int i = 0; i < cl[j].n && lat_out; i++)
            lat_out[k++] = cl[j].lat[i];
        free(cl[j].reqs);
        free(cl[j].lens);
        free(cl[j].lat);
    }
    return t;
}

/* ---- in-process encoding ------------------------------------------------ */

static double embed_inproc(const sn_model_t *m, sn_ctx_t *ctx, char **texts,
                           int n, int batch)
{
    sn_embedding_t out[64];
    size_t lens[64];
    sn_embed_opts_t opts = {0};
    char err[512];
    double t = now();
    for (int i0 = 0; i0 < n; i0 += batch) {
        int nb = n - i0 < batch ? n - i0 : batch;
        for (int j = 0; j < nb; j++)
            lens[j] = strlen(texts[i0 + j]);
        if (sn_model_embed(m, ctx, (const char *const *)texts + i0, lens, nb,
                           &opts, out, err, sizeof err) < 0)
            die("sn_model_embed", err);
        for (int j = 0; j < nb; j++)
            sn_embedding_free(&out[j]);
    }
    return now() - t;
}

/* ---- encode ------------------------------------------------------------- */

static void bench_encode(const sn_model_t *m, int reps)
{
    static const int batches[] = {1, 8, 32}, lens_[] = {16, 128},
                     clients[] = {1, 8};
    const sn_tokenizer_t *tok = sn_model_tokenizer(m);
    int max_tok = sn_model_max_tokens(m);
    sn_ctx_t *ctx = sn_ctx_new(m);

    if (!ctx)
        die("out of memory", NULL);
    printf("\nencode: embed requests over the socket vs sn_model_embed "
           "in-process (one thread), same texts, same batches\n");
    printf("%-5s %5s %7s %4s %10s %10s %10s %10s %7s\n", "len", "batch",
           "texts", "cli", "sock s/s", "sock tok/s", "inproc s/s",
           "inproc t/s", "ratio");
    for (size_t li = 0; li < 2; li++)
        for (size_t bi = 0; bi < 3; bi++) {
            int batch = batches[bi], len = lens_[li];
            /* about reps x (time for 64 x 128 tokens) of work per cell */
            int n = reps * (len <= 16 ? 256 : 64);
            long n_tok;
            char **texts, **reqs;
            size_t *rl;
            int n_req;
            double t_in;

            n = (n + 8 * batch - 1) / (8 * batch) * (8 * batch);
            texts = make_texts(tok, max_tok, n, len, &n_tok);
            n_req = n / batch;
            reqs = malloc((size_t)n_req * sizeof *reqs);
            rl = malloc((size_t)n_req * sizeof *rl);
            if (!reqs || !rl)
                die("out of memory", NULL);
            for (int r = 0; r < n_req; r++)
                reqs[r] = embed_req(texts + r * batch, batch, &rl[r]);
            embed_inproc(m, ctx, texts, batch * 2, batch); /* warm up */
            t_in = embed_inproc(m, ctx, texts, n, batch);
            for (size_t ci = 0; ci < 2; ci++) {
                double t_s;
                run_clients(reqs, rl, clients[ci] * 2 < n_req
                                          ? clients[ci] * 2
                                          : n_req,
                            clients[ci], NULL); /* warm up */
                t_s = run_clients(reqs, rl, n_req, clients[ci], NULL);
                printf("%-5.0f %5d %7d %4d %10.0f %10.0f %10.0f %10.0f "
                       "%6.0f%%\n",
                       (double)n_tok / n, batch, n, clients[ci], n / t_s,
                       n_tok / t_s, n / t_in, n_tok / t_in,
                       100.0 * t_in / t_s);
                fflush(stdout);
            }
            for (int r = 0; r < n_req; r++)
                free(reqs[r]);
            for (int i = 0; i < n; i++)
                free(texts[i]);
            free(reqs);
            free(rl);
            free(texts);
        }
    sn_ctx_free(ctx);
}

/* ---- ingest ------------------------------------------------------------- */

static void bench_ingest(const sn_model_t *m, int n_docs)
{
    const int batch = 32;
    long n_tok;
    char **texts =
        make_texts(sn_model_tokenizer(m), sn_model_max_tokens(m), n_docs, 16,
                   &n_tok);
    int n_req = (n_docs + batch - 1) / batch;
    char **er = malloc((size_t)n_req * sizeof *er);
    char **ar = malloc((size_t)n_req * sizeof *ar);
    size_t *el = malloc((size_t)n_req * sizeof *el);
    size_t *al = malloc((size_t)n_req * sizeof *al);
    sn_ctx_t *ctx = sn_ctx_new(m);
    double t_e, t_a, t_in;

    if (!er || !ar || !el || !al || !ctx)
        die("out of memory", NULL);
    for (int r = 0; r < n_req; r++) {
        int nb = n_docs - r * batch < batch ? n_docs - r * batch : batch;
        er[r] = embed_req(texts + r * batch, nb, &el[r]);
        ar[r] = add_req(texts, r * batch, nb, "ingest", &al[r]);
    }
    t_in = embed_inproc(m, ctx, texts, n_docs, batch);
    t_e = run_clients(er, el, n_req, 1, NULL);
    t_a = run_clients(ar, al, n_req, 1, NULL);
    printf("\ningest: %d docs of %.0f tokens, requests of %d, one "
           "connection\n",
           n_docs, (double)n_tok / n_docs, batch);
    printf("  in-process sn_model_embed   %8.0f docs/s\n", n_docs / t_in);
    printf("  socket embed                %8.0f docs/s\n", n_docs / t_e);
    printf("  socket add (new collection) %8.0f docs/s  = %.0f%% of "
           "socket embed, %.0f%% of in-process (target >= 80%%)\n",
           n_docs / t_a, 100.0 * t_e / t_a, 100.0 * t_in / t_a);
    for (int r = 0; r < n_req; r++) {
        free(er[r]);
        free(ar[r]);
    }
    for (int i = 0; i < n_docs; i++)
        free(texts[i]);
    free(texts);
    free(er);
    free(ar);
    free(el);
    free(al);
    sn_ctx_free(ctx);
}

/* ---- search ------------------------------------------------------------- */

static void fill_store(const char *coll, sn_index_kind_t kind,
                       const char *model_id, int dim, const float *v, int n)
{
    sn_store_t *st;
    char err[512];
    const int batch = 1000;
    sn_doc_in_t *docs = calloc((size_t)batch, sizeof *docs);
    sn_chunk_in_t *ch = calloc((size_t)batch, sizeof *ch);
    char(*ids)[24] = calloc((size_t)batch, sizeof *ids);
    char(*txt)[24] = calloc((size_t)batch, sizeof *txt);
    double t = now();

    if (!docs || !ch || !ids || !txt)
        die("out of memory", NULL);
    if (sn_store_open(g_db, &st, err, sizeof err) < 0)
        die("sn_store_open", err);
    if (sn_store_collection(st, coll, model_id, dim, kind, err,
                            sizeof err) < 0)
        die("sn_store_collection", err);
    for (int i0 = 0; i0 < n; i0 += batch) {
        int nb = n - i0 < batch ? n - i0 : batch;
        for (int j = 0; j < nb; j++) {
            snprintf(ids[j], sizeof ids[j], "v%d", i0 + j);
            snprintf(txt[j], sizeof txt[j], "vector %d", i0 + j);
            ch[j].start = 0;
            ch[j].end = (int32_t)strlen(txt[j]);
            ch[j].vec = v + (size_t)(i0 + j) * dim;
            docs[j].id = ids[j];
            docs[j].text = txt[j];
            docs[j].text_len = strlen(txt[j]);
            docs[j].chunks = &ch[j];
            docs[j].n_chunks = 1;
        }
        if (sn_store_add(st, coll, model_id, docs, nb, NULL, err,
                         sizeof err) < 0)
            die("sn_store_add", err);
    }
    sn_store_close(st);
    printf("  %-10s %d vectors written to SQLite in %.1f s\n", coll, n,
           now() - t);
    free(docs);
    free(ch);
    free(ids);
    free(txt);
}

/* Whether collection coll already holds n documents (a --db-dir run). */
static int coll_filled(const char *coll, int n)
{
    sn_collection_info_t *ci = NULL;
    sn_store_t *st;
    char err[512];
    int n_ci = 0, found = 0;

    if (!g_keep)
        return 0;
    if (sn_store_open(g_db, &st, err, sizeof err) < 0)
        die("sn_store_open", err);
    if (sn_store_collections(st, &ci, &n_ci, err, sizeof err) < 0)
        die("sn_store_collections", err);
    for (int i = 0; i < n_ci; i++)
        found |= !strcmp(ci[i].name, coll) && ci[i].n_docs == n;
    sn_collection_info_free(ci, n_ci);
    sn_store_close(st);
    if (found)
        printf("  %-10s %d vectors already in '%s'\n", coll, n, g_db);
    return found;
}

/* The exact top K of each query by brute force (sgemm over blocks of the
 * database, a sorted insert per score): the recall reference, computed
 * apart from faiss. */
static void exact_topk(const float *v, int n, const float *q, int nq,
                       int dim, int (*truth)[K])
{
    enum { B = 4096 };
    float *s = malloc((size_t)nq * B * sizeof *s);
    float(*best)[K] = malloc((size_t)nq * sizeof *best);
    double t = now();

    if (!s || !best)
        die("out of memory", NULL);
    for (int i = 0; i < nq; i++)
        for (int j = 0; j < K; j++) {
            best[i][j] = -INFINITY;
            truth[i][j] = -1;
        }
    for (int b0 = 0; b0 < n; b0 += B) {
        int nb = n - b0 < B ? n - b0 : B;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nb, dim,
                    1.0f, q, dim, v + (size_t)b0 * dim, dim, 0.0f, s, nb);
        for (int i = 0; i < nq; i++) {
            const float *row = s + (size_t)i * nb;
            for (int j = 0; j < nb; j++) {
                float x = row[j];
                int p = K - 1;
                if (!(x > best[i][p]))
                    continue;
                for (; p > 0 && best[i][p - 1] < x; p--) {
                    best[i][p] = best[i][p - 1];
                    truth[i][p] = truth[i][p - 1];
                }
                best[i][p] = x;
                truth[i][p] = b0 + j;
            }
        }
    }
    printf("  exact top-%d of %d queries by brute force: %.1f s\n", K, nq,
           now() - t);
    free(s);
    free(best);
}

static double recall_of(int (*got)[K], int (*truth)[K], int nq)
{
    long hit = 0;
    for (int i = 0; i < nq; i++)
        for (int a = 0; a < K; a++)
            for (int b = 0; b < K; b++)
                hit += got[i][a] >= 0 && got[i][a] == truth[i][b];
    return (double)hit / ((double)nq * K);
}

typedef struct {
    sn_store_t *st;
    const char *coll;
    const float *q;
    int dim, n;
    double *lat;
    int (*hits)[K];
} sq_t;

/* In-process: sn_store_search_vec one query at a time. */
static void store_queries(sq_t *s)
{
    char err[512];
    for (int i = 0; i < s->n; i++) {
        sn_hit_t *h;
        int nh;
        double t = now();
        if (sn_store_search_vec(s->st, s->coll, s->q + (size_t)i * s->dim,
                                s->dim, K, NULL, &h, &nh, err,
                                sizeof err) < 0)
            die("sn_store_search_vec", err);
        s->lat[i] = now() - t;
        for (int j = 0; j < K; j++)
            s->hits[i][j] = j < nh ? atoi(h[j].id + 1) : -1;
        sn_hits_free(h, nh);
    }
}

/* Over the socket: client j of n_cli sends requests j, j + n_cli, ...,
 * one in flight, and reads the hits' ids ("v123") from each reply. */
typedef struct {
    char **reqs;
    size_t *lens;
    int j, n_cli, n;
    double *lat;
    int (*hits)[K];
} sc_t;

static void *socket_client(void *arg)
{
    sc_t *s = arg;
    conn_t c;
    conn_open(&c);
    for (int i = s->j; i < s->n; i += s->n_cli) {
        double t = now();
        conn_call(&c, s->reqs[i], s->lens[i]);
        s->lat[i] = now() - t;
        const char *p = c.buf;
        for (int h = 0; h < K; h++) {
            p = p ? strstr(p, "{\"id\":\"v") : NULL;
            s->hits[i][h] = p ? atoi(p + 8) : -1;
            if (p)
                p += 8;
        }
    }
    conn_close(&c);
    return NULL;
}

static void report(const char *what, int n_cli, double wall, double *lat,
                   int n, double recall)
{
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    printf("  %-30s %4d %6d %10.0f %9.3f %9.3f %9.4f\n", what, n_cli, n,
           n / wall, lat[n / 2] * 1e3, lat[(int)(n * 0.99)] * 1e3, recall);
    fflush(stdout);
}

/* A search request for vector x, as a client would send it. */
static char *vector_req(const char *coll, const float *x, int dim, int ef,
                        size_t *len)
{
    size_t cap = 160 + (size_t)dim * 18, n;
    char *r = malloc(cap);
    if (!r)
        die("out of memory", NULL);
    n = (size_t)snprintf(r, cap, "{\"op\":\"search\",\"collection\":\"%s\","
                         "\"k\":%d,", coll, K);
    if (ef)
        n += (size_t)snprintf(r + n, cap - n, "\"ef\":%d,", ef);
    n += (size_t)snprintf(r + n, cap - n, "\"vector\":[");
    for (int d = 0; d < dim; d++)
        n += (size_t)snprintf(r + n, cap - n, d ? ",%.9g" : "%.9g",
                              (double)x[d]);
    n += (size_t)snprintf(r + n, cap - n, "]}\n");
    *len = n;
    return r;
}

/* The size of the index file of collection `coll` (its payload per
 * vector is the index's bytes per vector, as saved). */
static long index_file_size(sn_store_t *st, const char *coll)
{
    sqlite3_stmt *s;
    char path[700];
    struct stat sb;
    long id = -1;

    if (sqlite3_prepare_v2(sn__store_db(st), "SELECT id FROM collections "
                           "WHERE name = ?1", -1, &s, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(s, 1, coll, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW)
        id = (long)sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    snprintf(path, sizeof path, "%s.idx/%ld.faiss", g_db, id);
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* The index kinds measured (--search-kinds): Flat, and the HNSW kinds a
 * store and a daemon can be set to (sn_store_set_hnsw, sensed --hnsw). */
static const struct {
    const char *name;
    int flat;
    sn_hnsw_kind_t hnsw;
} S_KINDS[] = {
    {"flat", 1, SN_HNSW_F32},
    {"hnsw", 0, SN_HNSW_F32},
    {"sq8", 0, SN_HNSW_SQ8},
    {"faiss", 0, SN_HNSW_FAISS},
    {"ivf", 0, SN_HNSW_IVF},
};
#define N_S_KINDS (int)(sizeof S_KINDS / sizeof *S_KINDS)

static void bench_search(const int *sizes, int n_sizes, int n_q, int dim,
                         const int *want, const int *efs, int n_efs)
{
    static const int clients[] = {1, 8, 32};
    char model_id[64];

    snprintf(model_id, sizeof model_id, "synthetic-%d", dim);
    for (int si = 0; si < n_sizes; si++) {
        int n = sizes[si];
        float *x, *q;
        int(*truth)[K] = malloc((size_t)n_q * sizeof *truth);
        int(*got)[K] = malloc((size_t)n_q * sizeof *got);
        double *lat = malloc((size_t)n_q * sizeof *lat), t;
        char err[512], coll[2][32];
        sn_store_t *st;

        if (!truth || !got || !lat)
            die("out of memory", NULL);
        printf("\nsearch: %d synthetic clustered %d-d vectors (bench/synth.h)"
               ", k = %d, %d queries (Flat: fewer when large)\n", n, dim, K,
               n_q);
        daemon_stop(); /* the vectors go into the daemon's database */
        t = now();
        x = make_data(n, n_q, dim, 0);
        q = x + (size_t)n * dim;
        printf("  data made in %.1f s\n", now() - t);
        exact_topk(x, n, q, n_q, dim, truth);
        /* one Flat collection, one HNSW collection that every HNSW kind
         * rebuilds in turn */
        for (int k = 0; k < 2; k++) {
            snprintf(coll[k], sizeof coll[k], "vec_%s_%d",
                     k ? "hnsw" : "flat", n);
            if ((k ? want[1] || want[2] || want[3] || want[4] : want[0]) &&
                !coll_filled(coll[k], n))
                fill_store(coll[k], k ? SN_INDEX_HNSW : SN_INDEX_FLAT,
                           model_id, dim, x, n);
        }
        printf("  %-30s %4s %6s %10s %9s %9s %9s\n", "path, index", "cli",
               "n", "queries/s", "p50 ms", "p99 ms", "recall@10");
        for (int ki = 0; ki < N_S_KINDS; ki++) {
            const char *cn = coll[S_KINDS[ki].flat ? 0 : 1];
            const char *kname = S_KINDS[ki].name;
            int nq = S_KINDS[ki].flat
                         ? (int)fmin(n_q, fmax(100, n_q * 1e4 / n))
                         : n_q;
            if (!want[ki])
                continue;
            daemon_stop();
            g_hnsw = S_KINDS[ki].hnsw;

            /* in-process: the store alone, one query at a time, one
             * thread; the first search builds the index on every core */
            if (sn_store_open(g_db, &st, err, sizeof err) < 0)
                die("sn_store_open", err);
            sn_store_set_hnsw(st, g_hnsw);
            sq_t s = {st, cn, q, dim, nq, lat, got};
            sn_hit_t *h;
            int nh;
            t = now();
            if (sn_store_search_vec(st, cn, q, dim, K, NULL, &h, &nh, err,
                                    sizeof err) < 0)
                die("sn_store_search_vec", err);
            sn_hits_free(h, nh);
            double build = now() - t;
            t = now();
            store_queries(&s);
            t = now() - t;
            char what[64];
            snprintf(what, sizeof what, "in-process store, %s", kname);
            report(what, 1, t, lat, nq, recall_of(got, truth, nq));
            sn_store_close(st); /* saves the index the daemon will load */
            if (sn_store_open(g_db, &st, err, sizeof err) < 0)
                die("sn_store_open", err);
            long fsz = index_file_size(st, cn);
            sn_store_close(st);
            printf("  %-10s index built in %.1f s (first search, every "
                   "core); file %.1f MiB = %.0f bytes/vector\n", kname,
                   build, fsz / 1048576.0, (double)fsz / n);

            /* over the socket: the daemon restarted on that database */
            printf("  daemon (--hnsw %s) restarted: %.2f s to the first "
                   "stats reply\n", sn_hnsw_kind_name(g_hnsw),
                   daemon_start(NULL, 0, NULL));
            for (int e = 0; e < (S_KINDS[ki].flat ? 1 : n_efs); e++) {
                char **reqs = malloc((size_t)nq * sizeof *reqs);
                size_t *rl = malloc((size_t)nq * sizeof *rl);
                int ef = S_KINDS[ki].flat ? 0 : efs[e];
                if (!reqs || !rl)
                    die("out of memory", NULL);
                for (int i = 0; i < nq; i++)
                    reqs[i] = vector_req(cn, q + (size_t)i * dim, dim, ef,
                                         &rl[i]);
                for (size_t ci = 0; ci < sizeof clients / sizeof *clients;
                     ci++) {
                    int nc = clients[ci];
                    sc_t sc[MAX_CLIENTS];
                    pthread_t th[MAX_CLIENTS];
                    /* the daemon's first pass over the queries is
                     * reported apart ("cold"): it maps the database
                     * pages it reads for the first time (mmap), as a
                     * daemon just started does; the timed pass after it
                     * is the steady state, like the in-process rows,
                     * whose index build has read every page */
                    int cold = e == 0 && ci == 0;
                    if (ef && nc > 1)
                        continue; /* an ef sweep: one client */
                    for (int pass = 0; pass < 2; pass++) { /* warm, timed */
                        t = now();
                        for (int j = 0; j < nc; j++) {
                            sc[j] = (sc_t){reqs, rl, j, nc,
                                           pass || cold ? nq : nc, lat,
                                           got};
                            if (pthread_create(&th[j], NULL, socket_client,
                                               &sc[j]))
                                die("pthread_create", NULL);
                        }
                        for (int j = 0; j < nc; j++)
                            pthread_join(th[j], NULL);
                        t = now() - t;
                        if (cold && !pass) {
                            snprintf(what, sizeof what, "socket, %s, cold",
                                     kname);
                            report(what, nc, t, lat, nq,
                                   recall_of(got, truth, nq));
                        }
                    }
                    if (ef)
                        snprintf(what, sizeof what, "socket, %s, ef %d",
                                 kname, ef);
                    else
                        snprintf(what, sizeof what, "socket, %s", kname);
                    report(what, nc, t, lat, nq, recall_of(got, truth, nq));
                }
                for (int i = 0; i < nq; i++)
                    free(reqs[i]);
                free(reqs);
                free(rl);
            }
            printf("  daemon VmRSS with the %s index loaded: %.1f MiB\n",
                   kname, vm_rss_kb(g_pid) / 1024.0);
            /* the database is read through mmap: VmRSS counts the pages
             * mapped so far; the daemon's own memory is RssAnon */
            printf("  daemon RssAnon (its own memory, index included): "
                   "%.1f MiB\n", status_kb(g_pid, "RssAnon:") / 1024.0);
        }
        free(x);
        free(truth);
        free(got);
        free(lat);
    }
}

/* ---- main --------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static char sensed_buf[4096];
    int reps = 3, n_docs = 2000, do_encode = 1, do_ingest = 1, do_search = 0,
        n_q = 1000, sizes[MAX_SIZES] = {10000}, n_sizes = 1, dim = 384;
    int want[N_S_KINDS] = {1, 1, 0, 0, 0}, efs[MAX_SIZES] = {0}, n_efs = 1;
    char err[512];
    sn_model_t *m;
    double t;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--sensed") && v)
            g_sensed = argv[++i];
        else if (!strcmp(a, "--model") && v)
            g_model = argv[++i];
        else if (!strcmp(a, "--threads") && v)
            g_threads = atoi(argv[++i]);
        else if (!strcmp(a, "--reps") && v)
            reps = atoi(argv[++i]);
        else if (!strcmp(a, "--docs") && v)
            n_docs = atoi(argv[++i]);
        else if (!strcmp(a, "--queries") && v)
            n_q = atoi(argv[++i]);
        else if (!strcmp(a, "--dim") && v)
            dim = atoi(argv[++i]);
        else if (!strcmp(a, "--no-encode"))
            do_encode = 0;
        else if (!strcmp(a, "--no-ingest"))
            do_ingest = 0;
        else if (!strcmp(a, "--search"))
            do_search = 1;
        else if (!strcmp(a, "--search-sizes") && v) {
            char *p = argv[++i];
            do_search = 1;
            for (n_sizes = 0; *p && n_sizes < MAX_SIZES; n_sizes++) {
                sizes[n_sizes] = (int)strtol(p, &p, 10);
                if (*p == ',')
                    p++;
            }
        } else if (!strcmp(a, "--search-kinds") && v) {
            for (int k = 0; k < N_S_KINDS; k++)
                want[k] = strstr(v, S_KINDS[k].name) != NULL;
            i++;
        } else if (!strcmp(a, "--db-dir") && v) {
            g_dir = argv[++i];
            g_keep = 1;
        } else if (!strcmp(a, "--ef") && v) {
            char *p = argv[++i];
            for (n_efs = 0; *p && n_efs < MAX_SIZES; n_efs++) {
                efs[n_efs] = (int)strtol(p, &p, 10);
                if (*p == ',')
                    p++;
            }
        } else {
            fprintf(stderr,
                    "usage: bench_socket [--sensed PATH] [--model PATH|"
                    "default] [--threads N] [--reps R] [--docs "
                    "N] [--no-encode] [--no-ingest] [--search] "
                    "[--search-sizes N,N,...] [--search-kinds flat,hnsw,sq8,"
                    "faiss,ivf] [--ef E,E,...] [--queries Q] [--dim D] "
                    "[--db-dir DIR]\n");
            return 2;
        }
    }
    if (reps < 1 || n_docs < 1 || n_q < 100 || dim < 1 || dim > 4096)
        die("--reps >= 1, --docs >= 1, --queries >= 100, --dim 1 to 4096",
            NULL);
    if (!g_sensed) {
        const char *slash = strrchr(argv[0], '/');
        snprintf(sensed_buf, sizeof sensed_buf, "%.*ssensed",
                 slash ? (int)(slash - argv[0] + 1) : 0, argv[0]);
        g_sensed = sensed_buf;
    }
    if (access(g_sensed, X_OK))
        die("cannot run sensed (--sensed PATH)", g_sensed);
    if (g_keep ? mkdir(g_dir, 0700) != 0 && errno != EEXIST
               : !mkdtemp(g_dir_tmp))
        die(g_keep ? "mkdir --db-dir" : "mkdtemp", strerror(errno));
    snprintf(g_sock, sizeof g_sock, "%s/s.sock", g_dir);
    snprintf(g_db, sizeof g_db, "%s/sense.db", g_dir);
    snprintf(g_log, sizeof g_log, "%s/sensed.log", g_dir);
    signal(SIGPIPE, SIG_IGN);

    t = now();
    if (sn_model_load(g_model, &m, err, sizeof err) < 0)
        die("sn_model_load", err);
    printf("model %s: %s, dim %d, max %d tokens; loaded in-process in "
           "%.3f s\n",
           g_model, sn_model_name(m), sn_model_dim(m), sn_model_max_tokens(m),
           now() - t);
    printf("sensed: %s, encoder workers: %s; OPENBLAS_CORETYPE=%s\n",
           g_sensed, g_threads ? "as --threads" : "default",
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE")
                                       : "(unset)");

    t = daemon_start(NULL, 0, NULL);
    printf("\nstartup: %.3f s from fork to the first stats reply; VmRSS "
           "%.1f MiB\n",
           t, vm_rss_kb(g_pid) / 1024.0);
    if (do_encode)
        bench_encode(m, reps);
    if (do_ingest) {
        bench_ingest(m, n_docs);
        printf("  daemon VmRSS after ingest: %.1f MiB\n",
               vm_rss_kb(g_pid) / 1024.0);
    }
    if (do_search)
        bench_search(sizes, n_sizes, n_q, dim, want, efs, n_efs);
    daemon_stop();
    sn_model_free(m);
    if (!g_keep) {
        char p[300];
        snprintf(p, sizeof p, "%s/sensed.log", g_dir);
        unlink(p);
        unlink(g_sock);
        snprintf(p, sizeof p, "rm -rf '%s'", g_dir);
        if (system(p) != 0)
            fprintf(stderr, "bench_socket: cannot remove '%s'\n", g_dir);
    }
    return 0;
}
