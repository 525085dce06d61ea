/*
 * http.c -- sensed's HTTP/1.1 transport (`sensed --http HOST:PORT`), on the
 * same libuv loop as the Unix socket and in front of the same engine
 * (ops.c): the OpenAI embeddings API, Text Embeddings Inference's /embed
 * and /embed_all, a small REST API for documents and search, /health and
 * /metrics. The endpoints are in docs/http.md.
 *
 * The parser: Debian's libhttp-parser (nodejs' http_parser 2.9), chosen
 * over the picohttpparser inside Debian's libh2o by measurement
 * (bench/http_parsers.c, this machine, load ~4): the OpenAI Node SDK's
 * request for one short text (571 bytes, 16 headers) parses in 1.8 us
 * with http_parser and 0.7 us with picohttpparser, 15 us and 17 us fed one
 * byte at a time, 112 us and 50 us with 16 KB more headers in 64-byte
 * pieces. One short text through the socket takes 0.32 ms (p50) with the
 * tiny test model and ~12 ms with the default model at that load
 * (bench/bench_http.c): the 1.1 us between the parsers is at most 0.4% of
 * a request, so speed does not decide.
 * What does: libhttp-parser is 43 KB with no dependency but libc, ships
 * its header, and decodes the body (Content-Length, chunked) and the
 * keep-alive rules in the same push parser, which takes bytes in whatever
 * pieces they come, so this file keeps its own buffers, limits and
 * backpressure; libh2o is 429 KB and pulls in libssl3, libwslay and zlib,
 * ships no picohttpparser.h (its parser is reachable only by redeclaring
 * its functions), leaves chunked bodies to a second API, and its server
 * side wants to own the sockets.
 *
 * A connection: bytes are read into its read buffer (conn.c) and pushed
 * through the parser, which is paused at the end of every message, so that each request is
 * dispatched (in order: order tickets are issued at dispatch) before the
 * next is parsed. Requests wait in the connection's FIFO and responses
 * are written from its head, in request order (pipelining). The engine
 * hands a request back through its callback, on the worker that finished
 * it, which also formats the HTTP response there (JSON of vectors can be
 * big), then queues it for the loop (mutex + uv_async_t).
 *
 * Limits: SN_HTTP_MAX_HEADER bytes of request line and headers (431), a
 * body of --max-line bytes (413, announced or chunked), and, as on the
 * socket, a connection stops being read while it has SN_HTTP_CONN_MAX_REQS
 * requests or SN_HTTP_CONN_MAX_BYTES of bodies unanswered, or
 * SN_HTTP_WBUF_HIGH bytes of responses its client has not read; and a
 * request is started only while the responses not yet written (counted at
 * the engine's estimate until they exist) stay within SN_HTTP_REPLY_BUDGET
 * with it (server.c has the same rule). An embedding response estimated
 * over SN__STREAM_MIN, and a reply of rows over SN__PIECE (a search, a
 * get of several ids: ops.c), comes from the engine in pieces, sent as chunks
 * (HTTP/1.0: close-delimited), the next made once the client has read the
 * one before; the engine formats it with this file's embed formats (OpenAI,
 * TEI), on its workers. A
 * connection that sends nothing for --http-idle-timeout seconds while
 * nothing of it is being worked on is closed (a slow client that trickles
 * bytes keeps its connection, and costs the others nothing: parsing is
 * incremental and bodies over SN_HTTP_PARSE_INLINE are turned into
 * requests on the libuv threadpool). After an error that ends a
 * connection (413, 431, a malformed request) the response is written, the
 * write side shut down, and what the client still sends is read and
 * dropped for a moment before closing, so that the client sees the
 * response rather than a reset.
 *
 * Security: with --api-key-file every endpoint but /health needs
 * `Authorization: Bearer KEY`, compared in constant time; sensed refuses
 * to listen on a non-loopback address without a key (checked before the
 * model loads, and again here); no CORS header is sent unless --cors ORIGIN.
 *
 * What both transports do with requests between reading and writing
 * them -- the FIFO, the reply budget, the hand-over to the engine and
 * back, pieces, the close -- is the connection core (conn.c); this file
 * keeps HTTP's: parsing, routing, bodies to requests, responses, writing.
 *
 * Lifetimes: as on the socket -- a request is freed on the loop thread,
 * after its response is written or when its connection closes, unless it
 * is on a worker: then when it comes back. A connection is freed once its
 * two handles (tcp, timer) are closed and nothing of it is on a worker or
 * being written.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <http_parser.h>
#include <uv.h>

#include "daemon.h"

#define SN_HTTP_MAX_HEADER (64u << 10)     /* request line + headers */
#define SN_HTTP_MAX_HVALUE 8192            /* a header value we keep */
#define SN_HTTP_PARSE_INLINE (256u << 10)  /* build bigger bodies off loop */
#define SN_HTTP_CONN_MAX_REQS 64           /* unanswered requests per conn */
#define SN_HTTP_CONN_MAX_BYTES (64u << 20) /* their body bytes */
#define SN_HTTP_WBUF_HIGH (8u << 20)       /* unread response bytes */
#define SN_HTTP_REPLY_BUDGET (4u << 20)    /* responses made or being made,
                                            * not written (estimates) */
#define SN_HTTP_READ_CHUNK (64u << 10)
#define SN_HTTP_LINGER_MS 1000             /* read and drop before closing */
#define SN_HTTP_DRAIN_MS 10000             /* shutdown: wait for responses */
#define SN_HTTP_MAX_KEY 4096

/* ---- endpoints ------------------------------------------------------------ */

/* X(enum suffix, name in /metrics) */
#define EP_MAP(X)                                                            \
    X(NONE, "unknown")                                                       \
    X(HEALTH, "health")                                                      \
    X(METRICS, "metrics")                                                    \
    X(MODELS, "models")                                                      \
    X(MODEL, "model")                                                        \
    X(OAI_EMBED, "openai_embeddings")                                        \
    X(TEI_EMBED, "tei_embed")                                                \
    X(TEI_EMBED_ALL, "tei_embed_all")                                        \
    X(STATS, "stats")                                                        \
    X(DOCS_ADD, "documents_add")                                             \
    X(DOC_PUT, "document_put")                                               \
    X(DOC_GET, "document_get")                                               \
    X(DOC_DELETE, "document_delete")                                         \
    X(DOCS_GET, "documents_get")                                             \
    X(DOCS_DELETE, "documents_delete")                                       \
    X(SEARCH, "search")                                                      \
    X(WHICH, "which")                                                        \
    X(OP, "op")                                                              \
    X(PREFLIGHT, "preflight")

typedef enum {
#define EP_ENUM(id, name) EP_##id,
    EP_MAP(EP_ENUM)
#undef EP_ENUM
    EP_COUNT
} ep_t;

static const char *const ep_names[] = {
#define EP_NAME(id, name) name,
    EP_MAP(EP_NAME)
#undef EP_NAME
};

/* How an endpoint's errors look. */
typedef enum { STYLE_REST, STYLE_OPENAI, STYLE_TEI } style_t;

/* Statuses counted in /metrics; others count as 500. */
static const int statuses[] = {100, 200, 204, 400, 401, 404, 405, 408, 409,
                               413, 415, 422, 431, 500, 501, 503, 507};
#define N_STATUS ((int)(sizeof statuses / sizeof *statuses))
/* Latency buckets, seconds. */
static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                 0.05,   0.1,   0.25,   0.5,   1,    2.5,
                                 5,      10};
#define N_BUCKET ((int)(sizeof buckets / sizeof *buckets))

typedef struct {
    uint64_t n[EP_COUNT][N_STATUS];
    uint64_t hist[EP_COUNT][N_BUCKET + 1]; /* not cumulative; last: +Inf */
    double sum[EP_COUNT];
    int n_conns;
} metrics_t;

/* ---- structures --------------------------------------------------------------- */

typedef struct hconn hconn_t;
typedef struct hreq hreq_t;

struct hreq {
    sn__creq_t q;                 /* the core's, with the engine's in it */
    hconn_t *conn;
    int64_t t0_ns;
    ep_t ep;
    style_t style;
    int method;                   /* enum http_method */
    int status;                   /* the response's, once known */
    char *arg[2];                 /* decoded path parts: collection, id */
    sn__buf_t url;
    sn__buf_t body;
    sn__buf_t head, out;          /* the response: headers, body */
    size_t n_bytes;               /* counted in conn->n_bytes */
    metrics_t *snap;              /* /metrics: the counters at dispatch */
    char allow[48];               /* 405: the methods the path takes */
    unsigned complete : 1;        /* the whole request has been read */
    unsigned keep_alive : 1;
    unsigned close_after : 1;     /* the connection ends with this one */
    unsigned want_continue : 1;   /* Expect: 100-continue */
    unsigned continued : 1;       /* 100 Continue sent */
    unsigned auth_ok : 1;
    unsigned cors_ok : 1;         /* Origin matched --cors */
    unsigned b64 : 1;             /* OpenAI: encoding_format base64 */
    unsigned normalize : 1;       /* TEI */
    unsigned truncate : 1;        /* TEI */
    unsigned http10 : 1;          /* an HTTP/1.0 request */
    unsigned streaming : 1;       /* the response goes in pieces: its
                                   * head went with the first */
};

#define HREQ_OF(req) ((hreq_t *)((char *)(req)-offsetof(hreq_t, q.r)))
#define HREQ_OF_Q(cq) ((hreq_t *)((char *)(cq)-offsetof(hreq_t, q)))
#define HEAD(c) ((c)->core.head ? HREQ_OF_Q((c)->core.head) : NULL)

struct hconn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    sn__http_t *h;
    uint64_t serial;
    hconn_t *prev, *next;
    http_parser parser;
    sn__rbuf_t rb;                /* data[start..len): not yet parsed */
    sn__conn_core_t core;         /* requests, budget, order (conn.c) */
    hreq_t *cur;                  /* the request being read */
    size_t n_bytes;
    int n_handles;                /* open: tcp, timer */
    /* the header being read */
    char hname[32];
    size_t hname_len;
    int hname_long;
    sn__buf_t hval;
    int in_value;
    size_t n_head;                /* request line + header bytes */
    unsigned reading : 1;
    unsigned eof : 1;
    unsigned building : 1;        /* a big body on the threadpool */
    unsigned stop_parsing : 1;    /* after an error that ends the conn */
    unsigned lingering : 1;       /* responses written, write side shut */
};

