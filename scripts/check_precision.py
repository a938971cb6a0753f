"""Numerical precision on the device in use: NetVLAD descriptors and recalls with float32 at
`model.matmul_precision` = highest vs default (TF32 on A100/H100-class GPUs), and bfloat16,
against the same network on the CPU in float32 at highest precision.

    python scripts/check_precision.py [--root data/synthetic-tiny] [--size 96 128]

Builds the reference-sized network (ResNet-18-conv4 + NetVLAD-64, width 64; random weights
with NetVLAD k-means-initialised from the city, so no download is needed), describes the
pitts30k test split of the synthetic city (generated into --root if missing) and prints one
JSON object: per setting the largest relative descriptor difference from the CPU float32
"highest" descriptors and the recalls. On a GPU, "float32 highest" must stay within 1e-4
(the parity target); "default" shows what TF32 would cost.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    import jax

    from vgjax.cli.config import load_config
    from vgjax.data.pipeline import BatchLoader
    from vgjax.data.sources import open_split
    from vgjax.eval import evaluate
    from vgjax.eval.extract import Describer
    from vgjax.models.netvlad_init import initialize_netvlad, sample_init_paths
    from vgjax.models.network import build_network, init_variables

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="data/synthetic-tiny")
    p.add_argument("--size", type=int, nargs=2, default=(96, 128))
    args = p.parse_args(argv)
    root = Path(args.root)
    if not (root / "pitts30k" / "images").is_dir():
        subprocess.run([sys.executable, "-m", "vgjax.synthetic", "--out", str(root),
                        "--preset", "tiny", "--datasets", "pitts30k"], check=True,
                       stdout=subprocess.DEVNULL)
    size = f"({args.size[0]},{args.size[1]})"
    base = [f"data.root={root}", f"data.resize={size}", "data.test_datasets=[pitts30k]",
            "test.save_predictions=false", "model.netvlad_init.descriptors_per_image=10"]
    cfg = load_config(REPO / "configs" / "default.py", base)
    split, reader = open_split(cfg.data, "pitts30k", "test")
    train, _ = open_split(cfg.data, "pitts30k", "train")
    net = build_network(cfg.model)
    variables = init_variables(cfg.model, 0, tuple(args.size))
    paths = sample_init_paths(list(train.database.paths), 50, 0)
    variables = initialize_netvlad(net, variables, BatchLoader(paths, tuple(args.size), 25),
                                   cfg.model, seed=0)
    settings = {"float32 highest": ("float32", "highest"), "float32 default": ("float32", "default"),
                "bfloat16": ("bfloat16", "highest")}
    out = {"device": jax.devices()[0].device_kind, "jax": jax.__version__,
           "size": list(args.size), "settings": {}}
    reference = None
    for name, (dtype, precision) in settings.items():
        c = load_config(REPO / "configs" / "default.py",
                        base + [f"model.dtype={dtype}", f"model.matmul_precision={precision}"])
        describer = Describer.from_model(c.model, variables)
        descs = np.concatenate([np.asarray(describer(b))[:n] for b, n in BatchLoader(
            list(split.database.paths), tuple(args.size), 32)])
        if reference is None:
            with jax.default_device(jax.devices("cpu")[0]):
                cpu = Describer.from_model(c.model, jax.device_get(variables))
                reference = np.concatenate([np.asarray(cpu(b))[:n] for b, n in BatchLoader(
                    list(split.database.paths), tuple(args.size), 32)])
        rel = float(np.abs(descs - reference).max() / np.abs(reference).max())
        result = evaluate(split, describer, c.test, c.data, reader=reader)
        out["settings"][name] = {"max_relative_difference_from_cpu": rel,
                                 "recalls": result.recalls}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
