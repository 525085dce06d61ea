/*
 * test_gemm.c -- embed/gemm.c against a double-precision naive reference.
 *
 * For every kernel level this CPU runs (base, avx2, avx512), on awkward
 * shapes (m 1, 2, 13, 31, 33, 257; n 1, 33, 389 -- not multiples of the
 * 32-column panel, 389 spans 13 panels; k 1, 7, 301, 384, 1536 -- odd, one
 * k block, several), with C prefilled (the bias/residual accumulate) and
 * row strides larger than the matrices (guard cells must stay untouched):
 *   - |C - ref| <= gamma(k + 1) (|C0| + sum_k |a||w|) element-wise, where
 *     gamma(n) = n u / (1 - n u), u = 2^-24: Higham's worst-case bound for
 *     an inner product of n terms (the prefill counts as one) in any
 *     order, with or without FMA. It is rigorous, so no random draw can
 *     fail a correct kernel, and any indexing error (a wrong row, column
 *     or k) is off by O(1) relative and fails it; the test shows it fails
 *     by corrupting one packed weight;
 *   - W packed from [n, k] (PyTorch) and from [k, n] (TensorFlow) gives
 *     the same bits;
 *   - the product split in 1, 2 or 3 parts run on concurrent threads gives
 *     the same bits as one part;
 *   - a row computed alone (m = 1) gives the same bits as the same row in
 *     the m = 257 product (the determinism bert.c's batch test relies on).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "embed_int.h"
#include "gemm.h"

static uint64_t rng = 0x243f6a8885a308d3ull;

static float frand(void) /* [-1, 1) */
{
    return (float)(check_urand(&rng) * 2.0 - 1.0);
}

typedef struct {
    int level;
    const sn__gemm_w_t *w;
    const float *a;
    size_t lda, ldc;
    float *c;
    int m, part, n_parts;
} part_t;

static void *part_main(void *arg)
{
    part_t *p = arg;
    sn__gemm_acc(p->level, p->w, p->a, p->lda, p->c, p->ldc, p->m, p->part,
                 p->n_parts);
    return NULL;
}

/* C += A W in n_parts parts, each on its own thread (1: this thread). */
static void run(int level, const sn__gemm_w_t *w, const float *a, size_t lda,
                float *c, size_t ldc, int m, int n_parts)
{
    pthread_t th[4];
    part_t p[4];

    if (n_parts == 1) {
        sn__gemm_acc(level, w, a, lda, c, ldc, m, 0, 1);
        return;
    }
    for (int i = 0; i < n_parts; i++) {
        p[i] = (part_t){level, w, a, lda, ldc, c, m, i, n_parts};
        CHECK(pthread_create(&th[i], NULL, part_main, &p[i]) == 0);
    }
    for (int i = 0; i < n_parts; i++)
        pthread_join(th[i], NULL);
}

/* Worst |C - ref| / bound over the matrix (> 1: fails); guard cells
 * (columns n..ldc) must hold their initial value. */
static double check_vs_ref(const float *c, const float *c0, const float *a,
                           size_t lda, const float *wt /* [n, k] */, int m,
                           int n, int k, size_t ldc)
{
    const double u = ldexp(1.0, -24), g = (k + 1) * u / (1 - (k + 1) * u);
    double worst = 0;

    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            double ref = c0[(size_t)i * ldc + j];
            double mag = fabs(ref);
            for (int kk = 0; kk < k; kk++) {
                double x = (double)a[(size_t)i * lda + kk] *
                           wt[(size_t)j * k + kk];
                ref += x;
                mag += fabs(x);
            }
            double e = fabs(c[(size_t)i * ldc + j] - ref) / (g * mag + 1e-30);
            if (e > worst)
                worst = e;
        }
        for (size_t j = (size_t)n; j < ldc; j++)
            if (memcmp(&c[(size_t)i * ldc + j], &c0[(size_t)i * ldc + j],
                       sizeof *c))
                return INFINITY;
    }
    return worst;
}

