/*
 * daemon.h -- internals shared by the files of daemon/ (sensed). Not
 * installed. Names here are sn__ (two underscores): visible across files,
 * not public.
 *
 * The data path of one request:
 *
 *   server.c   the loop thread reads a line from a connection, appends a
 *              request to the connection's FIFO and parses it (proto.c,
 *              inline for small lines, on the libuv threadpool for big ones)
 *   ops.c      turns the parsed request into work: an embedding job for the
 *              scheduler, a task for the storage lane, or an immediate reply
 *   sched.c    encoder workers batch texts from all connections into
 *              sn_model_embed() calls, or run a job that calls the model
 *              itself (word senses) with their own encoder context; one
 *              storage thread runs store and inventory calls in
 *              per-connection request order
 *   ops.c      the worker that finishes the work formats the reply line and
 *              calls the request's completion callback
 *   server.c   the reply comes back to the loop through a uv_async_t; replies
 *              are written in request order (conn.c: the connection core,
 *              the same for http.c)
 *
 * ops.c, sched.c and the storage are the engine; server.c is a transport:
 * it owns the connections and wraps each engine request (sn__req_t) in a
 * struct of its own (FIFO links, connection, timings), which the engine
 * never sees.
 *
 * Threads: only the loop thread touches sockets, libuv handles and the
 * transport's fields. Workers see an engine request's own fields (parsed
 * input, job, reply buffer) and nothing else until they hand it back
 * through its `done` callback.
 */
#ifndef SENSE_DAEMON_H
#define SENSE_DAEMON_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "sense/protocol.h"
#include "sense/sense.h"
#include "sense/store.h"
#include "sense/wsd.h"

/* ---- limits ------------------------------------------------------------------ */

/* The protocol's limits and op table are in sense/protocol.h, shared with
 * the client; these are the daemon's own. */
#define SN_MAX_READERS 8           /* search threads (one per core)   */
_Static_assert(SN_MAX_EXAMPLES == SN_WSD_MAX_BATCH,
               "sense.add's limit is the library's batch");

/* ---- log.c: one line per event on stderr ---------------------------------- */

typedef enum {
    SN__LOG_ERROR = 0,
    SN__LOG_WARN,
    SN__LOG_INFO,
    SN__LOG_DEBUG,
} sn__log_level_t;

extern sn__log_level_t sn__log_level;

