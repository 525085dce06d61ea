/*
 * fuzz_tok_use.c -- libFuzzer target for the default model's tokenizer
 * (embed/use_tokenizer.c) through the public sn_tokenizer_encode, and for
 * its vocab.json parser.
 *
 * The first byte picks the mode. Mode 0: the rest is text, encoded with the
 * real vocabulary (loaded once from the default model's folder, which
 * scripts/setup installs; SENSE_DEFAULT_MODEL overrides it) with and
 * without truncation; the encode must succeed or reject invalid UTF-8, and
 * every token must have an id in the vocabulary and offsets inside the
 * text. Mode 1: the rest is a vocab.json to parse; it may fail, never crash,
 * and a tokenizer it accepts must encode a fixed text.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embed_int.h"
#include "tokenizer_int.h"

static sn_tokenizer_t *g_tok;

static void load_once(void)
{
    char dir[4096], path[4200], err[512];
    char *buf;
    size_t len;
    if (g_tok)
        return;
    if (sn_model_default_path(dir, sizeof dir) != 0) {
        fprintf(stderr, "fuzz_tok_use: no default model path\n");
        abort();
    }
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    if (sn__read_file(path, 64u << 20, &buf, &len, err, sizeof err) ||
        sn__usetok_new(buf, len, path, &g_tok, err, sizeof err)) {
        fprintf(stderr, "fuzz_tok_use: %s (run scripts/setup)\n", err);
        abort();
    }
    free(buf);
}

static void check(const sn_tokenizer_t *tok, const char *text, size_t len,
                  int max_tokens)
{
    sn_encoding_t enc = {0};
    char err[256];
    int rc = sn_tokenizer_encode(tok, text, len, max_tokens, &enc, err,
                                 sizeof err);
    if (rc == 0) {
        int32_t n_cp = 0;
        for (size_t i = 0; i < len; i++)
            n_cp += ((uint8_t)text[i] & 0xC0) != 0x80;
        if (max_tokens > 0 && enc.n_tokens > max_tokens)
            abort();
        for (int t = 0; t < enc.n_tokens; t++) {
            if (enc.ids[t] < 0 || enc.ids[t] >= sn_tokenizer_n_vocab(tok))
                abort();
            if (enc.start[t] < 0 || enc.start[t] > enc.end[t] ||
                enc.end[t] > n_cp)
                abort();
        }
    } else if (rc != SN_EUTF8 && rc != SN_ETOOBIG) {
        abort();
    }
    sn_encoding_free(&enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > (1 << 16))
        return 0;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    if (data[0] & 1) {
        sn_tokenizer_t *tok = NULL;
        char err[256];
        if (sn__usetok_new(rest, n, "fuzz", &tok, err, sizeof err) == 0) {
            check(tok, "the bank of the river", 21, 0);
            sn_tokenizer_free(tok);
        } else if (tok) {
            abort(); /* a failed load leaves nothing behind */
        }
        return 0;
    }
    load_once();
    check(g_tok, rest, n, 0);
    check(g_tok, rest, n, 8);
    return 0;
}
