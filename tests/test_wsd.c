/*
 * test_wsd.c -- word sense disambiguation (index/wsd.c, senses.c,
 * wordnet.c): locating words with their inflections, the morph table, the
 * WordNet parsers on hand-made files and their errors, the inventory in a
 * temporary database (add, list, remove, count, replace, errors), and,
 * with the default model (a missing one fails, telling to run
 * scripts/setup): word vectors, sn_wsd_which on the demo inventory
 * (data/senses-demo.jsonl against data/senses-demo-queries.jsonl, at least
 * 90% right), its errors, and the WordNet import on a hand-made database
 * and on a slice of the real one when it is installed.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "check.h"
#include "sense/sense.h"
#include "sense/store.h"
#include "sense/wordnet.h"
#include "sense/wsd.h"

#include "../index/wsd_int.h"

static char err[1024];

/* find `word` in `text` and check the span */
static void find_ok(const sn_wsd_morph_t *m, const char *text,
                    const char *word, int32_t start, int32_t end)
{
    int32_t s = -1, e = -1;
    int rc = sn_wsd_find_word_ex(m, text, strlen(text), word, &s, &e, err,
                                 sizeof err);
    if (rc < 0 || s != start || e != end) {
        fprintf(stderr, "find '%s' in \"%s\": rc %d [%d, %d), expected "
                        "[%d, %d): %s\n", word, text, rc, s, e, start, end,
                rc < 0 ? err : "");
        exit(1);
    }
}

static void test_find_word(void)
{
    int32_t s, e;

    /* case, whole words, inflections */
    find_ok(NULL, "The Banks of the river", "bank", 4, 9);
    find_ok(NULL, "I like PYTHON.", "python", 7, 13);
    find_ok(NULL, "Bats fly", "bat", 0, 4);
    find_ok(NULL, "he was batting well", "bat", 7, 14);
    find_ok(NULL, "she batted it away", "bat", 4, 10);
    find_ok(NULL, "fruit flies", "fly", 6, 11);
    find_ok(NULL, "two mice ran", "mouse", 4, 8);
    find_ok(NULL, "the geese flew", "goose", 4, 9);
    find_ok(NULL, "a bigger one", "big", 2, 8);
    find_ok(NULL, "baking bread", "bake", 0, 6);
    find_ok(NULL, "three boxes", "box", 6, 11);
    find_ok(NULL, "the churches", "church", 4, 12);
    find_ok(NULL, "It was the best day", "good", 11, 15);
    find_ok(NULL, "Python's syntax", "python", 0, 6);
    /* the first exact occurrence beats an earlier inflected one */
    find_ok(NULL, "bats flew past the bat", "bat", 19, 22);
    /* multi-word lemmas, inflected, across hyphens */
    find_ok(NULL, "The plane took off at noon", "take off", 10, 18);
    find_ok(NULL, "The plane took off at noon", "take_off", 10, 18);
    find_ok(NULL, "an X-ray image", "x ray", 3, 8);
    /* code points, not bytes */
    find_ok(NULL, "na\xc3\xafve bank", "bank", 6, 10);
    find_ok(NULL, "Le CAF\xc3\x89 noir", "caf\xc3\xa9", 3, 7);
    /* not found: substrings are not words; short stems are not inflections */
    CHECK_FAILS_WITH(sn_wsd_find_word("combat acrobatics", 17, "bat", &s, &e,
                                      err, sizeof err),
                     err, "word 'bat' not found in text");
    CHECK_EQ(sn_wsd_find_word("combat", 6, "bat", &s, &e, err, sizeof err),
             SN_ENOTFOUND);
    CHECK_EQ(sn_wsd_find_word("a bed", 5, "be", &s, &e, err, sizeof err),
             SN_ENOTFOUND);
    CHECK_EQ(sn_wsd_find_word("take the off ramp", 17, "take off", &s, &e,
                              err, sizeof err),
             SN_ENOTFOUND);
    CHECK_EQ(sn_wsd_find_word("", 0, "bat", &s, &e, err, sizeof err),
             SN_ENOTFOUND);
    /* bad input */
    CHECK_FAILS_WITH(sn_wsd_find_word("text", 4, "", &s, &e, err, sizeof err),
                     err, "empty word");
    CHECK_FAILS_WITH(sn_wsd_find_word("text", 4, "--", &s, &e, err,
                                      sizeof err),
                     err, "no letters");
    CHECK_EQ(sn_wsd_find_word("bat \xff", 5, "bat", &s, &e, err, sizeof err),
             0); /* found before the bad byte */
    CHECK_FAILS_WITH(sn_wsd_find_word("a \xff bat", 7, "bat", &s, &e, err,
                                      sizeof err),
                     err, "utf-8");
    CHECK_EQ(sn_wsd_find_word("bat", 3, "\xc3", &s, &e, err, sizeof err),
             SN_EUTF8);
}

