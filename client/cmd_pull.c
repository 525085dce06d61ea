/*
 * cmd_pull.c -- `sense pull REPO_ID [--revision REV]`: download a model
 * from a Hugging Face-compatible hub into the data folder, where
 * `--model REPO_ID` (sense and sensed) finds it.
 *
 *   1. GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true: the
 *      commit and the files (siblings[].rfilename, size, lfs.sha256);
 *   2. keep the files the engine reads (wanted()): config, tokenizer files,
 *      safetensors weights (single or sharded) and the sentence-transformers
 *      modules; never pytorch_model.bin, onnx/, TensorFlow or Flax weights;
 *   3. download each into a staging folder, models/.pull/<org>--<name>/,
 *      as FILE.part, resuming what an earlier run left (HTTP Range), from
 *      {endpoint}/{repo}/resolve/{commit}/{file} (redirects followed; the
 *      commit, not the branch, so that every file is of one snapshot);
 *   4. check each file's size, and the sha256 of every LFS file, then
 *      rename FILE.part to FILE. A mismatch refuses the whole pull and
 *      deletes the staging folder: nothing of a corrupt download is kept;
 *   5. when all are there, move the staging folder to models/<org>/<name>
 *      in one rename (an atomic exchange with renameat2 when an older copy
 *      is there, which is then removed).
 * A load therefore finds either the previous complete model or the new
 * complete one, never a part. An interrupted or stalled pull keeps its
 * staging folder, and running it again resumes. One pull of a repository
 * at a time (a lock in the staging folder).
 *
 * The endpoint is $HF_ENDPOINT (default https://huggingface.co); a token in
 * $HF_TOKEN is sent as "Authorization: Bearer" (never to a redirect's other
 * host). Progress bars on stderr when it is a terminal.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "client.h"
#include "hub.h"
#include "sense/sense.h"

#define SN_PULL_DEFAULT_ENDPOINT "https://huggingface.co"
#define SN_PULL_MAX_API (32u << 20)  /* the API's reply: 32 MiB at most */
#define SN_PULL_MAX_FILES 4096       /* files kept from one repository */
#define SN_PULL_MAX_PATH 1024        /* a file's path in the repository */

static const char pull_usage[] =
    "usage: sense pull [--revision REV] [--timeout SECONDS] [--force] "
    "REPO_ID\n"
    "\n"
    "Download a model from the Hugging Face hub (or the hub at "
    "$HF_ENDPOINT)\n"
    "into the data folder, as models/<org>/<name>; then `--model REPO_ID`\n"
    "(sense embed, sensed) loads it by name. Only the files sense reads are\n"
    "fetched (config, tokenizer, safetensors weights, sentence-transformers\n"
    "modules). Running it again resumes an interrupted download, or says the\n"
    "model is up to date.\n"
    "\n"
    "options:\n"
    "  --revision REV     branch, tag or commit (default main)\n"
    "  --timeout SECONDS  give up when no data arrives for this long\n"
    "                     (default 30)\n"
    "  --force            download again even when up to date\n"
    "  -h, --help         this help\n"
    "\n"
    "environment: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN (a\n"
    "token for private or gated repositories), SENSE_DATA (the data folder,\n"
    "default $XDG_DATA_HOME/sense, else ~/.local/share/sense)\n"
    "\n"
    "example: sense pull sentence-transformers/all-MiniLM-L6-v2\n"
    "         sense embed --model sentence-transformers/all-MiniLM-L6-v2 hi\n"
    "\n"
    "exit status: 0 ok, 1 error, 2 usage\n";

typedef struct {
    char *path;       /* in the repository, e.g. "1_Pooling/config.json" */
    int64_t size;     /* -1: not listed */
    char sha256[65];  /* LFS files; "" otherwise */
} file_t;

typedef struct {
    file_t *v;
    int n;
} files_t;

static void files_free(files_t *fs)
{
    for (int i = 0; i < fs->n; i++)
        free(fs->v[i].path);
    free(fs->v);
    fs->v = NULL;
    fs->n = 0;
}

