/*
 * gemm.c -- the encoders' dense matmuls, C[m, n] += A[m, k] W, on our own
 * register-blocked kernels, so that the encoders' speed no longer depends
 * on which OpenBLAS kernels the environment selects (OPENBLAS_CORETYPE=
 * Haswell halves OpenBLAS's sgemm on AVX-512 CPUs).
 *
 * Packing. W is packed once, at model load, into panels of SN_GEMM_NR = 32
 * output columns: panel j holds columns [32 j, 32 j + 32) as k rows of 32
 * floats (k-major), 64-byte aligned, the last panel zero-padded. A k-range
 * of a panel is therefore one contiguous run (32 kc floats), read
 * sequentially by the micro-kernel. 32 columns = two AVX-512 vectors, four
 * AVX2 ones, eight 4-lane ones: one layout serves every kernel level, so a
 * model packs once whatever the CPU (and tests can run all levels on it).
 *
 * Micro-kernel. MR rows x SW columns of C held in registers while k runs:
 *   AVX-512  MR 14, SW 32 (2 zmm): 28 accumulators + 2 B vectors + a
 *            broadcast = 31 of 32 zmm registers;
 *   AVX2     MR 6,  SW 16 (2 ymm): 12 + 2 + 1 = 15 of 16 ymm;
 *   base     MR 4,  SW 8 (2 x 4 lanes): SSE2 or NEON, no FMA assumed.
 * Each k step loads SW floats of B and broadcasts MR elements of A (A is
 * read in place, row stride lda; not packed: an MR x kc strip of A is a few
 * KB read from L1/L2, and the broadcasts are 1 load per 2 FMAs, well under
 * what the load ports take). The kernels are written once with GCC/Clang
 * vector extensions and compiled per target by including this file into
 * itself (as bert.c does): a target the CPU lacks is never picked.
 *
 * Blocking. Rows in blocks of SN_GEMM_MC = 252 (a multiple of every MR),
 * k in blocks of SN_GEMM_KC = 256: the A block (252 x 256 x 4 = 252 KB)
 * stays in L2 while every panel of the part streams past it, and a B
 * sub-panel (256 x SW floats, 32 KB at most) stays in L1 while all the row
 * tiles of the block use it. The accumulators start at zero for each k
 * block and are added to C at its end: C often holds a residual much
 * larger than the products, and folding every product into it (one chain
 * from C's value) lost ten times more precision (3e-5 against 3e-6 on
 * bench/ort_bench.js's model) than rounding against it once per block.
 *
 * Invariants.
 *   - C's element (i, j) is C's value plus, for each k block in order, one
 *     FMA chain s = fma(a[i][k], w[k][j], s) from s = 0 over the block's k
 *     in order: tail rows run the same code with a smaller MR, and the
 *     last, partial panel runs it on a padded copy of C's tile. So a row's result does not depend on m, on the row's place,
 *     on the blocking or on the split into parts: a sequence alone and in a
 *     batch give bit-identical results (within one kernel level; the base
 *     level uses separate multiply and add, the others fused).
 *   - Nothing is allocated per call; the parts split the panels in order,
 *     so concurrent parts write disjoint columns of C.
 *
 * Tuned for: the MiniLM / USE-Lite shapes, m 16 to 4096 rows, n 384 to
 * 1536, k 256 to 1536, on 1 to a few threads of an AVX-512 core (Zen 4/5:
 * full-width 512-bit FMA) or an AVX2 one. On the 2-thread Zen 5 test
 * machine it reaches about 2x OpenBLAS's Haswell kernels and about what its
 * SkylakeX kernels do (bench/bench_encode.c prints both).
 */
#ifndef SN_GEMM_PASS /* the main pass: all but the kernels */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "embed_int.h"
#include "gemm.h"
#include "pool.h"

#define SN_GEMM_MC 252 /* rows per block: a multiple of 14, 6 and 4 */
#define SN_GEMM_KC 256 /* k per block */
#define SN_GEMM_MAX_DIM (1 << 24) /* n and k; n * k is checked too */
#define SN_GEMM_QUANT_PAR_MIN (1 << 16) /* elements of A worth splitting */

typedef void (*block_fn)(const float *a, size_t lda, const float *b, int kc,
                         float *c, size_t ldc, int m, int nc);

