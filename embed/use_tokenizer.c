/*
 * use_tokenizer.c -- the tokenizer of the default model, Universal Sentence
 * Encoder Lite, reproducing its reference JavaScript (the Tokenizer class of
 * @energetic-ai/embeddings 0.2.0, itself the tfjs-models USE tokenizer) id
 * for id, quirks included.
 *
 * The reference, for one text:
 *   1. s = NFKC(text); when s is not empty: "\u2581" + s with every U+0020
 *      replaced by U+2581 (no trimming, no collapsing; tabs and newlines
 *      stay as they are);
 *   2. a trie holds every vocab.json piece from id 6 on (ids 0-5 are
 *      reserved: 0 is the unknown piece "\ufffd"); a piece listed twice keeps
 *      the LAST id and score ("\u201d5" is there three times);
 *   3. lattice: from every position i, each piece matching there is an arc
 *      i -> i + (its length in code points) with its score; a position
 *      where nothing matches gets one arc of length 1, score 0, id 0;
 *   4. Viterbi with the reference's arithmetic: best[] and words[] start at
 *      0; arcs into a position are taken in increasing start order and one
 *      replaces the current best when best == 0 (i.e. "unset" -- a real path
 *      summing to exactly 0 counts as unset too) or when score + best[start]
 *      >= best (ties go to the later start). A null score in vocab.json (the
 *      file has seven, all pieces with ':') adds as 0, as JS null + number
 *      does; ":30" really scores +30;
 *   5. backtrack from the end: iter -= piece(words[iter]).length, the
 *      piece's length in UTF-16 units, as JS counts it (a position no arc
 *      reached keeps words = 0 and steps back by the length of "\ufffd", 1);
 *   6. a run of consecutive unknown ids (0) becomes one 0.
 * No ids are offset and no specials are added (n_prefix = n_suffix = 0);
 * the graph clips to its max length (128) itself, keeping the first tokens.
 *
 * Offsets: every normalized code point carries the [start, end) span of the
 * original code points it came from. NFKC is computed on the whole text
 * (that result is what the tokens are made of) and on segments of it cut
 * before each code point that starts a fresh normalization unit (its
 * decomposition begins with a starter that cannot compose with what
 * precedes it); when the concatenated segments equal the whole, each
 * segment's output takes the segment's span, else the text falls back to a
 * single segment. The prepended U+2581 has the empty span [0, 0); a
 * U+2581 made from a space has that space's span. A token spans [start of
 * its first code point, end of its last); a fused run of unknowns spans the
 * whole run. Starts never decrease along the token list.
 *
 * Invariants: the trie (tok->ug.trie, a usetok_trie_t) is read-only after
 * sn__usetok_new, so any number of threads may encode at once. Scores are
 * doubles as in JS. tok->vocab holds the pieces by id (and float scores) for
 * sn_tokenizer_piece; its piece -> id hash is NOT built, because the
 * duplicate pieces make sn__vocab_build refuse the vocabulary, so
 * sn__vocab_find finds nothing for this kind.
 *
 * Tuned for: sentences to a few pages; an encode allocates its scratch once
 * per text (O(text length)), never per character or token.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <utf8proc.h>

#include "embed_int.h"
#include "tokenizer_int.h"

#define SN_USETOK_MAX_VOCAB_JSON (64u << 20) /* bytes of vocab.json */
#define SN_USETOK_MAX_PIECES (1 << 20)
#define SN_USETOK_MAX_PIECE 256         /* code points in one piece */
#define SN_USETOK_RESERVED 6            /* ids not put in the trie (JS) */
#define SN_USETOK_MAX_NORM (1 << 26)    /* normalized code points per text */
#define SN_USETOK_MAX_DECOMP 32         /* one decomposition (U+FDFA: 18) */
#define SN_USETOK_SPACE 0x20u
#define SN_USETOK_SEP 0x2581u           /* U+2581, the word marker */
#define SN_USETOK_UNK 0                 /* the id of an unknown character */

typedef struct {
    double score;
    int32_t id;     /* piece id when end, else -1 */
    int32_t depth;  /* code points from the root */
} usetok_node_t;

typedef struct {
    uint64_t key;   /* (parent node << 21 | code point) + 1; 0 = empty */
    int32_t child;
} usetok_edge_t;

