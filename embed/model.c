/*
 * model.c -- a model folder as sentence-transformers saves it, and the
 * sentence-embedding pipeline over it: tokenize, pack, encode, pool,
 * normalize, truncate.
 *
 * What is read from the folder:
 *   config.json, model.safetensors     the encoder (embed/arch.c picks the
 *                                      architecture by model_type)
 *   tokenizer.json or vocab.txt        the tokenizer (tokenizer.c)
 *   modules.json                       Transformer [+ Pooling] [+ Dense...]
 *                                      [+ Normalize];
 *                                      absent: mean pooling, no normalize
 *   1_Pooling/config.json              both the sentence-transformers 6
 *                                      layout ("pooling_mode": "mean") and the
 *                                      older pooling_mode_* booleans
 *   sentence_bert_config.json          max_seq_length (older layout)
 *   tokenizer_config.json              model_max_length
 *   config_sentence_transformers.json  prompts ("query": "query: ")
 *   N_Dense/config.json, model.safetensors  a Dense module: y = act(W x + b)
 *                                      (linear.weight [out, in], linear.bias
 *                                      when "bias" is true; any activation
 *                                      of activation_function's list)
 *
 * The default model (Universal Sentence Encoder Lite, a TF.js graph model
 * folder with model.json and vocab.json) goes through use_lite.c instead;
 * "default" names it at sn_model_default_path().
 *
 * max_tokens = max_seq_length, else model_max_length, capped by the
 * encoder's longest sequence (its position table, minus XLM-R's offset). Texts are encoded packed back to
 * back without padding, in sub-batches of at most SN_MODEL_BATCH_TOKENS
 * tokens, so a text's vector never depends on its neighbours.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "embed_int.h"
#include "nn.h"
#include "tokenizer_int.h"

#define SN_MODEL_BATCH_TOKENS 8192   /* tokens per forward call at most */
#define SN_MODEL_MAX_PROMPTS 16
#define SN_MODEL_MAX_JSON (16u << 20) /* config files: 16 MiB at most */
#define SN_MODEL_MAX_DENSE 4          /* Dense modules after pooling */
#define SN_MODEL_MAX_DENSE_DIM 65536  /* in or out features of one */

typedef enum {
    DENSE_IDENTITY = 0,
    DENSE_TANH,
    DENSE_RELU,
    DENSE_SIGMOID,
    DENSE_GELU,
    DENSE_SILU,
} dense_act_t;

/* A sentence-transformers Dense module: out = act(W in + b). */
typedef struct {
    int n_in, n_out;
    float *w; /* [n_out, n_in], owned */
    float *b; /* [n_out] or NULL */
    dense_act_t act;
} dense_t;

struct sn_model {
    char *path;
    char name[256];
    sn__enc_t *enc;          /* the encoder (embed/arch.c's table) */
    const sn_tokenizer_t *tok; /* owned, from sn_tokenizer_load, except
                                * the default model's (owned by it) */
    int own_tok;
    int hidden;              /* per-token state size */
    int dim;                 /* sentence vector size */
    int max_tokens;
    sn_pool_t pool;
    int include_prompt;
    int normalize;
    int n_dense;
    dense_t dense[SN_MODEL_MAX_DENSE];
    int widest;              /* the longest vector on the way to dim */
    int n_prompts;
    char *prompt_names[SN_MODEL_MAX_PROMPTS];
    char *prompt_texts[SN_MODEL_MAX_PROMPTS];
};

struct sn_ctx {
    const sn_model_t *model;
    void *enc;                /* the encoder's per-thread state */
    int32_t *ids;
    int *lens;
    float *hidden;
    float *sent;
    size_t ids_cap, lens_cap, hidden_cap, sent_cap;
};

/* Load a JSON file; *out = NULL (and 0 returned) when it does not exist and
 * `optional` is set. */
static int load_json(const char *dir, const char *name, int optional,
                     json_t **out, char *err, size_t err_len)
{
    char path[4096];
    json_error_t jerr;

    *out = NULL;
    if (sn__path_join(path, sizeof path, dir, name))
        return sn__err(err, err_len, SN_ETOOBIG, "'%s/%s': path too long",
                       dir, name);
    if (!sn__file_exists(path)) {
        if (optional)
            return 0;
        return sn__err(err, err_len, -ENOENT, "'%s': no such file", path);
    }
    char *buf;
    size_t len;
    int rc = sn__read_file(path, SN_MODEL_MAX_JSON, &buf, &len, err, err_len);
    if (rc)
        return rc;
    *out = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    free(buf);
    if (!*out)
        return sn__err(err, err_len, SN_EJSON,
                       "'%s': malformed json at line %d column %d: %s", path,
                       jerr.line, jerr.column, jerr.text);
    return 0;
}

