/*
 * hnsw.h -- ann.c's HNSW graph (index/hnsw.cpp: hnswlib over our distance
 * kernels, float or 8-bit scalar quantized vectors). Internal to index/.
 *
 * Labels are chunk rowids. Scores are inner products (cosine on
 * normalized vectors), exact in float up to rounding, approximate with
 * sq8. Functions that can fail return 0 or a negative code (-ENOMEM,
 * -EIO, SN_ECORRUPT) with a message in err.
 */
#ifndef SENSE_HNSW_H
#define SENSE_HNSW_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sn__hnsw sn__hnsw_t;

int sn__hnsw_new(int dim, int sq8, int m, int ef_construction,
                 sn__hnsw_t **out, char *err, size_t err_len);
void sn__hnsw_free(sn__hnsw_t *h); /* NULL: no-op */
/* Elements in the graph, deleted ones included; of them, deleted. */
int64_t sn__hnsw_count(const sn__hnsw_t *h);
int64_t sn__hnsw_n_deleted(const sn__hnsw_t *h);
/* Insert n vectors (n x dim, normalized) under ids (new labels), on the
 * calling thread's OpenMP team. */
int sn__hnsw_add(sn__hnsw_t *h, int64_t n, const float *vecs,
                 const int64_t *ids, char *err, size_t err_len);
/* Mark ids deleted: searches skip them. Unknown or already deleted ids
 * are ignored. */
int sn__hnsw_mark_deleted(sn__hnsw_t *h, int64_t n, const int64_t *ids);
/* The k nearest live elements to q with a beam of max(ef, k), best first;
 * scores -inf and labels -1 past the end. */
int sn__hnsw_search(const sn__hnsw_t *h, const float *q, int64_t k,
                    int64_t ef, float *scores, int64_t *labels, char *err,
                    size_t err_len);
/* sn__hnsw_search through hnswlib's own layer-0 search instead of the
 * prefetching one (hnsw.cpp beam0): the reference the tests compare it
 * with, result for result. */
int sn__hnsw_search_ref(const sn__hnsw_t *h, const float *q, int64_t k,
                        int64_t ef, float *scores, int64_t *labels,
                        char *err, size_t err_len);
/* Every label (deleted too), in insertion order, into ids[count]. */
int sn__hnsw_ids(const sn__hnsw_t *h, int64_t *ids);
/* same[i]: ids[i] is in the graph holding vecs[i] (with sq8: its codes). */
int sn__hnsw_same(const sn__hnsw_t *h, const int64_t *ids, int64_t n,
                  const float *vecs, int *same);
/* The graph's M (links per node above level 0; 2M on level 0). */
int sn__hnsw_m(const sn__hnsw_t *h);
/* 1: the graph holds 8-bit codes; 0: float vectors. */
int sn__hnsw_is_sq8(const sn__hnsw_t *h);
/* Bytes of one element in the level-0 block: links, vector, label. */
size_t sn__hnsw_bytes_per_vector(const sn__hnsw_t *h);
/* The graph as a byte stream (ann.c wraps it in its header). */
int sn__hnsw_write(const sn__hnsw_t *h, FILE *f, char *err, size_t err_len);
int sn__hnsw_read(FILE *f, int dim, sn__hnsw_t **out, char *err,
                  size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
