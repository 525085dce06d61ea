/*
 * tokenizer.c -- the public tokenizer API: loading a tokenizer.json (or a
 * vocab.txt with its tokenizer_config.json), added tokens, the
 * post-processor's special tokens, truncation, and the encoding handed back.
 * The models themselves (normalizer, pre-tokenizer, model) live in
 * wordpiece.c and unigram.c.
 *
 * encode, as HF tokenizers 0.23 runs it for one sequence:
 *   1. validate the UTF-8 and decode it to code points;
 *   2. cut out the added tokens that occur literally in the text: first those
 *      with normalized=false, then those with normalized=true in the pieces
 *      left (leftmost-longest match, honouring single_word, lstrip, rstrip);
 *   3. tokenize every other piece with the model; an added token found in the
 *      text is a token of its own, with its span (special flag 0);
 *   4. keep the first max_tokens - (number of specials) tokens;
 *   5. put the post-processor's specials around them, offsets (0, 0),
 *      special flag 1.
 *
 * Invariants:
 *   - An sn_tokenizer_t built here is the first member of a tok_full_t
 *     allocated here, which adds what struct sn_tokenizer (shared with the
 *     model files) does not hold: the added tokens and the vocabulary size.
 *     The one exception is kind SN_TOK_USE, which use_tokenizer.c allocates
 *     as a bare struct sn_tokenizer: it has no added tokens, and full()
 *     answers NULL for it; sn_tokenizer_free frees both shapes.
 *   - A tokenizer is immutable once loaded; encode keeps its scratch memory
 *     per call, so one tokenizer serves any number of threads.
 *   - Loaders and encode do no I/O apart from sn_tokenizer_load's reads.
 *
 * Limits: SN_TOK_MAX_TEXT bytes of text; the file sizes below. Known gap:
 * added tokens with normalized=true are matched against the raw text rather
 * than the normalized text (the model interface offers no normalize-only
 * call); for BERT and XLM-R checkpoints every added token is normalized=false.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <utf8proc.h>

#include "embed_int.h"
#include "tokenizer_int.h"

#define SN_TOK_MAX_JSON (512u << 20)   /* tokenizer.json */
#define SN_TOK_MAX_VOCAB (64u << 20)   /* vocab.txt */
#define SN_TOK_MAX_CONFIG (16u << 20)  /* tokenizer_config.json */
#define SN_TOK_MAX_ADDED 100000        /* added tokens */
#define SN_TOK_MAX_ADDED_LEN 4096      /* code points in one added token */
#define SN_TOK_MAX_NAME 256            /* bytes of a special token's name */

typedef struct {
    char *content;   /* UTF-8, NUL-terminated */
    uint32_t *cps;   /* content as code points */
    int n_cps;
    int32_t id;
    uint8_t single_word, lstrip, rstrip, normalized, special;
} added_t;

typedef struct {
    struct sn_tokenizer base; /* first: sn_tokenizer_t * points here */
    added_t *added;
    int n_added;
    /* indices into added, per pass (0: normalized=false, 1: true), sorted
     * by first code point */
    int *by_first[2];
    int n_by_first[2];
    int *by_id; /* indices into added sorted by id, for sn_tokenizer_piece */
    int n_vocab;
    /* what sentence-transformers does to a text before its tokenizer sees
     * it: str.strip(), then str.lower() when do_lower_case */
    int input_strip, input_lower;
    int max_tokens; /* the folder's max_seq_length / model_max_length, or 0 */
} tok_full_t;

static tok_full_t *full(const sn_tokenizer_t *tok)
{
    if (tok->kind == SN_TOK_USE)
        return NULL;              /* a bare struct sn_tokenizer */
    return (tok_full_t *)tok; /* base is the first member */
}

/* ---- construction and destruction ----------------------------------------- */

static tok_full_t *tok_new(void)
{
    tok_full_t *t = calloc(1, sizeof *t);
    if (t)
        t->base.unk_id = -1;
    return t;
}

void sn_tokenizer_free(sn_tokenizer_t *tok)
{
    if (!tok)
        return;
    tok_full_t *t = full(tok);
    if (!t) {
        sn__usetok_free(tok);
        sn__vocab_free(&tok->vocab);
        free(tok);
        return;
    }
    if (tok->kind == SN_TOK_UNIGRAM)
        sn__unigram_free(tok);
    if (tok->kind == SN_TOK_BPE)
        sn__bpe_free(tok);
    sn__vocab_free(&tok->vocab); /* a no-op if unigram_free did it */
    for (int i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].cps);
    }
    free(t->added);
    free(t->by_first[0]);
    free(t->by_first[1]);
    free(t->by_id);
    free(t);
}

/* Append an added token; `content` is len bytes of UTF-8. */
static int added_push(tok_full_t *t, const char *content, size_t len,
                      int32_t id, int single_word, int lstrip, int rstrip,
                      int normalized, int special, char *err, size_t err_len)
{
    if (t->n_added >= SN_TOK_MAX_ADDED)
        return sn__err(err, err_len, SN_ETOOBIG,
                       "added_tokens: more than %d", SN_TOK_MAX_ADDED);
    if (len == 0)
        return 0; /* HF ignores empty added tokens */
    if (id < 0)
        return sn__err(err, err_len, SN_EMODEL,
                       "added_tokens: '%.*s' has a negative id", (int)len,
                       content);
    if (t->n_added % 16 == 0) {
        added_t *a = realloc(t->added, (size_t)(t->n_added + 16) * sizeof *a);
        if (!a)
            return sn__err(err, err_len, -ENOMEM, "out of memory");
        t->added = a;
    }
    added_t *a = &t->added[t->n_added];
    memset(a, 0, sizeof *a);
    a->content = malloc(len + 1);
    a->cps = malloc((len + 1) * sizeof *a->cps);
    if (!a->content || !a->cps) {
        free(a->content);
        free(a->cps);
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    }
    memcpy(a->content, content, len);
    a->content[len] = '\0';
    size_t at = 0;
    while (at < len) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(
            (const utf8proc_uint8_t *)content + at, (utf8proc_ssize_t)(len - at),
            &c);
        if (k <= 0 || a->n_cps >= SN_TOK_MAX_ADDED_LEN) {
            free(a->content);
            free(a->cps);
            return sn__err(err, err_len, SN_EMODEL,
                           "added_tokens: id %d: %s", (int)id,
                           k <= 0 ? "content is not valid utf-8"
                                  : "content too long");
        }
        a->cps[a->n_cps++] = (uint32_t)c;
        at += (size_t)k;
    }
    a->id = id;
    a->single_word = (uint8_t)!!single_word;
    a->lstrip = (uint8_t)!!lstrip;
    a->rstrip = (uint8_t)!!rstrip;
    a->normalized = (uint8_t)!!normalized;
    a->special = (uint8_t)!!special;
    t->n_added++;
    return 0;
}

