/*
 * bert.c -- the BERT / XLM-RoBERTa encoder: config.json parsing, weight
 * binding from model.safetensors, and the fp32 forward pass.
 *
 * Model. Hyper-parameters (sn__bert_hparams_t) plus explicit per-layer
 * tensor pointers, each bound by name with its expected shape; a missing
 * tensor, a wrong shape or an unused tensor fails the load naming it.
 * Embeddings and LayerNorm weights are zero-copy views into the read-only
 * mmap of model.safetensors. The four dense weights of each layer are
 * packed at load for embed/gemm.c (32-column k-major panels), Q, K and V
 * fused into one [3H, H] matrix (and [3H] bias) so that the projection is
 * one product with N = 3H; once packed, the mmap'd pages of those tensors
 * are dropped with madvise(MADV_DONTNEED) (whole pages inside the tensor,
 * only when the view lies in the mapping), so the packed copy replaces
 * them in memory rather than doubling them. The model is immutable after
 * load and may be shared by threads; each thread brings its own context.
 *
 * Layout. Row-major fp32. Linear weights keep PyTorch's [out, in]:
 * y = x W^T + b, packed from W [out, in]. The n_seq sequences of a
 * call lie back to back, T = sum(lens) rows, with no padding: no FLOP is
 * spent on padding. Context scratch (rows of T):
 *   x    [T, H]   the residual stream
 *   qkv  [T, 3H]  row t = q_t | k_t | v_t; head h is columns [h*d, h*d + d)
 *                 of each third (d = H / heads)
 *   att  [T, H]   attention output, heads side by side
 *   ffn  [T, I]   FFN activations
 *   per thread: kt [d, Lp], vp [L, dp], s [SN_BERT_ATT_ROWS, Lp] for the
 *                 attention of one (sequence, head); Lp, dp rounded to 16
 * Each product accumulates (C += A W) into a buffer that already holds its
 * bias (and, for the two residual projections, the residual x + bias), so
 * no separate bias or residual pass is needed:
 *   qkv = b_qkv + x Wqkv^T; att = attention(qkv); x = LN(x + b_o + att Wo^T);
 *   ffn = GELU(b_i + x Wi^T); x = LN(x + b_f + ffn Wf^T)
 * The fills and adds ride along with the previous step's LayerNorm/GELU.
 *
 * Threads. Everything runs on the context's own helpers: as many threads
 * as OpenBLAS is allowed (openblas_get_num_threads(), which the daemon sets
 * to cores / workers), capped at the cores. 8 fork-joins per layer: the 4
 * products, split by W's panels (each thread writes its own columns), and
 * the 4 row-wise/attention steps; each is run inline when too small to pay
 * for the wake-up (SN_BERT_PAR_MIN). The forward pass makes no OpenBLAS
 * call, so no OpenBLAS thread spins beside the helpers. A context must not
 * cross fork().
 *
 * Invariants.
 *   - Every input is checked before any work: ids in [0, vocab), each
 *     sequence at most max_position_embeddings - pos_offset tokens, the
 *     call at most SN_BERT_MAX_TOKENS tokens. Nothing is read out of bounds
 *     whatever the input.
 *   - The context's buffers only grow (up to SN_BERT_MAX_TOKENS rows), so a
 *     steady workload allocates nothing per call.
 *   - Every step gives bit-identical results whatever the batch and the
 *     thread split: each row, and each (sequence, head), runs the same code
 *     whichever thread takes it, and vector tails run the vector code on a
 *     padded copy; embed/gemm.c computes each element as one FMA chain in
 *     k order whatever M and the row's place. So a sequence alone and in a
 *     batch give the same bits (tests/test_bert.c checks it at every
 *     kernel level; with OpenBLAS's sgemm they differed by ~1e-6).
 *
 * Tuned for: small sentence encoders (MiniLM-L6: H 384, 6 layers, 12 heads,
 * I 1536) on a few cores, batches of 1 to 64 sequences of 16 to 256 tokens.
 * ~95% of the FLOPs, and ~75% of the time (perf, batch 32 x 128), are the
 * four dense products per layer, on embed/gemm.c's own AVX-512 / AVX2
 * kernels: they no longer depend on which OpenBLAS kernels the environment
 * picks (OpenBLAS 0.3.21 runs its AVX2 "Haswell" kernels on AVX-512 Zen
 * 4/5 under OPENBLAS_CORETYPE=Haswell, half the speed of its SkylakeX
 * ones), and run at about 2x the former and about the latter (see
 * bench/bench_encode.c). Attention (~5% of FLOPs, ~12% of the time) is a
 * hand-vectorised kernel: per (sequence, head) sgemm calls cost more in
 * call overhead and single-threading than they compute.
 * The element-wise steps are vectorised by hand (GCC/Clang vector
 * extensions, compiled for AVX-512, AVX2 and the baseline, picked at run
 * time; SENSE_BERT_KERNELS=base|avx2 caps the choice): glibc's scalar erff
 * alone (12 ns a call) would double the forward pass time. Our erf is
 * within 1.12 ulp of the true erf with FMA, 1.34 without (glibc erff:
 * 0.97), so GELU is within 1.2e-7 absolute; exp is Cephes' (0.98 ulp).
 * Outputs match transformers' to ~2e-6 on the fixtures.
 */