struct sn__http {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_async_t async;
    uv_timer_t drain;
    sn__ops_ctx_t *ops;
    sn__http_opts_t o;
    char *key;
    size_t key_len;
    http_parser_settings settings;
    sn__done_q_t done;            /* requests back from the engine */
    hconn_t *conns;
    int n_conns;
    uint64_t n_serial;
    int n_handles;                /* listener, async, drain */
    int stopping;
    int mu_ok;
    void (*on_closed)(void *arg);
    void *arg;
    metrics_t m;
    char bound[128];
};

static void conn_process(hconn_t *c);
static void conn_close(hconn_t *c);
static void conn_flush(hconn_t *c);
static void conn_timer_update(hconn_t *c);
static void on_req_done(sn__req_t *r);
static const sn__conn_ops_t http_ops;
static void http_maybe_closed(sn__http_t *h);

/* ---- small helpers ---------------------------------------------------------------- */

static const char *status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 507: return "Insufficient Storage";
    default: return "Internal Server Error";
    }
}

/* The HTTP status of a protocol error. */
static int status_of(sn__perr_t code)
{
    switch (code) {
    case SN__P_OK: return 200;
    case SN__P_BAD_JSON:
    case SN__P_BAD_UTF8:
    case SN__P_BAD_REQUEST:
    case SN__P_TOO_MANY: return 400;
    case SN__P_UNKNOWN_OP:
    case SN__P_NOT_FOUND: return 404;
    case SN__P_LINE_TOO_LONG:
    case SN__P_TOO_LARGE: return 413;
    case SN__P_MODEL_MISMATCH: return 409;
    case SN__P_STORAGE_FULL: return 507;
    case SN__P_READ_ONLY:
    case SN__P_SHUTTING_DOWN: return 503;
    case SN__P_UNAVAILABLE: return 501;
    default: return 500;
    }
}

static int ieq(const char *a, size_t a_len, const char *b)
{
    size_t n = strlen(b);
    if (a_len != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z')
            x = (char)(x - 'A' + 'a');
        if (x != y)
            return 0;
    }
    return 1;
}

/* Constant time in the length of the key: every byte of the key is looked
 * at whatever the given token is. */
static int key_equal(const char *key, size_t key_len, const char *given,
                     size_t given_len)
{
    volatile unsigned char diff = (unsigned char)(key_len != given_len);
    for (size_t i = 0; i < key_len; i++)
        diff |= (unsigned char)(key[i] ^
                                (i < given_len ? given[i] : (char)~key[i]));
    return diff == 0;
}

/* "Bearer TOKEN" against the key. */
static int auth_ok(const sn__http_t *h, const char *v, size_t len)
{
    if (len < 7 || !ieq(v, 6, "bearer") || (v[6] != ' ' && v[6] != '\t'))
        return 0;
    v += 7, len -= 7;
    while (len && (*v == ' ' || *v == '\t'))
        v++, len--;
    while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    return key_equal(h->key, h->key_len, v, len);
}

static void put_str(sn__buf_t *b, const char *s)
{
    if (s)
        sn__buf_json_str(b, s, strlen(s));
    else
        sn__buf_puts(b, "null");
}

/* %XX-decode s[0..len) into a malloc'd string; NULL when malformed, empty
 * or holding a NUL. */
static char *pct_decode(const char *s, size_t len)
{
    char *out = malloc(len + 1);
    size_t n = 0;
    if (!out || !len)
        goto bad;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            out[n++] = s[i];
            continue;
        }
        if (i + 2 >= len)
            goto bad;
        int v = 0;
        for (int k = 1; k <= 2; k++) {
            char c = s[i + (size_t)k];
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= c - '0';
            else if (c >= 'a' && c <= 'f')
                v |= c - 'a' + 10;
            else if (c >= 'A' && c <= 'F')
                v |= c - 'A' + 10;
            else
                goto bad;
        }
        if (!v)
            goto bad;
        out[n++] = (char)v;
        i += 2;
    }
    out[n] = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

static void b64_put(sn__buf_t *b, const unsigned char *p, size_t len)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char q[4];
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        q[0] = tab[v >> 18], q[1] = tab[(v >> 12) & 63];
        q[2] = tab[(v >> 6) & 63], q[3] = tab[v & 63];
        sn__buf_put(b, q, 4);
    }
    if (i < len) {
        unsigned v = (unsigned)p[i] << 16;
        if (i + 1 < len)
            v |= (unsigned)p[i + 1] << 8;
        q[0] = tab[v >> 18], q[1] = tab[(v >> 12) & 63];
        q[2] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        q[3] = '=';
        sn__buf_put(b, q, 4);
    }
}

/* ---- responses (any thread: only the request's own fields) -------------------- */

/* The status line and headers, for the body now in req->out. */
static void resp_head(hreq_t *req, const char *ctype)
{
    sn__buf_t *b = &req->head;
    const sn__http_t *h = req->conn->h;
    sn__buf_free(b);
    sn__buf_init(b, SN_HTTP_MAX_HEADER);
    sn__buf_printf(b, "HTTP/1.1 %d %s\r\n", req->status,
                   status_text(req->status));
    if (req->streaming) /* the length is not known yet */
        sn__buf_printf(b, "Content-Type: %s\r\n%s", ctype,
                       req->http10 ? "" : "Transfer-Encoding: chunked\r\n");
    else if (req->out.len || req->status != 204)
        sn__buf_printf(b, "Content-Type: %s\r\nContent-Length: %zu\r\n",
                       ctype, req->out.len);
    if (req->close_after)
        sn__buf_puts(b, "Connection: close\r\n");
    else if (req->http10)
        sn__buf_puts(b, "Connection: keep-alive\r\n");
    if (req->status == 401)
        sn__buf_puts(b, "WWW-Authenticate: Bearer\r\n");
    if (req->status == 405 && req->allow[0])
        sn__buf_printf(b, "Allow: %s\r\n", req->allow);
    if (h->o.cors && req->cors_ok) {
        sn__buf_puts(b, "Access-Control-Allow-Origin: ");
        sn__buf_puts(b, h->o.cors);
        sn__buf_puts(b, "\r\nVary: Origin\r\n");
        if (req->ep == EP_PREFLIGHT)
            sn__buf_puts(b, "Access-Control-Allow-Methods: GET, POST, PUT, "
                            "DELETE, OPTIONS\r\nAccess-Control-Allow-Headers: "
                            "Authorization, Content-Type\r\n"
                            "Access-Control-Max-Age: 600\r\n");
    }
    sn__buf_puts(b, "\r\n");
}

/* A JSON response from a body already in req->out. */
static void resp_json(hreq_t *req, int status)
{
    req->status = status;
    if (req->out.err) {
        /* the body overflowed its maximum (or memory): say so instead */
        int too_big = req->out.err == SN_ETOOBIG;
        sn__buf_free(&req->out);
        sn__buf_init(&req->out, (size_t)-1);
        req->status = too_big ? 413 : 500;
        sn__buf_printf(&req->out, "{\"error\":{\"code\":\"%s\",\"message\":"
                       "\"%s\"}}", too_big ? "too_large" : "internal",
                       too_big ? "the response would be too large; ask for "
                                 "less per request"
                               : "out of memory");
    }
    resp_head(req, "application/json");
}

/* An error in the endpoint's style. `code` is a short string for
 * programs (the protocol's codes, or OpenAI's), msg for people. */
static void resp_error(hreq_t *req, int status, const char *code,
                       const char *msg)
{
    sn__buf_t *b = &req->out;
    sn__buf_free(b);
    sn__buf_init(b, (size_t)-1);
    switch (req->style) {
    case STYLE_OPENAI:
        sn__buf_puts(b, "{\"error\":{\"message\":");
        put_str(b, msg);
        sn__buf_printf(b, ",\"type\":\"%s\",\"param\":null,\"code\":",
                       status >= 500   ? "server_error"
                       : status == 401 ? "invalid_request_error"
                                       : "invalid_request_error");
        put_str(b, code);
        sn__buf_puts(b, "}}");
        break;
    case STYLE_TEI:
        sn__buf_puts(b, "{\"error\":");
        put_str(b, msg);
        sn__buf_printf(b, ",\"error_type\":\"%s\"}",
                       status == 401   ? "Unauthorized"
                       : status == 503 ? "Unhealthy"
                       : status >= 500 ? "Backend"
                                       : "Validation");
        break;
    default:
        sn__buf_puts(b, "{\"error\":{\"code\":");
        put_str(b, code);
        sn__buf_puts(b, ",\"message\":");
        put_str(b, msg);
        sn__buf_puts(b, "}}");
    }
    resp_json(req, status);
}

/* The engine's error reply line to an HTTP error. */
static void resp_engine_error(hreq_t *req)
{
    const sn__buf_t *rep = &req->q.r.reply;
    json_t *j = rep->len ? json_loadb(rep->data, rep->len, 0, NULL) : NULL;
    json_t *e = json_object_get(j, "error");
    const char *msg = json_string_value(json_object_get(e, "message"));
    int status = status_of(req->q.r.code);
    const char *code = sn__perr_name(req->q.r.code);
    if (req->style == STYLE_OPENAI && status == 404)
        code = "not_found";
    resp_error(req, status, code, msg ? msg : "error");
    json_decref(j);
}

/* The reply line's fields as one JSON object: `{"id":null,"ok":true,...}`
 * without id and ok (the transport never sends an id). */
static void put_reply_fields(sn__buf_t *b, const sn__buf_t *rep)
{
    static const char prefix[] = "{\"id\":null,\"ok\":true";
    size_t n = sizeof prefix - 1, len = rep->len;
    if (len && rep->data[len - 1] == '\n')
        len--;
    if (len < n + 1 || memcmp(rep->data, prefix, n)) {
        sn__buf_put(b, rep->data, len); /* not expected; as it is */
        return;
    }
    sn__buf_put(b, "{", 1);
    if (rep->data[n] == ',')
        n++;
    sn__buf_put(b, rep->data + n, len - n);
}

