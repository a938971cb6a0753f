"""The device building blocks of mining: distances, masks, nearest candidates, random
draws, and their chunked forms over a large database (running top-k merges; random scores
of a (query, row) pair independent of the chunking, so every chunk size gives one result).
Shapes are in each docstring; every function is pure and jit-friendly."""
from __future__ import annotations


import jax
import jax.numpy as jnp

DEFAULT_CHUNK_BYTES = 256 << 20
# bytes a chunk holds per (query, database row) pair at once: float32 distances or random
# scores, their masked float32 copy, the candidate / soft-positive masks
PAIR_BYTES = 16


def pairwise_sq_dists(a, b):
    """Squared L2 distances (Qa, Qb) between rows of a (Qa, D) and b (Qb, D), in float32."""
    a = a.astype(jnp.float32)
    b = b.astype(jnp.float32)
    ab = jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST)
    d = jnp.sum(a * a, axis=1)[:, None] + jnp.sum(b * b, axis=1)[None, :] - 2.0 * ab
    return jnp.maximum(d, 0.0)


def rows_to_mask(rows, num_rows: int):
    """(Q, K) row indices (-1 = none) -> (Q, num_rows) bool with True at those rows."""
    q = rows.shape[0]
    target = jnp.where(rows >= 0, rows, num_rows)  # out of range: dropped
    return jnp.zeros((q, num_rows), bool).at[jnp.arange(q)[:, None], target].set(
        True, mode="drop")


def best_positives(dists, positive_rows):
    """(Q,) row of each query's nearest hard positive; dists (Q, M), positive_rows (Q, P)."""
    d = jnp.take_along_axis(dists, jnp.maximum(positive_rows, 0), axis=1)
    d = jnp.where(positive_rows >= 0, d, jnp.inf)
    choice = jnp.argmin(d, axis=1)
    return jnp.take_along_axis(positive_rows, choice[:, None], axis=1)[:, 0]


def nearest_candidates(dists, candidate, k: int):
    """The k nearest candidate rows per query (nearest first) and how many candidates each has.

    dists (Q, M), candidate (Q, M) bool -> rows (Q, k) int32, counts (Q,) int32. Where a
    query has fewer than k candidates the trailing rows are not candidates; callers check
    `counts`.
    """
    scores = jnp.where(candidate, -dists, -jnp.inf)
    _, rows = jax.lax.top_k(scores, k)
    return rows.astype(jnp.int32), jnp.sum(candidate, axis=1, dtype=jnp.int32)


def random_rows(key, allowed, k: int):
    """k distinct rows per query drawn uniformly among `allowed` (Q, M); -1 where too few."""
    u = jax.random.uniform(key, allowed.shape)
    u = jnp.where(allowed, u, 2.0)
    neg_u, rows = jax.lax.top_k(-u, k)
    return jnp.where(neg_u > -2.0, rows, -1).astype(jnp.int32)


# Chunked full / random mining -----------------------------------------------------------------

def chunk_rows(num_queries: int, num_rows: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Database rows per chunk: (queries x rows) pairs of `PAIR_BYTES` within `chunk_bytes`
    (at least one row, at most `num_rows`: one chunk when everything fits)."""
    rows = max(1, int(chunk_bytes) // (PAIR_BYTES * max(1, int(num_queries))))
    return min(rows, int(num_rows))


def _key_words(key):
    """The two uint32 words of a threefry key (typed or legacy uint32[2]); keys of other
    implementations are turned into two words drawn from them."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if str(jax.random.key_impl(key)) != "threefry2x32":
            words = jax.random.bits(key, (2,), jnp.uint32)
            return words[0], words[1]
        key = jax.random.key_data(key)
    key = key.reshape(-1).astype(jnp.uint32)
    return key[0], key[1]


def _flat_index_words(rows, cols, num_cols: int):
    """(hi, lo) uint32 words of the 64-bit flat index rows[:, None] * num_cols + cols[None]
    (uint32 arithmetic in 16-bit limbs, so it needs no jax_enable_x64)."""
    u32 = jnp.uint32
    r = rows.astype(u32)[:, None]
    c = cols.astype(u32)[None, :]
    b1, b0 = u32(num_cols >> 16), u32(num_cols & 0xFFFF)
    r1, r0 = r >> 16, r & u32(0xFFFF)
    p00, p01, p10, p11 = r0 * b0, r0 * b1, r1 * b0, r1 * b1
    mid = (p00 >> 16) + (p01 & u32(0xFFFF)) + (p10 & u32(0xFFFF))
    lo = (p00 & u32(0xFFFF)) | (mid << 16)
    hi = p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16)
    lo_c = lo + c
    return hi + (lo_c < lo).astype(u32), lo_c


def uniform_block(key, rows, cols, num_cols: int):
    """Block [rows][:, cols] of `jax.random.uniform(key, (Q, num_cols))`, without the rest.

    Bit for bit what jax.random.uniform draws with threefry keys and the default
    jax_threefry_partitionable=True (element (i, j) hashes the flat index i * num_cols + j);
    whatever the flags, the value of (i, j) depends only on (key, i, j, num_cols), so any
    chunking of the columns draws the same numbers."""
    from jax.extend.random import threefry2x32_p
    if not 0 < num_cols < 2 ** 32:
        raise ValueError(f"uniform_block: num_cols={num_cols} must be in [1, 2**32)")
    k1, k2 = _key_words(key)
    hi, lo = _flat_index_words(rows, cols, num_cols)
    b1, b2 = threefry2x32_p.bind(k1, k2, hi, lo)
    bits = (b1 ^ b2) >> 9 | jnp.uint32(0x3F800000)  # 23 random mantissa bits, exponent of 1
    return jnp.maximum(0.0, jax.lax.bitcast_convert_type(bits, jnp.float32) - 1.0)


