"""A run's initial state: resumed from its newest usable checkpoint, or fresh: a random
init, a pretrained model dir (or the bundled ImageNet weights of the backbone) merged in,
then the NetVLAD k-means initialisation when the head is not pretrained."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import jax
import numpy as np

from vgjax.data.dataset import Split
from vgjax.data.pipeline import BatchLoader
from vgjax.data.settings import DataSettings
from vgjax.models.aggregation import AGGREGATIONS, uses_kmeans_init
from vgjax.models.io import merge_pretrained
from vgjax.models.netvlad_init import initialize_netvlad, sample_init_paths
from vgjax.models.backbones import parse_backbone
from vgjax.models.network import (abstract_variables, init_variables, trainable_from,
                                  trainable_mask)
from vgjax.models.settings import ModelSettings
from vgjax.models.pretrained import IMAGENET, imagenet_variables, locate_imagenet_weights
from vgjax.models.pretrained_dir import leaf_shapes, open_pretrained_dir
from vgjax.progress import bar as progress_bar
from vgjax.train import checkpoint, multihost, optim, run_dir, tensorboard
from vgjax.train.adaptation import DOMAIN
from vgjax.train.settings import TrainSettings
from vgjax.train.sharding import state_shardings
from vgjax.train.state import Progress, TrainState

log = logging.getLogger("vgjax.train")


def pretrained_variables(model_cfg, variables) -> tuple[dict, bool]:
    """`variables` with the arrays of `model.pretrained` copied in; and whether they
    brought a trained aggregation head (never for `imagenet`: backbone weights only)."""
    if model_cfg.pretrained == IMAGENET:
        variables, copied = imagenet_variables(model_cfg, variables)
        log.info("Initialised %d backbone arrays from the ImageNet weights of %s (%s)",
                 len(copied), model_cfg.backbone, locate_imagenet_weights(model_cfg.backbone))
        return variables, False
    pretrained = open_pretrained_dir(model_cfg, variables)
    variables, copied = merge_pretrained(variables, pretrained.variables)
    copied_names = {k.removeprefix("['params']['").removesuffix("']").replace("']['", "/")
                    for k in copied}
    missing = [k for k in leaf_shapes(variables, ("backbone",)) if k not in copied_names]
    if missing:
        log.warning("model.pretrained=%s has no weights for %d backbone array(s) (e.g. %s): "
                    "they start from random values", model_cfg.pretrained, len(missing),
                    missing[0])
    if pretrained.problems:
        log.warning("model.pretrained_partial: the head of %s does not fit (%s); it starts "
                    "afresh", model_cfg.pretrained, "; ".join(pretrained.problems[:2]))
    log.info("Initialised %d arrays from %s%s", len(copied), model_cfg.pretrained,
             " (with its aggregation head)" if pretrained.trained_head else "")
    return variables, pretrained.trained_head


def initial_variables(config, net, train_split: Split, reader=None, load_fn=None) -> dict:
    """Pretrained model dir if given, else a fresh init; then NetVLAD k-means init when
    enabled and the pretrained model brings no NetVLAD head, on images read by `load_fn`
    (`train.cache_resize=eval`), else by `reader` at the model size."""
    model_cfg = config.model
    data, t = DataSettings.from_config(config), TrainSettings.from_config(config)
    size = data.resize
    variables = init_variables(model_cfg, jax.random.key(config.seed), size)
    has_head = False
    if model_cfg.pretrained:
        variables, has_head = pretrained_variables(model_cfg, variables)
    else:
        first = trainable_from(model_cfg)
        spec = parse_backbone(model_cfg.backbone)
        frozen = first != spec.stages[0]
        how = ("set model.pretrained=imagenet" if spec.imagenet_weights
               else "convert ImageNet weights with scripts/convert_torch_weights.py")
        log.warning("model.pretrained is empty: the network starts from random weights%s",
                    f" and the stages before {first} stay frozen at them ({how})"
                    if frozen else "")
    takes = AGGREGATIONS.get(model_cfg.aggregation).takes_head_of
    if takes and not has_head:
        log.warning("model.aggregation=%s starts without a trained %s head in model.pretrained "
                    "(the reference refuses to: it trains %s from a %s checkpoint); its %s "
                    "part starts from %s", model_cfg.aggregation, takes[0],
                    model_cfg.aggregation, takes[0], takes[0],
                    "k-means" if uses_kmeans_init(model_cfg) else "random values")
    if uses_kmeans_init(model_cfg) and not has_head:
        t0 = time.perf_counter()
        paths = sample_init_paths(list(train_split.database.paths) +  # the whole training set
                                  list(train_split.queries.paths),
                                  ModelSettings.from_config(config).netvlad_init.images,
                                  config.seed)
        loader = BatchLoader(paths, size, t.infer_batch_size,
                             num_workers=data.num_workers, prefetch=data.prefetch,
                             load_fn=load_fn or (reader.loader(size) if reader is not None
                                                 else None))
        batches = progress_bar(loader, desc="NetVLAD init: local features for k-means",
                               total=len(loader), unit="batch",
                               enabled=multihost.is_primary())
        variables = initialize_netvlad(net, variables, batches, model_cfg, seed=config.seed)
        log.info("NetVLAD initialised by k-means on %d images in %.1f s", len(paths),
                 time.perf_counter() - t0)
    return variables


def _domain_params(domain, net, model_cfg, size, seed: int):
    """Initial parameters of the domain classifier for the backbone's feature shape."""
    feats = jax.eval_shape(
        lambda v, x: net.apply(v, x, method=type(net).features),
        abstract_variables(model_cfg), jax.ShapeDtypeStruct((1, *size, 3), np.uint8))
    return domain.init(jax.random.fold_in(jax.random.key(seed), 1), feats.shape)


