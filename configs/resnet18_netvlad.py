"""Reference baseline: ResNet-18-conv4 + NetVLAD-64, partial mining, triplet loss, Adam
lr 1e-5 with coupled weight decay 1e-3 (the seed paper's baseline row of Table II); trained
on Pitts30k, tested on Pitts30k, sf-xs, tokyo-xs and tokyo-night.

The reference starts from ImageNet weights: convert them once and pass the model dir,
    python scripts/convert_torch_weights.py --input resnet18-f37072fd.pth --output models/imagenet_r18
    python -m vgjax.train --config configs/resnet18_netvlad.py --workdir runs/x \\
        --config.model.pretrained=models/imagenet_r18
(without it, training starts from random weights and logs a warning)."""
from configs import default
from vgjax.config import parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, smoke=False)
    c = default.get_config()
    c.model.backbone = "resnet18conv4"
    c.model.aggregation = "netvlad"
    c.train.optimizer = "adam"
    c.train.lr = 1e-5
    c.train.weight_decay = 1e-3
    c.data.test_datasets = ["pitts30k", "sf-xs", "tokyo-xs", "tokyo-night"]
    return default.smoke(c) if arg.smoke else c
