/*
 * nn.h -- the building blocks every architecture composes (embed/kernels.c,
 * embed/nn.c) and the architecture table (embed/arch.c). Internal to
 * libsense.
 *
 * An architecture is one file (bert.c, mpnet.c, distilbert.c,
 * modernbert.c, t5.c, qwen3.c; use_lite.c for the default model) that
 * fills an sn__arch_t: how to load its weights from a model folder, run
 * its forward pass over sequences packed back to back, and free it. Each
 * forward pass is written with the pieces below:
 *   - kernels (sn__kernels_t): LayerNorm with or without bias, RMSNorm,
 *     GELU / GELU-tanh / SiLU / ReLU, the gated forms (GEGLU, SwiGLU),
 *     bias adds, RoPE, and attention over one (sequence, head) with a
 *     scale, a causal or sliding-window mask, a relative position bias
 *     (T5 / MPNet buckets) and grouped-query heads;
 *   - the runtime (sn__nn_t): a fork-join pool, the dense products on
 *     weights packed at load (embed/gemm.c), row-wise steps split over the
 *     threads, attention items dealt through a counter, and scratch;
 *   - the loader helpers: config.json fields, binding tensors by name and
 *     shape, packing them and dropping the mmap'd pages they came from.
 *
 * Every step computes each row, and each (sequence, head), with the same
 * code whatever thread takes it and whatever else is in the batch, so a
 * sequence alone and in a batch give the same bits.
 *
 * Ownership: sn__nn_new returns a runtime owned by the caller
 * (sn__nn_free); it is used by one thread at a time. Loaded architectures
 * (sn__enc_t) are immutable and shared by threads; each thread brings its
 * own runtime (sn__enc_ctx_new).
 */
#ifndef SENSE_NN_H
#define SENSE_NN_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "embed_int.h"
#include "gemm.h"
#include "pool.h"

#define SN_NN_MAX_TOKENS 16384 /* tokens (rows) per forward call */
#define SN_NN_ATT_ROWS 64      /* query rows per attention block */
#define SN_NN_POST_BLOCK 256   /* rows per block of the row-local steps */
#define SN_NN_MAX_THREADS 64
#define SN_NN_PAR_MIN (1 << 17) /* work (~flops) worth waking helpers */
#define SN_NN_NAME_MAX 256      /* bytes of a tensor name */
#define SN_NN_MAX_CONFIG (1u << 20) /* bytes of config.json */
#define SN_NN_MAX_DIM (1 << 16)
#define SN_NN_MAX_LAYERS 256
#define SN_NN_MAX_VOCAB (1 << 24)
#define SN_NN_MAX_POS (1 << 20)

/* ---- kernels (embed/kernels.c) ------------------------------------------ */

/* Activations (sn__act_t, embed_int.h): SN_ACT_GELU (erf), SN_ACT_GELU_TANH
 * (gelu_new, gelu_pytorch_tanh), SN_ACT_SILU, SN_ACT_RELU. The gated forms
 * compute act(a) * b. */

/* Parse a transformers activation name ("gelu", "gelu_new", "silu",
 * "swish", "relu", ...); -1 when unknown. */
int sn__act_parse(const char *name);

/* One attention item: head h of one sequence of L rows. q, k, v point at
 * the head's first row (its columns), rows ldq / ldk / ldv floats apart;
 * the output goes to out (rows ldo apart). */
typedef struct {
    const float *q, *k, *v;
    size_t ldq, ldk, ldv;
    float *out;
    size_t ldo;
    int L, d;
    float scale;       /* scores = scale q k^T */
    int causal;        /* row i sees j <= i */
    int window;        /* > 0: row i sees |i - j| <= window */
    const float *bias; /* NULL, or [2L - 1] added to score (i, j) at
                        * index j - i + L - 1 */
} sn__att_t;

