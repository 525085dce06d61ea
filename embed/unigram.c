/*
 * unigram.c -- the Unigram (SentencePiece-style) model of a tokenizer.json,
 * with the normalizers and pre-tokenizers that come with it, reproducing
 * Hugging Face `tokenizers` token for token and offset for offset.
 *
 * Pipeline for one text (original code points cps[0..n)):
 *   1. normalize: the tokenizer's normalizer steps (normalizer.c), which
 *      keep, for every normalized code point, the [start, end) span of
 *      original code points it came from;
 *   2. pre-tokenize: optional WhitespaceSplit, then Metaspace (' ' -> U+2581,
 *      prepend U+2581, split so that each U+2581 opens a word; prepending
 *      gives U+2581 the alignment of the first char);
 *   3. Viterbi over each word with the piece scores; runs of unknown pieces
 *      are fused into one token. A token spans [start of its first char, end
 *      of its last char).
 *
 * Invariants: after a successful sn__unigram_load, tok->ug.trie points to a
 * read-only ug_model_t, so any number of threads may encode at once; an
 * encode allocates its own scratch (a handful of arrays, sized once for the
 * text, grown geometrically when normalization expands it), never per char.
 * Scores are kept as doubles (as HF's f64) for Viterbi; tok->vocab.scores
 * holds float copies for the API.
 *
 * Tuned for: sentences to a few pages of text, vocabularies of 1k-250k
 * pieces. Viterbi is O(n * longest piece) with a code point trie whose edges
 * live in one open-addressing hash table; ASCII-only text skips the Unicode
 * normalization forms entirely.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <utf8proc.h>

#include "embed_int.h"
#include "tokenizer_int.h"

#define SN_UG_MAX_NORM_TEXT SN_NORM_MAX_TEXT
#define SN_UG_MAX_TRIE_CPS (1 << 26)  /* code points over all pieces */
#define SN_UG_UNK_PENALTY 10.0      /* unk score = min score - this (HF) */
#define SN_UG_SPACE 0x20u
#define SN_UG_METASPACE 0x2581u

typedef struct {
    uint64_t key;  /* (parent << 21) | code point */
    int32_t child; /* 0: empty slot (the root is never a child) */
} ug_edge_t;

typedef struct {
    sn__norm_t *norm;
    int ws_split;  /* WhitespaceSplit before Metaspace */
    int metaspace; /* Metaspace pre-tokenizer (params in tok->ug) */
    double *scores;
    double unk_score;
    int32_t *node_piece; /* piece id ending at each trie node, or -1 */
    int n_nodes;
    ug_edge_t *edges;
    uint32_t n_edge_slots; /* power of 2 */
    int edge_bits;
} ug_model_t;

/* ---- small helpers ------------------------------------------------------ */

/* Grow *p (elements of `size` bytes) to hold `need`; capped. */
static int grow(void **p, int *cap, int need, size_t size)
{
    if (need <= *cap)
        return 0;
    if (need > SN_UG_MAX_NORM_TEXT + 2)
        return SN_ETOOBIG;
    int c = *cap ? *cap : 64;
    while (c < need)
        c = c > SN_UG_MAX_NORM_TEXT / 2 ? SN_UG_MAX_NORM_TEXT + 2 : c * 2;
    void *q = realloc(*p, (size_t)c * size);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static int ntext_grow(sn__ntext_t *t, int need)
{
    if (need > SN_UG_MAX_NORM_TEXT + 2)
        return SN_ETOOBIG;
    return sn__ntext_reserve(t, need);
}

/* Decode UTF-8 (already validated by jansson) into cps; returns the count,
 * or -1 when it does not fit in max or is malformed. */
static int utf8_decode(const char *s, size_t len, uint32_t *cps, int max)
{
    int n = 0;
    size_t i = 0;
    while (i < len) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                              (utf8proc_ssize_t)(len - i), &c);
        if (k <= 0 || n >= max)
            return -1;
        if (cps)
            cps[n] = (uint32_t)c;
        n++;
        i += (size_t)k;
    }
    return n;
}

