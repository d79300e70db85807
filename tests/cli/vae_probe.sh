#!/usr/bin/env bash
# vae_probe.sh: `livegen probe vae-encode|vae-decode|taehv-decode` on tiny random weights from
# `livegen init-model`: streamed calls (1 then 4 frames) equal the whole-clip path (--clip)
# within 1e-5 through the probe's own --compare, every call prints its wall time, files come
# back in the documented layout, and a wrong expected file or bad usage fails.
# Usage: bash vae_probe.sh <livegen binary> <source dir>
set -euo pipefail
LG=$1
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

"$LG" init-model --arch wan-vae --preset tiny --seed 3 --out "$TMP/vae.safetensors" >/dev/null
"$LG" init-model --arch taehv --preset tiny --seed 3 --out "$TMP/taehv.safetensors" >/dev/null

# encode: 3 calls of 1, 4, 4 frames at 32x48
"$LG" probe vae-encode --model "$TMP/vae.safetensors" --res 32x48 --calls 3 --seed 5 \
  --out "$TMP/enc.safetensors" 2>"$TMP/enc.log" || fail "vae-encode streamed"
[ "$(grep -c '^call [0-9]*: .* ms$' "$TMP/enc.log")" = 3 ] || fail "vae-encode: no per-call times"
grep -q '^call 1: 4 -> 1 frames at 32x48' "$TMP/enc.log" || fail "vae-encode: call 1 is not 4 frames"
"$LG" probe vae-encode --model "$TMP/vae.safetensors" --res 32x48 --calls 3 --seed 5 --clip \
  --compare "$TMP/enc.safetensors" --rtol 1e-5 2>"$TMP/encc.log" ||
  { cat "$TMP/encc.log"; fail "vae-encode clip != streamed"; }
[ "$(grep -c '^compare \(z\|zn\)\.[0-2]: .* ok$' "$TMP/encc.log")" = 6 ] || fail "vae-encode: keys"

"$LG" probe vae-decode --model "$TMP/vae.safetensors" --res 32x48 --calls 3 --seed 6 \
  --out "$TMP/dec.safetensors" 2>"$TMP/dec.log" || fail "vae-decode streamed"
grep -q '^call 0: 1 -> 1 frames' "$TMP/dec.log" || fail "vae-decode: first call is not 1 frame"
grep -q '^call 2: 1 -> 4 frames' "$TMP/dec.log" || fail "vae-decode: later calls are not 4 frames"
"$LG" probe vae-decode --model "$TMP/vae.safetensors" --res 32x48 --calls 3 --seed 6 --clip \
  --compare "$TMP/dec.safetensors" --rtol 1e-5 2>"$TMP/decc.log" ||
  { cat "$TMP/decc.log"; fail "vae-decode clip != streamed"; }
[ "$(grep -c '^compare x\.[0-2]: .* ok$' "$TMP/decc.log")" = 3 ] || fail "vae-decode: keys"

# files in: the encoder's z.k [1,16,1,h,w] are read as decoder inputs, streamed == clip
"$LG" probe vae-decode --model "$TMP/vae.safetensors" --in "$TMP/enc.safetensors" \
  --out "$TMP/dec2.safetensors" 2>"$TMP/dec2.log" || fail "vae-decode --in"
"$LG" probe vae-decode --model "$TMP/vae.safetensors" --in "$TMP/enc.safetensors" --clip \
  --compare "$TMP/dec2.safetensors" --rtol 1e-5 2>"$TMP/dec2c.log" ||
  { cat "$TMP/dec2c.log"; fail "vae-decode --in: clip != streamed"; }
grep -q '^call 0 (whole clip): 3 -> 9 frames at 32x48' "$TMP/dec2c.log" || fail "clip frames"

# TAEHV
"$LG" probe taehv-decode --model "$TMP/taehv.safetensors" --res 32x48 --calls 3 --seed 7 \
  --out "$TMP/tae.safetensors" 2>"$TMP/tae.log" || fail "taehv-decode streamed"
grep -q '^call 1: 1 -> 4 frames' "$TMP/tae.log" || fail "taehv-decode: call 1 is not 4 frames"
"$LG" probe taehv-decode --model "$TMP/taehv.safetensors" --res 32x48 --calls 3 --seed 7 --clip \
  --compare "$TMP/tae.safetensors" --rtol 1e-5 2>"$TMP/taec.log" ||
  { cat "$TMP/taec.log"; fail "taehv-decode clip != streamed"; }

# a different seed gives different frames: --compare fails with status 1
set +e
"$LG" probe taehv-decode --model "$TMP/taehv.safetensors" --res 32x48 --calls 3 --seed 8 \
  --compare "$TMP/tae.safetensors" 2>"$TMP/bad.log"
rc=$?
set -e
[ $rc = 1 ] || fail "compare against other frames returned $rc, expected 1"
grep -q 'FAIL$' "$TMP/bad.log" || fail "compare did not say FAIL"

# usage errors exit 2
set +e
"$LG" probe vae-decode --res 32x48 2>/dev/null
[ $? = 2 ] || fail "missing --model is not a usage error"
"$LG" probe vae-decode --model "$TMP/vae.safetensors" --res 30x48 2>/dev/null
[ $? = 2 ] || fail "--res not a multiple of 8 is not a usage error"
set -e
echo "vae_probe: ok"
