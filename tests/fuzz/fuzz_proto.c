/*
 * fuzz_proto.c -- libFuzzer target for the daemon's wire format
 * (daemon/proto.c, compiled in: it is pure, with no I/O and no model).
 *
 * The input is one request line. Parsing may fail, with a protocol error
 * code and a message; either way a reply is written (an error reply, or a
 * success reply echoing every field the parser returned), and the reply
 * must be exactly one line of valid JSON whose "id" equals the request's
 * id. The input's bytes are also written as a JSON string, which must
 * always load back (invalid UTF-8 becomes U+FFFD), unchanged when the
 * UTF-8 validator accepts the input.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../daemon/proto.c"

#define FUZZ_MAX_INPUT (1 << 20)

static void die(const char *what, const sn__buf_t *b)
{
    fprintf(stderr, "fuzz_proto: %s: %.*s\n", what,
            (int)(b->len > 400 ? 400 : b->len), b->data ? b->data : "");
    abort();
}

/* b holds exactly one line of valid JSON; returns it parsed. */
static json_t *one_line(const sn__buf_t *b)
{
    if (b->err || b->len < 2 || b->data[b->len - 1] != '\n')
        die("reply is not a line", b);
    if (memchr(b->data, '\n', b->len - 1))
        die("reply holds a newline", b);
    json_error_t jerr;
    json_t *j = json_loadb(b->data, b->len - 1, JSON_ALLOW_NUL, &jerr);
    if (!j || !json_is_object(j))
        die("reply is not a JSON object", b);
    return j;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *line = (const char *)data;
    sn__request_t req;
    sn__buf_t b;
    char msg[512];
    json_t *j;

    if (size > FUZZ_MAX_INPUT)
        return 0;
    sn__buf_init(&b, 64u << 20);
    sn__perr_t code = sn__proto_parse(line, size, &req, msg, sizeof msg);
    if (code) {
        if (!msg[0])
            die("failure without a message", &b);
        sn__proto_reply_error(&b, req.id_json, code, msg);
    } else {
        /* echo what was parsed, as the ops would */
        sn__proto_reply_begin(&b, req.id_json);
        sn__buf_printf(&b, ",\"op\":\"%s\",\"texts\":[", sn_op_name(req.op));
        for (int i = 0; i < req.n_texts; i++) {
            if (i)
                sn__buf_put(&b, ",", 1);
            sn__buf_json_str(&b, req.texts[i], req.lens[i]);
        }
        sn__buf_puts(&b, "],\"docs\":[");
        for (int i = 0; i < req.n_docs; i++) {
            sn__buf_puts(&b, i ? ",{\"text\":" : "{\"text\":");
            sn__buf_json_str(&b, req.docs[i].text, req.docs[i].text_len);
            sn__buf_puts(&b, ",\"meta\":");
            sn__buf_puts(&b, req.docs[i].meta_json ? req.docs[i].meta_json
                                                   : "null");
            sn__buf_put(&b, "}", 1);
        }
        sn__buf_puts(&b, "],\"ids\":[");
        for (int i = 0; i < req.n_ids; i++) {
            if (i)
                sn__buf_put(&b, ",", 1);
            sn__buf_json_str(&b, req.ids[i], strlen(req.ids[i]));
        }
        sn__buf_puts(&b, "],\"query\":");
        sn__buf_json_str(&b, req.query ? req.query : "", req.query_len);
        sn__buf_puts(&b, ",\"filter\":");
        sn__buf_puts(&b, req.filter_json ? req.filter_json : "null");
        sn__buf_puts(&b, ",\"collection\":");
        sn__buf_json_str(&b, req.collection ? req.collection : "",
                         req.collection ? strlen(req.collection) : 0);
        float v[3] = {1.5f, -0.0f, 1e-30f};
        sn__buf_puts(&b, ",\"v\":");
        sn__buf_floats(&b, v, 3);
        sn__proto_reply_end(&b);
    }
    j = one_line(&b);
    /* the id is echoed exactly */
    if (req.id_json) {
        json_t *id = json_loads(req.id_json, JSON_DECODE_ANY | JSON_ALLOW_NUL,
                                NULL);
        if (!id || !json_equal(id, json_object_get(j, "id")))
            die("id not echoed", &b);
        json_decref(id);
    } else if (!json_is_null(json_object_get(j, "id"))) {
        die("id not null", &b);
    }
    if (json_is_true(json_object_get(j, "ok")) != (code == SN__P_OK))
        die("ok does not match", &b);
    json_decref(j);
    sn__request_free(&req);
    sn__buf_free(&b);

    /* any bytes make a loadable JSON string */
    sn__buf_init(&b, 64u << 20);
    sn__buf_json_str(&b, line, size);
    j = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!j || !json_is_string(j))
        die("json_str output does not load", &b);
    size_t bad;
    if (sn_utf8_valid(line, size, &bad) &&
        (json_string_length(j) != size || memcmp(json_string_value(j), line,
                                                 size)))
        die("valid utf-8 not kept as is", &b);
    json_decref(j);
    sn__buf_free(&b);
    return 0;
}
