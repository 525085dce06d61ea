/*
 * test_hybrid.c -- the lexical index beside the vectors, and the search
 * modes (index/store.c sn_store_query, index/lexical.c, index/schema.c
 * version 3).
 *
 * Covers: the FTS5 tables agree with the documents (FTS5 'integrity-check'
 * against the content table) and search finds exactly what is stored after
 * add, replace and delete, both ways; a process killed (SIGKILL) in the
 * middle of an ingest leaves them agreeing, every acknowledged document
 * searchable both ways; a database made by the last release (schema 2,
 * tests/data/v2-release.db, written by the store of main at commit
 * 555b362) migrates and is backfilled; every mode with and without
 * filters; documents versus chunks as results; Korean queries whose words
 * carry other particles than the document's; a query the model does not
 * know leaves the lexical order alone, and a query no document's words
 * match leaves the vector order alone (hybrid never below its better
 * list on these), nor does a model that knows the query's tokens but
 * disagrees with a confident lexical list; WordNet synonyms of query
 * words count at a down-weight, never twice for one token; BM25's statistics are each collection's own, and
 * follow its changes; bad modes and missing inputs are errors; a background
 * index build (no index file) answers searches exactly meanwhile, keeps
 * the writes made during it, and is logged; a search by vector alone
 * gives the brute-force documents, chunks and scores over a Flat index.
 */
#include <pthread.h>
#include <time.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "sense/sense.h"
#include "sense/store.h"

#include "../index/store_int.h"

#define D 8

static char err[1024];
static char dir[256];

static void vec_of(float *v, int seed)
{
    double s = 0;
    for (int i = 0; i < D; i++) {
        v[i] = (float)sin(seed * 12.9898 + i * 78.233 + 0.5);
        s += (double)v[i] * v[i];
    }
    for (int i = 0; i < D; i++)
        v[i] = (float)(v[i] / sqrt(s));
}

static sn_store_t *open_db(const char *name)
{
    char path[512];
    sn_store_t *st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK_OK(sn_store_open(path, &st, err, sizeof err), err);
    return st;
}

/* Code points of an ASCII-or-UTF-8 string. */
static int32_t n_cp(const char *s)
{
    int32_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

/* One document, one chunk (the whole text), vector seed `seed`. */
static void put(sn_store_t *st, const char *coll, const char *id,
                const char *text, const char *meta, int seed)
{
    float v[D];
    vec_of(v, seed);
    sn_chunk_in_t ch = {0, n_cp(text), v};
    sn_doc_in_t d = {id, text, strlen(text), meta, &ch, 1};
    CHECK_OK(sn_store_add(st, coll, "m", &d, 1, NULL, err, sizeof err), err);
}

static void del(sn_store_t *st, const char *coll, const char *id)
{
    int n;
    CHECK_OK(sn_store_delete(st, coll, &id, 1, &n, err, sizeof err), err);
    CHECK_EQ(n, 1);
}

/* FTS5's own check of both tables against documents. */
static void fts_agree(sqlite3 *db)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db,
        "INSERT INTO documents_fts (documents_fts, rank) "
        "VALUES ('integrity-check', 1);"
        "INSERT INTO documents_tri (documents_tri, rank) "
        "VALUES ('integrity-check', 1);", NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "integrity-check: %s\n", msg ? msg : "?");
    CHECK_EQ(rc, SQLITE_OK);
    sqlite3_free(msg);
}

typedef struct {
    sn_hit_t *h;
    int n, lists;
} res_t;

static res_t run(sn_store_t *st, const char *coll, sn_search_mode_t mode,
                 const char *text, const float *vec, float known, int k,
                 const char *filter, int by_chunk)
{
    res_t r = {0};
    sn_query_t q = {.mode = mode, .by_chunk = by_chunk, .text = text,
                    .vec = vec, .dim = D, .model_id = NULL, .known = known,
                    .k = k, .filter_json = filter};
    CHECK_OK(sn_store_query(st, coll, &q, &r.h, &r.n, &r.lists, err,
                            sizeof err), err);
    return r;
}

static int rank_of(const res_t *r, const char *id)
{
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->h[i].id, id))
            return i + 1;
    return 0;
}

static void done(res_t *r) { sn_hits_free(r->h, r->n); }

/* Found at rank 1 by words (lexical) and by its own vector (vector). */
static void found_both(sn_store_t *st, const char *coll, const char *id,
                       const char *word, int seed)
{
    float v[D];
    vec_of(v, seed);
    res_t a = run(st, coll, SN_SEARCH_LEXICAL, word, NULL, 1, 5, NULL, 0);
    res_t b = run(st, coll, SN_SEARCH_VECTOR, NULL, v, 1, 5, NULL, 0);
    if (a.n < 1 || strcmp(a.h[0].id, id))
        fprintf(stderr, "lexical '%s': wanted %s first, got %s\n", word, id,
                a.n ? a.h[0].id : "nothing");
    CHECK(a.n >= 1 && !strcmp(a.h[0].id, id));
    CHECK(b.n >= 1 && !strcmp(b.h[0].id, id));
    CHECK(a.lists == SN_LIST_LEXICAL && b.lists == SN_LIST_VECTOR);
    done(&a);
    done(&b);
}

/* Found by neither list. */
static void found_neither(sn_store_t *st, const char *coll, const char *id,
                          const char *word, int seed)
{
    float v[D];
    vec_of(v, seed);
    res_t a = run(st, coll, SN_SEARCH_LEXICAL, word, NULL, 1, 100, NULL, 0);
    res_t b = run(st, coll, SN_SEARCH_VECTOR, NULL, v, 1, 100, NULL, 0);
    CHECK_EQ(rank_of(&a, id), 0);
    CHECK_EQ(rank_of(&b, id), 0);
    done(&a);
    done(&b);
}

/* ---- add, replace, delete ------------------------------------------------------ */

