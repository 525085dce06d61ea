/*
 * normalizer.c -- the "normalizer" of a tokenizer.json as a flat list of
 * steps (Sequences flattened): Nmt, NFC/NFD/NFKC/NFKD, Lowercase, Replace,
 * Prepend, Strip and Precompiled (a SentencePiece charsmap), each rewriting
 * an sn__ntext_t in which every normalized code point carries the
 * [start, end) span of original code points it came from. The Unigram and
 * BPE models share it; WordPiece keeps its BertNormalizer (wordpiece.c).
 *
 * Alignment rules (HF's NormalizedString::transform, which we follow on code
 * points rather than bytes; every rule below is what HF does, not a choice):
 *   - a transform is a stream of (char, change): change <= 0 takes the
 *     alignment of the next unconsumed source char and consumes it plus
 *     -change more; change > 0 (an insertion) copies the alignment of the
 *     last consumed source char, or (0, 0) when none was consumed yet;
 *   - NFKC & co produce that stream like the unicode-normalization-alignments
 *     crate: the first char of each decomposition 0, the others +1, canonical
 *     reordering moves the tags with the chars, and a composition of
 *     (a, ta) with (b, tb) carries ta + tb - 1;
 *   - Replace gives every char of the replacement the alignment of the LAST
 *     char of the match (so "a   b" collapsed to "a b" aligns the kept
 *     space with the third original space); a literal or one char repeated
 *     (" {2,}") is matched here, any other Regex by PCRE2 (bpe.c's
 *     sn__regex_*, with Oniguruma's \s);
 *   - Prepend gives its text the alignment of the first char;
 *   - Precompiled builds its stream grapheme by grapheme (see
 *     precompiled_apply), including HF's quirks.
 *
 * Precompiled: the charsmap is a little-endian u32 byte size of a
 * darts-clone double-array trie, the trie's u32 units, then a blob of
 * NUL-terminated replacement strings; the trie maps a UTF-8 key to the
 * offset of its replacement in the blob. HF (spm_precompiled) walks each
 * extended grapheme cluster: one shorter than 6 UTF-8 bytes is looked up
 * whole first, and its replacement is that of the SHORTEST key that is a
 * prefix of it; otherwise (or when nothing matches) each code point is
 * looked up alone. So NFD Hangul (2-3 jamo, 6-9 bytes) goes code point by
 * code point and is not recomposed, unlike SentencePiece. The loader checks
 * every unit a lookup can reach against the trie size and every blob offset
 * against the blob, so a truncated or corrupt map is refused at load, never
 * read out of bounds.
 *
 * Invariants: a loaded sn__norm_t is read-only, so any number of threads may
 * apply it at once; sn__norm_apply allocates its own scratch per call.
 * Unicode tables are utf8proc's where HF's crates may be older or newer,
 * which only matters for characters assigned since.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <utf8proc.h>

#include "embed_int.h"
#include "tokenizer_int.h"

#define SN_UG_MAX_NORMS 16          /* normalizer steps, Sequences flattened */
#define SN_UG_MAX_PATTERN 64        /* code points of a Replace/Prepend text */
#define SN_UG_MAX_NORM_TEXT SN_NORM_MAX_TEXT
#define SN_UG_MAX_DECOMP 32         /* a full decomposition (U+FDFA: 18) */
#define SN_UG_SPACE 0x20u
#define SN_PC_MAX_MAP (64u << 20)   /* bytes of a decoded charsmap */
#define SN_PC_GRAPHEME_MAX 6        /* HF looks up whole graphemes < 6 bytes */

typedef enum {
    UG_NMT = 0,
    UG_NFC,
    UG_NFD,
    UG_NFKC,
    UG_NFKD,
    UG_LOWERCASE,
    UG_REPLACE,
    UG_PREPEND,
    UG_STRIP,
    UG_PRECOMPILED,
} ug_norm_kind_t;

typedef struct {
    ug_norm_kind_t kind;
    /* UG_REPLACE: a literal (n_pat > 0), or rep_cp repeated rep_min to
     * rep_max times (rep_max 0: unbounded), as a Regex like " {2,}" */
    uint32_t pat[SN_UG_MAX_PATTERN];
    int n_pat;
    uint32_t rep_cp;
    void *re; /* any other Regex, by PCRE2 (bpe.c) */
    int rep_min, rep_max;
    /* UG_REPLACE content, UG_PREPEND text */
    uint32_t text[SN_UG_MAX_PATTERN];
    int n_text;
    int strip_left, strip_right; /* UG_STRIP */
} ug_norm_t;

/* A decoded SentencePiece charsmap. */
typedef struct {
    uint32_t *units;   /* darts-clone double array */
    uint32_t n_units;
    char *blob;        /* NUL-terminated replacements, blob[n_blob] = 0 */
    uint32_t n_blob;
} pc_map_t;

struct sn__norm {
    ug_norm_t norms[SN_UG_MAX_NORMS];
    int n_norms;
    pc_map_t pc;       /* the Precompiled step's map (at most one) */
};
typedef struct sn__norm ug_model_t;

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

