"""The `train` section: its checks (`check_train`, and `validate_training`: what only
matters when training starts) and its frozen, typed settings (`TrainSettings`)."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from vgjax.config import ConfigError, require, require_positive
from vgjax.config.settings import Args, Settings
from vgjax.data.augment import AUGMENT_ON, check_specs
from vgjax.data.cache import CACHE_MODES, CACHE_RESIZE
from vgjax.data.dataset import split_folder
from vgjax.data.format import DatasetFormatError, list_images
from vgjax.data.settings import DataSettings
from vgjax.data.readers import reader_name
from vgjax.data.sources import SOURCES, folder_location
from vgjax.eval import evaluators
from vgjax.eval.settings import check_pca
from vgjax.models.aggregation import AGGREGATIONS, uses_kmeans_init
from vgjax.models.backbones import parse_backbone
from vgjax.models.domain import DOMAIN_CLASSIFIERS
from vgjax.eval.methods import TEST_METHODS
from vgjax.models.network import descriptor_dim, head_options
from vgjax.models.settings import ModelSettings
from vgjax.train import mining, optim
from vgjax.train.adaptation import LAMBDA_SCHEDULES
from vgjax.train.batching import BATCHING
from vgjax.train.cosplace import CosPlaceSettings
from vgjax.train.mining import MINERS
from vgjax.train.optim import OPTIMIZERS, keeps_averaged_weights, optimizer_kwargs
from vgjax.train.schedules import SCHEDULERS, plateau_patience, scheduler_kwargs
from vgjax.train.sharding import PARAM_SHARDING

log = logging.getLogger("vgjax.checks")


@dataclasses.dataclass(frozen=True)
class DASettings(Settings):
    enabled: bool = False
    target_dir: str = ""
    weight: float = 1.0
    grl_lambda: float = 1.0
    schedule: str = "constant"
    ramp_epochs: int = 5
    classifier: str = "mlp"


@dataclasses.dataclass(frozen=True)
class TrainSettings(Settings):
    batching: str = "triplets"
    places_per_batch: int = 100
    images_per_place: int = 4
    places_per_epoch: int = 0
    miner: str = "multi_similarity"
    miner_args: Args = dataclasses.field(default_factory=Args)
    checkpoint_steps: int = 0
    cosplace: CosPlaceSettings = dataclasses.field(default_factory=CosPlaceSettings)
    tensorboard: bool = True
    queries_per_step: int = 4
    negatives_per_query: int = 10
    mining: str = "partial"
    cache_refresh_rate: int = 1000
    neg_samples_num: int = 1000
    mining_chunk_mb: float = 256.0
    queries_per_epoch: int = 5000
    epochs: int = 1000
    patience: int = 3
    best_metric: str = "val/R@5"
    loss: str = "triplet"
    loss_args: Args = dataclasses.field(default_factory=lambda: Args({"margin": 0.1}))
    optimizer: str = "adam"
    optimizer_args: Args = dataclasses.field(default_factory=Args)
    lr: float = 1e-5
    weight_decay: float | None = None
    crn_lr: float = 5e-3
    eval_with_averaged_weights: bool = False
    scheduler: str = "none"
    scheduler_args: Args = dataclasses.field(default_factory=Args)
    query_augment: tuple[str, ...] = ()
    augment_on: str = "device"
    da: DASettings = dataclasses.field(default_factory=DASettings)
    infer_batch_size: int = 32
    cache_resize: str = "train"
    num_devices: int = 0
    param_sharding: str = "replicated"

    @classmethod
    def from_config(cls, config) -> "TrainSettings":
        return cls.from_section(config.train)

    @property
    def steps_per_epoch(self) -> int:
        rounds = -(-self.queries_per_epoch // self.cache_refresh_rate)
        return rounds * (self.cache_refresh_rate // self.queries_per_step)


def check_train(config) -> None:
    """Refuses a bad `train` section, naming the option (`data.cache_decoded` too where it
    conflicts with `train.augment_on`)."""
    raw = config.train
    MINERS.check(raw.mining)
    # the family of train.loss and the options of its way of batching
    BATCHING.get(raw.batching).check(raw, config)
    OPTIMIZERS.check(raw.optimizer, optimizer_kwargs(raw))
    try:  # building it checks the values of optimizer_args (optax needs no arrays for it)
        optim.make_optimizer(raw)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"train.optimizer_args: {e}") from None
    t = TrainSettings.from_section(raw)
    SCHEDULERS.build(t.scheduler, scheduler_kwargs(t), lr=t.lr)  # checks the values
    require_positive(t, "train", ("queries_per_step", "negatives_per_query",
                                  "cache_refresh_rate", "queries_per_epoch", "epochs",
                                  "patience", "infer_batch_size", "neg_samples_num"))
    require(t.lr > 0, "train.lr", f"must be > 0, got {t.lr}")
    require(t.mining_chunk_mb > 0, "train.mining_chunk_mb", f"must be > 0, got {t.mining_chunk_mb}")
    require(t.crn_lr > 0, "train.crn_lr", f"must be > 0, got {t.crn_lr}")
    require(t.weight_decay is None or t.weight_decay >= 0, "train.weight_decay",
            f"must be >= 0 (or None: the optimizer's default), got {raw.weight_decay}")
    require(t.cache_refresh_rate >= t.queries_per_step, "train.cache_refresh_rate",
            f"({t.cache_refresh_rate}) must be >= train.queries_per_step ({t.queries_per_step})")
    if mining.get_miner(t.mining).samples_candidates:
        require(t.neg_samples_num >= t.negatives_per_query, "train.neg_samples_num",
                f"({t.neg_samples_num}) must be >= train.negatives_per_query "
                f"({t.negatives_per_query})")
    if t.eval_with_averaged_weights:
        require(keeps_averaged_weights(t), "train.eval_with_averaged_weights",
                f"needs an optimizer that averages the weights, train.optimizer=asgd "
                f"(got {t.optimizer!r})")
    require(t.num_devices >= 0, "train.num_devices", "must be >= 0 (0 = all)")
    PARAM_SHARDING.check(t.param_sharding)
    require(t.cache_resize in CACHE_RESIZE, "train.cache_resize",
            f"unknown value {t.cache_resize!r} (accepted: {', '.join(CACHE_RESIZE)})")
    check_specs(t.query_augment)
    require(t.augment_on in AUGMENT_ON, "train.augment_on",
            f"unknown value {t.augment_on!r} (accepted: {', '.join(AUGMENT_ON)})")
    if AUGMENT_ON.get(t.augment_on).reads_files:
        require(not CACHE_MODES.get(config.data.cache_decoded).on_device, "train.augment_on",
                "host decodes every training query from its file at full size, but "
                "data.cache_decoded=device serves the train steps from the device; use "
                "data.cache_decoded=host or none")
    b, rq, qpe = t.queries_per_step, t.cache_refresh_rate, t.queries_per_epoch
    dropped = (qpe // rq) * (rq % b) + (qpe % rq) % b
    if dropped:
        log.warning("train.cache_refresh_rate=%d / train.queries_per_epoch=%d are not "
                    "multiples of train.queries_per_step=%d: %d of the %d queries of every "
                    "epoch are mined but not trained on", rq, qpe, b, dropped, qpe)
    patience = plateau_patience(t)
    if patience is not None and patience + 1 >= t.patience:
        log.warning("train.scheduler_args.patience=%d: ReduceLROnPlateau lowers the rate after "
                    "%d epochs without improvement, but early stopping (train.patience=%d) "
                    "ends the run after %d: the rate never drops; use a plateau patience of "
                    "at most %d", patience, patience + 1, t.patience, t.patience,
                    t.patience - 2)
    da = t.da
    if da.enabled:
        require(bool(da.target_dir), "train.da.target_dir",
                "is empty: name a folder of unlabeled target-domain images")
        DOMAIN_CLASSIFIERS.build(da.classifier)
        LAMBDA_SCHEDULES.check(da.schedule)
        require(da.weight >= 0, "train.da.weight", f"must be >= 0, got {da.weight}")
        require(da.grl_lambda >= 0, "train.da.grl_lambda", f"must be >= 0, got {da.grl_lambda}")
        require(da.ramp_epochs >= 1, "train.da.ramp_epochs",
                f"must be >= 1, got {da.ramp_epochs}")


def validate_training(config) -> None:
    """Checks that only matter when training starts (before any data is read)."""
    data, model = DataSettings.from_config(config), ModelSettings.from_config(config)
    train = TrainSettings.from_config(config)
    evaluators.parse_metric(config, train.best_metric)
    for name in config.evals.keys():
        settings = evaluators.entry_settings(config, name)
        if settings.pca_dim > 0:
            check_pca(settings, descriptor_dim(config.model),
                      f"evals.{name}" if name != "test" else "test")
    batching = BATCHING.get(train.batching)
    folders = SOURCES.get(data.source).folders
    if folders:  # every split the run reads, before any work
        needed = ([("data.train_dataset", data.train_dataset, "train")]
                  if batching.train_split else [])
        benchmarks = []  # read with their ground truth: every file checked now
        for name in config.evals.keys():
            e = evaluators.build(config, name)
            option = "data.test_datasets" if e.split == "test" else f"evals.{name}.datasets"
            if reader_name(data.format, e.data_format) == "folder":
                needed += [(option, d, e.split) for d in e.datasets]
            else:
                benchmarks += [(option, d, e) for d in e.datasets]
        for option, dataset, split in needed:
            try:
                split_folder(folder_location(config.data, dataset), split)
            except DatasetFormatError as e:
                raise ConfigError(f"{option}: {dataset!r}: {e}") from None
        for option, dataset, e in benchmarks:
            try:
                e.open(dataset)
            except DatasetFormatError as err:
                raise ConfigError(f"{option}: {dataset!r}: {err}") from None
        # e.g. msls_weighted needs night / sideways names
        folder = Path(folder_location(config.data, data.train_dataset))
        queries = folder / "images" / "train" / "queries"
        if batching.train_split and queries.is_dir():
            try:
                mining.get_miner(train.mining).query_weights(list_images(queries))
            except ValueError as e:
                raise ConfigError(str(e)) from None
    batching.validate(config)  # place batches: the places, P and K
    da = train.da
    if da.enabled:
        folder = Path(da.target_dir)
        require(folder.is_dir(), "train.da.target_dir", f"{folder} is not a folder")
        require(bool(list_images(folder)), "train.da.target_dir",
                f"{folder} holds no .jpg/.jpeg/.png images")
    try:
        evaluators.check_image_sizes(config, model.backbone, data.resize)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    head = AGGREGATIONS.get(model.aggregation)
    if head.check_features is not None:
        try:
            head.check_features(*parse_backbone(model.backbone).feature_size(*data.resize),
                                head_options(config.model))
        except ValueError as e:
            raise ConfigError(f"data.resize={data.resize}: {e}") from None
    if head.feature_size is not None:
        check_fixed_size_views(config, model.aggregation, data.resize)
    if uses_kmeans_init(config.model):
        init = model.netvlad_init
        h, w = parse_backbone(model.backbone).feature_size(*data.resize)
        require(init.descriptors_per_image <= h * w,
                "model.netvlad_init.descriptors_per_image",
                f"({init.descriptors_per_image}) exceeds the {h}x{w} = {h * w} local "
                f"features of a {data.resize[0]}x{data.resize[1]} image")


def check_fixed_size_views(config, aggregation: str, resize) -> None:
    """A head built for one feature map size (MixVPR) describes only images of the model
    size: every evaluator must view them at data.resize, at one scale, and fit PCA on them."""
    for name in config.evals.keys():
        test = evaluators.entry_settings(config, name)
        option = f"evals.{name}" if name != "test" else "test"
        method = TEST_METHODS.get(test.method)()
        shapes_fit = method.fixed_shapes and all(tuple(s) == tuple(resize)
                                                 for s in method.view_shapes(resize))
        require(shapes_fit, f"{option}.method",
                f"{test.method!r} describes images at other sizes than data.resize={resize}, "
                f"but model.aggregation={aggregation} is built for one feature map size; "
                "use hard_resize or central_crop")
        require(tuple(test.scales) == (1.0,), f"{option}.scales",
                f"{list(test.scales)}: model.aggregation={aggregation} is built for one "
                "feature map size; use [1.0]")
        require(test.pca_dim == 0 or not test.pca_native_size, f"{option}.pca_native_size",
                f"PCA images at their own sizes cannot be described by "
                f"model.aggregation={aggregation}, built for one feature map size; set it to "
                "false")
