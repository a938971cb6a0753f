"""Table II: optimizers x learning rate x weight decay x scheduler, the paper's rows.

Weight decay is torch-style: coupled for Adam, SGD and ASGD, decoupled for AdamW. The
scheduler rows must act within a run: early stopping ends a run after 3 epochs without
improvement (train.patience), so ReduceLROnPlateau uses patience 0 (the rate drops after
every epoch without improvement, factor 0.1, relative threshold 1e-3) and CosineAnnealingLR
a period of t_max = 5 epochs (eta_min 0): Fig. 3 plots the rate of each scheduled row.
"""
from configs.suites.common import DATASETS, base, overrides
from vgjax.config.sweep import cell

PLATEAU = {"train.scheduler": "plateau",
           "train.scheduler_args": {"patience": 0, "factor": 0.1, "threshold": 1e-3}}
COSINE = {"train.scheduler": "cosine", "train.scheduler_args": {"t_max": 5, "eta_min": 0.0}}
SCHEDULES = {"none": {}, "plateau": PLATEAU, "cosine": COSINE}
NAMES = {"adam": "Adam", "sgd": "SGD", "asgd": "ASGD", "adamw": "AdamW"}
ROWS = [  # (optimizer, lr, weight decay, scheduler), as in the paper's Table II
    ("adam", 1e-5, 1e-3, "none"),
    ("sgd", 1e-5, 1e-3, "none"), ("sgd", 1e-3, 1e-2, "none"), ("sgd", 1e-3, 1e-3, "none"),
    ("sgd", 1e-3, 1e-4, "none"), ("sgd", 1e-3, 1e-5, "none"), ("sgd", 1e-2, 1e-3, "plateau"),
    ("sgd", 1e-3, 1e-3, "cosine"),
    ("asgd", 1e-5, 1e-3, "none"), ("asgd", 1e-5, 1e-4, "none"), ("asgd", 1e-3, 1e-2, "none"),
    ("asgd", 1e-3, 1e-3, "none"), ("asgd", 1e-3, 1e-4, "none"), ("asgd", 1e-3, 1e-5, "none"),
    ("asgd", 1e-3, 1e-3, "plateau"), ("asgd", 1e-3, 1e-3, "cosine"),
    ("adamw", 1e-5, 1e-5, "none"), ("adamw", 1e-5, 1e-4, "none"),
    ("adamw", 1e-5, 1e-3, "none"), ("adamw", 1e-5, 1e-2, "none"),
    ("adamw", 1e-3, 1e-3, "none"), ("adamw", 1e-3, 1e-3, "plateau"),
    ("adamw", 1e-3, 1e-3, "cosine"),
]


def get_suite(arg=None):
    cells = [cell(f"{opt}-lr{lr:g}-wd{wd:g}-{sched}",
                  {"optimizer": NAMES[opt], "lr": f"{lr:g}", "weight decay": f"{wd:g}",
                   "scheduler": sched},
                  **{"train.optimizer": opt, "train.lr": lr, "train.weight_decay": wd,
                     **SCHEDULES[sched]})
             for opt, lr, wd, sched in ROWS]
    return dict(name="table2_optimizers",
                title="Table II: optimizers, learning rates, weight decay and schedulers",
                config=base(arg), overrides=overrides(arg), cells=cells, datasets=DATASETS, recalls=["R@1", "R@5"],
                plots=["val", "lr"], notes=__doc__.split("\n\n", 1)[1].strip())
