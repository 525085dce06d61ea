/*
 * ann.c -- one collection's approximate-nearest-neighbour index: a faiss
 * Flat index behind its C API or an HNSW graph (hnsw.cpp: hnswlib over our
 * own kernels, float vectors or 8-bit codes; faiss' IndexHNSW is kept as a
 * kind for comparison) or an inverted file of 8-bit codes (ivf.c), and
 * the file it is saved to.
 *
 * The index is an accelerator, never the truth: SQLite holds every vector
 * (chunks.vector) and store.c rebuilds or catches the index up from there.
 * So this file only has to be fast and to never hand back a damaged index:
 *
 *   - vector ids are chunk rowids (AUTOINCREMENT, never reused): faiss'
 *     IDMap wrapper, hnswlib's labels. Kinds (SN__ANN_*): "IDMap,Flat"
 *     (exact; remove_ids works); the hnswlib graph (approximate; a
 *     deletion marks the node deleted -- searches skip it -- and counts a
 *     tombstone until SN__TOMBSTONE_REBUILD rebuilds); the same graph over
 *     8-bit codes (scores approximate: store.c reranks from SQLite);
 *     "IDMap2,HNSW<M>,Flat" (faiss cannot remove from HNSW: a deletion only
 *     counts a tombstone and store.c filters hits against SQLite). Inner
 *     product on L2-normalized vectors: the score is cosine.
 *   - the file is a 96-byte header (see store_int.h) and faiss' own
 *     serialization or hnsw.cpp's. The header names the database (its random id) and
 *     the collection (its row id and a tag of its name, model and creation
 *     time) the index was built for: a file that outlived its database, or
 *     a collection dropped and made again under the same row id, is
 *     refused like a corrupt one, and store.c rebuilds. The checksum covers the header and the payload and is
 *     verified by streaming the file once before faiss parses a byte of it,
 *     so a torn or bit-flipped file is refused instead of being trusted
 *     with, say, a corrupted vector count. Saving is write temp, fsync,
 *     rename, fsync the directory.
 *
 * Workload: single-query searches; adds of a few chunks per document; whole
 * rebuilds rarely (first open, an AUTO collection crossing to HNSW, HNSW
 * tombstones past SN__TOMBSTONE_REBUILD). Files up to a few hundred MB are
 * read twice at open (checksum, then parse); the second read comes from the
 * page cache.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/MetaIndexes_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>

#include "embed_int.h"
#include "hnsw.h"
#include "ivf.h"
#include "store_int.h"

#define ANN_MAGIC "SENSEIDX"
#define ANN_FORMAT 2u
#define ANN_IO_BLOCK (1u << 20)

/* faiss' message for the call that just failed on this thread. */
static const char *ferr(void)
{
    const char *m = faiss_get_last_error();
    return m ? m : "unknown faiss error";
}

void sn__ann_threads(int n)
{
    omp_set_num_threads(n > 0 ? n : 1);
}

/* OMP_NUM_THREADS when set (the first number of a list), else every core.
 * Read from the environment, not omp_get_max_threads(): the calling thread
 * has usually set its own team size to 1 already. */
int sn__ann_build_threads(void)
{
    const char *env = getenv("OMP_NUM_THREADS");
    long n = env ? strtol(env, NULL, 10) : 0;
    return n > 0 && n < 4096 ? (int)n : omp_get_num_procs();
}

/* ---- checksum --------------------------------------------------------------
 * A 64-bit multiply-rotate hash over 8-byte words: each step is a bijection
 * of the state, so any single corrupted word changes the result. Not
 * cryptographic; it detects torn writes and bit rot. */

typedef struct {
    uint64_t h;
} sum_t;

static void sum_init(sum_t *s) { s->h = 0xcbf29ce484222325ull; }