static void test_morph(void)
{
    sn_wsd_morph_t *m = NULL;
    char bases[24][SN_WSD_MAX_WORD];
    int n, found;

    CHECK_OK(sn_wsd_morph_new(&m, err, sizeof err), err);
    size_t builtin = sn_wsd_morph_size(m);
    CHECK(builtin > 200);
    /* a WordNet-style exception list */
    const char exc[] = "aardwolves aardwolf\noxen ox\nbesought beseech\n"
                       "attorneys_general attorney_general\n\n";
    CHECK_OK(sn_wsd_morph_add_exc(m, exc, strlen(exc), "test.exc", err,
                                  sizeof err), err);
    CHECK_EQ(sn_wsd_morph_size(m), builtin + 4);
    CHECK(sn_wsd_inflects(m, "besought", "beseech"));
    CHECK(!sn_wsd_inflects(NULL, "besought", "beseech"));
    CHECK(sn_wsd_inflects(m, "attorneys general", "attorney general"));
    find_ok(m, "they besought him", "beseech", 5, 13);
    CHECK_FAILS_WITH(sn_wsd_morph_add_exc(m, "lonely\n", 7, "bad.exc", err,
                                          sizeof err),
                     err, "bad.exc: line 1");
    CHECK_EQ(sn_wsd_morph_size(m), builtin + 4); /* nothing half-added */
    /* base forms of an inflected word, the word itself first */
    n = sn_wsd_bases(m, "Mice", bases, 24);
    CHECK(n >= 2);
    CHECK_STREQ(bases[0], "mice");
    found = 0;
    for (int i = 0; i < n; i++)
        found |= !strcmp(bases[i], "mouse");
    CHECK(found);
    n = sn_wsd_bases(m, "batting", bases, 24);
    found = 0;
    for (int i = 0; i < n; i++)
        found |= !strcmp(bases[i], "bat");
    CHECK(found);
    CHECK_EQ(sn_wsd_bases(m, "", bases, 24), 0);
    /* casefolding */
    char f[SN_WSD_MAX_WORD];
    CHECK_OK(sn_wsd_casefold("  Take_OFF ", f, sizeof f, err, sizeof err),
             err);
    CHECK_STREQ(f, "take off");
    CHECK_FAILS_WITH(sn_wsd_casefold("   ", f, sizeof f, err, sizeof err),
                     err, "empty");
    sn_wsd_morph_free(m);
    sn_wsd_morph_free(NULL);
}

static void test_gloss(void)
{
    const char *g = "sloping land (especially the slope beside a body of "
                    "water); \"they pulled the canoe up on the bank\"; \"he "
                    "sat on the bank of the river\"";
    size_t def, off[4], len[4];
    int n = sn_wordnet_split_gloss(g, strlen(g), &def, off, len, 4);
    CHECK_EQ(n, 2);
    CHECK_EQ(def, strlen("sloping land (especially the slope beside a body "
                         "of water)"));
    CHECK(!strncmp(g + off[0], "they pulled the canoe up on the bank",
                   len[0]));
    CHECK_EQ(len[1], strlen("he sat on the bank of the river"));
    /* no examples; an unterminated quote is not one; the cap */
    g = "a definition only";
    CHECK_EQ(sn_wordnet_split_gloss(g, strlen(g), &def, off, len, 4), 0);
    CHECK_EQ(def, strlen(g));
    g = "def; \"open";
    CHECK_EQ(sn_wordnet_split_gloss(g, strlen(g), &def, off, len, 4), 0);
    CHECK_EQ(def, 3);
    g = "\"only an example\"";
    CHECK_EQ(sn_wordnet_split_gloss(g, strlen(g), &def, off, len, 4), 1);
    CHECK_EQ(def, 0);
    g = "d; \"a\"; \"b\"; \"c\"";
    CHECK_EQ(sn_wordnet_split_gloss(g, strlen(g), &def, off, len, 2), 2);
}

/* ---- a hand-made WordNet ------------------------------------------------------ */

typedef struct {
    char index[4][4096], data[4][8192];
} tiny_wn_t;

static const char LICENSE[] = "  1 This is a test database, not WordNet.  \n"
                              "  2 The license header lines start with two "
                              "spaces.  \n";

/* Append a synset line to data (its offset is where it lands). */
static unsigned add_synset(char *data, const char *ss_type, const char *word,
                           const char *gloss)
{
    size_t off = strlen(data);
    sprintf(data + off, "%08zu 05 %s 01 %s 0 000 | %s  \n", off, ss_type,
            word, gloss);
    return (unsigned)off;
}

static void make_tiny(tiny_wn_t *t)
{
    memset(t, 0, sizeof *t);
    for (int p = 0; p < 4; p++)
        strcpy(t->data[p], LICENSE);
    strcpy(t->index[0], LICENSE);
    unsigned n1 = add_synset(t->data[0], "n", "bat",
                             "nocturnal flying mammal; \"the bat flew out of "
                             "the cave\"; \"bats hunt moths at night\"");
    unsigned n2 = add_synset(t->data[0], "n", "bat",
                             "a club used for hitting a ball; \"he swung the "
                             "bat hard\"; \"a cricket match\"");
    unsigned n3 = add_synset(t->data[0], "n", "crane",
                             "a tall wading bird; \"a crane stood in the "
                             "marsh\"");
    unsigned n4 = add_synset(t->data[0], "n", "lone",
                             "a lemma with one sense; \"lone example\"");
    unsigned v1 = add_synset(t->data[1], "v", "bat",
                             "strike with a bat; \"she batted the ball "
                             "away\"");
    /* index.noun sorted as WordNet sorts it */
    sprintf(t->index[0] + strlen(t->index[0]),
            "bat n 2 1 @ 2 0 %08u %08u  \n"
            "crane n 1 0 1 0 %08u  \n"
            "lone n 1 0 1 0 %08u  \n",
            n1, n2, n3, n4);
    sprintf(t->index[1], "bat v 1 0 1 0 %08u  \n", v1);
}

static void files_of(tiny_wn_t *t, sn_wordnet_files_t *f, const char *exc)
{
    memset(f, 0, sizeof *f);
    for (int p = 0; p < 2; p++) {
        f->index[p] = t->index[p];
        f->index_len[p] = strlen(t->index[p]);
        f->data[p] = t->data[p];
        f->data_len[p] = strlen(t->data[p]);
    }
    if (exc) {
        f->exc[1] = exc;
        f->exc_len[1] = strlen(exc);
    }
}