static void test_agree(void)
{
    sn_store_t *st = open_db("agree.db");
    CHECK_OK(sn_store_collection(st, "c", "m", D, SN_INDEX_FLAT, err,
                                 sizeof err), err);
    put(st, "c", "a", "Aardvarks dig burrows at night.", NULL, 1);
    put(st, "c", "b", "Compilers translate source code.", NULL, 2);
    put(st, "c", "x", "Zebras graze on the savanna.", NULL, 3);
    fts_agree(sn__store_db(st));
    found_both(st, "c", "a", "aardvark", 1); /* stemmed: aardvarks */
    found_both(st, "c", "b", "compiler", 2);
    /* replace: the old words and vector go, the new ones come */
    put(st, "c", "b", "Gardeners water tomatoes.", NULL, 4);
    fts_agree(sn__store_db(st));
    found_both(st, "c", "b", "tomato", 4);
    {
        res_t r = run(st, "c", SN_SEARCH_LEXICAL, "compilers", NULL, 1, 10,
                      NULL, 0);
        CHECK_EQ(r.n, 0);
        CHECK_EQ(r.lists, 0);
        done(&r);
    }
    /* delete: gone from both */
    del(st, "c", "a");
    fts_agree(sn__store_db(st));
    found_neither(st, "c", "a", "aardvark", 1);
    /* a failed write (a full disk) rolls back both */
    {
        sqlite3 *db = sn__store_db(st);
        sqlite3_stmt *s;
        int pages;
        CHECK(sqlite3_prepare_v2(db, "PRAGMA page_count", -1, &s, NULL) ==
              SQLITE_OK);
        CHECK(sqlite3_step(s) == SQLITE_ROW);
        pages = sqlite3_column_int(s, 0);
        sqlite3_finalize(s);
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA max_page_count = %d", pages);
        CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
        char big[60000];
        for (size_t i = 0; i + 1 < sizeof big; i++)
            big[i] = "quokka wombat "[i % 14];
        big[sizeof big - 1] = '\0';
        float v[D];
        vec_of(v, 9);
        sn_chunk_in_t ch = {0, n_cp(big), v};
        sn_doc_in_t d = {"full", big, strlen(big), NULL, &ch, 1};
        CHECK(sn_store_add(st, "c", "m", &d, 1, NULL, err, sizeof err) < 0);
        CHECK(sqlite3_exec(db, "PRAGMA max_page_count = 1073741823", NULL,
                           NULL, NULL) == SQLITE_OK);
        fts_agree(db);
        found_neither(st, "c", "full", "quokka", 9);
    }
    sn_store_close(st);
    /* and after reopening */
    st = open_db("agree.db");
    fts_agree(sn__store_db(st));
    found_both(st, "c", "b", "tomatoes", 4);
    found_both(st, "c", "x", "zebra", 3);
    found_neither(st, "c", "a", "aardvarks", 1);
    sn_store_close(st);
}

/* ---- kill -9 in the middle of an ingest ------------------------------------------ */

static void test_kill(void)
{
    char path[512], ack[512];
    int fds[2];
    pid_t pid;

    snprintf(path, sizeof path, "%s/kill.db", dir);
    snprintf(ack, sizeof ack, "%s/kill.acks", dir);
    {
        sn_store_t *st = open_db("kill.db");
        CHECK_OK(sn_store_collection(st, "c", "m", D, SN_INDEX_AUTO, err,
                                     sizeof err), err);
        sn_store_close(st);
    }
    CHECK(pipe(fds) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        /* the child adds batches of documents for ever, writing the
         * number of each acknowledged one to the pipe */
        sn_store_t *st;
        close(fds[0]);
        if (sn_store_open(path, &st, err, sizeof err) < 0)
            _exit(2);
        for (int i = 0;; i += 10) {
            char ids[10][16], texts[10][96];
            float v[10][D];
            sn_chunk_in_t ch[10];
            sn_doc_in_t d[10];
            for (int j = 0; j < 10; j++) {
                snprintf(ids[j], sizeof ids[j], "k%d", i + j);
                snprintf(texts[j], sizeof texts[j],
                         "document number%d about lexeme%d and more words",
                         i + j, i + j);
                vec_of(v[j], 1000 + i + j);
                ch[j] = (sn_chunk_in_t){0, n_cp(texts[j]), v[j]};
                d[j] = (sn_doc_in_t){ids[j], texts[j], strlen(texts[j]),
                                     NULL, &ch[j], 1};
            }
            if (sn_store_add(st, "c", "m", d, 10, NULL, err, sizeof err) < 0)
                _exit(3);
            int last = i + 9;
            if (write(fds[1], &last, sizeof last) != sizeof last)
                _exit(4);
        }
    }
    close(fds[1]);
    int last = -1, got;
    /* let it write a while, then kill it without warning */
    for (int n = 0; n < 30 && read(fds[0], &got, sizeof got) == sizeof got;
         n++)
        last = got;
    kill(pid, SIGKILL);
    while (read(fds[0], &got, sizeof got) == sizeof got)
        last = got; /* acknowledged before the kill */
    close(fds[0]);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CHECK(last >= 9);

    sn_store_t *st = open_db("kill.db");
    sqlite3 *db = sn__store_db(st);
    fts_agree(db);
    /* every acknowledged document is there with its chunk, both ways */
    sqlite3_stmt *s;
    CHECK(sqlite3_prepare_v2(db, "SELECT count(*), (SELECT count(*) FROM "
                             "chunks) FROM documents", -1, &s, NULL) ==
          SQLITE_OK);
    CHECK(sqlite3_step(s) == SQLITE_ROW);
    CHECK(sqlite3_column_int(s, 0) >= last + 1);
    CHECK_EQ(sqlite3_column_int(s, 0), sqlite3_column_int(s, 1));
    sqlite3_finalize(s);
    for (int i = 0; i <= last; i += last / 7 + 1) {
        char id[16], word[32];
        snprintf(id, sizeof id, "k%d", i);
        snprintf(word, sizeof word, "lexeme%d", i);
        found_both(st, "c", id, word, 1000 + i);
    }
    char id[16], word[32];
    snprintf(id, sizeof id, "k%d", last);
    snprintf(word, sizeof word, "number%d", last);
    found_both(st, "c", id, word, 1000 + last);
    sn_store_close(st);
}

/* ---- migration of the last release's database ----------------------------------- */

/* The unit vector sin(a + i * b), i < D: how tests/data/mkrelease*.c drew
 * the vectors of their databases. */
static void release_vec(float *v, double a, double b)
{
    double sum = 0;
    for (int i = 0; i < D; i++) {
        v[i] = (float)sin(a + i * b);
        sum += (double)v[i] * v[i];
    }
    for (int i = 0; i < D; i++)
        v[i] = (float)(v[i] / sqrt(sum));
}

/* The first result of a search of the migrated collection "notes". */
static void top_is(sn_store_t *st, sn_search_mode_t mode, const char *text,
                   const float *vec, const char *id)
{
    res_t r = run(st, "notes", mode, text, vec, 1, 5, NULL, 0);
    CHECK(r.n >= 1);
    CHECK_STREQ(r.h[0].id, id);
    done(&r);
}

