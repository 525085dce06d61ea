/*
 * schema.c -- the database layout and its migrations.
 *
 * The schema version is PRAGMA user_version. sn__schema_migrate() walks the
 * `steps` table below from the database's version to SN__SCHEMA_VERSION,
 * one BEGIN IMMEDIATE transaction per step that also writes the new
 * user_version, so a crash or a full disk mid-migration leaves the database
 * at the last completed step and the next open resumes from there. Two
 * processes opening an old database at once serialize on the write lock;
 * the second sees the version already bumped and skips the step.
 *
 * To change the schema: add a step with the next version number, and bump
 * SN__SCHEMA_VERSION. Never edit a released step.
 *
 * Versions:
 *   0  an empty database, or the pre-release layout (what development
 *      builds wrote before the schema was versioned, recognised by its
 *      `documents` table): collections(id, name, model_id, dim),
 *      documents(id, collection, ext_id, text, meta), chunks(id, document,
 *      ordinal, vector). No timestamps, index kinds, spans or senses.
 *   1  the first release: the tables below.
 *   2  store_info (key, value): the database's own facts; `db_id`, 16
 *      random bytes drawn when the step runs (hex), names this database
 *      in its index files, so that a file that outlived its database
 *      (deleted, recreated, replaced) is never trusted.
 *   3  the lexical index: two FTS5 tables over documents.text, written by
 *      triggers in the same transaction as the document row (so an
 *      acknowledged add is searchable both ways, and a delete, a replace
 *      or a rollback changes both or neither). documents_fts uses
 *      'porter unicode61' (English words, stemmed); documents_tri uses
 *      'trigram' (every three code points, case-folded: matches Korean
 *      and CJK words whatever particle or compound they sit in, and
 *      misspelled or partial words). Both are external-content tables
 *      (content='documents'): the text is stored once. Migrating a
 *      version 2 database backfills them ('rebuild'). documents_tri_vocab
 *      (fts5vocab, no storage of its own) gives a trigram's document
 *      count.
 *   4  documents_fts made again with the tokenizer 'sense_words' (words.c)
 *      around the same 'porter unicode61': a glued word's parts are
 *      indexed at its position ("BigCache": also "big", "cach"), and
 *      rebuilt. store_info 'lex_words' names the word list the parts came
 *      from (sn__schema_words). Every connection that writes documents
 *      registers the tokenizer (sn__lex_register) before it migrates.
 *      Other programs (the sqlite3 shell) still read every table, but
 *      cannot query documents_fts or write documents (its triggers
 *      tokenize): "no such tokenizer: sense_words".
 *
 * Invariants of version 1, relied on by store.c:
 *   - chunks.id is AUTOINCREMENT: never reused, so a faiss index built at
 *     any time can be caught up by comparing id sets, and a stale vector id
 *     never names a different chunk.
 *   - chunks.vector is dim float32 values, native (little-endian) order.
 *   - documents.id is AUTOINCREMENT and an upsert updates the row in place:
 *     ORDER BY id is insertion order.
 *   - chunks.collection repeats documents.collection so that an index
 *     rebuild reads one index range (chunks_by_collection).
 *
 * Workload: runs once per sn_store_open; a migration rewrites whole tables
 * inside one transaction, so it needs free disk space about the size of
 * the tables it copies (a full disk rolls it back and the open fails).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "embed_int.h"
#include "store_int.h"

/* Why two tables and trigrams, measured on ../shared/ir (bench/README.md):
 * on korean-dev, BM25 over 'unicode61' words finds the right document in
 * the top 10 for 72% of the queries, over Hangul bigrams 80%, over trigrams
 * 84%; on debian-dev the stemmed words alone 87%, the two lists together
 * 89%. */
static const char SCHEMA_V3[] =
    "CREATE VIRTUAL TABLE documents_fts USING fts5 (\n"
    "    text, content = 'documents', content_rowid = 'id',\n"
    "    tokenize = 'porter unicode61 remove_diacritics 2'\n"
    ");\n"
    "CREATE VIRTUAL TABLE documents_tri USING fts5 (\n"
    "    text, content = 'documents', content_rowid = 'id',\n"
    "    tokenize = 'trigram'\n"
    ");\n"
    "CREATE VIRTUAL TABLE documents_tri_vocab USING fts5vocab (\n"
    "    documents_tri, row\n"
    ");\n"
    "CREATE TRIGGER documents_fts_insert AFTER INSERT ON documents BEGIN\n"
    "    INSERT INTO documents_fts (rowid, text) VALUES (new.id, new.text);\n"
    "    INSERT INTO documents_tri (rowid, text) VALUES (new.id, new.text);\n"
    "END;\n"
    "CREATE TRIGGER documents_fts_delete AFTER DELETE ON documents BEGIN\n"
    "    INSERT INTO documents_fts (documents_fts, rowid, text)\n"
    "        VALUES ('delete', old.id, old.text);\n"
    "    INSERT INTO documents_tri (documents_tri, rowid, text)\n"
    "        VALUES ('delete', old.id, old.text);\n"
    "END;\n"
    "CREATE TRIGGER documents_fts_update AFTER UPDATE OF text ON documents\n"
    "BEGIN\n"
    "    INSERT INTO documents_fts (documents_fts, rowid, text)\n"
    "        VALUES ('delete', old.id, old.text);\n"
    "    INSERT INTO documents_tri (documents_tri, rowid, text)\n"
    "        VALUES ('delete', old.id, old.text);\n"
    "    INSERT INTO documents_fts (rowid, text) VALUES (new.id, new.text);\n"
    "    INSERT INTO documents_tri (rowid, text) VALUES (new.id, new.text);\n"
    "END;\n";

