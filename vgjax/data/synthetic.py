"""A synthetic city: place-recognition datasets in the standard folder format, built offline.

    python -m vgjax.data.synthetic --out data --preset demo [--seed 0] [--workers N]

writes `pitts30k` (train/val/test), `sf-xs`, `tokyo-xs` and `tokyo-night` (test only) under
`--out`, each as `<name>/images/<split>/<database|queries>/@east@north@...@.jpg`.

The city is a grid of streets whose buildings (heights, roof lines, facade colour and
material, window grids, doors, shop signs) and street furniture (trees, lamp and utility
poles) are pure functions of integer location ids and the seed, so every camera that sees a
place sees the same thing. Views are rendered by a column ray-caster in numpy: each image
column casts one ray in the 2D street map against the axis-aligned block footprints; each row
of that column is then wall, ground or sky by perspective. Trees, poles and the transient
occluders (cars, people) are depth-tested billboards.

Database images are day-time views on a regular grid of street positions, several headings
each (like a panorama cut into views). Queries differ in position (up to ~8 m), heading,
field of view, pitch, occluders, camera response and time of day (`day`, `sunset`,
`night`, written in the file name's `note` field).

Every image draws its randomness from (seed, dataset, split, role, index), so the output is
byte-identical for a seed whatever the number of worker processes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import json
import math
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from vgjax.data.format import make_filename, parse_fields

TIMES_OF_DAY = ("day", "sunset", "night")
DATASETS = ("pitts30k", "sf-xs", "tokyo-xs", "tokyo-night")
MAX_DIST = 260.0  # metres a ray travels before it counts as "open sky"
SPRITE_RANGE = 90.0  # metres within which trees and poles are drawn
MAX_LAMPS = 8  # nearest street lamps that light a night view
TRAIN_POSITIVE_DIST = 9.5  # every training query gets a database image this close (< 10 m)


# --------------------------------------------------------------------------------------------
# Deterministic hashing of integer ids -> uniform floats
# --------------------------------------------------------------------------------------------
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(h, keys):
    """Folds integer keys (broadcast) into uint64 hash states `h`."""
    with np.errstate(over="ignore"):
        for k in keys:
            k = np.asarray(k).astype(np.int64).astype(np.uint64)
            z = (h ^ k) + _GOLDEN
            z = (z ^ (z >> np.uint64(30))) * _M1
            z = (z ^ (z >> np.uint64(27))) * _M2
            h = z ^ (z >> np.uint64(31))
    return h


def _unit(h) -> np.ndarray:
    return (h >> np.uint64(11)).astype(np.float64) * (2.0**-53)


def _hash(*keys) -> np.ndarray:
    """Uniform floats in [0, 1) from integer keys (broadcast); the same keys give the same value."""
    return _unit(_mix(np.zeros((), np.uint64), keys))


def _lerp(lo, hi, t):
    return lo + (hi - lo) * t


# --------------------------------------------------------------------------------------------
# Districts (building styles), cameras and datasets
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class District:
    """The look of one part of the city; every building is drawn from these ranges."""

    index: int
    block: tuple[float, float]  # distance between street centre lines (m)
    street: tuple[float, float]  # street width, facade to facade (m)
    sidewalk: float  # sidewalk width (m)
    floors: tuple[int, int]
    floor_height: tuple[float, float]
    facade_width: tuple[float, float]  # width of one building along the street (m)
    palette: tuple[tuple[float, float, float], ...]
    materials: tuple[float, ...]  # weights: plain, brick, stone, siding, glass
    roofs: tuple[float, ...]  # weights: flat, gable, stepped
    shop: float  # probability of a shop on the ground floor
    vertical_sign: float  # probability of a vertical sign (Tokyo)
    tree_spacing: float
    tree_probability: float
    pole_spacing: float
    utility_poles: bool
    road: tuple[float, float, float]
    pavement: tuple[float, float, float]
    marking: tuple[float, float, float]
    foliage: tuple[tuple[float, float, float], ...]


DISTRICTS = {
    "pitts": District(
        index=0,
        block=(58.0, 92.0),
        street=(15.0, 22.0),
        sidewalk=3.2,
        floors=(2, 6),
        floor_height=(3.2, 3.9),
        facade_width=(7.0, 18.0),
        palette=(
            (0.55, 0.25, 0.18),
            (0.62, 0.33, 0.22),
            (0.45, 0.22, 0.17),
            (0.72, 0.62, 0.48),
            (0.58, 0.56, 0.52),
            (0.80, 0.76, 0.66),
            (0.36, 0.40, 0.33),
            (0.66, 0.45, 0.30),
            (0.30, 0.30, 0.34),
            (0.75, 0.70, 0.60),
        ),
        materials=(0.25, 0.40, 0.15, 0.10, 0.10),
        roofs=(0.6, 0.25, 0.15),
        shop=0.35,
        vertical_sign=0.0,
        tree_spacing=11.0,
        tree_probability=0.55,
        pole_spacing=30.0,
        utility_poles=False,
        road=(0.32, 0.32, 0.34),
        pavement=(0.60, 0.58, 0.55),
        marking=(0.85, 0.72, 0.20),
        foliage=((0.22, 0.38, 0.14), (0.28, 0.42, 0.16), (0.18, 0.32, 0.15), (0.45, 0.40, 0.15)),
    ),
    "sf": District(
        index=1,
        block=(70.0, 110.0),
        street=(18.0, 26.0),
        sidewalk=3.6,
        floors=(2, 4),
        floor_height=(3.0, 3.6),
        facade_width=(6.0, 10.5),
        palette=(
            (0.70, 0.86, 0.78),
            (0.93, 0.76, 0.78),
            (0.68, 0.80, 0.92),
            (0.95, 0.92, 0.80),
            (0.96, 0.88, 0.55),
            (0.92, 0.92, 0.90),
            (0.78, 0.72, 0.88),
            (0.85, 0.60, 0.45),
            (0.55, 0.70, 0.62),
            (0.60, 0.62, 0.75),
        ),
        materials=(0.45, 0.02, 0.08, 0.40, 0.05),
        roofs=(0.45, 0.45, 0.10),
        shop=0.25,
        vertical_sign=0.0,
        tree_spacing=9.0,
        tree_probability=0.35,
        pole_spacing=35.0,
        utility_poles=False,
        road=(0.26, 0.26, 0.27),
        pavement=(0.70, 0.69, 0.66),
        marking=(0.92, 0.92, 0.90),
        foliage=((0.25, 0.45, 0.20), (0.32, 0.50, 0.22), (0.20, 0.36, 0.22)),
    ),
    "tokyo": District(
        index=2,
        block=(36.0, 64.0),
        street=(8.5, 13.0),
        sidewalk=1.6,
        floors=(3, 9),
        floor_height=(3.0, 3.5),
        facade_width=(5.0, 11.0),
        palette=(
            (0.88, 0.88, 0.86),
            (0.75, 0.75, 0.74),
            (0.82, 0.78, 0.70),
            (0.60, 0.60, 0.62),
            (0.90, 0.86, 0.78),
            (0.45, 0.47, 0.50),
            (0.70, 0.55, 0.45),
            (0.95, 0.95, 0.95),
            (0.55, 0.62, 0.66),
        ),
        materials=(0.35, 0.05, 0.30, 0.05, 0.25),
        roofs=(0.88, 0.02, 0.10),
        shop=0.7,
        vertical_sign=0.55,
        tree_spacing=22.0,
        tree_probability=0.2,
        pole_spacing=24.0,
        utility_poles=True,
        road=(0.36, 0.36, 0.37),
        pavement=(0.55, 0.55, 0.56),
        marking=(0.92, 0.92, 0.92),
        foliage=((0.20, 0.36, 0.18), (0.26, 0.40, 0.16)),
    ),
}

SIGN_COLOURS = (
    (0.85, 0.12, 0.10),
    (0.10, 0.30, 0.75),
    (0.95, 0.80, 0.10),
    (0.10, 0.55, 0.25),
    (0.95, 0.45, 0.05),
    (0.95, 0.95, 0.92),
    (0.60, 0.10, 0.55),
    (0.08, 0.08, 0.10),
)


@dataclasses.dataclass(frozen=True)
class Camera:
    """Intrinsics and colour response of a capture device."""

    hfov: tuple[float, float]  # horizontal field of view range (degrees)
    height: float  # metres above the ground
    pitch: tuple[float, float]  # degrees, positive looks up
    gains: tuple[float, float, float]  # white balance
    gamma: float
    saturation: float
    contrast: float
    vignette: float
    noise: float  # multiplies the time-of-day sensor noise


CAMERAS = {
    "streetview": Camera(
        hfov=(60.0, 60.0),
        height=2.5,
        pitch=(5.0, 5.0),
        gains=(1.0, 1.0, 1.0),
        gamma=1.0,
        saturation=1.0,
        contrast=1.0,
        vignette=0.0,
        noise=1.0,
    ),
    "streetview-query": Camera(
        hfov=(50.0, 70.0),
        height=2.5,
        pitch=(1.0, 9.0),
        gains=(1.02, 1.0, 0.97),
        gamma=1.05,
        saturation=0.95,
        contrast=1.05,
        vignette=0.05,
        noise=1.0,
    ),
    "phone-sf": Camera(
        hfov=(45.0, 65.0),
        height=1.6,
        pitch=(-2.0, 10.0),
        gains=(1.08, 1.0, 0.88),
        gamma=0.9,
        saturation=1.3,
        contrast=1.15,
        vignette=0.25,
        noise=1.5,
    ),
    "phone-tokyo": Camera(
        hfov=(50.0, 70.0),
        height=1.6,
        pitch=(-2.0, 8.0),
        gains=(0.95, 1.0, 1.08),
        gamma=1.1,
        saturation=1.1,
        contrast=1.1,
        vignette=0.15,
        noise=1.3,
    ),
}


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    name: str
    index: int
    district: str
    origin: tuple[float, float]  # UTM (east, north) of the local (0, 0)
    zone: tuple[int, str]
    splits: tuple[str, ...]
    database_camera: str
    query_camera: str
    query_times: tuple[str, ...]  # cycled over the queries: equal shares


DATASET_SPECS = {
    "pitts30k": DatasetSpec(
        "pitts30k",
        0,
        "pitts",
        (584150.0, 4476350.0),
        (17, "T"),
        ("train", "val", "test"),
        "streetview",
        "streetview-query",
        ("day",),
    ),
    "sf-xs": DatasetSpec(
        "sf-xs",
        1,
        "sf",
        (550400.0, 4181300.0),
        (10, "S"),
        ("test",),
        "streetview",
        "phone-sf",
        ("day",),
    ),
    "tokyo-xs": DatasetSpec(
        "tokyo-xs",
        2,
        "tokyo",
        (386200.0, 3948600.0),
        (54, "S"),
        ("test",),
        "streetview",
        "phone-tokyo",
        TIMES_OF_DAY,
    ),
}
# tokyo-night is the night third of tokyo-xs's queries with the same database (as the real one).
NIGHT_SUBSET = ("tokyo-night", "tokyo-xs")
SPLIT_INDEX = {"train": 0, "val": 1, "test": 2}
ROLE_INDEX = {"database": 0, "queries": 1}


@dataclasses.dataclass(frozen=True)
class Preset:
    size: tuple[int, int]  # (H, W) of the written images
    supersample: int  # rendered at size * supersample, then box-filtered
    headings: int  # database views per position
    spacing: float  # metres between database positions along a street
    query_offset: float  # maximum offset along the street of a query (m)
    counts: dict  # dataset -> split -> (database, queries)
    quality: int = 90  # JPEG quality


PRESETS = {
    "tiny": Preset(
        size=(60, 80),
        supersample=2,
        headings=4,
        spacing=9.0,
        query_offset=6.0,
        counts={
            "pitts30k": {"train": (96, 36), "val": (72, 30), "test": (72, 30)},
            "sf-xs": {"test": (72, 30)},
            "tokyo-xs": {"test": (72, 30)},
        },
    ),
    "demo": Preset(
        size=(120, 160),
        supersample=2,
        headings=8,
        spacing=6.0,
        query_offset=8.0,
        counts={
            "pitts30k": {"train": (1600, 500), "val": (1000, 300), "test": (1000, 300)},
            "sf-xs": {"test": (1000, 300)},
            "tokyo-xs": {"test": (1000, 300)},
        },
    ),
    "full": Preset(
        size=(480, 640),
        supersample=1,
        headings=8,
        spacing=6.0,
        query_offset=8.0,
        counts={
            "pitts30k": {"train": (10000, 7416), "val": (10000, 7608), "test": (10000, 6816)},
            "sf-xs": {"test": (27191, 1000)},
            "tokyo-xs": {"test": (12771, 315)},
        },
    ),
}


# --------------------------------------------------------------------------------------------
# The street grid
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class City:
    """Street centre lines of one district: x = xs[i] (north-south) and y = ys[j] (east-west).

    The block of cell (i, j) fills [xs[i] + wx[i]/2, xs[i+1] - wx[i+1]/2] x (same in y).
    Everything else is derived on the fly from hashes of (seed, district, ids).
    """

    district: District
    seed: int
    xs: np.ndarray
    ys: np.ndarray
    wx: np.ndarray
    wy: np.ndarray

    @property
    def key(self) -> int:
        return self.seed * 7 + self.district.index


LINES_EACH_SIDE = 120


@functools.lru_cache(maxsize=16)
def make_city(district: str, seed: int) -> City:
    """The street grid of `district` for `seed`: LINES_EACH_SIDE lines on each side of the
    local origin in both directions, spaced and sized by hashes of their index."""
    d = DISTRICTS[district]
    key = seed * 7 + d.index
    lines = []
    for axis in (0, 1):
        k = np.arange(-LINES_EACH_SIDE, LINES_EACH_SIDE)
        gaps = _lerp(d.block[0], d.block[1], _hash(key, 11 + axis, k))
        # Shift so that the local origin lies mid-block between lines LINES_EACH_SIDE +- 1.
        pos = np.concatenate([[0.0], np.cumsum(gaps[:-1])])
        pos -= pos[LINES_EACH_SIDE] + gaps[LINES_EACH_SIDE] * 0.5
        widths = _lerp(d.street[0], d.street[1], _hash(key, 13 + axis, k))
        lines.append((pos, widths))
    return City(d, seed, lines[0][0], lines[1][0], lines[0][1], lines[1][1])


def _cell(lines: np.ndarray, v) -> np.ndarray:
    return np.clip(np.searchsorted(lines, v, side="right") - 1, 0, len(lines) - 2)


def _nearest_line(lines: np.ndarray, widths: np.ndarray, v):
    """Signed offset from the nearest street centre line, and that street's width."""
    i = _cell(lines, v)
    lo, hi = v - lines[i], v - lines[i + 1]
    near_hi = np.abs(hi) < np.abs(lo)
    return np.where(near_hi, hi, lo), np.where(near_hi, widths[i + 1], widths[i])


