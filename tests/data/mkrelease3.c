/*
 * mkrelease3.c -- how tests/data/v3-release.db was made: a database written
 * by the store of the last release before words were split in the lexical
 * index (main at commit 4accf92, schema version 3), for test_hybrid's
 * migration case. Not built: compile it against that commit's libsense.a,
 * run `mkrelease3 v3-release.db`, then `sqlite3 v3-release.db 'PRAGMA
 * journal_mode = delete'` (one file, no -wal).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "sense/store.h"
static char err[512];
static size_t chars(const char *s) { size_t n = 0; for (; *s; s++) n += ((unsigned char)*s & 0xc0) != 0x80; return n; }
static void vec(float *v, int seed) { double s = 0; for (int i = 0; i < 8; i++) { v[i] = (float)sin(seed * 5.3 + i * 0.7); s += v[i] * v[i]; } for (int i = 0; i < 8; i++) v[i] /= sqrt(s); }
int main(int argc, char **argv)
{
    sn_store_t *st;
    if (argc < 2 || sn_store_open(argv[1], &st, err, sizeof err)) { puts(err); return 1; }
    if (sn_store_collection(st, "notes", "m8", 8, SN_INDEX_AUTO, err, sizeof err)) { puts(err); return 1; }
    static const char *ids[] = {"cache", "logs", "korean"};
    static const char *texts[] = {
        "BigCache keeps many entries on the heap without slowing the collector.",
        "The logutils package makes logging a bit more modern.",
        "데이터베이스는 자료를 저장하는 프로그램입니다."};
    float v[3][8];
    for (int i = 0; i < 3; i++) vec(v[i], i + 1);
    sn_chunk_in_t ch[3];
    sn_doc_in_t d[3];
    for (int i = 0; i < 3; i++) {
        ch[i] = (sn_chunk_in_t){0, chars(texts[i]), v[i]};
        d[i] = (sn_doc_in_t){ids[i], texts[i], strlen(texts[i]), "{}", &ch[i], 1};
    }
    if (sn_store_add(st, "notes", "m8", d, 3, NULL, err, sizeof err)) { puts(err); return 1; }
    sn_store_close(st);
    return 0;
}
