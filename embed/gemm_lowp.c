/*
 * gemm_lowp.c -- the encoders' dense products in reduced precision (bf16,
 * int8), C[m, n] += A[m, k] W, on kernels of our own, and the CPU feature
 * ladder (sn__isa) every kernel choice in embed/ reads.
 *
 * Why our own kernels and not oneDNN. Debian's oneDNN 2.6.3 was measured
 * against these kernels at the MiniLM-L6 dense shapes (bench/bench_gemm.c;
 * figures in bench/README.md "reduced precision") on the AMD Zen 5 test
 * machine (avx512_bf16 + avx512_vnni, no AMX): on two threads, with C's
 * rows prefetched (prefetch_c), ours reach 0.9-1.0x of it in bf16 and
 * 0.9-0.96x in int8 (before that, 0.7x and 0.5x at M 4096: each tile's
 * epilogue waited on C's cache misses). We kept ours for the forward pass's
 * other needs: a row's bits independent of the batch (oneDNN picks its
 * blocking and bf16 k-split per shape), one thread pool (its OpenMP
 * threads and embed/pool.c spin against each other on 2 cores), no
 * per-shape primitives, no runtime dependency; the end-to-end targets of
 * issue 17 on this machine were met with them. On Intel CPUs with AMX,
 * oneDNN's AMX kernels were measured (issue 17) at 4.4-6.9x our fp32 GEMM
 * in bf16; we have no AMX kernels (none can be run or measured where this
 * was written): sn__isa reports AMX, and the AVX512_BF16 / AVX512_VNNI
 * kernels below run there. oneDNN now sits behind the same seam as a
 * second backend (embed/gemm_dnnl.c), chosen at load by timing both, or by
 * SENSE_GEMM.
 *
 * Formats (packed once at model load, from the f32 weights):
 *   bf16  W rounded to nearest even; panel j (32 output columns) holds kp/2
 *         rows of 32 column pairs (W[2i][c], W[2i+1][c]): one row is two
 *         512-bit vectors, the B operand of vdpbf16ps. A is rounded to bf16
 *         per call (row-wise, so a row's bits do not depend on the batch).
 *   int8  W symmetric per output column: q = round(W / s), s = max|W|/127;
 *         panel j holds kp/4 rows of 32 column quads (the B operand of
 *         vpdpbusd). A is quantized per row (per token) at each call,
 *         asymmetric, to the unsigned bytes vpdpbusd takes:
 *         u = round(a / s_r) + z_r in [0, 255] with s_r = (max - min) / 255
 *         over the row (the range widened to hold 0) and z_r = round(-min /
 *         s_r); so a = s_r (u - z_r). Asymmetric because many inputs are
 *         one-sided (GELU outputs: >= -0.17): a symmetric scale wastes half
 *         the codes on them, and on the fixtures it cost int8 a tenth of
 *         its cosine margin (0.99985 against 0.9999 on DistilBERT). The
 *         z_r sum_k qW[k][c] this adds is subtracted exactly in int32 (csum,
 *         from the packing). The int32 sums are exact, so every kernel
 *         level gives the same bits; C += (s_r s_c) (float)(sum - z csum).
 *   k is padded with zeros to kp (a multiple of 4).
 *
 * Invariants. A row's result depends on that row of A and on W only (not on
 * m, the row's place or the split into parts): the conversion of A is per
 * row, and every output element is one chain over k in order. Within one
 * ISA level bits are reproducible; int8 is bit-identical across levels
 * (integer sums, and the epilogue compiled without FMA contraction:
 * CMakeLists.txt gives this file -ffp-contract=off).
 *
 * Kernel levels (sn__isa, capped by SENSE_ISA for tests):
 *   bf16  avx512bf16: MR 14 x 32 columns in zmm, vdpbf16ps; below it a
 *         portable loop (bf16 widened to f32): correct, not fast -- `auto`
 *         never picks bf16 there.
 *   int8  avx512vnni: MR 14 x 32 in zmm, vpdpbusd; avxvnni: MR 6 x 16 in
 *         ymm (VEX vpdpbusd); below that a portable integer loop.
 *
 * Tuned for the MiniLM / USE-Lite shapes (k 256 to 1536, n 384 to 1536),
 * one to a few threads. The whole k runs in one pass (no k blocks): a B
 * panel is kp x 32 x 1 or 2 bytes (12 to 96 KB), kept in L1/L2 while a
 * block of A rows (at most SN_LOWP_ABLOCK bytes) is swept over it.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define SN_LOWP_X86 1
#endif

#include "embed_int.h"
#include "gemm.h"

#define SN_LOWP_ABLOCK (128 * 1024) /* bytes of A rows per row block */
#define SN_LOWP_MAX_DIM (1 << 24)

/* ---- the ISA ladder ------------------------------------------------------ */

