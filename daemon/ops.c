/*
 * ops.c -- what each op of the protocol does, between a parsed request and
 * its reply line.
 *
 *   embed    encoder workers: embed the texts, format the reply (in the
 *            protocol's line or a transport's format); a big reply in
 *            pieces, as the transport asks for them ("embed, in pieces")
 *   add      a worker chunks the documents (sn_chunk_text, to the model's
 *            max tokens less the prompt's), the encoder embeds the chunks,
 *            the storage lane binds the collection and adds them in one
 *            transaction; the reply leaves only after COMMIT
 *   search   the encoder embeds the query (a search by the caller's own
 *            vector skips that); at the request's turn the lane hands it
 *            to a reader thread, which searches the store in parallel
 *            with other connections' searches (the store runs faiss
 *            unlocked), and it returns through the lane to end the turn;
 *            a big reply in pieces ("replies of rows")
 *   get, delete, stats, check
 *            the lane (a get of several ids and check: rows)
 *   sense.add, sense.which
 *            word senses through the library, which encodes by itself
 *            (sn_wsd_add, sn_wsd_which): the lane starts them at the
 *            request's turn, an encoder worker runs them with its own
 *            sn_ctx_t, and they return through the lane to end the turn
 *   sense.list, sense.remove
 *            the lane (sense.list: rows)
 *
 * The op table (SN_OPS, sense/protocol.h) gives each op a route and a
 * runner: the route (the glue under "routes" below) takes the request to
 * the thread its work needs, and the runner, called there, does the work
 * and writes the reply. Adding an op is a row, a parser and a runner.
 *
 * Threads: sn__ops_dispatch() runs on the transport's loop thread and only
 * reads the model; everything else here runs on a worker or the lane and
 * touches nothing but its own request, the model (immutable) and the store
 * (which serializes itself). Each path ends in exactly one call of the
 * request's `done` callback (the transport's), with req->reply holding a
 * whole reply line -- or one call per piece of a reply in pieces
 * (req->more set on all but the last).
 *
 * Requests that touch storage get an order ticket at dispatch, in request
 * order, and always pass through the lane, failed or not (see sched.c), so
 * that add, delete, get and search of one connection take effect in the
 * order they were sent. The sense ops take tickets too; sense.add and
 * sense.which hold their connection's turn while on the worker (keep_turn),
 * because their reads and writes happen there: a connection's sense ops are
 * therefore serialized with each other and with its storage ops, while
 * other connections' run in parallel on the other workers.
 *
 * Prompts: embed uses `prompt` when given. add defaults to the model's
 * "document" or else "passage" prompt and search to its "query" prompt
 * when the model has them (e5, bge, ...); "prompt": "" turns that off.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

#define SN_CHUNK_OVERLAP_MAX 32 /* tokens shared by consecutive chunks */

#define REQ_OF_JOB(j) ((sn__req_t *)((char *)(j)-offsetof(sn__req_t, job)))
#define REQ_OF_TASK(t) ((sn__req_t *)((char *)(t)-offsetof(sn__req_t, task)))

void sn__ops_reply_error(sn__req_t *req, sn__perr_t code, const char *msg)
{
    sn__buf_free(&req->reply);
    sn__buf_init(&req->reply, (size_t)-1);
    req->code = code;
    sn__proto_reply_error(&req->reply, req->p.id_json, code, msg);
}

/* A reply that overflowed its buffer becomes an error reply. */
static void reply_check(sn__req_t *req)
{
    if (!req->reply.err)
        return;
    if (req->reply.err == SN_ETOOBIG) {
        char msg[128];
        snprintf(msg, sizeof msg, "the reply would exceed %u MiB; ask for "
                 "less per request", SN_MAX_REPLY >> 20);
        sn__ops_reply_error(req, SN__P_TOO_LARGE, msg);
    } else {
        sn__ops_reply_error(req, SN__P_INTERNAL, "out of memory");
    }
}

static void finish(sn__req_t *req)
{
    reply_check(req);
    req->done(req);
}

/* The prompt text for a request: its explicit prompt name, else the op's
 * default names in turn. Returns 0, or -1 with msg set. */
static int resolve_prompt(sn__req_t *req, const char *const *defaults,
                          const char **out, char *msg, size_t msg_len)
{
    const sn_model_t *m = req->ops->model;
    *out = NULL;
    if (req->p.has_prompt) {
        if (!*req->p.prompt)
            return 0;
        *out = sn_model_prompt(m, req->p.prompt);
        if (!*out) {
            snprintf(msg, msg_len, "model has no prompt named '%s'",
                     req->p.prompt);
            return -1;
        }
        return 0;
    }
    for (int i = 0; defaults && defaults[i] && !*out; i++)
        *out = sn_model_prompt(m, defaults[i]);
    return 0;
}

/* ---- embed ------------------------------------------------------------------ */

/* The protocol's reply line, as an embed format (daemon.h): head,
 * vectors, tokens, tail. */
static int line_head(sn__req_t *req, sn__buf_t *b)
{
    const sn__job_t *job = &req->job;
    int dim = job->n ? job->out[0].dim : (job->opts.dimensions
                                              ? job->opts.dimensions
                                              : sn_model_dim(req->ops->model));
    sn__proto_reply_begin(b, req->p.id_json);
    sn__buf_printf(b, ",\"dim\":%d,\"n_tokens\":[", dim);
    for (int i = 0; i < job->n; i++)
        sn__buf_printf(b, i ? ",%d" : "%d", job->out[i].enc.n_tokens);
    sn__buf_puts(b, "],\"truncated\":[");
    for (int i = 0; i < job->n; i++)
        sn__buf_puts(b, job->out[i].enc.truncated ? (i ? ",true" : "true")
                                                  : (i ? ",false" : "false"));
    sn__buf_puts(b, "],\"embeddings\":[");
    return 0;
}

static void line_vector(sn__req_t *req, sn__buf_t *b, int i)
{
    const sn_embedding_t *e = &req->job.out[i];
    if (i)
        sn__buf_put(b, ",", 1);
    sn__buf_floats(b, e->sentence, e->dim);
}

static void line_mid(sn__req_t *req, sn__buf_t *b)
{
    sn__buf_put(b, "]", 1);
    if (req->p.want_tokens)
        sn__buf_puts(b, ",\"tokens\":[");
}

static void line_tokens(sn__req_t *req, sn__buf_t *b, int i,
                        const sn_embedding_t *e, int t0, int t1)
{
    const sn_tokenizer_t *tok = sn_model_tokenizer(req->ops->model);
    if (!t0)
        sn__buf_puts(b, i ? ",[" : "[");
    for (int t = t0; t < t1 && !b->err; t++) {
        const char *piece = sn_tokenizer_piece(tok, e->enc.ids[t]);
        sn__buf_printf(b, "%s{\"id\":%d,\"token\":", t ? "," : "",
                       (int)e->enc.ids[t]);
        sn__buf_json_str(b, piece ? piece : "", piece ? strlen(piece) : 0);
        sn__buf_printf(b, ",\"start\":%d,\"end\":%d,\"embedding\":",
                       (int)e->enc.start[t], (int)e->enc.end[t]);
        sn__buf_floats(b, e->tokens + (size_t)t * e->hidden, e->hidden);
        sn__buf_put(b, "}", 1);
    }
    if (t1 == e->enc.n_tokens)
        sn__buf_put(b, "]", 1);
}

static void line_tail(sn__req_t *req, sn__buf_t *b)
{
    if (req->p.want_tokens)
        sn__buf_put(b, "]", 1);
    sn__proto_reply_end(b);
}

static const sn__embed_fmt_t line_fmt = {line_head, line_vector, line_mid,
                                         line_tokens, line_tail};

static const sn__embed_fmt_t *fmt_of(const sn__req_t *req)
{
    return req->fmt ? req->fmt : &line_fmt;
}

/* The encoders' vectors (and token states), as the reply, whole. */
static void run_embed(sn__req_t *req, sn_ctx_t *ctx)
{
    const sn__embed_fmt_t *f = fmt_of(req);
    const sn__job_t *job = &req->job;
    sn__buf_t *b = &req->reply;

    (void)ctx;
    if (f->head(req, b))
        return; /* an error reply */
    for (int i = 0; f->vector && i < job->n && !b->err; i++)
        f->vector(req, b, i);
    f->mid(req, b);
    for (int i = 0; req->p.want_tokens && f->tokens && i < job->n && !b->err;
         i++)
        f->tokens(req, b, i, &job->out[i], 0, job->out[i].enc.n_tokens);
    f->tail(req, b);
}

