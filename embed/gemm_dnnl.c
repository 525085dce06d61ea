/*
 * gemm_dnnl.c -- the second backend behind embed/gemm.h: the dense products
 * C[m, n] += A[m, k] W on Debian's oneDNN (libdnnl 2.6, matmul primitives),
 * in f32, bf16 and int8. Compiled when CMake finds libdnnl-dev
 * (SN_HAVE_DNNL); without it every function below says "not available" and
 * our kernels run.
 *
 * Why: on Intel CPUs with AMX oneDNN runs these products 4.4-6.9x (bf16)
 * and 5.4-12x (int8) faster than our f32 kernels (issue 17), and we have no
 * AMX kernels of our own. On CPUs without AMX the two are close, so which
 * one runs is decided by measurement at model load (sn__gemm_backend_pick,
 * embed/arch.c), or forced with SENSE_GEMM=ours|onednn.
 *
 * Weights. sn__gemm_dnnl_attach copies the weights out of our packed
 * panels (so both backends use the same bf16 values and the same int8
 * codes and column scales) into the layout oneDNN's matmul asks for
 * (format_tag any), once, at load; w->dnnl owns that copy. Our panels stay:
 * the int8 column scales and sums live there, and a product oneDNN refuses
 * falls back to them.
 *
 * A per call. f32: A itself. bf16 and int8: A converted by our own per-row
 * code (sn__gemm_quant_rows: bf16 rounding; u8 codes with a per-row scale
 * s_r and zero point z_r), so a row's converted values never depend on the
 * batch. oneDNN 2.6's matmul has no per-row source scales, so int8 runs
 * u8 x s8 -> s32 into a scratch after the converted rows, and our own
 * epilogue (sn__gemm_int8_rows, the one our kernels use) adds
 * s_r s_c (sum - z_r csum_c) to C: integer sums are exact, so int8 gives
 * the same bits on both backends. f32 and bf16 accumulate into C with a
 * sum post-op.
 *
 * Rows in blocks. oneDNN's matmul computes a row differently with M (its
 * blocking, its gemm path when M is a run-time dimension, its reference
 * code for some strides), so a text's vector would change with the batch
 * around it. Every product therefore runs in blocks of SN_DNNL_ROWS rows
 * on a primitive made for exactly that M and dense rows; a padded last
 * block, or rows with other strides, go through a slot of qa and back.
 * Creating the primitive once per weight also keeps JIT work out of the
 * calls (M changes with every batch).
 *
 * Threads. oneDNN here is built on OpenMP. Each block runs on one thread
 * (a team of 1: no OpenMP threads are ever started), and the blocks are
 * spread over our own pool (embed/pool.c) like our kernels' panels, each
 * thread with its own primitive and scratchpad. A team of the pool's size
 * per call was tried first: libgomp's idle threads spin after each
 * parallel region (GOMP_SPINCOUNT, read from the environment when libgomp
 * loads, so no call can lower it) against our pool's helpers, and the
 * suite's precision test ran 3x slower on 2 busy cores. The cost: a
 * product of one block (up to 32 rows: a short text alone) uses one core.
 */
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>
#include <unistd.h>

#include <cblas.h>

#include "embed_int.h"
#include "gemm.h"
#include "pool.h"

/* auto's rule (pick_by_time): oneDNN takes a shape only when it beats ours
 * by SN_GEMM_PICK_MARGIN at both sizes of batch, one short text
 * (SN_GEMM_PICK_M_SMALL rows) and a full one (SN_GEMM_PICK_M). Both, since
 * the backend is fixed per weight for the model's life (a row's bits must
 * not depend on the batch it came in, so it cannot switch with m): on Zen 5
 * oneDNN behind the seam ties ours at 128 rows and runs 16 rows 4x slower
 * (one padded 32-row block on one core; bench/README.md round 5), and a
 * bare "faster at 128" let a tie hand it the model and cost short texts
 * 1.4-1.8x end to end. The margin keeps timing noise from deciding (a tie
 * would flip f32/bf16 results in the last bits between loads, and the
 * copy doubles the weights' memory); the gap it is for, AMX against
 * AVX-512, is 4-7x (issue 17). */
