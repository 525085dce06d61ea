/*
 * bench_tokenize.c -- tokenizer throughput, and the measurement behind
 * bpe.c's choice of PCRE2 for Split.
 *
 * Part 1, the regex: the GPT-2 pre-tokenizer pattern over the corpus, as
 * code points, cut into pieces by
 *   pcre2-jit   PCRE2's 32-bit library, JIT-compiled (what bpe.c uses);
 *   pcre2-interp the same pattern without the JIT;
 *   utf8proc    a matcher written for this one pattern over utf8proc's
 *               categories (what we would have to write, and keep in step,
 *               for each pattern real models use).
 * All three must cut the corpus identically (checked: the piece count and a
 * checksum of the boundaries); the time per MB is printed for each.
 *
 * Part 2, whole tokenizers: sn_tokenizer_encode over the corpus, one
 * sentence at a time, for a model folder of each layout; texts/s, MB/s and
 * tokens/s. Its peer is bench/tokenize_hf.js (npm tokenizers@0.23.2 on the
 * same texts and folders), run in the same minutes.
 *
 * Corpus: ../shared/fixtures/sentences-2.json repeated to about -m MB.
 * Run:
 *   cmake --build build --target bench_tokenize
 *   build/bench_tokenize [-m MB] [-f FIXTURES]
 *   node bench/tokenize_hf.js [-m MB] [-f FIXTURES]   # needs npm tokenizers
 */
#define PCRE2_CODE_UNIT_WIDTH 32
#include <jansson.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <utf8proc.h>

#include "sense/embed.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- the hand-written GPT-2 matcher ---------------------------------------- */

static int is_space(uint32_t c) /* White_Space, as Oniguruma's \s */
{
    if (c < 0x80)
        return c == ' ' || (c >= 0x09 && c <= 0x0d);
    return c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* 0 other, 1 letter, 2 number */
static int klass(uint32_t c)
{
    if (c < 0x80) {
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
            return 1;
        return c >= '0' && c <= '9' ? 2 : 0;
    }
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    if (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO)
        return 1;
    if (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO)
        return 2;
    return 0;
}

/* Length of the match at cps[i] (never 0 for i < n). */
static int gpt2_match(const uint32_t *cp, int i, int n)
{
    if (cp[i] == '\'' && i + 1 < n) {
        uint32_t a = cp[i + 1], b = i + 2 < n ? cp[i + 2] : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd')
            return 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') ||
            (a == 'l' && b == 'l'))
            return 3;
    }
    int j = i + (cp[i] == ' ' && i + 1 < n);
    if (!is_space(cp[j])) {
        int k = klass(cp[j]), e = j + 1;
        if (k == 0)
            while (e < n && !is_space(cp[e]) && klass(cp[e]) == 0)
                e++;
        else
            while (e < n && klass(cp[e]) == k)
                e++;
        return e - i;
    }
    int e = i;
    while (e < n && is_space(cp[e]))
        e++;
    if (e == n || e - i == 1)
        return e - i;
    return e - i - 1; /* \s+(?!\S) leaves the last space to the word */
}

