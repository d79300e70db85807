#!/usr/bin/env bash
# serve_basic.sh: `livegen serve` as an operator runs it: starts on a free port (server.port=0)
# with the tiny CPU model, answers /health, /api/v1/status, /metrics (Prometheus lines),
# accepts a POST /api/v1/params change that then shows in the status, refuses a bad one with
# 400, records the output stream to a playable MP4 (output.record), and exits 0 within
# seconds of SIGTERM (and of SIGINT). Usage: serve_basic.sh LIVEGEN SRCDIR
set -u
LIVEGEN=$1
SRC=$2
TMP=$(mktemp -d /tmp/lg_serve_basic_XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  echo "--- serve log ---"
  tail -40 "$TMP/log"
  exit 1
}

start() {
  "$LIVEGEN" serve "$@" --config "$SRC/configs/default.yaml" --set server.port=0 \
    --set engine.width=64 --set engine.height=64 --set engine.backend=cpu \
    --set output.codec=libx264 --set log.level=warn \
    --set model.cache_dir="$TMP/cache" >"$TMP/log" 2>&1 &
  PID=$!
  PORT=
  for _ in $(seq 1 100); do
    PORT=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$TMP/log" | head -1 | sed 's/.*://')
    [ -n "$PORT" ] && break
    kill -0 "$PID" 2>/dev/null || fail "serve exited early"
    sleep 0.1
  done
  [ -n "$PORT" ] || fail "no port announced"
  URL=http://127.0.0.1:$PORT
}

# stop SIGNAL: the process must exit 0 within 10 s
stop() {
  kill -s "$1" "$PID"
  for _ in $(seq 1 100); do
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$PID" 2>/dev/null && fail "still running 10 s after SIG$1"
  wait "$PID"
  RC=$?
  PID=
  [ "$RC" = 0 ] || fail "exit status $RC after SIG$1"
}

start --set output.record="$TMP/rec.mp4"
H=$(curl -sS -m 5 "$URL/health") || fail "GET /health"
[ "$H" = '{"status":"ok"}' ] || fail "health: $H"

S=$(curl -sS -m 5 "$URL/api/v1/status") || fail "GET /api/v1/status"
python3 -c 'import json,sys; s=json.loads(sys.argv[1]); assert s["state"] in ("loading","warming","running"), s; assert s["model"]["width"]==64; assert "prompt" in s["params"]' "$S" ||
  fail "status: $S"

CODE=$(curl -sS -m 5 -o "$TMP/ack" -w '%{http_code}' -H 'Content-Type: application/json' \
  -d '{"prompt":"a lighthouse at dusk","strength":0.4}' "$URL/api/v1/params") || fail "POST params"
[ "$CODE" = 200 ] || fail "params status $CODE: $(cat "$TMP/ack")"
grep -q '"type":"ack"' "$TMP/ack" || fail "no ack: $(cat "$TMP/ack")"
S=$(curl -sS -m 5 "$URL/api/v1/status")
python3 -c 'import json,sys; p=json.loads(sys.argv[1])["params"]; assert p["prompt"]=="a lighthouse at dusk" and p["strength"]==0.4, p' "$S" ||
  fail "params not in status: $S"

CODE=$(curl -sS -m 5 -o "$TMP/err" -w '%{http_code}' -d '{"steps":99}' "$URL/api/v1/params")
[ "$CODE" = 400 ] || fail "bad params gave $CODE"
grep -q '"type":"error"' "$TMP/err" || fail "no error body"

# Wait for output frames, then check the metrics text line by line.
for _ in $(seq 1 300); do
  N=$(curl -sS -m 5 "$URL/metrics" | awk '$1=="livegen_frames_out_total"{print $2}')
  [ -n "$N" ] && [ "$N" -gt 0 ] && break
  sleep 0.2
done
[ -n "$N" ] && [ "$N" -gt 0 ] || fail "no output frames in /metrics"
curl -sS -m 5 "$URL/metrics" >"$TMP/metrics"
python3 - "$TMP/metrics" <<'PY' || fail "metrics syntax"
import re, sys
name = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
sample = re.compile(r'^' + name + r'(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*\})? (-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$')
for line in open(sys.argv[1]).read().splitlines():
    if line.startswith('# HELP ') or line.startswith('# TYPE '):
        continue
    assert sample.match(line), line
PY
grep -q '^livegen_stage_latency_seconds_bucket{stage="total",le="+Inf"}' "$TMP/metrics" || fail "no total histogram"

stop TERM
# The recording holds the frames produced so far, decodable, at the engine size.
[ -s "$TMP/rec.mp4" ] || fail "no recording"
ffprobe -v error -count_frames -select_streams v:0 \
  -show_entries stream=codec_name,width,height,nb_read_frames -of default=nw=1 "$TMP/rec.mp4" \
  >"$TMP/probe" 2>&1 || fail "ffprobe: $(cat "$TMP/probe")"
grep -q '^codec_name=h264$' "$TMP/probe" && grep -q '^width=64$' "$TMP/probe" &&
  grep -q '^height=64$' "$TMP/probe" || fail "recording: $(cat "$TMP/probe")"
F=$(sed -n 's/^nb_read_frames=//p' "$TMP/probe")
[ -n "$F" ] && [ "$F" -ge "$N" ] || fail "recording has ${F:-no} frames, expected >= $N"
start
curl -sS -m 5 "$URL/health" >/dev/null || fail "second start"
stop INT
echo OK
