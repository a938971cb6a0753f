"""Suite files: a grid of runs (cells x repetitions) around one base config, and the
`--config.` overrides each cell becomes.

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
    plots     any of "val", "lr", "brightness", "multiscale" (`vgjax.suite.plots.PLOTS`)
    notes     optional text printed under the table
    baseline  the row every other row is tested against, query by query (default "": the
              first row; None: no paired tests) -> OUT/<name>_paired.md
    train_time optional: true adds a "train min" column, each run's training time (its
              epochs' `epoch_time_s`, training and validation, summed) in minutes

Repetition k of a row runs in the folder `run_name(row, k)` with seed k. This module says
what a suite is; `scripts/run_suite.py` runs it, and `vgjax.suite` reads the runs back into
the table and the plots.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from vgjax.config.files import import_file
from vgjax.config.values import ConfigError


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
    train_time: bool = False  # a "train min" column: the runs' epoch times summed (minutes)

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


def load_suite(path: str | os.PathLike, arg: str | None = None) -> Suite:
    """`configs/suites/x.py` or `configs/suites/x.py:arg` -> its `get_suite(arg)` as a Suite.

    The file is imported as config files are (`vgjax.config.files.import_file`), so that it
    can import `configs.suites.common`."""
    text = os.fspath(path)
    path = Path(text)
    if ":" in text and text.rsplit(":", 1)[0].endswith(".py"):
        text, arg = text.rsplit(":", 1)
        path = Path(text)
    if not path.is_file():
        raise ConfigError(f"--suite {path}: no such file")
    spec = f"{path}:{arg}" if arg is not None else str(path)
    try:
        module = import_file(path, f"_vgjax_suite_{path.stem}")
    except Exception as e:  # a syntax error, a failed import: one line naming the file
        raise ConfigError(f"--suite {path} failed to load: {type(e).__name__}: {e}") from None
    if not hasattr(module, "get_suite"):
        raise ConfigError(f"--suite {path}: no get_suite() function")
    try:  # e.g. an unknown variant: `table1_baselines.py:bogus`
        d = module.get_suite(arg)
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"--suite {spec}: {e}") from None
    if not isinstance(d, Mapping):
        raise ConfigError(f"--suite {spec}: get_suite() returned {type(d).__name__}, "
                          "expected a dict")
    try:
        return Suite.from_dict(d)
    except TypeError as e:  # a required field missing
        raise ConfigError(f"--suite {spec}: {e}") from None


def run_name(cell_name: str, rep: int) -> str:
    """The folder of a row's repetition `rep` (seed `rep`): `<row>-rep<rep>`."""
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
