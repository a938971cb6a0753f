"""The jitted train step: `(state, images) -> (state, metrics)`, sharded over a device mesh.

The step runs the network on a batch laid out query by query (`[q, p, n_1 .. n_N]`), sums
the configured loss terms (`vgjax.train.losses`) with their weights and applies the
optimizer. Everything the loop logs comes out of the step as one dict of scalars:

    loss                 weighted sum of the terms (what is minimised)
    loss/<term>          each term, unweighted, and the metrics a term reports
    lr                   the learning rate this step used (read from the optimizer state)
    grad_norm, update_norm, param_norm   global L2 norms (trainable parameters)

A step whose loss is not finite leaves the state unchanged and sets `state.failed`, after
which every step is a no-op: the host sees the loss a step late, so what it saves is the
state before the failure.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vgjax.train.adaptation import DOMAIN, DomainAdaptation
from vgjax.train.losses import LossTerm, StepOutputs
from vgjax.train.state import TrainState


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN/inf; the state before it was saved."""


def make_mesh(num_devices: int = 0) -> Mesh:
    """A 1-D 'data' mesh over the first `num_devices` devices (0 = all)."""
    devices = jax.devices()
    if num_devices:
        if num_devices > len(devices):
            raise ValueError(f"train.num_devices={num_devices} but only {len(devices)} devices")
        devices = devices[:num_devices]
    if len({d.process_index for d in devices}) < jax.process_count():
        raise ValueError(f"train.num_devices={num_devices} leaves some of the "
                         f"{jax.process_count()} processes without a device; use 0 (all)")
    return Mesh(np.array(devices), ("data",))


def _norm(tree) -> jax.Array:
    leaves = [jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)
              if not isinstance(x, optax.MaskedNode)]
    return jnp.sqrt(sum(leaves)) if leaves else jnp.zeros([], jnp.float32)


def ops_float(images):
    """uint8 pixels -> float32 in [0, 1] (exact); float images unchanged."""
    return images.astype(jnp.float32) / 255.0 if images.dtype == jnp.uint8 else images


def make_loss_fn(net, terms: Sequence[LossTerm], negatives_per_query: int,
                 domain: DomainAdaptation | None = None):
    """The step's loss: `(params, batch_stats, images, target, step) -> (loss, (metrics,
    new_batch_stats))`, differentiable in `params` (`target` is None without `domain`).

    The network runs in training mode on the whole batch, so BatchNorm normalises with the
    statistics of the global batch however the batch is sharded (XLA reduces across the
    devices); the sharded and the one-device step compute the same function.
    """
    terms = tuple(terms)
    if not terms:
        raise ValueError("the train step needs at least one loss term")
    group = 2 + negatives_per_query

    def compute_loss(params, batch_stats, images, target, step):
        net_params = {k: v for k, v in params.items() if k != DOMAIN}
        variables = {"params": net_params, "batch_stats": batch_stats}
        extra = {}
        if domain is None:
            desc, updates = net.apply(variables, images, train=True, mutable=["batch_stats"])
        else:  # one forward pass: both domains share the batch statistics
            n = images.shape[0]
            both = jnp.concatenate([ops_float(images), ops_float(target)], axis=0)
            (desc, features), updates = net.apply(variables, both, train=True,
                                                  return_features=True,
                                                  mutable=["batch_stats"])
            desc = desc[:n]
            extra = domain.outputs(params[DOMAIN], features[:n:group], features[n:], step)
        outputs = StepOutputs(desc, negatives_per_query, extra)
        total, metrics = 0.0, {}
        for term in terms:
            value, term_metrics = term(outputs)
            total = total + term.weight * value
            metrics[f"loss/{term.name}"] = value
            metrics.update(term_metrics)
        return total, (metrics, updates.get("batch_stats", {}))  # {}: no BatchNorm

    return compute_loss


