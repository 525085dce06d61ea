/*
 * cmd_which.c -- `sense which WORD TEXT`: which sense of WORD the text
 * means, among those the daemon's inventory holds (the `sense.which` op).
 *
 * The words of TEXT are joined with spaces; TEXT `-` reads the text from
 * stdin. --span S:E names the word's place (code points) instead of
 * letting the daemon find its first occurrence. The human output is the
 * chosen sense with its score, margin and gloss, then the other candidates,
 * best first.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

static const char which_usage[] =
    "usage: sense which [options] WORD TEXT...\n"
    "\n"
    "Tell which sense of WORD the text means, among the senses the daemon\n"
    "holds for it (add some with 'sense senses add'). WORD may be inflected\n"
    "('mice' finds the senses of 'mouse'); it is looked for in the text as a\n"
    "whole word, in any case. The words of TEXT are joined with spaces; '-'\n"
    "reads the text from stdin.\n"
    "\n"
    "options:\n"
    "  --span S:E         the word is at characters [S, E) of the text (code\n"
    "                     points, from 0) rather than its first occurrence\n"
    "  --json             print the daemon's reply line\n"
    "  --socket PATH      the daemon's socket\n"
    "  -h, --help         this help\n"
    "\n"
    "exit status: 0 ok, 1 error (the word is not in the text, or it has no\n"
    "senses), 2 usage, 3 cannot connect to the daemon\n";

/* Print s on one line: newlines and tabs as spaces. */
static void put_flat(const char *s)
{
    for (; s && *s; s++)
        putchar(*s == '\n' || *s == '\r' || *s == '\t' ? ' ' : *s);
}

static char *read_stdin(void)
{
    size_t len = 0, cap = 0;
    char *buf = NULL;
    for (;;) {
        if (cap - len < 65536) {
            cap = cap ? cap * 2 : 65536;
            char *p = cap <= SN_MAX_LINE + 65536u ? realloc(buf, cap + 1)
                                                  : NULL;
            if (!p) {
                sn_cli_error("which: the text on stdin is longer than %u "
                             "bytes", SN_MAX_LINE);
                free(buf);
                return NULL;
            }
            buf = p;
        }
        size_t n = fread(buf + len, 1, cap - len, stdin);
        len += n;
        if (n == 0)
            break;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    buf[len] = '\0';
    return buf;
}

int sn_cmd_which(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"span", required_argument, NULL, 'p'},
        {"json", no_argument, NULL, 'j'},
        {"socket", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *raw = NULL, *word;
    json_t *req = NULL, *reply = NULL;
    sn_cli_conn_t *conn = NULL;
    char *text = NULL;
    long span_s = -1, span_e = -1;
    int json = 0, c, rc = SN_EXIT_USAGE;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': {
            char *end, *end2 = NULL;
            span_s = strtol(optarg, &end, 10);
            span_e = *end == ':' ? strtol(end + 1, &end2, 10) : -1;
            if (*end != ':' || end == optarg || *end2 || end2 == end + 1 ||
                span_s < 0 || span_e <= span_s || span_e > 0x7fffffffL) {
                sn_cli_error("--span: '%s' is not START:END with 0 <= START "
                             "< END", optarg);
                return SN_EXIT_USAGE;
            }
            break;
        }
        case 'j': json = 1; break;
        case 's': sn_cli_socket_opt = optarg; break;
        case 'h': fputs(which_usage, stdout); return SN_EXIT_OK;
        default: fputs(which_usage, stderr); return SN_EXIT_USAGE;
        }
    }
    if (argc - optind < 2) {
        sn_cli_error(argc - optind ? "which: in what text?"
                                   : "which: which word, in what text?");
        fputs(which_usage, stderr);
        return SN_EXIT_USAGE;
    }
    word = argv[optind];
    if (!*word || !sn_utf8_valid(word, strlen(word), NULL)) {
        sn_cli_error("which: the word must be non-empty utf-8");
        return SN_EXIT_USAGE;
    }
    if (argc - optind == 2 && !strcmp(argv[optind + 1], "-")) {
        if (!(text = read_stdin()))
            return SN_EXIT_ERROR;
    } else {
        size_t len = 0;
        for (int i = optind + 1; i < argc; i++)
            len += strlen(argv[i]) + 1;
        if (!(text = malloc(len + 1))) {
            sn_cli_error("out of memory");
            return SN_EXIT_ERROR;
        }
        text[0] = '\0';
        for (int i = optind + 1; i < argc; i++) {
            if (i > optind + 1)
                strcat(text, " ");
            strcat(text, argv[i]);
        }
    }
    if (!sn_utf8_valid(text, strlen(text), NULL)) {
        sn_cli_error("which: the text is not utf-8");
        rc = SN_EXIT_ERROR;
        goto out;
    }
    if ((rc = sn_cli_connect(&conn)))
        goto out;
    req = json_object();
    json_object_set_new(req, "op", json_string(sn_op_name(SN_OP_SENSE_WHICH)));
    json_object_set_new(req, "text", json_string(text));
    json_object_set_new(req, "word", json_string(word));
    if (span_s >= 0) {
        json_object_set_new(req, "start", json_integer(span_s));
        json_object_set_new(req, "end", json_integer(span_e));
    }
    rc = sn_cli_call(conn, req, &reply, &raw, 0);
    if (json && raw)
        printf("%s\n", raw);
    if (rc || json)
        goto out;

    const char *lemma = json_string_value(json_object_get(reply, "lemma"));
    const char *sense = json_string_value(json_object_get(reply, "sense"));
    json_t *cands = json_object_get(reply, "candidates"), *cand;
    const char *gloss = json_string_value(
        json_object_get(json_array_get(cands, 0), "gloss"));
    size_t i;
    printf("%s", word);
    if (lemma && strcmp(lemma, word))
        printf(" (%s)", lemma);
    printf(" at chars %lld-%lld: %s  (score %.4f, margin %.4f)\n",
           (long long)json_integer_value(json_object_get(reply, "start")),
           (long long)json_integer_value(json_object_get(reply, "end")),
           sense ? sense : "?",
           json_number_value(json_object_get(reply, "score")),
           json_number_value(json_object_get(reply, "margin")));
    if (gloss) {
        fputs("    ", stdout);
        put_flat(gloss);
        putchar('\n');
    }
    if (json_array_size(cands) > 1)
        printf("other senses:\n");
    json_array_foreach(cands, i, cand) {
        if (i == 0)
            continue;
        const char *s = json_string_value(json_object_get(cand, "sense"));
        const char *g = json_string_value(json_object_get(cand, "gloss"));
        printf("  %7.4f  %s", json_number_value(json_object_get(cand, "score")),
               s ? s : "?");
        if (g) {
            fputs("  ", stdout);
            put_flat(g);
        }
        putchar('\n');
    }
out:
    json_decref(req);
    json_decref(reply);
    free(text);
    sn_cli_close(conn);
    return rc;
}
