/*
 * nn.c -- the runtime every architecture's forward pass runs on, and the
 * helpers every loader uses (embed/nn.h).
 *
 * Runtime. One sn__nn_t per encoding thread: a fork-join pool
 * (embed/pool.c) of as many threads as OpenBLAS is allowed (the daemon
 * sets that to cores / workers), capped at the cores; the kernels picked
 * for this CPU; embed/gemm.c's kernel level; a scratch arena for the
 * architecture's activations and one for attention. A step is a job:
 * rows split evenly over the threads, or items (sequence x head) handed
 * out through an atomic counter, or a dense product split by the packed
 * weight's panels (each thread writes its own columns). A step too small
 * to pay for waking the helpers (SN_NN_PAR_MIN) runs on the caller alone.
 * Each row, item and element runs the same code whatever thread takes it,
 * so the split never changes a bit.
 *
 * Loading. config.json fields with bounds; tensors bound by name with
 * their expected shape (a missing or misshapen tensor fails naming it);
 * dense weights packed at load, after which the pages they came from are
 * dropped (MADV_DONTNEED on the read-only mapping, or the converted copy
 * of an F16/BF16 tensor freed), so that the packed copy replaces them in
 * memory rather than doubling them.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/mman.h>

#include <cblas.h>

#include "nn.h"

struct sn__nn {
    const sn__kernels_t *k;
    int gemm_level, isa;
    sn__pool_t *pool;
    int n_threads;
    float *scratch; /* the architecture's activations */
    size_t scratch_cap;
    int *iscratch;
    size_t iscratch_cap;
    float *att; /* attention scratch: per thread kt, vp, s, bias */
    size_t att_cap;
    size_t att_per; /* floats per thread */
    /* the job in flight */
    const sn__nn_job_t *job;
    int next;
    int failed; /* a product could not run (out of memory) */
    void *qa;   /* reduced precision: A converted (sn__gemm_run) */
    size_t qa_cap;
    const sn__nn_att_job_t *aj;
};

sn__nn_t *sn__nn_new(void)
{
    sn__nn_t *nn = calloc(1, sizeof *nn);
    long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
    int want = openblas_get_num_threads();

    if (!nn)
        return NULL;
    nn->k = sn__kernels_pick();
    nn->gemm_level = sn__gemm_level();
    nn->isa = sn__isa();
    if (want > n_cpu)
        want = (int)n_cpu;
    if (want > SN_NN_MAX_THREADS)
        want = SN_NN_MAX_THREADS;
    if (!(nn->pool = sn__pool_new(want))) {
        free(nn);
        return NULL;
    }
    nn->n_threads = sn__pool_threads(nn->pool);
    return nn;
}

void sn__nn_free(sn__nn_t *nn)
{
    if (!nn)
        return;
    sn__pool_free(nn->pool);
    free(nn->scratch);
    free(nn->att);
    free(nn->iscratch);
    free(nn->qa);
    free(nn);
}

const sn__kernels_t *sn__nn_kernels(const sn__nn_t *nn) { return nn->k; }

int sn__nn_take_failed(sn__nn_t *nn)
{
    int f = nn->failed;
    nn->failed = 0;
    return f;
}
int sn__nn_threads(const sn__nn_t *nn) { return nn->n_threads; }

size_t sn__nn_round16(size_t n_floats)
{
    return (n_floats + 15) & ~(size_t)15;
}

/* Grow *buf to n floats (geometrically), 64-byte aligned. */
static float *grow(float **buf, size_t *cap, size_t n)
{
    size_t c;
    float *p;

    if (n <= *cap)
        return *buf;
    c = *cap * 3 / 2;
    c = sn__nn_round16(c > n ? c : n);
    p = aligned_alloc(64, c * sizeof *p);
    if (!p)
        return NULL;
    free(*buf);
    *buf = p;
    *cap = c;
    return p;
}

float *sn__nn_scratch(sn__nn_t *nn, size_t n_floats)
{
    return grow(&nn->scratch, &nn->scratch_cap, n_floats);
}

