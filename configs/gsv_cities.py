"""The GSV-Cities training protocol the modern-method recipes share (`configs/mixvpr.py`,
`convap.py`, `cosplace.py`, `salad.py`, `boq.py`): place batches of P places x K = 4 images
from a GSV-Cities folder (`data/gsv-cities`: Dataframes/ + Images/), the multi-similarity
loss (alpha 1, beta 50, base 0) with the multi-similarity miner (epsilon 0.1), a ResNet-50
(ImageNet weights: pass the converted ones with `--config.model.pretrained`, see
docs/MODELS.md), validation on pitts30k's val split (a GSV-Cities folder has none), the
best model picked by val R@1 and no early stopping (patience = epochs), as the published
trainings keep the best of a fixed number of epochs. Each recipe sets its head, image size,
P, optimizer, scheduler, epochs and augmentation.

`:smoke` shrinks a recipe to the tiny synthetic city (its GSV-Cities folder, 48x64 images,
a narrow ResNet-50, P = K = 4, 2 epochs); each recipe then shrinks its head:

    python -m vgjax.synthetic --out data/synthetic-tiny --preset tiny
    python -m vgjax.synthetic --out data/synthetic-tiny --preset tiny --format gsv_cities
    python -m vgjax.train --config configs/mixvpr.py:smoke --workdir runs/mixvpr-smoke
"""
from configs import default
from vgjax.config import parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, smoke=False)
    c = default.get_config()
    c.data.root = "data"
    c.data.train_dataset = "gsv-cities"       # <root>/gsv-cities/{Dataframes,Images}
    c.data.format = "gsv_cities"
    c.data.test_datasets = ["pitts30k"]
    c.evals.val.datasets = ["pitts30k"]       # the GSV-Cities folder has no val split
    c.model.backbone = "resnet50conv4"
    c.model.trainable_from = "layer3"         # published: conv1..layer2 frozen
    c.model.netvlad_init.enabled = False
    c.train.batching = "places"
    c.train.places_per_batch = 100
    c.train.images_per_place = 4
    c.train.places_per_epoch = 0              # every place once an epoch
    c.train.loss = "multi_similarity"
    c.train.loss_args = {"alpha": 1.0, "beta": 50.0, "base": 0.0}
    c.train.miner = "multi_similarity"
    c.train.miner_args = {"epsilon": 0.1}
    c.train.best_metric = "val/R@1"
    c.train.epochs = 30
    c.train.patience = 30
    return smoke(c) if arg.smoke else c


def smoke(c):
    """Shrinks a place-batch recipe in place to the tiny synthetic city (16 places of 4..6
    views): `default.smoke`'s sizes, its GSV-Cities folder, P = K = 4, 2 epochs. Scheduler
    milestones and warmup are left to the recipe."""
    default.smoke(c)
    c.data.train_dataset = "gsv-cities"       # data/synthetic-tiny/gsv-cities
    c.evals.val.datasets = ["pitts30k"]
    c.train.places_per_batch = 4
    c.train.images_per_place = 4
    c.train.places_per_epoch = 0
    c.train.epochs = 2
    c.train.patience = 2
    return c
