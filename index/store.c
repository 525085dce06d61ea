/*
 * store.c -- sn_store_*: documents, chunks and their vectors in SQLite, with
 * one faiss index per collection as the search accelerator.
 *
 * Invariants:
 *   - SQLite is the truth. Every write is one BEGIN IMMEDIATE transaction
 *     (WAL, synchronous=FULL: durable when COMMIT returns). The in-memory
 *     faiss index is touched only after COMMIT succeeds, so a failed write
 *     (full disk, read-only file, I/O error) rolls back and leaves both
 *     exactly as they were.
 *   - A faiss vector id is a chunk rowid. Rowids are AUTOINCREMENT (never
 *     reused), so an index from any point in the past can be caught up by
 *     comparing its id set with the chunks table: ids missing from the
 *     index are added, ids gone from the table are removed (Flat) or
 *     counted as tombstones (HNSW). That is what happens when an index file
 *     is loaded, so a stale file (a crash after writes the file did not see)
 *     costs a catch-up, and a missing or corrupt one a rebuild, never data.
 *   - Search results are always joined back to SQLite: a vector whose chunk
 *     no longer exists is dropped there, so deleted documents never come
 *     back, whatever the index kind or the state of its file.
 *   - If faiss fails after a commit (out of memory), the collection's index
 *     is marked stale and rebuilt from SQLite at its next use; the write,
 *     already durable, still succeeds.
 *   - One mutex serializes every call on a store.
 *
 * Indexes are loaded lazily, at a collection's first search or write, and
 * saved (if changed) by sn_store_save() and sn_store_close() into
 * <db>.idx/<collection id>.faiss (format in store_int.h). A read-only store
 * never writes them.
 *
 * Threads: faiss parallelizes with OpenMP. Searches and per-document adds
 * run with one OpenMP thread (the daemon runs requests concurrently on few
 * cores; a single query gains little from more); rebuilds and catch-ups
 * with $OMP_NUM_THREADS threads, every core when it is unset. The team size
 * is set on the calling thread at each call (omp_set_num_threads is per
 * thread), so the caller's own OpenMP use is not affected beyond that
 * thread. Under ThreadSanitizer run with OMP_NUM_THREADS=1: libgomp is not
 * instrumented, and faiss' parallel HNSW build shows up as races.
 *
 * Generated document ids are 16 lowercase hex characters from getrandom(2)
 * (64 random bits), re-drawn in the unlikely case the collection already
 * has one.
 *
 * Workload: a daemon answering single-query searches over collections of
 * thousands to a few million chunks, with documents added a few at a time
 * or in batches of hundreds.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <utf8proc.h>

#include "embed_int.h"
#include "kernels.h"
#include "store_int.h"

#define MAX_PENDING_LOG 32
#define MAX_FILTER_KEYS 32
#define REBUILD_BATCH 16384
#define NORM_TOLERANCE 1e-3

/* The cached statements. ?2 is always the collection id. */
enum {
    Q_COLL_BY_NAME,
    Q_COLL_INSERT,
    Q_COLL_LIST,
    Q_DOC_FIND,
    Q_DOC_INSERT,
    Q_DOC_UPDATE,
    Q_DOC_DELETE,
    Q_DOC_GET,
    Q_DOC_LIST,
    Q_CHUNK_IDS_OF_DOC,
    Q_CHUNK_DELETE_OF_DOC,
    Q_CHUNK_INSERT,
    Q_CHUNK_COUNT,
    Q_CHUNK_IDS,
    Q_CHUNK_VECS,
    Q_CHUNK_VEC,
    Q_HIT,
    Q_CHUNKS_OF_DOC,
    Q_DOC_HIT,
    Q_HIT_DOC,
    Q_DOC_TEXT,
    Q_CHUNK_SEQ,
    Q_CHUNK_DOC,
    N_QUERIES
};

/* Column list of a hit; the filter, if any, is appended to HIT_WHERE. */
#define HIT_SELECT                                                           \
    "SELECT d.ext_id, substr(d.text, c.span_start + 1, "                     \
    "c.span_end - c.span_start), c.ordinal, c.span_start, c.span_end, "      \
    "d.meta FROM chunks c JOIN documents d ON d.id = c.document "
#define HIT_WHERE "WHERE c.id = ?1 AND c.collection = ?2"
/* A hit's document id alone (sn_store_query's candidates): the same join
 * and conditions as HIT_SELECT, none of its text. */
#define HIT_DOC_SELECT                                                       \
    "SELECT c.document FROM chunks c JOIN documents d ON d.id = c.document "
#define SCAN_SELECT                                                          \
    "SELECT c.id, c.vector FROM chunks c JOIN documents d "                  \
    "ON d.id = c.document WHERE c.collection = ?2"


/* qsort, for arrays that may be empty: an empty one's pointer is NULL
 * here, and qsort's may not be (C11 7.22.5). */
static void sort_n(void *v, size_t n, size_t size,
                   int (*cmp)(const void *, const void *))
{
    if (n)
        qsort(v, n, size, cmp);
}
static const char *const SQL[N_QUERIES] = {
    [Q_COLL_BY_NAME] = "SELECT id, model_id, dim, index_kind, created FROM "
                       "collections WHERE name = ?1",
    [Q_COLL_INSERT] = "INSERT INTO collections (name, model_id, dim, "
                      "index_kind, created) VALUES (?1, ?3, ?4, ?5, ?6)",
    [Q_COLL_LIST] = "SELECT c.id, c.name, c.model_id, c.dim, c.index_kind, "
                    "(SELECT count(*) FROM documents d WHERE d.collection = "
                    "c.id), (SELECT count(*) FROM chunks k WHERE k.collection "
                    "= c.id) FROM collections c ORDER BY c.id",
    [Q_DOC_FIND] = "SELECT id FROM documents WHERE collection = ?2 AND "
                   "ext_id = ?1",
    [Q_DOC_INSERT] = "INSERT INTO documents (ext_id, collection, text, meta, "
                     "created, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    [Q_DOC_UPDATE] = "UPDATE documents SET text = ?3, meta = ?4, updated = ?5 "
                     "WHERE id = ?1",
    [Q_DOC_DELETE] = "DELETE FROM documents WHERE id = ?1",
    [Q_DOC_GET] = "SELECT d.ext_id, d.text, d.meta, d.created, d.updated, "
                  "(SELECT count(*) FROM chunks c WHERE c.document = d.id) "
                  "FROM documents d WHERE d.collection = ?2 AND d.ext_id = ?1",
    [Q_DOC_LIST] = "SELECT ext_id FROM documents WHERE collection = ?2 "
                   "ORDER BY id LIMIT ?3 OFFSET ?1",
    [Q_CHUNK_IDS_OF_DOC] = "SELECT id FROM chunks WHERE document = ?1",
    [Q_CHUNK_DELETE_OF_DOC] = "DELETE FROM chunks WHERE document = ?1",
    [Q_CHUNK_INSERT] = "INSERT INTO chunks (document, collection, ordinal, "
                       "span_start, span_end, vector) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [Q_CHUNK_COUNT] = "SELECT count(*) FROM chunks WHERE collection = ?2",
    [Q_CHUNK_IDS] = "SELECT id FROM chunks WHERE collection = ?2 ORDER BY id",
    [Q_CHUNK_VECS] = "SELECT id, vector FROM chunks WHERE collection = ?2 "
                     "ORDER BY id",
    [Q_CHUNK_VEC] = "SELECT vector FROM chunks WHERE id = ?1 AND "
                    "collection = ?2",
    [Q_HIT] = HIT_SELECT HIT_WHERE,
    [Q_CHUNKS_OF_DOC] = "SELECT id, ordinal, vector FROM chunks WHERE "
                        "document = ?1 AND collection = ?2 ORDER BY ordinal",
    [Q_DOC_HIT] = "SELECT ext_id, '', -1, 0, 0, meta FROM documents "
                  "WHERE id = ?1 AND collection = ?2",
    /* unfiltered: the chunk's row alone. The join's only other work is
     * to find the document, which a chunk always has (foreign keys are
     * on: no chunk outlives its document), so it is one B-tree descent
     * per candidate saved; a filter's twin keeps it (sql_hit_doc) */
    [Q_HIT_DOC] = "SELECT document FROM chunks WHERE id = ?1 AND "
                  "collection = ?2",
    [Q_DOC_TEXT] = "SELECT text FROM documents WHERE id = ?1 AND "
                   "collection = ?2",
    [Q_CHUNK_SEQ] = "SELECT seq FROM sqlite_sequence WHERE name = 'chunks'",
    [Q_CHUNK_DOC] = "SELECT d.ext_id, c.ordinal FROM chunks c JOIN documents "
                    "d ON d.id = c.document WHERE c.id = ?1",
};

typedef struct {
    int64_t id;
    char *name, *model_id;
    int dim;
    int64_t created;
    uint64_t tag;         /* of name, model, dim, created: index files */
    sn_index_kind_t kind; /* as created; AUTO stays AUTO */
    sn__ann_t *ann;       /* NULL until first needed */
    int stale;            /* ann out of step with SQLite: rebuild it */
    int building;         /* a background build runs (builder) */
    pthread_t builder;
    int has_builder;      /* builder to be joined */
    struct sn_store *st;
    /* Searches run faiss with the store unlocked, holding this for
     * reading (taken under the store's lock); whatever changes or
     * replaces ann takes it for writing, also under the store's lock. */
    pthread_rwlock_t ann_rw;
    sn__lex_stats_t lex; /* BM25's statistics, kept until a change */
} coll_t;

struct sn_store {
    sqlite3 *db;
    pthread_mutex_t lock;
    int readonly;
    char *idx_dir; /* "<db>.idx"; NULL for an in-memory database */
    uint8_t db_id[16]; /* store_info.db_id: names the database in index
                        * files */
    coll_t **colls;
    int n_colls, cap_colls;
    sqlite3_stmt *q[N_QUERIES];
    sn_store_log_cb log_cb;
    void *log_ud;
    char *pending[MAX_PENDING_LOG]; /* lines logged before a callback */
    sn_store_level_t pending_level[MAX_PENDING_LOG];
    int n_pending, n_dropped;
    int background; /* index builds on their own thread (set_background) */
    int graph;      /* SN__ANN_* of an HNSW index (sn_store_set_hnsw) */
    int closing;    /* builders stop at their next batch */
    char *syn_dir;  /* WordNet folder for synonyms (set_synonyms), or NULL */
    sn_wordnet_syn_t *syn; /* read from it at the first query text */
    int syn_tried;
};

/* ---- small helpers --------------------------------------------------------- */

int sn__sqlite_code(sqlite3 *db, int rc)
{
    int sys = db ? sqlite3_system_errno(db) : 0;

    switch (rc & 0xff) {
    case SQLITE_OK: case SQLITE_ROW: case SQLITE_DONE: return 0;
    case SQLITE_FULL: return -ENOSPC;
    case SQLITE_READONLY: return -EROFS;
    case SQLITE_PERM: case SQLITE_AUTH: return -EACCES;
    case SQLITE_CANTOPEN: return sys ? -sys : -ENOENT;
    case SQLITE_IOERR:
        if (rc == SQLITE_IOERR_NOMEM)
            return -ENOMEM;
        return sys ? -sys : -EIO;
    case SQLITE_CORRUPT: case SQLITE_NOTADB: return SN_ECORRUPT;
    case SQLITE_BUSY: case SQLITE_LOCKED: return -EBUSY;
    case SQLITE_NOMEM: return -ENOMEM;
    case SQLITE_CONSTRAINT: case SQLITE_MISMATCH: case SQLITE_RANGE:
        return SN_EARG;
    case SQLITE_TOOBIG: return SN_ETOOBIG;
    default: return -EIO;
    }
}

/* A failed SQLite call: map rc and copy the connection's message now, before
 * anything else (a ROLLBACK) overwrites it. */
static int db_fail(sn_store_t *st, int rc, char *err, size_t err_len,
                   const char *what)
{
    int code = sn__sqlite_code(st->db, rc);
    if (code == 0)
        code = -EIO;
    sn__err(err, err_len, code, "%s: %s", what, sqlite3_errmsg(st->db));
    return code;
}

/* Lines for a person (sn_store_set_log): store_log for what went wrong
 * or was repaired, store_note for the store's normal course (a migration,
 * a background build starting and ending, Flat switched to HNSW). */
static void store_vlog(sn_store_t *st, sn_store_level_t level,
                       const char *fmt, va_list ap)
{
    char line[1024];

    vsnprintf(line, sizeof line, fmt, ap);
    if (st->log_cb) {
        st->log_cb(st->log_ud, level, line);
        return;
    }
    if (st->n_pending < MAX_PENDING_LOG &&
        (st->pending[st->n_pending] = strdup(line)))
        st->pending_level[st->n_pending++] = level;
    else
        st->n_dropped++;
}

