#!/usr/bin/env bash
# serve_t2v.sh: `livegen serve` in text-to-video mode (input none): frames are produced no
# faster than engine.fps (paced to the wall clock, not as fast as the CPU allows), the status says
# input "none" and counts no input frames, and SIGTERM exits 0. Usage: serve_t2v.sh LIVEGEN SRCDIR
set -u
LIVEGEN=$1
SRC=$2
TMP=$(mktemp -d /tmp/lg_serve_t2v_XXXXXX)
PID=
trap '[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$TMP"' EXIT
fail() {
  echo "FAIL: $*"
  tail -30 "$TMP/log"
  exit 1
}
"$LIVEGEN" serve --config "$SRC/configs/default.yaml" --set server.port=0 --set engine.mode=t2v \
  --set input=none --set engine.width=64 --set engine.height=64 --set engine.backend=cpu \
  --set engine.fps=4 --set output.codec=libx264 --set log.level=warn \
  --set model.cache_dir="$TMP/cache" >"$TMP/log" 2>&1 &
PID=$!
PORT=
for _ in $(seq 1 100); do
  PORT=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$TMP/log" | head -1 | sed 's/.*://')
  [ -n "$PORT" ] && break
  kill -0 "$PID" 2>/dev/null || fail "serve exited early"
  sleep 0.1
done
[ -n "$PORT" ] || fail "no port"
URL=http://127.0.0.1:$PORT
out() { curl -sS -m 5 "$URL/metrics" | awk '$1=="livegen_frames_out_total"{print $2}'; }
# First frames, then count over 4 s of wall clock.
for _ in $(seq 1 300); do
  A=$(out)
  [ -n "$A" ] && [ "$A" -gt 0 ] && break
  sleep 0.2
done
[ -n "$A" ] && [ "$A" -gt 0 ] || fail "no output frames"
sleep 1
A=$(out)
T0=$(date +%s.%N)
sleep 6
B=$(out)
T1=$(date +%s.%N)
# Frames come in blocks of 12: allow two blocks over fps * time (unpaced, this CPU makes
# ~14 frames/s at this size).
python3 -c "
import sys; a, b, dt = $A, $B, $T1 - $T0
print('t2v: %d frames in %.1f s (engine.fps 4)' % (b - a, dt))
sys.exit(0 if 0 < b - a <= 4 * dt + 24 else 1)" || fail "output not paced at engine.fps"
S=$(curl -sS -m 5 "$URL/api/v1/status")
python3 -c 'import json,sys; s=json.loads(sys.argv[1]); assert s["input"]=="none" and s["stats"]["frames_in"]==0 and s["state"]=="running", s' "$S" ||
  fail "status: $S"
kill -TERM "$PID"
for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$PID" 2>/dev/null && fail "still running after SIGTERM"
wait "$PID"
RC=$?
PID=
[ "$RC" = 0 ] || fail "exit status $RC"
echo OK
