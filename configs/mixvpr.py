"""MixVPR (Ali-bey et al., WACV 2023), its published training (the authors' `main.py`) as far
as vgjax has the parts:

- ResNet-50 cut after layer3 (1024 channels at stride 16), conv1..layer2 frozen, 320 x 320
  images: a 20 x 20 feature map; MixVPR with 4 Feature-Mixer blocks, mlp_ratio 1, 1024
  output channels x 4 rows (4096-dim descriptors), its row projection with a bias as in the
  released code;
- GSV-Cities place batches of 120 places x 4 images, the multi-similarity loss (alpha 1,
  beta 50, base 0) and miner (epsilon 0.1) (`configs/gsv_cities.py`);
- SGD, lr 0.05, momentum 0.9, weight decay 1e-3; MultiStepLR at epochs 5, 10, 15, 25, 45
  (gamma 0.3) after a linear warmup over the first 650 steps; 80 epochs, the best model
  by val R@1;
- the training images resized, then torchvision's RandAugment(num_ops=3, magnitude 9,
  bilinear) (`randaugment`).

Differs: RandAugment runs on the device, inside the train step, on the float image (PIL's
ops without their uint8 rounding after each one; draws from jax.random: see
`vgjax/data/augment/randaugment.py`). Half precision is not used; validation is on pitts30k
val only (not msls val). ImageNet weights: convert torchvision's ResNet-50 and pass it with
`--config.model.pretrained`.

    python -m vgjax.train --config configs/mixvpr.py --workdir runs/mixvpr
    python -m vgjax.train --config configs/mixvpr.py:smoke --workdir runs/mixvpr-smoke
"""
from configs import gsv_cities
from vgjax.config import parse_arg

RANDAUGMENT_9 = ["randaugment(num_ops=3, interpolation='bilinear')"]  # magnitude 9 of 31


def get_config(arg=None):
    arg = parse_arg(arg, smoke=False)
    c = gsv_cities.get_config()
    c.model.backbone = "resnet50conv4"
    c.model.trainable_from = "layer3"
    c.model.aggregation = "mixvpr"
    c.data.resize = (320, 320)
    c.model.mixvpr.in_h, c.model.mixvpr.in_w = 20, 20
    c.model.mixvpr.out_channels = 1024
    c.model.mixvpr.mix_depth = 4
    c.model.mixvpr.mlp_ratio = 1.0
    c.model.mixvpr.out_rows = 4
    c.model.mixvpr.row_bias = True            # the released code's row projection
    c.train.places_per_batch = 120
    c.train.images_per_place = 4
    c.train.optimizer = "sgd"
    c.train.optimizer_args = {"momentum": 0.9}
    c.train.lr = 0.05
    c.train.weight_decay = 1e-3
    c.train.scheduler = "multistep"
    c.train.scheduler_args = {"milestones": [5, 10, 15, 25, 45], "gamma": 0.3,
                              "warmup_steps": 650}
    c.train.epochs = 80
    c.train.patience = 80
    c.train.query_augment = list(RANDAUGMENT_9)
    return smoke(c) if arg.smoke else c


def smoke(c):
    """The tiny city: 48 x 64 images give a 3 x 4 map; a small mixer; 2-step warmup."""
    gsv_cities.smoke(c)
    c.model.mixvpr.in_h, c.model.mixvpr.in_w = 3, 4
    c.model.mixvpr.out_channels = 32
    c.model.mixvpr.out_rows = 2
    c.train.scheduler_args = {"milestones": [1], "gamma": 0.3, "warmup_steps": 2}
    return c
