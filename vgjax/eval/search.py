"""k-nearest-neighbour search of query descriptors in database descriptors, recalls, PCA.

Exact search (`test.index=flat`, the default) has four backends, chosen once per search by
`choose_backend` and logged with the reason:

- `jax`: when JAX's default device is an accelerator and the database (plus the working
  memory of one query chunk) fits in its free memory with headroom, the database is put on
  the device once and queries are searched in chunks (matmul in float32 at HIGHEST
  precision, then `lax.top_k`), one compilation per chunk shape.
- `faiss-gpu`: faiss's GPU build, when installed, for databases that do not fit.
- `jax-blocks`: on an accelerator without faiss-gpu (or without faiss at all), database
  blocks streamed through the device, a running top-k merged per query on the host.
- `faiss-cpu`: faiss's exhaustive L2 (the computation behind IndexFlatL2) on the CPU.

The last three run block by block: database chunks read from the store, queries in chunks,
a running top-k merged per query, so memory stays at one database chunk plus one query chunk
whatever the database size; with a single chunk this is exactly a flat index search.
`ivfpq` builds a compressed faiss IndexIVFPQ (approximate) for very large databases.

Distances are squared L2 in descriptor space, as faiss returns them.
"""
from __future__ import annotations

import functools
import logging

import numpy as np

from vgjax.eval.pca import PCA, sample_rows
from vgjax.eval.recalls import (compute_recalls, correct_matrix, geo_distances,
                                recalls_from_correct, recalls_from_predictions)
from vgjax.eval.store import DEFAULT_CHUNK_BYTES, DescriptorStore
from vgjax.progress import bar as progress_bar
from vgjax.registry import Registry

__all__ = ["PCA", "compute_recalls", "correct_matrix", "exact_search", "geo_distances",
           "ivfpq_search", "recalls_from_correct", "recalls_from_predictions", "sample_rows",
           "search", "search_backend"]

log = logging.getLogger(__name__)

INDEXES = Registry("test.index", fixed=("database", "queries", "k", "test_cfg", "chunk_bytes"))
BACKENDS = ("jax", "jax-blocks", "faiss-gpu", "faiss-cpu")
# The device search uses at most this share of the device's free memory ...
DEVICE_MEMORY_FRACTION = 0.5
# ... and, where the device does not report its memory, at most this many bytes.
UNKNOWN_DEVICE_MEMORY_BYTES = 1 << 30
_ROW_PAD = 256  # database rows on the device are padded to a multiple of this


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _faiss_gpus(faiss) -> int:
    if faiss is None or not hasattr(faiss, "get_num_gpus"):
        return 0
    return int(faiss.get_num_gpus())


def _gpu_resources(faiss):
    if not hasattr(_gpu_resources, "res"):
        _gpu_resources.res = faiss.StandardGpuResources()
    return _gpu_resources.res


def _knn_block(queries: np.ndarray, database, k: int, backend: str,
               pad_q: int = 0, pad_db: int = 0, n_valid: int | None = None):
    """Exact squared-L2 top-k of `queries` (q, D) in `database` (n, D), k <= n."""
    if backend == "faiss-gpu":
        faiss = _faiss()
        return faiss.knn_gpu(_gpu_resources(faiss), queries, database, k)
    if backend == "faiss-cpu":
        return _faiss().knn(queries, database, k)
    return _knn_jax(queries, database, k, pad_q, pad_db, n_valid)


@functools.cache
def _jax_knn_fn():
    import jax
    import jax.numpy as jnp

    def block(q, x, n_valid, k):
        d = (jnp.sum(q * q, 1)[:, None] - 2.0 * jnp.matmul(q, x.T, precision="highest")
             + jnp.sum(x * x, 1)[None, :])
        d = jnp.where(jnp.arange(x.shape[0])[None, :] < n_valid, d, jnp.inf)
        neg, idx = jax.lax.top_k(-d, k)
        return jnp.maximum(-neg, 0.0), idx
    return jax.jit(block, static_argnames="k")


def _knn_jax(queries, database, k, pad_q: int = 0, pad_db: int = 0,
             n_valid: int | None = None):
    """Exact top-k on the default JAX device; inputs are padded to (pad_q, pad_db) rows so
    that every block of a search has one shape (one compilation). `database` may be a
    device array already padded, whose first `n_valid` rows are real."""
    nq = len(queries)
    q = np.pad(queries, ((0, max(0, pad_q - nq)), (0, 0)))
    if isinstance(database, np.ndarray):
        n_valid = len(database)
        database = np.pad(database, ((0, max(0, pad_db - n_valid)), (0, 0)))
    dist, idx = _jax_knn_fn()(q, database, n_valid, k=k)
    return np.asarray(dist)[:nq], np.asarray(idx)[:nq].astype(np.int64)


