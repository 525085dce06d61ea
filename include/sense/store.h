/*
 * store.h -- documents, chunks, vectors and sense inventories: SQLite as the
 * source of truth, faiss (through its C API) as the search accelerator.
 *
 * Ownership and threads:
 *   - sn_store_open() returns a store the caller frees with sn_store_close(),
 *     which saves the indexes. A store serializes its own calls with an
 *     internal mutex: any thread may call it, one call runs at a time.
 *     (The daemon calls it from worker threads only, never the loop.)
 *   - Every write returns only after its SQLite transaction is durable
 *     (WAL, synchronous=FULL): what a caller acknowledges is never lost.
 *   - Results are owned by the caller: free them with the matching _free.
 *   - Collections are bound to the model that filled them (model id and
 *     dimension): writing or searching with another is SN_EMODEL.
 *
 * Files: the database, its -wal and -shm, the index folder (<db>.idx) and
 * its files are made 0600 / 0700 whatever the umask, and existing ones
 * are brought back to that: they hold the documents.
 *
 * Errors: 0 or a negative code (SN_E*, -errno); the message goes to `err`.
 * A full disk or read-only database is -ENOSPC / -EROFS / -EACCES with the
 * store left consistent (the failed transaction rolled back).
 */
#ifndef SENSE_STORE_H
#define SENSE_STORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sn_store sn_store_t;

/* Limits, checked by every call (the daemon's protocol uses these too). */
#define SN_STORE_MAX_NAME 256          /* collection name, model id (bytes) */
#define SN_STORE_MAX_ID 1024           /* external document id (bytes) */
#define SN_STORE_MAX_DIM 65536
#define SN_STORE_MAX_K 10000
#define SN_STORE_MAX_META (1u << 20)   /* meta JSON (bytes) */
#define SN_STORE_MAX_TEXT (64u << 20)  /* document text (bytes) */
#define SN_STORE_MAX_CHUNKS 100000     /* chunks per document */
#define SN_STORE_MAX_BATCH 100000      /* documents per call */
#define SN_STORE_MAX_EF 10000          /* a search's HNSW beam (ef) */

typedef enum {
    SN_INDEX_AUTO = 0, /* Flat below a measured size, HNSW above */
    SN_INDEX_FLAT,
    SN_INDEX_HNSW,
} sn_index_kind_t;

int sn_store_open(const char *db_path, sn_store_t **out, char *err,
                  size_t err_len);
void sn_store_close(sn_store_t *st); /* saves the indexes; NULL is a no-op */
/* Save every collection's index now (atomically: write, fsync, rename). */
int sn_store_save(sn_store_t *st, char *err, size_t err_len);

/* Notes for a person, one line each without a newline: an index file that
 * was stale, corrupt or missing and was caught up or rebuilt from the
 * database, a schema migration, an index switched from Flat to HNSW. Lines
 * from before a callback is set (sn_store_open's) are kept and delivered
 * when it is. The callback runs on the calling thread with the store
 * locked: it must not call the store. NULL discards. A line is a warning
 * when something went wrong or was repaired (a damaged index file, a
 * failed save or build, a damaged vector), information otherwise (a
 * migration, a background build, Flat switched to HNSW, a missing index
 * file built, the synonyms read). */
typedef enum { SN_STORE_INFO, SN_STORE_WARN } sn_store_level_t;
typedef void (*sn_store_log_cb)(void *ud, sn_store_level_t level,
                                const char *line);
void sn_store_set_log(sn_store_t *st, sn_store_log_cb cb, void *ud);

/* Off (the default): an index that must be built or rebuilt is built
 * inside the call that needs it. On (the daemon): on a thread of its own,
 * logged when it starts and when it is ready; searches meanwhile use the
 * index there was, or an exact scan of the database. */
void sn_store_set_background(sn_store_t *st, int on);

