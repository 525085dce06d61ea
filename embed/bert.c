/*
 * bert.c -- the BERT / XLM-RoBERTa encoder: config.json parsing, weight
 * binding from model.safetensors, and the fp32 forward pass.
 *
 * Model. Hyper-parameters (sn__bert_hparams_t) plus explicit per-layer
 * tensor pointers, each bound by name with its expected shape; a missing
 * tensor, a wrong shape or an unused tensor fails the load naming it.
 * Weights are zero-copy views into the read-only mmap of model.safetensors,
 * except the Q, K and V projections, which are copied at load into one fused
 * [3H, H] matrix (and [3H] bias) per layer so that the projection is a single
 * sgemm with N = 3H. The model is immutable after load and may be shared by
 * threads; each thread brings its own context.
 *
 * Tensor layout. Everything is row-major fp32. Linear weights keep the
 * PyTorch [out, in] layout, so y = x W^T + b is cblas_sgemm(NoTrans, Trans).
 * Activations are packed: the n_seq sequences of a call lie back to back,
 * sum(lens) = T rows, with no padding, so no FLOP is spent on padding and a
 * sequence's rows never see another sequence's. Scratch per context:
 *   x    [T, H]   the residual stream (embeddings, then each layer's output)
 *   qkv  [T, 3H]  row t = q_t | k_t | v_t; head h is columns [h*d, h*d + d)
 *                 of each third (d = H / heads)
 *   att  [T, H]   attention context (heads concatenated); later reused as
 *                 the output of the FFN down-projection
 *   ffn  [T, max(I, H)]  FFN activations; earlier reused as the output of
 *                 the attention output projection
 *   scores [SN_BERT_ATT_ROWS, Lmax]  one block of query rows of one head
 *
 * Invariants.
 *   - A sequence's output does not depend on the rest of the batch beyond
 *     rounding: every row-wise step (embeddings, LayerNorm, GELU, softmax)
 *     works per row with the same code path for every element (tails go
 *     through the same vector code on a padded copy) and attention runs per
 *     sequence, so those are bit-identical; but OpenBLAS's sgemm kernels
 *     round a row differently depending on its place in the matrix and on M
 *     (its Haswell kernels do; its SkylakeX ones only for M = 1), so alone
 *     and batched outputs differ by ~1e-6 (tests/test_bert.c bounds it by
 *     1e-5).
 *   - Every input is checked before any work: ids in [0, vocab), each
 *     sequence at most max_position_embeddings - pos_offset tokens, the
 *     whole call at most SN_BERT_MAX_TOKENS tokens. Nothing is read out of
 *     bounds whatever the input.
 *   - The context's buffers only grow (up to SN_BERT_MAX_TOKENS rows), so a
 *     steady workload allocates nothing per call.
 *
 * Tuned for: small sentence encoders (MiniLM-L6: H 384, 6 layers, 12 heads,
 * I 1536) on a few CPU cores, batches of 1 to 64 sequences of 16 to 256
 * tokens. About 95% of the FLOPs are the four dense sgemms of each layer,
 * which OpenBLAS runs on its own threads; attention is a pair of small
 * sgemms per (sequence, head, block of 256 query rows). The element-wise
 * steps are vectorised by hand (GCC/Clang vector extensions, cloned for
 * AVX-512 / AVX2 / baseline): glibc's scalar erff alone would cost more than
 * all the matmuls. Our erf is a two-piece polynomial within 1.4 ulp of the
 * true erf (glibc erff: 1 ulp; the test compares both over [-6, 6]); exp is
 * Cephes' polynomial (1 ulp). Accuracy is fp32 throughout, in the order
 * PyTorch computes, so outputs agree with transformers to ~1e-6.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <jansson.h>

#include "embed_int.h"

#define SN_BERT_MAX_TOKENS 16384      /* tokens (rows) per forward call */
#define SN_BERT_MAX_CONFIG (1u << 20) /* bytes of config.json */
#define SN_BERT_MAX_DIM (1 << 16)     /* hidden_size, intermediate/4, heads */
#define SN_BERT_MAX_LAYERS 256
#define SN_BERT_MAX_VOCAB (1 << 24)
#define SN_BERT_MAX_POS (1 << 16)
#define SN_BERT_ATT_ROWS 256 /* query rows per attention block */
#define SN_BERT_NAME_MAX 256 /* bytes of a tensor name */

/* ---- vector kernels ------------------------------------------------------
 * One 16-lane float vector type for every target: a single zmm register on
 * AVX-512, two ymm on AVX2, four xmm on the x86-64 baseline. The kernels
 * that loop over whole matrices are cloned per target (ifunc dispatch);
 * the helpers are always inlined into them. */

