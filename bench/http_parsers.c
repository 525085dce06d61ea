/*
 * http_parsers.c -- the measurement behind daemon/http.c's choice of
 * HTTP/1.1 parser: Debian's libhttp-parser (nodejs' http_parser 2.9)
 * against the picohttpparser inside Debian's libh2o (h2o 2.2), on the
 * request the OpenAI Node SDK sends for one short text, parsed whole,
 * then fed in 1-byte pieces (a slow client), then chunked.
 *
 * Not built by CMake (libh2o is not a dependency of sense; Debian ships
 * picohttpparser's symbols in libh2o but not its header, so the two
 * declarations below are written from picohttpparser's documented API):
 *
 *   apt-get install libhttp-parser-dev libh2o-dev
 *   cc -O2 bench/http_parsers.c -o /tmp/http_parsers -lhttp_parser -lh2o
 *   /tmp/http_parsers
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <http_parser.h>

struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};
int phr_parse_request(const char *buf, size_t len, const char **method,
                      size_t *method_len, const char **path,
                      size_t *path_len, int *minor_version,
                      struct phr_header *headers, size_t *num_headers,
                      size_t last_len);

static const char req[] =
    "POST /v1/embeddings HTTP/1.1\r\n"
    "accept: application/json\r\n"
    "content-type: application/json\r\n"
    "user-agent: OpenAI/JS 4.104.0\r\n"
    "x-stainless-lang: js\r\n"
    "x-stainless-package-version: 4.104.0\r\n"
    "x-stainless-os: Linux\r\n"
    "x-stainless-arch: x64\r\n"
    "x-stainless-runtime: node\r\n"
    "x-stainless-runtime-version: v20.19.2\r\n"
    "authorization: Bearer sk-0123456789abcdef0123456789abcdef\r\n"
    "x-stainless-retry-count: 0\r\n"
    "x-stainless-timeout: 600\r\n"
    "content-length: 79\r\n"
    "Host: 127.0.0.1:8080\r\n"
    "Connection: keep-alive\r\n"
    "\r\n"
    "{\"model\":\"sentence-transformers/all-MiniLM-L6-v2\",\"input\":\"hello world\","
    "\"encoding_format\":\"base64\"}";

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int n_hdr, done;
static int on_hf(http_parser *p, const char *a, size_t n)
{
    (void)p, (void)a, (void)n;
    n_hdr++;
    return 0;
}
static int on_done(http_parser *p)
{
    (void)p;
    done = 1;
    return 0;
}

int main(void)
{
    const int N = 1000000;
    size_t len = sizeof req - 1;
    http_parser_settings st;
    http_parser p;
    double t;

    memset(&st, 0, sizeof st);
    st.on_header_field = on_hf;
    st.on_message_complete = on_done;

    t = now();
    for (int i = 0; i < N; i++) {
        http_parser_init(&p, HTTP_REQUEST);
        done = 0;
        http_parser_execute(&p, &st, req, len);
        if (!done)
            return 1;
    }
    double hp = (now() - t) / N * 1e9;

    t = now();
    for (int i = 0; i < N / 100; i++) {
        http_parser_init(&p, HTTP_REQUEST);
        done = 0;
        for (size_t k = 0; k < len; k++)
            http_parser_execute(&p, &st, req + k, 1);
        if (!done)
            return 1;
    }
    double hp1 = (now() - t) / (N / 100) * 1e9;

    const char *m, *path;
    size_t ml, pl, nh;
    int minor;
    struct phr_header h[64];
    t = now();
    for (int i = 0; i < N; i++) {
        nh = 64;
        if (phr_parse_request(req, len, &m, &ml, &path, &pl, &minor, h, &nh,
                              0) <= 0)
            return 1;
    }
    double pico = (now() - t) / N * 1e9;

    /* byte by byte: picohttpparser re-parses from the start each time
     * (last_len only skips the search for the end of the headers) */
    t = now();
    for (int i = 0; i < N / 100; i++) {
        int rc = -2;
        for (size_t k = 1; k <= len && rc == -2; k++) {
            nh = 64;
            rc = phr_parse_request(req, k, &m, &ml, &path, &pl, &minor, h,
                                   &nh, k - 1);
        }
        if (rc <= 0)
            return 1;
    }
    double pico1 = (now() - t) / (N / 100) * 1e9;

    /* the same, with 16 KB more headers (64 x 256 bytes), fed in 64-byte
     * pieces: a slow client near the header limit */
    static char big[32768];
    size_t hl = (size_t)(strstr(req, "\r\n\r\n") - req) + 2, bl = 0;
    memcpy(big, req, hl);
    bl = hl;
    for (int i = 0; i < 64; i++) {
        bl += (size_t)snprintf(big + bl, sizeof big - bl, "x-pad-%02d: ", i);
        memset(big + bl, 'a', 244);
        bl += 244;
        memcpy(big + bl, "\r\n", 2);
        bl += 2;
    }
    memcpy(big + bl, req + hl, len - hl);
    bl += len - hl;
    const int M = 2000;
    t = now();
    for (int i = 0; i < M; i++) {
        http_parser_init(&p, HTTP_REQUEST);
        done = 0;
        for (size_t k = 0; k < bl; k += 64)
            http_parser_execute(&p, &st, big + k, bl - k < 64 ? bl - k : 64);
        if (!done)
            return 1;
    }
    double hpb = (now() - t) / M * 1e9;
    t = now();
    for (int i = 0; i < M; i++) {
        int rc = -2;
        size_t k = 0;
        while (rc == -2 && k < bl) {
            size_t last = k;
            k = k + 64 < bl ? k + 64 : bl;
            nh = 128;
            struct phr_header hb[128];
            rc = phr_parse_request(big, k, &m, &ml, &path, &pl, &minor, hb,
                                   &nh, last);
        }
        if (rc <= 0)
            return 1;
    }
    double picob = (now() - t) / M * 1e9;

    printf("request: %zu bytes, 16 headers\n", len);
    printf("http_parser 2.9 (libhttp-parser): whole %.0f ns, byte by byte "
           "%.0f ns\n", hp, hp1);
    printf("picohttpparser (libh2o 2.2):      whole %.0f ns, byte by byte "
           "%.0f ns (headers only; the body is the caller's)\n", pico,
           pico1);
    printf("with 16 KB more headers, in 64-byte pieces (%zu bytes): "
           "http_parser %.0f ns, picohttpparser %.0f ns\n", bl, hpb, picob);
    return 0;
}
