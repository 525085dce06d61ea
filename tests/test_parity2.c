/*
 * test_parity2.c -- text to vectors for the eight architectures of
 * ../shared/fixtures/hf-reference-2/ through the public API (tokenizer,
 * encoder, pooling, Dense, normalization), against transformers /
 * sentence-transformers.
 *
 * For each model and each of the 144 sentences of sentences-2.json: the
 * token ids equal; the token states (the text encoded alone) within max
 * |d| <= 2e-4; the sentence vector (batches of 16) within cosine >=
 * 0.99999 and max |d| <= 1e-4. For the two models with a `query` prompt,
 * expected-query.jsonl through opts.prompt = sn_model_prompt("query"),
 * ids included. test_arch.c checks the same forward passes fed the
 * reference ids, and the batch-independence bit for bit.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "check.h"
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

/* Embed every row's text, `batch` at a time, with the prompt. */
static sn_embedding_t *embed_texts(const sn_model_t *m, sn_ctx_t *ctx,
                                   const ref_t *ref, int batch,
                                   const char *prompt)
{
    sn_embedding_t *out = calloc((size_t)ref->n, sizeof *out);
    sn_embed_opts_t opts = {.want_tokens = 1, .prompt = prompt};
    CHECK(out);
    for (int i = 0; i < ref->n; i += batch) {
        int n = ref->n - i < batch ? ref->n - i : batch;
        const char *texts[64];
        size_t lens[64];
        for (int k = 0; k < n; k++) {
            json_t *t = json_object_get(ref->rows[i + k], "text");
            texts[k] = json_string_value(t);
            lens[k] = json_string_length(t);
        }
        CHECK_OK(sn_model_embed(m, ctx, texts, lens, n, &opts, out + i,
                                errbuf, sizeof errbuf),
                 errbuf);
    }
    return out;
}

static int ids_equal(const sn_embedding_t *e, json_t *row)
{
    json_t *ids = json_object_get(row, "ids");
    if ((int)json_array_size(ids) != e->enc.n_tokens)
        return 0;
    for (int k = 0; k < e->enc.n_tokens; k++)
        if (e->enc.ids[k] != json_integer_value(json_array_get(ids, (size_t)k)))
            return 0;
    return 1;
}

static void check_model(const char *name, const char *query_file)
{
    char dir[1024];
    sn_model_t *m = NULL;
    ref_t ref;
    double worst_tok = 0, worst_sent = 0, worst_cos = 1;
    int bad_ids = 0;

    snprintf(dir, sizeof dir, "%s/hf-reference-2/%s/model", SN_FIXTURES,
             name);
    CHECK_OK(sn_model_load(dir, &m, errbuf, sizeof errbuf), errbuf);
    sn_ctx_t *ctx = sn_ctx_new(m);
    CHECK(ctx);
    load_ref(name, "expected.jsonl", &ref);
    sn_embedding_t *alone = embed_texts(m, ctx, &ref, 1, NULL);
    sn_embedding_t *batched = embed_texts(m, ctx, &ref, 16, NULL);
    for (int i = 0; i < ref.n; i++) {
        json_t *row = ref.rows[i];
        sn_embedding_t *a = &alone[i], *b = &batched[i];
        if (!ids_equal(a, row)) {
            if (bad_ids++ < 3)
                fprintf(stderr, "%s: sentence %d: ids differ (%d tokens, "
                        "reference %zu)\n", name, i, a->enc.n_tokens,
                        json_array_size(json_object_get(row, "ids")));
            continue;
        }
        json_t *te = json_object_get(row, "token_embeddings");
        for (int t = 0; t < a->enc.n_tokens; t++) {
            double d = max_abs_diff(a->tokens + (size_t)t * a->hidden,
                                    json_array_get(te, (size_t)t),
                                    a->hidden);
            worst_tok = d > worst_tok ? d : worst_tok;
        }
        json_t *se = json_object_get(row, "sentence_embedding");
        double d = max_abs_diff(b->sentence, se, b->dim);
        double c = cosine(b->sentence, se, b->dim);
        worst_sent = d > worst_sent ? d : worst_sent;
        worst_cos = c < worst_cos ? c : worst_cos;
    }
    printf("%-22s ids: %d of %d differ; token states max |d| %.2e, "
           "sentence max |d| %.2e, min cosine %.8f\n",
           name, bad_ids, ref.n, worst_tok, worst_sent, worst_cos);
    CHECK_EQ(bad_ids, 0);
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

    if (query_file) {
        const char *prompt = sn_model_prompt(m, "query");
        CHECK(prompt != NULL);
        load_ref(name, query_file, &ref);
        sn_embedding_t *q = embed_texts(m, ctx, &ref, 16, prompt);
        worst_sent = 0;
        worst_cos = 1;
        bad_ids = 0;
        for (int i = 0; i < ref.n; i++) {
            json_t *se = json_object_get(ref.rows[i], "sentence_embedding");
            if (!ids_equal(&q[i], ref.rows[i]))
                bad_ids++;
            double d = max_abs_diff(q[i].sentence, se, q[i].dim);
            double c = cosine(q[i].sentence, se, q[i].dim);
            worst_sent = d > worst_sent ? d : worst_sent;
            worst_cos = c < worst_cos ? c : worst_cos;
            sn_embedding_free(&q[i]);
        }
        printf("%-22s query: ids: %d differ; sentence max |d| %.2e, "
               "min cosine %.8f\n", name, bad_ids, worst_sent, worst_cos);
        CHECK_EQ(bad_ids, 0);
        CHECK(worst_sent <= 1e-4);
        CHECK(worst_cos >= 0.99999);
        free(q);
        free_ref(&ref);
    }
    sn_ctx_free(ctx);
    sn_model_free(m);
}

int main(void)
{
    check_model("tiny-bge-lowercase", NULL);
    check_model("tiny-mpnet", NULL);
    check_model("tiny-distilbert-dense", NULL);
    check_model("tiny-me5-precompiled", "expected-query.jsonl");
    check_model("tiny-roberta-bpe", NULL);
    check_model("tiny-st5-dense", NULL);
    check_model("tiny-modernbert", NULL);
    check_model("tiny-qwen3-lasttoken", "expected-query.jsonl");
    printf("ok\n");
    return 0;
}
