"""CosPlace (Berton et al., CVPR 2022): its network and its training settings (the authors'
`train.py` / `parser.py`), trained with place batches.

Follows the publication: the whole ResNet-50 (2048 channels), conv1..layer2 frozen
(layer3 and layer4 train), GeM then a Linear to 512 and L2 (the training script's
`fc_output_dim` default), 512 x 512 training images, Adam at lr 1e-5 (the backbone's rate),
no scheduler, and its augmentation: ColorJitter(brightness 0.7, contrast 0.7, saturation
0.7, hue 0.5) then RandomResizedCrop(scale 0.5..1).

Differs: CosPlace's own training (CosFace / LMCL classifiers over groups of UTM cells of
SF-XL, each classifier with Adam at 0.01, 10,000 iterations of 32 images an epoch) is not
in vgjax. This config trains the CosPlace head as the other recipes train theirs, with the
GSV-Cities protocol (`configs/gsv_cities.py`): place batches of 100 places x 4 images from
GSV-Cities, the multi-similarity loss and miner, 30 epochs, the best model by val R@1.
ImageNet weights: convert torchvision's ResNet-50 and pass `--config.model.pretrained`.

    python -m vgjax.train --config configs/cosplace.py --workdir runs/cosplace
"""
from configs import gsv_cities
from vgjax.config import parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, smoke=False)
    c = gsv_cities.get_config()
    c.model.backbone = "resnet50conv5"
    c.model.trainable_from = "layer3"
    c.model.aggregation = "cosplace"
    c.model.cosplace.out_dim = 512
    c.data.resize = (512, 512)
    c.train.places_per_batch = 100
    c.train.images_per_place = 4
    c.train.optimizer = "adam"
    c.train.lr = 1e-5
    c.train.weight_decay = 0.0
    c.train.scheduler = "none"
    c.train.epochs = 30
    c.train.patience = 30
    c.train.query_augment = [
        "colour_jitter(brightness=0.7, contrast=0.7, saturation=0.7, hue=0.5)",
        "resized_crop(0.5)"]
    return smoke(c) if arg.smoke else c


def smoke(c):
    gsv_cities.smoke(c)
    c.model.cosplace.out_dim = 32
    return c
