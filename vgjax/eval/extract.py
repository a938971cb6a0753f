"""Batched descriptor extraction into a `DescriptorStore` (RAM, or a .npy file on disk).

Extraction only needs a callable `describe(uint8 (B, H, W, 3)) -> (B, D)`; `Describer`
builds one from a saved model. The model is resolution-agnostic, so one describer serves
every view shape; each distinct (B, H, W) is one jit compilation, which is why batches are
always padded to `batch_size` and single_query groups images of equal shape.

Overlap: a thread pool decodes batch i+1.. (prefetch) while batch i runs on the device, and
the device result of batch i is fetched only after batch i+1 has been dispatched (JAX
dispatch is asynchronous), so host decoding, transfers and device compute run together.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from vgjax.data.pipeline import BatchLoader
from vgjax.eval.methods import ViewPlan

log = logging.getLogger(__name__)

DescribeFn = Callable[[np.ndarray], "np.ndarray"]


class DescriptorStore:
    """An (N, D) descriptor matrix kept in RAM or streamed to a .npy file.

    On disk, rows are written and read with positional file I/O rather than through a
    memory map, so the process never holds more than the chunk it is working on (pages of a
    written memory map stay resident and would count against the process). The file is a
    normal .npy (created with `np.lib.format.open_memmap`), readable with `np.load`.
    """

    def __init__(self, shape: tuple[int, int], dtype=np.float32, path: str | os.PathLike | None = None):
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float16):
            raise ValueError(f"descriptor store dtype must be float32 or float16, got {self.dtype}")
        self.path = None if path is None else Path(path)
        self._array = None
        self._fd = None
        if self.path is None:
            self._array = np.zeros(self.shape, self.dtype)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            mm = np.lib.format.open_memmap(self.path, mode="w+", dtype=self.dtype, shape=self.shape)
            self._offset = mm.offset
            del mm
            self._fd = os.open(self.path, os.O_RDWR)

    @classmethod
    def open(cls, path: str | os.PathLike) -> DescriptorStore:
        """An existing 2-D float32/float16 .npy file, read through positional I/O."""
        mm = np.load(path, mmap_mode="r")
        if mm.ndim != 2 or mm.dtype not in (np.float32, np.float16):
            raise ValueError(f"{path}: expected a 2-D float32/float16 array, got "
                             f"{mm.dtype} {mm.shape}")
        store = cls.__new__(cls)
        store.shape, store.dtype, store.path = mm.shape, mm.dtype, Path(path)
        store._array, store._offset = None, mm.offset
        del mm
        store._fd = os.open(path, os.O_RDWR)
        return store

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def dim(self) -> int:
        return self.shape[1]

    @property
    def row_bytes(self) -> int:
        return self.shape[1] * self.dtype.itemsize

    def write(self, start: int, rows: np.ndarray) -> None:
        """Writes contiguous rows starting at row `start`."""
        rows = np.ascontiguousarray(rows, self.dtype)
        if rows.ndim != 2 or rows.shape[1] != self.shape[1] or start + len(rows) > self.shape[0]:
            raise ValueError(f"cannot write rows {rows.shape} at {start} into store {self.shape}")
        if self._array is not None:
            self._array[start:start + len(rows)] = rows
            return
        data = memoryview(rows).cast("B")
        offset = self._offset + start * self.row_bytes
        while len(data):
            n = os.pwrite(self._fd, data, offset)
            data, offset = data[n:], offset + n

    def write_rows(self, row_indices: Sequence[int], rows: np.ndarray) -> None:
        """Writes rows at arbitrary indices (runs of consecutive indices in one call each)."""
        row_indices = np.asarray(row_indices, np.int64)
        if len(row_indices) == 0:
            return
        breaks = np.flatnonzero(np.diff(row_indices) != 1) + 1
        for seg in np.split(np.arange(len(row_indices)), breaks):
            self.write(int(row_indices[seg[0]]), rows[seg[0]:seg[-1] + 1])

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows [start, stop) as a new float32 array."""
        stop = self.shape[0] if stop is None else min(stop, self.shape[0])
        if self._array is not None:
            return self._array[start:stop].astype(np.float32)
        n = max(0, stop - start)
        buf = bytearray(n * self.row_bytes)
        view, offset = memoryview(buf), self._offset + start * self.row_bytes
        while len(view):
            got = os.preadv(self._fd, [view], offset)
            if got == 0:
                raise OSError(f"{self.path}: file shorter than its header says")
            view, offset = view[got:], offset + got
        rows = np.frombuffer(buf, self.dtype).reshape(n, self.shape[1])  # owns `buf`
        return rows.astype(np.float32, copy=False)

    def rows_per_chunk(self, chunk_bytes: int) -> int:
        """Rows whose float32 copy fits `chunk_bytes` (at least 1)."""
        return max(1, int(chunk_bytes // (self.shape[1] * 4)))

    def chunks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.shape[0], rows):
            yield start, self.read(start, start + rows)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        with contextlib.suppress(OSError):
            self.close()


StoreFactory = Callable[[int, int], DescriptorStore]


def store_factory(dtype=np.float32, path: str | os.PathLike | None = None) -> StoreFactory:
    """A factory `(n_rows, dim) -> DescriptorStore`: in RAM if `path` is None, else on disk."""
    return lambda n, d: DescriptorStore((n, d), dtype, path)


class Describer:
    """`describe(uint8 (B, H, W, 3)) -> (B, D)` from a jitted `fn(variables, images)`.

    The variables are placed on the device once. Results are returned as device arrays
    (not yet fetched), so callers can overlap the next batch with this one.
    """

    def __init__(self, fn: Callable, variables=None):
        self.fn = fn
        self.variables = variables
        if variables is not None:
            import jax
            self.variables = jax.device_put(variables)

    def __call__(self, images):
        if self.variables is None:
            return self.fn(images)
        return self.fn(self.variables, images)

    @classmethod
    def from_model(cls, model_cfg, variables) -> Describer:
        from vgjax.models.network import build_network, make_describe_fn
        return cls(make_describe_fn(build_network(model_cfg)), variables)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, model_overrides: dict | None = None):
        """(describer, model_cfg, image_size) from a model dir / run folder / checkpoint.

        `model_overrides` may only change fields that leave the parameters as they are
        (`dtype`, e.g. {"dtype": "bfloat16"}). `image_size` is the (H, W) the model was
        trained or converted for, as recorded beside it.
        """
        from vgjax.models.io import load_model, read_model_info
        unknown = sorted(set(model_overrides or {}) - set(EVAL_MODEL_OVERRIDES))
        if unknown:
            raise ValueError(f"--config.model.{unknown[0]}: the architecture comes from the "
                             f"checkpoint; only {', '.join('model.' + k for k in EVAL_MODEL_OVERRIDES)} "
                             "can be changed for evaluation")
        model_cfg, variables = load_model(path)
        for key, value in (model_overrides or {}).items():
            model_cfg[key] = value
        image_size = tuple(int(s) for s in read_model_info(path).get("image_size", (480, 640)))
        return cls.from_model(model_cfg, variables), model_cfg, image_size


