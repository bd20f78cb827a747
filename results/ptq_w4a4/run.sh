#!/usr/bin/env bash
# W4A4 beyond the paper, reduced schedule (the shared 2-core machine allowed no more before the deadline):
# drq (no finetuning) against drq+adaround (learned weight rounding, block-wise reconstruction) on the
# same 32 calibration crops, split budget, head / upsampler / tail at 8 bits; Set5 PSNR-Y of each recipe.
# usage: results/ptq_w4a4/run.sh ARCH   (from the repository root, venv active)
set -euo pipefail
arch=$1
out=results/ptq_w4a4
work=build/ptq_w4a4
mkdir -p "$work"
common=(--arch "$arch" --weights "../shared/sr_weights/${arch}_x4.pth" --scale 4 --calib ../shared/sr_calib/bsd200
  --budget split --w-bits 4 --a-bits 4 --images 32 --threads 1 --quiet)
for method in drq drq+adaround; do
  tag=${arch}_x4_w4a4_${method//+/_}
  drq quantize "${common[@]}" --method "$method" --ar-iters "${AR_ITERS:-200}" --ar-batches 16 \
    -o "$work/$tag.recipe.json" --stats "$out/$tag.stats.json"
  drq eval --recipe "$work/$tag.recipe.json" --data ../shared/sr_bench/Set5/x4 --threads 1 --quiet \
    --json "$out/$tag.set5.json"
done
