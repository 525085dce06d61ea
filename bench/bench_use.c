/*
 * bench_use.c -- throughput of the default model (Universal Sentence Encoder
 * Lite) in C: tokenize + encode N sentences built by repeating
 * ../shared/fixtures/sentences.json, in batches, timed over the whole
 * process (model load included) and over the encoding alone. Its twin,
 * bench/use_tfjs.js, does the same with the TF.js reference and prints the
 * ratio of the two.
 *
 * Run:
 *   cmake --build build --target bench_use
 *   build/bench_use [-n 2000] [-b 16] [-m MODEL_DIR] [-s SENTENCES_JSON]
 *   node bench/use_tfjs.js --c build/bench_use      # both, with the ratio
 * MODEL_DIR defaults to $SENSE_DEFAULT_MODEL, else
 * ~/.local/share/sense/models/use-lite (scripts/setup puts it there).
 * OpenBLAS uses every core unless OPENBLAS_NUM_THREADS says otherwise.
 *
 * Prints a human-readable summary on stderr and one JSON line on stdout:
 *   {"impl":"c","n":2000,"batch":16,"load_s":..,"encode_s":..,
 *    "total_s":..,"encode_per_s":..,"total_per_s":..,"checksum":..}
 *
 * Grid modes, encoding in-process only (the model loaded first):
 *   build/bench_use --grid [--rounds 3] [--seconds 1] [--texts OUT_JSON]
 *   build/bench_use --serve [--texts OUT_JSON]   # driven by use_tfjs.js
 * Both first build GRID_POOL (256) different texts per length, ~16 and ~128
 * model tokens as this tokenizer counts them (128 is the graph's clip; USE
 * Lite adds no specials): seeded random words of the sentences file (its
 * printable-ASCII words), appended while the count stays within the
 * length. --texts writes them, with their token counts, as JSON
 * {"lengths":[{"length":16,"texts":[..],"tokens":[..]},..]}, which is how
 * use_tfjs.js --grid gives TF.js the same texts. A call tokenizes and
 * encodes one batch, the pool walked cyclically from its start; a turn is
 * one warm-up call then timed calls for at least --seconds (and
 * GRID_MIN_CALLS). --grid prints C's table, batch {1, 8, 32} x length,
 * median sentences/s and tokens/s over --rounds turns. --serve answers
 * stdin commands with one JSON line each: "run LENGTH BATCH SECONDS" (one
 * turn: calls, sentences, tokens, seconds), "vec LENGTH INDEX" (the
 * embedding of one pool text), "quit".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "embed_int.h"
#include "tokenizer_int.h"

#define MAX_BATCH 1024

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The process's start time in CLOCK_MONOTONIC seconds, from
 * /proc/self/stat (field 22, in clock ticks since boot), so that "whole
 * process" includes the loader and libraries as node's does; falls back to
 * the time main() started. */
static double process_start_s(double fallback)
{
    FILE *f = fopen("/proc/self/stat", "r");
    char buf[1024];
    if (!f)
        return fallback;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return fallback;
    unsigned long long start = 0;
    /* after ")": state is field 3; starttime is field 22 */
    int field = 2;
    for (char *t = strtok(p + 1, " "); t; t = strtok(NULL, " ")) {
        if (++field == 22) {
            start = strtoull(t, NULL, 10);
            break;
        }
    }
    struct timespec bt;
    clock_gettime(CLOCK_BOOTTIME, &bt);
    double boot_now = (double)bt.tv_sec + bt.tv_nsec * 1e-9;
    double s = (double)start / (double)sysconf(_SC_CLK_TCK);
    double age = boot_now - s;
    return age > 0 && age < 60 ? now_s() - age : fallback;
}

static void default_sentences(char *buf, size_t len)
{
    /* __FILE__ is this file's absolute path under CMake */
    const char *f = __FILE__, *slash = strrchr(f, '/');
    int dir = slash ? (int)(slash - f) : 0;
    snprintf(buf, len, "%.*s/../../shared/fixtures/sentences.json", dir, f);
}

/* ---- --grid / --serve: batch x length, in-process ---------------------- */

