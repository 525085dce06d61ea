/*
 * hub.c -- HTTP for `sense pull`, with libcurl: a small GET into memory (the
 * hub's JSON API) and a file download that resumes, retries a dropped
 * connection, gives up on a stalled one, and draws a progress bar on a
 * terminal. Plus the sha256 of a file (OpenSSL's libcrypto).
 *
 * Resuming: a download into PATH appends to what PATH already holds, asking
 * for the rest with "Range: bytes=N-". A server that answers 200 instead of
 * 206 sends the whole file, so PATH is truncated first; 416 (nothing past N)
 * means PATH is already whole when its size is the expected one. Errors
 * (4xx, 5xx) never touch PATH: their bodies go to a small buffer for the
 * message.
 *
 * Redirects are followed (the hub sends large files to a CDN); libcurl
 * drops our Authorization header when a redirect leaves the host, so a
 * token is never sent to the CDN.
 *
 * A stall is a transfer slower than 1 byte/s for `stall_s` seconds
 * (CURLOPT_LOW_SPEED_*); it fails with a clear error and leaves PATH for a
 * later resume. Only broken connections are retried (SN_HUB_RETRIES times),
 * each retry resuming where the last one stopped.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "hub.h"

#define SN_HUB_RETRIES 4          /* retries of a dropped connection */
#define SN_HUB_ERR_BODY 512       /* bytes of an error body kept */
#define SN_HUB_MAX_REDIRS 10

static int err_set(char *err, size_t err_len, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int err_set(char *err, size_t err_len, int code, const char *fmt, ...)
{
    va_list ap;
    if (err && err_len) {
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return code;
}

int sn_hub_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void sn_hub_cleanup(void)
{
    curl_global_cleanup();
}

/* A handle with the options every request shares. */
static CURL *easy_new(const sn_hub_t *h, struct curl_slist **hdrs,
                      char *curl_err)
{
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, (long)SN_HUB_MAX_REDIRS);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, h->stall_s > 0 ? h->stall_s
                                                               : 30L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, h->stall_s > 0 ? h->stall_s
                                                               : 30L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "sense/" SN_HUB_VERSION);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    curl_err[0] = '\0';
    *hdrs = NULL;
    if (h->token && *h->token) {
        char auth[4096];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", h->token);
        *hdrs = curl_slist_append(NULL, auth);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdrs);
    }
    return c;
}

/* The reason a transfer failed, for a person. */
static int curl_failure(CURLcode rc, const char *curl_err, const char *url,
                        long stall_s, char *err, size_t err_len)
{
    const char *why = curl_err[0] ? curl_err : curl_easy_strerror(rc);
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return err_set(err, err_len, SN_HUB_ESTALL,
                       "'%s': stalled: no data for %ld s (%s)", url,
                       stall_s > 0 ? stall_s : 30L, why);
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        return err_set(err, err_len, SN_HUB_ENET,
                       "cannot reach '%s': %s (is the network up? is "
                       "HF_ENDPOINT right?)",
                       url, why);
    case CURLE_TOO_MANY_REDIRECTS:
        return err_set(err, err_len, SN_HUB_EHTTP, "'%s': too many redirects",
                       url);
    default:
        return err_set(err, err_len, SN_HUB_ENET, "'%s': %s", url, why);
    }
}

/* An HTTP error status as a message. */
static int http_failure(long status, const char *url, const char *body,
                        char *err, size_t err_len)
{
    const char *hint = "";
    int code = SN_HUB_EHTTP;
    if (status == 401) {
        hint = ": not authorized (a private or gated repository? set HF_TOKEN "
               "to a token that can read it)";
        code = SN_HUB_EAUTH;
    } else if (status == 403) {
        hint = ": forbidden (a gated repository? accept its terms on the hub, "
               "and set HF_TOKEN)";
        code = SN_HUB_EAUTH;
    } else if (status == 404) {
        hint = ": not found";
        code = SN_HUB_ENOTFOUND;
    } else if (status == 429) {
        hint = ": too many requests; try again later";
    } else if (status >= 500) {
        hint = ": the server failed; try again later";
    }
    /* the hub explains itself in {"error": "..."} or an X-Error-Message;
     * show the first line of a short body */
    char line[160] = "";
    if (body && *body) {
        size_t n = strcspn(body, "\r\n");
        if (n >= sizeof line)
            n = sizeof line - 1;
        memcpy(line, body, n);
        line[n] = '\0';
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)line[i] < 0x20)
                line[i] = ' ';
    }
    return err_set(err, err_len, code, "'%s': HTTP %ld%s%s%s%s", url, status,
                   hint, line[0] ? " (" : "", line, line[0] ? ")" : "");
}

