/*
 * bench_wsd.c -- word sense disambiguation accuracy, leave-one-out over
 * WordNet 3.0's example sentences, and the measurements behind the
 * scoring of sn_wsd_which (index/wsd_int.h, SN__WSD_SCORING_INIT).
 *
 * The task: every quoted example sentence of a synset that contains one of
 * its polysemous lemmas (or an inflection of it) is a query; its answer is
 * that synset among all the lemma's senses, over every part of speech
 * (the system is not told the part of speech). Each query is predicted
 * from the lemma's other exemplars -- its other examples, and with
 * "+gloss" each sense's gloss as the text "<lemma>: <definition>" -- with
 * its own sentence left out. Exactly what the import stores and
 * sn_wsd_which computes: the same exemplars (sn__wordnet_exemplars), the
 * same vectors (sn_wsd_embed), the same scoring (sn__wsd_score); only the
 * SQLite round trip is skipped.
 *
 * Printed, for the lemmas sampled (all with --limit 0):
 *   - baselines: the most frequent sense (WordNet's first sense) of the
 *     lemma overall, and of the query's own part of speech (which the
 *     system does not know: a stronger baseline than it is fair to ask
 *     for); random choice (1/n_senses on average);
 *   - each scoring variant: alpha (the weight of the word's contextual
 *     vector against the sentence vector: 1 word only, 0 sentence only) x
 *     nearest exemplar or per-sense centroid x with or without gloss
 *     exemplars, on a dev half (lemmas at even positions of the sample)
 *     and a test half (odd), and all together;
 *   - the chosen variant restricted to the query's part of speech.
 * With --demo DIR, the same variants on data/senses-demo.jsonl (as the
 * inventory) against data/senses-demo-queries.jsonl.
 *
 * With --import DB, instead: import WordNet into the inventory in DB with
 * sn_wordnet_import (the first --limit lemmas; 0: all) and time it.
 *
 * Usage: bench_wsd [--limit N] [--wordnet DIR] [--model PATH] [--demo DIR]
 *                  [--batch N] [--no-wordnet] [--import DB]
 * --limit N samples N of the lemmas that have at least one usable example,
 * evenly spaced through the alphabet (default 2000; 0: every one).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "sense/sense.h"
#include "sense/wordnet.h"
#include "sense/wsd.h"

#include "../index/wsd_int.h"

#define N_ALPHA 5
static const float ALPHAS[N_ALPHA] = {0.0f, 0.25f, 0.5f, 0.75f, 1.0f};
#define MAX_VARIANTS 64

/* A scoring variant, and whether gloss exemplars take part. */
typedef struct {
    sn__wsd_scoring_t p;
    int gloss;
} variant_t;

static variant_t VARIANTS[MAX_VARIANTS];
static int n_variants;

/* alpha x nearest/centroid x raw/centered x examples/+gloss, then, with
 * glosses, nearest exemplar with the glosses scored on the sentence only
 * (alpha_gloss 0) */
static void make_variants(void)
{
    for (int gl = 0; gl < 2; gl++)
        for (int center = 0; center < 2; center++)
            for (int centroid = 0; centroid < 2; centroid++)
                for (int a = 0; a < N_ALPHA; a++)
                    VARIANTS[n_variants++] = (variant_t){
                        {ALPHAS[a], centroid, center, -1.0f}, gl};
    for (int center = 0; center < 2; center++)
        for (int a = 1; a < N_ALPHA; a++)
            VARIANTS[n_variants++] = (variant_t){
                {ALPHAS[a], 0, center, 0.0f}, 1};
}

typedef struct {
    const sn_wordnet_lemma_t *l;
    sn__wn_exemplar_t *ex;
    int n_ex;
    char *buf;
    sn__wsd_inv_t inv;
} lemma_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void variant_name(int v, char *buf, size_t len)
{
    const variant_t *x = &VARIANTS[v];
    char ag[24] = "";
    if (x->p.alpha_gloss >= 0)
        snprintf(ag, sizeof ag, " (glosses %.2f)", (double)x->p.alpha_gloss);
    snprintf(buf, len, "alpha %.2f %-8s %-8s %s%s", (double)x->p.alpha,
             x->p.centroid ? "centroid" : "nearest",
             x->p.center ? "centered" : "raw", x->gloss ? "+gloss" : "examples",
             ag);
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "bench_wsd: %s: %s\n", what, err);
    exit(1);
}

