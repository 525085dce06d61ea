/*
 * words.c -- the parts of a word, for the lexical index: "BigCache" is
 * also "big" and "cache", "pkcs11" also "pkcs" and "11", "logutils" also
 * "log" and "utils", "dataformat" also "data" and "format".
 *
 * Software text names things by gluing words together, and its readers
 * search with the words apart (or the other way round): the Debian
 * descriptions of ../shared/ir say "BigCache", "Data::Dumper::Compact",
 * "PKCS#11", "logutils", and their one-line summaries "cache", "data
 * formatter", "pkcs11", "logging utilities". unicode61 keeps each glued
 * word whole, so neither side finds the other. Measured on debian-dev
 * (bench/README.md): with the parts indexed beside their words, hybrid
 * search's Recall@10 0.890 -> 0.902 (both halves +0.012) and MRR@10 0.774
 * -> 0.776 (bench_ir); in ir_tune.py, camel case and digits alone gave
 * 0.896-0.898, and splitting by the corpus's own word counts 0.902 too,
 * but that would make a document's tokens depend on what else was stored
 * before it. korean-dev moves by 0.002.
 *
 * A word's parts (sn__words_split), from its code points as written:
 *   - where its letters change case from lower to upper ("bigCache"),
 *     where a run of capitals ends in a capitalised word ("XMLParser":
 *     "XML", "Parser"), and where letters meet digits ("x11", "3D");
 *   - an ASCII word of six letters or more that is not a word of the word
 *     list (nor an inflection of one: "generating" is "generate" + "-ing",
 *     not "gene" + "rating") cut in two words of the list, three letters or
 *     more each, the cut that leaves the shorter half longest ("dataformat":
 *     "data" + "format"). A word ending in -s or -es counts as its stem.
 * The word list is WordNet's (every one-word lemma and inflected form of
 * its index and exception files: 82,302 words from Debian's wordnet-base):
 * the same files, the same parts, whatever the database holds. Without
 * WordNet only the first kind of parts is made.
 *
 * The FTS5 tokenizer 'sense_words' wraps another ("sense_words porter
 * unicode61 remove_diacritics 2": schema.c, version 4): each document
 * token is passed on as the wrapped tokenizer makes it, followed by its
 * parts, each through the same wrapped tokenizer (stemmed), as tokens at
 * the same position (FTS5_TOKEN_COLOCATED: a part neither lengthens the
 * document nor shifts its positions). Queries are tokenized as the wrapped
 * tokenizer does: lexical.c adds a query word's parts itself, weighed as
 * synonyms.
 *
 * Which list made a database's index is recorded (sn__words_stamp, in
 * store_info 'lex_words'); store.c rebuilds the index when the list it
 * would use now differs.
 *
 * Workload: every token of every document stored (one pass over its code
 * points; a few hash lookups for a long ASCII word), every word of a
 * query. The word list is read once a process (~25 ms), at the first
 * tokenizer made, and never changes after.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "embed_int.h"
#include "store_int.h"
#include "tokenizer_int.h"
#include "sense/wordnet.h"

/* ---- the word list ------------------------------------------------------- */

/* The words, in the tokenizers' vocabulary hash (their ids unused); built
 * once, read-only after. */
static struct {
    sn__vocab_t set;
    char stamp[96];
} g_words;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static const char *g_dir = SN_WORDNET_DIR;

static int has(const char *s, size_t n)
{
    return sn__vocab_find(&g_words.set, s, n) >= 0;
}

typedef struct {
    const char *s;
    size_t n;
} word_t;

/* The first field of each line of buf that is an ASCII lower-case word
 * (WordNet's index files: the lemma; exception files: the inflected form),
 * appended to *w; lines starting with a space (the licence) and multi-word
 * lemmas ("file_system") are left out. *h hashes each word and its NUL,
 * in file order. */
static int list_words(const char *buf, size_t len, word_t **w, size_t *n,
                      size_t *cap, uint64_t *h)
{
    for (size_t i = 0; i < len;) {
        size_t k = 0;
        const char *eol = memchr(buf + i, '\n', len - i);
        size_t end = eol ? (size_t)(eol - buf) : len;
        while (buf[i] != ' ' && i + k < end && buf[i + k] >= 'a' &&
               buf[i + k] <= 'z')
            k++;
        if (k && (i + k == end || buf[i + k] == ' ')) {
            if (*n == *cap) {
                size_t c = *cap ? *cap * 2 : 1 << 17;
                word_t *nw = realloc(*w, c * sizeof *nw);
                if (!nw)
                    return -ENOMEM;
                *w = nw;
                *cap = c;
            }
            (*w)[(*n)++] = (word_t){buf + i, k};
            *h = sn__fnv1a64(sn__fnv1a64(*h, buf + i, k), "", 1);
        }
        i = end + 1;
    }
    return 0;
}

