/*
 * wsd.c -- word sense disambiguation: locating a word in a text
 * (morphology), word vectors from the encoder's per-token states, and the
 * scoring behind sn_wsd_which(). The inventory's storage is senses.c; the
 * WordNet importer wordnet.c.
 *
 * Locating. A text is read as words: maximal runs of letters, marks and
 * digits (Unicode categories L*, M*, N*); everything else separates them.
 * Words and lemmas are compared casefolded (NFC + Unicode case folding;
 * ASCII words take a fast path). A lemma of several words matches
 * consecutive text words whose separators are only spaces, hyphens,
 * apostrophes or periods. Inflections follow WordNet's morphy: its
 * detachment rules (applied without knowing the part of speech: the union
 * of the noun, verb and adjective rules), a doubled final consonant, and
 * an irregular-forms table. The rules leave a stem of at least two
 * characters, which keeps the worst over-matches out ("bed" is not taken
 * for "be"). The first exact occurrence wins over an earlier inflected
 * one: in "bats flew past the bat" the word "bat" is the second.
 *
 * Word vectors. The text is cut to a window around the word (its sentence,
 * widened to at least SN_WSD_MIN_CONTEXT and at most SN_WSD_CONTEXT code
 * points on each side: see window()) and encoded with want_tokens; the
 * last-layer states of the tokens whose [start, end) overlaps the word's
 * span are averaged and L2-normalized, the sentence vector normalized.
 * A decoder's (sn_model_causal: Qwen3) token states are contextual only
 * leftward -- a piece has seen the text before it, never after -- so its
 * word vector is the state of the word's last piece alone, the one that
 * has seen the whole word and everything left of it (averaging would mix
 * in pieces that have not yet seen the word's end); the words to the
 * right of it do not inform it, while the sentence vector (the last
 * token's state) sees the whole window. Tokenizers that
 * fold the preceding space into a token ("\u2581bank" at [3, 8) for "bank"
 * at [4, 8)) are covered by the overlap test; special tokens never count.
 *
 * Scoring: sn__wsd_score() computes every variant the bench compares
 * (word against sentence vector, nearest exemplar against centroid, raw or
 * centered); sn_wsd_which uses SN__WSD_SCORING_INIT, whose choice and
 * numbers are in wsd_int.h.
 *
 * Invariants: everything here is a pure function of its inputs but
 * sn_wsd_embed (the model) and sn_wsd_which (the model and the inventory);
 * no global state. Morph tables are immutable once built.
 *
 * Workload: locating runs over example sentences by the tens of thousands
 * (a WordNet import) and over query texts up to SN_WSD_MAX_TEXT; it is one
 * pass with no allocation for ASCII words. Scoring is a few hundred dot
 * products per query at most.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "embed_int.h"
#include "wsd_int.h"

#define MAX_PARTS 8        /* words in a multi-word lemma */
#define MAX_SEP 4          /* code points between the words of one */
#define MAX_BASES 24       /* candidate base forms of a query word */
#define MAX_EXC_LINE 4096  /* bytes of one exception-list line */
#define MAX_EXC_PAIRS 1000000

/* ---- morphology ------------------------------------------------------------ */

typedef struct {
    const char *form, *base;
} pair_t;

/* Common English irregular forms, sorted by form (strcmp order; checked by
 * sn_wsd_morph_new). WordNet's exception lists hold ~6,000 more. */
static const pair_t BUILTIN[] = {
    {"alumni", "alumnus"}, {"am", "be"}, {"analyses", "analysis"},
    {"appendices", "appendix"}, {"are", "be"}, {"ate", "eat"},
    {"axes", "axis"}, {"bases", "basis"}, {"beaten", "beat"},
    {"became", "become"}, {"been", "be"}, {"began", "begin"},
    {"begun", "begin"}, {"being", "be"}, {"bent", "bend"}, {"best", "good"},
    {"better", "good"}, {"bit", "bite"}, {"bitten", "bite"},
    {"bled", "bleed"}, {"blew", "blow"}, {"blown", "blow"}, {"bore", "bear"},
    {"born", "bear"}, {"borne", "bear"}, {"bought", "buy"}, {"bound", "bind"},
    {"bred", "breed"}, {"broke", "break"}, {"broken", "break"},
    {"brought", "bring"}, {"built", "build"}, {"cacti", "cactus"},
    {"calves", "calf"}, {"came", "come"}, {"caught", "catch"},
    {"children", "child"}, {"chose", "choose"}, {"chosen", "choose"},
    {"clung", "cling"}, {"crept", "creep"}, {"crises", "crisis"},
    {"criteria", "criterion"}, {"data", "datum"}, {"dealt", "deal"},
    {"dice", "die"}, {"did", "do"}, {"does", "do"}, {"done", "do"},
    {"drank", "drink"}, {"drawn", "draw"}, {"drew", "draw"},
    {"driven", "drive"}, {"drove", "drive"}, {"drunk", "drink"},
    {"dug", "dig"}, {"dying", "die"}, {"eaten", "eat"}, {"elder", "old"},
    {"eldest", "old"}, {"elves", "elf"}, {"fallen", "fall"},
    {"farther", "far"}, {"farthest", "far"}, {"fed", "feed"},
    {"feet", "foot"}, {"fell", "fall"}, {"felt", "feel"}, {"fled", "flee"},
    {"flew", "fly"}, {"flown", "fly"}, {"flung", "fling"},
    {"forgave", "forgive"}, {"forgiven", "forgive"}, {"forgot", "forget"},
    {"forgotten", "forget"}, {"fought", "fight"}, {"found", "find"},
    {"froze", "freeze"}, {"frozen", "freeze"}, {"fungi", "fungus"},
    {"further", "far"}, {"furthest", "far"}, {"gave", "give"},
    {"geese", "goose"}, {"given", "give"}, {"goes", "go"}, {"gone", "go"},
    {"got", "get"}, {"gotten", "get"}, {"grew", "grow"}, {"ground", "grind"},
    {"grown", "grow"}, {"had", "have"}, {"halves", "half"}, {"has", "have"},
    {"having", "have"}, {"heard", "hear"}, {"held", "hold"}, {"hid", "hide"},
    {"hidden", "hide"}, {"hooves", "hoof"}, {"hung", "hang"},
    {"indices", "index"}, {"is", "be"}, {"kept", "keep"}, {"knew", "know"},
    {"knives", "knife"}, {"known", "know"}, {"laid", "lay"}, {"lain", "lie"},
    {"larvae", "larva"}, {"lay", "lie"}, {"least", "little"},
    {"leaves", "leaf"}, {"led", "lead"}, {"left", "leave"}, {"lent", "lend"},
    {"less", "little"}, {"lice", "louse"}, {"lit", "light"},
    {"lives", "life"}, {"loaves", "loaf"}, {"lost", "lose"}, {"lying", "lie"},
    {"made", "make"}, {"matrices", "matrix"}, {"meant", "mean"},
    {"media", "medium"}, {"men", "man"}, {"met", "meet"}, {"mice", "mouse"},
    {"more", "much"}, {"most", "much"}, {"nuclei", "nucleus"}, {"oxen", "ox"},
    {"paid", "pay"}, {"people", "person"}, {"phenomena", "phenomenon"},
    {"radii", "radius"}, {"ran", "run"}, {"rang", "ring"}, {"ridden", "ride"},
    {"risen", "rise"}, {"rode", "ride"}, {"rose", "rise"}, {"rung", "ring"},
    {"said", "say"}, {"sang", "sing"}, {"sank", "sink"}, {"sat", "sit"},
    {"saw", "see"}, {"scarves", "scarf"}, {"seen", "see"}, {"selves", "self"},
    {"sent", "send"}, {"shaken", "shake"}, {"shelves", "shelf"},
    {"shone", "shine"}, {"shook", "shake"}, {"shot", "shoot"},
    {"slept", "sleep"}, {"slid", "slide"}, {"slung", "sling"},
    {"sold", "sell"}, {"sought", "seek"}, {"spent", "spend"},
    {"spoke", "speak"}, {"spoken", "speak"}, {"sprang", "spring"},
    {"sprung", "spring"}, {"spun", "spin"}, {"stimuli", "stimulus"},
    {"stole", "steal"}, {"stolen", "steal"}, {"stood", "stand"},
    {"striven", "strive"}, {"strove", "strive"}, {"struck", "strike"},
    {"strung", "string"}, {"stuck", "stick"}, {"stung", "sting"},
    {"sung", "sing"}, {"sunk", "sink"}, {"swam", "swim"}, {"swept", "sweep"},
    {"swore", "swear"}, {"sworn", "swear"}, {"swum", "swim"},
    {"swung", "swing"}, {"syllabi", "syllabus"}, {"taken", "take"},
    {"taught", "teach"}, {"teeth", "tooth"}, {"theses", "thesis"},
    {"thieves", "thief"}, {"thought", "think"}, {"threw", "throw"},
    {"thrown", "throw"}, {"told", "tell"}, {"took", "take"}, {"tore", "tear"},
    {"torn", "tear"}, {"trod", "tread"}, {"trodden", "tread"},
    {"tying", "tie"}, {"understood", "understand"}, {"vertices", "vertex"},
    {"vying", "vie"}, {"was", "be"}, {"went", "go"}, {"wept", "weep"},
    {"were", "be"}, {"wives", "wife"}, {"woke", "wake"}, {"woken", "wake"},
    {"wolves", "wolf"}, {"women", "woman"}, {"won", "win"}, {"wore", "wear"},
    {"worn", "wear"}, {"worse", "bad"}, {"worst", "bad"}, {"wound", "wind"},
    {"wove", "weave"}, {"woven", "weave"}, {"written", "write"},
    {"wrote", "write"}, {"wrung", "wring"},
};
#define N_BUILTIN (sizeof BUILTIN / sizeof BUILTIN[0])