/* Embed n spans in batches into vecs. */
static void embed_all(const sn_model_t *m, sn_ctx_t *ctx,
                      const sn_wsd_span_t *spans, int n, sn_wsd_vec_t *vecs,
                      int batch)
{
    char err[512];
    for (int i = 0; i < n; i += batch) {
        int k = n - i < batch ? n - i : batch;
        if (sn_wsd_embed(m, ctx, spans + i, k, vecs + i, err, sizeof err) < 0)
            die("embed", err);
    }
}

/* Fill an inventory's exemplar arrays from vecs (n_ex rows). */
static void fill_inv(sn__wsd_inv_t *inv, int n_senses, const int *ex_sense,
                     const sn_wsd_vec_t *vecs, int n_ex)
{
    inv->n_senses = n_senses;
    inv->n_ex = n_ex;
    inv->hidden = vecs[0].hidden;
    inv->dim = vecs[0].dim;
    inv->ex_sense = malloc((size_t)n_ex * sizeof *inv->ex_sense);
    inv->word = malloc((size_t)n_ex * (size_t)inv->hidden * sizeof(float));
    inv->sentence = malloc((size_t)n_ex * (size_t)inv->dim * sizeof(float));
    inv->n_examples = calloc((size_t)n_senses, sizeof *inv->n_examples);
    inv->ex_gloss = calloc((size_t)n_ex, 1);
    if (!inv->ex_sense || !inv->word || !inv->sentence || !inv->n_examples ||
        !inv->ex_gloss)
        die("memory", "out of memory");
    for (int i = 0; i < n_ex; i++) {
        inv->ex_sense[i] = ex_sense[i];
        inv->n_examples[ex_sense[i]]++;
        memcpy(inv->word + (size_t)i * inv->hidden, vecs[i].word,
               (size_t)inv->hidden * sizeof(float));
        memcpy(inv->sentence + (size_t)i * inv->dim, vecs[i].sentence,
               (size_t)inv->dim * sizeof(float));
    }
}

/* ---- WordNet leave-one-out ------------------------------------------------------- */