static int parse_pooling(sn_model_t *m, const json_t *cfg, const char *path,
                         char *err, size_t err_len)
{
    const json_t *mode = json_object_get(cfg, "pooling_mode");
    const json_t *v;

    m->include_prompt = 1;
    if ((v = json_object_get(cfg, "include_prompt")) && json_is_boolean(v))
        m->include_prompt = json_is_true(v);
    if (mode) {
        /* sentence-transformers 6 */
        const char *s = json_string_value(mode);
        if (!s)
            return sn__err(err, err_len, SN_EMODEL,
                           "'%s': pooling_mode is not a string", path);
        if (!strcmp(s, "mean"))
            m->pool = SN_POOL_MEAN;
        else if (!strcmp(s, "cls"))
            m->pool = SN_POOL_CLS;
        else if (!strcmp(s, "max"))
            m->pool = SN_POOL_MAX;
        else if (!strcmp(s, "mean_sqrt_len_tokens"))
            m->pool = SN_POOL_MEAN_SQRT_LEN;
        else if (!strcmp(s, "lasttoken"))
            m->pool = SN_POOL_LASTTOKEN;
        else
            return sn__err(err, err_len, SN_EMODEL,
                           "'%s': unsupported pooling_mode '%s'", path, s);
        return 0;
    }
    /* the older layout: one boolean per mode */
    static const struct {
        const char *key;
        sn_pool_t pool;
    } modes[] = {
        {"pooling_mode_mean_tokens", SN_POOL_MEAN},
        {"pooling_mode_cls_token", SN_POOL_CLS},
        {"pooling_mode_max_tokens", SN_POOL_MAX},
        {"pooling_mode_mean_sqrt_len_tokens", SN_POOL_MEAN_SQRT_LEN},
        {"pooling_mode_lasttoken", SN_POOL_LASTTOKEN},
    };
    static const char *unsupported[] = {"pooling_mode_weightedmean_tokens"};
    int n_on = 0;
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        v = json_object_get(cfg, modes[i].key);
        if (v && !json_is_boolean(v))
            return sn__err(err, err_len, SN_EMODEL,
                           "'%s': %s is not a boolean", path, modes[i].key);
        if (json_is_true(v)) {
            m->pool = modes[i].pool;
            n_on++;
        }
    }
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++)
        if (json_is_true(json_object_get(cfg, unsupported[i])))
            return sn__err(err, err_len, SN_EMODEL, "'%s': %s is unsupported",
                           path, unsupported[i]);
    if (n_on != 1)
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s': expected exactly one pooling mode, found %d",
                       path, n_on);
    return 0;
}

/* A Dense module in dir/sub: its config.json and model.safetensors. Its
 * input must be what comes before it (the pooled vector or the previous
 * Dense); m->dim becomes its output. */
static int load_dense(sn_model_t *m, const char *dir, const char *sub,
                      char *err, size_t err_len)
{
    static const struct {
        const char *name;
        dense_act_t act;
    } acts[] = {
        {"torch.nn.modules.linear.Identity", DENSE_IDENTITY},
        {"torch.nn.modules.activation.Tanh", DENSE_TANH},
        {"torch.nn.modules.activation.ReLU", DENSE_RELU},
        {"torch.nn.modules.activation.Sigmoid", DENSE_SIGMOID},
        {"torch.nn.modules.activation.GELU", DENSE_GELU},
        {"torch.nn.modules.activation.SiLU", DENSE_SILU},
    };
    char ddir[4096], path[4200];
    json_t *cfg = NULL;
    sn__st_file_t *st = NULL;
    dense_t *d;
    const float *w, *b = NULL;
    int rc, has_bias;

    if (m->n_dense >= SN_MODEL_MAX_DENSE)
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s/modules.json': more than %d Dense modules", dir,
                       SN_MODEL_MAX_DENSE);
    if (sn__path_join(ddir, sizeof ddir, dir, sub))
        return sn__err(err, err_len, SN_ETOOBIG, "path too long");
    d = &m->dense[m->n_dense];
    snprintf(path, sizeof path, "%s/config.json", ddir);
    if ((rc = load_json(ddir, "config.json", 0, &cfg, err, err_len)))
        return rc;
    const json_t *vi = json_object_get(cfg, "in_features");
    const json_t *vo = json_object_get(cfg, "out_features");
    const json_t *vb = json_object_get(cfg, "bias");
    const char *act = json_string_value(
        json_object_get(cfg, "activation_function"));
    if (!json_is_integer(vi) || !json_is_integer(vo) ||
        json_integer_value(vi) < 1 || json_integer_value(vo) < 1 ||
        json_integer_value(vi) > SN_MODEL_MAX_DENSE_DIM ||
        json_integer_value(vo) > SN_MODEL_MAX_DENSE_DIM) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': in_features and out_features must be integers "
                     "in [1, %d]", path, SN_MODEL_MAX_DENSE_DIM);
        goto fail;
    }
    d->n_in = (int)json_integer_value(vi);
    d->n_out = (int)json_integer_value(vo);
    has_bias = !vb || json_is_true(vb);
    d->act = DENSE_IDENTITY;
    if (act) {
        size_t i;
        for (i = 0; i < sizeof acts / sizeof *acts; i++)
            if (!strcmp(act, acts[i].name))
                break;
        if (i == sizeof acts / sizeof *acts) {
            rc = sn__err(err, err_len, SN_EMODEL,
                         "'%s': unsupported activation_function '%s'", path,
                         act);
            goto fail;
        }
        d->act = acts[i].act;
    }
    if (d->n_in != m->dim) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': in_features %d, but the vector before it has %d",
                     path, d->n_in, m->dim);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", ddir);
    if (!sn__file_exists(path)) {
        snprintf(path, sizeof path, "%s/pytorch_model.bin", ddir);
        rc = sn__file_exists(path)
                 ? sn__err(err, err_len, SN_EMODEL,
                           "'%s': pytorch_model.bin is unsupported: convert "
                           "it to model.safetensors", ddir)
                 : sn__err(err, err_len, -ENOENT,
                           "'%s/model.safetensors': no such file", ddir);
        goto fail;
    }
    if ((rc = sn__st_open(path, &st, err, err_len)))
        goto fail;
    int64_t shape[2] = {d->n_out, d->n_in};
    if ((rc = sn__st_get_f32(st, "linear.weight", 2, shape, &w, err,
                             err_len)))
        goto fail;
    if (has_bias && (rc = sn__st_get_f32(st, "linear.bias", 1, shape, &b,
                                         err, err_len)))
        goto fail;
    if ((rc = sn__st_check_unused(st, (const char *const[]){NULL}, err,
                                  err_len)))
        goto fail;
    d->w = malloc((size_t)d->n_out * d->n_in * sizeof *d->w);
    d->b = has_bias ? malloc((size_t)d->n_out * sizeof *d->b) : NULL;
    if (!d->w || (has_bias && !d->b)) {
        free(d->w);
        free(d->b);
        d->w = d->b = NULL;
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(d->w, w, (size_t)d->n_out * d->n_in * sizeof *d->w);
    if (has_bias)
        memcpy(d->b, b, (size_t)d->n_out * sizeof *d->b);
    m->n_dense++;
    m->dim = d->n_out;
    if (d->n_out > m->widest)
        m->widest = d->n_out;
fail:
    sn__st_close(st);
    json_decref(cfg);
    return rc;
}

