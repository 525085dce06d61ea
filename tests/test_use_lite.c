/*
 * test_use_lite.c -- the default model (Universal Sentence Encoder Lite)
 * against its TF.js reference, and its loader against damaged copies.
 *
 *   1. load the model from $SENSE_DEFAULT_MODEL, else where scripts/setup
 *      puts it (${SENSE_DATA:-${XDG_DATA_HOME:-~/.local/share}/sense}/
 *      models/use-lite); a missing model is a failure, never a skip;
 *   2. token ids of a few texts equal what the reference JS tokenizer gives
 *      (@energetic-ai/embeddings 0.2.0, Tokenizer.encode), offsets are sane
 *      for all 112 fixture sentences;
 *   3. every sentence vector, encoded in batches of 16 and alone, has cosine
 *      >= 0.9999 with ../shared/fixtures/use-lite/expected.jsonl (made by
 *      the reference JS in batches of 16); batch and alone agree;
 *   4. damaged copies of the model fail to load with a message naming the
 *      file (and the weight where there is one).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "check.h"
#include "embed_int.h"
#include "tokenizer_int.h"

#define N_SENT 112
#define BATCH 16
#define MIN_COS 0.9999

static char g_dir[4096];

static void model_dir(void)
{
    const char *d = getenv("SENSE_DEFAULT_MODEL");
    if (d && *d) {
        snprintf(g_dir, sizeof g_dir, "%s", d);
    } else if ((d = getenv("SENSE_DATA")) && *d) {
        snprintf(g_dir, sizeof g_dir, "%s/models/use-lite", d);
    } else if ((d = getenv("XDG_DATA_HOME")) && *d) {
        snprintf(g_dir, sizeof g_dir, "%s/sense/models/use-lite", d);
    } else {
        const char *home = getenv("HOME");
        snprintf(g_dir, sizeof g_dir, "%s/.local/share/sense/models/use-lite",
                 home ? home : "");
    }
    char p[4200];
    snprintf(p, sizeof p, "%s/model.json", g_dir);
    if (!sn__file_exists(p)) {
        fprintf(stderr,
                "test_use_lite: FAIL: the default model is not at '%s': run "
                "scripts/setup (or set SENSE_DEFAULT_MODEL to its folder)\n",
                g_dir);
        exit(1);
    }
}

typedef struct {
    char *text;
    float emb[512];
} expected_t;

static expected_t g_exp[N_SENT];

static void load_expected(void)
{
    char *buf;
    size_t len;
    char err[512];
    CHECK_OK(sn__read_file(SN_FIXTURES "/use-lite/expected.jsonl", 1 << 26,
                           &buf, &len, err, sizeof err),
             err);
    int n = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        CHECK(o);
        CHECK(n < N_SENT);
        CHECK_EQ(json_integer_value(json_object_get(o, "i")), n);
        json_t *t = json_object_get(o, "text");
        json_t *e = json_object_get(o, "sentence_embedding");
        CHECK(json_is_string(t));
        CHECK_EQ(json_array_size(e), 512);
        g_exp[n].text = malloc(json_string_length(t) + 1);
        CHECK(g_exp[n].text);
        memcpy(g_exp[n].text, json_string_value(t), json_string_length(t) + 1);
        for (int k = 0; k < 512; k++)
            g_exp[n].emb[k] = (float)json_number_value(json_array_get(e, k));
        json_decref(o);
        n++;
    }
    CHECK_EQ(n, N_SENT);
    free(buf);
}

static double cosine(const float *a, const float *b, int n)
{
    double d = 0, na = 0, nb = 0;
    for (int i = 0; i < n; i++) {
        d += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    return d / sqrt(na * nb);
}

static int n_codepoints(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* ---- tokenizer ------------------------------------------------------------- */

