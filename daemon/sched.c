/*
 * sched.c -- where the daemon's CPU and storage work runs.
 *
 * The encoder workers (sn__sched_*): N threads, each with its own sn_ctx_t,
 * share one queue of texts. A job (an embed request's texts, an add
 * request's chunks, a search query) puts its texts on the queue; a free
 * worker takes texts that share the head's options (prompt, dimensions,
 * token states) up to the token budget, across jobs and connections, and
 * encodes them in one sn_model_embed() call. sn_model_embed() packs texts
 * without padding, so a text's vector does not depend on the batch it
 * landed in. When a batch fails (a text the tokenizer refuses), its texts
 * are retried one by one so that only the bad text's job fails. A job's
 * `done` runs once, on the worker that finished its last text. Jobs with a
 * `prepare` step (chunking a document) run it on a worker before their
 * texts are queued. Jobs with a `run` step (word senses: the library
 * encodes and scores by itself) share that queue: a worker calls run()
 * with its own sn_ctx_t, then done(); they have no texts to batch. Which
 * client's step or batch comes next is in "Fairness" below.
 *
 * When to start a batch (continuous batching): requests that arrive while
 * the workers are busy wait in the queue and form the next batch, so under
 * load batches fill by themselves. A free worker that finds texts queued
 * starts at once, unless it has evidence that more requests are about to
 * arrive; then it holds the batch until at most the window (window_us,
 * --batch-wait-us, 2 ms by default) after the oldest queued text arrived:
 * no text is held longer than that for others, and texts that queued
 * behind a busy worker, having waited already, are not held at all.
 * The evidence is `expect`: how many jobs the last batch held (requests
 * that arrived together: a lone client's batches hold one; N clients in
 * lockstep come back together after their replies), capped by the open
 * connections (a connection's pipelined requests arrive in one read, so
 * waiting is for other connections only). The worker starts as soon as
 * the queue holds `expect` jobs, or a batch's worth of tokens or texts, or
 * a step is waiting, or the window ends. So a lone client never waits
 * (one job queued, one expected); N concurrent clients wait only for each
 * other, for no longer than the window, and when some of them go away the
 * batch that times out holds fewer jobs and lowers `expect` (one window
 * lost per drop in concurrency). With several workers, the free ones share
 * `expect` (each waits for its part, rounded up), so that N clients keep
 * every worker busy instead of waiting to form one batch for one of them. Waiting costs no CPU on the cores the
 * clients and the loop need to send the requests being waited for; not
 * waiting (window 0) starts the first arrival alone and batches the rest
 * behind it, which keeps throughput but splits lockstep clients into a
 * small batch and a large one.
 *
 * The storage lane (sn__lane_*): one thread, because SQLite writes are
 * serialized anyway and the store's calls hold its mutex. Tasks run in
 * submission order, except that tasks of one sn__order_t (a connection) run
 * in ticket order: a task whose ticket is not due waits in `held` until the
 * earlier ones have run. Every ticket that is issued must reach the lane
 * (ops.c routes failed requests through it too), or later ones would wait
 * forever. The lane advances a ticket before running its task, because a
 * task's completion may free its connection, order included -- except for a
 * task with keep_turn, whose request is not complete when run() returns:
 * its turn ends when it is submitted again without keep_turn.
 *
 * Fairness: all encoder work waits in one queue per client (job->client:
 * a connection, or whatever a transport calls a client): its texts, its
 * urgent texts (a search's query: one short text that a person is waiting
 * on) and its steps (jobs with a `prepare` or `run`: chunking an add, word
 * senses). The clients with work form a ring, and the ring has a turn: a
 * free worker looks at the client whose turn it is and runs that client's
 * oldest step if it has one, or else starts a batch there. A batch is dealt
 * from the clients in turn: first one urgent text from each client that
 * has one, then one text from each client (its urgent texts first), round
 * and round until the budget is full, all sharing the options of the first
 * text taken. Either way the turn moves one client on. So a client that
 * queued thousands of texts or steps takes its share, and a lone request
 * that arrives behind it runs in the next unit of work (a batch or a step)
 * or the one after: it waits at most one unit per other busy client. Each
 * job counts the units that started while it waited (n_ahead: logged with
 * its request, which is how the tests check this).
 *
 * Tuned for: a few cores, requests of 1..1000 short texts, and latency of a
 * lone request close to one forward pass.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon.h"

#define SN_SCHED_MAX_WORKERS 64
#define SN_SCHED_MAX_BATCH 256 /* texts per forward call */

