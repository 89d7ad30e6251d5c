#!/usr/bin/env bash
# Builds model.plan beside every model.onnx of the GPU profile (the audio encoder and each
# avatar version) with trtexec. Plans are specific to the GPU and the TensorRT version, so this
# runs on the serving machine, inside the serving image (Dockerfile.triton's entrypoint).
# Existing plans newer than their ONNX are kept.
set -euo pipefail
repo="${1:-model_repository}"
max_seconds="${MAX_AUDIO_SECONDS:-60}"
max_mel=$((1 + max_seconds * 80))

build() {  # onnx, then trtexec shape and precision flags
  local onnx="$1"; shift
  local plan="${onnx%.onnx}.plan"
  if [[ -f "$plan" && "$plan" -nt "$onnx" ]]; then return; fi
  echo "building $plan"
  trtexec --onnx="$onnx" --saveEngine="$plan.partial" --skipInference "$@" >"$plan.log" 2>&1 \
    || { echo "trtexec failed for $onnx, see $plan.log" >&2; exit 1; }
  mv "$plan.partial" "$plan"
}

# The encoder stays fp32: its output feeds every frame of the clip.
build "$repo/audio_encoder/1/model.onnx" \
  --minShapes=MEL:1x16x80,MEL_OFFSET:1x1 --optShapes=MEL:1x641x80,MEL_OFFSET:1x1 \
  --maxShapes=MEL:1x${max_mel}x80,MEL_OFFSET:1x1

for onnx in "$repo"/avatar_*/[0-9]*/model.onnx; do
  [[ -e "$onnx" ]] || continue
  # Versions made by `lipsync quantize` carry their INT8 scales as QuantizeLinear nodes
  # (explicit quantization); --int8 lets TensorRT use them. Float versions build as fp16.
  precision=(--fp16)
  if grep -qa QuantizeLinear "$onnx"; then precision+=(--int8); fi
  build "$onnx" "${precision[@]}" \
    --minShapes=FACE:1x320x320x3,AUDIO_FEATURES:1x32x16x16 \
    --optShapes=FACE:16x320x320x3,AUDIO_FEATURES:16x32x16x16 \
    --maxShapes=FACE:32x320x320x3,AUDIO_FEATURES:32x32x16x16
done