struct sn_wsd_morph {
    pair_t *v;       /* added pairs, sorted by (form, base) */
    size_t n, cap;
    char **pools;    /* the strings v points into, one per added list */
    size_t n_pools;
};

/* Detachment rules: a form ending in `suffix` may be the stem plus
 * `ending`. The union of morphy's noun, verb and adjective rules. */
static const struct {
    const char *suffix, *ending;
} RULES[] = {
    {"s", ""},     {"ses", "s"},  {"xes", "x"}, {"zes", "z"},
    {"ches", "ch"}, {"shes", "sh"}, {"men", "man"}, {"ies", "y"},
    {"es", "e"},   {"es", ""},    {"ed", "e"},  {"ed", ""},
    {"ing", "e"},  {"ing", ""},   {"er", ""},   {"est", ""},
    {"er", "e"},   {"est", "e"},
};
#define N_RULES (sizeof RULES / sizeof RULES[0])
#define MIN_STEM 2

/* Suffixes before which a final consonant doubles (batted, bigger). */
static const char *const DOUBLING[] = {"ed", "ing", "er", "est"};

static int cmp_pair(const void *a, const void *b)
{
    const pair_t *x = a, *y = b;
    int c = strcmp(x->form, y->form);
    return c ? c : strcmp(x->base, y->base);
}

int sn_wsd_morph_new(sn_wsd_morph_t **out, char *err, size_t err_len)
{
    if (!out)
        return sn__err(err, err_len, SN_EARG, "sn_wsd_morph_new: no out");
    for (size_t i = 1; i < N_BUILTIN; i++)
        if (cmp_pair(&BUILTIN[i - 1], &BUILTIN[i]) >= 0)
            return sn__err(err, err_len, SN_ECORRUPT, "built-in irregular "
                           "forms not sorted at '%s'", BUILTIN[i].form);
    *out = calloc(1, sizeof **out);
    if (!*out)
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    return 0;
}

void sn_wsd_morph_free(sn_wsd_morph_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_pools; i++)
        free(m->pools[i]);
    free(m->pools);
    free(m->v);
    free(m);
}

size_t sn_wsd_morph_size(const sn_wsd_morph_t *m)
{
    return N_BUILTIN + (m ? m->n : 0);
}

int sn_wsd_morph_add_exc(sn_wsd_morph_t *m, const char *buf, size_t len,
                         const char *name, char *err, size_t err_len)
{
    char *pool = NULL, **pools;
    size_t n_new = 0, line = 0;
    int rc;

    if (!m || (!buf && len))
        return sn__err(err, err_len, SN_EARG, "sn_wsd_morph_add_exc: bad "
                       "arguments");
    name = name ? name : "exception list";
    if (!(pool = malloc(len + 1)))
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    if (len)
        memcpy(pool, buf, len);
    pool[len] = '\0';
    /* Two passes over the copy: count, then cut it into NUL-terminated
     * fields in place. A line is "form base [base...]". */
    for (int pass = 0; pass < 2; pass++) {
        size_t i = 0;
        line = 0;
        while (i < len) {
            size_t e = i;
            while (e < len && pool[e] != '\n')
                e++;
            line++;
            if (e - i > MAX_EXC_LINE) {
                rc = sn__err(err, err_len, SN_ECORRUPT, "%s: line %zu: "
                             "longer than %d bytes", name, line,
                             MAX_EXC_LINE);
                goto fail;
            }
            char *fields[64];
            int n_f = 0;
            for (size_t k = i; k < e;) {
                while (k < e && (pool[k] == ' ' || pool[k] == '\t' ||
                                 pool[k] == '\r'))
                    k++;
                if (k == e)
                    break;
                if (n_f == 64) {
                    rc = sn__err(err, err_len, SN_ECORRUPT, "%s: line %zu: "
                                 "more than 64 fields", name, line);
                    goto fail;
                }
                fields[n_f++] = pool + k;
                while (k < e && pool[k] != ' ' && pool[k] != '\t' &&
                       pool[k] != '\r')
                    k++;
                if (pass == 1 && k < e)
                    pool[k++] = '\0';
            }
            if (n_f == 1) {
                rc = sn__err(err, err_len, SN_ECORRUPT, "%s: line %zu: a "
                             "form without a base", name, line);
                goto fail;
            }
            if (pass == 0) {
                n_new += n_f ? (size_t)n_f - 1 : 0;
            } else {
                if (e < len)
                    pool[e] = '\0';
                for (int f = 0; f < n_f; f++)
                    for (char *c = fields[f]; *c; c++)
                        if (*c == '_')
                            *c = ' ';
                for (int f = 1; f < n_f; f++)
                    m->v[m->n++] = (pair_t){fields[0], fields[f]};
            }
            i = e + 1;
        }
        if (pass == 0) {
            if (n_new > MAX_EXC_PAIRS || m->n + n_new > MAX_EXC_PAIRS) {
                rc = sn__err(err, err_len, SN_ETOOBIG, "%s: more than %d "
                             "pairs", name, MAX_EXC_PAIRS);
                goto fail;
            }
            if (m->n + n_new > m->cap) {
                size_t cap = m->n + n_new;
                pair_t *v = realloc(m->v, (cap ? cap : 1) * sizeof *v);
                if (!v) {
                    rc = sn__err(err, err_len, -ENOMEM, "out of memory");
                    goto fail;
                }
                m->v = v;
                m->cap = cap;
            }
        }
    }
    pools = realloc(m->pools, (m->n_pools + 1) * sizeof *pools);
    if (!pools) {
        /* roll the pairs of this list back */
        m->n -= n_new;
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
        goto fail;
    }
    m->pools = pools;
    m->pools[m->n_pools++] = pool;
    qsort(m->v, m->n, sizeof *m->v, cmp_pair);
    return 0;
fail:
    free(pool);
    return rc;
}