static void test_wordnet_parse(void)
{
    tiny_wn_t t;
    sn_wordnet_files_t f;
    sn_wordnet_t *wn = NULL;

    make_tiny(&t);
    files_of(&t, &f, "batted bat\n");
    CHECK_OK(sn_wordnet_parse(&f, 2, &wn, err, sizeof err), err);
    CHECK_EQ(sn_wordnet_n_lemmas(wn), 1); /* only "bat" has two senses */
    const sn_wordnet_lemma_t *l = sn_wordnet_lemma(wn, 0);
    CHECK_STREQ(l->lemma, "bat");
    CHECK_EQ(l->n_senses, 3);
    CHECK_STREQ(l->senses[0].name, "bat.n.01");
    CHECK_STREQ(l->senses[1].name, "bat.n.02");
    CHECK_STREQ(l->senses[2].name, "bat.v.01");
    CHECK_EQ(l->senses[2].pos, 'v');
    CHECK_STREQ(l->senses[0].gloss, "nocturnal flying mammal");
    CHECK_EQ(l->senses[0].n_examples, 2);
    CHECK_STREQ(l->senses[0].examples[1], "bats hunt moths at night");
    CHECK(sn_wordnet_find(wn, "BAT") == l);
    CHECK(sn_wordnet_find(wn, "crane") == NULL);
    CHECK(sn_wordnet_lemma(wn, 1) == NULL);
    CHECK(sn_wsd_inflects(sn_wordnet_morph(wn), "batted", "bat"));
    sn_wordnet_free(wn);
    /* min_senses 1 keeps them all, sorted */
    CHECK_OK(sn_wordnet_parse(&f, 1, &wn, err, sizeof err), err);
    CHECK_EQ(sn_wordnet_n_lemmas(wn), 3);
    CHECK_STREQ(sn_wordnet_lemma(wn, 2)->lemma, "lone");
    sn_wordnet_free(wn);
    sn_wordnet_free(NULL);

    /* malformed: each names the file and the line or synset */
    tiny_wn_t bad = t;
    char *p = strstr(bad.index[0], "bat n 2");
    p[6] = '3'; /* synset_cnt 3 but two offsets */
    files_of(&bad, &f, NULL);
    CHECK_FAILS_WITH(sn_wordnet_parse(&f, 2, &wn, err, sizeof err), err,
                     "index.noun: line 3");
    CHECK(wn == NULL);
    bad = t;
    p = strstr(bad.index[0], "crane n 1 0 1 0 ");
    p[16] = '9'; /* an offset that is not a synset's */
    files_of(&bad, &f, NULL);
    CHECK_FAILS_WITH(sn_wordnet_parse(&f, 1, &wn, err, sizeof err), err,
                     "data.noun: synset 9");
    bad = t;
    p = strstr(bad.index[0], "bat n");
    p[4] = 'v'; /* the wrong part of speech */
    files_of(&bad, &f, NULL);
    CHECK_FAILS_WITH(sn_wordnet_parse(&f, 2, &wn, err, sizeof err), err,
                     "part of speech");
    bad = t;
    p = strstr(bad.data[1], " v 01 bat");
    p[1] = 'n'; /* ss_type of another part of speech */
    files_of(&bad, &f, NULL);
    CHECK_FAILS_WITH(sn_wordnet_parse(&f, 2, &wn, err, sizeof err), err,
                     "ss_type");
    bad = t;
    bad.index[0][strlen(bad.index[0]) - 6] = 'x'; /* a truncated offset */
    files_of(&bad, &f, NULL);
    CHECK_FAILS_WITH(sn_wordnet_parse(&f, 1, &wn, err, sizeof err), err,
                     "synset_offset");
    files_of(&t, &f, NULL);
    f.data[1] = NULL;
    CHECK_FAILS_WITH(sn_wordnet_parse(&f, 2, &wn, err, sizeof err), err,
                     "without data.verb");
    CHECK_FAILS_WITH(sn_wordnet_load("/nonexistent", 2, &wn, err, sizeof err),
                     err, "/nonexistent/index.noun");

    /* every truncation of every file parses or fails cleanly */
    for (int which = 0; which < 4; which++) {
        char *buf = which == 0 ? t.index[0] : which == 1 ? t.data[0]
                  : which == 2 ? t.index[1] : t.data[1];
        size_t full = strlen(buf);
        for (size_t cut = 0; cut <= full; cut++) {
            files_of(&t, &f, "batted bat\n");
            const char **slot = which == 0 ? &f.index[0] : which == 1
                                ? &f.data[0] : which == 2 ? &f.index[1]
                                : &f.data[1];
            size_t *slot_len = which == 0 ? &f.index_len[0] : which == 1
                               ? &f.data_len[0] : which == 2
                               ? &f.index_len[1] : &f.data_len[1];
            char *copy = malloc(cut ? cut : 1);
            memcpy(copy, buf, cut);
            *slot = copy;
            *slot_len = cut;
            int rc = sn_wordnet_parse(&f, 1, &wn, err, sizeof err);
            CHECK(rc == 0 || rc == SN_ECORRUPT);
            CHECK((rc == 0) == (wn != NULL));
            sn_wordnet_free(wn);
            free(copy);
        }
    }
    /* and arbitrary bytes through the other parsers */
    static const char ALPH[] = "ab \n\"\xc3\xa9;_-'";
    srand(7);
    sn_wsd_morph_t *m = NULL;
    CHECK_OK(sn_wsd_morph_new(&m, err, sizeof err), err);
    for (int i = 0; i < 2000; i++) {
        char junk[64];
        size_t n = (size_t)(rand() % 64), d, off[4], len[4];
        int32_t s0, e0;
        for (size_t k = 0; k < n; k++)
            junk[k] = ALPH[rand() % (int)(sizeof ALPH - 1)];
        sn_wsd_morph_add_exc(m, junk, n, "junk", err, sizeof err);
        int ne = sn_wordnet_split_gloss(junk, n, &d, off, len, 4);
        CHECK(d <= n);
        for (int k = 0; k < ne; k++)
            CHECK(off[k] + len[k] <= n);
        int rc = sn_wsd_find_word_ex(m, junk, n, "ab", &s0, &e0, err,
                                     sizeof err);
        CHECK(rc == 0 || rc == SN_ENOTFOUND || rc == SN_EUTF8);
        CHECK(rc != 0 || (s0 >= 0 && e0 > s0 && (size_t)e0 <= n));
    }
    sn_wsd_morph_free(m);
}