static const char *const isa_names[] = {
    [SN_ISA_BASE] = "base",
    [SN_ISA_AVX2] = "avx2",
    [SN_ISA_AVXVNNI] = "avxvnni",
    [SN_ISA_AVX512] = "avx512",
    [SN_ISA_AVX512VNNI] = "avx512vnni",
    [SN_ISA_AVX512BF16] = "avx512bf16",
    [SN_ISA_AMX] = "amx",
};

const char *sn__isa_name(int isa)
{
    return isa >= 0 && isa <= SN_ISA_AMX ? isa_names[isa] : "?";
}

/* What the CPU has, without caps (cached; cpuid is cheap but not free). */
static int isa_detect(void)
{
    static int cached = -1;
    int isa = SN_ISA_BASE;

    if (cached >= 0)
        return cached;
#ifdef SN_LOWP_X86
    unsigned a, b, c, d, amx = 0;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        isa = SN_ISA_AVX2;
        /* AVX-VNNI: CPUID.(7,1):EAX bit 4 */
        if (__get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4)))
            isa = SN_ISA_AVXVNNI;
    }
    if (isa >= SN_ISA_AVX2 && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl")) {
        isa = SN_ISA_AVX512;
        if (__builtin_cpu_supports("avx512vnni"))
            isa = SN_ISA_AVX512VNNI;
        /* AVX512_BF16: CPUID.(7,1):EAX bit 5 */
        if (isa == SN_ISA_AVX512VNNI &&
            __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5)))
            isa = SN_ISA_AVX512BF16;
        /* AMX-BF16 / AMX-TILE / AMX-INT8: CPUID.(7,0):EDX bits 22, 24, 25 */
        if (isa == SN_ISA_AVX512BF16 &&
            __get_cpuid_count(7, 0, &a, &b, &c, &d))
            amx = (d >> 22 & 1) && (d >> 24 & 1) && (d >> 25 & 1);
        if (amx)
            isa = SN_ISA_AMX;
    }
#endif
    cached = isa;
    return isa;
}

int sn__isa_cpu(void) { return isa_detect(); }

int sn__isa_parse(const char *name)
{
    if (!strcmp(name, "f32-only") || !strcmp(name, "none"))
        return SN_ISA_BASE;
    for (int i = 0; i <= SN_ISA_AMX; i++)
        if (!strcmp(name, isa_names[i]))
            return i;
    return -1;
}

int sn__isa(void)
{
    const char *cap = getenv("SENSE_ISA");
    int isa = isa_detect(), c;

    if (cap && *cap && (c = sn__isa_parse(cap)) >= 0 && c < isa)
        isa = c;
    return isa;
}

int sn__isa_has(int isa, int prec)
{
    if (prec == SN_GEMM_BF16)
        return isa >= SN_ISA_AVX512BF16;
    if (prec == SN_GEMM_INT8)
        return isa == SN_ISA_AVXVNNI || isa >= SN_ISA_AVX512VNNI;
    return 1;
}

/* ---- packing -------------------------------------------------------------- */

static uint16_t to_bf16(float f) /* round to nearest even (finite f) */
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

int sn__gemm_kp(int prec, int k)
{
    return prec == SN_GEMM_F32 ? k : (k + 3) & ~3;
}

static size_t elt_size(int prec) { return prec == SN_GEMM_BF16 ? 2 : 1; }