static void check_ids(const sn_tokenizer_t *tok, const char *text,
                      const int32_t *want, int n_want)
{
    sn_encoding_t enc = {0};
    char err[512];
    CHECK_OK(sn_tokenizer_encode(tok, text, strlen(text), 0, &enc, err,
                                 sizeof err),
             err);
    if (enc.n_tokens != n_want)
        fprintf(stderr, "ids of \"%s\": %d tokens, want %d\n", text,
                enc.n_tokens, n_want);
    CHECK_EQ(enc.n_tokens, n_want);
    for (int i = 0; i < n_want; i++) {
        if (enc.ids[i] != want[i])
            fprintf(stderr, "ids of \"%s\": token %d\n", text, i);
        CHECK_EQ(enc.ids[i], want[i]);
        CHECK_EQ(enc.special[i], 0);
    }
    sn_encoding_free(&enc);
}

static void test_tokenizer(const sn__use_t *m)
{
    const sn_tokenizer_t *tok = sn__use_tokenizer(m);
    char err[512];

    CHECK_EQ(tok->kind, SN_TOK_USE);
    CHECK_EQ(tok->n_prefix, 0); /* the JS adds no specials */
    CHECK_EQ(tok->n_suffix, 0);
    CHECK_EQ(tok->vocab.n_pieces, 8000);

    /* Ids below were printed by the reference JS tokenizer
     * (@energetic-ai/embeddings 0.2.0: model.tokenizer.encode(text)) on
     * sentences.json and on the last three texts; they are not made here. */
    static const int32_t hello[] = {2002, 102};
    static const int32_t hello_world[] = {341, 4125, 8, 1369, 78};
    static const int32_t blank[] = {30, 30};
    static const int32_t tabs[] = {5520, 7, 0, 381, 0, 2664,
                                   721, 7, 0, 47, 2582, 26};
    static const int32_t istanbul[] = {30, 0, 7, 1588, 4913, 30, 7966, 108};
    static const int32_t emoji[] = {299, 451, 2501, 30, 0,    12, 4952, 7,
                                    30,  7971, 30,  0,  30,   7945, 30, 0};
    static const int32_t lig[] = {1480, 30, 3994, 4129, 650, 1580, 29, 128};
    static const int32_t korean[] = {30, 0, 30, 0, 30, 0, 30, 0, 30, 0, 6};
    static const int32_t colon[] = {649, 4177, 48};          /* "x:30y" */
    static const int32_t kana[] = {30, 1133, 330, 30, 0, 649};
    static const int32_t words[] = {341, 4125, 311};         /* Hello world */
    check_ids(tok, "", NULL, 0);
    check_ids(tok, " ", blank, 2);
    check_ids(tok, "hello", hello, 2);
    check_ids(tok, "Hello, World!", hello_world, 5);
    check_ids(tok, "tabs\tand\nnewlines\r\nmixed", tabs, 12);
    check_ids(tok, "\xc4\xb0stanbul \xc4\xb1i", istanbul, 8);
    check_ids(tok,
              "emoji \xf0\x9f\x98\x80 and symbols \xe2\x98\x85 \xe2\x9c\x93 "
              "\xe2\x86\x92 \xe2\x88\x9e",
              emoji, 16);
    check_ids(tok,
              "\xef\xac\x81 ligature \xef\xbd\x86\xef\xbd\x95\xef\xbd\x8c"
              "\xef\xbd\x8c\xef\xbd\x97\xef\xbd\x89\xef\xbd\x84\xef\xbd\x94"
              "\xef\xbd\x88",
              lig, 8);
    check_ids(tok,
              "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xeb\xac\xb8\xec\x9e\xa5"
              "\xeb\x8f\x84 \xec\x9e\x98 \xec\xb2\x98\xeb\xa6\xac\xeb\x90\x98"
              "\xec\x96\xb4\xec\x95\xbc \xed\x95\xa9\xeb\x8b\x88\xeb\x8b\xa4.",
              korean, 11);
    check_ids(tok, "x:30y", colon, 3);
    check_ids(tok, "e\xcc\x81te \xef\xbd\xb6\xef\xbe\x9e x", kana, 6);
    check_ids(tok, "Hello world", words, 3);

    /* offsets: "Hello, World!" -> Hello | , | " World" | ! ; the leading
     * word marker maps to nothing, a later one to the space before */
    sn_encoding_t enc = {0};
    CHECK_OK(sn_tokenizer_encode(tok, "Hello, World!", 13, 0, &enc, err,
                                 sizeof err),
             err);
    static const int32_t st[] = {0, 1, 5, 6, 12}, en[] = {1, 5, 6, 12, 13};
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(enc.start[i], st[i]);
        CHECK_EQ(enc.end[i], en[i]);
    }
    /* a fused run of unknowns spans the whole run: three Hangul syllables
     * make one unknown token covering all three */
    CHECK_OK(sn_tokenizer_encode(tok, "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4",
                                 9, 0, &enc, err, sizeof err),
             err);
    CHECK_EQ(enc.n_tokens, 2);
    CHECK_EQ(enc.ids[1], 0);
    CHECK_EQ(enc.start[1], 0);
    CHECK_EQ(enc.end[1], 3);

    /* every fixture sentence: offsets inside the text, non-decreasing;
     * truncation to max_tokens keeps the first tokens */
    for (int s = 0; s < N_SENT; s++) {
        const char *t = g_exp[s].text;
        int ncp = n_codepoints(t);
        CHECK_OK(sn_tokenizer_encode(tok, t, strlen(t), sn__use_max_tokens(m),
                                     &enc, err, sizeof err),
                 err);
        CHECK(enc.n_tokens <= sn__use_max_tokens(m));
        for (int i = 0; i < enc.n_tokens; i++) {
            CHECK(enc.start[i] >= 0);
            CHECK(enc.start[i] <= enc.end[i]);
            CHECK(enc.end[i] <= ncp);
            if (i) {
                CHECK(enc.start[i] >= enc.start[i - 1]);
                CHECK(enc.end[i] >= enc.end[i - 1]);
            }
            CHECK(enc.ids[i] >= 0 && enc.ids[i] < 8000);
        }
        if (s == 111) /* 300 words: 300 tokens in the JS, clipped to 128 */
            CHECK_EQ(enc.n_tokens, 128);
    }
    sn_encoding_free(&enc);

    /* invalid UTF-8 is refused before the model sees it */
    CHECK_FAILS_WITH(sn_tokenizer_encode(tok, "a\xff", 2, 0, &enc, err,
                                         sizeof err),
                     err, "");
    sn_encoding_free(&enc);
}

