#!/usr/bin/env bash
# http_api.sh BUILD FIXTURES -- sensed --http with curl: every endpoint's
# answers and errors (OpenAI, TEI, REST documents and search, /health,
# /metrics), API keys (401), CORS, limits (413, 431), bad JSON (400), 64
# concurrent clients getting the socket's vectors, refusing a non-loopback
# address without a key; then tests/http/raw.mjs for what needs raw
# sockets (pipelining, chunked, 100-continue, a slow client, idle timeout).
source "$(dirname "$0")/http/lib.sh"

KEY=k3y-for-http-api
echo "$KEY" >"$TMP/key"
chmod 600 "$TMP/key"
A="Authorization: Bearer $KEY"
J="Content-Type: application/json"
n_checks=0

# jcheck FILE 'EXPR': EXPR (JavaScript; j is the parsed file, s the socket's
# last reply) must be true. Checks are collected (with copies of both
# files) and run by jflush in one node process: node starts slowly.
mkdir -p "$TMP/chk"
jcheck() {
    n_checks=$((n_checks + 1))
    cp "$1" "$TMP/chk/$n_checks.out"
    if [ -f "$TMP/sock" ]; then cp "$TMP/sock" "$TMP/chk/$n_checks.sock"; fi
    printf '%s' "$2" >"$TMP/chk/$n_checks.expr"
}
jflush() {
    node -e '
        const fs = require("fs"), dir = process.argv[1];
        const f32 = x => Math.fround(x);
        const same = (a, b) => a.length === b.length &&
            a.every((x, i) => f32(x) === f32(b[i]));
        const b64 = t => Array.from(new Float32Array(
            Uint8Array.from(Buffer.from(t, "base64")).buffer));
        const load = f => fs.existsSync(f) ?
            JSON.parse(fs.readFileSync(f, "utf8")) : null;
        for (const e of fs.readdirSync(dir).filter(f => f.endsWith(".expr"))
                          .sort((a, b) => parseInt(a) - parseInt(b))) {
            const n = parseInt(e), expr = fs.readFileSync(`${dir}/${e}`, "utf8");
            const j = load(`${dir}/${n}.out`), s = load(`${dir}/${n}.sock`);
            let ok = false;
            try { ok = eval(expr); } catch (x) { console.error(x.message); }
            if (!ok) {
                console.error(`check ${n} failed: ${expr}\ngot: ` +
                              JSON.stringify(j).slice(0, 600));
                process.exit(1);
            }
        }' "$TMP/chk" || fail "a check above"
    rm -f "$TMP/chk"/*
}

# req STATUS CURL_ARGS...: the body goes to $TMP/out, headers to $TMP/hdr
req() {
    local want=$1 got
    shift
    got=$(curl -s -o "$TMP/out" -D "$TMP/hdr" -w '%{http_code}' "$@") || true
    [ "$got" = "$want" ] ||
        fail "curl $*: status $got, expected $want: $(head -c 400 "$TMP/out")"
    n_checks=$((n_checks + 1))
}

# sockcall JSON: the socket's reply to one request line, in $TMP/sock
sockcall() {
    echo "$1" | node "$HERE/sock.mjs" "$TMP/s.sock" >"$TMP/sock"
}

start_sensed --api-key-file "$TMP/key" --max-line 1M --http-idle-timeout 1 \
    --cors https://app.example
sockcall '{"op":"stats"}'
MODEL_ID=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).model_id)' "$TMP/sock")

# ---- health, keys, models --------------------------------------------------------
req 200 "$BASE/health"
jcheck "$TMP/out" 'j.status === "ok"'
req 401 "$BASE/v1/models"
jcheck "$TMP/out" 'j.error.code === "invalid_api_key" && j.error.type === "invalid_request_error"'
grep -qi '^WWW-Authenticate: Bearer' "$TMP/hdr" || fail "401 without WWW-Authenticate"
req 401 -H "Authorization: Bearer wrong" "$BASE/v1/models"
req 401 -H "Authorization: Bearer ${KEY}x" "$BASE/v1/models"
req 401 -H "Authorization: Basic $KEY" "$BASE/v1/models"
req 401 "$BASE/v1/collections/notes/documents/a"
jcheck "$TMP/out" 'j.error.code === "invalid_api_key"'
req 401 "$BASE/no/such/path"
req 401 "$BASE/metrics"
req 200 -H "$A" "$BASE/v1/models"
jcheck "$TMP/out" "j.object === 'list' && j.data.length === 1 && j.data[0].id === '$MODEL_ID' && j.data[0].object === 'model'"
req 200 -H "$A" "$BASE/v1/models/$(node -e 'console.log(encodeURIComponent(process.argv[1]))' "$MODEL_ID")"
req 404 -H "$A" "$BASE/v1/models/gpt-4"
req 404 -H "$A" "$BASE/no/such/path"
req 405 -H "$A" -X DELETE "$BASE/v1/embeddings"
grep -qi '^Allow: POST' "$TMP/hdr" || fail "405 without Allow"

# ---- OpenAI embeddings: the socket's vectors ---------------------------------------
sockcall '{"op":"embed","texts":["hello world","the bank of the river"]}'
body="{\"model\":\"$MODEL_ID\",\"input\":[\"hello world\",\"the bank of the river\"]}"
req 200 -H "$A" -H "$J" -d "$body" "$BASE/v1/embeddings"
jcheck "$TMP/out" 'j.object === "list" && j.data.length === 2 && j.data.every((d, i) => d.object === "embedding" && d.index === i && same(d.embedding, s.embeddings[i]))'
jcheck "$TMP/out" 'j.usage.prompt_tokens === s.n_tokens[0] + s.n_tokens[1] && j.usage.total_tokens === j.usage.prompt_tokens && j.model.length > 0'
req 200 -H "$A" -d "{\"model\":\"$MODEL_ID\",\"input\":\"hello world\",\"encoding_format\":\"base64\"}" "$BASE/v1/embeddings"
jcheck "$TMP/out" 'j.data.length === 1 && same(b64(j.data[0].embedding), s.embeddings[0])'
sockcall '{"op":"embed","texts":["hello world"],"dimensions":8}'
req 200 -H "$A" -d "{\"model\":\"$MODEL_ID\",\"input\":\"hello world\",\"dimensions\":8}" "$BASE/v1/embeddings"
jcheck "$TMP/out" 'j.data[0].embedding.length === 8 && same(j.data[0].embedding, s.embeddings[0])'
req 404 -H "$A" -d '{"model":"text-embedding-3-small","input":"x"}' "$BASE/v1/embeddings"
jcheck "$TMP/out" 'j.error.code === "model_not_found" && j.error.type === "invalid_request_error"'
req 400 -H "$A" -d "{\"model\":\"$MODEL_ID\",\"input\":[1,2,3]}" "$BASE/v1/embeddings"
jcheck "$TMP/out" 'typeof j.error.message === "string" && j.error.type === "invalid_request_error"'
req 400 -H "$A" -d "{\"model\":\"$MODEL_ID\"}" "$BASE/v1/embeddings"
req 400 -H "$A" -d "{\"model\":\"$MODEL_ID\",\"input\":\"x\",\"encoding_format\":\"int8\"}" "$BASE/v1/embeddings"
req 400 -H "$A" -d "{\"model\":\"$MODEL_ID\",\"input\":\"x\",\"dimensions\":100000}" "$BASE/v1/embeddings"
req 400 -H "$A" -d '{"input": "x", "model": ' "$BASE/v1/embeddings"
jcheck "$TMP/out" 'j.error.code === "bad_json"'
req 400 -H "$A" --data-binary $'{"input":"\xff","model":"m"}' "$BASE/v1/embeddings"
jcheck "$TMP/out" 'j.error.code === "bad_utf8"'
req 400 -H "$A" -d '[1,2]' "$BASE/v1/embeddings"

# ---- TEI -------------------------------------------------------------------------------
sockcall '{"op":"embed","texts":["hello world"],"tokens":true}'
req 200 -H "$A" -d '{"inputs":"hello world","normalize":false}' "$BASE/embed"
jcheck "$TMP/out" 'j.length === 1 && same(j[0], s.embeddings[0])'
req 200 -H "$A" -d '{"inputs":["hello world"]}' "$BASE/embed"
jcheck "$TMP/out" 'Math.abs(Math.hypot(...j[0]) - 1) < 1e-5 && j[0].length === s.dim'
req 200 -H "$A" -d '{"inputs":"hello world"}' "$BASE/embed_all"
jcheck "$TMP/out" 'j.length === 1 && j[0].length === s.tokens[0].length && j[0].every((v, t) => same(v, s.tokens[0][t].embedding))'
long=$(printf 'word %.0s' $(seq 60))
req 413 -H "$A" -d "{\"inputs\":\"$long\"}" "$BASE/embed"
jcheck "$TMP/out" 'j.error_type === "Validation" && /tokens/.test(j.error)'
req 200 -H "$A" -d "{\"inputs\":\"$long\",\"truncate\":true}" "$BASE/embed"
req 422 -H "$A" -d '{"inputs":[]}' "$BASE/embed"
req 400 -H "$A" -d '{"inputs":' "$BASE/embed"
jcheck "$TMP/out" 'j.error_type === "Validation"'

# ---- documents, search, senses, stats ----------------------------------------------------
C="$BASE/v1/collections/notes"
req 200 -H "$A" -d '{"docs":[{"id":"a","text":"The python swallowed the rabbit whole.","meta":{"kind":"animal"}},{"id":"b","text":"Python is a programming language.","meta":{"kind":"code"}}]}' "$C/documents"
jcheck "$TMP/out" 'j.ids.join() === "a,b" && j.chunks.join() === "1,1"'
req 200 -H "$A" -d '{"text":"Rivers flow into the sea.","meta":{"kind":"place"}}' "$C/documents"
jcheck "$TMP/out" 'j.ids.length === 1 && j.ids[0].length > 0'
req 200 -H "$A" -X PUT -d '{"text":"A path/with a slash.","meta":{"kind":"path"}}' "$C/documents/dir%2Ffile.txt"
req 200 -H "$A" "$C/documents/dir%2Ffile.txt"
jcheck "$TMP/out" 'j.id === "dir/file.txt" && j.text === "A path/with a slash." && j.meta.kind === "path" && j.chunks === 1'
req 404 -H "$A" "$C/documents/nope"
jcheck "$TMP/out" 'j.error.code === "not_found"'
req 200 -H "$A" -d '{"ids":["a","nope","b"]}' "$C/get"
jcheck "$TMP/out" 'j.docs.map(d => d.id).join() === "a,b"'
req 200 -H "$A" -d '{"query":"snake eating a rabbit","k":2}' "$C/search"
sockcall '{"op":"search","collection":"notes","query":"snake eating a rabbit","k":2}'
jcheck "$TMP/out" 'JSON.stringify(j.results) === JSON.stringify(s.results) && j.results.length === 2'
# the search modes of the socket's search (issue 12) pass through as they are
for m in lexical vector hybrid; do
    for g in document chunk; do
        req 200 -H "$A" -d "{\"query\":\"python rabbit\",\"k\":3,\"mode\":\"$m\",\"group\":\"$g\"}" "$C/search"
        sockcall "{\"op\":\"search\",\"collection\":\"notes\",\"query\":\"python rabbit\",\"k\":3,\"mode\":\"$m\",\"group\":\"$g\"}"
        jcheck "$TMP/out" "JSON.stringify(j) === JSON.stringify(Object.fromEntries(Object.entries(s).filter(([k]) => k !== 'id' && k !== 'ok'))) && j.results.length > 0"
    done
done
req 200 -H "$A" -d '{"query":"python","mode":"lexical","k":5}' "$C/search"
jcheck "$TMP/out" 'j.results.length === 2 && j.results.every(r => /python/i.test(r.text))'
req 400 -H "$A" -d '{"query":"x","mode":"psychic"}' "$C/search"
jcheck "$TMP/out" 'j.error.code === "bad_request" && /mode/.test(j.error.message)'
req 200 -H "$A" -d '{"query":"snake","k":5,"filter":{"kind":"code"}}' "$C/search"
jcheck "$TMP/out" 'j.results.length === 1 && j.results[0].id === "b"'
req 404 -H "$A" -d '{"query":"x"}' "$BASE/v1/collections/none/search"
req 400 -H "$A" -d '{"k":3}' "$C/search"
jcheck "$TMP/out" 'j.error.code === "bad_request" && /query/.test(j.error.message)'
req 400 -H "$A" -d '{"query":"x","k":0}' "$C/search"
req 200 -H "$A" -X DELETE "$C/documents/a"
jcheck "$TMP/out" 'j.deleted === 1'
req 404 -H "$A" -X DELETE "$C/documents/a"
req 200 -H "$A" -d '{"ids":["b"]}' "$C/delete"
jcheck "$TMP/out" 'j.deleted === 1'
req 200 -H "$A" -d '{"lemma":"bat","sense":"animal","examples":["the bat flew out of the cave at dusk"]}' "$BASE/v1/ops/sense.add"
req 200 -H "$A" -d '{"lemma":"bat","sense":"club","examples":["he swung the baseball bat hard"]}' "$BASE/v1/ops/sense.add"
req 200 -H "$A" -d '{"text":"a bat flew from the cave","word":"bat"}' "$BASE/v1/which"
jcheck "$TMP/out" 'j.lemma === "bat" && j.start === 2 && j.end === 5 && j.candidates.length === 2'
req 404 -H "$A" -d '{}' "$BASE/v1/ops/no.such.op"
jcheck "$TMP/out" 'j.error.code === "unknown_op"'
req 200 -H "$A" "$BASE/v1/stats"
jcheck "$TMP/out" "j.model_id === '$MODEL_ID' && j.collections.find(c => c.name === 'notes').docs === 2"

jflush

# ---- limits ------------------------------------------------------------------------------
head -c 2000000 /dev/zero | tr '\0' 'a' >"$TMP/big"
req 413 -H "$A" --data-binary @"$TMP/big" "$BASE/embed"
jcheck "$TMP/out" 'j.error_type === "Validation"'
req 413 -H "$A" -H "Transfer-Encoding: chunked" --data-binary @"$TMP/big" "$BASE/embed"
req 413 -H "$A" -H "Expect:" --data-binary @"$TMP/big" "$BASE/v1/collections/notes/documents"
jcheck "$TMP/out" 'j.error.code === "too_large"'
req 431 -H "$A" -H "X-Big: $(head -c 70000 /dev/zero | tr '\0' b)" "$BASE/v1/stats"
req 200 -H "$A" "$BASE/v1/stats"

# ---- CORS --------------------------------------------------------------------------------------
req 204 -X OPTIONS -H "Origin: https://app.example" -H "Access-Control-Request-Method: POST" "$BASE/v1/embeddings"
grep -qi '^Access-Control-Allow-Origin: https://app.example' "$TMP/hdr" || fail "no CORS on preflight"
grep -qi '^Access-Control-Allow-Headers: .*Authorization' "$TMP/hdr" || fail "preflight without Allow-Headers"
req 200 -H "$A" -H "Origin: https://app.example" "$BASE/v1/models"
grep -qi '^Access-Control-Allow-Origin: https://app.example' "$TMP/hdr" || fail "no CORS header"
req 200 -H "$A" -H "Origin: https://evil.example" "$BASE/v1/models"
! grep -qi '^Access-Control' "$TMP/hdr" || fail "CORS header for another origin"

# ---- 64 concurrent clients: each gets the socket's vector for its text ----------------------
args=()
texts='['
for i in $(seq 0 63); do
    args+=(-H "$A" -d "{\"inputs\":\"concurrent client number $i\",\"normalize\":false}" -o "$TMP/c$i" "$BASE/embed")
    [ "$i" = 63 ] && args+=() || args+=(--next)
    texts+="\"concurrent client number $i\""
    [ "$i" = 63 ] || texts+=','
done
texts+=']'
curl -s --parallel --parallel-immediate --parallel-max 64 "${args[@]}" 2>"$TMP/curl.err" ||
    fail "curl --parallel: $(cat "$TMP/curl.err")"
sockcall "{\"op\":\"embed\",\"texts\":$texts}"
for i in $(seq 0 63); do
    jcheck "$TMP/c$i" "j.length === 1 && same(j[0], s.embeddings[$i])"
done
grep -q "http 64: open" "$TMP/log" || grep -q "http 6[4-9]: open\|http [7-9][0-9]: open" "$TMP/log" ||
    fail "fewer than 64 connections were opened"

jflush

# ---- /metrics ----------------------------------------------------------------------------------
curl -s -H "$A" "$BASE/metrics" >"$TMP/metrics"
for pat in '^sense_http_requests_total{endpoint="tei_embed",status="200"} [0-9]' \
           '^sense_http_requests_total{endpoint="openai_embeddings",status="404"} 1$' \
           '^sense_http_request_duration_seconds_bucket{endpoint="search",le="+Inf"} [0-9]' \
           '^sense_http_request_duration_seconds_count{endpoint="tei_embed"} [0-9]' \
           '^sense_queue_depth{queue="embed"} [0-9]' '^sense_queue_depth{queue="storage"} [0-9]' \
           '^sense_tokens_encoded_total [1-9]' '^sense_documents{collection="notes"} 2$' \
           '^sense_chunks{collection="notes"} 2$' '^sense_index_info{collection="notes",kind="flat"' \
           '^sense_requests_total [1-9]' '^# TYPE sense_http_request_duration_seconds histogram'; do
    grep -q "$pat" "$TMP/metrics" || fail "/metrics lacks $pat"
    n_checks=$((n_checks + 1))
done

jflush

# ---- raw sockets -------------------------------------------------------------------------------
node "$HERE/raw.mjs" 127.0.0.1 "$PORT" "$KEY" 1000 || fail "raw.mjs"
grep -q "http [0-9]*: paused" "$TMP/log" || fail "the greedy client was never paused"
req 200 "$BASE/health"  # still serving
stop_sensed

# ---- refused: a non-loopback address without a key; no CORS unless asked ---------------------
st=0
"$BUILD/sensed" --socket "$TMP/s2.sock" --db "$TMP/db2" --model "$MODEL" \
    --http 0.0.0.0:1 >"$TMP/log2" 2>&1 || st=$?
[ "$st" = 1 ] && grep -q "not a loopback address" "$TMP/log2" ||
    fail "a non-loopback address without a key was not refused ($st): $(cat "$TMP/log2")"
start_sensed
req 200 -H "Origin: https://app.example" "$BASE/v1/models"
! grep -qi '^Access-Control' "$TMP/hdr" || fail "CORS header without --cors"
req 404 -X OPTIONS -H "Origin: https://app.example" "$BASE/v1/nothing"
stop_sensed
echo "http_api: ok ($n_checks checks, model '$MODEL_ID')"
