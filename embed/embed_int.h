/*
 * embed_int.h -- internals shared by the files of embed/. Not installed.
 *
 * Names here are sn__ (two underscores): visible across files, not public.
 */
#ifndef SENSE_EMBED_INT_H
#define SENSE_EMBED_INT_H

#include <stddef.h>
#include <stdint.h>

#include "sense/sense.h"

/* ---- util.c ------------------------------------------------------------- */

/* snprintf into err (if err && err_len) and return code. */
int sn__err(char *err, size_t err_len, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Read a whole file into a NUL-terminated malloc'd buffer (*len excludes the
 * NUL). Fails with -errno or SN_ETOOBIG past max_len bytes. */
int sn__read_file(const char *path, size_t max_len, char **out, size_t *len,
                  char *err, size_t err_len);

/* Join dir and name into buf; SN_ETOOBIG when it does not fit. */
int sn__path_join(char *buf, size_t buf_len, const char *dir,
                  const char *name);

int sn__file_exists(const char *path);

/* 64-bit FNV-1a of p[0..n), continuing from h (SN__FNV64_BASIS to start). */
#define SN__FNV64_BASIS 0xcbf29ce484222325ull
uint64_t sn__fnv1a64(uint64_t h, const void *p, size_t n);

/* ---- safetensors.c ------------------------------------------------------ */

#define SN_ST_MAX_HEADER (100u << 20) /* 100 MiB of JSON header at most */
#define SN_ST_MAX_DIMS 8

/* Dtypes the parser knows. SN_DT_I64 is accepted only so that a checkpoint
 * carrying an integer buffer (embeddings.position_ids) parses; the loader
 * ignores it and sn__st_get_f32 refuses it. */
typedef enum { SN_DT_F32 = 0, SN_DT_F16, SN_DT_BF16, SN_DT_I64 } sn__dtype_t;

typedef struct {
    char *name;
    sn__dtype_t dtype;
    int n_dims;
    int64_t shape[SN_ST_MAX_DIMS];
    uint64_t begin, end; /* byte offsets relative to the data section */
    int used;            /* set when bound by sn__st_get_f32 */
    float *converted;    /* owned f32 copy when not F32 or misaligned */
    int shard;           /* sharded files: index into shards[]; else 0 */
} sn__st_tensor_t;

typedef struct {
    sn__st_tensor_t *tensors;
    int n_tensors;
    uint64_t data_offset; /* 8 + header length: where the data starts */
} sn__st_header_t;

/* Parse and validate the header of a safetensors file whose complete
 * contents are buf[0..len): header length inside the buffer, well-formed
 * JSON, dtype in the whitelist, shapes non-negative and without overflow,
 * byte size equal to prod(shape) * sizeof(dtype), offsets inside the data
 * section, no two tensors overlapping, no duplicate names. Pure: no I/O.
 * `name` only labels the error messages. */
int sn__st_parse(const uint8_t *buf, size_t len, const char *name,
                 sn__st_header_t *out, char *err, size_t err_len);
void sn__st_header_free(sn__st_header_t *hdr);

#define SN_ST_MAX_SHARDS 4096          /* shards one index may name */
#define SN_ST_MAX_INDEX (64u << 20)    /* model.safetensors.index.json */
#define SN_ST_MAX_PREFIX 128           /* a detected tensor-name prefix */

/* One file of a sharded checkpoint. */
typedef struct {
    char *path;
    void *map;
    size_t map_len;
    uint64_t data_offset;
} sn__st_shard_t;

/* The weights of a model: one mapped .safetensors file, or the shards a
 * model.safetensors.index.json names, merged into one tensor table.
 *
 * Single file: path, map, map_len and hdr describe it; n_shards is 0.
 * Sharded: path is the index, map is NULL, hdr.tensors is the merged table
 * (sorted by name, names unique across shards) and each tensor's `shard`
 * says where its bytes are.
 *
 * Tensor-name prefix: checkpoints saved from a wrapper (BertForMaskedLM,
 * RobertaModel inside a bi-encoder, ModernBertForMaskedLM, Qwen3ForCausalLM,
 * ...) hold the encoder's tensors under a prefix ("bert.", "roberta.",
 * "model.", "0.auto_model."...). Bindings ask for the bare names the base
 * model has ("embeddings.word_embeddings.weight"); a name not found as is
 * is looked for as "<P>.<name>", and the first tensor bound that way fixes
 * P for the file (see sn__st_find). Tensors outside P then belong to the
 * wrapper's heads, and sn__st_check_unused ignores them. */
typedef struct {
    char *path;
    void *map;
    size_t map_len;
    sn__st_header_t hdr;
    int n_shards;
    sn__st_shard_t *shards;
    int prefix_fixed;             /* prefix[] holds the file's prefix */
    char prefix[SN_ST_MAX_PREFIX];
} sn__st_file_t;

/* Open the weights at `path`, normally "<dir>/model.safetensors": mmap it
 * read-only and parse its header. When it does not exist, "<path>.index.json"
 * (model.safetensors.index.json) is tried, and then every shard it names is
 * opened and checked against its weight map. When neither exists, the error
 * says what the folder holds instead (pytorch_model.bin: convert it, with
 * the command; onnx/; other formats) and that safetensors is what loads. */
int sn__st_open(const char *path, sn__st_file_t **out, char *err,
                size_t err_len);
void sn__st_close(sn__st_file_t *f);
/* The tensor called `name` (or, see above, "<prefix><name>"), or NULL. */
sn__st_tensor_t *sn__st_find(sn__st_file_t *f, const char *name);
/* Bind tensor `name` as f32 data of exactly the given shape: a view into the
 * map for aligned F32, else a converted copy owned by f. Marks it used.
 * Errors name the file, the tensor and what is wrong (missing, shape). */