def make_train_step(net, tx, terms: Sequence[LossTerm], negatives_per_query: int, mesh: Mesh,
                    augment: Callable | None = None, seed: int = 0,
                    domain: DomainAdaptation | None = None, gather: bool = False,
                    state_sharding=None):
    """Jitted `(state, images (B * (2 + N), H, W, 3) uint8) -> (state, metrics)`; with
    `domain`, `(state, images, target (T, H, W, 3)) -> (state, metrics)`.

    Images are sharded over the mesh's 'data' axis (whole query groups per device), the
    state is replicated; XLA inserts the gradient all-reduce. `augment(images, key) ->
    images`, if given, runs first (e.g. query-only augmentations), with a key derived from
    `seed` and the step number, so a resumed run draws what the uninterrupted one did.
    `domain`: the domain classifier sees the queries' backbone features (source) and the
    target images'; the target images go through the network in the same forward pass as
    the training batch, so both domains are normalised with the same batch statistics (a
    separate pass would normalise the night images by their own statistics and hide most
    of what tells the domains apart).
    `state_sharding`: the state's shardings (`vgjax.train.sharding`; default replicated).
    `gather`: the step takes `(state, rows (B * (2 + N),) int32, pool (M, H, W, 3) uint8
    [, target])` and gathers its images from `pool` (the training images resident on the
    device: `data.cache_decoded=device`), so no image crosses from the host.
    """
    replicated = NamedSharding(mesh, P())
    batch = NamedSharding(mesh, P("data"))
    placed = replicated if state_sharding is None else state_sharding

    compute_loss = make_loss_fn(net, terms, negatives_per_query, domain)

    def step(state: TrainState, images, target=None):
        if augment is not None:
            images = augment(images, jax.random.fold_in(jax.random.key(seed), state.step))

        (loss, (metrics, batch_stats)), grads = jax.value_and_grad(
            compute_loss, has_aux=True)(state.params, state.batch_stats, images, target,
                                        state.step)
        return apply_gradients(state, tx, grads, loss, batch_stats, metrics)

    outs = (placed, replicated)
    if gather:
        if domain is not None:
            return jax.jit(lambda state, rows, pool, target: step(state, pool[rows], target),
                           in_shardings=(placed, batch, replicated, batch),
                           out_shardings=outs, donate_argnums=0)
        return jax.jit(lambda state, rows, pool: step(state, pool[rows]),
                       in_shardings=(placed, batch, replicated), out_shardings=outs,
                       donate_argnums=0)
    if domain is not None:
        return jax.jit(step, in_shardings=(placed, batch, batch), out_shardings=outs,
                       donate_argnums=0)
    return jax.jit(lambda state, images: step(state, images), in_shardings=(placed, batch),
                   out_shardings=outs, donate_argnums=0)


def apply_gradients(state: TrainState, tx, grads, loss, batch_stats, metrics: dict,
                    **replace):
    """(state after `tx`'s update of `grads`, `metrics` with loss, lr and the norms): the
    step count advances, `batch_stats` and the fields of `replace` (e.g. `aux`) are taken;
    a non-finite `loss` (or an earlier failure) leaves the state as it was and sets
    `failed`."""
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = jax.tree.map(lambda p, u: p + u.astype(p.dtype), state.params, updates)
    new = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                        opt_state=opt_state, **replace)
    ok = jnp.isfinite(loss) & ~state.failed
    new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, state)
    metrics.update(loss=loss, lr=learning_rate_of(state.opt_state), grad_norm=_norm(grads),
                   update_norm=_norm(updates), param_norm=_norm(params))
    return new.replace(failed=~ok), metrics


def learning_rate_of(opt_state) -> jax.Array:
    """The learning rate inside an `inject_hyperparams` optimizer state (0 if there is none)."""
    hyper = getattr(opt_state, "hyperparams", None)
    if hyper is None or "learning_rate" not in hyper:
        return jnp.zeros([], jnp.float32)
    return jnp.asarray(hyper["learning_rate"], jnp.float32)
