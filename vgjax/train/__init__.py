"""Training: losses, on-device mining, optimizers/schedulers, checkpoints and the loop.

    python -m vgjax.train --config configs/resnet18_netvlad.py --workdir runs/x \\
        [--config.train.lr=1e-4 ...]
"""
from vgjax.train.loop import NonFiniteLossError, train_and_evaluate

__all__ = ["train_and_evaluate", "NonFiniteLossError"]
