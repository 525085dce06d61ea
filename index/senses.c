/*
 * senses.c -- sn_senses_*: the sense inventory, in the store's SQLite
 * database, table `senses` (schema v1, index/schema.c).
 *
 * One row is one exemplar: (model_id, lemma, sense, gloss, example,
 * span_start, span_end, token_vector, sentence_vector, created). A sense is
 * the set of rows sharing (model_id, lemma, sense); its order among the
 * lemma's senses is that of its first row (rowids are AUTOINCREMENT, so
 * "ORDER BY id" is insertion order). A row with example and vectors NULL
 * stands for a sense known only by its gloss. `collection` stays NULL: an
 * inventory belongs to a model, not to a collection.
 *
 * Invariants:
 *   - Every row of a sense carries the same gloss: sn_senses_put with a
 *     gloss rewrites the sense's rows, without one inherits it.
 *   - lemma is casefolded (sn_wsd_casefold) before it is written or looked
 *     up; sense names are compared exactly.
 *   - token_vector is `hidden` float32 values and sentence_vector `dim`,
 *     native (little-endian) order, both L2-normalized (sn_wsd_embed's
 *     output); both NULL exactly when example is NULL.
 *   - Every write is one BEGIN IMMEDIATE transaction, durable when the call
 *     returns (WAL, synchronous=FULL), rolled back whole on failure.
 *
 * Why a connection of its own: the store's connection is opened
 * SQLITE_OPEN_NOMUTEX and guarded by a mutex private to store.c, so another
 * file cannot use it safely while the daemon's workers run store calls.
 * This file opens the same database file a second time, with its own
 * mutex; SQLite's WAL locking serializes its writes with the store's (each
 * waits up to BUSY_TIMEOUT_MS for the other's transaction), readers never
 * block. The schema is brought up to date through the store's own
 * migration (sn__schema_migrate), whichever opens the file first.
 *
 * Workload: a few senses added by hand, or a WordNet import (tens of
 * thousands of lemmas, batches of a few hundred rows per transaction); a
 * which-query reads one lemma's rows (tens, through the index
 * senses_by_lemma on (model_id, lemma)).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "embed_int.h"
#include "store_int.h"
#include "wsd_int.h"

#define BUSY_TIMEOUT_MS 10000
#define MAX_ROWS_PER_LEMMA 1000000 /* rows read for one lemma */

enum {
    Q_LOAD,
    Q_INSERT,
    Q_DEL_SENSE,
    Q_DEL_LEMMA,
    Q_SET_GLOSS,
    Q_GET_GLOSS,
    Q_HAS_SENSE,
    Q_HAS_EXAMPLE,
    Q_LIST,
    Q_EXAMPLES,
    Q_LEMMAS,
    Q_COUNT,
    Q_N_SENSES,
    Q_N_SENSES_OF,
    N_QUERIES
};

/* ?1 is always the model id, ?2 the lemma, ?3 the sense. */
static const char *const SQL[N_QUERIES] = {
    [Q_LOAD] = "SELECT sense, gloss, token_vector, sentence_vector FROM "
               "senses WHERE model_id = ?1 AND lemma = ?2 ORDER BY id",
    [Q_INSERT] = "INSERT INTO senses (collection, model_id, lemma, sense, "
                 "gloss, example, span_start, span_end, token_vector, "
                 "sentence_vector, created) VALUES (NULL, ?1, ?2, ?3, ?4, "
                 "?5, ?6, ?7, ?8, ?9, ?10)",
    [Q_DEL_SENSE] = "DELETE FROM senses WHERE model_id = ?1 AND lemma = ?2 "
                    "AND sense = ?3",
    [Q_DEL_LEMMA] = "DELETE FROM senses WHERE model_id = ?1 AND lemma = ?2",
    [Q_SET_GLOSS] = "UPDATE senses SET gloss = ?4 WHERE model_id = ?1 AND "
                    "lemma = ?2 AND sense = ?3",
    [Q_GET_GLOSS] = "SELECT gloss FROM senses WHERE model_id = ?1 AND "
                    "lemma = ?2 AND sense = ?3 AND gloss IS NOT NULL LIMIT 1",
    [Q_HAS_SENSE] = "SELECT 1 FROM senses WHERE model_id = ?1 AND lemma = ?2 "
                    "AND sense = ?3 LIMIT 1",
    [Q_HAS_EXAMPLE] = "SELECT 1 FROM senses WHERE model_id = ?1 AND "
                      "lemma = ?2 AND sense = ?3 AND example = ?4 AND "
                      "span_start = ?5 AND span_end = ?6 LIMIT 1",
    [Q_LIST] = "SELECT sense, max(gloss), count(token_vector), min(id) AS "
               "first FROM senses WHERE model_id = ?1 AND lemma = ?2 GROUP BY "
               "sense ORDER BY first",
    [Q_EXAMPLES] = "SELECT id, example, span_start, span_end FROM senses "
                   "WHERE model_id = ?1 AND lemma = ?2 AND sense = ?3 AND "
                   "example IS NOT NULL ORDER BY id",
    [Q_LEMMAS] = "SELECT lemma, count(DISTINCT sense), count(token_vector) "
                 "FROM senses WHERE model_id = ?1 GROUP BY lemma ORDER BY "
                 "lemma LIMIT ?4 OFFSET ?5",
    [Q_COUNT] = "SELECT count(DISTINCT lemma), count(token_vector) FROM "
                "senses WHERE model_id = ?1",
    [Q_N_SENSES] = "SELECT count(*) FROM (SELECT DISTINCT lemma, sense FROM "
                   "senses WHERE model_id = ?1)",
    [Q_N_SENSES_OF] = "SELECT count(DISTINCT sense) FROM senses WHERE "
                      "model_id = ?1 AND lemma = ?2",
};