def street_free(city: City, x, y, margin: float = 0.0) -> np.ndarray:
    """True where (x, y) (local metres) is on a street, at least `margin` from any facade."""
    ox, owx = _nearest_line(city.xs, city.wx, np.asarray(x, np.float64))
    oy, owy = _nearest_line(city.ys, city.wy, np.asarray(y, np.float64))
    return (np.abs(ox) < owx / 2 - margin) | (np.abs(oy) < owy / 2 - margin)


def on_street(
    east, north, dataset: str = "pitts30k", seed: int = 0, margin: float = 1.0
) -> np.ndarray:
    """True where UTM (east, north) in `dataset`'s district is street, `margin` m from facades."""
    spec = DATASET_SPECS[NIGHT_SUBSET[1] if dataset == NIGHT_SUBSET[0] else dataset]
    city = make_city(spec.district, int(seed))
    return street_free(
        city, np.asarray(east) - spec.origin[0], np.asarray(north) - spec.origin[1], margin
    )


# --------------------------------------------------------------------------------------------
# Ray casting and facades
# --------------------------------------------------------------------------------------------
def _block_rect(city: City, i, j):
    x0 = city.xs[i] + city.wx[i] / 2
    x1 = city.xs[i + 1] - city.wx[i + 1] / 2
    y0 = city.ys[j] + city.wy[j] / 2
    y1 = city.ys[j + 1] - city.wy[j + 1] / 2
    return x0, x1, y0, y1


