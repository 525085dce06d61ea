/*
 * mkrelease.c -- how tests/data/v2-release.db was made: a database written
 * by the store of the last release before the lexical index (main at
 * commit 555b362f, schema version 2), for test_hybrid's migration case.
 * Not built: compile it against that commit's libsense.a, run
 * `mkrelease v2-release.db`, then `sqlite3 v2-release.db 'PRAGMA
 * journal_mode = delete'` (one file, no -wal).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "sense/store.h"
static char err[512];
static void vec(float *v, int seed) { double s = 0; for (int i = 0; i < 8; i++) { v[i] = (float)sin(seed * 7.1 + i * 1.3); s += v[i] * v[i]; } for (int i = 0; i < 8; i++) v[i] /= sqrt(s); }
int main(int argc, char **argv)
{
    sn_store_t *st;
    if (sn_store_open(argv[1], &st, err, sizeof err)) { puts(err); return 1; }
    if (sn_store_collection(st, "notes", "m8", 8, SN_INDEX_AUTO, err, sizeof err)) { puts(err); return 1; }
    static const char *ids[] = {"river", "python", "korean-db", "long"};
    static const char *texts[] = {
        "We sat on the bank of the river and watched the boats.",
        "The python swallowed the rabbit whole.",
        "데이터베이스는 자료를 저장하는 프로그램입니다.",
        "First part about compilers. Second part about gardens and flowers."};
    static const char *metas[] = {"{\"lang\": \"en\"}", "{\"lang\": \"en\"}", "{\"lang\": \"ko\"}", "{\"lang\": \"en\", \"long\": true}"};
    float v[5][8];
    for (int i = 0; i < 5; i++) vec(v[i], i + 1);
    sn_chunk_in_t ch[5] = {{0, 54, v[0]}, {0, 38, v[1]}, {0, 25, v[2]}, {0, 28, v[3]}, {28, 66, v[4]}};
    sn_doc_in_t d[4] = {{ids[0], texts[0], strlen(texts[0]), metas[0], &ch[0], 1},
                        {ids[1], texts[1], strlen(texts[1]), metas[1], &ch[1], 1},
                        {ids[2], texts[2], strlen(texts[2]), metas[2], &ch[2], 1},
                        {ids[3], texts[3], strlen(texts[3]), metas[3], &ch[3], 2}};
    if (sn_store_add(st, "notes", "m8", d, 4, NULL, err, sizeof err)) { puts(err); return 1; }
    sn_store_close(st);
    return 0;
}
