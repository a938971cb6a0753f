"""Draws one training query under each configured query augmentation, side by side.

    python scripts/augment_preview.py [--image PATH | --dataset ROOT/NAME]
        [--augment SPEC ...] [--size H W] [--seed 0] [--on device|host]
        --out docs/augment_preview.png

The query is `--image`, or the first (by name) of `<dataset>/images/train/queries`; the
default dataset is `data/synthetic-demo/pitts30k` (the synthetic city's `demo` preset, which
`make demo` writes; `python -m vgjax.synthetic --out /tmp/syn --preset tiny` makes a small
one to pass as `--dataset /tmp/syn/pitts30k`). Each `--augment` is a `train.query_augment`
spec, applied as the train step applies it (`vgjax.data.augment.make_query_augment`, key
`jax.random.key(seed)`), or with `--on host` as `train.augment_on=host` applies it (on the
full-size file, then cropped and resized as a training query; `vgjax.data.augment.host`);
each panel is titled with its spec. With no `--augment` the picture
is the paper's Fig. 5: the original and brightness factors 0.10, 0.30 and 1.50.
`docs/augment_preview.png` is that default, drawn from the demo preset's first pitts30k
training query at its own size (120 x 160).
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np

from vgjax.config import ConfigError
from vgjax.data.augment import AUGMENT_ON, HostQueryAugment, check_specs, make_query_augment
from vgjax.data.ops import train_query
from vgjax.data.pipeline import load_image

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = ROOT / "data" / "synthetic-demo" / "pitts30k"
FIG5 = ("brightness(0.10)", "brightness(0.30)", "brightness(1.50)")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def first_query(dataset: Path) -> Path:
    folder = dataset / "images" / "train" / "queries"
    if not folder.is_dir():
        raise SystemExit(f"{folder}: no such folder (generate a dataset with `python -m "
                         "vgjax.synthetic --out /tmp/syn --preset tiny` and pass "
                         "--dataset /tmp/syn/pitts30k, or give --image)")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(f"{folder}: no images")
    return paths[0]


def augmented(image: np.ndarray, spec: str, seed: int) -> np.ndarray:
    """`image` (H, W, 3) uint8 under one spec, as one query (a group of one)."""
    augment = jax.jit(make_query_augment([spec], group_size=1))
    out = augment(image[None], jax.random.key(seed))[0]
    return np.asarray(out)


def augmented_host(path: Path, size, spec: str, seed: int) -> np.ndarray:
    """The query file under one spec as `train.augment_on=host` applies it (train step 0,
    the batch's first query), at `size`; a whole-batch op still runs as the step runs it."""
    augment = HostQueryAugment([spec], size, seed, load_image, train_query)
    out = augment(str(path), 0, 0)
    return augmented(out, spec, seed) if augment.device_specs else out / np.float32(255)


def draw(image: np.ndarray, specs, seed: int, out: Path, path: Path | None = None) -> Path:
    """One panel per spec; with the query's file `path`, on the host (`--on host`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [("original", image.astype(np.float32) / 255.0)]
    panels += [(spec, augmented(image, spec, seed) if path is None else
                augmented_host(path, image.shape[:2], spec, seed)) for spec in specs]
    titles = [textwrap.fill(title, 30) for title, _ in panels]
    lines = max(t.count("\n") + 1 for t in titles)
    h, w = image.shape[:2]
    width = 2.6
    fig = Figure(figsize=(width * len(panels), width * h / w + 0.3 + 0.15 * lines))
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, title, (_, pixels) in zip(axes, titles, panels):
        ax.imshow(np.clip(pixels, 0.0, 1.0), interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--image", type=Path, help="an image file")
    source.add_argument("--dataset", type=Path, default=None,
                        help=f"ROOT/NAME; its first training query (default {DEFAULT_DATASET})")
    parser.add_argument("--augment", nargs="+", default=None, metavar="SPEC",
                        help="train.query_augment specs, one panel each (default: Fig. 5)")
    parser.add_argument("--size", nargs=2, type=int, default=None, metavar=("H", "W"),
                        help="resize the query first (default: its own size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--on", choices=AUGMENT_ON, default="device",
                        help="train.augment_on: the train step on the model-sized query "
                             "(default), or the host on the full-size file first")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    specs = list(args.augment) if args.augment else list(FIG5)
    try:
        check_specs(specs)
    except ConfigError as e:
        parser.error(str(e))
    path = args.image or first_query(args.dataset or DEFAULT_DATASET)
    image = load_image(path, tuple(args.size) if args.size else None)
    if args.on == "host":  # the original as training reads the query at that size
        image = train_query(load_image(path), image.shape[:2])
    out = draw(image, specs, args.seed, args.out, path if args.on == "host" else None)
    print(f"{out}: {path.name}, {image.shape[0]}x{image.shape[1]}, on the {args.on}, "
          "panels: original, " + ", ".join(specs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
