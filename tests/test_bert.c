/*
 * test_bert.c -- the BERT / XLM-R encoder (embed/bert.c):
 *   (a) the forward pass against a naive double-precision reference
 *       written here, on small random models written as config.json +
 *       model.safetensors into a mkdtemp directory and loaded from there:
 *       BERT and XLM-R position offsets, gelu and gelu_new, a "bert."
 *       prefix with gamma/beta LayerNorm names, sizes that are not
 *       multiples of 16, a sequence longer than one attention block;
 *   (b) batch independence: each sequence alone vs all packed together,
 *       bit for bit (every kernel level);
 *   (c) config errors (pure parser) and weight errors (files), each with
 *       the message it must carry; forward-pass input errors;
 *   (d) the three fixture checkpoints against transformers' last hidden
 *       state in expected.jsonl, every sentence encoded alone.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "check.h"
#include "embed_int.h"

#define MAX_TENSORS 256
#define MAX_LAYERS 4

static char errbuf[1024];

/* ---- deterministic random numbers --------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static double urand(void) /* [0, 1) */
{
    return check_urand(&rng);
}

static float nrand(float sd)
{
    double u = urand() + 1e-12, v = urand();
    return (float)(sd * sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* ---- a random model, its files ------------------------------------------ */

typedef struct {
    char name[128];
    int n_dims;
    int64_t shape[2];
    float *data;
} tensor_t;

typedef struct {
    const float *wq, *bq, *wk, *bk, *wv, *bv, *wo, *bo, *ln1g, *ln1b;
    const float *wi, *bi, *wf, *bf, *ln2g, *ln2b;
} ref_layer_t;

typedef struct {
    /* hyper-parameters */
    const char *model_type, *act, *prefix;
    int H, n_layers, heads, I, vocab, n_pos, n_types, pad, gamma_beta;
    double eps;
    /* tensors in file order, and the reference's view of them */
    tensor_t t[MAX_TENSORS];
    int n_t;
    const float *word, *pos, *type, *elng, *elnb;
    ref_layer_t layer[MAX_LAYERS];
} tmodel_t;

static const float *add(tmodel_t *m, int64_t d0, int64_t d1, float sd,
                        float mean, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static const float *add(tmodel_t *m, int64_t d0, int64_t d1, float sd,
                        float mean, const char *fmt, ...)
{
    tensor_t *t = &m->t[m->n_t++];
    int64_t n = d0 * (d1 ? d1 : 1);
    size_t pl = strlen(m->prefix);
    va_list ap;

    CHECK(m->n_t <= MAX_TENSORS);
    memcpy(t->name, m->prefix, pl);
    va_start(ap, fmt);
    vsnprintf(t->name + pl, sizeof t->name - pl, fmt, ap);
    va_end(ap);
    t->n_dims = d1 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->data = malloc((size_t)n * sizeof *t->data);
    CHECK(t->data);
    for (int64_t i = 0; i < n; i++)
        t->data[i] = mean + nrand(sd);
    return t->data;
}

static void ln_params(tmodel_t *m, const float **g, const float **b,
                      const char *base)
{
    *g = add(m, m->H, 0, 0.1f, 1.0f, "%s.%s", base,
             m->gamma_beta ? "gamma" : "weight");
    *b = add(m, m->H, 0, 0.1f, 0.0f, "%s.%s", base,
             m->gamma_beta ? "beta" : "bias");
}

/* Fill m's tensors (hyper-parameters already set), N(0, 0.1) like the
 * fixtures, LayerNorm gains 1 + N(0, 0.1). */
static void build(tmodel_t *m)
{
    const int H = m->H, I = m->I;
    char base[96];

    m->n_t = 0;
    m->word = add(m, m->vocab, H, 0.1f, 0, "embeddings.word_embeddings.weight");
    m->pos = add(m, m->n_pos, H, 0.1f, 0,
                 "embeddings.position_embeddings.weight");
    m->type = add(m, m->n_types, H, 0.1f, 0,
                  "embeddings.token_type_embeddings.weight");
    ln_params(m, &m->elng, &m->elnb, "embeddings.LayerNorm");
    for (int l = 0; l < m->n_layers; l++) {
        ref_layer_t *L = &m->layer[l];
        const char *p = "encoder.layer";
        L->wq = add(m, H, H, 0.1f, 0, "%s.%d.attention.self.query.weight",
                    p, l);
        L->bq = add(m, H, 0, 0.1f, 0, "%s.%d.attention.self.query.bias", p, l);
        L->wk = add(m, H, H, 0.1f, 0, "%s.%d.attention.self.key.weight", p, l);
        L->bk = add(m, H, 0, 0.1f, 0, "%s.%d.attention.self.key.bias", p, l);
        L->wv = add(m, H, H, 0.1f, 0, "%s.%d.attention.self.value.weight",
                    p, l);
        L->bv = add(m, H, 0, 0.1f, 0, "%s.%d.attention.self.value.bias", p, l);
        L->wo = add(m, H, H, 0.1f, 0, "%s.%d.attention.output.dense.weight",
                    p, l);
        L->bo = add(m, H, 0, 0.1f, 0, "%s.%d.attention.output.dense.bias",
                    p, l);
        snprintf(base, sizeof base, "%s.%d.attention.output.LayerNorm", p, l);
        ln_params(m, &L->ln1g, &L->ln1b, base);
        L->wi = add(m, I, H, 0.1f, 0, "%s.%d.intermediate.dense.weight", p, l);
        L->bi = add(m, I, 0, 0.1f, 0, "%s.%d.intermediate.dense.bias", p, l);
        L->wf = add(m, H, I, 0.1f, 0, "%s.%d.output.dense.weight", p, l);
        L->bf = add(m, H, 0, 0.1f, 0, "%s.%d.output.dense.bias", p, l);
        snprintf(base, sizeof base, "%s.%d.output.LayerNorm", p, l);
        ln_params(m, &L->ln2g, &L->ln2b, base);
    }
    /* what a checkpoint carries beside the encoder: ignored by the loader */
    add(m, H, H, 0.1f, 0, "pooler.dense.weight");
    add(m, H, 0, 0.1f, 0, "pooler.dense.bias");
}

static void free_model(tmodel_t *m)
{
    for (int i = 0; i < m->n_t; i++)
        free(m->t[i].data);
    m->n_t = 0;
}

static void write_file(const char *dir, const char *name, const void *buf,
                       size_t len)
{
    char path[512];
    FILE *fp;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    fp = fopen(path, "wb");
    CHECK(fp);
    CHECK(fwrite(buf, 1, len, fp) == len);
    CHECK(fclose(fp) == 0);
}

static void write_config(const tmodel_t *m, const char *dir)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf,
                     "{\"model_type\": \"%s\", \"hidden_size\": %d, "
                     "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
                     "\"intermediate_size\": %d, \"hidden_act\": \"%s\", "
                     "\"layer_norm_eps\": %g, \"max_position_embeddings\": %d, "
                     "\"type_vocab_size\": %d, \"vocab_size\": %d, "
                     "\"pad_token_id\": %d}\n",
                     m->model_type, m->H, m->n_layers, m->heads, m->I, m->act,
                     m->eps, m->n_pos, m->n_types, m->vocab, m->pad);
    CHECK(n > 0 && (size_t)n < sizeof buf);
    write_file(dir, "config.json", buf, (size_t)n);
}

/* model.safetensors from tensors t[0..n) (all F32). */
static void write_st(const tensor_t *t, int n, const char *dir)
{
    size_t hcap = 256 + (size_t)n * 256, hl = 0, data = 0, total;
    char *hdr = malloc(hcap);
    uint8_t *buf;
    uint64_t hlen;

    CHECK(hdr);
    hl += (size_t)snprintf(hdr + hl, hcap - hl,
                           "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        size_t bytes = (size_t)t[i].shape[0] *
                       (size_t)(t[i].n_dims == 2 ? t[i].shape[1] : 1) * 4;
        if (t[i].n_dims == 2)
            hl += (size_t)snprintf(hdr + hl, hcap - hl,
                                   ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld,"
                                   "%lld],\"data_offsets\":[%zu,%zu]}",
                                   t[i].name, (long long)t[i].shape[0],
                                   (long long)t[i].shape[1], data,
                                   data + bytes);
        else
            hl += (size_t)snprintf(hdr + hl, hcap - hl,
                                   ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld]"
                                   ",\"data_offsets\":[%zu,%zu]}",
                                   t[i].name, (long long)t[i].shape[0], data,
                                   data + bytes);
        CHECK(hl < hcap);
        data += bytes;
    }
    hl += (size_t)snprintf(hdr + hl, hcap - hl, "}");
    while (hl % 8) /* keep the data 8-byte aligned, as safetensors does */
        hdr[hl++] = ' ';
    CHECK(hl < hcap);
    total = 8 + hl + data;
    buf = malloc(total);
    CHECK(buf);
    hlen = hl;
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(hlen >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    data = 8 + hl;
    for (int i = 0; i < n; i++) {
        size_t bytes = (size_t)t[i].shape[0] *
                       (size_t)(t[i].n_dims == 2 ? t[i].shape[1] : 1) * 4;
        memcpy(buf + data, t[i].data, bytes); /* host is little-endian */
        data += bytes;
    }
    write_file(dir, "model.safetensors", buf, total);
    free(buf);
    free(hdr);
}

static void rm_model_dir(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    CHECK(rmdir(dir) == 0);
}

static sn__bert_t *load_model(const tmodel_t *m)
{
    char dir[] = "/tmp/sense-bert-XXXXXX";
    sn__bert_t *b = NULL;

    CHECK(mkdtemp(dir));
    write_config(m, dir);
    write_st(m->t, m->n_t, dir);
    CHECK_OK(sn__bert_load(dir, &b, errbuf, sizeof errbuf), errbuf);
    rm_model_dir(dir); /* the mapping outlives the names */
    return b;
}

/* ---- the naive reference, in double ------------------------------------- */

static void ref_ln(double *x, int n, const float *g, const float *b,
                   double eps)
{
    double mean = 0, var = 0;
    for (int i = 0; i < n; i++)
        mean += x[i];
    mean /= n;
    for (int i = 0; i < n; i++)
        var += (x[i] - mean) * (x[i] - mean);
    var /= n;
    for (int i = 0; i < n; i++)
        x[i] = (x[i] - mean) / sqrt(var + eps) * g[i] + b[i];
}

/* y[L][n_out] = x[L][n_in] W^T + b */
static void ref_linear(const double *x, const float *w, const float *b,
                       double *y, int L, int n_out, int n_in)
{
    for (int t = 0; t < L; t++)
        for (int o = 0; o < n_out; o++) {
            double s = b[o];
            for (int i = 0; i < n_in; i++)
                s += x[(size_t)t * n_in + i] * w[(size_t)o * n_in + i];
            y[(size_t)t * n_out + o] = s;
        }
}

static double ref_gelu(double x, int tanh_approx)
{
    if (tanh_approx)
        return 0.5 * x *
               (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    return 0.5 * x * (1 + erf(x / sqrt(2.0)));
}

/* One sequence alone; out [L][H] floats. */
static void ref_forward(const tmodel_t *m, const int32_t *ids, int L,
                        float *out)
{
    const int H = m->H, I = m->I, d = H / m->heads;
    const int xlmr = strcmp(m->model_type, "bert") != 0;
    const int tanh_act = strcmp(m->act, "gelu") != 0;
    double *x = calloc((size_t)L * H, sizeof *x);
    double *q = calloc((size_t)L * H, sizeof *q);
    double *k = calloc((size_t)L * H, sizeof *k);
    double *v = calloc((size_t)L * H, sizeof *v);
    double *ctx = calloc((size_t)L * H, sizeof *ctx);
    double *y = calloc((size_t)L * (I > H ? I : H), sizeof *y);
    double *f = calloc((size_t)L * I, sizeof *f);
    double *p = calloc((size_t)L, sizeof *p);
    int pos = xlmr ? m->pad + 1 : 0;

    CHECK(x && q && k && v && ctx && y && f && p);
    for (int t = 0; t < L; t++) {
        int pid = xlmr && ids[t] == m->pad ? m->pad : pos++;
        for (int c = 0; c < H; c++)
            x[(size_t)t * H + c] = (double)m->word[(size_t)ids[t] * H + c] +
                                   m->type[c] + m->pos[(size_t)pid * H + c];
        ref_ln(x + (size_t)t * H, H, m->elng, m->elnb, m->eps);
    }
    for (int l = 0; l < m->n_layers; l++) {
        const ref_layer_t *Ly = &m->layer[l];
        ref_linear(x, Ly->wq, Ly->bq, q, L, H, H);
        ref_linear(x, Ly->wk, Ly->bk, k, L, H, H);
        ref_linear(x, Ly->wv, Ly->bv, v, L, H, H);
        for (int h = 0; h < m->heads; h++)
            for (int i = 0; i < L; i++) {
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < L; j++) {
                    double s = 0;
                    for (int c = h * d; c < h * d + d; c++)
                        s += q[(size_t)i * H + c] * k[(size_t)j * H + c];
                    p[j] = s / sqrt((double)d);
                    mx = p[j] > mx ? p[j] : mx;
                }
                for (int j = 0; j < L; j++)
                    sum += p[j] = exp(p[j] - mx);
                for (int c = h * d; c < h * d + d; c++) {
                    double s = 0;
                    for (int j = 0; j < L; j++)
                        s += p[j] / sum * v[(size_t)j * H + c];
                    ctx[(size_t)i * H + c] = s;
                }
            }
        ref_linear(ctx, Ly->wo, Ly->bo, y, L, H, H);
        for (int t = 0; t < L; t++) {
            for (int c = 0; c < H; c++)
                x[(size_t)t * H + c] += y[(size_t)t * H + c];
            ref_ln(x + (size_t)t * H, H, Ly->ln1g, Ly->ln1b, m->eps);
        }
        ref_linear(x, Ly->wi, Ly->bi, f, L, I, H);
        for (size_t i = 0; i < (size_t)L * I; i++)
            f[i] = ref_gelu(f[i], tanh_act);
        ref_linear(f, Ly->wf, Ly->bf, y, L, H, I);
        for (int t = 0; t < L; t++) {
            for (int c = 0; c < H; c++)
                x[(size_t)t * H + c] += y[(size_t)t * H + c];
            ref_ln(x + (size_t)t * H, H, Ly->ln2g, Ly->ln2b, m->eps);
        }
    }
    for (size_t i = 0; i < (size_t)L * H; i++)
        out[i] = (float)x[i];
    free(x);
    free(q);
    free(k);
    free(v);
    free(ctx);
    free(y);
    free(f);
    free(p);
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) /* NaN counts as infinitely far */
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

/* ---- (a) + (b): reference and batch independence ------------------------ */

static void check_model(tmodel_t *m, const int *lens, int n_seq,
                        const char *label)
{
    sn__bert_t *b;
    sn__bert_ctx_t *c;
    int T = 0, off = 0, identical = 1;
    int32_t *ids;
    float *alone, *packed, *ref;
    double d_ref = 0, d_batch = 0;

    build(m);
    b = load_model(m);
    c = sn__bert_ctx_new(b);
    CHECK(c);
    CHECK_EQ(sn__bert_hparams(b)->pos_offset,
             strcmp(m->model_type, "bert") ? m->pad + 1 : 0);
    for (int s = 0; s < n_seq; s++)
        T += lens[s];
    ids = malloc((size_t)T * sizeof *ids);
    alone = malloc((size_t)T * m->H * sizeof *alone);
    packed = malloc((size_t)T * m->H * sizeof *packed);
    ref = malloc((size_t)T * m->H * sizeof *ref);
    CHECK(ids && alone && packed && ref);
    for (int t = 0; t < T; t++)
        ids[t] = (int32_t)(urand() * m->vocab);
    if (strcmp(m->model_type, "bert") && T > 3)
        ids[2] = m->pad; /* a pad id inside a sequence keeps padding_idx */

    for (int s = 0; s < n_seq; off += lens[s++]) {
        float *o = alone + (size_t)off * m->H;
        CHECK_OK(sn__bert_forward(b, c, ids + off, &lens[s], 1, o, errbuf,
                                  sizeof errbuf),
                 errbuf);
        ref_forward(m, ids + off, lens[s], ref + (size_t)off * m->H);
    }
    CHECK_OK(sn__bert_forward(b, c, ids, lens, n_seq, packed, errbuf,
                              sizeof errbuf),
             errbuf);
    d_ref = max_diff(alone, ref, (size_t)T * m->H);
    d_batch = max_diff(alone, packed, (size_t)T * m->H);
    identical = !memcmp(alone, packed, (size_t)T * m->H * sizeof *alone);
    printf("%-40s T=%4d  max|ours - naive| %.2e  max|alone - packed| %.2e%s\n",
           label, T, d_ref, d_batch, identical ? " (bit-identical)" : "");
    CHECK(d_ref <= 1e-4);
    /* every step, the matmuls (embed/gemm.c) included, computes a row the
     * same way whatever the batch and the row's place: bit-identical */
    CHECK(identical);

    free(ids);
    free(alone);
    free(packed);
    free(ref);
    sn__bert_ctx_free(c);
    sn__bert_free(b);
    free_model(m);
}

static void test_reference(const char *kernels)
{
    static tmodel_t m; /* big: static */
    const int lens1[] = {1, 7, 16, 33, 5, 64, 2};
    const int lens2[] = {300, 3, 17};
    char label[64];

    /* the kernel set the contexts pick (bert.c caps it by this variable) */
    if (kernels)
        CHECK(setenv("SENSE_BERT_KERNELS", kernels, 1) == 0);
    else
        CHECK(unsetenv("SENSE_BERT_KERNELS") == 0);
    kernels = kernels ? kernels : "best";

    /* BERT, exact GELU, sizes multiples of 16 */
    m = (tmodel_t){.model_type = "bert", .act = "gelu", .prefix = "",
                   .H = 64, .n_layers = 2, .heads = 4, .I = 128,
                   .vocab = 500, .n_pos = 80, .n_types = 2, .pad = 0,
                   .eps = 1e-12};
    snprintf(label, sizeof label, "[%s] bert gelu 64x2x4", kernels);
    check_model(&m, lens1, 7, label);

    /* XLM-R offsets, tanh GELU, odd sizes (tails everywhere) */
    m = (tmodel_t){.model_type = "xlm-roberta", .act = "gelu_new",
                   .prefix = "", .H = 40, .n_layers = 3, .heads = 5,
                   .I = 72, .vocab = 300, .n_pos = 68, .n_types = 1,
                   .pad = 1, .eps = 1e-5};
    snprintf(label, sizeof label, "[%s] xlm-r gelu_new 40x3x5", kernels);
    check_model(&m, lens1, 7, label);

    /* "bert." prefix, gamma/beta, gelu_pytorch_tanh, a 300-token sequence
     * (several attention blocks, helper threads), head size 48 */
    m = (tmodel_t){.model_type = "bert", .act = "gelu_pytorch_tanh",
                   .prefix = "bert.", .gamma_beta = 1, .H = 96,
                   .n_layers = 1, .heads = 2, .I = 100, .vocab = 200,
                   .n_pos = 320, .n_types = 2, .pad = 0, .eps = 1e-12};
    snprintf(label, sizeof label, "[%s] bert. gamma/beta tanh 96x1x2",
             kernels);
    check_model(&m, lens2, 3, label);

    /* roberta prefix, exact GELU, XLM-R offsets with pad 1, head size 80
     * (more than one tile of columns) */
    m = (tmodel_t){.model_type = "roberta", .act = "gelu",
                   .prefix = "roberta.", .H = 160, .n_layers = 2,
                   .heads = 2, .I = 64, .vocab = 100, .n_pos = 40,
                   .n_types = 1, .pad = 1, .eps = 1e-5};
    snprintf(label, sizeof label, "[%s] roberta. gelu 160x2x2", kernels);
    check_model(&m, lens1, 5, label);
}

/* ---- (c) errors --------------------------------------------------------- */

static const char *good_cfg =
    "{\"model_type\": \"bert\", \"hidden_size\": 32, "
    "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, "
    "\"intermediate_size\": 64, \"hidden_act\": \"gelu\", "
    "\"max_position_embeddings\": 16, \"vocab_size\": 50}";

/* good_cfg with `from` replaced by `to`. */
static int parse_edit(const char *from, const char *to,
                      sn__bert_hparams_t *hp)
{
    char buf[1024];
    const char *p = strstr(good_cfg, from);
    CHECK(p);
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(p - good_cfg), good_cfg, to,
             p + strlen(from));
    errbuf[0] = 0;
    return sn__bert_parse_config(buf, strlen(buf), "cfg.json", hp, errbuf,
                                 sizeof errbuf);
}