static void test_migration(void)
{
    char from[512], to[512];
    sn_store_t *st;
    snprintf(from, sizeof from, "%s/tests/data/v2-release.db", SN_SOURCE_DIR);
    snprintf(to, sizeof to, "%s/v2.db", dir);
    check_copy_file(from, to);
    st = open_db("v2.db");
    sqlite3 *db = sn__store_db(st);
    sqlite3_stmt *s;
    CHECK(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) ==
          SQLITE_OK);
    CHECK(sqlite3_step(s) == SQLITE_ROW);
    CHECK_EQ(sqlite3_column_int(s, 0), SN__SCHEMA_VERSION);
    sqlite3_finalize(s);
    fts_agree(db);
    /* backfilled: the old documents are found by their words */
    top_is(st, SN_SEARCH_LEXICAL, "rivers bank", NULL, "river");
    top_is(st, SN_SEARCH_LEXICAL, "데이터베이스를", NULL, "korean-db");
    /* and the old vectors still answer */
    float v[D];
    release_vec(v, 2 * 7.1, 1.3); /* mkrelease.c's vector of seed 2: python */
    top_is(st, SN_SEARCH_VECTOR, NULL, v, "python");
    /* new writes keep both in step */
    {
        float w[D];
        vec_of(w, 77);
        sn_chunk_in_t ch = {0, 27, w};
        sn_doc_in_t d = {"new", "Walruses bask on ice floes.", 27, NULL, &ch, 1};
        CHECK_OK(sn_store_add(st, "notes", "m8", &d, 1, NULL, err, sizeof err), err);
    }
    fts_agree(db);
    sn_store_close(st);
}

/* ---- modes, filters, grouping ------------------------------------------------------ */

static void test_modes(void)
{
    sn_store_t *st = open_db("modes.db");
    float v[D];
    CHECK_OK(sn_store_collection(st, "c", "m", D, SN_INDEX_AUTO, err,
                                 sizeof err), err);
    put(st, "c", "en1", "The river bank flooded after heavy rain.",
        "{\"lang\": \"en\", \"n\": 1}", 11);
    put(st, "c", "en2", "Rivers carry sediment to the sea.",
        "{\"lang\": \"en\", \"n\": 2}", 12);
    put(st, "c", "ko1", "강은 비가 온 뒤에 범람했습니다.",
        "{\"lang\": \"ko\", \"n\": 3}", 13);
    put(st, "c", "ko2", "데이터베이스는 자료를 저장합니다.",
        "{\"lang\": \"ko\", \"n\": 4}", 14);
    /* a long document of three chunks, all about rivers */
    {
        const char *t = "River one. River two. River three.";
        float w[3][D];
        for (int i = 0; i < 3; i++)
            vec_of(w[i], 20 + i);
        sn_chunk_in_t ch[3] = {{0, 10, w[0]}, {11, 21, w[1]}, {22, 34, w[2]}};
        sn_doc_in_t d = {"long", t, strlen(t), "{\"lang\": \"en\"}", ch, 3};
        CHECK_OK(sn_store_add(st, "c", "m", &d, 1, NULL, err, sizeof err),
                 err);
    }
    static const sn_search_mode_t modes[] = {
        SN_SEARCH_HYBRID, SN_SEARCH_VECTOR, SN_SEARCH_LEXICAL};
    vec_of(v, 21); /* the long document's second chunk */
    for (int m = 0; m < 3; m++) {
        /* documents: one place each */
        res_t r = run(st, "c", modes[m], "river", v, 1, 10, NULL, 0);
        CHECK(r.n >= 2);
        for (int i = 0; i < r.n; i++)
            for (int j = 0; j < i; j++)
                CHECK(strcmp(r.h[i].id, r.h[j].id) != 0);
        for (int i = 1; i < r.n; i++)
            CHECK(r.h[i].score <= r.h[i - 1].score);
        if (modes[m] != SN_SEARCH_LEXICAL) {
            CHECK_STREQ(r.h[0].id, "long");
            CHECK_EQ(r.h[0].chunk, 1); /* its best chunk is the snippet */
            CHECK_STREQ(r.h[0].text, "River two.");
            CHECK(fabsf(r.h[0].vector_score - 1) < 1e-4f);
        }
        CHECK_EQ(r.lists, modes[m] == SN_SEARCH_HYBRID
                              ? SN_LIST_VECTOR | SN_LIST_LEXICAL
                          : modes[m] == SN_SEARCH_VECTOR ? SN_LIST_VECTOR
                                                         : SN_LIST_LEXICAL);
        CHECK(modes[m] == SN_SEARCH_LEXICAL ? isnan(r.h[0].vector_score)
                                            : !isnan(r.h[0].vector_score));
        CHECK(modes[m] == SN_SEARCH_VECTOR ? isnan(r.h[0].lexical_score)
                                           : !isnan(r.h[0].lexical_score));
        done(&r);
        /* filters: only matching documents, in every mode */
        r = run(st, "c", modes[m], "river 강은", v, 1, 10,
                "{\"lang\": \"ko\"}", 0);
        CHECK(r.n >= 1);
        for (int i = 0; i < r.n; i++)
            CHECK(strstr(r.h[i].meta_json, "\"ko\"") != NULL);
        if (modes[m] == SN_SEARCH_LEXICAL) {
            CHECK_EQ(r.n, 1);
            CHECK_STREQ(r.h[0].id, "ko1");
        }
        done(&r);
        r = run(st, "c", modes[m], "river", v, 1, 10, "{\"n\": 2}", 0);
        CHECK_EQ(r.n, 1);
        CHECK_STREQ(r.h[0].id, "en2");
        done(&r);
        r = run(st, "c", modes[m], "river", v, 1, 10, "{\"lang\": \"fr\"}",
                0);
        CHECK_EQ(r.n, 0);
        done(&r);
        /* chunks: the long document's three chunks are three results */
        r = run(st, "c", modes[m], "river", v, 1, 10, NULL, 1);
        int n_long = 0;
        for (int i = 0; i < r.n; i++)
            n_long += !strcmp(r.h[i].id, "long");
        CHECK_EQ(n_long, 3);
        if (modes[m] != SN_SEARCH_LEXICAL) {
            CHECK_STREQ(r.h[0].id, "long");
            CHECK_EQ(r.h[0].chunk, 1);
        }
        done(&r);
    }
    /* Korean: another particle than the document's, and a compound
     * split differently: trigrams find it (the words list cannot) */
    {
        res_t r = run(st, "c", SN_SEARCH_LEXICAL, "데이터베이스를 저장", NULL,
                      0, 10, NULL, 0);
        CHECK(r.n >= 1);
        CHECK_STREQ(r.h[0].id, "ko2");
        done(&r);
        r = run(st, "c", SN_SEARCH_LEXICAL, "강이 범람했다", NULL, 0, 10, NULL, 0);
        CHECK(r.n >= 1);
        CHECK_STREQ(r.h[0].id, "ko1");
        done(&r);
    }
    /* hybrid never below its better list here: a query the model does
     * not know (known 0) keeps the lexical order whatever the vector; a
     * query whose words match nothing keeps the vector order */
    {
        float far[D];
        vec_of(far, 12); /* en2's vector */
        res_t a = run(st, "c", SN_SEARCH_HYBRID, "데이터베이스를", far, 0, 5,
                      NULL, 0);
        res_t b = run(st, "c", SN_SEARCH_LEXICAL, "데이터베이스를", NULL, 0,
                      5, NULL, 0);
        CHECK(a.n >= 1 && b.n >= 1);
        CHECK_STREQ(a.h[0].id, b.h[0].id);
        done(&a);
        done(&b);
        a = run(st, "c", SN_SEARCH_HYBRID, "qwxzv", far, 1, 5, NULL, 0);
        b = run(st, "c", SN_SEARCH_VECTOR, NULL, far, 1, 5, NULL, 0);
        CHECK_EQ(a.n, b.n);
        for (int i = 0; i < a.n; i++)
            CHECK_STREQ(a.h[i].id, b.h[i].id);
        CHECK_EQ(a.lists, SN_LIST_VECTOR);
        done(&a);
        done(&b);
    }
    /* errors */
    {
        sn_hit_t *h;
        int n, lists;
        sn_query_t q = {.mode = SN_SEARCH_LEXICAL, .k = 3, .dim = D};
        CHECK_FAILS_WITH(sn_store_query(st, "c", &q, &h, &n, &lists, err,
                                        sizeof err), err, "needs a query text");
        q.mode = SN_SEARCH_VECTOR;
        q.text = "river";
        CHECK_FAILS_WITH(sn_store_query(st, "c", &q, &h, &n, &lists, err,
                                        sizeof err), err, "needs a query vector");
        q.mode = (sn_search_mode_t)7;
        CHECK_FAILS_WITH(sn_store_query(st, "c", &q, &h, &n, &lists, err,
                                        sizeof err), err, "unknown search mode");
        CHECK_EQ(sn_search_mode_parse("hybrid"), SN_SEARCH_HYBRID);
        CHECK_EQ(sn_search_mode_parse("lexical"), SN_SEARCH_LEXICAL);
        CHECK_EQ(sn_search_mode_parse("bm25"), -1);
        /* a text with nothing to match is an empty list, not an error */
        q.mode = SN_SEARCH_LEXICAL;
        q.text = "?!";
        CHECK_OK(sn_store_query(st, "c", &q, &h, &n, &lists, err, sizeof err),
                 err);
        CHECK_EQ(n, 0);
        /* quotes and FTS5 syntax in a query are words, not syntax */
        q.text = "\"river\" AND NOT (bank* OR \"";
        CHECK_OK(sn_store_query(st, "c", &q, &h, &n, &lists, err, sizeof err),
                 err);
        CHECK(n >= 1);
        sn_hits_free(h, n);
    }
    sn_store_close(st);
}

