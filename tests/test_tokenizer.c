/*
 * test_tokenizer.c -- the tokenizers against Hugging Face tokenizers' own
 * output, and their error paths.
 *
 * Parity: for every model in ../shared/fixtures/hf-reference (two WordPiece,
 * one Unigram) and each of the 112 lines of its expected.jsonl, the ids must
 * equal `ids` and every non-special token's [start, end) must equal
 * `offsets` (code points), with max_tokens = tokenizer_config.json's
 * model_max_length. The first mismatch of a model is printed in full; the
 * test fails after reporting every model's count.
 *
 * Also: the vocab.txt-only load path gives the same encodings as
 * tokenizer.json; invalid UTF-8 fails with SN_EUTF8 and the byte offset;
 * malformed tokenizer.json fails with a message naming the problem;
 * truncation keeps the specials; added tokens in the text are cut out.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "check.h"
#include "embed_int.h"
#include "sense/sense.h"

#define HF_DIR SN_FIXTURES "/hf-reference"
#define N_SENTENCES 112

static const char *const models[] = {"tiny-bert-uncased", "tiny-bert-cased",
                                     "tiny-xlmr-unigram"};

typedef struct {
    char *text;
    size_t len;
    int n;
    int32_t *ids, *start, *end;
} ref_t;

static char *read_all(const char *path, size_t *len)
{
    char err[512];
    char *buf;
    int rc = sn__read_file(path, (size_t)1 << 30, &buf, len, err, sizeof err);
    CHECK_OK(rc, err);
    return buf;
}

static int model_max_length(const char *model)
{
    char path[1024];
    json_error_t je;
    snprintf(path, sizeof path, "%s/%s/model/tokenizer_config.json", HF_DIR,
             model);
    json_t *cfg = json_load_file(path, 0, &je);
    CHECK(cfg);
    json_t *v = json_object_get(cfg, "model_max_length");
    CHECK(json_is_integer(v));
    int n = (int)json_integer_value(v);
    json_decref(cfg);
    return n;
}

/* Read expected.jsonl: n_refs entries. */
static ref_t *load_refs(const char *model, int *n_refs)
{
    char path[1024];
    size_t len;
    snprintf(path, sizeof path, "%s/%s/expected.jsonl", HF_DIR, model);
    char *buf = read_all(path, &len);
    ref_t *refs = calloc(N_SENTENCES + 1, sizeof *refs);
    CHECK(refs);
    int n = 0;
    for (char *line = buf; *line;) {
        char *nl = strchr(line, '\n');
        size_t l = nl ? (size_t)(nl - line) : strlen(line);
        if (l > 0) {
            json_error_t je;
            CHECK(n < N_SENTENCES);
            json_t *o = json_loadb(line, l, 0, &je);
            CHECK(o);
            json_t *text = json_object_get(o, "text");
            json_t *ids = json_object_get(o, "ids");
            json_t *offs = json_object_get(o, "offsets");
            CHECK(json_is_string(text) && json_is_array(ids) &&
                  json_is_array(offs));
            CHECK_EQ(json_array_size(ids), json_array_size(offs));
            ref_t *r = &refs[n++];
            r->len = json_string_length(text);
            r->text = malloc(r->len + 1);
            memcpy(r->text, json_string_value(text), r->len + 1);
            r->n = (int)json_array_size(ids);
            r->ids = malloc((size_t)r->n * sizeof *r->ids + 1);
            r->start = malloc((size_t)r->n * sizeof *r->start + 1);
            r->end = malloc((size_t)r->n * sizeof *r->end + 1);
            for (int i = 0; i < r->n; i++) {
                json_t *p = json_array_get(offs, (size_t)i);
                r->ids[i] = (int32_t)json_integer_value(
                    json_array_get(ids, (size_t)i));
                r->start[i] = (int32_t)json_integer_value(json_array_get(p, 0));
                r->end[i] = (int32_t)json_integer_value(json_array_get(p, 1));
            }
            json_decref(o);
        }
        line += l + (nl ? 1 : 0);
    }
    free(buf);
    *n_refs = n;
    return refs;
}

static void free_refs(ref_t *refs, int n)
{
    for (int i = 0; i < n; i++) {
        free(refs[i].text);
        free(refs[i].ids);
        free(refs[i].start);
        free(refs[i].end);
    }
    free(refs);
}

static void print_list(const char *label, int n, const int32_t *ids,
                       const int32_t *start, const int32_t *end)
{
    fprintf(stderr, "  %s (%d):", label, n);
    for (int i = 0; i < n; i++)
        fprintf(stderr, " %d[%d,%d)", (int)ids[i], (int)start[i],
                (int)end[i]);
    fprintf(stderr, "\n");
}

