/*
 * bench_gemm.c -- the dense products of the MiniLM-L6 shape (H 384, FF
 * 1536: QKV 384 -> 1152, O 384 -> 384, FF1 384 -> 1536, FF2 1536 -> 384)
 * in f32, bf16 and int8: embed/gemm.c and embed/gemm_lowp.c beside
 * Debian's oneDNN (libdnnl 2.6.3, when built with it) on the same rows, in
 * the same run. It is the measurement that chose our own kernels over
 * oneDNN (embed/gemm_lowp.c says why; bench/README.md has the figures).
 *
 * Rows M = batch x sequence for the six cells of bench/README.md: 16, 128,
 * 512, 1024, 4096 (1 x 16, 1 x 128 = 8 x 16, 32 x 16, 8 x 128, 32 x 128).
 * For each (precision, M): GFLOP/s summed over the four products (the
 * best of `runs` repeats of all four), weights packed (ours) or reordered
 * (oneDNN: format_tag any, reorder once, primitive made per M once) before
 * timing; ours includes converting A per call (bf16 rounding / per-row int8
 * quantization), oneDNN's int8 is given u8 A (its conversion not timed)
 * with per-column output scales.
 *
 * `seam` measures both backends as the encoders run them: sn__gemm_run on
 * the same pool, with and without the weights' oneDNN copies
 * (embed/gemm_dnnl.c: blocks of 32 rows, one thread each, A converted by
 * our code, int8 through our epilogue) -- the figures `auto` compares at
 * load.
 *
 * Usage: bench_gemm [runs] [threads] [ours|onednn|both|seam]   (threads:
 * ours and OMP_NUM_THREADS for oneDNN; default 2). Run through
 * /work/coord/quiet on shared machines.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "embed_int.h"
#include "gemm.h"
#include "pool.h"

#ifdef SN_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

static const struct {
    const char *name;
    int n, k;
} shp[] = {{"qkv", 1152, 384}, {"o", 384, 384}, {"ff1", 1536, 384},
           {"ff2", 384, 1536}};
#define N_SHP 4
static const int rows[] = {16, 128, 512, 1024, 4096};
#define N_ROWS 5

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(float s)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0) * s;
}

static float *wsrc[N_SHP], *asrc;
static double flops(int M)
{
    double f = 0;
    for (int s = 0; s < N_SHP; s++)
        f += 2.0 * M * shp[s].n * shp[s].k;
    return f;
}

static double ours(int prec, int M, int runs, sn__pool_t *pool)
{
    sn__gemm_w_t w[N_SHP];
    float *c = aligned_alloc(64, (size_t)M * 1536 * sizeof *c);
    void *qa = aligned_alloc(64, (size_t)M * 1600 * 2 + 4 * M + 64);
    double best = 1e30;
    int isa = sn__isa();

    for (int s = 0; s < N_SHP; s++)
        if (sn__gemm_pack_prec(&w[s], wsrc[s], shp[s].n, shp[s].k, 1, prec))
            return 0;
    for (int r = 0; r < runs; r++) {
        double t0 = now();
        for (int s = 0; s < N_SHP; s++) {
            sn__gemm_job_t j = {.level = sn__gemm_level(), .m = M,
                                .w = &w[s], .a = asrc, .c = c, .isa = isa,
                                .qa = qa};
            if (prec != SN_GEMM_F32)
                sn__pool_run(pool, sn__gemm_quant_part, &j);
            sn__pool_run(pool, sn__gemm_part, &j);
        }
        double t = now() - t0;
        best = t < best ? t : best;
    }
    for (int s = 0; s < N_SHP; s++)
        sn__gemm_free(&w[s]);
    free(c);
    free(qa);
    return flops(M) / best * 1e-9;
}

/* Both backends through the seam the encoders call (sn__gemm_run). */
static double seam(int prec, int M, int runs, sn__pool_t *pool, int dnnl)
{
    sn__gemm_w_t w[N_SHP];
    float *c = aligned_alloc(64, (size_t)M * 1536 * sizeof *c);
    void *qa = NULL;
    size_t qa_cap = 0;
    double best = 1e30;

    for (int s = 0; s < N_SHP; s++)
        if (sn__gemm_pack_prec(&w[s], wsrc[s], shp[s].n, shp[s].k, 1, prec) ||
            (dnnl && sn__gemm_dnnl_attach(&w[s])))
            return 0;
    for (int r = 0; r <= runs; r++) { /* run 0: warm-up */
        double t0 = now();
        for (int s = 0; s < N_SHP; s++) {
            sn__gemm_job_t j = {.level = sn__gemm_level(), .m = M,
                                .w = &w[s], .a = asrc, .c = c,
                                .isa = sn__isa()};
            if (sn__gemm_run(pool, &j, 0, &qa, &qa_cap))
                return 0;
        }
        double t = now() - t0;
        best = r && t < best ? t : best;
    }
    for (int s = 0; s < N_SHP; s++)
        sn__gemm_free(&w[s]);
    free(c);
    free(qa);
    return flops(M) / best * 1e-9;
}

