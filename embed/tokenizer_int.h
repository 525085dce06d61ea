/*
 * tokenizer_int.h -- the tokenizer object shared by tokenizer.c (loading,
 * special tokens, truncation), wordpiece.c and unigram.c (the models with
 * their normalizers and pre-tokenizers). Not installed.
 *
 * Text flows as code points with alignments: every normalized code point
 * remembers the [start, end) span of original code points it came from, so
 * token offsets can be reported into the text as given.
 */
#ifndef SENSE_TOKENIZER_INT_H
#define SENSE_TOKENIZER_INT_H

#include <stddef.h>
#include <stdint.h>

#include "sense/sense.h"

#define SN_TOK_MAX_TEXT (1 << 24)  /* 16 MiB of UTF-8 per text at most */
#define SN_TOK_MAX_SPECIALS 4      /* specials before or after a sequence */

typedef enum {
    SN_TOK_WORDPIECE = 0,
    SN_TOK_UNIGRAM,
    SN_TOK_USE, /* the default model's SentencePiece, as its JS does it */
    SN_TOK_BPE, /* BPE (byte-level or not) with its pre-tokenizers */
} sn__tok_kind_t;

/* A vocabulary: pieces by id, and an open-addressing hash piece -> id. */
typedef struct {
    char **pieces;     /* n_pieces NUL-terminated strings, owned */
    float *scores;     /* unigram log-probabilities, or NULL */
    int n_pieces;
    int32_t *slots;    /* hash table of ids, -1 = empty; n_slots power of 2 */
    uint32_t n_slots;
} sn__vocab_t;

int sn__vocab_init(sn__vocab_t *v, int n_pieces); /* pieces zeroed */
/* Set piece `id` (copies `len` bytes); call sn__vocab_build() after all. */
int sn__vocab_set(sn__vocab_t *v, int32_t id, const char *s, size_t len);
int sn__vocab_build(sn__vocab_t *v); /* SN_ECORRUPT on duplicate pieces */
/* The same for a set of strings: a repeated piece keeps its first id.
 * Returns the number of distinct pieces, or an error. */
int sn__vocab_build_set(sn__vocab_t *v);
int32_t sn__vocab_find(const sn__vocab_t *v, const char *s, size_t len);
void sn__vocab_free(sn__vocab_t *v);

/* Normalized text: code points and, per code point, its original span. */
typedef struct {
    uint32_t *cp;
    int32_t *start, *end;
    int n, cap;
} sn__ntext_t;

int sn__ntext_reserve(sn__ntext_t *t, int n);
int sn__ntext_push(sn__ntext_t *t, uint32_t cp, int32_t start, int32_t end);
void sn__ntext_free(sn__ntext_t *t);

/* A token before post-processing: id and original code point span. */
typedef struct {
    int32_t id;
    int32_t start, end;
    int32_t added; /* set by tokenizer.c: an added token matched in the text */
} sn__tok_t;

typedef struct {
    sn__tok_t *v;
    int n, cap;
} sn__toks_t;

int sn__toks_push(sn__toks_t *t, int32_t id, int32_t start, int32_t end);
void sn__toks_free(sn__toks_t *t);

/* normalizer.c: a tokenizer.json "normalizer" (null: none) as a read-only
 * list of steps. sn__norm_apply runs them over *cur, using *alt as the
 * second buffer; the result is left in *cur (the two may be swapped).
 * A NULL sn__norm_t is the identity. */
#define SN_NORM_MAX_TEXT (1 << 25) /* normalized code points per text */
typedef struct sn__norm sn__norm_t;
int sn__norm_load(const void *json, sn__norm_t **out, char *err,
                  size_t err_len);
int sn__norm_apply(const sn__norm_t *norm, sn__ntext_t **cur,
                   sn__ntext_t **alt);
/* The same, leaving out Strip steps when no_strip (for a piece of text out
 * of context, where the text's ends are not its ends). */
int sn__norm_apply_ex(const sn__norm_t *norm, sn__ntext_t **cur,
                      sn__ntext_t **alt, int no_strip);
void sn__norm_free(sn__norm_t *norm);

/* bpe.c: PCRE2 patterns over code points, as HF's Oniguruma reads them
 * (\s is White_Space). sn__regex_compile gives NULL with a message;
 * sn__regex_find finds the first match at or after `from` in cps[0, n)
 * (valid scalars), 1 when found, with match data from
 * sn__regex_match_data (one per thread). */
void *sn__regex_compile(const uint32_t *pat, int n, char *msg,
                        size_t msg_len);
int sn__regex_find(const void *re, const uint32_t *cps, int n, int from,
                   void *md, int *start, int *end);
void *sn__regex_match_data(void);
void sn__regex_match_data_free(void *md);
void sn__regex_free(void *re);

/* Rust's char::is_whitespace (the Unicode White_Space property), which the
 * Hugging Face normalizers and pre-tokenizers ask. */
