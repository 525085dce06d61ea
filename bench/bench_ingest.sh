#!/usr/bin/env bash
# bench_ingest.sh -- documents through `sense add` into a fresh daemon with
# the default model: docs/s with one request in flight (encode and commit
# alternate) and with two (the daemon encodes batch N+1 while its storage
# thread commits batch N), in the same minutes, each on a new database.
#
# Usage: bench/bench_ingest.sh BUILD_DIR CORPUS.jsonl [N_DOCS] [IN_FLIGHT...]
# Defaults: all documents of the corpus; in flight 1 then 2.
set -euo pipefail
build=$1 corpus=$2 n=${3:-0}
shift $(( $# >= 3 ? 3 : $# ))
depths=("$@")
[ ${#depths[@]} -gt 0 ] || depths=(1 2)
dir=$(mktemp -d /tmp/sense-ingest-XXXXXX)
trap 'kill $pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
if [ "$n" -gt 0 ]; then head -n "$n" "$corpus" > "$dir/docs.jsonl"
else cp "$corpus" "$dir/docs.jsonl"; fi
n=$(wc -l < "$dir/docs.jsonl")
for depth in "${depths[@]}"; do
    rm -f "$dir"/db*
    "$build/sensed" --socket "$dir/s.sock" --db "$dir/db" --model default \
        --log-level warn 2> "$dir/sensed.log" &
    pid=$!
    for _ in $(seq 1 600); do [ -S "$dir/s.sock" ] && break; sleep 0.1; done
    t0=$(date +%s.%N)
    "$build/sense" add --socket "$dir/s.sock" --in-flight "$depth" \
        "$dir/docs.jsonl" > "$dir/out.txt"
    t1=$(date +%s.%N)
    awk -v n="$n" -v d="$depth" -v a="$t0" -v b="$t1" -v out="$(cat "$dir/out.txt")" \
        'BEGIN { printf "in flight %d: %d documents in %.1f s = %.1f docs/s (%s)\n", d, n, b - a, n / (b - a), out }'
    kill "$pid"; wait "$pid" 2>/dev/null || true
done