typedef struct {
    usetok_node_t *nodes;
    int n_nodes, cap_nodes;
    usetok_edge_t *edges;
    uint32_t n_slots;   /* power of 2 */
    int n_edges;
    int32_t *u16_len;   /* per id: the piece's length in UTF-16 units */
} usetok_trie_t;

/* ---- trie ----------------------------------------------------------------- */

static uint64_t edge_key(int32_t node, uint32_t cp)
{
    return (((uint64_t)(uint32_t)node << 21) | cp) + 1;
}

static uint32_t edge_hash(uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return (uint32_t)key;
}

static int32_t trie_child(const usetok_trie_t *t, int32_t node, uint32_t cp)
{
    uint64_t key = edge_key(node, cp);
    uint32_t mask = t->n_slots - 1;
    for (uint32_t i = edge_hash(key) & mask;; i = (i + 1) & mask) {
        if (t->edges[i].key == key)
            return t->edges[i].child;
        if (t->edges[i].key == 0)
            return -1;
    }
}

/* The child of `node` by `cp`, created when missing. The table has room:
 * it was sized for every code point of every piece. */
static int trie_add(usetok_trie_t *t, int32_t node, uint32_t cp,
                    int32_t *child)
{
    uint64_t key = edge_key(node, cp);
    uint32_t mask = t->n_slots - 1;
    uint32_t i = edge_hash(key) & mask;
    while (t->edges[i].key != 0) {
        if (t->edges[i].key == key) {
            *child = t->edges[i].child;
            return 0;
        }
        i = (i + 1) & mask;
    }
    if (t->n_nodes == t->cap_nodes)
        return SN_EMODEL; /* cannot happen: capacity = code points + 1 */
    int32_t c = t->n_nodes++;
    t->nodes[c].score = 0;
    t->nodes[c].id = -1;
    t->nodes[c].depth = t->nodes[node].depth + 1;
    t->edges[i].key = key;
    t->edges[i].child = c;
    t->n_edges++;
    *child = c;
    return 0;
}

static void trie_free(usetok_trie_t *t)
{
    if (!t)
        return;
    free(t->nodes);
    free(t->edges);
    free(t->u16_len);
    free(t);
}

/* Decode one piece (valid UTF-8, jansson checked it) into cps; returns the
 * number of code points or -1 when longer than SN_USETOK_MAX_PIECE. */
static int piece_cps(const char *s, size_t len, uint32_t *cps, int *u16)
{
    int n = 0, units = 0;
    size_t i = 0;
    while (i < len) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                              (utf8proc_ssize_t)(len - i), &c);
        if (k <= 0 || n == SN_USETOK_MAX_PIECE)
            return -1;
        cps[n++] = (uint32_t)c;
        units += c > 0xFFFF ? 2 : 1;
        i += (size_t)k;
    }
    *u16 = units;
    return n;
}

/* ---- loading ---------------------------------------------------------------- */