static void test_config_errors(void)
{
    sn__bert_hparams_t hp;
    int rc;

    CHECK_OK(sn__bert_parse_config(good_cfg, strlen(good_cfg), "cfg.json",
                                   &hp, errbuf, sizeof errbuf),
             errbuf);
    CHECK_EQ(hp.n_hidden, 32);
    CHECK_EQ(hp.n_types, 2);   /* default */
    CHECK_EQ(hp.pad_id, 0);    /* default for bert */
    CHECK_EQ(hp.pos_offset, 0);
    CHECK(hp.ln_eps == 1e-12f); /* default */
    CHECK_EQ(hp.act, SN_ACT_GELU);

    CHECK_OK(parse_edit("\"bert\"", "\"xlm-roberta\"", &hp), errbuf);
    CHECK_EQ(hp.pad_id, 1);
    CHECK_EQ(hp.pos_offset, 2);
    CHECK_EQ(hp.is_xlmr, 1);
    CHECK_OK(parse_edit("\"gelu\"", "\"gelu_pytorch_tanh\"", &hp), errbuf);
    CHECK_EQ(hp.act, SN_ACT_GELU_TANH);
    CHECK_OK(parse_edit("\"bert\"", "\"bert\", \"position_embedding_type\":"
                                    " \"absolute\", \"pad_token_id\": null",
                        &hp),
             errbuf);

    rc = parse_edit("\"bert\"", "\"distilbert\"", &hp);
    CHECK_EQ(rc, SN_EMODEL);
    CHECK_FAILS_WITH(rc, errbuf, "'cfg.json': unknown model_type 'distilbert'");
    rc = parse_edit("\"gelu\"", "\"relu\"", &hp);
    CHECK_EQ(rc, SN_EMODEL);
    CHECK_FAILS_WITH(rc, errbuf, "hidden_act 'relu'");
    rc = parse_edit("\"num_attention_heads\": 2", "\"num_attention_heads\": 3",
                    &hp);
    CHECK_EQ(rc, SN_EMODEL);
    CHECK_FAILS_WITH(rc, errbuf, "num_attention_heads (3) does not divide "
                                 "hidden_size (32)");
    rc = parse_edit("\"vocab_size\": 50", "\"vocab_size\": 50,", &hp);
    CHECK_EQ(rc, SN_EJSON);
    CHECK_FAILS_WITH(rc, errbuf, "'cfg.json': line 1 column");
    rc = parse_edit("\"intermediate_size\": 64, ", "", &hp);
    CHECK_EQ(rc, SN_EMODEL);
    CHECK_FAILS_WITH(rc, errbuf, "missing field 'intermediate_size'");
    rc = parse_edit("\"hidden_size\": 32", "\"hidden_size\": \"32\"", &hp);
    CHECK_EQ(rc, SN_EMODEL);
    CHECK_FAILS_WITH(rc, errbuf, "field 'hidden_size' must be an integer");
    rc = parse_edit("\"hidden_size\": 32", "\"hidden_size\": -32", &hp);
    CHECK_FAILS_WITH(rc, errbuf, "field 'hidden_size' is -32");
    rc = parse_edit("\"hidden_act\": \"gelu\"", "\"hidden_act\": 1", &hp);
    CHECK_FAILS_WITH(rc, errbuf, "field 'hidden_act' must be a string");
    rc = parse_edit("\"bert\"", "\"bert\", \"position_embedding_type\": "
                                "\"relative_key\"",
                    &hp);
    CHECK_FAILS_WITH(rc, errbuf, "position_embedding_type 'relative_key'");
    rc = parse_edit("\"bert\"", "\"bert\", \"layer_norm_eps\": \"x\"", &hp);
    CHECK_FAILS_WITH(rc, errbuf, "'layer_norm_eps' must be a number");
    rc = parse_edit("\"bert\"", "\"xlm-roberta\", \"pad_token_id\": 15", &hp);
    CHECK_FAILS_WITH(rc, errbuf, "leaves no position");
    rc = sn__bert_parse_config("[1]", 3, "cfg.json", &hp, errbuf,
                               sizeof errbuf);
    CHECK_FAILS_WITH(rc, errbuf, "not a json object");
    rc = sn__bert_parse_config("{\"model_type\": \"bert\"", 20, "cfg.json",
                               &hp, errbuf, sizeof errbuf);
    CHECK_EQ(rc, SN_EJSON);
}

