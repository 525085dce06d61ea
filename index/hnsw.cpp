/*
 * hnsw.cpp -- the HNSW graph of ann.c: hnswlib's HierarchicalNSW (Debian's
 * header-only libhnswlib-dev) over distance kernels of our own, behind a
 * small C interface (hnsw.h).
 *
 * Why hnswlib and not faiss' IndexHNSW: on this machine kind (2 cores,
 * 384-d clustered vectors) it builds the same graph several times faster
 * at the same recall (bench/README.md, "Search at a million"), and it can
 * mark a vector deleted, so searches skip deleted chunks instead of
 * over-fetching past them.
 *
 * Distances. hnswlib picks its SIMD at compile time (__AVX512F__), and
 * this project is built for baseline x86-64; so its own spaces are not
 * used. Space below hands it kernels.c's inner product, picked at run
 * time (AVX-512 / AVX2 / plain C), with distance 1 - cosine (vectors are
 * L2-normalized).
 *
 * SQ8 (sq8 = 1): each vector is stored as 8-bit codes, x[i] ~ off[i] +
 * step * c[i] (c in -127..127; off per dimension, one step for all, both
 * from the first batch added, see train()), plus the float
 * t = step * sum(off[i] * c[i]). Then
 *     x.y ~ sum(off^2) + t_x + t_y + step^2 * sum(c_x[i] * c_y[i])
 * and the last sum is an exact int8 dot product (kernels.c). A vector costs
 * dim + 4 bytes instead of 4 * dim; queries are quantized the same way.
 * The scores are approximate: store.c reranks the candidates with the
 * float vectors from SQLite.
 *
 * The file payload (written and read through a FILE*, inside ann.c's
 * header and checksum) is our own, not hnswlib's saveIndex (which only
 * writes to a path): parameters, quantizer, then the graph's level-0 block
 * and each element's upper links, as hnswlib holds them in memory. Reading
 * checks every size and every link against the element count, so a file
 * that passed the checksum but is inconsistent is refused, not followed.
 *
 * Threads: add() inserts in parallel with OpenMP (the caller's team size,
 * ann.c's sn__ann_threads); hnswlib locks per node. Searches are const
 * and run in parallel with each other; store.c keeps writers out while a
 * search runs (ann_rw). No C++ exception crosses into C.
 */
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <vector>

#include <sys/mman.h>

#include <hnswlib/hnswlib.h>

#include "hnsw.h"
#include "sense/sense.h"
#include "kernels.h"

/* The first batch added to an SQ8 graph trains the quantizer when it has
 * at least this many vectors; a smaller one (a collection growing a
 * document at a time) gets the untrained quantizer: off 0, step 1/127,
 * which covers [-1, 1], every coordinate of a unit vector. */
#define SQ8_TRAIN_MIN 1000

namespace {

typedef hnswlib::HierarchicalNSW<float> graph_t;

struct param_t {
    size_t dim;
    sn__dot_fn dot;
    sn__dot_i8_fn dot_i8;
    float step2, off2; /* step^2, sum(off^2) */
};

float dist_f32(const void *a, const void *b, const void *p)
{
    const param_t *q = static_cast<const param_t *>(p);
    return 1.0f - q->dot(static_cast<const float *>(a),
                         static_cast<const float *>(b), q->dim);
}

float dist_sq8(const void *a, const void *b, const void *p)
{
    const param_t *q = static_cast<const param_t *>(p);
    const int8_t *x = static_cast<const int8_t *>(a);
    const int8_t *y = static_cast<const int8_t *>(b);
    float tx, ty;
    memcpy(&tx, x + q->dim, sizeof tx);
    memcpy(&ty, y + q->dim, sizeof ty);
    return 1.0f - (q->off2 + tx + ty +
                   q->step2 * (float)q->dot_i8(x, y, q->dim));
}

struct Space : hnswlib::SpaceInterface<float> {
    size_t size;
    hnswlib::DISTFUNC<float> fn;
    param_t *param;
    size_t get_data_size() override { return size; }
    hnswlib::DISTFUNC<float> get_dist_func() override { return fn; }
    void *get_dist_func_param() override { return param; }
};

} // namespace