/* Version 2 to 3: the tables, then their index built from what is there. */
static const char MIGRATE_V2_V3[] =
    "INSERT INTO documents_fts (documents_fts) VALUES ('rebuild');\n"
    "INSERT INTO documents_tri (documents_tri) VALUES ('rebuild');\n";

/* Version 3 to 4: the word index again, with the parts of words. The
 * triggers name the table, so they write to the new one. */
static const char SCHEMA_V4[] =
    "DROP TABLE documents_fts;\n"
    "CREATE VIRTUAL TABLE documents_fts USING fts5 (\n"
    "    text, content = 'documents', content_rowid = 'id',\n"
    "    tokenize = 'sense_words porter unicode61 remove_diacritics 2'\n"
    ");\n"
    "INSERT INTO documents_fts (documents_fts) VALUES ('rebuild');\n";

static const char SCHEMA_V1[] =
    "CREATE TABLE collections (\n"
    "    id         INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "    name       TEXT NOT NULL UNIQUE,\n"
    "    model_id   TEXT NOT NULL,\n"
    "    dim        INTEGER NOT NULL CHECK (dim > 0),\n"
    "    index_kind TEXT NOT NULL DEFAULT 'auto'\n"
    "               CHECK (index_kind IN ('auto', 'flat', 'hnsw')),\n"
    "    created    INTEGER NOT NULL\n"
    ");\n"
    "CREATE TABLE documents (\n"
    "    id         INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "    collection INTEGER NOT NULL REFERENCES collections (id),\n"
    "    ext_id     TEXT NOT NULL,\n"
    "    text       TEXT NOT NULL,\n"
    "    meta       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(meta)),\n"
    "    created    INTEGER NOT NULL,\n"
    "    updated    INTEGER NOT NULL,\n"
    "    UNIQUE (collection, ext_id)\n"
    ");\n"
    "CREATE INDEX documents_by_collection ON documents (collection, id);\n"
    "CREATE TABLE chunks (\n"
    "    id         INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "    document   INTEGER NOT NULL REFERENCES documents (id),\n"
    "    collection INTEGER NOT NULL REFERENCES collections (id),\n"
    "    ordinal    INTEGER NOT NULL,\n"
    "    span_start INTEGER NOT NULL,\n"
    "    span_end   INTEGER NOT NULL,\n"
    "    vector     BLOB NOT NULL,\n"
    "    UNIQUE (document, ordinal)\n"
    ");\n"
    "CREATE INDEX chunks_by_collection ON chunks (collection, id);\n"
    /* Word senses: a lemma's inventory, each sense with its gloss, an
     * example sentence, the span of the lemma in it, and the encoder's
     * vectors for that token and for the sentence. Bound to a model (and
     * optionally to a collection). Schema only for now. */
    "CREATE TABLE senses (\n"
    "    id              INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "    collection      INTEGER REFERENCES collections (id),\n"
    "    model_id        TEXT NOT NULL,\n"
    "    lemma           TEXT NOT NULL,\n"
    "    sense           TEXT NOT NULL,\n"
    "    gloss           TEXT,\n"
    "    example         TEXT,\n"
    "    span_start      INTEGER,\n"
    "    span_end        INTEGER,\n"
    "    token_vector    BLOB,\n"
    "    sentence_vector BLOB,\n"
    "    created         INTEGER NOT NULL\n"
    ");\n"
    "CREATE INDEX senses_by_lemma ON senses (model_id, lemma);\n";

/* The pre-release tables are renamed out of the way, the version 1 tables
 * created, the rows copied (ids kept, so chunk ids stay valid), and the old
 * tables dropped. A chunk had no span: it gets its document's whole text. A
 * meta that is not a JSON object becomes {}. */