typedef struct {
    const char *name;
    /* x[r][c] = act(x[r][c]) for c < cols; rows ld floats apart */
    void (*act)(float *x, int rows, int cols, size_t ld, sn__act_t act);
    /* x[r][c] = act(x[r][c]) * x[r][n + c] for c < n; rows ld apart */
    void (*glu)(float *x, int rows, int n, size_t ld, sn__act_t act);
    /* x[r][c] += b[c] */
    void (*add_rows)(float *x, const float *b, int rows, int cols);
    /* x[r] = LayerNorm(x[r]) * g + b in place (b may be NULL: no bias) */
    void (*ln)(float *x, const float *g, const float *b, int rows, int n,
               float eps);
    /* x[r] = x[r] / sqrt(mean(x[r]^2) + eps) * g, rows ld apart */
    void (*rms)(float *x, const float *g, int rows, int n, size_t ld,
                float eps);
    /* scratch: kt [d * Lp], vp [L * dp], s [SN_NN_ATT_ROWS * Lp]
     * (Lp, dp: L, d rounded up to 16) */
    void (*attention)(const sn__att_t *a, float *kt, float *vp, float *s);
    /* The same with Q, K, V and the probabilities rounded to bf16 and
     * both products in bf16 dot products (fp32 sums, scores and softmax),
     * for weights in reduced precision; NULL where the CPU has no
     * AVX512_BF16. Scratch: kt [dp * Lp], vp [Lp * dp],
     * s [SN_NN_ATT_ROWS * (Lp + dp)]. */
    void (*attention_lp)(const sn__att_t *a, float *kt, float *vp, float *s);
} sn__kernels_t;

/* The best kernels this CPU runs; SENSE_BERT_KERNELS=base|avx2|avx512
 * caps the choice (for tests and comparisons). */
const sn__kernels_t *sn__kernels_pick(void);

/* ---- runtime (embed/nn.c) ------------------------------------------------ */

typedef struct sn__nn sn__nn_t;

/* As many threads as OpenBLAS is allowed (the daemon sets it to cores /
 * workers), capped at the cores. NULL when out of memory. */
sn__nn_t *sn__nn_new(void);
void sn__nn_free(sn__nn_t *nn);
const sn__kernels_t *sn__nn_kernels(const sn__nn_t *nn);
/* 1 when a product failed since the last call (and clears it). */
int sn__nn_take_failed(sn__nn_t *nn);
int sn__nn_threads(const sn__nn_t *nn);

/* A scratch buffer of at least n_floats, 64-byte aligned, owned by nn; it
 * only grows (geometrically), and its contents are not kept across
 * calls with a larger n. NULL when out of memory. */
float *sn__nn_scratch(sn__nn_t *nn, size_t n_floats);
size_t sn__nn_round16(size_t n_floats);

/* One parallel step: rows [0, rows) split evenly over the threads, each
 * calling row_fn(row_arg, r0, r1); then items [0, n_items) handed out one
 * at a time, item_fn(item_arg, item, thread). Runs on this thread alone
 * when `work` (~flops) is below SN_NN_PAR_MIN. */
typedef struct {
    int rows;
    void (*row_fn)(void *arg, int r0, int r1);
    void *row_arg;
    int n_items;
    void (*item_fn)(void *arg, int item, int tid);
    void *item_arg;
    double work;
} sn__nn_job_t;
void sn__nn_run(sn__nn_t *nn, const sn__nn_job_t *job);

/* c[T, n] += a[T, k] W^T with W packed [n out, k in]; a's rows lda floats
 * apart, c's ldc. Split over the threads by W's panels. A weight packed in
 * reduced precision first converts a's rows (split by rows) into a buffer
 * nn keeps; when that cannot grow, the product is skipped and
 * sn__nn_take_failed says so (sn__enc_forward checks it). */
void sn__nn_linear(sn__nn_t *nn, const float *a, size_t lda,
                   const sn__gemm_w_t *w, float *c, size_t ldc, int T);