def _cast(city: City, ox: float, oy: float, dx: np.ndarray, dy: np.ndarray):
    """First block hit by each ray: distance (inf if none), cell (i, j) and face.

    Faces: 0 south (y = y0), 1 east (x = x1), 2 north (y = y1), 3 west (x = x0).
    """
    n = dx.shape[0]
    dxs = np.where(np.abs(dx) < 1e-9, 1e-9, dx)
    dys = np.where(np.abs(dy) < 1e-9, 1e-9, dy)
    inv_x, inv_y = 1.0 / dxs, 1.0 / dys
    ci = np.full(n, _cell(city.xs, ox))
    cj = np.full(n, _cell(city.ys, oy))
    t_hit = np.full(n, np.inf)
    face = np.zeros(n, np.int64)
    hit_i, hit_j = ci.copy(), cj.copy()
    done = np.zeros(n, bool)
    east, north = dxs > 0, dys > 0
    last_x, last_y = len(city.xs) - 2, len(city.ys) - 2
    for _ in range(64):
        x0, x1, y0, y1 = _block_rect(city, ci, cj)
        tx0, tx1 = (x0 - ox) * inv_x, (x1 - ox) * inv_x
        ty0, ty1 = (y0 - oy) * inv_y, (y1 - oy) * inv_y
        txn, tyn = np.minimum(tx0, tx1), np.minimum(ty0, ty1)
        t_near = np.maximum(txn, tyn)
        t_far = np.minimum(np.maximum(tx0, tx1), np.maximum(ty0, ty1))
        hit = ~done & (t_near <= t_far) & (t_far > 0) & (t_near < MAX_DIST)
        if hit.any():
            t_hit[hit] = np.maximum(t_near[hit], 0.0)
            f = np.where(txn >= tyn, np.where(east, 3, 1), np.where(north, 0, 2))
            face[hit] = f[hit]
            hit_i[hit], hit_j[hit] = ci[hit], cj[hit]
            done |= hit
        nx = np.where(east, city.xs[ci + 1], city.xs[ci])
        ny = np.where(north, city.ys[cj + 1], city.ys[cj])
        tnx, tny = (nx - ox) * inv_x, (ny - oy) * inv_y
        step_x = tnx < tny
        ci = ci + np.where(step_x, np.where(east, 1, -1), 0)
        cj = cj + np.where(step_x, 0, np.where(north, 1, -1))
        done |= (
            (np.minimum(tnx, tny) > MAX_DIST) | (ci < 0) | (ci > last_x) | (cj < 0) | (cj > last_y)
        )
        ci, cj = np.clip(ci, 0, last_x), np.clip(cj, 0, last_y)
        if done.all():
            break
    return t_hit, hit_i, hit_j, face


def _facade_columns(city: City, t, bi, bj, face, ox, oy, dx, dy) -> dict:
    """Per hit column: the building (segment) hit and its properties, all hashed from ids."""
    d = city.district
    x0, x1, y0, y1 = _block_rect(city, bi, bj)
    hx, hy = ox + t * dx, oy + t * dy
    length = np.where(face % 2 == 0, x1 - x0, y1 - y0)
    u = np.select([face == 0, face == 1, face == 2], [hx - x0, hy - y0, x1 - hx], y1 - hy)
    u = np.clip(u, 0.0, length)
    wmin, wmax = d.facade_width
    k = np.arange(math.ceil(130.0 / wmin) + 1)
    facade = _mix(np.zeros((), np.uint64), (city.key, bi, bj, face))
    widths = _lerp(wmin, wmax, _unit(_mix(facade[:, None], (k[None], 1))))
    ends = np.cumsum(widths, axis=1)
    starts = ends - widths
    valid = starts < (length[:, None] - 0.5 * wmin)
    valid[:, 0] = True
    nseg = valid.sum(1)
    seg = np.maximum((valid & (starts <= u[:, None])).sum(1) - 1, 0)
    rows = np.arange(len(u))
    s0 = starts[rows, seg]
    width = np.maximum(np.where(seg == nseg - 1, length, ends[rows, seg]) - s0, 0.5)
    ul = u - s0
    state = _mix(facade, (seg,))

    def h(prop):
        return _unit(_mix(state, (prop,)))

    def weighted(weights, prop):
        cum = np.cumsum(weights) / np.sum(weights)
        return np.minimum(np.searchsorted(cum, h(prop), side="right"), len(weights) - 1)

    def pick(colours, prop):
        colours = np.asarray(colours)
        return colours[np.minimum((h(prop) * len(colours)).astype(int), len(colours) - 1)]

    floors = d.floors[0] + np.floor(h(2) * (d.floors[1] - d.floors[0] + 1))
    floor_h = _lerp(d.floor_height[0], d.floor_height[1], h(3))
    height = floors * floor_h + _lerp(0.3, 1.4, h(4))
    roof = weighted(d.roofs, 5)
    gable = np.minimum(width * 0.32, 4.0) * (1.0 - np.abs(2.0 * ul / width - 1.0))
    stepped = 1.5 * ((ul > 0.25 * width) & (ul < 0.75 * width))
    top = height + np.select([roof == 1, roof == 2], [gable, stepped], 0.0)
    material = weighted(d.materials, 8)
    win_sp = _lerp(2.3, 4.2, h(14))
    ncol = np.maximum(np.floor((width - 0.8) / win_sp), 1)
    trim = np.stack([_lerp(0.8, 1.0, h(9)), _lerp(0.78, 0.98, h(10)), _lerp(0.74, 0.95, h(11))], 1)
    trim = trim * np.where(h(12) < 0.35, 0.45, 1.0)[:, None]
    sign = pick(SIGN_COLOURS, 23)
    vsign = pick(SIGN_COLOURS, 30)
    glass = np.stack(
        [_lerp(0.10, 0.22, h(19)), _lerp(0.13, 0.25, h(20)), _lerp(0.16, 0.32, h(21))], 1
    )
    base = pick(d.palette, 6) * _lerp(0.88, 1.12, h(7))[:, None]
    # Wall texture cell (m) by material: plain, brick, stone, siding, glass.
    cell_u = np.array([0.8, 0.66, 1.2, 50.0, 1.6])[material]
    cell_z = np.array([0.8, 0.30, 0.75, 0.22, 50.0])[material]
    ink = lambda c: np.repeat(np.where(c.sum(1) > 1.8, 0.1, 0.95)[:, None], 3, 1)
    return {
        "state": state,
        "u": ul,
        "width": width,
        "face": face,
        "hx": hx,
        "hy": hy,
        "top": top,
        "height": height,
        "floor_h": floor_h,
        "material": material,
        "cell_u": cell_u,
        "cell_z": cell_z,
        "cornice_h": _lerp(0.3, 0.9, h(13)),
        "band": h(31) < 0.4,
        "win_sp": win_sp,
        "ncol": ncol,
        "win_m0": (width - ncol * win_sp) / 2,
        "win_hw": _lerp(0.35, 0.72, h(15)) * win_sp / 2,
        "win_h": _lerp(0.40, 0.62, h(16)) * floor_h,
        "sill": _lerp(0.7, 1.0, h(17)),
        "mullion": h(18) < 0.45,
        "shop": h(22) < d.shop,
        "door_u": _lerp(0.15, 0.85, h(24)) * width,
        "vsign_u": np.where(h(28) < d.vertical_sign, _lerp(0.6, 1.0, h(29)) * width - 0.5, -100.0),
        "awning": h(32) < 0.5,
        "display_lit": h(108) < 0.85,
        "display_glow": _lerp(0.3, 0.7, h(109)),
        # Colours by label (see _facade_pixels), each (W, 3).
        "colours": np.stack(
            [
                base,
                np.broadcast_to([0.68, 0.64, 0.58], base.shape),
                trim,
                glass,
                trim,
                glass * 0.8 + 0.05,
                np.stack(
                    [_lerp(0.15, 0.6, h(25)), _lerp(0.1, 0.35, h(26)), _lerp(0.08, 0.3, h(27))], 1
                ),
                pick(SIGN_COLOURS, 33),
                sign,
                ink(sign),
                vsign,
                ink(vsign),
            ]
        ),
    }


WALL, MORTAR, TRIM, GLASS, FRAME, DISPLAY, DOOR, AWNING, SIGN, GLYPH, VSIGN, VGLYPH = range(12)


def _frac(x):
    return x - np.floor(x)


