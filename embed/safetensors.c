/*
 * safetensors.c -- a validating, memory-mapped reader of .safetensors files.
 *
 * The format: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON, then
 * the data section. The JSON is an object mapping each tensor name to
 *   {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}
 * with offsets relative to the first byte of the data section, plus an
 * optional "__metadata__" object that we check is an object and otherwise
 * ignore.
 *
 * Two layers:
 *   sn__st_parse   pure function of (buf, len): checks everything that can
 *                  be checked without touching tensor data and builds the
 *                  tensor table. No I/O, so it is what the fuzzer drives.
 *   sn__st_open    mmaps the file and runs sn__st_parse over the mapping;
 *                  sn__st_get_f32 then binds tensors by name and shape.
 *
 * Behind the same calls, for every architecture's binding code:
 *   - sharded checkpoints: when model.safetensors is absent and
 *     model.safetensors.index.json is there, every shard its weight_map
 *     names is mapped and parsed, the tables are merged (names unique across
 *     shards) and checked against the weight map;
 *   - wrapper prefixes: a name not found as is binds "<P><name>" (P ending
 *     in '.'; "bert.", "model.", "0.auto_model."...), and the first tensor
 *     bound fixes P for the file; tensors outside P are the wrapper's heads,
 *     which sn__st_check_unused ignores;
 *   - no safetensors at all: the error says what the folder holds instead
 *     (pytorch_model.bin, with the command that converts it; onnx/; ...).
 *
 * Invariants of a parsed header (what the rest of the file relies on, and
 * why the accessors need no bounds checks of their own):
 *   - data_offset == 8 + N and data_offset <= len;
 *   - every tensor has a known dtype, 0..SN_ST_MAX_DIMS non-negative dims,
 *     and end - begin == prod(shape) * sizeof(dtype), computed without
 *     overflow;
 *   - every [begin, end) lies inside the data section [0, len - data_offset);
 *   - the byte ranges of non-empty tensors are pairwise disjoint (gaps
 *     between them are allowed);
 *   - tensors[] is sorted by name (strcmp) and names are unique, so
 *     sn__st_find is a binary search;
 *   - `converted` is NULL until sn__st_get_f32 makes a copy; the header owns
 *     it and the names.
 *
 * Why mmap: weights are the bulk of the file (megabytes to gigabytes), are
 * only ever read, and are read in full by every forward pass. Mapping them
 * PROT_READ/MAP_PRIVATE costs nothing at load beyond parsing the header,
 * lets aligned little-endian F32 tensors be used in place with no copy, and
 * shares the page cache between every process that loads the same model.
 * Only F16/BF16 (and F32 at an address not 4-byte aligned) are converted,
 * once, into a malloc'd f32 copy kept until sn__st_close.
 *
 * The mapping assumes the file is not truncated while it is open (reading a
 * page past a shrunken end raises SIGBUS), as every mmap loader does; a model
 * replaced by rename(2) is safe, the old inode stays mapped.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "embed_int.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ST_HOST_LE 1
#else
#define ST_HOST_LE 0 /* F32 is then always decoded, never used in place */
#endif

static const struct {
    const char *name;
    sn__dtype_t dtype;
    unsigned size;
} st_dtypes[] = {
    {"F32", SN_DT_F32, 4},
    {"F16", SN_DT_F16, 2},
    {"BF16", SN_DT_BF16, 2},
    {"I64", SN_DT_I64, 8},
};
#define ST_N_DTYPES (sizeof st_dtypes / sizeof st_dtypes[0])

static unsigned dtype_size(sn__dtype_t dt)
{
    for (size_t i = 0; i < ST_N_DTYPES; i++)
        if (st_dtypes[i].dtype == dt)
            return st_dtypes[i].size;
    return 0;
}

static const char *dtype_name(sn__dtype_t dt)
{
    for (size_t i = 0; i < ST_N_DTYPES; i++)
        if (st_dtypes[i].dtype == dt)
            return st_dtypes[i].name;
    return "?";
}

/* ---- header parsing ------------------------------------------------------ */

static int cmp_by_name(const void *a, const void *b)
{
    const sn__st_tensor_t *x = a, *y = b;
    return strcmp(x->name, y->name);
}