static void sum_update(sum_t *s, const uint8_t *p, size_t len)
{
    uint64_t h = s->h, w;
    for (; len >= 8; p += 8, len -= 8) {
        memcpy(&w, p, 8);
        h = (((h << 23) | (h >> 41)) ^ w) * 0x9e3779b97f4a7c15ull;
    }
    for (; len; p++, len--) /* only ever the last call's tail */
        h = (((h << 23) | (h >> 41)) ^ *p) * 0x9e3779b97f4a7c15ull;
    s->h = h;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* ---- the index ------------------------------------------------------------ */

/* efConstruction only matters while adding, efSearch while searching; both
 * are set on every new or loaded faiss HNSW index (whose efSearch is
 * fixed: a faiss index holds one, shared by concurrent searches). */
static int set_hnsw_params(FaissIndex *idx, char *err, size_t err_len)
{
    FaissParameterSpace *ps = NULL;
    int rc = 0;

    if (faiss_ParameterSpace_new(&ps) ||
        faiss_ParameterSpace_set_index_parameter(
            ps, idx, "efConstruction", SN__HNSW_EF_CONSTRUCTION) ||
        faiss_ParameterSpace_set_index_parameter(ps, idx, "efSearch",
                                                 SN__HNSW_EF_SEARCH))
        rc = sn__err(err, err_len, -ENOMEM, "faiss: cannot set hnsw "
                     "parameters: %s", ferr());
    faiss_ParameterSpace_free(ps);
    return rc;
}

const char *sn__ann_kind_name(int kind)
{
    switch (kind) {
    case SN__ANN_FLAT: return "flat";
    case SN__ANN_HNSW_FAISS: return "hnsw (faiss)";
    case SN__ANN_HNSW: return "hnsw";
    case SN__ANN_HNSW_SQ8: return "hnsw (sq8)";
    case SN__ANN_IVF: return "ivf";
    }
    return "?";
}

static int is_graph(int kind)
{
    return kind == SN__ANN_HNSW || kind == SN__ANN_HNSW_SQ8;
}

int sn__ann_new(int dim, int kind, sn__ann_t **out, char *err,
                size_t err_len)
{
    sn__ann_t *a = NULL;
    char desc[64];
    int rc;

    *out = NULL;
    if (dim <= 0 || dim > SN_STORE_MAX_DIM)
        return sn__err(err, err_len, SN_EARG, "index: bad dimension %d", dim);
    if (kind < SN__ANN_FLAT || kind > SN__ANN_IVF)
        return sn__err(err, err_len, SN_EARG, "index: bad kind %d", kind);
    a = calloc(1, sizeof *a);
    if (!a)
        return sn__err(err, err_len, -ENOMEM, "index: out of memory");
    a->kind = kind;
    a->hnsw = kind != SN__ANN_FLAT;
    a->approx = kind == SN__ANN_HNSW_SQ8 || kind == SN__ANN_IVF;
    a->dim = dim;
    if (kind == SN__ANN_IVF) {
        if ((rc = sn__ivf_new(dim, &a->ivf, err, err_len)) < 0)
            goto fail;
        *out = a;
        return 0;
    }
    if (is_graph(kind)) {
        int sq8 = kind == SN__ANN_HNSW_SQ8;
        if ((rc = sn__hnsw_new(dim, sq8, sq8 ? SN__GRAPH_M_SQ8 : SN__GRAPH_M,
                               sq8 ? SN__GRAPH_EF_CONSTRUCTION_SQ8
                                   : SN__GRAPH_EF_CONSTRUCTION,
                               &a->graph, err,
                               err_len)) < 0)
            goto fail;
        *out = a;
        return 0;
    }
    if (kind == SN__ANN_HNSW_FAISS)
        snprintf(desc, sizeof desc, "IDMap2,HNSW%d,Flat", SN__HNSW_M);
    else
        snprintf(desc, sizeof desc, "IDMap,Flat");
    if (faiss_index_factory(&a->index, dim, desc, METRIC_INNER_PRODUCT)) {
        rc = sn__err(err, err_len, -ENOMEM, "faiss: cannot make '%s': %s",
                     desc, ferr());
        goto fail;
    }
    if (a->hnsw && (rc = set_hnsw_params(a->index, err, err_len)) < 0)
        goto fail;
    *out = a;
    return 0;
fail:
    sn__ann_free(a);
    return rc;
}

void sn__ann_free(sn__ann_t *a)
{
    if (!a)
        return;
    if (a->index)
        faiss_Index_free(a->index);
    sn__hnsw_free(a->graph);
    sn__ivf_free(a->ivf);
    free(a);
}

int64_t sn__ann_ntotal(const sn__ann_t *a)
{
    if (!a)
        return 0;
    if (a->ivf)
        return sn__ivf_count(a->ivf);
    return a->graph ? sn__hnsw_count(a->graph) : faiss_Index_ntotal(a->index);
}

void sn__ann_expect(sn__ann_t *a, int64_t n)
{
    if (a && a->ivf)
        sn__ivf_expect(a->ivf, n, 0);
}

int sn__ann_outgrown(const sn__ann_t *a)
{
    return a && a->ivf && sn__ivf_outgrown(a->ivf);
}

int sn__ann_add(sn__ann_t *a, int64_t n, const float *vecs,
                const int64_t *ids, char *err, size_t err_len)
{
    int rc;

    if (n <= 0)
        return 0;
    if (a->ivf) {
        if ((rc = sn__ivf_add(a->ivf, n, vecs, ids, err, err_len)) < 0)
            return rc;
    } else if (a->graph) {
        if ((rc = sn__hnsw_add(a->graph, n, vecs, ids, err, err_len)) < 0)
            return rc;
    } else if (faiss_Index_add_with_ids(a->index, n, vecs, ids)) {
        return sn__err(err, err_len, -ENOMEM, "faiss: add of %lld vectors "
                       "failed: %s", (long long)n, ferr());
    }
    for (int64_t i = 0; i < n; i++)
        if (ids[i] > a->max_rowid)
            a->max_rowid = ids[i];
    a->dirty = 1;
    return 0;
}

int sn__ann_remove(sn__ann_t *a, int64_t n, const int64_t *ids, char *err,
                   size_t err_len)
{
    FaissIDSelectorBatch *sel = NULL;
    size_t n_removed = 0;

    if (n <= 0)
        return 0;
    a->dirty = 1;
    if (a->ivf)
        return sn__ivf_remove(a->ivf, n, ids, NULL, err, err_len);
    if (a->graph) {
        sn__hnsw_mark_deleted(a->graph, n, ids);
        a->n_dead = sn__hnsw_n_deleted(a->graph);
        return 0;
    }
    if (a->hnsw) {
        a->n_dead += n;
        return 0;
    }
    if (faiss_IDSelectorBatch_new(&sel, (size_t)n, ids))
        return sn__err(err, err_len, -ENOMEM, "faiss: %s", ferr());
    int frc = faiss_Index_remove_ids(a->index, (const FaissIDSelector *)sel,
                                     &n_removed);
    if (frc)
        sn__err(err, err_len, -EIO, "faiss: remove of %lld vectors failed: "
                "%s", (long long)n, ferr());
    faiss_IDSelector_free((FaissIDSelector *)sel);
    return frc ? -EIO : 0;
}

void sn__ann_tombstones(sn__ann_t *a, int64_t n, const int64_t *ids)
{
    int64_t before = a->n_dead, gone = 0;

    if (a->ivf) { /* no tombstones: the ids come out (n_dead stays 0) */
        if (sn__ivf_remove(a->ivf, n, ids, &gone, NULL, 0) < 0)
            gone = 0; /* out of memory: they stay, filtered by store.c */
        a->dirty |= gone > 0;
        return;
    }
    if (a->graph) {
        sn__hnsw_mark_deleted(a->graph, n, ids);
        a->n_dead = sn__hnsw_n_deleted(a->graph);
    } else {
        a->n_dead = n;
    }
    a->dirty |= a->n_dead != before;
}

/* The beam of a graph search: efSearch grows with the collection.
 *
 * A graph search walks from the entry point towards the query keeping the
 * ef best nodes seen; the share of the true top k among them falls as the
 * graph grows (more nodes between the query's neighbours and the rest,
 * longer paths, more local optima), so a fixed ef that gives 0.97 at 100k
 * gives 0.84 at 1M (bench/README.md). Measured on clustered 384-d vectors
 * (bench_search, recall@10 >= 0.95 as the goal), the ef needed grows about
 * linearly in log(n): SN__GRAPH_EF_BASE at SN__GRAPH_EF_BASE_N vectors or
 * fewer, plus SN__GRAPH_EF_PER_DECADE for each tenfold beyond. It is
 * never below k (a beam narrower than k cannot return k). */
int64_t sn__ann_ef(int64_t ntotal, int64_t k)
{
    double ef = SN__GRAPH_EF_BASE;

    if (ntotal > SN__GRAPH_EF_BASE_N)
        ef += SN__GRAPH_EF_PER_DECADE *
              log10((double)ntotal / SN__GRAPH_EF_BASE_N);
    return (int64_t)ef > k ? (int64_t)ef : k;
}

int64_t sn__ann_default_ef(const sn__ann_t *a, int64_t k)
{
    if (a->ivf)
        return sn__ivf_nprobe(a->ivf);
    if (!a->graph)
        return sn__ann_ef(sn__ann_ntotal(a), k);
    /* a graph with fewer links than SN__GRAPH_M (the SQ8 graph): a wider
     * beam, SN__GRAPH_EF_THIN times the rule's */
    if (sn__hnsw_m(a->graph) < SN__GRAPH_M)
        return (int64_t)(SN__GRAPH_EF_THIN *
                         sn__ann_ef(sn__hnsw_count(a->graph), k));
    return sn__ann_ef(sn__hnsw_count(a->graph), k);
}

int sn__ann_search(const sn__ann_t *a, const float *q, int64_t k, int64_t ef,
                   float *scores, int64_t *labels, char *err,
                   size_t err_len)
{
    if (a->ivf) /* ef: the lists probed */
        return sn__ivf_search(a->ivf, q, k, ef, scores, labels, err,
                              err_len);
    if (a->graph) {
        if (ef <= 0)
            ef = sn__ann_default_ef(a, k);
        return sn__hnsw_search(a->graph, q, k, ef, scores, labels, err,
                               err_len);
    }
    if (faiss_Index_search(a->index, 1, q, k, scores, labels))
        return sn__err(err, err_len, -ENOMEM, "faiss: search failed: %s",
                       ferr());
    return 0;
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

int sn__ann_ids(const sn__ann_t *a, int64_t **ids_out, int64_t *n_out,
                char *err, size_t err_len)
{
    FaissIndexIDMap *m = a->index ? faiss_IndexIDMap_cast(a->index) : NULL;
    idx_t *map = NULL;
    size_t n = 0;
    int64_t *ids;

    *ids_out = NULL;
    *n_out = 0;
    if (a->ivf)
        n = (size_t)sn__ivf_count(a->ivf);
    else if (a->graph)
        n = (size_t)sn__hnsw_count(a->graph);
    else if (!m)
        return sn__err(err, err_len, SN_ECORRUPT, "index: not an id map");
    else
        faiss_IndexIDMap_id_map(m, &map, &n);
    ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids)
        return sn__err(err, err_len, -ENOMEM, "index: out of memory");
    if (a->ivf)
        sn__ivf_ids(a->ivf, ids);
    else if (a->graph)
        sn__hnsw_ids(a->graph, ids);
    else if (n)
        memcpy(ids, map, n * sizeof *ids);
    qsort(ids, n, sizeof *ids, cmp_i64);
    *ids_out = ids;
    *n_out = (int64_t)n;
    return 0;
}

int sn__ann_same(const sn__ann_t *a, int64_t n, const int64_t *ids,
                 const float *vecs, int *same, char *err, size_t err_len)
{
    FaissIndexIDMap *m;
    idx_t *map = NULL;
    size_t n_map = 0;
    float *v = NULL;

    if (a->ivf)
        return sn__ivf_same(a->ivf, ids, n, vecs, same, err, err_len);
    if (a->graph)
        return sn__hnsw_same(a->graph, ids, n, vecs, same);
    for (int64_t i = 0; i < n; i++)
        same[i] = 0;
    if (!(m = faiss_IndexIDMap_cast(a->index)))
        return sn__err(err, err_len, SN_ECORRUPT, "index: not an id map");
    if (!(v = malloc((size_t)a->dim * sizeof *v)))
        return sn__err(err, err_len, -ENOMEM, "index: out of memory");
    FaissIndex *sub = faiss_IndexIDMap_sub_index(m);
    faiss_IndexIDMap_id_map(m, &map, &n_map);
    for (size_t pos = 0; pos < n_map; pos++) {
        const int64_t *hit = n > 0 ? bsearch(&map[pos], ids, (size_t)n,
                                             sizeof *ids, cmp_i64)
                                   : NULL;
        if (!hit)
            continue;
        int64_t i = hit - ids;
        if (faiss_Index_reconstruct(sub, (idx_t)pos, v)) {
            free(v);
            return sn__err(err, err_len, -ENOMEM, "faiss: cannot read "
                           "vector #%lld back: %s", (long long)map[pos],
                           ferr());
        }
        same[i] = !memcmp(v, vecs + i * a->dim, (size_t)a->dim * sizeof *v);
    }
    free(v);
    return 0;
}

size_t sn__ann_bytes_per_vector(const sn__ann_t *a)
{
    if (a->ivf)
        return sn__ivf_bytes_per_vector(a->ivf);
    if (a->graph)
        return sn__hnsw_bytes_per_vector(a->graph);
    /* the vector, its id (IDMap), and for faiss HNSW the level-0 links */
    return (size_t)a->dim * sizeof(float) + sizeof(int64_t) +
           (a->hnsw ? 2 * SN__HNSW_M * sizeof(int32_t) : 0);
}

/* ---- the file -------------------------------------------------------------- */

static int fsync_dir_of(const char *path)
{
    char *copy = strdup(path);
    int fd, rc = 0;

    if (!copy)
        return -ENOMEM;
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0)
        rc = -errno;
    if (fd >= 0)
        close(fd);
    free(copy);
    return rc;
}