#define SN_GEMM_PICK_M 128      /* rows of a full batch's timed product */
#define SN_GEMM_PICK_M_SMALL 16 /* rows of one short text's */
#define SN_GEMM_PICK_MARGIN 1.25 /* ours / oneDNN time needed to switch */
/* A weight of fewer than k x n = 256 x 256 keeps ours untimed: a product of
 * a few microseconds is timed as the pool's wake-up and the machine's
 * other load (the test fixtures' 64 x 192 "won" on oneDNN by that noise,
 * at 1.25x, at both sizes), and what it costs cannot matter. */
#define SN_GEMM_PICK_MIN_KN 65536
#define SN_GEMM_PICK_RUNS 3  /* timed runs per backend and shape (best) */
#define SN_GEMM_MAX_COLLECT 4096 /* packed weights one load may collect */

#ifdef SN_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>

#define SN_DNNL_PRIMS 16 /* matmuls per weight: one per thread at a time */

struct sn__dnnl_w {
    struct {
        dnnl_primitive_t p;
        int busy; /* a thread is executing it */
    } mm[SN_DNNL_PRIMS]; /* made on first use */
    int n_mm;
    dnnl_memory_desc_t wmd; /* weights, in oneDNN's layout */
    dnnl_memory_t wm;
    int lda_q; /* bf16 / int8: the converted rows' stride, in elements */
    size_t scratch; /* bytes of scratchpad a block needs (ours, per slot) */
    pthread_mutex_t mu;    /* guards mm[] */
    pthread_cond_t freed; /* an mm[] is no longer busy */
};

static dnnl_engine_t eng;
static int eng_rc = -1;
static pthread_once_t eng_once = PTHREAD_ONCE_INIT;

static void eng_init(void)
{
    /* oneDNN's verbose output (to stdout) and its JIT dumps stay off
     * whatever the environment says (ONEDNN_VERBOSE, DNNL_JIT_DUMP): library
     * code writes nothing of its own, and stdout is a program's output */
    dnnl_set_verbose(0);
    dnnl_set_jit_dump(0);
    eng_rc = dnnl_engine_create(&eng, dnnl_cpu, 0) == dnnl_success ? 0 : -1;
}

static int engine(void)
{
    pthread_once(&eng_once, eng_init);
    return eng_rc;
}

/* w's precision (0 counts as f32) and the bytes of one of its elements,
 * as oneDNN sees them (A and W alike) */
static int prec_of(const sn__gemm_w_t *w)
{
    return w->prec ? w->prec : SN_GEMM_F32;
}

static size_t esz_of(const sn__gemm_w_t *w)
{
    const int prec = prec_of(w);
    return prec == SN_GEMM_F32 ? 4 : prec == SN_GEMM_BF16 ? 2 : 1;
}

static dnnl_data_type_t a_type(int prec)
{
    return prec == SN_GEMM_BF16 ? dnnl_bf16
           : prec == SN_GEMM_INT8 ? dnnl_u8
                                  : dnnl_f32;
}

static dnnl_data_type_t w_type(int prec)
{
    return prec == SN_GEMM_BF16 ? dnnl_bf16
           : prec == SN_GEMM_INT8 ? dnnl_s8
                                  : dnnl_f32;
}

/* The matmul for w on SN_DNNL_ROWS rows, A's rows lda elements apart and
 * C's ldc (int8: the s32 sums, n apart), on one thread; weights in
 * wmd (NULL: format any). NULL when oneDNN has no implementation. */
static dnnl_primitive_desc_t make_pd(const sn__gemm_w_t *w,
                                     const dnnl_memory_desc_t *wmd,
                                     size_t lda, size_t ldc)
{
    const int prec = prec_of(w);
    dnnl_dims_t ad = {SN_DNNL_ROWS, w->k}, wd = {w->k, w->n},
                cd = {SN_DNNL_ROWS, w->n};
    dnnl_dims_t as = {(dnnl_dim_t)lda, 1}, cs = {(dnnl_dim_t)ldc, 1};
    dnnl_memory_desc_t amd, wany, cmd;
    dnnl_matmul_desc_t md;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int ok;

    ok = dnnl_memory_desc_init_by_strides(&amd, 2, ad, a_type(prec), as) ==
             dnnl_success &&
         dnnl_memory_desc_init_by_strides(
             &cmd, 2, cd, prec == SN_GEMM_INT8 ? dnnl_s32 : dnnl_f32, cs) ==
             dnnl_success &&
         (wmd || dnnl_memory_desc_init_by_tag(&wany, 2, wd, w_type(prec),
                                              dnnl_format_tag_any) ==
                     dnnl_success) &&
         dnnl_matmul_desc_init(&md, &amd, wmd ? wmd : &wany, NULL, &cmd) ==
             dnnl_success &&
         dnnl_primitive_attr_create(&attr) == dnnl_success;
    if (ok && prec != SN_GEMM_INT8) /* C += A W */
        ok = dnnl_post_ops_create(&po) == dnnl_success &&
             dnnl_post_ops_append_sum(po, 1.0f) == dnnl_success &&
             dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
    if (ok) {
        omp_set_num_threads(1);
        if (dnnl_primitive_desc_create(&pd, &md, attr, eng, NULL) !=
            dnnl_success)
            pd = NULL;
    }
    if (po)
        dnnl_post_ops_destroy(po);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return pd;
}

