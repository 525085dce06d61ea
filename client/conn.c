/*
 * conn.c -- the client's end of the daemon's socket: find it, connect with
 * a message a person can act on, send one request line, read one reply
 * line. Blocking I/O: the commands are sequential, one request in flight.
 *
 * Replies are read into a growable buffer bounded by SN_CLI_MAX_REPLY; a
 * connection that closes before a whole reply line is an error.
 *
 * Trust: a request carries the user's documents and queries, so before
 * sending anything the client checks that the socket sits in a folder of
 * this user that nobody else can write to (else another local user could
 * have made the folder first and be listening there), that the socket file
 * is this user's, and that the process answering runs as this user
 * (SO_PEERCRED). The daemon refuses such folders for itself the same way.
 * A daemon shared with a group (sensed --socket-group) runs as another
 * user: $SENSE_DAEMON_UID names that user, whose folder and process the
 * client then accepts instead of its own.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "client.h"

const char *sn_cli_socket_opt;

struct sn_cli_conn {
    int fd;
    char path[4096];
    long long next_id;
    char *buf;            /* buf[start..len): received, not yet returned */
    size_t start, len, cap;
};

void sn_cli_socket_path(char *buf, size_t len)
{
    const char *v;
    if (sn_cli_socket_opt)
        snprintf(buf, len, "%s", sn_cli_socket_opt);
    else if ((v = getenv("SENSE_SOCKET")) && *v)
        snprintf(buf, len, "%s", v);
    else if ((v = getenv("XDG_RUNTIME_DIR")) && *v)
        snprintf(buf, len, "%s/sense.sock", v);
    else
        snprintf(buf, len, "/tmp/sense-%u/sense.sock", (unsigned)getuid());
}

static const char *reason(int e)
{
    switch (e) {
    case ENOENT: return "no such file";
    case ECONNREFUSED: return "connection refused (no daemon is listening)";
    case EACCES: return "permission denied";
    case ENOTDIR: return "not a folder on the way";
    case ENOTSOCK: return "not a socket";
    case ENAMETOOLONG: return "path too long";
    default: return strerror(e);
    }
}

/* Whose daemon to talk to: ours, or $SENSE_DAEMON_UID's. */
static uid_t daemon_uid(void)
{
    const char *v = getenv("SENSE_DAEMON_UID");
    char *end;
    unsigned long u;
    if (v && *v && (u = strtoul(v, &end, 10), !*end) && u < (uid_t)-1)
        return (uid_t)u;
    return getuid();
}

/* The socket's folder and file must be the daemon user's, the folder
 * closed to writes by others. 0, or -1 after printing why. */
static int check_place(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    struct stat st;
    uid_t me = daemon_uid();

    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (stat(dir, &st) != 0)
        return 0; /* connect says what is missing */
    if (!S_ISDIR(st.st_mode) || st.st_uid != me || (st.st_mode & 022)) {
        sn_cli_error("refusing '%s': its folder '%s' is not private to this "
                     "user (owner uid %u, mode %04o; want uid %u, not "
                     "writable by others)", path, dir, (unsigned)st.st_uid,
                     (unsigned)(st.st_mode & 07777), (unsigned)me);
        return -1;
    }
    if (lstat(path, &st) == 0 && st.st_uid != me) {
        sn_cli_error("refusing '%s': the socket belongs to uid %u, not %u",
                     path, (unsigned)st.st_uid, (unsigned)me);
        return -1;
    }
    return 0;
}

/* The process listening on fd runs as this user. 0, or -1 after printing. */
static int check_peer(int fd, const char *path)
{
    struct ucred cred;
    socklen_t len = sizeof cred;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        sn_cli_error("cannot tell who listens on '%s': %s", path,
                     strerror(errno));
        return -1;
    }
    if (cred.uid != daemon_uid()) {
        sn_cli_error("refusing '%s': the process listening there (pid %d) "
                     "runs as uid %u, not %u", path, (int)cred.pid,
                     (unsigned)cred.uid, (unsigned)daemon_uid());
        return -1;
    }
    return 0;
}

