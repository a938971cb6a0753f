"""The synthetic city's training district as a GSV-Cities-format folder (`--format gsv_cities`).

    <out>/gsv-cities/Dataframes/SynthCity.csv
    <out>/gsv-cities/Images/SynthCity/
        SynthCity_<place:07d>_<year>_<month:02d>_<northdeg:03d>_<lat>_<lon>_<panoid>.jpg

Places are street positions of pitts30k's *training* area (the same streets its training
split covers, so pitts30k's val and test areas stay unseen), spread evenly over it. Each
place is seen by `Preset.gsv_views` (lo, hi) views (at least 4, the GSV-Cities minimum), as
street-view cars pass one spot over the years: one look per place (diagonally along its
street, either side), each view turned by up to 15 degrees from it and standing up to 2 m
along and 1 m across the street from the spot, in another year (2007..2021) and month,
with its own cars and people. Rendered with pitts30k's district, database camera and
(`--varied-conditions`) the queries' capture conditions, by `build.render_views`.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from vgjax.data.places import GSV_COLUMNS, gsv_image_name
from vgjax.synthetic.layout import make_city, positions_along_streets, street_free
from vgjax.synthetic.specs import DATASET_SPECS, PRESETS
from vgjax.synthetic.styles import CAMERAS, CLEAR
from vgjax.synthetic.views import View, _split_areas, query_conditions, utm_to_latlon

GSV_FOLDER = "gsv-cities"    # <out>/gsv-cities
GSV_CITY = "SynthCity"       # the CSV's name and every row's city_id
GSV_SOURCE = "pitts30k"      # whose district, training area and database camera
GSV_KEY = 4                  # in place of the split index in the views' random ids
YEARS = (2007, 2021)


def plan_gsv(out_root: str | os.PathLike, preset: str = "tiny", seed: int = 0,
             varied_conditions: bool | None = None) -> tuple[list[dict], list[View]]:
    """(CSV rows as dicts of `GSV_COLUMNS`, the views to render), place by place."""
    p = PRESETS[preset]
    varied = p.varied_conditions if varied_conditions is None else bool(varied_conditions)
    spec = DATASET_SPECS[GSV_SOURCE]
    city = make_city(spec.district, seed)
    area = _split_areas(city, p, GSV_SOURCE)["train"]
    positions, half, axes = positions_along_streets(city, area, *p.split_layout("train"))
    _, first = np.unique(np.round(positions, 1), axis=0, return_index=True)
    first = np.sort(first)  # a crossing is on two streets: one place
    positions, half, axes = positions[first], half[first], axes[first]
    n = min(p.gsv_places, len(positions))
    pick = np.unique(np.round(np.linspace(0, len(positions) - 1, n)).astype(int))
    cam = CAMERAS[spec.database_camera]
    folder = Path(out_root) / GSV_FOLDER / "Images" / GSV_CITY
    rows, views = [], []
    for place, j in enumerate(pick):
        rng = np.random.default_rng([seed, spec.index, GSV_KEY, 0, place, 0])
        (x, y), axis = positions[j], int(axes[j])
        look = (0.0 if axis == 0 else 90.0) + rng.choice([30.0, -30.0, 210.0, 150.0])
        k_views = int(rng.integers(p.gsv_views[0], p.gsv_views[1] + 1))
        years = np.sort(rng.choice(np.arange(YEARS[0], YEARS[1] + 1), k_views, replace=False))
        for k in range(k_views):
            along, across = rng.uniform(-2.0, 2.0), rng.uniform(-1.0, 1.0) * min(1.0, half[j])
            vx, vy = (x + across, y + along) if axis == 0 else (x + along, y + across)
            if not street_free(city, vx, vy, 1.0):
                vx, vy = x, y
            heading = (look + rng.uniform(-15.0, 15.0)) % 360.0
            month = int(rng.integers(1, 13))
            east, north = spec.origin[0] + vx, spec.origin[1] + vy
            lat, lon = utm_to_latlon(east, north, spec.zone[0])
            row = {"place_id": place, "year": int(years[k]), "month": month,
                   "northdeg": int(round(heading)) % 360, "city_id": GSV_CITY,
                   "lat": round(lat, 7), "lon": round(lon, 7),
                   "panoid": f"s{seed}p{place:06d}v{k:02d}"}
            key = (seed, spec.index, GSV_KEY, place, k)
            conditions = (query_conditions(rng, "day", month) if varied else CLEAR)
            rows.append(row)
            views.append(View(
                path=str(folder / gsv_image_name(**row)), dataset=GSV_SOURCE, east=east,
                north=north, heading=heading, hfov=cam.hfov[0], pitch=cam.pitch[0],
                height=cam.height, time_of_day="day", camera=spec.database_camera,
                cars=int(rng.integers(0, 4)), people=int(rng.integers(0, 3)), key=key,
                conditions=conditions))
    return rows, views


def generate_gsv(out_root: str | os.PathLike, preset: str = "tiny", seed: int = 0,
                 workers: int | None = None, overwrite: bool = False, progress: bool = False,
                 varied_conditions: bool | None = None) -> dict:
    """Writes `<out_root>/gsv-cities` (Dataframes/SynthCity.csv and Images/SynthCity/);
    returns a summary (places, images, views per place, images/s). Refuses to write into
    an existing `<out_root>/gsv-cities/Images` unless `overwrite` (which deletes
    `Images/` and `Dataframes/` first)."""
    from vgjax.synthetic.build import render_views, worker_count

    workers = worker_count(workers, seed)
    start = time.perf_counter()
    rows, views = plan_gsv(out_root, preset, seed, varied_conditions)
    top = Path(out_root) / GSV_FOLDER
    images = top / "Images"
    if images.exists() and any(images.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{images} already holds files; pass overwrite=True (--overwrite) to replace it")
        shutil.rmtree(images)
        shutil.rmtree(top / "Dataframes", ignore_errors=True)
    (images / GSV_CITY).mkdir(parents=True, exist_ok=True)
    (top / "Dataframes").mkdir(parents=True, exist_ok=True)
    cpu_s = render_views(views, preset, seed, workers, progress)
    rendered_s = time.perf_counter() - start
    with open(top / "Dataframes" / f"{GSV_CITY}.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(GSV_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    varied = (PRESETS[preset].varied_conditions if varied_conditions is None
              else bool(varied_conditions))
    (top / "city.json").write_text(json.dumps(
        {"preset": preset, "seed": seed, "varied_conditions": varied, "format": "gsv_cities"})
        + "\n")
    per_place = np.bincount([r["place_id"] for r in rows])
    return {
        "preset": preset, "seed": seed, "out": str(out_root), "format": "gsv_cities",
        "size": list(PRESETS[preset].size), "workers": workers, "varied_conditions": varied,
        "gsv_cities": {"folder": str(top), "cities": {GSV_CITY: {
            "places": int(len(per_place)), "images": len(rows),
            "views_per_place": [int(per_place.min()), int(per_place.max())]}}},
        "rendered": len(views),
        "seconds": round(time.perf_counter() - start, 2),
        "images_per_s": round(len(views) / max(rendered_s, 1e-9), 1),
        "images_per_cpu_s": round(len(views) / max(cpu_s, 1e-9), 1),
    }