/* OpenAI's body, as an embed format (daemon.h): {"object":"list","data":
 * [{"object":"embedding","index":i,"embedding":[...] or "base64"}],
 * "model","usage"}. Runs on workers: only the request's own fields. */
static int oai_head(sn__req_t *r, sn__buf_t *b)
{
    (void)r;
    sn__buf_puts(b, "{\"object\":\"list\",\"data\":[");
    return 0;
}

static void oai_vector(sn__req_t *r, sn__buf_t *b, int i)
{
    const sn_embedding_t *e = &r->job.out[i];
    sn__buf_printf(b, "%s{\"object\":\"embedding\",\"index\":%d,"
                   "\"embedding\":", i ? "," : "", i);
    if (HREQ_OF(r)->b64) {
        /* float32, little-endian: the layout in memory here (x86) */
        sn__buf_put(b, "\"", 1);
        b64_put(b, (const unsigned char *)e->sentence,
                (size_t)e->dim * sizeof(float));
        sn__buf_put(b, "\"", 1);
    } else {
        sn__buf_floats(b, e->sentence, e->dim);
    }
    sn__buf_put(b, "}", 1);
}

static void fmt_nothing(sn__req_t *r, sn__buf_t *b)
{
    (void)r;
    (void)b;
}

static void oai_tail(sn__req_t *r, sn__buf_t *b)
{
    int64_t n_tokens = 0;
    for (int i = 0; i < r->job.n; i++)
        n_tokens += r->job.out[i].enc.n_tokens;
    sn__buf_puts(b, "],\"model\":");
    put_str(b, r->ops->model_id);
    sn__buf_printf(b, ",\"usage\":{\"prompt_tokens\":%lld,\"total_tokens\":"
                   "%lld}}", (long long)n_tokens, (long long)n_tokens);
}

static const sn__embed_fmt_t oai_fmt = {oai_head, oai_vector, fmt_nothing,
                                        NULL, oai_tail};

/* TEI: /embed [[...], ...]; /embed_all [[[...] per token], ...]. A text
 * cut to the model's maximum is an error unless "truncate". */
static int tei_head(sn__req_t *r, sn__buf_t *b)
{
    const sn__job_t *job = &r->job;
    char msg[160];
    for (int i = 0; !HREQ_OF(r)->truncate && i < job->n; i++)
        if (job->out[i].enc.truncated > 0) {
            snprintf(msg, sizeof msg, "Input validation error: `inputs` "
                     "must have less than %d tokens (inputs[%d] has %d "
                     "more); send \"truncate\": true to cut it",
                     sn_model_max_tokens(r->ops->model), i,
                     job->out[i].enc.truncated);
            sn__ops_reply_error(r, SN__P_TOO_LARGE, msg);
            return -1;
        }
    sn__buf_put(b, "[", 1);
    return 0;
}

static void tei_vector(sn__req_t *r, sn__buf_t *b, int i)
{
    sn_embedding_t *e = &r->job.out[i];
    if (i)
        sn__buf_put(b, ",", 1);
    if (HREQ_OF(r)->normalize)
        sn_vec_normalize(e->sentence, e->dim);
    sn__buf_floats(b, e->sentence, e->dim);
}

static void tei_tokens(sn__req_t *r, sn__buf_t *b, int i,
                       const sn_embedding_t *e, int t0, int t1)
{
    (void)r;
    if (!t0)
        sn__buf_puts(b, i ? ",[" : "[");
    for (int t = t0; t < t1 && !b->err; t++) {
        if (t)
            sn__buf_put(b, ",", 1);
        sn__buf_floats(b, e->tokens + (size_t)t * e->hidden, e->hidden);
    }
    if (t1 == e->enc.n_tokens)
        sn__buf_put(b, "]", 1);
}

static void tei_tail(sn__req_t *r, sn__buf_t *b)
{
    (void)r;
    sn__buf_put(b, "]", 1);
}

static const sn__embed_fmt_t tei_fmt = {tei_head, tei_vector, fmt_nothing,
                                        NULL, tei_tail};
static const sn__embed_fmt_t tei_all_fmt = {tei_head, NULL, fmt_nothing,
                                            tei_tokens, tei_tail};

static void put_label(sn__buf_t *b, const char *s)
{
    sn__buf_put(b, "\"", 1);
    for (; s && *s; s++) {
        if (*s == '\\' || *s == '"')
            sn__buf_put(b, "\\", 1);
        if (*s == '\n')
            sn__buf_puts(b, "\\n");
        else
            sn__buf_put(b, s, 1);
    }
    sn__buf_put(b, "\"", 1);
}

/* /metrics, from the counters at dispatch and the stats reply. */
static void resp_metrics(hreq_t *req)
{
    const metrics_t *m = req->snap;
    const sn__ops_ctx_t *ops = req->q.r.ops;
    sn__buf_t *b = &req->out;
    json_t *j = json_loadb(req->q.r.reply.data, req->q.r.reply.len, 0, NULL);
    json_t *cols = json_object_get(j, "collections"), *c;
    size_t i;

    sn__buf_puts(b, "# HELP sense_http_requests_total HTTP requests "
                    "answered, by endpoint and status.\n"
                    "# TYPE sense_http_requests_total counter\n");
    for (int e = 0; e < EP_COUNT; e++)
        for (int s = 0; s < N_STATUS; s++)
            if (m->n[e][s])
                sn__buf_printf(b, "sense_http_requests_total{endpoint=\"%s\","
                               "status=\"%d\"} %llu\n", ep_names[e],
                               statuses[s], (unsigned long long)m->n[e][s]);
    sn__buf_puts(b, "# HELP sense_http_request_duration_seconds From the "
                    "request's first byte to its response handed to the "
                    "kernel.\n# TYPE sense_http_request_duration_seconds "
                    "histogram\n");
    for (int e = 0; e < EP_COUNT; e++) {
        uint64_t cum = 0;
        for (int k = 0; k <= N_BUCKET; k++)
            cum += m->hist[e][k];
        if (!cum)
            continue;
        cum = 0;
        for (int k = 0; k < N_BUCKET; k++) {
            cum += m->hist[e][k];
            sn__buf_printf(b, "sense_http_request_duration_seconds_bucket{"
                           "endpoint=\"%s\",le=\"%g\"} %llu\n", ep_names[e],
                           buckets[k], (unsigned long long)cum);
        }
        cum += m->hist[e][N_BUCKET];
        sn__buf_printf(b, "sense_http_request_duration_seconds_bucket{"
                       "endpoint=\"%s\",le=\"+Inf\"} %llu\n"
                       "sense_http_request_duration_seconds_sum{endpoint="
                       "\"%s\"} %.6f\n"
                       "sense_http_request_duration_seconds_count{endpoint="
                       "\"%s\"} %llu\n", ep_names[e], (unsigned long long)cum,
                       ep_names[e], m->sum[e], ep_names[e],
                       (unsigned long long)cum);
    }
    sn__buf_printf(
        b,
        "# HELP sense_requests_total Requests the engine took, from both "
        "transports.\n# TYPE sense_requests_total counter\n"
        "sense_requests_total %lld\n"
        "# HELP sense_tokens_encoded_total Tokens the encoder workers "
        "encoded for embed, add and search.\n"
        "# TYPE sense_tokens_encoded_total counter\n"
        "sense_tokens_encoded_total %lld\n"
        "# HELP sense_queue_depth Work waiting: texts and jobs for the "
        "encoder workers (embed), operations for the storage lane.\n"
        "# TYPE sense_queue_depth gauge\n"
        "sense_queue_depth{queue=\"embed\"} %d\n"
        "sense_queue_depth{queue=\"storage\"} %d\n"
        "# HELP sense_connections Open connections, both transports.\n"
        "# TYPE sense_connections gauge\nsense_connections %d\n"
        "# HELP sense_http_connections Open HTTP connections.\n"
        "# TYPE sense_http_connections gauge\nsense_http_connections %d\n"
        "# HELP sense_encoder_workers Encoder worker threads.\n"
        "# TYPE sense_encoder_workers gauge\nsense_encoder_workers %d\n"
        "# HELP sense_uptime_seconds Seconds since the daemon started.\n"
        "# TYPE sense_uptime_seconds gauge\nsense_uptime_seconds %.3f\n",
        (long long)__atomic_load_n(&ops->n_requests, __ATOMIC_RELAXED),
        (long long)__atomic_load_n(&ops->n_tokens, __ATOMIC_RELAXED),
        sn__sched_depth(ops->sched), sn__lane_depth(ops->lane),
        __atomic_load_n(&ops->n_conns, __ATOMIC_RELAXED), m->n_conns,
        ops->n_workers, (double)(sn__now_ns() - ops->t_start_ns) / 1e9);
    sn__buf_puts(b, "# HELP sense_model_info The served model.\n"
                    "# TYPE sense_model_info gauge\nsense_model_info{model=");
    put_label(b, ops->model_id);
    sn__buf_printf(b, ",dim=\"%d\",max_tokens=\"%d\"} 1\n",
                   sn_model_dim(ops->model), sn_model_max_tokens(ops->model));
    sn__buf_puts(b, "# HELP sense_documents Documents per collection.\n"
                    "# TYPE sense_documents gauge\n");
    json_array_foreach(cols, i, c) {
        sn__buf_puts(b, "sense_documents{collection=");
        put_label(b, json_string_value(json_object_get(c, "name")));
        sn__buf_printf(b, "} %lld\n", (long long)json_integer_value(
                                          json_object_get(c, "docs")));
    }
    sn__buf_puts(b, "# HELP sense_chunks Chunks (vectors) per collection.\n"
                    "# TYPE sense_chunks gauge\n");
    json_array_foreach(cols, i, c) {
        sn__buf_puts(b, "sense_chunks{collection=");
        put_label(b, json_string_value(json_object_get(c, "name")));
        sn__buf_printf(b, "} %lld\n", (long long)json_integer_value(
                                          json_object_get(c, "chunks")));
    }
    sn__buf_puts(b, "# HELP sense_index_info Each collection's search "
                    "index: its kind, model and dimension.\n"
                    "# TYPE sense_index_info gauge\n");
    json_array_foreach(cols, i, c) {
        sn__buf_puts(b, "sense_index_info{collection=");
        put_label(b, json_string_value(json_object_get(c, "name")));
        sn__buf_puts(b, ",kind=");
        put_label(b, json_string_value(json_object_get(c, "index")));
        sn__buf_puts(b, ",model=");
        put_label(b, json_string_value(json_object_get(c, "model")));
        sn__buf_printf(b, ",dim=\"%lld\"} 1\n", (long long)json_integer_value(
                                                    json_object_get(c, "dim")));
    }
    json_decref(j);
    req->status = 200;
    resp_head(req, "text/plain; version=0.0.4; charset=utf-8");
}

