/*
 * kernels.c -- the element-wise and attention kernels every architecture
 * calls (through sn__kernels_t, embed/nn.h): activations and their gated
 * forms, bias adds, LayerNorm (with or without bias), RMSNorm, and
 * attention over one (sequence, head) with a scale, an optional causal or
 * sliding-window mask, an optional relative position bias, and any row
 * strides (so grouped-query heads read their shared K/V head in place).
 * The dense products are embed/gemm.c's.
 *
 * They are written once with GCC/Clang vector extensions (the #else
 * branch of SN_KERNELS_PASS below), and compiled once per target by
 * including this file into itself, each time with its own vector width:
 * AVX-512 (16 lanes, 4-vector tiles), AVX2 + FMA (8 lanes, 2-vector tiles)
 * and the baseline (4 lanes: SSE2, NEON). A width the target lacks is not
 * an option: GCC lowers a 64-byte vector on AVX2 through the stack, ten
 * times slower. The table is picked at run time from the CPU's features.
 *
 * Invariants. Every row, whatever its length, goes through the same
 * vector code (tails run it on a zero-padded copy), and every (sequence,
 * head) runs the same code whatever thread takes it: results do not
 * depend on the batch or the thread split. glibc's scalar erff alone
 * (12 ns a call) would double a BERT forward pass: our erf is within 1.12
 * ulp of the true erf with FMA, 1.34 without (glibc erff: 0.97), so GELU
 * is within 1.2e-7 absolute; exp is Cephes' (0.98 ulp).
 *
 * Masks. Masked scores get probability exactly 0, as transformers' additive
 * finfo.min mask gives: the softmax runs over the visible range of the row
 * only (causal: j <= i; window w: |i - j| <= w) and the rest is zeroed.
 *
 * Tuned for: rows of 64 to 4096 floats, heads of 16 to 128 columns,
 * sequences of 1 to 8192 tokens.
 */
#ifndef SN_KERNELS_PASS /* the main pass: the table */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

#define SN_KERNELS_PASS 1
/* AVX passes where GCC/Clang target x86-64; define SN_NO_SIMD_PASSES to
 * build the baseline alone. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(SN_NO_SIMD_PASSES)
#include <immintrin.h>
#define SN_HAVE_BF16_PASS 1 /* the AVX-512 pass adds k_attention_bf16 */
#define SN_W 16
#define SN_NV 4
#define SN_K(name) name##_avx512
#define SN_KATTR __attribute__((target("avx512f,avx2,fma")))
#include "kernels.c"
#undef SN_W
#undef SN_NV
#undef SN_K
#undef SN_KATTR
#define SN_W 8
#define SN_NV 2
#define SN_K(name) name##_avx2
#define SN_KATTR __attribute__((target("avx2,fma")))
#include "kernels.c"
#undef SN_W
#undef SN_NV
#undef SN_K
#undef SN_KATTR
#define SN_HAVE_AVX_PASSES 1
#endif
#define SN_W 4
#define SN_NV 2
#define SN_K(name) name##_base
#define SN_KATTR
#include "kernels.c"
#undef SN_W
#undef SN_NV
#undef SN_K
#undef SN_KATTR
#undef SN_KERNELS_PASS

