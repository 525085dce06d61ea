/*
 * test_weights.c -- the layouts real repositories keep their weights in,
 * and the errors for the ones sense does not read:
 *   - tensors under a wrapper's prefix ("bert.", "roberta.", "model.",
 *     "0.auto_model.", with a head's tensors beside them) load and give
 *     bit-identical embeddings to the bare checkpoint;
 *   - sharded safetensors (model.safetensors.index.json + shards) load and
 *     give identical embeddings; a missing shard, a shard that lacks a
 *     tensor its index promises, and a tensor in two shards are errors
 *     naming the file;
 *   - a folder with only pytorch_model.bin says to convert, with the
 *     command; one with only onnx/ says safetensors is needed; one with no
 *     weights at all says they are missing.
 * Each variant is written from the fixture checkpoint into a temporary
 * folder beside a copy of the rest of the model.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "embed_int.h"
#include "sense/sense.h"

static char base[] = "/tmp/sense-weights-XXXXXX";

static const char *const texts[] = {
    "The bat flew out of the cave.",
    "Hello, World!",
    "",
    "na\xc3\xafve caf\xc3\xa9 r\xc3\xa9sum\xc3\xa9",
};
#define N_TEXTS (int)(sizeof texts / sizeof *texts)

static void sh(const char *cmd)
{
    if (system(cmd) != 0) {
        fprintf(stderr, "command failed: %s\n", cmd);
        exit(1);
    }
}

/* The fixture set a model is in. */
static const char *set_of(const char *model)
{
    static const char *const first[] = {"tiny-bert-uncased", "tiny-bert-cased",
                                        "tiny-xlmr-unigram"};
    for (size_t i = 0; i < sizeof first / sizeof *first; i++)
        if (!strcmp(model, first[i]))
            return "hf-reference";
    return "hf-reference-2";
}

/* A copy of fixture model `model` without its weights, in base/name. */
static const char *copy_model(const char *model, const char *name)
{
    static char dir[512];
    char cmd[2048];
    snprintf(dir, sizeof dir, "%s/%s-%s", base, model, name);
    snprintf(cmd, sizeof cmd,
             "cp -r '%s/%s/%s/model' '%s' && rm '%s/model.safetensors'",
             SN_FIXTURES, set_of(model), model, dir, dir);
    sh(cmd);
    return dir;
}

/* Write the tensors [i0, i1) of src (every one F32) into path, each named
 * prefix + its name, plus n_extra extra 4-float tensors named extra[]. */
static void write_st(const char *path, sn__st_file_t *src, int i0, int i1,
                     const char *prefix, const char *const *extra,
                     int n_extra)
{
    size_t cap = 1 << 16, len = 0, off = 0;
    char *hdr = malloc(cap);
    CHECK(hdr);
#define EMIT(...)                                                            \
    do {                                                                     \
        int n_ = snprintf(hdr + len, cap - len, __VA_ARGS__);                \
        CHECK(n_ > 0 && (size_t)n_ < cap - len);                             \
        len += (size_t)n_;                                                   \
    } while (0)
    EMIT("{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = i0; i < i1; i++) {
        const sn__st_tensor_t *t = &src->hdr.tensors[i];
        CHECK_EQ(t->dtype, SN_DT_F32);
        EMIT(",\"%s%s\":{\"dtype\":\"F32\",\"shape\":[", prefix, t->name);
        for (int d = 0; d < t->n_dims; d++)
            EMIT("%s%lld", d ? "," : "", (long long)t->shape[d]);
        EMIT("],\"data_offsets\":[%zu,%zu]}", off,
             off + (size_t)(t->end - t->begin));
        off += (size_t)(t->end - t->begin);
    }
    for (int i = 0; i < n_extra; i++) {
        EMIT(",\"%s\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":"
             "[%zu,%zu]}",
             extra[i], off, off + 16);
        off += 16;
    }
    EMIT("}");
    while ((len + 8) % 8) /* keep the data 8-byte aligned */
        EMIT(" ");
#undef EMIT
    FILE *fp = fopen(path, "wb");
    CHECK(fp);
    uint8_t n8[8];
    for (int k = 0; k < 8; k++)
        n8[k] = (uint8_t)((uint64_t)len >> (8 * k));
    CHECK(fwrite(n8, 1, 8, fp) == 8 && fwrite(hdr, 1, len, fp) == len);
    for (int i = i0; i < i1; i++) {
        const sn__st_tensor_t *t = &src->hdr.tensors[i];
        const uint8_t *p = (const uint8_t *)src->map + src->hdr.data_offset +
                           t->begin;
        CHECK(fwrite(p, 1, (size_t)(t->end - t->begin), fp) ==
              (size_t)(t->end - t->begin));
    }
    static const float junk[4] = {1, 2, 3, 4};
    for (int i = 0; i < n_extra; i++)
        CHECK(fwrite(junk, 1, sizeof junk, fp) == sizeof junk);
    CHECK(fclose(fp) == 0);
    free(hdr);
}