/* A Replace "Regex": a literal (escaped metacharacters allowed), or one
 * literal char with +, {n}, {n,} or {n,m}. Anything else is refused. */
static int parse_regex(const char *re, ug_norm_t *st)
{
    uint32_t cps[SN_UG_MAX_PATTERN];
    int n = 0;
    size_t len = strlen(re), i = 0;
    int quant = 0, qmin = 0, qmax = 0;

    while (i < len) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)re + i,
                                              (utf8proc_ssize_t)(len - i), &c);
        if (k <= 0)
            return -1;
        i += (size_t)k;
        if (quant)
            return -1; /* nothing may follow the quantifier */
        if (c == '\\') {
            if (i >= len)
                return -1;
            c = (unsigned char)re[i++];
            /* \s, \d, \w, \b...: classes and assertions are not literals */
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                (c >= '0' && c <= '9') || c >= 0x80)
                return -1;
        } else if (c == '+' || c == '{') {
            if (n != 1)
                return -1; /* only a single quantified char */
            if (c == '+') {
                qmin = 1;
                qmax = 0;
            } else {
                char *end;
                long a, b;
                if (re[i] < '0' || re[i] > '9')
                    return -1;
                a = strtol(re + i, &end, 10);
                if (a < 1 || a > 1000000)
                    return -1;
                if (*end == '}') {
                    b = a;
                } else if (end[0] == ',' && end[1] == '}') {
                    b = 0;
                    end++;
                } else if (*end == ',') {
                    const char *p = end + 1;
                    if (*p < '0' || *p > '9')
                        return -1;
                    b = strtol(p, &end, 10);
                    if (b < a || b > 1000000 || *end != '}')
                        return -1;
                } else {
                    return -1;
                }
                qmin = (int)a;
                qmax = (int)b;
                i = (size_t)(end - re) + 1;
            }
            quant = 1;
            continue;
        } else if (strchr(".^$|()[]*?}", (int)c) && c < 0x80) {
            return -1;
        }
        if (n >= SN_UG_MAX_PATTERN)
            return -1;
        cps[n++] = (uint32_t)c;
    }
    if (n == 0)
        return -1;
    if (quant) {
        st->rep_cp = cps[0];
        st->rep_min = qmin;
        st->rep_max = qmax;
        st->n_pat = 0;
    } else {
        memcpy(st->pat, cps, (size_t)n * sizeof *cps);
        st->n_pat = n;
    }
    return 0;
}


/* ---- Precompiled: loading the charsmap ------------------------------------ */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Standard base64 with optional '=' padding; *out is malloc'd. */
static int b64_decode(const char *s, size_t len, uint8_t **out, size_t *n_out)
{
    while (len > 0 && s[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return -1;
    uint8_t *b = malloc(len / 4 * 3 + 3);
    if (!b)
        return -ENOMEM;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) {
            free(b);
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            b[n++] = (uint8_t)(acc >> bits);
        }
    }
    *out = b;
    *n_out = n;
    return 0;
}

