#!/usr/bin/env bash
# FP8 (E4M3) next to INT8 for IMDN x4 and PAN x4: every number in results/fp8/README.md comes from here.
# Run from the repository root (../shared beside it). Recipes and eval JSON go to results/fp8/,
# the ONNX graphs to build/fp8/. FP32 scores: results/zoo_fp32.md. Same calibration for every row: 100 bsd200 LR crops of 80 px, seed 0.
set -euo pipefail
command -v drq >/dev/null || drq() { python -m drq.cli "$@"; }
out=results/fp8
mkdir -p "$out" build/fp8
data=(--data ../shared/sr_bench/Set5/x4 --data ../shared/sr_bench/Set14/x4 --data ../shared/sr_bench/B100/x4)
for arch in imdn pan; do
    weights=../shared/sr_weights/${arch}_x4.pth
    common=(--arch "$arch" --weights "$weights" --scale 4 --calib ../shared/sr_calib/bsd200 --images 100 --threads 1 --quiet)
    # name | quantize options | lowering
    for row in "fp8|--method fp8|fp8" "fp8_all|--method fp8 --all-layers|fp8" "int8|--method minmax --w-bits 8 --a-bits 8|qdq"; do
        IFS='|' read -r name opts lowering <<<"$row"
        recipe=$out/${arch}_x4_${name}.recipe.json
        onnx=build/fp8/${arch}_x4_${name}_${lowering}.onnx
        # shellcheck disable=SC2086
        drq quantize "${common[@]}" $opts -o "$recipe"
        drq export --recipe "$recipe" --lowering "$lowering" -o "$onnx"
        drq eval --onnx "$onnx" "${data[@]}" --threads 1 --quiet --json "$out/${arch}_x4_${name}.eval.json"
    done
done
