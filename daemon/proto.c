/*
 * proto.c -- the wire format of sensed: one request line in, one reply line
 * out (docs/protocol.md). Pure functions of (buf, len): no I/O, no globals,
 * no model, so the fuzzer (tests/fuzz/fuzz_proto.c) drives it directly.
 *
 * Parsing checks, in order: UTF-8 (strict: no overlongs, no surrogates),
 * JSON (jansson, duplicate keys rejected, \u0000 allowed in strings and
 * carried by length), a top-level object, "op", then each field of the op:
 * type, presence, count limits (SN_MAX_TEXTS, ...) and string limits.
 * Model-dependent checks (does the prompt exist, is `dimensions` <= the
 * model's) belong to ops.c, and so do the sense ops' (casefolding a lemma,
 * finding it in its examples: the library's, on a worker). Unknown fields
 * are ignored, for forward compatibility.
 *
 * Invariants: a parsed request's strings point into its JSON tree, which it
 * owns; every failure path leaves the request freeable by
 * sn__request_free(); no input can make the parser allocate more than a
 * small multiple of the line.
 *
 * Replies are written into an sn__buf_t whose maximum bounds the reply line
 * (SN_MAX_REPLY); the writer escapes every string it is handed, valid UTF-8
 * or not, so a reply is always one line of valid JSON.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"

/* ---- buffers ---------------------------------------------------------------- */

void sn__buf_init(sn__buf_t *b, size_t max)
{
    memset(b, 0, sizeof *b);
    b->max = max;
}

void sn__buf_free(sn__buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->err = 0;
}

static int buf_reserve(sn__buf_t *b, size_t more)
{
    if (b->err)
        return b->err;
    if (more > b->max || b->len > b->max - more)
        return b->err = SN_ETOOBIG;
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more)
        cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
    if (b->max < SIZE_MAX && cap > b->max + 1)
        cap = b->max + 1;
    char *p = realloc(b->data, cap);
    if (!p)
        return b->err = -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

void sn__buf_put(sn__buf_t *b, const void *p, size_t len)
{
    if (!len || buf_reserve(b, len))
        return;
    memcpy(b->data + b->len, p, len);
    b->len += len;
}

void sn__buf_puts(sn__buf_t *b, const char *s) { sn__buf_put(b, s, strlen(s)); }

void sn__buf_printf(sn__buf_t *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->err = b->err ? b->err : SN_EARG;
        return;
    }
    if ((size_t)n < sizeof tmp) {
        sn__buf_put(b, tmp, (size_t)n);
        return;
    }
    if (buf_reserve(b, (size_t)n + 1))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sn__buf_json_str(sn__buf_t *b, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0; /* s[run..i) is copied as is */

    sn__buf_put(b, "\"", 1);
    while (i < len) {
        unsigned c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t k = sn_utf8_seq(s + i, len - i);
            if (k) {
                i += k;
                continue;
            }
        }
        sn__buf_put(b, s + run, i - run);
        char esc[8];
        switch (c) {
        case '"': sn__buf_put(b, "\\\"", 2); break;
        case '\\': sn__buf_put(b, "\\\\", 2); break;
        case '\n': sn__buf_put(b, "\\n", 2); break;
        case '\r': sn__buf_put(b, "\\r", 2); break;
        case '\t': sn__buf_put(b, "\\t", 2); break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                sn__buf_put(b, esc, 6);
            } else {
                sn__buf_put(b, "\xEF\xBF\xBD", 3); /* U+FFFD */
            }
        }
        run = ++i;
    }
    sn__buf_put(b, s + run, i - run);
    sn__buf_put(b, "\"", 1);
}

void sn__buf_floats(sn__buf_t *b, const float *v, int n)
{
    char tmp[32];
    sn__buf_put(b, "[", 1);
    for (int i = 0; i < n; i++) {
        int k = 0;
        if (i)
            tmp[k++] = ',';
        if (isfinite(v[i]))
            k += snprintf(tmp + k, sizeof tmp - (size_t)k, "%.9g",
                          (double)v[i]);
        else
            k += snprintf(tmp + k, sizeof tmp - (size_t)k, "null");
        sn__buf_put(b, tmp, (size_t)k);
    }
    sn__buf_put(b, "]", 1);
}

/* ---- error codes ------------------------------------------------------------ */

const char *sn__perr_name(sn__perr_t code)
{
    switch (code) {
#define SN__PERR_CASE(name, str)                                             \
    case SN__P_##name:                                                       \
        return str;
        SN__PERR_MAP(SN__PERR_CASE)
#undef SN__PERR_CASE
    }
    return "internal";
}

