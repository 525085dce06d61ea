/*
 * bpe.c -- the BPE model of a tokenizer.json (RoBERTa, GPT-2, Qwen2/3,
 * ModernBERT...) with the pre-tokenizers that come with it, reproducing
 * Hugging Face `tokenizers` 0.23 token for token and offset for offset.
 *
 * Pipeline for one text (original code points cps[0..n)):
 *   1. normalize: the normalizer steps of normalizer.c (NFC, Strip,
 *      Replace, ...), every normalized code point keeping the [start, end)
 *      span of original code points it came from;
 *   2. pre-tokenize: a list of steps over a list of spans of that text:
 *        Split            a regex (or literal) with HF's behaviours
 *                         (Isolated, Removed, MergedWithPrevious,
 *                         MergedWithNext, Contiguous) and `invert`;
 *        WhitespaceSplit  runs of non-White_Space chars;
 *        Metaspace        ' ' to the replacement, prepended (always, or
 *                         "first" for the split starting the text), each
 *                         replacement opening a piece (sentencepiece-style
 *                         BPE, Llama/Mistral);
 *        ByteLevel        add_prefix_space (a ' ' before each span that
 *                         does not start with one, aligned with its first
 *                         char), use_regex (the GPT-2 pattern, Isolated),
 *                         then every char becomes one char per UTF-8 byte
 *                         through GPT-2's byte-to-unicode table; the first
 *                         takes the char's alignment, the others are
 *                         insertions and copy it, so a token holding part
 *                         of a char spans the whole char;
 *   3. BPE over each span: each char looked up alone (else byte fallback
 *      <0xXX>, else unk -- fused when fuse_unk --, else dropped, as HF),
 *      then the merges applied lowest rank first, leftmost first among
 *      equals (HF's merge_all with a binary heap, no dropout).
 *
 * Regexes: PCRE2 (Debian's libpcre2-dev) in its 32-bit flavour, matching
 * the code points directly, with PCRE2_UTF | PCRE2_UCP and the JIT. HF uses
 * Oniguruma; the patterns real models use (GPT-2, Qwen2, Llama-3) mean the
 * same in both, except that Oniguruma's \s is White_Space, which has U+0085
 * where PCRE2's Unicode \s has not: patterns are rewritten so that \s
 * includes it (\S excludes it). PCRE2 rather than a matcher written over
 * utf8proc's categories, by measurement (bench/bench_tokenize.c, 2 MB of
 * sentences-2.json, this 2-core Xeon at load average 8.5): the GPT-2 split
 * alone runs at 20.7 MB/s with PCRE2's JIT (7.6 interpreted) and 73.9 MB/s
 * hand-written, cutting identically; but the whole byte-level tokenizer
 * runs at 2.2-2.7 MB/s, so the split is about a tenth of the time and a
 * hand-written one would save under 8%, for one pattern only, where PCRE2
 * runs every pattern a tokenizer.json may hold (Qwen2, Llama-3, ...).
 * Matches pass PCRE2_NO_UTF_CHECK: the text is valid by construction, and
 * the check would rescan the whole span at every match (quadratic).
 *
 * Invariants: after sn__bpe_load, tok->bpe.model is read-only (compiled
 * patterns included; match data is per call), so any number of threads may
 * encode at once. Scratch memory belongs to each call.
 *
 * Not supported (the loader says so): continuing_subword_prefix and
 * end_of_word_suffix (no embedder we know uses them with BPE), dropout > 0
 * (random merges), pre-tokenizers other than the four above.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 32
#include <jansson.h>
#include <pcre2.h>
#include <utf8proc.h>

#include "embed_int.h"
#include "tokenizer_int.h"

#define BPE_MAX_STEPS 8          /* pre-tokenizer steps, Sequences flattened */
#define BPE_MAX_PATTERN 4096     /* code points of a Split pattern */
#define BPE_MAX_MERGES (1 << 24)
#define BPE_BYTE_CACHE 0x144     /* code points below this: cached ids */

/* GPT-2's pattern, which ByteLevel applies when use_regex is true. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+"
    "|\\s+(?!\\S)|\\s+";

typedef enum {
    PT_SPLIT = 0,
    PT_WS_SPLIT,
    PT_BYTE_LEVEL,
    PT_METASPACE,
} pt_kind_t;

typedef enum {
    SB_REMOVED = 0,
    SB_ISOLATED,
    SB_MERGED_PREV,
    SB_MERGED_NEXT,
    SB_CONTIGUOUS,
} split_behavior_t;

typedef struct {
    pt_kind_t kind;
    pcre2_code *re;        /* PT_SPLIT; PT_BYTE_LEVEL with use_regex */
    split_behavior_t behavior;
    int invert;
    int add_prefix_space;  /* PT_BYTE_LEVEL */
    uint32_t replacement;  /* PT_METASPACE: its char, */
    int prepend;           /* 0 never, 1 always, 2 first, */
    int ms_split;          /* and whether each replacement opens a word */
} pt_step_t;

typedef struct {
    uint64_t key;    /* (left id << 32) | right id; 0 with rank < 0: empty */
    int32_t rank;    /* -1: empty slot */
    int32_t new_id;
} merge_slot_t;

typedef struct {
    sn__norm_t *norm;
    pt_step_t steps[BPE_MAX_STEPS];
    int n_steps;
    merge_slot_t *merges;
    uint32_t n_merge_slots; /* power of 2 */
    int byte_fallback, fuse_unk, ignore_merges;
    int32_t byte_ids[256];  /* <0xXX> pieces when byte_fallback, else -1 */
    int32_t cache[BPE_BYTE_CACHE]; /* id of each small code point alone */
} bpe_model_t;

/* ---- the byte-to-unicode table (GPT-2) ----------------------------------- */

/* Printable Latin-1 bytes stand for themselves; the 68 others, in order,
 * for U+0100 onwards. */
