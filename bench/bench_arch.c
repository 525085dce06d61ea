/*
 * bench_arch.c -- big checkpoints load, and every architecture's forward
 * pass against the GEMM roofline.
 *
 * Writes checkpoints with random weights at the real shapes into a
 * temporary folder under /tmp (removed at the end; nothing is committed):
 *   qwen3-0.6b   Qwen3-0.6B / Qwen3-Embedding-0.6B: 28 layers, H 1024,
 *                16 query / 8 KV heads of 128, I 3072, vocab 151,669, BF16
 *   xlmr-large   XLM-R large (multilingual-e5-large, bge-m3 shape): 24
 *                layers, H 1024, 16 heads, I 4096, vocab 250,002, 8,194
 *                positions (8,192 tokens), BF16 -- 568M parameters
 *   minilm       all-MiniLM-L6-v2: 6 x 384, 12 heads, I 1536, F32
 *   mpnet-base   all-mpnet-base-v2: 12 x 768, 12 heads, I 3072, F32
 * For each: load time (config, safetensors header, F16/BF16 -> F32,
 * packing) and resident memory after the load (VmRSS; VmHWM, the peak, is
 * printed too), then tokens/s of the forward pass (sn__enc_forward) at
 * batch x length, its GFLOP/s, and that as a share of the roofline: the
 * best GFLOP/s embed/gemm.c reaches on the model's own dense products at
 * the same number of rows, on the same threads.
 *
 * usage: bench_arch [--quick] [MODEL...]   (default: all four)
 * --quick: one timed run per shape. Threads: OPENBLAS_NUM_THREADS (as the
 * daemon sets it), capped at the cores.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "embed_int.h"
#include "gemm.h"
#include "nn.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long status_kb(const char *key)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fp && fgets(line, sizeof line, fp))
        if (!strncmp(line, key, n))
            v = atol(line + n + 1);
    if (fp)
        fclose(fp);
    return v;
}

/* ---- writing a checkpoint -------------------------------------------------- */

typedef struct {
    char name[128];
    int64_t d0, d1; /* d1 0: 1-D */
    int fill;       /* 0 random, 1 ones, 2 zeros */
} tdesc_t;

typedef struct {
    tdesc_t *t;
    int n, cap;
} tlist_t;

