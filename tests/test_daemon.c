/*
 * test_daemon.c -- sensed end to end: the real build/sensed on a temporary
 * socket and database (with the tiny-bert-uncased fixture model, for speed),
 * spoken to through raw sockets and through the real `sense` client.
 *
 * Covers: the socket's mode, a live daemon refused, a stale socket
 * replaced; every kind of bad input answered with its error code while the
 * connection stays usable; an over-long line answered and closed while
 * other clients carry on; pipelined replies in request order; backpressure
 * on a client that does not read its replies; 32 concurrent clients whose
 * vectors match a lone request's; the client's output, messages and exit
 * codes; add / search / get / delete / stats, per-connection ordering of
 * storage ops, model mismatch; SIGTERM finishing in-flight work and saving
 * the index (exit 0); and durability: several clients adding, the daemon
 * SIGKILLed mid-ingest and restarted, every acknowledged document found
 * by get and by searching its own text, none half-present, deletes kept.
 *
 * Each phase prints its time; the whole runs in well under a minute.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

#define TIMEOUT_MS 30000

static char tmp[64], sock_path[100], db_path[128], model[512], model2[512];
static char out_path[128], err_path[128], in_path[128];
static int n_logs;
static char log_path[160];

#include "rawclient.h" /* uses sock_path and TIMEOUT_MS */

/* ---- the daemon ---------------------------------------------------------------- */

/* Daemons alive, killed at exit: a failing CHECK must not leave them
 * running (nor holding the test's output open). */
static pid_t live[16];

static void kill_live(void)
{
    for (int i = 0; i < 16; i++)
        if (live[i] > 0) {
            kill(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
            live[i] = 0;
        }
}

static void track(pid_t pid, int add)
{
    for (int i = 0; i < 16; i++)
        if (add ? live[i] == 0 : live[i] == pid) {
            live[i] = add ? pid : 0;
            return;
        }
}

/* Spawn sensed with argv (NULL-terminated, argv[0] ignored), stderr to
 * `log`, the environment changed by env ("NAME=value" sets, "NAME" unsets;
 * NULL-terminated, may be NULL); wait until `sock` answers. */
static pid_t spawn(const char **argv, const char *log, const char **env,
                   const char *sock)
{
    argv[0] = SN_BINARY_DIR "/sensed";
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0)
            _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        for (int i = 0; env && env[i]; i++) {
            char name[256];
            const char *eq = strchr(env[i], '=');
            snprintf(name, sizeof name, "%.*s",
                     (int)(eq ? eq - env[i] : (long)strlen(env[i])), env[i]);
            if (eq)
                setenv(name, eq + 1, 1);
            else
                unsetenv(name);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    track(pid, 1);
    for (int i = 0; i < 1000; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            track(pid, 0);
            char *text = slurp(log);
            fprintf(stderr, "sensed exited early (status %d):\n%s\n", st, text);
            exit(1);
        }
        struct sockaddr_un sa;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(fd >= 0);
        memset(&sa, 0, sizeof sa);
        sa.sun_family = AF_UNIX;
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
        int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        close(fd);
        if (ok)
            return pid;
        usleep(10000);
    }
    fprintf(stderr, "sensed did not start listening on '%s'\n", sock);
    kill(pid, SIGKILL);
    exit(1);
}

/* Start sensed on the test's socket and database with model `m` and extra
 * arguments (NULL-terminated); its log is a fresh file named in log_path. */
static pid_t daemon_start(const char *m, ...)
{
    const char *argv[32];
    int n = 1;
    va_list ap;
    snprintf(log_path, sizeof log_path, "%s/log%d", tmp, ++n_logs);
    argv[n++] = "--socket";
    argv[n++] = sock_path;
    argv[n++] = "--db";
    argv[n++] = db_path;
    argv[n++] = "--model";
    argv[n++] = m;
    argv[n++] = "--log-level";
    argv[n++] = "debug";
    va_start(ap, m);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 31)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return spawn(argv, log_path, NULL, sock_path);
}

/* Signal the daemon and wait for it; returns its wait status. */
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
    kill(pid, SIGKILL);
    exit(1);
}

/* ---- raw clients ------------------------------------------------------------------ */

/* Write everything; returns 0 or -errno (EPIPE when the daemon closed). */
/* The next line (malloc'd, without newline), or NULL at EOF. */
/* Send one request line and return the parsed reply. */
static void check_ok(json_t *r, const char *what)
{
    if (!json_is_true(json_object_get(r, "ok"))) {
        char *s = json_dumps(r, 0);
        fprintf(stderr, "%s: expected ok, got %.500s\n", what, s);
        exit(1);
    }
}

