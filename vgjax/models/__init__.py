"""Models: ResNet, VGG-16, AlexNet and EfficientNet-Lite backbones, aggregations (NetVLAD,
GeM, MAC, SPoC, ...), the full network, NetVLAD k-means initialisation, torch checkpoint
reading (without torch) and conversion, bundled ImageNet weights and model directories.
Importing the package registers every aggregation (CRN's from `crn`)."""
from vgjax.models import crn  # noqa: F401  (registers "crn" in AGGREGATIONS)
from vgjax.models.network import (
                                  VGNetwork,
                                  build_network,
                                  descriptor_dim,
                                  feature_dim,
                                  init_variables,
                                  make_describe_fn,
                                  make_features_fn,
                                  network_info,
                                  trainable_mask,
                                  validate_model_config,
)

__all__ = ["VGNetwork", "build_network", "descriptor_dim", "feature_dim", "init_variables",
           "make_describe_fn", "make_features_fn", "network_info", "trainable_mask",
           "validate_model_config"]
