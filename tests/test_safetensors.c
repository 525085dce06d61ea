/*
 * test_safetensors.c -- the safetensors reader: a valid file round-trips
 * (F32 in place, F16 and BF16 converted exactly, F16 checked over all 65536
 * values), every kind of corruption fails with its code and a message naming
 * the file and the field, binding checks names and shapes, and the three
 * fixture checkpoints open.
 *
 * Files are built in memory and written to a mkdtemp directory under /tmp,
 * then read back through sn__st_open (the mmap path); the corrupt ones also
 * go through sn__st_parse directly (the pure path the fuzzer drives).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "embed_int.h"

static char tmpdir[] = "/tmp/sense-st-XXXXXX";
static int n_files;

/* ---- building files ------------------------------------------------------ */

typedef struct {
    const char *name, *dtype;
    int n_dims;
    int64_t shape[SN_ST_MAX_DIMS + 1];
    const void *data;
    size_t data_len;
} tspec_t;

typedef struct {
    uint8_t *buf;
    size_t len, cap;
} bytes_t;

static void put(bytes_t *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->buf = realloc(b->buf, b->cap);
        CHECK(b->buf);
    }
    if (n)
        memcpy(b->buf + b->len, p, n);
    b->len += n;
}

static void putf(bytes_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void putf(bytes_t *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    CHECK(n >= 0 && (size_t)n < sizeof tmp);
    put(b, tmp, (size_t)n);
}

/* A file whose length field says n_hdr, followed by `json` (which need not
 * be n_hdr bytes long) and data_len bytes of `data` (zeros if NULL). */
static uint8_t *build_raw(uint64_t n_hdr, const char *json, const void *data,
                          size_t data_len, size_t *len)
{
    bytes_t b = {0};
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(n_hdr >> (8 * i));
    put(&b, le, 8);
    put(&b, json, strlen(json));
    if (data) {
        put(&b, data, data_len);
    } else {
        for (size_t i = 0; i < data_len; i++)
            put(&b, "", 1);
    }
    *len = b.len;
    return b.buf;
}

/* A valid file holding the tensors back to back in list order, the header
 * padded with spaces so that the data section starts at an offset that is
 * off_mod8 modulo 8 (0 as real writers do; 2 to misalign F32). */
static uint8_t *build(const tspec_t *ts, int n, const char *meta,
                      unsigned off_mod8, size_t *len)
{
    bytes_t hdr = {0}, data = {0};
    uint8_t *out;

    putf(&hdr, "{");
    if (meta)
        putf(&hdr, "\"__metadata__\":%s%s", meta, n ? "," : "");
    for (int i = 0; i < n; i++) {
        putf(&hdr, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "",
             ts[i].name, ts[i].dtype);
        for (int d = 0; d < ts[i].n_dims; d++)
            putf(&hdr, "%s%lld", d ? "," : "", (long long)ts[i].shape[d]);
        putf(&hdr, "],\"data_offsets\":[%zu,%zu]}", data.len,
             data.len + ts[i].data_len);
        put(&data, ts[i].data, ts[i].data_len);
    }
    putf(&hdr, "}");
    while ((8 + hdr.len) % 8 != off_mod8)
        put(&hdr, " ", 1);
    put(&hdr, "", 1); /* NUL for build_raw's strlen */
    out = build_raw(hdr.len - 1, (const char *)hdr.buf, data.buf, data.len,
                    len);
    free(hdr.buf);
    free(data.buf);
    return out;
}

static void write_file(const char *path, const uint8_t *buf, size_t len)
{
    FILE *fp = fopen(path, "wb");
    CHECK(fp);
    CHECK(fwrite(buf, 1, len, fp) == len);
    CHECK(fclose(fp) == 0);
}

/* Write buf to a fresh file in tmpdir; its path goes to path. */
static void new_file(const uint8_t *buf, size_t len, char *path,
                     size_t path_len)
{
    snprintf(path, path_len, "%s/%d.safetensors", tmpdir, n_files++);
    write_file(path, buf, len);
}

static sn__st_file_t *open_ok(const uint8_t *buf, size_t len)
{
    char path[256], err[512] = "";
    sn__st_file_t *f = NULL;
    new_file(buf, len, path, sizeof path);
    CHECK_OK(sn__st_open(path, &f, err, sizeof err), err);
    CHECK(f);
    return f;
}

/* buf[0..len) must fail with `code` and a message containing `sub`, both
 * through sn__st_parse and through sn__st_open (whose message must also
 * name the file). */
static void expect_fail_buf(const uint8_t *buf, size_t len, int code,
                            const char *sub, int line)
{
    char path[256], err[512] = "";
    sn__st_header_t hdr;
    sn__st_file_t *f = (sn__st_file_t *)1;
    int rc;

    rc = sn__st_parse(buf, len, "mem", &hdr, err, sizeof err);
    if (rc != code || !strstr(err, sub) || !strstr(err, "'mem'")) {
        fprintf(stderr, "line %d: parse: want %d containing \"%s\", got %d "
                "\"%s\"\n", line, code, sub, rc, err);
        exit(1);
    }
    CHECK(hdr.tensors == NULL && hdr.n_tensors == 0);
    sn__st_header_free(&hdr);

    new_file(buf, len, path, sizeof path);
    err[0] = '\0';
    rc = sn__st_open(path, &f, err, sizeof err);
    if (rc != code || !strstr(err, sub) || !strstr(err, path)) {
        fprintf(stderr, "line %d: open: want %d containing \"%s\" and the "
                "path, got %d \"%s\"\n", line, code, sub, rc, err);
        exit(1);
    }
    CHECK(f == NULL);
}

/* A header `json` stated at its true length, followed by data_len zeros. */
static void expect_fail_json(const char *json, size_t data_len, int code,
                             const char *sub, int line)
{
    size_t len;
    uint8_t *buf = build_raw(strlen(json), json, NULL, data_len, &len);
    expect_fail_buf(buf, len, code, sub, line);
    free(buf);
}
#define FAIL_JSON(json, data_len, code, sub)                                 \
    expect_fail_json(json, data_len, code, sub, __LINE__)

/* ---- reference conversions ----------------------------------------------- */

static uint32_t bits_of(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

/* binary16 by its definition, with no bit tricks. */
static float ref_half(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 31)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexpf((float)m, -24);
    else
        v = ldexpf((float)(m + 1024), e - 25);
    return s ? -v : v;
}

/* ---- tests --------------------------------------------------------------- */

static const float f32_vals[6] = {1.0f, -2.5f, 3.25f, 0.0f, 1e-30f, -7e20f};

static void test_round_trip(void)
{
    /* known F16 values: bits -> exact float (decimal from IEEE tables) */
    static const struct {
        uint16_t h;
        float want;
    } f16[] = {
        {0x0000, 0.0f},
        {0x3c00, 1.0f},
        {0xc000, -2.0f},
        {0x3800, 0.5f},
        {0x3555, 0.333251953125f},
        {0x7bff, 65504.0f},
        {0xfbff, -65504.0f},
        {0x0400, 6.103515625e-05f},            /* smallest normal 2^-14 */
        {0x0001, 5.9604644775390625e-08f},     /* smallest subnormal 2^-24 */
        {0x8001, -5.9604644775390625e-08f},
        {0x03ff, 6.097555160522461e-05f},      /* largest subnormal */
        {0x0200, 3.0517578125e-05f},           /* subnormal 2^-15 */
        {0x7c00, INFINITY},
        {0xfc00, -INFINITY},
    };
    static const struct {
        uint16_t h;
        float want;
    } bf16[] = {
        {0x3f80, 1.0f},
        {0xc000, -2.0f},
        {0x3eab, 0.333984375f},
        {0x7f7f, 3.3895313892515355e38f},
        {0x0080, 1.1754943508222875e-38f}, /* smallest normal 2^-126 */
        {0x0001, 9.183549615799121e-41f},  /* subnormal 2^-133 */
        {0x7f80, INFINITY},
        {0xff80, -INFINITY},
    };
    enum { N_F16 = sizeof f16 / sizeof f16[0] + 3,
           N_BF16 = sizeof bf16 / sizeof bf16[0] + 2 };
    uint8_t f16_data[2 * N_F16], bf16_data[2 * N_BF16];
    uint8_t i64_data[8 * 4] = {0};
    size_t n;

    for (size_t i = 0; i < N_F16; i++) {
        /* the table, then -0, quiet NaN, signalling NaN with payload */
        uint16_t h = i < N_F16 - 3 ? f16[i].h
                                   : (uint16_t[]){0x8000, 0x7e00, 0xfc01}[i - (N_F16 - 3)];
        f16_data[2 * i] = (uint8_t)h;
        f16_data[2 * i + 1] = (uint8_t)(h >> 8);
    }
    for (size_t i = 0; i < N_BF16; i++) {
        uint16_t h = i < N_BF16 - 2 ? bf16[i].h
                                    : (uint16_t[]){0x8000, 0x7fc1}[i - (N_BF16 - 2)];
        bf16_data[2 * i] = (uint8_t)h;
        bf16_data[2 * i + 1] = (uint8_t)(h >> 8);
    }

    tspec_t ts[] = {
        {"w", "F32", 2, {2, 3}, f32_vals, sizeof f32_vals},
        {"h", "F16", 1, {N_F16}, f16_data, sizeof f16_data},
        {"b", "BF16", 1, {N_BF16}, bf16_data, sizeof bf16_data},
        {"embeddings.position_ids", "I64", 2, {1, 4}, i64_data,
         sizeof i64_data},
        {"scalar", "F32", 0, {0}, f32_vals, 4},
        {"empty", "F16", 2, {3, 0}, NULL, 0},
    };
    size_t len;
    uint8_t *buf = build(ts, 6, "{\"format\":\"pt\"}", 0, &len);
    sn__st_file_t *f = open_ok(buf, len);
    char err[512] = "";
    const float *p;

    CHECK_EQ(f->hdr.n_tensors, 6); /* __metadata__ is not a tensor */
    CHECK_EQ(f->hdr.data_offset % 8, 0);
    for (int i = 1; i < f->hdr.n_tensors; i++) /* sorted by name */
        CHECK(strcmp(f->hdr.tensors[i - 1].name, f->hdr.tensors[i].name) < 0);
    CHECK(sn__st_find(f, "w"));
    CHECK(sn__st_find(f, "x") == NULL);
    CHECK_EQ(sn__st_find(f, "h")->dtype, SN_DT_F16);
    CHECK_EQ(sn__st_find(f, "embeddings.position_ids")->dtype, SN_DT_I64);

    /* F32, aligned: a view into the map, the same view on a second bind */
    CHECK_OK(sn__st_get_f32(f, "w", 2, (int64_t[]){2, 3}, &p, err,
                            sizeof err), err);
    CHECK((const uint8_t *)p >= (const uint8_t *)f->map &&
          (const uint8_t *)p < (const uint8_t *)f->map + f->map_len);
    CHECK(sn__st_find(f, "w")->converted == NULL);
    CHECK(memcmp(p, f32_vals, sizeof f32_vals) == 0);
    {
        const float *p2;
        CHECK_OK(sn__st_get_f32(f, "w", 2, (int64_t[]){2, 3}, &p2, err,
                                sizeof err), err);
        CHECK(p2 == p);
    }

    /* F16: the table exactly, then -0, NaN */
    CHECK_OK(sn__st_get_f32(f, "h", 1, (int64_t[]){N_F16}, &p, err,
                            sizeof err), err);
    CHECK(p == sn__st_find(f, "h")->converted);
    for (n = 0; n < N_F16 - 3; n++) {
        if (bits_of(p[n]) != bits_of(f16[n].want)) {
            fprintf(stderr, "f16 0x%04x: got %a want %a\n", f16[n].h, p[n],
                    f16[n].want);
            exit(1);
        }
    }
    CHECK_EQ(bits_of(p[N_F16 - 3]), 0x80000000u); /* -0 */
    CHECK(p[N_F16 - 3] == 0.0f && signbit(p[N_F16 - 3]));
    CHECK(isnan(p[N_F16 - 2]));
    CHECK_EQ(bits_of(p[N_F16 - 2]), 0x7fc00000u); /* quiet NaN */
    CHECK(isnan(p[N_F16 - 1]));
    CHECK_EQ(bits_of(p[N_F16 - 1]), 0xff802000u); /* sign, payload kept */

    /* BF16 */
    CHECK_OK(sn__st_get_f32(f, "b", 1, (int64_t[]){N_BF16}, &p, err,
                            sizeof err), err);
    for (n = 0; n < N_BF16 - 2; n++) {
        if (bits_of(p[n]) != bits_of(bf16[n].want)) {
            fprintf(stderr, "bf16 0x%04x: got %a want %a\n", bf16[n].h, p[n],
                    bf16[n].want);
            exit(1);
        }
    }
    CHECK_EQ(bits_of(p[N_BF16 - 2]), 0x80000000u);
    CHECK(isnan(p[N_BF16 - 1]));
    CHECK_EQ(bits_of(p[N_BF16 - 1]), 0x7fc10000u);

    /* scalar (0 dims, 1 element) and empty (0 elements) */
    CHECK_OK(sn__st_get_f32(f, "scalar", 0, NULL, &p, err, sizeof err), err);
    CHECK(p[0] == 1.0f);
    CHECK_OK(sn__st_get_f32(f, "empty", 2, (int64_t[]){3, 0}, &p, err,
                            sizeof err), err);
    CHECK(p != NULL);

    /* I64 parses but does not bind; the loader ignores it by prefix */
    CHECK_FAILS_WITH(sn__st_get_f32(f, "embeddings.position_ids", 2,
                                    (int64_t[]){1, 4}, &p, err, sizeof err),
                     err, "'embeddings.position_ids' has dtype I64");
    CHECK_FAILS_WITH(sn__st_check_unused(f, NULL, err, sizeof err), err,
                     "unexpected tensor 'embeddings.position_ids'");
    CHECK_OK(sn__st_check_unused(f,
                                 (const char *const[]){"embeddings.position",
                                                       NULL},
                                 err, sizeof err),
             err);

    sn__st_close(f);
    free(buf);
}

/* All 65536 half values against the definition. */
static void test_f16_exhaustive(void)
{
    static uint8_t data[2 * 65536];
    for (unsigned i = 0; i < 65536; i++) {
        data[2 * i] = (uint8_t)i;
        data[2 * i + 1] = (uint8_t)(i >> 8);
    }
    tspec_t ts[] = {{"all", "F16", 1, {65536}, data, sizeof data}};
    size_t len;
    uint8_t *buf = build(ts, 1, NULL, 0, &len);
    sn__st_file_t *f = open_ok(buf, len);
    char err[512] = "";
    const float *p;

    CHECK_OK(sn__st_get_f32(f, "all", 1, (int64_t[]){65536}, &p, err,
                            sizeof err), err);
    for (unsigned i = 0; i < 65536; i++) {
        float want = ref_half((uint16_t)i);
        int ok;
        if (isnan(want))
            ok = isnan(p[i]) && !!signbit(p[i]) == !!(i & 0x8000) &&
                 (bits_of(p[i]) & 0x7fffffu) == (i & 0x3ffu) << 13;
        else
            ok = bits_of(p[i]) == bits_of(want);
        if (!ok) {
            fprintf(stderr, "f16 0x%04x: got %a (0x%08x) want %a\n", i, p[i],
                    bits_of(p[i]), want);
            exit(1);
        }
    }
    sn__st_close(f);
    free(buf);
}

/* F32 whose address is not 4-byte aligned is copied, not viewed. */
static void test_misaligned_f32(void)
{
    tspec_t ts[] = {{"w", "F32", 1, {6}, f32_vals, sizeof f32_vals}};
    size_t len;
    uint8_t *buf = build(ts, 1, NULL, 2, &len);
    sn__st_file_t *f = open_ok(buf, len);
    char err[512] = "";
    const float *p;

    CHECK_EQ(f->hdr.data_offset % 4, 2);
    CHECK_OK(sn__st_get_f32(f, "w", 1, (int64_t[]){6}, &p, err, sizeof err),
             err);
    CHECK(p == sn__st_find(f, "w")->converted);
    CHECK(((uintptr_t)p & 3) == 0);
    CHECK(memcmp(p, f32_vals, sizeof f32_vals) == 0);
    CHECK_OK(sn__st_check_unused(f, NULL, err, sizeof err), err);
    sn__st_close(f);
    free(buf);
}

/* Binding: missing name, wrong shape, unused tensors. */
static void test_binding(void)
{
    tspec_t ts[] = {
        {"a.weight", "F32", 2, {2, 3}, f32_vals, sizeof f32_vals},
        {"a.bias", "F32", 1, {2}, f32_vals, 8},
        {"pooler.dense.weight", "F32", 1, {1}, f32_vals, 4},
    };
    size_t len;
    uint8_t *buf = build(ts, 3, NULL, 0, &len);
    sn__st_file_t *f = open_ok(buf, len);
    char err[512] = "", want[512];
    const float *p = (const float *)1;

    CHECK_EQ(sn__st_get_f32(f, "nope", 1, (int64_t[]){2}, &p, err,
                            sizeof err), SN_EMODEL);
    snprintf(want, sizeof want, "'%s': missing tensor 'nope'", f->path);
    CHECK_STREQ(err, want);
    CHECK(p == NULL);

    CHECK_EQ(sn__st_get_f32(f, "a.weight", 2, (int64_t[]){3, 2}, &p, err,
                            sizeof err), SN_EMODEL);
    snprintf(want, sizeof want,
             "'%s': tensor 'a.weight' has shape [2, 3], expected [3, 2]",
             f->path);
    CHECK_STREQ(err, want);
    CHECK_FAILS_WITH(sn__st_get_f32(f, "a.weight", 3, (int64_t[]){2, 3, 1},
                                    &p, err, sizeof err),
                     err, "has shape [2, 3], expected [2, 3, 1]");
    CHECK_FAILS_WITH(sn__st_get_f32(f, "a.weight", 0, NULL, &p, err,
                                    sizeof err),
                     err, "has shape [2, 3], expected []");
    CHECK_EQ(sn__st_get_f32(f, "a.weight", SN_ST_MAX_DIMS + 1,
                            (int64_t[SN_ST_MAX_DIMS + 1]){0}, &p, err,
                            sizeof err), SN_EARG);

    /* nothing bound yet: the first in name order is reported */
    CHECK_EQ(sn__st_check_unused(f, NULL, err, sizeof err), SN_EMODEL);
    snprintf(want, sizeof want, "'%s': unexpected tensor 'a.bias'", f->path);
    CHECK_STREQ(err, want);
    CHECK_OK(sn__st_get_f32(f, "a.weight", 2, (int64_t[]){2, 3}, &p, err,
                            sizeof err), err);
    CHECK_OK(sn__st_get_f32(f, "a.bias", 1, (int64_t[]){2}, &p, err,
                            sizeof err), err);
    CHECK_FAILS_WITH(sn__st_check_unused(f, NULL, err, sizeof err), err,
                     "unexpected tensor 'pooler.dense.weight'");
    CHECK_FAILS_WITH(sn__st_check_unused(f,
                                         (const char *const[]){"pooler.x",
                                                               NULL},
                                         err, sizeof err),
                     err, "unexpected tensor 'pooler.dense.weight'");
    CHECK_OK(sn__st_check_unused(f,
                                 (const char *const[]){"x.", "pooler.", NULL},
                                 err, sizeof err),
             err);
    sn__st_close(f);
    free(buf);
}

/* A valid file cut short at several points. */
static void test_truncated(void)
{
    tspec_t ts[] = {
        {"a", "F32", 2, {2, 3}, f32_vals, sizeof f32_vals},
        {"b", "F16", 1, {4}, f32_vals, 8},
    };
    size_t len, n_hdr;
    uint8_t *buf = build(ts, 2, NULL, 0, &len);
    char path[256], err[512] = "";
    sn__st_file_t *f = (sn__st_file_t *)1;

    n_hdr = len - 8 - sizeof f32_vals - 8;
    new_file(buf, 0, path, sizeof path); /* empty file: no mmap of 0 bytes */
    CHECK_FAILS_WITH(sn__st_open(path, &f, err, sizeof err), err,
                     "empty file");
    CHECK(f == NULL);
    CHECK(strstr(err, path));

    expect_fail_buf(buf, 1, SN_ECORRUPT, "too short", __LINE__);
    expect_fail_buf(buf, 7, SN_ECORRUPT, "too short for a safetensors header (7 bytes)", __LINE__);
    expect_fail_buf(buf, 8, SN_ECORRUPT, "past end of file (size 8)",
                    __LINE__);
    expect_fail_buf(buf, 8 + n_hdr / 2, SN_ECORRUPT, "past end of file",
                    __LINE__);
    expect_fail_buf(buf, 8 + n_hdr - 1, SN_ECORRUPT, "past end of file",
                    __LINE__);
    /* header whole, data gone or partly gone */
    expect_fail_buf(buf, 8 + n_hdr, SN_ECORRUPT,
                    "past end of data section (0 bytes)", __LINE__);
    expect_fail_buf(buf, 8 + n_hdr + 10, SN_ECORRUPT,
                    "past end of data section", __LINE__);
    expect_fail_buf(buf, len - 1, SN_ECORRUPT,
                    "'b': data_offsets end 32 past end of data section (31 "
                    "bytes)",
                    __LINE__);
    free(buf);
}

static void test_header_length(void)
{
    const char *json = "{}";
    size_t len;
    uint8_t *buf;

    buf = build_raw(0, json, NULL, 0, &len);
    expect_fail_buf(buf, len, SN_ECORRUPT, "zero header length", __LINE__);
    free(buf);
    buf = build_raw(3, json, NULL, 0, &len); /* one byte past the end */
    expect_fail_buf(buf, len, SN_ECORRUPT,
                    "header length 3 past end of file (size 10)", __LINE__);
    free(buf);
    buf = build_raw(UINT64_MAX, json, NULL, 0, &len);
    expect_fail_buf(buf, len, SN_ECORRUPT, "over the limit", __LINE__);
    free(buf);
    buf = build_raw((uint64_t)SN_ST_MAX_HEADER + 1, json, NULL, 0, &len);
    expect_fail_buf(buf, len, SN_ECORRUPT, "over the limit", __LINE__);
    free(buf);
    /* an empty object is a valid file with no tensors */
    {
        sn__st_header_t hdr;
        char err[256] = "";
        buf = build_raw(2, json, NULL, 0, &len);
        CHECK_OK(sn__st_parse(buf, len, "mem", &hdr, err, sizeof err), err);
        CHECK_EQ(hdr.n_tensors, 0);
        CHECK_EQ(hdr.data_offset, 10);
        sn__st_header_free(&hdr);
        sn__st_header_free(NULL);
        free(buf);
    }
}

static void test_bad_json(void)
{
    FAIL_JSON("{\"a\": {", 0, SN_EJSON, "malformed json header at line 1");
    FAIL_JSON("{\"a\": 1,, }", 0, SN_EJSON, "(byte 9)");
    FAIL_JSON("{} trailing", 0, SN_EJSON, "malformed json");
    FAIL_JSON("{\"\xff\": 1}", 0, SN_EJSON, "malformed json");
    FAIL_JSON("{\"a\": 1e999999}", 0, SN_EJSON, "malformed json");
    FAIL_JSON("[1, 2]", 0, SN_ECORRUPT, "header is not a json object");
    FAIL_JSON("{\"__metadata__\": [1]}", 0, SN_ECORRUPT,
              "__metadata__ is not an object");
}

static void test_bad_entries(void)
{
#define E(name, dt, shape, off)                                             \
    "\"" name "\": {\"dtype\": " dt ", \"shape\": " shape                    \
    ", \"data_offsets\": " off "}"
    FAIL_JSON("{\"x\": 5}", 0, SN_ECORRUPT,
              "entry for tensor 'x' is not an object");
    FAIL_JSON("{\"x\": [\"F32\"]}", 0, SN_ECORRUPT, "'x' is not an object");
    FAIL_JSON("{\"x\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
              SN_ECORRUPT, "tensor 'x': missing dtype");
    FAIL_JSON("{" E("x", "32", "[1]", "[0, 4]") "}", 4, SN_ECORRUPT,
              "tensor 'x': non-string dtype");
    FAIL_JSON("{" E("x", "\"F64\"", "[1]", "[0, 8]") "}", 8, SN_EMODEL,
              "unsupported dtype 'F64' for tensor 'x'");
    FAIL_JSON("{" E("x", "\"f32\"", "[1]", "[0, 4]") "}", 4, SN_EMODEL,
              "unsupported dtype 'f32' for tensor 'x'");
    FAIL_JSON("{\"x\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4,
              SN_ECORRUPT, "tensor 'x': missing shape");
    FAIL_JSON("{" E("x", "\"F32\"", "4", "[0, 4]") "}", 4, SN_ECORRUPT,
              "tensor 'x': non-array shape");
    FAIL_JSON("{" E("x", "\"F32\"", "[1.0]", "[0, 4]") "}", 4, SN_ECORRUPT,
              "shape[0] is not an integer");
    FAIL_JSON("{" E("x", "\"F32\"", "[2, -2]", "[0, 16]") "}", 16,
              SN_ECORRUPT, "tensor 'x': negative dim -2");
    FAIL_JSON("{" E("x", "\"F32\"", "[1,1,1,1,1,1,1,1,1]", "[0, 4]") "}", 4,
              SN_ECORRUPT, "tensor 'x' has 9 dims, at most 8");
    FAIL_JSON("{" E("x", "\"F32\"",
                    "[4294967296, 4294967296, 4294967296]", "[0, 4]") "}",
              4, SN_ECORRUPT, "tensor 'x': element count overflows");
    FAIL_JSON("{" E("x", "\"F32\"", "[4611686018427387904]", "[0, 4]") "}",
              4, SN_ECORRUPT, "tensor 'x': byte size overflows");
    FAIL_JSON("{\"x\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4,
              SN_ECORRUPT, "tensor 'x': missing data_offsets");
    FAIL_JSON("{" E("x", "\"F32\"", "[1]", "[0]") "}", 4, SN_ECORRUPT,
              "tensor 'x': malformed data_offsets");
    FAIL_JSON("{" E("x", "\"F32\"", "[1]", "[0, 4, 8]") "}", 8, SN_ECORRUPT,
              "malformed data_offsets");
    FAIL_JSON("{" E("x", "\"F32\"", "[1]", "[0, \"4\"]") "}", 4,
              SN_ECORRUPT, "malformed data_offsets");
    FAIL_JSON("{" E("x", "\"F32\"", "[1]", "[-4, 0]") "}", 4, SN_ECORRUPT,
              "tensor 'x': negative data_offsets [-4, 0]");
    /* byte size against shape */
    FAIL_JSON("{" E("x", "\"F32\"", "[2, 3]", "[0, 20]") "}", 24,
              SN_ECORRUPT,
              "tensor 'x': data_offsets span 20 bytes, shape and dtype F32 "
              "need 24");
    FAIL_JSON("{" E("x", "\"F16\"", "[2, 3]", "[0, 24]") "}", 24,
              SN_ECORRUPT, "span 24 bytes, shape and dtype F16 need 12");
    /* offsets against the data section */
    FAIL_JSON("{" E("x", "\"F32\"", "[2]", "[8, 4]") "}", 8, SN_ECORRUPT,
              "tensor 'x': data_offsets end 4 before begin 8");
    FAIL_JSON("{" E("x", "\"F32\"", "[4]", "[0, 16]") "}", 12, SN_ECORRUPT,
              "tensor 'x': data_offsets end 16 past end of data section "
              "(12 bytes)");
    FAIL_JSON("{" E("x", "\"F32\"", "[1]", "[9223372036854775800, "
                    "9223372036854775804]") "}",
              4, SN_ECORRUPT, "past end of data section");
    /* overlaps, in either header order */
    FAIL_JSON("{" E("a", "\"F32\"", "[4]", "[0, 16]") ", "
              E("b", "\"F32\"", "[4]", "[8, 24]") "}",
              24, SN_ECORRUPT, "tensors 'a' [0, 16) and 'b' [8, 24) overlap");
    FAIL_JSON("{" E("b", "\"F32\"", "[2]", "[4, 12]") ", "
              E("a", "\"F32\"", "[4]", "[0, 16]") "}",
              16, SN_ECORRUPT, "tensors 'a' [0, 16) and 'b' [4, 12) overlap");
    FAIL_JSON("{" E("a", "\"F32\"", "[2]", "[0, 8]") ", "
              E("b", "\"F32\"", "[2]", "[0, 8]") "}",
              8, SN_ECORRUPT, "overlap");
    /* duplicates */
    FAIL_JSON("{" E("a", "\"F32\"", "[1]", "[0, 4]") ", "
              E("a", "\"F32\"", "[1]", "[4, 8]") "}",
              8, SN_ECORRUPT, "duplicate tensor name");
    FAIL_JSON("{\"__metadata__\": {}, \"__metadata__\": {}}", 0, SN_ECORRUPT,
              "duplicate");

    /* valid edge cases: adjacent, gaps, empty tensors inside others */
    {
        const char *json =
            "{" E("a", "\"F32\"", "[2]", "[0, 8]") ", "
            E("b", "\"BF16\"", "[2]", "[8, 12]") ", "
            E("c", "\"F32\"", "[0, 5]", "[4, 4]") ", "
            E("d", "\"F32\"", "[1]", "[16, 20]") ", "
            "\"__metadata__\": {\"format\": \"pt\"}}";
        size_t len;
        uint8_t *buf = build_raw(strlen(json), json, NULL, 20, &len);
        sn__st_header_t hdr;
        char err[256] = "";
        CHECK_OK(sn__st_parse(buf, len, "mem", &hdr, err, sizeof err), err);
        CHECK_EQ(hdr.n_tensors, 4);
        CHECK_STREQ(hdr.tensors[2].name, "c");
        CHECK_EQ(hdr.tensors[2].n_dims, 2);
        CHECK_EQ(hdr.tensors[2].shape[1], 5);
        CHECK_EQ(hdr.tensors[1].dtype, SN_DT_BF16);
        CHECK_EQ(hdr.tensors[3].begin, 16);
        sn__st_header_free(&hdr);
        free(buf);
    }
#undef E
}

static void test_open_errors(void)
{
    char path[256], err[512] = "";
    sn__st_file_t *f = (sn__st_file_t *)1;

    snprintf(path, sizeof path, "%s/does-not-exist.safetensors", tmpdir);
    CHECK_EQ(sn__st_open(path, &f, err, sizeof err), -ENOENT);
    CHECK(strstr(err, path));
    CHECK(f == NULL);
    CHECK_FAILS_WITH(sn__st_open(tmpdir, &f, err, sizeof err), err,
                     "not a regular file");
    sn__st_close(NULL);
}

static void test_fixtures(void)
{
    static const struct {
        const char *model;
        int n_tensors;
        int64_t n_vocab, n_hidden;
    } fx[] = {
        {"tiny-bert-cased", 55, 4000, 48},
        {"tiny-bert-uncased", 39, 4000, 64},
        {"tiny-xlmr-unigram", 39, 3000, 64},
    };
    for (size_t i = 0; i < sizeof fx / sizeof fx[0]; i++) {
        char path[1024], err[512] = "";
        sn__st_file_t *f = NULL;
        const float *p;

        snprintf(path, sizeof path,
                 "%s/hf-reference/%s/model/model.safetensors", SN_FIXTURES,
                 fx[i].model);
        if (!sn__file_exists(path)) {
            fprintf(stderr, "skip: no fixture '%s'\n", path);
            continue;
        }
        CHECK_OK(sn__st_open(path, &f, err, sizeof err), err);
        CHECK_EQ(f->hdr.n_tensors, fx[i].n_tensors);
        CHECK_OK(sn__st_get_f32(f, "embeddings.word_embeddings.weight", 2,
                                (int64_t[]){fx[i].n_vocab, fx[i].n_hidden},
                                &p, err, sizeof err),
                 err);
        /* every tensor binds at its own shape, in place (aligned F32) */
        for (int t = 0; t < f->hdr.n_tensors; t++) {
            sn__st_tensor_t *tt = &f->hdr.tensors[t];
            CHECK_OK(sn__st_get_f32(f, tt->name, tt->n_dims, tt->shape, &p,
                                    err, sizeof err),
                     err);
            CHECK(tt->converted == NULL);
            for (int64_t k = 0; k < (int64_t)(tt->end - tt->begin) / 4; k++)
                CHECK(isfinite(p[k]));
        }
        CHECK_OK(sn__st_check_unused(f, NULL, err, sizeof err), err);
        sn__st_close(f);
    }
}

int main(void)
{
    CHECK(mkdtemp(tmpdir));
    test_round_trip();
    test_f16_exhaustive();
    test_misaligned_f32();
    test_binding();
    test_truncated();
    test_header_length();
    test_bad_json();
    test_bad_entries();
    test_open_errors();
    test_fixtures();

    for (int i = 0; i < n_files; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%d.safetensors", tmpdir, i);
        unlink(path);
    }
    CHECK(rmdir(tmpdir) == 0);
    printf("safetensors: ok (%d files)\n", n_files);
    return 0;
}
