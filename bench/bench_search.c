/*
 * bench_search.c -- Flat against HNSW, through the store's own index code
 * (index/ann.c: the same factory strings, efConstruction and efSearch as
 * sn_store_search uses), in-process, no SQLite.
 *
 * For each collection size it builds both indexes, then runs Q single
 * queries one at a time on one OpenMP thread (as the store does) and
 * prints build time, queries/s, p50/p99 latency and recall@10 against the
 * exact answer (Flat, searched in one batch). The numbers decide
 * SN__HNSW_* and SN__AUTO_FLAT_MAX_384 in index/store_int.h.
 *
 * Data (--data):
 *   clustered (default)  what sentence embeddings look like to an index:
 *       low intrinsic dimension and topics. Points are drawn from
 *       n/100 Gaussian clusters in a 48-d latent space (centres N(0,1),
 *       spread 2.0, so clusters overlap), mapped to 384-d by a fixed random
 *       projection, plus isotropic noise (0.1 per coordinate), normalized.
 *       Nearest-neighbour cosines come out around 0.55 against 0.01 for
 *       random pairs, like a MiniLM-class model on a mixed corpus.
 *   uniform  Gaussian vectors, normalized: uniform on the sphere. No
 *       structure at all; the worst case for a graph index (see
 *       bench/README.md: HNSW does not reach 0.95 at 100k
 *       before it becomes slower than Flat).
 * Queries are fresh draws from the same distribution, not database points.
 *
 * Usage: bench_search [--sizes N,N,...] [--1m] [--queries Q] [--dim D]
 *                     [--data clustered|uniform] [--ef-search E,E,...]
 *                     [--ef-construction E] [--build-threads T] [--seed S]
 * Defaults: sizes 10000,100000; Q 1000; D 384; efSearch and
 * efConstruction the store's; build on $OMP_NUM_THREADS threads or
 * every core. --1m adds 1000000
 * (minutes to build, ~2.5 GB of memory).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/error_c.h>

#include "../index/store_int.h"
#include "synth.h"

#define K 10
#define MAX_LIST 16

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "bench_search: %s%s%s\n", what, err ? ": " : "",
            err ? err : "");
    exit(1);
}

/* ---- measuring -------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double qps, p50_ms, p99_ms, recall;
} result_t;

/* Single queries on one thread; recall against gt (nq x K) when given. */
static result_t run_queries(const sn__ann_t *a, const float *q, int nq,
                            int d, const int64_t *gt)
{
    double *lat = malloc((size_t)nq * sizeof *lat), total = 0;
    int64_t labels[K];
    float scores[K];
    int64_t found = 0;
    char err[256];
    result_t r;

    if (!lat)
        die("out of memory", NULL);
    sn__ann_threads(1);
    for (int i = 0; i < nq; i++) {
        double t = now();
        if (sn__ann_search(a, q + (int64_t)i * d, K, scores, labels, err,
                           sizeof err) < 0)
            die("search", err);
        lat[i] = now() - t;
        total += lat[i];
        if (gt)
            for (int x = 0; x < K; x++)
                for (int y = 0; y < K; y++)
                    if (labels[x] >= 0 && labels[x] == gt[i * K + y]) {
                        found++;
                        break;
                    }
    }
    qsort(lat, (size_t)nq, sizeof *lat, cmp_double);
    r.qps = nq / total;
    r.p50_ms = lat[nq / 2] * 1e3;
    r.p99_ms = lat[(int)(nq * 0.99) < nq ? (int)(nq * 0.99) : nq - 1] * 1e3;
    r.recall = gt ? (double)found / ((double)nq * K) : 1.0;
    free(lat);
    return r;
}

static void print_row(const char *name, double build_s, result_t r)
{
    printf("  %-34s %9.2f %10.1f %9.3f %9.3f %9.4f\n", name, build_s, r.qps,
           r.p50_ms, r.p99_ms, r.recall);
}

static int parse_list(const char *s, int64_t *out)
{
    int n = 0;
    while (*s && n < MAX_LIST) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v <= 0)
            die("bad number list", s);
        out[n++] = v;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

