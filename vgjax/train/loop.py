"""Training with the reference protocol: epochs of mining rounds, evaluators, early stopping,
then the evaluators of the best model.

    train_and_evaluate(config, workdir)   # what `python -m vgjax.train` runs

Per epoch, `queries_per_epoch` training queries in rounds of `cache_refresh_rate`
(`vgjax.train.rounds`), each followed by checkpoint `last`. The entries of `config.evals`
run before training (`when` has "before"; their files go to RUN/before/<entry>/), after
every epoch ("epoch": validation, whose `train.best_metric` picks the best model, drives the
scheduler and early stopping) and on the best model at the end ("end": the final test, which
writes `results.json`).

`train.batching` picks the loop (`vgjax.train.batching`): `triplets` is this module's
mining rounds; `places` (`vgjax.train.places_loop`) trains on place batches and shares
`run_epochs` (evaluators, scheduler, early stopping, checkpoints) and `_final`.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from vgjax.train.settings import validate_training
from vgjax.data.augment import host_query_augment, make_query_augment
from vgjax.data.cache import CACHE_MODES, cache_loader, decode_once, target_images
from vgjax.data.dataset import check_evaluable
from vgjax.data.settings import DataSettings
from vgjax.data.ops import train_query
from vgjax.data.sources import open_split, with_view
from vgjax.eval import evaluators
from vgjax.eval.extract import Describer
from vgjax.eval.report import format_table
from vgjax.models.io import load_model
from vgjax.models.network import build_network, make_describe_fn
from vgjax.train import checkpoint, mining, multihost, optim, run_dir
from vgjax.train.adaptation import DomainAdaptation, network_variables
from vgjax.train.batching import BATCHING
from vgjax.train.init import initial_state
from vgjax.train.interrupt import interrupted
from vgjax.train.losses import make_term
from vgjax.train.rounds import RoundContext, run_round
from vgjax.train.schedules import make_scheduler
from vgjax.train.settings import TrainSettings
from vgjax.train.sharding import shardings_of
from vgjax.train.state import Progress, TrainState, epoch_queries
from vgjax.train.step import NonFiniteLossError, make_mesh, make_train_step

log = logging.getLogger("vgjax.train")

__all__ = ["NonFiniteLossError", "train_and_evaluate"]


def train_and_evaluate(config, workdir) -> dict:
    """Trains (resuming from `workdir` if it holds a checkpoint), runs the `end` evaluators
    on the best model, writes `results.json` and returns the results: {dataset: recalls}
    for the `test` entry, {'<entry>/<dataset>': recalls} for the others."""
    validate_training(config)
    run = Path(workdir)
    run_dir.check_writable(run)
    handler = run_dir.setup_logging(run)
    try:  # triplets: _train_and_evaluate below; places: vgjax.train.places_loop
        return BATCHING.get(TrainSettings.from_config(config).batching).run(config, run)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: `last` already holds the last round
        raise interrupted(run, e) from None
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()


def _check_devices(t, mesh) -> None:
    n_dev = mesh.devices.size
    for field in ("queries_per_step", "infer_batch_size"):
        if t[field] % n_dev:
            raise ValueError(f"train.{field}={t[field]} must be a multiple of the {n_dev} "
                             "devices used (set train.num_devices)")
    if jax.process_count() > 1:
        step_images = t.queries_per_step * (2 + t.negatives_per_query)
        rows = multihost.process_rows(NamedSharding(mesh, P("data")), step_images)
        log.info("process %d of %d (%d of the %d devices) loads rows [%d, %d) of every train "
                 "batch of %d images", jax.process_index(), jax.process_count(),
                 jax.local_device_count(), n_dev, rows.start, rows.stop, step_images)


def _train_and_evaluate(config, run: Path) -> dict:
    t, data = TrainSettings.from_config(config), DataSettings.from_config(config)
    if multihost.is_primary():
        run_dir.write_config(run, config)
    train, reader = open_split(config.data, data.train_dataset, "train")
    evals = evaluators.build_all(config)
    if reader.check is not None:  # images that cannot be read, before any work
        reader.check([*train.database.paths, *train.queries.paths],
                     f"{train.dataset} (train database and queries)")
    for e in evals.values():
        e.check_files()
    # msls_weighted: each query's chance of a round (refused here, before any work, when the
    # file names do not say night / sideways); None: uniform
    weights = mining.get_miner(t.mining).query_weights(train.queries.paths)
    cache_load = cache_loader(config, reader)  # None: the cache reads the training images
    host_augment = host_query_augment(config, reader)  # None: queries augmented in the train step
    if data.train_query_crop:  # the reference's RandomResizedCrop(scale=(1, 1))
        reader = with_view(reader, train.queries.paths, train_query)
    epoch_evals = [e for e in evals.values() if "epoch" in e.when]
    for e in epoch_evals:  # early stopping on a split without positives is meaningless
        for d in e.datasets:
            check_evaluable(e.open(d)[0], f"evals.{e.name}")
    mesh = make_mesh(t.num_devices)
    _check_devices(t, mesh)
    pool = None
    cache_mode = CACHE_MODES.get(data.cache_decoded)
    if cache_mode.decodes:
        reader, decoded = decode_once(data, run, train, reader, epoch_evals)
        if cache_mode.on_device:  # replicated: every device gathers locally
            pool = jax.device_put(np.asarray(decoded.array), NamedSharding(mesh, P()))
            log.info("data.cache_decoded=%s: %d training images (%.2f GB) on %d device(s)",
                     data.cache_decoded, len(decoded), pool.nbytes / 2**30,
                     mesh.devices.size)
    log.info("%s; %s", train.summary(), "; ".join(
        e.open(d)[0].summary() for e in epoch_evals for d in e.datasets))
    target = target_images(data, t.da.target_dir, run) if t.da.enabled else None
    net = build_network(config.model)
    negative_cache = (np.full((len(train.queries), t.negatives_per_query), -1, np.int32)
                      if mining.get_miner(t.mining).remembers_negatives else None)
    domain = (DomainAdaptation.from_config(t.da, t.steps_per_epoch) if target is not None
              else None)
    state, progress, negative_cache, tx = initial_state(config, run, net, train, reader, mesh,
                                                         negative_cache, domain, cache_load)
    if progress.finished:
        log.info("Training already finished; evaluating the best model")
    terms = [make_term(t.loss, t.loss_args.kwargs())]
    if domain is not None:
        terms.append(make_term("domain", weight=t.da.weight))
    describe = make_describe_fn(net)
    augment = make_query_augment(t.query_augment if host_augment is None else
                                 host_augment.device_specs, 2 + t.negatives_per_query)
    ctx = RoundContext(
        train=train, reader=reader, tables=mining.MiningTables.from_split(train),
        mining=t.mining, describe=describe,
        train_step=make_train_step(net, tx, terms, t.negatives_per_query, mesh,
                                   augment=augment, seed=config.seed, domain=domain,
                                   gather=pool is not None,
                                   state_sharding=shardings_of(state)),
        target=target, pool=pool, cache_load=cache_load, host_augment=host_augment,
        describe_rows=jax.jit(lambda v, images, rows: describe(v, images[rows])),
        mesh=mesh, metrics=run_dir.open_metrics(run, t.tensorboard,
                                                int(jax.device_get(state.step))),
        size=data.resize, seed=config.seed,
        queries_per_step=t.queries_per_step, negatives_per_query=t.negatives_per_query,
        neg_samples_num=t.neg_samples_num, infer_batch_size=t.infer_batch_size,
        mining_chunk_bytes=int(t.mining_chunk_mb * (1 << 20)),
        num_workers=data.num_workers, prefetch=data.prefetch)
    try:
        _epochs(config, t, run, ctx, evals, state, progress, negative_cache, weights)
        return _final(config, run, evals, describe, ctx.metrics)
    finally:
        ctx.metrics.close()


def _eval_variables(t: TrainSettings, state: TrainState):
    """The network's variables evaluations use (ASGD's averaged copy when asked; no domain
    classifier), one local copy."""
    variables = state.variables
    if t.eval_with_averaged_weights:
        variables = {"params": optim.averaged_params(state.params, state.opt_state),
                     "batch_stats": state.batch_stats}
    return jax.tree.map(_local_copy, network_variables(variables))


def _local_copy(x: jax.Array) -> jax.Array:
    """A whole copy of `x` on one local device: its first shard when replicated, else its
    shards gathered (`train.param_sharding=fsdp`)."""
    if x.is_fully_replicated:
        return x.addressable_data(0)
    return jax.device_put(multihost.to_host(x), x.addressable_data(0).devices().pop())


def _save(config, t: TrainSettings, run, name: str, state, progress, negative_cache):
    variables = _eval_variables(t, state)
    checkpoint.save(run, name, state, progress, config.model, negative_cache,
                    seed=config.seed, model_variables=variables,
                    image_size=DataSettings.from_config(config).resize)


def _evaluate(evals, when: str, describe, variables,
              out_root: Path | None = None) -> tuple[dict, dict, dict]:
    """Runs the evaluators scheduled `when`: (flat metrics, {entry: recalls} where an entry
    has one dataset, {entry: {dataset: recalls}}). With `out_root`, each entry writes its
    files (results.json, predictions/<dataset>.npz as its settings ask) to out_root/<entry>."""
    metrics, recalls, by_dataset = {}, {}, {}
    for e in evals.values():
        if when not in e.when:
            continue
        out_dir = None if out_root is None else out_root / e.name
        results = e.run(lambda images: describe(variables, images), out_dir=out_dir)
        metrics.update(e.metrics(results))
        by_dataset[e.name] = {r.name: r.recalls for r in results}
        if len(results) == 1:
            recalls[e.name] = results[0].recalls
        log.info("%s: %s", e.name, "; ".join(f"{r.name} {r.summary()} [{r.protocol_label()}]"
                                             for r in results))
    return metrics, recalls, by_dataset


def _epochs(config, t: TrainSettings, run: Path, ctx: RoundContext, evals, state,
            progress: Progress, negative_cache, weights=None):
    rounds = math.ceil(t.queries_per_epoch / t.cache_refresh_rate)

    def train_epoch(state, progress: Progress, lr):
        """The mining rounds of epoch `progress.epoch` not done yet, each saved as `last`."""
        epoch = progress.epoch
        queries = epoch_queries(config.seed, epoch, len(ctx.train.queries), t.queries_per_epoch,
                                weights, t.cache_refresh_rate)
        while progress.round < rounds:
            rq = t.cache_refresh_rate
            chunk = queries[progress.round * rq:(progress.round + 1) * rq]
            result = run_round(ctx, state, progress, chunk, negative_cache)
            state = result.state
            if result.bad_step is not None:
                _save(config, t, run, "nan", state, progress, negative_cache)
                raise NonFiniteLossError(
                    f"loss is not finite at step {result.bad_step + 1} (epoch {epoch}, round "
                    f"{progress.round}; train.loss={t.loss}, train.lr={lr}); the state before "
                    f"it is in {run / 'checkpoints' / 'nan'}, and "
                    f"{run / 'checkpoints' / 'last'} holds the previous round: lower "
                    "train.lr and resume with the same --workdir")
            progress.round += 1
            progress.epoch_loss_sum += float(np.sum(result.losses))
            progress.epoch_loss_steps += len(result.losses)
            _save(config, t, run, "last", state, progress, negative_cache)
        return state

    run_epochs(config, t, run, evals, ctx.describe, ctx.metrics, state, progress, train_epoch,
               negative_cache)


def run_epochs(config, t: TrainSettings, run: Path, evals, describe, metrics_writer, state,
               progress: Progress, train_epoch, negative_cache=None):
    """Epochs until `train.epochs` or early stopping: `train_epoch(state, progress, lr) ->
    state` trains what is left of epoch `progress.epoch` (adding its losses to
    `progress.epoch_loss_*`, saving `last` as it goes), then the `epoch` evaluators pick the
    best model, step the scheduler and early stopping, and `last` (and `best`) are saved.
    The `before` evaluators run first on a fresh run."""
    scheduler = make_scheduler(t)
    if progress.scheduler:
        scheduler.load_state_dict(progress.scheduler)
    _, best_key = evaluators.parse_metric(config, t.best_metric)
    if progress.epoch == 0 and progress.round == 0 and not progress.finished:
        # the untrained model's files (RUN/before/<entry>/): what paired comparisons with
        # the trained model (`python -m vgjax.eval.compare`) need
        _, recalls, by_dataset = _evaluate(
            evals, "before", describe, _eval_variables(t, state),
            out_root=run / "before" if multihost.is_primary() else None)
        for name, results in by_dataset.items():  # e.g. "initial_val": {"val": recalls}
            single = {name: recalls[name]} if name in recalls else {}
            metrics_writer.write(type=f"initial_{name}", results=results, **single)
            metrics_writer.pictures(name, run / "before" / name, list(results))
    while not progress.finished and progress.epoch < t.epochs:
        epoch = progress.epoch
        t_epoch = time.perf_counter()
        lr = optim.learning_rate(state.opt_state)
        state = train_epoch(state, progress, lr)
        train_loss = progress.epoch_loss_sum / max(progress.epoch_loss_steps, 1)
        metrics, recalls, _ = _evaluate(evals, "epoch", describe,
                                        _eval_variables(t, state))
        value = float(metrics[best_key])
        progress.val_history.append(metrics)
        improved = value > progress.best_value
        if improved:
            progress.best_value, progress.best_epoch, progress.not_improved = value, epoch, 0
        else:
            progress.not_improved += 1
        new_lr = scheduler.step(value, lr)
        progress.scheduler = scheduler.state_dict()
        state = state.replace(opt_state=optim.set_learning_rate(state.opt_state, new_lr))
        epoch_time = time.perf_counter() - t_epoch
        metrics_writer.write(global_step=int(jax.device_get(state.step)), type="epoch",
                             epoch=epoch, epoch_time_s=epoch_time, train_loss=train_loss,
                             metrics=metrics, lr=lr, next_lr=new_lr,
                             best_value=progress.best_value, **recalls)
        log.info("epoch %d done in %.1f s: mean loss %.4f; %s %.2f%s; best %.2f (epoch %d); "
                 "next lr %.3g", epoch, epoch_time, train_loss, best_key, value,
                 " (new best)" if improved else "", progress.best_value, progress.best_epoch,
                 new_lr)
        progress.epoch += 1
        progress.round = 0
        progress.epoch_loss_sum, progress.epoch_loss_steps = 0.0, 0
        if progress.not_improved >= t.patience:
            log.info("Early stopping: %s has not improved for %d epochs", best_key, t.patience)
            progress.finished = True
        if improved:
            _save(config, t, run, "best", state, progress, negative_cache)
        _save(config, t, run, "last", state, progress, negative_cache)
        if multihost.is_primary():
            run_dir.plot_lr(run / "metrics.jsonl", run / "lr.png")
            if t.da.enabled:
                run_dir.plot_steps(run / "metrics.jsonl", run / "domain.png",
                                   ("loss/domain", "domain_acc", "grl_lambda"))


def _final(config, run: Path, evals, describe, metrics_writer) -> dict:
    """The `end` evaluators on the best model. Every process evaluates (the same numbers);
    process 0 writes the files: the `test` entry into the run folder, others into
    RUN/<entry>/, and the recalls and pictures into TensorBoard at the last step."""
    best = checkpoint.find(run, "best")
    if best is None:
        raise FileNotFoundError(f"{run}/checkpoints/best does not exist: no epoch finished")
    _, variables = load_model(best / "model")
    model = Describer(describe, variables)  # validation's compiled function, same model
    primary = multihost.is_primary()
    out = {}
    best_epoch = checkpoint.read_progress(best)["best_epoch"]
    for e in evals.values():
        if "end" not in e.when:
            continue
        folder = run if e.name == "test" else run / e.name
        results = e.run(model, out_dir=folder if primary else None)
        for r in results:
            out[r.name if e.name == "test" else f"{e.name}/{r.name}"] = r.recalls
        metrics_writer.evaluation(e.name, {r.name: r.recalls for r in results},
                                  folder if primary else None)
        rows, counts = e.table(results)
        log.info("%s of the best model (epoch %s):\n%s", e.name, best_epoch,
                 format_table(rows, counts, protocols=e.protocols(results)))
    return out