/* ---- the trie ----------------------------------------------------------- */

static uint32_t edge_hash(const ug_model_t *m, uint64_t key)
{
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - m->edge_bits));
}

static int32_t trie_child(const ug_model_t *m, int32_t node, uint32_t cp)
{
    uint64_t key = ((uint64_t)node << 21) | cp;
    uint32_t mask = m->n_edge_slots - 1;
    for (uint32_t i = edge_hash(m, key);; i = (i + 1) & mask) {
        const ug_edge_t *e = &m->edges[i];
        if (e->child == 0)
            return -1;
        if (e->key == key)
            return e->child;
    }
}

static int32_t trie_add(ug_model_t *m, int32_t node, uint32_t cp)
{
    uint64_t key = ((uint64_t)node << 21) | cp;
    uint32_t mask = m->n_edge_slots - 1;
    for (uint32_t i = edge_hash(m, key);; i = (i + 1) & mask) {
        ug_edge_t *e = &m->edges[i];
        if (e->child == 0) {
            e->key = key;
            e->child = m->n_nodes;
            m->node_piece[m->n_nodes] = -1;
            return m->n_nodes++;
        }
        if (e->key == key)
            return e->child;
    }
}

static int trie_build(ug_model_t *m, const sn__vocab_t *v, char *err,
                      size_t err_len)
{
    uint32_t cps[256];
    size_t total = 0;

    for (int id = 0; id < v->n_pieces; id++) {
        int k = utf8_decode(v->pieces[id], strlen(v->pieces[id]), NULL,
                            SN_UG_MAX_TRIE_CPS);
        if (k < 0)
            return sn__err(err, err_len, SN_EMODEL,
                           "unigram model: piece %d is not valid utf-8", id);
        total += (size_t)k;
        if (total > SN_UG_MAX_TRIE_CPS)
            return sn__err(err, err_len, SN_ETOOBIG,
                           "unigram model: pieces hold more than %d code "
                           "points",
                           SN_UG_MAX_TRIE_CPS);
    }
    uint32_t slots = 16;
    int bits = 4;
    while (slots < 2 * total + 2) {
        slots <<= 1;
        bits++;
    }
    m->edges = calloc(slots, sizeof *m->edges);
    m->node_piece = malloc((total + 1) * sizeof *m->node_piece);
    if (!m->edges || !m->node_piece)
        return sn__err(err, err_len, -ENOMEM, "unigram model: out of memory");
    m->n_edge_slots = slots;
    m->edge_bits = bits;
    m->n_nodes = 1;
    m->node_piece[0] = -1;

    for (int id = 0; id < v->n_pieces; id++) {
        const char *s = v->pieces[id];
        size_t len = strlen(s);
        int32_t node = 0;
        /* Decode in chunks so long pieces need no allocation. */
        size_t i = 0;
        while (i < len) {
            int n = 0;
            while (i < len && n < (int)(sizeof cps / sizeof *cps)) {
                utf8proc_int32_t c;
                utf8proc_ssize_t k = utf8proc_iterate(
                    (const utf8proc_uint8_t *)s + i,
                    (utf8proc_ssize_t)(len - i), &c);
                cps[n++] = (uint32_t)c; /* validated by the first pass */
                i += (size_t)k;
            }
            for (int j = 0; j < n; j++)
                node = trie_add(m, node, cps[j]);
        }
        if (node != 0) /* HF never matches an empty piece */
            m->node_piece[node] = id;
    }
    return 0;
}

/* ---- loading ------------------------------------------------------------ */

static int get_text(const json_t *j, uint32_t *out, int max, int *n_out)
{
    if (!json_is_string(j))
        return -1;
    int n = utf8_decode(json_string_value(j), json_string_length(j), out, max);
    if (n < 0)
        return -1;
    *n_out = n;
    return 0;
}

