"""Input-pipeline throughput: decoded + resized uint8 images per second (JSON on stdout).

Writes `--num-images` JPEGs of `--source-size` (default 480x640, ~Pitts30k-like content
size) to a temporary folder (or reads `--folder`), then times `BatchLoader` for each target
size and worker count. Numbers depend on the CPU: compare only within one run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np
from PIL import Image

from vgjax.data.format import list_images, make_filename
from vgjax.data.pipeline import BatchLoader


def write_jpegs(folder: str, n: int, size: tuple[int, int], seed: int = 0) -> list[str]:
    """Smooth random colour fields with edges: JPEG sizes close to real street photos."""
    rng = np.random.default_rng(seed)
    h, w = size
    paths = []
    for i in range(n):
        coarse = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
        arr = np.asarray(img).copy()
        arr[:, :: max(1, w // 40)] //= 2  # vertical edges like facades
        arr = np.clip(arr.astype(np.int16) + rng.integers(-12, 13, arr.shape), 0, 255)
        path = os.path.join(folder, make_filename(500000.0 + i, 4000000.0, ".jpg"))
        Image.fromarray(arr.astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def time_loader(paths, size, batch_size, workers, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        n = 0
        for _, valid in BatchLoader(paths, size, batch_size, num_workers=workers, prefetch=2):
            n += valid
        best = min(best, time.perf_counter() - start)
    return n / best


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folder", help="existing image folder (default: write JPEGs)")
    parser.add_argument("--num-images", type=int, default=256)
    parser.add_argument("--source-size", type=int, nargs=2, default=(480, 640))
    parser.add_argument("--targets", default="480x640,240x320,120x160")
    parser.add_argument("--workers", default=f"1,{os.cpu_count()}")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.folder:
            paths = list_images(args.folder)[: args.num_images]
        else:
            paths = write_jpegs(tmp, args.num_images, tuple(args.source_size))
        mean_kb = np.mean([os.path.getsize(p) for p in paths]) / 1024
        results = []
        for target in args.targets.split(","):
            size = tuple(int(v) for v in target.split("x"))
            for workers in (int(w) for w in args.workers.split(",")):
                ips = time_loader(paths, size, args.batch_size, workers, args.repeats)
                results.append({"target": target, "workers": workers,
                                "images_per_s": round(ips, 1),
                                "images_per_s_per_worker": round(ips / workers, 1)})
    print(json.dumps({"benchmark": "input_pipeline", "cpu": platform.processor() or
                      platform.machine(), "cpu_count": os.cpu_count(),
                      "images": len(paths), "mean_jpeg_kb": round(float(mean_kb), 1),
                      "source_size": list(args.source_size), "results": results}, indent=1))


if __name__ == "__main__":
    main()
