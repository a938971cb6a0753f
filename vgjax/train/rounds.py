"""One mining round: descriptors of the round's cache -> mining on the device -> train steps.

A round takes `cache_refresh_rate` training queries. `plan_round` picks the database images
the miner needs (partial: the queries' hard positives plus a sample; full: everything);
`device_descriptors` computes their descriptors and the queries', kept on the device; the
miner picks each query's positive and negatives; then the groups (query, positive, N
negatives) are loaded `queries_per_step` at a time and trained on.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from vgjax.data.cache import DecodedImages
from vgjax.data.dataset import Split
from vgjax.data.pipeline import BatchLoader
from vgjax.data.sources import ImageReader
from vgjax.progress import bar as progress_bar
from vgjax.train import mining, multihost
from vgjax.train.run_dir import MetricsWriter
from vgjax.train.state import Progress, TrainState, round_key, round_rng

log = logging.getLogger("vgjax.train")


@dataclasses.dataclass(frozen=True)
class RoundContext:
    """What every round of a run uses, derived once from the config."""
    train: Split                 # the training split (database, queries, positives)
    reader: ImageReader          # how its paths become pixels
    tables: mining.MiningTables  # padded positive lists per training query
    mining: str                  # train.mining
    describe: Callable           # jitted (variables, images) -> descriptors, eval mode
    train_step: Callable         # jitted (state, images) -> (state, metrics)
    mesh: Mesh
    metrics: MetricsWriter
    target: DecodedImages | None  # domain adaptation: unlabeled target images
    size: tuple[int, int]        # model input (H, W)
    seed: int
    queries_per_step: int
    negatives_per_query: int
    neg_samples_num: int
    infer_batch_size: int
    num_workers: int
    prefetch: int
    # data.cache_decoded=device: the training images on the device, rows = the database,
    # then the queries; the train step and the cache descriptors gather from it
    mining_chunk_bytes: int = 256 << 20  # full / random mining: memory bound per chunk
    pool: jax.Array | None = None
    describe_rows: Callable | None = None  # jitted (variables, pool, rows) -> descriptors
    # train.cache_resize=eval: path -> the image the cache descriptors see (the reference's
    # evaluation resize of the full-size file); None: the training images (pool or reader)
    cache_load: Callable[[str], np.ndarray] | None = None
    # train.augment_on=host: (path, step, index in the step's batch) -> the augmented query
    # at the model size; None: the queries load as the other training images do
    host_augment: Callable[[str, int, int], np.ndarray] | None = None

    @property
    def batch_sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, P("data"))

    def paths_of(self, rows: np.ndarray) -> np.ndarray:
        """Training image rows (database index, or database size + query index) -> paths."""
        paths = np.concatenate([self.train.database.paths, self.train.queries.paths])
        return paths[np.asarray(rows)]

    def loader(self, paths, batch_size: int, rows: slice, load_fn=None) -> BatchLoader:
        """Batches of this process's `rows` of every global batch of `paths` (read by
        `load_fn`, else as training reads them)."""
        local = multihost.local_batch_paths(paths, batch_size, rows)
        return BatchLoader(local, self.size, rows.stop - rows.start,
                           num_workers=self.num_workers, prefetch=self.prefetch,
                           load_fn=load_fn or self.reader.loader(self.size))


@dataclasses.dataclass
class RoundResult:
    state: TrainState
    bad_step: int | None         # step of the round whose loss was not finite, else None
    losses: list[float]


@functools.partial(jax.jit, static_argnames="rows")
def _stack_rows(batches, valid, rows: int):
    """Whole batches -> `rows` rows: the first `valid` real, the rest zeros. `valid` is
    traced, so this compiles once per (batch count, rows), instead of the eager slice,
    concatenation and pad of every round each compiling for that round's sizes."""
    out = jnp.concatenate(batches, axis=0)
    out = jnp.where(jnp.arange(out.shape[0])[:, None] < valid, out, 0)
    if out.shape[0] >= rows:
        return out[:rows]
    return jnp.pad(out, ((0, rows - out.shape[0]), (0, 0)))