/* ---- sentence vectors ---------------------------------------------------------- */

typedef struct {
    int32_t *ids;
    int lens[N_SENT];
    int off[N_SENT]; /* first token of each sentence in ids */
    int n_tok;
} corpus_t;

static void tokenize_all(const sn__use_t *m, corpus_t *c)
{
    sn_encoding_t enc = {0};
    char err[512];
    c->ids = malloc((size_t)N_SENT * 128 * sizeof *c->ids);
    CHECK(c->ids);
    c->n_tok = 0;
    for (int s = 0; s < N_SENT; s++) {
        const char *t = g_exp[s].text;
        CHECK_OK(sn_tokenizer_encode(sn__use_tokenizer(m), t, strlen(t),
                                     sn__use_max_tokens(m), &enc, err,
                                     sizeof err),
                 err);
        c->off[s] = c->n_tok;
        c->lens[s] = enc.n_tokens;
        if (enc.n_tokens)
            memcpy(c->ids + c->n_tok, enc.ids, (size_t)enc.n_tokens * 4);
        c->n_tok += enc.n_tokens;
    }
    sn_encoding_free(&enc);
}

static void test_vectors(const sn__use_t *m)
{
    corpus_t c;
    char err[512];
    int dim = sn__use_dim(m), hid = sn__use_hidden(m);
    CHECK_EQ(dim, 512);
    CHECK_EQ(hid, 512);
    CHECK_EQ(sn__use_max_tokens(m), 128);
    tokenize_all(m, &c);

    float *batch = malloc((size_t)N_SENT * dim * sizeof *batch);
    float *alone = malloc((size_t)N_SENT * dim * sizeof *alone);
    float *tok_b = malloc((size_t)c.n_tok * hid * sizeof *tok_b);
    float *tok_a = malloc((size_t)128 * hid * sizeof *tok_a);
    sn__use_ctx_t *ctx = sn__use_ctx_new(m);
    CHECK(batch && alone && tok_b && tok_a && ctx);

    for (int s = 0; s < N_SENT; s += BATCH) {
        int n = N_SENT - s < BATCH ? N_SENT - s : BATCH;
        CHECK_OK(sn__use_forward(m, ctx, c.ids + c.off[s], c.lens + s, n,
                                 tok_b + (size_t)c.off[s] * hid,
                                 batch + (size_t)s * dim, err, sizeof err),
                 err);
    }
    double worst = 2, worst_alone = 2, worst_tok = 0, worst_vec = 0;
    int iw = -1, iwa = -1;
    for (int s = 0; s < N_SENT; s++) {
        CHECK_OK(sn__use_forward(m, ctx, c.ids + c.off[s], c.lens + s, 1,
                                 tok_a, alone + (size_t)s * dim, err,
                                 sizeof err),
                 err);
        double cb = cosine(batch + (size_t)s * dim, g_exp[s].emb, dim);
        double ca = cosine(alone + (size_t)s * dim, g_exp[s].emb, dim);
        if (cb < worst)
            worst = cb, iw = s;
        if (ca < worst_alone)
            worst_alone = ca, iwa = s;
        for (int k = 0; k < dim; k++) {
            double d = fabs(batch[(size_t)s * dim + k] -
                            alone[(size_t)s * dim + k]);
            if (d > worst_vec)
                worst_vec = d;
        }
        for (size_t k = 0; k < (size_t)c.lens[s] * hid; k++) {
            float a = tok_a[k], b = tok_b[(size_t)c.off[s] * hid + k];
            double d = fabs(a - b) / (1.0 + fabs(b));
            if (d > worst_tok)
                worst_tok = d;
        }
        /* L2-normalized */
        double nn = cosine(batch + (size_t)s * dim, batch + (size_t)s * dim,
                           dim);
        CHECK(fabs(nn - 1) < 1e-6);
    }
    printf("use-lite: worst cosine vs TF.js over %d sentences: %.12f "
           "(#%d, batches of %d), %.12f (#%d, alone)\n",
           N_SENT, worst, iw, BATCH, worst_alone, iwa);
    printf("use-lite: batch vs alone: max |diff| %.3g (sentence), %.3g "
           "(token states, relative)\n",
           worst_vec, worst_tok);
    if (worst < MIN_COS || worst_alone < MIN_COS)
        fprintf(stderr, "cosine below %g: \"%s\"\n", MIN_COS,
                g_exp[worst < worst_alone ? iw : iwa].text);
    CHECK(worst >= MIN_COS);
    CHECK(worst_alone >= MIN_COS);
    CHECK(worst_vec < 1e-5);
    CHECK(worst_tok < 1e-4);

    /* bad arguments */
    int too_long = sn__use_max_tokens(m) + 1, bad_id_len = 1;
    int32_t bad_id = 1 << 20;
    CHECK_FAILS_WITH(sn__use_forward(m, ctx, c.ids, &too_long, 1, NULL, alone,
                                     err, sizeof err),
                     err, "tokens");
    CHECK_FAILS_WITH(sn__use_forward(m, ctx, &bad_id, &bad_id_len, 1, NULL,
                                     alone, err, sizeof err),
                     err, "out of range");
    /* nothing to do is fine */
    CHECK_OK(sn__use_forward(m, ctx, c.ids, c.lens, 0, NULL, alone, err,
                             sizeof err),
             err);

    sn__use_ctx_free(ctx);
    free(batch);
    free(alone);
    free(tok_b);
    free(tok_a);
    free(c.ids);
}