static void test_shape(int level, int m, int n, int k)
{
    const size_t lda = (size_t)k + 3, ldc = (size_t)n + 5;
    float *a = malloc((size_t)m * lda * sizeof *a);
    float *wt = malloc((size_t)n * k * sizeof *wt); /* [n, k] */
    float *wk = malloc((size_t)n * k * sizeof *wk); /* [k, n] */
    float *c0 = malloc((size_t)m * ldc * sizeof *c0);
    float *c = malloc((size_t)m * ldc * sizeof *c);
    float *c2 = malloc((size_t)m * ldc * sizeof *c2);
    sn__gemm_w_t w, w2;
    double worst;

    CHECK(a && wt && wk && c0 && c && c2);
    for (size_t i = 0; i < (size_t)m * lda; i++)
        a[i] = frand();
    for (int j = 0; j < n; j++)
        for (int kk = 0; kk < k; kk++)
            wk[(size_t)kk * n + j] = wt[(size_t)j * k + kk] = frand() * 0.1f;
    for (size_t i = 0; i < (size_t)m * ldc; i++)
        c0[i] = frand();
    CHECK_EQ(sn__gemm_pack(&w, wt, n, k, 1), 0);
    CHECK_EQ(sn__gemm_pack(&w2, wk, n, k, 0), 0);
    CHECK_EQ(w.n_panels, (n + SN_GEMM_NR - 1) / SN_GEMM_NR);
    CHECK(!memcmp(w.p, w2.p,
                  (size_t)w.n_panels * SN_GEMM_NR * k * sizeof *w.p));

    memcpy(c, c0, (size_t)m * ldc * sizeof *c);
    run(level, &w, a, lda, c, ldc, m, 1);
    worst = check_vs_ref(c, c0, a, lda, wt, m, n, k, ldc);
    if (!(worst <= 1.0)) {
        fprintf(stderr,
                "[%s] m %d n %d k %d: error %.3g x the bound (inf: a guard "
                "cell changed)\n",
                sn__gemm_level_name(level), m, n, k, worst);
        exit(1);
    }

    /* the other packing, and the parts on concurrent threads: same bits */
    for (int parts = 1; parts <= 3; parts++) {
        memcpy(c2, c0, (size_t)m * ldc * sizeof *c2);
        run(level, parts == 1 ? &w2 : &w, a, lda, c2, ldc, m, parts);
        CHECK(!memcmp(c, c2, (size_t)m * ldc * sizeof *c));
    }
    /* a row alone: same bits as in the full product */
    for (int i = 0; i < m; i += (m > 20 ? 17 : 1)) {
        memcpy(c2, c0 + (size_t)i * ldc, ldc * sizeof *c2);
        run(level, &w, a + (size_t)i * lda, lda, c2, ldc, 1, 1);
        CHECK(!memcmp(c + (size_t)i * ldc, c2, ldc * sizeof *c));
    }

    sn__gemm_free(&w);
    sn__gemm_free(&w2);
    free(a);
    free(wt);
    free(wk);
    free(c0);
    free(c);
    free(c2);
}

/* The check can fail: one corrupted packed weight must exceed the bound. */
static void test_detects_error(int level)
{
    const int m = 13, n = 33, k = 7;
    float a[13 * 7], wt[33 * 7], c0[13 * 33], c[13 * 33];
    sn__gemm_w_t w;
    double worst;

    for (int i = 0; i < m * k; i++)
        a[i] = frand();
    for (int i = 0; i < n * k; i++)
        wt[i] = frand();
    for (int i = 0; i < m * n; i++)
        c0[i] = frand();
    CHECK_EQ(sn__gemm_pack(&w, wt, n, k, 1), 0);
    /* panel 1, k 3, column 32 */
    w.p[(size_t)k * SN_GEMM_NR + 3 * SN_GEMM_NR] += 1e-3f;
    memcpy(c, c0, sizeof c);
    sn__gemm_acc(level, &w, a, (size_t)k, c, (size_t)n, m, 0, 1);
    worst = check_vs_ref(c, c0, a, (size_t)k, wt, m, n, k, (size_t)n);
    CHECK(worst > 1.0);
    sn__gemm_free(&w);
}

/* ---- reduced precision (embed/gemm_lowp.c) --------------------------------
 * bf16: against a double reference over the bf16-rounded A and W: the
 * products are exact in f32, so the same gamma(k + 1) bound holds.
 * int8: against the exact integer formula computed in double from the same
 * quantized values (re-derived here from the definitions in gemm_lowp.c:
 * per-column symmetric W, per-row asymmetric A), within 4 ulps of
 * |C0| + |the term|; and every kernel level this CPU runs gives the same
 * bits (exact int32 sums). Both: rows alone equal rows in the batch, and
 * the split into parts changes nothing. A corrupted packed byte fails. */