sn__perr_t sn__perr_of(int rc)
{
    switch (rc) {
    case 0: return SN__P_OK;
    case SN_EPROTO:
    case SN_EARG: return SN__P_BAD_REQUEST;
    case SN_EJSON: return SN__P_BAD_JSON;
    case SN_EUTF8: return SN__P_BAD_UTF8;
    case SN_EMODEL: return SN__P_MODEL_MISMATCH;
    case SN_ETOOBIG: return SN__P_TOO_LARGE;
    case SN_ENOTFOUND: return SN__P_NOT_FOUND;
    case -ENOSPC:
    case -EDQUOT:
    case -EFBIG: return SN__P_STORAGE_FULL;
    case -EROFS:
    case -EACCES:
    case -EPERM: return SN__P_READ_ONLY;
    case -ENOSYS: return SN__P_UNAVAILABLE;
    default: return SN__P_INTERNAL;
    }
}

/* ---- request parsing -------------------------------------------------------- */

static sn__perr_t fail(char *msg, size_t msg_len, sn__perr_t code,
                       const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static sn__perr_t fail(char *msg, size_t msg_len, sn__perr_t code,
                       const char *fmt, ...)
{
    if (msg && msg_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, msg_len, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* A string field: present (else `required` decides), a string, no NUL when
 * `cstr`, at most max bytes, at least min. */
static sn__perr_t get_str(json_t *obj, const char *key, int required,
                          int cstr, size_t min, size_t max, const char **out,
                          size_t *out_len, char *msg, size_t msg_len)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (out_len)
        *out_len = 0;
    if (!v) {
        if (required)
            return fail(msg, msg_len, SN__P_BAD_REQUEST, "missing '%s'", key);
        return SN__P_OK;
    }
    if (!json_is_string(v))
        return fail(msg, msg_len, SN__P_BAD_REQUEST,
                    "'%s' must be a string", key);
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (cstr && strlen(s) != len)
        return fail(msg, msg_len, SN__P_BAD_REQUEST,
                    "'%s' must not contain NUL", key);
    if (len < min)
        return fail(msg, msg_len, SN__P_BAD_REQUEST, "'%s' is empty", key);
    if (len > max)
        return fail(msg, msg_len, SN__P_TOO_LARGE,
                    "'%s' is longer than %zu bytes", key, max);
    *out = s;
    if (out_len)
        *out_len = len;
    return SN__P_OK;
}

static sn__perr_t get_collection(sn__request_t *req, char *msg,
                                 size_t msg_len)
{
    sn__perr_t rc = get_str(req->root, "collection", 0, 1, 1, SN_MAX_NAME,
                            &req->collection, NULL, msg, msg_len);
    if (rc)
        return rc;
    if (!req->collection)
        req->collection = "default";
    for (const unsigned char *p = (const unsigned char *)req->collection; *p;
         p++)
        if (*p < 0x20 || *p == 0x7f)
            return fail(msg, msg_len, SN__P_BAD_REQUEST,
                        "'collection' must not contain control characters");
    return SN__P_OK;
}

/* An array of strings: ptrs and lens malloc'd (n may be 0). */
static sn__perr_t get_str_array(json_t *obj, const char *key, int cstr,
                                size_t max_len, int max_n,
                                const char ***ptrs, size_t **lens, int *n,
                                char *msg, size_t msg_len)
{
    json_t *a = json_object_get(obj, key);
    *ptrs = NULL;
    if (lens)
        *lens = NULL;
    *n = 0;
    if (!a)
        return fail(msg, msg_len, SN__P_BAD_REQUEST, "missing '%s'", key);
    if (!json_is_array(a))
        return fail(msg, msg_len, SN__P_BAD_REQUEST,
                    "'%s' must be an array of strings", key);
    size_t count = json_array_size(a);
    if (count > (size_t)max_n)
        return fail(msg, msg_len, SN__P_TOO_MANY,
                    "'%s' has %zu entries; at most %d per request", key,
                    count, max_n);
    *ptrs = calloc(count ? count : 1, sizeof **ptrs);
    if (lens)
        *lens = calloc(count ? count : 1, sizeof **lens);
    if (!*ptrs || (lens && !*lens))
        return fail(msg, msg_len, SN__P_INTERNAL, "out of memory");
    for (size_t i = 0; i < count; i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_string(v))
            return fail(msg, msg_len, SN__P_BAD_REQUEST,
                        "%s[%zu] must be a string", key, i);
        size_t len = json_string_length(v);
        const char *s = json_string_value(v);
        if (cstr && (strlen(s) != len || len == 0))
            return fail(msg, msg_len, SN__P_BAD_REQUEST,
                        "%s[%zu] must be a non-empty string without NUL", key,
                        i);
        if (len > max_len)
            return fail(msg, msg_len, SN__P_TOO_LARGE,
                        "%s[%zu] is longer than %zu bytes", key, i, max_len);
        (*ptrs)[i] = s;
        if (lens)
            (*lens)[i] = len;
    }
    *n = (int)count;
    return SN__P_OK;
}

/* An optional integer field in [min, max]; over max is `over`. */
static sn__perr_t get_int(json_t *obj, const char *key, long long min,
                          long long max, sn__perr_t over, int *out,
                          char *msg, size_t msg_len)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return SN__P_OK;
    if (!json_is_integer(v))
        return fail(msg, msg_len, SN__P_BAD_REQUEST,
                    "'%s' must be an integer", key);
    long long x = json_integer_value(v);
    if (x < min)
        return fail(msg, msg_len, SN__P_BAD_REQUEST,
                    "'%s' must be at least %lld", key, min);
    if (x > max)
        return fail(msg, msg_len, over, "'%s' must be at most %lld", key,
                    max);
    *out = (int)x;
    return SN__P_OK;
}