/* W[kk][cn] as our panels hold it (bf16 bits, int8 code or float). */
static void unpack(const sn__gemm_w_t *w, void *dst)
{
    const size_t k = (size_t)w->k, n = (size_t)w->n, kp = (size_t)w->kp;

    for (size_t kk = 0; kk < k; kk++)
        for (size_t cn = 0; cn < n; cn++) {
            size_t j = cn / SN_GEMM_NR, col = cn % SN_GEMM_NR;
            if (w->prec == SN_GEMM_BF16)
                ((uint16_t *)dst)[kk * n + cn] =
                    ((const uint16_t *)w->q)[j * kp * SN_GEMM_NR +
                                             (kk / 2) * 2 * SN_GEMM_NR +
                                             col * 2 + kk % 2];
            else if (w->prec == SN_GEMM_INT8)
                ((int8_t *)dst)[kk * n + cn] =
                    ((const int8_t *)w->q)[j * kp * SN_GEMM_NR +
                                           (kk / 4) * 4 * SN_GEMM_NR +
                                           col * 4 + kk % 4];
            else
                ((float *)dst)[kk * n + cn] =
                    w->p[j * k * SN_GEMM_NR + kk * SN_GEMM_NR + col];
        }
}

int sn__gemm_dnnl_built(void) { return 1; }

void sn__gemm_dnnl_detach(sn__gemm_w_t *w)
{
    struct sn__dnnl_w *d = w ? w->dnnl : NULL;

    if (!d)
        return;
    for (int i = 0; i < d->n_mm; i++)
        dnnl_primitive_destroy(d->mm[i].p);
    if (d->wm)
        dnnl_memory_destroy(d->wm);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->freed);
    free(d);
    w->dnnl = NULL;
}

int sn__gemm_dnnl_attach(sn__gemm_w_t *w)
{
    const int prec = prec_of(w);
    const size_t esz = esz_of(w);
    struct sn__dnnl_w *d = NULL;
    dnnl_primitive_desc_t pd = NULL, rpd = NULL;
    dnnl_primitive_t re = NULL;
    dnnl_memory_t plain = NULL;
    dnnl_stream_t str = NULL;
    dnnl_memory_desc_t pmd;
    dnnl_dims_t wd = {w->k, w->n};
    void *buf = NULL;
    int rc = SN_EARG;

    sn__gemm_dnnl_detach(w);
    if (engine())
        return SN_EARG;
    if (!(d = calloc(1, sizeof *d)) ||
        !(buf = malloc((size_t)w->k * w->n * esz))) {
        rc = -ENOMEM;
        goto fail;
    }
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->freed, NULL);
    d->lda_q = (int)(sn__gemm_qa_ld(w) / esz);
    /* the layout oneDNN wants for W (any team size: it depends on the
     * shape and the CPU) */
    pd = make_pd(w, NULL,
                 prec == SN_GEMM_F32 ? (size_t)w->k : (size_t)d->lda_q,
                 (size_t)w->n);
    if (!pd)
        goto fail;
    {
        /* oneDNN's reference code (ref:any) is far slower than ours */
        const char *impl = NULL;
        if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0,
                                      &impl) ||
            !impl || !strncmp(impl, "ref", 3))
            goto fail;
    }
    d->wmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    /* oneDNN's own scratchpad is shared by the threads of a process:
     * each block gets its own, in its slot of qa */
    d->scratch = (dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(
                      pd, dnnl_query_scratchpad_md, 0)) +
                  63) &
                 ~(size_t)63;
    unpack(w, buf);
    if (dnnl_memory_desc_init_by_tag(&pmd, 2, wd, w_type(prec), dnnl_ab) ||
        dnnl_memory_create(&d->wm, &d->wmd, eng, DNNL_MEMORY_ALLOCATE) ||
        dnnl_memory_create(&plain, &pmd, eng, buf) ||
        dnnl_reorder_primitive_desc_create(&rpd, &pmd, eng, &d->wmd, eng,
                                           NULL) ||
        dnnl_primitive_create(&re, rpd) ||
        dnnl_stream_create(&str, eng, dnnl_stream_default_flags))
        goto fail;
    {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, plain},
                                   {DNNL_ARG_TO, d->wm}};
        omp_set_num_threads(1);
        if (dnnl_primitive_execute(re, str, 2, args) ||
            dnnl_stream_wait(str))
            goto fail;
    }
    w->dnnl = d;
    d = NULL;
    rc = 0;
