/*
 * ivf.c -- an inverted-file index for ann.c (SN__ANN_IVF): the vectors cut
 * into lists by spherical k-means, each list its vectors' 8-bit codes and
 * ids side by side in contiguous memory; a search scores the centroids,
 * scans the nprobe best lists with index/kernels.c's int8 inner product
 * and returns the best candidates by approximate score (store.c reranks
 * them from the float vectors in SQLite, as for the SQ8 graph).
 *
 * Why an IVF next to the graphs: on the machine this is tuned for (2
 * cores, slow memory latency, 384-d sentence vectors), an hnswlib graph of
 * 1M vectors takes ~600 s to build (M 32) and an insert is a chain of
 * dependent random reads. Here a build is k-means on a sample and one
 * assignment pass, both sgemm (OpenBLAS, every core), and a search reads a
 * few lists front to back at memory bandwidth. The measured trade
 * (bench/README.md, "Search at a million") decides which kind a store
 * uses.
 *
 * Codes. Per dimension i an offset and a step: x[i] ~ off[i] + step[i] *
 * c[i], c in -127..127, trained on the first vectors with the lists. For a
 * query q, q.x ~ sum(q[i] * off[i]) + sum(q[i] * step[i] * c[i]); the first
 * sum is the same for every x, and the second is an int8 dot product once
 * q[i] * step[i] is itself quantized (scale s_q): score = sum(q * off) +
 * s_q * dot_i8(cq, c). Per-dimension steps keep each coordinate's error a
 * 254th of its own range.
 *
 * Before it is trained (fewer vectors than it expects) the index holds
 * its float vectors in one pending list and a search scans them exactly.
 * A removal takes the entry out of its list (the last entry moves into
 * its place): no tombstones. Finding an id is a scan of every list's ids
 * (~1M ids per ms or two), acceptable for deletions of a few chunks.
 *
 * Threads: adds, removals and reads of the file are the caller's to
 * serialize against searches (store.c: ann_rw); searches are const and run
 * in parallel, each with its own scratch. Training uses OpenBLAS' threads.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "ivf.h"
#include "kernels.h"
#include "sense/sense.h"

/* ---- tuning (bench/bench_search, 384-d clustered vectors; see
 * bench/README.md "Search at a million") ----------------------------------- */

/* Lists: SN__IVF_LISTS_PER_SQRT * sqrt(n) for the n the index is built
 * for, at least SN__IVF_MIN_LISTS. */
#define SN__IVF_LISTS_PER_SQRT 2.0
#define SN__IVF_MIN_LISTS 16
#define SN__IVF_MAX_LISTS 65536
/* Lists probed by default: a share of them, and enough to scan at least
 * SN__IVF_MIN_SCAN vectors (a small index is scanned whole: exact but for
 * the codes, which the rerank fixes). At 1M (2000 lists, bench_search,
 * quiet): 256 lists gave recall@10 0.923 (2.5 ms), 384 0.966 (3.5 ms), 512
 * 0.984 (4.5 ms); at 200k (894 lists) 128 gave 0.894 and 256 0.977. A
 * fifth of the lists: 400 at 1M. These vectors (48-d latent clusters)
 * spread their neighbours over many cells: the IVF scans a fifth of the
 * collection where a graph visits a few thousand nodes. */
#define SN__IVF_PROBE_SHARE 0.2
#define SN__IVF_MIN_SCAN 8192
/* Training: at most this many vectors (the first ones) and iterations. */
#define SN__IVF_TRAIN_MAX 131072
#define SN__IVF_KMEANS_ITERS 10
/* An index told nothing (a collection growing from empty) trains at this
 * many vectors; growing SN__IVF_REGROW times past it rebuilds it, trained
 * on all of them, and so on: each vector is re-added a few times over. */
#define SN__IVF_TRAIN_DEFAULT 256
/* Grown to this many times the vectors it was trained on: rebuild. */
#define SN__IVF_REGROW 4

#define IVF_MAGIC 0x31465649u /* "IVF1" */
#define ASSIGN_BLOCK 1024

typedef struct {
    int64_t n, cap;
    int64_t *ids;
    int8_t *codes; /* n x dim */
} list_t;

