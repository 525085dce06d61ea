/*
 * server.c -- the loop thread of sensed: the listening socket, connections,
 * request order, backpressure, signals and the orderly shutdown.
 *
 * A connection reads bytes into its read buffer (conn.c) and cuts them
 * into lines. Each non-blank line becomes a request at the tail of the connection's FIFO; it
 * is parsed (inline when short, on the libuv threadpool when longer than
 * SN_PARSE_INLINE, the connection waiting for it so that dispatch stays in
 * request order) and dispatched to ops.c. Replies are written from the head
 * of the FIFO only, so they leave in request order whatever order the work
 * finishes in.
 *
 * Backpressure: a connection stops reading (uv_read_stop) while it has
 * SN_CONN_MAX_REQS requests or SN_CONN_MAX_BYTES of request lines not yet
 * answered, or SN_CONN_WBUF_HIGH bytes of replies its peer has not read, or
 * while all connections together hold SN_SRV_MAX_BYTES of request lines; it
 * resumes when back under, lines already buffered first.
 *
 * Replies are bounded too, before they exist: a request is dispatched only
 * when the connection's replies built or being built but not yet written
 * -- each counted at the engine's estimate (sn__ops_reply_estimate) until
 * it is built, then at its size -- stay within SN_CONN_REPLY_BUDGET with
 * it; otherwise it waits, parsed, in the FIFO (and so do the ones after
 * it, to keep request order) until the peer reads. A request whose reply
 * alone is over the budget runs when the connection holds no other reply.
 * A big embed reply, and a big reply of rows (search, get, check,
 * sense.list), comes in pieces (ops.c): the request stays at the head
 * of the FIFO while each piece is written, and the next is asked for
 * (sn__ops_more) once fewer than SN__PIECES_UNREAD pieces' bytes wait for
 * the peer. So a client that pipelines requests and never reads costs the
 * budget (or one reply, when another op's reply is bigger), not one reply
 * per request.
 *
 * Idle connections: one with nothing read and no reply written for
 * --idle-timeout seconds, and no work in flight, is closed (a sweep every
 * second, at most). A line longer
 * than --max-line gets a line_too_long reply, after which the connection is
 * closed. Nothing a client sends can grow memory past these bounds or stall
 * another connection: parsing of big lines, encoding and storage all run off
 * the loop thread.
 *
 * Requests: each is the engine's sn__req_t (ops.c) inside the connection
 * core's sn__creq_t (conn.c: the FIFO, the budget, the hand-over to the
 * engine and back, pieces, the close -- shared with http.c) inside this
 * transport's sreq_t, which holds what only the socket needs (connection,
 * line, timings); the engine hands it back through its `done` callback,
 * on_req_done(), which queues it on the completion queue and wakes the
 * loop with a uv_async_t.
 *
 * Lifetimes: a request is freed by the loop thread only -- after its reply
 * is written, or when its connection closes, unless it is on a worker then:
 * it is freed when it comes back (the connection counts them in n_work). A
 * connection is freed when its handle's close callback has run and n_work
 * and n_writes are zero.
 *
 * Shutdown (SIGTERM/SIGINT): close the listener (libuv unlinks the socket
 * file), stop reading everywhere, let the requests already read finish and
 * their replies be written (after SN_DRAIN_MS, connections with no work in
 * flight are closed, replies unread or not; work in flight always finishes),
 * and once the last connection is freed, stop the workers and the lane and
 * close the remaining handles, so that uv_run() returns and uv_loop_close()
 * succeeds. The caller then saves the store.
 *
 * One daemon per socket: `PATH.lock` is held with flock() for the life of
 * the process. A socket file found at PATH is refused when something
 * answers on it, and replaced when nothing does (a stale socket left by a
 * killed daemon).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

#include "daemon.h"

#define SN_PARSE_INLINE (256u << 10)    /* parse longer lines off the loop */
#define SN_CONN_MAX_REQS 64             /* unanswered requests per conn */
#define SN_CONN_MAX_BYTES (8u << 20)    /* their line bytes (a longer line
                                         * is still read: --max-line) */
#define SN_CONN_REPLY_BUDGET (4u << 20) /* replies built or being built,
                                         * not written (estimates) */
#define SN_CONN_WBUF_HIGH (8u << 20)    /* unread reply bytes per conn */
#define SN_SRV_MAX_BYTES (512u << 20)   /* line bytes, all connections */
#define SN_READ_CHUNK (64u << 10)
#define SN_DRAIN_MS 10000               /* shutdown: wait for replies */
#define SN_MAX_CONNS_DEFAULT 512

typedef struct sn__server sn__server_t;
typedef struct sn__conn sn__conn_t;
typedef struct sreq sreq_t;

