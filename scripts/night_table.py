"""The night comparison: baseline vs darkened training queries vs domain adaptation, over
the repetitions of a suite output folder, per test set and per query domain.

    python scripts/night_table.py --runs runs/city-suites/runs \\
        [--cells netvlad brightness0.1 domain-adaptation] [--repeats 2] [--out FILE.md]

Reads `<runs>/<cell>-rep<k>/results.json` and `results_domains.json` (what every training
run writes) and prints a markdown table: R@1 / R@5 as mean ± spread (half the range over
the repetitions) for each cell, on the four test sets and on tokyo-xs's day / sunset / night
queries. Runs that have not finished are left out and counted.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROWS = [("pitts30k", None), ("sf-xs", None), ("tokyo-xs", None), ("tokyo-night", None),
        ("tokyo-xs", "day"), ("tokyo-xs", "sunset"), ("tokyo-xs", "night")]
NAMES = {"netvlad": "baseline", "brightness0.1": "brightness 0.1",
         "domain-adaptation": "domain adaptation"}


def values(runs: Path, cell: str, repeats: int, dataset: str, domain: str | None, key: str):
    out = []
    for k in range(repeats):
        folder = runs / f"{cell}-rep{k}"
        path = folder / ("results_domains.json" if domain else "results.json")
        if not (folder / "results.json").exists() or not path.exists():
            continue
        data = json.loads(path.read_text())
        rec = data.get(dataset, {})
        rec = rec.get(domain, {}) if domain else rec
        if rec.get(key) is not None:
            out.append(float(rec[key]))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--cells", nargs="+", default=list(NAMES))
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    head = "| test set | " + " | ".join(f"{NAMES.get(c, c)} R@1 | {NAMES.get(c, c)} R@5"
                                        for c in args.cells) + " |"
    lines = [head, "|" + "---|" * (1 + 2 * len(args.cells))]
    counts = {}
    for dataset, domain in ROWS:
        cells = []
        for c in args.cells:
            for key in ("R@1", "R@5"):
                v = values(args.runs, c, args.repeats, dataset, domain, key)
                counts[c] = max(counts.get(c, 0), len(v))
                cells.append(f"{np.mean(v):.1f} ± {(max(v) - min(v)) / 2:.1f}" if v else "-")
        label = f"{dataset} / {domain}" if domain else dataset
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Mean ± half the range over " + ", ".join(
        f"{counts.get(c, 0)} run(s) of {NAMES.get(c, c)}" for c in args.cells) + "."]
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