struct sn_senses {
    sqlite3 *db;
    pthread_mutex_t lock;
    sqlite3_stmt *q[N_QUERIES];
    const sn_wsd_morph_t *morph; /* borrowed; NULL: built-in list */
};

/* ---- helpers ---------------------------------------------------------------- */

static int db_fail(sn_senses_t *s, int rc, char *err, size_t err_len,
                   const char *what)
{
    int code = sn__sqlite_code(s->db, rc);
    if (code == 0)
        code = -EIO;
    sn__err(err, err_len, code, "%s: %s", what, sqlite3_errmsg(s->db));
    return code;
}

static int exec(sn_senses_t *s, const char *sql, char *err, size_t err_len)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return db_fail(s, rc, err, err_len, sql);
    return 0;
}

static void rollback(sn_senses_t *s)
{
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* A cached statement, reset, with ?1 model, ?2 lemma and ?3 sense bound
 * where the statement has them (NULL arguments are left unbound). */
static int query(sn_senses_t *s, int which, const char *model_id,
                 const char *lemma, const char *sense, sqlite3_stmt **out,
                 char *err, size_t err_len)
{
    sqlite3_stmt *st = s->q[which];
    int rc = SQLITE_OK, n;

    if (!st) {
        rc = sqlite3_prepare_v3(s->db, SQL[which], -1,
                                SQLITE_PREPARE_PERSISTENT, &s->q[which],
                                NULL);
        if (rc != SQLITE_OK)
            return db_fail(s, rc, err, err_len, "cannot prepare a query");
        st = s->q[which];
    } else {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    n = sqlite3_bind_parameter_count(st);
    if (model_id && n >= 1)
        rc = sqlite3_bind_text(st, 1, model_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && lemma && n >= 2)
        rc = sqlite3_bind_text(st, 2, lemma, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && sense && n >= 3)
        rc = sqlite3_bind_text(st, 3, sense, -1, SQLITE_STATIC);
    if (rc != SQLITE_OK)
        return db_fail(s, rc, err, err_len, "cannot bind");
    *out = st;
    return 0;
}

/* Step a statement that returns nothing. */
static int run(sn_senses_t *s, sqlite3_stmt *st, char *err, size_t err_len,
               const char *what)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        return db_fail(s, rc, err, err_len, what);
    return 0;
}

static char *dup_col(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    int len = sqlite3_column_bytes(st, col);
    char *out;

    if (!t)
        return NULL;
    if ((out = malloc((size_t)len + 1))) {
        memcpy(out, t, (size_t)len);
        out[len] = '\0';
    }
    return out;
}

/* 1..max bytes of valid UTF-8 without control characters (newlines and
 * tabs allowed when `text`). */
static int check_str(const char *what, const char *v, size_t len, size_t max,
                     int text, char *err, size_t err_len)
{
    if (len == 0 || len > max)
        return sn__err(err, err_len, SN_EARG, "%s must be 1 to %zu bytes",
                       what, max);
    if (sn__utf8_count(v, len) < 0)
        return sn__err(err, err_len, SN_EUTF8, "%s is not valid utf-8",
                       what);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && !(text && (c == '\n' || c == '\t' || c == '\r'))) ||
            c == 0x7f)
            return sn__err(err, err_len, SN_EARG, "%s has control "
                           "characters", what);
    }
    return 0;
}

