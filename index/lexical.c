/*
 * lexical.c -- the lexical half of search: turning a query text into FTS5
 * MATCH expressions, and the ranking function that scores a match.
 *
 * The index itself is two FTS5 tables kept by triggers on documents
 * (schema.c, versions 3 and 4): documents_fts ('sense_words porter
 * unicode61': words, English stemming, and the parts of glued words,
 * words.c) and documents_tri ('trigram': every three code points). A query
 * is matched against both with its terms OR-ed -- a document needs only
 * one of the query's words (or trigrams) to be a candidate -- and
 * sense_rank() scores each candidate.
 *
 * sense_rank(table, k1, b) is BM25 (k1, b: per table, SN__BM25_* in
 * store_int.h, with how they were chosen) divided
 * by the query's "ideal" score: the sum of its terms' idf, what a document
 * of average length holding each term once would get. The quotient says
 * how much of the query the document covers, weighted by rarity, in units
 * that do not depend on the query's length or on the table: about 1 for a
 * document that holds every word, near 0 for one that shares only common
 * words, 0 for none. That is what lets store.c add it to a cosine, and what
 * makes a lexical list that matched only "the" and "for" weigh little
 * (FTS5's own bm25() grows with the number and rarity of the query's terms
 * and has no such scale). A term that no document holds still counts in the
 * ideal: the list "knows" less of that query.
 *
 * Synonyms (sense/wordnet.h sn_wordnet_syn_t, when the store has them):
 * the words of each query word's WordNet synonyms join the query's words
 * as further OR-ed terms, after them. sense_rank counts a synonym's word
 * at SN__LEX_SYN_WEIGHT (store_int.h: why, measured on what) and leaves it
 * out of the ideal score (a synonym can add to a document's score, never
 * dilute the query's), and counts a token once: a synonym's word that
 * stems like a query word ("interface" for "interfaces") matches the same
 * tokens and adds nothing. The misses this is for are words the document
 * does not use: "GUI" for "graphical user interface".
 *
 * Parts (words.c): the parts of each query word that has them ("dataformat":
 * "data", "format") join the query between its own words and the
 * synonyms, weighed as synonyms and out of the ideal score, but counted
 * as the query's own words are: a document's token counts for every part
 * that matches it. The other way round needs nothing here: the index
 * holds a document's glued words' parts, so a query word finds them.
 *
 * Pure functions of their input apart from the FTS5 calls; no I/O.
 * Workload: one query at a time, a few to a few hundred terms, the ranking
 * function called once per matching document.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "embed_int.h"
#include "store_int.h"

/* ---- the ranking function ------------------------------------------------ */

typedef struct {
    int n_phrase;
    int n_own;     /* the query's own words; phrases past them: their */
    int n_parts;   /* parts (words.c), then the synonyms */
    double avgdl;
    double ideal;
    double idf[];
} rank_aux_t;

/* Counting one phrase's rows: all of them, or those of one collection. */
typedef struct {
    const sn__lex_stats_t *in;
    sqlite3_int64 n;
} count_t;

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int count_row(const Fts5ExtensionApi *api, Fts5Context *fts,
                     void *ud)
{
    count_t *c = ud;
    if (c->in) {
        int64_t id = api->xRowid(fts);
        if (!c->in->n || !bsearch(&id, c->in->ids, (size_t)c->in->n,
                                  sizeof id, cmp_i64))
            return SQLITE_OK;
    }
    c->n++;
    return SQLITE_OK;
}

/* The number of rows holding phrase i: of the table, or (in not NULL)
 * of in's collection. */
static int phrase_df(const Fts5ExtensionApi *api, Fts5Context *fts, int i,
                     const sn__lex_stats_t *in, sqlite3_int64 *df)
{
    count_t c = {in, 0};
    int rc = api->xQueryPhrase(fts, i, &c, count_row);
    *df = c.n;
    return rc;
}

/* Per query (the first row): idf of each phrase and the ideal score, over
 * the table, or over the collection of `in` (tokens: its summed lengths
 * in this table) when the table holds other collections too. */