# Backend choice ------------------------------------------------------------------------------

def _local_device():
    import jax
    return jax.local_devices()[0]


def device_free_bytes(device=None) -> tuple[int | None, int | None]:
    """(free bytes, largest free block) the device's allocator reports; None where it
    reports nothing (the CPU)."""
    device = device or _local_device()
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 (backends without the call raise various errors)
        stats = None
    if not stats or "bytes_limit" not in stats:
        return None, None
    free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    block = stats.get("largest_free_block_bytes")
    return free, None if block is None else int(block)


def _padded_rows(n: int) -> int:
    return max(_ROW_PAD, -(-n // _ROW_PAD) * _ROW_PAD)


def query_chunk_rows(num_database: int, dim: int, num_queries: int,
                     chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Queries per chunk of the device search: the chunk's float32 queries and its
    (chunk x padded database) distances within `chunk_bytes` (at least 1 query)."""
    per_query = (_padded_rows(num_database) + dim) * 4
    return max(1, min(int(num_queries) or 1, int(chunk_bytes) // per_query))


def device_search_bytes(num_database: int, dim: int, num_queries: int,
                        chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Device memory of the `jax` backend: the padded float32 database and its norms, plus
    one query chunk's queries and distances (three copies: distances, negated, top_k)."""
    nb = _padded_rows(num_database)
    q = query_chunk_rows(num_database, dim, num_queries, chunk_bytes)
    return nb * (dim + 1) * 4 + q * dim * 4 + 3 * q * nb * 4


def choose_backend(num_database: int | None = None, dim: int | None = None,
                   num_queries: int = 0, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                   use_gpu: str | bool = "auto",
                   memory_fraction: float = DEVICE_MEMORY_FRACTION) -> tuple[str, str]:
    """(backend, why) of an exact search of `num_queries` in `num_database` x `dim`.

    `jax` if JAX's default device is an accelerator and `device_search_bytes` fits in
    `memory_fraction` of its free memory (without sizes: assumed to fit); else `faiss-gpu`
    if faiss sees a GPU; else `jax-blocks` on an accelerator or without faiss; else
    `faiss-cpu`. `use_gpu=False` keeps everything on the CPU.
    """
    import jax
    faiss = _faiss()
    accelerator = bool(use_gpu) and jax.default_backend() != "cpu"
    why_not = ""
    if accelerator:
        device = _local_device()
        kind = getattr(device, "device_kind", str(device))
        if num_database is None or dim is None:
            return "jax", f"default device {kind} (database size not given)"
        need = device_search_bytes(num_database, dim, num_queries, chunk_bytes)
        free, block = device_free_bytes(device)
        if free is None:
            budget, what = UNKNOWN_DEVICE_MEMORY_BYTES, "the device reports no memory"
        else:
            budget = int(memory_fraction * free)
            if block is not None:
                budget = min(budget, block)
            what = (f"{memory_fraction:.0%} of {free / 2**20:.0f} MB free"
                    + ("" if block is None else f", largest block {block / 2**20:.0f} MB"))
        if need <= budget:
            return "jax", (f"{kind}: database + one query chunk need {need / 2**20:.0f} MB "
                           f"<= {budget / 2**20:.0f} MB ({what})")
        why_not = (f"{kind}: database + one query chunk need {need / 2**20:.0f} MB > "
                   f"{budget / 2**20:.0f} MB ({what}); ")
    if _faiss_gpus(faiss) > 0 and use_gpu:
        return "faiss-gpu", why_not + f"faiss sees {_faiss_gpus(faiss)} GPU(s)"
    if accelerator:
        return "jax-blocks", why_not + "no faiss GPU build: database blocks through the device"
    if faiss is None:
        return "jax-blocks", "faiss is not installed: database blocks through JAX on the CPU"
    return "faiss-cpu", f"JAX's default device is {jax.default_backend()}"


def search_backend(use_gpu: str | bool = "auto", num_database: int | None = None,
                   dim: int | None = None, num_queries: int = 0,
                   chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> str:
    """The backend `choose_backend` picks (its name only)."""
    return choose_backend(num_database, dim, num_queries, chunk_bytes, use_gpu)[0]


def _merge_topk(d_a, i_a, d_b, i_b, k):
    """Merges two (q, *) candidate lists into the k smallest distances (stable on ties)."""
    d = np.concatenate([d_a, d_b], 1)
    i = np.concatenate([i_a, i_b], 1)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, 1), np.take_along_axis(i, order, 1)


# The device search ---------------------------------------------------------------------------

@functools.cache
def _device_fns():
    import jax
    import jax.numpy as jnp

    @functools.partial(jax.jit, donate_argnums=0)
    def put_rows(dst, block, start):
        return jax.lax.dynamic_update_slice_in_dim(dst, block, start, axis=0)

    @jax.jit
    def sq_norms(x):
        return jnp.sum(x * x, axis=1)

    @functools.partial(jax.jit, static_argnames="k")
    def knn(q, x, x_sq, n_valid, k):
        ip = jnp.matmul(q, x.T, precision=jax.lax.Precision.HIGHEST)
        d = jnp.sum(q * q, axis=1)[:, None] + x_sq[None, :] - 2.0 * ip
        d = jnp.where(jnp.arange(x.shape[0])[None, :] < n_valid, d, jnp.inf)
        neg, idx = jax.lax.top_k(-d, k)
        return jnp.maximum(-neg, 0.0), idx

    return put_rows, sq_norms, knn


def device_search(database: DescriptorStore, queries: DescriptorStore, k: int, *,
                  chunk_bytes: int = DEFAULT_CHUNK_BYTES):
    """Exact squared-L2 k-NN with the whole database on JAX's default device.

    The database is copied there in `chunk_bytes` blocks into one padded float32 array
    (rows padded to a multiple of 256, masked), then query chunks of
    `query_chunk_rows(...)` rows (the last one padded: one compilation per shape) are
    searched by a float32 matmul at HIGHEST precision and `lax.top_k`; results are fetched
    once all chunks are dispatched. Returns (distances (Q, k) float32, indices (Q, k)
    int64), -1 / +inf past the database size.
    """
    import jax
    import jax.numpy as jnp

    put_rows, sq_norms, knn = _device_fns()
    device = _local_device()
    nq, nb, dim = len(queries), len(database), database.dim
    rows = database.rows_per_chunk(chunk_bytes)
    x = jnp.zeros((_padded_rows(nb), dim), jnp.float32, device=device)
    for start in range(0, nb, rows):
        x = put_rows(x, jax.device_put(database.read(start, start + rows), device), start)
    x_sq = sq_norms(x)
    kk = min(k, nb)
    q_rows = query_chunk_rows(nb, dim, nq, chunk_bytes)
    pending = []
    for start in range(0, nq, q_rows):
        q = queries.read(start, start + q_rows)
        n = len(q)
        q = np.pad(q, ((0, q_rows - n), (0, 0)))
        pending.append((start, n, knn(jax.device_put(q, device), x, x_sq, nb, k=kk)))
    out_d = np.full((nq, k), np.inf, np.float32)
    out_i = np.full((nq, k), -1, np.int64)
    for start, n, (d, i) in pending:
        out_d[start:start + n, :kk] = np.asarray(d)[:n]
        out_i[start:start + n, :kk] = np.asarray(i)[:n]
    del x, x_sq
    return out_d, out_i


def exact_search(database: DescriptorStore, queries: DescriptorStore | np.ndarray, k: int, *,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES, backend: str | None = None):
    """Exact squared-L2 k-NN; returns (distances (Q, k) float32, indices (Q, k) int64).

    Entries beyond the database size are index -1 with distance +inf. `backend` (one of
    `BACKENDS`) forces a backend; by default `choose_backend` picks it from the sizes and
    the device's free memory, and the choice is logged.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    queries = _as_store(queries)
    if queries.dim != database.dim:
        raise ValueError(f"query descriptors have {queries.dim} dims, database {database.dim}")
    nq, nb = len(queries), len(database)
    if backend is None:
        backend, why = choose_backend(nb, database.dim, nq, chunk_bytes)
    elif backend not in BACKENDS:
        raise ValueError(f"unknown search backend {backend!r} (accepted: {', '.join(BACKENDS)})")
    else:
        why = "requested"
    log.info("exact search of %d queries in %d x %d database (%.0f MB as float32), top-%d: "
             "backend %s (%s)", nq, nb, database.dim, nb * database.dim * 4 / 2**20, k,
             backend, why)
    if backend == "jax":
        return device_search(database, queries, k, chunk_bytes=chunk_bytes)
    best_d = np.full((nq, k), np.inf, np.float32)
    best_i = np.full((nq, k), -1, np.int64)
    db_rows = database.rows_per_chunk(chunk_bytes)
    q_rows = queries.rows_per_chunk(chunk_bytes)
    blocks = -(-nb // db_rows) * -(-nq // q_rows)
    bar = progress_bar(total=blocks, desc=f"searching {nq} queries", unit="block",
                       enabled=blocks > 1)  # a database streamed in blocks
    for db_start in range(0, nb, db_rows):
        block = database.read(db_start, db_start + db_rows)
        kk = min(k, len(block))
        n_block = len(block)
        if backend == "jax-blocks":  # one transfer per block, whatever the query chunks
            import jax
            pad = min(db_rows, nb)
            block = jax.device_put(np.pad(block, ((0, pad - n_block), (0, 0))),
                                   _local_device())
        for q_start in range(0, nq, q_rows):
            q = queries.read(q_start, q_start + q_rows)
            d, i = _knn_block(q, block, kk, backend, min(q_rows, nq), min(db_rows, nb),
                              n_block)
            i = np.asarray(i, np.int64) + db_start
            sl = slice(q_start, q_start + len(q))
            best_d[sl], best_i[sl] = _merge_topk(best_d[sl], best_i[sl],
                                                 np.asarray(d, np.float32), i, k)
            bar.update()
        del block
    bar.close()
    return best_d, best_i


def ivfpq_search(database: DescriptorStore, queries, k: int, *, nlist: int, m: int,
                 nprobe: int = 16, train_rows: int | None = None, seed: int = 0,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES, use_gpu: bool = True):
    """Approximate k-NN with a faiss IndexIVFPQ (8-bit codes: m bytes per database vector)."""
    faiss = _faiss()
    if faiss is None:
        raise ImportError("test.index='ivfpq' needs faiss (pip install faiss-cpu or faiss-gpu)")
    queries = _as_store(queries)
    d, n = database.dim, len(database)
    if m < 1 or d % m:
        raise ValueError(f"test.ivfpq_m={m} must divide the descriptor size {d}")
    if not 1 <= nlist <= n:
        raise ValueError(f"test.ivfpq_nlist={nlist} must be between 1 and the database size {n}")
    # Training sample: 64 points per list, at most ~1 GiB of float32, at least what faiss
    # needs (nlist points for the lists, 256 for the 8-bit product-quantiser codebooks).
    train_rows = min(n, train_rows or min(64 * nlist, max((1 << 30) // (4 * d), nlist, 256)))
    train = sample_rows(database, train_rows, seed)
    quantizer = faiss.IndexFlatL2(d)
    index = faiss.IndexIVFPQ(quantizer, d, nlist, m, 8)
    if use_gpu and faiss.get_num_gpus() > 0:
        index = faiss.index_cpu_to_gpu(_gpu_resources(faiss), 0, index)
    index.train(train)
    del train
    for _, block in database.chunks(database.rows_per_chunk(chunk_bytes)):
        index.add(block)
    faiss.ParameterSpace().set_index_parameter(index, "nprobe", nprobe)
    kk = min(k, n)
    out_d = np.full((len(queries), k), np.inf, np.float32)
    out_i = np.full((len(queries), k), -1, np.int64)
    for start, q in queries.chunks(queries.rows_per_chunk(chunk_bytes)):
        dd, ii = index.search(q, kk)
        out_d[start:start + len(q), :kk] = dd
        out_i[start:start + len(q), :kk] = ii
    out_d[out_i < 0] = np.inf
    return out_d, out_i


@INDEXES.register("flat")
def _flat(database, queries, k, test_cfg, chunk_bytes):
    return exact_search(database, queries, k, chunk_bytes=chunk_bytes)


@INDEXES.register("ivfpq")
def _ivfpq(database, queries, k, test_cfg, chunk_bytes):
    log.info("approximate search of %d queries in %d x %d database, top-%d: faiss IndexIVFPQ "
             "(nlist %s, m %s, nprobe %s)", len(queries), len(database), database.dim, k,
             test_cfg.ivfpq_nlist, test_cfg.ivfpq_m, test_cfg.get("ivfpq_nprobe", 16))
    return ivfpq_search(database, queries, k, nlist=test_cfg.ivfpq_nlist,
                        m=test_cfg.ivfpq_m, nprobe=test_cfg.get("ivfpq_nprobe", 16),
                        chunk_bytes=chunk_bytes)


def search(database: DescriptorStore, queries, k: int, test_cfg, *,
           chunk_bytes: int = DEFAULT_CHUNK_BYTES):
    """k-NN with the index of `test_cfg.index` (flat: exact | ivfpq: compressed)."""
    return INDEXES.get(test_cfg.index)(database, queries, k, test_cfg, chunk_bytes)


def _as_store(x) -> DescriptorStore:
    if isinstance(x, DescriptorStore):
        return x
    x = np.asarray(x, np.float32)
    if x.ndim != 2:
        raise ValueError(f"descriptors must be 2-D (N, D), got shape {x.shape}")
    store = DescriptorStore(x.shape, np.float32)
    store.write(0, x)
    return store