def _chunk(j, rows: int, total: int):
    """Chunk j of `rows` rows over `total`: (its first row, the first row read, the rows
    read (rows,), which of them are its own). The last chunk is read ending at `total`
    (no padding copy); rows it shares with the previous chunk are not its own."""
    start = j * rows
    first = jnp.minimum(start, total - rows)
    cols = first + jnp.arange(rows, dtype=jnp.int32)
    return start, first, cols, cols >= start


def _chunk_mask(ids, start, first, rows: int):
    """(Q, K) database ids (-1 = none) -> (Q, rows) bool: True at the ids that chunk
    `start` owns, at their place among the rows read from `first`."""
    own = (ids >= start) & (ids < first + rows)
    return rows_to_mask(jnp.where(own, ids - first, -1), rows)


def _merge_top(best_scores, best_rows, scores, rows, k: int):
    """The k highest of a running (Q, k) list and a chunk (Q, C), the running list first:
    `lax.top_k` keeps the lower position on ties, so merging chunks in row order gives
    what one top_k over all rows gives."""
    s = jnp.concatenate([best_scores, scores], axis=1)
    r = jnp.concatenate([best_rows, jnp.broadcast_to(rows, scores.shape)], axis=1)
    top, where = jax.lax.top_k(s, k)
    return top, jnp.take_along_axis(r, where, axis=1)


def _draw_chunked(key, num_queries: int, total: int, excluded_ids, k: int, rows: int):
    """`random_rows(key, ~rows_to_mask(excluded_ids, total), k)` chunk by chunk: the k rows
    of lowest `uniform_block` score among the non-excluded ones; -1 where too few."""
    q_idx = jnp.arange(num_queries, dtype=jnp.int32)

    def body(j, carry):
        start, first, cols, own = _chunk(j, rows, total)
        u = uniform_block(key, q_idx, cols, total)
        excluded = _chunk_mask(excluded_ids, start, first, rows)
        score = jnp.where(own[None, :], jnp.where(excluded, -2.0, -u), -jnp.inf)
        return _merge_top(*carry, score, cols, k)

    init = (jnp.full((num_queries, k), -jnp.inf, jnp.float32),
            jnp.full((num_queries, k), -1, jnp.int32))
    best, drawn = jax.lax.fori_loop(0, -(-total // rows), body, init)
    return jnp.where(best > -2.0, drawn, -1).astype(jnp.int32)


def _distinct_count(ids, total: int):
    """(Q, K) ids -> (Q,) int32 number of distinct ids in [0, total) per row."""
    s = jnp.sort(ids, axis=1)
    first = jnp.concatenate([jnp.ones_like(s[:, :1], bool), s[:, 1:] != s[:, :-1]], axis=1)
    return jnp.sum(first & (s >= 0) & (s < total), axis=1, dtype=jnp.int32)


def _full_chunked(key, query_desc, database_desc, positive_ids, soft_ids, previous_negatives,
                  num_candidates: int, num_negatives: int, rows: int):
    q, m = query_desc.shape[0], database_desc.shape[0]
    drawn = _draw_chunked(key, q, m, soft_ids, min(num_candidates, m), rows)
    candidates = jnp.concatenate([drawn, previous_negatives.astype(jnp.int32)], axis=1)

    def body(j, carry):
        best_scores, best_rows, counts, pos_d = carry
        start, first, cols, own = _chunk(j, rows, m)
        block = jax.lax.dynamic_slice_in_dim(database_desc, first, rows, axis=0)
        d = pairwise_sq_dists(query_desc, block)
        here = (positive_ids >= start) & (positive_ids < first + rows)
        local = jnp.clip(positive_ids - first, 0, rows - 1)
        pos_d = jnp.where(here, jnp.take_along_axis(d, local, axis=1), pos_d)
        cand = (_chunk_mask(candidates, start, first, rows)
                & ~_chunk_mask(soft_ids, start, first, rows) & own[None, :])
        counts = counts + jnp.sum(cand, axis=1, dtype=jnp.int32)
        scores = jnp.where(cand, -d, -jnp.inf)
        best_scores, best_rows = _merge_top(best_scores, best_rows, scores, cols, num_negatives)
        return best_scores, best_rows, counts, pos_d

    init = (jnp.full((q, num_negatives), -jnp.inf, jnp.float32),
            jnp.full((q, num_negatives), -1, jnp.int32), jnp.zeros((q,), jnp.int32),
            jnp.full(positive_ids.shape, jnp.inf, jnp.float32))
    _, neg, counts, pos_d = jax.lax.fori_loop(0, -(-m // rows), body, init)
    pos_d = jnp.where(positive_ids >= 0, pos_d, jnp.inf)
    choice = jnp.argmin(pos_d, axis=1)
    pos = jnp.take_along_axis(positive_ids, choice[:, None], axis=1)[:, 0]
    return pos, neg, counts