/* Write m with tensor `drop` left out, tensor `reshape` one row short, and
 * an extra tensor `extra`; expect the load to fail with `want` in the
 * message, or (want NULL) to succeed. */
static void weight_error(tmodel_t *m, const char *drop, const char *reshape,
                         const char *extra, const char *want)
{
    char dir[] = "/tmp/sense-bert-XXXXXX";
    tensor_t t[MAX_TENSORS + 1];
    float junk[64] = {0};
    sn__bert_t *b = NULL;
    int n = 0, rc;

    for (int i = 0; i < m->n_t; i++) {
        if (drop && !strcmp(m->t[i].name, drop))
            continue;
        t[n] = m->t[i];
        if (reshape && !strcmp(t[n].name, reshape))
            t[n].shape[0] -= 1; /* fewer rows: the data stays in bounds */
        n++;
    }
    if (extra) {
        t[n] = (tensor_t){.n_dims = 1, .shape = {64, 0}, .data = junk};
        snprintf(t[n].name, sizeof t[n].name, "%s", extra);
        n++;
    }
    CHECK(mkdtemp(dir));
    write_config(m, dir);
    write_st(t, n, dir);
    errbuf[0] = 0;
    rc = sn__bert_load(dir, &b, errbuf, sizeof errbuf);
    if (want) {
        CHECK(b == NULL);
        CHECK_EQ(rc, SN_EMODEL);
        CHECK_FAILS_WITH(rc, errbuf, want);
    } else {
        CHECK_OK(rc, errbuf);
        sn__bert_free(b);
    }
    rm_model_dir(dir);
}

