"""The evaluation's float resize (the reference's bilinear interpolate, in float32): the dense
weight-matrix form vs the separable taps vgjax uses, in one run, per image size.

    python scripts/bench_resize.py [--repeats 20]

Prints one JSON object: ms per image for each (source size -> model size, antialias) and
the largest difference between the two (they compute the same sums in another order).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from vgjax.data import ops


def dense(image, hw, antialias):
    x = ops.to_float(image)
    wh = ops.bilinear_weights(x.shape[0], hw[0], antialias)
    ww = ops.bilinear_weights(x.shape[1], hw[1], antialias)
    return np.einsum("oh,hwc,pw->opc", wh, x, ww, optimize=True).astype(np.float32)


def timed(fn, repeats):
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - start) / repeats * 1e3, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for src, dst in [((120, 160), (96, 128)), ((480, 640), (96, 128)), ((480, 640), (240, 320)),
                     ((768, 1024), (480, 640))]:
        img = rng.integers(0, 256, (*src, 3), dtype=np.uint8)
        for aa in (False, True):
            res = ops.Resampling(antialias=aa)
            t_dense, a = timed(lambda: dense(img, dst, aa), args.repeats)
            t_taps, b = timed(lambda: ops.resize(img, dst, res), args.repeats)
            rows.append({"source": list(src), "target": list(dst), "antialias": aa,
                         "dense_ms": round(t_dense, 2), "taps_ms": round(t_taps, 2),
                         "speedup": round(t_dense / t_taps, 1),
                         "max_abs_diff": float(np.abs(a - b).max())})
    print(json.dumps({"benchmark": "float resize", "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
