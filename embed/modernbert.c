/*
 * modernbert.c -- the ModernBERT encoder (gte-modernbert, nomic
 * modernbert-embed): pre-norm layers with LayerNorm (without bias where
 * norm_bias is false), no linear biases (attention_bias / mlp_bias false),
 * RoPE on queries and keys, attention alternating between global (every
 * global_attn_every_n_layers-th layer, from layer 0; rope
 * global_rope_theta) and a sliding window of local_attention tokens
 * (|i - j| <= local_attention / 2; rope local_rope_theta), and a GeGLU
 * feed-forward (Wi gives input | gate: Wo(act(input) * gate)). Layer 0
 * has no attention norm (the embeddings' norm comes right before it); a
 * final norm ends the encoder.
 *
 *   x = LN_emb(tok_embeddings[ids]);
 *   x += Attention(rope(LN_attn(x) Wqkv)) Wo;  x += GeGLU(LN_mlp(x) Wi) Wo;
 *   out = LN_final(x)
 *
 * Tensors: embeddings.tok_embeddings.weight, embeddings.norm.{weight,bias},
 * layers.N.attn_norm (N > 0), layers.N.attn.{Wqkv,Wo}, layers.N.mlp_norm,
 * layers.N.mlp.{Wi,Wo}, final_norm; a "model." prefix
 * (ModernBertForMaskedLM) is accepted, its head and decoder ignored.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

typedef struct {
    sn__gemm_w_t qkv, o, wi, wo;
    const float *qkv_b, *o_b, *wi_b, *wo_b; /* NULL without biases */
    const float *an_g, *an_b, *mn_g, *mn_b; /* an_g NULL: no attn norm */
    int global;
} mb_layer_t;

typedef struct {
    int n_vocab, H, n_heads, d, I, n_layers, n_pos, every, window;
    int norm_bias, att_bias, mlp_bias;
    sn__act_t act;
    float eps;
    double theta_g, theta_l;
    sn__binder_t b;
    const float *emb, *en_g, *en_b, *fn_g, *fn_b;
    float *rope_g, *rope_l;
    mb_layer_t *layers;
} mb_t;

static void mb_free(void *impl)
{
    mb_t *m = impl;

    if (!m)
        return;
    for (int l = 0; m->layers && l < m->n_layers; l++) {
        sn__gemm_free(&m->layers[l].qkv);
        sn__gemm_free(&m->layers[l].o);
        sn__gemm_free(&m->layers[l].wi);
        sn__gemm_free(&m->layers[l].wo);
    }
    free(m->layers);
    free(m->rope_g);
    free(m->rope_l);
    sn__st_close(m->b.st);
    free(m);
}

/* A norm's weight, and its bias when the model has them. */
static int bind_norm(mb_t *m, const float **g, const float **b,
                     const char *base, char *err, size_t err_len)
{
    int rc = sn__bind(&m->b, g, m->H, 0, err, err_len, "%s.weight", base);

    *b = NULL;
    if (!rc && m->norm_bias)
        rc = sn__bind(&m->b, b, m->H, 0, err, err_len, "%s.bias", base);
    return rc;
}

