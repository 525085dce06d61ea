/*
 * test_daemon_limits.c -- sensed against hostile and clumsy clients, and
 * damaged storage (issue 16), end to end with the real daemon (the
 * tiny-bert-uncased fixture) and the real `sense` client:
 *
 *   - memory: a client pipelines 64 embed requests of 50 texts with their
 *     token states and never reads; the daemon's peak memory grows by a few
 *     MiB (the per-connection reply budget), not by a reply per request;
 *     another client is served meanwhile, and the replies all come when the
 *     first client reads;
 *   - fairness: while one client streams 64 requests of 50 texts, another
 *     client's one-text embed comes back within a few of the first
 *     client's replies (it waits at most a batch), and so does a search by
 *     text while a client streams adds;
 *   - idle timeout: a connection that sends nothing is closed;
 *   - damaged vectors: a vector flipped in the database is logged by the
 *     daemon (the store's notes reach its log), left out of search,
 *     reported by `sense check`, and `sense check --repair` embeds it again;
 *   - the documented limits: document ids of 1024 bytes, meta of 1 MiB;
 *   - shutdown does not say "indexes saved" when saving failed.
 *
 * The fairness checks count replies, not milliseconds: with the encoder
 * queue first come first served, the lone reply comes after ~60 of the
 * other client's.
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "check.h"
#include "testutil.h"

#define TIMEOUT_MS 60000

static char tmp[64], sock_path[100], db_path[128], model[512], log_path[160];
static int n_logs;

#include "rawclient.h"

static pid_t live = -1;

static void kill_live(void)
{
    if (live > 0)
        kill(live, SIGKILL);
}

static pid_t daemon_start(const char *extra, ...)
{
    const char *argv[32];
    int n = 0;
    va_list ap;
    snprintf(log_path, sizeof log_path, "%s/log%d", tmp, ++n_logs);
    argv[n++] = SN_BINARY_DIR "/sensed";
    argv[n++] = "--socket";
    argv[n++] = sock_path;
    argv[n++] = "--db";
    argv[n++] = db_path;
    argv[n++] = "--model";
    argv[n++] = model;
    argv[n++] = "--log-level";
    argv[n++] = "debug";
    va_start(ap, extra);
    for (const char *a = extra; a && n < 31; a = va_arg(ap, const char *))
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
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
    live = pid;
    for (int i = 0; i < 3000; i++) {
        int st, fd;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            char *text = slurp(log_path);
            fprintf(stderr, "sensed exited early:\n%s\n", text);
            exit(1);
        }
        if ((fd = try_connect()) >= 0) {
            close(fd);
            return pid;
        }
        usleep(10000);
    }
    fprintf(stderr, "sensed did not start\n");
    exit(1);
}

static int daemon_stop(pid_t pid)
{
    int st = 0;
    CHECK(kill(pid, SIGTERM) == 0);
    CHECK(waitpid(pid, &st, 0) == pid);
    live = -1;
    return st;
}

static json_t *call(client_t *c, const char *req)
{
    cl_sendz(c, req);
    if (!*req || req[strlen(req) - 1] != '\n')
        cl_sendz(c, "\n");
    char *line = cl_line(c);
    CHECK(line != NULL);
    json_t *r = parse(line);
    free(line);
    if (!json_is_true(json_object_get(r, "ok"))) {
        fprintf(stderr, "request %.200s failed: %s\n", req,
                json_dumps(r, JSON_COMPACT));
        exit(1);
    }
    return r;
}

static long status_kb(pid_t pid, const char *key)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key)))
            kb = atol(line + strlen(key) + 1);
    fclose(f);
    CHECK(kb >= 0);
    return kb;
}

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* A request line: embed of n texts of about `len` characters each. */
static char *embed_line(int id, int n, int len, int tokens)
{
    size_t cap = (size_t)n * (len + 8) + 128, used = 0;
    char *s = malloc(cap);
    CHECK(s != NULL);
    used += (size_t)snprintf(s, cap, "{\"id\":%d,\"op\":\"embed\",%s"
                             "\"texts\":[", id,
                             tokens ? "\"tokens\":true," : "");
    for (int i = 0; i < n; i++) {
        s[used++] = i ? ',' : ' ';
        s[used++] = '"';
        for (int j = 0; j < len; j++)
            s[used++] = "word an other thing "[(j + i + id) % 20];
        s[used++] = '"';
    }
    used += (size_t)snprintf(s + used, cap - used, "]}\n");
    return s;
}

