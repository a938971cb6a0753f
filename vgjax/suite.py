"""Experiment suites: a grid of runs (cells x repetitions) described by a suite file, run
resumably, averaged into a table shaped like the paper's, with plots.

A suite file (`configs/suites/<table>.py`) has `get_suite(arg=None)` returning a dict:

    name      "table2_optimizers"
    title     "Table II: optimizers, learning rates, weight decay and schedulers"
    config    the base config file, e.g. "configs/resnet18_netvlad.py"
    overrides {field: value} for every cell
    cells     [{"name": .., "label": {column: text}, "overrides": {field: value}}, ...]
              (build them with `product` / `zipped` / `cell`, big_vision's get_hyper style)
    evals     optional: [{"name": .., "label": .., "overrides": {test field: value}}, ...]
              -> every cell is trained once per repetition and each eval row re-evaluates
              its best model (no retraining per row; the paper's Table III)
    datasets  test datasets = table columns; recalls: recall columns, e.g. ["R@1", "R@5"]
    plots     any of "val", "lr", "brightness", "multiscale"
    baseline  the row every other row is tested against, query by query (default "": the
              first row; None: no paired tests) -> OUT/<name>_paired.md

Each run lives in `OUT/runs/<cell>-rep<k>/` (seed k); one that has `results.json` is done
and skipped, one that was killed resumes from its checkpoint. A run that fails is recorded
with its error and the table shows it as missing, never as a number.
"""
from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from vgjax.config import ConfigError


# Sweeps -------------------------------------------------------------------------------------

def cell(name: str, label: Mapping[str, str] | None = None, **overrides) -> dict:
    """One row: `cell("adam-1e-5", {"optimizer": "Adam"}, **{"train.lr": 1e-5})`."""
    return {"name": name, "label": dict(label or {"setting": name}), "overrides": overrides}


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _rows(axes, combinations, labels) -> list[dict]:
    """One cell per combination of values: named and labelled by the values."""
    labels = dict(labels or {})
    out = []
    for values in combinations:
        overrides = {field: v for (field, _), v in zip(axes, values)}
        out.append({"name": "-".join(_fmt(v) for v in values).replace(" ", ""),
                    "label": {labels.get(f, f.split(".")[-1]): _fmt(v)
                              for f, v in overrides.items()},
                    "overrides": overrides})
    return out


def product(*axes: tuple[str, Sequence], labels: Mapping[str, str] | None = None) -> list[dict]:
    """Every combination of the axes `(field, values)`; names and labels from the values."""
    return _rows(axes, itertools.product(*(vals for _, vals in axes)), labels)


def zipped(*axes: tuple[str, Sequence], labels: Mapping[str, str] | None = None) -> list[dict]:
    """Axes `(field, values)` of equal length taken together, row by row."""
    lengths = {len(vals) for _, vals in axes}
    if len(lengths) != 1:
        raise ValueError(f"zipped axes have different lengths: {sorted(lengths)}")
    return _rows(axes, zip(*(vals for _, vals in axes)), labels)


# Suites -------------------------------------------------------------------------------------

@dataclasses.dataclass
class Suite:
    name: str
    title: str
    config: str
    cells: list[dict]
    datasets: list[str]
    recalls: list[str]
    overrides: dict = dataclasses.field(default_factory=dict)
    evals: list[dict] = dataclasses.field(default_factory=list)
    plots: list[str] = dataclasses.field(default_factory=list)
    notes: str = ""
    baseline: str | None = ""  # "": the first row; None: no paired tests

    @classmethod
    def from_dict(cls, d: Mapping) -> Suite:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"suite: unknown field {unknown[0]!r} (accepted: "
                              f"{', '.join(sorted(names))})")
        suite = cls(**{k: v for k, v in d.items()})
        seen = set()
        for c in suite.cells + suite.evals:
            if not c["name"] or "/" in c["name"] or c["name"] in seen:
                raise ConfigError(f"suite {suite.name}: cell names must be unique, non-empty "
                                  f"and without '/': {c['name']!r}")
            seen.add(c["name"])
        names = [r["name"] for r in suite.rows()]
        if suite.baseline and suite.baseline not in names:
            raise ConfigError(f"suite {suite.name}: baseline {suite.baseline!r} is not a row "
                              f"(rows: {', '.join(names)})")
        return suite

    def baseline_row(self) -> dict | None:
        """The row the paired tests compare every other row with (None: no paired tests)."""
        if self.baseline is None:
            return None
        rows = self.rows()
        return next((r for r in rows if r["name"] == self.baseline), rows[0] if rows else None)

    def rows(self) -> list[dict]:
        """The table's rows: the cells, or the eval rows of each cell."""
        if not self.evals:
            return [dict(c, cell=c["name"]) for c in self.cells]
        rows = []
        for c in self.cells:
            for e in self.evals:
                label = {**c["label"], **e["label"]} if len(self.cells) > 1 else e["label"]
                rows.append({"name": e["name"] if len(self.cells) == 1 else
                             f"{c['name']}-{e['name']}", "label": label, "cell": c["name"],
                             "eval": e})
        return rows