/* Whether enc matches r: same ids, same offsets for non-special tokens. */
static int matches(const ref_t *r, const sn_encoding_t *enc)
{
    if (enc->n_tokens != r->n)
        return 0;
    for (int i = 0; i < r->n; i++) {
        if (enc->ids[i] != r->ids[i])
            return 0;
        if (!enc->special[i] &&
            (enc->start[i] != r->start[i] || enc->end[i] != r->end[i]))
            return 0;
    }
    return 1;
}

/* Encode every reference sentence; report; return the number matching. */
static int check_parity(const char *label, const sn_tokenizer_t *tok,
                        const ref_t *refs, int n_refs, int max_tokens)
{
    sn_encoding_t enc = {0};
    char err[512];
    int ok = 0, shown = 0;

    for (int i = 0; i < n_refs; i++) {
        const ref_t *r = &refs[i];
        int rc = sn_tokenizer_encode(tok, r->text, r->len, max_tokens, &enc,
                                     err, sizeof err);
        CHECK_OK(rc, err);
        if (matches(r, &enc)) {
            ok++;
            continue;
        }
        if (!shown) {
            shown = 1;
            fprintf(stderr, "%s: sentence %d differs: \"%s\"\n", label, i,
                    r->text);
            print_list("expected", r->n, r->ids, r->start, r->end);
            print_list("got     ", enc.n_tokens, enc.ids, enc.start, enc.end);
        }
    }
    printf("%s: %d/%d sentences match\n", label, ok, n_refs);
    sn_encoding_free(&enc);
    return ok;
}

/* Same encodings from two tokenizers over the reference texts. */
static void check_same(const char *label, const sn_tokenizer_t *a,
                       const sn_tokenizer_t *b, const ref_t *refs, int n_refs,
                       int max_tokens)
{
    sn_encoding_t ea = {0}, eb = {0};
    char err[512];
    for (int i = 0; i < n_refs; i++) {
        CHECK_OK(sn_tokenizer_encode(a, refs[i].text, refs[i].len, max_tokens,
                                     &ea, err, sizeof err),
                 err);
        CHECK_OK(sn_tokenizer_encode(b, refs[i].text, refs[i].len, max_tokens,
                                     &eb, err, sizeof err),
                 err);
        int same = ea.n_tokens == eb.n_tokens;
        for (int k = 0; same && k < ea.n_tokens; k++)
            same = ea.ids[k] == eb.ids[k] && ea.start[k] == eb.start[k] &&
                   ea.end[k] == eb.end[k] && ea.special[k] == eb.special[k];
        if (!same) {
            fprintf(stderr, "%s: sentence %d differs: \"%s\"\n", label, i,
                    refs[i].text);
            print_list("tokenizer.json", ea.n_tokens, ea.ids, ea.start,
                       ea.end);
            print_list("vocab.txt     ", eb.n_tokens, eb.ids, eb.start,
                       eb.end);
            exit(1);
        }
    }
    sn_encoding_free(&ea);
    sn_encoding_free(&eb);
}

static void copy_file(const char *from, const char *to)
{
    size_t len;
    char *buf = read_all(from, &len);
    FILE *fp = fopen(to, "wb");
    CHECK(fp);
    CHECK_EQ(fwrite(buf, 1, len, fp), len);
    CHECK_EQ(fclose(fp), 0);
    free(buf);
}

/* The BERT models from vocab.txt + tokenizer_config.json alone. */
static void test_vocab_path(const char *model, const sn_tokenizer_t *ref,
                            const ref_t *refs, int n_refs, int max_tokens)
{
    char dir[] = "/tmp/sn_tok_XXXXXX", from[1024], to[1024], err[512];
    const char *files[2] = {"vocab.txt", "tokenizer_config.json"};
    sn_tokenizer_t *tok;

    CHECK(mkdtemp(dir));
    for (int k = 0; k < 2; k++) {
        snprintf(from, sizeof from, "%s/%s/model/%s", HF_DIR, model, files[k]);
        snprintf(to, sizeof to, "%s/%s", dir, files[k]);
        copy_file(from, to);
    }
    CHECK_OK(sn_tokenizer_load(dir, &tok, err, sizeof err), err);
    CHECK_EQ(sn_tokenizer_n_vocab(tok), sn_tokenizer_n_vocab(ref));
    check_same(model, ref, tok, refs, n_refs, max_tokens);
    check_same(model, ref, tok, refs, n_refs, 0);
    sn_tokenizer_free(tok);
    for (int k = 0; k < 2; k++) {
        snprintf(to, sizeof to, "%s/%s", dir, files[k]);
        CHECK_EQ(unlink(to), 0);
    }
    CHECK_EQ(rmdir(dir), 0);
    printf("%s: vocab.txt path gives the same encodings\n", model);
}