def _facade_pixels(cols: dict, z: np.ndarray, tod: TimeOfDay, salt: int):
    """Albedo and emitted light of facade pixels, (R, W, 3) each, for heights z (R, W).

    Column properties broadcast over rows; each pixel gets one label (wall, window, door,
    sign, ...) whose colour comes from its column's table, times a per-pixel shade.
    """
    c = {
        k: (v.astype(np.float32) if v.dtype == np.float64 else v)[None, :]
        for k, v in cols.items()
        if k not in ("colours", "hx", "hy")
    }
    u, w, fh = c["u"], c["width"], c["floor_h"]
    fl = np.floor(z / fh)
    zf = z - fl * fh
    mat = c["material"]
    state = c["state"]
    # Wall texture: bricks, stone blocks, siding boards or plaster patches.
    row_z = np.floor(z / c["cell_z"])
    cu = (u + 0.5 * c["cell_u"] * (row_z % 2)) / c["cell_u"]
    cell_noise = _unit(_mix(state, (row_z, np.floor(cu))))
    joint = (_frac(z / c["cell_z"]) < 0.14) | (_frac(cu) < 0.07)
    shade = np.select(
        [mat == 1, mat == 2, mat == 3],
        [
            _lerp(0.82, 1.1, cell_noise),
            np.where(joint, 0.8, _lerp(0.9, 1.06, cell_noise)),
            _lerp(0.82, 1.04, _frac(z / 0.22)),
        ],
        _lerp(0.95, 1.04, cell_noise),
    )
    label = np.where((mat == 1) & joint, MORTAR, WALL)

    top = c["top"]
    cornice = z > top - c["cornice_h"]
    label = np.where(cornice | (c["band"] & (zf < 0.18) & (fl >= 1)), TRIM, label)
    shade = np.where((z > top - c["cornice_h"] - 0.15) & ~cornice, shade * 0.55, shade)

    # Window grid on the upper floors (a glass wall is all windows).
    wc = np.floor((u - c["win_m0"]) / c["win_sp"])
    uc = (u - c["win_m0"]) - (wc + 0.5) * c["win_sp"]
    hw, sill, wh = c["win_hw"], c["sill"], c["win_h"]
    upper = (fl >= 1) & (z < c["height"] - c["cornice_h"] - 0.3)
    glass_wall = mat == 4
    in_grid = (wc >= 0) & (wc < c["ncol"]) & (np.abs(uc) < hw)
    window = upper & in_grid & (zf > sill) & (zf < sill + wh)
    window |= glass_wall & upper & (_frac(u / 1.6) > 0.06) & (zf > 0.35)
    frame = (
        window
        & ~glass_wall
        & (
            (np.abs(uc) > hw - 0.09)
            | (zf < sill + 0.1)
            | (zf > sill + wh - 0.09)
            | (c["mullion"] & (np.abs(uc) < 0.05))
        )
    )
    ground_floor = fl == 0
    shop = c["shop"] & ground_floor
    door = ground_floor & (np.abs(u - c["door_u"]) < 0.6) & (z < 2.3)
    window |= ground_floor & ~c["shop"] & ~door & in_grid & (z > 1.0) & (z < 2.4)
    label = np.where(window, np.where(frame, FRAME, GLASS), label)
    window_id = _unit(_mix(state, (fl + 1000, wc)))
    shade = np.where(
        window & ~frame, _lerp(0.8, 1.4, window_id) * (0.85 + 0.1 * (zf - sill)), shade
    )

    # Ground floor: shop (display window, sign band with glyphs, awning) or a door.
    display = (
        shop
        & ~door
        & (z > 0.45)
        & (z < fh - 1.0)
        & (u > 0.4)
        & (u < w - 0.4)
        & (_frac(u / 2.2) > 0.05)
    )
    sign_band = shop & (z > fh - 0.85) & (z < fh - 0.12) & (u > 0.25) & (u < w - 0.25)
    awning = shop & c["awning"] & (z > fh - 1.05) & (z <= fh - 0.85)
    glyph_noise = _unit(_mix(state, (np.floor(u / 0.32) + 5000, np.floor(z / 0.55))))
    gz = _frac((z - fh + 0.85) / 0.73)
    glyph = sign_band & (glyph_noise > 0.45) & (gz > 0.25) & (gz < 0.75) & (_frac(u / 0.32) > 0.15)
    vdist = np.abs(u - c["vsign_u"])
    vsign = (vdist < 0.42) & (z > fh + 0.4) & (z < np.minimum(c["height"] - 1.0, fh + 9.0))
    vglyph = vsign & (glyph_noise > 0.35) & (vdist < 0.28) & (_frac(z / 0.55) > 0.2)
    for mask, lab in (
        (display, DISPLAY),
        (door, DOOR),
        (awning, AWNING),
        (sign_band, SIGN),
        (glyph, GLYPH),
        (vsign, VSIGN),
        (vglyph, VGLYPH),
    ):
        label = np.where(mask, lab, label)
    shade = np.where(awning & (_frac(u / 0.5) < 0.5), shade * 0.75, shade)
    shade = np.where(label >= DISPLAY, 1.0, shade)

    columns = np.arange(z.shape[1])[None, :]
    albedo = cols["colours"][label, columns] * shade[..., None]
    emit = None
    if tod.emission > 0:
        # Which rooms are lit is mostly a property of the place, partly of the evening.
        flip = _unit(_mix(np.uint64(salt), (state, fl, wc))) < 0.08
        lit = ((window_id < tod.lit_share) ^ flip) & (label == GLASS)
        room = (
            np.where(
                (_frac(window_id * 7.0) < 0.75)[..., None],
                np.array([1.0, 0.78, 0.45]),
                np.array([0.75, 0.85, 1.0]),
            )
            * _lerp(0.45, 1.0, _frac(window_id * 13.0))[..., None]
        )
        emit = np.where(lit[..., None], room, 0.0)
        shop_light = np.array([1.0, 0.9, 0.7]) * c["display_glow"][..., None]
        emit = np.where((display & c["display_lit"])[..., None], shop_light, emit)
        emit = np.where((label >= SIGN)[..., None], albedo * 1.3, emit)
        emit = emit * tod.emission
    return albedo, emit


def _ground_pixels(city: City, gx: np.ndarray, gy: np.ndarray):
    """Albedo of ground points: road (markings, crossings), sidewalk (paving), curb."""
    d = city.district
    ox, owx = _nearest_line(city.xs, city.wx, gx)
    oy, owy = _nearest_line(city.ys, city.wy, gy)
    ax, ay = np.abs(ox), np.abs(oy)
    on_v, on_h = ax < owx / 2, ay < owy / 2
    road_v, road_h = ax < owx / 2 - d.sidewalk, ay < owy / 2 - d.sidewalk
    road = road_v | road_h
    junction = road_v & road_h
    col = np.empty(gx.shape + (3,))
    col[:] = d.pavement
    tiles = (_frac(gx / 1.5) < 0.05) | (_frac(gy / 1.5) < 0.05)
    col = col * np.where(tiles, 0.82, 1.0)[..., None]
    curb = ~road & (
        (on_v & (ax < owx / 2 - d.sidewalk + 0.25)) | (on_h & (ay < owy / 2 - d.sidewalk + 0.25))
    )
    col = np.where(curb[..., None], np.array(d.pavement) * 1.15, col)
    key = city.key
    asphalt = (
        np.array(d.road)
        * _lerp(0.9, 1.08, _hash(key, 200, np.floor(gx / 2.0), np.floor(gy / 2.0)))[..., None]
    )
    patch = _hash(key, 201, np.floor(gx / 7.0), np.floor(gy / 7.0)) < 0.12
    asphalt = np.where(patch[..., None], asphalt * 0.8, asphalt)
    col = np.where(road[..., None], asphalt, col)
    centre_v = road_v & ~on_h & (ax < 0.12) & (_frac(gy / 6.0) < 0.5)
    centre_h = road_h & ~on_v & (ay < 0.12) & (_frac(gx / 6.0) < 0.5)
    col = np.where((centre_v | centre_h)[..., None], np.array(d.marking), col)
    cross_v = (
        road_v
        & ~road_h
        & (ay > owy / 2 - d.sidewalk)
        & (ay < owy / 2 - d.sidewalk + 3.0)
        & (_frac(gx / 1.0) < 0.5)
    )
    cross_h = (
        road_h
        & ~road_v
        & (ax > owx / 2 - d.sidewalk)
        & (ax < owx / 2 - d.sidewalk + 3.0)
        & (_frac(gy / 1.0) < 0.5)
    )
    col = np.where((cross_v | cross_h)[..., None] & ~junction[..., None], 0.85, col)
    inside = ~(on_v | on_h)
    col = np.where(inside[..., None], np.array([0.25, 0.40, 0.18]), col)
    return col


# --------------------------------------------------------------------------------------------
# Street furniture and transient objects (billboards)
# --------------------------------------------------------------------------------------------
TREE, LAMP, UTILITY, CAR, PERSON = range(5)


