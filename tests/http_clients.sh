#!/usr/bin/env bash
# http_clients.sh BUILD FIXTURES -- the OpenAI Node SDK and LangChain's
# OpenAIEmbeddings against sensed --http get the Unix socket's vectors
# (tests/http/clients.mjs). The npm packages (tests/http/package.json,
# versions pinned by its package-lock.json) are installed here, into
# BUILD/http-clients, with `npm ci` -- again only when the lock changes.
source "$(dirname "$0")/http/lib.sh"

dest="$BUILD/http-clients"
lock_sum=$(sha256sum "$HERE/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$dest/.installed" ] || [ "$(cat "$dest/.installed")" != "$lock_sum" ]; then
    rm -rf "$dest"
    mkdir -p "$dest"
    cp "$HERE/package.json" "$HERE/package-lock.json" "$dest/"
    (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error) ||
        fail "npm ci in '$dest' failed (is the npm registry reachable?)"
    echo "$lock_sum" >"$dest/.installed"
fi
cp "$HERE/clients.mjs" "$dest/"

echo "s3cret-key-for-tests" >"$TMP/key"
chmod 600 "$TMP/key"
start_sensed --api-key-file "$TMP/key"
node "$dest/clients.mjs" "$BASE" "$TMP/s.sock" "s3cret-key-for-tests" ||
    fail "clients.mjs"
stop_sensed
echo "http_clients: ok"