/* ---- damaged copies ------------------------------------------------------------ */

static const char *const k_files[] = {
    "group1-shard1of7", "group1-shard2of7", "group1-shard3of7",
    "group1-shard4of7", "group1-shard5of7", "group1-shard6of7",
    "group1-shard7of7", "model.json",       "vocab.json",
};
#define N_FILES (int)(sizeof k_files / sizeof k_files[0])

/* A temp folder whose files link to the real model's. */
static void make_copy(char *tmp, size_t len)
{
    snprintf(tmp, len, "/tmp/sense-use-test-XXXXXX");
    CHECK(mkdtemp(tmp));
    for (int i = 0; i < N_FILES; i++) {
        char src[4300], dst[4300];
        snprintf(src, sizeof src, "%s/%s", g_dir, k_files[i]);
        snprintf(dst, sizeof dst, "%s/%s", tmp, k_files[i]);
        CHECK(symlink(src, dst) == 0);
    }
}

static void remove_copy(const char *tmp)
{
    for (int i = 0; i < N_FILES; i++) {
        char p[4300];
        snprintf(p, sizeof p, "%s/%s", tmp, k_files[i]);
        unlink(p);
    }
    CHECK(rmdir(tmp) == 0);
}

/* Replace tmp/name by `len` bytes of `data`. */
static void put_file(const char *tmp, const char *name, const void *data,
                     size_t len)
{
    char p[4300];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    unlink(p);
    FILE *f = fopen(p, "wb");
    CHECK(f);
    CHECK(fwrite(data, 1, len, f) == len);
    CHECK(fclose(f) == 0);
}

