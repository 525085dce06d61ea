/*
 * bench_minilm.c -- the C side of bench/ort_bench.js: the BERT forward pass
 * (embed/bert.c) on a model folder written by bench/minilm_onnx.py, driven
 * over stdin so that the Node driver can interleave it with ONNX Runtime
 * on the same weights and the same token ids.
 *
 * At start it loads DIR twice: through sn_model_load() (the whole
 * sentence-transformers folder, tokenizer and pooling included, as the
 * daemon would; then freed), and through sn__bert_load(), the encoder that
 * sn_model_load() wraps, whose sn__bert_forward() takes token ids: the
 * public API takes text, and the benchmark feeds ids.
 *
 * Then it reads one command per line on stdin and answers each with one
 * JSON line on stdout ({"ok": false, "error": ...} on failure):
 *   info                  hyper-parameters, OpenBLAS core and threads
 *   roofline RUNS         best-of-RUNS cblas_sgemm GFLOP/s on the layer
 *                         shapes at M = 4096 rows (batch 32 x 128), as
 *                         bench_encode measures it; "best" is the roofline
 *   forward IN OUT        run the ids of IN, write the last hidden state to
 *                         OUT (float32, sum(lens) x hidden, packed)
 *   time IN WARMUP REPS   WARMUP untimed runs then REPS timed ones of IN;
 *                         answers the seconds of each timed run
 *   quit
 * IN is an ids file: int32 n_seq, int32 lens[n_seq], then sum(lens) int32
 * token ids, the sequences back to back (little-endian, as this machine).
 * sn__bert_forward packs sequences without padding, so a batch of unequal
 * lengths costs only its tokens.
 *
 * Usage: bench_minilm --model DIR [--precision f32|bf16|int8] (see
 * bench/README.md): the dense layers in that precision (default f32; `info`
 * reports it, the seconds the whole folder took to load through
 * sn_model_load_prec and the process's resident memory then). The environment
 * applies as for bench_encode: OPENBLAS_NUM_THREADS, OPENBLAS_CORETYPE,
 * OPENBLAS_THREAD_TIMEOUT, SENSE_BERT_KERNELS.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "embed_int.h"
#include "gemm.h"
#include "sense/embed.h"

#define MAX_LINE 8192
#define MAX_IDS_BYTES (64u << 20) /* an ids file: 16M tokens at most */
#define MAX_REPS 100000

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Print one JSON error line; the message has no quotes or backslashes
 * escaped beyond what paths need here. */
static void reply_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void reply_err(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            *p = '\'';
    printf("{\"ok\":false,\"error\":\"%s\"}\n", msg);
    fflush(stdout);
}

typedef struct {
    int32_t *ids;
    int *lens;
    int n_seq;
    int n_tok;
} batch_t;

static void batch_free(batch_t *b)
{
    free(b->ids);
    free(b->lens);
    memset(b, 0, sizeof *b);
}

/* Read an ids file (format at the top); lengths are checked against the
 * file size, the ids themselves by sn__bert_forward. */
