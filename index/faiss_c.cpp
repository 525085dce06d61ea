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
 * AVX2+FMA and picked at run time (index/kernels.c; plain C otherwise;
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

#include "kernels.h"

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

typedef faiss::Index::idx_t fidx_t;

typedef sn__dot_fn dot_fn;

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
        return new FastIPDis(*this, sn__dot_pick());
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
        const dot_fn dot = sn__dot_pick();
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
