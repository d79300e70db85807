#!/usr/bin/env bash
# dit_golden.sh: `livegen probe dit`, `probe stream` and `probe stream --t2v` against the golden
# fixtures written by tests/ref/dit_ref.py (PyTorch float64 reference of MODELS.md 2+3 and
# docs/DIT.md); every output tensor must match with relative L2 error <= 1e-4 (LG_GOLDEN_RTOL
# overrides it, e.g. 2e-2 for the bf16 CUDA backend).
# Usage: bash dit_golden.sh <livegen> <source dir> [backend]
set -euo pipefail
LG=$1
SRC=$2
BACKEND=${3:-${LG_GOLDEN_BACKEND:-cpu}}
RTOL=${LG_GOLDEN_RTOL:-1e-4}
FIX=$SRC/tests/fixtures/dit
for f in dit_tiny.safetensors dit_in.safetensors dit_expected.safetensors stream_in.safetensors \
  stream_expected.safetensors t2v_in.safetensors t2v_expected.safetensors args.txt; do
  [ -f "$FIX/$f" ] || { echo "missing fixture $FIX/$f (python3 tests/ref/dit_ref.py tests/fixtures/dit)"; exit 1; }
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
DIT_ARGS=$(sed -n 's/^dit //p' "$FIX/args.txt")
STREAM_ARGS=$(sed -n 's/^stream //p' "$FIX/args.txt")
T2V_ARGS=$(sed -n 's/^t2v //p' "$FIX/args.txt")
[ -n "$DIT_ARGS" ] && [ -n "$STREAM_ARGS" ] && [ -n "$T2V_ARGS" ] || { echo "bad $FIX/args.txt"; exit 1; }

# shellcheck disable=SC2086
"$LG" probe dit --model "$FIX/dit_tiny.safetensors" --in "$FIX/dit_in.safetensors" \
  --out "$TMP/dit_out.safetensors" --backend "$BACKEND" $DIT_ARGS
"$LG" probe compare "$FIX/dit_expected.safetensors" "$TMP/dit_out.safetensors" --rtol "$RTOL"

# shellcheck disable=SC2086
"$LG" probe stream --model "$FIX/dit_tiny.safetensors" --in "$FIX/stream_in.safetensors" \
  --out "$TMP/stream_out.safetensors" --backend "$BACKEND" $STREAM_ARGS
"$LG" probe compare "$FIX/stream_expected.safetensors" "$TMP/stream_out.safetensors" --rtol "$RTOL"

# shellcheck disable=SC2086
"$LG" probe stream --model "$FIX/dit_tiny.safetensors" --in "$FIX/t2v_in.safetensors" \
  --out "$TMP/t2v_out.safetensors" --backend "$BACKEND" $T2V_ARGS
"$LG" probe compare "$FIX/t2v_expected.safetensors" "$TMP/t2v_out.safetensors" --rtol "$RTOL"

# the comparison must be able to fail: without sink refresh the cache differs
# shellcheck disable=SC2086
"$LG" probe dit --model "$FIX/dit_tiny.safetensors" --in "$FIX/dit_in.safetensors" \
  --out "$TMP/dit_noadapt.safetensors" --backend "$BACKEND" $DIT_ARGS --adapt-sink -1
if "$LG" probe compare "$FIX/dit_expected.safetensors" "$TMP/dit_noadapt.safetensors" \
  --rtol "$RTOL" >/dev/null; then
  echo "FAIL: outputs without sink refresh still match the reference"
  exit 1
fi
echo "dit golden: ok"