/* out = act(W in + b), fp32 like torch.nn.Linear (accumulated in double). */
static void dense_apply(const dense_t *d, const float *in, float *out)
{
    for (int o = 0; o < d->n_out; o++) {
        const float *w = d->w + (size_t)o * d->n_in;
        double acc = d->b ? d->b[o] : 0.0;
        for (int i = 0; i < d->n_in; i++)
            acc += (double)w[i] * in[i];
        float y = (float)acc;
        switch (d->act) {
        case DENSE_IDENTITY:
            break;
        case DENSE_TANH:
            y = tanhf(y);
            break;
        case DENSE_RELU:
            y = y > 0 ? y : 0;
            break;
        case DENSE_SIGMOID:
            y = 1.0f / (1.0f + expf(-y));
            break;
        case DENSE_GELU:
            y = 0.5f * y * (1.0f + erff(y * 0.70710678118654752f));
            break;
        case DENSE_SILU:
            y = y / (1.0f + expf(-y));
            break;
        }
        out[o] = y;
    }
}

/* A module's folder must be inside the model folder: relative, no "..",
 * and (links resolved) still under it -- a model folder someone else made
 * must not make us read files elsewhere. */
static int inside(const char *dir, const char *mpath, char *err,
                  size_t err_len)
{
    char joined[4096], real_dir[PATH_MAX], real_sub[PATH_MAX];
    const char *p = mpath;

    if (mpath[0] == '/')
        goto outside;
    while (*p) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.')
            goto outside;
        p += n;
        p += *p == '/';
    }
    if (sn__path_join(joined, sizeof joined, dir, mpath))
        return sn__err(err, err_len, SN_ETOOBIG, "path too long");
    /* a missing folder is reported when its config is read */
    if (realpath(dir, real_dir) && realpath(joined, real_sub)) {
        size_t n = strlen(real_dir);
        if (strncmp(real_sub, real_dir, n) != 0 ||
            (real_sub[n] != '/' && real_sub[n] != '\0' && n > 1))
            goto outside;
    }
    return 0;
outside:
    return sn__err(err, err_len, SN_EMODEL, "'%s/modules.json': module "
                   "path '%s' is outside the model folder", dir, mpath);
}

