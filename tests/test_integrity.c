/*
 * test_integrity.c -- what the store must not trust or leak (issue 16):
 *
 *   - modes: the database, its -wal and -shm, the index folder and files
 *     are 0600 / 0700 under umask 0, and an older 0644 database and 0755
 *     index folder are brought back to that;
 *   - identity: an index file that outlived its database (the database
 *     deleted and made again; the database restored from an older copy,
 *     then written to) is not used: new documents are found with their own
 *     vectors, across a restart;
 *   - damaged vectors: a vector whose bytes were flipped in the database
 *     (integrity_check still ok) is left out of a rebuilt index, logged,
 *     and reported by sn_store_check; it never ranks first with a score of
 *     4e27;
 *   - an add that fails inside its transaction leaves no new empty
 *     collection (sn_store_add_create).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "sense/sense.h"
#include "sense/store.h"

#include "../index/store_int.h"

#define D 8

static char err[1024];
static char dir[256];
static sn_hnsw_kind_t g_hnsw = SN_HNSW_F32; /* what open_db's HNSW is */
static char logbuf[1 << 16];

static void log_cb(void *ud, sn_store_level_t level, const char *line)
{
    (void)ud;
    (void)level;
    size_t used = strlen(logbuf);
    snprintf(logbuf + used, sizeof logbuf - used, "%s\n", line);
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

/* A unit vector: seed picks it (distinct seeds, far apart vectors). */
static void vec_of(int seed, float *v)
{
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(seed + 1);
    double s = 0;
    for (int i = 0; i < D; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v[i] = (float)((double)(x >> 11) / 9007199254740992.0 - 0.5);
        s += (double)v[i] * v[i];
    }
    for (int i = 0; i < D; i++)
        v[i] = (float)(v[i] / sqrt(s));
}

/* Documents prefix<i> for i in [first, first + n), vector vec_of(seed0 + i). */
static void add_docs(sn_store_t *st, const char *coll, const char *prefix,
                     int first, int n, int seed0)
{
    for (int i = first; i < first + n; i++) {
        char id[32], text[64];
        float v[D];
        vec_of(seed0 + i, v);
        snprintf(id, sizeof id, "%s%d", prefix, i);
        snprintf(text, sizeof text, "text of %s", id);
        sn_chunk_in_t ch = {0, (int32_t)strlen(text), v};
        sn_doc_in_t d = {id, text, strlen(text), NULL, &ch, 1};
        CHECK_OK(sn_store_collection(st, coll, "m", D, SN_INDEX_AUTO, err,
                                     sizeof err), err);
        CHECK_OK(sn_store_add(st, coll, "m", &d, 1, NULL, err, sizeof err),
                 err);
    }
}

/* The best hit for vec_of(seed) is `id`, with a cosine of 1. */
static void check_top1(sn_store_t *st, const char *coll, int seed,
                       const char *id)
{
    float q[D];
    sn_hit_t *h;
    int n;
    vec_of(seed, q);
    CHECK_OK(sn_store_search(st, coll, "m", q, 3, NULL, &h, &n, err,
                             sizeof err), err);
    CHECK(n >= 1);
    if (strcmp(h[0].id, id) != 0 || fabsf(h[0].score - 1.0f) > 1e-4f) {
        fprintf(stderr, "top hit for seed %d: '%s' %g, expected '%s' 1\n",
                seed, h[0].id, h[0].score, id);
        exit(1);
    }
    for (int i = 0; i < n; i++)
        CHECK(h[i].score <= 1.0001f);
    sn_hits_free(h, n);
}

static void rm_db(const char *name)
{
    static const char *const sfx[] = {"", "-wal", "-shm"};
    char path[512];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s%s", dir, name, sfx[i]);
        unlink(path);
    }
}

static unsigned mode_of(const char *name)
{
    char path[512];
    struct stat sb;
    path_of(path, sizeof path, name);
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "'%s': %s\n", path, strerror(errno));
        exit(1);
    }
    return (unsigned)(sb.st_mode & 07777);
}

/* ---- modes ---------------------------------------------------------------- */

