/*
 * kernels.h -- the distance kernels of the ANN indexes (index/kernels.c),
 * shared by faiss' Flat storage (faiss_c.cpp), the HNSW graph (hnsw.cpp)
 * and the IVF (ivf.c), and the top-k heap of the exact scans. C linkage:
 * included from C and C++.
 */
#ifndef SENSE_KERNELS_H
#define SENSE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Inner product of two float vectors of d elements. */
typedef float (*sn__dot_fn)(const float *a, const float *b, size_t d);
/* Inner product of two int8 vectors of d elements (exact, in int32: d up
 * to 2^17 cannot overflow). */
typedef int32_t (*sn__dot_i8_fn)(const int8_t *a, const int8_t *b, size_t d);

/* The widest kernel this CPU runs (AVX-512, AVX2+FMA, else plain C),
 * capped by SENSE_ANN_KERNELS=base|avx2 (for tests and comparisons).
 * Reads the environment at each call: call it once per search or per
 * index, not per distance. */
sn__dot_fn sn__dot_pick(void);
sn__dot_i8_fn sn__dot_i8_pick(void);

/* The best k (score, id) pairs seen, as a min-heap (the root is the worst
 * kept): the exact scans of store.c and the IVF's. Push while *n grows to
 * k, then a pair replaces the root only if it scores higher (not on a tie,
 * not NaN). */
typedef struct {
    float score;
    int64_t id;
} sn__cand_t;
void sn__topk_push(sn__cand_t *h, int64_t *n, int64_t k, float score,
                   int64_t id);

#ifdef __cplusplus
}
#endif

#endif
