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

import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from vgjax.config import ConfigError
from vgjax.data.augment import make_query_augment
from vgjax.data.format import DatasetFormatError
from vgjax.data.pipeline import BatchLoader
from vgjax.data.places import places_from_folder
from vgjax.data.settings import DataSettings
from vgjax.data.sources import folder_location
from vgjax.models.network import build_network, descriptor_dim, make_describe_fn
from vgjax.train import file_steps, multihost, run_dir
from vgjax.train.cosplace import (CosPlaceSettings, class_groups, classifier_optimizer,
                                  cosface_loss, epoch_batches, group_of_epoch, init_aux)
from vgjax.train.init import initial_state
from vgjax.train.settings import TrainSettings
from vgjax.train.sharding import shardings_of
from vgjax.train.state import Progress, TrainState
from vgjax.train.step import _norm, apply_gradients, make_mesh

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
                       augment=None, seed: int = 0, state_sharding=None):
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
        group_opt = jax.tree.map(lambda x: x[group], state.aux["opt"])
        w_updates, group_opt = cls_tx.update(w_grads, group_opt, weights)
        aux = {"weights": state.aux["weights"].at[group].set(weights + w_updates),
               "opt": jax.tree.map(lambda all_, one: all_.at[group].set(one),
                                   state.aux["opt"], group_opt)}
        metrics = {"loss/cosface": loss, "classifier_grad_norm": _norm(w_grads)}
        return apply_gradients(state, tx, grads, loss, batch_stats, metrics, aux=aux)

    replicated, batch = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    placed = replicated if state_sharding is None else state_sharding
    return jax.jit(step, in_shardings=(placed, batch, batch, replicated),
                   out_shardings=(placed, replicated), donate_argnums=0)


def train_cosplace(config, run: Path) -> dict:
    """`train_and_evaluate` with CosPlace's groups and classifiers (module docstring)."""
    t, data = TrainSettings.from_config(config), DataSettings.from_config(config)
    s = t.cosplace
    images, groups = open_cosplace_groups(config)
    reader, evals = file_steps.prepare(config, run, data, images.paths,
                                       f"{images.where} (training images)")
    mesh = make_mesh(t.num_devices)
    b = s.classes_per_batch
    file_steps.check_multiples(mesh, {"cosplace.classes_per_batch": b,
                                      "infer_batch_size": t.infer_batch_size})
    log.info("%s: %d training images; %s; epochs of %d steps of %d classes", images.where,
             len(images), groups.summary(), s.steps_per_epoch, b)
    net = build_network(config.model)
    dim = descriptor_dim(config.model)
    train_images = file_steps.TrainImages.of(images.paths)

    def aux_init():
        return init_aux(jax.random.fold_in(jax.random.key(config.seed), 7), groups.sizes, dim,
                        s.classifier_lr)

    state, progress, _, tx = initial_state(config, run, net, train_images, reader, mesh, None,
                                           None, aux_init=aux_init)
    if progress.finished:
        log.info("Training already finished; evaluating the best model")
    augment = make_query_augment(t.query_augment, 1)  # every image of the batch
    train_step = make_cosplace_step(net, tx, mesh, s, groups.sizes, augment, config.seed,
                                    state_sharding=shardings_of(state))
    describe = make_describe_fn(net)
    sharding = NamedSharding(mesh, P("data"))
    metrics_writer = run_dir.open_metrics(run, t.tensorboard, int(jax.device_get(state.step)))

    def train_epoch(state, progress: Progress, lr):
        epoch, start = progress.epoch, progress.round
        group = group_of_epoch(epoch, len(groups.classes))
        rows, labels = epoch_batches(config.seed, epoch, groups.classes[group], b,
                                     s.steps_per_epoch)
        local = multihost.process_rows(sharding, b)
        loader = BatchLoader(images.paths[rows[start:, local].reshape(-1)], data.resize,
                             local.stop - local.start, num_workers=data.num_workers,
                             prefetch=data.prefetch, load_fn=reader.loader(data.resize))
        group_index = jnp.asarray(group, jnp.int32)

        def step(state, i, x):
            x = jax.make_array_from_process_local_data(sharding, x, (b, *x.shape[1:]))
            y = jax.make_array_from_process_local_data(sharding, labels[start + i, local],
                                                       (b,))
            return train_step(state, x, y, group_index)

        return file_steps.run_steps(
            config, t, run, state, progress, loader, step, total=len(rows), images_per_step=b,
            metrics_writer=metrics_writer, desc=f"epoch {epoch} (group {group})",
            context=f"epoch {epoch}, group {group}", fields={"group": group}, lr=lr)

    return file_steps.train_then_test(config, t, run, evals, describe, metrics_writer, state,
                                      progress, train_epoch)
