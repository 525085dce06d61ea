/*
 * bench_encode.c -- throughput of the BERT forward pass (embed/bert.c) on a
 * MiniLM-L6-shaped model (all-MiniLM-L6-v2: hidden 384, 6 layers, 12 heads,
 * intermediate 1536, vocab 30522, 512 positions) with random weights.
 *
 * The model is written as config.json + model.safetensors into a mkdtemp
 * directory and loaded through sn__bert_load, like a real one. For each
 * workload (batch x tokens per sequence) it reports the best of N runs:
 * tokens/s, sentences/s, the forward pass's matmul GFLOP/s (dense layers +
 * attention QK^T and PV), and that as a fraction of the "roofline": the
 * best cblas_sgemm GFLOP/s this machine reaches on the model's own layer
 * shapes at batch 32 x 128 (M = 4096). Beside each cblas_sgemm figure it
 * prints embed/gemm.c's on the same shape (weights packed once, split over
 * as many threads as OpenBLAS uses), which is what the forward pass runs.
 *
 * Usage: bench_encode [runs]   (default 10). The environment applies as
 * usual: OPENBLAS_NUM_THREADS, OPENBLAS_CORETYPE (left unset, OpenBLAS
 * 0.3.21 picks its AVX-512 "Cooperlake" kernels on this machine's CPU; an
 * environment forcing "Haswell" gets the AVX2 ones, about half as fast),
 * OPENBLAS_THREAD_TIMEOUT (4 stops its idle threads spinning on
 * sched_yield, which steals a core from bert.c's own helpers), and
 * SENSE_BERT_KERNELS=base|avx2|avx512 (caps bert.c's own kernels).
 */
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

#define H 384
#define LAYERS 6
#define HEADS 12
#define INTER 1536
#define VOCAB 30522
#define NPOS 512
#define MAX_T 256

typedef struct {
    char name[96];
    int n_dims;
    int64_t shape[2];
} tdesc_t;

static tdesc_t tens[MAX_T];
static int n_tens;

