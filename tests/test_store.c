/*
 * test_store.c -- index/store.c, ann.c, schema.c: documents in SQLite and
 * vectors in faiss, kept in step.
 *
 * Covers: upsert/get/delete/list/counts; model binding (SN_EMODEL);
 * rejected inputs leave nothing behind; search top-1 of a stored vector is
 * itself; metadata filters; deleted documents never come back (Flat and
 * HNSW, before and after the tombstone rebuild); persistence across
 * close/open; catch-up from a stale index file (a crash simulated by
 * restoring an older copy of the file); corrupt, truncated and missing
 * index files rebuilt; AUTO switching to HNSW; migration from the
 * pre-release (version 0) layout and refusal of a newer schema; a full disk
 * (PRAGMA max_page_count) and a read-only database (URI mode=ro, PRAGMA
 * query_only: root ignores chmod, so permissions are tried only when not
 * root) fail cleanly and leave the store consistent; concurrent callers;
 * HNSW recall@10 >= 0.95 against Flat on 10k clustered vectors.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "sense/sense.h"
#include "sense/store.h"

#include "../index/hnsw.h"
#include "../index/kernels.h"
#include "../index/store_int.h"

static char err[1024];
static char dir[256];
static sn_hnsw_kind_t g_hnsw = SN_HNSW_F32; /* what open_db's HNSW is */

/* ---- helpers ---------------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static double urand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return ((double)(rng >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static float grand(void)
{
    return (float)(sqrt(-2.0 * log(urand())) * cos(2.0 * M_PI * urand()));
}

static void normalize(float *v, int d)
{
    double s = 0;
    for (int i = 0; i < d; i++)
        s += (double)v[i] * v[i];
    for (int i = 0; i < d; i++)
        v[i] = (float)(v[i] / sqrt(s));
}

static float *rand_vecs(int n, int d)
{
    float *v = malloc((size_t)n * d * sizeof *v);
    CHECK(v);
    for (int i = 0; i < n * d; i++)
        v[i] = grand();
    for (int i = 0; i < n; i++)
        normalize(v + (size_t)i * d, d);
    return v;
}

/* Clustered vectors as bench_search makes them (what HNSW is for). */
static float *clustered_vecs(int n, int d)
{
    enum { R = 48 };
    int nc = n / 100 > 10 ? n / 100 : 10;
    float *proj = malloc((size_t)d * R * sizeof *proj);
    float *cent = malloc((size_t)nc * R * sizeof *cent);
    float *v = malloc((size_t)n * d * sizeof *v);
    CHECK(proj && cent && v);
    for (int i = 0; i < d * R; i++)
        proj[i] = grand() / sqrtf(R);
    for (int i = 0; i < nc * R; i++)
        cent[i] = grand();
    for (int i = 0; i < n; i++) {
        float z[R];
        const float *c = cent + (int)(urand() * nc) * R;
        for (int j = 0; j < R; j++)
            z[j] = c[j] + 2.0f * grand();
        for (int a = 0; a < d; a++) {
            float acc = 0;
            for (int j = 0; j < R; j++)
                acc += proj[a * R + j] * z[j];
            v[(size_t)i * d + a] = acc + 0.1f * grand();
        }
        normalize(v + (size_t)i * d, d);
    }
    free(proj);
    free(cent);
    return v;
}

static char logbuf[1 << 16];

static void log_cb(void *ud, sn_store_level_t level, const char *line)
{
    (void)ud;
    size_t used = strlen(logbuf);
    snprintf(logbuf + used, sizeof logbuf - used, "%s %s\n",
             level == SN_STORE_WARN ? "warn" : "info", line);
}

static int log_has(const char *sub) { return strstr(logbuf, sub) != NULL; }

/* Whether a line logged at level ("warn" / "info") contains sub. */
static int log_line(const char *level, const char *sub)
{
    for (const char *l = logbuf; *l;) {
        const char *end = strchr(l, '\n');
        size_t len = end ? (size_t)(end - l) : strlen(l);
        const char *hit = strstr(l, sub);
        if (hit && hit < l + len && strncmp(l, level, strlen(level)) == 0 &&
            l[strlen(level)] == ' ')
            return 1;
        l += len + (end != NULL);
    }
    return 0;
}