static int add_pretok(sn_tokenizer_t *tok, ug_model_t *m, const json_t *j,
                      int depth, char *err, size_t err_len)
{
    if (!j || json_is_null(j))
        return 0;
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!json_is_object(j) || !type)
        return sn__err(err, err_len, SN_EMODEL,
                       "unigram: pre_tokenizer has no 'type'");
    if (strcmp(type, "Sequence") == 0) {
        const json_t *arr = json_object_get(j, "pretokenizers");
        if (!json_is_array(arr) || depth > 4)
            return sn__err(err, err_len, SN_EMODEL,
                           "unigram: pre_tokenizer 'Sequence' has no "
                           "'pretokenizers' array");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            int rc = add_pretok(tok, m, json_array_get(arr, i), depth + 1,
                                err, err_len);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (strcmp(type, "WhitespaceSplit") == 0) {
        if (m->metaspace || m->ws_split)
            return sn__err(err, err_len, SN_EMODEL,
                           "unigram: pre_tokenizer 'WhitespaceSplit' is only "
                           "supported once, before 'Metaspace'");
        m->ws_split = 1;
        return 0;
    }
    if (strcmp(type, "Metaspace") != 0)
        return sn__err(err, err_len, SN_EMODEL,
                       "unigram: pre_tokenizer '%s' is not supported", type);
    if (m->metaspace)
        return sn__err(err, err_len, SN_EMODEL,
                       "unigram: more than one 'Metaspace' pre_tokenizer");

    uint32_t rep[2];
    int n_rep = 0;
    const json_t *r = json_object_get(j, "replacement");
    if (get_text(r, rep, 2, &n_rep) != 0 || n_rep != 1)
        return sn__err(err, err_len, SN_EMODEL,
                       "unigram: pre_tokenizer 'Metaspace' 'replacement' is "
                       "not a single character");
    const json_t *scheme = json_object_get(j, "prepend_scheme");
    const json_t *aps = json_object_get(j, "add_prefix_space");
    const json_t *split = json_object_get(j, "split");
    int always = 1, first = 0;
    if (scheme && !json_is_null(scheme)) {
        const char *s = json_string_value(scheme);
        if (!s)
            s = "";
        if (strcmp(s, "always") == 0) {
            always = 1;
        } else if (strcmp(s, "first") == 0) {
            always = 0;
            first = 1;
        } else if (strcmp(s, "never") == 0) {
            always = 0;
        } else {
            return sn__err(err, err_len, SN_EMODEL,
                           "unigram: pre_tokenizer 'Metaspace' "
                           "'prepend_scheme' '%s' is unknown",
                           s);
        }
        if (json_is_false(aps) && (always || first))
            return sn__err(err, err_len, SN_EMODEL,
                           "unigram: pre_tokenizer 'Metaspace' "
                           "'add_prefix_space' false contradicts "
                           "'prepend_scheme' '%s'",
                           s);
    } else if (json_is_false(aps)) {
        always = 0; /* legacy files: add_prefix_space alone */
    }
    if (split && !json_is_null(split) && !json_is_boolean(split))
        return sn__err(err, err_len, SN_EMODEL,
                       "unigram: pre_tokenizer 'Metaspace' 'split' is not a "
                       "boolean");
    m->metaspace = 1;
    tok->ug.replacement = rep[0];
    tok->ug.prepend_always = always;
    tok->ug.prepend_first = first;
    tok->ug.split = split && json_is_false(split) ? 0 : 1;
    return 0;
}

static void model_free(ug_model_t *m)
{
    if (!m)
        return;
    sn__norm_free(m->norm);
    free(m->scores);
    free(m->node_piece);
    free(m->edges);
    free(m);
}