static sn__perr_t get_bool(json_t *obj, const char *key, int *out, char *msg,
                           size_t msg_len)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return SN__P_OK;
    if (!json_is_boolean(v))
        return fail(msg, msg_len, SN__P_BAD_REQUEST,
                    "'%s' must be true or false", key);
    *out = json_is_true(v);
    return SN__P_OK;
}

static sn__perr_t get_prompt(sn__request_t *req, char *msg, size_t msg_len)
{
    /* "" means no prompt at all; absent means the op's default */
    sn__perr_t rc = get_str(req->root, "prompt", 0, 1, 0, SN_MAX_NAME,
                            &req->prompt, NULL, msg, msg_len);
    req->has_prompt = req->prompt != NULL;
    return rc;
}

static sn__perr_t parse_embed(sn__request_t *req, char *msg, size_t msg_len)
{
    sn__perr_t rc;
    if ((rc = get_str_array(req->root, "texts", 0, SIZE_MAX, SN_MAX_TEXTS,
                            &req->texts, &req->lens, &req->n_texts, msg,
                            msg_len)) ||
        (rc = get_bool(req->root, "tokens", &req->want_tokens, msg,
                       msg_len)) ||
        (rc = get_prompt(req, msg, msg_len)) ||
        (rc = get_int(req->root, "dimensions", 1, 1 << 20, SN__P_BAD_REQUEST,
                      &req->dimensions, msg, msg_len)))
        return rc;
    return SN__P_OK;
}

static sn__perr_t parse_add(sn__request_t *req, char *msg, size_t msg_len)
{
    sn__perr_t rc;
    const char *kind = NULL;
    if ((rc = get_collection(req, msg, msg_len)) ||
        (rc = get_prompt(req, msg, msg_len)) ||
        (rc = get_str(req->root, "index", 0, 1, 1, SN_MAX_NAME, &kind, NULL,
                      msg, msg_len)))
        return rc;
    /* the index kind of a collection this add creates; an existing
     * collection keeps the kind it was created with */
    if (!kind || !strcmp(kind, "auto"))
        req->index_kind = SN_INDEX_AUTO;
    else if (!strcmp(kind, "flat"))
        req->index_kind = SN_INDEX_FLAT;
    else if (!strcmp(kind, "hnsw"))
        req->index_kind = SN_INDEX_HNSW;
    else
        return fail(msg, msg_len, SN__P_BAD_REQUEST,
                    "'index' must be \"auto\", \"flat\" or \"hnsw\"");
    json_t *a = json_object_get(req->root, "docs");
    if (!a)
        return fail(msg, msg_len, SN__P_BAD_REQUEST, "missing 'docs'");
    if (!json_is_array(a))
        return fail(msg, msg_len, SN__P_BAD_REQUEST,
                    "'docs' must be an array of objects");
    size_t count = json_array_size(a);
    if (count > SN_MAX_DOCS)
        return fail(msg, msg_len, SN__P_TOO_MANY,
                    "'docs' has %zu entries; at most %d per request", count,
                    SN_MAX_DOCS);
    req->docs = calloc(count ? count : 1, sizeof *req->docs);
    if (!req->docs)
        return fail(msg, msg_len, SN__P_INTERNAL, "out of memory");
    req->n_docs = (int)count; /* so that free sees every meta */
    for (size_t i = 0; i < count; i++) {
        json_t *d = json_array_get(a, i);
        sn__doc_req_t *doc = &req->docs[i];
        char key[48];
        if (!json_is_object(d))
            return fail(msg, msg_len, SN__P_BAD_REQUEST,
                        "docs[%zu] must be an object", i);
        snprintf(key, sizeof key, "docs[%zu]: ", i);
        if ((rc = get_str(d, "text", 1, 0, 0, SIZE_MAX, &doc->text,
                          &doc->text_len, msg, msg_len)) ||
            (rc = get_str(d, "id", 0, 1, 1, SN_MAX_ID, &doc->id, NULL, msg,
                          msg_len))) {
            /* prefix the message with where: "docs[3]: missing 'text'" */
            size_t kl = strlen(key), ml = strlen(msg);
            if (kl + ml + 1 <= msg_len) {
                memmove(msg + kl, msg, ml + 1);
                memcpy(msg, key, kl);
            }
            return rc;
        }
        json_t *meta = json_object_get(d, "meta");
        if (meta && !json_is_null(meta)) {
            if (!json_is_object(meta))
                return fail(msg, msg_len, SN__P_BAD_REQUEST,
                            "docs[%zu].meta must be an object", i);
            doc->meta_json = json_dumps(meta, JSON_COMPACT);
            if (!doc->meta_json)
                return fail(msg, msg_len, SN__P_INTERNAL, "out of memory");
            size_t meta_len = strlen(doc->meta_json);
            if (meta_len > SN_MAX_META)
                return fail(msg, msg_len, SN__P_TOO_LARGE, "docs[%zu].meta "
                            "is %zu bytes as compact json (limit %u)", i,
                            meta_len, SN_MAX_META);
        }
    }
    return SN__P_OK;
}