/* The helpers pass vectors by value but are always inlined, so the ABI
 * note GCC gives for 64-byte vectors in the baseline clone is moot. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef float sn_v16f __attribute__((vector_size(64)));
typedef int32_t sn_v16i __attribute__((vector_size(64)));

#if defined(__x86_64__) && defined(__GNUC__) && !defined(SN_NO_CLONES)
#define SN_CLONES                                                            \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3",         \
                                 "default")))
#else
#define SN_CLONES
#endif
#define SN_INLINE static inline __attribute__((always_inline))

SN_INLINE sn_v16f v_load(const float *p)
{
    sn_v16f v;
    memcpy(&v, p, sizeof v);
    return v;
}

SN_INLINE void v_store(float *p, sn_v16f v) { memcpy(p, &v, sizeof v); }

SN_INLINE sn_v16f v_set1(float f)
{
    return (sn_v16f){f, f, f, f, f, f, f, f, f, f, f, f, f, f, f, f};
}

/* m ? a : b, m a comparison result (all ones / all zeros per lane). */
SN_INLINE sn_v16f v_blend(sn_v16i m, sn_v16f a, sn_v16f b)
{
    return (sn_v16f)(((sn_v16i)a & m) | ((sn_v16i)b & ~m));
}

SN_INLINE sn_v16f v_min(sn_v16f a, sn_v16f b) { return v_blend(a < b, a, b); }
SN_INLINE sn_v16f v_max(sn_v16f a, sn_v16f b) { return v_blend(a > b, a, b); }