static int cmp_by_offset(const void *a, const void *b)
{
    const sn__st_tensor_t *x = *(const sn__st_tensor_t *const *)a;
    const sn__st_tensor_t *y = *(const sn__st_tensor_t *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

static int cmp_key_name_fwd(const void *key, const void *elem)
{
    return strcmp(key, ((const sn__st_tensor_t *)elem)->name);
}

/* Fill t (whose name is already set) from the JSON entry `val`; check its
 * dtype, shape and offsets against a data section of data_len bytes. */
static int parse_entry(const char *name, sn__st_tensor_t *t, json_t *val,
                       uint64_t data_len, char *err, size_t err_len)
{
    json_t *jdt, *jshape, *joff;
    const char *dt;
    size_t i_dim, n_dims;
    uint64_t count = 1, n_bytes;
    unsigned size = 0;
    json_int_t b, e;

    if (!json_is_object(val))
        return sn__err(err, err_len, SN_ECORRUPT,
                       "'%s': entry for tensor '%s' is not an object", name,
                       t->name);

    jdt = json_object_get(val, "dtype");
    if (!json_is_string(jdt))
        return sn__err(err, err_len, SN_ECORRUPT,
                       "'%s': tensor '%s': %s dtype", name, t->name,
                       jdt ? "non-string" : "missing");
    dt = json_string_value(jdt);
    for (size_t i = 0; i < ST_N_DTYPES; i++) {
        if (strcmp(dt, st_dtypes[i].name) == 0) {
            t->dtype = st_dtypes[i].dtype;
            size = st_dtypes[i].size;
        }
    }
    if (!size)
        return sn__err(err, err_len, SN_EMODEL,
                       "'%s': unsupported dtype '%s' for tensor '%s'", name,
                       dt, t->name);

    jshape = json_object_get(val, "shape");
    if (!json_is_array(jshape))
        return sn__err(err, err_len, SN_ECORRUPT,
                       "'%s': tensor '%s': %s shape", name, t->name,
                       jshape ? "non-array" : "missing");
    n_dims = json_array_size(jshape);
    if (n_dims > SN_ST_MAX_DIMS)
        return sn__err(err, err_len, SN_ECORRUPT,
                       "'%s': tensor '%s' has %zu dims, at most %d supported",
                       name, t->name, n_dims, SN_ST_MAX_DIMS);
    t->n_dims = (int)n_dims;
    for (i_dim = 0; i_dim < n_dims; i_dim++) {
        json_t *jd = json_array_get(jshape, i_dim);
        json_int_t d;
        if (!json_is_integer(jd))
            return sn__err(err, err_len, SN_ECORRUPT,
                           "'%s': tensor '%s': shape[%zu] is not an integer",
                           name, t->name, i_dim);
        d = json_integer_value(jd);
        if (d < 0)
            return sn__err(err, err_len, SN_ECORRUPT,
                           "'%s': tensor '%s': negative dim %lld in shape",
                           name, t->name, (long long)d);
        t->shape[i_dim] = (int64_t)d;
        if (count && (uint64_t)d > UINT64_MAX / count)
            return sn__err(err, err_len, SN_ECORRUPT,
                           "'%s': tensor '%s': element count overflows",
                           name, t->name);
        count *= (uint64_t)d;
    }
    if (count > UINT64_MAX / size)
        return sn__err(err, err_len, SN_ECORRUPT,
                       "'%s': tensor '%s': byte size overflows", name,
                       t->name);
    n_bytes = count * size;

    joff = json_object_get(val, "data_offsets");
    if (!json_is_array(joff) || json_array_size(joff) != 2 ||
        !json_is_integer(json_array_get(joff, 0)) ||
        !json_is_integer(json_array_get(joff, 1)))
        return sn__err(err, err_len, SN_ECORRUPT,
                       "'%s': tensor '%s': %s data_offsets (want [begin, "
                       "end])",
                       name, t->name, joff ? "malformed" : "missing");
    b = json_integer_value(json_array_get(joff, 0));
    e = json_integer_value(json_array_get(joff, 1));
    if (b < 0 || e < 0)
        return sn__err(err, err_len, SN_ECORRUPT,
                       "'%s': tensor '%s': negative data_offsets [%lld, %lld]",
                       name, t->name, (long long)b, (long long)e);
    t->begin = (uint64_t)b;
    t->end = (uint64_t)e;
    if (t->end < t->begin)
        return sn__err(err, err_len, SN_ECORRUPT,
                       "'%s': tensor '%s': data_offsets end %llu before "
                       "begin %llu",
                       name, t->name, (unsigned long long)t->end,
                       (unsigned long long)t->begin);
    if (t->end - t->begin != n_bytes)
        return sn__err(err, err_len, SN_ECORRUPT,
                       "'%s': tensor '%s': data_offsets span %llu bytes, "
                       "shape and dtype %s need %llu",
                       name, t->name,
                       (unsigned long long)(t->end - t->begin), dt,
                       (unsigned long long)n_bytes);
    if (t->end > data_len)
        return sn__err(err, err_len, SN_ECORRUPT,
                       "'%s': tensor '%s': data_offsets end %llu past end "
                       "of data section (%llu bytes)",
                       name, t->name, (unsigned long long)t->end,
                       (unsigned long long)data_len);
    return 0;
}

int sn__st_parse(const uint8_t *buf, size_t len, const char *name,
                 sn__st_header_t *out, char *err, size_t err_len)
{
    json_t *root = NULL, *meta, *val;
    json_error_t jerr;
    const sn__st_tensor_t **by_off = NULL;
    const char *key;
    uint64_t n_hdr = 0, data_len;
    size_t n_entries;
    int rc;

    memset(out, 0, sizeof *out);
    if (!name)
        name = "(buffer)";
    if (len < 8) {
        rc = sn__err(err, err_len, SN_ECORRUPT,
                     "'%s': file too short for a safetensors header (%zu "
                     "bytes)",
                     name, len);
        goto fail;
    }
    for (int i = 7; i >= 0; i--)
        n_hdr = (n_hdr << 8) | buf[i];
    if (n_hdr == 0) {
        rc = sn__err(err, err_len, SN_ECORRUPT, "'%s': zero header length",
                     name);
        goto fail;
    }
    if (n_hdr > SN_ST_MAX_HEADER) {
        rc = sn__err(err, err_len, SN_ECORRUPT,
                     "'%s': header length %llu over the limit of %u bytes",
                     name, (unsigned long long)n_hdr, SN_ST_MAX_HEADER);
        goto fail;
    }
    if (n_hdr > len - 8) {
        rc = sn__err(err, err_len, SN_ECORRUPT,
                     "'%s': header length %llu past end of file (size %zu)",
                     name, (unsigned long long)n_hdr, len);
        goto fail;
    }
    out->data_offset = 8 + n_hdr;
    data_len = len - out->data_offset;

    root = json_loadb((const char *)buf + 8, (size_t)n_hdr,
                      JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        enum json_error_code code = json_error_code(&jerr);
        if (code == json_error_out_of_memory)
            rc = sn__err(err, err_len, -ENOMEM, "'%s': out of memory", name);
        else if (code == json_error_duplicate_key)
            rc = sn__err(err, err_len, SN_ECORRUPT,
                         "'%s': duplicate tensor name in header at byte %d "
                         "(%s)",
                         name, jerr.position, jerr.text);
        else
            rc = sn__err(err, err_len, SN_EJSON,
                         "'%s': malformed json header at line %d column %d "
                         "(byte %d): %s",
                         name, jerr.line, jerr.column, jerr.position,
                         jerr.text);
        goto fail;
    }
    if (!json_is_object(root)) {
        rc = sn__err(err, err_len, SN_ECORRUPT,
                     "'%s': header is not a json object", name);
        goto fail;
    }
    meta = json_object_get(root, "__metadata__");
    if (meta && !json_is_object(meta)) {
        rc = sn__err(err, err_len, SN_ECORRUPT,
                     "'%s': __metadata__ is not an object", name);
        goto fail;
    }
    n_entries = json_object_size(root) - (meta ? 1 : 0);
    if (n_entries > INT_MAX) { /* cannot happen under SN_ST_MAX_HEADER */
        rc = sn__err(err, err_len, SN_ECORRUPT, "'%s': too many tensors",
                     name);
        goto fail;
    }
    out->tensors = calloc(n_entries ? n_entries : 1, sizeof *out->tensors);
    if (!out->tensors) {
        rc = sn__err(err, err_len, -ENOMEM, "'%s': out of memory", name);
        goto fail;
    }
    json_object_foreach(root, key, val) {
        sn__st_tensor_t *t;
        if (val == meta)
            continue;
        t = &out->tensors[out->n_tensors];
        t->name = strdup(key);
        if (!t->name) {
            rc = sn__err(err, err_len, -ENOMEM, "'%s': out of memory", name);
            goto fail;
        }
        out->n_tensors++; /* owned by out from here, freed on failure */
        rc = parse_entry(name, t, val, data_len, err, err_len);
        if (rc < 0)
            goto fail;
    }

    /* Sorted by name for sn__st_find; jansson already rejected duplicate
     * keys, the adjacent check keeps the invariant local to this file. */
    qsort(out->tensors, (size_t)out->n_tensors, sizeof *out->tensors,
          cmp_by_name);
    for (int i = 1; i < out->n_tensors; i++) {
        if (strcmp(out->tensors[i - 1].name, out->tensors[i].name) == 0) {
            rc = sn__err(err, err_len, SN_ECORRUPT,
                         "'%s': duplicate tensor name '%s'", name,
                         out->tensors[i].name);
            goto fail;
        }
    }

    /* Overlaps: sort views by offset, then each non-empty range must start
     * at or after the end of the previous non-empty one. Empty tensors
     * occupy no bytes and overlap nothing. */
    by_off = malloc((out->n_tensors ? (size_t)out->n_tensors : 1) *
                    sizeof *by_off);
    if (!by_off) {
        rc = sn__err(err, err_len, -ENOMEM, "'%s': out of memory", name);
        goto fail;
    }
    for (int i = 0; i < out->n_tensors; i++)
        by_off[i] = &out->tensors[i];
    qsort(by_off, (size_t)out->n_tensors, sizeof *by_off, cmp_by_offset);
    {
        const sn__st_tensor_t *prev = NULL;
        for (int i = 0; i < out->n_tensors; i++) {
            const sn__st_tensor_t *t = by_off[i];
            if (t->begin == t->end)
                continue;
            if (prev && t->begin < prev->end) {
                rc = sn__err(err, err_len, SN_ECORRUPT,
                             "'%s': tensors '%s' [%llu, %llu) and '%s' "
                             "[%llu, %llu) overlap",
                             name, prev->name,
                             (unsigned long long)prev->begin,
                             (unsigned long long)prev->end, t->name,
                             (unsigned long long)t->begin,
                             (unsigned long long)t->end);
                goto fail;
            }
            prev = t;
        }
    }

    free(by_off);
    json_decref(root);
    return 0;
fail:
    free(by_off);
    json_decref(root);
    sn__st_header_free(out);
    return rc;
}

void sn__st_header_free(sn__st_header_t *hdr)
{
    if (!hdr)
        return;
    for (int i = 0; i < hdr->n_tensors; i++) {
        free(hdr->tensors[i].name);
        free(hdr->tensors[i].converted);
    }
    free(hdr->tensors);
    memset(hdr, 0, sizeof *hdr);
}

/* ---- the mapped file ----------------------------------------------------- */

/* mmap `path` read-only: *map, *map_len. */
static int map_file(const char *path, void **map, size_t *map_len, char *err,
                    size_t err_len)
{
    struct stat st;
    int fd, rc;

    *map = NULL;
    *map_len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sn__err(err, err_len, -errno, "'%s': %s", path,
                       strerror(errno));
    if (fstat(fd, &st) != 0) {
        rc = sn__err(err, err_len, -errno, "'%s': %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = sn__err(err, err_len, -EINVAL, "'%s': not a regular file", path);
        goto done;
    }
    if (st.st_size == 0) { /* mmap of 0 bytes fails with EINVAL */
        rc = sn__err(err, err_len, SN_ECORRUPT, "'%s': empty file", path);
        goto done;
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        rc = sn__err(err, err_len, SN_ETOOBIG, "'%s': file too large", path);
        goto done;
    }
    *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (*map == MAP_FAILED) {
        *map = NULL;
        rc = sn__err(err, err_len, -errno, "'%s': mmap: %s", path,
                     strerror(errno));
        goto done;
    }
    *map_len = (size_t)st.st_size;
    rc = 0;
done:
    close(fd); /* the mapping keeps the file */
    return rc;
}

/* The folder part of `path` ("." when it has none) into buf. */
static void dir_of(const char *path, char *buf, size_t len)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(buf, len, ".");
    else if (slash == path)
        snprintf(buf, len, "/");
    else
        snprintf(buf, len, "%.*s", (int)(slash - path), path);
}

/* A file or folder called `name` in dir. */
static int exists_in(const char *dir, const char *name)
{
    char p[4096];
    struct stat st;
    return !sn__path_join(p, sizeof p, dir, name) && stat(p, &st) == 0;
}

/* Neither `path` nor its index exists: say what the folder holds instead.
 * Returns -ENOENT (the weights are missing) or SN_EMODEL (they are there in
 * a format we do not read). */
static int explain_missing(const char *path, char *err, size_t err_len)
{
    char dir[4096];
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    dir_of(path, dir, sizeof dir);

    /* only model.safetensors is a model's main weights file: a Dense
     * module's or any other name gets the plain message */
    if (!strcmp(base, "model.safetensors")) {
        if (exists_in(dir, "pytorch_model.bin"))
            return sn__err(
                err, err_len, SN_EMODEL,
                "'%s': no model.safetensors, only pytorch_model.bin (a "
                "PyTorch pickle), which sense does not load; convert it once, "
                "in that folder: python3 -c \"import torch, safetensors.torch "
                "as s; s.save_file({k: v.clone().contiguous() for k, v in "
                "torch.load('pytorch_model.bin', map_location='cpu')"
                ".items()}, 'model.safetensors')\"",
                dir);
        if (exists_in(dir, "pytorch_model.bin.index.json"))
            return sn__err(
                err, err_len, SN_EMODEL,
                "'%s': no model.safetensors, only pytorch_model.bin shards "
                "(PyTorch pickles), which sense does not load; convert them "
                "once, in that folder: python3 -c \"from transformers import "
                "AutoModel as A; A.from_pretrained('.').save_pretrained('.', "
                "safe_serialization=True)\"",
                dir);
        static const struct {
            const char *name, *what;
        } others[] = {
            {"onnx", "onnx/ (an ONNX export)"},
            {"model.onnx", "model.onnx (an ONNX export)"},
            {"openvino", "openvino/ (an OpenVINO export)"},
            {"tf_model.h5", "tf_model.h5 (TensorFlow)"},
            {"flax_model.msgpack", "flax_model.msgpack (Flax)"},
            {"model.gguf", "model.gguf (GGUF)"},
        };
        char found[512] = "";
        size_t pos = 0;
        for (size_t i = 0; i < sizeof others / sizeof *others; i++) {
            if (!exists_in(dir, others[i].name))
                continue;
            int n = snprintf(found + pos, sizeof found - pos, "%s%s",
                             pos ? ", " : "", others[i].what);
            if (n < 0 || (size_t)n >= sizeof found - pos)
                break;
            pos += (size_t)n;
        }
        if (pos)
            return sn__err(err, err_len, SN_EMODEL,
                           "'%s': no model.safetensors; found %s, which "
                           "sense does not load: it needs the weights as "
                           "model.safetensors (or sharded, with "
                           "model.safetensors.index.json), which most "
                           "Hugging Face repositories have beside them "
                           "(`sense pull` fetches them)",
                           dir, found);
        return sn__err(err, err_len, -ENOENT,
                       "'%s': no such file (nor model.safetensors.index.json "
                       "for shards): the model's weights are missing; sense "
                       "loads them from safetensors files",
                       path);
    }
    return sn__err(err, err_len, -ENOENT, "'%s': %s", path,
                   strerror(ENOENT));
}

static int open_single(sn__st_file_t *f, char *err, size_t err_len)
{
    int rc = map_file(f->path, &f->map, &f->map_len, err, err_len);
    if (rc)
        return rc;
    return sn__st_parse(f->map, f->map_len, f->path, &f->hdr, err, err_len);
}

/* A shard's file name as the index gives it: a plain name in the folder. */
static int shard_name_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < 256 && !strchr(s, '/') && strcmp(s, ".") &&
           strcmp(s, "..");
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Open the shards that the index at f->path names and merge their tensor
 * tables. Every tensor of the weight map must be in the shard it names. */
static int open_sharded(sn__st_file_t *f, char *err, size_t err_len)
{
    char dir[4096], spath[4096];
    char *buf = NULL;
    const char **names = NULL;
    size_t len, n_names = 0, n_total = 0;
    json_t *root = NULL, *wmap, *val;
    json_error_t jerr;
    const char *key;
    int rc;

    dir_of(f->path, dir, sizeof dir);
    if ((rc = sn__read_file(f->path, SN_ST_MAX_INDEX, &buf, &len, err,
                            err_len)))
        return rc;
    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        rc = sn__err(err, err_len, SN_EJSON,
                     "'%s': malformed json at line %d column %d: %s", f->path,
                     jerr.line, jerr.column, jerr.text);
        goto fail;
    }
    wmap = json_object_get(root, "weight_map");
    if (!json_is_object(wmap) || !json_object_size(wmap)) {
        rc = sn__err(err, err_len, SN_ECORRUPT,
                     "'%s': %s weight_map (want {tensor: shard file})",
                     f->path, wmap ? "empty or malformed" : "no");
        goto fail;
    }
    /* the distinct shard names, sorted */
    names = malloc(json_object_size(wmap) * sizeof *names);
    if (!names) {
        rc = sn__err(err, err_len, -ENOMEM, "'%s': out of memory", f->path);
        goto fail;
    }
    json_object_foreach(wmap, key, val) {
        const char *s = json_string_value(val);
        if (!s || !shard_name_ok(s)) {
            rc = sn__err(err, err_len, SN_ECORRUPT,
                         "'%s': weight_map entry for '%s' is not a file name "
                         "in the folder",
                         f->path, key);
            goto fail;
        }
        names[n_names++] = s;
    }
    qsort(names, n_names, sizeof *names, cmp_str);
    {
        size_t k = 0;
        for (size_t i = 0; i < n_names; i++)
            if (!k || strcmp(names[k - 1], names[i]))
                names[k++] = names[i];
        n_names = k;
    }
    if (n_names > SN_ST_MAX_SHARDS) {
        rc = sn__err(err, err_len, SN_ETOOBIG,
                     "'%s': %zu shards, at most %d", f->path, n_names,
                     SN_ST_MAX_SHARDS);
        goto fail;
    }
    f->shards = calloc(n_names, sizeof *f->shards);
    if (!f->shards) {
        rc = sn__err(err, err_len, -ENOMEM, "'%s': out of memory", f->path);
        goto fail;
    }
    for (size_t i = 0; i < n_names; i++) {
        sn__st_shard_t *sh = &f->shards[i];
        sn__st_header_t h;
        if (sn__path_join(spath, sizeof spath, dir, names[i])) {
            rc = sn__err(err, err_len, SN_ETOOBIG, "'%s': path too long",
                         dir);
            goto fail;
        }
        if (!(sh->path = strdup(spath))) {
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            goto fail;
        }
        f->n_shards++;
        if (!sn__file_exists(spath)) {
            rc = sn__err(err, err_len, -ENOENT,
                         "'%s': no such file: shard %zu of %zu named by '%s' "
                         "is missing (an interrupted download?)",
                         spath, i + 1, n_names, f->path);
            goto fail;
        }
        if ((rc = map_file(spath, &sh->map, &sh->map_len, err, err_len)))
            goto fail;
        if ((rc = sn__st_parse(sh->map, sh->map_len, spath, &h, err,
                               err_len)))
            goto fail;
        sh->data_offset = h.data_offset;
        sn__st_tensor_t *all = realloc(
            f->hdr.tensors, (n_total + (size_t)h.n_tensors + 1) * sizeof *all);
        if (!all) {
            sn__st_header_free(&h);
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            goto fail;
        }
        f->hdr.tensors = all;
        for (int k = 0; k < h.n_tensors; k++) {
            all[n_total] = h.tensors[k]; /* the name moves over */
            all[n_total].shard = (int)i;
            n_total++;
        }
        f->hdr.n_tensors = (int)n_total;
        free(h.tensors);
        if (n_total > INT_MAX / 2) {
            rc = sn__err(err, err_len, SN_ETOOBIG, "'%s': too many tensors",
                         f->path);
            goto fail;
        }
    }
    qsort(f->hdr.tensors, n_total, sizeof *f->hdr.tensors, cmp_by_name);
    for (size_t i = 1; i < n_total; i++) {
        const sn__st_tensor_t *x = &f->hdr.tensors[i - 1],
                              *y = &f->hdr.tensors[i];
        if (!strcmp(x->name, y->name)) {
            rc = sn__err(err, err_len, SN_ECORRUPT,
                         "'%s': tensor '%s' is in two shards, '%s' and '%s'",
                         f->path, x->name, f->shards[x->shard].path,
                         f->shards[y->shard].path);
            goto fail;
        }
    }
    /* each tensor of the weight map where the index says */
    json_object_foreach(wmap, key, val) {
        sn__st_tensor_t *t =
            n_total ? bsearch(key, f->hdr.tensors, n_total,
                              sizeof *f->hdr.tensors, cmp_key_name_fwd)
                    : NULL;
        const char *want = json_string_value(val);
        const char *got = t ? strrchr(f->shards[t->shard].path, '/') : NULL;
        got = got ? got + 1 : (t ? f->shards[t->shard].path : NULL);
        if (!t || strcmp(got, want)) {
            rc = sn__err(err, err_len, SN_ECORRUPT,
                         "'%s': tensor '%s' should be in '%s', %s%s%s",
                         f->path, key, want, t ? "but is in '" : "",
                         t ? got : "which does not hold it",
                         t ? "'" : "");
            goto fail;
        }
    }
    free(names);
    json_decref(root);
    free(buf);
    return 0;
fail:
    free(names);
    json_decref(root);
    free(buf);
    return rc;
}

int sn__st_open(const char *path, sn__st_file_t **out, char *err,
                size_t err_len)
{
    sn__st_file_t *f = NULL;
    char index[4096];
    int rc, sharded = 0;

    struct stat st;
    *out = NULL;
    if (stat(path, &st) != 0 && errno == ENOENT) {
        int n = snprintf(index, sizeof index, "%s.index.json", path);
        if (n < 0 || (size_t)n >= sizeof index)
            return sn__err(err, err_len, SN_ETOOBIG, "'%s': path too long",
                           path);
        if (!sn__file_exists(index))
            return explain_missing(path, err, err_len);
        sharded = 1;
    }
    f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(sharded ? index : path))) {
        free(f);
        return sn__err(err, err_len, -ENOMEM, "'%s': out of memory", path);
    }
    rc = sharded ? open_sharded(f, err, err_len) : open_single(f, err, err_len);
    if (rc < 0)
        goto fail;
    *out = f;
    return 0;