typedef struct item {
    sn__job_t *job;
    int i_text;
    int est;           /* estimated tokens */
    struct item *next;
} item_t;

/* One client's queued work, each kind in order; on the ring while it has
 * any. */
typedef struct client_q {
    const void *key;
    item_t *head, *tail;          /* texts */
    item_t *uhead, *utail;        /* urgent texts */
    sn__job_t *steps, *steps_tail; /* jobs with a prepare or run step */
    struct client_q *next, *prev; /* the ring */
} client_q_t;

typedef struct {
    sn__sched_t *s;
    sn_ctx_t *ctx;
    item_t *batch[SN_SCHED_MAX_BATCH];
    const char *texts[SN_SCHED_MAX_BATCH];
    size_t lens[SN_SCHED_MAX_BATCH];
    sn_embedding_t out[SN_SCHED_MAX_BATCH];
    int n_batch;
} worker_t;

struct sn__sched {
    const sn_model_t *model;
    sn__sched_opts_t o;
    int max_tokens;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    client_q_t *ring;  /* clients with work queued; whose turn it is */
    client_q_t *spare; /* freed client queues, for reuse */
    uint64_t n_batches;
    uint64_t n_units;  /* batches and steps started */
    int n_items;
    int n_urgent;      /* of n_items, urgent */
    int n_jobs;        /* jobs with texts in the queue */
    int n_expect;      /* jobs the last batch held (arrived together) */
    int n_busy;        /* workers running a batch or a job's step */
    long queued_tokens;
    int n_steps;       /* jobs waiting for their prepare or run step */
    int stop;
    int n_threads;
    pthread_t th[SN_SCHED_MAX_WORKERS];
    worker_t w[SN_SCHED_MAX_WORKERS];
};

void sn__job_free_out(sn__job_t *job)
{
    if (!job->out)
        return;
    for (int i = 0; i < job->n; i++)
        sn_embedding_free(&job->out[i]);
    free(job->out);
    job->out = NULL;
}

static int same_opts(const sn_embed_opts_t *a, const sn_embed_opts_t *b)
{
    return a->prompt == b->prompt && a->dimensions == b->dimensions &&
           a->want_tokens == b->want_tokens;
}

/* The queue of a job's client (mu held): the one on the ring, or a new one
 * put on the ring just before the turn (so its turn comes last in this
 * round). NULL when out of memory. */
static client_q_t *client_of(sn__sched_t *s, const sn__job_t *job)
{
    client_q_t *q = s->ring;
    if (q)
        do {
            if (q->key == job->client)
                return q;
            q = q->next;
        } while (q != s->ring);
    if ((q = s->spare))
        s->spare = q->next;
    else if (!(q = malloc(sizeof *q)))
        return NULL;
    memset(q, 0, sizeof *q);
    q->key = job->client;
    if (s->ring) {
        q->next = s->ring;
        q->prev = s->ring->prev;
        q->prev->next = q;
        s->ring->prev = q;
    } else {
        q->next = q->prev = q;
        s->ring = q;
    }
    return q;
}

static int has_work(const client_q_t *q)
{
    return q->head || q->uhead || q->steps;
}

/* A client's queue ran empty (mu held): off the ring. */
static void client_drop(sn__sched_t *s, client_q_t *q)
{
    if (q->next == q) {
        s->ring = NULL;
    } else {
        q->prev->next = q->next;
        q->next->prev = q->prev;
        if (s->ring == q)
            s->ring = q->next;
    }
    q->next = s->spare;
    s->spare = q;
}

/* The turn moves on from `from` to the next client with work; the clients
 * left without any leave the ring (mu held). */
static void turn_advance(sn__sched_t *s, client_q_t *from)
{
    client_q_t *next = NULL, *q = from;
    do {
        q = q->next;
        if (has_work(q)) {
            next = q;
            break;
        }
    } while (q != from);
    if (!next) {
        while (s->ring)
            client_drop(s, s->ring);
        return;
    }
    for (q = next->next; q != next;) {
        client_q_t *after = q->next;
        if (!has_work(q))
            client_drop(s, q);
        q = after;
    }
    s->ring = next;
}

