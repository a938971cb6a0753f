"""Deterministic hashing of integer ids to uniform floats: every property of a place (a
building's height, a window's light, a tree's shape) is a pure function of its ids and the seed."""

from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix(h, keys):
    """Folds integer keys (broadcast) into uint64 hash states `h`."""
    with np.errstate(over="ignore"):
        for k in keys:
            k = np.asarray(k).astype(np.int64).astype(np.uint64)
            z = (h ^ k) + _GOLDEN
            z = (z ^ (z >> np.uint64(30))) * _M1
            z = (z ^ (z >> np.uint64(27))) * _M2
            h = z ^ (z >> np.uint64(31))
    return h


def unit(h) -> np.ndarray:
    """Uniform floats in [0, 1) from uint64 hash states."""
    return (h >> np.uint64(11)).astype(np.float64) * (2.0**-53)


def hash_unit(*keys) -> np.ndarray:
    """Uniform floats in [0, 1) from integer keys (broadcast); the same keys give the same value."""
    return unit(mix(np.zeros((), np.uint64), keys))


def lerp(lo, hi, t):
    """`lo` at t = 0, `hi` at t = 1."""
    return lo + (hi - lo) * t
