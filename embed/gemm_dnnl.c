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
 * Primitives. M (the rows of a call: the tokens of a batch) changes with
 * every batch, so a primitive per M would be created (JIT) on most calls.
 * One primitive per weight is created with M a run-time dimension
 * (DNNL_RUNTIME_DIM_VAL) and a thread count; it is shared by threads
 * (oneDNN primitives are thread-safe for execution), each call making its
 * own memory objects and stream.
 *
 * Threads. oneDNN here runs on OpenMP. Each call sets the calling thread's
 * OpenMP team size (omp_set_num_threads, per thread) to the threads of
 * the caller's pool (1 below the pool's size threshold), so a product uses
 * as many cores as ours would. libgomp's idle threads spin after a
 * parallel region (GOMP_SPINCOUNT, read from the environment when libgomp
 * loads: no call can change it later) while our pool runs the next step;
 * bench/README.md measures what that costs and OMP_WAIT_POLICY=passive
 * in sensed's environment avoids it.
 */
#include <errno.h>
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

#define SN_GEMM_PICK_M 128   /* rows of the timed products at load */
#define SN_GEMM_PICK_RUNS 3  /* timed runs per backend and shape (best) */
#define SN_GEMM_MAX_COLLECT 4096 /* packed weights one load may collect */

#ifdef SN_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>

struct sn__dnnl_w {
    dnnl_primitive_t mm[SN_DNNL_MAX_THREADS + 1]; /* by team size */
    size_t lda[SN_DNNL_MAX_THREADS + 1], ldc[SN_DNNL_MAX_THREADS + 1];
    dnnl_memory_desc_t wmd;                       /* weights, oneDNN's */
    dnnl_memory_t wm;
    int lda_q; /* bf16 / int8: the converted rows' stride, in elements */
    pthread_mutex_t mu; /* guards mm[] creation */
};

static dnnl_engine_t eng;
static int eng_rc = -1;
static pthread_once_t eng_once = PTHREAD_ONCE_INIT;

static void eng_init(void)
{
    /* oneDNN's verbose output and its JIT dumps stay off whatever the
     * environment says: library code writes nothing to stderr */
    eng_rc = dnnl_engine_create(&eng, dnnl_cpu, 0) == dnnl_success ? 0 : -1;
}

static int engine(void)
{
    pthread_once(&eng_once, eng_init);
    return eng_rc;
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

/* The matmul for w with M at run time, A's rows lda elements apart and C's
 * ldc (int8: the s32 scratch, n apart), on a team of nthr; weights in wmd
 * (NULL: format any). NULL when oneDNN has no implementation. */
static dnnl_primitive_desc_t make_pd(const sn__gemm_w_t *w,
                                     const dnnl_memory_desc_t *wmd,
                                     int nthr, size_t lda, size_t ldc)
{
    const int prec = w->prec ? w->prec : SN_GEMM_F32;
    dnnl_dims_t ad = {DNNL_RUNTIME_DIM_VAL, w->k}, wd = {w->k, w->n},
                cd = {DNNL_RUNTIME_DIM_VAL, w->n};
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
        omp_set_num_threads(nthr);
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
    for (int t = 0; t <= SN_DNNL_MAX_THREADS; t++)
        if (d->mm[t])
            dnnl_primitive_destroy(d->mm[t]);
    if (d->wm)
        dnnl_memory_destroy(d->wm);
    pthread_mutex_destroy(&d->mu);
    free(d);
    w->dnnl = NULL;
}

int sn__gemm_dnnl_attach(sn__gemm_w_t *w)
{
    const int prec = w->prec ? w->prec : SN_GEMM_F32;
    const size_t esz = prec == SN_GEMM_F32 ? 4 : prec == SN_GEMM_BF16 ? 2 : 1;
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
    d->lda_q = (int)(sn__gemm_qa_ld(w) / esz);
    /* the layout oneDNN wants for W (any team size: it depends on the
     * shape and the CPU) */
    pd = make_pd(w, NULL, 1,
                 prec == SN_GEMM_F32 ? (size_t)w->k : (size_t)d->lda_q,
                 (size_t)w->n);
    if (!pd)
        goto fail;
    d->wmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
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
        free(d);
    }
    return rc;
}