static int check_model(const char *model_id, char *err, size_t err_len)
{
    if (!model_id)
        return sn__err(err, err_len, SN_EARG, "no model id");
    return check_str("model id", model_id, strlen(model_id),
                     SN_STORE_MAX_NAME, 0, err, err_len);
}

static int finite_vec(const float *v, int n)
{
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

/* ---- open / close --------------------------------------------------------- */

int sn_senses_open(const char *db_path, sn_senses_t **out, char *err,
                   size_t err_len)
{
    sn_senses_t *s = NULL;
    sqlite3_stmt *st = NULL;
    int rc, readonly;

    if (!out)
        return sn__err(err, err_len, SN_EARG, "sn_senses_open: no out");
    *out = NULL;
    if (!db_path || !*db_path)
        return sn__err(err, err_len, SN_EARG, "no database path");
    if (!(s = calloc(1, sizeof *s)))
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    pthread_mutex_init(&s->lock, NULL);
    sn__db_private(db_path); /* 0600, as sn_store_open makes it */
    rc = sqlite3_open_v2(db_path, &s->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                             SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX,
                         NULL);
    if (rc != SQLITE_OK) {
        if (!s->db) {
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            goto fail;
        }
        rc = sn__err(err, err_len, sn__sqlite_code(s->db, rc),
                     "cannot open '%s': %s", db_path, sqlite3_errmsg(s->db));
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    readonly = sqlite3_db_readonly(s->db, "main") == 1;
    /* the first statement reads the header: not a database fails here */
    rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        rc = SQLITE_OK;
    sqlite3_finalize(st);
    if (rc != SQLITE_OK) {
        rc = db_fail(s, rc, err, err_len, "cannot read the database");
        goto fail_msg;
    }
    if (!readonly && ((rc = sn__db_page_size(s->db, err, err_len)) < 0 ||
                      (rc = exec(s, "PRAGMA journal_mode = WAL", err,
                                 err_len)) < 0))
        goto fail_msg;
    /* the lexical index's tokenizer: migrating to version 4 uses it */
    if ((rc = exec(s, "PRAGMA synchronous = FULL", err, err_len)) < 0 ||
        (rc = sn__lex_register(s->db, err, err_len)) < 0 ||
        (rc = sn__schema_migrate(s->db, readonly, NULL, NULL, err,
                                 err_len)) < 0 ||
        (rc = exec(s, "PRAGMA foreign_keys = ON", err, err_len)) < 0)
        goto fail_msg;
    *out = s;
    return 0;
fail_msg: {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", err ? err : "");
    sn__err(err, err_len, rc, "database '%s': %s", db_path, msg);
}
fail:
    sn_senses_close(s);
    return rc;
}

void sn_senses_close(sn_senses_t *s)
{
    if (!s)
        return;
    for (int i = 0; i < N_QUERIES; i++)
        sqlite3_finalize(s->q[i]);
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

void sn_senses_set_morph(sn_senses_t *s, const sn_wsd_morph_t *m)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->morph = m;
    pthread_mutex_unlock(&s->lock);
}

const sn_wsd_morph_t *sn__senses_morph(sn_senses_t *s)
{
    const sn_wsd_morph_t *m;
    pthread_mutex_lock(&s->lock);
    m = s->morph;
    pthread_mutex_unlock(&s->lock);
    return m;
}

/* ---- writes ------------------------------------------------------------------ */

/* Check one row; fold its lemma into `lemma`. */
static int check_row(const sn_sense_row_t *r, int i, int hidden, int dim,
                     char *lemma, char *err, size_t err_len)
{
    char sub[256], what[64];
    int rc;

    if ((rc = sn_wsd_casefold(r->lemma, lemma, SN_WSD_MAX_WORD, sub,
                              sizeof sub)) < 0)
        return sn__err(err, err_len, rc, "row %d: lemma: %s", i, sub);
    snprintf(what, sizeof what, "row %d: sense name", i);
    if (!r->sense)
        return sn__err(err, err_len, SN_EARG, "%s missing", what);
    if ((rc = check_str(what, r->sense, strlen(r->sense), SN_WSD_MAX_NAME, 0,
                        err, err_len)) < 0)
        return rc;
    snprintf(what, sizeof what, "row %d: gloss", i);
    if (r->gloss && (rc = check_str(what, r->gloss, strlen(r->gloss),
                                    SN_WSD_MAX_GLOSS, 1, err, err_len)) < 0)
        return rc;
    if (!r->example) {
        if (r->word || r->sentence)
            return sn__err(err, err_len, SN_EARG, "row %d: vectors without "
                           "an example", i);
        return 0;
    }
    snprintf(what, sizeof what, "row %d: example", i);
    if ((rc = check_str(what, r->example, r->example_len, SN_WSD_MAX_EXAMPLE,
                        1, err, err_len)) < 0)
        return rc;
    int64_t n_cp = sn__utf8_count(r->example, r->example_len);
    if (r->start < 0 || r->end <= r->start || r->end > n_cp)
        return sn__err(err, err_len, SN_EARG, "row %d: span [%d, %d) is not "
                       "inside the example's %lld characters", i,
                       (int)r->start, (int)r->end, (long long)n_cp);
    if (!r->word || !r->sentence)
        return sn__err(err, err_len, SN_EARG, "row %d: an example without "
                       "its vectors", i);
    if (!finite_vec(r->word, hidden) || !finite_vec(r->sentence, dim))
        return sn__err(err, err_len, SN_EARG, "row %d: vector has NaN or "
                       "infinite values", i);
    return 0;
}

int sn_senses_put(sn_senses_t *s, const char *model_id, int hidden, int dim,
                  const sn_sense_row_t *rows, int n, int replace, char *err,
                  size_t err_len)
{
    char (*lemmas)[SN_WSD_MAX_WORD] = NULL;
    sqlite3_stmt *st;
    int64_t now = (int64_t)time(NULL);
    int rc, locked = 0;

    if (!s || n < 0 || (n > 0 && !rows))
        return sn__err(err, err_len, SN_EARG, "sn_senses_put: bad arguments");
    if ((rc = check_model(model_id, err, err_len)) < 0)
        return rc;
    if (hidden <= 0 || hidden > SN_STORE_MAX_DIM || dim <= 0 ||
        dim > SN_STORE_MAX_DIM)
        return sn__err(err, err_len, SN_EARG, "vector sizes %d and %d: must "
                       "be 1 to %d", hidden, dim, SN_STORE_MAX_DIM);
    if (n > SN_WSD_MAX_BATCH * 64)
        return sn__err(err, err_len, SN_ETOOBIG, "more than %d rows in one "
                       "call", SN_WSD_MAX_BATCH * 64);
    if (n == 0)
        return 0;
    if (!(lemmas = malloc((size_t)n * sizeof *lemmas)))
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    for (int i = 0; i < n; i++)
        if ((rc = check_row(&rows[i], i, hidden, dim, lemmas[i], err,
                            err_len)) < 0)
            goto fail;
    pthread_mutex_lock(&s->lock);
    locked = 1;
    if ((rc = exec(s, "BEGIN IMMEDIATE", err, err_len)) < 0)
        goto fail;
    if (replace)
        for (int i = 0; i < n; i++) {
            if ((rc = query(s, Q_DEL_SENSE, model_id, lemmas[i],
                            rows[i].sense, &st, err, err_len)) < 0 ||
                (rc = run(s, st, err, err_len, "cannot replace a sense")) < 0)
                goto fail;
        }
    for (int i = 0; i < n; i++) {
        const sn_sense_row_t *r = &rows[i];
        char *gloss = NULL;
        int exists;

        if (r->gloss) {
            if ((rc = query(s, Q_SET_GLOSS, model_id, lemmas[i], r->sense,
                            &st, err, err_len)) < 0)
                goto fail;
            if ((rc = sqlite3_bind_text(st, 4, r->gloss, -1,
                                        SQLITE_STATIC)) != SQLITE_OK) {
                rc = db_fail(s, rc, err, err_len, "cannot bind");
                goto fail;
            }
            if ((rc = run(s, st, err, err_len, "cannot set a gloss")) < 0)
                goto fail;
        }
        if ((rc = query(s, Q_HAS_SENSE, model_id, lemmas[i], r->sense, &st,
                        err, err_len)) < 0)
            goto fail;
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            rc = db_fail(s, rc, err, err_len, "cannot read the senses");
            goto fail;
        }
        exists = rc == SQLITE_ROW;
        sqlite3_reset(st);
        if (!r->example && exists)
            continue; /* a gloss-only row adds nothing to a known sense */
        if (r->example && exists) {
            /* the same example at the same span is stored once */
            if ((rc = query(s, Q_HAS_EXAMPLE, model_id, lemmas[i], r->sense,
                            &st, err, err_len)) < 0)
                goto fail;
            rc = sqlite3_bind_text(st, 4, r->example, (int)r->example_len,
                                   SQLITE_STATIC);
            if (rc == SQLITE_OK)
                rc = sqlite3_bind_int(st, 5, r->start);
            if (rc == SQLITE_OK)
                rc = sqlite3_bind_int(st, 6, r->end);
            if (rc != SQLITE_OK) {
                rc = db_fail(s, rc, err, err_len, "cannot bind");
                goto fail;
            }
            rc = sqlite3_step(st);
            sqlite3_reset(st);
            if (rc == SQLITE_ROW)
                continue;
            if (rc != SQLITE_DONE) {
                rc = db_fail(s, rc, err, err_len, "cannot read the senses");
                goto fail;
            }
        }
        if (!r->gloss && exists) {
            if ((rc = query(s, Q_GET_GLOSS, model_id, lemmas[i], r->sense,
                            &st, err, err_len)) < 0)
                goto fail;
            rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                if (!(gloss = dup_col(st, 0))) {
                    rc = sn__err(err, err_len, -ENOMEM, "out of memory");
                    goto fail;
                }
            } else if (rc != SQLITE_DONE) {
                rc = db_fail(s, rc, err, err_len, "cannot read a gloss");
                goto fail;
            }
            sqlite3_reset(st);
        }
        if ((rc = query(s, Q_INSERT, model_id, lemmas[i], r->sense, &st, err,
                        err_len)) < 0) {
            free(gloss);
            goto fail;
        }
        const char *g = r->gloss ? r->gloss : gloss;
        rc = g ? sqlite3_bind_text(st, 4, g, -1, SQLITE_TRANSIENT)
               : sqlite3_bind_null(st, 4);
        free(gloss);
        if (rc == SQLITE_OK && r->example) {
            rc = sqlite3_bind_text(st, 5, r->example, (int)r->example_len,
                                   SQLITE_STATIC);
            if (rc == SQLITE_OK)
                rc = sqlite3_bind_int(st, 6, r->start);
            if (rc == SQLITE_OK)
                rc = sqlite3_bind_int(st, 7, r->end);
            if (rc == SQLITE_OK)
                rc = sqlite3_bind_blob(st, 8, r->word,
                                       hidden * (int)sizeof(float),
                                       SQLITE_STATIC);
            if (rc == SQLITE_OK)
                rc = sqlite3_bind_blob(st, 9, r->sentence,
                                       dim * (int)sizeof(float),
                                       SQLITE_STATIC);
        }
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(st, 10, now);
        if (rc != SQLITE_OK) {
            rc = db_fail(s, rc, err, err_len, "cannot bind");
            goto fail;
        }
        if ((rc = run(s, st, err, err_len, "cannot add a sense")) < 0)
            goto fail;
    }
    if ((rc = exec(s, "COMMIT", err, err_len)) < 0)
        goto fail;
    pthread_mutex_unlock(&s->lock);
    free(lemmas);
    return 0;
fail:
    if (locked) {
        rollback(s);
        pthread_mutex_unlock(&s->lock);
    }
    free(lemmas);
    return rc;
}

