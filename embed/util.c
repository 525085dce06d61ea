/*
 * util.c -- small helpers shared by embed/: error formatting, whole-file
 * reads with a size cap, path joining; and the project's one strict UTF-8
 * validator (sense.h), used by the daemon's wire parser and the client.
 * It skips ASCII 8 bytes at a time: request lines of megabytes are mostly
 * ASCII.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "embed_int.h"

int sn__err(char *err, size_t err_len, int code, const char *fmt, ...)
{
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return code;
}

uint64_t sn__fnv1a64(uint64_t h, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)p)[i]) * 0x100000001b3ull;
    return h;
}

int sn__read_file(const char *path, size_t max_len, char **out, size_t *len,
                  char *err, size_t err_len)
{
    FILE *fp = NULL;
    char *buf = NULL;
    struct stat st;
    int rc;

    *out = NULL;
    *len = 0;
    fp = fopen(path, "rb");
    if (!fp)
        return sn__err(err, err_len, -errno, "'%s': %s", path,
                       strerror(errno));
    if (fstat(fileno(fp), &st) != 0) {
        rc = sn__err(err, err_len, -errno, "'%s': %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = sn__err(err, err_len, -EINVAL, "'%s': not a regular file", path);
        goto fail;
    }
    if ((uint64_t)st.st_size > max_len) {
        rc = sn__err(err, err_len, SN_ETOOBIG,
                     "'%s': file too large (%lld bytes, limit %zu)", path,
                     (long long)st.st_size, max_len);
        goto fail;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        rc = sn__err(err, err_len, -ENOMEM, "'%s': out of memory", path);
        goto fail;
    }
    if (st.st_size && fread(buf, 1, (size_t)st.st_size, fp) !=
                          (size_t)st.st_size) {
        rc = sn__err(err, err_len, -EIO, "'%s': short read", path);
        goto fail;
    }
    buf[st.st_size] = '\0';
    fclose(fp);
    *out = buf;
    *len = (size_t)st.st_size;
    return 0;
fail:
    free(buf);
    fclose(fp);
    return rc;
}

int sn__path_join(char *buf, size_t buf_len, const char *dir,
                  const char *name)
{
    int n = snprintf(buf, buf_len, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= buf_len)
        return SN_ETOOBIG;
    return 0;
}

int sn_data_path(const char *name, char *buf, size_t len)
{
    const char *v;
    int n;
    if ((v = getenv("SENSE_DATA")) && *v)
        n = snprintf(buf, len, "%s/%s", v, name);
    else if ((v = getenv("XDG_DATA_HOME")) && *v)
        n = snprintf(buf, len, "%s/sense/%s", v, name);
    else if ((v = getenv("HOME")) && *v)
        n = snprintf(buf, len, "%s/.local/share/sense/%s", v, name);
    else
        return SN_ENOTFOUND;
    return n < 0 || (size_t)n >= len ? SN_ETOOBIG : 0;
}

int sn_mkdir_parents(const char *path)
{
    char buf[4096];
    const char *slash = strrchr(path, '/');
    size_t len = slash ? (size_t)(slash - path) : 0;
    if (len == 0)
        return 0;
    if (len >= sizeof buf)
        return -ENAMETOOLONG;
    memcpy(buf, path, len);
    buf[len] = '\0';
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0700) && errno != EEXIST)
            return -errno;
        buf[i] = c;
    }
    return 0;
}

int sn__file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0. */
size_t sn_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    if (c < 0xC2 || c > 0xF4)
        return 0;
    size_t need = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if (c == 0xE0 && s[1] < 0xA0)
        return 0; /* overlong */
    if (c == 0xED && s[1] >= 0xA0)
        return 0; /* surrogate */
    if (c == 0xF0 && s[1] < 0x90)
        return 0; /* overlong */
    if (c == 0xF4 && s[1] >= 0x90)
        return 0; /* past U+10FFFF */
    return need;
}

int sn_utf8_valid(const char *buf, size_t len, size_t *bad)
{
    const unsigned char *s = (const unsigned char *)buf;
    size_t i = 0;
    while (i < len) {
        /* ASCII runs, 8 bytes at a time */
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull)
                break;
            i += 8;
        }
        if (i >= len)
            break;
        size_t k = sn_utf8_seq(s + i, len - i);
        if (!k) {
            if (bad)
                *bad = i;
            return 0;
        }
        i += k;
    }
    return 1;
}