struct sn__hnsw {
    int dim, sq8, trained;
    size_t m, ef_construction;
    param_t param;
    Space space;
    std::vector<float> off;
    float step;
    graph_t *g;
};

/* ---- errors ------------------------------------------------------------------ */

static int fail(char *err, size_t err_len, int rc, const char *what,
                const char *why)
{
    if (err && err_len)
        snprintf(err, err_len, "hnsw: %s%s%s", what, why ? ": " : "",
                 why ? why : "");
    return rc;
}

/* Run f(); an exception becomes -ENOMEM (bad_alloc) or -EIO. */
template <typename F>
static int guarded(char *err, size_t err_len, const char *what, F f)
{
    try {
        f();
        return 0;
    } catch (const std::bad_alloc &) {
        return fail(err, err_len, -ENOMEM, what, "out of memory");
    } catch (const std::exception &e) {
        return fail(err, err_len, -EIO, what, e.what());
    } catch (...) {
        return fail(err, err_len, -EIO, what, "unknown error");
    }
}

/* ---- quantizer ----------------------------------------------------------------- */

static void set_quantizer(sn__hnsw_t *h)
{
    double o2 = 0;
    for (float o : h->off)
        o2 += (double)o * o;
    h->param.step2 = h->step * h->step;
    h->param.off2 = (float)o2;
}

/* Per dimension the middle of its range; one step for all dimensions,
 * the widest range over 254 codes. */
static void train(sn__hnsw_t *h, int64_t n, const float *x)
{
    std::vector<float> lo(x, x + h->dim), hi(x, x + h->dim);
    float range = 0;

    for (int64_t i = 1; i < n; i++)
        for (int j = 0; j < h->dim; j++) {
            float v = x[i * h->dim + j];
            lo[j] = std::min(lo[j], v);
            hi[j] = std::max(hi[j], v);
        }
    for (int j = 0; j < h->dim; j++) {
        h->off[j] = 0.5f * (lo[j] + hi[j]);
        range = std::max(range, hi[j] - lo[j]);
    }
    h->step = range > 0 ? range / 254.0f : 1.0f / 127.0f;
    set_quantizer(h);
}

/* x (dim floats) as dim codes and the float t, into out (dim + 4 bytes). */
static void encode(const sn__hnsw_t *h, const float *x, int8_t *out)
{
    double t = 0;
    for (int j = 0; j < h->dim; j++) {
        float c = std::nearbyint((x[j] - h->off[j]) / h->step);
        c = std::min(127.0f, std::max(-127.0f, c));
        out[j] = (int8_t)c;
        t += (double)h->off[j] * c;
    }
    float tf = (float)(t * h->step);
    memcpy(out + h->dim, &tf, sizeof tf);
}

/* ---- the graph ------------------------------------------------------------------ */

/* Ask for 2 MiB pages under the level-0 block (vectors and links, 1.8 KB
 * an element at f32 384-d, M 32). A search touches a few thousand
 * elements scattered over the block; in 4 KiB pages each is a TLB miss and
 * a page walk beside the cache misses (a 1.7 GB block is 440,000 pages,
 * the TLB holds a few thousand), in 2 MiB pages the whole block fits the
 * second-level TLB. Advice only (transparent huge pages in "madvise"
 * mode, Debian's default): where the kernel has none, nothing changes.
 * Called before the block is written (the pages are then huge from their
 * first fault); the part of the block outside whole 2 MiB pages keeps
 * small ones. */
static void advise_huge(const graph_t *g)
{
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = 2u << 20;
    uintptr_t lo = (uintptr_t)g->data_level0_memory_;
    uintptr_t hi = lo + g->max_elements_ * g->size_data_per_element_;
    lo = (lo + huge - 1) & ~(huge - 1);
    hi &= ~(huge - 1);
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
    (void)g;
#endif
}

