#!/usr/bin/env bash
# bench_dit.sh: `livegen bench dit` on the CPU backend with the tiny preset, as the GPU runs use
# it (tests/gpu/run, run_ab): one JSON line per step count with the fields those scripts read;
# the NVML fields (energy_j_per_chunk, power_w, ms_back_to_back, sm_mhz_median) are null
# off the GPU;
# a bad --steps exits 2 with a message.
# Usage: bash tests/cli/bench_dit.sh <livegen binary> <source dir>
set -u
LG=${1:?livegen binary}
T=$(mktemp -d /tmp/lg_bench_dit.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0

"$LG" bench dit --preset tiny --res 64x64 --steps 1,2 --kv-frames 2 --iters 2 --warmup 0 \
  --backend cpu >"$T/out" 2>"$T/err"
rc=$?
if [ $rc -ne 0 ]; then
  echo "FAIL: bench dit --backend cpu exit $rc"
  tail -5 "$T/err"
  fails=$((fails + 1))
else
  python3 - "$T/out" <<'PY' || fails=$((fails + 1))
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ok = True
def check(cond, what):
    global ok
    if not cond:
        print("FAIL:", what)
        ok = False
check([j["rows"] for j in lines] == [1, 2], "one line per step count, rows = steps")
for j in lines:
    check(j["bench"] == "dit" and j["backend"] == "cpu", "bench / backend fields")
    check(j["ms_median"] > 0 and j["ms_min"] <= j["ms_median"], "ms_median > 0, ms_min <= median")
    check(j["tokens_per_frame"] == 16 and j["tflop"] >= 0, "tokens per frame, FLOP count")
    for k in ("energy_j_per_chunk", "power_w", "ms_back_to_back", "sm_mhz_median",
              "peak_mem_gib"):
        check(k in j and j[k] is None, "%s present and null on the CPU" % k)
sys.exit(0 if ok else 1)
PY
fi

"$LG" bench dit --preset tiny --steps 5 --backend cpu >"$T/out" 2>"$T/err"
rc=$?
if [ $rc -ne 2 ] || ! grep -q "steps wants 1..4" "$T/err"; then
  echo "FAIL: --steps 5 should exit 2 with a message (exit $rc)"
  fails=$((fails + 1))
fi

[ $fails -eq 0 ] && echo "bench_dit: ok" || echo "bench_dit: $fails failed"
exit $((fails > 0))