/* The engine's reply (or vectors) to the endpoint's response. */
static void resp_engine(hreq_t *req)
{
    sn__req_t *r = &req->q.r;
    sn__buf_t *b = &req->out;
    json_t *j = NULL;

    if (r->code) {
        resp_engine_error(req);
        return;
    }
    if (r->fmt) { /* the body, in the endpoint's format */
        sn__buf_free(b);
        *b = r->reply;
        sn__buf_init(&r->reply, SN_MAX_REPLY);
        resp_json(req, 200);
        return;
    }
    switch (req->ep) {
    case EP_METRICS:
        resp_metrics(req);
        return;
    case EP_DOC_GET: {
        j = json_loadb(r->reply.data, r->reply.len, 0, NULL);
        json_t *d = json_array_get(json_object_get(j, "docs"), 0);
        if (!d) {
            resp_error(req, 404, "not_found", "no such document");
            break;
        }
        char *s = json_dumps(d, JSON_COMPACT);
        if (s)
            sn__buf_puts(b, s);
        else
            b->err = -ENOMEM;
        free(s);
        resp_json(req, 200);
        break;
    }
    case EP_DOC_DELETE:
        j = json_loadb(r->reply.data, r->reply.len, 0, NULL);
        if (json_integer_value(json_object_get(j, "deleted")) == 0) {
            resp_error(req, 404, "not_found", "no such document");
            break;
        }
        /* fall through */
    default:
        put_reply_fields(b, &r->reply);
        resp_json(req, 200);
    }
    json_decref(j);
}

/* ---- requests (loop thread) ------------------------------------------------------- */

static hreq_t *req_new(hconn_t *c)
{
    hreq_t *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    req->conn = c;
    req->q.r.ops = c->h->ops;
    req->q.r.done = on_req_done;
    req->q.r.client = c; /* the encoders deal work round robin by connection */
    req->q.r.job.n_ahead = -1;
    req->t0_ns = sn__now_ns();
    req->keep_alive = 1;
    sn__buf_init(&req->q.r.reply, SN_MAX_REPLY);
    sn__buf_init(&req->url, SN_HTTP_MAX_HEADER);
    sn__buf_init(&req->body, c->h->o.max_body);
    sn__buf_init(&req->out, SN_MAX_REPLY);
    sn__buf_init(&req->head, SN_HTTP_MAX_HEADER);
    sn__conn_push(&c->core, &req->q);
    return req;
}

static void req_free(hreq_t *req)
{
    hconn_t *c = req->conn;
    sn__conn_drop(&c->core, &req->q);
    c->n_bytes -= req->n_bytes;
    sn__buf_free(&req->url);
    sn__buf_free(&req->body);
    sn__buf_free(&req->head);
    sn__buf_free(&req->out);
    free(req->arg[0]);
    free(req->arg[1]);
    free(req->snap);
    free(req);
}

/* The response (or its next piece) is ready (loop thread): counted at
 * its size from now on. */
static void req_ready(hreq_t *req)
{
    hconn_t *c = req->conn;
    req->q.done = 1;
    sn__budget_made(&c->core.budget, &req->q.slot, req->head.len + req->out.len);
    if (req->close_after)
        req->conn->stop_parsing = 1;
}

/* An error found by the transport, answered at once. close: the
 * connection ends after it (the rest of what the client sends is not
 * read as requests). */
static void req_fail(hreq_t *req, int status, const char *code,
                     const char *msg, int close)
{
    if (close)
        req->close_after = 1;
    resp_error(req, status, code, msg);
    req_ready(req);
}

static void record(sn__http_t *h, hreq_t *req)
{
    int s = N_STATUS - 1, e = req->ep;
    double sec = (double)(sn__now_ns() - req->t0_ns) / 1e9;
    for (int k = 0; k < N_STATUS; k++)
        if (statuses[k] == req->status)
            s = k;
    if (statuses[s] != req->status)
        for (int k = 0; k < N_STATUS; k++)
            if (statuses[k] == 500)
                s = k;
    h->m.n[e][s]++;
    int k = 0;
    while (k < N_BUCKET && sec > buckets[k])
        k++;
    h->m.hist[e][k]++;
    h->m.sum[e] += sec;
    if (req->q.r.job.n_ahead >= 0) /* encoder work: what ran first */
        sn__log_debug("http %llu: %s %.*s: %d, %.1f ms, %d batches or "
                      "steps ahead", (unsigned long long)req->conn->serial,
                      http_method_str((enum http_method)req->method),
                      (int)(req->url.len > 200 ? 200 : req->url.len),
                      req->url.data ? req->url.data : "", req->status,
                      sec * 1e3, req->q.r.job.n_ahead);
    else
        sn__log_debug("http %llu: %s %.*s: %d, %.1f ms",
                      (unsigned long long)req->conn->serial,
                      http_method_str((enum http_method)req->method),
                      (int)(req->url.len > 200 ? 200 : req->url.len),
                      req->url.data ? req->url.data : "", req->status,
                      sec * 1e3);
}

/* ---- routing ----------------------------------------------------------------------- */

/* The endpoint for method and path: ep, style and path arguments; 404 or
 * 405 answered here. Returns 0, or -1 when answered. */
static int route(hreq_t *req)
{
    const char *url = req->url.data ? req->url.data : "";
    size_t len = req->url.len;
    const char *q = memchr(url, '?', len);
    if (q)
        len = (size_t)(q - url);
    const char *seg[6];
    size_t seg_len[6];
    int n = 0;
    for (size_t i = 0; i < len;) {
        while (i < len && url[i] == '/')
            i++;
        if (i >= len)
            break;
        size_t j = i;
        while (j < len && url[j] != '/')
            j++;
        if (n == 6) {
            n = 7;
            break;
        }
        seg[n] = url + i;
        seg_len[n++] = j - i;
        i = j;
    }
#define SEG(k, s) (n > (k) && seg_len[k] == strlen(s) && !memcmp(seg[k], s, seg_len[k]))
    int m = req->method;
    const char *allow = NULL;
    ep_t ep = EP_NONE;
    style_t style = STYLE_REST;
    int n_args = 0;

    if (n == 1 && SEG(0, "health")) {
        ep = EP_HEALTH, allow = "GET";
    } else if (n == 1 && SEG(0, "metrics")) {
        ep = EP_METRICS, allow = "GET";
    } else if (n == 1 && SEG(0, "embed")) {
        ep = EP_TEI_EMBED, allow = "POST", style = STYLE_TEI;
    } else if (n == 1 && SEG(0, "embed_all")) {
        ep = EP_TEI_EMBED_ALL, allow = "POST", style = STYLE_TEI;
    } else if (n >= 2 && SEG(0, "v1")) {
        if (n == 2 && SEG(1, "models")) {
            ep = EP_MODELS, allow = "GET", style = STYLE_OPENAI;
        } else if (n == 3 && SEG(1, "models")) {
            ep = EP_MODEL, allow = "GET", style = STYLE_OPENAI, n_args = 1;
            seg[0] = seg[2], seg_len[0] = seg_len[2];
        } else if (n == 2 && SEG(1, "embeddings")) {
            ep = EP_OAI_EMBED, allow = "POST", style = STYLE_OPENAI;
        } else if (n == 2 && SEG(1, "stats")) {
            ep = EP_STATS, allow = "GET";
        } else if (n == 2 && SEG(1, "which")) {
            ep = EP_WHICH, allow = "POST";
        } else if (n == 3 && SEG(1, "ops")) {
            ep = EP_OP, allow = "POST", n_args = 1;
            seg[0] = seg[2], seg_len[0] = seg_len[2];
        } else if (n >= 4 && SEG(1, "collections")) {
            n_args = 1;
            seg[0] = seg[2], seg_len[0] = seg_len[2];
            if (n == 4 && SEG(3, "documents")) {
                ep = EP_DOCS_ADD, allow = "POST";
            } else if (n == 5 && SEG(3, "documents")) {
                n_args = 2;
                seg[1] = seg[4], seg_len[1] = seg_len[4];
                allow = "GET, PUT, DELETE";
                ep = m == HTTP_PUT      ? EP_DOC_PUT
                     : m == HTTP_DELETE ? EP_DOC_DELETE
                                        : EP_DOC_GET;
                if (m != HTTP_GET && m != HTTP_PUT && m != HTTP_DELETE)
                    allow = "GET"; /* 405 below, with the full list */
            } else if (n == 4 && SEG(3, "search")) {
                ep = EP_SEARCH, allow = "POST";
            } else if (n == 4 && SEG(3, "get")) {
                ep = EP_DOCS_GET, allow = "POST";
            } else if (n == 4 && SEG(3, "delete")) {
                ep = EP_DOCS_DELETE, allow = "POST";
            } else {
                n_args = 0;
            }
        }
    }
#undef SEG
    req->style = style;
    if (ep == EP_NONE) {
        req_fail(req, 404, "not_found", "no such endpoint; see docs/http.md",
                 0);
        return -1;
    }
    if (req->method == HTTP_OPTIONS && req->conn->h->o.cors) {
        req->ep = EP_PREFLIGHT;
        return 0;
    }
    int method_ok = !strcmp(allow, "GET")    ? m == HTTP_GET
                    : !strcmp(allow, "POST") ? m == HTTP_POST
                                             : 1; /* GET, PUT, DELETE */
    if (!method_ok) {
        req->ep = ep;
        snprintf(req->allow, sizeof req->allow, "%s",
                 ep == EP_DOC_GET ? "GET, PUT, DELETE" : allow);
        req_fail(req, 405, "method_not_allowed",
                 "this endpoint does not take that method", 0);
        return -1;
    }
    req->ep = ep;
    for (int k = 0; k < n_args; k++) {
        req->arg[k] = pct_decode(seg[k], seg_len[k]);
        if (!req->arg[k] || !sn_utf8_valid(req->arg[k], strlen(req->arg[k]),
                                           NULL)) {
            req_fail(req, 400, "bad_request",
                     "a path part is empty or not valid %-encoded utf-8", 0);
            return -1;
        }
    }
    return 0;
}