#ifndef SN_BERT_PASS /* the main pass: all but the kernels */

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/mman.h>

#include <cblas.h>
#include <jansson.h>

#include "embed_int.h"
#include "gemm.h"
#include "pool.h"

#define SN_BERT_MAX_TOKENS 16384      /* tokens (rows) per forward call */
#define SN_BERT_MAX_CONFIG (1u << 20) /* bytes of config.json */
#define SN_BERT_MAX_DIM (1 << 16)     /* hidden_size, intermediate/4, heads */
#define SN_BERT_MAX_LAYERS 256
#define SN_BERT_MAX_VOCAB (1 << 24)
#define SN_BERT_MAX_POS (1 << 16)
#define SN_BERT_ATT_ROWS 64  /* query rows per attention block */
#define SN_BERT_MAX_THREADS 64
#define SN_BERT_PAR_MIN (1 << 17) /* work (~flops) worth waking helpers */
#define SN_BERT_NAME_MAX 256 /* bytes of a tensor name */

/* ---- kernels -----------------------------------------------------------
 * Everything but the dense products (embed/gemm.c): LayerNorm, GELU, bias adds, attention. They
 * are written once with GCC/Clang vector extensions at the end of this
 * file (the #else branch of SN_BERT_PASS), and compiled once per target by
 * including this file into itself, each time with its own vector width:
 * AVX-512 (16 lanes, 4-vector tiles), AVX2 + FMA (8 lanes, 2-vector tiles)
 * and the baseline (4 lanes: SSE2, NEON). A width the target lacks is not
 * an option: GCC lowers a 64-byte vector on AVX2 through the stack, ten
 * times slower. The table is picked at run time from the CPU's features. */

typedef struct {
    const char *name;
    /* x[r][c] = GELU(x[r][c]), rows x cols */
    void (*gelu)(float *x, int rows, int cols, int tanh_approx);
    /* x[r][c] += b[c] */
    void (*add_rows)(float *x, const float *b, int rows, int cols);
    /* x[r] = LayerNorm(x[r]) * g + b, in place */
    void (*ln)(float *x, const float *g, const float *b, int rows, int n,
               float eps);
    /* head h of one sequence of L rows: qkv (row stride ld) -> out (row
     * stride H); scratch kt [d * Lp], vp [L * dp], s [ATT_ROWS * Lp] */
    void (*attention)(const float *qkv, int ld, float *out, int H, int d,
                      int h, int L, float *kt, float *vp, float *s);
} kernels_t;

#define SN_BERT_PASS 1
/* AVX passes where GCC/Clang target x86-64; define SN_BERT_NO_SIMD_PASSES
 * to build the baseline alone. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(SN_BERT_NO_SIMD_PASSES)
#define SN_W 16
#define SN_NV 4
#define SN_K(name) name##_avx512
#define SN_KATTR __attribute__((target("avx512f,avx2,fma")))
#include "bert.c"
#undef SN_W
#undef SN_NV
#undef SN_K
#undef SN_KATTR
#define SN_W 8
#define SN_NV 2
#define SN_K(name) name##_avx2
#define SN_KATTR __attribute__((target("avx2,fma")))
#include "bert.c"
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
#include "bert.c"
#undef SN_W
#undef SN_NV
#undef SN_K
#undef SN_KATTR
#undef SN_BERT_PASS

/* The best kernels this CPU runs; the environment variable
 * SENSE_BERT_KERNELS=base|avx2|avx512 caps the choice (for tests and
 * comparisons; it never picks what the CPU lacks). */
static const kernels_t *kernels_pick(void)
{
    static const kernels_t base = {"base", k_gelu_base, k_add_rows_base,
                                   k_ln_base, k_attention_base};
    const char *cap = getenv("SENSE_BERT_KERNELS");

    if (cap && !strcmp(cap, "base"))
        return &base;
#ifdef SN_HAVE_AVX_PASSES
    static const kernels_t avx512 = {"avx512", k_gelu_avx512,
                                     k_add_rows_avx512, k_ln_avx512,
                                     k_attention_avx512};
    static const kernels_t avx2 = {"avx2", k_gelu_avx2, k_add_rows_avx2,
                                   k_ln_avx2, k_attention_avx2};
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma") &&
        !(cap && !strcmp(cap, "avx2")))
        return &avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return &avx2;
