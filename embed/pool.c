/*
 * pool.c -- a fork-join pool: n - 1 helper threads woken by a generation
 * counter for each job; the caller runs part 0 itself and waits for the
 * others. Used by bert.c (each forward-pass step) and use_lite.c (GEMMs
 * split by panels, attention by (text, head) pairs).
 *
 * Waiting. A forward pass is dozens of jobs a few to a few hundred
 * microseconds apart; a condition-variable wake-up costs 10-30 us, which
 * at batch 1 is a third of the time. So a helper that finishes a job
 * spins on the generation for up to SN_POOL_SPIN_NS before it sleeps on
 * the condition variable, and the caller spins as long for the helpers
 * to finish. Idle pools therefore sleep within that time and never
 * compete with other threads for longer (OpenBLAS's idle threads spin for
 * ~100 ms).
 *
 * Invariants: one job at a time; a helper runs each generation exactly
 * once; the job's function and argument are written before the
 * generation is bumped (a release store, under the mutex so that sleeping
 * helpers cannot miss it) and read after it is seen (acquire). n_running
 * counts helpers still in the job; the one that brings it to zero
 * signals `done` under the mutex, so a caller asleep on it wakes.
 *
 * Tuned for: 2 to a few threads, jobs of 5 us to tens of ms; callers run
 * jobs too small to pay for a hand-off inline.
 */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "pool.h"

#define SN_POOL_MAX_THREADS 64
#define SN_POOL_SPIN_NS 200000 /* spin before sleeping: 0.2 ms */

typedef struct {
    sn__pool_t *p;
    int tid;
} helper_t;

struct sn__pool {
    int n_threads; /* helpers + the caller */
    int sync_ok;   /* mutex and condvars initialised */
    int n_running, stop; /* atomics */
    unsigned gen;        /* atomic; written under mu */
    int n_sleeping;      /* under mu: helpers waiting on go */
    sn__pool_cb fn;
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    pthread_t th[SN_POOL_MAX_THREADS];
    helper_t h[SN_POOL_MAX_THREADS];
};

static void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Spin until *v != not (ne) or == want (!ne), at most SN_POOL_SPIN_NS;
 * 1 when it happened. */
static int spin_until(const int *v, int x, int ne)
{
    long long end = 0;
    for (unsigned i = 0;; i++) {
        int cur = __atomic_load_n(v, __ATOMIC_ACQUIRE);
        if (ne ? cur != x : cur == x)
            return 1;
        if ((i & 255) == 255) {
            long long t = now_ns();
            if (!end)
                end = t + SN_POOL_SPIN_NS;
            else if (t > end)
                return 0;
        }
        relax();
    }
}

static void *helper_main(void *arg)
{
    helper_t *h = arg;
    sn__pool_t *p = h->p;
    unsigned seen = 0;

    for (;;) {
        if (!spin_until((const int *)&p->gen, (int)seen, 1) &&
            !__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) {
            pthread_mutex_lock(&p->mu);
            p->n_sleeping++;
            while (__atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) == seen &&
                   !__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE))
                pthread_cond_wait(&p->go, &p->mu);
            p->n_sleeping--;
            pthread_mutex_unlock(&p->mu);
        }
        if (__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE))
            break;
        seen = __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE);
        p->fn(p->arg, h->tid, p->n_threads);
        if (__atomic_sub_fetch(&p->n_running, 1, __ATOMIC_ACQ_REL) == 0) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
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
        __atomic_store_n(&p->stop, 1, __ATOMIC_RELEASE);
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
    p->fn = fn;
    p->arg = arg;
    __atomic_store_n(&p->n_running, p->n_threads - 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&p->mu);
    __atomic_add_fetch(&p->gen, 1, __ATOMIC_RELEASE);
    if (p->n_sleeping)
        pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n_threads);
    if (spin_until(&p->n_running, 0, 0))
        return;
    pthread_mutex_lock(&p->mu);
    while (__atomic_load_n(&p->n_running, __ATOMIC_ACQUIRE))
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
