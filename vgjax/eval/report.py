"""Outputs of an evaluation: recall tables, results.json, predictions .npz and pictures.

Pictures use matplotlib's Agg canvas directly (no pyplot, no display needed).
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from vgjax.data.format import parse_fields
from vgjax.data.pipeline import load_image
from vgjax.data.positives import to_padded
from vgjax.eval.recalls import correct_from_positives, correct_matrix, geo_distances

PICTURE_SIZE = (240, 320)  # (H, W) of each thumbnail


def format_table(rows: Mapping[str, Mapping[str, float]], counts: Mapping[str, int] | None = None,
                 title: str = "", protocols: Mapping[str, str] | None = None) -> str:
    """A fixed-width text table: one row per name, one column per recall key, then the
    row's protocol where `protocols` gives one (`results_protocols`)."""
    if not rows:
        return "(no results)"
    cols = list(next(iter(rows.values())).keys())
    name_w = max(7, *(len(n) for n in rows))
    head = f"{'dataset':<{name_w}}" + ("  queries" if counts else "") + \
        "".join(f"{c:>8}" for c in cols)
    lines = ([title] if title else []) + [head, "-" * len(head)]
    for name, rec in rows.items():
        line = f"{name:<{name_w}}"
        if counts:
            line += f"{counts.get(name, ''):>9}"
        line += "".join(f"{rec.get(c, float('nan')):>8.1f}" for c in cols)
        if protocols and protocols.get(name):
            line += f"  [{protocols[name]}]"
        lines.append(line)
    return "\n".join(lines)


def results_rows(results: Sequence) -> tuple[dict, dict]:
    """{'name': recalls, 'name/night': recalls, ..., 'name (chance)': a random ranking's
    recalls} and query counts, from EvalResults."""
    rows, counts = {}, {}
    for r in results:
        rows[r.name] = r.recalls
        counts[r.name] = r.num_queries
        for dom, rec in r.domain_recalls.items():
            rows[f"{r.name}/{dom}"] = rec
            counts[f"{r.name}/{dom}"] = r.domain_counts[dom]
        if r.chance:  # the level the dataset's recalls mean something above
            rows[f"{r.name} (chance)"] = r.chance
            counts[f"{r.name} (chance)"] = r.num_queries
    return rows, counts


def results_protocols(results: Sequence) -> dict[str, str]:
    """{row name of `results_rows`: its protocol in one line} for the results that record
    one."""
    out = {}
    for r in results:
        label = r.protocol_label() if hasattr(r, "protocol_label") else ""
        if not label:
            continue
        out[r.name] = out[f"{r.name} (chance)"] = label
        for dom in r.domain_recalls:
            out[f"{r.name}/{dom}"] = label
    return out


def _clean(recalls: Mapping[str, float]) -> dict:
    return {k: (None if math.isnan(v) else round(float(v), 4)) for k, v in recalls.items()}


def write_results_json(results: Sequence, path: str | os.PathLike) -> Path:
    """`path` = `{"<name>": {"R@1": .., ..., "protocol": {...}}}` (percent; the protocol
    as `Protocol.to_dict` gives it: dataset, split, rule, threshold, queries) and, beside it,
    `results_domains.json` = `{"<name>": {"<domain>": {"R@1": ..}}}` for datasets whose
    query file names say their domain (day / sunset / night)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = {}
    for r in results:
        entries[r.name] = _clean(r.recalls)
        if getattr(r, "protocol", None) is not None:
            entries[r.name]["protocol"] = r.protocol.to_dict()
    path.write_text(json.dumps(entries, indent=2) + "\n")
    domains = {r.name: {d: _clean(rec) for d, rec in r.domain_recalls.items()}
               for r in results if r.domain_recalls}
    if domains:
        (path.parent / "results_domains.json").write_text(json.dumps(domains, indent=2) + "\n")
    return path


def save_predictions(path: str | os.PathLike, result, split) -> Path:
    """Writes `query_paths`, `db_paths` (unicode), `topk_indices` (-1 = none),
    `topk_distances` (squared L2 in descriptor space), `query_utm`, `db_utm` (so that
    `recalls_from_predictions` can recompute recalls), `recall_values` and `method`; for a
    split scored by a protocol's ground truth, also `positives` ((Q, P) database indices
    padded with -1)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path,
             query_paths=np.asarray(split.queries.paths, dtype=str),
             db_paths=np.asarray(split.database.paths, dtype=str),
             topk_indices=np.asarray(result.topk_indices, np.int64),
             topk_distances=np.asarray(result.topk_distances, np.float32),
             query_utm=np.asarray(split.queries.utm, np.float64),
             db_utm=np.asarray(split.database.utm, np.float64),
             recall_values=np.array([int(k[2:]) for k in result.recalls], np.int64),
             method=np.array(result.method), **_ground_truth(split))
    return path