int *sn__nn_iscratch(sn__nn_t *nn, size_t n)
{
    int *p;
    size_t c;

    if (n <= nn->iscratch_cap)
        return nn->iscratch;
    c = nn->iscratch_cap * 3 / 2;
    c = c > n ? c : n;
    if (!(p = malloc(c * sizeof *p)))
        return NULL;
    free(nn->iscratch);
    nn->iscratch = p;
    nn->iscratch_cap = c;
    return p;
}

void sn__rowstep(void *arg, int r0, int r1)
{
    const sn__rowstep_t *st = arg;
    const sn__kernels_t *k = st->k;
    const int n = r1 - r0;

    if (st->src)
        memcpy(st->ln ? st->ln + (size_t)r0 * st->ln_n
                      : st->rms + (size_t)r0 * st->ln_n,
               st->src + (size_t)r0 * st->ln_n,
               (size_t)n * st->ln_n * sizeof *st->src);
    if (st->ln)
        k->ln(st->ln + (size_t)r0 * st->ln_n, st->ln_g, st->ln_b, n,
              st->ln_n, st->eps);
    if (st->rms)
        k->rms(st->rms + (size_t)r0 * st->ln_n, st->rms_g, n, st->ln_n,
               (size_t)st->ln_n, st->eps);
    if (st->add)
        k->add_rows(st->add + (size_t)r0 * st->add_n, st->add_b, n,
                    st->add_n);
    if (st->act) {
        if (st->glu)
            k->glu(st->act + (size_t)r0 * st->act_ld, n, st->act_n,
                   st->act_ld, st->act_fn);
        else
            k->act(st->act + (size_t)r0 * st->act_ld, n, st->act_n,
                   st->act_ld, st->act_fn);
    }
    if (st->fill && !st->fill_b)
        memset(st->fill + (size_t)r0 * st->fill_n, 0,
               (size_t)n * st->fill_n * sizeof *st->fill);
    for (int r = r0; st->fill && st->fill_b && r < r1; r++)
        memcpy(st->fill + (size_t)r * st->fill_n, st->fill_b,
               (size_t)st->fill_n * sizeof *st->fill);
}

void sn__nn_rows(sn__nn_t *nn, sn__rowstep_t *st, int T, double work)
{
    st->k = nn->k;
    sn__nn_job_t job = {
        .rows = T, .row_fn = sn__rowstep, .row_arg = st, .work = work};
    sn__nn_run(nn, &job);
}

/* Thread tid's share of the job in flight. */
static void part(void *arg, int tid, int n_threads)
{
    sn__nn_t *nn = arg;
    const sn__nn_job_t *j = nn->job;
    int it;

    if (j->rows && j->row_fn) {
        int r0 = (int)((long long)j->rows * tid / n_threads);
        int r1 = (int)((long long)j->rows * (tid + 1) / n_threads);
        if (r1 > r0)
            j->row_fn(j->row_arg, r0, r1);
    }
    if (j->n_items)
        while ((it = __atomic_fetch_add(&nn->next, 1, __ATOMIC_RELAXED)) <
               j->n_items)
            j->item_fn(j->item_arg, it, tid);
}

static void go(sn__nn_t *nn, double work)
{
    nn->next = 0;
    if (nn->n_threads < 2 || work < SN_NN_PAR_MIN)
        part(nn, 0, 1);
    else
        sn__pool_run(nn->pool, part, nn);
}

void sn__nn_run(sn__nn_t *nn, const sn__nn_job_t *job)
{
    nn->job = job;
    go(nn, job->work);
}

void sn__nn_linear(sn__nn_t *nn, const float *a, size_t lda,
                   const sn__gemm_w_t *w, float *c, size_t ldc, int T)
{
    sn__gemm_job_t j = {.level = nn->gemm_level,
                        .m = T,
                        .w = w,
                        .a = a,
                        .c = c,
                        .lda = lda,
                        .ldc = ldc,
                        .isa = nn->isa};

    if (sn__gemm_run(nn->pool, &j, SN_NN_PAR_MIN, &nn->qa, &nn->qa_cap))
        nn->failed = 1; /* no room for A converted: sn__enc_forward fails */
}

