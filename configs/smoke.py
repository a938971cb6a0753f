"""A smoke run on the tiny synthetic city (about a minute on 2 CPU cores):

    python -m vgjax.data.synthetic --out data/synthetic-tiny --preset tiny
    python -m vgjax.train --config configs/smoke.py --workdir runs/smoke

The default config shrunk by its `smoke` switch (small images, a narrow ResNet-18-conv4 +
NetVLAD-8, 2 epochs of 4 mining rounds), with a learning rate that moves it in so few steps.
Any config shrinks the same way with `--config configs/<x>.py:smoke`.
"""
from configs import default


def get_config(arg=None):
    """`arg` is accepted for the `:smoke` convention; this config is the smoke run."""
    c = default.get_config("smoke")
    c.train.lr = 1e-3
    return c