static int pc_load(ug_model_t *m, const json_t *j, char *err, size_t err_len)
{
    uint8_t *raw = NULL;
    size_t n = 0;

    if (m->pc.units)
        return sn__err(err, err_len, SN_EMODEL,
                       "normalizer: more than one 'Precompiled'");
    if (json_is_null(j) || (json_is_string(j) && json_string_length(j) == 0))
        return 0;
    if (!json_is_string(j))
        return sn__err(err, err_len, SN_EMODEL,
                       "normalizer: 'Precompiled' has no "
                       "'precompiled_charsmap' string");
    if (json_string_length(j) > SN_PC_MAX_MAP / 3 * 4)
        return sn__err(err, err_len, SN_ETOOBIG,
                       "normalizer: 'precompiled_charsmap' is larger than "
                       "%u bytes", SN_PC_MAX_MAP);
    int rc = b64_decode(json_string_value(j), json_string_length(j), &raw, &n);
    if (rc == -ENOMEM)
        return sn__err(err, err_len, rc, "normalizer: out of memory");
    if (rc)
        return sn__err(err, err_len, SN_EMODEL,
                       "normalizer: 'precompiled_charsmap' is not valid "
                       "base64");
    if (n < 4) {
        free(raw);
        return sn__err(err, err_len, SN_EMODEL,
                       "normalizer: 'precompiled_charsmap' of %zu bytes is "
                       "too short for its trie size",
                       n);
    }
    uint32_t trie_len = (uint32_t)raw[0] | (uint32_t)raw[1] << 8 |
                        (uint32_t)raw[2] << 16 | (uint32_t)raw[3] << 24;
    if (trie_len % 4 != 0 || trie_len == 0 || trie_len > n - 4) {
        free(raw);
        return sn__err(err, err_len, SN_EMODEL,
                       "normalizer: 'precompiled_charsmap' is truncated or "
                       "corrupt: its trie claims %u bytes, %zu follow",
                       trie_len, n - 4);
    }
    uint32_t n_units = trie_len / 4, n_blob = (uint32_t)(n - 4 - trie_len);
    m->pc.units = malloc((size_t)n_units * sizeof *m->pc.units);
    m->pc.blob = malloc((size_t)n_blob + 1);
    if (!m->pc.units || !m->pc.blob) {
        free(raw);
        return sn__err(err, err_len, -ENOMEM, "normalizer: out of memory");
    }
    for (uint32_t i = 0; i < n_units; i++) {
        const uint8_t *u = raw + 4 + 4 * (size_t)i;
        m->pc.units[i] = (uint32_t)u[0] | (uint32_t)u[1] << 8 |
                         (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
    }
    memcpy(m->pc.blob, raw + 4 + trie_len, n_blob);
    m->pc.blob[n_blob] = '\0';
    m->pc.n_units = n_units;
    m->pc.n_blob = n_blob;
    free(raw);
    /* HF reads the blob as a Rust String: it must be UTF-8 */
    for (uint32_t at = 0; at < n_blob;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(
            (const utf8proc_uint8_t *)m->pc.blob + at,
            (utf8proc_ssize_t)(n_blob - at), &c);
        if (k <= 0)
            return sn__err(err, err_len, SN_EMODEL,
                           "normalizer: 'precompiled_charsmap' replacement "
                           "table is not valid utf-8 at byte %u",
                           at);
        at += (uint32_t)k;
    }
    return 0;
}

static int add_normalizer(ug_model_t *m, const json_t *j, int depth,
                          char *err, size_t err_len)
{
    if (!j || json_is_null(j))
        return 0;
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!json_is_object(j) || !type)
        return sn__err(err, err_len, SN_EMODEL,
                       "normalizer: normalizer has no 'type'");
    if (strcmp(type, "Sequence") == 0) {
        const json_t *arr = json_object_get(j, "normalizers");
        if (!json_is_array(arr) || depth > 4)
            return sn__err(err, err_len, SN_EMODEL,
                           "normalizer: normalizer 'Sequence' has no "
                           "'normalizers' array");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            int rc = add_normalizer(m, json_array_get(arr, i), depth + 1, err,
                                    err_len);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (m->n_norms >= SN_UG_MAX_NORMS)
        return sn__err(err, err_len, SN_EMODEL,
                       "normalizer: more than %d normalizers", SN_UG_MAX_NORMS);
    ug_norm_t *st = &m->norms[m->n_norms];
    memset(st, 0, sizeof *st);
    if (strcmp(type, "Nmt") == 0) {
        st->kind = UG_NMT;
    } else if (strcmp(type, "NFKC") == 0) {
        st->kind = UG_NFKC;
    } else if (strcmp(type, "NFC") == 0) {
        st->kind = UG_NFC;
    } else if (strcmp(type, "NFD") == 0) {
        st->kind = UG_NFD;
    } else if (strcmp(type, "NFKD") == 0) {
        st->kind = UG_NFKD;
    } else if (strcmp(type, "Lowercase") == 0) {
        st->kind = UG_LOWERCASE;
    } else if (strcmp(type, "Replace") == 0) {
        const json_t *pat = json_object_get(j, "pattern");
        const json_t *lit = json_object_get(pat, "String");
        const json_t *re = json_object_get(pat, "Regex");
        st->kind = UG_REPLACE;
        if (get_text(json_object_get(j, "content"), st->text,
                     SN_UG_MAX_PATTERN, &st->n_text) != 0)
            return sn__err(err, err_len, SN_EMODEL,
                           "normalizer: normalizer 'Replace' has no usable "
                           "'content'");
        if (json_is_string(lit)) {
            if (get_text(lit, st->pat, SN_UG_MAX_PATTERN, &st->n_pat) != 0 ||
                st->n_pat == 0)
                return sn__err(err, err_len, SN_EMODEL,
                               "normalizer: normalizer 'Replace' has an empty "
                               "or too long pattern");
        } else if (json_is_string(re)) {
            /* literals and one char repeated (' {2,}') by hand, the rest
             * by PCRE2 */
            if (parse_regex(json_string_value(re), st) != 0) {
                char msg[128];
                uint32_t *pc = malloc((json_string_length(re) + 1) *
                                      sizeof *pc);
                int n = pc ? utf8_decode(json_string_value(re),
                                         json_string_length(re), pc,
                                         (int)json_string_length(re) + 1)
                           : -1;
                st->re = n >= 0 ? sn__regex_compile(pc, n, msg, sizeof msg)
                                : NULL;
                free(pc);
                if (!st->re)
                    return sn__err(err, err_len, SN_EMODEL,
                                   "normalizer: normalizer 'Replace' regex "
                                   "'%s': %s",
                                   json_string_value(re),
                                   n >= 0 ? msg : "not valid utf-8");
                m->n_norms++; /* counted now: sn__norm_free frees it */
                return 0;
            }
        } else {
            return sn__err(err, err_len, SN_EMODEL,
                           "normalizer: normalizer 'Replace' has no 'String' or "
                           "'Regex' pattern");
        }
    } else if (strcmp(type, "Prepend") == 0) {
        st->kind = UG_PREPEND;
        if (get_text(json_object_get(j, "prepend"), st->text,
                     SN_UG_MAX_PATTERN, &st->n_text) != 0)
            return sn__err(err, err_len, SN_EMODEL,
                           "normalizer: normalizer 'Prepend' has no usable "
                           "'prepend'");
    } else if (strcmp(type, "Precompiled") == 0) {
        st->kind = UG_PRECOMPILED;
        int rc = pc_load(m, json_object_get(j, "precompiled_charsmap"), err,
                         err_len);
        if (rc)
            return rc;
        if (!m->pc.units)
            return 0; /* an empty charsmap: the identity, no step */
    } else if (strcmp(type, "Strip") == 0) {
        st->kind = UG_STRIP;
        st->strip_left = json_is_true(json_object_get(j, "strip_left"));
        st->strip_right = json_is_true(json_object_get(j, "strip_right"));
    } else {
        return sn__err(err, err_len, SN_EMODEL,
                       "normalizer: normalizer '%s' is not supported", type);
    }
    m->n_norms++;
    return 0;
}

/* ---- encoding scratch ----------------------------------------------------- */

typedef struct {
    uint32_t cp;
    uint8_t ccc;
    int8_t tag;
} ug_dchar_t;

typedef struct {
    uint32_t cp;
    int32_t change;
} ug_op_t;

typedef struct {
    ug_dchar_t *dec, *tmp; /* decomposition, and a sort buffer */
    int n_dec, cap_dec, cap_tmp;
    ug_op_t *ops, *blocked; /* transform stream; marks blocked (compose) */
    int n_ops, cap_ops, n_blocked, cap_blocked;
} ug_scratch_t;

static void scratch_free(ug_scratch_t *s)
{
    free(s->dec);
    free(s->tmp);
    free(s->ops);
    free(s->blocked);
}

static int push_op(ug_op_t **v, int *n, int *cap, uint32_t cp, int32_t change)
{
    if (*n == *cap) {
        int rc = grow((void **)v, cap, *n + 1, sizeof **v);
        if (rc)
            return rc;
    }
    (*v)[*n].cp = cp;
    (*v)[*n].change = change;
    (*n)++;
    return 0;
}

/* ---- normalizers ---------------------------------------------------------- */

/* Apply a (char, change) stream to src (HF's transform, in code points). */
static int apply_ops(const sn__ntext_t *src, const ug_op_t *ops, int n_ops,
                     int initial, sn__ntext_t *dst)
{
    int rc = ntext_grow(dst, n_ops);
    if (rc)
        return rc;
    dst->n = 0;
    int pos = initial;
    for (int i = 0; i < n_ops; i++) {
        int32_t s = 0, e = 0;
        if (ops[i].change > 0) {
            if (pos >= 1 && pos - 1 < src->n) {
                s = src->start[pos - 1];
                e = src->end[pos - 1];
            }
        } else {
            /* A well-formed stream never runs past the source; clamp. */
            int at = pos < src->n ? pos : src->n - 1;
            if (at >= 0) {
                s = src->start[at];
                e = src->end[at];
            }
            pos += 1 - ops[i].change;
        }
        dst->cp[dst->n] = ops[i].cp;
        dst->start[dst->n] = s;
        dst->end[dst->n] = e;
        dst->n++;
    }
    return 0;
}

static int nmt_removed(uint32_t c)
{
    return (c >= 0x1 && c <= 0x8) || c == 0xB || (c >= 0xE && c <= 0x1F) ||
           c == 0x7F || c == 0x8F || c == 0x9F;
}

static uint32_t nmt_map(uint32_t c)
{
    switch (c) {
    case 0x9: case 0xA: case 0xC: case 0xD: case 0x1680: case 0x2028:
    case 0x2029: case 0x2581: case 0xFEFF: case 0xFFFD:
        return SN_UG_SPACE;
    default:
        return c >= 0x200B && c <= 0x200F ? SN_UG_SPACE : c;
    }
}

/* Nmt: drop some controls, map other spaces to ' ', in place. A dropped
 * char takes nothing with it; kept chars keep their alignments. */
static void nmt_apply(sn__ntext_t *t)
{
    int j = 0;
    for (int i = 0; i < t->n; i++) {
        if (nmt_removed(t->cp[i]))
            continue;
        t->cp[j] = nmt_map(t->cp[i]);
        t->start[j] = t->start[i];
        t->end[j] = t->end[i];
        j++;
    }
    t->n = j;
}

static void strip_apply(const ug_norm_t *st, sn__ntext_t *t)
{
    int a = 0, b = t->n;
    if (st->strip_left)
        while (a < b && sn__is_white_space(t->cp[a]))
            a++;
    if (st->strip_right)
        while (b > a && sn__is_white_space(t->cp[b - 1]))
            b--;
    if (a > 0) {
        memmove(t->cp, t->cp + a, (size_t)(b - a) * sizeof *t->cp);
        memmove(t->start, t->start + a, (size_t)(b - a) * sizeof *t->start);
        memmove(t->end, t->end + a, (size_t)(b - a) * sizeof *t->end);
    }
    t->n = b - a;
}

static int lowercase_apply(const sn__ntext_t *src, sn__ntext_t *dst)
{
    int rc = ntext_grow(dst, src->n + 16);
    dst->n = 0;
    for (int i = 0; i < src->n && rc == 0; i++) {
        uint32_t c = src->cp[i];
        if (c == 0x130) { /* the one multi-char lowercase: i + U+0307 */
            rc = sn__ntext_push(dst, 'i', src->start[i], src->end[i]);
            if (rc == 0)
                rc = sn__ntext_push(dst, 0x307, src->start[i], src->end[i]);
        } else {
            rc = sn__ntext_push(dst, (uint32_t)utf8proc_tolower((int32_t)c),
                                src->start[i], src->end[i]);
        }
        if (rc == 0 && dst->n > SN_UG_MAX_NORM_TEXT)
            rc = SN_ETOOBIG;
    }
    return rc;
}

/* Length of the match of a Replace pattern at src[i], 0 when none; *skip is
 * set to how far a failed match lets the scan jump. */
static int replace_match(const ug_norm_t *st, const sn__ntext_t *src, int i,
                         int *skip)
{
    *skip = 1;
    if (st->n_pat > 0) {
        if (src->n - i < st->n_pat)
            return 0;
        for (int k = 0; k < st->n_pat; k++)
            if (src->cp[i + k] != st->pat[k])
                return 0;
        return st->n_pat;
    }
    if (src->cp[i] != st->rep_cp)
        return 0;
    int r = 1;
    while (i + r < src->n && src->cp[i + r] == st->rep_cp &&
           (st->rep_max == 0 || r < st->rep_max))
        r++;
    if (r < st->rep_min) {
        *skip = r; /* a shorter tail of the same run cannot match either */
        return 0;
    }
    return r;
}

/* Replace by a PCRE2 pattern: HF's replace over find_matches (no empty
 * match right after a match); each char of the content takes the alignment
 * of the match's last char (of the char before an empty match). */
static int replace_regex(const ug_norm_t *st, const sn__ntext_t *src,
                         sn__ntext_t *dst)
{
    int rc = ntext_grow(dst, src->n + 16), prev = 0, from = 0;
    int last_match_end = -1;
    void *md = rc ? NULL : sn__regex_match_data();
    if (!rc && !md)
        rc = -ENOMEM;
    dst->n = 0;
    while (rc == 0 && from <= src->n) {
        int ms, me;
        if (!sn__regex_find(st->re, src->cp, src->n, from, md, &ms, &me))
            break;
        if (ms == me && me == last_match_end) {
            from = me + 1;
            continue;
        }
        from = ms == me ? me + 1 : me;
        last_match_end = me;
        for (int i = prev; i < ms && rc == 0; i++)
            rc = sn__ntext_push(dst, src->cp[i], src->start[i], src->end[i]);
        int a = me > ms ? me - 1 : ms - 1;
        int32_t s0 = a >= 0 ? src->start[a] : 0, e0 = a >= 0 ? src->end[a] : 0;
        for (int k = 0; k < st->n_text && rc == 0; k++)
            rc = sn__ntext_push(dst, st->text[k], s0, e0);
        prev = me;
        if (rc == 0 && dst->n > SN_UG_MAX_NORM_TEXT)
            rc = SN_ETOOBIG;
    }
    for (int i = prev; i < src->n && rc == 0; i++)
        rc = sn__ntext_push(dst, src->cp[i], src->start[i], src->end[i]);
    sn__regex_match_data_free(md);
    return rc;
}

static int replace_apply(const ug_norm_t *st, const sn__ntext_t *src,
                         sn__ntext_t *dst)
{
    if (st->re)
        return replace_regex(st, src, dst);
    int rc = ntext_grow(dst, src->n + 16);
    dst->n = 0;
    int i = 0;
    while (i < src->n && rc == 0) {
        int skip, len = replace_match(st, src, i, &skip);
        if (len > 0) {
            int32_t s = src->start[i + len - 1], e = src->end[i + len - 1];
            for (int k = 0; k < st->n_text && rc == 0; k++)
                rc = sn__ntext_push(dst, st->text[k], s, e);
            i += len;
        } else {
            for (int k = 0; k < skip && rc == 0; k++, i++)
                rc = sn__ntext_push(dst, src->cp[i], src->start[i],
                                    src->end[i]);
        }
        if (rc == 0 && dst->n > SN_UG_MAX_NORM_TEXT)
            rc = SN_ETOOBIG;
    }
    return rc;
}

static int prepend_apply(const ug_norm_t *st, const sn__ntext_t *src,
                         sn__ntext_t *dst)
{
    int rc = ntext_grow(dst, src->n + st->n_text);
    if (rc)
        return rc;
    dst->n = 0;
    if (src->n == 0)
        return 0;
    for (int k = 0; k < st->n_text; k++)
        sn__ntext_push(dst, st->text[k], src->start[0], src->end[0]);
    for (int i = 0; i < src->n; i++)
        sn__ntext_push(dst, src->cp[i], src->start[i], src->end[i]);
    return 0;
}

/* Hangul syllables, composed by the Unicode rules (LV + T needs T > TBase). */
#define HG_SBASE 0xAC00u
#define HG_LBASE 0x1100u
#define HG_VBASE 0x1161u
#define HG_TBASE 0x11A7u
#define HG_LCOUNT 19u
#define HG_VCOUNT 21u
#define HG_TCOUNT 28u
#define HG_NCOUNT (HG_VCOUNT * HG_TCOUNT)
#define HG_SCOUNT (HG_LCOUNT * HG_NCOUNT)

/* The primary composite of (a, b), or 0. */
static uint32_t compose_pair(uint32_t a, uint32_t b)
{
    if (b < 0x300) /* no composition has a second char below U+0300 */
        return 0;
    if (a - HG_LBASE < HG_LCOUNT && b - HG_VBASE < HG_VCOUNT)
        return HG_SBASE + ((a - HG_LBASE) * HG_VCOUNT + (b - HG_VBASE)) *
                              HG_TCOUNT;
    if (a - HG_SBASE < HG_SCOUNT && (a - HG_SBASE) % HG_TCOUNT == 0) {
        if (b - HG_TBASE - 1 < HG_TCOUNT - 1)
            return a + (b - HG_TBASE);
        return 0;
    }
    if (b - HG_TBASE < HG_TCOUNT || b - HG_VBASE < HG_VCOUNT)
        return 0;
    utf8proc_int32_t buf[2] = {(utf8proc_int32_t)a, (utf8proc_int32_t)b};
    utf8proc_ssize_t k =
        utf8proc_normalize_utf32(buf, 2, UTF8PROC_COMPOSE | UTF8PROC_STABLE);
    return k == 1 ? (uint32_t)buf[0] : 0;
}

/* Stable sort of one run of non-starters by combining class. */
static int sort_run(ug_scratch_t *s, int a, int b)
{
    ug_dchar_t *d = s->dec;
    if (b - a <= 32) {
        for (int i = a + 1; i < b; i++) {
            ug_dchar_t x = d[i];
            int j = i;
            while (j > a && d[j - 1].ccc > x.ccc) {
                d[j] = d[j - 1];
                j--;
            }
            d[j] = x;
        }
        return 0;
    }
    int rc = grow((void **)&s->tmp, &s->cap_tmp, b - a, sizeof *s->tmp);
    if (rc)
        return rc;
    int count[257] = {0};
    for (int i = a; i < b; i++)
        count[d[i].ccc + 1]++;
    for (int c = 1; c < 257; c++)
        count[c] += count[c - 1];
    for (int i = a; i < b; i++)
        s->tmp[count[d[i].ccc]++] = d[i];
    memcpy(d + a, s->tmp, (size_t)(b - a) * sizeof *d);
    return 0;
}

/* NFC / NFD / NFKC / NFKD with alignments. */
static int unf_apply(int compat, int compose, const sn__ntext_t *src,
                     sn__ntext_t *dst, ug_scratch_t *s)
{
    utf8proc_int32_t buf[SN_UG_MAX_DECOMP];
    int rc;

    /* 1. full decomposition, first char of each tagged 0, the others +1 */
    s->n_dec = 0;
    rc = grow((void **)&s->dec, &s->cap_dec, src->n + 1, sizeof *s->dec);
    for (int i = 0; i < src->n && rc == 0; i++) {
        uint32_t c = src->cp[i];
        int k = 1;
        buf[0] = (utf8proc_int32_t)c;
        if (c >= 0xA0) {
            int last = 0;
            utf8proc_ssize_t r = utf8proc_decompose_char(
                (utf8proc_int32_t)c, buf, SN_UG_MAX_DECOMP,
                UTF8PROC_DECOMPOSE | (compat ? UTF8PROC_COMPAT : 0), &last);
            if (r >= 1 && r <= SN_UG_MAX_DECOMP)
                k = (int)r;
            else
                buf[0] = (utf8proc_int32_t)c;
        }
        if (s->n_dec + k > s->cap_dec)
            rc = grow((void **)&s->dec, &s->cap_dec, s->n_dec + k,
                      sizeof *s->dec);
        for (int j = 0; j < k && rc == 0; j++) {
            ug_dchar_t *d = &s->dec[s->n_dec++];
            d->cp = (uint32_t)buf[j];
            d->ccc = d->cp < 0x300 ? 0
                                   : (uint8_t)utf8proc_get_property(buf[j])
                                         ->combining_class;
            d->tag = j == 0 ? 0 : 1;
        }
    }
    /* 2. canonical ordering: each run of non-starters, stably by class */
    for (int i = 0; i < s->n_dec && rc == 0;) {
        if (s->dec[i].ccc == 0) {
            i++;
            continue;
        }
        int j = i;
        while (j < s->n_dec && s->dec[j].ccc != 0)
            j++;
        if (j - i > 1)
            rc = sort_run(s, i, j);
        i = j;
    }
    /* 3. the stream, recomposed like the alignments crate when composing */
    s->n_ops = 0;
    if (rc == 0)
        rc = grow((void **)&s->ops, &s->cap_ops, s->n_dec + 1, sizeof *s->ops);
    if (rc == 0 && !compose) {
        for (int i = 0; i < s->n_dec; i++) {
            s->ops[i].cp = s->dec[i].cp;
            s->ops[i].change = s->dec[i].tag;
        }
        s->n_ops = s->n_dec;
    } else if (rc == 0) {
        int have_k = 0, last_ccc = -1;
        uint32_t k_cp = 0;
        int32_t k_tag = 0;
        s->n_blocked = 0;
        for (int i = 0; i < s->n_dec && rc == 0; i++) {
            uint32_t c = s->dec[i].cp;
            int ccc = s->dec[i].ccc;
            int32_t tag = s->dec[i].tag;
            if (!have_k) {
                if (ccc != 0) {
                    rc = push_op(&s->ops, &s->n_ops, &s->cap_ops, c, tag);
                } else {
                    have_k = 1;
                    k_cp = c;
                    k_tag = tag;
                }
                continue;
            }
            if (last_ccc >= 0 && last_ccc >= ccc) {
                /* c is blocked from the starter */
                if (ccc == 0) {
                    rc = push_op(&s->ops, &s->n_ops, &s->cap_ops, k_cp, k_tag);
                    for (int b = 0; b < s->n_blocked && rc == 0; b++)
                        rc = push_op(&s->ops, &s->n_ops, &s->cap_ops,
                                     s->blocked[b].cp, s->blocked[b].change);
                    s->n_blocked = 0;
                    last_ccc = -1;
                    k_cp = c;
                    k_tag = tag;
                } else {
                    rc = push_op(&s->blocked, &s->n_blocked, &s->cap_blocked,
                                 c, tag);
                    last_ccc = ccc;
                }
                continue;
            }
            uint32_t r = compose_pair(k_cp, c);
            if (r) {
                k_cp = r;
                k_tag = k_tag + tag - 1;
            } else if (last_ccc < 0 && ccc == 0) {
                rc = push_op(&s->ops, &s->n_ops, &s->cap_ops, k_cp, k_tag);
                k_cp = c;
                k_tag = tag;
            } else {
                rc = push_op(&s->blocked, &s->n_blocked, &s->cap_blocked, c,
                             tag);
                last_ccc = ccc;
            }
        }
        if (rc == 0 && have_k)
            rc = push_op(&s->ops, &s->n_ops, &s->cap_ops, k_cp, k_tag);
        for (int b = 0; b < s->n_blocked && rc == 0; b++)
            rc = push_op(&s->ops, &s->n_ops, &s->cap_ops, s->blocked[b].cp,
                         s->blocked[b].change);
    }
    if (rc == 0 && s->n_ops > SN_UG_MAX_NORM_TEXT)
        rc = SN_ETOOBIG;
    if (rc == 0)
        rc = apply_ops(src, s->ops, s->n_ops, 0, dst);
    return rc;
}


/* ---- Precompiled: applying the charsmap ----------------------------------- */

/* darts-clone units: has_leaf, value, label, offset. */
#define PC_HAS_LEAF(u) (((u) >> 8) & 1u)
#define PC_VALUE(u) ((u) & 0x7fffffffu)
#define PC_LABEL(u) ((u) & 0x800000ffu)
#define PC_OFFSET(u) (((u) >> 10) << (((u) & (1u << 9)) >> 6))

/* The replacement of the shortest key that is a prefix of key[0, len) (HF
 * takes the first common-prefix result), as an offset into the blob; -1 when
 * none. A key stops at a NUL byte, as darts-clone's does. Every unit read is
 * bounds-checked: a corrupt trie gives no match, never a bad read. */
static int64_t pc_lookup(const pc_map_t *m, const uint8_t *key, size_t len)
{
    uint32_t pos = PC_OFFSET(m->units[0]);
    for (size_t i = 0; i < len && key[i]; i++) {
        pos ^= key[i];
        if (pos >= m->n_units)
            return -1;
        uint32_t unit = m->units[pos];
        if (PC_LABEL(unit) != key[i])
            return -1;
        pos ^= PC_OFFSET(unit);
        if (PC_HAS_LEAF(unit)) {
            if (pos >= m->n_units)
                return -1;
            uint32_t v = PC_VALUE(m->units[pos]);
            return v < m->n_blob ? (int64_t)v : -1;
        }
    }
    return -1;
}

/* HF's replace(): the new chars with change 0; then the last `diff` of them
 * marked as insertions, or the removal counted on the stream's last entry
 * (whatever char that is, even one of an earlier grapheme). */
static int pc_replace(ug_scratch_t *s, int n_old, const char *rep)
{
    int n_new = 0, rc = 0;
    size_t len = strlen(rep);
    for (size_t at = 0; at < len && rc == 0;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)rep +
                                                  at,
                                              (utf8proc_ssize_t)(len - at), &c);
        if (k <= 0)
            break; /* an offset into the middle of a char: stop there */
        rc = push_op(&s->ops, &s->n_ops, &s->cap_ops, (uint32_t)c, 0);
        n_new++;
        at += (size_t)k;
    }
    int diff = n_new - n_old;
    if (rc == 0 && diff > 0)
        for (int k = 1; k <= diff; k++)
            s->ops[s->n_ops - k].change = 1;
    else if (rc == 0 && diff < 0 && s->n_ops > 0)
        s->ops[s->n_ops - 1].change += diff;
    return rc;
}

