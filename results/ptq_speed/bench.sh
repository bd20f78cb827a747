#!/usr/bin/env bash
# PTQ speed benchmark: `drq quantize --method drq+saft --budget split --w-bits 4 --a-bits 4` on IMDN x4
# (the paper schedule: 100 images x 10 epochs unless IMAGES / EPOCHS say otherwise), run back to back
# at LEGACY (a commit before the speed work, checked out in a temporary git worktree) and at this
# checkout, then both recipes evaluated on Set5 with `drq eval --recipe`. Writes results/ptq_speed/:
# {legacy,current}_stats.json (wall, peak RSS, losses), {legacy,current}_time.json (CPU seconds),
# {legacy,current}_set5.json, summary.json.
#
# usage: results/ptq_speed/bench.sh [LEGACY_COMMIT]   (run from the repository root, venv active)
set -euo pipefail
legacy_commit=${1:-a66c5f7}
images=${IMAGES:-100}
epochs=${EPOCHS:-10}
threads=${THREADS:-2}
root=$PWD
shared=$(cd "$root/../shared" && pwd)
out=$root/results/ptq_speed
work=$(mktemp -d)
git worktree add --quiet --detach "$work/legacy" "$legacy_commit"
trap 'git -C "$root" worktree remove --force "$work/legacy"; rm -rf "$work"' EXIT

run_side() {  # side tree
  local side=$1 tree=$2
  # /usr/bin/time: CPU seconds (user + system) and peak RSS, which a shared machine distorts far less
  # than the wall time.
  (cd "$tree" && PYTHONPATH="$tree" /usr/bin/time -f '{"wall_s": %e, "user_s": %U, "sys_s": %S, "max_rss_kib": %M}' \
    -o "$out/${side}_time.json" python -c 'import sys; from drq.cli import main; sys.exit(main())' \
    quantize --arch imdn --weights "$shared/sr_weights/imdn_x4.pth" --scale 4 \
    --calib "$shared/sr_calib/bsd200" -o "$work/$side.recipe.json" --method drq+saft --budget split \
    --w-bits 4 --a-bits 4 --images "$images" --epochs "$epochs" --threads "$threads" --quiet \
    --stats "$out/${side}_stats.json")
  (cd "$root" && PYTHONPATH="$root" drq eval --recipe "$work/$side.recipe.json" \
    --weights "$shared/sr_weights/imdn_x4.pth" --data "$shared/sr_bench/Set5/x4" --threads "$threads" \
    --quiet --json "$out/${side}_set5.json")
}

run_side legacy "$work/legacy"
run_side current "$root"
PYTHONPATH="$root" python "$root/results/ptq_speed/summarize.py" "$out" "$legacy_commit" \
  "$(git -C "$root" rev-parse --short HEAD)" "$(uptime)"
