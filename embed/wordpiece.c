/*
 * wordpiece.c -- the WordPiece tokenizer of BERT models: BertNormalizer,
 * BertPreTokenizer and the greedy longest-match-first WordPiece model, token
 * for token and offset for offset as Hugging Face tokenizers 0.23 does them.
 *
 * The pipeline, in HF's order:
 *   clean_text      drop U+0000, U+FFFD and controls (Cc, Cf, Co, but not
 *                   \t \n \r); map whitespace (White_Space, \t \n \r) to ' '
 *   chinese chars   a CJK ideograph (BERT's ranges) becomes a word of its own
 *   strip_accents   NFD, then drop nonspacing marks (Mn); null in the json
 *                   means "as lowercase"
 *   lowercase       full lowercase mapping, char by char (U+0130 'İ' gives
 *                   'i' + U+0307, as Rust's char::to_lowercase does)
 *   pre-tokenizer   split on whitespace (dropped); every punctuation char
 *                   (ASCII punctuation or a P* category) is a word of its own
 *   WordPiece       the longest vocabulary prefix of the word, then the
 *                   longest "##" continuation, and so on; a word of more than
 *                   max_input_chars chars, or one whose rest cannot be
 *                   matched, is a single unk token spanning the word
 *
 * Invariants:
 *   - Every normalized code point carries the [start, end) span of the
 *     original code point it descends from, assigned positionally as HF's
 *     NormalizedString::transform assigns byte alignments: a char that
 *     replaces one takes that one's span, an inserted char takes the span of
 *     the char replaced before it. A token spans from its first char's start
 *     to its last char's end, so chars made by NFD or lowercasing share their
 *     source's span and dropped chars vanish from the spans.
 *   - Every step is char-local except canonical reordering, which never
 *     crosses a starter. The text is therefore normalized in chunks of about
 *     WP_CHUNK chars, each cut just before a char that survives clean_text
 *     and decomposes to a starter: the chunks give what the whole text gives.
 *     Words may straddle chunks: the word being assembled is carried over,
 *     and only its first max_input_chars chars are kept (a longer word is unk
 *     whatever it holds). Scratch memory is bounded by the chunk size and
 *     max_input_chars, not by the text (a chunk grows past WP_CHUNK only
 *     through a run of combining marks, which has no cut point).
 *   - Unicode versions are HF's, not utf8proc's: HF takes general categories
 *     from the unicode_categories crate (Unicode 8.0) and NFD from
 *     unicode-normalization-alignments (Unicode 9.0). utf8proc 2.8 knows
 *     Unicode 15.0, so two generated tables correct it: chars it puts in
 *     Cc/Cf/Co/Mn/P* that Unicode 8.0 had not assigned (HF sees them as
 *     unassigned, i.e. plain letters), and chars with a canonical
 *     decomposition or a nonzero combining class that Unicode 9.0 had not
 *     assigned (HF leaves them alone in NFD). Category changes of chars
 *     assigned in both versions are not modelled.
 *   - sn__wordpiece_encode is reentrant: the tokenizer is read-only and all
 *     scratch memory belongs to the call.
 *
 * Tuned for: documents of a few KiB to a few MiB against vocabularies of
 * 30k-120k pieces. Each candidate piece costs one hash lookup; the prefix is
 * written in place in front of the candidate, so no candidate is copied.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <utf8proc.h>

#include "embed_int.h"
#include "tokenizer_int.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define WP_MAX_DECOMP 8          /* canonical decompositions have <= 4 */
#define WP_DEFAULT_MAX_CHARS 100 /* HF's max_input_chars_per_word */
#define WP_CHUNK 8192            /* original chars normalized at a time */

typedef struct {
    uint32_t lo, hi; /* inclusive */
} cp_range_t;

/* Chars that utf8proc 2.8 classes Cc, Cf, Co, Mn or P* but that Unicode 8.0
 * had not assigned. Generated from utf8proc 2.8.0 categories and the Age
 * property of Perl's Unicode 14 database, plus Unicode 15.0 additions. */
