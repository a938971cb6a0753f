"""The geo-localization network: backbone (ResNet, VGG-16, AlexNet, EfficientNet-Lite, DINOv2
ViT) -> aggregation [-> fc + L2].

Everything is derived from the `model` section of the config, once, in `build_network`.
Variables are `{'params', 'batch_stats'}` with top-level keys `backbone`, `aggregation`
and (with `fc_output_dim > 0`) `fc`.

    net = build_network(cfg.model)
    variables = init_variables(cfg.model, jax.random.key(0))
    desc = net.apply(variables, images)                               # eval, (N, D) float32
    desc, new_state = net.apply(variables, images, train=True, mutable=['batch_stats'])

`images` are pixels: uint8 (N, H, W, 3), or float in [0, 1] (what torchvision's ToTensor
gives, and what evaluation's float resize produces). The network normalises them itself with
the mean and std the backbone's weights expect (`input_mean` / `input_std` of its spec:
torchvision's ImageNet statistics for ResNets, VGG-16 and AlexNet, 0.5 / 0.5 for
EfficientNet-Lite), so callers never do.

A backbone with a global token (`global_token` of its spec: DINOv2's CLS token) returns
(local features, token); heads that take one (`takes_token`: `cls`, `salad`) get it, the
others see the local features only.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vgjax.models.aggregation import (AGGREGATIONS, L2_MODES, TorchLinear, aggregation_dim,
                                      l2_normalize, matmul_precision, read_options)
from vgjax.models.backbones import parse_backbone
from vgjax.models import resnet

AUTO = "auto"  # model.trainable_from: the reference's choice for the backbone
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
IMAGENET_MEAN = np.array(resnet.IMAGENET_MEAN, np.float32)
IMAGENET_STD = np.array(resnet.IMAGENET_STD, np.float32)


def normalize(images, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """uint8 (..., 3) or float in [0, 1] -> float32 `(x - mean) / std` (ImageNet's by
    default); jnp or np."""
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    return (images - mean) / std


def input_normalization(backbone: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32 (3,) that the backbone's weights expect of [0, 1] RGB."""
    spec = parse_backbone(backbone)
    return np.array(spec.input_mean, np.float32), np.array(spec.input_std, np.float32)


class VGNetwork(nn.Module):
    """Pixels (N, H, W, 3) (uint8, or float in [0, 1]), NHWC -> descriptors (N, D) float32."""
    backbone_arch: str = "resnet18conv4"
    resnet_width: int = 64  # ResNets, VGG-16, AlexNet; EfficientNet-Lite's channels are fixed
    aggregation_kind: str = "netvlad"
    netvlad_clusters: int = 64
    gem_p: float = 3.0
    gem_eps: float = 1e-6
    l2: str = "before_pool"
    fc_output_dim: int = 0
    num_frozen: int = 3  # leading stages of the backbone's `stages` without gradient
    freeze_frozen_bn_stats: bool = False
    dtype: str = "float32"
    matmul_precision: str = "highest"  # NetVLAD's float32 matmuls (TF32 on GPUs otherwise)
    head_options: Any = None  # the head's options (its Settings object, hashable) or None
    remat: bool = False  # ViTs: recompute each block's activations in the backward pass

    def setup(self):
        extra = {"remat": True} if self.remat else {}
        self.backbone = parse_backbone(self.backbone_arch).module(
            self.resnet_width, self.num_frozen, self.freeze_frozen_bn_stats, DTYPES[self.dtype],
            **extra)
        self.aggregation = AGGREGATIONS.get(self.aggregation_kind).module(self)
        if self.fc_output_dim > 0:
            self.fc = TorchLinear(self.fc_output_dim)

    def encode(self, images, train: bool = False):
        """(local features (N, h, w, C), global token (N, C) or None), compute dtype."""
        out = self.backbone(normalize(images, *input_normalization(self.backbone_arch)),
                            train=train)
        return out if isinstance(out, tuple) else (out, None)

    def features(self, images, train: bool = False):
        """Backbone local features (N, h, w, C) in the compute dtype."""
        return self.encode(images, train=train)[0]

    def aggregate(self, features, token=None):
        """Local features (N, h, w, C) [and the backbone's global token (N, C)] ->
        descriptors (N, D) float32."""
        if AGGREGATIONS.get(self.aggregation_kind).takes_token:
            desc = self.aggregation(features, token=token)
        else:
            desc = self.aggregation(features)
        if self.fc_output_dim > 0:
            desc = l2_normalize(self.fc(desc), axis=-1)
        return desc.astype(jnp.float32)

    def __call__(self, images, train: bool = False, return_features: bool = False):
        features, token = self.encode(images, train=train)
        desc = self.aggregate(features, token)
        return (desc, features) if return_features else desc


