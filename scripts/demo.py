"""The end-to-end demo behind `make demo`, on data the project generates itself.

1. builds the synthetic city (`demo` preset: a Pitts30k-like train/val/test set and sf-xs,
   tokyo-xs and tokyo-night-like test sets) unless it is already there;
2. checks it with `vgjax.data.inspect`;
3. trains ResNet-18-conv4 + NetVLAD (configs/demo.py) with partial mining, validating each
   epoch, early stopping, and testing the best model on the four test sets;
4. evaluates the trained model again with multi-scale testing, saving predictions and pictures.

Every step is one of the documented commands, printed before it runs; rerunning resumes or
skips finished steps.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

DATASETS = ("pitts30k", "sf-xs", "tokyo-xs", "tokyo-night")


def run(cmd: list[str]) -> None:
    print("\n$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)


def print_table(title: str, results: dict, label: str = "dataset") -> None:
    print(f"\n{title}")
    print(f"  {label:24s} {'R@1':>6s} {'R@5':>6s} {'R@10':>6s} {'R@20':>6s}")
    for name, r in results.items():
        if isinstance(r, dict) and "R@1" in r:
            print(f"  {name:24s} " + " ".join(f"{r[k]:6.1f}" for k in ("R@1", "R@5", "R@10", "R@20")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/synthetic-demo")
    parser.add_argument("--workdir", default="runs/demo")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--config", default="configs/demo.py")
    args = parser.parse_args()
    py = sys.executable
    root, workdir = Path(args.root), Path(args.workdir)

    if not all((root / d / "images").is_dir() for d in DATASETS):
        run([py, "-m", "vgjax.data.synthetic", "--out", str(root), "--preset", args.preset])
    run([py, "-m", "vgjax.data.inspect", str(root / "pitts30k")])
    run([py, "-m", "vgjax.train", "--config", args.config, "--workdir", str(workdir),
         f"--config.data.root={root}"])
    run([py, "-m", "vgjax.eval", "--checkpoint", str(workdir),
         "--datasets", *[str(root / d) for d in DATASETS], "--out", str(workdir / "eval-multiscale"),
         "--config.test.scales=[0.75,1.0,1.25]", "--config.test.multiscale_method=avg",
         "--config.test.num_pictures=8"])

    records = [json.loads(line) for line in (workdir / "metrics.jsonl").open()]
    validation = {"before training": r["val"] for r in records if r["type"] == "initial_val"}
    validation.update({f"epoch {r['epoch']}": r["val"] for r in records if r["type"] == "epoch"})
    print_table("validation (pitts30k val) during training", validation, "model")
    print_table("test, single scale (training run's final test of the best epoch)",
                json.loads((workdir / "results.json").read_text()))
    print_table("multi-scale avg [0.75, 1, 1.25]",
                json.loads((workdir / "eval-multiscale" / "results.json").read_text()))
    print(f"\nrun folder: {workdir} (train.log, metrics.jsonl, lr.png, checkpoints/)")
    print(f"predictions and pictures: {workdir / 'eval-multiscale'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