static const cp_range_t post_u8_chars[] = {
    {0x61D, 0x61D}, {0x7FD, 0x7FD}, {0x890, 0x891}, {0x898, 0x89F},
    {0x8CA, 0x8E2}, {0x9FD, 0x9FE}, {0xA76, 0xA76}, {0xAFA, 0xAFF},
    {0xB55, 0xB55}, {0xC04, 0xC04}, {0xC3C, 0xC3C}, {0xC77, 0xC77},
    {0xC84, 0xC84}, {0xD00, 0xD00}, {0xD3B, 0xD3C}, {0xD81, 0xD81},
    {0xEBA, 0xEBA}, {0xECE, 0xECE}, {0x180F, 0x180F}, {0x1ABF, 0x1ACE},
    {0x1B7D, 0x1B7E}, {0x1DF6, 0x1DFB}, {0x2E43, 0x2E4F}, {0x2E52, 0x2E5D},
    {0xA82C, 0xA82C}, {0xA8C5, 0xA8C5}, {0xA8FF, 0xA8FF}, {0x10D24, 0x10D27},
    {0x10EAB, 0x10EAD}, {0x10EFD, 0x10EFF}, {0x10F46, 0x10F50},
    {0x10F55, 0x10F59}, {0x10F82, 0x10F89}, {0x11070, 0x11070},
    {0x11073, 0x11074}, {0x110C2, 0x110C2}, {0x110CD, 0x110CD},
    {0x111CF, 0x111CF}, {0x1123E, 0x1123E}, {0x11241, 0x11241},
    {0x1133B, 0x1133B}, {0x11438, 0x1143F}, {0x11442, 0x11444},
    {0x11446, 0x11446}, {0x1144B, 0x1144F}, {0x1145A, 0x1145B},
    {0x1145D, 0x1145E}, {0x11660, 0x1166C}, {0x116B9, 0x116B9},
    {0x1182F, 0x11837}, {0x11839, 0x1183B}, {0x1193B, 0x1193C},
    {0x1193E, 0x1193E}, {0x11943, 0x11946}, {0x119D4, 0x119D7},
    {0x119DA, 0x119DB}, {0x119E0, 0x119E0}, {0x119E2, 0x119E2},
    {0x11A01, 0x11A0A}, {0x11A33, 0x11A38}, {0x11A3B, 0x11A47},
    {0x11A51, 0x11A56}, {0x11A59, 0x11A5B}, {0x11A8A, 0x11A96},
    {0x11A98, 0x11A9C}, {0x11A9E, 0x11AA2}, {0x11B00, 0x11B09},
    {0x11C30, 0x11C36}, {0x11C38, 0x11C3D}, {0x11C3F, 0x11C3F},
    {0x11C41, 0x11C45}, {0x11C70, 0x11C71}, {0x11C92, 0x11CA7},
    {0x11CAA, 0x11CB0}, {0x11CB2, 0x11CB3}, {0x11CB5, 0x11CB6},
    {0x11D31, 0x11D36}, {0x11D3A, 0x11D3A}, {0x11D3C, 0x11D3D},
    {0x11D3F, 0x11D45}, {0x11D47, 0x11D47}, {0x11D90, 0x11D91},
    {0x11D95, 0x11D95}, {0x11D97, 0x11D97}, {0x11EF3, 0x11EF4},
    {0x11EF7, 0x11EF8}, {0x11F00, 0x11F01}, {0x11F36, 0x11F3A},
    {0x11F40, 0x11F40}, {0x11F42, 0x11F4F}, {0x11FFF, 0x11FFF},
    {0x12FF1, 0x12FF2}, {0x13430, 0x13440}, {0x13447, 0x13455},
    {0x16E97, 0x16E9A}, {0x16F4F, 0x16F4F}, {0x16FE2, 0x16FE2},
    {0x16FE4, 0x16FE4}, {0x1CF00, 0x1CF2D}, {0x1CF30, 0x1CF46},
    {0x1E000, 0x1E006}, {0x1E008, 0x1E018}, {0x1E01B, 0x1E021},
    {0x1E023, 0x1E024}, {0x1E026, 0x1E02A}, {0x1E08F, 0x1E08F},
    {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE}, {0x1E2EC, 0x1E2EF},
    {0x1E4EC, 0x1E4EF}, {0x1E944, 0x1E94A}, {0x1E95E, 0x1E95F},
};

/* Chars with a canonical decomposition or a nonzero canonical combining
 * class in utf8proc 2.8 that Unicode 9.0 had not assigned. Same sources. */