struct sn__ivf {
    int dim, n_lists; /* n_lists 0: untrained */
    int want_lists;   /* sn__ivf_expect's override, 0: the rule */
    int64_t expect, n_trained, count;
    float *centroids;  /* n_lists x dim, unit length */
    float *off, *step; /* dim each */
    list_t *lists;
    /* untrained: the vectors themselves */
    int64_t n_pend, cap_pend;
    int64_t *pend_ids;
    float *pend;
    sn__dot_fn dot;
    sn__dot_i8_fn dot_i8;
};

static int fail(char *err, size_t err_len, int rc, const char *what)
{
    if (err && err_len)
        snprintf(err, err_len, "ivf: %s", what);
    return rc;
}

int sn__ivf_new(int dim, sn__ivf_t **out, char *err, size_t err_len)
{
    sn__ivf_t *v = calloc(1, sizeof *v);
    *out = NULL;
    if (!v || !(v->off = calloc((size_t)dim, sizeof *v->off)) ||
        !(v->step = calloc((size_t)dim, sizeof *v->step))) {
        sn__ivf_free(v);
        return fail(err, err_len, -ENOMEM, "out of memory");
    }
    v->dim = dim;
    v->dot = sn__dot_pick();
    v->dot_i8 = sn__dot_i8_pick();
    *out = v;
    return 0;
}

void sn__ivf_free(sn__ivf_t *v)
{
    if (!v)
        return;
    for (int l = 0; l < v->n_lists && v->lists; l++) {
        free(v->lists[l].ids);
        free(v->lists[l].codes);
    }
    free(v->lists);
    free(v->centroids);
    free(v->off);
    free(v->step);
    free(v->pend_ids);
    free(v->pend);
    free(v);
}

void sn__ivf_expect(sn__ivf_t *v, int64_t n, int n_lists)
{
    v->expect = n;
    v->want_lists = n_lists;
}

int64_t sn__ivf_count(const sn__ivf_t *v) { return v ? v->count : 0; }

int sn__ivf_n_lists(const sn__ivf_t *v) { return v->n_lists; }

static int lists_for(int64_t n)
{
    double l = SN__IVF_LISTS_PER_SQRT * sqrt((double)n);
    if (l < SN__IVF_MIN_LISTS)
        l = SN__IVF_MIN_LISTS;
    if (l > SN__IVF_MAX_LISTS)
        l = SN__IVF_MAX_LISTS;
    return (int)l;
}

int64_t sn__ivf_nprobe(const sn__ivf_t *v)
{
    int64_t p = (int64_t)ceil(SN__IVF_PROBE_SHARE * v->n_lists);
    double per_list = v->n_lists ? (double)v->count / v->n_lists : 1;
    int64_t p_scan = (int64_t)ceil(SN__IVF_MIN_SCAN / (per_list > 1 ? per_list
                                                                     : 1));
    if (p < p_scan)
        p = p_scan;
    return p < v->n_lists ? p : v->n_lists;
}

int sn__ivf_outgrown(const sn__ivf_t *v)
{
    return v->n_lists && v->count > SN__IVF_REGROW * v->n_trained;
}

size_t sn__ivf_bytes_per_vector(const sn__ivf_t *v)
{
    return v->n_lists ? (size_t)v->dim + sizeof(int64_t)
                      : (size_t)v->dim * sizeof(float) + sizeof(int64_t);
}

/* ---- training -------------------------------------------------------------- */

/* For each of n vectors, the centroid of the best inner product, by
 * blocks of sgemm. scratch: ASSIGN_BLOCK x n_lists floats. */
static void assign(const sn__ivf_t *v, const float *x, int64_t n,
                   int32_t *out, float *scratch)
{
    for (int64_t b = 0; b < n; b += ASSIGN_BLOCK) {
        int nb = n - b < ASSIGN_BLOCK ? (int)(n - b) : ASSIGN_BLOCK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, v->n_lists,
                    v->dim, 1.0f, x + b * v->dim, v->dim, v->centroids,
                    v->dim, 0.0f, scratch, v->n_lists);
        for (int i = 0; i < nb; i++) {
            const float *s = scratch + (size_t)i * v->n_lists;
            int best = 0;
            for (int l = 1; l < v->n_lists; l++)
                if (s[l] > s[best])
                    best = l;
            out[b + i] = best;
        }
    }
}

