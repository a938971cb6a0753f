"""A suite's results: each run folder read back, the repetitions of a row averaged, and every
row tested against the baseline row query by query.

Repetition k of a row lives in `RUNS/<row>-rep<k>/` (`vgjax.config.sweep.run_name`): a
folder with `results.json` is a finished run, one with `error.txt` a failed one (its error
recorded), anything else missing. A failed or missing run is never a number: `aggregate`
averages the finished repetitions only and counts them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vgjax.config.sweep import Suite, run_name

PROVENANCE = "provenance.json"  # written by the suite runner beside each run it starts


def _json_or_none(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_run(folder: Path) -> dict:
    """{'status': done | failed | missing, 'results': .., 'error': ..} of one run folder;
    a finished run also gives its 'config' (config.json of a training run, eval_info.json of
    an evaluation) and its 'provenance' (commit, command, time), None where not recorded."""
    results, error = folder / "results.json", folder / "error.txt"
    if results.exists():
        return {"status": "done", "results": json.loads(results.read_text()),
                "config": _json_or_none(folder / "config.json")
                or _json_or_none(folder / "eval_info.json"),
                "provenance": _json_or_none(folder / PROVENANCE)}
    if error.exists():
        return {"status": "failed", "error": error.read_text().strip()}
    return {"status": "missing"}


def run_commits(rows: list[dict]) -> list[str]:
    """The commits that produced the finished runs of `rows` ('unknown' where unrecorded)."""
    return sorted({(x.get("provenance") or {}).get("commit", "unknown")
                   for r in rows for x in r["runs"] if x["status"] == "done"})


def aggregate(suite: Suite, runs_dir: Path, repeats: int) -> list[dict]:
    """Per row: mean and std over the repetitions of each dataset x recall (None where no
    repetition finished), and each run's status."""
    out = []
    for row in suite.rows():
        runs = [read_run(runs_dir / run_name(row["name"], k)) for k in range(repeats)]
        cells = {}
        for ds in suite.datasets:
            for rc in suite.recalls:
                values = [r["results"][ds][rc] for r in runs
                          if r["status"] == "done" and ds in r["results"]
                          and r["results"][ds].get(rc) is not None]
                cells[f"{ds}/{rc}"] = ({"mean": float(np.mean(values)),
                                        "std": float(np.std(values)), "n": len(values)}
                                       if values else None)
        entry = {"name": row["name"], "label": row["label"], "values": cells, "runs": runs}
        if suite.train_time:
            minutes = [sum(float(e.get("epoch_time_s", 0.0)) for e in
                           epoch_records(runs_dir / run_name(row["name"], k))) / 60.0
                       for k, r in enumerate(runs) if r["status"] == "done"]
            entry["train_min"] = ({"mean": float(np.mean(minutes)),
                                   "std": float(np.std(minutes)), "n": len(minutes)}
                                  if minutes else None)
        out.append(entry)
    return out


def paired(suite: Suite, runs_dir: Path, repeats: int, positive_dist: float = 25.0,
           alpha: float = 0.05) -> dict | None:
    """Every row against the suite's baseline row, repetition by repetition (the row's and
    the baseline's runs of the same seed), on the same test queries: per dataset x recall,
    the difference in recall points and the exact McNemar p-value of each repetition both
    finished (`vgjax.eval.compare`). A cell is `clear` when every repetition gives
    p < alpha in the same direction (+1 / -1, else 0). None without a baseline."""
    from vgjax.eval.compare import paired_recalls
    base = suite.baseline_row()
    if base is None:
        return None
    ns = [int(rc[2:]) for rc in suite.recalls]
    out = []
    for row in suite.rows():
        if row["name"] == base["name"]:
            continue
        cells = {f"{ds}/{rc}": [] for ds in suite.datasets for rc in suite.recalls}
        for k in range(repeats):
            for ds in suite.datasets:
                a, b = (runs_dir / run_name(name, k) / "predictions" / f"{ds}.npz"
                        for name in (row["name"], base["name"]))
                if not (a.exists() and b.exists()):
                    continue
                for rc, r in zip(suite.recalls, paired_recalls(a, b, ns, positive_dist, ds)):
                    cells[f"{ds}/{rc}"].append({"rep": k, "difference": r.difference,
                                                "only_row": r.only_a, "only_baseline": r.only_b,
                                                "p": r.p_value, "verdict": r.verdict(alpha)})
        for reps in cells.values():
            verdicts = {x.pop("verdict") for x in reps}  # 'A' = the row, 'B' = the baseline
            clear = {frozenset("A"): 1, frozenset("B"): -1}.get(frozenset(verdicts), 0)
            reps[:] = [{**x, "clear": clear} for x in reps]
        out.append({"name": row["name"], "label": row["label"], "cells": cells})
    return {"baseline": base["name"], "baseline_label": base["label"], "alpha": alpha,
            "rows": out}


def epoch_records(run: Path) -> list[dict]:
    """The per-epoch records of a training run's metrics.jsonl (lines that do not parse, as
    a killed run's last one may, are skipped); [] without the file or where it cannot be
    read (a plot then lacks that run's curve, the table is still written)."""
    path = run / "metrics.jsonl"
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if r.get("type") == "epoch":
            out.append(r)
    return out
