/*
 * store_int.h -- internals shared by the files of index/ (and read by the
 * store's own test and benchmark). Not installed.
 *
 * The tuning constants live here, next to how each was measured, so that
 * bench/bench_search.c exercises exactly what the store does.
 */
#ifndef SENSE_STORE_INT_H
#define SENSE_STORE_INT_H

#include <stddef.h>
#include <stdint.h>

#include <faiss/c_api/Index_c.h>
#include <sqlite3.h>
#include <utf8proc.h>

#include "sense/sense.h"
#include "sense/store.h"
#include "sense/wordnet.h"

/* ---- tuning --------------------------------------------------------------
 *
 * Measured with bench/bench_search on the development machine (2 shared
 * cores, Debian 12's libfaiss.a 1.7.3: baseline x86-64, no AVX2 distance
 * kernels), 384-d normalized clustered vectors (see bench_search.c), single
 * queries on one OpenMP thread as the store runs them, k = 10. The numbers
 * that decided each constant are quoted beside it; the full tables are in
 * bench/README.md. The machine was shared: build times are +-20%.
 */

/* HNSW graph: "IDMap2,HNSW32,Flat", efConstruction 80, efSearch 128.
 * At 100k vectors: recall@10 0.97 against Flat (0.974 and 0.970 in two
 * runs), p50 2.4 ms (Flat 16 ms), build 85-105 s on 2 cores. efSearch 96
 * gave 0.94-0.95 and 64 gave 0.88; efConstruction 40 built barely faster
 * (96 s) and reached 0.958 at efSearch 128. At 10k: recall 0.998, p50
 * 0.67 ms, build 3 s. */
#define SN__HNSW_M 32
#define SN__HNSW_EF_CONSTRUCTION 80
#define SN__HNSW_EF_SEARCH 128

/* The hnswlib graph (SN__ANN_HNSW, the store's HNSW; hnsw.cpp): M links
 * per node (2M on layer 0), efConstruction. efSearch follows the rule in
 * ann.c (sn__ann_ef): SN__GRAPH_EF_BASE up to SN__GRAPH_EF_BASE_N vectors,
 * plus SN__GRAPH_EF_PER_DECADE per tenfold more. Measured with
 * bench_search (bench/README.md, "Search at a million"). */
#define SN__GRAPH_M 32
#define SN__GRAPH_EF_CONSTRUCTION 100
/* The SQ8 graph has fewer links: at M 32 a node's level-0 links (260
 * bytes) would be 40% of its element and the index would shrink only
 * 2.75x; at M 16 (132 bytes) it is 3x smaller than the f32 graph. Its
 * efConstruction is 64: at 1M (bench_search, quiet, 2 cores) it builds in
 * 127 s wall (250 CPU s; efC 100 took 188 s) and reaches recall@10 0.938
 * at ef 768 and 0.960 at ef 1024 (2.9 ms in-process); the f32 graph at M
 * 16 / efC 64 built in 230 s and reached 0.955 at ef 1024, so the f32
 * graph stays at M 32 / efC 100. A graph of half the links needs a wider
 * beam: SN__GRAPH_EF_THIN times the rule. It was 2.8 (896 at 1M), which
 * measured 0.949 over the socket (bench/README.md, round 2); 3.2 gives
 * the measured 1024 at 1M (0.959; 204 at 10k). */
#define SN__GRAPH_M_SQ8 16
#define SN__GRAPH_EF_CONSTRUCTION_SQ8 64
#define SN__GRAPH_EF_THIN 3.2
#define SN__GRAPH_EF_BASE 64
#define SN__GRAPH_EF_BASE_N 10000
/* 96 per decade (256 at 1M) gave 0.947 at 1M over the socket, 384 gave
 * 0.977 (bench/README.md, "Search at a million"): 128 per decade puts
 * 1M at 320, which then measured 0.969 (in-process and over the socket,
 * 2.6 / 4.2 ms p50; "Round 2"). */
#define SN__GRAPH_EF_PER_DECADE 128

/* SQ8 graphs: searched for max(k * SN__SQ8_RERANK, ef / 2) candidates by
 * their approximate scores, which store.c rescores exactly from the
 * float vectors in SQLite before keeping the top k. */
#define SN__SQ8_RERANK 4