static void path_of(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

static sn_store_t *open_db(const char *name)
{
    char path[512];
    sn_store_t *st;
    path_of(path, sizeof path, name);
    logbuf[0] = '\0';
    CHECK_OK(sn_store_open(path, &st, err, sizeof err), err);
    sn_store_set_log(st, log_cb, NULL);
    CHECK_OK(sn_store_set_hnsw(st, g_hnsw), "sn_store_set_hnsw");
    return st;
}

/* One document, one chunk over the whole (ASCII) text. */
static int add1(sn_store_t *st, const char *coll, const char *model,
                const char *id, const char *text, const char *meta,
                const float *vec)
{
    sn_chunk_in_t ch = {0, (int32_t)strlen(text), vec};
    sn_doc_in_t d = {id, text, strlen(text), meta, &ch, 1};
    return sn_store_add(st, coll, model, &d, 1, NULL, err, sizeof err);
}

/* n documents "d<i>" with vectors vecs[i], meta {"group": i % 3, ...}, in
 * batches of 100. */
static void add_n(sn_store_t *st, const char *coll, const char *model,
                  int first, int n, const float *vecs, int d)
{
    enum { B = 100 };
    char ids[B][16], texts[B][48], metas[B][96];
    sn_chunk_in_t ch[B];
    sn_doc_in_t docs[B];

    for (int i = 0; i < n; i += B) {
        int m = n - i < B ? n - i : B;
        for (int j = 0; j < m; j++) {
            int k = first + i + j;
            snprintf(ids[j], sizeof ids[j], "d%d", k);
            snprintf(texts[j], sizeof texts[j], "text of document %d", k);
            snprintf(metas[j], sizeof metas[j],
                     "{\"group\": %d, \"tag\": \"%s\", \"flag\": %s}", k % 3,
                     k % 2 ? "odd" : "even", k % 5 == 0 ? "true" : "false");
            ch[j] = (sn_chunk_in_t){0, (int32_t)strlen(texts[j]),
                                    vecs + (size_t)(i + j) * d};
            docs[j] = (sn_doc_in_t){ids[j], texts[j], strlen(texts[j]),
                                    metas[j], &ch[j], 1};
        }
        CHECK_OK(sn_store_add(st, coll, model, docs, m, NULL, err,
                              sizeof err), err);
    }
}

static int64_t n_docs_of(sn_store_t *st, const char *coll, int64_t *n_chunks,
                         sn_index_kind_t *kind)
{
    sn_collection_info_t *ci;
    int n;
    int64_t r = -1;
    CHECK_OK(sn_store_collections(st, &ci, &n, err, sizeof err), err);
    for (int i = 0; i < n; i++)
        if (!strcmp(ci[i].name, coll)) {
            r = ci[i].n_docs;
            if (n_chunks)
                *n_chunks = ci[i].n_chunks;
            if (kind)
                *kind = ci[i].kind;
        }
    sn_collection_info_free(ci, n);
    return r;
}

/* The top hit of vec is document `id`, with score ~1. */
static void check_top1(sn_store_t *st, const char *coll, const char *model,
                       const float *vec, const char *id)
{
    sn_hit_t *h;
    int n;
    CHECK_OK(sn_store_search(st, coll, model, vec, 3, NULL, &h, &n, err,
                             sizeof err), err);
    CHECK(n >= 1);
    CHECK_STREQ(h[0].id, id);
    CHECK(fabsf(h[0].score - 1.0f) < 1e-4f);
    sn_hits_free(h, n);
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* ---- documents ----------------------------------------------------------------- */

static void test_documents(void)
{
    enum { D = 16 };
    sn_store_t *st = open_db("docs.db");
    float *v = rand_vecs(8, D);
    char *gen[1] = {0};
    sn_doc_t *docs;
    char **ids;
    int n, n_del;
    int64_t n_chunks;

    CHECK_OK(sn_store_collection(st, "docs", "m1", D, SN_INDEX_FLAT, err,
                                 sizeof err), err);
    /* again: fine; another model or dimension: SN_EMODEL */
    CHECK_OK(sn_store_collection(st, "docs", "m1", D, SN_INDEX_AUTO, err,
                                 sizeof err), err);
    CHECK_FAILS_WITH(sn_store_collection(st, "docs", "m2", D, SN_INDEX_FLAT,
                                         err, sizeof err),
                     err, "collection 'docs' was built with model 'm1', not "
                          "'m2'");
    CHECK_EQ(sn_store_collection(st, "docs", "m1", D + 1, SN_INDEX_FLAT, err,
                                 sizeof err), SN_EMODEL);
    CHECK_EQ(sn_store_collection(st, "", "m1", D, SN_INDEX_FLAT, err,
                                 sizeof err), SN_EARG);
    CHECK_EQ(sn_store_collection(st, "x", "m1", 0, SN_INDEX_FLAT, err,
                                 sizeof err), SN_EARG);

    /* three documents, 2 + 1 + 3 chunks */
    const char *ta = "alpha one. alpha two.", *tb = "beta",
               *tc = "gamma x y z";
    sn_chunk_in_t ca[2] = {{0, 10, v}, {11, 21, v + D}};
    sn_chunk_in_t cb[1] = {{0, 4, v + 2 * D}};
    sn_chunk_in_t cc[3] = {{0, 5, v + 3 * D}, {6, 7, v + 4 * D},
                           {8, 11, v + 5 * D}};
    sn_doc_in_t in[3] = {
        {"a", ta, strlen(ta), "{\"lang\": \"en\"}", ca, 2},
        {"b", tb, strlen(tb), NULL, cb, 1},
        {"c", tc, strlen(tc), "{}", cc, 3},
    };
    char *out_ids[3];
    CHECK_OK(sn_store_add(st, "docs", "m1", in, 3, out_ids, err, sizeof err),
             err);
    CHECK_STREQ(out_ids[0], "a");
    CHECK_STREQ(out_ids[2], "c");
    for (int i = 0; i < 3; i++)
        free(out_ids[i]);
    CHECK_EQ(n_docs_of(st, "docs", &n_chunks, NULL), 3);
    CHECK_EQ(n_chunks, 6);

    const char *want[] = {"a", "b", "nope", "c"};
    CHECK_OK(sn_store_get(st, "docs", want, 4, &docs, &n, err, sizeof err),
             err);
    CHECK_EQ(n, 3);
    CHECK_STREQ(docs[0].id, "a");
    CHECK_STREQ(docs[0].text, ta);
    CHECK_STREQ(docs[0].meta_json, "{\"lang\": \"en\"}");
    CHECK_EQ(docs[0].n_chunks, 2);
    CHECK_STREQ(docs[1].meta_json, "{}");
    CHECK_EQ(docs[2].n_chunks, 3);
    CHECK(docs[0].created > 0 && docs[0].updated == docs[0].created);
    int64_t created_a = docs[0].created;
    for (int i = 0; i < n; i++)
        sn_doc_free(&docs[i]);
    free(docs);

    /* a generated id: 16 hex characters */
    sn_doc_in_t g = {NULL, "generated", 9, NULL, &cb[0], 1};
    CHECK_OK(sn_store_add(st, "docs", "m1", &g, 1, gen, err, sizeof err),
             err);
    CHECK(gen[0] && strlen(gen[0]) == 16 &&
          strspn(gen[0], "0123456789abcdef") == 16);

    /* upsert "a": new text, one chunk; keeps its place and created */
    sleep(1);
    sn_chunk_in_t ca2 = {0, 3, v + 6 * D};
    sn_doc_in_t a2 = {"a", "new", 3, "{\"lang\": \"fr\"}", &ca2, 1};
    CHECK_OK(sn_store_add(st, "docs", "m1", &a2, 1, NULL, err, sizeof err),
             err);
    CHECK_OK(sn_store_get(st, "docs", want, 1, &docs, &n, err, sizeof err),
             err);
    CHECK_EQ(n, 1);
    CHECK_STREQ(docs[0].text, "new");
    CHECK_EQ(docs[0].n_chunks, 1);
    CHECK_EQ(docs[0].created, created_a);
    CHECK(docs[0].updated > docs[0].created);
    sn_doc_free(&docs[0]);
    free(docs);
    CHECK_EQ(n_docs_of(st, "docs", &n_chunks, NULL), 4);
    CHECK_EQ(n_chunks, 1 + 1 + 3 + 1);

    CHECK_OK(sn_store_list(st, "docs", 0, 10, &ids, &n, err, sizeof err),
             err);
    CHECK_EQ(n, 4);
    CHECK_STREQ(ids[0], "a");
    CHECK_STREQ(ids[1], "b");
    CHECK_STREQ(ids[2], "c");
    CHECK_STREQ(ids[3], gen[0]);
    for (int i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    CHECK_OK(sn_store_list(st, "docs", 1, 2, &ids, &n, err, sizeof err),
             err);
    CHECK_EQ(n, 2);
    CHECK_STREQ(ids[0], "b");
    CHECK_STREQ(ids[1], "c");
    for (int i = 0; i < n; i++)
        free(ids[i]);
    free(ids);

    /* the same id twice in one call: the last wins, nothing dangles */
    sn_chunk_in_t ct = {0, 3, v + 2 * D};
    sn_doc_in_t twice[2] = {{"t", "one", 3, NULL, &ca2, 1},
                            {"t", "two", 3, NULL, &ct, 1}};
    CHECK_OK(sn_store_add(st, "docs", "m1", twice, 2, NULL, err, sizeof err),
             err);
    sn_hit_t *h;
    CHECK_OK(sn_store_search(st, "docs", "m1", v + 6 * D, 2, NULL, &h, &n,
                             err, sizeof err), err);
    CHECK_EQ(n, 2);
    CHECK_STREQ(h[0].id, "a"); /* t's first version (same vector) is gone */
    CHECK(fabsf(h[1].score - 1.0f) > 1e-3f);
    sn_hits_free(h, n);
    CHECK_EQ(n_docs_of(st, "docs", &n_chunks, NULL), 5);
    CHECK_EQ(n_chunks, 7);
    const char *tid[] = {"t"};
    CHECK_OK(sn_store_get(st, "docs", tid, 1, &docs, &n, err, sizeof err),
             err);
    CHECK_EQ(n, 1);
    CHECK_STREQ(docs[0].text, "two");
    sn_doc_free(&docs[0]);
    free(docs);

    /* delete: counts only what existed */
    const char *del[] = {"b", "zz", "t"};
    CHECK_OK(sn_store_delete(st, "docs", del, 3, &n_del, err, sizeof err),
             err);
    CHECK_EQ(n_del, 2);
    CHECK_OK(sn_store_get(st, "docs", del, 3, &docs, &n, err, sizeof err),
             err);
    CHECK_EQ(n, 0);
    CHECK(docs == NULL);
    CHECK_EQ(n_docs_of(st, "docs", NULL, NULL), 3);

    /* model binding on writes and searches */
    CHECK_FAILS_WITH(add1(st, "docs", "m2", "z", "zzz", NULL, v), err,
                     "collection 'docs' was built with model 'm1', not "
                     "'m2'");
    CHECK_EQ(sn_store_search(st, "docs", "m2", v, 3, NULL, &h, &n, err,
                             sizeof err), SN_EMODEL);
    CHECK_EQ(add1(st, "nope", "m1", "z", "zzz", NULL, v), SN_ENOTFOUND);

    /* rejected inputs, and none of them leaves a trace */
    float bad[D];
    memcpy(bad, v, sizeof bad);
    bad[0] += 0.5f;
    CHECK_FAILS_WITH(add1(st, "docs", "m1", "z", "zzz", NULL, bad), err,
                     "not finite and L2-normalized");
    bad[0] = NAN;
    CHECK_EQ(add1(st, "docs", "m1", "z", "zzz", NULL, bad), SN_EARG);
    CHECK_EQ(add1(st, "docs", "m1", "z", "zzz", "[1]", v), SN_EJSON);
    CHECK_EQ(add1(st, "docs", "m1", "z", "zzz", "{bad", v), SN_EJSON);
    CHECK_EQ(add1(st, "docs", "m1", "z", "bad \xff utf8", NULL, v),
             SN_EUTF8);
    sn_chunk_in_t far = {2, 99, v};
    sn_doc_in_t fd = {"z", "zzz", 3, NULL, &far, 1};
    CHECK_FAILS_WITH(sn_store_add(st, "docs", "m1", &fd, 1, NULL, err,
                                  sizeof err), err, "outside the text");
    /* a batch with one bad document writes none of them */
    sn_doc_in_t mixed[2] = {{"ok", "fine", 4, NULL, &cb[0], 1}, fd};
    CHECK_EQ(sn_store_add(st, "docs", "m1", mixed, 2, NULL, err, sizeof err),
             SN_EARG);
    CHECK_EQ(n_docs_of(st, "docs", NULL, NULL), 3);
    CHECK_EQ(sn_store_search(st, "docs", "m1", bad, 3, NULL, &h, &n, err,
                             sizeof err), SN_EARG);

    /* chunk text comes back as the span, in code points */
    const char *u8 = "caf\xc3\xa9 na\xc3\xafve"; /* "café naïve" */
    sn_chunk_in_t cu = {5, 10, v + 7 * D};
    sn_doc_in_t du = {"u", u8, strlen(u8), NULL, &cu, 1};
    CHECK_OK(sn_store_add(st, "docs", "m1", &du, 1, NULL, err, sizeof err),
             err);
    CHECK_OK(sn_store_search(st, "docs", "m1", v + 7 * D, 1, NULL, &h, &n,
                             err, sizeof err), err);
    CHECK_EQ(n, 1);
    CHECK_STREQ(h[0].id, "u");
    CHECK_STREQ(h[0].text, "na\xc3\xafve");
    CHECK_EQ(h[0].start, 5);
    CHECK_EQ(h[0].end, 10);
    sn_hits_free(h, n);

    free(gen[0]);
    free(v);
    sn_store_close(st);
}

/* ---- search, filters, deletions ------------------------------------------------ */

static int hit_has(const sn_hit_t *h, int n, const char *id)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(h[i].id, id))
            return 1;
    return 0;
}

static void test_search(sn_index_kind_t kind, const char *name)
{
    enum { D = 32, N = 600 };
    sn_store_t *st = open_db("search.db");
    float *v = rand_vecs(N, D);
    char id[32];
    sn_hit_t *h;
    int n;

    CHECK_OK(sn_store_collection(st, name, "m", D, kind, err, sizeof err),
             err);
    add_n(st, name, "m", 0, N, v, D);
    for (int i = 0; i < N; i += 37) {
        snprintf(id, sizeof id, "d%d", i);
        check_top1(st, name, "m", v + (size_t)i * D, id);
    }
    CHECK_OK(sn_store_search(st, name, "m", v, 10, NULL, &h, &n, err,
                             sizeof err), err);
    CHECK_EQ(n, 10);
    for (int i = 1; i < n; i++)
        CHECK(h[i - 1].score >= h[i].score);
    CHECK_STREQ(h[0].text, "text of document 0");
    CHECK_EQ(h[0].chunk, 0);
    sn_hits_free(h, n);

    /* filters: equality on top-level keys, every type */
    CHECK_OK(sn_store_search(st, name, "m", v, 10, "{\"group\": 1}", &h, &n,
                             err, sizeof err), err);
    CHECK_EQ(n, 10);
    for (int i = 0; i < n; i++)
        CHECK(strstr(h[i].meta_json, "\"group\": 1"));
    sn_hits_free(h, n);
    CHECK_OK(sn_store_search(st, name, "m", v, 10,
                             "{\"tag\": \"odd\", \"flag\": true}", &h, &n,
                             err, sizeof err), err);
    CHECK_EQ(n, 10); /* odd multiples of 5: 60 of them */
    for (int i = 0; i < n; i++) {
        int k = atoi(h[i].id + 1);
        CHECK(k % 2 == 1 && k % 5 == 0);
    }
    sn_hits_free(h, n);
    /* rare match: over-fetch runs out, the exact scan finds them */
    CHECK_OK(sn_store_search(st, name, "m", v, 5, "{\"group\": 2.0, "
                             "\"flag\": true, \"tag\": \"even\"}", &h, &n,
                             err, sizeof err), err);
    CHECK_EQ(n, 5); /* k % 30 == 20: 20 documents */
    for (int i = 0; i < n; i++)
        CHECK_EQ(atoi(h[i].id + 1) % 30, 20);
    sn_hits_free(h, n);
    CHECK_OK(sn_store_search(st, name, "m", v, 10, "{\"group\": \"1\"}", &h,
                             &n, err, sizeof err), err);
    CHECK_EQ(n, 0); /* the string "1" is not the number 1 */
    CHECK_OK(sn_store_search(st, name, "m", v, 10, "{\"missing\": null}",
                             &h, &n, err, sizeof err), err);
    CHECK_EQ(n, 0);
    CHECK_EQ(sn_store_search(st, name, "m", v, 10, "{\"a\": [1]}", &h, &n,
                             err, sizeof err), SN_EARG);
    CHECK_EQ(sn_store_search(st, name, "m", v, 10, "[1]", &h, &n, err,
                             sizeof err), SN_EARG);
    CHECK_EQ(sn_store_search(st, name, "m", v, 10, "{", &h, &n, err,
                             sizeof err), SN_EJSON);
    CHECK_OK(sn_store_search(st, name, "m", v, 0, NULL, &h, &n, err,
                             sizeof err), err);
    CHECK_EQ(n, 0);

    /* delete 40%: never returned again, and k results still come back */
    const char *del[N];
    char dids[N][16];
    int n_del = 0, n_deleted;
    for (int i = 0; i < N; i++)
        if (i % 5 < 2) {
            snprintf(dids[n_del], sizeof dids[n_del], "d%d", i);
            del[n_del] = dids[n_del];
            n_del++;
        }
    CHECK_OK(sn_store_delete(st, name, del, n_del / 2, &n_deleted, err,
                             sizeof err), err);
    CHECK_EQ(n_deleted, n_del / 2);
    for (int i = 0; i < n_del / 2; i++) { /* tombstones for HNSW */
        int k = atoi(del[i] + 1);
        CHECK_OK(sn_store_search(st, name, "m", v + (size_t)k * D, 10, NULL,
                                 &h, &n, err, sizeof err), err);
        CHECK_EQ(n, 10);
        for (int j = 0; j < n; j++)
            CHECK(!hit_has(h + j, 1, del[i]) &&
                  (atoi(h[j].id + 1) % 5 >= 2 ||
                   atoi(h[j].id + 1) > atoi(del[n_del / 2 - 1] + 1)));
        sn_hits_free(h, n);
    }
    CHECK(!log_has("rebuilding its index"));
    CHECK_OK(sn_store_delete(st, name, del + n_del / 2, n_del - n_del / 2,
                             &n_deleted, err, sizeof err), err);
    CHECK_EQ(n_deleted, n_del - n_del / 2);
    if (kind == SN_INDEX_HNSW && g_hnsw != SN_HNSW_IVF)
        CHECK(log_has("rebuilding its index")); /* tombstones > 25% */
    if (g_hnsw == SN_HNSW_IVF) /* removed in place: nothing to rebuild */
        CHECK(!log_has("rebuilding its index"));
    for (int i = 0; i < N; i += 5) {
        CHECK_OK(sn_store_search(st, name, "m", v + (size_t)i * D, 10, NULL,
                                 &h, &n, err, sizeof err), err);
        CHECK_EQ(n, 10);
        for (int j = 0; j < n; j++)
            CHECK(atoi(h[j].id + 1) % 5 >= 2);
        sn_hits_free(h, n);
        CHECK_OK(sn_store_search(st, name, "m", v + (size_t)i * D, 10,
                                 "{\"group\": 0}", &h, &n, err, sizeof err),
                 err);
        CHECK_EQ(n, 10);
        for (int j = 0; j < n; j++)
            CHECK(atoi(h[j].id + 1) % 5 >= 2 && atoi(h[j].id + 1) % 3 == 0);
        sn_hits_free(h, n);
    }
    /* k larger than what is left */
    CHECK_OK(sn_store_search(st, name, "m", v, 1000, NULL, &h, &n, err,
                             sizeof err), err);
    CHECK_EQ(n, N - n_del);
    CHECK(!hit_has(h, n, "d0") && !hit_has(h, n, "d1"));
    sn_hits_free(h, n);

    /* still true after close and open */
    sn_store_close(st);
    st = open_db("search.db");
    CHECK(!log_has("unusable") && !log_has("behind"));
    for (int i = 0; i < N; i += 5) {
        CHECK_OK(sn_store_search(st, name, "m", v + (size_t)i * D, 10, NULL,
                                 &h, &n, err, sizeof err), err);
        CHECK_EQ(n, 10);
        for (int j = 0; j < n; j++)
            CHECK(atoi(h[j].id + 1) % 5 >= 2);
        sn_hits_free(h, n);
    }
    check_top1(st, name, "m", v + 2 * D, "d2");
    free(v);
    sn_store_close(st);
}

/* ---- persistence, catch-up, corruption ----------------------------------------- */

static void test_persistence(sn_index_kind_t kind, const char *name)
{
    enum { D = 24, N = 300 };
    float *v = rand_vecs(2 * N, D);
    char idx[512], backup[600], id[32];
    sn_store_t *st = open_db("persist.db");
    sn_hit_t *h;
    int n, n_del;
    int64_t coll_id = 0;

    CHECK_OK(sn_store_collection(st, name, "m", D, kind, err, sizeof err),
             err);
    add_n(st, name, "m", 0, N, v, D);
    check_top1(st, name, "m", v, "d0"); /* loads the index */
    CHECK_OK(sn_store_save(st, err, sizeof err), err);
    {
        sqlite3_stmt *s;
        CHECK(sqlite3_prepare_v2(sn__store_db(st), "SELECT id FROM "
                                 "collections WHERE name = ?1", -1, &s,
                                 NULL) == SQLITE_OK);
        sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
        CHECK(sqlite3_step(s) == SQLITE_ROW);
        coll_id = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
    }
    snprintf(idx, sizeof idx, "%s/persist.db.idx/%lld.faiss", dir,
             (long long)coll_id);
    snprintf(backup, sizeof backup, "%s.bak", idx);
    CHECK(file_size(idx) > 0);
    check_copy_file(idx, backup);

    /* more writes after the copy: N more documents, 50 deleted, one
     * replaced */
    add_n(st, name, "m", N, N, v + (size_t)N * D, D);
    const char *del[50];
    char dids[50][16];
    for (int i = 0; i < 50; i++) {
        snprintf(dids[i], sizeof dids[i], "d%d", 2 * i);
        del[i] = dids[i];
    }
    CHECK_OK(sn_store_delete(st, name, del, 50, &n_del, err, sizeof err),
             err);
    CHECK_EQ(n_del, 50);
    CHECK_OK(add1(st, name, "m", "d1", "replaced", NULL, v + 2 * D), err);
    sn_store_close(st);

    /* the crash: the index file is the old copy, SQLite has everything */
    check_copy_file(backup, idx);
    st = open_db("persist.db");
    check_top1(st, name, "m", v + (size_t)(N + 7) * D, "d307");
    if (!log_has("behind"))
        fprintf(stderr, "log:\n%s", logbuf);
    CHECK(log_has("behind"));
    for (int i = 0; i < 50; i++) {
        CHECK_OK(sn_store_search(st, name, "m", v + (size_t)2 * i * D, 5,
                                 NULL, &h, &n, err, sizeof err), err);
        CHECK_EQ(n, 5);
        for (int j = 0; j < n; j++) {
            int k = atoi(h[j].id + 1);
            CHECK(k >= 100 || k % 2 == 1);
        }
        sn_hits_free(h, n);
    }
    /* d1's old vector is gone, its new one is d1 (tied with d2) */
    CHECK_OK(sn_store_search(st, name, "m", v + D, 3, NULL, &h, &n, err,
                             sizeof err), err);
    for (int j = 0; j < n; j++)
        CHECK(h[j].score < 0.999f);
    sn_hits_free(h, n);
    check_top1(st, name, "m", v + 2 * D, "d1");
    sn_store_close(st); /* saves the caught-up index */

    st = open_db("persist.db");
    check_top1(st, name, "m", v + (size_t)(N + 9) * D, "d309");
    if (log_has("behind") || log_has("unusable"))
        fprintf(stderr, "log:\n%s", logbuf);
    CHECK(!log_has("behind") && !log_has("unusable"));
    sn_store_close(st);

    /* a flipped byte, a truncated file, garbage, no file: all rebuilt */
    for (int mode = 0; mode < 4; mode++) {
        long size = file_size(idx);
        if (mode == 0) {
            FILE *f = fopen(idx, "r+b");
            CHECK(f);
            fseek(f, size / 2, SEEK_SET);
            int c = fgetc(f);
            fseek(f, size / 2, SEEK_SET);
            fputc(c ^ 0x40, f);
            fclose(f);
        } else if (mode == 1) {
            CHECK(truncate(idx, size - 100) == 0);
        } else if (mode == 2) {
            FILE *f = fopen(idx, "wb");
            fputs("not an index at all", f);
            fclose(f);
        } else {
            CHECK(unlink(idx) == 0);
        }
        st = open_db("persist.db");
        snprintf(id, sizeof id, "d%d", N + 11);
        check_top1(st, name, "m", v + (size_t)(N + 11) * D, id);
        CHECK(mode == 3 ? log_line("info", "no index file")
                        : log_line("warn", "unusable"));
        sn_store_close(st);
        CHECK(file_size(idx) > 0); /* saved again */
    }
    unlink(backup);
    free(v);
}

/* ---- AUTO ------------------------------------------------------------------------ */

static void test_auto(void)
{
    /* At 2048 dimensions AUTO's threshold is SN__AUTO_FLAT_MAX_384 * 384 /
     * 2048 vectors. */
    enum { D = 2048 };
    const int limit = SN__AUTO_FLAT_MAX_384 * 384 / D;
    float *v = rand_vecs(limit + 20, D);
    sn_index_kind_t kind;
    sn_store_t *st = open_db("auto.db");

    CHECK_OK(sn_store_collection(st, "auto", "m", D, SN_INDEX_AUTO, err,
                                 sizeof err), err);
    add_n(st, "auto", "m", 0, limit - 10, v, D);
    check_top1(st, "auto", "m", v, "d0");
    n_docs_of(st, "auto", NULL, &kind);
    CHECK_EQ(kind, SN_INDEX_FLAT);
    add_n(st, "auto", "m", limit - 10, 30, v + (size_t)(limit - 10) * D, D);
    n_docs_of(st, "auto", NULL, &kind);
    CHECK_EQ(kind, SN_INDEX_HNSW);
    CHECK(log_line("info", "as hnsw"));
    char id[32];
    snprintf(id, sizeof id, "d%d", limit + 5);
    check_top1(st, "auto", "m", v + (size_t)(limit + 5) * D, id);
    sn_store_close(st);
    free(v);
}

/* ---- migration ------------------------------------------------------------------ */

static void test_migration(void)
{
    char path[512];
    sqlite3 *db;
    sn_store_t *st;
    float v[3][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 0.6f, 0.8f}};
    sn_doc_t *docs;
    int n;

    /* the pre-release layout, by hand */
    path_of(path, sizeof path, "v0.db");
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
        "CREATE TABLE collections (id INTEGER PRIMARY KEY, name TEXT UNIQUE "
        "NOT NULL, model_id TEXT NOT NULL, dim INTEGER NOT NULL);"
        "CREATE TABLE documents (id INTEGER PRIMARY KEY, collection INTEGER "
        "NOT NULL, ext_id TEXT NOT NULL, text TEXT NOT NULL, meta TEXT, "
        "UNIQUE (collection, ext_id));"
        "CREATE TABLE chunks (id INTEGER PRIMARY KEY, document INTEGER NOT "
        "NULL, ordinal INTEGER NOT NULL, vector BLOB NOT NULL);"
        "INSERT INTO collections VALUES (7, 'old', 'm0', 4);"
        "INSERT INTO documents VALUES (1, 7, 'x', 'old text x', NULL);"
        "INSERT INTO documents VALUES (2, 7, 'y', 'old text y', "
        "'{\"k\": 1}');", NULL, NULL, NULL) == SQLITE_OK);
    for (int i = 0; i < 3; i++) {
        sqlite3_stmt *s;
        CHECK(sqlite3_prepare_v2(db, "INSERT INTO chunks VALUES (?1, ?2, ?3, "
                                 "?4)", -1, &s, NULL) == SQLITE_OK);
        sqlite3_bind_int(s, 1, 10 + i);
        sqlite3_bind_int(s, 2, i < 2 ? 1 : 2);
        sqlite3_bind_int(s, 3, i < 2 ? i : 0);
        sqlite3_bind_blob(s, 4, v[i], sizeof v[i], SQLITE_STATIC);
        CHECK(sqlite3_step(s) == SQLITE_DONE);
        sqlite3_finalize(s);
    }
    sqlite3_close(db);

    st = open_db("v0.db");
    CHECK(log_line("info", "migrated from schema version 0 to 1"));
    CHECK(!log_has("database created"));
    {
        sqlite3_stmt *s;
        CHECK(sqlite3_prepare_v2(sn__store_db(st), "PRAGMA user_version", -1,
                                 &s, NULL) == SQLITE_OK);
        CHECK(sqlite3_step(s) == SQLITE_ROW);
        CHECK_EQ(sqlite3_column_int(s, 0), SN__SCHEMA_VERSION);
        sqlite3_finalize(s);
    }
    const char *ids[] = {"x", "y"};
    CHECK_OK(sn_store_get(st, "old", ids, 2, &docs, &n, err, sizeof err),
             err);
    CHECK_EQ(n, 2);
    CHECK_STREQ(docs[0].meta_json, "{}");
    CHECK_STREQ(docs[1].meta_json, "{\"k\": 1}");
    CHECK_EQ(docs[0].n_chunks, 2);
    for (int i = 0; i < n; i++)
        sn_doc_free(&docs[i]);
    free(docs);
    check_top1(st, "old", "m0", v[2], "y");
    sn_hit_t *h;
    CHECK_OK(sn_store_search(st, "old", "m0", v[1], 1, NULL, &h, &n, err,
                             sizeof err), err);
    CHECK_EQ(n, 1);
    CHECK_STREQ(h[0].text, "old text x"); /* no span: the whole text */
    sn_hits_free(h, n);
    /* new chunk ids continue past the old ones */
    float w[4] = {0, 0, 0.8f, -0.6f};
    CHECK_OK(add1(st, "old", "m0", "z", "new", NULL, w), err);
    {
        sqlite3_stmt *s;
        CHECK(sqlite3_prepare_v2(sn__store_db(st), "SELECT min(id) FROM "
                                 "chunks WHERE document = (SELECT id FROM "
                                 "documents WHERE ext_id = 'z')", -1, &s,
                                 NULL) == SQLITE_OK);
        CHECK(sqlite3_step(s) == SQLITE_ROW);
        CHECK(sqlite3_column_int64(s, 0) > 12);
        sqlite3_finalize(s);
    }
    sn_store_close(st);
    /* a new database is created, not migrated step by step */
    sn_store_close(open_db("fresh.db"));
    CHECK(log_line("info", "database created (schema version"));
    CHECK(!log_has("migrated"));
    /* opening again migrates nothing */
    st = open_db("v0.db");
    CHECK(!log_has("migrated"));
    check_top1(st, "old", "m0", w, "z");
    sn_store_close(st);

    /* a schema from the future is refused */
    path_of(path, sizeof path, "future.db");
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL) ==
          SQLITE_OK);
    sqlite3_close(db);
    CHECK_FAILS_WITH(sn_store_open(path, &st, err, sizeof err), err,
                     "newer than this sense");
    /* so is a file that is not a database */
    path_of(path, sizeof path, "junk.db");
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < 1000; i++)
        fputs("junk", f);
    fclose(f);
    CHECK_EQ(sn_store_open(path, &st, err, sizeof err), SN_ECORRUPT);
}

