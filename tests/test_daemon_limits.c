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
 *   - replies over the budget: four requests whose replies are ~28 MB each
 *     (ten times the budget), never read, on the socket and over HTTP: the
 *     daemon grows by a few MiB (the replies go in pieces as the client
 *     reads; built whole it grew by 28 MB); a reply in pieces is byte for
 *     byte the one put together from each text's own reply; the same for
 *     gets of several ids and searches of k = 1000 (their rows read a
 *     piece at a time), and a check's list of thousands of damaged vectors;
 *   - fairness: while one client streams 64 requests of 50 texts (or adds,
 *     word-sense requests from three clients, HTTP embeds), another
 *     client's lone request waits for at most one batch or step of encoder
 *     work per bulk client, as the daemon counts it;
 *   - idle timeout: a connection that sends nothing is closed;
 *   - damaged vectors: a vector flipped in the database is logged by the
 *     daemon (the store's notes reach its log), left out of search,
 *     reported by `sense check`, and `sense check --repair` embeds it again;
 *   - the documented limits: document ids of 1024 bytes, meta of 1 MiB;
 *   - shutdown does not say "indexes saved" when saving failed.
 *
 * The fairness checks read the count from the daemon's log, not the
 * clock: with the encoder queue first come first served, the lone request
 * waits for tens of batches or steps.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "check.h"
#include "testutil.h"

#define TIMEOUT_MS 60000

/* ASan keeps freed memory in quarantine: the daemon's RSS then counts
 * all it ever freed, and a bound on it means nothing (the memory checks
 * still run, their bounds are not asserted). */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_MEANS_NOTHING 1
#else
#define RSS_MEANS_NOTHING 0
#endif

static char tmp[64], sock_path[100], db_path[128], model[512], log_path[160];
static int n_logs, http_port;

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
    if (!RSS_MEANS_NOTHING && grew_kb > 24 * 1024) {
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

/* The batches or steps of encoder work that ran ahead of a request, as the
 * daemon logged it: the first line of its log holding `key` (a request's
 * id, an HTTP request line) and "steps ahead". */
static int ahead_of(const char *key)
{
    char *log = slurp(log_path), *p = log, *line_end;
    int n = -1;
    CHECK(log != NULL);
    while ((p = strstr(p, key))) {
        line_end = strchr(p, '\n');
        char *m = strstr(p, " ms, ");
        if (m && (!line_end || m < line_end) && strstr(m, "steps ahead")) {
            n = atoi(m + 5);
            break;
        }
        p += strlen(key);
    }
    if (n < 0) {
        fprintf(stderr, "no 'steps ahead' line for %s in the log:\n%s\n", key,
                log);
        exit(1);
    }
    free(log);
    return n;
}

static client_t *tcp_open(void);

typedef struct {
    client_t *c;
    int n;
    int http;      /* HTTP responses, not reply lines */
} bulk_t;

/* Read more into c's buffer (a deadline of TIMEOUT_MS); 0 at EOF. */
static int cl_fill(client_t *c)
{
    if (c->cap - c->len < 65536) {
        c->cap = c->cap ? c->cap * 2 : 131072;
        c->buf = realloc(c->buf, c->cap);
        CHECK(c->buf != NULL);
    }
    struct pollfd pfd = {c->fd, POLLIN, 0};
    CHECK(poll(&pfd, 1, TIMEOUT_MS) == 1);
    ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    CHECK(n >= 0);
    c->len += (size_t)n;
    return n > 0;
}

/* One HTTP response: its status; its body (Content-Length or chunked) in
 * *body (malloc'd, *len bytes, NUL-terminated) unless body is NULL. */
static int http_read(client_t *c, char **body, size_t *len)
{
    char *line = cl_line(c);
    int status = 0, chunked = 0;
    size_t clen = 0, n = 0, cap = 1;
    char *out = body ? malloc(cap) : NULL;
    CHECK(line != NULL);
    CHECK(sscanf(line, "HTTP/1.1 %d", &status) == 1);
    free(line);
    while ((line = cl_line(c)) && strcmp(line, "\r")) {
        if (!strncasecmp(line, "content-length:", 15))
            clen = strtoul(line + 15, NULL, 10);
        if (!strcasecmp(line, "transfer-encoding: chunked\r"))
            chunked = 1;
        free(line);
    }
    CHECK(line != NULL);
    free(line);
    for (;;) {
        if (chunked) {
            line = cl_line(c);
            CHECK(line != NULL);
            clen = strtoul(line, NULL, 16);
            free(line);
        }
        while (c->len - c->start < clen)
            CHECK(cl_fill(c));
        if (out) {
            if (n + clen + 1 > cap) {
                cap = (n + clen + 1) * 2;
                out = realloc(out, cap);
                CHECK(out != NULL);
            }
            memcpy(out + n, c->buf + c->start, clen);
            n += clen;
        }
        c->start += clen;
        if (!chunked)
            break;
        line = cl_line(c); /* the chunk's CRLF */
        CHECK(line && !strcmp(line, "\r"));
        free(line);
        if (!clen)
            break;
    }
    if (out) {
        out[n] = '\0';
        *body = out;
        *len = n;
    }
    return status;
}

static int http_response(client_t *c)
{
    return http_read(c, NULL, NULL);
}

static void *bulk_reader(void *arg)
{
    bulk_t *b = arg;
    for (int i = 0; i < b->n; i++) {
        if (b->http) {
            CHECK_EQ(http_response(b->c), 200);
            continue;
        }
        char *line = cl_line(b->c);
        CHECK(line != NULL);
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

/* Bulk clients each send `lines` (n_bulk requests; HTTP ones when `http`)
 * and read the replies; meanwhile, once the first has sent them all, a
 * lone client sends `req`. */
static void lone_behind(int n_clients, const char *lines, size_t len,
                        int n_bulk, int http, client_t *lone, const char *req)
{
    bulk_t b[4];
    pthread_t th[4];
    CHECK(n_clients <= 4);
    for (int i = 0; i < n_clients; i++) {
        b[i] = (bulk_t){.c = http ? tcp_open() : cl_open(), .n = n_bulk,
                        .http = http};
        CHECK(pthread_create(&th[i], NULL, bulk_reader, &b[i]) == 0);
    }
    for (int i = 0; i < n_clients; i++)
        CHECK_EQ(cl_send(b[i].c, lines, len), 0);
    cl_sendz(lone, req);
    if (http)
        CHECK_EQ(http_response(lone), 200);
    else
        json_decref(cl_reply(lone));
    for (int i = 0; i < n_clients; i++) {
        pthread_join(th[i], NULL);
        cl_close(b[i].c);
    }
}

/* A free port on 127.0.0.1 (free a moment ago). */
static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* --http's address for a daemon: a free port (http_port). */
static const char *http_addr(void)
{
    static char addr[32];
    http_port = free_port();
    snprintf(addr, sizeof addr, "127.0.0.1:%d", http_port);
    return addr;
}

static client_t *tcp_open(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    client_t *c = calloc(1, sizeof *c);
    CHECK(c != NULL);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(c->fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)http_port);
    CHECK(connect(c->fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    return c;
}

/* n_req lines or HTTP requests appended to buf: the i-th made by fn. */
static size_t build_bulk(char *buf, size_t cap, int n_req,
                         size_t (*fn)(char *out, size_t cap, int i))
{
    size_t total = 0;
    for (int i = 0; i < n_req; i++) {
        total += fn(buf + total, cap - total, i);
        CHECK(total < cap);
    }
    return total;
}

enum { F_REQ = 64, F_TEXTS = 50, F_LEN = 300 };

static size_t put_texts(char *out, size_t cap, int i, const char *pat)
{
    size_t n = 0;
    for (int j = 0; j < F_TEXTS; j++) {
        n += (size_t)snprintf(out + n, cap - n, "%s\"", j ? "," : "");
        CHECK(n + F_LEN + 8 < cap);
        for (int k = 0; k < F_LEN; k++)
            out[n++] = pat[(k + j + i) % 20];
        out[n++] = '"';
    }
    return n;
}

static size_t embed_req(char *out, size_t cap, int i)
{
    size_t n = (size_t)snprintf(out, cap, "{\"id\":%d,\"op\":\"embed\","
                                "\"texts\":[", i);
    n += put_texts(out + n, cap - n, i, "word an other thing ");
    return n + (size_t)snprintf(out + n, cap - n, "]}\n");
}

static size_t add_req(char *out, size_t cap, int i)
{
    size_t n = (size_t)snprintf(out, cap, "{\"id\":%d,\"op\":\"add\","
                                "\"collection\":\"bulk\",\"docs\":[", i);
    for (int j = 0; j < F_TEXTS; j++) {
        n += (size_t)snprintf(out + n, cap - n, "%s{\"id\":\"b%d-%d\","
                              "\"text\":\"", j ? "," : "", i, j);
        CHECK(n + F_LEN + 8 < cap);
        for (int k = 0; k < F_LEN; k++)
            out[n++] = "words of a bulk doc "[(k + j) % 20];
        n += (size_t)snprintf(out + n, cap - n, "\"}");
    }
    return n + (size_t)snprintf(out + n, cap - n, "]}\n");
}

static size_t which_req(char *out, size_t cap, int i)
{
    return (size_t)snprintf(out, cap, "{\"id\":%d,\"op\":\"sense.which\","
                            "\"text\":\"we sat on the bank of the river "
                            "number %d\",\"word\":\"bank\"}\n", i, i);
}

static size_t tei_req(char *out, size_t cap, int i)
{
    char body[F_TEXTS * (F_LEN + 4) + 64];
    size_t n = (size_t)snprintf(body, sizeof body, "{\"inputs\":[");
    n += put_texts(body + n, sizeof body - n, i, "word an other thing ");
    n += (size_t)snprintf(body + n, sizeof body - n, "],\"truncate\":true}");
    size_t h = (size_t)snprintf(out, cap, "POST /embed HTTP/1.1\r\nHost: x\r\n"
                                "Content-Type: application/json\r\n"
                                "Content-Length: %zu\r\n\r\n", n);
    CHECK(h + n < cap);
    memcpy(out + h, body, n);
    return h + n;
}

/* Encoder work is taken round robin across clients, whatever the work:
 * a lone request arriving behind a bulk client's embeds, adds (chunking
 * steps and texts), word-sense jobs or HTTP embeds waits for at most one
 * batch or step per bulk client (one encoder worker). The daemon counts
 * what ran ahead of it and logs it: no clock involved, so the machine's
 * load does not change the count. First come first served, the lone
 * request waits behind most of the bulk work (tens of batches). */
static void test_fairness(void)
{
    /* batches of ~10 texts of 100 tokens: a fifth of a bulk request */
    pid_t pid = daemon_start("--batch-wait-us", "0", "--batch-tokens", "1024",
                             "--threads", "1", "--http", http_addr(), NULL);
    size_t cap = (size_t)F_REQ * F_TEXTS * (F_LEN + 32) + 65536, total;
    char *all = malloc(cap);
    client_t *lone = cl_open();
    int n;
    CHECK(all != NULL);

    total = build_bulk(all, cap, F_REQ, embed_req);
    lone_behind(1, all, total, F_REQ, 0, lone,
                "{\"id\":\"lone-1\",\"op\":\"embed\",\"texts\":[\"one\"]}\n");
    printf(" [lone embed behind embeds: %d ahead]", n = ahead_of("lone-1"));
    CHECK(n <= 1);

    /* adds: chunking steps, then texts; a lone embed and search by text */
    json_decref(call(lone, "{\"op\":\"add\",\"collection\":\"mine\",\"docs\":"
                           "[{\"id\":\"m\",\"text\":\"my own note\"}]}\n"));
    total = build_bulk(all, cap, F_REQ, add_req);
    lone_behind(1, all, total, F_REQ, 0, lone,
                "{\"id\":\"lone-2\",\"op\":\"embed\",\"texts\":[\"one\"]}\n");
    printf(" [embed behind adds: %d]", n = ahead_of("lone-2"));
    CHECK(n <= 1);
    lone_behind(1, all, total, F_REQ, 0, lone,
                "{\"id\":\"lone-3\",\"op\":\"search\",\"collection\":\"mine\","
                "\"query\":\"note\",\"k\":1}\n");
    printf(" [search behind adds: %d]", n = ahead_of("lone-3"));
    CHECK(n <= 1);

    /* word senses: a connection's run one at a time, so three clients */
    json_decref(call(lone, "{\"op\":\"sense.add\",\"lemma\":\"bank\","
                           "\"sense\":\"river\",\"gloss\":\"sloping land "
                           "beside water\",\"examples\":[\"the bank of the "
                           "river\"]}\n"));
    json_decref(call(lone, "{\"op\":\"sense.add\",\"lemma\":\"bank\","
                           "\"sense\":\"money\",\"gloss\":\"a financial "
                           "institution\",\"examples\":[\"money in the "
                           "bank\"]}\n"));
    total = build_bulk(all, cap, F_REQ, which_req);
    lone_behind(3, all, total, F_REQ, 0, lone,
                "{\"id\":\"lone-4\",\"op\":\"embed\",\"texts\":[\"one\"]}\n");
    printf(" [embed behind 3 x sense.which: %d]", n = ahead_of("lone-4"));
    CHECK(n <= 3);

    /* HTTP: each connection is a client of its own */
    client_t *hlone = tcp_open();
    total = build_bulk(all, cap, F_REQ, tei_req);
    lone_behind(1, all, total, F_REQ, 1, hlone,
                "POST /embed?lone-5 HTTP/1.1\r\nHost: x\r\nContent-Type: "
                "application/json\r\nContent-Length: 16\r\n\r\n"
                "{\"inputs\":\"one\"}");
    printf(" [HTTP embed behind HTTP embeds: %d]",
           n = ahead_of("/embed?lone-5"));
    CHECK(n <= 1);
    cl_close(hlone);
    cl_close(lone);
    free(all);
    CHECK_EQ(daemon_stop(pid), 0);
}

/* ---- replies over the budget -------------------------------------------------- */

/* Text i of a request with id `id` (as embed_line writes them). */
static char *text_of(int i, int id, int len)
{
    char *t = malloc((size_t)len + 1);
    CHECK(t != NULL);
    for (int j = 0; j < len; j++)
        t[j] = "word an other thing "[(j + i + id) % 20];
    t[len] = '\0';
    return t;
}

typedef struct {
    char *s;
    size_t len, cap;
} str_t;

static void str_put(str_t *s, const char *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        s->cap = (s->len + n + 1) * 2;
        s->s = realloc(s->s, s->cap);
        CHECK(s->s != NULL);
    }
    memcpy(s->s + s->len, p, n);
    s->len += n;
    s->s[s->len] = '\0';
}

static void str_puts(str_t *s, const char *p)
{
    str_put(s, p, strlen(p));
}

/* line's bytes after `from` up to `to` (NULL: up to its last 2 bytes). */
static void str_between(str_t *s, const char *line, const char *from,
                        const char *to)
{
    const char *a = strstr(line, from), *b;
    CHECK(a != NULL);
    a += strlen(from);
    b = to ? strstr(a, to) : line + strlen(line) - 2;
    CHECK(b != NULL && b >= a);
    str_put(s, a, (size_t)(b - a));
}

/* The reply line an embed of texts 0..n of request `id` must have: put
 * together from the replies to each text alone (built whole, not in
 * pieces). */
static char *embed_expected(client_t *c, int id, int n, int len, int tokens)
{
    str_t parts[4] = {{0}}, out = {0};
    char head[64] = "";
    for (int i = 0; i < n; i++) {
        char *t = text_of(i, id, len);
        str_t req = {0};
        str_puts(&req, tokens ? "{\"op\":\"embed\",\"tokens\":true,\"texts\":[\""
                              : "{\"op\":\"embed\",\"texts\":[\"");
        str_puts(&req, t);
        str_puts(&req, "\"]}\n");
        cl_sendz(c, req.s);
        char *line = cl_line(c);
        CHECK(line != NULL);
        if (i == 0)
            CHECK(sscanf(strstr(line, "\"dim\":"), "\"dim\":%63[0-9]", head) == 1);
        for (int k = 0; k < 4; k++)
            if (i && (k < 3 || tokens))
                str_puts(&parts[k], ",");
        str_between(&parts[0], line, "\"n_tokens\":[", "]");
        str_between(&parts[1], line, "\"truncated\":[", "]");
        if (tokens) {
            str_between(&parts[2], line, "\"embeddings\":[", "],\"tokens\":[");
            str_between(&parts[3], line, "\"tokens\":[", NULL);
        } else {
            str_between(&parts[2], line, "\"embeddings\":[", NULL);
        }
        free(line);
        free(req.s);
        free(t);
    }
    char pre[160];
    snprintf(pre, sizeof pre, "{\"id\":%d,\"ok\":true,\"dim\":%s,\"n_tokens\":[",
             id, head);
    str_puts(&out, pre);
    str_puts(&out, parts[0].s);
    str_puts(&out, "],\"truncated\":[");
    str_puts(&out, parts[1].s);
    str_puts(&out, "],\"embeddings\":[");
    str_puts(&out, parts[2].s);
    str_puts(&out, "]");
    if (tokens) {
        str_puts(&out, ",\"tokens\":[");
        str_puts(&out, parts[3].s);
        str_puts(&out, "]");
    }
    str_puts(&out, "}");
    for (int k = 0; k < 4; k++)
        free(parts[k].s);
    return out.s;
}

/* A TEI request for texts 0..n of request `id`. */
static char *tei_request(const char *path, int id, int n, int len)
{
    str_t body = {0}, req = {0};
    char head[256];
    str_puts(&body, "{\"truncate\":true,\"inputs\":[");
    for (int i = 0; i < n; i++) {
        char *t = text_of(i, id, len);
        str_puts(&body, i ? ",\"" : "\"");
        str_puts(&body, t);
        str_puts(&body, "\"");
        free(t);
    }
    str_puts(&body, "]}");
    snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: "
             "application/json\r\nContent-Length: %zu\r\n\r\n", path, body.len);
    str_puts(&req, head);
    str_puts(&req, body.s);
    free(body.s);
    return req.s;
}

/* Wait until the daemon has nothing queued in `queue` ("embed": the
 * encoders; "storage": the lane): five looks in a row, 100 ms apart. */
static void queue_idle(client_t *c, const char *queue)
{
    for (int quiet = 0, i = 0; quiet < 5 && i < 600; i++) {
        usleep(100000);
        json_t *r = call(c, "{\"op\":\"stats\"}");
        quiet = json_integer_value(json_object_get(
                    json_object_get(r, "queue"), queue)) == 0
                    ? quiet + 1
                    : 0;
        json_decref(r);
    }
}

/* Each request's reply is ~40 MB (1024 texts with their token states):
 * over the connection's 4 MiB reply budget by ten times, and it used to
 * be built whole (with its token states, raw, beside it). Now it goes in
 * pieces as the client reads: a client that sends four of them and reads
 * nothing costs the daemon a few MiB, on the socket and over HTTP; and a
 * reply in pieces is byte for byte the reply built whole. */
static void test_big_replies(void)
{
    enum { N = 1024, LEN = 300, N_HOG = 4, LIMIT_KB = 8 * 1024 };
    pid_t pid = daemon_start("--http", http_addr(), NULL);
    client_t *other = cl_open();
    /* warm up: the arenas, for a request this big read whole */
    char *l = embed_line(999, N, LEN, 1), *line;
    cl_sendz(other, l);
    free(l);
    CHECK((line = cl_line(other)) != NULL);
    free(line);

    /* the socket */
    long base = status_kb(pid, "VmRSS:");
    client_t *hog = cl_open();
    for (int i = 0; i < N_HOG; i++) {
        l = embed_line(i, N, LEN, 1);
        CHECK_EQ(send_some(hog, l, strlen(l)), strlen(l));
        free(l);
    }
    queue_idle(other, "embed");
    long grew = status_kb(pid, "VmHWM:") - base;
    printf(" [socket: %d unread replies of 1024 texts with tokens: peak +%ld "
           "KB]", N_HOG, grew);
    CHECK(RSS_MEANS_NOTHING || grew < LIMIT_KB);
    l = embed_line(1000, 1, 20, 0);
    json_decref(call(other, l)); /* served meanwhile */
    free(l);
    line = cl_line(hog); /* and the hog's replies come when it reads */
    CHECK(line != NULL);
    CHECK(!strncmp(line, "{\"id\":0,\"ok\":true,\"dim\":", 23));
    CHECK(strlen(line) > 20u << 20);
    CHECK(!strcmp(line + strlen(line) - 3, "]]}"));
    free(line);
    cl_close(hog);

    /* HTTP: TEI's /embed_all (token states) */
    FILE *f;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/clear_refs", (int)pid);
    CHECK((f = fopen(path, "w")) != NULL); /* VmHWM back to VmRSS */
    fputs("5", f);
    fclose(f);
    usleep(200000);
    base = status_kb(pid, "VmRSS:");
    hog = tcp_open();
    for (int i = 0; i < N_HOG; i++) {
        l = tei_request("/embed_all", i, N, LEN);
        CHECK_EQ(send_some(hog, l, strlen(l)), strlen(l));
        free(l);
    }
    queue_idle(other, "embed");
    grew = status_kb(pid, "VmHWM:") - base;
    printf(" [HTTP: +%ld KB]", grew);
    CHECK(RSS_MEANS_NOTHING || grew < LIMIT_KB);
    char *body;
    size_t len;
    CHECK_EQ(http_read(hog, &body, &len), 200);
    CHECK(len > 20u << 20);
    CHECK(!strncmp(body, "[[[", 3) && !strcmp(body + len - 3, "]]]"));
    free(body);
    cl_close(hog);

    /* byte for byte: in pieces (with and without token states, and
     * over HTTP) as built whole from each text's own reply */
    const int n_of[2] = {120, N};
    for (int tokens = 1; tokens >= 0; tokens--) {
        int n = n_of[!tokens], id = 7 + tokens;
        l = embed_line(id, n, tokens ? LEN : 40, tokens);
        cl_sendz(other, l);
        free(l);
        line = cl_line(other);
        CHECK(line != NULL);
        char *want = embed_expected(other, id, n, tokens ? LEN : 40, tokens);
        if (strcmp(line, want)) {
            size_t k = 0;
            while (line[k] == want[k])
                k++;
            fprintf(stderr, "the reply in pieces differs at byte %zu of %zu: "
                    "...%.60s\nexpected ...%.60s\n", k, strlen(line),
                    line + (k > 20 ? k - 20 : 0), want + (k > 20 ? k - 20 : 0));
            exit(1);
        }
        free(want);
        free(line);
    }
    client_t *h = tcp_open();
    l = tei_request("/embed_all", 3, 120, LEN);
    CHECK_EQ(cl_send(h, l, strlen(l)), 0);
    free(l);
    CHECK_EQ(http_read(h, &body, &len), 200);
    str_t want = {0};
    str_puts(&want, "[");
    for (int i = 0; i < 120; i++) {
        char *one, *t = text_of(i, 3, LEN); /* text i alone */
        size_t one_len;
        char b[LEN + 64], hd[256];
        int bn = snprintf(b, sizeof b, "{\"truncate\":true,\"inputs\":[\"%s\"]}", t);
        snprintf(hd, sizeof hd, "POST /embed_all HTTP/1.1\r\nHost: x\r\n"
                 "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n",
                 bn);
        cl_sendz(h, hd);
        cl_sendz(h, b);
        free(t);
        CHECK_EQ(http_read(h, &one, &one_len), 200);
        CHECK(one_len > 2);
        if (i)
            str_puts(&want, ",");
        str_put(&want, one + 1, one_len - 2);
        free(one);
    }
    str_puts(&want, "]");
    CHECK_EQ(len, want.len);
    CHECK(!memcmp(body, want.s, len));
    free(want.s);
    free(body);
    cl_close(h);
    cl_close(other);
    CHECK_EQ(daemon_stop(pid), 0);
}

/* POST body_in to a REST endpoint: the response's body is the socket's
 * reply line from `fields` on (its fields, less id and ok), as an object. */
static void rest_same(client_t *h, const char *path, const char *body_in,
                      const char *fields)
{
    char hd[256], *body;
    size_t len;
    snprintf(hd, sizeof hd, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: "
             "application/json\r\nContent-Length: %zu\r\n\r\n", path,
             strlen(body_in));
    cl_sendz(h, hd);
    cl_sendz(h, body_in);
    CHECK_EQ(http_read(h, &body, &len), 200);
    CHECK(fields != NULL);
    CHECK_EQ(len, strlen(fields) + 1);
    CHECK(body[0] == '{' && !memcmp(body + 1, fields, len - 1));
    free(body);
}

/* A get of n ids of collection g: mostly the big document, some the small
 * one, some missing. */
static char *get_line(int id, int n)
{
    str_t s = {0};
    char head[96];
    snprintf(head, sizeof head, "{\"id\":%d,\"op\":\"get\",\"collection\":"
             "\"g\",\"ids\":[", id);
    str_puts(&s, head);
    for (int i = 0; i < n; i++) {
        str_puts(&s, i ? "," : "");
        str_puts(&s, i % 5 == 1 ? "\"small\"" : i % 7 == 3 ? "\"gone\""
                                                            : "\"big\"");
    }
    str_puts(&s, "]}\n");
    return s.s;
}

/* A get of several ids goes in pieces too: one that would be 30 MB, sent
 * four times and never read, costs a few MiB (built whole: 30 MB each);
 * byte for byte it is the reply put together from each id's own; a
 * client that leaves in the middle of one frees its connection (the
 * daemon still stops cleanly) and holds up no one. */
static void test_big_gets(void)
{
    enum { DOC = 150000, N_IDS = 300, N_HOG = 4, LIMIT_KB = 8 * 1024 };
    pid_t pid = daemon_start("--http", http_addr(), NULL);
    client_t *other = cl_open();
    str_t add = {0};
    str_puts(&add, "{\"op\":\"add\",\"collection\":\"g\",\"docs\":[{\"id\":"
                   "\"small\",\"text\":\"a small one\",\"meta\":{\"k\":1}},"
                   "{\"id\":\"big\",\"text\":\"");
    while (add.len < DOC)
        str_puts(&add, "lorem ipsum dolor sit amet, consectetur. ");
    str_puts(&add, "\"}]}\n");
    json_decref(call(other, add.s));
    free(add.s);

    /* byte for byte, and the warm-up */
    char *l = get_line(9, N_IDS), *line;
    cl_sendz(other, l);
    free(l);
    CHECK((line = cl_line(other)) != NULL);
    str_t want = {0};
    str_puts(&want, "{\"id\":9,\"ok\":true,\"docs\":[");
    int n_docs = 0;
    for (int i = 0; i < N_IDS; i++) {
        const char *idv = i % 5 == 1 ? "small" : i % 7 == 3 ? "gone" : "big";
        char one[128];
        snprintf(one, sizeof one, "{\"op\":\"get\",\"collection\":\"g\","
                 "\"ids\":[\"%s\"]}\n", idv);
        cl_sendz(other, one);
        char *r1 = cl_line(other);
        CHECK(r1 != NULL);
        const char *a = strstr(r1, "\"docs\":[") + 8;
        size_t n = strlen(a) - 2; /* less "]}" */
        if (n) {
            if (n_docs++)
                str_puts(&want, ",");
            str_put(&want, a, n);
        }
        free(r1);
    }
    str_puts(&want, "]}");
    CHECK(want.len > 20u << 20);
    CHECK_EQ(strlen(line), want.len);
    CHECK(!strcmp(line, want.s));
    free(line);

    /* HTTP: the REST get, chunked */
    client_t *h = tcp_open();
    l = get_line(0, N_IDS);
    char *body_in = strstr(l, "\"ids\"");
    body_in[-1] = '{';
    body_in[strlen(body_in) - 1] = '\0'; /* no newline */
    rest_same(h, "/v1/collections/g/get", body_in - 1,
              strstr(want.s, "\"docs\""));
    free(l);
    free(want.s);

    /* a client that never reads */
    long base = status_kb(pid, "VmRSS:");
    client_t *hog = cl_open();
    for (int i = 0; i < N_HOG; i++) {
        l = get_line(i, N_IDS);
        CHECK_EQ(send_some(hog, l, strlen(l)), strlen(l));
        free(l);
    }
    queue_idle(other, "storage");
    long grew = status_kb(pid, "VmHWM:") - base;
    printf(" [%d unread gets of %d ids (%zu MB each): peak +%ld KB]", N_HOG,
           N_IDS, want.len >> 20, grew);
    CHECK(RSS_MEANS_NOTHING || grew < LIMIT_KB);
    /* it leaves in the middle: others go on, the daemon stops cleanly */
    cl_close(hog);
    cl_close(h);
    usleep(200000);
    json_decref(call(other, "{\"op\":\"get\",\"collection\":\"g\",\"ids\":"
                            "[\"small\",\"big\"]}\n"));
    json_decref(call(other, "{\"op\":\"delete\",\"collection\":\"g\",\"ids\":"
                            "[\"small\"]}\n"));
    cl_close(other);
    CHECK_EQ(daemon_stop(pid), 0);
}

/* Add n documents to collection `coll`, `per` at a time: doc j has id
 * "dJ", a short text of its own and meta {"n": j, "pad": PAD bytes}. */
static void add_padded(client_t *c, const char *coll, int n, int per,
                       size_t pad)
{
    char *padding = malloc(pad + 1);
    CHECK(padding != NULL);
    for (size_t i = 0; i < pad; i++)
        padding[i] = "abcdefghij klmnop"[i % 17];
    padding[pad] = '\0';
    for (int j0 = 0; j0 < n; j0 += per) {
        str_t add = {0};
        char head[128];
        snprintf(head, sizeof head, "{\"op\":\"add\",\"collection\":\"%s\","
                 "\"docs\":[", coll);
        str_puts(&add, head);
        for (int j = j0; j < j0 + per && j < n; j++) {
            char doc[160];
            snprintf(doc, sizeof doc, "%s{\"id\":\"d%d\",\"text\":\"note %d "
                     "on thing %d and word %d\",\"meta\":{\"n\":%d,\"pad\":\"",
                     j > j0 ? "," : "", j, j, j % 7, j % 11, j);
            str_puts(&add, doc);
            str_puts(&add, padding);
            str_puts(&add, "\"}}");
        }
        str_puts(&add, "]}\n");
        json_t *r = call(c, add.s);
        CHECK(json_is_true(json_object_get(r, "ok")));
        json_decref(r);
        free(add.s);
    }
    free(padding);
}

/* A search's hits go in pieces too, each hit's text and meta read as its
 * row is written: four searches of k = 1000 whose replies are ~20 MB each
 * (documents with 100 KB of meta), sent and never read, cost a few MiB
 * (built whole: the hits' meta twice over and the reply, ~60 MB each);
 * byte for byte a reply in pieces is the one put together from each
 * hit's own reply (a search filtered to that document, built whole), on
 * the socket and over HTTP (chunked). */
static void test_big_searches(void)
{
    enum { N_BIG = 200, N_ID = 100, N_HOG = 4, LIMIT_KB = 8 * 1024 };
    static const char q[] = "\"query\":\"a note on a thing\",\"mode\":\"vector\"";
    pid_t pid = daemon_start("--http", http_addr(), NULL);
    client_t *other = cl_open();
    char l[512];
    add_padded(other, "big", N_BIG, 25, 100000);
    add_padded(other, "s", N_ID, 50, 10000);

    /* byte for byte: 100 hits of ~10 KB (1 MB: four pieces) */
    snprintf(l, sizeof l, "{\"id\":5,\"op\":\"search\",\"collection\":\"s\","
             "%s,\"k\":1000}\n", q);
    cl_sendz(other, l);
    char *line = cl_line(other);
    CHECK(line != NULL);
    if (strlen(line) < 3 * (256u << 10)) { /* four pieces */
        fprintf(stderr, "%.300s (%zu bytes)\n", line, strlen(line));
        exit(1);
    }
    json_t *all = json_loads(line, 0, NULL);
    json_t *res = json_object_get(all, "results");
    CHECK_EQ(json_array_size(res), N_ID);
    str_t want = {0};
    for (size_t i = 0; i < json_array_size(res); i++) {
        int n = (int)json_integer_value(
            json_object_get(json_object_get(json_array_get(res, i), "meta"),
                            "n"));
        snprintf(l, sizeof l, "{\"id\":5,\"op\":\"search\",\"collection\":"
                 "\"s\",%s,\"k\":1,\"filter\":{\"n\":%d}}\n", q, n);
        cl_sendz(other, l);
        char *one = cl_line(other);
        CHECK(one != NULL);
        const char *a = strstr(one, "\"results\":[") + 11;
        const char *b = strstr(a, "}],\"n_tokens\":");
        CHECK(b != NULL);
        if (i == 0)
            str_put(&want, one, (size_t)(a - one)); /* the head */
        else
            str_puts(&want, ",");
        str_put(&want, a, (size_t)(b + 1 - a));
        if (i + 1 == json_array_size(res))
            str_puts(&want, b + 1); /* the tail */
        free(one);
    }
    json_decref(all);
    if (strcmp(line, want.s)) {
        size_t k = 0;
        while (line[k] == want.s[k])
            k++;
        fprintf(stderr, "the search reply in pieces differs at byte %zu of "
                "%zu: ...%.60s\nexpected ...%.60s\n", k, strlen(line),
                line + (k > 20 ? k - 20 : 0), want.s + (k > 20 ? k - 20 : 0));
        exit(1);
    }
    free(line);

    /* HTTP: the REST search, chunked: the same fields */
    client_t *h = tcp_open();
    char body_in[256];
    snprintf(body_in, sizeof body_in, "{%s,\"k\":1000}", q);
    rest_same(h, "/v1/collections/s/search", body_in,
              strstr(want.s, "\"mode\""));
    free(want.s);
    cl_close(h);

    /* a client that never reads: four searches of k = 1000 over 200
     * documents with 100 KB of meta */
    snprintf(l, sizeof l, "{\"op\":\"search\",\"collection\":\"big\",%s,"
             "\"k\":1000}\n", q);
    json_decref(call(other, l)); /* warm-up, read */
    long base = status_kb(pid, "VmRSS:");
    client_t *hog = cl_open();
    for (int i = 0; i < N_HOG; i++)
        CHECK_EQ(send_some(hog, l, strlen(l)), strlen(l));
    queue_idle(other, "storage");
    usleep(300000);
    long grew = status_kb(pid, "VmHWM:") - base;
    printf(" [%d unread searches of k = 1000 (~%d MB each): peak +%ld KB]",
           N_HOG, N_BIG / 10, grew);
    CHECK(RSS_MEANS_NOTHING || grew < LIMIT_KB);
    line = cl_line(hog); /* and they come when it reads */
    CHECK(line != NULL);
    CHECK(strlen(line) > (size_t)N_BIG * 100000);
    static const char head[] = "{\"id\":null,\"ok\":true,\"mode\":\"vector\"";
    CHECK(!strncmp(line, head, sizeof head - 1));
    free(line);
    cl_close(hog);
    cl_close(other);
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

    /* many damaged: the check's list goes in pieces (~1 MB), read a page
     * at a time, byte for byte the list of them in chunk order */
    enum { N_MANY = 3000, ID_LEN = 300 };
    char id[ID_LEN + 96];
    pid = daemon_start(NULL);
    c = cl_open();
    for (int j0 = 0; j0 < N_MANY; j0 += 1000) {
        str_t add = {0};
        str_puts(&add, "{\"op\":\"add\",\"collection\":\"many\",\"docs\":[");
        for (int j = j0; j < j0 + 1000; j++) {
            snprintf(id, sizeof id, "%s{\"id\":\"%0*d\",\"text\":\"doc\"}",
                     j > j0 ? "," : "", ID_LEN, j);
            str_puts(&add, id);
        }
        str_puts(&add, "]}\n");
        json_decref(call(c, add.s));
        free(add.s);
    }
    cl_close(c);
    CHECK_EQ(daemon_stop(pid), 0);
    CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "UPDATE chunks SET vector = x'00' WHERE "
                           "collection = (SELECT id FROM collections WHERE "
                           "name = 'many')", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_EQ(sqlite3_changes(db), N_MANY);
    CHECK(sqlite3_close(db) == SQLITE_OK);
    pid = daemon_start(NULL);
    c = cl_open();
    cl_sendz(c, "{\"op\":\"check\",\"collection\":\"many\",\"limit\":"
                "100000}\n");
    char *line = cl_line(c);
    CHECK(line != NULL);
    CHECK(strlen(line) > 3 * (256u << 10));
    r = json_loads(line, 0, NULL);
    CHECK_EQ(json_integer_value(json_object_get(r, "damaged")), N_MANY);
    const char *problem = json_string_value(json_object_get(
        json_array_get(json_object_get(r, "chunks"), 0), "problem"));
    CHECK(problem != NULL);
    str_t want = {0};
    str_puts(&want, "{\"id\":null,\"ok\":true,\"checked\":3000,"
                    "\"damaged\":3000,\"chunks\":[");
    for (int j = 0; j < N_MANY; j++) {
        snprintf(id, sizeof id, "%s{\"collection\":\"many\",\"id\":\"%0*d\","
                 "\"chunk\":0,\"problem\":\"", j ? "," : "", ID_LEN, j);
        str_puts(&want, id);
        str_puts(&want, problem);
        str_puts(&want, "\"}");
    }
    str_puts(&want, "]}");
    json_decref(r);
    CHECK_EQ(strlen(line), want.len);
    CHECK(!strcmp(line, want.s));
    free(want.s);
    free(line);
    /* a limit stops the list, not the count */
    r = call(c, "{\"op\":\"check\",\"collection\":\"many\",\"limit\":100}\n");
    CHECK_EQ(json_integer_value(json_object_get(r, "damaged")), N_MANY);
    CHECK_EQ(json_array_size(json_object_get(r, "chunks")), 100);
    json_decref(r);
    cl_close(c);
    CHECK_EQ(daemon_stop(pid), 0);
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
    RUN("replies over the budget:", test_big_replies);
    RUN("gets over the budget:", test_big_gets);
    RUN("searches over the budget:", test_big_searches);
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