fail:
    sn__st_close(f);
    return rc;
}

void sn__st_close(sn__st_file_t *f)
{
    if (!f)
        return;
    sn__st_header_free(&f->hdr);
    if (f->map)
        munmap(f->map, f->map_len);
    for (int i = 0; i < f->n_shards; i++) {
        if (f->shards[i].map)
            munmap(f->shards[i].map, f->shards[i].map_len);
        free(f->shards[i].path);
    }
    free(f->shards);
    free(f->path);
    free(f);
}

/* ---- finding tensors, with a wrapper's prefix ------------------------------ */

static sn__st_tensor_t *find_exact(sn__st_file_t *f, const char *name)
{
    if (!f->hdr.n_tensors)
        return NULL;
    return bsearch(name, f->hdr.tensors, (size_t)f->hdr.n_tensors,
                   sizeof *f->hdr.tensors, cmp_key_name_fwd);
}

/* Tensors whose names start with the first `len` bytes of `p`. */
static int count_under(const sn__st_file_t *f, const char *p, size_t len)
{
    int n = 0;
    for (int i = 0; i < f->hdr.n_tensors; i++)
        n += strncmp(f->hdr.tensors[i].name, p, len) == 0;
    return n;
}

/* `name` is not in the file as is: the tensors named "<P><name>" where P
 * ends with '.'. When several prefixes fit, the one holding the most
 * tensors wins (the encoder, not a head that happens to reuse a name), then
 * the shortest, then the first by name: deterministic. */