static void test_modes(void)
{
    mode_t old = umask(0);
    char path[512];
    sn_store_t *st = open_db("modes.db");

    add_docs(st, "c", "d", 0, 3, 0);
    check_top1(st, "c", 1, "d1"); /* loads (builds) the index */
    CHECK_OK(sn_store_save(st, err, sizeof err), err);
    /* while open: the WAL and its index exist */
    CHECK_EQ(mode_of("modes.db"), 0600);
    CHECK_EQ(mode_of("modes.db-wal"), 0600);
    CHECK_EQ(mode_of("modes.db-shm"), 0600);
    CHECK_EQ(mode_of("modes.db.idx"), 0700);
    CHECK_EQ(mode_of("modes.db.idx/1.faiss"), 0600);
    sn_store_close(st);

    /* files left by an older sense: opened up again */
    path_of(path, sizeof path, "modes.db");
    CHECK(chmod(path, 0644) == 0);
    path_of(path, sizeof path, "modes.db.idx");
    CHECK(chmod(path, 0755) == 0);
    path_of(path, sizeof path, "modes.db.idx/1.faiss");
    CHECK(chmod(path, 0644) == 0);
    st = open_db("modes.db");
    add_docs(st, "c", "d", 3, 1, 0);
    check_top1(st, "c", 3, "d3");
    CHECK_OK(sn_store_save(st, err, sizeof err), err);
    CHECK_EQ(mode_of("modes.db"), 0600);
    CHECK_EQ(mode_of("modes.db-wal"), 0600);
    CHECK_EQ(mode_of("modes.db.idx"), 0700);
    CHECK_EQ(mode_of("modes.db.idx/1.faiss"), 0600);
    sn_store_close(st);
    umask(old);
}

/* ---- identity ---------------------------------------------------------------- */

/* sense.db deleted (or recreated) but not its index folder: the new
 * documents must be searched with their own vectors, not the old file's. */
static void test_db_replaced(int hnsw)
{
    sn_index_kind_t kind = hnsw ? SN_INDEX_HNSW : SN_INDEX_AUTO;
    sn_store_t *st = open_db("repl.db");
    CHECK_OK(sn_store_collection(st, "c", "m", D, kind, err, sizeof err),
             err);
    add_docs(st, "c", "old", 0, 4, 100);
    check_top1(st, "c", 102, "old2");
    sn_store_close(st); /* saves repl.db.idx/1.faiss */

    rm_db("repl.db");
    st = open_db("repl.db");
    CHECK_OK(sn_store_collection(st, "c", "m", D, kind, err, sizeof err),
             err);
    add_docs(st, "c", "new", 0, 4, 200);
    for (int i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof id, "new%d", i);
        check_top1(st, "c", 200 + i, id);
    }
    sn_store_close(st);
    /* and across a restart, from the file saved now */
    st = open_db("repl.db");
    check_top1(st, "c", 201, "new1");
    check_top1(st, "c", 203, "new3");
    sn_store_close(st);
    rm_db("repl.db");
}

/* sense.db restored from a copy older than the index file, then written
 * to: the same chunk ids are handed out again, for other chunks. */
static void test_db_restored(int hnsw)
{
    char db[512], backup[600], name[64];
    snprintf(name, sizeof name, "rest_%s.db",
             hnsw ? sn_hnsw_kind_name(g_hnsw) : "flat");
    sn_store_t *st = open_db(name);
    CHECK_OK(sn_store_collection(st, "c", "m", D,
                                 hnsw ? SN_INDEX_HNSW : SN_INDEX_FLAT, err,
                                 sizeof err), err);
    add_docs(st, "c", "a", 0, 3, 300);
    check_top1(st, "c", 301, "a1");
    sn_store_close(st); /* checkpointed: the file alone is the database */

    path_of(db, sizeof db, name);
    snprintf(backup, sizeof backup, "%s.bak", db);
    check_copy_file(db, backup);

    st = open_db(name);
    add_docs(st, "c", "b", 3, 3, 300); /* chunks #4..#6 */
    check_top1(st, "c", 304, "b4");
    sn_store_close(st); /* the index file now holds #1..#6 */

    rm_db(name);
    check_copy_file(backup, db);
    /* right after the restore: the file has chunks the database never
     * had, and their ids will be handed out again */
    st = open_db(name);
    check_top1(st, "c", 300, "a0");
    add_docs(st, "c", "e", 3, 3, 400); /* #4..#6 again, other vectors */
    for (int i = 3; i < 6; i++) {
        char id[16];
        snprintf(id, sizeof id, "e%d", i);
        check_top1(st, "c", 400 + i, id);
    }
    sn_store_close(st);

    /* restored, written, and only then the index loaded */
    rm_db(name);
    check_copy_file(backup, db);
    st = open_db(name);
    add_docs(st, "c", "f", 3, 3, 500);
    for (int i = 3; i < 6; i++) {
        char id[16];
        snprintf(id, sizeof id, "f%d", i);
        check_top1(st, "c", 500 + i, id);
    }
    check_top1(st, "c", 302, "a2");
    sn_store_close(st);
}

/* ---- damaged vectors ------------------------------------------------------------- */

