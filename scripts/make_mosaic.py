"""Renders a mosaic of the synthetic city: rows day / sunset / night, columns four places.

    python scripts/make_mosaic.py [--out docs/mosaic.png] [--seed 0]

The places are street positions of the three districts (Pitts30k-, SF-XS- and Tokyo-like),
each seen from the same pose at the three times of day, with a few cars and people.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vgjax import synthetic

TILE = (120, 160)  # (H, W)
GAP = 2
# (dataset, which street position of the district, heading)
PLACES = (("pitts30k", 0, 0.0), ("pitts30k", 1, 200.0), ("sf-xs", 0, 30.0), ("tokyo-xs", 0, 0.0))


def _street_point(dataset: str, which: int, seed: int) -> tuple[float, float]:
    """The `which`-th street position of the dataset's first area (deterministic)."""
    positions = synthetic.street_positions(dataset, seed)
    east, north = positions[(7 + 23 * which) % len(positions)]
    return float(east), float(north)


def make_mosaic(seed: int = 0) -> Image.Image:
    rows = []
    for t, tod in enumerate(synthetic.TIMES_OF_DAY):
        tiles = []
        for p, (dataset, which, heading) in enumerate(PLACES):
            east, north = _street_point(dataset, which, seed)
            tiles.append(
                synthetic.render_view(
                    east,
                    north,
                    heading,
                    dataset=dataset,
                    time_of_day=tod,
                    size=TILE,
                    rng=100 * t + p,
                    cars=2,
                    people=2,
                )
            )
        rows.append(tiles)
    h, w = TILE
    canvas = np.full((len(rows) * (h + GAP) - GAP, len(PLACES) * (w + GAP) - GAP, 3), 255, np.uint8)
    for r, tiles in enumerate(rows):
        for c, tile in enumerate(tiles):
            canvas[r * (h + GAP) : r * (h + GAP) + h, c * (w + GAP) : c * (w + GAP) + w] = tile
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for r, tod in enumerate(synthetic.TIMES_OF_DAY):
        for c, (dataset, _, _) in enumerate(PLACES):
            x, y = c * (w + GAP) + 3, r * (h + GAP) + 2
            label = f"{dataset} {tod}"
            draw.rectangle((x - 1, y, x + 6 * len(label) + 1, y + 11), fill=(0, 0, 0))
            draw.text((x, y), label, fill=(255, 255, 255))
    return image


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/mosaic.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A 256-colour palette keeps the file small; the noise of night views defeats PNG filters.
    make_mosaic(args.seed).quantize(256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
