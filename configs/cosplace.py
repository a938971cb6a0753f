"""CosPlace (Berton et al., CVPR 2022): its network and its own training (the authors'
`train.py` / `parser.py` defaults), `train.batching=cosplace`.

The whole ResNet-50 (2048 channels), conv1..layer2 frozen (layer3 and layer4 train), GeM
then a Linear to 512 and L2 (`fc_output_dim`'s default), 512 x 512 training images. The
training images are classes of 10 m UTM cells x 30-degree headings in 8 groups (N = 5,
L = 2, classes of at least 10 images), one CosFace classifier per group (s 30, m 0.4, Adam
at 0.01), an epoch of 10,000 steps of 32 classes per group in turn, 50 epochs; the network
with Adam at 1e-5, no scheduler; ColorJitter(brightness 0.7, contrast 0.7, saturation 0.7,
hue 0.5) then RandomResizedCrop(scale 0.5..1) on the device. The best model by val R@1,
no early stopping. Rule and differences: docs/TRAINING.md#cosplace-training.

The training set is an @UTM folder whose train split holds the training images with their
heading in the file names (SF-XL's, as the authors train), `<root>/sf_xl/images/train/`.
ImageNet weights: convert torchvision's ResNet-50 and pass `--config.model.pretrained`.

    python -m vgjax.train --config configs/cosplace.py --workdir runs/cosplace

`:smoke` shrinks it to the tiny synthetic city (its pitts30k train split, 20 m cells x
90-degree sectors, 2 groups of classes of at least 2 images, 4 classes a step):

    python -m vgjax.synthetic --out data/synthetic-tiny --preset tiny
    python -m vgjax.train --config configs/cosplace.py:smoke --workdir runs/cosplace-smoke
"""
from configs import default
from vgjax.config import parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, smoke=False)
    c = default.get_config()
    c.data.root = "data"
    c.data.train_dataset = "sf_xl"
    c.data.test_datasets = ["sf_xl"]
    c.evals.val.datasets = ["sf_xl"]
    c.data.resize = (512, 512)
    c.model.backbone = "resnet50conv5"
    c.model.trainable_from = "layer3"
    c.model.aggregation = "cosplace"
    c.model.cosplace.out_dim = 512
    c.model.netvlad_init.enabled = False
    c.train.batching = "cosplace"
    c.train.optimizer = "adam"
    c.train.lr = 1e-5
    c.train.weight_decay = 0.0
    c.train.scheduler = "none"
    c.train.epochs = 50
    c.train.patience = 50
    c.train.best_metric = "val/R@1"
    c.train.query_augment = [
        "colour_jitter(brightness=0.7, contrast=0.7, saturation=0.7, hue=0.5)",
        "resized_crop(0.5)"]
    return smoke(c) if arg.smoke else c


def smoke(c):
    default.smoke(c)
    c.data.train_dataset = "pitts30k"
    c.data.test_datasets = ["pitts30k"]
    c.evals.val.datasets = ["pitts30k"]
    c.model.cosplace.out_dim = 32
    c.train.lr = 1e-4
    c.train.epochs = 2
    c.train.patience = 2
    c.train.cosplace.cell_m = 20.0
    c.train.cosplace.heading_deg = 90.0
    c.train.cosplace.n = 2
    c.train.cosplace.l = 1
    c.train.cosplace.groups = 2
    c.train.cosplace.min_images_per_class = 2
    c.train.cosplace.classes_per_batch = 4
    c.train.cosplace.steps_per_epoch = 4
    return c
