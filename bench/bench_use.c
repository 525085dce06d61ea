/*
 * bench_use.c -- throughput of the default model (Universal Sentence Encoder
 * Lite) in C: tokenize + encode N sentences built by repeating
 * ../shared/fixtures/sentences.json, in batches, timed over the whole
 * process (model load included) and over the encoding alone. Its twin,
 * bench/use_tfjs.js, does the same with the TF.js reference and prints the
 * ratio of the two.
 *
 * Run:
 *   cmake --build build --target bench_use
 *   build/bench_use [-n 2000] [-b 16] [-m MODEL_DIR] [-s SENTENCES_JSON]
 *   node bench/use_tfjs.js --c build/bench_use      # both, with the ratio
 * MODEL_DIR defaults to $SENSE_DEFAULT_MODEL, else
 * ~/.local/share/sense/models/use-lite (scripts/setup puts it there).
 * OpenBLAS uses every core unless OPENBLAS_NUM_THREADS says otherwise.
 *
 * Prints a human-readable summary on stderr and one JSON line on stdout:
 *   {"impl":"c","n":2000,"batch":16,"load_s":..,"encode_s":..,
 *    "total_s":..,"encode_per_s":..,"total_per_s":..,"checksum":..}
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "embed_int.h"
#include "tokenizer_int.h"

#define MAX_BATCH 1024

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The process's start time in CLOCK_MONOTONIC seconds, from
 * /proc/self/stat (field 22, in clock ticks since boot), so that "whole
 * process" includes the loader and libraries as node's does; falls back to
 * the time main() started. */
static double process_start_s(double fallback)
{
    FILE *f = fopen("/proc/self/stat", "r");
    char buf[1024];
    if (!f)
        return fallback;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return fallback;
    unsigned long long start = 0;
    /* after ")": state is field 3; starttime is field 22 */
    int field = 2;
    for (char *t = strtok(p + 1, " "); t; t = strtok(NULL, " ")) {
        if (++field == 22) {
            start = strtoull(t, NULL, 10);
            break;
        }
    }
    struct timespec bt;
    clock_gettime(CLOCK_BOOTTIME, &bt);
    double boot_now = (double)bt.tv_sec + bt.tv_nsec * 1e-9;
    double s = (double)start / (double)sysconf(_SC_CLK_TCK);
    double age = boot_now - s;
    return age > 0 && age < 60 ? now_s() - age : fallback;
}

static void default_sentences(char *buf, size_t len)
{
    /* __FILE__ is this file's absolute path under CMake */
    const char *f = __FILE__, *slash = strrchr(f, '/');
    int dir = slash ? (int)(slash - f) : 0;
    snprintf(buf, len, "%.*s/../../shared/fixtures/sentences.json", dir, f);
}

int main(int argc, char **argv)
{
    double t_main = now_s();
    double t0 = process_start_s(t_main);
    int n = 2000, batch = 16;
    char model_dir[4096], sent_path[4096], err[1024];
    const char *env = getenv("SENSE_DEFAULT_MODEL");
    const char *home = getenv("HOME");

    if (env && *env)
        snprintf(model_dir, sizeof model_dir, "%s", env);
    else
        snprintf(model_dir, sizeof model_dir,
                 "%s/.local/share/sense/models/use-lite", home ? home : "");
    default_sentences(sent_path, sizeof sent_path);
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "-n") == 0)
            n = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "-b") == 0)
            batch = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "-m") == 0)
            snprintf(model_dir, sizeof model_dir, "%s", argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "-s") == 0)
            snprintf(sent_path, sizeof sent_path, "%s", argv[++i]);
        else {
            fprintf(stderr,
                    "usage: bench_use [-n N] [-b BATCH] [-m MODEL_DIR] "
                    "[-s SENTENCES_JSON]\n");
            return 2;
        }
    }
    if (n < 1 || batch < 1 || batch > MAX_BATCH) {
        fprintf(stderr, "bench_use: -n >= 1, 1 <= -b <= %d\n", MAX_BATCH);
        return 2;
    }

    json_error_t je;
    json_t *sents = json_load_file(sent_path, 0, &je);
    if (!json_is_array(sents) || json_array_size(sents) == 0) {
        fprintf(stderr, "bench_use: '%s': %s\n", sent_path,
                sents ? "not an array of strings" : je.text);
        return 1;
    }
    size_t n_src = json_array_size(sents);

    sn__use_t *m = NULL;
    if (sn__use_load(model_dir, &m, err, sizeof err) != 0) {
        fprintf(stderr, "bench_use: %s (run scripts/setup)\n", err);
        return 1;
    }
    double t_loaded = now_s();
    sn__use_ctx_t *ctx = sn__use_ctx_new(m);
    const sn_tokenizer_t *tok = sn__use_tokenizer(m);
    int max_tok = sn__use_max_tokens(m), dim = sn__use_dim(m);
    int32_t *ids = malloc((size_t)batch * (size_t)max_tok * sizeof *ids);
    int *lens = malloc((size_t)batch * sizeof *lens);
    float *out = malloc((size_t)batch * (size_t)dim * sizeof *out);
    sn_encoding_t enc = {0};
    double checksum = 0;
    long n_tokens = 0;
    if (!ctx || !ids || !lens || !out) {
        fprintf(stderr, "bench_use: out of memory\n");
        return 1;
    }

    for (int s0 = 0; s0 < n; s0 += batch) {
        int nb = n - s0 < batch ? n - s0 : batch, nt = 0;
        for (int j = 0; j < nb; j++) {
            json_t *t = json_array_get(sents, (size_t)(s0 + j) % n_src);
            if (sn_tokenizer_encode(tok, json_string_value(t),
                                    json_string_length(t), max_tok, &enc, err,
                                    sizeof err) != 0) {
                fprintf(stderr, "bench_use: %s\n", err);
                return 1;
            }
            if (enc.n_tokens)
                memcpy(ids + nt, enc.ids, (size_t)enc.n_tokens * sizeof *ids);
            lens[j] = enc.n_tokens;
            nt += enc.n_tokens;
        }
        n_tokens += nt;
        if (sn__use_forward(m, ctx, ids, lens, nb, NULL, out, err,
                            sizeof err) != 0) {
            fprintf(stderr, "bench_use: %s\n", err);
            return 1;
        }
        for (int j = 0; j < nb; j++)
            checksum += out[(size_t)j * (size_t)dim];
    }
    double t_end = now_s();

    double load_s = t_loaded - t0, enc_s = t_end - t_loaded;
    double total_s = t_end - t0;
    fprintf(stderr,
            "bench_use (C): %d sentences (%ld tokens), batches of %d: load "
            "%.3f s, encode %.3f s = %.0f sentences/s; whole process %.3f s "
            "= %.0f sentences/s\n",
            n, n_tokens, batch, load_s, enc_s, n / enc_s, total_s,
            n / total_s);
    printf("{\"impl\":\"c\",\"n\":%d,\"batch\":%d,\"tokens\":%ld,"
           "\"load_s\":%.4f,\"encode_s\":%.4f,\"total_s\":%.4f,"
           "\"encode_per_s\":%.1f,\"total_per_s\":%.1f,\"checksum\":%.6f}\n",
           n, batch, n_tokens, load_s, enc_s, total_s, n / enc_s, n / total_s,
           checksum);

    sn_encoding_free(&enc);
    free(ids);
    free(lens);
    free(out);
    sn__use_ctx_free(ctx);
    sn__use_free(m);
    json_decref(sents);
    return 0;
}
