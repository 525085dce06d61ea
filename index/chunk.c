/*
 * chunk.c -- sn_chunk_text(): split a document into spans that each fit the
 * encoder's window, cutting at sentence ends where it can.
 *
 * How:
 *   1. The text is cut into units that tile it exactly: one per word (a run
 *      of non-space characters and the whitespace after it; leading
 *      whitespace goes with the first word). A word ends a sentence when it
 *      ends in . ! or ? (possibly followed by closing quotes or brackets)
 *      and whitespace follows, or when a blank line follows it, or at the
 *      end of the text.
 *   2. The whole text is tokenized once; each token counts for the unit its
 *      first character falls in. A unit with more tokens than fit in a
 *      chunk is split at token starts ("anywhere").
 *   3. Chunks are packed greedily from units. A chunk that cannot take the
 *      rest of the text ends after its last sentence end, else at its last
 *      word boundary. The next chunk starts far enough back to repeat about
 *      `overlap` tokens: whole sentences when they give at least half of
 *      it, else whole words.
 *   4. Every chunk is tokenized on its own to check it: the per-unit sums
 *      are an estimate (a tokenizer need not split the same way inside a
 *      substring), so a chunk over max_tokens drops its last unit, and a
 *      single unit over it is cut where the truncated encoding ends.
 *
 * Invariants: spans are in code points, non-empty (except the single span
 * of an empty text), ordered, the first starts at 0, the last ends at the
 * text's length, each starts at or before the previous one's end (no gaps)
 * and after the previous one's start; each tokenizes to at most max_tokens
 * tokens, specials included.
 *
 * Cost: one tokenization of the whole text, plus one per chunk (about
 * (1 + overlap / max_tokens) times the text again). Texts up to
 * SN_CHUNK_MAX_TEXT bytes, the tokenizer's own limit.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "embed_int.h"
#include "sense/store.h"

#define SN_CHUNK_MAX_TEXT (1u << 24) /* as SN_TOK_MAX_TEXT */
#define MAX_CUT_TRIES 64             /* re-cuts of one over-long unit */

typedef struct {
    int32_t start, end; /* code points, [start, end) */
    int tokens;         /* estimated, specials excluded */
    uint8_t sent_end;   /* a sentence ends with this unit */
    uint8_t word_start; /* this unit starts a word (not a piece of one) */
} unit_t;

typedef struct {
    const sn_tokenizer_t *tok;
    const char *text;
    const int32_t *boff; /* byte offset of each code point, n_cp + 1 */
    int32_t n_cp;
    int max_tokens;
    sn_encoding_t enc;
    unit_t *u;
    int n_u, cap_u;
} chunker_t;

static int is_space(int32_t cp)
{
    if (cp == ' ' || (cp >= '\t' && cp <= '\r'))
        return 1;
    if (cp < 0x80)
        return 0;
    utf8proc_category_t c = utf8proc_category(cp);
    return c == UTF8PROC_CATEGORY_ZS || c == UTF8PROC_CATEGORY_ZL ||
           c == UTF8PROC_CATEGORY_ZP || cp == 0x85;
}

static int is_closer(int32_t cp)
{
    return cp == '"' || cp == '\'' || cp == ')' || cp == ']' || cp == '}' ||
           cp == 0x2019 || cp == 0x201d || cp == 0xbb;
}

/* Tokens in code points [a, b) of the text, specials included. */
static int count_tokens(chunker_t *ck, int32_t a, int32_t b, int max_tokens,
                        int *n, char *err, size_t err_len)
{
    int rc = sn_tokenizer_encode(ck->tok, ck->text + ck->boff[a],
                                 (size_t)(ck->boff[b] - ck->boff[a]),
                                 max_tokens, &ck->enc, err, err_len);
    if (rc < 0)
        return rc;
    *n = ck->enc.n_tokens;
    return 0;
}

