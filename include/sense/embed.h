/*
 * embed.h -- tokenizers, model loading and the encoder forward pass.
 *
 * A model is a folder as SentenceTransformer.save() or a git clone of a
 * Hugging Face repository leaves it (config.json, model.safetensors,
 * tokenizer.json or vocab.txt, modules.json, 1_Pooling/, 2_Normalize/, ...).
 *
 * Ownership:
 *   - sn_model_load() returns a model the caller frees with sn_model_free().
 *     Weights are mmap'd read-only; the model is immutable after load and may
 *     be shared by any number of threads.
 *   - Each thread that encodes owns an sn_ctx_t (sn_ctx_new/sn_ctx_free): its
 *     scratch memory for activations. A context is not thread-safe.
 *   - Results (sn_embedding_t) are owned by the caller and released with
 *     sn_embedding_free(); sn_encoding_t likewise with sn_encoding_free().
 *
 * Text is UTF-8. Character offsets are in Unicode code points, [start, end),
 * into the text as given (as Python's str indexes count them).
 */
#ifndef SENSE_EMBED_H
#define SENSE_EMBED_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- tokenizer ---------------------------------------------------------- */

typedef struct sn_tokenizer sn_tokenizer_t;

/* One tokenized text: parallel arrays of n_tokens entries. Special tokens
 * ([CLS], </s>, ...) have special[i] = 1 and offsets (0, 0). */
typedef struct {
    int32_t *ids;
    int32_t *start;   /* code point offset of the token's first char */
    int32_t *end;     /* one past its last char */
    uint8_t *special;
    int n_tokens;
    int cap;          /* allocated entries */
    int truncated;    /* text tokens cut off to fit max_tokens (0: none) */
} sn_encoding_t;

void sn_encoding_free(sn_encoding_t *enc); /* frees the arrays, zeroes *enc */

/* Load from a model folder: tokenizer.json if present, else vocab.txt with
 * tokenizer_config.json (do_lower_case, strip_accents,
 * tokenize_chinese_chars). A sentence-transformers folder also decides what
 * happens to a text before the tokenizer sees it, as sentence-transformers
 * does it: str.strip() (versions up to 5, which saved most models; not when
 * config_sentence_transformers.json records 6 or later), then str.lower()
 * when sentence_bert_config.json has "do_lower_case": true; offsets still
 * index the text as given. The pure constructors below do neither. */
int sn_tokenizer_load(const char *dir, sn_tokenizer_t **out, char *err,
                      size_t err_len);
/* Pure constructors, no I/O: the contents of a tokenizer.json; of a
 * vocab.txt with its options (strip_accents < 0 means "as lowercase"). */
int sn_tokenizer_from_json(const char *buf, size_t len, sn_tokenizer_t **out,
                           char *err, size_t err_len);
int sn_tokenizer_from_vocab(const char *buf, size_t len, int lowercase,
                            int strip_accents, int chinese_chars,
                            sn_tokenizer_t **out, char *err, size_t err_len);
void sn_tokenizer_free(sn_tokenizer_t *tok);

/* Tokenize `text` (`len` bytes of UTF-8) with special tokens added; when
 * max_tokens > 0, truncate so the result, specials included, has at most
 * max_tokens entries (out->truncated then counts the tokens dropped). Invalid UTF-8 fails with SN_EUTF8. `out` is reused:
 * its arrays grow as needed. */
int sn_tokenizer_encode(const sn_tokenizer_t *tok, const char *text,
                        size_t len, int max_tokens, sn_encoding_t *out,
                        char *err, size_t err_len);

int sn_tokenizer_n_vocab(const sn_tokenizer_t *tok);
/* The id of the unknown token (what a word outside the vocabulary becomes),
 * or -1 when the tokenizer has none. */
int32_t sn_tokenizer_unk_id(const sn_tokenizer_t *tok);
/* The maximum the folder states (sentence_bert_config.json's
 * max_seq_length, else tokenizer_config.json's model_max_length), specials
 * included; 0 when it states none or the tokenizer was not loaded from a
 * folder. A model may cap it lower (sn_model_max_tokens). */