/* ---- embed, in pieces ----------------------------------------------------------
 *
 * A reply bigger than SN__STREAM_MIN is not built whole: the transport
 * takes it a piece at a time (about SN__PIECE bytes), and asks for the
 * next (sn__ops_more) once it has written the last and its client has room
 * for more. The encoders first embed every text without token states (the
 * head needs every text's token count, and the vectors come before any
 * token states); the reply's vectors are then formatted a piece at a time
 * from those, on an encoder worker at the client's turn; and the token
 * states, when asked for, are made again a few texts at a time (a text's
 * states do not depend on its batch: bit for bit the same), each piece's
 * worth when the transport asks for it, and formatted a piece at a time by
 * token ranges (a 512-token text of a 1024-wide model is ~8 MiB of JSON).
 * So what a request holds while its client does not read is its texts'
 * vectors, the states of the few texts in hand and one piece. */

enum { STREAM_VECTORS = 1, STREAM_TOKENS, STREAM_DONE, STREAM_ROWS };

/* The reply estimate past which the reply goes in pieces. */
static int embed_streams(const sn__req_t *req, size_t est)
{
    return req->p.has_op && req->p.op == SN_OP_EMBED && est > SN__STREAM_MIN;
}

/* Vectors from req->i_next into the piece, up to its size; then what
 * follows them (on to the token states, or the end). */
static void piece_vectors(sn__req_t *req)
{
    const sn__embed_fmt_t *f = fmt_of(req);
    sn__buf_t *b = &req->reply;
    int n = req->job.n;
    while (f->vector && req->i_next < n && b->len < SN__PIECE && !b->err)
        f->vector(req, b, req->i_next++);
    if (f->vector && req->i_next < n)
        return;
    f->mid(req, b);
    req->i_next = 0;
    if (req->p.want_tokens && f->tokens && n) {
        req->phase = STREAM_TOKENS;
        return;
    }
    f->tail(req, b);
    req->phase = STREAM_DONE;
}

static void piece_done(sn__req_t *req)
{
    req->more = req->phase != STREAM_DONE;
    if (req->reply.err) {
        /* out of memory: an error reply if nothing went yet; else what
         * went cannot be taken back (in_pieces: the transport ends the
         * connection) */
        req->more = 0;
        if (!req->in_pieces)
            sn__ops_reply_error(req, SN__P_INTERNAL, "out of memory");
        else
            req->code = SN__P_INTERNAL;
    }
    if (!req->more) {
        sn__job_free_out(&req->job);
        sn__job_free_out(&req->states);
    } else {
        req->in_pieces = 1; /* from now on, pieces have gone */
    }
    req->done(req); /* a piece: no reply_check (its buffer has no max) */
}

/* The encoders are done with the texts (no token states): the head and
 * the first vectors. */
static void stream_first(sn__req_t *req)
{
    sn__job_t *job = &req->job;
    /* the tokens' ids and offsets come again with their states */
    for (int i = 0; i < job->n; i++) {
        int n_tokens = job->out[i].enc.n_tokens;
        int truncated = job->out[i].enc.truncated;
        sn_encoding_free(&job->out[i].enc);
        job->out[i].enc.n_tokens = n_tokens;
        job->out[i].enc.truncated = truncated;
    }
    sn__buf_free(&req->reply);
    sn__buf_init(&req->reply, (size_t)-1);
    req->i_next = 0;
    req->phase = STREAM_VECTORS;
    if (fmt_of(req)->head(req, &req->reply)) {
        sn__job_free_out(job); /* an error reply, whole */
        req->more = 0;
        req->done(req);
        return;
    }
    piece_vectors(req);
    piece_done(req);
}

/* An encoder worker (a step at the client's turn): more vectors. */
static void piece_vectors_run(sn__job_t *pj, sn_ctx_t *ctx)
{
    (void)ctx;
    piece_vectors((sn__req_t *)((char *)pj - offsetof(sn__req_t, piece)));
}

static void piece_step_done(sn__job_t *pj)
{
    piece_done((sn__req_t *)((char *)pj - offsetof(sn__req_t, piece)));
}

/* Token states in hand into the piece, a token at a time, from text
 * k_next's token t_next, until the piece is full; then, when they are all
 * in, on to the next texts (or the end). */
static void piece_states(sn__req_t *req)
{
    const sn__embed_fmt_t *f = fmt_of(req);
    sn__buf_t *b = &req->reply;
    sn__job_t *st = &req->states;

    while (req->k_next < st->n && b->len < SN__PIECE && !b->err) {
        const sn_embedding_t *e = &st->out[req->k_next];
        int n = e->enc.n_tokens, t = req->t_next;
        do {
            int t1 = t < n ? t + 1 : n;
            f->tokens(req, b, req->i_next + req->k_next, e, t, t1);
            t = t1;
        } while (t < n && b->len < SN__PIECE && !b->err);
        if (t < n) {
            req->t_next = t;
            return; /* the piece is full inside this text */
        }
        req->t_next = 0;
        req->k_next++;
    }
    if (req->k_next < st->n)
        return;
    req->i_next += st->n;
    sn__job_free_out(st);
    st->n = 0;
    req->k_next = 0;
    if (req->i_next >= req->job.n) {
        f->tail(req, b);
        req->phase = STREAM_DONE;
    }
}

/* The token states of the next texts are back: in hand, and the first
 * piece's worth of them formatted. */
static void piece_tokens_done(sn__job_t *pj)
{
    sn__req_t *req = (sn__req_t *)((char *)pj - offsetof(sn__req_t, piece));
    int64_t n_tokens = 0;
    if (pj->rc) {
        /* the same texts embedded a moment ago: only memory can fail */
        sn__log_error("embed: token states again: %s", pj->err);
        req->reply.err = pj->rc;
        sn__job_free_out(pj);
        piece_done(req);
        return;
    }
    for (int k = 0; k < pj->n; k++)
        n_tokens += pj->out[k].enc.n_tokens;
    __atomic_add_fetch(&req->ops->n_tokens, n_tokens, __ATOMIC_RELAXED);
    req->states.out = pj->out;
    req->states.n = pj->n;
    pj->out = NULL;
    req->k_next = req->t_next = 0;
    piece_states(req);
    piece_done(req);
}

/* An encoder worker (a step at the client's turn): more token states. */
static void piece_states_run(sn__job_t *pj, sn_ctx_t *ctx)
{
    (void)ctx;
    piece_states((sn__req_t *)((char *)pj - offsetof(sn__req_t, piece)));
}

static void rows_more(sn__req_t *req);

void sn__ops_more(sn__req_t *req)
{
    sn__job_t *pj = &req->piece;
    const sn_model_t *m = req->ops->model;
    sn__buf_free(&req->reply);
    sn__buf_init(&req->reply, (size_t)-1);
    if (req->rows) {
        rows_more(req);
        return;
    }
    memset(pj, 0, sizeof *pj);
    pj->client = req->client;
    if (req->phase == STREAM_VECTORS || req->states.out) {
        /* vectors, or token states in hand */
        pj->run = req->states.out ? piece_states_run : piece_vectors_run;
        pj->done = piece_step_done;
        sn__sched_submit(req->ops->sched, pj);
        return;
    }
    /* STREAM_TOKENS: the next texts whose states make about a piece */
    size_t per_token = (size_t)sn_model_hidden(m) * 12 + 64, sz = 0;
    int i = req->i_next, j = i;
    while (j < req->job.n && (j == i || sz < SN__PIECE)) {
        sz += (size_t)req->job.out[j].enc.n_tokens * per_token;
        j++;
    }
    pj->texts = req->job.texts + i;
    pj->lens = req->job.lens + i;
    pj->n = j - i;
    pj->opts = req->job.opts;
    pj->opts.want_tokens = 1;
    pj->done = piece_tokens_done;
    sn__sched_submit(req->ops->sched, pj);
}

/* ---- replies of rows, in pieces -------------------------------------------------
 *
 * A search's hits, a get's documents (of several ids), a check's damaged
 * vectors and sense.list's senses or lemmas are rows: the op's runner
 * sets req->rows, which writes the reply's head, then rows while the
 * reply holds less than a piece (SN__PIECE), then the reply's end. When
 * the rows fill more than a piece, the piece goes to the transport and
 * the next is made when it asks (sn__ops_more), on the lane: the request
 * holds its connection's turn on the lane from its first piece to its
 * last (keep_turn), so that the connection's later storage ops still take
 * effect after all of it. What it holds while its client does not read is
 * one piece and one row (the rows are read from the store a few at a time
 * as they are written: a search's hits are kept lean, their text and meta
 * read as each one's row is written). Other connections' storage ops run
 * between its pieces: each row is read whole, but the reply is not one
 * snapshot of the store (a hit deleted meanwhile is left out). A
 * transport that drops such a request between pieces gives it back
 * through sn__ops_abandon, which ends its turn. A reply that fits in one
 * piece is the same reply, made at once. */