#define GRID_POOL 256           /* texts per length, each different */
#define GRID_MAX_WORDS 8192     /* words taken from the sentences file */
#define GRID_MAX_TEXT 4096      /* bytes of one built text */
#define GRID_MAX_LINE 256       /* a --serve command */
#define GRID_MIN_CALLS 2        /* timed calls per turn, at least */

static const int grid_lens[] = {16, 128};
static const int grid_batches[] = {1, 8, 32};
#define N_GRID_LENS (int)(sizeof grid_lens / sizeof *grid_lens)
#define N_GRID_BATCHES (int)(sizeof grid_batches / sizeof *grid_batches)

typedef struct {
    sn__use_t *m;
    sn__use_ctx_t *ctx;
    const sn_tokenizer_t *tok;
    int max_tok, dim;
    int32_t *ids;               /* [MAX_BATCH * max_tok] */
    int *lens;                  /* [MAX_BATCH] */
    float *out;                 /* [MAX_BATCH * dim] */
    sn_encoding_t enc;
    char *texts[N_GRID_LENS][GRID_POOL];
    int n_tok[N_GRID_LENS][GRID_POOL];  /* model tokens, after clipping */
} grid_t;

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The words of the sentences file that are printable ASCII, no spaces:
 * our own fixture's vocabulary, in its order, duplicates kept (frequent
 * words come up more often, as in text). */
static int grid_words(const json_t *sents, const char **words, int cap)
{
    int n = 0;
    for (size_t i = 0; i < json_array_size(sents) && n < cap; i++) {
        const char *s = json_string_value(json_array_get(sents, i));
        while (s && *s && n < cap) {
            while (*s == ' ')
                s++;
            const char *e = s;
            int ok = 1;
            while (*e && *e != ' ') {
                ok &= *e > 0x20 && *e < 0x7f;
                e++;
            }
            if (e > s && ok) {
                char *w = strndup(s, (size_t)(e - s));
                if (!w) {
                    while (n > 0)
                        free((char *)words[--n]);
                    return -1;
                }
                words[n++] = w;
            }
            s = e;
        }
    }
    return n;
}

static int grid_count(grid_t *g, const char *text, size_t len, char *err,
                      size_t err_len)
{
    if (sn_tokenizer_encode(g->tok, text, len, 0, &g->enc, err, err_len) != 0)
        return -1;
    return g->enc.n_tokens;
}

/* One text of at most `want` model tokens (as close as the words allow):
 * random words appended while the C tokenizer's count stays <= want; a
 * word that overshoots is replaced by another, up to 16 tries. The first
 * word is capitalized and the text ends with '.', so it reads like a (bad)
 * sentence. */
static int grid_text(grid_t *g, const char **words, int n_words, int want,
                     uint64_t seed, char *buf, char *err, size_t err_len)
{
    size_t len = 0;
    int n = 0, misses = 0;
    buf[0] = '\0';
    while (n < want && misses < 16) {
        const char *w = words[splitmix64(&seed) % (uint64_t)n_words];
        size_t wl = strlen(w);
        if (len + 1 + wl + 2 > GRID_MAX_TEXT)
            break;
        size_t len2 = len;
        if (len2)
            buf[len2++] = ' ';
        memcpy(buf + len2, w, wl);
        len2 += wl;
        if (len == 0 && buf[0] >= 'a' && buf[0] <= 'z')
            buf[0] = (char)(buf[0] - 'a' + 'A');
        buf[len2] = '.';
        int c = grid_count(g, buf, len2 + 1, err, err_len);
        if (c < 0)
            return -1;
        if (c <= want) {
            len = len2;
            n = c;
            misses = 0;
        } else {
            misses++;
        }
    }
    buf[len] = '.';
    buf[len + 1] = '\0';
    return grid_count(g, buf, len + 1, err, err_len);
}