static float bf16r(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u = ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16) << 16;
    memcpy(&f, &u, 4);
    return f;
}

static void run_q(int isa, const sn__gemm_w_t *w, const float *a, size_t lda,
                  float *c, size_t ldc, int m, int n_parts)
{
    void *qa = aligned_alloc(64, (sn__gemm_qa_bytes(w, m) + 63) & ~(size_t)63);
    CHECK(qa);
    sn__gemm_quant_rows(isa, w, a, lda, qa, m, 0, m);
    for (int p = 0; p < n_parts; p++)
        sn__gemm_acc_q(isa, w, qa, c, ldc, m, p, n_parts);
    free(qa);
}

static double ref_lowp(int prec, const float *a, size_t lda, const float *wt,
                       int k, int n, int i, int j, double *mag)
{
    double s = 0;
    *mag = 0;
    if (prec == SN_GEMM_BF16) {
        for (int kk = 0; kk < k; kk++) {
            double p = (double)bf16r(a[(size_t)i * lda + kk]) *
                       bf16r(wt[(size_t)j * k + kk]);
            s += p;
            *mag += fabs(p);
        }
        return s;
    }
    /* int8: W column j symmetric, A row i asymmetric (as gemm_lowp.c) */
    float wmax = 0, lo = 0, hi = 0;
    for (int kk = 0; kk < k; kk++) {
        wmax = fmaxf(wmax, fabsf(wt[(size_t)j * k + kk]));
        lo = fminf(lo, a[(size_t)i * lda + kk]);
        hi = fmaxf(hi, a[(size_t)i * lda + kk]);
    }
    float sw = wmax / 127.0f, sa = (hi - lo) / 255.0f;
    float inv = hi > lo ? 255.0f / (hi - lo) : 0.0f;
    long z = lrintf(-lo * inv);
    long long acc = 0;
    for (int kk = 0; kk < k; kk++) {
        long q = sw > 0 ? lrintf(wt[(size_t)j * k + kk] / sw) : 0;
        long u = lrintf(a[(size_t)i * lda + kk] * inv) + z;
        u = u < 0 ? 0 : u > 255 ? 255 : u;
        acc += (long long)(u - z) * q;
    }
    s = (double)sa * sw * (double)acc;
    *mag = fabs(s);
    (void)n;
    return s;
}

