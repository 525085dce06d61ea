/*
 * test_faults.c -- fault injection, as SQLite tests itself: every write,
 * sync, rename and allocation an add, a delete and an index save make is
 * made to fail in turn (the Nth one, N = 1, 2, ... until the operation
 * makes fewer than N), and after each:
 *
 *   - the operation returned 0 or an error with a message (never a crash:
 *     the sanitizer builds run this too);
 *   - an add or delete that failed happened wholly or not at all;
 *   - nothing acknowledged is lost: every document the model says exists
 *     is found, by get and as the top hit of its own vector, and no deleted
 *     one comes back -- on the same store (it keeps serving) and on the
 *     database reopened from disk;
 *   - the same store takes the next write.
 *
 * The faults:
 *   write   SQLite's xWrite/xTruncate (a VFS shim over "unix", the
 *           default VFS here) and, for the index files, pwrite, fwrite and
 *           fflush (faiss writes through a FILE*);
 *   sync    xSync, fsync, fdatasync;
 *   rename  rename (the index file's atomic replace);
 *   alloc   malloc, calloc, realloc, strdup in index/ and faiss' C code
 *           (linked with -Wl,--wrap), SQLite's allocator
 *           (SQLITE_CONFIG_MALLOC) and jansson's (json_set_alloc_funcs).
 *
 * ctest runs every STRIDE-th point of each sweep (seconds);
 * SENSE_FAULTS_FULL=1 runs all of them (see README, Development). The
 * counts are printed at the end.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "check.h"
#include "sense/sense.h"
#include "sense/store.h"

#define D 8

/* ---- the fault counter ---------------------------------------------------- */

enum { F_WRITE, F_SYNC, F_RENAME, F_ALLOC, N_KINDS };
static const char *const kind_names[N_KINDS] = {"write", "sync", "rename",
                                                "alloc"};

static int armed = -1;        /* the kind being counted, or -1 */
static long count, fail_at;   /* calls of that kind so far; which fails */
static int fired;             /* the fault happened */

static int fault(int kind)
{
    if (kind != armed)
        return 0;
    if (++count != fail_at)
        return 0;
    fired = 1;
    return 1;
}

/* ---- libc, through -Wl,--wrap (index/ and libfaiss.a only) ----------------- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
ssize_t __real_pwrite(int fd, const void *p, size_t n, off_t off);
ssize_t __real_write(int fd, const void *p, size_t n);
size_t __real_fwrite(const void *p, size_t size, size_t n, FILE *f);
int __real_fflush(FILE *f);
int __real_fsync(int fd);
int __real_fdatasync(int fd);
int __real_rename(const char *a, const char *b);

void *__wrap_malloc(size_t n)
{
    if (fault(F_ALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t m)
{
    if (fault(F_ALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_calloc(n, m);
}

void *__wrap_realloc(void *p, size_t n)
{
    if (fault(F_ALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    if (fault(F_ALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_strdup(s);
}

ssize_t __wrap_pwrite(int fd, const void *p, size_t n, off_t off)
{
    if (fault(F_WRITE)) {
        errno = ENOSPC;
        return -1;
    }
    return __real_pwrite(fd, p, n, off);
}

ssize_t __wrap_write(int fd, const void *p, size_t n)
{
    if (fault(F_WRITE)) {
        errno = ENOSPC;
        return -1;
    }
    return __real_write(fd, p, n);
}

size_t __wrap_fwrite(const void *p, size_t size, size_t n, FILE *f)
{
    if (fault(F_WRITE)) {
        errno = ENOSPC;
        return 0;
    }
    return __real_fwrite(p, size, n, f);
}

int __wrap_fflush(FILE *f)
{
    if (fault(F_WRITE)) {
        errno = ENOSPC;
        return EOF;
    }
    return __real_fflush(f);
}

int __wrap_fsync(int fd)
{
    if (fault(F_SYNC)) {
        errno = EIO;
        return -1;
    }
    return __real_fsync(fd);
}

int __wrap_fdatasync(int fd)
{
    if (fault(F_SYNC)) {
        errno = EIO;
        return -1;
    }
    return __real_fdatasync(fd);
}

int __wrap_rename(const char *a, const char *b)
{
    if (fault(F_RENAME)) {
        errno = EIO;
        return -1;
    }
    return __real_rename(a, b);
}

/* ---- SQLite's allocator ----------------------------------------------------- */