/* "vector": a non-empty array of at most SN_MAX_DIM finite numbers, not
 * all zero (the daemon normalizes it). */
static sn__perr_t get_vector(sn__request_t *req, json_t *a, char *msg,
                             size_t msg_len)
{
    size_t n = json_array_size(a), i;
    double ss = 0;
    json_t *v;

    if (!json_is_array(a) || n == 0)
        return fail(msg, msg_len, SN__P_BAD_REQUEST,
                    "'vector' must be a non-empty array of numbers");
    if (n > SN_MAX_DIM)
        return fail(msg, msg_len, SN__P_TOO_MANY,
                    "'vector' has %zu numbers, at most %d", n, SN_MAX_DIM);
    if (!(req->vector = malloc(n * sizeof *req->vector)))
        return fail(msg, msg_len, SN__P_INTERNAL, "out of memory");
    json_array_foreach(a, i, v) {
        double x = json_number_value(v);
        if (!json_is_number(v) || !isfinite(x) || !isfinite((float)x))
            return fail(msg, msg_len, SN__P_BAD_REQUEST,
                        "vector[%zu] is not a finite float", i);
        req->vector[i] = (float)x;
        ss += x * x;
    }
    if (!(ss > 0) || !isfinite(ss))
        return fail(msg, msg_len, SN__P_BAD_REQUEST,
                    "'vector' has no direction (all zeros) or overflows");
    req->n_vector = (int)n;
    return SN__P_OK;
}

