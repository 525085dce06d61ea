/*
 * test_tokenize_golden.c -- tokenizer layouts beyond the fixtures' eight,
 * against golden outputs of the real Hugging Face library (npm
 * tokenizers@0.23.2; how they were made: tests/golden/README.md).
 *
 * tests/golden/cases.json names each case: a fixture tokenizer.json
 * (hf-reference-2/<base>) with top-level sections replaced ("set"), model
 * keys replaced ("set_model"), and "__precompiled__" in a normalizer
 * Sequence standing for the fixture's own normalizer. Texts: the fixtures'
 * sentences-2.json, then tests/golden/texts-extra.json. For each text the
 * encoding (specials added, no truncation, no sentence-transformers
 * stripping: sn_tokenizer_from_json) must give the golden ids, tokens and
 * offsets. Then sentence-transformers' strip and lowercase against Python
 * (test_python_lower).
 */
#include <jansson.h>
#include <utf8proc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sense/embed.h"

#define GOLDEN SN_SOURCE_DIR "/tests/golden"

static json_t *load(const char *path)
{
    json_error_t je;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &je);
    if (!j)
        fprintf(stderr, "%s: %s\n", path, je.text);
    CHECK(j);
    return j;
}

/* The case's tokenizer.json, as make_golden.js builds it. */
static char *build(const json_t *c)
{
    char path[4096];
    const char *key;
    json_t *v;
    snprintf(path, sizeof path, "%s/hf-reference-2/%s/model/tokenizer.json",
             SN_FIXTURES, json_string_value(json_object_get(c, "base")));
    json_t *base = load(path);
    json_t *orig = json_incref(json_object_get(base, "normalizer"));
    json_object_foreach(json_object_get(c, "set"), key, v)
        json_object_set(base, key, v);
    json_t *model = json_object_get(base, "model");
    json_object_foreach(json_object_get(c, "set_model"), key, v)
        json_object_set(model, key, v);
    json_t *norm = json_object_get(base, "normalizer");
    json_t *list = json_object_get(norm, "normalizers");
    for (size_t i = 0; i < json_array_size(list); i++) {
        const char *t = json_string_value(
            json_object_get(json_array_get(list, i), "type"));
        if (t && !strcmp(t, "__precompiled__"))
            json_array_set(list, i, orig);
    }
    char *s = json_dumps(base, JSON_COMPACT);
    CHECK(s);
    json_decref(orig);
    json_decref(base);
    return s;
}

static int same(const sn_tokenizer_t *tok, const sn_encoding_t *e,
                const json_t *o, const char *text, size_t len)
{
    char buf[1024];
    const json_t *ids = json_object_get(o, "ids");
    const json_t *toks = json_object_get(o, "tokens");
    const json_t *offs = json_object_get(o, "offsets");
    if ((size_t)e->n_tokens != json_array_size(ids))
        return 0;
    for (int i = 0; i < e->n_tokens; i++) {
        const json_t *off = json_array_get(offs, (size_t)i);
        const char *p = sn_tokenizer_token_str(tok, e, i, text, len, buf,
                                               sizeof buf);
        if (e->ids[i] != json_integer_value(json_array_get(ids, (size_t)i)) ||
            !p || strcmp(p, json_string_value(json_array_get(toks, (size_t)i))) ||
            e->start[i] != json_integer_value(json_array_get(off, 0)) ||
            e->end[i] != json_integer_value(json_array_get(off, 1)))
            return 0;
    }
    return 1;
}

static void show(const sn_tokenizer_t *tok, const sn_encoding_t *e,
                 const json_t *o, const char *text, size_t len)
{
    char buf[1024];
    fprintf(stderr, "  sense:    ");
    for (int i = 0; i < e->n_tokens; i++)
        fprintf(stderr, " %d'%s'[%d,%d]", e->ids[i],
                sn_tokenizer_token_str(tok, e, i, text, len, buf, sizeof buf),
                e->start[i], e->end[i]);
    char *s = json_dumps(o, JSON_COMPACT);
    fprintf(stderr, "\n  reference: %s\n", s);
    free(s);
}


/* The byte GPT-2's byte-to-unicode table maps to code point c, or -1. */
static int byte_of(uint32_t c)
{
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) ||
                        b >= 0xae;
        uint32_t m = printable ? (uint32_t)b : 0x100u + (uint32_t)n++;
        if (m == c)
            return b;
    }
    return -1;
}

/* sentence-transformers' str.strip() and str.lower() (do_lower_case),
 * against Python 3.11 itself (tests/golden/python-lower.json: pairs of a
 * text and (text.strip()).lower()). A byte-level BPE tokenizer without
 * normalizer (tiny-roberta-bpe's) is lossless, so its tokens, mapped back
 * to bytes, spell out the text it was given. */