/* Sort keys for the lookup indexes: (key, entry index). */
typedef struct {
    uint32_t key;
    int idx;
} sort_key_t;

static int cmp_key(const void *x, const void *y)
{
    const sort_key_t *a = x, *b = y;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

/* Fill idx[0, n) with the entries of `keys` sorted by key, then entry. */
static void sort_by_key(sort_key_t *keys, int n, int *idx)
{
    qsort(keys, (size_t)n, sizeof *keys, cmp_key);
    for (int i = 0; i < n; i++)
        idx[i] = keys[i].idx;
}

/* Build the lookup indexes and the vocabulary size; check the specials. */
static int tok_finish(tok_full_t *t, char *err, size_t err_len)
{
    size_t cap = (size_t)t->n_added + 1;
    sort_key_t *keys = malloc(cap * sizeof *keys);
    t->by_first[0] = malloc(cap * sizeof(int));
    t->by_first[1] = malloc(cap * sizeof(int));
    t->by_id = malloc(cap * sizeof(int));
    if (!keys || !t->by_first[0] || !t->by_first[1] || !t->by_id) {
        free(keys);
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    }
    t->n_vocab = t->base.vocab.n_pieces;
    for (int p = 0; p < 2; p++) {
        int n = 0;
        for (int i = 0; i < t->n_added; i++)
            if (t->added[i].normalized == p) {
                keys[n].key = t->added[i].cps[0];
                keys[n].idx = i;
                n++;
            }
        sort_by_key(keys, n, t->by_first[p]);
        t->n_by_first[p] = n;
    }
    for (int i = 0; i < t->n_added; i++) {
        /* by id; for one id the last entry first, as HF's map keeps it */
        keys[i].key = (uint32_t)t->added[i].id;
        keys[i].idx = t->n_added - 1 - i;
        if (t->added[i].id >= t->n_vocab)
            t->n_vocab = t->added[i].id + 1;
    }
    sort_by_key(keys, t->n_added, t->by_id);
    for (int i = 0; i < t->n_added; i++)
        t->by_id[i] = t->n_added - 1 - t->by_id[i];
    free(keys);

    const sn_tokenizer_t *b = &t->base;
    for (int i = 0; i < b->n_prefix + b->n_suffix; i++) {
        int32_t id = i < b->n_prefix ? b->prefix[i] : b->suffix[i - b->n_prefix];
        if (id < 0 || id >= t->n_vocab)
            return sn__err(err, err_len, SN_EMODEL,
                           "post_processor: special token id %d is outside "
                           "the vocabulary (%d entries)",
                           (int)id, t->n_vocab);
    }
    return 0;
}

/* ---- tokenizer.json ------------------------------------------------------ */

static int json_flag(const json_t *obj, const char *key, int dflt)
{
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static int load_added_tokens(tok_full_t *t, const json_t *list, char *err,
                             size_t err_len)
{
    size_t i;
    json_t *a;
    int rc;

    if (!list || json_is_null(list))
        return 0;
    if (!json_is_array(list))
        return sn__err(err, err_len, SN_EMODEL,
                       "added_tokens: expected an array");
    json_array_foreach(list, i, a) {
        json_t *id = json_object_get(a, "id");
        json_t *content = json_object_get(a, "content");
        if (!json_is_object(a) || !json_is_integer(id) ||
            !json_is_string(content) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= (1 << 30))
            return sn__err(err, err_len, SN_EMODEL,
                           "added_tokens[%zu]: expected an object with an "
                           "integer id and a string content",
                           i);
        rc = added_push(t, json_string_value(content),
                        json_string_length(content),
                        (int32_t)json_integer_value(id),
                        json_flag(a, "single_word", 0),
                        json_flag(a, "lstrip", 0), json_flag(a, "rstrip", 0),
                        json_flag(a, "normalized", 1),
                        json_flag(a, "special", 0), err, err_len);
        if (rc)
            return rc;
    }
    return 0;
}

/* Append the ids of special token `name` from the template's special_tokens
 * map to the prefix (before the sequence) or the suffix. */
static int template_special(sn_tokenizer_t *tok, const json_t *specials,
                            const char *name, int after, const char *where,
                            char *err, size_t err_len)
{
    json_t *ent = json_object_get(specials, name);
    json_t *ids = json_object_get(ent, "ids");
    size_t i;
    json_t *v;

    if (!json_is_array(ids))
        return sn__err(err, err_len, SN_EMODEL,
                       "%s: special token '%s' has no ids in "
                       "post_processor.special_tokens",
                       where, name);
    json_array_foreach(ids, i, v) {
        int *n = after ? &tok->n_suffix : &tok->n_prefix;
        int32_t *dst = after ? tok->suffix : tok->prefix;
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > INT32_MAX)
            return sn__err(err, err_len, SN_EMODEL,
                           "post_processor.special_tokens['%s'].ids: "
                           "expected non-negative integers",
                           name);
        if (*n >= SN_TOK_MAX_SPECIALS)
            return sn__err(err, err_len, SN_EMODEL,
                           "%s: more than %d special tokens %s the sequence",
                           where, SN_TOK_MAX_SPECIALS,
                           after ? "after" : "before");
        dst[(*n)++] = (int32_t)json_integer_value(v);
    }
    return 0;
}

static int load_template(sn_tokenizer_t *tok, const json_t *pp, char *err,
                         size_t err_len)
{
    json_t *single = json_object_get(pp, "single");
    json_t *specials = json_object_get(pp, "special_tokens");
    size_t i;
    json_t *item;
    int seen_seq = 0, rc;

    if (!json_is_array(single))
        return sn__err(err, err_len, SN_EMODEL,
                       "post_processor.single: expected an array");
    tok->n_prefix = tok->n_suffix = 0;
    json_array_foreach(single, i, item) {
        char where[64];
        snprintf(where, sizeof where, "post_processor.single[%zu]", i);
        json_t *st = json_object_get(item, "SpecialToken");
        if (json_is_object(st)) {
            const char *name = json_string_value(json_object_get(st, "id"));
            if (!name)
                return sn__err(err, err_len, SN_EMODEL,
                               "%s.SpecialToken.id: expected a string", where);
            rc = template_special(tok, specials, name, seen_seq, where, err,
                                  err_len);
            if (rc)
                return rc;
        } else if (json_is_object(json_object_get(item, "Sequence"))) {
            if (seen_seq)
                return sn__err(err, err_len, SN_EMODEL,
                               "%s: a second Sequence in the single template",
                               where);
            seen_seq = 1;
        } else {
            return sn__err(err, err_len, SN_EMODEL,
                           "%s: expected SpecialToken or Sequence", where);
        }
    }
    if (!seen_seq)
        return sn__err(err, err_len, SN_EMODEL,
                       "post_processor.single: no Sequence");
    return 0;
}

/* BertProcessing / RobertaProcessing: "cls": [name, id], "sep": [name, id]. */
static int load_cls_sep(sn_tokenizer_t *tok, const json_t *pp,
                        const char *type, char *err, size_t err_len)
{
    const char *keys[2] = {"cls", "sep"};
    int32_t ids[2];
    for (int k = 0; k < 2; k++) {
        json_t *v = json_object_get(pp, keys[k]);
        json_t *id = json_array_get(v, 1);
        if (!json_is_array(v) || !json_is_integer(id) ||
            json_integer_value(id) < 0 || json_integer_value(id) > INT32_MAX)
            return sn__err(err, err_len, SN_EMODEL,
                           "post_processor.%s: expected [token, id] in %s",
                           keys[k], type);
        ids[k] = (int32_t)json_integer_value(id);
    }
    tok->n_prefix = tok->n_suffix = 1;
    tok->prefix[0] = ids[0];
    tok->suffix[0] = ids[1];
    return 0;
}

static int load_post_processor(sn_tokenizer_t *tok, const json_t *pp,
                               int depth, char *err, size_t err_len)
{
    if (!pp || json_is_null(pp))
        return 0;
    const char *type = json_string_value(json_object_get(pp, "type"));
    if (!json_is_object(pp) || !type)
        return sn__err(err, err_len, SN_EMODEL,
                       "post_processor: expected an object with a type");
    if (strcmp(type, "TemplateProcessing") == 0)
        return load_template(tok, pp, err, err_len);
    if (strcmp(type, "RobertaProcessing") == 0 ||
        strcmp(type, "ByteLevel") == 0) {
        /* both trim offsets, by default with a prefix space */
        json_t *to = json_object_get(pp, "trim_offsets");
        json_t *aps = json_object_get(pp, "add_prefix_space");
        tok->trim_offsets = to ? json_is_true(to) : 1;
        tok->trim_prefix_space = aps ? json_is_true(aps) : 1;
        if (strcmp(type, "ByteLevel") == 0)
            return 0;
    }
    if (strcmp(type, "BertProcessing") == 0 ||
        strcmp(type, "RobertaProcessing") == 0)
        return load_cls_sep(tok, pp, type, err, err_len);
    if (strcmp(type, "Sequence") == 0 && depth == 0) {
        json_t *list = json_object_get(pp, "processors");
        size_t i;
        json_t *p;
        if (!json_is_array(list))
            return sn__err(err, err_len, SN_EMODEL,
                           "post_processor.processors: expected an array");
        json_array_foreach(list, i, p) {
            int rc = load_post_processor(tok, p, 1, err, err_len);
            if (rc)
                return rc;
        }
        return 0;
    }
    return sn__err(err, err_len, SN_EMODEL,
                   "post_processor.type '%s' is not supported "
                   "(TemplateProcessing, BertProcessing, RobertaProcessing)",
                   type);
}

/* The body of sn_tokenizer_from_json; messages without the file name. */
static int from_json(tok_full_t *t, const char *buf, size_t len, char *err,
                     size_t err_len)
{
    json_error_t je;
    json_t *root = NULL;
    int rc;

    root = json_loadb(buf, len, 0, &je);
    if (!root)
        return sn__err(err, err_len, SN_EJSON, "line %d column %d: %s",
                       je.line, je.column, je.text);
    if (!json_is_object(root)) {
        rc = sn__err(err, err_len, SN_EMODEL, "expected a json object");
        goto fail;
    }
    json_t *model = json_object_get(root, "model");
    const char *type = json_string_value(json_object_get(model, "type"));
    if (!json_is_object(model) || !type) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "model: missing, not an object, or without a type");
        goto fail;
    }
    json_t *nz = json_object_get(root, "normalizer");
    json_t *pt = json_object_get(root, "pre_tokenizer");
    if (strcmp(type, "WordPiece") == 0) {
        t->base.kind = SN_TOK_WORDPIECE;
        rc = sn__wordpiece_load(&t->base, model, nz, pt, err, err_len);
    } else if (strcmp(type, "Unigram") == 0) {
        t->base.kind = SN_TOK_UNIGRAM;
        rc = sn__unigram_load(&t->base, model, nz, pt, err, err_len);
    } else if (strcmp(type, "BPE") == 0) {
        t->base.kind = SN_TOK_BPE;
        rc = sn__bpe_load(&t->base, model, nz, pt, err, err_len);
    } else {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "model.type '%s' is not supported (WordPiece, Unigram, "
                     "BPE)",
                     type);
    }
    if (rc)
        goto fail;
    rc = load_added_tokens(t, json_object_get(root, "added_tokens"), err,
                           err_len);
    if (rc)
        goto fail;
    rc = load_post_processor(&t->base, json_object_get(root, "post_processor"),
                             0, err, err_len);
    if (rc)
        goto fail;
    rc = tok_finish(t, err, err_len);