int sn_wsd_morph_load_wordnet(sn_wsd_morph_t *m, const char *dir,
                              int *n_files, char *err, size_t err_len)
{
    static const char *const FILES[] = {"noun.exc", "verb.exc", "adj.exc",
                                        "adv.exc"};
    int n = 0, rc;

    if (n_files)
        *n_files = 0;
    if (!m || !dir)
        return sn__err(err, err_len, SN_EARG, "sn_wsd_morph_load_wordnet: "
                       "bad arguments");
    for (size_t i = 0; i < sizeof FILES / sizeof FILES[0]; i++) {
        char path[4096], *buf = NULL;
        size_t len;
        if (sn__path_join(path, sizeof path, dir, FILES[i]) < 0)
            return sn__err(err, err_len, SN_ETOOBIG, "'%s': path too long",
                           dir);
        if (!sn__file_exists(path))
            continue;
        if ((rc = sn__read_file(path, 64u << 20, &buf, &len, err,
                                err_len)) < 0)
            return rc;
        rc = sn_wsd_morph_add_exc(m, buf, len, path, err, err_len);
        free(buf);
        if (rc < 0)
            return rc;
        n++;
    }
    if (n_files)
        *n_files = n;
    return 0;
}

/* Does a sorted pair array hold a pair of `form`? *first gets the index of
 * the first (or where it would be). */
static int pairs_find(const pair_t *v, size_t n, const char *form,
                      size_t *first)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(v[mid].form, form) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *first = lo;
    return lo < n && !strcmp(v[lo].form, form);
}

static int table_has(const pair_t *v, size_t n, const char *form,
                     const char *base)
{
    size_t i;
    if (!pairs_find(v, n, form, &i))
        return 0;
    for (; i < n && !strcmp(v[i].form, form); i++)
        if (!strcmp(v[i].base, base))
            return 1;
    return 0;
}

static int is_vowel(char c)
{
    return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u';
}

static int ends_with(const char *s, size_t n, const char *suf, size_t k)
{
    return n >= k && !memcmp(s + n - k, suf, k);
}

int sn_wsd_inflects(const sn_wsd_morph_t *m, const char *form,
                    const char *base)
{
    size_t fn, bn;

    if (!form || !base)
        return 0;
    if (!strcmp(form, base))
        return 1;
    if (table_has(BUILTIN, N_BUILTIN, form, base) ||
        (m && table_has(m->v, m->n, form, base)))
        return 1;
    fn = strlen(form);
    bn = strlen(base);
    for (size_t r = 0; r < N_RULES; r++) {
        size_t sk = strlen(RULES[r].suffix), ek = strlen(RULES[r].ending);
        if (fn < sk + MIN_STEM || !ends_with(form, fn, RULES[r].suffix, sk))
            continue;
        size_t stem = fn - sk;
        if (bn == stem + ek && !memcmp(form, base, stem) &&
            !memcmp(base + stem, RULES[r].ending, ek))
            return 1;
    }
    /* base + its last consonant doubled + suffix */
    if (bn >= MIN_STEM && base[bn - 1] >= 'a' && base[bn - 1] <= 'z' &&
        !is_vowel(base[bn - 1]) && fn > bn + 1 && !memcmp(form, base, bn) &&
        form[bn] == base[bn - 1])
        for (size_t d = 0; d < sizeof DOUBLING / sizeof DOUBLING[0]; d++)
            if (!strcmp(form + bn + 1, DOUBLING[d]))
                return 1;
    return 0;
}

static int push_base(char out[][SN_WSD_MAX_WORD], int n, int max,
                     const char *s, size_t len)
{
    if (n >= max || len == 0 || len >= SN_WSD_MAX_WORD)
        return n;
    for (int i = 0; i < n; i++)
        if (strlen(out[i]) == len && !memcmp(out[i], s, len))
            return n;
    memcpy(out[n], s, len);
    out[n][len] = '\0';
    return n + 1;
}

int sn_wsd_bases(const sn_wsd_morph_t *m, const char *word,
                 char out[][SN_WSD_MAX_WORD], int max)
{
    char w[SN_WSD_MAX_WORD], tmp[SN_WSD_MAX_WORD];
    size_t i, wn;
    int n = 0;

    if (!word || max <= 0 || sn_wsd_casefold(word, w, sizeof w, NULL, 0) < 0)
        return 0;
    wn = strlen(w);
    n = push_base(out, n, max, w, wn);
    if (pairs_find(BUILTIN, N_BUILTIN, w, &i))
        for (; i < N_BUILTIN && !strcmp(BUILTIN[i].form, w); i++)
            n = push_base(out, n, max, BUILTIN[i].base,
                          strlen(BUILTIN[i].base));
    if (m && pairs_find(m->v, m->n, w, &i))
        for (; i < m->n && !strcmp(m->v[i].form, w); i++)
            n = push_base(out, n, max, m->v[i].base, strlen(m->v[i].base));
    for (size_t r = 0; r < N_RULES; r++) {
        size_t sk = strlen(RULES[r].suffix), ek = strlen(RULES[r].ending);
        if (wn < sk + MIN_STEM || !ends_with(w, wn, RULES[r].suffix, sk))
            continue;
        size_t stem = wn - sk;
        if (stem + ek >= sizeof tmp)
            continue;
        memcpy(tmp, w, stem);
        memcpy(tmp + stem, RULES[r].ending, ek);
        n = push_base(out, n, max, tmp, stem + ek);
    }
    for (size_t d = 0; d < sizeof DOUBLING / sizeof DOUBLING[0]; d++) {
        size_t sk = strlen(DOUBLING[d]);
        if (wn >= sk + MIN_STEM + 1 && ends_with(w, wn, DOUBLING[d], sk) &&
            w[wn - sk - 1] == w[wn - sk - 2] && !is_vowel(w[wn - sk - 1]))
            n = push_base(out, n, max, w, wn - sk - 1);
    }
    return n;
}

/* ---- casefolding and words ------------------------------------------------ */

int64_t sn__utf8_count(const char *s, size_t len)
{
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    int64_t n = 0;
    size_t i = 0;

    while (i < len) {
        if (p[i] < 0x80) {
            i++;
            n++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p + i, (utf8proc_ssize_t)(len - i),
                                              &cp);
        if (k <= 0)
            return SN_EUTF8;
        i += (size_t)k;
        n++;
    }
    return n;
}

static int is_word_cp(utf8proc_int32_t cp)
{
    if (cp < 0x80)
        return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
               (cp >= '0' && cp <= '9');
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        return 1;
    default:
        return 0;
    }
}