static char *read_orig(const char *name, size_t *len)
{
    char p[4300], err[512], *buf;
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    CHECK_OK(sn__read_file(p, 1u << 30, &buf, len, err, sizeof err), err);
    return buf;
}

/* Edit the first weight named `name` in the manifest: new shape (n >= 0),
 * new name (rename != NULL) or new dtype; write it as tmp/model.json. */
static void put_manifest(const char *tmp, const char *name, int n_dims,
                         const int *shape, const char *rename,
                         const char *dtype)
{
    size_t len;
    char *buf = read_orig("model.json", &len);
    json_error_t je;
    json_t *root = json_loadb(buf, len, 0, &je);
    CHECK(root);
    json_t *ws = json_object_get(
        json_array_get(json_object_get(root, "weightsManifest"), 0),
        "weights");
    int found = 0;
    for (size_t i = 0; i < json_array_size(ws) && !found; i++) {
        json_t *w = json_array_get(ws, i);
        if (strcmp(json_string_value(json_object_get(w, "name")), name))
            continue;
        found = 1;
        if (n_dims >= 0) {
            json_t *a = json_array();
            for (int k = 0; k < n_dims; k++)
                json_array_append_new(a, json_integer(shape[k]));
            json_object_set_new(w, "shape", a);
        }
        if (rename)
            json_object_set_new(w, "name", json_string(rename));
        if (dtype)
            json_object_set_new(w, "dtype", json_string(dtype));
    }
    CHECK(found);
    char *out = json_dumps(root, JSON_COMPACT);
    CHECK(out);
    put_file(tmp, "model.json", out, strlen(out));
    free(out);
    json_decref(root);
    free(buf);
}

/* Overwrite the 4 bytes of int32 weight `name` with v, in a private copy
 * of the shard that holds them (offsets as the manifest lays them out). */