#define SN_KERNELS_TABLE(lvl, att_lp)                                        \
    {#lvl,          k_act_##lvl, k_glu_##lvl, k_add_rows_##lvl, k_ln_##lvl,  \
     k_rms_##lvl, k_attention_##lvl, att_lp}

const sn__kernels_t *sn__kernels_pick(void)
{
    static const sn__kernels_t base = SN_KERNELS_TABLE(base, NULL);
    const char *cap = getenv("SENSE_BERT_KERNELS");

    if (cap && !strcmp(cap, "base"))
        return &base;
#ifdef SN_HAVE_AVX_PASSES
    static const sn__kernels_t avx512bf16 =
        SN_KERNELS_TABLE(avx512, k_attention_bf16_avx512);
    static const sn__kernels_t avx512 = SN_KERNELS_TABLE(avx512, NULL);
    static const sn__kernels_t avx2 = SN_KERNELS_TABLE(avx2, NULL);
    const int isa = sn__isa(); /* SENSE_ISA caps it */
    if (isa >= SN_ISA_AVX512BF16 && !(cap && !strcmp(cap, "avx2")))
        return &avx512bf16;
    if (isa >= SN_ISA_AVX512 && !(cap && !strcmp(cap, "avx2")))
        return &avx512;
    if (isa >= SN_ISA_AVX2)
        return &avx2;
#endif
    return &base;
}

int sn__act_parse(const char *name)
{
    static const struct {
        const char *name;
        sn__act_t act;
    } acts[] = {
        {"gelu", SN_ACT_GELU},
        {"gelu_python", SN_ACT_GELU},
        {"gelu_new", SN_ACT_GELU_TANH},
        {"gelu_pytorch_tanh", SN_ACT_GELU_TANH},
        {"gelu_fast", SN_ACT_GELU_TANH},
        {"silu", SN_ACT_SILU},
        {"swish", SN_ACT_SILU},
        {"relu", SN_ACT_RELU},
    };
    for (size_t i = 0; i < sizeof acts / sizeof *acts; i++)
        if (!strcmp(name, acts[i].name))
            return (int)acts[i].act;
    return -1;
}

#else /* SN_KERNELS_PASS ----------------------------------------------------
 * The kernels, compiled once per target: the includer defines SN_W (float
 * lanes per vector), SN_NV (vectors per tile row in attention), SN_K(name)
 * (the pass's suffix) and SN_KATTR (its target attribute). The names below
 * are renamed per pass by the macros that follow. No helper takes or
 * returns a vector by value (GCC notes an ABI change for those, Clang
 * rejects some), hence macros, and helpers that work in place through a
 * pointer. */

#define vf SN_K(vf)
#define vi SN_K(vi)
#define vfu SN_K(vfu)
#define hf8 SN_K(hf8)
#define hf4 SN_K(hf4)
#define hf2 SN_K(hf2)
#define v_hsum SN_K(v_hsum)
#define v_hmax SN_K(v_hmax)
#define v_exp SN_K(v_exp)
#define v_exp_k SN_K(v_exp_k)
#define v_erf SN_K(v_erf)
#define v_tanh SN_K(v_tanh)
#define v_gelu SN_K(v_gelu)
#define qk_tile SN_K(qk_tile)
#define pv_tile SN_K(pv_tile)
#define softmax_row SN_K(softmax_row)
#define att_prefetch SN_K(att_prefetch)
#define att_probs SN_K(att_probs)
#define v_act SN_K(v_act)

typedef float vf __attribute__((vector_size(SN_W * 4)));
typedef int32_t vi __attribute__((vector_size(SN_W * 4)));
typedef float vfu __attribute__((vector_size(SN_W * 4), aligned(4),
                                 may_alias)); /* unaligned access */

#undef SN_INLINE
#define SN_INLINE static inline __attribute__((always_inline)) SN_KATTR

#undef v_load
#undef v_store
#undef v_set1
#undef v_blend
#undef v_min
#undef v_max
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
/* m ? a : b, m a comparison result (all ones / all zeros per lane) */
#define v_blend(m, a, b) ((vf)(((vi)(a) & (m)) | ((vi)(b) & ~(m))))
#define v_min(a, b) v_blend((a) < (b), (a), (b))
#define v_max(a, b) v_blend((a) > (b), (a), (b))

/* Sum of the lanes in a fixed pairwise order: lane i += lane i + n for
 * n = W/2, W/4, ..., 1, done on the vector's halves (the same additions
 * in the same order as a scalar loop over the lanes, without its loop). */
#undef SN_HALVES
#define SN_LO8(x) __builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7)
#define SN_HI8(x) __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15)
#define SN_LO4(x) __builtin_shufflevector(x, x, 0, 1, 2, 3)
#define SN_HI4(x) __builtin_shufflevector(x, x, 4, 5, 6, 7)
#define SN_LO2(x) __builtin_shufflevector(x, x, 0, 1)
#define SN_HI2(x) __builtin_shufflevector(x, x, 2, 3)
/* (shuffles, not memcpy into halves: that kept LayerNorm's accumulator in
 * memory, a store-to-load chain through every iteration) */
#if SN_W == 16
#define SN_HALVES(OP)                                                        \
    const vf x_ = *pv;                                                       \
    const hf8 a8 = OP(SN_LO8(x_), SN_HI8(x_));                               \
    const hf4 a4 = OP(SN_LO4(a8), SN_HI4(a8));                               \
    const hf2 a2 = OP(SN_LO2(a4), SN_HI2(a4));
#elif SN_W == 8
#define SN_HALVES(OP)                                                        \
    const vf x_ = *pv;                                                       \
    const hf4 a4 = OP(SN_LO4(x_), SN_HI4(x_));                               \
    const hf2 a2 = OP(SN_LO2(a4), SN_HI2(a4));
#else
#define SN_HALVES(OP)                                                        \
    const vf x_ = *pv;                                                       \
    const hf2 a2 = OP(SN_LO2(x_), SN_HI2(x_));
#endif
typedef float hf8 __attribute__((vector_size(32)));
typedef float hf4 __attribute__((vector_size(16)));
typedef float hf2 __attribute__((vector_size(8)));
#undef SN_ADD2
#undef SN_MAX2
#define SN_ADD2(a, b) ((a) + (b))
#define SN_MAX2(a, b)                                                        \
    ((__typeof__(a))((((__typeof__((a) > (b)))(a)) & ((a) > (b))) |          \
                     (((__typeof__((a) > (b)))(b)) & ~((a) > (b)))))
SN_INLINE float v_hsum(const vf *pv)
{
    SN_HALVES(SN_ADD2)
    return a2[0] + a2[1];
}

/* Largest lane (no NaN among them). */
SN_INLINE float v_hmax(const vf *pv)
{
    SN_HALVES(SN_MAX2)
    return a2[0] > a2[1] ? a2[0] : a2[1];
}

/* *px = exp(*px), Cephes' expf: x = n ln2 + r, |r| <= ln2/2, degree-6
 * polynomial; 0.98 ulp. Inputs are clamped to [-87.3, 88.3] (no inf, no
 * denormals). le0 (a constant): the caller's x are <= 0 (softmax's
 * max-subtracted scores), so n <= 0 and 2^n is one exponent field: the
 * upper clamp and the split 2^n = 2^(n/2) 2^(n - n/2) go. Same bits: p 2^n
 * is rounded once either way (p 2^(n/2) is exact). */
SN_INLINE void v_exp_k(vf *px, const int le0)
{
    const vf magic = v_set1(12582912.0f); /* 1.5 * 2^23: round to int */
    vf x = *px, n, r, p;
    vi e, e1, e2;

    x = v_max(x, v_set1(-87.33654f));
    if (!le0)
        x = v_min(x, v_set1(88.3762589f));
    n = (x * v_set1(1.44269504088896341f) + magic) - magic;
    r = x - n * v_set1(0.693359375f);
    r = r - n * v_set1(-2.12194440e-4f);
    p = v_set1(1.9875691500e-4f);
    p = p * r + v_set1(1.3981999507e-3f);
    p = p * r + v_set1(8.3334519073e-3f);
    p = p * r + v_set1(4.1665795894e-2f);
    p = p * r + v_set1(1.6666665459e-1f);
    p = p * r + v_set1(5.0000001201e-1f);
    p = p * (r * r) + r + v_set1(1.0f);
    e = __builtin_convertvector(n, vi);
    if (le0) { /* n in [-126, 0] */
        *px = p * (vf)((e + 127) << 23);
        return;
    }
    /* 2^n, n in [-126, 127] after the clamp; 2^127 is split in two */
    e1 = e >> 1;
    e2 = e - e1;
    *px = p * (vf)((e1 + 127) << 23) * (vf)((e2 + 127) << 23);
}

SN_INLINE void v_exp(vf *px) { v_exp_k(px, 0); }

/* *px = erf(*px): |x| < 1: x + x q(x^2), q of degree 6; 1 <= |x| < 3.92:
 * 1 - erfc(|x|), erfc a degree-14 polynomial in |x| - 2.5; beyond, +-1.
 * Chebyshev interpolants computed in long double, in monomial form.
 * 1.12 ulp with FMA, 1.34 without (glibc's scalar erff: 0.97, but it alone
 * would double the forward pass time). */
SN_INLINE void v_erf(vf *px)
{
    const vi sign_bit = (vi)v_set1(-0.0f);
    const vi sign = (vi)*px & sign_bit;
    const vf ax = (vf)((vi)*px & ~sign_bit);
    const vf u = ax * ax;
    vf pa, pb, v, y;

    pa = v_set1(7.875875063e-05f);
    pa = pa * u + v_set1(-8.016864287e-04f);
    pa = pa * u + v_set1(5.189087423e-03f);
    pa = pa * u + v_set1(-2.685421201e-02f);
    pa = pa * u + v_set1(1.128359472e-01f);
    pa = pa * u + v_set1(-3.761262667e-01f);
    pa = pa * u + v_set1(1.283791658e-01f);
    pa = ax + ax * pa;

    v = v_min(ax, v_set1(4.0f)) - v_set1(2.5f);
    pb = v_set1(-8.837966382e-07f);
    pb = pb * v + v_set1(-4.879900533e-07f);
    pb = pb * v + v_set1(1.566748478e-05f);
    pb = pb * v + v_set1(-1.783762571e-05f);
    pb = pb * v + v_set1(-8.093341967e-05f);
    pb = pb * v + v_set1(2.708359885e-04f);
    pb = pb * v + v_set1(-2.589991190e-04f);
    pb = pb * v + v_set1(-5.606543764e-04f);
    pb = pb * v + v_set1(2.797778940e-03f);
    pb = pb * v + v_set1(-6.108916376e-03f);
    pb = pb * v + v_set1(8.622514286e-03f);
    pb = pb * v + v_set1(-8.351824079e-03f);
    pb = pb * v + v_set1(5.445702404e-03f);
    pb = pb * v + v_set1(-2.178180237e-03f);
    pb = pb * v + v_set1(4.069520174e-04f);
    pb = v_set1(1.0f) - pb;

    y = v_blend(ax < v_set1(3.92f), pb, v_set1(1.0f));
    y = v_blend(ax < v_set1(1.0f), pa, y);
    *px = (vf)((vi)y | sign);
}

/* *pz = tanh(*pz) = 1 - 2 / (exp(2z) + 1), |z| clamped to 9 (tanh = +-1 in
 * fp32); absolute error ~1e-7, which is what GELU's 1 + tanh needs. */
SN_INLINE void v_tanh(vf *pz)
{
    vf z = v_max(*pz, v_set1(-9.0f));
    z = v_min(z, v_set1(9.0f));
    z = z + z;
    v_exp(&z);
    *pz = v_set1(1.0f) - v_set1(2.0f) / (z + v_set1(1.0f));
}

/* *px = GELU(*px), in PyTorch's order of operations. */
SN_INLINE void v_gelu(vf *px, int tanh_approx)
{
    const vf x = *px;
    vf in;

    if (tanh_approx) { /* gelu_new, gelu_pytorch_tanh */
        in = v_set1(0.7978845608028654f) *
             (x + v_set1(0.044715f) * (x * x * x));
        v_tanh(&in);
        *px = v_set1(0.5f) * x * (v_set1(1.0f) + in);
        return;
    }
    in = x * v_set1(0.70710678118654752f);
    v_erf(&in);
    *px = x * v_set1(0.5f) * (v_set1(1.0f) + in);
}

/* *px = act(*px) */
SN_INLINE void v_act(vf *px, sn__act_t act)
{
    vf e;

    switch (act) {
    case SN_ACT_GELU:
        v_gelu(px, 0);
        return;
    case SN_ACT_GELU_TANH:
        v_gelu(px, 1);
        return;
    case SN_ACT_SILU: /* x / (1 + exp(-x)), as PyTorch */
        e = -*px;
        v_exp(&e);
        *px = *px / (v_set1(1.0f) + e);
        return;
    case SN_ACT_RELU:
        *px = v_max(*px, v_set1(0.0f));
        return;
    }
}

SN_KATTR static void SN_K(k_act)(float *x, int rows, int cols, size_t ld,
                                 sn__act_t act)
{
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * ld;
        int c = 0;
        for (; c + SN_W <= cols; c += SN_W) {
            vf v = v_load(row + c);
            v_act(&v, act);
            v_store(row + c, v);
        }
        if (c < cols) {
            float t[SN_W] = {0};
            int n = cols - c;
            vf v;
            memcpy(t, row + c, (size_t)n * sizeof *t);
            v = v_load(t);
            v_act(&v, act);
            v_store(t, v);
            memcpy(row + c, t, (size_t)n * sizeof *t);
        }
    }
}

SN_KATTR static void SN_K(k_glu)(float *x, int rows, int n, size_t ld,
                                 sn__act_t act)
{
    for (int r = 0; r < rows; r++) {
        float *a = x + (size_t)r * ld, *b = a + n;
        int c = 0;
        for (; c + SN_W <= n; c += SN_W) {
            vf v = v_load(a + c);
            v_act(&v, act);
            v_store(a + c, v * v_load(b + c));
        }
        if (c < n) {
            float t[SN_W] = {0}, u[SN_W] = {0};
            int k = n - c;
            vf v;
            memcpy(t, a + c, (size_t)k * sizeof *t);
            memcpy(u, b + c, (size_t)k * sizeof *u);
            v = v_load(t);
            v_act(&v, act);
            v_store(t, v * v_load(u));
            memcpy(a + c, t, (size_t)k * sizeof *t);
        }
    }
}

SN_KATTR static void SN_K(k_add_rows)(float *x, const float *b, int rows,
                                      int cols)
{
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * cols;
        int c = 0;
        for (; c + SN_W <= cols; c += SN_W)
            v_store(row + c, v_load(row + c) + v_load(b + c));
        for (; c < cols; c++)
            row[c] += b[c];
    }
}