/* ---- main ---------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *fix = "../shared/fixtures";
    double mb = 4;
    int c;
    while ((c = getopt(argc, argv, "m:f:")) != -1) {
        if (c == 'm')
            mb = atof(optarg);
        else if (c == 'f')
            fix = optarg;
        else {
            fprintf(stderr, "usage: bench_tokenize [-m MB] [-f FIXTURES]\n");
            return 2;
        }
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/sentences-2.json", fix);
    json_error_t je;
    json_t *sents = json_load_file(path, 0, &je);
    if (!json_is_array(sents)) {
        fprintf(stderr, "%s: %s\n", path, je.text);
        return 1;
    }
    /* the corpus: sentences repeated to about mb MB */
    size_t want = (size_t)(mb * 1e6), total = 0;
    int n_sent = 0, cap = 1024;
    const char **texts = malloc((size_t)cap * sizeof *texts);
    size_t *lens = malloc((size_t)cap * sizeof *lens);
    while (total < want) {
        for (size_t i = 0; i < json_array_size(sents) && total < want; i++) {
            if (n_sent == cap) {
                cap *= 2;
                texts = realloc(texts, (size_t)cap * sizeof *texts);
                lens = realloc(lens, (size_t)cap * sizeof *lens);
            }
            texts[n_sent] = json_string_value(json_array_get(sents, i));
            lens[n_sent] = json_string_length(json_array_get(sents, i));
            total += lens[n_sent++];
        }
    }
    /* ... and as one array of code points, texts separated by '\n' */
    uint32_t *cps = malloc((total + (size_t)n_sent + 1) * sizeof *cps);
    int n_cps = 0;
    for (int t = 0; t < n_sent; t++) {
        for (size_t at = 0; at < lens[t];) {
            utf8proc_int32_t cp;
            at += (size_t)utf8proc_iterate(
                (const utf8proc_uint8_t *)texts[t] + at,
                (utf8proc_ssize_t)(lens[t] - at), &cp);
            cps[n_cps++] = (uint32_t)cp;
        }
        cps[n_cps++] = '\n';
    }
    printf("corpus: %d texts, %.2f MB, %d code points\n", n_sent, total / 1e6,
           n_cps);

    /* part 1: the GPT-2 regex three ways */
    static const char pat8[] =
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\x{85}\\p{L}"
        "\\p{N}]+|[\\s\\x{85}]+(?![^\\s\\x{85}])|[\\s\\x{85}]+";
    uint32_t pat[sizeof pat8];
    for (size_t i = 0; i < sizeof pat8; i++)
        pat[i] = (uint8_t)pat8[i];
    int ec;
    PCRE2_SIZE eo;
    for (int mode = 0; mode < 3; mode++) {
        pcre2_code *re = NULL;
        pcre2_match_data *md = NULL;
        if (mode < 2) {
            re = pcre2_compile(pat, sizeof pat8 - 1, PCRE2_UTF | PCRE2_UCP,
                               &ec, &eo, NULL);
            if (!re)
                return 1;
            if (mode == 0)
                pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
            md = pcre2_match_data_create(1, NULL);
        }
        double t0 = now();
        long pieces = 0;
        unsigned long long sum = 0;
        for (int i = 0; i < n_cps;) {
            int len;
            if (mode < 2) {
                int r = pcre2_match(re, cps, (PCRE2_SIZE)n_cps, (PCRE2_SIZE)i,
                                    PCRE2_NO_UTF_CHECK, md, NULL);
                if (r < 0)
                    break;
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
                if ((int)ov[0] != i) { /* a gap: not expected here */
                    pieces++;
                    sum = sum * 31 + ov[0];
                }
                len = (int)(ov[1] - ov[0]);
                i = (int)ov[0];
            } else {
                len = gpt2_match(cps, i, n_cps);
            }
            i += len;
            pieces++;
            sum = sum * 31 + (unsigned long long)i;
        }
        double dt = now() - t0;
        static const char *names[] = {"pcre2-jit", "pcre2-interp",
                                      "utf8proc"};
        printf("split %-13s %8ld pieces  checksum %016llx  %7.1f ms  "
               "%6.1f MB/s\n",
               names[mode], pieces, sum, dt * 1e3, total / 1e6 / dt);
        pcre2_match_data_free(md);
        pcre2_code_free(re);
    }

    /* part 2: whole tokenizers */
    static const char *const models[] = {
        "tiny-roberta-bpe", "tiny-qwen3-lasttoken", "tiny-modernbert",
        "tiny-me5-precompiled", "tiny-st5-dense", "tiny-bge-lowercase"};
    for (size_t k = 0; k < sizeof models / sizeof *models; k++) {
        char dir[4096], err[512];
        snprintf(dir, sizeof dir, "%s/hf-reference-2/%s/model", fix,
                 models[k]);
        sn_tokenizer_t *tok = NULL;
        if (sn_tokenizer_load(dir, &tok, err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        sn_encoding_t enc = {0};
        long n_tok = 0;
        double t0 = now();
        for (int t = 0; t < n_sent; t++) {
            if (sn_tokenizer_encode(tok, texts[t], lens[t], 0, &enc, err,
                                    sizeof err)) {
                fprintf(stderr, "%s\n", err);
                return 1;
            }
            n_tok += enc.n_tokens;
        }
        double dt = now() - t0;
        printf("encode %-22s %8.0f texts/s  %6.2f MB/s  %9.0f tokens/s  "
               "(%ld tokens)\n",
               models[k], n_sent / dt, total / 1e6 / dt, n_tok / dt, n_tok);
        sn_encoding_free(&enc);
        sn_tokenizer_free(tok);
    }
    free(cps);
    free(texts);
    free(lens);
    json_decref(sents);
    return 0;
}
