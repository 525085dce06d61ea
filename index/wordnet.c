/*
 * wordnet.c -- WordNet 3.0's database files as a sense inventory: the
 * parsers (pure, over buffers), the loader (file reading), and the import
 * into sn_senses_t.
 *
 * Formats (wndb(5WN)), one record per line, fields separated by spaces;
 * lines that start with two spaces are the license header:
 *   index.pos  lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt
 *              tagsense_cnt synset_offset... (synset_cnt of them, in sense
 *              number order)
 *   data.pos   synset_offset lex_filenum ss_type w_cnt word lex_id ...
 *              p_cnt ... | gloss
 *              where synset_offset is the byte offset of the line in its
 *              file: a synset is read by seeking there (checked: the line
 *              must start with that very offset and an ss_type of its
 *              part of speech).
 *   pos.exc    inflected_form base_form [base_form...]
 * A gloss is the definition, then "; " and the quoted examples:
 *   sloping land (especially ...); "they pulled the canoe up on the bank"
 *
 * Parsing keeps only lemmas with at least min_senses synsets over all parts
 * of speech, copies their strings into one arena and drops the buffers.
 * Invariants: lemmas are sorted by byte order of their text (spaces for
 * "_"), each lemma's senses run noun, verb, adj, adv, each in sense number
 * order; every pointer a lemma or sense holds points into the arena.
 *
 * Import: for each sense, its examples that contain the lemma (located
 * with sn_wsd_find_word_ex and the exception lists) become exemplars, and
 * the gloss becomes one more, as the text "<lemma>: <definition>" with the
 * lemma's span at the start. Why the gloss: most WordNet senses have no
 * example containing the lemma (of the 86,508 senses of the 26,873
 * polysemous lemmas, 36,925 example exemplars cover about a third), so
 * without it most senses could never be chosen; the measured effect is in
 * index/wsd_int.h (SN__WSD_SCORING_INIT). Texts are embedded
 * SN_WORDNET_BATCH at a time (one sn_model_embed call), and the rows of
 * whole lemmas go to the inventory in one transaction per batch, with
 * replace (sn_senses_put): importing again refreshes the WordNet senses.
 *
 * Workload: the whole of WordNet 3.0 (117,659 synsets, 26,873 polysemous
 * lemmas) parses in 0.1 s. Its import is bound by the encoder: measured
 * with bench_wsd --import on the development machine (2 shared cores,
 * default model), 123,433 texts in 93 s (1,324 texts/s), a 575 MB
 * database (two 512-float vectors a row).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "embed_int.h"
#include "sense/wordnet.h"
#include "wsd_int.h"

#define ARENA_BLOCK (1u << 20)
#define N_POS 4

static const char *const POS_NAME[N_POS] = {"noun", "verb", "adj", "adv"};
static const char POS_CHAR[N_POS] = {'n', 'v', 'a', 'r'};

/* ---- arena -------------------------------------------------------------------- */

typedef struct block {
    struct block *next;
    size_t used, cap;
    char data[];
} block_t;

typedef struct {
    block_t *head;
} arena_t;

static void *arena_alloc(arena_t *a, size_t n, size_t align)
{
    block_t *b = a->head;
    size_t off = b ? (b->used + align - 1) / align * align : 0;

    if (!b || off + n > b->cap) {
        size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        if (!(b = malloc(sizeof *b + cap)))
            return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
        off = 0;
    }
    b->used = off + n;
    return b->data + off;
}