int sn__is_white_space(uint32_t c);

struct sn_tokenizer {
    sn__tok_kind_t kind;
    sn__vocab_t vocab;
    int32_t unk_id;

    /* post-processing: ids added before and after the sequence */
    int n_prefix, n_suffix;
    int32_t prefix[SN_TOK_MAX_SPECIALS], suffix[SN_TOK_MAX_SPECIALS];
    /* ByteLevel / RobertaProcessing trim_offsets: token spans lose their
     * leading and trailing spaces ('\u0120'); trim_prefix_space is the
     * processor's add_prefix_space (a first token keeps one space) */
    int trim_offsets, trim_prefix_space;

    /* WordPiece + BertNormalizer + BertPreTokenizer */
    struct {
        int clean_text, chinese_chars, strip_accents, lowercase;
        char prefix[16];          /* continuing-subword prefix, "##" */
        int max_input_chars;      /* longer words become unk (100) */
    } wp;

    /* Unigram + (Nmt, NFKC, Replace) + Metaspace */
    struct {
        int byte_fallback;
        uint32_t replacement;     /* U+2581 */
        int prepend_always;       /* prepend_scheme "always" (else "first"
                                   * or "never"; see unigram.c) */
        int prepend_first;
        int split;
        float min_score;          /* lowest piece score, for unk */
        /* lookup helpers owned by unigram.c, built at load */
        void *trie;
    } ug;

    /* BPE: vocabulary, merges, normalizer and pre-tokenizers (bpe.c) */
    struct {
        void *model;
    } bpe;
};

/* Per-model loaders, called by tokenizer.c with the tokenizer.json sections
 * as jansson objects (json_t *, passed as void * so that this header does
 * not depend on jansson). They fill tok->vocab, tok->unk_id and their own
 * sub-struct. `normalizer` and `pretok` may be NULL (JSON null). */
int sn__wordpiece_load(sn_tokenizer_t *tok, const void *model,
                       const void *normalizer, const void *pretok, char *err,
                       size_t err_len);
int sn__unigram_load(sn_tokenizer_t *tok, const void *model,
                     const void *normalizer, const void *pretok, char *err,
                     size_t err_len);
void sn__unigram_free(sn_tokenizer_t *tok);
/* bpe.c: the BPE model with its normalizer and pre-tokenizers, kept in
 * tok->bpe (read-only after load). */
int sn__bpe_load(sn_tokenizer_t *tok, const void *model,
                 const void *normalizer, const void *pretok, char *err,
                 size_t err_len);
void sn__bpe_free(sn_tokenizer_t *tok);

/* vocab.txt: one piece per line, id = line number. */
int sn__wordpiece_load_vocab(sn_tokenizer_t *tok, const char *buf, size_t len,
                             char *err, size_t err_len);

/* Tokenize original code points cps[0..n) (valid Unicode scalars) into
 * tokens without specials, appending to out. Offsets index cps. */
int sn__wordpiece_encode(const sn_tokenizer_t *tok, const uint32_t *cps,
                         int n, sn__toks_t *out);
int sn__unigram_encode(const sn_tokenizer_t *tok, const uint32_t *cps, int n,
                       sn__toks_t *out);
/* The text HF reports for an unk token of a Unigram model covering the
 * original code points cps[0, n): normalized, spaces as the Metaspace
 * replacement, as UTF-8 in buf (cut to len - 1 bytes). */
int sn__unigram_unk_text(const sn_tokenizer_t *tok, const uint32_t *cps,
                         int n, char *buf, size_t len);
/* As sn__unigram_encode for a piece of the text starting at original code
 * point `offset` (Metaspace's prepend_scheme "first" asks for 0). */
int sn__unigram_encode_at(const sn_tokenizer_t *tok, const uint32_t *cps,
                          int n, int32_t offset, sn__toks_t *out);
int sn__bpe_encode(const sn_tokenizer_t *tok, const uint32_t *cps, int n,
                   sn__toks_t *out);
int sn__bpe_encode_at(const sn_tokenizer_t *tok, const uint32_t *cps, int n,
                      int32_t offset, sn__toks_t *out);

/* use_tokenizer.c: the default model's tokenizer from its vocab.json (a
 * JSON array of [piece, score]). Allocates *out with kind SN_TOK_USE, fills
 * the vocabulary, unk id and specials; tokenizer.c's encode calls
 * sn__usetok_encode for that kind and sn_tokenizer_free frees it (with
 * sn__usetok_free for anything kept in tok->ug.trie). */
int sn__usetok_new(const char *vocab_json, size_t len, const char *name,
                   sn_tokenizer_t **out, char *err, size_t err_len);
int sn__usetok_encode(const sn_tokenizer_t *tok, const uint32_t *cps, int n,
                      sn__toks_t *out);
void sn__usetok_free(sn_tokenizer_t *tok);

#endif
