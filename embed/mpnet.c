/*
 * mpnet.c -- the MPNet encoder (all-mpnet-base-v2): BERT's post-norm
 * layers (embed/nn.c's block) with a relative position bias in every
 * layer's attention scores, from one table [buckets, heads] shared by all
 * layers (T5's bidirectional buckets, 32 by default, max distance 128),
 * and no token types. Position ids count from padding_idx + 1, pad tokens
 * at padding_idx, as transformers' MPNetEmbeddings.
 *
 * Tensors: embeddings.{word,position}_embeddings, embeddings.LayerNorm,
 * encoder.layer.N.attention.attn.{q,k,v,o}, encoder.layer.N.attention.
 * LayerNorm, encoder.layer.N.{intermediate,output}.dense,
 * encoder.layer.N.output.LayerNorm, encoder.relative_attention_bias;
 * the pooler is ignored.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

typedef struct {
    int n_vocab, n_pos, pad_id, n_buckets;
    sn__binder_t b;
    const float *word, *pos;
    sn__post_t post;
} mpnet_t;

static void mpnet_free(void *impl)
{
    mpnet_t *m = impl;

    if (!m)
        return;
    sn__post_free(&m->post);
    sn__st_close(m->b.st);
    free(m);
}

static int bind_all(mpnet_t *m, char *err, size_t err_len)
{
    sn__post_t *p = &m->post;
    const int64_t H = p->H, FF = p->FF;
    sn__binder_t *b = &m->b;
    static const char *const ignore[] = {"pooler.", "embeddings.position_ids",
                                         "lm_head.", NULL};
    int rc;

    if ((rc = sn__bind(b, &m->word, m->n_vocab, H, err, err_len,
                       "embeddings.word_embeddings.weight")) ||
        (rc = sn__bind(b, &m->pos, m->n_pos, H, err, err_len,
                       "embeddings.position_embeddings.weight")) ||
        (rc = sn__bind(b, &p->emb_ln_g, H, 0, err, err_len,
                       "embeddings.LayerNorm.weight")) ||
        (rc = sn__bind(b, &p->emb_ln_b, H, 0, err, err_len,
                       "embeddings.LayerNorm.bias")) ||
        (rc = sn__bind(b, &p->rel, m->n_buckets, p->n_heads, err, err_len,
                       "encoder.relative_attention_bias.weight")))
        return rc;
    if ((rc = sn__post_alloc(p, err, err_len)))
        return rc;
    for (int l = 0; l < p->n_layers; l++) {
        sn__post_layer_t *L = &p->layers[l];
        const float *q, *k, *v, *qb, *kb, *vb, *o_w, *i_w, *f_w;
#define LB(dst, d0, d1, what)                                                \
    if ((rc = sn__bind(b, dst, d0, d1, err, err_len, "encoder.layer.%d.%s",  \
                       l, what)))                                            \
        return rc;
        LB(&q, H, H, "attention.attn.q.weight");
        LB(&qb, H, 0, "attention.attn.q.bias");
        LB(&k, H, H, "attention.attn.k.weight");
        LB(&kb, H, 0, "attention.attn.k.bias");
        LB(&v, H, H, "attention.attn.v.weight");
        LB(&vb, H, 0, "attention.attn.v.bias");
        LB(&o_w, H, H, "attention.attn.o.weight");
        LB(&L->o_b, H, 0, "attention.attn.o.bias");
        LB(&L->ln1_g, H, 0, "attention.LayerNorm.weight");
        LB(&L->ln1_b, H, 0, "attention.LayerNorm.bias");
        LB(&i_w, FF, H, "intermediate.dense.weight");
        LB(&L->i_b, FF, 0, "intermediate.dense.bias");
        LB(&f_w, H, FF, "output.dense.weight");
        LB(&L->f_b, H, 0, "output.dense.bias");
        LB(&L->ln2_g, H, 0, "output.LayerNorm.weight");
        LB(&L->ln2_b, H, 0, "output.LayerNorm.bias");
#undef LB
        if ((rc = sn__post_fuse_qkv(b, p, l, q, k, v, qb, kb, vb, err,
                                    err_len)) ||
            (rc = sn__bind_pack(b, &L->o, o_w, (int)H, (int)H,
                                "attention output", l, err, err_len)) ||
            (rc = sn__bind_pack(b, &L->i, i_w, (int)FF, (int)H,
                                "intermediate", l, err, err_len)) ||
            (rc = sn__bind_pack(b, &L->f, f_w, (int)H, (int)FF, "output", l,
                                err, err_len)))
            return rc;
    }
    return sn__st_check_unused(b->st, ignore, err, err_len);
}

static int mpnet_load(const char *dir, json_t *cfg, const char *name,
                      sn__enc_t *e, char *err, size_t err_len)
{
    mpnet_t *m = calloc(1, sizeof *m);
    sn__post_t *p;
    const char *act;
    double eps;
    int rc, a;

    if (!m)
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    p = &m->post;
    if ((rc = sn__cfg_int(cfg, "hidden_size", 0, 0, 1, SN_NN_MAX_DIM, &p->H,
                          name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "num_hidden_layers", 0, 0, 1,
                          SN_NN_MAX_LAYERS, &p->n_layers, name, err,
                          err_len)) ||
        (rc = sn__cfg_int(cfg, "num_attention_heads", 0, 0, 1, SN_NN_MAX_DIM,
                          &p->n_heads, name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "intermediate_size", 0, 0, 1,
                          4 * SN_NN_MAX_DIM, &p->FF, name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "max_position_embeddings", 0, 0, 1,
                          SN_NN_MAX_POS, &m->n_pos, name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "vocab_size", 0, 0, 1, SN_NN_MAX_VOCAB,
                          &m->n_vocab, name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "pad_token_id", 1, 1, 0, SN_NN_MAX_VOCAB,
                          &m->pad_id, name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "relative_attention_num_buckets", 1, 32, 2,
                          4096, &m->n_buckets, name, err, err_len)) ||
        (rc = sn__cfg_str(cfg, "hidden_act", "gelu", &act, name, err,
                          err_len)) ||
        (rc = sn__cfg_num(cfg, "layer_norm_eps", 1e-5, 0, 1, &eps, name,
                          err, err_len)))
        goto fail;
    if ((a = sn__act_parse(act)) < 0) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': unsupported hidden_act '%s'", name, act);
        goto fail;
    }
    if (p->H % p->n_heads || m->pad_id + 1 >= m->n_pos) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': inconsistent hidden_size, num_attention_heads, "
                     "pad_token_id or max_position_embeddings",
                     name);
        goto fail;
    }
    p->act = (sn__act_t)a;
    p->eps = (float)eps;
    p->max_distance = 128; /* transformers' MPNet hard-codes it */
    p->n_buckets = m->n_buckets;
    if ((rc = sn__bind_open(&m->b, dir, e->prec, err, err_len)) ||
        (rc = bind_all(m, err, err_len)))
        goto fail;
    e->impl = m;
    e->kind = "mpnet";
    e->n_vocab = m->n_vocab;
    e->n_hidden = p->H;
    e->n_layers = p->n_layers;
    e->max_len = m->n_pos - m->pad_id - 1;
    return 0;
