/*
 * fuzz_safetensors.c -- libFuzzer target for the safetensors header parser.
 *
 * The input is a whole file: sn__st_parse must either reject it (leaving an
 * empty header) or return a header whose invariants hold (checked here:
 * every tensor inside the data section, sized by its shape, sorted by name,
 * not overlapping). Every float tensor of an accepted input is then bound
 * with sn__st_get_f32 over the input as if it were the mapping, so the F32
 * views and F16/BF16 conversions are checked to stay inside it too.
 * Corpus: tests/fuzz/corpus/fuzz_safetensors/, from
 * tests/fuzz/make_safetensors_corpus.py.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "embed_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sn__st_header_t hdr;
    char err[256];

    if (sn__st_parse(data, size, "fuzz", &hdr, err, sizeof err) < 0) {
        if (hdr.tensors || hdr.n_tensors || !memchr(err, '\0', sizeof err))
            abort();
        return 0;
    }
    if (hdr.data_offset < 8 || hdr.data_offset > size)
        abort();
    for (int i = 0; i < hdr.n_tensors; i++) {
        const sn__st_tensor_t *t = &hdr.tensors[i];
        uint64_t count = 1, elem;
        for (int d = 0; d < t->n_dims; d++)
            count *= (uint64_t)t->shape[d];
        if (t->end < t->begin || t->end > size - hdr.data_offset)
            abort();
        elem = t->dtype == SN_DT_I64   ? 8
               : t->dtype == SN_DT_F32 ? 4
                                       : 2;
        if (count * elem != t->end - t->begin)
            abort();
        if (i && strcmp(hdr.tensors[i - 1].name, t->name) >= 0)
            abort();
        for (int j = 0; j < i; j++) { /* non-empty ranges are disjoint */
            const sn__st_tensor_t *u = &hdr.tensors[j];
            if (t->begin < t->end && u->begin < u->end &&
                t->begin < u->end && u->begin < t->end)
                abort();
        }
    }

    /* Bind every tensor over the input as if it were the mapped file: the
     * conversions must stay inside buf too. */
    {
        sn__st_file_t f = {.path = "fuzz",
                           .map = (void *)(uintptr_t)data, /* never written */
                           .map_len = size,
                           .hdr = hdr};
        volatile float sink = 0;
        for (int i = 0; i < f.hdr.n_tensors; i++) {
            const sn__st_tensor_t *t = &f.hdr.tensors[i];
            const float *p;
            if (sn__st_get_f32(&f, t->name, t->n_dims, t->shape, &p, err,
                               sizeof err) < 0) {
                if (t->dtype != SN_DT_I64)
                    abort();
                continue;
            }
            uint64_t n = (t->end - t->begin) / (t->dtype == SN_DT_F32 ? 4 : 2);
            for (uint64_t k = 0; k < n; k++)
                sink += p[k];
        }
        (void)sink;
        sn__st_check_unused(&f, NULL, err, sizeof err);
        sn__st_header_free(&f.hdr);
    }
    return 0;
}