/* Count the code points of valid UTF-8. */
static int32_t n_code_points(const char *s, size_t len)
{
    int32_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xc0) != 0x80;
    return n;
}

/* A text far longer than the normalizer's chunks encodes as its sentences
 * do one by one: all 112 joined by spaces must give the concatenation of
 * their encodings, offsets shifted. Then words longer than a chunk. */
static void test_long_text(const char *label, const sn_tokenizer_t *tok,
                           const ref_t *refs, int n_refs)
{
    sn_encoding_t whole = {0}, one = {0};
    char err[512];
    size_t len = 0;
    for (int i = 0; i < n_refs; i++)
        len += refs[i].len + 1;
    char *text = malloc(len + 1), *p = text;
    for (int i = 0; i < n_refs; i++) {
        memcpy(p, refs[i].text, refs[i].len);
        p += refs[i].len;
        *p++ = ' ';
    }
    CHECK_OK(sn_tokenizer_encode(tok, text, len, 0, &whole, err, sizeof err),
             err);
    int k = 1;      /* after [CLS] */
    int32_t shift = 0;
    for (int i = 0; i < n_refs; i++) {
        CHECK_OK(sn_tokenizer_encode(tok, refs[i].text, refs[i].len, 0, &one,
                                     err, sizeof err),
                 err);
        for (int j = 1; j + 1 < one.n_tokens; j++, k++) {
            if (k >= whole.n_tokens - 1 || whole.ids[k] != one.ids[j] ||
                whole.start[k] != one.start[j] + shift ||
                whole.end[k] != one.end[j] + shift) {
                fprintf(stderr, "%s: long text differs in sentence %d token "
                        "%d\n", label, i, j);
                exit(1);
            }
        }
        shift += n_code_points(refs[i].text, refs[i].len) + 1;
    }
    CHECK_EQ(k, whole.n_tokens - 1);
    free(text);

    /* a 20000-char word of 'e' + U+0301: one unk over all of it; and a
     * 30000-char run of U+0301 alone, which has no safe cut */
    size_t n = 20000;
    text = malloc(3 * n + 8);
    p = text;
    for (size_t i = 0; i < n / 2; i++) {
        *p++ = 'e';
        *p++ = (char)0xcc;
        *p++ = (char)0x81;
    }
    memcpy(p, " ok", 3);
    p += 3;
    CHECK_OK(sn_tokenizer_encode(tok, text, (size_t)(p - text), 0, &whole,
                                 err, sizeof err),
             err);
    CHECK(whole.n_tokens >= 4);
    CHECK_STREQ(sn_tokenizer_piece(tok, whole.ids[1]), "[UNK]");
    CHECK_EQ(whole.start[1], 0);
    /* a trailing accent stripped away is outside the span, as in HF */
    CHECK(whole.end[1] == (int32_t)n || whole.end[1] == (int32_t)n - 1);
    CHECK_EQ(whole.start[2], (int32_t)n + 1);
    p = text;
    for (size_t i = 0; i < n; i++) {
        *p++ = (char)0xcc;
        *p++ = (char)0x81;
    }
    CHECK_OK(sn_tokenizer_encode(tok, text, (size_t)(p - text), 0, &whole,
                                 err, sizeof err),
             err);
    free(text);
    sn_encoding_free(&whole);
    sn_encoding_free(&one);
    printf("%s: long text encodes as its parts\n", label);
}

static void test_invalid_utf8(const sn_tokenizer_t *tok)
{
    static const struct {
        const char *s;
        size_t len;
        const char *at;
    } cases[] = {
        {"ab\x80" "cd", 5, "byte 2"},         /* lone continuation byte */
        {"\xc0\xaf", 2, "byte 0"},             /* overlong '/' */
        {"x\xe0\x80\xaf", 4, "byte 1"},        /* overlong, 3 bytes */
        {"ok \xed\xa0\x80", 6, "byte 3"},      /* surrogate U+D800 */
        {"abc\xe2\x82", 5, "byte 3"},          /* truncated sequence */
        {"\xf4\x90\x80\x80", 4, "byte 0"},     /* past U+10FFFF */
        {"a\xff", 2, "byte 1"},
        {"\xe2\x82 x", 4, "byte 0"},           /* cut by a space */
    };
    sn_encoding_t enc = {0};
    char err[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        int rc = sn_tokenizer_encode(tok, cases[i].s, cases[i].len, 0, &enc,
                                     err, sizeof err);
        CHECK_FAILS_WITH(rc, err, cases[i].at);
        CHECK_EQ(rc, SN_EUTF8);
        CHECK_EQ(enc.n_tokens, 0);
    }
    /* an embedded NUL is valid UTF-8 and cleaned away */
    CHECK_OK(sn_tokenizer_encode(tok, "a\0b", 3, 0, &enc, err, sizeof err),
             err);
    sn_encoding_free(&enc);
    printf("invalid utf-8: rejected with the byte offset\n");
}