static const cp_range_t post_u9_nfd_chars[] = {
    {0x7FD, 0x7FD}, {0x898, 0x89F}, {0x8CA, 0x8D3}, {0x9FE, 0x9FE},
    {0xC3C, 0xC3C}, {0xD3B, 0xD3C}, {0xEBA, 0xEBA}, {0x1715, 0x1715},
    {0x1ABF, 0x1ACE}, {0x1DF6, 0x1DFA}, {0xA82C, 0xA82C}, {0x10D24, 0x10D27},
    {0x10EAB, 0x10EAC}, {0x10EFD, 0x10EFF}, {0x10F46, 0x10F50},
    {0x10F82, 0x10F85}, {0x11070, 0x11070}, {0x1133B, 0x1133B},
    {0x1145E, 0x1145E}, {0x11839, 0x1183A}, {0x11938, 0x11938},
    {0x1193D, 0x1193E}, {0x11943, 0x11943}, {0x119E0, 0x119E0},
    {0x11A34, 0x11A34}, {0x11A47, 0x11A47}, {0x11A99, 0x11A99},
    {0x11D42, 0x11D42}, {0x11D44, 0x11D45}, {0x11D97, 0x11D97},
    {0x11F41, 0x11F42}, {0x16FF0, 0x16FF1}, {0x1E08F, 0x1E08F},
    {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE}, {0x1E2EC, 0x1E2EF},
    {0x1E4EC, 0x1E4EF},
};

static int in_ranges(const cp_range_t *r, size_t n, uint32_t c)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < r[mid].lo)
            hi = mid;
        else if (c > r[mid].hi)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

/* ---- Unicode predicates, as HF's Rust code answers them ----------------- */

/* The general category as unicode_categories 0.1.1 (Unicode 8.0) has it,
 * for the categories the BERT code asks about. */
static utf8proc_category_t category_u8(uint32_t c)
{
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    switch (k) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
        if (c >= 0x600 && in_ranges(post_u8_chars, N_ELEMS(post_u8_chars), c))
            return UTF8PROC_CATEGORY_CN;
        return k;
    default:
        return k;
    }
}

/* bert.rs is_control: Cc, Cf or Co ("is_other" of unicode_categories, which
 * leaves out Cn), except \t \n \r which count as whitespace. */
static int is_control(uint32_t c)
{
    if (c == '\t' || c == '\n' || c == '\r')
        return 0;
    if (c < 0x80)
        return c < 0x20 || c == 0x7f;
    utf8proc_category_t k = category_u8(c);
    return k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF ||
           k == UTF8PROC_CATEGORY_CO;
}

/* bert.rs is_whitespace. */
static int is_bert_whitespace(uint32_t c)
{
    return c == '\t' || c == '\n' || c == '\r' || sn__is_white_space(c);
}