/* ---- trust in the vector list ------------------------------------------------- */

/* A document with vector v near `to` (cosine ~0.99). */
static void put_near(sn_store_t *st, const char *coll, const char *id,
                     const char *text, const float *to, int seed)
{
    float v[D], e[D];
    double n = 0;
    vec_of(e, seed);
    for (int i = 0; i < D; i++) {
        v[i] = to[i] + 0.05f * e[i];
        n += (double)v[i] * v[i];
    }
    for (int i = 0; i < D; i++)
        v[i] = (float)(v[i] / sqrt(n));
    sn_chunk_in_t ch = {0, n_cp(text), v};
    sn_doc_in_t d = {id, text, strlen(text), NULL, &ch, 1};
    CHECK_OK(sn_store_add(st, coll, "m", &d, 1, NULL, err, sizeof err), err);
}

/* A model that knows every token of the query (known 1) but whose vectors
 * point elsewhere than a confident lexical list -- no document in both top
 * 10s -- leaves the lexical order alone, even where its cosines (0.99)
 * are higher than weak lexical scores; a vector list that agrees with the
 * lexical one on a document breaks a lexical tie. */
static void test_trust(void)
{
    static const char *filler = " lorem ipsum dolor sit amet";
    sn_store_t *st = open_db("trust.db");
    float qv[D];
    char text[8192], id[16];

    vec_of(qv, 900);
    CHECK_OK(sn_store_collection(st, "t", "m", D, SN_INDEX_AUTO, err,
                                 sizeof err), err);
    for (int i = 0; i < 12; i++) { /* strong to very weak lexical matches */
        snprintf(id, sizeof id, "r%02d", i);
        snprintf(text, sizeof text, "%s", i < 4 ? "river flood" : "rivers");
        for (int j = 0; j < i * i * 2; j++)
            strcat(text, filler);
        put(st, "t", id, text, NULL, 1000 + i);
    }
    for (int i = 0; i < 13; i++) { /* no query word, vectors at the query */
        snprintf(id, sizeof id, "n%02d", i);
        put_near(st, "t", id, "quiet meadow at dawn", qv, 2000 + i);
    }
    res_t h = run(st, "t", SN_SEARCH_HYBRID, "river flood", qv, 1, 25, NULL,
                  0);
    res_t l = run(st, "t", SN_SEARCH_LEXICAL, "river flood", NULL, 1, 25,
                  NULL, 0);
    res_t v = run(st, "t", SN_SEARCH_VECTOR, NULL, qv, 1, 10, NULL, 0);
    CHECK_EQ(l.n, 12);
    CHECK_EQ(v.n, 10);
    for (int i = 0; i < v.n; i++) /* the lists' top 10s share nothing */
        CHECK(v.h[i].id[0] == 'n');
    CHECK(l.h[l.n - 1].lexical_score < 0.4f * 0.99f); /* weaker than W_V*cos */
    CHECK(h.n >= l.n);
    for (int i = 0; i < l.n && i < h.n; i++) {
        if (strcmp(h.h[i].id, l.h[i].id))
            fprintf(stderr, "hybrid %d: %s, lexical %s\n", i + 1, h.h[i].id,
                    l.h[i].id);
        CHECK_STREQ(h.h[i].id, l.h[i].id);
    }
    done(&h);
    done(&l);
    done(&v);
    /* agreement: two documents of the same text (a lexical tie, broken by
     * the older id), the vector list's best is the second: hybrid puts it
     * first */
    put(st, "t", "x1", "river flood plain", NULL, 3001);
    put_near(st, "t", "x2", "river flood plain", qv, 3002);
    l = run(st, "t", SN_SEARCH_LEXICAL, "river flood plain", NULL, 1, 3, NULL,
            0);
    h = run(st, "t", SN_SEARCH_HYBRID, "river flood plain", qv, 1, 3, NULL,
            0);
    CHECK(l.n >= 2 && h.n >= 2);
    CHECK_STREQ(l.h[0].id, "x1");
    CHECK_STREQ(h.h[0].id, "x2");
    CHECK(h.h[0].score > h.h[0].lexical_score); /* the cosine counted */
    done(&h);
    done(&l);
    sn_store_close(st);
}

/* ---- synonyms ----------------------------------------------------------------- */

/* A WordNet folder of two noun synsets (the other parts of speech empty):
 * "GUI, graphical user interface" and "internet, net, cyberspace". */