static sn__hnsw_t *make(int dim, int sq8, size_t m, size_t efc)
{
    sn__hnsw_t *h = new sn__hnsw_t();
    h->dim = dim;
    h->sq8 = sq8;
    h->m = m;
    h->ef_construction = efc;
    h->off.assign((size_t)dim, 0.0f);
    h->step = 1.0f / 127.0f;
    h->param.dim = (size_t)dim;
    h->param.dot = sn__dot_pick();
    h->param.dot_i8 = sn__dot_i8_pick();
    set_quantizer(h);
    h->space.size = sq8 ? (size_t)dim + sizeof(float)
                        : (size_t)dim * sizeof(float);
    h->space.fn = sq8 ? dist_sq8 : dist_f32;
    h->space.param = &h->param;
    h->g = nullptr;
    return h;
}

extern "C" int sn__hnsw_new(int dim, int sq8, int m, int ef_construction,
                            sn__hnsw_t **out, char *err, size_t err_len)
{
    sn__hnsw_t *h = nullptr;
    *out = nullptr;
    int rc = guarded(err, err_len, "cannot make a graph", [&] {
        h = make(dim, sq8, (size_t)m, (size_t)ef_construction);
        h->g = new graph_t(&h->space, 1024, h->m, h->ef_construction);
    });
    if (rc < 0) {
        sn__hnsw_free(h);
        return rc;
    }
    *out = h;
    return 0;
}

extern "C" void sn__hnsw_free(sn__hnsw_t *h)
{
    if (!h)
        return;
    delete h->g;
    delete h;
}

extern "C" int64_t sn__hnsw_count(const sn__hnsw_t *h)
{
    return h ? (int64_t)h->g->cur_element_count : 0;
}

extern "C" int64_t sn__hnsw_n_deleted(const sn__hnsw_t *h)
{
    return h ? (int64_t)h->g->num_deleted_ : 0;
}

extern "C" int sn__hnsw_add(sn__hnsw_t *h, int64_t n, const float *vecs,
                            const int64_t *ids, char *err, size_t err_len)
{
    std::vector<int8_t> codes;
    const size_t size = h->space.size;
    graph_t *g = h->g;
    int rc;

    if (n <= 0)
        return 0;
    rc = guarded(err, err_len, "add failed", [&] {
        if (h->sq8) {
            if (!h->trained && g->cur_element_count == 0 &&
                n >= SQ8_TRAIN_MIN)
                train(h, n, vecs);
            h->trained = 1;
            codes.resize((size_t)n * size);
            for (int64_t i = 0; i < n; i++)
                encode(h, vecs + i * h->dim, codes.data() + i * size);
        }
        size_t need = g->cur_element_count + (size_t)n;
        if (need > g->max_elements_) {
            g->resizeIndex(std::max(need, g->max_elements_ * 3 / 2));
            advise_huge(g);
        }
    });
    if (rc < 0)
        return rc;

    const char *base = h->sq8 ? (const char *)codes.data()
                              : (const char *)vecs;
    int64_t i0 = 0;
    /* the first element of an empty graph alone: it becomes the entry
     * point the parallel inserts start from */
    if (g->cur_element_count == 0) {
        rc = guarded(err, err_len, "add failed",
                     [&] { g->addPoint(base, (hnswlib::labeltype)ids[0]); });
        if (rc < 0)
            return rc;
        i0 = 1;
    }
    int bad = 0;
#pragma omp parallel for schedule(dynamic, 64)
    for (int64_t i = i0; i < n; i++) {
        try {
            g->addPoint(base + (size_t)i * size, (hnswlib::labeltype)ids[i]);
        } catch (...) {
#pragma omp atomic write
            bad = 1;
        }
    }
    if (bad)
        return fail(err, err_len, -ENOMEM, "add failed", "out of memory");
    return 0;
}

