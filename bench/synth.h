/*
 * synth.h -- synthetic normalized vectors for the search benchmarks
 * (bench_search.c, bench_socket.c): one generator, so both measure the
 * same data.
 *
 *   clustered  what sentence embeddings look like to an index: low
 *       intrinsic dimension and topics. Points are drawn from n/100
 *       Gaussian clusters in a 48-d latent space (centres N(0,1), spread
 *       2.0, so clusters overlap), mapped to d dimensions by a fixed random
 *       projection, plus isotropic noise (0.1 per coordinate), normalized.
 *       Nearest-neighbour cosines come out around 0.55 against 0.01 for
 *       random pairs, like a MiniLM-class model on a mixed corpus.
 *   uniform  Gaussian vectors, normalized: uniform on the sphere, the
 *       worst case for a graph index.
 *
 * Header-only (static functions) for the bench programs; die() is the
 * including program's. Deterministic: a fixed xorshift seed.
 */
#ifndef SENSE_BENCH_SYNTH_H
#define SENSE_BENCH_SYNTH_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static void die(const char *what, const char *err);

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static double urand(void) /* (0, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((double)(rng_state >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static float grand(void)
{
    return (float)(sqrt(-2.0 * log(urand())) * cos(2.0 * M_PI * urand()));
}

static void normalize(float *v, int d)
{
    double s = 0;
    for (int i = 0; i < d; i++)
        s += (double)v[i] * v[i];
    s = s > 0 ? 1.0 / sqrt(s) : 0;
    for (int i = 0; i < d; i++)
        v[i] = (float)(v[i] * s);
}

#define LATENT 48
#define SPREAD 2.0f
#define NOISE 0.1f

/* n database vectors then nq queries, one (n + nq) x d array. */
static float *make_data(int64_t n, int nq, int d, int uniform)
{
    int64_t total = n + nq;
    float *x = malloc((size_t)total * d * sizeof *x);
    float *proj = NULL, *centres = NULL;
    int n_centres = n / 100 > 10 ? (int)(n / 100) : 10;

    if (!x)
        die("out of memory", NULL);
    if (!uniform) {
        proj = malloc((size_t)d * LATENT * sizeof *proj);
        centres = malloc((size_t)n_centres * LATENT * sizeof *centres);
        if (!proj || !centres)
            die("out of memory", NULL);
        for (int i = 0; i < d * LATENT; i++)
            proj[i] = grand() / sqrtf(LATENT);
        for (int i = 0; i < n_centres * LATENT; i++)
            centres[i] = grand();
    }
    for (int64_t i = 0; i < total; i++) {
        float *v = x + i * d;
        if (uniform) {
            for (int j = 0; j < d; j++)
                v[j] = grand();
        } else {
            float z[LATENT];
            const float *c = centres + (int64_t)(urand() * n_centres) * LATENT;
            for (int j = 0; j < LATENT; j++)
                z[j] = c[j] + SPREAD * grand();
            for (int a = 0; a < d; a++) {
                float acc = 0;
                for (int j = 0; j < LATENT; j++)
                    acc += proj[a * LATENT + j] * z[j];
                v[a] = acc + NOISE * grand();
            }
        }
        normalize(v, d);
    }
    free(proj);
    free(centres);
    return x;
}

#endif