static sn__st_tensor_t *find_suffixed(sn__st_file_t *f, const char *name)
{
    size_t nl = strlen(name);
    sn__st_tensor_t *best = NULL;
    size_t best_pl = 0;
    int best_n = -1;

    for (int i = 0; i < f->hdr.n_tensors; i++) {
        sn__st_tensor_t *t = &f->hdr.tensors[i];
        size_t tl = strlen(t->name);
        if (tl <= nl + 1 || t->name[tl - nl - 1] != '.' ||
            strcmp(t->name + tl - nl, name))
            continue;
        size_t pl = tl - nl;
        if (pl >= SN_ST_MAX_PREFIX)
            continue;
        int n = count_under(f, t->name, pl);
        if (n > best_n || (n == best_n && pl < best_pl)) {
            best = t;
            best_pl = pl;
            best_n = n;
        }
    }
    return best;
}

sn__st_tensor_t *sn__st_find(sn__st_file_t *f, const char *name)
{
    sn__st_tensor_t *t;
    char full[1024];

    if (!f || !name)
        return NULL;
    if (f->prefix_fixed && f->prefix[0]) {
        int n = snprintf(full, sizeof full, "%s%s", f->prefix, name);
        if (n > 0 && (size_t)n < sizeof full && (t = find_exact(f, full)))
            return t;
    }
    if ((t = find_exact(f, name)) || f->prefix_fixed)
        return t;
    return find_suffixed(f, name);
}

