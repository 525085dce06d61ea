/*
 * cmd_tokenize.c -- `sense tokenize`: a model folder's tokenizer alone, as
 * the tokenizer tools of llama.cpp and Hugging Face show it. It loads only
 * the tokenizer (sn_tokenizer_load), so it works for any tokenizer layout
 * even when the model's architecture is not supported; the default model,
 * whose tokenizer lives inside the model, is loaded whole.
 *
 * Per text, with --json, one line {"text", "ids", "tokens", "offsets"}:
 * offsets in code points into the text, special tokens [0, 0]; tokens are
 * the strings Hugging Face's Encoding.tokens gives. The text goes through
 * what sentence-transformers does before tokenizing (strip, do_lower_case;
 * see sn_tokenizer_load) and is cut at the folder's maximum, as the model
 * would see it, unless --max-tokens says otherwise.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "client.h"
#include "sense/embed.h"

static const char tokenize_usage[] =
    "usage: sense tokenize --model PATH|NAME [options] [TEXT...]\n"
    "\n"
    "Show how a model's tokenizer cuts texts: ids, token strings and\n"
    "character offsets. Only the tokenizer is loaded (tokenizer.json, or\n"
    "vocab.txt with tokenizer_config.json), so this works for every\n"
    "tokenizer layout, also where the model's architecture is not supported.\n"
    "Texts are prepared as sentence-transformers prepares them (stripped;\n"
    "lowercased when sentence_bert_config.json says do_lower_case) and cut\n"
    "at the model's maximum. Without TEXT arguments, texts are read from\n"
    "stdin, one per line.\n"
    "\n"
    "options:\n"
    "  --model PATH|NAME  model folder, 'default', or a repository id fetched\n"
    "                     by `sense pull`\n"
    "  --json             one JSON object per text: {\"text\", \"ids\",\n"
    "                     \"tokens\", \"offsets\"} (offsets [start, end) in code\n"
    "                     points; special tokens [0, 0])\n"
    "  --input FORMAT     stdin format: 'lines' (default) or 'jsonl' (one\n"
    "                     JSON string, or object with \"text\", per line)\n"
    "  --max-tokens N     cut at N tokens, specials included (0: never cut;\n"
    "                     default: the model's max_seq_length)\n"
    "  -h, --help         this help\n"
    "\n"
    "exit status: 0 ok, 1 error, 2 usage\n";

typedef struct {
    const sn_tokenizer_t *tok;
    int max_tokens;
    int json;
    sn_encoding_t enc;
    char piece_buf[1024];
} tk_t;

static void print_one(tk_t *k, const char *text, size_t len, int index)
{
    const sn_encoding_t *e = &k->enc;
    if (k->json) {
        json_t *o = json_object(), *ids = json_array(), *toks = json_array(),
               *offs = json_array();
        json_object_set_new(o, "text", json_stringn(text, len));
        for (int i = 0; i < e->n_tokens; i++) {
            const char *p = sn_tokenizer_token_str(
                k->tok, e, i, text, len, k->piece_buf, sizeof k->piece_buf);
            json_array_append_new(ids, json_integer(e->ids[i]));
            json_array_append_new(toks, json_string(p ? p : ""));
            json_t *off = json_array();
            json_array_append_new(off, json_integer(e->start[i]));
            json_array_append_new(off, json_integer(e->end[i]));
            json_array_append_new(offs, off);
        }
        json_object_set_new(o, "ids", ids);
        json_object_set_new(o, "tokens", toks);
        json_object_set_new(o, "offsets", offs);
        char *s = json_dumps(o, JSON_COMPACT);
        if (s)
            puts(s);
        free(s);
        json_decref(o);
        return;
    }
    printf("[%d] %d tokens\n", index, e->n_tokens);
    for (int i = 0; i < e->n_tokens; i++) {
        const char *p = sn_tokenizer_token_str(k->tok, e, i, text, len,
                                               k->piece_buf,
                                               sizeof k->piece_buf);
        char span[32];
        snprintf(span, sizeof span, "[%d, %d)", e->start[i], e->end[i]);
        printf("  %7d  %-12s %s%s\n", e->ids[i], span, p ? p : "",
               e->special[i] ? "  (special)" : "");
    }
}

static int tokenize_one(tk_t *k, const char *text, size_t len, int index)
{
    char err[512];
    size_t at;
    if (!sn_utf8_valid(text, len, &at)) {
        fflush(stdout);
        sn_cli_error("input %d: invalid utf-8 at byte %zu", index, at);
        return SN_EXIT_ERROR;
    }
    if (sn_tokenizer_encode(k->tok, text, len, k->max_tokens, &k->enc, err,
                            sizeof err)) {
        fflush(stdout);
        sn_cli_error("input %d: %s", index, err);
        return SN_EXIT_ERROR;
    }
    print_one(k, text, len, index);
    return 0;
}

int sn_cmd_tokenize(int argc, char **argv)
{
    static const struct option long_opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"json", no_argument, NULL, 'j'},
        {"input", required_argument, NULL, 'i'},
        {"max-tokens", required_argument, NULL, 'x'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *model_path = NULL, *input = "lines";
    long max_opt = -1;
    tk_t k;
    char err[512];
    sn_tokenizer_t *tok = NULL;
    sn_model_t *model = NULL;
    char *line = NULL;
    size_t line_cap = 0;
    int c, status = SN_EXIT_OK;

    memset(&k, 0, sizeof k);
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'j': k.json = 1; break;
        case 'i': input = optarg; break;
        case 'x': {
            char *end;
            max_opt = strtol(optarg, &end, 10);
            if (*end || max_opt < 0 || max_opt > 1 << 24) {
                sn_cli_error("--max-tokens: '%s' is not a count", optarg);
                return SN_EXIT_USAGE;
            }
            break;
        }
        case 'h': fputs(tokenize_usage, stdout); return SN_EXIT_OK;
        default: fputs(tokenize_usage, stderr); return SN_EXIT_USAGE;
        }
    }
    if (!model_path) {
        sn_cli_error("tokenize: --model PATH|NAME is required");
        fputs(tokenize_usage, stderr);
        return SN_EXIT_USAGE;
    }
    if (strcmp(input, "lines") && strcmp(input, "jsonl")) {
        sn_cli_error("tokenize: --input must be 'lines' or 'jsonl', not '%s'",
                     input);
        return SN_EXIT_USAGE;
    }

    /* the folder: as given, else a pulled model by name; "default" is a
     * TF.js graph whose tokenizer comes with the model */
    struct stat st;
    char pulled[4096];
    const char *dir = model_path;
    if (strcmp(model_path, "default") != 0 && stat(model_path, &st) != 0 &&
        sn_model_repo_id_valid(model_path) && model_path[0] != '/' &&
        sn_model_pulled_path(model_path, pulled, sizeof pulled) == 0 &&
        stat(pulled, &st) == 0)
        dir = pulled;
    if (!strcmp(model_path, "default")) {
        if (sn_model_load("default", &model, err, sizeof err)) {
            sn_cli_error("cannot load model: %s", err);
            return SN_EXIT_ERROR;
        }
        k.tok = sn_model_tokenizer(model);
        k.max_tokens = sn_model_max_tokens(model);
    } else {
        if (sn_tokenizer_load(dir, &tok, err, sizeof err)) {
            sn_cli_error("cannot load tokenizer: %s", err);
            return SN_EXIT_ERROR;
        }
        k.tok = tok;
        k.max_tokens = sn_tokenizer_max_tokens(tok);
    }
    if (max_opt >= 0)
        k.max_tokens = (int)max_opt;

    if (optind < argc) {
        for (int i = optind; i < argc && !status; i++)
            status = tokenize_one(&k, argv[i], strlen(argv[i]), i - optind + 1);
        goto out;
    }
    ssize_t n;
    long lineno = 0;
    int index = 0;
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
        if (strcmp(input, "jsonl") != 0) {
            status = tokenize_one(&k, line, (size_t)n, ++index);
            continue;
        }
        json_error_t jerr;
        if (n > 0 && line[n - 1] == '\r')
            line[--n] = '\0';
        if (n == 0)
            continue; /* blank lines separate nothing */
        json_t *j = json_loadb(line, (size_t)n,
                               JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        json_t *t = json_is_object(j) ? json_object_get(j, "text") : j;
        if (!j || !json_is_string(t)) {
            sn_cli_error("stdin line %ld: %s", lineno,
                         j ? "not a JSON string or an object with a "
                             "\"text\" string"
                           : jerr.text);
            json_decref(j);
            status = SN_EXIT_ERROR;
            break;
        }
        status = tokenize_one(&k, json_string_value(t), json_string_length(t),
                              ++index);
        json_decref(j);
    }
    if (!status && ferror(stdin)) {
        sn_cli_error("cannot read stdin");
        status = SN_EXIT_ERROR;
    }
out:
    free(line);
    sn_encoding_free(&k.enc);
    sn_tokenizer_free(tok);
    sn_model_free(model);
    return status;
}