fail:
    json_decref(root);
    return rc;
}

/* Prefix the message in err with "'name': ". */
static int name_error(int rc, const char *name, char *err, size_t err_len)
{
    if (err && err_len) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", err);
        snprintf(err, err_len, "'%s': %s", name, msg);
    }
    return rc;
}

static int from_json_named(const char *buf, size_t len, const char *name,
                           sn_tokenizer_t **out, char *err, size_t err_len)
{
    *out = NULL;
    if (!buf && len)
        return sn__err(err, err_len, SN_EARG, "'%s': no buffer", name);
    tok_full_t *t = tok_new();
    if (!t)
        return sn__err(err, err_len, -ENOMEM, "'%s': out of memory", name);
    int rc = from_json(t, buf ? buf : "", len, err, err_len);
    if (rc) {
        sn_tokenizer_free(&t->base);
        return name_error(rc, name, err, err_len);
    }
    *out = &t->base;
    return 0;
}

int sn_tokenizer_from_json(const char *buf, size_t len, sn_tokenizer_t **out,
                           char *err, size_t err_len)
{
    return from_json_named(buf, len, "tokenizer.json", out, err, err_len);
}

/* ---- vocab.txt + tokenizer_config.json ----------------------------------- */

typedef struct {
    int lowercase, strip_accents, chinese_chars;
    const char *unk, *cls, *sep, *pad, *mask;
    const json_t *added_decoder; /* tokenizer_config's added_tokens_decoder */
} vocab_opts_t;