/* Spherical k-means over x (n x dim): centroids are unit means of their
 * members; an empty list takes a vector of the sample (a fixed stride
 * through it, so a build is reproducible). */
static int kmeans(sn__ivf_t *v, const float *x, int64_t n)
{
    const int d = v->dim, nl = v->n_lists;
    int32_t *who = malloc((size_t)n * sizeof *who);
    int64_t *cnt = malloc((size_t)nl * sizeof *cnt);
    float *scratch = malloc((size_t)ASSIGN_BLOCK * nl * sizeof *scratch);
    double *sum = malloc((size_t)nl * d * sizeof *sum);
    int rc = 0;

    if (!who || !cnt || !scratch || !sum) {
        rc = -ENOMEM;
        goto done;
    }
    for (int l = 0; l < nl; l++) /* spread over the sample */
        memcpy(v->centroids + (size_t)l * d,
               x + (size_t)((int64_t)l * n / nl) * d, (size_t)d * sizeof(float));
    for (int it = 0; it < SN__IVF_KMEANS_ITERS; it++) {
        assign(v, x, n, who, scratch);
        memset(cnt, 0, (size_t)nl * sizeof *cnt);
        memset(sum, 0, (size_t)nl * d * sizeof *sum);
        for (int64_t i = 0; i < n; i++) {
            double *s = sum + (size_t)who[i] * d;
            const float *xi = x + (size_t)i * d;
            cnt[who[i]]++;
            for (int j = 0; j < d; j++)
                s[j] += xi[j];
        }
        int64_t reseed = 0;
        for (int l = 0; l < nl; l++) {
            float *c = v->centroids + (size_t)l * d;
            if (!cnt[l]) {
                int64_t pick = (reseed++ * 7919 + l * 104729) % n;
                memcpy(c, x + (size_t)pick * d, (size_t)d * sizeof *c);
                continue;
            }
            for (int j = 0; j < d; j++)
                c[j] = (float)sum[(size_t)l * d + j];
            sn_vec_normalize(c, d);
        }
    }
done:
    free(who);
    free(cnt);
    free(scratch);
    free(sum);
    return rc;
}

/* Per dimension the middle of its range and a 254th of it. */
static void train_codes(sn__ivf_t *v, const float *x, int64_t n)
{
    for (int j = 0; j < v->dim; j++) {
        float lo = x[j], hi = x[j];
        for (int64_t i = 1; i < n; i++) {
            float t = x[(size_t)i * v->dim + j];
            lo = t < lo ? t : lo;
            hi = t > hi ? t : hi;
        }
        v->off[j] = 0.5f * (lo + hi);
        v->step[j] = hi > lo ? (hi - lo) / 254.0f : 1.0f / 127.0f;
    }
}

static void encode(const sn__ivf_t *v, const float *x, int8_t *out)
{
    for (int j = 0; j < v->dim; j++) {
        float c = nearbyintf((x[j] - v->off[j]) / v->step[j]);
        out[j] = (int8_t)(c > 127 ? 127 : c < -127 ? -127 : c);
    }
}

static int list_push(list_t *l, int dim, int64_t id, const float *x,
                     const sn__ivf_t *v)
{
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 16;
        int64_t *ids = realloc(l->ids, (size_t)cap * sizeof *ids);
        if (!ids)
            return -ENOMEM;
        l->ids = ids;
        int8_t *codes = realloc(l->codes, (size_t)cap * dim);
        if (!codes)
            return -ENOMEM;
        l->codes = codes;
        l->cap = cap;
    }
    l->ids[l->n] = id;
    encode(v, x, l->codes + (size_t)l->n * dim);
    l->n++;
    return 0;
}