static int rank_aux(const Fts5ExtensionApi *api, Fts5Context *fts,
                    const sn__lex_stats_t *in, double tokens, int n_own,
                    int n_parts, rank_aux_t **out)
{
    int n = api->xPhraseCount(fts), rc;
    sqlite3_int64 n_rows = 0, n_tokens = 0;
    rank_aux_t *a;

    *out = NULL;
    if (n < 0 || n > SN__LEX_MAX_TERMS)
        return SQLITE_RANGE;
    a = sqlite3_malloc64(sizeof *a + (size_t)n * sizeof a->idf[0]);
    if (!a)
        return SQLITE_NOMEM;
    a->n_phrase = n;
    a->n_own = n_own > 0 && n_own < n ? n_own : n;
    a->n_parts = n_parts > 0 && n_parts <= n - a->n_own ? n_parts : 0;
    a->ideal = 0;
    if ((rc = api->xRowCount(fts, &n_rows)) != SQLITE_OK ||
        (rc = api->xColumnTotalSize(fts, -1, &n_tokens)) != SQLITE_OK) {
        sqlite3_free(a);
        return rc;
    }
    if (in && in->n < n_rows) {
        n_rows = in->n;
        n_tokens = (sqlite3_int64)tokens;
    } else {
        in = NULL; /* the table is the collection: its own counts */
    }
    a->avgdl = n_rows > 0 && n_tokens > 0 ? (double)n_tokens / n_rows : 1;
    for (int i = 0; i < n; i++) {
        sqlite3_int64 hits = 0;
        if ((rc = phrase_df(api, fts, i, in, &hits)) != SQLITE_OK) {
            sqlite3_free(a);
            return rc;
        }
        a->idf[i] = log(1.0 + ((double)n_rows - hits + 0.5) / (hits + 0.5));
        if (a->idf[i] < 1e-6)
            a->idf[i] = 1e-6;
        if (i < a->n_own) /* a synonym adds, never dilutes */
            a->ideal += a->idf[i];
    }
    if ((rc = api->xSetAuxdata(fts, a, sqlite3_free)) != SQLITE_OK)
        return rc; /* xSetAuxdata freed it */
    *out = a;
    return SQLITE_OK;
}

static void rank_fn(const Fts5ExtensionApi *api, Fts5Context *fts,
                    sqlite3_context *ctx, int n_val, sqlite3_value **val)
{
    double k1 = SN__BM25_WORD_K1, b = SN__BM25_WORD_B;
    int tf[SN__LEX_MAX_TERMS];
    rank_aux_t *a = api->xGetAuxdata(fts, 0);
    int n_inst = 0, dl = 0, rc, n_own = 0, n_parts = 0;
    double score = 0, norm;

    const sn__lex_stats_t *in = NULL;
    double tokens = 0;

    /* sense_rank(table, k1, b[, stats, tokens[, n_own[, n_parts]]]) */
    if (n_val >= 2) {
        k1 = sqlite3_value_double(val[0]);
        b = sqlite3_value_double(val[1]);
        if (!(k1 >= 0 && k1 <= 100 && b >= 0 && b <= 1)) {
            sqlite3_result_error(ctx, "sense_rank: k1 or b out of range",
                                 -1);
            return;
        }
    }
    if (n_val >= 4) {
        in = sqlite3_value_pointer(val[2], "sn__lex_stats_t");
        tokens = sqlite3_value_double(val[3]);
    }
    if (n_val >= 5)
        n_own = sqlite3_value_int(val[4]);
    if (n_val >= 6)
        n_parts = sqlite3_value_int(val[5]);
    if (!a && (rc = rank_aux(api, fts, in, tokens, n_own, n_parts, &a)) !=
                  SQLITE_OK) {
        sqlite3_result_error_code(ctx, rc);
        return;
    }
    memset(tf, 0, (size_t)a->n_phrase * sizeof tf[0]);
    if ((rc = api->xInstCount(fts, &n_inst)) != SQLITE_OK ||
        (rc = api->xColumnSize(fts, -1, &dl)) != SQLITE_OK) {
        sqlite3_result_error_code(ctx, rc);
        return;
    }
    /* Instances come in position order. A token counts for each of the
     * query's own words and each of their parts that match it (a glued
     * word matched whole and by its parts, "DataFormat" for "dataformat",
     * counts more than its parts apart: measured, bench/README.md), and
     * for synonyms once: when none of those match it, for the first
     * synonym that does (a synonym that stems like a query word,
     * "editors" beside "editor", matches the same tokens and adds
     * nothing). */
    for (int i = 0, j; i < n_inst; i = j) {
        int phrase, col, off, p2, c2, o2, own = 0, syn = -1;
        if ((rc = api->xInst(fts, i, &phrase, &col, &off)) != SQLITE_OK) {
            sqlite3_result_error_code(ctx, rc);
            return;
        }
        for (j = i; j < n_inst; j++) {
            if ((rc = api->xInst(fts, j, &p2, &c2, &o2)) != SQLITE_OK) {
                sqlite3_result_error_code(ctx, rc);
                return;
            }
            if (c2 != col || o2 != off)
                break;
            if (p2 < 0 || p2 >= a->n_phrase)
                continue;
            if (p2 < a->n_own + a->n_parts) {
                tf[p2]++;
                own = 1;
            } else if (syn < 0 || p2 < syn) {
                syn = p2;
            }
        }
        if (!own && syn >= 0)
            tf[syn]++;
    }
    norm = k1 * (1 - b + b * dl / a->avgdl);
    for (int i = 0; i < a->n_phrase; i++)
        if (tf[i])
            score += (i < a->n_own ? 1.0 : SN__LEX_SYN_WEIGHT) * a->idf[i] *
                     tf[i] * (k1 + 1) / (tf[i] + norm);
    sqlite3_result_double(ctx, a->ideal > 0 ? score / a->ideal : 0);
}

