"""Training with the reference protocol: epochs of mining rounds, validation, early stopping,
then the test of the best model on every test dataset.

    train_and_evaluate(config, workdir)   # what `python -m vgjax.train` runs

Per epoch, `queries_per_epoch` training queries in rounds of `cache_refresh_rate`. A round:
descriptors of the cache (queries, their hard positives, sampled database images) ->
mining on the device -> train steps of `queries_per_step` groups of (query, positive,
N negatives) -> checkpoint `last`. After each epoch: recall on val, scheduler step, `best`.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vgjax import quiet_library_logs
from vgjax.config import ConfigError, to_json, validate_training
from vgjax.data.cache import DecodedImages
from vgjax.data.dataset import Split
from vgjax.data.pipeline import BatchLoader, normalize
from vgjax.data.sources import ImageReader, open_split
from vgjax.train import checkpoint, mining, multihost, optim
from vgjax.train.losses import get_loss, split_groups
from vgjax.train.state import Progress, TrainState, epoch_queries, round_key, round_rng

log = logging.getLogger("vgjax.train")


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN/inf; the state before it was saved."""


# Jitted pieces -------------------------------------------------------------------------------

def make_train_step(net, tx, loss_fn, negatives_per_query: int, mesh: Mesh):
    """Jitted `(state, uint8 images (B * (2 + N), H, W, 3)) -> (state, loss)`.

    Images are sharded over the mesh's 'data' axis (whole query groups per device), the
    state is replicated; XLA inserts the gradient all-reduce. A step whose loss is not
    finite leaves the state unchanged (the host then saves it and stops).
    """
    replicated = NamedSharding(mesh, P())
    batch = NamedSharding(mesh, P("data"))

    def step(state: TrainState, images):
        x = normalize(images)

        def compute_loss(params):
            desc, updates = net.apply({"params": params, "batch_stats": state.batch_stats}, x,
                                      train=True, mutable=["batch_stats"])
            q, p, n = split_groups(desc, negatives_per_query)
            return loss_fn(q, p, n), updates["batch_stats"]

        (loss, batch_stats), grads = jax.value_and_grad(compute_loss, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = jax.tree.map(lambda p, u: p + u.astype(p.dtype), state.params, updates)
        new = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state)
        # The host sees a loss one step late: once a loss is not finite, this and every later
        # step leave the state as it was, so what gets saved is the state before the failure.
        ok = jnp.isfinite(loss) & ~state.failed
        new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, state)
        return new.replace(failed=~ok), loss

    return jax.jit(step, in_shardings=(replicated, batch), out_shardings=(replicated, replicated),
                   donate_argnums=0)


@functools.partial(jax.jit, static_argnames="rows")
def _stack_rows(batches, valid, rows: int):
    """Whole batches -> `rows` rows: the first `valid` real, the rest zeros. `valid` is
    traced, so this compiles once per (batch count, rows), instead of the eager slice,
    concatenation and pad of every round each compiling for that round's sizes."""
    out = jnp.concatenate(batches, axis=0)
    out = jnp.where(jnp.arange(out.shape[0])[:, None] < valid, out, 0)
    if out.shape[0] >= rows:
        return out[:rows]
    return jnp.pad(out, ((0, rows - out.shape[0]), (0, 0)))


