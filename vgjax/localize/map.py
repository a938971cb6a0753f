"""`OUT/map.png`: the database's places, each query's predicted place (its top-1 match)
marked and labelled, and, where a query's own place is known, a line from it to the
prediction. Queries are numbered 1..Q in the order of predictions.csv, as their pictures'
titles number them. Plain axes in the database's system (no map tiles, nothing
downloaded)."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from vgjax.localize.coordinates import AXIS_LABELS, Places
from vgjax.localize.predictions import Predictions

MAX_LABELS = 40  # queries labelled by name; past this, markers only


def save_map(preds: Predictions, database: Places, path: str | os.PathLike) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()

    def xy(values):  # (..., 2) in the system -> x, y to draw
        values = np.asarray(values)
        if database.system == "latlon":
            return values[..., 1], values[..., 0]
        return values[..., 0], values[..., 1]

    known = database.known
    ax.scatter(*xy(database.values[known]), s=6, c="0.65", label="database", zorder=1)
    predicted = preds.match_places(database)[:, 0]
    truth = preds.query_places.values
    has_truth = np.isfinite(truth).all(axis=1) & np.isfinite(predicted).all(axis=1)
    if has_truth.any():
        for t, p in zip(truth[has_truth], predicted[has_truth]):
            (tx, px), (ty, py) = xy(np.stack([t, p]))
            ax.plot([tx, px], [ty, py], color="tab:blue", linewidth=0.8, zorder=2)
        ax.scatter(*xy(truth[has_truth]), marker="x", s=30, c="tab:blue",
                   label="query's own place", zorder=3)
    ok = np.isfinite(predicted).all(axis=1)
    ax.scatter(*xy(predicted[ok]), marker="*", s=110, c="tab:red", edgecolors="k",
               linewidths=0.4, label="predicted place (top-1)", zorder=4)
    if ok.sum() <= MAX_LABELS:
        px, py = xy(predicted)
        stacked: dict[tuple[float, float], int] = {}  # labels already at a place
        for q in np.flatnonzero(ok):
            n = stacked.get((px[q], py[q]), 0)
            stacked[(px[q], py[q])] = n + 1
            ax.annotate(f"{q + 1} ({preds.confidences[q, 0]:.2f})",
                        (px[q], py[q]), xytext=(5, 4 + 8 * n), textcoords="offset points",
                        fontsize=6, color="darkred")
    xlabel, ylabel = AXIS_LABELS[database.system]
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if database.system == "latlon" and known.any():
        mean_lat = float(np.nanmean(database.values[known, 0]))
        ax.set_aspect(1.0 / max(math.cos(math.radians(mean_lat)), 1e-3), adjustable="datalim")
    else:
        ax.set_aspect("equal", adjustable="datalim")
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(f"{len(preds.queries)} queries on {int(known.sum())} database places "
                 "(label: query number, top-1 confidence)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return Path(path)
