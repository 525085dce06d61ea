/*
 * test_model_errors.c -- a model folder that is wrong in some way fails to
 * load with a message naming the file and what is wrong, and never crashes.
 * Each case starts from a good copy of a fixture model and breaks one thing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "sense/sense.h"

static char base[256];

static void sh(const char *fmt, const char *arg)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, fmt, arg, arg, arg);
    CHECK(system(cmd) == 0);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    CHECK(fp != NULL);
    fputs(text, fp);
    CHECK(fclose(fp) == 0);
}

/* A fresh good copy of tiny-bert-uncased in base/NAME. */
static const char *fresh(const char *name)
{
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", base, name);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cp -r '%s/hf-reference/tiny-bert-uncased/model' '%s'",
             SN_FIXTURES, dir);
    CHECK(system(cmd) == 0);
    return dir;
}

static void expect_fail(const char *dir, const char *what, const char *sub1,
                        const char *sub2)
{
    sn_model_t *m = NULL;
    char err[512] = "";
    int rc = sn_model_load(dir, &m, err, sizeof err);
    if (rc >= 0 || m != NULL || !strstr(err, sub1) ||
        (sub2 && !strstr(err, sub2))) {
        fprintf(stderr, "%s: rc=%d err='%s', wanted '%s'%s%s\n", what, rc,
                err, sub1, sub2 ? " and " : "", sub2 ? sub2 : "");
        exit(1);
    }
    printf("%-28s -> %s: %s\n", what, sn_err_name(rc), err);
}