static int search_rows(sn__req_t *req, sn__buf_t *b);
static int get_rows(sn__req_t *req, sn__buf_t *b);
static int check_rows(sn__req_t *req, sn__buf_t *b);
static int sense_list_rows(sn__req_t *req, sn__buf_t *b);
static void back_to_lane(sn__req_t *req);

/* Which requests' replies are rows, decided at dispatch (the lane must
 * know before the first piece whether the turn stays). */
static int has_rows(const sn__request_t *p)
{
    return p->op == SN_OP_SEARCH || (p->op == SN_OP_GET && p->n_ids > 1) ||
           p->op == SN_OP_CHECK || p->op == SN_OP_SENSE_LIST;
}

/* A rows function failed: an error reply if nothing went yet; else what
 * went cannot be taken back (rows_end; the transport ends the
 * connection). Returns 1: no more rows. */
static int rows_fail(sn__req_t *req, int rc, const char *err)
{
    if (!req->in_pieces) {
        sn__ops_reply_error(req, sn__perr_of(rc), err);
        return 1;
    }
    sn__log_error("%s: %s after its first pieces", sn_op_name(req->p.op),
                  err);
    req->reply.err = rc;
    return 1;
}

/* The last piece (or the whole reply): back through the lane, which ends
 * the turn. */
static void rows_end(sn__req_t *req)
{
    req->more = 0;
    if (req->in_pieces && req->reply.err) {
        sn__buf_free(&req->reply);
        req->code = SN__P_INTERNAL;
    }
    back_to_lane(req);
}

/* Rows into the reply until it holds a piece; the piece goes (the turn
 * stays with the request), or the last one, through rows_end. On a reader
 * (a search's first piece) or the lane, at the request's turn. */
static void rows_step(sn__req_t *req)
{
    if (req->rows(req, &req->reply) || req->reply.err || req->code) {
        rows_end(req);
        return;
    }
    req->more = 1;
    req->in_pieces = 1;
    req->done(req);
}

static void rows_piece(sn__task_t *task)
{
    rows_step(REQ_OF_TASK(task));
}

static void rows_more(sn__req_t *req)
{
    req->task.keep_turn = 1;
    req->task.run = rows_piece;
    sn__lane_submit(req->ops->lane, &req->task);
}

static void abandoned(sn__task_t *task)
{
    sn__req_t *req = REQ_OF_TASK(task);
    req->done(req);
}

int sn__ops_abandon(sn__req_t *req)
{
    if (!req->rows || !req->more)
        return 0;
    req->more = 0;
    req->task.keep_turn = 0;
    req->task.run = abandoned;
    sn__lane_submit(req->ops->lane, &req->task);
    return 1;
}

/* ---- add -------------------------------------------------------------------- */

/* Byte offset of code point `cp` in s[0..len), walking from a cursor
 * (cur_cp, cur_byte) that only moves forward; restarts when cp is behind. */
static size_t cp_to_byte(const char *s, size_t len, int32_t cp,
                         int32_t *cur_cp, size_t *cur_byte)
{
    if (cp < *cur_cp) {
        *cur_cp = 0;
        *cur_byte = 0;
    }
    while (*cur_cp < cp && *cur_byte < len) {
        (*cur_byte)++;
        while (*cur_byte < len && ((unsigned char)s[*cur_byte] & 0xC0) == 0x80)
            (*cur_byte)++;
        (*cur_cp)++;
    }
    return *cur_byte;
}

/* Tokens the prompt adds to a text (its tokens less the specials). */
static int prompt_tokens(const sn_model_t *m, const char *prompt)
{
    const sn_tokenizer_t *tok = sn_model_tokenizer(m);
    sn_encoding_t e0 = {0}, e1 = {0};
    char err[256];
    int n = 0;
    if (!prompt || !*prompt)
        return 0;
    if (!sn_tokenizer_encode(tok, "", 0, 0, &e0, err, sizeof err) &&
        !sn_tokenizer_encode(tok, prompt, strlen(prompt), 0, &e1, err,
                             sizeof err))
        n = e1.n_tokens - e0.n_tokens;
    sn_encoding_free(&e0);
    sn_encoding_free(&e1);
    return n > 0 ? n : 0;
}

/* On a worker: split every document into chunks; the job's texts become the
 * chunks, pointing into the documents' texts. */
static void add_prepare(sn__job_t *job)
{
    sn__req_t *req = REQ_OF_JOB(job);
    const sn_model_t *m = req->ops->model;
    const sn__request_t *p = &req->p;
    int32_t **spans = NULL;
    int *n_spans = NULL, total = 0;
    int max_tokens = sn_model_max_tokens(m) - prompt_tokens(m,
                                                            job->opts.prompt);
    int overlap = max_tokens / 8;
    char err[256];

    if (overlap > SN_CHUNK_OVERLAP_MAX)
        overlap = SN_CHUNK_OVERLAP_MAX;
    if (max_tokens < 3) {
        job->rc = SN_EMODEL;
        snprintf(job->err, sizeof job->err, "the prompt leaves no room for "
                 "text in the model's %d tokens", sn_model_max_tokens(m));
        return;
    }
    spans = calloc((size_t)(p->n_docs ? p->n_docs : 1), sizeof *spans);
    n_spans = calloc((size_t)(p->n_docs ? p->n_docs : 1), sizeof *n_spans);
    req->doc_chunks = calloc((size_t)(p->n_docs ? p->n_docs : 1),
                             sizeof *req->doc_chunks);
    if (!spans || !n_spans || !req->doc_chunks)
        goto oom;
    for (int d = 0; d < p->n_docs; d++) {
        int rc = sn_chunk_text(sn_model_tokenizer(m), p->docs[d].text,
                               p->docs[d].text_len, max_tokens, overlap,
                               &spans[d], &n_spans[d], err, sizeof err);
        if (rc) {
            job->rc = rc;
            snprintf(job->err, sizeof job->err, "docs[%d]: %.400s", d, err);
            goto out;
        }
        if (n_spans[d] < 1 || n_spans[d] > SN_MAX_CHUNKS - total) {
            job->rc = SN_ETOOBIG;
            snprintf(job->err, sizeof job->err,
                     "the documents make more than %d chunks; send fewer "
                     "per request", SN_MAX_CHUNKS);
            goto out;
        }
        req->doc_chunks[d] = n_spans[d];
        total += n_spans[d];
    }
    req->texts_own = calloc((size_t)(total ? total : 1),
                            sizeof *req->texts_own);
    req->lens_own = calloc((size_t)(total ? total : 1), sizeof *req->lens_own);
    req->spans = calloc((size_t)(total ? total : 1) * 2, sizeof *req->spans);
    if (!req->texts_own || !req->lens_own || !req->spans)
        goto oom;
    int k = 0;
    for (int d = 0; d < p->n_docs; d++) {
        const char *s = p->docs[d].text;
        size_t len = p->docs[d].text_len, b0 = 0, b1 = 0;
        int32_t c0 = 0, c1 = 0;
        for (int i = 0; i < n_spans[d]; i++, k++) {
            int32_t start = spans[d][2 * i], end = spans[d][2 * i + 1];
            if (end < start)
                end = start;
            size_t bs = cp_to_byte(s, len, start, &c0, &b0);
            size_t be = cp_to_byte(s, len, end, &c1, &b1);
            req->texts_own[k] = (char *)s + bs;
            req->lens_own[k] = be - bs;
            req->spans[2 * k] = start;
            req->spans[2 * k + 1] = end;
        }
    }
    job->texts = (const char *const *)req->texts_own;
    job->lens = req->lens_own;
    job->n = total;
    goto out;
oom:
    job->rc = -ENOMEM;
    snprintf(job->err, sizeof job->err, "out of memory");
out:
    for (int d = 0; spans && d < p->n_docs; d++)
        free(spans[d]);
    free(spans);
    free(n_spans);
}

/* The lane, at the request's turn: store the documents with their chunks'
 * vectors in one transaction. */