def _furniture(city: City, ox: float, oy: float, radius: float) -> dict:
    """Trees and poles on the sidewalks within `radius` of (ox, oy); hashed from slot ids."""
    d = city.district
    key = city.key
    xs_all, ys_all, kinds, ids = [], [], [], []
    for axis in (0, 1):
        lines, widths = (city.xs, city.wx) if axis == 0 else (city.ys, city.wy)
        cross_lines, cross_widths = (city.ys, city.wy) if axis == 0 else (city.xs, city.wx)
        c_along = oy if axis == 0 else ox
        c_across = ox if axis == 0 else oy
        near = np.nonzero(np.abs(lines - c_across) < radius)[0]
        for kind, spacing, prob in (
            (TREE, d.tree_spacing, d.tree_probability),
            (LAMP, d.pole_spacing, 1.0),
        ):
            slots = np.arange(
                math.floor((c_along - radius) / spacing), math.ceil((c_along + radius) / spacing)
            )
            for side in (-1, 1):
                li, sl = np.meshgrid(near, slots, indexing="ij")
                li, sl = li.ravel(), sl.ravel()
                hk = (key, 300 + kind, axis, side, li, sl)
                along = (sl + _lerp(0.3, 0.7, _hash(*hk, 1))) * spacing
                if kind == LAMP:
                    along = (sl + 0.5 * (side > 0)) * spacing
                across = lines[li] + side * (widths[li] / 2 - d.sidewalk + 0.6)
                off, cw = _nearest_line(cross_lines, cross_widths, along)
                keep = (np.abs(off) > cw / 2 + 1.5) & (_hash(*hk, 2) < prob)
                px, py = (across, along) if axis == 0 else (along, across)
                xs_all.append(px[keep])
                ys_all.append(py[keep])
                k = np.full(keep.sum(), kind)
                if kind == LAMP and d.utility_poles:
                    k = np.where(_hash(*hk, 3)[keep] < 0.6, UTILITY, LAMP)
                kinds.append(k)
                ids.append(
                    (_mix(np.zeros((), np.uint64), hk) >> np.uint64(2)).astype(np.int64)[keep]
                )
    x, y = np.concatenate(xs_all), np.concatenate(ys_all)
    kind, sid = np.concatenate(kinds), np.concatenate(ids)
    height = np.select(
        [kind == TREE, kind == LAMP], [_lerp(5.0, 10.0, _hash(key, 400, sid)), 6.5], 9.5
    )
    half = np.select(
        [kind == TREE, kind == LAMP], [_lerp(1.6, 3.2, _hash(key, 401, sid)), 1.3], 0.9
    )
    return {"x": x, "y": y, "kind": kind, "id": sid, "height": height, "half": half}


def _transients(city: City, rng: np.random.Generator, ox, oy, fwd, right, n_cars, n_people) -> dict:
    """Cars on the road and people anywhere on the street, in front of the camera."""
    xs, ys, kinds, ids, heights, halves = [], [], [], [], [], []
    for kind, count, dist, lat in (
        (CAR, n_cars, (4.0, 35.0), 5.0),
        (PERSON, n_people, (2.5, 25.0), 6.0),
    ):
        for _ in range(count):
            depth = rng.uniform(*dist)
            side = rng.uniform(-lat, lat) * depth / 10.0
            px, py = ox + fwd[0] * depth + right[0] * side, oy + fwd[1] * depth + right[1] * side
            margin = city.district.sidewalk + 0.9 if kind == CAR else 0.4
            ident = int(rng.integers(1 << 30))
            if not street_free(city, px, py, margin):
                continue
            xs.append(px)
            ys.append(py)
            kinds.append(kind)
            ids.append(ident)
            if kind == CAR:
                heights.append(rng.uniform(1.35, 1.8))
                halves.append(rng.choice([0.95, 2.2]) * rng.uniform(0.9, 1.1))
            else:
                heights.append(rng.uniform(1.5, 1.9))
                halves.append(rng.uniform(0.28, 0.36))
    return {
        "x": np.array(xs),
        "y": np.array(ys),
        "kind": np.array(kinds, int),
        "id": np.array(ids, np.int64),
        "height": np.array(heights),
        "half": np.array(halves),
    }


def _sprite_shape(
    kind: int,
    sid: int,
    a: np.ndarray,
    b: np.ndarray,
    key: int,
    tod: TimeOfDay,
    district: District,
):
    """Mask, albedo and emission of a billboard in its unit box (a in [-1, 1], b in [0, 1] up)."""
    shape = np.broadcast_shapes(a.shape, b.shape)
    col = np.zeros(shape + (3,))
    emit = np.zeros(shape + (3,))
    hsh = lambda *k: float(_hash(key, 500, sid, *k))
    if kind == TREE:
        style = hsh(1)
        trunk = (np.abs(a) < 0.07) & (b < 0.5)
        if style < 0.7:
            cy_, ry = _lerp(0.62, 0.7, hsh(2)), _lerp(0.28, 0.36, hsh(3))
            r = (a / 1.0) ** 2 + ((b - cy_) / ry) ** 2
        else:  # conifer
            r = np.abs(a) / np.maximum(1.05 - (b - 0.2) / 0.8, 1e-3) + (b < 0.2) * 9.0
        leaf = _hash(key, 501, sid, np.floor(a * 11), np.floor(b * 15))
        canopy = r < 0.9 + 0.2 * leaf
        fol = np.array(
            district.foliage[int(hsh(4) * len(district.foliage)) % len(district.foliage)]
        )
        col[:] = fol
        col = col * _lerp(0.8, 1.15, leaf)[..., None] * (0.7 + 0.3 * b - 0.15 * a)[..., None]
        col = np.where(trunk[..., None] & ~canopy[..., None], np.array([0.30, 0.22, 0.15]), col)
        mask = canopy | trunk
    elif kind in (LAMP, UTILITY):
        if kind == LAMP:
            pole = (np.abs(a) < 0.06) & (b < 0.97)
            arm = (a > 0) & (a < 0.75) & (b > 0.95) & (b < 0.975)
            head = (a > 0.5) & (a < 0.9) & (b > 0.93) & (b < 0.965)
            mask = pole | arm | head
            col[:] = (0.22, 0.23, 0.24)
            col = np.where(head[..., None], 0.5, col)
            if tod.lamps > 0:
                emit = np.where(head[..., None], np.array([1.4, 1.2, 0.8]) * tod.lamps, emit)
        else:
            pole = np.abs(a) < 0.17 * (1.0 - 0.3 * b)
            arm = (np.abs(a) < 0.9) & (np.abs(b - 0.9) < 0.008)
            box = (a > 0.15) & (a < 0.5) & (b > 0.62) & (b < 0.72)
            mask = pole | arm | box
            col[:] = (0.55, 0.55, 0.53)
            col = np.where((arm | box)[..., None], 0.35, col)
    elif kind == CAR:
        body_col = np.array([hsh(1), hsh(2), hsh(3)]) ** 1.5 * _lerp(0.3, 1.0, hsh(4))
        body = (np.abs(a) < 0.98) & (b > 0.15) & (b < 0.58)
        cabin = (np.abs(a) < 0.75 - 0.25 * (b - 0.58) / 0.4) & (b >= 0.58) & (b < 0.98)
        wheel = ((np.abs(a) - 0.65) ** 2 / 0.04 + (b - 0.16) ** 2 / 0.025) < 1
        mask = body | cabin | wheel
        col[:] = body_col
        win = cabin & (np.abs(a) < 0.62 - 0.25 * (b - 0.58) / 0.4) & (b < 0.92)
        col = np.where(win[..., None], np.array([0.12, 0.14, 0.17]), col)
        col = np.where(wheel[..., None], 0.05, col)
        if tod.emission > 0:
            lights = (np.abs(np.abs(a) - 0.8) < 0.12) & (b > 0.38) & (b < 0.48)
            front = hsh(5) < 0.5
            emit = np.where(
                lights[..., None], np.array([1.5, 1.4, 1.1] if front else [1.3, 0.1, 0.05]), emit
            )
    else:  # person
        head = (a**2 / 0.25 + (b - 0.93) ** 2 / 0.005) < 1
        body = (np.abs(a) < 0.85 - 0.2 * (b - 0.5)) & (b > 0.45) & (b < 0.87)
        legs = (np.abs(np.abs(a) - 0.35) < 0.25) & (b <= 0.45)
        mask = head | body | legs
        col[:] = np.array([hsh(1), hsh(2), hsh(3)]) * 0.8
        col = np.where(legs[..., None], np.array([0.15, 0.15, 0.22]) * (0.5 + hsh(4)), col)
        col = np.where(head[..., None], np.array([0.75, 0.58, 0.45]) * _lerp(0.5, 1.1, hsh(5)), col)
    return mask, col, emit


