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

int sn__st_open(const char *path, sn__st_file_t **out, char *err,
                size_t err_len)
{
    sn__st_file_t *f = NULL;
    struct stat st;
    int fd = -1, rc;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = sn__err(err, err_len, -errno, "'%s': %s", path, strerror(errno));
        goto fail;
    }
    if (fstat(fd, &st) != 0) {
        rc = sn__err(err, err_len, -errno, "'%s': %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = sn__err(err, err_len, -EINVAL, "'%s': not a regular file", path);
        goto fail;
    }
    if (st.st_size == 0) { /* mmap of 0 bytes fails with EINVAL */
        rc = sn__err(err, err_len, SN_ECORRUPT, "'%s': empty file", path);
        goto fail;
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        rc = sn__err(err, err_len, SN_ETOOBIG, "'%s': file too large", path);
        goto fail;
    }
    f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        rc = sn__err(err, err_len, -ENOMEM, "'%s': out of memory", path);
        goto fail;
    }
    f->map_len = (size_t)st.st_size;
    f->map = mmap(NULL, f->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        rc = sn__err(err, err_len, -errno, "'%s': mmap: %s", path,
                     strerror(errno));
        goto fail;
    }
    close(fd); /* the mapping keeps the file */
    fd = -1;
    rc = sn__st_parse(f->map, f->map_len, path, &f->hdr, err, err_len);
    if (rc < 0)
        goto fail;
    *out = f;
    return 0;
fail:
    if (fd >= 0)
        close(fd);
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
    free(f->path);
    free(f);
}

static int cmp_key_name(const void *key, const void *elem)
{
    return strcmp(key, ((const sn__st_tensor_t *)elem)->name);
}

sn__st_tensor_t *sn__st_find(sn__st_file_t *f, const char *name)
{
    if (!f || !name || !f->hdr.n_tensors)
        return NULL;
    return bsearch(name, f->hdr.tensors, (size_t)f->hdr.n_tensors,
                   sizeof *f->hdr.tensors, cmp_key_name);
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
        rc = sn__err(err, err_len, SN_EMODEL, "'%s': missing tensor '%s'",
                     f ? f->path : "(null)", name ? name : "(null)");
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

    src = (const uint8_t *)f->map + f->hdr.data_offset + t->begin;
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
    for (int i = 0; i < f->hdr.n_tensors; i++) {
        const sn__st_tensor_t *t = &f->hdr.tensors[i];
        int ignored = 0;
        if (t->used)
            continue;
        for (const char *const *p = ignore_prefixes; p && *p && !ignored; p++)
            ignored = strncmp(t->name, *p, strlen(*p)) == 0;
        if (!ignored)
            return sn__err(err, err_len, SN_EMODEL,
                           "'%s': unexpected tensor '%s'", f->path, t->name);
    }
    return 0;
}
