/*
 * wsd.h -- word sense disambiguation: which sense of a word a text means
 * ("Python" the language or "python" the snake), decided by the words
 * around it.
 *
 * The pieces, in the order a caller meets them:
 *   - locating (index/wsd.c): sn_wsd_find_word() finds a word in a text
 *     case-insensitively, as a whole word, inflected forms included, and
 *     returns its span in code points. Irregular forms come from a morph
 *     table (sn_wsd_morph_t): a small built-in list, plus WordNet's
 *     exception lists when the caller loads them.
 *   - word vectors (index/wsd.c): sn_wsd_embed() encodes texts with a word
 *     span each, in one batched forward pass, and returns for each the
 *     word's vector (the mean of the last-layer states of the tokens that
 *     overlap the span: a word split in subword pieces is their mean) and
 *     the sentence vector.
 *   - the inventory (index/senses.c): sn_senses_t, a lemma's senses and
 *     their exemplars (an example sentence with the lemma's span and its
 *     two vectors) in the store's SQLite database, table `senses`.
 *   - deciding (index/wsd.c): sn_wsd_which() embeds a text once and scores
 *     every sense of the lemma against it (the scoring, and the
 *     measurements that chose it, are described at sn_wsd_which).
 *   - WordNet (index/wordnet.c, sense/wordnet.h): importing WordNet 3.0's
 *     polysemous lemmas into the inventory.
 *
 * Names. A lemma is stored casefolded (NFC, lowercase): "Python" and
 * "python" are one lemma. Multi-word lemmas are words separated by single
 * spaces ("take off"); "_" from WordNet is written as a space. A sense name
 * is free text chosen by whoever adds it ("snake", "language",
 * "bank.n.01"); 1..SN_WSD_MAX_NAME bytes of UTF-8 without control
 * characters, compared exactly.
 *
 * Ownership and threads: sn_senses_open() returns an inventory the caller
 * frees with sn_senses_close(); it serializes its own calls (any thread,
 * one call at a time). It has its own SQLite connection to the database
 * file (WAL, synchronous=FULL, like the store's): every write is one
 * transaction, durable when the call returns. Results are owned by the
 * caller and freed with the matching _free. The model and contexts follow
 * embed.h: one sn_ctx_t per thread.
 *
 * Errors: 0 or a negative code, message in `err` (lowercase, no period).
 * A word not in the text is SN_ENOTFOUND "word 'x' not found in text"; a
 * lemma without inventory SN_ENOTFOUND "no senses of 'x' for model '...'".
 */
#ifndef SENSE_WSD_H
#define SENSE_WSD_H

#include <stddef.h>
#include <stdint.h>

#include "sense/embed.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SN_WSD_MAX_WORD 256        /* bytes of a word or lemma */
#define SN_WSD_MAX_NAME 256        /* bytes of a sense name */
#define SN_WSD_MAX_GLOSS 16384     /* bytes of a gloss */
#define SN_WSD_MAX_EXAMPLE 65536   /* bytes of an example sentence */
#define SN_WSD_MAX_TEXT (16u << 20) /* bytes of a text to disambiguate */
#define SN_WSD_MAX_BATCH 4096      /* exemplars per sn_wsd_add call */
/* What of a text is encoded around the word: its sentence, widened by
 * neighbouring sentences to at least SN_WSD_MIN_CONTEXT code points, and
 * never more than SN_WSD_CONTEXT code points on either side of the word, so
 * that the word is always inside the model's window, in its local context,
 * and a long document is judged by the sentence the word is in. */
#define SN_WSD_CONTEXT 256
#define SN_WSD_MIN_CONTEXT 100

/* ---- morphology ---------------------------------------------------------- */

/* Irregular forms: pairs (form, base), e.g. ("mice", "mouse"). A table
 * always holds the built-in list (about 250 common English irregular
 * nouns, verbs and adjectives); sn_wsd_morph_add_exc() adds more. Read-only
 * once built: share it between threads freely. */
typedef struct sn_wsd_morph sn_wsd_morph_t;