int sn__rel_bucket(int rel, int n_buckets, int max_distance)
{
    /* transformers' T5Attention._relative_position_bucket (bidirectional),
     * in fp32 as torch computes it; MPNet's is the same function */
    int ret = 0, n, max_exact;

    n_buckets /= 2;
    if (rel > 0)
        ret += n_buckets;
    n = rel < 0 ? -rel : rel;
    max_exact = n_buckets / 2;
    if (n < max_exact)
        return ret + n;
    float f = logf((float)n / (float)max_exact) /
              (float)log((double)max_distance / max_exact) *
              (float)(n_buckets - max_exact);
    int large = max_exact + (int)f;
    if (large > n_buckets - 1)
        large = n_buckets - 1;
    return ret + large;
}

/* One (sequence, head) of the attention job in flight. */
static void att_item(void *arg, int item, int tid)
{
    sn__nn_t *nn = arg;
    const sn__nn_att_job_t *j = nn->aj;
    const int q = item / j->n_heads, h = item % j->n_heads;
    const int kvh = h / (j->n_heads / j->n_kv_heads);
    const int off = j->seq_off[q], L = j->seq_len[q], d = j->d;
    const size_t Lp = sn__nn_round16((size_t)L), dp = sn__nn_round16(d);
    float *kt = nn->att + nn->att_per * (size_t)tid;
    float *vp = kt + dp * Lp, *s = vp + Lp * dp;
    float *bias = s + SN_NN_ATT_ROWS * (Lp + dp);
    sn__att_t a = {
        .q = j->q + (size_t)off * j->ldq + (size_t)h * d,
        .k = j->k + (size_t)off * j->ldk + (size_t)kvh * d,
        .v = j->v + (size_t)off * j->ldv + (size_t)kvh * d,
        .ldq = j->ldq,
        .ldk = j->ldk,
        .ldv = j->ldv,
        .out = j->out + (size_t)off * j->ldo + (size_t)h * d,
        .ldo = j->ldo,
        .L = L,
        .d = d,
        .scale = j->scale,
        .causal = j->causal,
        .window = j->window,
    };

    if (j->rel) {
        for (int r = -(L - 1); r <= L - 1; r++)
            bias[r + L - 1] =
                j->rel[(size_t)sn__rel_bucket(r, j->n_buckets,
                                              j->max_distance) *
                           j->n_heads +
                       h];
        a.bias = bias;
    }
    if (j->lowp && nn->k->attention_lp)
        nn->k->attention_lp(&a, kt, vp, s);
    else
        nn->k->attention(&a, kt, vp, s);
}

int sn__nn_attention(sn__nn_t *nn, const sn__nn_att_job_t *j)
{
    int longest = 0;
    double work = 0;
    size_t Lp, dp, per;

    for (int s = 0; s < j->n_seq; s++) {
        longest = j->seq_len[s] > longest ? j->seq_len[s] : longest;
        work += (double)j->seq_len[s] * j->seq_len[s] * j->d * j->n_heads;
    }
    Lp = sn__nn_round16((size_t)longest);
    dp = sn__nn_round16((size_t)j->d);
    per = sn__nn_round16(dp * Lp + Lp * dp +
                         SN_NN_ATT_ROWS * (Lp + dp) + 2 * Lp);
    if (per > nn->att_per || nn->att_cap < per * (size_t)nn->n_threads) {
        if (per < nn->att_per)
            per = nn->att_per;
        if (!grow(&nn->att, &nn->att_cap, per * (size_t)nn->n_threads))
            return -ENOMEM;
        nn->att_per = per;
    }
    sn__nn_job_t job = {
        .rows = j->rows,
        .row_fn = j->row_fn,
        .row_arg = j->row_arg,
        .n_items = j->n_seq * j->n_heads,
        .item_fn = att_item,
        .item_arg = nn,
        .work = work,
    };
    nn->aj = j;
    sn__nn_run(nn, &job);
    return 0;
}

float *sn__rope_table(int n_pos, int d, double theta)
{
    const int half = d / 2;
    float *t = malloc((size_t)n_pos * d * sizeof *t);
    float inv[half > 0 ? half : 1];

    if (!t)
        return NULL;
    /* inv_freq = 1 / theta ** (arange(0, d, 2).float() / d), in fp32 */
    for (int i = 0; i < half; i++)
        inv[i] = 1.0f / powf((float)theta, (float)(2 * i) / (float)d);
    for (int p = 0; p < n_pos; p++)
        for (int i = 0; i < half; i++) {
            float a = (float)p * inv[i];
            t[(size_t)p * d + i] = cosf(a);
            t[(size_t)p * d + half + i] = sinf(a);
        }
    return t;
}

