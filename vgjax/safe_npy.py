"""Reading `.npy` files that hold object arrays (ragged ground truths) without running
arbitrary pickled code.

`np.load(allow_pickle=True)` unpickles whatever the file holds, and a pickle can call any
function: a downloaded ground-truth file could run code. `load_npy` reads the `.npy` header
itself and, for an object array, unpickles its payload with an unpickler that resolves only
NumPy's array-rebuilding names (`numpy_globals`); anything else is refused by name.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np


def numpy_globals() -> dict[tuple[str, str], Any]:
    """The names a pickled NumPy array (also one of arrays) refers to, NumPy 1 and 2."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    out: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray,
                                       ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[module, "_reconstruct"] = multiarray._reconstruct
        out[module, "scalar"] = multiarray.scalar
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out.update({("numpy.dtypes", n): getattr(dtypes, n) for n in dir(dtypes)
                    if n.endswith("DType")})
    return out


_ALLOWED = {**numpy_globals(), ("_codecs", "encode"): lambda s, enc="latin1": s.encode(enc)}


class RefusedPickle(pickle.UnpicklingError):
    """The file's pickle refers to a name outside NumPy's array rebuilding."""


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        found = _ALLOWED.get((module, name))
        if found is None:
            raise RefusedPickle(f"it refers to {module}.{name}, which a NumPy array does not "
                                "need (refused: unpickling it could run code)")
        return found


def load_npy(path: str | Path, allow_objects: bool = False) -> np.ndarray:
    """The array in `path`. An object array is read only with `allow_objects`, through the
    restricted unpickler. Raises ValueError / OSError / pickle.UnpicklingError as np.load."""
    path = Path(path)
    if not allow_objects:
        return np.load(path, allow_pickle=False)
    with path.open("rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        if not dtype.hasobject:
            return np.load(path, allow_pickle=False)
        array = _Unpickler(f, encoding="latin1").load()
    if not isinstance(array, np.ndarray) or array.shape != tuple(shape):
        raise ValueError(f"the payload is not the {tuple(shape)} array its header describes")
    return array