static sqlite3_mem_methods real_mem;

static void *mem_malloc(int n)
{
    return fault(F_ALLOC) ? NULL : real_mem.xMalloc(n);
}

static void *mem_realloc(void *p, int n)
{
    return fault(F_ALLOC) ? NULL : real_mem.xRealloc(p, n);
}

static void mem_free(void *p) { real_mem.xFree(p); }
static int mem_size(void *p) { return real_mem.xSize(p); }
static int mem_roundup(int n) { return real_mem.xRoundup(n); }
static int mem_init(void *p) { return real_mem.xInit(p); }
static void mem_shutdown(void *p) { real_mem.xShutdown(p); }

/* jansson */
static void *json_fail_malloc(size_t n)
{
    return fault(F_ALLOC) ? NULL : __real_malloc(n);
}

/* ---- a VFS shim over the default one ------------------------------------------ */

typedef struct {
    sqlite3_file base;
    sqlite3_file *real; /* right after this struct */
} shim_file_t;

static sqlite3_vfs *real_vfs;
static sqlite3_io_methods shim_io;

#define REAL(f) (((shim_file_t *)(f))->real)

static int shim_close(sqlite3_file *f)
{
    int rc = REAL(f)->pMethods->xClose(REAL(f));
    return rc;
}

static int shim_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
    return REAL(f)->pMethods->xRead(REAL(f), p, n, off);
}

static int shim_write(sqlite3_file *f, const void *p, int n,
                      sqlite3_int64 off)
{
    if (fault(F_WRITE))
        return SQLITE_IOERR_WRITE;
    return REAL(f)->pMethods->xWrite(REAL(f), p, n, off);
}

static int shim_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    if (fault(F_WRITE))
        return SQLITE_IOERR_TRUNCATE;
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int shim_sync(sqlite3_file *f, int flags)
{
    if (fault(F_SYNC))
        return SQLITE_IOERR_FSYNC;
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int shim_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int shim_lock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xLock(REAL(f), l);
}

static int shim_unlock(sqlite3_file *f, int l)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), l);
}

static int shim_check_lock(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int shim_fcntl(sqlite3_file *f, int op, void *arg)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int shim_sector(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int shim_dev(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int shim_shm_map(sqlite3_file *f, int pg, int sz, int extend,
                        void volatile **pp)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), pg, sz, extend, pp);
}

static int shim_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), off, n, flags);
}

static void shim_shm_barrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int shim_shm_unmap(sqlite3_file *f, int del)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), del);
}

static int shim_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    return REAL(f)->pMethods->xFetch(REAL(f), off, n, pp);
}

static int shim_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static int shim_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f,
                     int flags, int *out_flags)
{
    shim_file_t *s = (shim_file_t *)f;
    int rc;

    (void)vfs;
    s->real = (sqlite3_file *)(s + 1);
    rc = real_vfs->xOpen(real_vfs, name, s->real, flags, out_flags);
    /* SQLite calls xClose when pMethods is set, even after a failed open */
    s->base.pMethods = s->real->pMethods ? &shim_io : NULL;
    return rc;
}

static int shim_delete(sqlite3_vfs *v, const char *name, int sync)
{
    (void)v;
    return real_vfs->xDelete(real_vfs, name, sync);
}

static int shim_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    (void)v;
    return real_vfs->xAccess(real_vfs, name, flags, out);
}

static int shim_full(sqlite3_vfs *v, const char *name, int n, char *out)
{
    (void)v;
    return real_vfs->xFullPathname(real_vfs, name, n, out);
}

static int shim_random(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return real_vfs->xRandomness(real_vfs, n, out);
}

static int shim_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return real_vfs->xSleep(real_vfs, us);
}