/* sense_df(table, stats): the number of the collection's rows holding
 * each phrase of the MATCH, as int64s in a blob (on any row: the same). */
static void df_fn(const Fts5ExtensionApi *api, Fts5Context *fts,
                  sqlite3_context *ctx, int n_val, sqlite3_value **val)
{
    const sn__lex_stats_t *in;
    int n = api->xPhraseCount(fts), rc;
    int64_t *df;

    if (n_val < 1 || !(in = sqlite3_value_pointer(val[0],
                                                   "sn__lex_stats_t"))) {
        sqlite3_result_error(ctx, "sense_df: no collection", -1);
        return;
    }
    if (n <= 0 || n > SN__LEX_MAX_TERMS) {
        sqlite3_result_error_code(ctx, SQLITE_RANGE);
        return;
    }
    if (!(df = sqlite3_malloc64((size_t)n * sizeof *df))) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    for (int i = 0; i < n; i++) {
        sqlite3_int64 hits = 0;
        if ((rc = phrase_df(api, fts, i, in, &hits)) != SQLITE_OK) {
            sqlite3_free(df);
            sqlite3_result_error_code(ctx, rc);
            return;
        }
        df[i] = hits;
    }
    sqlite3_result_blob(ctx, df, n * (int)sizeof *df, sqlite3_free);
}

int sn__lex_register(sqlite3 *db, char *err, size_t err_len)
{
    sqlite3_stmt *st = NULL;
    fts5_api *api = NULL;
    int rc;

    rc = sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_pointer(st, 1, &api, "fts5_api_ptr", NULL);
        sqlite3_step(st);
        rc = sqlite3_finalize(st);
    }
    if (rc != SQLITE_OK || !api)
        return sn__err(err, err_len, -ENOSYS, "this SQLite has no FTS5: %s",
                       sqlite3_errmsg(db));
    rc = api->xCreateFunction(api, "sense_rank", NULL, rank_fn, NULL);
    if (rc == SQLITE_OK)
        rc = api->xCreateFunction(api, "sense_df", NULL, df_fn, NULL);
    if (rc == SQLITE_OK)
        rc = sn__words_register(api);
    if (rc != SQLITE_OK)
        return sn__err(err, err_len, sn__sqlite_code(db, rc), "cannot "
                       "register sense_rank and sense_words: %s",
                       sqlite3_errstr(rc));
    return 0;
}