/* The primitive for a team of nthr (created on first use). */
static dnnl_primitive_t prim(const sn__gemm_w_t *w, int nthr, size_t lda,
                             size_t ldc)
{
    struct sn__dnnl_w *d = w->dnnl;
    dnnl_primitive_t p;

    pthread_mutex_lock(&d->mu);
    if (!(p = d->mm[nthr])) {
        dnnl_primitive_desc_t pd = make_pd(w, &d->wmd, nthr, lda, ldc);
        if (pd && dnnl_primitive_create(&p, pd) != dnnl_success)
            p = NULL;
        if (pd)
            dnnl_primitive_desc_destroy(pd);
        d->mm[nthr] = p;
        d->lda[nthr] = lda;
        d->ldc[nthr] = ldc;
    } else if (d->lda[nthr] != lda || d->ldc[nthr] != ldc) {
        p = NULL;
    }
    pthread_mutex_unlock(&d->mu);
    return p;
}

static __thread dnnl_stream_t t_str; /* one stream per calling thread */

int sn__gemm_dnnl_run(const sn__gemm_w_t *w, const float *a, size_t lda,
                      const void *qa, float *c, size_t ldc, int32_t *acc,
                      int m, int nthr)
{
    const struct sn__dnnl_w *d = w->dnnl;
    const int prec = w->prec ? w->prec : SN_GEMM_F32;
    dnnl_memory_desc_t amd, cmd;
    dnnl_memory_t am = NULL, wm, cm = NULL;
    dnnl_primitive_t p;
    int rc = SN_EARG;

    if (!d || m < 1)
        return m < 1 ? 0 : SN_EARG;
    nthr = nthr < 1 ? 1 : nthr > SN_DNNL_MAX_THREADS ? SN_DNNL_MAX_THREADS
                                                      : nthr;
    if (prec != SN_GEMM_F32)
        lda = (size_t)d->lda_q;
    if (prec == SN_GEMM_INT8)
        ldc = (size_t)w->n;
    /* the primitive is made for one (lda, ldc): a call with others
     * (none in our encoders) goes to our kernels */
    if (!(p = prim(w, nthr, lda, ldc)))
        return SN_EARG;
    dnnl_dims_t ad = {m, w->k}, cd = {m, w->n};
    dnnl_dims_t as = {(dnnl_dim_t)lda, 1}, cs = {(dnnl_dim_t)ldc, 1};
    wm = d->wm;
    if (!t_str &&
        dnnl_stream_create(&t_str, eng, dnnl_stream_default_flags))
        return -ENOMEM;
    if (dnnl_memory_desc_init_by_strides(&amd, 2, ad, a_type(prec), as) ||
        dnnl_memory_desc_init_by_strides(
            &cmd, 2, cd, prec == SN_GEMM_INT8 ? dnnl_s32 : dnnl_f32, cs) ||
        dnnl_memory_create(&am, &amd, eng,
                           prec == SN_GEMM_F32 ? (void *)a : (void *)qa) ||
        dnnl_memory_create(&cm, &cmd, eng,
                           prec == SN_GEMM_INT8 ? (void *)acc : (void *)c))
        goto out;
    {
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, am},
                                   {DNNL_ARG_WEIGHTS, wm},
                                   {DNNL_ARG_DST, cm}};
        omp_set_num_threads(nthr);
        if (dnnl_primitive_execute(p, t_str, 3, args) ||
            dnnl_stream_wait(t_str))
            goto out;
    }
    rc = 0;