/* ---- GET into memory ------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t len, cap, max;
    int over;
} membuf_t;

static size_t mem_write(char *p, size_t sz, size_t n, void *arg)
{
    membuf_t *m = arg;
    size_t k = sz * n;
    if (m->len + k > m->max) {
        m->over = 1;
        return 0; /* aborts the transfer */
    }
    if (m->len + k + 1 > m->cap) {
        size_t c = m->cap ? m->cap * 2 : 16384;
        while (c < m->len + k + 1)
            c *= 2;
        char *q = realloc(m->buf, c);
        if (!q)
            return 0;
        m->buf = q;
        m->cap = c;
    }
    memcpy(m->buf + m->len, p, k);
    m->len += k;
    m->buf[m->len] = '\0';
    return k;
}

int sn_hub_get(const sn_hub_t *h, const char *url, size_t max, char **body,
               size_t *len, char *err, size_t err_len)
{
    char curl_err[CURL_ERROR_SIZE];
    struct curl_slist *hdrs;
    membuf_t m = {.max = max};
    long status = 0;
    int rc;

    *body = NULL;
    *len = 0;
    CURL *c = easy_new(h, &hdrs, curl_err);
    if (!c)
        return err_set(err, err_len, -ENOMEM, "out of memory");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &m);
    CURLcode cr = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (m.over)
        rc = err_set(err, err_len, SN_HUB_EHTTP,
                     "'%s': reply larger than %zu bytes", url, max);
    else if (cr != CURLE_OK)
        rc = curl_failure(cr, curl_err, url, h->stall_s, err, err_len);
    else if (status < 200 || status >= 300)
        rc = http_failure(status, url, m.buf, err, err_len);
    else {
        *body = m.buf ? m.buf : strdup("");
        *len = m.len;
        m.buf = NULL;
        rc = *body ? 0 : err_set(err, err_len, -ENOMEM, "out of memory");
    }
    free(m.buf);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return rc;
}

/* ---- download into a file -------------------------------------------------- */

typedef struct {
    CURL *c;
    FILE *fp;
    int64_t start;     /* bytes PATH held before this attempt */
    int64_t written;   /* bytes written by this attempt */
    int truncated;     /* a 200 answered our Range: started over */
    int io_error;
    char body[SN_HUB_ERR_BODY];
    size_t body_len;
    /* progress */
    const sn_hub_t *h;
    const char *label;
    int64_t total;     /* expected size, or -1 */
    double t0, t_drawn;
} dl_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static size_t dl_write(char *p, size_t sz, size_t n, void *arg)
{
    dl_t *d = arg;
    size_t k = sz * n;
    long status = 0;
    curl_easy_getinfo(d->c, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 300 || status < 200) { /* an error body: keep a little */
        size_t room = sizeof d->body - 1 - d->body_len;
        size_t take = k < room ? k : room;
        memcpy(d->body + d->body_len, p, take);
        d->body_len += take;
        d->body[d->body_len] = '\0';
        return k;
    }
    if (status == 200 && d->start > 0 && !d->truncated) {
        /* the server ignored the Range: it sends the whole file */
        if (fflush(d->fp) != 0 || ftruncate(fileno(d->fp), 0) != 0 ||
            fseeko(d->fp, 0, SEEK_SET) != 0) {
            d->io_error = errno ? errno : EIO;
            return 0;
        }
        d->truncated = 1;
        d->start = 0;
    }
    if (fwrite(p, 1, k, d->fp) != k) {
        d->io_error = errno ? errno : EIO;
        return 0;
    }
    d->written += (int64_t)k;
    return k;
}

static void human_bytes(char *buf, size_t len, double b)
{
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};
    int u = 0;
    while (b >= 1000 && u < 4) {
        b /= 1000;
        u++;
    }
    snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", b, units[u]);
}

static void draw(dl_t *d, int final)
{
    char have[32], total[32], rate[32];
    double t = now_s();
    int64_t got = d->start + d->written;
    double secs = t - d->t0;
    human_bytes(have, sizeof have, (double)got);
    human_bytes(total, sizeof total, d->total >= 0 ? (double)d->total : 0);
    human_bytes(rate, sizeof rate, secs > 0 ? d->written / secs : 0);
    int pct = d->total > 0 ? (int)(100.0 * got / d->total) : 100;
    if (pct > 100)
        pct = 100;
    char bar[31];
    int filled = pct * 30 / 100;
    for (int i = 0; i < 30; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[30] = '\0';
    fprintf(stderr, "\r  %-40.40s [%s] %3d%% %9s / %-9s %9s/s\033[K%s",
            d->label, bar, pct, have, d->total >= 0 ? total : "?", rate,
            final ? "\n" : "");
    fflush(stderr);
    d->t_drawn = t;
}

static int dl_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow)
{
    dl_t *d = arg;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    if (d->h->progress && now_s() - d->t_drawn >= 0.1)
        draw(d, 0);
    return 0;
}

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

