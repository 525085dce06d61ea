/*
 * rawclient.h -- a raw client of the daemon's socket for the integration
 * tests: connect, send lines, read reply lines (each with a deadline of
 * TIMEOUT_MS), parse them. Header-only (static functions); the including
 * test defines `sock_path` (the daemon's socket) and TIMEOUT_MS first.
 */
#ifndef SENSE_RAWCLIENT_H
#define SENSE_RAWCLIENT_H

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "check.h"

static inline int try_connect(void)
{
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        close(fd);
        return -1;
    }
    return fd;
}

typedef struct {
    int fd;
    char *buf;
    size_t start, len, cap;
} client_t;

static inline client_t *cl_open(void)
{
    client_t *c = calloc(1, sizeof *c);
    CHECK(c != NULL);
    c->fd = try_connect();
    CHECK(c->fd >= 0);
    return c;
}

static inline void cl_close(client_t *c)
{
    close(c->fd);
    free(c->buf);
    free(c);
}

static inline int cl_send(client_t *c, const char *p, size_t len)
{
    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static inline void cl_sendz(client_t *c, const char *s)
{
    CHECK_EQ(cl_send(c, s, strlen(s)), 0);
}

static inline char *cl_line(client_t *c)
{
    size_t scan = c->start;
    for (;;) {
        char *nl = c->len > scan ? memchr(c->buf + scan, '\n', c->len - scan)
                                 : NULL;
        if (nl) {
            size_t n = (size_t)(nl - (c->buf + c->start));
            char *line = malloc(n + 1);
            CHECK(line != NULL);
            memcpy(line, c->buf + c->start, n);
            line[n] = '\0';
            c->start += n + 1;
            return line;
        }
        scan = c->len;
        if (c->cap - c->len < 65536) {
            c->cap = c->cap ? c->cap * 2 : 131072;
            c->buf = realloc(c->buf, c->cap);
            CHECK(c->buf != NULL);
        }
        struct pollfd pfd = {c->fd, POLLIN, 0};
        int r = poll(&pfd, 1, TIMEOUT_MS);
        if (r == 0) {
            fprintf(stderr, "no reply within %d ms\n", TIMEOUT_MS);
            exit(1);
        }
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == ECONNRESET)
            return NULL;
        CHECK(n >= 0);
        if (n == 0)
            return NULL;
        c->len += (size_t)n;
    }
}

static inline json_t *parse(const char *line)
{
    json_error_t jerr;
    json_t *j = json_loads(line, 0, &jerr);
    if (!j) {
        fprintf(stderr, "bad reply line: %s: %.200s\n", jerr.text, line);
        exit(1);
    }
    return j;
}

/* The next reply, parsed; a closed connection fails the test. */
static inline json_t *cl_reply(client_t *c)
{
    char *line = cl_line(c);
    if (!line) {
        fprintf(stderr, "connection closed instead of a reply\n");
        exit(1);
    }
    json_t *j = parse(line);
    free(line);
    return j;
}

static inline json_t *cl_call(client_t *c, const char *req)
{
    cl_sendz(c, req);
    cl_sendz(c, "\n");
    char *line = cl_line(c);
    if (!line) {
        fprintf(stderr, "connection closed instead of a reply to %.200s\n",
                req);
        exit(1);
    }
    json_t *j = parse(line);
    free(line);
    return j;
}

#endif