static int write_all(int fd, const uint8_t *p, size_t len, off_t off)
{
    while (len) {
        ssize_t w = pwrite(fd, p, len, off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        len -= (size_t)w;
        off += w;
    }
    return 0;
}

/* Read exactly len bytes at off; -EIO on a short file. */
static int read_all(int fd, uint8_t *p, size_t len, off_t off)
{
    while (len) {
        ssize_t r = pread(fd, p, len, off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -EIO;
        p += r;
        len -= (size_t)r;
        off += r;
    }
    return 0;
}

/* Checksum of the header but its last 8 bytes, and the len payload bytes after the header. */
static int sum_file(int fd, const uint8_t *hdr, uint64_t len, uint64_t *out)
{
    uint8_t *buf = malloc(ANN_IO_BLOCK);
    uint64_t off = 0;
    sum_t s;
    int rc = 0;

    if (!buf)
        return -ENOMEM;
    sum_init(&s);
    sum_update(&s, hdr, SN__ANN_HEADER_LEN - 8); /* all but the checksum */
    while (off < len) {
        size_t n = len - off < ANN_IO_BLOCK ? (size_t)(len - off)
                                            : ANN_IO_BLOCK;
        if ((rc = read_all(fd, buf, n, (off_t)(SN__ANN_HEADER_LEN + off))))
            break;
        sum_update(&s, buf, n);
        off += n;
    }
    free(buf);
    *out = s.h;
    return rc;
}

int sn__ann_save(const sn__ann_t *a, const char *path,
                 const sn__ann_ident_t *id, char *err, size_t err_len)
{
    uint8_t hdr[SN__ANN_HEADER_LEN] = {0};
    char tmp[4096];
    FILE *f = NULL;
    int fd = -1, rc;
    struct stat sb;
    uint64_t sum;

    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return sn__err(err, err_len, SN_ETOOBIG, "'%s': path too long",
                       path);
    /* 0600 whatever the umask, and whatever mode a stale temp file had:
     * the index holds the documents' vectors. */
    fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return sn__err(err, err_len, -errno, "cannot create '%s': %s", tmp,
                       strerror(errno));
    if (fchmod(fd, 0600) != 0) {
        rc = sn__err(err, err_len, -errno, "cannot chmod '%s': %s", tmp,
                     strerror(errno));
        goto fail;
    }
    /* faiss writes through a FILE*; the header goes in last, with the
     * checksum of what actually reached the file. */
    int fd2 = dup(fd);
    if (fd2 < 0 || !(f = fdopen(fd2, "wb"))) {
        rc = sn__err(err, err_len, -errno, "'%s': %s", tmp, strerror(errno));
        if (fd2 >= 0)
            close(fd2);
        goto fail;
    }
    if (fseeko(f, SN__ANN_HEADER_LEN, SEEK_SET) != 0) {
        rc = sn__err(err, err_len, -errno, "'%s': %s", tmp, strerror(errno));
        goto fail;
    }
    if (a->ivf) {
        char why[256];
        if ((rc = sn__ivf_write(a->ivf, f, why, sizeof why)) < 0) {
            sn__err(err, err_len, rc, "cannot write '%s': %s", tmp, why);
            goto fail;
        }
    } else if (a->graph) {
        char why[256];
        if ((rc = sn__hnsw_write(a->graph, f, why, sizeof why)) < 0) {
            sn__err(err, err_len, rc, "cannot write '%s': %s", tmp, why);
            goto fail;
        }
    } else if (faiss_write_index(a->index, f)) {
        /* faiss reports a failed fwrite without errno; a full disk is the
         * usual cause, but say what faiss said. */
        rc = sn__err(err, err_len, -EIO, "cannot write '%s': %s", tmp,
                     ferr());
        goto fail;
    }
    if (fflush(f) != 0 || ferror(f)) {
        int e = errno ? errno : EIO;
        rc = sn__err(err, err_len, -e, "cannot write '%s': %s", tmp,
                     strerror(e));
        goto fail;
    }
    fclose(f);
    f = NULL;
    if (fstat(fd, &sb) != 0 || sb.st_size < SN__ANN_HEADER_LEN) {
        rc = sn__err(err, err_len, -EIO, "'%s': short file", tmp);
        goto fail;
    }
    memcpy(hdr, ANN_MAGIC, 8);
    put_u32(hdr + 8, ANN_FORMAT);
    put_u32(hdr + 12, (uint32_t)a->kind);
    put_u64(hdr + 16, (uint64_t)id->collection);
    put_u32(hdr + 24, (uint32_t)a->dim);
    put_u64(hdr + 32, (uint64_t)a->max_rowid);
    put_u64(hdr + 40, (uint64_t)sn__ann_ntotal(a));
    put_u64(hdr + 48, (uint64_t)a->n_dead);
    put_u64(hdr + 56, (uint64_t)sb.st_size - SN__ANN_HEADER_LEN);
    memcpy(hdr + 64, id->db_id, sizeof id->db_id);
    put_u64(hdr + 80, id->tag);
    if ((rc = sum_file(fd, hdr, (uint64_t)sb.st_size - SN__ANN_HEADER_LEN,
                       &sum)) < 0) {
        sn__err(err, err_len, rc, "cannot read back '%s': %s", tmp,
                strerror(-rc));
        goto fail;
    }
    put_u64(hdr + 88, sum);
    if ((rc = write_all(fd, hdr, sizeof hdr, 0)) < 0 ||
        (fsync(fd) != 0 && (rc = -errno))) {
        sn__err(err, err_len, rc, "cannot write '%s': %s", tmp,
                strerror(-rc));
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = sn__err(err, err_len, -errno, "cannot write '%s': %s", tmp,
                     strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = sn__err(err, err_len, -errno, "cannot rename '%s' to '%s': %s",
                     tmp, path, strerror(errno));
        goto fail;
    }
    if ((rc = fsync_dir_of(path)) < 0)
        return sn__err(err, err_len, rc, "cannot sync the directory of "
                       "'%s': %s", path, strerror(-rc));
    return 0;
fail:
    if (f)
        fclose(f);
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return rc;
}

int sn__ann_load(const char *path, const sn__ann_ident_t *id, int dim,
                 sn__ann_t **out, char *err, size_t err_len)
{
    uint8_t hdr[SN__ANN_HEADER_LEN];
    sn__ann_t *a = NULL;
    FILE *f = NULL;
    struct stat sb;
    uint64_t payload_len, sum;
    uint32_t kind;
    int fd, rc;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sn__err(err, err_len, -errno, "'%s': %s", path,
                       strerror(errno));
    if (fstat(fd, &sb) != 0) {
        rc = sn__err(err, err_len, -errno, "'%s': %s", path, strerror(errno));
        goto fail;
    }
    if (sb.st_size < SN__ANN_HEADER_LEN ||
        read_all(fd, hdr, sizeof hdr, 0) != 0) {
        rc = sn__err(err, err_len, SN_ECORRUPT, "'%s': truncated header",
                     path);
        goto fail;
    }
    kind = get_u32(hdr + 12);
    payload_len = get_u64(hdr + 56);
    if (memcmp(hdr, ANN_MAGIC, 8) != 0) {
        rc = sn__err(err, err_len, SN_ECORRUPT, "'%s': not a sense index "
                     "file (bad magic)", path);
        goto fail;
    }
    if (get_u32(hdr + 8) != ANN_FORMAT) {
        rc = sn__err(err, err_len, SN_ECORRUPT, "'%s': format %u, expected "
                     "%u", path, get_u32(hdr + 8), ANN_FORMAT);
        goto fail;
    }
    if (kind < SN__ANN_FLAT || kind > SN__ANN_IVF) {
        rc = sn__err(err, err_len, SN_ECORRUPT, "'%s': unknown kind %u",
                     path, kind);
        goto fail;
    }
    if (memcmp(hdr + 64, id->db_id, sizeof id->db_id) != 0) {
        rc = sn__err(err, err_len, SN_ECORRUPT, "'%s': built for another "
                     "database (the database was replaced or recreated)",
                     path);
        goto fail;
    }
    if ((int64_t)get_u64(hdr + 16) != id->collection ||
        get_u64(hdr + 80) != id->tag) {
        rc = sn__err(err, err_len, SN_ECORRUPT, "'%s': built for another "
                     "collection (#%lld, tag %016llx), not #%lld (tag "
                     "%016llx)", path, (long long)get_u64(hdr + 16),
                     (unsigned long long)get_u64(hdr + 80),
                     (long long)id->collection,
                     (unsigned long long)id->tag);
        goto fail;
    }
    if (get_u32(hdr + 24) != (uint32_t)dim) {
        rc = sn__err(err, err_len, SN_ECORRUPT, "'%s': dimension %u, "
                     "expected %d", path, get_u32(hdr + 24), dim);
        goto fail;
    }
    if (payload_len != (uint64_t)sb.st_size - SN__ANN_HEADER_LEN) {
        rc = sn__err(err, err_len, SN_ECORRUPT, "'%s': payload length %llu, "
                     "file holds %llu", path, (unsigned long long)payload_len,
                     (unsigned long long)sb.st_size - SN__ANN_HEADER_LEN);
        goto fail;
    }
    if ((rc = sum_file(fd, hdr, payload_len, &sum)) < 0) {
        sn__err(err, err_len, rc, "'%s': %s", path, strerror(-rc));
        goto fail;
    }
    if (sum != get_u64(hdr + 88)) {
        rc = sn__err(err, err_len, SN_ECORRUPT, "'%s': checksum mismatch",
                     path);
        goto fail;
    }
    a = calloc(1, sizeof *a);
    if (!a) {
        rc = sn__err(err, err_len, -ENOMEM, "'%s': out of memory", path);
        goto fail;
    }
    int fd2 = dup(fd);
    if (fd2 < 0 || !(f = fdopen(fd2, "rb"))) {
        rc = sn__err(err, err_len, -errno, "'%s': %s", path, strerror(errno));
        if (fd2 >= 0)
            close(fd2);
        goto fail;
    }
    if (fseeko(f, SN__ANN_HEADER_LEN, SEEK_SET) != 0) {
        rc = sn__err(err, err_len, -errno, "'%s': %s", path, strerror(errno));
        goto fail;
    }
    a->kind = (int)kind;
    a->hnsw = kind != SN__ANN_FLAT;
    a->approx = kind == SN__ANN_HNSW_SQ8 || kind == SN__ANN_IVF;
    a->dim = dim;
    if (a->kind == SN__ANN_IVF) {
        char why[256];
        if ((rc = sn__ivf_read(f, dim, &a->ivf, why, sizeof why)) < 0) {
            sn__err(err, err_len, rc, "'%s': %s", path, why);
            goto fail;
        }
        if (sn__ivf_count(a->ivf) != (int64_t)get_u64(hdr + 40)) {
            rc = sn__err(err, err_len, SN_ECORRUPT, "'%s': index does not "
                         "match its header", path);
            goto fail;
        }
    } else if (is_graph(a->kind)) {
        char why[256];
        if ((rc = sn__hnsw_read(f, dim, &a->graph, why, sizeof why)) < 0) {
            sn__err(err, err_len, rc, "'%s': %s", path, why);
            goto fail;
        }
        /* hnswlib's own kind is in the payload too: they must agree */
        if (sn__hnsw_count(a->graph) != (int64_t)get_u64(hdr + 40) ||
            sn__hnsw_is_sq8(a->graph) != (kind == SN__ANN_HNSW_SQ8)) {
            rc = sn__err(err, err_len, SN_ECORRUPT, "'%s': index does not "
                         "match its header", path);
            goto fail;
        }
    } else if (faiss_read_index(f, 0, &a->index)) {
        rc = sn__err(err, err_len, SN_ECORRUPT, "'%s': faiss cannot read "
                     "it: %s", path, ferr());
        goto fail;
    }
    if (ftello(f) != sb.st_size) {
        rc = sn__err(err, err_len, SN_ECORRUPT, "'%s': trailing bytes after "
                     "the index", path);
        goto fail;
    }
    if (a->index &&
        (faiss_Index_d(a->index) != dim ||
         faiss_Index_metric_type(a->index) != METRIC_INNER_PRODUCT ||
         !faiss_IndexIDMap_cast(a->index) ||
         faiss_Index_ntotal(a->index) != (idx_t)get_u64(hdr + 40))) {
        rc = sn__err(err, err_len, SN_ECORRUPT, "'%s': index does not match "
                     "its header", path);
        goto fail;
    }
    a->max_rowid = (int64_t)get_u64(hdr + 32);
    if (a->ivf)
        a->n_dead = 0;
    else if (a->graph)
        a->n_dead = sn__hnsw_n_deleted(a->graph);
    else
        a->n_dead = a->hnsw ? (int64_t)get_u64(hdr + 48) : 0;
    if (a->kind == SN__ANN_HNSW_FAISS &&
        (rc = set_hnsw_params(a->index, err, err_len)) < 0)
        goto fail;
    fclose(f);
    close(fd);
    *out = a;
    return 0;
fail:
    if (f)
        fclose(f);
    close(fd);
    sn__ann_free(a);
    return rc;
}
