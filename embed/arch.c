/*
 * arch.c -- the architecture table: config.json's model_type picks one
 * sn__arch_t (embed/nn.h), whose load, forward and free the rest of
 * libsense calls through sn__enc_t. Adding an architecture is one file
 * plus one line in `archs` below.
 *
 * sn__enc_forward checks every input before the architecture sees it: ids
 * in [0, vocab), each sequence at most max_len tokens, the call at most
 * SN_NN_MAX_TOKENS tokens; so an architecture's forward pass reads nothing
 * out of bounds whatever the input.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

static const sn__arch_t *const archs[] = {
    &sn__arch_bert, &sn__arch_mpnet, &sn__arch_distilbert, &sn__arch_t5,
    &sn__arch_qwen3, &sn__arch_modernbert,
};

const char *sn__enc_supported(void)
{
    static char buf[512];

    if (!buf[0]) {
        size_t n = 0;
        for (size_t a = 0; a < sizeof archs / sizeof *archs; a++)
            for (const char *const *t = archs[a]->model_types; *t; t++)
                n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s",
                                      n ? ", " : "", *t);
    }
    return buf;
}

/* ---- precision ------------------------------------------------------------
 * `auto` is decided by a rule recorded per architecture and CPU, not by a
 * calibration at load: a calibration would keep f32 and reduced copies of
 * every weight during load (twice the peak memory, two packings and two
 * forward passes of load time), and a few built-in sentences would say
 * less than the parity fixtures. The rule: each architecture's lowest
 * precision whose sentence vectors stayed within cosine 0.9999 of f32 on
 * every sentence of its fixtures (worst cosines on AMD Zen 5, bench/README.md
 * "reduced precision"):
 *   bert (BERT, RoBERTa, XLM-R)  int8 0.99992-0.99994  bf16 0.999994
 *   mpnet                        int8 0.99994          bf16 0.99999
 *   distilbert                   int8 0.99989 (no)     bf16 0.999992
 *   modernbert                   int8 0.99989 (no)     bf16 0.999992
 *   use-lite (the default)       int8 0.9983 (no)      bf16 0.99993
 *   qwen3                        bf16 0.99986 (no): f32
 *   t5                           bf16 0.99989 (no): f32
 * then the fastest the CPU has units for at or above it (int8 on VNNI is
 * faster than bf16 on AVX512_BF16, which is faster than f32:
 * bench/README.md). tests/test_precision.c checks the choice against the
 * fixtures on the CPU that runs the suite, so a kernel or CPU on which the
 * rule is wrong fails it. */
static const struct {
    const char *arch;
    int lowest; /* SN_GEMM_*: the lowest precision allowed */
} prec_rule[] = {
    {"bert", SN_GEMM_INT8},       {"mpnet", SN_GEMM_INT8},
    {"distilbert", SN_GEMM_BF16}, {"modernbert", SN_GEMM_BF16},
    {"use-lite", SN_GEMM_BF16},   {"qwen3", SN_GEMM_F32},
    {"t5", SN_GEMM_F32},
};

int sn__prec_resolve(int asked, const char *arch, char *why, size_t why_len)
{
    const int isa = sn__isa();
    int lowest = SN_GEMM_F32, prec;

    if (asked != SN_PREC_AUTO) {
        snprintf(why, why_len, "precision %s (asked; cpu %s; kernels %s%s)",
                 sn_precision_name((sn_precision_t)asked), sn__isa_name(isa),
                 sn__gemm_kernel_name(isa, asked),
                 sn__isa_has(isa, asked) ? "" : ": no units for it, slow");
        return asked;
    }
    for (size_t i = 0; i < sizeof prec_rule / sizeof *prec_rule; i++)
        if (!strcmp(prec_rule[i].arch, arch))
            lowest = prec_rule[i].lowest;
    prec = SN_GEMM_F32;
    if (lowest >= SN_GEMM_INT8 && sn__isa_has(isa, SN_GEMM_INT8))
        prec = SN_GEMM_INT8;
    else if (lowest >= SN_GEMM_BF16 && sn__isa_has(isa, SN_GEMM_BF16))
        prec = SN_GEMM_BF16;
    snprintf(why, why_len,
             "precision %s (auto: %s keeps cosine >= 0.9999 to f32 down to "
             "%s on the fixtures; cpu %s %s; kernels %s)",
             sn_precision_name((sn_precision_t)prec), arch,
             sn_precision_name((sn_precision_t)lowest), sn__isa_name(isa),
             prec == lowest           ? "has the units"
             : prec == SN_GEMM_F32    ? "has no bf16/int8 units"
                                      : "has no int8 units",
             sn__gemm_kernel_name(isa, prec));
    return prec;
}

