/*
 * test_chunk.c -- index/chunk.c with the fixture WordPiece tokenizer
 * (tiny-bert-uncased).
 *
 * For every input the invariants are checked: each span tokenizes to at
 * most max_tokens tokens (specials included), the spans cover the text with
 * no gap, in order, each starting after the previous one's start. Then:
 * cuts fall on sentence ends (. ! ? and blank lines) when sentences fit;
 * consecutive chunks overlap when asked to and not otherwise; empty,
 * blank, single-word, unbroken (no spaces), non-ASCII and huge (1 MB)
 * inputs; bad arguments and invalid UTF-8.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "sense/sense.h"
#include "sense/store.h"

static char err[512];
static sn_tokenizer_t *tok;

/* Byte offset of code point cp in s. */
static size_t byte_at(const char *s, size_t len, int32_t cp)
{
    size_t i = 0;
    for (int32_t n = 0; i < len && n < cp; n++) {
        i++;
        while (i < len && ((unsigned char)s[i] & 0xc0) == 0x80)
            i++;
    }
    return i;
}

static int32_t n_codepoints(const char *s, size_t len)
{
    int32_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xc0) != 0x80;
    return n;
}

static int n_tokens(const char *s, size_t len)
{
    sn_encoding_t enc = {0};
    CHECK_OK(sn_tokenizer_encode(tok, s, len, 0, &enc, err, sizeof err),
             err);
    int n = enc.n_tokens;
    sn_encoding_free(&enc);
    return n;
}

/* Chunk and check the invariants; returns the spans (caller frees). */
static int32_t *chunk(const char *text, size_t len, int max_tokens,
                      int overlap, int *n_out)
{
    int32_t *sp, total = n_codepoints(text, len);
    int n;

    CHECK_OK(sn_chunk_text(tok, text, len, max_tokens, overlap, &sp, &n, err,
                           sizeof err), err);
    CHECK(n >= 1);
    CHECK_EQ(sp[0], 0);
    CHECK_EQ(sp[2 * n - 1], total);
    for (int i = 0; i < n; i++) {
        int32_t a = sp[2 * i], b = sp[2 * i + 1];
        CHECK(a < b || (total == 0 && a == 0 && b == 0));
        if (i > 0) {
            CHECK(a > sp[2 * i - 2]);     /* progress */
            CHECK(a <= sp[2 * i - 1]);    /* no gap */
            CHECK(b > sp[2 * i - 1]);     /* something new */
        }
        size_t ba = byte_at(text, len, a), bb = byte_at(text, len, b);
        int nt = n_tokens(text + ba, bb - ba);
        if (nt > max_tokens) {
            fprintf(stderr, "chunk %d [%d, %d) has %d tokens > %d\n", i, a,
                    b, nt, max_tokens);
            exit(1);
        }
    }
    *n_out = n;
    return sp;
}

/* The last non-space character before code point b. */
static char last_char(const char *text, size_t len, int32_t b)
{
    size_t i = byte_at(text, len, b);
    while (i > 0 && strchr(" \n\t", text[i - 1]))
        i--;
    return i ? text[i - 1] : 0;
}

