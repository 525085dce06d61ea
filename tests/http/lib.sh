# tests/http/lib.sh -- sourced by the tests/http_*.sh tests: start sensed
# with --http on a free loopback port, a temporary socket and database and
# the tiny fixture model; stop it at exit.
#
#   BUILD FIXTURES           the test's two arguments (build dir, fixtures)
#   start_sensed ARGS...     sets PORT, BASE (http://127.0.0.1:PORT), PID;
#                            the socket is $TMP/s.sock, the log $TMP/log
#   stop_sensed              SIGTERM, and the exit status must be 0
#   fail MSG                 print MSG and the daemon's log tail, exit 1

set -euo pipefail
BUILD=$(cd "$1" && pwd)
FIXTURES=$(cd "$2" && pwd)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODEL="$FIXTURES/hf-reference/tiny-bert-uncased/model"
TMP=$(mktemp -d /tmp/sense-http.XXXXXX)
PID=
trap 'if [ -n "$PID" ]; then kill -9 "$PID" 2>/dev/null || true; fi; rm -rf "$TMP"' EXIT

fail() {
    echo "FAIL: $*" >&2
    if [ -f "$TMP/log" ]; then echo "--- sensed log (tail)" >&2; tail -n 30 "$TMP/log" >&2; fi
    exit 1
}

start_sensed() {
    local try i
    for try in 1 2 3 4 5 6; do
        PORT=$((20000 + RANDOM % 40000))
        "$BUILD/sensed" --socket "$TMP/s.sock" --db "$TMP/db" --model "$MODEL" \
            --http "127.0.0.1:$PORT" --log-level debug "$@" >"$TMP/log" 2>&1 &
        PID=$!
        for i in $(seq 200); do
            if curl -s -o /dev/null "http://127.0.0.1:$PORT/health"; then
                BASE="http://127.0.0.1:$PORT"
                return 0
            fi
            kill -0 "$PID" 2>/dev/null || break
            sleep 0.05
        done
        kill -9 "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
        PID=
        grep -qi "address already in use" "$TMP/log" || fail "sensed did not start"
    done
    fail "no free port"
}

stop_sensed() {
    local st=0
    kill -TERM "$PID"
    wait "$PID" || st=$?
    PID=
    [ "$st" = 0 ] || fail "sensed exited $st after SIGTERM"
}