int sn_senses_remove(sn_senses_t *s, const char *model_id,
                     const char *lemma, const char *sense, int *n_removed,
                     char *err, size_t err_len)
{
    char lf[SN_WSD_MAX_WORD];
    sqlite3_stmt *st;
    int rc, n = 0;

    if (n_removed)
        *n_removed = 0;
    if (!s)
        return sn__err(err, err_len, SN_EARG, "no inventory");
    if ((rc = check_model(model_id, err, err_len)) < 0 ||
        (rc = sn_wsd_casefold(lemma, lf, sizeof lf, err, err_len)) < 0)
        return rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = exec(s, "BEGIN IMMEDIATE", err, err_len)) < 0)
        goto fail;
    if (sense) {
        if ((rc = query(s, Q_HAS_SENSE, model_id, lf, sense, &st, err,
                        err_len)) < 0)
            goto fail;
    } else if ((rc = query(s, Q_N_SENSES_OF, model_id, lf, NULL, &st, err,
                           err_len)) < 0) {
        goto fail;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    else if (rc != SQLITE_DONE) {
        rc = db_fail(s, rc, err, err_len, "cannot read the senses");
        goto fail;
    }
    sqlite3_reset(st);
    if ((rc = query(s, sense ? Q_DEL_SENSE : Q_DEL_LEMMA, model_id, lf, sense,
                    &st, err, err_len)) < 0 ||
        (rc = run(s, st, err, err_len, "cannot remove")) < 0 ||
        (rc = exec(s, "COMMIT", err, err_len)) < 0)
        goto fail;
    pthread_mutex_unlock(&s->lock);
    if (n_removed)
        *n_removed = n;
    return 0;
fail:
    rollback(s);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* ---- reads -------------------------------------------------------------------- */

int sn__senses_load(sn_senses_t *s, const char *model_id, const char *lemma,
                    sn__wsd_inv_t *out, char *err, size_t err_len)
{
    sqlite3_stmt *st = NULL;
    int rc, cap_s = 0, cap_x = 0;

    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->lock);
    if ((rc = query(s, Q_LOAD, model_id, lemma, NULL, &st, err, err_len)) < 0)
        goto fail;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        int k = out->n_senses - 1;
        /* rows come in id order: a sense seen before is usually the last
         * one; search back */
        while (k >= 0 && strcmp(out->sense[k], name ? name : "") != 0)
            k--;
        if (k < 0) {
            if (out->n_senses == cap_s) {
                int cap = cap_s ? cap_s * 2 : 8;
                char **a = realloc(out->sense, (size_t)cap * sizeof *a);
                if (a)
                    out->sense = a;
                char **b = a ? realloc(out->gloss, (size_t)cap * sizeof *b)
                             : NULL;
                if (b)
                    out->gloss = b;
                int *c = b ? realloc(out->n_examples, (size_t)cap * sizeof *c)
                           : NULL;
                if (!c) {
                    rc = sn__err(err, err_len, -ENOMEM, "out of memory");
                    goto fail;
                }
                out->n_examples = c;
                cap_s = cap;
            }
            k = out->n_senses;
            out->sense[k] = dup_col(st, 0);
            out->gloss[k] = dup_col(st, 1);
            out->n_examples[k] = 0;
            out->n_senses++;
            if (!out->sense[k] ||
                (sqlite3_column_type(st, 1) != SQLITE_NULL && !out->gloss[k])) {
                rc = sn__err(err, err_len, -ENOMEM, "out of memory");
                goto fail;
            }
        }
        if (sqlite3_column_type(st, 2) == SQLITE_NULL ||
            sqlite3_column_type(st, 3) == SQLITE_NULL)
            continue;
        int wb = sqlite3_column_bytes(st, 2), sb = sqlite3_column_bytes(st, 3);
        if (out->n_ex == 0) {
            out->hidden = wb / (int)sizeof(float);
            out->dim = sb / (int)sizeof(float);
        }
        if (wb % (int)sizeof(float) || sb % (int)sizeof(float) || wb == 0 ||
            sb == 0 || wb != out->hidden * (int)sizeof(float) ||
            sb != out->dim * (int)sizeof(float)) {
            rc = sn__err(err, err_len, SN_ECORRUPT, "senses of '%s': "
                         "exemplar vectors of %d and %d bytes, expected %d "
                         "and %d", lemma, wb, sb,
                         out->hidden * (int)sizeof(float),
                         out->dim * (int)sizeof(float));
            goto fail;
        }
        if (out->n_ex == cap_x) {
            if (cap_x >= MAX_ROWS_PER_LEMMA) {
                rc = sn__err(err, err_len, SN_ETOOBIG, "senses of '%s': more "
                             "than %d exemplars", lemma, MAX_ROWS_PER_LEMMA);
                goto fail;
            }
            int cap = cap_x ? cap_x * 2 : 16;
            int *a = realloc(out->ex_sense, (size_t)cap * sizeof *a);
            if (a)
                out->ex_sense = a;
            float *w = a ? realloc(out->word, (size_t)cap *
                                                  (size_t)out->hidden *
                                                  sizeof *w)
                         : NULL;
            if (w)
                out->word = w;
            float *v = w ? realloc(out->sentence, (size_t)cap *
                                                      (size_t)out->dim *
                                                      sizeof *v)
                         : NULL;
            if (!v) {
                rc = sn__err(err, err_len, -ENOMEM, "out of memory");
                goto fail;
            }
            out->sentence = v;
            cap_x = cap;
        }
        memcpy(out->word + (size_t)out->n_ex * (size_t)out->hidden,
               sqlite3_column_blob(st, 2), (size_t)wb);
        memcpy(out->sentence + (size_t)out->n_ex * (size_t)out->dim,
               sqlite3_column_blob(st, 3), (size_t)sb);
        out->ex_sense[out->n_ex++] = k;
        out->n_examples[k]++;
    }
    if (rc != SQLITE_DONE) {
        rc = db_fail(s, rc, err, err_len, "cannot read the senses");
        goto fail;
    }
    sqlite3_reset(st);
    pthread_mutex_unlock(&s->lock);
    return 0;
