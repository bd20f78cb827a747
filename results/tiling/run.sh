#!/usr/bin/env bash
# PSNR cost of tiling: every zoo model at x4, FP32 ONNX on onnxruntime (CPU), Set14 and B100, whole
# images against tiles of 96 and 48 LR pixels at the default overlap rule (serve/tile_options.py).
# Usage: results/tiling/run.sh MODEL... (from the repository root; default: all six). Then
# python results/tiling/table.py writes results/tiling/README.md's table from results/tiling/json/.
set -euo pipefail
cd "$(dirname "$0")/../.."
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(imdn imdn_ntire pan carn_m rfdn rlfn)
mkdir -p build/tiling results/tiling/json
for arch in "${models[@]}"; do
  weights=../shared/sr_weights/${arch}_x4.pth
  [ "$arch" = carn_m ] && weights=../shared/sr_weights/carn_m_multiscale.pth
  onnx=build/tiling/${arch}_x4_fp32.onnx
  [ -f "$onnx" ] || drq export --arch "$arch" --weights "$weights" --scale 4 --lowering fp32 -o "$onnx"
  data=(--data ../shared/sr_bench/Set14/x4 --data ../shared/sr_bench/B100/x4)
  drq eval --onnx "$onnx" "${data[@]}" --threads 1 --quiet --json "results/tiling/json/${arch}_whole.json"
  for tile in 96 48; do
    drq eval --onnx "$onnx" "${data[@]}" --threads 1 --quiet --tile "$tile" \
      --json "results/tiling/json/${arch}_tile${tile}.json"
  done
done
