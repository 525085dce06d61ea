/*
 * ivf.h -- ann.c's inverted-file index (index/ivf.c: k-means lists of 8-bit
 * codes, scanned with index/kernels.c). Internal to index/.
 *
 * Labels are chunk rowids. Scores are approximate inner products (the
 * caller reranks from the float vectors, as for the SQ8 graph). Functions
 * that can fail return 0 or a negative code (-ENOMEM, -EIO, SN_ECORRUPT)
 * with a message in err.
 */
#ifndef SENSE_IVF_H
#define SENSE_IVF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sn__ivf sn__ivf_t;

int sn__ivf_new(int dim, sn__ivf_t **out, char *err, size_t err_len);
void sn__ivf_free(sn__ivf_t *v); /* NULL: no-op */
/* How many vectors the adds to come will bring (a build knows): the lists
 * are trained once that many have arrived, on all of them (up to
 * SN__IVF_TRAIN_MAX). n_lists 0: the rule (ivf.c); else that many (for
 * bench/bench_search). Before any add only. */
void sn__ivf_expect(sn__ivf_t *v, int64_t n, int n_lists);
/* Vectors held; the lists (0 while untrained). */
int64_t sn__ivf_count(const sn__ivf_t *v);
int sn__ivf_n_lists(const sn__ivf_t *v);
/* The lists probed by default at this size (the rule, ivf.c). */
int64_t sn__ivf_nprobe(const sn__ivf_t *v);
/* 1: grown so far past what its lists were trained for that a rebuild
 * pays (SN__IVF_REGROW). */
int sn__ivf_outgrown(const sn__ivf_t *v);
/* Add n vectors (n x dim, normalized) under new ids. */
int sn__ivf_add(sn__ivf_t *v, int64_t n, const float *vecs,
                const int64_t *ids, char *err, size_t err_len);
/* Remove ids (unknown ones ignored); n_removed may be NULL. */
int sn__ivf_remove(sn__ivf_t *v, int64_t n, const int64_t *ids,
                   int64_t *n_removed, char *err, size_t err_len);
/* The k best by approximate score, probing nprobe lists (<= 0: the rule),
 * best first; scores -inf and labels -1 past the end. */
int sn__ivf_search(const sn__ivf_t *v, const float *q, int64_t k,
                   int64_t nprobe, float *scores, int64_t *labels,
                   char *err, size_t err_len);
/* Every id, in no particular order, into ids[count]. */
void sn__ivf_ids(const sn__ivf_t *v, int64_t *ids);
/* same[i]: ids[i] (sorted ascending) is held with vecs[i]'s codes (or,
 * before training, vecs[i] itself). */
int sn__ivf_same(const sn__ivf_t *v, const int64_t *ids, int64_t n,
                 const float *vecs, int *same, char *err, size_t err_len);
/* Bytes per vector held: its codes and its id. */
size_t sn__ivf_bytes_per_vector(const sn__ivf_t *v);
/* The index as a byte stream (ann.c wraps it in its header and checksum). */
int sn__ivf_write(const sn__ivf_t *v, FILE *f, char *err, size_t err_len);
int sn__ivf_read(FILE *f, int dim, sn__ivf_t **out, char *err,
                 size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
