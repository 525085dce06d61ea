/*
 * check.h -- the assertions of the test programs. A failed CHECK prints the
 * expression, both sides where there are two, and the place, then exits 1.
 */
#ifndef SENSE_CHECK_H
#define SENSE_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(expr)                                                          \
    do {                                                                     \
        if (!(expr)) {                                                       \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, \
                    #expr);                                                  \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

#define CHECK_EQ(a, b)                                                       \
    do {                                                                     \
        long long a_ = (long long)(a), b_ = (long long)(b);                  \
        if (a_ != b_) {                                                      \
            fprintf(stderr, "%s:%d: CHECK_EQ(%s, %s) failed: %lld != %lld\n", \
                    __FILE__, __LINE__, #a, #b, a_, b_);                     \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

#define CHECK_STREQ(a, b)                                                    \
    do {                                                                     \
        const char *a_ = (a), *b_ = (b);                                     \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                             \
            fprintf(stderr,                                                  \
                    "%s:%d: CHECK_STREQ(%s, %s) failed: \"%s\" != \"%s\"\n", \
                    __FILE__, __LINE__, #a, #b, a_ ? a_ : "(null)",          \
                    b_ ? b_ : "(null)");                                     \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

/* The call returns an error code (negative) and, if `sub` is non-NULL, the
 * message contains `sub`. */
#define CHECK_FAILS_WITH(rc, errbuf, sub)                                    \
    do {                                                                     \
        int r_ = (rc);                                                       \
        if (r_ >= 0 || ((sub) && !strstr((errbuf), (sub)))) {                \
            fprintf(stderr,                                                  \
                    "%s:%d: expected failure containing \"%s\", got rc=%d "  \
                    "msg=\"%s\"\n",                                          \
                    __FILE__, __LINE__, (sub) ? (sub) : "", r_, (errbuf));   \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

#define CHECK_OK(rc, errbuf)                                                 \
    do {                                                                     \
        int r_ = (rc);                                                       \
        if (r_ < 0) {                                                        \
            fprintf(stderr, "%s:%d: %s failed: rc=%d: %s\n", __FILE__,       \
                    __LINE__, #rc, r_, (errbuf));                            \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

/* The tests' random numbers: xorshift64 from *state (any nonzero seed),
 * its top 53 bits as a double in [0, 1). Each test keeps its own state. */
static inline double check_urand(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return (double)(*state >> 11) / 9007199254740992.0;
}

/* Copy the file `from` to `to` (made or truncated), every byte, or fail. */
static inline void check_copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    char buf[65536];
    size_t n;
    CHECK(a && b);
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        CHECK(fwrite(buf, 1, n, b) == n);
    fclose(a);
    CHECK(fclose(b) == 0);
}

#endif