/* A request as the socket sees it: the engine's request, and around it
 * what only this transport needs. */
struct sreq {
    sn__creq_t q;                 /* the core's, with the engine's in it */
    sn__conn_t *conn;
    uint64_t seq;                 /* per connection, for the logs */
    int64_t t0_ns;
    int late;                     /* read after shutdown began */
    char *line;                   /* owned until parsed (big lines) */
    size_t line_len;
    size_t n_line_bytes;          /* the line's bytes, counted in the conn */
};

#define SREQ_OF(req) ((sreq_t *)((char *)(req)-offsetof(sreq_t, q.r)))
#define SREQ_OF_Q(cq) ((sreq_t *)((char *)(cq)-offsetof(sreq_t, q)))
#define HEAD(c) ((c)->core.head ? SREQ_OF_Q((c)->core.head) : NULL)

struct sn__conn {
    uv_pipe_t pipe;
    sn__server_t *srv;
    uint64_t serial;
    sn__conn_t *prev, *next;      /* the server's list */
    sn__rbuf_t rb;                /* data[start..len): unparsed bytes */
    size_t scan;                  /* data[start..scan) holds no newline */
    sn__conn_core_t core;         /* requests, budget, order (conn.c) */
    size_t n_bytes;               /* their line bytes */
    uint64_t t_active;            /* uv_now() of the last read or write */
    uint64_t n_seq;
    unsigned reading : 1;
    unsigned eof : 1;             /* the peer closed its side */
    unsigned parsing : 1;         /* a big line is on the threadpool */
    unsigned drain_close : 1;     /* close once the FIFO is written */
    unsigned closed : 1;          /* close callback ran */
};

struct sn__server {
    uv_loop_t loop;
    uv_pipe_t listener;
    uv_signal_t sigterm, sigint;
    uv_async_t async;
    uv_timer_t drain;
    uv_timer_t idle;              /* the idle sweep */
    sn__server_opts_t o;
    sn__ops_ctx_t ops;
    sn__done_q_t done;            /* requests back from the engine */
    sn__conn_t *conns;
    int n_conns;
    uint64_t n_serial;
    size_t bytes;                 /* line bytes of all requests alive */
    int global_paused;            /* some connection waits on `bytes` */
    int stopping;
    int finished;
    sn__http_t *http;             /* --http, or NULL */
    int http_closed;
};

static void conn_process(sn__conn_t *c);
static void on_req_done(sn__req_t *r);
static const sn__conn_ops_t sock_ops;
static void conn_close(sn__conn_t *c);
static void conn_flush(sn__conn_t *c);

/* ---- requests ------------------------------------------------------------------ */

static void req_free(sreq_t *req)
{
    sn__conn_t *c = req->conn;
    sn__server_t *srv = c->srv;
    sn__conn_drop(&c->core, &req->q);
    c->n_bytes -= req->n_line_bytes;
    srv->bytes -= req->n_line_bytes;
    free(req->line);
    free(req);
}

static void req_log(sreq_t *req)
{
    double ms = (double)(sn__now_ns() - req->t0_ns) / 1e6;
    const char *op = req->q.r.p.has_op ? sn_op_name(req->q.r.p.op) : "-";
    const char *id = req->q.r.p.id_json ? req->q.r.p.id_json : "null";
    if (req->q.r.code == SN__P_INTERNAL) {
        sn__log_warn("conn %llu #%llu %s: internal error after %.1f ms",
                     (unsigned long long)req->conn->serial,
                     (unsigned long long)req->seq, op, ms);
        return;
    }
    /* the id (cut short) and, for encoder work, the batches and steps
     * that ran first: what the fairness tests read */
    if (req->q.r.job.n_ahead >= 0)
        sn__log_debug("conn %llu #%llu %s id %.40s: %s, %.1f ms, %d "
                      "batches or steps ahead",
                      (unsigned long long)req->conn->serial,
                      (unsigned long long)req->seq, op, id,
                      sn__perr_name(req->q.r.code), ms, req->q.r.job.n_ahead);
    else
        sn__log_debug("conn %llu #%llu %s id %.40s: %s, %.1f ms",
                      (unsigned long long)req->conn->serial,
                      (unsigned long long)req->seq, op, id,
                      sn__perr_name(req->q.r.code), ms);
}

/* The reply (or its next piece) is ready (loop thread): counted at its
 * size from now on. */
static void req_ready(sreq_t *req)
{
    sn__conn_t *c = req->conn;
    req->q.done = 1;
    sn__budget_made(&c->core.budget, &req->q.slot, req->q.r.reply.len);
    if (!req->q.r.more)
        req_log(req);
}

static void req_error(sreq_t *req, sn__perr_t code, const char *msg)
{
    sn__ops_reply_error(&req->q.r, code, msg);
}

