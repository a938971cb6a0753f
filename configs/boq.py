"""Bag-of-Queries (Ali-bey et al., CVPR 2024), its published training (the authors'
`train.py`, `src/model.py`) with its ResNet-50 model as far as vgjax has the parts:

- ResNet-50 cut after layer3 (1024 channels), its last two blocks trained (layer2, layer3);
  320 x 320 training images; BoQ with a 3 x 3 projection to 512 channels, 2 blocks of 64
  learnable queries, 32 output rows (16384-dim descriptors: the released ResNet-50 model);
- GSV-Cities place batches of 128 places x 4 images, the multi-similarity loss (alpha 1,
  beta 50, base 0) and miner (epsilon 0.1) (`configs/gsv_cities.py`);
- AdamW, lr 1e-4, weight decay 1e-4; MultiStepLR at epochs 10 and 20 (gamma 0.1) after a
  linear warmup over the first 10 epochs, per step; 40 epochs, the best model by val R@1.

Differs: the warmup is given in steps here: 10 epochs of GSV-Cities at 128 places a batch
(about 62,000 places: 490 steps an epoch) = 4900 steps. The published RandAugment(num_ops=3,
magnitude 15, bilinear) is torchvision's v2 transform on uint8 tensors; `randaugment` here
follows torchvision's PIL path (the same ops and magnitudes; PIL's grey weights and affine
sampling) on the float image inside the train step. The published evaluation resizes to
384 x 384; here evaluation uses the training size (data.resize). The headline BoQ results
use DINOv2 (not in vgjax). ImageNet weights: convert torchvision's ResNet-50 and pass
`--config.model.pretrained`.

    python -m vgjax.train --config configs/boq.py --workdir runs/boq
"""
from configs import gsv_cities
from vgjax.config import parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, smoke=False)
    c = gsv_cities.get_config()
    c.model.backbone = "resnet50conv4"
    c.model.trainable_from = "layer2"
    c.model.aggregation = "boq"
    c.data.resize = (320, 320)
    c.model.boq.proj_channels = 512
    c.model.boq.proj_kernel = 3
    c.model.boq.num_queries = 64
    c.model.boq.num_layers = 2
    c.model.boq.row_dim = 32
    c.model.boq.num_heads = 0
    c.train.places_per_batch = 128
    c.train.images_per_place = 4
    c.train.optimizer = "adamw"
    c.train.lr = 1e-4
    c.train.weight_decay = 1e-4
    c.train.scheduler = "multistep"
    c.train.scheduler_args = {"milestones": [10, 20], "gamma": 0.1, "warmup_steps": 4900}
    c.train.epochs = 40
    c.train.patience = 40
    c.train.query_augment = ["randaugment(num_ops=3, magnitude=15, interpolation='bilinear')"]
    return smoke(c) if arg.smoke else c


def smoke(c):
    gsv_cities.smoke(c)
    c.model.boq.proj_channels = 32
    c.model.boq.num_queries = 8
    c.model.boq.row_dim = 4
    c.model.boq.num_heads = 2
    c.train.scheduler_args = {"milestones": [1], "gamma": 0.1, "warmup_steps": 4}
    return c