static int from_vocab(tok_full_t *t, const char *buf, size_t len,
                      const vocab_opts_t *o, char *err, size_t err_len)
{
    sn_tokenizer_t *tok = &t->base;
    int rc = sn__wordpiece_load_vocab(tok, buf, len, err, err_len);
    if (rc)
        return rc;
    tok->wp.clean_text = 1;
    tok->wp.chinese_chars = !!o->chinese_chars;
    tok->wp.lowercase = !!o->lowercase;
    tok->wp.strip_accents =
        o->strip_accents < 0 ? !!o->lowercase : !!o->strip_accents;
    tok->unk_id = sn__vocab_find(&tok->vocab, o->unk, strlen(o->unk));

    int32_t cls = sn__vocab_find(&tok->vocab, o->cls, strlen(o->cls));
    int32_t sep = sn__vocab_find(&tok->vocab, o->sep, strlen(o->sep));
    if (cls < 0 || sep < 0)
        return sn__err(err, err_len, SN_EMODEL,
                       "the special token '%s' is not in the vocabulary",
                       cls < 0 ? o->cls : o->sep);
    tok->n_prefix = tok->n_suffix = 1;
    tok->prefix[0] = cls;
    tok->suffix[0] = sep;

    if (json_is_object(o->added_decoder)) {
        const char *key;
        json_t *a;
        json_object_foreach((json_t *)o->added_decoder, key, a) {
            char *end;
            long id = strtol(key, &end, 10);
            json_t *content = json_object_get(a, "content");
            if (*end || id < 0 || id >= (1 << 30) || !json_is_string(content))
                return sn__err(err, err_len, SN_EMODEL,
                               "added_tokens_decoder['%s']: expected an "
                               "integer key and a string content",
                               key);
            rc = added_push(t, json_string_value(content),
                            json_string_length(content), (int32_t)id,
                            json_flag(a, "single_word", 0),
                            json_flag(a, "lstrip", 0),
                            json_flag(a, "rstrip", 0),
                            json_flag(a, "normalized", 0),
                            json_flag(a, "special", 1), err, err_len);
            if (rc)
                return rc;
        }
    } else {
        const char *names[5] = {o->pad, o->unk, o->cls, o->sep, o->mask};
        for (int k = 0; k < 5; k++) {
            int32_t id = sn__vocab_find(&tok->vocab, names[k],
                                        strlen(names[k]));
            if (id < 0)
                continue;
            rc = added_push(t, names[k], strlen(names[k]), id, 0, 0, 0, 0, 1,
                            err, err_len);
            if (rc)
                return rc;
        }
    }
    return tok_finish(t, err, err_len);
}

static int from_vocab_named(const char *buf, size_t len, const char *name,
                            const vocab_opts_t *o, sn_tokenizer_t **out,
                            char *err, size_t err_len)
{
    *out = NULL;
    if (!buf && len)
        return sn__err(err, err_len, SN_EARG, "'%s': no buffer", name);
    tok_full_t *t = tok_new();
    if (!t)
        return sn__err(err, err_len, -ENOMEM, "'%s': out of memory", name);
    int rc = from_vocab(t, buf ? buf : "", len, o, err, err_len);
    if (rc) {
        sn_tokenizer_free(&t->base);
        return name_error(rc, name, err, err_len);
    }
    *out = &t->base;
    return 0;
}

int sn_tokenizer_from_vocab(const char *buf, size_t len, int lowercase,
                            int strip_accents, int chinese_chars,
                            sn_tokenizer_t **out, char *err, size_t err_len)
{
    vocab_opts_t o = {lowercase, strip_accents, chinese_chars, "[UNK]",
                      "[CLS]", "[SEP]", "[PAD]", "[MASK]", NULL};
    return from_vocab_named(buf, len, "vocab.txt", &o, out, err, err_len);
}

/* A special token name in tokenizer_config.json: a string, or an object
 * with a "content" string (AddedToken serialized). */
static const char *config_token(const json_t *cfg, const char *key,
                                const char *dflt)
{
    json_t *v = json_object_get(cfg, key);
    if (json_is_object(v))
        v = json_object_get(v, "content");
    const char *s = json_string_value(v);
    return s && *s && strlen(s) < SN_TOK_MAX_NAME ? s : dflt;
}

static int config_bool(const json_t *cfg, const char *key, int dflt,
                       const char *path, int *out, char *err, size_t err_len)
{
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v))
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s': %s: expected a boolean or null", path, key);
    *out = json_is_true(v);
    return 0;
}

static int load_vocab_dir(const char *dir, const char *vocab_path,
                          sn_tokenizer_t **out, char *err, size_t err_len)
{
    char cfg_path[4096];
    char *vbuf = NULL, *cbuf = NULL;
    size_t vlen, clen;
    json_t *cfg = NULL;
    vocab_opts_t o = {1, -1, 1, "[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]",
                      NULL};
    int rc;

    rc = sn__read_file(vocab_path, SN_TOK_MAX_VOCAB, &vbuf, &vlen, err,
                       err_len);
    if (rc)
        goto fail;
    if (sn__path_join(cfg_path, sizeof cfg_path, dir,
                      "tokenizer_config.json")) {
        rc = sn__err(err, err_len, SN_ETOOBIG, "'%s': path too long", dir);
        goto fail;
    }
    if (sn__file_exists(cfg_path)) {
        json_error_t je;
        rc = sn__read_file(cfg_path, SN_TOK_MAX_CONFIG, &cbuf, &clen, err,
                           err_len);
        if (rc)
            goto fail;
        cfg = json_loadb(cbuf, clen, 0, &je);
        if (!cfg || !json_is_object(cfg)) {
            rc = sn__err(err, err_len, SN_EJSON, "'%s': line %d column %d: %s",
                         cfg_path, cfg ? 1 : je.line, cfg ? 1 : je.column,
                         cfg ? "expected a json object" : je.text);
            goto fail;
        }
        int strip = -1;
        json_t *sa = json_object_get(cfg, "strip_accents");
        if ((rc = config_bool(cfg, "do_lower_case", 1, cfg_path, &o.lowercase,
                              err, err_len)) ||
            (rc = config_bool(cfg, "tokenize_chinese_chars", 1, cfg_path,
                              &o.chinese_chars, err, err_len)) ||
            (sa && !json_is_null(sa) &&
             (rc = config_bool(cfg, "strip_accents", 0, cfg_path, &strip, err,
                               err_len))))
            goto fail;
        o.strip_accents = strip;
        o.unk = config_token(cfg, "unk_token", o.unk);
        o.cls = config_token(cfg, "cls_token", o.cls);
        o.sep = config_token(cfg, "sep_token", o.sep);
        o.pad = config_token(cfg, "pad_token", o.pad);
        o.mask = config_token(cfg, "mask_token", o.mask);
        o.added_decoder = json_object_get(cfg, "added_tokens_decoder");
    }
    rc = from_vocab_named(vbuf, vlen, vocab_path, &o, out, err, err_len);
fail:
    json_decref(cfg);
    free(vbuf);
    free(cbuf);
    return rc;
}

