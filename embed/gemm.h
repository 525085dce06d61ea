/*
 * gemm.h -- the encoders' dense matmuls: C[m, n] += A[m, k] W, with W packed
 * once at model load (embed/gemm.c). Internal to libsense.
 *
 * Ownership: sn__gemm_pack fills a caller-owned sn__gemm_w_t with a packed
 * copy it allocates; sn__gemm_free releases that copy (a zeroed or freed
 * struct is a no-op). The packed weights are immutable and may be shared by
 * threads. sn__gemm_acc allocates nothing and keeps no state: a caller
 * splits one product into parts over its own threads, each part computing
 * a disjoint set of C's columns.
 */
#ifndef SENSE_GEMM_H
#define SENSE_GEMM_H

#include <stddef.h>

#define SN_GEMM_NR 32 /* output columns per packed panel */

/* Kernel levels; each level computes the same thing, bit for bit within a
 * level, whatever m, the row's place and the split into parts. */
enum { SN_GEMM_BASE = 0, SN_GEMM_AVX2 = 1, SN_GEMM_AVX512 = 2 };

typedef struct {
    int n, k;     /* W is k x n (k inputs, n outputs) */
    int n_panels; /* ceil(n / SN_GEMM_NR) */
    float *p;     /* panel j: k rows of SN_GEMM_NR floats, zero-padded */
} sn__gemm_w_t;

/* The best level this CPU runs, capped by SENSE_BERT_KERNELS=base|avx2
 * (read at each call). */
int sn__gemm_level(void);
const char *sn__gemm_level_name(int level);

/* Pack W into w. src is W^T laid out [n, k] (PyTorch's Linear weight
 * [out, in]) when src_is_nk, else W laid out [k, n] (TensorFlow's).
 * 0, SN_EARG (a size < 1 or too large) or -ENOMEM; on error w is zeroed. */
int sn__gemm_pack(sn__gemm_w_t *w, const float *src, int n, int k,
                  int src_is_nk);
void sn__gemm_free(sn__gemm_w_t *w);

/* A whole product for a thread pool (embed/pool.c): sn__gemm_part has
 * sn__pool_cb's signature and computes part `part` of n_parts of
 * C[m, n] += A W, A's rows w->k floats apart and C's w->n. */
typedef struct {
    int level, m;
    const sn__gemm_w_t *w;
    const float *a;
    float *c;
} sn__gemm_job_t;
void sn__gemm_part(void *job, int part, int n_parts);

/* For operands made per call (attention's K^T and V): the floats a packed
 * W of n x k takes, and sn__gemm_pack into buf (that many floats, 64-byte
 * aligned, caller-owned; w->p = buf) from src whose rows (n of k floats
 * when src_is_nk, else k of n) lie ld floats apart. Allocates nothing. */
size_t sn__gemm_packed_floats(int n, int k);
void sn__gemm_pack_to(sn__gemm_w_t *w, float *buf, const float *src,
                      size_t ld, int n, int k, int src_is_nk);

/* Part `part` of n_parts of C[m, n] += A[m, k] W: the parts split W's
 * panels evenly and in order, so each part writes its own columns of C and
 * the parts may run concurrently. A row-major with row stride lda, C with
 * ldc; `level` at most sn__gemm_level(). m may be 0. */
void sn__gemm_acc(int level, const sn__gemm_w_t *w, const float *a,
                  size_t lda, float *c, size_t ldc, int m, int part,
                  int n_parts);

#endif
