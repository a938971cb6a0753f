"""Evaluation: descriptors -> k-NN search -> recall@N (per dataset and per query domain).

    result = evaluate(split, describe, cfg.test, cfg.data, out_dir=..., name=...)
    result.recalls   # {'R@1': 86.4, 'R@5': ...} in percent

`describe` is any callable `images (B, H, W, 3) -> (B, D)` (see `Describer`). The database is
always hard-resized to the model size (`data.resize`); queries follow `test.method` and the
multi-scale settings. Recall: share of queries with at least one of their first N predictions
among their positives: the database images within `test.positive_dist` metres (UTM) for an
@UTM folder, the ground truth of its protocol for a benchmark read otherwise
(`vgjax.data.readers`); queries without a positive count as misses. Each result records its
protocol (`EvalResult.protocol`). `vgjax.eval.evaluators` runs `evaluate_protocols` for the
named entries of `config.evals`.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from vgjax.data import format as fmt
from vgjax.data.ops import resampling
from vgjax.data.protocol import Protocol, utm_protocol
from vgjax.data.settings import DataSettings
from vgjax.data.sources import FOLDER_READER
from vgjax.eval.report import save_pictures, save_predictions, save_recall_curve
from vgjax.eval.extract import extract_descriptors
from vgjax.eval.methods import ViewPlan
from vgjax.eval.pca import PCA, sample_rows
from vgjax.eval.recalls import (chance_from_counts, chance_recalls, correct_from_positives,
                                correct_matrix, recalls_from_correct)
from vgjax.eval.search import search
from vgjax.eval.settings import TestSettings
from vgjax.eval.store import DescriptorStore

log = logging.getLogger(__name__)

@dataclasses.dataclass
class EvalResult:
    name: str                                   # dataset name (key in results.json)
    split: str
    recalls: dict[str, float]                   # {'R@1': .., ...} percent
    domain_recalls: dict[str, dict[str, float]]  # {'night': {'R@1': ..}, ...} (present domains)
    domain_counts: dict[str, int]               # queries per domain
    topk_indices: np.ndarray                    # (Q, K) int64 into the database, -1 = none
    topk_distances: np.ndarray                  # (Q, K) float32 squared L2 descriptor distance
    timings: dict[str, float]                   # seconds (and images/s) per stage
    descriptor_dim: int                         # size searched (after PCA)
    model_dim: int                              # size the model produces
    num_queries: int
    num_database: int
    method: str
    correct: np.ndarray                         # (Q, K) bool: prediction is a positive
    predictions_path: str | None = None
    chance: dict[str, float] = dataclasses.field(default_factory=dict)  # random ranking
    protocol: Protocol | None = None            # how `recalls` were computed

    def summary(self) -> str:
        return ", ".join(f"{k}: {v:.1f}" for k, v in self.recalls.items())

    def protocol_label(self) -> str:
        """The protocol in one line ('' where none was recorded)."""
        return self.protocol.label() if self.protocol is not None else ""


def query_domains(paths, domains=("day", "sunset", "night")) -> np.ndarray:
    """The domain of each query from its file name's note field ('' if none matches).

    A note matches a domain if it equals it or has it as one of its `_`/`-` separated words
    (e.g. 'night_sideways' -> 'night').
    """
    domains = [d.lower() for d in domains]
    out = []
    for p in paths:
        try:
            note = fmt.parse_fields(p)["note"]
        except fmt.DatasetFormatError:  # a benchmark's own file names: no note field
            note = ""
        words = re.split(r"[_\-\s]+", note.lower())
        out.append(next((d for d in domains if d in words), ""))
    return np.array(out, dtype=str)


def fit_pca(test_cfg, data_cfg, describe, database_store: DescriptorStore | None = None,
            seed: int = 0) -> PCA:
    """PCA on descriptors of `test.pca_dataset` images, or else of the database descriptors.

    The PCA images are described at their native size when `test.pca_native_size` (what
    the reference does), else resized like the database."""
    test_cfg, data_cfg = TestSettings.from_section(test_cfg), DataSettings.from_section(data_cfg)
    dim, max_images = test_cfg.pca_dim, test_cfg.pca_max_images
    if test_cfg.pca_dataset:
        folder = Path(test_cfg.pca_dataset)
        if not folder.is_dir():
            raise ValueError(f"test.pca_dataset={str(folder)!r} is not a folder")
        paths = fmt.list_images(folder)
        if not paths:
            raise ValueError(f"test.pca_dataset={str(folder)!r} holds no images")
        if len(paths) > max_images:
            rng = np.random.default_rng(seed)
            paths = [paths[i] for i in np.sort(rng.choice(len(paths), max_images, replace=False))]
        plan = ViewPlan.for_database(test_cfg, data_cfg.resize,
                                     resampling=resampling(data_cfg, test_cfg))
        if test_cfg.pca_native_size:
            plan = dataclasses.replace(plan, method="native", sizes=plan.sizes[:1])
        store, _ = extract_descriptors(
            paths, describe, plan, batch_size=test_cfg.batch_size,
            num_workers=data_cfg.num_workers, prefetch=data_cfg.prefetch)
        samples = store.read()
    elif database_store is not None:
        samples = sample_rows(database_store, max_images, seed)
    else:
        raise ValueError("test.pca_dim > 0 needs test.pca_dataset or a database to fit on")
    return PCA.fit(samples, dim)


def evaluate(split, describe, test_cfg, data_cfg, *, out_dir: str | os.PathLike | None = None,
             name: str | None = None, pca: PCA | None = None,
             progress: bool = True, reader=None) -> EvalResult:
    """Recalls of `describe` on a `vgjax.data.dataset.Split` (val or test) scored under one
    protocol; `evaluate_protocols` for a split read with several (all arguments alike)."""
    if len(split.query_sets) > 1:
        raise ValueError(f"{split.name}: {len(split.query_sets)} protocols "
                         f"({', '.join(qs.name for qs in split.query_sets)}); evaluate them "
                         "with evaluate_protocols")
    return evaluate_protocols(split, describe, test_cfg, data_cfg, out_dir=out_dir, name=name,
                              pca=pca, progress=progress, reader=reader)[0]


def evaluate_protocols(split, describe, test_cfg, data_cfg, *,
                       out_dir: str | os.PathLike | None = None, name: str | None = None,
                       pca: PCA | None = None, progress: bool = True,
                       reader=None, shared_database=None) -> list[EvalResult]:
    """Recalls of `describe` on a `vgjax.data.dataset.Split` (val or test), one EvalResult
    per protocol: the database and the queries are described and searched once, then each
    query set of the split (`Split.query_sets`) is scored by its own ground truth; a split
    without query sets is scored by UTM distance at `test.positive_dist`, named `name`.

    `describe`: `images (B, H, W, 3) -> (B, D)`, called with every view shape the method and
    scales need. `out_dir`: if given (and `test.save_predictions`), writes
    `predictions/<name>.npz`, and pictures if `test.num_pictures` > 0. `pca`: a fitted PCA to
    reuse; otherwise one is fitted when `test.pca_dim` > 0. `reader(path, size=None)`: how
    the split's paths become pixels (default: image files; `vgjax.data.sources.open_split`
    returns the right one for a TFDS copy). `shared_database`: a
    `vgjax.eval.shared_database.DatabaseSlot` when an earlier dataset of the same run has the
    same database files (its descriptors are reused) or a later one will.
    """
    t_start = time.perf_counter()
    test_cfg, data_cfg = TestSettings.from_section(test_cfg), DataSettings.from_section(data_cfg)
    given_name, name = name, name or split.dataset
    model_size = data_cfg.resize
    recall_values = test_cfg.recall_values
    k = max(recall_values)
    dtype = np.float16 if test_cfg.store_float16 else np.float32
    limit = test_cfg.descriptors_in_memory_gb * (1 << 30)
    chunk_bytes = int(test_cfg.search_chunk_mb * (1 << 20))
    keep_dir = Path(test_cfg.descriptors_dir) / name if test_cfg.descriptors_dir else None
    tmp = None
    stores: list[DescriptorStore] = []

    def make_store_for(role):
        def make(n, d):
            nonlocal tmp
            if keep_dir is None and n * d * np.dtype(dtype).itemsize <= limit:
                store = DescriptorStore((n, d), dtype)
            else:
                folder = keep_dir
                if folder is None:
                    tmp = tmp or tempfile.TemporaryDirectory(prefix="vgjax_descriptors_")
                    folder = Path(tmp.name)
                store = DescriptorStore((n, d), dtype, folder / f"{role}.npy")
            stores.append(store)
            return store
        return make

    loader_kw = {"batch_size": test_cfg.batch_size,
                 "num_workers": data_cfg.num_workers, "prefetch": data_cfg.prefetch}
    read = reader or FOLDER_READER
    resample = resampling(data_cfg, test_cfg)
    db_plan = ViewPlan.for_database(test_cfg, model_size, read, resample)
    q_plan = ViewPlan.for_queries(test_cfg, model_size, read, resample)
    try:
        reused = shared_database.get() if shared_database is not None else None
        if reused is not None:
            descriptors, source = reused
            db_store = make_store_for("database")(*descriptors.shape)
            db_store.write(0, descriptors)
            db_stats = {"seconds": 0.0, "images_per_s": float("nan")}
            log.info("%s: database descriptors reused from %s (the same %d image files)",
                     name, source, len(split.database))
        else:
            db_store, db_stats = extract_descriptors(
                split.database.paths, describe, db_plan, make_store=make_store_for("database"),
                progress=f"{name} database" if progress else None, **loader_kw)
            # kept only when in memory: a store streamed to disk is not read back whole
            if shared_database is not None and db_store.path is None and shared_database.wanted():
                shared_database.put(db_store.read())
        q_store, q_stats = extract_descriptors(
            split.queries.paths, describe, q_plan, make_store=make_store_for("queries"),
            progress=f"{name} queries" if progress else None, **loader_kw)
        if q_store.dim != db_store.dim:
            raise ValueError(f"query descriptors have {q_store.dim} dims but database ones "
                             f"{db_store.dim}: the describe function is not consistent")
        model_dim = db_store.dim
        t_pca = time.perf_counter()
        if test_cfg.pca_dim > 0:
            pca = pca or fit_pca(test_cfg, data_cfg, describe, db_store)
            db_store = pca.transform_store(db_store, make_store_for("database_pca"), chunk_bytes)
            q_store = pca.transform_store(q_store, make_store_for("queries_pca"), chunk_bytes)
        t_search = time.perf_counter()
        distances, indices = search(db_store, q_store, k, test_cfg, chunk_bytes=chunk_bytes)
        distances, indices = q_plan.merge(distances, indices, k, test_cfg)
        search_s = time.perf_counter() - t_search
        descriptor_dim = db_store.dim
    finally:
        for store in stores:
            store.close()
        if tmp is not None:
            tmp.cleanup()

    timings = {"database_s": db_stats["seconds"], "database_img_per_s": db_stats["images_per_s"],
               "queries_s": q_stats["seconds"], "queries_img_per_s": q_stats["images_per_s"],
               "pca_s": t_search - t_pca, "search_s": search_s}
    ranking = dict(distances=distances, indices=indices, timings=timings,
                   descriptor_dim=descriptor_dim, model_dim=model_dim)
    if not split.query_sets:
        protocol = utm_protocol(split.dataset, split.split, test_cfg.positive_dist)
        correct = correct_matrix(indices, split.queries.utm, split.database.utm,
                                 test_cfg.positive_dist)
        if float(split.soft_dist) == test_cfg.positive_dist:
            chance = chance_from_counts([len(p) for p in split.soft_positives],
                                        len(split.database), recall_values)
        else:
            chance = chance_recalls(split.queries.utm, split.database.utm, recall_values,
                                    test_cfg.positive_dist)
        results = [_result(name, split, protocol, correct, chance, ranking, test_cfg,
                           out_dir, read)]
    else:
        results = []
        for qs in split.query_sets:
            part = _query_subset(split, qs)
            correct = correct_from_positives(indices[qs.queries], qs.positives)
            chance = chance_from_counts([len(p) for p in qs.positives], len(split.database),
                                        recall_values)
            set_name = given_name if given_name and len(split.query_sets) == 1 else qs.name
            results.append(_result(set_name, part, qs.protocol, correct, chance,
                                   dict(ranking, distances=distances[qs.queries],
                                        indices=indices[qs.queries]),
                                   test_cfg, out_dir, read))
    total = time.perf_counter() - t_start
    for result in results:
        result.timings["total_s"] = total
    return results


def _query_subset(split, qs):
    """`split` restricted to the queries of `qs`, its positives those of `qs`."""
    q = split.queries
    queries = dataclasses.replace(q, paths=q.paths[qs.queries], utm=q.utm[qs.queries],
                                  zones=None if q.zones is None else q.zones[qs.queries])
    return dataclasses.replace(
        split, queries=queries, soft_positives=list(qs.positives),
        query_sets=(dataclasses.replace(qs, queries=np.arange(len(qs), dtype=np.int64)),))


def _result(name, split, protocol, correct, chance, ranking, test_cfg, out_dir,
            read) -> EvalResult:
    """The EvalResult of one protocol, its files written under `out_dir`."""
    recall_values = test_cfg.recall_values
    recalls = recalls_from_correct(correct, recall_values)
    domains = query_domains(split.queries.paths, test_cfg.domains)
    domain_recalls, domain_counts = {}, {}
    for dom in test_cfg.domains:
        mask = domains == dom.lower()
        if mask.any():
            domain_recalls[dom] = recalls_from_correct(correct[mask], recall_values)
            domain_counts[dom] = int(mask.sum())
    result = EvalResult(
        name=name, split=split.split, recalls=recalls, domain_recalls=domain_recalls,
        domain_counts=domain_counts, topk_indices=ranking["indices"],
        topk_distances=ranking["distances"], timings=dict(ranking["timings"]),
        descriptor_dim=ranking["descriptor_dim"], model_dim=ranking["model_dim"],
        num_queries=len(split.queries), num_database=len(split.database),
        method=test_cfg.method, correct=correct, chance=chance, protocol=protocol)
    if out_dir is not None:
        out_dir = Path(out_dir)
        if test_cfg.save_predictions:
            result.predictions_path = str(save_predictions(
                out_dir / "predictions" / f"{name}.npz", result, split))
        if test_cfg.num_pictures > 0:
            save_pictures(result, split, out_dir / "pictures" / name,
                          num=test_cfg.num_pictures, only_wrong=test_cfg.pictures_only_wrong,
                          topk=test_cfg.pictures_topk, positive_dist=test_cfg.positive_dist,
                          reader=read)
            save_recall_curve({name: correct}, out_dir / "pictures" / f"{name}_recall.png")
    log.info("%s (%s): %s [%s]", name, test_cfg.method, result.summary(), protocol.label())
    return result
