"""The `make demo` runs: the synthetic city recipe (configs/city.py) shortened to fit a few
minutes on 2 CPU cores: ResNet-18-conv4 at half width from scratch + NetVLAD-16 at 96x128,
2 epochs of 304 queries, validated each epoch and before training, and the untrained
network tested on the four test sets before training (`evals.untrained`, a reference
point; its predictions are in RUN/before/untrained/), then the best model at the end.

Only layer3 and the head train (`model.trainable_from=layer3`, the reference's default; the
earlier stages keep their random weights): on the synthetic city this generalises better to
the other districts than training the whole network (sf-xs R@1 21.3 vs 13.0 in a 2-epoch
run, 2026-12-01) and its epochs are faster. The training images stay on the device
(`data.cache_decoded=device`).

    python -m vgjax.synthetic --out data/synthetic-demo --preset demo
    python -m vgjax.train --config configs/demo.py --workdir runs/demo
"""
from configs import city, default
from vgjax.config import parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, smoke=False)
    c = city.get_config()
    c.train.queries_per_epoch = 304
    c.train.cache_refresh_rate = 152
    c.train.epochs = 2
    c.train.patience = 2
    c.model.trainable_from = "layer3"
    c.data.cache_decoded = "device"
    c.evals.val.when = ["before", "epoch"]    # also validate the untrained model
    # its predictions go to RUN/before/untrained/predictions/: the demo's paired tests
    c.evals.untrained = dict(type="retrieval", split="test", datasets=[], when=["before"])
    return default.smoke(c) if arg.smoke else c