int sn__unigram_load(sn_tokenizer_t *tok, const void *model_,
                     const void *normalizer_, const void *pretok_, char *err,
                     size_t err_len)
{
    const json_t *model = model_;
    ug_model_t *m = NULL;
    int rc;

    memset(&tok->vocab, 0, sizeof tok->vocab);
    memset(&tok->ug, 0, sizeof tok->ug);
    tok->kind = SN_TOK_UNIGRAM;
    tok->unk_id = -1;
    tok->ug.replacement = SN_UG_METASPACE;
    tok->ug.split = 1;

    if (!json_is_object(model)) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "unigram model: 'model' is not an object");
        goto fail;
    }
    const char *type = json_string_value(json_object_get(model, "type"));
    if (type && strcmp(type, "Unigram") != 0) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "unigram model: 'type' is '%s', not 'Unigram'", type);
        goto fail;
    }
    const json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_array(vocab) || json_array_size(vocab) == 0 ||
        json_array_size(vocab) > (1u << 24)) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "unigram model: 'vocab' is not a non-empty array of at "
                     "most %d [piece, score] pairs",
                     1 << 24);
        goto fail;
    }
    int n = (int)json_array_size(vocab);
    m = calloc(1, sizeof *m);
    if (!m) {
        rc = sn__err(err, err_len, -ENOMEM, "unigram model: out of memory");
        goto fail;
    }
    rc = sn__vocab_init(&tok->vocab, n);
    if (rc == 0) {
        tok->vocab.scores = malloc((size_t)n * sizeof *tok->vocab.scores);
        m->scores = malloc((size_t)n * sizeof *m->scores);
        if (!tok->vocab.scores || !m->scores)
            rc = -ENOMEM;
    }
    if (rc) {
        rc = sn__err(err, err_len, rc, "unigram model: out of memory");
        goto fail;
    }
    double min_score = INFINITY;
    for (int i = 0; i < n; i++) {
        const json_t *e = json_array_get(vocab, (size_t)i);
        const json_t *p = json_array_get(e, 0), *s = json_array_get(e, 1);
        if (!json_is_array(e) || json_array_size(e) != 2 ||
            !json_is_string(p) || !json_is_number(s)) {
            rc = sn__err(err, err_len, SN_EMODEL,
                         "unigram model: 'vocab' entry %d is not a "
                         "[piece, score] pair",
                         i);
            goto fail;
        }
        size_t len = json_string_length(p);
        if (memchr(json_string_value(p), '\0', len)) {
            rc = sn__err(err, err_len, SN_EMODEL,
                         "unigram model: 'vocab' entry %d contains a NUL", i);
            goto fail;
        }
        double sc = json_number_value(s);
        if (!isfinite(sc)) {
            rc = sn__err(err, err_len, SN_EMODEL,
                         "unigram model: 'vocab' entry %d has a non-finite "
                         "score",
                         i);
            goto fail;
        }
        rc = sn__vocab_set(&tok->vocab, i, json_string_value(p), len);
        if (rc) {
            rc = sn__err(err, err_len, rc, "unigram model: out of memory");
            goto fail;
        }
        m->scores[i] = sc;
        tok->vocab.scores[i] = (float)sc;
        if (sc < min_score)
            min_score = sc;
    }
    rc = sn__vocab_build(&tok->vocab);
    if (rc) {
        rc = sn__err(err, err_len, rc,
                     rc == -ENOMEM ? "unigram model: out of memory"
                                   : "unigram model: 'vocab' has a duplicate "
                                     "piece");
        goto fail;
    }
    const json_t *unk = json_object_get(model, "unk_id");
    if (unk && !json_is_null(unk)) {
        if (!json_is_integer(unk) || json_integer_value(unk) < 0 ||
            json_integer_value(unk) >= n) {
            rc = sn__err(err, err_len, SN_EMODEL,
                         "unigram model: 'unk_id' is not an id in [0, %d)",
                         n);
            goto fail;
        }
        tok->unk_id = (int32_t)json_integer_value(unk);
    }
    const json_t *bf = json_object_get(model, "byte_fallback");
    if (bf && !json_is_null(bf) && !json_is_boolean(bf)) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "unigram model: 'byte_fallback' is not a boolean");
        goto fail;
    }
    tok->ug.byte_fallback = json_is_true(bf);
    tok->ug.min_score = (float)min_score;
    m->unk_score = min_score - SN_UG_UNK_PENALTY;

    rc = trie_build(m, &tok->vocab, err, err_len);
    if (rc)
        goto fail;
    rc = sn__norm_load(normalizer_, &m->norm, err, err_len);
    if (rc)
        goto fail;
    rc = add_pretok(tok, m, pretok_, 0, err, err_len);
    if (rc)
        goto fail;
    tok->ug.trie = m;
    return 0;