/* ---- the inventory, without a model ---------------------------------------------- */

static void temp_db(char *path, size_t len)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(path, len, "%s/test_wsd_%d_%ld.db", tmp, (int)getpid(),
             (long)time(NULL));
}

static void rm_db(const char *path)
{
    char p[4200];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

static void test_inventory(void)
{
    char db[4096];
    sn_senses_t *s = NULL;
    float w[4] = {1, 0, 0, 0}, v[3] = {0, 1, 0};
    sn_sense_info_t *info = NULL;
    sn_sense_example_t *ex = NULL;
    sn_lemma_info_t *lem = NULL;
    sn_senses_count_t c;
    int n, removed;

    temp_db(db, sizeof db);
    CHECK_OK(sn_senses_open(db, &s, err, sizeof err), err);
    sn_sense_row_t rows[] = {
        {"Bat", "animal", "a flying mammal", "A bat flew.", 11, 2, 5, w, v},
        {"bat", "club", NULL, "He swung the bat.", 17, 13, 16, w, v},
        {"bat", "animal", NULL, "Bats sleep by day.", 18, 0, 4, w, v},
        {"crane", "bird", "a wading bird", NULL, 0, 0, 0, NULL, NULL},
    };
    CHECK_OK(sn_senses_put(s, "m1", 4, 3, rows, 4, 0, err, sizeof err), err);
    /* the same example again is stored once */
    CHECK_OK(sn_senses_put(s, "m1", 4, 3, rows + 2, 1, 0, err, sizeof err),
             err);
    CHECK_OK(sn_senses_list(s, "m1", "BAT", &info, &n, err, sizeof err), err);
    CHECK_EQ(n, 2);
    CHECK_STREQ(info[0].sense, "animal");
    CHECK_STREQ(info[0].gloss, "a flying mammal"); /* inherited by row 3 */
    CHECK_EQ(info[0].n_examples, 2);
    CHECK_STREQ(info[1].sense, "club");
    CHECK(info[1].gloss == NULL);
    sn_sense_info_free(info, n);
    CHECK_OK(sn_senses_examples(s, "m1", "bat", "animal", &ex, &n, err,
                                sizeof err), err);
    CHECK_EQ(n, 2);
    CHECK_STREQ(ex[1].example, "Bats sleep by day.");
    CHECK_EQ(ex[1].start, 0);
    CHECK_EQ(ex[1].end, 4);
    CHECK(ex[1].id > ex[0].id);
    sn_sense_examples_free(ex, n);
    /* a new gloss becomes every row's */
    sn_sense_row_t regloss = {"bat", "club", "a stick for hitting balls",
                              NULL, 0, 0, 0, NULL, NULL};
    CHECK_OK(sn_senses_put(s, "m1", 4, 3, &regloss, 1, 0, err, sizeof err),
             err);
    CHECK_OK(sn_senses_list(s, "m1", "bat", &info, &n, err, sizeof err), err);
    CHECK_STREQ(info[1].gloss, "a stick for hitting balls");
    CHECK_EQ(info[1].n_examples, 1);
    sn_sense_info_free(info, n);
    /* lemmas, counts, another model sees nothing */
    CHECK_OK(sn_senses_lemmas(s, "m1", 0, 0, &lem, &n, err, sizeof err), err);
    CHECK_EQ(n, 2);
    CHECK_STREQ(lem[0].lemma, "bat");
    CHECK_EQ(lem[0].n_senses, 2);
    CHECK_EQ(lem[0].n_examples, 3);
    CHECK_STREQ(lem[1].lemma, "crane");
    CHECK_EQ(lem[1].n_examples, 0);
    sn_lemma_info_free(lem, n);
    CHECK_OK(sn_senses_lemmas(s, "m1", 1, 5, &lem, &n, err, sizeof err), err);
    CHECK_EQ(n, 1);
    sn_lemma_info_free(lem, n);
    CHECK_OK(sn_senses_count(s, "m1", &c, err, sizeof err), err);
    CHECK_EQ(c.n_lemmas, 2);
    CHECK_EQ(c.n_senses, 3);
    CHECK_EQ(c.n_examples, 3);
    CHECK_OK(sn_senses_count(s, "m2", &c, err, sizeof err), err);
    CHECK_EQ(c.n_lemmas, 0);
    /* replace: the batch becomes the sense's whole content */
    sn_sense_row_t rep = {"bat", "animal", NULL, "The bat hung upside down.",
                          25, 4, 7, w, v};
    CHECK_OK(sn_senses_put(s, "m1", 4, 3, &rep, 1, 1, err, sizeof err), err);
    CHECK_OK(sn_senses_examples(s, "m1", "bat", "animal", &ex, &n, err,
                                sizeof err), err);
    CHECK_EQ(n, 1);
    sn_sense_examples_free(ex, n);
    /* the in-memory inventory the scorer reads */
    sn__wsd_inv_t inv;
    CHECK_OK(sn__senses_load(s, "m1", "bat", &inv, err, sizeof err), err);
    CHECK_EQ(inv.n_senses, 2);
    CHECK_EQ(inv.n_ex, 2);
    CHECK_EQ(inv.hidden, 4);
    CHECK_EQ(inv.dim, 3);
    CHECK_STREQ(inv.sense[inv.ex_sense[0]], "club");
    sn__wsd_inv_free(&inv);
    CHECK_OK(sn__senses_load(s, "m1", "nothing", &inv, err, sizeof err), err);
    CHECK_EQ(inv.n_senses, 0);
    sn__wsd_inv_free(&inv);
    /* bad rows: nothing of the batch is stored */
    sn_sense_row_t badrows[] = {
        {"bat", "third", NULL, "A bat.", 6, 2, 5, w, v},
        {"bat", "fourth", NULL, "A bat.", 6, 2, 9, w, v},
    };
    CHECK_FAILS_WITH(sn_senses_put(s, "m1", 4, 3, badrows, 2, 0, err,
                                   sizeof err),
                     err, "row 1: span [2, 9)");
    sn_sense_row_t bad = {"bat", "x\ny", NULL, NULL, 0, 0, 0, NULL, NULL};
    CHECK_FAILS_WITH(sn_senses_put(s, "m1", 4, 3, &bad, 1, 0, err,
                                   sizeof err),
                     err, "control characters");
    bad = (sn_sense_row_t){"", "x", NULL, NULL, 0, 0, 0, NULL, NULL};
    CHECK_FAILS_WITH(sn_senses_put(s, "m1", 4, 3, &bad, 1, 0, err,
                                   sizeof err),
                     err, "row 0: lemma");
    float nan_v[3] = {NAN, 0, 0};
    bad = (sn_sense_row_t){"bat", "x", NULL, "A bat.", 6, 2, 5, w, nan_v};
    CHECK_FAILS_WITH(sn_senses_put(s, "m1", 4, 3, &bad, 1, 0, err,
                                   sizeof err),
                     err, "NaN");
    bad = (sn_sense_row_t){"bat", "x", NULL, "A \xff.", 4, 0, 1, w, v};
    CHECK_EQ(sn_senses_put(s, "m1", 4, 3, &bad, 1, 0, err, sizeof err),
             SN_EUTF8);
    CHECK_FAILS_WITH(sn_senses_put(s, "", 4, 3, rows, 1, 0, err, sizeof err),
                     err, "model id");
    CHECK_OK(sn_senses_count(s, "m1", &c, err, sizeof err), err);
    CHECK_EQ(c.n_senses, 3);
    /* remove a sense, then a lemma */
    CHECK_OK(sn_senses_remove(s, "m1", "bat", "club", &removed, err,
                              sizeof err), err);
    CHECK_EQ(removed, 1);
    CHECK_OK(sn_senses_remove(s, "m1", "bat", "club", &removed, err,
                              sizeof err), err);
    CHECK_EQ(removed, 0);
    CHECK_OK(sn_senses_remove(s, "m1", "Crane", NULL, &removed, err,
                              sizeof err), err);
    CHECK_EQ(removed, 1);
    CHECK_OK(sn_senses_count(s, "m1", &c, err, sizeof err), err);
    CHECK_EQ(c.n_lemmas, 1);
    CHECK_EQ(c.n_senses, 1);
    sn_senses_close(s);
    /* durable: a new connection sees the same */
    CHECK_OK(sn_senses_open(db, &s, err, sizeof err), err);
    CHECK_OK(sn_senses_count(s, "m1", &c, err, sizeof err), err);
    CHECK_EQ(c.n_examples, 1);
    sn_senses_close(s);
    sn_senses_close(NULL);
    rm_db(db);
    /* not a database */
    FILE *fp = fopen(db, "w");
    fputs("this is not a database, just some text that is long enough", fp);
    fclose(fp);
    const char *want = db;
    CHECK_FAILS_WITH(sn_senses_open(db, &s, err, sizeof err), err, want);
    CHECK(s == NULL);
    rm_db(db);
}

/* The store and the inventory share one database file: either may create
 * it, and their writes interleave. */
static void test_with_store(void)
{
    char db[4096];
    sn_store_t *st = NULL;
    sn_senses_t *s = NULL;
    float w[4] = {1, 0, 0, 0}, v[4] = {0, 1, 0, 0};
    sn_senses_count_t c;

    temp_db(db, sizeof db);
    CHECK_OK(sn_senses_open(db, &s, err, sizeof err), err); /* creates it */
    CHECK_OK(sn_store_open(db, &st, err, sizeof err), err);
    CHECK_OK(sn_store_collection(st, "docs", "m1", 4, SN_INDEX_FLAT, err,
                                 sizeof err), err);
    for (int i = 0; i < 3; i++) {
        char id[16], text[64];
        snprintf(id, sizeof id, "d%d", i);
        snprintf(text, sizeof text, "The bat number %d.", i);
        sn_chunk_in_t ch = {0, (int32_t)strlen(text), v};
        sn_doc_in_t doc = {id, text, strlen(text), NULL, &ch, 1};
        CHECK_OK(sn_store_add(st, "docs", "m1", &doc, 1, NULL, err,
                              sizeof err), err);
        sn_sense_row_t r = {"bat", i % 2 ? "club" : "animal", NULL, text,
                            strlen(text), 4, 7, w, v};
        CHECK_OK(sn_senses_put(s, "m1", 4, 4, &r, 1, 0, err, sizeof err),
                 err);
    }
    CHECK_OK(sn_senses_count(s, "m1", &c, err, sizeof err), err);
    CHECK_EQ(c.n_examples, 3);
    sn_collection_info_t *ci;
    int n;
    CHECK_OK(sn_store_collections(st, &ci, &n, err, sizeof err), err);
    CHECK_EQ(n, 1);
    CHECK_EQ(ci[0].n_docs, 3);
    sn_collection_info_free(ci, n);
    sn_store_close(st);
    sn_senses_close(s);
    rm_db(db);
    char idx[4200];
    snprintf(idx, sizeof idx, "%s.idx", db);
    char cmd[8600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", idx);
    CHECK(system(cmd) == 0);
}

/* ---- with the model ------------------------------------------------------------------ */

static int load_demo(sn_senses_t *s, const sn_model_t *m, sn_ctx_t *ctx)
{
    char path[4096];
    json_error_t je;
    int n = 0;

    snprintf(path, sizeof path, "%s/data/senses-demo.jsonl", SN_SOURCE_DIR);
    FILE *fp = fopen(path, "r");
    CHECK(fp != NULL);
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, fp) > 0) {
        json_t *o = json_loads(line, 0, &je);
        CHECK(o != NULL);
        json_t *exs = json_object_get(o, "examples");
        sn_wsd_example_t ex[16];
        int k = 0;
        CHECK(json_array_size(exs) >= 3 && json_array_size(exs) <= 16);
        for (size_t i = 0; i < json_array_size(exs); i++) {
            const char *t = json_string_value(json_array_get(exs, i));
            ex[k++] = (sn_wsd_example_t){
                json_string_value(json_object_get(o, "lemma")),
                json_string_value(json_object_get(o, "sense")),
                json_string_value(json_object_get(o, "gloss")), t, strlen(t),
                -1, -1};
        }
        CHECK_OK(sn_wsd_add(s, m, ctx, ex, k, err, sizeof err), err);
        n += k;
        json_decref(o);
    }
    free(line);
    fclose(fp);
    return n;
}

