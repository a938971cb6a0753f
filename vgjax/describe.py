"""Descriptors for every image of a folder.

    python -m vgjax.describe --checkpoint DIR --images FOLDER --out F.npy \
        [--resize H W] [--batch-size N] [--num-workers N]

DIR is a model dir, a checkpoint folder or a training run folder (see vgjax.models.io).
Images are found recursively (.jpg/.jpeg/.png) and described in sorted path order; F.npy
gets float32 (N, D) and `<F stem>_paths.txt` beside it the N paths, one per line.
Images are resized to (H, W), by default the size stored with the model.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from vgjax.data.format import list_images
from vgjax.data.pipeline import ImageError, check_image_files
from vgjax.eval.extract import Describer, extract_descriptors
from vgjax.eval.methods import ViewPlan
from vgjax.models.backbones import check_input_size
from vgjax.models.io import ModelDirError, load_model, read_model_info
from vgjax.models.network import ARCH_DEFAULTS


def describe_paths(model_cfg, variables, paths, size, batch_size: int = 32,
                   num_workers: int = 8) -> np.ndarray:
    """float32 (len(paths), D) descriptors of `paths` resized to `size` = (H, W): the same
    extraction as evaluation's database side."""
    store, _ = extract_descriptors(paths, Describer.from_model(model_cfg, variables),
                                   ViewPlan(sizes=(tuple(size),)), batch_size=batch_size,
                                   num_workers=num_workers)
    try:
        return np.array(store.read(), np.float32)
    finally:
        store.close()


def check_folder(checkpoint, images, resize=None,
                 num_workers: int = 8) -> tuple[list[str], tuple[int, int]]:
    """(sorted image paths below `images`, input size (H, W)) after every check that needs
    no model: the --checkpoint is a model, the folder holds images, each file is whole, the
    backbone can describe the size. Raises ModelDirError, FileNotFoundError, ValueError or
    ImageError with one line naming the option."""
    try:
        info = read_model_info(checkpoint)  # fails fast on a wrong --checkpoint
    except ModelDirError as e:
        raise ModelDirError(f"--checkpoint {e}") from None
    if not Path(images).is_dir():
        raise FileNotFoundError(f"--images {images}: not a folder")
    paths = list_images(images)
    if not paths:
        raise FileNotFoundError(f"--images {images}: no .jpg/.jpeg/.png images found")
    size = tuple(resize) if resize else tuple(info["image_size"])
    backbone = info["model"].get("backbone", ARCH_DEFAULTS["backbone"])
    check_input_size(backbone, size, "--resize" if resize else
                     f"the size stored with {checkpoint} ({size[0]} {size[1]})")
    check_image_files(paths, f"--images {images}", num_workers)  # before any is described
    return paths, size


def describe_folder(checkpoint, images, resize=None, batch_size: int = 32,
                    num_workers: int = 8) -> tuple[np.ndarray, list[str]]:
    """(descriptors (N, D) float32, sorted image paths) for every image below `images`."""
    paths, size = check_folder(checkpoint, images, resize, num_workers)
    model_cfg, variables = load_model(checkpoint)
    return describe_paths(model_cfg, variables, paths, size, batch_size, num_workers), paths


def paths_file(out: str | os.PathLike) -> Path:
    """`F.npy` -> `F_paths.txt` beside it."""
    out = Path(out)
    return out.with_name(out.stem + "_paths.txt")


def main(argv=None, prog: str = "python -m vgjax.describe") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="model dir, checkpoint folder or training run folder")
    parser.add_argument("--images", required=True, help="folder of images (recursive)")
    parser.add_argument("--out", required=True, help="output .npy file")
    parser.add_argument("--resize", type=int, nargs=2, metavar=("H", "W"),
                        help="input size (default: the size stored with the model)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=8, help="decoding threads")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.resize and min(args.resize) < 1:
        parser.error(f"--resize must be positive, got {args.resize}")
    out = Path(args.out)
    if out.suffix != ".npy":
        parser.error(f"--out {out}: expected a .npy file name")
    if out.is_dir():
        parser.error(f"--out {out}: is a folder, expected a .npy file name")
    try:  # the folder it goes in, before any work
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        parser.error(f"--out {out}: cannot create its folder ({e.strerror or e})")
    if not os.access(out.parent, os.W_OK):
        parser.error(f"--out {out}: its folder is not writable")

    start = time.perf_counter()
    try:
        desc, paths = describe_folder(args.checkpoint, args.images, args.resize,
                                      args.batch_size, args.num_workers)
    except (FileNotFoundError, ValueError, ImageError) as e:  # ModelDirError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    np.save(out, desc)
    paths_file(out).write_text("".join(p + "\n" for p in paths))
    print(json.dumps({"out": str(out), "paths": str(paths_file(out)), "images": len(paths),
                      "descriptor_dim": int(desc.shape[1]), "seconds": round(seconds, 2),
                      "images_per_s": round(len(paths) / max(seconds, 1e-9), 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