/* Self-attention of every sequence over itself (items: sequence x head).
 * q, k, v: row 0, head 0 of the packed rows; query head h reads K/V head
 * h / (n_heads / n_kv_heads). rel: NULL, or a relative position bias table
 * [n_buckets, n_heads] (T5 / MPNet: bidirectional buckets). A row step
 * (rows, row_fn, row_arg) may ride along in the same fork-join. */
typedef struct {
    const float *q, *k, *v;
    size_t ldq, ldk, ldv;
    float *out;
    size_t ldo;
    int n_heads, n_kv_heads, d;
    float scale;
    int causal, window;
    const float *rel;
    int n_buckets, max_distance;
    int n_seq;
    const int *seq_off, *seq_len; /* non-empty sequences only */
    int lowp; /* the weights are in reduced precision: attention may run
               * in bf16 too (kernels' attention_lp, where the CPU has it) */
    int rows;
    void (*row_fn)(void *arg, int r0, int r1);
    void *row_arg;
} sn__nn_att_job_t;
int sn__nn_attention(sn__nn_t *nn, const sn__nn_att_job_t *j);

/* Int scratch (sequence offsets, positions), as sn__nn_scratch. */
int *sn__nn_iscratch(sn__nn_t *nn, size_t n);

/* A row step most forward passes need between two products, for rows
 * [r0, r1) (sn__nn_job_t's row_fn with this as its argument), in this
 * order: copy rows of `src` (ln_n wide) to `ln` / `rms`; LayerNorm `ln`
 * (rows of ln_n, bias optional) or RMSNorm `rms` (gain rms_g);
 * add add_b to rows of `add` (add_n); act (or the gated form when glu)
 * on rows of `act` (act_n columns, rows act_ld apart); fill rows of
 * `fill` (fill_n) with fill_b (NULL: zeros). Unused members are NULL / 0. */
typedef struct {
    const sn__kernels_t *k;
    const float *src;
    float *ln;
    const float *ln_g, *ln_b;
    int ln_n;
    float eps;
    float *rms;
    const float *rms_g;
    float *add;
    const float *add_b;
    int add_n;
    float *act;
    int act_n, glu;
    size_t act_ld;
    sn__act_t act_fn;
    float *fill;
    const float *fill_b;
    int fill_n;
} sn__rowstep_t;
void sn__rowstep(void *arg, int r0, int r1);
/* Run one row step over rows [0, T) with `work` ~flops. */
void sn__nn_rows(sn__nn_t *nn, sn__rowstep_t *st, int T, double work);

/* T5's (and MPNet's) bidirectional bucket of relative position j - i. */
int sn__rel_bucket(int rel, int n_buckets, int max_distance);

/* Rotate the first n_heads heads of d columns of each row of x (rows ld
 * floats apart) by RoPE at the row's position pos[r] (NeoX halves:
 * x[i], x[i + d/2]), with the angle table of sn__rope_table. */
void sn__rope(float *x, size_t ld, int n_heads, int d, const int *pos,
              int rows, const float *cs);
/* cos/sin table for positions [0, n_pos): [n_pos][d] floats, cos in the
 * first d/2, sin in the last d/2, computed in fp32 as transformers does
 * (inv_freq = 1 / theta^(2i/d), angle = pos * inv_freq). */
float *sn__rope_table(int n_pos, int d, double theta);

/* ---- loading helpers (embed/nn.c) ---------------------------------------- */

/* Integer field `key` of a config object: required unless has_def; must
 * lie in [lo, hi]; JSON null counts as absent; 384.0 is accepted. */
int sn__cfg_int(json_t *root, const char *key, int has_def, int def,
                long long lo, long long hi, int *out, const char *name,
                char *err, size_t err_len);
int sn__cfg_str(json_t *root, const char *key, const char *def,
                const char **out, const char *name, char *err,
                size_t err_len);
