"""Training: loss terms, on-device mining, optimizers and schedulers, the train step, mining
rounds, checkpoints and the epoch loop.

    python -m vgjax.train --config configs/resnet18_netvlad.py --workdir runs/x \\
        [--config.train.lr=1e-4 ...]

`from vgjax.train import train_and_evaluate` loads the loop on first use, so importing a
submodule (e.g. `vgjax.train.losses`) does not import the whole package.
"""
__all__ = ["train_and_evaluate", "NonFiniteLossError"]


def __getattr__(name):
    if name in __all__:
        from vgjax.train import loop
        return getattr(loop, name)
    raise AttributeError(f"module 'vgjax.train' has no attribute {name!r}")