static void die(const char *what)
{
    fprintf(stderr, "bench_encode: %s\n", what);
    exit(1);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x2545f4914f6cdd1dull;

static float frand(float scale) /* uniform [-scale, scale) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return scale * (float)((double)(rng >> 40) / 8388608.0 - 1.0);
}

static void tensor(const char *name, int64_t d0, int64_t d1)
{
    if (n_tens == MAX_T)
        die("too many tensors");
    snprintf(tens[n_tens].name, sizeof tens[n_tens].name, "%s", name);
    tens[n_tens].n_dims = d1 ? 2 : 1;
    tens[n_tens].shape[0] = d0;
    tens[n_tens].shape[1] = d1;
    n_tens++;
}

static size_t tbytes(const tdesc_t *t)
{
    return (size_t)t->shape[0] * (size_t)(t->n_dims == 2 ? t->shape[1] : 1) *
           sizeof(float);
}

static void write_model(const char *dir)
{
    static const char *cfg =
        "{\"model_type\": \"bert\", \"hidden_size\": 384, "
        "\"num_hidden_layers\": 6, \"num_attention_heads\": 12, "
        "\"intermediate_size\": 1536, \"hidden_act\": \"gelu\", "
        "\"layer_norm_eps\": 1e-12, \"max_position_embeddings\": 512, "
        "\"type_vocab_size\": 2, \"vocab_size\": 30522, "
        "\"pad_token_id\": 0}\n";
    char path[512], name[96], *hdr;
    size_t hcap = 64 * 1024, hl = 0, off = 0;
    uint64_t hlen;
    float *buf;
    FILE *fp;

    tensor("embeddings.word_embeddings.weight", VOCAB, H);
    tensor("embeddings.position_embeddings.weight", NPOS, H);
    tensor("embeddings.token_type_embeddings.weight", 2, H);
    tensor("embeddings.LayerNorm.weight", H, 0);
    tensor("embeddings.LayerNorm.bias", H, 0);
    for (int l = 0; l < LAYERS; l++) {
        static const struct {
            const char *s;
            int64_t d0, d1;
        } per[] = {
            {"attention.self.query.weight", H, H},
            {"attention.self.query.bias", H, 0},
            {"attention.self.key.weight", H, H},
            {"attention.self.key.bias", H, 0},
            {"attention.self.value.weight", H, H},
            {"attention.self.value.bias", H, 0},
            {"attention.output.dense.weight", H, H},
            {"attention.output.dense.bias", H, 0},
            {"attention.output.LayerNorm.weight", H, 0},
            {"attention.output.LayerNorm.bias", H, 0},
            {"intermediate.dense.weight", INTER, H},
            {"intermediate.dense.bias", INTER, 0},
            {"output.dense.weight", H, INTER},
            {"output.dense.bias", H, 0},
            {"output.LayerNorm.weight", H, 0},
            {"output.LayerNorm.bias", H, 0},
        };
        for (size_t i = 0; i < sizeof per / sizeof *per; i++) {
            snprintf(name, sizeof name, "encoder.layer.%d.%s", l, per[i].s);
            tensor(name, per[i].d0, per[i].d1);
        }
    }

    snprintf(path, sizeof path, "%s/config.json", dir);
    fp = fopen(path, "w");
    if (!fp || fputs(cfg, fp) < 0 || fclose(fp))
        die("cannot write config.json");

    hdr = malloc(hcap);
    if (!hdr)
        die("out of memory");
    hl += (size_t)snprintf(hdr, hcap, "{");
    for (int i = 0; i < n_tens; i++) {
        const tdesc_t *t = &tens[i];
        char shape[48];
        if (t->n_dims == 2)
            snprintf(shape, sizeof shape, "%lld,%lld", (long long)t->shape[0],
                     (long long)t->shape[1]);
        else
            snprintf(shape, sizeof shape, "%lld", (long long)t->shape[0]);
        hl += (size_t)snprintf(hdr + hl, hcap - hl,
                               "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%s],"
                               "\"data_offsets\":[%zu,%zu]}",
                               i ? "," : "", t->name, shape, off,
                               off + tbytes(t));
        off += tbytes(t);
    }
    hl += (size_t)snprintf(hdr + hl, hcap - hl, "}");
    while (hl % 8)
        hdr[hl++] = ' ';
    if (hl >= hcap)
        die("header too long");

    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    fp = fopen(path, "wb");
    if (!fp)
        die("cannot write model.safetensors");
    hlen = hl;
    for (int i = 0; i < 8; i++)
        fputc((int)(hlen >> (8 * i)) & 0xff, fp);
    fwrite(hdr, 1, hl, fp);
    for (int i = 0; i < n_tens; i++) {
        size_t n = tbytes(&tens[i]) / sizeof(float);
        int is_gain = strstr(tens[i].name, "LayerNorm.weight") != NULL;
        buf = malloc(n * sizeof *buf);
        if (!buf)
            die("out of memory");
        for (size_t k = 0; k < n; k++)
            buf[k] = is_gain ? 1.0f + frand(0.1f) : frand(0.08f);
        if (fwrite(buf, sizeof *buf, n, fp) != n)
            die("short write");
        free(buf);
    }
    if (fclose(fp))
        die("cannot write model.safetensors");
    free(hdr);
}

/* Matmul FLOPs of one forward pass over n_seq sequences of len tokens. */
static double forward_flops(int n_seq, int len)
{
    double T = (double)n_seq * len;
    double dense = 2.0 * T * (4.0 * H * H + 2.0 * H * INTER);
    double att = 2.0 * 2.0 * n_seq * (double)len * len * H;
    return LAYERS * (dense + att);
}

/* Best cblas_sgemm GFLOP/s for x[M, K] W^T, W [N, K]. */
static double sgemm_gflops(int M, int N, int K, int runs)
{
    float *a = malloc((size_t)M * K * sizeof *a);
    float *w = malloc((size_t)N * K * sizeof *w);
    float *c = malloc((size_t)M * N * sizeof *c);
    double best = 1e30;

    if (!a || !w || !c)
        die("out of memory");
    for (size_t i = 0; i < (size_t)M * K; i++)
        a[i] = frand(1);
    for (size_t i = 0; i < (size_t)N * K; i++)
        w[i] = frand(0.1f);
    for (int r = 0; r < runs + 1; r++) {
        double t = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f,
                    a, K, w, K, 0.0f, c, N);
        t = now() - t;
        if (r && t < best) /* the first run warms up */
            best = t;
    }
    free(a);
    free(w);
    free(c);
    return 2.0 * M * N * K / best * 1e-9;
}

/* Best embed/gemm.c GFLOP/s for the same product on `pool`'s threads. */
static double gemm_gflops(int M, int N, int K, int runs, sn__pool_t *pool)
{
    float *a = malloc((size_t)M * K * sizeof *a);
    float *w = malloc((size_t)N * K * sizeof *w);
    float *c = calloc((size_t)M * N, sizeof *c);
    sn__gemm_w_t pw;
    sn__gemm_job_t j;
    double best = 1e30;

    if (!a || !w || !c)
        die("out of memory");
    for (size_t i = 0; i < (size_t)M * K; i++)
        a[i] = frand(1);
    for (size_t i = 0; i < (size_t)N * K; i++)
        w[i] = frand(0.1f);
    if (sn__gemm_pack(&pw, w, N, K, 1))
        die("out of memory");
    j = (sn__gemm_job_t){.level = sn__gemm_level(), .m = M, .w = &pw, .a = a, .c = c};
    for (int r = 0; r < runs + 1; r++) {
        double t = now();
        sn__pool_run(pool, sn__gemm_part, &j);
        t = now() - t;
        if (r && t < best)
            best = t;
    }
    sn__gemm_free(&pw);
    free(a);
    free(w);
    free(c);
    return 2.0 * M * N * K / best * 1e-9;
}