SN_INLINE float v_hsum(sn_v16f v)
{
    /* fixed pairwise order: the same for every row */
    float s8[8], s4[4];
    for (int i = 0; i < 8; i++)
        s8[i] = v[i] + v[i + 8];
    for (int i = 0; i < 4; i++)
        s4[i] = s8[i] + s8[i + 4];
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

SN_INLINE float v_hmax(sn_v16f v)
{
    float m = v[0];
    for (int i = 1; i < 16; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

/* exp(x), Cephes expf: x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial;
 * 1 ulp. Inputs are clamped to [-87.3, 88.3] (no inf, no denormals). */
SN_INLINE sn_v16f v_exp(sn_v16f x)
{
    const sn_v16f magic = v_set1(12582912.0f); /* 1.5 * 2^23: round */
    sn_v16f n, r, p;
    sn_v16i e;

    x = v_min(v_max(x, v_set1(-87.33654f)), v_set1(88.3762589f));
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
    /* 2^n: n in [-126, 127] after the clamp. 2^127 is split in two. */
    e = __builtin_convertvector(n, sn_v16i);
    sn_v16i e1 = e >> 1, e2 = e - e1;
    return p * (sn_v16f)((e1 + 127) << 23) * (sn_v16f)((e2 + 127) << 23);
}

/* erf(x) within 1.4 ulp: |x| < 1: x + x q(x^2) (degree 6); 1 <= |x| < 3.92:
 * 1 - erfc(|x|), erfc a degree-14 polynomial in |x| - 2.5; beyond, +-1.
 * Coefficients: Chebyshev interpolants in long double, in monomial form. */
SN_INLINE sn_v16f v_erf(sn_v16f x)
{
    const sn_v16i sign = (sn_v16i)x & (sn_v16i)v_set1(-0.0f);
    const sn_v16f ax = (sn_v16f)((sn_v16i)x & ~(sn_v16i)v_set1(-0.0f));
    sn_v16f u = ax * ax, pa, pb, v, y;

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

    y = v_blend(ax < v_set1(1.0f), pa,
                v_blend(ax < v_set1(3.92f), pb, v_set1(1.0f)));
    return (sn_v16f)((sn_v16i)y | sign);
}

/* tanh(z) = 1 - 2 / (exp(2z) + 1), |z| clamped to 9 (tanh = +-1 in fp32);
 * absolute error ~1e-7, which is what GELU's 1 + tanh needs. */
SN_INLINE sn_v16f v_tanh(sn_v16f z)
{
    z = v_min(v_max(z, v_set1(-9.0f)), v_set1(9.0f));
    return v_set1(1.0f) -
           v_set1(2.0f) / (v_exp(z + z) + v_set1(1.0f));
}

/* The activations, in PyTorch's order of operations. */
SN_INLINE sn_v16f v_gelu(sn_v16f x, int tanh_approx)
{
    if (tanh_approx) {
        /* gelu_new / gelu_pytorch_tanh */
        sn_v16f in = v_set1(0.7978845608028654f) *
                     (x + v_set1(0.044715f) * (x * x * x));
        return v_set1(0.5f) * x * (v_set1(1.0f) + v_tanh(in));
    }
    return x * v_set1(0.5f) *
           (v_set1(1.0f) + v_erf(x * v_set1(0.70710678118654752f)));
}

/* x[r][c] = act(x[r][c] + b[c]) over rows x cols (row stride cols). */
SN_CLONES static void k_bias_gelu(float *x, const float *b, int rows,
                                  int cols, int tanh_approx)
{
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * cols;
        int c = 0;
        for (; c + 16 <= cols; c += 16)
            v_store(row + c, v_gelu(v_load(row + c) + v_load(b + c),
                                    tanh_approx));
        if (c < cols) {
            float t[16] = {0}, tb[16] = {0};
            int n = cols - c;
            memcpy(t, row + c, (size_t)n * sizeof *t);
            memcpy(tb, b + c, (size_t)n * sizeof *tb);
            v_store(t, v_gelu(v_load(t) + v_load(tb), tanh_approx));
            memcpy(row + c, t, (size_t)n * sizeof *t);
        }
    }
}

/* x[r][c] += b[c]. */
SN_CLONES static void k_bias(float *x, const float *b, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * cols;
        int c = 0;
        for (; c + 16 <= cols; c += 16)
            v_store(row + c, v_load(row + c) + v_load(b + c));
        for (; c < cols; c++)
            row[c] += b[c];
    }
}

/* LayerNorm of one row v[0..n) into out (may alias v): two passes, biased
 * variance, (v - mean) / sqrt(var + eps) * g + b. */
SN_INLINE void ln_row(const float *v, float *out, const float *g,
                      const float *b, int n, float eps)
{
    sn_v16f acc = v_set1(0.0f);
    float sum, mean, var, inv;
    int c = 0;

    for (; c + 16 <= n; c += 16)
        acc += v_load(v + c);
    sum = v_hsum(acc);
    for (; c < n; c++)
        sum += v[c];
    mean = sum / (float)n;

    acc = v_set1(0.0f);
    for (c = 0; c + 16 <= n; c += 16) {
        sn_v16f d = v_load(v + c) - v_set1(mean);
        acc += d * d;
    }
    var = v_hsum(acc);
    for (; c < n; c++)
        var += (v[c] - mean) * (v[c] - mean);
    var /= (float)n;
    inv = 1.0f / sqrtf(var + eps);

    for (c = 0; c + 16 <= n; c += 16)
        v_store(out + c, (v_load(v + c) - v_set1(mean)) * v_set1(inv) *
                                 v_load(g + c) +
                             v_load(b + c));
    for (; c < n; c++)
        out[c] = (v[c] - mean) * inv * g[c] + b[c];
}

/* x[r] = LN(y[r] + bias + x[r]): dense output, bias, residual, LayerNorm.
 * The sum is formed in y (scratch). */
SN_CLONES static void k_bias_res_ln(float *x, float *y, const float *bias,
                                    const float *g, const float *b, int rows,
                                    int n, float eps)
{
    for (int r = 0; r < rows; r++) {
        float *xr = x + (size_t)r * n, *yr = y + (size_t)r * n;
        int c = 0;
        for (; c + 16 <= n; c += 16)
            v_store(yr + c,
                    (v_load(yr + c) + v_load(bias + c)) + v_load(xr + c));
        for (; c < n; c++)
            yr[c] = (yr[c] + bias[c]) + xr[c];
        ln_row(yr, xr, g, b, n, eps);
    }
}

/* In-place LayerNorm of each row. */
SN_CLONES static void k_ln(float *x, const float *g, const float *b, int rows,
                           int n, float eps)
{
    for (int r = 0; r < rows; r++)
        ln_row(x + (size_t)r * n, x + (size_t)r * n, g, b, n, eps);
}

/* Softmax of each row of s (rows x n, row stride n), max-subtracted. */
SN_CLONES static void k_softmax(float *s, int rows, int n)
{
    for (int r = 0; r < rows; r++) {
        float *row = s + (size_t)r * n;
        sn_v16f vm = v_set1(-INFINITY), acc = v_set1(0.0f);
        float mx, sum, inv, t[16];
        int c = 0, k;

        for (; c + 16 <= n; c += 16)
            vm = v_max(vm, v_load(row + c));
        mx = v_hmax(vm);
        for (k = c; k < n; k++)
            mx = row[k] > mx ? row[k] : mx;

        for (c = 0; c + 16 <= n; c += 16) {
            sn_v16f e = v_exp(v_load(row + c) - v_set1(mx));
            v_store(row + c, e);
            acc += e;
        }
        sum = v_hsum(acc);
        if (c < n) {
            for (k = 0; k < 16; k++)
                t[k] = c + k < n ? row[c + k] - mx : -INFINITY;
            v_store(t, v_exp(v_load(t)));
            for (k = 0; c + k < n; k++) {
                row[c + k] = t[k];
                sum += t[k];
            }
        }
        inv = 1.0f / sum;
        for (c = 0; c + 16 <= n; c += 16)
            v_store(row + c, v_load(row + c) * v_set1(inv));
        for (; c < n; c++)
            row[c] *= inv;
    }
}

/* ---- config.json ---------------------------------------------------------- */

/* Integer field `key`: required unless `def` is given (has_def); must lie in
 * [lo, hi]. A JSON null counts as absent. */
static int cfg_int(json_t *root, const char *key, int has_def, int def,
                   long long lo, long long hi, int *out, const char *name,
                   char *err, size_t err_len)
{
    json_t *v = json_object_get(root, key);
    long long x;

    if (!v || json_is_null(v)) {
        if (!has_def)
            return sn__err(err, err_len, SN_EMODEL,
                           "'%s': missing field '%s'", name, key);
        *out = def;
        return 0;
    }
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v) && fabs(json_real_value(v)) < 1e15 &&
               json_real_value(v) == floor(json_real_value(v))) {
        x = (long long)json_real_value(v); /* 384.0 */
    } else {
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s': field '%s' must be an integer", name, key);
    }
    if (x < lo || x > hi)
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s': field '%s' is %lld, outside [%lld, %lld]", name,
                       key, x, lo, hi);
    *out = (int)x;
    return 0;
}