static uint32_t byte_char(uint8_t b)
{
    if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae)
        return b;
    int n = 0;
    for (int k = 0; k < b; k++)
        if (!((k >= 0x21 && k <= 0x7e) || (k >= 0xa1 && k <= 0xac) ||
              k >= 0xae))
            n++;
    return 0x100u + (uint32_t)n;
}

/* ---- merges ---------------------------------------------------------------- */

static uint32_t merge_hash(uint64_t key, uint32_t n_slots)
{
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (n_slots - 1);
}

static const merge_slot_t *merge_find(const bpe_model_t *m, int32_t a,
                                      int32_t b)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint32_t i = merge_hash(key, m->n_merge_slots);;
         i = (i + 1) & (m->n_merge_slots - 1)) {
        const merge_slot_t *s = &m->merges[i];
        if (s->rank < 0)
            return NULL;
        if (s->key == key)
            return s;
    }
}

/* ---- loading ---------------------------------------------------------------- */

/* UTF-8 to code points; -1 when invalid or longer than max. */
static int to_cps(const char *s, size_t len, uint32_t *out, int max)
{
    int n = 0;
    for (size_t at = 0; at < len;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + at,
                                              (utf8proc_ssize_t)(len - at), &c);
        if (k <= 0 || n >= max)
            return -1;
        out[n++] = (uint32_t)c;
        at += (size_t)k;
    }
    return n;
}

/* Compile a pattern (code points) with \s widened to White_Space as
 * Oniguruma has it (U+0085); on failure NULL with PCRE2's message in msg. */
static pcre2_code *compile_pattern(const uint32_t *pat, int n, int literal,
                                   char *msg, size_t msg_len)
{
    /* the rewrite grows a pattern at most 5.5 times (\S -> 11 chars) */
    uint32_t *buf = malloc(((size_t)n * 6 + 16) * sizeof *buf);
    int k = 0, in_class = 0;
    int errcode;
    PCRE2_SIZE erroff;

    if (!buf) {
        snprintf(msg, msg_len, "out of memory");
        return NULL;
    }

    if (literal) { /* every char that is not a letter or digit escaped */
        for (int i = 0; i < n; i++) {
            uint32_t c = pat[i];
            if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
                  (c >= 'a' && c <= 'z') || c >= 0x80))
                buf[k++] = '\\';
            buf[k++] = c;
        }
    } else {
        for (int i = 0; i < n; i++) {
            uint32_t c = pat[i];
            if (c == '\\' && i + 1 < n) {
                uint32_t d = pat[++i];
                if (d == 's' || d == 'S') {
                    static const uint32_t in_s[] = {'\\', 's', '\\', 'x', '{',
                                                    '8', '5', '}'};
                    static const uint32_t out_s[] = {'[', '\\', 's', '\\',
                                                     'x', '{', '8', '5', '}',
                                                     ']'};
                    static const uint32_t out_S[] = {'[', '^', '\\', 's',
                                                     '\\', 'x', '{', '8', '5',
                                                     '}', ']'};
                    if (in_class && d == 's') {
                        memcpy(buf + k, in_s, sizeof in_s);
                        k += 8;
                    } else if (!in_class) {
                        const uint32_t *w = d == 's' ? out_s : out_S;
                        int wn = d == 's' ? 10 : 11;
                        memcpy(buf + k, w, (size_t)wn * sizeof *w);
                        k += wn;
                    } else { /* \S in a class: leave it alone */
                        buf[k++] = '\\';
                        buf[k++] = d;
                    }
                } else {
                    buf[k++] = '\\';
                    buf[k++] = d;
                }
                continue;
            }
            if (c == '[' && !in_class) {
                in_class = 1;
                buf[k++] = c;
                if (i + 1 < n && pat[i + 1] == '^')
                    buf[k++] = pat[++i];
                if (i + 1 < n && pat[i + 1] == ']') /* a literal ] first */
                    buf[k++] = pat[++i];
                continue;
            }
            if (c == ']' && in_class)
                in_class = 0;
            buf[k++] = c;
        }
    }
    pcre2_code *re = pcre2_compile(
        (PCRE2_SPTR)buf, (PCRE2_SIZE)k,
        PCRE2_UTF | PCRE2_UCP, &errcode,
        &erroff, NULL);
    free(buf);
    if (!re) {
        PCRE2_UCHAR32 ebuf[256];
        int len = pcre2_get_error_message(errcode, ebuf, 256);
        size_t o = 0;
        for (int i = 0; i < len && o + 1 < msg_len; i++)
            msg[o++] = ebuf[i] < 0x80 ? (char)ebuf[i] : '?';
        if (msg_len)
            msg[o < msg_len ? o : msg_len - 1] = '\0';
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* interpreted if it fails */
    return re;
}

void *sn__regex_compile(const uint32_t *pat, int n, char *msg,
                        size_t msg_len)
{
    if (n < 0 || n > BPE_MAX_PATTERN) {
        snprintf(msg, msg_len, "longer than %d chars", BPE_MAX_PATTERN);
        return NULL;
    }
    return compile_pattern(pat, n, 0, msg, msg_len);
}

int sn__regex_find(const void *re, const uint32_t *cps, int n, int from,
                   void *md, int *start, int *end)
{
    int r = pcre2_match(re, (PCRE2_SPTR)cps, (PCRE2_SIZE)n, (PCRE2_SIZE)from,
                        PCRE2_NO_UTF_CHECK, md, NULL);
    if (r < 0)
        return 0;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *start = (int)ov[0];
    *end = (int)ov[1];
    return 1;
}

void *sn__regex_match_data(void) { return pcre2_match_data_create(1, NULL); }
void sn__regex_match_data_free(void *md) { pcre2_match_data_free(md); }
void sn__regex_free(void *re) { pcre2_code_free(re); }

