/*
 * cmd_embed.c -- `sense embed`: encode texts, in-process with --model (no
 * daemon), else by sending `embed` requests to the daemon.
 *
 * Texts come from the arguments, else from stdin one per line, or with
 * --input jsonl one JSON string per line (so a text may hold newlines).
 * They are encoded in batches of SN_EMBED_BATCH texts (one request each, to
 * the daemon) and printed in input order as they are done, so memory stays
 * bounded on long inputs. Both modes print the same formats; the daemon's
 * replies are turned back into sn_embedding_t so that one printer serves
 * both.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "client.h"
#include "sense/sense.h"

#define SN_EMBED_BATCH 32

static const char embed_usage[] =
    "usage: sense embed [--model PATH|NAME] [options] [TEXT...]\n"
    "\n"
    "Encode texts. With --model, in this process with that model folder (as\n"
    "SentenceTransformer.save() or a Hugging Face clone leaves it); without\n"
    "it, by the daemon with its model. Without TEXT arguments, texts are\n"
    "read from stdin, one per line.\n"
    "\n"
    "options:\n"
    "  --model PATH|NAME  model folder, 'default' for the default model, or\n"
    "                     a repository id fetched by `sense pull`; encode in\n"
    "                     this process, no daemon\n"
    "  --precision P      with --model: the encoder's dense layers in auto\n"
    "                     (default: the fastest within cosine 0.9999 of f32\n"
    "                     on this CPU; $SENSE_PRECISION replaces it), f32,\n"
    "                     bf16 or int8 (the daemon has its own --precision)\n"
    "  --socket PATH      the daemon's socket (without --model)\n"
    "  --json             one JSON object per text: {\"text\", \"embedding\",\n"
    "                     \"n_tokens\", \"truncated\"} (truncated: the text\n"
    "                     was longer than the model's maximum and cut)\n"
    "  --tokens           also list every token fed to the encoder with its\n"
    "                     id, piece, character offsets and last hidden state\n"
    "  --input FORMAT     stdin format: 'lines' (default) or 'jsonl' (one\n"
    "                     JSON string per line)\n"
    "  --prompt NAME      prepend the model's prompt NAME (e.g. 'query')\n"
    "  --dimensions N     keep the first N dimensions, renormalized\n"
    "  -h, --help         this help\n"
    "\n"
    "exit status: 0 ok, 1 error, 2 usage, 3 cannot connect to the daemon\n";

typedef struct {
    char **texts;
    size_t *lens;
    int n;
} batch_t;

static void batch_clear(batch_t *b)
{
    for (int i = 0; i < b->n; i++)
        free(b->texts[i]);
    b->n = 0;
}

static void put_floats(FILE *out, const float *v, int n)
{
    fputc('[', out);
    for (int i = 0; i < n; i++)
        fprintf(out, i ? ",%.8g" : "%.8g", v[i]);
    fputc(']', out);
}

static void put_string(FILE *out, const char *s, size_t len)
{
    json_t *j = json_stringn(s, len);
    char *txt = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    fputs(txt ? txt : "null", out);
    free(txt);
    json_decref(j);
}

/* The piece of token t: from the daemon's reply (pieces) or the local
 * model's tokenizer. */
static const char *piece_of(const sn_model_t *model, const char *const *pieces,
                            const sn_embedding_t *e, int t)
{
    if (pieces)
        return pieces[t];
    return sn_tokenizer_piece(sn_model_tokenizer(model), e->enc.ids[t]);
}

static void print_json(FILE *out, const sn_model_t *model,
                       const char *const *pieces, const sn_embedding_t *e,
                       const char *text, size_t len, int tokens)
{
    fputs("{\"text\":", out);
    put_string(out, text, len);
    fputs(",\"embedding\":", out);
    put_floats(out, e->sentence, e->dim);
    fprintf(out, ",\"n_tokens\":%d,\"truncated\":%s", e->enc.n_tokens,
            e->enc.truncated ? "true" : "false");
    if (tokens) {
        fputs(",\"tokens\":[", out);
        for (int t = 0; t < e->enc.n_tokens; t++) {
            const char *piece = piece_of(model, pieces, e, t);
            fprintf(out, "%s{\"id\":%d,\"token\":", t ? "," : "",
                    (int)e->enc.ids[t]);
            put_string(out, piece ? piece : "", piece ? strlen(piece) : 0);
            fprintf(out, ",\"start\":%d,\"end\":%d,\"embedding\":",
                    (int)e->enc.start[t], (int)e->enc.end[t]);
            put_floats(out, e->tokens + (size_t)t * e->hidden, e->hidden);
            fputc('}', out);
        }
        fputc(']', out);
    }
    fputs("}\n", out);
}