static void store_log(void *ud, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void store_note(void *ud, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void store_log(void *ud, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    store_vlog(ud, SN_STORE_WARN, fmt, ap);
    va_end(ap);
}

static void store_note(void *ud, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    store_vlog(ud, SN_STORE_INFO, fmt, ap);
    va_end(ap);
}

void sn_store_set_log(sn_store_t *st, sn_store_log_cb cb, void *ud)
{
    if (!st)
        return;
    pthread_mutex_lock(&st->lock);
    st->log_cb = cb;
    st->log_ud = ud;
    for (int i = 0; i < st->n_pending; i++) {
        if (cb)
            cb(ud, st->pending_level[i], st->pending[i]);
        free(st->pending[i]);
    }
    if (cb && st->n_dropped) {
        char line[96];
        snprintf(line, sizeof line, "%d earlier log lines dropped",
                 st->n_dropped);
        cb(ud, SN_STORE_WARN, line);
    }
    st->n_pending = 0;
    st->n_dropped = 0;
    pthread_mutex_unlock(&st->lock);
}

sqlite3 *sn__store_db(sn_store_t *st) { return st ? st->db : NULL; }

/* A cached statement, reset and unbound, with the collection in ?2 when
 * the statement has one. */
static int query(sn_store_t *st, int which, int64_t coll, sqlite3_stmt **out,
                 char *err, size_t err_len)
{
    sqlite3_stmt *s = st->q[which];
    int rc;

    if (!s) {
        rc = sqlite3_prepare_v3(st->db, SQL[which], -1,
                                SQLITE_PREPARE_PERSISTENT, &st->q[which],
                                NULL);
        if (rc != SQLITE_OK)
            return db_fail(st, rc, err, err_len, "cannot prepare a query");
        s = st->q[which];
    } else {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
    if (sqlite3_bind_parameter_count(s) >= 2 &&
        (rc = sqlite3_bind_int64(s, 2, coll)) != SQLITE_OK)
        return db_fail(st, rc, err, err_len, "cannot bind");
    *out = s;
    return 0;
}

static int exec(sn_store_t *st, const char *sql, char *err, size_t err_len)
{
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return db_fail(st, rc, err, err_len, sql);
    return 0;
}

/* One read transaction around a search's many small reads (called with
 * the store locked): each statement outside a transaction would take and
 * drop SQLite's locks itself -- fcntl() on the database and its -shm file
 * and an fstat(), about a tenth of a 1M search's time in the daemon when
 * it read a hundred candidates one statement at a time. Returns whether it
 * began one (never inside a write's transaction); end it with read_end
 * before the store is unlocked. */
static int read_begin(sn_store_t *st)
{
    return sqlite3_get_autocommit(st->db) &&
           sqlite3_exec(st->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
}

static void read_end(sn_store_t *st, int began)
{
    if (began && !sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
}

static void rollback(sn_store_t *st)
{
    if (!sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

static char *dup_col(sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    int len = sqlite3_column_bytes(s, col);
    char *out = malloc((size_t)len + 1);
    if (out) {
        if (len)
            memcpy(out, t, (size_t)len);
        out[len] = '\0';
    }
    return out;
}

static const char *kind_name(sn_index_kind_t k)
{
    return k == SN_INDEX_FLAT ? "flat" : k == SN_INDEX_HNSW ? "hnsw" : "auto";
}

static sn_index_kind_t kind_parse(const char *s)
{
    return s && !strcmp(s, "flat")   ? SN_INDEX_FLAT
           : s && !strcmp(s, "hnsw") ? SN_INDEX_HNSW
                                     : SN_INDEX_AUTO;
}

/* Most vectors an AUTO collection keeps in Flat (see store_int.h). */
static int64_t flat_max(int dim)
{
    int64_t n = (int64_t)SN__AUTO_FLAT_MAX_384 * 384 / dim;
    return n > 0 ? n : 1;
}

/* Should a collection of n_live vectors be HNSW? `now`: what it is (1 HNSW,
 * 0 Flat, -1 nothing yet); an AUTO HNSW goes back to Flat only below half
 * the threshold, so a collection hovering at it does not flip-flop. */
static int want_hnsw(const coll_t *c, int64_t n_live, int now)
{
    if (c->kind != SN_INDEX_AUTO)
        return c->kind == SN_INDEX_HNSW;
    if (now == 1)
        return n_live >= flat_max(c->dim) / 2;
    return n_live > flat_max(c->dim);
}

/* The SN__ANN_* kind c's index should be at n_live vectors. */
static int want_kind(const sn_store_t *st, const coll_t *c, int64_t n_live)
{
    return want_hnsw(c, n_live, c->ann ? c->ann->hnsw : -1) ? st->graph
                                                           : SN__ANN_FLAT;
}

/* The code-point length of valid UTF-8 without NUL, or a negative code. */
static int64_t utf8_len(const char *s, size_t len)
{
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    int64_t n = 0;
    size_t i = 0;

    while (i < len) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i),
                                              &cp);
        if (k <= 0)
            return SN_EUTF8;
        if (cp == 0)
            return SN_EARG;
        i += (size_t)k;
        n++;
    }
    return n;
}

/* A name or id: 1..max bytes of UTF-8 without control characters. */
static int check_name(const char *what, const char *s, size_t max, char *err,
                      size_t err_len)
{
    size_t len = s ? strlen(s) : 0;
    if (!len || len > max)
        return sn__err(err, err_len, SN_EARG, "%s must be 1 to %zu bytes",
                       what, max);
    if (utf8_len(s, len) < 0)
        return sn__err(err, err_len, SN_EUTF8, "%s '%s' is not valid utf-8",
                       what, s);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return sn__err(err, err_len, SN_EARG, "%s has control "
                           "characters", what);
    return 0;
}

/* Finite and of unit length (within NORM_TOLERANCE); with q, *dot gets
 * the dot product with q in the same pass (a double sum over the
 * dimensions in order). The norm's sum and the dot product are two
 * independent chains, each summed in the same order as apart (the same
 * values), so a candidate's check and cosine cost about one chain's
 * latency instead of two. */
static inline int check_vec_dot(const float *v, int dim, const float *q,
                                double *norm, double *dot)
{
    double s = 0, d = 0;
    *norm = NAN;
    for (int i = 0; i < dim; i++) {
        if (!isfinite(v[i]))
            return -1;
        s += (double)v[i] * v[i];
        if (q)
            d += (double)q[i] * v[i];
    }
    *norm = sqrt(s);
    if (dot)
        *dot = d;
    return fabs(*norm - 1.0) <= NORM_TOLERANCE ? 0 : -1;
}

static int check_vec(const float *v, int dim, double *norm)
{
    return check_vec_dot(v, dim, NULL, norm, NULL);
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

static int has_i64(const int64_t *sorted, int64_t n, int64_t v)
{
    return n > 0 && bsearch(&v, sorted, (size_t)n, sizeof v, cmp_i64);
}

/* A growable int64 array, for chunk ids. */
typedef struct {
    int64_t *v;
    int64_t n, cap;
} ids_t;

static int ids_push(ids_t *a, int64_t x)
{
    if (a->n == a->cap) {
        int64_t cap = a->cap ? a->cap * 2 : 64;
        int64_t *v = realloc(a->v, (size_t)cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

/* ---- collections ------------------------------------------------------------ */

static void coll_free(coll_t *c)
{
    if (!c)
        return;
    sn__ann_free(c->ann);
    sn__lex_stats_free(&c->lex);
    pthread_rwlock_destroy(&c->ann_rw);
    free(c->name);
    free(c->model_id);
    free(c);
}

/* A collection's identity in its index file: FNV-1a over its name, model,
 * dimension and creation time. A collection dropped and made again under
 * the same row id (or in a recreated database) gets another tag, almost
 * surely; the database id covers the rest. */
static uint64_t coll_tag(const coll_t *c)
{
    char tail[64];
    uint64_t h = SN__FNV64_BASIS;
    const char *parts[3] = {c->name, c->model_id, tail};

    snprintf(tail, sizeof tail, "%d/%lld", c->dim, (long long)c->created);
    for (int i = 0; i < 3; i++) /* each with its NUL */
        h = sn__fnv1a64(h, parts[i], strlen(parts[i]) + 1);
    return h;
}

static coll_t *coll_cached(sn_store_t *st, const char *name)
{
    for (int i = 0; i < st->n_colls; i++)
        if (!strcmp(st->colls[i]->name, name))
            return st->colls[i];
    return NULL;
}

/* The collection called `name`, from the cache or the database; *out is
 * NULL (and 0 returned) when there is none. */
static int coll_find(sn_store_t *st, const char *name, coll_t **out,
                     char *err, size_t err_len)
{
    sqlite3_stmt *s;
    coll_t *c;
    int rc;

    *out = coll_cached(st, name);
    if (*out)
        return 0;
    if ((rc = query(st, Q_COLL_BY_NAME, 0, &s, err, err_len)) < 0)
        return rc;
    if ((rc = sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC)) != SQLITE_OK)
        return db_fail(st, rc, err, err_len, "cannot bind");
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return 0;
    }
    if (rc != SQLITE_ROW)
        return db_fail(st, rc, err, err_len, "cannot read collections");
    if (st->n_colls == st->cap_colls) {
        int cap = st->cap_colls ? st->cap_colls * 2 : 8;
        coll_t **v = realloc(st->colls, (size_t)cap * sizeof *v);
        if (!v)
            goto oom;
        st->colls = v;
        st->cap_colls = cap;
    }
    c = calloc(1, sizeof *c);
    if (!c)
        goto oom;
    if (pthread_rwlock_init(&c->ann_rw, NULL)) {
        free(c);
        goto oom;
    }
    c->id = sqlite3_column_int64(s, 0);
    c->model_id = dup_col(s, 1);
    c->dim = sqlite3_column_int(s, 2);
    c->kind = kind_parse((const char *)sqlite3_column_text(s, 3));
    c->created = sqlite3_column_int64(s, 4);
    c->name = strdup(name);
    sqlite3_reset(s);
    if (!c->model_id || !c->name) {
        coll_free(c);
        goto oom;
    }
    if (c->dim <= 0 || c->dim > SN_STORE_MAX_DIM) {
        rc = sn__err(err, err_len, SN_ECORRUPT, "collection '%s' has "
                     "dimension %d", name, c->dim);
        coll_free(c);
        return rc;
    }
    c->tag = coll_tag(c);
    st->colls[st->n_colls++] = c;
    *out = c;
    return 0;
oom:
    sqlite3_reset(s);
    return sn__err(err, err_len, -ENOMEM, "out of memory");
}

/* coll_find, but a missing collection is SN_ENOTFOUND, and when model_id
 * is given it must be the collection's. */
static int coll_get(sn_store_t *st, const char *name, const char *model_id,
                    coll_t **out, char *err, size_t err_len)
{
    int rc;

    if ((rc = check_name("collection name", name, SN_STORE_MAX_NAME, err,
                         err_len)) < 0)
        return rc;
    if ((rc = coll_find(st, name, out, err, err_len)) < 0)
        return rc;
    if (!*out)
        return sn__err(err, err_len, SN_ENOTFOUND, "no collection '%s'",
                       name);
    if (model_id && strcmp(model_id, (*out)->model_id) != 0)
        return sn__err(err, err_len, SN_EMODEL, "collection '%s' was built "
                       "with model '%s', not '%s'", name, (*out)->model_id,
                       model_id);
    return 0;
}

static int count_chunks(sn_store_t *st, const coll_t *c, int64_t *n,
                        char *err, size_t err_len)
{
    sqlite3_stmt *s;
    int rc;

    if ((rc = query(st, Q_CHUNK_COUNT, c->id, &s, err, err_len)) < 0)
        return rc;
    if ((rc = sqlite3_step(s)) != SQLITE_ROW)
        return db_fail(st, rc, err, err_len, "cannot count chunks");
    *n = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return 0;
}

/* ---- keeping the index in step with SQLite ------------------------------------ */

static int index_path(const sn_store_t *st, const coll_t *c, char *buf,
                      size_t len)
{
    int n = snprintf(buf, len, "%s/%lld.faiss", st->idx_dir,
                     (long long)c->id);
    return n < 0 || (size_t)n >= len ? SN_ETOOBIG : 0;
}

/* A chunk's vector from the current row of s (column col), checked as it
 * was when stored: dim floats, finite, of unit length. Returns 0 (*out
 * set), or 1 when it is damaged (why[] says how). */
static int row_vec(const coll_t *c, sqlite3_stmt *s, int col,
                   const float **out, char *why, size_t why_len)
{
    int bytes = sqlite3_column_bytes(s, col);
    const void *blob = sqlite3_column_blob(s, col);
    double norm;

    *out = NULL;
    if (bytes != c->dim * (int)sizeof(float) || !blob) {
        snprintf(why, why_len, "%d bytes, expected %d", bytes,
                 c->dim * (int)sizeof(float));
        return 1;
    }
    if (check_vec(blob, c->dim, &norm) < 0) {
        if (isnan(norm))
            snprintf(why, why_len, "not finite");
        else
            snprintf(why, why_len, "norm %g, expected 1", norm);
        return 1;
    }
    *out = blob;
    return 0;
}

/* row_vec's checks and the cosine of the row's vector with q, in one
 * pass (check_vec_dot). 0, or 1 for a damaged vector (never a hit). q is
 * never NULL here (nonnull: the inlined loop then drops its q test). */
static int row_dot(const coll_t *c, sqlite3_stmt *s, int col, const float *q,
                   double *dot) __attribute__((nonnull(4)));
static int row_dot(const coll_t *c, sqlite3_stmt *s, int col, const float *q,
                   double *dot)
{
    int bytes = sqlite3_column_bytes(s, col);
    const float *v = sqlite3_column_blob(s, col);
    double norm;

    if (bytes != c->dim * (int)sizeof(float) || !v)
        return 1;
    return check_vec_dot(v, c->dim, q, &norm, dot) < 0;
}

/* Log a damaged vector met while building c's index (the first few of a
 * build; `n` counts them). */
static void log_bad(sn_store_t *st, const coll_t *c, int64_t id,
                    const char *why, int64_t n)
{
    char doc[128] = "?";
    int ordinal = -1;
    sqlite3_stmt *s;

    if (n > 10)
        return;
    if (n == 10) {
        store_log(st, "collection '%s': more damaged vectors; `sense check` "
                  "lists them all", c->name);
        return;
    }
    if (query(st, Q_CHUNK_DOC, c->id, &s, NULL, 0) == 0) {
        sqlite3_bind_int64(s, 1, id);
        if (sqlite3_step(s) == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(s, 0);
            snprintf(doc, sizeof doc, "%s", t ? t : "?");
            ordinal = sqlite3_column_int(s, 1);
        }
        sqlite3_reset(s);
    }
    store_log(st, "collection '%s': document '%s' chunk %d (#%lld) has a "
              "damaged vector (%s); left out of the index (`sense check "
              "--repair` embeds it again)", c->name, doc, ordinal,
              (long long)id, why);
}

/* Build c's index from scratch out of SQLite (every core), replacing any. */
static int rebuild(sn_store_t *st, coll_t *c, char *err, size_t err_len)
{
    sn__ann_t *ann = NULL;
    sqlite3_stmt *s;
    float *buf = NULL;
    int64_t *ids = NULL, n = 0, n_live, n_bad = 0;
    char why[96];
    int rc;

    if ((rc = count_chunks(st, c, &n_live, err, err_len)) < 0)
        return rc;
    rc = sn__ann_new(c->dim, want_kind(st, c, n_live), &ann, err, err_len);
    if (rc < 0)
        return rc;
    sn__ann_expect(ann, n_live);
    buf = malloc((size_t)REBUILD_BATCH * c->dim * sizeof *buf);
    ids = malloc((size_t)REBUILD_BATCH * sizeof *ids);
    if (!buf || !ids) {
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = query(st, Q_CHUNK_VECS, c->id, &s, err, err_len)) < 0)
        goto fail;
    sn__ann_threads(sn__ann_build_threads());
    for (;;) {
        int step = sqlite3_step(s);
        if (step == SQLITE_ROW) {
            const float *v;
            ids[n] = sqlite3_column_int64(s, 0);
            if (row_vec(c, s, 1, &v, why, sizeof why)) {
                log_bad(st, c, ids[n], why, n_bad++);
                continue;
            }
            memcpy(buf + n * c->dim, v, (size_t)c->dim * sizeof *buf);
            if (++n < REBUILD_BATCH)
                continue;
        } else if (step != SQLITE_DONE) {
            rc = db_fail(st, step, err, err_len, "cannot read chunks");
            break;
        }
        if ((rc = sn__ann_add(ann, n, buf, ids, err, err_len)) < 0)
            break;
        n = 0;
        if (step == SQLITE_DONE)
            break;
    }
    sn__ann_threads(1);
    sqlite3_reset(s);
    if (rc < 0)
        goto fail;
    ann->dirty = 1;
    pthread_rwlock_wrlock(&c->ann_rw);
    sn__ann_free(c->ann);
    c->ann = ann;
    pthread_rwlock_unlock(&c->ann_rw);
    c->stale = 0;
    free(buf);
    free(ids);
    return 0;
fail:
    sn__ann_free(ann);
    free(buf);
    free(ids);
    return rc;
}

/* Do the vectors the file holds under the highest ids it shares with the
 * database match the database's? Chunk ids are never reused within one
 * database, so they do -- unless the database was restored from an older
 * copy and has handed the same ids out again, to other chunks: those are
 * then the highest shared ids. A mismatch is SN_ECORRUPT with
 * *index_failed set (rebuild). `have` (the file's ids) and extra (those
 * not in the database) are sorted. */
static int same_vectors(sn_store_t *st, const coll_t *c, const sn__ann_t *ann,
                        const int64_t *have, int64_t n_have,
                        const ids_t *extra, int *index_failed, char *err,
                        size_t err_len)
{
    enum { N_CHECK = 16 };
    int64_t ids[N_CHECK], n = 0, e = extra->n;
    float *mine = NULL;
    int found[N_CHECK], rc = 0;
    sqlite3_stmt *s;

    for (int64_t i = n_have - 1; i >= 0 && n < N_CHECK; i--) {
        while (e > 0 && extra->v[e - 1] > have[i])
            e--;
        if (e > 0 && extra->v[e - 1] == have[i])
            continue; /* gone from the database */
        ids[n++] = have[i];
    }
    if (!n)
        return 0;
    /* ascending, for sn__ann_same */
    for (int64_t i = 0; i < n / 2; i++) {
        int64_t t = ids[i];
        ids[i] = ids[n - 1 - i];
        ids[n - 1 - i] = t;
    }
    if (!(mine = malloc((size_t)n * c->dim * sizeof *mine)))
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    /* the database's vectors (a damaged one is left out of the index
     * below, and out of the comparison here) */
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *v;
        char why[96];
        if ((rc = query(st, Q_CHUNK_VEC, c->id, &s, err, err_len)) < 0)
            goto done;
        sqlite3_bind_int64(s, 1, ids[i]);
        if ((rc = sqlite3_step(s)) != SQLITE_ROW) {
            rc = db_fail(st, rc, err, err_len, "cannot read a chunk");
            goto done;
        }
        rc = 0;
        if (!row_vec(c, s, 0, &v, why, sizeof why)) {
            memcpy(mine + m * c->dim, v, (size_t)c->dim * sizeof *v);
            ids[m++] = ids[i];
        }
        sqlite3_reset(s);
    }
    if ((rc = sn__ann_same(ann, m, ids, mine, found, err, err_len)) < 0) {
        *index_failed = 1;
        goto done;
    }
    for (int64_t i = 0; i < m; i++)
        if (!found[i]) {
            *index_failed = 1;
            rc = sn__err(err, err_len, SN_ECORRUPT, "the file holds another "
                         "vector under chunk #%lld than the database (was "
                         "the database restored from an older copy?)",
                         (long long)ids[i]);
            goto done;
        }
done:
    free(mine);
    return rc;
}

/* Compare the ids in `ann` (just loaded) with the collection's chunks and
 * fix the difference: add what the file missed, drop what was deleted.
 * *index_failed tells a faiss failure (rebuild) from a SQLite one (report). */
static int catch_up(sn_store_t *st, coll_t *c, sn__ann_t *ann,
                    int *index_failed, char *err, size_t err_len)
{
    int64_t *have = NULL, n_have = 0, i = 0, n_buf = 0, n_gone, n_bad = 0;
    int64_t n_good = 0;
    char why[96];
    ids_t extra = {0}, add = {0};
    float *buf = NULL;
    int64_t max_rowid;
    sqlite3_stmt *s = NULL;
    int rc;

    *index_failed = 0;
    max_rowid = ann->max_rowid;
    if ((rc = sn__ann_ids(ann, &have, &n_have, err, err_len)) < 0) {
        *index_failed = 1;
        return rc;
    }
    if ((rc = query(st, Q_CHUNK_IDS, c->id, &s, err, err_len)) < 0)
        goto fail;
    /* Merge the two sorted id lists. */
    for (;;) {
        int step = sqlite3_step(s);
        if (step != SQLITE_ROW && step != SQLITE_DONE) {
            rc = db_fail(st, step, err, err_len, "cannot read chunks");
            goto fail;
        }
        int64_t id = step == SQLITE_ROW ? sqlite3_column_int64(s, 0)
                                        : INT64_MAX;
        while (i < n_have && have[i] < id)
            if (ids_push(&extra, have[i++]) < 0)
                goto oom;
        if (step == SQLITE_DONE)
            break;
        if (i < n_have && have[i] == id)
            i++;
        else if (ids_push(&add, id) < 0)
            goto oom;
    }
    sqlite3_reset(s);
    if ((rc = same_vectors(st, c, ann, have, n_have, &extra, index_failed,
                           err, err_len)) < 0)
        goto fail;
    /* An HNSW file keeps its tombstones: extra counts them all, and those
     * the file already knew about are not news. */
    n_gone = extra.n - (ann->hnsw ? ann->n_dead : 0);
    if (ann->hnsw) {
        sn__ann_tombstones(ann, extra.n, extra.v);
    } else if ((rc = sn__ann_remove(ann, extra.n, extra.v, err,
                                    err_len)) < 0) {
        *index_failed = 1;
        goto fail;
    }
    if (add.n) {
        int64_t cap = add.n < REBUILD_BATCH ? add.n : REBUILD_BATCH;
        if (!(buf = malloc((size_t)cap * c->dim * sizeof *buf)))
            goto oom;
    }
    sn__ann_threads(sn__ann_build_threads());
    /* add.v is compacted in place: the ids of good vectors, in order */
    for (int64_t j = 0; j < add.n; j++) {
        const float *v;
        int bad;
        if ((rc = query(st, Q_CHUNK_VEC, c->id, &s, err, err_len)) < 0)
            break;
        sqlite3_bind_int64(s, 1, add.v[j]);
        if ((rc = sqlite3_step(s)) != SQLITE_ROW) {
            rc = db_fail(st, rc, err, err_len, "cannot read a chunk");
            break;
        }
        rc = 0;
        bad = row_vec(c, s, 0, &v, why, sizeof why);
        if (!bad) {
            memcpy(buf + n_buf * c->dim, v, (size_t)c->dim * sizeof *buf);
            add.v[n_good++] = add.v[j];
            n_buf++;
        }
        sqlite3_reset(s);
        if (bad)
            log_bad(st, c, add.v[j], why, n_bad++);
        if (n_buf && (n_buf == REBUILD_BATCH || j + 1 == add.n)) {
            rc = sn__ann_add(ann, n_buf, buf, add.v + n_good - n_buf, err,
                             err_len);
            n_buf = 0;
            if (rc < 0) {
                *index_failed = 1;
                break;
            }
        }
    }
    sn__ann_threads(1);
    if (rc < 0)
        goto fail;
    if (n_good || n_gone)
        store_log(st, "collection '%s': index file was behind the database "
                  "(it reflected chunks up to #%lld): added %lld vectors, "
                  "dropped %lld deleted ones", c->name,
                  (long long)max_rowid, (long long)n_good,
                  (long long)n_gone);
    rc = 0;
    goto done;
oom:
    rc = sn__err(err, err_len, -ENOMEM, "out of memory");
fail:
    sqlite3_reset(s);
done:
    free(have);
    free(extra.v);
    free(add.v);
    free(buf);
    return rc;
}

/* ---- background builds -------------------------------------------------------
 *
 * With sn_store_set_background(st, 1) (the daemon), a rebuild -- no index
 * file, an unusable one, an AUTO collection crossing to HNSW, HNSW
 * tombstones, an earlier failure -- runs on its own thread instead of
 * inside the call that needed it: the vectors are read from SQLite in
 * batches under the store's lock, and faiss adds them with the lock
 * released, so searches and writes go on. Meanwhile a search uses the
 * index there was (kept current by writes), or, when there is none, an
 * exact scan of SQLite. When the new index is built it is caught up with
 * what changed during the build (catch_up: ids added, ids deleted) and
 * swapped in. Start and end are logged with the time taken. */

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *builder_main(void *arg)
{
    coll_t *c = arg;
    sn_store_t *st = c->st;
    sqlite3_stmt *s = NULL;
    sn__ann_t *ann = NULL;
    float *buf = NULL;
    int64_t *ids = NULL, last = 0, n_live = 0, total = 0, n_bad = 0;
    double t0 = mono_now();
    char err[512] = "";
    int rc, index_failed = 0;

    pthread_mutex_lock(&st->lock);
    if ((rc = count_chunks(st, c, &n_live, err, sizeof err)) < 0)
        goto done;
    rc = sn__ann_new(c->dim, want_kind(st, c, n_live), &ann, err,
                     sizeof err);
    if (rc < 0)
        goto done;
    sn__ann_expect(ann, n_live);
    buf = malloc((size_t)REBUILD_BATCH * c->dim * sizeof *buf);
    ids = malloc((size_t)REBUILD_BATCH * sizeof *ids);
    if (!buf || !ids) {
        rc = sn__err(err, sizeof err, -ENOMEM, "out of memory");
        goto done;
    }
    rc = sqlite3_prepare_v2(st->db, "SELECT id, vector FROM chunks WHERE "
                            "collection = ?2 AND id > ?1 ORDER BY id LIMIT "
                            "?3", -1, &s, NULL);
    if (rc != SQLITE_OK) {
        rc = db_fail(st, rc, err, sizeof err, "cannot prepare a build");
        goto done;
    }
    for (;;) {
        int64_t n = 0, n_read = 0;
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, last);
        sqlite3_bind_int64(s, 2, c->id);
        sqlite3_bind_int64(s, 3, REBUILD_BATCH);
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            const float *v;
            char why[96];
            last = sqlite3_column_int64(s, 0);
            n_read++;
            if (row_vec(c, s, 1, &v, why, sizeof why)) {
                log_bad(st, c, last, why, n_bad++); /* left out */
                continue;
            }
            ids[n] = last;
            memcpy(buf + n * c->dim, v, (size_t)c->dim * sizeof *buf);
            n++;
        }
        sqlite3_reset(s);
        if (rc != SQLITE_DONE) {
            rc = db_fail(st, rc, err, sizeof err, "cannot read chunks");
            goto done;
        }
        if (!n_read)
            break;
        if (st->closing) {
            rc = sn__err(err, sizeof err, -ECANCELED, "store closing");
            goto done;
        }
        pthread_mutex_unlock(&st->lock);
        sn__ann_threads(sn__ann_build_threads());
        rc = n ? sn__ann_add(ann, n, buf, ids, err, sizeof err) : 0;
        sn__ann_threads(1);
        pthread_mutex_lock(&st->lock);
        if (rc < 0)
            goto done;
        total += n;
        if (n_read < REBUILD_BATCH)
            break;
    }
    /* what changed while faiss worked: deleted ids out, new ids in */
    if ((rc = catch_up(st, c, ann, &index_failed, err, sizeof err)) < 0)
        goto done;
    ann->dirty = 1;
    pthread_rwlock_wrlock(&c->ann_rw);
    sn__ann_free(c->ann);
    c->ann = ann;
    pthread_rwlock_unlock(&c->ann_rw);
    ann = NULL;
    c->stale = 0;
    store_note(st, "collection '%s': %s index ready in %.1f s (%lld vectors)",
              c->name, sn__ann_kind_name(c->ann->kind), mono_now() - t0,
              (long long)sn__ann_ntotal(c->ann));
done:
    if (rc < 0 && rc != -ECANCELED) {
        c->stale = 1;
        store_log(st, "collection '%s': background index build failed (%s); "
                  "searches scan exactly, it is retried at the next one",
                  c->name, err);
    }
    sqlite3_finalize(s);
    sn__ann_free(ann);
    free(buf);
    free(ids);
    c->building = 0;
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

/* Start c's background build (called with the store locked). */
static int start_build(sn_store_t *st, coll_t *c, char *err, size_t err_len)
{
    if (c->building)
        return 0;
    if (c->has_builder) { /* the last one has finished: reap it */
        pthread_join(c->builder, NULL);
        c->has_builder = 0;
    }
    int64_t n_live = 0;
    int rc = count_chunks(st, c, &n_live, err, err_len);
    if (rc < 0)
        return rc;
    int kind = want_kind(st, c, n_live);
    if (n_live < (kind != SN__ANN_FLAT ? SN__BACKGROUND_MIN_HNSW
                                       : SN__BACKGROUND_MIN_FLAT)) {
        /* quicker than a thread's round trip: now */
        if ((rc = rebuild(st, c, err, err_len)) < 0)
            c->stale = 1;
        return rc;
    }
    store_note(st, "collection '%s': building its %s index in the background "
              "(%lld vectors); searches use %s until it is ready", c->name,
              sn__ann_kind_name(kind),
              (long long)n_live,
              c->ann && !c->stale ? "the current one" : "an exact scan");
    c->st = st;
    c->building = 1;
    if (pthread_create(&c->builder, NULL, builder_main, c) != 0) {
        c->building = 0;
        store_log(st, "collection '%s': cannot start a background build; "
                  "building it now", c->name);
        rc = rebuild(st, c, err, err_len);
        if (rc < 0)
            c->stale = 1;
        return rc;
    }
    c->has_builder = 1;
    return 0;
}

int sn_store_set_hnsw(sn_store_t *st, sn_hnsw_kind_t kind)
{
    static const int map[] = {[SN_HNSW_F32] = SN__ANN_HNSW,
                              [SN_HNSW_SQ8] = SN__ANN_HNSW_SQ8,
                              [SN_HNSW_FAISS] = SN__ANN_HNSW_FAISS,
                              [SN_HNSW_IVF] = SN__ANN_IVF};
    if (!st || (unsigned)kind > SN_HNSW_IVF)
        return SN_EARG;
    pthread_mutex_lock(&st->lock);
    st->graph = map[kind];
    pthread_mutex_unlock(&st->lock);
    return 0;
}

const char *sn_hnsw_kind_name(sn_hnsw_kind_t kind)
{
    return kind == SN_HNSW_F32   ? "f32"
           : kind == SN_HNSW_SQ8 ? "sq8"
           : kind == SN_HNSW_FAISS ? "faiss"
           : kind == SN_HNSW_IVF   ? "ivf"
                                   : "?";
}

int sn_hnsw_kind_parse(const char *name)
{
    for (int k = SN_HNSW_F32; k <= SN_HNSW_IVF; k++)
        if (name && !strcmp(name, sn_hnsw_kind_name((sn_hnsw_kind_t)k)))
            return k;
    return -1;
}

int sn_store_set_synonyms(sn_store_t *st, const char *dir)
{
    char *d = NULL;

    if (!st)
        return SN_EARG;
    if (dir && !(d = strdup(dir)))
        return -ENOMEM;
    pthread_mutex_lock(&st->lock);
    free(st->syn_dir);
    sn_wordnet_syn_free(st->syn);
    st->syn_dir = d;
    st->syn = NULL;
    st->syn_tried = 0;
    pthread_mutex_unlock(&st->lock);
    return 0;
}

/* The synonyms, read at the first call after set_synonyms; NULL when there
 * are none (no folder, or it could not be read: logged once). */
static const sn_wordnet_syn_t *synonyms(sn_store_t *st)
{
    char e[512];
    struct timespec t0, t1;

    if (st->syn_tried || !st->syn_dir)
        return st->syn;
    st->syn_tried = 1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (sn_wordnet_syn_load(st->syn_dir, &st->syn, e, sizeof e) < 0) {
        store_log(st, "no synonyms for lexical search: %s", e);
        return NULL;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    store_note(st, "synonyms for lexical search: %d words from '%s' in %.0f "
              "ms", sn_wordnet_syn_size(st->syn), st->syn_dir,
              (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
                  (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    return st->syn;
}

void sn_store_set_background(sn_store_t *st, int on)
{
    if (!st)
        return;
    pthread_mutex_lock(&st->lock);
    st->background = on != 0;
    pthread_mutex_unlock(&st->lock);
}

/* An AUTO collection that crossed the Flat threshold changes kind; an HNSW
 * index with too many tombstones is rebuilt. A failed rebuild leaves the
 * index stale (rebuilt at its next use). */
static int maybe_rebuild(sn_store_t *st, coll_t *c, char *err,
                         size_t err_len)
{
    sn__ann_t *a = c->ann;
    int64_t n_live;
    int rc;

    if (!a || c->stale || c->building)
        return 0;
    n_live = sn__ann_ntotal(a) - a->n_dead;
    if (want_hnsw(c, n_live, a->hnsw) != a->hnsw)
        store_note(st, "collection '%s': %lld vectors, rebuilding its index "
                  "as %s", c->name, (long long)n_live,
                  sn__ann_kind_name(want_kind(st, c, n_live)));
    else if (a->hnsw && a->kind != st->graph)
        store_note(st, "collection '%s': rebuilding its %s index as %s (the "
                  "store's HNSW kind)", c->name, sn__ann_kind_name(a->kind),
                  sn__ann_kind_name(st->graph));
    else if (a->hnsw && a->n_dead > 0 &&
             a->n_dead > SN__TOMBSTONE_REBUILD * sn__ann_ntotal(a))
        store_note(st, "collection '%s': %lld of %lld vectors deleted, "
                  "rebuilding its index", c->name, (long long)a->n_dead,
                  (long long)sn__ann_ntotal(a));
    else if (sn__ann_outgrown(a))
        store_note(st, "collection '%s': %lld vectors, grown past what its "
                  "index lists were trained for, rebuilding it", c->name,
                  (long long)n_live);
    else
        return 0;
    if (st->background)
        return start_build(st, c, err, err_len);
    if ((rc = rebuild(st, c, err, err_len)) < 0)
        c->stale = 1;
    return rc;
}

static void coll_ident(const sn_store_t *st, const coll_t *c,
                       sn__ann_ident_t *id)
{
    memcpy(id->db_id, st->db_id, sizeof id->db_id);
    id->collection = c->id;
    id->tag = c->tag;
}

/* The highest chunk rowid the database ever handed out (AUTOINCREMENT's
 * sqlite_sequence), 0 when none. */
static int chunk_seq(sn_store_t *st, int64_t *seq, char *err, size_t err_len)
{
    sqlite3_stmt *s;
    int rc;

    *seq = 0;
    if ((rc = query(st, Q_CHUNK_SEQ, 0, &s, err, err_len)) < 0)
        return rc;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *seq = sqlite3_column_int64(s, 0);
    else if (rc != SQLITE_DONE)
        return db_fail(st, rc, err, err_len, "cannot read sqlite_sequence");
    sqlite3_reset(s);
    return 0;
}

/* Make c->ann usable: load its file and catch it up, or rebuild it. */
static int ensure_ann(sn_store_t *st, coll_t *c, char *err, size_t err_len)
{
    char path[4096], msg[512];
    sn__ann_t *ann = NULL;
    int64_t n_live;
    int rc;

    if (c->ann && !c->stale)
        return 0;
    if (c->building)
        return 0; /* searches scan exactly meanwhile */
    if (c->stale) {
        store_log(st, "collection '%s': rebuilding its index from the "
                  "database after an earlier failure", c->name);
        return st->background ? start_build(st, c, err, err_len)
                              : rebuild(st, c, err, err_len);
    }
    if (st->idx_dir) {
        if ((rc = index_path(st, c, path, sizeof path)) < 0)
            return sn__err(err, err_len, rc, "'%s': path too long",
                           st->idx_dir);
        sn__ann_ident_t ident;
        int64_t seq;
        coll_ident(st, c, &ident);
        rc = sn__ann_load(path, &ident, c->dim, &ann, msg, sizeof msg);
        if (rc == 0 && (rc = chunk_seq(st, &seq, err, err_len)) < 0) {
            sn__ann_free(ann);
            return rc;
        }
        if (rc == 0 && ann->max_rowid > seq) {
            snprintf(msg, sizeof msg, "'%.300s' has chunks up to #%lld, the "
                     "database never went past #%lld (restored from an "
                     "older copy?)", path, (long long)ann->max_rowid,
                     (long long)seq);
            sn__ann_free(ann);
            ann = NULL;
            rc = SN_ECORRUPT;
        }
        if (rc == -ENOENT) {
            if ((rc = count_chunks(st, c, &n_live, err, err_len)) < 0)
                return rc;
            if (n_live)
                /* a collection never saved yet (made by this process) or
                 * an index folder removed: rebuilt, nothing lost */
                store_note(st, "collection '%s': no index file '%s'; building "
                           "it from the database (%lld vectors)", c->name,
                           path, (long long)n_live);
        } else if (rc < 0) {
            store_log(st, "collection '%s': index file unusable: %s; "
                      "rebuilding it from the database", c->name, msg);
        }
    }
    if (ann) {
        int index_failed;
        rc = catch_up(st, c, ann, &index_failed, err, err_len);
        if (rc < 0 && !index_failed) {
            sn__ann_free(ann); /* SQLite is failing: report that */
            return rc;
        }
        if (rc < 0) {
            store_log(st, "collection '%s': cannot catch the index file up "
                      "(%s); rebuilding it from the database", c->name, err);
            sn__ann_free(ann);
            ann = NULL;
        }
    }
    if (ann) {
        pthread_rwlock_wrlock(&c->ann_rw);
        c->ann = ann;
        pthread_rwlock_unlock(&c->ann_rw);
        return maybe_rebuild(st, c, err, err_len);
    }
    return st->background ? start_build(st, c, err, err_len)
                          : rebuild(st, c, err, err_len);
}

/* Apply a committed change to the in-memory index (if loaded): `added`
 * chunk ids (ascending) with their vectors, `removed` ids (sorted here).
 * An id in both (a document replaced twice in one call) never reached
 * faiss and is skipped on both sides. Failure marks the index stale. */
static void apply_change(sn_store_t *st, coll_t *c, const int64_t *added,
                         const float *const *vecs, int64_t n_added,
                         ids_t *removed)
{
    char err[512];
    int64_t n = 0, n_rm = 0;
    int64_t *ids = NULL;
    float *buf = NULL;
    int rc = 0;

    if (!c->ann || c->stale)
        return;
    if (removed->n)
        sort_n(removed->v, (size_t)removed->n, sizeof *removed->v, cmp_i64);
    if (n_added) {
        ids = malloc((size_t)n_added * sizeof *ids);
        buf = malloc((size_t)n_added * c->dim * sizeof *buf);
        if (!ids || !buf) {
            rc = sn__err(err, sizeof err, -ENOMEM, "out of memory");
            goto fail;
        }
        for (int64_t i = 0; i < n_added; i++) {
            if (has_i64(removed->v, removed->n, added[i]))
                continue;
            ids[n] = added[i];
            memcpy(buf + n * c->dim, vecs[i], (size_t)c->dim * sizeof *buf);
            n++;
        }
    }
    for (int64_t i = 0; i < removed->n; i++)
        if (!n_added || !has_i64(added, n_added, removed->v[i]))
            removed->v[n_rm++] = removed->v[i];
    pthread_rwlock_wrlock(&c->ann_rw);
    if ((rc = sn__ann_remove(c->ann, n_rm, removed->v, err, sizeof err)) >= 0)
        rc = sn__ann_add(c->ann, n, buf, ids, err, sizeof err);
    pthread_rwlock_unlock(&c->ann_rw);
    if (rc < 0)
        goto fail;
    free(ids);
    free(buf);
    if (maybe_rebuild(st, c, err, sizeof err) < 0)
        store_log(st, "collection '%s': rebuild failed (%s); it will be "
                  "retried at the next use", c->name, err);
    return;
fail:
    c->stale = 1;
    store_log(st, "collection '%s': index update failed after commit (%s); "
              "it will be rebuilt from the database", c->name, err);
    free(ids);
    free(buf);
}

/* ---- open, close, save -------------------------------------------------------- */

static int pragma_text(sn_store_t *st, const char *sql, char *out, size_t len,
                       char *err, size_t err_len)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        snprintf(out, len, "%s",
                 (const char *)sqlite3_column_text(s, 0)
                     ? (const char *)sqlite3_column_text(s, 0)
                     : "");
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        out[0] = '\0';
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK)
        rc = db_fail(st, rc, err, err_len, sql);
    sqlite3_finalize(s);
    return rc;
}


/* Strip group and other bits from an existing file of ours. */
static void make_private(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode) &&
        sb.st_uid == geteuid() && (sb.st_mode & 077))
        chmod(path, sb.st_mode & 0700);
}

/* The database file, created 0600 before SQLite opens it (SQLite would
 * make it 0644 less the umask), and the files beside it made private.
 * SQLite creates -wal, -shm and -journal with the database file's mode.
 * A file we cannot open for writing is left to SQLite (read-only). */
void sn__db_private(const char *db_path)
{
    static const char *const sfx[] = {"-wal", "-shm", "-journal"};
    char side[4200];
    int fd;

    /* not ":memory:", not a URI */
    if (!*db_path || !strcmp(db_path, ":memory:") ||
        !strncmp(db_path, "file:", 5))
        return;
    fd = open(db_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    make_private(db_path);
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++)
        if (snprintf(side, sizeof side, "%s%s", db_path, sfx[i]) <
            (int)sizeof side)
            make_private(side);
}

/* store_info.db_id, 32 hex digits, into st->db_id. */
static int read_db_id(sn_store_t *st, char *err, size_t err_len)
{
    char hex[64];
    int rc;

    if ((rc = pragma_text(st, "SELECT value FROM store_info WHERE key = "
                          "'db_id'", hex, sizeof hex, err, err_len)) < 0)
        return rc;
    if (strlen(hex) != 32)
        return sn__err(err, err_len, SN_ECORRUPT, "store_info.db_id is "
                       "'%s', not 32 hex digits", hex);
    for (int i = 0; i < 16; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return sn__err(err, err_len, SN_ECORRUPT, "store_info.db_id is "
                           "'%s', not 32 hex digits", hex);
        st->db_id[i] = (uint8_t)v;
    }
    return 0;
}

int sn_store_open(const char *db_path, sn_store_t **out, char *err,
                  size_t err_len)
{
    sn_store_t *st = NULL;
    char mode[32];
    const char *fname;
    int rc;

    if (!out)
        return sn__err(err, err_len, SN_EARG, "sn_store_open: no out");
    *out = NULL;
    if (!db_path || !*db_path)
        return sn__err(err, err_len, SN_EARG, "no database path");
    st = calloc(1, sizeof *st);
    if (!st)
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    pthread_mutex_init(&st->lock, NULL);
    st->graph = SN__ANN_HNSW;
    sn__db_private(db_path);
    rc = sqlite3_open_v2(db_path, &st->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                             SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX,
                         NULL);
    if (rc != SQLITE_OK) {
        if (!st->db) {
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            goto fail;
        }
        int code = sn__sqlite_code(st->db, rc);
        rc = sn__err(err, err_len, code, "cannot open '%s': %s", db_path,
                     sqlite3_errmsg(st->db));
        goto fail;
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, 5000);
    st->readonly = sqlite3_db_readonly(st->db, "main") == 1;
    /* The first statement reads the header: a file that is not a database
     * fails here. */
    if ((rc = pragma_text(st, "PRAGMA user_version", mode, sizeof mode, err,
                          err_len)) < 0)
        goto fail_msg;
    if (!st->readonly) {
        if ((rc = sn__db_page_size(st->db, err, err_len)) < 0)
            goto fail_msg;
        if ((rc = pragma_text(st, "PRAGMA journal_mode = WAL", mode,
                              sizeof mode, err, err_len)) < 0)
            goto fail_msg;
        if (strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0)
            store_log(st, "database '%s': journal mode is '%s', not wal",
                      db_path, mode);
    }
    if ((rc = exec(st, "PRAGMA synchronous = FULL", err, err_len)) < 0)
        goto fail_msg;
    /* Reads through a memory map: a search reads its hundred candidates
     * from random pages of a database far larger than SQLite's page
     * cache, and each miss was a pread() copying a 16 KiB page (a quarter
     * of a vector search's time in the daemon at 200k, perf); mapped, a
     * page is read in place. Writes still go through write() (and the
     * WAL), so durability is unchanged. SQLite caps the size at its
     * SQLITE_MAX_MMAP_SIZE (2 GiB in Debian's build); pages beyond are
     * read as before. A failure only leaves reads as they were. */
    sqlite3_exec(st->db, "PRAGMA mmap_size = " SN__MMAP_SIZE, NULL, NULL,
                 NULL);
    /* the tokenizer first: migrating to version 4 indexes with it */
    if ((rc = sn__lex_register(st->db, err, err_len)) < 0 ||
        (rc = sn__schema_migrate(st->db, st->readonly, store_note, st, err,
                                 err_len)) < 0 ||
        (rc = sn__schema_words(st->db, st->readonly, store_note, st, err,
                               err_len)) < 0)
        goto fail_msg;
    if ((rc = exec(st, "PRAGMA foreign_keys = ON", err, err_len)) < 0 ||
        (rc = read_db_id(st, err, err_len)) < 0)
        goto fail_msg;
    fname = sqlite3_db_filename(st->db, "main");
    if (fname && *fname) {
        size_t len = strlen(fname) + sizeof ".idx";
        if (!(st->idx_dir = malloc(len))) {
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            goto fail;
        }
        snprintf(st->idx_dir, len, "%s.idx", fname);
        struct stat sb;
        /* an index folder from before files were kept private */
        if (!st->readonly && lstat(st->idx_dir, &sb) == 0 &&
            S_ISDIR(sb.st_mode) && sb.st_uid == geteuid() &&
            (sb.st_mode & 077))
            chmod(st->idx_dir, 0700);
    }
    *out = st;
    return 0;
fail_msg:
    /* Prefix the failing step's message with the database. */
    {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", err ? err : "");
        sn__err(err, err_len, rc, "database '%s': %s", db_path, msg);
    }
fail:
    if (st) {
        st->log_cb = NULL;
        sn_store_close(st); /* no collection loaded: saves nothing */
    }
    return rc;
}

/* The index folder, 0700 whatever the umask or the mode it had. */
static int make_idx_dir(sn_store_t *st, char *err, size_t err_len)
{
    struct stat sb;

    if (mkdir(st->idx_dir, 0700) != 0 && errno != EEXIST)
        return sn__err(err, err_len, -errno, "cannot create '%s': %s",
                       st->idx_dir, strerror(errno));
    if (lstat(st->idx_dir, &sb) != 0)
        return sn__err(err, err_len, -errno, "'%s': %s", st->idx_dir,
                       strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return sn__err(err, err_len, -ENOTDIR, "'%s': not a folder",
                       st->idx_dir);
    if ((sb.st_mode & 07777) != 0700 && chmod(st->idx_dir, 0700) != 0)
        return sn__err(err, err_len, -errno, "cannot chmod '%s' to 0700: %s",
                       st->idx_dir, strerror(errno));
    return 0;
}

static int save_coll(sn_store_t *st, coll_t *c, char *err, size_t err_len)
{
    sn__ann_ident_t ident;
    char path[4096];
    int rc;

    if (!c->ann || !c->ann->dirty || c->stale || !st->idx_dir ||
        st->readonly)
        return 0;
    if ((rc = make_idx_dir(st, err, err_len)) < 0)
        return rc;
    if ((rc = index_path(st, c, path, sizeof path)) < 0)
        return sn__err(err, err_len, rc, "'%s': path too long", st->idx_dir);
    coll_ident(st, c, &ident);
    if ((rc = sn__ann_save(c->ann, path, &ident, err, err_len)) < 0)
        return rc;
    c->ann->dirty = 0;
    return 0;
}

static int save_all(sn_store_t *st, char *err, size_t err_len)
{
    int first = 0;
    for (int i = 0; i < st->n_colls; i++) {
        char msg[512];
        int rc = save_coll(st, st->colls[i], msg, sizeof msg);
        if (rc < 0 && !first) {
            first = rc;
            sn__err(err, err_len, rc, "collection '%s': %s",
                    st->colls[i]->name, msg);
        }
    }
    return first;
}

int sn_store_save(sn_store_t *st, char *err, size_t err_len)
{
    int rc;
    if (!st)
        return sn__err(err, err_len, SN_EARG, "no store");
    pthread_mutex_lock(&st->lock);
    rc = save_all(st, err, err_len);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

void sn_store_close(sn_store_t *st)
{
    char err[512];

    if (!st)
        return;
    pthread_mutex_lock(&st->lock);
    st->closing = 1;
    pthread_mutex_unlock(&st->lock);
    for (int i = 0; i < st->n_colls; i++)
        if (st->colls[i]->has_builder)
            pthread_join(st->colls[i]->builder, NULL);
    if (st->db && save_all(st, err, sizeof err) < 0)
        store_log(st, "index not saved (it will be rebuilt or caught up at "
                  "the next open): %s", err);
    for (int i = 0; i < N_QUERIES; i++)
        sqlite3_finalize(st->q[i]);
    sqlite3_close(st->db);
    for (int i = 0; i < st->n_colls; i++)
        coll_free(st->colls[i]);
    free(st->colls);
    for (int i = 0; i < st->n_pending; i++)
        free(st->pending[i]);
    free(st->idx_dir);
    free(st->syn_dir);
    sn_wordnet_syn_free(st->syn);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

/* ---- collections --------------------------------------------------------------- */

int sn_store_collection(sn_store_t *st, const char *name,
                        const char *model_id, int dim, sn_index_kind_t kind,
                        char *err, size_t err_len)
{
    sqlite3_stmt *s;
    coll_t *c;
    int rc;

    if (!st)
        return sn__err(err, err_len, SN_EARG, "no store");
    pthread_mutex_lock(&st->lock);
    if ((rc = check_name("collection name", name, SN_STORE_MAX_NAME, err,
                         err_len)) < 0 ||
        (rc = check_name("model id", model_id, SN_STORE_MAX_NAME, err,
                         err_len)) < 0)
        goto done;
    if (dim <= 0 || dim > SN_STORE_MAX_DIM) {
        rc = sn__err(err, err_len, SN_EARG, "collection '%s': dimension %d "
                     "out of range (1 to %d)", name, dim, SN_STORE_MAX_DIM);
        goto done;
    }
    if (kind != SN_INDEX_AUTO && kind != SN_INDEX_FLAT &&
        kind != SN_INDEX_HNSW) {
        rc = sn__err(err, err_len, SN_EARG, "collection '%s': unknown index "
                     "kind %d", name, (int)kind);
        goto done;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        if ((rc = coll_find(st, name, &c, err, err_len)) < 0)
            goto done;
        if (c) {
            /* Existing: the model must match; the kind asked for now is
             * ignored (the collection keeps the one it was created with). */
            if (strcmp(c->model_id, model_id) != 0)
                rc = sn__err(err, err_len, SN_EMODEL, "collection '%s' was "
                             "built with model '%s', not '%s'", name,
                             c->model_id, model_id);
            else if (c->dim != dim)
                rc = sn__err(err, err_len, SN_EMODEL, "collection '%s' has "
                             "dimension %d, not %d", name, c->dim, dim);
            goto done;
        }
        if ((rc = query(st, Q_COLL_INSERT, 0, &s, err, err_len)) < 0)
            goto done;
        if ((rc = sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC)) ||
            (rc = sqlite3_bind_text(s, 3, model_id, -1, SQLITE_STATIC)) ||
            (rc = sqlite3_bind_int(s, 4, dim)) ||
            (rc = sqlite3_bind_text(s, 5, kind_name(kind), -1,
                                    SQLITE_STATIC)) ||
            (rc = sqlite3_bind_int64(s, 6, (int64_t)time(NULL)))) {
            rc = db_fail(st, rc, err, err_len, "cannot bind");
            goto done;
        }
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE) {
            sqlite3_reset(s);
            continue; /* now coll_find reads it back */
        }
        /* Another process may have created it meanwhile: look again. */
        if ((rc & 0xff) == SQLITE_CONSTRAINT && attempt == 0) {
            sqlite3_reset(s);
            continue;
        }
        rc = db_fail(st, rc, err, err_len, "cannot create the collection");
        sqlite3_reset(s);
        goto done;
    }
    rc = sn__err(err, err_len, -EIO, "collection '%s' vanished", name);
done:
    pthread_mutex_unlock(&st->lock);
    return rc < 0 ? rc : 0;
}

int sn_store_collections(sn_store_t *st, sn_collection_info_t **out,
                         int *n_out, char *err, size_t err_len)
{
    sn_collection_info_t *v = NULL;
    int n = 0, cap = 0, rc = 0;
    sqlite3_stmt *s;

    if (!st || !out || !n_out)
        return sn__err(err, err_len, SN_EARG, "sn_store_collections: bad "
                       "arguments");
    *out = NULL;
    *n_out = 0;
    pthread_mutex_lock(&st->lock);
    if ((rc = query(st, Q_COLL_LIST, 0, &s, err, err_len)) < 0)
        goto done;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        sn_collection_info_t *ci;
        coll_t tmp = {0}, *c;
        if (n == cap) {
            int ncap = cap ? cap * 2 : 8;
            sn_collection_info_t *nv = realloc(v, (size_t)ncap * sizeof *nv);
            if (!nv)
                goto oom;
            v = nv;
            cap = ncap;
        }
        ci = &v[n];
        memset(ci, 0, sizeof *ci);
        n++;
        ci->name = dup_col(s, 1);
        ci->model_id = dup_col(s, 2);
        ci->dim = sqlite3_column_int(s, 3);
        ci->n_docs = sqlite3_column_int64(s, 5);
        ci->n_chunks = sqlite3_column_int64(s, 6);
        if (!ci->name || !ci->model_id)
            goto oom;
        c = coll_cached(st, ci->name);
        if (c && c->ann && !c->stale) {
            ci->kind = c->ann->hnsw ? SN_INDEX_HNSW : SN_INDEX_FLAT;
        } else {
            tmp.kind = kind_parse((const char *)sqlite3_column_text(s, 4));
            tmp.dim = ci->dim > 0 ? ci->dim : 1;
            ci->kind = want_hnsw(&tmp, ci->n_chunks, -1) ? SN_INDEX_HNSW
                                                         : SN_INDEX_FLAT;
        }
    }
    if (rc != SQLITE_DONE) {
        rc = db_fail(st, rc, err, err_len, "cannot list collections");
        sqlite3_reset(s);
        goto fail;
    }
    sqlite3_reset(s);
    *out = v;
    *n_out = n;
    rc = 0;
    goto done;
oom:
    sqlite3_reset(s);
    rc = sn__err(err, err_len, -ENOMEM, "out of memory");
fail:
    sn_collection_info_free(v, n);
done:
    pthread_mutex_unlock(&st->lock);
    return rc;
}

void sn_collection_info_free(sn_collection_info_t *c, int n)
{
    if (!c)
        return;
    for (int i = 0; i < n; i++) {
        free(c[i].name);
        free(c[i].model_id);
    }
    free(c);
}

/* ---- writes ------------------------------------------------------------------------ */

static int random_id(char out[17])
{
    uint8_t b[8];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t r = getrandom(b + got, sizeof b - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)r;
    }
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    return 0;
}

/* Everything about one input document that can be checked before the
 * transaction: nothing fails inside it but SQLite. */
static int check_doc(const coll_t *c, const sn_doc_in_t *d, int i, char *err,
                     size_t err_len)
{
    char label[64];
    int64_t n_cp;
    int rc;

    snprintf(label, sizeof label, "document %d", i);
    if (d->id && (rc = check_name("document id", d->id, SN_STORE_MAX_ID, err,
                                  err_len)) < 0)
        return rc;
    if (d->id)
        snprintf(label, sizeof label, "document '%.40s'", d->id);
    if (d->text_len > SN_STORE_MAX_TEXT)
        return sn__err(err, err_len, SN_ETOOBIG, "%s: text of %zu bytes "
                       "(limit %u)", label, d->text_len, SN_STORE_MAX_TEXT);
    if (!d->text && d->text_len)
        return sn__err(err, err_len, SN_EARG, "%s: no text", label);
    n_cp = d->text_len ? utf8_len(d->text, d->text_len) : 0;
    if (n_cp == SN_EUTF8)
        return sn__err(err, err_len, SN_EUTF8, "%s: text is not valid utf-8",
                       label);
    if (n_cp < 0)
        return sn__err(err, err_len, SN_EARG, "%s: text contains a NUL "
                       "byte", label);
    if (d->meta_json) {
        size_t len = strlen(d->meta_json);
        json_error_t jerr;
        json_t *j;
        if (len > SN_STORE_MAX_META)
            return sn__err(err, err_len, SN_ETOOBIG, "%s: meta of %zu bytes "
                           "(limit %u)", label, len, SN_STORE_MAX_META);
        j = json_loadb(d->meta_json, len, 0, &jerr);
        if (!j)
            return sn__err(err, err_len, SN_EJSON, "%s: meta: %s", label,
                           jerr.text);
        rc = json_is_object(j);
        json_decref(j);
        if (!rc)
            return sn__err(err, err_len, SN_EJSON, "%s: meta must be a json "
                           "object", label);
    }
    if (d->n_chunks < 0 || d->n_chunks > SN_STORE_MAX_CHUNKS)
        return sn__err(err, err_len, SN_EARG, "%s: %d chunks (limit %d)",
                       label, d->n_chunks, SN_STORE_MAX_CHUNKS);
    if (d->n_chunks && !d->chunks)
        return sn__err(err, err_len, SN_EARG, "%s: no chunks", label);
    for (int j = 0; j < d->n_chunks; j++) {
        const sn_chunk_in_t *ch = &d->chunks[j];
        double norm;
        if (ch->start < 0 || ch->start > ch->end || ch->end > n_cp)
            return sn__err(err, err_len, SN_EARG, "%s: chunk %d spans "
                           "[%d, %d) outside the text's %lld characters",
                           label, j, ch->start, ch->end, (long long)n_cp);
        if (!ch->vec)
            return sn__err(err, err_len, SN_EARG, "%s: chunk %d has no "
                           "vector", label, j);
        if (check_vec(ch->vec, c->dim, &norm) < 0)
            return sn__err(err, err_len, SN_EARG, "%s: chunk %d: vector is "
                           "not finite and L2-normalized (norm %g)", label,
                           j, norm);
    }
    return 0;
}

/* The chunk ids of document doc_id, appended to out, then the chunks
 * deleted. */
static int drop_chunks(sn_store_t *st, const coll_t *c, int64_t doc_id,
                       ids_t *out, char *err, size_t err_len)
{
    sqlite3_stmt *s;
    int rc;

    if ((rc = query(st, Q_CHUNK_IDS_OF_DOC, c->id, &s, err, err_len)) < 0)
        return rc;
    sqlite3_bind_int64(s, 1, doc_id);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (ids_push(out, sqlite3_column_int64(s, 0)) < 0) {
            sqlite3_reset(s);
            return sn__err(err, err_len, -ENOMEM, "out of memory");
        }
    if (rc != SQLITE_DONE)
        return db_fail(st, rc, err, err_len, "cannot read chunks");
    if ((rc = query(st, Q_CHUNK_DELETE_OF_DOC, c->id, &s, err, err_len)) < 0)
        return rc;
    sqlite3_bind_int64(s, 1, doc_id);
    if ((rc = sqlite3_step(s)) != SQLITE_DONE)
        return db_fail(st, rc, err, err_len, "cannot delete chunks");
    return 0;
}

/* The row id of document ext_id in c, or 0. */
static int find_doc(sn_store_t *st, const coll_t *c, const char *ext_id,
                    int64_t *doc_id, char *err, size_t err_len)
{
    sqlite3_stmt *s;
    int rc;

    *doc_id = 0;
    if ((rc = query(st, Q_DOC_FIND, c->id, &s, err, err_len)) < 0)
        return rc;
    if ((rc = sqlite3_bind_text(s, 1, ext_id, -1, SQLITE_STATIC)))
        return db_fail(st, rc, err, err_len, "cannot bind");
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *doc_id = sqlite3_column_int64(s, 0);
    else if (rc != SQLITE_DONE)
        return db_fail(st, rc, err, err_len, "cannot read documents");
    sqlite3_reset(s);
    return 0;
}

/* Insert or replace one document and its chunks (inside the transaction).
 * The new chunk ids and their vectors are appended to added/vecs. */
static int put_doc(sn_store_t *st, const coll_t *c, const sn_doc_in_t *d,
                   const char *ext_id, int64_t now, int64_t *added,
                   const float **vecs, int64_t *n_added, ids_t *removed,
                   char *err, size_t err_len)
{
    const char *text = d->text ? d->text : "";
    const char *meta = d->meta_json ? d->meta_json : "{}";
    int64_t doc_id;
    sqlite3_stmt *s;
    int rc;

    if ((rc = find_doc(st, c, ext_id, &doc_id, err, err_len)) < 0)
        return rc;
    if (doc_id) {
        if ((rc = drop_chunks(st, c, doc_id, removed, err, err_len)) < 0 ||
            (rc = query(st, Q_DOC_UPDATE, c->id, &s, err, err_len)) < 0)
            return rc;
        rc = sqlite3_bind_int64(s, 1, doc_id);
    } else {
        if ((rc = query(st, Q_DOC_INSERT, c->id, &s, err, err_len)) < 0)
            return rc;
        rc = sqlite3_bind_text(s, 1, ext_id, -1, SQLITE_STATIC);
    }
    if (rc || (rc = sqlite3_bind_text(s, 3, text, (int)d->text_len,
                                      SQLITE_STATIC)) ||
        (rc = sqlite3_bind_text(s, 4, meta, -1, SQLITE_STATIC)) ||
        (rc = sqlite3_bind_int64(s, 5, now)))
        return db_fail(st, rc, err, err_len, "cannot bind");
    if ((rc = sqlite3_step(s)) != SQLITE_DONE)
        return db_fail(st, rc, err, err_len, "cannot write the document");
    if (!doc_id)
        doc_id = sqlite3_last_insert_rowid(st->db);
    for (int j = 0; j < d->n_chunks; j++) {
        const sn_chunk_in_t *ch = &d->chunks[j];
        if ((rc = query(st, Q_CHUNK_INSERT, c->id, &s, err, err_len)) < 0)
            return rc;
        if ((rc = sqlite3_bind_int64(s, 1, doc_id)) ||
            (rc = sqlite3_bind_int(s, 3, j)) ||
            (rc = sqlite3_bind_int(s, 4, ch->start)) ||
            (rc = sqlite3_bind_int(s, 5, ch->end)) ||
            (rc = sqlite3_bind_blob(s, 6, ch->vec,
                                    c->dim * (int)sizeof(float),
                                    SQLITE_STATIC)))
            return db_fail(st, rc, err, err_len, "cannot bind");
        if ((rc = sqlite3_step(s)) != SQLITE_DONE)
            return db_fail(st, rc, err, err_len, "cannot write a chunk");
        added[*n_added] = sqlite3_last_insert_rowid(st->db);
        vecs[*n_added] = ch->vec;
        ++*n_added;
    }
    return 0;
}

/* Drop a collection from the cache (one whose creation rolled back). */
static void coll_forget(sn_store_t *st, coll_t *c)
{
    for (int i = 0; i < st->n_colls; i++)
        if (st->colls[i] == c) {
            st->colls[i] = st->colls[--st->n_colls];
            coll_free(c);
            return;
        }
}

/* Insert collection `name` (inside the caller's transaction) and read it
 * back into the cache. */
static int coll_insert(sn_store_t *st, const char *name, const char *model_id,
                       int dim, sn_index_kind_t kind, coll_t **out,
                       char *err, size_t err_len)
{
    sqlite3_stmt *s;
    int rc;

    if ((rc = query(st, Q_COLL_INSERT, 0, &s, err, err_len)) < 0)
        return rc;
    if ((rc = sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC)) ||
        (rc = sqlite3_bind_text(s, 3, model_id, -1, SQLITE_STATIC)) ||
        (rc = sqlite3_bind_int(s, 4, dim)) ||
        (rc = sqlite3_bind_text(s, 5, kind_name(kind), -1, SQLITE_STATIC)) ||
        (rc = sqlite3_bind_int64(s, 6, (int64_t)time(NULL))))
        return db_fail(st, rc, err, err_len, "cannot bind");
    if ((rc = sqlite3_step(s)) != SQLITE_DONE) {
        rc = db_fail(st, rc, err, err_len, "cannot create the collection");
        sqlite3_reset(s);
        return rc;
    }
    sqlite3_reset(s);
    if ((rc = coll_find(st, name, out, err, err_len)) < 0)
        return rc;
    if (!*out)
        return sn__err(err, err_len, -EIO, "collection '%s' vanished", name);
    return 0;
}

/* sn_store_add and sn_store_add_create (dim > 0: create the collection
 * when it does not exist). */
static int add_docs(sn_store_t *st, const char *collection,
                    const char *model_id, int dim, sn_index_kind_t kind,
                    const sn_doc_in_t *docs, int n, char **ids_out,
                    char *err, size_t err_len)
{
    int64_t *added = NULL, n_added = 0, total = 0, now = (int64_t)time(NULL);
    const float **vecs = NULL;
    char **ids = NULL;
    ids_t removed = {0};
    coll_t *c = NULL, *created = NULL, stand_in = {0};
    int rc;

    if (!st)
        return sn__err(err, err_len, SN_EARG, "no store");
    pthread_mutex_lock(&st->lock);
    sn__ann_threads(1);
    if ((rc = check_name("model id", model_id, SN_STORE_MAX_NAME, err,
                         err_len)) < 0)
        goto done;
    if (dim > 0) {
        if ((rc = check_name("collection name", collection,
                             SN_STORE_MAX_NAME, err, err_len)) < 0 ||
            (rc = coll_find(st, collection, &c, err, err_len)) < 0)
            goto done;
        if (c && (rc = coll_get(st, collection, model_id, &c, err,
                                err_len)) < 0)
            goto done;
        if (c && c->dim != dim) {
            rc = sn__err(err, err_len, SN_EMODEL, "collection '%s' has "
                         "dimension %d, not %d", collection, c->dim, dim);
            goto done;
        }
        if (!c && (dim > SN_STORE_MAX_DIM ||
                   (kind != SN_INDEX_AUTO && kind != SN_INDEX_FLAT &&
                    kind != SN_INDEX_HNSW))) {
            rc = sn__err(err, err_len, SN_EARG, "collection '%s': dimension "
                         "%d or index kind %d out of range", collection, dim,
                         (int)kind);
            goto done;
        }
    } else if ((rc = coll_get(st, collection, model_id, &c, err,
                              err_len)) < 0) {
        goto done;
    }
    if (!c) {
        /* Checked against a stand-in: the real one is made in the
         * transaction. */
        stand_in.dim = dim;
        c = &stand_in;
    }
    if (n < 0 || n > SN_STORE_MAX_BATCH || (n && !docs)) {
        rc = sn__err(err, err_len, SN_EARG, "collection '%s': %d documents "
                     "(limit %d)", collection, n, SN_STORE_MAX_BATCH);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if ((rc = check_doc(c, &docs[i], i, err, err_len)) < 0)
            goto done;
        total += docs[i].n_chunks;
    }
    if (!c->model_id)
        c = NULL; /* the stand-in */
    ids = calloc((size_t)n + 1, sizeof *ids);
    added = malloc((size_t)(total + 1) * sizeof *added);
    vecs = malloc((size_t)(total + 1) * sizeof *vecs);
    if (!ids || !added || !vecs) {
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
        goto done;
    }
    /* A collection whose index is not loaded yet is not loaded for a write:
     * its load catches up from SQLite. */
    if ((rc = exec(st, "BEGIN IMMEDIATE", err, err_len)) < 0)
        goto fail;
    if (!c) {
        /* Another process may have made it since: look again inside. */
        if ((rc = coll_find(st, collection, &c, err, err_len)) < 0)
            goto fail;
        if (c && (strcmp(c->model_id, model_id) != 0 || c->dim != dim)) {
            rc = sn__err(err, err_len, SN_EMODEL, "collection '%s' was "
                         "built with model '%s' (dimension %d)", collection,
                         c->model_id, c->dim);
            goto fail;
        }
        if (!c && (rc = coll_insert(st, collection, model_id, dim, kind,
                                    &created, err, err_len)) < 0)
            goto fail;
        if (!c)
            c = created;
    }
    for (int i = 0; i < n; i++) {
        if (docs[i].id) {
            ids[i] = strdup(docs[i].id);
        } else {
            char gen[17];
            int64_t taken = 1;
            for (int tries = 0; taken && tries < 8; tries++) {
                if ((rc = random_id(gen)) < 0) {
                    sn__err(err, err_len, rc, "getrandom: %s", strerror(-rc));
                    goto fail;
                }
                if ((rc = find_doc(st, c, gen, &taken, err, err_len)) < 0)
                    goto fail;
            }
            if (taken) {
                rc = sn__err(err, err_len, -EEXIST, "cannot draw an unused "
                             "document id");
                goto fail;
            }
            ids[i] = strdup(gen);
        }
        if (!ids[i]) {
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            goto fail;
        }
        if ((rc = put_doc(st, c, &docs[i], ids[i], now, added, vecs, &n_added,
                          &removed, err, err_len)) < 0)
            goto fail;
    }
    if ((rc = exec(st, "COMMIT", err, err_len)) < 0) {
        /* A failed COMMIT may yet have reached the disk (an I/O error
         * after the WAL frames were written): the index must not be
         * trusted to say which; rebuild it from SQLite at its next use. */
        if (c->ann)
            c->stale = 1;
        goto fail;
    }
    created = NULL;
    apply_change(st, c, added, vecs, n_added, &removed);
    if (ids_out)
        for (int i = 0; i < n; i++) {
            ids_out[i] = ids[i];
            ids[i] = NULL;
        }
    rc = 0;
    goto done;
fail:
    rollback(st);
    if (created)
        coll_forget(st, created); /* its row rolled back */
    /* Say which collection, keeping SQLite's own words. */
    {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", err ? err : "");
        sn__err(err, err_len, rc, "cannot add to '%s': %s", collection, msg);
    }
done:
    if (ids)
        for (int i = 0; i < n; i++)
            free(ids[i]);
    free(ids);
    free(added);
    free(vecs);
    free(removed.v);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int sn_store_add(sn_store_t *st, const char *collection, const char *model_id,
                 const sn_doc_in_t *docs, int n, char **ids_out, char *err,
                 size_t err_len)
{
    return add_docs(st, collection, model_id, 0, SN_INDEX_AUTO, docs, n,
                    ids_out, err, err_len);
}

int sn_store_add_create(sn_store_t *st, const char *collection,
                        const char *model_id, int dim, sn_index_kind_t kind,
                        const sn_doc_in_t *docs, int n, char **ids_out,
                        char *err, size_t err_len)
{
    if (dim <= 0)
        return sn__err(err, err_len, SN_EARG, "collection '%s': dimension "
                       "%d out of range", collection ? collection : "",
                       dim);
    return add_docs(st, collection, model_id, dim, kind, docs, n, ids_out,
                    err, err_len);
}

int sn_store_delete(sn_store_t *st, const char *collection,
                    const char *const *ids, int n, int *n_deleted, char *err,
                    size_t err_len)
{
    ids_t removed = {0};
    int n_del = 0, rc;
    sqlite3_stmt *s;
    coll_t *c;

    if (n_deleted)
        *n_deleted = 0;
    if (!st)
        return sn__err(err, err_len, SN_EARG, "no store");
    pthread_mutex_lock(&st->lock);
    sn__ann_threads(1);
    if ((rc = coll_get(st, collection, NULL, &c, err, err_len)) < 0)
        goto done;
    if (n < 0 || n > SN_STORE_MAX_BATCH || (n && !ids)) {
        rc = sn__err(err, err_len, SN_EARG, "collection '%s': %d ids "
                     "(limit %d)", collection, n, SN_STORE_MAX_BATCH);
        goto done;
    }
    for (int i = 0; i < n; i++)
        if ((rc = check_name("document id", ids[i], SN_STORE_MAX_ID, err,
                             err_len)) < 0)
            goto done;
    if ((rc = exec(st, "BEGIN IMMEDIATE", err, err_len)) < 0)
        goto fail;
    for (int i = 0; i < n; i++) {
        int64_t doc_id;
        if ((rc = find_doc(st, c, ids[i], &doc_id, err, err_len)) < 0)
            goto fail;
        if (!doc_id)
            continue;
        if ((rc = drop_chunks(st, c, doc_id, &removed, err, err_len)) < 0 ||
            (rc = query(st, Q_DOC_DELETE, c->id, &s, err, err_len)) < 0)
            goto fail;
        sqlite3_bind_int64(s, 1, doc_id);
        if ((rc = sqlite3_step(s)) != SQLITE_DONE) {
            rc = db_fail(st, rc, err, err_len, "cannot delete the document");
            goto fail;
        }
        n_del++;
    }
    if ((rc = exec(st, "COMMIT", err, err_len)) < 0) {
        if (c->ann)
            c->stale = 1; /* see add_docs */
        goto fail;
    }
    apply_change(st, c, NULL, NULL, 0, &removed);
    if (n_deleted)
        *n_deleted = n_del;
    rc = 0;
    goto done;
fail:
    rollback(st);
    {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", err ? err : "");
        sn__err(err, err_len, rc, "cannot delete from '%s': %s", collection,
                msg);
    }
done:
    free(removed.v);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

/* ---- reads ------------------------------------------------------------------------- */

void sn_doc_free(sn_doc_t *d)
{
    if (!d)
        return;
    free(d->id);
    free(d->text);
    free(d->meta_json);
    memset(d, 0, sizeof *d);
}

int sn_store_get(sn_store_t *st, const char *collection,
                 const char *const *ids, int n, sn_doc_t **out, int *n_out,
                 char *err, size_t err_len)
{
    sn_doc_t *v = NULL;
    int k = 0, rc;
    sqlite3_stmt *s;
    coll_t *c;

    if (!st || !out || !n_out)
        return sn__err(err, err_len, SN_EARG, "sn_store_get: bad arguments");
    *out = NULL;
    *n_out = 0;
    pthread_mutex_lock(&st->lock);
    if ((rc = coll_get(st, collection, NULL, &c, err, err_len)) < 0)
        goto done;
    if (n < 0 || n > SN_STORE_MAX_BATCH || (n && !ids)) {
        rc = sn__err(err, err_len, SN_EARG, "collection '%s': %d ids "
                     "(limit %d)", collection, n, SN_STORE_MAX_BATCH);
        goto done;
    }
    if (n == 0)
        goto done;
    if (!(v = calloc((size_t)n, sizeof *v))) {
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if (!ids[i])
            continue;
        if ((rc = query(st, Q_DOC_GET, c->id, &s, err, err_len)) < 0)
            goto fail;
        if ((rc = sqlite3_bind_text(s, 1, ids[i], -1, SQLITE_STATIC))) {
            rc = db_fail(st, rc, err, err_len, "cannot bind");
            goto fail;
        }
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
            continue;
        if (rc != SQLITE_ROW) {
            rc = db_fail(st, rc, err, err_len, "cannot read documents");
            goto fail;
        }
        sn_doc_t *d = &v[k++];
        d->id = dup_col(s, 0);
        d->text = dup_col(s, 1);
        d->meta_json = dup_col(s, 2);
        d->created = sqlite3_column_int64(s, 3);
        d->updated = sqlite3_column_int64(s, 4);
        d->n_chunks = sqlite3_column_int(s, 5);
        sqlite3_reset(s);
        if (!d->id || !d->text || !d->meta_json) {
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            goto fail;
        }
    }
    rc = 0;
    if (k == 0) {
        free(v);
        v = NULL;
    }
    *out = v;
    *n_out = k;
    goto done;
fail:
    for (int i = 0; i < k; i++)
        sn_doc_free(&v[i]);
    free(v);
done:
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int sn_store_list(sn_store_t *st, const char *collection, int64_t offset,
                  int limit, char ***ids_out, int *n_out, char *err,
                  size_t err_len)
{
    char **v = NULL;
    int k = 0, cap = 0, rc;
    sqlite3_stmt *s;
    coll_t *c;

    if (!st || !ids_out || !n_out)
        return sn__err(err, err_len, SN_EARG, "sn_store_list: bad arguments");
    *ids_out = NULL;
    *n_out = 0;
    pthread_mutex_lock(&st->lock);
    if ((rc = coll_get(st, collection, NULL, &c, err, err_len)) < 0)
        goto done;
    if (offset < 0 || limit < 0) {
        rc = sn__err(err, err_len, SN_EARG, "list: negative offset or limit");
        goto done;
    }
    if ((rc = query(st, Q_DOC_LIST, c->id, &s, err, err_len)) < 0)
        goto done;
    sqlite3_bind_int64(s, 1, offset);
    sqlite3_bind_int(s, 3, limit);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (k == cap) {
            int ncap = cap ? cap * 2 : 64;
            char **nv = realloc(v, (size_t)ncap * sizeof *nv);
            if (!nv)
                goto oom;
            v = nv;
            cap = ncap;
        }
        if (!(v[k] = dup_col(s, 0)))
            goto oom;
        k++;
    }
    if (rc != SQLITE_DONE) {
        rc = db_fail(st, rc, err, err_len, "cannot list documents");
        goto fail;
    }
    sqlite3_reset(s);
    *ids_out = v;
    *n_out = k;
    rc = 0;
    goto done;
oom:
    rc = sn__err(err, err_len, -ENOMEM, "out of memory");
fail:
    sqlite3_reset(s);
    for (int i = 0; i < k; i++)
        free(v[i]);
    free(v);
done:
    pthread_mutex_unlock(&st->lock);
    return rc;
}

/* ---- search -------------------------------------------------------------------------- */

void sn_hits_free(sn_hit_t *h, int n)
{
    if (!h)
        return;
    for (int i = 0; i < n; i++) {
        free(h[i].id);
        free(h[i].text);
        free(h[i].meta_json);
    }
    free(h);
}

/* A parsed filter: for each key, SQL over d.meta with its values bound
 * from ?3 on (the path, then the value). */
typedef struct {
    json_t *root;
    char *sql_hit, *sql_scan; /* NULL without a filter */
    char *sql_hit_doc;        /* sql_hit's HIT_DOC_SELECT twin */
    char *cond;               /* the conditions alone, " AND ..." */
} filter_t;

static void filter_free(filter_t *f)
{
    json_decref(f->root);
    free(f->sql_hit);
    free(f->sql_hit_doc);
    free(f->sql_scan);
    free(f->cond);
}

static int filter_parse(const char *json, filter_t *f, char *err,
                        size_t err_len)
{
    char cond[MAX_FILTER_KEYS * 160] = "";
    size_t used = 0, n_keys = 0;
    json_error_t jerr;
    const char *key;
    json_t *val;

    memset(f, 0, sizeof *f);
    if (!json)
        return 0;
    f->root = json_loads(json, 0, &jerr);
    if (!f->root)
        return sn__err(err, err_len, SN_EJSON, "filter: %s", jerr.text);
    if (!json_is_object(f->root))
        return sn__err(err, err_len, SN_EARG, "filter must be a json object");
    if (json_object_size(f->root) > MAX_FILTER_KEYS)
        return sn__err(err, err_len, SN_EARG, "filter has more than %d keys",
                       MAX_FILTER_KEYS);
    json_object_foreach(f->root, key, val) {
        int p = 3 + 2 * (int)n_keys++;
        const char *c;
        for (c = key; *c; c++)
            if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
                return sn__err(err, err_len, SN_EARG, "filter key '%s': "
                               "quotes, backslashes and control characters "
                               "are not supported", key);
        if (!*key || c - key > 256)
            return sn__err(err, err_len, SN_EARG, "filter key must be 1 to "
                           "256 bytes");
        switch (json_typeof(val)) {
        case JSON_STRING:
            used += (size_t)snprintf(cond + used, sizeof cond - used,
                " AND json_type(d.meta, ?%d) = 'text'"
                " AND json_extract(d.meta, ?%d) = ?%d", p, p, p + 1);
            break;
        case JSON_INTEGER: case JSON_REAL:
            used += (size_t)snprintf(cond + used, sizeof cond - used,
                " AND json_type(d.meta, ?%d) IN ('integer', 'real')"
                " AND json_extract(d.meta, ?%d) = ?%d", p, p, p + 1);
            break;
        case JSON_TRUE: case JSON_FALSE: case JSON_NULL:
            used += (size_t)snprintf(cond + used, sizeof cond - used,
                " AND json_type(d.meta, ?%d) = '%s'", p,
                json_is_true(val) ? "true" : json_is_false(val) ? "false"
                                                                 : "null");
            break;
        default:
            return sn__err(err, err_len, SN_EARG, "filter key '%s': only "
                           "strings, numbers, booleans and null compare",
                           key);
        }
    }
    if (!n_keys)
        return 0;
    if (asprintf(&f->sql_hit, "%s%s%s", HIT_SELECT, HIT_WHERE, cond) < 0) {
        f->sql_hit = NULL;
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    }
    if (asprintf(&f->sql_hit_doc, "%s%s%s", HIT_DOC_SELECT, HIT_WHERE,
                 cond) < 0) {
        f->sql_hit_doc = NULL;
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    }
    if (asprintf(&f->sql_scan, "%s%s", SCAN_SELECT, cond) < 0) {
        f->sql_scan = NULL;
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    }
    if (!(f->cond = strdup(cond)))
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    return 0;
}

static int filter_bind(const filter_t *f, sqlite3_stmt *s)
{
    const char *key;
    json_t *val;
    int p = 3, rc = SQLITE_OK;

    if (!f->sql_hit)
        return SQLITE_OK;
    json_object_foreach(f->root, key, val) {
        char path[300];
        snprintf(path, sizeof path, "$.\"%s\"", key);
        if ((rc = sqlite3_bind_text(s, p, path, -1, SQLITE_TRANSIENT)))
            return rc;
        if (json_is_string(val))
            rc = sqlite3_bind_text(s, p + 1, json_string_value(val),
                                   (int)json_string_length(val),
                                   SQLITE_STATIC);
        else if (json_is_integer(val))
            rc = sqlite3_bind_int64(s, p + 1, json_integer_value(val));
        else if (json_is_real(val))
            rc = sqlite3_bind_double(s, p + 1, json_real_value(val));
        if (rc)
            return rc;
        p += 2;
    }
    return SQLITE_OK;
}

/* The hits of vec_hits: whole (v: id, text, span, meta), or, docs_only,
 * each hit's chunk id, score and document id alone -- what sn_store_query
 * needs of its candidates (it scores and reads back only the results). */
typedef struct {
    sn_hit_t *v;
    int64_t *doc; /* docs_only: the hit's document */
    int n, k, docs_only;
    int lean; /* ids and spans only: no text, no meta */
} hits_t;

static void hits_clear(hits_t *h)
{
    for (int i = 0; i < h->n && !h->docs_only; i++) {
        free(h->v[i].id);
        free(h->v[i].text);
        free(h->v[i].meta_json);
    }
    h->n = 0;
}

/* Look chunk `id` up through `s` (the hit query, filter bound); append it
 * to h when it exists and passes. */
static int take_hit(sn_store_t *st, sqlite3_stmt *s, int64_t id, float score,
                    hits_t *h, char *err, size_t err_len)
{
    sn_hit_t *hit;
    int rc;

    sqlite3_reset(s);
    if ((rc = sqlite3_bind_int64(s, 1, id)))
        return db_fail(st, rc, err, err_len, "cannot bind");
    rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        return 0; /* deleted, or filtered out */
    if (rc != SQLITE_ROW)
        return db_fail(st, rc, err, err_len, "cannot read a hit");
    hit = &h->v[h->n];
    memset(hit, 0, sizeof *hit);
    if (h->docs_only) {
        h->doc[h->n++] = sqlite3_column_int64(s, 0);
        hit->score = hit->vector_score = score;
        hit->lexical_score = NAN;
        sqlite3_reset(s);
        return 0;
    }
    hit->id = dup_col(s, 0);
    if (!h->lean) {
        hit->text = dup_col(s, 1);
        hit->meta_json = dup_col(s, 5);
    }
    hit->chunk = sqlite3_column_int(s, 2);
    hit->start = sqlite3_column_int(s, 3);
    hit->end = sqlite3_column_int(s, 4);
    hit->ref = id;
    hit->score = score;
    hit->vector_score = score;
    hit->lexical_score = NAN;
    h->n++;
    sqlite3_reset(s);
    if (!hit->id || (!h->lean && (!hit->text || !hit->meta_json)))
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    return 0;
}

/* The best k (score, id) pairs of the exact scan: kernels.c's heap. */
typedef sn__cand_t cand_t;

static int cmp_cand_desc(const void *a, const void *b)
{
    float x = ((const cand_t *)a)->score, y = ((const cand_t *)b)->score;
    return (x < y) - (x > y);
}

/* Exact top k over the chunks SQLite says pass the filter. For a filter
 * too selective for over-fetching to find k. */
static int exact_scan(sn_store_t *st, const coll_t *c, const filter_t *f,
                      sqlite3_stmt *hit_q, const float *q, hits_t *h,
                      char *err, size_t err_len)
{
    cand_t *hp = malloc((size_t)h->k * sizeof *hp);
    sqlite3_stmt *s = NULL;
    int64_t n = 0;
    int rc;

    hits_clear(h);
    if (!hp)
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    rc = sqlite3_prepare_v2(st->db, f->sql_scan ? f->sql_scan : SCAN_SELECT,
                            -1, &s, NULL);
    if (rc != SQLITE_OK) {
        rc = db_fail(st, rc, err, err_len, "cannot prepare the scan");
        goto fail;
    }
    if ((rc = sqlite3_bind_int64(s, 2, c->id)) || (rc = filter_bind(f, s))) {
        rc = db_fail(st, rc, err, err_len, "cannot bind");
        goto fail;
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(s, 0);
        double dot;
        if (row_dot(c, s, 1, q, &dot))
            continue; /* damaged: never a hit (logged at index builds) */
        sn__topk_push(hp, &n, h->k, (float)dot, id);
    }
    if (rc != SQLITE_DONE) {
        rc = db_fail(st, rc, err, err_len, "cannot scan chunks");
        goto fail;
    }
    sort_n(hp, (size_t)n, sizeof *hp, cmp_cand_desc);
    for (int64_t i = 0; i < n; i++)
        if ((rc = take_hit(st, hit_q, hp[i].id, hp[i].score, h, err,
                           err_len)) < 0)
            goto fail;
    rc = 0;
fail:
    sqlite3_finalize(s);
    free(hp);
    return rc;
}

/* The statement that joins a hit back to SQLite, bound for c and the
 * filter: the filter's own (prepared once per search) or the cached one,
 * which other threads use while a search runs faiss unlocked, so it is
 * bound again after every such phase. Called with the store locked. */
static int hit_stmt(sn_store_t *st, coll_t *c, const filter_t *f,
                    int docs_only, sqlite3_stmt **own_q,
                    sqlite3_stmt **hit_q, char *err, size_t err_len)
{
    int rc;

    if (f->sql_hit && *own_q) {
        *hit_q = *own_q;
        return 0;
    }
    if (f->sql_hit) {
        rc = sqlite3_prepare_v2(st->db, docs_only ? f->sql_hit_doc
                                                  : f->sql_hit,
                                -1, own_q, NULL);
        if (rc != SQLITE_OK)
            return db_fail(st, rc, err, err_len, "cannot prepare the filter");
        *hit_q = *own_q;
    } else if ((rc = query(st, docs_only ? Q_HIT_DOC : Q_HIT, c->id, hit_q,
                           err, err_len)) < 0) {
        return rc;
    }
    if ((rc = sqlite3_bind_int64(*hit_q, 2, c->id)) ||
        (rc = filter_bind(f, *hit_q)))
        return db_fail(st, rc, err, err_len, "cannot bind");
    return 0;
}

/* Candidates of an SQ8 index (approximate scores) rescored exactly from
 * the vectors in SQLite, best first; a candidate whose chunk is gone or
 * damaged drops to the end as label -1. */
static int rerank(sn_store_t *st, const coll_t *c, const float *q,
                  int64_t n, float *scores, int64_t *labels, char *err,
                  size_t err_len)
{
    cand_t *cd = malloc((size_t)(n ? n : 1) * sizeof *cd);
    sqlite3_stmt *s;
    int64_t m = 0;
    int rc = 0;

    if (!cd)
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        double dot;
        if (labels[i] < 0)
            continue;
        if ((rc = query(st, Q_CHUNK_VEC, c->id, &s, err, err_len)) < 0)
            goto done;
        sqlite3_bind_int64(s, 1, labels[i]);
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW && !row_dot(c, s, 0, q, &dot)) {
            cd[m++] = (cand_t){(float)dot, labels[i]};
        } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            rc = db_fail(st, rc, err, err_len, "cannot read a chunk");
            sqlite3_reset(s);
            goto done;
        }
        sqlite3_reset(s);
    }
    rc = 0;
    sort_n(cd, (size_t)m, sizeof *cd, cmp_cand_desc);
    for (int64_t i = 0; i < n; i++) {
        scores[i] = i < m ? cd[i].score : -INFINITY;
        labels[i] = i < m ? cd[i].id : -1;
    }
done:
    free(cd);
    return rc;
}