fail:
    model_free(m);
    sn__vocab_free(&tok->vocab);
    tok->ug.trie = NULL;
    return rc;
}

void sn__unigram_free(sn_tokenizer_t *tok)
{
    if (!tok || tok->kind != SN_TOK_UNIGRAM)
        return;
    model_free(tok->ug.trie);
    tok->ug.trie = NULL;
}

/* ---- encoding scratch ----------------------------------------------------- */

typedef struct {
    double *score; /* Viterbi, per word position */
    int32_t *from, *piece, *path;
    int cap_score, cap_from, cap_piece, cap_path;
    char *utf8;
    int cap_utf8;
} ug_scratch_t;

static void scratch_free(ug_scratch_t *s)
{
    free(s->score);
    free(s->from);
    free(s->piece);
    free(s->path);
    free(s->utf8);
}

/* ---- the model ------------------------------------------------------------ */

static int utf8_put(char *out, uint32_t c)
{
    return (int)utf8proc_encode_char((utf8proc_int32_t)c,
                                     (utf8proc_uint8_t *)out);
}

/* Emit a fused run of unknown pieces w[a..b): HF looks the fused string up
 * in the vocabulary, then tries byte fallback, then gives unk. */
static int emit_unk_run(const sn_tokenizer_t *tok, const uint32_t *w,
                        const int32_t *ws, const int32_t *we, int a, int b,
                        ug_scratch_t *s, sn__toks_t *out)
{
    int32_t start = ws[a], end = we[b - 1];
    int rc = grow((void **)&s->utf8, &s->cap_utf8, 4 * (b - a) + 1, 1);
    if (rc)
        return rc;
    int len = 0, has_nul = 0;
    for (int i = a; i < b; i++) {
        len += utf8_put(s->utf8 + len, w[i]);
        has_nul |= w[i] == 0;
    }
    /* No piece holds a NUL (the loader refuses them), and sn__vocab_find
     * compares C strings, so a run with U+0000 is never looked up. */
    int32_t id = has_nul ? -1
                         : sn__vocab_find(&tok->vocab, s->utf8, (size_t)len);
    if (id >= 0)
        return sn__toks_push(out, id, start, end);
    if (tok->ug.byte_fallback) {
        static const char hex[] = "0123456789ABCDEF";
        int all = 1;
        for (int i = 0; i < len && all; i++) {
            uint8_t c = (uint8_t)s->utf8[i];
            char p[7] = {'<', '0', 'x', hex[c >> 4], hex[c & 15], '>', 0};
            all = sn__vocab_find(&tok->vocab, p, 6) >= 0;
        }
        if (all) {
            for (int i = 0; i < len && rc == 0; i++) {
                uint8_t c = (uint8_t)s->utf8[i];
                char p[7] = {'<', '0', 'x', hex[c >> 4], hex[c & 15], '>', 0};
                rc = sn__toks_push(out, sn__vocab_find(&tok->vocab, p, 6),
                                   start, end);
            }
            return rc;
        }
    }
    return sn__toks_push(out, tok->unk_id, start, end);
}

/* Viterbi over one word w[0..L) with alignments ws/we. Ties keep the first
 * candidate seen (starts in increasing order, shorter pieces first), as HF
 * does; the unk candidate for a char comes after its pieces. */
