#!/usr/bin/env bash
# test_pull.sh BUILD_DIR FIXTURES -- `sense pull` against a stand-in hub
# (tests/hub_server.py) on 127.0.0.1: nothing here reaches the internet.
#
#   - a good repository (its weights redirected to a "CDN"): the pulled
#     folder is byte-identical to the served one, only the files sense reads
#     were asked for, and the model loads by name (sense embed and sensed)
#     with the same vectors as the folder; again: up to date; --force;
#   - the eight hf-reference-2 layouts, byte-identical;
#   - a download whose connection drops mid-file: resumed with Range;
#   - a server that stalls: a clean error after --timeout, nothing where a
#     load would find it, and the next run resumes the partial file;
#   - a wrong sha256: refused, nothing left behind;
#   - 404, 401 (and the same with HF_TOKEN), no server at all, a repository
#     with only pytorch_model.bin, bad usage.
set -u
build=$1
fixtures=$2
sense="$build/sense"
sensed="$build/sensed"
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d /tmp/sense-pull-XXXXXX)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# a repository holding only pytorch weights
mkdir -p "$tmp/pt-only"
cp "$fixtures/hf-reference/tiny-bert-uncased/model/config.json" "$tmp/pt-only/"
echo "pickle" > "$tmp/pt-only/pytorch_model.bin"

bert="$fixtures/hf-reference/tiny-bert-uncased/model"
repos=(test/good="$bert" test/drop="$bert:drop" test/stall="$bert:stall"
       test/badsha="$bert:badsha" test/private="$bert:private"
       test/pt-only="$tmp/pt-only")
for d in "$fixtures"/hf-reference-2/*/model; do
    name=$(basename "$(dirname "$d")")
    repos+=("ref2/$name=$d")
done
python3 "$here/hub_server.py" "$tmp/port" "$tmp/hub.log" "${repos[@]}" \
    2>"$tmp/server.err" &
server_pid=$!
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || fail "the hub stand-in did not start: $(cat "$tmp/server.err")"
export HF_ENDPOINT="http://127.0.0.1:$(cat "$tmp/port")"
export SENSE_DATA="$tmp/data"
unset HF_TOKEN XDG_DATA_HOME
models="$SENSE_DATA/models"

# run_pull EXPECTED_RC ARGS...: stdout in $tmp/out, stderr in $tmp/err
run_pull() {
    local want=$1
    shift
    "$sense" pull "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    local rc=$?
    [ "$rc" = "$want" ] ||
        fail "sense pull $*: exit $rc, wanted $want: $(cat "$tmp/out" "$tmp/err")"
}
err_has() { grep -qF -- "$1" "$tmp/err" || fail "stderr lacks '$1': $(cat "$tmp/err")"; }
same_tree() { # pulled folder, source folder
    diff -r -x .sense-pull.json "$1" "$2" >"$tmp/diff" 2>&1 ||
        fail "'$1' differs from '$2': $(head -5 "$tmp/diff")"
}

# ---- a good repository ----------------------------------------------------------
run_pull 0 test/good
grep -q "pulled 'test/good'" "$tmp/out" || fail "no summary: $(cat "$tmp/out")"
[ -s "$tmp/err" ] && fail "output on stderr without a terminal: $(cat "$tmp/err")"
same_tree "$models/test/good" "$bert"
grep -q "^GET /cdn/test/good/model.safetensors" "$tmp/hub.log" ||
    fail "the weights' redirect was not followed"
grep -q UNWANTED "$tmp/hub.log" && fail "asked for files sense does not read: $(grep UNWANTED "$tmp/hub.log")"
[ -z "$(find "$SENSE_DATA" -name '*.part')" ] || fail "a .part file was left"
ok "good repository: same files, weights through the redirect, nothing unwanted"

# loads by name, with the folder's vectors
text="The bat flew out of the cave."
"$sense" embed --model test/good --json "$text" >"$tmp/by-name" 2>"$tmp/err" ||
    fail "embed --model test/good: $(cat "$tmp/err")"
"$sense" embed --model "$bert" --json "$text" >"$tmp/by-folder" ||
    fail "embed --model folder"
cmp -s "$tmp/by-name" "$tmp/by-folder" || fail "the pulled model embeds differently"
grep -q '"embedding":\[' "$tmp/by-name" || fail "no embedding: $(cat "$tmp/by-name")"
"$sensed" --model test/good --check >"$tmp/check" 2>&1 ||
    fail "sensed --model test/good --check: $(cat "$tmp/check")"
ok "--model test/good loads the pulled model (sense embed: same vectors as the folder; sensed --check)"

run_pull 0 test/good
grep -q "up to date" "$tmp/out" || fail "second pull: $(cat "$tmp/out")"
n_before=$(grep -c "^GET /cdn/test/good/" "$tmp/hub.log")
run_pull 0 --force test/good
n_after=$(grep -c "^GET /cdn/test/good/" "$tmp/hub.log")
[ "$n_after" -gt "$n_before" ] || fail "--force did not download again"
same_tree "$models/test/good" "$bert"
ok "up to date on a second pull; --force replaces it in place"

# ---- every layout of hf-reference-2 ----------------------------------------------
# and each loads by name exactly as its folder does: the same vectors
# where the folder loads, the same error where its architecture is not
# supported yet
n_loaded=0
for d in "$fixtures"/hf-reference-2/*/model; do
    name=$(basename "$(dirname "$d")")
    run_pull 0 "ref2/$name"
    same_tree "$models/ref2/$name" "$d"
    if "$sense" embed --model "$d" --json "$text" >"$tmp/by-folder" 2>"$tmp/err-folder"; then
        "$sense" embed --model "ref2/$name" --json "$text" >"$tmp/by-name" 2>"$tmp/err" ||
            fail "ref2/$name: loads as a folder, not by name: $(cat "$tmp/err")"
        cmp -s "$tmp/by-name" "$tmp/by-folder" || fail "ref2/$name embeds differently by name"
        n_loaded=$((n_loaded + 1))
    else
        "$sense" embed --model "ref2/$name" --json "$text" >/dev/null 2>"$tmp/err" &&
            fail "ref2/$name: loads by name but not as a folder"
        # the message after the last quoted path (which differs)
        want=$(sed "s/^.*': //" "$tmp/err-folder")
        err_has "$want"
    fi