fail:
    if (str)
        dnnl_stream_destroy(str);
    if (re)
        dnnl_primitive_destroy(re);
    if (rpd)
        dnnl_primitive_desc_destroy(rpd);
    if (plain)
        dnnl_memory_destroy(plain);
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    free(buf);
    if (d) {
        if (d->wm)
            dnnl_memory_destroy(d->wm);
        pthread_mutex_destroy(&d->mu);
        pthread_cond_destroy(&d->freed);
        free(d);
    }
    return rc;
}

/* A matmul of w no other thread is executing, made when none is free
 * (up to SN_DNNL_PRIMS; beyond, the caller waits for one); -1 when oneDNN
 * has none. Released with put(). Two threads executing one oneDNN 2.6
 * matmul object at once corrupted each other's rows (measured: the batch
 * check of test_precision, and concurrent clients of the daemon, failed,
 * each thread with its own scratchpad); one object per thread does not. */
static int get(const sn__gemm_w_t *w)
{
    struct sn__dnnl_w *d = w->dnnl;
    const size_t esz = esz_of(w);
    int got = -1;

    pthread_mutex_lock(&d->mu);
    while (got < 0) {
        for (int i = 0; i < d->n_mm && got < 0; i++)
            if (!d->mm[i].busy)
                got = i;
        if (got < 0 && d->n_mm < SN_DNNL_PRIMS) {
            dnnl_primitive_t p = NULL;
            dnnl_primitive_desc_t pd = make_pd(
                w, &d->wmd, sn__gemm_qa_tail_ld(w) / esz, (size_t)w->n);
            /* its scratchpad must fit the room each slot has for it */
            if (pd &&
                (dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(
                     pd, dnnl_query_scratchpad_md, 0)) > d->scratch ||
                 dnnl_primitive_create(&p, pd) != dnnl_success))
                p = NULL;
            if (pd)
                dnnl_primitive_desc_destroy(pd);
            if (!p)
                break;
            d->mm[d->n_mm].p = p;
            got = d->n_mm++;
        }
        if (got < 0)
            pthread_cond_wait(&d->freed, &d->mu);
    }
    if (got >= 0)
        d->mm[got].busy = 1;
    pthread_mutex_unlock(&d->mu);
    return got;
}

static void put(const sn__gemm_w_t *w, int i)
{
    struct sn__dnnl_w *d = w->dnnl;

    pthread_mutex_lock(&d->mu);
    d->mm[i].busy = 0;
    pthread_cond_signal(&d->freed);
    pthread_mutex_unlock(&d->mu);
}

static __thread dnnl_stream_t t_str; /* one stream per calling thread */

/* One block of SN_DNNL_ROWS rows: C (ldc apart) += A (lda apart) W, with
 * the scratchpad scr. */
