"""What each process of a multi-process (multi-host) run loads, fetches and writes.

Every process runs the same program. A global batch sharded over the mesh's 'data' axis is
built from each process's own rows (`process_rows`); arrays the host needs (mining inputs
and results) are made whole on every process (`replicate`, `to_host`), so every process
mines the same thing; files of the run folder are written by process 0 only (`is_primary`).
With one process all of this reduces to the plain single-process path.
"""
from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P


def is_primary() -> bool:
    """True on the process that writes the run folder's logs, metrics and results."""
    return jax.process_index() == 0


def process_rows(sharding: NamedSharding, batch_size: int) -> slice:
    """The rows [start, stop) of a global batch of `batch_size` rows (sharded on its first
    axis by `sharding`) that this process's devices hold: what this process loads.

    For a 1-D 'data' mesh over `jax.devices()`, process i of P holds rows
    [i * batch_size / P, (i + 1) * batch_size / P); one process holds them all.
    """
    starts, stops = [], []
    for index in sharding.addressable_devices_indices_map((batch_size,)).values():
        rows = index[0]
        starts.append(rows.start or 0)
        stops.append(batch_size if rows.stop is None else rows.stop)
    if not starts:
        raise ValueError("this process has no device in the mesh")
    start, stop = min(starts), max(stops)
    covered = np.zeros(batch_size, bool)
    for a, b in zip(starts, stops):
        covered[a:b] = True
    if not covered[start:stop].all():
        raise ValueError(f"this process's rows of a batch of {batch_size} are not contiguous "
                         f"under {sharding}")
    return slice(start, stop)


def local_batch_paths(paths, batch_size: int, rows: slice) -> np.ndarray:
    """This process's share of every batch of `paths` cut into global batches of
    `batch_size` (the last one padded with its last path, as `BatchLoader` pads): the
    concatenated `rows` of each batch, (num_batches * (rows.stop - rows.start),)."""
    paths = np.asarray(paths)
    pad = -len(paths) % batch_size
    if pad:
        paths = np.concatenate([paths, np.repeat(paths[-1:], pad)])
    return paths.reshape(-1, batch_size)[:, rows].reshape(-1)


def replicate(x: jax.Array, mesh) -> jax.Array:
    """`x` with a full copy on every device of `mesh` when some of it lives on other
    processes' devices; otherwise `x` unchanged."""
    if x.is_fully_addressable:
        return x
    return _replicator(mesh)(x)


@functools.lru_cache(maxsize=None)
def _replicator(mesh):
    """One jitted identity per mesh (a new lambda each call would retrace every round)."""
    return jax.jit(lambda a: a, out_shardings=NamedSharding(mesh, P()))


def to_host(x) -> np.ndarray:
    """The whole of `x` as NumPy, also when its shards live on several processes."""
    if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated):
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def from_process_zero(tree):
    """Process 0's values of a pytree of host arrays on every process (e.g. initial weights,
    whose k-means init could differ in the last bits between hosts); unchanged with one
    process."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils
    host = jax.tree.map(np.asarray, tree)
    return jax.tree.map(np.asarray, multihost_utils.broadcast_one_to_all(host))