/* Two passes, biased variance: (v - mean) / sqrt(var + eps) * g + b. */
SN_KATTR static void SN_K(k_ln)(float *x, const float *g, const float *b,
                                int rows, int n, float eps)
{
    for (int r = 0; r < rows; r++) {
        float *v = x + (size_t)r * n;
        vf acc = v_set1(0.0f);
        float sum, mean, var, inv;
        int c = 0;

        for (; c + SN_W <= n; c += SN_W)
            acc += v_load(v + c);
        sum = v_hsum(&acc);
        for (; c < n; c++)
            sum += v[c];
        mean = sum / (float)n;

        acc = v_set1(0.0f);
        for (c = 0; c + SN_W <= n; c += SN_W) {
            vf d = v_load(v + c) - v_set1(mean);
            acc += d * d;
        }
        var = v_hsum(&acc);
        for (; c < n; c++)
            var += (v[c] - mean) * (v[c] - mean);
        var /= (float)n;
        inv = 1.0f / sqrtf(var + eps);

        if (b) {
            for (c = 0; c + SN_W <= n; c += SN_W)
                v_store(v + c, (v_load(v + c) - v_set1(mean)) * v_set1(inv) *
                                       v_load(g + c) +
                                   v_load(b + c));
            for (; c < n; c++)
                v[c] = (v[c] - mean) * inv * g[c] + b[c];
        } else {
            for (c = 0; c + SN_W <= n; c += SN_W)
                v_store(v + c, (v_load(v + c) - v_set1(mean)) * v_set1(inv) *
                                   v_load(g + c));
            for (; c < n; c++)
                v[c] = (v[c] - mean) * inv * g[c];
        }
    }
}