static int cfg_str(json_t *root, const char *key, const char *def,
                   const char **out, const char *name, char *err,
                   size_t err_len)
{
    json_t *v = json_object_get(root, key);

    if (!v || json_is_null(v)) {
        if (!def)
            return sn__err(err, err_len, SN_EMODEL,
                           "'%s': missing field '%s'", name, key);
        *out = def;
        return 0;
    }
    if (!json_is_string(v))
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s': field '%s' must be a string", name, key);
    *out = json_string_value(v);
    return 0;
}

int sn__bert_parse_config(const char *buf, size_t len, const char *name,
                          sn__bert_hparams_t *hp, char *err, size_t err_len)
{
    json_error_t jerr;
    json_t *root = NULL, *v;
    const char *type, *act, *pet;
    int rc;

    memset(hp, 0, sizeof *hp);
    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return sn__err(err, err_len, SN_EJSON,
                       "'%s': line %d column %d: %s", name, jerr.line,
                       jerr.column, jerr.text);
    if (!json_is_object(root)) {
        rc = sn__err(err, err_len, SN_EMODEL, "'%s': not a json object",
                     name);
        goto fail;
    }

    if ((rc = cfg_str(root, "model_type", NULL, &type, name, err, err_len)))
        goto fail;
    if (!strcmp(type, "bert")) {
        hp->is_xlmr = 0;
    } else if (!strcmp(type, "xlm-roberta") || !strcmp(type, "roberta") ||
               !strcmp(type, "camembert")) {
        /* the same architecture: position ids start after padding_idx */
        hp->is_xlmr = 1;
    } else {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': unknown model_type '%s'", name, type);
        goto fail;
    }

    if ((rc = cfg_int(root, "hidden_size", 0, 0, 1, SN_BERT_MAX_DIM,
                      &hp->n_hidden, name, err, err_len)) ||
        (rc = cfg_int(root, "num_hidden_layers", 0, 0, 1, SN_BERT_MAX_LAYERS,
                      &hp->n_layers, name, err, err_len)) ||
        (rc = cfg_int(root, "num_attention_heads", 0, 0, 1, SN_BERT_MAX_DIM,
                      &hp->n_heads, name, err, err_len)) ||
        (rc = cfg_int(root, "intermediate_size", 0, 0, 1,
                      4 * SN_BERT_MAX_DIM, &hp->n_inter, name, err,
                      err_len)) ||
        (rc = cfg_int(root, "max_position_embeddings", 0, 0, 1,
                      SN_BERT_MAX_POS, &hp->n_pos, name, err, err_len)) ||
        (rc = cfg_int(root, "type_vocab_size", 1, 2, 1, SN_BERT_MAX_POS,
                      &hp->n_types, name, err, err_len)) ||
        (rc = cfg_int(root, "vocab_size", 0, 0, 1, SN_BERT_MAX_VOCAB,
                      &hp->n_vocab, name, err, err_len)) ||
        (rc = cfg_int(root, "pad_token_id", 1, hp->is_xlmr ? 1 : 0, 0,
                      SN_BERT_MAX_VOCAB, &hp->pad_id, name, err, err_len)))
        goto fail;

    if (hp->n_hidden % hp->n_heads) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': num_attention_heads (%d) does not divide "
                     "hidden_size (%d)",
                     name, hp->n_heads, hp->n_hidden);
        goto fail;
    }

    if ((rc = cfg_str(root, "hidden_act", NULL, &act, name, err, err_len)))
        goto fail;
    if (!strcmp(act, "gelu")) {
        hp->act = SN_ACT_GELU;
    } else if (!strcmp(act, "gelu_new") ||
               !strcmp(act, "gelu_pytorch_tanh")) {
        hp->act = SN_ACT_GELU_TANH;
    } else {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': unsupported hidden_act '%s'", name, act);
        goto fail;
    }

    if ((rc = cfg_str(root, "position_embedding_type", "absolute", &pet, name,
                      err, err_len)))
        goto fail;
    if (strcmp(pet, "absolute")) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': unsupported position_embedding_type '%s'", name,
                     pet);
        goto fail;
    }

    hp->ln_eps = 1e-12f;
    v = json_object_get(root, "layer_norm_eps");
    if (v && !json_is_null(v)) {
        double eps;
        if (!json_is_number(v)) {
            rc = sn__err(err, err_len, SN_EMODEL,
                         "'%s': field 'layer_norm_eps' must be a number",
                         name);
            goto fail;
        }
        eps = json_number_value(v);
        if (!(eps >= 0 && eps <= 1)) {
            rc = sn__err(err, err_len, SN_EMODEL,
                         "'%s': field 'layer_norm_eps' is %g, outside [0, 1]",
                         name, eps);
            goto fail;
        }
        hp->ln_eps = (float)eps;
    }

    hp->pos_offset = hp->is_xlmr ? hp->pad_id + 1 : 0;
    if (hp->pos_offset >= hp->n_pos) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': max_position_embeddings (%d) leaves no position "
                     "after pad_token_id (%d)",
                     name, hp->n_pos, hp->pad_id);
        goto fail;
    }
    json_decref(root);
    return 0;