/* "error" | "warn" | "info" | "debug" -> level; -1 when unknown. */
int sn__log_parse_level(const char *name);
/* Thread-safe: each call writes one whole line with a single write(2). */
void sn__log(sn__log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define sn__log_error(...) sn__log(SN__LOG_ERROR, __VA_ARGS__)
#define sn__log_warn(...) sn__log(SN__LOG_WARN, __VA_ARGS__)
#define sn__log_info(...) sn__log(SN__LOG_INFO, __VA_ARGS__)
#define sn__log_debug(...)                                                   \
    do {                                                                     \
        if (sn__log_level >= SN__LOG_DEBUG)                                  \
            sn__log(SN__LOG_DEBUG, __VA_ARGS__);                             \
    } while (0)

/* ---- proto.c: the wire format, pure (no I/O, no globals) ------------------ */

/* A growable byte buffer with a maximum fixed at init. Appends past the
 * maximum or failing allocation set `err` (SN_ETOOBIG / -ENOMEM) and are
 * dropped; the caller checks err once at the end. */
typedef struct {
    char *data;
    size_t len, cap, max;
    int err;
} sn__buf_t;

void sn__buf_init(sn__buf_t *b, size_t max);
void sn__buf_free(sn__buf_t *b); /* frees data, keeps max */
void sn__buf_put(sn__buf_t *b, const void *p, size_t len);
void sn__buf_puts(sn__buf_t *b, const char *s);
void sn__buf_printf(sn__buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A JSON string literal; invalid UTF-8 bytes become U+FFFD. */
void sn__buf_json_str(sn__buf_t *b, const char *s, size_t len);
/* A JSON array of floats (%.9g: exact for float; NaN/inf as null). */
void sn__buf_floats(sn__buf_t *b, const float *v, int n);

/* Error codes of the protocol: X(enum suffix, wire name). */
#define SN__PERR_MAP(X)                                                      \
    X(OK, "ok")                                                              \
    X(BAD_JSON, "bad_json")                                                  \
    X(BAD_UTF8, "bad_utf8")                                                  \
    X(BAD_REQUEST, "bad_request")                                            \
    X(UNKNOWN_OP, "unknown_op")                                              \
    X(LINE_TOO_LONG, "line_too_long")                                        \
    X(TOO_MANY, "too_many")                                                  \
    X(TOO_LARGE, "too_large")                                                \
    X(MODEL_MISMATCH, "model_mismatch")                                      \
    X(NOT_FOUND, "not_found")                                                \
    X(STORAGE_FULL, "storage_full")                                          \
    X(READ_ONLY, "read_only")                                                \
    X(UNAVAILABLE, "unavailable")                                            \
    X(SHUTTING_DOWN, "shutting_down")                                        \
    X(INTERNAL, "internal")

typedef enum {
#define SN__PERR_ENUM(name, str) SN__P_##name,
    SN__PERR_MAP(SN__PERR_ENUM)
#undef SN__PERR_ENUM
} sn__perr_t;

const char *sn__perr_name(sn__perr_t code);
/* The protocol code for a library error (SN_E*, -errno). */
sn__perr_t sn__perr_of(int rc);

/* Where an op's work runs (the route column of SN_OPS; ops.c). */
typedef enum {
    SN__ROUTE_ENCODE,      /* the encoder workers embed the texts; run on
                            * the worker that finishes the last one */
    SN__ROUTE_CHUNK_ENCODE_STORE, /* a worker chunks the documents, the
                            * encoders embed the chunks; run on the lane at
                            * the connection's turn */
    SN__ROUTE_ENCODE_READ, /* the encoders embed the query (unless it is a
                            * vector); at the turn, run on a reader thread;
                            * back through the lane to end the turn */
    SN__ROUTE_STORE,       /* run on the lane at the connection's turn */
    SN__ROUTE_STATE,       /* run on the lane, in no connection's order */
    SN__ROUTE_MODEL,       /* at the turn, run on an encoder worker with its
                            * sn_ctx_t; back through the lane */
} sn__route_t;


typedef struct {
    const char *id;      /* NULL: the store makes one */
    const char *text;
    size_t text_len;
    char *meta_json;     /* owned; NULL when absent */
} sn__doc_req_t;

/* Where a sense.add exemplar came from, for messages: senses[i_sense]
 * (-1: the request's own lemma and sense) and its examples[i_example]
 * (-1: a sense given by its gloss alone). */
typedef struct {
    int i_sense;
    int i_example;
} sn__ex_origin_t;

/* A parsed request. Strings point into `root` (the parsed JSON), which the
 * request owns with everything else here; sn__request_free() frees it all.
 * Which fields are set depends on `op`. */
typedef struct {
    json_t *root;
    char *id_json;        /* the request's id, as compact JSON; "null" */
    sn_op_t op;
    int has_op;           /* op was recognized */
    const char *collection;
    /* embed */
    const char **texts;
    size_t *lens;
    int n_texts;
    int want_tokens;
    const char *prompt;   /* a prompt *name*; NULL when absent */
    int has_prompt;
    int dimensions;       /* 0: the model's */
    /* add */
    sn__doc_req_t *docs;
    int n_docs;
    int index_kind;       /* sn_index_kind_t for a new collection: "index" */
    /* search */
    const char *query;
    size_t query_len;
    float *vector;        /* owned; search by vector instead of query */
    int n_vector;
    int k;
    int ef;               /* "ef": HNSW beam of this search; 0: default */
    char *filter_json;    /* owned; NULL when absent */
    int mode;             /* sn_search_mode_t: "mode", default hybrid */
    int by_chunk;         /* "group": "chunk" */
    /* get, delete */
    const char **ids;
    int n_ids;
    /* sense.add: one entry per exemplar, all senses flattened (examples
     * with start -1 are to be located); sense.list, sense.remove: lemma,
     * sense */
    const char *lemma;    /* NULL when absent */
    const char *sense;
    sn_wsd_example_t *examples; /* n_examples, with origin[n_examples] */
    sn__ex_origin_t *origin;
    int n_examples;
    int n_senses;         /* senses named in a sense.add */
    /* sense.which: text (query, query_len) and word, or a span */
    const char *word;     /* NULL when absent */
    int32_t start, end;   /* -1 when absent */
    /* sense.list */
    int offset, limit;
    int want_examples;
} sn__request_t;

/* Parse one request line (without its newline). Returns 0, or a protocol
 * error code with a message in msg. req->id_json is set whenever the line
 * was a JSON object with an id, even on failure, so that the error reply can
 * echo it. Free with sn__request_free() either way. */
sn__perr_t sn__proto_parse(const char *line, size_t len, sn__request_t *req,
                           char *msg, size_t msg_len);
void sn__request_free(sn__request_t *req);
/* The same, for a request already parsed into a JSON tree (the HTTP
 * transport builds one from its endpoints' bodies): the request takes
 * `root` (one reference), failing or not. Strings must be valid UTF-8
 * (jansson's own are). */
sn__perr_t sn__proto_parse_json(json_t *root, sn__request_t *req, char *msg,
                                size_t msg_len);

/* Is buf[0..len) valid UTF-8 (RFC 3629: no overlongs, no surrogates)? On
 * failure *bad is the offset of the first bad byte. */

/* Reply lines. A success reply is begin + fields + end; an error reply is
 * one call. id_json NULL means null. */
void sn__proto_reply_begin(sn__buf_t *b, const char *id_json);
void sn__proto_reply_end(sn__buf_t *b);
void sn__proto_reply_error(sn__buf_t *b, const char *id_json,
                           sn__perr_t code, const char *msg);

/* ---- sched.c: encoder workers and the storage lane ------------------------ */

typedef struct sn__job sn__job_t;
typedef void (*sn__job_cb)(sn__job_t *job);
typedef void (*sn__job_run_cb)(sn__job_t *job, sn_ctx_t *ctx);

/* An embedding job: n texts with one set of options. The scheduler batches
 * its texts with other jobs' and calls `done` once, on the worker thread that
 * finished the last text (or at once for n == 0). `prepare`, if set, runs
 * first on a worker and may fill texts/lens/n or set rc (chunking an add).
 * `run`, if set, makes a job that calls the model itself (sn_wsd_which,
 * sn_wsd_add): it is called once on a worker with that worker's encoder
 * context, in the place of texts, then `done`. Prepare and run steps and
 * texts all wait in their client's queue and are taken in turn with other
 * clients' (sched.c, "Fairness"). */
struct sn__job {
    const char *const *texts;
    const size_t *lens;
    int n;
    sn_embed_opts_t opts;   /* opts.prompt: a model prompt text (stable) */
    sn__job_cb prepare;
    sn__job_run_cb run;
    sn__job_cb done;
    void *data;             /* the caller's */
    const void *client;     /* whose: texts are dealt round robin among
                             * clients (a connection; NULL is one client) */
    int urgent;             /* dealt first in each batch (a search query) */
    /* results, valid in done(): out[n] (sched allocates, caller frees with
     * sn__job_free_out), rc and err for the first failed text */
    sn_embedding_t *out;
    int rc;
    char err[512];
    /* private to sched */
    void *items;
    int n_left;
    int n_queued;           /* texts still in the queue */
    int n_ahead;            /* batches and steps that started while this
                             * job waited in the queue (set by submit;
                             * logged with the request) */
    uint64_t unit_q;        /* the count of those when it was queued */
    int64_t t_enq;
    uint64_t stamp;         /* the last batch it had texts in */
    sn__job_t *next;
};

void sn__job_free_out(sn__job_t *job);

typedef struct sn__sched sn__sched_t;

typedef struct {
    int n_workers;
    int batch_tokens;   /* estimated tokens per forward batch */
    int window_us;      /* the longest a free worker holds queued texts
                         * while more requests are expected */
    const int *n_conns; /* open connections (atomic), or NULL: a bound on
                         * how many requests can arrive together */
} sn__sched_opts_t;

int sn__sched_start(const sn_model_t *model, const sn__sched_opts_t *opts,
                    sn__sched_t **out, char *err, size_t err_len);
/* Thread-safe. */
void sn__sched_submit(sn__sched_t *s, sn__job_t *job);
/* Texts and jobs waiting for a worker. Thread-safe. */
int sn__sched_depth(sn__sched_t *s);
/* Let the workers finish what is queued, then join them. */
void sn__sched_stop(sn__sched_t *s);

/* The storage lane: one thread running tasks in submission order, except
 * that tasks carrying an order ticket run in ticket order within their
 * sn__order_t (one per connection), so a connection's storage ops take
 * effect in request order whichever finished embedding first.
 *
 * A task with keep_turn set holds its connection's turn after it runs: its
 * run() handed the work on (to an encoder worker) and the connection's
 * later tickets wait until the task is submitted again with keep_turn
 * cleared (and the run that finishes it). That serializes a connection's
 * word-sense ops, whose reads and writes happen on encoder workers, with
 * its other storage ops. */
typedef struct {
    uint64_t next;     /* the lane thread's only: next ticket to run */
    uint64_t issued;   /* the loop thread's only: tickets handed out */
} sn__order_t;

typedef struct sn__task sn__task_t;
struct sn__task {
    void (*run)(sn__task_t *task);
    sn__order_t *order; /* NULL: unordered */
    uint64_t ticket;
    int keep_turn;      /* with order: run() does not end the turn */
    sn__task_t *next;   /* private to the lane */
};

typedef struct sn__lane sn__lane_t;

int sn__lane_start(sn__lane_t **out, char *err, size_t err_len);
void sn__lane_submit(sn__lane_t *l, sn__task_t *task); /* thread-safe */
int sn__lane_depth(sn__lane_t *l);                     /* thread-safe */
void sn__lane_stop(sn__lane_t *l); /* runs what is queued, then joins */

int64_t sn__now_ns(void); /* CLOCK_MONOTONIC */

typedef struct sn__req sn__req_t;

/* ---- ops.c: the engine ------------------------------------------------------- */

/* The engine: the model, the storage, and the threads that run the ops
 * (encoder workers, the storage lane, the search readers). Transports
 * (server.c: the Unix socket) hand it parsed requests and get them back,
 * finished, through each request's callback. Immutable after
 * sn__ops_start() except the counters, which are atomics. */
typedef struct {
    const sn_model_t *model;
    const char *model_id;    /* what collections and senses are bound to */
    sn_store_t *store;
    sn_senses_t *senses;     /* the sense inventory (serializes itself) */
    const sn_wsd_morph_t *morph; /* the inventory's, for locating lemmas */
    sn__sched_t *sched;
    sn__lane_t *lane;
    /* searches: threads that run them in parallel (the store lets them;
     * see ops.c), each a lane used without tickets */
    sn__lane_t *readers[SN_MAX_READERS];
    int n_readers;
    unsigned next_reader;    /* atomic; round robin */
    int64_t t_start_ns;
    int n_workers;
    int n_conns;             /* atomic; the transports' open connections */
    int64_t n_requests;      /* atomic */
    int64_t n_tokens;        /* atomic: tokens the encoder workers encoded
                              * for embed, add and search (the sense ops
                              * encode inside the library, uncounted) */
} sn__ops_ctx_t;

/* Called when a request's work is finished and req->reply holds its whole
 * reply line -- or, for a reply in pieces, each time req->reply holds the
 * next piece (req->more: others follow) -- on whichever thread finished it
 * (a worker, the lane, a reader): the transport takes it back to its loop
 * from there. */
typedef void (*sn__req_cb)(sn__req_t *req);

/* Replies in pieces: an embed reply estimated over SN__STREAM_MIN bytes,
 * and the replies made of rows -- a search's hits, a get's documents (of
 * several ids), a check's damaged vectors, sense.list's senses or lemmas
 * -- bigger than a piece, are made and handed to the transport about
 * SN__PIECE bytes at a time, each piece when the transport asks for it
 * (sn__ops_more), so that a client that does not read holds one piece, not
 * its reply (ops.c). A piece can be bigger by one token's states or one
 * row (a document, a hit, a sense with its examples). */
#define SN__PIECE (256u << 10)
#define SN__STREAM_MIN (1u << 20)
#define SN__PIECES_UNREAD 2 /* a transport makes the next piece while
                             * fewer bytes than this many pieces wait
                             * for its peer (and the budget allows) */

/* How an embed reply is written: the protocol's line (ops.c) or a
 * transport's own (http.c: OpenAI's, TEI's). Called on workers, in this
 * order: head, once every text's token count is known (job.out[i].enc
 * n_tokens, truncated): 0, or -1 with an error reply set
 * (sn__ops_reply_error) and nothing written; vector(i) for each text,
 * unless NULL; mid; when the request asks for token states, tokens(i, e,
 * t0, t1) for each text over consecutive ranges of its tokens from 0 to
 * e->enc.n_tokens (one call, or several when the reply is in pieces:
 * the text's opening goes with t0 == 0, its close with t1 == n_tokens);
 * tail. */
typedef struct {
    int (*head)(sn__req_t *req, sn__buf_t *b);
    void (*vector)(sn__req_t *req, sn__buf_t *b, int i);
    void (*mid)(sn__req_t *req, sn__buf_t *b);
    void (*tokens)(sn__req_t *req, sn__buf_t *b, int i,
                   const sn_embedding_t *e, int t0, int t1);
    void (*tail)(sn__req_t *req, sn__buf_t *b);
} sn__embed_fmt_t;

/* One request, from its parsed form to its reply: what the engine needs,
 * nothing of the transport's (which embeds this struct in its own and
 * finds it again from the callback). While dispatched, it belongs to
 * whichever thread holds its work, until `done` is called. */
struct sn__req {
    sn__ops_ctx_t *ops;
    sn__req_cb done;          /* the transport's; set before dispatch */
    const void *client;       /* the transport's client (a connection): the
                               * encoders deal texts round robin by it */
    sn__request_t p;
    sn__buf_t reply;
    sn__perr_t code;          /* the reply's error, or SN__P_OK */
    const sn__embed_fmt_t *fmt; /* embed: the transport's format; NULL: the
                               * protocol's reply line */
    int more;                 /* reply is a piece and more follow: write it,
                               * then sn__ops_more() */
    int in_pieces;            /* pieces went: a failure now (code set, no
                               * more) cannot be a reply; the transport
                               * ends the connection */
    /* the work */
    sn__job_t job;
    sn__task_t task;
    sn__task_t read;          /* a search, on a reader */
    char **texts_own;         /* add: chunk texts point into docs */
    size_t *lens_own;
    int *doc_chunks;          /* add: chunks per doc */
    int32_t *spans;           /* add: (start, end) code points per chunk */
    /* a reply in pieces */
    int stream;               /* embed: decided at dispatch */
    int phase;
    int i_next;               /* the next text to format, row to read */
    int n_put;                /* rows written */
    sn__job_t piece;          /* the work that makes the next piece */
    sn__job_t states;         /* embed: texts' token states in hand (from
                               * text i_next), formatted up to token
                               * t_next of states.out[k_next] */
    int k_next, t_next;
    /* a reply of rows: appends rows to the reply while it holds less
     * than a piece; returns 1 once the last row and the reply's end are
     * in (ops.c, "replies of rows") */
    int (*rows)(sn__req_t *req, sn__buf_t *b);
    sn_hit_t *hits;           /* search: lean hits (sn_store_hit_read) */
    int n_hits, lists;
    int64_t cursor;           /* check: chunk scanned up to; -1: end;
                               * sense.list: -1 once the lemmas end */
    int64_t n_bad, n_checked;
    char *folded;             /* sense.list: the lemma, casefolded */
    sn_sense_info_t *senses;  /* sense.list of a lemma: its senses */
    int n_senses;
};

/* Start the engine's threads for ops->model, store, senses and morph (set
 * by the caller, with t_start_ns and n_workers). On failure what started
 * is stopped. */
int sn__ops_start(sn__ops_ctx_t *ops, const sn__sched_opts_t *o, char *err,
                  size_t err_len);
/* Let the threads finish what is queued, then join them. Every request
 * must be back. */
void sn__ops_stop(sn__ops_ctx_t *ops);
/* Start the work for a parsed request (the transport's loop thread).
 * Returns 0 when the reply is ready at once (req->reply; `done` is not
 * called), or 1 when the request went to a worker: then the caller must
 * not touch it until `done` is called. `order` is the connection's: its
 * storage ops take effect in the order they were dispatched. */
int sn__ops_dispatch(sn__req_t *req, sn__order_t *order);
/* An upper estimate of the bytes of req's reply, from its parsed form,
 * before any work: what a transport counts against a client's reply
 * budget until the reply exists. For a reply in pieces, what it holds at
 * once: its vectors and a piece or two. */
size_t sn__ops_reply_estimate(const sn__req_t *req);
/* The transport wrote the piece in req->reply (it may take the buffer):
 * make the next; `done` is called again (loop thread). */
void sn__ops_more(sn__req_t *req);
/* The transport drops a request that is not with the engine (its
 * connection closes). Returns 0: free it now; or 1: it goes back through
 * the engine first (a get between pieces ends its turn on the lane), and
 * `done` is called once more: free it then. */
int sn__ops_abandon(sn__req_t *req);
/* An error reply in place of whatever req->reply held. */
void sn__ops_reply_error(sn__req_t *req, sn__perr_t code, const char *msg);
/* Frees what the request holds -- its parsed input, its reply, its work --
 * but not the request itself (the transport's). */
void sn__ops_release(sn__req_t *req);

/* ---- budget.c: a connection's reply budget (both transports) ----------------- */

typedef struct {
    size_t max;        /* the budget */
    size_t reserved;   /* replies started (estimates) or made, not sent */
    size_t wbytes;     /* sent to the socket, not yet taken by the peer */
    int n_held;        /* requests waiting for room */
} sn__budget_t;

typedef struct {       /* a request's part */
    size_t reserve;    /* counted in reserved */
    int held;
    int want_more;     /* its reply goes in pieces; the next is wanted */
} sn__slot_t;

/* Start a request whose reply is estimated at est: 1 (counted), or 0: it
 * is held, and so is every later one until released in order. */
int sn__budget_admit(sn__budget_t *b, sn__slot_t *s, size_t est);
/* A held request, at its turn: 1 when it may start now (counted). */
int sn__budget_release(sn__budget_t *b, sn__slot_t *s, size_t est);
/* Its reply (or next piece) is made: counted at len from now on. */
void sn__budget_made(sn__budget_t *b, sn__slot_t *s, size_t len);
/* len bytes of it handed to the socket. */
void sn__budget_sent(sn__budget_t *b, sn__slot_t *s, size_t len);
/* The peer took len bytes. */
static inline void sn__budget_taken(sn__budget_t *b, size_t len)
{
    b->wbytes -= len;
}
/* A reply in pieces whose next piece is wanted: 1 when it may be made
 * now (counted). */
int sn__budget_more(sn__budget_t *b, sn__slot_t *s);
/* The request is gone: uncounted. */
void sn__budget_drop(sn__budget_t *b, sn__slot_t *s);

/* ---- conn.c: the connection core (both transports) ------------------------------ */

typedef struct sn__creq sn__creq_t;
typedef struct sn__conn_core sn__conn_core_t;

/* A request as a connection holds it: the engine's request and what both
 * transports keep around it. A transport's own request struct begins
 * with this one. */
struct sn__creq {
    sn__req_t r;              /* the engine's */
    sn__creq_t *next;         /* the connection's FIFO */
    sn__creq_t *done_next;    /* the completion queue */
    sn__conn_core_t *core;    /* its connection */
    sn__slot_t slot;          /* in the connection's reply budget */
    unsigned done : 1;        /* its reply (or next piece) is ready */
    unsigned on_worker : 1;   /* with the engine (or the threadpool) */
};

/* What a transport does at the core's turns (loop thread). */
typedef struct {
    size_t (*estimate)(const sn__creq_t *q); /* its reply, before the work */
    void (*start)(sn__creq_t *q, int held); /* admitted (held: after
                                       * waiting for the budget): hand it
                                       * to the engine (sn__conn_dispatch)
                                       * or answer it */
    void (*returned)(sn__creq_t *q);  /* back from the engine, its
                                       * connection open: reply or piece
                                       * ready; write, release, read on */
    void (*free_req)(sn__creq_t *q);  /* free it (sn__conn_drop first) */
    void (*maybe_free)(sn__conn_core_t *c); /* free the connection if it
                                       * is closed and nothing refers to it */
} sn__conn_ops_t;

/* A connection as both transports see it. A transport's own connection
 * struct holds one. */
struct sn__conn_core {
    const sn__conn_ops_t *ops;
    sn__creq_t *head, *tail;  /* FIFO, request order */
    int n_reqs;               /* in the FIFO or being written */
    int n_work;               /* requests on workers, and the transport's
                               * own work on the threadpool */
    int n_writes;             /* writes in flight */
    sn__budget_t budget;      /* replies not yet written (budget.c) */
    sn__order_t order;        /* its storage ops' tickets */
    unsigned closing : 1;
};

/* Append q to the FIFO (and count it). */
void sn__conn_push(sn__conn_core_t *c, sn__creq_t *q);
/* Unlink the FIFO's head (still counted until sn__conn_drop). */
void sn__conn_pop(sn__conn_core_t *c);
/* Start q with the budget's leave, or hold it (ops->start when it may). */
void sn__conn_admit(sn__conn_core_t *c, sn__creq_t *q);
/* Held requests whose turn has come, in order, while the budget allows. */
void sn__conn_release_held(sn__conn_core_t *c);
/* Hand q to the engine: 1 when it went to a worker (it comes back through
 * the completion queue), 0 when its reply is ready now. */
int sn__conn_dispatch(sn__conn_core_t *c, sn__creq_t *q);
/* The head's reply goes in pieces and its next piece is wanted: ask the
 * engine for it when the budget has room. 1 when asked. */
int sn__conn_more(sn__conn_core_t *c);
/* The connection closes: empty the FIFO -- requests not with the engine
 * are freed (ops->free_req), or given back to it first when between
 * pieces; those with it are freed when they come back. */
void sn__conn_drop_all(sn__conn_core_t *c);
/* Uncount q and free what the engine holds of it (for ops->free_req). */
void sn__conn_drop(sn__conn_core_t *c, sn__creq_t *q);

/* A connection's read buffer: data[start..len) read, not yet consumed. */
typedef struct {
    char *data;
    size_t start, len, cap;
} sn__rbuf_t;

/* Room for the next read (libuv's alloc callback): at least `chunk`
 * bytes at *at, *room of them; the consumed bytes are dropped first (all
 * of them, or moved down when past half the buffer). Returns how far the
 * unconsumed bytes moved down (offsets into data shrink by it). *at NULL,
 * *room 0 when out of memory (libuv then reports UV_ENOBUFS). */
size_t sn__rbuf_room(sn__rbuf_t *rb, size_t chunk, char **at, size_t *room);

/* A transport's completion queue: workers push requests the engine is
 * done with (or a piece of), the loop takes them back. */
struct uv_async_s;
typedef struct {
    pthread_mutex_t mu;
    sn__creq_t *head, *tail;
    struct uv_async_s *async; /* the transport's, woken on push */
} sn__done_q_t;

/* Any thread: queue q for its loop and wake it. */
void sn__done_q_push(sn__done_q_t *dq, sn__creq_t *q);
/* Loop thread (the async's callback): take every queued request back --
 * counted off n_work; freed when its connection closed meanwhile (or
 * given back to the engine when between pieces); else ops->returned. */
void sn__done_q_drain(sn__done_q_t *dq);

/* ---- http.c: the HTTP transport --------------------------------------------- */

typedef struct {
    const char *addr;     /* "HOST:PORT"; NULL: no HTTP */
    const char *api_key;  /* NULL: none (then loopback only); the caller's */
    const char *cors;     /* an origin, or "*"; NULL: no CORS headers */
    size_t max_body;      /* 0: SN_MAX_LINE_DEFAULT */
    int idle_ms;          /* 0: 60 s */
    int n_conns_max;      /* 0: 512 */
} sn__http_opts_t;

typedef struct sn__http sn__http_t;
struct uv_loop_s;

/* Parse "HOST:PORT" (IPv6 in brackets) as --http takes it; *loopback: is
 * it 127.0.0.0/8 or ::1. */
int sn__http_check_addr(const char *addr, int *loopback, char *err,
                        size_t err_len);
/* The key in `path`: one line of visible characters (trailing white space
 * dropped). *out is malloc'd. */
int sn__http_read_key(const char *path, char **out, char *err,
                      size_t err_len);
/* Listen on o->addr on `loop`, in front of the engine `ops`. Refuses a
 * non-loopback address without a key. On failure *out may still be set:
 * its handles are on the loop (close them by walking it), then
 * sn__http_free(). */
int sn__http_start(struct uv_loop_s *loop, sn__ops_ctx_t *ops,
                   const sn__http_opts_t *o, sn__http_t **out, char *err,
                   size_t err_len);
/* Stop accepting and reading; answer what was read; close the connections
 * (after SN_HTTP_DRAIN_MS, those whose responses are unread); then close
 * the handles and call on_closed(arg) on the loop thread. */
void sn__http_stop(sn__http_t *h, void (*on_closed)(void *arg), void *arg);
void sn__http_free(sn__http_t *h); /* after on_closed, or a failed start */

/* ---- server.c: the loop and the Unix socket -------------------------------- */

typedef struct {
    const char *socket_path;
    const char *socket_group; /* NULL: mode 0600 */
    size_t max_line;
    int n_conns_max;
    int idle_ms;              /* close connections idle this long; 0 never */
    sn__sched_opts_t sched;
    sn__http_opts_t http;     /* http.addr NULL: no HTTP */
} sn__server_opts_t;

/* Run the daemon until SIGTERM/SIGINT: bind, serve, drain, save. The model,
 * store, inventory and morph table stay the caller's (morph may be NULL:
 * the built-in list). Returns 0 or a negative code. */
int sn__server_run(const sn__server_opts_t *opts, const sn_model_t *model,
                   sn_store_t *store, sn_senses_t *senses,
                   const sn_wsd_morph_t *morph, char *err, size_t err_len);

/* Error message helper, like embed's: snprintf into err, return code. */
int sn__derr(char *err, size_t err_len, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