int main(int argc, char **argv)
{
    int64_t sizes[MAX_LIST] = {10000, 100000}, efs[MAX_LIST] = {
                                                    SN__HNSW_EF_SEARCH};
    int n_sizes = 2, n_efs = 1, nq = 1000, d = 384, uniform = 0;
    int efc = SN__HNSW_EF_CONSTRUCTION, build_threads = sn__ann_build_threads();
    char err[512];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--1m") && n_sizes < MAX_LIST)
            sizes[n_sizes++] = 1000000;
        else if (!strcmp(a, "--sizes") && v)
            n_sizes = parse_list(v, sizes), i++;
        else if (!strcmp(a, "--ef-search") && v)
            n_efs = parse_list(v, efs), i++;
        else if (!strcmp(a, "--ef-construction") && v)
            efc = atoi(v), i++;
        else if (!strcmp(a, "--queries") && v)
            nq = atoi(v), i++;
        else if (!strcmp(a, "--dim") && v)
            d = atoi(v), i++;
        else if (!strcmp(a, "--build-threads") && v)
            build_threads = atoi(v), i++;
        else if (!strcmp(a, "--seed") && v)
            rng_state ^= strtoull(v, NULL, 10) * 0x2545f4914f6cdd1dull, i++;
        else if (!strcmp(a, "--data") && v)
            uniform = !strcmp(v, "uniform"), i++;
        else {
            fprintf(stderr, "usage: bench_search [--sizes N,N,...] [--1m] "
                    "[--queries Q] [--dim D] [--data clustered|uniform] "
                    "[--ef-search E,E,...] [--ef-construction E] "
                    "[--build-threads T] [--seed S]\n");
            return 2;
        }
    }
    if (nq <= 0 || d <= 0 || efc <= 0 || build_threads <= 0)
        die("bad arguments", NULL);

    printf("bench_search: d=%d data=%s queries=%d k=%d build_threads=%d "
           "search_threads=1 faiss=IDMap,Flat | IDMap2,HNSW%d,Flat\n",
           d, uniform ? "uniform" : "clustered", nq, K, build_threads,
           SN__HNSW_M);
    for (int si = 0; si < n_sizes; si++) {
        int64_t n = sizes[si];
        float *x = make_data(n, nq, d, uniform), *q = x + n * d;
        int64_t *ids = malloc((size_t)n * sizeof *ids);
        int64_t *gt = malloc((size_t)nq * K * sizeof *gt);
        float *gd = malloc((size_t)nq * K * sizeof *gd);
        sn__ann_t *flat = NULL, *hnsw = NULL;
        double t, flat_build, hnsw_build;
        char name[64];

        if (!ids || !gt || !gd)
            die("out of memory", NULL);
        for (int64_t i = 0; i < n; i++)
            ids[i] = i + 1; /* rowids start at 1 */
        printf("\nn=%lld\n  %-34s %9s %10s %9s %9s %9s\n", (long long)n,
               "index", "build_s", "queries/s", "p50_ms", "p99_ms",
               "recall@10");

        sn__ann_threads(build_threads);
        t = now();
        if (sn__ann_new(d, 0, &flat, err, sizeof err) < 0 ||
            sn__ann_add(flat, n, x, ids, err, sizeof err) < 0)
            die("flat", err);
        flat_build = now() - t;
        if (faiss_Index_search(flat->index, nq, q, K, gd, gt))
            die("ground truth", NULL);
        /* Flat is exact: its own recall is 1 by construction. Time fewer
         * queries at 1M, where one takes ~0.2 s. */
        print_row("Flat", flat_build,
                  run_queries(flat, q, n >= 1000000 ? nq / 10 : nq, d, NULL));
        fflush(stdout);
        sn__ann_free(flat);

        sn__ann_threads(build_threads);
        t = now();
        if (sn__ann_new(d, 1, &hnsw, err, sizeof err) < 0)
            die("hnsw", err);
        if (efc != SN__HNSW_EF_CONSTRUCTION) {
            FaissParameterSpace *ps = NULL;
            if (faiss_ParameterSpace_new(&ps) ||
                faiss_ParameterSpace_set_index_parameter(
                    ps, hnsw->index, "efConstruction", efc))
                die("efConstruction", faiss_get_last_error());
            faiss_ParameterSpace_free(ps);
        }
        if (sn__ann_add(hnsw, n, x, ids, err, sizeof err) < 0)
            die("hnsw add", err);
        hnsw_build = now() - t;
        for (int e = 0; e < n_efs; e++) {
            FaissParameterSpace *ps = NULL;
            if (faiss_ParameterSpace_new(&ps) ||
                faiss_ParameterSpace_set_index_parameter(
                    ps, hnsw->index, "efSearch", (double)efs[e]))
                die("efSearch", faiss_get_last_error());
            faiss_ParameterSpace_free(ps);
            snprintf(name, sizeof name, "HNSW%d efC=%d efS=%lld%s",
                     SN__HNSW_M, efc, (long long)efs[e],
                     efc == SN__HNSW_EF_CONSTRUCTION &&
                             efs[e] == SN__HNSW_EF_SEARCH
                         ? " (store)"
                         : "");
            print_row(name, hnsw_build, run_queries(hnsw, q, nq, d, gt));
            fflush(stdout);
        }
        sn__ann_free(hnsw);
        free(x);
        free(ids);
        free(gt);
        free(gd);
    }
    return 0;
}