# --------------------------------------------------------------------------------------------
# Times of day
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TimeOfDay:
    sky_horizon: tuple[float, float, float]
    sky_zenith: tuple[float, float, float]
    sun_azimuth: float
    ambient: tuple[float, float, float]
    sun: tuple[float, float, float]
    ground: float  # light on horizontal surfaces, relative to facades facing the sun
    fog_distance: float
    fog_colour: tuple[float, float, float]
    emission: float  # strength of lit windows and signs
    lit_share: float  # share of lit windows
    lamps: float  # street-lamp strength
    exposure: float
    noise: float
    clouds: float


TIMES = {
    "day": TimeOfDay(
        sky_horizon=(0.80, 0.87, 0.95),
        sky_zenith=(0.36, 0.56, 0.88),
        sun_azimuth=200.0,
        ambient=(0.62, 0.64, 0.68),
        sun=(0.50, 0.48, 0.44),
        ground=0.85,
        fog_distance=500.0,
        fog_colour=(0.80, 0.85, 0.92),
        emission=0.0,
        lit_share=0.0,
        lamps=0.0,
        exposure=1.0,
        noise=0.008,
        clouds=0.7,
    ),
    "sunset": TimeOfDay(
        sky_horizon=(1.0, 0.60, 0.32),
        sky_zenith=(0.28, 0.26, 0.50),
        sun_azimuth=262.0,
        ambient=(0.30, 0.26, 0.32),
        sun=(0.85, 0.50, 0.28),
        ground=0.45,
        fog_distance=380.0,
        fog_colour=(0.85, 0.55, 0.40),
        emission=0.45,
        lit_share=0.18,
        lamps=0.35,
        exposure=1.05,
        noise=0.02,
        clouds=0.8,
    ),
    "night": TimeOfDay(
        sky_horizon=(0.14, 0.10, 0.09),
        sky_zenith=(0.01, 0.015, 0.04),
        sun_azimuth=0.0,
        ambient=(0.035, 0.04, 0.06),
        sun=(0.0, 0.0, 0.0),
        ground=1.0,
        fog_distance=200.0,
        fog_colour=(0.06, 0.05, 0.06),
        emission=1.0,
        lit_share=0.38,
        lamps=0.8,
        exposure=1.1,
        noise=0.04,
        clouds=0.0,
    ),
}

FACE_AZIMUTH = np.array([180.0, 90.0, 0.0, 270.0])  # outward normal of faces 0..3
LAMP_COLOUR = np.array([1.0, 0.8, 0.5])