/* May this code point stand between the words of a multi-word lemma? */
static int is_joiner_cp(utf8proc_int32_t cp)
{
    return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' ||
           cp == '-' || cp == '\'' || cp == '.' || cp == 0xA0 ||
           cp == 0x2019 || (cp >= 0x2010 && cp <= 0x2013);
}

/* Casefold s[0..len) (one word, or a lemma) into out; 0, or SN_ETOOBIG /
 * SN_EUTF8 / -ENOMEM. */
static int fold(const char *s, size_t len, char *out, size_t out_len)
{
    size_t i;

    for (i = 0; i < len && (unsigned char)s[i] < 0x80; i++)
        ;
    if (i == len) {
        if (len >= out_len)
            return SN_ETOOBIG;
        for (i = 0; i < len; i++)
            out[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]);
        out[len] = '\0';
        return 0;
    }
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)s,
                                      (utf8proc_ssize_t)len, &dst,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE |
                                          UTF8PROC_CASEFOLD);
    if (n < 0) {
        free(dst);
        return n == UTF8PROC_ERROR_NOMEM ? -ENOMEM : SN_EUTF8;
    }
    if ((size_t)n >= out_len) {
        free(dst);
        return SN_ETOOBIG;
    }
    memcpy(out, dst, (size_t)n);
    out[n] = '\0';
    free(dst);
    return 0;
}

int sn_wsd_casefold(const char *word, char *out, size_t out_len, char *err,
                    size_t err_len)
{
    char tmp[4 * SN_WSD_MAX_WORD];
    size_t len, o = 0;
    int rc;

    if (!word || !out || !out_len)
        return sn__err(err, err_len, SN_EARG, "no word");
    len = strlen(word);
    if (len >= SN_WSD_MAX_WORD)
        return sn__err(err, err_len, SN_EARG, "word longer than %d bytes",
                       SN_WSD_MAX_WORD - 1);
    if ((rc = fold(word, len, tmp, sizeof tmp)) < 0)
        return sn__err(err, err_len, rc == SN_ETOOBIG ? SN_EARG : rc, "%s",
                       rc == SN_EUTF8     ? "word is not valid utf-8"
                       : rc == SN_ETOOBIG ? "word too long once casefolded"
                                          : "out of memory");
    /* "_" and whitespace runs to one space, trimmed */
    for (size_t i = 0; tmp[i]; i++) {
        char c = tmp[i] == '_' || tmp[i] == '\t' || tmp[i] == '\n' ||
                         tmp[i] == '\r'
                     ? ' '
                     : tmp[i];
        if (c == ' ' && (o == 0 || out[o - 1] == ' '))
            continue;
        if (o + 1 >= out_len || o + 1 >= SN_WSD_MAX_WORD)
            return sn__err(err, err_len, SN_EARG, "word longer than %d "
                           "bytes", SN_WSD_MAX_WORD - 1);
        out[o++] = c;
    }
    if (o && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
    if (!o)
        return sn__err(err, err_len, SN_EARG, "empty word");
    return 0;
}

/* A word of a text: bytes [b0, b1), code points [c0, c1), casefolded. */
typedef struct {
    size_t b0, b1;
    int32_t c0, c1;
    int joined;     /* only joiners (at most MAX_SEP) since the last word */
    int ok;         /* folded fits */
    char folded[SN_WSD_MAX_WORD];
} word_t;

typedef struct {
    const char *text;
    size_t len, i;  /* byte position */
    int32_t cp;     /* code point position */
    int after_word; /* a word was seen before */
} scan_t;

/* The next word, or 0 at the end; SN_EUTF8 on invalid input. */
static int next_word(scan_t *s, word_t *w)
{
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s->text;
    int n_sep = 0, joinable = 1, in_word = 0;

    while (s->i < s->len) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k;
        if (p[s->i] < 0x80) {
            c = p[s->i];
            k = 1;
        } else if ((k = utf8proc_iterate(p + s->i,
                                         (utf8proc_ssize_t)(s->len - s->i),
                                         &c)) <= 0) {
            return SN_EUTF8;
        }
        int wc = is_word_cp(c);
        if (!in_word && wc) {
            in_word = 1;
            w->b0 = s->i;
            w->c0 = s->cp;
        } else if (in_word && !wc) {
            break;
        } else if (!in_word) {
            n_sep++;
            if (!is_joiner_cp(c))
                joinable = 0;
        }
        s->i += (size_t)k;
        s->cp++;
    }
    if (!in_word)
        return 0;
    w->b1 = s->i;
    w->c1 = s->cp;
    w->joined = s->after_word && joinable && n_sep > 0 && n_sep <= MAX_SEP;
    s->after_word = 1;
    int rc = fold(s->text + w->b0, w->b1 - w->b0, w->folded,
                  sizeof w->folded);
    if (rc == -ENOMEM)
        return rc;
    w->ok = rc == 0;
    return 1;
}

/* ---- locating -------------------------------------------------------------- */

int sn_wsd_find_word_ex(const sn_wsd_morph_t *m, const char *text,
                        size_t len, const char *word, int32_t *start,
                        int32_t *end, char *err, size_t err_len)
{
    char lemma[SN_WSD_MAX_WORD], parts[MAX_PARTS][SN_WSD_MAX_WORD];
    word_t *ring = NULL;
    scan_t sc;
    word_t w;
    int n_parts = 0, rc, found = 0;
    int32_t f0 = -1, f1 = -1;
    int64_t n_words = 0;

    if (!text && len)
        return sn__err(err, err_len, SN_EARG, "no text");
    if (!start || !end)
        return sn__err(err, err_len, SN_EARG, "no span to fill");
    if (len > SN_WSD_MAX_TEXT)
        return sn__err(err, err_len, SN_ETOOBIG, "text longer than %u "
                       "bytes", SN_WSD_MAX_TEXT);
    if ((rc = sn_wsd_casefold(word, lemma, sizeof lemma, err, err_len)) < 0)
        return rc;
    /* the lemma's own words */
    memset(&sc, 0, sizeof sc);
    sc.text = lemma;
    sc.len = strlen(lemma);
    while ((rc = next_word(&sc, &w)) > 0) {
        if (n_parts == MAX_PARTS)
            return sn__err(err, err_len, SN_EARG, "word '%s' has more than "
                           "%d parts", word, MAX_PARTS);
        memcpy(parts[n_parts++], w.folded, sizeof w.folded);
    }
    if (rc < 0)
        return sn__err(err, err_len, rc, "word is not valid utf-8");
    if (!n_parts)
        return sn__err(err, err_len, SN_EARG, "word '%s' has no letters or "
                       "digits", word);
    if (!(ring = malloc(MAX_PARTS * sizeof *ring)))
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    memset(&sc, 0, sizeof sc);
    sc.text = text;
    sc.len = len;
    while ((rc = next_word(&sc, &ring[n_words % n_parts])) > 0) {
        n_words++;
        if (n_words < n_parts)
            continue;
        /* exact: every part equal; infl: every part an inflection (only
         * looked for until the first inflected match is recorded) */
        int exact = 1, infl = !found;
        for (int k = 0; k < n_parts && (exact || infl); k++) {
            const word_t *x = &ring[(n_words - n_parts + k) % n_parts];
            if (!x->ok || (k > 0 && !x->joined)) {
                exact = infl = 0;
                break;
            }
            if (strcmp(x->folded, parts[k]) != 0) {
                exact = 0;
                if (infl && !sn_wsd_inflects(m, x->folded, parts[k]))
                    infl = 0;
            }
        }
        const word_t *first = &ring[(n_words - n_parts) % n_parts];
        const word_t *last = &ring[(n_words - 1) % n_parts];
        if (exact) {
            f0 = first->c0;
            f1 = last->c1;
            found = 2;
            break;
        }
        if (infl && !found) {
            f0 = first->c0;
            f1 = last->c1;
            found = 1;
        }
    }
    free(ring);
    if (rc < 0)
        return sn__err(err, err_len, rc, rc == SN_EUTF8
                                             ? "text is not valid utf-8"
                                             : "out of memory");
    if (!found)
        return sn__err(err, err_len, SN_ENOTFOUND, "word '%s' not found in "
                       "text", word);
    *start = f0;
    *end = f1;
    return 0;
}