static void patch_i32(const char *tmp, const char *name, int32_t v)
{
    size_t len;
    char *buf = read_orig("model.json", &len);
    json_error_t je;
    json_t *root = json_loadb(buf, len, 0, &je);
    CHECK(root);
    json_t *ws = json_object_get(
        json_array_get(json_object_get(root, "weightsManifest"), 0),
        "weights");
    size_t off = 0;
    int found = 0;
    for (size_t i = 0; i < json_array_size(ws); i++) {
        json_t *w = json_array_get(ws, i);
        if (strcmp(json_string_value(json_object_get(w, "name")), name) == 0) {
            found = 1;
            break;
        }
        size_t n = 4;
        json_t *sh = json_object_get(w, "shape");
        for (size_t k = 0; k < json_array_size(sh); k++)
            n *= (size_t)json_integer_value(json_array_get(sh, k));
        off += n;
    }
    CHECK(found);
    json_decref(root);
    free(buf);
    for (int i = 0; i < 7; i++) {
        char *sh = read_orig(k_files[i], &len);
        if (off + 4 <= len) {
            memcpy(sh + off, &v, 4);
            put_file(tmp, k_files[i], sh, len);
            free(sh);
            return;
        }
        CHECK(off >= len); /* the value does not straddle two shards */
        off -= len;
        free(sh);
    }
    CHECK(!"weight beyond the shards");
}

static void expect_load_fails(const char *tmp, const char *what,
                              const char *sub1, const char *sub2)
{
    sn__use_t *m = NULL;
    char err[1024] = "";
    int rc = sn__use_load(tmp, &m, err, sizeof err);
    printf("  %-26s -> %s: %s\n", what, sn_err_name(rc), err);
    CHECK(rc < 0);
    CHECK(m == NULL);
    CHECK_FAILS_WITH(rc, err, sub1);
    if (sub2)
        CHECK_FAILS_WITH(rc, err, sub2);
}

#define P_APPLY "module_apply_default/Encoder_en/KonaTransformer/"

