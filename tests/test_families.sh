#!/bin/bash
# test_families.sh -- `sense add`, `sense search` and `sense which` through
# the real daemon with one model of every architecture family of
# ../shared/fixtures/hf-reference-2/ (BERT, XLM-R, RoBERTa, MPNet,
# DistilBERT + Dense, ModernBERT encoders; the T5 encoder + Dense; the Qwen3
# decoder with last-token pooling). Random weights cannot rank by meaning,
# so the checks use what any encoder must give: a document searched by its
# own text comes first, and a sentence that is one of a sense's examples
# is told to mean that sense (its word vector equals the example's).
#
# usage: test_families.sh BUILD_DIR FIXTURES_DIR
set -u
build=$1
fixtures=$2
tmp=$(mktemp -d /tmp/sense-families-XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    [ -f "$tmp/log" ] && sed 's/^/  log: /' "$tmp/log" >&2
    exit 1
}

printf 'The python swallowed the rabbit whole in the tall grass.\n' > "$tmp/a.txt"
printf 'Interest rates at the central bank rose again this spring.\n' > "$tmp/b.txt"
printf 'Snow fell on the mountain village all through the night.\n' > "$tmp/c.txt"

for model in tiny-bge-lowercase tiny-me5-precompiled tiny-roberta-bpe \
             tiny-mpnet tiny-distilbert-dense tiny-modernbert \
             tiny-st5-dense tiny-qwen3-lasttoken; do
    dir="$fixtures/hf-reference-2/$model/model"
    sock="$tmp/sock"
    db="$tmp/$model.db"
    "$build/sensed" --socket "$sock" --db "$db" --model "$dir" \
        --threads 1 > "$tmp/log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do
        [ -S "$sock" ] && break
        kill -0 "$pid" 2>/dev/null || fail "$model: sensed exited early"
        sleep 0.05
    done
    [ -S "$sock" ] || fail "$model: sensed did not listen"
    s=("$build/sense" --socket "$sock")

    out=$("${s[@]}" add "$tmp/a.txt" "$tmp/b.txt" "$tmp/c.txt" 2>&1) ||
        fail "$model: add: $out"
    echo "$out" | grep -q "added 3 documents" || fail "$model: add: $out"
    # the CLI searches with the model's query prompt (the decoder's is an
    # instruction): it must answer; then, with no prompt (a raw request),
    # a document's own text must find it first
    out=$("${s[@]}" search -k 3 "snake eating a rabbit" 2>/dev/null) ||
        fail "$model: search: $out"
    echo "$out" | grep -q "^ 3\. " || fail "$model: search -k 3: $out"
    for f in a b c; do
        out=$(python3 - "$sock" "$(cat "$tmp/$f.txt")" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall((json.dumps({"id": 1, "op": "search", "query": sys.argv[2],
                       "k": 1, "prompt": ""}) + "\n").encode())
buf = b""
while not buf.endswith(b"\n"):
    buf += s.recv(65536)
print(buf.decode().strip())
PY
) || fail "$model: raw search failed"
        echo "$out" | grep -q "\"$tmp/$f.txt\"" ||
            fail "$model: search for $f.txt's text: $out"
    done

    out=$("${s[@]}" senses add bank river "We sat on the bank of the river." \
          "The river bank was steep and muddy." 2>&1) ||
        fail "$model: senses add: $out"
    out=$("${s[@]}" senses add bank money "She put her money in the bank." \
          "The bank lent him the cash he needed." 2>&1) ||
        fail "$model: senses add: $out"
    out=$("${s[@]}" which bank "She put her money in the bank." 2>&1) ||
        fail "$model: which: $out"
    echo "$out" | head -1 | grep -q "^bank at chars 25-29: money" ||
        fail "$model: which (money): $out"
    out=$("${s[@]}" which bank "The river bank was steep and muddy." 2>&1) ||
        fail "$model: which: $out"
    echo "$out" | head -1 | grep -q "^bank at chars 10-14: river" ||
        fail "$model: which (river): $out"

    kill "$pid"
    wait "$pid" 2>/dev/null
    pid=
    echo "$model: add, search, which ok"
done
echo ok