static void test_weight_errors(void)
{
    static tmodel_t m;
    m = (tmodel_t){.model_type = "bert", .act = "gelu", .prefix = "",
                   .H = 32, .n_layers = 2, .heads = 2, .I = 64, .vocab = 50,
                   .n_pos = 16, .n_types = 2, .eps = 1e-12};
    build(&m);
    weight_error(&m, "encoder.layer.1.attention.self.key.bias", NULL, NULL,
                 "missing tensor 'encoder.layer.1.attention.self.key.bias'");
    weight_error(&m, "embeddings.LayerNorm.weight", NULL, NULL,
                 "missing tensor 'embeddings.LayerNorm.weight'");
    weight_error(&m, "embeddings.word_embeddings.weight", NULL, NULL,
                 "no tensor 'embeddings.word_embeddings.weight'");
    weight_error(&m, NULL, "encoder.layer.0.intermediate.dense.weight", NULL,
                 "'encoder.layer.0.intermediate.dense.weight' has shape "
                 "[63, 32], expected [64, 32]");
    weight_error(&m, NULL, "embeddings.position_embeddings.weight", NULL,
                 "has shape [15, 32], expected [16, 32]");
    weight_error(&m, NULL, NULL, "encoder.layer.2.output.dense.bias",
                 "unexpected tensor 'encoder.layer.2.output.dense.bias'");
    /* the heads of *ForMaskedLM and buffers are not unexpected */
    weight_error(&m, NULL, NULL, "cls.predictions.bias", NULL);
    weight_error(&m, NULL, NULL, "lm_head.bias", NULL);
    weight_error(&m, NULL, NULL, "embeddings.position_ids", NULL);
    weight_error(&m, NULL, NULL, "pooler.extra", NULL);
    free_model(&m);
}