/* modules.json: which modules, and where the pooling config lives. */
static int parse_modules(sn_model_t *m, const char *dir, char *err,
                         size_t err_len)
{
    json_t *mods = NULL, *pcfg = NULL;
    char pool_dir[4096] = "";
    int rc = 0, have_pool = 0;

    m->pool = SN_POOL_MEAN;
    m->include_prompt = 1;
    if ((rc = load_json(dir, "modules.json", 1, &mods, err, err_len)))
        return rc;
    if (!mods)
        return 0; /* a bare transformers checkpoint: mean pooling */
    if (!json_is_array(mods)) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s/modules.json': not a json array", dir);
        goto fail;
    }
    size_t i;
    json_t *mod;
    json_array_foreach(mods, i, mod) {
        const char *type = json_string_value(json_object_get(mod, "type"));
        const char *mpath = json_string_value(json_object_get(mod, "path"));
        if (!type || !mpath) {
            rc = sn__err(err, err_len, SN_EMODEL,
                         "'%s/modules.json': module %zu lacks type or path",
                         dir, i);
            goto fail;
        }
        const char *base = strrchr(type, '.');
        base = base ? base + 1 : type;
        if (!strcmp(base, "Transformer")) {
            if (mpath[0]) {
                rc = sn__err(err, err_len, SN_EMODEL,
                             "'%s/modules.json': transformer in subfolder "
                             "'%s' is unsupported", dir, mpath);
                goto fail;
            }
        } else if (!strcmp(base, "Pooling")) {
            if ((rc = inside(dir, mpath, err, err_len)))
                goto fail;
            if (sn__path_join(pool_dir, sizeof pool_dir, dir, mpath)) {
                rc = sn__err(err, err_len, SN_ETOOBIG, "path too long");
                goto fail;
            }
            have_pool = 1;
        } else if (!strcmp(base, "Dense")) {
            if ((rc = inside(dir, mpath, err, err_len)) ||
                (rc = load_dense(m, dir, mpath, err, err_len)))
                goto fail;
        } else if (!strcmp(base, "Normalize")) {
            m->normalize = 1;
        } else {
            rc = sn__err(err, err_len, SN_EMODEL,
                         "'%s/modules.json': unsupported module '%s'", dir,
                         type);
            goto fail;
        }
    }
    if (have_pool) {
        char path[4200];
        snprintf(path, sizeof path, "%s/config.json", pool_dir);
        if ((rc = load_json(pool_dir, "config.json", 0, &pcfg, err, err_len)))
            goto fail;
        if ((rc = parse_pooling(m, pcfg, path, err, err_len)))
            goto fail;
        /* the declared dimension must be the encoder's */
        const json_t *d = json_object_get(pcfg, "embedding_dimension");
        if (!d)
            d = json_object_get(pcfg, "word_embedding_dimension");
        if (d && json_integer_value(d) != m->hidden) {
            rc = sn__err(err, err_len, SN_EMODEL,
                         "'%s': embedding dimension %lld, but the encoder's "
                         "hidden size is %d", path,
                         (long long)json_integer_value(d), m->hidden);
            goto fail;
        }
    }
fail:
    json_decref(pcfg);
    json_decref(mods);
    return rc;
}

static int parse_max_tokens(sn_model_t *m, const char *dir, char *err,
                            size_t err_len)
{
    json_t *sb = NULL, *tc = NULL;
    int rc;
    long long max = 0;

    if ((rc = load_json(dir, "sentence_bert_config.json", 1, &sb, err,
                        err_len)))
        return rc;
    if ((rc = load_json(dir, "tokenizer_config.json", 1, &tc, err, err_len)))
        goto fail;
    const json_t *v = sb ? json_object_get(sb, "max_seq_length") : NULL;
    if (v && json_is_integer(v))
        max = json_integer_value(v);
    if (!max && tc) {
        v = json_object_get(tc, "model_max_length");
        /* transformers writes 1e30 for "no limit" */
        if (v && json_is_integer(v) && json_integer_value(v) < (1 << 20))
            max = json_integer_value(v);
    }
    long long cap = m->enc->max_len > 0 ? m->enc->max_len : (1 << 20);
    if (max <= 0 || max > cap)
        max = cap;
    if (max < 2) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': max sequence length %lld leaves no room for text",
                     dir, max);
        goto fail;
    }
    m->max_tokens = (int)max;
fail:
    json_decref(sb);
    json_decref(tc);
    return rc;
}

static int parse_prompts(sn_model_t *m, const char *dir, char *err,
                         size_t err_len)
{
    json_t *cfg = NULL;
    int rc = load_json(dir, "config_sentence_transformers.json", 1, &cfg,
                       err, err_len);
    if (rc || !cfg)
        return rc;
    const json_t *prompts = json_object_get(cfg, "prompts");
    const char *key;
    json_t *val;
    if (prompts && json_is_object(prompts)) {
        json_object_foreach((json_t *)prompts, key, val) {
            if (!json_is_string(val) || m->n_prompts >= SN_MODEL_MAX_PROMPTS)
                continue;
            m->prompt_names[m->n_prompts] = strdup(key);
            m->prompt_texts[m->n_prompts] = strdup(json_string_value(val));
            if (!m->prompt_names[m->n_prompts] ||
                !m->prompt_texts[m->n_prompts]) {
                rc = -ENOMEM;
                break;
            }
            m->n_prompts++;
        }
    }
    json_decref(cfg);
    return rc;
}

int sn_model_default_path(char *buf, size_t len)
{
    const char *env = getenv("SENSE_DEFAULT_MODEL");
    if (!env || !*env)
        return sn_data_path("models/use-lite", buf, len);
    int n = snprintf(buf, len, "%s", env);
    return n < 0 || (size_t)n >= len ? SN_ETOOBIG : 0;
}

