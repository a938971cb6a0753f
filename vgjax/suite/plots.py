"""A suite's plots: one PNG per kind its `plots` field names, OUT/<name>_<kind>.png.

Each kind is a function `(suite, rows, runs_dir) -> Figure` registered in `PLOTS`, given
the suite, its averaged rows (`vgjax.suite.results.aggregate`) and the folder of its runs:

    val         validation R@5 per epoch of every trained cell, every repetition
    lr          the learning rate per epoch of the rows that schedule it (the paper's Fig. 3)
    brightness  recall vs the brightness factor of the training queries (Table IV), the
                baseline row dashed
    multiscale  recall per multi-scale method and scale list (Table III)

Figures are drawn off-screen (matplotlib's Agg canvas, no pyplot state).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vgjax.config import ConfigError
from vgjax.config.sweep import Suite, run_name
from vgjax.registry import Registry
from vgjax.suite.results import epoch_records

PLOTS = Registry("plots", fixed=("suite", "rows", "runs_dir"))


def _figure(w: float, h: float, nrows: int = 1, ncols: int = 1):
    """(figure, axes (nrows, ncols)) drawn off-screen (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _finish(fig, ax):
    """A single-panel plot's grid, legend (where something is labelled) and layout."""
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def _label(row: dict) -> str:
    return ", ".join(v for v in row["label"].values())


def _epoch_curves(suite: Suite, runs_dir: Path, shown: list[str], values, ylabel: str):
    """One curve per repetition of each cell in `shown` (the first solid, others dashed, one
    colour per cell), `values(epoch records)` along the epochs."""
    from matplotlib.ticker import MaxNLocator
    fig, axes = _figure(7, 4)
    ax = axes[0, 0]
    for i, name in enumerate(shown):
        cell_label = _label(next(c for c in suite.cells if c["name"] == name))
        k = 0
        while (runs_dir / run_name(name, k)).is_dir():
            ys = values(epoch_records(runs_dir / run_name(name, k)))
            if ys:
                ax.plot(range(len(ys)), ys, marker="o", markersize=3, color=f"C{i % 10}",
                        linestyle="-" if k == 0 else "--",
                        label=cell_label if k == 0 else None)
            k += 1
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (dashed: repetitions after the first)")
    ax.set_ylabel(ylabel)
    return fig, ax


@PLOTS.register("val")
def val_curves(suite: Suite, rows: list[dict], runs_dir: Path):
    """Validation R@5 per epoch of every trained cell."""
    key = "val/R@5"
    fig, ax = _epoch_curves(
        suite, runs_dir, [c["name"] for c in suite.cells],
        lambda recs: [r["metrics"].get(key) for r in recs if key in r.get("metrics", {})],
        "validation R@5 (%)")
    return _finish(fig, ax)


@PLOTS.register("lr")
def lr_curves(suite: Suite, rows: list[dict], runs_dir: Path):
    """The learning rate per epoch of the cells whose `scheduler` label is not "none" (all
    cells where none is), log scale: the paper's Fig. 3."""
    shown = [c["name"] for c in suite.cells
             if c["label"].get("scheduler", "none") != "none"] or [c["name"] for c in suite.cells]
    fig, ax = _epoch_curves(suite, runs_dir, shown, lambda recs: [r["lr"] for r in recs],
                            "learning rate")
    ax.set_yscale("log")
    ax.set_title("Learning rate per epoch (Fig. 3)")
    return _finish(fig, ax)


@PLOTS.register("brightness")
def brightness(suite: Suite, rows: list[dict], runs_dir: Path):
    """Each column's recall vs the rows' `brightness` label as a number; the row whose label
    is not a number (the baseline) is a dashed line of the column's colour."""
    def factor(row):
        try:
            return float(row["label"].get("brightness", "nan"))
        except ValueError:  # the baseline row
            return math.nan
    fig, axes = _figure(7, 4)
    ax = axes[0, 0]
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
    return _finish(fig, ax)


@PLOTS.register("multiscale")
def multiscale(suite: Suite, rows: list[dict], runs_dir: Path):
    """Recall per multi-scale method: one panel per dataset and recall (the first two
    recalls), the scale lists along x, one marker per method, the single-scale row dashed.
    The rows' first label names the method, the second the scale list ("-": single scale)."""
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
    """The plots the suite asks for, as PNGs in OUT/; a kind not in `PLOTS` is a
    ConfigError naming the suite."""
    written = []
    for kind in suite.plots:
        try:
            draw = PLOTS.get(kind)
        except ConfigError as e:
            raise ConfigError(f"suite {suite.name}: {e}") from None
        path = out / f"{suite.name}_{kind}.png"
        draw(suite, rows, runs_dir).savefig(path, dpi=90)
        written.append(path)
    return written