static void write_wordnet(const char *wdir)
{
    static const char *const POS[4] = {"noun", "verb", "adj", "adv"};
    char path[600], data[512], index[256];
    int n1;

    n1 = snprintf(data, sizeof data, "%08d 10 n 02 GUI 0 "
                  "graphical_user_interface 0 000 | a user interface based "
                  "on graphics\n", 0);
    snprintf(data + n1, sizeof data - (size_t)n1, "%08d 06 n 03 internet 0 "
             "net 0 cyberspace 0 000 | a computer network\n", n1);
    snprintf(index, sizeof index, "gui n 1 0 1 0 %08d\n"
             "internet n 1 0 1 0 %08d\n", 0, n1);
    CHECK(mkdir(wdir, 0700) == 0);
    for (int p = 0; p < 4; p++)
        for (int k = 0; k < 2; k++) {
            snprintf(path, sizeof path, "%s/%s.%s", wdir, k ? "data" : "index",
                     POS[p]);
            FILE *f = fopen(path, "w");
            CHECK(f != NULL);
            if (p == 0)
                fputs(k ? data : index, f);
            fclose(f);
        }
}

static double score_of(const res_t *r, const char *id)
{
    int k = rank_of(r, id);
    return k ? r->h[k - 1].lexical_score : -1;
}

/* A query word's WordNet synonyms join the lexical list at a down-weight:
 * "GUI" finds the document that says "graphical user interface" only
 * with synonyms, and the document that says "GUI" stays ahead of it; a
 * synonym that stems like a query word ("interface" beside "interfaces")
 * adds nothing; a folder that cannot be read leaves search as without. */
static void test_synonyms(void)
{
    char wdir[300];
    sn_store_t *st = open_db("syn.db");

    snprintf(wdir, sizeof wdir, "%s/wordnet", dir);
    write_wordnet(wdir);
    CHECK_OK(sn_store_collection(st, "s", "m", D, SN_INDEX_AUTO, err,
                                 sizeof err), err);
    put(st, "s", "long", "A graphical user interface for the connman daemon.",
        NULL, 41);
    put(st, "s", "short", "GUI toolkit for the connman daemon.", NULL, 42);
    put(st, "s", "cli", "Command line tool for the connman daemon.", NULL, 43);
    put(st, "s", "web", "Text editor to be used inside web pages.", NULL, 44);
    put(st, "s", "if", "Network interface settings.", NULL, 45);
    put(st, "s", "net", "Tools to browse the net.", NULL, 46);

    res_t a = run(st, "s", SN_SEARCH_LEXICAL, "GUI", NULL, 1, 10, NULL, 0);
    res_t b = run(st, "s", SN_SEARCH_LEXICAL, "interfaces GUI", NULL, 1, 10,
                  NULL, 0);
    CHECK_EQ(rank_of(&a, "short"), 1);
    CHECK_EQ(rank_of(&a, "long"), 0); /* no synonyms yet */
    CHECK_OK(sn_store_set_synonyms(st, wdir), err);
    res_t c = run(st, "s", SN_SEARCH_LEXICAL, "GUI", NULL, 1, 10, NULL, 0);
    res_t h = run(st, "s", SN_SEARCH_HYBRID, "GUI", NULL, 1, 10, NULL, 0);
    res_t d = run(st, "s", SN_SEARCH_LEXICAL, "interfaces GUI", NULL, 1, 10,
                  NULL, 0);
    CHECK_EQ(rank_of(&c, "short"), 1);
    CHECK_EQ(rank_of(&c, "long"), 2);
    CHECK_EQ(rank_of(&h, "long"), 2);
    CHECK_EQ(rank_of(&c, "cli"), 0);
    CHECK(score_of(&c, "long") > 0);
    /* the synonyms' words count SN__LEX_SYN_WEIGHT of a query word's */
    CHECK(score_of(&c, "long") < SN__LEX_SYN_WEIGHT * 3 * 1.01 *
                                     score_of(&c, "short"));
    /* "interface" (GUI's synonym) matches the token "interfaces" does */
    CHECK(fabs(score_of(&d, "if") - score_of(&b, "if")) < 1e-6);
    CHECK(score_of(&d, "if") > 0);
    done(&a);
    done(&b);
    done(&c);
    done(&h);
    done(&d);
    /* another query word, another synset */
    c = run(st, "s", SN_SEARCH_LEXICAL, "internet", NULL, 1, 10, NULL, 0);
    CHECK_EQ(rank_of(&c, "net"), 1);
    done(&c);
    /* a folder that cannot be read: no synonyms, search as before */
    CHECK_OK(sn_store_set_synonyms(st, "/nonexistent/wordnet"), err);
    c = run(st, "s", SN_SEARCH_LEXICAL, "GUI", NULL, 1, 10, NULL, 0);
    CHECK_EQ(rank_of(&c, "short"), 1);
    CHECK_EQ(rank_of(&c, "long"), 0);
    done(&c);
    sn_store_close(st);
}

/* ---- parts of words ------------------------------------------------------------ */

/* The word list of these tests (words.c reads WordNet's index and
 * exception files; the first field of a line is the word). */
static void write_words(const char *wdir)
{
    static const char *const F[8] = {"index.noun", "index.verb", "index.adj",
                                     "index.adv", "noun.exc", "verb.exc",
                                     "adj.exc", "adv.exc"};
    char path[600];
    CHECK(mkdir(wdir, 0700) == 0);
    for (int i = 0; i < 8; i++) {
        snprintf(path, sizeof path, "%s/%s", wdir, F[i]);
        FILE *f = fopen(path, "w");
        CHECK(f != NULL);
        if (i == 0)
            fputs("  1 a licence line, left out\nbig n 1 0\ncache n 1 0\n"
                  "data n 1 0\nformat n 1 0\ngene n 1 0\nrating n 1 0\n"
                  "map n 1 0\nfile_system n 1 0\n", f);
        if (i == 1)
            fputs("generate v 1 0\n", f);
        fclose(f);
    }
}

/* "a|b|c": the parts of word, as written, '|'-separated ("" for none). */
static void parts_are(const char *word, const char *want)
{
    utf8proc_int32_t cp[128];
    sn__span_t p[SN__WORDS_MAX_PARTS];
    char got[512] = "";
    int n = 0, k;
    for (const char *c = word; *c; n++)
        c += utf8proc_iterate((const utf8proc_uint8_t *)c, -1, &cp[n]);
    k = sn__words_split(cp, n, p, SN__WORDS_MAX_PARTS);
    for (int i = 0; i < k; i++) {
        size_t used = strlen(got);
        if (i)
            got[used++] = '|';
        for (int j = 0; j < p[i].len; j++)
            used += (size_t)utf8proc_encode_char(
                cp[p[i].start + j], (utf8proc_uint8_t *)got + used);
        got[used] = '\0';
    }
    if (strcmp(got, want))
        fprintf(stderr, "parts of '%s': '%s', want '%s'\n", word, got, want);
    CHECK_STREQ(got, want);
}

/* A glued word's parts are indexed at its position and added to a query
 * as synonyms are: "cache" finds "BigCache", "format" finds "dataformat",
 * and "dataformat" finds "data format" behind the document that says
 * "dataformat"; the index still agrees with the documents after replace
 * and delete; a part does not lengthen its document. */