/* pre_tokenizers/bert.rs is_bert_punc: ASCII punctuation or P*. */
static int is_punct(uint32_t c)
{
    if (c < 0x80)
        return (c >= 0x21 && c <= 0x2f) || (c >= 0x3a && c <= 0x40) ||
               (c >= 0x5b && c <= 0x60) || (c >= 0x7b && c <= 0x7e);
    utf8proc_category_t k = category_u8(c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

static int is_nonspacing_mark(uint32_t c)
{
    return c >= 0x300 && category_u8(c) == UTF8PROC_CATEGORY_MN;
}

/* bert.rs is_chinese_char: its ranges, verbatim. */
static int is_chinese(uint32_t c)
{
    return (c >= 0x4e00 && c <= 0x9fff) || (c >= 0x3400 && c <= 0x4dbf) ||
           (c >= 0x20000 && c <= 0x2a6df) || (c >= 0x2a700 && c <= 0x2b73f) ||
           (c >= 0x2b740 && c <= 0x2b81f) || (c >= 0x2b920 && c <= 0x2ceaf) ||
           (c >= 0xf900 && c <= 0xfaff) || (c >= 0x2f800 && c <= 0x2fa1f);
}

/* Canonical combining class and full canonical decomposition, Unicode 9.0. */
static int ccc_u9(uint32_t c)
{
    if (c < 0x300 || in_ranges(post_u9_nfd_chars, N_ELEMS(post_u9_nfd_chars),
                               c))
        return 0;
    return utf8proc_get_property((utf8proc_int32_t)c)->combining_class;
}

static int nfd_char(uint32_t c, uint32_t *dst)
{
    if (c < 0xc0 ||
        in_ranges(post_u9_nfd_chars, N_ELEMS(post_u9_nfd_chars), c)) {
        dst[0] = c;
        return 1;
    }
    utf8proc_ssize_t n = utf8proc_decompose_char(
        (utf8proc_int32_t)c, (utf8proc_int32_t *)dst, WP_MAX_DECOMP,
        UTF8PROC_DECOMPOSE, NULL);
    if (n < 1 || n > WP_MAX_DECOMP) {
        dst[0] = c;
        return 1;
    }
    return (int)n;
}

/* ---- per-call scratch ---------------------------------------------------- */

typedef struct {
    uint32_t cp;
    int ccc;
    int inserted; /* HF change +1: not the first char of its decomposition */
    int order;    /* position in the stream, for a stable sort */
} nfd_item_t;

typedef struct {
    sn__ntext_t a, b;      /* normalized chunk, ping-pong */
    sn__ntext_t w;         /* the word being assembled, at most
                            * max_input_chars chars */
    int w_long;            /* it has more: it will be unk */
    int32_t w_start, w_end; /* its span */
    nfd_item_t *items;     /* NFD stream */
    size_t n_items, cap_items;
    char *buf;             /* UTF-8 of a word, after room for the prefix */
    size_t cap_buf;
    int32_t *boff;         /* byte offset of each char of the word in buf */
    size_t cap_boff;
} wp_scratch_t;

static void scratch_free(wp_scratch_t *s)
{
    sn__ntext_free(&s->a);
    sn__ntext_free(&s->b);
    sn__ntext_free(&s->w);
    free(s->items);
    free(s->buf);
    free(s->boff);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap ? *cap : 64;
    while (cap2 < need)
        cap2 *= 2;
    void *q = realloc(*p, cap2 * elem);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = cap2;
    return 0;
}

/* ---- normalization ------------------------------------------------------- */

static int cmp_nfd_item(const void *x, const void *y)
{
    const nfd_item_t *a = x, *b = y;
    if (a->ccc != b->ccc)
        return a->ccc < b->ccc ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

/* Stably sort items[lo, hi) by combining class, unless already sorted. */
static void sort_run(nfd_item_t *items, size_t lo, size_t hi)
{
    for (size_t i = lo + 1; i < hi; i++)
        if (items[i].ccc < items[i - 1].ccc) {
            qsort(items + lo, hi - lo, sizeof *items, cmp_nfd_item);
            return;
        }
}

/* dst = NFD(src) with HF's alignments: the stream of
 * unicode-normalization-alignments (first char of a decomposition replaces
 * its source, the rest are inserted; canonical reordering stably sorts each
 * run of non-starters, the flags travelling with their chars) applied
 * positionally to src's spans. */
static int normalize_nfd(wp_scratch_t *s, const sn__ntext_t *src,
                         sn__ntext_t *dst)
{
    uint32_t d[WP_MAX_DECOMP];
    int rc;

    s->n_items = 0;
    for (int i = 0; i < src->n; i++) {
        int nd = nfd_char(src->cp[i], d);
        rc = grow((void **)&s->items, &s->cap_items, s->n_items + nd,
                  sizeof *s->items);
        if (rc)
            return rc;
        for (int k = 0; k < nd; k++) {
            nfd_item_t *it = &s->items[s->n_items];
            it->cp = d[k];
            it->ccc = ccc_u9(d[k]);
            it->inserted = k > 0;
            it->order = (int)s->n_items;
            s->n_items++;
        }
    }
    size_t run = 0;
    for (size_t i = 0; i <= s->n_items; i++) {
        if (i == s->n_items || s->items[i].ccc == 0) {
            if (i - run > 1)
                sort_run(s->items, run, i);
            run = i + 1;
        }
    }

    dst->n = 0;
    rc = sn__ntext_reserve(dst, (int)s->n_items);
    if (rc)
        return rc;
    int off = 0; /* next src char to be replaced */
    for (size_t i = 0; i < s->n_items; i++) {
        const nfd_item_t *it = &s->items[i];
        int32_t st, en;
        if (!it->inserted && off < src->n) {
            st = src->start[off];
            en = src->end[off];
            off++;
        } else if (off > 0) {
            st = src->start[off - 1];
            en = src->end[off - 1];
        } else {
            st = en = 0; /* HF: an insertion at the very start gets (0, 0) */
        }
        dst->cp[dst->n] = it->cp;
        dst->start[dst->n] = st;
        dst->end[dst->n] = en;
        dst->n++;
    }
    return 0;
}

/* Normalize original code points cps[lo, hi) (offsets index cps) into s->a. */
static int normalize(const sn_tokenizer_t *tok, wp_scratch_t *s,
                     const uint32_t *cps, int lo, int hi)
{
    sn__ntext_t *a = &s->a, *b = &s->b;
    int rc;

    a->n = 0;
    rc = sn__ntext_reserve(a, hi - lo);
    if (rc)
        return rc;
    for (int i = lo; i < hi; i++) {
        uint32_t c = cps[i];
        if (tok->wp.clean_text) {
            if (c == 0 || c == 0xfffd || is_control(c))
                continue;
            if (is_bert_whitespace(c))
                c = ' ';
        }
        if (tok->wp.chinese_chars && c >= 0x3400 && is_chinese(c)) {
            /* the spaces only split words; their spans never reach a token */
            if ((rc = sn__ntext_push(a, ' ', i, i + 1)) ||
                (rc = sn__ntext_push(a, c, i, i + 1)) ||
                (rc = sn__ntext_push(a, ' ', i, i + 1)))
                return rc;
            continue;
        }
        if ((rc = sn__ntext_push(a, c, i, i + 1)))
            return rc;
    }

    if (tok->wp.strip_accents) {
        rc = normalize_nfd(s, a, b);
        if (rc)
            return rc;
        a->n = 0;
        rc = sn__ntext_reserve(a, b->n);
        if (rc)
            return rc;
        for (int i = 0; i < b->n; i++)
            if (!is_nonspacing_mark(b->cp[i])) {
                a->cp[a->n] = b->cp[i];
                a->start[a->n] = b->start[i];
                a->end[a->n] = b->end[i];
                a->n++;
            }
    }

    if (tok->wp.lowercase) {
        b->n = 0;
        rc = sn__ntext_reserve(b, a->n + 1);
        if (rc)
            return rc;
        for (int i = 0; i < a->n; i++) {
            uint32_t c = a->cp[i];
            if (c == 0x130) { /* the one multi-char lowercase mapping */
                if ((rc = sn__ntext_push(b, 'i', a->start[i], a->end[i])) ||
                    (rc = sn__ntext_push(b, 0x307, a->start[i], a->end[i])))
                    return rc;
                continue;
            }
            if (c < 0x80)
                c = (c >= 'A' && c <= 'Z') ? c + 32 : c;
            else
                c = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
            if ((rc = sn__ntext_push(b, c, a->start[i], a->end[i])))
                return rc;
        }
        sn__ntext_t t = *a;
        *a = *b;
        *b = t;
    }
    return 0;
}

/* ---- the WordPiece model ------------------------------------------------- */

static void put_utf8(char *p, uint32_t c, int *len)
{
    *len = (int)utf8proc_encode_char((utf8proc_int32_t)c, (utf8proc_uint8_t *)p);
}

/* Tokenize the word t[ws, we) (normalized chars) into out. */
static int tokenize_word(const sn_tokenizer_t *tok, wp_scratch_t *s,
                         const sn__ntext_t *t, int ws, int we,
                         sn__toks_t *out)
{
    int n_chars = we - ws;
    int32_t w_start = t->start[ws], w_end = t->end[we - 1];
    size_t plen = strlen(tok->wp.prefix);
    int n0 = out->n, rc;

    if (n_chars > tok->wp.max_input_chars)
        goto unk;

    rc = grow((void **)&s->buf, &s->cap_buf, plen + 4 * (size_t)n_chars + 1,
              1);
    if (rc)
        return rc;
    rc = grow((void **)&s->boff, &s->cap_boff, (size_t)n_chars + 1,
              sizeof *s->boff);
    if (rc)
        return rc;
    /* the word's bytes start at buf + plen, so that the prefix can be
     * written just before any continuation, over bytes already consumed */
    char *w = s->buf + plen;
    int32_t nb = 0;
    for (int i = 0; i < n_chars; i++) {
        int len;
        s->boff[i] = nb;
        put_utf8(w + nb, t->cp[ws + i], &len);
        nb += len;
    }
    s->boff[n_chars] = nb;

    int start = 0;
    while (start < n_chars) {
        const char *p = w + s->boff[start];
        size_t extra = 0;
        if (start > 0) {
            memcpy(w + s->boff[start] - plen, tok->wp.prefix, plen);
            p -= plen;
            extra = plen;
        }
        int end = n_chars;
        int32_t id = -1;
        for (; end > start; end--) {
            size_t len = (size_t)(s->boff[end] - s->boff[start]) + extra;
            id = sn__vocab_find(&tok->vocab, p, len);
            if (id >= 0)
                break;
        }
        if (id < 0) {
            out->n = n0; /* the rest does not match: the word is unk */
            goto unk;
        }
        rc = sn__toks_push(out, id, t->start[ws + start],
                           t->end[ws + end - 1]);
        if (rc)
            return rc;
        start = end;
    }
    return 0;

unk:
    if (tok->unk_id < 0)
        return SN_EMODEL; /* HF: "Missing [UNK] token from the vocabulary" */
    return sn__toks_push(out, tok->unk_id, w_start, w_end);
}

/* The word assembled so far, through WordPiece; then start a new one. */
static int flush_word(const sn_tokenizer_t *tok, wp_scratch_t *s,
                      sn__toks_t *out)
{
    int rc = 0;
    if (s->w_long) {
        rc = tok->unk_id < 0
                 ? SN_EMODEL
                 : sn__toks_push(out, tok->unk_id, s->w_start, s->w_end);
    } else if (s->w.n > 0) {
        rc = tokenize_word(tok, s, &s->w, 0, s->w.n, out);
    }
    s->w.n = 0;
    s->w_long = 0;
    return rc;
}

/* BertPreTokenizer over the normalized chunk s->a: whitespace ends a word
 * and is dropped, a punctuation char ends a word and is one. The last word
 * stays pending: the next chunk may continue it. */
static int pretokenize(const sn_tokenizer_t *tok, wp_scratch_t *s,
                       sn__toks_t *out)
{
    const sn__ntext_t *t = &s->a;
    int rc;

    for (int i = 0; i < t->n; i++) {
        uint32_t c = t->cp[i];
        if (sn__is_white_space(c)) {
            if ((rc = flush_word(tok, s, out)))
                return rc;
            continue;
        }
        if (is_punct(c)) {
            if ((rc = flush_word(tok, s, out)) ||
                (rc = sn__ntext_push(&s->w, c, t->start[i], t->end[i])) ||
                (rc = flush_word(tok, s, out)))
                return rc;
            continue;
        }
        if (s->w.n == 0 && !s->w_long)
            s->w_start = t->start[i];
        s->w_end = t->end[i];
        if (s->w_long)
            continue;
        if (s->w.n >= tok->wp.max_input_chars) {
            s->w_long = 1; /* HF: more than max_input_chars chars is unk */
            continue;
        }
        if ((rc = sn__ntext_push(&s->w, c, t->start[i], t->end[i])))
            return rc;
    }
    return 0;
}

/* Whether normalizing may restart at original char c: canonical reordering
 * cannot reach across it. */
static int safe_cut(const sn_tokenizer_t *tok, uint32_t c)
{
    uint32_t d[WP_MAX_DECOMP];
    if (!tok->wp.strip_accents)
        return 1; /* no NFD, every step char-local */
    if (tok->wp.clean_text && (c == 0 || c == 0xfffd || is_control(c)))
        return 0; /* removed: the chars around it meet */
    if (c < 0x300)
        return 1;
    nfd_char(c, d);
    return ccc_u9(d[0]) == 0;
}

int sn__wordpiece_encode(const sn_tokenizer_t *tok, const uint32_t *cps,
                         int n, sn__toks_t *out)
{
    wp_scratch_t s;
    int rc = 0, i = 0;

    memset(&s, 0, sizeof s);
    while (i < n) {
        int e = n - i > WP_CHUNK ? i + WP_CHUNK : n;
        while (e < n && !safe_cut(tok, cps[e]))
            e++;
        rc = normalize(tok, &s, cps, i, e);
        if (rc)
            goto fail;
        rc = pretokenize(tok, &s, out);
        if (rc)
            goto fail;
        i = e;
    }
    rc = flush_word(tok, &s, out);
fail:
    scratch_free(&s);
    return rc;
}

/* ---- loading ------------------------------------------------------------- */

static void set_defaults(sn_tokenizer_t *tok)
{
    tok->kind = SN_TOK_WORDPIECE;
    tok->wp.clean_text = 1;
    tok->wp.chinese_chars = 1;
    tok->wp.strip_accents = 1;
    tok->wp.lowercase = 1;
    memcpy(tok->wp.prefix, "##", 3);
    tok->wp.max_input_chars = WP_DEFAULT_MAX_CHARS;
    tok->unk_id = -1;
}

/* A boolean member of `obj`: *out unchanged when absent. */
static int get_bool(const json_t *obj, const char *key, const char *where,
                    int *out, char *err, size_t err_len)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return sn__err(err, err_len, SN_EMODEL,
                       "%s.%s: expected a boolean", where, key);
    *out = json_is_true(v);
    return 0;
}

static int load_normalizer(sn_tokenizer_t *tok, const json_t *nz,
                           const char *where, char *err, size_t err_len)
{
    int rc;

    if (!nz || json_is_null(nz)) {
        tok->wp.clean_text = tok->wp.chinese_chars = 0;
        tok->wp.strip_accents = tok->wp.lowercase = 0;
        return 0;
    }
    if (!json_is_object(nz))
        return sn__err(err, err_len, SN_EMODEL, "%s: expected an object",
                       where);
    const char *type = json_string_value(json_object_get(nz, "type"));
    if (!type)
        return sn__err(err, err_len, SN_EMODEL,
                       "%s.type: missing or not a string", where);
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(nz, "normalizers");
        if (!json_is_array(list))
            return sn__err(err, err_len, SN_EMODEL,
                           "%s.normalizers: expected an array", where);
        if (json_array_size(list) == 0)
            return load_normalizer(tok, NULL, where, err, err_len);
        if (json_array_size(list) != 1)
            return sn__err(err, err_len, SN_EMODEL,
                           "%s: a Sequence of %zu normalizers is not "
                           "supported with WordPiece (only one "
                           "BertNormalizer)",
                           where, json_array_size(list));
        return load_normalizer(tok, json_array_get(list, 0),
                               "normalizer.normalizers[0]", err, err_len);
    }
    if (strcmp(type, "BertNormalizer") != 0)
        return sn__err(err, err_len, SN_EMODEL,
                       "%s.type '%s' is not supported with WordPiece "
                       "(expected BertNormalizer)",
                       where, type);
    int clean = 1, chinese = 1, lower = 1, strip = -1;
    if ((rc = get_bool(nz, "clean_text", where, &clean, err, err_len)) ||
        (rc = get_bool(nz, "handle_chinese_chars", where, &chinese, err,
                       err_len)) ||
        (rc = get_bool(nz, "lowercase", where, &lower, err, err_len)))
        return rc;
    json_t *sa = json_object_get(nz, "strip_accents");
    if (sa && !json_is_null(sa) &&
        (rc = get_bool(nz, "strip_accents", where, &strip, err, err_len)))
        return rc;
    tok->wp.clean_text = clean;
    tok->wp.chinese_chars = chinese;
    tok->wp.lowercase = lower;
    tok->wp.strip_accents = strip < 0 ? lower : strip;
    return 0;
}

static int load_pretokenizer(const json_t *pt, const char *where, char *err,
                             size_t err_len)
{
    if (!pt || json_is_null(pt))
        return sn__err(err, err_len, SN_EMODEL,
                       "%s: null is not supported with WordPiece (expected "
                       "BertPreTokenizer)",
                       where);
    if (!json_is_object(pt))
        return sn__err(err, err_len, SN_EMODEL, "%s: expected an object",
                       where);
    const char *type = json_string_value(json_object_get(pt, "type"));
    if (!type)
        return sn__err(err, err_len, SN_EMODEL,
                       "%s.type: missing or not a string", where);
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(pt, "pretokenizers");
        if (!json_is_array(list) || json_array_size(list) != 1)
            return sn__err(err, err_len, SN_EMODEL,
                           "%s.pretokenizers: only a Sequence of one "
                           "BertPreTokenizer is supported with WordPiece",
                           where);
        return load_pretokenizer(json_array_get(list, 0),
                                 "pre_tokenizer.pretokenizers[0]", err,
                                 err_len);
    }
    if (strcmp(type, "BertPreTokenizer") != 0)
        return sn__err(err, err_len, SN_EMODEL,
                       "%s.type '%s' is not supported with WordPiece "
                       "(expected BertPreTokenizer)",
                       where, type);
    return 0;
}