/* The first tensor bound fixes the file's prefix: what its full name has in
 * front of the name asked for. */
static void fix_prefix(sn__st_file_t *f, const sn__st_tensor_t *t,
                       const char *name)
{
    size_t tl = strlen(t->name), nl = strlen(name);
    if (f->prefix_fixed)
        return;
    f->prefix_fixed = 1;
    if (tl > nl && tl - nl < sizeof f->prefix &&
        !strcmp(t->name + tl - nl, name))
        snprintf(f->prefix, sizeof f->prefix, "%.*s", (int)(tl - nl),
                 t->name);
}

static const uint8_t *tensor_data(const sn__st_file_t *f,
                                  const sn__st_tensor_t *t)
{
    if (f->n_shards)
        return (const uint8_t *)f->shards[t->shard].map +
               f->shards[t->shard].data_offset + t->begin;
    return (const uint8_t *)f->map + f->hdr.data_offset + t->begin;
}

void sn__st_release(const sn__st_file_t *f, const void *p, size_t len)
{
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)p, hi = lo + len;

    if (!f || !p || pg == 0 || (pg & (pg - 1)))
        return;
    for (int i = -1; i < f->n_shards; i++) {
        const void *map = i < 0 ? f->map : f->shards[i].map;
        size_t map_len = i < 0 ? f->map_len : f->shards[i].map_len;
        uintptr_t m0 = (uintptr_t)map;
        if (!map || lo < m0 || hi > m0 + map_len)
            continue;
        lo = (lo + pg - 1) & ~(pg - 1);
        hi &= ~(pg - 1);
        if (hi > lo)
            (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
        return;
    }
}

