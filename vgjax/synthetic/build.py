"""Rendering every planned view with worker processes and writing the dataset folders."""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import numpy as np

from vgjax.data.format import parse_fields
from vgjax.progress import bar as progress_bar
from vgjax.synthetic.layout import make_city
from vgjax.synthetic.render import render
from vgjax.synthetic.specs import (
    ALL_OUTPUTS,
    DATASET_SPECS,
    NIGHT_SUBSET,
    PRESETS,
    TARGET_SPECS,
)
from vgjax.synthetic.stats import folder_stats
from vgjax.synthetic.styles import CAMERAS, TIMES
from vgjax.synthetic.views import View, plan


def _render_and_write(view: View, size, supersample: int, quality: int, seed: int) -> None:
    """Renders one view with its own random generator and writes it as a JPEG."""
    from PIL import Image

    rng = np.random.default_rng(list(view.key) + [1])
    spec = DATASET_SPECS[view.dataset]
    city = make_city(spec.district, seed)
    img = render(
        city,
        view.east - spec.origin[0],
        view.north - spec.origin[1],
        view.heading,
        TIMES[view.time_of_day],
        CAMERAS[view.camera],
        size,
        view.hfov,
        view.height,
        view.pitch,
        rng,
        view.cars,
        view.people,
        supersample,
        view.conditions,
    )
    Image.fromarray(img).save(view.path, quality=quality)


def _render_chunk(args) -> tuple[int, float]:
    """Renders and writes a list of views (in a worker process); returns (count, CPU seconds)."""
    views, size, supersample, quality, seed = args
    start = time.process_time()
    for v in views:
        _render_and_write(v, size, supersample, quality, seed)
    return len(views), time.process_time() - start


def worker_count(workers: int | None, seed: int) -> int:
    """The rendering processes (None: one per CPU); refuses a bad count or seed."""
    if workers is not None and workers < 1:
        raise ValueError(f"workers {workers}: expected at least 1")
    if seed < 0:
        raise ValueError(f"seed {seed}: expected a non-negative integer")
    return workers or os.cpu_count() or 1


def render_views(views: list[View], preset: str, seed: int = 0, workers: int = 1,
                 progress: bool = False) -> float:
    """Renders and writes `views` (their folders must exist) at `preset`'s size and quality,
    in `workers` processes; returns the CPU seconds the rendering took."""
    p = PRESETS[preset]
    chunk = 8 if p.size[0] >= 240 else 24
    jobs = [
        (views[i : i + chunk], p.size, p.supersample, p.quality, seed)
        for i in range(0, len(views), chunk)
    ]
    cpu_s = 0.0
    bar = progress_bar(total=len(views), desc=f"rendering ({preset})", unit="img",
                       enabled=progress)
    if workers == 1 or len(jobs) == 1:
        results = map(_render_chunk, jobs)
        pool = None
    else:
        # "spawn": forking a process that has started JAX's threads can deadlock
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        results = pool.map(_render_chunk, jobs)
    try:
        for n, cpu in results:
            cpu_s += cpu
            bar.update(n)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown()
    return cpu_s


def _times(names: list[str]) -> dict[str, int]:
    """How many of the file names carry each time of day (the `note` field)."""
    notes: dict[str, int] = {}
    for f in sorted(names):
        tod = parse_fields(f)["note"]
        notes[tod] = notes.get(tod, 0) + 1
    return notes


# Bumped whenever the same preset and seed render other pixels (v2: night views are exposed
# automatically, as a phone exposes them).
CITY_VERSION = 2
CITY_FILE = "city.json"  # <out_root>/<name>/city.json: what built that folder


def _identity(preset: str, seed: int, varied: bool) -> dict:
    return {"preset": preset, "seed": seed, "varied_conditions": varied, "version": CITY_VERSION}


def is_current(out_root: str | os.PathLike, preset: str, seed: int = 0,
               datasets: tuple[str, ...] = ALL_OUTPUTS, varied_conditions: bool | None = None
               ) -> list[str]:
    """The names among `datasets` under `out_root` that this code would not render as they
    are: missing, or built by another preset, seed, conditions or version of the renderer
    (their `city.json`). Empty when every folder is current."""
    p = PRESETS[preset]
    varied = p.varied_conditions if varied_conditions is None else bool(varied_conditions)
    want = _identity(preset, seed, varied)
    stale = []
    for name in datasets:
        try:
            have = json.loads((Path(out_root) / name / CITY_FILE).read_text())
        except (OSError, ValueError):
            have = None
        if have != want or not (Path(out_root) / name / "images").is_dir():
            stale.append(name)
    return stale