/* ---- bodies to engine requests (any thread) --------------------------------------- */

/* A string or an array of strings (not empty) into a new array. */
static json_t *texts_of(json_t *v)
{
    if (json_is_string(v)) {
        json_t *a = json_array();
        json_array_append(a, v);
        return a;
    }
    if (!json_is_array(v) || json_array_size(v) == 0)
        return NULL;
    for (size_t i = 0; i < json_array_size(v); i++)
        if (!json_is_string(json_array_get(v, i)))
            return NULL;
    return json_incref(v);
}

/* Build the engine request from the body (req->q.r.p), or answer an error
 * (req->out, req->status). Returns 0 when the request is ready to
 * dispatch, -1 when answered. Touches only the request and immutable
 * state: safe on the threadpool. */
static int build(hreq_t *req)
{
    const sn__http_t *h = req->conn->h;
    const char *model_id = h->ops->model_id;
    json_t *body = NULL, *op = NULL, *v;
    char msg[512];
    size_t bad;

    if (req->body.len || req->ep == EP_OAI_EMBED ||
        req->ep == EP_TEI_EMBED || req->ep == EP_TEI_EMBED_ALL ||
        req->ep == EP_DOCS_ADD || req->ep == EP_DOC_PUT ||
        req->ep == EP_SEARCH || req->ep == EP_WHICH ||
        req->ep == EP_DOCS_GET || req->ep == EP_DOCS_DELETE) {
        json_error_t jerr;
        if (!sn_utf8_valid(req->body.data ? req->body.data : "",
                           req->body.len, &bad)) {
            snprintf(msg, sizeof msg, "the body is not valid utf-8 (byte "
                     "%zu)", bad);
            resp_error(req, 400, "bad_utf8", msg);
            return -1;
        }
        body = json_loadb(req->body.data ? req->body.data : "", req->body.len,
                          JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
        if (!body) {
            snprintf(msg, sizeof msg, "the body is not JSON: %s (byte %d)",
                     jerr.text, jerr.position);
            resp_error(req, 400, "bad_json", msg);
            return -1;
        }
        if (!json_is_object(body)) {
            resp_error(req, 400, "bad_request",
                       "the body must be a JSON object");
            goto answered;
        }
        json_object_del(body, "id"); /* replies must not echo one */
    }
    switch (req->ep) {
    case EP_OAI_EMBED: {
        json_t *model = json_object_get(body, "model");
        const char *fmt =
            json_string_value(json_object_get(body, "encoding_format"));
        json_t *texts = texts_of(json_object_get(body, "input"));
        if (!json_is_string(model)) {
            json_decref(texts);
            resp_error(req, 400, "invalid_request_error",
                       "you must provide a model parameter");
            goto answered;
        }
        if (strcmp(json_string_value(model), model_id)) {
            json_decref(texts);
            snprintf(msg, sizeof msg, "The model '%.200s' does not exist; "
                     "this server serves '%.200s'", json_string_value(model),
                     model_id);
            resp_error(req, 404, "model_not_found", msg);
            goto answered;
        }
        if (!texts) {
            resp_error(req, 400, "invalid_request_error",
                       "'input' must be a string or a non-empty array of "
                       "strings (token arrays are not supported)");
            goto answered;
        }
        if (json_object_get(body, "encoding_format") &&
            (!fmt || (strcmp(fmt, "float") && strcmp(fmt, "base64")))) {
            json_decref(texts);
            resp_error(req, 400, "invalid_request_error",
                       "'encoding_format' must be \"float\" or \"base64\"");
            goto answered;
        }
        req->b64 = fmt && !strcmp(fmt, "base64");
        op = json_pack("{s:s, s:o}", "op", "embed", "texts", texts);
        if ((v = json_object_get(body, "dimensions")) && !json_is_null(v))
            json_object_set(op, "dimensions", v);
        req->q.r.fmt = &oai_fmt;
        break;
    }
    case EP_TEI_EMBED:
    case EP_TEI_EMBED_ALL: {
        json_t *texts = texts_of(json_object_get(body, "inputs"));
        if (!texts) {
            resp_error(req, 422, "bad_request",
                       "'inputs' must be a string or a non-empty array of "
                       "strings");
            goto answered;
        }
        req->normalize = 1;
        if ((v = json_object_get(body, "normalize")) && json_is_boolean(v))
            req->normalize = json_is_true(v);
        if ((v = json_object_get(body, "truncate")) && json_is_boolean(v))
            req->truncate = json_is_true(v);
        op = json_pack("{s:s, s:o}", "op", "embed", "texts", texts);
        if ((v = json_object_get(body, "prompt_name")) && !json_is_null(v))
            json_object_set(op, "prompt", v);
        if ((v = json_object_get(body, "dimensions")) && !json_is_null(v))
            json_object_set(op, "dimensions", v);
        if (req->ep == EP_TEI_EMBED_ALL)
            json_object_set_new(op, "tokens", json_true());
        req->q.r.fmt = req->ep == EP_TEI_EMBED_ALL ? &tei_all_fmt : &tei_fmt;
        break;
    }
    case EP_STATS:
    case EP_METRICS:
        op = json_pack("{s:s}", "op", "stats");
        break;
    case EP_DOCS_ADD:
        op = json_incref(body);
        if (!json_object_get(body, "docs")) {
            /* one document: {"id", "text", "meta"} */
            json_t *doc = json_object(), *x;
            const char *k;
            json_object_foreach(body, k, x) {
                if (strcmp(k, "prompt") && strcmp(k, "index"))
                    json_object_set(doc, k, x);
            }
            json_decref(op);
            op = json_pack("{s:[o]}", "docs", doc);
            if ((v = json_object_get(body, "prompt")))
                json_object_set(op, "prompt", v);
            if ((v = json_object_get(body, "index")))
                json_object_set(op, "index", v);
        }
        json_object_set_new(op, "op", json_string("add"));
        json_object_set_new(op, "collection", json_string(req->arg[0]));
        break;
    case EP_DOC_PUT: {
        json_t *doc = json_pack("{s:s}", "id", req->arg[1]);
        if ((v = json_object_get(body, "text")))
            json_object_set(doc, "text", v);
        if ((v = json_object_get(body, "meta")))
            json_object_set(doc, "meta", v);
        op = json_pack("{s:s, s:s, s:[o]}", "op", "add", "collection",
                       req->arg[0], "docs", doc);
        if ((v = json_object_get(body, "prompt")))
            json_object_set(op, "prompt", v);
        if ((v = json_object_get(body, "index")))
            json_object_set(op, "index", v);
        break;
    }
    case EP_DOC_GET:
    case EP_DOC_DELETE:
        op = json_pack("{s:s, s:s, s:[s]}", "op",
                       req->ep == EP_DOC_GET ? "get" : "delete",
                       "collection", req->arg[0], "ids", req->arg[1]);
        break;
    case EP_DOCS_GET:
    case EP_DOCS_DELETE:
    case EP_SEARCH:
        /* the socket op's fields as they are (search: every mode and
         * filter the op takes), the collection from the path */
        op = json_incref(body);
        json_object_set_new(op, "op",
                            json_string(req->ep == EP_SEARCH    ? "search"
                                        : req->ep == EP_DOCS_GET ? "get"
                                                                 : "delete"));
        json_object_set_new(op, "collection", json_string(req->arg[0]));
        break;
    case EP_WHICH:
        op = json_incref(body);
        json_object_set_new(op, "op", json_string("sense.which"));
        break;
    case EP_OP:
        op = body ? json_incref(body) : json_object();
        json_object_set_new(op, "op", json_string(req->arg[0]));
        break;
    default:
        resp_error(req, 500, "internal", "no engine request for this path");
        goto answered;
    }
    json_decref(body);
    if (!op) {
        resp_error(req, 500, "internal", "out of memory");
        return -1;
    }
    sn__perr_t code = sn__proto_parse_json(op, &req->q.r.p, msg, sizeof msg);
    if (code) {
        resp_error(req, status_of(code), sn__perr_name(code), msg);
        return -1;
    }
    return 0;
answered:
    json_decref(body);
    return -1;
}

/* ---- starting a request (loop thread) -------------------------------------------- */

/* Hand the request to the engine, or answer it. */
/* The core's turns (conn.c). */

/* Admitted: hand it to the engine, unless the daemon is shutting down. */
static void http_start(sn__creq_t *q, int held)
{
    hreq_t *req = HREQ_OF_Q(q);
    hconn_t *c = req->conn;
    sn__http_t *h = c->h;
    (void)held;
    if (h->stopping) {
        resp_error(req, 503, "shutting_down", "the daemon is shutting down");
        req_ready(req);
        return;
    }
    if (req->ep == EP_METRICS) {
        req->snap = malloc(sizeof *req->snap);
        if (!req->snap) {
            req_fail(req, 500, "internal", "out of memory", 0);
            return;
        }
        *req->snap = h->m;
        req->snap->n_conns = h->n_conns;
    }
    if (sn__conn_dispatch(&c->core, q))
        return; /* comes back through on_req_done */
    resp_engine(req);
    req_ready(req);
}

/* The engine's estimate of the response, and its head. */
static size_t http_estimate(const sn__creq_t *q)
{
    return sn__ops_reply_estimate(&q->r) + 512;
}

/* Built: start it, or hold it until the responses not yet written leave
 * room for its own (budget.c). */
static void dispatch(hreq_t *req)
{
    sn__conn_admit(&req->conn->core, &req->q);
}

static void build_work(uv_work_t *w)
{
    hreq_t *req = w->data;
    if (build(req))
        req->q.done = 1; /* answered; req_ready runs on the loop */
}

static void build_after(uv_work_t *w, int status)
{
    hreq_t *req = w->data;
    hconn_t *c = req->conn;
    (void)status;
    free(w);
    c->core.n_work--;
    c->building = 0;
    req->q.on_worker = 0;
    if (c->core.closing) {
        req_free(req);
        conn_close(c);
        return;
    }
    if (req->q.done)
        req_ready(req);
    else
        dispatch(req);
    conn_flush(c);
    conn_process(c);
}

/* The model list, the health answer: at once. */
static void answer_local(hreq_t *req)
{
    const sn__http_t *h = req->conn->h;
    sn__buf_t *b = &req->out;
    long created = (long)(time(NULL) -
                          (sn__now_ns() - h->ops->t_start_ns) / 1000000000);
    switch (req->ep) {
    case EP_HEALTH:
        sn__buf_puts(b, h->stopping ? "{\"status\":\"stopping\"}"
                                    : "{\"status\":\"ok\"}");
        resp_json(req, h->stopping ? 503 : 200);
        break;
    case EP_PREFLIGHT:
        req->status = 204;
        resp_head(req, "application/json");
        break;
    case EP_MODELS:
    case EP_MODEL:
        if (req->ep == EP_MODEL && strcmp(req->arg[0], h->ops->model_id)) {
            resp_error(req, 404, "model_not_found", "no such model");
            break;
        }
        if (req->ep == EP_MODELS)
            sn__buf_puts(b, "{\"object\":\"list\",\"data\":[");
        sn__buf_puts(b, "{\"id\":");
        put_str(b, h->ops->model_id);
        sn__buf_printf(b, ",\"object\":\"model\",\"created\":%ld,"
                       "\"owned_by\":\"sense\"}", created);
        if (req->ep == EP_MODELS)
            sn__buf_puts(b, "]}");
        resp_json(req, 200);
        break;
    default:
        resp_error(req, 500, "internal", "not a local endpoint");
    }
    req_ready(req);
}

/* Is the endpoint answered here, without the engine? */
static int ep_local(ep_t ep)
{
    return ep == EP_HEALTH || ep == EP_PREFLIGHT || ep == EP_MODELS ||
           ep == EP_MODEL;
}

/* The whole request is in: answer it or hand it to the engine. */
static void req_start(hreq_t *req)
{
    hconn_t *c = req->conn;
    if (req->q.done)
        return; /* answered when its headers came */
    if (ep_local(req->ep)) {
        answer_local(req);
        return;
    }
    if (req->body.len > SN_HTTP_PARSE_INLINE && !c->h->stopping) {
        uv_work_t *w = malloc(sizeof *w);
        if (w) {
            w->data = req;
            req->q.on_worker = 1;
            if (!uv_queue_work(c->h->loop, w, build_work, build_after)) {
                c->core.n_work++;
                c->building = 1;
                return;
            }
            req->q.on_worker = 0;
            free(w);
        }
        req_fail(req, 500, "internal", "cannot queue the request", 0);
        return;
    }
    if (build(req)) {
        req_ready(req);
        return;
    }
    dispatch(req);
}

/* ---- the parser's callbacks ----------------------------------------------------------- */

/* A header is complete: keep what matters. */
static void header_done(hconn_t *c)
{
    hreq_t *req = c->cur;
    const sn__http_t *h = c->h;
    const char *v = c->hval.data ? c->hval.data : "";
    size_t len = c->hval.err ? 0 : c->hval.len;

    if (!req || c->hname_long || !c->in_value)
        goto out;
    if (ieq(c->hname, c->hname_len, "authorization")) {
        req->auth_ok = h->key && auth_ok(h, v, len);
    } else if (ieq(c->hname, c->hname_len, "expect")) {
        if (ieq(v, len, "100-continue"))
            req->want_continue = 1;
    } else if (ieq(c->hname, c->hname_len, "origin") && h->o.cors) {
        req->cors_ok = !strcmp(h->o.cors, "*") ||
                       (len == strlen(h->o.cors) &&
                        !memcmp(v, h->o.cors, len));
    }
out:
    c->hname_len = 0;
    c->hname_long = 0;
    c->in_value = 0;
    sn__buf_free(&c->hval);
}

static int count_head(hconn_t *c, size_t n)
{
    c->n_head += n;
    if (c->n_head <= SN_HTTP_MAX_HEADER)
        return 0;
    if (c->cur && !c->cur->q.done)
        req_fail(c->cur, 431, "too_large", "the request line and headers are "
                 "longer than 64 KiB", 1);
    return -1;
}

static int on_message_begin(http_parser *p)
{
    hconn_t *c = p->data;
    c->cur = req_new(c);
    c->n_head = 0;
    c->hname_len = 0;
    c->hname_long = 0;
    c->in_value = 0;
    sn__buf_free(&c->hval);
    return c->cur ? 0 : -1;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    hconn_t *c = p->data;
    if (count_head(c, len))
        return -1;
    sn__buf_put(&c->cur->url, at, len);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    hconn_t *c = p->data;
    if (count_head(c, len))
        return -1;
    if (c->in_value)
        header_done(c);
    if (c->hname_len + len >= sizeof c->hname) {
        c->hname_long = 1;
    } else {
        memcpy(c->hname + c->hname_len, at, len);
        c->hname_len += len;
    }
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    hconn_t *c = p->data;
    if (count_head(c, len))
        return -1;
    if (!c->in_value) {
        c->in_value = 1;
        sn__buf_init(&c->hval, SN_HTTP_MAX_HVALUE);
    }
    sn__buf_put(&c->hval, at, len);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    hconn_t *c = p->data;
    hreq_t *req = c->cur;
    sn__http_t *h = c->h;
    char msg[160];

    if (c->in_value)
        header_done(c);
    req->method = p->method;
    req->http10 = p->http_major == 1 && p->http_minor == 0;
    req->keep_alive = http_should_keep_alive(p) != 0;
    if (!req->keep_alive)
        req->close_after = 1;
    /* An answer before the body (401, 404, 405, 400) is sent once the
     * body is in and dropped -- unless the client waits for a 100
     * Continue: then at once, and the connection ends. Every path but
     * /health (and CORS preflights) needs the key, unknown ones too. */
    int route_rc = route(req);
    if (req->ep != EP_HEALTH && req->ep != EP_PREFLIGHT && h->key &&
        !req->auth_ok) {
        if (route_rc) { /* answered by route: answer 401 instead */
            req->q.done = 0;
            req->allow[0] = '\0';
        }
        req_fail(req, 401, "invalid_api_key",
                 "missing or wrong API key: send 'Authorization: Bearer "
                 "KEY'", req->want_continue);
        return 0;
    }
    if (route_rc) {
        if (req->want_continue)
            req->close_after = 1, c->stop_parsing = 1;
        return 0;
    }
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > h->o.max_body) {
        snprintf(msg, sizeof msg, "the body is longer than %zu bytes",
                 h->o.max_body);
        req_fail(req, 413, "too_large", msg, 1);
        return 0;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    hconn_t *c = p->data;
    hreq_t *req = c->cur;
    char msg[160];
    if (req->q.done)
        return 0; /* answered already: dropped */
    sn__buf_put(&req->body, at, len);
    req->n_bytes += len;
    c->n_bytes += len;
    if (req->body.err) {
        snprintf(msg, sizeof msg, "the body is longer than %zu bytes",
                 c->h->o.max_body);
        req_fail(req, req->body.err == SN_ETOOBIG ? 413 : 500,
                 req->body.err == SN_ETOOBIG ? "too_large" : "internal",
                 req->body.err == SN_ETOOBIG ? msg : "out of memory", 1);
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    hconn_t *c = p->data;
    hreq_t *req = c->cur;
    c->cur = NULL;
    req->complete = 1;
    req_start(req);
    http_parser_pause(p, 1); /* one request at a time, in order */
    return 0;
}

/* ---- connections ------------------------------------------------------------------- */

static void conn_free(hconn_t *c)
{
    sn__http_t *h = c->h;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    h->n_conns--;
    __atomic_sub_fetch(&h->ops->n_conns, 1, __ATOMIC_RELAXED);
    sn__log_debug("http %llu: freed", (unsigned long long)c->serial);
    sn__buf_free(&c->hval);
    free(c->rb.data);
    free(c);
    http_maybe_closed(h);
}

static void conn_maybe_free(hconn_t *c)
{
    if (c->core.closing && !c->n_handles && !c->core.n_work && !c->core.n_writes)
        conn_free(c);
}

static void on_handle_closed(uv_handle_t *hd)
{
    hconn_t *c = hd->data;
    c->n_handles--;
    conn_maybe_free(c);
}

static void conn_close(hconn_t *c)
{
    if (c->core.closing) {
        conn_maybe_free(c);
        return;
    }
    c->core.closing = 1;
    c->reading = 0;
    c->cur = NULL;
    sn__conn_drop_all(&c->core);
    sn__log_debug("http %llu: closing", (unsigned long long)c->serial);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static int conn_full(const hconn_t *c)
{
    return c->core.n_reqs >= SN_HTTP_CONN_MAX_REQS ||
           c->n_bytes >= SN_HTTP_CONN_MAX_BYTES ||
           c->core.budget.wbytes >= SN_HTTP_WBUF_HIGH;
}

static void on_timer(uv_timer_t *t)
{
    hconn_t *c = t->data;
    if (c->core.closing)
        return;
    if (c->lingering) {
        conn_close(c);
        return;
    }
    if (c->core.n_work)
        return; /* our turn, not the client's */
    sn__log_debug("http %llu: idle for %d ms; closing",
                  (unsigned long long)c->serial, c->h->o.idle_ms);
    conn_close(c);
}

/* The idle clock runs while the connection waits on its client: nothing
 * of it on a worker. Restarted by every read and write. */
static void conn_timer_update(hconn_t *c)
{
    if (c->core.closing || c->lingering)
        return;
    if (c->core.n_work)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, (uint64_t)c->h->o.idle_ms, 0);
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    hconn_t *c = hd->data;
    (void)suggested;
    if (c->lingering) /* reading to drop: reuse the start of the buffer */
        c->rb.start = c->rb.len = 0;
    sn__rbuf_room(&c->rb, SN_HTTP_READ_CHUNK, &buf->base, &buf->len);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    hconn_t *c = s->data;
    (void)buf;
    if (nread > 0) {
        if (c->lingering)
            return; /* dropped */
        c->rb.len += (size_t)nread;
        conn_timer_update(c);
        conn_process(c);
        return;
    }
    if (nread == 0)
        return;
    if (c->reading) {
        uv_read_stop(s);
        c->reading = 0;
    }
    if (nread == UV_EOF && !c->lingering) {
        c->eof = 1;
        conn_process(c);
        if (!c->core.closing && !c->core.n_reqs)
            conn_close(c);
        return;
    }
    conn_close(c);
}

/* A request that could not be parsed: 400 (or 431), then close. */
static void conn_bad_request(hconn_t *c)
{
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    hreq_t *req = c->cur;
    char msg[160];
    c->stop_parsing = 1;
    if (req && req->q.done)
        return; /* a callback answered it (413, 431) */
    if (!req && !(req = req_new(c))) {
        conn_close(c);
        return;
    }
    c->cur = NULL;
    req->complete = 1;
    if (e == HPE_HEADER_OVERFLOW) {
        req_fail(req, 431, "too_large", "the request line and headers are "
                 "too long", 1);
        return;
    }
    snprintf(msg, sizeof msg, "malformed HTTP request: %s",
             http_errno_description(e));
    req_fail(req, 400, "bad_request", msg, 1);
}

/* Push buffered bytes through the parser while the limits allow, then
 * read more if they still do. */
static void conn_process(hconn_t *c)
{
    sn__http_t *h = c->h;
    while (!c->core.closing && !c->stop_parsing && !c->building &&
           !conn_full(c) && (c->rb.start < c->rb.len || (c->eof && c->cur))) {
        size_t avail = c->rb.len - c->rb.start;
        size_t n = http_parser_execute(&c->parser, &h->settings,
                                       avail ? c->rb.data + c->rb.start : NULL,
                                       avail);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            c->rb.start += n;
            continue;
        }
        c->rb.start += avail ? n : 0;
        if (e != HPE_OK || c->parser.upgrade) {
            if (c->parser.upgrade && e == HPE_OK) {
                /* no upgrades here: answer and close */
                hreq_t *req = c->cur;
                c->stop_parsing = 1;
                if (req && !req->q.done)
                    req_fail(req, 400, "bad_request",
                             "protocol upgrades are not supported", 1);
            } else {
                conn_bad_request(c);
            }
            break;
        }
        if (!avail)
            break; /* EOF told to the parser */
    }
    if (c->core.closing)
        return;
    conn_flush(c);
    if (c->core.closing)
        return;
    int want = !c->eof && !c->stop_parsing && !c->building && !h->stopping &&
               !conn_full(c);
    if (c->lingering)
        want = 1;
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read)) {
            conn_close(c);
            return;
        }
        c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
        if (conn_full(c))
            sn__log_debug("http %llu: paused: %d requests, %zu body bytes "
                          "unanswered, %zu response bytes unread",
                          (unsigned long long)c->serial, c->core.n_reqs,
                          c->n_bytes, c->core.budget.wbytes);
    }
}