def _smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]
) -> np.ndarray:
    """Bilinearly upsampled random grid in [0, 1]."""
    grid = rng.random((cells[0] + 1, cells[1] + 1))
    yy = np.linspace(0, cells[0], shape[0])
    xx = np.linspace(0, cells[1], shape[1])
    y0 = np.minimum(yy.astype(int), cells[0] - 1)
    x0 = np.minimum(xx.astype(int), cells[1] - 1)
    fy, fx = (yy - y0)[:, None], (xx - x0)[None, :]
    g = grid
    top = g[y0][:, x0] * (1 - fx) + g[y0][:, x0 + 1] * fx
    bot = g[y0 + 1][:, x0] * (1 - fx) + g[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bot * fy


def _lamp_light(lamps_x, lamps_y, px, py, pz, strength):
    """Light of street lamps (heads 6.3 m up) on points; (N,) intensity."""
    out = np.zeros(np.broadcast_shapes(np.shape(px), np.shape(py), np.shape(pz)))
    for lx, ly in zip(lamps_x, lamps_y):
        d2 = (px - lx) ** 2 + (py - ly) ** 2 + (pz - 6.3) ** 2
        out += 16.0 / (d2 + 16.0)
    return out * strength


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------
def render_view(
    east: float,
    north: float,
    heading: float,
    *,
    dataset: str = "pitts30k",
    time_of_day: str = "day",
    size: tuple[int, int] = (120, 160),
    hfov: float = 60.0,
    camera_height: float = 2.5,
    pitch: float = 5.0,
    camera: str = "streetview",
    seed: int = 0,
    rng: np.random.Generator | int | None = None,
    cars: int = 0,
    people: int = 0,
    supersample: int = 2,
) -> np.ndarray:
    """Renders the view from UTM (east, north) with compass `heading` (degrees clockwise from
    north) in `dataset`'s district of the city of `seed`. Returns uint8 (H, W, 3).

    `rng` (or an int seed for it) drives what is not a property of the place: clouds,
    cars/people, exposure jitter, which extra windows are lit and sensor noise.
    """
    if dataset == NIGHT_SUBSET[0]:
        dataset = NIGHT_SUBSET[1]
    if dataset not in DATASET_SPECS:
        raise ValueError(f"dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
    if time_of_day not in TIMES:
        raise ValueError(f"time_of_day {time_of_day!r}: expected one of {', '.join(TIMES_OF_DAY)}")
    if camera not in CAMERAS:
        raise ValueError(f"camera {camera!r}: expected one of {', '.join(CAMERAS)}")
    if len(size) != 2 or min(size) < 8:
        raise ValueError(f"size {size!r}: expected (H, W) with both at least 8")
    if not 10.0 <= hfov <= 150.0:
        raise ValueError(f"hfov {hfov}: expected 10..150 degrees")
    spec = DATASET_SPECS[dataset]
    city = make_city(spec.district, int(seed))
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    ox, oy = east - spec.origin[0], north - spec.origin[1]
    if not street_free(city, ox, oy, 0.3):
        raise ValueError(f"position ({east:.2f}, {north:.2f}) of {dataset} is inside a building")
    return _render(
        city,
        ox,
        oy,
        heading,
        TIMES[time_of_day],
        CAMERAS[camera],
        tuple(size),
        hfov,
        camera_height,
        pitch,
        rng,
        cars,
        people,
        supersample,
    )


def _render(
    city: City,
    ox,
    oy,
    heading,
    tod: TimeOfDay,
    cam: Camera,
    size,
    hfov,
    cam_h,
    pitch,
    rng: np.random.Generator,
    n_cars: int,
    n_people: int,
    ss: int,
) -> np.ndarray:
    H, W = size[0] * ss, size[1] * ss
    f = (W / 2) / math.tan(math.radians(hfov) / 2)
    cx, cy = W / 2, H / 2 + f * math.tan(math.radians(pitch))
    off = np.arctan((np.arange(W) + 0.5 - cx) / f)
    hd = math.radians(heading)
    fwd = np.array([math.sin(hd), math.cos(hd)])
    right = np.array([math.cos(hd), -math.sin(hd)])
    ang = hd + off
    dx, dy = np.sin(ang), np.cos(ang)
    cos_off = np.cos(off)
    t, bi, bj, face = _cast(city, ox, oy, dx, dy)
    hit = np.isfinite(t)
    t = np.where(hit, t, MAX_DIST)
    dperp = t * cos_off
    cols = _facade_columns(city, t, bi, bj, face, ox, oy, dx, dy)
    top = np.where(hit, cols["top"], -1.0)

    v = (cy - (np.arange(H) + 0.5)) / f  # (H,) tan of elevation
    z = (cam_h + dperp[None, :] * v[:, None]).astype(np.float32)  # (H, W) height on the wall
    wall = (z >= 0) & (z < top[None, :])
    ground = z < 0
    salt = int(rng.integers(1 << 30))
    coarse = (-(-H // 4), -(-W // 4))  # clouds are smooth: noise at 1/4 resolution
    sky_noise = 0.65 * _smooth_noise(rng, coarse, (3, 5)) + 0.35 * _smooth_noise(
        rng, coarse, (7, 12)
    )
    exposure = tod.exposure * rng.uniform(0.92, 1.08)
    sun_az = tod.sun_azimuth + rng.uniform(-20, 20)

    # Sky.
    elev = np.clip(np.arctan(v) / (math.pi / 2.2), 0, 1)[:, None, None]
    img = np.array(tod.sky_horizon) * (1 - elev) ** 1.5 + np.array(tod.sky_zenith) * (
        1 - (1 - elev) ** 1.5
    )
    img = np.broadcast_to(img.astype(np.float32), (H, W, 3)).copy()
    if tod.clouds > 0:
        cloud = np.clip((sky_noise - rng.uniform(0.45, 0.75)) * 2.5, 0, 1).astype(np.float32)
        cloud = np.repeat(np.repeat(cloud, 4, 0), 4, 1)[:H, :W, None] * np.float32(tod.clouds)
        cloud_col = np.array(
            [0.97, 0.97, 0.98] if tod.sun[1] > 0.4 else [1.0, 0.7, 0.6], np.float32
        )
        above = int(np.clip(math.ceil(cy), 0, H))  # rows above the horizon can show sky
        img[:above] = img[:above] * (1 - cloud[:above]) + cloud_col * cloud[:above]
    depth = np.full((H, W), np.inf, np.float32)

    lamps = None
    if tod.lamps > 0:
        fur = _furniture(city, ox, oy, 60.0)
        near = np.nonzero(fur["kind"] == LAMP)[0]
        near = near[np.argsort((fur["x"][near] - ox) ** 2 + (fur["y"][near] - oy) ** 2)[:MAX_LAMPS]]
        lamps = (fur["x"][near], fur["y"][near])

    # Facades, computed densely over the rows that hold any wall.
    wall_rows = np.nonzero(wall.any(1))[0]
    if wall_rows.size:
        r0, r1 = wall_rows[0], wall_rows[-1] + 1
        zs = z[r0:r1]
        albedo, emit = _facade_pixels(cols, zs, tod, salt)
        facing = np.maximum(np.cos(np.radians(FACE_AZIMUTH[cols["face"]] - sun_az)), 0)
        colour = albedo * (np.array(tod.ambient) + np.array(tod.sun) * facing[:, None])
        if lamps is not None:
            lamp = 0.45 * _lamp_light(*lamps, cols["hx"][None], cols["hy"][None], zs, tod.lamps)
            colour += albedo * lamp[..., None] * LAMP_COLOUR
        if emit is not None:
            colour += emit
        fog = (1 - np.exp(-dperp / tod.fog_distance))[:, None]
        colour = colour * (1 - fog) + np.array(tod.fog_colour) * fog
        m = wall[r0:r1]
        img[r0:r1][m] = colour[m]
        depth[r0:r1][m] = np.broadcast_to(dperp, m.shape)[m]

    # Ground.
    rr, cc = np.nonzero(ground)
    if rr.size:
        tg = cam_h / -v[rr]
        reach = tg / cos_off[cc]
        gx, gy = ox + dx[cc] * reach, oy + dy[cc] * reach
        albedo = _ground_pixels(city, gx, gy)
        light = (np.array(tod.ambient) + np.array(tod.sun) * 0.55) * tod.ground
        light = np.broadcast_to(light, albedo.shape)
        if lamps is not None:
            light = light + _lamp_light(*lamps, gx, gy, 0.0, tod.lamps)[:, None] * LAMP_COLOUR
        fog = (1 - np.exp(-tg / tod.fog_distance))[:, None]
        img[rr, cc] = albedo * light * (1 - fog) + np.array(tod.fog_colour) * fog
        depth[rr, cc] = tg

    # Billboards, far to near, depth-tested per pixel.
    fur = _furniture(city, ox, oy, SPRITE_RANGE)
    tr = _transients(city, rng, ox, oy, fwd, right, n_cars, n_people)
    sprites = {k: np.concatenate([fur[k], tr[k]]) for k in fur}
    rel_x, rel_y = sprites["x"] - ox, sprites["y"] - oy
    sd = rel_x * fwd[0] + rel_y * fwd[1]
    sl = rel_x * right[0] + rel_y * right[1]
    visible = (sd > 0.8) & (np.abs(sl) - sprites["half"] < sd * (W / 2) / f + 1.0)
    glows = []
    for i in np.nonzero(visible)[0][np.argsort(-sd[visible], kind="stable")]:
        d_i, kind = sd[i], int(sprites["kind"][i])
        xc = cx + f * sl[i] / d_i
        half_px = f * sprites["half"][i] / d_i
        y_bot = cy + f * cam_h / d_i
        y_top = cy - f * (sprites["height"][i] - cam_h) / d_i
        x0, x1 = max(int(xc - half_px), 0), min(math.ceil(xc + half_px), W)
        y0, y1 = max(int(y_top), 0), min(math.ceil(y_bot), H)
        if x0 >= x1 or y0 >= y1:
            continue
        a = ((np.arange(x0, x1) + 0.5 - xc) / half_px)[None, :]
        b = ((y_bot - (np.arange(y0, y1) + 0.5)) / (y_bot - y_top))[:, None]
        mask, albedo, emit = _sprite_shape(
            kind, int(sprites["id"][i]), a, b, city.key, tod, city.district
        )
        mask = mask & (depth[y0:y1, x0:x1] > d_i)
        if not mask.any():
            continue
        light = np.array(tod.ambient) + np.array(tod.sun) * 0.6
        if lamps is not None:
            light = (
                light
                + _lamp_light(
                    *lamps, np.array([sprites["x"][i]]), np.array([sprites["y"][i]]), 1.5, tod.lamps
                )
                * LAMP_COLOUR
            )
        fog = 1 - math.exp(-d_i / tod.fog_distance)
        colour = (albedo * light + emit) * (1 - fog) + np.array(tod.fog_colour) * fog
        region = img[y0:y1, x0:x1]
        region[mask] = colour[mask]
        depth[y0:y1, x0:x1][mask] = d_i
        if kind == LAMP and tod.lamps > 0:
            glows.append((xc + 0.7 * half_px, y_top + 0.05 * (y_bot - y_top), f * 0.25 / d_i))
    for gx_, gy_, sigma in glows:
        r = int(4 * sigma) + 1
        xa, xb = max(int(gx_) - r, 0), min(int(gx_) + r + 1, W)
        ya, yb = max(int(gy_) - r, 0), min(int(gy_) + r + 1, H)
        if xa >= xb or ya >= yb:
            continue
        yy = (np.arange(ya, yb) + 0.5 - gy_)[:, None]
        xx = (np.arange(xa, xb) + 0.5 - gx_)[None, :]
        g = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))[..., None]
        img[ya:yb, xa:xb] += g * LAMP_COLOUR * 0.7 * tod.lamps

    # Down-sample, then the camera: exposure, white balance, tone, saturation, vignette, noise.
    if ss > 1:
        img = img.reshape(size[0], ss, size[1], ss, 3).mean(axis=(1, 3))
    img = img * exposure * np.array(cam.gains)
    img = 0.5 + (img - 0.5) * cam.contrast
    lum = img.mean(-1, keepdims=True)
    img = lum + (img - lum) * cam.saturation
    img = np.clip(img, 0, 1)
    if cam.gamma != 1.0:
        img = img ** (1.0 / cam.gamma)
    if cam.vignette > 0:
        yy = np.linspace(-1, 1, size[0])[:, None]
        xx = np.linspace(-1, 1, size[1])[None, :]
        img = img * (1 - cam.vignette * (xx**2 + yy**2) / 2)[..., None]
    sigma = tod.noise * cam.noise
    img = img + rng.normal(0, sigma, img.shape) + rng.normal(0, sigma * 0.5, img.shape[:2] + (1,))
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# UTM -> latitude/longitude (for the file names' lat/lon fields)
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


# --------------------------------------------------------------------------------------------
# Planning: where every database image and query is
# --------------------------------------------------------------------------------------------
def _street_positions(city: City, box, spacing: float):
    """Positions every `spacing` m along the street centre lines inside box (x0, x1, y0, y1).

    Returns (P, 2) local coordinates and, per position, the half width of its street and the
    street's axis (0: runs north-south, 1: east-west).
    """
    x0, x1, y0, y1 = box
    pts, half, axes = [], [], []
    for axis in (0, 1):
        lines, widths = (city.xs, city.wx) if axis == 0 else (city.ys, city.wy)
        lo, hi = (x0, x1) if axis == 0 else (y0, y1)
        along_lo, along_hi = (y0, y1) if axis == 0 else (x0, x1)
        along = np.arange(along_lo + spacing / 2, along_hi, spacing)
        for k in np.nonzero((lines >= lo) & (lines < hi))[0]:
            p = np.stack([np.full_like(along, lines[k]), along], 1)
            pts.append(p if axis == 0 else p[:, ::-1])
            half.append(np.full(len(along), widths[k] / 2))
            axes.append(np.full(len(along), axis))
    if not pts:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0, int)
    return np.concatenate(pts), np.concatenate(half), np.concatenate(axes)


def street_positions(
    dataset: str = "pitts30k",
    seed: int = 0,
    spacing: float = 6.0,
    area: tuple[float, float, float, float] = (0.0, 200.0, 0.0, 200.0),
) -> np.ndarray:
    """(N, 2) UTM positions every `spacing` m along the street centre lines of `dataset`'s
    district, inside `area` = (x0, x1, y0, y1) metres from the district's origin."""
    spec = DATASET_SPECS[NIGHT_SUBSET[1] if dataset == NIGHT_SUBSET[0] else dataset]
    positions, _, _ = _street_positions(make_city(spec.district, int(seed)), area, spacing)
    return positions + np.array(spec.origin)


def _split_areas(city: City, preset: Preset, dataset: str) -> dict:
    """Disjoint square areas, one per split, each just big enough for its database."""
    areas, x = {}, 0.0
    counts = preset.counts[dataset]
    for split in DATASET_SPECS[dataset].splits:
        need = math.ceil(counts[split][0] / preset.headings)
        side = 40.0
        while len(_street_positions(city, (x, x + side, 0.0, side), preset.spacing)[0]) < need:
            side += 10.0
        areas[split] = (x, x + side, 0.0, side)
        x += side + 120.0  # a gap wider than the 25 m soft-positive radius, plus offsets
    return areas


@dataclasses.dataclass(frozen=True)
class View:
    """One image to render and write."""

    path: str
    dataset: str
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
    key: tuple[int, ...]  # (seed, dataset, split, role, index)


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


def _plan_split(root: Path, dataset: str, split: str, preset: Preset, seed: int) -> list[View]:
    spec = DATASET_SPECS[dataset]
    city = make_city(spec.district, seed)
    box = _split_areas(city, preset, dataset)[split]
    n_db, n_q = preset.counts[dataset][split]
    positions, half, axes = _street_positions(city, box, preset.spacing)
    need = math.ceil(n_db / preset.headings)
    pick = np.unique(np.round(np.linspace(0, len(positions) - 1, need)).astype(int))
    positions, half, axes = positions[pick], half[pick], axes[pick]
    folder = root / dataset / "images" / split
    si = SPLIT_INDEX[split]
    views = []
    db_cam = CAMERAS[spec.database_camera]
    step = 360.0 / preset.headings
    for p, (x, y) in enumerate(positions):
        rng = np.random.default_rng([seed, spec.index, si, 0, p, 0])
        start = rng.uniform(0, step)
        for k in range(preset.headings):
            n = p * preset.headings + k
            if n >= n_db:
                break
            heading = (start + k * step) % 360.0
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
    q_cam = CAMERAS[spec.query_camera]
    for i in range(n_q):
        rng = np.random.default_rng([seed, spec.index, si, 1, i, 0])
        tod = spec.query_times[i % len(spec.query_times)]
        # Offset from a database position along and across its street; a training query
        # must keep a database image within 10 m (the fallback is the position itself).
        x, y = positions[int(rng.integers(len(positions)))]
        for _ in range(100):
            b = int(rng.integers(len(positions)))
            along = rng.uniform(-preset.query_offset, preset.query_offset)
            lateral = rng.uniform(-1, 1) * max(min(4.0, half[b] - 2.5), 0.0)
            north_south = axes[b] == 0
            qx = positions[b, 0] + (lateral if north_south else along)
            qy = positions[b, 1] + (along if north_south else lateral)
            if not street_free(city, qx, qy, 1.0):
                continue
            nearest = np.sqrt(((positions - [qx, qy]) ** 2).sum(1)).min()
            if split == "train" and nearest > TRAIN_POSITIVE_DIST:
                continue
            x, y = qx, qy
            break
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
        name = _file_name(spec, east, north, heading, pitch, height, tod, f"q{i:06d}", stamp)
        views.append(
            View(
                path=str(folder / "queries" / name), dataset=dataset, east=east, north=north,
                heading=heading, hfov=hfov, pitch=pitch, height=height, time_of_day=tod,
                camera=spec.query_camera, cars=int(rng.integers(0, 4)),
                people=int(rng.integers(0, 5)), key=(seed, spec.index, si, 1, i),
            )
        )  # fmt: skip
    return views


def plan(
    out_root: str | os.PathLike,
    preset: str = "tiny",
    seed: int = 0,
    datasets: tuple[str, ...] = DATASETS,
) -> dict[str, dict[str, list[View]]]:
    """Every view of a preset: {dataset: {split: [View, ...]}} (tokyo-night: see `NIGHT_SUBSET`)."""
    if preset not in PRESETS:
        raise ValueError(f"preset {preset!r}: expected one of {', '.join(PRESETS)}")
    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        raise ValueError(f"datasets {unknown}: expected names among {', '.join(DATASETS)}")
    p = PRESETS[preset]
    root = Path(out_root)
    out = {}
    for name, spec in DATASET_SPECS.items():
        if name in datasets or (name == NIGHT_SUBSET[1] and NIGHT_SUBSET[0] in datasets):
            out[name] = {s: _plan_split(root, name, s, p, seed) for s in spec.splits}
    return out


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def _render_and_write(view: View, size, supersample: int, quality: int, seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(list(view.key) + [1])
    spec = DATASET_SPECS[view.dataset]
    city = make_city(spec.district, seed)
    img = _render(
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
    )
    Image.fromarray(img).save(view.path, quality=quality)


def _render_chunk(args) -> tuple[int, float]:
    views, size, supersample, quality, seed = args
    start = time.process_time()
    for v in views:
        _render_and_write(v, size, supersample, quality, seed)
    return len(views), time.process_time() - start


def generate(
    out_root: str | os.PathLike,
    preset: str = "tiny",
    seed: int = 0,
    workers: int | None = None,
    datasets: tuple[str, ...] = DATASETS,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Renders the preset's datasets under `out_root`; returns a summary (counts, images/s).

    Refuses to write into an existing `<out_root>/<dataset>/images` unless `overwrite`, which
    deletes that folder first. tokyo-night is a copy of tokyo-xs's database and night queries;
    asked for without tokyo-xs, those are rendered in a temporary folder inside tokyo-night.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers {workers}: expected at least 1")
    if seed < 0:
        raise ValueError(f"seed {seed}: expected a non-negative integer")
    workers = workers or os.cpu_count() or 1
    start = time.perf_counter()
    views = plan(out_root, preset, seed, datasets)
    p = PRESETS[preset]
    root = Path(out_root)
    night_name, source = NIGHT_SUBSET
    staging = None
    if night_name in datasets and source not in datasets:
        staging = root / night_name / ".source"
        night_views = plan(staging, preset, seed, (source,))[source]["test"]
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
    chunk = 8 if p.size[0] >= 240 else 24
    jobs = [
        (todo[i : i + chunk], p.size, p.supersample, p.quality, seed)
        for i in range(0, len(todo), chunk)
    ]
    done, cpu_s = 0, 0.0
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
            done, cpu_s = done + n, cpu_s + cpu
            if progress:
                print(f"\r{done}/{len(todo)} images", end="", file=sys.stderr, flush=True)
    finally:
        if pool is not None:
            pool.shutdown()
    if progress:
        print(file=sys.stderr)
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

    summary = {
        "preset": preset,
        "seed": seed,
        "out": str(root),
        "size": list(p.size),
        "workers": workers,
        "datasets": {},
    }
    for name in datasets:
        summary["datasets"][name] = {}
        for split in DATASET_SPECS[source if name == night_name else name].splits:
            folder = root / name / "images" / split
            notes: dict[str, int] = {}
            queries = os.listdir(folder / "queries")
            for f in sorted(queries):
                tod = parse_fields(f)["note"]
                notes[tod] = notes.get(tod, 0) + 1
            summary["datasets"][name][split] = {
                "database": len(os.listdir(folder / "database")),
                "queries": len(queries),
                "query_times": notes,
            }
    summary.update(
        rendered=len(todo),
        copied=copied,
        seconds=round(time.perf_counter() - start, 2),
        images_per_s=round(len(todo) / max(rendered_s, 1e-9), 1),
        images_per_cpu_s=round(len(todo) / max(cpu_s, 1e-9), 1),
    )
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vgjax.data.synthetic", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--out", required=True, help="datasets root; <out>/<name>/images/... is written"
    )
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    parser.add_argument(
        "--datasets",
        default=",".join(DATASETS),
        help=f"comma-separated subset of {','.join(DATASETS)}",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing <name>/images folders"
    )
    args = parser.parse_args(argv)
    names = tuple(n for n in args.datasets.split(",") if n)
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers {args.workers}: expected at least 1")
    if args.seed < 0:
        parser.error(f"--seed {args.seed}: expected a non-negative integer")
    bad = [n for n in names if n not in DATASETS]
    if bad:
        parser.error(f"--datasets: unknown {bad}; expected names among {', '.join(DATASETS)}")
    try:
        summary = generate(
            args.out,
            args.preset,
            args.seed,
            args.workers,
            names,
            args.overwrite,
            progress=sys.stderr.isatty(),
        )
    except FileExistsError as e:
        parser.error(str(e))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
