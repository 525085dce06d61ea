/*
 * replay.c -- runs a libFuzzer target over every file of a corpus folder,
 * without libFuzzer: how ctest replays the checked-in corpora in every build.
 * A crash or sanitizer report fails the test.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    DIR *d = opendir(argv[1]);
    if (!d) {
        fprintf(stderr, "replay: cannot open '%s'\n", argv[1]);
        return 1;
    }
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[1], de->d_name);
        FILE *fp = fopen(path, "rb");
        if (!fp)
            continue;
        fseek(fp, 0, SEEK_END);
        long len = ftell(fp);
        fseek(fp, 0, SEEK_SET);
        uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
        if (len > 0 && fread(buf, 1, (size_t)len, fp) != (size_t)len) {
            fprintf(stderr, "replay: short read '%s'\n", path);
            return 1;
        }
        fclose(fp);
        LLVMFuzzerTestOneInput(buf, len > 0 ? (size_t)len : 0);
        free(buf);
        n++;
    }
    closedir(d);
    if (n == 0) {
        fprintf(stderr, "replay: empty corpus '%s'\n", argv[1]);
        return 1;
    }
    printf("replayed %d inputs\n", n);
    return 0;
}