/* The top k chunks of c by cosine to query_vec that pass f, into h (which
 * this allocates). ef: a graph's beam (0: the rule, sn__ann_ef). exact: the
 * hits' scores must be exact cosines -- an SQ8 index's candidates are then
 * reranked here (sn_store_query scores its candidates itself). Called with
 * the store locked; the index is searched unlocked. */
static int vec_hits(sn_store_t *st, coll_t *c, const float *query_vec, int k,
                    int ef, int exact, const filter_t *f, hits_t *h,
                    char *err, size_t err_len)
{
    sqlite3_stmt *hit_q = NULL, *own_q = NULL;
    int64_t *labels = NULL, ntotal, n_live, fetch;
    float *scores = NULL;
    int rc, began;

    if ((rc = ensure_ann(st, c, err, err_len)) < 0)
        return rc;
    began = read_begin(st);
    h->k = k;
    h->n = 0;
    if (!(h->v = calloc((size_t)k, sizeof *h->v)) ||
        (h->docs_only && !(h->doc = malloc((size_t)k * sizeof *h->doc))))
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    if (!c->ann || c->stale) {
        /* a background build runs: exact, from SQLite */
        if ((rc = hit_stmt(st, c, f, h->docs_only, &own_q, &hit_q, err,
                             err_len)) < 0)
            goto done;
        rc = exact_scan(st, c, f, hit_q, query_vec, h, err, err_len);
        goto done;
    }
    ntotal = sn__ann_ntotal(c->ann);
    n_live = ntotal - c->ann->n_dead;
    /* Expected share of hits that survive: tombstones and the filter. */
    fetch = f->sql_hit ? (int64_t)k * SN__FILTER_OVERFETCH : k;
    if (c->ann->n_dead && n_live > 0)
        fetch = fetch * ntotal / n_live + 1;
    for (int round = 0; ntotal > 0 && n_live > 0; round++) {
        int64_t kk = fetch < ntotal ? fetch : ntotal, n_ask = kk;
        int re = exact && c->ann->approx;
        if (re && n_ask < (int64_t)k * SN__SQ8_RERANK)
            n_ask = (int64_t)k * SN__SQ8_RERANK < ntotal
                            ? (int64_t)k * SN__SQ8_RERANK
                            : ntotal;
        if (round > 0 && kk > SN__SEARCH_MAX_FETCH) {
            rc = exact_scan(st, c, f, hit_q, query_vec, h, err, err_len);
            if (rc < 0)
                goto done;
            break;
        }
        free(labels);
        free(scores);
        labels = malloc((size_t)n_ask * sizeof *labels);
        scores = malloc((size_t)n_ask * sizeof *scores);
        if (!labels || !scores) {
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            goto done;
        }
        /* faiss with the store unlocked: searches run in parallel, and
         * writers wait for them on ann_rw (held across the unlock, so
         * c->ann stays; c itself lives as long as the store) */
        read_end(st, began);
        pthread_rwlock_rdlock(&c->ann_rw);
        pthread_mutex_unlock(&st->lock);
        rc = sn__ann_search(c->ann, query_vec, n_ask, ef, scores, labels,
                            err, err_len);
        pthread_rwlock_unlock(&c->ann_rw);
        pthread_mutex_lock(&st->lock);
        began = read_begin(st);
        if (rc < 0 || (re && (rc = rerank(st, c, query_vec, n_ask, scores,
                                          labels, err, err_len)) < 0) ||
            (rc = hit_stmt(st, c, f, h->docs_only, &own_q, &hit_q, err,
                             err_len)) < 0)
            goto done;
        hits_clear(h);
        for (int64_t i = 0; i < kk && h->n < k; i++) {
            if (labels[i] < 0)
                continue;
            if ((rc = take_hit(st, hit_q, labels[i], scores[i], h, err,
                               err_len)) < 0)
                goto done;
        }
        if (h->n == k)
            break;
        if (kk == ntotal) {
            /* Flat has given everything it has. A graph search need not
             * reach every node even asked for all of them: scan. */
            if (c->ann->hnsw &&
                (rc = exact_scan(st, c, f, hit_q, query_vec, h, err,
                                 err_len)) < 0)
                goto done;
            break;
        }
        fetch = kk * 4;
    }
    rc = 0;
done:
    if (hit_q)
        sqlite3_reset(hit_q);
    sqlite3_finalize(own_q);
    read_end(st, began);
    free(labels);
    free(scores);
    return rc;
}

