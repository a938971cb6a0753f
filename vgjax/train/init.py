"""A run's initial variables: a fresh init, a pretrained model dir merged in, then the
NetVLAD k-means initialisation when the head is not pretrained."""
from __future__ import annotations

import logging
import time

import jax

from vgjax.config import ConfigError
from vgjax.data.dataset import Split
from vgjax.data.pipeline import BatchLoader
from vgjax.models.aggregation import uses_kmeans_init
from vgjax.models.io import load_model, merge_pretrained, read_model_info
from vgjax.models.netvlad_init import initialize_netvlad, sample_init_paths
from vgjax.models.network import init_variables

log = logging.getLogger("vgjax.train")


def _same_resnet(loaded_cfg, model_cfg) -> tuple[tuple, tuple]:
    """(theirs, ours) as (depth part of the backbone name, width): another cut (conv4 /
    conv5) of the same ResNet is fine, another depth or width is not."""
    return ((loaded_cfg.backbone.rsplit("conv", 1)[0], loaded_cfg.get("resnet_width", 64)),
            (model_cfg.backbone.rsplit("conv", 1)[0], model_cfg.get("resnet_width", 64)))


def pretrained_variables(model_cfg, variables) -> tuple[dict, bool]:
    """`variables` with the arrays of `model.pretrained` copied in; and whether they
    brought a trained aggregation head."""
    loaded_cfg, loaded = load_model(model_cfg.pretrained)
    theirs, ours = _same_resnet(loaded_cfg, model_cfg)
    if theirs != ours:
        raise ConfigError(
            f"model.pretrained={model_cfg.pretrained} holds a {loaded_cfg.backbone} of "
            f"width {theirs[1]}, this config builds a {model_cfg.backbone} of width {ours[1]}")
    variables, copied = merge_pretrained(variables, loaded)
    # a converted backbone-only file (e.g. torchvision weights) brings a random head,
    # which the converter lists as "initialised": that is not a trained head
    initialised = read_model_info(model_cfg.pretrained).get("extra", {}).get("initialised", [])
    placeholder = any(str(k).startswith("aggregation") for k in initialised)
    has_head = (loaded_cfg.aggregation == model_cfg.aggregation and not placeholder
                and any(k.startswith("['params']['aggregation']") for k in copied))
    log.info("Initialised %d arrays from %s%s", len(copied), model_cfg.pretrained,
             " (with its aggregation head)" if has_head else "")
    return variables, has_head


def initial_variables(config, net, train_split: Split, reader=None) -> dict:
    """Pretrained model dir if given, else a fresh init; then NetVLAD k-means init when
    enabled and the pretrained model brings no NetVLAD head."""
    model_cfg = config.model
    size = tuple(config.data.resize)
    variables = init_variables(model_cfg, jax.random.key(config.seed), size)
    has_head = False
    if model_cfg.pretrained:
        variables, has_head = pretrained_variables(model_cfg, variables)
    else:
        frozen = model_cfg.trainable_from != "conv1"
        log.warning("model.pretrained is empty: the network starts from random weights%s",
                    f" and the stages before {model_cfg.trainable_from} stay frozen at them "
                    "(convert ImageNet weights with scripts/convert_torch_weights.py)"
                    if frozen else "")
    if uses_kmeans_init(model_cfg) and not has_head:
        t0 = time.perf_counter()
        paths = sample_init_paths(list(train_split.database.paths) +  # the whole training set
                                  list(train_split.queries.paths),
                                  int(model_cfg.netvlad_init.images), int(config.seed))
        batches = BatchLoader(paths, size, int(config.train.infer_batch_size),
                              num_workers=int(config.data.num_workers),
                              prefetch=int(config.data.prefetch),
                              load_fn=reader.loader(size) if reader is not None else None)
        variables = initialize_netvlad(net, variables, batches, model_cfg, seed=int(config.seed))
        log.info("NetVLAD initialised by k-means on %d images in %.1f s", len(paths),
                 time.perf_counter() - t0)
    return variables