#define SN_GEMM_PASS 1
#if defined(__x86_64__) && defined(__GNUC__) && !defined(SN_BERT_NO_SIMD_PASSES)
#define SN_W 16
#define SN_NV 2
#define SN_MR 14
#define SN_K(name) name##_avx512
#define SN_KATTR __attribute__((target("avx512f,avx2,fma")))
#include "gemm.c"
#undef SN_W
#undef SN_NV
#undef SN_MR
#undef SN_K
#undef SN_KATTR
#define SN_W 8
#define SN_NV 2
#define SN_MR 6
#define SN_K(name) name##_avx2
#define SN_KATTR __attribute__((target("avx2,fma")))
#include "gemm.c"
#undef SN_W
#undef SN_NV
#undef SN_MR
#undef SN_K
#undef SN_KATTR
#define SN_HAVE_AVX_PASSES 1
#endif
#define SN_W 4
#define SN_NV 2
#define SN_MR 4
#define SN_K(name) name##_base
#define SN_KATTR
#include "gemm.c"
#undef SN_W
#undef SN_NV
#undef SN_MR
#undef SN_K
#undef SN_KATTR
#undef SN_GEMM_PASS

int sn__gemm_level(void)
{
    const char *cap = getenv("SENSE_BERT_KERNELS");
    const int isa = sn__isa();

    if (cap && !strcmp(cap, "base"))
        return SN_GEMM_BASE;
#ifdef SN_HAVE_AVX_PASSES
    if (isa >= SN_ISA_AVX512 && !(cap && !strcmp(cap, "avx2")))
        return SN_GEMM_AVX512;
    if (isa >= SN_ISA_AVX2)
        return SN_GEMM_AVX2;
#else
    (void)isa;
#endif
    return SN_GEMM_BASE;
}

const char *sn__gemm_level_name(int level)
{
    return level == SN_GEMM_AVX512 ? "avx512"
           : level == SN_GEMM_AVX2 ? "avx2"
                                   : "base";
}

void sn__gemm_part(void *job, int part, int n_parts)
{
    const sn__gemm_job_t *j = job;
    const size_t ldc = j->ldc ? j->ldc : (size_t)j->w->n;
    if (j->w->prec > SN_GEMM_F32)
        sn__gemm_acc_q(j->isa, j->w, j->qa, j->c, ldc, j->m, part, n_parts);
    else
        sn__gemm_acc(j->level, j->w, j->a, j->lda ? j->lda : (size_t)j->w->k,
                     j->c, ldc, j->m, part, n_parts);
}

/* A part of the product on oneDNN (embed/gemm_dnnl.c) */
typedef struct {
    sn__gemm_job_t *j;
    int failed; /* atomic */
} dnnl_job_t;

static void dnnl_part(void *job, int part, int n_parts)
{
    dnnl_job_t *dj = job;
    const sn__gemm_job_t *j = dj->j;

    if (sn__gemm_dnnl_part(j->w, j->a, j->lda ? j->lda : (size_t)j->w->k,
                           j->qa, j->c, j->ldc ? j->ldc : (size_t)j->w->n,
                           j->m, part, n_parts))
        __atomic_store_n(&dj->failed, 1, __ATOMIC_RELAXED);
}

/* The product on oneDNN (A already converted), its blocks of rows spread
 * over the pool: 0; SN_EARG when oneDNN has no matmul for it (nothing
 * written: our kernels run it); -EIO when an execution failed (C partly
 * written: the forward pass fails). */
static int run_dnnl(sn__pool_t *pool, sn__gemm_job_t *j, int par)
{
    dnnl_job_t dj = {.j = j};
    const int n_blocks = (j->m + SN_DNNL_ROWS - 1) / SN_DNNL_ROWS;

    if (sn__gemm_dnnl_ready(j->w))
        return SN_EARG;
    if (par && n_blocks > 1 && sn__pool_threads(pool) <= SN_DNNL_SLOTS)
        sn__pool_run(pool, dnnl_part, &dj);
    else
        dnnl_part(&dj, 0, 1);
    return dj.failed ? -EIO : 0;
}

int sn__gemm_run(sn__pool_t *pool, sn__gemm_job_t *j, double par_min,
                 void **qa, size_t *qa_cap)
{
    const int par = sn__pool_threads(pool) > 1 &&
                    2.0 * j->m * j->w->n * j->w->k >= par_min;

    const size_t need = sn__gemm_qa_bytes(j->w, j->m);

    if (j->m < 1)
        return 0;
    if (need > *qa_cap) {
        size_t cap = (need + need / 2 + 63) & ~(size_t)63;
        void *p = aligned_alloc(64, cap);
        if (!p)
            return -ENOMEM;
        free(*qa);
        *qa = p;
        *qa_cap = cap;
    }
    j->qa = *qa;
    if (j->w->prec > SN_GEMM_F32) {
        /* a few rows convert faster on the caller than a fork-join
         * takes (16 x 384: about 2 us) */
        if (par && (double)j->m * j->w->k >= SN_GEMM_QUANT_PAR_MIN)
            sn__pool_run(pool, sn__gemm_quant_part, j);
        else
            sn__gemm_quant_part(j, 0, 1);
    }
    /* oneDNN when the weight has its copy; our kernels otherwise, and for
     * a call oneDNN refused (C is untouched then) */
    if (j->w->dnnl) {
        int rc = run_dnnl(pool, j, par);
        if (rc == 0 || rc == -EIO)
            return rc;
    }
    if (par)
        sn__pool_run(pool, sn__gemm_part, j);
    else
        sn__gemm_part(j, 0, 1);
    return 0;
}