/* Synonyms for the lexical list: a WordNet 3.0 folder (index.* and
 * data.*, Debian's wordnet-base: SN_WORDNET_DIR), read at the first search
 * with a query text (~0.2 s; ~4 MB kept, its ~27 MB of files read and
 * dropped); the words of each query word's synonyms then join the query
 * at a down-weight (index/lexical.c). NULL (the default) or a folder
 * that cannot be read: no synonyms, searches go on without them (a failed
 * read is logged once). Set it before searching; copies dir. */
int sn_store_set_synonyms(sn_store_t *st, const char *dir);

/* What an HNSW index is (every HNSW collection of the store; the default
 * SN_HNSW_F32):
 *   f32    hnswlib's graph over the float vectors (M 16).
 *   sq8    the same graph over 8-bit scalar-quantized vectors: ~3x less
 *          memory; candidates are reranked exactly from the vectors in
 *          the database, so scores stay exact cosines.
 *   faiss  faiss' IndexHNSW (M 32), for comparison: slower to build, and
 *          its efSearch is fixed (per-search ef is ignored).
 *   ivf    not a graph: an inverted file (k-means lists of 8-bit codes,
 *          index/ivf.c), built in a fraction of a graph's time; candidates
 *          reranked exactly like sq8's; a search's ef is the number of
 *          lists it scans.
 * A store-wide choice, not a collection's: it trades memory for recall on
 * the machine at hand and changes no data, and an index of another kind is
 * rebuilt (in the background with sn_store_set_background) at its next
 * use. SN_EARG for an unknown kind. */
typedef enum {
    SN_HNSW_F32 = 0,
    SN_HNSW_SQ8,
    SN_HNSW_FAISS,
    SN_HNSW_IVF,
} sn_hnsw_kind_t;
int sn_store_set_hnsw(sn_store_t *st, sn_hnsw_kind_t kind);
const char *sn_hnsw_kind_name(sn_hnsw_kind_t kind); /* "f32", "sq8", ... */
int sn_hnsw_kind_parse(const char *name);           /* -1: unknown */

/* Create the collection if it does not exist; if it does, check it is bound
 * to the same model_id and dim (else SN_EMODEL). */
int sn_store_collection(sn_store_t *st, const char *name,
                        const char *model_id, int dim, sn_index_kind_t kind,
                        char *err, size_t err_len);

/* A chunk of a document: its character span (code points) in the text and
 * its vector (dim floats, L2-normalized). */
typedef struct {
    int32_t start, end;
    const float *vec;
} sn_chunk_in_t;

typedef struct {
    const char *id;        /* external id; NULL: the store makes one */
    const char *text;      /* UTF-8, text_len bytes */
    size_t text_len;
    const char *meta_json; /* a JSON object as text, or NULL */
    const sn_chunk_in_t *chunks;
    int n_chunks;
} sn_doc_in_t;

/* Upsert n documents in ONE transaction (all or nothing): a document whose
 * external id exists is replaced, chunks included. ids_out (if non-NULL)
 * receives n malloc'd external ids (the generated ones too); free each. */
int sn_store_add(sn_store_t *st, const char *collection, const char *model_id,
                 const sn_doc_in_t *docs, int n, char **ids_out, char *err,
                 size_t err_len);
/* sn_store_add, creating the collection (as sn_store_collection would) in
 * the same transaction when it does not exist: an add that fails or is
 * killed half-way leaves no empty new collection behind. */
int sn_store_add_create(sn_store_t *st, const char *collection,
                        const char *model_id, int dim, sn_index_kind_t kind,
                        const sn_doc_in_t *docs, int n, char **ids_out,
                        char *err, size_t err_len);

typedef struct {
    char *id;
    char *text;
    char *meta_json; /* "{}" when none */
    int64_t created, updated; /* unix seconds */
    int n_chunks;
} sn_doc_t;

void sn_doc_free(sn_doc_t *d); /* frees members */

/* Fetch by external ids; missing ids are left out: *n_out <= n. */
int sn_store_get(sn_store_t *st, const char *collection,
                 const char *const *ids, int n, sn_doc_t **out, int *n_out,
                 char *err, size_t err_len);