static void test_sentences(void)
{
    /* 12 sentences of ~8 tokens; 24 tokens fit two of them */
    char text[2048] = "";
    const char *ends = ".!?";
    for (int i = 0; i < 12; i++) {
        char s[128];
        snprintf(s, sizeof s, "the cat number %d sat on the mat%c ", i,
                 ends[i % 3]);
        strcat(text, s);
    }
    int n;
    int32_t *sp = chunk(text, strlen(text), 24, 0, &n);
    CHECK(n >= 5);
    for (int i = 0; i < n; i++) {
        char c = last_char(text, strlen(text), sp[2 * i + 1]);
        CHECK(c == '.' || c == '!' || c == '?');
        if (i > 0)
            CHECK_EQ(sp[2 * i], sp[2 * i - 1]); /* overlap 0: adjacent */
    }
    free(sp);

    /* with overlap: consecutive chunks share about a sentence */
    sp = chunk(text, strlen(text), 40, 12, &n);
    CHECK(n >= 4);
    for (int i = 1; i < n; i++) {
        CHECK(sp[2 * i] < sp[2 * i - 1]);
        /* the shared part starts a sentence (whole sentences) */
        char c = last_char(text, strlen(text), sp[2 * i]);
        CHECK(c == '.' || c == '!' || c == '?');
    }
    free(sp);

    /* blank lines end paragraphs without punctuation */
    const char *para = "first paragraph without a full stop\n\n"
                       "second paragraph also without one\n \n"
                       "third one here";
    /* room for the longest paragraph, not for two */
    int t1 = n_tokens("first paragraph without a full stop", 35);
    int t2 = n_tokens("second paragraph also without one", 33);
    int t3 = n_tokens("third one here", 14);
    int mt = t1 > t2 ? t1 : t2;
    mt = mt > t3 ? mt : t3;
    CHECK(t1 + t2 - 2 > mt && t2 + t3 - 2 > mt);
    sp = chunk(para, strlen(para), mt, 0, &n);
    CHECK_EQ(n, 3);
    CHECK_EQ(sp[1], (int32_t)strlen("first paragraph without a full stop\n\n"));
    free(sp);

    /* "3.14" and "e.g." inside a sentence are not ends; the final word of
     * the text always is */
    const char *dots = "pi is 3.14 and e.g.this is fine. next";
    sp = chunk(dots, strlen(dots), 512, 0, &n);
    CHECK_EQ(n, 1);
    free(sp);
}

static void test_words_and_overlap(void)
{
    /* one long sentence: cut on words, overlap in words */
    char text[4096] = "";
    for (int i = 0; i < 200; i++)
        strcat(text, i % 7 ? "word " : "another ");
    int n;
    int32_t *sp = chunk(text, strlen(text), 32, 6, &n);
    CHECK(n > 5);
    for (int i = 0; i < n; i++) {
        size_t a = byte_at(text, strlen(text), sp[2 * i]);
        CHECK(a == 0 || text[a - 1] == ' '); /* starts on a word */
        if (i > 0) {
            size_t pa = byte_at(text, strlen(text), sp[2 * i]);
            size_t pb = byte_at(text, strlen(text), sp[2 * i - 1]);
            CHECK(pa < pb);
            int shared = n_tokens(text + pa, pb - pa) - 2;
            CHECK(shared >= 3 && shared <= 6); /* about 6 */
        }
    }
    free(sp);
}

static void test_edges(void)
{
    int32_t *sp;
    int n;

    /* empty: one empty chunk */
    CHECK_OK(sn_chunk_text(tok, "", 0, 16, 4, &sp, &n, err, sizeof err),
             err);
    CHECK_EQ(n, 1);
    CHECK_EQ(sp[0], 0);
    CHECK_EQ(sp[1], 0);
    free(sp);
    CHECK_OK(sn_chunk_text(tok, NULL, 0, 16, 4, &sp, &n, err, sizeof err),
             err);
    CHECK_EQ(n, 1);
    free(sp);

    /* blanks only, one word, leading and trailing space */
    free(chunk("   \n\n  \t ", 9, 8, 2, &n));
    CHECK_EQ(n, 1);
    free(chunk("hello", 5, 8, 2, &n));
    CHECK_EQ(n, 1);
    free(chunk("  hello world  ", 15, 8, 2, &n));
    CHECK_EQ(n, 1);

    /* no spaces at all: cut anywhere (at token starts), every piece
     * within the limit; punctuation splits it into many tokens */
    char run[3001];
    for (int i = 0; i < 3000; i++)
        run[i] = "qz,xjk-v"[i % 8];
    run[3000] = '\0';
    CHECK(n_tokens(run, 3000) > 500);
    free(chunk(run, 3000, 16, 4, &n));
    CHECK(n > 3000 / 8 * 4 / 14);
    /* one word of 90 letters, many word pieces */
    char w90[91];
    for (int i = 0; i < 90; i++)
        w90[i] = "qzxjkvw"[i % 7];
    w90[90] = '\0';
    CHECK(n_tokens(w90, 90) > 12);
    free(chunk(w90, 90, 6, 0, &n));
    CHECK(n >= 3);
    /* words longer than max_input_chars become one [UNK]: still fine */
    char longw[300];
    memset(longw, 'a', 299);
    longw[299] = '\0';
    free(chunk(longw, 299, 4, 0, &n));

    /* code points, not bytes: accents, CJK, emoji */
    const char *u8 = "Caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9" "e. "
                     "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae"
                     "\xe6\x96\x87\xe7\xab\xa0\xe3\x81\xa7\xe3\x81\x99\xe3"
                     "\x80\x82 emoji \xf0\x9f\x98\x80 here! end.";
    int32_t *s2 = chunk(u8, strlen(u8), 8, 2, &n);
    CHECK(n >= 2);
    free(s2);

    /* max_tokens 1 token: max_tokens = specials + 1 */
    free(chunk("a b c d e f", 11, 3, 0, &n));
    CHECK_EQ(n, 6);

    /* bad arguments */
    CHECK_EQ(sn_chunk_text(tok, "abc", 3, 2, 0, &sp, &n, err, sizeof err),
             SN_EARG); /* only room for [CLS] [SEP] */
    CHECK_EQ(sn_chunk_text(tok, "abc", 3, 0, 0, &sp, &n, err, sizeof err),
             SN_EARG);
    CHECK_EQ(sn_chunk_text(tok, "abc", 3, 8, -1, &sp, &n, err, sizeof err),
             SN_EARG);
    CHECK_EQ(sn_chunk_text(tok, "ab\xff", 3, 8, 0, &sp, &n, err, sizeof err),
             SN_EUTF8);
    CHECK_EQ(sn_chunk_text(NULL, "abc", 3, 8, 0, &sp, &n, err, sizeof err),
             SN_EARG);
}