def device_descriptors(ctx: RoundContext, variables, rows: np.ndarray,
                       num_rows: int | None = None, desc: str | None = None):
    """Descriptors (num_rows, D) of training images `rows` (database index, or database
    size + query index; default len(rows) rows, rows past the images are zeros), kept on
    the device: batches split over the mesh (each process loads only its rows of every
    batch; with a device pool, gathered there), the result whole on every device."""
    sharding, batch = ctx.batch_sharding, ctx.infer_batch_size
    outs = []
    local = multihost.process_rows(sharding, batch)
    if ctx.pool is not None and ctx.cache_load is None:
        padded = multihost.local_batch_paths(np.asarray(rows, np.int32), batch, local)
        width = local.stop - local.start
        for start in range(0, len(padded), width):
            ids = jax.make_array_from_process_local_data(sharding, padded[start:start + width],
                                                         (batch,))
            outs.append(ctx.describe_rows(variables, ctx.pool, ids))
    else:
        loader = ctx.loader(ctx.paths_of(rows), batch, local, ctx.cache_load)
        for images, _ in progress_bar(loader, desc=desc or "", total=len(loader),
                                      unit="batch",
                                      enabled=desc is not None and multihost.is_primary()):
            images = jax.make_array_from_process_local_data(sharding, images,
                                                            (batch, *images.shape[1:]))
            outs.append(ctx.describe(variables, images))
    out = _stack_rows(tuple(outs), len(rows), len(rows) if num_rows is None else num_rows)
    return multihost.replicate(out, ctx.mesh)