static void expect_json_error(const char *json, int code, const char *sub)
{
    sn_tokenizer_t *tok = (sn_tokenizer_t *)1;
    char err[512] = "";
    int rc = sn_tokenizer_from_json(json, strlen(json), &tok, err, sizeof err);
    if (rc != code || !strstr(err, sub) || tok) {
        fprintf(stderr, "json %s\n  -> rc=%d (want %d) msg=\"%s\" (want "
                "\"%s\")\n", json, rc, code, err, sub);
        exit(1);
    }
}

#define WP_MODEL(vocab)                                                      \
    "\"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\", "        \
    "\"continuing_subword_prefix\": \"##\", "                                \
    "\"max_input_chars_per_word\": 100, \"vocab\": " vocab "}"
#define SMALL_VOCAB                                                          \
    "{\"[UNK]\": 0, \"[CLS]\": 1, \"[SEP]\": 2, \"hello\": 3, \"hel\": 4, "  \
    "\"##lo\": 5, \",\": 6, \"world\": 7, \"<mask>\": 8}"
#define BERT_NORM                                                            \
    "\"normalizer\": {\"type\": \"BertNormalizer\", \"clean_text\": true, "  \
    "\"handle_chinese_chars\": true, \"strip_accents\": null, "              \
    "\"lowercase\": true}"
#define BERT_PRE "\"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}"
#define BERT_POST                                                            \
    "\"post_processor\": {\"type\": \"BertProcessing\", "                    \
    "\"sep\": [\"[SEP]\", 2], \"cls\": [\"[CLS]\", 1]}"