out:
    if (am)
        dnnl_memory_destroy(am);
    if (cm)
        dnnl_memory_destroy(cm);
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
int sn__gemm_dnnl_run(const sn__gemm_w_t *w, const float *a, size_t lda,
                      const void *qa, float *c, size_t ldc, int32_t *acc,
                      int m, int nthr)
{
    (void)w, (void)a, (void)lda, (void)qa, (void)c, (void)ldc, (void)acc;
    (void)m, (void)nthr;
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
static double time_product(sn__pool_t *pool, const sn__gemm_w_t *w,
                           const float *a, float *c, void **qa,
                           size_t *qa_cap)
{
    double best = 1e30;

    for (int r = 0; r <= SN_GEMM_PICK_RUNS; r++) {
        sn__gemm_job_t j = {.level = sn__gemm_level(),
                            .m = SN_GEMM_PICK_M,
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

/* auto: per distinct (k, n), the faster backend at SN_GEMM_PICK_M rows;
 * the slower one's copies are freed. */
static int pick_by_time(int n_threads, char *why, size_t why_len,
                        size_t *used)
{
    sn__pool_t *pool = sn__pool_new(n_threads);
    float *a = NULL, *c = NULL;
    void *qa = NULL;
    size_t qa_cap = 0, max_k = 0, max_n = 0;
    int rc = -ENOMEM, n_dnnl = 0;

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
        if (!w->dnnl)
            continue;
        for (int p = 0; p < i && !seen; p++)
            seen = coll.w[p]->k == w->k && coll.w[p]->n == w->n;
        if (seen)
            continue;
        ours = *w;
        ours.dnnl = NULL;
        double t_ours = time_product(pool, &ours, a, c, &qa, &qa_cap);
        double t_dnnl = time_product(pool, w, a, c, &qa, &qa_cap);
        if (t_ours < 0 || t_dnnl < 0)
            goto out;
        const int keep = t_dnnl < t_ours;
        *used += (size_t)snprintf(why + *used, why_len - *used,
                                  "%s %dx%d ours %.2f onednn %.2f ms",
                                  n_dnnl++ ? "," : "", w->k, w->n,
                                  t_ours * 1e3, t_dnnl * 1e3);
        if (*used >= why_len)
            *used = why_len - 1;
        for (int p = i; p < coll.n && !keep; p++)
            if (coll.w[p]->k == w->k && coll.w[p]->n == w->n)
                sn__gemm_dnnl_detach(coll.w[p]);
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
#define SAY(...)                                                             \
    do {                                                                     \
        used += (size_t)snprintf(why + used, why_len - used, __VA_ARGS__);   \
        if (used >= why_len)                                                 \
            used = why_len - 1;                                              \
    } while (0)
    if (backend == SN_GEMM_OURS) {
        SAY("gemm ours (SENSE_GEMM)");
        return 0;
    }
    if (!sn__gemm_dnnl_usable(prec)) {
        SAY("gemm ours (%s%s)",
            backend == SN_GEMM_ONEDNN ? "SENSE_GEMM=onednn falls back: " : "",
            !sn__gemm_dnnl_built() ? "built without onednn"
            : sn__isa() != sn__isa_cpu()
                ? "SENSE_ISA caps the cpu"
                : "no units on this cpu for onednn in this precision");
        return 0;
    }
    for (int i = 0; i < coll.n; i++) {
        rc = sn__gemm_dnnl_attach(coll.w[i]);
        if (rc == -ENOMEM)
            goto fail;
    }
    if (backend == SN_GEMM_AUTO) {
        SAY("gemm auto (%d threads, %d rows:", n_threads, SN_GEMM_PICK_M);
        if ((rc = pick_by_time(n_threads, why, why_len, &used)))
            goto fail;
        SAY(")");
    }
    for (int i = 0; i < coll.n; i++)
        n_dnnl += coll.w[i]->dnnl != NULL;
    SAY("%s%s on %d of %d products, ours on the rest",
        backend == SN_GEMM_AUTO ? ": " : "gemm (SENSE_GEMM): ",
        sn__gemm_dnnl_version(), n_dnnl, coll.n);
#undef SAY
    return 0;
fail:
    for (int i = 0; i < coll.n; i++)
        sn__gemm_dnnl_detach(coll.w[i]);
    return rc;
}