static int push_unit(chunker_t *ck, unit_t u)
{
    if (ck->n_u == ck->cap_u) {
        int cap = ck->cap_u ? ck->cap_u * 2 : 256;
        unit_t *v = realloc(ck->u, (size_t)cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        ck->u = v;
        ck->cap_u = cap;
    }
    ck->u[ck->n_u++] = u;
    return 0;
}

/* Split unit i at code point cut: [start, cut) and [cut, end). */
static int split_unit(chunker_t *ck, int i, int32_t cut)
{
    unit_t tail = ck->u[i];
    if (push_unit(ck, tail) < 0) /* grow by one */
        return -ENOMEM;
    memmove(&ck->u[i + 2], &ck->u[i + 1],
            (size_t)(ck->n_u - i - 2) * sizeof *ck->u);
    ck->u[i].end = cut;
    ck->u[i].sent_end = 0;
    tail.start = cut;
    tail.word_start = 0;
    ck->u[i + 1] = tail;
    return 0;
}

/* Step 1 and 2: words with their sentence ends and token counts, long
 * words split into pieces of at most `piece` tokens. */
static int make_units(chunker_t *ck, const int32_t *cps, int piece,
                      char *err, size_t err_len)
{
    int32_t i = 0;
    int rc;

    while (i < ck->n_cp) {
        unit_t u = {.start = i, .word_start = 1};
        int32_t last = -1, nl = 0, j;
        if (ck->n_u == 0)
            while (i < ck->n_cp && is_space(cps[i]))
                i++;
        while (i < ck->n_cp && !is_space(cps[i]))
            last = i++;
        for (j = i; j < ck->n_cp && is_space(cps[j]); j++)
            nl += cps[j] == '\n';
        if (last >= 0) {
            while (last > u.start && is_closer(cps[last]))
                last--;
            if ((cps[last] == '.' || cps[last] == '!' || cps[last] == '?') &&
                j > i)
                u.sent_end = 1;
        }
        if (nl >= 2 || j == ck->n_cp)
            u.sent_end = 1;
        u.end = i = j;
        if (push_unit(ck, u) < 0)
            return sn__err(err, err_len, -ENOMEM, "chunk: out of memory");
    }
    /* Count each token for the unit its first character is in. */
    if ((rc = count_tokens(ck, 0, ck->n_cp, 0, &(int){0}, err, err_len)) < 0)
        return rc;
    for (int t = 0, w = 0; t < ck->enc.n_tokens; t++) {
        if (ck->enc.special[t])
            continue;
        int32_t s = ck->enc.start[t];
        while (w + 1 < ck->n_u && ck->u[w + 1].start <= s)
            w++;
        while (w > 0 && ck->u[w].start > s) /* offsets out of order */
            w--;
        ck->u[w].tokens++;
    }
    /* Split the words that cannot fit a chunk at their token starts. The
     * encoding is walked again, front to back, while units are inserted
     * behind the cursor. */
    for (int t = 0, w = 0; t < ck->enc.n_tokens; t++) {
        if (ck->enc.special[t])
            continue;
        int32_t s = ck->enc.start[t];
        while (w + 1 < ck->n_u && ck->u[w + 1].start <= s)
            w++;
        if (ck->u[w].tokens <= piece)
            continue;
        /* t is the first token of an over-long unit w: cut it before every
         * `piece`-th token (where that token starts inside it). */
        int total = ck->u[w].tokens, in_piece = 0;
        for (; t < ck->enc.n_tokens; t++) {
            if (ck->enc.special[t])
                continue;
            s = ck->enc.start[t];
            if (s >= ck->u[w].end)
                break; /* the next unit's */
            if (in_piece >= piece && s > ck->u[w].start) {
                if (split_unit(ck, w, s) < 0)
                    return sn__err(err, err_len, -ENOMEM, "chunk: out of "
                                   "memory");
                ck->u[w].tokens = in_piece;
                total -= in_piece;
                ck->u[++w].tokens = total;
                in_piece = 0;
            }
            in_piece++;
        }
        t--;
    }
    return 0;
}

/* Tokens of units [a, b), as estimated. */
static int64_t est(const chunker_t *ck, int a, int b)
{
    int64_t n = 0;
    for (int i = a; i < b; i++)
        n += ck->u[i].tokens;
    return n;
}

/* Step 3: where the chunk starting at unit s ends (exclusive), given the
 * previous chunk ended at unit prev_e. */
static int chunk_end(const chunker_t *ck, int s, int prev_e, int budget)
{
    int64_t n = 0;
    int e = s;

    while (e < ck->n_u && n + ck->u[e].tokens <= budget)
        n += ck->u[e++].tokens;
    if (e == s)
        return s + 1; /* one unit over the estimate: step 4 cuts it */
    if (e == ck->n_u)
        return e;
    for (int b = e - 1; b >= s && b + 1 > prev_e; b--)
        if (ck->u[b].sent_end)
            return b + 1;
    for (int w = e; w > s && w > prev_e; w--)
        if (ck->u[w].word_start)
            return w;
    return e;
}

/* Step 3: where the chunk after [s, e) starts, repeating about `overlap`
 * tokens; e for none. */
static int next_start(const chunker_t *ck, int s, int e, int overlap,
                      int budget)
{
    int best_sent = -1, best_word = -1;
    int64_t acc = 0;

    if (overlap <= 0 || e >= ck->n_u)
        return e;
    for (int j = e - 1; j > s; j--) {
        acc += ck->u[j].tokens;
        if (acc > overlap)
            break;
        if (ck->u[j].word_start)
            best_word = j;
        if (ck->u[j - 1].sent_end)
            best_sent = j;
    }
    int j = best_sent >= 0 && 2 * est(ck, best_sent, e) >= overlap
                ? best_sent
                : best_word;
    /* An overlap that leaves no room for the next unit would only repeat
     * the chunk just made. */
    if (j < 0 || est(ck, j, e) + ck->u[e].tokens > budget)
        return e;
    return j;
}

int sn_chunk_text(const sn_tokenizer_t *tok, const char *text, size_t len,
                  int max_tokens, int overlap, int32_t **spans_out,
                  int *n_out, char *err, size_t err_len)
{
    chunker_t ck = {.tok = tok, .text = text, .max_tokens = max_tokens};
    int32_t *cps = NULL, *boff = NULL, *spans = NULL;
    int n_spans = 0, cap_spans = 0, n_special, budget, rc;

    if (!spans_out || !n_out || !tok || (!text && len))
        return sn__err(err, err_len, SN_EARG, "chunk: bad arguments");
    *spans_out = NULL;
    *n_out = 0;
    if (len > SN_CHUNK_MAX_TEXT)
        return sn__err(err, err_len, SN_ETOOBIG, "chunk: text of %zu bytes "
                       "(limit %u)", len, SN_CHUNK_MAX_TEXT);
    if (max_tokens <= 0 || overlap < 0)
        return sn__err(err, err_len, SN_EARG, "chunk: max_tokens %d, "
                       "overlap %d", max_tokens, overlap);
    cps = malloc((len + 1) * sizeof *cps);
    boff = malloc((len + 1) * sizeof *boff);
    if (!cps || !boff) {
        rc = sn__err(err, err_len, -ENOMEM, "chunk: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(
            (const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(len - i),
            &cp);
        if (k <= 0) {
            rc = sn__err(err, err_len, SN_EUTF8, "chunk: invalid utf-8 at "
                         "byte %zu", i);
            goto fail;
        }
        boff[ck.n_cp] = (int32_t)i;
        cps[ck.n_cp++] = cp;
        i += (size_t)k;
    }
    boff[ck.n_cp] = (int32_t)len;
    ck.boff = boff;
    if (ck.n_cp == 0) {
        if (!(spans = calloc(2, sizeof *spans))) {
            rc = sn__err(err, err_len, -ENOMEM, "chunk: out of memory");
            goto fail;
        }
        n_spans = 1;
        goto done;
    }
    if ((rc = count_tokens(&ck, 0, 0, 0, &n_special, err, err_len)) < 0)
        goto fail;
    budget = max_tokens - n_special;
    if (budget < 1) {
        rc = sn__err(err, err_len, SN_EARG, "chunk: max_tokens %d leaves no "
                     "room beside %d special tokens", max_tokens, n_special);
        goto fail;
    }
    if (overlap > budget / 2)
        overlap = budget / 2;
    if ((rc = make_units(&ck, cps, budget > 1 ? budget / 2 : 1, err,
                         err_len)) < 0)
        goto fail;

    for (int s = 0, prev_e = 0; s < ck.n_u;) {
        int e = chunk_end(&ck, s, prev_e, budget), n, tries = 0;
        /* Step 4: check with the real tokenizer. */
        for (;;) {
            if ((rc = count_tokens(&ck, ck.u[s].start, ck.u[e - 1].end, 0, &n,
                                   err, err_len)) < 0)
                goto fail;
            if (n <= max_tokens)
                break;
            if (e - s > 1) {
                e--;
                continue;
            }
            /* One unit too long on its own: cut it where the truncated
             * encoding ends, one code point shorter on each retry. */
            int32_t a = ck.u[s].start, b = ck.u[s].end, cut = a;
            if ((rc = count_tokens(&ck, a, b, max_tokens, &n, err,
                                   err_len)) < 0)
                goto fail;
            for (int t = 0; t < ck.enc.n_tokens; t++)
                if (!ck.enc.special[t] && a + ck.enc.end[t] > cut)
                    cut = a + ck.enc.end[t];
            cut -= tries;
            if (cut <= a)
                cut = a + 1;
            if (cut >= b || ++tries > MAX_CUT_TRIES) {
                rc = sn__err(err, err_len, SN_ETOOBIG, "chunk: cannot cut "
                             "[%d, %d) to %d tokens", a, b, max_tokens);
                goto fail;
            }
            int fit = 0, old = ck.u[s].tokens;
            for (int t = 0; t < ck.enc.n_tokens; t++)
                fit += !ck.enc.special[t] && a + ck.enc.end[t] <= cut;
            if (split_unit(&ck, s, cut) < 0) {
                rc = sn__err(err, err_len, -ENOMEM, "chunk: out of memory");
                goto fail;
            }
            ck.u[s].tokens = fit;
            ck.u[s + 1].tokens = old > fit ? old - fit : 0;
        }
        if (n_spans == cap_spans) {
            int cap = cap_spans ? cap_spans * 2 : 16;
            int32_t *v = realloc(spans, (size_t)cap * 2 * sizeof *v);
            if (!v) {
                rc = sn__err(err, err_len, -ENOMEM, "chunk: out of memory");
                goto fail;
            }
            spans = v;
            cap_spans = cap;
        }
        spans[2 * n_spans] = ck.u[s].start;
        spans[2 * n_spans + 1] = ck.u[e - 1].end;
        n_spans++;
        if (e >= ck.n_u)
            break;
        prev_e = e;
        s = next_start(&ck, s, e, overlap, budget);
    }
done:
    *spans_out = spans;
    *n_out = n_spans;
    rc = 0;
    spans = NULL;
fail:
    free(spans);
    free(cps);
    free(boff);
    free(ck.u);
    sn_encoding_free(&ck.enc);
    return rc;
}
