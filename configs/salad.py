"""SALAD (Izquierdo & Civera, CVPR 2024), its published training (the authors' `main.py`) as
far as vgjax has the parts:

- SALAD with 64 clusters of 128 dimensions, a 256-dim global token and 512-wide MLPs, 3
  Sinkhorn iterations (8448-dim descriptors); 224 x 224 training images;
- GSV-Cities place batches of 60 places x 4 images, the multi-similarity loss (alpha 1,
  beta 50, base 0) and miner (epsilon 0.1) (`configs/gsv_cities.py`);
- AdamW, lr 6e-5, weight decay 9.5e-9; LinearLR from 1 to 0.2 of the rate; 4 epochs, the
  best model by val R@1.

Differs: the published backbone is DINOv2 ViT-B/14 (its last 4 blocks trained, the CLS
token as SALAD's global token); vgjax has no DINOv2, so this recipe uses ResNet-50 cut after
layer3 (1024 channels, a 14 x 14 map at 224 x 224: 196 local features for 64 clusters),
conv1..layer2 frozen, and the global token is GeM of the features (docs/MODELS.md). The
published LinearLR steps every iteration over 4000 iterations (about 4 epochs of GSV-Cities
at 60 places); here it steps per epoch over the 4 epochs. RandAugment(num_ops=3, bilinear)
runs inside the train step, on the float image, as in `configs/mixvpr.py`. ImageNet
weights: convert torchvision's ResNet-50 and pass `--config.model.pretrained`.

    python -m vgjax.train --config configs/salad.py --workdir runs/salad
"""
from configs import gsv_cities
from configs.mixvpr import RANDAUGMENT_9
from vgjax.config import parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, smoke=False)
    c = gsv_cities.get_config()
    c.model.backbone = "resnet50conv4"
    c.model.trainable_from = "layer3"
    c.model.aggregation = "salad"
    c.data.resize = (224, 224)
    c.model.salad.num_clusters = 64
    c.model.salad.cluster_dim = 128
    c.model.salad.token_dim = 256
    c.model.salad.hidden_dim = 512
    c.model.salad.iters = 3
    c.train.places_per_batch = 60
    c.train.images_per_place = 4
    c.train.optimizer = "adamw"
    c.train.lr = 6e-5
    c.train.weight_decay = 9.5e-9
    c.train.scheduler = "linear"
    c.train.scheduler_args = {"start_factor": 1.0, "end_factor": 0.2, "total_epochs": 4}
    c.train.epochs = 4
    c.train.patience = 4
    c.train.query_augment = list(RANDAUGMENT_9)
    return smoke(c) if arg.smoke else c


def smoke(c):
    """The tiny city: 48 x 64 images give 12 local features, so 8 clusters."""
    gsv_cities.smoke(c)
    c.model.salad.num_clusters = 8
    c.model.salad.cluster_dim = 8
    c.model.salad.token_dim = 16
    c.model.salad.hidden_dim = 32
    c.train.scheduler_args = {"start_factor": 1.0, "end_factor": 0.2, "total_epochs": 2}
    return c
