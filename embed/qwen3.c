/*
 * qwen3.c -- the Qwen3 decoder as an embedder (Qwen3-Embedding): pre-norm
 * layers with RMSNorm, grouped-query attention (num_key_value_heads K/V
 * heads shared by num_attention_heads / num_key_value_heads query heads
 * each) under a causal mask, RMSNorm of each query and key head (q_norm,
 * k_norm) before RoPE (rope_theta, NeoX halves, positions from 0 in each
 * sequence), and a SwiGLU feed-forward; no biases (attention_bias true
 * binds them), a final RMSNorm.
 *
 *   h = rms(x); qkv = h Wqkv; q, k = rope(rms_head(q)), rope(rms_head(k));
 *   x += CausalAttention(q, k, v) Wo; h = rms(x);
 *   x += (silu(h Wgate) * h Wup) Wdown;  out = rms_final(x)
 *
 * A token's state sees only the tokens before it: sentence-transformers
 * pools the last one (pooling_mode_lasttoken, model.c). Sequences are
 * packed without padding, each from position 0: the reference pads on
 * the left and shifts positions, which RoPE's relative angles make the
 * same up to rounding.
 *
 * Q, K and V are fused into one packed [(nq + 2 nkv) d, H] product, gate
 * and up into one [2 I, H] product combined in place. Tensors:
 * embed_tokens.weight, layers.N.{input_layernorm, post_attention_layernorm}
 * .weight, layers.N.self_attn.{q,k,v,o}_proj.weight, layers.N.self_attn.
 * {q,k}_norm.weight, layers.N.mlp.{gate,up,down}_proj.weight, norm.weight;
 * a "model." prefix (Qwen3ForCausalLM) is accepted and lm_head ignored.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

typedef struct {
    sn__gemm_w_t qkv, o, gu, down;
    float *qkv_b; /* owned, or NULL */
    const float *ln1, *ln2, *q_norm, *k_norm;
} qwen_layer_t;

typedef struct {
    int n_vocab, H, n_heads, n_kv, d, I, n_layers, n_pos, bias;
    float eps;
    double theta;
    sn__binder_t b;
    const float *emb, *final_ln;
    float *rope; /* [n_pos][d] cos | sin */
    qwen_layer_t *layers;
} qwen_t;

static void qwen_free(void *impl)
{
    qwen_t *m = impl;

    if (!m)
        return;
    for (int l = 0; m->layers && l < m->n_layers; l++) {
        sn__gemm_free(&m->layers[l].qkv);
        sn__gemm_free(&m->layers[l].o);
        sn__gemm_free(&m->layers[l].gu);
        sn__gemm_free(&m->layers[l].down);
        free(m->layers[l].qkv_b);
    }
    free(m->layers);
    free(m->rope);
    sn__st_close(m->b.st);
    free(m);
}