/* SN_INDEX_AUTO keeps Flat up to this many vectors of dimension 384
 * (scaled by 384 / dim for others: Flat's cost is n * dim), then rebuilds
 * as HNSW. Measured p50 with the vectorized inner product of faiss_c.cpp
 * (bench_search, clustered 384-d), Flat / HNSW: 5k 0.09 / 0.16 ms, 10k
 * 0.23 / 0.23, 15k 0.54 / 0.38, 20k 0.78 / 0.45, 30k 1.31 / 0.57, 50k
 * 2.34 / 0.64. Flat is exact, deletes in place and builds instantly, and
 * below ~1 ms the difference is small next to encoding the query; the
 * threshold is where Flat becomes twice as slow as HNSW. (With faiss'
 * scalar inner product it was 7k.) */
#define SN__AUTO_FLAT_MAX_384 25000

/* An HNSW index cannot remove vectors: deleted chunks stay in the graph as
 * tombstones, filtered out against SQLite at search. Once they pass this
 * share of the index, it is rebuilt from SQLite. */
#define SN__TOMBSTONE_REBUILD 0.25

/* Search over-fetches when hits may be dropped (tombstones, metadata
 * filters): k * SN__FILTER_OVERFETCH with a filter, k * ntotal / n_live
 * with tombstones, growing 4x per round. Past SN__SEARCH_MAX_FETCH
 * candidates, or when an HNSW search of the whole index came back short,
 * it falls back to an exact scan of the filtered rows in SQLite. */
#define SN__FILTER_OVERFETCH 8
#define SN__SEARCH_MAX_FETCH 4096

/* Background builds (sn_store_set_background): below these sizes a build
 * takes well under a second (bench/README.md: HNSW 10k in ~3 s on 2
 * cores, 2k in ~0.3 s; Flat only copies vectors) and runs inside the call
 * that needs it, as without background builds. */
#define SN__BACKGROUND_MIN_HNSW 2000
#define SN__BACKGROUND_MIN_FLAT 200000

/* Fusion (store.c, sn_store_query): hybrid = P + W_T * T + W_V * known *
 * trust * cosine, P and T the BM25 of the stemmed-word and trigram tables
 * over the query's ideal score. Tuned on a random half of each dev set's queries
 * (bench/bench_ir; the other half reported beside it in bench/README.md):
 * on debian-dev the two lexical lists together gain ~0.02 in Recall@10 and
 * MRR@10 over the word list alone at W_T 1 (0.5 and 1.5 within 0.005); on
 * korean-dev trigrams carry the list (words alone 0.72, with W_T 1 0.81).
 * The default model's cosine adds about 0.005-0.01 in MRR@10 on English
 * at W_V 0.3-0.5 (0.6-1.0 no better) and nothing on Korean (known ~0.3
 * there). */
#define SN__FUSE_W_TRIGRAM 1.0
#define SN__FUSE_W_VECTOR 0.4
/* How far the vector list is trusted on a query (store.c fuse_trust):
 * fully when the top SN__FUSE_AGREE documents of the two lists share at
 * least one, else only as far as the lexical list is unsure (its best
 * score under 1). A model whose vectors mean nothing for the collection
 * (random weights: hf fixtures) rarely shares a document with a confident
 * lexical list, and its cosines, however widely spread, then stay out:
 * on debian-dev with tiny-st5-dense (per-query cosine spread 0.24, twice
 * the default model's) a fixed weight cost MRR@10 0.006 (1.8 standard
 * errors) against the lexical list alone, trust costs 0.000. The default
 * model shares a document on 66% of English queries and keeps most of its
 * gain (MRR@10 0.769 with a fixed weight, 0.765 with trust; Korean
 * unchanged). bench/README.md has the figures. */
#define SN__FUSE_AGREE 10
/* Documents taken from each list before exact scoring. */
#define SN__FUSE_CANDIDATES 100

/* The limits (SN_STORE_MAX_*) are public: sense/store.h. */

/* ---- schema.c ------------------------------------------------------------ */

#define SN__SCHEMA_VERSION 4