static void test_forward_errors(void)
{
    static tmodel_t m;
    sn__bert_t *b;
    sn__bert_ctx_t *c;
    int32_t ids[40] = {0};
    float out[40 * 32];
    int lens[2] = {3, 2}, rc;

    m = (tmodel_t){.model_type = "xlm-roberta", .act = "gelu",
                   .prefix = "", .H = 32, .n_layers = 1, .heads = 2, .I = 64,
                   .vocab = 50, .n_pos = 20, .n_types = 1, .pad = 1,
                   .eps = 1e-5};
    build(&m);
    b = load_model(&m);
    c = sn__bert_ctx_new(b);
    CHECK(c);

    ids[4] = 50;
    rc = sn__bert_forward(b, c, ids, lens, 2, out, errbuf, sizeof errbuf);
    CHECK_EQ(rc, SN_EARG);
    CHECK_FAILS_WITH(rc, errbuf, "token id 50 at position 4 outside the "
                                 "vocabulary [0, 50)");
    ids[4] = -1;
    rc = sn__bert_forward(b, c, ids, lens, 2, out, errbuf, sizeof errbuf);
    CHECK_FAILS_WITH(rc, errbuf, "token id -1");
    ids[4] = 0;

    lens[1] = 19; /* 20 positions, offset 2: at most 18 tokens */
    rc = sn__bert_forward(b, c, ids, lens, 2, out, errbuf, sizeof errbuf);
    CHECK_EQ(rc, SN_ETOOBIG);
    CHECK_FAILS_WITH(rc, errbuf, "sequence 1 has 19 tokens, the model takes "
                                 "at most 18");
    lens[1] = 18;
    CHECK_OK(sn__bert_forward(b, c, ids, lens, 2, out, errbuf, sizeof errbuf),
             errbuf);
    lens[1] = -1;
    rc = sn__bert_forward(b, c, ids, lens, 2, out, errbuf, sizeof errbuf);
    CHECK_FAILS_WITH(rc, errbuf, "negative length");

    { /* more tokens than one call takes */
        int n = 2000, *many = malloc((size_t)n * sizeof *many);
        int32_t *mids = calloc((size_t)n * 18, sizeof *mids);
        CHECK(many && mids);
        for (int i = 0; i < n; i++)
            many[i] = 18;
        rc = sn__bert_forward(b, c, mids, many, n, NULL, errbuf,
                              sizeof errbuf);
        CHECK_EQ(rc, SN_EARG); /* out NULL */
        rc = sn__bert_forward(b, c, mids, many, n, out, errbuf,
                              sizeof errbuf);
        CHECK_EQ(rc, SN_ETOOBIG);
        CHECK_FAILS_WITH(rc, errbuf, "batch of more than");
        free(many);
        free(mids);
    }
    /* empty batch and empty sequences are fine */
    CHECK_OK(sn__bert_forward(b, c, ids, lens, 0, out, errbuf, sizeof errbuf),
             errbuf);
    lens[0] = 0;
    lens[1] = 3;
    CHECK_OK(sn__bert_forward(b, c, ids, lens, 2, out, errbuf, sizeof errbuf),
             errbuf);

    sn__bert_ctx_free(c);
    sn__bert_free(b);
    sn__bert_ctx_free(NULL);
    sn__bert_free(NULL);
    free_model(&m);
}

