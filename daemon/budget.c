/*
 * budget.c -- a connection's reply budget, the same for both transports
 * (server.c: the Unix socket; http.c): memory per connection bounded by
 * the bytes of replies made but not yet written, counting a reply before
 * it is made.
 *
 * Each request has a slot. While its work runs, the slot counts the
 * engine's estimate of its reply (sn__ops_reply_estimate); once the reply
 * (or its next piece) is made, its size; once handed to the socket, the
 * bytes move to `wbytes` until the peer has taken them. A request starts
 * only if the connection's count stays within the budget with it -- or
 * when the connection holds nothing else, so that a big reply runs alone
 * -- and otherwise waits, held, with every later request behind it (the
 * transport releases them in order, sn__budget_release, after writes). A
 * reply in pieces makes its next piece only while fewer than
 * SN__PIECES_UNREAD pieces' bytes wait for the peer.
 *
 * Loop thread only; no allocation.
 */
#include "daemon.h"

static int over(const sn__budget_t *b, size_t est)
{
    size_t held = b->reserved + b->wbytes;
    return held > 0 && held + est > b->max;
}

int sn__budget_admit(sn__budget_t *b, sn__slot_t *s, size_t est)
{
    if (b->n_held || over(b, est)) {
        s->held = 1;
        b->n_held++;
        return 0;
    }
    s->reserve = est;
    b->reserved += est;
    return 1;
}

int sn__budget_release(sn__budget_t *b, sn__slot_t *s, size_t est)
{
    if (over(b, est))
        return 0;
    s->held = 0;
    b->n_held--;
    s->reserve = est;
    b->reserved += est;
    return 1;
}

void sn__budget_made(sn__budget_t *b, sn__slot_t *s, size_t len)
{
    b->reserved -= s->reserve;
    s->reserve = len;
    b->reserved += len;
}

void sn__budget_sent(sn__budget_t *b, sn__slot_t *s, size_t len)
{
    b->reserved -= s->reserve;
    s->reserve = 0;
    b->wbytes += len;
}

int sn__budget_more(sn__budget_t *b, sn__slot_t *s)
{
    if (!s->want_more || b->wbytes >= SN__PIECES_UNREAD * SN__PIECE ||
        (b->wbytes && b->wbytes + b->reserved + SN__PIECE > b->max))
        return 0;
    s->want_more = 0;
    s->reserve = SN__PIECE;
    b->reserved += SN__PIECE;
    return 1;
}

void sn__budget_drop(sn__budget_t *b, sn__slot_t *s)
{
    b->reserved -= s->reserve;
    s->reserve = 0;
    if (s->held)
        b->n_held--;
    s->held = 0;
}