static void test_damaged(void)
{
    char path[512], idx[512];
    sqlite3 *db;
    sqlite3_stmt *s;
    sn_store_t *st = open_db("dmg.db");

    add_docs(st, "c", "d", 0, 6, 600);
    sn_store_close(st);

    /* Flip the top bits of one float's exponent in d2's vector, on disk,
     * behind the store's back: a valid row, a valid page. */
    path_of(path, sizeof path, "dmg.db");
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db, "SELECT c.vector FROM chunks c JOIN "
                             "documents d ON d.id = c.document WHERE "
                             "d.ext_id = 'd2'", -1, &s, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(s) == SQLITE_ROW);
    unsigned char blob[D * sizeof(float)];
    CHECK_EQ(sqlite3_column_bytes(s, 0), (int)sizeof blob);
    memcpy(blob, sqlite3_column_blob(s, 0), sizeof blob);
    sqlite3_finalize(s);
    /* the first float's exponent raised by 90 and its sign cleared: a
     * few flipped bits that make it ~1e27 */
    float f0;
    memcpy(&f0, blob, sizeof f0);
    f0 = ldexpf(fabsf(f0), 90);
    memcpy(blob, &f0, sizeof f0);
    CHECK(sqlite3_prepare_v2(db, "UPDATE chunks SET vector = ?1 WHERE "
                             "document = (SELECT id FROM documents WHERE "
                             "ext_id = 'd2')", -1, &s, NULL) == SQLITE_OK);
    sqlite3_bind_blob(s, 1, blob, sizeof blob, SQLITE_STATIC);
    CHECK(sqlite3_step(s) == SQLITE_DONE);
    sqlite3_finalize(s);
    CHECK(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL) ==
          SQLITE_OK);
    CHECK(sqlite3_step(s) == SQLITE_ROW);
    CHECK_STREQ((const char *)sqlite3_column_text(s, 0), "ok");
    sqlite3_finalize(s);
    CHECK(sqlite3_close(db) == SQLITE_OK);

    /* the index rebuilt from the database */
    path_of(idx, sizeof idx, "dmg.db.idx/1.faiss");
    unlink(idx); /* if any: rebuilt from the database */
    st = open_db("dmg.db");
    for (int i = 0; i < 6; i++) {
        char id[16];
        if (i == 2)
            continue;
        snprintf(id, sizeof id, "d%d", i);
        check_top1(st, "c", 600 + i, id);
    }
    /* a query along the damaged component: scores stay cosines, and the
     * damaged document is not among the hits */
    {
        float q[D] = {1};
        sn_hit_t *h;
        int n;
        CHECK_OK(sn_store_search(st, "c", "m", q, 6, NULL, &h, &n, err,
                                 sizeof err), err);
        CHECK_EQ(n, 5);
        for (int i = 0; i < n; i++) {
            if (h[i].score > 1.0001f || !strcmp(h[i].id, "d2")) {
                fprintf(stderr, "hit %d: '%s' %g\n", i, h[i].id,
                        h[i].score);
                exit(1);
            }
        }
        sn_hits_free(h, n);
    }
    if (!strstr(logbuf, "document 'd2' chunk 0") ||
        !strstr(logbuf, "damaged vector")) {
        fprintf(stderr, "log lacks the damaged vector:\n%s", logbuf);
        exit(1);
    }

    /* reported */
    sn_store_bad_t *bad;
    int n_bad_out;
    int64_t n_bad, n_checked, next;
    CHECK_OK(sn_store_check(st, NULL, 0, 100, &bad, &n_bad_out, &next,
                            &n_bad, &n_checked, err, sizeof err), err);
    CHECK_EQ(n_checked, 6);
    CHECK_EQ(n_bad, 1);
    CHECK_EQ(n_bad_out, 1);
    CHECK_EQ(next, -1);
    sn_store_bad_free(bad, n_bad_out);
    /* a page of one stops at it; the next page goes on after it */
    CHECK_OK(sn_store_check(st, NULL, 0, 1, &bad, &n_bad_out, &next, &n_bad,
                            &n_checked, err, sizeof err), err);
    CHECK_EQ(n_bad_out, 1);
    CHECK(next > 0);
    CHECK(n_checked < 6);
    int64_t n_first = n_checked;
    sn_store_bad_t *none;
    CHECK_OK(sn_store_check(st, NULL, next, 1, &none, &n_bad_out, &next,
                            &n_bad, &n_checked, err, sizeof err), err);
    CHECK_EQ(n_bad, 0);
    CHECK(none == NULL);
    CHECK_EQ(next, -1);
    CHECK_EQ(n_first + n_checked, 6);
    n_bad_out = 1;
    CHECK_STREQ(bad[0].collection, "c");
    CHECK_STREQ(bad[0].id, "d2");
    CHECK_EQ(bad[0].chunk, 0);
    CHECK(strstr(bad[0].problem, "norm") || strstr(bad[0].problem, "finite"));
    sn_store_bad_free(bad, n_bad_out);
    CHECK_FAILS_WITH(sn_store_check(st, "nope", 0, 10, &bad, &n_bad_out,
                                    NULL, &n_bad, &n_checked, err,
                                    sizeof err),
                     err, "no collection 'nope'");

    /* repaired by adding it again (what `sense check --repair` does) */
    add_docs(st, "c", "d", 2, 1, 600);
    check_top1(st, "c", 602, "d2");
    CHECK_OK(sn_store_check(st, "c", 0, 100, &bad, &n_bad_out, NULL, &n_bad,
                            &n_checked, err, sizeof err), err);
    CHECK_EQ(n_bad, 0);
    CHECK(bad == NULL);
    sn_store_close(st);
}