/* As transformers' T5LayerNorm / Qwen3RMSNorm: the mean of squares in
 * fp32, x * rsqrt(ms + eps), then times the gain. */
SN_KATTR static void SN_K(k_rms)(float *x, const float *g, int rows, int n,
                                 size_t ld, float eps)
{
    for (int r = 0; r < rows; r++) {
        float *v = x + (size_t)r * ld;
        vf acc = v_set1(0.0f);
        float ss, inv;
        int c = 0;

        for (; c + SN_W <= n; c += SN_W) {
            vf t = v_load(v + c);
            acc += t * t;
        }
        ss = v_hsum(&acc);
        for (; c < n; c++)
            ss += v[c] * v[c];
        inv = 1.0f / sqrtf(ss / (float)n + eps);
        for (c = 0; c + SN_W <= n; c += SN_W)
            v_store(v + c, v_load(g + c) * (v_load(v + c) * v_set1(inv)));
        for (; c < n; c++)
            v[c] = g[c] * (v[c] * inv);
    }
}

/* ---- attention ------------------------------------------------------------
 * One (sequence, head) at a time, on one thread. K is transposed into
 * kt [d][Lp] and V copied into vp [L][dp] (Lp, dp: L, d rounded up to 16,
 * zero padded), so both products vectorise along their output rows, in
 * tiles of 4 rows x SN_NV vectors held in registers:
 *   S[i][j] = scale * sum_c Q[i][c] kt[c][j]
 *   P[i] = softmax(S[i][0..L))          max-subtracted, fp32
 *   O[i][c] = sum_j P[i][j] vp[j][c]
 * Query rows go SN_NN_ATT_ROWS at a time, so S stays in L1/L2. */

