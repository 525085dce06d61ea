/*
 * test_parity.c -- the BERT-family encoder against the reference outputs of
 * transformers / tokenizers / sentence-transformers in
 * ../shared/fixtures/hf-reference/, through the public API.
 *
 * For each model and each of the 112 sentences: token ids equal; offsets
 * equal for non-special tokens; token embeddings within max |diff| <= 2e-4;
 * sentence embeddings within cosine >= 0.99999 and max |diff| <= 1e-4.
 * Then: the same model copied with the older sentence-transformers layout
 * (pooling_mode_* booleans, max_seq_length in sentence_bert_config.json,
 * and for BERT without tokenizer.json) gives the same vectors; prompts and
 * Matryoshka truncation behave; a text's vector does not depend on its batch.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "check.h"
#include "sense/sense.h"

#define N_SENT 112

typedef struct {
    json_t *rows[N_SENT];
    int n;
} ref_t;

static void load_ref(const char *model, ref_t *ref)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/hf-reference/%s/expected.jsonl",
             SN_FIXTURES, model);
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
        CHECK(ref->n < N_SENT);
        ref->rows[ref->n++] = j;
    }
    free(line);
    fclose(fp);
    CHECK_EQ(ref->n, N_SENT);
}

static void free_ref(ref_t *ref)
{
    for (int i = 0; i < ref->n; i++)
        json_decref(ref->rows[i]);
}

/* Embed all sentences in batches of `batch`. */
static sn_embedding_t *embed_all(const sn_model_t *m, const ref_t *ref,
                                 int batch, const sn_embed_opts_t *opts)
{
    sn_embedding_t *out = calloc(N_SENT, sizeof *out);
    sn_ctx_t *ctx = sn_ctx_new(m);
    char err[512] = "";
    CHECK(out && ctx);
    for (int i = 0; i < ref->n; i += batch) {
        int n = ref->n - i < batch ? ref->n - i : batch;
        const char *texts[64];
        size_t lens[64];
        for (int k = 0; k < n; k++) {
            json_t *t = json_object_get(ref->rows[i + k], "text");
            texts[k] = json_string_value(t);
            lens[k] = json_string_length(t);
        }
        CHECK_OK(sn_model_embed(m, ctx, texts, lens, n, opts, out + i, err,
                                sizeof err), err);
    }
    sn_ctx_free(ctx);
    return out;
}

static void free_all(sn_embedding_t *e)
{
    for (int i = 0; i < N_SENT; i++)
        sn_embedding_free(&e[i]);
    free(e);
}

static double max_abs_diff(const float *a, const float *b, int n)
{
    double d = 0;
    for (int i = 0; i < n; i++) {
        double x = fabs((double)a[i] - b[i]);
        if (x > d || isnan(x))
            d = isnan(x) ? INFINITY : x;
    }
    return d;
}

static double cosine(const float *a, const float *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / (sqrt(aa) * sqrt(bb) + 1e-30);
}