static void test_python_lower(void)
{
    char tmpl[] = "/tmp/sense-lower-XXXXXX", cmd[4096], err[512];
    CHECK(mkdtemp(tmpl) != NULL);
    snprintf(cmd, sizeof cmd,
             "cp '%s/hf-reference-2/tiny-roberta-bpe/model/tokenizer.json' "
             "'%s/' && printf '{\"max_seq_length\": 512, \"do_lower_case\": "
             "true}' > '%s/sentence_bert_config.json'",
             SN_FIXTURES, tmpl, tmpl);
    CHECK(system(cmd) == 0);
    sn_tokenizer_t *tok = NULL;
    CHECK_OK(sn_tokenizer_load(tmpl, &tok, err, sizeof err), err);
    json_t *pairs = load(GOLDEN "/python-lower.json");
    sn_encoding_t enc = {0};
    for (size_t k = 0; k < json_array_size(pairs); k++) {
        const json_t *p = json_array_get(pairs, k);
        const char *text = json_string_value(json_array_get(p, 0));
        const char *want = json_string_value(json_array_get(p, 1));
        CHECK_OK(sn_tokenizer_encode(tok, text, strlen(text), 0, &enc, err,
                                     sizeof err),
                 err);
        char got[1024];
        size_t n = 0;
        for (int i = 0; i < enc.n_tokens; i++) {
            const char *piece = sn_tokenizer_piece(tok, enc.ids[i]);
            if (enc.special[i])
                continue;
            for (size_t at = 0; piece[at];) {
                utf8proc_int32_t c;
                at += (size_t)utf8proc_iterate(
                    (const utf8proc_uint8_t *)piece + at, -1, &c);
                int b = byte_of((uint32_t)c);
                CHECK(b >= 0 && n + 1 < sizeof got);
                got[n++] = (char)b;
            }
        }
        got[n] = '\0';
        if (strcmp(got, want) != 0) {
            fprintf(stderr, "lower(strip(\"%s\")): \"%s\", Python \"%s\"\n",
                    text, got, want);
            exit(1);
        }
    }
    printf("python str.strip().lower(): %zu texts as Python 3.11\n",
           json_array_size(pairs));
    sn_encoding_free(&enc);
    sn_tokenizer_free(tok);
    json_decref(pairs);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    char path[4096], err[512];
    json_t *cases = load(GOLDEN "/cases.json");
    json_t *texts = load(SN_FIXTURES "/sentences-2.json");
    json_t *extra = load(GOLDEN "/texts-extra.json");
    CHECK(json_array_extend(texts, extra) == 0);
    size_t n_texts = json_array_size(texts);
    int total_bad = 0, n_cases = 0;

    for (size_t k = 0; k < json_array_size(cases); k++) {
        const json_t *c = json_array_get(cases, k);
        const char *name = json_string_value(json_object_get(c, "name"));
        char *js = build(c);
        sn_tokenizer_t *tok = NULL;
        CHECK_OK(sn_tokenizer_from_json(js, strlen(js), &tok, err, sizeof err),
                 err);
        free(js);
        snprintf(path, sizeof path, "%s/%s.jsonl", GOLDEN, name);
        FILE *fp = fopen(path, "r");
        CHECK(fp);
        static char line[1 << 22];
        sn_encoding_t enc = {0};
        int bad = 0;
        size_t n = 0;
        while (fgets(line, sizeof line, fp)) {
            json_error_t je;
            json_t *o = json_loads(line, JSON_ALLOW_NUL, &je);
            CHECK(o);
            size_t i = (size_t)json_integer_value(json_object_get(o, "i"));
            CHECK(i < n_texts);
            const json_t *t = json_array_get(texts, i);
            const char *text = json_string_value(t);
            size_t len = json_string_length(t);
            CHECK_OK(sn_tokenizer_encode(tok, text, len, 0, &enc, err,
                                         sizeof err),
                     err);
            if (!same(tok, &enc, o, text, len)) {
                if (bad < 2) {
                    fprintf(stderr, "%s text %zu: %s\n", name, i, text);
                    show(tok, &enc, o, text, len);
                }
                bad++;
            }
            json_decref(o);
            n++;
        }
        fclose(fp);
        CHECK_EQ(n, n_texts);
        printf("%-28s %3zu/%3zu match\n", name, n - (size_t)bad, n);
        total_bad += bad;
        n_cases++;
        sn_encoding_free(&enc);
        sn_tokenizer_free(tok);
    }
    json_decref(cases);
    json_decref(texts);
    json_decref(extra);
    CHECK(n_cases >= 20);
    test_python_lower();
    CHECK_EQ(total_bad, 0);
    printf("test_tokenize_golden: ok\n");
    return 0;
}