#endif
    return &base;
}

/* ---- config.json -------------------------------------------------------- */

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
    sn__gemm_w_t qkv;           /* packed fused [3H, H]: q | k | v */
    const float *qkv_b;         /* fused [3H] */
    sn__gemm_w_t o;             /* packed attention output [H, H] */
    const float *o_b;           /* [H] */
    const float *ln1_g, *ln1_b;
    sn__gemm_w_t i;             /* packed intermediate [I, H] */
    const float *i_b;           /* [I] */
    sn__gemm_w_t f;             /* packed output [H, I] */
    const float *f_b;           /* [H] */
    const float *ln2_g, *ln2_b;
};

struct sn__bert {
    sn__bert_hparams_t hp;
    sn__st_file_t *st;
    char prefix[16]; /* "", "bert." or "roberta." */
    const float *word, *pos, *type; /* [vocab, H], [n_pos, H], [types, H] */
    const float *emb_ln_g, *emb_ln_b;
    struct sn__bert_layer *layers;
    float *fused; /* the fused QKV biases of all layers */
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
        return sn__err(err, err_len, SN_ETOOBIG, "'%s': tensor name too long",
                       m->st->path);
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
        return sn__err(err, err_len, SN_ETOOBIG, "'%s': tensor name too long",
                       m->st->path);
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

/* Drop the resident pages of a weight view that has been packed, when it
 * lies in the read-only file mapping (a converted f16/bf16 copy does not):
 * MADV_DONTNEED on a private read-only file mapping only unmaps clean page
 * cache, which the kernel could re-read; nothing reads the view again. Only
 * whole pages inside the tensor go; a failure costs memory, not results. */
static void release_view(const sn__bert_t *m, const float *p, size_t n)
{
    const uintptr_t map = (uintptr_t)m->st->map, end = map + m->st->map_len;
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)p, hi = lo + n * sizeof *p;