static void test_malformed_json(void)
{
    size_t len;
    char path[1024];
    snprintf(path, sizeof path, "%s/tiny-bert-uncased/model/tokenizer.json",
             HF_DIR);
    char *full = read_all(path, &len);
    full[len / 2] = '\0'; /* truncated */
    expect_json_error(full, SN_EJSON, "line ");
    free(full);

    expect_json_error("", SN_EJSON, "'tokenizer.json': line 1");
    expect_json_error("{\"model\": ", SN_EJSON, "column");
    expect_json_error("[]", SN_EMODEL, "json object");
    expect_json_error("{\"model\": 5}", SN_EMODEL, "model");
    expect_json_error("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {}}}",
                      SN_EMODEL, "model.type 'WordLevel'");
    /* BPE: the parts a byte-level tokenizer.json must have */
    expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {}}}",
                      SN_EMODEL, "model.vocab: missing, empty");
    expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": "
                      "{\"a\": 0, \"b\": 1}}}",
                      SN_EMODEL, "model.merges: missing");
    expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": "
                      "{\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": "
                      "[\"a b\", \"a c\"]}}",
                      SN_EMODEL, "model.merges[1]: 'c' is not in the vocabulary");
    expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": "
                      "{\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}",
                      SN_EMODEL, "model.merges[0]: 'ab' is not in the vocabulary");
    expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": "
                      "{\"a\": 0, \"b\": 1}, \"merges\": [[\"a\"]]}}",
                      SN_EMODEL, "model.merges[0]: expected");
    expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": "
                      "{\"a\": 0}, \"merges\": [], \"unk_token\": \"<unk>\"}}",
                      SN_EMODEL, "model.unk_token '<unk>' is not in the vocabulary");
    expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": "
                      "{\"a\": 0}, \"merges\": [], \"dropout\": 0.1}}",
                      SN_EMODEL, "model.dropout");
    expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": "
                      "{\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": "
                      "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(a\"}, "
                      "\"behavior\": \"Isolated\"}}",
                      SN_EMODEL, "pre_tokenizer: Split: regex '(a'");
    expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": "
                      "{\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": "
                      "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, "
                      "\"behavior\": \"Sideways\"}}",
                      SN_EMODEL, "'behavior' 'Sideways'");
    expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": "
                      "{\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": "
                      "{\"type\": \"Digits\"}}",
                      SN_EMODEL, "pre_tokenizer 'Digits' is not supported");
    expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": "
                      "{\"a\": 0}, \"merges\": []}, \"normalizer\": "
                      "{\"type\": \"Precompiled\", \"precompiled_charsmap\": "
                      "\"BAAAAAEC\"}}",
                      SN_EMODEL, "'precompiled_charsmap' is truncated");
    expect_json_error("{\"model\": {\"type\": 7}}", SN_EMODEL, "model");
    expect_json_error("{" BERT_NORM ", " BERT_PRE ", "
                      "\"model\": {\"type\": \"WordPiece\", \"vocab\": [1]}}",
                      SN_EMODEL, "model.vocab");
    expect_json_error("{" BERT_NORM ", " BERT_PRE ", " WP_MODEL(
                          "{\"a\": 0, \"b\": 5}") "}",
                      SN_EMODEL, "model.vocab['b']");
    expect_json_error("{" BERT_NORM ", " BERT_PRE ", " WP_MODEL(
                          "{\"a\": 0, \"b\": \"1\"}") "}",
                      SN_EMODEL, "model.vocab['b']");
    expect_json_error("{" BERT_NORM ", " BERT_PRE ", " WP_MODEL(
                          "{\"a\": 0, \"b\": 0}") "}",
                      SN_EMODEL, "model.vocab");
    expect_json_error("{\"normalizer\": {\"type\": \"NFKC\"}, " BERT_PRE
                      ", " WP_MODEL(SMALL_VOCAB) "}",
                      SN_EMODEL, "normalizer.type 'NFKC'");
    expect_json_error("{\"normalizer\": {\"type\": \"BertNormalizer\", "
                      "\"lowercase\": \"yes\"}, " BERT_PRE
                      ", " WP_MODEL(SMALL_VOCAB) "}",
                      SN_EMODEL, "normalizer.lowercase");
    expect_json_error("{" BERT_NORM ", \"pre_tokenizer\": {\"type\": "
                      "\"Whitespace\"}, " WP_MODEL(SMALL_VOCAB) "}",
                      SN_EMODEL, "pre_tokenizer.type 'Whitespace'");
    expect_json_error("{" BERT_NORM ", " BERT_PRE ", " WP_MODEL(SMALL_VOCAB)
                      ", \"post_processor\": {\"type\": \"Nope\"}}",
                      SN_EMODEL, "post_processor.type 'Nope'");
    expect_json_error("{" BERT_NORM ", " BERT_PRE ", " WP_MODEL(SMALL_VOCAB)
                      ", \"post_processor\": {\"type\": "
                      "\"TemplateProcessing\", \"single\": [{\"SpecialToken\":"
                      " {\"id\": \"[X]\", \"type_id\": 0}}, {\"Sequence\": "
                      "{\"id\": \"A\", \"type_id\": 0}}], "
                      "\"special_tokens\": {}}}",
                      SN_EMODEL, "'[X]'");
    expect_json_error("{" BERT_NORM ", " BERT_PRE ", " WP_MODEL(SMALL_VOCAB)
                      ", \"post_processor\": {\"type\": \"BertProcessing\", "
                      "\"sep\": [\"[SEP]\", 99999], \"cls\": [\"[CLS]\", 1]}}",
                      SN_EMODEL, "99999");
    expect_json_error("{" BERT_NORM ", " BERT_PRE ", " WP_MODEL(SMALL_VOCAB)
                      ", \"added_tokens\": {}}",
                      SN_EMODEL, "added_tokens");
    expect_json_error("{" BERT_NORM ", " BERT_PRE ", " WP_MODEL(SMALL_VOCAB)
                      ", \"added_tokens\": [{\"id\": \"x\", \"content\": "
                      "\"a\"}]}",
                      SN_EMODEL, "added_tokens[0]");
    /* the unigram loader's own checks, reached through the same entry */
    sn_tokenizer_t *tok = NULL;
    char err[512] = "";
    const char *ug = "{\"model\": {\"type\": \"Unigram\", \"vocab\": 5}}";
    CHECK_FAILS_WITH(sn_tokenizer_from_json(ug, strlen(ug), &tok, err,
                                            sizeof err),
                     err, "tokenizer.json");
    CHECK(tok == NULL);
    printf("malformed tokenizer.json: clear errors\n");
}

static void expect_tokens(const sn_tokenizer_t *tok, const char *text,
                          int max_tokens, const int32_t *ids,
                          const int32_t *offs, int n)
{
    sn_encoding_t enc = {0};
    char err[512];
    CHECK_OK(sn_tokenizer_encode(tok, text, strlen(text), max_tokens, &enc,
                                 err, sizeof err),
             err);
    int same = enc.n_tokens == n;
    for (int i = 0; same && i < n; i++)
        same = enc.ids[i] == ids[i] && enc.start[i] == offs[2 * i] &&
               enc.end[i] == offs[2 * i + 1];
    if (!same) {
        fprintf(stderr, "\"%s\":\n", text);
        int32_t st[64], en[64];
        for (int i = 0; i < n && i < 64; i++) {
            st[i] = offs[2 * i];
            en[i] = offs[2 * i + 1];
        }
        print_list("expected", n, ids, st, en);
        print_list("got     ", enc.n_tokens, enc.ids, enc.start, enc.end);
        exit(1);
    }
    sn_encoding_free(&enc);
}

