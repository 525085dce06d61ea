/*
 * conn.c -- the connection core: what both transports (server.c: the Unix
 * socket; http.c) do with a connection's requests between reading them and
 * writing their replies, written once.
 *
 *   - the FIFO: requests in the order they were read; replies are written
 *     from its head only, so they leave in request order;
 *   - the reply budget (budget.c): a request starts only while the
 *     connection's replies not yet written stay within it; the others are
 *     held, in order, and released after writes;
 *   - the hand-over to the engine (sn__ops_dispatch) and the way back: the
 *     engine calls back on a worker, which queues the request on the
 *     transport's completion queue (a mutex-guarded list) and wakes its
 *     loop with a uv_async_t; the loop takes the requests back one by one;
 *   - replies in pieces: the next piece is asked for (sn__ops_more) once the
 *     budget has room;
 *   - the read buffer: room for the next read, consumed bytes dropped;
 *   - the close: requests not on a worker are freed, or given back to the
 *     engine first when they are between pieces (sn__ops_abandon); those on
 *     a worker are freed when they come back. A connection is freed by its
 *     transport once its handles are closed and n_work and n_writes are 0.
 *
 * What differs stays in the transport, behind sn__conn_ops_t: reading and
 * parsing (lines; HTTP messages), what a ready reply costs (a line; status
 * line, headers and body), writing it, and what to do next.
 *
 * Invariants: a request is in exactly one place -- its connection's FIFO
 * (on the loop, or on a worker with on_worker set), or orphaned on a worker
 * after its connection closed; n_work counts the requests on workers (and
 * the transport's own work on the threadpool); only the loop thread touches
 * any of it, except sn__done_q_push.
 *
 * Loop thread only, except sn__done_q_push (any thread).
 */
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "daemon.h"

void sn__conn_push(sn__conn_core_t *c, sn__creq_t *q)
{
    q->core = c;
    q->next = NULL;
    c->n_reqs++;
    if (c->tail)
        c->tail->next = q;
    else
        c->head = q;
    c->tail = q;
}

void sn__conn_pop(sn__conn_core_t *c)
{
    sn__creq_t *q = c->head;
    c->head = q->next;
    if (!c->head)
        c->tail = NULL;
    q->next = NULL;
}

int sn__conn_dispatch(sn__conn_core_t *c, sn__creq_t *q)
{
    q->on_worker = 1;
    c->n_work++;
    if (sn__ops_dispatch(&q->r, &c->order))
        return 1; /* the worker owns it now */
    q->on_worker = 0;
    c->n_work--;
    return 0;
}

void sn__conn_admit(sn__conn_core_t *c, sn__creq_t *q)
{
    if (sn__budget_admit(&c->budget, &q->slot, c->ops->estimate(q)))
        c->ops->start(q, 0);
}

void sn__conn_release_held(sn__conn_core_t *c)
{
    for (sn__creq_t *q = c->head; q && c->budget.n_held && !c->closing;
         q = q->next) {
        if (!q->slot.held)
            continue;
        if (!sn__budget_release(&c->budget, &q->slot, c->ops->estimate(q)))
            break;
        c->ops->start(q, 1);
    }
}

int sn__conn_more(sn__conn_core_t *c)
{
    sn__creq_t *q = c->head;
    if (c->closing || !q || !sn__budget_more(&c->budget, &q->slot))
        return 0;
    q->on_worker = 1;
    c->n_work++;
    sn__ops_more(&q->r); /* back through the completion queue */
    return 1;
}

void sn__conn_drop_all(sn__conn_core_t *c)
{
    sn__creq_t *q = c->head;
    c->head = c->tail = NULL;
    while (q) {
        sn__creq_t *next = q->next;
        q->next = NULL;
        if (!q->on_worker && sn__ops_abandon(&q->r)) {
            q->on_worker = 1; /* back through the engine, then freed */
            c->n_work++;
        } else if (!q->on_worker) {
            c->ops->free_req(q);
        }
        q = next;
    }
}

void sn__conn_drop(sn__conn_core_t *c, sn__creq_t *q)
{
    c->n_reqs--;
    sn__budget_drop(&c->budget, &q->slot);
    sn__ops_release(&q->r);
}

/* ---- the read buffer ------------------------------------------------------------ */

size_t sn__rbuf_room(sn__rbuf_t *rb, size_t chunk, char **at, size_t *room)
{
    size_t shift = 0;
    if (rb->start && rb->start == rb->len) {
        shift = rb->start;
        rb->start = rb->len = 0;
    } else if (rb->start > rb->cap / 2) {
        shift = rb->start;
        memmove(rb->data, rb->data + rb->start, rb->len - rb->start);
        rb->len -= rb->start;
        rb->start = 0;
    }
    if (rb->cap - rb->len < chunk) {
        size_t cap = rb->cap ? rb->cap : chunk;
        while (cap - rb->len < chunk)
            cap *= 2;
        char *p = realloc(rb->data, cap);
        if (!p) {
            *at = NULL;
            *room = 0;
            return shift;
        }
        rb->data = p;
        rb->cap = cap;
    }
    *at = rb->data + rb->len;
    *room = rb->cap - rb->len;
    return shift;
}

/* ---- the completion queue ------------------------------------------------------ */

void sn__done_q_push(sn__done_q_t *dq, sn__creq_t *q)
{
    pthread_mutex_lock(&dq->mu);
    q->done_next = NULL;
    if (dq->tail)
        dq->tail->done_next = q;
    else
        dq->head = q;
    dq->tail = q;
    pthread_mutex_unlock(&dq->mu);
    uv_async_send(dq->async);
}

void sn__done_q_drain(sn__done_q_t *dq)
{
    pthread_mutex_lock(&dq->mu);
    sn__creq_t *q = dq->head;
    dq->head = dq->tail = NULL;
    pthread_mutex_unlock(&dq->mu);
    while (q) {
        sn__creq_t *next = q->done_next;
        sn__conn_core_t *c = q->core;
        c->n_work--;
        q->on_worker = 0;
        if (c->closing && sn__ops_abandon(&q->r)) {
            q->on_worker = 1; /* a piece came back: it ends its turn */
            c->n_work++;
        } else if (c->closing) {
            c->ops->free_req(q);
            c->ops->maybe_free(c);
        } else {
            c->ops->returned(q);
        }
        q = next;
    }
}