static int bind_all(mb_t *m, char *err, size_t err_len)
{
    const int64_t H = m->H, I = m->I;
    sn__binder_t *b = &m->b;
    static const char *const ignore[] = {"head.", "decoder.", "classifier.",
                                         NULL};
    char base[64];
    int rc;

    if (!sn__bind_has(b, "embeddings.tok_embeddings.weight"))
        snprintf(b->prefix, sizeof b->prefix, "model.");
    if ((rc = sn__bind(b, &m->emb, m->n_vocab, H, err, err_len,
                       "embeddings.tok_embeddings.weight")) ||
        (rc = bind_norm(m, &m->en_g, &m->en_b, "embeddings.norm", err,
                        err_len)) ||
        (rc = bind_norm(m, &m->fn_g, &m->fn_b, "final_norm", err, err_len)))
        return rc;
    if (!(m->layers = calloc((size_t)m->n_layers, sizeof *m->layers)))
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    for (int l = 0; l < m->n_layers; l++) {
        mb_layer_t *L = &m->layers[l];
        const float *qkv, *o, *wi, *wo;
#define LB(dst, d0, d1, what)                                                \
    if ((rc = sn__bind(b, dst, d0, d1, err, err_len, "layers.%d.%s", l,      \
                       what)))                                               \
        return rc;
        L->global = l % m->every == 0;
        if (l > 0) {
            snprintf(base, sizeof base, "layers.%d.attn_norm", l);
            if ((rc = bind_norm(m, &L->an_g, &L->an_b, base, err, err_len)))
                return rc;
        }
        LB(&qkv, 3 * H, H, "attn.Wqkv.weight");
        LB(&o, H, H, "attn.Wo.weight");
        if (m->att_bias) {
            LB(&L->qkv_b, 3 * H, 0, "attn.Wqkv.bias");
            LB(&L->o_b, H, 0, "attn.Wo.bias");
        }
        snprintf(base, sizeof base, "layers.%d.mlp_norm", l);
        if ((rc = bind_norm(m, &L->mn_g, &L->mn_b, base, err, err_len)))
            return rc;
        LB(&wi, 2 * I, H, "mlp.Wi.weight");
        LB(&wo, H, I, "mlp.Wo.weight");
        if (m->mlp_bias) {
            LB(&L->wi_b, 2 * I, 0, "mlp.Wi.bias");
            LB(&L->wo_b, H, 0, "mlp.Wo.bias");
        }
#undef LB
        if ((rc = sn__bind_pack(b, &L->qkv, qkv, (int)(3 * H), (int)H,
                                "attn.Wqkv", l, err, err_len)) ||
            (rc = sn__bind_pack(b, &L->o, o, (int)H, (int)H, "attn.Wo", l,
                                err, err_len)) ||
            (rc = sn__bind_pack(b, &L->wi, wi, (int)(2 * I), (int)H,
                                "mlp.Wi", l, err, err_len)) ||
            (rc = sn__bind_pack(b, &L->wo, wo, (int)H, (int)I, "mlp.Wo", l,
                                err, err_len)))
            return rc;
    }
    return sn__st_check_unused(b->st, ignore, err, err_len);
}