void sn__rope(float *x, size_t ld, int n_heads, int d, const int *pos,
              int rows, const float *cs)
{
    const int half = d / 2;

    for (int r = 0; r < rows; r++) {
        const float *c = cs + (size_t)pos[r] * d, *s = c + half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)r * ld + (size_t)h * d;
            for (int i = 0; i < half; i++) {
                /* q cos + rotate_half(q) sin */
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

/* ---- config.json ---------------------------------------------------------- */

int sn__cfg_int(json_t *root, const char *key, int has_def, int def,
                long long lo, long long hi, int *out, const char *name,
                char *err, size_t err_len)
{
    json_t *v = json_object_get(root, key);
    long long x;

    if (!v || json_is_null(v)) {
        if (!has_def)
            return sn__err(err, err_len, SN_EMODEL,
                           "'%s': missing field '%s'", name, key);
        *out = def;
        return 0;
    }
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v) && fabs(json_real_value(v)) < 1e15 &&
               json_real_value(v) == floor(json_real_value(v))) {
        x = (long long)json_real_value(v); /* 384.0 */
    } else {
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s': field '%s' must be an integer", name, key);
    }
    if (x < lo || x > hi)
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s': field '%s' is %lld, outside [%lld, %lld]", name,
                       key, x, lo, hi);
    *out = (int)x;
    return 0;
}

int sn__cfg_str(json_t *root, const char *key, const char *def,
                const char **out, const char *name, char *err,
                size_t err_len)
{
    json_t *v = json_object_get(root, key);

    if (!v || json_is_null(v)) {
        if (!def)
            return sn__err(err, err_len, SN_EMODEL,
                           "'%s': missing field '%s'", name, key);
        *out = def;
        return 0;
    }
    if (!json_is_string(v))
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s': field '%s' must be a string", name, key);
    *out = json_string_value(v);
    return 0;
}

int sn__cfg_num(json_t *root, const char *key, double def, double lo,
                double hi, double *out, const char *name, char *err,
                size_t err_len)
{
    json_t *v = json_object_get(root, key);
    double x;

    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v))
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s': field '%s' must be a number", name, key);
    x = json_number_value(v);
    if (!(x >= lo && x <= hi))
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s': field '%s' is %g, outside [%g, %g]", name, key,
                       x, lo, hi);
    *out = x;
    return 0;
}

/* ---- binding ---------------------------------------------------------------- */

/* The pages of a converted (F16/BF16) tensor's source bytes: nothing
 * reads them again once the f32 copy exists. */
static void release_source(const sn__st_file_t *st, const sn__st_tensor_t *t)
{
    const uint8_t *base;

    if (st->n_shards > 0) {
        if (t->shard < 0 || t->shard >= st->n_shards)
            return;
        base = (const uint8_t *)st->shards[t->shard].map +
               st->shards[t->shard].data_offset;
    } else {
        base = (const uint8_t *)st->map + st->hdr.data_offset;
    }
    if (base && t->end > t->begin)
        sn__st_release(st, base + t->begin, (size_t)(t->end - t->begin));
}

int sn__bind(sn__binder_t *b, const float **out, int64_t d0, int64_t d1,
             char *err, size_t err_len, const char *fmt, ...)
{
    char name[SN_NN_NAME_MAX];
    int64_t shape[2] = {d0, d1};
    size_t pl = strlen(b->prefix);
    va_list ap;
    int n;

    memcpy(name, b->prefix, pl);
    va_start(ap, fmt);
    n = vsnprintf(name + pl, sizeof name - pl, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof name - pl)
        return sn__err(err, err_len, SN_ETOOBIG, "'%s': tensor name too long",
                       b->st->path);
    int rc = sn__st_get_f32(b->st, name, d1 ? 2 : 1, shape, out, err,
                            err_len);
    if (rc == 0) {
        const sn__st_tensor_t *t = sn__st_find(b->st, name);
        if (t && t->converted && t->converted == *out)
            release_source(b->st, t);
    }
    return rc;
}

