/*
 * bench_ingest.c -- where an ingest's time goes, in-process, stage by stage,
 * on real documents (a JSON-lines corpus such as ../shared/ir/debian-dev):
 *
 *   chunk     sn_chunk_text, as the daemon's add does (the model's max
 *             tokens, overlap max/8 up to 32): tokenizes every document
 *             to find the cut points;
 *   tokenize  sn_tokenizer_encode of every chunk: what the encoder's own
 *             tokenizing costs inside `encode`;
 *   encode    sn_model_embed over the chunks in batches of up to 4096
 *             tokens (sensed's --batch-tokens), one thread as one sensed
 *             encoder worker (tokenizing included);
 *   store     sn_store_add in batches of 64 documents (`sense add`'s), a
 *             durable transaction each, background index builds on (as
 *             sensed), three times on fresh databases:
 *               full      as the daemon does (rows, FTS5 triggers, index);
 *               no FTS    the same with the FTS triggers dropped;
 *               no FTS, Flat  and a Flat collection: no HNSW build or
 *                         per-document graph inserts;
 *             so FTS costs full - no FTS, the HNSW index no FTS - Flat,
 *             and the SQLite rows and commits the rest.
 * `sense add` over the socket runs encode and store on different threads
 * (encoder worker, storage lane); with one request in flight they
 * alternate, with two they overlap: bench/bench_ingest.sh measures that.
 *
 * Usage: bench_ingest CORPUS.jsonl [--docs N] [--model PATH|default]
 *                     [--dir DIR]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "sense/embed.h"
#include "sense/sense.h"
#include "sense/store.h"

#include "../index/store_int.h"

#define BATCH_DOCS 64
#define BATCH_TOKENS 4096
#define OVERLAP_MAX 32

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "bench_ingest: %s%s%s\n", what, err ? ": " : "",
            err ? err : "");
    exit(1);
}

typedef struct {
    char *id, *text;
    size_t len;
    int32_t *spans; /* code points, pairs */
    int n_chunks;
    int first;      /* index of its first chunk */
} doc_t;

/* Byte offset of code point cp in s (UTF-8). */
static size_t cp_byte(const char *s, size_t len, int32_t cp)
{
    size_t b = 0;
    for (int32_t c = 0; c < cp && b < len; c++) {
        b++;
        while (b < len && ((unsigned char)s[b] & 0xC0) == 0x80)
            b++;
    }
    return b;
}

/* Store the documents (their chunks' vectors from vecs) into a fresh
 * database; seconds. */
static double store_run(const char *path, doc_t *docs, int n,
                        const float *vecs, int dim, int drop_fts,
                        sn_index_kind_t kind)
{
    char err[512];
    sn_store_t *st;
    sn_doc_in_t in[BATCH_DOCS];
    sn_chunk_in_t *ch = malloc(sizeof *ch * BATCH_DOCS * 64);
    double t;

    unlink(path);
    if (!ch)
        die("out of memory", NULL);
    if (sn_store_open(path, &st, err, sizeof err) < 0)
        die("sn_store_open", err);
    sn_store_set_background(st, 1);
    if (sn_store_collection(st, "c", "m", dim, kind, err, sizeof err) < 0)
        die("sn_store_collection", err);
    if (drop_fts) {
        sqlite3 *db = sn__store_db(st);
        sqlite3_stmt *s;
        char sql[512];
        /* every trigger that writes an FTS table */
        if (sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE "
                               "type = 'trigger' AND name LIKE "
                               "'documents_fts%'", -1, &s, NULL) != SQLITE_OK)
            die("sqlite", sqlite3_errmsg(db));
        char names[16][128];
        int nn = 0;
        while (sqlite3_step(s) == SQLITE_ROW && nn < 16)
            snprintf(names[nn++], sizeof names[0], "%s",
                     (const char *)sqlite3_column_text(s, 0));
        sqlite3_finalize(s);
        for (int i = 0; i < nn; i++) {
            snprintf(sql, sizeof sql, "DROP TRIGGER \"%.127s\"", names[i]);
            if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
                die("sqlite", sqlite3_errmsg(db));
        }
        if (!nn)
            die("no FTS triggers found", NULL);
    }
    t = now();
    for (int i0 = 0; i0 < n; i0 += BATCH_DOCS) {
        int nb = n - i0 < BATCH_DOCS ? n - i0 : BATCH_DOCS, k = 0;
        for (int j = 0; j < nb; j++) {
            doc_t *d = &docs[i0 + j];
            in[j] = (sn_doc_in_t){d->id, d->text, d->len, NULL, ch + k,
                                  d->n_chunks};
            for (int c = 0; c < d->n_chunks; c++, k++)
                ch[k] = (sn_chunk_in_t){d->spans[2 * c], d->spans[2 * c + 1],
                                        vecs + (size_t)(d->first + c) * dim};
        }
        if (sn_store_add(st, "c", "m", in, nb, NULL, err, sizeof err) < 0)
            die("sn_store_add", err);
    }
    t = now() - t;
    sn_store_close(st); /* joins a background build still running */
    free(ch);
    return t;
}