static void run_wordnet(const char *dir, const sn_model_t *m, sn_ctx_t *ctx,
                        int limit, int batch)
{
    char err[512];
    sn_wordnet_t *wn = NULL;
    double t0 = now_s();

    if (sn_wordnet_load(dir, 2, &wn, err, sizeof err) < 0)
        die("wordnet", err);
    int n_all = sn_wordnet_n_lemmas(wn);
    printf("wordnet: %d polysemous lemmas, parsed in %.2f s\n", n_all,
           now_s() - t0);

    /* the lemmas with at least one usable example */
    lemma_t *all = calloc((size_t)n_all, sizeof *all);
    int n_usable = 0;
    int64_t n_skipped = 0;
    for (int i = 0; i < n_all; i++) {
        lemma_t *L = &all[n_usable];
        int skipped, has = 0;
        L->l = sn_wordnet_lemma(wn, i);
        if (sn__wordnet_exemplars(wn, L->l, SN__GLOSS_PREFIX, &L->ex,
                                  &L->n_ex, &L->buf, &skipped, err,
                                  sizeof err) < 0)
            die("exemplars", err);
        n_skipped += skipped;
        for (int k = 0; k < L->n_ex && !has; k++)
            has = !L->ex[k].is_gloss;
        if (has) {
            n_usable++;
        } else {
            free(L->ex);
            free(L->buf);
            memset(L, 0, sizeof *L);
        }
    }
    printf("lemmas with a usable example: %d (examples without their "
           "lemma, skipped: %lld)\n", n_usable, (long long)n_skipped);

    /* the sample: evenly spaced */
    int n = limit > 0 && limit < n_usable ? limit : n_usable;
    lemma_t *ls = calloc((size_t)n, sizeof *ls);
    for (int i = 0; i < n; i++) {
        int j = (int)((int64_t)i * n_usable / n);
        ls[i] = all[j];
        all[j].ex = NULL;
        all[j].buf = NULL;
    }
    for (int i = 0; i < n_usable; i++) {
        free(all[i].ex);
        free(all[i].buf);
    }
    free(all);

    /* embed every exemplar of the sample */
    int n_texts = 0, n_queries = 0, n_gloss = 0;
    for (int i = 0; i < n; i++)
        n_texts += ls[i].n_ex;
    sn_wsd_span_t *spans = malloc((size_t)n_texts * sizeof *spans);
    sn_wsd_vec_t *vecs = calloc((size_t)n_texts, sizeof *vecs);
    int *ex_sense = malloc((size_t)n_texts * sizeof *ex_sense);
    if (!spans || !vecs || !ex_sense)
        die("memory", "out of memory");
    for (int i = 0, t = 0; i < n; i++)
        for (int k = 0; k < ls[i].n_ex; k++, t++) {
            const sn__wn_exemplar_t *e = &ls[i].ex[k];
            spans[t] = (sn_wsd_span_t){e->text, e->len, e->start, e->end};
            ex_sense[t] = e->sense;
            n_queries += !e->is_gloss;
            n_gloss += e->is_gloss;
        }
    t0 = now_s();
    embed_all(m, ctx, spans, n_texts, vecs, batch);
    double t_embed = now_s() - t0;
    printf("sample: %d lemmas, %d example queries, %d gloss exemplars; "
           "embedded %d texts in %.1f s (%.0f texts/s)\n", n, n_queries,
           n_gloss, n_texts, t_embed, n_texts / t_embed);
    for (int i = 0, t = 0; i < n; i++) {
        fill_inv(&ls[i].inv, ls[i].l->n_senses, ex_sense + t, vecs + t,
                 ls[i].n_ex);
        for (int k = 0; k < ls[i].n_ex; k++)
            ls[i].inv.ex_gloss[k] = (uint8_t)ls[i].ex[k].is_gloss;
        t += ls[i].n_ex;
    }

    /* leave one out */
    double right[MAX_VARIANTS][3] = {{0}}, total[3] = {0};
    double mfs[2] = {0}, mfs_pos[2] = {0}, rnd[2] = {0}, chosen_pos[2] = {0};
    double rnd_pos[2] = {0};
    int chosen = -1;
    const sn__wsd_scoring_t which = SN__WSD_SCORING_INIT;
    for (int v = 0; v < n_variants; v++) {
        const sn__wsd_scoring_t *p = &VARIANTS[v].p;
        if (VARIANTS[v].gloss && p->centroid == which.centroid &&
            p->center == which.center &&
            fabsf(p->alpha - which.alpha) < 1e-6f &&
            fabsf(p->alpha_gloss - which.alpha_gloss) < 1e-6f)
            chosen = v;
    }
    t0 = now_s();
    for (int i = 0; i < n; i++) {
        lemma_t *L = &ls[i];
        int half = i % 2, ns = L->l->n_senses;
        uint8_t *skip = malloc((size_t)L->n_ex);
        float *scores = malloc((size_t)ns * sizeof *scores);
        if (!skip || !scores)
            die("memory", "out of memory");
        for (int q = 0; q < L->n_ex; q++) {
            if (L->ex[q].is_gloss)
                continue;
            int gold = L->ex[q].sense;
            const sn_wordnet_sense_t *gs = &L->l->senses[gold];
            const float *qw = L->inv.word + (size_t)q * L->inv.hidden;
            const float *qs = L->inv.sentence + (size_t)q * L->inv.dim;
            int n_pos = 0, reach = 0;
            for (int k = 0; k < ns; k++)
                n_pos += L->l->senses[k].pos == gs->pos;
            for (int k = 0; k < L->n_ex; k++)
                reach |= k != q && !L->ex[k].is_gloss && L->ex[k].sense == gold;
            total[half]++;
            total[2] += reach;
            mfs[half] += gold == 0;
            mfs_pos[half] += gs->number == 1;
            rnd[half] += 1.0 / ns;
            rnd_pos[half] += 1.0 / n_pos;
            for (int v = 0; v < n_variants; v++) {
                for (int k = 0; k < L->n_ex; k++)
                    skip[k] = k == q || (!VARIANTS[v].gloss &&
                                         L->ex[k].is_gloss);
                int best = sn__wsd_score(&L->inv, qw, qs, &VARIANTS[v].p,
                                         skip, scores);
                if (best < -1)
                    die("score", "out of memory");
                right[v][half] += best == gold;
                right[v][2] += reach && best == gold;
                if (v == chosen) {
                    int bp = -1;
                    for (int k = 0; k < ns; k++)
                        if (L->l->senses[k].pos == gs->pos &&
                            scores[k] > -INFINITY &&
                            (bp < 0 || scores[k] > scores[bp]))
                            bp = k;
                    chosen_pos[half] += bp == gold;
                }
            }
        }
        free(skip);
        free(scores);
    }
    double t_score = now_s() - t0;

#define PCT(x, h) (100.0 * (x)[h] / (total[h] ? total[h] : 1))
#define PCT_ALL(x) (100.0 * ((x)[0] + (x)[1]) / (total[0] + total[1]))
    printf("\nleave-one-out accuracy, %d + %d = %d queries (dev / test / "
           "all), scored in %.2f s\n", (int)total[0], (int)total[1],
           (int)(total[0] + total[1]), t_score);
    printf("  (reachable: the %d queries whose sense has another example "
           "sentence)\n", (int)total[2]);
    printf("  %-50s %6s %6s %6s %6s\n", "", "dev", "test", "all",
           "reach");
    printf("  %-50s %5.1f%% %5.1f%% %5.1f%%\n", "random (1/n senses)",
           PCT(rnd, 0), PCT(rnd, 1), PCT_ALL(rnd));
    printf("  %-50s %5.1f%% %5.1f%% %5.1f%%\n", "MFS: first sense of the lemma",
           PCT(mfs, 0), PCT(mfs, 1), PCT_ALL(mfs));
    printf("  %-50s %5.1f%% %5.1f%% %5.1f%%\n", "random within the pos (given)",
           PCT(rnd_pos, 0), PCT(rnd_pos, 1), PCT_ALL(rnd_pos));
    printf("  %-50s %5.1f%% %5.1f%% %5.1f%%\n", "MFS of the pos (pos given)",
           PCT(mfs_pos, 0), PCT(mfs_pos, 1), PCT_ALL(mfs_pos));
    for (int v = 0; v < n_variants; v++) {
        char name[80];
        variant_name(v, name, sizeof name);
        printf("  %-50s %5.1f%% %5.1f%% %5.1f%% %5.1f%%%s\n", name,
               PCT(right[v], 0), PCT(right[v], 1), PCT_ALL(right[v]),
               PCT(right[v], 2), v == chosen ? "  <- sn_wsd_which" : "");
    }
    if (chosen >= 0)
        printf("  %-50s %5.1f%% %5.1f%% %5.1f%%\n",
               "sn_wsd_which, pos given", PCT(chosen_pos, 0),
               PCT(chosen_pos, 1), PCT_ALL(chosen_pos));
#undef PCT
#undef PCT_ALL

    for (int i = 0; i < n; i++) {
        free(ls[i].ex);
        free(ls[i].buf);
        sn__wsd_inv_free(&ls[i].inv);
    }
    for (int t = 0; t < n_texts; t++)
        sn_wsd_vec_free(&vecs[t]);
    free(ls);
    free(spans);
    free(vecs);
    free(ex_sense);
    sn_wordnet_free(wn);
}

