"""Write the memory benchmark's input: a 4000x3000 (or W x H) RGB PNG mosaic of B100 HR photos.

Usage (repository root):
    python results/memory/make_input.py ../shared/sr_bench/B100/x4/HR build/memory/photo_4000x3000.png [W H]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from drq.imaging.io import read_image, write_image


def main(source: Path, target: Path, width: int = 4000, height: int = 3000) -> None:
    photos = [read_image(p) for p in sorted(source.glob("*.png"))[:48]]
    canvas = np.zeros((height, width, 3), np.uint8)
    tile_h, tile_w = 320, 480  # every B100 photo is 481x321 or 321x481
    index = 0
    for top in range(0, height, tile_h):
        for left in range(0, width, tile_w):
            photo = photos[index % len(photos)]
            index += 1
            if photo.shape[0] > photo.shape[1]:
                photo = photo.transpose(1, 0, 2)
            block = photo[: min(tile_h, height - top), : min(tile_w, width - left)]
            canvas[top : top + block.shape[0], left : left + block.shape[1]] = block
    write_image(target, canvas)
    print(f"wrote {target} ({width}x{height}, {Image.open(target).size})")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), *map(int, sys.argv[3:5]))