fail:
    if (st)
        sqlite3_reset(st);
    pthread_mutex_unlock(&s->lock);
    sn__wsd_inv_free(out);
    return rc;
}

void sn_sense_info_free(sn_sense_info_t *v, int n)
{
    if (!v)
        return;
    for (int i = 0; i < n; i++) {
        free(v[i].sense);
        free(v[i].gloss);
    }
    free(v);
}

void sn_sense_examples_free(sn_sense_example_t *v, int n)
{
    if (!v)
        return;
    for (int i = 0; i < n; i++)
        free(v[i].example);
    free(v);
}

void sn_lemma_info_free(sn_lemma_info_t *v, int n)
{
    if (!v)
        return;
    for (int i = 0; i < n; i++)
        free(v[i].lemma);
    free(v);
}

/* Grow *v (elements of `size` bytes) to hold n + 1. */
static int grow(void **v, int n, int *cap, size_t size)
{
    if (n < *cap)
        return 0;
    int c = *cap ? *cap * 2 : 16;
    void *p = realloc(*v, (size_t)c * size);
    if (!p)
        return -ENOMEM;
    memset((char *)p + (size_t)*cap * size, 0, (size_t)(c - *cap) * size);
    *v = p;
    *cap = c;
    return 0;
}

int sn_senses_list(sn_senses_t *s, const char *model_id, const char *lemma,
                   sn_sense_info_t **out, int *n_out, char *err,
                   size_t err_len)
{
    char lf[SN_WSD_MAX_WORD];
    sn_sense_info_t *v = NULL;
    sqlite3_stmt *st = NULL;
    int rc, n = 0, cap = 0;

    if (!out || !n_out)
        return sn__err(err, err_len, SN_EARG, "sn_senses_list: no out");
    *out = NULL;
    *n_out = 0;
    if (!s)
        return sn__err(err, err_len, SN_EARG, "no inventory");
    if ((rc = check_model(model_id, err, err_len)) < 0 ||
        (rc = sn_wsd_casefold(lemma, lf, sizeof lf, err, err_len)) < 0)
        return rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = query(s, Q_LIST, model_id, lf, NULL, &st, err, err_len)) < 0)
        goto fail;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&v, n, &cap, sizeof *v) < 0) {
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            goto fail;
        }
        v[n].sense = dup_col(st, 0);
        v[n].gloss = dup_col(st, 1);
        v[n].n_examples = sqlite3_column_int(st, 2);
        n++;
        if (!v[n - 1].sense ||
            (sqlite3_column_type(st, 1) != SQLITE_NULL && !v[n - 1].gloss)) {
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            goto fail;
        }
    }
    if (rc != SQLITE_DONE) {
        rc = db_fail(s, rc, err, err_len, "cannot list the senses");
        goto fail;
    }
    sqlite3_reset(st);
    pthread_mutex_unlock(&s->lock);
    *out = v;
    *n_out = n;
    return 0;