static void test_small_json(void)
{
    const char *json =
        "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null, "
        "\"added_tokens\": ["
        "{\"id\": 1, \"content\": \"[CLS]\", \"special\": true, "
        "\"normalized\": false},"
        "{\"id\": 2, \"content\": \"[SEP]\", \"special\": true, "
        "\"normalized\": false},"
        "{\"id\": 8, \"content\": \"<mask>\", \"special\": true, "
        "\"lstrip\": true, \"normalized\": false},"
        "{\"id\": 9, \"content\": \"<w>\", \"special\": true, "
        "\"single_word\": true, \"rstrip\": true, \"normalized\": false}], "
        BERT_NORM ", " BERT_PRE ", " BERT_POST ", "
        WP_MODEL(SMALL_VOCAB) "}";
    sn_tokenizer_t *tok;
    char err[512];
    CHECK_OK(sn_tokenizer_from_json(json, strlen(json), &tok, err, sizeof err),
             err);
    CHECK_EQ(sn_tokenizer_n_vocab(tok), 10); /* <w> has id 9 */
    CHECK_STREQ(sn_tokenizer_piece(tok, 5), "##lo");
    CHECK_STREQ(sn_tokenizer_piece(tok, 9), "<w>");
    CHECK(sn_tokenizer_piece(tok, 10) == NULL);
    CHECK(sn_tokenizer_piece(tok, -1) == NULL);

    {
        const int32_t ids[] = {1, 3, 6, 7, 0, 3, 5, 2};
        const int32_t offs[] = {0, 0, 0, 5, 5, 6, 7, 12,
                                12, 13, 14, 19, 19, 21, 0, 0};
        expect_tokens(tok, "HELLO, world! Hellolo", 0, ids, offs, 8);
        /* the whole word is unk when its rest does not match */
        const int32_t ids2[] = {1, 0, 2};
        const int32_t offs2[] = {0, 0, 0, 6, 0, 0};
        expect_tokens(tok, "helloo", 0, ids2, offs2, 3);
    }
    {   /* lstrip takes the spaces before <mask>; [SEP] in the text */
        const int32_t ids[] = {1, 3, 8, 7, 2, 3, 2};
        const int32_t offs[] = {0, 0, 0, 5, 5, 13, 14, 19,
                                19, 24, 25, 30, 0, 0};
        expect_tokens(tok, "hello  <mask> world[SEP] hello", 0, ids, offs,
                      7);
    }
    {   /* single_word: <w> only between non-word chars; rstrip eats spaces */
        const int32_t ids[] = {1, 9, 7, 2};
        const int32_t offs[] = {0, 0, 0, 5, 5, 10, 0, 0};
        expect_tokens(tok, "<w>  world", 0, ids, offs, 4);
        const int32_t ids2[] = {1, 0, 0, 0, 0, 0, 2};
        const int32_t offs2[] = {0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 0, 0};
        expect_tokens(tok, "x<w>y", 0, ids2, offs2, 7);
    }
    {   /* truncation keeps the specials and the first tokens */
        const int32_t ids[] = {1, 3, 6, 2};
        const int32_t offs[] = {0, 0, 0, 5, 5, 6, 0, 0};
        expect_tokens(tok, "hello, world, hello", 4, ids, offs, 4);
        const int32_t ids2[] = {1, 2};
        const int32_t offs2[] = {0, 0, 0, 0};
        expect_tokens(tok, "hello, world, hello", 2, ids2, offs2, 2);
        sn_encoding_t enc = {0};
        CHECK_FAILS_WITH(sn_tokenizer_encode(tok, "hello", 5, 1, &enc, err,
                                             sizeof err),
                         err, "max_tokens");
        sn_encoding_free(&enc);
    }
    sn_tokenizer_free(tok);
    printf("small tokenizer.json: added tokens, unk, truncation\n");
}