static int block(const sn__gemm_w_t *w, dnnl_primitive_t p, const void *a,
                 size_t lda, void *c, size_t ldc, void *scr)
{
    const int prec = prec_of(w);
    dnnl_dims_t ad = {SN_DNNL_ROWS, w->k}, cd = {SN_DNNL_ROWS, w->n};
    dnnl_dims_t as = {(dnnl_dim_t)lda, 1}, cs = {(dnnl_dim_t)ldc, 1};
    dnnl_dims_t sd = {(dnnl_dim_t)w->dnnl->scratch};
    dnnl_memory_desc_t amd, cmd, smd;
    dnnl_memory_t am = NULL, cm = NULL, sm = NULL;
    int rc = SN_EARG;

    if (dnnl_memory_desc_init_by_tag(&smd, 1, sd, dnnl_u8, dnnl_a) ||
        dnnl_memory_create(&sm, &smd, eng, scr) ||
        dnnl_memory_desc_init_by_strides(&amd, 2, ad, a_type(prec), as) ||
        dnnl_memory_desc_init_by_strides(
            &cmd, 2, cd, prec == SN_GEMM_INT8 ? dnnl_s32 : dnnl_f32, cs) ||
        dnnl_memory_create(&am, &amd, eng, (void *)a) ||
        dnnl_memory_create(&cm, &cmd, eng, c))
        goto out;
    {
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, am},
                                   {DNNL_ARG_WEIGHTS, w->dnnl->wm},
                                   {DNNL_ARG_DST, cm},
                                   {DNNL_ARG_SCRATCHPAD, sm}};
        if (dnnl_primitive_execute(p, t_str, 4, args) ||
            dnnl_stream_wait(t_str))
            goto out;
    }
    rc = 0;
out:
    if (am)
        dnnl_memory_destroy(am);
    if (cm)
        dnnl_memory_destroy(cm);
    if (sm)
        dnnl_memory_destroy(sm);
    return rc;
}

size_t sn__gemm_dnnl_scratch_bytes(const sn__gemm_w_t *w)
{
    return w->dnnl ? w->dnnl->scratch : 0;
}

int sn__gemm_dnnl_ready(const sn__gemm_w_t *w)
{
    int i;

    if (!w->dnnl || (i = get(w)) < 0)
        return SN_EARG;
    put(w, i);
    if (!t_str &&
        dnnl_stream_create(&t_str, eng, dnnl_stream_default_flags))
        return SN_EARG;
    return 0;
}

/* The rows run in blocks of SN_DNNL_ROWS on one primitive, made for A and
 * C rows packed densely (k and n apart); a block with other strides, and
 * the padded last block, is copied into the part's slot in qa and back. A
 * primitive made for one M and one layout computes each row the same way
 * wherever it sits, while one made per M (or with M a run-time dimension:
 * oneDNN's gemm path) changes its blocking, and a strided C can make
 * oneDNN fall back to its reference code: both change a row's bits with
 * the batch (measured on the fixtures: a text alone and in a batch
 * differed). Each block runs on one thread (an OpenMP team of 1: no
 * OpenMP threads are started), the blocks spread over our pool's threads:
 * so oneDNN's idle threads never spin against the pool (measured: with a
 * team of 2, libgomp's spinning made test_precision 3x slower on 2 busy
 * cores). */
