/*
 * test_client_trust.c -- the `sense` client refuses a socket it cannot
 * trust, before sending anything (issue 16):
 *
 *   - a socket in a folder others can write to (another user made
 *     /tmp/sense-$UID first, mode 0777, and listens there);
 *   - a socket whose listening process runs as another user (SO_PEERCRED;
 *     needs root to listen as another uid, which CI is) -- unless
 *     $SENSE_DAEMON_UID names that user (a daemon shared with a group).
 *
 * Each case listens with a plain socket, runs the real `sense stats
 * --socket PATH` (under `timeout`, since a client that trusts the socket
 * waits for a reply that never comes), then counts the bytes the client
 * sent: there must be none, and the client must say why it refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static char tmp[64];

/* Listen at path as as_uid (-1: as we are); bind_as: bind as that user
 * too (the socket file is then theirs), else as we are. */
static int listen_at(const char *path, uid_t as_uid, int bind_as)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    if (bind_as && as_uid != (uid_t)-1) {
        CHECK(setuid(as_uid) == 0);
        as_uid = (uid_t)-1;
    }
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    /* the peer credentials a client sees are those of listen() */
    if (as_uid != (uid_t)-1)
        CHECK(setuid(as_uid) == 0);
    CHECK(listen(fd, 8) == 0);
    return fd;
}

/* Bytes sent by whoever connected to fd (0 when nobody did). */
static long bytes_received(int fd)
{
    long total = 0;
    int c;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    while ((c = accept(fd, NULL, NULL)) >= 0) {
        char buf[4096];
        ssize_t n;
        while ((n = recv(c, buf, sizeof buf, MSG_DONTWAIT)) > 0)
            total += n;
        close(c);
    }
    return total;
}

static const char *client_env = "";

/* Run the client against path; its exit status, stderr in errbuf. */
static int run_client(const char *path, char *errbuf, size_t len)
{
    char cmd[1024], errpath[128];
    snprintf(errpath, sizeof errpath, "%s/stderr", tmp);
    /* a client that trusts the socket waits for a reply that never
     * comes: the expected case with SENSE_DAEMON_UID, cut short */
    snprintf(cmd, sizeof cmd, "%s timeout %d '%s/sense' stats --socket '%s' "
             ">/dev/null 2>'%s'", client_env, *client_env ? 1 : 5,
             SN_BINARY_DIR, path, errpath);
    int st = system(cmd);
    FILE *f = fopen(errpath, "r");
    size_t n = f ? fread(errbuf, 1, len - 1, f) : 0;
    errbuf[n] = '\0';
    if (f)
        fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_open_folder(void)
{
    char sub[128], path[160], msg[2048];
    snprintf(sub, sizeof sub, "%s/open", tmp);
    CHECK(mkdir(sub, 0777) == 0);
    CHECK(chmod(sub, 0777) == 0); /* whatever the umask */
    snprintf(path, sizeof path, "%s/sense.sock", sub);
    int fd = listen_at(path, (uid_t)-1, 0);
    int rc = run_client(path, msg, sizeof msg);
    long got = bytes_received(fd);
    close(fd);
    if (got != 0 || rc != 3 || !strstr(msg, "not private")) {
        fprintf(stderr, "open folder: client exit %d, sent %ld bytes, "
                "said: %s\n", rc, got, msg);
        exit(1);
    }
}

/* trusted: the client sends (and the fake daemon, never answering, makes it
 * time out); else it must refuse and send nothing */
static void test_other_uid(int trusted)
{
    char sub[128], path[160], msg[2048], c;
    int ready[2], go[2], result[2];
    long got = -1;

    snprintf(sub, sizeof sub, "%s/priv%d", tmp, trusted);
    CHECK(mkdir(sub, 0700) == 0);
    if (trusted) /* a folder of the daemon's user, as sensed makes it */
        CHECK(chown(sub, 65534, (gid_t)-1) == 0);
    client_env = trusted ? "SENSE_DAEMON_UID=65534" : "";
    snprintf(path, sizeof path, "%s/sense.sock", sub);
    CHECK(pipe(ready) == 0 && pipe(go) == 0 && pipe(result) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int fd = listen_at(path, 65534, trusted); /* nobody */
        if (write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1)
            _exit(1);
        got = bytes_received(fd);
        if (write(result[1], &got, sizeof got) != sizeof got)
            _exit(1);
        _exit(0);
    }
    close(ready[1]); /* a child that failed: EOF, not a hang */
    close(result[1]);
    CHECK(read(ready[0], &c, 1) == 1);
    int rc = run_client(path, msg, sizeof msg);
    CHECK(write(go[1], "g", 1) == 1);
    CHECK(read(result[0], &got, sizeof got) == sizeof got);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    if (trusted ? got <= 0
                : got != 0 || rc != 3 || !strstr(msg, "runs as uid 65534")) {
        fprintf(stderr, "other uid (%s): client exit %d, sent %ld bytes, "
                "said: %s\n", trusted ? "trusted" : "not trusted", rc, got,
                msg);
        exit(1);
    }
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/sn_trust_XXXXXX");
    CHECK(mkdtemp(tmp));
    signal(SIGPIPE, SIG_IGN);

    test_open_folder();
    if (geteuid() == 0) {
        CHECK(chmod(tmp, 0711) == 0); /* nobody passes through to its own */
        test_other_uid(0);
        test_other_uid(1); /* $SENSE_DAEMON_UID: a daemon shared with a
                            * group */
    }
    else
        printf("client_trust: not root, cannot listen as another uid: "
               "SO_PEERCRED case not run\n");

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0);
    printf("client_trust: ok\n");
    return 0;
}