/* Put the job's texts on its client's queue (mu held). 0, or -ENOMEM. */
static int enqueue_locked(sn__sched_t *s, sn__job_t *job, item_t *items)
{
    client_q_t *q = client_of(s, job);
    if (!q)
        return -ENOMEM;
    item_t **head = job->urgent ? &q->uhead : &q->head;
    item_t **tail = job->urgent ? &q->utail : &q->tail;
    job->items = items;
    job->n_left = job->n;
    job->n_queued = job->n;
    job->unit_q = s->n_units;
    s->n_jobs++;
    job->t_enq = sn__now_ns();
    for (int i = 0; i < job->n; i++) {
        item_t *it = &items[i];
        size_t est = 2 + job->lens[i] / 3;
        it->job = job;
        it->i_text = i;
        it->est = est > (size_t)s->max_tokens ? s->max_tokens : (int)est;
        it->next = NULL;
        if (*tail)
            (*tail)->next = it;
        else
            *head = it;
        *tail = it;
        s->n_items++;
        s->n_urgent += job->urgent != 0;
        s->queued_tokens += it->est;
    }
    pthread_cond_broadcast(&s->cv);
    return 0;
}

/* When the oldest queued text arrived (mu held; some text is queued). */
static int64_t oldest_locked(const sn__sched_t *s)
{
    int64_t t = INT64_MAX;
    const client_q_t *q = s->ring;
    if (q)
        do {
            if (q->head && q->head->job->t_enq < t)
                t = q->head->job->t_enq;
            if (q->uhead && q->uhead->job->t_enq < t)
                t = q->uhead->job->t_enq;
            q = q->next;
        } while (q != s->ring);
    return t;
}

/* Allocate results and queue the texts; a job that cannot start is done
 * at once (on the calling thread). */
static void enqueue(sn__sched_t *s, sn__job_t *job)
{
    item_t *items = NULL;
    if (job->rc || job->n == 0)
        goto done;
    job->out = calloc((size_t)job->n, sizeof *job->out);
    items = malloc((size_t)job->n * sizeof *items);
    if (!job->out || !items) {
        free(items);
        job->rc = -ENOMEM;
        snprintf(job->err, sizeof job->err, "out of memory");
        goto done;
    }
    pthread_mutex_lock(&s->mu);
    int rc = enqueue_locked(s, job, items);
    pthread_mutex_unlock(&s->mu);
    if (rc == 0)
        return;
    free(items);
    job->items = NULL;
    job->rc = rc;
    snprintf(job->err, sizeof job->err, "out of memory");
done:
    job->done(job);
}

void sn__sched_submit(sn__sched_t *s, sn__job_t *job)
{
    job->rc = 0;
    job->err[0] = '\0';
    job->out = NULL;
    job->items = NULL;
    job->n_ahead = 0;
    if (job->prepare || job->run) {
        pthread_mutex_lock(&s->mu);
        client_q_t *q = client_of(s, job);
        if (q) {
            job->next = NULL;
            job->unit_q = s->n_units;
            if (q->steps_tail)
                q->steps_tail->next = job;
            else
                q->steps = job;
            q->steps_tail = job;
            s->n_steps++;
            pthread_cond_broadcast(&s->cv);
        }
        pthread_mutex_unlock(&s->mu);
        if (q)
            return;
        /* the step's failure is the job's: its done() replies */
        job->rc = -ENOMEM;
        snprintf(job->err, sizeof job->err, "out of memory");
        if (job->run)
            job->run(job, NULL);
        job->done(job);
        return;
    }
    enqueue(s, job);
}