/* sn_store_search and sn_store_search_vec: a collection bound to model_id,
 * or (model_id NULL) any collection whose dimension is dim. */
static int search(sn_store_t *st, const char *collection,
                  const char *model_id, const float *query_vec, int dim,
                  int k, int ef, const char *filter_json, sn_hit_t **out,
                  int *n_out, char *err, size_t err_len)
{
    hits_t h = {0};
    filter_t f = {0};
    double norm;
    coll_t *c;
    int rc;

    if (!st || !out || !n_out)
        return sn__err(err, err_len, SN_EARG, "sn_store_search: bad "
                       "arguments");
    *out = NULL;
    *n_out = 0;
    pthread_mutex_lock(&st->lock);
    sn__ann_threads(1);
    if ((model_id && (rc = check_name("model id", model_id,
                                      SN_STORE_MAX_NAME, err, err_len)) < 0) ||
        (rc = coll_get(st, collection, model_id, &c, err, err_len)) < 0)
        goto done;
    if (!model_id && dim != c->dim) {
        rc = sn__err(err, err_len, SN_EMODEL, "collection '%s' holds "
                     "vectors of %d dimensions, the query has %d",
                     collection, c->dim, dim);
        goto done;
    }
    if (k < 0 || k > SN_STORE_MAX_K) {
        rc = sn__err(err, err_len, SN_EARG, "k = %d out of range (0 to %d)",
                     k, SN_STORE_MAX_K);
        goto done;
    }
    if (ef < 0 || ef > SN_STORE_MAX_EF) {
        rc = sn__err(err, err_len, SN_EARG, "ef = %d out of range (0 to %d)",
                     ef, SN_STORE_MAX_EF);
        goto done;
    }
    if (!query_vec || check_vec(query_vec, c->dim, &norm) < 0) {
        rc = sn__err(err, err_len, SN_EARG, "search '%s': query vector is "
                     "not finite and L2-normalized", collection);
        goto done;
    }
    if ((rc = filter_parse(filter_json, &f, err, err_len)) < 0)
        goto done;
    if (k == 0)
        goto done;
    rc = vec_hits(st, c, query_vec, k, ef, 1, &f, &h, err, err_len);
done:
    if (rc < 0 || h.n == 0) {
        sn_hits_free(h.v, h.n);
    } else {
        *out = h.v;
        *n_out = h.n;
    }
    filter_free(&f);
    pthread_mutex_unlock(&st->lock);
    return rc < 0 ? rc : 0;
}

