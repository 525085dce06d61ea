/*
 * test_unigram.c -- the Unigram tokenizer (embed/unigram.c) through its
 * internal entry points, against Hugging Face `tokenizers`:
 *   - every sentence of hf-reference/tiny-xlmr-unigram/expected.jsonl must
 *     give the reference ids (specials stripped, truncated to 30) and code
 *     point offsets;
 *   - small hand-made models pin behaviour the fixture does not reach (byte
 *     fallback, prepend_scheme never, Lowercase, WhitespaceSplit, literal
 *     Replace, fused unknowns);
 *   - malformed model sections fail with a message naming the problem and
 *     leave nothing to free.
 */
#include <jansson.h>
#include <utf8proc.h>

#include "check.h"
#include "embed_int.h"
#include "tokenizer_int.h"

#define FIX SN_FIXTURES "/hf-reference/tiny-xlmr-unigram"
#define MAX_CPS 8192
#define MAX_KEEP 30 /* 32 minus <s> and </s> */

static int decode_utf8(const char *s, uint32_t *cps, int max)
{
    int n = 0;
    size_t len = strlen(s), i = 0;
    while (i < len) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                              (utf8proc_ssize_t)(len - i), &c);
        CHECK(k > 0 && n < max);
        cps[n++] = (uint32_t)c;
        i += (size_t)k;
    }
    return n;
}

/* Load a tokenizer from the JSON text of its three sections. */
static int load_from(sn_tokenizer_t *tok, const char *model,
                     const char *normalizer, const char *pretok, char *err,
                     size_t err_len)
{
    json_error_t je;
    json_t *m = json_loads(model, JSON_DECODE_ANY, &je);
    json_t *n = normalizer ? json_loads(normalizer, JSON_DECODE_ANY, &je) : NULL;
    json_t *p = pretok ? json_loads(pretok, JSON_DECODE_ANY, &je) : NULL;
    CHECK(m);
    CHECK(!normalizer || n);
    CHECK(!pretok || p);
    memset(tok, 0, sizeof *tok);
    int rc = sn__unigram_load(tok, m, n, p, err, err_len);
    json_decref(m);
    json_decref(n);
    json_decref(p);
    return rc;
}

static void unload(sn_tokenizer_t *tok)
{
    sn__unigram_free(tok);
    sn__vocab_free(&tok->vocab);
}

static void print_list(const char *label, const int32_t *ids,
                       const int32_t *st, const int32_t *en, int n)
{
    fprintf(stderr, "  %s (%d):", label, n);
    for (int i = 0; i < n; i++)
        fprintf(stderr, " %d[%d,%d)", ids[i], st[i], en[i]);
    fprintf(stderr, "\n");
}