fail:
    if (st)
        sqlite3_reset(st);
    pthread_mutex_unlock(&s->lock);
    sn_sense_info_free(v, n);
    return rc;
}

int sn_senses_examples(sn_senses_t *s, const char *model_id,
                       const char *lemma, const char *sense,
                       sn_sense_example_t **out, int *n_out, char *err,
                       size_t err_len)
{
    char lf[SN_WSD_MAX_WORD];
    sn_sense_example_t *v = NULL;
    sqlite3_stmt *st = NULL;
    int rc, n = 0, cap = 0;

    if (!out || !n_out)
        return sn__err(err, err_len, SN_EARG, "sn_senses_examples: no out");
    *out = NULL;
    *n_out = 0;
    if (!s || !sense)
        return sn__err(err, err_len, SN_EARG, "no inventory or no sense");
    if ((rc = check_model(model_id, err, err_len)) < 0 ||
        (rc = sn_wsd_casefold(lemma, lf, sizeof lf, err, err_len)) < 0)
        return rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = query(s, Q_EXAMPLES, model_id, lf, sense, &st, err,
                    err_len)) < 0)
        goto fail;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&v, n, &cap, sizeof *v) < 0) {
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            goto fail;
        }
        v[n].id = sqlite3_column_int64(st, 0);
        v[n].example = dup_col(st, 1);
        v[n].start = sqlite3_column_int(st, 2);
        v[n].end = sqlite3_column_int(st, 3);
        if (!v[n++].example) {
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            goto fail;
        }
    }
    if (rc != SQLITE_DONE) {
        rc = db_fail(s, rc, err, err_len, "cannot list the examples");
        goto fail;
    }
    sqlite3_reset(st);
    pthread_mutex_unlock(&s->lock);
    *out = v;
    *n_out = n;
    return 0;