/* ---- the GEMM backend ------------------------------------------------------
 * Around an architecture's load: the weights it packs are collected, then
 * given to oneDNN or kept on our kernels (SENSE_GEMM, embed/gemm_dnnl.c),
 * and the precision line says which, with the load-time figures. */
static int load_with_backend(const sn__arch_t *arch, const char *dir,
                             json_t *cfg, const char *path, sn__enc_t *e,
                             char *err, size_t err_len)
{
    const int backend = sn__gemm_backend();
    size_t used = strlen(e->why);
    int rc;

    if (backend < 0)
        return sn__err(err, err_len, SN_EARG,
                       "SENSE_GEMM: unknown backend '%s' (auto, ours, "
                       "onednn)",
                       getenv("SENSE_GEMM"));
    sn__gemm_collect_begin();
    rc = arch->load(dir, cfg, path, e, err, err_len);
    if (!rc) {
        if (used + 2 < sizeof e->why)
            used += (size_t)snprintf(e->why + used, sizeof e->why - used,
                                     "; ");
        if ((rc = sn__gemm_backend_pick(backend, e->prec, 0, e->why + used,
                                        sizeof e->why - used))) {
            arch->free(e->impl);
            rc = sn__err(err, err_len, rc, "cannot set up the gemm backend");
        }
    }
    sn__gemm_collect_end();
    return rc;
}

static const sn__arch_t *find_arch(const char *type)
{
    for (size_t a = 0; a < sizeof archs / sizeof *archs; a++)
        for (const char *const *t = archs[a]->model_types; *t; t++)
            if (!strcmp(*t, type))
                return archs[a];
    return NULL;
}

int sn__enc_load(const char *dir, int prec, sn__enc_t **out, char *err,
                 size_t err_len)
{
    char path[4096];
    char *buf = NULL;
    size_t len;
    json_error_t jerr;
    json_t *cfg = NULL;
    const char *type;
    sn__enc_t *e = NULL;
    int rc;

    *out = NULL;
    if (sn__path_join(path, sizeof path, dir, "config.json"))
        return sn__err(err, err_len, SN_ETOOBIG, "'%s': path too long", dir);
    if ((rc = sn__read_file(path, SN_NN_MAX_CONFIG, &buf, &len, err,
                            err_len)))
        return rc;
    cfg = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    free(buf);
    if (!cfg)
        return sn__err(err, err_len, SN_EJSON, "'%s': line %d column %d: %s",
                       path, jerr.line, jerr.column, jerr.text);
    if (!json_is_object(cfg)) {
        rc = sn__err(err, err_len, SN_EMODEL, "'%s': not a json object",
                     path);
        goto fail;
    }
    if ((rc = sn__cfg_str(cfg, "model_type", NULL, &type, path, err,
                          err_len)))
        goto fail;
    const sn__arch_t *arch = find_arch(type);
    if (!arch) {
        rc = sn__err(err, err_len, SN_EMODEL,
                     "'%s': unknown model_type '%s' (supported: %s)", path,
                     type, sn__enc_supported());
        goto fail;
    }
    if (!(e = calloc(1, sizeof *e))) {
        rc = sn__err(err, err_len, -ENOMEM, "out of memory");
        goto fail;
    }
    e->arch = arch;
    e->prec = sn__prec_resolve(prec, arch->name, e->why, sizeof e->why);
    if ((rc = load_with_backend(arch, dir, cfg, path, e, err, err_len)))
        goto fail;
    json_decref(cfg);
    *out = e;
    return 0;
fail:
    json_decref(cfg);
    free(e);
    return rc;
}