static int batch_read(const char *path, batch_t *b, char *err, size_t err_len)
{
    char *buf = NULL;
    size_t len, need;
    int32_t n;
    int rc;

    memset(b, 0, sizeof *b);
    if ((rc = sn__read_file(path, MAX_IDS_BYTES, &buf, &len, err, err_len)))
        return rc;
    rc = SN_ECORRUPT;
    if (len < 4 || (memcpy(&n, buf, 4), n < 1) ||
        (size_t)n > (len - 4) / 4) {
        sn__err(err, err_len, rc, "'%s': bad sequence count", path);
        goto fail;
    }
    b->n_seq = n;
    b->lens = malloc((size_t)n * sizeof *b->lens);
    if (!b->lens) {
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
        goto fail;
    }
    need = 4 + 4 * (size_t)n;
    for (int i = 0; i < n; i++) {
        int32_t l;
        memcpy(&l, buf + 4 + 4 * (size_t)i, 4);
        if (l < 0 || l > (int32_t)(MAX_IDS_BYTES / 4)) {
            sn__err(err, err_len, rc, "'%s': bad length of sequence %d", path,
                    i);
            goto fail;
        }
        b->lens[i] = l;
        b->n_tok += l;
        need += 4 * (size_t)l;
    }
    if (need != len) {
        sn__err(err, err_len, rc, "'%s': %zu bytes, expected %zu", path, len,
                need);
        goto fail;
    }
    b->ids = malloc((size_t)(b->n_tok ? b->n_tok : 1) * sizeof *b->ids);
    if (!b->ids) {
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(b->ids, buf + 4 + 4 * (size_t)n, 4 * (size_t)b->n_tok);
    free(buf);
    return 0;
fail:
    free(buf);
    batch_free(b);
    return rc;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float frand(void) /* uniform [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 40) / 8388608.0 - 1.0);
}

/* Best cblas_sgemm GFLOP/s for x[M, K] W^T, W [N, K] (the layout bert.c
 * calls), over `runs` runs after one warm-up. */
static double sgemm_gflops(int M, int N, int K, int runs)
{
    float *a = malloc((size_t)M * K * sizeof *a);
    float *w = malloc((size_t)N * K * sizeof *w);
    float *c = malloc((size_t)M * N * sizeof *c);
    double best = 1e30;

    if (!a || !w || !c) {
        free(a);
        free(w);
        free(c);
        return 0;
    }
    for (size_t i = 0; i < (size_t)M * K; i++)
        a[i] = frand();
    for (size_t i = 0; i < (size_t)N * K; i++)
        w[i] = 0.1f * frand();
    for (int r = 0; r < runs + 1; r++) {
        double t = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f,
                    a, K, w, K, 0.0f, c, N);
        t = now() - t;
        if (r && t < best)
            best = t;
    }
    free(a);
    free(w);
    free(c);
    return 2.0 * M * N * K / best * 1e-9;
}

static void cmd_roofline(const sn__bert_hparams_t *hp, int runs)
{
    const int H = hp->n_hidden, FF = hp->n_inter, M = 4096;
    const struct {
        const char *what;
        int n, k;
    } shp[] = {{"qkv", 3 * H, H}, {"attn-o", H, H}, {"ffn-up", FF, H},
               {"ffn-dn", H, FF}};
    double best = 0;

    if (runs < 1)
        runs = 1;
    printf("{\"ok\":true,\"m\":%d,\"shapes\":[", M);
    for (size_t i = 0; i < sizeof shp / sizeof *shp; i++) {
        double g = sgemm_gflops(M, shp[i].n, shp[i].k, runs);
        printf("%s{\"what\":\"%s\",\"n\":%d,\"k\":%d,\"gflops\":%.2f}",
               i ? "," : "", shp[i].what, shp[i].n, shp[i].k, g);
        best = g > best ? g : best;
    }
    printf("],\"best\":%.2f}\n", best);
    fflush(stdout);
}

static void cmd_forward(const sn__bert_t *m, sn__bert_ctx_t *c,
                        const char *in, const char *out)
{
    const int H = sn__bert_hparams(m)->n_hidden;
    char err[1024];
    batch_t b;
    float *h = NULL;
    FILE *fp;

    if (batch_read(in, &b, err, sizeof err)) {
        reply_err("%s", err);
        return;
    }
    h = malloc((size_t)(b.n_tok ? b.n_tok : 1) * H * sizeof *h);
    if (!h) {
        reply_err("out of memory");
        goto done;
    }
    if (sn__bert_forward(m, c, b.ids, b.lens, b.n_seq, h, err, sizeof err)) {
        reply_err("%s", err);
        goto done;
    }
    fp = fopen(out, "wb");
    if (!fp || fwrite(h, sizeof *h * H, (size_t)b.n_tok, fp) !=
                   (size_t)b.n_tok) {
        if (fp)
            fclose(fp);
        reply_err("cannot write '%s': %s", out, strerror(errno));
        goto done;
    }
    if (fclose(fp)) {
        reply_err("cannot write '%s': %s", out, strerror(errno));
        goto done;
    }
    printf("{\"ok\":true,\"rows\":%d,\"hidden\":%d}\n", b.n_tok, H);
    fflush(stdout);
done:
    free(h);
    batch_free(&b);
}

static void cmd_time(const sn__bert_t *m, sn__bert_ctx_t *c, const char *in,
                     int warmup, int reps)
{
    const int H = sn__bert_hparams(m)->n_hidden;
    char err[1024];
    batch_t b;
    float *h = NULL;
    double *t = NULL;

    if (warmup < 0 || reps < 1 || reps > MAX_REPS) {
        reply_err("time: bad warmup or reps");
        return;
    }
    if (batch_read(in, &b, err, sizeof err)) {
        reply_err("%s", err);
        return;
    }
    h = malloc((size_t)(b.n_tok ? b.n_tok : 1) * H * sizeof *h);
    t = malloc((size_t)reps * sizeof *t);
    if (!h || !t) {
        reply_err("out of memory");
        goto done;
    }
    for (int r = 0; r < warmup + reps; r++) {
        double t0 = now();
        if (sn__bert_forward(m, c, b.ids, b.lens, b.n_seq, h, err,
                             sizeof err)) {
            reply_err("%s", err);
            goto done;
        }
        if (r >= warmup)
            t[r - warmup] = now() - t0;
    }
    printf("{\"ok\":true,\"tokens\":%d,\"seqs\":%d,\"times\":[", b.n_tok,
           b.n_seq);
    for (int r = 0; r < reps; r++)
        printf("%s%.9f", r ? "," : "", t[r]);
    printf("]}\n");
    fflush(stdout);
done:
    free(t);
    free(h);
    batch_free(&b);
}

static int g_prec = SN_PREC_F32;
static double g_load_s, g_rss_mb;

/* VmRSS of this process, MB. */
static double rss_mb(void)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char l[256];
    double kb = 0;
    while (fp && fgets(l, sizeof l, fp))
        if (!strncmp(l, "VmRSS:", 6))
            kb = atof(l + 6);
    if (fp)
        fclose(fp);
    return kb / 1024;
}