int sn_store_search(sn_store_t *st, const char *collection,
                    const char *model_id, const float *query_vec, int k,
                    const char *filter_json, sn_hit_t **out, int *n_out,
                    char *err, size_t err_len)
{
    if (!model_id) {
        if (out)
            *out = NULL;
        if (n_out)
            *n_out = 0;
        return sn__err(err, err_len, SN_EARG, "sn_store_search: no model "
                       "id (sn_store_search_vec searches by dimension)");
    }
    return search(st, collection, model_id, query_vec, -1, k, 0,
                  filter_json, out, n_out, err, err_len);
}

int sn_store_search_vec(sn_store_t *st, const char *collection,
                        const float *query_vec, int dim, int k,
                        const char *filter_json, sn_hit_t **out, int *n_out,
                        char *err, size_t err_len)
{
    return search(st, collection, NULL, query_vec, dim, k, 0, filter_json,
                  out, n_out, err, err_len);
}

int sn_store_search_ef(sn_store_t *st, const char *collection,
                       const float *query_vec, int dim, int k, int ef,
                       const char *filter_json, sn_hit_t **out, int *n_out,
                       char *err, size_t err_len)
{
    return search(st, collection, NULL, query_vec, dim, k, ef, filter_json,
                  out, n_out, err, err_len);
}