/* ---- a collection's statistics ------------------------------------------ */

void sn__lex_stats_free(sn__lex_stats_t *s)
{
    if (!s)
        return;
    free(s->ids);
    memset(s, 0, sizeof *s);
}

/* The first varint of an FTS5 docsize blob (SQLite's varint: 7 bits a
 * byte, high bit set on all but the last, a ninth byte whole): the row's
 * token count in its one column. */
static int64_t docsize(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n && i < 9; i++) {
        if (i == 8)
            return (int64_t)((v << 8) | p[i]);
        v = (v << 7) | (p[i] & 0x7f);
        if (!(p[i] & 0x80))
            break;
    }
    return (int64_t)v;
}

int sn__lex_stats(sqlite3 *db, int64_t coll, sn__lex_stats_t *s, char *err,
                  size_t err_len)
{
    static const char SQL_ROWS[] =
        "SELECT d.id, f.sz, t.sz FROM documents d "
        "LEFT JOIN documents_fts_docsize f ON f.id = d.id "
        "LEFT JOIN documents_tri_docsize t ON t.id = d.id "
        "WHERE d.collection = ?1 ORDER BY d.id";
    sqlite3_int64 changes = sqlite3_total_changes64(db);
    unsigned version = 0;
    sqlite3_stmt *q = NULL;
    sn__lex_stats_t n = {0};
    int64_t cap = 0;
    int rc;

    sqlite3_file_control(db, "main", SQLITE_FCNTL_DATA_VERSION, &version);
    if (s->valid && s->changes == changes && s->data_version == version)
        return 0;
    rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM documents", -1, &q,
                            NULL);
    if (rc != SQLITE_OK || (rc = sqlite3_step(q)) != SQLITE_ROW)
        goto db_fail;
    n.table_rows = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    rc = sqlite3_prepare_v2(db, SQL_ROWS, -1, &q, NULL);
    if (rc != SQLITE_OK)
        goto db_fail;
    sqlite3_bind_int64(q, 1, coll);
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (n.n == cap) {
            int64_t *v;
            cap = cap ? cap * 2 : 1024;
            if (!(v = realloc(n.ids, (size_t)cap * sizeof *v))) {
                sqlite3_finalize(q);
                sn__lex_stats_free(&n);
                return sn__err(err, err_len, -ENOMEM, "out of memory");
            }
            n.ids = v;
        }
        n.ids[n.n++] = sqlite3_column_int64(q, 0);
        n.word_tokens += (double)docsize(sqlite3_column_blob(q, 1),
                                         sqlite3_column_bytes(q, 1));
        n.tri_tokens += (double)docsize(sqlite3_column_blob(q, 2),
                                        sqlite3_column_bytes(q, 2));
    }
    if (rc != SQLITE_DONE)
        goto db_fail;
    sqlite3_finalize(q);
    n.changes = changes;
    n.data_version = version;
    n.valid = 1;
    sn__lex_stats_free(s);
    *s = n;
    return 0;
db_fail:
    rc = sn__err(err, err_len, sn__sqlite_code(db, rc), "lexical "
                 "statistics: %s", sqlite3_errmsg(db));
    sqlite3_finalize(q);
    sn__lex_stats_free(&n);
    return rc;
}

/* ---- query expressions ------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t len, cap;
    int n_terms;
    char **seen; /* the terms so far, case-folded, for duplicates */
    int n_seen;
} expr_t;

static int expr_put(expr_t *e, const char *s, size_t len)
{
    if (e->len + len + 1 > e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 256;
        while (cap < e->len + len + 1)
            cap *= 2;
        char *nb = realloc(e->buf, cap);
        if (!nb)
            return -ENOMEM;
        e->buf = nb;
        e->cap = cap;
    }
    memcpy(e->buf + e->len, s, len);
    e->len += len;
    e->buf[e->len] = '\0';
    return 0;
}

/* Append the term (code points cp[0..n)) as a quoted FTS5 string, OR-ed
 * to what is there, unless it is already there (case-folded). */