def describe_paths(describe, variables, paths, size, batch_size: int, num_workers: int,
                   prefetch: int, sharding=None, desc: str | None = None, reader=None,
                   num_rows: int | None = None):
    """Descriptors (num_rows, D) of images (default len(paths) rows; rows past the images
    are zeros), kept on the device (batches split over the devices of `sharding` when given;
    each process loads only its rows of every batch, and the result is whole on every
    device)."""
    from tqdm import tqdm
    rows = slice(0, batch_size)
    if sharding is not None:
        rows = multihost.process_rows(sharding, batch_size)
    local_paths = multihost.local_batch_paths(paths, batch_size, rows)
    outs = []
    loader = BatchLoader(local_paths, size, rows.stop - rows.start, num_workers=num_workers,
                         prefetch=prefetch,
                         load_fn=reader.loader(size) if reader is not None else None)
    for images, _ in tqdm(loader, desc=desc, leave=False,
                          disable=desc is None or not multihost.is_primary()):
        if sharding is not None:
            images = jax.make_array_from_process_local_data(
                sharding, images, (batch_size, *images.shape[1:]))
        outs.append(describe(variables, images))
    out = _stack_rows(tuple(outs), len(paths), len(paths) if num_rows is None else num_rows)
    return out if sharding is None else multihost.replicate(out, sharding.mesh)


# Run folder ----------------------------------------------------------------------------------

class MetricsWriter:
    """Appends JSON lines to `metrics.jsonl` (one per train step and per epoch); writes
    nothing when not `enabled` (the other processes of a multi-process run)."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path = path
        self.file = open(path, "a", buffering=1) if enabled else None

    def write(self, **record) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def truncate_metrics(path: Path, step: int, epoch: int) -> None:
    """Drops records written after the checkpoint being resumed from (a killed run may have
    logged steps whose state was never saved)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if r.get("type") == "step" and r["step"] > step:
            continue
        if r.get("type") == "epoch" and r["epoch"] >= epoch:
            continue
        keep.append(line)
    path.write_text("".join(l + "\n" for l in keep))