static void check_against_ref(const char *name, const ref_t *ref,
                              const sn_embedding_t *out, int dim)
{
    double worst_tok = 0, worst_sent = 0, worst_cos = 1;
    for (int i = 0; i < ref->n; i++) {
        const json_t *row = ref->rows[i];
        const json_t *ids = json_object_get(row, "ids");
        const json_t *offs = json_object_get(row, "offsets");
        const json_t *tok_emb = json_object_get(row, "token_embeddings");
        const json_t *sent = json_object_get(row, "sentence_embedding");
        const sn_embedding_t *e = &out[i];
        int n = (int)json_array_size(ids);

        if (e->enc.n_tokens != n) {
            fprintf(stderr, "%s: sentence %d: %d tokens, reference %d\n",
                    name, i, e->enc.n_tokens, n);
            exit(1);
        }
        for (int t = 0; t < n; t++) {
            int want = (int)json_integer_value(json_array_get(ids, t));
            if (e->enc.ids[t] != want) {
                fprintf(stderr, "%s: sentence %d token %d: id %d, ref %d\n",
                        name, i, t, e->enc.ids[t], want);
                exit(1);
            }
            if (e->enc.special[t])
                continue;
            const json_t *o = json_array_get(offs, t);
            int s = (int)json_integer_value(json_array_get(o, 0));
            int en = (int)json_integer_value(json_array_get(o, 1));
            if (e->enc.start[t] != s || e->enc.end[t] != en) {
                fprintf(stderr,
                        "%s: sentence %d token %d: offsets [%d,%d), ref "
                        "[%d,%d)\n", name, i, t, e->enc.start[t],
                        e->enc.end[t], s, en);
                exit(1);
            }
        }
        CHECK_EQ(json_array_size(tok_emb), n);
        for (int t = 0; t < n; t++) {
            const json_t *v = json_array_get(tok_emb, t);
            CHECK_EQ(json_array_size(v), e->hidden);
            float ref_v[e->hidden];
            for (int k = 0; k < e->hidden; k++)
                ref_v[k] = (float)json_number_value(json_array_get(v, k));
            double d = max_abs_diff(e->tokens + (size_t)t * e->hidden, ref_v,
                                    e->hidden);
            if (d > worst_tok)
                worst_tok = d;
            if (d > 2e-4) {
                fprintf(stderr, "%s: sentence %d token %d: max |diff| %g\n",
                        name, i, t, d);
                exit(1);
            }
        }
        CHECK_EQ(json_array_size(sent), dim);
        CHECK_EQ(e->dim, dim);
        float ref_s[dim];
        for (int k = 0; k < dim; k++)
            ref_s[k] = (float)json_number_value(json_array_get(sent, k));
        double d = max_abs_diff(e->sentence, ref_s, dim);
        double c = cosine(e->sentence, ref_s, dim);
        if (d > worst_sent)
            worst_sent = d;
        if (c < worst_cos)
            worst_cos = c;
        if (d > 1e-4 || c < 0.99999) {
            fprintf(stderr, "%s: sentence %d: max |diff| %g, cosine %.8f\n",
                    name, i, d, c);
            exit(1);
        }
    }
    printf("%s: %d sentences: ids and offsets equal; token max|diff| %.2e, "
           "sentence max|diff| %.2e, min cosine %.9f\n", name, ref->n,
           worst_tok, worst_sent, worst_cos);
}