fail:
    if (st)
        sqlite3_reset(st);
    pthread_mutex_unlock(&s->lock);
    sn_sense_examples_free(v, n);
    return rc;
}

int sn_senses_lemmas(sn_senses_t *s, const char *model_id, int64_t offset,
                     int limit, sn_lemma_info_t **out, int *n_out,
                     char *err, size_t err_len)
{
    sn_lemma_info_t *v = NULL;
    sqlite3_stmt *st = NULL;
    int rc, n = 0, cap = 0;

    if (!out || !n_out)
        return sn__err(err, err_len, SN_EARG, "sn_senses_lemmas: no out");
    *out = NULL;
    *n_out = 0;
    if (!s || offset < 0)
        return sn__err(err, err_len, SN_EARG, "no inventory or bad offset");
    if ((rc = check_model(model_id, err, err_len)) < 0)
        return rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = query(s, Q_LEMMAS, model_id, NULL, NULL, &st, err, err_len)) < 0)
        goto fail;
    if ((rc = sqlite3_bind_int64(st, 4, limit > 0 ? limit : -1)) !=
            SQLITE_OK ||
        (rc = sqlite3_bind_int64(st, 5, offset)) != SQLITE_OK) {
        rc = db_fail(s, rc, err, err_len, "cannot bind");
        goto fail;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&v, n, &cap, sizeof *v) < 0) {
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            goto fail;
        }
        v[n].lemma = dup_col(st, 0);
        v[n].n_senses = sqlite3_column_int(st, 1);
        v[n].n_examples = sqlite3_column_int(st, 2);
        if (!v[n++].lemma) {
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            goto fail;
        }
    }
    if (rc != SQLITE_DONE) {
        rc = db_fail(s, rc, err, err_len, "cannot list the lemmas");
        goto fail;
    }
    sqlite3_reset(st);
    pthread_mutex_unlock(&s->lock);
    *out = v;
    *n_out = n;
    return 0;
