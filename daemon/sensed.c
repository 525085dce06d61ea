/*
 * sensed.c -- main() of the sense daemon: options, default paths, the model,
 * the store and the sense inventory (a second SQLite connection to the same
 * file, with a morph table that has WordNet's exception lists when
 * SN_WORDNET_DIR is installed), then the server (server.c) until
 * SIGTERM/SIGINT, then the inventory is closed (before its morph table) and
 * the store, which saves its indexes.
 *
 * Default paths (the client, client/conn.c, resolves the socket the same
 * way):
 *   socket   $SENSE_SOCKET, else $XDG_RUNTIME_DIR/sense.sock, else
 *            /tmp/sense-$UID/sense.sock (the folder made 0700 and checked to
 *            be ours: /tmp is shared)
 *   db       $SENSE_DATA/sense.db, else $XDG_DATA_HOME/sense/sense.db, else
 *            ~/.local/share/sense/sense.db (folders made 0700)
 *
 * Threads: --threads N encoder workers (default 1); each worker's BLAS
 * calls get cores / N threads (openblas_set_num_threads before the workers'
 * contexts are made), so workers x BLAS threads never exceeds the cores.
 *
 * Exit status: 0 after a clean shutdown, 1 on a start-up failure (the
 * message says what), 2 on bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <time.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cblas.h>

#include "daemon.h"
#include "sense/wordnet.h"

static const char usage[] =
    "usage: sensed [options]\n"
    "\n"
    "Serve embeddings, similarity search and word senses over a Unix\n"
    "socket (newline-delimited JSON; see docs/protocol.md).\n"
    "\n"
    "options:\n"
    "  --socket PATH        the socket (default $SENSE_SOCKET, else\n"
    "                       $XDG_RUNTIME_DIR/sense.sock, else\n"
    "                       /tmp/sense-$UID/sense.sock)\n"
    "  --socket-group NAME  make the socket 0660 for group NAME (default:\n"
    "                       0600, owner only)\n"
    "  --db PATH            the database (default $SENSE_DATA/sense.db, else\n"
    "                       $XDG_DATA_HOME/sense/sense.db, else\n"
    "                       ~/.local/share/sense/sense.db)\n"
    "  --model PATH|NAME    model folder, 'default' (the default model), or\n"
    "                       a repository id fetched by `sense pull`\n"
    "  --precision P        the encoder's dense layers: auto (default:\n"
    "                       the fastest that keeps cosine 0.9999 to f32 on\n"
    "                       this CPU; $SENSE_PRECISION replaces it), f32,\n"
    "                       bf16 or int8. Its products run on our\n"
    "                       kernels, or on oneDNN where it is 1.25x\n"
    "                       faster at load ($SENSE_GEMM=ours|onednn\n"
    "                       forces one); the log says what ran\n"
    "  --threads N          encoder worker threads (default 1; BLAS gets\n"
    "                       cores / N threads each)\n"
    "  --hnsw KIND          what an HNSW index holds: f32 (default: the\n"
    "                       vectors), sq8 (8-bit codes, a third of the\n"
    "                       memory; results reranked exactly from the\n"
    "                       database), faiss (faiss' own HNSW, for\n"
    "                       comparison) or ivf (not a graph: k-means\n"
    "                       lists of 8-bit codes, reranked like sq8;\n"
    "                       builds 1M vectors in ~45 s, searches slower\n"
    "                       than the graph). An index of another kind is\n"
    "                       rebuilt in the background at its next use\n"
    "  --max-line BYTES     longest request line (default 16M; K, M, G\n"
    "                       suffixes)\n"
    "  --max-connections N  concurrent connections (default 512)\n"
    "  --batch-tokens N     tokens per encoder batch (default 4096)\n"
    "  --batch-wait-us N    the longest a text waits in the queue for more\n"
    "                       requests to batch with, while an encoder worker\n"
    "                       is free; only when recent batches held requests\n"
    "                       from several connections: a lone client's\n"
    "                       requests start at once (default 2000; 0: never)\n"
    "  --idle-timeout SEC   close a connection that sent nothing and read\n"
    "                       no reply for SEC seconds, with no work in\n"
    "                       flight (default 600; 0: never)\n"
    "  --http HOST:PORT     also serve HTTP (OpenAI and TEI embeddings, REST\n"
    "                       documents and search, /health, /metrics; see\n"
    "                       docs/http.md), e.g. 127.0.0.1:8080\n"
    "  --api-key-file FILE  HTTP requests need 'Authorization: Bearer KEY'\n"
    "                       with the key in FILE (required for an address\n"
    "                       other than loopback)\n"
    "  --cors ORIGIN        send CORS headers for ORIGIN ('*': any)\n"
    "  --http-idle-timeout SECONDS\n"
    "                       close HTTP connections idle this long (default\n"
    "                       60)\n"
    "  --log-level LEVEL    error, warn, info (default) or debug\n"
    "  --check              load and validate the model, print a summary,\n"
    "                       exit\n"
    "  -h, --help           this help\n"
    "  --version            print the version\n"
    "\n"
    "SIGTERM or SIGINT: stop accepting, finish the requests already read,\n"
    "save the indexes, exit 0.\n";

/* The socket's default; for /tmp/sense-$UID, the folder is made 0700 and
 * must be ours, a real folder, and closed to others. */
