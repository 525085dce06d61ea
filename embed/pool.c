/*
 * pool.c -- a fork-join pool: n - 1 helper threads asleep on a condition
 * variable, woken by a generation counter for each job; the caller runs
 * part 0 itself and waits for the others. Used by use_lite.c to split its
 * GEMMs (embed/gemm.c) by panels; bert.c keeps its own pool, whose jobs
 * are tied to its forward pass.
 *
 * Invariants: one job at a time; a helper runs each generation exactly
 * once; the job's function and argument are written before the generation
 * is bumped under the mutex and read after it, so helpers see them. Idle
 * helpers sleep (no spinning), so they never compete with other threads.
 *
 * Tuned for: a few threads and jobs of 0.1 ms and more (a wake-up costs
 * some 10 us); callers run small jobs inline rather than waking helpers.
 */
#include <pthread.h>
#include <stdlib.h>

#include "pool.h"

#define SN_POOL_MAX_THREADS 64

typedef struct {
    sn__pool_t *p;
    int tid;
} helper_t;

struct sn__pool {
    int n_threads; /* helpers + the caller */
    int sync_ok;   /* mutex and condvars initialised */
    int n_running, stop;
    unsigned gen;
    sn__pool_cb fn;
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    pthread_t th[SN_POOL_MAX_THREADS];
    helper_t h[SN_POOL_MAX_THREADS];
};

static void *helper_main(void *arg)
{
    helper_t *h = arg;
    sn__pool_t *p = h->p;
    unsigned seen = 0;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->gen == seen && !p->stop)
            pthread_cond_wait(&p->go, &p->mu);
        if (p->stop)
            break;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        p->fn(p->arg, h->tid, p->n_threads);
        pthread_mutex_lock(&p->mu);
        if (--p->n_running == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

sn__pool_t *sn__pool_new(int n_threads)
{
    sn__pool_t *p = calloc(1, sizeof *p);

    if (!p)
        return NULL;
    p->n_threads = 1;
    if (n_threads > SN_POOL_MAX_THREADS)
        n_threads = SN_POOL_MAX_THREADS;
    if (n_threads < 2)
        return p;
    if (pthread_mutex_init(&p->mu, NULL))
        return p; /* no helpers; still a working pool */
    if (pthread_cond_init(&p->go, NULL)) {
        pthread_mutex_destroy(&p->mu);
        return p;
    }
    if (pthread_cond_init(&p->done, NULL)) {
        pthread_cond_destroy(&p->go);
        pthread_mutex_destroy(&p->mu);
        return p;
    }
    p->sync_ok = 1;
    /* helpers read n_threads only for jobs, and jobs start after this */
    for (int i = 1; i < n_threads; i++) {
        p->h[i].p = p;
        p->h[i].tid = i;
        if (pthread_create(&p->th[i], NULL, helper_main, &p->h[i]))
            break;
        p->n_threads = i + 1;
    }
    return p;
}

void sn__pool_free(sn__pool_t *p)
{
    if (!p)
        return;
    if (p->sync_ok) {
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        pthread_cond_broadcast(&p->go);
        pthread_mutex_unlock(&p->mu);
        for (int i = 1; i < p->n_threads; i++)
            pthread_join(p->th[i], NULL);
        pthread_cond_destroy(&p->done);
        pthread_cond_destroy(&p->go);
        pthread_mutex_destroy(&p->mu);
    }
    free(p);
}

int sn__pool_threads(const sn__pool_t *p) { return p ? p->n_threads : 1; }

void sn__pool_run(sn__pool_t *p, sn__pool_cb fn, void *arg)
{
    if (!p || p->n_threads < 2) {
        fn(arg, 0, 1);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->n_running = p->n_threads - 1;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n_threads);
    pthread_mutex_lock(&p->mu);
    while (p->n_running)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
