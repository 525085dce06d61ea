/*
 * tokbuf.c -- the small containers the tokenizers share: the vocabulary
 * (pieces by id plus an open-addressing hash from piece to id), normalized
 * text with per-code-point alignments, and token lists.
 *
 * The hash uses FNV-1a and linear probing at a load factor <= 1/2; it is
 * built once at load and read-only afterwards, so lookups need no locking.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_int.h"

static uint32_t fnv1a(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

int sn__vocab_init(sn__vocab_t *v, int n_pieces)
{
    memset(v, 0, sizeof *v);
    if (n_pieces <= 0 || n_pieces > (1 << 24))
        return SN_EMODEL;
    v->pieces = calloc((size_t)n_pieces, sizeof *v->pieces);
    if (!v->pieces)
        return -ENOMEM;
    v->n_pieces = n_pieces;
    return 0;
}

int sn__vocab_set(sn__vocab_t *v, int32_t id, const char *s, size_t len)
{
    if (id < 0 || id >= v->n_pieces)
        return SN_ECORRUPT;
    char *p = malloc(len + 1);
    if (!p)
        return -ENOMEM;
    memcpy(p, s, len);
    p[len] = '\0';
    free(v->pieces[id]);
    v->pieces[id] = p;
    return 0;
}

/* The number of distinct pieces, or an error. */
static int build(sn__vocab_t *v, int repeats)
{
    uint32_t n = 16;
    int distinct = 0;
    while (n < 2u * (uint32_t)v->n_pieces)
        n <<= 1;
    free(v->slots);
    v->slots = malloc(n * sizeof *v->slots);
    if (!v->slots)
        return -ENOMEM;
    memset(v->slots, 0xff, n * sizeof *v->slots);
    v->n_slots = n;
    for (int32_t id = 0; id < v->n_pieces; id++) {
        const char *s = v->pieces[id];
        if (!s)
            return SN_ECORRUPT; /* a hole in the ids */
        size_t len = strlen(s);
        uint32_t i = fnv1a(s, len) & (n - 1);
        while (v->slots[i] >= 0) {
            if (strcmp(v->pieces[v->slots[i]], s) == 0) {
                if (!repeats)
                    return SN_ECORRUPT; /* duplicate piece */
                break; /* the first id keeps it */
            }
            i = (i + 1) & (n - 1);
        }
        if (v->slots[i] < 0) {
            v->slots[i] = id;
            distinct++;
        }
    }
    return distinct;
}

int sn__vocab_build(sn__vocab_t *v)
{
    int rc = build(v, 0);
    return rc < 0 ? rc : 0;
}

int sn__vocab_build_set(sn__vocab_t *v)
{
    return build(v, 1);
}

int32_t sn__vocab_find(const sn__vocab_t *v, const char *s, size_t len)
{
    if (!v->n_slots)
        return -1;
    uint32_t i = fnv1a(s, len) & (v->n_slots - 1);
    for (;;) {
        int32_t id = v->slots[i];
        if (id < 0)
            return -1;
        /* s may hold NUL bytes: compare lengths first, then bytes */
        const char *p = v->pieces[id];
        if (strnlen(p, len + 1) == len && memcmp(p, s, len) == 0)
            return id;
        i = (i + 1) & (v->n_slots - 1);
    }
}

void sn__vocab_free(sn__vocab_t *v)
{
    if (v->pieces)
        for (int i = 0; i < v->n_pieces; i++)
            free(v->pieces[i]);
    free(v->pieces);
    free(v->scores);
    free(v->slots);
    memset(v, 0, sizeof *v);
}

int sn__ntext_reserve(sn__ntext_t *t, int n)
{
    if (n <= t->cap)
        return 0;
    int cap = t->cap ? t->cap : 64;
    while (cap < n)
        cap *= 2;
    uint32_t *cp = realloc(t->cp, (size_t)cap * sizeof *cp);
    if (!cp)
        return -ENOMEM;
    t->cp = cp;
    int32_t *s = realloc(t->start, (size_t)cap * sizeof *s);
    if (!s)
        return -ENOMEM;
    t->start = s;
    int32_t *e = realloc(t->end, (size_t)cap * sizeof *e);
    if (!e)
        return -ENOMEM;
    t->end = e;
    t->cap = cap;
    return 0;
}

int sn__ntext_push(sn__ntext_t *t, uint32_t cp, int32_t start, int32_t end)
{
    if (t->n == t->cap) {
        int rc = sn__ntext_reserve(t, t->n + 1);
        if (rc)
            return rc;
    }
    t->cp[t->n] = cp;
    t->start[t->n] = start;
    t->end[t->n] = end;
    t->n++;
    return 0;
}

void sn__ntext_free(sn__ntext_t *t)
{
    free(t->cp);
    free(t->start);
    free(t->end);
    memset(t, 0, sizeof *t);
}

int sn__toks_push(sn__toks_t *t, int32_t id, int32_t start, int32_t end)
{
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 64;
        sn__tok_t *v = realloc(t->v, (size_t)cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n].id = id;
    t->v[t->n].start = start;
    t->v[t->n].end = end;
    t->v[t->n].added = 0;
    t->n++;
    return 0;
}

void sn__toks_free(sn__toks_t *t)
{
    free(t->v);
    memset(t, 0, sizeof *t);
}

int sn__is_white_space(uint32_t c)
{
    if (c < 0x80)
        return c == ' ' || (c >= 0x09 && c <= 0x0d);
    return c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}