static sn__st_file_t *open_fixture(const char *model)
{
    char path[512], err[512] = "";
    sn__st_file_t *f = NULL;
    snprintf(path, sizeof path, "%s/%s/%s/model/model.safetensors",
             SN_FIXTURES, set_of(model), model);
    CHECK_OK(sn__st_open(path, &f, err, sizeof err), err);
    return f;
}

/* The sentence embeddings of texts[] under the model in dir. */
static float *embed_all(const char *dir, int *dim)
{
    sn_model_t *m = NULL;
    char err[512] = "";
    CHECK_OK(sn_model_load(dir, &m, err, sizeof err), err);
    sn_ctx_t *c = sn_ctx_new(m);
    CHECK(c);
    sn_embedding_t out[N_TEXTS];
    CHECK_OK(sn_model_embed(m, c, texts, NULL, N_TEXTS, NULL, out, err,
                            sizeof err),
             err);
    *dim = out[0].dim;
    float *v = malloc((size_t)N_TEXTS * *dim * sizeof *v);
    CHECK(v);
    for (int i = 0; i < N_TEXTS; i++) {
        memcpy(v + (size_t)i * *dim, out[i].sentence, *dim * sizeof *v);
        sn_embedding_free(&out[i]);
    }
    sn_ctx_free(c);
    sn_model_free(m);
    return v;
}

static void expect_same(const char *what, const char *dir, const float *ref,
                        int dim)
{
    int d = 0;
    float *v = embed_all(dir, &d);
    CHECK_EQ(d, dim);
    if (memcmp(v, ref, (size_t)N_TEXTS * dim * sizeof *v)) {
        fprintf(stderr, "%s: embeddings differ from the bare checkpoint\n",
                what);
        exit(1);
    }
    printf("%-36s same embeddings as the bare checkpoint\n", what);
    free(v);
}

static void expect_fail(const char *what, const char *dir, const char *sub1,
                        const char *sub2)
{
    sn_model_t *m = NULL;
    char err[1024] = "";
    int rc = sn_model_load(dir, &m, err, sizeof err);
    if (rc >= 0 || m || !strstr(err, sub1) || (sub2 && !strstr(err, sub2))) {
        fprintf(stderr, "%s: rc=%d err='%s', wanted '%s'%s%s\n", what, rc,
                err, sub1, sub2 ? "' and '" : "", sub2 ? sub2 : "");
        exit(1);
    }
    printf("%-36s -> %s: %s\n", what, sn_err_name(rc), err);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    CHECK(fp && fputs(text, fp) >= 0 && fclose(fp) == 0);
}

/* An index.json mapping tensors [0, split) of f to shard a and the rest to
 * shard b (tensor names with prefix). */
static void write_index(const char *dir, sn__st_file_t *f, int split,
                        const char *prefix, const char *a, const char *b)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *fp = fopen(path, "w");
    CHECK(fp);
    fprintf(fp, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    for (int i = 0; i < f->hdr.n_tensors; i++)
        fprintf(fp, "%s\"%s%s\": \"%s\"", i ? ", " : "", prefix,
                f->hdr.tensors[i].name, i < split ? a : b);
    fprintf(fp, "}}\n");
    CHECK(fclose(fp) == 0);
}

