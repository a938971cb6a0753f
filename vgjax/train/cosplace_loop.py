"""CosPlace's training loop (`train.batching=cosplace`; the rule and the loss:
`vgjax.train.cosplace`).

The training images are the database and query images of `data.train_dataset`'s train
split (an @UTM folder whose file names carry the heading field). Epoch e trains group
e mod `train.cosplace.groups` for `train.cosplace.steps_per_epoch` steps; evaluators, the
scheduler, early stopping and the final test run as in the other loops
(`vgjax.train.loop.run_epochs`). Checkpoint `last` is saved every `train.checkpoint_steps`
steps of an epoch (0: off) and after every epoch.
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
from vgjax.data.format import DatasetFormatError
from vgjax.data.pipeline import BatchLoader
from vgjax.data.places import places_from_folder
from vgjax.data.settings import DataSettings
from vgjax.data.sources import FOLDER_READER, folder_location
from vgjax.eval import evaluators
from vgjax.models.network import build_network, descriptor_dim, make_describe_fn
from vgjax.progress import bar as progress_bar
from vgjax.train import multihost, run_dir
from vgjax.train.cosplace import (CosPlaceSettings, class_groups, classifier_optimizer,
                                  cosface_loss, epoch_batches, group_of_epoch, init_aux)
from vgjax.train.init import initial_state
from vgjax.train.settings import TrainSettings
from vgjax.train.state import Progress, TrainState
from vgjax.train.step import NonFiniteLossError, _norm, learning_rate_of, make_mesh

log = logging.getLogger("vgjax.train")


def open_cosplace_groups(config):
    """(the training images as `vgjax.data.places.Places`, their `ClassGroups`); refusals
    are one-line ConfigErrors naming the option."""
    s = TrainSettings.from_config(config).cosplace
    data = config.data
    try:
        images = places_from_folder(folder_location(data, data.train_dataset), "train",
                                    cell_m=s.cell_m, min_images=1)
        groups = class_groups(images.utm, images.headings, s, images.where)
    except (DatasetFormatError, ValueError) as e:
        raise ConfigError(f"data.train_dataset: {e} (train.batching=cosplace)") from None
    return images, groups


def make_cosplace_step(net, tx, mesh, s: CosPlaceSettings, sizes: list[int],
                       augment=None, seed: int = 0):
    """Jitted `(state, images (B, H, W, 3) uint8, labels (B,) int32, group int32) ->
    (state, metrics)`: the network (its optimizer `tx`) and group `group`'s classifier
    (its Adam, `state.aux`) take one step on the CosFace loss; the other groups'
    classifiers and Adam states are left as they are."""
    cls_tx = classifier_optimizer(s.classifier_lr)
    valid_table = jnp.asarray(np.arange(max(sizes))[None, :] < np.asarray(sizes)[:, None])

    def step(state: TrainState, images, labels, group):
        if augment is not None:
            images = augment(images, jax.random.fold_in(jax.random.key(seed), state.step))
        weights = state.aux["weights"][group]

        def loss_fn(params, weights):
            desc, updates = net.apply({"params": params, "batch_stats": state.batch_stats},
                                      images, train=True, mutable=["batch_stats"])
            loss = cosface_loss(desc, weights, labels, valid_table[group], s.scale, s.margin)
            return loss, updates.get("batch_stats", {})

        (loss, batch_stats), (grads, w_grads) = jax.value_and_grad(
            loss_fn, argnums=(0, 1), has_aux=True)(state.params, weights)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = jax.tree.map(lambda p, u: p + u.astype(p.dtype), state.params, updates)
        group_opt = jax.tree.map(lambda x: x[group], state.aux["opt"])
        w_updates, group_opt = cls_tx.update(w_grads, group_opt, weights)
        aux = {"weights": state.aux["weights"].at[group].set(weights + w_updates),
               "opt": jax.tree.map(lambda all_, one: all_.at[group].set(one),
                                   state.aux["opt"], group_opt)}
        new = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state, aux=aux)
        ok = jnp.isfinite(loss) & ~state.failed
        new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, state)
        metrics = {"loss": loss, "loss/cosface": loss, "lr": learning_rate_of(state.opt_state),
                   "grad_norm": _norm(grads), "update_norm": _norm(updates),
                   "param_norm": _norm(params), "classifier_grad_norm": _norm(w_grads)}
        return new.replace(failed=~ok), metrics

    replicated, batch = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    return jax.jit(step, in_shardings=(replicated, batch, batch, replicated),
                   out_shardings=(replicated, replicated), donate_argnums=0)


@dataclasses.dataclass(frozen=True)
class _Images:
    paths: np.ndarray


@dataclasses.dataclass(frozen=True)
class _TrainImages:
    """Where the model's initialisation looks for training images (NetVLAD's k-means)."""
    database: _Images
    queries: _Images


def train_cosplace(config, run: Path) -> dict:
    """`train_and_evaluate` with CosPlace's groups and classifiers (module docstring)."""
    from vgjax.train.loop import _final, _save, run_epochs

    t, data = TrainSettings.from_config(config), DataSettings.from_config(config)
    s = t.cosplace
    if multihost.is_primary():
        run_dir.write_config(run, config)
    images, groups = open_cosplace_groups(config)
    reader = FOLDER_READER if data.check_images else dataclasses.replace(FOLDER_READER,
                                                                         check=None)
    reader = reader.with_draft(data.jpeg_draft)
    evals = evaluators.build_all(config)
    if reader.check is not None:
        reader.check(list(images.paths), f"{images.where} (training images)")
    for e in evals.values():
        e.check_files()
    epoch_evals = [e for e in evals.values() if "epoch" in e.when]
    for e in epoch_evals:
        for d in e.datasets:
            check_evaluable(e.open(d)[0], f"evals.{e.name}")
    mesh = make_mesh(t.num_devices)
    for name, value in (("cosplace.classes_per_batch", s.classes_per_batch),
                        ("infer_batch_size", t.infer_batch_size)):
        if value % mesh.devices.size:
            raise ValueError(f"train.{name}={value} must be a multiple of the "
                             f"{mesh.devices.size} devices used (set train.num_devices)")
    log.info("%s: %d training images; %s; epochs of %d steps of %d classes", images.where,
             len(images), groups.summary(), s.steps_per_epoch, s.classes_per_batch)
    net = build_network(config.model)
    dim = descriptor_dim(config.model)
    train_images = _TrainImages(_Images(images.paths), _Images(np.array([], str)))

    def aux_init():
        return init_aux(jax.random.fold_in(jax.random.key(config.seed), 7), groups.sizes, dim,
                        s.classifier_lr)

    state, progress, _, tx = initial_state(config, run, net, train_images, reader, mesh, None,
                                           None, aux_init=aux_init)
    if progress.finished:
        log.info("Training already finished; evaluating the best model")
    augment = make_query_augment(t.query_augment, 1)  # every image of the batch
    train_step = make_cosplace_step(net, tx, mesh, s, groups.sizes, augment, config.seed)
    describe = make_describe_fn(net)
    sharding = NamedSharding(mesh, P("data"))
    metrics_writer = run_dir.open_metrics(run, t.tensorboard, int(jax.device_get(state.step)))
    b = s.classes_per_batch

    def train_epoch(state, progress: Progress, lr):
        epoch, start = progress.epoch, progress.round
        group = group_of_epoch(epoch, len(groups.classes))
        rows, labels = epoch_batches(config.seed, epoch, groups.classes[group], b,
                                     s.steps_per_epoch)
        local_rows = multihost.process_rows(sharding, b)
        paths = images.paths[rows[start:, local_rows].reshape(-1)]
        loader = BatchLoader(paths, data.resize, local_rows.stop - local_rows.start,
                             num_workers=data.num_workers, prefetch=data.prefetch,
                             load_fn=reader.loader(data.resize))
        base_step = int(jax.device_get(state.step))
        group_index = jnp.asarray(group, jnp.int32)
        t0 = time.perf_counter()

        def record(i, metrics, state):
            values = {k: float(v) for k, v in jax.device_get(metrics).items()}
            if not math.isfinite(values["loss"]):  # the state is the one before step i
                _save(config, t, run, "nan", state, progress, None)
                raise NonFiniteLossError(
                    f"loss is not finite at step {base_step + i + 1} (epoch {epoch}, group "
                    f"{group}, batch {start + i}; train.lr={lr}); the state before it is in "
                    f"{run / 'checkpoints' / 'nan'}, and {run / 'checkpoints' / 'last'} "
                    "holds the last checkpoint: lower train.lr and resume with the same "
                    "--workdir")
            metrics_writer.measure(base_step + i + 1, epoch=epoch, batch=start + i,
                                   group=group, **values)
            progress.round += 1
            progress.epoch_loss_sum += values["loss"]
            progress.epoch_loss_steps += 1

        pending = None
        for i, (x, _) in enumerate(progress_bar(loader, desc=f"epoch {epoch} (group {group})",
                                                total=len(loader), unit="step",
                                                enabled=multihost.is_primary())):
            x = jax.make_array_from_process_local_data(sharding, x, (b, *x.shape[1:]))
            y = jax.make_array_from_process_local_data(
                sharding, labels[start + i, local_rows], (b,))
            state, metrics = train_step(state, x, y, group_index)
            if pending is not None:  # the host reads a step's loss while the next one runs
                record(*pending, state)
            pending = (i, metrics)
            done = start + i + 1
            if t.checkpoint_steps and done % t.checkpoint_steps == 0 and done < len(rows):
                record(*pending, state)
                pending = None
                _save(config, t, run, "last", state, progress, None)
        if pending is not None:
            record(*pending, state)
        took = time.perf_counter() - t0
        n = len(rows) - start
        log.info("epoch %d (group %d): %d steps in %.1f s (%.0f img/s), mean loss %.4f", epoch,
                 group, n, took, n * b / max(took, 1e-9),
                 progress.epoch_loss_sum / max(progress.epoch_loss_steps, 1))
        return state

    try:
        run_epochs(config, t, run, evals, describe, metrics_writer, state, progress,
                   train_epoch)
        return _final(config, run, evals, describe, metrics_writer)
    finally:
        metrics_writer.close()


def check_cosplace_config(raw, config=None) -> None:
    """What `train.batching=cosplace` needs of the rest of the config (one line each)."""
    require(not raw.da.enabled, "train.da.enabled",
            "domain adaptation works with train.batching=triplets only")
    from vgjax.data.augment import AUGMENT_ON
    require(not AUGMENT_ON.get(raw.augment_on).reads_files, "train.augment_on",
            "train.batching=cosplace augments on the device only (set device)")
    if config is not None:
        from vgjax.data.cache import CACHE_MODES
        from vgjax.data.sources import SOURCES
        data = DataSettings.from_config(config)
        require(not CACHE_MODES.get(data.cache_decoded).decodes, "data.cache_decoded",
                f"{data.cache_decoded!r}: train.batching=cosplace reads its images from the "
                "files; set none")
        require(SOURCES.get(data.source).folders, "data.source",
                f"{data.source!r}: train.batching=cosplace reads @UTM folders; set folder")
        require(data.format == "folder", "data.format",
                f"{data.format!r}: train.batching=cosplace groups the UTM coordinates and "
                "headings of an @UTM folder's names; set folder")
