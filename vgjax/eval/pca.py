"""PCA of descriptors (centred, no whitening), exact, and the sampling it is fitted on."""
from __future__ import annotations

import numpy as np

from vgjax.eval.store import DEFAULT_CHUNK_BYTES, DescriptorStore, store_factory


class PCA:
    """Projection on the top principal components (centred, no whitening)."""

    def __init__(self, mean: np.ndarray, components: np.ndarray):
        self.mean = mean.astype(np.float32)              # (D,)
        self.components = components.astype(np.float32)  # (D, dim)

    @property
    def dim(self) -> int:
        return self.components.shape[1]

    @classmethod
    def fit(cls, samples: np.ndarray, dim: int) -> PCA:
        """Exact PCA of `samples` (n, D) through the smaller of the Gram / covariance matrices."""
        x = np.asarray(samples, np.float64)
        n, d = x.shape
        if not 1 <= dim <= min(n - 1, d):
            raise ValueError(f"test.pca_dim={dim} must be between 1 and min(samples - 1, "
                             f"descriptor size) = {min(n - 1, d)} ({n} samples of size {d})")
        mean = x.mean(0)
        x -= mean
        if n < d:
            w, u = np.linalg.eigh(x @ x.T)                     # ascending
            w, u = w[::-1][:dim], u[:, ::-1][:, :dim]
            comps = (x.T @ u) / np.sqrt(np.maximum(w, 1e-30))
        else:
            w, v = np.linalg.eigh(x.T @ x)
            comps = v[:, ::-1][:, :dim]
        return cls(mean, comps)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float32) - self.mean) @ self.components).astype(np.float32)

    def transform_store(self, store: DescriptorStore, make_store=None,
                        chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> DescriptorStore:
        """Projects every row of `store` into a new store from `make_store(n, dim)`."""
        out = (make_store or store_factory())(len(store), self.dim)
        for start, block in store.chunks(store.rows_per_chunk(chunk_bytes)):
            out.write(start, self.transform(block))
        return out


def sample_rows(store: DescriptorStore, max_rows: int, seed: int = 0) -> np.ndarray:
    """Up to `max_rows` random rows (sorted, reproducible) as float32."""
    n = len(store)
    if n <= max_rows:
        return store.read()
    rows = np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))
    return np.concatenate([store.read(int(r), int(r) + 1) for r in rows])
