#!/usr/bin/env bash
# dit_generate.sh: `livegen generate` on CPU with the tiny random models generated into a
# temporary cache folder: v2v on both test patterns and t2v write YUV4MPEG2 files with the
# asked frame count and size; the same run twice gives the same bytes; bad inputs are refused.
# Usage: bash dit_generate.sh <livegen> <source dir>
set -euo pipefail
LG=$1
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
COMMON=(--set engine.backend=cpu --set engine.threads=1 --set engine.width=64
  --set engine.height=48 --set "model.cache_dir=$TMP/cache")

frames_of() { # y4m file -> frame count (64x48 4:2:0 frames)
  python3 - "$1" <<'PY'
import sys
d = open(sys.argv[1], "rb").read()
hdr, _, body = d.partition(b"\n")
assert hdr.startswith(b"YUV4MPEG2 W64 H48 F16000:1000 "), hdr
fs = 6 + 64 * 48 * 3 // 2
assert len(body) % fs == 0, len(body)
for i in range(0, len(body), fs):
    assert body[i:i + 6] == b"FRAME\n"
print(len(body) // fs)
PY
}

"$LG" generate "${COMMON[@]}" --input test:ball --frames 14 --out "$TMP/ball.y4m"
[ "$(frames_of "$TMP/ball.y4m")" = 14 ] || { echo "FAIL: ball frame count"; exit 1; }
ls "$TMP/cache"/wan-dit-tiny-seed42.safetensors "$TMP/cache"/wan-vae-tiny-seed42.safetensors

"$LG" generate "${COMMON[@]}" --input test:ball --frames 14 --out "$TMP/ball2.y4m"
cmp "$TMP/ball.y4m" "$TMP/ball2.y4m" || { echo "FAIL: not deterministic"; exit 1; }

# the DiT's context-only weights on the device instead of host memory (the default): the same
# bytes
"$LG" generate "${COMMON[@]}" --set model.context_weights=device --input test:ball --frames 14 \
  --out "$TMP/ball3.y4m"
cmp "$TMP/ball.y4m" "$TMP/ball3.y4m" || { echo "FAIL: context_weights=device changed the output"; exit 1; }
if "$LG" generate "${COMMON[@]}" --set model.context_weights=gpu --input test:ball --frames 2 \
  --out "$TMP/x.y4m" 2>"$TMP/err"; then
  echo "FAIL: model.context_weights=gpu accepted"; exit 1
fi
grep -q "model.context_weights must be device or host" "$TMP/err"

"$LG" generate "${COMMON[@]}" --set engine.steps=1 --input test:bars --frames 9 --out "$TMP/bars.y4m"
[ "$(frames_of "$TMP/bars.y4m")" = 9 ] || { echo "FAIL: bars frame count"; exit 1; }

"$LG" generate "${COMMON[@]}" --set engine.mode=t2v --set engine.shift=5 --set engine.steps=2 \
  --set 'engine.step_list=[1000,750]' --input none --frames 10 --out "$TMP/t2v.y4m"
[ "$(frames_of "$TMP/t2v.y4m")" = 10 ] || { echo "FAIL: t2v frame count"; exit 1; }

# refusals: unknown pattern, missing --out, a text encoder without a tokenizer
if "$LG" generate "${COMMON[@]}" --input test:nope --frames 2 --out "$TMP/x.y4m" 2>"$TMP/err"; then
  echo "FAIL: unknown pattern accepted"; exit 1
fi
grep -q "test pattern" "$TMP/err"
if "$LG" generate "${COMMON[@]}" --input test:ball --frames 2 2>/dev/null; then
  echo "FAIL: missing --out accepted"; exit 1
fi
if "$LG" generate "${COMMON[@]}" --set model.text_encoder=t5.pth --input test:ball --frames 2 \
  --out "$TMP/x.y4m" 2>"$TMP/err"; then
  echo "FAIL: text encoder accepted"; exit 1
fi
grep -q "model.tokenizer" "$TMP/err"
echo "dit generate: ok"