static void load(void)
{
    static const char *files[] = {"index.noun", "index.verb", "index.adj",
                                  "index.adv",  "noun.exc",   "verb.exc",
                                  "adj.exc",    "adv.exc"};
    enum { N_FILES = sizeof files / sizeof *files };
    char *buf[N_FILES] = {0}, path[4096];
    size_t len[N_FILES], n = 0, cap = 0;
    word_t *w = NULL;
    uint64_t h = SN__FNV64_BASIS;
    int rc = 0;

    snprintf(g_words.stamp, sizeof g_words.stamp,
             "sense_words 1: no word list");
    /* all or none: a part of the list is another list */
    for (int i = 0; i < N_FILES && rc == 0; i++)
        if ((rc = sn__path_join(path, sizeof path, g_dir, files[i])) == 0 &&
            (rc = sn__read_file(path, SN_WORDNET_MAX_FILE, &buf[i], &len[i],
                                NULL, 0)) == 0)
            rc = list_words(buf[i], len[i], &w, &n, &cap, &h);
    if (rc == 0 && n) {
        rc = sn__vocab_init(&g_words.set, (int)n);
        for (size_t i = 0; rc == 0 && i < n; i++)
            rc = sn__vocab_set(&g_words.set, (int32_t)i, w[i].s, w[i].n);
        if (rc == 0)
            rc = sn__vocab_build_set(&g_words.set); /* a word in two lists */
        if (rc > 0)
            snprintf(g_words.stamp, sizeof g_words.stamp,
                     "sense_words 1: %d words, fnv %016llx", rc,
                     (unsigned long long)h);
        else
            sn__vocab_free(&g_words.set); /* out of memory: no list */
    }
    free(w);
    for (int i = 0; i < N_FILES; i++)
        free(buf[i]);
}

void sn__words_use_dir(const char *dir)
{
    g_dir = dir;
}

const char *sn__words_stamp(void)
{
    pthread_once(&g_once, load);
    return g_words.stamp;
}

/* ---- a word's parts --------------------------------------------------------- */

/* A word of the list, or a plural of one ("utils": no; "maps": "map"). */
static int word_ok(const char *s, size_t n)
{
    return has(s, n) || (n > 1 && s[n - 1] == 's' && has(s, n - 1)) ||
           (n > 2 && s[n - 1] == 's' && s[n - 2] == 'e' && has(s, n - 2));
}

/* word_ok, or an inflection of a word of the list: -ing, -ed, -er(s),
 * -ly, -able, -ness after the word, the word less its final e, or its
 * final consonant doubled ("generating", "logged", "clickable"). */
static int whole_ok(const char *s, size_t n)
{
    static const char *suf[] = {"ing", "ed", "er", "ers", "ly", "able",
                                "ness"};
    char b[SN__WORDS_MAX_CP + 2];

    if (word_ok(s, n))
        return 1;
    for (size_t i = 0; i < sizeof suf / sizeof *suf; i++) {
        size_t k = strlen(suf[i]), m = n - k;
        if (n < k + 3 || memcmp(s + m, suf[i], k))
            continue;
        memcpy(b, s, m);
        b[m] = 'e';
        if (has(b, m) || has(b, m + 1) ||
            (m > 3 && b[m - 1] == b[m - 2] && has(b, m - 1)))
            return 1;
    }
    return 0;
}

enum { C_OTHER, C_UPPER, C_LOWER, C_DIGIT, C_MARK };

static int cls(utf8proc_int32_t c)
{
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LT:
        return C_UPPER;
    case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
        return C_LOWER; /* letters without case join lower-case runs */
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        return C_DIGIT;
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
        return C_MARK; /* belongs to the letter before it */
    default:
        return C_OTHER;
    }
}

/* Add [s, s+len) to parts unless a part with the same code points
 * (case-folded ASCII; others as written) is there, or it is the whole. */