static int bind_all(qwen_t *m, char *err, size_t err_len)
{
    const int64_t H = m->H, d = m->d, I = m->I;
    const int nq = m->n_heads * m->d, nk = m->n_kv * m->d;
    sn__binder_t *b = &m->b;
    static const char *const ignore[] = {"lm_head.", NULL};
    int rc;

    if (!sn__bind_has(b, "embed_tokens.weight"))
        snprintf(b->prefix, sizeof b->prefix, "model.");
    if ((rc = sn__bind(b, &m->emb, m->n_vocab, H, err, err_len,
                       "embed_tokens.weight")) ||
        (rc = sn__bind(b, &m->final_ln, H, 0, err, err_len, "norm.weight")))
        return rc;
    if (!(m->layers = calloc((size_t)m->n_layers, sizeof *m->layers)))
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    for (int l = 0; l < m->n_layers; l++) {
        qwen_layer_t *L = &m->layers[l];
        const float *qkv[3], *qkvb[3], *o, *gu[2], *down;
        const int rows3[3] = {nq, nk, nk}, rows2[2] = {(int)I, (int)I};
#define LB(dst, d0, d1, what)                                                \
    if ((rc = sn__bind(b, dst, d0, d1, err, err_len, "layers.%d.%s", l,      \
                       what)))                                               \
        return rc;
        LB(&L->ln1, H, 0, "input_layernorm.weight");
        LB(&qkv[0], nq, H, "self_attn.q_proj.weight");
        LB(&qkv[1], nk, H, "self_attn.k_proj.weight");
        LB(&qkv[2], nk, H, "self_attn.v_proj.weight");
        if (m->bias) {
            LB(&qkvb[0], nq, 0, "self_attn.q_proj.bias");
            LB(&qkvb[1], nk, 0, "self_attn.k_proj.bias");
            LB(&qkvb[2], nk, 0, "self_attn.v_proj.bias");
            if (!(L->qkv_b = malloc((size_t)(nq + 2 * nk) * sizeof(float))))
                return sn__err(err, err_len, -ENOMEM, "out of memory");
            memcpy(L->qkv_b, qkvb[0], (size_t)nq * sizeof(float));
            memcpy(L->qkv_b + nq, qkvb[1], (size_t)nk * sizeof(float));
            memcpy(L->qkv_b + nq + nk, qkvb[2], (size_t)nk * sizeof(float));
        }
        LB(&L->q_norm, d, 0, "self_attn.q_norm.weight");
        LB(&L->k_norm, d, 0, "self_attn.k_norm.weight");
        LB(&o, H, nq, "self_attn.o_proj.weight");
        LB(&L->ln2, H, 0, "post_attention_layernorm.weight");
        LB(&gu[0], I, H, "mlp.gate_proj.weight");
        LB(&gu[1], I, H, "mlp.up_proj.weight");
        LB(&down, H, I, "mlp.down_proj.weight");
#undef LB
        if ((rc = sn__bind_pack_stacked(b, &L->qkv, qkv, rows3, 3,
                                        (int)H,
                               "q/k/v_proj", l, err, err_len)) ||
            (rc = sn__bind_pack(b, &L->o, o, (int)H, nq, "o_proj", l, err,
                                err_len)) ||
            (rc = sn__bind_pack_stacked(b, &L->gu, gu, rows2, 2, (int)H,
                               "gate/up_proj", l, err, err_len)) ||
            (rc = sn__bind_pack(b, &L->down, down, (int)H, (int)I,
                                "down_proj", l, err, err_len)))
            return rc;
    }
    return sn__st_check_unused(b->st, ignore, err, err_len);
}