static int add_pretok(bpe_model_t *m, const json_t *j, int depth, char *err,
                      size_t err_len)
{
    if (!j || json_is_null(j))
        return 0;
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!json_is_object(j) || !type)
        return sn__err(err, err_len, SN_EMODEL,
                       "pre_tokenizer: missing or not a string 'type'");
    if (strcmp(type, "Sequence") == 0) {
        const json_t *arr = json_object_get(j, "pretokenizers");
        if (!json_is_array(arr) || depth > 4)
            return sn__err(err, err_len, SN_EMODEL,
                           "pre_tokenizer: 'Sequence' has no "
                           "'pretokenizers' array");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            int rc = add_pretok(m, json_array_get(arr, i), depth + 1, err,
                                err_len);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (m->n_steps >= BPE_MAX_STEPS)
        return sn__err(err, err_len, SN_EMODEL,
                       "pre_tokenizer: more than %d steps", BPE_MAX_STEPS);
    pt_step_t *st = &m->steps[m->n_steps];
    memset(st, 0, sizeof *st);
    if (strcmp(type, "WhitespaceSplit") == 0) {
        st->kind = PT_WS_SPLIT;
    } else if (strcmp(type, "Metaspace") == 0) {
        const json_t *r = json_object_get(j, "replacement");
        const json_t *ps = json_object_get(j, "prepend_scheme");
        const json_t *aps = json_object_get(j, "add_prefix_space");
        const json_t *sp = json_object_get(j, "split");
        uint32_t rep[2];
        const char *scheme = json_string_value(ps);
        if (!json_is_string(r) ||
            to_cps(json_string_value(r), json_string_length(r), rep, 2) != 1)
            return sn__err(err, err_len, SN_EMODEL,
                           "pre_tokenizer: Metaspace 'replacement' is not a "
                           "single character");
        st->kind = PT_METASPACE;
        st->replacement = rep[0];
        if (!scheme)
            st->prepend = aps && json_is_false(aps) ? 0 : 1;
        else if (!strcmp(scheme, "always"))
            st->prepend = 1;
        else if (!strcmp(scheme, "first"))
            st->prepend = 2;
        else if (!strcmp(scheme, "never"))
            st->prepend = 0;
        else
            return sn__err(err, err_len, SN_EMODEL,
                           "pre_tokenizer: Metaspace 'prepend_scheme' '%s' "
                           "is unknown",
                           scheme);
        st->ms_split = !(sp && json_is_false(sp));
    } else if (strcmp(type, "ByteLevel") == 0) {
        const json_t *aps = json_object_get(j, "add_prefix_space");
        const json_t *ur = json_object_get(j, "use_regex");
        st->kind = PT_BYTE_LEVEL;
        st->add_prefix_space = aps ? json_is_true(aps) : 1;
        if (!ur || json_is_true(ur)) {
            uint32_t pat[sizeof gpt2_pattern];
            int n = to_cps(gpt2_pattern, strlen(gpt2_pattern), pat,
                           (int)sizeof gpt2_pattern);
            char msg[128];
            st->re = compile_pattern(pat, n, 0, msg, sizeof msg);
            if (!st->re)
                return sn__err(err, err_len, SN_EMODEL,
                               "pre_tokenizer: ByteLevel regex: %s", msg);
        }
        st->behavior = SB_ISOLATED;
    } else if (strcmp(type, "Split") == 0) {
        const json_t *pat = json_object_get(j, "pattern");
        const json_t *lit = json_object_get(pat, "String");
        const json_t *re = json_object_get(pat, "Regex");
        const char *beh = json_string_value(json_object_get(j, "behavior"));
        static const char *names[] = {"Removed", "Isolated",
                                      "MergedWithPrevious", "MergedWithNext",
                                      "Contiguous"};
        const json_t *p = json_is_string(lit) ? lit : re;
        uint32_t *buf = malloc(BPE_MAX_PATTERN * sizeof *buf);
        if (!buf)
            return sn__err(err, err_len, -ENOMEM, "out of memory");
        int n = json_is_string(p)
                    ? to_cps(json_string_value(p), json_string_length(p), buf,
                             BPE_MAX_PATTERN)
                    : -1;
        if (n < 0) {
            free(buf);
            return sn__err(err, err_len, SN_EMODEL,
                           "pre_tokenizer: Split: 'pattern' needs a 'String' "
                           "or 'Regex' string of at most %d chars",
                           BPE_MAX_PATTERN);
        }
        st->kind = PT_SPLIT;
        st->behavior = SB_ISOLATED + 100;
        for (int k = 0; beh && k < 5; k++)
            if (strcmp(beh, names[k]) == 0)
                st->behavior = (split_behavior_t)k;
        if ((int)st->behavior == SB_ISOLATED + 100) {
            free(buf);
            return sn__err(err, err_len, SN_EMODEL,
                           "pre_tokenizer: Split: 'behavior' '%s' is not one "
                           "of Removed, Isolated, MergedWithPrevious, "
                           "MergedWithNext, Contiguous",
                           beh ? beh : "(missing)");
        }
        st->invert = json_is_true(json_object_get(j, "invert"));
        char msg[128];
        st->re = compile_pattern(buf, n, p == lit, msg, sizeof msg);
        free(buf);
        if (!st->re)
            return sn__err(err, err_len, SN_EMODEL,
                           "pre_tokenizer: Split: regex '%s': %s",
                           json_string_value(p), msg);
    } else {
        return sn__err(err, err_len, SN_EMODEL,
                       "pre_tokenizer '%s' is not supported with BPE "
                       "(ByteLevel, Split, WhitespaceSplit, Metaspace, "
                       "Sequence)",
                       type);
    }
    m->n_steps++;
    return 0;
}

static void model_free(bpe_model_t *m)
{
    if (!m)
        return;
    sn__norm_free(m->norm);
    for (int i = 0; i < m->n_steps; i++)
        pcre2_code_free(m->steps[i].re);
    free(m->merges);
    free(m);
}

