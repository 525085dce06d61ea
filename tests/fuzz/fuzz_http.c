/*
 * fuzz_http.c -- libFuzzer target for the HTTP transport's request layer
 * (daemon/http.c, compiled in; the daemon files it calls linked): bytes from
 * a client go through the HTTP parser and http.c's own callbacks (request
 * line and header limits, the API key, Expect, Origin, body limits,
 * routing, %-decoding), and each complete request's body is turned into
 * an engine request (build(): OpenAI, TEI, REST and op bodies to the
 * protocol's parsed form). No socket, no model, no engine: the harness
 * stops where http.c would hand the request to the engine.
 *
 * The first byte of the input picks the options (an API key or not, CORS
 * or not) and where the rest is cut in two (the parser takes bytes in
 * whatever pieces they come); the rest is what a client sent. Checked for
 * every request read: an answer (an error found by the transport or by
 * build) has a status line and headers ending in a blank line and, unless
 * it has no body, a body of valid JSON that is an object with "error"; a
 * request that build accepts has a known op; nothing leaks (the requests
 * and their parts are freed as the transport frees them).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../daemon/http.c" /* the engine's files are linked in */

static void die(const char *what, const hreq_t *req)
{
    fprintf(stderr, "fuzz_http: %s: %.*s%.*s\n", what,
            (int)(req->head.len > 300 ? 300 : req->head.len),
            req->head.data ? req->head.data : "",
            (int)(req->out.len > 300 ? 300 : req->out.len),
            req->out.data ? req->out.data : "");
    abort();
}

/* An answer as it would be written. */
static void check_answer(const hreq_t *req)
{
    const sn__buf_t *h = &req->head, *b = &req->out;
    if (h->err || h->len < 16 || memcmp(h->data, "HTTP/1.1 ", 9) ||
        h->len < 4 || memcmp(h->data + h->len - 4, "\r\n\r\n", 4))
        die("bad head", req);
    if (req->status == 204 || req->ep == EP_PREFLIGHT)
        return;
    json_t *j = json_loadb(b->data ? b->data : "", b->len, 0, NULL);
    if (!j || !json_is_object(j) ||
        (req->status >= 400 && !json_object_get(j, "error")))
        die("bad body", req);
    json_decref(j);
}

/* Where http.c would start the request: answer it or build it. */
static int on_complete(http_parser *p)
{
    hconn_t *c = p->data;
    hreq_t *req = c->cur;
    c->cur = NULL;
    req->complete = 1;
    if (!req->q.done && ep_local(req->ep)) {
        answer_local(req);
    } else if (!req->q.done) {
        if (build(req))
            req_ready(req);
        else if (!req->q.r.p.has_op || (unsigned)req->q.r.p.op >= SN_OP_COUNT)
            die("built without an op", req);
    }
    if (req->q.done)
        check_answer(req);
    if (getenv("FUZZ_HTTP_VERBOSE")) /* what a corpus file reaches */
        fprintf(stderr, "%s: %s\n", ep_names[req->ep],
                req->q.done ? (req->head.data ? req->head.data : "?")
                          : sn_op_name(req->q.r.p.op));
    http_parser_pause(p, 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sn__ops_ctx_t ops = {.model_id = "fuzz-model"};
    static sn__http_t h;
    static int init;
    if (size < 1 || size > (1u << 20))
        return 0;
    if (!init) {
        sn__log_level = SN__LOG_ERROR;
        init = 1;
    }
    memset(&h, 0, sizeof h);
    h.ops = &ops;
    h.o.max_body = 64u << 10;
    h.o.cors = data[0] & 1 ? "https://example.org" : NULL;
    h.key = data[0] & 2 ? "secret" : NULL;
    h.key_len = h.key ? 6 : 0;
    http_parser_settings_init(&h.settings);
    h.settings.on_message_begin = on_message_begin;
    h.settings.on_url = on_url;
    h.settings.on_header_field = on_header_field;
    h.settings.on_header_value = on_header_value;
    h.settings.on_headers_complete = on_headers_complete;
    h.settings.on_body = on_body;
    h.settings.on_message_complete = on_complete;

    hconn_t *c = calloc(1, sizeof *c);
    if (!c)
        return 0;
    c->h = &h;
    c->core.ops = &http_ops;
    c->core.budget.max = SN_HTTP_REPLY_BUDGET;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    const char *in = (const char *)data + 1;
    size_t len = size - 1, cut = len ? (size_t)(data[0] >> 2) * len / 64 : 0;
    size_t pos = 0;
    /* two pieces, each as conn_process feeds them */
    for (int piece = 0; piece < 2 && !c->stop_parsing; piece++) {
        size_t end = piece ? len : cut;
        while (pos < end && !c->stop_parsing) {
            size_t n = http_parser_execute(&c->parser, &h.settings, in + pos,
                                           end - pos);
            enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
            pos += n;
            if (e == HPE_PAUSED) {
                http_parser_pause(&c->parser, 0);
                continue;
            }
            if (e != HPE_OK || c->parser.upgrade) {
                if (e != HPE_OK) {
                    conn_bad_request(c);
                    if (c->core.tail && c->core.tail->done)
                        check_answer(HREQ_OF_Q(c->core.tail));
                }
                c->stop_parsing = 1;
            }
            break;
        }
    }
    while (c->core.head) {
        hreq_t *req = HEAD(c);
        sn__conn_pop(&c->core);
        req_free(req);
    }
    sn__buf_free(&c->hval);
    free(c);
    return 0;
}