fail:
    json_decref(root);
    memset(hp, 0, sizeof *hp);
    return rc;
}

/* ---- weights ------------------------------------------------------------ */

struct sn__bert_layer {
    const float *qkv_w, *qkv_b; /* fused [3H, H], [3H]: q | k | v */
    const float *o_w, *o_b;     /* attention output [H, H], [H] */
    const float *ln1_g, *ln1_b;
    const float *i_w, *i_b;     /* intermediate [I, H], [I] */
    const float *f_w, *f_b;     /* output [H, I], [H] */
    const float *ln2_g, *ln2_b;
};

struct sn__bert {
    sn__bert_hparams_t hp;
    sn__st_file_t *st;
    char prefix[16]; /* "", "bert." or "roberta." */
    const float *word, *pos, *type; /* [vocab, H], [n_pos, H], [types, H] */
    const float *emb_ln_g, *emb_ln_b;
    struct sn__bert_layer *layers;
    float *fused; /* the fused QKV weights and biases of all layers */
};

/* Bind prefix + printf(fmt, ...) as an f32 tensor of shape [d0] (d1 == 0)
 * or [d0, d1]. */
__attribute__((format(printf, 7, 8))) static int
bind(sn__bert_t *m, const float **out, int64_t d0, int64_t d1, char *err,
     size_t err_len, const char *fmt, ...)
{
    char name[SN_BERT_NAME_MAX];
    int64_t shape[2] = {d0, d1};
    size_t pl = strlen(m->prefix);
    va_list ap;
    int n;

    memcpy(name, m->prefix, pl);
    va_start(ap, fmt);
    n = vsnprintf(name + pl, sizeof name - pl, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof name - pl)
        return sn__err(err, err_len, SN_ETOOBIG, "tensor name too long");
    return sn__st_get_f32(m->st, name, d1 ? 2 : 1, shape, out, err,
                          err_len);
}

/* A LayerNorm's weight and bias, or (older checkpoints) gamma and beta. */
static int bind_ln(sn__bert_t *m, const float **g, const float **b,
                   const char *base, char *err, size_t err_len)
{
    char name[SN_BERT_NAME_MAX];
    const char *wn = "weight", *bn = "bias";
    int64_t H = m->hp.n_hidden;
    int rc;

    if (snprintf(name, sizeof name, "%s%s.weight", m->prefix, base) >=
        (int)sizeof name)
        return sn__err(err, err_len, SN_ETOOBIG, "tensor name too long");
    if (!sn__st_find(m->st, name)) {
        snprintf(name, sizeof name, "%s%s.gamma", m->prefix, base);
        if (sn__st_find(m->st, name)) {
            wn = "gamma";
            bn = "beta";
        }
    }
    if ((rc = bind(m, g, H, 0, err, err_len, "%s.%s", base, wn)))
        return rc;
    return bind(m, b, H, 0, err, err_len, "%s.%s", base, bn);
}