int sn__gemm_pack_prec(sn__gemm_w_t *w, const float *src, int n, int k,
                       int src_is_nk, int prec)
{
    size_t n_panels, kp, body, cols;
    uint8_t *mem;

    if (prec == SN_GEMM_F32) {
        int rc = sn__gemm_pack(w, src, n, k, src_is_nk);
        if (!rc)
            sn__gemm_collect_add(w);
        return rc;
    }
    memset(w, 0, sizeof *w);
    if (!src || n < 1 || k < 1 || n > SN_LOWP_MAX_DIM ||
        k > SN_LOWP_MAX_DIM || (double)n * k > (double)SIZE_MAX / 8 ||
        (prec != SN_GEMM_BF16 && prec != SN_GEMM_INT8))
        return SN_EARG;
    n_panels = ((size_t)n + SN_GEMM_NR - 1) / SN_GEMM_NR;
    kp = (size_t)sn__gemm_kp(prec, k);
    cols = n_panels * SN_GEMM_NR;
    body = (n_panels * kp * SN_GEMM_NR * elt_size(prec) + 63) & ~(size_t)63;
    mem = aligned_alloc(64, body + cols * (sizeof(float) + sizeof(int32_t)));
    if (!mem)
        return -ENOMEM;
    w->q = mem;
    w->scale = (float *)(void *)(mem + body);
    w->csum = (int32_t *)(void *)(w->scale + cols);
#define W_AT(kk, cn)                                                         \
    ((cn) < (size_t)n && (kk) < (size_t)k                                    \
         ? (src_is_nk ? src[(cn) * (size_t)k + (kk)]                         \
                      : src[(kk) * (size_t)n + (cn)])                        \
         : 0.0f)
    for (size_t cn = 0; cn < cols; cn++) {
        float amax = 0.0f;
        for (size_t kk = 0; prec == SN_GEMM_INT8 && kk < (size_t)k; kk++)
            amax = fmaxf(amax, fabsf(W_AT(kk, cn)));
        w->scale[cn] = amax / 127.0f;
        w->csum[cn] = 0;
    }
    for (size_t j = 0; j < n_panels; j++)
        for (size_t kk = 0; kk < kp; kk++)
            for (size_t col = 0; col < SN_GEMM_NR; col++) {
                size_t cn = j * SN_GEMM_NR + col;
                float v = W_AT(kk, cn);
                if (prec == SN_GEMM_BF16) {
                    uint16_t *p = (uint16_t *)w->q + j * kp * SN_GEMM_NR;
                    p[(kk / 2) * 2 * SN_GEMM_NR + col * 2 + kk % 2] =
                        to_bf16(v);
                } else {
                    int8_t *p = (int8_t *)w->q + j * kp * SN_GEMM_NR;
                    float s = w->scale[cn];
                    long q = s > 0.0f ? lrintf(v / s) : 0;
                    q = q > 127 ? 127 : q < -127 ? -127 : q;
                    p[(kk / 4) * 4 * SN_GEMM_NR + col * 4 + kk % 4] =
                        (int8_t)q;
                    w->csum[cn] += (int32_t)q;
                }
            }
#undef W_AT
    w->n = n;
    w->k = k;
    w->kp = (int)kp;
    w->n_panels = (int)n_panels;
    w->prec = prec;
    sn__gemm_collect_add(w);
    return 0;
}

size_t sn__gemm_packed_bytes(const sn__gemm_w_t *w)
{
    size_t cols = (size_t)w->n_panels * SN_GEMM_NR;
    if (w->prec == SN_GEMM_F32)
        return cols * (size_t)w->k * sizeof(float);
    return cols * (size_t)w->kp * elt_size(w->prec) +
           cols * (sizeof(float) + sizeof(int32_t));
}

/* ---- A, converted per call ----------------------------------------------- */

/* One element of A to its byte: x inv rounded to nearest even (as
 * vcvtps2dq does) plus z, clamped to [0, 255]. */
static uint8_t quant1(float x, float inv, int z)
{
    long q = lrintf(x * inv) + z;
    return (uint8_t)(q > 255 ? 255 : q < 0 ? 0 : q);
}

/* A row's range [lo, hi] (holding 0) to its scale, 1 / scale and zero
 * point; the same scalar code for every kernel level. */
static float int8_params(float lo, float hi, float *inv, int32_t *z)
{
    const float s = (hi - lo) / 255.0f;
    if (!(s > 0.0f)) {
        *inv = 0.0f;
        *z = 0;
        return 0.0f;
    }
    *inv = 255.0f / (hi - lo);
    *z = (int32_t)lrintf(-lo * *inv);
    *z = *z > 255 ? 255 : *z;
    return s;
}

/* Row stride of converted A, in bytes: kp elements rounded up to 64 B. */
static size_t qa_ld(const sn__gemm_w_t *w)
{
    return ((size_t)w->kp * elt_size(w->prec) + 63) & ~(size_t)63;
}

size_t sn__gemm_qa_ld(const sn__gemm_w_t *w)
{
    return w->prec > SN_GEMM_F32 ? qa_ld(w) : 0;
}

/* The rows, their scales and zero points (bf16, int8); then, when oneDNN
 * runs w (any precision), its int8 sums (sn__gemm_qa_acc, rows rounded up
 * to SN_DNNL_ROWS) and the room for a last, partial block of rows
 * (sn__gemm_qa_tail); each part 64-byte aligned. */
static size_t qa_head(const sn__gemm_w_t *w, int m)
{
    if (w->prec == SN_GEMM_F32 || !w->prec)
        return 0;
    return (qa_ld(w) * (size_t)m +
            (size_t)m * (sizeof(float) + sizeof(int32_t)) + 63) &
           ~(size_t)63;
}

static size_t acc_bytes(const sn__gemm_w_t *w, int m)
{
    size_t rows = ((size_t)m + SN_DNNL_ROWS - 1) / SN_DNNL_ROWS * SN_DNNL_ROWS;
    return w->prec == SN_GEMM_INT8
               ? (rows * (size_t)w->n * sizeof(int32_t) + 63) & ~(size_t)63
               : 0;
}