int sn__usetok_new(const char *vocab_json, size_t len, const char *name,
                   sn_tokenizer_t **out, char *err, size_t err_len)
{
    sn_tokenizer_t *tok = NULL;
    usetok_trie_t *t = NULL;
    json_t *root = NULL;
    json_error_t jerr;
    double *scores = NULL;
    size_t total_cps = 0;
    int rc;

    *out = NULL;
    if (len > SN_USETOK_MAX_VOCAB_JSON)
        return sn__err(err, err_len, SN_ETOOBIG, "'%s': too large (%zu bytes)",
                       name, len);
    root = json_loadb(vocab_json, len, 0, &jerr);
    if (!root) {
        rc = sn__err(err, err_len, SN_EJSON, "'%s': line %d: %s", name,
                     jerr.line, jerr.text);
        goto fail;
    }
    if (!json_is_array(root)) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': not a JSON array of [piece, score]", name);
        goto fail;
    }
    size_t n = json_array_size(root);
    if (n <= SN_USETOK_RESERVED || n > SN_USETOK_MAX_PIECES) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': %zu pieces (want %d to %d)", name, n,
                     SN_USETOK_RESERVED + 1, SN_USETOK_MAX_PIECES);
        goto fail;
    }

    tok = calloc(1, sizeof *tok);
    t = calloc(1, sizeof *t);
    scores = malloc(n * sizeof *scores);
    if (!tok || !t || !scores) {
        rc = sn__err(err, err_len, -ENOMEM, "'%s': out of memory", name);
        goto fail;
    }
    tok->kind = SN_TOK_USE;
    tok->unk_id = SN_USETOK_UNK;
    tok->n_prefix = tok->n_suffix = 0;
    tok->ug.replacement = SN_USETOK_SEP;
    rc = sn__vocab_init(&tok->vocab, (int)n);
    if (rc) {
        rc = sn__err(err, err_len, rc, "'%s': out of memory", name);
        goto fail;
    }
    tok->vocab.scores = malloc(n * sizeof *tok->vocab.scores);
    t->u16_len = malloc(n * sizeof *t->u16_len);
    if (!tok->vocab.scores || !t->u16_len) {
        rc = sn__err(err, err_len, -ENOMEM, "'%s': out of memory", name);
        goto fail;
    }

    /* pass 1: pieces, scores, sizes */
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(root, i);
        json_t *p = json_array_get(e, 0), *s = json_array_get(e, 1);
        uint32_t cps[SN_USETOK_MAX_PIECE];
        int u16 = 0;
        if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_string(p)) {
            rc = sn__err(err, err_len, SN_EMODEL,
                         "'%s': entry %zu is not [piece, score]", name, i);
            goto fail;
        }
        /* The reference adds the score to a number: null counts as 0 there;
         * anything else but a number would not be a score at all. */
        if (json_is_number(s))
            scores[i] = json_number_value(s);
        else if (json_is_null(s))
            scores[i] = 0.0;
        else {
            rc = sn__err(err, err_len, SN_EMODEL,
                         "'%s': entry %zu: score is not a number", name, i);
            goto fail;
        }
        const char *ps = json_string_value(p);
        size_t pl = json_string_length(p);
        int ncp = piece_cps(ps, pl, cps, &u16);
        if (ncp <= 0 || memchr(ps, '\0', pl)) {
            rc = sn__err(err, err_len, SN_EMODEL,
                         "'%s': entry %zu: empty, too long or invalid piece",
                         name, i);
            goto fail;
        }
        rc = sn__vocab_set(&tok->vocab, (int32_t)i, ps, pl);
        if (rc) {
            rc = sn__err(err, err_len, rc, "'%s': out of memory", name);
            goto fail;
        }
        tok->vocab.scores[i] = (float)scores[i];
        t->u16_len[i] = u16;
        if (i >= SN_USETOK_RESERVED)
            total_cps += (size_t)ncp;
    }

    /* pass 2: the trie, ids from SN_USETOK_RESERVED on, later ids winning */
    t->cap_nodes = (int)total_cps + 1;
    t->nodes = malloc((size_t)t->cap_nodes * sizeof *t->nodes);
    t->n_slots = 16;
    while (t->n_slots < 2 * total_cps)
        t->n_slots <<= 1;
    t->edges = calloc(t->n_slots, sizeof *t->edges);
    if (!t->nodes || !t->edges) {
        rc = sn__err(err, err_len, -ENOMEM, "'%s': out of memory", name);
        goto fail;
    }
    t->n_nodes = 1;
    t->nodes[0].score = 0;
    t->nodes[0].id = -1;
    t->nodes[0].depth = 0;
    for (size_t i = SN_USETOK_RESERVED; i < n; i++) {
        uint32_t cps[SN_USETOK_MAX_PIECE];
        int u16;
        const char *ps = tok->vocab.pieces[i];
        int ncp = piece_cps(ps, strlen(ps), cps, &u16);
        int32_t node = 0;
        for (int k = 0; k < ncp; k++) {
            rc = trie_add(t, node, cps[k], &node);
            if (rc) {
                rc = sn__err(err, err_len, rc, "'%s': trie overflow", name);
                goto fail;
            }
        }
        t->nodes[node].id = (int32_t)i;
        t->nodes[node].score = scores[i];
    }

    tok->ug.trie = t;
    free(scores);
    json_decref(root);
    *out = tok;
    return 0;
fail:
    trie_free(t);
    if (tok) {
        sn__vocab_free(&tok->vocab);
        free(tok);
    }
    free(scores);
    json_decref(root);
    return rc;
}

void sn__usetok_free(sn_tokenizer_t *tok)
{
    if (!tok)
        return;
    trie_free(tok->ug.trie);
    tok->ug.trie = NULL;
}

/* ---- normalization with alignment ----------------------------------------- */