/* ---- full disk, read-only --------------------------------------------------------- */

static void check_consistent(sn_store_t *st, const float *v, int n_ok, int d)
{
    char id[32];
    CHECK_EQ(n_docs_of(st, "full", NULL, NULL), n_ok);
    for (int i = 0; i < n_ok; i += 17) {
        snprintf(id, sizeof id, "d%d", i);
        check_top1(st, "full", "m", v + (size_t)i * d, id);
    }
}

static void test_disk_full(void)
{
    enum { D = 64, N = 200, BIG = 400 };
    float *v = rand_vecs(N + BIG, D);
    sn_store_t *st = open_db("full.db");
    sqlite3 *db = sn__store_db(st);
    char sql[128];
    int64_t pages = 0;

    CHECK_OK(sn_store_collection(st, "full", "m", D, SN_INDEX_FLAT, err,
                                 sizeof err), err);
    add_n(st, "full", "m", 0, N, v, D);
    check_consistent(st, v, N, D); /* index loaded */
    {
        sqlite3_stmt *s;
        CHECK(sqlite3_prepare_v2(db, "PRAGMA page_count", -1, &s, NULL) ==
              SQLITE_OK);
        CHECK(sqlite3_step(s) == SQLITE_ROW);
        pages = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
    }
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld",
             (long long)pages + 2);
    CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
    /* BIG documents do not fit in two more pages */
    sn_chunk_in_t ch[BIG];
    sn_doc_in_t docs[BIG];
    char ids[BIG][16];
    static char text[2000];
    memset(text, 'x', sizeof text - 1);
    for (int i = 0; i < BIG; i++) {
        snprintf(ids[i], sizeof ids[i], "big%d", i);
        ch[i] = (sn_chunk_in_t){0, 10, v + (size_t)(N + i) * D};
        docs[i] = (sn_doc_in_t){ids[i], text, strlen(text), NULL, &ch[i], 1};
    }
    CHECK_FAILS_WITH(sn_store_add(st, "full", "m", docs, BIG, NULL, err,
                                  sizeof err), err, "full");
    CHECK_EQ(sn_store_add(st, "full", "m", docs, BIG, NULL, err, sizeof err),
             -ENOSPC);
    /* nothing of it anywhere: not in SQLite, not in the index */
    check_consistent(st, v, N, D);
    sn_hit_t *h;
    int n;
    CHECK_OK(sn_store_search(st, "full", "m", v + (size_t)(N + 3) * D, 50,
                             NULL, &h, &n, err, sizeof err), err);
    for (int i = 0; i < n; i++)
        CHECK(strncmp(h[i].id, "big", 3) != 0);
    sn_hits_free(h, n);
    /* deleting still works when nothing grows */
    const char *del[] = {"d199"};
    int n_del;
    CHECK_OK(sn_store_delete(st, "full", del, 1, &n_del, err, sizeof err),
             err);
    CHECK_EQ(n_del, 1);
    /* room again: the same batch goes in */
    CHECK(sqlite3_exec(db, "PRAGMA max_page_count = 1073741823", NULL, NULL,
                       NULL) == SQLITE_OK);
    CHECK_OK(sn_store_add(st, "full", "m", docs, BIG, NULL, err, sizeof err),
             err);
    check_top1(st, "full", "m", v + (size_t)(N + 3) * D, "big3");
    sn_store_close(st);
    st = open_db("full.db");
    check_top1(st, "full", "m", v + (size_t)(N + 5) * D, "big5");
    CHECK_EQ(n_docs_of(st, "full", NULL, NULL), N - 1 + BIG);
    sn_store_close(st);
    free(v);
}

