"""Evaluators from config: each entry of `config.evals` is one named evaluation.

    c.evals.val = dict(type="retrieval", split="val", datasets=[], when=["epoch"],
                       method="hard_resize", scales=[1.0], pca_dim=0)
    c.evals.test = dict(type="retrieval", split="test", datasets=[], when=["end"])
    c.evals.multiscale = dict(type="retrieval", split="test", when=["end"],
                              scales=[0.75, 1, 1.25])

An entry names its `type` (a registered evaluator), the `split`, the `datasets` ([] = the
split's default: `data.test_datasets` for test, `data.train_dataset` otherwise), optionally
the `format` its datasets are read in (an evaluation reader of `vgjax.data.readers`;
default: `data.format`'s, or `folder` for a training-only format such as gsv_cities), `when` it
runs (`before` training, after every `epoch`, at the `end` on the best model) and any
`test.*` setting it changes; everything else comes from `config.test`. Training calls
`run()` on the entries whose `when` matches; `python -m vgjax.eval` runs the same objects.
Metrics are named `<entry>/R@N` (one result) or `<entry>/<result>/R@N`, a result being a
dataset or, for a benchmark read with several protocols, one of its query sets.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import ml_collections

from vgjax.config import ConfigError, check_value
from vgjax.data.sources import open_split
from vgjax.data.readers import READERS
from vgjax.eval.evaluate import EvalResult, evaluate_protocols, fit_pca
from vgjax.eval.methods import scaled_size
from vgjax.eval.report import (results_protocols, results_rows, save_recall_curve,
                               write_results_json)
from vgjax.eval.settings import TestSettings, check_test
from vgjax.eval.shared_database import DatabaseMemo, database_keys
from vgjax.models.backbones import check_input_size
from vgjax.registry import Registry

log = logging.getLogger(__name__)

EVALUATORS = Registry("evals.<name>.type")
ENTRY_KEYS = ("type", "split", "datasets", "when", "format")
WHEN = ("before", "epoch", "end")
SPLITS = ("train", "val", "test")


@EVALUATORS.register("retrieval")
@dataclasses.dataclass
class RetrievalEvaluator:
    """Recall@N of a model on `split` of each of `datasets` under `settings` (a `test`
    config section)."""
    name: str
    split: str
    datasets: Sequence[str]
    when: Sequence[str]
    settings: TestSettings
    data_cfg: ml_collections.ConfigDict
    opener: Callable = open_split   # (data_cfg, dataset, split[, data_format]) -> (Split, ImageReader)
    seed: int = 0
    data_format: str = ""           # the entry's `format` ('' = data.format's reader)

    def __post_init__(self):
        self._opened: dict = {}
        self._checked: set = set()
        self._memo_keys: dict | None = None

    def check_files(self) -> None:
        """Refuses (ImageError naming them) images of the datasets that cannot be read,
        before any is described; once per dataset."""
        for dataset in self.datasets:
            if dataset not in self._checked:
                split, reader = self.open(dataset)
                if reader.check is not None:
                    reader.check([*split.database.paths, *split.queries.paths],
                                 f"{split.dataset} ({self.split} database and queries)")
                self._checked.add(dataset)

    def open(self, dataset: str):
        """The Split and reader of one dataset, opened once and kept for later runs."""
        if dataset not in self._opened:
            if self.data_format:
                self._opened[dataset] = self.opener(self.data_cfg, dataset, self.split,
                                                    data_format=self.data_format)
            else:
                self._opened[dataset] = self.opener(self.data_cfg, dataset, self.split)
        return self._opened[dataset]

    def adopt(self, dataset: str, opened) -> None:
        """Keeps `opened` = (Split, ImageReader), read earlier, as what `open(dataset)`
        returns."""
        self._opened[dataset] = opened
        self._memo_keys = None

    def wrap_readers(self, wrap: Callable) -> None:
        """Opens every dataset and replaces its reader by `wrap(reader)` (e.g. a decoded
        cache serving the images from memory)."""
        for dataset in self.datasets:
            split, reader = self.open(dataset)
            self._opened[dataset] = (split, wrap(reader))
        self._memo_keys = None

    def run(self, describe, *, out_dir: str | Path | None = None,
            progress: bool = True) -> list[EvalResult]:
        """Evaluates `describe` on every dataset; with `out_dir`, writes what the settings
        ask for (predictions, pictures) and `results.json` there."""
        self.check_files()
        s = TestSettings.from_section(self.settings)
        pca = None
        if s.pca_dim > 0 and s.pca_dataset:  # one PCA for every dataset
            pca = fit_pca(s, self.data_cfg, describe, seed=self.seed)
        memo = self.shared_databases()
        results = []
        for dataset in self.datasets:
            split, reader = self.open(dataset)
            results += evaluate_protocols(split, describe, s, self.data_cfg, out_dir=out_dir,
                                          name=split.dataset, pca=pca, progress=progress,
                                          reader=reader, shared_database=memo.slot(dataset))
        if out_dir is not None:
            write_results_json(results, Path(out_dir) / "results.json")
            save_recall_curve({r.name: r.correct for r in results},
                              Path(out_dir) / "recall_curve.png")
        return results

    def shared_databases(self) -> DatabaseMemo:
        """The datasets whose databases are the same image files (tokyo-night's and
        tokyo-xs's): described once per run (`vgjax.eval.shared_database`). Found once."""
        if self._memo_keys is None:
            opened = {d: self.open(d) for d in self.datasets}
            self._memo_keys = database_keys(
                {d: (split.database.paths, _reader_kind(reader))
                 for d, (split, reader) in opened.items()})
            for key in sorted(set(self._memo_keys.values())):
                same = [d for d, k in self._memo_keys.items() if k == key]
                log.info("%s: the same database images, described once per evaluation",
                         " and ".join(same))
        return DatabaseMemo(self._memo_keys, self.datasets)

    def metrics(self, results: Sequence[EvalResult]) -> dict[str, float]:
        """{'<name>/R@5': ..} for one result, {'<name>/<result>/R@5': ..} for several; a
        single dataset read with several protocols also gives its first (msls: the
        official rule) as '<name>/R@5'."""
        out = {}
        for r in results:
            prefix = self.name if len(results) == 1 else f"{self.name}/{r.name}"
            out.update({f"{prefix}/{k}": v for k, v in r.recalls.items()})
        if len(results) > 1 and len(self.datasets) == 1:
            out.update({f"{self.name}/{k}": v for k, v in results[0].recalls.items()})
        return out

    def table(self, results: Sequence[EvalResult]):
        """(rows, counts) of `results_rows`."""
        return results_rows(results)

    def protocols(self, results: Sequence[EvalResult]) -> dict[str, str]:
        """{row name: its protocol in one line}, for `format_table`."""
        return results_protocols(results)


def _reader_kind(reader) -> str:
    """What makes two readers give the same pixels for the same files: the same module-level
    read function and draft flag; any other reader (a closure over a cache, a view) only
    matches itself."""
    read = getattr(reader, "read", None)
    name = getattr(read, "__qualname__", "")
    if read is None or not name or "<locals>" in name:
        return f"reader object {id(reader)}"
    return f"{read.__module__}.{name}, draft={getattr(reader, 'draft', False)}"


def entry_settings(config, name: str) -> ml_collections.ConfigDict:
    """`config.test` with the `test.*` fields entry `name` sets."""
    entry = config.evals[name]
    settings = ml_collections.ConfigDict(config.test.to_dict())
    for key, value in entry.items():
        if key in ENTRY_KEYS:
            continue
        if key not in settings:
            raise ConfigError(f"evals.{name}.{key}: not an evaluator field "
                              f"({', '.join(ENTRY_KEYS)}) or a test.* setting")
        settings[key] = check_value(f"evals.{name}.{key}", value, settings[key])
    return settings


def entry_datasets(config, name: str, split: str) -> list[str]:
    datasets = list(config.evals[name].get("datasets", []) or [])
    if datasets:
        return datasets
    return (list(config.data.test_datasets) if split == "test"
            else [config.data.train_dataset])


def check_entry(config, name: str) -> None:
    """Refuses a bad `evals.<name>` entry, naming the field."""
    if name not in config.evals:
        raise ConfigError(f"evals.{name}: no such evaluator in the config (it has "
                          f"{', '.join(config.evals.keys()) or 'none'})")
    entry = config.evals[name]
    if not isinstance(entry, Mapping) and not hasattr(entry, "items"):
        raise ConfigError(f"evals.{name}: expected a dict (an evaluator entry), got {entry!r}")
    kind = entry.get("type", "retrieval")
    if not isinstance(kind, str) or kind not in EVALUATORS:
        raise ConfigError(f"evals.{name}.type: unknown value {kind!r} (accepted: "
                          f"{', '.join(EVALUATORS.names())})")
    split = entry.get("split", "test")
    if not isinstance(split, str) or split not in SPLITS:
        raise ConfigError(f"evals.{name}.split: unknown split {split!r} (accepted: "
                          f"{', '.join(SPLITS)})")
    data_format = entry.get("format", "")
    if not isinstance(data_format, str) or (data_format and data_format not in READERS):
        raise ConfigError(f"evals.{name}.format: unknown value {data_format!r} (accepted: "
                          f"{', '.join(READERS.names())}, or '' for data.format's)")
    for key in ("when", "datasets"):
        value = entry.get(key, [])
        if not (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
            raise ConfigError(f"evals.{name}.{key}: expected a list of names, got {value!r}")
    when = list(entry.get("when", []))  # [] switches the entry off
    bad = [w for w in when if w not in WHEN]
    if bad:
        raise ConfigError(f"evals.{name}.when: expected some of {', '.join(WHEN)} "
                          f"([] = never), got {when}")
    entry_settings(config, name)


def check_evals(config) -> None:
    """Refuses a bad `test` section or `evals` entry, naming the option."""
    check_test(config.test)
    for name in config.evals.keys():
        check_entry(config, name)
        check_test(entry_settings(config, name), f"evals.{name}")


def build(config, name: str, *, datasets: Sequence[str] | None = None,
          split: str | None = None, opener: Callable = open_split):
    """The evaluator of entry `name` (`datasets` / `split` replace the entry's)."""
    check_entry(config, name)
    entry = config.evals[name]
    split = split or entry.get("split", "test")
    cls = EVALUATORS.get(entry.get("type", "retrieval"))
    return cls(name=name, split=split,
               datasets=list(datasets) if datasets else entry_datasets(config, name, split),
               when=tuple(entry.get("when", ())),
               settings=TestSettings.from_section(entry_settings(config, name)),
               data_cfg=config.data, opener=opener, seed=config.seed,
               data_format=entry.get("format", ""))


def build_all(config, opener: Callable = open_split) -> dict[str, RetrievalEvaluator]:
    return {name: build(config, name, opener=opener) for name in config.evals.keys()}


def check_image_sizes(config, backbone: str, size, names: Sequence[str] | None = None) -> None:
    """Raises ValueError naming the option when `size` (data.resize) or a size an entry's
    `scales` make of it is too small for `backbone` (e.g. `test.scales=[0.001, 1]`: a 1x1
    image would be averaged in)."""
    check_input_size(backbone, size, "data.resize")
    for name in config.evals.keys() if names is None else names:
        scales = list(entry_settings(config, name).scales)
        option = "test.scales" if name == "test" else f"evals.{name}.scales"
        for scale in scales:
            check_input_size(backbone, scaled_size(size, scale),
                             f"{option}={scales} (scale {scale} of data.resize={tuple(size)})")


def parse_metric(config, metric: str) -> tuple[str, str]:
    """`<entry>/R@N` or `<entry>/<dataset>/R@N` -> (entry, metric name); checks it exists
    and is computed after every epoch."""
    parts = str(metric).split("/")
    if len(parts) not in (2, 3) or parts[0] not in config.evals:
        raise ConfigError(f"train.best_metric={metric!r}: expected <evaluator>/R@N with an "
                          f"evaluator of config.evals ({', '.join(config.evals.keys())})")
    name, key = parts[0], parts[-1]
    if "epoch" not in list(config.evals[name].get("when", [])):
        raise ConfigError(f"train.best_metric={metric!r}: evals.{name} does not run after "
                          "every epoch (its `when` lacks 'epoch')")
    recalls = [int(n) for n in entry_settings(config, name).recall_values]
    if not key.startswith("R@") or not key[2:].isdigit() or int(key[2:]) not in recalls:
        raise ConfigError(f"train.best_metric={metric!r}: evals.{name} computes "
                          f"{', '.join(f'R@{n}' for n in recalls)} (test.recall_values)")
    split = config.evals[name].get("split", "test")
    datasets = entry_datasets(config, name, split)
    if len(parts) == 2 and len(datasets) > 1:
        raise ConfigError(f"train.best_metric={metric!r}: evals.{name} runs on "
                          f"{len(datasets)} datasets; name one: {name}/<dataset>/{key}")
    return name, metric
