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
#include <unistd.h>

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/error_c.h>

#include "../index/hnsw.h"
#include "../index/ivf.h"
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

/* Exact scores of n candidates (labels are 1-based rows of x), best
 * first: the store's rerank of an SQ8 index, with x for SQLite. */
static void rerank(const float *q, int d, const float *x, float *scores,
                   int64_t *labels, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double s = 0;
        if (labels[i] < 1) {
            scores[i] = -INFINITY;
            continue;
        }
        for (int j = 0; j < d; j++)
            s += (double)q[j] * x[(labels[i] - 1) * d + j];
        scores[i] = (float)s;
    }
    for (int64_t i = 1; i < n; i++) /* insertion sort: n is small */
        for (int64_t j = i; j > 0 && scores[j] > scores[j - 1]; j--) {
            float ts = scores[j];
            int64_t tl = labels[j];
            scores[j] = scores[j - 1];
            labels[j] = labels[j - 1];
            scores[j - 1] = ts;
            labels[j - 1] = tl;
        }
}

/* Single queries on one thread with beam ef (0: the store's rule);
 * recall against gt (nq x K) when given. An SQ8 index is searched for
 * K * SN__SQ8_RERANK candidates, rescored exactly against the float
 * vectors x and cut to K, as the store does from SQLite. */