def initial_state(config, run: Path, net, train, reader, mesh, negative_cache, domain,
                  init_load=None, aux_init=None):
    """(state, progress, negative cache, tx) of a run: resumed from the newest usable
    checkpoint in `run` if there is one, else fresh (`initial_variables`, plus the domain
    classifier's parameters with domain adaptation, and `aux_init()` as `state.aux`),
    placed on `mesh` as `train.param_sharding` says (`vgjax.train.sharding`)."""
    t = TrainSettings.from_config(config)
    size = DataSettings.from_config(config).resize

    def with_domain(variables, domain_params):
        if domain is None:
            return variables
        return {"params": {**variables["params"], DOMAIN: domain_params},
                "batch_stats": variables["batch_stats"]}

    abstract = abstract_variables(config.model)
    domain_abstract = (jax.eval_shape(lambda: _domain_params(domain, net, config.model,
                                                             size, 0))
                       if domain is not None else None)
    abstract = with_domain(abstract, domain_abstract)
    tx = optim.make_optimizer(t, optim.lr_scales(trainable_mask(abstract["params"], config.model),
                                                 config.model, t))
    target = jax.eval_shape(lambda v: TrainState.create(v, tx), abstract)
    if aux_init is not None:
        target = target.replace(aux=jax.eval_shape(aux_init))
    placement = state_shardings(mesh, target, t.param_sharding)
    target = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), target, placement)
    restored = checkpoint.restore_latest(
        run, target, None if negative_cache is None else negative_cache.shape)
    if restored is None:
        if multihost.is_primary():  # records of an earlier attempt that never saved a round
            (run / "metrics.jsonl").unlink(missing_ok=True)
            tensorboard.clear(run)
        variables = initial_variables(config, net, train, reader, init_load)
        if domain is not None:
            variables = with_domain(variables, _domain_params(domain, net, config.model, size,
                                                              config.seed))
        variables = multihost.from_process_zero(variables)
        fresh = TrainState.create(variables, tx)
        if aux_init is not None:
            fresh = fresh.replace(aux=multihost.from_process_zero(aux_init()))
        # host copies: device_put places those on every process of a multi-process mesh
        state = jax.device_put(jax.tree.map(np.asarray, fresh), placement)
        return state, Progress(), negative_cache, tx
    state, progress, cache, found, _ = restored
    if negative_cache is not None:
        negative_cache = cache.copy()
    log.info("Resuming from %s: epoch %d, %d mining rounds of it done, step %d, best %s %.2f",
             found, progress.epoch, progress.round, int(state.step), t.best_metric,
             progress.best_value)
    if multihost.is_primary():
        run_dir.truncate_metrics(run / "metrics.jsonl", int(state.step), progress.epoch)
    return state, progress, negative_cache, tx