int sn_wsd_morph_new(sn_wsd_morph_t **out, char *err, size_t err_len);
void sn_wsd_morph_free(sn_wsd_morph_t *m);
/* Add the pairs of a WordNet exception list (noun.exc, verb.exc, adj.exc,
 * adv.exc: lines "form base [base...]", "_" for spaces); a pure parser
 * over the buffer. `name` is for messages. */
int sn_wsd_morph_add_exc(sn_wsd_morph_t *m, const char *buf, size_t len,
                         const char *name, char *err, size_t err_len);
/* Read <dir>/{noun,verb,adj,adv}.exc into m; missing files are skipped
 * (*n_files says how many were read). */
int sn_wsd_morph_load_wordnet(sn_wsd_morph_t *m, const char *dir,
                              int *n_files, char *err, size_t err_len);
/* Pairs in the table, built-in included. */
size_t sn_wsd_morph_size(const sn_wsd_morph_t *m);

/* Is `form` an inflection of `base` (both casefolded, NUL-terminated)? Yes
 * when they are equal, when the table has the pair, or by WordNet's
 * detachment rules (morphy), POS-blind: -s, -ses/-xes/-zes/-ches/-shes,
 * -ies -> y, -es -> e, -ed, -ed -> e, -ing, -ing -> e, -er, -est, -er ->
 * e, -est -> e, -men -> man, and a doubled final consonant before -ed,
 * -ing, -er, -est (batted, batting, bigger). Over-accepts a little (bed
 * for be): that is the cost of not knowing the part of speech. m may be
 * NULL: the built-in list only. */
int sn_wsd_inflects(const sn_wsd_morph_t *m, const char *form,
                    const char *base);

/* The candidate base forms of a word, most likely first: the word itself
 * (casefolded), then what the table maps it to, then what the detachment
 * rules leave. Writes up to `max` NUL-terminated strings of at most
 * SN_WSD_MAX_WORD bytes into out[]; returns how many. Used to resolve an
 * inflected query word ("mice") to a lemma with an inventory ("mouse"). */
int sn_wsd_bases(const sn_wsd_morph_t *m, const char *word,
                 char out[][SN_WSD_MAX_WORD], int max);

/* Casefold a word or lemma (NFC, lowercase, "_" and runs of whitespace to
 * one space, trimmed) into out (out_len bytes). SN_EARG if it is empty or
 * too long, SN_EUTF8 if invalid. */
int sn_wsd_casefold(const char *word, char *out, size_t out_len, char *err,
                    size_t err_len);

/* ---- locating ------------------------------------------------------------ */

/* Find `word` (taken as the base form) in text[0..len) as a whole word,
 * case-insensitively: the first place where it appears exactly, else the
 * first inflected form (sn_wsd_inflects). A multi-word lemma ("take off")
 * matches consecutive words separated by spaces, hyphens or apostrophes,
 * each possibly inflected ("took off"). Words are runs of letters, marks
 * and digits. Sets the code point span [*start, *end). Not found:
 * SN_ENOTFOUND "word 'x' not found in text". m may be NULL. */
int sn_wsd_find_word_ex(const sn_wsd_morph_t *m, const char *text,
                        size_t len, const char *word, int32_t *start,
                        int32_t *end, char *err, size_t err_len);
/* The same with the built-in irregular list only. */
int sn_wsd_find_word(const char *text, size_t len, const char *word,
                     int32_t *start, int32_t *end, char *err,
                     size_t err_len);

/* ---- word vectors -------------------------------------------------------- */

/* A text with the span of the word in it, code points [start, end). */
typedef struct {
    const char *text;
    size_t len;
    int32_t start, end;
} sn_wsd_span_t;

typedef struct {
    int hidden;     /* length of `word` */
    float *word;    /* mean of the states of the tokens overlapping the
                     * span, L2-normalized; for a decoder (contextual
                     * only leftward) the state of its last token */
    int dim;        /* length of `sentence` */
    float *sentence; /* the model's sentence vector of the text around
                      * the word (see SN_WSD_CONTEXT), L2-normalized */
    int n_pieces;   /* tokens averaged into `word` */
} sn_wsd_vec_t;