static const char MIGRATE_V0_V1[] =
    "ALTER TABLE collections RENAME TO v0_collections;\n"
    "ALTER TABLE documents RENAME TO v0_documents;\n"
    "ALTER TABLE chunks RENAME TO v0_chunks;\n"
    "%s"
    "INSERT INTO collections (id, name, model_id, dim, index_kind, created)\n"
    "    SELECT id, name, model_id, dim, 'auto', unixepoch()\n"
    "    FROM v0_collections;\n"
    "INSERT INTO documents (id, collection, ext_id, text, meta, created,\n"
    "                       updated)\n"
    "    SELECT id, collection, ext_id, text,\n"
    "           CASE WHEN json_valid(meta) AND json_type(meta) = 'object'\n"
    "                THEN meta ELSE '{}' END,\n"
    "           unixepoch(), unixepoch()\n"
    "    FROM v0_documents;\n"
    "INSERT INTO chunks (id, document, collection, ordinal, span_start,\n"
    "                    span_end, vector)\n"
    "    SELECT c.id, c.document, d.collection, c.ordinal, 0,\n"
    "           length(d.text), c.vector\n"
    "    FROM v0_chunks c JOIN v0_documents d ON d.id = c.document;\n"
    "DROP TABLE v0_chunks;\n"
    "DROP TABLE v0_documents;\n"
    "DROP TABLE v0_collections;\n";

static int exec(sqlite3 *db, const char *sql, char *err, size_t err_len)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        int code = sn__sqlite_code(db, rc);
        sn__err(err, err_len, code, "%s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return code;
    }
    return 0;
}

static int table_exists(sqlite3 *db, const char *name, int *exists,
                        char *err, size_t err_len)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE "
                                    "type = 'table' AND name = ?1",
                                -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
            *exists = rc == SQLITE_ROW;
            rc = SQLITE_OK;
        }
    }
    if (rc != SQLITE_OK) {
        int code = sn__sqlite_code(db, rc);
        sn__err(err, err_len, code, "%s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return code;
    }
    sqlite3_finalize(st);
    return 0;
}

static int step_v1(sqlite3 *db, char *err, size_t err_len)
{
    char sql[sizeof MIGRATE_V0_V1 + sizeof SCHEMA_V1];
    int pre_release = 0, rc;

    if ((rc = table_exists(db, "documents", &pre_release, err, err_len)) < 0)
        return rc;
    if (!pre_release)
        return exec(db, SCHEMA_V1, err, err_len);
    snprintf(sql, sizeof sql, MIGRATE_V0_V1, SCHEMA_V1);
    return exec(db, sql, err, err_len);
}

static const char SCHEMA_V2[] =
    "CREATE TABLE store_info (\n"
    "    key   TEXT PRIMARY KEY,\n"
    "    value TEXT NOT NULL\n"
    ") WITHOUT ROWID;\n"
    "INSERT INTO store_info (key, value)\n"
    "    VALUES ('db_id', lower(hex(randomblob(16))));\n";

static int step_v2(sqlite3 *db, char *err, size_t err_len)
{
    return exec(db, SCHEMA_V2, err, err_len);
}

static int step_v3(sqlite3 *db, char *err, size_t err_len)
{
    int rc = exec(db, SCHEMA_V3, err, err_len);
    return rc < 0 ? rc : exec(db, MIGRATE_V2_V3, err, err_len);
}

/* store_info 'lex_words' := the word list's stamp now. */
static int put_words_stamp(sqlite3 *db, char *err, size_t err_len)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO store_info "
                                    "(key, value) VALUES ('lex_words', ?1)",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, sn__words_stamp(), -1, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK)
        return sn__err(err, err_len, sn__sqlite_code(db, rc), "cannot "
                       "record the word list: %s", sqlite3_errmsg(db));
    return 0;
}

static int step_v4(sqlite3 *db, char *err, size_t err_len)
{
    int rc = exec(db, SCHEMA_V4, err, err_len);
    return rc < 0 ? rc : put_words_stamp(db, err, err_len);
}

static const struct {
    int version; /* user_version once applied */
    const char *what;
    int (*apply)(sqlite3 *db, char *err, size_t err_len);
} steps[] = {
    {1, "collections, documents, chunks, senses", step_v1},
    {2, "store_info with the database's id", step_v2},
    {3, "lexical index over documents, backfilled", step_v3},
    {4, "parts of words in the lexical index, rebuilt", step_v4},
};

/* *out = the first column of sql's first row; `what` names it in the
 * error ("cannot read <what>"). */
static int query_int(sqlite3 *db, const char *sql, const char *what,
                     int *out, char *err, size_t err_len)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK)
        return sn__err(err, err_len, sn__sqlite_code(db, rc),
                       "cannot read %s: %s", what, sqlite3_errmsg(db));
    return 0;
}