size_t sn__gemm_qa_tail_ld(const sn__gemm_w_t *w)
{
    return w->prec == SN_GEMM_F32 || !w->prec ? (size_t)w->k * sizeof(float)
                                              : qa_ld(w);
}

size_t sn__gemm_qa_bytes(const sn__gemm_w_t *w, int m)
{
    if (m < 1 || (!w->dnnl && (w->prec == SN_GEMM_F32 || !w->prec)))
        return 0;
    if (!w->dnnl)
        return qa_head(w, m) + 64;
    return qa_head(w, m) + acc_bytes(w, m) +
           SN_DNNL_SLOTS * sn__gemm_qa_slot_bytes(w) + 64;
}

int32_t *sn__gemm_qa_acc(const sn__gemm_w_t *w, void *qa, int m)
{
    return (int32_t *)(void *)((uint8_t *)qa + qa_head(w, m));
}

size_t sn__gemm_qa_slot_bytes(const sn__gemm_w_t *w)
{
    return (SN_DNNL_ROWS * (sn__gemm_qa_tail_ld(w) +
                            (size_t)w->n * sizeof(float)) +
            sn__gemm_dnnl_scratch_bytes(w) + 63) &
           ~(size_t)63;
}

void *sn__gemm_qa_tail(const sn__gemm_w_t *w, void *qa, int m, int slot)
{
    return (uint8_t *)qa + qa_head(w, m) + acc_bytes(w, m) +
           (size_t)slot * sn__gemm_qa_slot_bytes(w);
}

/* After the m rows: m scales, then m zero points. */
static float *qa_scales(const sn__gemm_w_t *w, void *qa, int m)
{
    return (float *)(void *)((uint8_t *)qa + qa_ld(w) * (size_t)m);
}

static int32_t *qa_zeros(const sn__gemm_w_t *w, void *qa, int m)
{
    return (int32_t *)(void *)(qa_scales(w, qa, m) + m);
}

/* ---- the epilogue, shared by every int8 level ------------------------------
 * c[r][col] += (s_r s_col) (float)(acc - z_r csum[col]) for the first nc
 * columns; compiled once, without contraction (see the file comment). */
static void int8_store(const int32_t *acc, size_t ld_acc, int mr, int nc,
                       const float *sa, const int32_t *za, const float *sw,
                       const int32_t *cs, float *c, size_t ldc)
{
    for (int r = 0; r < mr; r++)
        for (int col = 0; col < nc; col++) {
            float s = sa[r] * sw[col];
            float t =
                (float)(acc[(size_t)r * ld_acc + col] - za[r] * cs[col]);
            c[(size_t)r * ldc + col] += t * s;
        }
}

void sn__gemm_int8_rows(const sn__gemm_w_t *w, const void *qa, int m,
                        const int32_t *acc, size_t ld_acc, float *c,
                        size_t ldc, int r0, int r1)
{
    if (r1 > r0)
        int8_store(acc + (size_t)r0 * ld_acc, ld_acc, r1 - r0, w->n,
                   qa_scales(w, (void *)qa, m) + r0,
                   qa_zeros(w, (void *)qa, m) + r0, w->scale, w->csum,
                   c + (size_t)r0 * ldc, ldc);
}

/* ---- portable kernels (any CPU) -------------------------------------------- */

static void block_bf16_base(const sn__gemm_w_t *w, const uint8_t *qa,
                            size_t ld, int j, float *c, size_t ldc, int m,
                            int nc)
{
    const uint16_t *b =
        (const uint16_t *)w->q + (size_t)j * w->kp * SN_GEMM_NR;
    for (int r = 0; r < m; r++) {
        const uint16_t *a = (const uint16_t *)(const void *)(qa + ld * r);
        float acc[SN_GEMM_NR] = {0};
        for (int kk = 0; kk < w->kp / 2; kk++) {
            float a0 = from_bf16(a[2 * kk]), a1 = from_bf16(a[2 * kk + 1]);
            const uint16_t *br = b + (size_t)kk * 2 * SN_GEMM_NR;
            for (int col = 0; col < SN_GEMM_NR; col++)
                acc[col] += a0 * from_bf16(br[2 * col]) +
                            a1 * from_bf16(br[2 * col + 1]);
        }
        for (int col = 0; col < nc; col++)
            c[(size_t)r * ldc + col] += acc[col];
    }
}