static void test_damaged(void)
{
    char tmp[64];
    size_t len;
    printf("use-lite: damaged copies:\n");

    /* the pristine copy loads */
    make_copy(tmp, sizeof tmp);
    {
        sn__use_t *m = NULL;
        char err[512];
        CHECK_OK(sn__use_load(tmp, &m, err, sizeof err), err);
        sn__use_free(m);
    }
    remove_copy(tmp);

    /* truncated last shard */
    make_copy(tmp, sizeof tmp);
    char *sh = read_orig("group1-shard7of7", &len);
    put_file(tmp, "group1-shard7of7", sh, len - 1000);
    expect_load_fails(tmp, "truncated shard", "group1-shard7of7",
                      "tanh_layer_0/bias");
    /* trailing bytes after the last weight */
    put_file(tmp, "group1-shard7of7", sh, len);
    {
        char p[4300];
        snprintf(p, sizeof p, "%s/group1-shard7of7", tmp);
        FILE *f = fopen(p, "ab");
        CHECK(f);
        CHECK(fwrite("junkjunk", 1, 8, f) == 8);
        fclose(f);
    }
    expect_load_fails(tmp, "shard too long", "group1-shard7of7",
                      "follow the last weight");
    free(sh);
    remove_copy(tmp);

    /* a shard missing */
    make_copy(tmp, sizeof tmp);
    {
        char p[4300];
        snprintf(p, sizeof p, "%s/group1-shard3of7", tmp);
        unlink(p);
        expect_load_fails(tmp, "missing shard", "group1-shard3of7", NULL);
        CHECK(symlink("/nonexistent", p) == 0); /* for remove_copy */
    }
    remove_copy(tmp);

    /* wrong size in the manifest: the sum no longer matches the shards */
    make_copy(tmp, sizeof tmp);
    static const int emb_shape[] = {8003, 256};
    put_manifest(tmp, "module/Embeddings_en", 2, emb_shape, NULL, NULL);
    expect_load_fails(tmp, "wrong size in manifest", "group1-shard7of7",
                      "manifest needs");
    remove_copy(tmp);

    /* same size, wrong shape */
    make_copy(tmp, sizeof tmp);
    static const int ff_shape[] = {1536, 512};
    put_manifest(tmp,
                 P_APPLY "Encode/TransformerStack/Layer_1/TransformerLayer/"
                         "FFN/conv1/Tensordot/Reshape_1",
                 2, ff_shape, NULL, NULL);
    expect_load_fails(tmp, "wrong shape", "model.json",
                      "conv1/Tensordot/Reshape_1' is float32 [1536, 512], "
                      "expected float32 [512, 1536]");
    remove_copy(tmp);

    /* a weight missing (renamed) */
    make_copy(tmp, sizeof tmp);
    put_manifest(tmp, "module/Encoder_en/hidden_layers/tanh_layer_0/bias", -1,
                 NULL, "module/Encoder_en/hidden_layers/tanh_layer_0/b", NULL);
    expect_load_fails(tmp, "missing weight", "model.json",
                      "'module/Encoder_en/hidden_layers/tanh_layer_0/bias' "
                      "is missing");
    remove_copy(tmp);

    /* an unsupported dtype */
    make_copy(tmp, sizeof tmp);
    put_manifest(tmp, "module/Encoder_en/hidden_layers/tanh_layer_0/bias", -1,
                 NULL, NULL, "float16");
    expect_load_fails(tmp, "float16 weight", "model.json", "float16");
    remove_copy(tmp);

    /* a constant that changes the computation: padding default 0 instead
     * of -1 would mask out every unknown token */
    make_copy(tmp, sizeof tmp);
    patch_i32(tmp, P_APPLY "Encode/SparseToDense/default_value", 0);
    expect_load_fails(tmp, "constant changed", "model.json",
                      "default_value'[0] is 0");
    remove_copy(tmp);

    /* malformed model.json */
    make_copy(tmp, sizeof tmp);
    char *mj = read_orig("model.json", &len);
    put_file(tmp, "model.json", mj, len / 2);
    expect_load_fails(tmp, "truncated model.json", "model.json", NULL);
    put_file(tmp, "model.json", "{\"modelTopology\": {}}", 21);
    expect_load_fails(tmp, "model.json without graph", "model.json",
                      "modelTopology");
    free(mj);
    remove_copy(tmp);

    /* malformed vocab.json */
    make_copy(tmp, sizeof tmp);
    char *vj = read_orig("vocab.json", &len);
    put_file(tmp, "vocab.json", vj, len - 10);
    expect_load_fails(tmp, "truncated vocab.json", "vocab.json", NULL);
    put_file(tmp, "vocab.json", "{\"a\": 1}", 8);
    expect_load_fails(tmp, "vocab.json not an array", "vocab.json", NULL);
    static const char bad_score[] =
        "[[\"a\", 0], [\"b\", 0], [\"c\", 0], [\"d\", 0], [\"e\", 0], "
        "[\"f\", 0], [\"g\", \"x\"]]";
    put_file(tmp, "vocab.json", bad_score, strlen(bad_score));
    expect_load_fails(tmp, "vocab.json bad score", "vocab.json",
                      "entry 6: score is not a number");
    free(vj);
    remove_copy(tmp);
}

int main(void)
{
    sn__use_t *m = NULL;
    char err[1024];

    model_dir();
    load_expected();
    CHECK_OK(sn__use_load(g_dir, &m, err, sizeof err), err);
    test_tokenizer(m);
    test_vectors(m);
    sn__use_free(m);
    sn__use_free(NULL);
    sn__use_ctx_free(NULL);
    test_damaged();
    for (int i = 0; i < N_SENT; i++)
        free(g_exp[i].text);
    printf("test_use_lite: ok\n");
    return 0;
}