void sn_wsd_vec_free(sn_wsd_vec_t *v); /* frees members, zeroes *v */

/* Encode n texts in one batched forward pass (each cut to the window
 * around its span described at SN_WSD_CONTEXT; a text whose word fell
 * outside the model's window is encoded again with less context).
 * out[0..n) are filled; on failure none of them hold anything. A span
 * outside the text, empty, or covering no token is SN_EARG naming the
 * text's index. */
int sn_wsd_embed(const sn_model_t *model, sn_ctx_t *ctx,
                 const sn_wsd_span_t *in, int n, sn_wsd_vec_t *out,
                 char *err, size_t err_len);

/* ---- the inventory (index/senses.c) ------------------------------------- */

typedef struct sn_senses sn_senses_t;

/* Open the inventory in the database at db_path (the store's file; created
 * and migrated to the current schema if needed). */
int sn_senses_open(const char *db_path, sn_senses_t **out, char *err,
                   size_t err_len);
void sn_senses_close(sn_senses_t *s); /* NULL is a no-op */

/* One exemplar as stored. A sense without any exemplar can be stored too
 * (example NULL, vectors NULL): it is listed, never chosen. The vectors
 * are what sn_wsd_embed returns for the example and span. */
typedef struct {
    const char *lemma;   /* casefolded here */
    const char *sense;
    const char *gloss;   /* NULL: keep the sense's gloss (if any); else it
                          * becomes the gloss of every row of the sense */
    const char *example; /* UTF-8, example_len bytes, or NULL */
    size_t example_len;
    int32_t start, end;  /* the lemma's span in it, code points */
    const float *word;   /* hidden floats, or NULL with example NULL */
    const float *sentence; /* dim floats, likewise */
} sn_sense_row_t;

/* Store n rows for `model_id` (whose vectors are hidden and dim floats) in
 * ONE transaction, all or nothing. An example already stored for the sense
 * at the same span is not stored again. With `replace` set, every sense
 * named in the batch is first emptied (all its rows for that lemma and
 * model deleted), so the batch becomes its whole content: how an import
 * stays idempotent. */
int sn_senses_put(sn_senses_t *s, const char *model_id, int hidden, int dim,
                  const sn_sense_row_t *rows, int n, int replace, char *err,
                  size_t err_len);

/* An exemplar to add through the model: the lemma is located in the
 * example when start < 0 (sn_wsd_find_word_ex with the inventory's morph
 * table), else [start, end) is used as given. */
typedef struct {
    const char *lemma;
    const char *sense;
    const char *gloss;   /* or NULL */
    const char *example; /* NULL: a sense with only a gloss */
    size_t example_len;
    int32_t start, end;
} sn_wsd_example_t;

/* Locate, embed (one batched pass) and store n exemplars in one
 * transaction, under sn_model_name(model). All or nothing: an example
 * that does not contain its lemma fails the call with SN_ENOTFOUND naming
 * it. An entry without an example but with a gloss stores the gloss as the
 * sense's exemplar, embedded as the text "<lemma>: <gloss>" (as the
 * WordNet import does for every sense), so a sense can be added by its
 * definition alone. Adding the same example twice stores it once. */
int sn_wsd_add(sn_senses_t *s, const sn_model_t *model, sn_ctx_t *ctx,
               const sn_wsd_example_t *ex, int n, char *err,
               size_t err_len);

/* The morph table the inventory uses to locate lemmas and resolve
 * inflected query words (built-in list by default). The inventory borrows
 * it: keep it alive until sn_senses_close or the next call here. */
void sn_senses_set_morph(sn_senses_t *s, const sn_wsd_morph_t *m);

typedef struct {
    char *sense;
    char *gloss;      /* NULL when none */
    int n_examples;   /* exemplars with vectors */
} sn_sense_info_t;

void sn_sense_info_free(sn_sense_info_t *v, int n); /* frees v too */

/* The senses of a lemma (casefolded here) for a model, in the order they
 * were first added. *n_out 0 when it has none. */
int sn_senses_list(sn_senses_t *s, const char *model_id, const char *lemma,
                   sn_sense_info_t **out, int *n_out, char *err,
                   size_t err_len);