static void test_fixture(void)
{
    char err[512] = "";
    json_error_t je;
    json_t *root = json_load_file(FIX "/model/tokenizer.json", 0, &je);
    if (!root) {
        fprintf(stderr, "cannot load %s: %s\n",
                FIX "/model/tokenizer.json", je.text);
        exit(1);
    }
    sn_tokenizer_t tok;
    memset(&tok, 0, sizeof tok);
    CHECK_OK(sn__unigram_load(&tok, json_object_get(root, "model"),
                              json_object_get(root, "normalizer"),
                              json_object_get(root, "pre_tokenizer"), err,
                              sizeof err),
             err);
    json_decref(root);
    CHECK_EQ(tok.vocab.n_pieces, 3000);
    CHECK_EQ(tok.unk_id, 3);
    CHECK_EQ(tok.ug.replacement, 0x2581);
    CHECK(tok.ug.prepend_always && tok.ug.split);

    FILE *fp = fopen(FIX "/expected.jsonl", "r");
    CHECK(fp);
    static char line[1 << 20];
    static uint32_t cps[MAX_CPS];
    int n_lines = 0, n_ok = 0, first_bad = -1;
    sn__toks_t toks = {0};
    while (fgets(line, sizeof line, fp)) {
        json_t *o = json_loads(line, 0, &je);
        CHECK(o);
        const char *text = json_string_value(json_object_get(o, "text"));
        const json_t *ids = json_object_get(o, "ids");
        const json_t *offs = json_object_get(o, "offsets");
        CHECK(text && json_is_array(ids) && json_is_array(offs));
        int n_exp = (int)json_array_size(ids) - 2;
        CHECK(n_exp >= 0 && n_exp <= MAX_KEEP);

        int n = decode_utf8(text, cps, MAX_CPS);
        toks.n = 0;
        int rc = sn__unigram_encode(&tok, cps, n, &toks);
        CHECK_EQ(rc, 0);
        int n_got = toks.n < MAX_KEEP ? toks.n : MAX_KEEP;
        /* a reference cut at 30 tokens needs at least 30 of ours */
        int ok = n_exp == MAX_KEEP ? toks.n >= MAX_KEEP : toks.n == n_exp;
        int32_t eid[MAX_KEEP], est[MAX_KEEP], een[MAX_KEEP];
        for (int i = 0; i < n_exp; i++) {
            const json_t *off = json_array_get(offs, (size_t)i + 1);
            eid[i] = (int32_t)json_integer_value(json_array_get(ids, (size_t)i + 1));
            est[i] = (int32_t)json_integer_value(json_array_get(off, 0));
            een[i] = (int32_t)json_integer_value(json_array_get(off, 1));
            if (i < n_got &&
                (toks.v[i].id != eid[i] || toks.v[i].start != est[i] ||
                 toks.v[i].end != een[i]))
                ok = 0;
        }
        if (ok) {
            n_ok++;
        } else if (first_bad < 0) {
            first_bad = n_lines;
            int32_t gid[MAX_KEEP], gst[MAX_KEEP], gen[MAX_KEEP];
            for (int i = 0; i < n_got; i++) {
                gid[i] = toks.v[i].id;
                gst[i] = toks.v[i].start;
                gen[i] = toks.v[i].end;
            }
            fprintf(stderr, "mismatch at sentence %d: \"%s\"\n", n_lines,
                    text);
            print_list("expected", eid, est, een, n_exp);
            print_list("got     ", gid, gst, gen, n_got);
        }
        json_decref(o);
        n_lines++;
    }
    fclose(fp);
    sn__toks_free(&toks);
    printf("unigram: %d/%d sentences match the reference\n", n_ok, n_lines);
    CHECK_EQ(n_lines, 112);
    CHECK_EQ(n_ok, n_lines);

    /* The empty text, and text that normalizes away, give no tokens. */
    toks.n = 0;
    CHECK_EQ(sn__unigram_encode(&tok, cps, 0, &toks), 0);
    CHECK_EQ(toks.n, 0);
    cps[0] = 0x01;
    cps[1] = 0x7F;
    CHECK_EQ(sn__unigram_encode(&tok, cps, 2, &toks), 0);
    CHECK_EQ(toks.n, 0);
    /* code points that are not Unicode scalars are refused */
    cps[0] = 'a';
    cps[1] = 0xD800;
    CHECK_EQ(sn__unigram_encode(&tok, cps, 2, &toks), SN_EUTF8);
    cps[1] = 0x110000;
    CHECK_EQ(sn__unigram_encode(&tok, cps, 2, &toks), SN_EUTF8);
    sn__toks_free(&toks);
    unload(&tok);
}

/* Encode `text` and compare with "id start end" triples. */
static void expect_tokens(const sn_tokenizer_t *tok, const char *text,
                          const int32_t *want, int n_want)
{
    static uint32_t cps[256];
    sn__toks_t toks = {0};
    int n = decode_utf8(text, cps, 256);
    CHECK_EQ(sn__unigram_encode(tok, cps, n, &toks), 0);
    int ok = toks.n == n_want;
    for (int i = 0; ok && i < n_want; i++)
        ok = toks.v[i].id == want[3 * i] && toks.v[i].start == want[3 * i + 1] &&
             toks.v[i].end == want[3 * i + 2];
    if (!ok) {
        fprintf(stderr, "tokens of \"%s\" differ\n", text);
        for (int i = 0; i < n_want; i++)
            fprintf(stderr, "  want %d[%d,%d)\n", want[3 * i], want[3 * i + 1],
                    want[3 * i + 2]);
        for (int i = 0; i < toks.n; i++)
            fprintf(stderr, "  got  %d[%d,%d)\n", toks.v[i].id,
                    toks.v[i].start, toks.v[i].end);
        exit(1);
    }
    sn__toks_free(&toks);
}

