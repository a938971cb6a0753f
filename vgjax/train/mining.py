"""Choosing each training query's positive and negatives, as batched device computations.

Three strategies (config `train.mining`), all picking the positive the same way: among the
query's hard positives (<= 10 m), the one nearest in feature space.
- partial: negatives = the N nearest (feature space) among a random sample of the database,
  excluding the query's soft positives (<= 25 m).
- full: descriptors of the whole database; candidates = `num_candidates` random
  non-soft-positives plus the query's N hardest negatives of the previous round; keep the N
  nearest (and remember them for the next round).
- random: negatives drawn uniformly among the non-soft-positives.

The device functions work on a *cache*: descriptors of M database images (rows), with
`cache_db_ids` (M,) naming each row's database index. Padded index arrays use -1 for
"nothing". Every function returns database indices, so callers never see cache rows.
Host-side `plan_round` chooses which images a round needs descriptors of.

Full and random mining work on the whole database, so they never build (queries x
database) arrays when it is large: above `chunk_bytes` (default 256 MB) they walk the
database in chunks of rows inside one jitted loop, with running top-k merges (distances,
masks and random scores exist for one chunk at a time). The random scores of a (query, row)
pair do not depend on the chunking (`uniform_block`), so every chunk size gives the same
result; a database that fits in one chunk runs the unchunked code unchanged.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from vgjax.data.positives import to_padded
from vgjax.registry import Registry
from vgjax.train.multihost import to_host

MINERS = Registry("train.mining")
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


@functools.partial(jax.jit, static_argnames=("num_negatives",))
def mine_partial(query_desc, cache_desc, cache_db_ids, positive_rows, soft_rows, sampled_rows,
                 num_negatives: int):
    """Partial mining.

    query_desc (Q, D), cache_desc (M, D), cache_db_ids (M,), positive_rows (Q, P) and
    soft_rows (Q, S) cache rows of hard / soft positives (-1 pad), sampled_rows (S',) cache
    rows of the sampled database images (the only negative candidates).
    Returns positives (Q,) and negatives (Q, N) database indices, candidate counts (Q,).
    """
    m = cache_desc.shape[0]
    dists = pairwise_sq_dists(query_desc, cache_desc)
    pos = best_positives(dists, positive_rows)
    sampled = jnp.zeros((m,), bool).at[sampled_rows].set(True)
    candidate = sampled[None, :] & ~rows_to_mask(soft_rows, m)
    neg, counts = nearest_candidates(dists, candidate, num_negatives)
    return cache_db_ids[pos], cache_db_ids[neg], counts


@functools.partial(jax.jit,
                   static_argnames=("num_candidates", "num_negatives", "chunk_bytes"))
def mine_full(key, query_desc, database_desc, positive_ids, soft_ids, previous_negatives,
              num_candidates: int, num_negatives: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES):
    """Full mining over the whole database (cache row = database index).

    previous_negatives (Q, N): last round's hardest negatives of each query (-1 = none).
    Returns positives (Q,), negatives (Q, N) database indices, candidate counts (Q,).
    Databases larger than one chunk (`chunk_rows(Q, M, chunk_bytes)`) are walked in chunks:
    the same candidates and choices, in memory bounded by `chunk_bytes`.
    """
    m = database_desc.shape[0]
    rows = chunk_rows(query_desc.shape[0], m, chunk_bytes)
    if rows < m:
        return _full_chunked(key, query_desc, database_desc, positive_ids, soft_ids,
                             previous_negatives, num_candidates, num_negatives, rows)
    dists = pairwise_sq_dists(query_desc, database_desc)
    pos = best_positives(dists, positive_ids)
    soft = rows_to_mask(soft_ids, m)
    drawn = random_rows(key, ~soft, min(num_candidates, m))
    candidate = (rows_to_mask(drawn, m) | rows_to_mask(previous_negatives, m)) & ~soft
    neg, counts = nearest_candidates(dists, candidate, num_negatives)
    return pos, neg, counts


@functools.partial(jax.jit, static_argnames=("database_size", "num_negatives", "chunk_bytes"))
def mine_random(key, query_desc, cache_desc, cache_db_ids, positive_rows, soft_ids,
                database_size: int, num_negatives: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES):
    """Random mining: the cache holds only the hard positives; negatives are random database
    indices that are not soft positives (soft_ids (Q, S) database indices, -1 pad).
    Databases larger than one chunk draw chunk by chunk (the same draw, bounded memory).
    """
    dists = pairwise_sq_dists(query_desc, cache_desc)
    pos = best_positives(dists, positive_rows)
    q = query_desc.shape[0]
    rows = chunk_rows(q, database_size, chunk_bytes)
    if rows < database_size:
        neg = _draw_chunked(key, q, database_size, soft_ids, num_negatives, rows)
        counts = database_size - _distinct_count(soft_ids, database_size)
        return cache_db_ids[pos], neg, counts
    allowed = ~rows_to_mask(soft_ids, database_size)
    neg = random_rows(key, allowed, num_negatives)
    counts = jnp.sum(allowed, axis=1, dtype=jnp.int32)
    return cache_db_ids[pos], neg, counts


@dataclasses.dataclass(frozen=True)
class MiningTables:
    """Per training query, padded positive lists in database indices (built once per split)."""
    hard: np.ndarray   # (Q_train, P) int32, -1 pad
    soft: np.ndarray   # (Q_train, S) int32, -1 pad
    database_size: int

    @classmethod
    def from_split(cls, split) -> "MiningTables":
        if split.hard_positives is None:
            raise ValueError(f"{split.dataset}/{split.split}: no hard positives (not a train split)")
        return cls(hard=to_padded(split.hard_positives).astype(np.int32),
                   soft=to_padded(split.soft_positives).astype(np.int32),
                   database_size=len(split.database))


@dataclasses.dataclass(frozen=True)
class RoundPlan:
    """What one mining round needs: which database images get descriptors and the index
    arrays (in cache rows) handed to the device functions. Cache padding rows repeat the
    last database image and are never positives or candidates."""
    query_ids: np.ndarray      # (Q,) training query indices
    cache_db_ids: np.ndarray   # (M,) database index of each cache row (padded)
    num_cache: int             # real rows of the cache (<= M)
    positive_rows: np.ndarray  # (Q, P)
    soft_rows: np.ndarray      # (Q, S) (partial: cache rows; full/random: database indices)
    sampled_rows: np.ndarray   # (S',) partial only


def _to_rows(ids: np.ndarray, row_of: np.ndarray) -> np.ndarray:
    return np.where(ids >= 0, row_of[np.maximum(ids, 0)], -1).astype(np.int32)


class Miner:
    """One mining strategy: which database images a round needs descriptors of (host) and
    the device function that picks positives and negatives from them."""
    whole_database = False   # the cache is the whole database (cache row = database index)
    samples_candidates = True  # draws train.neg_samples_num negative candidates
    remembers_negatives = False  # keeps each query's hardest negatives between rounds

    def cache_ids(self, hard, rng, n_db: int, neg_samples_num: int):
        """(database ids needing descriptors, sampled negative candidates) of a round."""
        raise NotImplementedError

    def soft_in_cache_rows(self) -> bool:
        """True if the device function takes soft positives as cache rows (else database ids)."""
        return False

    def device(self, key, plan: "RoundPlan", query_desc, cache_desc, num_negatives: int,
               num_candidates: int, database_size: int, previous_negatives,
               chunk_bytes: int = DEFAULT_CHUNK_BYTES):
        """`chunk_bytes`: memory bound of the whole-database miners (see `chunk_rows`)."""
        raise NotImplementedError


@MINERS.register("partial")
class PartialMiner(Miner):
    def cache_ids(self, hard, rng, n_db, neg_samples_num):
        sampled = rng.choice(n_db, size=min(neg_samples_num, n_db), replace=False)
        return np.unique(np.concatenate([hard[hard >= 0], sampled])), sampled

    def soft_in_cache_rows(self):
        return True

    def device(self, key, plan, query_desc, cache_desc, num_negatives, num_candidates,
               database_size, previous_negatives, chunk_bytes=DEFAULT_CHUNK_BYTES):
        return mine_partial(query_desc, cache_desc, plan.cache_db_ids, plan.positive_rows,
                            plan.soft_rows, plan.sampled_rows, num_negatives=num_negatives)


@MINERS.register("full")
class FullMiner(Miner):
    whole_database = True
    remembers_negatives = True

    def cache_ids(self, hard, rng, n_db, neg_samples_num):
        return np.arange(n_db), np.zeros(0, np.int64)

    def device(self, key, plan, query_desc, cache_desc, num_negatives, num_candidates,
               database_size, previous_negatives, chunk_bytes=DEFAULT_CHUNK_BYTES):
        if previous_negatives is None:
            previous_negatives = np.full((len(plan.query_ids), num_negatives), -1, np.int32)
        return mine_full(key, query_desc, cache_desc, plan.positive_rows, plan.soft_rows,
                         previous_negatives, num_candidates=num_candidates,
                         num_negatives=num_negatives, chunk_bytes=int(chunk_bytes))


@MINERS.register("random")
class RandomMiner(Miner):
    samples_candidates = False

    def cache_ids(self, hard, rng, n_db, neg_samples_num):
        return np.unique(hard[hard >= 0]), np.zeros(0, np.int64)

    def device(self, key, plan, query_desc, cache_desc, num_negatives, num_candidates,
               database_size, previous_negatives, chunk_bytes=DEFAULT_CHUNK_BYTES):
        return mine_random(key, query_desc, cache_desc, plan.cache_db_ids, plan.positive_rows,
                           plan.soft_rows, database_size=database_size,
                           num_negatives=num_negatives, chunk_bytes=int(chunk_bytes))


def get_miner(method: str) -> Miner:
    return MINERS.build(method)


def plan_round(method: str, tables: MiningTables, query_ids: np.ndarray,
               rng: np.random.Generator, neg_samples_num: int, pad_to: int = 512) -> RoundPlan:
    """Chooses the cache of one round (vectorised NumPy; no per-query loop).

    partial: sampled database images + the queries' hard positives; full: the whole
    database; random: the hard positives only. The cache length is rounded up to a multiple
    of `pad_to` so the jitted functions see few distinct shapes.
    """
    miner = get_miner(method)
    n_db = tables.database_size
    hard = tables.hard[query_ids]
    soft = tables.soft[query_ids]
    cache, sampled = miner.cache_ids(hard, rng, n_db, neg_samples_num)
    row_of = np.full(n_db, -1, np.int64)
    row_of[cache] = np.arange(len(cache))
    num_cache = len(cache)
    padded = num_cache if miner.whole_database else -(-num_cache // pad_to) * pad_to
    cache = np.concatenate([cache, np.full(padded - num_cache, cache[-1])]).astype(np.int32)
    if miner.whole_database:
        positive_rows, soft_rows = hard, soft
    else:
        positive_rows = _to_rows(hard, row_of)
        soft_rows = _to_rows(soft, row_of) if miner.soft_in_cache_rows() else soft
    return RoundPlan(query_ids=np.asarray(query_ids), cache_db_ids=cache, num_cache=num_cache,
                     positive_rows=positive_rows, soft_rows=soft_rows,
                     sampled_rows=_to_rows(sampled, row_of))


def mine(method: str, key, plan: RoundPlan, query_desc, cache_desc, num_negatives: int,
         num_candidates: int, database_size: int, previous_negatives=None,
         chunk_bytes: int = DEFAULT_CHUNK_BYTES):
    """Runs the device function of `method` on a planned round.

    Returns NumPy (positives (Q,), negatives (Q, N)) database indices. Raises ValueError
    naming the option when a query has fewer than N negative candidates. `chunk_bytes`
    bounds the memory of full and random mining over a large database (`chunk_rows`).
    """
    out = get_miner(method).device(key, plan, query_desc, cache_desc, num_negatives,
                                   num_candidates, database_size, previous_negatives,
                                   chunk_bytes=chunk_bytes)
    pos, neg, counts = (to_host(x) for x in out)
    short = counts < num_negatives
    if short.any():
        raise ValueError(
            f"train.mining={method}: {int(short.sum())} queries have fewer than "
            f"train.negatives_per_query={num_negatives} negative candidates (fewest: "
            f"{int(counts.min())}); raise train.neg_samples_num or lower negatives_per_query")
    return np.asarray(pos), np.asarray(neg)