static sreq_t *req_new(sn__conn_t *c, size_t line_len)
{
    sreq_t *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    req->conn = c;
    req->q.r.ops = &c->srv->ops;
    req->q.r.done = on_req_done;
    req->q.r.client = c;
    req->q.r.job.n_ahead = -1;
    req->seq = ++c->n_seq;
    req->t0_ns = sn__now_ns();
    req->n_line_bytes = line_len;
    req->late = c->srv->stopping;
    sn__buf_init(&req->q.r.reply, SN_MAX_REPLY);
    c->n_bytes += line_len;
    c->srv->bytes += line_len;
    sn__conn_push(&c->core, &req->q);
    return req;
}

/* Parsed (or failed to): start the work, or hold it for the budget. */
static void req_dispatch(sreq_t *req, sn__perr_t code, const char *msg)
{
    sn__conn_t *c = req->conn;
    if (code) {
        req_error(req, code, msg);
        req_ready(req);
        return;
    }
    if (req->late) {
        req_error(req, SN__P_SHUTTING_DOWN, "the daemon is shutting down");
        req_ready(req);
        return;
    }
    sn__conn_admit(&c->core, &req->q);
}

/* The core's turns (conn.c). */

static size_t sock_estimate(const sn__creq_t *q)
{
    return sn__ops_reply_estimate(&q->r);
}

/* Hand a request to the engine -- unless it waited for the budget and
 * the daemon began shutting down meanwhile. */
static void sock_start(sn__creq_t *q, int held)
{
    sreq_t *req = SREQ_OF_Q(q);
    sn__conn_t *c = req->conn;
    if (held && (req->late || c->srv->stopping)) {
        req_error(req, SN__P_SHUTTING_DOWN, "the daemon is shutting down");
        req_ready(req);
        return;
    }
    if (!sn__conn_dispatch(&c->core, q))
        req_ready(req);
}

static void parse_work(uv_work_t *w)
{
    sreq_t *req = w->data;
    char msg[512];
    req->q.r.code = sn__proto_parse(req->line, req->line_len, &req->q.r.p, msg,
                                sizeof msg);
    if (req->q.r.code) {
        /* keep the message for the loop: reuse the reply buffer */
        sn__buf_puts(&req->q.r.reply, msg);
        sn__buf_put(&req->q.r.reply, "", 1);
    }
    free(req->line);
    req->line = NULL;
}

static void parse_after(uv_work_t *w, int status)
{
    sreq_t *req = w->data;
    sn__conn_t *c = req->conn;
    (void)status;
    free(w);
    c->core.n_work--;
    c->parsing = 0;
    req->q.on_worker = 0;
    if (c->core.closing) {
        req_free(req);
        conn_close(c); /* frees the conn when this was the last */
        return;
    }
    char msg[512] = "";
    if (req->q.r.code && req->q.r.reply.data)
        snprintf(msg, sizeof msg, "%s", req->q.r.reply.data);
    sn__buf_free(&req->q.r.reply);
    req_dispatch(req, req->q.r.code, msg);
    conn_flush(c);
    conn_process(c);
}

/* A complete line (without its newline). */
static void conn_line(sn__conn_t *c, const char *line, size_t len)
{
    sreq_t *req = req_new(c, len);
    char msg[512];
    if (!req) {
        sn__log_error("conn %llu: out of memory", (unsigned long long)c->serial);
        conn_close(c);
        return;
    }
    if (len <= SN_PARSE_INLINE || req->late) {
        sn__perr_t code = sn__proto_parse(line, len, &req->q.r.p, msg, sizeof msg);
        req_dispatch(req, code, msg);
        return;
    }
    uv_work_t *w = malloc(sizeof *w);
    req->line = malloc(len ? len : 1);
    if (!w || !req->line) {
        free(w);
        req_error(req, SN__P_INTERNAL, "out of memory");
        req_ready(req);
        return;
    }
    memcpy(req->line, line, len);
    req->line_len = len;
    w->data = req;
    req->q.on_worker = 1;
    if (uv_queue_work(&c->srv->loop, w, parse_work, parse_after)) {
        free(w);
        req->q.on_worker = 0;
        req_error(req, SN__P_INTERNAL, "cannot queue the request");
        req_ready(req);
        return;
    }
    c->core.n_work++;
    c->parsing = 1;
}

/* ---- connections ------------------------------------------------------------------ */

static void conn_free(sn__conn_t *c)
{
    sn__server_t *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->n_conns--;
    __atomic_sub_fetch(&srv->ops.n_conns, 1, __ATOMIC_RELAXED);
    sn__log_debug("conn %llu: freed", (unsigned long long)c->serial);
    free(c->rb.data);
    free(c);
}

