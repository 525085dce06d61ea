/*
 * bert.c -- the BERT / RoBERTa / XLM-RoBERTa / CamemBERT encoder:
 * config.json, weight binding from model.safetensors, and the forward
 * pass, composed from embed/nn.h's pieces (the post-norm block there is
 * shared with mpnet.c and distilbert.c).
 *
 * Model. Hyper-parameters (sn__bert_hparams_t) plus explicit per-layer
 * tensor pointers, each bound by name with its expected shape; a missing
 * tensor, a wrong shape or an unused tensor fails the load naming it.
 * Embeddings and LayerNorm weights are zero-copy views into the read-only
 * mmap of model.safetensors. The four dense weights of each layer are
 * packed at load for embed/gemm.c, Q, K and V fused into one [3H, H]
 * matrix (and [3H] bias) so that the projection is one product with
 * N = 3H; once packed, the pages of those tensors are dropped, so the
 * packed copy replaces them in memory rather than doubling them. The model
 * is immutable after load and may be shared by threads; each thread brings
 * its own context (an sn__nn_t runtime).
 *
 * Layout. Row-major fp32. Linear weights keep PyTorch's [out, in]:
 * y = x W^T + b. The n_seq sequences of a call lie back to back, T =
 * sum(lens) rows, with no padding: no FLOP is spent on padding. Position
 * ids count from 0 (BERT) or, as transformers numbers them for
 * RoBERTa-style models, from padding_idx + 1 with pad tokens at
 * padding_idx.
 *
 * Invariants. Every input is checked before any work (sn__enc_check): ids
 * in [0, vocab), each sequence at most max_position_embeddings -
 * pos_offset tokens, the call at most SN_NN_MAX_TOKENS tokens. Every step
 * gives bit-identical results whatever the batch and the thread split
 * (embed/nn.c, embed/kernels.c, embed/gemm.c), so a sequence alone and in
 * a batch give the same bits (tests/test_bert.c checks it at every kernel
 * level).
 *
 * Tuned for: small sentence encoders (MiniLM-L6: H 384, 6 layers, 12 heads,
 * I 1536) on a few cores, batches of 1 to 64 sequences of 16 to 256
 * tokens. ~95% of the FLOPs, and ~75% of the time (perf, batch 32 x 128),
 * are the four dense products per layer (see bench/bench_encode.c).
 * Outputs match transformers' to ~2e-6 on the fixtures.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "embed_int.h"
#include "nn.h"

/* ---- config.json -------------------------------------------------------- */