int sn__wordpiece_load(sn_tokenizer_t *tok, const void *model_,
                       const void *normalizer, const void *pretok, char *err,
                       size_t err_len)
{
    const json_t *model = model_;
    const char *key;
    json_t *v;
    int rc;

    set_defaults(tok);
    if (!json_is_object(model))
        return sn__err(err, err_len, SN_EMODEL, "model: expected an object");

    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab) || json_object_size(vocab) == 0)
        return sn__err(err, err_len, SN_EMODEL,
                       "model.vocab: missing, empty or not an object");
    size_t n = json_object_size(vocab);
    if (n > (1u << 24))
        return sn__err(err, err_len, SN_EMODEL,
                       "model.vocab: %zu pieces, more than %d", n, 1 << 24);
    json_object_foreach((json_t *)vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= (json_int_t)n)
            return sn__err(err, err_len, SN_EMODEL,
                           "model.vocab['%s']: id is not an integer in "
                           "[0, %zu)",
                           key, n);
    }
    rc = sn__vocab_init(&tok->vocab, (int)n);
    if (rc)
        return sn__err(err, err_len, rc, "model.vocab: out of memory");
    json_object_foreach((json_t *)vocab, key, v) {
        int32_t id = (int32_t)json_integer_value(v);
        if (tok->vocab.pieces[id])
            return sn__err(err, err_len, SN_EMODEL,
                           "model.vocab: id %d is given to both '%s' and "
                           "'%s'",
                           (int)id, tok->vocab.pieces[id], key);
        rc = sn__vocab_set(&tok->vocab, id, key, strlen(key));
        if (rc)
            return sn__err(err, err_len, rc, "model.vocab: out of memory");
    }
    rc = sn__vocab_build(&tok->vocab);
    if (rc)
        return sn__err(err, err_len, rc == -ENOMEM ? rc : SN_EMODEL,
                       "model.vocab: %s",
                       rc == -ENOMEM ? "out of memory"
                                     : "ids are not 0..n-1 or pieces repeat");

    const char *unk = "[UNK]";
    if ((v = json_object_get(model, "unk_token")) && !json_is_null(v)) {
        if (!json_is_string(v))
            return sn__err(err, err_len, SN_EMODEL,
                           "model.unk_token: expected a string");
        unk = json_string_value(v);
    }
    tok->unk_id = sn__vocab_find(&tok->vocab, unk, strlen(unk));

    if ((v = json_object_get(model, "continuing_subword_prefix")) &&
        !json_is_null(v)) {
        if (!json_is_string(v) ||
            json_string_length(v) >= sizeof tok->wp.prefix ||
            strlen(json_string_value(v)) != json_string_length(v))
            return sn__err(err, err_len, SN_EMODEL,
                           "model.continuing_subword_prefix: expected a "
                           "string of at most %zu bytes",
                           sizeof tok->wp.prefix - 1);
        memcpy(tok->wp.prefix, json_string_value(v),
               json_string_length(v) + 1);
    }
    if ((v = json_object_get(model, "max_input_chars_per_word")) &&
        !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return sn__err(err, err_len, SN_EMODEL,
                           "model.max_input_chars_per_word: expected a "
                           "non-negative integer");
        json_int_t m = json_integer_value(v);
        tok->wp.max_input_chars = m > INT_MAX ? INT_MAX : (int)m;
    }

    rc = load_normalizer(tok, normalizer, "normalizer", err, err_len);
    if (rc)
        return rc;
    return load_pretokenizer(pretok, "pre_tokenizer", err, err_len);
}