static void on_shutdown(uv_shutdown_t *sd, int status)
{
    hconn_t *c = sd->data;
    (void)status;
    free(sd);
    c->core.n_writes--;
    if (c->core.closing) {
        conn_maybe_free(c);
        return;
    }
    /* read and drop what the client still sends, for a moment */
    c->lingering = 1;
    uv_timer_start(&c->timer, on_timer, SN_HTTP_LINGER_MS, 0);
    conn_process(c);
}

/* Nothing more to say: close, or shut the write side and linger. */
static void conn_end(hconn_t *c)
{
    uv_shutdown_t *sd = malloc(sizeof *sd);
    if (c->eof || !sd ||
        uv_shutdown(sd, (uv_stream_t *)&c->tcp, on_shutdown)) {
        free(sd);
        conn_close(c);
        return;
    }
    sd->data = c;
    c->core.n_writes++;
    c->stop_parsing = 1;
}

static const char continue_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

typedef struct {
    uv_write_t w;
    hreq_t *req;    /* a response's last bytes (freed once written), or
                     * NULL: a piece of one, or the 100 Continue of c's
                     * head request */
    hconn_t *c;
    size_t len;
    char *own[2];   /* a piece's bytes (head, body), owned here */
} hwrite_t;

/* The head's response goes in pieces: make the next one once the
 * responses not yet written leave room for it. */