/* Human output: one line per text, and a warning on stderr for a text cut
 * to the model's maximum (input `index`, 1-based). */
static void print_human(FILE *out, const sn_model_t *model,
                        const char *const *pieces, const sn_embedding_t *e,
                        const char *text, size_t len, int tokens, int index)
{
    /* the first 48 bytes of the text, cut on a character boundary */
    size_t show = len;
    if (show > 48) {
        show = 48;
        while (show > 0 && ((uint8_t)text[show] & 0xC0) == 0x80)
            show--;
    }
    fputc('"', out);
    for (size_t i = 0; i < show; i++)
        fputc(text[i] == '\n' || text[i] == '\t' ? ' ' : text[i], out);
    fprintf(out, "%s\": %d tokens, dim %d [", show < len ? "..." : "",
            e->enc.n_tokens, e->dim);
    for (int i = 0; i < e->dim && i < 4; i++)
        fprintf(out, "%s%.4f", i ? ", " : "", e->sentence[i]);
    fputs(e->dim > 4 ? ", ...]\n" : "]\n", out);
    if (e->enc.truncated) {
        fflush(out);
        fprintf(stderr,
                "sense: warning: input %d is longer than the model's %d "
                "tokens: only its beginning is embedded\n",
                index, e->enc.n_tokens);
    }
    if (tokens) {
        for (int t = 0; t < e->enc.n_tokens; t++) {
            const char *piece = piece_of(model, pieces, e, t);
            fprintf(out, "  %5d  %-16s %d..%d\n", (int)e->enc.ids[t],
                    piece ? piece : "?", (int)e->enc.start[t],
                    (int)e->enc.end[t]);
        }
    }
}

/* Encode and print the batch. When a text is bad (invalid UTF-8, say), the
 * texts before it are still printed, then the error names the bad input by
 * its 1-based position, and the command stops: output lines stay aligned
 * with input lines. */
static int flush_batch(const sn_model_t *model, sn_ctx_t *ctx, batch_t *b,
                       const sn_embed_opts_t *opts, int json, int first_index)
{
    sn_embedding_t out[SN_EMBED_BATCH];
    char err[512], msg[512] = "";
    int n = b->n, bad = -1;
    if (!n)
        return 0;
    int rc = sn_model_embed(model, ctx, (const char *const *)b->texts,
                            b->lens, n, opts, out, err, sizeof err);
    if (rc) {
        /* "text 3: invalid utf-8 ..." -> the failing text and the reason */
        int k;
        const char *colon = strchr(err, ':');
        if (sscanf(err, "text %d: ", &k) == 1 && colon && k >= 0 && k < n) {
            bad = k;
            snprintf(msg, sizeof msg, "%s", colon + 2);
        } else {
            bad = 0;
            snprintf(msg, sizeof msg, "%s", err);
        }
        n = bad;
        if (n > 0 && sn_model_embed(model, ctx, (const char *const *)b->texts,
                                    b->lens, n, opts, out, err, sizeof err))
            n = 0;
    }
    for (int i = 0; i < n; i++) {
        if (json)
            print_json(stdout, model, NULL, &out[i], b->texts[i], b->lens[i],
                       opts->want_tokens);
        else
            print_human(stdout, model, NULL, &out[i], b->texts[i], b->lens[i],
                        opts->want_tokens, first_index + i + 1);
        sn_embedding_free(&out[i]);
    }
    batch_clear(b);
    if (bad >= 0) {
        fflush(stdout);
        sn_cli_error("input %d: %s", first_index + bad + 1, msg);
        return SN_EXIT_ERROR;
    }
    return 0;
}

/* ---- by the daemon ------------------------------------------------------------ */