static int qwen_load(const char *dir, json_t *cfg, const char *name,
                     sn__enc_t *e, char *err, size_t err_len)
{
    qwen_t *m = calloc(1, sizeof *m);
    const char *act;
    double eps;
    json_t *v;
    int rc;

    if (!m)
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    if ((rc = sn__cfg_int(cfg, "hidden_size", 0, 0, 1, SN_NN_MAX_DIM, &m->H,
                          name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "num_hidden_layers", 0, 0, 1,
                          SN_NN_MAX_LAYERS, &m->n_layers, name, err,
                          err_len)) ||
        (rc = sn__cfg_int(cfg, "num_attention_heads", 0, 0, 1, 4096,
                          &m->n_heads, name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "num_key_value_heads", 1, m->n_heads, 1,
                          4096, &m->n_kv, name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "head_dim", 1, m->H / m->n_heads, 2, 4096,
                          &m->d, name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "intermediate_size", 0, 0, 1,
                          4 * SN_NN_MAX_DIM, &m->I, name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "max_position_embeddings", 0, 0, 1,
                          SN_NN_MAX_POS, &m->n_pos, name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "vocab_size", 0, 0, 1, SN_NN_MAX_VOCAB,
                          &m->n_vocab, name, err, err_len)) ||
        (rc = sn__cfg_num(cfg, "rms_norm_eps", 1e-6, 0, 1, &eps, name, err,
                          err_len)) ||
        (rc = sn__cfg_num(cfg, "rope_theta", 10000, 1, 1e12, &m->theta,
                          name, err, err_len)) ||
        (rc = sn__cfg_str(cfg, "hidden_act", "silu", &act, name, err,
                          err_len)))
        goto fail;
    if (sn__act_parse(act) != SN_ACT_SILU) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': unsupported hidden_act '%s' (qwen3: silu)", name,
                     act);
        goto fail;
    }
    if (m->n_heads % m->n_kv || m->d % 2) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': num_key_value_heads (%d) must divide "
                     "num_attention_heads (%d), head_dim (%d) be even",
                     name, m->n_kv, m->n_heads, m->d);
        goto fail;
    }
    if ((v = json_object_get(cfg, "rope_scaling")) && !json_is_null(v)) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': rope_scaling is unsupported", name);
        goto fail;
    }
    if (json_is_true(json_object_get(cfg, "use_sliding_window"))) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': use_sliding_window is unsupported", name);
        goto fail;
    }
    m->bias = json_is_true(json_object_get(cfg, "attention_bias"));
    m->eps = (float)eps;
    if (m->n_pos > SN_NN_MAX_TOKENS)
        m->n_pos = SN_NN_MAX_TOKENS; /* no call is longer */
    if (!(m->rope = sn__rope_table(m->n_pos, m->d, m->theta))) {
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = sn__bind_open(&m->b, dir, e->prec, err, err_len)) ||
        (rc = bind_all(m, err, err_len)))
        goto fail;
    e->impl = m;
    e->kind = "qwen3";
    e->n_vocab = m->n_vocab;
    e->n_hidden = m->H;
    e->n_layers = m->n_layers;
    e->max_len = m->n_pos;
    e->causal = 1;
    return 0;
fail:
    qwen_free(m);
    return rc;
}

/* Rows [r0, r1): RMSNorm each query and key head, then RoPE. */
typedef struct {
    const qwen_t *m;
    const qwen_layer_t *L;
    const sn__kernels_t *k;
    float *qkv;
    const int *pos;
} qk_step_t;

static void qk_rows(void *arg, int r0, int r1)
{
    const qk_step_t *st = arg;
    const qwen_t *m = st->m;
    const int d = m->d, nq = m->n_heads * d, ld = nq + 2 * m->n_kv * d;

    for (int r = r0; r < r1; r++) {
        float *q = st->qkv + (size_t)r * ld, *k = q + nq;
        st->k->rms(q, st->L->q_norm, m->n_heads, d, (size_t)d, m->eps);
        st->k->rms(k, st->L->k_norm, m->n_kv, d, (size_t)d, m->eps);
        sn__rope(q, (size_t)ld, m->n_heads, d, st->pos + r, 1, m->rope);
        sn__rope(k, (size_t)ld, m->n_kv, d, st->pos + r, 1, m->rope);
    }
}

