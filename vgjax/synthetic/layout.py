"""The street grid of a district: street centre lines, block footprints, positions on streets."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from vgjax.synthetic.hashing import hash_unit, lerp
from vgjax.synthetic.styles import DISTRICTS, District


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
        gaps = lerp(d.block[0], d.block[1], hash_unit(key, 11 + axis, k))
        # Shift so that the local origin lies mid-block between lines LINES_EACH_SIDE +- 1.
        pos = np.concatenate([[0.0], np.cumsum(gaps[:-1])])
        pos -= pos[LINES_EACH_SIDE] + gaps[LINES_EACH_SIDE] * 0.5
        widths = lerp(d.street[0], d.street[1], hash_unit(key, 13 + axis, k))
        lines.append((pos, widths))
    return City(d, seed, lines[0][0], lines[1][0], lines[0][1], lines[1][1])


def cell(lines: np.ndarray, v) -> np.ndarray:
    """Index of the block between lines[i] and lines[i + 1] that holds v (clipped to the grid)."""
    return np.clip(np.searchsorted(lines, v, side="right") - 1, 0, len(lines) - 2)


def nearest_line(lines: np.ndarray, widths: np.ndarray, v):
    """Signed offset from the nearest street centre line, and that street's width."""
    i = cell(lines, v)
    lo, hi = v - lines[i], v - lines[i + 1]
    near_hi = np.abs(hi) < np.abs(lo)
    return np.where(near_hi, hi, lo), np.where(near_hi, widths[i + 1], widths[i])


def street_free(city: City, x, y, margin: float = 0.0) -> np.ndarray:
    """True where (x, y) (local metres) is on a street, at least `margin` from any facade."""
    ox, owx = nearest_line(city.xs, city.wx, np.asarray(x, np.float64))
    oy, owy = nearest_line(city.ys, city.wy, np.asarray(y, np.float64))
    return (np.abs(ox) < owx / 2 - margin) | (np.abs(oy) < owy / 2 - margin)


def block_rect(city: City, i, j):
    """Footprint (x0, x1, y0, y1) of the block of cell (i, j), facade to facade."""
    x0 = city.xs[i] + city.wx[i] / 2
    x1 = city.xs[i + 1] - city.wx[i + 1] / 2
    y0 = city.ys[j] + city.wy[j] / 2
    y1 = city.ys[j + 1] - city.wy[j + 1] / 2
    return x0, x1, y0, y1


def positions_along_streets(city: City, box, spacing: float, streets: tuple[int, int] = (1, 1)):
    """Positions every `spacing` m along the street centre lines inside box (x0, x1, y0, y1).

    `streets` = (n, m): only every n-th north-south and every m-th east-west street (counted
    from the line through the district's origin; 0: none of that direction).
    Returns (P, 2) local coordinates and, per position, the half width of its street and the
    street's axis (0: runs north-south, 1: east-west).
    """
    x0, x1, y0, y1 = box
    pts, half, axes = [], [], []
    for axis in (0, 1):
        stride = int(streets[axis])
        if stride <= 0:
            continue
        lines, widths = (city.xs, city.wx) if axis == 0 else (city.ys, city.wy)
        lo, hi = (x0, x1) if axis == 0 else (y0, y1)
        along_lo, along_hi = (y0, y1) if axis == 0 else (x0, x1)
        along = np.arange(along_lo + spacing / 2, along_hi, spacing)
        inside = (lines >= lo) & (lines < hi)
        taken = (np.arange(len(lines)) - LINES_EACH_SIDE) % stride == 0
        for k in np.nonzero(inside & taken)[0]:
            p = np.stack([np.full_like(along, lines[k]), along], 1)
            pts.append(p if axis == 0 else p[:, ::-1])
            half.append(np.full(len(along), widths[k] / 2))
            axes.append(np.full(len(along), axis))
    if not pts:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0, int)
    return np.concatenate(pts), np.concatenate(half), np.concatenate(axes)