/* Starters (combining class 0) that canonical composition may still attach
 * to the character before them (the second half of a primary composite),
 * besides the Hangul vowel and trailing jamo. A segment must not start at
 * one of these. Missing one only costs alignment precision: the segmented
 * result is checked against the whole-text one. */
static int composes_backwards(uint32_t c)
{
    static const uint32_t seconds[] = {
        0x0B3E, 0x0B56, 0x0B57, 0x0BBE, 0x0BD7, 0x0C56, 0x0CC2, 0x0CD5,
        0x0CD6, 0x0D3E, 0x0D57, 0x0DCF, 0x0DDF, 0x102E, 0x1B35, 0x11127,
        0x1133E, 0x11357, 0x114B0, 0x114BA, 0x114BD, 0x115AF, 0x11930,
    };
    if ((c >= 0x1161 && c <= 0x1175) || (c >= 0x11A8 && c <= 0x11C2))
        return 1;
    for (size_t i = 0; i < sizeof seconds / sizeof seconds[0]; i++)
        if (seconds[i] == c)
            return 1;
    return 0;
}

/* Does original code point c start a new normalization segment? */
static int starts_segment(uint32_t c)
{
    utf8proc_int32_t buf[SN_USETOK_MAX_DECOMP];
    int bc = 0;
    utf8proc_ssize_t k = utf8proc_decompose_char(
        (utf8proc_int32_t)c, buf, SN_USETOK_MAX_DECOMP,
        UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, &bc);
    if (k <= 0 || k > SN_USETOK_MAX_DECOMP)
        return 0;
    uint32_t first = (uint32_t)buf[0];
    return utf8proc_get_property((utf8proc_int32_t)first)->combining_class ==
               0 &&
           !composes_backwards(first);
}

#define USETOK_NFKC (UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT)

/* NFKC of utf8[0..len) into *buf (grown as needed, capacity *cap code
 * points); the result length in *n. */
static int nfkc(const uint8_t *utf8, size_t len, utf8proc_int32_t **buf,
                size_t *cap, size_t *n)
{
    utf8proc_ssize_t k;
    for (;;) {
        k = utf8proc_decompose(utf8, (utf8proc_ssize_t)len, *buf,
                               (utf8proc_ssize_t)*cap, USETOK_NFKC);
        if (k < 0)
            return SN_EUTF8;
        if ((size_t)k <= *cap)
            break;
        if ((size_t)k > SN_USETOK_MAX_NORM)
            return SN_ETOOBIG;
        utf8proc_int32_t *nb = realloc(*buf, (size_t)k * sizeof *nb);
        if (!nb)
            return -ENOMEM;
        *buf = nb;
        *cap = (size_t)k;
    }
    k = utf8proc_normalize_utf32(*buf, k, USETOK_NFKC);
    if (k < 0)
        return SN_EUTF8;
    *n = (size_t)k;
    return 0;
}

/* The reference's processInput with alignments: "\u2581" + NFKC(text) with
 * ' ' -> "\u2581", into nt (empty when NFKC(text) is empty). */
