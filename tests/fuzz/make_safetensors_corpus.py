#!/usr/bin/env python3
"""Regenerate tests/fuzz/corpus/fuzz_safetensors/: a few tiny valid
safetensors files and broken variants of them. Seeds for the fuzzer and, via
ctest's fuzz_safetensors_corpus, a replay that must not crash.

usage: python3 tests/fuzz/make_safetensors_corpus.py [OUT_DIR]
"""
import json
import os
import struct
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "corpus", "fuzz_safetensors")
SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8}


def header(tensors, meta=None):
    """tensors: [(name, dtype, shape)], laid out back to back."""
    h, off = {}, 0
    if meta is not None:
        h["__metadata__"] = meta
    for name, dtype, shape in tensors:
        n = SIZES.get(dtype, 4)
        for d in shape:
            n *= d
        h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    return h, off


def pack(hdr_bytes, data, n_hdr=None, pad=True):
    if pad:
        hdr_bytes += b" " * (-(8 + len(hdr_bytes)) % 8)
    n = len(hdr_bytes) if n_hdr is None else n_hdr
    return struct.pack("<Q", n) + hdr_bytes + data


def valid(tensors, meta=None):
    h, n = header(tensors, meta)
    return pack(json.dumps(h, separators=(",", ":")).encode(),
                bytes((i * 37) & 0xff for i in range(n)))


def main():
    os.makedirs(OUT, exist_ok=True)
    one = valid([("w", "F32", [2, 2])])
    mixed = valid([("enc.weight", "F32", [2, 3]), ("enc.bias", "F16", [3]),
                   ("ln.weight", "BF16", [3])], meta={"format": "pt"})
    files = {
        "valid_one_f32": one,
        "valid_mixed_meta": mixed,
        "valid_i64_position_ids": valid([("embeddings.position_ids", "I64", [1, 4]),
                                         ("embeddings.w", "F32", [4])]),
        "valid_scalar_empty": valid([("s", "F32", []), ("e", "F16", [0, 3]),
                                     ("v", "BF16", [2])]),
        "bad_truncated_header": mixed[:40],
        "bad_truncated_data": mixed[:-5],
        "bad_header_len_zero": pack(b"{}", b"", n_hdr=0),
        "bad_header_len_huge": pack(b"{}", b"", n_hdr=1 << 40),
        "bad_json": pack(b'{"w":{"dtype":"F32","shape":[1],', b"\0" * 4),
        "bad_dtype": valid([("w", "F64", [2])]),
        "bad_size_mismatch": pack(json.dumps(
            {"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}}).encode(),
            b"\0" * 24),
        "bad_overlap": pack(json.dumps(
            {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
             "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}).encode(),
            b"\0" * 16),
        "bad_duplicate": pack(
            b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
            b'"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8),
        "bad_too_many_dims": valid([("w", "F32", [1] * 9)]),
        "bad_negative_dim": pack(json.dumps(
            {"w": {"dtype": "F32", "shape": [-1, -4], "data_offsets": [0, 16]}}).encode(),
            b"\0" * 16),
    }
    for name, data in sorted(files.items()):
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(data)
    print(f"wrote {len(files)} files to {OUT}")


if __name__ == "__main__":
    main()