/* Bind every tensor; build the fused QKV copies. */
static int bind_all(sn__bert_t *m, const char *path, char *err,
                    size_t err_len)
{
    static const char *const prefixes[] = {"", "bert.", "roberta."};
    const sn__bert_hparams_t *hp = &m->hp;
    const int64_t H = hp->n_hidden, FF = hp->n_inter;
    const size_t per = (size_t)3 * H * H + (size_t)3 * H;
    char ign[5][48];
    const char *ignore[8];
    size_t p;
    int rc, l;

    for (p = 0; p < sizeof prefixes / sizeof *prefixes; p++) {
        char name[64];
        snprintf(name, sizeof name, "%sembeddings.word_embeddings.weight",
                 prefixes[p]);
        if (sn__st_find(m->st, name))
            break;
    }
    if (p == sizeof prefixes / sizeof *prefixes)
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s': no tensor 'embeddings.word_embeddings.weight' "
                       "(nor with a 'bert.' or 'roberta.' prefix)",
                       path);
    snprintf(m->prefix, sizeof m->prefix, "%s", prefixes[p]);

    if ((rc = bind(m, &m->word, hp->n_vocab, H, err, err_len,
                   "embeddings.word_embeddings.weight")) ||
        (rc = bind(m, &m->pos, hp->n_pos, H, err, err_len,
                   "embeddings.position_embeddings.weight")) ||
        (rc = bind(m, &m->type, hp->n_types, H, err, err_len,
                   "embeddings.token_type_embeddings.weight")) ||
        (rc = bind_ln(m, &m->emb_ln_g, &m->emb_ln_b, "embeddings.LayerNorm",
                      err, err_len)))
        return rc;

    m->layers = calloc((size_t)hp->n_layers, sizeof *m->layers);
    m->fused = malloc(per * (size_t)hp->n_layers * sizeof *m->fused);
    if (!m->layers || !m->fused)
        return sn__err(err, err_len, -ENOMEM, "'%s': out of memory", path);

    for (l = 0; l < hp->n_layers; l++) {
        struct sn__bert_layer *L = &m->layers[l];
        const float *q, *k, *v, *qb, *kb, *vb;
        float *w = m->fused + per * (size_t)l, *b = w + 3 * H * H;
        char base[64];

#define LB(dst, d0, d1, what)                                                \
    if ((rc = bind(m, dst, d0, d1, err, err_len, "encoder.layer.%d.%s", l,  \
                   what)))                                                   \
        return rc;
        LB(&q, H, H, "attention.self.query.weight");
        LB(&qb, H, 0, "attention.self.query.bias");
        LB(&k, H, H, "attention.self.key.weight");
        LB(&kb, H, 0, "attention.self.key.bias");
        LB(&v, H, H, "attention.self.value.weight");
        LB(&vb, H, 0, "attention.self.value.bias");
        LB(&L->o_w, H, H, "attention.output.dense.weight");
        LB(&L->o_b, H, 0, "attention.output.dense.bias");
        LB(&L->i_w, FF, H, "intermediate.dense.weight");
        LB(&L->i_b, FF, 0, "intermediate.dense.bias");
        LB(&L->f_w, H, FF, "output.dense.weight");
        LB(&L->f_b, H, 0, "output.dense.bias");
#undef LB
        snprintf(base, sizeof base,
                 "encoder.layer.%d.attention.output.LayerNorm", l);
        if ((rc = bind_ln(m, &L->ln1_g, &L->ln1_b, base, err, err_len)))
            return rc;
        snprintf(base, sizeof base, "encoder.layer.%d.output.LayerNorm", l);
        if ((rc = bind_ln(m, &L->ln2_g, &L->ln2_b, base, err, err_len)))
            return rc;

        memcpy(w, q, (size_t)(H * H) * sizeof *w);
        memcpy(w + H * H, k, (size_t)(H * H) * sizeof *w);
        memcpy(w + 2 * H * H, v, (size_t)(H * H) * sizeof *w);
        memcpy(b, qb, (size_t)H * sizeof *b);
        memcpy(b + H, kb, (size_t)H * sizeof *b);
        memcpy(b + 2 * H, vb, (size_t)H * sizeof *b);
        L->qkv_w = w;
        L->qkv_b = b;
    }

    /* What a checkpoint may carry besides the encoder: the pooler, buffers,
     * and the heads of *ForMaskedLM / *ForSequenceClassification. */
    snprintf(ign[0], sizeof ign[0], "%spooler.", m->prefix);
    snprintf(ign[1], sizeof ign[1], "%sembeddings.position_ids", m->prefix);
    snprintf(ign[2], sizeof ign[2], "%sembeddings.token_type_ids", m->prefix);
    ignore[0] = ign[0];
    ignore[1] = ign[1];
    ignore[2] = ign[2];
    ignore[3] = "cls.";
    ignore[4] = "lm_head.";
    ignore[5] = NULL;
    return sn__st_check_unused(m->st, ignore, err, err_len);
}