static int viterbi(const sn_tokenizer_t *tok, const ug_model_t *m,
                   const uint32_t *w, const int32_t *ws, const int32_t *we,
                   int L, ug_scratch_t *s, sn__toks_t *out)
{
    int rc;
    if (L <= 0)
        return 0;
    if ((rc = grow((void **)&s->score, &s->cap_score, L + 1,
                   sizeof *s->score)) ||
        (rc = grow((void **)&s->from, &s->cap_from, L + 1, sizeof *s->from)) ||
        (rc = grow((void **)&s->piece, &s->cap_piece, L + 1,
                   sizeof *s->piece)) ||
        (rc = grow((void **)&s->path, &s->cap_path, L + 1, sizeof *s->path)))
        return rc;
    double *score = s->score;
    int32_t *from = s->from, *piece = s->piece;
    score[0] = 0.0;
    from[0] = 0;
    for (int i = 1; i <= L; i++)
        from[i] = -1;

    for (int st = 0; st < L; st++) {
        double base = score[st];
        int single = 0;
        int32_t node = 0;
        for (int e = st; e < L; e++) {
            node = trie_child(m, node, w[e]);
            if (node < 0)
                break;
            int32_t pid = m->node_piece[node];
            if (pid < 0)
                continue;
            double cand = m->scores[pid] + base;
            if (from[e + 1] < 0 || cand > score[e + 1]) {
                score[e + 1] = cand;
                from[e + 1] = st;
                piece[e + 1] = pid;
            }
            if (e == st)
                single = 1;
        }
        if (!single) {
            if (tok->unk_id < 0)
                return SN_EMODEL; /* HF: MissingUnkId */
            double cand = m->unk_score + base;
            if (from[st + 1] < 0 || cand > score[st + 1]) {
                score[st + 1] = cand;
                from[st + 1] = st;
                piece[st + 1] = tok->unk_id;
            }
        }
    }

    int n_path = 0;
    for (int e = L; e > 0; e = from[e])
        s->path[n_path++] = e;
    int prev = 0, unk_a = -1, unk_b = -1;
    for (int k = n_path - 1; k >= 0 && rc == 0; k--) {
        int e = s->path[k];
        int32_t pid = piece[e];
        if (pid == tok->unk_id) { /* fused, even a literal "<unk>" piece */
            if (unk_a < 0)
                unk_a = prev;
            unk_b = e;
        } else {
            if (unk_a >= 0)
                rc = emit_unk_run(tok, w, ws, we, unk_a, unk_b, s, out);
            unk_a = -1;
            if (rc == 0)
                rc = sn__toks_push(out, pid, ws[prev], we[e - 1]);
        }
        prev = e;
    }
    if (rc == 0 && unk_a >= 0)
        rc = emit_unk_run(tok, w, ws, we, unk_a, unk_b, s, out);
    return rc;
}

/* Metaspace over segment t[a..b): ' ' -> replacement, prepend, split so
 * that each replacement opens a word; each word through Viterbi. */
static int metaspace_segment(const sn_tokenizer_t *tok, const ug_model_t *m,
                             int32_t offset, const sn__ntext_t *t, int a,
                             int b,
                             sn__ntext_t *w, ug_scratch_t *s,
                             sn__toks_t *out)
{
    uint32_t rep = tok->ug.replacement;
    int rc = ntext_grow(w, b - a + 1);
    if (rc)
        return rc;
    w->n = 0;
    if (b <= a)
        return 0;
    uint32_t first = t->cp[a] == SN_UG_SPACE ? rep : t->cp[a];
    /* "first" prepends only at the start of the text: HF asks whether the
     * split's original offset is 0, which for the whole text (or the piece
     * before an added token) holds even when normalization dropped its
     * first chars, and for a WhitespaceSplit word is its first char's */
    int prepend = first != rep &&
                  (tok->ug.prepend_always ||
                   (tok->ug.prepend_first && offset == 0 &&
                    (!m->ws_split || t->start[a] == 0)));
    if (prepend)
        sn__ntext_push(w, rep, t->start[a], t->end[a]);
    for (int i = a; i < b; i++)
        sn__ntext_push(w, t->cp[i] == SN_UG_SPACE ? rep : t->cp[i],
                       t->start[i], t->end[i]);
    if (!tok->ug.split)
        return viterbi(tok, m, w->cp, w->start, w->end, w->n, s, out);
    int ws = 0;
    for (int i = 1; i <= w->n && rc == 0; i++) {
        if (i == w->n || w->cp[i] == rep) {
            rc = viterbi(tok, m, w->cp + ws, w->start + ws, w->end + ws,
                         i - ws, s, out);
            ws = i;
        }
    }
    return rc;
}