    if (!m->st->map || lo < map || hi > end || pg == 0 || (pg & (pg - 1)))
        return;
    lo = (lo + pg - 1) & ~(pg - 1);
    hi &= ~(pg - 1);
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* Pack the view src [n_out, n_in] into w, then release the view. */
static int pack(sn__bert_t *m, sn__gemm_w_t *w, const float *src, int n_out,
                int n_in, const char *what, int l, const char *path,
                char *err, size_t err_len)
{
    int rc = sn__gemm_pack(w, src, n_out, n_in, 1);

    if (rc)
        return sn__err(err, err_len, rc == -ENOMEM ? rc : SN_EMODEL,
                       "'%s': layer %d: cannot pack %s (%d x %d)", path, l,
                       what, n_out, n_in);
    release_view(m, src, (size_t)n_out * n_in);
    return 0;
}

/* Bind every tensor; pack the four dense weights of each layer (Q, K and V
 * fused into one [3H, H] matrix) for embed/gemm.c. */
static int bind_all(sn__bert_t *m, const char *path, char *err,
                    size_t err_len)
{
    static const char *const prefixes[] = {"", "bert.", "roberta."};
    const sn__bert_hparams_t *hp = &m->hp;
    const int64_t H = hp->n_hidden, FF = hp->n_inter;
    const size_t per = (size_t)3 * H;
    char ign[5][48];
    const char *ignore[8];
    float *qkv = NULL;
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
    qkv = malloc((size_t)3 * H * H * sizeof *qkv);
    if (!m->layers || !m->fused || !qkv) {
        rc = sn__err(err, err_len, -ENOMEM, "'%s': out of memory", path);
        goto fail;
    }

    for (l = 0; l < hp->n_layers; l++) {
        struct sn__bert_layer *L = &m->layers[l];
        const float *q, *k, *v, *qb, *kb, *vb, *o_w, *i_w, *f_w;
        float *b = m->fused + per * (size_t)l;
        char base[64];

#define LB(dst, d0, d1, what)                                                \
    if ((rc = bind(m, dst, d0, d1, err, err_len, "encoder.layer.%d.%s", l,  \
                   what)))                                                   \
        goto fail;
        LB(&q, H, H, "attention.self.query.weight");
        LB(&qb, H, 0, "attention.self.query.bias");
        LB(&k, H, H, "attention.self.key.weight");
        LB(&kb, H, 0, "attention.self.key.bias");
        LB(&v, H, H, "attention.self.value.weight");
        LB(&vb, H, 0, "attention.self.value.bias");
        LB(&o_w, H, H, "attention.output.dense.weight");
        LB(&L->o_b, H, 0, "attention.output.dense.bias");
        LB(&i_w, FF, H, "intermediate.dense.weight");
        LB(&L->i_b, FF, 0, "intermediate.dense.bias");
        LB(&f_w, H, FF, "output.dense.weight");
        LB(&L->f_b, H, 0, "output.dense.bias");
#undef LB
        snprintf(base, sizeof base,
                 "encoder.layer.%d.attention.output.LayerNorm", l);
        if ((rc = bind_ln(m, &L->ln1_g, &L->ln1_b, base, err, err_len)))
            goto fail;
        snprintf(base, sizeof base, "encoder.layer.%d.output.LayerNorm", l);
        if ((rc = bind_ln(m, &L->ln2_g, &L->ln2_b, base, err, err_len)))
            goto fail;

        memcpy(qkv, q, (size_t)(H * H) * sizeof *qkv);
        memcpy(qkv + H * H, k, (size_t)(H * H) * sizeof *qkv);
        memcpy(qkv + 2 * H * H, v, (size_t)(H * H) * sizeof *qkv);
        memcpy(b, qb, (size_t)H * sizeof *b);
        memcpy(b + H, kb, (size_t)H * sizeof *b);
        memcpy(b + 2 * H, vb, (size_t)H * sizeof *b);
        L->qkv_b = b;
        if ((rc = pack(m, &L->qkv, qkv, (int)(3 * H), (int)H, "query/key/"
                       "value", l, path, err, err_len)) ||
            (rc = pack(m, &L->o, o_w, (int)H, (int)H, "attention output",
                       l, path, err, err_len)) ||
            (rc = pack(m, &L->i, i_w, (int)FF, (int)H, "intermediate", l,
                       path, err, err_len)) ||
            (rc = pack(m, &L->f, f_w, (int)H, (int)FF, "output", l, path,
                       err, err_len)))
            goto fail;
        release_view(m, q, (size_t)(H * H));
        release_view(m, k, (size_t)(H * H));
        release_view(m, v, (size_t)(H * H));
    }
    free(qkv);
    qkv = NULL;

    /* What a checkpoint may carry besides the encoder: the pooler, the
     * position_ids / token_type_ids buffers, and the pre-training heads of
     * BertForMaskedLM / BertForPreTraining (cls.) and RobertaForMaskedLM
     * (lm_head.). Anything else is an error naming the tensor. */
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
fail:
    free(qkv);
    return rc;
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
    for (int l = 0; m->layers && l < m->hp.n_layers; l++) {
        sn__gemm_free(&m->layers[l].qkv);
        sn__gemm_free(&m->layers[l].o);
        sn__gemm_free(&m->layers[l].i);
        sn__gemm_free(&m->layers[l].f);
    }
    free(m->layers);
    free(m->fused);
    free(m);
}

const sn__bert_hparams_t *sn__bert_hparams(const sn__bert_t *m)
{
    return &m->hp;
}

/* ---- context: scratch and a small thread pool ---------------------------
 * Every step (the dense products, attention, LayerNorm, GELU, bias fills)
 * is split over the context's own helper threads, as many as OpenBLAS is
 * allowed, in one fork-join "job" per step: 8 per layer. Products are
 * split by W's panels; rows are split evenly; attention (sequence, head)
 * items are handed out through an atomic counter. Each element, row and
 * item runs the same code whatever thread takes it, so the split never
 * changes a bit. */

typedef struct {
    int rows;              /* row phase: rows [0, rows), split evenly */
    float *ln;             /* LayerNorm these rows of [T, H] in place */
    const float *ln_g, *ln_b;
    float *add;            /* then add add_b to these rows of [T, H] */
    const float *add_b;
    float *gelu;           /* GELU these rows of [T, FF] in place */
    float *fill;           /* fill these rows of [T, fill_cols] with fill_b */
    const float *fill_b;
    int fill_cols;
    int n_items;           /* attention phase: n_att_seq x heads items */
    int next;              /* next item (atomic) */
    const sn__gemm_w_t *gw; /* gemm phase: g_c[rows, n] += g_a[rows, k] W */
    const float *g_a;
    float *g_c;
} job_t;

struct sn__bert_ctx {
    const sn__bert_t *m;
    const kernels_t *k;
    int gemm_level; /* embed/gemm.c's kernels, capped like k */
    float *arena; /* all the buffers below, 64-byte aligned */
    int cap;      /* rows the buffers hold */
    int cap_len;  /* longest sequence the attention scratch holds */
    float *x, *qkv, *att, *ffn;
    float *att_scratch; /* per thread: kt, vp, s */
    size_t att_per;     /* floats of att_scratch per thread */
    int *seq_off, *seq_len; /* the non-empty sequences of the call */
    int n_att_seq;