int sn__bert_load(const char *dir, sn__bert_t **out, char *err,
                  size_t err_len)
{
    char path[4096];
    char *json = NULL;
    size_t len;
    sn__bert_t *m = NULL;
    int rc;

    *out = NULL;
    if (sn__path_join(path, sizeof path, dir, "config.json"))
        return sn__err(err, err_len, SN_ETOOBIG, "'%s': path too long", dir);
    if ((rc = sn__read_file(path, SN_BERT_MAX_CONFIG, &json, &len, err,
                            err_len)))
        return rc;
    m = calloc(1, sizeof *m);
    if (!m) {
        rc = sn__err(err, err_len, -ENOMEM, "'%s': out of memory", dir);
        goto fail;
    }
    if ((rc = sn__bert_parse_config(json, len, path, &m->hp, err, err_len)))
        goto fail;
    if (sn__path_join(path, sizeof path, dir, "model.safetensors")) {
        rc = sn__err(err, err_len, SN_ETOOBIG, "'%s': path too long", dir);
        goto fail;
    }
    if ((rc = sn__st_open(path, &m->st, err, err_len)))
        goto fail;
    if ((rc = bind_all(m, path, err, err_len)))
        goto fail;
    free(json);
    *out = m;
    return 0;
fail:
    free(json);
    sn__bert_free(m);
    return rc;
}

void sn__bert_free(sn__bert_t *m)
{
    if (!m)
        return;
    sn__st_close(m->st);
    free(m->layers);
    free(m->fused);
    free(m);
}

const sn__bert_hparams_t *sn__bert_hparams(const sn__bert_t *m)
{
    return &m->hp;
}

/* ---- context ------------------------------------------------------------ */

struct sn__bert_ctx {
    const sn__bert_t *m;
    float *arena; /* all the buffers below, 64-byte aligned */
    int cap;      /* rows the buffers hold */
    int cap_len;  /* longest sequence the scores block holds */
    float *x, *qkv, *att, *ffn, *scores;
};

sn__bert_ctx_t *sn__bert_ctx_new(const sn__bert_t *m)
{
    sn__bert_ctx_t *c = calloc(1, sizeof *c);
    if (c)
        c->m = m;
    return c;
}

void sn__bert_ctx_free(sn__bert_ctx_t *c)
{
    if (!c)
        return;
    free(c->arena);
    free(c);
}

static size_t round64(size_t n_floats) { return (n_floats + 15) & ~(size_t)15; }

/* Make room for n_tok rows and sequences of up to max_len tokens. */
static int ctx_reserve(sn__bert_ctx_t *c, int n_tok, int max_len)
{
    const sn__bert_hparams_t *hp = &c->m->hp;
    size_t H = (size_t)hp->n_hidden, F, rows, len, n_x, n_qkv, n_ffn, n_s;
    float *a;

    if (n_tok <= c->cap && max_len <= c->cap_len)
        return 0;
    /* grow geometrically, so a rising workload reallocates O(log) times */
    rows = (size_t)(n_tok > c->cap ? n_tok : c->cap);
    if (n_tok > c->cap && rows < (size_t)c->cap * 3 / 2)
        rows = (size_t)c->cap * 3 / 2;
    if (rows > SN_BERT_MAX_TOKENS)
        rows = SN_BERT_MAX_TOKENS;
    len = (size_t)(max_len > c->cap_len ? max_len : c->cap_len);
    F = (size_t)hp->n_inter > H ? (size_t)hp->n_inter : H;
    n_x = round64(rows * H);
    n_qkv = round64(rows * 3 * H);
    n_ffn = round64(rows * F);
    n_s = round64((size_t)SN_BERT_ATT_ROWS * len);
    a = aligned_alloc(64, (2 * n_x + n_qkv + n_ffn + n_s) * sizeof *a);
    if (!a)
        return -ENOMEM;
    free(c->arena);
    c->arena = a;
    c->x = a;
    c->att = a + n_x;
    c->qkv = c->att + n_x;
    c->ffn = c->qkv + n_qkv;
    c->scores = c->ffn + n_ffn;
    c->cap = (int)rows;
    c->cap_len = (int)len;
    return 0;
}

/* ---- forward -------------------------------------------------------------- */

/* y[T, n_out] = x[T, n_in] W^T, W [n_out, n_in]. */
static void linear(const float *x, const float *w, float *y, int T,
                   int n_out, int n_in)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, n_out, n_in,
                1.0f, x, n_in, w, n_in, 0.0f, y, n_out);
}

/* Self-attention of one sequence of L rows starting at row `off`: reads
 * c->qkv, writes c->att. */
