/*
 * sense.h -- the public face of sense.
 *
 * sense reads documents with a transformer encoder, turns them into
 * contextual embeddings, keeps them in an approximate-nearest-neighbour index
 * with SQLite metadata, and answers similarity queries over a Unix socket.
 *
 * This header holds what every module shares: the error codes and their
 * names. The modules have headers of their own:
 *   sense/embed.h   tokenizers, model loading, the encoder forward pass
 *   sense/store.h   documents, chunks and vectors: SQLite + faiss
 *   sense/wsd.h     word senses: locating a word, its vector, the sense
 *                   inventory (in the store's database), choosing a sense
 *   sense/wordnet.h WordNet 3.0 as a sense inventory: parsing, importing
 *   sense/protocol.h the daemon's op table and limits, shared with the
 *                   client
 * The daemon (daemon/) serves them over a Unix socket; its wire protocol is
 * docs/protocol.md. The data path: embed -> index -> daemon -> client.
 *
 * Conventions, everywhere: a function that can fail returns int, 0 on
 * success or a negative code (-errno for system errors, SN_E* for ours).
 * Longer context goes into a caller-supplied buffer `err` of `err_len` bytes,
 * never to stderr. Every xxx_free(NULL) is a no-op.
 */
#ifndef SENSE_SENSE_H
#define SENSE_SENSE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SN_VERSION "0.1.0"

/* The project's own error codes, X(name, value, message). */
#define SN_ERRNO_MAP(X)                                                      \
    X(EPROTO, -1001, "protocol error")                                       \
    X(ECORRUPT, -1002, "corrupt or malformed file")                          \
    X(EMODEL, -1003, "unsupported or inconsistent model")                    \
    X(ETOOBIG, -1004, "input too large")                                     \
    X(EUTF8, -1005, "invalid utf-8")                                         \
    X(EJSON, -1006, "malformed json")                                        \
    X(EARG, -1007, "invalid argument")                                       \
    X(ENOTFOUND, -1008, "not found")

enum {
#define SN__ERR_ENUM(name, value, msg) SN_##name = (value),
    SN_ERRNO_MAP(SN__ERR_ENUM)
#undef SN__ERR_ENUM
};

/* A static string describing `code` (ours or -errno). Never NULL. */
const char *sn_strerror(int code);
/* The symbolic name of `code`, e.g. "ECORRUPT" or "ENOENT". Never NULL. */
const char *sn_err_name(int code);

/* UTF-8, strictly: overlong forms, surrogates and code points past
 * U+10FFFF are invalid. sn_utf8_seq: the length (1-4) of the valid sequence
 * at s[0..n), n >= 1, or 0. sn_utf8_valid: 1 if buf[0..len) is valid, else
 * 0 with *bad (if non-NULL) the offset of the first invalid byte. */
size_t sn_utf8_seq(const unsigned char *s, size_t n);
int sn_utf8_valid(const char *buf, size_t len, size_t *bad);

/* Where sense keeps its data: `name` under $SENSE_DATA, else
 * $XDG_DATA_HOME/sense, else ~/.local/share/sense (the database
 * "sense.db", the default model "models/use-lite"). SN_ENOTFOUND when none
 * of them is set, SN_ETOOBIG when buf is too small. */
int sn_data_path(const char *name, char *buf, size_t len);
/* mkdir -p, mode 0700, for the folders above the file `path`. 0 or -errno
 * (-ENAMETOOLONG past 4095 bytes). */
int sn_mkdir_parents(const char *path);

#ifdef __cplusplus
}
#endif

#include "sense/embed.h"

#endif