static void test_which_demo(sn_senses_t *s, const sn_model_t *m,
                            sn_ctx_t *ctx)
{
    char path[4096];
    json_error_t je;
    int n = 0, right = 0;

    snprintf(path, sizeof path, "%s/data/senses-demo-queries.jsonl",
             SN_SOURCE_DIR);
    FILE *fp = fopen(path, "r");
    CHECK(fp != NULL);
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, fp) > 0) {
        json_t *o = json_loads(line, 0, &je);
        CHECK(o != NULL);
        const char *text = json_string_value(json_object_get(o, "text"));
        const char *lemma = json_string_value(json_object_get(o, "lemma"));
        const char *want = json_string_value(json_object_get(o, "sense"));
        sn_wsd_query_t q = {text, strlen(text), lemma, -1, -1};
        sn_wsd_result_t r;
        CHECK_OK(sn_wsd_which(s, m, ctx, &q, &r, err, sizeof err), err);
        CHECK_STREQ(r.lemma, lemma);
        CHECK(r.n_cands >= 2);
        CHECK(r.start >= 0 && r.end > r.start);
        CHECK(r.score == r.cands[0].score && r.margin >= 0);
        for (int i = 1; i < r.n_cands; i++)
            CHECK(r.cands[i - 1].score >= r.cands[i].score);
        if (!strcmp(r.sense, want))
            right++;
        else
            printf("  wrong: '%s' in \"%s\": %s (%.3f), expected %s\n",
                   lemma, text, r.sense, (double)r.score, want);
        n++;
        sn_wsd_result_free(&r);
        json_decref(o);
    }
    free(line);
    fclose(fp);
    printf("demo: %d/%d right (%.1f%%)\n", right, n, 100.0 * right / n);
    CHECK(n >= 40);
    CHECK(right * 10 >= n * 9);
}