static void test_lowp_shape(int prec, int m, int n, int k)
{
    const size_t lda = (size_t)k + 3, ldc = (size_t)n + 5;
    float *a = malloc((size_t)m * lda * sizeof *a);
    float *wt = malloc((size_t)n * k * sizeof *wt);
    float *c0 = malloc((size_t)m * ldc * sizeof *c0);
    float *c = malloc((size_t)m * ldc * sizeof *c);
    float *c2 = malloc((size_t)m * ldc * sizeof *c2);
    const int best = sn__isa();
    sn__gemm_w_t w;

    CHECK(a && wt && c0 && c && c2);
    for (size_t i = 0; i < (size_t)m * lda; i++)
        a[i] = frand() * (i % 7 == 0 ? 3.0f : 1.0f);
    for (size_t i = 0; i < (size_t)n * k; i++)
        wt[i] = frand() * 0.1f;
    for (size_t i = 0; i < (size_t)m * ldc; i++)
        c0[i] = frand();
    CHECK_OK(sn__gemm_pack_prec(&w, wt, n, k, 1, prec), "pack");
    for (int isa = SN_ISA_BASE; isa <= best; isa++) {
        /* the levels with units for prec, and the portable kernels */
        if (isa != SN_ISA_BASE && !sn__isa_has(isa, prec))
            continue;
        memcpy(c, c0, (size_t)m * ldc * sizeof *c);
        run_q(isa, &w, a, lda, c, ldc, m, 1);
        double worst = 0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double mag, r = ref_lowp(prec, a, lda, wt, k, n, i, j, &mag);
                double got = c[(size_t)i * ldc + j] - (double)c0[(size_t)i * ldc + j];
                double bound =
                    prec == SN_GEMM_BF16
                        ? (k + 1) * 5.97e-8 / (1 - (k + 1) * 5.97e-8) *
                              (fabs(c0[(size_t)i * ldc + j]) + mag)
                        : 4 * 5.97e-8 * (fabs(c0[(size_t)i * ldc + j]) + mag) +
                              1e-30;
                double e = fabs(got - r) / bound;
                worst = e > worst ? e : worst;
            }
        if (worst > 1)
            fprintf(stderr, "%s %s m %d n %d k %d: error %.3g of the bound\n",
                    prec == SN_GEMM_BF16 ? "bf16" : "int8", sn__isa_name(isa),
                    m, n, k, worst);
        CHECK(worst <= 1);
        /* parts, and rows alone */
        memcpy(c2, c0, (size_t)m * ldc * sizeof *c2);
        run_q(isa, &w, a, lda, c2, ldc, m, 3);
        CHECK(!memcmp(c, c2, (size_t)m * ldc * sizeof *c));
        memcpy(c2, c0, (size_t)m * ldc * sizeof *c2);
        for (int i = 0; i < m; i++)
            run_q(isa, &w, a + (size_t)i * lda, lda, c2 + (size_t)i * ldc, ldc,
                  1, 1);
        CHECK(!memcmp(c, c2, (size_t)m * ldc * sizeof *c));
    }
    if (prec == SN_GEMM_INT8) {
        /* c holds the best level's result, c2 the portable one's */
        memcpy(c2, c0, (size_t)m * ldc * sizeof *c2);
        run_q(SN_ISA_BASE, &w, a, lda, c2, ldc, m, 1);
        memcpy(c, c0, (size_t)m * ldc * sizeof *c);
        run_q(best, &w, a, lda, c, ldc, m, 1);
        CHECK(!memcmp(c, c2, (size_t)m * ldc * sizeof *c));
        if (best >= SN_ISA_AVXVNNI) {
            memcpy(c, c0, (size_t)m * ldc * sizeof *c);
            run_q(SN_ISA_AVXVNNI, &w, a, lda, c, ldc, m, 1);
            CHECK(!memcmp(c, c2, (size_t)m * ldc * sizeof *c));
        }
    }
    /* a corrupted packed byte is seen */
    if (m > 1 && n > 1 && k > 1) {
        ((uint8_t *)w.q)[0] ^= 0x40;
        memcpy(c2, c0, (size_t)m * ldc * sizeof *c2);
        run_q(best, &w, a, lda, c2, ldc, m, 1);
        CHECK(memcmp(c, c2, (size_t)m * ldc * sizeof *c) != 0);
    }
    sn__gemm_free(&w);
    free(a);
    free(wt);
    free(c0);
    free(c);
    free(c2);
}

int main(void)
{
    static const int ms[] = {1, 2, 13, 31, 33, 257};
    static const int ns[] = {1, 33, 389};
    static const int ks[] = {1, 7, 301, 384, 1536};
    const int best = sn__gemm_level();
    sn__gemm_w_t w;
    float one = 1.0f;

    /* argument checks; free of a zeroed or freed struct is a no-op */
    CHECK_EQ(sn__gemm_pack(&w, &one, 0, 1, 1), SN_EARG);
    CHECK(w.p == NULL);
    CHECK_EQ(sn__gemm_pack(&w, NULL, 1, 1, 1), SN_EARG);
    sn__gemm_free(&w);
    sn__gemm_free(&w);
    sn__gemm_free(NULL);

    for (int level = SN_GEMM_BASE; level <= best; level++) {
        test_detects_error(level);
        for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++)
            for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
                for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++)
                    test_shape(level, ms[mi], ns[ni], ks[ki]);
        printf("[%s] %zu shapes within gamma(k+1) of the reference; packings, "
               "parts and rows alone bit-identical\n",
               sn__gemm_level_name(level),
               sizeof ms / sizeof *ms * (sizeof ns / sizeof *ns) *
                   (sizeof ks / sizeof *ks));
    }
    for (int prec = SN_GEMM_BF16; prec <= SN_GEMM_INT8; prec++) {
        static const int lk[] = {1, 7, 301, 1536};
        static const int lm[] = {1, 13, 33};
        for (size_t ki = 0; ki < sizeof lk / sizeof *lk; ki++)
            for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
                for (size_t mi = 0; mi < sizeof lm / sizeof *lm; mi++)
                    test_lowp_shape(prec, lm[mi], ns[ni], lk[ki]);
        printf("[%s] within bounds of the reference on every kernel level "
               "up to %s; parts and rows alone bit-identical%s\n",
               prec == SN_GEMM_BF16 ? "bf16" : "int8",
               sn__isa_name(sn__isa()),
               prec == SN_GEMM_INT8 ? "; all levels the same bits" : "");
    }
    printf("ok\n");
    return 0;
}
