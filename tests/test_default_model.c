/*
 * test_default_model.c -- the default model through the public API, as
 * `sense embed --model default` and the daemon use it: sn_model_load
 * ("default") finds what scripts/setup installed, and every one of the 112
 * reference sentences comes out within cosine >= 0.9999 of the TF.js
 * implementation's vector (../shared/fixtures/use-lite/expected.jsonl),
 * with per-token states and offsets inside the text.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "check.h"
#include "sense/sense.h"

#define N_SENT 112

int main(void)
{
    char err[512] = "", path[1024];
    sn_model_t *m = NULL;

    /* a missing default model says how to get it */
    char *saved = getenv("SENSE_DEFAULT_MODEL");
    saved = saved ? strdup(saved) : NULL;
    setenv("SENSE_DEFAULT_MODEL", "/nonexistent/use-lite", 1);
    CHECK_FAILS_WITH(sn_model_load("default", &m, err, sizeof err), err,
                     "scripts/setup");
    CHECK(m == NULL);
    if (saved)
        setenv("SENSE_DEFAULT_MODEL", saved, 1);
    else
        unsetenv("SENSE_DEFAULT_MODEL");
    free(saved);

    if (sn_model_load("default", &m, err, sizeof err)) {
        fprintf(stderr, "cannot load the default model: %s\n"
                        "(run scripts/setup to fetch it)\n", err);
        return 1;
    }
    CHECK_EQ(sn_model_dim(m), 512);
    CHECK(sn_model_normalizes(m));

    snprintf(path, sizeof path, "%s/use-lite/expected.jsonl", SN_FIXTURES);
    FILE *fp = fopen(path, "r");
    CHECK(fp != NULL);
    json_t *rows[N_SENT];
    int n = 0;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, fp) > 0 && n < N_SENT) {
        rows[n] = json_loads(line, 0, NULL);
        CHECK(rows[n] != NULL);
        n++;
    }
    free(line);
    fclose(fp);
    CHECK_EQ(n, N_SENT);

    sn_ctx_t *ctx = sn_ctx_new(m);
    CHECK(ctx != NULL);
    sn_embed_opts_t opts = {.want_tokens = 1};
    double worst = 1;
    for (int i0 = 0; i0 < N_SENT; i0 += 16) {
        const char *texts[16];
        size_t lens[16];
        sn_embedding_t out[16];
        int nb = N_SENT - i0 < 16 ? N_SENT - i0 : 16;
        for (int k = 0; k < nb; k++) {
            json_t *t = json_object_get(rows[i0 + k], "text");
            texts[k] = json_string_value(t);
            lens[k] = json_string_length(t);
        }
        CHECK_OK(sn_model_embed(m, ctx, texts, lens, nb, &opts, out, err,
                                sizeof err), err);
        for (int k = 0; k < nb; k++) {
            json_t *ref = json_object_get(rows[i0 + k], "sentence_embedding");
            CHECK_EQ(json_array_size(ref), 512);
            CHECK_EQ(out[k].dim, 512);
            double ab = 0, aa = 0, bb = 0;
            for (int j = 0; j < 512; j++) {
                double a = out[k].sentence[j];
                double b = json_number_value(json_array_get(ref, (size_t)j));
                ab += a * b;
                aa += a * a;
                bb += b * b;
            }
            double cosv = ab / (sqrt(aa) * sqrt(bb) + 1e-30);
            if (cosv < worst)
                worst = cosv;
            if (!(cosv >= 0.9999)) {
                fprintf(stderr, "sentence %d: cosine %.6f\n", i0 + k, cosv);
                return 1;
            }
            /* token offsets lie inside the text, in order */
            int32_t n_cp = 0;
            for (size_t b = 0; b < lens[k]; b++)
                n_cp += ((uint8_t)texts[k][b] & 0xC0) != 0x80;
            int32_t prev = 0;
            for (int t = 0; t < out[k].enc.n_tokens; t++) {
                if (out[k].enc.special[t])
                    continue;
                CHECK(out[k].enc.start[t] >= prev);
                CHECK(out[k].enc.start[t] <= out[k].enc.end[t]);
                CHECK(out[k].enc.end[t] <= n_cp);
                prev = out[k].enc.start[t];
            }
            CHECK(out[k].enc.n_tokens == 0 || out[k].tokens != NULL);
            sn_embedding_free(&out[k]);
        }
    }
    printf("default model: %d sentences, worst cosine %.9f\n", N_SENT, worst);
    for (int i = 0; i < n; i++)
        json_decref(rows[i]);
    sn_ctx_free(ctx);
    sn_model_free(m);
    return 0;
}