/* GRID_POOL different texts per length, deterministic */
static int grid_build(grid_t *g, const json_t *sents, char *err,
                      size_t err_len)
{
    static const char *words[GRID_MAX_WORDS];
    char buf[GRID_MAX_TEXT];
    int n_words = grid_words(sents, words, GRID_MAX_WORDS), rc = -1;
    if (n_words < 16) {
        snprintf(err, err_len, n_words < 0 ? "out of memory"
                                           : "the sentences file has %d "
                                             "usable words", n_words);
        goto fail;
    }
    for (int l = 0; l < N_GRID_LENS; l++) {
        for (int i = 0; i < GRID_POOL; i++) {
            for (uint64_t attempt = 0;; attempt++) {
                uint64_t seed = ((uint64_t)grid_lens[l] << 40) ^
                                ((uint64_t)i << 16) ^ attempt;
                int c = grid_text(g, words, n_words, grid_lens[l], seed, buf,
                                  err, err_len);
                if (c < 0)
                    goto fail;
                int dup = 0;
                for (int j = 0; j < i && !dup; j++)
                    dup = strcmp(g->texts[l][j], buf) == 0;
                if (dup && attempt < 100)
                    continue;
                g->texts[l][i] = strdup(buf);
                if (!g->texts[l][i]) {
                    snprintf(err, err_len, "out of memory");
                    goto fail;
                }
                g->n_tok[l][i] = c < g->max_tok ? c : g->max_tok;
                break;
            }
        }
    }
    rc = 0;
fail:
    for (int i = 0; i < n_words; i++)
        free((char *)words[i]);
    return rc;
}

static int grid_write(const grid_t *g, const char *path, char *err,
                      size_t err_len)
{
    json_t *root = json_object(), *lens = json_array();
    int rc = -1;
    if (!root || !lens)
        goto fail;
    for (int l = 0; l < N_GRID_LENS; l++) {
        json_t *cell = json_object(), *texts = json_array(),
               *toks = json_array();
        if (!cell || !texts || !toks) {
            json_decref(cell);
            json_decref(texts);
            json_decref(toks);
            goto fail;
        }
        for (int i = 0; i < GRID_POOL; i++) {
            json_array_append_new(texts, json_string(g->texts[l][i]));
            json_array_append_new(toks, json_integer(g->n_tok[l][i]));
        }
        json_object_set_new(cell, "length", json_integer(grid_lens[l]));
        json_object_set_new(cell, "texts", texts);
        json_object_set_new(cell, "tokens", toks);
        json_array_append_new(lens, cell);
    }
    json_object_set_new(root, "lengths", lens);
    lens = NULL;
    if (json_dump_file(root, path, JSON_INDENT(1)) != 0) {
        snprintf(err, err_len, "cannot write '%s'", path);
        goto fail;
    }
    rc = 0;
fail:
    if (rc && !*err)
        snprintf(err, err_len, "out of memory");
    json_decref(lens);
    json_decref(root);
    return rc;
}

/* One call: tokenize texts [i0, i0 + b) of the pool (cyclically) and
 * encode them, as the daemon does for one embed request. */
static int grid_call(grid_t *g, int l, int b, int i0, long *n_tokens,
                     double *checksum, char *err, size_t err_len)
{
    int nt = 0;
    for (int j = 0; j < b; j++) {
        const char *t = g->texts[l][(i0 + j) % GRID_POOL];
        if (sn_tokenizer_encode(g->tok, t, strlen(t), g->max_tok, &g->enc,
                                err, err_len) != 0)
            return -1;
        if (g->enc.n_tokens)
            memcpy(g->ids + nt, g->enc.ids,
                   (size_t)g->enc.n_tokens * sizeof *g->ids);
        g->lens[j] = g->enc.n_tokens;
        nt += g->enc.n_tokens;
    }
    if (sn__use_forward(g->m, g->ctx, g->ids, g->lens, b, NULL, g->out, err,
                        err_len) != 0)
        return -1;
    for (int j = 0; j < b; j++)
        *checksum += g->out[(size_t)j * (size_t)g->dim];
    *n_tokens += nt;
    return 0;
}

/* One turn of a cell: a warm-up call, then timed calls (the pool walked
 * from its start, as use_tfjs.js does) for at least `seconds` and
 * GRID_MIN_CALLS calls. */
static int grid_turn(grid_t *g, int l, int b, double seconds, int *calls,
                     long *sentences, long *tokens, double *elapsed,
                     char *err, size_t err_len)
{
    long tok = 0;
    double sum = 0;
    if (grid_call(g, l, b, 0, &tok, &sum, err, err_len) != 0)
        return -1;
    int n = 0;
    tok = 0;
    double t0 = now_s(), t = t0;
    while (n < GRID_MIN_CALLS || t - t0 < seconds) {
        if (grid_call(g, l, b, n * b, &tok, &sum, err, err_len) != 0)
            return -1;
        n++;
        t = now_s();
    }
    *calls = n;
    *sentences = (long)n * b;
    *tokens = tok;
    *elapsed = t - t0;
    return 0;
}