static void conn_more(hconn_t *c)
{
    if (sn__conn_more(&c->core))
        conn_timer_update(c); /* work in flight: no idle close */
}

static void on_write(uv_write_t *uw, int status)
{
    hwrite_t *w = (hwrite_t *)uw;
    hreq_t *req = w->req;
    hconn_t *c = w->c;
    sn__http_t *h = c->h;
    int piece = w->own[0] || w->own[1];
    sn__budget_taken(&c->core.budget, w->len);
    c->core.n_writes--;
    free(w->own[0]);
    free(w->own[1]);
    free(w);
    if (!req) { /* a piece or the interim response: its request stays */
        if (c->core.closing)
            conn_maybe_free(c);
        else if (status < 0)
            conn_close(c);
        else if (piece) {
            conn_more(c);
            sn__conn_release_held(&c->core);
            conn_timer_update(c);
            conn_process(c);
        }
        return;
    }
    int end = req->close_after;
    record(h, req);
    req_free(req);
    if (c->core.closing) {
        conn_maybe_free(c);
        return;
    }
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (end) {
        conn_end(c);
        return;
    }
    sn__conn_release_held(&c->core);
    conn_timer_update(c);
    conn_process(c);
    if (!c->core.closing && !c->core.n_reqs && (c->eof || h->stopping))
        conn_close(c);
}

/* Write req's response (piece: a piece of it, whose bytes the write
 * takes), or with req NULL a 100 Continue. */
static int write_req(hconn_t *c, hreq_t *req, int piece)
{
    hwrite_t *w = calloc(1, sizeof *w);
    uv_buf_t b[2];
    unsigned n = 0;
    if (!w)
        return -ENOMEM;
    w->req = piece ? NULL : req;
    w->c = c;
    if (req) {
        if (req->head.len)
            b[n++] = uv_buf_init(req->head.data, (unsigned)req->head.len);
        if (req->out.len)
            b[n++] = uv_buf_init(req->out.data, (unsigned)req->out.len);
        w->len = req->head.len + req->out.len;
    } else {
        b[n++] = uv_buf_init((char *)continue_100, sizeof continue_100 - 1);
        w->len = sizeof continue_100 - 1;
    }
    int rc = uv_write(&w->w, (uv_stream_t *)&c->tcp, b, n, on_write);
    if (rc) {
        free(w);
        return rc;
    }
    if (piece) { /* the bytes go with the write */
        w->own[0] = req->head.data;
        w->own[1] = req->out.data;
        req->head.data = req->out.data = NULL;
        req->head.len = req->head.cap = req->out.len = req->out.cap = 0;
        req->q.done = 0;
    }
    if (req)
        sn__budget_sent(&c->core.budget, &req->q.slot, w->len);
    else
        c->core.budget.wbytes += w->len; /* 100 Continue */
    c->core.n_writes++;
    return 0;
}

/* Write the responses ready at the head of the FIFO; a request at the
 * head that waits for its body gets its 100 Continue. A piece of a
 * response leaves its request at the head, to make the next. */