/* Ask for the cache lines of row j + SN_ATT_AHEAD of K (into L1), and of
 * V and Q (into L2, read after the packing) before the packing loop reaches
 * them. Rows lie a whole fused QKV row apart (4.6 KB in MiniLM): the
 * hardware prefetchers do not follow that, and each head's few lines came
 * one cache miss at a time. Computes nothing. */
#undef SN_ATT_AHEAD
#define SN_ATT_AHEAD 8
SN_INLINE void att_prefetch(const sn__att_t *a, int j)
{
    const size_t n = (size_t)a->d * sizeof(float);

    if (j + SN_ATT_AHEAD >= a->L)
        return;
    j += SN_ATT_AHEAD;
    for (size_t o = 0; o < n; o += 64) {
        __builtin_prefetch((const char *)(a->k + (size_t)j * a->ldk) + o, 0, 3);
        __builtin_prefetch((const char *)(a->v + (size_t)j * a->ldv) + o, 0, 2);
        __builtin_prefetch((const char *)(a->q + (size_t)j * a->ldq) + o, 0, 2);
    }
    __builtin_prefetch((const char *)(a->k + (size_t)j * a->ldk) + n - 1, 0, 3);
    __builtin_prefetch((const char *)(a->v + (size_t)j * a->ldv) + n - 1, 0, 2);
    __builtin_prefetch((const char *)(a->q + (size_t)j * a->ldq) + n - 1, 0, 2);
}