/* sentence-transformers' input handling for a model folder: up to version
 * 5 it strips every text (str.strip()); 6 does not (the fixtures show both:
 * hf-reference was made with 6.0.1, hf-reference-2 with 5.1.2), so we
 * follow the version that saved the folder (config_sentence_transformers
 * .json's __version__; none recorded: strip, as the older ones do). With
 * "do_lower_case": true in sentence_bert_config.json it lowercases the text
 * (str.lower()). A folder with neither sentence_bert_config.json nor
 * modules.json is a plain Hugging Face tokenizer: the text goes in as
 * given. */
static int load_st_input(const char *dir, tok_full_t *t, char *err,
                         size_t err_len)
{
    char path[4096];
    char *buf = NULL;
    size_t len;
    int rc;

    if (sn__path_join(path, sizeof path, dir,
                      "config_sentence_transformers.json"))
        return sn__err(err, err_len, SN_ETOOBIG, "'%s': path too long", dir);
    int st6 = 0;
    if (sn__file_exists(path) &&
        sn__read_file(path, SN_TOK_MAX_CONFIG, &buf, &len, NULL, 0) == 0) {
        json_t *c = json_loadb(buf, len, 0, NULL);
        const char *ver = json_string_value(json_object_get(
            json_object_get(c, "__version__"), "sentence_transformers"));
        st6 = ver && atoi(ver) >= 6;
        json_decref(c);
        free(buf);
        buf = NULL;
    }
    if (sn__path_join(path, sizeof path, dir, "sentence_bert_config.json"))
        return sn__err(err, err_len, SN_ETOOBIG, "'%s': path too long", dir);
    if (!sn__file_exists(path)) {
        if (sn__path_join(path, sizeof path, dir, "modules.json"))
            return sn__err(err, err_len, SN_ETOOBIG, "'%s': path too long",
                           dir);
        t->input_strip = !st6 && sn__file_exists(path);
        return 0;
    }
    t->input_strip = !st6;
    if ((rc = sn__read_file(path, SN_TOK_MAX_CONFIG, &buf, &len, err,
                            err_len)))
        return rc;
    json_error_t je;
    json_t *cfg = json_loadb(buf, len, 0, &je);
    free(buf);
    if (!json_is_object(cfg)) {
        json_decref(cfg);
        return sn__err(err, err_len, SN_EJSON, "'%s': %s", path,
                       cfg ? "expected a json object" : je.text);
    }
    json_t *v = json_object_get(cfg, "max_seq_length");
    if (json_is_integer(v) && json_integer_value(v) > 0 &&
        json_integer_value(v) < (1 << 24))
        t->max_tokens = (int)json_integer_value(v);
    v = json_object_get(cfg, "do_lower_case");
    if (v && !json_is_null(v) && !json_is_boolean(v))
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': do_lower_case: expected a boolean", path);
    t->input_lower = json_is_true(v);
    json_decref(cfg);
    return rc;
}

int sn_tokenizer_load(const char *dir, sn_tokenizer_t **out, char *err,
                      size_t err_len)
{
    char path[4096];
    char *buf = NULL;
    size_t len;
    int rc;

    if (!out)
        return sn__err(err, err_len, SN_EARG, "no output pointer");
    *out = NULL;
    if (!dir)
        return sn__err(err, err_len, SN_EARG, "no model folder");
    if (sn__path_join(path, sizeof path, dir, "tokenizer.json"))
        return sn__err(err, err_len, SN_ETOOBIG, "'%s': path too long", dir);
    if (sn__file_exists(path)) {
        rc = sn__read_file(path, SN_TOK_MAX_JSON, &buf, &len, err, err_len);
        if (rc)
            return rc;
        rc = from_json_named(buf, len, path, out, err, err_len);
        free(buf);
    } else {
        if (sn__path_join(path, sizeof path, dir, "vocab.txt"))
            return sn__err(err, err_len, SN_ETOOBIG, "'%s': path too long",
                           dir);
        if (!sn__file_exists(path))
            return sn__err(err, err_len, -ENOENT,
                           "'%s': no tokenizer.json or vocab.txt in the "
                           "folder",
                           dir);
        rc = load_vocab_dir(dir, path, out, err, err_len);
    }
    if (rc == 0 && (rc = load_st_input(dir, full(*out), err, err_len))) {
        sn_tokenizer_free(*out);
        *out = NULL;
    }
    if (rc == 0 && full(*out)->max_tokens == 0 &&
        sn__path_join(path, sizeof path, dir, "tokenizer_config.json") == 0 &&
        sn__file_exists(path) &&
        sn__read_file(path, SN_TOK_MAX_CONFIG, &buf, &len, NULL, 0) == 0) {
        json_t *c = json_loadb(buf, len, 0, NULL);
        json_t *v = json_object_get(c, "model_max_length");
        /* transformers writes 1e30 for "no limit" */
        if (json_is_integer(v) && json_integer_value(v) > 0 &&
            json_integer_value(v) < (1 << 20))
            full(*out)->max_tokens = (int)json_integer_value(v);
        json_decref(c);
        free(buf);
    }
    return rc;
}

/* ---- queries --------------------------------------------------------------- */

int sn_tokenizer_max_tokens(const sn_tokenizer_t *tok)
{
    return tok && full(tok) ? full(tok)->max_tokens : 0;
}

int32_t sn_tokenizer_unk_id(const sn_tokenizer_t *tok)
{
    return tok ? tok->unk_id : -1;
}

int sn_tokenizer_n_vocab(const sn_tokenizer_t *tok)
{
    if (!tok)
        return 0;
    return full(tok) ? full(tok)->n_vocab : tok->vocab.n_pieces;
}