typedef struct {
    int64_t id;       /* row id: stable, for reference */
    char *example;
    int32_t start, end;
} sn_sense_example_t;

void sn_sense_examples_free(sn_sense_example_t *v, int n); /* frees v too */

/* The exemplars of one sense, in insertion order. */
int sn_senses_examples(sn_senses_t *s, const char *model_id,
                       const char *lemma, const char *sense,
                       sn_sense_example_t **out, int *n_out, char *err,
                       size_t err_len);

typedef struct {
    char *lemma;
    int n_senses;
    int n_examples;
} sn_lemma_info_t;

void sn_lemma_info_free(sn_lemma_info_t *v, int n); /* frees v too */

/* Lemmas with an inventory for the model, alphabetically (byte order),
 * from offset, at most limit (<= 0: all). */
int sn_senses_lemmas(sn_senses_t *s, const char *model_id, int64_t offset,
                     int limit, sn_lemma_info_t **out, int *n_out,
                     char *err, size_t err_len);

/* Remove a sense with all its exemplars, or with sense NULL every sense of
 * the lemma; *n_removed (if non-NULL) counts the senses that existed. A
 * sense that does not exist is not an error (n_removed says so). */
int sn_senses_remove(sn_senses_t *s, const char *model_id,
                     const char *lemma, const char *sense, int *n_removed,
                     char *err, size_t err_len);

typedef struct {
    int64_t n_lemmas, n_senses, n_examples;
} sn_senses_count_t;

int sn_senses_count(sn_senses_t *s, const char *model_id,
                    sn_senses_count_t *out, char *err, size_t err_len);

/* ---- deciding ------------------------------------------------------------ */

typedef struct {
    char *sense;
    char *gloss;      /* NULL when none */
    float score;      /* in [-1, 1], see sn_wsd_which */
    int n_examples;
} sn_wsd_candidate_t;

typedef struct {
    char *lemma;      /* the lemma whose inventory was used */
    int32_t start, end; /* the word's span in the text, code points */
    char *sense;      /* the best sense (== cands[0].sense) */
    float score;      /* its score */
    float margin;     /* its score minus the runner-up's (0 if alone) */
    sn_wsd_candidate_t *cands; /* every scored sense, best first */
    int n_cands;
} sn_wsd_result_t;

void sn_wsd_result_free(sn_wsd_result_t *r); /* frees members, zeroes *r */

typedef struct {
    const char *text;   /* UTF-8 */
    size_t len;
    const char *word;   /* the word asked about, any inflection and case;
                         * NULL: the text at [start, end) */
    int32_t start, end; /* the word's span; start < 0: find `word` */
} sn_wsd_query_t;

/* Which sense of the word does the text mean? The lemma is the first of
 * sn_wsd_bases(word) with an inventory for sn_model_name(model); the word
 * is located in the text (unless a span is given: then it is used as is),
 * the text around it embedded once (see SN_WSD_CONTEXT), and every sense
 * with exemplars scored:
 *
 *   score(sense) = cos(s - m, c_sense - m)
 *
 * where s is the text's sentence vector, c_sense the mean of the sense's
 * exemplar sentence vectors and m the mean over all the lemma's
 * exemplars: the sense whose examples (and gloss) read most like this
 * text, relative to the lemma's other senses. Scores lie in [-1, 1]; the
 * margin to the runner-up is the better confidence. This was chosen by
 * measurement on WordNet for the default model, against the word's own
 * contextual vector, mixes of the two, and nearest-exemplar scoring: the
 * numbers are in index/wsd_int.h (SN__WSD_SCORING_INIT). Ties go to the
 * sense added first. Errors: SN_ENOTFOUND "no senses of 'x' for model
 * '...'" (no inventory) or "word 'x' not found in text"; SN_EMODEL when
 * the inventory was built with vectors of another size. */
int sn_wsd_which(sn_senses_t *s, const sn_model_t *model, sn_ctx_t *ctx,
                 const sn_wsd_query_t *q, sn_wsd_result_t *out, char *err,
                 size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