static int user_version(sqlite3 *db, int *out, char *err, size_t err_len)
{
    return query_int(db, "PRAGMA user_version", "the schema version", out,
                     err, err_len);
}

int sn__db_page_size(sqlite3 *db, char *err, size_t err_len)
{
    int rc, n_pages = -1;
    char sql[64];

    if ((rc = query_int(db, "PRAGMA page_count", "the page count", &n_pages,
                        err, err_len)) < 0)
        return rc;
    if (n_pages != 0)
        return 0;
    snprintf(sql, sizeof sql, "PRAGMA page_size = %d", SN__PAGE_SIZE);
    return exec(db, sql, err, err_len);
}

int sn__schema_migrate(sqlite3 *db, int readonly, sn__log_fn log, void *ud,
                       char *err, size_t err_len)
{
    int version, rc;
    char sql[64];

    if ((rc = user_version(db, &version, err, err_len)) < 0)
        return rc;
    if (version > SN__SCHEMA_VERSION)
        return sn__err(err, err_len, SN_ECORRUPT, "database schema version "
                       "%d is newer than this sense understands (%d)",
                       version, SN__SCHEMA_VERSION);
    if (version == SN__SCHEMA_VERSION)
        return 0;
    if (readonly)
        return sn__err(err, err_len, -EROFS, "database is read-only and "
                       "needs migrating from schema version %d to %d",
                       version, SN__SCHEMA_VERSION);
    /* A database with no tables yet is being created, not migrated: one
     * line says so instead of a line per step. */
    int fresh = 0;
    if (version == 0) {
        int any = 0;
        if ((rc = query_int(db, "SELECT EXISTS (SELECT 1 FROM sqlite_schema "
                            "WHERE type = 'table')", "the tables", &any, err,
                            err_len)) < 0)
            return rc;
        fresh = !any;
    }
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        if (steps[i].version <= version)
            continue;
        if ((rc = exec(db, "BEGIN IMMEDIATE", err, err_len)) < 0)
            return rc;
        /* Another process may have run this step while we waited. */
        if ((rc = user_version(db, &version, err, err_len)) < 0)
            goto fail;
        if (steps[i].version <= version) {
            if ((rc = exec(db, "COMMIT", err, err_len)) < 0)
                goto fail;
            continue;
        }
        if ((rc = steps[i].apply(db, err, err_len)) < 0)
            goto fail;
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d",
                 steps[i].version);
        if ((rc = exec(db, sql, err, err_len)) < 0 ||
            (rc = exec(db, "COMMIT", err, err_len)) < 0)
            goto fail;
        if (log && !fresh)
            log(ud, "database migrated from schema version %d to %d (%s)",
                version, steps[i].version, steps[i].what);
        version = steps[i].version;
    }
    if (log && fresh)
        log(ud, "database created (schema version %d)", SN__SCHEMA_VERSION);
    return 0;
fail:
    /* The step's error is in err; the rollback's own is not interesting. */
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* store_info 'lex_words', or "" when there is none. */
static int words_stamp_of(sqlite3 *db, char *out, size_t len, char *err,
                          size_t err_len)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT value FROM store_info "
                                    "WHERE key = 'lex_words'",
                                -1, &st, NULL);
    out[0] = '\0';
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        snprintf(out, len, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE && rc != SQLITE_OK)
        return sn__err(err, err_len, sn__sqlite_code(db, rc), "cannot read "
                       "the word list's name: %s", sqlite3_errmsg(db));
    return 0;
}

int sn__schema_words(sqlite3 *db, int readonly, sn__log_fn log, void *ud,
                     char *err, size_t err_len)
{
    char was[128];
    int rc;

    if ((rc = words_stamp_of(db, was, sizeof was, err, err_len)) < 0)
        return rc;
    if (!strcmp(was, sn__words_stamp()) || readonly)
        return 0;
    if ((rc = exec(db, "BEGIN IMMEDIATE", err, err_len)) < 0)
        return rc;
    /* another process may have rebuilt it while we waited */
    if ((rc = words_stamp_of(db, was, sizeof was, err, err_len)) < 0)
        goto fail;
    if (!strcmp(was, sn__words_stamp()))
        return exec(db, "COMMIT", err, err_len);
    if ((rc = exec(db, "INSERT INTO documents_fts (documents_fts) "
                       "VALUES ('rebuild')", err, err_len)) < 0 ||
        (rc = put_words_stamp(db, err, err_len)) < 0 ||
        (rc = exec(db, "COMMIT", err, err_len)) < 0)
        goto fail;
    if (log)
        log(ud, "lexical index rebuilt: its word list was '%s', now '%s'",
            was, sn__words_stamp());
    return 0;
fail:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}