    job_t job;
    sn__pool_t *pool; /* embed/pool.c: the helpers */
    int n_threads;    /* helpers + the calling thread */
};

/* Thread tid's share of job c->job. */
static void job_run(sn__bert_ctx_t *c, int tid, int n_threads)
{
    const sn__bert_hparams_t *hp = &c->m->hp;
    const int H = hp->n_hidden, FF = hp->n_inter;
    job_t *j = &c->job;
    int r0 = (int)((long long)j->rows * tid / n_threads);
    int r1 = (int)((long long)j->rows * (tid + 1) / n_threads);
    int n = r1 - r0;

    if (j->gw) { /* the parts split W's panels: disjoint columns of C */
        sn__gemm_acc(c->gemm_level, j->gw, j->g_a, (size_t)j->gw->k, j->g_c,
                     (size_t)j->gw->n, j->rows, tid, n_threads);
        return;
    }
    if (n > 0) {
        if (j->ln)
            c->k->ln(j->ln + (size_t)r0 * H, j->ln_g, j->ln_b, n, H,
                     hp->ln_eps);
        if (j->add)
            c->k->add_rows(j->add + (size_t)r0 * H, j->add_b, n, H);
        if (j->gelu)
            c->k->gelu(j->gelu + (size_t)r0 * FF, n, FF,
                       hp->act == SN_ACT_GELU_TANH);
        for (int r = r0; j->fill && r < r1; r++)
            memcpy(j->fill + (size_t)r * j->fill_cols, j->fill_b,
                   (size_t)j->fill_cols * sizeof *j->fill);
    }
    if (j->n_items) {
        const int d = H / hp->n_heads, Lp = (c->cap_len + 15) & ~15;
        const int dp = (d + 15) & ~15;
        float *kt = c->att_scratch + c->att_per * (size_t)tid;
        float *vp = kt + (size_t)d * Lp, *s = vp + (size_t)Lp * dp;
        int it;

        while ((it = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED)) <
               j->n_items) {
            int q = it / hp->n_heads, h = it % hp->n_heads;
            int off = c->seq_off[q];
            c->k->attention(c->qkv + (size_t)off * 3 * H, 3 * H,
                            c->att + (size_t)off * H, H, d, h,
                            c->seq_len[q], kt, vp, s);
        }
    }
}

static void job_part(void *arg, int part, int n_parts)
{
    job_run(arg, part, n_parts);
}

/* Run c->job (set up by the caller) on every thread when `work` is worth
 * it, else on this thread alone; returns when it is done. */
static void job_go(sn__bert_ctx_t *c, double work)
{
    c->job.next = 0;
    if (c->n_threads < 2 || work < SN_BERT_PAR_MIN) {
        job_run(c, 0, 1);
        return;
    }
    sn__pool_run(c->pool, job_part, c);
}

sn__bert_ctx_t *sn__bert_ctx_new(const sn__bert_t *m)
{
    sn__bert_ctx_t *c = calloc(1, sizeof *c);
    long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
    int want = openblas_get_num_threads();

    if (!c)
        return NULL;
    c->m = m;
    c->k = kernels_pick();
    c->gemm_level = sn__gemm_level();
    if (want > n_cpu)
        want = (int)n_cpu;
    if (want > SN_BERT_MAX_THREADS)
        want = SN_BERT_MAX_THREADS;
    if (!(c->pool = sn__pool_new(want))) {
        free(c);
        return NULL;
    }
    c->n_threads = sn__pool_threads(c->pool);
    return c;
}

void sn__bert_ctx_free(sn__bert_ctx_t *c)
{
    if (!c)
        return;
    sn__pool_free(c->pool);
    free(c->arena);
    free(c->seq_off);
    free(c->seq_len);
    free(c);
}

static size_t round16(size_t n_floats) { return (n_floats + 15) & ~(size_t)15; }