extern "C" int sn__hnsw_mark_deleted(sn__hnsw_t *h, int64_t n,
                                     const int64_t *ids)
{
    graph_t *g = h->g;
    for (int64_t i = 0; i < n; i++) {
        auto it = g->label_lookup_.find((hnswlib::labeltype)ids[i]);
        if (it != g->label_lookup_.end() && !g->isMarkedDeleted(it->second))
            g->markDeletedInternal(it->second);
    }
    return 0;
}

/* ---- layer 0's beam ------------------------------------------------------------ */

typedef std::pair<float, hnswlib::tableint> dist_id_t;
typedef std::priority_queue<dist_id_t, std::vector<dist_id_t>,
                            graph_t::CompareByFirst>
    beam_t;

/* Vectors whose loads are asked for ahead of the one being compared. */
#define BEAM_PREFETCH_AHEAD 2

/* Every cache line of the len bytes at p into L1. */
static inline void prefetch_bytes(const char *p, size_t len)
{
    for (size_t o = 0; o < len; o += 64)
        __builtin_prefetch(p + o, 0, 3);
    __builtin_prefetch(p + len - 1, 0, 3);
}

/* hnswlib's searchBaseLayerST, step for step: the same two heaps, the
 * same pushes and pops in the same order, so the same result (ties
 * included). What differs is the memory traffic. hnswlib asks for the first
 * cache line of the next neighbour's vector (64 of 1,536 bytes at f32
 * 384-d); at a million vectors nearly every vector comes from memory, and
 * the distance waits on each line in turn. Here each expanded node's
 * unvisited neighbours are gathered first (marking them visited, as
 * hnswlib does one by one: a list holds each id once), and the whole
 * vector BEAM_PREFETCH_AHEAD neighbours ahead is requested while the
 * current one is compared. The distances do not depend on the heaps, so
 * computing them ahead changes no decision. */
template <bool has_deletions>
static beam_t beam0(const sn__hnsw_t *h, hnswlib::tableint ep,
                    const void *x, size_t ef)
{
    const graph_t *g = h->g;
    const size_t len = h->space.size;
    hnswlib::VisitedList *vl = g->visited_list_pool_->getFreeVisitedList();
    hnswlib::vl_type *seen = vl->mass, tag = vl->curV;
    std::vector<hnswlib::tableint> fresh(g->maxM0_);
    beam_t top, cand;
    float lower;

    if (!has_deletions || !g->isMarkedDeleted(ep)) {
        float d = h->space.fn(x, g->getDataByInternalId(ep), &h->param);
        lower = d;
        top.emplace(d, ep);
        cand.emplace(-d, ep);
    } else {
        lower = std::numeric_limits<float>::max();
        cand.emplace(-lower, ep);
    }
    seen[ep] = tag;
    while (!cand.empty()) {
        dist_id_t cur = cand.top();
        if (-cur.first > lower && (top.size() == ef || !has_deletions))
            break;
        cand.pop();
        hnswlib::linklistsizeint *ll = g->get_linklist0(cur.second);
        size_t n = g->getListCount(ll), n_fresh = 0;
        const hnswlib::tableint *nb = (const hnswlib::tableint *)(ll + 1);
        if (fresh.size() < n)
            fresh.resize(n);
        for (size_t j = 0; j < n; j++)
            __builtin_prefetch(seen + nb[j], 1, 3);
        for (size_t j = 0; j < n; j++)
            if (seen[nb[j]] != tag) {
                seen[nb[j]] = tag;
                fresh[n_fresh++] = nb[j];
            }
        for (size_t j = 0; j < n_fresh && j < BEAM_PREFETCH_AHEAD; j++)
            prefetch_bytes(g->getDataByInternalId(fresh[j]), len);
        for (size_t j = 0; j < n_fresh; j++) {
            hnswlib::tableint id = fresh[j];
            if (j + BEAM_PREFETCH_AHEAD < n_fresh)
                prefetch_bytes(
                    g->getDataByInternalId(fresh[j + BEAM_PREFETCH_AHEAD]),
                    len);
            float d = h->space.fn(x, g->getDataByInternalId(id), &h->param);
            if (top.size() < ef || lower > d) {
                cand.emplace(-d, id);
                __builtin_prefetch(g->get_linklist0(cand.top().second), 0, 3);
                if (!has_deletions || !g->isMarkedDeleted(id))
                    top.emplace(d, id);
                if (top.size() > ef)
                    top.pop();
                if (!top.empty())
                    lower = top.top().first;
            }
        }
    }
    g->visited_list_pool_->releaseVisitedList(vl);
    return top;
}

