/*
 * faiss_c.cpp -- the few functions of faiss' C API that sense calls,
 * implemented over the C++ library (Debian ships libfaiss.a and the c_api
 * headers, but not libfaiss_c). CMake compiles this file only when no
 * system libfaiss_c is found; with one, that library is used instead and
 * this file is not built.
 *
 * Invariants:
 *   - Every signature is exactly the one declared in
 *     /usr/include/faiss/c_api/ (the headers are included, so the compiler
 *     checks it): the rest of sense is C and must link unchanged against
 *     upstream's libfaiss_c.
 *   - No C++ exception crosses into C. Each function catches everything,
 *     records the message in a thread-local last error and returns the
 *     upstream codes: -2 faiss exception, -4 std exception, -1 anything
 *     else. faiss_get_last_error() reads it back on the same thread.
 *   - Nothing here prints or changes threading: the caller decides how many
 *     OpenMP threads faiss uses (index/store.c sets it per call).
 *
 * Workload: a handful of calls per request (one search of one query, one
 * add of a document's chunks), so the wrapper's cost does not matter.
 *
 * Distances. Debian's libfaiss.a is built for baseline x86-64, so its
 * one-vector inner product (fvec_inner_product) is scalar SSE code: it
 * took 96% of an HNSW build and most of a single-query search here. The
 * indexes this file creates or reads (faiss_index_factory,
 * faiss_read_index) therefore get their inner-product Flat storage
 * swapped for FastFlatIP: the same IndexFlat (same codes, same file
 * format, so write_index and read_index are unchanged) whose distance
 * computer, used by HNSW to build and to search, and whose search of a
 * few queries, used by Flat, run a dot product compiled for AVX-512 or
 * AVX2+FMA and picked at run time (plain C otherwise;
 * SENSE_ANN_KERNELS=base|avx2 caps the choice). Batches of 20 and
 * more queries, and searches with an ID selector, stay faiss' own (BLAS).
 * Scores differ from faiss' scalar ones only by float rounding order
 * (~1e-7 at 384-d). A system libfaiss_c, built for its machine, is used as
 * it comes.
 */
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <typeinfo>

#include <immintrin.h>

#include <faiss/AutoTune.h>
#include <faiss/Index.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/impl/DistanceComputer.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <faiss/utils/Heap.h>
#include <faiss/utils/distances.h>

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/MetaIndexes_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>