void sn__bpe_free(sn_tokenizer_t *tok)
{
    if (!tok || tok->kind != SN_TOK_BPE)
        return;
    model_free(tok->bpe.model);
    tok->bpe.model = NULL;
}

/* Split one merges entry into its two pieces: "a b" or ["a", "b"]. */
static int merge_pieces(const json_t *e, const char **a, size_t *a_len,
                        const char **b, size_t *b_len)
{
    if (json_is_string(e)) {
        const char *s = json_string_value(e);
        size_t len = json_string_length(e);
        const char *sp = memchr(s, ' ', len);
        if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - s)))
            return -1; /* HF: exactly one space */
        *a = s;
        *a_len = (size_t)(sp - s);
        *b = sp + 1;
        *b_len = len - *a_len - 1;
        return 0;
    }
    if (json_is_array(e) && json_array_size(e) == 2 &&
        json_is_string(json_array_get(e, 0)) &&
        json_is_string(json_array_get(e, 1))) {
        *a = json_string_value(json_array_get(e, 0));
        *a_len = json_string_length(json_array_get(e, 0));
        *b = json_string_value(json_array_get(e, 1));
        *b_len = json_string_length(json_array_get(e, 1));
        return 0;
    }
    return -1;
}

static int load_merges(bpe_model_t *m, const sn__vocab_t *v,
                       const json_t *merges, char *err, size_t err_len)
{
    size_t n = json_array_size(merges);
    char *cat = NULL;
    size_t cat_cap = 0;
    int rc = 0;

    if (n > BPE_MAX_MERGES)
        return sn__err(err, err_len, SN_ETOOBIG,
                       "model.merges: %zu merges, more than %d", n,
                       BPE_MAX_MERGES);
    uint32_t slots = 16;
    while (slots < 2 * n + 2)
        slots <<= 1;
    m->merges = malloc(slots * sizeof *m->merges);
    if (!m->merges)
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    for (uint32_t i = 0; i < slots; i++)
        m->merges[i].rank = -1;
    m->n_merge_slots = slots;

    for (size_t r = 0; r < n && rc == 0; r++) {
        const char *a, *b;
        size_t a_len, b_len;
        if (merge_pieces(json_array_get(merges, r), &a, &a_len, &b, &b_len))
            return sn__err(err, err_len, SN_EMODEL,
                           "model.merges[%zu]: expected \"a b\" or [\"a\", "
                           "\"b\"]",
                           r);
        if (a_len + b_len + 1 > cat_cap) {
            cat_cap = 2 * (a_len + b_len + 1);
            char *c = realloc(cat, cat_cap);
            if (!c) {
                free(cat);
                return sn__err(err, err_len, -ENOMEM, "out of memory");
            }
            cat = c;
        }
        memcpy(cat, a, a_len);
        memcpy(cat + a_len, b, b_len);
        int32_t ia = sn__vocab_find(v, a, a_len);
        int32_t ib = sn__vocab_find(v, b, b_len);
        int32_t inew = sn__vocab_find(v, cat, a_len + b_len);
        if (ia < 0 || ib < 0 || inew < 0) {
            rc = sn__err(err, err_len, SN_EMODEL,
                         "model.merges[%zu]: '%.*s' is not in the vocabulary",
                         r, (int)(ia < 0 ? a_len : ib < 0 ? b_len
                                                          : a_len + b_len),
                         ia < 0 ? a : ib < 0 ? b : cat);
            break;
        }
        uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
        for (uint32_t i = merge_hash(key, slots);; i = (i + 1) & (slots - 1)) {
            merge_slot_t *s = &m->merges[i];
            if (s->rank < 0) {
                s->key = key;
                s->rank = (int32_t)r;
                s->new_id = inew;
                break;
            }
            if (s->key == key) {
                /* HF builds a map: a repeated pair keeps the later rank */
                s->rank = (int32_t)r;
                s->new_id = inew;
                break;
            }
        }
    }
    free(cat);
    return rc;
}