const char *sn_tokenizer_piece(const sn_tokenizer_t *tok, int32_t id)
{
    if (!tok || id < 0)
        return NULL;
    const tok_full_t *t = full(tok);
    int n = t ? t->n_added : 0, lo = 0, hi = n;
    while (lo < hi) { /* added tokens override the model's pieces, as in HF */
        int mid = lo + (hi - lo) / 2;
        int32_t mid_id = t->added[t->by_id[mid]].id;
        if (mid_id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < n && t->added[t->by_id[lo]].id == id)
        return t->added[t->by_id[lo]].content;
    if (id < tok->vocab.n_pieces)
        return tok->vocab.pieces[id];
    return NULL;
}

/* The added token of id `id` (the entry HF keeps), or NULL. */
static const added_t *added_of(const sn_tokenizer_t *tok, int32_t id)
{
    const tok_full_t *t = full(tok);
    int n = t ? t->n_added : 0, lo = 0, hi = n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (t->added[t->by_id[mid]].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && t->added[t->by_id[lo]].id == id ? &t->added[t->by_id[lo]]
                                                      : NULL;
}

/* Byte offset of code point `cp` in text (len when past the end). */
static size_t byte_at(const char *text, size_t len, int32_t cp)
{
    size_t at = 0;
    for (int32_t k = 0; k < cp && at < len; k++) {
        at++;
        while (at < len && ((uint8_t)text[at] & 0xC0) == 0x80)
            at++;
    }
    return at;
}

/* An added token with lstrip/rstrip is, in HF's tokens, the text it matched
 * with the whitespace it took; trim_offsets may have cut that whitespace
 * from its span, so widen the span again over whitespace, up to the
 * neighbouring tokens. */
static const char *added_text(const added_t *a, const sn_encoding_t *enc,
                              int i, const char *text, size_t len, char *buf,
                              size_t buf_len)
{
    int32_t lo = 0, hi = INT32_MAX;
    for (int k = i - 1; k >= 0; k--)
        if (!enc->special[k]) {
            lo = enc->end[k];
            break;
        }
    for (int k = i + 1; k < enc->n_tokens; k++)
        if (!enc->special[k]) {
            hi = enc->start[k];
            break;
        }
    size_t a0 = byte_at(text, len, enc->start[i]);
    size_t b0 = byte_at(text, len, enc->end[i]);
    size_t lo_b = byte_at(text, len, lo);
    size_t hi_b = hi == INT32_MAX ? len : byte_at(text, len, hi);
    /* whitespace here is ASCII or multi-byte: step by code points */
    while (a->lstrip && a0 > lo_b) {
        size_t p = a0 - 1;
        while (p > lo_b && ((uint8_t)text[p] & 0xC0) == 0x80)
            p--;
        utf8proc_int32_t c;
        if (utf8proc_iterate((const utf8proc_uint8_t *)text + p,
                             (utf8proc_ssize_t)(a0 - p), &c) <= 0 ||
            !sn__is_white_space((uint32_t)c))
            break;
        a0 = p;
    }
    while (a->rstrip && b0 < hi_b) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(
            (const utf8proc_uint8_t *)text + b0, (utf8proc_ssize_t)(len - b0),
            &c);
        if (k <= 0 || !sn__is_white_space((uint32_t)c))
            break;
        b0 += (size_t)k;
    }
    size_t n = b0 > a0 ? b0 - a0 : 0;
    if (n >= buf_len)
        n = buf_len - 1;
    memcpy(buf, text + a0, n);
    buf[n] = '\0';
    return buf;
}

const char *sn_tokenizer_token_str(const sn_tokenizer_t *tok,
                                   const sn_encoding_t *enc, int i,
                                   const char *text, size_t len, char *buf,
                                   size_t buf_len)
{
    if (!tok || !enc || i < 0 || i >= enc->n_tokens)
        return NULL;
    const added_t *a = added_of(tok, enc->ids[i]);
    if (a && !enc->special[i] && (a->lstrip || a->rstrip) && text && buf &&
        buf_len > 0)
        return added_text(a, enc, i, text, len, buf, buf_len);
    if (tok->kind != SN_TOK_UNIGRAM || enc->special[i] ||
        enc->ids[i] != tok->unk_id || !text || !buf || buf_len == 0)
        return sn_tokenizer_piece(tok, enc->ids[i]);
    /* the code points [start, end) of the text, normalized again */
    uint32_t cps[256];
    int n = 0;
    int32_t cp = 0;
    for (size_t at = 0; at < len && cp < enc->end[i];) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(
            (const utf8proc_uint8_t *)text + at, (utf8proc_ssize_t)(len - at),
            &c);
        if (k <= 0)
            break;
        if (cp >= enc->start[i] && n < (int)(sizeof cps / sizeof *cps))
            cps[n++] = (uint32_t)c;
        at += (size_t)k;
        cp++;
    }
    if (sn__unigram_unk_text(tok, cps, n, buf, buf_len) != 0)
        return sn_tokenizer_piece(tok, enc->ids[i]);
    /* other tokens from the same chars ("İ" -> "i" + U+0307) hold their
     * part of the normalized text: take theirs off the ends */
    size_t blen = strlen(buf);
    for (int k = 0; k < enc->n_tokens; k++) {
        if (k == i || enc->special[k] || enc->start[k] != enc->start[i] ||
            enc->end[k] != enc->end[i])
            continue;
        const char *p = sn_tokenizer_piece(tok, enc->ids[k]);
        size_t pl = p ? strlen(p) : 0;
        if (!pl || pl > blen)
            continue;
        if (k < i && memcmp(buf, p, pl) == 0) {
            memmove(buf, buf + pl, blen - pl + 1);
            blen -= pl;
        } else if (k > i && memcmp(buf + blen - pl, p, pl) == 0) {
            blen -= pl;
            buf[blen] = '\0';
        }
    }
    return buf;
}

/* ---- encode ---------------------------------------------------------------- */

void sn_encoding_free(sn_encoding_t *enc)
{
    if (!enc)
        return;
    free(enc->ids);
    free(enc->start);
    free(enc->end);
    free(enc->special);
    memset(enc, 0, sizeof *enc);
}

static int encoding_reserve(sn_encoding_t *e, int n)
{
    if (n <= e->cap)
        return 0;
    int cap = e->cap > 0 ? e->cap : 16;
    while (cap < n)
        cap = cap > INT_MAX / 2 ? n : cap * 2;
    int32_t *ids = realloc(e->ids, (size_t)cap * sizeof *ids);
    if (!ids)
        return -ENOMEM;
    e->ids = ids;
    int32_t *st = realloc(e->start, (size_t)cap * sizeof *st);
    if (!st)
        return -ENOMEM;
    e->start = st;
    int32_t *en = realloc(e->end, (size_t)cap * sizeof *en);
    if (!en)
        return -ENOMEM;
    e->end = en;
    uint8_t *sp = realloc(e->special, (size_t)cap);
    if (!sp)
        return -ENOMEM;
    e->special = sp;
    e->cap = cap; /* only once every array has the room */
    return 0;
}

/* A piece of the text: [start, end) code points, and the added token it is
 * (index into added) or -1 for text the model tokenizes. */
typedef struct {
    int32_t start, end;
    int added;
} split_t;

typedef struct {
    split_t *v;
    int n, cap;
} splits_t;

static int splits_push(splits_t *s, int32_t start, int32_t end, int added)
{
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        split_t *v = realloc(s->v, (size_t)cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n].start = start;
    s->v[s->n].end = end;
    s->v[s->n].added = added;
    s->n++;
    return 0;
}

/* The regex \w of Rust's regex crate, closely enough: letters, marks,
 * decimal and letter numbers, connector punctuation, joiners. */
static int is_word_char(uint32_t c)
{
    if (c < 0x80)
        return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
               (c >= 'a' && c <= 'z') || c == '_';
    if (c == 0x200c || c == 0x200d || (c >= 0x24b6 && c <= 0x24e9))
        return 1;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC:
        return 1;
    default:
        return 0;
    }
}

/* The longest added token of pass p matching cps[i, hi): its index, or -1;
 * *len gets its length. Ties go to the later entry (HF's content map keeps
 * the last). */