static void cmd_info(const sn__bert_t *m, const char *name)
{
    const sn__bert_hparams_t *hp = sn__bert_hparams(m);
    int avx512 = 0;

#if defined(__x86_64__) && defined(__GNUC__)
    avx512 = __builtin_cpu_supports("avx512f") != 0;
#endif

    printf("{\"ok\":true,\"model\":\"%s\",\"hidden\":%d,\"layers\":%d,"
           "\"heads\":%d,\"inter\":%d,\"vocab\":%d,\"positions\":%d,"
           "\"openblas_core\":\"%s\",\"openblas_threads\":%d,"
           "\"bert_kernels\":\"%s\",\"cpu_avx512\":%s,\"precision\":\"%s\","
           "\"load_s\":%.4f,\"rss_mb\":%.1f}\n",
           name, hp->n_hidden, hp->n_layers, hp->n_heads, hp->n_inter,
           hp->n_vocab, hp->n_pos, openblas_get_corename(),
           openblas_get_num_threads(),
           getenv("SENSE_BERT_KERNELS") ? getenv("SENSE_BERT_KERNELS")
                                        : "best for this CPU",
           avx512 ? "true" : "false", sn_precision_name(g_prec), g_load_s,
           g_rss_mb);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    char err[1024], line[MAX_LINE], name[256];
    sn_model_t *full = NULL;
    sn__bert_t *m = NULL;
    sn__bert_ctx_t *c = NULL;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc &&
                 sn_precision_parse(argv[i + 1]) > SN_PREC_AUTO)
            g_prec = sn_precision_parse(argv[++i]);
        else
            dir = NULL, i = argc;
    }
    if (!dir) {
        fprintf(stderr, "usage: bench_minilm --model DIR [--precision P] "
                        "(commands on "
                        "stdin: info, roofline RUNS, forward IN OUT, time "
                        "IN WARMUP REPS, quit)\n");
        return 2;
    }
    /* the whole folder, as the daemon loads it: proves it is a model */
    double t0 = now();
    if (sn_model_load_prec(dir, (sn_precision_t)g_prec, &full, err,
                           sizeof err)) {
        fprintf(stderr, "bench_minilm: %s\n", err);
        return 1;
    }
    g_load_s = now() - t0;
    g_rss_mb = rss_mb();
    snprintf(name, sizeof name, "%s", sn_model_name(full));
    for (char *p = name; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            *p = '\'';
    sn_model_free(full);
    /* the encoder alone, which takes token ids, its products on the GEMM
     * backend SENSE_GEMM says, chosen as sn_model_load chooses it */
    const int backend = sn__gemm_backend();
    char why[640] = "";
    if (backend < 0) {
        fprintf(stderr, "bench_minilm: SENSE_GEMM: unknown backend '%s'\n",
                getenv("SENSE_GEMM"));
        return 1;
    }
    sn__gemm_collect_begin();
    if (sn__bert_load_prec(dir, g_prec, &m, err, sizeof err) ||
        sn__gemm_backend_pick(backend, g_prec, 0, why, sizeof why)) {
        fprintf(stderr, "bench_minilm: %s\n", err);
        return 1;
    }
    sn__gemm_collect_end();
    fprintf(stderr, "bench_minilm: %s\n", why);
    c = sn__bert_ctx_new(m);
    if (!c) {
        fprintf(stderr, "bench_minilm: out of memory\n");
        goto done;
    }
    while (fgets(line, sizeof line, stdin)) {
        char a[4096], b[4096];
        int x, y;
        line[strcspn(line, "\r\n")] = 0;
        if (!strcmp(line, "quit"))
            break;
        else if (!strcmp(line, "info"))
            cmd_info(m, name);
        else if (sscanf(line, "roofline %d", &x) == 1)
            cmd_roofline(sn__bert_hparams(m), x);
        else if (sscanf(line, "forward %4095s %4095s", a, b) == 2)
            cmd_forward(m, c, a, b);
        else if (sscanf(line, "time %4095s %d %d", a, &x, &y) == 3)
            cmd_time(m, c, a, x, y);
        else
            reply_err("unknown command '%.64s'", line);
    }
    rc = 0;
done:
    sn__bert_ctx_free(c);
    sn__bert_free(m);
    return rc;
}