int sn__wordpiece_load_vocab(sn_tokenizer_t *tok, const char *buf, size_t len,
                             char *err, size_t err_len)
{
    size_t n = 0, i;
    int rc;

    set_defaults(tok);
    /* Lines as Rust's BufRead::lines() gives them: a last line without a
     * newline counts, an empty rest after the last newline does not. */
    for (i = 0; i < len; i++)
        if (buf[i] == '\n')
            n++;
    if (len && buf[len - 1] != '\n')
        n++;
    if (n == 0)
        return sn__err(err, err_len, SN_EMODEL, "empty vocabulary");
    if (n > (1u << 24))
        return sn__err(err, err_len, SN_EMODEL,
                       "%zu lines, more than %d pieces", n, 1 << 24);
    rc = sn__vocab_init(&tok->vocab, (int)n);
    if (rc)
        return sn__err(err, err_len, rc, "out of memory");

    size_t line = 0, at = 0;
    while (at < len) {
        const char *nl = memchr(buf + at, '\n', len - at);
        size_t e = nl ? (size_t)(nl - buf) : len;
        size_t l = e - at;
        /* trim_end(), for the whitespace a vocabulary line can end with */
        while (l > 0 && (buf[at + l - 1] == ' ' || buf[at + l - 1] == '\t' ||
                         buf[at + l - 1] == '\r' || buf[at + l - 1] == '\v' ||
                         buf[at + l - 1] == '\f'))
            l--;
        if (memchr(buf + at, '\0', l))
            return sn__err(err, err_len, SN_ECORRUPT,
                           "line %zu: NUL byte in a piece", line + 1);
        rc = sn__vocab_set(&tok->vocab, (int32_t)line, buf + at, l);
        if (rc)
            return sn__err(err, err_len, rc, "out of memory");
        line++;
        at = e + 1;
    }
    rc = sn__vocab_build(&tok->vocab);
    if (rc)
        return sn__err(err, err_len, rc == -ENOMEM ? rc : SN_ECORRUPT,
                       "%s",
                       rc == -ENOMEM ? "out of memory"
                                     : "a piece appears on two lines");
    tok->unk_id = sn__vocab_find(&tok->vocab, "[UNK]", 5);
    return 0;
}