/* vsnprintf into err: messages with paths may be cut, never overflow. */
static void errf(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* ---- which files ------------------------------------------------------------- */

/* A path the hub may list and we may write: relative, no empty, "." or
 * ".." parts, no backslash or control characters. */
static int safe_path(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n >= SN_PULL_MAX_PATH || p[0] == '/')
        return 0;
    for (const char *s = p; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == '\\')
            return 0;
    for (const char *s = p;;) {
        size_t k = strcspn(s, "/");
        if (k == 0 || (k == 1 && s[0] == '.') ||
            (k == 2 && s[0] == '.' && s[1] == '.'))
            return 0;
        if (!s[k])
            return 1;
        s += k + 1;
    }
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* "model-00001-of-00003.safetensors" */
static int is_shard(const char *f)
{
    unsigned a, b;
    int end = 0;
    return sscanf(f, "model-%5u-of-%5u.safetensors%n", &a, &b, &end) == 2 &&
           end > 0 && f[end] == '\0';
}

/* The files sense reads from a model repository. */
static int wanted(const char *f)
{
    static const char *const top[] = {
        "config.json", "model.safetensors", "model.safetensors.index.json",
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
        "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt",
        "modules.json", "sentence_bert_config.json",
        "config_sentence_transformers.json",
    };
    const char *slash = strchr(f, '/');
    if (!slash) {
        for (size_t i = 0; i < sizeof top / sizeof *top; i++)
            if (!strcmp(f, top[i]))
                return 1;
        return is_shard(f);
    }
    /* a sentence-transformers module folder: "1_Pooling", "2_Dense",
     * "3_Normalize" (digits, '_', a name), one level deep */
    size_t i = 0;
    while (f[i] >= '0' && f[i] <= '9')
        i++;
    if (i == 0 || f[i] != '_' || strchr(slash + 1, '/'))
        return 0;
    if (!strncmp(f + i, "_Transformer/", 13)) /* the encoder is at the top */
        return 0;
    return ends_with(slash + 1, ".json") ||
           !strcmp(slash + 1, "model.safetensors");
}

/* The repository's files (from the API reply) that sense reads. */
static int parse_listing(const char *body, size_t len, const char *url,
                         char *commit, size_t commit_len, files_t *out,
                         char *err, size_t err_len)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr), *sibs, *s;
    int rc = 0, have_weights = 0, have_config = 0, have_pt = 0, have_onnx = 0;
    size_t i;

    if (!root || !json_is_object(root)) {
        errf(err, err_len, "'%s': the reply is not a json object%s%s",
                 url, root ? "" : ": ", root ? "" : jerr.text);
        json_decref(root);
        return SN_EJSON;
    }
    const char *sha = json_string_value(json_object_get(root, "sha"));
    snprintf(commit, commit_len, "%s", sha ? sha : "");
    sibs = json_object_get(root, "siblings");
    if (!json_is_array(sibs)) {
        errf(err, err_len, "'%s': no 'siblings' list of files", url);
        json_decref(root);
        return SN_EJSON;
    }
    out->v = calloc(json_array_size(sibs) + 1, sizeof *out->v);
    if (!out->v) {
        json_decref(root);
        errf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    json_array_foreach(sibs, i, s) {
        const char *f = json_string_value(json_object_get(s, "rfilename"));
        if (!f) {
            errf(err, err_len, "'%s': siblings[%zu] has no rfilename",
                     url, i);
            rc = SN_EJSON;
            goto out;
        }
        if (!strncmp(f, "pytorch_model", 13))
            have_pt = 1;
        if (!strncmp(f, "onnx/", 5) || ends_with(f, ".onnx"))
            have_onnx = 1;
        if (!wanted(f))
            continue;
        if (!safe_path(f)) {
            errf(err, err_len, "'%s': the hub lists a file at an unsafe "
                                   "path: '%s'", url, f);
            rc = SN_EPROTO;
            goto out;
        }
        if (out->n >= SN_PULL_MAX_FILES) {
            errf(err, err_len, "'%s': more than %d files", url,
                     SN_PULL_MAX_FILES);
            rc = SN_ETOOBIG;
            goto out;
        }
        file_t *fi = &out->v[out->n];
        fi->size = -1;
        json_t *size = json_object_get(s, "size");
        json_t *lfs = json_object_get(s, "lfs");
        if (json_is_integer(size) && json_integer_value(size) >= 0)
            fi->size = json_integer_value(size);
        if (json_is_object(lfs)) {
            const char *h = json_string_value(json_object_get(lfs, "sha256"));
            json_t *ls = json_object_get(lfs, "size");
            if (!h || strlen(h) != 64 || strspn(h, "0123456789abcdef") != 64) {
                errf(err, err_len, "'%s': '%s' has no valid lfs.sha256",
                         url, f);
                rc = SN_EJSON;
                goto out;
            }
            memcpy(fi->sha256, h, 65);
            if (json_is_integer(ls) && json_integer_value(ls) >= 0)
                fi->size = json_integer_value(ls);
        }
        if (!(fi->path = strdup(f))) {
            errf(err, err_len, "out of memory");
            rc = -ENOMEM;
            goto out;
        }
        out->n++;
        if (!strcmp(f, "model.safetensors") ||
            !strcmp(f, "model.safetensors.index.json"))
            have_weights = 1;
        if (!strcmp(f, "config.json"))
            have_config = 1;
    }
    if (!have_weights) {
        errf(err, err_len,
                 "the repository has no model.safetensors (nor "
                 "model.safetensors.index.json)%s: sense loads safetensors "
                 "weights only%s",
                 have_pt ? ", only pytorch_model.bin"
                         : have_onnx ? ", only ONNX files" : "",
                 have_pt ? "; convert them with the command that `sense "
                           "embed --model` prints for such a folder, or "
                           "pick a repository that has safetensors"
                         : "");
        rc = SN_EMODEL;
        goto out;
    }
    if (!have_config) {
        errf(err, err_len, "the repository has no config.json: not a "
                               "transformers model");
        rc = SN_EMODEL;
        goto out;
    }
out:
    json_decref(root);
    if (rc)
        files_free(out);
    return rc;
}