static void run_add(sn__req_t *req, sn_ctx_t *ctx)
{
    sn__ops_ctx_t *ops = req->ops;
    sn__job_t *job = &req->job;
    const sn__request_t *p = &req->p;
    sn_doc_in_t *docs = NULL;
    sn_chunk_in_t *chunks = NULL;
    char **ids = NULL, err[512] = "";
    int rc, dim = sn_model_dim(ops->model);

    (void)ctx;
    docs = calloc((size_t)(p->n_docs ? p->n_docs : 1), sizeof *docs);
    chunks = calloc((size_t)(job->n ? job->n : 1), sizeof *chunks);
    ids = calloc((size_t)(p->n_docs ? p->n_docs : 1), sizeof *ids);
    if (!docs || !chunks || !ids) {
        sn__ops_reply_error(req, SN__P_INTERNAL, "out of memory");
        goto out;
    }
    for (int k = 0; k < job->n; k++) {
        /* the store wants unit vectors; not every model normalizes */
        sn_vec_normalize(job->out[k].sentence, job->out[k].dim);
        chunks[k].start = req->spans[2 * k];
        chunks[k].end = req->spans[2 * k + 1];
        chunks[k].vec = job->out[k].sentence;
    }
    for (int d = 0, k = 0; d < p->n_docs; d++) {
        docs[d].id = p->docs[d].id;
        docs[d].text = p->docs[d].text;
        docs[d].text_len = p->docs[d].text_len;
        docs[d].meta_json = p->docs[d].meta_json;
        docs[d].chunks = chunks + k;
        docs[d].n_chunks = req->doc_chunks[d];
        k += req->doc_chunks[d];
    }
    /* One transaction: a new collection exists only with its documents. */
    rc = sn_store_add_create(ops->store, p->collection, ops->model_id, dim,
                             (sn_index_kind_t)p->index_kind, docs, p->n_docs,
                             ids, err, sizeof err);
    if (rc) {
        sn__ops_reply_error(req, sn__perr_of(rc), err);
        goto out;
    }
    sn__buf_t *b = &req->reply;
    sn__proto_reply_begin(b, p->id_json);
    sn__buf_puts(b, ",\"ids\":[");
    for (int d = 0; d < p->n_docs; d++) {
        if (d)
            sn__buf_put(b, ",", 1);
        sn__buf_json_str(b, ids[d] ? ids[d] : "", ids[d] ? strlen(ids[d]) : 0);
    }
    sn__buf_puts(b, "],\"chunks\":[");
    for (int d = 0; d < p->n_docs; d++)
        sn__buf_printf(b, d ? ",%d" : "%d", req->doc_chunks[d]);
    /* chunks are cut to fit the model; one whose text tokenizes longer on
     * its own than in its document is cut, and counted here */
    sn__buf_puts(b, "],\"truncated\":[");
    for (int d = 0, k = 0; d < p->n_docs; d++) {
        int n_cut = 0;
        for (int i = 0; i < req->doc_chunks[d]; i++, k++)
            n_cut += job->out[k].enc.truncated > 0;
        sn__buf_printf(b, d ? ",%d" : "%d", n_cut);
    }
    sn__buf_put(b, "]", 1);
    sn__proto_reply_end(b);
out:
    for (int d = 0; ids && d < p->n_docs; d++)
        free(ids[d]);
    free(ids);
    free(docs);
    free(chunks);
}

/* ---- search ----------------------------------------------------------------- */

/* How much of the query the model knows: the share of its non-space
 * characters that are not inside an unknown token. 1 for a model without
 * an unknown token; 0 for an empty query. What hybrid search weighs the
 * cosine by (store.h). */
static float query_known(const sn_tokenizer_t *tok, const char *text,
                         size_t len, const sn_encoding_t *enc)
{
    int32_t unk = sn_tokenizer_unk_id(tok);
    int64_t n_chars = 0, n_unk = 0, cp = 0;
    uint8_t *in_unk;

    for (size_t i = 0; i < len; i++)
        if (((unsigned char)text[i] & 0xc0) != 0x80)
            cp++;
    if (!cp)
        return 0;
    if (unk < 0)
        return 1;
    if (!(in_unk = calloc((size_t)cp, 1)))
        return 1;
    for (int t = 0; t < enc->n_tokens; t++)
        if (!enc->special[t] && enc->ids[t] == unk)
            for (int32_t c = enc->start[t]; c < enc->end[t] && c < cp; c++)
                if (c >= 0)
                    in_unk[c] = 1;
    int64_t c = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)text[i];
        if ((b & 0xc0) == 0x80)
            continue;
        if (b != ' ' && b != '\t' && b != '\n' && b != '\r') {
            n_chars++;
            n_unk += in_unk[c];
        }
        c++;
    }
    free(in_unk);
    return n_chars ? 1.0f - (float)n_unk / (float)n_chars : 0;
}

/* Search the store in the request's mode: the hits, lean (ids, scores and
 * spans; each one's text and meta are read as its row is written,
 * search_rows). vec: the query's vector (normalized), the encoder's
 * (model_id: ours) or the caller's own (model_id NULL: any collection of
 * its dimension); NULL for a lexical search. query: the encoder's tokens
 * of the text, or NULL. */
static void search_hits(sn__req_t *req, const char *model_id,
                        const float *vec, int dim, const sn_encoding_t *query)
{
    const sn__request_t *p = &req->p;
    char err[512] = "";
    sn_query_t q = {
        .mode = (sn_search_mode_t)p->mode,
        .by_chunk = p->by_chunk,
        .text = p->query,
        .vec = vec,
        .dim = dim,
        .model_id = model_id,
        .known = query ? query_known(sn_model_tokenizer(req->ops->model),
                                     p->query, p->query_len, query)
                       : 1,
        .k = p->k,
        .filter_json = p->filter_json,
        .ef = p->ef,
        .lean = 1,
    };

    int rc = sn_store_query(req->ops->store, p->collection, &q, &req->hits,
                            &req->n_hits, &req->lists, err, sizeof err);
    if (rc) {
        sn__ops_reply_error(req, sn__perr_of(rc), err);
        return;
    }
    req->rows = search_rows;
}

/* A reader: search with the query's vector (the encoder's, or the
 * caller's), or its text alone (lexical). */
static void run_search(sn__req_t *req, sn_ctx_t *ctx)
{
    sn__job_t *job = &req->job;

    (void)ctx;
    if (req->p.vector) {
        search_hits(req, NULL, req->p.vector, req->p.n_vector, NULL);
    } else if (req->p.mode == SN_SEARCH_LEXICAL) {
        search_hits(req, NULL, NULL, 0, NULL);
    } else {
        sn_vec_normalize(job->out[0].sentence, job->out[0].dim);
        search_hits(req, req->ops->model_id, job->out[0].sentence,
                    job->out[0].dim, &job->out[0].enc);
    }
}

static void put_hit(sn__buf_t *b, const sn_hit_t *h, int comma)
{
    sn__buf_puts(b, comma ? ",{\"id\":" : "{\"id\":");
    sn__buf_json_str(b, h->id ? h->id : "", h->id ? strlen(h->id) : 0);
    sn__buf_printf(b, ",\"score\":%.6g",
                   isfinite(h->score) ? (double)h->score : 0.0);
    if (isfinite(h->vector_score))
        sn__buf_printf(b, ",\"vector_score\":%.6g", (double)h->vector_score);
    if (isfinite(h->lexical_score))
        sn__buf_printf(b, ",\"lexical_score\":%.6g",
                       (double)h->lexical_score);
    sn__buf_puts(b, ",\"text\":");
    sn__buf_json_str(b, h->text ? h->text : "", h->text ? strlen(h->text) : 0);
    sn__buf_printf(b, ",\"chunk\":%d,\"start\":%d,\"end\":%d,\"meta\":",
                   h->chunk, (int)h->start, (int)h->end);
    sn__buf_puts(b, h->meta_json && *h->meta_json ? h->meta_json : "{}");
    sn__buf_put(b, "}", 1);
}

/* The reply's rows: the hits, each read back whole as it is written (a
 * hit deleted since the search, by another connection between pieces, is
 * left out). */
static int search_rows(sn__req_t *req, sn__buf_t *b)
{
    const sn__request_t *p = &req->p;
    char err[512] = "";

    if (!req->phase) {
        req->phase = STREAM_ROWS;
        sn__proto_reply_begin(b, p->id_json);
        sn__buf_printf(b, ",\"mode\":\"%s\",\"group\":\"%s\",\"lists\":[",
                       sn_search_mode_name((sn_search_mode_t)p->mode),
                       p->by_chunk ? "chunk" : "document");
        if (req->lists & SN_LIST_LEXICAL)
            sn__buf_puts(b, "\"lexical\"");
        if (req->lists & SN_LIST_VECTOR)
            sn__buf_puts(b, req->lists & SN_LIST_LEXICAL ? ",\"vector\""
                                                         : "\"vector\"");
        sn__buf_puts(b, "],\"results\":[");
    }
    while (req->i_next < req->n_hits && b->len < SN__PIECE && !b->err) {
        sn_hit_t *h = &req->hits[req->i_next++];
        int rc = sn_store_hit_read(req->ops->store, p->collection, h, err,
                                   sizeof err);
        if (rc == SN_ENOTFOUND)
            continue;
        if (rc)
            return rows_fail(req, rc, err);
        put_hit(b, h, req->n_put++ > 0);
        free(h->text);
        free(h->meta_json);
        h->text = h->meta_json = NULL;
    }
    if (req->i_next < req->n_hits)
        return 0;
    sn__buf_put(b, "]", 1);
    if (!p->vector && p->mode != SN_SEARCH_LEXICAL) {
        /* a text query: its tokens, and whether it was cut */
        const sn_encoding_t *q = &req->job.out[0].enc;
        sn__buf_printf(b, ",\"n_tokens\":%d,\"truncated\":%s", q->n_tokens,
                       q->truncated ? "true" : "false");
    }
    sn__proto_reply_end(b);
    return 1;
}

