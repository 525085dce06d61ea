/*
 * t5.c -- the T5 encoder (sentence-t5, GTR): pre-norm layers with RMSNorm
 * (T5LayerNorm: no mean, no bias), no biases anywhere, attention without
 * the 1/sqrt(d) scale plus a relative position bias computed from the
 * first layer's table [buckets, heads] and shared by all layers
 * (bidirectional buckets, relative_attention_num_buckets and
 * relative_attention_max_distance), and a gated feed-forward
 * (feed_forward_proj "gated-gelu": wo(gelu_new(wi_0 x) * wi_1 x); or the
 * plain "relu" / "gelu" one: wo(act(wi x))). No position embeddings: a
 * sequence is as long as a call allows.
 *
 *   h = rms(x); x += Attention(h Wqkv) Wo; h = rms(x); x += FFN(h);
 *   out = rms_final(x)
 *
 * Q, K and V are fused into one packed [3 inner, D] product, wi_0 and
 * wi_1 into one [2 d_ff, D] product whose two halves the gated activation
 * combines in place.
 *
 * Tensors: shared.weight (or encoder.embed_tokens.weight),
 * encoder.block.N.layer.0.SelfAttention.{q,k,v,o}.weight,
 * encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight,
 * encoder.block.N.layer.0.layer_norm.weight,
 * encoder.block.N.layer.1.DenseReluDense.{wi_0,wi_1,wo | wi,wo}.weight,
 * encoder.block.N.layer.1.layer_norm.weight, encoder.final_layer_norm.
 * A full T5 checkpoint's decoder.* and lm_head.* are ignored.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

typedef struct {
    sn__gemm_w_t qkv, o, wi, wo;
    const float *ln1, *ln2;
} t5_layer_t;

typedef struct {
    int n_vocab, D, inner, d_kv, FF, n_heads, n_layers;
    int n_buckets, max_distance, gated;
    sn__act_t act;
    float eps;
    sn__binder_t b;
    const float *emb, *rel, *final_ln;
    t5_layer_t *layers;
} t5_t;

static void t5_free(void *impl)
{
    t5_t *m = impl;

    if (!m)
        return;
    for (int l = 0; m->layers && l < m->n_layers; l++) {
        sn__gemm_free(&m->layers[l].qkv);
        sn__gemm_free(&m->layers[l].o);
        sn__gemm_free(&m->layers[l].wi);
        sn__gemm_free(&m->layers[l].wo);
    }
    free(m->layers);
    sn__st_close(m->b.st);
    free(m);
}

static int bind_all(t5_t *m, char *err, size_t err_len)
{
    const int64_t D = m->D, I = m->inner, FF = m->FF;
    sn__binder_t *b = &m->b;
    static const char *const ignore[] = {"decoder.", "lm_head.",
                                         "encoder.embed_tokens.", NULL};
    int rc;

    if (sn__bind_has(b, "shared.weight"))
        rc = sn__bind(b, &m->emb, m->n_vocab, D, err, err_len,
                      "shared.weight");
    else
        rc = sn__bind(b, &m->emb, m->n_vocab, D, err, err_len,
                      "encoder.embed_tokens.weight");
    if (rc ||
        (rc = sn__bind(b, &m->rel, m->n_buckets, m->n_heads, err, err_len,
                       "encoder.block.0.layer.0.SelfAttention."
                       "relative_attention_bias.weight")) ||
        (rc = sn__bind(b, &m->final_ln, D, 0, err, err_len,
                       "encoder.final_layer_norm.weight")))
        return rc;
    if (!(m->layers = calloc((size_t)m->n_layers, sizeof *m->layers)))
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    for (int l = 0; l < m->n_layers; l++) {
        t5_layer_t *L = &m->layers[l];
        const float *qkv[3], *o, *wi[2], *wo;
        const int rows3[3] = {(int)I, (int)I, (int)I};
        const int rows2[2] = {(int)FF, (int)FF};
#define LB(dst, d0, d1, what)                                                \
    if ((rc = sn__bind(b, dst, d0, d1, err, err_len, "encoder.block.%d.%s",  \
                       l, what)))                                            \
        return rc;
        LB(&qkv[0], I, D, "layer.0.SelfAttention.q.weight");
        LB(&qkv[1], I, D, "layer.0.SelfAttention.k.weight");
        LB(&qkv[2], I, D, "layer.0.SelfAttention.v.weight");
        LB(&o, D, I, "layer.0.SelfAttention.o.weight");
        LB(&L->ln1, D, 0, "layer.0.layer_norm.weight");
        if (m->gated) {
            LB(&wi[0], FF, D, "layer.1.DenseReluDense.wi_0.weight");
            LB(&wi[1], FF, D, "layer.1.DenseReluDense.wi_1.weight");
        } else {
            LB(&wi[0], FF, D, "layer.1.DenseReluDense.wi.weight");
        }
        LB(&wo, D, FF, "layer.1.DenseReluDense.wo.weight");
        LB(&L->ln2, D, 0, "layer.1.layer_norm.weight");
#undef LB
        if ((rc = sn__bind_pack_stacked(b, &L->qkv, qkv, rows3, 3, (int)D,
                               "q/k/v", l, err, err_len)) ||
            (rc = sn__bind_pack(b, &L->o, o, (int)D, (int)I, "o", l, err,
                                err_len)) ||
            (rc = sn__bind_pack_stacked(b, &L->wi, wi, rows2, m->gated ? 2 : 1,
                               (int)D, "wi", l, err, err_len)) ||
            (rc = sn__bind_pack(b, &L->wo, wo, (int)D, (int)FF, "wo", l,
                                err, err_len)))
            return rc;
    }
    return sn__st_check_unused(b->st, ignore, err, err_len);
}

static int t5_load(const char *dir, json_t *cfg, const char *name,
                   sn__enc_t *e, char *err, size_t err_len)
{
    t5_t *m = calloc(1, sizeof *m);
    const char *ffp, *act_name = NULL;
    double eps;
    int rc, a;

    if (!m)
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    if ((rc = sn__cfg_int(cfg, "d_model", 0, 0, 1, SN_NN_MAX_DIM, &m->D,
                          name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "d_kv", 0, 0, 1, SN_NN_MAX_DIM, &m->d_kv,
                          name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "d_ff", 0, 0, 1, 4 * SN_NN_MAX_DIM, &m->FF,
                          name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "num_layers", 0, 0, 1, SN_NN_MAX_LAYERS,
                          &m->n_layers, name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "num_heads", 0, 0, 1, 4096, &m->n_heads,
                          name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "vocab_size", 0, 0, 1, SN_NN_MAX_VOCAB,
                          &m->n_vocab, name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "relative_attention_num_buckets", 1, 32, 2,
                          4096, &m->n_buckets, name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "relative_attention_max_distance", 1, 128, 2,
                          1 << 20, &m->max_distance, name, err, err_len)) ||
        (rc = sn__cfg_num(cfg, "layer_norm_epsilon", 1e-6, 0, 1, &eps, name,
                          err, err_len)) ||
        (rc = sn__cfg_str(cfg, "feed_forward_proj", "relu", &ffp, name, err,
                          err_len)))
        goto fail;
    /* transformers: "gated-ACT" or "ACT"; gated-gelu means gelu_new */
    m->gated = !strncmp(ffp, "gated-", 6);
    act_name = m->gated ? ffp + 6 : ffp;
    if (!strcmp(act_name, "gelu") && m->gated)
        act_name = "gelu_new";
    if ((a = sn__act_parse(act_name)) < 0) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': unsupported feed_forward_proj '%s'", name, ffp);
        goto fail;
    }
    m->act = (sn__act_t)a;
    m->eps = (float)eps;
    m->inner = m->n_heads * m->d_kv;
    if ((rc = sn__bind_open(&m->b, dir, e->prec, err, err_len)) ||
        (rc = bind_all(m, err, err_len)))
        goto fail;
    e->impl = m;
    e->kind = "t5";
    e->n_vocab = m->n_vocab;
    e->n_hidden = m->D;
    e->n_layers = m->n_layers;
    e->max_len = 0; /* relative positions: no table to run past */
    return 0;
