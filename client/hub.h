/*
 * hub.h -- HTTP for `sense pull` (hub.c): a Hugging Face-compatible hub's
 * JSON API and its files, over libcurl.
 *
 * Call sn_hub_init() once before anything else and sn_hub_cleanup() at the
 * end. Functions return 0 or a negative code: -errno for local files, or
 * one of SN_HUB_E* below; `err` then says what failed, naming the URL or
 * the file.
 */
#ifndef SENSE_HUB_H
#define SENSE_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "sense/sense.h"

#define SN_HUB_VERSION SN_VERSION

enum {
    SN_HUB_ENET = -2001,      /* cannot connect, connection lost */
    SN_HUB_ESTALL = -2002,    /* no data for stall_s seconds */
    SN_HUB_EHTTP = -2003,     /* an HTTP error status (other than below) */
    SN_HUB_EAUTH = -2004,     /* 401 / 403 */
    SN_HUB_ENOTFOUND = -2005, /* 404 */
    SN_HUB_ECORRUPT = -2006,  /* size or checksum differs from the hub's */
};

typedef struct {
    const char *token; /* sent as "Authorization: Bearer TOKEN"; NULL: none */
    long stall_s;      /* give up after this long without data (0: 30) */
    int progress;      /* draw a progress bar on stderr */
} sn_hub_t;

int sn_hub_init(void);
void sn_hub_cleanup(void);

/* GET `url` (following redirects) into *body, NUL-terminated, malloc'd
 * (the caller frees it); at most `max` bytes. A non-2xx status fails. */
int sn_hub_get(const sn_hub_t *h, const char *url, size_t max, char **body,
               size_t *len, char *err, size_t err_len);

/* Download `url` into `path`, appending to what `path` already holds
 * (resuming with a Range request) and retrying a dropped connection. `size`
 * is the size the hub lists (-1: unknown): the result must have it.
 * `label` names the file on the progress bar. On failure `path` keeps what
 * arrived (for a later resume); the caller decides whether to keep it. */
int sn_hub_download(const sn_hub_t *h, const char *url, const char *path,
                    int64_t size, const char *label, char *err,
                    size_t err_len);

/* The sha256 of a file, as 64 lowercase hex digits. */
int sn_hub_sha256_file(const char *path, char hex[65], char *err,
                       size_t err_len);

/* Percent-encode `s` for a URL path ('/' kept when keep_slash); malloc'd. */
char *sn_hub_escape(const char *s, int keep_slash);

#endif
