/*
 * wordnet.h -- WordNet 3.0 as a sense inventory: parse the database files
 * (Debian's wordnet-base puts them in /usr/share/wordnet) and import every
 * polysemous lemma into sn_senses_t (sense/wsd.h).
 *
 * What is read: index.{noun,verb,adj,adv} (a lemma's synsets in sense
 * number order, which is WordNet's frequency order), data.{noun,...} (each
 * synset's gloss: the definition and the quoted example sentences), and
 * {noun,verb,adj,adv}.exc (irregular forms, for locating lemmas in the
 * examples). index.sense and cntlist are not needed.
 *
 * A sense is named "<lemma>.<pos>.<NN>" as NLTK names synsets -- lemma with
 * "_" for spaces, pos one of n v a r (adjective satellites are "a", as
 * index.adj lists them), NN the two-digit sense number within that part
 * of speech: "bank.n.01", "bank.v.03", "take_off.v.01". The names are
 * stable for WordNet 3.0 and readable; a lemma's senses run through its
 * parts of speech in the order noun, verb, adjective, adverb.
 *
 * Ownership: sn_wordnet_load/_parse return a database the caller frees
 * with sn_wordnet_free; lemmas and senses point into it. Immutable after
 * load: share it between threads freely.
 */
#ifndef SENSE_WORDNET_H
#define SENSE_WORDNET_H

#include <stddef.h>
#include <stdint.h>

#include "sense/wsd.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SN_WORDNET_DIR "/usr/share/wordnet"
#define SN_WORDNET_MAX_FILE (64u << 20)   /* bytes of one database file */
#define SN_WORDNET_MAX_LINE 65536         /* bytes of one line */
#define SN_WORDNET_MAX_SYNSETS 1000       /* synsets of one index line */
#define SN_WORDNET_MAX_EXAMPLES 64        /* quoted examples of one gloss */
#define SN_WORDNET_BATCH 256              /* texts per import batch */

typedef struct sn_wordnet sn_wordnet_t;

typedef struct {
    const char *name;      /* "bank.n.01" */
    char pos;              /* 'n', 'v', 'a' or 'r' */
    int number;            /* sense number within pos, from 1 */
    uint32_t offset;       /* synset offset in data.<pos> */
    const char *gloss;     /* the definition, examples taken out */
    const char *const *examples; /* the quoted example sentences */
    int n_examples;
} sn_wordnet_sense_t;

typedef struct {
    const char *lemma;     /* lowercase, words separated by spaces */
    const sn_wordnet_sense_t *senses;
    int n_senses;          /* over all parts of speech */
} sn_wordnet_lemma_t;

/* The files' contents, indexed noun, verb, adj, adv; a NULL index skips
 * that part of speech, a NULL exception list is simply absent. */
typedef struct {
    const char *index[4];
    size_t index_len[4];
    const char *data[4];
    size_t data_len[4];
    const char *exc[4];
    size_t exc_len[4];
} sn_wordnet_files_t;

/* Parse (no I/O) the lemmas with at least min_senses synsets (over all
 * parts of speech). Everything needed is copied: the buffers may be freed
 * after. A malformed line fails with SN_ECORRUPT naming the file and line
 * (or synset offset). */
int sn_wordnet_parse(const sn_wordnet_files_t *files, int min_senses,
                     sn_wordnet_t **out, char *err, size_t err_len);
/* Read the files from dir (NULL: SN_WORDNET_DIR) and parse them. The four
 * index and data files are required, the exception lists optional. */
int sn_wordnet_load(const char *dir, int min_senses, sn_wordnet_t **out,
                    char *err, size_t err_len);
void sn_wordnet_free(sn_wordnet_t *wn);

int sn_wordnet_n_lemmas(const sn_wordnet_t *wn);
/* Lemmas in byte order of their text; NULL past the end. */
const sn_wordnet_lemma_t *sn_wordnet_lemma(const sn_wordnet_t *wn, int i);
/* By lemma (any case, "_" or spaces); NULL when it is not there. */
const sn_wordnet_lemma_t *sn_wordnet_find(const sn_wordnet_t *wn,
                                          const char *lemma);