fail:
    t5_free(m);
    return rc;
}

static int t5_forward(const void *impl, void *ctx, const int32_t *ids,
                      const int *lens, int n_seq, float *out,
                      float *sent_out, char *err, size_t err_len)
{
    const t5_t *m = impl;
    sn__nn_t *nn = ctx;
    const int D = m->D, I = m->inner, F2 = m->gated ? 2 * m->FF : m->FF;
    int T = 0, n_att = 0, s, off, rc;
    float *x, *h, *qkv, *att, *ff;
    int *seq;

    (void)sent_out;
    for (s = 0; s < n_seq; s++)
        T += lens[s];
    if (T == 0)
        return 0;
    const size_t nD = sn__nn_round16((size_t)T * D);
    x = sn__nn_scratch(nn, 2 * nD + sn__nn_round16((size_t)T * 3 * I) +
                               sn__nn_round16((size_t)T * I) +
                               sn__nn_round16((size_t)T * F2));
    seq = sn__nn_iscratch(nn, 2 * (size_t)n_seq);
    if (!x || !seq)
        return sn__err(err, err_len, -ENOMEM,
                       "t5: out of memory for %d tokens", T);
    h = x + nD;
    qkv = h + nD;
    att = qkv + sn__nn_round16((size_t)T * 3 * I);
    ff = att + sn__nn_round16((size_t)T * I);
    for (s = 0, off = 0; s < n_seq; off += lens[s++]) {
        if (lens[s]) {
            seq[n_att] = off;
            seq[n_seq + n_att++] = lens[s];
        }
        for (int k = 0; k < lens[s]; k++)
            memcpy(x + (size_t)(off + k) * D,
                   m->emb + (size_t)ids[off + k] * D, (size_t)D * sizeof *x);
    }
    for (int l = 0; l < m->n_layers; l++) {
        const t5_layer_t *L = &m->layers[l];
        sn__rowstep_t st = {.src = x, .rms = h, .rms_g = L->ln1, .ln_n = D,
                            .eps = m->eps, .fill = qkv, .fill_n = 3 * I};
        sn__nn_rows(nn, &st, T, (double)T * 8 * D);
        sn__nn_linear(nn, h, (size_t)D, &L->qkv, qkv, (size_t)3 * I, T);
        sn__nn_att_job_t aj = {
            .q = qkv, .k = qkv + I, .v = qkv + 2 * I,
            .ldq = (size_t)3 * I, .ldk = (size_t)3 * I, .ldv = (size_t)3 * I,
            .out = att, .ldo = (size_t)I,
            .n_heads = m->n_heads, .n_kv_heads = m->n_heads, .d = m->d_kv,
            .scale = 1.0f, /* T5 folds the scale into its weights */
            .rel = m->rel, .n_buckets = m->n_buckets,
            .max_distance = m->max_distance,
            .n_seq = n_att, .seq_off = seq, .seq_len = seq + n_seq};
        if ((rc = sn__nn_attention(nn, &aj)))
            return sn__err(err, err_len, rc, "t5: out of memory");
        sn__nn_linear(nn, att, (size_t)I, &L->o, x, (size_t)D, T);

        st = (sn__rowstep_t){.src = x, .rms = h, .rms_g = L->ln2, .ln_n = D,
                             .eps = m->eps, .fill = ff, .fill_n = F2};
        sn__nn_rows(nn, &st, T, (double)T * 8 * D);
        sn__nn_linear(nn, h, (size_t)D, &L->wi, ff, (size_t)F2, T);
        st = (sn__rowstep_t){.act = ff, .act_n = m->FF, .glu = m->gated,
                             .act_ld = (size_t)F2, .act_fn = m->act};
        sn__nn_rows(nn, &st, T, (double)T * 16 * m->FF);
        sn__nn_linear(nn, ff, (size_t)F2, &L->wo, x, (size_t)D, T);
    }
    sn__rowstep_t st = {.rms = x, .rms_g = m->final_ln, .ln_n = D,
                        .eps = m->eps};
    sn__nn_rows(nn, &st, T, (double)T * 4 * D);
    memcpy(out, x, (size_t)T * D * sizeof *out);
    return 0;
}

static const char *const model_types[] = {"t5", "mt5", NULL};

const sn__arch_t sn__arch_t5 = {
    .name = "t5",
    .model_types = model_types,
    .load = t5_load,
    .free = t5_free,
    .forward = t5_forward,
};