static int default_socket(char *buf, size_t len, char *err, size_t err_len)
{
    const char *v;
    int n;
    if ((v = getenv("SENSE_SOCKET")) && *v) {
        n = snprintf(buf, len, "%s", v);
    } else if ((v = getenv("XDG_RUNTIME_DIR")) && *v) {
        n = snprintf(buf, len, "%s/sense.sock", v);
    } else {
        char dir[64];
        struct stat st;
        snprintf(dir, sizeof dir, "/tmp/sense-%u", (unsigned)getuid());
        if (mkdir(dir, 0700) && errno != EEXIST)
            return sn__derr(err, err_len, -errno, "cannot create '%s': %s",
                            dir, strerror(errno));
        if (lstat(dir, &st))
            return sn__derr(err, err_len, -errno, "'%s': %s", dir,
                            strerror(errno));
        if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() ||
            (st.st_mode & 077))
            return sn__derr(err, err_len, -EPERM,
                            "'%s' is not a private folder of this user; "
                            "use --socket", dir);
        n = snprintf(buf, len, "%s/sense.sock", dir);
    }
    if (n < 0 || (size_t)n >= len)
        return sn__derr(err, err_len, -ENAMETOOLONG, "socket path too long");
    return 0;
}

/* The default data folder holds the documents: 0700 whatever the umask or
 * the mode it was left with (an older setup made it 0755). */
static int private_folder(const char *db_path)
{
    char dir[4096];
    const char *slash = strrchr(db_path, '/');
    struct stat st;

    if (!slash || slash == db_path || (size_t)(slash - db_path) >= sizeof dir)
        return 0;
    memcpy(dir, db_path, (size_t)(slash - db_path));
    dir[slash - db_path] = '\0';
    if (lstat(dir, &st) != 0)
        return -errno;
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid())
        return -EPERM;
    if ((st.st_mode & 07777) != 0700 && chmod(dir, 0700) != 0)
        return -errno;
    if ((st.st_mode & 07777) != 0700)
        sn__log_info("data folder '%s' made private (0700, was %04o)", dir,
                     (unsigned)(st.st_mode & 07777));
    return 0;
}

static void store_log(void *ud, sn_store_level_t level, const char *line)
{
    (void)ud;
    if (level == SN_STORE_WARN)
        sn__log_warn("store: %s", line);
    else
        sn__log_info("store: %s", line);
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    default: break;
    }
    if (*end || v < 64 || v > (1ull << 31))
        return -1;
    *out = (size_t)v;
    return 0;
}