#ifdef SN_HAVE_DNNL
#define DN(x)                                                                \
    do {                                                                     \
        dnnl_status_t st_ = (x);                                             \
        if (st_ != dnnl_success) {                                           \
            fprintf(stderr, "oneDNN: %s: status %d\n", #x, (int)st_);       \
            return 0;                                                        \
        }                                                                    \
    } while (0)

/* oneDNN matmul C[M, n] = A[M, k] W[k, n] in precision prec. */
static double dnnl(int prec, int M, int runs, dnnl_engine_t eng,
                   dnnl_stream_t str)
{
    dnnl_data_type_t at = prec == SN_GEMM_F32    ? dnnl_f32
                          : prec == SN_GEMM_BF16 ? dnnl_bf16
                                                 : dnnl_u8;
    dnnl_data_type_t wt = prec == SN_GEMM_F32    ? dnnl_f32
                          : prec == SN_GEMM_BF16 ? dnnl_bf16
                                                 : dnnl_s8;
    dnnl_primitive_t mm[N_SHP];
    dnnl_memory_t am[N_SHP], wm[N_SHP], cm[N_SHP];
    double best = 1e30;

    for (int s = 0; s < N_SHP; s++) {
        const int n = shp[s].n, k = shp[s].k;
        dnnl_dims_t ad = {M, k}, wd = {k, n}, cd = {M, n};
        dnnl_memory_desc_t amd, wmd, wany, cmd;
        dnnl_matmul_desc_t md;
        dnnl_primitive_attr_t attr;
        dnnl_primitive_desc_t pd;
        dnnl_memory_t wplain;
        DN(dnnl_memory_desc_init_by_tag(&amd, 2, ad, at, dnnl_ab));
        DN(dnnl_memory_desc_init_by_tag(&wmd, 2, wd, dnnl_f32, dnnl_ab));
        DN(dnnl_memory_desc_init_by_tag(&wany, 2, wd, wt, dnnl_format_tag_any));
        DN(dnnl_memory_desc_init_by_tag(&cmd, 2, cd, dnnl_f32, dnnl_ab));
        DN(dnnl_matmul_desc_init(&md, &amd, &wany, NULL, &cmd));
        DN(dnnl_primitive_attr_create(&attr));
        if (prec == SN_GEMM_INT8) {
            float *sc = malloc((size_t)n * sizeof *sc);
            for (int i = 0; i < n; i++)
                sc[i] = 1e-3f;
            DN(dnnl_primitive_attr_set_output_scales(attr, n, 1 << 1, sc));
            free(sc);
        }
        DN(dnnl_primitive_desc_create(&pd, &md, attr, eng, NULL));
        DN(dnnl_primitive_create(&mm[s], pd));
        const dnnl_memory_desc_t *wq =
            dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        DN(dnnl_memory_create(&wm[s], wq, eng, DNNL_MEMORY_ALLOCATE));
        DN(dnnl_memory_create(&am[s], &amd, eng, DNNL_MEMORY_ALLOCATE));
        DN(dnnl_memory_create(&cm[s], &cmd, eng, DNNL_MEMORY_ALLOCATE));
        /* weights: f32 [k, n] -> the primitive's format, once */
        float *wt32 = malloc((size_t)k * n * sizeof *wt32);
        for (int kk = 0; kk < k; kk++)
            for (int j = 0; j < n; j++)
                wt32[(size_t)kk * n + j] =
                    prec == SN_GEMM_INT8
                        ? (float)(int)(wsrc[s][(size_t)j * k + kk] * 1000)
                        : wsrc[s][(size_t)j * k + kk];
        DN(dnnl_memory_create(&wplain, &wmd, eng, wt32));
        dnnl_primitive_desc_t rpd;
        dnnl_primitive_t re;
        DN(dnnl_reorder_primitive_desc_create(&rpd, &wmd, eng, wq, eng,
                                              NULL));
        DN(dnnl_primitive_create(&re, rpd));
        dnnl_exec_arg_t rargs[2] = {{DNNL_ARG_FROM, wplain},
                                    {DNNL_ARG_TO, wm[s]}};
        DN(dnnl_primitive_execute(re, str, 2, rargs));
        DN(dnnl_stream_wait(str));
        dnnl_primitive_destroy(re);
        dnnl_primitive_desc_destroy(rpd);
        dnnl_memory_destroy(wplain);
        free(wt32);
        void *ap;
        DN(dnnl_memory_get_data_handle(am[s], &ap));
        for (size_t i = 0; i < (size_t)M * k; i++) {
            if (prec == SN_GEMM_F32)
                ((float *)ap)[i] = asrc[i];
            else if (prec == SN_GEMM_BF16)
                ((uint16_t *)ap)[i] = (uint16_t)(rng >> 48), frand(1);
            else
                ((uint8_t *)ap)[i] = (uint8_t)(rng >> 56), frand(1);
        }
        dnnl_primitive_desc_destroy(pd);
        dnnl_primitive_attr_destroy(attr);
    }
    for (int r = 0; r < runs; r++) {
        double t0 = now();
        for (int s = 0; s < N_SHP; s++) {
            dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, am[s]},
                                       {DNNL_ARG_WEIGHTS, wm[s]},
                                       {DNNL_ARG_DST, cm[s]}};
            DN(dnnl_primitive_execute(mm[s], str, 3, args));
        }
        DN(dnnl_stream_wait(str));
        double t = now() - t0;
        best = t < best ? t : best;
    }
    for (int s = 0; s < N_SHP; s++) {
        dnnl_primitive_destroy(mm[s]);
        dnnl_memory_destroy(am[s]);
        dnnl_memory_destroy(wm[s]);
        dnnl_memory_destroy(cm[s]);
    }
    return flops(M) / best * 1e-9;
}
#endif

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 20;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    /* which: ours, onednn or both; run them in separate processes on a
     * small machine: oneDNN's OpenMP threads spin after each call and our
     * pool's helpers spin too, so in one process each slows the other */
    const char *which = argc > 3 ? argv[3] : "both";
    int do_ours = strcmp(which, "onednn") != 0;
    int do_dnnl = strcmp(which, "ours") != 0;
    sn__pool_t *pool = sn__pool_new(threads);
    static const char *pn[] = {"", "f32", "bf16", "int8"};

    if (!pool || runs < 1)
        return 1;
    for (int s = 0; s < N_SHP; s++) {
        wsrc[s] = malloc((size_t)shp[s].n * shp[s].k * sizeof(float));
        for (size_t i = 0; i < (size_t)shp[s].n * shp[s].k; i++)
            wsrc[s][i] = frand(0.05f);
    }
    asrc = malloc((size_t)4096 * 1536 * sizeof *asrc);
    for (size_t i = 0; i < (size_t)4096 * 1536; i++)
        asrc[i] = frand(1.0f);
