/*
 * protocol.h -- the ops and limits of sensed's wire protocol
 * (docs/protocol.md), in one place for the daemon (daemon/) and the `sense`
 * client (client/), so that neither repeats the other's names or numbers.
 *
 * SN_OPS is the op table: one row per op,
 *
 *   X(ID, "wire name", parse, route, run)
 *
 *   parse  daemon/proto.c: reads the op's fields from the request object
 *          (pure: no model, no I/O)
 *   route  daemon/ops.c: where the work goes (SN__ROUTE_<route>): the
 *          encoder workers, the storage lane in the connection's order, a
 *          reader thread, an encoder worker at the connection's turn
 *   run    daemon/ops.c: the work itself and the reply, on the thread the
 *          route ends on
 *
 * Each file expands the columns it needs: proto.c the enum, the names and
 * the parse switch, ops.c the dispatch, the client the names. Adding an op
 * is one row here, its parser, its runner and its section of the docs.
 *
 * Nothing here allocates; sn_op_name() and sn_op_find() are pure.
 */
#ifndef SENSE_PROTOCOL_H
#define SENSE_PROTOCOL_H

#include <stddef.h>
#include <string.h>

#include "sense/store.h" /* the storage limits the protocol passes on */

#define SN_OPS(X)                                                            \
    X(EMBED, "embed", parse_embed, ENCODE, run_embed)                        \
    X(ADD, "add", parse_add, CHUNK_ENCODE_STORE, run_add)                    \
    X(SEARCH, "search", parse_search, ENCODE_READ, run_search)               \
    X(GET, "get", parse_ids, STORE, run_get)                                 \
    X(DELETE, "delete", parse_ids, STORE, run_delete)                        \
    X(STATS, "stats", parse_nothing, STATE, run_stats)                       \
    X(SENSE_ADD, "sense.add", parse_sense_add, MODEL, run_sense_add)         \
    X(SENSE_WHICH, "sense.which", parse_sense_which, MODEL, run_sense_which) \
    X(SENSE_LIST, "sense.list", parse_sense_list, STORE, run_sense_list)     \
    X(SENSE_REMOVE, "sense.remove", parse_sense_remove, STORE,               \
      run_sense_remove)                                                      \
    X(CHECK, "check", parse_check, STORE, run_check)

typedef enum {
#define SN__OP_ENUM(id, name, parse, route, run) SN_OP_##id,
    SN_OPS(SN__OP_ENUM)
#undef SN__OP_ENUM
    SN_OP_COUNT
} sn_op_t;

/* The op's wire name; "?" for a value out of range. */
static inline const char *sn_op_name(sn_op_t op)
{
    static const char *const names[] = {
#define SN__OP_NAME(id, name, parse, route, run) name,
        SN_OPS(SN__OP_NAME)
#undef SN__OP_NAME
    };
    return (unsigned)op < SN_OP_COUNT ? names[op] : "?";
}

/* The op named name[0..len), or -1. */
static inline int sn_op_find(const char *name, size_t len)
{
    for (int i = 0; i < SN_OP_COUNT; i++) {
        const char *s = sn_op_name((sn_op_t)i);
        if (strlen(s) == len && !memcmp(s, name, len))
            return i;
    }
    return -1;
}

/* ---- limits (docs/protocol.md, "Limits") ----------------------------------- */

#define SN_MAX_LINE_DEFAULT (16u << 20) /* request line, sensed --max-line */
#define SN_MAX_REPLY (256u << 20)  /* a reply line */
#define SN_MAX_TEXTS 1024          /* texts per embed */
#define SN_MAX_DOCS 1024           /* documents per add */
#define SN_MAX_CHUNKS 65536        /* chunks per add, all documents */
#define SN_MAX_IDS 10000           /* ids per get / delete */
#define SN_MAX_K 1000              /* search results */
#define SN_MAX_EF 10000            /* a search's HNSW beam ("ef") */
#define SN_MAX_DIM 65536           /* numbers in a search's vector */
#define SN_MAX_NAME 256            /* collection and prompt names */
#define SN_MAX_ID SN_STORE_MAX_ID  /* a document id (bytes): the store's */
#define SN_MAX_META SN_STORE_MAX_META /* a document's meta, compact json */
#define SN_MAX_SENSES 1024         /* senses per sense.add */
#define SN_MAX_EXAMPLES 4096       /* exemplars per sense.add
                                    * (= SN_WSD_MAX_BATCH, sense/wsd.h) */
#define SN_LIST_DEFAULT 1000       /* lemmas per sense.list, by default */
#define SN_MAX_LIST 100000         /* lemmas per sense.list */
#define SN_CHECK_DEFAULT 1000      /* damaged chunks listed by check */
#define SN_MAX_CHECK 100000        /* at most, when asked */

#endif