static void server_maybe_finish(sn__server_t *srv);

static void conn_maybe_free(sn__conn_t *c)
{
    if (!c->closed || c->core.n_work || c->core.n_writes)
        return;
    sn__server_t *srv = c->srv;
    conn_free(c);
    server_maybe_finish(srv);
}

static void on_conn_closed(uv_handle_t *h)
{
    sn__conn_t *c = h->data;
    c->closed = 1;
    conn_maybe_free(c);
}

/* Close now: requests not on a worker are freed; those on one are orphaned
 * (unlinked) and freed when they come back. Idempotent; also frees the conn
 * once nothing refers to it. */
static void conn_close(sn__conn_t *c)
{
    if (c->core.closing) {
        conn_maybe_free(c);
        return;
    }
    c->core.closing = 1;
    c->reading = 0;
    sn__conn_drop_all(&c->core);
    sn__log_debug("conn %llu: closing", (unsigned long long)c->serial);
    uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
}

/* Is the connection over one of its limits, or the server over its? */
static int conn_full(sn__conn_t *c)
{
    sn__server_t *srv = c->srv;
    if (srv->bytes >= SN_SRV_MAX_BYTES) {
        srv->global_paused = 1;
        return 1;
    }
    return c->core.n_reqs >= SN_CONN_MAX_REQS || c->n_bytes >= SN_CONN_MAX_BYTES ||
           c->core.budget.wbytes >= SN_CONN_WBUF_HIGH;
}

static void conn_maybe_close(sn__conn_t *c)
{
    if (c->core.closing || c->core.n_reqs)
        return;
    if (c->eof && c->rb.start < c->rb.len && !c->drain_close)
        return; /* lines still buffered: paused, not finished */
    if (c->eof || c->drain_close || c->srv->stopping)
        conn_close(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    sn__conn_t *c = h->data;
    (void)suggested;
    size_t shift = sn__rbuf_room(&c->rb, SN_READ_CHUNK, &buf->base,
                                 &buf->len);
    c->scan = c->scan > shift ? c->scan - shift : 0;
}

static void conn_too_long(sn__conn_t *c)
{
    char msg[128];
    sreq_t *req = req_new(c, 0);
    sn__log_info("conn %llu: line longer than %zu bytes; closing",
                 (unsigned long long)c->serial, c->srv->o.max_line);
    c->drain_close = 1;
    c->rb.start = c->rb.len = c->scan = 0;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->pipe);
        c->reading = 0;
    }
    if (!req) {
        conn_close(c);
        return;
    }
    snprintf(msg, sizeof msg, "request line longer than %zu bytes",
             c->srv->o.max_line);
    req_error(req, SN__P_LINE_TOO_LONG, msg);
    req_ready(req);
    conn_flush(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    sn__conn_t *c = s->data;
    (void)buf;
    if (nread > 0) {
        c->rb.len += (size_t)nread;
        c->t_active = uv_now(&c->srv->loop);
        conn_process(c);
        return;
    }
    if (nread == 0)
        return;
    if (c->reading) {
        uv_read_stop(s);
        c->reading = 0;
    }
    if (nread == UV_EOF) {
        c->eof = 1;
        conn_process(c);
        conn_maybe_close(c);
        return;
    }
    sn__log_debug("conn %llu: read: %s", (unsigned long long)c->serial,
                  uv_strerror((int)nread));
    conn_close(c);
}

/* Cut buffered bytes into requests while the limits allow, then read more
 * if they still do. */
static void conn_process(sn__conn_t *c)
{
    sn__server_t *srv = c->srv;
    size_t max_line = srv->o.max_line;

    while (!c->core.closing && !c->drain_close && !c->parsing &&
           c->rb.start < c->rb.len && !conn_full(c)) {
        char *start = c->rb.data + c->rb.start;
        size_t from = c->scan > c->rb.start ? c->scan : c->rb.start;
        char *nl = memchr(c->rb.data + from, '\n', c->rb.len - from);
        size_t len;
        if (nl) {
            len = (size_t)(nl - start);
            c->rb.start += len + 1;
            c->scan = c->rb.start;
        } else {
            c->scan = c->rb.len;
            len = c->rb.len - c->rb.start;
            if (len > max_line) {
                conn_too_long(c);
                return;
            }
            if (!c->eof)
                break;
            c->rb.start = c->rb.len; /* the last line, unterminated */
        }
        if (len > max_line) {
            conn_too_long(c);
            return;
        }
        if (len && start[len - 1] == '\r')
            len--;
        size_t i = 0;
        while (i < len && (start[i] == ' ' || start[i] == '\t'))
            i++;
        if (i == len)
            continue; /* blank lines are allowed between requests */
        conn_line(c, start, len);
    }
    if (c->core.closing)
        return;
    conn_flush(c);
    if (c->core.closing)
        return;
    int want = !c->eof && !c->drain_close && !c->parsing && !srv->stopping &&
               !conn_full(c);
    if (want && !c->reading) {
        int rc = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
        if (rc) {
            sn__log_warn("conn %llu: read: %s", (unsigned long long)c->serial,
                         uv_strerror(rc));
            conn_close(c);
            return;
        }
        c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->pipe);
        c->reading = 0;
        if (conn_full(c))
            sn__log_debug("conn %llu: paused: %d requests, %zu bytes "
                          "unanswered, %zu reply bytes unread",
                          (unsigned long long)c->serial, c->core.n_reqs,
                          c->n_bytes, c->core.budget.wbytes);
    }
}