static void test_parts(void)
{
    parts_are("BigCache", "Big|Cache");
    parts_are("XMLParser", "XML|Parser");
    parts_are("pkcs11", "pkcs|11");
    parts_are("x11", "x|11");
    parts_are("dataformat", "data|format");
    parts_are("DataFormat", "Data|Format");
    parts_are("datamaps", "data|maps"); /* a plural of a listed word */
    parts_are("generating", "");        /* "generate" + -ing, not gene|rating */
    parts_are("bigfoo", "");            /* "foo" is not listed */
    parts_are("Xorg", "");
    parts_are("cache", "");
    parts_are("데이터베이스는", "");
    parts_are("filesystem", "");        /* only one-word lemmas are listed */
    parts_are("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
              "aaaaBigCache", ""); /* longer than SN__WORDS_MAX_CP */

    /* any word: the parts lie inside it, none is empty or the whole, no
     * two are the same, and there are never more than max */
    {
        static const utf8proc_int32_t pool[] = {
            'a', 'b', 'd', 'g', 'm', 'B', 'C', 'X', '1', '7', 0xe9, 0xc9,
            0xd55c, 0x0301, 0x0663, 0x1f600, 'f', 'o', 'r', 't'};
        uint64_t seed = 0x5eed;
        utf8proc_int32_t w[80];
        sn__span_t p[4];
        for (int it = 0; it < 20000; it++) {
            int n = 1 + (int)(check_urand(&seed) * 70);
            for (int i = 0; i < n; i++)
                w[i] = pool[(int)(check_urand(&seed) *
                                  (sizeof pool / sizeof *pool))];
            int max = 1 + it % 4, k = sn__words_split(w, n, p, max);
            CHECK(k == 0 || (k >= 2 && k <= max));
            for (int i = 0; i < k; i++) {
                CHECK(p[i].start >= 0 && p[i].len >= 1 && p[i].len < n &&
                      p[i].start + p[i].len <= n);
                for (int j = 0; j < i; j++)
                    CHECK(p[j].start != p[i].start || p[j].len != p[i].len);
            }
        }
    }

    sn_store_t *st = open_db("parts.db");
    CHECK_OK(sn_store_collection(st, "p", "m", D, SN_INDEX_AUTO, err,
                                 sizeof err), err);
    put(st, "p", "cc", "BigCache keeps many entries on the heap.", NULL, 61);
    put(st, "p", "fmt", "Reads and writes the data format of the tool.",
        NULL, 62);
    put(st, "p", "glued", "The dataformat module converts tables.", NULL, 63);
    put(st, "p", "other", "Tulips and roses in the garden.", NULL, 64);
    put(st, "p", "heap", "Entries on the heap.", NULL, 65);
    fts_agree(sn__store_db(st));

    res_t r = run(st, "p", SN_SEARCH_LEXICAL, "cache", NULL, 1, 10, NULL, 0);
    CHECK_EQ(rank_of(&r, "cc"), 1);
    CHECK_EQ(r.n, 1);
    done(&r);
    r = run(st, "p", SN_SEARCH_LEXICAL, "format", NULL, 1, 10, NULL, 0);
    CHECK(rank_of(&r, "fmt") >= 1 && rank_of(&r, "glued") >= 1);
    done(&r);
    r = run(st, "p", SN_SEARCH_LEXICAL, "dataformat", NULL, 1, 10, NULL, 0);
    CHECK_EQ(rank_of(&r, "glued"), 1);
    CHECK_EQ(rank_of(&r, "fmt"), 2);
    /* the query's parts weigh as synonyms: below a query word */
    CHECK(score_of(&r, "fmt") < score_of(&r, "glued"));
    done(&r);
    /* FTS5 counts a document's length without its parts: "heap" scores
     * "cc" as a document of its seven words */
    {
        sqlite3_stmt *q;
        CHECK(sqlite3_prepare_v2(sn__store_db(st), "SELECT sz FROM "
                                 "documents_fts_docsize d JOIN documents t "
                                 "ON t.id = d.id WHERE t.ext_id = 'cc'", -1,
                                 &q, NULL) == SQLITE_OK);
        CHECK(sqlite3_step(q) == SQLITE_ROW);
        CHECK_EQ((int)sqlite3_column_bytes(q, 0) >= 1, 1);
        CHECK_EQ(((const unsigned char *)sqlite3_column_blob(q, 0))[0], 7);
        sqlite3_finalize(q);
    }
    /* replace and delete take the parts with them */
    put(st, "p", "cc", "Tulips in a LittleGarden.", NULL, 66);
    fts_agree(sn__store_db(st));
    r = run(st, "p", SN_SEARCH_LEXICAL, "cache", NULL, 1, 10, NULL, 0);
    CHECK_EQ(r.n, 0);
    done(&r);
    r = run(st, "p", SN_SEARCH_LEXICAL, "garden", NULL, 1, 10, NULL, 0);
    CHECK_EQ(r.n, 2);
    done(&r);
    del(st, "p", "cc");
    fts_agree(sn__store_db(st));
    r = run(st, "p", SN_SEARCH_LEXICAL, "garden", NULL, 1, 10, NULL, 0);
    CHECK_EQ(r.n, 1);
    CHECK_STREQ(r.h[0].id, "other");
    done(&r);
    sn_store_close(st);
}

/* ---- BM25 statistics per collection ------------------------------------------ */

/* A collection's lexical scores are its own: another collection in the
 * database, full of the query's words and trigrams at other lengths,
 * changes none of them (idf, mean length and document count are the
 * collection's, for words and trigrams); a document added to the
 * collection itself does. */