done
[ "$n_loaded" -ge 3 ] || fail "only $n_loaded hf-reference-2 models load"
ok "the eight hf-reference-2 repositories pulled byte-identical; $n_loaded load by name with their folder's vectors, the others fail alike"

# ---- a dropped connection, resumed --------------------------------------------------
run_pull 0 test/drop
grep -Eq "^GET /cdn/test/drop/model.safetensors range=bytes=[1-9][0-9]*-" "$tmp/hub.log" ||
    fail "no resumed (Range) request after the drop"
same_tree "$models/test/drop" "$bert"
ok "a connection dropped mid-file: resumed with Range, same bytes"

# ---- a stall: clean error, nothing loadable; the next run resumes -------------------
start=$(date +%s)
run_pull 1 --timeout 2 test/stall
took=$(( $(date +%s) - start ))
err_has "stalled"
err_has "run the same command again"
[ "$took" -le 20 ] || fail "the stall took $took s to notice"
[ -e "$models/test/stall" ] && fail "a stalled pull left a model where loads look"
"$sense" embed --model test/stall hi >/dev/null 2>"$tmp/err" && fail "a stalled model loads"
err_has "sense pull test/stall"
part=$(find "$models/.pull" -name 'model.safetensors.part')
[ -n "$part" ] && [ -s "$part" ] || fail "the partial download was not kept"
run_pull 0 test/stall
grep -Eq "^GET /cdn/test/stall/model.safetensors range=bytes=[1-9][0-9]*-" "$tmp/hub.log" ||
    fail "the second run did not resume the partial file"
same_tree "$models/test/stall" "$bert"
ok "a stall: clean error after ${took} s, nothing loadable, then resumed from the partial file"

# ---- a wrong sha256: refused, nothing left ------------------------------------------
run_pull 1 test/badsha
err_has "sha256"
err_has "refused"
[ -e "$models/test/badsha" ] && fail "a corrupt model was installed"
[ -z "$(find "$SENSE_DATA" -path '*badsha*')" ] ||
    fail "a corrupt download left files: $(find "$SENSE_DATA" -path '*badsha*')"
ok "a sha256 mismatch: refused, nothing left behind"

# ---- errors ---------------------------------------------------------------------------
run_pull 1 test/nope
err_has "no repository 'test/nope'"
err_has "404"
run_pull 1 test/private
err_has "401"
err_has "HF_TOKEN"
[ -e "$models/test/private" ] && fail "401 but something was installed"
HF_TOKEN=sekrit run_pull 0 test/private
grep -q "auth=yes" "$tmp/hub.log" || fail "HF_TOKEN was not sent"
same_tree "$models/test/private" "$bert"
HF_ENDPOINT="http://127.0.0.1:1" run_pull 1 test/good
err_has "cannot reach"
run_pull 1 test/pt-only
err_has "no model.safetensors"
err_has "pytorch_model.bin"
[ -e "$models/test/pt-only" ] && fail "a pytorch-only repository was installed"
run_pull 2
run_pull 2 ../etc
run_pull 2 --timeout 0 test/good
"$sense" pull --help | grep -q "HF_ENDPOINT" || fail "pull --help"
"$sense" --help | grep -q "pull" || fail "sense --help does not list pull"
ok "404, 401 (and with HF_TOKEN), no server, pytorch-only, usage"

echo "pull: ok"
