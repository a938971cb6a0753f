"""Billboards: street furniture (trees, lamp and utility poles) placed by hashed slot ids, and
transient occluders (cars, people) placed by a view's own random generator."""

from __future__ import annotations

import math

import numpy as np

from vgjax.synthetic.hashing import hash_unit, lerp, mix
from vgjax.synthetic.layout import City, nearest_line, street_free
from vgjax.synthetic.styles import SEASON_FOLIAGE, District, TimeOfDay

TREE, LAMP, UTILITY, CAR, PERSON = range(5)


def furniture(city: City, ox: float, oy: float, radius: float) -> dict:
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
                along = (sl + lerp(0.3, 0.7, hash_unit(*hk, 1))) * spacing
                if kind == LAMP:
                    along = (sl + 0.5 * (side > 0)) * spacing
                across = lines[li] + side * (widths[li] / 2 - d.sidewalk + 0.6)
                off, cw = nearest_line(cross_lines, cross_widths, along)
                keep = (np.abs(off) > cw / 2 + 1.5) & (hash_unit(*hk, 2) < prob)
                px, py = (across, along) if axis == 0 else (along, across)
                xs_all.append(px[keep])
                ys_all.append(py[keep])
                k = np.full(keep.sum(), kind)
                if kind == LAMP and d.utility_poles:
                    k = np.where(hash_unit(*hk, 3)[keep] < 0.6, UTILITY, LAMP)
                kinds.append(k)
                ids.append(
                    (mix(np.zeros((), np.uint64), hk) >> np.uint64(2)).astype(np.int64)[keep]
                )
    x, y = np.concatenate(xs_all), np.concatenate(ys_all)
    kind, sid = np.concatenate(kinds), np.concatenate(ids)
    height = np.select(
        [kind == TREE, kind == LAMP], [lerp(5.0, 10.0, hash_unit(key, 400, sid)), 6.5], 9.5
    )
    half = np.select(
        [kind == TREE, kind == LAMP], [lerp(1.6, 3.2, hash_unit(key, 401, sid)), 1.3], 0.9
    )
    return {"x": x, "y": y, "kind": kind, "id": sid, "height": height, "half": half}


def transients(city: City, rng: np.random.Generator, ox, oy, fwd, right, n_cars, n_people) -> dict:
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


def sprite_shape(
    kind: int,
    sid: int,
    a: np.ndarray,
    b: np.ndarray,
    key: int,
    tod: TimeOfDay,
    district: District,
    season: str = "summer",
):
    """Mask, albedo and emission of a billboard in its unit box (a in [-1, 1], b in [0, 1] up);
    `season` colours and thins the canopies of broadleaf trees (conifers stay as they are)."""
    shape = np.broadcast_shapes(a.shape, b.shape)
    col = np.zeros(shape + (3,))
    emit = np.zeros(shape + (3,))
    hsh = lambda *k: float(hash_unit(key, 500, sid, *k))
    if kind == TREE:
        style = hsh(1)
        trunk = (np.abs(a) < 0.07) & (b < 0.5)
        if style < 0.7:
            cy_, ry = lerp(0.62, 0.7, hsh(2)), lerp(0.28, 0.36, hsh(3))
            r = (a / 1.0) ** 2 + ((b - cy_) / ry) ** 2
        else:  # conifer
            r = np.abs(a) / np.maximum(1.05 - (b - 0.2) / 0.8, 1e-3) + (b < 0.2) * 9.0
        leaf = hash_unit(key, 501, sid, np.floor(a * 11), np.floor(b * 15))
        canopy = r < 0.9 + 0.2 * leaf
        fol = np.array(
            district.foliage[int(hsh(4) * len(district.foliage)) % len(district.foliage)]
        )
        tint, density = SEASON_FOLIAGE[season]
        if style < 0.7 and tint is not None:
            fol = 0.3 * fol + 0.7 * np.array(tint)
            canopy &= hash_unit(key, 502, sid, np.floor(a * 11), np.floor(b * 15)) < density
        col[:] = fol
        col = col * lerp(0.8, 1.15, leaf)[..., None] * (0.7 + 0.3 * b - 0.15 * a)[..., None]
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
        body_col = np.array([hsh(1), hsh(2), hsh(3)]) ** 1.5 * lerp(0.3, 1.0, hsh(4))
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
        col = np.where(head[..., None], np.array([0.75, 0.58, 0.45]) * lerp(0.5, 1.1, hsh(5)), col)
    return mask, col, emit