static void test_stats(void)
{
    static const char *q = "river bank flooded";
    sn_store_t *st = open_db("stats.db");
    CHECK_OK(sn_store_collection(st, "a", "m", D, SN_INDEX_AUTO, err,
                                 sizeof err), err);
    CHECK_OK(sn_store_collection(st, "b", "m", D, SN_INDEX_AUTO, err,
                                 sizeof err), err);
    put(st, "a", "a1", "The river bank flooded after heavy rain.", NULL, 31);
    put(st, "a", "a2", "A quiet bank of the river at dawn.", NULL, 32);
    put(st, "a", "a3", "Stock markets rallied on Monday.", NULL, 33);
    put(st, "a", "a4", "Flooded fields and a broken dam.", NULL, 34);
    res_t r0 = run(st, "a", SN_SEARCH_LEXICAL, q, NULL, 1, 10, NULL, 0);
    CHECK(r0.n >= 3);
    for (int i = 0; i < 60; i++) {
        char id[16], text[200];
        snprintf(id, sizeof id, "b%d", i);
        snprintf(text, sizeof text, "%s river banks %s flooded again%s", i % 3
                 ? "The" : "Every", i % 2 ? "were" : "had", i % 5
                 ? "." : ", and the river flooded the bank of the river.");
        put(st, "b", id, text, NULL, 200 + i);
    }
    res_t r1 = run(st, "a", SN_SEARCH_LEXICAL, q, NULL, 1, 10, NULL, 0);
    CHECK_EQ(r1.n, r0.n);
    for (int i = 0; i < r0.n && i < r1.n; i++) {
        CHECK_STREQ(r1.h[i].id, r0.h[i].id);
        if (fabsf(r1.h[i].lexical_score - r0.h[i].lexical_score) > 1e-6f)
            fprintf(stderr, "%s: lexical score %.7f alone, %.7f beside "
                    "collection b\n", r0.h[i].id, r0.h[i].lexical_score,
                    r1.h[i].lexical_score);
        CHECK(fabsf(r1.h[i].lexical_score - r0.h[i].lexical_score) <= 1e-6f);
    }
    /* a change to the collection is seen (the kept counts are dropped) */
    put(st, "a", "a5", "river river river bank bank", NULL, 35);
    res_t r2 = run(st, "a", SN_SEARCH_LEXICAL, q, NULL, 1, 10, NULL, 0);
    CHECK_EQ(r2.n, r0.n + 1);
    for (int i = 0; i < r2.n; i++)
        if (!strcmp(r2.h[i].id, "a1"))
            CHECK(fabsf(r2.h[i].lexical_score - r0.h[rank_of(&r0, "a1") - 1]
                                                    .lexical_score) > 1e-4f);
    done(&r0);
    done(&r1);
    done(&r2);
    sn_store_close(st);
}

/* ---- background builds ---------------------------------------------------------- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char logbuf[1 << 15];

static void log_cb(void *ud, sn_store_level_t level, const char *line)
{
    (void)ud;
    (void)level;
    pthread_mutex_lock(&log_mu);
    size_t used = strlen(logbuf);
    snprintf(logbuf + used, sizeof logbuf - used, "%s\n", line);
    pthread_mutex_unlock(&log_mu);
}

static int log_has(const char *sub)
{
    pthread_mutex_lock(&log_mu);
    int r = strstr(logbuf, sub) != NULL;
    pthread_mutex_unlock(&log_mu);
    return r;
}

static void test_background(void)
{
    enum { N = 6000 };
    char path[600];
    sn_store_t *st = open_db("bg.db");
    CHECK_OK(sn_store_collection(st, "c", "m", D, SN_INDEX_HNSW, err,
                                 sizeof err), err);
    for (int i = 0; i < N; i += 500) {
        static char ids[500][16], texts[500][32];
        static float v[500][D];
        sn_chunk_in_t ch[500];
        sn_doc_in_t d[500];
        for (int j = 0; j < 500; j++) {
            snprintf(ids[j], sizeof ids[j], "b%d", i + j);
            snprintf(texts[j], sizeof texts[j], "item%d", i + j);
            vec_of(v[j], 5000 + i + j);
            ch[j] = (sn_chunk_in_t){0, n_cp(texts[j]), v[j]};
            d[j] = (sn_doc_in_t){ids[j], texts[j], strlen(texts[j]), NULL,
                                 &ch[j], 1};
        }
        CHECK_OK(sn_store_add(st, "c", "m", d, 500, NULL, err, sizeof err),
                 err);
    }
    sn_store_close(st); /* no search yet: no index file */
    snprintf(path, sizeof path, "rm -rf '%s/bg.db.idx'", dir);
    CHECK(system(path) == 0);

    st = open_db("bg.db");
    logbuf[0] = '\0';
    sn_store_set_log(st, log_cb, NULL);
    sn_store_set_background(st, 1);
    float v[D];
    vec_of(v, 5000 + 123);
    /* the first search starts the build and answers at once, exactly */
    found_both(st, "c", "b123", "item123", 5000 + 123);
    if (!log_has("in the background (6000"))
        fprintf(stderr, "log: %s\n", logbuf);
    CHECK(log_has("building its hnsw index in the background (6000 "
                  "vectors); searches use an exact scan"));
    /* writes go on meanwhile, and the build keeps them */
    put(st, "c", "late", "a late arrival", NULL, 4242);
    del(st, "c", "b7");
    for (int i = 0; i < 600 && !log_has("hnsw index ready"); i++)
        usleep(50000);
    CHECK(log_has("hnsw index ready in"));
    found_both(st, "c", "late", "arrival", 4242);
    found_both(st, "c", "b4321", "item4321", 5000 + 4321);
    found_neither(st, "c", "b7", "item7", 5000 + 7);
    sn_store_close(st);
}

/* ---- vector search is exact over its candidates ------------------------------
 *
 * A search by vector alone (vector mode, or hybrid without a text) takes
 * the documents of the best chunks and scores each one exactly (its best
 * chunk's cosine, from the stored vectors). Over a Flat index that is the
 * brute-force answer: the test computes it itself (the same double sum
 * per chunk) and wants the same documents, chunks, order and scores,
 * bit for bit -- by document and by chunk, with and without a filter, with
 * deleted documents, documents of one to three chunks. */

#define EX_DOCS 240

typedef struct {
    int doc, ordinal;
    float score;
} ex_t;

static int cmp_ex(const void *a, const void *b)
{
    const ex_t *x = a, *y = b;
    if (x->score != y->score)
        return (x->score < y->score) - (x->score > y->score);
    if (x->doc != y->doc)
        return (x->doc > y->doc) - (x->doc < y->doc);
    return (x->ordinal > y->ordinal) - (x->ordinal < y->ordinal);
}

static int ex_chunks(int d) { return 1 + d % 3; }
static int ex_gone(int d) { return d % 7 == 3; }

