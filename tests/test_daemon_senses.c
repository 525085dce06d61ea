/*
 * test_daemon_senses.c -- word senses end to end: the real build/sensed
 * with the DEFAULT model (the fixtures' random-weight models cannot tell
 * senses apart; a missing default model fails, telling to run
 * scripts/setup) on a temporary socket and database, spoken to through the
 * real `sense` client and through raw sockets.
 *
 * Covers: loading data/senses-demo.jsonl with `sense senses add --file`
 * (twice: nothing is stored twice); `sense which` on every query of
 * data/senses-demo-queries.jsonl (at least 90% right), its human output,
 * --span and the text from stdin; sense.which, sense.add, sense.list and
 * sense.remove errors over a raw socket, each answered while the
 * connection stays usable; sense.list paging and examples with their
 * spans; pipelined sense ops on one connection taking effect in request
 * order (on two encoder workers); concurrent clients getting the answers
 * of a lone client; a removed sense no longer a candidate, before and
 * after a daemon restart; `sense senses import-wordnet --limit 5` into the
 * live daemon's database (and its errors); --help and the exit codes of
 * every new command.
 *
 * Each phase prints its time.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "check.h"
#include "testutil.h"
#include "sense/sense.h"
#include "sense/wordnet.h"

#define TIMEOUT_MS 30000
#define N_THREADS 4

static char tmp[64], sock_path[100], db_path[128];
static char out_path[128], err_path[128], in_path[128];
static int n_logs;
static char log_path[160];

#include "rawclient.h" /* uses sock_path and TIMEOUT_MS */

/* ---- the daemon ---------------------------------------------------------------- */

static pid_t live[4];

static void kill_live(void)
{
    for (int i = 0; i < 4; i++)
        if (live[i] > 0) {
            kill(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
            live[i] = 0;
        }
}

static void track(pid_t pid, int add)
{
    for (int i = 0; i < 4; i++)
        if (add ? live[i] == 0 : live[i] == pid) {
            live[i] = add ? pid : 0;
            return;
        }
}

/* sensed with the default model and two encoder workers, on the test's
 * socket and database; waits until it answers. */
static pid_t daemon_start(void)
{
    const char *argv[] = {SN_BINARY_DIR "/sensed", "--socket", sock_path,
                          "--db", db_path, "--model", "default",
                          "--threads", "2", "--log-level", "debug", NULL};
    snprintf(log_path, sizeof log_path, "%s/log%d", tmp, ++n_logs);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0)
            _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    track(pid, 1);
    for (int i = 0; i < 1000; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            track(pid, 0);
            char *text = slurp(log_path);
            fprintf(stderr, "sensed exited early (status %d):\n%s\n", st,
                    text);
            exit(1);
        }
        int fd = try_connect();
        if (fd >= 0) {
            close(fd);
            return pid;
        }
        usleep(10000);
    }
    fprintf(stderr, "sensed did not start listening on '%s'\n", sock_path);
    exit(1);
}

static int daemon_stop(pid_t pid, int sig)
{
    int st = 0;
    CHECK(kill(pid, sig) == 0);
    for (int i = 0; i < 3000; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid) {
            track(pid, 0);
            return st;
        }
        usleep(10000);
    }
    fprintf(stderr, "sensed did not exit after signal %d\n", sig);
    exit(1);
}

/* ---- raw clients ------------------------------------------------------------------ */

/* The next reply line, parsed. */
static void check_ok(json_t *r, const char *what)
{
    if (!json_is_true(json_object_get(r, "ok"))) {
        char *s = json_dumps(r, 0);
        fprintf(stderr, "%s: expected ok, got %.500s\n", what, s);
        exit(1);
    }
}

/* An error reply with `code` whose message contains `sub`. */
static void check_error(json_t *r, const char *code, const char *sub,
                        const char *what)
{
    json_t *e = json_object_get(r, "error");
    const char *c = json_string_value(json_object_get(e, "code"));
    const char *m = json_string_value(json_object_get(e, "message"));
    if (!json_is_false(json_object_get(r, "ok")) || !c || !m ||
        strcmp(c, code) || (sub && !strstr(m, sub))) {
        char *s = json_dumps(r, 0);
        fprintf(stderr, "%s: expected error %s (\"%s\"), got %s\n", what,
                code, sub ? sub : "", s);
        exit(1);
    }
}