int sn__gemm_dnnl_part(const sn__gemm_w_t *w, const float *a, size_t lda,
                       void *qa, float *c, size_t ldc, int m, int part,
                       int n_parts)
{
    const struct sn__dnnl_w *d = w->dnnl;
    const int prec = prec_of(w);
    const size_t esz = esz_of(w);
    const size_t tail_ld = sn__gemm_qa_tail_ld(w) / esz; /* elements */
    const size_t n = (size_t)w->n;
    const uint8_t *src = prec == SN_GEMM_F32 ? (const void *)a : qa;
    uint8_t *tail_a, *scr;
    float *tail_c;
    int32_t *acc = NULL;
    size_t ldq = ldc;
    dnnl_primitive_t p;
    int i_mm, rc = 0;

    if (!d || part < 0 || part >= n_parts || part >= SN_DNNL_SLOTS)
        return SN_EARG;
    if (!t_str &&
        dnnl_stream_create(&t_str, eng, dnnl_stream_default_flags))
        return SN_EARG;
    tail_a = sn__gemm_qa_tail(w, qa, m, part);
    tail_c = (float *)(void *)(tail_a + SN_DNNL_ROWS * tail_ld * esz);
    scr = (uint8_t *)tail_c + SN_DNNL_ROWS * n * sizeof *tail_c;
    if (prec != SN_GEMM_F32)
        lda = (size_t)d->lda_q;
    if (prec == SN_GEMM_INT8) {
        acc = sn__gemm_qa_acc(w, qa, m); /* n apart, padded rows */
        ldq = n;
    }
    if ((i_mm = get(w)) < 0)
        return SN_EARG;
    p = d->mm[i_mm].p;
    omp_set_num_threads(1);
    for (int r0 = part * SN_DNNL_ROWS; r0 < m; r0 += n_parts * SN_DNNL_ROWS) {
        const int rows = m - r0 < SN_DNNL_ROWS ? m - r0 : SN_DNNL_ROWS;
        const uint8_t *ab = src + (size_t)r0 * lda * esz;
        void *cb = acc ? (void *)(acc + (size_t)r0 * n)
                       : (void *)(c + (size_t)r0 * ldc);
        if (rows == SN_DNNL_ROWS && lda == tail_ld && ldq == n) {
            rc = block(w, p, ab, tail_ld, cb, n, scr);
        } else {
            if (rows < SN_DNNL_ROWS)
                memset(tail_a + (size_t)rows * tail_ld * esz, 0,
                       (size_t)(SN_DNNL_ROWS - rows) * tail_ld * esz);
            for (int r = 0; r < rows; r++) {
                memcpy(tail_a + (size_t)r * tail_ld * esz,
                       ab + (size_t)r * lda * esz, (size_t)w->k * esz);
                if (!acc)
                    memcpy(tail_c + (size_t)r * n,
                           (float *)cb + (size_t)r * ldc, n * sizeof *c);
            }
            rc = block(w, p, tail_a, tail_ld, acc ? cb : (void *)tail_c, n,
                       scr);
            for (int r = 0; !rc && !acc && r < rows; r++)
                memcpy((float *)cb + (size_t)r * ldc, tail_c + (size_t)r * n,
                       n * sizeof *c);
        }
        if (rc)
            break;
        if (acc) /* the same epilogue, the same bits as our kernels */
            sn__gemm_int8_rows(w, qa, m, acc, n, c, ldc, r0, r0 + rows);
    }
    put(w, i_mm);
    return rc;
}

const char *sn__gemm_dnnl_version(void)
{
    static char buf[32];
    const dnnl_version_t *v = dnnl_version();
    if (!buf[0])
        snprintf(buf, sizeof buf, "onednn %d.%d.%d", v->major, v->minor,
                 v->patch);
    return buf;
}

#else /* built without libdnnl */

int sn__gemm_dnnl_built(void) { return 0; }
int sn__gemm_dnnl_attach(sn__gemm_w_t *w)
{
    (void)w;
    return SN_EARG;
}
void sn__gemm_dnnl_detach(sn__gemm_w_t *w) { (void)w; }
size_t sn__gemm_dnnl_scratch_bytes(const sn__gemm_w_t *w)
{
    (void)w;
    return 0;
}
int sn__gemm_dnnl_ready(const sn__gemm_w_t *w)
{
    (void)w;
    return SN_EARG;
}
int sn__gemm_dnnl_part(const sn__gemm_w_t *w, const float *a, size_t lda,
                       void *qa, float *c, size_t ldc, int m, int part,
                       int n_parts)
{
    (void)w, (void)a, (void)lda, (void)qa, (void)c, (void)ldc;
    (void)m, (void)part, (void)n_parts;
    return SN_EARG;
}
const char *sn__gemm_dnnl_version(void) { return "onednn (not built)"; }

#endif

/* ---- the choice ------------------------------------------------------------ */

int sn__gemm_backend(void)
{
    const char *e = getenv("SENSE_GEMM");

    if (!e || !*e || !strcmp(e, "auto"))
        return SN_GEMM_AUTO;
    if (!strcmp(e, "ours"))
        return SN_GEMM_OURS;
    if (!strcmp(e, "onednn"))
        return SN_GEMM_ONEDNN;
    return -1;
}

const char *sn__gemm_backend_name(int b)
{
    return b == SN_GEMM_OURS ? "ours" : b == SN_GEMM_ONEDNN ? "onednn"
                                                           : "auto";
}

int sn__gemm_dnnl_usable(int prec)
{
    const int isa = sn__isa();

    /* SENSE_ISA caps our kernels; oneDNN would run its own best, so a
     * capped ISA means ours */
    return sn__gemm_dnnl_built() && isa == sn__isa_cpu() &&
           isa >= SN_ISA_AVX2 && sn__isa_has(isa, prec);
}

/* The weights packed on this thread while a model loads. Thread-local: a
 * load runs on one thread, and loads on other threads collect their own. */