int sn_wsd_find_word(const char *text, size_t len, const char *word,
                     int32_t *start, int32_t *end, char *err,
                     size_t err_len)
{
    return sn_wsd_find_word_ex(NULL, text, len, word, start, end, err,
                               err_len);
}

/* ---- word vectors ---------------------------------------------------------- */

void sn_wsd_vec_free(sn_wsd_vec_t *v)
{
    if (!v)
        return;
    free(v->word);
    free(v->sentence);
    memset(v, 0, sizeof *v);
}

static void normalize(float *v, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    if (s > 0) {
        float inv = (float)(1.0 / sqrt(s));
        for (int i = 0; i < n; i++)
            v[i] *= inv;
    }
}

static int is_space_byte(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Byte offset of code point `cp` in valid UTF-8 s[0..len). */
static size_t cp_to_byte(const char *s, size_t len, int64_t cp)
{
    size_t i = 0;
    for (int64_t n = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (n == cp)
                return i;
            n++;
        }
    }
    return len;
}

static int32_t count_cp(const char *s, size_t len)
{
    int32_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

/* Does a sentence start at byte p? At the text's ends; after a newline;
 * after whitespace that follows . ! or ? (closing quotes or brackets may
 * stand between). */
static int sentence_starts(const char *s, size_t len, size_t p)
{
    size_t k;

    if (p == 0 || p >= len)
        return 1;
    if (s[p - 1] == '\n')
        return 1;
    if (!is_space_byte(s[p - 1]) || is_space_byte(s[p]))
        return 0;
    for (k = p - 1; k > 0 && is_space_byte(s[k - 1]); k--)
        ;
    while (k > 0 && (s[k - 1] == '"' || s[k - 1] == '\'' || s[k - 1] == ')' ||
                     s[k - 1] == ']'))
        k--;
    return k > 0 && (s[k - 1] == '.' || s[k - 1] == '!' || s[k - 1] == '?');
}

/* The window of text t around its span, bytes [*b0, *b1), whose first code
 * point is *c0: the sentence the word is in, widened by whole sentences on
 * both sides while it is shorter than SN_WSD_MIN_CONTEXT code points, never
 * more than `context` code points on either side of the word (cut after
 * a space there). The exemplars the window is compared with are
 * single sentences: like is compared with like, and a long document does
 * not drown the word's own sentence. */
static void window(const sn_wsd_span_t *t, int64_t n_cp, int context,
                   size_t *b0, size_t *b1, int32_t *c0)
{
    const char *x = t->text;
    size_t len = t->len;
    int64_t ws = t->start > context ? t->start - context : 0;
    int64_t we = n_cp - t->end > context ? t->end + context : n_cp;
    size_t lo = cp_to_byte(x, len, ws), hi = cp_to_byte(x, len, we);
    size_t sb = cp_to_byte(x, len, t->start), se = cp_to_byte(x, len, t->end);
    size_t s = sb, e = se;

    /* the cut at the limits: after a space if there is one before the word */
    if (lo > 0) {
        size_t k = lo;
        while (k < sb && !is_space_byte(x[k]))
            k++;
        if (k < sb)
            lo = k + 1;
    }
    if (hi < len) {
        size_t k = hi;
        while (k > se && !is_space_byte(x[k - 1]))
            k--;
        if (k > se)
            hi = k - 1;
    }
    /* the word's sentence */
    while (s > lo && !sentence_starts(x, len, s))
        s--;
    while (e < hi && !sentence_starts(x, len, e))
        e++;
    /* widened while short */
    while (count_cp(x + s, e - s) < SN_WSD_MIN_CONTEXT && (s > lo || e < hi)) {
        if (s > lo)
            for (s--; s > lo && !sentence_starts(x, len, s); s--)
                ;
        if (e < hi)
            for (e++; e < hi && !sentence_starts(x, len, e); e++)
                ;
    }
    while (e > se && is_space_byte(x[e - 1]))
        e--;
    *b0 = s;
    *b1 = e;
    *c0 = count_cp(x, s);
}

/* Contexts tried in turn (code points on each side of the word): a text
 * whose word fell past the model's window (a run-on sentence of short
 * tokens can fill 128 tokens in 256 characters) is encoded again with
 * less around it, at last the word alone. */
static const int CONTEXTS[] = {SN_WSD_CONTEXT, SN_WSD_CONTEXT / 4, 0};

/* Encode the texts in[idx[0..k)] with `context`, in one batch; fill out[]
 * for those whose word got tokens, list the others in failed[]. */
static int embed_some(const sn_model_t *model, sn_ctx_t *ctx,
                      const sn_wsd_span_t *in, const int64_t *n_cp,
                      const int *idx, int k, int context, sn_wsd_vec_t *out,
                      int *failed, int *n_failed, char *err, size_t err_len)
{
    const char **texts = malloc((size_t)k * sizeof *texts);
    size_t *lens = malloc((size_t)k * sizeof *lens);
    int32_t *c0 = malloc((size_t)k * sizeof *c0);
    sn_embedding_t *emb = calloc((size_t)k, sizeof *emb);
    sn_embed_opts_t opts = {.want_tokens = 1};
    int rc, embedded = 0;
    const int causal = sn_model_causal(model);

    *n_failed = 0;
    if (!texts || !lens || !c0 || !emb) {
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
        goto done;
    }
    for (int j = 0; j < k; j++) {
        size_t b0, b1;
        window(&in[idx[j]], n_cp[idx[j]], context, &b0, &b1, &c0[j]);
        texts[j] = in[idx[j]].text + b0;
        lens[j] = b1 - b0;
    }
    if ((rc = sn_model_embed(model, ctx, texts, lens, k, &opts, emb, err,
                             err_len)) < 0)
        goto done;
    embedded = 1;
    for (int j = 0; j < k; j++) {
        const sn_embedding_t *e = &emb[j];
        const sn_wsd_span_t *t = &in[idx[j]];
        sn_wsd_vec_t *o = &out[idx[j]];
        int32_t s = t->start - c0[j], en = t->end - c0[j];
        int hidden = e->hidden, np = 0;
        double nn = 0;

        int last = -1;
        for (int q = 0; q < e->enc.n_tokens && e->tokens; q++)
            if (!e->enc.special[q] && e->enc.start[q] < en &&
                e->enc.end[q] > s) {
                np++;
                last = q;
            }
        if (np && causal) /* a decoder: the word's last piece alone */
            np = 1;
        if (!np || hidden <= 0 || e->dim <= 0) {
            failed[(*n_failed)++] = idx[j];
            continue;
        }
        o->word = calloc((size_t)hidden, sizeof *o->word);
        o->sentence = malloc((size_t)e->dim * sizeof *o->sentence);
        if (!o->word || !o->sentence) {
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            goto done;
        }
        for (int q = 0; q < e->enc.n_tokens; q++) {
            if (e->enc.special[q] || e->enc.start[q] >= en ||
                e->enc.end[q] <= s || (causal && q != last))
                continue;
            const float *row = e->tokens + (size_t)q * (size_t)hidden;
            for (int d = 0; d < hidden; d++)
                o->word[d] += row[d];
        }
        normalize(o->word, hidden);
        for (int d = 0; d < e->dim; d++)
            nn += (double)e->sentence[d] * e->sentence[d];
        for (int d = 0; d < e->dim; d++)
            o->sentence[d] = nn > 0 ? (float)(e->sentence[d] / sqrt(nn))
                                    : 0.0f;
        o->hidden = hidden;
        o->dim = e->dim;
        o->n_pieces = np;
    }
    rc = 0;
done:
    if (embedded)
        for (int j = 0; j < k; j++)
            sn_embedding_free(&emb[j]);
    free(emb);
    free(c0);
    free(lens);
    free(texts);
    return rc;
}

int sn_wsd_embed(const sn_model_t *model, sn_ctx_t *ctx,
                 const sn_wsd_span_t *in, int n, sn_wsd_vec_t *out,
                 char *err, size_t err_len)
{
    int64_t *n_cp = NULL;
    int *idx = NULL, *failed = NULL, k = n, rc;

    if (n < 0 || (n > 0 && (!in || !out)) || !model || !ctx)
        return sn__err(err, err_len, SN_EARG, "sn_wsd_embed: bad arguments");
    if (n == 0)
        return 0;
    memset(out, 0, (size_t)n * sizeof *out);
    n_cp = malloc((size_t)n * sizeof *n_cp);
    idx = malloc((size_t)n * sizeof *idx);
    failed = malloc((size_t)n * sizeof *failed);
    if (!n_cp || !idx || !failed) {
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        const sn_wsd_span_t *t = &in[i];
        if (!t->text && t->len) {
            rc = sn__err(err, err_len, SN_EARG, "text %d: no text", i);
            goto fail;
        }
        if (t->len > SN_WSD_MAX_TEXT) {
            rc = sn__err(err, err_len, SN_ETOOBIG, "text %d: longer than %u "
                         "bytes", i, SN_WSD_MAX_TEXT);
            goto fail;
        }
        if ((n_cp[i] = sn__utf8_count(t->text, t->len)) < 0) {
            rc = sn__err(err, err_len, SN_EUTF8, "text %d: invalid utf-8", i);
            goto fail;
        }
        if (t->start < 0 || t->end <= t->start || t->end > n_cp[i]) {
            rc = sn__err(err, err_len, SN_EARG, "text %d: span [%d, %d) is "
                         "not inside its %lld characters", i, (int)t->start,
                         (int)t->end, (long long)n_cp[i]);
            goto fail;
        }
        idx[i] = i;
    }
    for (size_t c = 0; c < sizeof CONTEXTS / sizeof CONTEXTS[0] && k; c++) {
        int n_failed;
        if ((rc = embed_some(model, ctx, in, n_cp, idx, k, CONTEXTS[c], out,
                             failed, &n_failed, err, err_len)) < 0)
            goto fail;
        memcpy(idx, failed, (size_t)n_failed * sizeof *idx);
        k = n_failed;
    }
    if (k) {
        rc = sn__err(err, err_len, SN_EARG, "text %d: the word at [%d, %d) "
                     "covers no token of the model's input", idx[0],
                     (int)in[idx[0]].start, (int)in[idx[0]].end);
        goto fail;
    }
    rc = 0;
    goto done;
fail:
    for (int i = 0; i < n; i++)
        sn_wsd_vec_free(&out[i]);
done:
    free(failed);
    free(idx);
    free(n_cp);
    return rc;
}

/* ---- scoring --------------------------------------------------------------- */

void sn__wsd_inv_free(sn__wsd_inv_t *inv)
{
    if (!inv)
        return;
    for (int i = 0; i < inv->n_senses; i++) {
        if (inv->sense)
            free(inv->sense[i]);
        if (inv->gloss)
            free(inv->gloss[i]);
    }
    free(inv->sense);
    free(inv->gloss);
    free(inv->n_examples);
    free(inv->ex_sense);
    free(inv->ex_gloss);
    free(inv->word);
    free(inv->sentence);
    memset(inv, 0, sizeof *inv);
}

static float dot(const float *a, const float *b, int n)
{
    float s = 0;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* The vectors one side (word or sentence) is scored with: the inventory's
 * rows and the query as they are, or, centered, minus the mean of the rows
 * not skipped and renormalized (in *buf, which the caller frees). */
static int side(const sn__wsd_inv_t *inv, const float *mat, int d,
                const float *q, int center, const uint8_t *skip,
                const float **mat_out, const float **q_out, float **buf)
{
    size_t n = (size_t)inv->n_ex;
    float *b, *m;
    int used = 0;

    *buf = NULL;
    *mat_out = mat;
    *q_out = q;
    if (!center)
        return 0;
    if (!(b = malloc((n + 2) * (size_t)d * sizeof *b)))
        return -ENOMEM;
    m = b + (n + 1) * (size_t)d;
    memset(m, 0, (size_t)d * sizeof *m);
    for (size_t i = 0; i < n; i++) {
        if (skip && skip[i])
            continue;
        const float *r = mat + i * (size_t)d;
        for (int j = 0; j < d; j++)
            m[j] += r[j];
        used++;
    }
    for (int j = 0; j < d && used; j++)
        m[j] /= (float)used;
    for (size_t i = 0; i <= n; i++) {
        const float *r = i < n ? mat + i * (size_t)d : q;
        float *o = b + i * (size_t)d;
        for (int j = 0; j < d; j++)
            o[j] = r[j] - m[j];
        normalize(o, d);
    }
    *buf = b;
    *mat_out = b;
    *q_out = b + n * (size_t)d;
    return 0;
}

/* cos(q, sum of the rows of sense k not skipped). */
static float centroid_cos(const sn__wsd_inv_t *inv, const float *mat, int d,
                          const float *q, int k, const uint8_t *skip,
                          float *c)
{
    double qc = 0, cc = 0;

    memset(c, 0, (size_t)d * sizeof *c);
    for (int i = 0; i < inv->n_ex; i++) {
        if (inv->ex_sense[i] != k || (skip && skip[i]))
            continue;
        const float *r = mat + (size_t)i * (size_t)d;
        for (int j = 0; j < d; j++)
            c[j] += r[j];
    }
    for (int j = 0; j < d; j++) {
        qc += (double)q[j] * c[j];
        cc += (double)c[j] * c[j];
    }
    return cc > 0 ? (float)(qc / sqrt(cc)) : 0.0f;
}

int sn__wsd_score(const sn__wsd_inv_t *inv, const float *q_word,
                  const float *q_sentence, const sn__wsd_scoring_t *p,
                  const uint8_t *skip, float *scores)
{
    const float *mw, *qw, *ms, *qs;
    float *bw = NULL, *bs = NULL, *c = NULL;
    float alpha = p->alpha;
    int best = -1, rc;

    for (int k = 0; k < inv->n_senses; k++)
        scores[k] = -INFINITY;
    if ((rc = side(inv, inv->word, inv->hidden, q_word, p->center, skip, &mw,
                   &qw, &bw)) < 0 ||
        (rc = side(inv, inv->sentence, inv->dim, q_sentence, p->center, skip,
                   &ms, &qs, &bs)) < 0)
        goto done;
    if (!p->centroid) {
        for (int i = 0; i < inv->n_ex; i++) {
            if (skip && skip[i])
                continue;
            float v = 0, a = alpha;
            if (inv->ex_gloss && inv->ex_gloss[i] && p->alpha_gloss >= 0)
                a = p->alpha_gloss;
            if (a > 0)
                v += a * dot(qw, mw + (size_t)i * inv->hidden, inv->hidden);
            if (a < 1)
                v += (1 - a) * dot(qs, ms + (size_t)i * inv->dim, inv->dim);
            if (v > scores[inv->ex_sense[i]])
                scores[inv->ex_sense[i]] = v;
        }
    } else {
        int d = inv->hidden > inv->dim ? inv->hidden : inv->dim;
        if (!(c = malloc((size_t)d * sizeof *c))) {
            rc = -ENOMEM;
            goto done;
        }
        for (int k = 0; k < inv->n_senses; k++) {
            int any = 0;
            for (int i = 0; i < inv->n_ex && !any; i++)
                any = inv->ex_sense[i] == k && !(skip && skip[i]);
            if (!any)
                continue;
            float v = 0;
            if (alpha > 0)
                v += alpha *
                     centroid_cos(inv, mw, inv->hidden, qw, k, skip, c);
            if (alpha < 1)
                v += (1 - alpha) *
                     centroid_cos(inv, ms, inv->dim, qs, k, skip, c);
            scores[k] = v;
        }
    }
    for (int k = 0; k < inv->n_senses; k++)
        if (scores[k] > -INFINITY && (best < 0 || scores[k] > scores[best]))
            best = k;
    rc = best;
done:
    free(c);
    free(bw);
    free(bs);
    return rc;
}

/* ---- deciding -------------------------------------------------------------- */

void sn_wsd_result_free(sn_wsd_result_t *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_cands; i++) {
        free(r->cands[i].sense);
        free(r->cands[i].gloss);
    }
    free(r->cands);
    free(r->lemma);
    free(r->sense);
    memset(r, 0, sizeof *r);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static const sn__wsd_scoring_t SCORING = SN__WSD_SCORING_INIT;

typedef struct {
    int k;
    float score;
} ranked_t;

static int cmp_ranked(const void *a, const void *b)
{
    const ranked_t *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? 1 : -1;
    return (x->k > y->k) - (x->k < y->k);
}

int sn_wsd_which(sn_senses_t *s, const sn_model_t *model, sn_ctx_t *ctx,
                 const sn_wsd_query_t *q, sn_wsd_result_t *out, char *err,
                 size_t err_len)
{
    char word[SN_WSD_MAX_WORD], bases[MAX_BASES][SN_WSD_MAX_WORD];
    const char *model_id;
    const sn_wsd_morph_t *morph;
    sn__wsd_inv_t inv = {0};
    sn_wsd_vec_t v = {0};
    float *scores = NULL;
    ranked_t *rank = NULL;
    int rc, n_bases, lemma = -1, n_scored = 0;
    int32_t start, end;

    if (!out)
        return sn__err(err, err_len, SN_EARG, "sn_wsd_which: no out");
    memset(out, 0, sizeof *out);
    if (!s || !model || !ctx || !q || (!q->text && q->len))
        return sn__err(err, err_len, SN_EARG, "sn_wsd_which: bad arguments");
    if (q->len > SN_WSD_MAX_TEXT)
        return sn__err(err, err_len, SN_ETOOBIG, "text longer than %u bytes",
                       SN_WSD_MAX_TEXT);
    model_id = sn_model_name(model);
    morph = sn__senses_morph(s);
    start = q->start;
    end = q->end;
    /* the word: as given, or the text at the span */
    if (q->word) {
        if ((rc = sn_wsd_casefold(q->word, word, sizeof word, err,
                                  err_len)) < 0)
            return rc;
    } else {
        if (start < 0 || end <= start)
            return sn__err(err, err_len, SN_EARG, "no word and no span");
        int64_t n_cp = sn__utf8_count(q->text, q->len);
        if (n_cp < 0)
            return sn__err(err, err_len, SN_EUTF8, "text is not valid utf-8");
        if (end > n_cp)
            return sn__err(err, err_len, SN_EARG, "span [%d, %d) is not "
                           "inside the text's %lld characters", (int)start,
                           (int)end, (long long)n_cp);
        size_t b0 = cp_to_byte(q->text, q->len, start);
        size_t b1 = cp_to_byte(q->text, q->len, end);
        char tmp[SN_WSD_MAX_WORD];
        if (b1 - b0 >= sizeof tmp)
            return sn__err(err, err_len, SN_EARG, "the span is longer than "
                           "%d bytes", SN_WSD_MAX_WORD - 1);
        memcpy(tmp, q->text + b0, b1 - b0);
        tmp[b1 - b0] = '\0';
        if ((rc = sn_wsd_casefold(tmp, word, sizeof word, err, err_len)) < 0)
            return rc;
    }
    /* the lemma: the first base form with an inventory */
    n_bases = sn_wsd_bases(morph, word, bases, MAX_BASES);
    for (int i = 0; i < n_bases && lemma < 0; i++) {
        if ((rc = sn__senses_load(s, model_id, bases[i], &inv, err,
                                  err_len)) < 0)
            goto fail;
        if (inv.n_senses > 0)
            lemma = i;
        else
            sn__wsd_inv_free(&inv);
    }
    if (lemma < 0) {
        rc = sn__err(err, err_len, SN_ENOTFOUND, "no senses of '%s' for "
                     "model '%s'", word, model_id);
        goto fail;
    }
    if (inv.n_ex == 0) {
        rc = sn__err(err, err_len, SN_ENOTFOUND, "the senses of '%s' have no "
                     "examples to compare with", bases[lemma]);
        goto fail;
    }
    /* where it is: the word as asked first ("Pythons" in "Pythons are
     * snakes but I code Python" is the plural), then any form of its
     * lemma */
    if (start < 0) {
        char sub[256];
        rc = sn_wsd_find_word_ex(morph, q->text, q->len, word, &start, &end,
                                 sub, sizeof sub);
        if (rc == SN_ENOTFOUND && strcmp(word, bases[lemma]) != 0)
            rc = sn_wsd_find_word_ex(morph, q->text, q->len, bases[lemma],
                                     &start, &end, sub, sizeof sub);
        if (rc == SN_ENOTFOUND) {
            rc = sn__err(err, err_len, SN_ENOTFOUND, "word '%s' not found in "
                         "text", q->word ? q->word : word);
            goto fail;
        }
        if (rc < 0) {
            rc = sn__err(err, err_len, rc, "%s", sub);
            goto fail;
        }
    }
    sn_wsd_span_t span = {q->text, q->len, start, end};
    if ((rc = sn_wsd_embed(model, ctx, &span, 1, &v, err, err_len)) < 0)
        goto fail;
    if (v.hidden != inv.hidden || v.dim != inv.dim) {
        rc = sn__err(err, err_len, SN_EMODEL, "the senses of '%s' hold "
                     "%d/%d-d vectors, model '%s' makes %d/%d-d",
                     bases[lemma], inv.hidden, inv.dim, model_id, v.hidden,
                     v.dim);
        goto fail;
    }
    scores = malloc((size_t)inv.n_senses * sizeof *scores);
    rank = malloc((size_t)inv.n_senses * sizeof *rank);
    if (!scores || !rank) {
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = sn__wsd_score(&inv, v.word, v.sentence, &SCORING, NULL,
                            scores)) < -1) {
        rc = sn__err(err, err_len, rc, "out of memory");
        goto fail;
    }
    for (int k = 0; k < inv.n_senses; k++)
        if (scores[k] > -INFINITY)
            rank[n_scored++] = (ranked_t){k, scores[k]};
    qsort(rank, (size_t)n_scored, sizeof *rank, cmp_ranked);
    out->cands = calloc((size_t)n_scored, sizeof *out->cands);
    out->lemma = strdup(bases[lemma]);
    if (!out->cands || !out->lemma) {
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < n_scored; i++) {
        sn_wsd_candidate_t *c = &out->cands[i];
        int k = rank[i].k;
        out->n_cands = i + 1;
        c->score = rank[i].score;
        c->n_examples = inv.n_examples[k];
        c->sense = strdup(inv.sense[k]);
        c->gloss = dup_or_null(inv.gloss[k]);
        if (!c->sense || (inv.gloss[k] && !c->gloss)) {
            rc = sn__err(err, err_len, -ENOMEM, "out of memory");
            goto fail;
        }
    }
    if (!(out->sense = strdup(out->cands[0].sense))) {
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
        goto fail;
    }
    out->score = out->cands[0].score;
    out->margin = n_scored > 1 ? out->cands[0].score - out->cands[1].score
                               : 0.0f;
    out->start = start;
    out->end = end;
    rc = 0;
    goto done;
fail:
    sn_wsd_result_free(out);
done:
    free(rank);
    free(scores);
    sn_wsd_vec_free(&v);
    sn__wsd_inv_free(&inv);
    return rc;
}

/* ---- adding through the model ---------------------------------------------- */

int sn_wsd_add(sn_senses_t *s, const sn_model_t *model, sn_ctx_t *ctx,
               const sn_wsd_example_t *ex, int n, char *err, size_t err_len)
{
    const sn_wsd_morph_t *morph;
    sn_wsd_span_t *spans = NULL;
    sn_wsd_vec_t *vecs = NULL;
    sn_sense_row_t *rows = NULL;
    char **gloss_texts = NULL;
    int *which = NULL, n_spans = 0, rc, hidden = 0, dim = 0;

    if (!s || !model || !ctx || n < 0 || (n > 0 && !ex))
        return sn__err(err, err_len, SN_EARG, "sn_wsd_add: bad arguments");
    if (n > SN_WSD_MAX_BATCH)
        return sn__err(err, err_len, SN_ETOOBIG, "more than %d examples in "
                       "one call", SN_WSD_MAX_BATCH);
    if (n == 0)
        return 0;
    morph = sn__senses_morph(s);
    spans = calloc((size_t)n, sizeof *spans);
    vecs = calloc((size_t)n, sizeof *vecs);
    rows = calloc((size_t)n, sizeof *rows);
    which = calloc((size_t)n, sizeof *which);
    gloss_texts = calloc((size_t)n, sizeof *gloss_texts);
    if (!spans || !vecs || !rows || !which || !gloss_texts) {
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        const sn_wsd_example_t *e = &ex[i];
        rows[i] = (sn_sense_row_t){.lemma = e->lemma, .sense = e->sense,
                                   .gloss = e->gloss};
        if (!e->lemma) {
            rc = sn__err(err, err_len, SN_EARG, "example %d: no lemma", i);
            goto fail;
        }
        if (!e->example) {
            /* the gloss is the exemplar: "<lemma>: <gloss>" */
            char lf[SN_WSD_MAX_WORD], sub[256];
            size_t gl;
            if (!e->gloss) {
                rc = sn__err(err, err_len, SN_EARG, "example %d: neither an "
                             "example nor a gloss", i);
                goto fail;
            }
            if ((rc = sn_wsd_casefold(e->lemma, lf, sizeof lf, sub,
                                      sizeof sub)) < 0) {
                rc = sn__err(err, err_len, rc, "example %d: %s", i, sub);
                goto fail;
            }
            if ((gl = strlen(e->gloss)) > SN_WSD_MAX_GLOSS) {
                rc = sn__err(err, err_len, SN_ETOOBIG, "example %d: gloss "
                             "longer than %d bytes", i, SN_WSD_MAX_GLOSS);
                goto fail;
            }
            size_t tl = strlen(lf) + 2 + gl;
            if (!(gloss_texts[i] = malloc(tl + 1))) {
                rc = sn__err(err, err_len, -ENOMEM, "out of memory");
                goto fail;
            }
            snprintf(gloss_texts[i], tl + 1, "%s: %s", lf, e->gloss);
            spans[n_spans] = (sn_wsd_span_t){
                gloss_texts[i], tl, 0, (int32_t)sn__utf8_count(lf,
                                                               strlen(lf))};
            which[n_spans++] = i;
            continue;
        }
        if (e->example_len > SN_WSD_MAX_EXAMPLE) {
            rc = sn__err(err, err_len, SN_ETOOBIG, "example %d: longer than "
                         "%d bytes", i, SN_WSD_MAX_EXAMPLE);
            goto fail;
        }
        sn_wsd_span_t *sp = &spans[n_spans];
        *sp = (sn_wsd_span_t){e->example, e->example_len, e->start, e->end};
        if (e->start < 0) {
            char sub[256];
            rc = sn_wsd_find_word_ex(morph, e->example, e->example_len,
                                     e->lemma, &sp->start, &sp->end, sub,
                                     sizeof sub);
            if (rc < 0) {
                rc = sn__err(err, err_len, rc, "example %d (sense '%s'): %s",
                             i, e->sense ? e->sense : "", sub);
                goto fail;
            }
        }
        which[n_spans++] = i;
    }
    if (n_spans) {
        if ((rc = sn_wsd_embed(model, ctx, spans, n_spans, vecs, err,
                               err_len)) < 0) {
            n_spans = 0; /* nothing to free */
            goto fail;
        }
        hidden = vecs[0].hidden;
        dim = vecs[0].dim;
    } else {
        hidden = sn_model_hidden(model);
        dim = sn_model_dim(model);
    }
    for (int j = 0; j < n_spans; j++) {
        sn_sense_row_t *r = &rows[which[j]];
        r->example = spans[j].text;
        r->example_len = spans[j].len;
        r->start = spans[j].start;
        r->end = spans[j].end;
        r->word = vecs[j].word;
        r->sentence = vecs[j].sentence;
    }
    rc = sn_senses_put(s, sn_model_name(model), hidden, dim, rows, n, 0, err,
                       err_len);
fail:
    for (int j = 0; vecs && j < n_spans; j++)
        sn_wsd_vec_free(&vecs[j]);
    for (int i = 0; gloss_texts && i < n; i++)
        free(gloss_texts[i]);
    free(gloss_texts);
    free(which);
    free(rows);
    free(vecs);
    free(spans);
    return rc;
}