int sn__bind_has(sn__binder_t *b, const char *name)
{
    char full[SN_NN_NAME_MAX];

    if (snprintf(full, sizeof full, "%s%s", b->prefix, name) >=
        (int)sizeof full)
        return 0;
    return sn__st_find(b->st, full) != NULL;
}

void sn__bind_release(sn__binder_t *b, const float *p, size_t n)
{
    const sn__st_file_t *st = b->st;

    /* a converted F16/BF16 copy: nothing reads it again */
    for (int i = 0; i < st->hdr.n_tensors; i++) {
        sn__st_tensor_t *t = &st->hdr.tensors[i];
        if (t->converted && t->converted == p) {
            free(t->converted);
            t->converted = NULL;
            return;
        }
    }
    /* a view into a read-only file mapping (any shard): MADV_DONTNEED on a
     * private read-only file mapping only unmaps clean page cache, which
     * the kernel could re-read. Only whole pages inside the tensor go; a
     * failure costs memory, not results. */
    sn__st_release(st, p, n * sizeof *p);
}

int sn__bind_open(sn__binder_t *b, const char *dir, int prec, char *err,
                  size_t err_len)
{
    char path[4096];

    b->prec = prec;
    if (sn__path_join(path, sizeof path, dir, "model.safetensors"))
        return sn__err(err, err_len, SN_ETOOBIG, "'%s': path too long", dir);
    return sn__st_open(path, &b->st, err, err_len);
}

int sn__bind_pack(sn__binder_t *b, sn__gemm_w_t *w, const float *src,
                  int n_out, int n_in, const char *what, int l, char *err,
                  size_t err_len)
{
    int rc = sn__gemm_pack_prec(w, src, n_out, n_in, 1, b->prec);

    if (rc)
        return sn__err(err, err_len, rc == -ENOMEM ? rc : SN_EMODEL,
                       "'%s': layer %d: cannot pack %s (%d x %d)",
                       b->st->path, l, what, n_out, n_in);
    sn__bind_release(b, src, (size_t)n_out * n_in);
    return 0;
}

/* ---- the BERT-style post-norm block ---------------------------------------
 * Scratch: x [T, H] the residual stream; att [T, H] the attention output;
 * qkv [T, 3H] (row t = q_t | k_t | v_t); ffn [B, I] for one block of rows.
 * Each product accumulates (C += A W) into a buffer that already holds its
 * bias (and, for the two residual products, the residual x + bias), so no
 * separate bias or residual pass is needed:
 *   qkv = b_qkv + x Wqkv^T; att = attention(qkv); x = LN(x + b_o + att Wo^T);
 *   ffn = act(b_i + x Wi^T); x = LN(x + b_f + ffn Wf^T)
 * The fills and adds ride along with the previous step's LayerNorm/GELU.
 *
 * Everything but attention is row-local, so it runs SN_NN_POST_BLOCK rows
 * at a time: a block's ffn (1.5 MB at B 256, I 1536), the rows of x and
 * att and the next layer's qkv rows stay in L2/L3 from the step that
 * writes them to the one that reads them, where at batch 32 x 128 the
 * whole-batch buffers (ffn alone 25 MB) went through memory at each of
 * the fill, the product, the activation and the next product. A row
 * computes the same bits in any block (the products and row steps are
 * per row), so the blocking changes no result. */

/* rows of ffn the scratch holds */
static int post_block(int T)
{
    return T < SN_NN_POST_BLOCK ? T : SN_NN_POST_BLOCK;
}

int sn__post_alloc(sn__post_t *p, char *err, size_t err_len)
{
    p->layers = calloc((size_t)p->n_layers, sizeof *p->layers);
    p->fused = malloc((size_t)3 * p->H * (size_t)p->n_layers *
                      sizeof *p->fused);
    if (!p->layers || !p->fused)
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    return 0;
}