static void block_int8_base(const sn__gemm_w_t *w, const uint8_t *qa,
                            size_t ld, int j, float *c, size_t ldc, int m,
                            int nc, const float *sa, const int32_t *za)
{
    const int8_t *b = (const int8_t *)w->q + (size_t)j * w->kp * SN_GEMM_NR;
    for (int r = 0; r < m; r++) {
        const uint8_t *a = qa + ld * r;
        int32_t acc[SN_GEMM_NR] = {0};
        for (int kq = 0; kq < w->kp / 4; kq++) {
            const int8_t *br = b + (size_t)kq * 4 * SN_GEMM_NR;
            for (int col = 0; col < SN_GEMM_NR; col++)
                for (int t = 0; t < 4; t++)
                    acc[col] += (int32_t)a[4 * kq + t] * br[4 * col + t];
        }
        int8_store(acc, SN_GEMM_NR, 1, nc, sa + r, za + r,
                   w->scale + (size_t)j * SN_GEMM_NR,
                   w->csum + (size_t)j * SN_GEMM_NR, c + (size_t)r * ldc,
                   ldc);
    }
}

/* ---- x86 kernels ----------------------------------------------------------- */
#ifdef SN_LOWP_X86

#define ATTR_BF16                                                            \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define ATTR_VNNI512                                                         \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define ATTR_VNNI256 __attribute__((target("avx2,fma,avxvnni")))

/* The 32 floats of a C row a tile adds to (two cache lines), asked for
 * before the tile's k loop so they have arrived when it ends. At large m
 * C is far bigger than the caches and its rows are ldc apart, which the
 * hardware prefetchers do not follow: without this each tile's epilogue
 * waited on 2 MR misses (bench_gemm, M 4096, 2 threads, Zen 5: int8
 * 801 -> 1,504 GFLOP/s, bf16 601 -> 810). */
static inline __attribute__((always_inline)) void prefetch_c(const float *c)
{
    _mm_prefetch((const char *)c, _MM_HINT_T0);
    _mm_prefetch((const char *)(c + 16), _MM_HINT_T0);
}

/* bf16: rows [0, MR) x 32 columns over all of kp; c += acc (nc columns). */
static inline __attribute__((always_inline)) ATTR_BF16 void
tile_bf16(const uint8_t *qa, size_t ld, const uint16_t *b, int kp2, float *c,
          size_t ldc, int nc, const int MR)
{
    __m512 acc[14][2];
    const __mmask16 m0 = nc >= 16 ? 0xffff : (__mmask16)((1u << nc) - 1);
    const __mmask16 m1 =
        nc >= 32 ? 0xffff : nc <= 16 ? 0 : (__mmask16)((1u << (nc - 16)) - 1);

#pragma GCC unroll 14
    for (int r = 0; r < MR; r++) {
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
        prefetch_c(c + ldc * r);
    }
    for (int kk = 0; kk < kp2; kk++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + kk * 64);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + kk * 64 + 32);
#pragma GCC unroll 14
        for (int r = 0; r < MR; r++) {
            int32_t pair;
            memcpy(&pair, qa + ld * r + 4 * (size_t)kk, 4);
            const __m512bh ab = (__m512bh)_mm512_set1_epi32(pair);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], ab, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], ab, b1);
        }
    }
#pragma GCC unroll 14
    for (int r = 0; r < MR; r++) {
        float *cr = c + ldc * r;
        _mm512_mask_storeu_ps(
            cr, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cr), acc[r][0]));
        _mm512_mask_storeu_ps(cr + 16, m1,
                              _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cr + 16),
                                            acc[r][1]));
    }
}

ATTR_BF16 static void block_bf16_512(const sn__gemm_w_t *w, const uint8_t *qa,
                                     size_t ld, int j, float *c, size_t ldc,
                                     int m, int nc)
{
    const uint16_t *b =
        (const uint16_t *)w->q + (size_t)j * w->kp * SN_GEMM_NR;
    const int kp2 = w->kp / 2;
    for (int i = 0; i < m; i += 14) {
        const uint8_t *a = qa + ld * i;
        float *ci = c + ldc * i;
        switch (m - i < 14 ? m - i : 14) {
#define CASE(R)                                                              \
    case R:                                                                  \
        tile_bf16(a, ld, b, kp2, ci, ldc, nc, R);                            \
        break;
            CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7)
            CASE(8) CASE(9) CASE(10) CASE(11) CASE(12) CASE(13) CASE(14)
#undef CASE
        }
    }
}

/* The int8 tile, once for both vector widths: rows [0, MR) of A (bytes,
 * rows ld apart) times two vectors of columns of B (b: kp4 rows of 128
 * bytes; the two vectors are bytes [0, VB) and [VB, 2 VB) of each), int32
 * sums to out (rows 32 apart). VEC, ZERO, LOAD, BCAST and DP name the
 * width's type and intrinsics. */
