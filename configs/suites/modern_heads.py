"""The modern heads against NetVLAD on the synthetic city, from the ImageNet-pretrained
EfficientNet-Lite0 of `make demo` (`configs/demo.py`: cut at stride 16, its last two stages
trained, Adam 1e-4, 96 x 128 images). Rows: NetVLAD-16 trained with triplets (the demo
recipe itself, the baseline of the paired tests), then MixVPR, Conv-AP, CosPlace, BoQ and
SALAD each trained with place batches on the city's GSV-Cities folder (400 places):
P = 40 places x K = 4 images a step, the multi-similarity loss (alpha 1, beta 50, base 0)
and miner (epsilon 0.1) of the GSV-Cities recipe (`configs/gsv_cities.py`), 4 epochs of
every place, the same optimizer, rate and trained stages as the NetVLAD row, so that the
rows differ by head and batching alone. Head options are the published ones where they fit
the city's 6 x 8 x 112 feature map (MixVPR built for 6 x 8; SALAD with 32 clusters, as it
needs fewer clusters than the 48 local features). Columns: the four test sets, R@1 / R@5;
the descriptor size and training time (minutes) of each row.

    python -m vgjax.synthetic --out data/synthetic-demo --preset demo
    python -m vgjax.synthetic --out data/synthetic-demo --preset demo --format gsv_cities
    python scripts/run_suite.py --suite configs/suites/modern_heads.py:demo \\
        --datasets-root data/synthetic-demo --repeats 2 --out results/modern_heads

`:smoke` sizes the heads for the tiny city (48 x 64 images: a 3 x 4 map) with P = K = 4 and
2 epochs, for the runner's `--smoke` (which renders the tiny city, its GSV-Cities folder
included): `python scripts/run_suite.py --suite configs/suites/modern_heads.py:smoke --smoke
--repeats 1 --out runs/suite-modern-smoke`.
"""
from configs.suites.common import DATASETS, DEMO, overrides
from vgjax.config.sweep import cell

CHANNELS = 112  # EfficientNet-Lite0 cut at stride 16

# head options per variant: published where they fit the map (demo: 6 x 8, smoke: 3 x 4)
HEADS = {
    "demo": {
        "mixvpr": {"in_h": 6, "in_w": 8, "out_channels": 1024, "mix_depth": 4,
                   "mlp_ratio": 1.0, "out_rows": 4, "row_bias": True},
        "convap": {"out_channels": 1024, "s1": 2, "s2": 2},
        "cosplace": {"out_dim": 512},
        "boq": {"proj_channels": 512, "proj_kernel": 3, "num_queries": 64, "num_layers": 2,
                "row_dim": 32, "num_heads": 0},
        "salad": {"num_clusters": 32, "cluster_dim": 128, "token_dim": 256,
                  "hidden_dim": 512, "iters": 3},
    },
    "smoke": {
        "mixvpr": {"in_h": 3, "in_w": 4, "out_channels": 32, "mix_depth": 4,
                   "mlp_ratio": 1.0, "out_rows": 2, "row_bias": True},
        "convap": {"out_channels": 32, "s1": 2, "s2": 2},
        "cosplace": {"out_dim": 32},
        "boq": {"proj_channels": 32, "proj_kernel": 3, "num_queries": 8, "num_layers": 2,
                "row_dim": 4, "num_heads": 2},
        "salad": {"num_clusters": 8, "cluster_dim": 8, "token_dim": 16, "hidden_dim": 32,
                  "iters": 3},
    },
}
NAMES = {"mixvpr": "MixVPR", "convap": "Conv-AP", "cosplace": "CosPlace", "boq": "BoQ",
         "salad": "SALAD"}
# P, epochs of the place-batch rows; NetVLAD's clusters (the demo's; default.smoke's)
SCHEDULE = {"demo": (40, 4, 16), "smoke": (4, 2, 8)}


def descriptor_size(head: str, o: dict) -> int:
    """The descriptor size of a head with options `o` on CHANNELS-channel features."""
    return {"netvlad": lambda: o["clusters"] * CHANNELS,
            "mixvpr": lambda: o["out_channels"] * o["out_rows"],
            "convap": lambda: o["out_channels"] * o["s1"] * o["s2"],
            "cosplace": lambda: o["out_dim"],
            "boq": lambda: o["proj_channels"] * o["row_dim"],
            "salad": lambda: o["token_dim"] + o["num_clusters"] * o["cluster_dim"]}[head]()


def place_batches(places: int, epochs: int) -> dict:
    """The overrides that train a row with place batches on the city's GSV-Cities folder."""
    return {"train.batching": "places", "data.format": "gsv_cities",
            "data.train_dataset": "gsv-cities",  # <datasets root>/gsv-cities
            "evals.val.datasets": ["pitts30k"],  # the GSV-Cities folder has no val split
            "data.cache_decoded": "none",        # place batches read the files
            "model.netvlad_init.enabled": False,
            "train.places_per_batch": places, "train.images_per_place": 4,
            "train.places_per_epoch": 0,
            "train.loss": "multi_similarity",
            # dict literals as text: they replace the base config's arguments (a dict
            # value would set its keys one by one, keeping the triplet loss's margin)
            "train.loss_args": "{'alpha': 1.0, 'beta': 50.0, 'base': 0.0}",
            "train.miner": "multi_similarity", "train.miner_args": "{'epsilon': 0.1}",
            "train.epochs": epochs, "train.patience": epochs}


def get_suite(arg=None):
    variant = "demo" if arg in (None, "") else arg
    if variant not in HEADS:
        raise ValueError(f"suite argument {arg!r}: expected one of {', '.join(HEADS)}")
    places, epochs, clusters = SCHEDULE[variant]
    cells = [cell("netvlad", {"method": "NetVLAD (triplets)",
                              "descriptor": str(descriptor_size("netvlad",
                                                                {"clusters": clusters}))})]
    for head, options in HEADS[variant].items():
        cells.append(cell(head, {"method": NAMES[head],
                                 "descriptor": str(descriptor_size(head, options))},
                          **place_batches(places, epochs), **{"model.aggregation": head},
                          **{f"model.{head}.{k}": v for k, v in options.items()}))
    return dict(
        name="modern_heads",
        title="Modern heads vs NetVLAD (EfficientNet-Lite0, synthetic city)",
        config=DEMO, overrides=overrides("demo"), cells=cells, datasets=DATASETS,
        recalls=["R@1", "R@5"], plots=["val"], train_time=True, baseline="netvlad",
        notes="NetVLAD trains with triplets (partial mining), the other rows with place "
              "batches from the city's GSV-Cities folder (multi-similarity loss and miner); "
              "all with the demo's optimizer and trained stages. train min: the epochs' "
              "time (training and validation) in minutes.")