int sn_hub_download(const sn_hub_t *h, const char *url, const char *path,
                    int64_t size, const char *label, char *err,
                    size_t err_len)
{
    char curl_err[CURL_ERROR_SIZE];
    int rc = 0, attempt = 0;
    dl_t d = {.h = h, .label = label, .total = size};

    d.t0 = now_s();
    for (;;) {
        struct curl_slist *hdrs = NULL;
        long status = 0;
        int64_t have = file_size(path);
        if (have < 0)
            have = 0;
        if (size >= 0 && have == size && attempt == 0 && size > 0) {
            rc = 0; /* already whole from an earlier run: verified later */
            break;
        }
        if (size >= 0 && have > size) { /* cannot be ours: start over */
            if (truncate(path, 0) != 0)
                return err_set(err, err_len, -errno, "'%s': %s", path,
                               strerror(errno));
            have = 0;
        }
        FILE *fp = fopen(path, "ab");
        if (!fp)
            return err_set(err, err_len, -errno, "'%s': %s", path,
                           strerror(errno));
        CURL *c = easy_new(h, &hdrs, curl_err);
        if (!c) {
            fclose(fp);
            return err_set(err, err_len, -ENOMEM, "out of memory");
        }
        d.c = c;
        d.fp = fp;
        d.start = have;
        d.written = 0;
        d.truncated = 0;
        d.io_error = 0;
        d.body_len = 0;
        d.body[0] = '\0';
        char range[64];
        if (have > 0) {
            snprintf(range, sizeof range, "%lld-", (long long)have);
            curl_easy_setopt(c, CURLOPT_RANGE, range);
        }
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, dl_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
        if (h->progress) {
            curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
            curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, dl_progress);
            curl_easy_setopt(c, CURLOPT_XFERINFODATA, &d);
        }
        CURLcode cr = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        int close_failed = fclose(fp) != 0;
        curl_slist_free_all(hdrs);
        curl_easy_cleanup(c);

        if (d.io_error || close_failed) {
            rc = err_set(err, err_len, -(d.io_error ? d.io_error : EIO),
                         "'%s': %s", path,
                         strerror(d.io_error ? d.io_error : EIO));
            break;
        }
        if (cr == CURLE_OK && status == 416 && size >= 0 &&
            file_size(path) == size) {
            rc = 0; /* nothing past the end: already whole */
            break;
        }
        if (cr == CURLE_OK && status == 416) { /* our part is not a prefix */
            if (truncate(path, 0) != 0)
                return err_set(err, err_len, -errno, "'%s': %s", path,
                               strerror(errno));
            if (++attempt > SN_HUB_RETRIES) {
                rc = http_failure(status, url, d.body, err, err_len);
                break;
            }
            continue;
        }
        if (cr == CURLE_OK && (status < 200 || status >= 300)) {
            rc = http_failure(status, url, d.body, err, err_len);
            break;
        }
        if (cr == CURLE_OK) {
            int64_t got = file_size(path);
            if (size >= 0 && got != size) {
                rc = err_set(err, err_len, SN_HUB_ECORRUPT,
                             "'%s': got %lld bytes, the hub lists %lld", url,
                             (long long)got, (long long)size);
                break;
            }
            rc = 0;
            break;
        }
        /* a broken connection is retried, resuming */
        int broken = cr == CURLE_PARTIAL_FILE || cr == CURLE_RECV_ERROR ||
                     cr == CURLE_SEND_ERROR || cr == CURLE_GOT_NOTHING;
        if (broken && ++attempt <= SN_HUB_RETRIES) {
            if (h->progress)
                fprintf(stderr, "\r  %s: connection lost, resuming at %lld "
                                "bytes\033[K\n",
                        label, (long long)file_size(path));
            continue;
        }
        rc = curl_failure(cr, curl_err, url, h->stall_s, err, err_len);
        break;
    }
    if (h->progress && rc == 0)
        draw(&d, 1);
    else if (h->progress)
        fputc('\n', stderr);
    return rc;
}

int sn_hub_sha256_file(const char *path, char hex[65], char *err,
                       size_t err_len)
{
    unsigned char md[EVP_MAX_MD_SIZE], buf[1 << 16];
    unsigned int md_len = 0;
    int rc = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return err_set(err, err_len, -errno, "'%s': %s", path,
                       strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
        rc = err_set(err, err_len, -ENOMEM, "sha256: cannot start");
        goto out;
    }
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0)
        EVP_DigestUpdate(ctx, buf, n);
    if (ferror(fp)) {
        rc = err_set(err, err_len, -EIO, "'%s': read error", path);
        goto out;
    }
    EVP_DigestFinal_ex(ctx, md, &md_len);
    for (unsigned i = 0; i < md_len && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    hex[64] = '\0';
out:
    EVP_MD_CTX_free(ctx);
    fclose(fp);
    return rc;
}

char *sn_hub_escape(const char *s, int keep_slash)
{
    static const char hexd[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1), *o = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
                    *p == '.' || *p == '~' || (keep_slash && *p == '/');
        if (plain) {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hexd[*p >> 4];
            *o++ = hexd[*p & 15];
        }
    }
    *o = '\0';
    return out;
}