int main(int argc, char **argv)
{
    const char *corpus = NULL, *model_path = "default", *dir = "/tmp";
    int max_docs = 20000, n = 0, n_chunks = 0, dim;
    char err[512], line[1 << 16];
    doc_t *docs;
    sn_model_t *m;
    double t;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--docs") && i + 1 < argc)
            max_docs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--model") && i + 1 < argc)
            model_path = argv[++i];
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (argv[i][0] != '-' && !corpus)
            corpus = argv[i];
        else
            die("usage: bench_ingest CORPUS.jsonl [--docs N] [--model "
                "PATH|default] [--dir DIR]", NULL);
    }
    if (!corpus || max_docs < 1)
        die("usage: bench_ingest CORPUS.jsonl [--docs N]", NULL);
    FILE *f = fopen(corpus, "r");
    if (!f)
        die(corpus, strerror(errno));
    docs = calloc((size_t)max_docs, sizeof *docs);
    if (!docs)
        die("out of memory", NULL);
    size_t bytes = 0;
    while (n < max_docs && fgets(line, sizeof line, f)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        const char *id = json_string_value(json_object_get(o, "id"));
        const char *text = json_string_value(json_object_get(o, "text"));
        if (!id || !text)
            die("bad corpus line", je.text);
        docs[n].id = strdup(id);
        docs[n].len = strlen(text);
        docs[n].text = strdup(text);
        bytes += docs[n].len;
        json_decref(o);
        n++;
    }
    fclose(f);
    if (sn_model_load(model_path, &m, err, sizeof err) < 0)
        die("sn_model_load", err);
    dim = sn_model_dim(m);
    const sn_tokenizer_t *tok = sn_model_tokenizer(m);
    int max_tokens = sn_model_max_tokens(m);
    int overlap = max_tokens / 8 > OVERLAP_MAX ? OVERLAP_MAX : max_tokens / 8;
    printf("bench_ingest: %d documents (%.1f MB of text) from %s; model %s "
           "(dim %d, max %d tokens)\n", n, bytes / 1e6, corpus,
           sn_model_name(m), dim, max_tokens);

    /* chunk */
    t = now();
    for (int i = 0; i < n; i++) {
        docs[i].first = n_chunks;
        if (sn_chunk_text(tok, docs[i].text, docs[i].len, max_tokens,
                          overlap, &docs[i].spans, &docs[i].n_chunks, err,
                          sizeof err) < 0)
            die("sn_chunk_text", err);
        n_chunks += docs[i].n_chunks;
    }
    double t_chunk = now() - t;
    const char **texts = malloc((size_t)n_chunks * sizeof *texts);
    size_t *lens = malloc((size_t)n_chunks * sizeof *lens);
    int *ntok = malloc((size_t)n_chunks * sizeof *ntok);
    float *vecs = malloc((size_t)n_chunks * dim * sizeof *vecs);
    if (!texts || !lens || !ntok || !vecs)
        die("out of memory", NULL);
    for (int i = 0, k = 0; i < n; i++)
        for (int c = 0; c < docs[i].n_chunks; c++, k++) {
            size_t b0 = cp_byte(docs[i].text, docs[i].len,
                                docs[i].spans[2 * c]);
            size_t b1 = cp_byte(docs[i].text, docs[i].len,
                                docs[i].spans[2 * c + 1]);
            texts[k] = docs[i].text + b0;
            lens[k] = b1 - b0;
        }

    /* tokenize */
    long tokens = 0;
    t = now();
    for (int k = 0; k < n_chunks; k++) {
        sn_encoding_t enc = {0};
        if (sn_tokenizer_encode(tok, texts[k], lens[k], max_tokens, &enc,
                                err, sizeof err) < 0)
            die("sn_tokenizer_encode", err);
        ntok[k] = enc.n_tokens;
        tokens += enc.n_tokens;
        sn_encoding_free(&enc);
    }
    double t_tok = now() - t;

    /* encode: batches of up to BATCH_TOKENS tokens, in order */
    sn_ctx_t *ctx = sn_ctx_new(m);
    sn_embed_opts_t opts = {0};
    sn_embedding_t *out = calloc((size_t)n_chunks, sizeof *out);
    if (!ctx || !out)
        die("out of memory", NULL);
    t = now();
    for (int k0 = 0; k0 < n_chunks;) {
        int k1 = k0, sum = 0;
        while (k1 < n_chunks && (k1 == k0 || sum + ntok[k1] <= BATCH_TOKENS))
            sum += ntok[k1++];
        if (sn_model_embed(m, ctx, texts + k0, lens + k0, k1 - k0, &opts,
                           out + k0, err, sizeof err) < 0)
            die("sn_model_embed", err);
        for (int k = k0; k < k1; k++) {
            memcpy(vecs + (size_t)k * dim, out[k].sentence,
                   (size_t)dim * sizeof *vecs);
            sn_embedding_free(&out[k]);
        }
        k0 = k1;
    }
    double t_enc = now() - t;

    /* store, three ways */
    char path[4096];
    snprintf(path, sizeof path, "%s/bench_ingest.db", dir);
    double t_full = store_run(path, docs, n, vecs, dim, 0, SN_INDEX_AUTO);
    double t_nofts = store_run(path, docs, n, vecs, dim, 1, SN_INDEX_AUTO);
    double t_flat = store_run(path, docs, n, vecs, dim, 1, SN_INDEX_FLAT);
    unlink(path);
    snprintf(path, sizeof path, "rm -rf '%s/bench_ingest.db'*", dir);
    if (system(path) != 0)
        fprintf(stderr, "bench_ingest: cannot clean up\n");

    double total = t_chunk + t_enc + t_full;
    printf("  %d chunks (%.2f per document), %ld tokens (%.0f per chunk)\n",
           n_chunks, (double)n_chunks / n, tokens, (double)tokens / n_chunks);
    printf("  %-44s %8s %9s %7s\n", "stage", "seconds", "docs/s",
           "share");
#define ROW(name, s)                                                         \
    printf("  %-44s %8.2f %9.0f %6.1f%%\n", name, s, n / (s), 100 * (s) / total)
    ROW("chunk (sn_chunk_text: tokenizes each doc)", t_chunk);
    ROW("encode (sn_model_embed, 1 thread)", t_enc);
    ROW("  of which tokenize the chunks", t_tok);
    ROW("  of which the forward pass", t_enc - t_tok);
    ROW("store (sn_store_add, full)", t_full);
    ROW("  of which FTS5 triggers", t_full - t_nofts);
    ROW("  of which the HNSW index (AUTO vs Flat)", t_nofts - t_flat);
    ROW("  of which SQLite rows and commits", t_flat);
    ROW("all stages one after another", total);
    printf("  encode and store overlapped (max of the two): %.0f docs/s\n",
           n / (t_enc + t_chunk > t_full ? t_enc + t_chunk : t_full));
    for (int i = 0; i < n; i++) {
        free(docs[i].id);
        free(docs[i].text);
        free(docs[i].spans);
    }
    free(docs);
    free(texts);
    free(lens);
    free(ntok);
    free(vecs);
    free(out);
    sn_ctx_free(ctx);
    sn_model_free(m);
    return 0;
}