#define SMALL_VOCAB                                                          \
    "{\"type\":\"Unigram\",\"unk_id\":0,\"byte_fallback\":true,\"vocab\":["   \
    "[\"<unk>\",0],[\"\\u2581\",-1],[\"a\",-2],[\"b\",-2],"                   \
    "[\"\\u2581ab\",-1.5],[\"<0xC3>\",-5],[\"<0xA9>\",-5],[\"c\",-3]]}"

static void test_small_models(void)
{
    char err[512] = "";
    sn_tokenizer_t tok;
    const char *ms_always = "{\"type\":\"Metaspace\",\"replacement\":"
                            "\"\\u2581\",\"prepend_scheme\":\"always\","
                            "\"split\":true}";

    /* byte fallback: unknown é becomes its two UTF-8 byte pieces, both
     * spanning the character */
    CHECK_OK(load_from(&tok, SMALL_VOCAB, NULL, ms_always, err, sizeof err),
             err);
    {
        const int32_t want[] = {4, 0, 2, 1, 2, 3, 5, 3, 4, 6, 3, 4};
        expect_tokens(&tok, "ab \xc3\xa9", want, 4);
    }
    /* an unknown run is fused; two spaces are two words */
    {
        const int32_t want[] = {1, 0, 1, 0, 0, 3, 1, 3, 4, 1, 4, 5, 7, 5, 6};
        expect_tokens(&tok, "xyz  c", want, 5);
    }
    unload(&tok);

    /* Lowercase, a literal Replace, prepend never: "AB-C" -> "ab c" */
    CHECK_OK(load_from(&tok, SMALL_VOCAB,
                       "{\"type\":\"Sequence\",\"normalizers\":["
                       "{\"type\":\"Lowercase\"},{\"type\":\"Replace\","
                       "\"pattern\":{\"String\":\"-\"},\"content\":\" \"}]}",
                       "{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\","
                       "\"prepend_scheme\":\"never\"}",
                       err, sizeof err),
             err);
    {
        const int32_t want[] = {2, 0, 1, 3, 1, 2, 1, 2, 3, 7, 3, 4};
        expect_tokens(&tok, "AB-C", want, 4);
    }
    unload(&tok);

    /* WhitespaceSplit + legacy Metaspace: every word gets its own prefix */
    CHECK_OK(load_from(&tok, SMALL_VOCAB, NULL,
                       "{\"type\":\"Sequence\",\"pretokenizers\":["
                       "{\"type\":\"WhitespaceSplit\"},{\"type\":\"Metaspace\","
                       "\"replacement\":\"\\u2581\",\"add_prefix_space\":true}]}",
                       err, sizeof err),
             err);
    {
        const int32_t want[] = {4, 1, 3, 1, 5, 6, 7, 5, 6};
        expect_tokens(&tok, " ab\t c", want, 3);
    }
    unload(&tok);

    /* no pre-tokenizer: the text is one word; regex collapse " {2,}" */
    CHECK_OK(load_from(&tok, SMALL_VOCAB,
                       "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"b+\"},"
                       "\"content\":\"c\"}",
                       NULL, err, sizeof err),
             err);
    {
        const int32_t want[] = {2, 0, 1, 7, 3, 4, 2, 4, 5};
        expect_tokens(&tok, "abbba", want, 3);
    }
    unload(&tok);
}

