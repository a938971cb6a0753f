"""Place-batch training (`train.batching=places`), as GSV-Cities, MixVPR and Conv-AP train.

The training set is read as places (`data.train_dataset` through `data.format`:
`vgjax.data.places`). An epoch is the places in a random order drawn from (seed, epoch)
alone, its first `train.places_per_epoch` (0: all of them) cut into batches of
P = `train.places_per_batch` places (a remainder of fewer than P places is left out of the
epoch); each place of a batch brings K = `train.images_per_place` of its images, drawn
without replacement by the same generator. A step describes the P * K images (decoded at
`data.resize`, through `train.query_augment` on the device) in training mode, mines pairs
with `train.miner` and applies the batch loss `train.loss` (`vgjax.train.batch_losses`),
then the optimizer. Evaluators, the scheduler, early stopping and the final test run as in
the triplet loop (`vgjax.train.loop.run_epochs`).

Checkpoint `last` is saved every `train.checkpoint_steps` steps of an epoch (0: off) and
after every epoch; its progress counts the steps of the epoch done (`Progress.round`), and
since an epoch's batches depend on (seed, epoch) only, a resumed run redoes exactly the
batches the uninterrupted run would have taken.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from vgjax.config import ConfigError, require
from vgjax.data.augment import make_query_augment
from vgjax.data.dataset import check_evaluable
from vgjax.data.pipeline import BatchLoader
from vgjax.data.places import PLACE_FORMATS, Places
from vgjax.data.settings import DataSettings
from vgjax.data.sources import FOLDER_READER
from vgjax.eval import evaluators
from vgjax.models.network import build_network, make_describe_fn
from vgjax.progress import bar as progress_bar
from vgjax.registry import parse_spec
from vgjax.train import multihost, run_dir
from vgjax.train.batch_losses import make_batch_loss
from vgjax.train.init import initial_state
from vgjax.train.losses import LossTerm
from vgjax.train.settings import TrainSettings
from vgjax.train.state import Progress
from vgjax.train.step import NonFiniteLossError, make_mesh, make_train_step

log = logging.getLogger("vgjax.train")

EPOCH_KEY = 3 << 20  # the place-batch draws' stream, apart from the triplet loop's


def open_train_places(config) -> Places:
    """The places of `data.train_dataset` read as `data.format` says, each with at least
    K = `train.images_per_place` images (the format's `min_images` rule at K, unless the
    spec sets a higher one), and at least P = `train.places_per_batch` places. Refusals
    are one-line ConfigErrors naming the option."""
    t = TrainSettings.from_config(config)
    data_cfg = config.data
    p, k = t.places_per_batch, t.images_per_place
    spec = PLACE_FORMATS.parse(data_cfg.format)
    kwargs = dict(spec.kwargs)
    given = kwargs.get("min_images")
    require(given is None or given >= k, "data.format",
            f"{data_cfg.format!r}: min_images={given} is below train.images_per_place={k} "
            "(each place of a batch shows K distinct images)")
    kwargs.setdefault("min_images", k)
    try:
        places = PLACE_FORMATS.get(spec.name)(data_cfg=data_cfg,
                                              dataset=data_cfg.train_dataset, **kwargs)
    except ConfigError:
        raise
    except ValueError as e:  # DatasetFormatError: the folder, a place with too few images
        raise ConfigError(f"data.train_dataset: {e} (data.format={data_cfg.format!r}, "
                          f"train.images_per_place={k})") from None
    require(places.num_places >= p, "train.places_per_batch",
            f"{p} places a batch, but {places.summary()}")
    n = t.places_per_epoch
    require(n == 0 or p <= n <= places.num_places, "train.places_per_epoch",
            f"{n}: expected 0 (all) or {p} (train.places_per_batch) .. {places.num_places} "
            f"(the places of {places.where})")
    return places


def epoch_batches(seed: int, epoch: int, members, places_per_batch: int,
                  images_per_place: int, places_per_epoch: int = 0) -> np.ndarray:
    """(steps, P * K) image indices of an epoch's batches, a function of (seed, epoch) and
    the places only: the places in a random order, the first `places_per_epoch` (0: all)
    cut into batches of P (the remainder left out), K images of each place drawn without
    replacement; a batch lists its places one after the other, K images each."""
    rng = np.random.default_rng([seed, epoch, EPOCH_KEY])
    order = rng.permutation(len(members))[:places_per_epoch or len(members)]
    p, k = places_per_batch, images_per_place
    steps = len(order) // p
    out = np.empty((steps, p, k), np.int64)
    for s in range(steps):
        for j, place in enumerate(order[s * p:(s + 1) * p]):
            out[s, j] = rng.choice(members[place], k, replace=False)
    return out.reshape(steps, p * k)


@dataclasses.dataclass(frozen=True)
class _Images:
    paths: np.ndarray


@dataclasses.dataclass(frozen=True)
class _PlaceImages:
    """The training images where the model's initialisation looks for them (NetVLAD's
    k-means samples `database` and `queries`): every image of the places."""
    database: _Images
    queries: _Images


def place_term(loss: str, loss_args, miner: str, miner_args, places_per_batch: int,
               images_per_place: int) -> LossTerm:
    """The step's loss term: the batch loss on the miner's pairs, the labels of a batch
    laid out place by place (K images each)."""
    fn = make_batch_loss(loss, loss_args, miner, miner_args)
    labels = np.repeat(np.arange(places_per_batch, dtype=np.int32), images_per_place)

    def term(outputs):
        return fn(outputs.descriptors, jnp.asarray(labels))

    return LossTerm(parse_spec(loss, "train.loss").name, term)


def train_places(config, run: Path) -> dict:
    """`train_and_evaluate` with place batches (see the module docstring)."""
    from vgjax.train.loop import _final, _save, run_epochs

    t, data = TrainSettings.from_config(config), DataSettings.from_config(config)
    if multihost.is_primary():
        run_dir.write_config(run, config)
    places = open_train_places(config)
    reader = FOLDER_READER if data.check_images else dataclasses.replace(FOLDER_READER,
                                                                         check=None)
    reader = reader.with_draft(data.jpeg_draft)
    evals = evaluators.build_all(config)
    if reader.check is not None:
        reader.check(list(places.paths), f"{places.where} (training places)")
    for e in evals.values():
        e.check_files()
    epoch_evals = [e for e in evals.values() if "epoch" in e.when]
    for e in epoch_evals:
        for d in e.datasets:
            check_evaluable(e.open(d)[0], f"evals.{e.name}")
    mesh = make_mesh(t.num_devices)
    batch = t.places_per_batch * t.images_per_place
    for name, value in (("places_per_batch * train.images_per_place", batch),
                        ("infer_batch_size", t.infer_batch_size)):
        if value % mesh.devices.size:
            raise ValueError(f"train.{name}={value} must be a multiple of the "
                             f"{mesh.devices.size} devices used (set train.num_devices)")
    members = places.members()
    steps = len(epoch_batches(config.seed, 0, members, t.places_per_batch,
                              t.images_per_place, t.places_per_epoch))
    log.info("%s; epochs of %d steps of %d places x %d images; %s", places.summary(), steps,
             t.places_per_batch, t.images_per_place, "; ".join(
                 e.open(d)[0].summary() for e in epoch_evals for d in e.datasets))
    net = build_network(config.model)
    images = _PlaceImages(_Images(places.paths), _Images(np.array([], str)))
    state, progress, _, tx = initial_state(config, run, net, images, reader, mesh, None, None)
    if progress.finished:
        log.info("Training already finished; evaluating the best model")
    term = place_term(t.loss, t.loss_args.kwargs(), t.miner, t.miner_args.kwargs(),
                      t.places_per_batch, t.images_per_place)
    augment = make_query_augment(t.query_augment, 1)  # every image of the batch
    train_step = make_train_step(net, tx, [term], 0, mesh, augment=augment, seed=config.seed)
    describe = make_describe_fn(net)
    sharding = NamedSharding(mesh, P("data"))
    metrics_writer = run_dir.open_metrics(run, t.tensorboard, int(jax.device_get(state.step)))

    def train_epoch(state, progress: Progress, lr):
        epoch, start = progress.epoch, progress.round
        batches = epoch_batches(config.seed, epoch, members, t.places_per_batch,
                                t.images_per_place, t.places_per_epoch)
        rows = multihost.process_rows(sharding, batch)
        local = multihost.local_batch_paths(places.paths[batches[start:].reshape(-1)], batch,
                                            rows)
        loader = BatchLoader(local, data.resize, rows.stop - rows.start,
                             num_workers=data.num_workers, prefetch=data.prefetch,
                             load_fn=reader.loader(data.resize))
        base_step = int(jax.device_get(state.step))
        t0 = time.perf_counter()

        def record(i, metrics, state):
            values = {k: float(v) for k, v in jax.device_get(metrics).items()}
            if not math.isfinite(values["loss"]):  # the state is the one before step i
                _save(config, t, run, "nan", state, progress, None)
                raise NonFiniteLossError(
                    f"loss is not finite at step {base_step + i + 1} (epoch {epoch}, batch "
                    f"{start + i}; train.loss={t.loss}, train.lr={lr}); the state before it "
                    f"is in {run / 'checkpoints' / 'nan'}, and {run / 'checkpoints' / 'last'} "
                    "holds the last checkpoint: lower train.lr and resume with the same "
                    "--workdir")
            metrics_writer.measure(base_step + i + 1, epoch=epoch, batch=start + i, **values)
            progress.round += 1
            progress.epoch_loss_sum += values["loss"]
            progress.epoch_loss_steps += 1

        pending = None
        for i, (x, _) in enumerate(progress_bar(loader, desc=f"epoch {epoch}", total=len(loader),
                                                unit="step", enabled=multihost.is_primary())):
            x = jax.make_array_from_process_local_data(sharding, x, (batch, *x.shape[1:]))
            state, metrics = train_step(state, x)
            if pending is not None:  # the host reads a step's loss while the next one runs
                record(*pending, state)
            pending = (i, metrics)
            done = start + i + 1
            if t.checkpoint_steps and done % t.checkpoint_steps == 0 and done < len(batches):
                record(*pending, state)
                pending = None
                _save(config, t, run, "last", state, progress, None)
        if pending is not None:
            record(*pending, state)
        took = time.perf_counter() - t0
        n = len(batches) - start
        log.info("epoch %d: %d steps in %.1f s (%.0f img/s), mean loss %.4f", epoch, n, took,
                 n * batch / max(took, 1e-9),
                 progress.epoch_loss_sum / max(progress.epoch_loss_steps, 1))
        return state

    try:
        run_epochs(config, t, run, evals, describe, metrics_writer, state, progress,
                   train_epoch)
        return _final(config, run, evals, describe, metrics_writer)
    finally:
        metrics_writer.close()