static sn__perr_t parse_search(sn__request_t *req, char *msg, size_t msg_len)
{
    sn__perr_t rc;
    json_t *vec = json_object_get(req->root, "vector");
    req->k = 10;
    if ((rc = get_collection(req, msg, msg_len)) ||
        (rc = get_prompt(req, msg, msg_len)) ||
        (rc = get_str(req->root, "query", !vec, 0, 0, SIZE_MAX, &req->query,
                      &req->query_len, msg, msg_len)) ||
        (rc = get_int(req->root, "k", 1, SN_MAX_K, SN__P_TOO_MANY, &req->k,
                      msg, msg_len)) ||
        (rc = get_int(req->root, "ef", 1, SN_MAX_EF, SN__P_BAD_REQUEST,
                      &req->ef, msg, msg_len)))
        return rc;
    json_t *mode = json_object_get(req->root, "mode");
    if (mode && !json_is_null(mode)) {
        int m = json_is_string(mode)
                    ? sn_search_mode_parse(json_string_value(mode))
                    : -1;
        if (m < 0)
            return fail(msg, msg_len, SN__P_BAD_REQUEST,
                        "'mode' must be \"hybrid\", \"vector\" or "
                        "\"lexical\"");
        req->mode = m;
    }
    json_t *group = json_object_get(req->root, "group");
    if (group && !json_is_null(group)) {
        const char *g = json_string_value(group);
        if (!g || (strcmp(g, "document") && strcmp(g, "chunk")))
            return fail(msg, msg_len, SN__P_BAD_REQUEST,
                        "'group' must be \"document\" or \"chunk\"");
        req->by_chunk = !strcmp(g, "chunk");
    }
    if (vec && req->mode == SN_SEARCH_LEXICAL)
        return fail(msg, msg_len, SN__P_BAD_REQUEST,
                    "lexical search needs 'query', not 'vector'");
    if (vec) {
        if (req->query)
            return fail(msg, msg_len, SN__P_BAD_REQUEST,
                        "give 'query' or 'vector', not both");
        if (req->has_prompt)
            return fail(msg, msg_len, SN__P_BAD_REQUEST,
                        "'prompt' applies to 'query', not to 'vector'");
        if ((rc = get_vector(req, vec, msg, msg_len)))
            return rc;
    }
    json_t *f = json_object_get(req->root, "filter");
    if (f && !json_is_null(f)) {
        const char *key;
        json_t *v;
        if (!json_is_object(f))
            return fail(msg, msg_len, SN__P_BAD_REQUEST,
                        "'filter' must be an object {key: value}");
        json_object_foreach(f, key, v) {
            if (json_is_object(v) || json_is_array(v))
                return fail(msg, msg_len, SN__P_BAD_REQUEST,
                            "filter values must be strings, numbers, "
                            "booleans or null");
        }
        if (json_object_size(f)) {
            req->filter_json = json_dumps(f, JSON_COMPACT | JSON_SORT_KEYS);
            if (!req->filter_json)
                return fail(msg, msg_len, SN__P_INTERNAL, "out of memory");
        }
    }
    return SN__P_OK;
}

static sn__perr_t parse_ids(sn__request_t *req, char *msg, size_t msg_len)
{
    sn__perr_t rc;
    if ((rc = get_collection(req, msg, msg_len)) ||
        (rc = get_str_array(req->root, "ids", 1, SN_MAX_ID, SN_MAX_IDS,
                            &req->ids, NULL, &req->n_ids, msg, msg_len)))
        return rc;
    return SN__P_OK;
}

/* ---- word senses ---------------------------------------------------------- */

/* A lemma or sense name: a non-empty string without control characters
 * (the library checks the rest: casefolding, UTF-8). */