static int precompiled_apply(const pc_map_t *m, const sn__ntext_t *src,
                             sn__ntext_t *dst, ug_scratch_t *s)
{
    uint8_t key[4 * SN_PC_GRAPHEME_MAX];
    int rc = 0;

    s->n_ops = 0;
    for (int g0 = 0; g0 < src->n && rc == 0;) {
        /* the extended grapheme cluster [g0, g1) and its UTF-8 size */
        utf8proc_int32_t state = 0;
        int g1 = g0 + 1;
        while (g1 < src->n &&
               !utf8proc_grapheme_break_stateful(
                   (utf8proc_int32_t)src->cp[g1 - 1],
                   (utf8proc_int32_t)src->cp[g1], &state))
            g1++;
        size_t blen = 0;
        for (int i = g0; i < g1 && blen < SN_PC_GRAPHEME_MAX; i++)
            blen += (size_t)utf8proc_encode_char(
                (utf8proc_int32_t)src->cp[i], key + blen);
        if (blen < SN_PC_GRAPHEME_MAX) {
            int64_t v = pc_lookup(m, key, blen);
            if (v >= 0) {
                rc = pc_replace(s, g1 - g0, m->blob + v);
                g0 = g1;
                continue;
            }
        }
        for (int i = g0; i < g1 && rc == 0; i++) {
            size_t k = (size_t)utf8proc_encode_char(
                (utf8proc_int32_t)src->cp[i], key);
            int64_t v = pc_lookup(m, key, k);
            if (v >= 0)
                rc = pc_replace(s, 1, m->blob + v);
            else
                rc = push_op(&s->ops, &s->n_ops, &s->cap_ops, src->cp[i], 0);
        }
        g0 = g1;
        if (rc == 0 && s->n_ops > SN_UG_MAX_NORM_TEXT)
            rc = SN_ETOOBIG;
    }
    if (rc == 0)
        rc = apply_ops(src, s->ops, s->n_ops, 0, dst);
    return rc;
}