static void test_prefixes(const char *model)
{
    static const struct {
        const char *prefix;
        const char *extra[3];
        int n_extra;
    } cases[] = {
        {"bert.", {"cls.predictions.bias", "cls.predictions.transform.dense"
                                           ".bias"}, 2},
        {"roberta.", {"lm_head.bias", "lm_head.dense.bias"}, 2},
        {"model.", {"head.dense.bias", "decoder.bias", "lm_head.bias"}, 3},
        {"0.auto_model.", {0}, 0},
        {"encoder.", {0}, 0},
    };
    char path[1024], dir0[512];
    int dim = 0;
    sn__st_file_t *f = open_fixture(model);

    /* the bare checkpoint, rewritten by the same writer */
    snprintf(dir0, sizeof dir0, "%s", copy_model(model, "bare"));
    snprintf(path, sizeof path, "%s/model.safetensors", dir0);
    write_st(path, f, 0, f->hdr.n_tensors, "", NULL, 0);
    float *ref = embed_all(dir0, &dim);

    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char name[64], what[96];
        snprintf(name, sizeof name, "prefix-%zu", k);
        const char *dir = copy_model(model, name);
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        write_st(path, f, 0, f->hdr.n_tensors, cases[k].prefix,
                 cases[k].extra, cases[k].n_extra);
        snprintf(what, sizeof what, "%s: '%s' prefix", model,
                 cases[k].prefix);
        expect_same(what, dir, ref, dim);
    }

    /* a tensor under the prefix that the model does not have is still an
     * error (only the wrapper's own tensors, outside it, are ignored) */
    {
        const char *dir = copy_model(model, "prefix-stray");
        const char *stray[] = {"bert.encoder.layer.0.stray.bias"};
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        write_st(path, f, 0, f->hdr.n_tensors, "bert.", stray, 1);
        expect_fail("stray tensor under the prefix", dir,
                    "unexpected tensor", "bert.encoder.layer.0.stray.bias");
    }

    /* sharded, with and without a prefix */
    for (int k = 0; k < 2; k++) {
        const char *prefix = k ? "bert." : "";
        char name[64], what[96];
        snprintf(name, sizeof name, "shards-%d", k);
        const char *dir = copy_model(model, name);
        int split = f->hdr.n_tensors / 2;
        snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors",
                 dir);
        write_st(path, f, 0, split, prefix, NULL, 0);
        snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors",
                 dir);
        write_st(path, f, split, f->hdr.n_tensors, prefix, NULL, 0);
        write_index(dir, f, split, prefix, "model-00001-of-00002.safetensors",
                    "model-00002-of-00002.safetensors");
        snprintf(what, sizeof what, "%s: 2 shards%s", model,
                 k ? ", 'bert.' prefix" : "");
        expect_same(what, dir, ref, dim);
        if (!k) {
            /* a missing shard */
            snprintf(path, sizeof path,
                     "rm '%s/model-00002-of-00002.safetensors'", dir);
            sh(path);
            expect_fail("missing shard", dir,
                        "model-00002-of-00002.safetensors", "missing");
            /* the index promises a tensor shard 1 lacks */
            snprintf(path, sizeof path,
                     "%s/model-00002-of-00002.safetensors", dir);
            write_st(path, f, split, f->hdr.n_tensors, "", NULL, 0);
            write_index(dir, f, split + 1, "",
                        "model-00001-of-00002.safetensors",
                        "model-00002-of-00002.safetensors");
            expect_fail("index and shard disagree", dir,
                        "model.safetensors.index.json", f->hdr.tensors[split]
                                                            .name);
            /* a tensor in both shards */
            snprintf(path, sizeof path,
                     "%s/model-00002-of-00002.safetensors", dir);
            write_st(path, f, split - 1, f->hdr.n_tensors, "", NULL, 0);
            write_index(dir, f, split, "",
                        "model-00001-of-00002.safetensors",
                        "model-00002-of-00002.safetensors");
            expect_fail("tensor in two shards", dir, "two shards",
                        f->hdr.tensors[split - 1].name);
            /* an index naming a path outside the folder */
            write_text(dir, "model.safetensors.index.json",
                       "{\"weight_map\": {\"x\": \"../model.safetensors\"}}");
            expect_fail("index names a path", dir,
                        "model.safetensors.index.json", "not a file name");
            write_text(dir, "model.safetensors.index.json", "{\"weight_map\"");
            expect_fail("malformed index", dir,
                        "model.safetensors.index.json", "malformed");
        }
    }
    free(ref);
    sn__st_close(f);
}

static void test_formats(void)
{
    const char *dir;

    dir = copy_model("tiny-bert-uncased", "pytorch-only");
    write_text(dir, "pytorch_model.bin", "not really a pickle");
    expect_fail("only pytorch_model.bin", dir, "pytorch_model.bin",
                "save_file(");

    dir = copy_model("tiny-bert-uncased", "pytorch-shards");
    write_text(dir, "pytorch_model.bin.index.json", "{}");
    expect_fail("only pytorch_model.bin shards", dir, "pytorch_model.bin",
                "convert");

    dir = copy_model("tiny-bert-uncased", "onnx-only");
    {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "mkdir '%s/onnx' && touch '%s/onnx/model.onnx'",
                 dir, dir);
        sh(cmd);
    }
    expect_fail("only onnx/", dir, "onnx/", "model.safetensors");

    dir = copy_model("tiny-bert-uncased", "no-weights");
    expect_fail("no weights at all", dir, "model.safetensors",
                "weights are missing");
}

int main(void)
{
    CHECK(mkdtemp(base) != NULL);
    /* every architecture binds through the same layer */
    static const char *const models[] = {
        "tiny-bert-uncased", "tiny-xlmr-unigram", "tiny-mpnet",
        "tiny-distilbert-dense", "tiny-modernbert", "tiny-qwen3-lasttoken",
        "tiny-st5-dense", "tiny-roberta-bpe",
    };
    for (size_t i = 0; i < sizeof models / sizeof *models; i++)
        test_prefixes(models[i]);
    test_formats();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    sh(cmd);
    printf("weights: ok\n");
    return 0;
}