int sn__sched_depth(sn__sched_t *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->n_items + s->n_steps;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* Take the next text of client q into the batch: an urgent one if it has
 * any (mu held). */
static void take_item(sn__sched_t *s, worker_t *w, client_q_t *q,
                      long *tokens, int *n_jobs)
{
    int urgent = q->uhead != NULL;
    item_t **head = urgent ? &q->uhead : &q->head;
    item_t *it = *head;
    *head = it->next;
    if (!*head) {
        if (urgent)
            q->utail = NULL;
        else
            q->tail = NULL;
    }
    it->next = NULL;
    s->n_items--;
    s->n_urgent -= urgent;
    s->queued_tokens -= it->est;
    *tokens += it->est;
    if (it->job->n_queued == it->job->n) /* its first text taken */
        it->job->n_ahead += (int)(s->n_units - 1 - it->job->unit_q);
    if (--it->job->n_queued == 0)
        s->n_jobs--;
    if (it->job->stamp != s->n_batches) {
        it->job->stamp = s->n_batches;
        ++*n_jobs;
    }
    w->batch[w->n_batch++] = it;
}

static const item_t *next_item(const client_q_t *q)
{
    return q->uhead ? q->uhead : q->head;
}

static int fits(const sn__sched_t *s, const worker_t *w, const item_t *it,
                const sn_embed_opts_t *key, long tokens)
{
    return it && w->n_batch < SN_SCHED_MAX_BATCH &&
           same_opts(&it->job->opts, key) &&
           (w->n_batch == 0 || tokens + it->est <= s->o.batch_tokens);
}

/* Take a batch at the turn's client (mu held; some text is queued): dealt
 * as the top says, texts sharing the options of the first one -- the
 * turn's urgent text, else any client's, else the turn's text -- up to the
 * token budget, at least one. The turn moves on. */
static void take_batch(sn__sched_t *s, worker_t *w)
{
    client_q_t *start = s->ring, *q;
    const sn_embed_opts_t *key = NULL;
    long tokens = 0;
    int n_jobs = 0;

    s->n_batches++;
    s->n_units++;
    w->n_batch = 0;
    q = start;
    if (s->n_urgent)
        do {
            if (q->uhead) {
                key = &q->uhead->job->opts;
                break;
            }
            q = q->next;
        } while (q != start);
    if (!key) {
        for (q = start; !q->head; q = q->next)
            ; /* a text is queued: some client has one */
        key = &q->head->job->opts;
    }
    q = start;
    if (s->n_urgent)
        do {
            if (q->uhead && fits(s, w, q->uhead, key, tokens))
                take_item(s, w, q, &tokens, &n_jobs);
            q = q->next;
        } while (q != start);
    for (int progress = 1; progress;) {
        progress = 0;
        q = start;
        do {
            if (fits(s, w, next_item(q), key, tokens)) {
                take_item(s, w, q, &tokens, &n_jobs);
                progress = 1;
            }
            q = q->next;
        } while (q != start);
    }
    turn_advance(s, start);
    s->n_expect = n_jobs;
}

/* The oldest step of the turn's client (mu held; it has one). The turn
 * moves on. */
static sn__job_t *take_step(sn__sched_t *s)
{
    client_q_t *q = s->ring;
    sn__job_t *job = q->steps;
    q->steps = job->next;
    if (!q->steps)
        q->steps_tail = NULL;
    job->next = NULL;
    s->n_steps--;
    job->n_ahead += (int)(s->n_units - job->unit_q);
    s->n_units++;
    turn_advance(s, q);
    return job;
}

/* How many jobs a free worker waits for (mu held): as many as the last
 * batch held, but no more than there are connections to send them, shared
 * among the free workers. */
static int expected_jobs(const sn__sched_t *s)
{
    int n = s->n_expect, n_free = s->o.n_workers - s->n_busy;
    if (s->o.n_conns) {
        int n_conns = __atomic_load_n(s->o.n_conns, __ATOMIC_RELAXED);
        if (n_conns < n)
            n = n_conns;
    }
    return n_free > 1 ? (n + n_free - 1) / n_free : n;
}

static void record_failure(sn__sched_t *s, sn__job_t *job, int i_text,
                           int rc, const char *err)
{
    /* "text 0: invalid utf-8 ..." from a one-text call: drop the prefix,
     * the job knows which text it was */
    const char *msg = err;
    if (!strncmp(msg, "text ", 5)) {
        const char *colon = strchr(msg, ':');
        if (colon && colon[1] == ' ')
            msg = colon + 2;
    }
    pthread_mutex_lock(&s->mu);
    if (!job->rc) {
        job->rc = rc;
        snprintf(job->err, sizeof job->err, "text %d: %.400s", i_text, msg);
    }
    pthread_mutex_unlock(&s->mu);
}

static void run_batch(sn__sched_t *s, worker_t *w)
{
    char err[512];
    int n = w->n_batch, rc;
    const sn_embed_opts_t *opts = &w->batch[0]->job->opts;
    sn__job_t *finished[SN_SCHED_MAX_BATCH];
    int n_finished = 0, n_jobs = 0;
    int64_t t0 = sn__now_ns();

    for (int i = 0; i < n; i++) {
        w->texts[i] = w->batch[i]->job->texts[w->batch[i]->i_text];
        w->lens[i] = w->batch[i]->job->lens[w->batch[i]->i_text];
    }
    rc = sn_model_embed(s->model, w->ctx, w->texts, w->lens, n, opts, w->out,
                        err, sizeof err);
    if (rc) {
        /* one by one: only the bad texts' jobs fail */
        for (int i = 0; i < n; i++) {
            rc = sn_model_embed(s->model, w->ctx, &w->texts[i], &w->lens[i],
                                1, opts, &w->out[i], err, sizeof err);
            if (rc) {
                memset(&w->out[i], 0, sizeof w->out[i]);
                record_failure(s, w->batch[i]->job, w->batch[i]->i_text, rc,
                               err);
            }
        }
    }
    for (int i = 0; i < n; i++) {
        w->batch[i]->job->out[w->batch[i]->i_text] = w->out[i];
        n_jobs += i == 0 || w->batch[i]->job != w->batch[i - 1]->job;
    }
    sn__log_debug("worker %d: batch of %d texts (%d jobs), %.1f ms",
                  (int)(w - s->w), n, n_jobs,
                  (double)(sn__now_ns() - t0) / 1e6);
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < n; i++) {
        sn__job_t *job = w->batch[i]->job;
        if (--job->n_left == 0)
            finished[n_finished++] = job;
    }
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < n_finished; i++) {
        free(finished[i]->items);
        finished[i]->items = NULL;
        finished[i]->done(finished[i]);
    }
}

