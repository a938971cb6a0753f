"""What the evaluation's resize options do to recall: one model, one set of images, four
settings (the reference's float resize without / with antialias, Pillow's resize without /
with JPEG reduced-size decoding).

    python scripts/resize_effects.py --checkpoint runs/demo/netvlad --root data/synthetic-demo \\
        [--size 56 72] [--out runs/resize-effects]

Runs `python -m vgjax.eval` once per setting at the model input `--size` (choose one at most
half the images' size for JPEG draft decoding to act) and prints a markdown table of R@1 / R@5.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("pitts30k", "sf-xs", "tokyo-xs", "tokyo-night")
SETTINGS = {
    "float (reference, torchvision 0.8.1)": ["data.eval_resize=float"],
    "float + antialias (torchvision >= 0.17)": ["data.eval_resize=float",
                                                "data.resize_antialias=true"],
    "pil": ["data.eval_resize=pil"],
    "pil + jpeg_draft": ["data.eval_resize=pil", "data.jpeg_draft=true"],
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--root", default="data/synthetic-demo")
    p.add_argument("--config", default="configs/demo.py")
    p.add_argument("--size", type=int, nargs=2, default=(56, 72))
    p.add_argument("--out", default="runs/resize-effects")
    args = p.parse_args(argv)
    results = {}
    for i, (name, overrides) in enumerate(SETTINGS.items()):
        out = Path(args.out) / f"setting{i}"
        cmd = [sys.executable, "-m", "vgjax.eval", "--checkpoint", args.checkpoint,
               "--config", args.config, "--out", str(out),
               "--datasets", *[str(Path(args.root) / d) for d in DATASETS],
               f"--config.data.resize=({args.size[0]},{args.size[1]})",
               "--config.test.save_predictions=false",
               *[f"--config.{o}" for o in overrides]]
        subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        results[name] = json.loads((out / "results.json").read_text())
    lines = ["| setting | " + " | ".join(f"{d} R@1 | {d} R@5" for d in DATASETS) + " |",
             "|" + "---|" * (1 + 2 * len(DATASETS))]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[d]['R@1']:.1f} | {r[d]['R@5']:.1f}"
                                                for d in DATASETS) + " |")
    print(f"model {args.checkpoint}, input {args.size[0]}x{args.size[1]}\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