int sn__bpe_load(sn_tokenizer_t *tok, const void *model_,
                 const void *normalizer, const void *pretok, char *err,
                 size_t err_len)
{
    const json_t *model = model_;
    bpe_model_t *m = NULL;
    const char *key;
    json_t *v;
    int rc;

    memset(&tok->vocab, 0, sizeof tok->vocab);
    tok->kind = SN_TOK_BPE;
    tok->unk_id = -1;
    tok->bpe.model = NULL;
    if (!json_is_object(model))
        return sn__err(err, err_len, SN_EMODEL, "model: expected an object");
    m = calloc(1, sizeof *m);
    if (!m)
        return sn__err(err, err_len, -ENOMEM, "out of memory");

    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab) || json_object_size(vocab) == 0) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "model.vocab: missing, empty or not an object");
        goto fail;
    }
    if (!json_is_array(merges)) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "model.merges: missing or not an array");
        goto fail;
    }
    size_t n = json_object_size(vocab);
    if (n > (1u << 24)) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "model.vocab: %zu pieces, more than %d", n, 1 << 24);
        goto fail;
    }
    json_object_foreach((json_t *)vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= (json_int_t)n) {
            rc = sn__err(err, err_len, SN_EMODEL,
                         "model.vocab['%s']: id is not an integer in "
                         "[0, %zu)",
                         key, n);
            goto fail;
        }
    }
    if ((rc = sn__vocab_init(&tok->vocab, (int)n))) {
        rc = sn__err(err, err_len, rc, "out of memory");
        goto fail;
    }
    json_object_foreach((json_t *)vocab, key, v) {
        int32_t id = (int32_t)json_integer_value(v);
        if (tok->vocab.pieces[id]) {
            rc = sn__err(err, err_len, SN_EMODEL,
                         "model.vocab: id %d is given to both '%s' and '%s'",
                         (int)id, tok->vocab.pieces[id], key);
            goto fail;
        }
        if ((rc = sn__vocab_set(&tok->vocab, id, key, strlen(key)))) {
            rc = sn__err(err, err_len, rc, "out of memory");
            goto fail;
        }
    }
    if ((rc = sn__vocab_build(&tok->vocab))) {
        rc = sn__err(err, err_len, rc == -ENOMEM ? rc : SN_EMODEL,
                     "model.vocab: %s",
                     rc == -ENOMEM ? "out of memory"
                                   : "ids are not 0..n-1 or pieces repeat");
        goto fail;
    }

    static const char *unsupported[] = {"continuing_subword_prefix",
                                        "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        v = json_object_get(model, unsupported[k]);
        if (v && !json_is_null(v) &&
            (!json_is_string(v) || json_string_length(v) > 0)) {
            rc = sn__err(err, err_len, SN_EMODEL,
                         "model.%s: not supported with BPE (only \"\" or "
                         "null)",
                         unsupported[k]);
            goto fail;
        }
    }
    v = json_object_get(model, "dropout");
    if (v && !json_is_null(v) &&
        (!json_is_number(v) || json_number_value(v) != 0.0)) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "model.dropout: random merges are not supported (only "
                     "null or 0)");
        goto fail;
    }
    v = json_object_get(model, "unk_token");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v)) {
            rc = sn__err(err, err_len, SN_EMODEL,
                         "model.unk_token: expected a string or null");
            goto fail;
        }
        tok->unk_id = sn__vocab_find(&tok->vocab, json_string_value(v),
                                     json_string_length(v));
        if (tok->unk_id < 0) {
            rc = sn__err(err, err_len, SN_EMODEL,
                         "model.unk_token '%s' is not in the vocabulary",
                         json_string_value(v));
            goto fail;
        }
    }
    m->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    m->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    m->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    for (int b = 0; b < 256; b++) {
        char p[8];
        static const char hex[] = "0123456789ABCDEF";
        p[0] = '<', p[1] = '0', p[2] = 'x', p[3] = hex[b >> 4];
        p[4] = hex[b & 15], p[5] = '>', p[6] = 0;
        m->byte_ids[b] = sn__vocab_find(&tok->vocab, p, 6);
    }
    for (uint32_t c = 0; c < BPE_BYTE_CACHE; c++) {
        char u[4];
        int k = (int)utf8proc_encode_char((utf8proc_int32_t)c,
                                          (utf8proc_uint8_t *)u);
        m->cache[c] = c == 0 ? -1 : sn__vocab_find(&tok->vocab, u, (size_t)k);
    }

    if ((rc = load_merges(m, &tok->vocab, merges, err, err_len)))
        goto fail;
    if ((rc = sn__norm_load(normalizer, &m->norm, err, err_len)))
        goto fail;
    if ((rc = add_pretok(m, pretok, 0, err, err_len)))
        goto fail;
    tok->bpe.model = m;
    return 0;

fail:
    model_free(m);
    sn__vocab_free(&tok->vocab);
    return rc;
}

/* ---- encoding ----------------------------------------------------------------- */

typedef struct {
    int32_t a, b;
} span_t;

typedef struct {
    span_t *v;
    int n, cap;
} spans_t;

typedef struct {
    int32_t id;
    int32_t pos, len;   /* UTF-8 bytes of the word, counted as HF counts
                         * them: over the symbols kept, dropped chars not
                         * counted; len 0: merged away */
    int32_t prev, next; /* linked list */
} sym_t;

typedef struct {
    int32_t rank, pos, new_id;
} heap_t;

typedef struct {
    spans_t s1, s2;
    sym_t *sym;
    int cap_sym;
    heap_t *heap;
    int n_heap, cap_heap;
    char *u8;
    int cap_u8;
    int32_t *b2c; /* byte of the word -> its char */
    int cap_b2c;
    pcre2_match_data *md;
} bpe_scratch_t;

static int grow(void **p, int *cap, int need, size_t size)
{
    if (need <= *cap)
        return 0;
    if (need > SN_NORM_MAX_TEXT * 4)
        return SN_ETOOBIG;
    int c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, (size_t)c * size);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static int span_push(spans_t *s, int32_t a, int32_t b)
{
    if (a >= b)
        return 0; /* HF drops empty splits */
    int rc = grow((void **)&s->v, &s->cap, s->n + 1, sizeof *s->v);
    if (rc)
        return rc;
    s->v[s->n].a = a;
    s->v[s->n].b = b;
    s->n++;
    return 0;
}


/* One (range, is_match) of a split, folded as HF folds the list for each
 * behaviour; *pend is the last piece, still open to extension. */
static int emit(split_behavior_t beh, span_t *pend, int *have_pend,
                int *prev_match, int32_t x0, int32_t x1, int is_match,
                spans_t *out)
{
    int rc = 0;
    switch (beh) {
    case SB_REMOVED:
        if (!is_match)
            rc = span_push(out, x0, x1);
        break;
    case SB_ISOLATED:
        rc = span_push(out, x0, x1);
        break;
    case SB_MERGED_PREV:
        if (is_match && !*prev_match && *have_pend) {
            pend->b = x1;
        } else {
            if (*have_pend)
                rc = span_push(out, pend->a, pend->b);
            pend->a = x0, pend->b = x1, *have_pend = 1;
        }
        break;
    case SB_MERGED_NEXT:
        /* a match joins the piece after it when that one is no match */
        if (*have_pend && !is_match) {
            rc = span_push(out, pend->a, x1);
            *have_pend = 0;
        } else {
            if (*have_pend)
                rc = span_push(out, pend->a, pend->b);
            *have_pend = 0;
            if (is_match)
                pend->a = x0, pend->b = x1, *have_pend = 1;
            else if (rc == 0)
                rc = span_push(out, x0, x1);
        }
        break;
    case SB_CONTIGUOUS:
        if (*have_pend && is_match == *prev_match) {
            pend->b = x1;
        } else {
            if (*have_pend)
                rc = span_push(out, pend->a, pend->b);
            pend->a = x0, pend->b = x1, *have_pend = 1;
        }
        break;
    }
    *prev_match = is_match;
    return rc;
}

