"""NetVLAD initialisation from k-means on backbone local features (the reference's recipe).

Local features of `netvlad_init.images` random training images are L2-normalised over
channels; `descriptors_per_image` random positions are kept from each image; faiss k-means
finds K centroids. Then, with c_hat the L2-normalised centroids,
    alpha = -ln(0.01) / mean_i(top1_i - top2_i),  top-k of the dot products x_i . c_hat_k
    conv kernel = alpha * c_hat,  centroids parameter = raw k-means centroids.
"""
from __future__ import annotations

from collections.abc import Iterable

import jax.numpy as jnp
import numpy as np

from vgjax.models.network import make_features_fn
from vgjax.models.settings import ModelSettings


def netvlad_params_from_descriptors(descriptors: np.ndarray, clusters: int,
                                    iterations: int = 100, seed: int = 0):
    """(M, D) L2-normalised descriptors -> (centroids (K, D), kernel (1, 1, D, K), alpha)."""
    import faiss

    x = np.ascontiguousarray(descriptors, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < clusters:
        raise ValueError(f"netvlad_init: need at least {clusters} descriptors of shape (M, D) "
                         f"for {clusters} clusters, got {x.shape}")
    kmeans = faiss.Kmeans(x.shape[1], clusters, niter=int(iterations), verbose=False,
                          seed=int(seed))
    kmeans.train(x)
    centroids = np.asarray(kmeans.centroids, np.float32)
    alpha = netvlad_alpha(centroids, x)
    unit = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    kernel = (alpha * unit).T[None, None].astype(np.float32)  # (1, 1, D, K)
    return centroids, kernel, alpha


def netvlad_alpha(centroids: np.ndarray, descriptors: np.ndarray) -> float:
    """-ln(0.01) / mean(top1 - top2) of descriptors . normalised centroids."""
    unit = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    dots = descriptors @ unit.T                                      # (M, K)
    top2 = np.partition(dots, dots.shape[1] - 2, axis=1)[:, -2:]     # (M, 2): 2nd, 1st
    return float(-np.log(0.01) / np.mean(top2[:, 1] - top2[:, 0]))


def sample_local_descriptors(features: np.ndarray, per_image: int,
                             rng: np.random.Generator) -> np.ndarray:
    """(N, h, w, D) features -> (N * per_image, D) L2-normalised, positions drawn without
    replacement in each image."""
    n, h, w, d = features.shape
    if per_image > h * w:
        raise ValueError(f"model.netvlad_init.descriptors_per_image = {per_image} but the "
                         f"feature map has only {h}x{w} = {h * w} positions")
    flat = features.reshape(n, h * w, d).astype(np.float32)
    flat = flat / np.maximum(np.linalg.norm(flat, axis=-1, keepdims=True), 1e-12)
    picks = [flat[i, rng.choice(h * w, per_image, replace=False)] for i in range(n)]
    return np.concatenate(picks, axis=0)


def sample_init_paths(paths, num_images: int, seed: int = 0) -> list:
    """`num_images` random paths (all of them if fewer), without replacement."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(paths), min(num_images, len(paths)), replace=False)
    return [paths[i] for i in idx]


def initialize_netvlad(net, variables, image_batches: Iterable, model_cfg, seed: int = 0):
    """New variables whose NetVLAD centroids/kernel come from k-means on `image_batches`.

    `image_batches` yields (B, H, W, 3) batches, uint8 or float in [0, 1] (the float
    resize of `train.cache_resize=eval`), or `(batch, n_valid)` pairs as
    `vgjax.data.pipeline.BatchLoader` does. Features are computed in eval mode.
    """
    if "centroids" not in variables["params"].get("aggregation", {}):
        raise ValueError(f"initialize_netvlad: model.aggregation is {model_cfg.aggregation!r}, "
                         "not 'netvlad'")
    model = ModelSettings.from_section(model_cfg)
    init = model.netvlad_init
    rng = np.random.default_rng(seed)
    features_fn = make_features_fn(net)
    chunks = []
    for item in image_batches:
        batch, n_valid = item if isinstance(item, tuple) else (item, len(item))
        feats = np.asarray(features_fn(variables, batch))[:n_valid]
        chunks.append(sample_local_descriptors(feats, init.descriptors_per_image, rng))
    if not chunks:
        raise ValueError("initialize_netvlad: no images to initialise NetVLAD from")
    descriptors = np.concatenate(chunks)
    centroids, kernel, _ = netvlad_params_from_descriptors(
        descriptors, model.netvlad_clusters, init.iterations, seed)
    params = dict(variables["params"])
    agg = dict(params["aggregation"])
    agg["centroids"] = jnp.asarray(centroids)
    agg["conv"] = {"kernel": jnp.asarray(kernel)}
    params["aggregation"] = agg
    out = dict(variables)
    out["params"] = params
    return out