static int mb_load(const char *dir, json_t *cfg, const char *name,
                   sn__enc_t *e, char *err, size_t err_len)
{
    mb_t *m = calloc(1, sizeof *m);
    const char *act;
    double eps;
    int rc, a, local;

    if (!m)
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    if ((rc = sn__cfg_int(cfg, "hidden_size", 0, 0, 1, SN_NN_MAX_DIM, &m->H,
                          name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "num_hidden_layers", 0, 0, 1,
                          SN_NN_MAX_LAYERS, &m->n_layers, name, err,
                          err_len)) ||
        (rc = sn__cfg_int(cfg, "num_attention_heads", 0, 0, 1, 4096,
                          &m->n_heads, name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "intermediate_size", 0, 0, 1,
                          4 * SN_NN_MAX_DIM, &m->I, name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "max_position_embeddings", 1, 8192, 1,
                          SN_NN_MAX_POS, &m->n_pos, name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "vocab_size", 0, 0, 1, SN_NN_MAX_VOCAB,
                          &m->n_vocab, name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "global_attn_every_n_layers", 1, 1, 1,
                          SN_NN_MAX_LAYERS, &m->every, name, err,
                          err_len)) ||
        (rc = sn__cfg_int(cfg, "local_attention", 1, -1, -1, SN_NN_MAX_POS,
                          &local, name, err, err_len)) ||
        (rc = sn__cfg_num(cfg, "norm_eps", 1e-5, 0, 1, &eps, name, err,
                          err_len)) ||
        (rc = sn__cfg_num(cfg, "global_rope_theta", 160000, 1, 1e12,
                          &m->theta_g, name, err, err_len)) ||
        (rc = sn__cfg_num(cfg, "local_rope_theta", 10000, 1, 1e12,
                          &m->theta_l, name, err, err_len)) ||
        (rc = sn__cfg_str(cfg, "hidden_activation", "gelu", &act, name, err,
                          err_len)))
        goto fail;
    if ((a = sn__act_parse(act)) < 0) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': unsupported hidden_activation '%s'", name, act);
        goto fail;
    }
    if (m->H % m->n_heads || (m->H / m->n_heads) % 2) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': num_attention_heads (%d) must divide hidden_size "
                     "(%d) into heads of even size",
                     name, m->n_heads, m->H);
        goto fail;
    }
    m->act = (sn__act_t)a;
    m->eps = (float)eps;
    m->d = m->H / m->n_heads;
    m->window = local > 0 ? local / 2 : 0;
    /* transformers' defaults: norm_bias false, attention_bias false,
     * mlp_bias false */
    m->norm_bias = json_is_true(json_object_get(cfg, "norm_bias"));
    m->att_bias = json_is_true(json_object_get(cfg, "attention_bias"));
    m->mlp_bias = json_is_true(json_object_get(cfg, "mlp_bias"));
    if (m->n_pos > SN_NN_MAX_TOKENS)
        m->n_pos = SN_NN_MAX_TOKENS;
    if (!(m->rope_g = sn__rope_table(m->n_pos, m->d, m->theta_g)) ||
        !(m->rope_l = sn__rope_table(m->n_pos, m->d, m->theta_l))) {
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = sn__bind_open(&m->b, dir, e->prec, err, err_len)) ||
        (rc = bind_all(m, err, err_len)))
        goto fail;
    e->impl = m;
    e->kind = "modernbert";
    e->n_vocab = m->n_vocab;
    e->n_hidden = m->H;
    e->n_layers = m->n_layers;
    e->max_len = m->n_pos;
    return 0;
fail:
    mb_free(m);
    return rc;
}

typedef struct {
    const mb_t *m;
    float *qkv;
    const int *pos;
    const float *rope;
} rope_step_t;

static void rope_rows(void *arg, int r0, int r1)
{
    const rope_step_t *st = arg;
    const int H = st->m->H, d = st->m->d;

    /* q and k heads lie side by side: 2 n_heads heads of d */
    sn__rope(st->qkv + (size_t)r0 * 3 * H, (size_t)3 * H,
             2 * st->m->n_heads, d, st->pos + r0, r1 - r0, st->rope);
}