static int match_at(const tok_full_t *t, int p, const uint32_t *cps, int i,
                    int hi, int *len)
{
    const int *idx = t->by_first[p];
    int lo = 0, n = t->n_by_first[p], best = -1;
    uint32_t c = cps[i];

    while (lo < n) { /* first entry whose first code point is >= c */
        int mid = lo + (n - lo) / 2;
        if (t->added[idx[mid]].cps[0] < c)
            lo = mid + 1;
        else
            n = mid;
    }
    *len = 0;
    for (int k = lo; k < t->n_by_first[p]; k++) {
        const added_t *a = &t->added[idx[k]];
        if (a->cps[0] != c)
            break;
        if (a->n_cps > hi - i || a->n_cps < *len)
            continue;
        if (memcmp(a->cps, cps + i, (size_t)a->n_cps * sizeof *cps) == 0) {
            best = idx[k];
            *len = a->n_cps;
        }
    }
    return best;
}

/* AddedVocabulary::find_matches over cps[lo, hi) with the tokens of pass p:
 * appends splits covering the range. */
static int find_matches(const tok_full_t *t, int p, const uint32_t *cps,
                        int lo, int hi, splits_t *out)
{
    int start_offset = lo, i = lo, rc;

    while (i < hi) {
        int len, a_idx = match_at(t, p, cps, i, hi, &len);
        if (a_idx < 0) {
            i++;
            continue;
        }
        const added_t *a = &t->added[a_idx];
        int start = i, stop = i + len;
        i = stop; /* the automaton resumes after the match, stripped or not */
        if (a->single_word) {
            int start_space = start == lo || !is_word_char(cps[start - 1]);
            int stop_space = stop == hi || !is_word_char(cps[stop]);
            if (!start_space || !stop_space)
                continue;
        }
        if (a->lstrip) {
            int ns = start;
            while (ns > lo && sn__is_white_space(cps[ns - 1]))
                ns--;
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip)
            while (stop < hi && sn__is_white_space(cps[stop]))
                stop++;
        if (start_offset < start &&
            (rc = splits_push(out, start_offset, start, -1)))
            return rc;
        if ((rc = splits_push(out, start, stop, a_idx)))
            return rc;
        start_offset = stop;
    }
    if (start_offset < hi)
        return splits_push(out, start_offset, hi, -1);
    return 0;
}

/* Cut cps[0, n) into model pieces and added tokens, both passes. */
static int split_added(const tok_full_t *t, const uint32_t *cps, int n,
                       splits_t *out)
{
    splits_t first = {0};
    int rc;

    if (!t || (t->n_by_first[0] == 0 && t->n_by_first[1] == 0))
        return n ? splits_push(out, 0, n, -1) : 0;
    rc = find_matches(t, 0, cps, 0, n, &first);
    if (rc)
        goto fail;
    for (int k = 0; k < first.n; k++) {
        split_t s = first.v[k];
        if (s.added >= 0 || t->n_by_first[1] == 0)
            rc = splits_push(out, s.start, s.end, s.added);
        else
            rc = find_matches(t, 1, cps, s.start, s.end, out);
        if (rc)
            goto fail;
    }
fail:
    free(first.v);
    return rc;
}

static int model_encode(const sn_tokenizer_t *tok, const uint32_t *cps, int n,
                        int32_t offset, sn__toks_t *out)
{
    switch (tok->kind) {
    case SN_TOK_WORDPIECE:
        return sn__wordpiece_encode(tok, cps, n, out);
    case SN_TOK_UNIGRAM:
        return sn__unigram_encode_at(tok, cps, n, offset, out);
    case SN_TOK_USE:
        return sn__usetok_encode(tok, cps, n, out);
    case SN_TOK_BPE:
        return sn__bpe_encode_at(tok, cps, n, offset, out);
    }
    return SN_EMODEL;
}



/* ByteLevel's process_offsets (RobertaProcessing and the ByteLevel
 * post-processor with trim_offsets): a token whose string starts or ends
 * with spaces ('\u0120', or White_Space) loses them from its span; the
 * first token keeps one leading space that add_prefix_space put there. */
static void trim_offsets(const sn_tokenizer_t *tok, const uint32_t *cps,
                         sn__tok_t *v, int n)
{
    for (int i = 0; i < n; i++) {
        /* the token's string: its piece, or for an added token the text it
         * matched (with the whitespace lstrip/rstrip took) */
        const char *p = v[i].added ? "" : sn_tokenizer_piece(tok, v[i].id);
        if (!p)
            continue;
        size_t len = strlen(p);
        int32_t lead = 0, trail = 0, n_cps = 0;
        int in_lead = 1;
        for (size_t at = 0, k = (size_t)v[i].start;
             v[i].added ? k < (size_t)v[i].end : at < len; k++) {
            utf8proc_int32_t c;
            if (v[i].added) {
                c = (utf8proc_int32_t)cps[k];
            } else {
                utf8proc_ssize_t r = utf8proc_iterate(
                    (const utf8proc_uint8_t *)p + at,
                    (utf8proc_ssize_t)(len - at), &c);
                if (r <= 0)
                    break;
                at += (size_t)r;
            }
            int sp = c == 0x120 || sn__is_white_space((uint32_t)c);
            if (in_lead && sp)
                lead++;
            else
                in_lead = 0;
            trail = sp ? trail + 1 : 0;
            n_cps++;
        }
        if (lead == n_cps) /* all spaces: Rust counts them from each end */
            trail = lead;
        if (lead > 0) {
            int is_first = i == 0 || v[i].start == 0;
            if (is_first && tok->trim_prefix_space && lead == 1)
                lead = 0;
            v[i].start = v[i].start + lead < v[i].end ? v[i].start + lead
                                                      : v[i].end;
        }
        if (trail > 0 && v[i].end >= trail)
            v[i].end = v[i].end - trail > v[i].start ? v[i].end - trail
                                                     : v[i].start;
    }
}

/* ---- sentence-transformers' input: str.strip() and str.lower() ------------ */

/* Python's str.isspace(): bidi class WS, B or S, or category Zs. */
static int py_isspace(uint32_t c)
{
    if (c < 0x80)
        return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
    return c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Unicode Cased, closely enough: a letter with case or one that changes
 * under a case mapping. */
static int py_cased(uint32_t c)
{
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL ||
           k == UTF8PROC_CATEGORY_LT ||
           utf8proc_tolower((utf8proc_int32_t)c) != (utf8proc_int32_t)c ||
           utf8proc_toupper((utf8proc_int32_t)c) != (utf8proc_int32_t)c;
}

/* Unicode Case_Ignorable: Mn, Me, Cf, Lm, Sk, and Word_Break MidLetter,
 * MidNumLet or Single_Quote. */
static int py_case_ignorable(uint32_t c)
{
    switch (c) {
    case 0x27: case 0x2e: case 0x3a: case 0xb7: case 0x387: case 0x55f:
    case 0x5f4: case 0x2018: case 0x2019: case 0x2024: case 0x2027:
    case 0xfe13: case 0xfe52: case 0xfe55: case 0xff07: case 0xff0e:
    case 0xff1a:
        return 1;
    }
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK:
        return 1;
    default:
        return 0;
    }
}