# Architecture fields of the `model` config section and their defaults (configs/default.py),
# used for configs that predate a field (e.g. model.json files written before it existed).
ARCH_DEFAULTS = {"backbone": "resnet18conv4", "resnet_width": 64, "aggregation": "netvlad",
                 "netvlad_clusters": 64, "gem_p": 3.0, "gem_eps": 1e-6, "l2": "before_pool",
                 "fc_output_dim": 0, "trainable_from": "layer3",
                 "freeze_frozen_bn_stats": False, "dtype": "float32",
                 "matmul_precision": "highest", "remat": False}


def _get(cfg, name, default=None):
    default = ARCH_DEFAULTS.get(name) if default is None else default
    return cfg.get(name, default) if hasattr(cfg, "get") else getattr(cfg, name, default)


def validate_model_config(model_cfg) -> None:
    """Raises ValueError naming the `model.*` option that is wrong."""
    spec = parse_backbone(_get(model_cfg, "backbone"))
    agg = AGGREGATIONS.get(_get(model_cfg, "aggregation"))
    l2 = _get(model_cfg, "l2")
    if agg.uses_l2 and l2 not in L2_MODES:
        raise ValueError(f"model.l2: unknown value {l2!r} (accepted: {', '.join(L2_MODES)})")
    if agg.needs_token and not spec.global_token:
        raise ValueError(f"model.aggregation={_get(model_cfg, 'aggregation')}: {spec.name} has "
                         "no global token (the DINOv2 backbones dinov2_* have their CLS token)")
    if bool(_get(model_cfg, "remat")) and not spec.supports_remat:
        raise ValueError(f"model.remat: applies to the ViT backbones (dinov2_*), not to "
                         f"{spec.name}")
    if agg.check_settings is not None:
        agg.check_settings(lambda name: _get(model_cfg, name))
    if agg.uses_clusters and int(_get(model_cfg, "netvlad_clusters")) < 1:
        raise ValueError("model.netvlad_clusters: must be >= 1")
    if int(_get(model_cfg, "fc_output_dim") or 0) < 0:
        raise ValueError("model.fc_output_dim: must be >= 0 (0 = no fc layer)")
    if int(_get(model_cfg, "resnet_width")) < 1:
        raise ValueError("model.resnet_width: must be >= 1")
    tf = _get(model_cfg, "trainable_from")
    accepted = (AUTO, *spec.stages, "aggregation")
    if tf == "layer4" and spec.name.endswith("conv4"):
        raise ValueError(f"model.trainable_from: 'layer4' but {spec.name} has no layer4 "
                         "(use 'aggregation' to freeze the whole backbone)")
    if tf not in accepted:
        raise ValueError(f"model.trainable_from: {tf!r} is not a stage of {spec.name} "
                         f"(accepted: {', '.join(accepted)}; auto = the reference's "
                         f"{spec.reference_trainable_from})")
    matmul_precision(_get(model_cfg, "matmul_precision"))  # raises naming the option
    dtype = _get(model_cfg, "dtype")
    if dtype not in DTYPES:
        raise ValueError(f"model.dtype: unknown dtype {dtype!r} (accepted: {', '.join(DTYPES)})")