static int grid_len_index(int len)
{
    for (int l = 0; l < N_GRID_LENS; l++)
        if (grid_lens[l] == len)
            return l;
    return -1;
}

/* "vec LENGTH INDEX": the embedding of one pool text, alone, as JSON */
static void grid_vec(grid_t *g, int l, int i)
{
    char err[1024];
    long tok = 0;
    double sum = 0;
    if (grid_call(g, l, 1, i, &tok, &sum, err, sizeof err) != 0) {
        json_t *e = json_pack("{s:b,s:s}", "ok", 0, "error", err);
        char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;
        printf("%s\n", s ? s : "{\"ok\":false}");
        free(s);
        json_decref(e);
        return;
    }
    printf("{\"ok\":true,\"vec\":[");
    for (int k = 0; k < g->dim; k++)
        printf("%s%.9g", k ? "," : "", (double)g->out[k]);
    printf("]}\n");
}

/* --serve: "run LENGTH BATCH SECONDS" -> one JSON line; "vec LENGTH
 * INDEX" -> {"ok":true,"vec":[..]}; "quit" ends */
static int grid_serve(grid_t *g)
{
    char line[GRID_MAX_LINE], err[1024];
    printf("{\"ok\":true,\"ready\":true}\n");
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        int len, b, calls;
        double seconds, elapsed;
        long sentences, tokens;
        err[0] = '\0';
        if (strncmp(line, "quit", 4) == 0)
            break;
        if (sscanf(line, "vec %d %d", &len, &b) == 2) {
            if (grid_len_index(len) < 0 || b < 0 || b >= GRID_POOL)
                printf("{\"ok\":false,\"error\":\"bad command\"}\n");
            else
                grid_vec(g, grid_len_index(len), b);
            fflush(stdout);
            continue;
        }
        if (sscanf(line, "run %d %d %lf", &len, &b, &seconds) != 3 ||
            grid_len_index(len) < 0 || b < 1 || b > MAX_BATCH ||
            !(seconds >= 0)) {
            printf("{\"ok\":false,\"error\":\"bad command\"}\n");
        } else if (grid_turn(g, grid_len_index(len), b, seconds, &calls,
                             &sentences, &tokens, &elapsed, err,
                             sizeof err) != 0) {
            json_t *e = json_pack("{s:b,s:s}", "ok", 0, "error", err);
            char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;
            printf("%s\n", s ? s : "{\"ok\":false}");
            free(s);
            json_decref(e);
        } else {
            printf("{\"ok\":true,\"length\":%d,\"batch\":%d,\"calls\":%d,"
                   "\"sentences\":%ld,\"tokens\":%ld,\"seconds\":%.6f}\n",
                   len, b, calls, sentences, tokens, elapsed);
        }
        fflush(stdout);
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* --grid alone: the C side of the table, median of `rounds` turns */
static int grid_table(grid_t *g, int rounds, double seconds)
{
    char err[1024];
    printf("%6s %5s %14s %14s\n", "tokens", "batch", "sentences/s",
           "tokens/s");
    for (int l = 0; l < N_GRID_LENS; l++) {
        for (int bi = 0; bi < N_GRID_BATCHES; bi++) {
            double sps[64], tps[64];
            int r_n = rounds < 64 ? rounds : 64;
            for (int r = 0; r < r_n; r++) {
                int calls;
                long sentences, tokens;
                double elapsed;
                if (grid_turn(g, l, grid_batches[bi], seconds, &calls,
                              &sentences, &tokens, &elapsed, err,
                              sizeof err) != 0) {
                    fprintf(stderr, "bench_use: %s\n", err);
                    return 1;
                }
                sps[r] = (double)sentences / elapsed;
                tps[r] = (double)tokens / elapsed;
            }
            qsort(sps, (size_t)r_n, sizeof *sps, cmp_double);
            qsort(tps, (size_t)r_n, sizeof *tps, cmp_double);
            printf("%6d %5d %14.1f %14.0f\n", grid_lens[l], grid_batches[bi],
                   sps[r_n / 2], tps[r_n / 2]);
            fflush(stdout);
        }
    }
    return 0;
}

static int grid_main(const char *model_dir, const char *sent_path,
                     const char *texts_out, int serve, int rounds,
                     double seconds)
{
    char err[1024] = "";
    grid_t *g = calloc(1, sizeof *g);
    json_error_t je;
    json_t *sents = json_load_file(sent_path, 0, &je);
    int rc = 1;
    if (!g) {
        fprintf(stderr, "bench_use: out of memory\n");
        goto fail;
    }
    if (!json_is_array(sents)) {
        fprintf(stderr, "bench_use: '%s': %s\n", sent_path,
                sents ? "not an array of strings" : je.text);
        goto fail;
    }
    if (sn__use_load(model_dir, &g->m, err, sizeof err) != 0) {
        fprintf(stderr, "bench_use: %s (run scripts/setup)\n", err);
        goto fail;
    }
    g->ctx = sn__use_ctx_new(g->m);
    g->tok = sn__use_tokenizer(g->m);
    g->max_tok = sn__use_max_tokens(g->m);
    g->dim = sn__use_dim(g->m);
    g->ids = malloc((size_t)MAX_BATCH * (size_t)g->max_tok * sizeof *g->ids);
    g->lens = malloc((size_t)MAX_BATCH * sizeof *g->lens);
    g->out = malloc((size_t)MAX_BATCH * (size_t)g->dim * sizeof *g->out);
    if (!g->ctx || !g->ids || !g->lens || !g->out) {
        fprintf(stderr, "bench_use: out of memory\n");
        goto fail;
    }
    if (grid_build(g, sents, err, sizeof err) != 0 ||
        (texts_out && grid_write(g, texts_out, err, sizeof err) != 0)) {
        fprintf(stderr, "bench_use: %s\n", err);
        goto fail;
    }
    for (int l = 0; l < N_GRID_LENS; l++) {
        long sum = 0;
        for (int i = 0; i < GRID_POOL; i++)
            sum += g->n_tok[l][i];
        fprintf(stderr, "bench_use: %d texts of ~%d tokens: %.1f on average\n",
                GRID_POOL, grid_lens[l], (double)sum / GRID_POOL);
    }
    rc = serve ? grid_serve(g) : grid_table(g, rounds, seconds);
fail:
    if (g) {
        for (int l = 0; l < N_GRID_LENS; l++)
            for (int i = 0; i < GRID_POOL; i++)
                free(g->texts[l][i]);
        sn_encoding_free(&g->enc);
        free(g->ids);
        free(g->lens);
        free(g->out);
        sn__use_ctx_free(g->ctx);
        sn__use_free(g->m);
        free(g);
    }
    json_decref(sents);
    return rc;
}

int main(int argc, char **argv)
{
    double t_main = now_s();
    double t0 = process_start_s(t_main);
    int n = 2000, batch = 16, grid = 0, serve = 0, rounds = 3;
    double seconds = 1.0;
    const char *texts_out = NULL;
    char model_dir[4096], sent_path[4096], err[1024];
    const char *env = getenv("SENSE_DEFAULT_MODEL");
    const char *home = getenv("HOME");

    if (env && *env)
        snprintf(model_dir, sizeof model_dir, "%s", env);
    else
        snprintf(model_dir, sizeof model_dir,
                 "%s/.local/share/sense/models/use-lite", home ? home : "");
    default_sentences(sent_path, sizeof sent_path);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--grid") == 0)
            grid = 1;
        else if (strcmp(argv[i], "--serve") == 0)
            grid = serve = 1;
        else if (i + 1 < argc && strcmp(argv[i], "--texts") == 0)
            texts_out = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--rounds") == 0)
            rounds = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "-n") == 0)
            n = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "-b") == 0)
            batch = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "-m") == 0)
            snprintf(model_dir, sizeof model_dir, "%s", argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "-s") == 0)
            snprintf(sent_path, sizeof sent_path, "%s", argv[++i]);
        else {
            fprintf(stderr,
                    "usage: bench_use [-n N] [-b BATCH] [-m MODEL_DIR] "
                    "[-s SENTENCES_JSON]\n"
                    "       bench_use --grid [--rounds R] [--seconds S] "
                    "[--texts OUT_JSON] [-m DIR] [-s JSON]\n"
                    "       bench_use --serve [--texts OUT_JSON] [-m DIR] "
                    "[-s JSON]\n");
            return 2;
        }
    }
    if (grid) {
        if (rounds < 1 || !(seconds >= 0)) {
            fprintf(stderr, "bench_use: --rounds >= 1, --seconds >= 0\n");
            return 2;
        }
        return grid_main(model_dir, sent_path, texts_out, serve, rounds,
                         seconds);
    }
    if (n < 1 || batch < 1 || batch > MAX_BATCH) {
        fprintf(stderr, "bench_use: -n >= 1, 1 <= -b <= %d\n", MAX_BATCH);
        return 2;
    }

    json_error_t je;
    json_t *sents = json_load_file(sent_path, 0, &je);
    if (!json_is_array(sents) || json_array_size(sents) == 0) {
        fprintf(stderr, "bench_use: '%s': %s\n", sent_path,
                sents ? "not an array of strings" : je.text);
        return 1;
    }
    size_t n_src = json_array_size(sents);

    sn__use_t *m = NULL;
    if (sn__use_load(model_dir, &m, err, sizeof err) != 0) {
        fprintf(stderr, "bench_use: %s (run scripts/setup)\n", err);
        return 1;
    }
    double t_loaded = now_s();
    sn__use_ctx_t *ctx = sn__use_ctx_new(m);
    const sn_tokenizer_t *tok = sn__use_tokenizer(m);
    int max_tok = sn__use_max_tokens(m), dim = sn__use_dim(m);
    int32_t *ids = malloc((size_t)batch * (size_t)max_tok * sizeof *ids);
    int *lens = malloc((size_t)batch * sizeof *lens);
    float *out = malloc((size_t)batch * (size_t)dim * sizeof *out);
    sn_encoding_t enc = {0};
    double checksum = 0;
    long n_tokens = 0;
    if (!ctx || !ids || !lens || !out) {
        fprintf(stderr, "bench_use: out of memory\n");
        return 1;
    }

    for (int s0 = 0; s0 < n; s0 += batch) {
        int nb = n - s0 < batch ? n - s0 : batch, nt = 0;
        for (int j = 0; j < nb; j++) {
            json_t *t = json_array_get(sents, (size_t)(s0 + j) % n_src);
            if (sn_tokenizer_encode(tok, json_string_value(t),
                                    json_string_length(t), max_tok, &enc, err,
                                    sizeof err) != 0) {
                fprintf(stderr, "bench_use: %s\n", err);
                return 1;
            }
            if (enc.n_tokens)
                memcpy(ids + nt, enc.ids, (size_t)enc.n_tokens * sizeof *ids);
            lens[j] = enc.n_tokens;
            nt += enc.n_tokens;
        }
        n_tokens += nt;
        if (sn__use_forward(m, ctx, ids, lens, nb, NULL, out, err,
                            sizeof err) != 0) {
            fprintf(stderr, "bench_use: %s\n", err);
            return 1;
        }
        for (int j = 0; j < nb; j++)
            checksum += out[(size_t)j * (size_t)dim];
    }
    double t_end = now_s();

    double load_s = t_loaded - t0, enc_s = t_end - t_loaded;
    double total_s = t_end - t0;
    fprintf(stderr,
            "bench_use (C): %d sentences (%ld tokens), batches of %d: load "
            "%.3f s, encode %.3f s = %.0f sentences/s; whole process %.3f s "
            "= %.0f sentences/s\n",
            n, n_tokens, batch, load_s, enc_s, n / enc_s, total_s,
            n / total_s);
    printf("{\"impl\":\"c\",\"n\":%d,\"batch\":%d,\"tokens\":%ld,"
           "\"load_s\":%.4f,\"encode_s\":%.4f,\"total_s\":%.4f,"
           "\"encode_per_s\":%.1f,\"total_per_s\":%.1f,\"checksum\":%.6f}\n",
           n, batch, n_tokens, load_s, enc_s, total_s, n / enc_s, n / total_s,
           checksum);

    sn_encoding_free(&enc);
    free(ids);
    free(lens);
    free(out);
    sn__use_ctx_free(ctx);
    sn__use_free(m);
    json_decref(sents);
    return 0;
}