int sn_cli_connect(sn_cli_conn_t **out)
{
    char path[4096];
    struct sockaddr_un sa;
    sn_cli_conn_t *c = NULL;
    int e;

    *out = NULL;
    sn_cli_socket_path(path, sizeof path);
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) {
        e = ENAMETOOLONG;
        goto fail;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (check_place(path) < 0)
        return SN_EXIT_CONNECT;
    c = calloc(1, sizeof *c);
    if (!c) {
        e = ENOMEM;
        goto fail;
    }
    snprintf(c->path, sizeof c->path, "%s", path);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        e = errno;
        goto fail;
    }
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa)) {
        e = errno;
        close(c->fd);
        goto fail;
    }
    if (check_peer(c->fd, path) < 0) {
        close(c->fd);
        free(c);
        return SN_EXIT_CONNECT;
    }
    *out = c;
    return 0;
fail:
    free(c);
    sn_cli_error("cannot connect to '%s': %s", path, reason(e));
    if (sn_cli_socket_opt || getenv("SENSE_SOCKET"))
        sn_cli_error("start it with: sensed --socket '%s'", path);
    else
        sn_cli_error("start it with: sensed");
    return SN_EXIT_CONNECT;
}

void sn_cli_close(sn_cli_conn_t *c)
{
    if (!c)
        return;
    close(c->fd);
    free(c->buf);
    free(c);
}

static int write_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
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

/* One line from the socket, without its newline, NUL-terminated. */
static int read_line(sn_cli_conn_t *c, char **line, size_t *len)
{
    size_t scan = c->start;
    for (;;) {
        char *nl = c->len > scan ? memchr(c->buf + scan, '\n', c->len - scan)
                                 : NULL;
        if (nl) {
            *nl = '\0';
            *line = c->buf + c->start;
            *len = (size_t)(nl - *line);
            c->start = (size_t)(nl - c->buf) + 1;
            return 0;
        }
        scan = c->len;
        if (c->start > 0) { /* compact */
            memmove(c->buf, c->buf + c->start, c->len - c->start);
            c->len -= c->start;
            scan -= c->start;
            c->start = 0;
        }
        if (c->len >= SN_CLI_MAX_REPLY)
            return -EFBIG;
        if (c->cap - c->len < 65536) {
            size_t cap = c->cap ? c->cap * 2 : 65536;
            char *p = realloc(c->buf, cap + 1);
            if (!p)
                return -ENOMEM;
            c->buf = p;
            c->cap = cap;
        }
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EPIPE;
        c->len += (size_t)n;
    }
}

void sn_cli_print_error(json_t *reply)
{
    json_t *e = json_object_get(reply, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    sn_cli_error("%s (%s)", msg ? msg : "error", code ? code : "?");
}

int sn_cli_send(sn_cli_conn_t *c, json_t *req)
{
    char *text = NULL;
    int rc;

    json_object_set_new(req, "id", json_integer(++c->next_id));
    text = json_dumps(req, JSON_COMPACT);
    if (!text) {
        sn_cli_error("out of memory");
        return SN_EXIT_ERROR;
    }
    size_t tlen = strlen(text);
    text[tlen] = '\n'; /* json_dumps left room: its NUL */
    rc = write_all(c->fd, text, tlen + 1);
    free(text);
    if (rc) {
        sn_cli_error("cannot send to '%s': %s", c->path, strerror(-rc));
        return SN_EXIT_ERROR;
    }
    return 0;
}

int sn_cli_recv(sn_cli_conn_t *c, json_t **reply, const char **raw,
                int quiet)
{
    char *line = NULL;
    size_t len = 0;
    json_error_t jerr;
    int rc;

    *reply = NULL;
    if ((rc = read_line(c, &line, &len))) {
        if (rc == -EPIPE)
            sn_cli_error("'%s' closed the connection before replying",
                         c->path);
        else
            sn_cli_error("cannot read from '%s': %s", c->path,
                         strerror(-rc));
        return SN_EXIT_ERROR;
    }
    *reply = json_loadb(line, len, 0, &jerr);
    if (!*reply || !json_is_object(*reply)) {
        sn_cli_error("bad reply from the daemon: %s",
                     *reply ? "not an object" : jerr.text);
        json_decref(*reply);
        *reply = NULL;
        return SN_EXIT_ERROR;
    }
    if (raw)
        *raw = line;
    if (!json_is_true(json_object_get(*reply, "ok"))) {
        if (!quiet)
            sn_cli_print_error(*reply);
        return SN_EXIT_ERROR;
    }
    return 0;
}

int sn_cli_call(sn_cli_conn_t *c, json_t *req, json_t **reply,
                const char **raw, int quiet)
{
    int rc;

    *reply = NULL;
    if ((rc = sn_cli_send(c, req)))
        return rc;
    return sn_cli_recv(c, reply, raw, quiet);
}