#define SN_INT8_TILE(NAME, ATTR, VEC, VB, MRMAX, ZERO, LOAD, BCAST, DP,     \
                     STORE)                                                  \
    static inline __attribute__((always_inline)) ATTR void NAME(             \
        const uint8_t *qa, size_t ld, const int8_t *b, int kp4,              \
        int32_t *out, const int MR)                                          \
    {                                                                        \
        VEC acc[MRMAX][2];                                                   \
        _Pragma("GCC unroll 14") for (int r = 0; r < MR; r++)                \
            acc[r][0] = acc[r][1] = ZERO();                                  \
        for (int kq = 0; kq < kp4; kq++) {                                   \
            const VEC b0 = LOAD((const void *)(b + kq * 128));               \
            const VEC b1 = LOAD((const void *)(b + kq * 128 + (VB)));        \
            _Pragma("GCC unroll 14") for (int r = 0; r < MR; r++) {          \
                int32_t quad;                                                \
                memcpy(&quad, qa + ld * r + 4 * (size_t)kq, 4);              \
                const VEC ab = BCAST(quad);                                  \
                acc[r][0] = DP(acc[r][0], ab, b0);                           \
                acc[r][1] = DP(acc[r][1], ab, b1);                           \
            }                                                                \
        }                                                                    \
        _Pragma("GCC unroll 14") for (int r = 0; r < MR; r++) {              \
            STORE((void *)(out + 32 * r), acc[r][0]);                        \
            STORE((void *)(out + 32 * r + (VB) / 4), acc[r][1]);             \
        }                                                                    \
    }

#define SN_LOAD512(p) _mm512_loadu_si512(p)
#define SN_STORE512(p, v) _mm512_storeu_si512(p, v)
#define SN_LOAD256(p) _mm256_loadu_si256((const __m256i *)(p))
#define SN_STORE256(p, v) _mm256_storeu_si256((__m256i *)(p), v)
/* int8, AVX512-VNNI: 14 rows x 32 columns (a whole panel). */
SN_INT8_TILE(tile_int8_512, ATTR_VNNI512, __m512i, 64, 14,
             _mm512_setzero_si512, SN_LOAD512, _mm512_set1_epi32,
             _mm512_dpbusd_epi32, SN_STORE512)
/* int8, AVX-VNNI (VEX, ymm): 6 rows x 16 columns (half a panel). */
SN_INT8_TILE(tile_int8_256, ATTR_VNNI256, __m256i, 32, 6,
             _mm256_setzero_si256, SN_LOAD256, _mm256_set1_epi32,
             _mm256_dpbusd_avx_epi32, SN_STORE256)

/* int8_store in zmm: the same operations per element (sub, convert, two
 * rounded multiplies, one rounded add), so the same bits. */
static inline __attribute__((always_inline)) ATTR_VNNI512 void
int8_store_512(const int32_t *acc, int mr, int nc, const float *sa,
               const int32_t *za, const float *sw, const int32_t *cs,
               float *c, size_t ldc)
{
    const __mmask16 m0 = nc >= 16 ? 0xffff : (__mmask16)((1u << nc) - 1);
    const __mmask16 m1 =
        nc >= 32 ? 0xffff : nc <= 16 ? 0 : (__mmask16)((1u << (nc - 16)) - 1);
    const __m512 sw0 = _mm512_loadu_ps(sw), sw1 = _mm512_loadu_ps(sw + 16);
    const __m512i cs0 = _mm512_loadu_si512(cs), cs1 = _mm512_loadu_si512(cs + 16);
    for (int r = 0; r < mr; r++) {
        const __m512 s = _mm512_set1_ps(sa[r]);
        const __m512i z = _mm512_set1_epi32(za[r]);
        float *cr = c + ldc * r;
        __m512 t0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(
            _mm512_loadu_si512(acc + 32 * r), _mm512_mullo_epi32(z, cs0)));
        __m512 t1 = _mm512_cvtepi32_ps(
            _mm512_sub_epi32(_mm512_loadu_si512(acc + 32 * r + 16),
                             _mm512_mullo_epi32(z, cs1)));
        t0 = _mm512_mul_ps(t0, _mm512_mul_ps(s, sw0));
        t1 = _mm512_mul_ps(t1, _mm512_mul_ps(s, sw1));
        _mm512_mask_storeu_ps(cr, m0,
                              _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cr), t0));
        _mm512_mask_storeu_ps(
            cr + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cr + 16), t1));
    }
}

/* A row to int8 (as quant_row_base) and to bf16, in zmm. */
ATTR_BF16 static void quant_bf16_512(const float *x, uint16_t *o, int k,
                                     int kp)
{
    int kk = 0;
    for (; kk + 16 <= k; kk += 16)
        _mm256_storeu_si256((__m256i *)(void *)(o + kk),
                            (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + kk)));
    for (; kk < k; kk++)
        o[kk] = to_bf16(x[kk]);
    for (; kk < kp; kk++)
        o[kk] = 0;
}

