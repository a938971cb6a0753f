"""Is model A's recall really higher than model B's? A paired test on the same queries.

Two evaluations of the same queries against the same database (their
`predictions/<dataset>.npz`) are compared query by query: for each N, the queries that A
finds within its first N predictions and B misses (`only_a`), and the reverse (`only_b`).
Under "A and B are equally good" each of these discordant queries is A's or B's with
probability 1/2, so the two-sided p-value is the exact binomial (McNemar) test on them. With a
few hundred queries, recall differences of a few points are often noise: a difference is
called clear here only when p < `alpha` (0.05 unless given). The p-values are per cell, not
corrected for the number of cells compared.

    python -m vgjax.eval.compare RUN_A RUN_B [--recall-values 1 5] [--alpha 0.05]

RUN_A / RUN_B: a run or evaluation folder holding `predictions/`, a folder of `.npz` files, or
one `.npz`. Every dataset both hold is compared; a training run's untrained model is in
`RUN/before/<entry>/` when an evaluator ran `before` training.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import stats

from vgjax.eval.recalls import correct_matrix

__all__ = ["PairedRecall", "compare", "format_comparison", "mcnemar_p", "paired_recalls",
           "prediction_files"]


@dataclasses.dataclass(frozen=True)
class PairedRecall:
    """Recall@`n` of A and B on the same `queries` of `dataset`, and the paired test."""

    dataset: str
    n: int
    queries: int
    recall_a: float  # percent
    recall_b: float
    only_a: int  # queries A finds within its first n predictions and B does not
    only_b: int
    p_value: float  # exact two-sided McNemar test on the only_a + only_b discordant queries

    @property
    def difference(self) -> float:
        return self.recall_a - self.recall_b

    def verdict(self, alpha: float = 0.05) -> str:
        """'A', 'B' (the clearly better one) or '=' (no clear difference at `alpha`)."""
        if self.p_value >= alpha or self.only_a == self.only_b:
            return "="
        return "A" if self.only_a > self.only_b else "B"


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value: binomial(only_a; only_a + only_b, 1/2)."""
    only_a, only_b = int(only_a), int(only_b)
    if only_a < 0 or only_b < 0:
        raise ValueError(f"discordant counts must be >= 0, got {only_a} and {only_b}")
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def _load(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in ("query_paths", "db_paths", "topk_indices", "query_utm",
                                      "db_utm")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        # an empty file (EOFError), a truncated one (BadZipFile), another .npz (KeyError)
        detail = str(e).strip().splitlines()[0] if str(e).strip() else "empty or truncated"
        raise ValueError(f"{path}: not a predictions file of `python -m vgjax.eval` "
                         f"({type(e).__name__}: {detail})") from None


def _relative(names) -> list[str]:
    """Each path relative to the folder all of them are in (the queries or database folder
    of the dataset, wherever its root): the same images under two roots get the same keys,
    and files of one name in different subfolders stay apart."""
    names = [str(x) for x in names]
    if not names:
        return names
    try:
        top = os.path.commonpath([os.path.dirname(x) for x in names])
    except ValueError:  # absolute and relative paths mixed
        return names
    cut = len(top.rstrip("/")) + 1 if top else 0
    return [x[cut:] for x in names]


def _order(a_names, b_names, what: str, a: Path, b: Path):
    """Indices into B's rows that line them up with A's, matching full paths, else paths
    relative to the folder that holds them all (the same dataset under two roots), else
    file names."""
    keys = (lambda xs: [str(x) for x in xs], _relative,
            lambda xs: [os.path.basename(str(x)) for x in xs])
    for key in keys:
        ka, kb = key(a_names), key(b_names)
        if len(set(ka)) == len(ka) == len(kb) == len(set(kb)) and set(ka) == set(kb):
            where = {k: i for i, k in enumerate(kb)}
            return np.array([where[k] for k in ka], np.int64)
    ka, kb = _relative(a_names), _relative(b_names)
    only_a, only_b = sorted(set(ka) - set(kb)), sorted(set(kb) - set(ka))
    example = (f"; e.g. {only_a[0]} is only in A" if only_a else
               f"; e.g. {only_b[0]} is only in B" if only_b else
               "; one of them lists an image twice")
    raise ValueError(f"{a} (A) and {b} (B) do not hold the same {what} ({len(a_names)} and "
                     f"{len(b_names)} images{example}): a paired comparison needs both models "
                     f"evaluated on the same queries and database")


def paired_recalls(a: str | os.PathLike, b: str | os.PathLike, recall_values=(1, 5, 10, 20),
                   positive_dist: float = 25.0, dataset: str | None = None) -> list[PairedRecall]:
    """One PairedRecall per N in `recall_values` for two predictions files of one dataset."""
    a, b = Path(a), Path(b)
    pa, pb = _load(a), _load(b)
    rows = _order(pa["query_paths"], pb["query_paths"], "queries", a, b)
    db = _order(pa["db_paths"], pb["db_paths"], "database", a, b)
    k = min(pa["topk_indices"].shape[1], pb["topk_indices"].shape[1])
    if max(recall_values) > k:
        raise ValueError(f"{a if pa['topk_indices'].shape[1] == k else b}: holds top-{k} "
                         f"predictions, cannot compare R@{max(recall_values)}")
    # B's database indices renamed into A's database order, then its rows into A's order
    to_a = np.empty(len(db), np.int64)
    to_a[db] = np.arange(len(db))
    top_b = pb["topk_indices"][rows]
    top_b = np.where(top_b >= 0, to_a[np.where(top_b >= 0, top_b, 0)], -1)
    hit_a = correct_matrix(pa["topk_indices"], pa["query_utm"], pa["db_utm"], positive_dist)
    hit_b = correct_matrix(top_b, pa["query_utm"], pa["db_utm"], positive_dist)
    name = dataset or a.stem
    out = []
    for n in recall_values:
        fa, fb = hit_a[:, :n].any(1), hit_b[:, :n].any(1)
        only_a, only_b = int((fa & ~fb).sum()), int((fb & ~fa).sum())
        q = len(fa)
        out.append(PairedRecall(name, int(n), q, 100.0 * fa.mean() if q else float("nan"),
                                100.0 * fb.mean() if q else float("nan"), only_a, only_b,
                                mcnemar_p(only_a, only_b)))
    return out


def prediction_files(path: str | os.PathLike) -> dict[str, Path]:
    """{dataset: .npz} of a run / evaluation folder (its predictions/), a folder of .npz
    files, or one .npz file."""
    path = Path(path)
    if path.is_file():
        return {path.stem: path}
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such predictions file or folder")
    folder = path / "predictions" if (path / "predictions").is_dir() else path
    files = {f.stem: f for f in sorted(folder.glob("*.npz"))}
    if not files:
        raise FileNotFoundError(f"{path}: holds no predictions (no predictions/<dataset>.npz; "
                                f"evaluations write them unless test.save_predictions=false)")
    return files


def compare(a: str | os.PathLike, b: str | os.PathLike, recall_values=(1, 5, 10, 20),
            positive_dist: float = 25.0,
            datasets: Sequence[str] | None = None) -> list[PairedRecall]:
    """Every dataset A and B both hold (or `datasets`), each at every N."""
    fa, fb = prediction_files(a), prediction_files(b)
    names = list(datasets) if datasets else [n for n in fa if n in fb]
    missing = [n for n in names if n not in fa or n not in fb]
    if missing or not names:
        raise ValueError(f"no predictions of {', '.join(missing) or 'a common dataset'} in "
                         f"both {a} ({', '.join(fa)}) and {b} ({', '.join(fb)})")
    return [r for n in names
            for r in paired_recalls(fa[n], fb[n], recall_values, positive_dist, dataset=n)]


def format_comparison(rows: Sequence[PairedRecall], alpha: float = 0.05, label_a: str = "A",
                      label_b: str = "B") -> str:
    """A markdown table: one line per dataset and N."""
    head = (f"| dataset | R@N | queries | {label_a} | {label_b} | difference | only {label_a} | "
            f"only {label_b} | p (exact McNemar) | clearly better (p < {alpha:g}) |")
    lines = [head, "|" + "---|" * 10]
    names = {"A": label_a, "B": label_b, "=": "no clear difference"}
    for r in rows:
        lines.append(f"| {r.dataset} | R@{r.n} | {r.queries} | {r.recall_a:.1f} | "
                     f"{r.recall_b:.1f} | {r.difference:+.1f} | {r.only_a} | {r.only_b} | "
                     f"{r.p_value:.3g} | {names[r.verdict(alpha)]} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vgjax.eval.compare",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="run / evaluation folder, folder of .npz, or one .npz (A)")
    p.add_argument("b", help="the same for B")
    p.add_argument("--recall-values", type=int, nargs="+", default=[1, 5, 10, 20],
                   metavar="N")
    p.add_argument("--positive-dist", type=float, default=25.0,
                   help="metres within which a prediction is correct (default 25)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (0.05)")
    p.add_argument("--datasets", nargs="+", help="only these datasets (default: all common)")
    args = p.parse_args(argv)
    if not 0.0 < args.alpha < 1.0:
        p.error(f"--alpha must be in (0, 1), got {args.alpha}")
    if not 0.0 < args.positive_dist < float("inf"):  # NaN fails too
        p.error(f"--positive-dist {args.positive_dist:g}: expected a positive distance in "
                "metres")
    if min(args.recall_values) < 1:
        p.error(f"--recall-values must be >= 1, got {args.recall_values}")
    try:
        rows = compare(args.a, args.b, args.recall_values, args.positive_dist, args.datasets)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"A = {args.a}\nB = {args.b}\n")
    print(format_comparison(rows, args.alpha))
    return 0


if __name__ == "__main__":
    sys.exit(main())