static void attention(const sn__bert_hparams_t *hp, sn__bert_ctx_t *c,
                      int off, int L)
{
    const int H = hp->n_hidden, d = H / hp->n_heads, ld = 3 * H;
    const float scale = 1.0f / sqrtf((float)d);
    const float *base = c->qkv + (size_t)off * ld;

    for (int h = 0; h < hp->n_heads; h++) {
        const float *k = base + H + h * d, *v = base + 2 * H + h * d;
        for (int r0 = 0; r0 < L; r0 += SN_BERT_ATT_ROWS) {
            int rows = L - r0 < SN_BERT_ATT_ROWS ? L - r0 : SN_BERT_ATT_ROWS;
            const float *q = base + (size_t)r0 * ld + h * d;
            float *o = c->att + (size_t)(off + r0) * H + h * d;

            /* S = scale * Q K^T; P = softmax(S); O = P V */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, L, d,
                        scale, q, ld, k, ld, 0.0f, c->scores, L);
            k_softmax(c->scores, rows, L);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, d,
                        L, 1.0f, c->scores, L, v, ld, 0.0f, o, H);
        }
    }
}

int sn__bert_forward(const sn__bert_t *m, sn__bert_ctx_t *c,
                     const int32_t *ids, const int *lens, int n_seq,
                     float *out, char *err, size_t err_len)
{
    const sn__bert_hparams_t *hp = &m->hp;
    const int H = hp->n_hidden, FF = hp->n_inter;
    const int max_len = hp->n_pos - hp->pos_offset;
    const int tanh_act = hp->act == SN_ACT_GELU_TANH;
    long long total = 0;
    int T, longest = 0, rc, s, t, l, off;

    if (n_seq < 0 || (n_seq > 0 && (!ids || !lens || !out)) || c->m != m)
        return sn__err(err, err_len, SN_EARG, "bert: invalid arguments");
    for (s = 0; s < n_seq; s++) {
        if (lens[s] < 0)
            return sn__err(err, err_len, SN_EARG,
                           "bert: sequence %d has negative length %d", s,
                           lens[s]);
        if (lens[s] > max_len)
            return sn__err(err, err_len, SN_ETOOBIG,
                           "bert: sequence %d has %d tokens, the model takes "
                           "at most %d",
                           s, lens[s], max_len);
        longest = lens[s] > longest ? lens[s] : longest;
        total += lens[s];
        if (total > SN_BERT_MAX_TOKENS)
            return sn__err(err, err_len, SN_ETOOBIG,
                           "bert: batch of more than %d tokens "
                           "(SN_BERT_MAX_TOKENS); split it",
                           SN_BERT_MAX_TOKENS);
    }
    T = (int)total;
    if (T == 0)
        return 0;
    for (t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= hp->n_vocab)
            return sn__err(err, err_len, SN_EARG,
                           "bert: token id %d at position %d outside the "
                           "vocabulary [0, %d)",
                           (int)ids[t], t, hp->n_vocab);
    if ((rc = ctx_reserve(c, T, longest)))
        return sn__err(err, err_len, rc,
                       "bert: out of memory for %d tokens", T);

    /* embeddings: LN((word + type[0]) + pos). XLM-R numbers positions as
     * transformers does: pad tokens get padding_idx, the others count on
     * from padding_idx + 1; so a position never exceeds pos_offset + j. */
    for (s = 0, off = 0; s < n_seq; off += lens[s++]) {
        int pos = hp->pos_offset;
        for (int j = 0; j < lens[s]; j++) {
            const float *w = m->word + (size_t)ids[off + j] * H;
            int pid = hp->is_xlmr && ids[off + j] == hp->pad_id ? hp->pad_id
                                                                : pos++;
            const float *p = m->pos + (size_t)pid * H;
            float *x = c->x + (size_t)(off + j) * H;
            for (int k = 0; k < H; k++)
                x[k] = (w[k] + m->type[k]) + p[k];
        }
    }
    k_ln(c->x, m->emb_ln_g, m->emb_ln_b, T, H, hp->ln_eps);

    for (l = 0; l < hp->n_layers; l++) {
        const struct sn__bert_layer *L = &m->layers[l];

        linear(c->x, L->qkv_w, c->qkv, T, 3 * H, H);
        k_bias(c->qkv, L->qkv_b, T, 3 * H);
        for (s = 0, off = 0; s < n_seq; off += lens[s++])
            if (lens[s])
                attention(hp, c, off, lens[s]);
        linear(c->att, L->o_w, c->ffn, T, H, H);
        k_bias_res_ln(c->x, c->ffn, L->o_b, L->ln1_g, L->ln1_b, T, H,
                      hp->ln_eps);

        linear(c->x, L->i_w, c->ffn, T, FF, H);
        k_bias_gelu(c->ffn, L->i_b, T, FF, tanh_act);
        linear(c->ffn, L->f_w, c->att, T, H, FF);
        k_bias_res_ln(c->x, c->att, L->f_b, L->ln2_g, L->ln2_b, T, H,
                      hp->ln_eps);
    }
    memcpy(out, c->x, (size_t)T * H * sizeof *out);
    return 0;
}