static int repo_part_ok(const char *s, size_t n)
{
    if (n == 0 || n > 96 || s[0] == '.' || s[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return 0;
        if (c == '.' && i + 1 < n && s[i + 1] == '.')
            return 0;
    }
    return 1;
}

int sn_model_repo_id_valid(const char *id)
{
    if (!id)
        return 0;
    const char *slash = strchr(id, '/');
    if (!slash)
        return repo_part_ok(id, strlen(id));
    return repo_part_ok(id, (size_t)(slash - id)) &&
           repo_part_ok(slash + 1, strlen(slash + 1));
}

int sn_model_pulled_path(const char *repo_id, char *buf, size_t len)
{
    char name[256];
    if (!sn_model_repo_id_valid(repo_id))
        return SN_EARG;
    snprintf(name, sizeof name, "models/%s", repo_id);
    return sn_data_path(name, buf, len);
}

static void set_name(sn_model_t *m, const char *kind, int layers, int hidden)
{
    const char *path = m->path;
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    size_t b = len;
    while (b > 0 && path[b - 1] != '/')
        b--;
    snprintf(m->name, sizeof m->name, "%s %dx%d (%.*s)", kind, layers, hidden,
             (int)(len - b), path + b);
}

static int load_use(sn_model_t *m, int prec, char *err, size_t err_len)
{
    int rc = sn__enc_load_use(m->path, prec, &m->enc, err, err_len);
    if (rc)
        return rc;
    m->tok = sn__use_tokenizer(m->enc->impl);
    m->hidden = m->enc->n_hidden;
    m->dim = m->widest = m->enc->dim;
    m->max_tokens = m->enc->max_len;
    m->normalize = 1;
    m->pool = SN_POOL_MEAN; /* informational: the graph pools itself */
    m->include_prompt = 1;
    set_name(m, "use-lite", 2, m->dim);
    return 0;
}

int sn_model_locate(const char *name, char *buf, size_t len, char *err,
                    size_t err_len)
{
    char probe[4200];
    struct stat st;
    int n;

    if (!strcmp(name, "default")) {
        if (sn_model_default_path(buf, len))
            return sn__err(err, err_len, SN_ENOTFOUND,
                           "cannot locate the default model: set HOME or "
                           "SENSE_DEFAULT_MODEL");
        snprintf(probe, sizeof probe, "%s/model.json", buf);
        if (!sn__file_exists(probe))
            return sn__err(err, err_len, SN_ENOTFOUND,
                           "default model not found in '%s': run "
                           "scripts/setup to fetch it", buf);
    } else if (stat(name, &st) != 0 && errno == ENOENT &&
               sn_model_repo_id_valid(name)) {
        /* not a folder here: a model `sense pull` stored by that name? */
        if (sn_model_pulled_path(name, buf, len))
            return sn__err(err, err_len, SN_ENOTFOUND,
                           "'%s': no such folder (and no data folder to "
                           "look for a pulled model in: set HOME or "
                           "SENSE_DATA)", name);
        if (stat(buf, &st) != 0)
            return sn__err(err, err_len, SN_ENOTFOUND,
                           "'%s': no such folder, nor a model of that name "
                           "in '%s' (fetch it with: sense pull %s)",
                           name, buf, name);
    } else {
        n = snprintf(buf, len, "%s", name);
        if (n < 0 || (size_t)n >= len)
            return sn__err(err, err_len, SN_ETOOBIG, "'%s': path too long",
                           name);
    }
    if (stat(buf, &st) != 0)
        return sn__err(err, err_len, -errno, "'%s': %s", buf,
                       strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s': not a folder (a model is a folder with "
                       "config.json or model.json)", buf);
    return 0;
}

/* Say in the precision line that $SENSE_PRECISION asked for it. */
static void note_env(sn_model_t *m, int from_env)
{
    char *w = m->enc->why, tail[sizeof m->enc->why];
    const char *asked = "(asked;";

    if (!from_env || strncmp(strchr(w, '(') ? strchr(w, '(') : "", asked,
                             strlen(asked)))
        return;
    snprintf(tail, sizeof tail, "%s", strchr(w, '(') + strlen(asked));
    snprintf(strchr(w, '('), sizeof m->enc->why - (size_t)(strchr(w, '(') - w),
             "(SENSE_PRECISION;%s", tail);
}

static int model_load(const char *path, int with_tok, int prec,
                      sn_model_t **out, char *err, size_t err_len)
{
    sn_model_t *m;
    char where[4096], probe[4200];
    const char *env = getenv("SENSE_PRECISION");
    int rc;

    *out = NULL;
    const int from_env = prec == SN_PREC_AUTO && env && *env;
    if (from_env && (prec = sn_precision_parse(env)) < 0)
        return sn__err(err, err_len, SN_EARG,
                       "SENSE_PRECISION: unknown precision '%s' (auto, f32, "
                       "bf16, int8)",
                       env);
    if (prec < SN_PREC_AUTO || prec > SN_PREC_INT8)
        return sn__err(err, err_len, SN_EARG, "unknown precision %d", prec);
    if ((rc = sn_model_locate(path, where, sizeof where, err, err_len)))
        return rc;
    path = where;
    m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    }
    /* a TF.js graph folder (model.json, no config.json) is the default
     * model's format */
    snprintf(probe, sizeof probe, "%s/config.json", path);
    if (!sn__file_exists(probe)) {
        snprintf(probe, sizeof probe, "%s/model.json", path);
        if (sn__file_exists(probe)) {
            if ((rc = load_use(m, prec, err, err_len)))
                goto fail;
            note_env(m, from_env);
            *out = m;
            return 0;
        }
    }
    if ((rc = sn__enc_load(path, prec, &m->enc, err, err_len)))
        goto fail;
    note_env(m, from_env);
    const sn__enc_t *e = m->enc;
    m->hidden = m->dim = m->widest = e->n_hidden;
    sn_tokenizer_t *tok = NULL;
    if (with_tok && (rc = sn_tokenizer_load(path, &tok, err, err_len)))
        goto fail;
    m->tok = tok;
    m->own_tok = 1;
    if (tok && sn_tokenizer_n_vocab(m->tok) > e->n_vocab) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': tokenizer has %d pieces but the embedding table "
                     "only %d rows", path, sn_tokenizer_n_vocab(m->tok),
                     e->n_vocab);
        goto fail;
    }
    if ((rc = parse_modules(m, path, err, err_len)))
        goto fail;
    if ((rc = parse_max_tokens(m, path, err, err_len)))
        goto fail;
    if ((rc = parse_prompts(m, path, err, err_len)))
        goto fail;
    set_name(m, e->kind, e->n_layers, e->n_hidden);
    *out = m;
    return 0;