static void test_fixture_extras(const sn_tokenizer_t *tok)
{
    sn_encoding_t enc = {0}, part = {0};
    char err[512];

    CHECK_STREQ(sn_tokenizer_piece(tok, 2), "[CLS]");
    CHECK_EQ(sn_tokenizer_n_vocab(tok), 4000);

    /* [SEP] in the text is a token of its own with its span, special 0 */
    const char *text = "hello [SEP] world";
    CHECK_OK(sn_tokenizer_encode(tok, text, strlen(text), 0, &enc, err,
                                 sizeof err),
             err);
    CHECK_OK(sn_tokenizer_encode(tok, "hello", 5, 0, &part, err, sizeof err),
             err);
    int n_hello = part.n_tokens - 2;
    CHECK_EQ(enc.ids[1 + n_hello], 3);
    CHECK_EQ(enc.start[1 + n_hello], 6);
    CHECK_EQ(enc.end[1 + n_hello], 11);
    CHECK_EQ(enc.special[1 + n_hello], 0);
    CHECK_EQ(enc.special[0], 1);
    CHECK_EQ(enc.special[enc.n_tokens - 1], 1);

    /* truncation of a long text keeps [CLS] ... [SEP] and the first tokens */
    char *longtext = malloc(5001);
    for (int i = 0; i < 1000; i++)
        memcpy(longtext + 5 * i, "word ", 5);
    longtext[5000] = '\0';
    CHECK_OK(sn_tokenizer_encode(tok, longtext, 5000, 0, &part, err,
                                 sizeof err),
             err);
    CHECK(part.n_tokens > 1000);
    CHECK_OK(sn_tokenizer_encode(tok, longtext, 5000, 8, &enc, err,
                                 sizeof err),
             err);
    CHECK_EQ(enc.n_tokens, 8);
    CHECK_EQ(enc.ids[0], 2);
    CHECK_EQ(enc.ids[7], 3);
    for (int i = 1; i < 7; i++) {
        CHECK_EQ(enc.ids[i], part.ids[i]);
        CHECK_EQ(enc.start[i], part.start[i]);
    }
    free(longtext);

    /* too big */
    size_t big = (size_t)(1 << 24) + 1;
    char *huge = malloc(big);
    memset(huge, 'a', big);
    CHECK_FAILS_WITH(sn_tokenizer_encode(tok, huge, big, 0, &enc, err,
                                         sizeof err),
                     err, "more than");
    free(huge);

    /* empty text and NULL with zero length */
    CHECK_OK(sn_tokenizer_encode(tok, NULL, 0, 32, &enc, err, sizeof err),
             err);
    CHECK_EQ(enc.n_tokens, 2);
    sn_encoding_free(&enc);
    sn_encoding_free(&part);
    sn_encoding_free(NULL);
    sn_tokenizer_free(NULL);
    printf("fixture tokenizer: added tokens in text, truncation, limits\n");
}

static void test_vocab_buffers(const sn_tokenizer_t *ref, const ref_t *refs,
                               int n_refs)
{
    char path[1024], err[512];
    size_t len;
    sn_tokenizer_t *tok;

    snprintf(path, sizeof path, "%s/tiny-bert-uncased/model/vocab.txt",
             HF_DIR);
    char *buf = read_all(path, &len);
    CHECK_OK(sn_tokenizer_from_vocab(buf, len, 1, -1, 1, &tok, err,
                                     sizeof err),
             err);
    check_same("from_vocab", ref, tok, refs, n_refs, 32);
    sn_tokenizer_free(tok);

    const char *dup = "[UNK]\n[CLS]\n[SEP]\na\na\n";
    CHECK_FAILS_WITH(sn_tokenizer_from_vocab(dup, strlen(dup), 1, -1, 1, &tok,
                                             err, sizeof err),
                     err, "two lines");
    const char *nocls = "[UNK]\n[SEP]\na\n";
    CHECK_FAILS_WITH(sn_tokenizer_from_vocab(nocls, strlen(nocls), 1, -1, 1,
                                             &tok, err, sizeof err),
                     err, "[CLS]");
    CHECK_FAILS_WITH(sn_tokenizer_from_vocab("", 0, 1, -1, 1, &tok, err,
                                             sizeof err),
                     err, "empty");
    free(buf);

    CHECK_FAILS_WITH(sn_tokenizer_load("/nonexistent/model", &tok, err,
                                       sizeof err),
                     err, "'/nonexistent/model'");
    printf("vocab buffers: same encodings, clear errors\n");
}


/* A hand-made SentencePiece charsmap (tests/fuzz/corpus/fuzz_tok_json/
 * ug_precompiled_small.json: a darts-clone trie whose one key "A" maps to
 * "a"), and the same with a trie whose units point out of bounds. */
static sn_tokenizer_t *load_corpus_json(const char *name)
{
    char path[1024], err[512];
    size_t len;
    snprintf(path, sizeof path, "%s/tests/fuzz/corpus/fuzz_tok_json/%s",
             SN_SOURCE_DIR, name);
    char *js = read_all(path, &len);
    sn_tokenizer_t *tok = NULL;
    CHECK_OK(sn_tokenizer_from_json(js, len, &tok, err, sizeof err), err);
    free(js);
    return tok;
}