def generate(
    out_root: str | os.PathLike,
    preset: str = "tiny",
    seed: int = 0,
    workers: int | None = None,
    datasets: tuple[str, ...] = ALL_OUTPUTS,
    overwrite: bool = False,
    progress: bool = False,
    varied_conditions: bool | None = None,
) -> dict:
    """Renders the preset's datasets under `out_root`; returns a summary (counts, images/s;
    per split the positives per query and a random ranking's recalls, see `stats`).

    `datasets` names any of `ALL_OUTPUTS`: the evaluation datasets (`DATASETS`) and the
    unlabelled target folders (`TARGETS`: night-target, written flat into
    `<out_root>/night-target/images/`). Refuses to write into an existing
    `<out_root>/<name>/images` unless `overwrite`, which deletes that folder first. tokyo-night
    is a copy of tokyo-xs's database and night queries; asked for without tokyo-xs, those are
    rendered in a temporary folder inside tokyo-night. `varied_conditions` (None: the
    preset's, off in every preset) renders the queries and target images under other capture
    conditions than the database (sun position, overcast, exposure, season; see
    `views.query_conditions`).
    """
    workers = worker_count(workers, seed)
    start = time.perf_counter()
    views = plan(out_root, preset, seed, datasets, varied_conditions)
    p = PRESETS[preset]
    varied = p.varied_conditions if varied_conditions is None else bool(varied_conditions)
    root = Path(out_root)
    night_name, source = NIGHT_SUBSET
    staging = None
    if night_name in datasets and source not in datasets:
        staging = root / night_name / ".source"
        night_views = plan(staging, preset, seed, (source,), varied)[source]["test"]
        views[source] = {
            "test": [v for v in night_views if "database" in v.path or v.time_of_day == "night"]
        }
    for name in datasets:
        images = root / name / "images"
        if images.exists() and any(images.iterdir()):
            if not overwrite:
                raise FileExistsError(
                    f"{images} already holds files; pass overwrite=True (--overwrite) to replace it"
                )
            shutil.rmtree(images)
    todo = []
    for splits in views.values():
        for vs in splits.values():
            for folder in {Path(v.path).parent for v in vs}:
                folder.mkdir(parents=True, exist_ok=True)
            todo.extend(vs)
    cpu_s = render_views(todo, preset, seed, workers, progress)
    rendered_s = time.perf_counter() - start

    copied = 0
    if night_name in datasets:
        for v in views[source]["test"]:
            role = Path(v.path).parent.name
            if role == "database" or v.time_of_day == "night":
                dst = root / night_name / "images" / "test" / role
                dst.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(v.path, dst / Path(v.path).name)
                copied += 1
        if staging is not None:
            shutil.rmtree(staging)

    for name in datasets:  # what was built, for `is_current`
        (root / name / CITY_FILE).write_text(json.dumps(_identity(preset, seed, varied)) + "\n")

    summary = {
        "preset": preset,
        "seed": seed,
        "out": str(root),
        "size": list(p.size),
        "workers": workers,
        "varied_conditions": varied,
        "datasets": {},
        "targets": {},
    }
    for name in datasets:
        if name in TARGET_SPECS:
            images = os.listdir(root / name / "images")
            summary["targets"][name] = {"images": len(images), "times": _times(images)}
            continue
        summary["datasets"][name] = {}
        for split in DATASET_SPECS[source if name == night_name else name].splits:
            folder = root / name / "images" / split
            queries = os.listdir(folder / "queries")
            # + positives per query and a random ranking's recalls, from the written names
            stats = folder_stats(folder)
            summary["datasets"][name][split] = {
                "database": len(os.listdir(folder / "database")),
                "queries": len(queries),
                "query_times": _times(queries),
                **{k: v for k, v in stats.items() if k not in ("database", "queries")},
            }
    summary.update(
        rendered=len(todo),
        copied=copied,
        seconds=round(time.perf_counter() - start, 2),
        images_per_s=round(len(todo) / max(rendered_s, 1e-9), 1),
        images_per_cpu_s=round(len(todo) / max(cpu_s, 1e-9), 1),
    )
    return summary