/* Python's final-sigma rule for U+03A3 at cps[i] of cps[a, b). */
static int py_final_sigma(const uint32_t *cps, int a, int b, int i)
{
    int j = i - 1;
    while (j >= a && py_case_ignorable(cps[j]))
        j--;
    if (j < a || !py_cased(cps[j]))
        return 0;
    j = i + 1;
    while (j < b && py_case_ignorable(cps[j]))
        j++;
    return j == b || !py_cased(cps[j]);
}

/* Rewrite cps[0, *n) as sentence-transformers would hand it to the
 * tokenizer; orig[k] gets the original index of output code point k.
 * `out` and `orig` hold 2 * n entries (lowercasing U+0130 doubles it). */
static void st_input(const tok_full_t *t, const uint32_t *cps, int n,
                     uint32_t *out, int32_t *orig, int *n_out)
{
    int a = 0, b = n, k = 0;
    if (t->input_strip) {
        while (a < b && py_isspace(cps[a]))
            a++;
        while (b > a && py_isspace(cps[b - 1]))
            b--;
    }
    for (int i = a; i < b; i++) {
        uint32_t c = cps[i];
        if (t->input_lower) {
            if (c == 0x130) { /* the one unconditional special casing */
                out[k] = 'i';
                orig[k++] = i;
                c = 0x307;
            } else if (c == 0x3a3) {
                c = py_final_sigma(cps, a, b, i) ? 0x3c2 : 0x3c3;
            } else {
                c = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
            }
        }
        out[k] = c;
        orig[k++] = i;
    }
    *n_out = k;
}

int sn_tokenizer_encode(const sn_tokenizer_t *tok, const char *text,
                        size_t len, int max_tokens, sn_encoding_t *out,
                        char *err, size_t err_len)
{
    uint32_t *cps = NULL, *work = NULL;
    int32_t *orig = NULL;
    splits_t splits = {0};
    sn__toks_t toks = {0};
    int n = 0, n_work = 0, n_orig = 0, rc;

    if (!tok || !out || (!text && len))
        return sn__err(err, err_len, SN_EARG,
                       "encode: no tokenizer, text or output");
    const tok_full_t *t = full(tok);
    out->n_tokens = 0;
    out->truncated = 0;
    if (len > SN_TOK_MAX_TEXT)
        return sn__err(err, err_len, SN_ETOOBIG,
                       "text of %zu bytes, more than %d", len,
                       SN_TOK_MAX_TEXT);
    int n_specials = tok->n_prefix + tok->n_suffix;
    if (max_tokens > 0 && max_tokens < n_specials)
        return sn__err(err, err_len, SN_EARG,
                       "max_tokens %d leaves no room for the %d special "
                       "tokens",
                       max_tokens, n_specials);

    cps = malloc((len + 1) * sizeof *cps);
    if (!cps) {
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t at = 0; at < len;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(
            (const utf8proc_uint8_t *)text + at, (utf8proc_ssize_t)(len - at),
            &c);
        if (k <= 0) {
            rc = sn__err(err, err_len, SN_EUTF8,
                         "invalid utf-8 at byte %zu", at);
            goto fail;
        }
        cps[n++] = (uint32_t)c;
        at += (size_t)k;
    }
    if (t && (t->input_strip || t->input_lower)) {
        work = malloc((2 * (size_t)n + 1) * sizeof *work);
        orig = malloc((2 * (size_t)n + 1) * sizeof *orig);
        if (!work || !orig) {
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            goto fail;
        }
        st_input(t, cps, n, work, orig, &n_work);
        uint32_t *tmp = cps;
        cps = work;
        work = tmp;
        n_orig = n;
        n = n_work;
    }

    rc = split_added(t, cps, n, &splits);
    if (rc) {
        rc = sn__err(err, err_len, rc, "out of memory");
        goto fail;
    }
    for (int k = 0; k < splits.n; k++) {
        const split_t *s = &splits.v[k];
        if (s->added >= 0) {
            rc = sn__toks_push(&toks, t->added[s->added].id, s->start, s->end);
            if (rc == 0)
                toks.v[toks.n - 1].added = 1;
        } else {
            int n0 = toks.n;
            rc = model_encode(tok, cps + s->start, s->end - s->start, s->start,
                              &toks);
            for (int j = n0; !rc && j < toks.n; j++) {
                toks.v[j].start += s->start;
                toks.v[j].end += s->start;
            }
        }
        if (rc) {
            rc = sn__err(err, err_len, rc, "encode: %s",
                         rc == SN_EMODEL ? "the model cannot tokenize the "
                                           "text (no unk token)"
                                         : sn_strerror(rc));
            goto fail;
        }
    }

    if (tok->trim_offsets)
        trim_offsets(tok, cps, toks.v, toks.n);
    if (orig) { /* offsets back into the text as given */
        for (int k = 0; k < toks.n; k++) {
            int32_t s0 = toks.v[k].start, e0 = toks.v[k].end;
            int32_t s1 = s0 < n ? orig[s0] : n_orig;
            int32_t e1 = e0 > s0 && e0 <= n ? orig[e0 - 1] + 1 : s1;
            toks.v[k].start = s1;
            toks.v[k].end = e1;
        }
    }

    int n_seq = toks.n;
    if (max_tokens > 0 && n_seq > max_tokens - n_specials)
        n_seq = max_tokens - n_specials; /* keep the first tokens */
    int total = n_seq + n_specials;
    int n_cut = toks.n - n_seq;
    rc = encoding_reserve(out, total);
    if (rc) {
        rc = sn__err(err, err_len, rc, "out of memory");
        goto fail;
    }
    int o = 0;
    for (int k = 0; k < tok->n_prefix; k++, o++) {
        out->ids[o] = tok->prefix[k];
        out->start[o] = out->end[o] = 0;
        out->special[o] = 1;
    }
    for (int k = 0; k < n_seq; k++, o++) {
        out->ids[o] = toks.v[k].id;
        out->start[o] = toks.v[k].start;
        out->end[o] = toks.v[k].end;
        out->special[o] = 0;
    }
    for (int k = 0; k < tok->n_suffix; k++, o++) {
        out->ids[o] = tok->suffix[k];
        out->start[o] = out->end[o] = 0;
        out->special[o] = 1;
    }
    out->n_tokens = total;
    out->truncated = n_cut;
    rc = 0;
fail:
    free(cps);
    free(work);
    free(orig);
    free(splits.v);
    sn__toks_free(&toks);
    return rc;
}