static void server_resume_all(sn__server_t *srv)
{
    if (!srv->global_paused || srv->bytes >= SN_SRV_MAX_BYTES)
        return;
    srv->global_paused = 0;
    for (sn__conn_t *c = srv->conns, *next; c; c = next) {
        next = c->next;
        if (!c->core.closing)
            conn_process(c);
    }
}

/* A write: the last bytes of a reply (req: freed once written), or a
 * piece of one (its bytes owned here). */
typedef struct {
    uv_write_t w;
    sn__conn_t *c;
    sreq_t *req;
    char *data;
    size_t len;
} swrite_t;

static void on_write(uv_write_t *uw, int status)
{
    swrite_t *w = (swrite_t *)uw;
    sn__conn_t *c = w->c;
    sn__server_t *srv = c->srv;
    sn__budget_taken(&c->core.budget, w->len);
    c->core.n_writes--;
    c->t_active = uv_now(&srv->loop);
    if (w->req)
        req_free(w->req);
    free(w->data);
    free(w);
    if (c->core.closing) {
        conn_maybe_free(c);
        return;
    }
    if (status < 0) {
        sn__log_debug("conn %llu: write: %s", (unsigned long long)c->serial,
                      uv_strerror(status));
        conn_close(c);
        return;
    }
    sn__conn_more(&c->core);
    sn__conn_release_held(&c->core);
    conn_flush(c);
    conn_process(c);
    conn_maybe_close(c);
    server_resume_all(srv);
}

/* Write the replies that are ready at the head of the FIFO. A piece of a
 * reply leaves its request at the head, to make the next. */
