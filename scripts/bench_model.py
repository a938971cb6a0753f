"""Model throughput on the current device: train step and inference images/s (JSON).

    python scripts/bench_model.py [--config configs/resnet18_netvlad.py] [--size 480 640]
        [--dtype bfloat16] [--steps 20] [--config.model.aggregation=gem ...]

Random uint8 images; a train step = `train.queries_per_step` x (2 + `negatives_per_query`)
images (48 by default), triplet loss, the configured optimizer, frozen stages as configured;
inference = `make_describe_fn` on batches of `--infer-batch` images. Times are medians over
`--steps` calls after a warm-up, with the result fetched (block_until_ready). Also reports
the partial-mining time for a round of 1000 queries x 1000 samples on random descriptors.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

REPO = Path(__file__).resolve().parent.parent


def median_time(fn, steps: int) -> float:
    fn()  # compile
    fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    from vgjax.cli.config import load_config
    from vgjax.config import split_argv
    from vgjax.models.network import (build_network, descriptor_dim, init_variables,
                                      make_describe_fn, network_info, trainable_mask)
    from vgjax.train import mining, optim
    from vgjax.train.losses import make_term
    from vgjax.train.step import make_mesh, make_train_step
    from vgjax.train.state import TrainState

    overrides, rest = split_argv(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "configs" / "resnet18_netvlad.py"))
    p.add_argument("--size", type=int, nargs=2, default=None, help="H W (default data.resize)")
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 (default model.dtype)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--infer-batch", type=int, default=128)
    args = p.parse_args(rest)
    if args.size:
        overrides.append(f"--config.data.resize=({args.size[0]},{args.size[1]})")
    if args.dtype:
        overrides.append(f"--config.model.dtype={args.dtype}")
    cfg = load_config(args.config, overrides)
    t, size = cfg.train, tuple(cfg.data.resize)
    mesh = make_mesh(int(t.num_devices))
    net = build_network(cfg.model)
    variables = init_variables(cfg.model, 0, size)
    tx = optim.make_optimizer(t, trainable_mask(variables["params"], cfg.model))
    state = TrainState.create(jax.tree.map(np.array, variables), tx)  # the step donates it
    step = make_train_step(net, tx, [make_term(t.loss, dict(t.loss_args))],
                           int(t.negatives_per_query), mesh)
    group = 2 + int(t.negatives_per_query)
    n_train = int(t.queries_per_step) * group
    rng = np.random.default_rng(0)
    train_images = jax.device_put(rng.integers(0, 256, (n_train, *size, 3), dtype=np.uint8))
    infer_images = jax.device_put(rng.integers(0, 256, (args.infer_batch, *size, 3), np.uint8))
    describe = make_describe_fn(net)

    box = {"state": state}

    def train_once():
        box["state"], metrics = step(box["state"], train_images)
        metrics["loss"].block_until_ready()

    def infer_once():
        describe(variables, infer_images).block_until_ready()

    train_s = median_time(train_once, args.steps)
    infer_s = median_time(infer_once, args.steps)

    device = jax.devices()[0]
    # Partial mining of one round: 1000 queries against 1000 sampled database images plus
    # 5 hard positives per query, 10 negatives each, on random descriptors.
    dim = descriptor_dim(cfg.model)
    nq, ns, npos = 1000, 1000, 5
    m = ns + nq * npos
    q_desc = jax.device_put(rng.standard_normal((nq, dim)).astype(np.float32))
    c_desc = jax.device_put(rng.standard_normal((m, dim)).astype(np.float32))
    db_ids = jax.device_put(np.arange(m, dtype=np.int32))
    pos_rows = jax.device_put((ns + np.arange(nq * npos)).reshape(nq, npos).astype(np.int32))
    sampled = jax.device_put(np.arange(ns, dtype=np.int32))

    def mine_once():
        out = mining.mine_partial(q_desc, c_desc, db_ids, pos_rows, pos_rows, sampled,
                                  num_negatives=int(t.negatives_per_query))
        jax.block_until_ready(out)

    mining_s = median_time(mine_once, 5)

    out = {
        "benchmark": "model", "device": getattr(device, "device_kind", str(device)),
        "devices": len(jax.devices()), "jax": jax.__version__,
        "backbone": cfg.model.backbone, "aggregation": cfg.model.aggregation,
        "width": int(cfg.model.get("resnet_width", 64)), "dtype": cfg.model.dtype,
        "size": list(size), "train_images_per_step": n_train,
        "train_step_ms": round(train_s * 1e3, 2), "train_img_per_s": round(n_train / train_s, 1),
        "infer_batch": args.infer_batch, "infer_ms": round(infer_s * 1e3, 2),
        "infer_img_per_s": round(args.infer_batch / infer_s, 1),
    }
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:  # accelerators report it; the CPU does not
        out["peak_device_memory_gib"] = round(stats["peak_bytes_in_use"] / 2**30, 3)
    out.update(network_info(cfg.model, size))
    out["partial_mining_1000_queries_s"] = round(mining_s, 4)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