ATTR_VNNI512 static float quant_int8_512(const float *x, uint8_t *row, int k,
                                         int kp, int32_t *zp)
{
    __m512 mn = _mm512_setzero_ps(), mx = _mm512_setzero_ps();
    float lo, hi, inv, s;
    int32_t z;
    int kk = 0;
    for (; kk + 16 <= k; kk += 16) {
        const __m512 v = _mm512_loadu_ps(x + kk);
        mn = _mm512_min_ps(mn, v);
        mx = _mm512_max_ps(mx, v);
    }
    lo = _mm512_reduce_min_ps(mn);
    hi = _mm512_reduce_max_ps(mx);
    for (; kk < k; kk++) {
        lo = fminf(lo, x[kk]);
        hi = fmaxf(hi, x[kk]);
    }
    s = int8_params(lo, hi, &inv, &z);
    const __m512 vi = _mm512_set1_ps(inv);
    const __m512i vz = _mm512_set1_epi32(z), zero = _mm512_setzero_si512(),
                  top = _mm512_set1_epi32(255);
    for (kk = 0; kk + 16 <= k; kk += 16) {
        __m512i q = _mm512_add_epi32( /* round to nearest even, + z */
            _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + kk), vi)),
            vz);
        q = _mm512_min_epi32(_mm512_max_epi32(q, zero), top);
        _mm_storeu_si128((__m128i *)(void *)(row + kk),
                         _mm512_cvtepi32_epi8(q));
    }
    for (; kk < k; kk++)
        row[kk] = quant1(x[kk], inv, z);
    for (; kk < kp; kk++)
        row[kk] = (uint8_t)z; /* zero: padded W rows are zero anyway */
    *zp = z;
    return s;
}

ATTR_VNNI512 static void block_int8_512(const sn__gemm_w_t *w,
                                        const uint8_t *qa, size_t ld, int j,
                                        float *c, size_t ldc, int m, int nc,
                                        const float *sa, const int32_t *za)
{
    const int8_t *b = (const int8_t *)w->q + (size_t)j * w->kp * SN_GEMM_NR;
    const int kp4 = w->kp / 4;
    int32_t acc[14 * SN_GEMM_NR];
    for (int i = 0; i < m; i += 14) {
        const int mr = m - i < 14 ? m - i : 14;
        const uint8_t *a = qa + ld * i;
        for (int r = 0; r < mr; r++)
            prefetch_c(c + ldc * (i + r));
        switch (mr) {
#define CASE(R)                                                              \
    case R:                                                                  \
        tile_int8_512(a, ld, b, kp4, acc, R);                                \
        break;
            CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7)
            CASE(8) CASE(9) CASE(10) CASE(11) CASE(12) CASE(13) CASE(14)
#undef CASE
        }
        int8_store_512(acc, mr, nc, sa + i, za + i, w->scale + (size_t)j * SN_GEMM_NR,
                       w->csum + (size_t)j * SN_GEMM_NR, c + ldc * i, ldc);
    }
}

ATTR_VNNI256 static void block_int8_256(const sn__gemm_w_t *w,
                                        const uint8_t *qa, size_t ld, int j,
                                        float *c, size_t ldc, int m, int nc,
                                        const float *sa, const int32_t *za)
{
    const int8_t *b = (const int8_t *)w->q + (size_t)j * w->kp * SN_GEMM_NR;
    const int kp4 = w->kp / 4;
    int32_t acc[6 * SN_GEMM_NR];
    for (int h = 0; h < 2 && 16 * h < nc; h++) {
        /* columns [16h, 16h + 16) are bytes [64h, 64h + 64) of a row */
        const int8_t *bh = b + 64 * h;
        const int nch = nc - 16 * h < 16 ? nc - 16 * h : 16;
        for (int i = 0; i < m; i += 6) {
            const int mr = m - i < 6 ? m - i : 6;
            const uint8_t *a = qa + ld * i;
            switch (mr) {
#define CASE(R)                                                              \
    case R:                                                                  \
        tile_int8_256(a, ld, bh, kp4, acc, R);                               \
        break;
                CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6)
#undef CASE
            }
            int8_store(acc, SN_GEMM_NR, mr, nch, sa + i, za + i,
                       w->scale + (size_t)j * SN_GEMM_NR + 16 * h,
                       w->csum + (size_t)j * SN_GEMM_NR + 16 * h,
                       c + ldc * i + 16 * h, ldc);
        }
    }
}
#endif /* SN_LOWP_X86 */

