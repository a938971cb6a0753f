"""CosPlace's head (Berton et al., CVPR 2022): L2 of every local feature over its channels,
GeM (learnable p, initialised at `model.gem_p`, clamp `model.gem_eps`: 3 and 1e-6 as
CosPlace), Linear(C -> `model.cosplace.out_dim`) with bias, L2. Parameters: `p` (1,) and
`fc/{kernel, bias}` (torch's Linear initialisation).
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from vgjax.config.settings import Settings
from vgjax.models.aggregation import (AGGREGATIONS, Aggregation, TorchLinear, _check_gem,
                                      gem_pool, l2_normalize, read_options, require_options)


@dataclasses.dataclass(frozen=True)
class CosPlaceSettings(Settings):
    """`model.cosplace`: CosPlace's default descriptor size."""
    out_dim: int = 512


class CosPlaceHead(nn.Module):
    out_dim: int = 512
    p_init: float = 3.0
    eps: float = 1e-6

    @nn.compact
    def __call__(self, x):  # (N, h, w, C)
        x = l2_normalize(x.astype(jnp.float32), axis=-1)
        p = self.param("p", nn.initializers.constant(self.p_init), (1,), jnp.float32)
        pooled = gem_pool(x, p, self.eps)
        return l2_normalize(TorchLinear(self.out_dim, name="fc")(pooled), axis=-1)


def check_settings(get) -> None:
    _check_gem(get)
    require_options(read_options(CosPlaceSettings, get("cosplace")), "model.cosplace",
                    [("out_dim", lambda v: v >= 1, ">= 1")])


AGGREGATIONS.register("cosplace")(Aggregation(
    module=lambda s: CosPlaceHead((s.head_options or CosPlaceSettings()).out_dim,
                                  s.gem_p, s.gem_eps),
    dim=lambda c, k, o: o.out_dim, uses_l2=False, check_settings=check_settings,
    options=CosPlaceSettings))