/* Run one step; *cur holds the text before and after (buffers swap). */
static int norm_step(const ug_model_t *m, const ug_norm_t *st,
                     sn__ntext_t **cur, sn__ntext_t **alt, ug_scratch_t *s)
{
    sn__ntext_t *src = *cur, *dst = *alt;
    int rc = 0;

    switch (st->kind) {
    case UG_NMT:
        nmt_apply(src);
        return 0;
    case UG_STRIP:
        strip_apply(st, src);
        return 0;
    case UG_NFC:
    case UG_NFD:
    case UG_NFKC:
    case UG_NFKD: {
        int ascii = 1;
        for (int i = 0; i < src->n && ascii; i++)
            ascii = src->cp[i] < 0xA0;
        if (ascii) /* nothing below U+00A0 decomposes or composes */
            return 0;
        rc = unf_apply(st->kind == UG_NFKC || st->kind == UG_NFKD,
                       st->kind == UG_NFC || st->kind == UG_NFKC, src, dst, s);
        break;
    }
    case UG_LOWERCASE:
        rc = lowercase_apply(src, dst);
        break;
    case UG_REPLACE:
        rc = replace_apply(st, src, dst);
        break;
    case UG_PREPEND:
        rc = prepend_apply(st, src, dst);
        break;
    case UG_PRECOMPILED:
        rc = precompiled_apply(&m->pc, src, dst, s);
        break;
    }
    if (rc == 0) {
        *cur = dst;
        *alt = src;
    }
    return rc;
}