/* "[a, b, c]" into buf, truncated with "..." if it does not fit. */
static const char *fmt_shape(char *buf, size_t buf_len, int n_dims,
                             const int64_t *shape)
{
    size_t pos = 0;
    int n;

    n = snprintf(buf, buf_len, "[");
    for (int i = 0; i < n_dims && n >= 0 && pos + (size_t)n < buf_len; i++) {
        pos += (size_t)n;
        n = snprintf(buf + pos, buf_len - pos, "%s%lld", i ? ", " : "",
                     (long long)shape[i]);
    }
    if (n >= 0 && pos + (size_t)n < buf_len) {
        pos += (size_t)n;
        n = snprintf(buf + pos, buf_len - pos, "]");
    }
    if (n < 0 || pos + (size_t)n >= buf_len)
        snprintf(buf + buf_len - 4, 4, "...");
    return buf;
}

static uint16_t load_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static float f32_from_bits(uint32_t bits)
{
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

/* IEEE 754 binary16 -> binary32, exact for every input: subnormal halves
 * become normal floats, inf stays inf, NaN keeps its sign and payload. */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;

    if (exp == 0x1f) /* inf, NaN */
        return f32_from_bits(sign | 0x7f800000u | mant << 13);
    if (exp == 0) {
        if (mant == 0) /* +-0 */
            return f32_from_bits(sign);
        /* subnormal: mant * 2^-24; shift the leading 1 up to bit 10 */
        exp = 127 - 15 + 1;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            exp--;
        }
        mant &= 0x3ffu;
        return f32_from_bits(sign | exp << 23 | mant << 13);
    }
    return f32_from_bits(sign | (exp + 127 - 15) << 23 | mant << 13);
}