static void copy_file(const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    if (!in || !out) {
        fprintf(stderr, "copy '%s' -> '%s' failed\n", src, dst);
        exit(1);
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        CHECK(fwrite(buf, 1, n, out) == n);
    fclose(in);
    CHECK(fclose(out) == 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    CHECK(fp != NULL);
    fputs(text, fp);
    CHECK(fclose(fp) == 0);
}

/* A copy of the model folder in the layout older sentence-transformers
 * versions wrote (and most downloaded models still have). */
static void make_old_layout(const char *src, const char *dst, int hidden,
                            const char *mode, int normalize, int max_len,
                            int keep_tokenizer_json)
{
    char a[1024], b[1024], txt[2048];
    /* config_sentence_transformers.json keeps the version that saved the
     * model, which decides whether inputs are stripped (tokenizer.c) */
    static const char *files[] = {"config.json", "model.safetensors",
                                  "tokenizer_config.json", "vocab.txt",
                                  "tokenizer.json",
                                  "config_sentence_transformers.json"};
    CHECK(mkdir(dst, 0700) == 0);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (!keep_tokenizer_json && !strcmp(files[i], "tokenizer.json"))
            continue;
        snprintf(a, sizeof a, "%s/%s", src, files[i]);
        snprintf(b, sizeof b, "%s/%s", dst, files[i]);
        if (access(a, R_OK) == 0)
            copy_file(a, b);
    }
    snprintf(b, sizeof b, "%s/modules.json", dst);
    snprintf(txt, sizeof txt,
             "[{\"idx\": 0, \"name\": \"0\", \"path\": \"\", \"type\": "
             "\"sentence_transformers.models.Transformer\"},\n"
             " {\"idx\": 1, \"name\": \"1\", \"path\": \"1_Pooling\", "
             "\"type\": \"sentence_transformers.models.Pooling\"}%s]\n",
             normalize ? ",\n {\"idx\": 2, \"name\": \"2\", \"path\": "
                         "\"2_Normalize\", \"type\": "
                         "\"sentence_transformers.models.Normalize\"}"
                       : "");
    write_file(b, txt);
    snprintf(b, sizeof b, "%s/sentence_bert_config.json", dst);
    snprintf(txt, sizeof txt,
             "{\"max_seq_length\": %d, \"do_lower_case\": false}\n", max_len);
    write_file(b, txt);
    snprintf(b, sizeof b, "%s/1_Pooling", dst);
    CHECK(mkdir(b, 0700) == 0);
    snprintf(b, sizeof b, "%s/1_Pooling/config.json", dst);
    snprintf(txt, sizeof txt,
             "{\"word_embedding_dimension\": %d, "
             "\"pooling_mode_cls_token\": %s, "
             "\"pooling_mode_mean_tokens\": %s, "
             "\"pooling_mode_max_tokens\": false, "
             "\"pooling_mode_mean_sqrt_len_tokens\": false}\n",
             hidden, strcmp(mode, "cls") ? "false" : "true",
             strcmp(mode, "mean") ? "false" : "true");
    write_file(b, txt);
    if (normalize) {
        snprintf(b, sizeof b, "%s/2_Normalize", dst);
        CHECK(mkdir(b, 0700) == 0);
    }
}

static void check_same(const char *what, const sn_embedding_t *a,
                       const sn_embedding_t *b, double tol)
{
    double worst = 0;
    for (int i = 0; i < N_SENT; i++) {
        CHECK_EQ(a[i].dim, b[i].dim);
        CHECK_EQ(a[i].enc.n_tokens, b[i].enc.n_tokens);
        double d = max_abs_diff(a[i].sentence, b[i].sentence, a[i].dim);
        if (d > worst)
            worst = d;
        if (d > tol) {
            fprintf(stderr, "%s: sentence %d differs by %g (tolerance %g)\n",
                    what, i, d, tol);
            exit(1);
        }
    }
    printf("%s: max |diff| %.2e\n", what, worst);
}

static void test_model(const char *name, const char *pool_mode, int normalize,
                       int is_bert)
{
    char dir[1024], err[512] = "";
    sn_model_t *m = NULL;
    ref_t ref;
    sn_embed_opts_t opts = {.want_tokens = 1};

    snprintf(dir, sizeof dir, "%s/hf-reference/%s/model", SN_FIXTURES, name);
    load_ref(name, &ref);
    CHECK_OK(sn_model_load(dir, &m, err, sizeof err), err);
    int dim = sn_model_dim(m);

    /* batches of 16, as the reference was computed */
    sn_embedding_t *out = embed_all(m, &ref, 16, &opts);
    check_against_ref(name, &ref, out, dim);

    /* batch independence: alone, and in one batch of 64 */
    sn_embedding_t *alone = embed_all(m, &ref, 1, &opts);
    sn_embedding_t *big = embed_all(m, &ref, 64, &opts);
    check_same("  batch 1 vs 16", alone, out, 1e-5);
    check_same("  batch 64 vs 16", big, out, 1e-5);
    free_all(alone);
    free_all(big);

    /* the older layout, with and without tokenizer.json */
    char tmpl[] = "/tmp/sense-parity-XXXXXX";
    CHECK(mkdtemp(tmpl) != NULL);
    for (int keep = 1; keep >= (is_bert ? 0 : 1); keep--) {
        char old[1200];
        snprintf(old, sizeof old, "%s/old%d", tmpl, keep);
        make_old_layout(dir, old, dim, pool_mode, normalize,
                        sn_model_max_tokens(m), keep);
        sn_model_t *m2 = NULL;
        CHECK_OK(sn_model_load(old, &m2, err, sizeof err), err);
        CHECK_EQ(sn_model_max_tokens(m2), sn_model_max_tokens(m));
        CHECK_EQ(sn_model_pooling(m2), sn_model_pooling(m));
        CHECK_EQ(sn_model_normalizes(m2), sn_model_normalizes(m));
        sn_embedding_t *o2 = embed_all(m2, &ref, 16, &opts);
        check_against_ref(keep ? "  older layout"
                               : "  older layout, vocab.txt only",
                          &ref, o2, dim);
        check_same("  older layout vs new", o2, out, 0);
        free_all(o2);
        sn_model_free(m2);
    }
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
    CHECK(system(cmd) == 0);

    /* Matryoshka: the first 16 dimensions, renormalized */
    sn_embed_opts_t mopts = {.dimensions = 16};
    sn_embedding_t *mat = embed_all(m, &ref, 16, &mopts);
    for (int i = 0; i < N_SENT; i++) {
        CHECK_EQ(mat[i].dim, 16);
        CHECK(mat[i].tokens == NULL);
        float v[16];
        double ss = 0;
        for (int k = 0; k < 16; k++)
            ss += (double)out[i].sentence[k] * out[i].sentence[k];
        for (int k = 0; k < 16; k++)
            v[k] = (float)(out[i].sentence[k] / fmax(sqrt(ss), 1e-12));
        CHECK(max_abs_diff(v, mat[i].sentence, 16) < 1e-6);
    }
    free_all(mat);

    free_all(out);
    sn_model_free(m);
    free_ref(&ref);
}

/* A prompt is prepended to the text; offsets still index the text. */
static void test_prompt(void)
{
    char src[1024], err[512] = "";
    char tmpl[] = "/tmp/sense-prompt-XXXXXX";
    CHECK(mkdtemp(tmpl) != NULL);
    snprintf(src, sizeof src, "%s/hf-reference/tiny-bert-uncased/model",
             SN_FIXTURES);
    char dst[1200];
    snprintf(dst, sizeof dst, "%s/m", tmpl);
    make_old_layout(src, dst, 64, "mean", 1, 32, 1);
    char path[1300];
    snprintf(path, sizeof path, "%s/config_sentence_transformers.json", dst);
    write_file(path, "{\"prompts\": {\"query\": \"query: \", "
                     "\"passage\": \"passage: \"}}\n");
    sn_model_t *m = NULL;
    CHECK_OK(sn_model_load(dst, &m, err, sizeof err), err);
    CHECK_STREQ(sn_model_prompt(m, "query"), "query: ");
    CHECK(sn_model_prompt(m, "nope") == NULL);

    sn_ctx_t *ctx = sn_ctx_new(m);
    const char *plain[] = {"query: the bank of the river"};
    const char *text[] = {"the bank of the river"};
    sn_embedding_t a, b;
    sn_embed_opts_t po = {.prompt = "query: ", .want_tokens = 1};
    sn_embed_opts_t no = {.want_tokens = 1};
    CHECK_OK(sn_model_embed(m, ctx, text, NULL, 1, &po, &a, err, sizeof err),
             err);
    CHECK_OK(sn_model_embed(m, ctx, plain, NULL, 1, &no, &b, err, sizeof err),
             err);
    CHECK_EQ(a.enc.n_tokens, b.enc.n_tokens);
    CHECK(max_abs_diff(a.sentence, b.sentence, a.dim) < 1e-6);
    /* "the" is text offset 0..3, "query: the" puts it at 7..10 */
    int found = 0;
    for (int t = 0; t < a.enc.n_tokens; t++) {
        CHECK_EQ(a.enc.ids[t], b.enc.ids[t]);
        if (!a.enc.special[t]) {
            CHECK_EQ(a.enc.start[t] + 7, b.enc.start[t]);
            CHECK_EQ(a.enc.end[t] + 7, b.enc.end[t]);
            found++;
        }
    }
    CHECK(found >= 5);
    sn_embedding_free(&a);
    sn_embedding_free(&b);
    sn_ctx_free(ctx);
    sn_model_free(m);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
    CHECK(system(cmd) == 0);
    printf("prompt: ok\n");
}

int main(void)
{
    test_model("tiny-bert-uncased", "mean", 1, 1);
    test_model("tiny-bert-cased", "cls", 0, 1);
    test_model("tiny-xlmr-unigram", "mean", 1, 0);
    test_prompt();
    printf("parity: ok\n");
    return 0;
}