/* ---- search modes: the lexical list, fusion, documents as results ---------
 *
 * sn_store_query gathers candidates from the lists the mode uses, scores
 * every candidate exactly by both, and ranks:
 *
 *   lexical(d) = P(d) + W_T * T(d)         P, T: sense_rank() of the
 *                                          document in documents_fts
 *                                          (stemmed words) and
 *                                          documents_tri (trigrams), each
 *                                          over its query's ideal score
 *   vector(c)  = cos(query, chunk c);      vector(d) = max over d's chunks
 *   hybrid(d)  = lexical(d) + W_V * known * trust * vector(d)
 *
 * Each part says how much its list knows. P and T are fractions of the
 * query's (rarity-weighted) terms the document holds: a lexical list that
 * matched only common words gives every candidate a small score, and the
 * cosine decides. `known` is the share of the query the model has tokens
 * for: a Korean query through a model that maps Hangul to its unknown
 * token has known ~0, and its cosines (all near each other, meaning
 * nothing) weigh nothing. `trust` (fuse_trust) covers a model that knows
 * every token and still means nothing for this text (random weights, a
 * model for another domain): when the lexical list is sure of itself (a
 * best score of 1 or more) and the two lists' top 10 documents share
 * none, the cosine stays out; a lexical list that is unsure, or a vector
 * list that agrees with it on one document, lets it in fully. W_T and W_V
 * are the only tuned weights (store_int.h, with how they were measured).
 *
 * Candidates: the SN__FUSE_CANDIDATES best documents of the lexical list
 * and the documents of the SN__FUSE_CANDIDATES best chunks of the vector
 * list (ANN or exact scan, filtered); each is then scored exactly by both
 * (every chunk's vector read back from SQLite, its lexical score looked up
 * in the full match list), so a document found by one list alone still
 * gets the other's evidence. By document, a document is one result, its
 * best chunk (by cosine; the first chunk in lexical mode) the snippet; by
 * chunk, each chunk of a candidate is a result with its own cosine and its
 * document's lexical score. */