fail:
    mpnet_free(m);
    return rc;
}

static int mpnet_forward(const void *impl, void *ctx, const int32_t *ids,
                         const int *lens, int n_seq, float *out,
                         float *sent_out, char *err, size_t err_len)
{
    const mpnet_t *m = impl;
    sn__nn_t *nn = ctx;
    const int H = m->post.H;
    int T = 0, s, off, rc;
    float *x;

    (void)sent_out;
    for (s = 0; s < n_seq; s++)
        T += lens[s];
    if (T == 0)
        return 0;
    if (!(x = sn__post_reserve(nn, &m->post, T)))
        return sn__err(err, err_len, -ENOMEM,
                       "mpnet: out of memory for %d tokens", T);
    for (s = 0, off = 0; s < n_seq; off += lens[s++]) {
        int pos = m->pad_id + 1;
        for (int k = 0; k < lens[s]; k++) {
            const int32_t id = ids[off + k];
            const float *w = m->word + (size_t)id * H;
            const float *p =
                m->pos + (size_t)(id == m->pad_id ? m->pad_id : pos++) * H;
            float *xr = x + (size_t)(off + k) * H;
            for (int i = 0; i < H; i++)
                xr[i] = w[i] + p[i];
        }
    }
    if ((rc = sn__post_forward(nn, &m->post, T, lens, n_seq)))
        return sn__err(err, err_len, rc,
                       "mpnet: out of memory for %d tokens", T);
    memcpy(out, x, (size_t)T * H * sizeof *out);
    return 0;
}

static const char *const model_types[] = {"mpnet", NULL};

const sn__arch_t sn__arch_mpnet = {
    .name = "mpnet",
    .model_types = model_types,
    .load = mpnet_load,
    .free = mpnet_free,
    .forward = mpnet_forward,
};