static void test_readonly(void)
{
    enum { D = 8, N = 50 };
    float *v = rand_vecs(N, D);
    char path[512], uri[600], idx[512];
    sn_store_t *st = open_db("ro.db");
    sn_hit_t *h;
    int n, n_del;

    CHECK_OK(sn_store_collection(st, "ro", "m", D, SN_INDEX_FLAT, err,
                                 sizeof err), err);
    add_n(st, "ro", "m", 0, N, v, D);
    sn_store_close(st); /* index never loaded: no file yet */
    snprintf(idx, sizeof idx, "%s/ro.db.idx/1.faiss", dir);
    CHECK(file_size(idx) < 0);

    /* SQLITE_OPEN_READONLY through the URI: root or not */
    path_of(path, sizeof path, "ro.db");
    snprintf(uri, sizeof uri, "file:%s?mode=ro", path);
    logbuf[0] = '\0';
    CHECK_OK(sn_store_open(uri, &st, err, sizeof err), err);
    sn_store_set_log(st, log_cb, NULL);
    check_top1(st, "ro", "m", v + 3 * D, "d3"); /* built in memory */
    CHECK_FAILS_WITH(add1(st, "ro", "m", "new", "new", NULL, v), err,
                     "readonly");
    CHECK_EQ(add1(st, "ro", "m", "new", "new", NULL, v), -EROFS);
    const char *del[] = {"d1"};
    CHECK_EQ(sn_store_delete(st, "ro", del, 1, &n_del, err, sizeof err),
             -EROFS);
    CHECK_EQ(sn_store_collection(st, "other", "m", D, SN_INDEX_FLAT, err,
                                 sizeof err), -EROFS);
    CHECK_OK(sn_store_collection(st, "ro", "m", D, SN_INDEX_FLAT, err,
                                 sizeof err), err); /* exists: fine */
    CHECK_EQ(n_docs_of(st, "ro", NULL, NULL), N);
    CHECK_OK(sn_store_search(st, "ro", "m", v + D, 5, NULL, &h, &n, err,
                             sizeof err), err);
    CHECK_EQ(n, 5);
    CHECK_STREQ(h[0].id, "d1");
    sn_hits_free(h, n);
    CHECK_OK(sn_store_save(st, err, sizeof err), err); /* a no-op */
    sn_store_close(st);
    CHECK(file_size(idx) < 0); /* nothing written */

    /* PRAGMA query_only on a writable store: the same, and consistent */
    st = open_db("ro.db");
    check_top1(st, "ro", "m", v + 4 * D, "d4");
    CHECK(sqlite3_exec(sn__store_db(st), "PRAGMA query_only = 1", NULL, NULL,
                       NULL) == SQLITE_OK);
    CHECK_EQ(add1(st, "ro", "m", "d4", "replaced", NULL, v), -EROFS);
    CHECK_EQ(sn_store_delete(st, "ro", del, 1, &n_del, err, sizeof err),
             -EROFS);
    check_top1(st, "ro", "m", v + 4 * D, "d4");
    check_top1(st, "ro", "m", v + 1 * D, "d1");
    CHECK(sqlite3_exec(sn__store_db(st), "PRAGMA query_only = 0", NULL, NULL,
                       NULL) == SQLITE_OK);
    CHECK_OK(sn_store_delete(st, "ro", del, 1, &n_del, err, sizeof err),
             err);
    CHECK_EQ(n_del, 1);
    sn_store_close(st);

    /* file permissions, when they apply (not as root) */
    if (geteuid() != 0) {
        CHECK(chmod(path, 0444) == 0);
        CHECK_OK(sn_store_open(path, &st, err, sizeof err), err);
        CHECK(add1(st, "ro", "m", "new", "new", NULL, v) < 0);
        check_top1(st, "ro", "m", v + 3 * D, "d3");
        sn_store_close(st);
        CHECK(chmod(path, 0644) == 0);
    }
    free(v);
}