int sn__unigram_encode(const sn_tokenizer_t *tok, const uint32_t *cps, int n,
                       sn__toks_t *out)
{
    return sn__unigram_encode_at(tok, cps, n, 0, out);
}

int sn__unigram_encode_at(const sn_tokenizer_t *tok, const uint32_t *cps,
                          int n, int32_t offset, sn__toks_t *out)
{
    const ug_model_t *m = tok ? tok->ug.trie : NULL;
    sn__ntext_t bufs[3] = {{0}};
    sn__ntext_t *cur = &bufs[0], *alt = &bufs[1], *w = &bufs[2];
    ug_scratch_t s;
    int rc;

    memset(&s, 0, sizeof s);
    if (!m || tok->kind != SN_TOK_UNIGRAM || n < 0 || (n > 0 && !cps) ||
        !out)
        return SN_EARG;
    if (n > SN_UG_MAX_NORM_TEXT)
        return SN_ETOOBIG;
    rc = ntext_grow(cur, n + 1);
    if (rc)
        goto fail;
    for (int i = 0; i < n; i++) {
        /* the trie keys hold 21 bits of code point: refuse non-scalars */
        if (cps[i] > 0x10FFFF || (cps[i] >= 0xD800 && cps[i] <= 0xDFFF)) {
            rc = SN_EUTF8;
            goto fail;
        }
        cur->cp[i] = cps[i];
        cur->start[i] = i;
        cur->end[i] = i + 1;
    }
    cur->n = n;

    rc = sn__norm_apply(m->norm, &cur, &alt);
    if (rc)
        goto fail;

    /* Pre-tokenize: WhitespaceSplit segments (whitespace removed), or the
     * whole text; then Metaspace, or the segment as one word. */
    for (int i = 0; i < cur->n;) {
        int a = i, b = cur->n;
        if (m->ws_split) {
            while (a < cur->n && sn__is_white_space(cur->cp[a]))
                a++;
            b = a;
            while (b < cur->n && !sn__is_white_space(cur->cp[b]))
                b++;
            if (a == b)
                break;
        }
        if (m->metaspace)
            rc = metaspace_segment(tok, m, offset, cur, a, b, w, &s, out);
        else
            rc = viterbi(tok, m, cur->cp + a, cur->start + a, cur->end + a,
                         b - a, &s, out);
        if (rc)
            goto fail;
        i = b;
    }
    rc = 0;

fail:
    sn__ntext_free(&bufs[0]);
    sn__ntext_free(&bufs[1]);
    sn__ntext_free(&bufs[2]);
    scratch_free(&s);
    return rc;
}

int sn__unigram_unk_text(const sn_tokenizer_t *tok, const uint32_t *cps,
                         int n, char *buf, size_t len)
{
    const ug_model_t *m = tok ? tok->ug.trie : NULL;
    sn__ntext_t bufs[2] = {{0}};
    sn__ntext_t *cur = &bufs[0], *alt = &bufs[1];
    int rc;

    if (!m || tok->kind != SN_TOK_UNIGRAM || n < 0 || !buf || len == 0)
        return SN_EARG;
    if ((rc = ntext_grow(cur, n + 1)))
        goto fail;
    for (int i = 0; i < n; i++)
        if ((rc = sn__ntext_push(cur, cps[i], i, i + 1)))
            goto fail;
    if ((rc = sn__norm_apply_ex(m->norm, &cur, &alt, 1)))
        goto fail;
    size_t o = 0;
    for (int i = 0; i < cur->n; i++) {
        char u[4];
        uint32_t c = cur->cp[i];
        if (m->metaspace && c == SN_UG_SPACE)
            c = tok->ug.replacement;
        size_t k = (size_t)utf8_put(u, c);
        if (o + k >= len)
            break;
        memcpy(buf + o, u, k);
        o += k;
    }
    buf[o] = '\0';
fail:
    sn__ntext_free(&bufs[0]);
    sn__ntext_free(&bufs[1]);
    return rc;
}
