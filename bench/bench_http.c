/*
 * bench_http.c -- one short text through sensed's two transports, in the
 * same run: the Unix socket (`embed`, NDJSON) against HTTP keep-alive
 * (`POST /v1/embeddings`, the OpenAI shape, float and base64, and TEI's
 * `POST /embed`).
 *
 * It starts the real sensed (next to this program, or --sensed PATH) with
 * --http on a loopback port, on a socket and database in a mkdtemp folder,
 * and, for 1 and --clients N concurrent clients (each its own connection,
 * one request in flight), runs --rounds rounds; each round sends --reqs
 * requests per client through every transport in turn, so that all of
 * them see the same machine load. Reported per transport: requests/s
 * (all rounds), p50 and p99 latency (every request), and the ratio to the
 * socket's requests/s. The replies are checked (status, the vector's
 * length) but not parsed further.
 *
 * Usage: bench_http [--sensed PATH] [--model PATH|default] [--text T]
 *                   [--rounds R] [--reqs N] [--clients N] [--threads N]
 * Defaults: the default model, "The quick brown fox jumps over the lazy
 * dog.", 5 rounds of 200 requests, 8 clients, the daemon's one encoder
 * worker. Run on a quiet machine; note the load (uptime) beside the
 * figures.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 64

enum { T_SOCKET, T_OPENAI, T_OPENAI_B64, T_TEI, N_TRANSPORTS };
static const char *const t_names[] = {"unix socket, embed",
                                      "http, /v1/embeddings float",
                                      "http, /v1/embeddings base64",
                                      "http, /embed (TEI)"};

static char tmp[64], sock_path[108], db_path[128], log_path[128];
static int http_port;
static const char *text = "The quick brown fox jumps over the lazy dog.";
static char model_id[512];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *msg)
{
    fprintf(stderr, "bench_http: %s (%s)\n", msg, strerror(errno));
    FILE *f = fopen(log_path, "r");
    if (f) {
        char line[512];
        fprintf(stderr, "--- sensed log\n");
        while (fgets(line, sizeof line, f))
            fputs(line, stderr);
        fclose(f);
    }
    exit(1);
}

static int connect_unix(void)
{
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static int connect_tcp(void)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)http_port);
    sa.sin_addr.s_addr = htonl(0x7f000001);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void write_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("write");
        p += n;
        len -= (size_t)n;
    }
}

/* A connection's receive buffer. */
typedef struct {
    int fd;
    char *buf;
    size_t len, cap;
} conn_t;

static void fill(conn_t *c)
{
    if (c->cap - c->len < 65536) {
        c->cap = c->cap ? c->cap * 2 : 1 << 17;
        c->buf = realloc(c->buf, c->cap);
        if (!c->buf)
            die("out of memory");
    }
    ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len - 1);
    if (n <= 0)
        die("read: the daemon closed the connection");
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
}