/* ---- the demo inventory ------------------------------------------------------------ */

typedef struct {
    char *lemma, *sense, *text;
    int32_t start, end;
    int is_gloss;
} row_t;

static void push_row(row_t **v, int *n, int *cap, const char *lemma,
                     const char *sense, const char *text, int is_gloss)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        if (!(*v = realloc(*v, (size_t)*cap * sizeof **v)))
            die("memory", "out of memory");
    }
    (*v)[*n] = (row_t){strdup(lemma), strdup(sense), strdup(text), 0, 0,
                       is_gloss};
    (*n)++;
}

/* The demo files: senses (one line per sense: lemma, sense, gloss,
 * examples) become exemplar rows, each sense's examples then its gloss as
 * "<lemma>: <gloss>"; queries (lemma, sense, text) rows of their own. */
static int read_jsonl(const char *path, row_t **out, int senses)
{
    FILE *fp = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    int n = 0, capr = 0;
    row_t *v = NULL;

    if (!fp)
        die(path, "cannot open");
    while (getline(&line, &cap, fp) > 0) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!o)
            die(path, je.text);
        const char *lemma = json_string_value(json_object_get(o, "lemma"));
        const char *sense = json_string_value(json_object_get(o, "sense"));
        const char *gloss = json_string_value(json_object_get(o, "gloss"));
        json_t *ex = json_object_get(o, senses ? "examples" : "text");
        if (!lemma || !sense || !ex || (senses && !gloss))
            die(path, "a line without lemma, sense and examples/text");
        if (senses) {
            char g[2048];
            for (size_t i = 0; i < json_array_size(ex); i++)
                push_row(&v, &n, &capr, lemma, sense,
                         json_string_value(json_array_get(ex, i)), 0);
            snprintf(g, sizeof g, "%s: %s", lemma, gloss);
            push_row(&v, &n, &capr, lemma, sense, g, 1);
        } else {
            push_row(&v, &n, &capr, lemma, sense, json_string_value(ex), 0);
        }
        json_decref(o);
    }
    free(line);
    fclose(fp);
    *out = v;
    return n;
}