static int expr_term(expr_t *e, const utf8proc_int32_t *cp, int n)
{
    uint8_t u[8];
    char *folded = NULL;
    size_t flen = 0;
    int rc = 0;

    if (e->n_terms >= SN__LEX_MAX_TERMS)
        return 0;
    /* case-folded copy, to recognise a repeated term */
    {
        utf8proc_uint8_t *m = NULL;
        expr_t tmp = {0};
        for (int i = 0; i < n; i++) {
            utf8proc_ssize_t k = utf8proc_encode_char(cp[i], u);
            if ((rc = expr_put(&tmp, (char *)u, (size_t)k)) < 0) {
                free(tmp.buf);
                return rc;
            }
        }
        if (utf8proc_map((const utf8proc_uint8_t *)tmp.buf,
                         (utf8proc_ssize_t)tmp.len, &m,
                         UTF8PROC_CASEFOLD | UTF8PROC_STABLE) < 0) {
            free(tmp.buf);
            return -ENOMEM;
        }
        free(tmp.buf);
        folded = (char *)m;
        flen = strlen(folded);
    }
    for (int i = 0; i < e->n_seen; i++)
        if (!strcmp(e->seen[i], folded)) {
            free(folded);
            return 0;
        }
    char **ns = realloc(e->seen, (size_t)(e->n_seen + 1) * sizeof *ns);
    if (!ns) {
        free(folded);
        return -ENOMEM;
    }
    e->seen = ns;
    e->seen[e->n_seen++] = folded;
    if ((e->n_terms && (rc = expr_put(e, " OR ", 4)) < 0) ||
        (rc = expr_put(e, "\"", 1)) < 0)
        return rc;
    for (size_t i = 0; i < flen; i++)
        if ((rc = expr_put(e, folded[i] == '"' ? "\"\"" : folded + i,
                           folded[i] == '"' ? 2 : 1)) < 0)
            return rc;
    if ((rc = expr_put(e, "\"", 1)) < 0)
        return rc;
    e->n_terms++;
    return 0;
}

static void expr_free(expr_t *e)
{
    for (int i = 0; i < e->n_seen; i++)
        free(e->seen[i]);
    free(e->seen);
    free(e->buf);
}

/* A character that belongs to a word for unicode61: letters, numbers,
 * marks and private-use characters. */
static int word_char(utf8proc_int32_t c)
{
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: case UTF8PROC_CATEGORY_CO:
        return 1;
    default:
        return 0;
    }
}

/* UTF-8 s[0..len) -> code points cp (room for len of them); the count, or
 * -1 when s is not valid UTF-8. */
static int decode(const char *s, size_t len, utf8proc_int32_t *cp)
{
    int n = 0;
    for (size_t i = 0; i < len; n++) {
        utf8proc_ssize_t k = utf8proc_iterate(
            (const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i),
            &cp[n]);
        if (k <= 0)
            return -1;
        i += (size_t)k;
    }
    return n;
}

/* Each word (a run of word characters) of cp[0..n) as a term of e; with
 * parts, each word's parts instead (words.c: "BigCache" -> "Big",
 * "Cache"), which a document matches where it holds them apart or glued
 * in another word (the index holds a glued word's parts at its place). */
static int add_words(expr_t *e, const utf8proc_int32_t *cp, int n,
                     int parts)
{
    sn__span_t p[SN__WORDS_MAX_PARTS];
    int rc, k;
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && word_char(cp[j]))
            j++;
        if (j > i && !parts && (rc = expr_term(e, cp + i, j - i)) < 0)
            return rc;
        k = j > i && parts ? sn__words_split(cp + i, j - i, p,
                                             SN__WORDS_MAX_PARTS) : 0;
        for (int q = 0; q < k; q++)
            if ((rc = expr_term(e, cp + i + p[q].start, p[q].len)) < 0)
                return rc;
        i = j > i ? j : i + 1;
    }
    return 0;
}

/* Append the words of the synonyms of w's first n_own terms (the query's
 * own words) to w, each once. */