static void deadline_ts(int64_t ns, struct timespec *ts)
{
    ts->tv_sec = (time_t)(ns / 1000000000);
    ts->tv_nsec = (long)(ns % 1000000000);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    sn__sched_t *s = w->s;
    int64_t window = (int64_t)s->o.window_us * 1000;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (!s->n_items && !s->n_steps) {
            if (s->stop)
                break;
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        /* texts only, and more requests expected: let the batch fill,
         * until they are here, the budget is, or the window ends (see the
         * top) */
        int64_t deadline = s->n_items ? oldest_locked(s) + window : 0;
        while (s->n_items && !s->stop && !s->n_steps &&
               s->n_jobs < expected_jobs(s) &&
               s->queued_tokens < s->o.batch_tokens &&
               s->n_items < SN_SCHED_MAX_BATCH && sn__now_ns() < deadline) {
            struct timespec ts;
            deadline_ts(deadline, &ts);
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        }
        if (!s->ring)
            continue;
        if (s->ring->steps) { /* the turn's client has a step */
            sn__job_t *job = take_step(s);
            s->n_busy++;
            pthread_mutex_unlock(&s->mu);
            if (job->run) {
                job->run(job, w->ctx);
                job->done(job);
            } else {
                job->prepare(job);
                enqueue(s, job);
            }
            pthread_mutex_lock(&s->mu);
            s->n_busy--;
            continue;
        }
        take_batch(s, w); /* the turn's client has texts */
        s->n_busy++;
        pthread_mutex_unlock(&s->mu);
        run_batch(s, w);
        pthread_mutex_lock(&s->mu);
        s->n_busy--;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int sn__sched_start(const sn_model_t *model, const sn__sched_opts_t *opts,
                    sn__sched_t **out, char *err, size_t err_len)
{
    sn__sched_t *s = calloc(1, sizeof *s);
    pthread_condattr_t ca;
    int rc = 0, mu_ok = 0, cv_ok = 0;

    *out = NULL;
    if (!s)
        return sn__derr(err, err_len, -ENOMEM, "out of memory");
    s->model = model;
    s->o = *opts;
    if (s->o.n_workers < 1)
        s->o.n_workers = 1;
    if (s->o.n_workers > SN_SCHED_MAX_WORKERS)
        s->o.n_workers = SN_SCHED_MAX_WORKERS;
    if (s->o.batch_tokens < 1)
        s->o.batch_tokens = 1;
    if (s->o.window_us < 0)
        s->o.window_us = 0;
    s->n_expect = 1;
    s->max_tokens = sn_model_max_tokens(model);
    if (s->max_tokens < 1)
        s->max_tokens = 512;
    if (pthread_mutex_init(&s->mu, NULL)) {
        rc = sn__derr(err, err_len, -EAGAIN, "cannot create a mutex");
        goto fail;
    }
    mu_ok = 1;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_cond_init(&s->cv, &ca)) {
        pthread_condattr_destroy(&ca);
        rc = sn__derr(err, err_len, -EAGAIN, "cannot create a condition");
        goto fail;
    }
    pthread_condattr_destroy(&ca);
    cv_ok = 1;
    for (int i = 0; i < s->o.n_workers; i++) {
        s->w[i].s = s;
        s->w[i].ctx = sn_ctx_new(model);
        if (!s->w[i].ctx) {
            rc = sn__derr(err, err_len, -ENOMEM,
                          "out of memory for encoder context %d", i);
            goto fail;
        }
    }
    for (int i = 0; i < s->o.n_workers; i++) {
        int e = pthread_create(&s->th[i], NULL, worker_main, &s->w[i]);
        if (e) {
            rc = sn__derr(err, err_len, -e, "cannot start worker %d: %s", i,
                          strerror(e));
            goto fail;
        }
        s->n_threads++;
    }
    *out = s;
    return 0;
fail:
    if (s->n_threads) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        for (int i = 0; i < s->n_threads; i++)
            pthread_join(s->th[i], NULL);
    }
    for (int i = 0; i < s->o.n_workers; i++)
        sn_ctx_free(s->w[i].ctx);
    if (cv_ok)
        pthread_cond_destroy(&s->cv);
    if (mu_ok)
        pthread_mutex_destroy(&s->mu);
    free(s);
    return rc;
}