/* A bad request gets its error, then the connection still answers. */
static void bad(client_t *c, const char *req, const char *code,
                const char *sub)
{
    json_t *r = cl_call(c, req);
    check_error(r, code, sub, req);
    json_decref(r);
    r = cl_call(c, "{\"id\":\"after\",\"op\":\"sense.list\",\"lemma\":"
                   "\"bat\"}");
    check_ok(r, req);
    CHECK_STREQ(json_string_value(json_object_get(r, "id")), "after");
    CHECK_EQ(json_array_size(json_object_get(r, "senses")), 2);
    json_decref(r);
}

/* ---- the CLI -------------------------------------------------------------------- */

/* Run `sense ARGS` (shell words) with `input` on stdin; its exit code. */
static int run_cli(const char *args, const char *input)
{
    FILE *fp = fopen(in_path, "wb");
    CHECK(fp != NULL);
    if (input)
        fputs(input, fp);
    CHECK(fclose(fp) == 0);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s/sense' --socket '%s' %s < '%s' > '%s' "
             "2> '%s'", SN_BINARY_DIR, sock_path, args, in_path, out_path,
             err_path);
    int st = system(cmd);
    CHECK(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void check_file(const char *path, const char *which, const char *sub)
{
    if (!file_has(path, sub)) {
        char *o = slurp(path);
        fprintf(stderr, "%s lacks '%s': %s\n", which, sub, o);
        exit(1);
    }
}

static void check_out(const char *sub) { check_file(out_path, "stdout", sub); }
static void check_err(const char *sub) { check_file(err_path, "stderr", sub); }

/* `sense ARGS` exits with `code`, and stdout (out) or stderr has `sub`. */
static void cli_expect(const char *args, int code, const char *out,
                       const char *err)
{
    int rc = run_cli(args, NULL);
    if (rc != code) {
        char *o = slurp(out_path), *e = slurp(err_path);
        fprintf(stderr, "sense %s: exit %d, expected %d\nstdout: %s\n"
                "stderr: %s\n", args, rc, code, o, e);
        exit(1);
    }
    if (out)
        check_out(out);
    if (err)
        check_err(err);
}

/* ---- the demo queries ----------------------------------------------------------- */

typedef struct {
    char lemma[64], sense[64], text[512];
} query_t;

static query_t queries[128];
static int n_queries;

static void load_queries(void)
{
    FILE *fp = fopen(SN_SOURCE_DIR "/data/senses-demo-queries.jsonl", "r");
    char *line = NULL;
    size_t cap = 0;
    CHECK(fp != NULL);
    while (getline(&line, &cap, fp) > 0 && n_queries < 128) {
        json_t *j = json_loads(line, 0, NULL);
        CHECK(j != NULL);
        query_t *q = &queries[n_queries++];
        snprintf(q->lemma, sizeof q->lemma, "%s",
                 json_string_value(json_object_get(j, "lemma")));
        snprintf(q->sense, sizeof q->sense, "%s",
                 json_string_value(json_object_get(j, "sense")));
        snprintf(q->text, sizeof q->text, "%s",
                 json_string_value(json_object_get(j, "text")));
        json_decref(j);
    }
    free(line);
    fclose(fp);
    CHECK(n_queries >= 10);
}

/* A sense.which request line for query i. */
static char *which_req(int id, const query_t *q)
{
    json_t *j = json_pack("{s:i,s:s,s:s,s:s}", "id", id, "op", "sense.which",
                          "text", q->text, "word", q->lemma);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    CHECK(s != NULL);
    return s;
}

static char *senses_seq[128]; /* each query's answer from a lone client */

typedef struct {
    int t, n_bad;
} conc_t;

static void *conc_main(void *arg)
{
    conc_t *ct = arg;
    client_t *c = cl_open();
    for (int i = ct->t; i < n_queries; i += N_THREADS) {
        char *req = which_req(i, &queries[i]);
        json_t *r = cl_call(c, req);
        free(req);
        if (!json_is_true(json_object_get(r, "ok")) ||
            json_integer_value(json_object_get(r, "id")) != i ||
            strcmp(json_string_value(json_object_get(r, "sense")),
                   senses_seq[i]))
            ct->n_bad++;
        json_decref(r);
    }
    cl_close(c);
    return NULL;
}

/* Does sense.list's totals say lemmas/senses/examples? */
static void check_totals(client_t *c, int lemmas, int senses, int examples)
{
    json_t *r = cl_call(c, "{\"op\":\"sense.list\"}");
    check_ok(r, "sense.list totals");
    json_t *t = json_object_get(r, "total");
    CHECK_EQ(json_integer_value(json_object_get(t, "lemmas")), lemmas);
    CHECK_EQ(json_integer_value(json_object_get(t, "senses")), senses);
    CHECK_EQ(json_integer_value(json_object_get(t, "examples")), examples);
    json_decref(r);
}

int main(void)
{
    char model_dir[4096], args[4096], path[4200];
    struct stat st;
    json_t *r;

    signal(SIGPIPE, SIG_IGN);
    atexit(kill_live);
    if (sn_model_default_path(model_dir, sizeof model_dir) ||
        stat(model_dir, &st) || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "the default model is not at '%s': run scripts/setup "
                "to fetch it\n", model_dir);
        return 1;
    }
    snprintf(path, sizeof path, "%s/index.noun", SN_WORDNET_DIR);
    if (access(path, R_OK)) {
        fprintf(stderr, "WordNet is not installed ('%s' missing): run "
                "scripts/setup (Debian package wordnet-base)\n", path);
        return 1;
    }
    snprintf(tmp, sizeof tmp, "/tmp/sense-senses-XXXXXX");
    CHECK(mkdtemp(tmp) != NULL);
    snprintf(sock_path, sizeof sock_path, "%s/s.sock", tmp);
    snprintf(db_path, sizeof db_path, "%s/sense.db", tmp);
    snprintf(out_path, sizeof out_path, "%s/out", tmp);
    snprintf(err_path, sizeof err_path, "%s/err", tmp);
    snprintf(in_path, sizeof in_path, "%s/in", tmp);
    load_queries();

    /* ---- the demo inventory through the CLI ----------------------------------- */
    phase("start with the default model, load the demo inventory");
    pid_t pid = daemon_start();
    cli_expect("senses add --file '" SN_SOURCE_DIR "/data/senses-demo.jsonl'",
               0, "added 120 examples of 30 senses from", NULL);
    client_t *c = cl_open();
    check_totals(c, 14, 30, 120);
    /* again, in batches of 7 examples (lines split across requests): the
     * same examples are not stored twice */
    cli_expect("senses add --batch 7 --file '" SN_SOURCE_DIR
               "/data/senses-demo.jsonl'", 0, "added 120 examples", NULL);
    check_totals(c, 14, 30, 120);
    /* and from stdin, with --json */
    {
        char *demo = slurp(SN_SOURCE_DIR "/data/senses-demo.jsonl");
        CHECK_EQ(run_cli("senses add --json --file -", demo), 0);
        check_out("{\"id\":1,\"ok\":true,\"added\":120}");
        free(demo);
    }

    /* ---- sense which on the demo queries ----------------------------------------- */
    phase("sense which on the demo queries");
    int n_right = 0;
    for (int i = 0; i < n_queries; i++) {
        const query_t *q = &queries[i];
        snprintf(args, sizeof args, "which --json '%.63s' -", q->lemma);
        CHECK_EQ(run_cli(args, q->text), 0);
        char *o = slurp(out_path);
        json_t *j = json_loads(o, 0, NULL);
        free(o);
        CHECK(j != NULL);
        check_ok(j, q->text);
        CHECK_STREQ(json_string_value(json_object_get(j, "lemma")), q->lemma);
        const char *got = json_string_value(json_object_get(j, "sense"));
        senses_seq[i] = strdup(got);
        n_right += !strcmp(got, q->sense);
        if (strcmp(got, q->sense))
            printf("\n  miss: %s in \"%s\": %s, not %s", q->lemma, q->text,
                   got, q->sense);
        json_t *cands = json_object_get(j, "candidates");
        CHECK(json_array_size(cands) >= 2);
        CHECK_STREQ(json_string_value(json_object_get(json_array_get(cands, 0),
                                                      "sense")), got);
        json_decref(j);
    }
    printf(" %d/%d right", n_right, n_queries);
    CHECK(n_right * 10 >= n_queries * 9);
    /* the human output: the choice, its score and gloss, then the others */
    cli_expect("which python 'the python swallowed a rabbit'", 0,
               "python at chars 4-10: snake  (score ", NULL);
    check_out("\n    a large nonvenomous snake that kills its prey by "
              "constriction\nother senses:\n");
    check_out("  language  the Python programming language\n");
    /* an inflected word; a span; the text's words joined */
    cli_expect("which pythons Two pythons slept on the warm rock", 0,
               "pythons (python) at chars 4-11: snake", NULL);
    cli_expect("which --span 19:25 python I sat by the bank, python in hand",
               0, "python at chars 19-25: ", NULL);

    /* ---- errors over a raw socket --------------------------------------------- */
    phase("sense.* errors over a raw socket");
    r = cl_call(c, "{\"id\":1,\"op\":\"sense.which\",\"text\":\"the bank of "
                   "the river\",\"word\":\"python\"}");
    check_error(r, "not_found", "word 'python' not found in text", "which");
    CHECK_EQ(json_integer_value(json_object_get(r, "id")), 1);
    json_decref(r);
    bad(c, "{\"op\":\"sense.which\",\"text\":\"a zebra\",\"word\":\"zebra\"}",
        "not_found", "no senses of 'zebra'");
    bad(c, "{\"op\":\"sense.which\",\"word\":\"bat\"}", "bad_request",
        "missing 'text'");
    bad(c, "{\"op\":\"sense.which\",\"text\":7,\"word\":\"bat\"}",
        "bad_request", "'text' must be a string");
    bad(c, "{\"op\":\"sense.which\",\"text\":\"a bat\"}", "bad_request",
        "missing 'word'");
    bad(c, "{\"op\":\"sense.which\",\"text\":\"a bat\",\"word\":[\"bat\"]}",
        "bad_request", "'word' must be a string");
    bad(c, "{\"op\":\"sense.which\",\"text\":\"a bat\",\"start\":2}",
        "bad_request", "both 'start' and 'end'");
    bad(c, "{\"op\":\"sense.which\",\"text\":\"a bat\",\"start\":2,\"end\":2}",
        "bad_request", "greater than 'start'");
    bad(c, "{\"op\":\"sense.which\",\"text\":\"a bat\",\"start\":2,"
           "\"end\":50}", "bad_request", "not inside the text");
    /* a span alone: the word is the text there */
    r = cl_call(c, "{\"op\":\"sense.which\",\"text\":\"a bat flew out of the "
                   "cave at dusk\",\"start\":2,\"end\":5}");
    check_ok(r, "which by span");
    CHECK_STREQ(json_string_value(json_object_get(r, "lemma")), "bat");
    CHECK_STREQ(json_string_value(json_object_get(r, "sense")), "animal");
    json_decref(r);
    bad(c, "{\"op\":\"sense.add\",\"sense\":\"x\",\"examples\":[\"a bat\"]}",
        "bad_request", "missing 'lemma'");
    bad(c, "{\"op\":\"sense.add\",\"lemma\":\"bat\",\"examples\":[\"a bat\"]}",
        "bad_request", "missing 'sense'");
    bad(c, "{\"op\":\"sense.add\",\"lemma\":\"bat\",\"sense\":\"x\"}",
        "bad_request", "missing 'examples'");
    bad(c, "{\"op\":\"sense.add\",\"lemma\":\"bat\",\"sense\":\"x\","
           "\"examples\":[]}", "bad_request", "'examples' is empty");
    bad(c, "{\"op\":\"sense.add\",\"lemma\":\"bat\",\"sense\":\"x\","
           "\"examples\":\"a bat\"}", "bad_request", "must be an array");
    bad(c, "{\"op\":\"sense.add\",\"lemma\":\"bat\",\"sense\":\"x\","
           "\"examples\":[\"a bat\",\"\"]}", "bad_request",
        "examples[1] is empty");
    bad(c, "{\"op\":\"sense.add\",\"lemma\":\"bat\",\"sense\":\"x\","
           "\"examples\":[42]}", "bad_request", "examples[0] must be");
    bad(c, "{\"op\":\"sense.add\",\"lemma\":5,\"sense\":\"x\","
           "\"examples\":[\"a bat\"]}", "bad_request", "'lemma' must be");
    bad(c, "{\"op\":\"sense.add\",\"lemma\":\"bat\",\"sense\":\"x\","
           "\"gloss\":true,\"examples\":[\"a bat\"]}", "bad_request",
        "'gloss' must be");
    bad(c, "{\"op\":\"sense.add\",\"lemma\":\"bat\",\"sense\":\"x\","
           "\"examples\":[\"a bat\",\"no such word here\"]}", "bad_request",
        "examples[1]: the example does not contain 'bat'");
    bad(c, "{\"op\":\"sense.add\",\"lemma\":\"bat\",\"sense\":\"x\","
           "\"examples\":[{\"text\":\"a bat\",\"start\":2,\"end\":9}]}",
        "bad_request", "span [2, 9) is not inside the example's 5");
    bad(c, "{\"op\":\"sense.add\",\"lemma\":\"bat\",\"sense\":\"x\","
           "\"examples\":[{\"text\":\"a bat\",\"start\":2}]}", "bad_request",
        "both 'start' and 'end'");
    bad(c, "{\"op\":\"sense.add\",\"senses\":[]}", "bad_request",
        "'senses' is empty");
    bad(c, "{\"op\":\"sense.add\",\"senses\":[{\"lemma\":\"bat\",\"sense\":"
           "\"x\",\"examples\":[\"a bat\"]},7]}", "bad_request",
        "senses[1] must be an object");
    bad(c, "{\"op\":\"sense.add\",\"senses\":[{\"lemma\":\"bat\",\"sense\":"
           "\"x\",\"examples\":[\"a bat\"]},{\"lemma\":\"bat\",\"sense\":"
           "\"y\",\"examples\":[\"a cat\"]}]}", "bad_request",
        "senses[1].examples[0]: the example does not contain 'bat'");
    bad(c, "{\"op\":\"sense.add\",\"senses\":[{\"lemma\":\"bat\"}]}",
        "bad_request", "senses[0]: missing 'sense'");
    {
        /* more examples than a request may carry */
        size_t n = 4097, len = 64 + n * 8;
        char *big = malloc(len);
        CHECK(big != NULL);
        strcpy(big, "{\"op\":\"sense.add\",\"lemma\":\"bat\",\"sense\":\"x\","
                    "\"examples\":[");
        for (size_t i = 0; i < n; i++)
            strcat(big, i ? ",\"a bat\"" : "\"a bat\"");
        strcat(big, "]}");
        bad(c, big, "too_many", "at most 4096");
        free(big);
    }
    /* nothing of the failed adds was stored */
    check_totals(c, 14, 30, 120);
    bad(c, "{\"op\":\"sense.list\",\"limit\":0}", "bad_request", "'limit'");
    bad(c, "{\"op\":\"sense.list\",\"limit\":1000000}", "too_many",
        "'limit'");
    bad(c, "{\"op\":\"sense.list\",\"lemma\":\"bat\",\"examples\":\"yes\"}",
        "bad_request", "'examples' must be true or false");
    bad(c, "{\"op\":\"sense.remove\"}", "bad_request", "missing 'lemma'");
    bad(c, "{\"op\":\"sense.remove\",\"lemma\":\"bat\",\"sense\":5}",
        "bad_request", "'sense' must be a string");

    /* ---- sense.list ------------------------------------------------------------------ */
    phase("sense.list");
    r = cl_call(c, "{\"op\":\"sense.list\",\"offset\":1,\"limit\":2}");
    check_ok(r, "list page");
    {
        json_t *l = json_object_get(r, "lemmas");
        CHECK_EQ(json_array_size(l), 2);
        CHECK_STREQ(json_string_value(json_object_get(json_array_get(l, 0),
                                                      "lemma")), "bank");
        CHECK_STREQ(json_string_value(json_object_get(json_array_get(l, 1),
                                                      "lemma")), "bass");
        CHECK_EQ(json_integer_value(json_object_get(json_array_get(l, 0),
                                                    "n_senses")), 2);
        CHECK_EQ(json_integer_value(json_object_get(json_array_get(l, 0),
                                                    "n_examples")), 8);
    }
    json_decref(r);
    r = cl_call(c, "{\"op\":\"sense.list\",\"lemma\":\"Python\","
                   "\"examples\":true}");
    check_ok(r, "list python");
    CHECK_STREQ(json_string_value(json_object_get(r, "lemma")), "python");
    {
        json_t *ss = json_object_get(r, "senses"), *s;
        size_t i;
        CHECK_EQ(json_array_size(ss), 2);
        CHECK_STREQ(json_string_value(json_object_get(json_array_get(ss, 0),
                                                      "sense")), "snake");
        CHECK_STREQ(json_string_value(json_object_get(json_array_get(ss, 1),
                                                      "gloss")),
                    "the Python programming language");
        json_array_foreach(ss, i, s) {
            json_t *ex = json_object_get(s, "examples"), *e;
            size_t k;
            CHECK_EQ(json_integer_value(json_object_get(s, "n_examples")), 4);
            CHECK_EQ(json_array_size(ex), 4);
            json_array_foreach(ex, k, e) {
                const char *t = json_string_value(json_object_get(e, "text"));
                long long a = json_integer_value(json_object_get(e, "start"));
                long long b = json_integer_value(json_object_get(e, "end"));
                CHECK(json_is_integer(json_object_get(e, "id")));
                CHECK_EQ(b - a, 6); /* ASCII: code points are bytes */
                CHECK(strncasecmp(t + a, "python", 6) == 0);
            }
        }
    }
    json_decref(r);
    r = cl_call(c, "{\"op\":\"sense.list\",\"lemma\":\"zebra\"}");
    check_ok(r, "list zebra");
    CHECK_EQ(json_array_size(json_object_get(r, "senses")), 0);
    json_decref(r);
    cli_expect("senses list", 0, "14 lemmas, 30 senses, 120 examples", NULL);
    check_out("spring                 3 senses    12 examples\n");
    cli_expect("senses list --limit 2 --offset 1", 0, "bass ", NULL);
    CHECK(!file_has(out_path, "apple"));
    cli_expect("senses list python --examples", 0,
               "python: 2 senses (model '", NULL);
    check_out("      The [python] coiled around the branch");
    check_out("  language    4 examples  the Python programming language\n");
    cli_expect("senses list zebra", 1, NULL, "no senses of 'zebra'");

    /* ---- per-connection order, and concurrency ------------------------------------- */
    phase("pipelined sense ops in order; concurrent clients");
    cl_sendz(c,
             "{\"id\":1,\"op\":\"sense.add\",\"lemma\":\"python\",\"sense\":"
             "\"comedy\",\"gloss\":\"the British comedy troupe Monty Python\","
             "\"examples\":[\"We laughed at old Monty Python sketches.\","
             "\"The Python troupe filmed a comedy about knights.\"]}\n"
             "{\"id\":2,\"op\":\"sense.which\",\"text\":\"Monty Python made "
             "us laugh\",\"word\":\"python\"}\n"
             "{\"id\":3,\"op\":\"sense.remove\",\"lemma\":\"python\","
             "\"sense\":\"comedy\"}\n"
             "{\"id\":4,\"op\":\"sense.which\",\"text\":\"Monty Python made "
             "us laugh\",\"word\":\"python\"}\n"
             "{\"id\":5,\"op\":\"sense.list\",\"lemma\":\"python\"}\n");
    for (int i = 1; i <= 5; i++) {
        r = cl_reply(c);
        check_ok(r, "pipelined");
        CHECK_EQ(json_integer_value(json_object_get(r, "id")), i);
        if (i == 1)
            CHECK_EQ(json_integer_value(json_object_get(r, "added")), 2);
        if (i == 2 || i == 4)
            CHECK_EQ(json_array_size(json_object_get(r, "candidates")),
                     i == 2 ? 3 : 2);
        if (i == 3)
            CHECK_EQ(json_integer_value(json_object_get(r, "removed")), 1);
        if (i == 5)
            CHECK_EQ(json_array_size(json_object_get(r, "senses")), 2);
        json_decref(r);
    }
    {
        pthread_t th[N_THREADS];
        conc_t ct[N_THREADS];
        for (int t = 0; t < N_THREADS; t++) {
            ct[t] = (conc_t){t, 0};
            CHECK(pthread_create(&th[t], NULL, conc_main, &ct[t]) == 0);
        }
        for (int t = 0; t < N_THREADS; t++) {
            pthread_join(th[t], NULL);
            CHECK_EQ(ct[t].n_bad, 0);
        }
    }

    /* ---- sense.remove, kept across a restart ----------------------------------------- */
    phase("sense.remove, kept across a restart");
    const char *lang_q = "{\"op\":\"sense.which\",\"text\":\"I wrote a quick "
                         "Python function to parse the log files.\","
                         "\"word\":\"python\"}";
    r = cl_call(c, lang_q);
    check_ok(r, "which language");
    CHECK_STREQ(json_string_value(json_object_get(r, "sense")), "language");
    json_decref(r);
    cli_expect("senses rm python language", 0,
               "removed sense 'language' of 'python'", NULL);
    cli_expect("senses rm python language", 1, NULL,
               "no sense 'language' of 'python' to remove");
    r = cl_call(c, lang_q);
    check_ok(r, "which after rm");
    CHECK_STREQ(json_string_value(json_object_get(r, "sense")), "snake");
    CHECK_EQ(json_array_size(json_object_get(r, "candidates")), 1);
    json_decref(r);
    cl_close(c);
    int s1 = daemon_stop(pid, SIGTERM);
    CHECK(WIFEXITED(s1) && WEXITSTATUS(s1) == 0);
    pid = daemon_start();
    c = cl_open();
    r = cl_call(c, lang_q);
    check_ok(r, "which after restart");
    CHECK_STREQ(json_string_value(json_object_get(r, "sense")), "snake");
    CHECK_EQ(json_array_size(json_object_get(r, "candidates")), 1);
    json_decref(r);
    check_totals(c, 14, 29, 116);
    cli_expect("senses list python", 0, "python: 1 sense (model", NULL);
    cli_expect("senses rm seal", 0, "removed 2 senses of 'seal'", NULL);
    cli_expect("senses rm seal", 1, NULL, "no senses of 'seal' to remove");
    check_totals(c, 13, 27, 108);
    cli_expect("senses add python language 'She teaches Python to "
               "beginners.' 'A Python script renamed the files.' --gloss "
               "'the Python programming language'", 0,
               "added 2 examples to sense 'language' of 'python'", NULL);
    cli_expect("senses add python show --gloss 'a comedy show'", 0,
               "added sense 'show' of 'python' by its gloss", NULL);
    check_totals(c, 13, 29, 111);

    /* ---- import-wordnet into the live daemon's database ------------------------------ */
    phase("senses import-wordnet --limit 5");
    snprintf(args, sizeof args, "senses import-wordnet --limit 5 --db '%s'",
             db_path);
    cli_expect(args, 0, "imported lemmas 0-4 of ", NULL);
    check_out("into '");
    check_out("for model 'use-lite");
    r = cl_call(c, "{\"op\":\"sense.list\",\"limit\":100}");
    check_ok(r, "list after import");
    {
        json_t *l = json_object_get(r, "lemmas"), *x;
        size_t i;
        int n_wn = 0;
        CHECK_EQ(json_integer_value(json_object_get(json_object_get(r,
                                                                    "total"),
                                                    "lemmas")),
                 13 + 5); /* WordNet's first five are not demo words */
        json_array_foreach(l, i, x) {
            char req[512];
            const char *lemma = json_string_value(json_object_get(x, "lemma"));
            if (json_integer_value(json_object_get(x, "n_senses")) < 2)
                continue;
            json_t *q = json_pack("{s:s,s:s}", "op", "sense.list", "lemma",
                                  lemma);
            char *qs = json_dumps(q, JSON_COMPACT);
            snprintf(req, sizeof req, "%s", qs);
            free(qs);
            json_decref(q);
            json_t *lr = cl_call(c, req);
            check_ok(lr, req);
            const char *s0 = json_string_value(json_object_get(
                json_array_get(json_object_get(lr, "senses"), 0), "sense"));
            size_t n = strlen(s0);
            /* WordNet's names: lemma.pos.NN */
            if (n > 5 && s0[n - 3] == '.' && s0[n - 5] == '.' &&
                strchr("nvar", s0[n - 4]))
                n_wn++;
            json_decref(lr);
        }
        CHECK_EQ(n_wn, 5);
    }
    json_decref(r);
    /* importing again refreshes, adds nothing */
    cli_expect(args, 0, "imported lemmas 0-4 of ", NULL);
    r = cl_call(c, "{\"op\":\"sense.list\",\"limit\":1}");
    CHECK_EQ(json_integer_value(json_object_get(json_object_get(r, "total"),
                                                "lemmas")), 18);
    json_decref(r);
    snprintf(args, sizeof args, "senses import-wordnet --dir '%s/none' --db "
             "'%s'", tmp, db_path);
    cli_expect(args, 1, NULL, "cannot read WordNet in '");
    snprintf(args, sizeof args, "senses import-wordnet --offset 9999999 "
             "--db '%s'", db_path);
    cli_expect(args, 2, NULL, "--offset 9999999: WordNet in '");
    cli_expect("senses import-wordnet --limit 0", 2, NULL, "--limit");
    cli_expect("senses import-wordnet --limit x", 2, NULL, "--limit");
    cli_expect("senses import-wordnet extra", 2, NULL, "unexpected argument");
    snprintf(args, sizeof args, "senses import-wordnet --limit 1 --model "
             "'%s/none' --db '%s'", tmp, db_path);
    cli_expect(args, 1, NULL, "cannot load model '");

    /* ---- --help and exit codes ------------------------------------------------------- */
    phase("--help and exit codes");
    cli_expect("--help", 0, "  which     which sense of a word", NULL);
    check_out("  senses    the sense inventory");
    cli_expect("which --help", 0, "usage: sense which [options] WORD TEXT",
               NULL);
    cli_expect("senses --help", 0, "usage: sense senses <subcommand>", NULL);
    cli_expect("senses add --help", 0, "usage: sense senses add", NULL);
    cli_expect("senses list --help", 0, "usage: sense senses list", NULL);
    cli_expect("senses rm --help", 0, "usage: sense senses rm", NULL);
    cli_expect("senses import-wordnet --help", 0,
               "usage: sense senses import-wordnet", NULL);
    /* usage: 2 */
    cli_expect("which", 2, NULL, "which: which word, in what text?");
    cli_expect("which python", 2, NULL, "which: in what text?");
    cli_expect("which --span 5 python text", 2, NULL, "--span: '5'");
    cli_expect("which --span 3:2 python text", 2, NULL, "--span: '3:2'");
    cli_expect("which --bogus python text", 2, NULL, NULL);
    cli_expect("senses", 2, NULL, "senses: which subcommand?");
    cli_expect("senses nope", 2, NULL, "'nope' is not a subcommand");
    cli_expect("senses add python", 2, NULL, "which lemma and sense?");
    cli_expect("senses add python snake", 2, NULL, "give examples, or");
    cli_expect("senses add --file x python", 2, NULL, "--file takes no");
    cli_expect("senses add --batch 0 --file x", 2, NULL, "--batch");
    cli_expect("senses list a b", 2, NULL, "one lemma at most");
    cli_expect("senses list --limit 0", 2, NULL, "--limit");
    cli_expect("senses rm", 2, NULL, "which lemma?");
    cli_expect("senses rm a b c", 2, NULL, "one lemma and at most");
    /* errors: 1 */
    cli_expect("which python 'the bank of the river'", 1, NULL,
               "sense: word 'python' not found in text (not_found)\n");
    cli_expect("which zebra 'a zebra'", 1, NULL, "no senses of 'zebra'");
    cli_expect("senses add bat x 'a cat'", 1, NULL,
               "examples[0]: the example does not contain 'bat'");
    snprintf(args, sizeof args, "senses add --file '%s/none.jsonl'", tmp);
    cli_expect(args, 1, NULL, "cannot open '");
    CHECK_EQ(run_cli("senses add --file -",
                     "{\"lemma\":\"bat\",\"sense\":\"x\",\"examples\":"
                     "[\"a bat\"]}\n{\"lemma\":\"bat\"}\n"), 1);
    check_err("sense: stdin:2: \"sense\" must be a string");
    CHECK_EQ(run_cli("senses add --batch 1 --file -",
                     "{\"lemma\":\"bat\",\"sense\":\"x\",\"examples\":"
                     "[\"a bat\",\"the bats\",\"a cat\"]}\n"), 1);
    check_err("sense: stdin:1: examples[2]: the example does not contain "
              "'bat'");
    check_out("added 2 examples of 1 sense from 'stdin' before the error");
    CHECK_EQ(run_cli("senses add --file -", "{not json\n"), 1);
    check_err("sense: stdin:1: ");
    cli_expect("senses rm python nosuch", 1, NULL, "no sense 'nosuch'");
    /* no daemon: 3 */
    const char *nodaemon[] = {"which python text", "senses list",
                              "senses rm python",
                              "senses add bat x 'a bat'"};
    for (int i = 0; i < 4; i++) {
        snprintf(args, sizeof args, "--socket '%s/none.sock' %s", tmp,
                 nodaemon[i]);
        cli_expect(args, 3, NULL, "cannot connect to '");
    }
    cl_close(c);
    int s2 = daemon_stop(pid, SIGTERM);
    CHECK(WIFEXITED(s2) && WEXITSTATUS(s2) == 0);
    phase(NULL);

    for (int i = 1; i <= n_logs; i++) {
        snprintf(log_path, sizeof log_path, "%s/log%d", tmp, i);
        if (file_has(log_path, "Sanitizer") ||
            file_has(log_path, "runtime error")) {
            char *log = slurp(log_path);
            fprintf(stderr, "%s:\n%s\n", log_path, log);
            exit(1);
        }
    }
    for (int i = 0; i < n_queries; i++)
        free(senses_seq[i]);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0);
    printf("daemon_senses: ok\n");
    return 0;
}