/* Split span [a, b) of t by re with a behaviour (HF's split over the list
 * of (range, is_match) that find_matches gives), appending to out. */
static int split_regex(const pt_step_t *st, const sn__ntext_t *t, int a,
                       int b, bpe_scratch_t *s, spans_t *out)
{
    /* the (range, is_match) list, built on the fly into pieces */
    span_t pend = {0, 0};
    int have_pend = 0, prev_match = 0, rc = 0;
    int32_t prev = a, last_end = a, last_match_end = -1;

#define EMIT(x0, x1, is_m)                                                    \
    do {                                                                      \
        int m_ = (is_m) ^ st->invert;                                         \
        rc = emit(st->behavior, &pend, &have_pend, &prev_match, (x0), (x1),  \
                  m_, out);                                                   \
    } while (0)

    while (last_end <= b && rc == 0) {
        /* the text is valid (decoded UTF-8, then normalized): without
         * NO_UTF_CHECK PCRE2 would check the whole span at every call */
        int r = pcre2_match(st->re, (PCRE2_SPTR)(t->cp + a), (PCRE2_SIZE)(b - a),
                            (PCRE2_SIZE)(last_end - a), PCRE2_NO_UTF_CHECK,
                            s->md, NULL);
        if (r < 0)
            break; /* no match (or a match limit: the rest is one piece) */
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
        int32_t ms = a + (int32_t)ov[0], me = a + (int32_t)ov[1];
        if (ms == me && last_match_end == me) {
            last_end = me + 1; /* no empty match right after a match */
            continue;
        }
        last_end = ms == me ? me + 1 : me;
        last_match_end = me;
        if (prev != ms)
            EMIT(prev, ms, 0);
        if (rc == 0)
            EMIT(ms, me, 1);
        prev = me;
    }
    if (rc == 0 && prev != b)
        EMIT(prev, b, 0);
#undef EMIT
    if (rc == 0 && have_pend)
        rc = span_push(out, pend.a, pend.b);
    return rc;
}

/* WhitespaceSplit: the runs of non-White_Space chars of [a, b). */
static int split_ws(const sn__ntext_t *t, int a, int b, spans_t *out)
{
    int rc = 0;
    for (int i = a; i < b && rc == 0;) {
        while (i < b && sn__is_white_space(t->cp[i]))
            i++;
        int j = i;
        while (j < b && !sn__is_white_space(t->cp[j]))
            j++;
        rc = span_push(out, i, j);
        i = j;
    }
    return rc;
}

/* ByteLevel: prefix spaces, the GPT-2 split, then bytes to chars. The text
 * is rewritten into *alt (swapped into *cur), spans likewise. */
static int byte_level(const pt_step_t *st, sn__ntext_t **cur,
                      sn__ntext_t **alt, spans_t **sp, spans_t **sp2,
                      bpe_scratch_t *s)
{
    sn__ntext_t *t = *cur, *u = *alt;
    int rc = 0;

    if (st->add_prefix_space) {
        u->n = 0;
        (*sp2)->n = 0;
        for (int k = 0; k < (*sp)->n && rc == 0; k++) {
            span_t x = (*sp)->v[k];
            int32_t a = u->n;
            if (t->cp[x.a] != ' ')
                rc = sn__ntext_push(u, ' ', t->start[x.a], t->end[x.a]);
            for (int i = x.a; i < x.b && rc == 0; i++)
                rc = sn__ntext_push(u, t->cp[i], t->start[i], t->end[i]);
            if (rc == 0)
                rc = span_push(*sp2, a, u->n);
        }
        if (rc)
            return rc;
        sn__ntext_t *tt = t;
        t = u;
        u = tt;
        spans_t *ts = *sp;
        *sp = *sp2;
        *sp2 = ts;
    }
    if (st->re) {
        (*sp2)->n = 0;
        for (int k = 0; k < (*sp)->n && rc == 0; k++)
            rc = split_regex(st, t, (*sp)->v[k].a, (*sp)->v[k].b, s, *sp2);
        if (rc)
            return rc;
        spans_t *ts = *sp;
        *sp = *sp2;
        *sp2 = ts;
    }
    u->n = 0;
    (*sp2)->n = 0;
    for (int k = 0; k < (*sp)->n && rc == 0; k++) {
        span_t x = (*sp)->v[k];
        int32_t a = u->n;
        for (int i = x.a; i < x.b && rc == 0; i++) {
            uint8_t b[4];
            int nb = (int)utf8proc_encode_char((utf8proc_int32_t)t->cp[i], b);
            for (int j = 0; j < nb && rc == 0; j++)
                rc = sn__ntext_push(u, byte_char(b[j]), t->start[i],
                                    t->end[i]);
        }
        if (rc == 0 && u->n > SN_NORM_MAX_TEXT)
            rc = SN_ETOOBIG;
        if (rc == 0)
            rc = span_push(*sp2, a, u->n);
    }
    if (rc)
        return rc;
    *cur = u;
    *alt = t;
    spans_t *ts = *sp;
    *sp = *sp2;
    *sp2 = ts;
    return 0;
}

/* Metaspace: ' ' becomes the replacement (aligned as the space), a
 * replacement is prepended per the scheme (aligned as the first char;
 * "first" only for the split that starts the text), then, with split, each
 * replacement opens a piece (HF's MergedWithNext). */