/* ---- a failed add makes no collection ---------------------------------------------- */

static void test_add_create(void)
{
    sn_store_t *st = open_db("create.db");
    sqlite3 *db = sn__store_db(st);
    sqlite3_stmt *s;
    sn_collection_info_t *ci;
    int n, pages;
    float v[D];

    add_docs(st, "keep", "k", 0, 1, 700);
    CHECK(sqlite3_prepare_v2(db, "PRAGMA page_count", -1, &s, NULL) ==
          SQLITE_OK);
    CHECK(sqlite3_step(s) == SQLITE_ROW);
    pages = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %d", pages);
    CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);

    /* a document too big for the pages left: the add fails in its
     * transaction, after the collection's row went in */
    size_t len = 200000;
    char *text = malloc(len + 1);
    CHECK(text);
    memset(text, 'x', len);
    text[len] = '\0';
    vec_of(701, v);
    sn_chunk_in_t ch = {0, (int32_t)len, v};
    sn_doc_in_t d = {"big", text, len, NULL, &ch, 1};
    CHECK_FAILS_WITH(sn_store_add_create(st, "fresh", "m", D, SN_INDEX_AUTO,
                                         &d, 1, NULL, err, sizeof err),
                     err, "cannot add to 'fresh'");
    CHECK_OK(sn_store_collections(st, &ci, &n, err, sizeof err), err);
    CHECK_EQ(n, 1);
    CHECK_STREQ(ci[0].name, "keep");
    sn_collection_info_free(ci, n);
    sn_hit_t *h;
    int nh;
    CHECK_FAILS_WITH(sn_store_search(st, "fresh", "m", v, 1, NULL, &h, &nh,
                                     err, sizeof err), err, "no collection");

    /* room again: the same call makes it, with its document */
    CHECK(sqlite3_exec(db, "PRAGMA max_page_count = 1073741823", NULL, NULL,
                       NULL) == SQLITE_OK);
    CHECK_OK(sn_store_add_create(st, "fresh", "m", D, SN_INDEX_FLAT, &d, 1,
                                 NULL, err, sizeof err), err);
    CHECK_OK(sn_store_search(st, "fresh", "m", v, 1, NULL, &h, &nh, err,
                             sizeof err), err);
    CHECK_EQ(nh, 1);
    CHECK_STREQ(h[0].id, "big");
    sn_hits_free(h, nh);
    /* an existing collection: the model and dimension must match */
    CHECK_FAILS_WITH(sn_store_add_create(st, "fresh", "m", D + 1,
                                         SN_INDEX_AUTO, &d, 1, NULL, err,
                                         sizeof err), err, "dimension");
    CHECK_FAILS_WITH(sn_store_add_create(st, "fresh", "other", D,
                                         SN_INDEX_AUTO, &d, 1, NULL, err,
                                         sizeof err), err, "model");
    free(text);
    sn_store_close(st);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/sn_integrity_XXXXXX");
    CHECK(mkdtemp(dir));

    test_modes();
    test_db_replaced(0);
    test_db_restored(0);
    /* every HNSW kind: the identity checks of each file format, and
     * sq8's comparison of codes, not floats */
    for (int k = SN_HNSW_F32; k <= SN_HNSW_IVF; k++) {
        g_hnsw = (sn_hnsw_kind_t)k;
        test_db_replaced(1);
        test_db_restored(1);
    }
    g_hnsw = SN_HNSW_F32;
    test_damaged();
    test_add_create();

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    printf("integrity: ok\n");
    return 0;
}