typedef struct {
    int64_t doc;
    float score;
} lexdoc_t;

typedef struct {
    lexdoc_t *v;
    int64_t n, cap;
} lexlist_t;

static int cmp_lexdoc_id(const void *a, const void *b)
{
    int64_t x = ((const lexdoc_t *)a)->doc, y = ((const lexdoc_t *)b)->doc;
    return (x > y) - (x < y);
}

static int cmp_lexdoc_score(const void *a, const void *b)
{
    const lexdoc_t *x = a, *y = b;
    if (x->score != y->score)
        return (x->score < y->score) - (x->score > y->score);
    return (x->doc > y->doc) - (x->doc < y->doc);
}

/* Every document of c matching `match` in `table` (and the filter), with
 * weight * sense_rank (BM25 with k1, b), merged into l (sorted by doc id
 * on return). */
static int lex_table(sn_store_t *st, const coll_t *c, const char *table,
                     const char *match, int n_own, int n_parts, double k1,
                     double b, double weight, const filter_t *f,
                     lexlist_t *l, char *err, size_t err_len)
{
    char *sql = NULL;
    sqlite3_stmt *s = NULL;
    int64_t n0 = l->n;
    int rc;

    if (!match)
        return 0;
    /* ?901, ?902: the collection's statistics and its summed lengths in
     * this table (the filter's parameters are ?3 and up, at most
     * 2 * MAX_FILTER_KEYS of them) */
    if (asprintf(&sql, "SELECT t.rowid, sense_rank(%s, %.17g, %.17g, ?901, "
                 "?902, %d, %d) FROM %s t CROSS JOIN documents d ON "
                 "d.id = t.rowid WHERE %s MATCH ?1 AND d.collection = ?2%s",
                 table, k1, b, n_own, n_parts, table, table,
                 f->cond ? f->cond : "") < 0)
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    free(sql);
    if (rc != SQLITE_OK)
        return db_fail(st, rc, err, err_len, "cannot prepare the lexical "
                       "search");
    if ((rc = sqlite3_bind_text(s, 1, match, -1, SQLITE_STATIC)) ||
        (rc = sqlite3_bind_int64(s, 2, c->id)) ||
        (rc = sqlite3_bind_pointer(s, 901, (void *)&c->lex,
                                   "sn__lex_stats_t", NULL)) ||
        (rc = sqlite3_bind_double(s, 902, strcmp(table, "documents_tri")
                                            ? c->lex.word_tokens
                                            : c->lex.tri_tokens)) ||
        (rc = filter_bind(f, s))) {
        rc = db_fail(st, rc, err, err_len, "cannot bind");
        goto done;
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (l->n == l->cap) {
            int64_t cap = l->cap ? l->cap * 2 : 256;
            lexdoc_t *v = realloc(l->v, (size_t)cap * sizeof *v);
            if (!v) {
                rc = sn__err(err, err_len, -ENOMEM, "out of memory");
                goto done;
            }
            l->v = v;
            l->cap = cap;
        }
        l->v[l->n].doc = sqlite3_column_int64(s, 0);
        l->v[l->n].score = (float)(weight * sqlite3_column_double(s, 1));
        l->n++;
    }
    if (rc != SQLITE_DONE) {
        rc = db_fail(st, rc, err, err_len, "lexical search");
        goto done;
    }
    /* merge the new rows into the old (both sorted by doc id); no rows
     * at all leaves l->v NULL, which qsort must not see (UBSan) */
    if (l->n > 1)
        sort_n(l->v, (size_t)l->n, sizeof *l->v, cmp_lexdoc_id);
    {
        int64_t w = 0;
        for (int64_t i = 0; i < l->n; i++) {
            if (w && l->v[w - 1].doc == l->v[i].doc)
                l->v[w - 1].score += l->v[i].score;
            else
                l->v[w++] = l->v[i];
        }
        l->n = w;
    }
    (void)n0;
    rc = 0;
done:
    sqlite3_finalize(s);
    return rc;
}

static float lex_score(const lexlist_t *l, int64_t doc)
{
    lexdoc_t key = {doc, 0}, *hit;
    if (!l->n)
        return 0;
    hit = bsearch(&key, l->v, (size_t)l->n, sizeof key, cmp_lexdoc_id);
    return hit ? hit->score : 0;
}

/* One scored result before it is read back: a chunk (or, for a document
 * without chunks, the document itself: chunk 0, ordinal -1). */
typedef struct {
    int64_t doc, chunk;
    int ordinal;
    float score, vec, lex;
} fused_t;

static int cmp_fused(const void *a, const void *b)
{
    const fused_t *x = a, *y = b;
    if (x->score != y->score)
        return (x->score < y->score) - (x->score > y->score);
    if (x->doc != y->doc)
        return (x->doc > y->doc) - (x->doc < y->doc);
    return (x->ordinal > y->ordinal) - (x->ordinal < y->ordinal);
}

typedef struct {
    fused_t *v;
    int64_t n, cap;
} fusedv_t;