void sn__post_free(sn__post_t *p)
{
    for (int l = 0; p->layers && l < p->n_layers; l++) {
        sn__gemm_free(&p->layers[l].qkv);
        sn__gemm_free(&p->layers[l].o);
        sn__gemm_free(&p->layers[l].i);
        sn__gemm_free(&p->layers[l].f);
    }
    free(p->layers);
    free(p->fused);
    p->layers = NULL;
    p->fused = NULL;
}

int sn__post_fuse_qkv(sn__binder_t *b, sn__post_t *p, int l,
                      const float *q, const float *k, const float *v,
                      const float *qb, const float *kb, const float *vb,
                      char *err, size_t err_len)
{
    const size_t H = (size_t)p->H;
    float *qkv = malloc(3 * H * H * sizeof *qkv);
    float *bias = p->fused + 3 * H * (size_t)l;
    int rc;

    if (!qkv)
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    memcpy(qkv, q, H * H * sizeof *qkv);
    memcpy(qkv + H * H, k, H * H * sizeof *qkv);
    memcpy(qkv + 2 * H * H, v, H * H * sizeof *qkv);
    memcpy(bias, qb, H * sizeof *bias);
    memcpy(bias + H, kb, H * sizeof *bias);
    memcpy(bias + 2 * H, vb, H * sizeof *bias);
    p->layers[l].qkv_b = bias;
    rc = sn__bind_pack(b, &p->layers[l].qkv, qkv, (int)(3 * H), (int)H,
                       "query/key/value", l, err, err_len);
    free(qkv);
    if (rc)
        return rc;
    sn__bind_release(b, q, H * H);
    sn__bind_release(b, k, H * H);
    sn__bind_release(b, v, H * H);
    return 0;
}

/* scratch layout: x, att, qkv, ffn (one block) */
float *sn__post_reserve(sn__nn_t *nn, const sn__post_t *p, int T)
{
    const size_t H = (size_t)p->H;
    size_t n = 2 * sn__nn_round16((size_t)T * H) +
               sn__nn_round16((size_t)T * 3 * H) +
               sn__nn_round16((size_t)post_block(T) * p->FF);

    return sn__nn_scratch(nn, n);
}

/* Rows [r0, r0 + n) from x (the layer input, before `ln`, which LayerNorms
 * it first when not NULL) to the layer's qkv: LN; qkv = b_qkv;
 * qkv += x Wqkv^T. */
static void post_qkv_rows(sn__nn_t *nn, const sn__post_t *p,
                          const sn__post_layer_t *L, const float *ln_g,
                          const float *ln_b, float *x, float *qkv, int r0,
                          int n)
{
    const size_t H = (size_t)p->H;
    sn__rowstep_t st = {.ln = x + (size_t)r0 * H, .ln_g = ln_g,
                        .ln_b = ln_b, .ln_n = (int)H, .eps = p->eps};

    if (L) {
        st.fill = qkv + (size_t)r0 * 3 * H;
        st.fill_b = L->qkv_b;
        st.fill_n = 3 * (int)H;
    }
    sn__nn_rows(nn, &st, n, (double)n * 4 * (double)H);
    if (L)
        sn__nn_linear(nn, x + (size_t)r0 * H, H, &L->qkv,
                      qkv + (size_t)r0 * 3 * H, 3 * H, n);
}