static int shim_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return real_vfs->xCurrentTime(real_vfs, out);
}

static int shim_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

static int shim_last_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return real_vfs->xGetLastError(real_vfs, n, out);
}

static sqlite3_vfs shim_vfs;

static void install_faults(void)
{
    CHECK(sqlite3_config(SQLITE_CONFIG_GETMALLOC, &real_mem) == SQLITE_OK);
    sqlite3_mem_methods m = real_mem;
    m.xMalloc = mem_malloc;
    m.xRealloc = mem_realloc;
    m.xFree = mem_free;
    m.xSize = mem_size;
    m.xRoundup = mem_roundup;
    m.xInit = mem_init;
    m.xShutdown = mem_shutdown;
    CHECK(sqlite3_config(SQLITE_CONFIG_MALLOC, &m) == SQLITE_OK);
    CHECK(sqlite3_initialize() == SQLITE_OK);
    json_set_alloc_funcs(json_fail_malloc, free);

    real_vfs = sqlite3_vfs_find(NULL);
    CHECK(real_vfs && real_vfs->iVersion >= 2);
    shim_io = (sqlite3_io_methods){
        .iVersion = 3,
        .xClose = shim_close,
        .xRead = shim_read,
        .xWrite = shim_write,
        .xTruncate = shim_truncate,
        .xSync = shim_sync,
        .xFileSize = shim_size,
        .xLock = shim_lock,
        .xUnlock = shim_unlock,
        .xCheckReservedLock = shim_check_lock,
        .xFileControl = shim_fcntl,
        .xSectorSize = shim_sector,
        .xDeviceCharacteristics = shim_dev,
        .xShmMap = shim_shm_map,
        .xShmLock = shim_shm_lock,
        .xShmBarrier = shim_shm_barrier,
        .xShmUnmap = shim_shm_unmap,
        .xFetch = shim_fetch,
        .xUnfetch = shim_unfetch,
    };
    shim_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(shim_file_t) + real_vfs->szOsFile,
        .mxPathname = real_vfs->mxPathname,
        .zName = "sense-faults",
        .xOpen = shim_open,
        .xDelete = shim_delete,
        .xAccess = shim_access,
        .xFullPathname = shim_full,
        .xDlOpen = real_vfs->xDlOpen,
        .xDlError = real_vfs->xDlError,
        .xDlSym = real_vfs->xDlSym,
        .xDlClose = real_vfs->xDlClose,
        .xRandomness = shim_random,
        .xSleep = shim_sleep,
        .xCurrentTime = shim_time,
        .xGetLastError = shim_last_error,
        .xCurrentTimeInt64 = shim_time64,
    };
    CHECK(sqlite3_vfs_register(&shim_vfs, 1) == SQLITE_OK);
}

/* ---- the model of what must be there ----------------------------------------- */

#define MAX_DOCS 4096

static char dir[256], db_path[300];
static char err[1024];
static struct {
    int present; /* acknowledged (or found after a failure) */
    int seed;
} docs[MAX_DOCS];
static int n_ids; /* doc ids used: "d<i>", i < n_ids */

static void vec_of(int seed, float *v)
{
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(seed + 1);
    double s = 0;
    for (int i = 0; i < D; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v[i] = (float)((double)(x >> 11) / 9007199254740992.0 - 0.5);
        s += (double)v[i] * v[i];
    }
    for (int i = 0; i < D; i++)
        v[i] = (float)(v[i] / sqrt(s));
}

static int doc_exists(sn_store_t *st, int i)
{
    char id[16];
    const char *ids[1] = {id};
    sn_doc_t *out;
    int n;
    snprintf(id, sizeof id, "d%d", i);
    CHECK_OK(sn_store_get(st, "c", ids, 1, &out, &n, err, sizeof err), err);
    for (int k = 0; k < n; k++)
        sn_doc_free(&out[k]);
    free(out);
    return n == 1;
}

/* Everything the model holds is there, and found by its own vector; what it
 * does not hold is not. */
