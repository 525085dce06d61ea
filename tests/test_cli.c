/*
 * test_cli.c -- `sense embed` end to end: the real binary, run through the
 * shell with files for stdin, stdout and stderr. Checks the output formats
 * (--json, --tokens, human), the input modes (arguments, lines, jsonl), the
 * exit codes (0 ok, 1 error, 2 usage) and the error messages.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <jansson.h>

#include "check.h"
#include "testutil.h"

static char tmp[64];
static char model[512];
static char out_path[128], err_path[128], in_path[128];

/* Run `sense ARGS` with `input` (len bytes) on stdin; returns exit code. */
static int run(const char *args, const char *input, size_t len)
{
    FILE *fp = fopen(in_path, "wb");
    CHECK(fp != NULL);
    if (len)
        CHECK(fwrite(input, 1, len, fp) == len);
    CHECK(fclose(fp) == 0);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s/sense' %s < '%s' > '%s' 2> '%s'",
             SN_BINARY_DIR, args, in_path, out_path, err_path);
    int st = system(cmd);
    CHECK(WIFEXITED(st));
    return WEXITSTATUS(st);
}

/* Parse stdout as JSON lines. */
static int read_lines(json_t **rows, int max)
{
    char *out = slurp(out_path), *save = NULL;
    int n = 0;
    for (char *line = strtok_r(out, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        json_error_t jerr;
        CHECK(n < max);
        rows[n] = json_loads(line, 0, &jerr);
        if (!rows[n]) {
            fprintf(stderr, "bad json output line %d: %s\n", n, jerr.text);
            exit(1);
        }
        n++;
    }
    free(out);
    return n;
}

static void check_stderr(const char *sub)
{
    char *err = slurp(err_path);
    if (!strstr(err, sub)) {
        fprintf(stderr, "stderr lacks '%s': %s\n", sub, err);
        exit(1);
    }
    free(err);
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/sense-cli-XXXXXX");
    CHECK(mkdtemp(tmp) != NULL);
    snprintf(out_path, sizeof out_path, "%s/out", tmp);
    snprintf(err_path, sizeof err_path, "%s/err", tmp);
    snprintf(in_path, sizeof in_path, "%s/in", tmp);
    snprintf(model, sizeof model, "%s/hf-reference/tiny-bert-uncased/model",
             SN_FIXTURES);
    char args[2048];
    json_t *rows[16];
    int n;

    /* texts from the arguments, in order; values as the reference's */
    snprintf(args, sizeof args, "embed --model '%s' --json 'Hello, World!' "
             "hello", model);
    CHECK_EQ(run(args, "", 0), 0);
    CHECK_EQ(n = read_lines(rows, 16), 2);
    CHECK_STREQ(json_string_value(json_object_get(rows[0], "text")),
                "Hello, World!");
    CHECK_STREQ(json_string_value(json_object_get(rows[1], "text")), "hello");
    json_t *emb = json_object_get(rows[0], "embedding");
    CHECK_EQ(json_array_size(emb), 64);
    CHECK(json_object_get(rows[0], "tokens") == NULL);
    {
        /* sentence 3 of the reference is "Hello, World!" */
        char path[1024];
        snprintf(path, sizeof path,
                 "%s/hf-reference/tiny-bert-uncased/expected.jsonl",
                 SN_FIXTURES);
        FILE *fp = fopen(path, "r");
        CHECK(fp != NULL);
        char *line = NULL;
        size_t cap = 0;
        json_t *ref = NULL;
        while (getline(&line, &cap, fp) > 0) {
            json_t *j = json_loads(line, 0, NULL);
            if (j && !strcmp(json_string_value(json_object_get(j, "text")),
                             "Hello, World!")) {
                ref = j;
                break;
            }
            json_decref(j);
        }
        free(line);
        fclose(fp);
        CHECK(ref != NULL);
        json_t *rs = json_object_get(ref, "sentence_embedding");
        for (size_t k = 0; k < 64; k++) {
            double a = json_number_value(json_array_get(emb, k));
            double b = json_number_value(json_array_get(rs, k));
            CHECK(a - b < 1e-4 && b - a < 1e-4);
        }
        json_decref(ref);
    }
    for (int i = 0; i < n; i++)
        json_decref(rows[i]);

    /* --tokens: every position, specials with (0, 0) */
    snprintf(args, sizeof args, "embed --model '%s' --json --tokens "
             "'Hello, World!'", model);
    CHECK_EQ(run(args, "", 0), 0);
    CHECK_EQ(n = read_lines(rows, 16), 1);
    json_t *toks = json_object_get(rows[0], "tokens");
    CHECK_EQ(json_array_size(toks), 7); /* [CLS] hel ##lo , world ! [SEP] */
    static const int starts[] = {0, 0, 3, 5, 7, 12, 0};
    static const int ends[] = {0, 3, 5, 6, 12, 13, 0};
    static const char *pieces[] = {"[CLS]", "hel", "##lo", ",", "world",
                                   "!", "[SEP]"};
    for (int t = 0; t < 7; t++) {
        json_t *tk = json_array_get(toks, (size_t)t);
        CHECK_EQ(json_integer_value(json_object_get(tk, "start")), starts[t]);
        CHECK_EQ(json_integer_value(json_object_get(tk, "end")), ends[t]);
        CHECK_STREQ(json_string_value(json_object_get(tk, "token")),
                    pieces[t]);
        CHECK(json_is_integer(json_object_get(tk, "id")));
        CHECK_EQ(json_array_size(json_object_get(tk, "embedding")), 64);
    }
    json_decref(rows[0]);

    /* stdin, one text per line; a blank line is an empty text */
    snprintf(args, sizeof args, "embed --model '%s' --json", model);
    const char *lines = "first line\n\nthird line\r\n";
    CHECK_EQ(run(args, lines, strlen(lines)), 0);
    CHECK_EQ(n = read_lines(rows, 16), 3);
    CHECK_STREQ(json_string_value(json_object_get(rows[1], "text")), "");
    for (int i = 0; i < n; i++)
        json_decref(rows[i]);

    /* --input jsonl: texts may hold newlines */
    snprintf(args, sizeof args, "embed --model '%s' --json --input jsonl",
             model);
    const char *jl = "\"two\\nlines\"\n\"caf\\u00e9\"\n";
    CHECK_EQ(run(args, jl, strlen(jl)), 0);
    CHECK_EQ(n = read_lines(rows, 16), 2);
    CHECK_STREQ(json_string_value(json_object_get(rows[0], "text")),
                "two\nlines");
    CHECK_STREQ(json_string_value(json_object_get(rows[1], "text")),
                "caf\xc3\xa9");
    for (int i = 0; i < n; i++)
        json_decref(rows[i]);
    const char *bad_jl = "\"ok\"\n{\"text\": 1}\n";
    CHECK_EQ(run(args, bad_jl, strlen(bad_jl)), 1);
    check_stderr("line 2");

    /* --dimensions: Matryoshka truncation */
    snprintf(args, sizeof args, "embed --model '%s' --json --dimensions 8 "
             "hello", model);
    CHECK_EQ(run(args, "", 0), 0);
    CHECK_EQ(n = read_lines(rows, 16), 1);
    CHECK_EQ(json_array_size(json_object_get(rows[0], "embedding")), 8);
    json_decref(rows[0]);

    /* the human-readable summary */
    snprintf(args, sizeof args, "embed --model '%s' hello", model);
    CHECK_EQ(run(args, "", 0), 0);
    char *out = slurp(out_path);
    CHECK(strstr(out, "\"hello\": 4 tokens, dim 64 [") != NULL);
    free(out);

    /* truncation is reported: n_tokens and truncated in --json, a warning
     * naming the input in human output (max_seq_length is 32 here) */
    {
        char longer[2048] = "";
        for (int w = 0; w < 100; w++)
            strcat(longer, w ? " word" : "word");
        strcat(longer, "\nhello\n");
        snprintf(args, sizeof args, "embed --model '%s' --json", model);
        CHECK_EQ(run(args, longer, strlen(longer)), 0);
        CHECK_EQ(n = read_lines(rows, 16), 2);
        CHECK_EQ(json_integer_value(json_object_get(rows[0], "n_tokens")), 32);
        CHECK(json_is_true(json_object_get(rows[0], "truncated")));
        CHECK_EQ(json_integer_value(json_object_get(rows[1], "n_tokens")), 4);
        CHECK(json_is_false(json_object_get(rows[1], "truncated")));
        for (int i = 0; i < n; i++)
            json_decref(rows[i]);
        char *err = slurp(err_path);
        CHECK(strstr(err, "warning") == NULL); /* --json: the flag only */
        free(err);
        snprintf(args, sizeof args, "embed --model '%s'", model);
        CHECK_EQ(run(args, longer, strlen(longer)), 0);
        check_stderr("sense: warning: input 1 is longer than the model's 32 "
                     "tokens");
        err = slurp(err_path);
        CHECK(strstr(err, "input 2") == NULL);
        free(err);
    }

    /* invalid UTF-8 names the input and exits 1 */
    snprintf(args, sizeof args, "embed --model '%s' --json", model);
    const char *bad = "fine\nbad \xff byte\n";
    CHECK_EQ(run(args, bad, strlen(bad)), 1);
    check_stderr("sense: input 2: ");
    check_stderr("utf-8");
    CHECK_EQ(n = read_lines(rows, 16), 1); /* what came before is printed */
    CHECK_STREQ(json_string_value(json_object_get(rows[0], "text")), "fine");
    json_decref(rows[0]);

    /* a line over the limit */
    size_t big = (16u << 20) + 10;
    char *huge = malloc(big + 1);
    CHECK(huge != NULL);
    memset(huge, 'a', big);
    huge[big] = '\n';
    CHECK_EQ(run(args, huge, big + 1), 1);
    check_stderr("longer than");
    free(huge);

    /* errors and usage */
    CHECK_EQ(run("embed --model /nonexistent hello", "", 0), 1);
    check_stderr("sense: cannot load model: ");
    /* without --model, embed asks the daemon: none listens there */
    CHECK_EQ(run("--socket /nonexistent/sense.sock embed hello", "", 0), 3);
    check_stderr("sense: cannot connect to '/nonexistent/sense.sock'");
    CHECK_EQ(run("embed --bogus", "", 0), 2);
    snprintf(args, sizeof args, "embed --model '%s' --prompt nope hi", model);
    CHECK_EQ(run(args, "", 0), 2);
    check_stderr("no prompt named 'nope'");
    snprintf(args, sizeof args, "embed --model '%s' --dimensions 0 hi", model);
    CHECK_EQ(run(args, "", 0), 2);
    /* --precision: reaches the encoder (int8 differs from f32, closely),
     * bad values and use without --model are usage errors */
    {
        double v[2][64], ab = 0, aa = 0, bb = 0;
        for (int p = 0; p < 2; p++) {
            snprintf(args, sizeof args,
                     "embed --model '%s' --precision %s --json 'Hello, World!'",
                     model, p ? "int8" : "f32");
            CHECK_EQ(run(args, "", 0), 0);
            CHECK_EQ(n = read_lines(rows, 16), 1);
            json_t *e = json_object_get(rows[0], "embedding");
            CHECK_EQ(json_array_size(e), 64);
            for (size_t k = 0; k < 64; k++)
                v[p][k] = json_number_value(json_array_get(e, k));
            json_decref(rows[0]);
        }
        for (int k = 0; k < 64; k++) {
            ab += v[0][k] * v[1][k];
            aa += v[0][k] * v[0][k];
            bb += v[1][k] * v[1][k];
        }
        CHECK(memcmp(v[0], v[1], sizeof v[0]) != 0);
        CHECK(ab / sqrt(aa * bb) > 0.999);
    }
    snprintf(args, sizeof args, "embed --model '%s' --precision fp8 hi",
             model);
    CHECK_EQ(run(args, "", 0), 2);
    check_stderr("--precision: 'fp8'");
    CHECK_EQ(run("embed --precision int8 hi", "", 0), 2);
    check_stderr("--precision is for --model");
    CHECK_EQ(run("frobnicate", "", 0), 2);
    check_stderr("'frobnicate' is not a command");
    CHECK_EQ(run("", "", 0), 2);
    CHECK_EQ(run("--help", "", 0), 0);
    out = slurp(out_path);
    CHECK(strstr(out, "usage: sense") != NULL);
    free(out);
    CHECK_EQ(run("embed --help", "", 0), 0);
    out = slurp(out_path);
    CHECK(strstr(out, "--tokens") != NULL && strstr(out, "--input") != NULL);
    free(out);

    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0);
    printf("cli: ok\n");
    return 0;
}