/* Write all of buf without blocking for more than a second at a time;
 * returns the bytes written (the daemon may stop reading). */
static size_t send_some(client_t *c, const char *buf, size_t len)
{
    size_t sent = 0;
    fcntl(c->fd, F_SETFL, O_NONBLOCK);
    while (sent < len) {
        ssize_t w = send(c->fd, buf + sent, len - sent, MSG_NOSIGNAL);
        if (w > 0) {
            sent += (size_t)w;
            continue;
        }
        CHECK(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        struct pollfd p = {c->fd, POLLOUT, 0};
        if (poll(&p, 1, 1000) == 0)
            break;
    }
    fcntl(c->fd, F_SETFL, 0);
    return sent;
}

/* ---- memory: a client that never reads ----------------------------------------- */

static void test_memory(void)
{
    enum { N_REQ = 64, N_TEXTS = 50, LEN = 300 };
    pid_t pid = daemon_start(NULL);
    client_t *other = cl_open();

    /* warm up: the arenas and one reply of the size the hog asks for */
    char *warm = embed_line(999, N_TEXTS, LEN, 1);
    json_t *r = call(other, warm);
    char *dumped = json_dumps(r, JSON_COMPACT);
    CHECK(dumped != NULL);
    size_t one_reply = strlen(dumped);
    free(dumped);
    json_decref(r);
    free(warm);
    long base = status_kb(pid, "VmRSS:");

    client_t *hog = cl_open();
    size_t total = 0, cap = 0;
    char *all = NULL;
    for (int i = 0; i < N_REQ; i++) {
        char *l = embed_line(i, N_TEXTS, LEN, 1);
        size_t n = strlen(l);
        if (total + n > cap) {
            cap = (total + n) * 2;
            all = realloc(all, cap);
            CHECK(all != NULL);
        }
        memcpy(all + total, l, n);
        total += n;
        free(l);
    }
    size_t sent = send_some(hog, all, total);
    CHECK_EQ(sent, total); /* 64 requests, about 1 MB: all read */
    /* let the daemon do whatever it will do for them */
    for (int quiet = 0, i = 0; quiet < 5 && i < 600; i++) {
        usleep(100000);
        r = call(other, "{\"op\":\"stats\"}");
        quiet = json_integer_value(json_object_get(
                    json_object_get(r, "queue"), "embed")) == 0
                    ? quiet + 1
                    : 0;
        json_decref(r);
    }
    long peak = status_kb(pid, "VmHWM:");
    long grew_kb = peak - base;
    printf(" [reply %zu KB; 64 unread requests: peak +%ld KB]",
           one_reply / 1024, grew_kb);
    /* the budget (4 MiB) and a reply or two being built or written; 64
     * replies would be 64 x ~2.7 MB */
    if (grew_kb > 24 * 1024) {
        fprintf(stderr, "daemon grew by %ld KB for a client that does not "
                "read (one reply is %zu KB)\n", grew_kb, one_reply / 1024);
        exit(1);
    }
    /* another client is served meanwhile */
    char *one = embed_line(1000, 1, 20, 0);
    r = call(other, one);
    json_decref(r);
    free(one);
    /* and the hog gets its replies, in order, once it reads (the first
     * few: the rest follow the same way, one budget at a time) */
    for (int i = 0; i < 4; i++) {
        char *line = cl_line(hog);
        CHECK(line != NULL);
        r = parse(line);
        free(line);
        CHECK(json_is_true(json_object_get(r, "ok")));
        CHECK_EQ(json_integer_value(json_object_get(r, "id")), i);
        json_decref(r);
    }
    free(all);
    cl_close(hog);
    cl_close(other);
    CHECK_EQ(daemon_stop(pid), 0);
}

/* ---- fairness ---------------------------------------------------------------------- */

typedef struct {
    client_t *c;
    int n;
    double t[128]; /* when each reply came */
    int n_got;     /* atomic */
} bulk_t;

static void *bulk_reader(void *arg)
{
    bulk_t *b = arg;
    for (int i = 0; i < b->n; i++) {
        char *line = cl_line(b->c);
        CHECK(line != NULL);
        b->t[i] = mono_ms();
        __atomic_store_n(&b->n_got, i + 1, __ATOMIC_RELEASE);
        json_t *r = parse(line);
        if (!json_is_true(json_object_get(r, "ok"))) {
            fprintf(stderr, "bulk reply %d: %s\n", i, line);
            exit(1);
        }
        json_decref(r);
        free(line);
    }
    return NULL;
}

/* Start a bulk client sending `lines`, wait for its first reply, then
 * time `req` from another client: how many bulk replies came first. */
static int replies_before(const char *lines, size_t len, int n_bulk,
                          const char *req)
{
    bulk_t b = {.c = cl_open(), .n = n_bulk};
    client_t *lone = cl_open();
    pthread_t th;
    CHECK(pthread_create(&th, NULL, bulk_reader, &b) == 0);
    CHECK_EQ(cl_send(b.c, lines, len), 0);
    while (__atomic_load_n(&b.n_got, __ATOMIC_ACQUIRE) == 0)
        usleep(200);
    json_t *r = call(lone, req);
    double t_lone = mono_ms();
    json_decref(r);
    pthread_join(th, NULL);
    int before = 0;
    for (int i = 0; i < n_bulk; i++)
        before += b.t[i] < t_lone;
    cl_close(b.c);
    cl_close(lone);
    return before;
}

static void test_fairness(void)
{
    enum { N_REQ = 64, N_TEXTS = 50, LEN = 300 };
    /* batches of ~32 texts of 32 tokens: under one bulk request each */
    pid_t pid = daemon_start("--batch-wait-us", "0", "--batch-tokens", "1024",
                             NULL);
    size_t total = 0, cap = (size_t)N_REQ * N_TEXTS * (LEN + 32) + 16384;
    char *all = malloc(cap);
    CHECK(all != NULL);

    for (int i = 0; i < N_REQ; i++) {
        char *l = embed_line(i, N_TEXTS, LEN, 0);
        memcpy(all + total, l, strlen(l));
        total += strlen(l);
        free(l);
    }
    int before = replies_before(all, total, N_REQ,
                                "{\"op\":\"embed\",\"texts\":[\"one\"]}\n");
    printf(" [lone embed after %d of %d bulk replies]", before, N_REQ);
    CHECK(before <= 6);

    /* a search by text while another client streams adds */
    client_t *c = cl_open();
    json_decref(call(c, "{\"op\":\"add\",\"collection\":\"mine\",\"docs\":"
                        "[{\"id\":\"m\",\"text\":\"my own note\"}]}\n"));
    cl_close(c);
    total = 0;
    for (int i = 0; i < N_REQ; i++) {
        total += (size_t)snprintf(all + total, cap - total,
                                  "{\"id\":%d,\"op\":\"add\",\"collection\":"
                                  "\"bulk\",\"docs\":[", i);
        for (int j = 0; j < N_TEXTS; j++) {
            total += (size_t)snprintf(all + total, cap - total,
                                      "%s{\"id\":\"b%d-%d\",\"text\":\"", j ? "," : "",
                                      i, j);
            for (int k = 0; k < LEN; k++)
                all[total++] = "words of a bulk doc "[(k + j) % 20];
            total += (size_t)snprintf(all + total, cap - total, "\"}");
        }
        total += (size_t)snprintf(all + total, cap - total, "]}\n");
        CHECK(total < cap);
    }
    before = replies_before(all, total, N_REQ,
                            "{\"op\":\"search\",\"collection\":\"mine\","
                            "\"query\":\"note\",\"k\":1}\n");
    printf(" [search after %d of %d bulk adds]", before, N_REQ);
    CHECK(before <= 6);
    free(all);
    CHECK_EQ(daemon_stop(pid), 0);
}

/* ---- idle connections --------------------------------------------------------------- */

static void test_idle(void)
{
    pid_t pid = daemon_start("--idle-timeout", "0.5", NULL);
    client_t *quiet = cl_open(), *busy = cl_open();
    double t0 = mono_ms();
    /* the busy one keeps talking, the quiet one is closed */
    for (int i = 0; i < 8; i++) {
        json_decref(call(busy, "{\"op\":\"stats\"}\n"));
        usleep(200000);
    }
    char *line = cl_line(quiet);
    CHECK(line == NULL); /* closed by the daemon */
    CHECK(mono_ms() - t0 >= 400);
    json_decref(call(busy, "{\"op\":\"stats\"}\n"));
    CHECK(file_has(log_path, "idle for"));
    cl_close(quiet);
    cl_close(busy);
    CHECK_EQ(daemon_stop(pid), 0);
}

/* ---- damaged vectors, check and repair; the store's notes in the log --------------- */

static int run_cli(const char *args, char *out, size_t out_len)
{
    char cmd[1024], path[128];
    snprintf(path, sizeof path, "%s/cli.out", tmp);
    snprintf(cmd, sizeof cmd, "'%s/sense' --socket '%s' %s > '%s' 2>&1",
             SN_BINARY_DIR, sock_path, args, path);
    int st = system(cmd);
    char *text = slurp(path);
    snprintf(out, out_len, "%s", text ? text : "");
    free(text);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_damaged(void)
{
    char out[8192], sql[256], idx[300];
    pid_t pid = daemon_start(NULL);
    client_t *c = cl_open();
    json_decref(call(c, "{\"op\":\"add\",\"collection\":\"k\",\"docs\":["
                        "{\"id\":\"river\",\"text\":\"the bank of the river\"},"
                        "{\"id\":\"money\",\"text\":\"money in the bank\"},"
                        "{\"id\":\"snake\",\"text\":\"a python ate a rabbit\"}"
                        "]}\n"));
    cl_close(c);
    CHECK_EQ(daemon_stop(pid), 0);

    /* the first float of 'snake' made huge, behind the daemon's back */
    sqlite3 *db;
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    snprintf(sql, sizeof sql,
             "UPDATE chunks SET vector = x'00008070' || substr(vector, 5) "
             "WHERE document = (SELECT id FROM documents WHERE ext_id = "
             "'snake')");
    CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
    CHECK_EQ(sqlite3_changes(db), 1);
    CHECK(sqlite3_close(db) == SQLITE_OK);
    snprintf(idx, sizeof idx, "rm -rf '%s.idx'", db_path);
    CHECK(system(idx) == 0); /* rebuilt from the database */

    pid = daemon_start(NULL);
    c = cl_open();
    json_t *r = call(c, "{\"op\":\"search\",\"collection\":\"k\","
                        "\"query\":\"river bank\",\"k\":3}\n");
    json_t *hits = json_object_get(r, "results");
    CHECK_EQ(json_array_size(hits), 2); /* 'snake' left out */
    for (size_t i = 0; i < json_array_size(hits); i++) {
        json_t *h = json_array_get(hits, i);
        /* the cosine (hybrid's "score" adds the lexical score) */
        CHECK(json_real_value(json_object_get(h, "vector_score")) <= 1.0001);
        CHECK(strcmp(json_string_value(json_object_get(h, "id")), "snake"));
    }
    json_decref(r);
    /* the store's note reached the daemon's log */
    CHECK(file_has(log_path, "store: collection 'k': document 'snake'"));
    CHECK(file_has(log_path, "damaged vector"));

    CHECK_EQ(run_cli("check --collection k", out, sizeof out), 1);
    CHECK(strstr(out, "damaged: k / snake chunk 0"));
    CHECK(strstr(out, "3 vectors checked, 1 damaged"));
    CHECK_EQ(run_cli("check --repair --collection k", out, sizeof out), 0);
    CHECK(strstr(out, "repaired k / snake"));
    CHECK_EQ(run_cli("check --collection k", out, sizeof out), 0);
    CHECK(strstr(out, "3 vectors checked, 0 damaged"));
    CHECK_EQ(run_cli("check", out, sizeof out), 0); /* all collections */
    CHECK(strstr(out, " 0 damaged"));
    r = call(c, "{\"op\":\"search\",\"collection\":\"k\","
                "\"query\":\"a python ate a rabbit\",\"k\":1}\n");
    hits = json_object_get(r, "results");
    CHECK_EQ(json_array_size(hits), 1);
    CHECK(!strcmp(json_string_value(json_object_get(json_array_get(hits, 0),
                                                    "id")), "snake"));
    json_decref(r);
    cl_close(c);
    CHECK_EQ(daemon_stop(pid), 0);
    CHECK(file_has(log_path, "indexes saved"));
}

/* ---- the documented limits: ids 1024 bytes, meta 1 MiB ---------------------------- */

static json_t *call_err(client_t *c, const char *req, const char *code)
{
    cl_sendz(c, req);
    char *line = cl_line(c);
    CHECK(line != NULL);
    json_t *r = parse(line);
    const char *got = json_string_value(
        json_object_get(json_object_get(r, "error"), "code"));
    if (!got || strcmp(got, code) != 0) {
        fprintf(stderr, "expected %s, got %s\n", code, line);
        exit(1);
    }
    free(line);
    return r;
}

static void test_doc_limits(void)
{
    pid_t pid = daemon_start(NULL);
    client_t *c = cl_open();
    size_t cap = (2u << 20) + 4096;
    char *req = malloc(cap), id[1100];
    CHECK(req != NULL);
    memset(id, 'i', 1024);
    id[1024] = '\0';
    snprintf(req, cap, "{\"op\":\"add\",\"collection\":\"lim\",\"docs\":"
             "[{\"id\":\"%s\",\"text\":\"x\"}]}\n", id);
    json_decref(call(c, req)); /* 1024 bytes: fine */
    strcat(id, "j");
    snprintf(req, cap, "{\"op\":\"add\",\"collection\":\"lim\",\"docs\":"
             "[{\"id\":\"%s\",\"text\":\"x\"}]}\n", id);
    json_decref(call_err(c, req, "too_large"));
    /* meta: 1 MiB of compact json is the limit */
    for (int over = 0; over < 2; over++) {
        size_t n = (1u << 20) - 8 + (size_t)over; /* {"k":"..."} */
        int k = snprintf(req, cap, "{\"op\":\"add\",\"collection\":\"lim\","
                         "\"docs\":[{\"text\":\"x\",\"meta\":{\"k\":\"");
        memset(req + k, 'm', n);
        snprintf(req + k + n, cap - k - n, "\"}}]}\n");
        if (over)
            json_decref(call_err(c, req, "too_large"));
        else
            json_decref(call(c, req));
    }
    free(req);
    cl_close(c);
    CHECK_EQ(daemon_stop(pid), 0);
}

/* ---- a failed save is not reported as saved ------------------------------------------ */

static void test_save_fails(void)
{
    char path[400];
    snprintf(path, sizeof path, "rm -rf '%s.idx' && touch '%s.idx'", db_path,
             db_path); /* a file where the index folder goes */
    CHECK(system(path) == 0);
    pid_t pid = daemon_start(NULL);
    client_t *c = cl_open();
    json_decref(call(c, "{\"op\":\"add\",\"collection\":\"s\",\"docs\":"
                        "[{\"text\":\"a note\"}]}\n"));
    json_decref(call(c, "{\"op\":\"search\",\"collection\":\"s\","
                        "\"query\":\"note\",\"k\":1}\n")); /* loads, dirty */
    cl_close(c);
    CHECK_EQ(daemon_stop(pid), 0);
    CHECK(file_has(log_path, "indexes not saved"));
    CHECK(!file_has(log_path, "indexes saved"));
    snprintf(path, sizeof path, "%s.idx", db_path);
    CHECK(unlink(path) == 0);
}

int main(int argc, char **argv)
{
    /* argv[1]: run only the tests whose names contain it */
    const char *only = argc > 1 ? argv[1] : "";
#define RUN(name, fn)                                                        \
    do {                                                                     \
        if (strstr(name, only)) {                                            \
            printf("%s", name);                                              \
            fflush(stdout);                                                  \
            fn();                                                            \
            printf("\n");                                                    \
        }                                                                    \
    } while (0)
    signal(SIGPIPE, SIG_IGN);
    atexit(kill_live);
    snprintf(tmp, sizeof tmp, "/tmp/sense-limits-XXXXXX");
    CHECK(mkdtemp(tmp) != NULL);
    snprintf(sock_path, sizeof sock_path, "%s/s.sock", tmp);
    snprintf(db_path, sizeof db_path, "%s/sense.db", tmp);
    snprintf(model, sizeof model, "%s/hf-reference/tiny-bert-uncased/model",
             SN_FIXTURES);

    RUN("memory:", test_memory);
    RUN("fairness:", test_fairness);
    RUN("idle timeout", test_idle);
    RUN("damaged vectors, check, repair", test_damaged);
    RUN("document limits", test_doc_limits);
    RUN("failed save", test_save_fails);

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
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0);
    printf("daemon_limits: ok\n");
    return 0;
}