int main(void)
{
    snprintf(base, sizeof base, "/tmp/sense-modelerr-XXXXXX");
    CHECK(mkdtemp(base) != NULL);
    const char *d;

    /* the good copy loads */
    d = fresh("good");
    sn_model_t *m = NULL;
    char err[512] = "";
    CHECK_OK(sn_model_load(d, &m, err, sizeof err), err);
    sn_model_free(m);

    expect_fail("/nonexistent/model", "missing folder", "/nonexistent/model",
                NULL);

    d = fresh("no-weights");
    sh("rm '%s/model.safetensors'", d);
    expect_fail(d, "missing model.safetensors", "model.safetensors", NULL);

    d = fresh("no-config");
    sh("rm '%s/config.json'", d);
    expect_fail(d, "missing config.json", "config.json", NULL);

    d = fresh("bad-type");
    sh("sed -i 's/\"model_type\": \"bert\"/\"model_type\": \"gpt2\"/' "
       "'%s/config.json'", d);
    expect_fail(d, "unknown model type", "config.json", "gpt2");

    d = fresh("bad-config-json");
    write_file(d, "config.json", "{\"model_type\": \"bert\", ");
    expect_fail(d, "malformed config.json", "config.json", NULL);

    d = fresh("bad-modules");
    write_file(d, "modules.json", "[{\"idx\": 0,, }]");
    expect_fail(d, "malformed modules.json", "modules.json", "malformed");

    d = fresh("other-module");
    write_file(d, "modules.json",
               "[{\"idx\": 0, \"name\": \"0\", \"path\": \"\", \"type\": "
               "\"sentence_transformers.models.Transformer\"}, "
               "{\"idx\": 1, \"name\": \"1\", \"path\": \"2_WLP\", "
               "\"type\": \"sentence_transformers.models."
               "WeightedLayerPooling\"}]");
    expect_fail(d, "unsupported module", "modules.json",
                "WeightedLayerPooling");

    d = fresh("dense-no-folder");
    write_file(d, "modules.json",
               "[{\"idx\": 0, \"name\": \"0\", \"path\": \"\", \"type\": "
               "\"sentence_transformers.models.Transformer\"}, "
               "{\"idx\": 1, \"name\": \"1\", \"path\": \"2_Dense\", "
               "\"type\": \"sentence_transformers.models.Dense\"}]");
    expect_fail(d, "Dense without its folder", "2_Dense/config.json",
                "no such file");

    d = fresh("dense-bad-width");
    write_file(d, "modules.json",
               "[{\"idx\": 0, \"name\": \"0\", \"path\": \"\", \"type\": "
               "\"sentence_transformers.models.Transformer\"}, "
               "{\"idx\": 1, \"name\": \"1\", \"path\": \"2_Dense\", "
               "\"type\": \"sentence_transformers.models.Dense\"}]");
    sh("mkdir -p '%s/2_Dense'", d);
    write_file(d, "2_Dense/config.json",
               "{\"in_features\": 7, \"out_features\": 3, \"bias\": true, "
               "\"activation_function\": "
               "\"torch.nn.modules.activation.Tanh\"}");
    expect_fail(d, "Dense of the wrong width", "2_Dense/config.json",
                "in_features 7");

    /* a module path outside the model folder: "..", absolute, or a link
     * (a config elsewhere that would otherwise load fine) */
    {
        static const char *const paths[] = {"../outside", "/tmp", "link",
                                            "1_Pooling/../../outside"};
        for (int i = 0; i < 4; i++) {
            char mods[512];
            d = fresh(i == 0 ? "mod-dotdot" : i == 1 ? "mod-abs"
                      : i == 2 ? "mod-link" : "mod-deep");
            sh("mkdir -p '%s/../outside' && cp '%s/1_Pooling/config.json' "
               "'%s/../outside/'", d);
            if (i == 2)
                sh("ln -s ../outside '%s/link'", d);
            snprintf(mods, sizeof mods,
                     "[{\"idx\": 0, \"name\": \"0\", \"path\": \"\", "
                     "\"type\": \"sentence_transformers.models.Transformer\"}, "
                     "{\"idx\": 1, \"name\": \"1\", \"path\": \"%s\", "
                     "\"type\": \"sentence_transformers.models.Pooling\"}]",
                     paths[i]);
            write_file(d, "modules.json", mods);
            expect_fail(d, "module path outside", "modules.json",
                        "outside the model folder");
        }
    }

    d = fresh("bad-pooling");
    write_file(d, "1_Pooling/config.json",
               "{\"embedding_dimension\": 64, \"pooling_mode\": \"median\"}");
    expect_fail(d, "unknown pooling mode", "1_Pooling/config.json", "median");

    d = fresh("two-poolings");
    write_file(d, "1_Pooling/config.json",
               "{\"word_embedding_dimension\": 64, "
               "\"pooling_mode_cls_token\": true, "
               "\"pooling_mode_mean_tokens\": true}");
    expect_fail(d, "two pooling modes", "1_Pooling/config.json", "exactly one");

    d = fresh("pool-dim");
    write_file(d, "1_Pooling/config.json",
               "{\"embedding_dimension\": 65, \"pooling_mode\": \"mean\"}");
    expect_fail(d, "pooling dimension mismatch", "1_Pooling/config.json",
                "65");

    d = fresh("lower-case");
    write_file(d, "sentence_bert_config.json",
               "{\"max_seq_length\": 32, \"do_lower_case\": \"yes\"}");
    expect_fail(d, "do_lower_case not a boolean", "sentence_bert_config.json",
                "do_lower_case: expected a boolean");

    d = fresh("no-tokenizer");
    sh("rm '%s/tokenizer.json' '%s/vocab.txt'", d);
    expect_fail(d, "missing tokenizer", "vocab.txt", NULL);

    d = fresh("truncated-weights");
    sh("truncate -s 5000 '%s/model.safetensors'", d);
    expect_fail(d, "truncated safetensors", "model.safetensors", NULL);

    d = fresh("bad-tokenizer-json");
    write_file(d, "tokenizer.json", "{\"model\": {\"type\": \"WordLevel\"}}");
    expect_fail(d, "unsupported tokenizer model", "tokenizer.json",
                "WordLevel");

    /* model names: repository ids, and where a pulled one is looked for */
    static const char *const ids_ok[] = {"org/name", "name", "a.b-c_d/X.9"};
    static const char *const ids_bad[] = {"", "../x", "/abs", "a/b/c",
                                          ".hidden/x", "a/..", "a//b",
                                          "org/", "-x/y", "a b/c"};
    for (size_t i = 0; i < sizeof ids_ok / sizeof *ids_ok; i++)
        CHECK(sn_model_repo_id_valid(ids_ok[i]));
    for (size_t i = 0; i < sizeof ids_bad / sizeof *ids_bad; i++)
        if (sn_model_repo_id_valid(ids_bad[i])) {
            fprintf(stderr, "'%s' taken for a repository id\n", ids_bad[i]);
            exit(1);
        }
    {
        char path[4096];
        setenv("SENSE_DATA", base, 1);
        CHECK_OK(sn_model_pulled_path("org/name", path, sizeof path), "");
        char want[600];
        snprintf(want, sizeof want, "%s/models/org/name", base);
        CHECK_STREQ(path, want);
        CHECK(sn_model_pulled_path("../etc", path, sizeof path) == SN_EARG);
        expect_fail("org/never-pulled", "a name not pulled", "sense pull "
                    "org/never-pulled", NULL);
        /* a pulled model is found by name */
        sh("mkdir -p '%s/models/org' && cp -r '%s/good' "
           "'%s/models/org/name'", base);
        m = NULL;
        CHECK_OK(sn_model_load("org/name", &m, err, sizeof err), err);
        sn_model_free(m);
        unsetenv("SENSE_DATA");
    }

    sh("rm -rf '%s'", base);
    printf("model errors: ok\n");
    return 0;
}
