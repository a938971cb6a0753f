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

import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from vgjax.config import ConfigError, require
from vgjax.data.augment import make_query_augment
from vgjax.data.pipeline import BatchLoader
from vgjax.data.places import PLACE_FORMATS, Places
from vgjax.data.settings import DataSettings
from vgjax.models.network import build_network, make_describe_fn
from vgjax.registry import parse_spec
from vgjax.train import file_steps, multihost, run_dir
from vgjax.train.batch_losses import make_batch_loss
from vgjax.train.init import initial_state
from vgjax.train.losses import LossTerm
from vgjax.train.settings import TrainSettings
from vgjax.train.sharding import shardings_of
from vgjax.train.state import Progress
from vgjax.train.step import make_mesh, make_train_step

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
    t, data = TrainSettings.from_config(config), DataSettings.from_config(config)
    places = open_train_places(config)
    reader, evals = file_steps.prepare(config, run, data, places.paths,
                                       f"{places.where} (training places)")
    mesh = make_mesh(t.num_devices)
    batch = t.places_per_batch * t.images_per_place
    file_steps.check_multiples(mesh, {"places_per_batch * train.images_per_place": batch,
                                      "infer_batch_size": t.infer_batch_size})
    members = places.members()
    steps = len(epoch_batches(config.seed, 0, members, t.places_per_batch,
                              t.images_per_place, t.places_per_epoch))
    log.info("%s; epochs of %d steps of %d places x %d images; %s", places.summary(), steps,
             t.places_per_batch, t.images_per_place, "; ".join(
                 e.open(d)[0].summary() for e in evals.values() if "epoch" in e.when
                 for d in e.datasets))
    net = build_network(config.model)
    images = file_steps.TrainImages.of(places.paths)
    state, progress, _, tx = initial_state(config, run, net, images, reader, mesh, None, None)
    if progress.finished:
        log.info("Training already finished; evaluating the best model")
    term = place_term(t.loss, t.loss_args.kwargs(), t.miner, t.miner_args.kwargs(),
                      t.places_per_batch, t.images_per_place)
    augment = make_query_augment(t.query_augment, 1)  # every image of the batch
    train_step = make_train_step(net, tx, [term], 0, mesh, augment=augment, seed=config.seed,
                                 state_sharding=shardings_of(state))
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

        def step(state, i, x):
            return train_step(state, jax.make_array_from_process_local_data(
                sharding, x, (batch, *x.shape[1:])))

        return file_steps.run_steps(
            config, t, run, state, progress, loader, step, total=len(batches),
            images_per_step=batch, metrics_writer=metrics_writer, desc=f"epoch {epoch}",
            context=f"epoch {epoch}; train.loss={t.loss}", lr=lr)

    return file_steps.train_then_test(config, t, run, evals, describe, metrics_writer, state,
                                      progress, train_epoch)
