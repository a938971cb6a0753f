"""Choosing each training query's positive and negatives, as batched device computations.

Four strategies (config `train.mining`), all picking the positive the same way: among the
query's hard positives (<= 10 m), the one nearest in feature space.
- partial: negatives = the N nearest (feature space) among a random sample of the database,
  excluding the query's soft positives (<= 25 m).
- full: descriptors of the whole database; candidates = `num_candidates` random
  non-soft-positives plus the query's N hardest negatives of the previous round; keep the N
  nearest (and remember them for the next round).
- random: negatives drawn uniformly among the non-soft-positives.
- msls_weighted: partial mining whose rounds draw night and sideways queries more often
  (the MSLS paper's supplementary, as the reference samples them; `query_weights`).

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
from vgjax.train.mining_ops import (DEFAULT_CHUNK_BYTES, PAIR_BYTES, _distinct_count,
                                    _draw_chunked, _full_chunked, best_positives, chunk_rows,
                                    nearest_candidates, pairwise_sq_dists, random_rows,
                                    rows_to_mask, uniform_block)
from vgjax.train.multihost import to_host

MINERS = Registry("train.mining")

# the building blocks, under the names tests and benchmarks use
__all__ = ["MINERS", "DEFAULT_CHUNK_BYTES", "PAIR_BYTES", "MiningTables", "RoundPlan",
           "Miner", "chunk_rows", "get_miner", "mine", "mine_full", "mine_partial",
           "mine_random", "pairwise_sq_dists", "plan_round", "random_rows", "rows_to_mask",
           "uniform_block"]


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

    def query_weights(self, query_paths) -> np.ndarray | None:
        """Each training query's probability of being drawn for a round; None: uniform
        (the epoch's queries are then a plain random subset, `epoch_queries`)."""
        return None

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


@MINERS.register("msls_weighted")
class MslsWeightedMiner(PartialMiner):
    def query_weights(self, query_paths):
        return msls_query_weights(query_paths)


def msls_query_weights(query_paths) -> np.ndarray:
    """The reference's msls_weighted probabilities: every query weighs 1, night queries
    (file-name note `night_<view>`) Q / #night more and sideways ones (`<time>_sideways`)
    Q / #sideways more, normalised. Mapillary SLS names its queries so; a split whose notes
    lack that information is refused (ValueError naming a file)."""
    from vgjax.data.format import parse_fields
    notes = [parse_fields(p)["note"].split("_") for p in query_paths]
    bad = [p for p, n in zip(query_paths, notes) if len(n) < 2]
    if bad:
        raise ValueError(
            f"train.mining=msls_weighted: {len(bad)} of the {len(notes)} training queries have "
            "no '<day|night>_<view>' note in their file name (Mapillary SLS's, e.g. "
            f"'...@night_sideways@.jpg'), e.g. {bad[0]}; use train.mining=partial")
    night = np.array([n[0] == "night" for n in notes])
    sideways = np.array([n[1] == "sideways" for n in notes])
    if not night.any() or not sideways.any():
        raise ValueError(
            f"train.mining=msls_weighted: the training queries hold {int(night.sum())} night "
            f"and {int(sideways.sum())} sideways images; it needs both (Mapillary SLS); use "
            "train.mining=partial")
    q = len(notes)
    weights = np.ones(q) + night * (q / night.sum()) + sideways * (q / sideways.sum())
    return weights / weights.sum()


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