/* sn__hnsw_search and sn__hnsw_search_ref: layer 0 by beam0 (own) or by
 * hnswlib's searchBaseLayerST (the reference the tests hold beam0 to). */
static int search(const sn__hnsw_t *h, const float *q, int64_t k,
                  int64_t ef, int own, float *scores, int64_t *labels,
                  char *err, size_t err_len)
{
    const graph_t *g = h->g;
    int64_t n = 0;

    for (int64_t i = 0; i < k; i++) {
        scores[i] = -INFINITY;
        labels[i] = -1;
    }
    if (g->cur_element_count == 0 || k <= 0)
        return 0;
    return guarded(err, err_len, "search failed", [&] {
        std::vector<int8_t> code;
        const void *x = q;
        if (h->sq8) {
            code.resize(h->space.size);
            encode(h, q, code.data());
            x = code.data();
        }
        /* greedy descent through the upper layers, then a beam of ef on
         * layer 0 (hnswlib's searchKnn, but with ef per call: its own
         * reads a member that concurrent searches would share) */
        hnswlib::tableint cur = g->enterpoint_node_;
        float d = h->space.fn(x, g->getDataByInternalId(cur), &h->param);
        for (int level = g->maxlevel_; level > 0; level--) {
            for (bool changed = true; changed;) {
                changed = false;
                unsigned int *ll = g->get_linklist(cur, level);
                int cnt = g->getListCount(ll);
                const hnswlib::tableint *nb = (hnswlib::tableint *)(ll + 1);
                for (int i = 0; i < cnt; i++) {
                    float dn = h->space.fn(x, g->getDataByInternalId(nb[i]),
                                           &h->param);
                    if (dn < d) {
                        d = dn;
                        cur = nb[i];
                        changed = true;
                    }
                }
            }
        }
        size_t beam = (size_t)std::max(ef, k);
        beam_t top = !own              ? g->num_deleted_
                                             ? g->searchBaseLayerST<true>(
                                                   cur, x, beam)
                                             : g->searchBaseLayerST<false>(
                                                   cur, x, beam)
                     : g->num_deleted_ ? beam0<true>(h, cur, x, beam)
                                       : beam0<false>(h, cur, x, beam);
        while ((int64_t)top.size() > k)
            top.pop();
        n = (int64_t)top.size();
        for (int64_t i = n - 1; i >= 0; i--) { /* farthest comes first */
            scores[i] = 1.0f - top.top().first;
            labels[i] = (int64_t)g->getExternalLabel(top.top().second);
            top.pop();
        }
    });
}

extern "C" int sn__hnsw_search(const sn__hnsw_t *h, const float *q,
                               int64_t k, int64_t ef, float *scores,
                               int64_t *labels, char *err, size_t err_len)
{
    return search(h, q, k, ef, 1, scores, labels, err, err_len);
}

extern "C" int sn__hnsw_search_ref(const sn__hnsw_t *h, const float *q,
                                   int64_t k, int64_t ef, float *scores,
                                   int64_t *labels, char *err,
                                   size_t err_len)
{
    return search(h, q, k, ef, 0, scores, labels, err, err_len);
}