/* ---- (d) the fixtures --------------------------------------------------- */

static void test_fixture(const char *name)
{
    char path[1024], *line = NULL;
    size_t cap = 0;
    sn__bert_t *b = NULL;
    sn__bert_ctx_t *c;
    FILE *fp;
    double worst = 0;
    int n_lines = 0, n_tok = 0;

    snprintf(path, sizeof path, "%s/hf-reference/%s/model", SN_FIXTURES,
             name);
    CHECK_OK(sn__bert_load(path, &b, errbuf, sizeof errbuf), errbuf);
    c = sn__bert_ctx_new(b);
    CHECK(c);
    snprintf(path, sizeof path, "%s/hf-reference/%s/expected.jsonl",
             SN_FIXTURES, name);
    fp = fopen(path, "r");
    CHECK(fp);
    while (getline(&line, &cap, fp) > 0) {
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr), *ids, *emb;
        const int H = sn__bert_hparams(b)->n_hidden;
        int32_t *tok;
        float *out;
        int L;

        CHECK(o);
        ids = json_object_get(o, "ids");
        emb = json_object_get(o, "token_embeddings");
        CHECK(json_is_array(ids) && json_is_array(emb));
        L = (int)json_array_size(ids);
        CHECK_EQ(json_array_size(emb), L);
        tok = malloc((size_t)L * sizeof *tok);
        out = malloc((size_t)L * H * sizeof *out);
        CHECK(tok && out);
        for (int t = 0; t < L; t++)
            tok[t] = (int32_t)json_integer_value(json_array_get(ids, t));
        CHECK_OK(sn__bert_forward(b, c, tok, &L, 1, out, errbuf,
                                  sizeof errbuf),
                 errbuf);
        for (int t = 0; t < L; t++) {
            json_t *row = json_array_get(emb, t);
            CHECK_EQ(json_array_size(row), H);
            for (int k = 0; k < H; k++) {
                double d = fabs(out[(size_t)t * H + k] -
                                json_number_value(json_array_get(row, k)));
                if (!(d <= worst))
                    worst = isnan(d) ? INFINITY : d;
            }
        }
        n_tok += L;
        n_lines++;
        free(tok);
        free(out);
        json_decref(o);
    }
    free(line);
    fclose(fp);
    printf("fixture %-18s %3d sentences %5d tokens  max|diff| %.2e\n", name,
           n_lines, n_tok, worst);
    CHECK(n_lines > 0);
    CHECK(worst <= 2e-4);
    sn__bert_ctx_free(c);
    sn__bert_free(b);
}

int main(void)
{
    test_config_errors();
    test_reference("base");
    test_reference("avx2"); /* where the CPU has them; else the best */
    test_reference(NULL);
    test_weight_errors();
    test_forward_errors();
    test_fixture("tiny-bert-uncased");
    test_fixture("tiny-bert-cased");
    test_fixture("tiny-xlmr-unigram");
    printf("ok\n");
    return 0;
}