static int parse_config(json_t *root, const char *name,
                        sn__bert_hparams_t *hp, char *err, size_t err_len)
{
    json_t *v;
    const char *type, *act, *pet;
    int rc;

    memset(hp, 0, sizeof *hp);

    if ((rc = sn__cfg_str(root, "model_type", NULL, &type, name, err, err_len)))
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
    snprintf(hp->kind, sizeof hp->kind, "%s", type);

    if ((rc = sn__cfg_int(root, "hidden_size", 0, 0, 1, SN_NN_MAX_DIM,
                      &hp->n_hidden, name, err, err_len)) ||
        (rc = sn__cfg_int(root, "num_hidden_layers", 0, 0, 1, SN_NN_MAX_LAYERS,
                      &hp->n_layers, name, err, err_len)) ||
        (rc = sn__cfg_int(root, "num_attention_heads", 0, 0, 1, SN_NN_MAX_DIM,
                      &hp->n_heads, name, err, err_len)) ||
        (rc = sn__cfg_int(root, "intermediate_size", 0, 0, 1,
                      4 * SN_NN_MAX_DIM, &hp->n_inter, name, err,
                      err_len)) ||
        (rc = sn__cfg_int(root, "max_position_embeddings", 0, 0, 1,
                      SN_NN_MAX_POS, &hp->n_pos, name, err, err_len)) ||
        (rc = sn__cfg_int(root, "type_vocab_size", 1, 2, 1, SN_NN_MAX_POS,
                      &hp->n_types, name, err, err_len)) ||
        (rc = sn__cfg_int(root, "vocab_size", 0, 0, 1, SN_NN_MAX_VOCAB,
                      &hp->n_vocab, name, err, err_len)) ||
        (rc = sn__cfg_int(root, "pad_token_id", 1, hp->is_xlmr ? 1 : 0, 0,
                      SN_NN_MAX_VOCAB, &hp->pad_id, name, err, err_len)))
        goto fail;

    if (hp->n_hidden % hp->n_heads) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': num_attention_heads (%d) does not divide "
                     "hidden_size (%d)",
                     name, hp->n_heads, hp->n_hidden);
        goto fail;
    }

    if ((rc = sn__cfg_str(root, "hidden_act", NULL, &act, name, err, err_len)))
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

    if ((rc = sn__cfg_str(root, "position_embedding_type", "absolute", &pet, name,
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
    return 0;
fail:
    memset(hp, 0, sizeof *hp);
    return rc;
}

int sn__bert_parse_config(const char *buf, size_t len, const char *name,
                          sn__bert_hparams_t *hp, char *err, size_t err_len)
{
    json_error_t jerr;
    json_t *root;
    int rc;

    memset(hp, 0, sizeof *hp);
    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return sn__err(err, err_len, SN_EJSON,
                       "'%s': line %d column %d: %s", name, jerr.line,
                       jerr.column, jerr.text);
    if (!json_is_object(root))
        rc = sn__err(err, err_len, SN_EMODEL, "'%s': not a json object",
                     name);
    else
        rc = parse_config(root, name, hp, err, err_len);
    json_decref(root);
    return rc;
}

/* ---- weights ------------------------------------------------------------ */

struct sn__bert {
    sn__bert_hparams_t hp;
    sn__binder_t b;
    const float *word, *pos, *type; /* [vocab, H], [n_pos, H], [types, H] */
    sn__post_t post;
};

struct sn__bert_ctx {
    const sn__bert_t *m;
    sn__nn_t *nn;
};

/* A LayerNorm's weight and bias, or (older checkpoints) gamma and beta. */
static int bind_ln(sn__bert_t *m, const float **g, const float **b,
                   const char *base, char *err, size_t err_len)
{
    char name[SN_NN_NAME_MAX];
    const char *wn = "weight", *bn = "bias";
    int64_t H = m->hp.n_hidden;
    int rc;

    if (snprintf(name, sizeof name, "%s.weight", base) >= (int)sizeof name)
        return sn__err(err, err_len, SN_ETOOBIG, "'%s': tensor name too long",
                       m->b.st->path);
    if (!sn__bind_has(&m->b, name)) {
        snprintf(name, sizeof name, "%s.gamma", base);
        if (sn__bind_has(&m->b, name)) {
            wn = "gamma";
            bn = "beta";
        }
    }
    if ((rc = sn__bind(&m->b, g, H, 0, err, err_len, "%s.%s", base, wn)))
        return rc;
    return sn__bind(&m->b, b, H, 0, err, err_len, "%s.%s", base, bn);
}

/* Bind every tensor; pack the four dense weights of each layer. */
static int bind_all(sn__bert_t *m, const char *path, char *err,
                    size_t err_len)
{
    static const char *const prefixes[] = {"", "bert.", "roberta."};
    const sn__bert_hparams_t *hp = &m->hp;
    const int64_t H = hp->n_hidden, FF = hp->n_inter;
    sn__binder_t *b = &m->b;
    char ign[5][96];
    const char *ignore[8];
    size_t p;
    int rc, l;

    for (p = 0; p < sizeof prefixes / sizeof *prefixes; p++) {
        snprintf(b->prefix, sizeof b->prefix, "%s", prefixes[p]);
        if (sn__bind_has(b, "embeddings.word_embeddings.weight"))
            break;
    }
    if (p == sizeof prefixes / sizeof *prefixes)
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s': no tensor 'embeddings.word_embeddings.weight' "
                       "(nor with a 'bert.' or 'roberta.' prefix)",
                       path);

    if ((rc = sn__bind(b, &m->word, hp->n_vocab, H, err, err_len,
                       "embeddings.word_embeddings.weight")) ||
        (rc = sn__bind(b, &m->pos, hp->n_pos, H, err, err_len,
                       "embeddings.position_embeddings.weight")) ||
        (rc = sn__bind(b, &m->type, hp->n_types, H, err, err_len,
                       "embeddings.token_type_embeddings.weight")) ||
        (rc = bind_ln(m, &m->post.emb_ln_g, &m->post.emb_ln_b,
                      "embeddings.LayerNorm", err, err_len)))
        return rc;

    m->post.H = (int)H;
    m->post.FF = (int)FF;
    m->post.n_heads = hp->n_heads;
    m->post.n_layers = hp->n_layers;
    m->post.eps = hp->ln_eps;
    m->post.act = hp->act;
    if ((rc = sn__post_alloc(&m->post, err, err_len)))
        return rc;

    for (l = 0; l < hp->n_layers; l++) {
        sn__post_layer_t *L = &m->post.layers[l];
        const float *q, *k, *v, *qb, *kb, *vb, *o_w, *i_w, *f_w;
        char base[64];

#define LB(dst, d0, d1, what)                                                \
    if ((rc = sn__bind(b, dst, d0, d1, err, err_len, "encoder.layer.%d.%s",  \
                       l, what)))                                            \
        return rc;
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
            return rc;
        snprintf(base, sizeof base, "encoder.layer.%d.output.LayerNorm", l);
        if ((rc = bind_ln(m, &L->ln2_g, &L->ln2_b, base, err, err_len)))
            return rc;
        if ((rc = sn__post_fuse_qkv(b, &m->post, l, q, k, v, qb, kb, vb, err,
                                    err_len)) ||
            (rc = sn__bind_pack(b, &L->o, o_w, (int)H, (int)H,
                                "attention output", l, err, err_len)) ||
            (rc = sn__bind_pack(b, &L->i, i_w, (int)FF, (int)H,
                                "intermediate", l, err, err_len)) ||
            (rc = sn__bind_pack(b, &L->f, f_w, (int)H, (int)FF, "output", l,
                                err, err_len)))
            return rc;
    }

    /* What a checkpoint may carry besides the encoder: the pooler, the
     * position_ids / token_type_ids buffers, and the pre-training heads of
     * BertForMaskedLM / BertForPreTraining (cls.) and RobertaForMaskedLM
     * (lm_head.). Anything else is an error naming the tensor. */
    snprintf(ign[0], sizeof ign[0], "%spooler.", b->prefix);
    snprintf(ign[1], sizeof ign[1], "%sembeddings.position_ids", b->prefix);
    snprintf(ign[2], sizeof ign[2], "%sembeddings.token_type_ids",
             b->prefix);
    ignore[0] = ign[0];
    ignore[1] = ign[1];
    ignore[2] = ign[2];
    ignore[3] = "cls.";
    ignore[4] = "lm_head.";
    ignore[5] = NULL;
    return sn__st_check_unused(b->st, ignore, err, err_len);
}

static int load(const char *dir, json_t *cfg, const char *cfg_path,
                int prec, sn__bert_t **out, char *err, size_t err_len)
{
    sn__bert_t *m = NULL;
    int rc;

    *out = NULL;
    m = calloc(1, sizeof *m);
    if (!m)
        return sn__err(err, err_len, -ENOMEM, "'%s': out of memory", dir);
    if ((rc = parse_config(cfg, cfg_path, &m->hp, err, err_len)))
        goto fail;
    if ((rc = sn__bind_open(&m->b, dir, prec, err, err_len)))
        goto fail;
    if ((rc = bind_all(m, m->b.st->path, err, err_len)))
        goto fail;
    *out = m;
    return 0;
fail:
    sn__bert_free(m);
    return rc;
}

int sn__bert_load(const char *dir, sn__bert_t **out, char *err,
                  size_t err_len)
{
    return sn__bert_load_prec(dir, SN_GEMM_F32, out, err, err_len);
}

int sn__bert_load_prec(const char *dir, int prec, sn__bert_t **out,
                       char *err, size_t err_len)
{
    char path[4096];
    char *json = NULL;
    size_t len;
    json_error_t jerr;
    json_t *cfg;
    int rc;

    *out = NULL;
    if (sn__path_join(path, sizeof path, dir, "config.json"))
        return sn__err(err, err_len, SN_ETOOBIG, "'%s': path too long", dir);
    if ((rc = sn__read_file(path, SN_NN_MAX_CONFIG, &json, &len, err,
                            err_len)))
        return rc;
    cfg = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    free(json);
    if (!cfg)
        return sn__err(err, err_len, SN_EJSON, "'%s': line %d column %d: %s",
                       path, jerr.line, jerr.column, jerr.text);
    if (!json_is_object(cfg))
        rc = sn__err(err, err_len, SN_EMODEL, "'%s': not a json object",
                     path);
    else
        rc = load(dir, cfg, path, prec, out, err, err_len);
    json_decref(cfg);
    return rc;
}

void sn__bert_free(sn__bert_t *m)
{
    if (!m)
        return;
    sn__post_free(&m->post);
    sn__st_close(m->b.st);
    free(m);
}

const sn__bert_hparams_t *sn__bert_hparams(const sn__bert_t *m)
{
    return &m->hp;
}

sn__bert_ctx_t *sn__bert_ctx_new(const sn__bert_t *m)
{
    sn__bert_ctx_t *c = calloc(1, sizeof *c);

    if (!c)
        return NULL;
    c->m = m;
    if (!(c->nn = sn__nn_new())) {
        free(c);
        return NULL;
    }
    return c;
}

void sn__bert_ctx_free(sn__bert_ctx_t *c)
{
    if (!c)
        return;
    sn__nn_free(c->nn);
    free(c);
}

/* ---- forward ------------------------------------------------------------ */

/* The forward pass proper; inputs already checked. */
static int forward(const sn__bert_t *m, sn__nn_t *nn, const int32_t *ids,
                   const int *lens, int n_seq, float *out, char *err,
                   size_t err_len)
{
    const sn__bert_hparams_t *hp = &m->hp;
    const int H = hp->n_hidden;
    int T = 0, s, off, rc;
    float *x;

    for (s = 0; s < n_seq; s++)
        T += lens[s];
    if (T == 0)
        return 0;
    if (!(x = sn__post_reserve(nn, &m->post, T)))
        return sn__err(err, err_len, -ENOMEM,
                       "bert: out of memory for %d tokens", T);

    /* embeddings: (word + type[0]) + pos. XLM-R numbers positions as
     * transformers does: pad tokens get padding_idx, the others count on
     * from padding_idx + 1; so a position never exceeds pos_offset + j. */
    for (s = 0, off = 0; s < n_seq; off += lens[s++]) {
        int pos = hp->pos_offset;
        for (int k = 0; k < lens[s]; k++) {
            const float *w = m->word + (size_t)ids[off + k] * H;
            int pid = hp->is_xlmr && ids[off + k] == hp->pad_id ? hp->pad_id
                                                                : pos++;
            const float *p = m->pos + (size_t)pid * H;
            float *xr = x + (size_t)(off + k) * H;
            for (int i = 0; i < H; i++)
                xr[i] = (w[i] + m->type[i]) + p[i];
        }
    }
    if ((rc = sn__post_forward(nn, &m->post, T, lens, n_seq)))
        return sn__err(err, err_len, rc,
                       "bert: out of memory for %d tokens", T);
    memcpy(out, x, (size_t)T * H * sizeof *out);
    return 0;
}

int sn__bert_forward(const sn__bert_t *m, sn__bert_ctx_t *c,
                     const int32_t *ids, const int *lens, int n_seq,
                     float *out, char *err, size_t err_len)
{
    const sn__bert_hparams_t *hp = &m->hp;
    int rc;

    if (n_seq < 0 || (n_seq > 0 && (!ids || !lens || !out)) || c->m != m)
        return sn__err(err, err_len, SN_EARG, "bert: invalid arguments");
    if ((rc = sn__enc_check("bert", hp->n_vocab, hp->n_pos - hp->pos_offset,
                            ids, lens, n_seq, err, err_len)))
        return rc;
    return forward(m, c->nn, ids, lens, n_seq, out, err, err_len);
}

/* ---- the architecture --------------------------------------------------- */

static int arch_load(const char *dir, json_t *cfg, const char *cfg_path,
                     sn__enc_t *e, char *err, size_t err_len)
{
    sn__bert_t *m;
    int rc = load(dir, cfg, cfg_path, e->prec, &m, err, err_len);

    if (rc)
        return rc;
    e->impl = m;
    e->kind = m->hp.kind;
    e->n_vocab = m->hp.n_vocab;
    e->n_hidden = m->hp.n_hidden;
    e->n_layers = m->hp.n_layers;
    e->max_len = m->hp.n_pos - m->hp.pos_offset;
    return 0;
}

static void arch_free(void *impl) { sn__bert_free(impl); }

static int arch_forward(const void *impl, void *ctx, const int32_t *ids,
                        const int *lens, int n_seq, float *tokens_out,
                        float *sent_out, char *err, size_t err_len)
{
    (void)sent_out;
    return forward(impl, ctx, ids, lens, n_seq, tokens_out, err, err_len);
}

static const char *const model_types[] = {"bert", "roberta", "xlm-roberta",
                                          "camembert", NULL};

const sn__arch_t sn__arch_bert = {
    .name = "bert",
    .model_types = model_types,
    .load = arch_load,
    .free = arch_free,
    .forward = arch_forward,
};