static void run_demo(const char *dir, const sn_model_t *m, sn_ctx_t *ctx,
                     int batch)
{
    char path[4096], err[512];
    row_t *ex = NULL, *qs = NULL;
    int n_ex, n_q;

    snprintf(path, sizeof path, "%s/senses-demo.jsonl", dir);
    n_ex = read_jsonl(path, &ex, 1);
    snprintf(path, sizeof path, "%s/senses-demo-queries.jsonl", dir);
    n_q = read_jsonl(path, &qs, 0);
    sn_wsd_span_t *sp = malloc((size_t)(n_ex + n_q) * sizeof *sp);
    sn_wsd_vec_t *vecs = calloc((size_t)(n_ex + n_q), sizeof *vecs);
    if (!sp || !vecs)
        die("memory", "out of memory");
    for (int i = 0; i < n_ex + n_q; i++) {
        row_t *r = i < n_ex ? &ex[i] : &qs[i - n_ex];
        if (sn_wsd_find_word(r->text, strlen(r->text), r->lemma, &r->start,
                             &r->end, err, sizeof err) < 0)
            die(r->text, err);
        sp[i] = (sn_wsd_span_t){r->text, strlen(r->text), r->start, r->end};
    }
    embed_all(m, ctx, sp, n_ex + n_q, vecs, batch);

    int right[MAX_VARIANTS] = {0};
    int *ex_sense = malloc((size_t)n_ex * sizeof *ex_sense);
    uint8_t *skip = malloc((size_t)n_ex);
    float scores[64];
    for (int q = 0; q < n_q; q++) {
        /* the lemma's inventory: its rows of the demo file, in a run */
        const char *names[64];
        int n_senses = 0, n_rows = 0, first = -1, gold = -1;
        for (int i = 0; i < n_ex; i++) {
            if (strcmp(ex[i].lemma, qs[q].lemma) != 0)
                continue;
            if (first < 0)
                first = i;
            int k = 0;
            while (k < n_senses && strcmp(names[k], ex[i].sense) != 0)
                k++;
            if (k == n_senses && n_senses < 64)
                names[n_senses++] = ex[i].sense;
            ex_sense[n_rows++] = k;
        }
        for (int k = 0; k < n_senses; k++)
            if (!strcmp(names[k], qs[q].sense))
                gold = k;
        if (first < 0 || gold < 0)
            die(qs[q].text, "query lemma or sense not in the inventory");
        sn__wsd_inv_t inv = {0};
        fill_inv(&inv, n_senses, ex_sense, vecs + first, n_rows);
        for (int i = 0; i < n_rows; i++)
            inv.ex_gloss[i] = (uint8_t)ex[first + i].is_gloss;
        for (int v = 0; v < n_variants; v++) {
            const sn_wsd_vec_t *qv = &vecs[n_ex + q];
            for (int i = 0; i < n_rows; i++)
                skip[i] = !VARIANTS[v].gloss && inv.ex_gloss[i];
            right[v] += sn__wsd_score(&inv, qv->word, qv->sentence,
                                      &VARIANTS[v].p, skip, scores) == gold;
        }
        sn__wsd_inv_free(&inv);
    }
    printf("\ndemo inventory: %d exemplars (glosses included), %d queries\n",
           n_ex, n_q);
    for (int v = 0; v < n_variants; v++) {
        char name[80];
        variant_name(v, name, sizeof name);
        printf("  %-50s %5.1f%% (%d/%d)\n", name, 100.0 * right[v] / n_q,
               right[v], n_q);
    }
    for (int i = 0; i < n_ex + n_q; i++) {
        row_t *r = i < n_ex ? &ex[i] : &qs[i - n_ex];
        free(r->lemma);
        free(r->sense);
        free(r->text);
        sn_wsd_vec_free(&vecs[i]);
    }
    free(ex);
    free(qs);
    free(sp);
    free(vecs);
    free(ex_sense);
    free(skip);
}

