/*
 * test_arch.c -- every architecture of the table (embed/arch.c) against
 * the reference outputs of transformers / sentence-transformers in
 * ../shared/fixtures/hf-reference-2/ (eight models: BERT, XLM-R, RoBERTa,
 * MPNet, DistilBERT + Dense, ModernBERT, T5 encoder + Dense, Qwen3 with
 * last-token pooling), fed the reference token ids, so the forward pass,
 * pooling, Dense and normalization are checked whatever the tokenizer.
 *
 * For each model and each of the 144 sentences of sentences-2.json: the
 * token states (each sentence encoded alone, as the reference) within max
 * |d| <= 2e-4; the sentence vector (batches of 16, as the reference)
 * within cosine >= 0.99999 and max |d| <= 1e-4; the same vectors and
 * states, bit for bit, whether a sentence is encoded alone or in a batch.
 * For the two models with a `query` prompt, expected-query.jsonl (whose
 * ids include the prompt's tokens). Then bad weight files: truncated,
 * corrupt header, a tensor renamed (missing + unexpected, named), and an
 * unknown model_type naming the supported ones.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "check.h"
#include "embed_int.h"
#include "nn.h"
#include "sense/sense.h"

#define MAX_ROWS 160

static char errbuf[1024];

typedef struct {
    json_t *rows[MAX_ROWS];
    int n;
} ref_t;

static void load_ref(const char *model, const char *file, ref_t *ref)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/hf-reference-2/%s/%s", SN_FIXTURES,
             model, file);
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "cannot open '%s'\n", path);
        exit(1);
    }
    char *line = NULL;
    size_t cap = 0;
    ref->n = 0;
    while (getline(&line, &cap, fp) > 0) {
        json_error_t jerr;
        json_t *j = json_loads(line, 0, &jerr);
        CHECK(j != NULL);
        CHECK(ref->n < MAX_ROWS);
        ref->rows[ref->n++] = j;
    }
    free(line);
    fclose(fp);
    CHECK(ref->n == 144);
}

static void free_ref(ref_t *ref)
{
    for (int i = 0; i < ref->n; i++)
        json_decref(ref->rows[i]);
}

/* ids of row i, malloc'd */
static int32_t *row_ids(json_t *row, int *n)
{
    json_t *a = json_object_get(row, "ids");
    *n = (int)json_array_size(a);
    int32_t *ids = malloc(sizeof *ids * (size_t)(*n + 1));
    CHECK(ids);
    for (int k = 0; k < *n; k++)
        ids[k] = (int32_t)json_integer_value(json_array_get(a, (size_t)k));
    return ids;
}

/* Embed every row by its ids, `batch` at a time. */
static sn_embedding_t *embed_rows(const sn_model_t *m, sn_ctx_t *ctx,
                                  const ref_t *ref, int batch)
{
    sn_embedding_t *out = calloc((size_t)ref->n, sizeof *out);
    sn_embed_opts_t opts = {.want_tokens = 1};
    CHECK(out);
    for (int i = 0; i < ref->n; i += batch) {
        int n = ref->n - i < batch ? ref->n - i : batch;
        int32_t *ids[64];
        int lens[64];
        for (int k = 0; k < n; k++)
            ids[k] = row_ids(ref->rows[i + k], &lens[k]);
        CHECK_OK(sn__model_embed_ids(m, ctx, (const int32_t *const *)ids,
                                     lens, n, &opts, out + i, errbuf,
                                     sizeof errbuf),
                 errbuf);
        for (int k = 0; k < n; k++)
            free(ids[k]);
    }
    return out;
}

static double max_abs_diff(const float *a, json_t *b, int n)
{
    double d = 0;
    CHECK_EQ((int)json_array_size(b), n);
    for (int k = 0; k < n; k++) {
        double x = fabs(a[k] - json_number_value(json_array_get(b, (size_t)k)));
        d = x > d ? x : d;
    }
    return d;
}

static double cosine(const float *a, json_t *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int k = 0; k < n; k++) {
        double y = json_number_value(json_array_get(b, (size_t)k));
        ab += a[k] * y;
        aa += (double)a[k] * a[k];
        bb += y * y;
    }
    if (aa == 0 && bb == 0)
        return 1;
    return ab / sqrt(aa * bb);
}

