/*
 * testutil.h -- small helpers shared by the test programs that run the real
 * binaries: reading a file whole, looking for text in it, and timing the
 * phases of a long test. Header-only (static functions): each test is one
 * program.
 */
#ifndef SENSE_TESTUTIL_H
#define SENSE_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Print how long the previous phase took, then start `name` (NULL: end). */
static inline void phase(const char *name)
{
    static double t_phase;
    double t = now_s();
    if (t_phase > 0)
        printf("  (%.2f s)\n", t - t_phase);
    if (name)
        printf("%s", name);
    fflush(stdout);
    t_phase = t;
}

/* The whole file, NUL-terminated; the caller frees it. */
static inline char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    CHECK(fp != NULL);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    CHECK(buf && fread(buf, 1, (size_t)n, fp) == (size_t)n);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static inline int file_has(const char *path, const char *sub)
{
    char *s = slurp(path);
    int has = strstr(s, sub) != NULL;
    free(s);
    return has;
}

/* file_has, waiting up to `seconds` for another process to write it (a
 * daemon accepts connections a moment before it logs that it listens). */
static inline int file_gets(const char *path, const char *sub,
                            double seconds)
{
    double t_end = now_s() + seconds;
    for (;;) {
        if (file_has(path, sub))
            return 1;
        if (now_s() > t_end)
            return 0;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

#endif