fail:
    sn_model_free(m);
    return rc;
}

int sn_model_load(const char *path, sn_model_t **out, char *err,
                  size_t err_len)
{
    return model_load(path, 1, SN_PREC_AUTO, out, err, err_len);
}

int sn_model_load_prec(const char *path, sn_precision_t prec,
                       sn_model_t **out, char *err, size_t err_len)
{
    return model_load(path, 1, (int)prec, out, err, err_len);
}

int sn__model_load_notok(const char *path, sn_model_t **out, char *err,
                         size_t err_len)
{
    return model_load(path, 0, SN_PREC_AUTO, out, err, err_len);
}

int sn__model_load_notok_prec(const char *path, int prec, sn_model_t **out,
                              char *err, size_t err_len)
{
    return model_load(path, 0, prec, out, err, err_len);
}

sn_precision_t sn_model_precision(const sn_model_t *m)
{
    return (sn_precision_t)m->enc->prec;
}

const char *sn_model_precision_why(const sn_model_t *m)
{
    return m->enc->why;
}

int sn_precision_parse(const char *name)
{
    static const char *const names[] = {"auto", "f32", "bf16", "int8"};
    for (int i = 0; name && i < 4; i++)
        if (!strcmp(name, names[i]))
            return i;
    return -1;
}

const char *sn_precision_name(sn_precision_t prec)
{
    static const char *const names[] = {"auto", "f32", "bf16", "int8"};
    return (int)prec >= 0 && (int)prec < 4 ? names[prec] : "?";
}

void sn_model_free(sn_model_t *m)
{
    if (!m)
        return;
    if (m->own_tok) /* the use model owns its tokenizer */
        sn_tokenizer_free((sn_tokenizer_t *)m->tok);
    sn__enc_free(m->enc);
    for (int i = 0; i < m->n_dense; i++) {
        free(m->dense[i].w);
        free(m->dense[i].b);
    }
    for (int i = 0; i < m->n_prompts; i++) {
        free(m->prompt_names[i]);
        free(m->prompt_texts[i]);
    }
    free(m->path);
    free(m);
}

int sn_model_dim(const sn_model_t *m) { return m->dim; }
int sn_model_hidden(const sn_model_t *m) { return m->hidden; }
int sn_model_max_tokens(const sn_model_t *m) { return m->max_tokens; }
sn_pool_t sn_model_pooling(const sn_model_t *m) { return m->pool; }
int sn_model_causal(const sn_model_t *m) { return m->enc->causal; }
int sn_model_normalizes(const sn_model_t *m) { return m->normalize; }
const char *sn_model_name(const sn_model_t *m) { return m->name; }

const sn_tokenizer_t *sn_model_tokenizer(const sn_model_t *m)
{
    return m->tok;
}

const char *sn_model_prompt(const sn_model_t *m, const char *name)
{
    for (int i = 0; i < m->n_prompts; i++)
        if (!strcmp(m->prompt_names[i], name))
            return m->prompt_texts[i];
    return NULL;
}

sn_ctx_t *sn_ctx_new(const sn_model_t *model)
{
    sn_ctx_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->model = model;
    c->enc = sn__enc_ctx_new(model->enc);
    if (!c->enc) {
        free(c);
        return NULL;
    }
    return c;
}

void sn_ctx_free(sn_ctx_t *c)
{
    if (!c)
        return;
    sn__enc_ctx_free(c->model->enc, c->enc);
    free(c->sent);
    free(c->ids);
    free(c->lens);
    free(c->hidden);
    free(c);
}

void sn_embedding_free(sn_embedding_t *e)
{
    if (!e)
        return;
    free(e->sentence);
    free(e->tokens);
    sn_encoding_free(&e->enc);
    memset(e, 0, sizeof *e);
}

/* Grow *p to hold n elements of size sz. */
static int grow(void **p, size_t *cap, size_t n, size_t sz)
{
    if (n <= *cap)
        return 0;
    size_t c = *cap ? *cap : 256;
    while (c < n)
        c *= 2;
    void *q = realloc(*p, c * sz);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

void sn_vec_normalize(float *v, int n)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += (double)v[i] * v[i];
    /* as torch.nn.functional.normalize: divide by max(norm, eps) */
    double norm = sqrt(ss);
    if (norm < 1e-12)
        norm = 1e-12;
    for (int i = 0; i < n; i++)
        v[i] = (float)(v[i] / norm);
}

/* Pool the token states h[0..n_tok) (rows of `hidden`) whose mask is set
 * into out[0..hidden). */