/* The page size of a new database. A chunk row holds its vector (dim
 * float32: 2 KiB at 512 dimensions, 1.5 KiB at 384) plus ~30 bytes; at
 * SQLite's default 4 KiB pages only one such row fits a page, so half the
 * file was empty (187 MiB for 20,000 documents of 8.5 MB text). At 16 KiB
 * seven 512-d rows (ten 384-d) share a page: ~89-95% full. Measured with
 * bench/bench_ir (bytes per document, bench/README.md). An existing
 * database keeps its page size (changing it means a VACUUM outside WAL). */
#define SN__PAGE_SIZE 16384
/* How much of the database file SQLite reads through a memory map
 * (store.c, sn_store_open): all of it, up to the library's own cap. */
#define SN__MMAP_SIZE "17179869184"

/* On a database that has no pages yet, set SN__PAGE_SIZE (call before
 * anything writes it, journal mode included); otherwise do nothing. */
int sn__db_page_size(sqlite3 *db, char *err, size_t err_len);

typedef void (*sn__log_fn)(void *ud, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Bring the database to SN__SCHEMA_VERSION, one transaction per step. A
 * read-only database that needs a step fails with -EROFS; one newer than
 * this code with SN_ECORRUPT. */
int sn__schema_migrate(sqlite3 *db, int readonly, sn__log_fn log, void *ud,
                       char *err, size_t err_len);

/* Rebuild documents_fts when the word list its parts came from
 * (store_info 'lex_words') is not the one sn__words_stamp() names now
 * (WordNet installed or removed since): one transaction, logged. Nothing
 * to do on a read-only database (its searches use the parts it has). */
int sn__schema_words(sqlite3 *db, int readonly, sn__log_fn log, void *ud,
                     char *err, size_t err_len);

/* Map a SQLite result code to ours: SQLITE_FULL -ENOSPC, SQLITE_READONLY
 * -EROFS, SQLITE_PERM/AUTH/CANTOPEN(EACCES) -EACCES, SQLITE_IOERR the
 * system errno or -EIO, SQLITE_CORRUPT/NOTADB SN_ECORRUPT, SQLITE_BUSY
 * -EBUSY, SQLITE_NOMEM -ENOMEM, SQLITE_CONSTRAINT SN_EARG. */
int sn__sqlite_code(sqlite3 *db, int rc);

/* Before SQLite opens db_path: create it 0600 if missing, and strip group
 * and other bits from it and its -wal, -shm, -journal (SQLite makes those
 * with the database's mode). Best effort: a file we cannot open for
 * writing is left to SQLite. */
void sn__db_private(const char *db_path);

/* ---- lexical.c ---------------------------------------------------------- */

/* BM25's term-frequency saturation (k1) and length normalization (b), one
 * pair per table. Tuned on half A of debian-dev (bench_ir's split), coarse
 * grids, checked on half B and on korean-dev (bench/README.md):
 * - words: k1 0.6 (1.2 is the textbook value). A document that holds a
 *   query word once is nearly as good as one that repeats it: the queries
 *   are short descriptions, each word a different facet of the package,
 *   and matching more of the facets beats repeating one. MRR@10 +0.006 to
 *   +0.008 over 1.2 on both halves, flat from 0.4 to 0.8; b 0.75 (0.6 and
 *   0.9 within 0.004).
 * - trigrams: k1 1.2, b 0.5 (0.75 before). A long document repeats
 *   trigrams of common words; b 0.5 penalizes length less, b 0.5-0.65
 *   plateau, MRR@10 +0.004. Korean moved by under 0.005 with either change. */
#define SN__BM25_WORD_K1 0.6
#define SN__BM25_WORD_B 0.75
#define SN__BM25_TRI_K1 1.2
#define SN__BM25_TRI_B 0.5
/* Terms of one MATCH expression (words, or trigrams), and the bytes of a
 * query text that are looked at: past them a query is cut. */
#define SN__LEX_MAX_TERMS 256
#define SN__LEX_MAX_QUERY 4096

/* BM25's statistics for one collection: a database holds several, and
 * the FTS5 tables (with documents_tri_vocab) count over all of them. A
 * Korean collection beside an English one got the English documents'
 * counts in its idf and mean lengths: korean-dev lost 0.029 in Recall@10
 * and 0.023 in MRR@10 that way (bench/README.md), mostly through the
 * document frequencies. Read by sn__lex_stats (one pass over the
 * collection's rows in documents and the FTS5 docsize tables) and kept
 * until the database changes. */
typedef struct {
    int64_t n;             /* documents of the collection */
    int64_t *ids;          /* their ids, ascending */
    int64_t table_rows;    /* documents of every collection */
    double word_tokens;    /* summed lengths in documents_fts */
    double tri_tokens;     /* and in documents_tri */
    int64_t changes;       /* the database's state when read: */
    unsigned data_version; /* total changes and the pager's version */
    int valid;
} sn__lex_stats_t;

/* Fill (or keep, when the database has not changed since) s for the
 * collection `coll`. */
int sn__lex_stats(sqlite3 *db, int64_t coll, sn__lex_stats_t *s, char *err,
                  size_t err_len);
void sn__lex_stats_free(sn__lex_stats_t *s);
/* 1 when the collection is every document of the tables: then the
 * tables' own counts are the collection's. */
#define SN__LEX_WHOLE(s) ((s)->n == (s)->table_rows)

/* words.c: the parts of a word ("BigCache": "Big", "Cache"; "dataformat":
 * "data", "format"), indexed beside it by the FTS5 tokenizer 'sense_words'
 * and added to a query by lexical.c. A part is a span of the word's code
 * points. Words longer than SN__WORDS_MAX_CP code points are not split. */
typedef struct {
    int start, len;
} sn__span_t;
#define SN__WORDS_MAX_CP 64
#define SN__WORDS_MAX_PARTS 16
#define SN__WORDS_MIN_PART 3 /* letters in each half of a compound */
/* cp[0..n)'s parts into parts[0..max): their count, 0 when the word has
 * fewer than two. Reads the word list at the first call. */
int sn__words_split(const utf8proc_int32_t *cp, int n, sn__span_t *parts,
                    int max);
/* The word list the parts come from, as recorded in store_info
 * ('lex_words'): its size and hash, or that there is none. */
const char *sn__words_stamp(void);
/* Register the tokenizer 'sense_words' with a connection's FTS5. */
int sn__words_register(fts5_api *api);
/* Tests: the folder of WordNet's files to read the list from (default
 * SN_WORDNET_DIR), before the first call above. */
void sn__words_use_dir(const char *dir);

/* Register sense_rank() (BM25 over the query's ideal score, see lexical.c)
 * and the tokenizer 'sense_words' (words.c) on a connection. */
int sn__lex_register(sqlite3 *db, char *err, size_t err_len);
/* The FTS5 MATCH expressions of a query text: its words OR-ed (for
 * documents_fts) and its trigrams OR-ed (documents_tri), each term quoted
 * once (case-folded duplicates dropped). Either is NULL when the text has
 * none (no letter or digit; under 3 characters). Free both. In *words the
 * query's own words (*n_words of them) are followed by their parts
 * (words.c, *n_parts terms) and, with syn (may be NULL), by the words of
 * their WordNet synonyms; sense_rank weighs all but the own words
 * SN__LEX_SYN_WEIGHT (lexical.c). */
int sn__lex_match(const char *text, size_t len,
                  const sn_wordnet_syn_t *syn, char **words,
                  int *n_words, int *n_parts, char **trigrams, char *err,
                  size_t err_len);
/* The weight of a synonym's word against the query's own words in
 * sense_rank, and the shortest query word (code points) that is expanded.
 * Synonyms: the other words of the query word's first WordNet synset in
 * each part of speech ("gui" -> "graphical user interface", "internet" ->
 * "net cyberspace"). Measured with ir_tune's formulas on debian-dev
 * (bench/README.md): weight 0.35 gains MRR@10 +0.009 (half A +0.007,
 * half B +0.012) at an unchanged Recall@10 (0.890); 0.2-0.5 is a plateau,
 * 0.75 and over cost MRR; every sense instead of the first gains no more
 * and costs more terms. Words of one or two letters ("a", "in", "it") are
 * not expanded: their first synsets are units and acronyms. A synonym
 * word that stems like a query word counts nothing (the same token). */
/* The parts of query words (words.c) weigh the same: 0.25, 0.35 and 0.5
 * measured alike (hybrid Recall@10 0.900-0.902, MRR@10 0.773-0.776 on
 * debian-dev, ir_tune.py). */
#define SN__LEX_SYN_WEIGHT 0.35
#define SN__LEX_SYN_MIN_CP 3

/* A query's trigrams with their idf, to score candidates from their text
 * (lexical.c: why not through FTS5). */
typedef struct {
    int n;            /* distinct trigrams */
    uint64_t *keys;   /* sorted: three 21-bit case-folded code points */
    double *idf;      /* per key */
    double ideal;     /* sum of idf */
    double n_rows, avgdl;
} sn__tri_t;

/* The query's trigrams with their idf over the collection of `stats`. */
int sn__tri_query(sqlite3 *db, const char *text, size_t len,
                  const sn__lex_stats_t *stats, sn__tri_t *t, char *err,
                  size_t err_len);
/* BM25 of the document text over the query's ideal score (0 without
 * trigrams). */
double sn__tri_score(const sn__tri_t *t, const char *text, size_t len);
void sn__tri_free(sn__tri_t *t);

/* ---- ann.c: one collection's ANN index and its file ---------------------- */

/* Index kinds; the numbers are the file header's kind field. */
enum {
    SN__ANN_FLAT = 1,       /* faiss IDMap,Flat: exact, removes in place */
    SN__ANN_HNSW_FAISS = 2, /* faiss IDMap2,HNSW32,Flat: for comparison */
    SN__ANN_HNSW = 3,       /* hnswlib graph over float vectors (hnsw.cpp) */
    SN__ANN_HNSW_SQ8 = 4,   /* the same over 8-bit codes; rerank needed */
    SN__ANN_IVF = 5,        /* k-means lists of 8-bit codes (ivf.c); rerank */
};

struct sn__hnsw;
struct sn__ivf;

typedef struct sn__ann {
    int kind;                /* SN__ANN_* */
    FaissIndex *index;       /* Flat and faiss HNSW */
    struct sn__hnsw *graph;  /* SN__ANN_HNSW, SN__ANN_HNSW_SQ8 */
    struct sn__ivf *ivf;     /* SN__ANN_IVF */
    int hnsw;   /* approximate (a graph or the IVF): the store's "HNSW"
                 * collections; a graph's removals leave tombstones (n_dead),
                 * the IVF removes in place */
    int approx; /* scores approximate (SQ8): rerank from the vectors */
    int dim;
    int64_t n_dead;    /* vectors whose chunk is gone (graphs only) */
    int64_t max_rowid; /* highest chunk rowid ever added */
    int dirty;         /* differs from its file */
} sn__ann_t;

int sn__ann_new(int dim, int kind, sn__ann_t **out, char *err,
                size_t err_len);
void sn__ann_free(sn__ann_t *a);
const char *sn__ann_kind_name(int kind);
/* Vectors in the index, tombstones included. */
int64_t sn__ann_ntotal(const sn__ann_t *a);
/* A build's hint: n vectors are coming (the IVF trains its lists on them).
 * Before the first add; no-op for other kinds. */
void sn__ann_expect(sn__ann_t *a, int64_t n);
/* 1: the index has grown past what it was built for (the IVF at
 * SN__IVF_REGROW times its training size): store.c rebuilds it. */
int sn__ann_outgrown(const sn__ann_t *a);
/* Add n vectors (n x dim floats) under the given ids. */
int sn__ann_add(sn__ann_t *a, int64_t n, const float *vecs,
                const int64_t *ids, char *err, size_t err_len);
/* Forget ids: removed from a Flat index; tombstones in a graph (hnswlib's
 * are marked deleted and skipped by searches; faiss' are only counted). */
int sn__ann_remove(sn__ann_t *a, int64_t n, const int64_t *ids, char *err,
                   size_t err_len);
/* Graphs: ids[0..n) are ALL the ids in the index whose chunks are gone
 * (catch-up after loading a file); n_dead becomes n. */
void sn__ann_tombstones(sn__ann_t *a, int64_t n, const int64_t *ids);
/* The efSearch a graph search of k uses in an index of ntotal vectors
 * when the caller gives none (the rule is explained in ann.c). */
int64_t sn__ann_ef(int64_t ntotal, int64_t k);
/* What a search of k in a uses when the caller gives no ef: the rule for
 * an M 32 graph, SN__GRAPH_EF_THIN times it for a thinner one, the IVF's
 * lists probed (ivf.c). */
int64_t sn__ann_default_ef(const sn__ann_t *a, int64_t k);
/* Top k of one query, best first: labels -1 past the end. ef: the graph's
 * beam (<= 0: sn__ann_ef); Flat is exact and faiss HNSW keeps its own
 * (SN__HNSW_EF_SEARCH), both ignore it. With a->approx the scores are
 * estimates: the caller reranks. */
int sn__ann_search(const sn__ann_t *a, const float *q, int64_t k, int64_t ef,
                   float *scores, int64_t *labels, char *err,
                   size_t err_len);
/* The ids in the index, sorted ascending (malloc'd). */
int sn__ann_ids(const sn__ann_t *a, int64_t **ids_out, int64_t *n_out,
                char *err, size_t err_len);
/* same[i]: the index holds vecs[i] (n x dim) under ids[i] (ids sorted
 * ascending, distinct) -- bit for bit, or for SQ8 the same codes. One pass
 * over the id map for faiss: for a handful of ids. */
int sn__ann_same(const sn__ann_t *a, int64_t n, const int64_t *ids,
                 const float *vecs, int *same, char *err, size_t err_len);
/* Bytes the index holds per vector (vector or codes, links, id), not
 * counting allocator and hash-table overhead. */
size_t sn__ann_bytes_per_vector(const sn__ann_t *a);

/* What an index file was built for: the database (a random id drawn when
 * the database was created, store_info.db_id), the collection's row id,
 * and a tag hashed from the collection's name, model, dimension and
 * creation time. */
typedef struct {
    uint8_t db_id[16];
    int64_t collection;
    uint64_t tag;
} sn__ann_ident_t;

/* The index file: a 96-byte header, then faiss' own serialization (Flat,
 * faiss HNSW) or hnsw.cpp's (the hnswlib graphs).
 *
 *   0  "SENSEIDX"      magic
 *   8  u32 format      2 (1: before the identity fields; rebuilt)
 *  12  u32 kind        SN__ANN_*: 1 Flat, 2 faiss HNSW, 3 HNSW, 4 HNSW SQ8,
 *                      5 IVF
 *  16  i64 collection  collections.id it belongs to
 *  24  u32 dim
 *  28  u32 reserved    0
 *  32  i64 max_rowid   high-water mark: the highest chunk rowid added
 *  40  i64 ntotal      vectors in the payload (tombstones included)
 *  48  i64 n_dead      tombstones among them (HNSW)
 *  56  u64 payload_len bytes after the header
 *  64  u8[16] db_id    the database's random id
 *  80  u64 tag         the collection's tag (sn__ann_ident_t)
 *  88  u64 checksum    over bytes 0..88 and the payload
 *
 * All little-endian. The high-water mark and counts say what the file
 * reflects: store.c refuses a file whose high-water mark is past the
 * highest chunk rowid the database ever handed out (a database restored
 * from a backup older than the file: those rowids will be handed out
 * again, for other chunks). What catch-up trusts otherwise is the id set
 * itself, compared with SQLite's. Saving writes <path>.tmp (mode 0600),
 * fsyncs it, renames it over <path> and fsyncs the directory: a crash
 * leaves the old file or the new one, never a mix. */
#define SN__ANN_HEADER_LEN 96
int sn__ann_save(const sn__ann_t *a, const char *path,
                 const sn__ann_ident_t *id, char *err, size_t err_len);
/* Load and check (magic, format, identity, dim, size, checksum, then
 * faiss' own parse). Any mismatch is SN_ECORRUPT; a missing file -ENOENT. */
int sn__ann_load(const char *path, const sn__ann_ident_t *id, int dim,
                 sn__ann_t **out, char *err, size_t err_len);

/* Set faiss' OpenMP team size for the calling thread (store.c: 1 for
 * searches and per-document adds, sn__ann_build_threads() for a rebuild or
 * a catch-up). */
void sn__ann_threads(int n);
/* Threads for bulk builds: $OMP_NUM_THREADS if set, else every core. */
int sn__ann_build_threads(void);

/* ---- store.c: test hooks -------------------------------------------------- */

/* The store's connection, for tests that need to provoke failures
 * (PRAGMA max_page_count). Not for production use. */
sqlite3 *sn__store_db(sn_store_t *st);

#endif