/* ---- threads ------------------------------------------------------------------------ */

typedef struct {
    sn_store_t *st;
    const float *v;
    int t;
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    char e[512], id[32];
    for (int i = 0; i < 40; i++) {
        sn_hit_t *h;
        int n;
        if (i % 4 == 0) {
            snprintf(id, sizeof id, "t%d_%d", w->t, i);
            sn_chunk_in_t ch = {0, 1, w->v + (size_t)(w->t * 40 + i) * 16};
            sn_doc_in_t d = {id, "x", 1, NULL, &ch, 1};
            if (sn_store_add(w->st, "mt", "m", &d, 1, NULL, e, sizeof e) < 0)
                return (void *)1;
        } else if (sn_store_search(w->st, "mt", "m",
                                   w->v + (size_t)(w->t * 40) * 16, 5, NULL,
                                   &h, &n, e, sizeof e) < 0) {
            return (void *)1;
        } else {
            sn_hits_free(h, n);
        }
    }
    return NULL;
}

static void test_threads(void)
{
    enum { T = 4 };
    float *v = rand_vecs(T * 40, 16);
    sn_store_t *st = open_db("mt.db");
    pthread_t th[T];
    worker_t w[T];

    CHECK_OK(sn_store_collection(st, "mt", "m", 16, SN_INDEX_HNSW, err,
                                 sizeof err), err);
    for (int i = 0; i < T; i++) {
        w[i] = (worker_t){st, v, i};
        CHECK(pthread_create(&th[i], NULL, worker, &w[i]) == 0);
    }
    for (int i = 0; i < T; i++) {
        void *r;
        CHECK(pthread_join(th[i], &r) == 0);
        CHECK(r == NULL);
    }
    CHECK_EQ(n_docs_of(st, "mt", NULL, NULL), T * 10);
    check_top1(st, "mt", "m", v + 4 * 16, "t0_4");
    sn_store_close(st);
    free(v);
}