static int mb_forward(const void *impl, void *ctx, const int32_t *ids,
                      const int *lens, int n_seq, float *out,
                      float *sent_out, char *err, size_t err_len)
{
    const mb_t *m = impl;
    sn__nn_t *nn = ctx;
    const int H = m->H, I2 = 2 * m->I;
    int T = 0, n_att = 0, s, off, rc;
    float *x, *h, *qkv, *att, *gi;
    int *seq, *pos;

    (void)sent_out;
    for (s = 0; s < n_seq; s++)
        T += lens[s];
    if (T == 0)
        return 0;
    const size_t nH = sn__nn_round16((size_t)T * H);
    x = sn__nn_scratch(nn, 3 * nH + sn__nn_round16((size_t)T * 3 * H) +
                               sn__nn_round16((size_t)T * I2));
    seq = sn__nn_iscratch(nn, 2 * (size_t)n_seq + (size_t)T);
    if (!x || !seq)
        return sn__err(err, err_len, -ENOMEM,
                       "modernbert: out of memory for %d tokens", T);
    pos = seq + 2 * n_seq;
    h = x + nH;
    att = h + nH;
    qkv = att + nH;
    gi = qkv + sn__nn_round16((size_t)T * 3 * H);
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
    sn__rowstep_t st = {.ln = x, .ln_g = m->en_g, .ln_b = m->en_b, .ln_n = H,
                        .eps = m->eps};
    sn__nn_rows(nn, &st, T, (double)T * 4 * H);
    for (int l = 0; l < m->n_layers; l++) {
        const mb_layer_t *L = &m->layers[l];
        const float *in = x;

        if (L->an_g) {
            st = (sn__rowstep_t){.src = x, .ln = h, .ln_g = L->an_g,
                                 .ln_b = L->an_b, .ln_n = H, .eps = m->eps,
                                 .fill = qkv, .fill_b = L->qkv_b,
                                 .fill_n = 3 * H};
            in = h;
        } else {
            st = (sn__rowstep_t){.fill = qkv, .fill_b = L->qkv_b,
                                 .fill_n = 3 * H};
        }
        sn__nn_rows(nn, &st, T, (double)T * 8 * H);
        sn__nn_linear(nn, in, (size_t)H, &L->qkv, qkv, (size_t)3 * H, T);
        rope_step_t rs = {m, qkv, pos, L->global ? m->rope_g : m->rope_l};
        sn__nn_job_t job = {.rows = T, .row_fn = rope_rows, .row_arg = &rs,
                            .work = (double)T * 8 * H};
        sn__nn_run(nn, &job);
        sn__rowstep_t ob = {.k = sn__nn_kernels(nn), .add = x,
                            .add_b = L->o_b, .add_n = H};
        sn__nn_att_job_t aj = {
            .q = qkv, .k = qkv + H, .v = qkv + 2 * H,
            .ldq = (size_t)3 * H, .ldk = (size_t)3 * H, .ldv = (size_t)3 * H,
            .out = att, .ldo = (size_t)H,
            .n_heads = m->n_heads, .n_kv_heads = m->n_heads, .d = m->d,
            .scale = 1.0f / sqrtf((float)m->d),
            .window = L->global ? 0 : m->window,
            .n_seq = n_att, .seq_off = seq, .seq_len = seq + n_seq};
        if (L->o_b) {
            aj.rows = T;
            aj.row_fn = sn__rowstep;
            aj.row_arg = &ob;
        }
        if ((rc = sn__nn_attention(nn, &aj)))
            return sn__err(err, err_len, rc, "modernbert: out of memory");
        sn__nn_linear(nn, att, (size_t)H, &L->o, x, (size_t)H, T);

        st = (sn__rowstep_t){.src = x, .ln = h, .ln_g = L->mn_g,
                             .ln_b = L->mn_b, .ln_n = H, .eps = m->eps,
                             .fill = gi, .fill_b = L->wi_b, .fill_n = I2};
        sn__nn_rows(nn, &st, T, (double)T * 8 * H);
        sn__nn_linear(nn, h, (size_t)H, &L->wi, gi, (size_t)I2, T);
        st = (sn__rowstep_t){.act = gi, .act_n = m->I, .glu = 1,
                             .act_ld = (size_t)I2, .act_fn = m->act,
                             .add = L->wo_b ? x : NULL, .add_b = L->wo_b,
                             .add_n = H};
        sn__nn_rows(nn, &st, T, (double)T * 16 * m->I);
        sn__nn_linear(nn, gi, (size_t)I2, &L->wo, x, (size_t)H, T);
    }
    st = (sn__rowstep_t){.ln = x, .ln_g = m->fn_g, .ln_b = m->fn_b,
                         .ln_n = H, .eps = m->eps};
    sn__nn_rows(nn, &st, T, (double)T * 4 * H);
    memcpy(out, x, (size_t)T * H * sizeof *out);
    return 0;
}

static const char *const model_types[] = {"modernbert", NULL};

const sn__arch_t sn__arch_modernbert = {
    .name = "modernbert",
    .model_types = model_types,
    .load = mb_load,
    .free = mb_free,
    .forward = mb_forward,
};
