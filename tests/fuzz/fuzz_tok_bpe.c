/*
 * fuzz_tok_bpe.c -- libFuzzer target for the byte-level BPE tokenizer
 * (embed/bpe.c) and the Precompiled normalizer (embed/normalizer.c),
 * driven through the public API with the fixture layouts that use them.
 *
 * Loaded once: tiny-qwen3-lasttoken (NFC, Split with the Qwen2 regex,
 * ByteLevel), tiny-roberta-bpe (ByteLevel, RobertaProcessing with
 * trim_offsets), tiny-me5-precompiled (Precompiled, Strip, Replace,
 * Metaspace), tiny-st5-dense (Precompiled, WhitespaceSplit, legacy
 * Metaspace), each from its folder (so with sentence-transformers' strip and
 * lowercasing), and an inline BPE that reaches the other paths (byte
 * fallback, fused unk, dropped chars, ignore_merges, every Split behaviour,
 * a literal pattern, WhitespaceSplit, Metaspace "first", ByteLevel with a
 * prefix space, the ByteLevel post-processor). Each input is encoded by all of them, with and
 * without a limit: invalid UTF-8 must fail with SN_EUTF8; otherwise the
 * encode must succeed and every token carry an id in the vocabulary, a
 * token string, and offsets inside the text.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sense/embed.h"
#include "sense/sense.h"

#define FUZZ_MAX_INPUT (1 << 16)
#define N_TOK 5

static sn_tokenizer_t *g_tok[N_TOK];

static const char inline_json[] =
    "{\"added_tokens\":[{\"id\":9,\"content\":\"<m>\",\"single_word\":false,"
    "\"lstrip\":true,\"rstrip\":true,\"normalized\":false,\"special\":true}],"
    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFKC\"},"
    "{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":false}]},"
    "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
    "{\"type\":\"Split\",\"pattern\":{\"String\":\"a\"},\"behavior\":"
    "\"MergedWithNext\",\"invert\":false},"
    "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\d\"},\"behavior\":"
    "\"MergedWithPrevious\",\"invert\":false},"
    "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\s*\"},\"behavior\":"
    "\"Contiguous\",\"invert\":true},"
    "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"x+\"},\"behavior\":"
    "\"Removed\",\"invert\":false},"
    "{\"type\":\"WhitespaceSplit\"},"
    "{\"type\":\"Metaspace\",\"replacement\":\"b\",\"prepend_scheme\":"
    "\"first\",\"split\":true},"
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"use_regex\":true}]},"
    "\"post_processor\":{\"type\":\"ByteLevel\",\"trim_offsets\":true,"
    "\"add_prefix_space\":true},"
    "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<u>\",\"fuse_unk\":true,"
    "\"byte_fallback\":true,\"ignore_merges\":true,"
    "\"vocab\":{\"<u>\":0,\"a\":1,\"b\":2,\"ab\":3,\"\\u0120\":4,"
    "\"\\u0120a\":5,\"<0xC3>\":6,\"<0xA9>\":7,\"abb\":8,\"<m>\":9},"
    "\"merges\":[\"a b\",[\"\\u0120\",\"a\"],\"ab b\"]}}";

static void load_once(void)
{
    static const char *const dirs[] = {"tiny-qwen3-lasttoken",
                                       "tiny-roberta-bpe",
                                       "tiny-me5-precompiled",
                                       "tiny-st5-dense"};
    char path[4096], err[512];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/hf-reference-2/%s/model", SN_FIXTURES,
                 dirs[i]);
        if (sn_tokenizer_load(path, &g_tok[i], err, sizeof err)) {
            fprintf(stderr, "fuzz_tok_bpe: %s\n", err);
            abort();
        }
    }
    if (sn_tokenizer_from_json(inline_json, strlen(inline_json), &g_tok[4],
                               err, sizeof err)) {
        fprintf(stderr, "fuzz_tok_bpe: inline: %s\n", err);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int loaded;
    sn_encoding_t enc = {0};
    char err[512], buf[256];
    size_t bad_at;

    if (!loaded) {
        load_once();
        loaded = 1;
    }
    if (size > FUZZ_MAX_INPUT)
        return 0;
    const char *text = (const char *)data;
    int valid = sn_utf8_valid(text, size, &bad_at);
    int32_t n_cps = 0;
    for (size_t i = 0; i < size; i++)
        n_cps += (data[i] & 0xC0) != 0x80;
    for (int k = 0; k < N_TOK; k++) {
        for (int max = 0; max <= 7; max += 7) {
            int rc = sn_tokenizer_encode(g_tok[k], text, size, max, &enc, err,
                                         sizeof err);
            if (!valid) {
                if (rc != SN_EUTF8)
                    abort();
                continue;
            }
            if (rc) {
                fprintf(stderr, "fuzz_tok_bpe: tokenizer %d: %s\n", k, err);
                abort();
            }
            if (max && enc.n_tokens > max)
                abort();
            for (int i = 0; i < enc.n_tokens; i++) {
                if (enc.ids[i] < 0 ||
                    enc.ids[i] >= sn_tokenizer_n_vocab(g_tok[k]) ||
                    enc.start[i] < 0 || enc.start[i] > enc.end[i] ||
                    enc.end[i] > n_cps ||
                    !sn_tokenizer_token_str(g_tok[k], &enc, i, text, size,
                                            buf, sizeof buf))
                    abort();
            }
        }
    }
    sn_encoding_free(&enc);
    return 0;
}