static result_t run_queries(const sn__ann_t *a, const float *q, int nq,
                            int d, int64_t ef, const float *x,
                            const int64_t *gt)
{
    double *lat = malloc((size_t)nq * sizeof *lat), total = 0;
    enum { R = K * SN__SQ8_RERANK };
    int64_t labels[R], n_ask = a->approx ? R : K;
    float scores[R];
    int64_t found = 0;
    char err[256];
    result_t r;

    if (!lat)
        die("out of memory", NULL);
    sn__ann_threads(1);
    for (int i = 0; i < nq; i++) {
        const float *qi = q + (int64_t)i * d;
        double t = now();
        if (sn__ann_search(a, qi, n_ask, ef, scores, labels, err,
                           sizeof err) < 0)
            die("search", err);
        if (a->approx)
            rerank(qi, d, x, scores, labels, n_ask);
        lat[i] = now() - t;
        total += lat[i];
        if (gt)
            for (int u = 0; u < K; u++)
                for (int v = 0; v < K; v++)
                    if (labels[u] >= 0 && labels[u] == gt[i * K + v]) {
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

/* CPU seconds of this process, every thread (the build's cost apart from
 * what else the machine runs). */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void print_row(const char *name, double build_s, double cpu_s,
                      double bpv, double rss_mib, result_t r)
{
    printf("  %-30s %8.1f %7.1f %6.0f %8.0f %9.1f %8.3f %8.3f %9.4f\n",
           name, build_s, cpu_s, bpv, rss_mib, r.qps, r.p50_ms, r.p99_ms,
           r.recall);
    fflush(stdout);
}

static int parse_list(const char *s, int64_t *out)
{
    int n = 0;
    while (*s && n < MAX_LIST) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || v < 0)
            die("bad number list", s);
        out[n++] = v;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

/* Resident memory of this process (MiB). */
static double rss_mib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * (double)sysconf(_SC_PAGESIZE) / 1048576.0;
}

static const struct {
    const char *name;
    int kind;
} KINDS[] = {
    {"flat", SN__ANN_FLAT},
    {"faiss", SN__ANN_HNSW_FAISS},
    {"hnsw", SN__ANN_HNSW},
    {"sq8", SN__ANN_HNSW_SQ8},
    {"ivf", SN__ANN_IVF},
};
#define N_KINDS (int)(sizeof KINDS / sizeof *KINDS)

int main(int argc, char **argv)
{
    int64_t sizes[MAX_LIST] = {10000, 100000}, efs[MAX_LIST] = {0};
    int n_sizes = 2, n_efs = 1, nq = 1000, d = 384, uniform = 0;
    int efc = 0, m = 0, build_threads = sn__ann_build_threads();
    int want[N_KINDS] = {1, 1, 1, 1, 0}, lists = 0;
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
        else if (!strcmp(a, "--m") && v)
            m = atoi(v), i++;
        else if (!strcmp(a, "--lists") && v)
            lists = atoi(v), i++;
        else if (!strcmp(a, "--kinds") && v) {
            for (int k = 0; k < N_KINDS; k++)
                want[k] = strstr(v, KINDS[k].name) != NULL;
            i++;
        } else if (!strcmp(a, "--queries") && v)
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
                    "[--kinds flat,faiss,hnsw,sq8,ivf] [--ef-search E,E,...] "
                    "[--ef-construction E] [--m M] [--lists L] "
                    "[--build-threads T] "
                    "[--seed S]\n");
            return 2;
        }
    }
    if (nq <= 0 || d <= 0 || efc < 0 || m < 0 || build_threads <= 0)
        die("bad arguments", NULL);

    printf("bench_search: d=%d data=%s queries=%d k=%d build_threads=%d "
           "search_threads=1; faiss: IDMap2,HNSW%d,Flat efC %d; hnsw/sq8: "
           "hnswlib M %d efC %d (ef 0: the store's rule)\n",
           d, uniform ? "uniform" : "clustered", nq, K, build_threads,
           SN__HNSW_M, efc ? efc : SN__HNSW_EF_CONSTRUCTION,
           m ? m : SN__GRAPH_M, efc ? efc : SN__GRAPH_EF_CONSTRUCTION);
    for (int si = 0; si < n_sizes; si++) {
        int64_t n = sizes[si];
        float *x = make_data(n, nq, d, uniform), *q = x + n * d;
        int64_t *ids = malloc((size_t)n * sizeof *ids);
        int64_t *gt = malloc((size_t)nq * K * sizeof *gt);
        float *gd = malloc((size_t)nq * K * sizeof *gd);
        sn__ann_t *flat = NULL;
        double t, flat_build;

        if (!ids || !gt || !gd)
            die("out of memory", NULL);
        for (int64_t i = 0; i < n; i++)
            ids[i] = i + 1; /* rowids start at 1 */
        printf("\nn=%lld (rule: ef %lld)\n  %-30s %8s %7s %6s %8s %9s %8s "
               "%8s %9s\n", (long long)n, (long long)sn__ann_ef(n, K),
               "index", "build_s", "cpu_s", "B/vec", "RSS_MiB", "queries/s", "p50_ms",
               "p99_ms", "recall@10");

        sn__ann_threads(build_threads);
        double rss0 = rss_mib(), c0 = cpu_now();
        t = now();
        if (sn__ann_new(d, SN__ANN_FLAT, &flat, err, sizeof err) < 0 ||
            sn__ann_add(flat, n, x, ids, err, sizeof err) < 0)
            die("flat", err);
        flat_build = now() - t;
        if (faiss_Index_search(flat->index, nq, q, K, gd, gt))
            die("ground truth", NULL);
        /* Flat is exact: its own recall is 1 by construction. Time fewer
         * queries at 1M, where one takes ~50 ms. */
        if (want[0])
            print_row("Flat", flat_build, cpu_now() - c0,
                      (double)sn__ann_bytes_per_vector(flat),
                      rss_mib() - rss0,
                      run_queries(flat, q, n >= 1000000 ? nq / 10 : nq, d, 0,
                                  x, NULL));
        sn__ann_free(flat);

        for (int k = 1; k < N_KINDS; k++) {
            sn__ann_t *a = NULL;
            char name[64];
            if (!want[k])
                continue;
            sn__ann_threads(build_threads);
            rss0 = rss_mib();
            c0 = cpu_now();
            t = now();
            if (sn__ann_new(d, KINDS[k].kind, &a, err, sizeof err) < 0)
                die(KINDS[k].name, err);
            sn__ann_expect(a, n); /* as the store's builds do */
            if (a->ivf && lists)
                sn__ivf_expect(a->ivf, n, lists);
            if (a->graph && (m || efc)) { /* tuning: another graph */
                sn__hnsw_free(a->graph);
                a->graph = NULL;
                if (sn__hnsw_new(d, a->approx, m ? m : SN__GRAPH_M,
                                 efc ? efc : SN__GRAPH_EF_CONSTRUCTION,
                                 &a->graph, err, sizeof err) < 0)
                    die(KINDS[k].name, err);
            } else if (!a->graph && !a->ivf && efc) {
                FaissParameterSpace *ps = NULL;
                if (faiss_ParameterSpace_new(&ps) ||
                    faiss_ParameterSpace_set_index_parameter(
                        ps, a->index, "efConstruction", efc))
                    die("efConstruction", faiss_get_last_error());
                faiss_ParameterSpace_free(ps);
            }
            if (sn__ann_add(a, n, x, ids, err, sizeof err) < 0)
                die(KINDS[k].name, err);
            double build = now() - t, rss = rss_mib() - rss0;
            double cpu = cpu_now() - c0;
            for (int e = 0; e < n_efs; e++) {
                int64_t ef = efs[e];
                if (!a->graph && !a->ivf) { /* faiss keeps its own */
                    FaissParameterSpace *ps = NULL;
                    double v = ef ? (double)ef : SN__HNSW_EF_SEARCH;
                    if (faiss_ParameterSpace_new(&ps) ||
                        faiss_ParameterSpace_set_index_parameter(
                            ps, a->index, "efSearch", v))
                        die("efSearch", faiss_get_last_error());
                    faiss_ParameterSpace_free(ps);
                    ef = (int64_t)v;
                }
                snprintf(name, sizeof name, "%s %s %lld%s", KINDS[k].name,
                         a->ivf ? "nprobe" : "ef",
                         (long long)(ef ? ef : sn__ann_default_ef(a, K)),
                         efs[e] ? "" : " (rule)");
                print_row(name, build, cpu,
                          (double)sn__ann_bytes_per_vector(a),
                          rss, run_queries(a, q, nq, d, ef, x, gt));
            }
            sn__ann_free(a);
        }
        free(x);
        free(ids);
        free(gt);
        free(gd);
    }
    return 0;
}