fail:
    if (st)
        sqlite3_reset(st);
    pthread_mutex_unlock(&s->lock);
    sn_lemma_info_free(v, n);
    return rc;
}

int sn_senses_count(sn_senses_t *s, const char *model_id,
                    sn_senses_count_t *out, char *err, size_t err_len)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if (!out)
        return sn__err(err, err_len, SN_EARG, "sn_senses_count: no out");
    memset(out, 0, sizeof *out);
    if (!s)
        return sn__err(err, err_len, SN_EARG, "no inventory");
    if ((rc = check_model(model_id, err, err_len)) < 0)
        return rc;
    pthread_mutex_lock(&s->lock);
    if ((rc = query(s, Q_COUNT, model_id, NULL, NULL, &st, err, err_len)) < 0)
        goto fail;
    if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
        rc = db_fail(s, rc, err, err_len, "cannot count the senses");
        goto fail;
    }
    out->n_lemmas = sqlite3_column_int64(st, 0);
    out->n_examples = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    if ((rc = query(s, Q_N_SENSES, model_id, NULL, NULL, &st, err,
                    err_len)) < 0)
        goto fail;
    if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
        rc = db_fail(s, rc, err, err_len, "cannot count the senses");
        goto fail;
    }
    out->n_senses = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    pthread_mutex_unlock(&s->lock);
    return 0;
fail:
    if (st)
        sqlite3_reset(st);
    pthread_mutex_unlock(&s->lock);
    return rc;
}
