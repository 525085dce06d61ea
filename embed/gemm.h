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
#include <stdint.h>

#define SN_GEMM_NR 32 /* output columns per packed panel */

/* Kernel levels; each level computes the same thing, bit for bit within a
 * level, whatever m, the row's place and the split into parts. */
enum { SN_GEMM_BASE = 0, SN_GEMM_AVX2 = 1, SN_GEMM_AVX512 = 2 };

/* Precisions of a packed weight: the values of sn_precision_t (embed.h)
 * other than SN_PREC_AUTO. */
enum { SN_GEMM_F32 = 1, SN_GEMM_BF16 = 2, SN_GEMM_INT8 = 3 };

typedef struct {
    int n, k;     /* W is k x n (k inputs, n outputs) */
    int n_panels; /* ceil(n / SN_GEMM_NR) */
    float *p;     /* f32: panel j: k rows of SN_GEMM_NR floats, zero-padded */
    /* reduced precision (embed/gemm_lowp.c); p is NULL then */
    int prec;       /* SN_GEMM_*; 0 counts as f32 */
    int kp;         /* k padded to a multiple of 4 */
    void *q;        /* panels of bf16 pairs or int8 quads (owns scale, csum) */
    float *scale;   /* int8: per output column */
    int32_t *csum;  /* int8: sum_k q[k][col] */
    /* the second backend (embed/gemm_dnnl.c): oneDNN's copy of W and its
     * matmul, owned; NULL when our kernels run this product */
    struct sn__dnnl_w *dnnl;
} sn__gemm_w_t;

/* ---- the CPU feature ladder (embed/gemm_lowp.c) ---------------------------
 * Each rung has what the ones below it have (for our kernels' purposes).
 * sn__isa() is what this CPU has, capped by SENSE_ISA=<rung name> (or
 * "f32-only" = base) so that tests can force the fallbacks; it caps the
 * f32 kernels (sn__gemm_level, sn__kernels_pick) too. */
enum {
    SN_ISA_BASE = 0,
    SN_ISA_AVX2,       /* AVX2 + FMA */
    SN_ISA_AVXVNNI,    /* + AVX-VNNI (VEX int8 dot products) */
    SN_ISA_AVX512,     /* AVX-512 F/BW/VL */
    SN_ISA_AVX512VNNI, /* + AVX512_VNNI */
    SN_ISA_AVX512BF16, /* + AVX512_BF16 */
    SN_ISA_AMX,        /* + AMX-TILE/BF16/INT8 (no AMX kernels yet) */
};
int sn__isa(void);
int sn__isa_cpu(void); /* what the CPU has, SENSE_ISA aside */
const char *sn__isa_name(int isa);
int sn__isa_parse(const char *name); /* -1 when unknown */
/* Whether rung `isa` has units for `prec` (SN_GEMM_*; f32: always). */
int sn__isa_has(int isa, int prec);
/* The kernel sn__gemm_acc_q / sn__gemm_acc runs for (isa, prec). */
const char *sn__gemm_kernel_name(int isa, int prec);

/* The best level this CPU runs, capped by SENSE_BERT_KERNELS=base|avx2
 * and by SENSE_ISA (read at each call). */
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
    int level, m; /* level: sn__gemm_level() */
    const sn__gemm_w_t *w;
    const float *a;
    float *c;
    size_t lda, ldc; /* 0: w->k, w->n */
    int isa;         /* reduced precision: sn__isa() */
    void *qa;        /* reduced precision: sn__gemm_qa_bytes(w, m) bytes */
} sn__gemm_job_t;
void sn__gemm_part(void *job, int part, int n_parts);
/* Reduced precision: rows [part share) of A converted into j->qa; runs
 * over all threads before sn__gemm_part. */
void sn__gemm_quant_part(void *job, int part, int n_parts);

/* The whole product on `pool` (on the caller alone below par_min flops):
 * for a reduced-precision w, A's rows are converted first into *qa, grown
 * as needed (*qa_cap bytes; the caller frees *qa). 0 or -ENOMEM (nothing
 * computed). */
struct sn__pool;
int sn__gemm_run(struct sn__pool *pool, sn__gemm_job_t *j, double par_min,
                 void **qa, size_t *qa_cap);

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

/* ---- reduced precision (embed/gemm_lowp.c) --------------------------------
 * Pack W as sn__gemm_pack does, in precision prec (SN_GEMM_*; f32 calls
 * sn__gemm_pack). Freed by sn__gemm_free. */
int sn__gemm_pack_prec(sn__gemm_w_t *w, const float *src, int n, int k,
                       int src_is_nk, int prec);
int sn__gemm_kp(int prec, int k);
/* Bytes the packed weight holds. */
size_t sn__gemm_packed_bytes(const sn__gemm_w_t *w);
/* A converted per call: bytes for m rows (0 for f32), and the conversion
 * of rows [r0, r1) of the m (bf16 rounding, or int8 with its per-row
 * scale), each row depending on itself only. */