static void test_huge(void)
{
    /* ~1 MB of prose with paragraphs */
    const char *words[] = {"the", "quick", "brown", "fox", "jumps", "over",
                           "lazy", "dog", "while", "python", "language",
                           "snake", "bank", "river", "money"};
    size_t cap = 1 << 20, len = 0;
    char *text = malloc(cap + 64);
    uint32_t r = 12345;
    CHECK(text);
    while (len < cap) {
        r = r * 1103515245u + 12345u;
        const char *w = words[(r >> 16) % 15];
        len += (size_t)sprintf(text + len, "%s", w);
        r = r * 1103515245u + 12345u;
        int p = (r >> 16) % 40;
        text[len++] = p == 0 ? '.' : p == 1 ? '?' : ' ';
        if (p < 2)
            text[len++] = ' ';
        if (p == 2) {
            text[len++] = '\n';
            text[len++] = '\n';
        }
    }
    text[len] = '\0';
    clock_t t = clock();
    int n;
    int32_t *sp;
    CHECK_OK(sn_chunk_text(tok, text, len, 128, 16, &sp, &n, err,
                           sizeof err), err);
    double s = (double)(clock() - t) / CLOCKS_PER_SEC;
    printf("huge: %zu bytes -> %d chunks in %.2f s\n", len, n, s);
    CHECK(n > (int)(len / 1024));
    CHECK_EQ(sp[0], 0);
    CHECK_EQ(sp[2 * n - 1], n_codepoints(text, len));
    /* check a sample of chunks in full (all of them: see chunk()) */
    for (int i = 0; i < n; i += 97) {
        size_t a = byte_at(text, len, sp[2 * i]);
        size_t b = byte_at(text, len, sp[2 * i + 1]);
        CHECK(n_tokens(text + a, b - a) <= 128);
        if (i > 0)
            CHECK(sp[2 * i] < sp[2 * i - 1]);
    }
    free(sp);
    /* over the limit */
    char *big = malloc((16u << 20) + 2);
    CHECK(big);
    memset(big, 'a', (16u << 20) + 1);
    CHECK_EQ(sn_chunk_text(tok, big, (16u << 20) + 1, 128, 0, &sp, &n, err,
                           sizeof err), SN_ETOOBIG);
    free(big);
    free(text);
}

int main(void)
{
    CHECK_OK(sn_tokenizer_load(SN_FIXTURES
                               "/hf-reference/tiny-bert-uncased/model",
                               &tok, err, sizeof err), err);
    test_sentences();
    test_words_and_overlap();
    test_edges();
    test_huge();
    sn_tokenizer_free(tok);
    printf("chunk: ok\n");
    return 0;
}