int sn__st_get_f32(sn__st_file_t *f, const char *name, int n_dims,
                   const int64_t *shape, const float **out, char *err,
                   size_t err_len);
/* Fail naming the first tensor not bound and not under one of the
 * NULL-terminated `ignore_prefixes` (relative to the file's detected
 * prefix; tensors outside that prefix are the wrapper's and ignored). */
int sn__st_check_unused(const sn__st_file_t *f,
                        const char *const *ignore_prefixes, char *err,
                        size_t err_len);
/* Let the kernel drop the resident pages of bytes [p, p + len) when they
 * lie in one of f's mappings (after they were packed elsewhere): whole
 * pages only; anything else is left alone. */
void sn__st_release(const sn__st_file_t *f, const void *p, size_t len);

/* ---- bert.c: the BERT / XLM-R encoder ----------------------------------- */

typedef enum {
    SN_ACT_GELU = 0,  /* exact, erf */
    SN_ACT_GELU_TANH, /* gelu_new, gelu_pytorch_tanh */
    SN_ACT_SILU,      /* x sigmoid(x) */
    SN_ACT_RELU,
} sn__act_t;

typedef struct {
    int n_vocab, n_hidden, n_layers, n_heads, n_inter;
    int n_pos, n_types, pad_id;
    int pos_offset; /* first position id: 0 for BERT, pad_id + 1 for XLM-R */
    float ln_eps;
    sn__act_t act;
    int is_xlmr;
    char kind[16]; /* model_type: "bert", "roberta", "xlm-roberta", ... */
} sn__bert_hparams_t;

typedef struct sn__bert sn__bert_t;
typedef struct sn__bert_ctx sn__bert_ctx_t;

/* Parse config.json text (pure). Unknown model_type, hidden_act, or missing
 * or inconsistent fields fail with SN_EMODEL / SN_EJSON. */
int sn__bert_parse_config(const char *buf, size_t len, const char *name,
                          sn__bert_hparams_t *hp, char *err, size_t err_len);
/* Load config.json and model.safetensors from `dir`. */
int sn__bert_load(const char *dir, sn__bert_t **out, char *err,
                  size_t err_len);
/* The same with the dense layers packed in precision prec (SN_GEMM_*:
 * embed/gemm.h; sn_precision_t's values). */
int sn__bert_load_prec(const char *dir, int prec, sn__bert_t **out,
                       char *err, size_t err_len);
void sn__bert_free(sn__bert_t *m);
const sn__bert_hparams_t *sn__bert_hparams(const sn__bert_t *m);

sn__bert_ctx_t *sn__bert_ctx_new(const sn__bert_t *m);
void sn__bert_ctx_free(sn__bert_ctx_t *c);
/* Forward pass over n_seq sequences packed back to back (no padding):
 * sequence i has lens[i] token ids, ids holds sum(lens) entries. Writes the
 * last hidden state, sum(lens) x n_hidden floats, to out. */
int sn__bert_forward(const sn__bert_t *m, sn__bert_ctx_t *c,
                     const int32_t *ids, const int *lens, int n_seq,
                     float *out, char *err, size_t err_len);

/* ---- use_lite.c: Universal Sentence Encoder Lite, the default model ----- */

typedef struct sn__use sn__use_t;
typedef struct sn__use_ctx sn__use_ctx_t;

/* Load dir/model.json (TF.js graph model: topology + weights manifest), its
 * weight shards and dir/vocab.json. Weights are validated like safetensors
 * (sizes, shapes, names); errors name the file and the weight. */
int sn__use_load(const char *dir, sn__use_t **out, char *err, size_t err_len);
/* The same with the dense layers packed in precision prec (SN_GEMM_*). */
int sn__use_load_prec(const char *dir, int prec, sn__use_t **out, char *err,
                      size_t err_len);
void sn__use_free(sn__use_t *m);
int sn__use_dim(const sn__use_t *m);        /* sentence vector size (512) */
int sn__use_hidden(const sn__use_t *m);     /* per-token state size */
int sn__use_max_tokens(const sn__use_t *m); /* specials included, if any */
/* The model's tokenizer (owned by the model). */
const sn_tokenizer_t *sn__use_tokenizer(const sn__use_t *m);

sn__use_ctx_t *sn__use_ctx_new(const sn__use_t *m);
void sn__use_ctx_free(sn__use_ctx_t *c);
/* Forward pass over n_seq token sequences packed back to back (as
 * sn__bert_forward). Writes the last layer's per-token states (sum(lens) x
 * hidden) to tokens_out when it is non-NULL, and the final L2-normalized
 * sentence vectors (n_seq x dim) to sent_out. */
int sn__use_forward(const sn__use_t *m, sn__use_ctx_t *c, const int32_t *ids,
                    const int *lens, int n_seq, float *tokens_out,
                    float *sent_out, char *err, size_t err_len);

/* ---- model.c, for tests ---------------------------------------------------- */

/* sn_model_load without the tokenizer: for feeding reference ids. */
int sn__model_load_notok(const char *path, sn_model_t **out, char *err,
                         size_t err_len);
/* The same in precision prec (sn_precision_t). */
int sn__model_load_notok_prec(const char *path, int prec, sn_model_t **out,
                              char *err, size_t err_len);
/* sn_model_embed of pre-tokenized texts: ids[i] has n_ids[i] entries. */
int sn__model_embed_ids(const sn_model_t *m, sn_ctx_t *c,
                        const int32_t *const *ids, const int *n_ids, int n,
                        const sn_embed_opts_t *opts, sn_embedding_t *out,
                        char *err, size_t err_len);

#endif