def build_network(model_cfg) -> VGNetwork:
    """The network described by the `model` config section (validated)."""
    validate_model_config(model_cfg)
    return VGNetwork(
        backbone_arch=model_cfg.backbone,
        resnet_width=int(_get(model_cfg, "resnet_width")),
        aggregation_kind=model_cfg.aggregation,
        netvlad_clusters=int(_get(model_cfg, "netvlad_clusters")),
        gem_p=float(_get(model_cfg, "gem_p")),
        gem_eps=float(_get(model_cfg, "gem_eps")),
        l2=_get(model_cfg, "l2"),
        fc_output_dim=int(_get(model_cfg, "fc_output_dim") or 0),
        num_frozen=num_frozen(model_cfg),
        freeze_frozen_bn_stats=bool(_get(model_cfg, "freeze_frozen_bn_stats")),
        dtype=_get(model_cfg, "dtype"),
        matmul_precision=_get(model_cfg, "matmul_precision"),
        head_options=head_options(model_cfg),
        remat=bool(_get(model_cfg, "remat")),
    )


def head_options(model_cfg):
    """The options of the configured head, from `model.<aggregation>` (its defaults where
    the section is missing, e.g. a model.json written before it existed); None for heads
    without options."""
    name = _get(model_cfg, "aggregation")
    cls = AGGREGATIONS.get(name).options
    return None if cls is None else read_options(cls, _get(model_cfg, name))


def input_size_for(backbone: str, h: int, w: int) -> tuple[int, int]:
    """The smallest (H, W) image whose local features are h x w for `backbone`."""
    spec = parse_backbone(backbone)

    def side(target: int, axis: int) -> int:
        n = 1
        while spec.feature_size(n, n)[axis] < target:
            n += 1
        if spec.feature_size(n, n)[axis] != target:
            raise ValueError(f"{backbone}: no image side gives {target} local features")
        return n

    return side(h, 0), side(w, 1)


def trainable_from(model_cfg) -> str:
    """`model.trainable_from`, with `auto` resolved to what the reference trains for the
    backbone (ResNets: layer3; vgg16: conv5; alexnet: conv3; EfficientNet-Lite: its last
    two stages, e.g. stage4 of the stride-16 cut; DINOv2 ViTs: their last 4 blocks)."""
    tf = _get(model_cfg, "trainable_from")
    return parse_backbone(_get(model_cfg, "backbone")).reference_trainable_from \
        if tf == AUTO else tf


def num_frozen(model_cfg) -> int:
    """How many leading backbone stages are frozen (all of them: only the head trains)."""
    spec = parse_backbone(_get(model_cfg, "backbone"))
    return (*spec.stages, "aggregation").index(trainable_from(model_cfg))


def feature_dim(model_cfg) -> int:
    """Channels of the backbone's local features (model.resnet_width scales ResNets, VGG-16
    and AlexNet; EfficientNet-Lite ignores it)."""
    return parse_backbone(model_cfg.backbone).channels(int(_get(model_cfg, "resnet_width")))


def descriptor_dim(model_cfg) -> int:
    """Size of the final descriptor (e.g. 16384 for resnet18conv4 + NetVLAD-64)."""
    fc = int(_get(model_cfg, "fc_output_dim") or 0)
    if fc > 0:
        return fc
    return aggregation_dim(model_cfg.aggregation, feature_dim(model_cfg),
                           int(_get(model_cfg, "netvlad_clusters")), head_options(model_cfg))


def init_key(rng):
    """An 'rbg' key from a seed or any key: initialisers then draw with XLA's RngBitGenerator,
    which compiles several times faster than threefry on CPU (same key -> same values)."""
    if isinstance(rng, (int, np.integer)):
        rng = jax.random.key(int(rng))
    elif not jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        rng = jax.random.wrap_key_data(rng)  # legacy uint32 keys
    data = jax.random.key_data(rng).reshape(-1).astype(jnp.uint32)
    rbg_words = 4
    data = jnp.resize(data, (rbg_words,)) ^ jnp.arange(rbg_words, dtype=jnp.uint32)
    return jax.random.wrap_key_data(data, impl="rbg")