/* Make room for n_tok rows and sequences of up to max_len tokens. */
static int ctx_reserve(sn__bert_ctx_t *c, int n_tok, int max_len)
{
    const sn__bert_hparams_t *hp = &c->m->hp;
    size_t H = (size_t)hp->n_hidden, F, rows, len, Lp, d, dp, per;
    size_t n_x, n_qkv, n_ffn;
    float *a;
    int *so, *sl;

    if (n_tok <= c->cap && max_len <= c->cap_len)
        return 0;
    /* grow geometrically, so a rising workload reallocates O(log) times */
    rows = (size_t)(n_tok > c->cap ? n_tok : c->cap);
    if (n_tok > c->cap && rows < (size_t)c->cap * 3 / 2)
        rows = (size_t)c->cap * 3 / 2;
    if (rows > SN_BERT_MAX_TOKENS)
        rows = SN_BERT_MAX_TOKENS;
    len = (size_t)(max_len > c->cap_len ? max_len : c->cap_len);
    F = (size_t)hp->n_inter;
    Lp = round16(len);
    d = H / (size_t)hp->n_heads;
    dp = round16(d);
    per = round16(d * Lp + Lp * dp + SN_BERT_ATT_ROWS * Lp);
    n_x = round16(rows * H);
    n_qkv = round16(rows * 3 * H);
    n_ffn = round16(rows * F);
    a = aligned_alloc(64, (2 * n_x + n_qkv + n_ffn +
                           per * (size_t)c->n_threads) *
                              sizeof *a);
    so = malloc(rows * sizeof *so);
    sl = malloc(rows * sizeof *sl);
    if (!a || !so || !sl) {
        free(a);
        free(so);
        free(sl);
        return -ENOMEM;
    }
    free(c->arena);
    free(c->seq_off);
    free(c->seq_len);
    c->arena = a;
    c->seq_off = so;
    c->seq_len = sl;
    c->x = a;
    c->att = a + n_x;
    c->qkv = c->att + n_x;
    c->ffn = c->qkv + n_qkv;
    c->att_scratch = c->ffn + n_ffn;
    c->att_per = per;
    c->cap = (int)rows;
    c->cap_len = (int)len;
    return 0;
}

/* ---- forward ------------------------------------------------------------ */

/* y[T, n_out] += x[T, n_in] W^T, W packed [n_out, n_in]; y holds the bias
 * (and the residual) already. Split over the helpers by W's panels. */
static void linear_acc(sn__bert_ctx_t *c, const float *x,
                       const sn__gemm_w_t *w, float *y, int T)
{
    job_t *j = &c->job;

    memset(j, 0, sizeof *j);
    j->rows = T;
    j->gw = w;
    j->g_a = x;
    j->g_c = y;
    job_go(c, 2.0 * T * w->n * w->k);
}

int sn__bert_forward(const sn__bert_t *m, sn__bert_ctx_t *c,
                     const int32_t *ids, const int *lens, int n_seq,
                     float *out, char *err, size_t err_len)
{
    const sn__bert_hparams_t *hp = &m->hp;
    const int H = hp->n_hidden, FF = hp->n_inter;
    const int max_len = hp->n_pos - hp->pos_offset;
    long long total = 0;
    double att_work = 0;
    int T, longest = 0, rc, s, t, l, off;
    job_t *j = &c->job;

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

    /* embeddings: (word + type[0]) + pos. XLM-R numbers positions as
     * transformers does: pad tokens get padding_idx, the others count on
     * from padding_idx + 1; so a position never exceeds pos_offset + j. */
    c->n_att_seq = 0;
    for (s = 0, off = 0; s < n_seq; off += lens[s++]) {
        int pos = hp->pos_offset;
        if (lens[s]) {
            c->seq_off[c->n_att_seq] = off;
            c->seq_len[c->n_att_seq++] = lens[s];
            att_work += (double)lens[s] * lens[s] * H;
        }
        for (int k = 0; k < lens[s]; k++) {
            const float *w = m->word + (size_t)ids[off + k] * H;
            int pid = hp->is_xlmr && ids[off + k] == hp->pad_id ? hp->pad_id
                                                                : pos++;
            const float *p = m->pos + (size_t)pid * H;
            float *x = c->x + (size_t)(off + k) * H;
            for (int i = 0; i < H; i++)
                x[i] = (w[i] + m->type[i]) + p[i];
        }
    }
    memset(j, 0, sizeof *j);
    j->rows = T;
    j->ln = c->x;
    j->ln_g = m->emb_ln_g;
    j->ln_b = m->emb_ln_b;
    j->fill = c->qkv;
    j->fill_b = m->layers[0].qkv_b;
    j->fill_cols = 3 * H;
    job_go(c, (double)T * 4 * H);

    for (l = 0; l < hp->n_layers; l++) {
        const struct sn__bert_layer *L = &m->layers[l];

        /* qkv = bias + x Wqkv^T; attention; x += attention-output bias */
        linear_acc(c, c->x, &L->qkv, c->qkv, T);
        memset(j, 0, sizeof *j);
        j->rows = T;
        j->add = c->x;
        j->add_b = L->o_b;
        j->n_items = c->n_att_seq * hp->n_heads;
        job_go(c, att_work);

        /* x = LN(x + att Wo^T); ffn = intermediate bias */
        linear_acc(c, c->att, &L->o, c->x, T);
        memset(j, 0, sizeof *j);
        j->rows = T;
        j->ln = c->x;
        j->ln_g = L->ln1_g;
        j->ln_b = L->ln1_b;
        j->fill = c->ffn;
        j->fill_b = L->i_b;
        j->fill_cols = FF;
        job_go(c, (double)T * (4 * H + FF));

        /* ffn = GELU(ffn + x Wi^T); x += output bias */
        linear_acc(c, c->x, &L->i, c->ffn, T);
        memset(j, 0, sizeof *j);
        j->rows = T;
        j->gelu = c->ffn;
        j->add = c->x;
        j->add_b = L->f_b;
        job_go(c, (double)T * 16 * FF);

        /* x = LN(x + ffn Wf^T); qkv = the next layer's bias */
        linear_acc(c, c->ffn, &L->f, c->x, T);
        memset(j, 0, sizeof *j);
        j->rows = T;
        j->ln = c->x;
        j->ln_g = L->ln2_g;
        j->ln_b = L->ln2_b;
        if (l + 1 < hp->n_layers) {
            j->fill = c->qkv;
            j->fill_b = m->layers[l + 1].qkv_b;
            j->fill_cols = 3 * H;
        }
        job_go(c, (double)T * 4 * H);
    }
    memcpy(out, c->x, (size_t)T * H * sizeof *out);
    return 0;
}

