/*
 * cmd_embed.c -- `sense embed`: encode texts in-process, without a daemon.
 *
 * Texts come from the arguments, else from stdin one per line, or with
 * --input jsonl one JSON string per line (so a text may hold newlines).
 * They are encoded in batches of SN_EMBED_BATCH texts and printed in input
 * order as they are done, so memory stays bounded on long inputs.
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
    "usage: sense embed --model PATH [options] [TEXT...]\n"
    "\n"
    "Encode texts with a model folder (as SentenceTransformer.save() or a\n"
    "Hugging Face clone leaves it), in this process. Without TEXT arguments,\n"
    "texts are read from stdin, one per line.\n"
    "\n"
    "options:\n"
    "  --model PATH       model folder, or 'default' for the default model\n"
    "  --json             one JSON object per text: {\"text\", \"embedding\"}\n"
    "  --tokens           also list every token fed to the encoder with its\n"
    "                     id, piece, character offsets and last hidden state\n"
    "  --input FORMAT     stdin format: 'lines' (default) or 'jsonl' (one\n"
    "                     JSON string per line)\n"
    "  --prompt NAME      prepend the model's prompt NAME (e.g. 'query')\n"
    "  --dimensions N     keep the first N dimensions, renormalized\n"
    "  -h, --help         this help\n"
    "\n"
    "exit status: 0 ok, 1 error, 2 usage\n";

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

static void print_json(FILE *out, const sn_model_t *model,
                       const sn_embedding_t *e, const char *text, size_t len,
                       int tokens)
{
    fputs("{\"text\":", out);
    put_string(out, text, len);
    fputs(",\"embedding\":", out);
    put_floats(out, e->sentence, e->dim);
    if (tokens) {
        const sn_tokenizer_t *tok = sn_model_tokenizer(model);
        fputs(",\"tokens\":[", out);
        for (int t = 0; t < e->enc.n_tokens; t++) {
            const char *piece = sn_tokenizer_piece(tok, e->enc.ids[t]);
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

static void print_human(FILE *out, const sn_model_t *model,
                        const sn_embedding_t *e, const char *text, size_t len,
                        int tokens)
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
    if (tokens) {
        const sn_tokenizer_t *tok = sn_model_tokenizer(model);
        for (int t = 0; t < e->enc.n_tokens; t++) {
            const char *piece = sn_tokenizer_piece(tok, e->enc.ids[t]);
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
            print_json(stdout, model, &out[i], b->texts[i], b->lens[i],
                       opts->want_tokens);
        else
            print_human(stdout, model, &out[i], b->texts[i], b->lens[i],
                        opts->want_tokens);
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

int sn_cmd_embed(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"json", no_argument, NULL, 'j'},
        {"tokens", no_argument, NULL, 't'},
        {"input", required_argument, NULL, 'i'},
        {"prompt", required_argument, NULL, 'p'},
        {"dimensions", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *model_path = NULL, *input = "lines", *prompt_name = NULL;
    int json = 0, c, status = SN_EXIT_OK;
    sn_embed_opts_t opts = {0};
    char *texts[SN_EMBED_BATCH];
    size_t lens[SN_EMBED_BATCH];
    batch_t b = {texts, lens, 0};
    sn_model_t *model = NULL;
    sn_ctx_t *ctx = NULL;
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
        case 'p': prompt_name = optarg; break;
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
    if (!model_path) {
        sn_cli_error("embed: --model is required (a folder, or 'default')");
        return SN_EXIT_USAGE;
    }
    if (strcmp(input, "lines") && strcmp(input, "jsonl")) {
        sn_cli_error("embed: --input must be 'lines' or 'jsonl', not '%s'",
                     input);
        return SN_EXIT_USAGE;
    }
    if (sn_model_load(model_path, &model, err, sizeof err)) {
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
                status = flush_batch(model, ctx, &b, &opts, json, index);
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
                status = flush_batch(model, ctx, &b, &opts, json, index);
                index += SN_EMBED_BATCH;
            }
        }
    }
    if (!status)
        status = flush_batch(model, ctx, &b, &opts, json, index);
    batch_clear(&b);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        sn_cli_error("cannot write output: %s", strerror(errno));
        status = SN_EXIT_ERROR;
    }
done:
    free(line);
    sn_ctx_free(ctx);
    sn_model_free(model);
    return status;
}