void sn__sched_stop(sn__sched_t *s)
{
    if (!s)
        return;
    /* (the client queues are freed below, once the workers are gone) */
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->n_threads; i++)
        pthread_join(s->th[i], NULL);
    for (int i = 0; i < s->o.n_workers; i++)
        sn_ctx_free(s->w[i].ctx);
    while (s->ring)
        client_drop(s, s->ring);
    while (s->spare) {
        client_q_t *q = s->spare;
        s->spare = q->next;
        free(q);
    }
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- the storage lane -------------------------------------------------------- */

struct sn__lane {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sn__task_t *head, *tail;
    int n;
    int stop;
    pthread_t th;
    sn__task_t *held; /* the lane thread's only: tickets not yet due */
};

static void lane_run(sn__task_t *t)
{
    if (t->order && !t->keep_turn)
        t->order->next++; /* before run: run may free the order */
    t->run(t);
}

/* Run every held task that is now due. A held task keeps its connection
 * (and so its order) alive until it runs. */
static void lane_run_held(sn__lane_t *l)
{
    int progress = 1;
    while (progress) {
        progress = 0;
        for (sn__task_t **pp = &l->held; *pp;) {
            sn__task_t *t = *pp;
            if (t->order->next == t->ticket) {
                *pp = t->next;
                lane_run(t);
                progress = 1;
            } else {
                pp = &t->next;
            }
        }
    }
}

static void *lane_main(void *arg)
{
    sn__lane_t *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        if (!l->head) {
            if (l->stop)
                break;
            pthread_cond_wait(&l->cv, &l->mu);
            continue;
        }
        sn__task_t *t = l->head;
        l->head = t->next;
        if (!l->head)
            l->tail = NULL;
        l->n--;
        pthread_mutex_unlock(&l->mu);
        if (t->order && t->order->next != t->ticket) {
            t->next = l->held;
            l->held = t;
        } else {
            lane_run(t);
            if (l->held)
                lane_run_held(l);
        }
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

int sn__lane_start(sn__lane_t **out, char *err, size_t err_len)
{
    sn__lane_t *l = calloc(1, sizeof *l);
    int e;
    *out = NULL;
    if (!l)
        return sn__derr(err, err_len, -ENOMEM, "out of memory");
    if (pthread_mutex_init(&l->mu, NULL)) {
        free(l);
        return sn__derr(err, err_len, -EAGAIN, "cannot create a mutex");
    }
    if (pthread_cond_init(&l->cv, NULL)) {
        pthread_mutex_destroy(&l->mu);
        free(l);
        return sn__derr(err, err_len, -EAGAIN, "cannot create a condition");
    }
    if ((e = pthread_create(&l->th, NULL, lane_main, l))) {
        pthread_cond_destroy(&l->cv);
        pthread_mutex_destroy(&l->mu);
        free(l);
        return sn__derr(err, err_len, -e, "cannot start the storage thread: "
                        "%s", strerror(e));
    }
    *out = l;
    return 0;
}

void sn__lane_submit(sn__lane_t *l, sn__task_t *task)
{
    pthread_mutex_lock(&l->mu);
    task->next = NULL;
    if (l->tail)
        l->tail->next = task;
    else
        l->head = task;
    l->tail = task;
    l->n++;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

int sn__lane_depth(sn__lane_t *l)
{
    pthread_mutex_lock(&l->mu);
    int n = l->n;
    pthread_mutex_unlock(&l->mu);
    return n;
}

void sn__lane_stop(sn__lane_t *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->th, NULL);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    free(l);
}