/* Searches run faiss with the store unlocked (index/store.c): readers
 * in parallel with a writer that adds, replaces and deletes (Flat removes
 * in place; HNSW tombstones, then rebuilds). Each reader's anchor documents
 * are never touched, so each must stay its own top hit throughout. */
typedef struct {
    sn_store_t *st;
    const char *coll;
    const float *v;
    int first, n, bad;
    int *done; /* the writer's: set when it has finished */
} rw_t;

enum { RW_D = 32, RW_N = 1500, RW_ANCHORS = 60, RW_WRITES = 600 };

static void *rw_reader(void *arg)
{
    rw_t *r = arg;
    char e[512], want[16];
    /* at least n searches, and on while the writer writes */
    for (int i = 0; i < r->n || !__atomic_load_n(r->done, __ATOMIC_ACQUIRE);
         i++) {
        int a = r->first + i % RW_ANCHORS;
        sn_hit_t *h;
        int n;
        snprintf(want, sizeof want, "d%d", a);
        if (sn_store_search(r->st, r->coll, "m", r->v + (size_t)a * RW_D, 3,
                            NULL, &h, &n, e, sizeof e) < 0 ||
            n < 1 || strcmp(h[0].id, want) != 0)
            r->bad++;
        if (n >= 0)
            sn_hits_free(h, n);
    }
    return NULL;
}

