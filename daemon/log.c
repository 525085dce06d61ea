/*
 * log.c -- the daemon's log: one line per event on stderr.
 *
 *   2024-05-01T09:30:12.345Z sensed[4242] info: listening on '/run/...'
 *
 * Any thread may log. A line is formatted into a stack buffer and written
 * with one write(2), so lines from different threads never interleave
 * (pipes and files keep writes under PIPE_BUF whole; longer lines are cut to
 * SN__LOG_LINE). Newlines inside a message are replaced by spaces so that a
 * client-supplied string can never forge a log line.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

#define SN__LOG_LINE 1024

sn__log_level_t sn__log_level = SN__LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int sn__log_parse_level(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, level_names[i]))
            return i;
    return -1;
}

void sn__log(sn__log_level_t level, const char *fmt, ...)
{
    char line[SN__LOG_LINE];
    struct timeval tv;
    struct tm tm;
    size_t n;
    va_list ap;
    int saved = errno;

    if (level > sn__log_level)
        return;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof line - n, ".%03dZ sensed[%d] %s: ",
                          (int)(tv.tv_usec / 1000), (int)getpid(),
                          level_names[level]);
    if (n >= sizeof line - 2)
        n = sizeof line - 2;
    size_t head = n;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (m > 0)
        n += (size_t)m < sizeof line - n - 1 ? (size_t)m : sizeof line - n - 2;
    for (size_t i = head; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w; /* nowhere to report a failing log */
    errno = saved;
}

int sn__derr(char *err, size_t err_len, int code, const char *fmt, ...)
{
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return code;
}

int64_t sn__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