def run_name(cell_name: str, rep: int) -> str:
    return f"{cell_name}-rep{rep}"


def override_args(overrides: Mapping) -> list[str]:
    """{field: value} -> ['--config.field=value', ...] as `vgjax.config` parses them (a dict
    value sets each of its keys: {"train.scheduler_args": {"patience": 0}})."""
    out = []
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            out += override_args({f"{key}.{k}": v for k, v in value.items()})
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            text = json.dumps(list(value))
        else:
            text = str(value)
        out.append(f"--config.{key}={text}")
    return out


# Results ------------------------------------------------------------------------------------

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
        out.append({"name": row["name"], "label": row["label"], "values": cells,
                    "runs": runs})
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


def _cell_text(v, repeats: int) -> str:
    if v is None:
        return "failed" if repeats else "-"
    text = f"{v['mean']:.1f}"
    if v["n"] > 1:
        text += f" ± {v['std']:.1f}"
    if v["n"] < repeats:
        text += f" ({v['n']}/{repeats})"
    return text


CHANCE_LABEL = "chance (random ranking)"


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
    md.append("| " + " | ".join(labels + cols) + " |")
    md.append("|" + "---|" * (len(labels) + len(cols)))
    for r in rows:
        vals = [_cell_text(r["values"][c], repeats) if r["values"][c] else status(r)
                for c in cols]
        md.append("| " + " | ".join([r["label"].get(k, "") for k in labels] + vals) + " |")
    chance_cells = [(chance or {}).get(ds, {}).get(rc) for ds in suite.datasets
                    for rc in suite.recalls]
    chance_labels = [CHANCE_LABEL] + [""] * (len(labels) - 1) if labels else []
    if chance:
        md.append("| " + " | ".join([f"*{x}*" if x else "" for x in chance_labels]
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
        w.writerow(labels + [f"{c} mean" for c in cols] + [f"{c} std" for c in cols])
        for r in rows:
            v = [r["values"][c] for c in cols]
            w.writerow([r["label"].get(k, "") for k in labels]
                       + [("" if x is None else round(x["mean"], 3)) for x in v]
                       + [("" if x is None else round(x["std"], 3)) for x in v])
        if chance:
            w.writerow(chance_labels
                       + ["" if x is None else round(x, 3) for x in chance_cells]
                       + [""] * len(cols))
    (out / f"{suite.name}.json").write_text(json.dumps(
        {"suite": dataclasses.asdict(suite), "meta": dict(meta), "rows": rows,
         "chance": dict(chance or {}), "paired": tests},
        indent=1, default=str) + "\n")
    if tests is not None:
        _write_paired(suite, tests, out, labels, cols, meta)


def epoch_records(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if r.get("type") == "epoch":
            out.append(r)
    return out


def _figure(w: float, h: float, nrows: int = 1, ncols: int = 1):
    """(figure, axes (nrows, ncols)) drawn off-screen (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _multiscale_figure(rows: list[dict]):
    """Recall per multi-scale method: one panel per dataset and recall (the first two
    recalls), the scale lists along x, one marker per method, the single-scale row dashed."""
    keys = list(rows[0]["label"]) if rows else []
    series_key, group_key = (keys + [None, None])[:2]
    single = [r for r in rows if group_key and r["label"].get(group_key) == "-"]
    multi = [r for r in rows if r not in single]
    groups = list(dict.fromkeys(r["label"].get(group_key, "") for r in multi))
    series = list(dict.fromkeys(r["label"].get(series_key, "") for r in multi))
    cols = list(rows[0]["values"]) if rows else []
    datasets = list(dict.fromkeys(c.split("/")[0] for c in cols))
    recalls = list(dict.fromkeys(c.split("/", 1)[-1] for c in cols))[:2]
    fig, axes = _figure(3.2 * max(1, len(recalls)) + 1.5, 2.2 * max(1, len(datasets)),
                        max(1, len(datasets)), max(1, len(recalls)))
    width = 0.6 / max(1, len(series))
    for i, ds in enumerate(datasets):
        for j, rk in enumerate(recalls):
            ax, col = axes[i, j], f"{ds}/{rk}"
            for k, name in enumerate(series):
                ys = []
                for g in groups:
                    r = next((r for r in multi if r["label"].get(series_key, "") == name
                              and r["label"].get(group_key, "") == g), None)
                    v = r["values"].get(col) if r else None
                    ys.append(v["mean"] if v else np.nan)
                ax.plot(np.arange(len(groups)) + (k - (len(series) - 1) / 2) * width * 0.5, ys,
                        marker="os^v"[k % 4], linestyle="none", label=name, color=f"C{k}")
            for r in single:
                v = r["values"].get(col)
                if v:
                    ax.axhline(v["mean"], color="k", linestyle="--", linewidth=1,
                               label=f"{r['label'].get(series_key, '')} (single scale)")
            ax.set_xticks(np.arange(len(groups)))
            ax.set_xticklabels(groups, fontsize=6)
            ax.set_xlim(-0.5, len(groups) - 0.5)
            ax.set_title(col, fontsize=8)
            ax.tick_params(axis="y", labelsize=7)
            ax.grid(alpha=0.3, axis="y")
            ax.margins(y=0.25)  # the differences are a few points: the axis shows their range
    handles, names = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="upper center", ncol=len(names), fontsize=7)
    fig.supylabel("recall (%)", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))  # room for the legend
    return fig


def write_plots(suite: Suite, rows: list[dict], runs_dir: Path, out: Path) -> list[Path]:
    """The plots the suite asks for, as PNGs in OUT/."""
    from matplotlib.ticker import MaxNLocator

    def label(row):
        return ", ".join(v for v in row["label"].values())

    written = []
    trained = [c["name"] for c in suite.cells]
    for kind in suite.plots:
        if kind not in ("val", "lr", "brightness", "multiscale"):
            raise ConfigError(f"suite {suite.name}: unknown plot {kind!r} "
                              "(accepted: val, lr, brightness, multiscale)")
        path = out / f"{suite.name}_{kind}.png"
        if kind == "multiscale":  # a grid of panels of its own
            _multiscale_figure(rows).savefig(path, dpi=90)
            written.append(path)
            continue
        fig, axes = _figure(7, 4)
        ax = axes[0, 0]
        if kind in ("val", "lr"):
            shown = trained
            if kind == "lr":  # Fig. 3: the rows that schedule their rate
                shown = [c["name"] for c in suite.cells
                         if c["label"].get("scheduler", "none") != "none"] or trained
            key = "val/R@5"
            for i, name in enumerate(shown):  # every repetition: the first solid, others dashed
                cell_label = label(next(c for c in suite.cells if c["name"] == name))
                k = 0
                while (runs_dir / run_name(name, k)).is_dir():
                    recs = epoch_records(runs_dir / run_name(name, k))
                    ys = [r["metrics"].get(key) if kind == "val" else r["lr"] for r in recs
                          if kind == "lr" or key in r.get("metrics", {})]
                    if ys:
                        ax.plot(range(len(ys)), ys, marker="o", markersize=3, color=f"C{i % 10}",
                                linestyle="-" if k == 0 else "--",
                                label=cell_label if k == 0 else None)
                    k += 1
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch (dashed: repetitions after the first)")
            ax.set_ylabel("validation R@5 (%)" if kind == "val" else "learning rate")
            if kind == "lr":
                ax.set_yscale("log")
                ax.set_title("Learning rate per epoch (Fig. 3)")
        elif kind == "brightness":
            def factor(row):
                try:
                    return float(row["label"].get("brightness", "nan"))
                except ValueError:  # the baseline row
                    return math.nan
            pts = sorted(((factor(r), r["values"]) for r in rows if not math.isnan(factor(r))),
                         key=lambda p: p[0])
            base = [r["values"] for r in rows if math.isnan(factor(r))]
            for i, col in enumerate(rows[0]["values"] if rows else []):
                colour = f"C{i}"
                xs = [x for x, v in pts if v[col]]
                ys = [v[col]["mean"] for x, v in pts if v[col]]
                if xs:
                    ax.plot(xs, ys, marker="o", color=colour, label=col)
                if base and base[0][col]:
                    ax.axhline(base[0][col]["mean"], color=colour, linestyle="--", alpha=0.5)
            ax.set_xlabel("brightness factor of the training queries")
            ax.set_ylabel("recall (%)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        written.append(path)
    return written