int sn_tokenizer_max_tokens(const sn_tokenizer_t *tok);
/* The vocabulary string of `id` ("##lo", "\xe2\x96\x81World"), or NULL. */
const char *sn_tokenizer_piece(const sn_tokenizer_t *tok, int32_t id);

/* The token string Hugging Face reports for token i of `enc`, encoded from
 * `text` (`len` bytes): the vocabulary piece, except for the unknown token
 * of a Unigram model, which HF reports as the normalized text it stands
 * for (here: its chars [start, end) normalized again, less what tokens from
 * the same chars hold -- exact on every reference we have, but a
 * reconstruction), and an added token with lstrip/rstrip, which HF reports
 * with the whitespace it took. Returns the piece, or `buf` (NUL-terminated, cut at
 * buf_len - 1 bytes) holding the text; NULL when i is out of range. */
const char *sn_tokenizer_token_str(const sn_tokenizer_t *tok,
                                   const sn_encoding_t *enc, int i,
                                   const char *text, size_t len, char *buf,
                                   size_t buf_len);

/* ---- model -------------------------------------------------------------- */

typedef struct sn_model sn_model_t;
typedef struct sn_ctx sn_ctx_t;

typedef enum {
    SN_POOL_MEAN = 0,
    SN_POOL_CLS,
    SN_POOL_MAX,
    SN_POOL_MEAN_SQRT_LEN,
    SN_POOL_LASTTOKEN, /* the last token's state (decoders, whose last
                        * token is the only one that has seen them all) */
} sn_pool_t;

/* The precision of the encoder's dense layers (weights converted once at
 * load; activations converted per call, row by row, so a text's vector
 * never depends on the batch):
 *   SN_PREC_F32   as the reference computes it;
 *   SN_PREC_BF16  bf16 weights and inputs, f32 sums (AVX512_BF16);
 *   SN_PREC_INT8  int8 weights per output channel, int8 inputs per token
 *                 (dynamic), exact int32 sums (AVX512-VNNI / AVX-VNNI);
 *   SN_PREC_AUTO  the fastest of these whose sentence vectors stay within
 *                 cosine 0.9999 of f32 on the parity fixtures on this CPU:
 *                 a rule per CPU feature set and architecture (embed/arch.c
 *                 says how it was measured); $SENSE_PRECISION, when set,
 *                 replaces it.
 * A precision asked for on a CPU without its units runs on portable
 * kernels (same results within tolerance, slower). */
typedef enum {
    SN_PREC_AUTO = 0,
    SN_PREC_F32,
    SN_PREC_BF16,
    SN_PREC_INT8,
} sn_precision_t;

/* "auto", "f32", "bf16", "int8" -> the value; -1 when unknown. */
int sn_precision_parse(const char *name);
const char *sn_precision_name(sn_precision_t prec);

/* Load the model in folder `path`, or the default model for "default", or,
 * when no folder `path` exists and it is a repository id ("org/name" or
 * "name"), the model `sense pull` stored under that name (see
 * sn_model_pulled_path). */
int sn_model_load(const char *path, sn_model_t **out, char *err,
                  size_t err_len);
/* The same in precision `prec`: anything but SN_PREC_AUTO is used as
 * asked; SN_PREC_AUTO takes $SENSE_PRECISION when set (an unknown value
 * fails the load), else the rule above. sn_model_load is
 * sn_model_load_prec(path, SN_PREC_AUTO, ...). */
int sn_model_load_prec(const char *path, sn_precision_t prec,
                       sn_model_t **out, char *err, size_t err_len);
/* The precision the model runs in, and one line saying why (what was
 * asked, the CPU's features, the kernels), owned by the model. */