static int expand(expr_t *w, int n_own, const sn_wordnet_syn_t *syn)
{
    int rc, n;
    utf8proc_int32_t cp[SN_WORDNET_MAX_SYN];

    for (int i = 0; i < n_own; i++) {
        const char *word = w->seen[i], *s;
        size_t sl;
        n = 0;
        for (const char *c = word; *c; c++)
            n += ((unsigned char)*c & 0xc0) != 0x80;
        if (n < SN__LEX_SYN_MIN_CP ||
            !(s = sn_wordnet_syn_find(syn, word, strlen(word))) ||
            (sl = strlen(s)) >= SN_WORDNET_MAX_SYN)
            continue;
        /* the synonyms' text -> code points -> words, as the query's */
        if ((n = decode(s, sl, cp)) > 0 &&
            (rc = add_words(w, cp, n, 0)) < 0)
            return rc;
    }
    return 0;
}

int sn__lex_match(const char *text, size_t len, const sn_wordnet_syn_t *syn,
                  char **words, int *n_words, int *n_parts, char **trigrams,
                  char *err, size_t err_len)
{
    utf8proc_int32_t *cp = NULL;
    expr_t w = {0}, t = {0};
    int n = 0, rc = 0;

    *words = *trigrams = NULL;
    *n_words = *n_parts = 0;
    if (len > SN__LEX_MAX_QUERY) { /* a query that long is a document */
        len = SN__LEX_MAX_QUERY;
        while (len > 0 && ((unsigned char)text[len] & 0xc0) == 0x80)
            len--; /* not inside a character */
    }
    if (!(cp = malloc((len + 1) * sizeof *cp)))
        goto oom;
    if ((n = decode(text, len, cp)) < 0) {
        rc = sn__err(err, err_len, SN_EUTF8, "query is not valid utf-8");
        goto fail;
    }
    if ((rc = add_words(&w, cp, n, 0)) < 0)
        goto oom;
    *n_words = w.n_terms;
    if ((rc = add_words(&w, cp, n, 1)) < 0)
        goto oom;
    *n_parts = w.n_terms - *n_words;
    if (syn && (rc = expand(&w, *n_words, syn)) < 0)
        goto oom;
    for (int i = 0; i + 3 <= n; i++) {
        /* every window, spaces included, as the trigram tokenizer cuts
         * the documents ("e 패" ties a word to the next) */
        if ((rc = expr_term(&t, cp + i, 3)) < 0)
            goto oom;
    }
    free(cp);
    *words = w.len ? w.buf : NULL;
    *trigrams = t.len ? t.buf : NULL;
    if (!w.len)
        free(w.buf);
    if (!t.len)
        free(t.buf);
    w.buf = t.buf = NULL;
    expr_free(&w);
    expr_free(&t);
    return 0;
oom:
    if (rc >= 0 || rc == -ENOMEM)
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
fail:
    free(cp);
    expr_free(&w);
    expr_free(&t);
    return rc;
}

/* ---- trigrams, scored from the text ------------------------------------------
 *
 * Ranking trigrams through FTS5 costs a pass over every matching row's
 * position lists: an English query's ~40 trigrams match nearly every
 * document, and that took ~0.5 s a query on debian-dev (words: ~0.05 s).
 * So the trigram score of a candidate is computed here from its text,
 * with the same BM25 and the collection's statistics (sn__lex_stats_t):
 * each query trigram's document count from documents_tri_vocab when the
 * collection is the whole table, else counted over the collection's rows
 * (sense_df: one pass over each trigram's document list, no positions
 * read); the collection's document count and mean length. A document of n
 * code points holds n - 2 trigrams, as the trigram tokenizer cuts it. */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t tri_key(const utf8proc_int32_t *c)
{
    return ((uint64_t)(uint32_t)c[0] << 42) | ((uint64_t)(uint32_t)c[1] << 21) |
           (uint64_t)(uint32_t)c[2];
}

