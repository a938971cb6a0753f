"""CosPlace's training (Berton et al., CVPR 2022) as `train.batching=cosplace`: classes of
UTM cells x headings, groups of classes far enough apart, one CosFace (LMCL) classifier per
group, the groups trained in turn, an epoch each.

Classes and groups follow the authors' rule. An image at UTM (east, north) with heading h
(degrees, the file name's heading field) is in the class

    (floor(east / M), floor(north / M), floor(h / alpha))        M = train.cosplace.cell_m,
                                                                  alpha = .heading_deg

and that class is in the group

    (floor(east / M) mod N, floor(north / M) mod N, floor(h / alpha) mod L)

so two classes of one group are at least N cells or L heading sectors apart. Classes with
fewer than `.min_images_per_class` images are left out. vgjax sorts the groups by their
(x, y, heading) index and the classes of a group by their (column, row, sector); the
training takes the first `.groups` groups and epoch e trains group e mod `.groups` (the
authors take the groups in the order their classes first appear in the image list).

A step draws `.classes_per_batch` classes of the group in the epoch's shuffled order (a
new shuffle whenever the classes run out, a remainder shorter than a batch skipped, as a
`drop_last` loader does) and one random image of each; the network describes them in
training mode and the group's classifier scores the descriptors:

    logits = s * (cos(d, w_c) - m * [c = label])        s = .scale, m = .margin

with cos the cosine of the descriptor and each class's weight row (norms clamped at
1e-8); the loss is the cross-entropy of those logits. The network trains with
`train.optimizer` at `train.lr`; each group's classifier has its own Adam at
`.classifier_lr` (its own step count and moments), so the classifiers of the groups not
being trained stay exactly as they are, as the authors' per-group optimizers leave them.
Everything an epoch draws is a function of (seed, epoch), and the classifiers with their
Adam states are part of the checkpoint: a resumed run redoes exactly what the
uninterrupted one would.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vgjax.config import require
from vgjax.config.settings import Settings

EPOCH_KEY = 5 << 20  # this training's draws, apart from the other loops' streams
COS_EPS = 1e-8       # the norms' clamp in the cosine


@dataclasses.dataclass(frozen=True)
class CosPlaceSettings(Settings):
    """`train.cosplace`: the authors' defaults (parser.py) except `steps_per_epoch`."""
    cell_m: float = 10.0            # M
    heading_deg: float = 30.0       # alpha
    n: int = 5                      # N
    l: int = 2                      # L
    groups: int = 8
    min_images_per_class: int = 10
    classes_per_batch: int = 32
    steps_per_epoch: int = 10000
    scale: float = 30.0             # s
    margin: float = 0.4             # m
    classifier_lr: float = 0.01


def check_cosplace(raw) -> None:
    """Refuses a bad `train.cosplace` section, naming the option."""
    s = CosPlaceSettings.from_section(raw)
    for name in ("cell_m", "heading_deg", "scale", "classifier_lr"):
        value = getattr(s, name)
        require(value > 0 and math.isfinite(value), f"train.cosplace.{name}",
                f"must be a positive number, got {value}")
    require(s.heading_deg <= 360, "train.cosplace.heading_deg",
            f"must be at most 360, got {s.heading_deg}")
    require(s.margin >= 0 and math.isfinite(s.margin), "train.cosplace.margin",
            f"must be >= 0, got {s.margin}")
    for name in ("n", "l", "groups", "min_images_per_class", "steps_per_epoch"):
        value = getattr(s, name)
        require(isinstance(value, int) and value >= 1, f"train.cosplace.{name}",
                f"must be an integer >= 1, got {value!r}")
    require(s.classes_per_batch >= 2, "train.cosplace.classes_per_batch",
            f"must be >= 2, got {s.classes_per_batch}")


@dataclasses.dataclass(frozen=True)
class ClassGroups:
    """The classes of each trained group: `classes[g][c]` the image indices of class c of
    group g (ascending); `keys[g]` that group's (x, y, heading) index and `class_keys[g][c]`
    the class's (column, row, sector)."""
    classes: list[list[np.ndarray]]
    keys: list[tuple[int, int, int]]
    class_keys: list[list[tuple[int, int, int]]]
    dropped_classes: int   # classes with too few images
    available_groups: int  # groups before `groups` cut them

    @property
    def sizes(self) -> list[int]:
        return [len(c) for c in self.classes]

    def summary(self) -> str:
        return (f"{len(self.classes)} of {self.available_groups} groups, "
                f"{'/'.join(map(str, self.sizes))} classes"
                + (f" ({self.dropped_classes} classes with too few images left out)"
                   if self.dropped_classes else ""))