static int add_part(const utf8proc_int32_t *cp, int n, int s, int len,
                    sn__span_t *parts, int k, int max)
{
    if (len <= 0 || len == n || k >= max)
        return k;
    for (int j = 0; j < k; j++) {
        int eq = parts[j].len == len;
        for (int i = 0; eq && i < len; i++) {
            utf8proc_int32_t a = cp[parts[j].start + i], b = cp[s + i];
            eq = (a < 128 ? tolower(a) : a) == (b < 128 ? tolower(b) : b);
        }
        if (eq)
            return k;
    }
    parts[k].start = s;
    parts[k].len = len;
    return k + 1;
}

int sn__words_split(const utf8proc_int32_t *cp, int n, sn__span_t *parts,
                    int max)
{
    int k = 0, start = 0, segs = 0;
    sn__span_t seg[SN__WORDS_MAX_CP];
    char low[SN__WORDS_MAX_CP + 1];
    int ascii = 1;

    if (n < 2 || n > SN__WORDS_MAX_CP)
        return 0;
    pthread_once(&g_once, load);
    /* camel case and digits */
    for (int i = 1; i <= n; i++) {
        int cut = i == n;
        if (!cut) {
            int a = cls(cp[i - 1]), b = cls(cp[i]);
            for (int j = i - 1; a == C_MARK && j > 0; j--)
                a = cls(cp[j - 1]);
            if (b == C_MARK)
                continue;
            cut = (a == C_DIGIT) != (b == C_DIGIT) ||
                  (a == C_LOWER && b == C_UPPER) ||
                  (a == C_UPPER && b == C_UPPER && i + 1 < n &&
                   cls(cp[i + 1]) == C_LOWER);
        }
        if (cut) {
            seg[segs].start = start;
            seg[segs++].len = i - start;
            start = i;
        }
    }
    if (segs > 1)
        for (int i = 0; i < segs; i++)
            k = add_part(cp, n, seg[i].start, seg[i].len, parts, k, max);
    /* a compound of two listed words */
    for (int i = 0; i < n; i++) {
        if (cp[i] >= 128 || !isalpha((int)cp[i])) {
            ascii = 0;
            break;
        }
        low[i] = (char)tolower((int)cp[i]);
    }
    if (ascii && g_words.set.n_slots && n >= 2 * SN__WORDS_MIN_PART &&
        !whole_ok(low, (size_t)n)) {
        int best = 0, at = 0;
        for (int i = SN__WORDS_MIN_PART; i <= n - SN__WORDS_MIN_PART; i++) {
            int shorter = i < n - i ? i : n - i;
            if (shorter > best && word_ok(low, (size_t)i) &&
                word_ok(low + i, (size_t)(n - i))) {
                best = shorter;
                at = i;
            }
        }
        if (best) {
            k = add_part(cp, n, 0, at, parts, k, max);
            k = add_part(cp, n, at, n - at, parts, k, max);
        }
    }
    return k >= 2 ? k : 0;
}

/* ---- the tokenizer ------------------------------------------------------------ */

typedef struct {
    fts5_tokenizer base; /* the wrapped tokenizer's functions */
    Fts5Tokenizer *main; /* for the text */
    Fts5Tokenizer *part; /* for parts, from inside main's callback */
} wrap_t;

typedef struct {
    wrap_t *w;
    void *ctx;
    int (*token)(void *, int, const char *, int, int, int);
    const char *text;
    int len;
    /* the token being split, and the stems emitted for it */
    const char *tok;
    int tok_len, start, end;
    char seen[SN__WORDS_MAX_PARTS][SN__WORDS_MAX_CP * 4 + 1];
    int n_seen;
} call_t;

static void wrap_delete(Fts5Tokenizer *t)
{
    wrap_t *w = (wrap_t *)t;
    if (!w)
        return;
    if (w->main)
        w->base.xDelete(w->main);
    if (w->part)
        w->base.xDelete(w->part);
    sqlite3_free(w);
}