static void verify(sn_store_t *st, const char *when)
{
    for (int i = 0; i < n_ids; i++) {
        int there = doc_exists(st, i);
        if (there != docs[i].present) {
            fprintf(stderr, "%s: document d%d is %s, expected %s\n", when, i,
                    there ? "there" : "missing",
                    docs[i].present ? "there" : "gone");
            exit(1);
        }
        if (!there)
            continue;
        float q[D];
        sn_hit_t *h;
        int n;
        char id[16];
        vec_of(docs[i].seed, q);
        snprintf(id, sizeof id, "d%d", i);
        CHECK_OK(sn_store_search(st, "c", "m", q, 1, NULL, &h, &n, err,
                                 sizeof err), err);
        if (n != 1 || strcmp(h[0].id, id) != 0 ||
            fabsf(h[0].score - 1.0f) > 1e-4f) {
            fprintf(stderr, "%s: search for d%d found '%s' (%g)\n", when, i,
                    n ? h[0].id : "nothing", n ? h[0].score : 0.0);
            exit(1);
        }
        sn_hits_free(h, n);
    }
}

/* ---- the operations -------------------------------------------------------------- */

/* Add NEW_PER_ADD new documents and replace one old one, in one call. */
#define NEW_PER_ADD 2
static int op_add(sn_store_t *st, int seed_base, int *first)
{
    enum { M = NEW_PER_ADD + 1 };
    char ids[M][16], texts[M][64];
    float v[M][D];
    sn_chunk_in_t ch[M];
    sn_doc_in_t d[M];
    int which[M];

    CHECK(n_ids + NEW_PER_ADD < MAX_DOCS);
    *first = n_ids;
    for (int j = 0; j < M; j++) {
        /* the last one replaces the first document still present */
        int i = n_ids + j;
        if (j == M - 1)
            for (i = 0; i < n_ids && !docs[i].present; i++)
                ;
        which[j] = i;
        snprintf(ids[j], sizeof ids[j], "d%d", i);
        snprintf(texts[j], sizeof texts[j], "text of d%d, version %d", i,
                 seed_base);
        vec_of(seed_base + j, v[j]);
        ch[j] = (sn_chunk_in_t){0, (int32_t)strlen(texts[j]), v[j]};
        d[j] = (sn_doc_in_t){ids[j], texts[j], strlen(texts[j]),
                             "{\"k\": 1}", &ch[j], 1};
    }
    n_ids += NEW_PER_ADD;
    int rc = sn_store_add_create(st, "c", "m", D, SN_INDEX_FLAT, d, M, NULL,
                                 err, sizeof err);
    if (rc == 0) {
        for (int j = 0; j < M; j++) {
            docs[which[j]].present = 1;
            docs[which[j]].seed = seed_base + j;
        }
    }
    return rc;
}

/* After a failed add: all of it there, or none (the replaced document in
 * its old version). */
static void settle_add(sn_store_t *st, int first, int seed_base)
{
    int there = 0;
    for (int i = first; i < first + NEW_PER_ADD; i++)
        there += doc_exists(st, i);
    if (there != 0 && there != NEW_PER_ADD) {
        fprintf(stderr, "failed add left %d of %d documents\n", there,
                NEW_PER_ADD);
        exit(1);
    }
    if (there) { /* it reached the disk although it reported an error */
        for (int j = 0; j < NEW_PER_ADD; j++) {
            docs[first + j].present = 1;
            docs[first + j].seed = seed_base + j;
        }
        for (int i = 0; i < first; i++)
            if (docs[i].present) {
                docs[i].seed = seed_base + NEW_PER_ADD;
                break;
            }
    }
}

static int op_delete(sn_store_t *st, int *victim)
{
    char id[16];
    const char *ids[1] = {id};
    int n_del = 0, i;
    for (i = n_ids - 1; i >= 0 && !docs[i].present; i--)
        ;
    CHECK(i >= 0);
    *victim = i;
    snprintf(id, sizeof id, "d%d", i);
    int rc = sn_store_delete(st, "c", ids, 1, &n_del, err, sizeof err);
    if (rc == 0) {
        CHECK_EQ(n_del, 1);
        docs[i].present = 0;
    }
    return rc;
}