static void conn_flush(hconn_t *c)
{
    while (!c->core.closing && c->core.head) {
        hreq_t *req = HEAD(c);
        if (!req->q.done) {
            if (req->want_continue && !req->continued && !req->complete &&
                !c->stop_parsing) {
                req->continued = 1;
                if (write_req(c, NULL, 0)) {
                    conn_close(c);
                    return;
                }
            }
            break;
        }
        if (!req->complete && !req->close_after) {
            /* answered early (401, 404...): the body is still coming and
             * read to drop; respond once it is in, to stay in step */
            break;
        }
        if (req->q.r.in_pieces && req->q.r.code) {
            /* failed after some of its response went: no answer */
            sn__log_warn("http %llu: response failed after its first "
                         "pieces; closing", (unsigned long long)c->serial);
            conn_close(c);
            return;
        }
        int piece = req->q.r.more;
        if (piece && req->head.len + req->out.len == 0) {
            req->q.done = 0; /* nothing to say yet */
            req->q.slot.want_more = 1;
            conn_more(c);
            break;
        }
        if (!piece) {
            sn__conn_pop(&c->core);
            if (c->cur == req)
                c->cur = NULL;
        }
        if (write_req(c, req, piece)) {
            if (!piece)
                req_free(req);
            conn_close(c);
            return;
        }
        if (piece) {
            req->q.slot.want_more = 1;
            conn_more(c);
            break;
        }
        if (req->close_after) {
            /* nothing after this one: drop what else was queued */
            c->stop_parsing = 1;
            break;
        }
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    sn__http_t *h = server->data;
    if (status < 0) {
        sn__log_warn("http accept: %s", uv_strerror(status));
        return;
    }
    hconn_t *c = calloc(1, sizeof *c);
    if (!c) {
        sn__log_error("http accept: out of memory");
        return;
    }
    c->h = h;
    c->serial = ++h->n_serial;
    c->core.ops = &http_ops;
    c->core.budget.max = SN_HTTP_REPLY_BUDGET;
    uv_tcp_init(h->loop, &c->tcp);
    uv_timer_init(h->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->n_handles = 2;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->next = h->conns;
    if (h->conns)
        h->conns->prev = c;
    h->conns = c;
    h->n_conns++;
    __atomic_add_fetch(&h->ops->n_conns, 1, __ATOMIC_RELAXED);
    if (uv_accept(server, (uv_stream_t *)&c->tcp)) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    sn__log_debug("http %llu: open (%d connections)",
                  (unsigned long long)c->serial, h->n_conns);
    if (h->n_conns > h->o.n_conns_max) {
        hreq_t *req = req_new(c);
        sn__log_warn("http %llu: refused: %d connections is the limit",
                     (unsigned long long)c->serial, h->o.n_conns_max);
        if (!req) {
            conn_close(c);
            return;
        }
        req->complete = 1;
        c->stop_parsing = 1;
        req_fail(req, 503, "too_many", "too many connections", 1);
        conn_flush(c);
        return;
    }
    conn_timer_update(c);
    conn_process(c);
}

/* ---- completions from the workers ---------------------------------------------- */

/* The engine's callback, on the thread that finished: format the response
 * there, then queue the request for the loop. */
/* A piece of the engine's reply as the next bytes of the response: the
 * head with the first; chunks (HTTP/1.0: the bytes as they are, and the
 * connection's end ends them). */
static void resp_piece(hreq_t *req)
{
    sn__req_t *r = &req->q.r;
    sn__buf_t *b = &req->out;
    sn__buf_free(b);
    sn__buf_init(b, (size_t)-1);
    sn__buf_free(&req->head);
    if (r->code)
        return; /* failed after the first pieces: the connection ends */
    int first = !req->streaming;
    if (first) {
        req->streaming = 1;
        req->status = 200;
        if (req->http10)
            req->close_after = 1;
        resp_head(req, "application/json");
    }
    /* a reply line's pieces (a get): the body is its fields (as
     * put_reply_fields), without the line's end */
    sn__buf_t body;
    sn__buf_init(&body, (size_t)-1);
    if (!r->fmt && first)
        put_reply_fields(&body, &r->reply);
    else
        sn__buf_put(&body, r->reply.data, r->reply.len);
    if (!r->fmt && !first && !r->more && body.len &&
        body.data[body.len - 1] == '\n')
        body.len--;
    if (req->http10) {
        sn__buf_put(b, body.data, body.len);
        sn__buf_free(&body);
        return;
    }
    if (body.len) {
        sn__buf_printf(b, "%zx\r\n", body.len);
        sn__buf_put(b, body.data, body.len);
        sn__buf_puts(b, "\r\n");
    }
    sn__buf_free(&body);
    if (!r->more)
        sn__buf_puts(b, "0\r\n\r\n");
    sn__buf_free(&req->q.r.reply); /* copied: not held twice */
}

static void on_req_done(sn__req_t *r)
{
    hreq_t *req = HREQ_OF(r);
    sn__http_t *h = req->conn->h;
    if (r->in_pieces)
        resp_piece(req);
    else
        resp_engine(req);
    sn__done_q_push(&h->done, &req->q);
}

static void on_async(uv_async_t *a)
{
    sn__http_t *h = a->data;
    sn__done_q_drain(&h->done);
}

/* Back from the engine, its connection open: write what is ready, read
 * on. */
static void http_returned(sn__creq_t *q)
{
    hreq_t *req = HREQ_OF_Q(q);
    hconn_t *c = req->conn;
    req_ready(req);
    conn_flush(c);
    sn__conn_release_held(&c->core);
    conn_flush(c);
    conn_timer_update(c);
    conn_process(c);
}

static void http_free_req(sn__creq_t *q)
{
    req_free(HREQ_OF_Q(q));
}

static void http_maybe_free(sn__conn_core_t *core)
{
    conn_maybe_free((hconn_t *)((char *)core - offsetof(hconn_t, core)));
}

static const sn__conn_ops_t http_ops = {http_estimate, http_start,
                                        http_returned, http_free_req,
                                        http_maybe_free};

/* ---- start and stop ------------------------------------------------------------------ */

static int parse_addr(const char *addr, struct sockaddr_storage *ss,
                      int *loopback, char *err, size_t err_len)
{
    char host[256];
    const char *colon = strrchr(addr, ':'), *port;
    struct addrinfo hints, *res = NULL;
    size_t hl;
    int rc;

    if (!colon || colon == addr || !colon[1])
        return sn__derr(err, err_len, -EINVAL, "--http '%s': give HOST:PORT "
                        "(e.g. 127.0.0.1:8080, [::1]:8080)", addr);
    port = colon + 1;
    hl = (size_t)(colon - addr);
    if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']')
        addr++, hl -= 2;
    if (hl >= sizeof host)
        return sn__derr(err, err_len, -EINVAL, "--http: host too long");
    memcpy(host, addr, hl);
    host[hl] = '\0';
    for (const char *p = port; *p; p++)
        if (*p < '0' || *p > '9')
            return sn__derr(err, err_len, -EINVAL, "--http: bad port '%s'",
                            port);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(hl ? host : NULL, port, &hints, &res);
    if (rc || !res)
        return sn__derr(err, err_len, -EINVAL, "--http: cannot resolve "
                        "'%s': %s", host, gai_strerror(rc));
    memset(ss, 0, sizeof *ss);
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        *loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        *loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
                    (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) &&
                     in6->sin6_addr.s6_addr[12] == 127);
    }
    return 0;
}

int sn__http_read_key(const char *path, char **out, char *err,
                      size_t err_len)
{
    char buf[SN_HTTP_MAX_KEY + 2];
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;
    *out = NULL;
    if (fd < 0)
        return sn__derr(err, err_len, -errno, "cannot open '%s': %s", path,
                        strerror(errno));
    if (!fstat(fd, &st) && (st.st_mode & 077))
        sn__log_warn("'%s' can be read by others than its owner (mode "
                     "%03o)", path, (unsigned)(st.st_mode & 0777));
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0)
        return sn__derr(err, err_len, -errno, "cannot read '%s': %s", path,
                        strerror(errno));
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
                     buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    buf[n] = '\0';
    if (n == 0)
        return sn__derr(err, err_len, -EINVAL, "'%s' holds no key", path);
    if (n > SN_HTTP_MAX_KEY)
        return sn__derr(err, err_len, -EINVAL, "'%s': the key is longer "
                        "than %d bytes", path, SN_HTTP_MAX_KEY);
    for (ssize_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] <= ' ' || buf[i] == 0x7f)
            return sn__derr(err, err_len, -EINVAL, "'%s': the key must be "
                            "one line of visible characters", path);
    *out = strdup(buf);
    return *out ? 0 : sn__derr(err, err_len, -ENOMEM, "out of memory");
}

int sn__http_check_addr(const char *addr, int *loopback, char *err,
                        size_t err_len)
{
    struct sockaddr_storage ss;
    return parse_addr(addr, &ss, loopback, err, err_len);
}

static void on_h_closed(uv_handle_t *hd)
{
    sn__http_t *h = hd->data;
    h->n_handles--;
    http_maybe_closed(h);
}

static void http_maybe_closed(sn__http_t *h)
{
    if (!h->stopping || h->n_conns)
        return;
    if (!uv_is_closing((uv_handle_t *)&h->async)) {
        uv_timer_stop(&h->drain);
        uv_close((uv_handle_t *)&h->async, on_h_closed);
        uv_close((uv_handle_t *)&h->drain, on_h_closed);
        return;
    }
    if (!h->n_handles && h->on_closed) {
        void (*cb)(void *) = h->on_closed;
        h->on_closed = NULL;
        cb(h->arg);
    }
}

int sn__http_start(struct uv_loop_s *loop, sn__ops_ctx_t *ops,
                   const sn__http_opts_t *o, sn__http_t **out, char *err,
                   size_t err_len)
{
    struct sockaddr_storage ss;
    int loopback = 0, rc;
    sn__http_t *h;

    *out = NULL;
    if ((rc = parse_addr(o->addr, &ss, &loopback, err, err_len)))
        return rc;
    if (!loopback && !o->api_key)
        return sn__derr(err, err_len, -EPERM, "--http '%s' is not a loopback "
                        "address: give --api-key-file too", o->addr);
    h = calloc(1, sizeof *h);
    if (!h)
        return sn__derr(err, err_len, -ENOMEM, "out of memory");
    h->loop = loop;
    h->ops = ops;
    h->o = *o;
    if (!h->o.max_body)
        h->o.max_body = SN_MAX_LINE_DEFAULT;
    if (h->o.idle_ms <= 0)
        h->o.idle_ms = 60000;
    if (h->o.n_conns_max <= 0)
        h->o.n_conns_max = 512;
    if (o->api_key) {
        h->key = (char *)o->api_key;
        h->key_len = strlen(o->api_key);
    }
    http_parser_settings_init(&h->settings);
    h->settings.on_message_begin = on_message_begin;
    h->settings.on_url = on_url;
    h->settings.on_header_field = on_header_field;
    h->settings.on_header_value = on_header_value;
    h->settings.on_headers_complete = on_headers_complete;
    h->settings.on_body = on_body;
    h->settings.on_message_complete = on_message_complete;
    h->done.async = &h->async;
    if (pthread_mutex_init(&h->done.mu, NULL)) {
        free(h);
        return sn__derr(err, err_len, -EAGAIN, "cannot create a mutex");
    }
    h->mu_ok = 1;
    *out = h; /* the handles below are the caller's loop's from here */
    uv_async_init(loop, &h->async, on_async);
    uv_timer_init(loop, &h->drain);
    uv_tcp_init(loop, &h->listener);
    h->async.data = h->drain.data = h->listener.data = h;
    h->n_handles = 3;
    if ((rc = uv_tcp_bind(&h->listener, (const struct sockaddr *)&ss, 0)) ||
        (rc = uv_listen((uv_stream_t *)&h->listener, 511, on_connection)))
        return sn__derr(err, err_len, rc, "cannot listen on '%s': %s",
                        o->addr, uv_strerror(rc));
    sn__log_info("http: listening on '%s'%s%s%s", o->addr,
                 h->key ? ", API key required" : ", no API key (loopback)",
                 o->cors ? ", CORS for " : "", o->cors ? o->cors : "");
    return 0;
}

static void on_drain_timeout(uv_timer_t *t)
{
    sn__http_t *h = t->data;
    for (hconn_t *c = h->conns, *next; c; c = next) {
        next = c->next;
        if (!c->core.closing && !c->core.n_work)
            conn_close(c);
    }
}

void sn__http_stop(sn__http_t *h, void (*on_closed)(void *arg), void *arg)
{
    h->stopping = 1;
    h->on_closed = on_closed;
    h->arg = arg;
    uv_close((uv_handle_t *)&h->listener, on_h_closed);
    for (hconn_t *c = h->conns, *next; c; c = next) {
        next = c->next;
        if (c->core.closing)
            continue;
        if (c->reading) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = 0;
        }
        c->stop_parsing = 1;
        if (!c->core.n_work && !c->core.n_writes)
            conn_close(c);
    }
    uv_timer_start(&h->drain, on_drain_timeout, SN_HTTP_DRAIN_MS, 1000);
    http_maybe_closed(h);
}

void sn__http_free(sn__http_t *h)
{
    if (!h)
        return;
    if (h->mu_ok)
        pthread_mutex_destroy(&h->done.mu);
    free(h);
}