static int fused_push(fusedv_t *a, fused_t x)
{
    if (a->n == a->cap) {
        int64_t cap = a->cap ? a->cap * 2 : 64;
        fused_t *v = realloc(a->v, (size_t)cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

/* Score every chunk of document doc (one entry per chunk by chunk, the
 * best one by document) into out. */
static int score_doc(sn_store_t *st, const coll_t *c, int64_t doc,
                     const sn_query_t *q, int use_vec, float lex,
                     float w_vec, fusedv_t *out, char *err, size_t err_len)
{
    fused_t best = {doc, 0, -1, -INFINITY, NAN, lex};
    sqlite3_stmt *s;
    int rc, n = 0, n_rows = 0;

    if ((rc = query(st, Q_CHUNKS_OF_DOC, c->id, &s, err, err_len)) < 0)
        return rc;
    sqlite3_bind_int64(s, 1, doc);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        fused_t x = {doc, sqlite3_column_int64(s, 0),
                     sqlite3_column_int(s, 1), 0, NAN, lex};
        if (use_vec) {
            double dot;
            n_rows++;
            if (row_dot(c, s, 2, q->vec, &dot))
                continue; /* damaged: never a hit (the check op reports) */
            x.vec = (float)dot;
        }
        switch (q->mode) {
        case SN_SEARCH_VECTOR: x.score = x.vec; break;
        case SN_SEARCH_LEXICAL: x.score = lex; break;
        default: /* hybrid; with one list alone, that list's score */
            x.score = !use_vec  ? lex
                      : !q->text ? x.vec
                                 : lex + w_vec * x.vec;
        }
        n++;
        if (q->by_chunk) {
            if (fused_push(out, x) < 0)
                goto oom;
        } else if (x.score > best.score || best.ordinal < 0) {
            best = x; /* ties (lexical mode): the first chunk */
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_fail(st, rc, err, err_len, "cannot read chunks");
    if (!n && n_rows)
        return 0; /* every chunk damaged */
    if (!n) {
        /* a document without chunks: only the lexical list finds it */
        if (use_vec && q->mode == SN_SEARCH_VECTOR)
            return 0;
        best.score = lex;
        if (fused_push(out, best) < 0)
            goto oom;
        return 0;
    }
    if (!q->by_chunk && fused_push(out, best) < 0)
        goto oom;
    return 0;
oom:
    return sn__err(err, err_len, -ENOMEM, "out of memory");
}

static int cmp_fused_vec(const void *a, const void *b)
{
    const fused_t *x = a, *y = b;
    float u = isnan(x->vec) ? -INFINITY : x->vec;
    float v = isnan(y->vec) ? -INFINITY : y->vec;
    if (u != v)
        return (u < v) - (u > v);
    return (x->doc > y->doc) - (x->doc < y->doc);
}

static int cmp_fused_lex(const void *a, const void *b)
{
    const fused_t *x = a, *y = b;
    if (x->lex != y->lex)
        return (x->lex < y->lex) - (x->lex > y->lex);
    return (x->doc > y->doc) - (x->doc < y->doc);
}

/* The first n distinct documents of v (sorted) into top; their count. */
static int top_docs(const fused_t *v, int64_t n_v, int64_t *top, int n)
{
    int k = 0;
    for (int64_t i = 0; i < n_v && k < n; i++) {
        int seen = 0;
        for (int j = 0; j < k && !seen; j++)
            seen = top[j] == v[i].doc;
        if (!seen)
            top[k++] = v[i].doc;
    }
    return k;
}

/* How far hybrid search trusts the vector list on this query, 0 to 1 (see
 * SN__FUSE_AGREE in store_int.h): full trust when the two lists' top
 * SN__FUSE_AGREE documents share at least one, or as far as the lexical
 * list is unsure (its best score under 1: no document holds the query's
 * words as an average document holding each once would); else none. */
static int fuse_trust(const fusedv_t *r, float *trust)
{
    int64_t top_l[SN__FUSE_AGREE], top_v[SN__FUSE_AGREE];
    float best = 0;
    int n_l, n_v, shared = 0;
    fused_t *tmp;

    *trust = 1;
    if (!r->n)
        return 0;
    if (!(tmp = malloc((size_t)r->n * sizeof *tmp)))
        return -ENOMEM;
    memcpy(tmp, r->v, (size_t)r->n * sizeof *tmp);
    sort_n(tmp, (size_t)r->n, sizeof *tmp, cmp_fused_lex);
    n_l = top_docs(tmp, r->n, top_l, SN__FUSE_AGREE);
    best = tmp[0].lex > 0 ? tmp[0].lex : 0;
    sort_n(tmp, (size_t)r->n, sizeof *tmp, cmp_fused_vec);
    n_v = top_docs(tmp, r->n, top_v, SN__FUSE_AGREE);
    free(tmp);
    for (int i = 0; i < n_l; i++)
        for (int j = 0; j < n_v; j++)
            shared += top_l[i] == top_v[j];
    *trust = shared ? 1 : 1 - (best < 1 ? best : 1);
    return 0;
}

/* The trigram score of document doc, from its text. */
static int doc_tri(sn_store_t *st, const coll_t *c, const sn__tri_t *tri,
                   int64_t doc, double *out, char *err, size_t err_len)
{
    sqlite3_stmt *s;
    int rc;

    *out = 0;
    if ((rc = query(st, Q_DOC_TEXT, c->id, &s, err, err_len)) < 0)
        return rc;
    sqlite3_bind_int64(s, 1, doc);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *out = sn__tri_score(tri, (const char *)sqlite3_column_text(s, 0),
                             (size_t)sqlite3_column_bytes(s, 0));
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(st, rc, err, err_len, "cannot read a document");
    return 0;
}

/* Read result x back into hit (text, span, meta; lean: no text or meta). */
static int read_fused(sn_store_t *st, const coll_t *c, const fused_t *x,
                      int lean, sn_hit_t *hit, char *err, size_t err_len)
{
    sqlite3_stmt *s;
    int rc;

    memset(hit, 0, sizeof *hit);
    if ((rc = query(st, x->ordinal < 0 ? Q_DOC_HIT : Q_HIT, c->id, &s, err,
                    err_len)) < 0)
        return rc;
    sqlite3_bind_int64(s, 1, x->ordinal < 0 ? x->doc : x->chunk);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return rc == SQLITE_DONE
                   ? sn__err(err, err_len, -EIO, "a hit vanished")
                   : db_fail(st, rc, err, err_len, "cannot read a hit");
    }
    hit->id = dup_col(s, 0);
    if (!lean) {
        hit->text = dup_col(s, 1);
        hit->meta_json = dup_col(s, 5);
    }
    hit->chunk = sqlite3_column_int(s, 2);
    hit->start = sqlite3_column_int(s, 3);
    hit->end = sqlite3_column_int(s, 4);
    hit->ref = x->ordinal < 0 ? x->doc : x->chunk;
    hit->ref_doc = x->ordinal < 0;
    hit->score = x->score;
    hit->vector_score = x->vec;
    hit->lexical_score = x->lex;
    sqlite3_reset(s);
    if (!hit->id || (!lean && (!hit->text || !hit->meta_json)))
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    return 0;
}

int sn_store_hit_read(sn_store_t *st, const char *collection, sn_hit_t *hit,
                      char *err, size_t err_len)
{
    sqlite3_stmt *s;
    coll_t *c;
    int rc;

    if (!st || !hit)
        return sn__err(err, err_len, SN_EARG, "sn_store_hit_read: bad "
                       "arguments");
    pthread_mutex_lock(&st->lock);
    if ((rc = coll_get(st, collection, NULL, &c, err, err_len)) < 0 ||
        (rc = query(st, hit->ref_doc ? Q_DOC_HIT : Q_HIT, c->id, &s, err,
                    err_len)) < 0)
        goto done;
    sqlite3_bind_int64(s, 1, hit->ref);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        free(hit->text);
        free(hit->meta_json);
        hit->text = dup_col(s, 1);
        hit->meta_json = dup_col(s, 5);
        rc = hit->text && hit->meta_json
                 ? 0
                 : sn__err(err, err_len, -ENOMEM, "out of memory");
    } else {
        rc = rc == SQLITE_DONE
                 ? sn__err(err, err_len, SN_ENOTFOUND, "'%s': a hit is gone",
                           collection)
                 : db_fail(st, rc, err, err_len, "cannot read a hit");
    }
    sqlite3_reset(s);
done:
    pthread_mutex_unlock(&st->lock);
    return rc;
}

const char *sn_search_mode_name(sn_search_mode_t mode)
{
    return mode == SN_SEARCH_VECTOR    ? "vector"
           : mode == SN_SEARCH_LEXICAL ? "lexical"
                                       : "hybrid";
}

int sn_search_mode_parse(const char *name)
{
    if (!name)
        return -1;
    if (!strcmp(name, "hybrid"))
        return SN_SEARCH_HYBRID;
    if (!strcmp(name, "vector"))
        return SN_SEARCH_VECTOR;
    if (!strcmp(name, "lexical"))
        return SN_SEARCH_LEXICAL;
    return -1;
}

int sn_store_query(sn_store_t *st, const char *collection,
                   const sn_query_t *q, sn_hit_t **out, int *n_out,
                   int *lists_out, char *err, size_t err_len)
{
    char *m_words = NULL, *m_tri = NULL;
    filter_t f = {0};
    hits_t vh = {0};
    lexlist_t lex = {0}, tri_nom = {0};
    sn__tri_t tri = {0};
    ids_t docs = {0};
    fusedv_t res = {0};
    sn_hit_t *hits = NULL;
    int use_vec, use_lex, lists = 0, n_hits = 0, rc, n_cand, began = 0;
    float w_vec = 0;
    double norm;
    coll_t *c;

    if (!st || !q || !out || !n_out)
        return sn__err(err, err_len, SN_EARG, "sn_store_query: bad "
                       "arguments");
    *out = NULL;
    *n_out = 0;
    if (lists_out)
        *lists_out = 0;
    pthread_mutex_lock(&st->lock);
    sn__ann_threads(1);
    if ((q->model_id && (rc = check_name("model id", q->model_id,
                                         SN_STORE_MAX_NAME, err,
                                         err_len)) < 0) ||
        (rc = coll_get(st, collection, q->model_id, &c, err, err_len)) < 0)
        goto done;
    if (q->mode != SN_SEARCH_HYBRID && q->mode != SN_SEARCH_VECTOR &&
        q->mode != SN_SEARCH_LEXICAL) {
        rc = sn__err(err, err_len, SN_EARG, "unknown search mode %d",
                     (int)q->mode);
        goto done;
    }
    if (q->k < 0 || q->k > SN_STORE_MAX_K) {
        rc = sn__err(err, err_len, SN_EARG, "k = %d out of range (0 to %d)",
                     q->k, SN_STORE_MAX_K);
        goto done;
    }
    if (q->ef < 0 || q->ef > SN_STORE_MAX_EF) {
        rc = sn__err(err, err_len, SN_EARG, "ef = %d out of range (0 to %d)",
                     q->ef, SN_STORE_MAX_EF);
        goto done;
    }
    use_vec = q->mode != SN_SEARCH_LEXICAL && q->vec;
    use_lex = q->mode != SN_SEARCH_VECTOR && q->text;
    if ((q->mode == SN_SEARCH_VECTOR && !q->vec) ||
        (q->mode == SN_SEARCH_LEXICAL && !q->text) ||
        (!use_vec && !use_lex)) {
        rc = sn__err(err, err_len, SN_EARG, "%s search needs %s",
                     sn_search_mode_name(q->mode),
                     q->mode == SN_SEARCH_VECTOR    ? "a query vector"
                     : q->mode == SN_SEARCH_LEXICAL ? "a query text"
                                                    : "a query");
        goto done;
    }
    if (use_vec && q->dim != c->dim) {
        rc = sn__err(err, err_len, SN_EMODEL, "collection '%s' holds "
                     "vectors of %d dimensions, the query has %d",
                     collection, c->dim, q->dim);
        goto done;
    }
    if (use_vec && check_vec(q->vec, c->dim, &norm) < 0) {
        rc = sn__err(err, err_len, SN_EARG, "search '%s': query vector is "
                     "not finite and L2-normalized", collection);
        goto done;
    }
    if ((rc = filter_parse(q->filter_json, &f, err, err_len)) < 0)
        goto done;
    if (q->k == 0)
        goto done;
    n_cand = q->k > SN__FUSE_CANDIDATES ? q->k : SN__FUSE_CANDIDATES;
    {
        float known = q->known;
        if (!(known >= 0)) /* NAN too */
            known = 0;
        if (known > 1)
            known = 1;
        w_vec = (float)SN__FUSE_W_VECTOR * known;
    }

    began = read_begin(st);
    /* The lexical list: every document matching a word, scored; the
     * trigram score of each candidate comes later, from its text. A query
     * with characters outside ASCII (Korean, CJK, accented words: where
     * words split poorly) also takes candidates from a trigram search. */
    if (use_lex) {
        const char *p;
        int wide = 0, n_own = 0, n_parts = 0;
        for (p = q->text; *p; p++)
            wide |= (unsigned char)*p >= 0x80;
        if ((rc = sn__lex_match(q->text, strlen(q->text), synonyms(st),
                                &m_words, &n_own, &n_parts, &m_tri, err,
                                err_len)) < 0 ||
            (rc = sn__lex_stats(st->db, c->id, &c->lex, err, err_len)) < 0 ||
            (rc = sn__tri_query(st->db, q->text, strlen(q->text), &c->lex,
                                &tri, err, err_len)) < 0 ||
            (rc = lex_table(st, c, "documents_fts", m_words, n_own,
                            n_parts, SN__BM25_WORD_K1, SN__BM25_WORD_B, 1.0,
                            &f, &lex, err, err_len)) < 0 ||
            (wide && (rc = lex_table(st, c, "documents_tri", m_tri, 0, 0,
                                     SN__BM25_TRI_K1, SN__BM25_TRI_B, 1.0, &f,
                                     &tri_nom, err, err_len)) < 0))
            goto done;
        for (int pass = 0; pass < 2; pass++) {
            lexlist_t *l = pass ? &tri_nom : &lex;
            if (!l->n)
                continue;
            lexdoc_t *top = malloc((size_t)l->n * sizeof *top);
            if (!top)
                goto oom;
            memcpy(top, l->v, (size_t)l->n * sizeof *top);
            sort_n(top, (size_t)l->n, sizeof *top, cmp_lexdoc_score);
            for (int64_t i = 0; i < l->n && i < n_cand; i++)
                if (ids_push(&docs, top[i].doc) < 0) {
                    free(top);
                    goto oom;
                }
            free(top);
        }
    }
    /* The vector list: the best chunks, as their documents' ids. */
    if (use_vec) {
        vh.docs_only = 1;
        read_end(st, began); /* vec_hits unlocks the store */
        rc = vec_hits(st, c, q->vec, n_cand, q->ef, 0, &f, &vh, err,
                      err_len);
        began = read_begin(st);
        if (rc < 0)
            goto done;
        if (vh.n)
            lists |= SN_LIST_VECTOR;
        for (int i = 0; i < vh.n; i++)
            if (ids_push(&docs, vh.doc[i]) < 0)
                goto oom;
    }
    /* Each candidate once, scored by everything the mode uses. */
    sort_n(docs.v, (size_t)docs.n, sizeof *docs.v, cmp_i64);
    for (int64_t i = 0; i < docs.n; i++) {
        if (i && docs.v[i] == docs.v[i - 1])
            continue;
        float l = NAN;
        if (use_lex) {
            double t = 0;
            if (tri.n && (rc = doc_tri(st, c, &tri, docs.v[i], &t, err,
                                       err_len)) < 0)
                goto done;
            l = lex_score(&lex, docs.v[i]) + (float)(SN__FUSE_W_TRIGRAM * t);
            if (l > 0)
                lists |= SN_LIST_LEXICAL;
        }
        if (q->mode == SN_SEARCH_LEXICAL && !(l > 0))
            continue;
        if ((rc = score_doc(st, c, docs.v[i], q, use_vec, use_lex ? l : 0,
                            w_vec, &res, err, err_len)) < 0)
            goto done;
        if (!use_lex)
            for (int64_t j = res.n; j > 0 && res.v[j - 1].doc == docs.v[i];
                 j--)
                res.v[j - 1].lex = NAN;
    }
    /* Hybrid with both lists: the cosine's weight is W_V * known *
     * trust, trust known only now that every candidate has both scores
     * (score_doc used W_V * known: it picked each document's best chunk
     * by cosine, which the weight does not change). */
    if (q->mode == SN_SEARCH_HYBRID && use_vec && use_lex) {
        float trust;
        if (fuse_trust(&res, &trust) < 0)
            goto oom;
        for (int64_t i = 0; i < res.n; i++)
            if (res.v[i].ordinal >= 0 && !isnan(res.v[i].vec))
                res.v[i].score = res.v[i].lex + w_vec * trust * res.v[i].vec;
    }
    sort_n(res.v, (size_t)res.n, sizeof *res.v, cmp_fused);
    n_hits = res.n < q->k ? (int)res.n : q->k;
    if (n_hits && !(hits = calloc((size_t)n_hits, sizeof *hits)))
        goto oom;
    for (int i = 0; i < n_hits; i++)
        if ((rc = read_fused(st, c, &res.v[i], q->lean, &hits[i], err,
                             err_len)) < 0) {
            n_hits = i + 1;
            goto done;
        }
    rc = 0;
    goto done;
oom:
    rc = sn__err(err, err_len, -ENOMEM, "out of memory");
done:
    if (rc < 0 || n_hits == 0) {
        sn_hits_free(hits, n_hits);
    } else {
        *out = hits;
        *n_out = n_hits;
        if (lists_out)
            *lists_out = lists;
    }
    if (rc == 0 && lists_out)
        *lists_out = lists;
    read_end(st, began);
    sn_hits_free(vh.v, vh.n);
    free(vh.doc);
    filter_free(&f);
    free(m_words);
    free(m_tri);
    free(lex.v);
    free(tri_nom.v);
    sn__tri_free(&tri);
    free(docs.v);
    free(res.v);
    pthread_mutex_unlock(&st->lock);
    return rc < 0 ? rc : 0;
}

/* ---- check ------------------------------------------------------------------------- */

void sn_store_bad_free(sn_store_bad_t *b, int n)
{
    if (!b)
        return;
    for (int i = 0; i < n; i++) {
        free(b[i].collection);
        free(b[i].id);
        free(b[i].problem);
    }
    free(b);
}

int sn_store_check(sn_store_t *st, const char *collection, int64_t after,
                   int max_report, sn_store_bad_t **out, int *n_out,
                   int64_t *next, int64_t *n_bad, int64_t *n_checked,
                   char *err, size_t err_len)
{
    static const char SQL_CHECK[] =
        "SELECT k.name, k.dim, d.ext_id, c.ordinal, c.vector, c.id "
        "FROM chunks c JOIN collections k ON k.id = c.collection "
        "JOIN documents d ON d.id = c.document "
        "WHERE (?1 IS NULL OR k.name = ?1) AND c.id > ?2 ORDER BY c.id";
    sn_store_bad_t *v = NULL;
    sqlite3_stmt *s = NULL;
    int k = 0, rc;
    coll_t *c;

    if (!st || !out || !n_out || !n_bad || !n_checked || max_report < 0)
        return sn__err(err, err_len, SN_EARG, "sn_store_check: bad "
                       "arguments");
    *out = NULL;
    *n_out = 0;
    *n_bad = *n_checked = 0;
    if (next)
        *next = -1;
    pthread_mutex_lock(&st->lock);
    if (collection &&
        (rc = coll_get(st, collection, NULL, &c, err, err_len)) < 0)
        goto done;
    if (max_report &&
        !(v = calloc((size_t)max_report, sizeof *v))) {
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
        goto done;
    }
    rc = sqlite3_prepare_v2(st->db, SQL_CHECK, -1, &s, NULL);
    if (rc == SQLITE_OK && collection)
        rc = sqlite3_bind_text(s, 1, collection, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 2, after);
    if (rc != SQLITE_OK) {
        rc = db_fail(st, rc, err, err_len, "cannot prepare the check");
        goto fail;
    }
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        coll_t shape = {0};
        const float *vec;
        char why[96];
        shape.dim = sqlite3_column_int(s, 1);
        ++*n_checked;
        if (!row_vec(&shape, s, 4, &vec, why, sizeof why))
            continue;
        ++*n_bad;
        if (!max_report)
            continue;
        v[k].collection = dup_col(s, 0);
        v[k].id = dup_col(s, 2);
        v[k].chunk = sqlite3_column_int(s, 3);
        v[k].problem = strdup(why);
        k++;
        if (!v[k - 1].collection || !v[k - 1].id || !v[k - 1].problem) {
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            goto fail;
        }
        if (k == max_report) { /* a page: go on from here next time */
            if (next)
                *next = sqlite3_column_int64(s, 5);
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE) {
        rc = db_fail(st, rc, err, err_len, "cannot read chunks");
        goto fail;
    }
    rc = 0;
    if (k == 0) {
        free(v);
        v = NULL;
    }
    *out = v;
    *n_out = k;
    goto done;
fail:
    sn_store_bad_free(v, k);
done:
    sqlite3_finalize(s);
    pthread_mutex_unlock(&st->lock);
    return rc;
}