static float *floats_of(json_t *a, int *n)
{
    size_t len = json_array_size(a);
    float *v = malloc((len ? len : 1) * sizeof *v);
    if (!v)
        return NULL;
    for (size_t i = 0; i < len; i++)
        v[i] = (float)json_number_value(json_array_get(a, i));
    *n = (int)len;
    return v;
}

/* The daemon's tokens for one text -> e->enc, e->tokens and pieces. */
static int tokens_of(json_t *list, sn_embedding_t *e, const char ***pieces)
{
    size_t nt = json_array_size(list);
    e->enc.n_tokens = (int)nt;
    e->enc.ids = calloc(nt ? nt : 1, sizeof *e->enc.ids);
    e->enc.start = calloc(nt ? nt : 1, sizeof *e->enc.start);
    e->enc.end = calloc(nt ? nt : 1, sizeof *e->enc.end);
    *pieces = calloc(nt ? nt : 1, sizeof **pieces);
    if (!e->enc.ids || !e->enc.start || !e->enc.end || !*pieces)
        return -1;
    e->hidden = (int)json_array_size(
        json_object_get(json_array_get(list, 0), "embedding"));
    e->tokens = malloc((nt * (size_t)e->hidden + 1) * sizeof *e->tokens);
    if (!e->tokens)
        return -1;
    for (size_t t = 0; t < nt; t++) {
        json_t *tk = json_array_get(list, t);
        json_t *emb = json_object_get(tk, "embedding");
        e->enc.ids[t] = (int32_t)json_integer_value(json_object_get(tk, "id"));
        e->enc.start[t] =
            (int32_t)json_integer_value(json_object_get(tk, "start"));
        e->enc.end[t] = (int32_t)json_integer_value(json_object_get(tk, "end"));
        (*pieces)[t] = json_string_value(json_object_get(tk, "token"));
        if (!(*pieces)[t])
            (*pieces)[t] = "";
        if (json_array_size(emb) != (size_t)e->hidden)
            return -1;
        for (int j = 0; j < e->hidden; j++)
            e->tokens[t * (size_t)e->hidden + (size_t)j] =
                (float)json_number_value(json_array_get(emb, (size_t)j));
    }
    return 0;
}

/* Send texts [0, n) of the batch as one embed request; print the results. */
static int daemon_embed(sn_cli_conn_t *conn, const char *prompt_name,
                        batch_t *b, int n, const sn_embed_opts_t *opts,
                        int json, int first_index)
{
    json_t *req = json_object(), *texts = json_array(), *reply = NULL;
    int rc = SN_EXIT_ERROR;

    if (!req || !texts)
        goto oom;
    json_object_set_new(req, "op", json_string(sn_op_name(SN_OP_EMBED)));
    for (int i = 0; i < n; i++)
        if (json_array_append_new(texts, json_stringn(b->texts[i],
                                                      b->lens[i])))
            goto oom;
    json_object_set_new(req, "texts", texts);
    texts = NULL;
    if (opts->want_tokens)
        json_object_set_new(req, "tokens", json_true());
    if (prompt_name)
        json_object_set_new(req, "prompt", json_string(prompt_name));
    if (opts->dimensions)
        json_object_set_new(req, "dimensions",
                            json_integer(opts->dimensions));
    if ((rc = sn_cli_call(conn, req, &reply, NULL, 0)))
        goto out;
    rc = SN_EXIT_ERROR;
    json_t *embs = json_object_get(reply, "embeddings");
    json_t *n_tok = json_object_get(reply, "n_tokens");
    json_t *toks = json_object_get(reply, "tokens");
    json_t *cut = json_object_get(reply, "truncated"); /* older daemons: none */
    if (json_array_size(embs) != (size_t)n ||
        json_array_size(n_tok) != (size_t)n ||
        (opts->want_tokens && json_array_size(toks) != (size_t)n)) {
        sn_cli_error("bad reply from the daemon: %d results expected", n);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        sn_embedding_t e = {0};
        const char **pieces = NULL;
        e.sentence = floats_of(json_array_get(embs, (size_t)i), &e.dim);
        e.enc.n_tokens =
            (int)json_integer_value(json_array_get(n_tok, (size_t)i));
        e.enc.truncated = json_is_true(json_array_get(cut, (size_t)i));
        if (!e.sentence || (opts->want_tokens &&
                            tokens_of(json_array_get(toks, (size_t)i), &e,
                                      &pieces))) {
            sn_embedding_free(&e);
            free(pieces);
            sn_cli_error("bad reply from the daemon, or out of memory");
            goto out;
        }
        if (json)
            print_json(stdout, NULL, pieces, &e, b->texts[i], b->lens[i],
                       opts->want_tokens);
        else
            print_human(stdout, NULL, pieces, &e, b->texts[i], b->lens[i],
                        opts->want_tokens, first_index + i + 1);
        sn_embedding_free(&e);
        free(pieces);
    }
    rc = 0;
    goto out;
oom:
    sn_cli_error("out of memory");
out:
    json_decref(texts);
    json_decref(req);
    json_decref(reply);
    return rc;
}

