/*
 * distilbert.c -- the DistilBERT encoder (multi-qa-distilbert,
 * distiluse-base-multilingual): BERT's post-norm layers (embed/nn.c's
 * block) under other names, no token types, positions from 0, LayerNorm
 * eps 1e-12. transformers divides q by sqrt(d) before q k^T where we scale
 * the product: the same up to rounding.
 *
 * Tensors: embeddings.{word,position}_embeddings, embeddings.LayerNorm,
 * transformer.layer.N.attention.{q,k,v,out}_lin, .sa_layer_norm,
 * .ffn.lin1, .ffn.lin2, .output_layer_norm (an optional "distilbert."
 * prefix, as DistilBertFor* checkpoints carry; their heads are ignored).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

typedef struct {
    int n_vocab, n_pos;
    sn__binder_t b;
    const float *word, *pos;
    sn__post_t post;
} distil_t;

static void distil_free(void *impl)
{
    distil_t *m = impl;

    if (!m)
        return;
    sn__post_free(&m->post);
    sn__st_close(m->b.st);
    free(m);
}

static int bind_all(distil_t *m, char *err, size_t err_len)
{
    sn__post_t *p = &m->post;
    const int64_t H = p->H, FF = p->FF;
    sn__binder_t *b = &m->b;
    static const char *const ignore[] = {
        "embeddings.position_ids", "distilbert.embeddings.position_ids",
        "vocab_", "pre_classifier.", "classifier.", "qa_outputs.", NULL};
    int rc;

    if (!sn__bind_has(b, "embeddings.word_embeddings.weight"))
        snprintf(b->prefix, sizeof b->prefix, "distilbert.");
    if ((rc = sn__bind(b, &m->word, m->n_vocab, H, err, err_len,
                       "embeddings.word_embeddings.weight")) ||
        (rc = sn__bind(b, &m->pos, m->n_pos, H, err, err_len,
                       "embeddings.position_embeddings.weight")) ||
        (rc = sn__bind(b, &p->emb_ln_g, H, 0, err, err_len,
                       "embeddings.LayerNorm.weight")) ||
        (rc = sn__bind(b, &p->emb_ln_b, H, 0, err, err_len,
                       "embeddings.LayerNorm.bias")))
        return rc;
    if ((rc = sn__post_alloc(p, err, err_len)))
        return rc;
    for (int l = 0; l < p->n_layers; l++) {
        sn__post_layer_t *L = &p->layers[l];
        const float *q, *k, *v, *qb, *kb, *vb, *o_w, *i_w, *f_w;
#define LB(dst, d0, d1, what)                                                \
    if ((rc = sn__bind(b, dst, d0, d1, err, err_len,                         \
                       "transformer.layer.%d.%s", l, what)))                 \
        return rc;
        LB(&q, H, H, "attention.q_lin.weight");
        LB(&qb, H, 0, "attention.q_lin.bias");
        LB(&k, H, H, "attention.k_lin.weight");
        LB(&kb, H, 0, "attention.k_lin.bias");
        LB(&v, H, H, "attention.v_lin.weight");
        LB(&vb, H, 0, "attention.v_lin.bias");
        LB(&o_w, H, H, "attention.out_lin.weight");
        LB(&L->o_b, H, 0, "attention.out_lin.bias");
        LB(&L->ln1_g, H, 0, "sa_layer_norm.weight");
        LB(&L->ln1_b, H, 0, "sa_layer_norm.bias");
        LB(&i_w, FF, H, "ffn.lin1.weight");
        LB(&L->i_b, FF, 0, "ffn.lin1.bias");
        LB(&f_w, H, FF, "ffn.lin2.weight");
        LB(&L->f_b, H, 0, "ffn.lin2.bias");
        LB(&L->ln2_g, H, 0, "output_layer_norm.weight");
        LB(&L->ln2_b, H, 0, "output_layer_norm.bias");
#undef LB
        if ((rc = sn__post_fuse_qkv(b, p, l, q, k, v, qb, kb, vb, err,
                                    err_len)) ||
            (rc = sn__bind_pack(b, &L->o, o_w, (int)H, (int)H,
                                "attention output", l, err, err_len)) ||
            (rc = sn__bind_pack(b, &L->i, i_w, (int)FF, (int)H, "ffn.lin1",
                                l, err, err_len)) ||
            (rc = sn__bind_pack(b, &L->f, f_w, (int)H, (int)FF, "ffn.lin2",
                                l, err, err_len)))
            return rc;
    }
    return sn__st_check_unused(b->st, ignore, err, err_len);
}

static int distil_load(const char *dir, json_t *cfg, const char *name,
                       sn__enc_t *e, char *err, size_t err_len)
{
    distil_t *m = calloc(1, sizeof *m);
    sn__post_t *p;
    const char *act;
    int rc, a;

    if (!m)
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    p = &m->post;
    if ((rc = sn__cfg_int(cfg, "dim", 0, 0, 1, SN_NN_MAX_DIM, &p->H, name,
                          err, err_len)) ||
        (rc = sn__cfg_int(cfg, "n_layers", 0, 0, 1, SN_NN_MAX_LAYERS,
                          &p->n_layers, name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "n_heads", 0, 0, 1, SN_NN_MAX_DIM,
                          &p->n_heads, name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "hidden_dim", 0, 0, 1, 4 * SN_NN_MAX_DIM,
                          &p->FF, name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "max_position_embeddings", 0, 0, 1,
                          SN_NN_MAX_POS, &m->n_pos, name, err, err_len)) ||
        (rc = sn__cfg_int(cfg, "vocab_size", 0, 0, 1, SN_NN_MAX_VOCAB,
                          &m->n_vocab, name, err, err_len)) ||
        (rc = sn__cfg_str(cfg, "activation", "gelu", &act, name, err,
                          err_len)))
        goto fail;
    if ((a = sn__act_parse(act)) < 0) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': unsupported activation '%s'", name, act);
        goto fail;
    }
    if (p->H % p->n_heads) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': n_heads (%d) does not divide dim (%d)", name,
                     p->n_heads, p->H);
        goto fail;
    }
    p->act = (sn__act_t)a;
    p->eps = 1e-12f; /* transformers' DistilBERT hard-codes it */
    if ((rc = sn__bind_open(&m->b, dir, e->prec, err, err_len)) ||
        (rc = bind_all(m, err, err_len)))
        goto fail;
    e->impl = m;
    e->kind = "distilbert";
    e->n_vocab = m->n_vocab;
    e->n_hidden = p->H;
    e->n_layers = p->n_layers;
    e->max_len = m->n_pos;
    return 0;
fail:
    distil_free(m);
    return rc;
}

static int distil_forward(const void *impl, void *ctx, const int32_t *ids,
                          const int *lens, int n_seq, float *out,
                          float *sent_out, char *err, size_t err_len)
{
    const distil_t *m = impl;
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
                       "distilbert: out of memory for %d tokens", T);
    for (s = 0, off = 0; s < n_seq; off += lens[s++])
        for (int k = 0; k < lens[s]; k++) {
            const float *w = m->word + (size_t)ids[off + k] * H;
            const float *p = m->pos + (size_t)k * H;
            float *xr = x + (size_t)(off + k) * H;
            for (int i = 0; i < H; i++)
                xr[i] = w[i] + p[i];
        }
    if ((rc = sn__post_forward(nn, &m->post, T, lens, n_seq)))
        return sn__err(err, err_len, rc,
                       "distilbert: out of memory for %d tokens", T);
    memcpy(out, x, (size_t)T * H * sizeof *out);
    return 0;
}

static const char *const model_types[] = {"distilbert", NULL};

const sn__arch_t sn__arch_distilbert = {
    .name = "distilbert",
    .model_types = model_types,
    .load = distil_load,
    .free = distil_free,
    .forward = distil_forward,
};