/* text -> case-folded code points (malloc'd); *n their count. */
static int folded_cps(const char *text, size_t len, utf8proc_int32_t **out,
                      int64_t *n)
{
    utf8proc_uint8_t *m = NULL;
    utf8proc_ssize_t mlen;
    utf8proc_int32_t *cp;
    int64_t k = 0;

    *out = NULL;
    *n = 0;
    mlen = utf8proc_map((const utf8proc_uint8_t *)text, (utf8proc_ssize_t)len,
                        &m, UTF8PROC_CASEFOLD | UTF8PROC_STABLE);
    if (mlen < 0)
        return mlen == UTF8PROC_ERROR_NOMEM ? -ENOMEM : SN_EUTF8;
    if (!(cp = malloc(((size_t)mlen + 1) * sizeof *cp))) {
        free(m);
        return -ENOMEM;
    }
    for (utf8proc_ssize_t i = 0; i < mlen;) {
        utf8proc_ssize_t s = utf8proc_iterate(m + i, mlen - i, &cp[k]);
        if (s <= 0)
            break;
        i += s;
        k++;
    }
    free(m);
    *out = cp;
    *n = k;
    return 0;
}

void sn__tri_free(sn__tri_t *t)
{
    if (!t)
        return;
    free(t->keys);
    free(t->idf);
    memset(t, 0, sizeof *t);
}

/* key -> the trigram's UTF-8 text (at most 12 bytes and a NUL) */
static void tri_text(uint64_t key, char *out)
{
    uint8_t *p = (uint8_t *)out;
    for (int j = 0; j < 3; j++) {
        utf8proc_int32_t c = (utf8proc_int32_t)((key >> (42 - 21 * j)) &
                                                0x1fffff);
        p += utf8proc_encode_char(c, p);
    }
    *p = '\0';
}