static int metaspace(const pt_step_t *st, int32_t offset, sn__ntext_t **cur,
                     sn__ntext_t **alt, spans_t **sp, spans_t **sp2)
{
    sn__ntext_t *t = *cur, *u = *alt;
    int rc = 0;
    u->n = 0;
    (*sp2)->n = 0;
    for (int k = 0; k < (*sp)->n && rc == 0; k++) {
        span_t x = (*sp)->v[k];
        int32_t a = u->n;
        uint32_t c0 = t->cp[x.a] == ' ' ? st->replacement : t->cp[x.a];
        int first = offset == 0 && (x.a == 0 || t->start[x.a] == 0);
        if (c0 != st->replacement &&
            (st->prepend == 1 || (st->prepend == 2 && first)))
            rc = sn__ntext_push(u, st->replacement, t->start[x.a],
                                t->end[x.a]);
        for (int i = x.a; i < x.b && rc == 0; i++)
            rc = sn__ntext_push(u, t->cp[i] == ' ' ? st->replacement
                                                   : t->cp[i],
                                t->start[i], t->end[i]);
        if (rc)
            break;
        if (!st->ms_split) {
            rc = span_push(*sp2, a, u->n);
            continue;
        }
        int32_t w = a;
        for (int32_t i = a + 1; i <= u->n && rc == 0; i++)
            if (i == u->n || u->cp[i] == st->replacement) {
                rc = span_push(*sp2, w, i);
                w = i;
            }
    }
    if (rc)
        return rc;
    *cur = u;
    *alt = t;
    spans_t *ts = *sp;
    *sp = *sp2;
    *sp2 = ts;
    return 0;
}

/* The id of code point c alone, or -1. */
static int32_t char_id(const sn_tokenizer_t *tok, const bpe_model_t *m,
                       uint32_t c)
{
    if (c < BPE_BYTE_CACHE)
        return m->cache[c];
    char u[4];
    int k = (int)utf8proc_encode_char((utf8proc_int32_t)c,
                                      (utf8proc_uint8_t *)u);
    return sn__vocab_find(&tok->vocab, u, (size_t)k);
}

static int heap_push(bpe_scratch_t *s, int32_t rank, int32_t pos,
                     int32_t new_id)
{
    int rc = grow((void **)&s->heap, &s->cap_heap, s->n_heap + 1,
                  sizeof *s->heap);
    if (rc)
        return rc;
    heap_t x = {rank, pos, new_id};
    int i = s->n_heap++;
    while (i > 0) {
        int p = (i - 1) / 2;
        heap_t *q = &s->heap[p];
        if (q->rank < x.rank || (q->rank == x.rank && q->pos <= x.pos))
            break;
        s->heap[i] = *q;
        i = p;
    }
    s->heap[i] = x;
    return 0;
}

static heap_t heap_pop(bpe_scratch_t *s)
{
    heap_t top = s->heap[0], x = s->heap[--s->n_heap];
    int i = 0, n = s->n_heap;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && (s->heap[c + 1].rank < s->heap[c].rank ||
                          (s->heap[c + 1].rank == s->heap[c].rank &&
                           s->heap[c + 1].pos < s->heap[c].pos)))
            c++;
        if (x.rank < s->heap[c].rank ||
            (x.rank == s->heap[c].rank && x.pos <= s->heap[c].pos))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n > 0)
        s->heap[i] = x;
    return top;
}

static int sym_push(bpe_scratch_t *s, int *n, int32_t id, int32_t *cursor,
                    int32_t n_bytes)
{
    int rc = grow((void **)&s->sym, &s->cap_sym, *n + 1, sizeof *s->sym);
    if (rc)
        return rc;
    sym_t *y = &s->sym[*n];
    y->id = id;
    y->pos = *cursor;
    y->len = n_bytes;
    y->prev = *n - 1;
    y->next = *n + 1;
    *cursor += n_bytes;
    (*n)++;
    return 0;
}

/* BPE over the span t[a, b). Offsets as HF's Word keeps them: each symbol
 * added takes the next bytes of the word, so a char dropped for want of an
 * unk token shifts the spans after it (they then point into the dropped
 * char), and a pending unk is added after byte-fallback bytes. */
