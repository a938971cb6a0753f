"""How hard a built (or planned) city's splits are to guess: positives per query and the
recalls of a random ranking (chance), from the positions alone."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vgjax.synthetic.specs import DATASET_SPECS, NIGHT_SUBSET

RECALL_VALUES = (1, 5, 10, 20)
SOFT_DIST = 25.0  # metres: a query's positives when testing (soft positives)
HARD_DIST = 10.0  # metres: a training query's positives (hard positives)


def split_stats(db_utm, query_utm, recall_values=RECALL_VALUES) -> dict:
    """Database and query counts, database images within 25 m (positives) and 10 m (hard
    positives) of each query as mean/min/max, and the recalls (%) a uniformly random ranking
    of the database gets on average (`vgjax.eval.recalls.chance_from_counts`)."""
    from vgjax.data.positives import positives_within
    from vgjax.eval.recalls import chance_from_counts

    db = np.asarray(db_utm, np.float64).reshape(-1, 2)
    queries = np.asarray(query_utm, np.float64).reshape(-1, 2)

    def counts(radius) -> np.ndarray:
        found = positives_within(db, queries, radius) if len(queries) else []
        return np.array([len(f) for f in found], np.int64)

    def summary(c: np.ndarray) -> dict:
        if not len(c):
            return {"mean": float("nan"), "min": 0, "max": 0}
        return {"mean": round(float(c.mean()), 2), "min": int(c.min()), "max": int(c.max())}

    soft_counts = counts(SOFT_DIST)
    chance = chance_from_counts(soft_counts, len(db), recall_values)
    return {
        "database": len(db),
        "queries": len(queries),
        "positives_25m": summary(soft_counts),
        "hard_positives_10m": summary(counts(HARD_DIST)),
        "chance": {k: round(v, 3) for k, v in chance.items()},
    }


def folder_stats(folder: str | os.PathLike, recall_values=RECALL_VALUES) -> dict:
    """`split_stats` of a written split folder holding `database/` and `queries/`."""
    from vgjax.data import format as fmt

    utm = {role: fmt.utm_array(fmt.list_images(Path(folder) / role))
           for role in ("database", "queries")}
    return split_stats(utm["database"], utm["queries"], recall_values)


def plan_stats(preset: str = "demo", seed: int = 0, datasets=None,
               recall_values=RECALL_VALUES) -> dict[str, dict[str, dict]]:
    """{dataset: {split: split_stats}} of a preset's planned positions, nothing rendered
    (tokyo-night: tokyo-xs's database and night queries)."""
    from vgjax.synthetic.specs import DATASETS
    from vgjax.synthetic.views import plan

    datasets = tuple(DATASETS if datasets is None else datasets)
    wanted = tuple(d for d in datasets if d in DATASETS)
    views = plan("/planned", preset, seed, wanted)
    night, source = NIGHT_SUBSET
    out: dict[str, dict[str, dict]] = {}
    for name in wanted:
        base = source if name == night else name
        out[name] = {}
        for split in DATASET_SPECS[base].splits:
            vs = views[base][split]
            db = [(v.east, v.north) for v in vs if _role(v) == "database"]
            queries = [(v.east, v.north) for v in vs if _role(v) == "queries"
                       and (name != night or v.time_of_day == "night")]
            out[name][split] = split_stats(db, queries, recall_values)
    return out


def _role(view) -> str:
    return Path(view.path).parent.name


def stats_table(stats: dict[str, dict[str, dict]]) -> str:
    """A text table of `{dataset: {split: split_stats}}` (what the command line prints)."""
    recalls = None
    rows = []
    for name, splits in stats.items():
        for split, s in splits.items():
            recalls = recalls or list(s["chance"])
            p, h = s["positives_25m"], s["hard_positives_10m"]
            rows.append([f"{name}/{split}", str(s["database"]), str(s["queries"]),
                         f"{p['mean']:.1f} [{p['min']}, {p['max']}]",
                         f"{h['mean']:.1f} [{h['min']}, {h['max']}]"]
                        + [f"{s['chance'][r]:.2f}" for r in recalls])
    head = (["split", "database", "queries", "positives 25 m", "within 10 m"]
            + [f"chance {r}" for r in (recalls or [])])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head)] + [line(r) for r in rows])