/* ---- get, delete, stats ------------------------------------------------------ */

static void put_doc(sn__buf_t *b, const sn_doc_t *d, int comma)
{
    sn__buf_puts(b, comma ? ",{\"id\":" : "{\"id\":");
    sn__buf_json_str(b, d->id ? d->id : "", d->id ? strlen(d->id) : 0);
    sn__buf_puts(b, ",\"text\":");
    sn__buf_json_str(b, d->text ? d->text : "", d->text ? strlen(d->text) : 0);
    sn__buf_puts(b, ",\"meta\":");
    sn__buf_puts(b, d->meta_json && *d->meta_json ? d->meta_json : "{}");
    sn__buf_printf(b, ",\"created\":%lld,\"updated\":%lld,\"chunks\":%d}",
                   (long long)d->created, (long long)d->updated, d->n_chunks);
}

/* A get: of one id, whole; of several, rows (get_rows). */
static void run_get(sn__req_t *req, sn_ctx_t *ctx)
{
    const sn__request_t *p = &req->p;
    sn_doc_t *docs = NULL;
    int n = 0, rc;
    char err[512] = "";

    (void)ctx;
    if (p->n_ids > 1) {
        req->rows = get_rows;
        return;
    }
    rc = sn_store_get(req->ops->store, p->collection, p->ids, p->n_ids, &docs,
                      &n, err, sizeof err);
    if (rc) {
        sn__ops_reply_error(req, sn__perr_of(rc), err);
        goto out;
    }
    sn__buf_t *b = &req->reply;
    sn__proto_reply_begin(b, p->id_json);
    sn__buf_puts(b, ",\"docs\":[");
    for (int i = 0; i < n; i++)
        put_doc(b, &docs[i], i > 0);
    sn__buf_put(b, "]", 1);
    sn__proto_reply_end(b);
out:
    for (int i = 0; i < n; i++)
        sn_doc_free(&docs[i]);
    free(docs);
}

/* A get of several ids: its documents read one id at a time (a document
 * is read whole, but the get is not one snapshot of the store: other
 * connections' writes can come between its pieces). */
static int get_rows(sn__req_t *req, sn__buf_t *b)
{
    const sn__request_t *p = &req->p;
    char err[512] = "";

    if (!req->phase) {
        req->phase = STREAM_ROWS;
        sn__proto_reply_begin(b, p->id_json);
        sn__buf_puts(b, ",\"docs\":[");
    }
    while (req->i_next < p->n_ids && b->len < SN__PIECE && !b->err) {
        sn_doc_t *docs = NULL;
        int n = 0;
        int rc = sn_store_get(req->ops->store, p->collection,
                              p->ids + req->i_next, 1, &docs, &n, err,
                              sizeof err);
        if (rc)
            return rows_fail(req, rc, err);
        for (int i = 0; i < n; i++) {
            put_doc(b, &docs[i], req->n_put++ > 0);
            sn_doc_free(&docs[i]);
        }
        free(docs);
        req->i_next++;
    }
    if (req->i_next < p->n_ids)
        return 0;
    sn__buf_put(b, "]", 1);
    sn__proto_reply_end(b);
    return 1;
}

static void run_delete(sn__req_t *req, sn_ctx_t *ctx)
{
    const sn__request_t *p = &req->p;
    int n_deleted = 0;
    char err[512] = "";
    (void)ctx;
    int rc = sn_store_delete(req->ops->store, p->collection, p->ids,
                             p->n_ids, &n_deleted, err, sizeof err);
    if (rc) {
        sn__ops_reply_error(req, sn__perr_of(rc), err);
    } else {
        sn__proto_reply_begin(&req->reply, p->id_json);
        sn__buf_printf(&req->reply, ",\"deleted\":%d", n_deleted);
        sn__proto_reply_end(&req->reply);
    }
}

static const char *kind_name(sn_index_kind_t k)
{
    switch (k) {
    case SN_INDEX_FLAT: return "flat";
    case SN_INDEX_HNSW: return "hnsw";
    default: return "auto";
    }
}

static void run_stats(sn__req_t *req, sn_ctx_t *ctx)
{
    sn__ops_ctx_t *ops = req->ops;
    sn_collection_info_t *cols = NULL;
    int n_cols = 0;
    char err[512] = "";
    (void)ctx;
    int rc = sn_store_collections(ops->store, &cols, &n_cols, err,
                                  sizeof err);
    if (rc) {
        sn__ops_reply_error(req, sn__perr_of(rc), err);
        return;
    }
    sn__buf_t *b = &req->reply;
    const char *name = sn_model_name(ops->model);
    sn__proto_reply_begin(b, req->p.id_json);
    sn__buf_puts(b, ",\"model\":");
    sn__buf_json_str(b, name, strlen(name));
    sn__buf_puts(b, ",\"model_id\":");
    sn__buf_json_str(b, ops->model_id, strlen(ops->model_id));
    sn__buf_printf(b, ",\"dim\":%d,\"max_tokens\":%d,\"version\":\"%s\"",
                   sn_model_dim(ops->model), sn_model_max_tokens(ops->model),
                   SN_VERSION);
    sn__buf_printf(b, ",\"uptime\":%.3f",
                   (double)(sn__now_ns() - ops->t_start_ns) / 1e9);
    sn__buf_printf(b, ",\"queue\":{\"embed\":%d,\"storage\":%d}",
                   sn__sched_depth(ops->sched), sn__lane_depth(ops->lane));
    sn__buf_printf(b, ",\"workers\":%d,\"connections\":%d,\"requests\":%lld",
                   ops->n_workers,
                   __atomic_load_n(&ops->n_conns, __ATOMIC_RELAXED),
                   (long long)__atomic_load_n(&ops->n_requests,
                                              __ATOMIC_RELAXED));
    sn__buf_puts(b, ",\"collections\":[");
    for (int i = 0; i < n_cols; i++) {
        const sn_collection_info_t *c = &cols[i];
        sn__buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
        sn__buf_json_str(b, c->name ? c->name : "",
                         c->name ? strlen(c->name) : 0);
        sn__buf_puts(b, ",\"model\":");
        sn__buf_json_str(b, c->model_id ? c->model_id : "",
                         c->model_id ? strlen(c->model_id) : 0);
        sn__buf_printf(b, ",\"dim\":%d,\"index\":\"%s\",\"docs\":%lld,"
                       "\"chunks\":%lld}", c->dim, kind_name(c->kind),
                       (long long)c->n_docs, (long long)c->n_chunks);
    }
    sn__buf_put(b, "]", 1);
    sn__proto_reply_end(b);
    sn_collection_info_free(cols, n_cols);
}

/* ---- word senses ------------------------------------------------------------- */