void sn__gemm_quant_rows(int isa, const sn__gemm_w_t *w, const float *a,
                         size_t lda, void *qa, int m, int r0, int r1)
{
    const size_t ld = qa_ld(w);
    float *scales = qa_scales(w, qa, m);
    int32_t *zeros = qa_zeros(w, qa, m);

    for (int r = r0; r < r1; r++) {
        const float *x = a + (size_t)r * lda;
        uint8_t *row = (uint8_t *)qa + ld * (size_t)r;
#ifdef SN_LOWP_X86
        if (w->prec == SN_GEMM_BF16 && isa >= SN_ISA_AVX512BF16) {
            quant_bf16_512(x, (uint16_t *)(void *)row, w->k, w->kp);
            continue;
        }
        if (w->prec == SN_GEMM_INT8 && isa >= SN_ISA_AVX512VNNI) {
            scales[r] = quant_int8_512(x, row, w->k, w->kp, &zeros[r]);
            continue;
        }
#endif
        if (w->prec == SN_GEMM_BF16) {
            uint16_t *o = (uint16_t *)(void *)row;
            for (int kk = 0; kk < w->k; kk++)
                o[kk] = to_bf16(x[kk]);
            for (int kk = w->k; kk < w->kp; kk++)
                o[kk] = 0;
            continue;
        }
        float lo = 0.0f, hi = 0.0f, inv;
        for (int kk = 0; kk < w->k; kk++) {
            lo = fminf(lo, x[kk]);
            hi = fmaxf(hi, x[kk]);
        }
        scales[r] = int8_params(lo, hi, &inv, &zeros[r]);
        for (int kk = 0; kk < w->k; kk++)
            row[kk] = quant1(x[kk], inv, zeros[r]);
        for (int kk = w->k; kk < w->kp; kk++)
            row[kk] = (uint8_t)zeros[r];
    }
}

void sn__gemm_quant_part(void *job, int part, int n_parts)
{
    const sn__gemm_job_t *j = job;
    int r0 = (int)((long long)j->m * part / n_parts);
    int r1 = (int)((long long)j->m * (part + 1) / n_parts);
    sn__gemm_quant_rows(j->isa, j->w, j->a,
                        j->lda ? j->lda : (size_t)j->w->k, j->qa, j->m, r0,
                        r1);
}

/* ---- the driver ------------------------------------------------------------ */

const char *sn__gemm_kernel_name(int isa, int prec)
{
    if (prec == SN_GEMM_BF16)
        return isa >= SN_ISA_AVX512BF16 ? "avx512bf16" : "portable";
    if (prec == SN_GEMM_INT8)
        return isa >= SN_ISA_AVX512VNNI ? "avx512vnni"
               : isa == SN_ISA_AVXVNNI  ? "avxvnni"
                                        : "portable";
    return sn__gemm_level_name(isa >= SN_ISA_AVX512 ? SN_GEMM_AVX512
                               : isa >= SN_ISA_AVX2 ? SN_GEMM_AVX2
                                                    : SN_GEMM_BASE);
}

void sn__gemm_acc_q(int isa, const sn__gemm_w_t *w, const void *qa,
                    float *c, size_t ldc, int m, int part, int n_parts)
{
    const size_t ld = qa_ld(w);
    const float *sa = qa_scales(w, (void *)qa, m);
    const int32_t *za = qa_zeros(w, (void *)qa, m);
    int mc, p0, p1;

    if (m < 1 || n_parts < 1 || part < 0 || part >= n_parts)
        return;
    mc = (int)(SN_LOWP_ABLOCK / ld) / 42 * 42;
    mc = mc < 42 ? 42 : mc;
    p0 = (int)((long long)w->n_panels * part / n_parts);
    p1 = (int)((long long)w->n_panels * (part + 1) / n_parts);
    for (int m0 = 0; m0 < m; m0 += mc) {
        const int rows = m - m0 < mc ? m - m0 : mc;
        const uint8_t *a = (const uint8_t *)qa + ld * (size_t)m0;
        for (int j = p0; j < p1; j++) {
            const int nc = w->n - j * SN_GEMM_NR < SN_GEMM_NR
                               ? w->n - j * SN_GEMM_NR
                               : SN_GEMM_NR;
            float *cj = c + (size_t)m0 * ldc + (size_t)j * SN_GEMM_NR;
            if (w->prec == SN_GEMM_BF16) {
#ifdef SN_LOWP_X86
                if (isa >= SN_ISA_AVX512BF16) {
                    block_bf16_512(w, a, ld, j, cj, ldc, rows, nc);
                    continue;
                }
#endif
                block_bf16_base(w, a, ld, j, cj, ldc, rows, nc);
            } else {
#ifdef SN_LOWP_X86
                if (isa >= SN_ISA_AVX512VNNI) {
                    block_int8_512(w, a, ld, j, cj, ldc, rows, nc, sa + m0,
                                   za + m0);
                    continue;
                }
                if (isa == SN_ISA_AVXVNNI) {
                    block_int8_256(w, a, ld, j, cj, ldc, rows, nc, sa + m0,
                                   za + m0);
                    continue;
                }
#endif
                block_int8_base(w, a, ld, j, cj, ldc, rows, nc, sa + m0,
                                   za + m0);
            }
        }
    }
}
