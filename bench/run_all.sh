#!/usr/bin/env bash
# run_all.sh -- every benchmark of bench/README.md, one after another, each
# output kept in a folder: what the README's figures come from.
#
#   bash bench/run_all.sh [OUT_DIR] [--quick]
#
# Builds first (Release, ./build). OUT_DIR defaults to
# /tmp/sense-bench-<date>; --quick leaves out the 1M-vector search (which
# takes minutes to build its HNSW graph and ~5 GB of memory). Needs the
# default model (scripts/setup), node and npm (the TF.js and ONNX Runtime
# packages are installed into bench/node_modules on first use) and
# /usr/bin/python3 with torch for the ONNX export (apt-get install
# python3-torch). Run on a quiet machine: 2 cores are easily disturbed.
set -euo pipefail

cd "$(dirname "$0")/.."
out=${1:-/tmp/sense-bench-$(date +%Y%m%d-%H%M%S)}
quick=0
for a in "$@"; do [ "$a" = --quick ] && quick=1; done
[ "$out" = --quick ] && out=/tmp/sense-bench-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j2 >/dev/null

step() { # name command...
    local name=$1
    shift
    echo "== $name: $* ($(date +%T), load $(cut -d' ' -f1-3 /proc/loadavg))"
    "$@" >"$out/$name.txt" 2>&1 || echo "   FAILED, see $out/$name.txt"
}

{
    echo "sense benchmarks, $(date -u), commit $(git rev-parse --short HEAD)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) cores"
    echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)}"
} | tee "$out/machine.txt"

step encode build/bench_encode
step tfjs_total node bench/use_tfjs.js --c build/bench_use -n 2000 -b 16
step tfjs_grid node bench/use_tfjs.js --grid --c build/bench_use
step ort node bench/ort_bench.js
step socket_default build/bench_socket
step socket_minilm build/bench_socket --model build/minilm-ort --no-ingest
if [ $quick = 1 ]; then
    step search build/bench_socket --no-encode --no-ingest \
        --search-sizes 10000,100000
else
    step search build/bench_socket --no-encode --no-ingest \
        --search-sizes 10000,100000
    # the 1M table, one index kind per run (each builds its index)
    for kind in flat hnsw sq8 faiss; do
        step search_1m_$kind build/bench_socket --no-encode --no-ingest \
            --search-sizes 1000000 --search-kinds $kind --queries 500
    done
    step ingest_stages build/bench_ingest ../shared/ir/debian-dev/corpus.jsonl
    step ingest_socket bash bench/bench_ingest.sh build \
        ../shared/ir/debian-dev/corpus.jsonl 5000 1 2
fi
echo "done: $out"