/* ---- the sweep ---------------------------------------------------------------------- */

enum { OP_ADD, OP_DELETE, OP_SAVE, N_OPS };
static const char *const op_names[N_OPS] = {"add", "delete", "save"};

static long points[N_OPS][N_KINDS], failed_ops[N_OPS][N_KINDS];
static int seed_next = 1000;

static sn_store_t *open_store(void)
{
    sn_store_t *st;
    CHECK_OK(sn_store_open(db_path, &st, err, sizeof err), err);
    return st;
}

/* One injection: the Nth call of `kind` fails during `op`. Returns whether
 * the fault fired (0: the sweep of this op and kind is over). */
static int inject(sn_store_t **stp, int op, int kind, long n)
{
    sn_store_t *st = *stp;
    int rc, first = 0, victim = -1, seed = seed_next;
    char when[128];

    seed_next += 8;
    if (op == OP_SAVE) {
        /* something to save: an add, fault-free */
        CHECK_OK(op_add(st, seed, &first), err);
        seed = seed_next;
        seed_next += 8;
    }
    err[0] = '\0';
    count = 0;
    fail_at = n;
    fired = 0;
    armed = kind;
    switch (op) {
    case OP_ADD: rc = op_add(st, seed, &first); break;
    case OP_DELETE: rc = op_delete(st, &victim); break;
    default: rc = sn_store_save(st, err, sizeof err); break;
    }
    armed = -1;
    snprintf(when, sizeof when, "%s, %s #%ld", op_names[op],
             kind_names[kind], n);
    if (!fired) {
        CHECK_OK(rc, err);
        return 0;
    }
    points[op][kind]++;
    if (rc < 0) {
        failed_ops[op][kind]++;
        if (!err[0]) {
            fprintf(stderr, "%s: failed without a message\n", when);
            exit(1);
        }
        if (op == OP_ADD)
            settle_add(st, first, seed);
        if (op == OP_DELETE && !doc_exists(st, victim))
            docs[victim].present = 0; /* reached the disk anyway */
    }
    /* the same store serves on: reads, then a write */
    verify(st, when);
    CHECK_OK(op_add(st, seed_next, &first), err);
    seed_next += 8;
    verify(st, when);
    /* and the disk has it all: closed (saving) and opened again */
    sn_store_close(st);
    *stp = st = open_store();
    verify(st, when);
    return 1;
}

int main(void)
{
    const char *full = getenv("SENSE_FAULTS_FULL");
    long stride = full && *full == '1' ? 1 : 5;
    long total = 0, total_failed = 0;
    sn_store_t *st;

    install_faults();
    snprintf(dir, sizeof dir, "/tmp/sn_faults_XXXXXX");
    CHECK(mkdtemp(dir));
    snprintf(db_path, sizeof db_path, "%s/faults.db", dir);
    st = open_store();
    for (int i = 0; i < 4; i++) {
        int first;
        CHECK_OK(op_add(st, seed_next, &first), err);
        seed_next += 8;
    }
    verify(st, "setup");

    for (int op = 0; op < N_OPS; op++)
        for (int kind = 0; kind < N_KINDS; kind++) {
            /* every point up to 8, then every stride-th: the first calls
             * (BEGIN, the first page) are where most paths differ */
            for (long n = 1;; n += n < 8 ? 1 : stride)
                if (!inject(&st, op, kind, n))
                    break;
            printf("faults: %-6s %-6s %4ld points injected, %4ld failed "
                   "cleanly, the rest absorbed; all survived\n",
                   op_names[op], kind_names[kind], points[op][kind],
                   failed_ops[op][kind]);
            total += points[op][kind];
            total_failed += failed_ops[op][kind];
        }
    sn_store_close(st);
    printf("faults: %ld points injected (%s sweep), %ld operations failed "
           "with an error, all survived: nothing acknowledged lost, the "
           "store served on\n", total, stride == 1 ? "full" : "quick",
           total_failed);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return 0;
}