static int usetok_normalize(const uint32_t *cps, int n, sn__ntext_t *nt)
{
    uint8_t *utf8 = NULL;
    size_t *boff = NULL;
    utf8proc_int32_t *whole = NULL, *seg = NULL;
    size_t whole_cap = 0, seg_cap = 0, n_whole = 0, len = 0;
    int rc = 0;

    nt->n = 0;
    if (n == 0)
        return 0;
    utf8 = malloc((size_t)n * 4 + 1);
    boff = malloc(((size_t)n + 1) * sizeof *boff);
    whole_cap = (size_t)n + 16;
    whole = malloc(whole_cap * sizeof *whole);
    if (!utf8 || !boff || !whole) {
        rc = -ENOMEM;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        boff[i] = len;
        utf8proc_ssize_t k =
            utf8proc_encode_char((utf8proc_int32_t)cps[i], utf8 + len);
        if (k <= 0) {
            rc = SN_EUTF8;
            goto out;
        }
        len += (size_t)k;
    }
    boff[n] = len;
    rc = nfkc(utf8, len, &whole, &whole_cap, &n_whole);
    if (rc)
        goto out;
    if (n_whole == 0)
        goto out;
    rc = sn__ntext_reserve(nt, (int)n_whole + 1);
    if (rc)
        goto out;
    rc = sn__ntext_push(nt, SN_USETOK_SEP, 0, 0);
    if (rc)
        goto out;

    /* segments [s, e) of the original, each normalized on its own */
    int ok = 1;
    size_t pos = 0;
    for (int s = 0; s < n && ok;) {
        int e = s + 1;
        while (e < n && !starts_segment(cps[e]))
            e++;
        size_t k = 0;
        rc = nfkc(utf8 + boff[s], boff[e] - boff[s], &seg, &seg_cap, &k);
        if (rc)
            goto out;
        if (pos + k > n_whole || (k && memcmp(seg, whole + pos,
                                              k * sizeof *seg) != 0)) {
            ok = 0;
            break;
        }
        for (size_t j = 0; j < k; j++) {
            uint32_t c = (uint32_t)seg[j];
            rc = sn__ntext_push(nt, c == SN_USETOK_SPACE ? SN_USETOK_SEP : c,
                                s, e);
            if (rc)
                goto out;
        }
        pos += k;
        s = e;
    }
    if (!ok || pos != n_whole) {
        /* Segments disagree with the whole (a composition this file does
         * not know of): the whole text is one segment. */
        nt->n = 1;
        for (size_t j = 0; j < n_whole; j++) {
            uint32_t c = (uint32_t)whole[j];
            rc = sn__ntext_push(nt, c == SN_USETOK_SPACE ? SN_USETOK_SEP : c,
                                0, n);
            if (rc)
                goto out;
        }
    }
out:
    free(utf8);
    free(boff);
    free(whole);
    free(seg);
    return rc;
}

/* ---- encoding -------------------------------------------------------------- */

int sn__usetok_encode(const sn_tokenizer_t *tok, const uint32_t *cps, int n,
                      sn__toks_t *out)
{
    const usetok_trie_t *t = tok->ug.trie;
    sn__ntext_t nt = {0};
    double *best = NULL;
    int32_t *words = NULL;
    sn__tok_t *rev = NULL;
    int rc, m;

    if (!t || n < 0)
        return SN_EARG;
    rc = usetok_normalize(cps, n, &nt);
    if (rc)
        goto out;
    m = nt.n;
    if (m == 0)
        goto out;
    best = calloc((size_t)m + 1, sizeof *best);
    words = calloc((size_t)m + 1, sizeof *words);
    rev = malloc(((size_t)m + 1) * sizeof *rev);
    if (!best || !words || !rev) {
        rc = -ENOMEM;
        goto out;
    }

    /* Relaxing arcs in increasing start order visits the arcs into each
     * end position in the same order as the reference's loop over ends. */
    for (int i = 0; i < m; i++) {
        int32_t node = 0;
        int matched = 0;
        for (int j = i; j < m; j++) {
            node = trie_child(t, node, nt.cp[j]);
            if (node < 0)
                break;
            const usetok_node_t *nd = &t->nodes[node];
            if (nd->id < 0)
                continue;
            matched = 1;
            int e = i + nd->depth;
            double sc = nd->score + best[i];
            if (best[e] == 0 || sc >= best[e]) {
                best[e] = sc;
                words[e] = nd->id;
            }
        }
        if (!matched) {
            double sc = 0.0 + best[i];
            if (best[i + 1] == 0 || sc >= best[i + 1]) {
                best[i + 1] = sc;
                words[i + 1] = SN_USETOK_UNK;
            }
        }
    }

    /* backtrack (UTF-16 lengths, as the reference), then fuse unknowns */
    int n_rev = 0;
    for (int iter = m; iter > 0;) {
        int32_t id = words[iter];
        int step = t->u16_len[id];
        int a = iter - step < 0 ? 0 : iter - step;
        rev[n_rev].id = id;
        rev[n_rev].start = a;
        rev[n_rev].end = iter;
        n_rev++;
        iter -= step;
    }
    for (int i = n_rev - 1; i >= 0; i--) {
        int32_t a = rev[i].start, b = rev[i].end;
        if (rev[i].id == SN_USETOK_UNK)
            while (i > 0 && rev[i - 1].id == SN_USETOK_UNK)
                b = rev[--i].end;
        /* normalized [a, b) -> original span; b > a always */
        rc = sn__toks_push(out, rev[i].id, nt.start[a], nt.end[b - 1]);
        if (rc)
            goto out;
    }
out:
    free(best);
    free(words);
    free(rev);
    sn__ntext_free(&nt);
    return rc;
}
