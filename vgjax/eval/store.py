"""An (N, D) descriptor matrix in RAM or streamed to a .npy file: what evaluation writes
descriptors into and searches from, whatever the database size."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

DEFAULT_CHUNK_BYTES = 256 << 20  # block size of streamed reads (search, PCA)


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
        mm = np.load(path, mmap_mode="r", allow_pickle=False)
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
