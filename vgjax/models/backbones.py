"""Backbone names -> specs: the ResNets cut at conv4 / conv5 (`vgjax.models.resnet`) and
torchvision's VGG-16 and AlexNet feature stacks (`vgjax.models.vgg`).

Every spec answers the same questions, so nothing else branches on the family:
`channels(width)` (of the local features), `stages` (what `model.trainable_from` can name,
in order), `reference_trainable_from` (what the reference trains: `model.trainable_from=auto`),
`stage_of(parameter group)`, `feature_size(h, w)` and `module(width, num_frozen,
freeze_bn_stats, dtype)` (the flax module).
"""
from __future__ import annotations

from vgjax.models.resnet import RESNET_NAMES, BackboneSpec, parse_resnet
from vgjax.models.vgg import PLAIN, PlainSpec

BACKBONES = RESNET_NAMES + tuple(PLAIN)


def parse_backbone(name: str) -> BackboneSpec | PlainSpec:
    """A backbone name -> its spec; the error lists the accepted names."""
    spec = parse_resnet(name) or PLAIN.get(str(name))
    if spec is None:
        raise ValueError(f"model.backbone: unknown backbone {name!r} "
                         f"(accepted: {', '.join(BACKBONES)})")
    return spec