static int parse_int(const char *s, int min, int max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    enum { O_SOCKET = 256, O_GROUP, O_DB, O_MODEL, O_THREADS, O_MAXLINE,
           O_MAXCONN, O_BTOK, O_BWAIT, O_IDLE, O_LOG, O_CHECK, O_VERSION,
           O_HTTP, O_KEYFILE, O_CORS, O_HTTP_IDLE, O_PREC, O_HNSW };
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, O_SOCKET},
        {"socket-group", required_argument, NULL, O_GROUP},
        {"db", required_argument, NULL, O_DB},
        {"model", required_argument, NULL, O_MODEL},
        {"precision", required_argument, NULL, O_PREC},
        {"threads", required_argument, NULL, O_THREADS},
        {"hnsw", required_argument, NULL, O_HNSW},
        {"max-line", required_argument, NULL, O_MAXLINE},
        {"max-connections", required_argument, NULL, O_MAXCONN},
        {"batch-tokens", required_argument, NULL, O_BTOK},
        {"batch-wait-us", required_argument, NULL, O_BWAIT},
        {"idle-timeout", required_argument, NULL, O_IDLE},
        {"log-level", required_argument, NULL, O_LOG},
        {"http", required_argument, NULL, O_HTTP},
        {"api-key-file", required_argument, NULL, O_KEYFILE},
        {"cors", required_argument, NULL, O_CORS},
        {"http-idle-timeout", required_argument, NULL, O_HTTP_IDLE},
        {"check", no_argument, NULL, O_CHECK},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    const char *model_path = "default", *socket_path = NULL, *db_path = NULL;
    char socket_buf[4096], db_buf[4096], err[1024];
    int db_default = 0;
    sn__server_opts_t o = {0};
    sn_model_t *model = NULL;
    sn_store_t *store = NULL;
    sn_senses_t *senses = NULL;
    sn_wsd_morph_t *morph = NULL;
    const char *key_file = NULL;
    char *api_key = NULL;
    int check = 0, c, rc, status = 1, idle_s = 60, prec = SN_PREC_AUTO;
    int hnsw = SN_HNSW_F32;

    o.max_line = SN_MAX_LINE_DEFAULT;
    o.sched.n_workers = 1;
    o.sched.batch_tokens = 4096;
    o.sched.window_us = 2000;
    o.idle_ms = 600 * 1000;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case O_SOCKET: socket_path = optarg; break;
        case O_GROUP: o.socket_group = optarg; break;
        case O_DB: db_path = optarg; break;
        case O_MODEL: model_path = optarg; break;
        case O_PREC: bad = (prec = sn_precision_parse(optarg)) < 0; break;
        case O_THREADS:
            bad = parse_int(optarg, 1, 64, &o.sched.n_workers);
            break;
        case O_HNSW:
            hnsw = sn_hnsw_kind_parse(optarg);
            bad = hnsw < 0;
            break;
        case O_MAXLINE: bad = parse_size(optarg, &o.max_line); break;
        case O_MAXCONN:
            bad = parse_int(optarg, 1, 1 << 20, &o.n_conns_max);
            break;
        case O_BTOK:
            bad = parse_int(optarg, 1, 1 << 20, &o.sched.batch_tokens);
            break;
        case O_BWAIT:
            bad = parse_int(optarg, 0, 1000000, &o.sched.window_us);
            break;
        case O_IDLE: {
            char *end;
            double sec = strtod(optarg, &end);
            bad = end == optarg || *end || !(sec >= 0) || sec > 86400 * 365;
            o.idle_ms = bad ? 0 : (int)(sec * 1000 + 0.5);
            if (!bad && sec > 0 && o.idle_ms == 0)
                o.idle_ms = 1;
            break;
        }
        case O_LOG: {
            int lv = sn__log_parse_level(optarg);
            if (lv < 0)
                bad = 1;
            else
                sn__log_level = (sn__log_level_t)lv;
            break;
        }
        case O_CHECK: check = 1; break;
        case O_HTTP: o.http.addr = optarg; break;
        case O_KEYFILE: key_file = optarg; break;
        case O_CORS: o.http.cors = optarg; break;
        case O_HTTP_IDLE: bad = parse_int(optarg, 1, 86400, &idle_s); break;
        case 'h': fputs(usage, stdout); return 0;
        case O_VERSION: printf("sensed %s\n", SN_VERSION); return 0;
        default: fputs(usage, stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "sensed: %s: bad value '%s'\n",
                    argv[optind - 1], optarg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sensed: unexpected argument '%s'\n", argv[optind]);
        fputs(usage, stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    o.http.idle_ms = idle_s * 1000;
    if (key_file && !o.http.addr) {
        fprintf(stderr, "sensed: --api-key-file is for --http\n");
        return 2;
    }
    if (o.http.addr) {
        /* before the model loads: a refusal should be quick */
        int loopback = 0;
        if (sn__http_check_addr(o.http.addr, &loopback, err, sizeof err)) {
            fprintf(stderr, "sensed: %s\n", err);
            return 2;
        }
        if (key_file &&
            sn__http_read_key(key_file, &api_key, err, sizeof err)) {
            sn__log_error("--api-key-file: %s", err);
            return 1;
        }
        if (!loopback && !api_key) {
            sn__log_error("refusing to serve HTTP on '%s', which is not a "
                          "loopback address, without --api-key-file",
                          o.http.addr);
            return 1;
        }
        o.http.api_key = api_key;
    }

    /* BLAS threads per worker, before any encoder context exists */
    long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
    int blas = (int)(n_cpu > 0 ? n_cpu : 1) / o.sched.n_workers;
    openblas_set_num_threads(blas > 0 ? blas : 1);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if ((rc = sn_model_load_prec(model_path, (sn_precision_t)prec, &model,
                                 err, sizeof err))) {
        sn__log_error("cannot load model '%s': %s", model_path, err);
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    sn__log_info("model %s: dim %d, max %d tokens", sn_model_name(model),
                 sn_model_dim(model), sn_model_max_tokens(model));
    sn__log_info("%s; loaded in %.0f ms", sn_model_precision_why(model),
                 (t1.tv_sec - t0.tv_sec) * 1e3 +
                     (t1.tv_nsec - t0.tv_nsec) / 1e6);
    if (check) {
        fprintf(stderr, "sensed: model %s: dim %d, max %d tokens\n",
                sn_model_name(model), sn_model_dim(model),
                sn_model_max_tokens(model));
        status = 0;
        goto out;
    }
    if (!socket_path) {
        if (default_socket(socket_buf, sizeof socket_buf, err, sizeof err)) {
            sn__log_error("%s", err);
            goto out;
        }
        socket_path = socket_buf;
    }
    if (!db_path) {
        if ((rc = sn_data_path("sense.db", db_buf, sizeof db_buf))) {
            sn__log_error("no default database path (set HOME or use --db)");
            goto out;
        }
        db_path = db_buf;
        db_default = 1;
    }
    if ((rc = sn_mkdir_parents(db_path))) {
        sn__log_error("cannot create the folder of '%s': %s", db_path,
                      strerror(-rc));
        goto out;
    }
    if (db_default && (rc = private_folder(db_path)) < 0) {
        sn__log_error("cannot make the folder of '%s' private (0700): %s",
                      db_path, strerror(-rc));
        goto out;
    }
    if ((rc = sn_store_open(db_path, &store, err, sizeof err))) {
        sn__log_error("cannot open database '%s': %s", db_path, err);
        goto out;
    }
    /* The store's notes (an index rebuilt, caught up, not saved; damaged
     * vectors) go to the log; those from the open come now. */
    sn_store_set_log(store, store_log, NULL);
    /* no surprise pauses: index builds run beside searches and writes */
    sn_store_set_background(store, 1);
    sn_store_set_hnsw(store, (sn_hnsw_kind_t)hnsw);
    sn__log_info("database '%s', hnsw indexes: %s", db_path,
                 sn_hnsw_kind_name((sn_hnsw_kind_t)hnsw));
    if ((rc = sn_wsd_morph_new(&morph, err, sizeof err))) {
        sn__log_error("cannot make the morph table: %s", err);
        goto out;
    }
    struct stat wst;
    if (!stat(SN_WORDNET_DIR, &wst) && S_ISDIR(wst.st_mode)) {
        int n_files = 0;
        /* not fatal: words are still found, fewer irregular forms */
        if (sn_wsd_morph_load_wordnet(morph, SN_WORDNET_DIR, &n_files, err,
                                      sizeof err))
            sn__log_warn("WordNet's exception lists: %s; going on with "
                         "those read", err);
        sn__log_info("morph table: %zu irregular forms (%d WordNet lists "
                     "from '%s')", sn_wsd_morph_size(morph), n_files,
                     SN_WORDNET_DIR);
        /* read at the first search with a text (logged then); optional:
         * without WordNet the lexical list has the query's words only */
        if (sn_store_set_synonyms(store, SN_WORDNET_DIR) < 0)
            sn__log_warn("no synonyms for lexical search: out of memory");
    }
    if ((rc = sn_senses_open(db_path, &senses, err, sizeof err))) {
        sn__log_error("cannot open the sense inventory in '%s': %s", db_path,
                      err);
        goto out;
    }
    sn_senses_set_morph(senses, morph);
    o.socket_path = socket_path;
    if ((rc = sn__server_run(&o, model, store, senses, morph, err,
                             sizeof err))) {
        sn__log_error("%s", err);
        goto out;
    }
    status = 0;
out:
    sn_senses_close(senses); /* before the morph table it borrows */
    sn_wsd_morph_free(morph);
    if (store) {
        /* Say what happened: a failed save costs a rebuild or a catch-up
         * at the next start, never data, but it is not "saved". */
        if (sn_store_save(store, err, sizeof err) < 0)
            sn__log_warn("indexes not saved (they will be rebuilt or caught "
                         "up from the database at the next start): %s", err);
        else
            sn__log_info("indexes saved");
        sn_store_set_log(store, NULL, NULL); /* close's own retry: quiet */
        sn_store_close(store);
        sn__log_info("database closed");
    }
    sn_model_free(model);
    free(api_key);
    if (!check)
        sn__log_info("exit %d", status);
    return status;
}
