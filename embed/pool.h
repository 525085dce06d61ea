/*
 * pool.h -- a small fork-join pool of helper threads (embed/pool.c).
 * Internal to libsense.
 *
 * Ownership: sn__pool_new returns a pool owned by the caller, freed with
 * sn__pool_free (NULL is a no-op), which joins the helpers. A pool is used
 * by one thread at a time (the one that owns the context it belongs to)
 * and must not cross fork().
 */
#ifndef SENSE_POOL_H
#define SENSE_POOL_H

typedef struct sn__pool sn__pool_t;
/* fn(arg, part, n_parts) runs for every part in [0, n_parts) */
typedef void (*sn__pool_cb)(void *arg, int part, int n_parts);

/* A pool of n_threads threads in all: n_threads - 1 helpers plus the
 * caller. Fewer helpers if the system refuses threads; NULL when out of
 * memory. n_threads < 2 gives a pool that runs everything on the caller. */
sn__pool_t *sn__pool_new(int n_threads);
void sn__pool_free(sn__pool_t *p);
int sn__pool_threads(const sn__pool_t *p);
/* Run fn over all threads (the caller takes part 0) and return when every
 * part is done. */
void sn__pool_run(sn__pool_t *p, sn__pool_cb fn, void *arg);

#endif