static void test_model(void)
{
    sn_model_t *m = NULL;
    sn_ctx_t *ctx = NULL;
    sn_senses_t *s = NULL;
    char db[4096];

    if (sn_model_load("default", &m, err, sizeof err) < 0) {
        fprintf(stderr, "cannot load the default model: %s\n"
                        "(run scripts/setup to fetch it)\n", err);
        exit(1);
    }
    CHECK((ctx = sn_ctx_new(m)) != NULL);

    /* word vectors: normalized, the pieces of the word only */
    const char *t = "The Pythons were sleeping.";
    sn_wsd_span_t sp[2] = {{t, strlen(t), 4, 11}, {t, strlen(t), 0, 3}};
    sn_wsd_vec_t v[2];
    CHECK_OK(sn_wsd_embed(m, ctx, sp, 2, v, err, sizeof err), err);
    CHECK_EQ(v[0].hidden, sn_model_hidden(m));
    CHECK_EQ(v[0].dim, sn_model_dim(m));
    CHECK(v[0].n_pieces >= 2); /* "\u2581P" "y" "th" "on" "s" */
    CHECK_EQ(v[1].n_pieces, 1);
    double nn = 0, dd = 0, cs = 0;
    for (int j = 0; j < v[0].hidden; j++) {
        nn += (double)v[0].word[j] * v[0].word[j];
        cs += (double)v[0].word[j] * v[1].word[j];
    }
    for (int j = 0; j < v[0].dim; j++)
        dd += (double)v[0].sentence[j] * v[1].sentence[j];
    CHECK(fabs(nn - 1) < 1e-4);
    CHECK(cs < 0.99);             /* different words */
    CHECK(fabs(dd - 1) < 1e-4);   /* the same sentence */
    sn_wsd_vec_free(&v[0]);
    sn_wsd_vec_free(&v[1]);
    sn_wsd_vec_free(NULL);
    sp[0].end = 40;
    CHECK_FAILS_WITH(sn_wsd_embed(m, ctx, sp, 2, v, err, sizeof err), err,
                     "text 0: span [4, 40)");
    /* a word past the model's window in a run-on sentence is encoded
     * again with less around it */
    char runon[2048] = "";
    for (int i = 0; i < 300; i++)
        strcat(runon, "x ");
    strcat(runon, "bat x x x");
    sp[0] = (sn_wsd_span_t){runon, strlen(runon), 600, 603};
    CHECK_OK(sn_wsd_embed(m, ctx, sp, 1, v, err, sizeof err), err);
    CHECK_EQ(v[0].n_pieces, 1);
    sn_wsd_vec_free(&v[0]);
    /* a span the tokenizer drops entirely (BERT drops control characters) */
    char bert[4096];
    sn_model_t *tiny = NULL;
    snprintf(bert, sizeof bert, "%s/hf-reference/tiny-bert-uncased/model",
             SN_FIXTURES);
    if (access(bert, R_OK) == 0) {
        sn_ctx_t *tctx;
        CHECK_OK(sn_model_load(bert, &tiny, err, sizeof err), err);
        CHECK((tctx = sn_ctx_new(tiny)) != NULL);
        sp[0] = (sn_wsd_span_t){"a \x01 b", 5, 2, 3};
        CHECK_FAILS_WITH(sn_wsd_embed(tiny, tctx, sp, 1, v, err, sizeof err),
                         err, "text 0: the word at [2, 3) covers no token");
        sp[0] = (sn_wsd_span_t){"a bat b", 7, 2, 5};
        CHECK_OK(sn_wsd_embed(tiny, tctx, sp, 1, v, err, sizeof err), err);
        CHECK_EQ(v[0].hidden, sn_model_hidden(tiny));
        sn_wsd_vec_free(&v[0]);
        sn_ctx_free(tctx);
        sn_model_free(tiny);
    }

    /* the demo inventory */
    temp_db(db, sizeof db);
    CHECK_OK(sn_senses_open(db, &s, err, sizeof err), err);
    int n_ex = load_demo(s, m, ctx);
    sn_senses_count_t c;
    CHECK_OK(sn_senses_count(s, sn_model_name(m), &c, err, sizeof err), err);
    CHECK(c.n_lemmas >= 12);
    CHECK_EQ(c.n_examples, n_ex);
    CHECK(c.n_senses >= 2 * c.n_lemmas);
    test_which_demo(s, m, ctx);

    /* inflected query words, spans, long texts, errors */
    sn_wsd_result_t r;
    const char *q1 = "The mice in the attic chewed through the wiring.";
    sn_wsd_query_t q = {q1, strlen(q1), "Mice", -1, -1};
    CHECK_OK(sn_wsd_which(s, m, ctx, &q, &r, err, sizeof err), err);
    CHECK_STREQ(r.lemma, "mouse");
    CHECK_STREQ(r.sense, "animal");
    CHECK_EQ(r.start, 4);
    CHECK_EQ(r.end, 8);
    sn_wsd_result_free(&r);
    sn_wsd_result_free(&r); /* freed twice: zeroed the first time */
    q = (sn_wsd_query_t){q1, strlen(q1), NULL, 4, 8};
    CHECK_OK(sn_wsd_which(s, m, ctx, &q, &r, err, sizeof err), err);
    CHECK_STREQ(r.lemma, "mouse");
    sn_wsd_result_free(&r);
    /* the form asked for is found before another form of its lemma */
    const char *qp = "Pythons are snakes but I code Python";
    q = (sn_wsd_query_t){qp, strlen(qp), "Pythons", -1, -1};
    CHECK_OK(sn_wsd_which(s, m, ctx, &q, &r, err, sizeof err), err);
    CHECK_STREQ(r.lemma, "python");
    CHECK_EQ(r.start, 0);
    CHECK_EQ(r.end, 7);
    sn_wsd_result_free(&r);
    q = (sn_wsd_query_t){qp, strlen(qp), "python", -1, -1};
    CHECK_OK(sn_wsd_which(s, m, ctx, &q, &r, err, sizeof err), err);
    CHECK_EQ(r.start, 30); /* the exact form wins over the plural */
    sn_wsd_result_free(&r);
    /* a document: the word's own sentence decides */
    char doc[8192] = "";
    for (int i = 0; i < 40; i++)
        strcat(doc, "The quarterly report covers revenue and staffing. ");
    strcat(doc, "A python swallowed a whole goat in the swamp. ");
    for (int i = 0; i < 40; i++)
        strcat(doc, "Meetings resume on Monday after the holiday. ");
    q = (sn_wsd_query_t){doc, strlen(doc), "python", -1, -1};
    CHECK_OK(sn_wsd_which(s, m, ctx, &q, &r, err, sizeof err), err);
    CHECK_STREQ(r.sense, "snake");
    CHECK_EQ(r.start, 40 * 50 + 2);
    sn_wsd_result_free(&r);
    const char *q2 = "Nothing about that animal here.";
    q = (sn_wsd_query_t){q2, strlen(q2), "bat", -1, -1};
    CHECK_FAILS_WITH(sn_wsd_which(s, m, ctx, &q, &r, err, sizeof err), err,
                     "word 'bat' not found in text");
    CHECK_EQ(sn_wsd_which(s, m, ctx, &q, &r, err, sizeof err), SN_ENOTFOUND);
    q = (sn_wsd_query_t){q2, strlen(q2), "animal", -1, -1};
    CHECK_FAILS_WITH(sn_wsd_which(s, m, ctx, &q, &r, err, sizeof err), err,
                     "no senses of 'animal'");
    q = (sn_wsd_query_t){q2, strlen(q2), NULL, -1, -1};
    CHECK_FAILS_WITH(sn_wsd_which(s, m, ctx, &q, &r, err, sizeof err), err,
                     "no word");
    q = (sn_wsd_query_t){q2, strlen(q2), NULL, 20, 200};
    CHECK_FAILS_WITH(sn_wsd_which(s, m, ctx, &q, &r, err, sizeof err), err,
                     "not inside");
    /* a sense known by its gloss only is an exemplar of its own */
    sn_wsd_example_t g = {"bat", "brick", "a piece of a brick", NULL, 0, -1,
                          -1};
    CHECK_OK(sn_wsd_add(s, m, ctx, &g, 1, err, sizeof err), err);
    CHECK_OK(sn_wsd_add(s, m, ctx, &g, 1, err, sizeof err), err);
    sn_sense_example_t *ex;
    int n;
    CHECK_OK(sn_senses_examples(s, sn_model_name(m), "bat", "brick", &ex, &n,
                                err, sizeof err), err);
    CHECK_EQ(n, 1);
    CHECK_STREQ(ex[0].example, "bat: a piece of a brick");
    sn_sense_examples_free(ex, n);
    sn_wsd_example_t bad = {"bat", "club", NULL, "No such word here.", 18, -1,
                            -1};
    CHECK_FAILS_WITH(sn_wsd_add(s, m, ctx, &bad, 1, err, sizeof err), err,
                     "word 'bat' not found in text");
    bad.example = NULL;
    CHECK_FAILS_WITH(sn_wsd_add(s, m, ctx, &bad, 1, err, sizeof err), err,
                     "neither an example nor a gloss");
    sn_senses_close(s);
    rm_db(db);

    /* WordNet import: the hand-made database */
    tiny_wn_t t3;
    sn_wordnet_files_t f;
    sn_wordnet_t *wn = NULL;
    sn_wordnet_import_stats_t st;
    make_tiny(&t3);
    files_of(&t3, &f, "batted bat\n");
    CHECK_OK(sn_wordnet_parse(&f, 2, &wn, err, sizeof err), err);
    CHECK_OK(sn_senses_open(db, &s, err, sizeof err), err);
    CHECK_OK(sn_wordnet_import(wn, s, m, ctx, NULL, &st, err, sizeof err),
             err);
    CHECK_EQ(st.n_lemmas, 1);
    CHECK_EQ(st.n_senses, 3);
    CHECK_EQ(st.n_examples, 4); /* "a cricket match" has no bat */
    CHECK_EQ(st.n_skipped, 1);
    CHECK_EQ(st.n_glosses, 3);
    for (int pass = 0; pass < 2; pass++) { /* importing again changes nothing */
        sn_sense_info_t *info;
        CHECK_OK(sn_senses_list(s, sn_model_name(m), "bat", &info, &n, err,
                                sizeof err), err);
        CHECK_EQ(n, 3);
        CHECK_STREQ(info[0].sense, "bat.n.01");
        CHECK_STREQ(info[0].gloss, "nocturnal flying mammal");
        CHECK_EQ(info[0].n_examples, 3);
        CHECK_STREQ(info[2].sense, "bat.v.01");
        CHECK_EQ(info[2].n_examples, 2); /* "batted" found via the list */
        sn_sense_info_free(info, n);
        if (pass == 0)
            CHECK_OK(sn_wordnet_import(wn, s, m, ctx, NULL, &st, err,
                                       sizeof err), err);
    }
    sn_wordnet_free(wn);

    /* and a slice of the real one (scripts/setup installs wordnet-base) */
    char idx[4200];
    snprintf(idx, sizeof idx, "%s/index.noun", SN_WORDNET_DIR);
    if (access(idx, R_OK) != 0) {
        fprintf(stderr, "wordnet: '%s' missing: run scripts/setup\n", idx);
        exit(1);
    }
    {
        clock_t c0 = clock();
        CHECK_OK(sn_wordnet_load(NULL, 2, &wn, err, sizeof err), err);
        CHECK(sn_wordnet_n_lemmas(wn) > 20000);
        const sn_wordnet_lemma_t *bank = sn_wordnet_find(wn, "bank");
        CHECK(bank != NULL);
        CHECK_EQ(bank->n_senses, 18); /* 10 nouns, 8 verbs */
        CHECK_STREQ(bank->senses[1].gloss,
                    "a financial institution that accepts deposits and "
                    "channels the money into lending activities");
        sn_wordnet_import_opts_t o = {(int)(bank - sn_wordnet_lemma(wn, 0)),
                                      3, 16, NULL, NULL};
        CHECK_OK(sn_wordnet_import(wn, s, m, ctx, &o, &st, err, sizeof err),
                 err);
        CHECK_EQ(st.n_lemmas, 3);
        CHECK_EQ(st.n_glosses, st.n_senses);
        const char *q3 = "She opened a savings account at the bank downtown.";
        q = (sn_wsd_query_t){q3, strlen(q3), "banks", -1, -1};
        CHECK_OK(sn_wsd_which(s, m, ctx, &q, &r, err, sizeof err), err);
        CHECK_STREQ(r.lemma, "bank");
        CHECK_EQ(r.n_cands, 18);
        printf("wordnet: 'bank' in \"%s\": %s (%.3f), then %s\n", q3, r.sense,
               (double)r.score, r.cands[1].sense);
        CHECK(!strncmp(r.sense, "bank.n.", 7));
        sn_wsd_result_free(&r);
        sn_wordnet_free(wn);
        printf("wordnet slice: %.2f s of CPU\n",
               (double)(clock() - c0) / CLOCKS_PER_SEC);
    }
    sn_senses_close(s);
    rm_db(db);
    sn_ctx_free(ctx);
    sn_model_free(m);
}

int main(void)
{
    test_find_word();
    test_morph();
    test_gloss();
    test_wordnet_parse();
    test_inventory();
    test_with_store();
    test_model();
    printf("wsd: ok\n");
    return 0;
}