static void *rw_writer(void *arg)
{
    rw_t *w = arg;
    char e[512], id[32];
    for (int i = 0; i < w->n; i++) {
        /* churn the documents past the anchors: replace, add, delete */
        int k = RW_ANCHORS * 3 + (i * 7) % (RW_N - RW_ANCHORS * 3);
        snprintf(id, sizeof id, i % 3 == 2 ? "d%d" : "w%d", k);
        if (i % 3 == 1) {
            const char *ids[1] = {id};
            int nd;
            snprintf(id, sizeof id, "d%d", k);
            if (sn_store_delete(w->st, w->coll, ids, 1, &nd, e, sizeof e) < 0)
                w->bad++;
            continue;
        }
        /* ten at a time, so faiss changes much while readers search */
        char ids[10][48];
        sn_chunk_in_t ch[10];
        sn_doc_in_t d[10];
        for (int j = 0; j < 10; j++) {
            snprintf(ids[j], sizeof ids[j], "%s_%d", id, j);
            /* each its own vector: duplicates would wreck HNSW's graph */
            ch[j] = (sn_chunk_in_t){
                0, 1, w->v + (size_t)(RW_N + i * 10 + j) * RW_D};
            d[j] = (sn_doc_in_t){ids[j], "x", 1, NULL, &ch[j], 1};
        }
        if (sn_store_add(w->st, w->coll, "m", d, 10, NULL, e, sizeof e) < 0)
            w->bad++;
    }
    __atomic_store_n(w->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void test_readers_writer(sn_index_kind_t kind, const char *name)
{
    enum { R = 3 };
    float *v = clustered_vecs(RW_N + 10 * RW_WRITES, RW_D);
    sn_store_t *st = open_db(name);
    pthread_t th[R + 1];
    rw_t r[R + 1];
    int done = 0;

    CHECK_OK(sn_store_collection(st, name, "m", RW_D, kind, err, sizeof err),
             err);
    add_n(st, name, "m", 0, RW_N, v, RW_D);
    for (int i = 0; i <= R; i++) {
        r[i] = (rw_t){st, name, v, i * RW_ANCHORS, i < R ? 400 : RW_WRITES,
                      0, &done};
        CHECK(pthread_create(&th[i], NULL, i < R ? rw_reader : rw_writer,
                             &r[i]) == 0);
    }
    for (int i = 0; i <= R; i++) {
        CHECK(pthread_join(th[i], NULL) == 0);
        CHECK_EQ(r[i].bad, 0);
    }
    sn_store_close(st);
    free(v);
}

/* A Flat and an HNSW collection holding the same n vectors. */
static void flat_and_graph(sn_store_t *st, const char *flat,
                           const char *graph, int n, const float *v, int d)
{
    CHECK_OK(sn_store_collection(st, flat, "m", d, SN_INDEX_FLAT, err,
                                 sizeof err), err);
    CHECK_OK(sn_store_collection(st, graph, "m", d, SN_INDEX_HNSW, err,
                                 sizeof err), err);
    add_n(st, flat, "m", 0, n, v, d);
    add_n(st, graph, "m", 0, n, v, d);
}

/* ---- recall ---------------------------------------------------------------------------- */

static void test_recall(void)
{
    enum { D = 128, N = 10000, Q = 200, K = 10 };
    float *v = clustered_vecs(N + Q, D);
    sn_store_t *st = open_db("recall.db");
    int64_t found = 0;

    flat_and_graph(st, "flat", "hnsw", N, v, D);
    for (int q = 0; q < Q; q++) {
        const float *x = v + (size_t)(N + q) * D;
        sn_hit_t *hf, *hh;
        int nf, nh;
        CHECK_OK(sn_store_search(st, "flat", "m", x, K, NULL, &hf, &nf, err,
                                 sizeof err), err);
        CHECK_OK(sn_store_search(st, "hnsw", "m", x, K, NULL, &hh, &nh, err,
                                 sizeof err), err);
        CHECK_EQ(nf, K);
        for (int i = 0; i < nh; i++)
            found += hit_has(hf, nf, hh[i].id);
        sn_hits_free(hf, nf);
        sn_hits_free(hh, nh);
    }
    /* a filter that over-fetching cannot satisfy: the exact scan */
    const char *rare[3] = {"r0", "r1", "r2"};
    for (int i = 0; i < 3; i++)
        CHECK_OK(add1(st, "hnsw", "m", rare[i], "rare", "{\"rare\": 1}",
                      v + (size_t)(N + i) * D), err);
    sn_hit_t *h;
    int n;
    CHECK_OK(sn_store_search(st, "hnsw", "m", v + (size_t)(N + 1) * D, 5,
                             "{\"rare\": 1}", &h, &n, err, sizeof err), err);
    CHECK_EQ(n, 3);
    CHECK_STREQ(h[0].id, "r1");
    CHECK(h[1].score >= h[2].score);
    sn_hits_free(h, n);
    CHECK_OK(sn_store_search(st, "flat", "m", v, 5, "{\"rare\": 1}", &h, &n,
                             err, sizeof err), err);
    CHECK_EQ(n, 0);

    double recall = (double)found / (Q * K);
    printf("recall@10 of hnsw against flat, 10k x %d clustered: %.4f\n", D,
           recall);
    CHECK(recall >= 0.95);
    sn_store_close(st);
    free(v);
}

/* ---- exactness: Flat and HNSW scores against a double-precision scan -------- */

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* The index's own dot product (index/faiss_c.cpp swaps in a vectorized
 * one): Flat must give the exact top-k scores, each hit's score must be
 * its vector's true cosine, whatever the dimension's tail (d = 37 is no
 * multiple of 8 or 16), after a reopen too (the index read from its file);
 * sn_store_search_vec agrees and checks the dimension. */
static void test_exact(int D, sn_index_kind_t kind, const char *name)
{
    enum { N = 3000, Q = 20, K = 10 };
    float *v = kind == SN_INDEX_FLAT ? rand_vecs(N + Q, D)
                                     : clustered_vecs(N + Q, D);
    double *dots = malloc(N * sizeof *dots), *best = malloc(N * sizeof *best);
    sn_store_t *st = open_db(name);
    double worst = 0;
    int n_top = 0, n_none;
    sn_hit_t *h_none;

    CHECK(dots && best);
    CHECK_OK(sn_store_collection(st, name, "m", D, kind, err, sizeof err),
             err);
    add_n(st, name, "m", 0, N, v, D);
    for (int pass = 0; pass < 2; pass++) {
        for (int q = 0; q < Q; q++) {
            const float *x = v + (size_t)(N + q) * D;
            sn_hit_t *h, *h2;
            int n, n2;
            for (int i = 0; i < N; i++) {
                double acc = 0;
                for (int j = 0; j < D; j++)
                    acc += (double)x[j] * v[(size_t)i * D + j];
                dots[i] = best[i] = acc;
            }
            qsort(best, N, sizeof *best, cmp_desc);
            CHECK_OK(sn_store_search(st, name, "m", x, K, NULL, &h, &n, err,
                                     sizeof err), err);
            CHECK_EQ(n, K);
            for (int i = 0; i < n; i++) {
                int id = atoi(h[i].id + 1);
                CHECK(id >= 0 && id < N);
                double e = fabs(h[i].score - dots[id]);
                worst = e > worst ? e : worst;
                CHECK(e < 1e-5);
                if (kind == SN_INDEX_FLAT)
                    CHECK(fabs(h[i].score - best[i]) < 1e-5);
                else
                    n_top += fabs(h[i].score - best[i]) < 1e-5;
            }
            CHECK_OK(sn_store_search_vec(st, name, x, D, K, NULL, &h2, &n2,
                                         err, sizeof err), err);
            CHECK_EQ(n2, n);
            for (int i = 0; i < n && i < n2; i++)
                CHECK_STREQ(h2[i].id, h[i].id);
            sn_hits_free(h, n);
            sn_hits_free(h2, n2);
        }
        CHECK_EQ(sn_store_search_vec(st, name, v, D - 1, K, NULL, &h_none,
                                     &n_none, err, sizeof err), SN_EMODEL);
        CHECK(strstr(err, "dimensions"));
        sn_store_close(st);
        st = open_db(name); /* the second pass reads the saved index */
    }
    if (kind != SN_INDEX_FLAT) /* 3k clustered vectors: near exact */
        CHECK(n_top >= 2 * Q * K * 95 / 100);
    printf("%s d=%d: hit scores within %.2g of the double-precision cosine"
           ", %d of %d ranks exact\n", name, D, worst,
           kind == SN_INDEX_FLAT ? 2 * Q * K : n_top, 2 * Q * K);
    sn_store_close(st);
    free(dots);
    free(best);
    free(v);
}

/* ---- the HNSW beam, the kind switch, the kernels ----------------------------- */

/* Per-search ef does what docs/protocol.md says: a wider beam finds more
 * of the true top 10 (here: a beam of k finds clearly fewer than the
 * default, and 400 nearly all), the default follows sn__ann_ef, and
 * out-of-range values are refused. Flat ignores ef. */
static void test_ef(void)
{
    enum { D = 64, N = 4000, Q = 100, K = 10 };
    static const int efs[3] = {1, 0, 400};
    float *v = clustered_vecs(N + Q, D);
    sn_store_t *st = open_db("ef.db");
    int64_t found[3] = {0};
    sn_hit_t *h, *hf;
    int n, nf;

    flat_and_graph(st, "f", "g", N, v, D);
    for (int q = 0; q < Q; q++) {
        const float *x = v + (size_t)(N + q) * D;
        CHECK_OK(sn_store_search_ef(st, "f", x, D, K, 1, NULL, &hf, &nf, err,
                                    sizeof err), err);
        CHECK_EQ(nf, K);
        for (int e = 0; e < 3; e++) {
            CHECK_OK(sn_store_search_ef(st, "g", x, D, K, efs[e], NULL, &h,
                                        &n, err, sizeof err), err);
            CHECK_EQ(n, K);
            for (int i = 0; i < n; i++)
                found[e] += hit_has(hf, nf, h[i].id);
            if (efs[e] == 0) { /* the default is sn_store_search_vec's */
                sn_hit_t *h2;
                int n2;
                CHECK_OK(sn_store_search_vec(st, "g", x, D, K, NULL, &h2,
                                             &n2, err, sizeof err), err);
                CHECK_EQ(n2, n);
                for (int i = 0; i < n && i < n2; i++)
                    CHECK_STREQ(h2[i].id, h[i].id);
                sn_hits_free(h2, n2);
            }
            sn_hits_free(h, n);
        }
        sn_hits_free(hf, nf);
    }
    printf("%s: recall@10 at ef k / default (%lld) / 400: %.3f %.3f %.3f\n",
           sn_hnsw_kind_name(g_hnsw), (long long)sn__ann_ef(N, K),
           found[0] / (double)(Q * K), found[1] / (double)(Q * K),
           found[2] / (double)(Q * K));
    if (g_hnsw == SN_HNSW_F32) {
        CHECK(found[0] + Q * K / 50 < found[1]);
        CHECK(found[1] <= found[2]);
    }
    if (g_hnsw == SN_HNSW_SQ8) /* the beam is at least its 4k candidates */
        CHECK(found[0] < found[2]);
    if (g_hnsw == SN_HNSW_IVF) /* one list against every list */
        CHECK(found[0] + Q * K / 10 < found[2]);
    if (g_hnsw != SN_HNSW_FAISS) /* faiss' beam is fixed */
        CHECK(found[2] >= Q * K * 98 / 100);
    CHECK_EQ(sn__ann_ef(N, K), SN__GRAPH_EF_BASE);
    CHECK(sn__ann_ef(1000000, K) > sn__ann_ef(100000, K) &&
          sn__ann_ef(100000, K) > sn__ann_ef(10000, K));
    CHECK_EQ(sn__ann_ef(10, 500), 500);
    CHECK_FAILS_WITH(sn_store_search_ef(st, "g", v, D, K, -1, NULL, &h, &n,
                                        err, sizeof err), err, "ef");
    CHECK_FAILS_WITH(sn_store_search_ef(st, "g", v, D, K, SN_STORE_MAX_EF + 1,
                                        NULL, &h, &n, err, sizeof err),
                     err, "ef");
    sn_store_close(st);
    free(v);
}

/* The graph's own layer-0 search (hnsw.cpp beam0, which prefetches whole
 * vectors ahead) gives hnswlib's result exactly: the same labels in the
 * same order with the same scores, for float and SQ8 graphs, beams from
 * k to wide, with and without deleted elements. */
static void test_beam_ref(void)
{
    enum { D = 384, N = 3000, Q = 40 };
    static const int64_t kk[2] = {10, 100}, efs[3] = {0, 40, 300};
    float *v = clustered_vecs(N + Q, D);
    int64_t *ids = malloc(N * sizeof *ids), lab[100], lab_ref[100];
    float sc[100], sc_ref[100];
    int64_t n_diff = 0, n_cmp = 0;

    CHECK(v && ids);
    for (int i = 0; i < N; i++)
        ids[i] = 1000 + 7 * i;
    for (int sq8 = 0; sq8 < 2; sq8++) {
        sn__hnsw_t *h;
        CHECK_OK(sn__hnsw_new(D, sq8, 16, 64, &h, err, sizeof err), err);
        CHECK_OK(sn__hnsw_add(h, N, v, ids, err, sizeof err), err);
        for (int del = 0; del < 2; del++) {
            if (del) /* every fifth element, the entry point perhaps too */
                for (int i = 0; i < N; i += 5)
                    sn__hnsw_mark_deleted(h, 1, &ids[i]);
            for (int q = 0; q < Q; q++)
                for (int a = 0; a < 2; a++)
                    for (int e = 0; e < 3; e++) {
                        const float *x = v + (size_t)(N + q) * D;
                        CHECK_OK(sn__hnsw_search(h, x, kk[a], efs[e], sc,
                                                 lab, err, sizeof err), err);
                        CHECK_OK(sn__hnsw_search_ref(h, x, kk[a], efs[e],
                                                     sc_ref, lab_ref, err,
                                                     sizeof err), err);
                        for (int i = 0; i < kk[a]; i++) {
                            n_diff += lab[i] != lab_ref[i] ||
                                      memcmp(&sc[i], &sc_ref[i],
                                             sizeof sc[i]) != 0;
                            n_cmp++;
                            if (del && lab[i] >= 0)
                                CHECK((lab[i] - 1000) / 7 % 5 != 0);
                        }
                    }
        }
        sn__hnsw_free(h);
    }
    printf("beam0 against hnswlib's search: %lld of %lld results differ\n",
           (long long)n_diff, (long long)n_cmp);
    CHECK_EQ(n_diff, 0);
    CHECK_EQ(n_cmp, 2 * 2 * Q * 3 * (10 + 100));
    free(ids);
    free(v);
}

/* The store's HNSW kind changes: an index file of the other kind is
 * rebuilt at its next use, and searches stay right throughout. */
static void test_kind_switch(void)
{
    enum { D = 16, N = 500 };
    float *v = rand_vecs(N, D);
    sn_hnsw_kind_t saved = g_hnsw;
    sn_store_t *st;

    g_hnsw = SN_HNSW_SQ8;
    st = open_db("switch.db");
    CHECK_OK(sn_store_collection(st, "s", "m", D, SN_INDEX_HNSW, err,
                                 sizeof err), err);
    add_n(st, "s", "m", 0, N, v, D);
    check_top1(st, "s", "m", v + 3 * D, "d3");
    sn_store_close(st);
    g_hnsw = SN_HNSW_F32;
    st = open_db("switch.db");
    check_top1(st, "s", "m", v + 5 * D, "d5");
    CHECK(log_has("hnsw (sq8) index as hnsw"));
    sn_store_close(st);
    st = open_db("switch.db"); /* the file is f32 now: loaded as it is */
    check_top1(st, "s", "m", v + 7 * D, "d7");
    CHECK(!log_has("rebuilding") && !log_has("unusable"));
    CHECK_EQ(sn_store_set_hnsw(st, (sn_hnsw_kind_t)7), SN_EARG);
    sn_store_close(st);
    g_hnsw = saved;
    free(v);
}

/* Every kernel this CPU runs gives the same int8 dot product (exact) and
 * float dot products within rounding, at lengths with every kind of
 * tail. */
static void test_kernels(void)
{
    static const char *const caps[] = {"base", "avx2", NULL};
    static const int lens[] = {1, 7, 16, 31, 32, 37, 64, 100, 384, 385};
    int8_t a[400], b[400];
    float *x = rand_vecs(2, 400);

    for (int i = 0; i < 400; i++) {
        a[i] = (int8_t)((int)(urand() * 255) - 127);
        b[i] = (int8_t)((int)(urand() * 255) - 127);
    }
    a[0] = b[0] = -127; /* the extremes */
    a[1] = b[1] = 127;
    for (size_t l = 0; l < sizeof lens / sizeof *lens; l++) {
        int d = lens[l];
        int64_t ref = 0;
        double fref = 0;
        for (int i = 0; i < d; i++) {
            ref += (int64_t)a[i] * b[i];
            fref += (double)x[i] * x[400 + i];
        }
        for (int c = 0; c < 3; c++) {
            if (caps[c])
                setenv("SENSE_ANN_KERNELS", caps[c], 1);
            else
                unsetenv("SENSE_ANN_KERNELS");
            CHECK_EQ((int64_t)sn__dot_i8_pick()(a, b, (size_t)d), ref);
            CHECK(fabs(sn__dot_pick()(x, x + 400, (size_t)d) - fref) < 1e-5);
        }
    }
    unsetenv("SENSE_ANN_KERNELS");
    free(x);
}

/* pin the ANN dot-product kernels to `name`, or back to this CPU's best
 * when NULL */
static void use_kernels(const char *name)
{
    if (name)
        setenv("SENSE_ANN_KERNELS", name, 1);
    else
        unsetenv("SENSE_ANN_KERNELS");
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/sn_store_XXXXXX");
    CHECK(mkdtemp(dir));

    test_kernels();
    test_documents();
    test_search(SN_INDEX_FLAT, "flat");
    test_persistence(SN_INDEX_FLAT, "pflat");
    /* every HNSW kind (the IVF too): deletions, filters, tombstone
     * rebuilds, file identity, checksum, truncation and catch-up,
     * per-search ef */
    for (int k = SN_HNSW_F32; k <= SN_HNSW_IVF; k++) {
        char name[32];
        g_hnsw = (sn_hnsw_kind_t)k;
        snprintf(name, sizeof name, "hnsw%s", sn_hnsw_kind_name(g_hnsw));
        test_search(SN_INDEX_HNSW, name);
        snprintf(name, sizeof name, "phnsw%s", sn_hnsw_kind_name(g_hnsw));
        test_persistence(SN_INDEX_HNSW, name);
        test_ef();
    }
    g_hnsw = SN_HNSW_F32;
    test_beam_ref();
    test_kind_switch();
    test_auto();
    test_migration();
    test_disk_full();
    test_readonly();
    test_threads();
    test_readers_writer(SN_INDEX_FLAT, "rwflat");
    test_readers_writer(SN_INDEX_HNSW, "rwhnsw");
    test_recall();
    /* every dot-product kernel this CPU has (index/faiss_c.cpp) */
    static const char *const kernels[] = {"base", "avx2", NULL};
    for (int i = 0; i < 3; i++) {
        char name[32];
        use_kernels(kernels[i]);
        snprintf(name, sizeof name, "exact384%s", kernels[i] ? kernels[i] : "");
        test_exact(384, SN_INDEX_FLAT, name);
        snprintf(name, sizeof name, "exact37%s", kernels[i] ? kernels[i] : "");
        test_exact(37, SN_INDEX_FLAT, name);
    }
    test_exact(384, SN_INDEX_HNSW, "exacthnsw");
    /* SQ8: the candidates' scores are exact cosines after the rerank, at
     * every int8 kernel and an odd dimension */
    g_hnsw = SN_HNSW_SQ8;
    for (int i = 0; i < 3; i++) {
        char name[32];
        use_kernels(kernels[i]);
        snprintf(name, sizeof name, "exactsq8%s", kernels[i] ? kernels[i] : "");
        test_exact(37, SN_INDEX_HNSW, name);
    }
    unsetenv("SENSE_ANN_KERNELS");
    test_exact(384, SN_INDEX_HNSW, "exactsq8_384");
    /* the IVF's codes, reranked the same way */
    g_hnsw = SN_HNSW_IVF;
    test_exact(37, SN_INDEX_HNSW, "exactivf37");
    test_exact(384, SN_INDEX_HNSW, "exactivf384");
    g_hnsw = SN_HNSW_F32;

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    printf("store: ok\n");
    return 0;
}
