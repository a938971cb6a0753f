"""The smoke run with the paper's night extensions on (1-2 minutes on 2 CPU cores):
darkened training queries (brightness factor 0.1, Table IV's best) and unsupervised domain
adaptation with a gradient-reversal layer towards the synthetic city's unlabeled
night-target folder (Table V's method, in the honest, non-transductive setting).

    python -m vgjax.synthetic --out data/synthetic-tiny --preset tiny
    python -m vgjax.train --config configs/smoke_night.py --workdir runs/smoke_night

The run folder's metrics.jsonl and domain.png show the domain loss, the classifier's
accuracy and lambda per step.
"""
from configs import smoke


def get_config():
    c = smoke.get_config()
    c.train.query_augment = ["brightness(0.1)"]
    c.train.da.enabled = True
    c.train.da.target_dir = "data/synthetic-tiny/night-target/images"
    c.train.da.schedule = "ganin"
    c.train.da.ramp_epochs = 2
    c.train.da.weight = 0.5
    c.train.da.classifier = "mlp(hidden=32, layers=1)"
    return c