int sn__st_get_f32(sn__st_file_t *f, const char *name, int n_dims,
                   const int64_t *shape, const float **out, char *err,
                   size_t err_len)
{
    sn__st_tensor_t *t;
    const uint8_t *src;
    uint64_t count;
    float *dst = NULL;
    int rc;

    *out = NULL;
    t = sn__st_find(f, name);
    if (!t) {
        rc = sn__err(err, err_len, SN_EMODEL, "'%s': missing tensor '%s%s'",
                     f ? f->path : "(null)",
                     f && f->prefix_fixed ? f->prefix : "",
                     name ? name : "(null)");
        goto fail;
    }
    if (n_dims < 0 || n_dims > SN_ST_MAX_DIMS || (n_dims && !shape)) {
        rc = sn__err(err, err_len, SN_EARG,
                     "'%s': tensor '%s': bad expected shape (%d dims)",
                     f->path, name, n_dims);
        goto fail;
    }
    if (n_dims != t->n_dims ||
        (n_dims && memcmp(shape, t->shape, (size_t)n_dims * sizeof *shape))) {
        char have[256], want[256];
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': tensor '%s' has shape %s, expected %s", f->path,
                     name, fmt_shape(have, sizeof have, t->n_dims, t->shape),
                     fmt_shape(want, sizeof want, n_dims, shape));
        goto fail;
    }
    if (t->dtype == SN_DT_I64) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': tensor '%s' has dtype %s, expected a float type",
                     f->path, name, dtype_name(t->dtype));
        goto fail;
    }

    fix_prefix(f, t, name);
    src = tensor_data(f, t);
    if (t->converted) { /* bound before */
        t->used = 1;
        *out = t->converted;
        return 0;
    }
    if (t->dtype == SN_DT_F32 && ST_HOST_LE &&
        (uintptr_t)src % _Alignof(float) == 0) {
        t->used = 1;
        *out = (const float *)(const void *)src; /* zero copy */
        return 0;
    }

    count = (t->end - t->begin) / dtype_size(t->dtype);
    dst = malloc(count ? (size_t)count * sizeof *dst : sizeof *dst);
    if (!dst) {
        rc = sn__err(err, err_len, -ENOMEM,
                     "'%s': tensor '%s': out of memory", f->path, name);
        goto fail;
    }
    switch (t->dtype) {
    case SN_DT_F32:
        for (uint64_t i = 0; i < count; i++)
            dst[i] = f32_from_bits(load_le32(src + 4 * i));
        break;
    case SN_DT_F16:
        for (uint64_t i = 0; i < count; i++)
            dst[i] = half_to_float(load_le16(src + 2 * i));
        break;
    case SN_DT_BF16:
        for (uint64_t i = 0; i < count; i++)
            dst[i] = f32_from_bits((uint32_t)load_le16(src + 2 * i) << 16);
        break;
    default: /* refused above */
        rc = sn__err(err, err_len, SN_EMODEL, "'%s': tensor '%s': bad dtype",
                     f->path, name);
        goto fail;
    }
    t->converted = dst;
    t->used = 1;
    *out = dst;
    return 0;
fail:
    free(dst);
    return rc;
}

int sn__st_check_unused(const sn__st_file_t *f,
                        const char *const *ignore_prefixes, char *err,
                        size_t err_len)
{
    size_t pl = f->prefix_fixed ? strlen(f->prefix) : 0;
    for (int i = 0; i < f->hdr.n_tensors; i++) {
        const sn__st_tensor_t *t = &f->hdr.tensors[i];
        const char *rel = t->name;
        int ignored = 0;
        if (t->used)
            continue;
        if (pl) { /* outside the encoder's prefix: the wrapper's heads */
            if (strncmp(rel, f->prefix, pl))
                continue;
            rel += pl;
        }
        for (const char *const *p = ignore_prefixes; p && *p && !ignored; p++)
            ignored = strncmp(rel, *p, strlen(*p)) == 0;
        if (!ignored)
            return sn__err(err, err_len, SN_EMODEL,
                           "'%s': unexpected tensor '%s'", f->path, t->name);
    }
    return 0;
}