static int qwen_forward(const void *impl, void *ctx, const int32_t *ids,
                        const int *lens, int n_seq, float *out,
                        float *sent_out, char *err, size_t err_len)
{
    const qwen_t *m = impl;
    sn__nn_t *nn = ctx;
    const int H = m->H, d = m->d, nq = m->n_heads * d;
    const int ld = nq + 2 * m->n_kv * d, I2 = 2 * m->I;
    int T = 0, n_att = 0, s, off, rc;
    float *x, *h, *qkv, *att, *gu;
    int *seq, *pos;

    (void)sent_out;
    for (s = 0; s < n_seq; s++)
        T += lens[s];
    if (T == 0)
        return 0;
    const size_t nH = sn__nn_round16((size_t)T * H);
    x = sn__nn_scratch(nn, 2 * nH + sn__nn_round16((size_t)T * ld) +
                               sn__nn_round16((size_t)T * nq) +
                               sn__nn_round16((size_t)T * I2));
    seq = sn__nn_iscratch(nn, 2 * (size_t)n_seq + (size_t)T);
    if (!x || !seq)
        return sn__err(err, err_len, -ENOMEM,
                       "qwen3: out of memory for %d tokens", T);
    pos = seq + 2 * n_seq;
    h = x + nH;
    qkv = h + nH;
    att = qkv + sn__nn_round16((size_t)T * ld);
    gu = att + sn__nn_round16((size_t)T * nq);
    for (s = 0, off = 0; s < n_seq; off += lens[s++]) {
        if (lens[s]) {
            seq[n_att] = off;
            seq[n_seq + n_att++] = lens[s];
        }
        for (int k = 0; k < lens[s]; k++) {
            pos[off + k] = k;
            memcpy(x + (size_t)(off + k) * H,
                   m->emb + (size_t)ids[off + k] * H, (size_t)H * sizeof *x);
        }
    }
    for (int l = 0; l < m->n_layers; l++) {
        const qwen_layer_t *L = &m->layers[l];
        sn__rowstep_t st = {.src = x, .rms = h, .rms_g = L->ln1, .ln_n = H,
                            .eps = m->eps, .fill = qkv, .fill_b = L->qkv_b,
                            .fill_n = ld};
        sn__nn_rows(nn, &st, T, (double)T * 8 * H);
        sn__nn_linear(nn, h, (size_t)H, &L->qkv, qkv, (size_t)ld, T);
        qk_step_t qs = {m, L, sn__nn_kernels(nn), qkv, pos};
        sn__nn_job_t job = {.rows = T, .row_fn = qk_rows, .row_arg = &qs,
                            .work = (double)T * 16 * ld};
        sn__nn_run(nn, &job);
        sn__nn_att_job_t aj = {
            .q = qkv, .k = qkv + nq, .v = qkv + nq + m->n_kv * d,
            .ldq = (size_t)ld, .ldk = (size_t)ld, .ldv = (size_t)ld,
            .out = att, .ldo = (size_t)nq,
            .n_heads = m->n_heads, .n_kv_heads = m->n_kv, .d = d,
            .scale = 1.0f / sqrtf((float)d), .causal = 1,
            .n_seq = n_att, .seq_off = seq, .seq_len = seq + n_seq};
        if ((rc = sn__nn_attention(nn, &aj)))
            return sn__err(err, err_len, rc, "qwen3: out of memory");
        sn__nn_linear(nn, att, (size_t)nq, &L->o, x, (size_t)H, T);

        st = (sn__rowstep_t){.src = x, .rms = h, .rms_g = L->ln2, .ln_n = H,
                             .eps = m->eps, .fill = gu, .fill_n = I2};
        sn__nn_rows(nn, &st, T, (double)T * 8 * H);
        sn__nn_linear(nn, h, (size_t)H, &L->gu, gu, (size_t)I2, T);
        st = (sn__rowstep_t){.act = gu, .act_n = m->I, .glu = 1,
                             .act_ld = (size_t)I2, .act_fn = SN_ACT_SILU};
        sn__nn_rows(nn, &st, T, (double)T * 16 * m->I);
        sn__nn_linear(nn, gu, (size_t)I2, &L->down, x, (size_t)H, T);
    }
    sn__rowstep_t st = {.rms = x, .rms_g = m->final_ln, .ln_n = H,
                        .eps = m->eps};
    sn__nn_rows(nn, &st, T, (double)T * 4 * H);
    memcpy(out, x, (size_t)T * H * sizeof *out);
    return 0;
}

static const char *const model_types[] = {"qwen3", NULL};

const sn__arch_t sn__arch_qwen3 = {
    .name = "qwen3",
    .model_types = model_types,
    .load = qwen_load,
    .free = qwen_free,
    .forward = qwen_forward,
};