static void check_model(const char *name, const char *kind, int dim,
                        const char *query_file)
{
    char dir[1024];
    sn_model_t *m = NULL;
    ref_t ref;
    double worst_tok = 0, worst_sent = 0, worst_cos = 1;

    snprintf(dir, sizeof dir, "%s/hf-reference-2/%s/model", SN_FIXTURES,
             name);
    CHECK_OK(sn__model_load_notok(dir, &m, errbuf, sizeof errbuf), errbuf);
    CHECK(strstr(sn_model_name(m), kind) == sn_model_name(m));
    CHECK_EQ(sn_model_dim(m), dim);
    sn_ctx_t *ctx = sn_ctx_new(m);
    CHECK(ctx);
    load_ref(name, "expected.jsonl", &ref);

    sn_embedding_t *alone = embed_rows(m, ctx, &ref, 1);
    sn_embedding_t *batched = embed_rows(m, ctx, &ref, 16);
    for (int i = 0; i < ref.n; i++) {
        json_t *row = ref.rows[i];
        json_t *te = json_object_get(row, "token_embeddings");
        sn_embedding_t *a = &alone[i], *b = &batched[i];
        int n_tok = a->enc.n_tokens, H = a->hidden;

        CHECK_EQ((int)json_array_size(te), n_tok);
        for (int t = 0; t < n_tok; t++) {
            double d = max_abs_diff(a->tokens + (size_t)t * H,
                                    json_array_get(te, (size_t)t), H);
            worst_tok = d > worst_tok ? d : worst_tok;
        }
        json_t *se = json_object_get(row, "sentence_embedding");
        double d = max_abs_diff(b->sentence, se, b->dim);
        double c = cosine(b->sentence, se, b->dim);
        worst_sent = d > worst_sent ? d : worst_sent;
        worst_cos = c < worst_cos ? c : worst_cos;
        if (d > 1e-4 || c < 0.99999)
            fprintf(stderr, "%s: sentence %d: max |d| %.3g, cosine %.7f\n",
                    name, i, d, c);
        /* alone and in a batch: the same bits */
        CHECK_EQ(a->dim, b->dim);
        CHECK(!memcmp(a->sentence, b->sentence,
                      (size_t)a->dim * sizeof *a->sentence));
        CHECK(!memcmp(a->tokens, b->tokens,
                      (size_t)n_tok * H * sizeof *a->tokens));
    }
    printf("%-22s token states max |d| %.2e, sentence max |d| %.2e, "
           "min cosine %.8f\n",
           name, worst_tok, worst_sent, worst_cos);
    CHECK(worst_tok <= 2e-4);
    CHECK(worst_sent <= 1e-4);
    CHECK(worst_cos >= 0.99999);
    for (int i = 0; i < ref.n; i++) {
        sn_embedding_free(&alone[i]);
        sn_embedding_free(&batched[i]);
    }
    free(alone);
    free(batched);
    free_ref(&ref);

    if (query_file) { /* ids with the prompt's tokens in front */
        load_ref(name, query_file, &ref);
        sn_embedding_t *q = embed_rows(m, ctx, &ref, 16);
        worst_sent = 0;
        worst_cos = 1;
        for (int i = 0; i < ref.n; i++) {
            json_t *se = json_object_get(ref.rows[i], "sentence_embedding");
            double d = max_abs_diff(q[i].sentence, se, q[i].dim);
            double c = cosine(q[i].sentence, se, q[i].dim);
            worst_sent = d > worst_sent ? d : worst_sent;
            worst_cos = c < worst_cos ? c : worst_cos;
            sn_embedding_free(&q[i]);
        }
        printf("%-22s query: sentence max |d| %.2e, min cosine %.8f\n", name,
               worst_sent, worst_cos);
        CHECK(worst_sent <= 1e-4);
        CHECK(worst_cos >= 0.99999);
        free(q);
        free_ref(&ref);
    }
    sn_ctx_free(ctx);
    sn_model_free(m);
}

/* ---- bad weight files ------------------------------------------------------ */

static void copy_file(const char *from, const char *to, long truncate_at)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char buf[65536];
    size_t n;
    long done = 0;
    CHECK(in && out);
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        if (truncate_at >= 0 && done + (long)n > truncate_at)
            n = (size_t)(truncate_at - done);
        CHECK(fwrite(buf, 1, n, out) == n);
        done += (long)n;
        if (truncate_at >= 0 && done >= truncate_at)
            break;
    }
    fclose(in);
    CHECK(fclose(out) == 0);
}

/* A copy of the model's config.json and model.safetensors in a temporary
 * folder; the weight file cut at `truncate_at` bytes (< 0: whole), and the
 * first `from` in it replaced by `to` (same length). */