sn_precision_t sn_model_precision(const sn_model_t *model);
const char *sn_model_precision_why(const sn_model_t *model);
void sn_model_free(sn_model_t *model);
/* Where "default" points: $SENSE_DEFAULT_MODEL, else
 * $SENSE_DATA/models/use-lite, else $XDG_DATA_HOME/sense/models/use-lite,
 * else ~/.local/share/sense/models/use-lite (where scripts/setup puts it). */
int sn_model_default_path(char *buf, size_t len);
/* A Hugging Face repository id: "name" or "org/name", each part 1 to 96
 * characters of [A-Za-z0-9._-], not starting with '.' or '-', no "..". */
int sn_model_repo_id_valid(const char *repo_id);
/* Where `sense pull REPO_ID` stores a model and where sn_model_load finds
 * it by name: sn_data_path("models/REPO_ID"), i.e. models/<org>/<name>
 * under the data folder. SN_EARG when repo_id is not a valid id. */
int sn_model_pulled_path(const char *repo_id, char *buf, size_t len);
/* The folder sn_model_load would load for `name` (a folder, "default", or a
 * pulled repository id), into buf; fails as sn_model_load would when there
 * is none, with a hint (e.g. the `sense pull` command). For programs that
 * read a model folder's files without loading the model. */
int sn_model_locate(const char *name, char *buf, size_t len, char *err,
                    size_t err_len);

int sn_model_dim(const sn_model_t *model);        /* sentence vector size
                                                   * (after Dense modules) */
int sn_model_hidden(const sn_model_t *model);     /* token vector size */
int sn_model_max_tokens(const sn_model_t *model); /* specials included */
sn_pool_t sn_model_pooling(const sn_model_t *model);
/* 1 when token states are contextual only leftward (a decoder such as
 * Qwen3: the state of token i has seen tokens 0..i only). */
int sn_model_causal(const sn_model_t *model);
int sn_model_normalizes(const sn_model_t *model);
const sn_tokenizer_t *sn_model_tokenizer(const sn_model_t *model);
/* The prompt text named `name` in config_sentence_transformers.json (e.g.
 * "query" -> "query: "), or NULL when the model has none by that name. */
const char *sn_model_prompt(const sn_model_t *model, const char *name);
/* A short human-readable identity, e.g. "bert 2x64 (tiny-bert-uncased)". */
const char *sn_model_name(const sn_model_t *model);

sn_ctx_t *sn_ctx_new(const sn_model_t *model); /* NULL on out of memory */
void sn_ctx_free(sn_ctx_t *ctx);

typedef struct {
    const char *prompt; /* text prepended to every input, or NULL */
    int dimensions;     /* 0: full; else Matryoshka-truncate to the first N
                         * dimensions and renormalize */
    int want_tokens;    /* also return per-token states and offsets */
} sn_embed_opts_t;

/* The result for one text. */
typedef struct {
    int dim;            /* length of `sentence` */
    float *sentence;    /* pooled (normalized where the model normalizes) */
    sn_encoding_t enc;  /* tokens fed to the encoder, with offsets into the
                         * text (not the prompt); prompt tokens are flagged
                         * special with offsets (0, 0) */
    int hidden;         /* length of each token vector */
    float *tokens;      /* enc.n_tokens x hidden, last hidden state, or NULL */
} sn_embedding_t;

void sn_embedding_free(sn_embedding_t *e); /* frees members, zeroes *e */

/* Scale v[0..n) to unit L2 norm, as torch.nn.functional.normalize does
 * (dividing by max(norm, 1e-12)): a zero vector stays zero. */
void sn_vec_normalize(float *v, int n);

/* Encode `n` texts in one batched forward pass. out[0..n) are filled; on
 * failure none of them hold anything that needs freeing. A text's result
 * never depends on what else is in the batch. */
int sn_model_embed(const sn_model_t *model, sn_ctx_t *ctx,
                   const char *const *texts, const size_t *lens, int n,
                   const sn_embed_opts_t *opts, sn_embedding_t *out,
                   char *err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