static void conn_flush(sn__conn_t *c)
{
    while (!c->core.closing && c->core.head && c->core.head->done) {
        sreq_t *req = HEAD(c);
        int piece = req->q.r.more;
        if (req->q.r.in_pieces && req->q.r.code) {
            /* failed after some of its reply went: cannot be answered */
            sn__log_warn("conn %llu #%llu: reply failed after %s; closing",
                         (unsigned long long)c->serial,
                         (unsigned long long)req->seq,
                         "its first pieces");
            conn_close(c);
            return;
        }
        if (!piece)
            sn__conn_pop(&c->core);
        swrite_t *w = malloc(sizeof *w);
        if (!w) {
            if (!piece)
                req_free(req);
            conn_close(c);
            return;
        }
        w->c = c;
        w->req = piece ? NULL : req;
        w->len = req->q.r.reply.len;
        w->data = piece ? req->q.r.reply.data : NULL;
        uv_buf_t b = uv_buf_init(req->q.r.reply.data, (unsigned)w->len);
        if (piece) { /* the bytes go with the write */
            req->q.r.reply.data = NULL;
            req->q.r.reply.len = req->q.r.reply.cap = 0;
            req->q.done = 0;
        }
        int rc = uv_write(&w->w, (uv_stream_t *)&c->pipe, &b, 1, on_write);
        if (rc) {
            free(w->data);
            free(w);
            if (!piece)
                req_free(req);
            sn__log_debug("conn %llu: write: %s",
                          (unsigned long long)c->serial, uv_strerror(rc));
            conn_close(c);
            return;
        }
        sn__budget_sent(&c->core.budget, &req->q.slot, w->len);
        c->core.n_writes++;
        if (piece) {
            req->q.slot.want_more = 1;
            sn__conn_more(&c->core);
            break;
        }
    }
    conn_maybe_close(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    sn__server_t *srv = server->data;
    if (status < 0) {
        sn__log_warn("accept: %s", uv_strerror(status));
        return;
    }
    sn__conn_t *c = calloc(1, sizeof *c);
    if (!c) {
        sn__log_error("accept: out of memory");
        return;
    }
    c->srv = srv;
    c->serial = ++srv->n_serial;
    c->core.ops = &sock_ops;
    c->core.budget.max = SN_CONN_REPLY_BUDGET;
    c->t_active = uv_now(&srv->loop);
    uv_pipe_init(&srv->loop, &c->pipe, 0);
    c->pipe.data = c;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    __atomic_add_fetch(&srv->ops.n_conns, 1, __ATOMIC_RELAXED);
    int rc = uv_accept(server, (uv_stream_t *)&c->pipe);
    if (rc) {
        sn__log_warn("accept: %s", uv_strerror(rc));
        conn_close(c);
        return;
    }
    sn__log_debug("conn %llu: open (%d connections)",
                  (unsigned long long)c->serial, srv->n_conns);
    if (srv->n_conns > srv->o.n_conns_max) {
        char msg[96];
        sreq_t *req = req_new(c, 0);
        sn__log_warn("conn %llu: refused: %d connections is the limit",
                     (unsigned long long)c->serial, srv->o.n_conns_max);
        c->drain_close = 1;
        if (!req) {
            conn_close(c);
            return;
        }
        snprintf(msg, sizeof msg, "too many connections (%d)",
                 srv->o.n_conns_max);
        req_error(req, SN__P_TOO_MANY, msg);
        req_ready(req);
        conn_flush(c);
        return;
    }
    conn_process(c);
}

/* ---- completions from the workers ----------------------------------------------- */

/* The engine's completion callback, on the thread that finished the work:
 * queue the request for the loop. The connection is alive: it is freed
 * only once its requests on workers are back. */
static void on_req_done(sn__req_t *r)
{
    sreq_t *req = SREQ_OF(r);
    sn__done_q_push(&req->conn->srv->done, &req->q);
}

/* Requests back from the workers: their place in the FIFO never changed
 * (or they were orphaned by a close), so only the flags move. */
static void on_async(uv_async_t *a)
{
    sn__server_t *srv = a->data;
    sn__done_q_drain(&srv->done);
    server_resume_all(srv);
}

/* Back from the engine, its connection open: write what is ready. */
static void sock_returned(sn__creq_t *q)
{
    sreq_t *req = SREQ_OF_Q(q);
    sn__conn_t *c = req->conn;
    req_ready(req);
    conn_flush(c);
    sn__conn_release_held(&c->core);
    conn_flush(c);
}

static void sock_free_req(sn__creq_t *q)
{
    req_free(SREQ_OF_Q(q));
}

static void sock_maybe_free(sn__conn_core_t *core)
{
    conn_maybe_free((sn__conn_t *)((char *)core - offsetof(sn__conn_t, core)));
}

static const sn__conn_ops_t sock_ops = {sock_estimate, sock_start,
                                        sock_returned, sock_free_req,
                                        sock_maybe_free};

/* ---- the listening socket ------------------------------------------------------- */

/* Something answering on the socket at path? */
static int socket_live(const char *path)
{
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), live = 0;
    if (fd < 0)
        return 0;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
        live = 1;
    else if (errno != ECONNREFUSED && errno != ENOENT)
        live = -errno;
    close(fd);
    return live;
}

static int take_lock(const char *path, int *fd_out, char *err, size_t err_len)
{
    char lock_path[4096];
    int fd;
    *fd_out = -1;
    if ((size_t)snprintf(lock_path, sizeof lock_path, "%s.lock", path) >=
        sizeof lock_path)
        return sn__derr(err, err_len, -ENAMETOOLONG, "'%s': path too long",
                        path);
    fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return sn__derr(err, err_len, -errno, "cannot open '%s': %s",
                        lock_path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        close(fd);
        if (e == EWOULDBLOCK) {
            pid[n > 0 ? n : 0] = '\0';
            pid[strcspn(pid, "\n")] = '\0';
            return sn__derr(err, err_len, -EADDRINUSE,
                            "another sensed%s%s%s is serving '%s'",
                            *pid ? " (pid " : "", pid, *pid ? ")" : "", path);
        }
        return sn__derr(err, err_len, -e, "cannot lock '%s': %s", lock_path,
                        strerror(e));
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) != n)
        sn__log_debug("cannot write pid to '%s'", lock_path);
    *fd_out = fd;
    return 0;
}