/* Code points of valid UTF-8 (the parser checked it). */
static int64_t cp_count(const char *s, size_t len)
{
    int64_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

/* "senses[2].examples[1]: ", for a message about one exemplar. */
static void origin_str(const sn__ex_origin_t *o, char *buf, size_t len)
{
    if (o->i_sense < 0 && o->i_example < 0)
        buf[0] = '\0';
    else if (o->i_sense < 0)
        snprintf(buf, len, "examples[%d]: ", o->i_example);
    else if (o->i_example < 0)
        snprintf(buf, len, "senses[%d]: ", o->i_sense);
    else
        snprintf(buf, len, "senses[%d].examples[%d]: ", o->i_sense,
                 o->i_example);
}

/* Worker: locate each lemma in its example (so that a miss is named by
 * where it is in the request), then embed and store them all in one
 * transaction. */
static void run_sense_add(sn__req_t *req, sn_ctx_t *ctx)
{
    sn__ops_ctx_t *ops = req->ops;
    sn__request_t *p = &req->p;
    char err[512], sub[256], where[80], folded[SN_WSD_MAX_WORD];
    int rc;

    for (int i = 0; i < p->n_examples; i++) {
        sn_wsd_example_t *e = &p->examples[i];
        origin_str(&p->origin[i], where, sizeof where);
        if ((rc = sn_wsd_casefold(e->lemma, folded, sizeof folded, sub,
                                  sizeof sub)) < 0) {
            snprintf(err, sizeof err, "%slemma: %s", where, sub);
            sn__ops_reply_error(req, SN__P_BAD_REQUEST, err);
            return;
        }
        if (!e->example)
            continue;
        if (e->start < 0) {
            rc = sn_wsd_find_word_ex(ops->morph, e->example, e->example_len,
                                     e->lemma, &e->start, &e->end, sub,
                                     sizeof sub);
            if (rc < 0) {
                if (rc == SN_ENOTFOUND)
                    snprintf(err, sizeof err, "%sthe example does not "
                             "contain '%s' (or an inflection of it)", where,
                             folded);
                else
                    snprintf(err, sizeof err, "%s%s", where, sub);
                sn__ops_reply_error(req, rc == SN_ENOTFOUND ? SN__P_BAD_REQUEST
                                                    : sn__perr_of(rc), err);
                return;
            }
        } else {
            int64_t n_cp = cp_count(e->example, e->example_len);
            if (e->end > n_cp) {
                snprintf(err, sizeof err, "%sspan [%d, %d) is not inside the "
                         "example's %lld characters", where, (int)e->start,
                         (int)e->end, (long long)n_cp);
                sn__ops_reply_error(req, SN__P_BAD_REQUEST, err);
                return;
            }
        }
    }
    rc = sn_wsd_add(ops->senses, ops->model, ctx, p->examples, p->n_examples,
                    err, sizeof err);
    if (rc) {
        /* an example is bad input, not a missing resource */
        sn__ops_reply_error(req, rc == SN_ENOTFOUND ? SN__P_BAD_REQUEST
                                            : sn__perr_of(rc), err);
        return;
    }
    sn__proto_reply_begin(&req->reply, p->id_json);
    sn__buf_printf(&req->reply, ",\"added\":%d", p->n_examples);
    sn__proto_reply_end(&req->reply);
}

static void put_str(sn__buf_t *b, const char *s)
{
    if (s)
        sn__buf_json_str(b, s, strlen(s));
    else
        sn__buf_puts(b, "null");
}

static double finite_or_0(float x)
{
    return isfinite(x) ? (double)x : 0.0;
}

/* Worker: which sense of the word the text means. */
static void run_sense_which(sn__req_t *req, sn_ctx_t *ctx)
{
    sn__ops_ctx_t *ops = req->ops;
    const sn__request_t *p = &req->p;
    sn_wsd_query_t q = {p->query, p->query_len, p->word, p->start, p->end};
    sn_wsd_result_t r;
    char err[512];
    int rc = sn_wsd_which(ops->senses, ops->model, ctx, &q, &r, err,
                          sizeof err);
    if (rc) {
        sn__ops_reply_error(req, sn__perr_of(rc), err);
        return;
    }
    sn__buf_t *b = &req->reply;
    sn__proto_reply_begin(b, p->id_json);
    sn__buf_puts(b, ",\"lemma\":");
    put_str(b, r.lemma);
    sn__buf_printf(b, ",\"start\":%d,\"end\":%d,\"sense\":", (int)r.start,
                   (int)r.end);
    put_str(b, r.sense);
    sn__buf_printf(b, ",\"score\":%.6g,\"margin\":%.6g,\"candidates\":[",
                   finite_or_0(r.score), finite_or_0(r.margin));
    for (int i = 0; i < r.n_cands; i++) {
        sn__buf_puts(b, i ? ",{\"sense\":" : "{\"sense\":");
        put_str(b, r.cands[i].sense);
        sn__buf_puts(b, ",\"gloss\":");
        put_str(b, r.cands[i].gloss);
        sn__buf_printf(b, ",\"score\":%.6g}", finite_or_0(r.cands[i].score));
    }
    sn__buf_put(b, "]", 1);
    sn__proto_reply_end(b);
    sn_wsd_result_free(&r);
}

/* Lane: a lemma's senses (with their examples on request), or the lemmas
 * with an inventory, a page at a time, and the totals: rows
 * (sense_list_rows). */
static void run_sense_list(sn__req_t *req, sn_ctx_t *ctx)
{
    (void)ctx;
    req->rows = sense_list_rows;
}

/* One sense of the lemma, with its examples on request. */
static int put_sense(sn__req_t *req, sn__buf_t *b, const sn_sense_info_t *si,
                     int comma, char *err, size_t err_len)
{
    sn__ops_ctx_t *ops = req->ops;
    sn_sense_example_t *ex = NULL;
    int n_ex = 0, rc;

    sn__buf_puts(b, comma ? ",{\"sense\":" : "{\"sense\":");
    put_str(b, si->sense);
    sn__buf_puts(b, ",\"gloss\":");
    put_str(b, si->gloss);
    sn__buf_printf(b, ",\"n_examples\":%d", si->n_examples);
    if (req->p.want_examples) {
        if ((rc = sn_senses_examples(ops->senses, ops->model_id, req->folded,
                                     si->sense, &ex, &n_ex, err,
                                     err_len)) < 0)
            return rc;
        sn__buf_puts(b, ",\"examples\":[");
        for (int k = 0; k < n_ex; k++) {
            sn__buf_printf(b, "%s{\"id\":%lld,\"text\":", k ? "," : "",
                           (long long)ex[k].id);
            put_str(b, ex[k].example);
            sn__buf_printf(b, ",\"start\":%d,\"end\":%d}", (int)ex[k].start,
                           (int)ex[k].end);
        }
        sn__buf_put(b, "]", 1);
        sn_sense_examples_free(ex, n_ex);
    }
    sn__buf_put(b, "}", 1);
    return 0;
}

#define SN_LIST_PAGE 256 /* lemmas read at a time */

static int sense_list_rows(sn__req_t *req, sn__buf_t *b)
{
    sn__ops_ctx_t *ops = req->ops;
    const sn__request_t *p = &req->p;
    sn_lemma_info_t *lemmas = NULL;
    sn_senses_count_t total;
    int n = 0, rc;
    char err[512] = "", folded[SN_WSD_MAX_WORD];

    if (p->lemma) {
        if (!req->phase) {
            if ((rc = sn_wsd_casefold(p->lemma, folded, sizeof folded, err,
                                      sizeof err)) < 0)
                return rows_fail(req, rc, err);
            if (!(req->folded = strdup(folded)))
                return rows_fail(req, -ENOMEM, "out of memory");
            if ((rc = sn_senses_list(ops->senses, ops->model_id, folded,
                                     &req->senses, &req->n_senses, err,
                                     sizeof err)) < 0)
                return rows_fail(req, rc, err);
            req->phase = STREAM_ROWS;
            sn__proto_reply_begin(b, p->id_json);
            sn__buf_puts(b, ",\"model\":");
            put_str(b, ops->model_id);
            sn__buf_puts(b, ",\"lemma\":");
            put_str(b, folded);
            sn__buf_puts(b, ",\"senses\":[");
        }
        while (req->i_next < req->n_senses && b->len < SN__PIECE &&
               !b->err) {
            if ((rc = put_sense(req, b, &req->senses[req->i_next],
                                req->i_next > 0, err, sizeof err)) < 0)
                return rows_fail(req, rc, err);
            req->i_next++;
        }
        if (req->i_next < req->n_senses)
            return 0;
        sn__buf_put(b, "]", 1);
        sn__proto_reply_end(b);
        return 1;
    }
    if (!req->phase) {
        req->phase = STREAM_ROWS;
        sn__proto_reply_begin(b, p->id_json);
        sn__buf_puts(b, ",\"model\":");
        put_str(b, ops->model_id);
        sn__buf_puts(b, ",\"lemmas\":[");
    }
    while (req->cursor >= 0 && req->n_put < p->limit && b->len < SN__PIECE &&
           !b->err) {
        int page = p->limit - req->n_put < SN_LIST_PAGE ? p->limit - req->n_put
                                                        : SN_LIST_PAGE;
        if ((rc = sn_senses_lemmas(ops->senses, ops->model_id,
                                   (int64_t)p->offset + req->n_put, page,
                                   &lemmas, &n, err, sizeof err)) < 0)
            return rows_fail(req, rc, err);
        for (int i = 0; i < n; i++) {
            sn__buf_puts(b, req->n_put++ ? ",{\"lemma\":" : "{\"lemma\":");
            put_str(b, lemmas[i].lemma);
            sn__buf_printf(b, ",\"n_senses\":%d,\"n_examples\":%d}",
                           lemmas[i].n_senses, lemmas[i].n_examples);
        }
        if (lemmas)
            sn_lemma_info_free(lemmas, n);
        lemmas = NULL;
        if (n < page)
            req->cursor = -1; /* no more */
    }
    if (req->cursor >= 0 && req->n_put < p->limit)
        return 0;
    if ((rc = sn_senses_count(ops->senses, ops->model_id, &total, err,
                              sizeof err)) < 0)
        return rows_fail(req, rc, err);
    sn__buf_printf(b, "],\"total\":{\"lemmas\":%lld,\"senses\":%lld,"
                   "\"examples\":%lld}", (long long)total.n_lemmas,
                   (long long)total.n_senses, (long long)total.n_examples);
    sn__proto_reply_end(b);
    return 1;
}

static void run_sense_remove(sn__req_t *req, sn_ctx_t *ctx)
{
    const sn__request_t *p = &req->p;
    int n_removed = 0;
    char err[512] = "";
    (void)ctx;
    int rc = sn_senses_remove(req->ops->senses, req->ops->model_id, p->lemma,
                              p->sense, &n_removed, err, sizeof err);
    if (rc) {
        sn__ops_reply_error(req, sn__perr_of(rc), err);
    } else {
        sn__proto_reply_begin(&req->reply, p->id_json);
        sn__buf_printf(&req->reply, ",\"removed\":%d", n_removed);
        sn__proto_reply_end(&req->reply);
    }
}

/* ---- check -------------------------------------------------------------------- */

/* Every stored vector read back (the storage lane: holds the store for
 * each scan): the damaged ones listed, to be embedded again from their
 * text (`sense check --repair` adds the documents again). Rows
 * (check_rows): a first scan counts, then pages of the list are read on
 * from where the last stopped. */
static void run_check(sn__req_t *req, sn_ctx_t *ctx)
{
    (void)ctx;
    req->rows = check_rows;
}

#define SN_CHECK_PAGE 64 /* damaged vectors listed per scan */

static int check_rows(sn__req_t *req, sn__buf_t *b)
{
    const sn__request_t *p = &req->p;
    sn_store_t *st = req->ops->store;
    sn_store_bad_t *bad = NULL;
    int64_t n_bad, n_checked;
    int n = 0, rc;
    char err[512] = "";

    if (!req->phase) {
        if ((rc = sn_store_check(st, p->collection, 0, 0, &bad, &n, NULL,
                                 &req->n_bad, &req->n_checked, err,
                                 sizeof err)) < 0)
            return rows_fail(req, rc, err);
        if (req->n_bad)
            sn__log_warn("check: %lld of %lld stored vectors are damaged",
                         (long long)req->n_bad, (long long)req->n_checked);
        req->phase = STREAM_ROWS;
        req->cursor = req->n_bad ? 0 : -1;
        sn__proto_reply_begin(b, p->id_json);
        sn__buf_printf(b, ",\"checked\":%lld,\"damaged\":%lld,\"chunks\":[",
                       (long long)req->n_checked, (long long)req->n_bad);
    }
    while (req->cursor >= 0 && req->n_put < p->limit && b->len < SN__PIECE &&
           !b->err) {
        int page = p->limit - req->n_put < SN_CHECK_PAGE
                       ? p->limit - req->n_put
                       : SN_CHECK_PAGE;
        if ((rc = sn_store_check(st, p->collection, req->cursor, page, &bad,
                                 &n, &req->cursor, &n_bad, &n_checked, err,
                                 sizeof err)) < 0)
            return rows_fail(req, rc, err);
        for (int i = 0; i < n; i++) {
            sn__buf_puts(b, req->n_put++ ? ",{\"collection\":"
                                         : "{\"collection\":");
            put_str(b, bad[i].collection);
            sn__buf_puts(b, ",\"id\":");
            put_str(b, bad[i].id);
            sn__buf_printf(b, ",\"chunk\":%d,\"problem\":", bad[i].chunk);
            put_str(b, bad[i].problem);
            sn__buf_put(b, "}", 1);
        }
        sn_store_bad_free(bad, n);
    }
    if (req->cursor >= 0 && req->n_put < p->limit)
        return 0;
    sn__buf_put(b, "]", 1);
    sn__proto_reply_end(b);
    return 1;
}

/* ---- routes: the op table's route column ------------------------------------ */

typedef void (*run_fn)(sn__req_t *req, sn_ctx_t *ctx);

static const struct {
    sn__route_t route;
    run_fn run;
} op_rows[SN_OP_COUNT] = {
#define SN__OP_ROW(id, name, parse, route, run)                              \
    [SN_OP_##id] = {SN__ROUTE_##route, run},
    SN_OPS(SN__OP_ROW)
#undef SN__OP_ROW
};

/* The op's runner, unless the encoders failed before it. */
static void run_op(sn__req_t *req, sn_ctx_t *ctx)
{
    if (req->job.rc)
        sn__ops_reply_error(req, sn__perr_of(req->job.rc), req->job.err);
    else
        op_rows[req->p.op].run(req, ctx);
}

/* Tokens the job's texts took in the encoder, for the counters. */
static void count_tokens(sn__req_t *req)
{
    const sn__job_t *job = &req->job;
    int64_t n = 0;
    for (int i = 0; job->out && i < job->n; i++)
        n += job->out[i].enc.n_tokens;
    if (n)
        __atomic_add_fetch(&req->ops->n_tokens, n, __ATOMIC_RELAXED);
}

/* ENCODE: the worker that finished the last text. */
static void encoded(sn__job_t *job)
{
    sn__req_t *req = REQ_OF_JOB(job);
    count_tokens(req);
    if (req->stream && !job->rc) {
        stream_first(req); /* the first piece */
        return;
    }
    run_op(req, NULL);
    sn__job_free_out(job);
    finish(req);
}

/* CHUNK_ENCODE_STORE, ENCODE_READ: encoded; on to the lane for the turn. */
static void to_lane(sn__job_t *job)
{
    sn__req_t *req = REQ_OF_JOB(job);
    count_tokens(req);
    sn__lane_submit(req->ops->lane, &req->task);
}

/* STORE, STATE, CHUNK_ENCODE_STORE: the lane (at the turn, if ticketed).
 * A reply of rows keeps the turn (set at dispatch) until its last piece. */
static void lane_run(sn__task_t *task)
{
    sn__req_t *req = REQ_OF_TASK(task);
    run_op(req, NULL);
    if (req->rows) {
        rows_step(req);
        return;
    }
    if (task->keep_turn) { /* failed before its rows */
        back_to_lane(req);
        return;
    }
    sn__job_free_out(&req->job);
    finish(req);
}

/* ENCODE_READ, MODEL: back on the lane, the turn ends (the lane advanced
 * it); the reply goes. */
static void turn_end(sn__task_t *task)
{
    sn__req_t *req = REQ_OF_TASK(task);
    sn__job_free_out(&req->job);
    finish(req);
}

static void back_to_lane(sn__req_t *req)
{
    req->task.keep_turn = 0;
    req->task.run = turn_end;
    sn__lane_submit(req->ops->lane, &req->task);
}

/* ENCODE_READ: a reader runs the op and makes the first piece of its
 * rows, then back to the lane (after the last piece). */
static void read_run(sn__task_t *read)
{
    sn__req_t *req = (sn__req_t *)((char *)read - offsetof(sn__req_t, read));
    run_op(req, NULL);
    if (req->rows)
        rows_step(req);
    else
        back_to_lane(req);
}

/* ENCODE_READ: on the lane, at the request's turn (which it keeps): to a
 * reader, round robin. */
static void read_turn(sn__task_t *task)
{
    sn__req_t *req = REQ_OF_TASK(task);
    sn__ops_ctx_t *ops = req->ops;
    unsigned i = __atomic_fetch_add(&ops->next_reader, 1, __ATOMIC_RELAXED);

    memset(&req->read, 0, sizeof req->read);
    req->read.run = read_run;
    sn__lane_submit(ops->readers[i % (unsigned)ops->n_readers], &req->read);
}

/* MODEL: on the lane, at the request's turn: hand the work to an encoder
 * worker and keep the turn (task.keep_turn). */
static void model_turn(sn__task_t *task)
{
    sn__req_t *req = REQ_OF_TASK(task);
    sn__sched_submit(req->ops->sched, &req->job);
}

/* MODEL: an encoder worker, with its own encoder context. */
static void model_run(sn__job_t *job, sn_ctx_t *ctx)
{
    run_op(REQ_OF_JOB(job), ctx);
}

/* MODEL: after run, back to the lane to end the turn. */
static void model_back(sn__job_t *job)
{
    back_to_lane(REQ_OF_JOB(job));
}

/* ---- reply sizes, before the work ------------------------------------------------- */

/* Upper estimates: a float is at most 16 bytes of JSON ("-1.23456789e-38,"),
 * a text has at most one token per byte (plus the specials) and at most the
 * model's maximum. Hits and documents are counted at a typical 4 KiB: their
 * texts are the store's, unknown here (a bigger reply is counted at its
 * size as soon as it is built). */
static size_t full_estimate(const sn__req_t *req)
{
    const sn__request_t *p = &req->p;
    const sn_model_t *m = req->ops->model;
    size_t dim = (size_t)sn_model_dim(m), max_tok = (size_t)sn_model_max_tokens(m);
    size_t est = 256;

    if (!p->has_op || (unsigned)p->op >= SN_OP_COUNT)
        return est;
    switch (p->op) {
    case SN_OP_EMBED:
        if (p->dimensions > 0 && (size_t)p->dimensions < dim)
            dim = (size_t)p->dimensions;
        for (int i = 0; i < p->n_texts; i++) {
            est += dim * 16 + 32;
            if (p->want_tokens) {
                size_t n_tok = p->lens[i] + 2 < max_tok ? p->lens[i] + 2
                                                        : max_tok;
                est += n_tok * ((size_t)sn_model_hidden(m) * 16 + 128);
            }
        }
        return est;
    case SN_OP_ADD: /* ids as JSON: at most 6 bytes a byte (\u00XX) */
        for (int d = 0; d < p->n_docs; d++)
            est += (p->docs[d].id ? 6 * strlen(p->docs[d].id) : 64) + 16;
        return est;
    case SN_OP_SEARCH:
        return est + (size_t)p->k * 4096;
    case SN_OP_GET:
        return est + (size_t)p->n_ids * 4096;
    case SN_OP_CHECK:
        return est + (size_t)p->limit * 1400;
    default:
        return est + 4096;
    }
}

size_t sn__ops_reply_estimate(const sn__req_t *req)
{
    size_t est = full_estimate(req);
    if (req->p.has_op && (unsigned)req->p.op < SN_OP_COUNT &&
        has_rows(&req->p) && est > 2 * SN__PIECE)
        return 2 * SN__PIECE; /* in pieces: at most a piece or two at once */
    if (!embed_streams(req, est))
        return est;
    /* in pieces: the vectors it holds, a piece being made and one going */
    size_t dim = (size_t)sn_model_dim(req->ops->model);
    return (size_t)req->p.n_texts * (dim * sizeof(float) + 64) +
           2 * SN__PIECE;
}

/* ---- dispatch (loop thread) ---------------------------------------------------- */

static void ticket(sn__req_t *req, sn__order_t *order)
{
    req->task.order = order;
    req->task.ticket = order->issued++;
}

int sn__ops_dispatch(sn__req_t *req, sn__order_t *order)
{
    static const char *const doc_prompts[] = {"document", "passage", NULL};
    static const char *const query_prompts[] = {"query", NULL};
    sn__ops_ctx_t *ops = req->ops;
    sn__request_t *p = &req->p;
    sn__job_t *job = &req->job;
    char msg[512];
    const char *prompt = NULL;

    __atomic_add_fetch(&ops->n_requests, 1, __ATOMIC_RELAXED);
    memset(job, 0, sizeof *job);
    job->n_ahead = -1; /* not through the encoders (yet) */
    memset(&req->task, 0, sizeof req->task);
    job->client = req->client;
    if ((unsigned)p->op >= SN_OP_COUNT) {
        sn__ops_reply_error(req, SN__P_UNKNOWN_OP, "unknown op");
        return 0;
    }
    /* Model-dependent checks come before any ticket: every ticket issued
     * must reach the lane. */
    switch (op_rows[p->op].route) {
    case SN__ROUTE_ENCODE:
        if (resolve_prompt(req, NULL, &prompt, msg, sizeof msg))
            goto bad;
        if (p->dimensions > sn_model_dim(ops->model)) {
            snprintf(msg, sizeof msg, "'dimensions' %d exceeds the model's %d",
                     p->dimensions, sn_model_dim(ops->model));
            goto bad;
        }
        job->texts = p->texts;
        job->lens = p->lens;
        job->n = p->n_texts;
        job->opts.prompt = prompt;
        job->opts.dimensions = p->dimensions;
        job->opts.want_tokens = p->want_tokens;
        job->done = encoded;
        if ((req->stream = embed_streams(req, full_estimate(req))))
            job->opts.want_tokens = 0; /* token states come piece by piece */
        sn__sched_submit(ops->sched, job);
        return 1;
    case SN__ROUTE_CHUNK_ENCODE_STORE:
        if (resolve_prompt(req, doc_prompts, &prompt, msg, sizeof msg))
            goto bad;
        job->opts.prompt = prompt;
        job->prepare = add_prepare;
        job->done = to_lane;
        ticket(req, order);
        req->task.run = lane_run;
        sn__sched_submit(ops->sched, job);
        return 1;
    case SN__ROUTE_ENCODE_READ:
        if (p->vector || (p->op == SN_OP_SEARCH &&
                          p->mode == SN_SEARCH_LEXICAL)) {
            /* nothing to encode: the caller's vector, or words alone */
            if (p->vector)
                sn_vec_normalize(p->vector, p->n_vector);
            ticket(req, order);
            req->task.keep_turn = 1;
            req->task.run = read_turn;
            sn__lane_submit(ops->lane, &req->task);
            return 1;
        }
        if (resolve_prompt(req, query_prompts, &prompt, msg, sizeof msg))
            goto bad;
        job->texts = &p->query;
        job->lens = &p->query_len;
        job->n = 1;
        job->opts.prompt = prompt;
        job->urgent = 1; /* one short text a person waits on */
        job->done = to_lane;
        ticket(req, order);
        req->task.keep_turn = 1;
        req->task.run = read_turn;
        sn__sched_submit(ops->sched, job);
        return 1;
    case SN__ROUTE_STORE:
        ticket(req, order);
        req->task.keep_turn = has_rows(p); /* to its last piece */
        /* fall through */
    case SN__ROUTE_STATE:
        req->task.run = lane_run;
        sn__lane_submit(ops->lane, &req->task);
        return 1;
    case SN__ROUTE_MODEL:
        job->run = model_run;
        job->done = model_back;
        ticket(req, order);
        req->task.keep_turn = 1;
        req->task.run = model_turn;
        sn__lane_submit(ops->lane, &req->task);
        return 1;
    }
    snprintf(msg, sizeof msg, "unknown op");
    sn__ops_reply_error(req, SN__P_UNKNOWN_OP, msg);
    return 0;
bad:
    sn__ops_reply_error(req, SN__P_BAD_REQUEST, msg);
    return 0;
}

/* ---- the engine's threads ------------------------------------------------------ */

/* Search threads: one per core (at most SN_MAX_READERS): searches are
 * short and run faiss on one OpenMP thread each, so one per core uses them
 * all. */
static int readers_start(sn__ops_ctx_t *ops, char *err, size_t err_len)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    int rc;

    if (n < 1)
        n = 1;
    if (n > SN_MAX_READERS)
        n = SN_MAX_READERS;
    for (int i = 0; i < n; i++) {
        if ((rc = sn__lane_start(&ops->readers[i], err, err_len)))
            return rc;
        ops->n_readers = i + 1;
    }
    return 0;
}

int sn__ops_start(sn__ops_ctx_t *ops, const sn__sched_opts_t *o, char *err,
                  size_t err_len)
{
    sn__sched_opts_t so = *o;
    int rc;

    so.n_conns = &ops->n_conns; /* waits only for who is there */
    if ((rc = sn__sched_start(ops->model, &so, &ops->sched, err, err_len)) ||
        (rc = sn__lane_start(&ops->lane, err, err_len)) ||
        (rc = readers_start(ops, err, err_len))) {
        sn__ops_stop(ops);
        return rc;
    }
    return 0;
}

void sn__ops_stop(sn__ops_ctx_t *ops)
{
    /* the encoders first: their jobs may still go to the lane */
    sn__sched_stop(ops->sched);
    ops->sched = NULL;
    for (int i = 0; i < ops->n_readers; i++) {
        sn__lane_stop(ops->readers[i]);
        ops->readers[i] = NULL;
    }
    ops->n_readers = 0;
    sn__lane_stop(ops->lane);
    ops->lane = NULL;
}

void sn__ops_release(sn__req_t *req)
{
    sn__job_free_out(&req->job);
    free(req->job.items);
    req->job.items = NULL;
    sn__job_free_out(&req->piece);
    free(req->piece.items);
    req->piece.items = NULL;
    sn__job_free_out(&req->states);
    sn_hits_free(req->hits, req->n_hits);
    req->hits = NULL;
    req->n_hits = 0;
    if (req->senses)
        sn_sense_info_free(req->senses, req->n_senses);
    req->senses = NULL;
    free(req->folded);
    req->folded = NULL;
    free(req->texts_own);
    free(req->lens_own);
    free(req->doc_chunks);
    free(req->spans);
    req->texts_own = NULL;
    req->lens_own = NULL;
    req->doc_chunks = NULL;
    req->spans = NULL;
    sn__request_free(&req->p);
    sn__buf_free(&req->reply);
}
