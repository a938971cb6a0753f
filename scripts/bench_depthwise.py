"""Depthwise convolution formulations on the current device: forward and gradient ms (JSON).

    python scripts/bench_depthwise.py [--batch 2] [--size 480 640] [--repeats 10]

Times `vgjax.models.depthwise.depthwise_conv` with `impl=native` (grouped convolution) and
`impl=shifted` (sum of shifted slices times the taps) on EfficientNet-Lite0's depthwise
layers for a `--size` input (the s16 cut: the first five stages), forward alone and the
gradient of a scalar loss with respect to input and kernel. Each timing is the median of
`--repeats` calls after a warm-up, the result fetched. Also prints which formulation `auto`
picks on this backend.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from vgjax.models.depthwise import depthwise_conv, resolve

# (input stride, channels, kernel, stride) of Lite0's depthwise layers up to the s16 cut
LITE0_S16 = [(2, 32, 3, 1), (2, 96, 3, 2), (4, 144, 3, 1), (4, 144, 5, 2), (8, 240, 5, 1),
             (8, 240, 3, 2), (16, 480, 3, 1), (16, 480, 3, 1), (16, 480, 5, 1),
             (16, 672, 5, 1), (16, 672, 5, 1)]


def median_ms(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, nargs=2, default=(480, 640))
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    totals = {"native": [0.0, 0.0], "shifted": [0.0, 0.0]}
    for in_stride, c, k, s in LITE0_S16:
        h, w = -(-args.size[0] // in_stride), -(-args.size[1] // in_stride)
        x = jnp.asarray(rng.normal(size=(args.batch, h, w, c)), jnp.float32)
        kernel = jnp.asarray(rng.normal(size=(k, k, 1, c)), jnp.float32)
        row = {"input": [args.batch, h, w, c], "kernel": k, "stride": s}
        for impl in ("native", "shifted"):
            fwd = jax.jit(lambda x, kr, impl=impl: depthwise_conv(x, kr, s, impl))
            grad = jax.jit(jax.grad(lambda x, kr, impl=impl: jnp.sum(
                jnp.square(depthwise_conv(x, kr, s, impl))), argnums=(0, 1)))
            f_ms, g_ms = median_ms(fwd, (x, kernel), args.repeats), \
                median_ms(grad, (x, kernel), args.repeats)
            row[f"{impl}_forward_ms"], row[f"{impl}_grad_ms"] = round(f_ms, 3), round(g_ms, 3)
            totals[impl][0] += f_ms
            totals[impl][1] += g_ms
        rows.append(row)
    out = {"backend": jax.default_backend(), "auto": resolve("auto"), "batch": args.batch,
           "size": list(args.size), "layers": rows,
           "total_forward_ms": {k: round(v[0], 2) for k, v in totals.items()},
           "total_grad_ms": {k: round(v[1], 2) for k, v in totals.items()},
           "forward_speedup_shifted": round(totals["native"][0] / totals["shifted"][0], 2),
           "grad_speedup_shifted": round(totals["native"][1] / totals["shifted"][1], 2)}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