static void add(tlist_t *l, int64_t d0, int64_t d1, int fill,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void add(tlist_t *l, int64_t d0, int64_t d1, int fill,
                const char *fmt, ...)
{
    va_list ap;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->t = realloc(l->t, (size_t)l->cap * sizeof *l->t);
        if (!l->t)
            exit(1);
    }
    tdesc_t *t = &l->t[l->n++];
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->d0 = d0;
    t->d1 = d1;
    t->fill = fill;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static inline uint32_t next32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

/* one value: uniform in [-0.05, 0.05) (sd ~0.029), or the fill */
static inline float value(int fill)
{
    if (fill == 1)
        return 1.0f;
    if (fill == 2)
        return 0.0f;
    return ((float)(next32() >> 8) / 16777216.0f - 0.5f) * 0.1f;
}

/* Write dir/model.safetensors (bf16 or f32) and return its size. */
static double write_st(const char *dir, const tlist_t *l, int bf16)
{
    char path[512];
    size_t esz = bf16 ? 2 : 4, hcap = 256 + (size_t)l->n * 200, hl = 0;
    char *hdr = malloc(hcap);
    uint64_t off = 0;

    hl += (size_t)snprintf(hdr + hl, hcap - hl, "{");
    for (int i = 0; i < l->n; i++) {
        const tdesc_t *t = &l->t[i];
        uint64_t bytes = (uint64_t)t->d0 * (t->d1 ? t->d1 : 1) * esz;
        if (t->d1)
            hl += (size_t)snprintf(hdr + hl, hcap - hl,
                                   "%s\"%s\":{\"dtype\":\"%s\",\"shape\":"
                                   "[%lld,%lld],\"data_offsets\":[%llu,%llu]}",
                                   i ? "," : "", t->name,
                                   bf16 ? "BF16" : "F32", (long long)t->d0,
                                   (long long)t->d1,
                                   (unsigned long long)off,
                                   (unsigned long long)(off + bytes));
        else
            hl += (size_t)snprintf(hdr + hl, hcap - hl,
                                   "%s\"%s\":{\"dtype\":\"%s\",\"shape\":"
                                   "[%lld],\"data_offsets\":[%llu,%llu]}",
                                   i ? "," : "", t->name,
                                   bf16 ? "BF16" : "F32", (long long)t->d0,
                                   (unsigned long long)off,
                                   (unsigned long long)(off + bytes));
        off += bytes;
    }
    hl += (size_t)snprintf(hdr + hl, hcap - hl, "}");
    while (hl % 8)
        hdr[hl++] = ' ';
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *fp = fopen(path, "wb");
    uint64_t hl64 = hl;
    if (!fp || fwrite(&hl64, 8, 1, fp) != 1 || fwrite(hdr, 1, hl, fp) != hl)
        exit(1);
    enum { CHUNK = 1 << 20 };
    static uint8_t buf[CHUNK * 4];
    for (int i = 0; i < l->n; i++) {
        const tdesc_t *t = &l->t[i];
        uint64_t n = (uint64_t)t->d0 * (t->d1 ? t->d1 : 1);
        while (n) {
            size_t k = n > CHUNK ? CHUNK : (size_t)n;
            for (size_t j = 0; j < k; j++) {
                float f = value(t->fill);
                uint32_t u;
                memcpy(&u, &f, 4);
                if (bf16) {
                    uint16_t h = (uint16_t)(u >> 16);
                    memcpy(buf + 2 * j, &h, 2);
                } else {
                    memcpy(buf + 4 * j, &u, 4);
                }
            }
            if (fwrite(buf, esz, k, fp) != k)
                exit(1);
            n -= k;
        }
    }
    if (fclose(fp))
        exit(1);
    free(hdr);
    return (double)(8 + hl + off);
}

static void write_cfg(const char *dir, const char *json)
{
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *fp = fopen(path, "w");
    if (!fp || fputs(json, fp) < 0 || fclose(fp))
        exit(1);
}

/* ---- the models ---------------------------------------------------------------- */

typedef struct {
    const char *name;
    int bf16;
    int H, L, heads, kv, d, I, vocab;
    /* per-token FLOPs of the dense products, per layer (2 x weights) */
    double lin_flops;
    int shapes[8][2]; /* the model's dense products: n x k */
    int n_shapes;
    int lens[4][2];   /* batch x length to time */
} spec_t;

static void build_bert(tlist_t *l, const spec_t *s, int n_pos, int types,
                       const char *att, int mpnet)
{
    const int H = s->H, I = s->I;
    add(l, s->vocab, H, 0, "embeddings.word_embeddings.weight");
    add(l, n_pos, H, 0, "embeddings.position_embeddings.weight");
    if (types)
        add(l, types, H, 0, "embeddings.token_type_embeddings.weight");
    add(l, H, 0, 1, "embeddings.LayerNorm.weight");
    add(l, H, 0, 2, "embeddings.LayerNorm.bias");
    if (mpnet)
        add(l, 32, s->heads, 0, "encoder.relative_attention_bias.weight");
    for (int i = 0; i < s->L; i++) {
        const char *qkv[3] = {mpnet ? "attn.q" : "self.query",
                              mpnet ? "attn.k" : "self.key",
                              mpnet ? "attn.v" : "self.value"};
        for (int j = 0; j < 3; j++) {
            add(l, H, H, 0, "encoder.layer.%d.attention.%s.weight", i,
                qkv[j]);
            add(l, H, 0, 0, "encoder.layer.%d.attention.%s.bias", i, qkv[j]);
        }
        add(l, H, H, 0, "encoder.layer.%d.attention.%s.weight", i, att);
        add(l, H, 0, 0, "encoder.layer.%d.attention.%s.bias", i, att);
        add(l, H, 0, 1, "encoder.layer.%d.attention.%sLayerNorm.weight", i,
            mpnet ? "" : "output.");
        add(l, H, 0, 2, "encoder.layer.%d.attention.%sLayerNorm.bias", i,
            mpnet ? "" : "output.");
        add(l, I, H, 0, "encoder.layer.%d.intermediate.dense.weight", i);
        add(l, I, 0, 0, "encoder.layer.%d.intermediate.dense.bias", i);
        add(l, H, I, 0, "encoder.layer.%d.output.dense.weight", i);
        add(l, H, 0, 0, "encoder.layer.%d.output.dense.bias", i);
        add(l, H, 0, 1, "encoder.layer.%d.output.LayerNorm.weight", i);
        add(l, H, 0, 2, "encoder.layer.%d.output.LayerNorm.bias", i);
    }
}

static void build_qwen3(tlist_t *l, const spec_t *s)
{
    const int H = s->H, nq = s->heads * s->d, nk = s->kv * s->d;
    add(l, s->vocab, H, 0, "embed_tokens.weight");
    for (int i = 0; i < s->L; i++) {
        add(l, H, 0, 1, "layers.%d.input_layernorm.weight", i);
        add(l, nq, H, 0, "layers.%d.self_attn.q_proj.weight", i);
        add(l, nk, H, 0, "layers.%d.self_attn.k_proj.weight", i);
        add(l, nk, H, 0, "layers.%d.self_attn.v_proj.weight", i);
        add(l, H, nq, 0, "layers.%d.self_attn.o_proj.weight", i);
        add(l, s->d, 0, 1, "layers.%d.self_attn.q_norm.weight", i);
        add(l, s->d, 0, 1, "layers.%d.self_attn.k_norm.weight", i);
        add(l, H, 0, 1, "layers.%d.post_attention_layernorm.weight", i);
        add(l, s->I, H, 0, "layers.%d.mlp.gate_proj.weight", i);
        add(l, s->I, H, 0, "layers.%d.mlp.up_proj.weight", i);
        add(l, H, s->I, 0, "layers.%d.mlp.down_proj.weight", i);
    }
    add(l, H, 0, 1, "norm.weight");
}

static spec_t specs[] = {
    {"minilm", 0, 384, 6, 12, 12, 32, 1536, 30522,
     2.0 * (4 * 384 * 384 + 2 * 384 * 1536),
     {{1152, 384}, {384, 384}, {1536, 384}, {384, 1536}}, 4,
     {{1, 128}, {8, 128}, {32, 128}, {0, 0}}},
    {"mpnet-base", 0, 768, 12, 12, 12, 64, 3072, 30527,
     2.0 * (4 * 768 * 768 + 2 * 768 * 3072),
     {{2304, 768}, {768, 768}, {3072, 768}, {768, 3072}}, 4,
     {{1, 128}, {8, 128}, {0, 0}}},
    {"qwen3-0.6b", 1, 1024, 28, 16, 8, 128, 3072, 151669,
     2.0 * (2048 * 1024 + 2 * 1024 * 1024 + 1024 * 2048 + 3 * 1024 * 3072),
     {{4096, 1024}, {1024, 2048}, {6144, 1024}, {1024, 3072}}, 4,
     {{1, 64}, {4, 64}, {0, 0}}},
    {"xlmr-large", 1, 1024, 24, 16, 16, 64, 4096, 250002,
     2.0 * (4 * 1024 * 1024 + 2 * 1024 * 4096),
     {{3072, 1024}, {1024, 1024}, {4096, 1024}, {1024, 4096}}, 4,
     {{1, 128}, {1, 256}, {0, 0}}},
};

/* The best GFLOP/s of embed/gemm.c on the model's products at m rows. */
static double roofline(const spec_t *s, int m, sn__nn_t *nn)
{
    double best = 0;
    for (int i = 0; i < s->n_shapes; i++) {
        int n = s->shapes[i][0], k = s->shapes[i][1];
        float *w = malloc((size_t)n * k * sizeof *w);
        float *a = malloc((size_t)m * k * sizeof *a);
        float *c = calloc((size_t)m * n, sizeof *c);
        sn__gemm_w_t pw;
        if (!w || !a || !c)
            exit(1);
        for (size_t j = 0; j < (size_t)n * k; j++)
            w[j] = value(0);
        for (size_t j = 0; j < (size_t)m * k; j++)
            a[j] = value(0);
        if (sn__gemm_pack(&pw, w, n, k, 1))
            exit(1);
        sn__nn_linear(nn, a, (size_t)k, &pw, c, (size_t)n, m); /* warm */
        int reps = 0;
        double t0 = now(), t;
        do {
            sn__nn_linear(nn, a, (size_t)k, &pw, c, (size_t)n, m);
            reps++;
        } while ((t = now() - t0) < 0.3);
        double g = 2.0 * m * n * k * reps / t / 1e9;
        best = g > best ? g : best;
        sn__gemm_free(&pw);
        free(w);
        free(a);
        free(c);
    }
    return best;
}

static void run_model(spec_t *s, int quick)
{
    char dir[] = "/tmp/sense-bench-arch-XXXXXX", cfg[1024], err[512];
    tlist_t l = {0};
    double t0, size;
    sn__enc_t *e = NULL;

    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    if (!strcmp(s->name, "qwen3-0.6b")) {
        build_qwen3(&l, s);
        snprintf(cfg, sizeof cfg,
                 "{\"model_type\": \"qwen3\", \"hidden_size\": %d, "
                 "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
                 "\"num_key_value_heads\": %d, \"head_dim\": %d, "
                 "\"intermediate_size\": %d, \"max_position_embeddings\": "
                 "40960, \"vocab_size\": %d, \"rms_norm_eps\": 1e-6, "
                 "\"rope_theta\": 1000000, \"hidden_act\": \"silu\", "
                 "\"tie_word_embeddings\": true}",
                 s->H, s->L, s->heads, s->kv, s->d, s->I, s->vocab);
    } else if (!strcmp(s->name, "xlmr-large")) {
        build_bert(&l, s, 8194, 1, "output.dense", 0);
        snprintf(cfg, sizeof cfg,
                 "{\"model_type\": \"xlm-roberta\", \"hidden_size\": %d, "
                 "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
                 "\"intermediate_size\": %d, \"max_position_embeddings\": "
                 "8194, \"type_vocab_size\": 1, \"vocab_size\": %d, "
                 "\"pad_token_id\": 1, \"hidden_act\": \"gelu\", "
                 "\"layer_norm_eps\": 1e-5}",
                 s->H, s->L, s->heads, s->I, s->vocab);
    } else if (!strcmp(s->name, "mpnet-base")) {
        build_bert(&l, s, 514, 0, "attn.o", 1);
        snprintf(cfg, sizeof cfg,
                 "{\"model_type\": \"mpnet\", \"hidden_size\": %d, "
                 "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
                 "\"intermediate_size\": %d, \"max_position_embeddings\": "
                 "514, \"vocab_size\": %d, \"pad_token_id\": 1, "
                 "\"hidden_act\": \"gelu\", \"layer_norm_eps\": 1e-5, "
                 "\"relative_attention_num_buckets\": 32}",
                 s->H, s->L, s->heads, s->I, s->vocab);
    } else {
        build_bert(&l, s, 512, 2, "output.dense", 0);
        snprintf(cfg, sizeof cfg,
                 "{\"model_type\": \"bert\", \"hidden_size\": %d, "
                 "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
                 "\"intermediate_size\": %d, \"max_position_embeddings\": "
                 "512, \"vocab_size\": %d, \"hidden_act\": \"gelu\"}",
                 s->H, s->L, s->heads, s->I, s->vocab);
    }
    write_cfg(dir, cfg);
    t0 = now();
    size = write_st(dir, &l, s->bf16);
    printf("\n== %s: %s, %.2f GB file (%s), written in %.1f s\n", s->name,
           s->bf16 ? "BF16" : "F32", size / 1e9, dir, now() - t0);
    long rss0 = status_kb("VmRSS:");
    t0 = now();
    if (sn__enc_load(dir, SN_PREC_F32, &e, err, sizeof err)) {
        fprintf(stderr, "load failed: %s\n", err);
        exit(1);
    }
    double tl = now() - t0;
    long rss1 = status_kb("VmRSS:"), hwm = status_kb("VmHWM:");
    printf("load %.2f s; resident +%.2f GB after the load (VmRSS %.2f GB, "
           "peak VmHWM %.2f GB)\n",
           tl, (rss1 - rss0) / 1048576.0, rss1 / 1048576.0,
           hwm / 1048576.0);
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);

    sn__nn_t *nn = sn__enc_ctx_new(e);
    printf("%-10s %6s %10s %10s %9s %9s\n", "batch x len", "runs",
           "tokens/s", "ms/batch", "GFLOP/s", "roofline");
    for (int i = 0; s->lens[i][0]; i++) {
        int B = s->lens[i][0], L = s->lens[i][1], T = B * L, runs = 0;
        int32_t *ids = malloc((size_t)T * sizeof *ids);
        int lens[64];
        float *out = malloc((size_t)T * s->H * sizeof *out);
        if (!ids || !out)
            exit(1);
        for (int t = 0; t < T; t++)
            ids[t] = 3 + (int32_t)(next32() % (uint32_t)(s->vocab - 3));
        for (int b = 0; b < B; b++)
            lens[b] = L;
        if (sn__enc_forward(e, nn, ids, lens, B, out, NULL, err,
                            sizeof err)) { /* warm */
            fprintf(stderr, "forward: %s\n", err);
            exit(1);
        }
        double t = 0, start = now();
        do {
            sn__enc_forward(e, nn, ids, lens, B, out, NULL, err, sizeof err);
            runs++;
        } while ((t = now() - start) < (quick ? 0.0 : 3.0));
        double flops = (double)T * s->L * (s->lin_flops + 4.0 * L *
                                           s->heads * s->d);
        double g = flops * runs / t / 1e9;
        double roof = roofline(s, T, nn);
        printf("%3d x %-5d %6d %10.0f %10.1f %9.1f %8.0f%%  (gemm.c at "
               "M=%d: %.1f GFLOP/s)\n",
               B, L, runs, T * runs / t, t / runs * 1e3, g, 100 * g / roof, T,
               roof);
        free(ids);
        free(out);
    }
    sn__enc_ctx_free(e, nn);
    sn__enc_free(e);
    free(l.t);
}

int main(int argc, char **argv)
{
    int quick = 0, any = 0;

    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
    printf("threads: %d; gemm.c: %s; kernels: %s\n",
           sn__nn_threads(sn__nn_new()),
           sn__gemm_level_name(sn__gemm_level()), sn__kernels_pick()->name);
    for (size_t m = 0; m < sizeof specs / sizeof *specs; m++) {
        int want = 1;
        for (int i = 1; i < argc; i++)
            if (argv[i][0] != '-') {
                want = 0;
                break;
            }
        for (int i = 1; i < argc; i++)
            if (!strcmp(argv[i], specs[m].name))
                want = 1;
        if (want) {
            run_model(&specs[m], quick);
            any = 1;
        }
    }
    return any ? 0 : 2;
}