def _ground_truth(split) -> dict:
    if not getattr(split, "query_sets", ()):
        return {}
    return {"positives": to_padded(list(split.query_sets[0].positives))}


def _thumbnail(path: str, read=load_image) -> np.ndarray:
    try:
        return read(path, PICTURE_SIZE)
    except OSError:
        return np.full((*PICTURE_SIZE, 3), 128, np.uint8)


def save_pictures(result, split, out_dir: str | os.PathLike, *, num: int = 10,
                  only_wrong: bool = False, topk: int = 5, positive_dist: float = 25.0,
                  seed: int = 0, reader=None) -> list[Path]:
    """One PNG per query: the query, then its top-k with a green (within `positive_dist`)
    or red border and the distance to the query in metres. Queries are drawn at random
    (reproducibly) among all, or among those whose first prediction is wrong."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    topk = min(topk, result.topk_indices.shape[1])
    metres = geo_distances(result.topk_indices[:, :topk], split.queries.utm, split.database.utm)
    if getattr(split, "query_sets", ()):  # a protocol's ground truth, one query set
        correct = correct_from_positives(result.topk_indices[:, :topk],
                                         split.query_sets[0].positives)
    else:
        correct = correct_matrix(result.topk_indices[:, :topk], split.queries.utm,
                                 split.database.utm, positive_dist)
    candidates = np.flatnonzero(~correct[:, 0]) if only_wrong else np.arange(len(metres))
    if len(candidates) > num:
        candidates = np.sort(np.random.default_rng(seed).choice(candidates, num, replace=False))
    written = []
    for q in candidates:
        fig = Figure(figsize=(2.2 * (topk + 1), 2.3))
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, topk + 1)
        axes[0].imshow(_thumbnail(split.queries.paths[q], reader or load_image))
        try:
            note = parse_fields(split.queries.paths[q])["note"]
        except ValueError:  # a benchmark's own file names
            note = ""
        axes[0].set_title(f"query {q}" + (f" ({note})" if note else ""), fontsize=8)
        for r in range(topk):
            ax = axes[r + 1]
            idx = int(result.topk_indices[q, r])
            if idx < 0:
                ax.set_title("(none)", fontsize=8)
                continue
            ax.imshow(_thumbnail(split.database.paths[idx], reader or load_image))
            colour = "limegreen" if correct[q, r] else "red"
            ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False,
                                   edgecolor=colour, linewidth=6, clip_on=False))
            where = f"{metres[q, r]:.1f} m" if np.isfinite(metres[q, r]) else (
                "positive" if correct[q, r] else "negative")
            ax.set_title(f"#{r + 1}  {where}", fontsize=8, color=colour)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout()
        path = out_dir / f"query_{q:06d}.png"
        fig.savefig(path, dpi=80)
        written.append(path)
    return written


def save_recall_curve(correct_by_name: Mapping[str, np.ndarray], path: str | os.PathLike) -> Path:
    """Recall@N for N = 1..K, one line per name, from (Q, K) correctness matrices."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(5, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for name, correct in correct_by_name.items():
        correct = np.asarray(correct, bool)
        n = np.arange(1, correct.shape[1] + 1)
        curve = 100.0 * np.logical_or.accumulate(correct, axis=1).mean(0) if len(correct) else n * 0.0
        ax.plot(n, curve, marker="o", markersize=3, label=name)
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("N")
    ax.set_ylabel("recall@N (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