size_t sn__gemm_packed_floats(int n, int k)
{
    return ((size_t)n + SN_GEMM_NR - 1) / SN_GEMM_NR * (size_t)k *
           SN_GEMM_NR;
}

void sn__gemm_pack_to(sn__gemm_w_t *w, float *buf, const float *src,
                      size_t ld, int n, int k, int src_is_nk)
{
    const size_t n_panels = ((size_t)n + SN_GEMM_NR - 1) / SN_GEMM_NR;
    const size_t per = (size_t)k * SN_GEMM_NR;

    for (size_t j = 0; j < n_panels; j++) {
        float *panel = buf + j * per;
        size_t c0 = j * SN_GEMM_NR;
        for (size_t kk = 0; kk < (size_t)k; kk++)
            for (size_t col = 0; col < SN_GEMM_NR; col++) {
                size_t cn = c0 + col;
                float v = 0.0f;
                if (cn < (size_t)n)
                    v = src_is_nk ? src[cn * ld + kk] : src[kk * ld + cn];
                panel[kk * SN_GEMM_NR + col] = v;
            }
    }
    memset(w, 0, sizeof *w);
    w->p = buf;
    w->n = n;
    w->k = k;
    w->kp = k;
    w->prec = SN_GEMM_F32;
    w->n_panels = (int)n_panels;
}

int sn__gemm_pack(sn__gemm_w_t *w, const float *src, int n, int k,
                  int src_is_nk)
{
    float *buf;

    memset(w, 0, sizeof *w);
    if (!src || n < 1 || k < 1 || n > SN_GEMM_MAX_DIM ||
        k > SN_GEMM_MAX_DIM || (double)n * k > (double)SIZE_MAX / 8)
        return SN_EARG;
    buf = aligned_alloc(64, sn__gemm_packed_floats(n, k) * sizeof *buf);
    if (!buf)
        return -ENOMEM;
    sn__gemm_pack_to(w, buf, src, src_is_nk ? (size_t)k : (size_t)n, n, k,
                     src_is_nk);
    return 0;
}

void sn__gemm_free(sn__gemm_w_t *w)
{
    if (!w)
        return;
    sn__gemm_dnnl_detach(w);
    free(w->p);
    free(w->q);
    memset(w, 0, sizeof *w);
}

void sn__gemm_acc(int level, const sn__gemm_w_t *w, const float *a,
                  size_t lda, float *c, size_t ldc, int m, int part,
                  int n_parts)
{
    block_fn block = g_block_base;
    const size_t per = (size_t)w->k * SN_GEMM_NR;
    int p0, p1;

#ifdef SN_HAVE_AVX_PASSES
    if (level == SN_GEMM_AVX512)
        block = g_block_avx512;
    else if (level == SN_GEMM_AVX2)
        block = g_block_avx2;
#else
    (void)level;
#endif
    if (m < 1 || n_parts < 1 || part < 0 || part >= n_parts)
        return;
    p0 = (int)((long long)w->n_panels * part / n_parts);
    p1 = (int)((long long)w->n_panels * (part + 1) / n_parts);
    for (int m0 = 0; m0 < m; m0 += SN_GEMM_MC) {
        const int mc = m - m0 < SN_GEMM_MC ? m - m0 : SN_GEMM_MC;
        for (int k0 = 0; k0 < w->k; k0 += SN_GEMM_KC) {
            const int kc = w->k - k0 < SN_GEMM_KC ? w->k - k0 : SN_GEMM_KC;
            for (int j = p0; j < p1; j++) {
                const int nc = w->n - j * SN_GEMM_NR < SN_GEMM_NR
                                   ? w->n - j * SN_GEMM_NR
                                   : SN_GEMM_NR;
                block(a + (size_t)m0 * lda + k0, lda,
                      w->p + (size_t)j * per + (size_t)k0 * SN_GEMM_NR, kc,
                      c + (size_t)m0 * ldc + (size_t)j * SN_GEMM_NR, ldc, mc,
                      nc);
            }
        }
    }
}