#else /* SN_BERT_PASS ------------------------------------------------------
 * The kernels, compiled once per target: the includer defines SN_W (float
 * lanes per vector), SN_NV (vectors per tile row in attention), SN_K(name)
 * (the pass's suffix) and SN_KATTR (its target attribute). The names below
 * are renamed per pass by the macros that follow. No helper takes or
 * returns a vector by value (GCC notes an ABI change for those, Clang
 * rejects some), hence macros, and helpers that work in place through a
 * pointer. Every row, whatever its length, goes through the same vector
 * code: tails run it on a zero-padded copy. */

#define vf SN_K(vf)
#define vi SN_K(vi)
#define vfu SN_K(vfu)
#define v_hsum SN_K(v_hsum)
#define v_hmax SN_K(v_hmax)
#define v_exp SN_K(v_exp)
#define v_erf SN_K(v_erf)
#define v_tanh SN_K(v_tanh)
#define v_gelu SN_K(v_gelu)
#define qk_tile SN_K(qk_tile)
#define pv_tile SN_K(pv_tile)
#define softmax_row SN_K(softmax_row)

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

/* Sum of the lanes in a fixed pairwise order. */
SN_INLINE float v_hsum(const vf *pv)
{
    float t[SN_W];
    int n;

    memcpy(t, pv, sizeof t);
    for (n = SN_W / 2; n >= 1; n /= 2)
        for (int i = 0; i < n; i++)
            t[i] += t[i + n];
    return t[0];
}

SN_INLINE float v_hmax(const vf *pv)
{
    float t[SN_W], m;

    memcpy(t, pv, sizeof t);
    m = t[0];
    for (int i = 1; i < SN_W; i++)
        m = t[i] > m ? t[i] : m;
    return m;
}

/* *px = exp(*px), Cephes' expf: x = n ln2 + r, |r| <= ln2/2, degree-6
 * polynomial; 0.98 ulp. Inputs are clamped to [-87.3, 88.3] (no inf, no
 * denormals). */
SN_INLINE void v_exp(vf *px)
{
    const vf magic = v_set1(12582912.0f); /* 1.5 * 2^23: round to int */
    vf x = *px, n, r, p;
    vi e, e1, e2;

    x = v_max(x, v_set1(-87.33654f));
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
    /* 2^n, n in [-126, 127] after the clamp; 2^127 is split in two */
    e = __builtin_convertvector(n, vi);
    e1 = e >> 1;
    e2 = e - e1;
    *px = p * (vf)((e1 + 127) << 23) * (vf)((e2 + 127) << 23);
}

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

SN_KATTR static void SN_K(k_gelu)(float *x, int rows, int cols,
                                  int tanh_approx)
{
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * cols;
        int c = 0;
        for (; c + SN_W <= cols; c += SN_W) {
            vf v = v_load(row + c);
            v_gelu(&v, tanh_approx);
            v_store(row + c, v);
        }
        if (c < cols) {
            float t[SN_W] = {0};
            int n = cols - c;
            vf v;
            memcpy(t, row + c, (size_t)n * sizeof *t);
            v = v_load(t);
            v_gelu(&v, tanh_approx);
            v_store(t, v);
            memcpy(row + c, t, (size_t)n * sizeof *t);
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

        for (c = 0; c + SN_W <= n; c += SN_W)
            v_store(v + c, (v_load(v + c) - v_set1(mean)) * v_set1(inv) *
                                   v_load(g + c) +
                               v_load(b + c));
        for (; c < n; c++)
            v[c] = (v[c] - mean) * inv * g[c] + b[c];
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
 * Query rows go SN_BERT_ATT_ROWS at a time, so S stays in L1/L2. */

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

/* In-place softmax of s[0..n), max-subtracted. */
SN_INLINE void softmax_row(float *s, int n)
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
        v_exp(&e);
        v_store(s + c, e);
        acc += e;
    }
    sum = v_hsum(&acc);
    if (c < n) {
        for (k = 0; k < SN_W; k++)
            t[k] = c + k < n ? s[c + k] - mx : -INFINITY;
        e = v_load(t);
        v_exp(&e);
        v_store(t, e);
        for (k = 0; c + k < n; k++) {
            s[c + k] = t[k];
            sum += t[k];
        }
    }
    inv = 1.0f / sum;
    for (c = 0; c + SN_W <= n; c += SN_W)
        v_store(s + c, v_load(s + c) * v_set1(inv));
    for (; c < n; c++)
        s[c] *= inv;
}

/* QK tiles over rows [0, rows) with NR rows at a time. */
#define SN_QK_ROWS(NR)                                                       \
    for (; i + (NR) <= rows; i += (NR)) {                                    \
        for (j = 0; j + SN_NV * SN_W <= Lp; j += SN_NV * SN_W)               \
            qk_tile(q + (size_t)i * ld, ld, kt + j, Lp,                      \
                    s + (size_t)i * Lp + j, Lp, d, scale, (NR), SN_NV);      \
        for (; j < Lp; j += SN_W)                                            \
            qk_tile(q + (size_t)i * ld, ld, kt + j, Lp,                      \
                    s + (size_t)i * Lp + j, Lp, d, scale, (NR), 1);          \
    }
/* PV tiles over rows [0, rows), NR rows and nv vectors at a time. */
#define SN_PV_ROWS(NR)                                                       \
    for (; i + (NR) <= rows; i += (NR)) {                                    \
        const float *p_ = s + (size_t)i * Lp;                                \
        float *o_ = o + (size_t)i * H + c;                                   \
        if (nv == SN_NV)                                                     \
            pv_tile(p_, Lp, vp + c, dp, o_, H, L, d - c, (NR), SN_NV);       \
        else                                                                 \
            pv_tile(p_, Lp, vp + c, dp, o_, H, L, d - c, (NR), 1);           \
    }

SN_KATTR static void SN_K(k_attention)(const float *qkv, int ld, float *out,
                                       int H, int d, int h, int L,
                                       float *kt, float *vp, float *s)
{
    const int Lp = (L + 15) & ~15, dp = (d + 15) & ~15;
    const float scale = 1.0f / sqrtf((float)d);
    const float *Q = qkv + (size_t)h * d, *K = Q + H, *V = Q + 2 * H;
    int i, j, c;

    for (j = 0; j < L; j++)
        for (c = 0; c < d; c++)
            kt[(size_t)c * Lp + j] = K[(size_t)j * ld + c];
    for (c = 0; c < d; c++)
        for (j = L; j < Lp; j++)
            kt[(size_t)c * Lp + j] = 0.0f;
    for (j = 0; j < L; j++) {
        memcpy(vp + (size_t)j * dp, V + (size_t)j * ld,
               (size_t)d * sizeof *vp);
        for (c = d; c < dp; c++)
            vp[(size_t)j * dp + c] = 0.0f;
    }

    for (int r0 = 0; r0 < L; r0 += SN_BERT_ATT_ROWS) {
        const int rows = L - r0 < SN_BERT_ATT_ROWS ? L - r0 : SN_BERT_ATT_ROWS;
        const float *q = Q + (size_t)r0 * ld;
        float *o = out + (size_t)r0 * H + (size_t)h * d;

        i = 0;
        SN_QK_ROWS(4)
        SN_QK_ROWS(1)
        for (i = 0; i < rows; i++)
            softmax_row(s + (size_t)i * Lp, L);
        /* columns of the head: SN_NV vectors at a time, then one */
        for (c = 0; c < dp;) {
            const int nv = (dp - c) / SN_W >= SN_NV ? SN_NV : 1;
            i = 0;
            SN_PV_ROWS(4)
            SN_PV_ROWS(1)
            c += nv * SN_W;
        }
    }
}

#undef SN_QK_ROWS
#undef SN_PV_ROWS
#undef vf
#undef vi
#undef vfu
#undef v_hsum
#undef v_hmax
#undef v_exp
#undef v_erf
#undef v_tanh
#undef v_gelu
#undef qk_tile
#undef pv_tile
#undef softmax_row

#endif /* SN_BERT_PASS */