int sn__tri_query(sqlite3 *db, const char *text, size_t len,
                  const sn__lex_stats_t *stats, sn__tri_t *t, char *err,
                  size_t err_len)
{
    utf8proc_int32_t *cp = NULL;
    sqlite3_stmt *s = NULL;
    int64_t n_cp = 0, n = 0;
    int rc;

    memset(t, 0, sizeof *t);
    if (len > SN__LEX_MAX_QUERY) {
        len = SN__LEX_MAX_QUERY;
        while (len > 0 && ((unsigned char)text[len] & 0xc0) == 0x80)
            len--;
    }
    if ((rc = folded_cps(text, len, &cp, &n_cp)) < 0)
        return sn__err(err, err_len, rc, rc == SN_EUTF8 ? "query is not "
                       "valid utf-8" : "out of memory");
    if (n_cp >= 3) {
        int64_t cap = n_cp - 2 < SN__LEX_MAX_TERMS ? n_cp - 2
                                                   : SN__LEX_MAX_TERMS;
        t->keys = malloc((size_t)cap * sizeof *t->keys);
        t->idf = malloc((size_t)cap * sizeof *t->idf);
        if (!t->keys || !t->idf) {
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            goto fail;
        }
        for (int64_t i = 0; i + 3 <= n_cp && n < cap; i++)
            t->keys[n++] = tri_key(cp + i);
        qsort(t->keys, (size_t)n, sizeof *t->keys, cmp_u64);
        int64_t w = 0;
        for (int64_t i = 0; i < n; i++)
            if (!w || t->keys[w - 1] != t->keys[i])
                t->keys[w++] = t->keys[i];
        t->n = (int)w;
    }
    if (!t->n)
        goto done;
    /* document counts: the table's (documents_tri_vocab) when it holds
     * only this collection, else counted over the collection's rows */
    double *df = t->idf; /* counts first, idf once they are all known */
    t->n_rows = (double)stats->n;
    t->avgdl = stats->n > 0 && stats->tri_tokens > 0
                   ? stats->tri_tokens / (double)stats->n
                   : 1;
    if (SN__LEX_WHOLE(stats)) {
        rc = sqlite3_prepare_v2(db, "SELECT doc FROM documents_tri_vocab "
                                "WHERE term = ?1", -1, &s, NULL);
        if (rc != SQLITE_OK)
            goto db_fail;
        for (int i = 0; i < t->n; i++) {
            char term[16];
            tri_text(t->keys[i], term);
            sqlite3_reset(s);
            sqlite3_bind_text(s, 1, term, -1, SQLITE_TRANSIENT);
            rc = sqlite3_step(s);
            df[i] = rc == SQLITE_ROW ? (double)sqlite3_column_int64(s, 0)
                                     : 0;
            if (rc != SQLITE_ROW && rc != SQLITE_DONE)
                goto db_fail;
        }
    } else {
        /* one MATCH of every trigram, in key order; sense_df counts each
         * phrase's rows that are the collection's */
        char *m = malloc((size_t)t->n * 24 + 1);
        size_t ml = 0;
        if (!m) {
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            goto fail;
        }
        for (int i = 0; i < t->n; i++) {
            char term[16];
            tri_text(t->keys[i], term);
            ml += (size_t)sprintf(m + ml, "%s\"", i ? " OR " : "");
            for (const char *c = term; *c; c++) {
                if (*c == '"')
                    m[ml++] = '"';
                m[ml++] = *c;
            }
            m[ml++] = '"';
        }
        m[ml] = '\0';
        rc = sqlite3_prepare_v2(db, "SELECT sense_df(documents_tri, ?2) FROM "
                                "documents_tri WHERE documents_tri MATCH ?1 "
                                "LIMIT 1", -1, &s, NULL);
        if (rc != SQLITE_OK) {
            free(m);
            goto db_fail;
        }
        sqlite3_bind_text(s, 1, m, (int)ml, free);
        sqlite3_bind_pointer(s, 2, (void *)stats, "sn__lex_stats_t", NULL);
        rc = sqlite3_step(s);
        for (int i = 0; i < t->n; i++)
            df[i] = 0;
        if (rc == SQLITE_ROW) {
            const int64_t *v = sqlite3_column_blob(s, 0);
            int bytes = sqlite3_column_bytes(s, 0);
            for (int i = 0; v && i < t->n &&
                            (size_t)(i + 1) * sizeof *v <= (size_t)bytes;
                 i++)
                df[i] = (double)v[i];
        } else if (rc != SQLITE_DONE) {
            goto db_fail;
        }
    }
    sqlite3_finalize(s);
    s = NULL;
    t->ideal = 0;
    for (int i = 0; i < t->n; i++) {
        double h = df[i];
        t->idf[i] = log(1.0 + (t->n_rows - h + 0.5) / (h + 0.5));
        if (t->idf[i] < 1e-6)
            t->idf[i] = 1e-6;
        t->ideal += t->idf[i];
    }
done:
    free(cp);
    return 0;
db_fail:
    rc = sn__err(err, err_len, sn__sqlite_code(db, rc), "trigram "
                 "statistics: %s", sqlite3_errmsg(db));
fail:
    sqlite3_finalize(s);
    free(cp);
    sn__tri_free(t);
    return rc;
}

double sn__tri_score(const sn__tri_t *t, const char *text, size_t len)
{
    const double k1 = SN__BM25_TRI_K1, b = SN__BM25_TRI_B;
    int tf[SN__LEX_MAX_TERMS];
    utf8proc_int32_t *cp = NULL;
    int64_t n_cp;
    double score = 0, norm, dl;

    if (!t->n || t->ideal <= 0 || folded_cps(text, len, &cp, &n_cp) < 0)
        return 0;
    memset(tf, 0, (size_t)t->n * sizeof tf[0]);
    for (int64_t i = 0; i + 3 <= n_cp; i++) {
        uint64_t key = tri_key(cp + i);
        const uint64_t *hit = bsearch(&key, t->keys, (size_t)t->n,
                                      sizeof key, cmp_u64);
        if (hit)
            tf[hit - t->keys]++;
    }
    free(cp);
    dl = n_cp > 2 ? (double)(n_cp - 2) : 0;
    norm = k1 * (1 - b + b * dl / t->avgdl);
    for (int i = 0; i < t->n; i++)
        if (tf[i])
            score += t->idf[i] * tf[i] * (k1 + 1) / (tf[i] + norm);
    return score / t->ideal;
}