extern "C" int sn__hnsw_ids(const sn__hnsw_t *h, int64_t *ids)
{
    for (size_t i = 0; i < h->g->cur_element_count; i++)
        ids[i] = (int64_t)h->g->getExternalLabel((hnswlib::tableint)i);
    return 0;
}

extern "C" int sn__hnsw_same(const sn__hnsw_t *h, const int64_t *ids,
                             int64_t n, const float *vecs, int *same)
{
    std::vector<int8_t> code(h->space.size);
    for (int64_t i = 0; i < n; i++) {
        auto it = h->g->label_lookup_.find((hnswlib::labeltype)ids[i]);
        const float *v = vecs + i * h->dim;
        if (it == h->g->label_lookup_.end()) {
            same[i] = 0;
            continue;
        }
        const char *mine = h->g->getDataByInternalId(it->second);
        if (h->sq8) {
            encode(h, v, code.data());
            same[i] = !memcmp(mine, code.data(), code.size());
        } else {
            same[i] = !memcmp(mine, v, h->space.size);
        }
    }
    return 0;
}

extern "C" int sn__hnsw_is_sq8(const sn__hnsw_t *h) { return h->sq8; }

extern "C" int sn__hnsw_m(const sn__hnsw_t *h) { return (int)h->m; }

extern "C" size_t sn__hnsw_bytes_per_vector(const sn__hnsw_t *h)
{
    return h->g->size_data_per_element_;
}

/* ---- the file ------------------------------------------------------------------- */

#define HNSW_MAGIC 0x57534e48u /* "HNSW" */

static bool put(FILE *f, const void *p, size_t len)
{
    return len == 0 || fwrite(p, 1, len, f) == len;
}

static bool get(FILE *f, void *p, size_t len)
{
    return len == 0 || fread(p, 1, len, f) == len;
}

extern "C" int sn__hnsw_write(const sn__hnsw_t *h, FILE *f, char *err,
                              size_t err_len)
{
    const graph_t *g = h->g;
    uint32_t hd[6] = {HNSW_MAGIC, (uint32_t)h->dim, (uint32_t)h->sq8,
                      (uint32_t)h->m, (uint32_t)h->ef_construction,
                      (uint32_t)h->trained};
    uint64_t count = g->cur_element_count;
    int32_t maxlevel = g->maxlevel_;
    uint32_t entry = g->enterpoint_node_;
    bool ok = put(f, hd, sizeof hd) && put(f, &h->step, sizeof h->step) &&
              put(f, h->off.data(), h->off.size() * sizeof(float)) &&
              put(f, &count, sizeof count) &&
              put(f, &maxlevel, sizeof maxlevel) &&
              put(f, &entry, sizeof entry) &&
              put(f, g->data_level0_memory_,
                  count * g->size_data_per_element_);
    for (size_t i = 0; ok && i < count; i++) {
        uint32_t len = g->element_levels_[i] > 0
                               ? (uint32_t)(g->size_links_per_element_ *
                                            g->element_levels_[i])
                               : 0;
        ok = put(f, &len, sizeof len) && put(f, g->linkLists_[i], len);
    }
    return ok ? 0 : fail(err, err_len, -EIO, "cannot write the graph", NULL);
}

/* Are the links of list ll (at most max of them) all below count? */
static bool links_ok(const graph_t *g, const unsigned int *ll, size_t max,
                     size_t count)
{
    size_t cnt = g->getListCount((unsigned int *)ll);
    const hnswlib::tableint *nb = (const hnswlib::tableint *)(ll + 1);
    if (cnt > max)
        return false;
    for (size_t j = 0; j < cnt; j++)
        if (nb[j] >= count)
            return false;
    return true;
}