/* ---- the staging folder ----------------------------------------------------- */

static int rm_entry(const char *p, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p) == 0 || errno == ENOENT ? 0 : -1;
}

/* rm -rf */
static int rm_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -errno;
    return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -errno;
}

/* Remove everything in the staging folder but its lock file. */
static void clear_staging(const char *staging)
{
    DIR *d = opendir(staging);
    struct dirent *e;
    char p[8300];
    if (!d)
        return;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
            !strcmp(e->d_name, ".lock"))
            continue;
        snprintf(p, sizeof p, "%s/%s", staging, e->d_name);
        rm_tree(p);
    }
    closedir(d);
}

static int write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    if (!fp)
        return -errno;
    int bad = fputs(text, fp) < 0;
    if (fflush(fp) != 0 || fsync(fileno(fp)) != 0)
        bad = 1;
    if (fclose(fp) != 0 || bad)
        return -EIO;
    return 0;
}

static char *read_text(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return NULL;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return strdup(buf);
}

/* The commit recorded in FOLDER/.sense-pull.json, or "". */
static void pulled_commit(const char *folder, char *buf, size_t len)
{
    char path[4200];
    json_error_t jerr;
    buf[0] = '\0';
    snprintf(path, sizeof path, "%s/.sense-pull.json", folder);
    json_t *j = json_load_file(path, 0, &jerr);
    const char *c = json_string_value(json_object_get(j, "commit"));
    if (c)
        snprintf(buf, len, "%s", c);
    json_decref(j);
}

/* Move staging into place as final: an atomic exchange when final exists
 * (then the old copy, now at staging, is removed), else a rename. */
static int install(const char *staging, const char *final, char *err,
                   size_t err_len)
{
    struct stat st;
    int rc = sn_mkdir_parents(final);
    if (rc) {
        errf(err, err_len, "'%s': %s", final, strerror(-rc));
        return rc;
    }
    if (lstat(final, &st) != 0) {
        if (rename(staging, final) != 0) {
            errf(err, err_len, "cannot move '%s' to '%s': %s", staging,
                     final, strerror(errno));
            return -errno;
        }
        return 0;
    }
    if (renameat2(AT_FDCWD, staging, AT_FDCWD, final, RENAME_EXCHANGE) == 0)
        return rm_tree(staging) == 0 ? 0 : 0; /* a leftover costs space only */
    /* no RENAME_EXCHANGE here (old kernel, some filesystems): two renames,
     * with a moment in between when no model is there (never a partial) */
    char old[4200];
    snprintf(old, sizeof old, "%s.old-%ld", staging, (long)getpid());
    if (rename(final, old) != 0 || rename(staging, final) != 0) {
        errf(err, err_len, "cannot move '%s' to '%s': %s", staging, final,
                 strerror(errno));
        return -errno;
    }
    rm_tree(old);
    return 0;
}

/* ---- the command ------------------------------------------------------------- */