static void bad_copy(const char *name, char *dir, long truncate_at,
                     const char *from, const char *to)
{
    char src[1024], dst[1100];
    strcpy(dir, "/tmp/sense-arch-XXXXXX");
    CHECK(mkdtemp(dir));
    snprintf(src, sizeof src, "%s/hf-reference-2/%s/model/config.json",
             SN_FIXTURES, name);
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    copy_file(src, dst, -1);
    snprintf(src, sizeof src, "%s/hf-reference-2/%s/model/model.safetensors",
             SN_FIXTURES, name);
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    copy_file(src, dst, truncate_at);
    if (from) {
        FILE *fp = fopen(dst, "r+b");
        char head[65536];
        CHECK(fp);
        size_t n = fread(head, 1, sizeof head - 1, fp);
        head[n] = 0;
        char *p = memmem(head, n, from, strlen(from));
        CHECK(p && strlen(from) == strlen(to));
        memcpy(p, to, strlen(to));
        CHECK(fseek(fp, 0, SEEK_SET) == 0);
        CHECK(fwrite(head, 1, n, fp) == n);
        CHECK(fclose(fp) == 0);
    }
}

static void rm_copy(const char *dir)
{
    char p[1100];
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    CHECK(rmdir(dir) == 0);
}

static void expect_load_error(const char *dir, const char *want)
{
    sn__enc_t *e = NULL;
    int rc = sn__enc_load(dir, SN_PREC_F32, &e, errbuf, sizeof errbuf);
    CHECK(e == NULL);
    CHECK(rc < 0);
    CHECK_FAILS_WITH(rc, errbuf, want);
}

static void test_bad_weights(const char *name, const char *tensor)
{
    char dir[64], renamed[256];

    /* cut in the middle of the data */
    bad_copy(name, dir, 20000, NULL, NULL);
    expect_load_error(dir, "model.safetensors");
    rm_copy(dir);
    /* cut inside the header */
    bad_copy(name, dir, 100, NULL, NULL);
    expect_load_error(dir, "model.safetensors");
    rm_copy(dir);
    /* a corrupt header: its JSON broken */
    bad_copy(name, dir, -1, "\"dtype\"", "\"dtyp\"\"");
    expect_load_error(dir, "model.safetensors");
    rm_copy(dir);
    /* a tensor renamed: missing, named */
    snprintf(renamed, sizeof renamed, "%s", tensor);
    renamed[strlen(renamed) - 1] ^= 0x20; /* weight -> weighT */
    bad_copy(name, dir, -1, tensor, renamed);
    char want[300];
    snprintf(want, sizeof want, "'%s'", tensor);
    expect_load_error(dir, want);
    rm_copy(dir);
}

static void test_unknown_type(void)
{
    char dir[64], path[128];
    bad_copy("tiny-mpnet", dir, -1, NULL, NULL);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *fp = fopen(path, "w");
    CHECK(fp);
    fputs("{\"model_type\": \"gpt2\", \"n_embd\": 64}", fp);
    CHECK(fclose(fp) == 0);
    expect_load_error(dir, "unknown model_type 'gpt2' (supported: bert, ");
    CHECK(strstr(errbuf, "qwen3") && strstr(errbuf, "t5") &&
          strstr(errbuf, "modernbert") && strstr(errbuf, "mpnet") &&
          strstr(errbuf, "distilbert"));
    rm_copy(dir);
}

int main(void)
{
    check_model("tiny-bge-lowercase", "bert 2x64", 64, NULL);
    check_model("tiny-me5-precompiled", "xlm-roberta 2x64", 64,
                "expected-query.jsonl");
    check_model("tiny-roberta-bpe", "roberta 2x64", 64, NULL);
    check_model("tiny-mpnet", "mpnet 2x64", 64, NULL);
    check_model("tiny-distilbert-dense", "distilbert 2x64", 32, NULL);
    check_model("tiny-st5-dense", "t5 2x64", 32, NULL);
    check_model("tiny-modernbert", "modernbert 2x64", 64, NULL);
    check_model("tiny-qwen3-lasttoken", "qwen3 2x64", 64,
                "expected-query.jsonl");

    test_bad_weights("tiny-bge-lowercase",
                     "encoder.layer.1.attention.self.value.weight");
    test_bad_weights("tiny-mpnet", "encoder.relative_attention_bias.weight");
    test_bad_weights("tiny-distilbert-dense",
                     "transformer.layer.1.ffn.lin2.weight");
    test_bad_weights("tiny-st5-dense",
                     "encoder.block.1.layer.1.DenseReluDense.wo.weight");
    test_bad_weights("tiny-modernbert", "layers.1.attn.Wqkv.weight");
    test_bad_weights("tiny-qwen3-lasttoken",
                     "layers.1.self_attn.k_norm.weight");
    test_unknown_type();
    printf("ok\n");
    return 0;
}
