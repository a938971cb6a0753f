"""Models: ResNet, VGG-16, AlexNet, EfficientNet-Lite and DINOv2 ViT backbones, aggregations
(NetVLAD, GeM, MAC, SPoC, MixVPR, Conv-AP, CosPlace, BoQ, SALAD, cls, ...), the full network, NetVLAD k-means
initialisation, torch checkpoint reading (without torch) and conversion, bundled ImageNet weights and model directories.
Importing the package registers every aggregation (CRN's, MixVPR's, Conv-AP's,
CosPlace's, BoQ's and SALAD's from their modules)."""
from vgjax.models import boq, convap, cosplace, crn, mixvpr, salad  # noqa: F401  (register heads)
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