static void test_vector_exact(void)
{
    sn_store_t *st = open_db("exact.db");
    static float vecs[EX_DOCS][3][D];
    static ex_t want[EX_DOCS * 3];
    char ids[EX_DOCS][16], metas[EX_DOCS][32];

    CHECK_OK(sn_store_collection(st, "x", "m", D, SN_INDEX_FLAT, err,
                                 sizeof err), err);
    for (int d = 0; d < EX_DOCS; d++) {
        sn_chunk_in_t ch[3];
        snprintf(ids[d], sizeof ids[d], "x%d", d);
        snprintf(metas[d], sizeof metas[d], "{\"g\": %d}", d % 3);
        for (int c = 0; c < ex_chunks(d); c++) {
            vec_of(vecs[d][c], 7000 + 3 * d + c);
            ch[c] = (sn_chunk_in_t){2 * c, 2 * c + 1, vecs[d][c]};
        }
        sn_doc_in_t doc = {ids[d], "a b c d e f", 11, metas[d], ch,
                           ex_chunks(d)};
        CHECK_OK(sn_store_add(st, "x", "m", &doc, 1, NULL, err, sizeof err),
                 err);
    }
    for (int d = 0; d < EX_DOCS; d++)
        if (ex_gone(d))
            del(st, "x", ids[d]);
    for (int qi = 0; qi < 6; qi++) {
        float q[D];
        vec_of(q, 9100 + qi);
        for (int variant = 0; variant < 8; variant++) {
            int by_chunk = variant & 1, filtered = variant & 2, k = 12;
            sn_search_mode_t mode = variant & 4 ? SN_SEARCH_HYBRID
                                                : SN_SEARCH_VECTOR;
            int n = 0;
            for (int d = 0; d < EX_DOCS; d++) {
                ex_t best = {d, -1, -INFINITY};
                if (ex_gone(d) || (filtered && d % 3 != 1))
                    continue;
                for (int c = 0; c < ex_chunks(d); c++) {
                    double dot = 0;
                    for (int i = 0; i < D; i++)
                        dot += (double)q[i] * vecs[d][c][i];
                    ex_t x = {d, c, (float)dot};
                    if (by_chunk)
                        want[n++] = x;
                    else if (x.score > best.score)
                        best = x;
                }
                if (!by_chunk)
                    want[n++] = best;
            }
            qsort(want, (size_t)n, sizeof *want, cmp_ex);
            res_t r = run(st, "x", mode, NULL, q, 1, k,
                          filtered ? "{\"g\": 1}" : NULL, by_chunk);
            CHECK_EQ(r.n, k);
            CHECK_EQ(r.lists, SN_LIST_VECTOR);
            for (int i = 0; i < r.n && i < n; i++) {
                CHECK_STREQ(r.h[i].id, ids[want[i].doc]);
                CHECK_EQ(r.h[i].chunk, want[i].ordinal);
                CHECK(r.h[i].score == want[i].score);
                CHECK(r.h[i].vector_score == want[i].score);
                CHECK(isnan(r.h[i].lexical_score));
            }
            done(&r);
        }
    }
    sn_store_close(st);
}

/* The word list's name is recorded; a database whose index was made from
 * another list (WordNet installed or removed since) is rebuilt at open,
 * and says so. */
static void test_words_stamp(void)
{
    sn_store_t *st = open_db("stamp.db");
    sqlite3_stmt *q;
    CHECK_OK(sn_store_collection(st, "w", "m", D, SN_INDEX_AUTO, err,
                                 sizeof err), err);
    put(st, "w", "cc", "BigCache keeps many entries on the heap.", NULL, 71);
    CHECK(sqlite3_prepare_v2(sn__store_db(st), "SELECT value FROM store_info"
                             " WHERE key = 'lex_words'", -1, &q, NULL) ==
          SQLITE_OK);
    CHECK(sqlite3_step(q) == SQLITE_ROW);
    CHECK_STREQ((const char *)sqlite3_column_text(q, 0), sn__words_stamp());
    CHECK(strstr(sn__words_stamp(), " 8 words") != NULL);
    sqlite3_finalize(q);
    /* an index that another list made (here: without the document),
     * under that list's name */
    CHECK(sqlite3_exec(sn__store_db(st),
                       "UPDATE store_info SET value = 'another list' "
                       "WHERE key = 'lex_words';"
                       "INSERT INTO documents_fts (documents_fts, rowid, text)"
                       " SELECT 'delete', id, text FROM documents;",
                       NULL, NULL, NULL) ==
          SQLITE_OK);
    res_t r = run(st, "w", SN_SEARCH_LEXICAL, "cache", NULL, 1, 10, NULL, 0);
    CHECK_EQ(r.n, 0);
    done(&r);
    sn_store_close(st);
    memset(logbuf, 0, sizeof logbuf);
    st = open_db("stamp.db");
    sn_store_set_log(st, log_cb, NULL);
    CHECK(log_has("lexical index rebuilt: its word list was 'another list'"));
    fts_agree(sn__store_db(st));
    r = run(st, "w", SN_SEARCH_LEXICAL, "cache", NULL, 1, 10, NULL, 0);
    CHECK_EQ(rank_of(&r, "cc"), 1);
    done(&r);
    sn_store_close(st);
    /* and once rebuilt, not again */
    memset(logbuf, 0, sizeof logbuf);
    st = open_db("stamp.db");
    sn_store_set_log(st, log_cb, NULL);
    CHECK(!log_has("lexical index rebuilt"));
    sn_store_close(st);
}

/* A database made by the release before parts of words (schema 3,
 * tests/data/v3-release.db, written by the store of main at commit
 * 4accf92 with tests/data/mkrelease3.c) migrates: its word index is made
 * again with the parts ("cache" finds "BigCache") and agrees with the
 * documents, the word list is recorded, and the trigrams and vectors
 * answer as before. */
static void test_migration_v3(void)
{
    char from[512], to[512];
    sn_store_t *st;
    sqlite3_stmt *s;
    snprintf(from, sizeof from, "%s/tests/data/v3-release.db", SN_SOURCE_DIR);
    snprintf(to, sizeof to, "%s/v3.db", dir);
    check_copy_file(from, to);
    memset(logbuf, 0, sizeof logbuf);
    st = open_db("v3.db");
    sn_store_set_log(st, log_cb, NULL);
    CHECK(log_has("database migrated from schema version 3 to 4"));
    CHECK(!log_has("lexical index rebuilt")); /* the step recorded the list */
    sqlite3 *db = sn__store_db(st);
    CHECK(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) ==
          SQLITE_OK);
    CHECK(sqlite3_step(s) == SQLITE_ROW);
    CHECK_EQ(sqlite3_column_int(s, 0), SN__SCHEMA_VERSION);
    sqlite3_finalize(s);
    CHECK(sqlite3_prepare_v2(db, "SELECT value FROM store_info WHERE key = "
                             "'lex_words'", -1, &s, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(s) == SQLITE_ROW);
    CHECK_STREQ((const char *)sqlite3_column_text(s, 0), sn__words_stamp());
    sqlite3_finalize(s);
    fts_agree(db);
    res_t r = run(st, "notes", SN_SEARCH_LEXICAL, "cache", NULL, 1, 5, NULL,
                  0);
    CHECK_EQ(r.n, 1);
    CHECK_STREQ(r.h[0].id, "cache");
    done(&r);
    top_is(st, SN_SEARCH_LEXICAL, "데이터베이스를", NULL, "korean");
    float v[D];
    release_vec(v, 2 * 5.3, 0.7); /* mkrelease3.c's vector of seed 2: logs */
    top_is(st, SN_SEARCH_VECTOR, NULL, v, "logs");
    sn_store_close(st);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/sense-test-hybrid-XXXXXX");
    CHECK(mkdtemp(dir));
    {
        static char wdir[300]; /* words.c keeps the pointer */
        snprintf(wdir, sizeof wdir, "%s/words", dir);
        write_words(wdir);
        sn__words_use_dir(wdir);
    }
    test_parts();
    test_words_stamp();
    test_migration_v3();
    test_agree();
    test_modes();
    test_vector_exact();
    test_stats();
    test_trust();
    test_synonyms();
    test_migration();
    test_kill();
    test_background();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    printf("test_hybrid: ok\n");
    return 0;
}