int sn_cmd_pull(int argc, char **argv)
{
    enum { O_REVISION = 256, O_TIMEOUT, O_FORCE };
    static const struct option longopts[] = {
        {"revision", required_argument, NULL, O_REVISION},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"force", no_argument, NULL, O_FORCE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *revision = "main";
    long timeout = 30;
    int force = 0, opt;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (opt) {
        case O_REVISION:
            revision = optarg;
            break;
        case O_TIMEOUT: {
            char *end;
            timeout = strtol(optarg, &end, 10);
            if (*end || timeout < 1 || timeout > 86400) {
                sn_cli_error("--timeout wants seconds, 1 to 86400");
                return SN_EXIT_USAGE;
            }
            break;
        }
        case O_FORCE:
            force = 1;
            break;
        case 'h':
            fputs(pull_usage, stdout);
            return SN_EXIT_OK;
        default:
            sn_cli_error("pull: unknown option '%s'; see 'sense pull --help'",
                         argv[optind - 1]);
            return SN_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        fputs(pull_usage, stderr);
        return SN_EXIT_USAGE;
    }
    const char *repo = argv[optind];
    if (!sn_model_repo_id_valid(repo)) {
        sn_cli_error("'%s' is not a repository id (org/name)", repo);
        return SN_EXIT_USAGE;
    }
    if (!*revision || strlen(revision) > 256) {
        sn_cli_error("--revision wants a branch, tag or commit");
        return SN_EXIT_USAGE;
    }

    char endpoint[2048], final[4096], staging[4096], name[512];
    char commit[128] = "", path[8192], err[1024] = "";
    char *body = NULL, *rev_esc = NULL, *repo_esc = NULL;
    files_t files = {0};
    size_t body_len = 0;
    int rc = SN_EXIT_ERROR, lock_fd = -1, hub_up = 0, drop_staging = 0;
    const char *ep = getenv("HF_ENDPOINT");
    snprintf(endpoint, sizeof endpoint, "%s",
             ep && *ep ? ep : SN_PULL_DEFAULT_ENDPOINT);
    for (size_t n = strlen(endpoint); n > 0 && endpoint[n - 1] == '/'; n--)
        endpoint[n - 1] = '\0';
    sn_hub_t hub = {.token = getenv("HF_TOKEN"),
                    .stall_s = timeout,
                    .progress = isatty(STDERR_FILENO)};

    snprintf(name, sizeof name, "models/.pull/%s", repo);
    for (char *s = name + strlen("models/.pull/"); *s; s++)
        if (*s == '/')
            *s = '+'; /* one folder per repository: org+name */
    if (sn_model_pulled_path(repo, final, sizeof final) ||
        sn_data_path(name, staging, sizeof staging)) {
        sn_cli_error("no data folder: set HOME or SENSE_DATA");
        return SN_EXIT_ERROR;
    }
    if (sn_hub_init()) {
        sn_cli_error("cannot start libcurl");
        return SN_EXIT_ERROR;
    }
    hub_up = 1;
    rev_esc = sn_hub_escape(revision, 0);
    repo_esc = sn_hub_escape(repo, 1);
    if (!rev_esc || !repo_esc)
        goto oom;

    /* 1. what the repository holds */
    snprintf(path, sizeof path, "%s/api/models/%s/revision/%s?blobs=true",
             endpoint, repo_esc, rev_esc);
    int r = sn_hub_get(&hub, path, SN_PULL_MAX_API, &body, &body_len, err,
                       sizeof err);
    if (r == SN_HUB_ENOTFOUND) {
        sn_cli_error("pull: no repository '%s' with revision '%s' at '%s' "
                     "(%s)", repo, revision, endpoint, err);
        goto out;
    }
    if (r) {
        sn_cli_error("pull: %s", err);
        goto out;
    }
    if ((r = parse_listing(body, body_len, path, commit, sizeof commit,
                           &files, err, sizeof err))) {
        sn_cli_error("pull: '%s': %s", repo, err);
        goto out;
    }
    const char *snap = commit[0] ? commit : revision;

    /* up to date? */
    char have[128];
    pulled_commit(final, have, sizeof have);
    if (!force && commit[0] && !strcmp(have, commit)) {
        printf("'%s' is up to date (commit %.12s) in '%s'\n", repo, commit,
               final);
        rc = SN_EXIT_OK;
        goto out;
    }

    /* 2. the staging folder, locked; a different commit's leftovers go */
    snprintf(path, sizeof path, "%s/.lock", staging);
    if ((r = sn_mkdir_parents(path)) ||
        (mkdir(staging, 0700) != 0 && errno != EEXIST)) {
        sn_cli_error("pull: '%s': %s", staging, strerror(r ? -r : errno));
        goto out;
    }
    lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
        sn_cli_error("pull: '%s': %s", path,
                     lock_fd >= 0 && errno == EWOULDBLOCK
                         ? "another pull of this repository is running"
                         : strerror(errno));
        goto out;
    }
    snprintf(path, sizeof path, "%s/.commit", staging);
    char *prev = read_text(path);
    if (prev && strcmp(prev, snap))
        clear_staging(staging); /* another commit's leftovers: start over */
    free(prev);
    if (write_text(path, snap)) {
        sn_cli_error("pull: '%s': %s", path, strerror(errno));
        goto out;
    }

    if (hub.progress)
        fprintf(stderr, "pulling '%s' (revision %s, commit %.12s) from %s\n",
                repo, revision, snap, endpoint);

    /* 3, 4. each file, into FILE.part, checked, renamed to FILE */
    int64_t total = 0;
    for (int i = 0; i < files.n; i++) {
        const file_t *f = &files.v[i];
        char dest[8192], part[8300], url[8192], hex[65];
        snprintf(dest, sizeof dest, "%s/%s", staging, f->path);
        snprintf(part, sizeof part, "%s.part", dest);
        struct stat st;
        if (stat(dest, &st) == 0 && (f->size < 0 || st.st_size == f->size)) {
            total += (int64_t)st.st_size; /* checked by an earlier run */
            continue;
        }
        if ((r = sn_mkdir_parents(dest))) {
            sn_cli_error("pull: '%s': %s", dest, strerror(-r));
            goto out;
        }
        char *file_esc = sn_hub_escape(f->path, 1);
        if (!file_esc)
            goto oom;
        snprintf(url, sizeof url, "%s/%s/resolve/%s/%s", endpoint, repo_esc,
                 snap, file_esc);
        free(file_esc);
        r = sn_hub_download(&hub, url, part, f->size, f->path, err,
                            sizeof err);
        if (r) {
            if (r == SN_HUB_ECORRUPT)
                drop_staging = 1;
            sn_cli_error("pull: %s%s", err,
                         drop_staging ? "; nothing was kept"
                                      : "; run the same command again to "
                                        "resume");
            goto out;
        }
        if (f->sha256[0]) {
            if ((r = sn_hub_sha256_file(part, hex, err, sizeof err))) {
                sn_cli_error("pull: %s", err);
                goto out;
            }
            if (strcmp(hex, f->sha256)) {
                drop_staging = 1;
                sn_cli_error("pull: '%s': sha256 %s, but the hub lists %s: "
                             "refused, nothing was kept",
                             f->path, hex, f->sha256);
                goto out;
            }
        }
        if (rename(part, dest) != 0) {
            sn_cli_error("pull: cannot rename '%s': %s", part,
                         strerror(errno));
            goto out;
        }
        if (stat(dest, &st) == 0)
            total += (int64_t)st.st_size;
    }

    /* 5. the record, then into place */
    {
        json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:[]}", "repo", repo,
                                "revision", revision, "commit", snap,
                                "endpoint", endpoint, "files");
        if (!rec)
            goto oom;
        json_t *list = json_object_get(rec, "files");
        for (int i = 0; i < files.n; i++)
            json_array_append_new(list, json_string(files.v[i].path));
        char *txt = json_dumps(rec, JSON_INDENT(2));
        json_decref(rec);
        if (!txt)
            goto oom;
        snprintf(path, sizeof path, "%s/.sense-pull.json", staging);
        r = write_text(path, txt);
        free(txt);
        if (r) {
            sn_cli_error("pull: '%s': %s", path, strerror(-r));
            goto out;
        }
    }
    snprintf(path, sizeof path, "%s/.commit", staging);
    unlink(path);
    snprintf(path, sizeof path, "%s/.lock", staging);
    unlink(path); /* still held: nobody else can take it until we close */
    if (install(staging, final, err, sizeof err)) {
        sn_cli_error("pull: %s", err);
        goto out;
    }
    printf("pulled '%s' (revision %s, commit %.12s): %d files, %.1f MB, "
           "in '%s'\n",
           repo, revision, snap, files.n, (double)total / 1e6, final);
    rc = SN_EXIT_OK;
    goto out;
oom:
    sn_cli_error("out of memory");
out:
    if (drop_staging)
        rm_tree(staging);
    if (lock_fd >= 0)
        close(lock_fd);
    files_free(&files);
    free(body);
    free(rev_esc);
    free(repo_esc);
    if (hub_up)
        sn_hub_cleanup();
    return rc;
}