static __thread struct {
    int on, n;
    sn__gemm_w_t **w;
} coll;

void sn__gemm_collect_begin(void)
{
    free(coll.w);
    coll.w = NULL;
    coll.n = 0;
    coll.on = 1;
}

void sn__gemm_collect_add(sn__gemm_w_t *w)
{
    if (!coll.on || coll.n >= SN_GEMM_MAX_COLLECT)
        return;
    if (!coll.w && !(coll.w = calloc(SN_GEMM_MAX_COLLECT, sizeof *coll.w)))
        return; /* nothing collected: the weights stay on ours */
    coll.w[coll.n++] = w;
}

void sn__gemm_collect_end(void)
{
    free(coll.w);
    coll.w = NULL;
    coll.n = 0;
    coll.on = 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Best of SN_GEMM_PICK_RUNS of C += A W (one untimed run first: oneDNN's
 * JIT, first touches), in seconds; < 0 when the product failed. */
static double time_product(sn__pool_t *pool, const sn__gemm_w_t *w, int m,
                           const float *a, float *c, void **qa,
                           size_t *qa_cap)
{
    double best = 1e30;

    for (int r = 0; r <= SN_GEMM_PICK_RUNS; r++) {
        sn__gemm_job_t j = {.level = sn__gemm_level(),
                            .m = m,
                            .w = w,
                            .a = a,
                            .c = c,
                            .isa = sn__isa()};
        double t0 = now_s();
        if (sn__gemm_run(pool, &j, 0, qa, qa_cap))
            return -1;
        double t = now_s() - t0;
        if (r && t < best)
            best = t;
    }
    return best;
}

/* Append to why (the precision line), clamped to why_len. */
static void say(char *why, size_t why_len, size_t *used, const char *fmt,
                ...) __attribute__((format(printf, 4, 5)));
static void say(char *why, size_t why_len, size_t *used, const char *fmt,
                ...)
{
    va_list ap;
    va_start(ap, fmt);
    *used += (size_t)vsnprintf(why + *used, why_len - *used, fmt, ap);
    va_end(ap);
    if (*used >= why_len)
        *used = why_len - 1;
}

static int same_shape(const sn__gemm_w_t *a, const sn__gemm_w_t *b)
{
    return a->k == b->k && a->n == b->n;
}

/* auto: per distinct (k, n), oneDNN where it wins by the margin at both
 * sizes (the rule above), else ours. Only the shape's first weight gets a
 * oneDNN copy for the timing, its siblings only when oneDNN wins: copying
 * every weight first and freeing the losers left the process's resident
 * memory doubled on a machine where ours wins everywhere (MiniLM-L6 f32:
 * 52 -> 99 MB; glibc keeps the freed pages). -ENOMEM, or 0. */
static int pick_by_time(int n_threads, char *why, size_t why_len,
                        size_t *used)
{
    sn__pool_t *pool = sn__pool_new(n_threads);
    float *a = NULL, *c = NULL;
    void *qa = NULL;
    size_t qa_cap = 0, max_k = 0, max_n = 0;
    int rc = -ENOMEM, n_shapes = 0;

    for (int i = 0; i < coll.n; i++) {
        max_k = (size_t)coll.w[i]->k > max_k ? (size_t)coll.w[i]->k : max_k;
        max_n = (size_t)coll.w[i]->n > max_n ? (size_t)coll.w[i]->n : max_n;
    }
    if (!pool || !(a = malloc(SN_GEMM_PICK_M * max_k * sizeof *a)) ||
        !(c = calloc(SN_GEMM_PICK_M * max_n, sizeof *c)))
        goto out;
    for (size_t i = 0; i < SN_GEMM_PICK_M * max_k; i++) /* activations */
        a[i] = (float)((i * 2654435761u) % 2001u) / 1000.0f - 1.0f;
    for (int i = 0; i < coll.n; i++) {
        sn__gemm_w_t *w = coll.w[i], ours;
        int seen = 0;
        for (int p = 0; p < i && !seen; p++)
            seen = same_shape(coll.w[p], w);
        if (seen)
            continue;
        const char *sep = n_shapes++ ? "," : "";
        if ((size_t)w->k * (size_t)w->n < SN_GEMM_PICK_MIN_KN) {
            say(why, why_len, used, "%s %dx%d ours (too small to time)", sep,
                w->k, w->n);
            continue;
        }
        if (sn__gemm_dnnl_attach(w) == -ENOMEM)
            goto out;
        if (!w->dnnl) {
            say(why, why_len, used, "%s %dx%d ours (onednn refused it)", sep,
                w->k, w->n);
            continue;
        }
        ours = *w;
        ours.dnnl = NULL;
        double t_ours = time_product(pool, &ours, SN_GEMM_PICK_M, a, c, &qa,
                                     &qa_cap);
        double t_dnnl = time_product(pool, w, SN_GEMM_PICK_M, a, c, &qa,
                                     &qa_cap);
        double s_ours = time_product(pool, &ours, SN_GEMM_PICK_M_SMALL, a, c,
                                     &qa, &qa_cap);
        double s_dnnl = time_product(pool, w, SN_GEMM_PICK_M_SMALL, a, c,
                                     &qa, &qa_cap);
        if (t_ours < 0 || t_dnnl < 0 || s_ours < 0 || s_dnnl < 0)
            goto out;
        const int keep = t_dnnl * SN_GEMM_PICK_MARGIN < t_ours &&
                         s_dnnl * SN_GEMM_PICK_MARGIN < s_ours;
        say(why, why_len, used, "%s %dx%d ours %.2f/%.3f onednn %.2f/%.3f ms",
            sep, w->k, w->n, t_ours * 1e3, s_ours * 1e3, t_dnnl * 1e3,
            s_dnnl * 1e3);
        if (!keep)
            sn__gemm_dnnl_detach(w);
        for (int p = i + 1; p < coll.n && keep; p++)
            if (same_shape(coll.w[p], w) &&
                sn__gemm_dnnl_attach(coll.w[p]) == -ENOMEM)
                goto out;
    }
    rc = 0;
out:
    free(qa);
    free(a);
    free(c);
    sn__pool_free(pool);
    return rc;
}

int sn__gemm_backend_pick(int backend, int prec, int n_threads, char *why,
                          size_t why_len)
{
    size_t used = 0;
    int n_dnnl = 0, rc = 0;

    if (n_threads < 1) { /* as the encoders' contexts size their pools */
        long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = openblas_get_num_threads();
        n_threads = n_threads > n_cpu ? (int)n_cpu : n_threads;
        n_threads = n_threads > SN_DNNL_MAX_THREADS ? SN_DNNL_MAX_THREADS
                    : n_threads < 1                 ? 1
                                                    : n_threads;
    }
    if (backend == SN_GEMM_OURS) {
        say(why, why_len, &used, "gemm ours (SENSE_GEMM)");
        return 0;
    }
    if (!sn__gemm_dnnl_usable(prec)) {
        say(why, why_len, &used, "gemm ours (%s%s)",
            backend == SN_GEMM_ONEDNN ? "SENSE_GEMM=onednn falls back: " : "",
            !sn__gemm_dnnl_built() ? "built without onednn"
            : sn__isa() != sn__isa_cpu()
                ? "SENSE_ISA caps the cpu"
                : "no units on this cpu for onednn in this precision");
        return 0;
    }
    for (int i = 0; i < coll.n && backend != SN_GEMM_AUTO; i++) {
        rc = sn__gemm_dnnl_attach(coll.w[i]);
        if (rc == -ENOMEM)
            goto fail;
    }
    if (backend == SN_GEMM_AUTO) {
        say(why, why_len, &used,
            "gemm auto (%d threads, %d/%d rows, oneDNN if %.2fx faster at "
            "both:",
            n_threads, SN_GEMM_PICK_M, SN_GEMM_PICK_M_SMALL,
            SN_GEMM_PICK_MARGIN);
        if ((rc = pick_by_time(n_threads, why, why_len, &used)))
            goto fail;
        say(why, why_len, &used, ")");
    }
    for (int i = 0; i < coll.n; i++)
        n_dnnl += coll.w[i]->dnnl != NULL;
    say(why, why_len, &used, "%s%s on %d of %d products, ours on the rest",
        backend == SN_GEMM_AUTO ? ": " : "gemm (SENSE_GEMM): ",
        sn__gemm_dnnl_version(), n_dnnl, coll.n);
    return 0;
fail:
    for (int i = 0; i < coll.n; i++)
        sn__gemm_dnnl_detach(coll.w[i]);
    return rc;
}