#ifdef SN_HAVE_DNNL
    dnnl_engine_t eng;
    dnnl_stream_t str;
    if (dnnl_engine_create(&eng, dnnl_cpu, 0) ||
        dnnl_stream_create(&str, eng, dnnl_stream_default_flags))
        return 1;
#endif
    printf("MiniLM-L6 dense products (qkv+o+ff1+ff2), GFLOP/s, best of %d, "
           "%d threads; isa %s\n",
           runs, threads, sn__isa_name(sn__isa()));
    if (!strcmp(which, "seam")) {
        printf("%-5s %6s %12s %12s   (through sn__gemm_run)\n", "prec", "M",
               "ours", "oneDNN");
        for (int p = SN_GEMM_F32; p <= SN_GEMM_INT8; p++)
            for (int i = 0; i < N_ROWS; i++) {
                double o = seam(p, rows[i], runs, pool, 0);
                double d = seam(p, rows[i], runs, pool, 1);
                printf("%-5s %6d %12.1f %12.1f\n", pn[p], rows[i], o, d);
                fflush(stdout);
            }
        sn__pool_free(pool);
        return 0;
    }
    printf("%-5s %6s %12s %12s\n", "prec", "M", "ours", "oneDNN");
    for (int p = SN_GEMM_F32; p <= SN_GEMM_INT8; p++)
        for (int i = 0; i < N_ROWS; i++) {
            double o = do_ours ? ours(p, rows[i], runs, pool) : 0, d = 0;
#ifdef SN_HAVE_DNNL
            d = do_dnnl ? dnnl(p, rows[i], runs, eng, str) : 0;
#else
            (void)do_dnnl;
#endif
            printf("%-5s %6d %12.1f %12.1f   (kernel %s)\n", pn[p], rows[i],
                   o, d, sn__gemm_kernel_name(sn__isa(), p));
            fflush(stdout);
        }
    sn__pool_free(pool);
    return 0;
}