/* As flush_batch, by the daemon: texts are checked for UTF-8 here, so that
 * the texts before a bad one are still encoded and printed. */
static int flush_daemon(sn_cli_conn_t *conn, const char *prompt_name,
                        batch_t *b, const sn_embed_opts_t *opts, int json,
                        int first_index)
{
    int n = b->n, bad = -1, rc = 0;
    size_t at = 0;
    for (int i = 0; i < n && bad < 0; i++)
        if (!sn_utf8_valid(b->texts[i], b->lens[i], &at))
            bad = i;
    if (bad >= 0)
        n = bad;
    if (n > 0)
        rc = daemon_embed(conn, prompt_name, b, n, opts, json, first_index);
    batch_clear(b);
    if (rc)
        return rc;
    if (bad >= 0) {
        fflush(stdout);
        sn_cli_error("input %d: invalid utf-8 at byte %zu",
                     first_index + bad + 1, at);
        return SN_EXIT_ERROR;
    }
    return 0;
}

/* One flush for both modes. */
typedef struct {
    const sn_model_t *model; /* in-process, or */
    sn_ctx_t *ctx;
    sn_cli_conn_t *conn;     /* the daemon */
    const char *prompt_name;
} embedder_t;

static int flush(embedder_t *em, batch_t *b, const sn_embed_opts_t *opts,
                 int json, int first_index)
{
    if (em->conn)
        return flush_daemon(em->conn, em->prompt_name, b, opts, json,
                            first_index);
    return flush_batch(em->model, em->ctx, b, opts, json, first_index);
}

int sn_cmd_embed(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"json", no_argument, NULL, 'j'},
        {"tokens", no_argument, NULL, 't'},
        {"input", required_argument, NULL, 'i'},
        {"prompt", required_argument, NULL, 'p'},
        {"dimensions", required_argument, NULL, 'd'},
        {"socket", required_argument, NULL, 's'},
        {"precision", required_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *model_path = NULL, *input = "lines", *prompt_name = NULL;
    int json = 0, c, status = SN_EXIT_OK, prec = SN_PREC_AUTO, prec_set = 0;
    sn_embed_opts_t opts = {0};
    char *texts[SN_EMBED_BATCH];
    size_t lens[SN_EMBED_BATCH];
    batch_t b = {texts, lens, 0};
    sn_model_t *model = NULL;
    sn_ctx_t *ctx = NULL;
    embedder_t em = {0};
    char err[512];
    char *line = NULL;
    size_t line_cap = 0;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'j': json = 1; break;
        case 't': opts.want_tokens = 1; break;
        case 'i': input = optarg; break;
        case 's': sn_cli_socket_opt = optarg; break;
        case 'p': prompt_name = optarg; break;
        case 'P':
            if ((prec = sn_precision_parse(optarg)) < 0) {
                sn_cli_error("--precision: '%s' is not auto, f32, bf16 or "
                             "int8",
                             optarg);
                return SN_EXIT_USAGE;
            }
            prec_set = 1;
            break;
        case 'd': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v <= 0 || v > 1 << 20) {
                sn_cli_error("--dimensions: '%s' is not a positive integer",
                             optarg);
                return SN_EXIT_USAGE;
            }
            opts.dimensions = (int)v;
            break;
        }
        case 'h': fputs(embed_usage, stdout); return SN_EXIT_OK;
        default: fputs(embed_usage, stderr); return SN_EXIT_USAGE;
        }
    }
    if (strcmp(input, "lines") && strcmp(input, "jsonl")) {
        sn_cli_error("embed: --input must be 'lines' or 'jsonl', not '%s'",
                     input);
        return SN_EXIT_USAGE;
    }
    if (!model_path && prec_set) {
        sn_cli_error("embed: --precision is for --model (the daemon's is "
                     "sensed --precision)");
        return SN_EXIT_USAGE;
    }
    if (!model_path) {
        /* by the daemon: it checks the prompt and the dimensions */
        if ((status = sn_cli_connect(&em.conn)))
            return status;
        em.prompt_name = prompt_name;
        goto run;
    }
    if (sn_model_load_prec(model_path, (sn_precision_t)prec, &model, err,
                           sizeof err)) {
        sn_cli_error("cannot load model: %s", err);
        return SN_EXIT_ERROR;
    }
    if (prompt_name) {
        opts.prompt = sn_model_prompt(model, prompt_name);
        if (!opts.prompt) {
            sn_cli_error("model has no prompt named '%s'", prompt_name);
            status = SN_EXIT_USAGE;
            goto done;
        }
    }
    if (opts.dimensions > sn_model_dim(model)) {
        sn_cli_error("--dimensions %d exceeds the model's %d",
                     opts.dimensions, sn_model_dim(model));
        status = SN_EXIT_USAGE;
        goto done;
    }
    ctx = sn_ctx_new(model);
    if (!ctx) {
        sn_cli_error("out of memory");
        status = SN_EXIT_ERROR;
        goto done;
    }
    em.model = model;
    em.ctx = ctx;