static void consume(conn_t *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* One reply line; it must say ok. */
static void read_line(conn_t *c)
{
    char *nl;
    while (!c->len || !(nl = memchr(c->buf, '\n', c->len)))
        fill(c);
    if (!strstr(c->buf, "\"ok\":true"))
        die("error reply on the socket");
    consume(c, (size_t)(nl - c->buf) + 1);
}

/* One HTTP response; it must be 200. */
static void read_response(conn_t *c)
{
    char *end;
    while (!c->len || !(end = strstr(c->buf, "\r\n\r\n")))
        fill(c);
    if (strncmp(c->buf, "HTTP/1.1 200", 12))
        die("HTTP response not 200");
    char *cl = strstr(c->buf, "Content-Length: ");
    if (!cl || cl > end)
        die("no Content-Length");
    size_t total = (size_t)(end - c->buf) + 4 + strtoul(cl + 16, NULL, 10);
    while (c->len < total)
        fill(c);
    consume(c, total);
}

static char reqs[N_TRANSPORTS][2048];
static size_t req_len[N_TRANSPORTS];

static void make_requests(void)
{
    char body[1024];
    int n;
    req_len[T_SOCKET] = (size_t)snprintf(
        reqs[T_SOCKET], sizeof reqs[0],
        "{\"op\":\"embed\",\"texts\":[\"%s\"]}\n", text);
    for (int t = T_OPENAI; t < N_TRANSPORTS; t++) {
        if (t == T_TEI)
            n = snprintf(body, sizeof body, "{\"inputs\":\"%s\"}", text);
        else
            n = snprintf(body, sizeof body, "{\"model\":\"%s\",\"input\":"
                         "\"%s\"%s}", model_id, text,
                         t == T_OPENAI_B64 ? ",\"encoding_format\":\"base64\""
                                           : "");
        req_len[t] = (size_t)snprintf(
            reqs[t], sizeof reqs[0],
            "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
            "application/json\r\nContent-Length: %d\r\n\r\n%s",
            t == T_TEI ? "/embed" : "/v1/embeddings", n, body);
    }
}

typedef struct {
    int transport;
    int n_reqs;
    double *lat; /* n_reqs */
    pthread_barrier_t *start;
    conn_t conn;
} client_t;

static void *client_main(void *arg)
{
    client_t *cl = arg;
    int t = cl->transport;
    pthread_barrier_wait(cl->start);
    for (int i = 0; i < cl->n_reqs; i++) {
        double t0 = now();
        write_all(cl->conn.fd, reqs[t], req_len[t]);
        if (t == T_SOCKET)
            read_line(&cl->conn);
        else
            read_response(&cl->conn);
        cl->lat[i] = now() - t0;
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* rounds x (every transport: reqs per client on n_clients connections);
 * quiet: a warm-up, not printed. */
static void run(int n_clients, int rounds, int n_reqs, int quiet)
{
    double secs[N_TRANSPORTS] = {0};
    double *lat[N_TRANSPORTS];
    size_t n_lat = (size_t)rounds * (size_t)n_clients * (size_t)n_reqs;
    client_t cl[MAX_CLIENTS];
    pthread_t th[MAX_CLIENTS];
    pthread_barrier_t start;

    for (int t = 0; t < N_TRANSPORTS; t++)
        if (!(lat[t] = calloc(n_lat, sizeof **lat)))
            die("out of memory");
    /* connections stay open for the whole run: keep-alive */
    conn_t conns[N_TRANSPORTS][MAX_CLIENTS];
    memset(conns, 0, sizeof conns);
    for (int t = 0; t < N_TRANSPORTS; t++)
        for (int k = 0; k < n_clients; k++)
            if ((conns[t][k].fd = t == T_SOCKET ? connect_unix()
                                                : connect_tcp()) < 0)
                die("connect");
    for (int r = 0; r < rounds; r++)
        for (int t = 0; t < N_TRANSPORTS; t++) {
            pthread_barrier_init(&start, NULL, (unsigned)n_clients + 1);
            for (int k = 0; k < n_clients; k++) {
                cl[k] = (client_t){t, n_reqs,
                                   lat[t] + ((size_t)r * n_clients + k) *
                                                n_reqs,
                                   &start, conns[t][k]};
                pthread_create(&th[k], NULL, client_main, &cl[k]);
            }
            pthread_barrier_wait(&start);
            double t0 = now();
            for (int k = 0; k < n_clients; k++) {
                pthread_join(th[k], NULL);
                conns[t][k] = cl[k].conn; /* its buffer may have grown */
            }
            secs[t] += now() - t0;
            pthread_barrier_destroy(&start);
        }
    if (quiet)
        goto out;
    printf("\n%d client%s (each one connection, one request in flight), "
           "%d rounds x %d requests each:\n\n", n_clients,
           n_clients > 1 ? "s" : "", rounds, n_reqs);
    printf("| transport | requests/s | p50 | p99 | socket / this |\n");
    printf("|---|---:|---:|---:|---:|\n");
    double base = (double)n_lat / secs[T_SOCKET];
    for (int t = 0; t < N_TRANSPORTS; t++) {
        qsort(lat[t], n_lat, sizeof *lat[t], cmp_double);
        double rps = (double)n_lat / secs[t];
        printf("| %s | %.0f | %.3f ms | %.3f ms | %.2fx |\n", t_names[t],
               rps, lat[t][n_lat / 2] * 1e3,
               lat[t][(size_t)((double)n_lat * 0.99)] * 1e3, base / rps);
    }
out:
    for (int t = 0; t < N_TRANSPORTS; t++)
        free(lat[t]);
    for (int t = 0; t < N_TRANSPORTS; t++)
        for (int k = 0; k < n_clients; k++) {
            close(conns[t][k].fd);
            free(conns[t][k].buf);
        }
}

int main(int argc, char **argv)
{
    const char *sensed = NULL, *model = "default", *threads = NULL;
    int rounds = 5, n_reqs = 200, n_clients = 8;
    char self_dir[4096], sensed_buf[4200], addr[64];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--sensed") && v) sensed = v, i++;
        else if (!strcmp(a, "--model") && v) model = v, i++;
        else if (!strcmp(a, "--text") && v) text = v, i++;
        else if (!strcmp(a, "--rounds") && v) rounds = atoi(v), i++;
        else if (!strcmp(a, "--reqs") && v) n_reqs = atoi(v), i++;
        else if (!strcmp(a, "--clients") && v) n_clients = atoi(v), i++;
        else if (!strcmp(a, "--threads") && v) threads = v, i++;
        else {
            fprintf(stderr, "usage: bench_http [--sensed PATH] [--model "
                    "PATH|default] [--text T] [--rounds R] [--reqs N] "
                    "[--clients N] [--threads N]\n");
            return 2;
        }
    }
    if (rounds < 1 || n_reqs < 1 || n_clients < 1 ||
        n_clients > MAX_CLIENTS || strpbrk(text, "\"\\\n")) {
        fprintf(stderr, "bench_http: bad arguments\n");
        return 2;
    }
    if (!sensed) {
        ssize_t n = readlink("/proc/self/exe", self_dir, sizeof self_dir - 1);
        if (n < 0)
            die("readlink /proc/self/exe");
        self_dir[n] = '\0';
        *strrchr(self_dir, '/') = '\0';
        snprintf(sensed_buf, sizeof sensed_buf, "%s/sensed", self_dir);
        sensed = sensed_buf;
    }
    snprintf(tmp, sizeof tmp, "/tmp/bench_http.XXXXXX");
    if (!mkdtemp(tmp))
        die("mkdtemp");
    snprintf(sock_path, sizeof sock_path, "%s/s.sock", tmp);
    snprintf(db_path, sizeof db_path, "%s/db", tmp);
    snprintf(log_path, sizeof log_path, "%s/log", tmp);
    srand((unsigned)getpid());
    http_port = 20000 + rand() % 40000;
    snprintf(addr, sizeof addr, "127.0.0.1:%d", http_port);

    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 2);
        dup2(fd, 1);
        const char *av[16] = {sensed, "--socket", sock_path, "--db", db_path,
                              "--model", model, "--http", addr};
        int n = 9;
        if (threads)
            av[n++] = "--threads", av[n++] = threads;
        av[n] = NULL;
        execv(sensed, (char *const *)av);
        _exit(127);
    }
    double t0 = now();
    int fd = -1;
    while ((fd = connect_unix()) < 0 || connect_tcp() < 0) {
        if (fd >= 0)
            close(fd), fd = -1;
        if (waitpid(pid, NULL, WNOHANG) == pid || now() - t0 > 120)
            die("sensed did not start");
        usleep(20000);
    }
    /* the model id, from stats */
    conn_t c = {fd, NULL, 0, 0};
    write_all(fd, "{\"op\":\"stats\"}\n", 15);
    char *nl;
    while (!c.len || !(nl = memchr(c.buf, '\n', c.len)))
        fill(&c);
    char *m = strstr(c.buf, "\"model_id\":\"");
    if (!m)
        die("no model_id in stats");
    m += 12;
    size_t ml = strcspn(m, "\"");
    snprintf(model_id, sizeof model_id, "%.*s", (int)ml, m);
    close(fd);
    free(c.buf);
    make_requests();

    printf("bench_http: sensed --model %s (%s), one text: \"%s\"\n", model,
           model_id, text);
    run(1, 1, 20, 1); /* warm up */
    run(1, rounds, n_reqs, 0);
    if (n_clients > 1)
        run(n_clients, rounds, n_reqs / 4 > 0 ? n_reqs / 4 : 1, 0);

    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    unlink(sock_path);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd))
        fprintf(stderr, "bench_http: could not remove '%s'\n", tmp);
    return 0;
}
