#!/usr/bin/env bash
# vae_golden.sh: the Wan VAE and TAEHV against tests/ref/vae_ref.py (a plain PyTorch
# implementation of the reference streaming VAE and TAEHV, float64): every streamed call of
# `livegen probe vae-encode|vae-decode|taehv-decode` on the fixture weights, and the --clip
# path split per call, must be within relative error 1e-4 (max|out-exp| / max|exp| per key).
# Fixtures: python3 tests/ref/vae_ref.py tests/fixtures/vae (run on the GPU machine).
# Usage: bash vae_golden.sh <livegen binary> <source dir> [backend (cpu)] [rtol (1e-4)]
# (on the GPU machine: ... cuda 5e-2; bf16 gives 0.8-2.7% against the float64 reference)
set -euo pipefail
LG=$1
F=$2/tests/fixtures/vae
BACKEND=${3:-cpu}
RTOL=${4:-1e-4}
for f in wan_vae_tiny taehv_tiny vae_encode_in vae_encode_out vae_decode_in vae_decode_out \
  taehv_decode_in taehv_decode_out; do
  [ -f "$F/$f.safetensors" ] || { echo "FAIL: fixture $F/$f.safetensors missing" >&2; exit 1; }
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
run() { # kind model stem keys [--clip]
  local kind=$1 model=$2 stem=$3 keys=$4
  shift 4
  if ! "$LG" probe "$kind" --model "$F/$model.safetensors" --in "$F/${stem}_in.safetensors" \
    --out "$TMP/out.safetensors" --compare "$F/${stem}_out.safetensors" --rtol "$RTOL" --backend "$BACKEND" "$@" \
    2>"$TMP/log"; then
    cat "$TMP/log" >&2
    echo "FAIL: $kind $* differs from the PyTorch reference" >&2
    exit 1
  fi
  local n
  n=$(grep -c '^compare .* ok$' "$TMP/log")
  [ "$n" = "$keys" ] || { cat "$TMP/log" >&2; echo "FAIL: $kind $*: $n keys ok, expected $keys" >&2; exit 1; }
  grep '^compare' "$TMP/log"
}
run vae-encode wan_vae_tiny vae_encode 6
run vae-encode wan_vae_tiny vae_encode 6 --clip
run vae-decode wan_vae_tiny vae_decode 3
run vae-decode wan_vae_tiny vae_decode 3 --clip
run taehv-decode taehv_tiny taehv_decode 3
run taehv-decode taehv_tiny taehv_decode 3 --clip
echo "vae_golden: ok"