size_t sn__gemm_qa_bytes(const sn__gemm_w_t *w, int m);
void sn__gemm_quant_rows(int isa, const sn__gemm_w_t *w, const float *a,
                         size_t lda, void *qa, int m, int r0, int r1);
/* Part `part` of n_parts of C[m, n] += A W from A converted into qa (all m
 * rows), as sn__gemm_acc splits it. */
void sn__gemm_acc_q(int isa, const sn__gemm_w_t *w, const void *qa,
                    float *c, size_t ldc, int m, int part, int n_parts);

/* The row stride of A converted (bytes; 0 for f32) and, for int8, the
 * epilogue every backend ends with: rows [r0, r1) of
 * C[r][c] += s_r s_c (float)(acc[r][c] - z_r csum[c]) from int32 sums
 * acc (rows ld_acc apart) and the scales qa holds after its m rows. */
size_t sn__gemm_qa_ld(const sn__gemm_w_t *w);
/* With oneDNN (w->dnnl): where in qa its int8 sums go (m rounded up to
 * SN_DNNL_ROWS rows of n), and SN_DNNL_SLOTS slots of sn__gemm_qa_slot_bytes,
 * each the room for one block of SN_DNNL_ROWS rows of A
 * (sn__gemm_qa_tail_ld bytes apart), then of C (n floats apart), then
 * oneDNN's scratchpad for it. */
int32_t *sn__gemm_qa_acc(const sn__gemm_w_t *w, void *qa, int m);
void *sn__gemm_qa_tail(const sn__gemm_w_t *w, void *qa, int m, int slot);
size_t sn__gemm_qa_tail_ld(const sn__gemm_w_t *w);
size_t sn__gemm_qa_slot_bytes(const sn__gemm_w_t *w);
void sn__gemm_int8_rows(const sn__gemm_w_t *w, const void *qa, int m,
                        const int32_t *acc, size_t ld_acc, float *c,
                        size_t ldc, int r0, int r1);

/* ---- backends (embed/gemm_dnnl.c) --------------------
 * A packed weight runs on our kernels, or on oneDNN when w->dnnl is set.
 * SENSE_GEMM=ours|onednn|auto (auto when unset) says which: sn__gemm_backend
 * parses it (-1 for an unknown value). While a model loads, the loading
 * thread collects the weights it packs (sn__gemm_collect_begin/_end);
 * sn__gemm_backend_pick then gives them oneDNN copies (forced), or times
 * both backends on each distinct shape and gives oneDNN the shapes where
 * it is 1.25x faster at both 128 rows and 16 (auto; the rule and its
 * reasons: gemm_dnnl.c); `why` gets one line with the figures. */
enum { SN_GEMM_AUTO = 0, SN_GEMM_OURS = 1, SN_GEMM_ONEDNN = 2 };
#define SN_DNNL_MAX_THREADS 64
/* oneDNN runs blocks of this many rows, the last one padded, so that a
 * row's bits do not depend on the batch (embed/gemm_dnnl.c) */
#define SN_DNNL_ROWS 32
#define SN_DNNL_SLOTS 8 /* at most this many threads run oneDNN blocks */
int sn__gemm_backend(void);
const char *sn__gemm_backend_name(int b);
void sn__gemm_collect_begin(void);
void sn__gemm_collect_add(sn__gemm_w_t *w);
void sn__gemm_collect_end(void);
/* Over the weights collected: 0, or -ENOMEM. n_threads: the encoders'
 * pool size. */
int sn__gemm_backend_pick(int backend, int prec, int n_threads, char *why,
                          size_t why_len);

/* 1 when built with libdnnl; whether oneDNN may run prec here (built, the
 * CPU has the units, SENSE_ISA does not cap it). */
int sn__gemm_dnnl_built(void);
int sn__gemm_dnnl_usable(int prec);
const char *sn__gemm_dnnl_version(void);
/* w->dnnl from w's packed panels: 0, SN_EARG (oneDNN has no matmul for
 * it) or -ENOMEM; detach frees it (NULL or unset: no-op). */
int sn__gemm_dnnl_attach(sn__gemm_w_t *w);
void sn__gemm_dnnl_detach(sn__gemm_w_t *w);
/* Bytes of scratchpad one block of w needs (in each slot of qa). */
size_t sn__gemm_dnnl_scratch_bytes(const sn__gemm_w_t *w);
/* Whether w's matmul is ready (made on first call): 0 or SN_EARG. */
int sn__gemm_dnnl_ready(const sn__gemm_w_t *w);
/* Part `part` of n_parts (at most SN_DNNL_SLOTS) of C[m, n] += A W on
 * oneDNN, single-threaded: the blocks of SN_DNNL_ROWS rows part,
 * part + n_parts, ...; A is a (f32, rows lda apart) or in qa (converted,
 * bf16 / int8), which has sn__gemm_qa_bytes(w, m) bytes; int8 adds its
 * sums through our epilogue. 0 or SN_EARG (C may be partly written). */
int sn__gemm_dnnl_part(const sn__gemm_w_t *w, const float *a, size_t lda,
                       void *qa, float *c, size_t ldc, int m, int part,
                       int n_parts);

#endif