static void test_malformed(void)
{
    char err[512];
    sn_tokenizer_t tok;
    const char *good_model = SMALL_VOCAB;

    static const struct {
        const char *model, *normalizer, *pretok, *msg;
    } cases[] = {
        {"[1,2]", NULL, NULL, "'model' is not an object"},
        {"{\"type\":\"BPE\",\"vocab\":[]}", NULL, NULL, "not 'Unigram'"},
        {"{\"type\":\"Unigram\",\"vocab\":[]}", NULL, NULL, "'vocab'"},
        {"{\"type\":\"Unigram\",\"vocab\":{\"a\":1}}", NULL, NULL, "'vocab'"},
        {"{\"type\":\"Unigram\",\"vocab\":[[\"a\",-1],[\"b\",\"x\"]]}", NULL,
         NULL, "'vocab' entry 1"},
        {"{\"type\":\"Unigram\",\"vocab\":[[\"a\",-1],[2,-1]]}", NULL, NULL,
         "'vocab' entry 1"},
        {"{\"type\":\"Unigram\",\"vocab\":[[\"a\",-1],\"b\"]}", NULL, NULL,
         "'vocab' entry 1"},
        {"{\"type\":\"Unigram\",\"vocab\":[[\"a\",-1,3]]}", NULL, NULL,
         "'vocab' entry 0"},
        {"{\"type\":\"Unigram\",\"vocab\":[[\"a\",-1],[\"a\",-2]]}", NULL,
         NULL, "duplicate"},
        {"{\"type\":\"Unigram\",\"unk_id\":2,\"vocab\":[[\"a\",-1],"
         "[\"b\",-1]]}",
         NULL, NULL, "'unk_id'"},
        {"{\"type\":\"Unigram\",\"unk_id\":-1,\"vocab\":[[\"a\",-1]]}", NULL,
         NULL, "'unk_id'"},
        {"{\"type\":\"Unigram\",\"unk_id\":\"0\",\"vocab\":[[\"a\",-1]]}",
         NULL, NULL, "'unk_id'"},
        {"{\"type\":\"Unigram\",\"byte_fallback\":1,\"vocab\":[[\"a\",-1]]}",
         NULL, NULL, "'byte_fallback'"},
        {NULL, "{\"type\":\"BertNormalizer\"}", NULL,
         "normalizer 'BertNormalizer' is not supported"},
        {NULL, "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFKC\"},"
               "{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"E!AA\"}]}",
         NULL, "'precompiled_charsmap' is not valid base64"},
        {NULL, "{\"type\":\"Precompiled\",\"precompiled_charsmap\":"
               "\"EAAAAAECAwQ=\"}",
         NULL, "its trie claims 16 bytes, 4 follow"},
        {NULL, "{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"EAA=\"}",
         NULL, "too short"},
        {NULL, "{\"type\":\"Precompiled\"}", NULL,
         "no 'precompiled_charsmap' string"},
        {NULL, "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"(a|b\"},"
               "\"content\":\" \"}",
         NULL, "regex '(a|b': missing closing parenthesis"},
        {NULL, "{\"type\":\"Replace\",\"pattern\":{\"String\":\"\"},"
               "\"content\":\" \"}",
         NULL, "empty"},
        {NULL, "{\"kind\":\"NFKC\"}", NULL, "no 'type'"},
        {NULL, NULL, "{\"type\":\"ByteLevel\"}",
         "pre_tokenizer 'ByteLevel' is not supported"},
        {NULL, NULL,
         "{\"type\":\"Metaspace\",\"replacement\":\"ab\"}",
         "'replacement'"},
        {NULL, NULL,
         "{\"type\":\"Metaspace\",\"replacement\":\"_\","
         "\"prepend_scheme\":\"sometimes\"}",
         "'prepend_scheme' 'sometimes'"},
        {NULL, NULL,
         "{\"type\":\"Metaspace\",\"replacement\":\"_\","
         "\"prepend_scheme\":\"always\",\"add_prefix_space\":false}",
         "contradicts"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        err[0] = '\0';
        int rc = load_from(&tok, cases[i].model ? cases[i].model : good_model,
                           cases[i].normalizer, cases[i].pretok, err,
                           sizeof err);
        if (rc >= 0 || !strstr(err, cases[i].msg))
            fprintf(stderr, "malformed case %zu:\n", i);
        CHECK_FAILS_WITH(rc, err, cases[i].msg);
        /* a failed load leaves nothing behind */
        CHECK(tok.vocab.pieces == NULL && tok.ug.trie == NULL);
        unload(&tok);
    }

    /* unk_id null is accepted; an unknown char then fails the encode, as
     * HF's MissingUnkId does */
    CHECK_OK(load_from(&tok,
                       "{\"type\":\"Unigram\",\"unk_id\":null,\"vocab\":"
                       "[[\"a\",-1]]}",
                       NULL, NULL, err, sizeof err),
             err);
    {
        uint32_t cps[2] = {'a', 'z'};
        sn__toks_t toks = {0};
        CHECK_EQ(sn__unigram_encode(&tok, cps, 1, &toks), 0);
        CHECK_EQ(toks.n, 1);
        CHECK_EQ(sn__unigram_encode(&tok, cps, 2, &toks), SN_EMODEL);
        sn__toks_free(&toks);
    }
    unload(&tok);
}

int main(void)
{
    test_fixture();
    test_small_models();
    test_malformed();
    printf("test_unigram: ok\n");
    return 0;
}