/* A Split pattern made of many \S (each rewritten to 11 code points for
 * Oniguruma's White_Space; once past a fixed buffer) still compiles and
 * splits. */
static void test_long_pattern(void)
{
    static char js[16384];
    char err[512];
    int n = snprintf(js, sizeof js,
                     "{\"model\": {\"type\": \"BPE\", \"vocab\": "
                     "{\"a\": 0, \"b\": 1}, \"merges\": []}, "
                     "\"pre_tokenizer\": {\"type\": \"Split\", "
                     "\"pattern\": {\"Regex\": \"");
    for (int i = 0; i < 1300; i++) /* 3,900 chars, 15,600 rewritten */
        n += snprintf(js + n, sizeof js - (size_t)n, "\\\\S?");
    snprintf(js + n, sizeof js - (size_t)n,
             "\"}, \"behavior\": \"Removed\", \"invert\": true}}");
    sn_tokenizer_t *tok = NULL;
    CHECK_OK(sn_tokenizer_from_json(js, strlen(js), &tok, err, sizeof err),
             err);
    /* invert + Removed keeps the matches: "ab" and "ba"; no merges */
    const int32_t ids[] = {0, 1, 1, 0}, offs[] = {0, 1, 1, 2, 3, 4, 4, 5};
    expect_tokens(tok, "ab ba", 0, ids, offs, 4);
    sn_tokenizer_free(tok);
    printf("split: a 3,900-char pattern of \\S\n");
}

static void test_precompiled_small(void)
{
    sn_tokenizer_t *tok = load_corpus_json("ug_precompiled_small.json");
    /* "A b " -> "a b" (Strip right): ▁a ▁ b </s> */
    const int32_t ids[] = {5, 3, 6, 1}, offs[] = {0, 1, 1, 2, 2, 3, 0, 0};
    expect_tokens(tok, "A b ", 0, ids, offs, 4);
    /* "AA" is two graphemes, each mapped: ▁a a </s> */
    const int32_t ids2[] = {5, 4, 1}, offs2[] = {0, 1, 1, 2, 0, 0};
    expect_tokens(tok, "AA", 0, ids2, offs2, 3);
    /* "A" + U+0301 is one grapheme of 3 bytes: its shortest prefix "A"
     * matches and HF replaces the whole cluster with "a", which keeps the
     * alignment of the first char only (a removal, change -1) */
    const int32_t ids3[] = {5, 1}, offs3[] = {0, 1, 0, 0};
    expect_tokens(tok, "A\xcc\x81", 0, ids3, offs3, 2);
    sn_tokenizer_free(tok);

    /* a corrupt trie of a consistent size loads, maps nothing, reads
     * nothing out of bounds: "A" stays "A", unknown */
    tok = load_corpus_json("ug_precompiled_corrupt_trie.json");
    const int32_t ids4[] = {3, 2, 1}, offs4[] = {0, 1, 0, 1, 0, 0};
    expect_tokens(tok, "A", 0, ids4, offs4, 3);
    sn_tokenizer_free(tok);
    printf("precompiled: hand-made charsmap, corrupt trie\n");
}

int main(void)
{
    char dir[1024], err[512];
    int failed = 0;
    sn_tokenizer_t *toks[3];

    for (int m = 0; m < 3; m++) {
        int n_refs, max_tokens = model_max_length(models[m]);
        snprintf(dir, sizeof dir, "%s/%s/model", HF_DIR, models[m]);
        CHECK_OK(sn_tokenizer_load(dir, &toks[m], err, sizeof err), err);
        ref_t *refs = load_refs(models[m], &n_refs);
        CHECK_EQ(n_refs, N_SENTENCES);
        if (check_parity(models[m], toks[m], refs, n_refs, max_tokens) !=
            n_refs)
            failed = 1;
        if (m < 2) {
            test_vocab_path(models[m], toks[m], refs, n_refs, max_tokens);
            test_long_text(models[m], toks[m], refs, n_refs);
        }
        if (m == 0)
            test_vocab_buffers(toks[0], refs, n_refs);
        free_refs(refs, n_refs);
    }
    test_invalid_utf8(toks[0]);
    test_invalid_utf8(toks[2]);
    test_precompiled_small();
    test_long_pattern();
    test_fixture_extras(toks[0]);
    test_malformed_json();
    test_small_json();
    for (int m = 0; m < 3; m++)
        sn_tokenizer_free(toks[m]);
    if (failed) {
        fprintf(stderr, "FAIL: some sentences differ from the reference\n");
        return 1;
    }
    printf("ok\n");
    return 0;
}
