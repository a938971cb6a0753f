"""A suite's tables, shaped like the paper's: rows = settings, columns = datasets x recalls.

`write_tables` writes OUT/<name>.md (mean ± std over the repetitions, `failed` where no
repetition finished, the failed runs' errors under it), .csv (means and stds as numbers)
and .json (the suite, every run's numbers, config and provenance, the paired tests), and
OUT/<name>_paired.md where the paired tests were run (`vgjax.suite.results.paired`).
"""
from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from vgjax.config.sweep import Suite
from vgjax.suite.results import run_commits

CHANCE_LABEL = "chance (random ranking)"


def _paired_text(reps: list[dict]) -> str:
    if not reps:
        return "-"
    mean = round(float(np.mean([x["difference"] for x in reps])), 1) + 0.0  # no "-0.0"
    text = (f"{mean:+.1f} (p "
            + " / ".join(f"{x['p']:.2g}" for x in reps) + ")")
    clear = reps[0]["clear"]
    return f"**{text}**" if clear > 0 else f"*{text}*" if clear < 0 else text


def _write_paired(suite: Suite, tests: Mapping, out: Path, labels: list[str],
                  cols: list[str], meta: Mapping) -> None:
    base = ", ".join(map(str, tests["baseline_label"].values())) or tests["baseline"]
    alpha = tests["alpha"]
    md = [f"# {suite.title}: paired tests against {base}", "",
          f"Each cell: the row's recall minus the baseline row's ({base}) in points, the mean "
          f"over the repetitions, then the exact McNemar p-value of each repetition (the "
          f"row's and the baseline's runs of the same seed, on the same test queries; "
          f"`python -m vgjax.eval.compare`). **Bold**: higher with p < {alpha:g} in every "
          f"repetition; *italic*: lower with p < {alpha:g} in every repetition. The p-values "
          f"are per cell, not corrected for the number of cells.", ""]
    md.append("| " + " | ".join(labels + cols) + " |")
    md.append("|" + "---|" * (len(labels) + len(cols)))
    for r in tests["rows"]:
        md.append("| " + " | ".join([r["label"].get(k, "") for k in labels]
                                    + [_paired_text(r["cells"][c]) for c in cols]) + " |")
    md += ["", f"Produced by `{meta.get('command', '')}` on {meta.get('machine', '')}, "
           f"{meta.get('date', '')}, table at commit {meta.get('commit', '')}."]
    (out / f"{suite.name}_paired.md").write_text("\n".join(md) + "\n")


TRAIN_TIME = "train min"  # the column of `train_time` suites


def _cell_text(v, repeats: int) -> str:
    if v is None:
        return "failed" if repeats else "-"
    text = f"{v['mean']:.1f}"
    if v["n"] > 1:
        text += f" ± {v['std']:.1f}"
    if v["n"] < repeats:
        text += f" ({v['n']}/{repeats})"
    return text


def write_tables(suite: Suite, rows: list[dict], out: Path, repeats: int,
                 meta: Mapping, chance: Mapping[str, Mapping[str, float]] | None = None,
                 tests: Mapping | None = None) -> None:
    """OUT/<name>.md, .csv and .json; `chance` ({dataset: {"R@1": ..}}, the recalls of a
    random ranking) is a last, italic row where given; `tests` (from `paired`) also
    writes OUT/<name>_paired.md and goes into the .json as "paired"."""
    labels = list(dict.fromkeys(k for r in rows for k in r["label"]))
    cols = [f"{ds}/{rc}" for ds in suite.datasets for rc in suite.recalls]
    status = lambda r: ("failed" if any(x["status"] == "failed" for x in r["runs"])
                        else "-")
    md = [f"# {suite.title}", "", f"Mean ± std over {repeats} repetition(s); "
          f"{meta.get('note', '')}".rstrip(), ""]
    timed = [TRAIN_TIME] if suite.train_time else []
    md.append("| " + " | ".join(labels + timed + cols) + " |")
    md.append("|" + "---|" * (len(labels) + len(timed) + len(cols)))
    for r in rows:
        vals = [_cell_text(r["values"][c], repeats) if r["values"][c] else status(r)
                for c in cols]
        if timed:
            vals.insert(0, _cell_text(r["train_min"], repeats) if r.get("train_min")
                        else status(r))
        md.append("| " + " | ".join([r["label"].get(k, "") for k in labels] + vals) + " |")
    chance_cells = [(chance or {}).get(ds, {}).get(rc) for ds in suite.datasets
                    for rc in suite.recalls]
    chance_labels = [CHANCE_LABEL] + [""] * (len(labels) - 1) if labels else []
    if chance:
        md.append("| " + " | ".join([f"*{x}*" if x else "" for x in chance_labels]
                                    + [""] * len(timed)
                                    + ["-" if v is None else f"*{v:.1f}*"
                                       for v in chance_cells]) + " |")
    failed = [(r["name"], x.get("error", "")) for r in rows for x in r["runs"]
              if x["status"] == "failed"]
    if failed:
        md += ["", "Failed runs:"] + [f"- `{n}`: {e.splitlines()[-1] if e else ''}"
                                      for n, e in failed]
    if suite.notes:
        md += ["", suite.notes]
    commits = ", ".join(run_commits(rows)) or "-"
    md += ["", f"Produced by `{meta.get('command', '')}` on {meta.get('machine', '')}, "
           f"{meta.get('date', '')}: runs at commit {commits}, table at commit "
           f"{meta.get('commit', '')}."]
    (out / f"{suite.name}.md").write_text("\n".join(md) + "\n")
    with open(out / f"{suite.name}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(labels + [f"{c} mean" for c in timed + cols]
                   + [f"{c} std" for c in timed + cols])
        for r in rows:
            v = [r.get("train_min") for _ in timed] + [r["values"][c] for c in cols]
            w.writerow([r["label"].get(k, "") for k in labels]
                       + [("" if x is None else round(x["mean"], 3)) for x in v]
                       + [("" if x is None else round(x["std"], 3)) for x in v])
        if chance:
            w.writerow(chance_labels + [""] * len(timed)
                       + ["" if x is None else round(x, 3) for x in chance_cells]
                       + [""] * (len(timed) + len(cols)))
    (out / f"{suite.name}.json").write_text(json.dumps(
        {"suite": dataclasses.asdict(suite), "meta": dict(meta), "rows": rows,
         "chance": dict(chance or {}), "paired": tests},
        indent=1, default=str) + "\n")
    if tests is not None:
        _write_paired(suite, tests, out, labels, cols, meta)
