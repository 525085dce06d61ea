/*
 * fuzz_tok_json.c -- libFuzzer target for tokenizer.json loading
 * (sn_tokenizer_from_json, and through it the WordPiece, Unigram and BPE
 * loaders, the normalizers with the Precompiled charsmap parser, the
 * pre-tokenizers with their PCRE2 patterns, and the post-processors).
 *
 * The input is the tokenizer.json text. Loading may fail, with a message;
 * when it succeeds, a few fixed texts and the input itself are encoded with
 * and without a limit, which must not crash, and the tokenizer is freed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sense/embed.h"
#include "sense/sense.h"

#define FUZZ_MAX_INPUT (1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const texts[] = {
        "", " ", "Hello, World! [CLS] x [SEP] <mask>",
        "na\xc3\xafve caf\xc3\xa9 \xc4\xb0stanbul",
        "\xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80 a\xcc\x81\xcc\x96",
    };
    sn_tokenizer_t *tok = NULL;
    sn_encoding_t enc = {0};
    char err[512];

    if (size > FUZZ_MAX_INPUT)
        return 0;
    if (sn_tokenizer_from_json((const char *)data, size, &tok, err,
                               sizeof err)) {
        if (tok || !err[0]) {
            fprintf(stderr, "fuzz_tok_json: failure without a message or "
                    "with a tokenizer\n");
            abort();
        }
        return 0;
    }
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        for (int max = 0; max <= 8; max += 8)
            sn_tokenizer_encode(tok, texts[i], strlen(texts[i]), max, &enc,
                                err, sizeof err);
    sn_tokenizer_encode(tok, (const char *)data, size, 16, &enc, err,
                        sizeof err);
    char buf[64];
    for (int i = 0; i < enc.n_tokens; i++)
        (void)sn_tokenizer_token_str(tok, &enc, i, (const char *)data, size,
                                     buf, sizeof buf);
    (void)sn_tokenizer_n_vocab(tok);
    (void)sn_tokenizer_piece(tok, 0);
    sn_encoding_free(&enc);
    sn_tokenizer_free(tok);
    return 0;
}