int sn__post_forward(sn__nn_t *nn, const sn__post_t *p, int T,
                     const int *lens, int n_seq)
{
    const int H = p->H, FF = p->FF, B = post_block(T);
    float *x = sn__nn_scratch(nn, 0); /* reserved by sn__post_reserve */
    float *att = x + sn__nn_round16((size_t)T * H);
    float *qkv = att + sn__nn_round16((size_t)T * H);
    float *ffn = qkv + sn__nn_round16((size_t)T * 3 * H);
    int *seq = sn__nn_iscratch(nn, 2 * (size_t)(n_seq > 0 ? n_seq : 1));
    int n_att = 0, off = 0, rc;

    if (!seq)
        return -ENOMEM;
    for (int s = 0; s < n_seq; off += lens[s++])
        if (lens[s]) {
            seq[n_att] = off;
            seq[n_seq + n_att++] = lens[s];
        }

    /* the embeddings' LayerNorm, then layer 0's qkv */
    for (int r0 = 0; r0 < T; r0 += B)
        post_qkv_rows(nn, p, &p->layers[0], p->emb_ln_g, p->emb_ln_b, x, qkv,
                      r0, T - r0 < B ? T - r0 : B);

    for (int l = 0; l < p->n_layers; l++) {
        const sn__post_layer_t *L = &p->layers[l];
        const sn__post_layer_t *next =
            l + 1 < p->n_layers ? &p->layers[l + 1] : NULL;

        /* attention; x += attention-output bias */
        sn__rowstep_t add = {.k = sn__nn_kernels(nn), .add = x,
                             .add_b = L->o_b, .add_n = H};
        sn__nn_att_job_t aj = {
            .q = qkv, .k = qkv + H, .v = qkv + 2 * H,
            .ldq = (size_t)3 * H, .ldk = (size_t)3 * H, .ldv = (size_t)3 * H,
            .out = att, .ldo = (size_t)H,
            .n_heads = p->n_heads, .n_kv_heads = p->n_heads,
            .d = H / p->n_heads,
            .scale = 1.0f / sqrtf((float)(H / p->n_heads)),
            .rel = p->rel, .n_buckets = p->n_buckets,
            .max_distance = p->max_distance,
            .n_seq = n_att, .seq_off = seq, .seq_len = seq + n_seq,
            .rows = T, .row_fn = sn__rowstep, .row_arg = &add,
            /* bf16 attention for bf16 weights only: with int8 weights
             * it cost test_precision's int8 tolerances (me5 0.99994 ->
             * 0.99991) */
            .lowp = L->qkv.prec == SN_GEMM_BF16};
        if ((rc = sn__nn_attention(nn, &aj)))
            return rc;

        for (int r0 = 0; r0 < T; r0 += B) {
            const int n = T - r0 < B ? T - r0 : B;
            float *xb = x + (size_t)r0 * H;

            /* x = LN(x + att Wo^T); ffn = intermediate bias */
            sn__nn_linear(nn, att + (size_t)r0 * H, (size_t)H, &L->o, xb,
                          (size_t)H, n);
            sn__rowstep_t st = {.ln = xb, .ln_g = L->ln1_g,
                                .ln_b = L->ln1_b, .ln_n = H, .eps = p->eps,
                                .fill = ffn, .fill_b = L->i_b, .fill_n = FF};
            sn__nn_rows(nn, &st, n, (double)n * (4 * H + FF));

            /* ffn = act(ffn + x Wi^T); x += output bias */
            sn__nn_linear(nn, xb, (size_t)H, &L->i, ffn, (size_t)FF, n);
            st = (sn__rowstep_t){.act = ffn, .act_n = FF,
                                 .act_ld = (size_t)FF, .act_fn = p->act,
                                 .add = xb, .add_b = L->f_b, .add_n = H};
            sn__nn_rows(nn, &st, n, (double)n * 16 * FF);

            /* x = LN(x + ffn Wf^T); the next layer's qkv for these rows */
            sn__nn_linear(nn, ffn, (size_t)FF, &L->f, xb, (size_t)H, n);
            post_qkv_rows(nn, p, next, L->ln2_g, L->ln2_b, x, qkv, r0, n);
        }
    }
    return 0;
}

int sn__bind_pack_stacked(sn__binder_t *b, sn__gemm_w_t *w,
                          const float **v, const int *rows, int n, int k,
                          const char *what, int l, char *err, size_t err_len)
{
    size_t total = 0, at = 0;
    float *buf;
    int rc;

    for (int i = 0; i < n; i++)
        total += (size_t)rows[i];
    if (n < 1 || total < 1 || k < 1)
        return sn__err(err, err_len, SN_EARG, "%s: empty weight", what);
    if (!(buf = calloc(total * (size_t)k, sizeof *buf)))
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        memcpy(buf + at * k, v[i], (size_t)rows[i] * k * sizeof *buf);
        at += (size_t)rows[i];
    }
    rc = sn__bind_pack(b, w, buf, (int)total, k, what, l, err, err_len);
    free(buf);
    if (rc)
        return rc;
    for (int i = 0; i < n; i++)
        sn__bind_release(b, v[i], (size_t)rows[i] * k);
    return 0;
}