int sn__enc_load_use(const char *dir, int prec, sn__enc_t **out, char *err,
                     size_t err_len)
{
    sn__enc_t *e = calloc(1, sizeof *e);
    int rc;

    *out = NULL;
    if (!e)
        return sn__err(err, err_len, -ENOMEM, "out of memory");
    e->arch = &sn__arch_use;
    e->prec = sn__prec_resolve(prec, sn__arch_use.name, e->why,
                               sizeof e->why);
    if ((rc = load_with_backend(&sn__arch_use, dir, NULL, NULL, e, err,
                                err_len))) {
        free(e);
        return rc;
    }
    *out = e;
    return 0;
}

void sn__enc_free(sn__enc_t *e)
{
    if (!e)
        return;
    e->arch->free(e->impl);
    free(e);
}

void *sn__enc_ctx_new(const sn__enc_t *e)
{
    if (e->arch->ctx_new)
        return e->arch->ctx_new(e->impl);
    return sn__nn_new();
}

void sn__enc_ctx_free(const sn__enc_t *e, void *ctx)
{
    if (!e || !ctx)
        return;
    if (e->arch->ctx_free)
        e->arch->ctx_free(ctx);
    else
        sn__nn_free(ctx);
}

int sn__enc_check(const char *kind, int n_vocab, int max_len,
                  const int32_t *ids, const int *lens, int n_seq, char *err,
                  size_t err_len)
{
    long long total = 0;

    /* ids may be NULL when every sequence is empty (sn_model_embed of ""
     * alone, before its id buffer ever grew) */
    if (n_seq < 0 || (n_seq > 0 && !lens))
        return sn__err(err, err_len, SN_EARG, "%s: invalid arguments", kind);
    for (int s = 0; s < n_seq; s++) {
        if (lens[s] < 0)
            return sn__err(err, err_len, SN_EARG,
                           "%s: sequence %d has negative length %d", kind, s,
                           lens[s]);
        if (max_len > 0 && lens[s] > max_len)
            return sn__err(err, err_len, SN_ETOOBIG,
                           "%s: sequence %d has %d tokens, the model takes "
                           "at most %d",
                           kind, s, lens[s], max_len);
        total += lens[s];
        if (total > SN_NN_MAX_TOKENS)
            return sn__err(err, err_len, SN_ETOOBIG,
                           "%s: batch of more than %d tokens "
                           "(SN_NN_MAX_TOKENS); split it",
                           kind, SN_NN_MAX_TOKENS);
    }
    if (total > 0 && !ids)
        return sn__err(err, err_len, SN_EARG, "%s: invalid arguments", kind);
    for (long long t = 0; t < total; t++)
        if (ids[t] < 0 || ids[t] >= n_vocab)
            return sn__err(err, err_len, SN_EARG,
                           "%s: token id %d at position %lld outside the "
                           "vocabulary [0, %d)",
                           kind, (int)ids[t], t, n_vocab);
    return 0;
}

int sn__enc_forward(const sn__enc_t *e, void *ctx, const int32_t *ids,
                    const int *lens, int n_seq, float *tokens_out,
                    float *sent_out, char *err, size_t err_len)
{
    int rc;

    if (!ctx)
        return sn__err(err, err_len, SN_EARG, "%s: invalid arguments",
                       e->kind);
    if ((rc = sn__enc_check(e->kind, e->n_vocab, e->max_len, ids, lens,
                            n_seq, err, err_len)))
        return rc;
    if (!e->pools && n_seq > 0 && !tokens_out)
        return sn__err(err, err_len, SN_EARG, "%s: invalid arguments",
                       e->kind);
    if (e->pools && n_seq > 0 && !sent_out)
        return sn__err(err, err_len, SN_EARG, "%s: invalid arguments",
                       e->kind);
    rc = e->arch->forward(e->impl, ctx, ids, lens, n_seq, tokens_out,
                          sent_out, err, err_len);
    if (!rc && !e->arch->ctx_new && sn__nn_take_failed(ctx))
        rc = sn__err(err, err_len, -ENOMEM,
                     "%s: out of memory for the reduced-precision inputs",
                     e->kind);
    return rc;
}