/* Delete by external ids (chunks and vectors too); *n_deleted counts the
 * ids that existed. Durable on return; never returned by search again. */
int sn_store_delete(sn_store_t *st, const char *collection,
                    const char *const *ids, int n, int *n_deleted, char *err,
                    size_t err_len);
/* List external ids in insertion order, from offset, at most limit. */
int sn_store_list(sn_store_t *st, const char *collection, int64_t offset,
                  int limit, char ***ids_out, int *n_out, char *err,
                  size_t err_len);

/* A stored vector that cannot be trusted: not dim floats, not finite, or
 * not of unit length (as every vector is when stored). Such a vector is
 * left out of the collection's index (and logged) when the index is built
 * or caught up from the database, and reported by sn_store_check. */
typedef struct {
    char *collection;
    char *id;        /* the document's external id */
    int chunk;       /* ordinal of the chunk in its document */
    char *problem;   /* "norm 4.2e+27", "not finite", "12 bytes, expected 1536" */
} sn_store_bad_t;

/* Read back the stored vectors of `collection` (NULL: of every
 * collection) after chunk `after` (0: from the first), in chunk order, and
 * report the damaged ones: *out (malloc'd, free with sn_store_bad_free).
 * With max_report > 0 the scan stops at the max_report-th damaged vector
 * and *next (may be NULL) is where to go on from (the `after` of the next
 * call); otherwise (and when the scan reaches the end) *next is -1 and
 * nothing is reported with max_report 0. *n_bad and *n_checked count the
 * damaged and all vectors scanned. Holds the store for the scan. */
int sn_store_check(sn_store_t *st, const char *collection, int64_t after,
                   int max_report, sn_store_bad_t **out, int *n_out,
                   int64_t *next, int64_t *n_bad, int64_t *n_checked,
                   char *err, size_t err_len);
void sn_store_bad_free(sn_store_bad_t *b, int n);

typedef struct {
    char *name;
    char *model_id;
    int dim;
    sn_index_kind_t kind; /* as chosen (AUTO resolved) */
    int64_t n_docs, n_chunks;
} sn_collection_info_t;

int sn_store_collections(sn_store_t *st, sn_collection_info_t **out,
                         int *n_out, char *err, size_t err_len);
void sn_collection_info_free(sn_collection_info_t *c, int n);

typedef struct {
    char *id;        /* the document's external id */
    float score;     /* cosine (sn_store_search); the mode's score
                      * (sn_store_query, see there) */
    float vector_score;  /* sn_store_query: cosine of the chunk, NAN when
                          * the vector list took no part */
    float lexical_score; /* sn_store_query: the document's lexical score,
                          * 0 when its text matches no query term, NAN
                          * when the lexical list took no part */
    char *text;      /* the chunk's text */
    int chunk;       /* ordinal of the chunk in its document */
    int32_t start, end;
    char *meta_json;
    /* the store's: the chunk (or, ref_doc set, the document) that
     * sn_store_hit_read reads the text and meta of */
    int64_t ref;
    int ref_doc;
} sn_hit_t;

void sn_hits_free(sn_hit_t *h, int n);

/* Top-k chunks by cosine to `query` (dim floats, normalized). `filter_json`
 * is NULL or a JSON object {key: value}: keep documents whose meta has
 * each key equal to the value. */
int sn_store_search(sn_store_t *st, const char *collection,
                    const char *model_id, const float *query, int k,
                    const char *filter_json, sn_hit_t **out, int *n_out,
                    char *err, size_t err_len);
/* The same with a vector the caller made itself, whichever the model:
 * only its dimension must be the collection's (else SN_EMODEL). */
int sn_store_search_vec(sn_store_t *st, const char *collection,
                        const float *query, int dim, int k,
                        const char *filter_json, sn_hit_t **out, int *n_out,
                        char *err, size_t err_len);
/* sn_store_search_vec with the HNSW beam of this search: ef 0 is the
 * default, which grows with the collection (ann.c, sn__ann_ef); a larger ef
 * finds more of the true top k, slower. Up to SN_STORE_MAX_EF; Flat
 * collections are exact and ignore it. */
