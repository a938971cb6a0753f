"""Conv-AP (Ali-bey et al., GSV-Cities, Neurocomputing 2022), its published training (the
GSV-Cities repository's `main.py`) as far as vgjax has the parts:

- the whole ResNet-50 (2048 channels at stride 32), conv1..layer2 frozen, 320 x 320 images;
  Conv-AP with a 1x1 convolution to 1024 channels and 2 x 2 adaptive average pooling
  (4096-dim descriptors);
- GSV-Cities place batches of 100 places x 4 images, the multi-similarity loss (alpha 1,
  beta 50, base 0) and miner (epsilon 0.1) (`configs/gsv_cities.py`);
- Adam, lr 2e-4, no weight decay; MultiStepLR at epochs 5, 10, 15, 25 (gamma 0.3) after a
  linear warmup over the first 600 steps; 30 epochs, the best model by val R@1;
- RandAugment(num_ops=3, magnitude 9, bilinear) on the resized training images, as in
  `configs/mixvpr.py`.

Differs: RandAugment runs inside the train step, on the float image, as in
`configs/mixvpr.py`; no half precision; validation on pitts30k val only. ImageNet weights:
convert torchvision's ResNet-50 and pass `--config.model.pretrained`.

    python -m vgjax.train --config configs/convap.py --workdir runs/convap
"""
from configs import gsv_cities
from configs.mixvpr import RANDAUGMENT_9
from vgjax.config import parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, smoke=False)
    c = gsv_cities.get_config()
    c.model.backbone = "resnet50conv5"
    c.model.trainable_from = "layer3"
    c.model.aggregation = "convap"
    c.data.resize = (320, 320)
    c.model.convap.out_channels = 1024
    c.model.convap.s1, c.model.convap.s2 = 2, 2
    c.train.places_per_batch = 100
    c.train.images_per_place = 4
    c.train.optimizer = "adam"
    c.train.lr = 2e-4
    c.train.weight_decay = 0.0
    c.train.scheduler = "multistep"
    c.train.scheduler_args = {"milestones": [5, 10, 15, 25], "gamma": 0.3,
                              "warmup_steps": 600}
    c.train.epochs = 30
    c.train.patience = 30
    c.train.query_augment = list(RANDAUGMENT_9)
    return smoke(c) if arg.smoke else c


def smoke(c):
    gsv_cities.smoke(c)
    c.model.convap.out_channels = 32
    c.train.scheduler_args = {"milestones": [1], "gamma": 0.3, "warmup_steps": 2}
    return c
