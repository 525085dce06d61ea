/*
 * cmd_wordnet.c -- `sense senses import-wordnet`: WordNet 3.0's polysemous
 * lemmas into the sense inventory of a database, in this process.
 *
 * No daemon is involved: the model is loaded here (the default one, or
 * --model) and the inventory opened on the database file directly
 * (sn_senses_open: its own SQLite connection, WAL), so the import can run
 * beside a daemon serving the same file -- each batch is one short write
 * transaction, and the daemon sees the senses as soon as a batch commits.
 * The senses are stored under the model's id: the daemon uses them when it
 * runs the same model.
 *
 * Output: a progress line on stderr when stderr is a terminal, and a
 * summary line on stdout at the end.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "sense/wordnet.h"

static const char import_usage[] =
    "usage: sense senses import-wordnet [options]\n"
    "\n"
    "Import WordNet 3.0's lemmas that have more than one sense into the\n"
    "sense inventory: every sense (named like 'bank.n.02') with its example\n"
    "sentences that contain the lemma, and its gloss. Runs in this process\n"
    "on the database file; the daemon may be running meanwhile (it sees the\n"
    "new senses at once) but need not be. Importing again refreshes the\n"
    "WordNet senses and leaves the others alone.\n"
    "\n"
    "options:\n"
    "  --dir DIR          WordNet's database files (default\n"
    "                     " SN_WORDNET_DIR "; Debian package wordnet-base)\n"
    "  --offset N         start at the Nth lemma, in alphabetical order\n"
    "                     (from 0)\n"
    "  --limit N          import N lemmas at most (default: all of them)\n"
    "  --db PATH          the database (default $SENSE_DATA/sense.db, else\n"
    "                     $XDG_DATA_HOME/sense/sense.db, else\n"
    "                     ~/.local/share/sense/sense.db, as for sensed)\n"
    "  --model PATH       model folder, or 'default' (the default); the\n"
    "                     daemon uses the senses when it runs this model\n"
    "  -h, --help         this help\n"
    "\n"
    "exit status: 0 ok, 1 error, 2 usage\n";

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress(void *ud, int done, int total, int64_t n_exemplars)
{
    (void)ud;
    int width = 30, fill = total > 0 ? (int)((long long)done * width / total)
                                     : width;
    fprintf(stderr, "\rimporting [%.*s%*s] %d/%d lemmas, %lld exemplars",
            fill, "##############################", width - fill, "", done,
            total, (long long)n_exemplars);
    fflush(stderr);
}

static int parse_count(const char *opt, const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > 0x7fffffffL) {
        sn_cli_error("%s: '%s' is not a count", opt, s);
        return SN_EXIT_USAGE;
    }
    *out = v;
    return 0;
}

int sn_cmd_import_wordnet(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"dir", required_argument, NULL, 'd'},
        {"offset", required_argument, NULL, 'o'},
        {"limit", required_argument, NULL, 'l'},
        {"db", required_argument, NULL, 'b'},
        {"model", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = SN_WORDNET_DIR, *db = NULL, *model_path = "default";
    char db_buf[4096], err[1024];
    sn_wordnet_t *wn = NULL;
    sn_model_t *model = NULL;
    sn_ctx_t *ctx = NULL;
    sn_senses_t *senses = NULL;
    sn_wordnet_import_stats_t st = {0};
    long offset = 0, limit = 0;
    int c, rc, tty = isatty(STDERR_FILENO);
    double t0 = now_s();

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 'o':
            if ((rc = parse_count("--offset", optarg, &offset)))
                return rc;
            break;
        case 'l':
            if ((rc = parse_count("--limit", optarg, &limit)))
                return rc;
            if (limit == 0) {
                sn_cli_error("--limit: give at least 1 (no --limit: all)");
                return SN_EXIT_USAGE;
            }
            break;
        case 'b': db = optarg; break;
        case 'm': model_path = optarg; break;
        case 'h': fputs(import_usage, stdout); return SN_EXIT_OK;
        default: fputs(import_usage, stderr); return SN_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        sn_cli_error("import-wordnet: unexpected argument '%s'", argv[optind]);
        fputs(import_usage, stderr);
        return SN_EXIT_USAGE;
    }
    if (!db) {
        if (sn_data_path("sense.db", db_buf, sizeof db_buf)) {
            sn_cli_error("import-wordnet: no default database path (set HOME "
                         "or use --db)");
            return SN_EXIT_USAGE;
        }
        db = db_buf;
    }
    rc = SN_EXIT_ERROR;
    if (sn_wordnet_load(dir, 2, &wn, err, sizeof err)) {
        sn_cli_error("cannot read WordNet in '%s': %s", dir, err);
        if (!strcmp(dir, SN_WORDNET_DIR))
            sn_cli_error("install it with: apt-get install wordnet-base");
        goto out;
    }
    int n_lemmas = sn_wordnet_n_lemmas(wn);
    if (offset >= n_lemmas) {
        sn_cli_error("--offset %ld: WordNet in '%s' has %d lemmas with more "
                     "than one sense", offset, dir, n_lemmas);
        rc = SN_EXIT_USAGE;
        goto out;
    }
    if (limit == 0 || limit > n_lemmas - offset)
        limit = n_lemmas - offset;
    if (sn_model_load(model_path, &model, err, sizeof err)) {
        sn_cli_error("cannot load model '%s': %s", model_path, err);
        goto out;
    }
    if (!(ctx = sn_ctx_new(model))) {
        sn_cli_error("out of memory for the encoder");
        goto out;
    }
    int e = sn_mkdir_parents(db);
    if (e) {
        sn_cli_error("cannot create the folder of '%s': %s", db, strerror(-e));
        goto out;
    }
    if (sn_senses_open(db, &senses, err, sizeof err)) {
        sn_cli_error("cannot open the sense inventory in '%s': %s", db, err);
        goto out;
    }
    sn_wordnet_import_opts_t o = {(int)offset, (int)limit, 0,
                                  tty ? progress : NULL, NULL};
    int irc = sn_wordnet_import(wn, senses, model, ctx, &o, &st, err,
                                sizeof err);
    if (tty)
        fputs("\r\033[K", stderr);
    if (irc) {
        sn_cli_error("import into '%s' failed: %s", db, err);
        if (st.n_lemmas)
            sn_cli_error("the first %lld lemmas were imported; continue with "
                         "--offset %lld", (long long)st.n_lemmas,
                         (long long)(offset + st.n_lemmas));
        goto out;
    }
    printf("imported lemmas %ld-%ld of %d (%lld senses: %lld examples, %lld "
           "glosses; %lld examples without the lemma skipped) into '%s' for "
           "model '%s' in %.1f s\n", offset, offset + limit - 1, n_lemmas,
           (long long)st.n_senses, (long long)st.n_examples,
           (long long)st.n_glosses, (long long)st.n_skipped, db,
           sn_model_name(model), now_s() - t0);
    rc = SN_EXIT_OK;
out:
    sn_senses_close(senses);
    sn_ctx_free(ctx);
    sn_model_free(model);
    sn_wordnet_free(wn);
    return rc;
}