static char *arena_str(arena_t *a, const char *s, size_t len)
{
    char *p = arena_alloc(a, len + 1, 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

static void arena_free(arena_t *a)
{
    for (block_t *b = a->head, *n; b; b = n) {
        n = b->next;
        free(b);
    }
    a->head = NULL;
}

struct sn_wordnet {
    arena_t arena;
    sn_wordnet_lemma_t *lemmas;
    int n_lemmas;
    sn_wsd_morph_t *morph;
};

/* ---- gloss ----------------------------------------------------------------------- */

int sn_wordnet_split_gloss(const char *g, size_t len, size_t *def_len,
                           size_t *ex_off, size_t *ex_len, int max_ex)
{
    size_t i = 0, d = len;
    int n = 0;

    /* the definition ends at the first quote that opens a segment */
    for (i = 0; i < len; i++) {
        if (g[i] != '"')
            continue;
        size_t k = i;
        while (k > 0 && g[k - 1] == ' ')
            k--;
        if (k == 0 || g[k - 1] == ';') {
            d = i;
            break;
        }
    }
    /* then every "..." from there */
    for (i = d; i < len; i++) {
        if (g[i] != '"')
            continue;
        size_t e = i + 1;
        while (e < len && g[e] != '"')
            e++;
        if (e >= len)
            break; /* unterminated: not an example */
        if (n < max_ex && e > i + 1) {
            ex_off[n] = i + 1;
            ex_len[n] = e - i - 1;
            n++;
        }
        i = e;
    }
    while (d > 0 && (g[d - 1] == ' ' || g[d - 1] == ';' || g[d - 1] == '\t'))
        d--;
    if (def_len)
        *def_len = d;
    return n;
}

/* ---- index files ------------------------------------------------------------------ */

typedef struct {
    const char *lemma; /* in the buffer, not terminated */
    size_t lemma_len;
    int pos;
    int n_syn;
    size_t i_off;      /* first offset in the offsets array */
} entry_t;

typedef struct {
    entry_t *e;
    size_t n, cap;
    uint32_t *off;
    size_t n_off, cap_off;
} entries_t;

static int push_entry(entries_t *es, const entry_t *e)
{
    if (es->n == es->cap) {
        size_t cap = es->cap ? es->cap * 2 : 4096;
        entry_t *v = realloc(es->e, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        es->e = v;
        es->cap = cap;
    }
    es->e[es->n++] = *e;
    return 0;
}

static int push_off(entries_t *es, uint32_t o)
{
    if (es->n_off == es->cap_off) {
        size_t cap = es->cap_off ? es->cap_off * 2 : 16384;
        uint32_t *v = realloc(es->off, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        es->off = v;
        es->cap_off = cap;
    }
    es->off[es->n_off++] = o;
    return 0;
}

/* The next space-separated field of line[*i..n). */
static int field(const char *line, size_t n, size_t *i, const char **f,
                 size_t *flen)
{
    while (*i < n && line[*i] == ' ')
        (*i)++;
    if (*i >= n)
        return 0;
    *f = line + *i;
    while (*i < n && line[*i] != ' ')
        (*i)++;
    *flen = (size_t)(line + *i - *f);
    return 1;
}

/* A decimal (or hex) field of at most 10 digits into *v. */
static int num(const char *f, size_t len, int base, uint32_t *v)
{
    uint64_t x = 0;
    if (len == 0 || len > 10)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int d;
        if (f[i] >= '0' && f[i] <= '9')
            d = f[i] - '0';
        else if (base == 16 && f[i] >= 'a' && f[i] <= 'f')
            d = f[i] - 'a' + 10;
        else if (base == 16 && f[i] >= 'A' && f[i] <= 'F')
            d = f[i] - 'A' + 10;
        else
            return -1;
        x = x * (uint64_t)base + (uint64_t)d;
    }
    if (x > UINT32_MAX)
        return -1;
    *v = (uint32_t)x;
    return 0;
}

static int parse_index(const char *buf, size_t len, int pos, entries_t *es,
                       char *err, size_t err_len)
{
    const char *file = POS_NAME[pos];
    size_t i = 0, line_no = 0;

    while (i < len) {
        size_t e = i;
        while (e < len && buf[e] != '\n')
            e++;
        line_no++;
        const char *line = buf + i;
        size_t n = e - i, k = 0, flen;
        const char *f;
        uint32_t n_syn, p_cnt, v;
        entry_t ent;

        i = e + 1;
        if (n >= 2 && line[0] == ' ' && line[1] == ' ')
            continue; /* license header */
        while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\r'))
            n--;
        if (n == 0)
            continue;
        if (n > SN_WORDNET_MAX_LINE)
            return sn__err(err, err_len, SN_ECORRUPT, "index.%s: line %zu: "
                           "longer than %d bytes", file, line_no,
                           SN_WORDNET_MAX_LINE);
#define BAD(what)                                                            \
    sn__err(err, err_len, SN_ECORRUPT, "index.%s: line %zu: %s", file,       \
            line_no, what)
        if (!field(line, n, &k, &ent.lemma, &ent.lemma_len) ||
            ent.lemma_len >= SN_WSD_MAX_WORD)
            return BAD("bad lemma");
        if (!field(line, n, &k, &f, &flen) || flen != 1 ||
            f[0] != POS_CHAR[pos])
            return BAD("bad part of speech");
        if (!field(line, n, &k, &f, &flen) || num(f, flen, 10, &n_syn) ||
            n_syn == 0 || n_syn > SN_WORDNET_MAX_SYNSETS)
            return BAD("bad synset_cnt");
        if (!field(line, n, &k, &f, &flen) || num(f, flen, 10, &p_cnt) ||
            p_cnt > 100)
            return BAD("bad p_cnt");
        for (uint32_t p = 0; p < p_cnt; p++)
            if (!field(line, n, &k, &f, &flen))
                return BAD("too few pointer symbols");
        for (int p = 0; p < 2; p++) /* sense_cnt, tagsense_cnt */
            if (!field(line, n, &k, &f, &flen) || num(f, flen, 10, &v))
                return BAD("bad sense_cnt or tagsense_cnt");
        ent.pos = pos;
        ent.n_syn = (int)n_syn;
        ent.i_off = es->n_off;
        for (uint32_t s = 0; s < n_syn; s++) {
            if (!field(line, n, &k, &f, &flen) || flen != 8 ||
                num(f, flen, 10, &v))
                return BAD("bad or missing synset_offset");
            if (push_off(es, v) < 0)
                return sn__err(err, err_len, -ENOMEM, "out of memory");
        }
        if (field(line, n, &k, &f, &flen))
            return BAD("more synset offsets than synset_cnt");
#undef BAD
        if (push_entry(es, &ent) < 0)
            return sn__err(err, err_len, -ENOMEM, "out of memory");
    }
    return 0;
}

/* ---- data files ------------------------------------------------------------------- */

/* The line of the synset at `off` in data.<pos>, checked to be that
 * synset's (it starts with that very offset and an ss_type of this part of
 * speech); *k: where the fields after ss_type start. */
static int synset_line(const char *buf, size_t len, int pos, uint32_t off,
                       const char **line_out, size_t *n_out, size_t *k_out,
                       char *err, size_t err_len)
{
    const char *file = POS_NAME[pos];
    const char *f;
    size_t e, k = 0, flen, n;
    uint32_t v;

#define BAD(what)                                                            \
    sn__err(err, err_len, SN_ECORRUPT, "data.%s: synset %08u: %s", file,     \
            (unsigned)off, what)
    if (!buf || off >= len || (off > 0 && buf[off - 1] != '\n'))
        return BAD("no line starts there");
    for (e = off; e < len && buf[e] != '\n'; e++)
        ;
    n = e - off;
    if (n > SN_WORDNET_MAX_LINE)
        return BAD("line too long");
    const char *line = buf + off;
    if (!field(line, n, &k, &f, &flen) || flen != 8 || num(f, flen, 10, &v) ||
        v != off)
        return BAD("the line there is another synset's");
    if (!field(line, n, &k, &f, &flen) || num(f, flen, 10, &v)) /* lex_filenum */
        return BAD("bad lex_filenum");
    if (!field(line, n, &k, &f, &flen) || flen != 1 ||
        !(f[0] == POS_CHAR[pos] || (pos == 2 && f[0] == 's')))
        return BAD("ss_type is not of this part of speech");
#undef BAD
    *line_out = line;
    *n_out = n;
    *k_out = k;
    return 0;
}

/* The gloss of the synset at `off` in data.<pos>. */
static int read_gloss(const char *buf, size_t len, int pos, uint32_t off,
                      const char **gloss, size_t *glen, char *err,
                      size_t err_len)
{
    const char *line;
    size_t n, k;
    int rc;

    if ((rc = synset_line(buf, len, pos, off, &line, &n, &k, err,
                          err_len)) < 0)
        return rc;
    const char *bar = memchr(line + k, '|', n - k);
    if (!bar) {
        *gloss = line + n;
        *glen = 0;
        return 0;
    }
    const char *g = bar + 1;
    size_t gl = (size_t)(line + n - g);
    while (gl > 0 && *g == ' ')
        g++, gl--;
    while (gl > 0 && (g[gl - 1] == ' ' || g[gl - 1] == '\r'))
        gl--;
    *gloss = g;
    *glen = gl;
    return 0;
}

/* ---- parse -------------------------------------------------------------------------- */

/* Byte order of the lemma text with "_" read as " " (as stored). */
static int cmp_lemma(const char *a, size_t an, const char *b, size_t bn)
{
    size_t n = an < bn ? an : bn;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)(a[i] == '_' ? ' ' : a[i]);
        unsigned char y = (unsigned char)(b[i] == '_' ? ' ' : b[i]);
        if (x != y)
            return x < y ? -1 : 1;
    }
    return an == bn ? 0 : an < bn ? -1 : 1;
}

static int cmp_entry(const void *a, const void *b)
{
    const entry_t *x = a, *y = b;
    int c = cmp_lemma(x->lemma, x->lemma_len, y->lemma, y->lemma_len);
    return c ? c : x->pos - y->pos;
}

void sn_wordnet_free(sn_wordnet_t *wn)
{
    if (!wn)
        return;
    arena_free(&wn->arena);
    sn_wsd_morph_free(wn->morph);
    free(wn);
}

/* Fill one sense from the synset at `off`. */
static int make_sense(sn_wordnet_t *wn, const sn_wordnet_files_t *fs,
                      const entry_t *e, int number, uint32_t off,
                      sn_wordnet_sense_t *out, char *err, size_t err_len)
{
    const char *g = NULL;
    size_t glen = 0, def_len, ex_off[SN_WORDNET_MAX_EXAMPLES];
    size_t ex_len[SN_WORDNET_MAX_EXAMPLES];
    char name[SN_WSD_MAX_WORD + 16];
    int rc, n_ex;

    if ((rc = read_gloss(fs->data[e->pos], fs->data_len[e->pos], e->pos, off,
                         &g, &glen, err, err_len)) < 0)
        return rc;
    n_ex = sn_wordnet_split_gloss(g, glen, &def_len, ex_off, ex_len,
                                  SN_WORDNET_MAX_EXAMPLES);
    snprintf(name, sizeof name, "%.*s.%c.%02d", (int)e->lemma_len, e->lemma,
             POS_CHAR[e->pos], number);
    out->name = arena_str(&wn->arena, name, strlen(name));
    out->pos = POS_CHAR[e->pos];
    out->number = number;
    out->offset = off;
    out->gloss = arena_str(&wn->arena, g, def_len);
    out->n_examples = n_ex;
    const char **ex = n_ex ? arena_alloc(&wn->arena,
                                         (size_t)n_ex * sizeof *ex,
                                         sizeof *ex)
                           : NULL;
    out->examples = ex;
    if (!out->name || !out->gloss || (n_ex && !ex))
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    for (int i = 0; i < n_ex; i++)
        if (!(ex[i] = arena_str(&wn->arena, g + ex_off[i], ex_len[i])))
            return sn__err(err, err_len, -ENOMEM, "out of memory");
    return 0;
}

/* Every index file of fs into es, sorted by lemma, then part of speech. */
static int parse_indexes(const sn_wordnet_files_t *fs, entries_t *es,
                         char *err, size_t err_len)
{
    int rc;

    for (int p = 0; p < N_POS; p++) {
        if (!fs->index[p])
            continue;
        if (!fs->data[p])
            return sn__err(err, err_len, SN_EARG, "index.%s without data.%s",
                           POS_NAME[p], POS_NAME[p]);
        if ((rc = parse_index(fs->index[p], fs->index_len[p], p, es, err,
                              err_len)) < 0)
            return rc;
    }
    if (es->n)
        qsort(es->e, es->n, sizeof *es->e, cmp_entry);
    return 0;
}

int sn_wordnet_parse(const sn_wordnet_files_t *fs, int min_senses,
                     sn_wordnet_t **out, char *err, size_t err_len)
{
    entries_t es = {0};
    sn_wordnet_t *wn = NULL;
    sn_wordnet_sense_t *senses = NULL;
    size_t n_keep = 0, n_sen = 0, i, j;
    int rc;

    if (!out || !fs)
        return sn__err(err, err_len, SN_EARG, "sn_wordnet_parse: bad "
                       "arguments");
    *out = NULL;
    if (min_senses < 1)
        min_senses = 1;
    if (!(wn = calloc(1, sizeof *wn)))
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    if ((rc = sn_wsd_morph_new(&wn->morph, err, err_len)) < 0)
        goto fail;
    for (int p = 0; p < N_POS; p++) {
        char name[32];
        if (!fs->exc[p])
            continue;
        snprintf(name, sizeof name, "%s.exc", POS_NAME[p]);
        if ((rc = sn_wsd_morph_add_exc(wn->morph, fs->exc[p], fs->exc_len[p],
                                       name, err, err_len)) < 0)
            goto fail;
    }
    if ((rc = parse_indexes(fs, &es, err, err_len)) < 0)
        goto fail;
    /* a lemma is a run of entries with the same text (one per pos) */
    for (i = 0; i < es.n; i = j) {
        size_t total = 0;
        for (j = i; j < es.n && !cmp_lemma(es.e[i].lemma, es.e[i].lemma_len,
                                           es.e[j].lemma, es.e[j].lemma_len);
             j++)
            total += (size_t)es.e[j].n_syn;
        if (j - i > 1 && es.e[j - 1].pos == es.e[j - 2].pos) {
            rc = sn__err(err, err_len, SN_ECORRUPT, "index.%s: lemma '%.*s' "
                         "listed twice", POS_NAME[es.e[j - 1].pos],
                         (int)es.e[i].lemma_len, es.e[i].lemma);
            goto fail;
        }
        if (total >= (size_t)min_senses) {
            n_keep++;
            n_sen += total;
        }
    }
    if (n_keep > INT32_MAX / 2) {
        rc = sn__err(err, err_len, SN_ETOOBIG, "too many lemmas");
        goto fail;
    }
    wn->lemmas = arena_alloc(&wn->arena, (n_keep ? n_keep : 1) *
                                             sizeof *wn->lemmas,
                             sizeof(void *));
    senses = arena_alloc(&wn->arena, (n_sen ? n_sen : 1) * sizeof *senses,
                         sizeof(void *));
    if (!wn->lemmas || !senses) {
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
        goto fail;
    }
    for (i = 0; i < es.n; i = j) {
        size_t total = 0;
        for (j = i; j < es.n && !cmp_lemma(es.e[i].lemma, es.e[i].lemma_len,
                                           es.e[j].lemma, es.e[j].lemma_len);
             j++)
            total += (size_t)es.e[j].n_syn;
        if (total < (size_t)min_senses)
            continue;
        sn_wordnet_lemma_t *l = &wn->lemmas[wn->n_lemmas++];
        char *text = arena_str(&wn->arena, es.e[i].lemma, es.e[i].lemma_len);
        if (!text) {
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            goto fail;
        }
        for (char *c = text; *c; c++)
            if (*c == '_')
                *c = ' ';
        l->lemma = text;
        l->senses = senses;
        l->n_senses = 0;
        for (size_t k = i; k < j; k++)
            for (int s = 0; s < es.e[k].n_syn; s++) {
                if ((rc = make_sense(wn, fs, &es.e[k], s + 1,
                                     es.off[es.e[k].i_off + (size_t)s],
                                     &senses[l->n_senses], err, err_len)) < 0)
                    goto fail;
                l->n_senses++;
            }
        senses += l->n_senses;
    }
    free(es.e);
    free(es.off);
    *out = wn;
    return 0;
fail:
    free(es.e);
    free(es.off);
    sn_wordnet_free(wn);
    return rc;
}

/* Read the files of dir (NULL: SN_WORDNET_DIR) into bufs (3 * N_POS of
 * them, freed by the caller); the exception lists when with_exc and there. */
static int read_files(const char *dir, int with_exc, sn_wordnet_files_t *fs,
                      char **bufs, char *err, size_t err_len)
{
    int rc = 0;

    dir = dir ? dir : SN_WORDNET_DIR;
    for (int p = 0; p < N_POS && rc == 0; p++) {
        static const char *const FMT[3] = {"index.%s", "data.%s", "%s.exc"};
        for (int k = 0; k < (with_exc ? 3 : 2); k++) {
            char name[32], path[4096];
            size_t len = 0;
            snprintf(name, sizeof name, FMT[k], POS_NAME[p]);
            if (sn__path_join(path, sizeof path, dir, name) < 0) {
                rc = sn__err(err, err_len, SN_ETOOBIG, "'%s': path too long",
                             dir);
                break;
            }
            if (k == 2 && !sn__file_exists(path))
                continue;
            if ((rc = sn__read_file(path, SN_WORDNET_MAX_FILE,
                                    &bufs[3 * p + k], &len, err,
                                    err_len)) < 0)
                break;
            const char **slot = k == 0 ? &fs->index[p]
                                : k == 1 ? &fs->data[p]
                                         : &fs->exc[p];
            size_t *slot_len = k == 0 ? &fs->index_len[p]
                               : k == 1 ? &fs->data_len[p]
                                        : &fs->exc_len[p];
            *slot = bufs[3 * p + k];
            *slot_len = len;
        }
    }
    return rc;
}

int sn_wordnet_load(const char *dir, int min_senses, sn_wordnet_t **out,
                    char *err, size_t err_len)
{
    sn_wordnet_files_t fs = {0};
    char *bufs[3 * N_POS] = {0};
    int rc;

    if (!out)
        return sn__err(err, err_len, SN_EARG, "sn_wordnet_load: no out");
    *out = NULL;
    rc = read_files(dir, 1, &fs, bufs, err, err_len);
    if (rc == 0)
        rc = sn_wordnet_parse(&fs, min_senses, out, err, err_len);
    for (int i = 0; i < 3 * N_POS; i++)
        free(bufs[i]);
    return rc;
}

int sn_wordnet_n_lemmas(const sn_wordnet_t *wn)
{
    return wn ? wn->n_lemmas : 0;
}

const sn_wordnet_lemma_t *sn_wordnet_lemma(const sn_wordnet_t *wn, int i)
{
    return wn && i >= 0 && i < wn->n_lemmas ? &wn->lemmas[i] : NULL;
}

const sn_wordnet_lemma_t *sn_wordnet_find(const sn_wordnet_t *wn,
                                          const char *lemma)
{
    char f[SN_WSD_MAX_WORD];
    int lo = 0, hi;

    if (!wn || sn_wsd_casefold(lemma, f, sizeof f, NULL, 0) < 0)
        return NULL;
    hi = wn->n_lemmas;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        const char *t = wn->lemmas[mid].lemma;
        int c = cmp_lemma(t, strlen(t), f, strlen(f));
        if (c == 0)
            return &wn->lemmas[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const sn_wsd_morph_t *sn_wordnet_morph(const sn_wordnet_t *wn)
{
    return wn ? wn->morph : NULL;
}

/* ---- synonyms, for query expansion ----------------------------------------------
 *
 * For each one-word lemma, the other words of its first synset in each of
 * its parts of speech (WordNet's first sense is its most frequent one), as
 * one string of words separated by spaces, multi-word synonyms split into
 * their words: "gui" -> "graphical user interface", "internet" -> "net
 * cyberspace". index/lexical.c adds them to a query's words at a
 * down-weight; why the first sense only is measured there. */

struct sn_wordnet_syn {
    arena_t arena;
    const char **lemma; /* sorted by byte order */
    const char **words;
    int n;
};

void sn_wordnet_syn_free(sn_wordnet_syn_t *s)
{
    if (!s)
        return;
    arena_free(&s->arena);
    free(s);
}

int sn_wordnet_syn_size(const sn_wordnet_syn_t *s)
{
    return s ? s->n : 0;
}

/* Append the words of the synset at `off` that are not `lemma` to buf
 * (space-separated, "_" as a space, adjective markers like "(a)" dropped,
 * a word already there not again); *used: bytes in buf. */
static int synset_words(const sn_wordnet_files_t *fs, int pos, uint32_t off,
                        const char *lemma, size_t lemma_len, char *buf,
                        size_t cap, size_t *used, char *err, size_t err_len)
{
    const char *line, *f, *lex;
    size_t n, k, flen, lex_len;
    uint32_t w_cnt;
    int rc;

    if ((rc = synset_line(fs->data[pos], fs->data_len[pos], pos, off, &line,
                          &n, &k, err, err_len)) < 0)
        return rc;
    if (!field(line, n, &k, &f, &flen) || flen != 2 ||
        num(f, flen, 16, &w_cnt) || w_cnt == 0)
        return sn__err(err, err_len, SN_ECORRUPT, "data.%s: synset %08u: "
                       "bad w_cnt", POS_NAME[pos], (unsigned)off);
    for (uint32_t i = 0; i < w_cnt; i++) {
        if (!field(line, n, &k, &f, &flen) ||
            !field(line, n, &k, &lex, &lex_len))
            return sn__err(err, err_len, SN_ECORRUPT, "data.%s: synset "
                           "%08u: fewer words than w_cnt", POS_NAME[pos],
                           (unsigned)off);
        if (flen > 3 && f[flen - 1] == ')') { /* "good(a)", "galore(ip)" */
            const char *open = memchr(f, '(', flen);
            if (open && open > f)
                flen = (size_t)(open - f);
        }
        if (flen >= SN_WSD_MAX_WORD)
            continue;
        char w[SN_WSD_MAX_WORD];
        for (size_t j = 0; j < flen; j++)
            w[j] = f[j] == '_' ? ' ' : f[j];
        if (flen == lemma_len && !strncasecmp(w, lemma, flen))
            continue; /* the lemma itself */
        int seen = 0; /* already there: as a whole word between spaces */
        for (size_t j = 0; !seen && j + flen <= *used; j++)
            seen = (j == 0 || buf[j - 1] == ' ') &&
                   (j + flen == *used || buf[j + flen] == ' ') &&
                   !strncasecmp(buf + j, w, flen);
        if (seen)
            continue;
        if (*used + flen + 1 >= cap)
            break; /* enough synonyms for one word */
        if (*used)
            buf[(*used)++] = ' ';
        memcpy(buf + *used, w, flen);
        *used += flen;
    }
    return 0;
}

int sn_wordnet_syn_parse(const sn_wordnet_files_t *fs, sn_wordnet_syn_t **out,
                         char *err, size_t err_len)
{
    entries_t es = {0};
    sn_wordnet_syn_t *sy = NULL;
    size_t i, j, n_one = 0;
    int rc;

    if (!out || !fs)
        return sn__err(err, err_len, SN_EARG, "sn_wordnet_syn_parse: bad "
                       "arguments");
    *out = NULL;
    if (!(sy = calloc(1, sizeof *sy)))
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    if ((rc = parse_indexes(fs, &es, err, err_len)) < 0)
        goto fail;
    for (i = 0; i < es.n; i++)
        n_one += !memchr(es.e[i].lemma, '_', es.e[i].lemma_len);
    sy->lemma = arena_alloc(&sy->arena, (n_one ? n_one : 1) *
                                            sizeof *sy->lemma,
                            sizeof(void *));
    sy->words = arena_alloc(&sy->arena, (n_one ? n_one : 1) *
                                            sizeof *sy->words,
                            sizeof(void *));
    if (!sy->lemma || !sy->words)
        goto oom;
    /* a lemma is a run of entries with the same text (one per pos) */
    for (i = 0; i < es.n; i = j) {
        char buf[SN_WORDNET_MAX_SYN];
        size_t used = 0;
        const entry_t *e = &es.e[i];
        for (j = i; j < es.n && !cmp_lemma(e->lemma, e->lemma_len,
                                           es.e[j].lemma, es.e[j].lemma_len);
             j++)
            ;
        if (memchr(e->lemma, '_', e->lemma_len))
            continue; /* queries are looked up a word at a time */
        for (size_t p = i; p < j; p++)
            if ((rc = synset_words(fs, es.e[p].pos, es.off[es.e[p].i_off],
                                   e->lemma, e->lemma_len, buf, sizeof buf,
                                   &used, err, err_len)) < 0)
                goto fail;
        if (!used)
            continue;
        if (!(sy->lemma[sy->n] = arena_str(&sy->arena, e->lemma,
                                           e->lemma_len)) ||
            !(sy->words[sy->n] = arena_str(&sy->arena, buf, used)))
            goto oom;
        sy->n++;
    }
    free(es.e);
    free(es.off);
    *out = sy;
    return 0;
oom:
    rc = sn__err(err, err_len, -ENOMEM, "out of memory");
fail:
    free(es.e);
    free(es.off);
    sn_wordnet_syn_free(sy);
    return rc;
}

int sn_wordnet_syn_load(const char *dir, sn_wordnet_syn_t **out, char *err,
                        size_t err_len)
{
    sn_wordnet_files_t fs = {0};
    char *bufs[3 * N_POS] = {0};
    int rc;

    if (!out)
        return sn__err(err, err_len, SN_EARG, "sn_wordnet_syn_load: no out");
    *out = NULL;
    rc = read_files(dir, 0, &fs, bufs, err, err_len);
    if (rc == 0)
        rc = sn_wordnet_syn_parse(&fs, out, err, err_len);
    for (int i = 0; i < 3 * N_POS; i++)
        free(bufs[i]);
    return rc;
}

const char *sn_wordnet_syn_find(const sn_wordnet_syn_t *s, const char *word,
                                size_t len)
{
    int lo = 0, hi;

    if (!s || !word)
        return NULL;
    hi = s->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        const char *t = s->lemma[mid];
        int c = cmp_lemma(t, strlen(t), word, len);
        if (c == 0)
            return s->words[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- exemplars and import ----------------------------------------------------------- */

int sn__wordnet_exemplars(const sn_wordnet_t *wn, const sn_wordnet_lemma_t *l,
                          int gloss_mode, sn__wn_exemplar_t **out, int *n_out,
                          char **buf, int *n_skipped, char *err,
                          size_t err_len)
{
    sn__wn_exemplar_t *v = NULL;
    char *b = NULL;
    size_t b_len = 0, b_used = 0, lemma_len = strlen(l->lemma);
    int n = 0, cap = 0, skipped = 0, rc;
    int32_t lemma_cp = (int32_t)sn__utf8_count(l->lemma, lemma_len);

    *out = NULL;
    *n_out = 0;
    *buf = NULL;
    if (n_skipped)
        *n_skipped = 0;
    for (int k = 0; k < l->n_senses; k++)
        cap += l->senses[k].n_examples + 1;
    if (gloss_mode == SN__GLOSS_PREFIX)
        for (int k = 0; k < l->n_senses; k++)
            b_len += lemma_len + 2 + strlen(l->senses[k].gloss) + 1;
    v = malloc((size_t)(cap ? cap : 1) * sizeof *v);
    b = malloc(b_len ? b_len : 1);
    if (!v || !b) {
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
        goto fail;
    }
    for (int k = 0; k < l->n_senses; k++) {
        const sn_wordnet_sense_t *s = &l->senses[k];
        for (int i = 0; i < s->n_examples; i++) {
            int32_t st, en;
            size_t len = strlen(s->examples[i]);
            rc = sn_wsd_find_word_ex(wn->morph, s->examples[i], len, l->lemma,
                                     &st, &en, NULL, 0);
            if (rc == SN_ENOTFOUND || rc == SN_EARG) {
                skipped++; /* not there, or a lemma with no words */
                continue;
            }
            if (rc < 0) {
                rc = sn__err(err, err_len, rc, "%s: example %d: %s", s->name,
                             i, sn_strerror(rc));
                goto fail;
            }
            v[n++] = (sn__wn_exemplar_t){k, s->examples[i], len, st, en, 0};
        }
        if (gloss_mode == SN__GLOSS_PREFIX && s->gloss[0]) {
            char *t = b + b_used;
            int w = snprintf(t, b_len - b_used, "%s: %s", l->lemma, s->gloss);
            v[n++] = (sn__wn_exemplar_t){k, t, (size_t)w, 0, lemma_cp, 1};
            b_used += (size_t)w + 1;
        }
    }
    *out = v;
    *n_out = n;
    *buf = b;
    if (n_skipped)
        *n_skipped = skipped;
    return 0;
fail:
    free(v);
    free(b);
    return rc;
}

/* The rows of one batch and what they point into. */
typedef struct {
    sn_wsd_span_t *spans;
    sn_sense_row_t *rows;
    sn_wsd_vec_t *vecs;
    int *row_of;         /* span -> row */
    char **bufs;         /* gloss texts, one per lemma */
    int n_rows, n_spans, n_bufs, cap_rows, cap_bufs;
    sn_wordnet_import_stats_t st; /* of this batch, until it is stored */
} batch_t;

static void batch_clear(batch_t *b)
{
    for (int i = 0; i < b->n_bufs; i++)
        free(b->bufs[i]);
    b->n_rows = b->n_spans = b->n_bufs = 0;
    memset(&b->st, 0, sizeof b->st);
}

static void batch_free(batch_t *b)
{
    batch_clear(b);
    free(b->spans);
    free(b->rows);
    free(b->vecs);
    free(b->row_of);
    free(b->bufs);
}

static int batch_reserve(batch_t *b, int more)
{
    if (b->n_rows + more > b->cap_rows) {
        int cap = (b->n_rows + more) * 2;
        sn_wsd_span_t *sp = realloc(b->spans, (size_t)cap * sizeof *sp);
        if (sp)
            b->spans = sp;
        sn_sense_row_t *r = sp ? realloc(b->rows, (size_t)cap * sizeof *r)
                               : NULL;
        if (r)
            b->rows = r;
        int *ro = r ? realloc(b->row_of, (size_t)cap * sizeof *ro) : NULL;
        if (ro)
            b->row_of = ro;
        sn_wsd_vec_t *vv = ro ? realloc(b->vecs, (size_t)cap * sizeof *vv)
                              : NULL;
        if (!vv)
            return -ENOMEM;
        b->vecs = vv;
        b->cap_rows = cap;
    }
    if (b->n_bufs == b->cap_bufs) {
        int cap = b->cap_bufs ? b->cap_bufs * 2 : 64;
        char **p = realloc(b->bufs, (size_t)cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        b->bufs = p;
        b->cap_bufs = cap;
    }
    return 0;
}

/* Add lemma l's rows to the batch. */
static int batch_add(batch_t *b, const sn_wordnet_t *wn,
                     const sn_wordnet_lemma_t *l, char *err, size_t err_len)
{
    sn_wordnet_import_stats_t *stats = &b->st;
    sn__wn_exemplar_t *ex = NULL;
    char *buf = NULL;
    int n_ex, skipped, rc;
    uint8_t *has = NULL;

    if ((rc = sn__wordnet_exemplars(wn, l, SN__GLOSS_PREFIX, &ex, &n_ex, &buf,
                                    &skipped, err, err_len)) < 0)
        return rc;
    if (!(has = calloc((size_t)l->n_senses, 1)) ||
        batch_reserve(b, n_ex + l->n_senses) < 0) {
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
        goto fail;
    }
    b->bufs[b->n_bufs++] = buf;
    buf = NULL;
    for (int i = 0; i < n_ex; i++) {
        const sn_wordnet_sense_t *s = &l->senses[ex[i].sense];
        has[ex[i].sense] = 1;
        b->row_of[b->n_spans] = b->n_rows;
        b->spans[b->n_spans++] = (sn_wsd_span_t){ex[i].text, ex[i].len,
                                                 ex[i].start, ex[i].end};
        b->rows[b->n_rows++] = (sn_sense_row_t){
            .lemma = l->lemma, .sense = s->name,
            .gloss = s->gloss[0] ? s->gloss : NULL, .example = ex[i].text,
            .example_len = ex[i].len, .start = ex[i].start,
            .end = ex[i].end};
        if (ex[i].is_gloss)
            stats->n_glosses++;
        else
            stats->n_examples++;
    }
    /* a sense with nothing to embed is still listed, by its gloss */
    for (int k = 0; k < l->n_senses; k++)
        if (!has[k])
            b->rows[b->n_rows++] = (sn_sense_row_t){
                .lemma = l->lemma, .sense = l->senses[k].name,
                .gloss = l->senses[k].gloss[0] ? l->senses[k].gloss : NULL};
    stats->n_skipped += skipped;
    stats->n_senses += l->n_senses;
    stats->n_lemmas++;
    rc = 0;
fail:
    free(has);
    free(buf);
    free(ex);
    return rc;
}

/* Embed the batch and store it in one transaction. */
static int batch_flush(batch_t *b, sn_senses_t *s, const sn_model_t *model,
                       sn_ctx_t *ctx, sn_wordnet_import_stats_t *total,
                       char *err, size_t err_len)
{
    int rc, hidden = sn_model_hidden(model), dim = sn_model_dim(model);

    if (b->n_rows == 0)
        return 0;
    if (b->n_spans) {
        if ((rc = sn_wsd_embed(model, ctx, b->spans, b->n_spans, b->vecs, err,
                               err_len)) < 0)
            return rc;
        hidden = b->vecs[0].hidden;
        dim = b->vecs[0].dim;
        for (int i = 0; i < b->n_spans; i++) {
            b->rows[b->row_of[i]].word = b->vecs[i].word;
            b->rows[b->row_of[i]].sentence = b->vecs[i].sentence;
        }
    }
    rc = sn_senses_put(s, sn_model_name(model), hidden, dim, b->rows,
                       b->n_rows, 1, err, err_len);
    if (rc == 0) {
        total->n_lemmas += b->st.n_lemmas;
        total->n_senses += b->st.n_senses;
        total->n_examples += b->st.n_examples;
        total->n_skipped += b->st.n_skipped;
        total->n_glosses += b->st.n_glosses;
    }
    for (int i = 0; i < b->n_spans; i++)
        sn_wsd_vec_free(&b->vecs[i]);
    batch_clear(b);
    return rc;
}

int sn_wordnet_import(const sn_wordnet_t *wn, sn_senses_t *s,
                      const sn_model_t *model, sn_ctx_t *ctx,
                      const sn_wordnet_import_opts_t *opts,
                      sn_wordnet_import_stats_t *stats, char *err,
                      size_t err_len)
{
    sn_wordnet_import_stats_t st = {0};
    batch_t b = {0};
    int first, last, batch, rc = 0, done = 0;

    if (stats)
        memset(stats, 0, sizeof *stats);
    if (!wn || !s || !model || !ctx)
        return sn__err(err, err_len, SN_EARG, "sn_wordnet_import: bad "
                       "arguments");
    first = opts && opts->offset > 0 ? opts->offset : 0;
    if (first > wn->n_lemmas)
        first = wn->n_lemmas;
    last = wn->n_lemmas;
    if (opts && opts->limit > 0 && opts->limit < last - first)
        last = first + opts->limit;
    batch = opts && opts->batch > 0 ? opts->batch : SN_WORDNET_BATCH;
    if (batch > SN_WSD_MAX_BATCH)
        batch = SN_WSD_MAX_BATCH;
    for (int i = first; i < last; i++) {
        if ((rc = batch_add(&b, wn, &wn->lemmas[i], err, err_len)) < 0)
            goto fail;
        done++;
        if (b.n_spans >= batch || i + 1 == last) {
            if ((rc = batch_flush(&b, s, model, ctx, &st, err, err_len)) < 0)
                goto fail;
            if (opts && opts->progress)
                opts->progress(opts->ud, done, last - first,
                               st.n_examples + st.n_glosses);
        }
    }
fail:
    batch_free(&b);
    if (stats)
        *stats = st;
    return rc;
}