def plot_lr(metrics_path: Path, out: Path) -> None:
    """Learning rate per train step -> `lr.png`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps, lrs = [], []
    for line in metrics_path.read_text().splitlines():
        r = json.loads(line)
        if r.get("type") == "step":
            steps.append(r["step"])
            lrs.append(r["lr"])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, lrs)
    ax.set_xlabel("train step")
    ax.set_ylabel("learning rate")
    ax.set_yscale("log" if lrs and min(lrs) > 0 else "linear")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def _setup_logging(run: Path) -> logging.Handler | None:
    """`train.log` (written by process 0 only) and a console handler if none is set."""
    root = logging.getLogger()
    handler = None
    if multihost.is_primary():
        handler = logging.FileHandler(run / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    quiet_library_logs()
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in root.handlers):
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        root.addHandler(stream)
    return handler


# Model set-up --------------------------------------------------------------------------------

def initial_variables(config, net, train_split: Split, reader=None) -> dict:
    """Pretrained model dir if given, else a fresh init; then NetVLAD k-means init when
    enabled and the pretrained model brings no NetVLAD head."""
    from vgjax.models.io import load_model, merge_pretrained, read_model_info
    from vgjax.models.network import init_variables
    model_cfg = config.model
    size = tuple(config.data.resize)
    variables = init_variables(model_cfg, jax.random.key(config.seed), size)
    has_head = False
    if model_cfg.pretrained:
        loaded_cfg, loaded = load_model(model_cfg.pretrained)
        # another cut (conv4 / conv5) of the same ResNet is fine; another depth or width not
        theirs = (loaded_cfg.backbone.rsplit("conv", 1)[0], loaded_cfg.get("resnet_width", 64))
        ours = (model_cfg.backbone.rsplit("conv", 1)[0], model_cfg.get("resnet_width", 64))
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
    else:
        frozen = model_cfg.trainable_from != "conv1"
        log.warning("model.pretrained is empty: the network starts from random weights%s",
                    f" and the stages before {model_cfg.trainable_from} stay frozen at them "
                    "(convert ImageNet weights with scripts/convert_torch_weights.py)"
                    if frozen else "")
    if model_cfg.aggregation == "netvlad" and model_cfg.netvlad_init.enabled and not has_head:
        from vgjax.models.netvlad_init import initialize_netvlad, sample_init_paths
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


# The run -------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Run:
    """Fixed things of a run, derived once from the config."""
    config: object
    run: Path
    train: Split
    val: Split
    reader: ImageReader          # how the train/val split's paths become pixels
    tables: mining.MiningTables
    net: object
    describe: object
    train_step: object
    mesh: Mesh
    metrics: MetricsWriter

    @property
    def t(self):
        return self.config.train


def _mesh(num_devices: int) -> Mesh:
    devices = jax.devices()
    if num_devices:
        if num_devices > len(devices):
            raise ValueError(f"train.num_devices={num_devices} but only {len(devices)} devices")
        devices = devices[:num_devices]
    if len({d.process_index for d in devices}) < jax.process_count():
        raise ValueError(f"train.num_devices={num_devices} leaves some of the "
                         f"{jax.process_count()} processes without a device; use 0 (all)")
    return Mesh(np.array(devices), ("data",))


def _eval_describe(r: _Run, state: TrainState):
    variables = state.variables
    if r.t.get("eval_with_averaged_weights", False):
        variables = {"params": optim.averaged_params(state.params, state.opt_state),
                     "batch_stats": state.batch_stats}
    variables = jax.tree.map(lambda x: x.addressable_data(0), variables)  # one local copy
    return (lambda images: r.describe(variables, images)), variables


def _round(r: _Run, state: TrainState, progress: Progress, queries: np.ndarray,
           negative_cache, lr: float):
    """One mining round then its train steps; returns (state, negative_cache, bad_step):
    `bad_step` is the step of the round whose loss was not finite, else None."""
    t, cfg = r.t, r.config
    size = tuple(cfg.data.resize)
    epoch, rnd = progress.epoch, progress.round
    io = dict(num_workers=int(cfg.data.num_workers), prefetch=int(cfg.data.prefetch))
    t0 = time.perf_counter()
    plan = mining.plan_round(t.mining, r.tables, queries, round_rng(cfg.seed, epoch, rnd),
                             int(t.neg_samples_num))
    variables = state.variables
    io["sharding"] = NamedSharding(r.mesh, P("data"))
    io["reader"] = r.reader
    q_desc = describe_paths(r.describe, variables, r.train.queries.paths[queries], size,
                            int(t.infer_batch_size), desc="cache: queries", **io)
    cache_paths = r.train.database.paths[plan.cache_db_ids[:plan.num_cache]]
    c_desc = describe_paths(r.describe, variables, cache_paths, size, int(t.infer_batch_size),
                            desc="cache: database", num_rows=len(plan.cache_db_ids), **io)
    jax.block_until_ready((q_desc, c_desc))  # so that the log splits cache and mining time
    t1 = time.perf_counter()
    previous = negative_cache[queries] if negative_cache is not None else None
    positives, negatives = mining.mine(
        t.mining, round_key(cfg.seed, epoch, rnd), plan, q_desc, c_desc,
        int(t.negatives_per_query), int(t.neg_samples_num), r.tables.database_size, previous)
    if negative_cache is not None:
        negative_cache[queries] = negatives
    del q_desc, c_desc
    t2 = time.perf_counter()

    b = int(t.queries_per_step)
    steps = len(queries) // b
    db_paths = r.train.database.paths
    groups = np.concatenate([r.train.queries.paths[queries][:, None], db_paths[positives][:, None],
                             db_paths[negatives]], axis=1)[:steps * b]      # (Q, 2 + N)
    step_images = b * groups.shape[1]
    batch_sharding = NamedSharding(r.mesh, P("data"))
    # this process's rows of every step's batch: whole groups, as b is a multiple of the devices
    rows = multihost.process_rows(batch_sharding, step_images)
    local_paths = multihost.local_batch_paths(groups.reshape(-1), step_images, rows)
    loader = BatchLoader(local_paths, size, rows.stop - rows.start,
                         num_workers=io["num_workers"], prefetch=io["prefetch"],
                         load_fn=r.reader.loader(size))
    losses = []
    pending = None
    base_step = int(jax.device_get(state.step))
    from tqdm import tqdm

    def record(i, loss):
        value = float(loss)
        losses.append(value)
        r.metrics.write(type="step", step=base_step + i + 1, epoch=epoch, round=rnd,
                        loss=value, lr=lr)
        return math.isfinite(value)

    for i, (images, _) in enumerate(tqdm(loader, desc=f"epoch {epoch} round {rnd}",
                                         leave=False, disable=not multihost.is_primary())):
        images = jax.make_array_from_process_local_data(
            batch_sharding, images, (step_images, *images.shape[1:]))
        state, loss = r.train_step(state, images)
        if pending is not None and not record(*pending):
            return state, negative_cache, pending[0]
        pending = (i, loss)
    if pending is not None and not record(*pending):
        return state, negative_cache, pending[0]
    t3 = time.perf_counter()
    log.info("epoch %d round %d: cache %d images %.1f s, mining %.2f s, %d steps %.1f s "
             "(%.0f img/s), loss %.4f", epoch, rnd, len(queries) + plan.num_cache, t1 - t0,
             t2 - t1, steps, t3 - t2, steps * b * groups.shape[1] / max(t3 - t2, 1e-9),
             float(np.mean(losses)) if losses else float("nan"))
    return state, negative_cache, None


def _save(r: _Run, name: str, state, progress, negative_cache):
    variables = None
    if r.t.get("eval_with_averaged_weights", False):
        _, variables = _eval_describe(r, state)
    checkpoint.save(r.run, name, state, progress, r.config.model, negative_cache,
                    seed=int(r.config.seed), model_variables=variables,
                    image_size=tuple(r.config.data.resize))


def train_and_evaluate(config, workdir) -> dict:
    """Trains (resuming from `workdir` if it holds a checkpoint), tests the best model on
    every `data.test_datasets`, writes `results.json` and returns it."""
    from vgjax.models.network import build_network, make_describe_fn, trainable_mask

    validate_training(config)
    run = Path(workdir)
    run.mkdir(parents=True, exist_ok=True)
    handler = _setup_logging(run)
    try:
        return _train_and_evaluate(config, run, build_network, make_describe_fn, trainable_mask)
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _note_config_changes(path: Path, config) -> None:
    """A run resumed with other options: say which ones (the new values apply from now on)."""
    if not path.exists():
        return
    before = _flatten(json.loads(path.read_text()))
    now = _flatten(json.loads(to_json(config)))
    changed = {k: (before.get(k), now.get(k)) for k in sorted(set(before) | set(now))
               if before.get(k) != now.get(k)}
    if changed:
        log.warning("%s differs from this run's config: %s", path, "; ".join(
            f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items()))


def _train_and_evaluate(config, run, build_network, make_describe_fn, trainable_mask):
    t = config.train
    primary = multihost.is_primary()
    if primary:
        _note_config_changes(run / "config.json", config)
        (run / "config.json").write_text(to_json(config))
    train, reader = open_split(config.data, config.data.train_dataset, "train")
    val, _ = open_split(config.data, config.data.train_dataset, "val")
    if config.data.cache_decoded:  # every round and validation re-read these: decode once
        size = tuple(config.data.resize)
        paths = np.concatenate([train.database.paths, train.queries.paths,
                                val.database.paths, val.queries.paths])
        decoded = DecodedImages(paths, size, cache_dir=run / "decoded",
                                num_workers=int(config.data.num_workers),
                                load_fn=reader.loader(size), progress=True)
        reader = decoded.reader(reader)
    log.info("%s; %s", train.summary(), val.summary())
    mesh = _mesh(int(t.get("num_devices", 0)))
    n_dev = mesh.devices.size
    if int(t.queries_per_step) % n_dev:
        raise ValueError(f"train.queries_per_step={t.queries_per_step} must be a multiple of the "
                         f"{n_dev} devices used (set train.num_devices)")
    if int(t.infer_batch_size) % n_dev:
        raise ValueError(f"train.infer_batch_size={t.infer_batch_size} must be a multiple of "
                         f"the {n_dev} devices used")
    if jax.process_count() > 1:
        step_images = int(t.queries_per_step) * (2 + int(t.negatives_per_query))
        rows = multihost.process_rows(NamedSharding(mesh, P("data")), step_images)
        log.info("process %d of %d (%d of the %d devices) loads rows [%d, %d) of every train "
                 "batch of %d images", jax.process_index(), jax.process_count(),
                 jax.local_device_count(), n_dev, rows.start, rows.stop, step_images)
    net = build_network(config.model)
    scheduler = optim.make_scheduler(t)
    negative_cache = (np.full((len(train.queries), int(t.negatives_per_query)), -1, np.int32)
                      if t.mining == "full" else None)

    replicated = NamedSharding(mesh, P())
    found = checkpoint.find(run, "last")
    progress = Progress()
    if found is None:
        variables = multihost.from_process_zero(initial_variables(config, net, train, reader))
        tx = optim.make_optimizer(t, trainable_mask(variables["params"], config.model))
        # host copies: device_put places those on every process of a multi-process mesh
        state = jax.device_put(jax.tree.map(np.asarray, TrainState.create(variables, tx)),
                               replicated)
    else:
        from vgjax.models.network import abstract_variables
        abstract = abstract_variables(config.model)
        tx = optim.make_optimizer(t, trainable_mask(abstract["params"], config.model))
        target = jax.eval_shape(lambda v: TrainState.create(v, tx), abstract)
        target = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), target)
        state, progress, cache = checkpoint.restore(
            found, target, None if negative_cache is None else negative_cache.shape)
        if negative_cache is not None:
            negative_cache = cache.copy()
        scheduler.load_state_dict(progress.scheduler)
        log.info("Resuming from %s: epoch %d, %d mining rounds of it done, step %d, best R@5 %.2f",
                 found, progress.epoch, progress.round, int(state.step), progress.best_r5)
        if primary:
            truncate_metrics(run / "metrics.jsonl", int(state.step), progress.epoch)
    if progress.finished:
        log.info("Training already finished; testing the best model")
    state = state.replace(opt_state=optim.set_learning_rate(state.opt_state, scheduler.lr))
    r = _Run(config=config, run=run, train=train, val=val, reader=reader,
             tables=mining.MiningTables.from_split(train), net=net,
             describe=make_describe_fn(net),
             train_step=make_train_step(net, tx, get_loss(t.loss, float(t.margin)),
                                        int(t.negatives_per_query), mesh),
             mesh=mesh, metrics=MetricsWriter(run / "metrics.jsonl", enabled=primary))
    try:
        _epochs(r, state, progress, scheduler, negative_cache)
    finally:
        r.metrics.close()
    return _test(r)


def validation_settings(test_cfg):
    """Validation as in the reference: hard-resized queries, one scale, no PCA, nothing saved;
    `test.method`, multi-scale and PCA apply to the final test only."""
    val = test_cfg.copy_and_resolve_references()
    with val.unlocked():
        val.method, val.scales, val.pca_dim = "hard_resize", [1.0], 0
        val.save_predictions, val.num_pictures = False, 0
    return val


def _epochs(r: _Run, state, progress: Progress, scheduler, negative_cache):
    t, cfg = r.t, r.config
    rounds = math.ceil(int(t.queries_per_epoch) / int(t.cache_refresh_rate))
    from vgjax.eval import evaluate
    if t.validate_initial and progress.epoch == 0 and progress.round == 0:
        describe, _ = _eval_describe(r, state)
        result = evaluate(r.val, describe, validation_settings(cfg.test), cfg.data,
                          name=f"{r.val.dataset}-val", reader=r.reader)
        r.metrics.write(type="initial_val", val=result.recalls)
        log.info("before training: val %s", result.summary())
    while not progress.finished and progress.epoch < int(t.epochs):
        epoch = progress.epoch
        t_epoch = time.perf_counter()
        queries = epoch_queries(cfg.seed, epoch, len(r.train.queries), int(t.queries_per_epoch))
        lr = scheduler.lr
        while progress.round < rounds:
            rq = int(t.cache_refresh_rate)
            chunk = queries[progress.round * rq:(progress.round + 1) * rq]
            state, negative_cache, bad_step = _round(r, state, progress, chunk,
                                                        negative_cache, lr)
            if bad_step is not None:
                _save(r, "nan", state, progress, negative_cache)
                raise NonFiniteLossError(
                    f"loss is not finite at epoch {epoch}, round {progress.round}, step "
                    f"{bad_step} of the round (train.loss={t.loss}, train.lr={lr}); the state "
                    f"before it is in {r.run / 'checkpoints' / 'nan'}, and "
                    f"{r.run / 'checkpoints' / 'last'} holds the previous round: lower "
                    "train.lr and resume with the same --workdir")
            progress.round += 1
            _save(r, "last", state, progress, negative_cache)
        describe, _ = _eval_describe(r, state)
        result = evaluate(r.val, describe, validation_settings(cfg.test), cfg.data,
                          name=f"{r.val.dataset}-val", reader=r.reader)
        r5 = float(result.recalls["R@5"])
        progress.val_history.append(result.recalls)
        improved = r5 > progress.best_r5
        if improved:
            progress.best_r5, progress.best_epoch, progress.not_improved = r5, epoch, 0
        else:
            progress.not_improved += 1
        new_lr = scheduler.step(r5)
        progress.scheduler = scheduler.state_dict()
        state = state.replace(opt_state=optim.set_learning_rate(state.opt_state, new_lr))
        epoch_time = time.perf_counter() - t_epoch
        r.metrics.write(type="epoch", epoch=epoch, epoch_time_s=epoch_time, val=result.recalls,
                        lr=lr, next_lr=new_lr, best_r5=progress.best_r5)
        log.info("epoch %d done in %.1f s: val %s%s; best R@5 %.2f (epoch %d); next lr %.3g",
                 epoch, epoch_time, result.summary(), " (new best)" if improved else "",
                 progress.best_r5, progress.best_epoch, new_lr)
        progress.epoch += 1
        progress.round = 0
        if progress.not_improved >= int(t.patience):
            log.info("Early stopping: val R@5 has not improved for %d epochs", t.patience)
            progress.finished = True
        if improved:
            _save(r, "best", state, progress, negative_cache)
        _save(r, "last", state, progress, negative_cache)
        if multihost.is_primary():
            plot_lr(r.run / "metrics.jsonl", r.run / "lr.png")


def _test(r: _Run) -> dict:
    """The best model on the test split of every `data.test_datasets` -> results.json.

    Every process tests (the same numbers); process 0 writes the files."""
    from vgjax.eval import Describer, evaluate, report
    from vgjax.models.io import load_model
    cfg = r.config
    best = checkpoint.find(r.run, "best")
    if best is None:
        raise FileNotFoundError(f"{r.run}/checkpoints/best does not exist: no epoch finished")
    _, variables = load_model(best / "model")
    describe = Describer(r.describe, variables)  # validation's compiled function, same model
    primary = multihost.is_primary()
    evaluated = []
    for name in cfg.data.test_datasets:
        split, reader = open_split(cfg.data, name, "test")
        log.info("Testing on %s", split.summary())
        evaluated.append(evaluate(split, describe, cfg.test, cfg.data,
                                  out_dir=r.run if primary else None,
                                  name=split.dataset, reader=reader))
    if primary:
        report.write_results_json(evaluated, r.run / "results.json")
    rows, counts = report.results_rows(evaluated)
    log.info("Test results of the best model (epoch %s):\n%s",
             checkpoint.read_progress(best)["best_epoch"], report.format_table(rows, counts))
    return {e.name: e.recalls for e in evaluated}