/* ---- the full import ------------------------------------------------------------------ */

static void progress(void *ud, int done, int total, int64_t n_exemplars)
{
    double *t0 = ud;
    if (done == total || done % 2000 < 40)
        fprintf(stderr, "\r  %d/%d lemmas, %lld exemplars, %.0f s", done,
                total, (long long)n_exemplars, now_s() - *t0);
}

static void run_import(const char *dir, const char *db, const sn_model_t *m,
                       sn_ctx_t *ctx, int limit, int batch)
{
    char err[512];
    sn_wordnet_t *wn = NULL;
    sn_senses_t *s = NULL;
    sn_wordnet_import_stats_t st;
    sn_senses_count_t c;
    double t0 = now_s();

    if (sn_wordnet_load(dir, 2, &wn, err, sizeof err) < 0)
        die("wordnet", err);
    if (sn_senses_open(db, &s, err, sizeof err) < 0)
        die("inventory", err);
    sn_wordnet_import_opts_t o = {0, limit, batch, progress, &t0};
    if (sn_wordnet_import(wn, s, m, ctx, &o, &st, err, sizeof err) < 0)
        die("import", err);
    double t = now_s() - t0;
    if (sn_senses_count(s, sn_model_name(m), &c, err, sizeof err) < 0)
        die("count", err);
    fprintf(stderr, "\n");
    printf("import into %s: %lld lemmas, %lld senses, %lld example "
           "exemplars (%lld examples without their lemma skipped), %lld "
           "gloss exemplars in %.1f s (%.0f texts/s); the inventory holds "
           "%lld lemmas, %lld senses, %lld exemplars\n", db,
           (long long)st.n_lemmas, (long long)st.n_senses,
           (long long)st.n_examples, (long long)st.n_skipped,
           (long long)st.n_glosses, t, (st.n_examples + st.n_glosses) / t,
           (long long)c.n_lemmas, (long long)c.n_senses,
           (long long)c.n_examples);
    sn_senses_close(s);
    sn_wordnet_free(wn);
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *model = "default", *demo = NULL, *db = NULL;
    int limit = 2000, batch = SN_WORDNET_BATCH, wordnet = 1;
    char err[512];

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--limit") && i + 1 < argc)
            limit = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--wordnet") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--model") && i + 1 < argc)
            model = argv[++i];
        else if (!strcmp(argv[i], "--demo") && i + 1 < argc)
            demo = argv[++i];
        else if (!strcmp(argv[i], "--import") && i + 1 < argc)
            db = argv[++i];
        else if (!strcmp(argv[i], "--no-wordnet"))
            wordnet = 0;
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_wsd [--limit N] [--wordnet DIR] "
                            "[--model PATH] [--demo DATADIR] [--no-wordnet] "
                            "[--batch N] [--import DB]\n");
            return 2;
        }
    }
    if (batch < 1)
        batch = 1;
    make_variants();
    sn_model_t *m = NULL;
    if (sn_model_load(model, &m, err, sizeof err) < 0)
        die("model", err);
    sn_ctx_t *ctx = sn_ctx_new(m);
    if (!ctx)
        die("model", "out of memory");
    printf("model: %s\n", sn_model_name(m));
    if (db)
        run_import(dir, db, m, ctx, limit, batch);
    else if (wordnet)
        run_wordnet(dir, m, ctx, limit, batch);
    if (demo)
        run_demo(demo, m, ctx, batch);
    sn_ctx_free(ctx);
    sn_model_free(m);
    return 0;
}