def class_groups(utm: np.ndarray, headings: np.ndarray, s: CosPlaceSettings,
                 where: str = "the training images") -> ClassGroups:
    """Classes and groups of images at `utm` (N, 2) with `headings` (N,) degrees (see the
    module docstring). Refuses (ValueError, one line) images without a heading and fewer
    groups than `s.groups`."""
    utm, headings = np.asarray(utm, np.float64), np.asarray(headings, np.float64)
    missing = np.flatnonzero(~np.isfinite(headings))
    if len(missing):
        raise ValueError(f"{where}: CosPlace's classes need each image's heading, which "
                         f"{len(missing)} image(s) lack (image {missing[0]})")
    cells = np.floor(utm / s.cell_m).astype(np.int64)
    sectors = np.floor(headings / s.heading_deg).astype(np.int64)
    keys = np.stack([cells[:, 0], cells[:, 1], sectors], axis=1)
    uniq, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    members = [np.sort(order[starts[i]:starts[i + 1]]) for i in range(len(uniq))]
    kept = np.flatnonzero(counts >= s.min_images_per_class)
    by_group: dict[tuple, list[int]] = {}
    for i in kept:  # uniq is sorted, so each group's classes come in (column, row, sector)
        k = uniq[i]
        group = (int(k[0] % s.n), int(k[1] % s.n), int(k[2] % s.l))
        by_group.setdefault(group, []).append(int(i))
    group_keys = sorted(by_group)
    if len(group_keys) < s.groups:
        raise ValueError(
            f"{where}: {len(group_keys)} groups hold classes of at least "
            f"{s.min_images_per_class} images (train.cosplace: cell_m={s.cell_m:g}, "
            f"heading_deg={s.heading_deg:g}, n={s.n}, l={s.l}), fewer than "
            f"train.cosplace.groups={s.groups}")
    group_keys = group_keys[:s.groups]
    small = [g for g in group_keys if len(by_group[g]) < s.classes_per_batch]
    if small:
        raise ValueError(
            f"{where}: group {small[0]} has {len(by_group[small[0]])} classes, fewer than "
            f"train.cosplace.classes_per_batch={s.classes_per_batch}")
    return ClassGroups(
        classes=[[members[i] for i in by_group[g]] for g in group_keys],
        keys=group_keys,
        class_keys=[[tuple(int(v) for v in uniq[i]) for i in by_group[g]]
                    for g in group_keys],
        dropped_classes=int(len(uniq) - len(kept)),
        available_groups=len(by_group))


def group_of_epoch(epoch: int, groups: int) -> int:
    return epoch % groups


def epoch_batches(seed: int, epoch: int, classes: list[np.ndarray], classes_per_batch: int,
                  steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(image indices (steps, B), labels (steps, B)) of an epoch of one group, a function
    of (seed, epoch) and the classes only: the classes in shuffled passes (a remainder of
    fewer than B classes skipped), one image of each class drawn at random."""
    rng = np.random.default_rng([seed, epoch, EPOCH_KEY])
    b, n = classes_per_batch, len(classes)
    labels = np.empty((steps, b), np.int32)
    filled, order = 0, np.empty(0, np.int64)
    while filled < steps:
        order = rng.permutation(n)
        take = min(n // b, steps - filled)
        labels[filled:filled + take] = order[:take * b].reshape(take, b)
        filled += take
    images = np.empty((steps, b), np.int64)
    for i in range(steps):
        for j, c in enumerate(labels[i]):
            members = classes[c]
            images[i, j] = members[rng.integers(len(members))]
    return images, labels


def cosface_logits(descriptors, weights, labels, scale: float, margin: float):
    """s * (cos(d_i, w_c) - m * [c = labels_i]): (B, C) from descriptors (B, D), class
    weights (C, D) and labels (B,)."""
    ip = descriptors @ weights.T
    norms = (jnp.linalg.norm(descriptors, axis=1)[:, None]
             * jnp.linalg.norm(weights, axis=1)[None, :])
    cosine = ip / jnp.maximum(norms, COS_EPS)
    one_hot = jax.nn.one_hot(labels, weights.shape[0], dtype=cosine.dtype)
    return scale * (cosine - one_hot * margin)


def cosface_loss(descriptors, weights, labels, valid, scale: float, margin: float):
    """Mean cross-entropy of the CosFace logits; classes where `valid` (C,) is False (the
    padding of a smaller group) take no probability."""
    logits = cosface_logits(descriptors, weights, labels, scale, margin)
    logits = jnp.where(valid[None, :], logits, -jnp.inf)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def init_classifiers(key, sizes: list[int], dim: int) -> jax.Array:
    """(G, max classes, D) float32: group g's first sizes[g] rows Xavier-uniform for a
    (sizes[g], D) weight (the bound sqrt(6 / (sizes[g] + D)), as torch's xavier_uniform_),
    the padding rows 0."""
    c_max = max(sizes)
    rows = []
    for g, c in enumerate(sizes):
        bound = math.sqrt(6.0 / (c + dim))
        w = jax.random.uniform(jax.random.fold_in(key, g), (c, dim), jnp.float32,
                               -bound, bound)
        rows.append(jnp.pad(w, ((0, c_max - c), (0, 0))))
    return jnp.stack(rows)


def classifier_optimizer(lr: float) -> optax.GradientTransformation:
    """Adam as torch.optim.Adam(lr) runs it (betas 0.9 / 0.999, eps 1e-8)."""
    return optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8)


def init_aux(key, sizes: list[int], dim: int, lr: float) -> dict:
    """The classifiers and their per-group Adam states (leading axis: the group)."""
    weights = init_classifiers(key, sizes, dim)
    opt = jax.vmap(classifier_optimizer(lr).init)(weights)
    return {"weights": weights, "opt": opt}
