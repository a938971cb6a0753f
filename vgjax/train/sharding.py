"""Where the training state lives on the device mesh (`train.param_sharding`):

- `replicated`: every device holds the whole state (parameters, BatchNorm statistics,
  optimizer moments); XLA all-reduces the gradients. The default, and what a model that
  fits one device wants.
- `fsdp`: each array of the state with at least `FSDP_MIN_SIZE` elements is split over the
  mesh's `data` axis along its largest dimension that the number of devices divides (FSDP /
  ZeRO-3 style); smaller arrays and those with no such dimension stay replicated. XLA
  gathers a layer's parameters where the step uses them and reduce-scatters their
  gradients, so a device holds about 1 / n of the parameters and optimizer moments: for a
  model (a ViT-L/g with Adam) whose state outgrows one device. The step computes the same
  function either way (the tests compare the two).
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from vgjax.registry import Registry

PARAM_SHARDING = Registry("train.param_sharding", fixed=("mesh", "shape"))
FSDP_MIN_SIZE = 1 << 14  # elements: smaller arrays are not worth splitting


@PARAM_SHARDING.register("replicated")
def replicated(mesh, shape) -> NamedSharding:
    return NamedSharding(mesh, P())


@PARAM_SHARDING.register("fsdp")
def fsdp(mesh, shape) -> NamedSharding:
    n = mesh.shape["data"]
    if n == 1 or int(np.prod(shape, dtype=np.int64)) < FSDP_MIN_SIZE:
        return NamedSharding(mesh, P())
    for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[axis] % n == 0:
            spec = [None] * len(shape)
            spec[axis] = "data"
            return NamedSharding(mesh, P(*spec))
    return NamedSharding(mesh, P())


def state_shardings(mesh, tree, mode: str = "replicated"):
    """A sharding per array of `tree` (arrays or ShapeDtypeStructs) under `mode`."""
    rule = PARAM_SHARDING.get(mode)
    return jax.tree.map(lambda x: rule(mesh, tuple(x.shape)), tree)


def shardings_of(tree):
    """The shardings a placed pytree of arrays has (what a jitted step keeps it in)."""
    return jax.tree.map(lambda x: x.sharding, tree)