static void pool(sn_pool_t mode, const float *h, const uint8_t *mask,
                 int n_tok, int hidden, float *out)
{
    int n_used = 0;
    switch (mode) {
    case SN_POOL_CLS:
        memcpy(out, h, (size_t)hidden * sizeof *out);
        return;
    case SN_POOL_LASTTOKEN:
        if (n_tok > 0)
            memcpy(out, h + (size_t)(n_tok - 1) * hidden,
                   (size_t)hidden * sizeof *out);
        else
            memset(out, 0, (size_t)hidden * sizeof *out);
        return;
    case SN_POOL_MAX:
        for (int j = 0; j < hidden; j++)
            out[j] = -INFINITY;
        for (int t = 0; t < n_tok; t++) {
            if (!mask[t])
                continue;
            for (int j = 0; j < hidden; j++)
                if (h[(size_t)t * hidden + j] > out[j])
                    out[j] = h[(size_t)t * hidden + j];
            n_used++;
        }
        if (!n_used)
            memset(out, 0, (size_t)hidden * sizeof *out);
        return;
    case SN_POOL_MEAN:
    case SN_POOL_MEAN_SQRT_LEN: {
        double acc[hidden];
        memset(acc, 0, sizeof acc);
        for (int t = 0; t < n_tok; t++) {
            if (!mask[t])
                continue;
            for (int j = 0; j < hidden; j++)
                acc[j] += h[(size_t)t * hidden + j];
            n_used++;
        }
        /* sentence-transformers clamps the count at 1e-9 */
        double d = n_used ? n_used : 1e-9;
        if (mode == SN_POOL_MEAN_SQRT_LEN)
            d = sqrt(d);
        for (int j = 0; j < hidden; j++)
            out[j] = (float)(acc[j] / d);
        return;
    }
    }
}

/* Tokenize one text with the prompt in front; offsets are moved to index
 * the text alone and prompt tokens flagged. */
static int tokenize_one(const sn_model_t *m, const char *prompt,
                        const char *text, size_t len, sn_encoding_t *enc,
                        int *n_prompt_tok, char *err, size_t err_len)
{
    int rc;
    *n_prompt_tok = 0;
    if (!prompt || !*prompt)
        return sn_tokenizer_encode(m->tok, text, len, m->max_tokens, enc, err,
                                   err_len);
    size_t plen = strlen(prompt);
    char *buf = malloc(plen + len + 1);
    if (!buf)
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    memcpy(buf, prompt, plen);
    memcpy(buf + plen, text, len);
    buf[plen + len] = '\0';
    rc = sn_tokenizer_encode(m->tok, buf, plen + len, m->max_tokens, enc, err,
                             err_len);
    free(buf);
    if (rc)
        return rc;
    /* code points in the prompt (it is valid UTF-8: encode accepted it) */
    int32_t pcp = 0;
    for (size_t i = 0; i < plen; i++)
        pcp += ((uint8_t)prompt[i] & 0xC0) != 0x80;
    for (int i = 0; i < enc->n_tokens; i++) {
        if (enc->special[i])
            continue;
        if (enc->start[i] < pcp) {
            enc->special[i] = 1;
            enc->start[i] = enc->end[i] = 0;
            (*n_prompt_tok)++;
        } else {
            enc->start[i] -= pcp;
            enc->end[i] -= pcp;
        }
    }
    return 0;
}

/* Encode texts [i0, i1) whose encodings are in out[], in one forward call. */
static int encode_range(const sn_model_t *m, sn_ctx_t *c, int i0, int i1,
                        const int *n_prompt_tok, const sn_embed_opts_t *opts,
                        sn_embedding_t *out, char *err, size_t err_len)
{
    size_t total = 0;
    int rc;
    for (int i = i0; i < i1; i++)
        total += (size_t)out[i].enc.n_tokens;
    if ((rc = grow((void **)&c->ids, &c->ids_cap, total, sizeof *c->ids)) ||
        (rc = grow((void **)&c->lens, &c->lens_cap, (size_t)(i1 - i0),
                   sizeof *c->lens)) ||
        (rc = grow((void **)&c->hidden, &c->hidden_cap,
                   total * (size_t)m->hidden, sizeof *c->hidden)) ||
        (rc = grow((void **)&c->sent, &c->sent_cap,
                   (size_t)(i1 - i0) * (size_t)m->dim, sizeof *c->sent)))
        return sn__err(err, err_len, rc, "out of memory");
    size_t k = 0;
    for (int i = i0; i < i1; i++) {
        if (out[i].enc.n_tokens) /* an empty text may have no tokens */
            memcpy(c->ids + k, out[i].enc.ids,
                   (size_t)out[i].enc.n_tokens * sizeof *c->ids);
        c->lens[i - i0] = out[i].enc.n_tokens;
        k += (size_t)out[i].enc.n_tokens;
    }
    rc = sn__enc_forward(m->enc, c->enc, c->ids, c->lens, i1 - i0,
                         c->hidden, c->sent, err, err_len);
    if (rc)
        return rc;

    int dim = m->dim;
    if (opts && opts->dimensions > 0 && opts->dimensions < dim)
        dim = opts->dimensions;
    const float *h = c->hidden;
    for (int i = i0; i < i1; i++) {
        sn_embedding_t *e = &out[i];
        int n_tok = e->enc.n_tokens;
        uint8_t mask[n_tok > 0 ? n_tok : 1];
        /* With include_prompt off, sentence-transformers masks the prompt's
         * own tokenization minus its final special: the prefix specials
         * and the prompt tokens after them. */
        int n_masked = 0;
        if (!m->include_prompt && n_prompt_tok[i])
            n_masked = m->tok->n_prefix + n_prompt_tok[i];
        for (int t = 0; t < n_tok; t++)
            mask[t] = t >= n_masked;
        float full[m->widest], tmp[m->widest];
        if (m->enc->pools) {
            memcpy(full, c->sent + (size_t)(i - i0) * m->dim,
                   (size_t)m->dim * sizeof *full);
        } else {
            pool(m->pool, h, mask, n_tok, m->hidden, full);
            for (int k = 0; k < m->n_dense; k++) {
                dense_apply(&m->dense[k], full, tmp);
                memcpy(full, tmp, (size_t)m->dense[k].n_out * sizeof *tmp);
            }
            if (m->normalize)
                sn_vec_normalize(full, m->dim);
        }
        e->dim = dim;
        e->sentence = malloc((size_t)dim * sizeof *e->sentence);
        if (!e->sentence)
            return sn__err(err, err_len, -ENOMEM, "out of memory");
        memcpy(e->sentence, full, (size_t)dim * sizeof *e->sentence);
        if (dim < m->dim)
            sn_vec_normalize(e->sentence, dim);
        e->hidden = m->hidden;
        if (opts && opts->want_tokens) {
            size_t sz = (size_t)n_tok * m->hidden * sizeof *e->tokens;
            e->tokens = malloc(sz ? sz : 1);
            if (!e->tokens)
                return sn__err(err, err_len, -ENOMEM, "out of memory");
            if (sz)
                memcpy(e->tokens, h, sz);
        }
        if (n_tok)
            h += (size_t)n_tok * m->hidden;
    }
    return 0;
}