static int server_listen(sn__server_t *srv, char *err, size_t err_len)
{
    const char *path = srv->o.socket_path;
    struct stat st;
    struct sockaddr_un sa;
    int rc;

    if (strlen(path) >= sizeof sa.sun_path)
        return sn__derr(err, err_len, -ENAMETOOLONG,
                        "socket path '%s' is longer than %zu bytes", path,
                        sizeof sa.sun_path - 1);
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return sn__derr(err, err_len, -EEXIST,
                            "'%s' exists and is not a socket", path);
        int live = socket_live(path);
        if (live > 0)
            return sn__derr(err, err_len, -EADDRINUSE,
                            "a daemon is already listening on '%s'", path);
        if (unlink(path) && errno != ENOENT)
            return sn__derr(err, err_len, -errno,
                            "cannot remove stale socket '%s': %s", path,
                            strerror(errno));
        sn__log_info("replaced stale socket '%s'", path);
    }
    uv_pipe_init(&srv->loop, &srv->listener, 0);
    srv->listener.data = srv;
    mode_t old = umask(0177); /* the socket is born 0600 */
    rc = uv_pipe_bind(&srv->listener, path);
    umask(old);
    if (rc)
        return sn__derr(err, err_len, rc, "cannot bind '%s': %s", path,
                        uv_strerror(rc));
    if (srv->o.socket_group) {
        struct group *gr = getgrnam(srv->o.socket_group);
        char *end;
        long gid = gr ? (long)gr->gr_gid : strtol(srv->o.socket_group, &end, 10);
        if (!gr && (*end || gid < 0))
            return sn__derr(err, err_len, -EINVAL, "no group '%s'",
                            srv->o.socket_group);
        if (chown(path, (uid_t)-1, (gid_t)gid) || chmod(path, 0660))
            return sn__derr(err, err_len, -errno,
                            "cannot give '%s' to group '%s': %s", path,
                            srv->o.socket_group, strerror(errno));
    } else if (chmod(path, 0600)) {
        return sn__derr(err, err_len, -errno, "cannot chmod '%s': %s", path,
                        strerror(errno));
    }
    rc = uv_listen((uv_stream_t *)&srv->listener, 128, on_connection);
    if (rc)
        return sn__derr(err, err_len, rc, "cannot listen on '%s': %s", path,
                        uv_strerror(rc));
    return 0;
}

/* ---- idle connections ----------------------------------------------------------------- */

static void on_idle_sweep(uv_timer_t *t)
{
    sn__server_t *srv = t->data;
    uint64_t now = uv_now(&srv->loop);
    uint64_t limit = (uint64_t)srv->o.idle_ms;
    for (sn__conn_t *c = srv->conns, *next; c; c = next) {
        next = c->next;
        if (c->core.closing || c->core.n_work || now - c->t_active < limit)
            continue;
        sn__log_info("conn %llu: idle for %llu ms (%d requests waiting, "
                     "%zu reply bytes unread); closing",
                     (unsigned long long)c->serial,
                     (unsigned long long)(now - c->t_active), c->core.n_reqs,
                     c->core.budget.wbytes);
        conn_close(c);
    }
}

/* ---- shutdown ----------------------------------------------------------------------- */

static void server_maybe_finish(sn__server_t *srv)
{
    if (!srv->stopping || srv->finished || srv->n_conns ||
        (srv->http && !srv->http_closed))
        return;
    srv->finished = 1;
    sn__log_info("all connections closed; stopping the workers");
    uv_timer_stop(&srv->drain);
    uv_timer_stop(&srv->idle);
    sn__ops_stop(&srv->ops); /* idle: every connection, so every request,
                              * is done */
    uv_close((uv_handle_t *)&srv->async, NULL);
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    uv_close((uv_handle_t *)&srv->drain, NULL);
    uv_close((uv_handle_t *)&srv->idle, NULL);
}

/* Shutdown has waited SN_DRAIN_MS: close the connections with no work in
 * flight (idle, or their replies unread); the others finish their work and
 * are looked at again each second. Work in flight always completes. */
static void on_drain_timeout(uv_timer_t *t)
{
    sn__server_t *srv = t->data;
    int n_busy = 0, n_closed = 0;
    for (sn__conn_t *c = srv->conns, *next; c; c = next) {
        next = c->next;
        if (c->core.closing)
            continue;
        if (c->core.n_work) {
            n_busy++;
            continue;
        }
        n_closed++;
        conn_close(c);
    }
    if (n_closed)
        sn__log_warn("shutdown: closed %d connections whose replies were "
                     "not read after %d ms", n_closed, SN_DRAIN_MS);
    if (n_busy)
        sn__log_info("shutdown: %d connections still have work in flight",
                     n_busy);
}

static void on_http_closed(void *arg)
{
    sn__server_t *srv = arg;
    srv->http_closed = 1;
    server_maybe_finish(srv);
}

