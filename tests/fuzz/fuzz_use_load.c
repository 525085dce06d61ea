/*
 * fuzz_use_load.c -- libFuzzer target for the TF.js weight loader of the
 * default model (embed/use_lite.c: model.json's graph and weightsManifest,
 * the shards, binding every weight by name and shape).
 *
 * The loader reads a folder, so the input is a folder in one buffer:
 *
 *   u32 little-endian  n: the length of model.json (clamped to what is left)
 *   n bytes            model.json
 *   the rest           the bytes of one shard file, "s"
 *
 * written to a private temporary folder beside a small fixed vocab.json,
 * then sn__use_load() on it. It must fail with a message or load a model
 * whose sizes are sane; never crash, leak or read past a shard. Corpus:
 * tests/fuzz/corpus/fuzz_use_load/, from tests/fuzz/make_use_corpus.py
 * (the real model.json with its manifest pointed at "s", weights shrunk or
 * damaged in the ways the loader must refuse).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "embed_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[64];

static void put(const char *name, const void *p, size_t len)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(p, 1, len, f) != len) || fclose(f) != 0)
        abort();
}

static void cleanup(void)
{
    static const char *const names[] = {"model.json", "s", "vocab.json"};
    char path[128];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", g_dir, names[i]);
        unlink(path);
    }
    rmdir(g_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char vocab[] =
        "[[\"<unk>\",0],[\"<s>\",0],[\"</s>\",0],[\"\\u2581a\",-1.5],"
        "[\"\\u2581b\",-2.5],[\"b\",-3]]";
    sn__use_t *m = NULL;
    char err[512];

    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "/tmp/sn_fuzz_use_XXXXXX");
        if (!mkdtemp(g_dir))
            abort();
        atexit(cleanup);
        put("vocab.json", vocab, sizeof vocab - 1);
    }
    if (size < 4)
        return 0;
    size_t n = (size_t)data[0] | (size_t)data[1] << 8 |
               (size_t)data[2] << 16 | (size_t)data[3] << 24;
    if (n > size - 4)
        n = size - 4;
    put("model.json", data + 4, n);
    put("s", data + 4 + n, size - 4 - n);

    err[0] = '\0';
    int rc = sn__use_load(g_dir, &m, err, sizeof err);
    if (rc < 0) {
        if (m || !err[0] || !memchr(err, '\0', sizeof err))
            abort();
        return 0;
    }
    if (!m || sn__use_dim(m) <= 0 || sn__use_hidden(m) <= 0 ||
        sn__use_max_tokens(m) <= 0 || !sn__use_tokenizer(m))
        abort();
    sn__use_free(m);
    return 0;
}