/* Each of n vectors into its list. */
static int distribute(sn__ivf_t *v, int64_t n, const float *x,
                      const int64_t *ids)
{
    int32_t *who = malloc((size_t)(n ? n : 1) * sizeof *who);
    float *scratch =
            malloc((size_t)ASSIGN_BLOCK * v->n_lists * sizeof *scratch);
    int rc = 0;

    if (!who || !scratch) {
        rc = -ENOMEM;
        goto done;
    }
    assign(v, x, n, who, scratch);
    for (int64_t i = 0; i < n && rc == 0; i++)
        rc = list_push(&v->lists[who[i]], v->dim, ids[i],
                       x + (size_t)i * v->dim, v);
done:
    free(who);
    free(scratch);
    return rc;
}

/* Train on the pending vectors and move them into the lists. */
static int train(sn__ivf_t *v)
{
    int64_t n_train = v->n_pend < SN__IVF_TRAIN_MAX ? v->n_pend
                                                    : SN__IVF_TRAIN_MAX;
    int64_t n_for = v->expect > v->n_pend ? v->expect : v->n_pend;
    int nl = v->want_lists ? v->want_lists : lists_for(n_for);
    int rc;

    if (nl > n_train)
        nl = (int)n_train;
    if (!(v->centroids = malloc((size_t)nl * v->dim * sizeof(float))) ||
        !(v->lists = calloc((size_t)nl, sizeof *v->lists)))
        return -ENOMEM;
    v->n_lists = nl;
    train_codes(v, v->pend, n_train);
    if ((rc = kmeans(v, v->pend, n_train)) < 0 ||
        (rc = distribute(v, v->n_pend, v->pend, v->pend_ids)) < 0)
        return rc;
    v->n_trained = n_for; /* what the lists were cut for */
    free(v->pend);
    free(v->pend_ids);
    v->pend = NULL;
    v->pend_ids = NULL;
    v->n_pend = v->cap_pend = 0;
    return 0;
}

/* ---- adds and removals ----------------------------------------------------- */

