"""Planning: where every database image and query is, and its standard file name."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np

from vgjax.data.format import make_filename
from vgjax.synthetic.hashing import hash_unit
from vgjax.synthetic.layout import City, make_city, positions_along_streets, street_free
from vgjax.synthetic.specs import (
    ALL_OUTPUTS,
    DATASET_SPECS,
    NIGHT_SUBSET,
    PRESETS,
    SPLIT_INDEX,
    TARGET_MIN_DISTANCE,
    TARGET_SPECS,
    DatasetSpec,
    Preset,
)
from vgjax.synthetic.styles import CAMERAS, CLEAR, Conditions

TRAIN_POSITIVE_DIST = 9.5  # every training query gets a database image this close (< 10 m)
SPLIT_GAP = 120.0  # metres between split areas: wider than the 25 m soft-positive radius


# --------------------------------------------------------------------------------------------
# UTM -> latitude/longitude (for the file names' lat/lon fields), positions in UTM
# --------------------------------------------------------------------------------------------
def utm_to_latlon(
    east: float, north: float, zone: int, northern: bool = True
) -> tuple[float, float]:
    """WGS84 inverse transverse Mercator (Snyder's series; sub-metre near the zone centre)."""
    a, fl, k0 = 6378137.0, 1 / 298.257223563, 0.9996
    e2 = fl * (2 - fl)
    ep2 = e2 / (1 - e2)
    x = east - 500000.0
    y = north if northern else north - 10000000.0
    m = y / k0
    mu = m / (a * (1 - e2 / 4 - 3 * e2**2 / 64 - 5 * e2**3 / 256))
    e1 = (1 - math.sqrt(1 - e2)) / (1 + math.sqrt(1 - e2))
    phi1 = (
        mu
        + (3 * e1 / 2 - 27 * e1**3 / 32) * math.sin(2 * mu)
        + (21 * e1**2 / 16 - 55 * e1**4 / 32) * math.sin(4 * mu)
        + (151 * e1**3 / 96) * math.sin(6 * mu)
        + (1097 * e1**4 / 512) * math.sin(8 * mu)
    )
    s, c = math.sin(phi1), math.cos(phi1)
    n1 = a / math.sqrt(1 - e2 * s * s)
    t1 = math.tan(phi1) ** 2
    c1 = ep2 * c * c
    r1 = a * (1 - e2) / (1 - e2 * s * s) ** 1.5
    d = x / (n1 * k0)
    lat = phi1 - (n1 * math.tan(phi1) / r1) * (
        d**2 / 2
        - (5 + 3 * t1 + 10 * c1 - 4 * c1**2 - 9 * ep2) * d**4 / 24
        + (61 + 90 * t1 + 298 * c1 + 45 * t1**2 - 252 * ep2 - 3 * c1**2) * d**6 / 720
    )
    lon = (
        d
        - (1 + 2 * t1 + c1) * d**3 / 6
        + (5 - 2 * c1 + 28 * t1 - 3 * c1**2 + 8 * ep2 + 24 * t1**2) * d**5 / 120
    ) / c
    return math.degrees(lat), zone * 6 - 183 + math.degrees(lon)


def on_street(
    east, north, dataset: str = "pitts30k", seed: int = 0, margin: float = 1.0
) -> np.ndarray:
    """True where UTM (east, north) in `dataset`'s district is street, `margin` m from facades."""
    spec = DATASET_SPECS[NIGHT_SUBSET[1] if dataset == NIGHT_SUBSET[0] else dataset]
    city = make_city(spec.district, int(seed))
    return street_free(
        city, np.asarray(east) - spec.origin[0], np.asarray(north) - spec.origin[1], margin
    )


def street_positions(
    dataset: str = "pitts30k",
    seed: int = 0,
    spacing: float = 6.0,
    area: tuple[float, float, float, float] = (0.0, 200.0, 0.0, 200.0),
) -> np.ndarray:
    """(N, 2) UTM positions every `spacing` m along the street centre lines of `dataset`'s
    district, inside `area` = (x0, x1, y0, y1) metres from the district's origin."""
    spec = DATASET_SPECS[NIGHT_SUBSET[1] if dataset == NIGHT_SUBSET[0] else dataset]
    positions, _, _ = positions_along_streets(make_city(spec.district, int(seed)), area, spacing)
    return positions + np.array(spec.origin)


# --------------------------------------------------------------------------------------------
# Areas, views and file names
# --------------------------------------------------------------------------------------------
def _square_area(city: City, x: float, need: int, spacing: float, streets=(1, 1)):
    """The smallest square (x, x + side, 0, side), side 40 m and up in 10 m steps, holding at
    least `need` street positions (on `streets`, see `positions_along_streets`)."""
    side = 40.0
    while len(positions_along_streets(city, (x, x + side, 0.0, side), spacing, streets)[0]) < need:
        side += 10.0
    return (x, x + side, 0.0, side)


def _split_areas(city: City, preset: Preset, dataset: str) -> dict:
    """Disjoint square areas, one per split, each just big enough for its database."""
    areas, x = {}, 0.0
    counts = preset.counts[dataset]
    for split in DATASET_SPECS[dataset].splits:
        need = math.ceil(counts[split][0] / preset.headings)
        areas[split] = _square_area(city, x, need, *preset.split_layout(split))
        x = areas[split][1] + SPLIT_GAP
    return areas


@dataclasses.dataclass(frozen=True)
class View:
    """One image to render and write."""

    path: str
    dataset: str  # whose district, origin and cameras it is rendered with
    east: float
    north: float
    heading: float
    hfov: float
    pitch: float
    height: float
    time_of_day: str
    camera: str
    cars: int
    people: int
    key: tuple[int, ...]  # (seed, dataset, split (or target key), role, index)
    conditions: Conditions = CLEAR  # sun, overcast, exposure and season of the capture


def _file_name(spec: DatasetSpec, east, north, heading, pitch, height, tod, pano, stamp) -> str:
    lat, lon = utm_to_latlon(east, north, spec.zone[0])
    return make_filename(
        east,
        north,
        ".jpg",
        utm_zone_number=spec.zone[0],
        utm_zone_letter=spec.zone[1],
        lat=f"{lat:.6f}",
        lon=f"{lon:.6f}",
        pano_id=pano,
        heading=f"{heading:.1f}",
        pitch=f"{pitch:.1f}",
        height=f"{height:.2f}",
        timestamp=stamp,
        note=tod,
    )


def _query_view(rng, city, spec, street, preset, tod, folder, pano, key, within=None) -> View:
    """A query-like view at time of day `tod`, drawn from `rng`: offset from a random street
    position of `street` (positions, half widths, axes) along and across its street, at most
    `within` m from the nearest position (the fallback is a position itself); then heading
    (anywhere, or along one of `preset.street_headings` of its street turned by at most
    `preset.query_turn`), field of view, pitch, camera height and time stamp of `spec`'s
    query camera."""
    positions, half, axes = street
    q_cam = CAMERAS[spec.query_camera]
    near = int(rng.integers(len(positions)))  # the position whose street the view is on
    x, y = positions[near]
    for _ in range(100):
        b = int(rng.integers(len(positions)))
        along = rng.uniform(-preset.query_offset, preset.query_offset)
        lateral = rng.uniform(-1, 1) * max(min(4.0, half[b] - 2.5), 0.0)
        north_south = axes[b] == 0
        qx = positions[b, 0] + (lateral if north_south else along)
        qy = positions[b, 1] + (along if north_south else lateral)
        if not street_free(city, qx, qy, 1.0):
            continue
        if within is not None and np.sqrt(((positions - [qx, qy]) ** 2).sum(1)).min() > within:
            continue
        x, y, near = qx, qy, b
        break
    if preset.street_headings:
        looks = street_looks(city, preset, positions[near : near + 1], axes[near : near + 1])[0]
        look = looks[int(rng.integers(len(looks)))]
        heading = (look + rng.uniform(-preset.query_turn, preset.query_turn)) % 360.0
    else:
        heading = rng.uniform(0, 360.0)
    hfov = rng.uniform(*q_cam.hfov)
    pitch = rng.uniform(*q_cam.pitch)
    height = q_cam.height + rng.uniform(-0.15, 0.15)
    east, north = round(spec.origin[0] + x, 2), round(spec.origin[1] + y, 2)
    hour = {
        "day": rng.integers(9, 17),
        "sunset": rng.integers(18, 20),
        "night": rng.integers(21, 24),
    }[tod]
    month, day, minute = rng.integers(1, 13), rng.integers(1, 29), rng.integers(0, 60)
    stamp = f"2014{month:02d}{day:02d}T{hour:02d}{minute:02d}"
    name = _file_name(spec, east, north, heading, pitch, height, tod, pano, stamp)
    cars, people = int(rng.integers(0, 4)), int(rng.integers(0, 5))
    conditions = query_conditions(rng, tod, int(month)) if preset.varied_conditions else CLEAR
    return View(
        path=str(folder / name), dataset=spec.name, east=east, north=north, heading=heading,
        hfov=hfov, pitch=pitch, height=height, time_of_day=tod, camera=spec.query_camera,
        cars=cars, people=people, key=key, conditions=conditions,
    )  # fmt: skip


MIRROR_KEY = 15  # hash key of the streets whose database views mirror `street_headings`


def street_looks(city: City, preset: Preset, positions: np.ndarray, axes: np.ndarray):
    """(P, headings) compass headings (degrees) of the database views at street positions
    (on the centre line of a street of axis 0: north-south, 1: east-west):
    `preset.street_headings` from the street's direction (north or east), mirrored about it
    on about half of the streets (a hash of the street), so that each side of the city's
    streets is seen looking both ways."""
    positions = np.asarray(positions, np.float64).reshape(-1, 2)
    axes = np.asarray(axes, np.int64).reshape(-1)
    angles = np.asarray(preset.street_headings, np.float64)
    line = np.where(axes == 0, np.searchsorted(city.xs, positions[:, 0]),
                    np.searchsorted(city.ys, positions[:, 1]))
    mirror = hash_unit(city.key, MIRROR_KEY + axes, line) < 0.5
    direction = np.where(axes == 0, 0.0, 90.0)
    sign = np.where(mirror, -1.0, 1.0)
    return (direction[:, None] + sign[:, None] * angles[None, :]) % 360.0


def season_of(month: int) -> str:
    """The (northern) season of a month 1..12."""
    return ("winter", "spring", "summer", "autumn")[(month % 12) // 3]


def query_conditions(rng: np.random.Generator, tod: str, month: int) -> Conditions:
    """A query's capture conditions, unlike the database's clear summer days around noon: by
    day the sun anywhere from east to west and 40% of the queries under an overcast sky; an
    exposure within +-20% (+-15% at sunset and night); the season of its time stamp's month.
    Draws the same numbers whatever `tod`, so the views' other draws do not depend on it."""
    azimuth = rng.uniform(90.0, 270.0)
    cloudy, heavy, light = rng.random() < 0.4, rng.uniform(0.5, 1.0), rng.uniform(0.0, 0.25)
    exposure = rng.uniform(-1.0, 1.0)
    season = season_of(month)
    if tod == "day":
        return Conditions(azimuth, heavy if cloudy else light, 1.0 + 0.2 * exposure, season)
    overcast = light if tod == "sunset" else 0.0
    return Conditions(None, overcast, 1.0 + 0.15 * exposure, season)


# --------------------------------------------------------------------------------------------
# Planning: where every database image and query is
# --------------------------------------------------------------------------------------------
def _plan_split(root: Path, dataset: str, split: str, preset: Preset, seed: int) -> list[View]:
    spec = DATASET_SPECS[dataset]
    city = make_city(spec.district, seed)
    box = _split_areas(city, preset, dataset)[split]
    n_db, n_q = preset.counts[dataset][split]
    positions, half, axes = positions_along_streets(city, box, *preset.split_layout(split))
    need = math.ceil(n_db / preset.headings)
    pick = np.unique(np.round(np.linspace(0, len(positions) - 1, need)).astype(int))
    positions, half, axes = positions[pick], half[pick], axes[pick]
    folder = root / dataset / "images" / split
    si = SPLIT_INDEX[split]
    views = []
    db_cam = CAMERAS[spec.database_camera]
    step = 360.0 / preset.headings
    looks = street_looks(city, preset, positions, axes) if preset.street_headings else None
    for p, (x, y) in enumerate(positions):
        rng = np.random.default_rng([seed, spec.index, si, 0, p, 0])
        start = rng.uniform(0, step)
        for k in range(preset.headings):
            n = p * preset.headings + k
            if n >= n_db:
                break
            heading = looks[p, k] if looks is not None else (start + k * step) % 360.0
            east, north = round(spec.origin[0] + x, 2), round(spec.origin[1] + y, 2)
            month, day, hour = rng.integers(5, 10), rng.integers(1, 29), rng.integers(10, 16)
            stamp = f"2010{month:02d}{day:02d}T{hour:02d}00"
            name = _file_name(spec, east, north, heading, db_cam.pitch[0], db_cam.height, "day",
                              f"p{p:06d}", stamp)  # fmt: skip
            views.append(
                View(
                    path=str(folder / "database" / name), dataset=dataset, east=east, north=north,
                    heading=heading, hfov=db_cam.hfov[0], pitch=db_cam.pitch[0],
                    height=db_cam.height, time_of_day="day", camera=spec.database_camera,
                    cars=int(rng.integers(0, 3)), people=int(rng.integers(0, 2)),
                    key=(seed, spec.index, si, 0, n),
                )
            )  # fmt: skip
    # A training query must keep a database image within 10 m.
    within = TRAIN_POSITIVE_DIST if split == "train" else None
    for i in range(n_q):
        rng = np.random.default_rng([seed, spec.index, si, 1, i, 0])
        tod = spec.query_times[i % len(spec.query_times)]
        views.append(_query_view(rng, city, spec, (positions, half, axes), preset, tod,
                                 folder / "queries", f"q{i:06d}", (seed, spec.index, si, 1, i),
                                 within))  # fmt: skip
    return views


def _plan_target(root: Path, name: str, preset: Preset, seed: int) -> list[View]:
    """A target folder's views: query-like views of its source's district, in an area as big
    as the source's test area, `gap` m east of it; random ids use the target's own key."""
    target = TARGET_SPECS[name]
    spec = DATASET_SPECS[target.source]
    city = make_city(spec.district, seed)
    test = _split_areas(city, preset, target.source)["test"]
    need = math.ceil(preset.counts[target.source]["test"][0] / preset.headings)
    layout = preset.split_layout("test")
    area = _square_area(city, test[1] + target.gap, need, *layout)
    street = positions_along_streets(city, area, *layout)
    views = []
    for i in range(preset.target_images):
        key = (seed, spec.index, target.key, 1, i)
        rng = np.random.default_rng([*key, 0])
        views.append(_query_view(rng, city, spec, street, preset, target.time_of_day,
                                 root / name / "images", f"t{i:06d}", key))  # fmt: skip
    # Every position of the test area (the database's positions among them) stays far away.
    tested = positions_along_streets(city, test, preset.spacing)[0] + np.array(spec.origin)
    where = np.array([(v.east, v.north) for v in views]).reshape(-1, 2)
    if len(tested) and len(where):
        nearest = np.sqrt(((where[:, None] - tested[None]) ** 2).sum(-1)).min()
        if nearest <= TARGET_MIN_DISTANCE:
            raise RuntimeError(f"{name}: a view {nearest:.1f} m from {target.source}'s test area")
    return views


def plan(
    out_root: str | os.PathLike,
    preset: str = "tiny",
    seed: int = 0,
    datasets: tuple[str, ...] = ALL_OUTPUTS,
    varied_conditions: bool | None = None,
) -> dict[str, dict[str, list[View]]]:
    """Every view of a preset: {dataset: {split: [View, ...]}} (tokyo-night: see `NIGHT_SUBSET`);
    a target folder (night-target) is {name: {"images": [View, ...]}}, written flat into
    `<out_root>/<name>/images/`. `varied_conditions` (None: the preset's) draws each query's
    capture conditions (`query_conditions`); it changes no database view and no position."""
    if preset not in PRESETS:
        raise ValueError(f"preset {preset!r}: expected one of {', '.join(PRESETS)}")
    unknown = [d for d in datasets if d not in ALL_OUTPUTS]
    if unknown:
        raise ValueError(f"datasets {unknown}: expected names among {', '.join(ALL_OUTPUTS)}")
    p = PRESETS[preset]
    if varied_conditions is not None:
        p = dataclasses.replace(p, varied_conditions=bool(varied_conditions))
    root = Path(out_root)
    out = {}
    for name, spec in DATASET_SPECS.items():
        if name in datasets or (name == NIGHT_SUBSET[1] and NIGHT_SUBSET[0] in datasets):
            out[name] = {s: _plan_split(root, name, s, p, seed) for s in spec.splits}
    for name in TARGET_SPECS:
        if name in datasets:
            out[name] = {"images": _plan_target(root, name, p, seed)}
    return out
