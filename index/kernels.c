/*
 * kernels.c -- inner products for the ANN indexes, compiled for several
 * instruction sets and picked at run time.
 *
 * Debian builds its packages (libfaiss.a among them) for baseline x86-64;
 * compiling this project with -march=native would tie the binaries to the
 * build machine. So each kernel is written per instruction set with GCC's
 * target attribute, and sn__dot_pick() returns the widest the CPU runs.
 * At 384 dimensions one float dot product is 6 AVX-512 iterations of 64
 * (4 accumulators, to hide the FMA latency); the int8 one (8-bit scalar
 * quantized codes, hnsw.cpp) widens 32 codes at a time to int16 and
 * multiply-adds pairs into int32 (vpmaddwd), exact.
 *
 * Summation order differs between kernels, so float results differ by
 * rounding (~1e-7 at 384-d); int8 results are exact and equal everywhere.
 */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

/* GCC 12's _mm512_reduce_add_ps reads an "undefined" vector by design. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
__attribute__((target("avx512f"))) static float
dot_avx512(const float *a, const float *b, size_t d)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    __m512 s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    size_t i = 0;

    for (; i + 64 <= d; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i),
                             s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16),
                             _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32),
                             _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48),
                             _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= d; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i),
                             s0);
    if (i < d) {
        __mmask16 m = (__mmask16)((1u << (d - i)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i),
                             _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(
            _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

__attribute__((target("avx512f,avx512bw"))) static int32_t
dot_i8_avx512(const int8_t *a, const int8_t *b, size_t d)
{
    __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
    size_t i = 0;
    int32_t t = 0;

    for (; i + 64 <= d; i += 64) {
        __m512i a0 = _mm512_cvtepi8_epi16(
                _mm256_loadu_si256((const __m256i *)(a + i)));
        __m512i b0 = _mm512_cvtepi8_epi16(
                _mm256_loadu_si256((const __m256i *)(b + i)));
        __m512i a1 = _mm512_cvtepi8_epi16(
                _mm256_loadu_si256((const __m256i *)(a + i + 32)));
        __m512i b1 = _mm512_cvtepi8_epi16(
                _mm256_loadu_si256((const __m256i *)(b + i + 32)));
        s0 = _mm512_add_epi32(s0, _mm512_madd_epi16(a0, b0));
        s1 = _mm512_add_epi32(s1, _mm512_madd_epi16(a1, b1));
    }
    for (; i + 32 <= d; i += 32) {
        __m512i a0 = _mm512_cvtepi8_epi16(
                _mm256_loadu_si256((const __m256i *)(a + i)));
        __m512i b0 = _mm512_cvtepi8_epi16(
                _mm256_loadu_si256((const __m256i *)(b + i)));
        s0 = _mm512_add_epi32(s0, _mm512_madd_epi16(a0, b0));
    }
    for (; i < d; i++)
        t += (int32_t)a[i] * b[i];
    return _mm512_reduce_add_epi32(_mm512_add_epi32(s0, s1)) + t;
}
#pragma GCC diagnostic pop

__attribute__((target("avx2,fma"))) static float
dot_avx2(const float *a, const float *b, size_t d)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t i = 0;
    float t = 0;

    for (; i + 32 <= d; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i),
                             s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8),
                             _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16),
                             _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24),
                             _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= d; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i),
                             s0);
    for (; i < d; i++)
        t += a[i] * b[i];
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s),
                          _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h) + t;
}

__attribute__((target("avx2"))) static int32_t
dot_i8_avx2(const int8_t *a, const int8_t *b, size_t d)
{
    __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
    size_t i = 0;
    int32_t t = 0;

    for (; i + 32 <= d; i += 32) {
        __m256i a0 = _mm256_cvtepi8_epi16(
                _mm_loadu_si128((const __m128i *)(a + i)));
        __m256i b0 = _mm256_cvtepi8_epi16(
                _mm_loadu_si128((const __m128i *)(b + i)));
        __m256i a1 = _mm256_cvtepi8_epi16(
                _mm_loadu_si128((const __m128i *)(a + i + 16)));
        __m256i b1 = _mm256_cvtepi8_epi16(
                _mm_loadu_si128((const __m128i *)(b + i + 16)));
        s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(a0, b0));
        s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(a1, b1));
    }
    for (; i < d; i++)
        t += (int32_t)a[i] * b[i];
    __m256i s = _mm256_add_epi32(s0, s1);
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s),
                              _mm256_extracti128_si256(s, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
    return _mm_cvtsi128_si32(h) + t;
}

static float dot_base(const float *a, const float *b, size_t d)
{
    float s[8] = {0};
    size_t i = 0;

    for (; i + 8 <= d; i += 8)
        for (int j = 0; j < 8; j++)
            s[j] += a[i + j] * b[i + j];
    for (; i < d; i++)
        s[0] += a[i] * b[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

static int32_t dot_i8_base(const int8_t *a, const int8_t *b, size_t d)
{
    int32_t s = 0;
    for (size_t i = 0; i < d; i++)
        s += (int32_t)a[i] * b[i];
    return s;
}

/* 2: AVX-512 (F, and BW for the int8 kernel), 1: AVX2+FMA, 0: plain C. */
static int level(int need_bw)
{
    const char *cap = getenv("SENSE_ANN_KERNELS");
    int base = cap && strcmp(cap, "base") == 0;
    int avx2 = cap && strcmp(cap, "avx2") == 0;

    __builtin_cpu_init();
    if (!base && !avx2 && __builtin_cpu_supports("avx512f") &&
        (!need_bw || __builtin_cpu_supports("avx512bw")))
        return 2;
    if (!base && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma"))
        return 1;
    return 0;
}

sn__dot_fn sn__dot_pick(void)
{
    static const sn__dot_fn fn[3] = {dot_base, dot_avx2, dot_avx512};
    return fn[level(0)];
}

sn__dot_i8_fn sn__dot_i8_pick(void)
{
    static const sn__dot_i8_fn fn[3] = {dot_i8_base, dot_i8_avx2,
                                        dot_i8_avx512};
    return fn[level(1)];
}

void sn__topk_push(sn__cand_t *h, int64_t *n, int64_t k, float score,
                   int64_t id)
{
    int64_t i;
    if (*n == k) {
        if (!(score > h[0].score))
            return;
        i = 0; /* replace the root, sift down */
        for (;;) {
            int64_t l = 2 * i + 1, r = l + 1, m = i;
            float ms = score;
            if (l < k && h[l].score < ms)
                m = l, ms = h[l].score;
            if (r < k && h[r].score < ms)
                m = r;
            if (m == i)
                break;
            h[i] = h[m];
            i = m;
        }
        h[i] = (sn__cand_t){score, id};
        return;
    }
    i = (*n)++;
    while (i > 0 && h[(i - 1) / 2].score > score) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = (sn__cand_t){score, id};
}
