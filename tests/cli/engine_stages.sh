#!/usr/bin/env bash
# engine_stages.sh: `livegen generate` with the DiT pipelined over in-process stages
# (engine.stages, docs/MULTIGPU.md) on CPU with the tiny random models: 2 stages write the same
# bytes as 1 stage (adaptive sinks off: with them the ring refreshes sinks later); with the
# default adaptive sinks 2 stages still write every frame; --gpus on a build without NCCL is a
# clear error with a nonzero exit; bad --gpus / engine.stages values and t2v on stages are
# refused with a message; `livegen rank` refuses incomplete arguments.
# Usage: bash engine_stages.sh <livegen> <source dir>
set -euo pipefail
LG=$1
SRC=$2
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
COMMON=(--config "$SRC/configs/default.yaml" --set engine.backend=cpu --set engine.threads=1
  --set engine.width=64 --set engine.height=48 --set "model.cache_dir=$TMP/cache")

frames_of() { # y4m file -> frame count (64x48 4:2:0 frames)
  python3 - "$1" <<'PY'
import sys
d = open(sys.argv[1], "rb").read()
hdr, _, body = d.partition(b"\n")
assert hdr.startswith(b"YUV4MPEG2 W64 H48 "), hdr
fs = 6 + 64 * 48 * 3 // 2
assert len(body) % fs == 0, len(body)
print(len(body) // fs)
PY
}

# 1 vs 2 stages: identical bytes
"$LG" generate "${COMMON[@]}" --set engine.adapt_sink=-1 --input test:ball --frames 33 \
  --out "$TMP/one.y4m"
"$LG" generate "${COMMON[@]}" --set engine.adapt_sink=-1 --set engine.stages=2 --input test:ball \
  --frames 33 --out "$TMP/two.y4m"
[ "$(frames_of "$TMP/two.y4m")" = 33 ] || { echo "FAIL: 2 stages frame count"; exit 1; }
cmp "$TMP/one.y4m" "$TMP/two.y4m" || { echo "FAIL: 2 stages differ from 1 stage"; exit 1; }

# default adaptive sinks: 2 stages run to the end
"$LG" generate "${COMMON[@]}" --set engine.stages=2 --input test:bars --frames 33 \
  --out "$TMP/sinks.y4m"
[ "$(frames_of "$TMP/sinks.y4m")" = 33 ] || { echo "FAIL: adaptive sinks frame count"; exit 1; }

# expect_fail STATUS PATTERN CMD...: CMD exits with STATUS and says PATTERN on stderr
expect_fail() {
  local want=$1 pat=$2
  shift 2
  local rc=0
  "$@" >/dev/null 2>"$TMP/err" || rc=$?
  if [ "$rc" != "$want" ] || ! grep -Eq -- "$pat" "$TMP/err"; then
    echo "FAIL: '$*' exited $rc (want $want) with:"; cat "$TMP/err"; exit 1
  fi
}
OUT=(--input test:ball --frames 3 --out "$TMP/x.y4m")
G=("${COMMON[@]/engine.backend=cpu/engine.backend=auto}")
# this build has no NCCL (CI): --gpus is an error, not a hang or a silent single GPU
expect_fail 1 "no NCCL|cannot open GPU" "$LG" generate "${G[@]}" --gpus 0,1 "${OUT[@]}"
expect_fail 2 "--gpus x: expected" "$LG" generate "${G[@]}" --gpus x "${OUT[@]}"
expect_fail 2 "--gpus 0,,1: expected" "$LG" generate "${G[@]}" --gpus 0,,1 "${OUT[@]}"
expect_fail 2 "GPU 1 twice" "$LG" generate "${G[@]}" --gpus 1,0,1 "${OUT[@]}"
expect_fail 2 "CUDA backend" "$LG" generate "${COMMON[@]}" --gpus 0,1 "${OUT[@]}"
expect_fail 2 "engine.stages: 0 is out of range" "$LG" generate "${COMMON[@]}" \
  --set engine.stages=0 "${OUT[@]}"
expect_fail 2 "exclude" "$LG" generate "${G[@]}" --set engine.stages=2 --gpus 0,1 "${OUT[@]}"
expect_fail 2 "v2v only" "$LG" generate "${COMMON[@]}" --set engine.mode=t2v --set engine.stages=2 \
  --input none --frames 3 --out "$TMP/x.y4m"
expect_fail 1 "2 layers: it cannot be split over 3 stages" "$LG" generate "${COMMON[@]}" \
  --set engine.stages=3 "${OUT[@]}"
# the rank subcommand (started by rank 0 or mpirun)
expect_fail 2 "give --rank" "$LG" rank
expect_fail 2 "rank 0 runs the service" "$LG" rank --rank 0 --nranks 2 --gpu 0
expect_fail 1 "no NCCL id" env -u LG_NCCL_ID -u NCCL_COMM_ID "$LG" rank --rank 1 --nranks 2 --gpu 0
expect_fail 1 "LG_NCCL_ID must be" env LG_NCCL_ID=zz "$LG" rank --rank 1 --nranks 2 --gpu 0
echo "engine stages: ok"