/* Encode out[0..n) (tokenized) in sub-batches of at most
 * SN_MODEL_BATCH_TOKENS tokens. */
static int encode_all(const sn_model_t *m, sn_ctx_t *c, int n,
                      const int *n_prompt_tok, const sn_embed_opts_t *opts,
                      sn_embedding_t *out, char *err, size_t err_len)
{
    int i0 = 0, rc;

    while (i0 < n) {
        int i1 = i0;
        size_t tokens = 0;
        while (i1 < n && (i1 == i0 || tokens + (size_t)out[i1].enc.n_tokens <=
                                          SN_MODEL_BATCH_TOKENS))
            tokens += (size_t)out[i1++].enc.n_tokens;
        if ((rc = encode_range(m, c, i0, i1, n_prompt_tok, opts, out, err,
                               err_len)))
            return rc;
        i0 = i1;
    }
    return 0;
}

int sn__model_embed_ids(const sn_model_t *m, sn_ctx_t *c,
                        const int32_t *const *ids, const int *n_ids, int n,
                        const sn_embed_opts_t *opts, sn_embedding_t *out,
                        char *err, size_t err_len)
{
    int rc = 0, *zero = calloc((size_t)(n > 0 ? n : 1), sizeof *zero);

    if (!zero)
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    memset(out, 0, (size_t)n * sizeof *out);
    for (int i = 0; i < n && !rc; i++) {
        sn_encoding_t *e = &out[i].enc;
        size_t k = (size_t)(n_ids[i] > 0 ? n_ids[i] : 1);
        e->ids = malloc(k * sizeof *e->ids);
        e->start = calloc(k, sizeof *e->start);
        e->end = calloc(k, sizeof *e->end);
        e->special = calloc(k, sizeof *e->special);
        if (!e->ids || !e->start || !e->end || !e->special) {
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            break;
        }
        e->cap = (int)k;
        e->n_tokens = n_ids[i];
        if (n_ids[i] > 0)
            memcpy(e->ids, ids[i], (size_t)n_ids[i] * sizeof *e->ids);
    }
    if (!rc)
        rc = encode_all(m, c, n, zero, opts, out, err, err_len);
    if (rc)
        for (int i = 0; i < n; i++)
            sn_embedding_free(&out[i]);
    free(zero);
    return rc;
}

int sn_model_embed(const sn_model_t *m, sn_ctx_t *c, const char *const *texts,
                   const size_t *lens, int n, const sn_embed_opts_t *opts,
                   sn_embedding_t *out, char *err, size_t err_len)
{
    int rc = 0, *n_prompt_tok = NULL;
    const char *prompt = opts ? opts->prompt : NULL;

    if (n < 0 || (n > 0 && (!texts || !out)))
        return sn__err(err, err_len, SN_EARG, "bad arguments");
    if (opts && opts->dimensions < 0)
        return sn__err(err, err_len, SN_EARG, "dimensions must be positive");
    memset(out, 0, (size_t)n * sizeof *out);
    n_prompt_tok = calloc((size_t)(n ? n : 1), sizeof *n_prompt_tok);
    if (!n_prompt_tok)
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        size_t len = lens ? lens[i] : strlen(texts[i]);
        char sub[512];
        rc = tokenize_one(m, prompt, texts[i], len, &out[i].enc,
                          &n_prompt_tok[i], sub, sizeof sub);
        if (rc) {
            rc = sn__err(err, err_len, rc, "text %d: %s", i, sub);
            goto fail;
        }
    }
    if ((rc = encode_all(m, c, n, n_prompt_tok, opts, out, err, err_len)))
        goto fail;
    free(n_prompt_tok);
    return 0;
fail:
    for (int i = 0; i < n; i++)
        sn_embedding_free(&out[i]);
    free(n_prompt_tok);
    return rc;
}
