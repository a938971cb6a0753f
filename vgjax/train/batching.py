"""How training batches are formed (`train.batching`), one registry entry per way:

- `triplets`: the reference protocol: epochs of mining rounds, each step a batch of
  (query, positive, negatives) groups and a triplet-style loss (`vgjax.train.loop`);
- `places`: place batches, as GSV-Cities / MixVPR / Conv-AP train: each step P places x K
  images of each, a batch miner and a batch loss over all P * K descriptors
  (`vgjax.train.places_loop`);
- `cosplace`: CosPlace's training: classes of UTM cells x headings in groups, one CosFace
  classifier per group, an epoch per group in turn (`vgjax.train.cosplace`,
  `vgjax.train.cosplace_loop`).

An entry checks the options that depend on it (`check(raw train section, config)`: the
family of `train.loss`, P and K, ...), the training set when a run starts
(`validate(config)`), says whether the training set is a standard @UTM train split
(`train_split`), and runs the training (`run(config, run_dir) -> results`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

from vgjax.config import ConfigError, require
from vgjax.registry import Registry
from vgjax.train.batch_losses import BATCH_LOSSES, BATCH_MINERS
from vgjax.train.losses import LOSS_TERMS

BATCHING = Registry("train.batching")

# `domain` is a term the loop adds itself (domain adaptation), not a choice of train.loss
TRIPLET_LOSSES = tuple(n for n in LOSS_TERMS.names() if n != "domain")


@dataclasses.dataclass(frozen=True)
class Batching:
    name: str
    check: Callable          # (raw train section, config) -> None; ConfigError in one line
    validate: Callable       # (config) -> None: the training set, when a run starts
    run: Callable            # (config, run: Path) -> results
    train_split: bool        # the training set is the `train` split of a standard folder


def _loss_name(loss) -> str:
    from vgjax.registry import parse_spec
    return parse_spec(loss, "train.loss").name


def _rename(e: ConfigError, option: str, to: str) -> ConfigError:
    return ConfigError(str(e).replace(option, to))


def _check_triplets(raw, config=None) -> None:
    name = _loss_name(raw.loss)
    require(name not in BATCH_LOSSES, "train.loss",
            f"{name!r} is a batch loss, for train.batching=places; train.batching=triplets "
            f"takes a triplet loss: {', '.join(TRIPLET_LOSSES)}")
    LOSS_TERMS.check(raw.loss, dict(raw.loss_args))


def _check_places(raw, config=None) -> None:
    name = _loss_name(raw.loss)
    require(name not in LOSS_TERMS, "train.loss",
            f"{name!r} is a triplet loss, for train.batching=triplets; train.batching=places "
            f"takes a batch loss: {', '.join(BATCH_LOSSES.names())}")
    try:
        BATCH_LOSSES.check(raw.loss, dict(raw.loss_args))
    except ConfigError as e:
        raise _rename(e, BATCH_LOSSES.option, "train.loss") from None
    try:
        BATCH_MINERS.check(raw.miner, dict(raw.miner_args))
    except ConfigError as e:
        raise _rename(e, BATCH_MINERS.option, "train.miner") from None
    for field in ("places_per_batch", "images_per_place"):
        value = raw[field]
        require(isinstance(value, int) and value >= 2, f"train.{field}",
                f"must be >= 2 (a place batch needs positive and negative pairs), got {value!r}")
    require(isinstance(raw.places_per_epoch, int) and raw.places_per_epoch >= 0,
            "train.places_per_epoch",
            f"must be >= 0 (0 = all places), got {raw.places_per_epoch!r}")
    _check_file_batches(raw, config, "places")


def _check_file_batches(raw, config, name: str) -> None:
    """What the batchings that read every step's images from their files (places,
    cosplace) refuse: domain adaptation, host-side augmentation, decoded caches, TFDS."""
    require(isinstance(raw.checkpoint_steps, int) and raw.checkpoint_steps >= 0,
            "train.checkpoint_steps", f"must be >= 0 (0 = off), got {raw.checkpoint_steps!r}")
    require(not raw.da.enabled, "train.da.enabled",
            "domain adaptation works with train.batching=triplets only")
    from vgjax.data.augment import AUGMENT_ON
    require(not AUGMENT_ON.get(raw.augment_on).reads_files, "train.augment_on",
            f"train.batching={name} augments on the device only (set device)")
    if config is not None:
        from vgjax.data.cache import CACHE_MODES
        from vgjax.data.settings import DataSettings
        from vgjax.data.sources import SOURCES
        data = DataSettings.from_config(config)
        require(not CACHE_MODES.get(data.cache_decoded).decodes, "data.cache_decoded",
                f"{data.cache_decoded!r}: train.batching={name} reads its images from the "
                "files; set none")
        require(SOURCES.get(data.source).folders, "data.source",
                f"{data.source!r}: train.batching={name} reads its images from folders "
                "(data.format); set folder")


def _check_cosplace(raw, config=None) -> None:
    from vgjax.train.cosplace import check_cosplace
    check_cosplace(raw.cosplace)
    _check_file_batches(raw, config, "cosplace")
    if config is not None:
        require(str(config.data.format).split("(", 1)[0].strip() == "folder", "data.format",
                f"{config.data.format!r}: train.batching=cosplace groups the UTM coordinates "
                "and headings of an @UTM folder's names; set folder")


def _validate_triplets(config) -> None:
    """The train split is checked with the evaluators' splits (`validate_training`)."""


def _validate_places(config) -> None:
    from vgjax.train.places_loop import open_train_places
    open_train_places(config)


def _validate_cosplace(config) -> None:
    from vgjax.train.cosplace_loop import open_cosplace_groups
    open_cosplace_groups(config)


def _run_cosplace(config, run):
    from vgjax.train.cosplace_loop import train_cosplace
    return train_cosplace(config, run)


def _run_triplets(config, run):
    from vgjax.train.loop import _train_and_evaluate
    return _train_and_evaluate(config, run)


def _run_places(config, run):
    from vgjax.train.places_loop import train_places
    return train_places(config, run)


BATCHING.register("triplets")(Batching("triplets", _check_triplets, _validate_triplets,
                                       _run_triplets, train_split=True))
BATCHING.register("places")(Batching("places", _check_places, _validate_places,
                                     _run_places, train_split=False))
BATCHING.register("cosplace")(Batching("cosplace", _check_cosplace, _validate_cosplace,
                                       _run_cosplace, train_split=True))


def get_batching(name: str) -> Batching:
    return BATCHING.get(name)
