#!/usr/bin/env bash
# serve_errors.sh: `livegen serve` refuses what it cannot run, with a message and a status:
# bad --set values and unknown arguments exit 2, a port already in use exits 1, an unknown
# input exits 1; none of them leaves a process behind. Usage: serve_errors.sh LIVEGEN SRCDIR
set -u
LIVEGEN=$1
SRC=$2
TMP=$(mktemp -d /tmp/lg_serve_err_XXXXXX)
trap 'rm -rf "$TMP"; [ -n "${HOLD:-}" ] && kill $HOLD 2>/dev/null' EXIT
fail() {
  echo "FAIL: $*"
  cat "$TMP/out" 2>/dev/null | tail -20
  exit 1
}
COMMON=(--config "$SRC/configs/default.yaml" --set engine.width=64 --set engine.height=64
  --set engine.backend=cpu --set output.codec=libx264 --set model.cache_dir="$TMP/cache")

timeout 20 "$LIVEGEN" serve "${COMMON[@]}" --set engine.steps=9 >"$TMP/out" 2>&1
[ $? = 2 ] || fail "bad steps did not exit 2"
grep -qi steps "$TMP/out" || fail "no message naming steps"

timeout 20 "$LIVEGEN" serve "${COMMON[@]}" --bogus >"$TMP/out" 2>&1
[ $? = 2 ] || fail "unknown argument did not exit 2"

timeout 20 "$LIVEGEN" serve --help >"$TMP/out" 2>&1
[ $? = 0 ] || fail "--help"
grep -q "usage: livegen serve" "$TMP/out" || fail "no usage"

# Hold a port, then ask serve for it.
python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True); time.sleep(30)' >"$TMP/port" &
HOLD=$!
for _ in $(seq 1 50); do [ -s "$TMP/port" ] && break; sleep 0.1; done
PORT=$(cat "$TMP/port")
timeout 20 "$LIVEGEN" serve "${COMMON[@]}" --set server.port="$PORT" >"$TMP/out" 2>&1
[ $? = 1 ] || fail "port in use did not exit 1"
grep -qi "listen" "$TMP/out" || fail "no message about the port"

timeout 20 "$LIVEGEN" serve "${COMMON[@]}" --set server.port=0 --set input=gopher://x >"$TMP/out" 2>&1
RC=$?
[ $RC = 1 ] || [ $RC = 2 ] || fail "unknown input exit $RC"
echo OK
