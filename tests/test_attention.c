/*
 * test_attention.c -- the attention kernels (embed/kernels.c) against a
 * naive double-precision attention written here, over one (sequence, head)
 * with row strides, lengths around the 16-wide tiles and the 64-row query
 * blocks, head sizes 20 / 32 / 48 / 80, and each mask (none, causal,
 * window, relative bias):
 *   - every kernel set's fp32 attention within 2e-6;
 *   - the bf16 attention (attention_lp, where the CPU has AVX512_BF16)
 *     within 1e-2 (Q, K, V and P rounded to bf16: 2^-9 relative each),
 *     and not bit-equal to the fp32 one (it is a different kernel);
 *   - SENSE_ISA below avx512bf16 leaves attention_lp NULL (the fallback).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "nn.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;

static float frand(void) /* [-1, 1) */
{
    return (float)(check_urand(&rng) * 2 - 1);
}

/* out[i][c] of head a, in double */
static void naive(const sn__att_t *a, double *out)
{
    const int L = a->L, d = a->d;
    double *p = malloc((size_t)L * sizeof *p);

    CHECK(p);
    for (int i = 0; i < L; i++) {
        int lo = 0, hi = L;
        double mx = -INFINITY, sum = 0;
        if (a->causal)
            hi = i + 1;
        if (a->window > 0) {
            lo = i - a->window > 0 ? i - a->window : 0;
            if (i + a->window + 1 < hi)
                hi = i + a->window + 1;
        }
        for (int j = lo; j < hi; j++) {
            double s = 0;
            for (int c = 0; c < d; c++)
                s += (double)a->q[(size_t)i * a->ldq + c] *
                     a->k[(size_t)j * a->ldk + c];
            s *= a->scale;
            if (a->bias)
                s += a->bias[j - i + L - 1];
            p[j] = s;
            mx = s > mx ? s : mx;
        }
        for (int j = lo; j < hi; j++)
            sum += (p[j] = exp(p[j] - mx));
        for (int c = 0; c < d; c++) {
            double o = 0;
            for (int j = lo; j < hi; j++)
                o += p[j] / sum * a->v[(size_t)j * a->ldv + c];
            out[(size_t)i * d + c] = o;
        }
    }
    free(p);
}

typedef void (*att_fn)(const sn__att_t *a, float *kt, float *vp, float *s);

/* Worst |kernel - naive| over one case; *same: bit-equal to `other`
 * (when given, rows of d floats). */
static double run(att_fn fn, int L, int d, int mask, float *res)
{
    const int Lp = (L + 15) & ~15, dp = (d + 15) & ~15;
    const size_t ld = (size_t)3 * d + 5; /* a fused QKV row, odd */
    float *qkv = malloc((size_t)L * ld * sizeof *qkv);
    float *bias = malloc((size_t)(2 * L) * sizeof *bias);
    float *out = malloc((size_t)L * (d + 3) * sizeof *out);
    double *ref = malloc((size_t)L * d * sizeof *ref);
    float *kt = aligned_alloc(64, sizeof(float) * dp * Lp);
    float *vp = aligned_alloc(64, sizeof(float) * Lp * dp);
    float *s = aligned_alloc(64, sizeof(float) * SN_NN_ATT_ROWS * (Lp + dp));
    double worst = 0;

    CHECK(qkv && bias && out && ref && kt && vp && s);
    rng = 0x2545f4914f6cdd1dull + (uint64_t)L * 131 + (uint64_t)d * 7 + mask;
    for (size_t i = 0; i < (size_t)L * ld; i++)
        qkv[i] = frand();
    for (int i = 0; i < 2 * L; i++)
        bias[i] = frand();
    memset(kt, 0xff, sizeof(float) * dp * Lp); /* NaN: padding must not leak */
    memset(vp, 0xff, sizeof(float) * Lp * dp);
    memset(s, 0xff, sizeof(float) * SN_NN_ATT_ROWS * (Lp + dp));
    sn__att_t a = {.q = qkv, .k = qkv + d, .v = qkv + 2 * d,
                   .ldq = ld, .ldk = ld, .ldv = ld,
                   .out = out, .ldo = (size_t)d + 3, .L = L, .d = d,
                   .scale = 1.0f / sqrtf((float)d),
                   .causal = mask == 1, .window = mask == 2 ? 5 : 0,
                   .bias = mask == 3 ? bias : NULL};
    fn(&a, kt, vp, s);
    naive(&a, ref);
    for (int i = 0; i < L; i++)
        for (int c = 0; c < d; c++) {
            double e = fabs(out[(size_t)i * (d + 3) + c] - ref[(size_t)i * d + c]);
            worst = e > worst || e != e ? e : worst; /* NaN stays */
            if (res)
                res[(size_t)i * d + c] = out[(size_t)i * (d + 3) + c];
        }
    free(qkv);
    free(bias);
    free(out);
    free(ref);
    free(kt);
    free(vp);
    free(s);
    return worst;
}

int main(void)
{
    static const char *const caps[] = {"base", "avx2", NULL};
    const int lens[] = {1, 2, 7, 16, 17, 64, 65, 130};
    const int dims[] = {20, 32, 48, 80};
    const sn__kernels_t *k;

    for (int ci = 0; ci < 3; ci++) {
        if (caps[ci])
            CHECK(setenv("SENSE_BERT_KERNELS", caps[ci], 1) == 0);
        else
            CHECK(unsetenv("SENSE_BERT_KERNELS") == 0);
        k = sn__kernels_pick();
        for (size_t li = 0; li < sizeof lens / sizeof *lens; li++)
            for (size_t di = 0; di < sizeof dims / sizeof *dims; di++)
                for (int mask = 0; mask < 4; mask++) {
                    const int L = lens[li], d = dims[di];
                    double e = run(k->attention, L, d, mask, NULL);
                    if (!(e <= 2e-6))
                        printf("[%s] L %d d %d mask %d: fp32 error %g\n",
                               k->name, L, d, mask, e);
                    CHECK(e <= 2e-6);
                }
    }

    k = sn__kernels_pick();
    if (!k->attention_lp) {
        printf("no AVX512_BF16 here: bf16 attention not checked\n");
    } else {
        double worst = 0;
        int differs = 0;
        for (size_t li = 0; li < sizeof lens / sizeof *lens; li++)
            for (size_t di = 0; di < sizeof dims / sizeof *dims; di++)
                for (int mask = 0; mask < 4; mask++) {
                    const int L = lens[li], d = dims[di];
                    float *a = malloc((size_t)L * d * sizeof *a);
                    float *b = malloc((size_t)L * d * sizeof *b);
                    CHECK(a && b);
                    double e = run(k->attention_lp, L, d, mask, a);
                    run(k->attention, L, d, mask, b);
                    differs |= memcmp(a, b, (size_t)L * d * sizeof *a) != 0;
                    if (!(e <= 1e-2))
                        printf("[%s bf16] L %d d %d mask %d: error %g\n",
                               k->name, L, d, mask, e);
                    CHECK(e <= 1e-2);
                    worst = e > worst ? e : worst;
                    free(a);
                    free(b);
                }
        CHECK(differs);
        printf("bf16 attention: worst error %.3g (fp32: <= 2e-6)\n", worst);
        /* below the rung, no bf16 attention */
        CHECK(setenv("SENSE_ISA", "avx512vnni", 1) == 0);
        CHECK(sn__kernels_pick()->attention_lp == NULL);
        CHECK(unsetenv("SENSE_ISA") == 0);
    }
    printf("ok\n");
    return 0;
}