#else /* SN_GEMM_PASS ------------------------------------------------------
 * The kernels, compiled once per target: the includer defines SN_W (float
 * lanes per vector), SN_NV (vectors per tile row), SN_MR (rows per tile),
 * SN_K(name) (the pass's suffix) and SN_KATTR (its target attribute). */

#define vf SN_K(gvf)
#define vfu SN_K(gvfu)
#define tile SN_K(g_tile)
#define SW (SN_W * SN_NV)

typedef float vf __attribute__((vector_size(SN_W * 4)));
typedef float vfu __attribute__((vector_size(SN_W * 4), aligned(4),
                                 may_alias)); /* unaligned access */

#undef SN_INLINE
#define SN_INLINE static inline __attribute__((always_inline)) SN_KATTR
#undef v_load
#undef v_store
#undef v_set1
#define v_load(p) (*(const vfu *)(const void *)(p))
#define v_store(p, v) (*(vfu *)(void *)(p) = (v))
#if SN_W == 16
#define v_set1(f)                                                            \
    ((vf){(f), (f), (f), (f), (f), (f), (f), (f), (f), (f), (f), (f), (f),   \
          (f), (f), (f)})
#elif SN_W == 8
#define v_set1(f) ((vf){(f), (f), (f), (f), (f), (f), (f), (f)})
#else
#define v_set1(f) ((vf){(f), (f), (f), (f)})
#endif

/* C tile [MR rows x SW columns] (row stride ldc) += A [MR x kc] (lda) B,
 * B kc rows of SW columns at row stride SN_GEMM_NR. */
SN_INLINE void tile(const float *a, size_t lda, const float *b, int kc,
                    float *c, size_t ldc, const int MR)
{
    vf acc[SN_MR][SN_NV];

#pragma GCC unroll 16
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < SN_NV; v++) {
            acc[r][v] = v_set1(0.0f);
            /* C's rows are ldc apart, which the hardware prefetchers do
             * not follow: ask for them now, they are added to at the end
             * (as gemm_lowp.c's prefetch_c; bench_gemm, 2 threads, Zen 5:
             * M 4096 348 -> 436 GFLOP/s, M 128 381 -> 449) */
            __builtin_prefetch(c + (size_t)r * ldc + SN_W * v, 1, 3);
        }
    for (int k = 0; k < kc; k++) {
        vf bv[SN_NV];
#pragma GCC unroll 4
        for (int v = 0; v < SN_NV; v++)
            bv[v] = v_load(b + (size_t)k * SN_GEMM_NR + SN_W * v);
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) {
            const vf ab = v_set1(a[(size_t)r * lda + k]);
#pragma GCC unroll 4
            for (int v = 0; v < SN_NV; v++)
                acc[r][v] += ab * bv[v];
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < SN_NV; v++)
            v_store(c + (size_t)r * ldc + SN_W * v,
                    v_load(c + (size_t)r * ldc + SN_W * v) + acc[r][v]);
}

/* One (row block, k block, panel): C [m x nc] += A [m x kc] B [kc x 32]. */
SN_KATTR static void SN_K(g_block)(const float *a, size_t lda,
                                   const float *b, int kc, float *c,
                                   size_t ldc, int m, int nc)
{
    for (int s = 0; s * SW < nc; s++) {
        const float *bs = b + s * SW;
        const int keep = nc - s * SW < SW ? nc - s * SW : SW;
        for (int i = 0; i < m; i += SN_MR) {
            const int mr = m - i < SN_MR ? m - i : SN_MR;
            const float *ai = a + (size_t)i * lda;
            float tmp[SN_MR * SW], *ct = c + (size_t)i * ldc + s * SW;
            size_t ld = ldc;

            if (keep < SW) { /* the padded tail: same code on a copy */
                memset(tmp, 0, sizeof tmp);
                for (int r = 0; r < mr; r++)
                    memcpy(tmp + r * SW, ct + (size_t)r * ldc,
                           (size_t)keep * sizeof *tmp);
                ct = tmp;
                ld = SW;
            }
            switch (mr) {
#define SN_GEMM_CASE(R)                                                      \
    case R:                                                                  \
        tile(ai, lda, bs, kc, ct, ld, (R) <= SN_MR ? (R) : 1);               \
        break;
                SN_GEMM_CASE(1)
                SN_GEMM_CASE(2)
                SN_GEMM_CASE(3)
                SN_GEMM_CASE(4)
                SN_GEMM_CASE(5)
                SN_GEMM_CASE(6)
                SN_GEMM_CASE(7)
                SN_GEMM_CASE(8)
                SN_GEMM_CASE(9)
                SN_GEMM_CASE(10)
                SN_GEMM_CASE(11)
                SN_GEMM_CASE(12)
                SN_GEMM_CASE(13)
                SN_GEMM_CASE(14)
#undef SN_GEMM_CASE
            default:
                break;
            }
            if (keep < SW)
                for (int r = 0; r < mr; r++)
                    memcpy(c + (size_t)(i + r) * ldc + s * SW, tmp + r * SW,
                           (size_t)keep * sizeof *tmp);
        }
    }
}

#undef vf
#undef vfu
#undef tile
#undef SW

#endif /* SN_GEMM_PASS */