run:;

    int index = 0; /* index of the batch's first text */
    if (optind < argc) {
        for (int i = optind; i < argc && !status; i++) {
            b.lens[b.n] = strlen(argv[i]);
            b.texts[b.n] = strdup(argv[i]);
            if (!b.texts[b.n]) {
                sn_cli_error("out of memory");
                status = SN_EXIT_ERROR;
                break;
            }
            if (++b.n == SN_EMBED_BATCH) {
                status = flush(&em, &b, &opts, json, index);
                index += SN_EMBED_BATCH;
            }
        }
    } else {
        ssize_t n;
        long lineno = 0;
        while (!status && (n = getline(&line, &line_cap, stdin)) >= 0) {
            lineno++;
            if ((size_t)n > SN_MAX_LINE) {
                sn_cli_error("stdin line %ld: longer than %u bytes", lineno,
                             SN_MAX_LINE);
                status = SN_EXIT_ERROR;
                break;
            }
            if (n > 0 && line[n - 1] == '\n')
                line[--n] = '\0';
            if (!strcmp(input, "jsonl")) {
                json_error_t jerr;
                if (n > 0 && line[n - 1] == '\r')
                    line[--n] = '\0';
                if (n == 0)
                    continue; /* blank lines separate nothing */
                json_t *j = json_loadb(line, (size_t)n, JSON_DECODE_ANY |
                                       JSON_ALLOW_NUL, &jerr);
                if (!j || !json_is_string(j)) {
                    sn_cli_error("stdin line %ld: %s", lineno,
                                 j ? "not a JSON string" : jerr.text);
                    json_decref(j);
                    status = SN_EXIT_ERROR;
                    break;
                }
                b.lens[b.n] = json_string_length(j);
                b.texts[b.n] = malloc(b.lens[b.n] + 1);
                if (b.texts[b.n])
                    memcpy(b.texts[b.n], json_string_value(j),
                           b.lens[b.n] + 1);
                json_decref(j);
            } else {
                b.lens[b.n] = (size_t)n;
                b.texts[b.n] = strdup(line);
            }
            if (!b.texts[b.n]) {
                sn_cli_error("out of memory");
                status = SN_EXIT_ERROR;
                break;
            }
            if (++b.n == SN_EMBED_BATCH) {
                status = flush(&em, &b, &opts, json, index);
                index += SN_EMBED_BATCH;
            }
        }
    }
    if (!status)
        status = flush(&em, &b, &opts, json, index);
    batch_clear(&b);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        sn_cli_error("cannot write output: %s", strerror(errno));
        status = SN_EXIT_ERROR;
    }
done:
    free(line);
    sn_cli_close(em.conn);
    sn_ctx_free(ctx);
    sn_model_free(model);
    return status;
}