/* S tile: rows [0, NR) x vectors [0, NV) of s (row stride lds). */
SN_INLINE void qk_tile(const float *q, size_t ldq, const float *kt,
                       size_t ldk, float *s, size_t lds, int d, float scale,
                       const int NR, const int NV)
{
    vf acc[4][SN_NV];

#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[r][v] = v_set1(0.0f);
    for (int c = 0; c < d; c++) {
        vf k[SN_NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            k[v] = v_load(kt + (size_t)c * ldk + SN_W * v);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const vf qb = v_set1(q[(size_t)r * ldq + c]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                acc[r][v] += qb * k[v];
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            v_store(s + (size_t)r * lds + SN_W * v,
                    acc[r][v] * v_set1(scale));
}

/* O tile: rows [0, NR) x columns [0, SN_W NV) of the head's output, of
 * which the first `keep` are real (the rest is vp's padding). */
SN_INLINE void pv_tile(const float *p, size_t ldp, const float *vp,
                       size_t ldv, float *o, size_t ldo, int L, int keep,
                       const int NR, const int NV)
{
    vf acc[4][SN_NV];

#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[r][v] = v_set1(0.0f);
    for (int j = 0; j < L; j++) {
        vf vv[SN_NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            vv[v] = v_load(vp + (size_t)j * ldv + SN_W * v);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const vf pb = v_set1(p[(size_t)r * ldp + j]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                acc[r][v] += pb * vv[v];
        }
    }
    for (int r = 0; r < NR; r++)
        for (int v = 0; v < NV; v++) {
            float *dst = o + (size_t)r * ldo + SN_W * v;
            if (SN_W * v + SN_W <= keep) {
                v_store(dst, acc[r][v]);
            } else if (SN_W * v < keep) {
                float t[SN_W];
                v_store(t, acc[r][v]);
                memcpy(dst, t, (size_t)(keep - SN_W * v) * sizeof *t);
            }
        }
}

/* In-place softmax of s[0..n), max-subtracted; norm (a constant) 0:
 * leaves exp(s - max) and returns 1 / sum for the caller to apply. */
SN_INLINE float softmax_row(float *s, int n, const int norm)
{
    vf vm = v_set1(-INFINITY), acc = v_set1(0.0f), e;
    float mx, sum, inv, t[SN_W];
    int c = 0, k;

    for (; c + SN_W <= n; c += SN_W)
        vm = v_max(vm, v_load(s + c));
    mx = v_hmax(&vm);
    for (k = c; k < n; k++)
        mx = s[k] > mx ? s[k] : mx;

    for (c = 0; c + SN_W <= n; c += SN_W) {
        e = v_load(s + c) - v_set1(mx);
        v_exp_k(&e, 1);
        v_store(s + c, e);
        acc += e;
    }
    sum = v_hsum(&acc);
    if (c < n) {
        for (k = 0; k < SN_W; k++)
            t[k] = c + k < n ? s[c + k] - mx : -INFINITY;
        e = v_load(t);
        v_exp_k(&e, 1);
        v_store(t, e);
        for (k = 0; c + k < n; k++) {
            s[c + k] = t[k];
            sum += t[k];
        }
    }
    inv = 1.0f / sum;
    if (!norm)
        return inv;
    for (c = 0; c + SN_W <= n; c += SN_W)
        v_store(s + c, v_load(s + c) * v_set1(inv));
    for (; c < n; c++)
        s[c] *= inv;
    return 1.0f;
}

/* Scores row si of query gi to probabilities: the relative bias added,
 * softmax over the row's visible range (the masks), 0 elsewhere up to
 * `end` (L, or Lp where the padding is read too). norm as softmax_row's
 * (0: the row is left unnormalized and 1 / sum returned). */
SN_INLINE float att_probs(const sn__att_t *a, float *si, int gi, int end,
                          const int norm)
{
    float inv;

    const int L = a->L;
    int lo = 0, hi = L, j;

    if (a->causal)
        hi = gi + 1;
    if (a->window > 0) {
        lo = gi - a->window > 0 ? gi - a->window : 0;
        if (gi + a->window + 1 < hi)
            hi = gi + a->window + 1;
    }
    if (a->bias) {
        const float *bi = a->bias + (L - 1 - gi);
        for (j = lo; j < hi; j++)
            si[j] += bi[j];
    }
    inv = softmax_row(si + lo, hi - lo, norm);
    for (j = 0; j < lo; j++)
        si[j] = 0.0f;
    for (j = hi; j < end; j++)
        si[j] = 0.0f;
    return inv;
}

/* QK tiles over rows [0, rows) with NR rows at a time. */
#define SN_QK_ROWS(NR)                                                       \
    for (; i + (NR) <= rows; i += (NR)) {                                    \
        for (j = 0; j + SN_NV * SN_W <= Lp; j += SN_NV * SN_W)               \
            qk_tile(q + (size_t)i * ldq, ldq, kt + j, Lp,                    \
                    s + (size_t)i * Lp + j, Lp, d, scale, (NR), SN_NV);      \
        for (; j < Lp; j += SN_W)                                            \
            qk_tile(q + (size_t)i * ldq, ldq, kt + j, Lp,                    \
                    s + (size_t)i * Lp + j, Lp, d, scale, (NR), 1);          \
    }
/* PV tiles over rows [0, rows), NR rows and nv vectors at a time. */
#define SN_PV_ROWS(NR)                                                       \
    for (; i + (NR) <= rows; i += (NR)) {                                    \
        const float *p_ = s + (size_t)i * Lp;                                \
        float *o_ = o + (size_t)i * ldo + c;                                 \
        if (nv == SN_NV)                                                     \
            pv_tile(p_, Lp, vp + c, dp, o_, ldo, L, d - c, (NR), SN_NV);     \
        else if (nv == 2)                                                    \
            pv_tile(p_, Lp, vp + c, dp, o_, ldo, L, d - c, (NR), 2);         \
        else                                                                 \
            pv_tile(p_, Lp, vp + c, dp, o_, ldo, L, d - c, (NR), 1);         \
    }

SN_KATTR static void SN_K(k_attention)(const sn__att_t *a, float *kt,
                                       float *vp, float *s)
{
    const int L = a->L, d = a->d;
    const int Lp = (L + 15) & ~15, dp = (d + 15) & ~15;
    const size_t ldq = a->ldq, ldo = a->ldo;
    const float scale = a->scale;
    int i, j, c;

    for (j = 0; j < SN_ATT_AHEAD && j < L; j++)
        att_prefetch(a, j - SN_ATT_AHEAD);
    for (j = 0; j < L; j++) {
        att_prefetch(a, j);
        for (c = 0; c < d; c++)
            kt[(size_t)c * Lp + j] = a->k[(size_t)j * a->ldk + c];
    }
    for (c = 0; c < d; c++)
        for (j = L; j < Lp; j++)
            kt[(size_t)c * Lp + j] = 0.0f;
    for (j = 0; j < L; j++) {
        memcpy(vp + (size_t)j * dp, a->v + (size_t)j * a->ldv,
               (size_t)d * sizeof *vp);
        for (c = d; c < dp; c++)
            vp[(size_t)j * dp + c] = 0.0f;
    }

    for (int r0 = 0; r0 < L; r0 += SN_NN_ATT_ROWS) {
        const int rows = L - r0 < SN_NN_ATT_ROWS ? L - r0 : SN_NN_ATT_ROWS;
        const float *q = a->q + (size_t)r0 * ldq;
        float *o = a->out + (size_t)r0 * ldo;

        i = 0;
        SN_QK_ROWS(4)
        SN_QK_ROWS(1)
        for (i = 0; i < rows; i++)
            att_probs(a, s + (size_t)i * Lp, r0 + i, L, 1);
        /* columns of the head: SN_NV vectors at a time, then two, then
         * one (a 32-wide head in zmm is two: with one, each broadcast of
         * P fed one FMA and the PV product ran at a third of the QK one) */
        for (c = 0; c < dp;) {
            const int left = (dp - c) / SN_W;
            const int nv = left >= SN_NV ? SN_NV : left >= 2 ? 2 : 1;
            i = 0;
            SN_PV_ROWS(4)
            SN_PV_ROWS(1)
            c += nv * SN_W;
        }
    }
}

#if SN_W == 16 && defined(SN_HAVE_BF16_PASS)
/* ---- attention with bf16 dot products (AVX512_BF16) -----------------------
 * For weights in reduced precision (sn__att_t's caller asks for it): the
 * same steps as k_attention, but Q, K, V and the probabilities P are
 * rounded to bf16 (round to nearest even, as the bf16 products round A) and
 * both products run on vdpbf16ps, which multiplies pairs of bf16 and adds
 * them into fp32 lanes: twice the FMAs' work per instruction. Scores,
 * softmax and the output stay fp32. Layouts, as uint32 pairs (low half
 * the first of the two):
 *   kt [dp/2][Lp]: (K[j][2c], K[j][2c+1]), lanes along j
 *   vp [Lp/2][dp]: (V[2j][c], V[2j+1][c]), lanes along c
 *   P row i: the bf16 of s[i][0..Lp) written over the start of that row,
 *     so consecutive pairs are (P[i][2j], P[i][2j+1])
 *   q16 [SN_NN_ATT_ROWS][dp/2]: the block's Q rows, (Q[i][2c], Q[i][2c+1])
 * Padding (j >= L, c >= d) is zero, in P as in K and V.
 * Scratch: kt d Lp, vp Lp dp, s SN_NN_ATT_ROWS (Lp + dp) floats. */

#define SN_BF16_ATTR                                                         \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")))
#define SN_BF16_INLINE static inline __attribute__((always_inline)) SN_BF16_ATTR

/* bf16 of x[0..n) (n <= 16; the rest of the 16 are 0), as 16 uint16 */
SN_BF16_INLINE __m256i bf16_16(const float *x, int n)
{
    __m512 v = n >= 16 ? _mm512_loadu_ps(x)
                       : _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), x);
    return (__m256i)_mm512_cvtneps_pbh(v);
}

/* Row x[0..d) to bf16 pairs dst[0..dp/2), zero padded. */
SN_BF16_INLINE void bf16_row(uint32_t *dst, const float *x, int d, int dp)
{
    for (int c = 0; c < dp; c += 16) {
        const int n = d - c >= 16 ? 16 : d - c > 0 ? d - c : 0;
        _mm256_storeu_si256((__m256i *)(void *)(dst + c / 2), bf16_16(x + c, n));
    }
}

/* acc[r][v] = sum_j a[r][j] . b[j][16 v .. 16 v + 16), r < NR, v < NV:
 * a's entries (bf16 pairs, rows lda apart) broadcast against b's rows (ldb
 * apart), one vdpbf16ps per pair of products. Both products are this:
 * QK^T with a = Q, b = K^T (pairs along the head's columns), PV with
 * a = P, b = V (pairs along the keys). */
SN_BF16_INLINE void dp_tile(const uint32_t *a, size_t lda, const uint32_t *b,
                            size_t ldb, int n, __m512 acc[4][4], const int NR,
                            const int NV)
{
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[r][v] = _mm512_setzero_ps();
    for (int j = 0; j < n; j++) {
        __m512i bv[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            bv[v] = _mm512_loadu_si512(b + (size_t)j * ldb + 16 * v);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const __m512i ab = _mm512_set1_epi32((int)a[(size_t)r * lda + j]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                acc[r][v] = _mm512_dpbf16_ps(acc[r][v], (__m512bh)ab,
                                             (__m512bh)bv[v]);
        }
    }
}

/* S tile: scale Q K^T, rows [0, NR) x 16 NV keys. */
SN_BF16_INLINE void qk_tile_bf16(const uint32_t *q16, int ldq16,
                                 const uint32_t *kt, int Lp, float *s,
                                 int lds, int dh, float scale, const int NR,
                                 const int NV)
{
    __m512 acc[4][4];

    dp_tile(q16, (size_t)ldq16, kt, (size_t)Lp, dh, acc, NR, NV);
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            _mm512_storeu_ps(s + (size_t)r * lds + 16 * v,
                             _mm512_mul_ps(acc[r][v], _mm512_set1_ps(scale)));
}

/* O tile: rows [0, NR) x columns [0, 16 NV), the first `keep` real; P's
 * rows (bf16 pairs over the start of the scores' rows) ldp floats apart. */
SN_BF16_INLINE void pv_tile_bf16(const float *p, int ldp, const uint32_t *vp,
                                 int dp, float *o, size_t ldo, int Lh,
                                 int keep, const int NR, const int NV)
{
    __m512 acc[4][4];

    dp_tile((const uint32_t *)(const void *)p, (size_t)ldp, vp, (size_t)dp,
            Lh, acc, NR, NV);
    for (int r = 0; r < NR; r++)
        for (int v = 0; v < NV; v++) {
            float *dst = o + (size_t)r * ldo + 16 * v;
            const int n = keep - 16 * v;
            if (n >= 16)
                _mm512_storeu_ps(dst, acc[r][v]);
            else if (n > 0)
                _mm512_mask_storeu_ps(dst, (__mmask16)((1u << n) - 1),
                                      acc[r][v]);
        }
}

#define SN_QK16_ROWS(NR)                                                     \
    for (; i + (NR) <= rows; i += (NR)) {                                    \
        for (j = 0; j + 64 <= Lp; j += 64)                                   \
            qk_tile_bf16(q16 + i * dh, dh, kt + j, Lp, s + (size_t)i * Lp + j, \
                         Lp, dh, scale, (NR), 4);                            \
        for (; j < Lp; j += 16)                                              \
            qk_tile_bf16(q16 + i * dh, dh, kt + j, Lp, s + (size_t)i * Lp + j, \
                         Lp, dh, scale, (NR), 1);                            \
    }
#define SN_PV16_ROWS(NR)                                                     \
    for (; i + (NR) <= rows; i += (NR)) {                                    \
        const float *p_ = s + (size_t)i * Lp;                                \
        float *o_ = o + (size_t)i * ldo + c;                                 \
        if (nv == 4)                                                         \
            pv_tile_bf16(p_, Lp, vp + c, dp, o_, ldo, Lh, d - c, (NR), 4);   \
        else if (nv == 2)                                                    \
            pv_tile_bf16(p_, Lp, vp + c, dp, o_, ldo, Lh, d - c, (NR), 2);   \
        else                                                                 \
            pv_tile_bf16(p_, Lp, vp + c, dp, o_, ldo, Lh, d - c, (NR), 1);   \
    }

SN_BF16_ATTR static void SN_K(k_attention_bf16)(const sn__att_t *a,
                                                float *ktf, float *vpf,
                                                float *s)
{
    const int L = a->L, d = a->d;
    const int Lp = (L + 15) & ~15, dp = (d + 15) & ~15;
    const int dh = dp / 2, Lh = (L + 1) / 2;
    const size_t ldq = a->ldq, ldo = a->ldo;
    const float scale = a->scale;
    uint32_t *kt = (uint32_t *)(void *)ktf, *vp = (uint32_t *)(void *)vpf;
    uint32_t *q16 = (uint32_t *)(void *)(s + (size_t)SN_NN_ATT_ROWS * Lp);
    uint32_t *row = q16; /* free until the first block */
    int i, j, c;

    /* K^T as pairs along the head's columns */
    for (j = 0; j < SN_ATT_AHEAD && j < L; j++)
        att_prefetch(a, j - SN_ATT_AHEAD);
    for (j = 0; j < L; j++) {
        att_prefetch(a, j);
        bf16_row(row, a->k + (size_t)j * a->ldk, d, dp);
        for (c = 0; c < dh; c++)
            kt[(size_t)c * Lp + j] = row[c];
    }
    for (c = 0; c < dh; c++)
        for (j = L; j < Lp; j++)
            kt[(size_t)c * Lp + j] = 0;
    /* V as pairs of rows */
    for (j = 0; j < Lh; j++) {
        const float *v0 = a->v + (size_t)(2 * j) * a->ldv;
        const float *v1 = 2 * j + 1 < L ? v0 + a->ldv : NULL;
        for (c = 0; c < dp; c += 16) {
            const int n = d - c >= 16 ? 16 : d - c;
            __m512i lo = _mm512_cvtepu16_epi32(bf16_16(v0 + c, n));
            __m512i hi = v1 ? _mm512_cvtepu16_epi32(bf16_16(v1 + c, n))
                            : _mm512_setzero_si512();
            _mm512_storeu_si512(vp + (size_t)j * dp + c,
                                _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        }
    }

    for (int r0 = 0; r0 < L; r0 += SN_NN_ATT_ROWS) {
        const int rows = L - r0 < SN_NN_ATT_ROWS ? L - r0 : SN_NN_ATT_ROWS;
        float *o = a->out + (size_t)r0 * ldo;

        for (i = 0; i < rows; i++)
            bf16_row(q16 + i * dh, a->q + (size_t)(r0 + i) * ldq, d, dp);
        i = 0;
        SN_QK16_ROWS(4)
        SN_QK16_ROWS(1)
        for (i = 0; i < rows; i++) {
            float *si = s + (size_t)i * Lp;

            const __m512 inv = _mm512_set1_ps(att_probs(a, si, r0 + i, Lp, 0));
            /* P = exp * (1 / sum) (softmax's own last step, done here) to
             * bf16 over the row's start: chunk j's 32 bytes land at byte
             * 2j, below the next chunk's floats (byte 4j + 64) */
            for (j = 0; j < Lp; j += 16)
                _mm256_storeu_si256(
                    (__m256i *)(void *)((uint16_t *)(void *)si + j),
                    (__m256i)_mm512_cvtneps_pbh(
                        _mm512_mul_ps(_mm512_loadu_ps(si + j), inv)));
        }
        for (c = 0; c < dp;) {
            const int left = (dp - c) / 16;
            const int nv = left >= 4 ? 4 : left >= 2 ? 2 : 1;
            i = 0;
            SN_PV16_ROWS(4)
            SN_PV16_ROWS(1)
            c += nv * 16;
        }
    }
}

#undef SN_QK16_ROWS
#undef SN_PV16_ROWS
#undef SN_BF16_ATTR
#undef SN_BF16_INLINE
#endif /* SN_W == 16 && SN_HAVE_BF16_PASS */

#undef SN_QK_ROWS
#undef SN_PV_ROWS
#undef vf
#undef vi
#undef vfu
#undef hf8
#undef hf4
#undef hf2
#undef SN_HALVES
#undef v_hsum
#undef v_hmax
#undef v_exp
#undef v_exp_k
#undef v_erf
#undef v_tanh
#undef v_gelu
#undef v_act
#undef qk_tile
#undef pv_tile
#undef softmax_row
#undef att_prefetch
#undef att_probs

#endif /* SN_KERNELS_PASS */