/* The reply is an error with `code`, echoing id_json ("null" for none). */
static void check_error(json_t *r, const char *code, const char *id_json)
{
    json_t *e = json_object_get(r, "error");
    char *id = json_dumps(json_object_get(r, "id"),
                          JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
    if (json_is_true(json_object_get(r, "ok")) ||
        !json_is_false(json_object_get(r, "ok")) ||
        !json_is_string(json_object_get(e, "code")) ||
        !json_is_string(json_object_get(e, "message")) ||
        strcmp(json_string_value(json_object_get(e, "code")), code) ||
        !id || strcmp(id, id_json)) {
        char *s = json_dumps(r, 0);
        fprintf(stderr, "expected error %s with id %s, got %s\n", code,
                id_json, s);
        exit(1);
    }
    free(id);
}

/* Send a bad request; expect the error; then prove the connection usable. */
static void bad(client_t *c, const char *req, const char *code,
                const char *id_json)
{
    json_t *r = cl_call(c, req);
    check_error(r, code, id_json);
    json_decref(r);
    r = cl_call(c, "{\"id\":\"after\",\"op\":\"embed\",\"texts\":[\"still "
                   "here\"]}");
    check_ok(r, req);
    CHECK_STREQ(json_string_value(json_object_get(r, "id")), "after");
    CHECK_EQ(json_integer_value(json_object_get(r, "dim")), 64);
    json_decref(r);
}

/* ---- the CLI -------------------------------------------------------------------- */

static int run_cli_env(const char *env, const char *args, const char *input)
{
    FILE *fp = fopen(in_path, "wb");
    CHECK(fp != NULL);
    if (input)
        fputs(input, fp);
    CHECK(fclose(fp) == 0);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s '%s/sense' %s < '%s' > '%s' 2> '%s'", env,
             SN_BINARY_DIR, args, in_path, out_path, err_path);
    int st = system(cmd);
    CHECK(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static int run_cli(const char *args, const char *input)
{
    return run_cli_env("", args, input);
}

static void check_cli_err(const char *sub)
{
    if (!file_has(err_path, sub)) {
        char *e = slurp(err_path);
        fprintf(stderr, "stderr lacks '%s': %s\n", sub, e);
        exit(1);
    }
}

static void check_cli_out(const char *sub)
{
    if (!file_has(out_path, sub)) {
        char *o = slurp(out_path);
        fprintf(stderr, "stdout lacks '%s': %s\n", sub, o);
        exit(1);
    }
}

/* ---- vectors ------------------------------------------------------------------- */

static double max_diff(json_t *a, json_t *b)
{
    CHECK_EQ(json_array_size(a), json_array_size(b));
    double m = 0;
    for (size_t i = 0; i < json_array_size(a); i++) {
        double d = fabs(json_number_value(json_array_get(a, i)) -
                        json_number_value(json_array_get(b, i)));
        if (d > m)
            m = d;
    }
    return m;
}

static const char *pool[] = {
    "The bat flew out of the cave.",
    "He swung the bat and hit the ball.",
    "Python is a programming language.",
    "A python swallowed the rabbit whole.",
    "We sat on the bank of the river.",
    "The bank raised its interest rates.",
    "Hello, World!",
    "caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9" "e",
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe6\x96\x87",
    "short",
    "a much longer sentence that goes on and on about nothing in particular "
    "until it is cut at the model's maximum number of tokens, which is small",
    "numbers 123 456 7890 and symbols #@!",
    "",
    "   ",
    "The quick brown fox jumps over the lazy dog.",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
};
#define N_POOL ((int)(sizeof pool / sizeof *pool))
static json_t *ref[N_POOL]; /* a lone request's vector per pool text */

static char *embed_req(int id, const int *idx, int n)
{
    json_t *req = json_object(), *texts = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(texts, json_string(pool[idx[i]]));
    json_object_set_new(req, "id", json_integer(id));
    json_object_set_new(req, "op", json_string("embed"));
    json_object_set_new(req, "texts", texts);
    char *s = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    return s;
}

typedef struct {
    int i_client;
    double diff;
    int n_ok;
    pthread_barrier_t *go;
} conc_t;

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void *conc_main(void *arg)
{
    conc_t *t = arg;
    client_t *c = cl_open();
    pthread_barrier_wait(t->go);
    for (int r = 0; r < 10; r++) {
        int idx[3] = {(t->i_client + r) % N_POOL, (t->i_client * 7 + r) % N_POOL,
                      (t->i_client * 3 + 2 * r) % N_POOL};
        int n = 1 + (t->i_client + r) % 3;
        char *req = embed_req(r, idx, n);
        json_t *rep = cl_call(c, req);
        free(req);
        check_ok(rep, "concurrent embed");
        CHECK_EQ(json_integer_value(json_object_get(rep, "id")), r);
        json_t *embs = json_object_get(rep, "embeddings");
        CHECK_EQ(json_array_size(embs), n);
        for (int i = 0; i < n; i++) {
            double d = max_diff(json_array_get(embs, (size_t)i), ref[idx[i]]);
            if (d > t->diff)
                t->diff = d;
        }
        t->n_ok++;
        json_decref(rep);
    }
    cl_close(c);
    return NULL;
}

/* ---- storage helpers ------------------------------------------------------------- */

static json_t *op_get(client_t *c, const char *id)
{
    json_t *req = json_pack("{s:s,s:s,s:[s]}", "op", "get", "collection",
                            "dur", "ids", id);
    char *s = json_dumps(req, JSON_COMPACT);
    json_t *r = cl_call(c, s);
    free(s);
    json_decref(req);
    check_ok(r, "get");
    return r;
}

static json_t *op_search(client_t *c, const char *coll, const char *q, int k)
{
    json_t *req = json_pack("{s:s,s:s,s:s,s:i}", "op", "search",
                            "collection", coll, "query", q, "k", k);
    char *s = json_dumps(req, JSON_COMPACT);
    json_t *r = cl_call(c, s);
    free(s);
    json_decref(req);
    check_ok(r, "search");
    return r;
}

static void dur_text(char *buf, size_t len, int t, int i)
{
    static const char *w[] = {"river", "bank", "snake", "python", "cave",
                              "bat", "ball", "rate", "code", "grass",
                              "night", "stone", "cloud", "music", "bread"};
    snprintf(buf, len, "doc %d %d: %s %s %s %s %s", t, i, w[(t * 7 + i) % 15],
             w[(i * 3 + 1) % 15], w[(i / 15 + t) % 15], w[(i * i + t) % 15],
             w[(i + 2 * t + 5) % 15]);
}

#define DUR_CLIENTS 4
#define DUR_MAX 2000

typedef struct {
    int t;
    int n_sent, n_acked;
    unsigned char acked[DUR_MAX];
} dur_t;

static void *dur_main(void *arg)
{
    dur_t *d = arg;
    client_t *c = cl_open();
    for (int i = 0; i < DUR_MAX; i++) {
        char id[32], text[256];
        snprintf(id, sizeof id, "c%d-%d", d->t, i);
        dur_text(text, sizeof text, d->t, i);
        json_t *req = json_pack("{s:i,s:s,s:s,s:[{s:s,s:s,s:{s:i}}]}", "id",
                                i, "op", "add", "collection", "dur", "docs",
                                "id", id, "text", text, "meta", "n", i);
        char *s = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        size_t len = strlen(s);
        s[len] = '\n';
        int rc = cl_send(c, s, len + 1);
        free(s);
        if (rc)
            break;
        d->n_sent = i + 1;
        char *line = cl_line(c);
        if (!line)
            break; /* the daemon died: this add is unacknowledged */
        json_t *r = parse(line);
        free(line);
        if (json_is_true(json_object_get(r, "ok"))) {
            d->acked[i] = 1;
            __atomic_add_fetch(&d->n_acked, 1, __ATOMIC_RELAXED);
        }
        json_decref(r);
    }
    cl_close(c);
    return NULL;
}

/* ---- the test ------------------------------------------------------------------- */

/* Five single-text embeds, one at a time; the slowest reply's ms. */
static double lone_embeds(client_t *c, int first)
{
    double worst = 0;
    for (int i = 0; i < 5; i++) {
        int idx = (i + first) % N_POOL;
        char *e = embed_req(i, &idx, 1);
        double t0 = mono_ms();
        json_t *r = cl_call(c, e);
        double ms = mono_ms() - t0;
        free(e);
        check_ok(r, "lone embed");
        json_decref(r);
        if (ms > worst)
            worst = ms;
    }
    return worst;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    atexit(kill_live);
    snprintf(tmp, sizeof tmp, "/tmp/sense-daemon-XXXXXX");
    CHECK(mkdtemp(tmp) != NULL);
    snprintf(sock_path, sizeof sock_path, "%s/s.sock", tmp);
    snprintf(db_path, sizeof db_path, "%s/sense.db", tmp);
    snprintf(out_path, sizeof out_path, "%s/out", tmp);
    snprintf(err_path, sizeof err_path, "%s/err", tmp);
    snprintf(in_path, sizeof in_path, "%s/in", tmp);
    snprintf(model, sizeof model, "%s/hf-reference/tiny-bert-uncased/model",
             SN_FIXTURES);
    snprintf(model2, sizeof model2, "%s/hf-reference/tiny-bert-cased/model",
             SN_FIXTURES);
    char args[4096];
    json_t *r;

    /* ---- start, socket mode, live daemon refused -------------------------- */
    phase("start, socket mode, second daemon refused");
    pid_t pid = daemon_start(model, NULL);
    struct stat st;
    CHECK(lstat(sock_path, &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK_EQ(st.st_mode & 0777, 0600);
    {
        char first_log[160];
        snprintf(first_log, sizeof first_log, "%s", log_path);
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "'%s/sensed' --socket '%s' --db '%s/other.db' "
                 "--model '%s' 2> '%s/refused'", SN_BINARY_DIR, sock_path, tmp,
                 model, tmp);
        int s2 = system(cmd);
        CHECK(WIFEXITED(s2) && WEXITSTATUS(s2) == 1);
        char p[160];
        snprintf(p, sizeof p, "%s/refused", tmp);
        CHECK(file_has(p, "is serving") || file_has(p, "already listening"));
        CHECK(file_has(p, sock_path));
        snprintf(log_path, sizeof log_path, "%s", first_log);
        /* and the first one still answers */
        client_t *c = cl_open();
        r = cl_call(c, "{\"op\":\"stats\"}");
        check_ok(r, "stats");
        CHECK_EQ(json_integer_value(json_object_get(r, "dim")), 64);
        CHECK(json_is_array(json_object_get(r, "collections")));
        json_decref(r);
        cl_close(c);
    }
    /* --socket-group: 0660, owned by the group */
    {
        char gsock[100], glog[160], gdb[160];
        snprintf(gsock, sizeof gsock, "%s/g.sock", tmp);
        snprintf(gdb, sizeof gdb, "%s/g.db", tmp);
        snprintf(glog, sizeof glog, "%s/glog", tmp);
        const char *argv[] = {NULL, "--socket", gsock, "--db", gdb, "--model",
                              model, "--socket-group", "0",
                              "--max-connections", "1", NULL};
        pid_t g = spawn(argv, glog, NULL, gsock);
        CHECK(lstat(gsock, &st) == 0);
        CHECK_EQ(st.st_mode & 0777, 0660);
        CHECK_EQ(st.st_gid, 0);
        /* one connection too many: told so, then closed */
        char saved[100];
        snprintf(saved, sizeof saved, "%s", sock_path);
        snprintf(sock_path, sizeof sock_path, "%s", gsock);
        /* spawn's probe connection may not be gone yet: retry */
        client_t *c1 = NULL;
        for (int i = 0; i < 200 && !c1; i++) {
            c1 = cl_open();
            r = cl_call(c1, "{\"id\":1,\"op\":\"stats\"}");
            if (!json_is_true(json_object_get(r, "ok"))) {
                check_error(r, "too_many", "null");
                cl_close(c1);
                c1 = NULL;
                usleep(10000);
            }
            json_decref(r);
        }
        CHECK(c1 != NULL);
        client_t *c2 = cl_open();
        char *line = cl_line(c2);
        CHECK(line != NULL);
        r = parse(line);
        free(line);
        check_error(r, "too_many", "null");
        json_decref(r);
        CHECK(cl_line(c2) == NULL);
        cl_close(c2);
        /* a half-closed client still gets its replies, then EOF */
        cl_sendz(c1, "{\"id\":2,\"op\":\"embed\",\"texts\":[\"x\"]}\n"
                     "{\"id\":3,\"op\":\"stats\"}");
        CHECK(shutdown(c1->fd, SHUT_WR) == 0);
        for (int i = 2; i <= 3; i++) {
            line = cl_line(c1);
            CHECK(line != NULL);
            r = parse(line);
            free(line);
            check_ok(r, "half-closed");
            CHECK_EQ(json_integer_value(json_object_get(r, "id")), i);
            json_decref(r);
        }
        CHECK(cl_line(c1) == NULL);
        cl_close(c1);
        snprintf(sock_path, sizeof sock_path, "%s", saved);
        int gs = daemon_stop(g, SIGINT);
        CHECK(WIFEXITED(gs) && WEXITSTATUS(gs) == 0);
    }
    /* the default paths: $XDG_RUNTIME_DIR/sense.sock and
     * $XDG_DATA_HOME/sense/sense.db, for the daemon and the client alike */
    {
        char run[160], data[160], dsock[200], ddb[200], dlog[160], e1[200],
            e2[200], env[512];
        snprintf(run, sizeof run, "%s/run", tmp);
        snprintf(data, sizeof data, "%s/data", tmp);
        CHECK(mkdir(run, 0700) == 0);
        snprintf(dsock, sizeof dsock, "%s/sense.sock", run);
        snprintf(ddb, sizeof ddb, "%s/sense/sense.db", data);
        snprintf(dlog, sizeof dlog, "%s/dlog", tmp);
        snprintf(e1, sizeof e1, "XDG_RUNTIME_DIR=%s", run);
        snprintf(e2, sizeof e2, "XDG_DATA_HOME=%s", data);
        const char *envs[] = {e1, e2, "SENSE_SOCKET", "SENSE_DATA", NULL};
        const char *argv[] = {NULL, "--model", model, NULL};
        pid_t dp = spawn(argv, dlog, envs, dsock);
        CHECK(access(ddb, F_OK) == 0);
        snprintf(env, sizeof env, "env -u SENSE_SOCKET XDG_RUNTIME_DIR='%s'",
                 run);
        CHECK_EQ(run_cli_env(env, "stats", NULL), 0);
        check_cli_out("model        bert 2x64");
        int ds = daemon_stop(dp, SIGTERM);
        CHECK(WIFEXITED(ds) && WEXITSTATUS(ds) == 0);
        /* no daemon there now: the message names the default path and the
         * hint is plain */
        CHECK_EQ(run_cli_env(env, "stats", NULL), 3);
        char want[300];
        snprintf(want, sizeof want, "sense: cannot connect to '%s': no such "
                 "file", dsock);
        check_cli_err(want);
        check_cli_err("sense: start it with: sensed\n");
    }

    /* ---- embed: values, tokens -------------------------------------------------- */
    phase("embed: values and tokens");
    client_t *c = cl_open();
    r = cl_call(c, "{\"id\":1,\"op\":\"embed\",\"texts\":[\"Hello, World!\"],"
                   "\"tokens\":true}");
    check_ok(r, "embed tokens");
    CHECK_EQ(json_integer_value(json_object_get(r, "dim")), 64);
    CHECK_EQ(json_integer_value(json_array_get(json_object_get(r, "n_tokens"),
                                               0)), 7);
    {
        json_t *toks = json_array_get(json_object_get(r, "tokens"), 0);
        static const int starts[] = {0, 0, 3, 5, 7, 12, 0};
        static const int ends[] = {0, 3, 5, 6, 12, 13, 0};
        static const char *pieces[] = {"[CLS]", "hel", "##lo", ",", "world",
                                       "!", "[SEP]"};
        CHECK_EQ(json_array_size(toks), 7);
        for (int t = 0; t < 7; t++) {
            json_t *tk = json_array_get(toks, (size_t)t);
            CHECK_EQ(json_integer_value(json_object_get(tk, "start")),
                     starts[t]);
            CHECK_EQ(json_integer_value(json_object_get(tk, "end")), ends[t]);
            CHECK_STREQ(json_string_value(json_object_get(tk, "token")),
                        pieces[t]);
            CHECK(json_is_integer(json_object_get(tk, "id")));
            CHECK_EQ(json_array_size(json_object_get(tk, "embedding")), 64);
        }
        /* the reference's sentence embedding */
        char path[1024];
        snprintf(path, sizeof path,
                 "%s/hf-reference/tiny-bert-uncased/expected.jsonl",
                 SN_FIXTURES);
        FILE *fp = fopen(path, "r");
        CHECK(fp != NULL);
        char *line = NULL;
        size_t cap = 0;
        json_t *refj = NULL;
        while (!refj && getline(&line, &cap, fp) > 0) {
            json_t *j = json_loads(line, 0, NULL);
            if (j && !strcmp(json_string_value(json_object_get(j, "text")),
                             "Hello, World!"))
                refj = j;
            else
                json_decref(j);
        }
        free(line);
        fclose(fp);
        CHECK(refj != NULL);
        CHECK(max_diff(json_array_get(json_object_get(r, "embeddings"), 0),
                       json_object_get(refj, "sentence_embedding")) < 1e-4);
        json_decref(refj);
    }
    json_decref(r);
    r = cl_call(c, "{\"id\":2,\"op\":\"embed\",\"texts\":[\"a\",\"b\"],"
                   "\"dimensions\":8}");
    check_ok(r, "dimensions");
    CHECK_EQ(json_integer_value(json_object_get(r, "dim")), 8);
    CHECK_EQ(json_array_size(json_array_get(json_object_get(r, "embeddings"),
                                            1)), 8);
    json_decref(r);
    r = cl_call(c, "{\"id\":3,\"op\":\"embed\",\"texts\":[]}");
    check_ok(r, "no texts");
    CHECK_EQ(json_array_size(json_object_get(r, "embeddings")), 0);
    json_decref(r);

    /* ---- bad input: an error each, the connection stays usable ---------------- */
    phase("bad input");
    bad(c, "{bad", "bad_json", "null");
    bad(c, "{\"id\":1,\"op\":\"embed\",\"texts\":[\"a\"]", "bad_json", "null");
    bad(c, "\xff\xfe{}", "bad_utf8", "null");
    bad(c, "{\"id\":20,\"op\":\"embed\",\"texts\":[\"\xc3\x28\"]}", "bad_utf8",
        "null");
    bad(c, "{\"id\":21,\"op\":\"embed\",\"texts\":[\"\xc0\xaf\"]}", "bad_utf8",
        "null");
    bad(c, "{\"id\":22,\"op\":\"embed\",\"texts\":[\"\xed\xa0\x80\"]}",
        "bad_utf8", "null");
    bad(c, "[1,2]", "bad_request", "null");
    bad(c, "\"embed\"", "bad_request", "null");
    bad(c, "{\"id\":5,\"op\":42}", "bad_request", "5");
    bad(c, "{\"id\":8}", "bad_request", "8");
    bad(c, "{\"id\":\"u\",\"op\":\"nope\"}", "unknown_op", "\"u\"");
    /* the word-sense ops check their fields (tests/test_daemon_senses.c
     * covers them with the default model) */
    bad(c, "{\"id\":6,\"op\":\"sense.add\"}", "bad_request", "6");
    bad(c, "{\"id\":7,\"op\":\"sense.which\",\"word\":\"bat\"}",
        "bad_request", "7");
    bad(c, "{\"id\":7,\"op\":\"sense.which\",\"text\":\"a bat\","
           "\"word\":\"bat\"}", "not_found", "7");
    bad(c, "{\"id\":7,\"op\":\"sense.remove\"}", "bad_request", "7");
    bad(c, "{\"id\":{\"b\":[1,2.5],\"a\":null},\"op\":\"nope\"}", "unknown_op",
        "{\"a\":null,\"b\":[1,2.5]}");
    bad(c, "{\"id\":9,\"op\":\"embed\"}", "bad_request", "9");
    bad(c, "{\"id\":10,\"op\":\"embed\",\"texts\":\"x\"}", "bad_request", "10");
    bad(c, "{\"id\":11,\"op\":\"embed\",\"texts\":[1]}", "bad_request", "11");
    bad(c, "{\"id\":12,\"op\":\"embed\",\"texts\":[\"a\"],\"tokens\":\"yes\"}",
        "bad_request", "12");
    bad(c, "{\"id\":13,\"op\":\"embed\",\"texts\":[\"a\"],\"dimensions\":\"8\"}",
        "bad_request", "13");
    bad(c, "{\"id\":14,\"op\":\"embed\",\"texts\":[\"a\"],\"dimensions\":1000}",
        "bad_request", "14");
    bad(c, "{\"id\":15,\"op\":\"embed\",\"texts\":[\"a\"],\"dimensions\":0}",
        "bad_request", "15");
    bad(c, "{\"id\":16,\"op\":\"embed\",\"texts\":[\"a\"],\"prompt\":\"nope\"}",
        "bad_request", "16");
    bad(c, "{\"id\":17,\"op\":\"search\"}", "bad_request", "17");
    bad(c, "{\"id\":18,\"op\":\"search\",\"query\":\"x\",\"k\":0}",
        "bad_request", "18");
    bad(c, "{\"id\":19,\"op\":\"search\",\"query\":\"x\",\"k\":5000}",
        "too_many", "19");
    bad(c, "{\"id\":23,\"op\":\"search\",\"query\":\"x\",\"filter\":[1]}",
        "bad_request", "23");
    bad(c, "{\"id\":73,\"op\":\"search\",\"query\":\"x\",\"ef\":0}",
        "bad_request", "73");
    bad(c, "{\"id\":74,\"op\":\"search\",\"query\":\"x\",\"ef\":10001}",
        "bad_request", "74");
    bad(c, "{\"id\":75,\"op\":\"search\",\"query\":\"x\",\"ef\":\"64\"}",
        "bad_request", "75");
    bad(c, "{\"id\":70,\"op\":\"search\",\"query\":\"x\",\"mode\":\"bm25\"}",
        "bad_request", "70");
    bad(c, "{\"id\":71,\"op\":\"search\",\"query\":\"x\",\"group\":\"doc\"}",
        "bad_request", "71");
    bad(c, "{\"id\":72,\"op\":\"search\",\"vector\":[1,0],\"mode\":"
        "\"lexical\"}", "bad_request", "72");
    bad(c, "{\"id\":24,\"op\":\"add\",\"docs\":[{\"text\":1}]}", "bad_request",
        "24");
    bad(c, "{\"id\":25,\"op\":\"add\",\"docs\":{}}", "bad_request", "25");
    bad(c, "{\"id\":26,\"op\":\"add\",\"docs\":[{\"text\":\"a\",\"meta\":3}]}",
        "bad_request", "26");
    bad(c, "{\"id\":27,\"op\":\"get\",\"ids\":\"x\"}", "bad_request", "27");
    bad(c, "{\"id\":28,\"op\":\"delete\"}", "bad_request", "28");
    bad(c, "{\"id\":29,\"op\":\"get\",\"ids\":[\"a\"],\"collection\":7}",
        "bad_request", "29");
    bad(c, "{\"id\":30,\"op\":\"get\",\"ids\":[\"a\"],\"collection\":\"a\\u0000b\"}",
        "bad_request", "30");
    bad(c, "{\"op\":\"embed\",\"op\":\"stats\"}", "bad_json", "null");
    {
        /* too many texts in one request */
        size_t cap = 1100 * 8 + 64;
        char *big = malloc(cap);
        CHECK(big != NULL);
        size_t n = (size_t)snprintf(big, cap,
                                    "{\"id\":31,\"op\":\"embed\",\"texts\":[");
        for (int i = 0; i < 1025; i++)
            n += (size_t)snprintf(big + n, cap - n, i ? ",\"t\"" : "\"t\"");
        snprintf(big + n, cap - n, "]}");
        bad(c, big, "too_many", "31");
        free(big);
    }
    /* blank lines are skipped; CRLF is accepted */
    cl_sendz(c, "\n  \n\r\n{\"id\":40,\"op\":\"stats\"}\r\n");
    {
        char *line = cl_line(c);
        CHECK(line != NULL);
        r = parse(line);
        free(line);
        check_ok(r, "crlf stats");
        CHECK_EQ(json_integer_value(json_object_get(r, "id")), 40);
        json_decref(r);
    }

    /* ---- pipelining: replies in request order ----------------------------------- */
    phase("pipelined requests");
    {
        char req[40 * 512];
        size_t n = 0;
        for (int i = 0; i < 40; i++) {
            int idx[3] = {i % N_POOL, (i + 5) % N_POOL, (i + 9) % N_POOL};
            if (i % 7 == 3) {
                n += (size_t)snprintf(req + n, sizeof req - n,
                                      "{\"id\":%d,\"op\":\"stats\"}\n", i);
            } else if (i % 11 == 5) {
                n += (size_t)snprintf(req + n, sizeof req - n,
                                      "{\"id\":%d,\"op\":\"nope\"}\n", i);
            } else {
                char *e = embed_req(i, idx, 1 + i % 3);
                n += (size_t)snprintf(req + n, sizeof req - n, "%s\n", e);
                free(e);
            }
        }
        CHECK_EQ(cl_send(c, req, n), 0);
        for (int i = 0; i < 40; i++) {
            char *line = cl_line(c);
            CHECK(line != NULL);
            r = parse(line);
            free(line);
            CHECK_EQ(json_integer_value(json_object_get(r, "id")), i);
            if (i % 7 != 3 && i % 11 == 5) {
                char id[16];
                snprintf(id, sizeof id, "%d", i);
                check_error(r, "unknown_op", id);
            } else
                check_ok(r, "pipelined");
            json_decref(r);
        }
    }

    /* ---- a lone request's vectors: the reference ---------------------------------- */
    for (int i = 0; i < N_POOL; i++) {
        char *e = embed_req(i, &i, 1);
        r = cl_call(c, e);
        free(e);
        check_ok(r, "lone");
        ref[i] = json_incref(json_array_get(json_object_get(r, "embeddings"), 0));
        json_decref(r);
    }

    /* ---- 32 concurrent clients x 10 requests -------------------------------------- */
    phase("32 concurrent clients x 10 embed requests");
    {
        pthread_t th[32];
        conc_t t[32];
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 32);
        for (int i = 0; i < 32; i++) {
            t[i] = (conc_t){.i_client = i, .go = &go};
            CHECK(pthread_create(&th[i], NULL, conc_main, &t[i]) == 0);
        }
        double worst = 0;
        for (int i = 0; i < 32; i++) {
            pthread_join(th[i], NULL);
            CHECK_EQ(t[i].n_ok, 10);
            if (t[i].diff > worst)
                worst = t[i].diff;
        }
        pthread_barrier_destroy(&go);
        printf(" [max |diff| %.2g]", worst);
        CHECK(worst <= 1e-5);
        /* and batches did mix requests */
        char *log = slurp(log_path);
        int mixed = 0;
        for (char *p = log; (p = strstr(p, "texts (")); p++) {
            int jobs = atoi(p + 7);
            if (jobs >= 2)
                mixed = 1;
        }
        free(log);
        CHECK(mixed);
    }

    /* ---- an over-long line: error reply, closed; others unaffected ----------------- */
    phase("over-long line");
    {
        client_t *b = cl_open();
        cl_sendz(c, "{\"id\":\"partial\",\"op\":\"st"); /* c: half a line */
        size_t big = (16u << 20) + 4096;
        char *huge = malloc(big);
        CHECK(huge != NULL);
        memset(huge, 'a', big);
        memcpy(huge, "{\"id\":1,\"op\":\"embed\",\"texts\":[\"", 32);
        int rc = cl_send(b, huge, big); /* may see EPIPE: closed early */
        CHECK(rc == 0 || rc == -EPIPE || rc == -ECONNRESET);
        free(huge);
        char *line = cl_line(b);
        CHECK(line != NULL);
        r = parse(line);
        free(line);
        check_error(r, "line_too_long", "null");
        json_decref(r);
        CHECK(cl_line(b) == NULL); /* closed */
        cl_close(b);
        /* the other connection finishes its line and carries on */
        cl_sendz(c, "ats\"}\n");
        line = cl_line(c);
        CHECK(line != NULL);
        r = parse(line);
        free(line);
        check_ok(r, "after long line");
        CHECK_STREQ(json_string_value(json_object_get(r, "id")), "partial");
        json_decref(r);
    }
    /* a big but legal line is parsed off the loop; others are served meanwhile */
    {
        size_t big = 6u << 20;
        char *line = malloc(big + 64);
        CHECK(line != NULL);
        size_t n = (size_t)snprintf(line, 64,
                                    "{\"id\":\"big\",\"op\":\"embed\",\"texts\":[\"");
        for (size_t i = 0; i < big; i++)
            line[n++] = "abc de"[i % 6];
        memcpy(line + n, "\"]}\n", 4);
        n += 4;
        client_t *b = cl_open();
        CHECK_EQ(cl_send(b, line, n), 0);
        free(line);
        r = cl_call(c, "{\"id\":\"small\",\"op\":\"stats\"}");
        check_ok(r, "small during big");
        json_decref(r);
        char *l = cl_line(b);
        CHECK(l != NULL);
        r = parse(l);
        free(l);
        check_ok(r, "big line");
        CHECK_EQ(json_integer_value(json_array_get(json_object_get(r, "n_tokens"),
                                                   0)), 32);
        json_decref(r);
        cl_close(b);
    }

    /* ---- backpressure: a client that does not read its replies -------------------- */
    phase("backpressure");
    {
        client_t *d = cl_open();
        int n_req = 1500;
        size_t one = 3000;
        char *reqs = malloc((size_t)n_req * one);
        CHECK(reqs != NULL);
        size_t total = 0;
        for (int i = 0; i < n_req; i++) {
            size_t k = (size_t)snprintf(reqs + total, one,
                                        "{\"id\":%d,\"op\":\"embed\",\"texts\":[\"",
                                        i);
            for (size_t j = 0; j < one - 64; j++)
                reqs[total + k + j] = "xyz w"[j % 5];
            k += one - 64;
            k += (size_t)snprintf(reqs + total + k, 16, "\"]}\n");
            total += k;
        }
        fcntl(d->fd, F_SETFL, O_NONBLOCK);
        size_t sent = 0;
        for (;;) { /* write until the daemon stops reading us */
            ssize_t w = send(d->fd, reqs + sent, total - sent, MSG_NOSIGNAL);
            if (w > 0) {
                sent += (size_t)w;
                if (sent == total)
                    break;
                continue;
            }
            CHECK(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
            struct pollfd p = {d->fd, POLLOUT, 0};
            if (poll(&p, 1, 500) == 0)
                break; /* blocked for half a second: paused */
        }
        CHECK(sent < total);
        CHECK(file_has(log_path, "paused"));
        /* meanwhile another client is served at once */
        double t0 = now_s();
        r = cl_call(c, "{\"id\":\"other\",\"op\":\"embed\",\"texts\":[\"x\"]}");
        check_ok(r, "other client during backpressure");
        json_decref(r);
        CHECK(now_s() - t0 < 2.0);
        /* now read everything, writing the rest as it drains */
        int got = 0;
        fcntl(d->fd, F_SETFL, 0);
        while (got < n_req) {
            struct pollfd p = {d->fd, POLLIN | (sent < total ? POLLOUT : 0), 0};
            CHECK(poll(&p, 1, TIMEOUT_MS) > 0);
            if ((p.revents & POLLOUT) && sent < total) {
                ssize_t w = send(d->fd, reqs + sent, total - sent,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w > 0)
                    sent += (size_t)w;
            }
            if (p.revents & POLLIN) {
                /* read the whole lines that are there */
                if (d->cap - d->len < 65536) {
                    d->cap = d->cap ? d->cap * 2 : 131072;
                    d->buf = realloc(d->buf, d->cap);
                }
                ssize_t n = recv(d->fd, d->buf + d->len, d->cap - d->len,
                                 MSG_DONTWAIT);
                CHECK(n > 0 || (n < 0 && errno == EAGAIN));
                if (n > 0)
                    d->len += (size_t)n;
                char *nl;
                while ((nl = memchr(d->buf + d->start, '\n',
                                    d->len - d->start))) {
                    *nl = '\0';
                    r = parse(d->buf + d->start);
                    check_ok(r, "backpressured reply");
                    CHECK_EQ(json_integer_value(json_object_get(r, "id")), got);
                    json_decref(r);
                    got++;
                    d->start = (size_t)(nl - d->buf) + 1;
                }
                if (d->start == d->len)
                    d->start = d->len = 0;
            }
        }
        free(reqs);
        cl_close(d);
    }
    /* a client that leaves with work in flight: freed when the work returns */
    {
        client_t *x = cl_open();
        for (int i = 0; i < 50; i++) {
            int idx[2] = {i % N_POOL, (i + 3) % N_POOL};
            char *e = embed_req(i, idx, 2);
            cl_sendz(x, e);
            cl_sendz(x, "\n");
            free(e);
        }
        cl_sendz(x, "{\"op\":\"add\",\"collection\":\"gone\",\"docs\":"
                    "[{\"id\":\"g\",\"text\":\"left before the reply\"}]}\n");
        cl_close(x);
        r = cl_call(c, "{\"op\":\"embed\",\"texts\":[\"still fine\"]}");
        check_ok(r, "after an abandoned connection");
        json_decref(r);
    }

    /* ---- the client: daemon mode of embed, messages, exit codes ------------------- */
    phase("client");
    {
        snprintf(args, sizeof args, "--socket '%s' embed --json 'Hello, World!'"
                 " hello", sock_path);
        CHECK_EQ(run_cli(args, NULL), 0);
        char *d_out = slurp(out_path);
        snprintf(args, sizeof args, "embed --model '%s' --json 'Hello, World!'"
                 " hello", model);
        CHECK_EQ(run_cli(args, NULL), 0);
        char *l_out = slurp(out_path);
        /* the same texts and vectors, both ways */
        char *s1 = NULL, *s2 = NULL;
        char *a = strtok_r(d_out, "\n", &s1), *b = strtok_r(l_out, "\n", &s2);
        int lines = 0;
        while (a && b) {
            json_t *ja = parse(a), *jb = parse(b);
            CHECK_STREQ(json_string_value(json_object_get(ja, "text")),
                        json_string_value(json_object_get(jb, "text")));
            CHECK(max_diff(json_object_get(ja, "embedding"),
                           json_object_get(jb, "embedding")) <= 1e-5);
            json_decref(ja);
            json_decref(jb);
            lines++;
            a = strtok_r(NULL, "\n", &s1);
            b = strtok_r(NULL, "\n", &s2);
        }
        CHECK(!a && !b && lines == 2);
        free(d_out);
        free(l_out);

        snprintf(args, sizeof args, "--socket '%s' embed hello", sock_path);
        CHECK_EQ(run_cli(args, NULL), 0);
        check_cli_out("\"hello\": 4 tokens, dim 64 [");
        snprintf(args, sizeof args, "--socket '%s' embed --tokens --json "
                 "--dimensions 8 'Hello, World!'", sock_path);
        CHECK_EQ(run_cli(args, NULL), 0);
        check_cli_out("\"token\":\"##lo\",\"start\":3,\"end\":5");
        /* stdin, an invalid text: what comes before is printed, exit 1 */
        snprintf(args, sizeof args, "embed --socket '%s' --json", sock_path);
        CHECK_EQ(run_cli(args, "fine\nbad \xff byte\n"), 1);
        check_cli_err("sense: input 2: invalid utf-8");
        check_cli_out("\"text\":\"fine\"");
        /* an error reply: 1, with the daemon's message */
        snprintf(args, sizeof args, "--socket '%s' embed --prompt nope hi",
                 sock_path);
        CHECK_EQ(run_cli(args, NULL), 1);
        check_cli_err("no prompt named 'nope' (bad_request)");
        /* cannot connect: 3, with the path and a hint */
        snprintf(args, sizeof args, "--socket '%s/none.sock' embed hi", tmp);
        CHECK_EQ(run_cli(args, NULL), 3);
        check_cli_err("sense: cannot connect to '");
        check_cli_err("none.sock': no such file");
        check_cli_err("start it with: sensed");
        snprintf(args, sizeof args, "--socket '%s/none.sock' stats", tmp);
        CHECK_EQ(run_cli(args, NULL), 3);
        /* usage: 2 */
        CHECK_EQ(run_cli("search", NULL), 2);
        CHECK_EQ(run_cli("add", NULL), 2);
        CHECK_EQ(run_cli("get", NULL), 2);
        CHECK_EQ(run_cli("delete", NULL), 2);
        CHECK_EQ(run_cli("search -k 0 x", NULL), 2);
        CHECK_EQ(run_cli("stats --bogus", NULL), 2);
        CHECK_EQ(run_cli("--bogus stats", NULL), 2);
        CHECK_EQ(run_cli("--help", NULL), 0);
        check_cli_out("search");
        check_cli_out("--socket");
        static const char *cmds[] = {"embed", "add", "search", "get", "delete",
                                     "stats"};
        for (int i = 0; i < 6; i++) {
            snprintf(args, sizeof args, "%s --help", cmds[i]);
            CHECK_EQ(run_cli(args, NULL), 0);
            check_cli_out("usage: sense ");
            check_cli_out("exit status");
        }
    }

    /* ---- the default model, when installed: daemon == in-process ----------------- */
    {
        char dpath[1024];
        struct stat ds;
        if (sn_model_default_path(dpath, sizeof dpath) == 0 &&
            stat(dpath, &ds) == 0) {
            phase("default model: daemon and in-process agree");
            char usock[100], udb[160], ulog[160];
            snprintf(usock, sizeof usock, "%s/u.sock", tmp);
            snprintf(udb, sizeof udb, "%s/u.db", tmp);
            snprintf(ulog, sizeof ulog, "%s/ulog", tmp);
            const char *argv[] = {NULL, "--socket", usock, "--db", udb,
                                  NULL};
            pid_t up = spawn(argv, ulog, NULL, usock);
            const char *texts = "'The bat flew out of the cave.' 'bank of the "
                                "river' 'caf\xc3\xa9'";
            snprintf(args, sizeof args, "--socket '%s' embed --json %s", usock,
                     texts);
            CHECK_EQ(run_cli(args, NULL), 0);
            char *d_out = slurp(out_path);
            snprintf(args, sizeof args, "embed --model default --json %s",
                     texts);
            CHECK_EQ(run_cli(args, NULL), 0);
            char *l_out = slurp(out_path);
            char *s1 = NULL, *s2 = NULL;
            char *a = strtok_r(d_out, "\n", &s1), *b = strtok_r(l_out, "\n", &s2);
            int lines = 0;
            while (a && b) {
                json_t *ja = parse(a), *jb = parse(b);
                CHECK_EQ(json_array_size(json_object_get(ja, "embedding")), 512);
                CHECK(max_diff(json_object_get(ja, "embedding"),
                               json_object_get(jb, "embedding")) <= 1e-5);
                json_decref(ja);
                json_decref(jb);
                lines++;
                a = strtok_r(NULL, "\n", &s1);
                b = strtok_r(NULL, "\n", &s2);
            }
            CHECK(!a && !b && lines == 3);
            free(d_out);
            free(l_out);
            int us = daemon_stop(up, SIGTERM);
            CHECK(WIFEXITED(us) && WEXITSTATUS(us) == 0);
        } else {
            printf("default model not installed: its check skipped\n");
        }
    }

    /* ---- storage: add, search, get, delete, stats ----------------------------------- */
    phase("add, search, get, delete, stats");
    {
        char f1[160], f2[160], f3[160], jl[160];
        snprintf(f1, sizeof f1, "%s/bat.txt", tmp);
        snprintf(f2, sizeof f2, "%s/python.txt", tmp);
        snprintf(f3, sizeof f3, "%s/binary.bin", tmp);
        snprintf(jl, sizeof jl, "%s/docs.jsonl", tmp);
        FILE *fp = fopen(f1, "w");
        fputs("The bat flew out of the cave at dusk.", fp);
        fclose(fp);
        fp = fopen(f2, "w");
        /* long enough for several chunks (32 tokens each) */
        for (int i = 0; i < 30; i++)
            fprintf(fp, "Python is a programming language, sentence %d. ", i);
        fclose(fp);
        fp = fopen(f3, "w");
        fputs("\xff\xfe\x00\x01", fp);
        fclose(fp);
        fp = fopen(jl, "w");
        fputs("{\"id\":\"snake\",\"text\":\"A python swallowed the rabbit.\","
              "\"meta\":{\"kind\":\"animal\",\"year\":2020}}\n"
              "{\"id\":42,\"text\":\"We sat on the bank of the river.\","
              "\"meta\":{\"kind\":\"place\"}}\n"
              "\n"
              "{\"text\":\"a document without an id\"}\n", fp);
        fclose(fp);
        snprintf(args, sizeof args, "--socket '%s' add '%s' '%s' '%s'",
                 sock_path, f1, f2, jl);
        CHECK_EQ(run_cli(args, NULL), 0);
        check_cli_out("added 5 documents (");
        /* a non-text file is skipped with a warning and exit 1 */
        snprintf(args, sizeof args, "--socket '%s' add '%s' '%s'", sock_path,
                 f3, f1);
        CHECK_EQ(run_cli(args, NULL), 1);
        check_cli_err("skipping '");
        check_cli_out("added 1 document (1 chunk)");
        /* JSON lines on stdin, into another collection, --json */
        snprintf(args, sizeof args, "--socket '%s' add --collection other "
                 "--json -", sock_path);
        CHECK_EQ(run_cli(args, "{\"id\":\"o1\",\"text\":\"other text\"}\n"),
                 0);
        check_cli_out("\"ok\":true");
        check_cli_out("\"ids\":[\"o1\"]");
        snprintf(args, sizeof args, "--socket '%s' add -", sock_path);
        CHECK_EQ(run_cli(args, "{\"text\": 3}\n"), 1);
        check_cli_err("stdin:1: \"text\" must be a string");

        /* search: a document's own text is its top hit */
        snprintf(args, sizeof args, "--socket '%s' search --mode vector -k 3 "
                 "The bat flew out of the cave at dusk.", sock_path);
        CHECK_EQ(run_cli(args, NULL), 0);
        {
            char want[256];
            check_cli_out("vector search, from vector");
            snprintf(want, sizeof want, " 1. 1.0000  %s  (chunk 0, chars 0-37)",
                     f1);
            check_cli_out(want);
        }
        /* the default, hybrid: both lists, the same document first */
        snprintf(args, sizeof args, "--socket '%s' search -k 3 The bat flew "
                 "out of the cave at dusk.", sock_path);
        CHECK_EQ(run_cli(args, NULL), 0);
        {
            char want[256];
            check_cli_out("hybrid search, from lexical + vector");
            snprintf(want, sizeof want, "  %s  (chunk 0, chars 0-37)", f1);
            check_cli_out(want);
            char *o = slurp(out_path);
            CHECK(strstr(o, " 1. ") && strstr(o, " 1. ") < strstr(o, f1) &&
                  (!strstr(o, " 2. ") || strstr(o, f1) < strstr(o, " 2. ")));
            free(o);
        }
        /* lexical, by chunk, filtered: words only, no vector in the reply */
        snprintf(args, sizeof args, "--socket '%s' search --json --mode "
                 "lexical --chunks --filter kind=animal swallowed", sock_path);
        CHECK_EQ(run_cli(args, NULL), 0);
        {
            char *o = slurp(out_path);
            json_t *j = parse(o);
            free(o);
            check_ok(j, "lexical search");
            CHECK_STREQ(json_string_value(json_object_get(j, "mode")),
                        "lexical");
            CHECK_STREQ(json_string_value(json_object_get(j, "group")),
                        "chunk");
            json_t *l = json_object_get(j, "lists");
            CHECK_EQ(json_array_size(l), 1);
            CHECK_STREQ(json_string_value(json_array_get(l, 0)), "lexical");
            json_t *res = json_object_get(j, "results");
            CHECK_EQ(json_array_size(res), 1);
            json_t *h = json_array_get(res, 0);
            CHECK_STREQ(json_string_value(json_object_get(h, "id")), "snake");
            CHECK(json_is_number(json_object_get(h, "lexical_score")));
            CHECK(!json_object_get(h, "vector_score"));
            CHECK(!json_object_get(j, "n_tokens")); /* not encoded */
            json_decref(j);
        }
        snprintf(args, sizeof args, "--socket '%s' search --json --filter "
                 "kind=animal --filter year=2020 python", sock_path);
        CHECK_EQ(run_cli(args, NULL), 0);
        {
            char *o = slurp(out_path);
            json_t *j = parse(o);
            free(o);
            check_ok(j, "filtered search");
            json_t *res = json_object_get(j, "results");
            CHECK_EQ(json_array_size(res), 1);
            json_t *h = json_array_get(res, 0);
            CHECK_STREQ(json_string_value(json_object_get(h, "id")), "snake");
            CHECK_EQ(json_integer_value(json_object_get(
                         json_object_get(h, "meta"), "year")), 2020);
            CHECK(json_is_integer(json_object_get(h, "chunk")));
            CHECK(json_is_integer(json_object_get(h, "start")));
            CHECK(json_is_integer(json_object_get(h, "end")));
            CHECK(json_is_string(json_object_get(h, "text")));
            CHECK(json_is_number(json_object_get(h, "score")));
            json_decref(j);
        }
        /* get: text and meta; a missing id is named, exit 1 */
        snprintf(args, sizeof args, "--socket '%s' get snake 42 missing",
                 sock_path);
        CHECK_EQ(run_cli(args, NULL), 1);
        check_cli_out("== snake (1 chunk) {\"kind\":\"animal\",\"year\":2020}");
        check_cli_out("We sat on the bank of the river.");
        check_cli_err("'missing': not found in 'default'");
        snprintf(args, sizeof args, "--socket '%s' get --json '%s'", sock_path,
                 f2);
        CHECK_EQ(run_cli(args, NULL), 0);
        {
            char *o = slurp(out_path);
            json_t *j = parse(o);
            free(o);
            json_t *d = json_array_get(json_object_get(j, "docs"), 0);
            CHECK(json_integer_value(json_object_get(d, "chunks")) > 1);
            CHECK(!strncmp(json_string_value(json_object_get(d, "text")),
                           "Python is a programming language, sentence 0.",
                           45));
            json_decref(j);
        }
        /* delete, then gone from get and search */
        snprintf(args, sizeof args, "--socket '%s' delete snake nothere",
                 sock_path);
        CHECK_EQ(run_cli(args, NULL), 0);
        check_cli_out("deleted 1 of 2 documents");
        r = op_search(c, "default", "A python swallowed the rabbit.", 10);
        json_t *res = json_object_get(r, "results"), *h;
        size_t i;
        json_array_foreach(res, i, h)
            CHECK(strcmp(json_string_value(json_object_get(h, "id")), "snake"));
        json_decref(r);
        /* stats */
        snprintf(args, sizeof args, "--socket '%s' stats", sock_path);
        CHECK_EQ(run_cli(args, NULL), 0);
        check_cli_out("model        bert 2x64");
        check_cli_out("  default ");
        check_cli_out("  other ");
        r = cl_call(c, "{\"op\":\"stats\"}");
        check_ok(r, "stats");
        json_t *cols = json_object_get(r, "collections"), *col;
        int seen = 0;
        json_array_foreach(cols, i, col) {
            if (!strcmp(json_string_value(json_object_get(col, "name")),
                        "default")) {
                CHECK_EQ(json_integer_value(json_object_get(col, "docs")), 4);
                CHECK(json_integer_value(json_object_get(col, "chunks")) > 4);
                CHECK(json_is_string(json_object_get(col, "index")));
                seen = 1;
            }
        }
        CHECK(seen);
        CHECK(json_is_number(json_object_get(r, "uptime")));
        CHECK(json_is_object(json_object_get(r, "queue")));
        json_decref(r);
        /* the index kind is chosen per collection when it is created */
        bad(c, "{\"id\":9,\"op\":\"add\",\"collection\":\"k\","
               "\"index\":\"ivf\",\"docs\":[{\"text\":\"x\"}]}",
            "bad_request", "9");
        r = cl_call(c, "{\"op\":\"add\",\"collection\":\"exact\","
                       "\"index\":\"flat\",\"docs\":[{\"id\":\"e\","
                       "\"text\":\"Cranes lift steel beams.\"}]}");
        check_ok(r, "add flat");
        json_decref(r);
        const char *hdocs = "{\"id\":\"h1\",\"text\":\"A crane waded in the "
                            "marsh.\"}\n{\"id\":\"h2\",\"text\":\"The "
                            "tower crane swung its load.\"}\n";
        snprintf(args, sizeof args, "--socket '%s' add --collection graph "
                 "--index hnsw -", sock_path);
        CHECK_EQ(run_cli(args, hdocs), 0);
        snprintf(args, sizeof args, "--socket '%s' add --index ivf -",
                 sock_path);
        CHECK_EQ(run_cli(args, hdocs), 2);
        check_cli_err("--index: 'ivf'");
        r = op_search(c, "graph", "A crane waded in the marsh.", 1);
        CHECK_STREQ(json_string_value(json_object_get(
                        json_array_get(json_object_get(r, "results"), 0),
                        "id")), "h1");
        json_decref(r);
        r = cl_call(c, "{\"op\":\"stats\"}");
        check_ok(r, "stats");
        int kinds = 0;
        json_array_foreach(json_object_get(r, "collections"), i, col) {
            const char *name = json_string_value(json_object_get(col, "name"));
            const char *kind = json_string_value(json_object_get(col, "index"));
            if (!strcmp(name, "exact")) {
                CHECK_STREQ(kind, "flat");
                kinds++;
            } else if (!strcmp(name, "graph")) {
                CHECK_STREQ(kind, "hnsw");
                kinds++;
            }
        }
        CHECK_EQ(kinds, 2);
        json_decref(r);
        /* search a collection that does not exist */
        r = cl_call(c, "{\"id\":1,\"op\":\"search\",\"collection\":\"nope\","
                       "\"query\":\"x\"}");
        CHECK(!json_is_true(json_object_get(r, "ok")));
        json_decref(r);
    }

    /* ---- one connection's storage ops take effect in request order ----------------- */
    phase("pipelined storage ops in order");
    {
        cl_sendz(c,
                 "{\"id\":1,\"op\":\"add\",\"collection\":\"ord\",\"docs\":"
                 "[{\"id\":\"x\",\"text\":\"first version\"}]}\n"
                 "{\"id\":2,\"op\":\"get\",\"collection\":\"ord\",\"ids\":[\"x\"]}\n"
                 "{\"id\":3,\"op\":\"delete\",\"collection\":\"ord\",\"ids\":[\"x\"]}\n"
                 "{\"id\":4,\"op\":\"get\",\"collection\":\"ord\",\"ids\":[\"x\"]}\n"
                 "{\"id\":5,\"op\":\"add\",\"collection\":\"ord\",\"docs\":"
                 "[{\"id\":\"x\",\"text\":\"second version\"}]}\n"
                 "{\"id\":6,\"op\":\"search\",\"collection\":\"ord\",\"query\":"
                 "\"second version\",\"k\":1,\"ef\":50}\n"
                 "{\"id\":7,\"op\":\"get\",\"collection\":\"ord\",\"ids\":[\"x\"]}\n");
        json_t *rs[8];
        for (int i = 1; i <= 7; i++) {
            char *line = cl_line(c);
            CHECK(line != NULL);
            rs[i] = parse(line);
            free(line);
            check_ok(rs[i], "ordered op");
            CHECK_EQ(json_integer_value(json_object_get(rs[i], "id")), i);
        }
        CHECK_STREQ(json_string_value(json_array_get(json_object_get(rs[1],
                                                                     "ids"), 0)),
                    "x");
        CHECK_STREQ(json_string_value(json_object_get(
                        json_array_get(json_object_get(rs[2], "docs"), 0),
                        "text")),
                    "first version");
        CHECK_EQ(json_integer_value(json_object_get(rs[3], "deleted")), 1);
        CHECK_EQ(json_array_size(json_object_get(rs[4], "docs")), 0);
        CHECK_STREQ(json_string_value(json_object_get(
                        json_array_get(json_object_get(rs[6], "results"), 0),
                        "text")),
                    "second version");
        CHECK_STREQ(json_string_value(json_object_get(
                        json_array_get(json_object_get(rs[7], "docs"), 0),
                        "text")),
                    "second version");
        for (int i = 1; i <= 7; i++)
            json_decref(rs[i]);
    }

    /* ---- truncation is reported: embed, search, add (max 32 tokens) ------------ */
    phase("truncation reported");
    {
        char longer[2048] = "", req[4096];
        for (int w = 0; w < 100; w++)
            strcat(longer, w ? " word" : "word");
        snprintf(req, sizeof req, "{\"id\":1,\"op\":\"embed\",\"texts\":"
                 "[\"Hello, World!\",\"%s\"]}", longer);
        r = cl_call(c, req);
        check_ok(r, "embed long");
        json_t *nt = json_object_get(r, "n_tokens");
        json_t *cut = json_object_get(r, "truncated");
        CHECK_EQ(json_integer_value(json_array_get(nt, 0)), 7);
        CHECK_EQ(json_integer_value(json_array_get(nt, 1)), 32);
        CHECK_EQ(json_array_size(cut), 2);
        CHECK(json_is_false(json_array_get(cut, 0)));
        CHECK(json_is_true(json_array_get(cut, 1)));
        json_decref(r);
        /* a long document is chunked, not cut */
        snprintf(req, sizeof req, "{\"id\":2,\"op\":\"add\",\"collection\":"
                 "\"trunc\",\"docs\":[{\"id\":\"long\",\"text\":\"%s\"}]}",
                 longer);
        r = cl_call(c, req);
        check_ok(r, "add long");
        CHECK(json_integer_value(json_array_get(json_object_get(r, "chunks"),
                                                0)) > 1);
        CHECK_EQ(json_integer_value(json_array_get(
                     json_object_get(r, "truncated"), 0)), 0);
        json_decref(r);
        snprintf(req, sizeof req, "{\"id\":3,\"op\":\"search\",\"collection\":"
                 "\"trunc\",\"query\":\"%s\",\"k\":1}", longer);
        r = cl_call(c, req);
        check_ok(r, "search long");
        CHECK(json_is_true(json_object_get(r, "truncated")));
        CHECK_EQ(json_integer_value(json_object_get(r, "n_tokens")), 32);
        json_decref(r);
        r = cl_call(c, "{\"id\":4,\"op\":\"search\",\"collection\":"
                       "\"trunc\",\"query\":\"word\",\"k\":1}");
        check_ok(r, "search short");
        CHECK(json_is_false(json_object_get(r, "truncated")));
        json_decref(r);
        /* the client warns, in human output only */
        snprintf(req, sizeof req, "--socket '%s' search --collection trunc "
                 "'%s'", sock_path, longer);
        CHECK_EQ(run_cli(req, NULL), 0);
        check_cli_err("sense: warning: the query is longer than the model's "
                      "32 tokens");
        snprintf(req, sizeof req, "--socket '%s' embed '%s'", sock_path,
                 longer);
        CHECK_EQ(run_cli(req, NULL), 0);
        check_cli_err("sense: warning: input 1 is longer than the model's 32 "
                      "tokens");
        snprintf(req, sizeof req, "--socket '%s' embed --json '%s'", sock_path,
                 longer);
        CHECK_EQ(run_cli(req, NULL), 0);
        check_cli_out("\"n_tokens\":32,\"truncated\":true");
    }

    /* ---- search by the caller's own vector ---------------------------------------- */
    phase("search by vector");
    {
        json_t *r = cl_call(c, "{\"id\":1,\"op\":\"embed\",\"texts\":"
                               "[\"second version\"]}");
        check_ok(r, "embed for a vector search");
        json_t *e = json_array_get(json_object_get(r, "embeddings"), 0);
        size_t dim = json_array_size(e);
        CHECK(dim > 1);
        /* scaled by 3: the daemon normalizes what it is given */
        json_t *v = json_array(), *v_short = json_array();
        for (size_t i = 0; i < dim; i++) {
            double x = json_number_value(json_array_get(e, i)) * 3;
            json_array_append_new(v, json_real(x));
            if (i + 1 < dim)
                json_array_append_new(v_short, json_real(x));
        }
        json_t *q = json_pack("{s:i,s:s,s:s,s:O,s:i}", "id", 2, "op", "search",
                              "collection", "ord", "vector", v, "k", 1);
        char *line = json_dumps(q, JSON_COMPACT);
        json_t *s2 = cl_call(c, line);
        check_ok(s2, "search by vector");
        json_t *hit = json_array_get(json_object_get(s2, "results"), 0);
        CHECK_STREQ(json_string_value(json_object_get(hit, "id")), "x");
        CHECK(json_number_value(json_object_get(hit, "score")) > 0.9999);
        free(line);
        json_decref(s2);
        json_object_set(q, "vector", v_short);
        line = json_dumps(q, JSON_COMPACT);
        bad(c, line, "model_mismatch", "2");
        free(line);
        json_object_set_new(q, "query", json_string("second version"));
        json_object_set(q, "vector", v);
        line = json_dumps(q, JSON_COMPACT);
        bad(c, line, "bad_request", "2");
        free(line);
        json_decref(q);
        json_decref(v);
        json_decref(v_short);
        json_decref(r);
        bad(c, "{\"id\":3,\"op\":\"search\",\"collection\":\"ord\","
               "\"vector\":[]}", "bad_request", "3");
        bad(c, "{\"id\":4,\"op\":\"search\",\"collection\":\"ord\","
               "\"vector\":[0,0,0]}", "bad_request", "4");
        bad(c, "{\"id\":5,\"op\":\"search\",\"collection\":\"ord\","
               "\"vector\":[1,\"2\"]}", "bad_request", "5");
        bad(c, "{\"id\":6,\"op\":\"search\",\"collection\":\"ord\","
               "\"vector\":[1e39]}", "bad_request", "6");
        bad(c, "{\"id\":7,\"op\":\"search\",\"collection\":\"ord\","
               "\"vector\":[1],\"prompt\":\"\"}", "bad_request", "7");
        bad(c, "{\"id\":8,\"op\":\"search\",\"collection\":\"nope\","
               "\"vector\":[1]}", "not_found", "8");
    }

    /* ---- SIGTERM: in-flight work finishes, index saved, exit 0 ---------------------- */
    phase("SIGTERM with work in flight");
    {
        /* an add big enough to be in flight when the signal lands */
        json_t *docs = json_array();
        char text[4096];
        for (int i = 0; i < 100; i++) {
            size_t n = 0;
            for (int w = 0; w < 80; w++)
                n += (size_t)snprintf(text + n, sizeof text - n, "w%d ",
                                      (i * 31 + w * 7) % 997);
            char id[32];
            snprintf(id, sizeof id, "term-%d", i);
            json_array_append_new(docs, json_pack("{s:s,s:s}", "id", id, "text",
                                                  text));
        }
        json_t *req = json_pack("{s:s,s:s,s:s,s:o}", "id", "term", "op", "add",
                                "collection", "term", "docs", docs);
        char *s = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        client_t *t = cl_open();
        /* the signal must land after the daemon has read the whole line:
         * watch its request counter from another connection (each stats
         * counts itself too) */
        r = cl_call(c, "{\"op\":\"stats\"}");
        long long r0 = json_integer_value(json_object_get(r, "requests"));
        json_decref(r);
        cl_sendz(t, s);
        cl_sendz(t, "\n");
        free(s);
        for (int k = 1;; k++) {
            CHECK(k < 20000);
            r = cl_call(c, "{\"op\":\"stats\"}");
            long long n = json_integer_value(json_object_get(r, "requests"));
            json_decref(r);
            if (n - r0 - k >= 1)
                break;
            usleep(1000);
        }
        CHECK(kill(pid, SIGTERM) == 0);
        char *line = cl_line(t);
        CHECK(line != NULL);
        r = parse(line);
        free(line);
        check_ok(r, "in-flight add across SIGTERM");
        CHECK_EQ(json_array_size(json_object_get(r, "ids")), 100);
        json_decref(r);
        CHECK(cl_line(t) == NULL); /* then closed */
        cl_close(t);
        cl_close(c);
        int st2 = daemon_stop(pid, 0);
        CHECK(WIFEXITED(st2));
        CHECK_EQ(WEXITSTATUS(st2), 0);
        CHECK(file_has(log_path, "indexes saved"));
        CHECK(access(sock_path, F_OK) != 0); /* the socket is gone */
        char idx[200];
        snprintf(idx, sizeof idx, "%s.idx", db_path);
        CHECK(access(idx, F_OK) == 0);
    }

    /* ---- the batch window: a lone client does not wait for it --------------------- */
    phase("batch window: lone client not held, concurrent ones batched");
    {
        /* a window far longer than any forward pass of the tiny model: a
         * request that waited for it would take >= 500 ms */
        pid = daemon_start(model, "--batch-wait-us", "500000", NULL);
        c = cl_open();
        double worst = lone_embeds(c, 0);
        printf(" [lone: worst %.1f ms]", worst);
        CHECK(worst < 250);
        /* concurrent clients still share batches */
        pthread_t th[8];
        conc_t t[8];
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 8);
        double t0 = mono_ms();
        for (int i = 0; i < 8; i++) {
            t[i] = (conc_t){.i_client = i, .go = &go};
            CHECK(pthread_create(&th[i], NULL, conc_main, &t[i]) == 0);
        }
        for (int i = 0; i < 8; i++) {
            pthread_join(th[i], NULL);
            CHECK_EQ(t[i].n_ok, 10);
            CHECK(t[i].diff <= 1e-5);
        }
        pthread_barrier_destroy(&go);
        printf(" [8 clients x 10: %.0f ms]", mono_ms() - t0);
        char *log = slurp(log_path);
        int mixed = 0;
        for (char *p = log; (p = strstr(p, "texts (")); p++)
            if (atoi(p + 7) >= 2)
                mixed = 1;
        free(log);
        CHECK(mixed);
        /* once the others have gone, a lone client is not held either */
        for (int k = 1;; k++) {
            CHECK(k < 2000);
            r = cl_call(c, "{\"op\":\"stats\"}");
            long long n = json_integer_value(json_object_get(r, "connections"));
            json_decref(r);
            if (n == 1)
                break;
            usleep(1000);
        }
        worst = lone_embeds(c, 3);
        printf(" [lone again: worst %.1f ms]", worst);
        CHECK(worst < 250);
        cl_close(c);
        int st2 = daemon_stop(pid, SIGTERM);
        CHECK(WIFEXITED(st2));
        CHECK_EQ(WEXITSTATUS(st2), 0);
    }

    /* ---- model mismatch: a collection stays bound to its model ---------------------- */
    phase("model mismatch");
    pid = daemon_start(model2, NULL);
    c = cl_open();
    r = cl_call(c, "{\"id\":1,\"op\":\"search\",\"query\":\"bat\"}");
    check_error(r, "model_mismatch", "1");
    json_decref(r);
    r = cl_call(c, "{\"id\":2,\"op\":\"add\",\"docs\":[{\"text\":\"x\"}]}");
    check_error(r, "model_mismatch", "2");
    json_decref(r);
    cl_close(c);
    /* SIGKILL leaves a stale socket behind */
    daemon_stop(pid, SIGKILL);
    CHECK(access(sock_path, F_OK) == 0);

    /* ---- restart: stale socket replaced, data all there ------------------------------ */
    phase("stale socket replaced, restart keeps data (2 workers)");
    pid = daemon_start(model, "--threads", "2", NULL);
    CHECK(file_has(log_path, "replaced stale socket"));
    CHECK(file_gets(log_path, "2 encoder workers", 10));
    c = cl_open();
    r = cl_call(c, "{\"op\":\"get\",\"collection\":\"term\",\"ids\":[\"term-0\","
                   "\"term-99\"]}");
    check_ok(r, "get after restart");
    CHECK_EQ(json_array_size(json_object_get(r, "docs")), 2);
    json_decref(r);
    r = cl_call(c, "{\"op\":\"get\",\"ids\":[\"snake\",\"42\"]}");
    CHECK_EQ(json_array_size(json_object_get(r, "docs")), 1); /* deleted */
    json_decref(r);

    /* ---- durability: SIGKILL mid-ingest ------------------------------------------------ */
    phase("durability: SIGKILL mid-ingest");
    {
        /* some acknowledged deletes first */
        for (int i = 0; i < 10; i++) {
            char req[512], text[256];
            dur_text(text, sizeof text, 9, i);
            snprintf(req, sizeof req, "{\"op\":\"add\",\"collection\":\"dur\","
                     "\"docs\":[{\"id\":\"del-%d\",\"text\":\"%s\"}]}", i, text);
            r = cl_call(c, req);
            check_ok(r, "dur add");
            json_decref(r);
        }
        r = cl_call(c, "{\"op\":\"delete\",\"collection\":\"dur\",\"ids\":"
                       "[\"del-0\",\"del-3\",\"del-7\"]}");
        check_ok(r, "dur delete");
        CHECK_EQ(json_integer_value(json_object_get(r, "deleted")), 3);
        json_decref(r);
        cl_close(c);

        pthread_t th[DUR_CLIENTS];
        dur_t *d = calloc(DUR_CLIENTS, sizeof *d);
        for (int t = 0; t < DUR_CLIENTS; t++) {
            d[t].t = t;
            CHECK(pthread_create(&th[t], NULL, dur_main, &d[t]) == 0);
        }
        /* kill once a good number are acknowledged */
        for (int i = 0; i < 500; i++) {
            int acked = 0;
            for (int t = 0; t < DUR_CLIENTS; t++)
                acked += __atomic_load_n(&d[t].n_acked, __ATOMIC_RELAXED);
            if (acked >= 120)
                break;
            usleep(10000);
        }
        daemon_stop(pid, SIGKILL);
        int n_acked = 0, n_unacked = 0;
        for (int t = 0; t < DUR_CLIENTS; t++) {
            pthread_join(th[t], NULL);
            n_acked += d[t].n_acked;
            n_unacked += d[t].n_sent - d[t].n_acked;
        }
        printf(" [%d acknowledged, %d in flight]", n_acked, n_unacked);
        CHECK(n_acked >= 40);

        pid = daemon_start(model, NULL);
        c = cl_open();
        for (int t = 0; t < DUR_CLIENTS; t++) {
            for (int i = 0; i < d[t].n_sent; i++) {
                char id[32], text[256];
                snprintf(id, sizeof id, "c%d-%d", t, i);
                dur_text(text, sizeof text, t, i);
                json_t *g = op_get(c, id);
                json_t *docs = json_object_get(g, "docs");
                if (!d[t].acked[i] && json_array_size(docs) == 0) {
                    json_decref(g); /* never committed: fine */
                    continue;
                }
                /* acknowledged, or committed just before the kill: whole */
                CHECK_EQ(json_array_size(docs), 1);
                json_t *doc = json_array_get(docs, 0);
                CHECK_STREQ(json_string_value(json_object_get(doc, "text")),
                            text);
                CHECK_EQ(json_integer_value(json_object_get(
                             json_object_get(doc, "meta"), "n")), i);
                CHECK_EQ(json_integer_value(json_object_get(doc, "chunks")), 1);
                json_decref(g);
                json_t *s = op_search(c, "dur", text, 3);
                json_t *top = json_array_get(json_object_get(s, "results"), 0);
                if (!top || strcmp(json_string_value(json_object_get(top, "id")),
                                   id)) {
                    char *dump = json_dumps(s, 0);
                    fprintf(stderr, "search for %s's text: %s\n", id, dump);
                    exit(1);
                }
                json_decref(s);
            }
        }
        /* deletes survive and never come back in results */
        static const int gone[] = {0, 3, 7};
        for (int k = 0; k < 3; k++) {
            char id[32], text[256];
            snprintf(id, sizeof id, "del-%d", gone[k]);
            dur_text(text, sizeof text, 9, gone[k]);
            json_t *g = op_get(c, id);
            CHECK_EQ(json_array_size(json_object_get(g, "docs")), 0);
            json_decref(g);
            json_t *s = op_search(c, "dur", text, 50);
            json_t *h;
            size_t i;
            json_array_foreach(json_object_get(s, "results"), i, h)
                CHECK(strcmp(json_string_value(json_object_get(h, "id")), id));
            json_decref(s);
        }
        json_t *g = op_get(c, "del-1");
        CHECK_EQ(json_array_size(json_object_get(g, "docs")), 1);
        json_decref(g);
        free(d);
        cl_close(c);
    }
    int st3 = daemon_stop(pid, SIGTERM);
    CHECK(WIFEXITED(st3) && WEXITSTATUS(st3) == 0);
    phase(NULL);

    /* no daemon run reported a sanitizer error */
    for (int i = 1; i <= n_logs; i++) {
        snprintf(log_path, sizeof log_path, "%s/log%d", tmp, i);
        if (file_has(log_path, "Sanitizer") ||
            file_has(log_path, "runtime error")) {
            char *log = slurp(log_path);
            fprintf(stderr, "%s:\n%s\n", log_path, log);
            exit(1);
        }
    }

    for (int i = 0; i < N_POOL; i++)
        json_decref(ref[i]);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0);
    printf("daemon: ok\n");
    return 0;
}
