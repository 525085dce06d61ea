/*
 * fuzz_tok_wordpiece.c -- libFuzzer target for the WordPiece tokenizer
 * through the public API (embed/tokenizer.c + embed/wordpiece.c).
 *
 * The tiny-bert-uncased fixture is loaded once from SN_FIXTURES. Each input
 * is encoded as text twice, without a limit and with max_tokens = 32.
 * Invalid UTF-8 must fail with SN_EUTF8 and nothing else may fail; a
 * successful encoding must have [CLS] first and [SEP] last, ids inside the
 * vocabulary, non-special offsets with 0 <= start <= end <= the number of
 * code points and starts that never decrease, and the truncated encoding
 * must be the head of the full one.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sense/sense.h"

#define FUZZ_MAX_INPUT (1 << 16)

static sn_tokenizer_t *g_tok;

static void load_once(void)
{
    char err[512];
    if (g_tok)
        return;
    if (sn_tokenizer_load(SN_FIXTURES "/hf-reference/tiny-bert-uncased/model",
                          &g_tok, err, sizeof err)) {
        fprintf(stderr, "fuzz_tok_wordpiece: %s\n", err);
        abort();
    }
}

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_tok_wordpiece: %s\n", what);
        abort();
    }
}

static void check_encoding(const sn_encoding_t *e, int32_t n_cps)
{
    int n_vocab = sn_tokenizer_n_vocab(g_tok);
    int32_t last_start = 0;
    check(e->n_tokens >= 2 && e->n_tokens <= e->cap, "token count");
    check(e->special[0] && e->special[e->n_tokens - 1], "specials in place");
    for (int i = 0; i < e->n_tokens; i++) {
        check(e->ids[i] >= 0 && e->ids[i] < n_vocab, "id in the vocabulary");
        if (e->special[i]) {
            check(e->start[i] == 0 && e->end[i] == 0, "special offsets");
            continue;
        }
        check(e->start[i] >= last_start, "starts never decrease");
        check(e->start[i] <= e->end[i] && e->end[i] <= n_cps,
              "offsets inside the text");
        last_start = e->start[i];
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sn_encoding_t full = {0}, cut = {0};
    char err[512];

    load_once();
    if (size > FUZZ_MAX_INPUT)
        return 0;
    int32_t n_cps = 0;
    for (size_t i = 0; i < size; i++)
        n_cps += (data[i] & 0xc0) != 0x80;

    int rc = sn_tokenizer_encode(g_tok, (const char *)data, size, 0, &full,
                                 err, sizeof err);
    int rc2 = sn_tokenizer_encode(g_tok, (const char *)data, size, 32, &cut,
                                  err, sizeof err);
    check(rc == rc2, "same result with and without a limit");
    if (rc == 0) {
        check_encoding(&full, n_cps);
        check_encoding(&cut, n_cps);
        check(cut.n_tokens <= 32, "limit respected");
        for (int i = 0; i + 1 < cut.n_tokens; i++)
            check(cut.ids[i] == full.ids[i] && cut.start[i] == full.start[i],
                  "truncation keeps the head");
    } else {
        check(rc == SN_EUTF8, "only invalid utf-8 may fail");
    }
    sn_encoding_free(&full);
    sn_encoding_free(&cut);
    return 0;
}