int sn__ivf_add(sn__ivf_t *v, int64_t n, const float *vecs,
                const int64_t *ids, char *err, size_t err_len)
{
    int rc;

    if (n <= 0)
        return 0;
    if (v->n_lists) {
        if ((rc = distribute(v, n, vecs, ids)) < 0)
            return fail(err, err_len, rc, "out of memory");
        v->count += n;
        return 0;
    }
    if (v->n_pend + n > v->cap_pend) {
        int64_t cap = v->cap_pend ? v->cap_pend : 1024;
        while (cap < v->n_pend + n)
            cap *= 2;
        float *p = realloc(v->pend, (size_t)cap * v->dim * sizeof *p);
        if (!p)
            return fail(err, err_len, -ENOMEM, "out of memory");
        v->pend = p;
        int64_t *pi = realloc(v->pend_ids, (size_t)cap * sizeof *pi);
        if (!pi)
            return fail(err, err_len, -ENOMEM, "out of memory");
        v->pend_ids = pi;
        v->cap_pend = cap;
    }
    memcpy(v->pend + v->n_pend * v->dim, vecs,
           (size_t)n * v->dim * sizeof *vecs);
    memcpy(v->pend_ids + v->n_pend, ids, (size_t)n * sizeof *ids);
    v->n_pend += n;
    v->count += n;
    int64_t at = v->expect > 0 ? v->expect : SN__IVF_TRAIN_DEFAULT;
    if (at > SN__IVF_TRAIN_MAX)
        at = SN__IVF_TRAIN_MAX;
    if (v->n_pend >= at && (rc = train(v)) < 0)
        return fail(err, err_len, rc, "out of memory while training");
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int has(const int64_t *sorted, int64_t n, int64_t id)
{
    return n > 0 && bsearch(&id, sorted, (size_t)n, sizeof id, cmp_i64);
}

int sn__ivf_remove(sn__ivf_t *v, int64_t n, const int64_t *ids,
                   int64_t *n_removed, char *err, size_t err_len)
{
    int64_t *s, gone = 0;

    if (n_removed)
        *n_removed = 0;
    if (n <= 0)
        return 0;
    if (!(s = malloc((size_t)n * sizeof *s)))
        return fail(err, err_len, -ENOMEM, "out of memory");
    memcpy(s, ids, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_i64);
    for (int l = 0; l < v->n_lists; l++) {
        list_t *li = &v->lists[l];
        for (int64_t i = 0; i < li->n;) {
            if (!has(s, n, li->ids[i])) {
                i++;
                continue;
            }
            li->n--; /* the last entry moves here */
            li->ids[i] = li->ids[li->n];
            memmove(li->codes + (size_t)i * v->dim,
                    li->codes + (size_t)li->n * v->dim, (size_t)v->dim);
            gone++;
        }
    }
    for (int64_t i = 0; i < v->n_pend;) {
        if (!has(s, n, v->pend_ids[i])) {
            i++;
            continue;
        }
        v->n_pend--;
        v->pend_ids[i] = v->pend_ids[v->n_pend];
        memmove(v->pend + (size_t)i * v->dim,
                v->pend + (size_t)v->n_pend * v->dim,
                (size_t)v->dim * sizeof *v->pend);
        gone++;
    }
    free(s);
    v->count -= gone;
    if (n_removed)
        *n_removed = gone;
    return 0;
}

/* ---- search ------------------------------------------------------------------ */

typedef sn__cand_t cand_t;

static int cmp_cand(const void *a, const void *b)
{
    float x = ((const cand_t *)a)->score, y = ((const cand_t *)b)->score;
    if (x != y)
        return (x < y) - (x > y);
    int64_t i = ((const cand_t *)a)->id, j = ((const cand_t *)b)->id;
    return (i > j) - (i < j);
}

int sn__ivf_search(const sn__ivf_t *v, const float *q, int64_t k,
                   int64_t nprobe, float *scores, int64_t *labels,
                   char *err, size_t err_len)
{
    const int d = v->dim;
    cand_t *top = NULL, *probe = NULL;
    int8_t *cq = NULL;
    int64_t n_top = 0, n_probe = 0;
    int rc = 0;

    for (int64_t i = 0; i < k; i++) {
        scores[i] = -INFINITY;
        labels[i] = -1;
    }
    if (k <= 0 || v->count == 0)
        return 0;
    if (!(top = malloc((size_t)k * sizeof *top))) {
        rc = -ENOMEM;
        goto done;
    }
    /* untrained: exact, over the vectors themselves */
    for (int64_t i = 0; i < v->n_pend; i++)
        sn__topk_push(top, &n_top, k, v->dot(q, v->pend + (size_t)i * d, (size_t)d),
             v->pend_ids[i]);
    if (v->n_lists) {
        double base = 0;
        float amax = 0, s_q;
        if (nprobe <= 0)
            nprobe = sn__ivf_nprobe(v);
        if (nprobe > v->n_lists)
            nprobe = v->n_lists;
        if (!(probe = malloc((size_t)nprobe * sizeof *probe)) ||
            !(cq = malloc((size_t)d))) {
            rc = -ENOMEM;
            goto done;
        }
        for (int l = 0; l < v->n_lists; l++)
            sn__topk_push(probe, &n_probe, nprobe,
                 v->dot(q, v->centroids + (size_t)l * d, (size_t)d), l);
        /* the query's codes: q[i] * step[i], quantized with one scale */
        for (int j = 0; j < d; j++) {
            float t = fabsf(q[j] * v->step[j]);
            amax = t > amax ? t : amax;
            base += (double)q[j] * v->off[j];
        }
        s_q = amax > 0 ? amax / 127.0f : 1.0f;
        for (int j = 0; j < d; j++)
            cq[j] = (int8_t)nearbyintf(q[j] * v->step[j] / s_q);
        for (int64_t p = 0; p < n_probe; p++) {
            const list_t *li = &v->lists[probe[p].id];
            const int8_t *c = li->codes;
            for (int64_t i = 0; i < li->n; i++, c += d)
                sn__topk_push(top, &n_top, k,
                     (float)(base + s_q * (double)v->dot_i8(cq, c, (size_t)d)),
                     li->ids[i]);
        }
    }
    qsort(top, (size_t)n_top, sizeof *top, cmp_cand);
    for (int64_t i = 0; i < n_top; i++) {
        scores[i] = top[i].score;
        labels[i] = top[i].id;
    }
done:
    free(top);
    free(probe);
    free(cq);
    return rc < 0 ? fail(err, err_len, rc, "out of memory") : 0;
}

void sn__ivf_ids(const sn__ivf_t *v, int64_t *ids)
{
    int64_t n = 0;
    for (int l = 0; l < v->n_lists; l++) {
        memcpy(ids + n, v->lists[l].ids, (size_t)v->lists[l].n * sizeof *ids);
        n += v->lists[l].n;
    }
    if (v->n_pend)
        memcpy(ids + n, v->pend_ids, (size_t)v->n_pend * sizeof *ids);
}

int sn__ivf_same(const sn__ivf_t *v, const int64_t *ids, int64_t n,
                 const float *vecs, int *same, char *err, size_t err_len)
{
    int8_t *code = malloc((size_t)v->dim);

    if (!code)
        return fail(err, err_len, -ENOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++)
        same[i] = 0;
    for (int l = 0; l < v->n_lists; l++) {
        const list_t *li = &v->lists[l];
        for (int64_t j = 0; j < li->n; j++) {
            const int64_t *hit =
                    bsearch(&li->ids[j], ids, (size_t)n, sizeof *ids, cmp_i64);
            if (!hit)
                continue;
            encode(v, vecs + (size_t)(hit - ids) * v->dim, code);
            same[hit - ids] = !memcmp(code, li->codes + (size_t)j * v->dim,
                                      (size_t)v->dim);
        }
    }
    for (int64_t j = 0; j < v->n_pend; j++) {
        const int64_t *hit =
                bsearch(&v->pend_ids[j], ids, (size_t)n, sizeof *ids, cmp_i64);
        if (hit)
            same[hit - ids] = !memcmp(vecs + (size_t)(hit - ids) * v->dim,
                                      v->pend + (size_t)j * v->dim,
                                      (size_t)v->dim * sizeof(float));
    }
    free(code);
    return 0;
}

/* ---- the file ---------------------------------------------------------------
 *
 *   u32 magic "IVF1", u32 dim, u32 n_lists, u32 0
 *   i64 n_trained, i64 n_pend
 *   f32 off[dim], f32 step[dim], f32 centroids[n_lists * dim]
 *   per list: i64 n, i64 ids[n], i8 codes[n * dim]
 *   i64 pend_ids[n_pend], f32 pend[n_pend * dim]
 */

static int put(FILE *f, const void *p, size_t len)
{
    return len == 0 || fwrite(p, 1, len, f) == len;
}

static int get(FILE *f, void *p, size_t len)
{
    return len == 0 || fread(p, 1, len, f) == len;
}

int sn__ivf_write(const sn__ivf_t *v, FILE *f, char *err, size_t err_len)
{
    uint32_t hd[4] = {IVF_MAGIC, (uint32_t)v->dim, (uint32_t)v->n_lists, 0};
    int64_t nums[2] = {v->n_trained, v->n_pend};
    size_t d = (size_t)v->dim;
    int ok = put(f, hd, sizeof hd) && put(f, nums, sizeof nums) &&
             put(f, v->off, d * sizeof(float)) &&
             put(f, v->step, d * sizeof(float)) &&
             put(f, v->centroids, (size_t)v->n_lists * d * sizeof(float));
    for (int l = 0; ok && l < v->n_lists; l++) {
        const list_t *li = &v->lists[l];
        ok = put(f, &li->n, sizeof li->n) &&
             put(f, li->ids, (size_t)li->n * sizeof *li->ids) &&
             put(f, li->codes, (size_t)li->n * d);
    }
    ok = ok && put(f, v->pend_ids, (size_t)v->n_pend * sizeof(int64_t)) &&
         put(f, v->pend, (size_t)v->n_pend * d * sizeof(float));
    return ok ? 0 : fail(err, err_len, -EIO, "cannot write the index");
}

static int all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

int sn__ivf_read(FILE *f, int dim, sn__ivf_t **out, char *err,
                 size_t err_len)
{
    sn__ivf_t *v = NULL;
    uint32_t hd[4];
    int64_t nums[2], *all = NULL;
    const char *bad = NULL;
    size_t d = (size_t)dim;
    int rc;

    *out = NULL;
    if (!get(f, hd, sizeof hd) || !get(f, nums, sizeof nums))
        return fail(err, err_len, SN_ECORRUPT, "truncated index");
    if (hd[0] != IVF_MAGIC || hd[1] != (uint32_t)dim ||
        hd[2] > SN__IVF_MAX_LISTS || hd[3] != 0 || nums[0] < 0 ||
        nums[1] < 0 || nums[1] > ((int64_t)1 << 40) ||
        (hd[2] == 0) != (nums[0] == 0))
        return fail(err, err_len, SN_ECORRUPT, "bad index parameters");
    if ((rc = sn__ivf_new(dim, &v, err, err_len)) < 0)
        return rc;
    v->n_lists = (int)hd[2];
    v->n_trained = nums[0];
    if ((v->n_lists &&
         (!(v->centroids = malloc((size_t)v->n_lists * d * sizeof(float))) ||
          !(v->lists = calloc((size_t)v->n_lists, sizeof *v->lists))))) {
        rc = fail(err, err_len, -ENOMEM, "out of memory");
        goto fail;
    }
    if (!get(f, v->off, d * sizeof(float)) ||
        !get(f, v->step, d * sizeof(float)) ||
        !get(f, v->centroids, (size_t)v->n_lists * d * sizeof(float))) {
        bad = "truncated index";
        goto bad;
    }
    if (!all_finite(v->off, d) || !all_finite(v->step, d) ||
        !all_finite(v->centroids, (size_t)v->n_lists * d)) {
        bad = "bad quantizer or centroids";
        goto bad;
    }
    for (size_t j = 0; j < d; j++)
        if (!(v->step[j] > 0)) {
            bad = "bad quantizer";
            goto bad;
        }
    for (int l = 0; l < v->n_lists; l++) {
        list_t *li = &v->lists[l];
        int64_t n;
        if (!get(f, &n, sizeof n) || n < 0 || n > ((int64_t)1 << 40)) {
            bad = "bad list";
            goto bad;
        }
        /* grown as it is read, so a lying count runs out of file first */
        for (int64_t i = 0; i < n; i++) {
            int64_t id;
            if (li->n == li->cap) {
                int64_t cap = li->cap ? li->cap * 2 : 16;
                int64_t *ids = realloc(li->ids, (size_t)cap * sizeof *ids);
                int8_t *codes = ids ? realloc(li->codes, (size_t)cap * d)
                                    : NULL;
                if (ids)
                    li->ids = ids;
                if (!codes) {
                    rc = fail(err, err_len, -ENOMEM, "out of memory");
                    goto fail;
                }
                li->codes = codes;
                li->cap = cap;
            }
            if (!get(f, &id, sizeof id)) {
                bad = "truncated list";
                goto bad;
            }
            li->ids[li->n++] = id;
        }
        if (!get(f, li->codes, (size_t)n * d)) {
            bad = "truncated list";
            goto bad;
        }
        v->count += n;
    }
    v->n_pend = v->cap_pend = nums[1];
    if (v->n_pend &&
        (!(v->pend_ids = malloc((size_t)v->n_pend * sizeof(int64_t))) ||
         !(v->pend = malloc((size_t)v->n_pend * d * sizeof(float))))) {
        rc = fail(err, err_len, -ENOMEM, "out of memory");
        goto fail;
    }
    if (!get(f, v->pend_ids, (size_t)v->n_pend * sizeof(int64_t)) ||
        !get(f, v->pend, (size_t)v->n_pend * d * sizeof(float))) {
        bad = "truncated pending vectors";
        goto bad;
    }
    v->count += v->n_pend;
    /* every id once */
    if (!(all = malloc((size_t)(v->count ? v->count : 1) * sizeof *all))) {
        rc = fail(err, err_len, -ENOMEM, "out of memory");
        goto fail;
    }
    sn__ivf_ids(v, all);
    qsort(all, (size_t)v->count, sizeof *all, cmp_i64);
    for (int64_t i = 1; i < v->count; i++)
        if (all[i] == all[i - 1]) {
            bad = "duplicate ids";
            goto bad;
        }
    free(all);
    *out = v;
    return 0;
bad:
    rc = fail(err, err_len, SN_ECORRUPT, bad);
fail:
    free(all);
    sn__ivf_free(v);
    return rc;
}
