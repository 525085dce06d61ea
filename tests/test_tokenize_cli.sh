#!/usr/bin/env bash
# test_tokenize_cli.sh BUILD_DIR FIXTURES -- `sense tokenize` end to end.
#
#   1. --json --input jsonl over sentences-2.json gives, for each of the
#      eight hf-reference-2 models, the reference ids, tokens and offsets
#      (expected.jsonl; the references are for the stripped text, offsets
#      into the text as given);
#   2. it loads only the tokenizer: a folder whose architecture is unknown
#      (and has no weights) still tokenizes, where `sense embed` refuses;
#   3. bad input gets a clear error and exit status 1, texts before it are
#      still printed; usage errors exit 2.
set -euo pipefail
build=$1
fix=$2
sense="$build/sense"
tmp=$(mktemp -d /tmp/sense-tokcli-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# the sentences as JSON strings, one per line
python3 -c 'import json,sys
for s in json.load(open(sys.argv[1])): print(json.dumps(s))' \
    "$fix/sentences-2.json" > "$tmp/in.jsonl"

for m in tiny-me5-precompiled tiny-bge-lowercase tiny-mpnet \
         tiny-distilbert-dense tiny-roberta-bpe tiny-qwen3-lasttoken \
         tiny-st5-dense tiny-modernbert; do
    "$sense" tokenize --json --input jsonl --model "$fix/hf-reference-2/$m/model" \
        < "$tmp/in.jsonl" > "$tmp/$m.out" || fail "$m: exit $?"
    python3 - "$tmp/$m.out" "$fix/hf-reference-2/$m/expected.jsonl" "$m" <<'EOF'
import json, sys
got = [json.loads(l) for l in open(sys.argv[1])]
ref = [json.loads(l) for l in open(sys.argv[2])]
assert len(got) == len(ref), f"{len(got)} lines, reference {len(ref)}"
bad = 0
for g, r in zip(got, ref):
    for k in ("text", "ids", "tokens", "offsets"):
        if g[k] != r[k]:
            if bad < 3:
                print(f"{sys.argv[3]} line {r['i']}: {k}: {g[k]} != {r[k]}",
                      file=sys.stderr)
            bad += 1
            break
print(f"{sys.argv[3]}: {len(ref) - bad}/{len(ref)} match")
sys.exit(1 if bad else 0)
EOF
done

# a tokenizer of an architecture sense cannot run yet: tokenize works
d="$tmp/unknown-arch"
mkdir "$d"
cp "$fix/hf-reference-2/tiny-qwen3-lasttoken/model/tokenizer.json" "$d/"
echo '{"model_type": "no-such-arch", "architectures": ["NoSuchModel"]}' > "$d/config.json"
# (the same as the full folder, whose outputs part 1 checked against HF)
out=$("$sense" tokenize --json --model "$d" "Hello world")
want=$("$sense" tokenize --json \
       --model "$fix/hf-reference-2/tiny-qwen3-lasttoken/model" "Hello world")
[ -n "$out" ] && [ "$out" = "$want" ] || fail "unknown architecture: $out"
if "$sense" embed --model "$d" "Hello world" > /dev/null 2>&1; then
    fail "embed of an unknown architecture succeeded"
fi
# human output names the tokens
"$sense" tokenize --model "$d" "Hello world" | grep -q '\[5, 7) *Ġw$' ||
    fail "human output"

# bad input: the text before is printed, then a clear error, exit 1
set +e
printf 'good\n\xff\xfe bad\n' |
    "$sense" tokenize --json --model "$fix/hf-reference-2/tiny-mpnet/model" \
        > "$tmp/o" 2> "$tmp/e"
rc=$?
set -e
[ $rc = 1 ] || fail "invalid utf-8: exit $rc"
grep -q '"text":"good"' "$tmp/o" || fail "the good text before was lost"
grep -q "input 2: invalid utf-8 at byte 0" "$tmp/e" || fail "utf-8 message: $(cat "$tmp/e")"

set +e
echo '[1]' | "$sense" tokenize --input jsonl --model "$d" > /dev/null 2> "$tmp/e"
rc=$?
"$sense" tokenize --model "$tmp/nope" x > /dev/null 2> "$tmp/e2"
rc2=$?
"$sense" tokenize x > /dev/null 2>&1
rc3=$?
printf '{"model": {"type": "BPE", "vocab": {"a": 0}}}' > "$d/tokenizer.json"
"$sense" tokenize --model "$d" x > /dev/null 2> "$tmp/e4"
rc4=$?
set -e
[ $rc = 1 ] && grep -q 'stdin line 1: not a JSON string' "$tmp/e" || fail "jsonl: $rc $(cat "$tmp/e")"
[ $rc2 = 1 ] && grep -q "no tokenizer.json or vocab.txt" "$tmp/e2" || fail "missing folder: $rc2"
[ $rc3 = 2 ] || fail "no --model: exit $rc3"
[ $rc4 = 1 ] && grep -q "model.merges: missing" "$tmp/e4" || fail "no merges: $rc4 $(cat "$tmp/e4")"
"$sense" tokenize --help | grep -q -- '--max-tokens' || fail "--help"
echo "test_tokenize_cli: ok"
