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
 */
#include <cstdio>
#include <exception>
#include <string>

#include <faiss/AutoTune.h>
#include <faiss/Index.h>
#include <faiss/IndexIDMap.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

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
        *p_index = reinterpret_cast<FaissIndex *>(faiss::index_factory(
                d, description, static_cast<faiss::MetricType>(metric)));
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
        *p_out = reinterpret_cast<FaissIndex *>(
                faiss::read_index(f, io_flags));
    });
}

} // extern "C"