static int bpe_word(const sn_tokenizer_t *tok, const bpe_model_t *m,
                    const sn__ntext_t *t, int a, int b, bpe_scratch_t *s,
                    sn__toks_t *out)
{
    int n = 0, rc = 0;
    int32_t unk_len = 0, cursor = 0, n_bytes = 0;
    int have_unk = 0;

    for (int i = a; i < b; i++)
        n_bytes += t->cp[i] < 0x80 ? 1 : t->cp[i] < 0x800 ? 2
                                        : t->cp[i] < 0x10000 ? 3 : 4;
    if ((rc = grow((void **)&s->b2c, &s->cap_b2c, n_bytes + 1,
                   sizeof *s->b2c)))
        return rc;
    for (int i = a, k = 0; i < b; i++) {
        int nb = t->cp[i] < 0x80 ? 1 : t->cp[i] < 0x800 ? 2
                                     : t->cp[i] < 0x10000 ? 3 : 4;
        while (nb--)
            s->b2c[k++] = i;
    }

    if (m->ignore_merges) {
        int len = 0;
        rc = grow((void **)&s->u8, &s->cap_u8, 4 * (b - a) + 1, 1);
        for (int i = a; i < b && rc == 0; i++)
            len += (int)utf8proc_encode_char((utf8proc_int32_t)t->cp[i],
                                             (utf8proc_uint8_t *)s->u8 + len);
        int32_t id = rc ? -1 : sn__vocab_find(&tok->vocab, s->u8, (size_t)len);
        if (id >= 0)
            return sn__toks_push(out, id, t->start[a], t->end[b - 1]);
        if (rc)
            return rc;
    }
    /* one symbol per char, as HF's merge_word builds the word */
    for (int i = a; i < b && rc == 0; i++) {
        uint8_t u[4];
        int nb = (int)utf8proc_encode_char((utf8proc_int32_t)t->cp[i], u);
        int32_t id = char_id(tok, m, t->cp[i]);
        if (id >= 0) {
            if (have_unk)
                rc = sym_push(s, &n, tok->unk_id, &cursor, unk_len);
            have_unk = 0;
            if (rc == 0)
                rc = sym_push(s, &n, id, &cursor, nb);
            continue;
        }
        if (m->byte_fallback) {
            int all = 1;
            for (int j = 0; j < nb; j++)
                all &= m->byte_ids[u[j]] >= 0;
            if (all) {
                for (int j = 0; j < nb && rc == 0; j++)
                    rc = sym_push(s, &n, m->byte_ids[u[j]], &cursor, 1);
                continue;
            }
        }
        if (tok->unk_id >= 0) {
            if (have_unk && m->fuse_unk) {
                unk_len += nb;
            } else {
                if (have_unk)
                    rc = sym_push(s, &n, tok->unk_id, &cursor, unk_len);
                have_unk = 1;
                unk_len = nb;
            }
        } /* else HF drops the char */
    }
    if (rc == 0 && have_unk)
        rc = sym_push(s, &n, tok->unk_id, &cursor, unk_len);
    if (rc)
        return rc;
    if (n == 0)
        return 0;
    s->sym[n - 1].next = -1;

    /* merge_all */
    s->n_heap = 0;
    for (int i = 0; i + 1 < n && rc == 0; i++) {
        const merge_slot_t *mg = merge_find(m, s->sym[i].id, s->sym[i + 1].id);
        if (mg)
            rc = heap_push(s, mg->rank, i, mg->new_id);
    }
    while (s->n_heap > 0 && rc == 0) {
        heap_t top = heap_pop(s);
        sym_t *cur = &s->sym[top.pos];
        if (cur->len == 0 || cur->next < 0)
            continue;
        sym_t *right = &s->sym[cur->next];
        const merge_slot_t *mg = merge_find(m, cur->id, right->id);
        if (!mg || mg->new_id != top.new_id)
            continue; /* an expired entry */
        cur->id = top.new_id;
        cur->len += right->len;
        cur->next = right->next;
        right->len = 0;
        if (cur->next >= 0)
            s->sym[cur->next].prev = top.pos;
        if (cur->prev >= 0) {
            mg = merge_find(m, s->sym[cur->prev].id, cur->id);
            if (mg)
                rc = heap_push(s, mg->rank, cur->prev, mg->new_id);
        }
        if (rc == 0 && cur->next >= 0) {
            mg = merge_find(m, cur->id, s->sym[cur->next].id);
            if (mg)
                rc = heap_push(s, mg->rank, top.pos, mg->new_id);
        }
    }
    for (int i = 0; i >= 0 && rc == 0; i = s->sym[i].next) {
        const sym_t *y = &s->sym[i];
        int32_t c0 = s->b2c[y->pos], c1 = s->b2c[y->pos + y->len - 1];
        rc = sn__toks_push(out, y->id, t->start[c0], t->end[c1]);
    }
    return rc;
}

int sn__bpe_encode(const sn_tokenizer_t *tok, const uint32_t *cps, int n,
                   sn__toks_t *out)
{
    return sn__bpe_encode_at(tok, cps, n, 0, out);
}

int sn__bpe_encode_at(const sn_tokenizer_t *tok, const uint32_t *cps, int n,
                      int32_t offset, sn__toks_t *out)
{
    const bpe_model_t *m = tok ? tok->bpe.model : NULL;
    sn__ntext_t bufs[2] = {{0}};
    sn__ntext_t *cur = &bufs[0], *alt = &bufs[1];
    bpe_scratch_t s;
    spans_t *sp = &s.s1, *sp2 = &s.s2;
    int rc;

    memset(&s, 0, sizeof s);
    if (!m || tok->kind != SN_TOK_BPE || n < 0 || (n > 0 && !cps) || !out)
        return SN_EARG;
    if (n > SN_NORM_MAX_TEXT)
        return SN_ETOOBIG;
    if (n == 0)
        return 0;
    if ((rc = sn__ntext_reserve(cur, n)))
        goto fail;
    for (int i = 0; i < n; i++) {
        cur->cp[i] = cps[i];
        cur->start[i] = i;
        cur->end[i] = i + 1;
    }
    cur->n = n;
    if ((rc = sn__norm_apply(m->norm, &cur, &alt)))
        goto fail;
    if ((rc = span_push(sp, 0, cur->n)))
        goto fail;
    for (int k = 0; k < m->n_steps; k++) {
        const pt_step_t *st = &m->steps[k];
        if (st->re && !s.md) {
            s.md = pcre2_match_data_create(1, NULL);
            if (!s.md) {
                rc = -ENOMEM;
                goto fail;
            }
        }
        if (st->kind == PT_BYTE_LEVEL) {
            rc = byte_level(st, &cur, &alt, &sp, &sp2, &s);
        } else if (st->kind == PT_METASPACE) {
            rc = metaspace(st, offset, &cur, &alt, &sp, &sp2);
        } else {
            sp2->n = 0;
            for (int j = 0; j < sp->n && rc == 0; j++)
                rc = st->kind == PT_WS_SPLIT
                         ? split_ws(cur, sp->v[j].a, sp->v[j].b, sp2)
                         : split_regex(st, cur, sp->v[j].a, sp->v[j].b, &s,
                                       sp2);
            spans_t *ts = sp;
            sp = sp2;
            sp2 = ts;
        }
        if (rc)
            goto fail;
    }
    for (int j = 0; j < sp->n && rc == 0; j++)
        rc = bpe_word(tok, m, cur, sp->v[j].a, sp->v[j].b, &s, out);

fail:
    sn__ntext_free(&bufs[0]);
    sn__ntext_free(&bufs[1]);
    free(s.s1.v);
    free(s.s2.v);
    free(s.sym);
    free(s.heap);
    free(s.u8);
    free(s.b2c);
    pcre2_match_data_free(s.md);
    return rc;
}