def mine_round(ctx: RoundContext, state: TrainState, progress: Progress, queries: np.ndarray,
               negative_cache: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(positives (Q,), negatives (Q, N)) database indices of one round, and timings."""
    epoch, rnd = progress.epoch, progress.round
    t0 = time.perf_counter()
    plan = mining.plan_round(ctx.mining, ctx.tables, queries, round_rng(ctx.seed, epoch, rnd),
                             ctx.neg_samples_num)
    variables = state.variables
    n_db = len(ctx.train.database)
    q_desc = device_descriptors(ctx, variables, n_db + np.asarray(queries),
                                desc="cache: queries")
    c_desc = device_descriptors(ctx, variables, plan.cache_db_ids[:plan.num_cache],
                                num_rows=len(plan.cache_db_ids), desc="cache: database")
    jax.block_until_ready((q_desc, c_desc))  # so that the log splits cache and mining time
    t1 = time.perf_counter()
    previous = negative_cache[queries] if negative_cache is not None else None
    positives, negatives = mining.mine(
        ctx.mining, round_key(ctx.seed, epoch, rnd), plan, q_desc, c_desc,
        ctx.negatives_per_query, ctx.neg_samples_num, ctx.tables.database_size, previous,
        chunk_bytes=ctx.mining_chunk_bytes)
    if negative_cache is not None:
        negative_cache[queries] = negatives
    return positives, negatives, {"cache_images": len(queries) + plan.num_cache,
                                  "cache_s": t1 - t0, "mining_s": time.perf_counter() - t1}


def target_batches(ctx: RoundContext, progress: Progress, steps: int):
    """Domain adaptation: `queries_per_step` target images for each step of the round, as
    many as source queries whatever the sizes of the two sets: the target set is cycled
    through in a random order drawn from (seed, epoch, round), so a resumed run draws the
    same. None without a target set."""
    if ctx.target is None:
        return None
    b, n = ctx.queries_per_step, len(ctx.target)
    rng = np.random.default_rng([ctx.seed, progress.epoch, progress.round, 2])
    order = np.concatenate([rng.permutation(n) for _ in range(-(-steps * b // n))])
    rows = multihost.process_rows(ctx.batch_sharding, b)

    def batches():
        for s in range(steps):
            ids = order[s * b:(s + 1) * b][rows]
            yield jax.make_array_from_process_local_data(
                ctx.batch_sharding, ctx.target[ids], (b, *ctx.size, 3))

    return batches()


def _load_augmented(ctx: RoundContext, paths: np.ndarray, group: int, step_images: int,
                    base_step: int, place) -> np.ndarray:
    """Image `place` of a round's train batches (flattened): a query through
    `ctx.host_augment`, keyed by its train step and its place in that step's batch; any
    other image as training reads it."""
    place = int(place)
    if place % group:
        return ctx.reader(paths[place], ctx.size)
    step, row = divmod(place, step_images)
    return ctx.host_augment(paths[place], base_step + step, row // group)


def run_round(ctx: RoundContext, state: TrainState, progress: Progress, queries: np.ndarray,
              negative_cache: np.ndarray | None) -> RoundResult:
    """One mining round then its train steps (`negative_cache` is updated in place)."""
    epoch, rnd = progress.epoch, progress.round
    positives, negatives, times = mine_round(ctx, state, progress, queries, negative_cache)
    t2 = time.perf_counter()
    b = ctx.queries_per_step
    steps = len(queries) // b
    n_db = len(ctx.train.database)
    groups = np.concatenate([n_db + np.asarray(queries)[:, None], positives[:, None],
                             negatives], axis=1)[:steps * b].astype(np.int32)  # (Q, 2 + N)
    step_images = b * groups.shape[1]
    # this process's rows of every step's batch: whole groups, as b is a multiple of the devices
    rows = multihost.process_rows(ctx.batch_sharding, step_images)
    base_step = int(jax.device_get(state.step))
    if ctx.pool is not None:
        local = multihost.local_batch_paths(groups.reshape(-1), step_images, rows)
        width = rows.stop - rows.start
        loader = ((local[i * width:(i + 1) * width], width) for i in range(steps))
    elif ctx.host_augment is not None:  # items: places in the round's batches
        load = functools.partial(_load_augmented, ctx, ctx.paths_of(groups.reshape(-1)),
                                 groups.shape[1], step_images, base_step)
        loader = ctx.loader(np.arange(groups.size), step_images, rows, load)
    else:
        loader = ctx.loader(ctx.paths_of(groups.reshape(-1)), step_images, rows)
    losses: list[float] = []
    pending = None

    def record(i, metrics) -> bool:
        values = {k: float(v) for k, v in jax.device_get(metrics).items()}
        losses.append(values["loss"])
        ctx.metrics.measure(base_step + i + 1, epoch=epoch, round=rnd, **values)
        return math.isfinite(values["loss"])

    targets = target_batches(ctx, progress, steps)
    for i, (images, _) in enumerate(progress_bar(loader, desc=f"epoch {epoch} round {rnd}",
                                                 total=steps, unit="step",
                                                 enabled=multihost.is_primary())):
        images = jax.make_array_from_process_local_data(
            ctx.batch_sharding, images, (step_images, *images.shape[1:]))
        inputs = (images,) if ctx.pool is None else (images, ctx.pool)  # rows into the pool
        if targets is not None:
            inputs += (next(targets),)
        state, metrics = ctx.train_step(state, *inputs)
        if pending is not None and not record(*pending):
            return RoundResult(state, base_step + pending[0], losses)
        pending = (i, metrics)
    if pending is not None and not record(*pending):
        return RoundResult(state, base_step + pending[0], losses)
    t3 = time.perf_counter()
    log.info("epoch %d round %d: cache %d images %.1f s, mining %.2f s, %d steps %.1f s "
             "(%.0f img/s), loss %.4f", epoch, rnd, times["cache_images"], times["cache_s"],
             times["mining_s"], steps, t3 - t2, steps * step_images / max(t3 - t2, 1e-9),
             float(np.mean(losses)) if losses else float("nan"))
    return RoundResult(state, None, losses)