static void on_signal(uv_signal_t *s, int signum)
{
    sn__server_t *srv = s->data;
    if (srv->stopping) {
        sn__log_info("signal %d: already stopping", signum);
        return;
    }
    srv->stopping = 1;
    sn__log_info("signal %d: stopping: no new connections, finishing %d "
                 "connections' requests", signum, srv->n_conns);
    uv_close((uv_handle_t *)&srv->listener, NULL);
    if (srv->http)
        sn__http_stop(srv->http, on_http_closed, srv);
    for (sn__conn_t *c = srv->conns, *next; c; c = next) {
        next = c->next;
        if (c->core.closing)
            continue;
        if (c->reading) {
            uv_read_stop((uv_stream_t *)&c->pipe);
            c->reading = 0;
        }
        conn_process(c); /* lines already buffered: shutting_down */
        conn_maybe_close(c);
    }
    uv_timer_start(&srv->drain, on_drain_timeout, SN_DRAIN_MS, 1000);
    server_maybe_finish(srv);
}

static void on_walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int sn__server_run(const sn__server_opts_t *opts, const sn_model_t *model,
                   sn_store_t *store, sn_senses_t *senses,
                   const sn_wsd_morph_t *morph, char *err, size_t err_len)
{
    sn__server_t *srv = calloc(1, sizeof *srv);
    int rc = 0, lock_fd = -1, loop_ok = 0, mu_ok = 0;

    if (!srv)
        return sn__derr(err, err_len, -ENOMEM, "out of memory");
    srv->o = *opts;
    if (!srv->o.max_line)
        srv->o.max_line = SN_MAX_LINE_DEFAULT;
    if (srv->o.n_conns_max <= 0)
        srv->o.n_conns_max = SN_MAX_CONNS_DEFAULT;
    srv->ops.model = model;
    srv->ops.model_id = sn_model_name(model);
    srv->ops.store = store;
    srv->ops.senses = senses;
    srv->ops.morph = morph;
    srv->ops.t_start_ns = sn__now_ns();
    srv->ops.n_workers = opts->sched.n_workers;

    if ((rc = take_lock(srv->o.socket_path, &lock_fd, err, err_len)))
        goto fail;
    if ((rc = uv_loop_init(&srv->loop))) {
        rc = sn__derr(err, err_len, rc, "cannot start the loop: %s",
                      uv_strerror(rc));
        goto fail;
    }
    loop_ok = 1;
    srv->done.async = &srv->async;
    if (pthread_mutex_init(&srv->done.mu, NULL)) {
        rc = sn__derr(err, err_len, -EAGAIN, "cannot create a mutex");
        goto fail;
    }
    mu_ok = 1;
    uv_async_init(&srv->loop, &srv->async, on_async);
    srv->async.data = srv;
    uv_signal_init(&srv->loop, &srv->sigterm);
    uv_signal_init(&srv->loop, &srv->sigint);
    srv->sigterm.data = srv->sigint.data = srv;
    uv_timer_init(&srv->loop, &srv->drain);
    srv->drain.data = srv;
    uv_timer_init(&srv->loop, &srv->idle);
    srv->idle.data = srv;
    if ((rc = server_listen(srv, err, err_len)))
        goto fail;
    if ((rc = sn__ops_start(&srv->ops, &opts->sched, err, err_len)))
        goto fail;
    if (srv->o.idle_ms > 0) {
        uint64_t every = srv->o.idle_ms / 4 < 1000 ? srv->o.idle_ms / 4 : 1000;
        uv_timer_start(&srv->idle, on_idle_sweep, every ? every : 1,
                       every ? every : 1);
    }
    if (opts->http.addr) {
        sn__http_opts_t ho = opts->http;
        if (!ho.max_body)
            ho.max_body = srv->o.max_line;
        if (!ho.n_conns_max)
            ho.n_conns_max = srv->o.n_conns_max;
        if ((rc = sn__http_start(&srv->loop, &srv->ops, &ho, &srv->http, err,
                                 err_len)))
            goto fail;
    }
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    sn__log_info("listening on '%s' (mode %s), %d encoder workers, max line "
                 "%zu bytes", srv->o.socket_path,
                 srv->o.socket_group ? "0660" : "0600", opts->sched.n_workers,
                 srv->o.max_line);

    uv_run(&srv->loop, UV_RUN_DEFAULT);

    rc = uv_loop_close(&srv->loop);
    if (rc) {
        sn__log_error("loop: handles left open at exit: %s",
                      uv_strerror(rc));
        rc = sn__derr(err, err_len, rc, "handles left open at exit");
    }
    loop_ok = 0;
    goto out;
fail:
    sn__ops_stop(&srv->ops);
    if (loop_ok) {
        uv_walk(&srv->loop, on_walk_close, NULL);
        uv_run(&srv->loop, UV_RUN_DEFAULT);
        uv_loop_close(&srv->loop);
    }
out:
    sn__http_free(srv->http);
    if (mu_ok)
        pthread_mutex_destroy(&srv->done.mu);
    if (lock_fd >= 0)
        close(lock_fd);
    free(srv);
    return rc;
}
