"""A place-batch smoke run on the tiny synthetic city (under a minute on 2 CPU cores):

    python -m vgjax.synthetic --out data/synthetic-tiny --preset tiny
    python -m vgjax.synthetic --out data/synthetic-tiny --preset tiny --format gsv_cities
    python -m vgjax.train --config configs/places_smoke.py --workdir runs/places-smoke

The smoke config (`configs/smoke.py`) trained as GSV-Cities / MixVPR / Conv-AP train: place
batches of 4 places x 4 images from the tiny city's GSV-Cities folder, the multi-similarity
loss with its miner (the GSV-Cities recipe), a Conv-AP head; validated on pitts30k's val
split, tested on pitts30k and sf-xs.
"""
from configs import smoke


def get_config(arg=None):
    c = smoke.get_config(arg)
    c.data.train_dataset = "data/synthetic-tiny/gsv-cities"
    c.data.format = "gsv_cities"
    c.data.test_datasets = ["pitts30k", "sf-xs"]
    c.evals.val.datasets = ["pitts30k"]  # the GSV-Cities folder has no val split
    c.model.aggregation = "convap"
    c.model.convap.out_channels = 32
    c.train.batching = "places"
    c.train.places_per_batch = 4
    c.train.images_per_place = 4
    c.train.places_per_epoch = 0              # all the places of the folder each epoch
    c.train.loss = "multi_similarity"
    c.train.loss_args = {"alpha": 1.0, "beta": 50.0, "base": 0.0}
    c.train.miner = "multi_similarity"
    c.train.miner_args = {"epsilon": 0.1}
    c.train.checkpoint_steps = 2
    return c