def init_variables(model_cfg, rng, image_size=(64, 64)) -> dict:
    """Fresh `{'params', 'batch_stats'}` from a key or an int seed.

    Most heads' parameters do not depend on the input size, so the trace runs on at most
    64x64 pixels of `image_size` (cheaper to compile and run). A head built for one feature
    map size (MixVPR) is traced on the smallest image that gives it, whatever `image_size`.
    """
    net = build_network(model_cfg)
    fixed = AGGREGATIONS.get(net.aggregation_kind).feature_size
    if fixed is not None:
        size = input_size_for(net.backbone_arch, *fixed(net.head_options))
    else:
        size = tuple(min(int(s), 64) for s in image_size)
    x = jnp.zeros((1, *size, 3), jnp.uint8)
    variables = jax.jit(lambda k, x: net.init(k, x, train=False))(init_key(rng), x)
    # backbones without BatchNorm (vgg16, alexnet) have no statistics: an empty collection
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def abstract_variables(model_cfg) -> dict:
    """Shapes/dtypes of the variables (jax.ShapeDtypeStruct leaves), without computing."""
    return jax.eval_shape(lambda k: init_variables(model_cfg, k), jax.random.key(0))


def trainable_mask(params, model_cfg) -> Any:
    """Pytree of bools like `params`: False for the frozen backbone stages."""
    validate_model_config(model_cfg)
    spec = parse_backbone(_get(model_cfg, "backbone"))
    frozen = num_frozen(model_cfg)

    def fill(tree, value: bool):
        return jax.tree_util.tree_map(lambda _: value, tree)

    mask = {}
    for top, sub in params.items():
        if top == "backbone":
            mask[top] = {k: fill(v, spec.stage_of(k) >= frozen) for k, v in sub.items()}
        else:
            mask[top] = fill(sub, True)
    for path in AGGREGATIONS.get(_get(model_cfg, "aggregation")).frozen:  # e.g. crn/acc_w
        *parents, last = path.split("/")
        node = mask.get("aggregation", {})
        for key in parents:
            node = node.get(key, {})
        if last in node:
            node[last] = fill(node[last], False)
    return mask


def _count(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))


def network_info(model_cfg, image_size=(480, 640)) -> dict:
    """descriptor_dim, trainable_params, frozen_params and gflops_per_image.

    FLOPs come from XLA's cost analysis of the lowered eval forward at batch 1 (one
    multiply-add = 2 FLOPs; padded taps are not counted).
    """
    net = build_network(model_cfg)
    variables = abstract_variables(model_cfg)
    mask = trainable_mask(variables["params"], model_cfg)
    leaves = jax.tree_util.tree_leaves(variables["params"])
    flags = jax.tree_util.tree_leaves(mask)
    trainable = int(sum(np.prod(p.shape) for p, t in zip(leaves, flags) if t))
    x = jax.ShapeDtypeStruct((1, *image_size, 3), jnp.uint8)
    lowered = jax.jit(lambda v, x: net.apply(v, x)).lower(variables, x)
    cost = lowered.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        cost = lowered.compile().cost_analysis()
        if isinstance(cost, (list, tuple)):
            cost = cost[0]
    return {"descriptor_dim": descriptor_dim(model_cfg), "trainable_params": trainable,
            "frozen_params": _count(variables["params"]) - trainable,
            "gflops_per_image": float(cost["flops"]) / 1e9}


def make_describe_fn(net: VGNetwork):
    """Jitted `(variables, images (N, H, W, 3)) -> float32 descriptors (N, D)`, eval mode.

    Images travel to the device as uint8 (or float in [0, 1]) and are normalised there.
    """
    @jax.jit
    def describe(variables, images):
        return net.apply({"params": variables["params"], "batch_stats": variables["batch_stats"]},
                         images, train=False)
    return describe


def make_features_fn(net: VGNetwork):
    """Jitted `(variables, images) -> local features (N, h, w, C) float32`, eval mode."""
    @jax.jit
    def features(variables, images):
        out = net.apply({"params": variables["params"], "batch_stats": variables["batch_stats"]},
                        images, train=False, method=VGNetwork.features)
        return out.astype(jnp.float32)
    return features