int sn_store_search_ef(sn_store_t *st, const char *collection,
                       const float *query, int dim, int k, int ef,
                       const char *filter_json, sn_hit_t **out, int *n_out,
                       char *err, size_t err_len);

/* ---- search modes ---------------------------------------------------------
 *
 * sn_store_query ranks documents (or chunks) by a lexical list, a vector
 * list, or both fused:
 *   - lexical: BM25 over the document text, twice -- stemmed words
 *     ('porter unicode61') and character trigrams (what matches Korean and
 *     CJK) -- each divided by the score a document containing every query
 *     term once would get, so 1 means "all the query's words, weighted by
 *     rarity, are here" and 0.2 "only some common ones".
 *   - vector: the cosine of the query vector with each chunk; a document
 *     scores by its best chunk.
 *   - hybrid (the default): the lexical score plus the cosine weighted by
 *     how much of the query the model knows (`known`: 1 when every
 *     character of the query maps to a real token, 0 when all map to the
 *     unknown token). The rule and its measured weights are in store.c.
 * Results are documents by default: the best chunk's span and text as the
 * snippet, so one long document takes one place. */
typedef enum {
    SN_SEARCH_HYBRID = 0,
    SN_SEARCH_VECTOR,
    SN_SEARCH_LEXICAL,
} sn_search_mode_t;

/* Which lists contributed candidates (sn_store_query's *lists_out). */
#define SN_LIST_VECTOR 1
#define SN_LIST_LEXICAL 2

typedef struct {
    sn_search_mode_t mode;
    int by_chunk;           /* 1: rank chunks, not documents */
    const char *text;       /* the query text (lexical list); NULL: none */
    const float *vec;       /* the query vector (vector list); NULL: none */
    int dim;                /* its length */
    const char *model_id;   /* the collection's model must be this; NULL:
                             * any model whose dimension is dim */
    float known;            /* 0..1: share of the query the model knows */
    int k;
    const char *filter_json; /* as sn_store_search */
    int ef;                 /* HNSW beam, as sn_store_search_ef; 0: default */
    int lean;               /* hits without text and meta (NULL): read
                             * them one hit at a time, sn_store_hit_read */
} sn_query_t;

/* Search in q->mode. Hybrid needs text and/or a vector (a list whose input
 * is missing is left out); vector needs vec; lexical needs text. A text
 * with no word to match gives an empty lexical list, not an error.
 * *lists_out (may be NULL) gets the SN_LIST_* bits of the lists that
 * found something. Hits as sn_store_search (free with sn_hits_free). */
int sn_store_query(sn_store_t *st, const char *collection,
                   const sn_query_t *q, sn_hit_t **out, int *n_out,
                   int *lists_out, char *err, size_t err_len);

/* The text and meta of a lean hit of `collection` (sn_query_t.lean), as
 * sn_store_query would have given them: hit->text and hit->meta_json are
 * set (the hit owns them). SN_ENOTFOUND when the chunk or document is
 * gone since (deleted by another writer). */
int sn_store_hit_read(sn_store_t *st, const char *collection, sn_hit_t *hit,
                      char *err, size_t err_len);

const char *sn_search_mode_name(sn_search_mode_t mode);
/* "hybrid", "vector", "lexical" -> the mode; -1 for anything else. */
int sn_search_mode_parse(const char *name);

/* ---- chunking (index/chunk.c) --------------------------------------------
 * Split a text into spans that each tokenize to at most max_tokens tokens
 * (specials included) with `tok`, on sentence boundaries where possible,
 * else on word boundaries, else anywhere; consecutive chunks overlap by
 * about `overlap` tokens. *spans_out is malloc'd pairs (start, end) in code
 * points; an empty text gives one empty chunk. */
typedef struct sn_tokenizer sn_tokenizer_t;
int sn_chunk_text(const sn_tokenizer_t *tok, const char *text, size_t len,
                  int max_tokens, int overlap, int32_t **spans_out,
                  int *n_out, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