int main(int argc, char **argv)
{
    static const struct {
        int n_seq, len;
    } work[] = {{1, 16},  {8, 16},   {32, 16}, {1, 128},
                {8, 128}, {32, 128}, {8, 256}};
    char dir[] = "/tmp/sense-bench-XXXXXX", err[512], path[600];
    int runs = argc > 1 ? atoi(argv[1]) : 10;
    double roof = 0, g, ours_best = 0;
    sn__pool_t *pool;
    sn__bert_t *m = NULL;
    sn__bert_ctx_t *c;
    double t0;

    if (runs < 1)
        runs = 1;
    if (!mkdtemp(dir))
        die("mkdtemp failed");
    t0 = now();
    write_model(dir);
    printf("model: MiniLM-L6 shape (H %d, %d layers, %d heads, I %d, vocab "
           "%d), random weights, written in %.2f s\n",
           H, LAYERS, HEADS, INTER, VOCAB, now() - t0);
    t0 = now();
    if (sn__bert_load(dir, &m, err, sizeof err) < 0) {
        fprintf(stderr, "bench_encode: %s\n", err);
        return 1;
    }
    printf("loaded in %.3f s\n", now() - t0);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);

    printf("OpenBLAS: %s kernels, %d threads; bert.c kernels: %s, gemm.c: "
           "%s\n",
           openblas_get_corename(), openblas_get_num_threads(),
           getenv("SENSE_BERT_KERNELS") ? getenv("SENSE_BERT_KERNELS")
                                        : "best for this CPU",
           sn__gemm_level_name(sn__gemm_level()));
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx512f") &&
        !strcmp(openblas_get_corename(), "Haswell"))
        printf("note: this CPU has AVX-512 but OpenBLAS runs its AVX2 "
               "kernels (is OPENBLAS_CORETYPE set?)\n");
#endif
    printf("\n");
    pool = sn__pool_new(openblas_get_num_threads() <
                                (int)sysconf(_SC_NPROCESSORS_ONLN)
                            ? openblas_get_num_threads()
                            : (int)sysconf(_SC_NPROCESSORS_ONLN));
    if (!pool)
        die("out of memory");
    printf("cblas_sgemm roofline, M = 4096 rows (batch 32 x 128), and "
           "embed/gemm.c on %d threads:\n",
           sn__pool_threads(pool));
    {
        static const struct {
            const char *what;
            int n, k;
        } shp[] = {{"qkv    4096x1152x384", 3 * H, H},
                   {"attn-o 4096x384x384", H, H},
                   {"ffn-up 4096x1536x384", INTER, H},
                   {"ffn-dn 4096x384x1536", H, INTER}};
        for (size_t i = 0; i < sizeof shp / sizeof *shp; i++) {
            double o;
            g = sgemm_gflops(4096, shp[i].n, shp[i].k, runs);
            o = gemm_gflops(4096, shp[i].n, shp[i].k, runs, pool);
            printf("  %-22s %7.1f GFLOP/s   gemm.c %7.1f GFLOP/s\n",
                   shp[i].what, g, o);
            roof = g > roof ? g : roof;
            ours_best = o > ours_best ? o : ours_best;
        }
    }
    printf("  roofline (best)        %7.1f GFLOP/s   gemm.c %7.1f GFLOP/s\n\n",
           roof, ours_best);
    sn__pool_free(pool);

    c = sn__bert_ctx_new(m);
    if (!c)
        die("out of memory");
    printf("%-12s %6s %12s %12s %10s %10s %9s\n", "batch x len", "runs",
           "tokens/s", "sentences/s", "ms/batch", "GFLOP/s", "roofline");
    for (size_t w = 0; w < sizeof work / sizeof *work; w++) {
        int n_seq = work[w].n_seq, len = work[w].len, T = n_seq * len;
        int *lens = malloc((size_t)n_seq * sizeof *lens);
        int32_t *ids = malloc((size_t)T * sizeof *ids);
        float *out = malloc((size_t)T * H * sizeof *out);
        double best = 1e30, flops = forward_flops(n_seq, len);
        int n_runs = runs * (T < 1024 ? 8 : 1);
        char label[32];

        if (!lens || !ids || !out)
            die("out of memory");
        for (int s = 0; s < n_seq; s++)
            lens[s] = len;
        for (int t = 0; t < T; t++)
            ids[t] = (int32_t)((uint32_t)(frand(1) * 1e6f + 2e6f) % VOCAB);
        for (int r = 0; r < n_runs + 1; r++) {
            double t = now();
            if (sn__bert_forward(m, c, ids, lens, n_seq, out, err,
                                 sizeof err) < 0) {
                fprintf(stderr, "bench_encode: %s\n", err);
                return 1;
            }
            t = now() - t;
            if (r && t < best)
                best = t;
        }
        snprintf(label, sizeof label, "%d x %d", n_seq, len);
        printf("%-12s %6d %12.0f %12.1f %10.2f %10.1f %8.1f%%\n", label,
               n_runs, T / best, n_seq / best, best * 1e3, flops / best * 1e-9,
               100.0 * flops / best * 1e-9 / roof);
        free(lens);
        free(ids);
        free(out);
    }
    sn__bert_ctx_free(c);
    sn__bert_free(m);
    return 0;
}