static sn__perr_t get_name(json_t *obj, const char *key, int required,
                           size_t max, const char **out, char *msg,
                           size_t msg_len)
{
    sn__perr_t rc = get_str(obj, key, required, 1, 1, max, out, NULL, msg,
                            msg_len);
    if (rc)
        return rc;
    for (const unsigned char *p = (const unsigned char *)*out; p && *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return fail(msg, msg_len, SN__P_BAD_REQUEST,
                        "'%s' must not contain control characters", key);
    return SN__P_OK;
}

/* Prefix msg with where ("senses[3]: "), when it fits. */
static sn__perr_t prefixed(sn__perr_t rc, const char *where, char *msg,
                           size_t msg_len)
{
    size_t kl = strlen(where), ml = msg && msg_len ? strlen(msg) : 0;
    if (rc && *where && kl + ml + 1 <= msg_len) {
        memmove(msg + kl, msg, ml + 1);
        memcpy(msg, where, kl);
    }
    return rc;
}

/* One sense of a sense.add: {lemma, sense, gloss?, examples?} read from
 * obj, its exemplars appended to req->examples (sized by the caller).
 * i_sense -1: the request itself. */
static sn__perr_t parse_one_sense(sn__request_t *req, json_t *obj,
                                  int i_sense, char *msg, size_t msg_len)
{
    char where[48] = "";
    const char *lemma, *sense, *gloss;
    sn__perr_t rc;

    if (i_sense >= 0)
        snprintf(where, sizeof where, "senses[%d]: ", i_sense);
    if ((rc = get_name(obj, "lemma", 1, SN_WSD_MAX_WORD - 1, &lemma, msg,
                       msg_len)) ||
        (rc = get_name(obj, "sense", 1, SN_WSD_MAX_NAME, &sense, msg,
                       msg_len)) ||
        (rc = get_str(obj, "gloss", 0, 1, 1, SN_WSD_MAX_GLOSS, &gloss, NULL,
                      msg, msg_len)))
        return prefixed(rc, where, msg, msg_len);
    json_t *a = json_object_get(obj, "examples");
    if (a && !json_is_array(a))
        return fail(msg, msg_len, SN__P_BAD_REQUEST,
                    "%s'examples' must be an array", where);
    size_t count = json_array_size(a);
    if (count == 0 && !gloss)
        return fail(msg, msg_len, SN__P_BAD_REQUEST,
                    "%s%s: give at least one example, or a gloss", where,
                    a ? "'examples' is empty" : "missing 'examples'");
    if (count > (size_t)SN_WSD_MAX_BATCH - (size_t)req->n_examples)
        return fail(msg, msg_len, SN__P_TOO_MANY,
                    "more than %d examples in one request", SN_WSD_MAX_BATCH);
    if (count == 0) {
        /* known by its gloss alone: the gloss is its exemplar */
        int k = req->n_examples++;
        req->examples[k] = (sn_wsd_example_t){lemma, sense, gloss, NULL, 0,
                                              -1, -1};
        req->origin[k] = (sn__ex_origin_t){i_sense, -1};
        return SN__P_OK;
    }
    for (size_t i = 0; i < count; i++) {
        json_t *e = json_array_get(a, i), *t = e;
        int start = -1, end = -1;
        if (json_is_object(e)) {
            t = json_object_get(e, "text");
            if (!t)
                return fail(msg, msg_len, SN__P_BAD_REQUEST,
                            "%sexamples[%zu]: missing 'text'", where, i);
            if (!json_object_get(e, "start") != !json_object_get(e, "end"))
                return fail(msg, msg_len, SN__P_BAD_REQUEST,
                            "%sexamples[%zu]: give both 'start' and 'end', "
                            "or neither", where, i);
            char sub[96];
            snprintf(sub, sizeof sub, "%sexamples[%zu]: ", where, i);
            if ((rc = get_int(e, "start", 0, INT32_MAX - 1, SN__P_BAD_REQUEST,
                              &start, msg, msg_len)) ||
                (rc = get_int(e, "end", 1, INT32_MAX, SN__P_BAD_REQUEST, &end,
                              msg, msg_len)))
                return prefixed(rc, sub, msg, msg_len);
            if (start >= 0 && end <= start)
                return fail(msg, msg_len, SN__P_BAD_REQUEST,
                            "%sexamples[%zu]: 'end' must be greater than "
                            "'start'", where, i);
        }
        if (!json_is_string(t))
            return fail(msg, msg_len, SN__P_BAD_REQUEST,
                        "%sexamples[%zu] must be a string or {\"text\", "
                        "\"start\", \"end\"}", where, i);
        size_t len = json_string_length(t);
        if (len == 0)
            return fail(msg, msg_len, SN__P_BAD_REQUEST,
                        "%sexamples[%zu] is empty", where, i);
        if (len > SN_WSD_MAX_EXAMPLE)
            return fail(msg, msg_len, SN__P_TOO_LARGE,
                        "%sexamples[%zu] is longer than %d bytes", where, i,
                        SN_WSD_MAX_EXAMPLE);
        int k = req->n_examples++;
        req->examples[k] = (sn_wsd_example_t){lemma, sense, gloss,
                                              json_string_value(t), len,
                                              start, end};
        req->origin[k] = (sn__ex_origin_t){i_sense, (int)i};
    }
    return SN__P_OK;
}

/* Exemplars a sense object will add: its examples, or 1 for a sense given
 * by its gloss alone (and for a malformed one, which parse_one_sense
 * refuses). */
static size_t count_examples(json_t *obj)
{
    size_t n = json_array_size(json_object_get(obj, "examples"));
    return n ? n : 1;
}

static sn__perr_t parse_sense_add(sn__request_t *req, char *msg,
                                  size_t msg_len)
{
    json_t *senses = json_object_get(req->root, "senses");
    size_t total = 0, count = 1;

    if (senses) {
        if (json_object_get(req->root, "lemma") ||
            json_object_get(req->root, "examples"))
            return fail(msg, msg_len, SN__P_BAD_REQUEST,
                        "give 'senses', or 'lemma', 'sense' and "
                        "'examples', not both");
        if (!json_is_array(senses))
            return fail(msg, msg_len, SN__P_BAD_REQUEST,
                        "'senses' must be an array of objects");
        count = json_array_size(senses);
        if (count == 0)
            return fail(msg, msg_len, SN__P_BAD_REQUEST, "'senses' is empty");
        if (count > SN_MAX_SENSES)
            return fail(msg, msg_len, SN__P_TOO_MANY,
                        "'senses' has %zu entries; at most %d per request",
                        count, SN_MAX_SENSES);
        for (size_t i = 0; i < count; i++) {
            json_t *o = json_array_get(senses, i);
            if (!json_is_object(o))
                return fail(msg, msg_len, SN__P_BAD_REQUEST,
                            "senses[%zu] must be an object", i);
            total += count_examples(o);
        }
    } else {
        total = count_examples(req->root);
    }
    if (total > SN_WSD_MAX_BATCH)
        return fail(msg, msg_len, SN__P_TOO_MANY,
                    "%zu examples in one request; at most %d", total,
                    SN_WSD_MAX_BATCH);
    req->examples = calloc(total, sizeof *req->examples);
    req->origin = calloc(total, sizeof *req->origin);
    if (!req->examples || !req->origin)
        return fail(msg, msg_len, SN__P_INTERNAL, "out of memory");
    req->n_senses = (int)count;
    if (!senses)
        return parse_one_sense(req, req->root, -1, msg, msg_len);
    for (size_t i = 0; i < count; i++) {
        sn__perr_t rc = parse_one_sense(req, json_array_get(senses, i),
                                        (int)i, msg, msg_len);
        if (rc)
            return rc;
    }
    return SN__P_OK;
}

static sn__perr_t parse_sense_which(sn__request_t *req, char *msg,
                                    size_t msg_len)
{
    sn__perr_t rc;
    int start = -1, end = -1;
    json_t *js = json_object_get(req->root, "start");
    json_t *je = json_object_get(req->root, "end");
    if ((rc = get_str(req->root, "text", 1, 0, 0, SN_WSD_MAX_TEXT,
                      &req->query, &req->query_len, msg, msg_len)) ||
        (rc = get_name(req->root, "word", 0, SN_WSD_MAX_WORD - 1,
                       &req->word, msg, msg_len)) ||
        (rc = get_int(req->root, "start", 0, INT32_MAX - 1,
                      SN__P_BAD_REQUEST, &start, msg, msg_len)) ||
        (rc = get_int(req->root, "end", 1, INT32_MAX, SN__P_BAD_REQUEST, &end,
                      msg, msg_len)))
        return rc;
    if (!js != !je)
        return fail(msg, msg_len, SN__P_BAD_REQUEST,
                    "give both 'start' and 'end', or neither");
    if (!req->word && !js)
        return fail(msg, msg_len, SN__P_BAD_REQUEST,
                    "missing 'word' (or 'start' and 'end')");
    if (js && end <= start)
        return fail(msg, msg_len, SN__P_BAD_REQUEST,
                    "'end' must be greater than 'start'");
    req->start = start;
    req->end = end;
    return SN__P_OK;
}

static sn__perr_t parse_sense_list(sn__request_t *req, char *msg,
                                   size_t msg_len)
{
    sn__perr_t rc;
    req->limit = SN_LIST_DEFAULT;
    if ((rc = get_name(req->root, "lemma", 0, SN_WSD_MAX_WORD - 1,
                       &req->lemma, msg, msg_len)) ||
        (rc = get_int(req->root, "offset", 0, INT32_MAX, SN__P_BAD_REQUEST,
                      &req->offset, msg, msg_len)) ||
        (rc = get_int(req->root, "limit", 1, SN_MAX_LIST, SN__P_TOO_MANY,
                      &req->limit, msg, msg_len)) ||
        (rc = get_bool(req->root, "examples", &req->want_examples, msg,
                       msg_len)))
        return rc;
    return SN__P_OK;
}

static sn__perr_t parse_sense_remove(sn__request_t *req, char *msg,
                                     size_t msg_len)
{
    sn__perr_t rc;
    if ((rc = get_name(req->root, "lemma", 1, SN_WSD_MAX_WORD - 1,
                       &req->lemma, msg, msg_len)) ||
        (rc = get_name(req->root, "sense", 0, SN_WSD_MAX_NAME,
                       &req->sense, msg, msg_len)))
        return rc;
    return SN__P_OK;
}

/* check: "collection" (absent: every collection), "limit" (the damaged
 * chunks listed; all are counted). */
static sn__perr_t parse_check(sn__request_t *req, char *msg, size_t msg_len)
{
    sn__perr_t rc;
    req->limit = SN_CHECK_DEFAULT;
    if ((rc = get_str(req->root, "collection", 0, 1, 1, SN_MAX_NAME,
                      &req->collection, NULL, msg, msg_len)) ||
        (rc = get_int(req->root, "limit", 0, SN_MAX_CHECK, SN__P_TOO_MANY,
                      &req->limit, msg, msg_len)))
        return rc;
    return SN__P_OK;
}

static sn__perr_t parse_nothing(sn__request_t *req, char *msg,
                                size_t msg_len)
{
    (void)req, (void)msg, (void)msg_len;
    return SN__P_OK;
}

static sn__perr_t parse_tree(sn__request_t *req, char *msg, size_t msg_len);

sn__perr_t sn__proto_parse(const char *line, size_t len, sn__request_t *req,
                           char *msg, size_t msg_len)
{
    size_t bad = 0;
    json_error_t jerr;

    memset(req, 0, sizeof *req);
    if (msg && msg_len)
        msg[0] = '\0';
    if (!sn_utf8_valid(line, len, &bad))
        return fail(msg, msg_len, SN__P_BAD_UTF8,
                    "invalid utf-8 at byte %zu", bad);
    req->root = json_loadb(line, len,
                           JSON_DECODE_ANY | JSON_REJECT_DUPLICATES |
                               JSON_ALLOW_NUL,
                           &jerr);
    if (!req->root)
        return fail(msg, msg_len, SN__P_BAD_JSON, "bad json at byte %d: %s",
                    jerr.position, jerr.text);
    return parse_tree(req, msg, msg_len);
}

sn__perr_t sn__proto_parse_json(json_t *root, sn__request_t *req, char *msg,
                                size_t msg_len)
{
    memset(req, 0, sizeof *req);
    req->root = root;
    if (msg && msg_len)
        msg[0] = '\0';
    return parse_tree(req, msg, msg_len);
}

/* req->root to the request's fields. */
static sn__perr_t parse_tree(sn__request_t *req, char *msg, size_t msg_len)
{
    if (!json_is_object(req->root))
        return fail(msg, msg_len, SN__P_BAD_REQUEST,
                    "a request is a JSON object");
    json_t *id = json_object_get(req->root, "id");
    if (id) {
        req->id_json = json_dumps(id, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!req->id_json)
            return fail(msg, msg_len, SN__P_INTERNAL, "out of memory");
    }
    json_t *op = json_object_get(req->root, "op");
    if (!op)
        return fail(msg, msg_len, SN__P_BAD_REQUEST, "missing 'op'");
    if (!json_is_string(op))
        return fail(msg, msg_len, SN__P_BAD_REQUEST, "'op' must be a string");
    const char *name = json_string_value(op);
    if (strlen(name) != json_string_length(op))
        return fail(msg, msg_len, SN__P_UNKNOWN_OP, "unknown op");
    int i_op = sn_op_find(name, strlen(name));
    if (i_op < 0)
        return fail(msg, msg_len, SN__P_UNKNOWN_OP, "unknown op '%.64s'",
                    name);
    req->op = (sn_op_t)i_op;
    req->has_op = 1;
    switch (req->op) {
#define SN__OP_PARSE(id, name, parse, route, run)                            \
    case SN_OP_##id:                                                         \
        return parse(req, msg, msg_len);
        SN_OPS(SN__OP_PARSE)
#undef SN__OP_PARSE
    case SN_OP_COUNT:
        break;
    }
    return fail(msg, msg_len, SN__P_UNKNOWN_OP, "unknown op");
}

void sn__request_free(sn__request_t *req)
{
    if (!req)
        return;
    for (int i = 0; req->docs && i < req->n_docs; i++)
        free(req->docs[i].meta_json);
    free(req->docs);
    free(req->texts);
    free(req->lens);
    free(req->ids);
    free(req->examples);
    free(req->origin);
    free(req->filter_json);
    free(req->vector);
    free(req->id_json);
    json_decref(req->root);
    memset(req, 0, sizeof *req);
}

/* ---- replies ---------------------------------------------------------------- */

void sn__proto_reply_begin(sn__buf_t *b, const char *id_json)
{
    sn__buf_puts(b, "{\"id\":");
    sn__buf_puts(b, id_json ? id_json : "null");
    sn__buf_puts(b, ",\"ok\":true");
}

void sn__proto_reply_end(sn__buf_t *b) { sn__buf_put(b, "}\n", 2); }

void sn__proto_reply_error(sn__buf_t *b, const char *id_json,
                           sn__perr_t code, const char *msg)
{
    sn__buf_puts(b, "{\"id\":");
    sn__buf_puts(b, id_json ? id_json : "null");
    sn__buf_puts(b, ",\"ok\":false,\"error\":{\"code\":\"");
    sn__buf_puts(b, sn__perr_name(code));
    sn__buf_puts(b, "\",\"message\":");
    sn__buf_json_str(b, msg ? msg : "", msg ? strlen(msg) : 0);
    sn__buf_puts(b, "}}\n");
}
