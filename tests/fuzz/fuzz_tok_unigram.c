/*
 * fuzz_tok_unigram.c -- libFuzzer target for the Unigram tokenizer
 * (embed/unigram.c), driven through its internal entry points.
 *
 * Two tokenizers are loaded once: the tiny-xlmr-unigram fixture (Nmt, NFKC,
 * collapse spaces, Metaspace) and an inline one that reaches the other
 * paths (NFD, Lowercase, Strip, Prepend, regex and literal Replace, NFC,
 * WhitespaceSplit, Metaspace "first", byte fallback). Each input that is
 * valid UTF-8 is encoded by both; invalid UTF-8 is skipped (rejecting it is
 * tokenizer.c's job). The encode must succeed, and every token must carry an
 * id in the vocabulary and offsets inside the text.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <utf8proc.h>

#include "embed_int.h"
#include "tokenizer_int.h"

#define FUZZ_MAX_INPUT (1 << 16)

static sn_tokenizer_t g_fixture, g_inline;
static int g_loaded;

static const char inline_model[] =
    "{\"type\":\"Unigram\",\"unk_id\":0,\"byte_fallback\":true,\"vocab\":["
    "[\"<unk>\",0],[\"\\u2581\",-1],[\"a\",-2],[\"b\",-2],[\"\\u2581ab\",-1.5],"
    "[\"<0xC3>\",-5],[\"<0xA9>\",-5],[\"c\",-3],[\"i\\u0307\",-4],"
    "[\"e\\u0301\",-4],[\"\\u00e9\",-4],[\"<unk>x\",-6]]}";
static const char inline_normalizer[] =
    "{\"type\":\"Sequence\",\"normalizers\":["
    "{\"type\":\"NFD\"},{\"type\":\"Lowercase\"},"
    "{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":true},"
    "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"a{2,3}\"},\"content\":\"bc\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\"ab\"},\"content\":\"\"},"
    "{\"type\":\"Prepend\",\"prepend\":\"x\"},{\"type\":\"NFC\"},"
    "{\"type\":\"NFKD\"},{\"type\":\"NFKC\"},{\"type\":\"Nmt\"}]}";
static const char inline_pretok[] =
    "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"WhitespaceSplit\"},"
    "{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\","
    "\"prepend_scheme\":\"first\",\"split\":true}]}";

static void load_or_die(sn_tokenizer_t *tok, const json_t *model,
                        const json_t *normalizer, const json_t *pretok)
{
    char err[512] = "";
    memset(tok, 0, sizeof *tok);
    if (sn__unigram_load(tok, model, normalizer, pretok, err, sizeof err)) {
        fprintf(stderr, "fuzz_tok_unigram: load failed: %s\n", err);
        abort();
    }
}

static void load_once(void)
{
    json_error_t je;
    json_t *root = json_load_file(
        SN_FIXTURES "/hf-reference/tiny-xlmr-unigram/model/tokenizer.json", 0,
        &je);
    if (!root) {
        fprintf(stderr, "fuzz_tok_unigram: cannot load the fixture: %s\n",
                je.text);
        abort();
    }
    load_or_die(&g_fixture, json_object_get(root, "model"),
                json_object_get(root, "normalizer"),
                json_object_get(root, "pre_tokenizer"));
    json_decref(root);

    json_t *m = json_loads(inline_model, 0, &je);
    json_t *n = json_loads(inline_normalizer, 0, &je);
    json_t *p = json_loads(inline_pretok, 0, &je);
    if (!m || !n || !p)
        abort();
    load_or_die(&g_inline, m, n, p);
    json_decref(m);
    json_decref(n);
    json_decref(p);
    g_loaded = 1;
}

static void encode_and_check(const sn_tokenizer_t *tok, const uint32_t *cps,
                             int n)
{
    sn__toks_t toks = {0};
    int rc = sn__unigram_encode(tok, cps, n, &toks);
    if (rc != 0) {
        fprintf(stderr, "fuzz_tok_unigram: encode failed: %d\n", rc);
        abort();
    }
    for (int i = 0; i < toks.n; i++) {
        const sn__tok_t *t = &toks.v[i];
        /* start > end can happen (HF does it too) when canonical reordering
         * shuffles alignments, so only the bounds are checked */
        if (t->id < 0 || t->id >= tok->vocab.n_pieces || t->start < 0 ||
            t->end > n || t->end < 0 || t->start > n) {
            fprintf(stderr, "fuzz_tok_unigram: bad token %d: id %d [%d,%d) "
                            "of %d\n",
                    i, t->id, t->start, t->end, n);
            abort();
        }
    }
    sn__toks_free(&toks);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_loaded)
        load_once();
    if (size > FUZZ_MAX_INPUT)
        return 0;
    uint32_t *cps = malloc((size + 1) * sizeof *cps);
    if (!cps)
        return 0;
    int n = 0;
    size_t i = 0;
    while (i < size) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(data + i,
                                              (utf8proc_ssize_t)(size - i), &c);
        if (k <= 0) { /* invalid UTF-8: not ours to tokenize */
            free(cps);
            return 0;
        }
        cps[n++] = (uint32_t)c;
        i += (size_t)k;
    }
    encode_and_check(&g_fixture, cps, n);
    encode_and_check(&g_inline, cps, n);
    free(cps);
    return 0;
}