/* Built-in irregular forms plus the exception lists that were given. */
const sn_wsd_morph_t *sn_wordnet_morph(const sn_wordnet_t *wn);

/* Split a gloss (the text after "| " in a data line) into its definition
 * and quoted examples: *def_len bytes of definition from the start
 * (trailing "; " and spaces trimmed); examples as (offset, length) pairs
 * inside the quotes, at most max_ex of them. Pure. Returns the number of
 * examples found (capped at max_ex). */
int sn_wordnet_split_gloss(const char *gloss, size_t len, size_t *def_len,
                           size_t *ex_off, size_t *ex_len, int max_ex);

/* ---- synonyms -------------------------------------------------------------- */

#define SN_WORDNET_MAX_SYN 512 /* bytes of one lemma's synonyms */

/* For each one-word lemma, the other words of its first synset in each of
 * its parts of speech, as one string of space-separated words (multi-word
 * synonyms split): "gui" -> "graphical user interface". For query
 * expansion (index/lexical.c). Only index and data files are read.
 * Ownership: the caller frees the table with sn_wordnet_syn_free;
 * immutable after load, share it between threads freely. */
typedef struct sn_wordnet_syn sn_wordnet_syn_t;

int sn_wordnet_syn_parse(const sn_wordnet_files_t *files,
                         sn_wordnet_syn_t **out, char *err, size_t err_len);
int sn_wordnet_syn_load(const char *dir, sn_wordnet_syn_t **out, char *err,
                        size_t err_len);
void sn_wordnet_syn_free(sn_wordnet_syn_t *s);
int sn_wordnet_syn_size(const sn_wordnet_syn_t *s);
/* The synonyms of word[0..len) (lowercase, as stored), or NULL: a pointer
 * into s. */
const char *sn_wordnet_syn_find(const sn_wordnet_syn_t *s, const char *word,
                                size_t len);

/* ---- import ---------------------------------------------------------------- */

/* Called after each batch: lemmas done of total, exemplars stored so far.
 * Runs on the importing thread. */
typedef void (*sn_wordnet_progress_cb)(void *ud, int done, int total,
                                       int64_t n_exemplars);

typedef struct {
    int offset;        /* the first lemma to import (sn_wordnet_lemma) */
    int limit;         /* lemmas to import; 0: all from offset */
    int batch;         /* texts per forward pass and transaction; 0:
                        * SN_WORDNET_BATCH */
    sn_wordnet_progress_cb progress;
    void *ud;
} sn_wordnet_import_opts_t;

typedef struct {
    int64_t n_lemmas, n_senses;
    int64_t n_examples;  /* example sentences stored as exemplars */
    int64_t n_skipped;   /* examples left out: the lemma is not in them */
    int64_t n_glosses;   /* gloss exemplars stored */
} sn_wordnet_import_stats_t;

/* Import lemmas into the inventory under sn_model_name(model): each sense
 * gets its examples that contain the lemma (or an inflection: the
 * database's morph table is used) as exemplars, plus its gloss as one
 * more, as the text "<lemma>: <definition>" (without it two senses in
 * three would have nothing to be recognised by; index/wsd_int.h has the
 * numbers), each embedded with the model. Texts are
 * embedded SN_WORDNET_BATCH at a time and each batch of whole lemmas is
 * one transaction (sn_senses_put with replace: importing again refreshes
 * the WordNet senses and leaves senses added by other means alone). A
 * failure leaves the batches before it in place. stats may be NULL. */
int sn_wordnet_import(const sn_wordnet_t *wn, sn_senses_t *s,
                      const sn_model_t *model, sn_ctx_t *ctx,
                      const sn_wordnet_import_opts_t *opts,
                      sn_wordnet_import_stats_t *stats, char *err,
                      size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