extern "C" int sn__hnsw_read(FILE *f, int dim, sn__hnsw_t **out, char *err,
                             size_t err_len)
{
    sn__hnsw_t *h = nullptr;
    uint32_t hd[6];
    uint64_t count = 0;
    int32_t maxlevel;
    uint32_t entry;
    float step;
    const char *bad = nullptr;

    *out = nullptr;
    if (!get(f, hd, sizeof hd) || !get(f, &step, sizeof step))
        return fail(err, err_len, SN_ECORRUPT, "truncated graph", NULL);
    if (hd[0] != HNSW_MAGIC || hd[1] != (uint32_t)dim || hd[2] > 1 ||
        hd[3] < 2 || hd[3] > 256 || hd[4] < 1 || hd[4] > 100000 ||
        !(step > 0) || !std::isfinite(step))
        return fail(err, err_len, SN_ECORRUPT, "bad graph parameters", NULL);
    int rc = guarded(err, err_len, "cannot read the graph", [&] {
        h = make(dim, (int)hd[2], hd[3], hd[4]);
        h->trained = hd[5] != 0;
        h->step = step;
        if (!get(f, h->off.data(), h->off.size() * sizeof(float)) ||
            !get(f, &count, sizeof count) ||
            !get(f, &maxlevel, sizeof maxlevel) ||
            !get(f, &entry, sizeof entry)) {
            bad = "truncated graph";
            return;
        }
        for (float o : h->off)
            if (!std::isfinite(o)) {
                bad = "bad quantizer";
                return;
            }
        set_quantizer(h);
        if (count > (1ull << 31) || maxlevel < -1 || maxlevel > 64 ||
            (count && (entry >= count || maxlevel < 0)) ||
            (!count && maxlevel != -1)) {
            bad = "bad graph header";
            return;
        }
        h->g = new graph_t(&h->space, std::max<size_t>(count, 1024), h->m,
                           h->ef_construction);
        graph_t *g = h->g;
        advise_huge(g);
        if (!get(f, g->data_level0_memory_,
                 count * g->size_data_per_element_)) {
            bad = "truncated graph";
            return;
        }
        /* elements are inserted one by one below, so a failure part-way
         * leaves a graph the destructor can free */
        for (size_t i = 0; i < count; i++) {
            uint32_t len;
            if (!get(f, &len, sizeof len) ||
                len % g->size_links_per_element_ != 0 ||
                len / g->size_links_per_element_ > (uint32_t)maxlevel) {
                bad = "bad link list";
                return;
            }
            int levels = (int)(len / g->size_links_per_element_);
            g->linkLists_[i] = nullptr;
            if (levels) {
                g->linkLists_[i] = (char *)malloc(len);
                if (!g->linkLists_[i])
                    throw std::bad_alloc();
            }
            g->element_levels_[i] = levels;
            g->cur_element_count = i + 1;
            if (!get(f, g->linkLists_[i], len)) {
                bad = "truncated graph";
                return;
            }
        }
        for (size_t i = 0; i < count; i++) {
            if (!links_ok(g, g->get_linklist0((hnswlib::tableint)i),
                          g->maxM0_, count)) {
                bad = "a link out of range";
                return;
            }
            for (int l = 1; l <= g->element_levels_[i]; l++)
                if (!links_ok(g, g->get_linklist((hnswlib::tableint)i, l),
                              g->maxM_, count)) {
                    bad = "a link out of range";
                    return;
                }
            g->label_lookup_[g->getExternalLabel((hnswlib::tableint)i)] =
                    (hnswlib::tableint)i;
            if (g->isMarkedDeleted((hnswlib::tableint)i))
                g->num_deleted_++;
        }
        if (g->label_lookup_.size() != count) {
            bad = "duplicate labels";
            return;
        }
        if (count && g->element_levels_[entry] != maxlevel) {
            bad = "bad entry point";
            return;
        }
        g->maxlevel_ = maxlevel;
        g->enterpoint_node_ = count ? entry : (hnswlib::tableint)-1;
    });
    if (rc == 0 && bad)
        rc = fail(err, err_len, SN_ECORRUPT, bad, NULL);
    if (rc < 0) {
        sn__hnsw_free(h);
        return rc;
    }
    *out = h;
    return 0;
}