EVAL_MODEL_OVERRIDES = ("dtype",)


def _groups(paths: Sequence[str], plan: ViewPlan, num_workers: int):
    """[(image indices, view shapes)]: one group unless view shapes depend on image size."""
    if plan.fixed_shapes:
        return [(np.arange(len(paths)), plan.view_shapes())]
    with cf.ThreadPoolExecutor(max(1, num_workers)) as pool:
        sizes = list(pool.map(plan.read.size, paths))
    groups: dict = collections.OrderedDict()
    for i, hw in enumerate(sizes):
        groups.setdefault(plan.view_shapes(hw), []).append(i)
    return [(np.array(ix), shapes) for shapes, ix in groups.items()]


def _batches(paths, plan: ViewPlan, batch_size: int, num_workers: int, prefetch: int):
    """Yields (image indices, views [(batch_size, h, w, 3) per view], n_valid), prefetched."""
    for ix, shapes in _groups(paths, plan, num_workers):
        loader = BatchLoader([paths[i] for i in ix], None, batch_size, num_workers=num_workers,
                             prefetch=prefetch, load_fn=plan.load_views, views=shapes)
        for b, (views, n) in enumerate(loader):
            yield ix[b * batch_size:b * batch_size + n], views, n


def extract_descriptors(paths: Sequence[str], describe: DescribeFn, plan: ViewPlan, *,
                        batch_size: int = 32, num_workers: int = 8, prefetch: int = 2,
                        make_store: StoreFactory | None = None,
                        progress: str | None = None) -> tuple[DescriptorStore, dict]:
    """Descriptors of `paths` under `plan`: a store of (len(paths) * rows_per_image, D).

    Row `i * rows_per_image + c` holds crop `c` of image `i`. Returns (store, stats) with
    stats = {"seconds", "images", "images_per_s", "compiled_shapes"}.
    """
    if batch_size < 1:
        raise ValueError(f"test.batch_size must be >= 1, got {batch_size}")
    if len(paths) == 0:
        raise ValueError("no images to describe")
    make_store = make_store or store_factory()
    rows_per_image = plan.rows_per_image
    store: DescriptorStore | None = None
    shapes_seen = set()
    t0 = time.perf_counter()

    def finish(ix, outs, n):
        nonlocal store
        descs = []
        for o in outs:
            d = np.asarray(o, dtype=np.float32)
            if d.ndim != 2 or d.shape[0] != batch_size:
                raise ValueError(f"describe returned shape {d.shape}, expected ({batch_size}, D)")
            descs.append(d[:n])
        combined = plan.combine_views(descs)              # (n, rows_per_image, D)
        if store is None:
            store = make_store(len(paths) * rows_per_image, combined.shape[-1])
        rows = (ix[:, None] * rows_per_image + np.arange(rows_per_image)).reshape(-1)
        store.write_rows(rows, combined.reshape(-1, combined.shape[-1]))

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(paths), desc=progress, unit="img", leave=False)
    pending = None
    for ix, views, n in _batches(list(paths), plan, batch_size, num_workers, prefetch):
        shapes_seen.update(v.shape for v in views)
        outs = [describe(v) for v in views]               # dispatched, not yet fetched
        if pending is not None:
            finish(*pending)
        pending = (ix, outs, n)
        if bar is not None:
            bar.update(n)
    finish(*pending)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    stats = {"seconds": seconds, "images": len(paths),
             "images_per_s": len(paths) / max(seconds, 1e-9),
             "compiled_shapes": len(shapes_seen)}
    return store, stats