/* ---- the public face -------------------------------------------------------- */

void sn__norm_free(sn__norm_t *m)
{
    if (!m)
        return;
    for (int k = 0; k < m->n_norms; k++)
        sn__regex_free(m->norms[k].re);
    free(m->pc.units);
    free(m->pc.blob);
    free(m);
}

int sn__norm_load(const void *json, sn__norm_t **out, char *err,
                  size_t err_len)
{
    const json_t *j = json;
    *out = NULL;
    if (!j || json_is_null(j))
        return 0;
    ug_model_t *m = calloc(1, sizeof *m);
    if (!m)
        return sn__err(err, err_len, -ENOMEM, "normalizer: out of memory");
    int rc = add_normalizer(m, j, 0, err, err_len);
    if (rc) {
        sn__norm_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int sn__norm_apply(const sn__norm_t *m, sn__ntext_t **cur, sn__ntext_t **alt)
{
    return sn__norm_apply_ex(m, cur, alt, 0);
}

int sn__norm_apply_ex(const sn__norm_t *m, sn__ntext_t **cur,
                      sn__ntext_t **alt, int no_strip)
{
    ug_scratch_t s;
    int rc = 0;

    if (!m)
        return 0;
    memset(&s, 0, sizeof s);
    for (int k = 0; k < m->n_norms && rc == 0; k++)
        if (!no_strip || m->norms[k].kind != UG_STRIP)
            rc = norm_step(m, &m->norms[k], cur, alt, &s);
    scratch_free(&s);
    return rc;
}
