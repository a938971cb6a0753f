"""Batched descriptor extraction into a `DescriptorStore` (`vgjax.eval.store`).

Extraction only needs a callable `describe(images (B, H, W, 3)) -> (B, D)` (uint8 pixels, or
float32 in [0, 1] where a view was resampled in float); `Describer`
builds one from a saved model. The model is resolution-agnostic, so one describer serves
every view shape; each distinct (B, H, W) is one jit compilation, which is why batches are
always padded to `batch_size` and single_query groups images of equal shape.

Overlap: a thread pool decodes batch i+1.. (prefetch) while batch i runs on the device, and
the device result of batch i is fetched only after batch i+1 has been dispatched (JAX
dispatch is asynchronous), so host decoding, transfers and device compute run together.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import logging
import os
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np

from vgjax.data.pipeline import BatchLoader
from vgjax.eval.methods import ViewPlan
from vgjax.eval.store import DescriptorStore, StoreFactory, store_factory
from vgjax.models.io import load_model, read_model_info
from vgjax.models.network import build_network, make_describe_fn
from vgjax.progress import bar as progress_bar

log = logging.getLogger(__name__)

DescribeFn = Callable[[np.ndarray], "np.ndarray"]


class Describer:
    """`describe(images (B, H, W, 3)) -> (B, D)` from a jitted `fn(variables, images)`.

    The variables are placed on the device once. Results are returned as device arrays
    (not yet fetched), so callers can overlap the next batch with this one.
    """

    def __init__(self, fn: Callable, variables=None):
        self.fn = fn
        self.variables = variables
        if variables is not None:
            self.variables = jax.device_put(variables)

    def __call__(self, images):
        if self.variables is None:
            return self.fn(images)
        return self.fn(self.variables, images)

    @classmethod
    def from_model(cls, model_cfg, variables) -> Describer:
        return cls(make_describe_fn(build_network(model_cfg)), variables)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, model_overrides: dict | None = None):
        """(describer, model_cfg, image_size) from a model dir / run folder / checkpoint.

        `model_overrides` may only change fields that leave the parameters as they are
        (`dtype`, e.g. {"dtype": "bfloat16"}). `image_size` is the (H, W) the model was
        trained or converted for, as recorded beside it.
        """
        unknown = sorted(set(model_overrides or {}) - set(EVAL_MODEL_OVERRIDES))
        if unknown:
            raise ValueError(f"--config.model.{unknown[0]}: the architecture comes from the "
                             f"checkpoint; only {', '.join('model.' + k for k in EVAL_MODEL_OVERRIDES)} "
                             "can be changed for evaluation")
        model_cfg, variables = load_model(path)
        for key, value in (model_overrides or {}).items():
            model_cfg[key] = value
        image_size = tuple(int(s) for s in read_model_info(path).get("image_size", (480, 640)))
        return cls.from_model(model_cfg, variables), model_cfg, image_size


EVAL_MODEL_OVERRIDES = ("dtype", "matmul_precision")


def _groups(paths: Sequence[str], plan: ViewPlan, num_workers: int):
    """[(image indices, view shapes)]: one group unless view shapes depend on image size."""
    if plan.fixed_shapes:
        return [(np.arange(len(paths)), plan.view_shapes())]
    with cf.ThreadPoolExecutor(max(1, num_workers)) as pool:
        sizes = list(pool.map(plan.read.size, paths))
    groups: dict = collections.OrderedDict()
    for i, hw in enumerate(sizes):
        groups.setdefault(plan.view_shapes(hw), []).append(i)
    return [(np.array(ix), shapes) for shapes, ix in groups.items()]


def _batches(paths, plan: ViewPlan, batch_size: int, num_workers: int, prefetch: int):
    """Yields (image indices, views [(batch_size, h, w, 3) per view], n_valid), prefetched."""
    for ix, shapes in _groups(paths, plan, num_workers):
        loader = BatchLoader([paths[i] for i in ix], None, batch_size, num_workers=num_workers,
                             prefetch=prefetch, load_fn=plan.load_views, views=shapes)
        for b, (views, n) in enumerate(loader):
            yield ix[b * batch_size:b * batch_size + n], views, n


def extract_descriptors(paths: Sequence[str], describe: DescribeFn, plan: ViewPlan, *,
                        batch_size: int = 32, num_workers: int = 8, prefetch: int = 2,
                        make_store: StoreFactory | None = None,
                        progress: str | None = "describing images",
                        ) -> tuple[DescriptorStore, dict]:
    """Descriptors of `paths` under `plan`: a store of (len(paths) * rows_per_image, D).

    Row `i * rows_per_image + c` holds crop `c` of image `i`. Returns (store, stats) with
    stats = {"seconds", "images", "images_per_s", "compiled_shapes"}. `progress`: the label
    of its progress bar (shown on a terminal only); None: no bar.
    """
    if batch_size < 1:
        raise ValueError(f"test.batch_size must be >= 1, got {batch_size}")
    if len(paths) == 0:
        raise ValueError("no images to describe")
    make_store = make_store or store_factory()
    rows_per_image = plan.rows_per_image
    store: DescriptorStore | None = None
    shapes_seen = set()
    t0 = time.perf_counter()

    def finish(ix, outs, n):
        nonlocal store
        descs = []
        for o in outs:
            d = np.asarray(o, dtype=np.float32)
            if d.ndim != 2 or d.shape[0] != batch_size:
                raise ValueError(f"describe returned shape {d.shape}, expected ({batch_size}, D)")
            descs.append(d[:n])
        combined = plan.combine_views(descs)              # (n, rows_per_image, D)
        if store is None:
            store = make_store(len(paths) * rows_per_image, combined.shape[-1])
        rows = (ix[:, None] * rows_per_image + np.arange(rows_per_image)).reshape(-1)
        store.write_rows(rows, combined.reshape(-1, combined.shape[-1]))

    bar = progress_bar(total=len(paths), desc=progress or "", unit="img",
                       enabled=progress is not None)
    pending = None
    for ix, views, n in _batches(list(paths), plan, batch_size, num_workers, prefetch):
        shapes_seen.update(v.shape for v in views)
        outs = [describe(v) for v in views]               # dispatched, not yet fetched
        if pending is not None:
            finish(*pending)
        pending = (ix, outs, n)
        bar.update(n)
    finish(*pending)
    bar.close()
    seconds = time.perf_counter() - t0
    stats = {"seconds": seconds, "images": len(paths),
             "images_per_s": len(paths) / max(seconds, 1e-9),
             "compiled_shapes": len(shapes_seen)}
    return store, stats