int sn__cfg_num(json_t *root, const char *key, double def, double lo,
                double hi, double *out, const char *name, char *err,
                size_t err_len);

/* Tensor binding over one safetensors file, names under `prefix`. */
typedef struct {
    sn__st_file_t *st;
    char prefix[32];
    int prec; /* SN_GEMM_*: what sn__bind_pack packs the dense weights in */
} sn__binder_t;

/* Open dir/model.safetensors (or its sharded index) into b->st, the dense
 * weights to be packed in precision prec (SN_GEMM_*); a loader's first
 * step. */
int sn__bind_open(sn__binder_t *b, const char *dir, int prec, char *err,
                  size_t err_len);
/* Bind prefix + printf(fmt, ...) as f32 of shape [d0] (d1 == 0) or
 * [d0, d1]; errors name the file and the tensor. */
int sn__bind(sn__binder_t *b, const float **out, int64_t d0, int64_t d1,
             char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
/* Whether prefix + name is in the file. */
int sn__bind_has(sn__binder_t *b, const char *name);
/* Pack src [n_out, n_in] (a bound view) into w, then drop the view's
 * pages: the converted copy of an F16/BF16 tensor is freed, an F32 view's
 * pages in the mapping are madvise'd away. `what` and `l` label errors. */
int sn__bind_pack(sn__binder_t *b, sn__gemm_w_t *w, const float *src,
                  int n_out, int n_in, const char *what, int l, char *err,
                  size_t err_len);
/* Pack the views v[0..n) ([rows[i], k] each) stacked as one
 * [sum rows, k] weight (fused Q/K/V, gate/up), then drop them. */
int sn__bind_pack_stacked(sn__binder_t *b, sn__gemm_w_t *w,
                          const float **v, const int *rows, int n, int k,
                          const char *what, int l, char *err, size_t err_len);
/* Drop a bound view that nothing reads again (as sn__bind_pack does). */
void sn__bind_release(sn__binder_t *b, const float *src, size_t n);

/* ---- the BERT-style post-norm block (bert.c, mpnet.c, distilbert.c) ------
 * x = LN(x + Attention(x) Wo + bo); x = LN(x + act(x Wi + bi) Wf + bf),
 * with Q, K and V fused into one packed [3H, H] product. */
typedef struct {
    sn__gemm_w_t qkv; /* packed fused [3H, H]: q | k | v */
    const float *qkv_b;
    sn__gemm_w_t o;
    const float *o_b;
    const float *ln1_g, *ln1_b;
    sn__gemm_w_t i;
    const float *i_b;
    sn__gemm_w_t f;
    const float *f_b;
    const float *ln2_g, *ln2_b;
} sn__post_layer_t;

typedef struct {
    int H, FF, n_heads, n_layers;
    float eps;
    sn__act_t act;
    const float *emb_ln_g, *emb_ln_b; /* the embeddings' LayerNorm */
    const float *rel; /* NULL, or relative bias [n_buckets, heads] */
    int n_buckets, max_distance;
    sn__post_layer_t *layers;
    float *fused; /* owned: the fused QKV biases of all layers */
} sn__post_t;

/* Bind the q/k/v weights and biases given (views [H, H] and [H]) into
 * layer l's fused packed product, then drop the views. */
int sn__post_fuse_qkv(sn__binder_t *b, sn__post_t *p, int l,
                      const float *q, const float *k, const float *v,
                      const float *qb, const float *kb, const float *vb,
                      char *err, size_t err_len);
int sn__post_alloc(sn__post_t *p, char *err, size_t err_len);
void sn__post_free(sn__post_t *p);
/* Room for T rows; returns x [T, H], where the caller writes the summed
 * embeddings (before their LayerNorm). NULL when out of memory. */
float *sn__post_reserve(sn__nn_t *nn, const sn__post_t *p, int T);
/* The embeddings' LayerNorm and every layer over the n_seq sequences
 * packed in x; the last hidden state is left in x. */
int sn__post_forward(sn__nn_t *nn, const sn__post_t *p, int T,
                     const int *lens, int n_seq);

/* ---- the architecture table (embed/arch.c) ------------------------------- */

typedef struct sn__arch sn__arch_t;

/* A loaded encoder of any architecture. */
typedef struct {
    const sn__arch_t *arch;
    void *impl;       /* the architecture's own model */
    const char *kind; /* "bert", "xlm-roberta", "qwen3", ... */
    int n_vocab, n_hidden, n_layers;
    int max_len;      /* longest sequence the model takes */
    int causal;       /* token states see only leftward (decoders) */
    int pools;        /* forward writes sentence vectors itself */
    int dim;          /* their size when it does */
    int prec;         /* SN_GEMM_*: the dense weights' precision, set by
                       * sn__enc_load before the architecture's load */
    char why[640];    /* how prec and the gemm backend were chosen */
} sn__enc_t;

/* The precision (SN_GEMM_*) for architecture `arch` when `asked`
 * (sn_precision_t; SN_PREC_AUTO: the recorded rule) on this CPU
 * (sn__isa), with one line saying why into why. */
int sn__prec_resolve(int asked, const char *arch, char *why, size_t why_len);

struct sn__arch {
    const char *name;
    const char *const *model_types; /* NULL-terminated */
    /* config.json's parsed object and model folder -> e->impl and the
     * fields of e */
    int (*load)(const char *dir, json_t *cfg, const char *cfg_path,
                sn__enc_t *e, char *err, size_t err_len);
    void (*free)(void *impl);
    /* Optional: an architecture's own per-thread state (default: an
     * sn__nn_t runtime). */
    void *(*ctx_new)(const void *impl);
    void (*ctx_free)(void *ctx);
    /* Forward over n_seq sequences packed back to back (lens[i] ids each):
     * the last hidden state, sum(lens) x n_hidden, to tokens_out (NULL:
     * not wanted, where the architecture allows); sentence vectors
     * (n_seq x dim) to sent_out when it pools itself. Inputs are checked
     * by sn__enc_forward first. */
    int (*forward)(const void *impl, void *ctx, const int32_t *ids,
                   const int *lens, int n_seq, float *tokens_out,
                   float *sent_out, char *err, size_t err_len);
};

/* The input checks of sn__enc_forward, for architectures called directly
 * (kind labels the messages). */
int sn__enc_check(const char *kind, int n_vocab, int max_len,
                  const int32_t *ids, const int *lens, int n_seq, char *err,
                  size_t err_len);
/* Read dir/config.json, pick the architecture by model_type and load it.
 * An unknown model_type fails naming the supported ones. */
int sn__enc_load(const char *dir, int prec, sn__enc_t **out, char *err,
                 size_t err_len);
/* The default model's folder format (TF.js graph: model.json). */
int sn__enc_load_use(const char *dir, int prec, sn__enc_t **out, char *err,
                     size_t err_len);
void sn__enc_free(sn__enc_t *e);
void *sn__enc_ctx_new(const sn__enc_t *e);
void sn__enc_ctx_free(const sn__enc_t *e, void *ctx);
/* Checks the inputs (lengths, ids in the vocabulary, the batch size), then
 * runs the architecture's forward pass. */
int sn__enc_forward(const sn__enc_t *e, void *ctx, const int32_t *ids,
                    const int *lens, int n_seq, float *tokens_out,
                    float *sent_out, char *err, size_t err_len);
/* The supported model_type names, ", "-separated. */
const char *sn__enc_supported(void);

/* The architectures (one file each). */
extern const sn__arch_t sn__arch_bert, sn__arch_mpnet, sn__arch_distilbert,
    sn__arch_modernbert, sn__arch_t5, sn__arch_qwen3, sn__arch_use;

#endif