namespace {

thread_local std::string last_error;

/* Run f(), translating exceptions to upstream's return codes. */
template <typename F>
int guarded(F f)
{
    try {
        f();
        return 0;
    } catch (const faiss::FaissException &e) {
        last_error = e.what();
        return -2;
    } catch (const std::exception &e) {
        last_error = e.what();
        return -4;
    } catch (...) {
        last_error = "unknown error";
        return -1;
    }
}

faiss::Index *ix(FaissIndex *p) { return reinterpret_cast<faiss::Index *>(p); }
const faiss::Index *ix(const FaissIndex *p)
{
    return reinterpret_cast<const faiss::Index *>(p);
}

/* ---- vectorized inner product ------------------------------------------- */

typedef faiss::Index::idx_t fidx_t;

typedef float (*dot_fn)(const float *a, const float *b, size_t d);

/* GCC 12's _mm512_reduce_add_ps reads an "undefined" vector by design. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
__attribute__((target("avx512f"))) float dot_avx512(const float *a,
                                                     const float *b, size_t d)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    size_t i = 0;

    for (; i + 64 <= d; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i),
                             s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16),
                             _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32),
                             _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48),
                             _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= d; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i),
                             s0);
    if (i < d) {
        __mmask16 m = (__mmask16)((1u << (d - i)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i),
                             _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(
            _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}
#pragma GCC diagnostic pop

__attribute__((target("avx2,fma"))) float dot_avx2(const float *a,
                                                   const float *b, size_t d)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t i = 0;
    float t = 0;

    for (; i + 32 <= d; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i),
                             s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8),
                             _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16),
                             _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24),
                             _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= d; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i),
                             s0);
    for (; i < d; i++)
        t += a[i] * b[i];
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s),
                          _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h) + t;
}

float dot_base(const float *a, const float *b, size_t d)
{
    float s[8] = {0};
    size_t i = 0;

    for (; i + 8 <= d; i += 8)
        for (int j = 0; j < 8; j++)
            s[j] += a[i + j] * b[i + j];
    for (; i < d; i++)
        s[0] += a[i] * b[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* The widest kernel this CPU runs, capped by SENSE_ANN_KERNELS=base|avx2
 * (for tests and comparisons). Read at each search and each distance
 * computer made: a getenv, nothing next to a search. */
dot_fn dot_pick()
{
    const char *cap = getenv("SENSE_ANN_KERNELS");
    int base = cap && strcmp(cap, "base") == 0;
    int avx2 = cap && strcmp(cap, "avx2") == 0;

    __builtin_cpu_init();
    if (!base && !avx2 && __builtin_cpu_supports("avx512f"))
        return dot_avx512;
    if (!base && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma"))
        return dot_avx2;
    return dot_base;
}

/* ---- FastFlatIP: IndexFlat (inner product) on the vectorized dot --------- */

struct FastIPDis : faiss::FlatCodesDistanceComputer {
    const float *xb, *q = nullptr;
    size_t d;
    dot_fn dot;

    FastIPDis(const faiss::IndexFlat &ix, dot_fn f)
            : FlatCodesDistanceComputer(ix.codes.data(), ix.code_size),
              xb(ix.get_xb()), d((size_t)ix.d), dot(f)
    {
    }
    void set_query(const float *x) override { q = x; }
    float distance_to_code(const uint8_t *code) override
    {
        return dot(q, reinterpret_cast<const float *>(code), d);
    }
    float symmetric_dis(fidx_t i, fidx_t j) override
    {
        return dot(xb + (size_t)i * d, xb + (size_t)j * d, d);
    }
};

struct FastFlatIP : faiss::IndexFlatIP {
    explicit FastFlatIP(fidx_t d) : faiss::IndexFlatIP(d) {}

    faiss::FlatCodesDistanceComputer *get_FlatCodesDistanceComputer()
            const override
    {
        return new FastIPDis(*this, dot_pick());
    }

    /* Below faiss' BLAS threshold, one pass over the vectors per query,
     * keeping the k best in a min-heap (faiss' own heap, so ties and
     * missing results (-1) come out as faiss orders them). */
    void search(fidx_t n, const float *x, fidx_t k,
                float *distances, fidx_t *labels,
                const faiss::SearchParameters *params) const override
    {
        typedef faiss::CMin<float, fidx_t> C;
        if ((params && params->sel) || n >= faiss::distance_compute_blas_threshold ||
            k <= 0) {
            faiss::IndexFlatIP::search(n, x, k, distances, labels, params);
            return;
        }
        const dot_fn dot = dot_pick();
        const float *xb = get_xb();
        const size_t dd = (size_t)d;
        for (fidx_t qi = 0; qi < n; qi++) {
            const float *q = x + (size_t)qi * dd;
            float *D = distances + (size_t)qi * (size_t)k;
            fidx_t *I = labels + (size_t)qi * (size_t)k;
            faiss::heap_heapify<C>((size_t)k, D, I);
            for (fidx_t i = 0; i < ntotal; i++) {
                float s = dot(q, xb + (size_t)i * dd, dd);
                if (C::cmp(D[0], s))
                    faiss::heap_replace_top<C>((size_t)k, D, I, s, i);
            }
            faiss::heap_reorder<C>((size_t)k, D, I);
        }
    }
};

/* A FastFlatIP holding old's vectors, or nullptr when old is not a plain
 * inner-product IndexFlat (then it is left as it is). */
faiss::IndexFlat *fast_flat(faiss::IndexFlat *old)
{
    if (!old || old->metric_type != faiss::METRIC_INNER_PRODUCT ||
        (typeid(*old) != typeid(faiss::IndexFlat) &&
         typeid(*old) != typeid(faiss::IndexFlatIP)))
        return nullptr;
    auto *f = new FastFlatIP(old->d);
    f->codes.swap(old->codes);
    f->ntotal = old->ntotal;
    f->is_trained = old->is_trained;
    f->verbose = old->verbose;
    return f;
}

/* Swap the Flat storage of an IDMap'd Flat or HNSW index for FastFlatIP. */
void accelerate(faiss::Index *idx)
{
    if (auto *m = dynamic_cast<faiss::IndexIDMap *>(idx)) {
        auto *flat = dynamic_cast<faiss::IndexFlat *>(m->index);
        faiss::IndexFlat *f = m->own_fields ? fast_flat(flat) : nullptr;
        if (f) {
            delete m->index;
            m->index = f;
        } else if (!flat) {
            accelerate(m->index);
        }
        return;
    }
    if (auto *h = dynamic_cast<faiss::IndexHNSW *>(idx)) {
        auto *flat = dynamic_cast<faiss::IndexFlat *>(h->storage);
        faiss::IndexFlat *f = h->own_fields ? fast_flat(flat) : nullptr;
        if (f) {
            delete h->storage;
            h->storage = f;
        }
    }
}

} // namespace

extern "C" {

const char *faiss_get_last_error()
{
    return last_error.empty() ? nullptr : last_error.c_str();
}

/* ---- Index ---------------------------------------------------------------- */

void faiss_Index_free(FaissIndex *obj) { delete ix(obj); }

int faiss_Index_d(const FaissIndex *obj) { return ix(obj)->d; }

idx_t faiss_Index_ntotal(const FaissIndex *obj) { return ix(obj)->ntotal; }

FaissMetricType faiss_Index_metric_type(const FaissIndex *obj)
{
    return static_cast<FaissMetricType>(ix(obj)->metric_type);
}

int faiss_Index_add_with_ids(FaissIndex *index, idx_t n, const float *x,
                             const idx_t *xids)
{
    return guarded([&] { ix(index)->add_with_ids(n, x, xids); });
}

int faiss_Index_search(const FaissIndex *index, idx_t n, const float *x,
                       idx_t k, float *distances, idx_t *labels)
{
    return guarded([&] { ix(index)->search(n, x, k, distances, labels); });
}

int faiss_Index_remove_ids(FaissIndex *index, const FaissIDSelector *sel,
                           size_t *n_removed)
{
    return guarded([&] {
        size_t n = ix(index)->remove_ids(
                *reinterpret_cast<const faiss::IDSelector *>(sel));
        if (n_removed)
            *n_removed = n;
    });
}

int faiss_index_factory(FaissIndex **p_index, int d, const char *description,
                        FaissMetricType metric)
{
    return guarded([&] {
        faiss::Index *idx = faiss::index_factory(
                d, description, static_cast<faiss::MetricType>(metric));
        try {
            accelerate(idx);
        } catch (...) {
            delete idx;
            throw;
        }
        *p_index = reinterpret_cast<FaissIndex *>(idx);
    });
}

/* ---- IDMap ---------------------------------------------------------------- */

/* IndexIDMap2 derives from IndexIDMap, so this cast accepts both. */
FaissIndexIDMap *faiss_IndexIDMap_cast(FaissIndex *index)
{
    return reinterpret_cast<FaissIndexIDMap *>(
            dynamic_cast<faiss::IndexIDMap *>(ix(index)));
}

void faiss_IndexIDMap_id_map(FaissIndexIDMap *index, idx_t **p_id_map,
                             size_t *p_size)
{
    auto *m = reinterpret_cast<faiss::IndexIDMap *>(index);
    if (p_id_map)
        *p_id_map = m->id_map.data();
    if (p_size)
        *p_size = m->id_map.size();
}

FaissIndex *faiss_IndexIDMap_sub_index(FaissIndexIDMap *index)
{
    return reinterpret_cast<FaissIndex *>(
            reinterpret_cast<faiss::IndexIDMap *>(index)->index);
}

int faiss_Index_reconstruct(const FaissIndex *index, idx_t key,
                            float *recons)
{
    return guarded([&] { ix(index)->reconstruct(key, recons); });
}

/* ---- ID selectors ----------------------------------------------------------- */

int faiss_IDSelectorBatch_new(FaissIDSelectorBatch **p_sel, size_t n,
                              const idx_t *indices)
{
    return guarded([&] {
        *p_sel = reinterpret_cast<FaissIDSelectorBatch *>(
                new faiss::IDSelectorBatch(n, indices));
    });
}

void faiss_IDSelector_free(FaissIDSelector *obj)
{
    delete reinterpret_cast<faiss::IDSelector *>(obj);
}

/* ---- parameters (efSearch, efConstruction) ---------------------------------- */

int faiss_ParameterSpace_new(FaissParameterSpace **space)
{
    return guarded([&] {
        *space = reinterpret_cast<FaissParameterSpace *>(
                new faiss::ParameterSpace());
    });
}

void faiss_ParameterSpace_free(FaissParameterSpace *obj)
{
    delete reinterpret_cast<faiss::ParameterSpace *>(obj);
}

int faiss_ParameterSpace_set_index_parameter(const FaissParameterSpace *space,
                                             FaissIndex *index,
                                             const char *name, double value)
{
    return guarded([&] {
        reinterpret_cast<const faiss::ParameterSpace *>(space)
                ->set_index_parameter(ix(index), name, value);
    });
}

/* ---- I/O -------------------------------------------------------------------- */

int faiss_write_index(const FaissIndex *idx, FILE *f)
{
    return guarded([&] { faiss::write_index(ix(idx), f); });
}

int faiss_read_index(FILE *f, int io_flags, FaissIndex **p_out)
{
    return guarded([&] {
        faiss::Index *idx = faiss::read_index(f, io_flags);
        try {
            accelerate(idx);
        } catch (...) {
            delete idx;
            throw;
        }
        *p_out = reinterpret_cast<FaissIndex *>(idx);
    });
}

} // extern "C"