/* args: the wrapped tokenizer's name and its own arguments. */
static int wrap_create(void *ud, const char **arg, int n_arg,
                       Fts5Tokenizer **out)
{
    fts5_api *api = ud;
    void *tud = NULL;
    wrap_t *w;
    int rc;

    *out = NULL;
    if (n_arg < 1)
        return SQLITE_ERROR;
    if (!(w = sqlite3_malloc(sizeof *w)))
        return SQLITE_NOMEM;
    memset(w, 0, sizeof *w);
    pthread_once(&g_once, load);
    rc = api->xFindTokenizer(api, arg[0], &tud, &w->base);
    if (rc == SQLITE_OK)
        rc = w->base.xCreate(tud, arg + 1, n_arg - 1, &w->main);
    if (rc == SQLITE_OK)
        rc = w->base.xCreate(tud, arg + 1, n_arg - 1, &w->part);
    if (rc != SQLITE_OK) {
        wrap_delete((Fts5Tokenizer *)w);
        return rc;
    }
    *out = (Fts5Tokenizer *)w;
    return SQLITE_OK;
}

/* A part's stem: passed on at its word's position, once per word, and
 * not when it is the word's own token. */
static int on_part(void *ud, int flags, const char *tok, int len, int s,
                   int e)
{
    call_t *c = ud;
    (void)flags, (void)s, (void)e;
    if (len <= 0 || len > SN__WORDS_MAX_CP * 4 ||
        (len == c->tok_len && !memcmp(tok, c->tok, (size_t)len)))
        return SQLITE_OK;
    for (int i = 0; i < c->n_seen; i++)
        if ((int)strlen(c->seen[i]) == len &&
            !memcmp(c->seen[i], tok, (size_t)len))
            return SQLITE_OK;
    if (c->n_seen < SN__WORDS_MAX_PARTS) {
        memcpy(c->seen[c->n_seen], tok, (size_t)len);
        c->seen[c->n_seen++][len] = '\0';
    }
    return c->token(c->ctx, FTS5_TOKEN_COLOCATED, tok, len, c->start, c->end);
}

static int on_token(void *ud, int flags, const char *tok, int len, int s,
                    int e)
{
    call_t *c = ud;
    utf8proc_int32_t cp[SN__WORDS_MAX_CP];
    int off[SN__WORDS_MAX_CP + 1], n = 0, rc, k;
    sn__span_t parts[SN__WORDS_MAX_PARTS];

    if ((rc = c->token(c->ctx, flags, tok, len, s, e)) != SQLITE_OK ||
        (flags & FTS5_TOKEN_COLOCATED) || s < 0 || e > c->len)
        return rc;
    for (int i = s; i < e; n++) {
        utf8proc_ssize_t m;
        if (n == SN__WORDS_MAX_CP)
            return SQLITE_OK; /* too long to be glued words */
        m = utf8proc_iterate((const utf8proc_uint8_t *)c->text + i, e - i,
                             &cp[n]);
        if (m <= 0)
            return SQLITE_OK; /* not UTF-8: the token alone */
        off[n] = i;
        i += (int)m;
    }
    if (!(k = sn__words_split(cp, n, parts, SN__WORDS_MAX_PARTS)))
        return SQLITE_OK;
    off[n] = e;
    c->tok = tok;
    c->tok_len = len;
    c->start = s;
    c->end = e;
    c->n_seen = 0;
    for (int i = 0; i < k; i++) {
        int a = off[parts[i].start], b = off[parts[i].start + parts[i].len];
        if ((rc = c->w->base.xTokenize(c->w->part, c, FTS5_TOKENIZE_DOCUMENT,
                                       c->text + a, b - a, on_part)) !=
            SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

static int wrap_tokenize(Fts5Tokenizer *t, void *ctx, int flags,
                         const char *text, int len,
                         int (*token)(void *, int, const char *, int, int,
                                      int))
{
    wrap_t *w = (wrap_t *)t;
    call_t *c;
    int rc;

    /* queries (lexical.c adds their parts) and snippets: as wrapped */
    if (!(flags & FTS5_TOKENIZE_DOCUMENT))
        return w->base.xTokenize(w->main, ctx, flags, text, len, token);
    if (!(c = sqlite3_malloc(sizeof *c)))
        return SQLITE_NOMEM;
    c->w = w;
    c->ctx = ctx;
    c->token = token;
    c->text = text;
    c->len = len;
    c->n_seen = 0;
    rc = w->base.xTokenize(w->main, c, flags, text, len, on_token);
    sqlite3_free(c);
    return rc;
}

int sn__words_register(fts5_api *api)
{
    static fts5_tokenizer tok = {wrap_create, wrap_delete, wrap_tokenize};
    return api->xCreateTokenizer(api, "sense_words", api, &tok, NULL);
}
