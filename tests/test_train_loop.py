"""End-to-end training on the tiny synthetic city: run folder, resume = uninterrupted run,
1 vs 2 (simulated) devices, NaN handling, config overrides."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def synthetic_root(tiny_city):
    return tiny_city


def _config(root, *overrides):
    from vgjax.cli.config import load_config
    return load_config(REPO / "configs" / "smoke.py", [
        f"data.root={root}", "data.test_datasets=pitts30k,sf-xs", "train.queries_per_epoch=16",
        "train.epochs=2", "test.save_predictions=false", *overrides])


def _step_losses(run):
    lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
    recs = [json.loads(l) for l in lines]
    return ([(r["step"], r["loss"]) for r in recs if r["type"] == "step"],
            [r["val"] for r in recs if r["type"] == "epoch"])


class _Interrupt(Exception):
    pass


def _events(run):
    """RUN/tensorboard/ read as TensorBoard reads it: {tag: [(step, value)]} and image tags."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(Path(run) / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return ({tag: [(e.step, e.value) for e in acc.Scalars(tag)]
             for tag in acc.Tags()["scalars"]}, acc.Tags()["images"])


def _check_events_match_metrics(run, results):
    """Every scalar of metrics.jsonl (and the test recalls) is in the event files, at its
    global step, and nothing else is."""
    records = [json.loads(l) for l in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    expected = {}
    steps_per_epoch = max(r["step"] for r in records if r["type"] == "step") // 2
    for r in records:
        if r["type"] == "step":
            for k, v in r.items():
                if k not in ("type", "step", "epoch", "round"):
                    expected.setdefault(f"train/{k}", []).append((r["step"], v))
        elif r["type"] == "epoch":
            at = (r["epoch"] + 1) * steps_per_epoch
            for k, tag in (("train_loss", "epoch/train_loss"), ("lr", "epoch/lr"),
                           ("epoch_time_s", "epoch/time_s"), ("best_value", "epoch/best_value")):
                expected.setdefault(tag, []).append((at, r[k]))
            for k, v in r["val"].items():  # one validation dataset: val/R@N
                expected.setdefault(f"val/{k}", []).append((at, v))
        elif r["type"] == "initial_val":
            for k, v in r["val"].items():
                expected.setdefault(f"val/{k}", []).append((0, v))
    for dataset, recalls in results.items():
        for k, v in recalls.items():
            expected[f"test/{dataset}/{k}"] = [(2 * steps_per_epoch, v)]
    expected = {tag.replace("@", "_"): points for tag, points in expected.items()}
    scalars, images = _events(run)
    assert {"train/loss", "train/lr", "val/R_5", "test/pitts30k/R_1"} <= set(expected)
    assert set(scalars) == set(expected)
    for tag, points in expected.items():
        got = sorted(scalars[tag])
        assert [s for s, _ in got] == [s for s, _ in sorted(points)], tag
        np.testing.assert_allclose([v for _, v in got], [v for _, v in sorted(points)],
                                   rtol=1e-6, err_msg=tag)
    return scalars, images


def test_train_run_folder_and_resume_reproduces(synthetic_root, tmp_path, monkeypatch):
    from vgjax.train import checkpoint, loop

    full = tmp_path / "full"
    # the full run also validates the untrained model; the resumed run below does not, and
    # must still take the same steps
    results = loop.train_and_evaluate(_config(synthetic_root, "evals.val.when=[before,epoch]",
                                              "test.num_pictures=1"), full)
    assert set(results) == {"pitts30k", "sf-xs"}
    assert set(results["pitts30k"]) == {"R@1", "R@5", "R@10", "R@20"}
    for name in ("config.json", "train.log", "metrics.jsonl", "lr.png", "results.json",
                 "checkpoints/last/model/model.json", "checkpoints/best/model/model.json",
                 "checkpoints/last/progress.json"):
        assert (full / name).exists(), name
    losses_full, val_full = _step_losses(full)
    assert len(losses_full) == 2 * 2 * 4 and len(val_full) == 2   # epochs x rounds x steps
    epochs = [json.loads(l) for l in (full / "metrics.jsonl").read_text().splitlines()
              if json.loads(l)["type"] == "epoch"]
    for e in epochs:  # the mean training loss of each epoch, as the reference logs it
        assert e["train_loss"] == pytest.approx(np.mean([l for s, l in losses_full
                                                         if (s - 1) // 8 == e["epoch"]]))
    assert "mean loss" in (full / "train.log").read_text()
    initial = [json.loads(l) for l in (full / "metrics.jsonl").read_text().splitlines()
               if json.loads(l)["type"] == "initial_val"]
    assert len(initial) == 1   # the "before" evaluation writes its files in RUN/before/<entry>
    before = json.loads((full / "before" / "val" / "results.json").read_text())
    assert set(before) == set(initial[0]["results"]) == {"pitts30k"}
    recalls = {k: v for k, v in before["pitts30k"].items() if k != "protocol"}
    assert recalls == pytest.approx(initial[0]["results"]["pitts30k"], abs=1e-3)
    assert not (full / "before" / "val" / "predictions").exists()  # test.save_predictions=false
    assert all(np.isfinite(l) for _, l in losses_full)
    # TensorBoard: the same scalars at their global steps, and the test's pictures
    scalars_full, images = _check_events_match_metrics(full, results)
    assert set(images) == {f"test/{d}/pictures/{p.stem}" for d in ("pitts30k", "sf-xs")
                           for p in (full / "pictures" / d).glob("query_*.png")}
    assert len(images) == 2

    # Interrupt after the first mining round of epoch 1, then resume in a new call.
    real_save = checkpoint.save
    calls = []

    def save_then_stop(run_dir, name, state, progress, *a, **kw):
        out = real_save(run_dir, name, state, progress, *a, **kw)
        calls.append((name, progress.epoch, progress.round))
        if (name, progress.epoch, progress.round) == ("last", 1, 1):
            raise _Interrupt()
        return out

    resumed = tmp_path / "resumed"
    monkeypatch.setattr(checkpoint, "save", save_then_stop)
    with pytest.raises(_Interrupt):
        loop.train_and_evaluate(_config(synthetic_root), resumed)
    monkeypatch.setattr(checkpoint, "save", real_save)
    from vgjax.train.tensorboard import summary_writer_class
    # a step the stopped run logged after its checkpoint
    with summary_writer_class()(str(resumed / "tensorboard")) as stale:
        stale.add_scalar("train/loss", 99.0, global_step=14)
    results_resumed = loop.train_and_evaluate(_config(synthetic_root), resumed)
    assert "Resuming from" in (resumed / "train.log").read_text()
    losses_resumed, val_resumed = _step_losses(resumed)
    assert [s for s, _ in losses_resumed] == [s for s, _ in losses_full]   # no step repeated
    np.testing.assert_allclose([l for _, l in losses_resumed], [l for _, l in losses_full],
                               rtol=1e-5, atol=1e-7)
    assert val_resumed == val_full
    assert results_resumed == results
    # the resumed run appends an event file; the stale step is hidden, no step repeats
    assert len(list((resumed / "tensorboard").iterdir())) == 3
    scalars_resumed, _ = _check_events_match_metrics(resumed, results_resumed)
    assert [s for s, _ in scalars_resumed["train/loss"]] == [s for s, _ in losses_full]
    np.testing.assert_allclose([v for _, v in scalars_resumed["train/loss"]],
                               [v for _, v in scalars_full["train/loss"]], rtol=1e-5, atol=1e-7)


def test_nan_loss_saves_then_raises(synthetic_root, tmp_path):
    from vgjax.train import loop
    cfg = _config(synthetic_root, "train.lr=1e30", "train.optimizer=sgd", "train.epochs=1",
                  "model.aggregation=gem", "model.netvlad_init.enabled=false")
    with pytest.raises(loop.NonFiniteLossError, match="train.lr"):
        loop.train_and_evaluate(cfg, tmp_path / "nan")
    assert (tmp_path / "nan" / "checkpoints" / "nan" / "model" / "model.json").exists()


def test_config_overrides_and_errors():
    from vgjax.cli.config import load_config
    from vgjax.config import ConfigError
    smoke = REPO / "configs" / "smoke.py"
    cfg = load_config(smoke, ["--config.train.lr=1e-4", "data.resize=(32,48)",
                              "train.optimizer=sgd", "data.test_datasets=a,b"])
    assert cfg.train.lr == 1e-4 and tuple(cfg.data.resize) == (32, 48)
    assert list(cfg.data.test_datasets) == ["a", "b"] and cfg.train.optimizer == "sgd"
    for bad, match in [("train.optimiser=sgd", "optimizer"), ("train.optimizer=rmsprop", "train.optimizer"),
                       ("train.lr=abc", "train.lr"), ("train.neg_samples_num=2", "neg_samples_num")]:
        with pytest.raises(ConfigError, match=match):
            load_config(smoke, [bad])
    for path in ("resnet18_netvlad.py", "resnet18_gem.py"):
        cfg = load_config(REPO / "configs" / path)
        assert cfg.train.weight_decay == 1e-3 and len(cfg.data.test_datasets) == 4


# Runs in a subprocess with two simulated CPU devices; writes every compared array to an npz.
TWO_DEVICES = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from vgjax.cli.config import load_config
from vgjax.models.network import build_network, init_variables, trainable_mask
from vgjax.train import optim
from vgjax.data.augment import make_query_augment
from vgjax.train.losses import make_term
from vgjax.train.step import make_loss_fn, make_train_step
from vgjax.train.state import TrainState
assert len(jax.devices()) == 2
cfg = load_config(sys.argv[1])
out_path = sys.argv[2]
N, G, GROUPS, STEPS = 3, 5, 4, 6
net = build_network(cfg.model)
variables = init_variables(cfg.model, jax.random.key(0), (48, 64))
tx = optim.make_optimizer(cfg.train, trainable_mask(variables["params"], cfg.model))
terms = [make_term("triplet", {"margin": 0.1})]
images = np.random.default_rng(0).integers(0, 256, (GROUPS * G, 48, 64, 3), dtype=np.uint8)
augment = make_query_augment(["colour_jitter(brightness=0.5, hue=0.1)"], group_size=G)
key = jax.random.key(3)
res = {}
flat = lambda t: {jax.tree_util.keystr(k): np.asarray(v) for k, v in
                  jax.tree_util.tree_flatten_with_path(t)[0]}

def trajectory(mesh, imgs):
    step = make_train_step(net, tx, terms, N, mesh)
    fresh = jax.tree.map(np.array, variables)
    state = jax.device_put(TrainState.create(fresh, tx), NamedSharding(mesh, P()))
    losses, first = [], None
    for i in range(STEPS):
        state, metrics = step(state, imgs)
        losses.append(float(metrics["loss"]))
        if i == 0:
            first = jax.tree.map(np.asarray, (state.params, state.batch_stats))
    return losses, first

for n in (1, 2):
    mesh = Mesh(np.array(jax.devices()[:n]), ("data",))
    repl, batch = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    aug = jax.jit(augment, in_shardings=(batch, None), out_shardings=batch)
    res[f"aug{n}"] = np.asarray(aug(images, key))
    loss_fn = make_loss_fn(net, terms, N)
    grad_fn = jax.jit(jax.value_and_grad(lambda p, bs, x: loss_fn(p, bs, x, None, 0),
                                         has_aux=True),
                      in_shardings=(repl, repl, batch), out_shardings=repl)
    (loss, (_, stats)), grads = grad_fn(variables["params"], variables["batch_stats"], images)
    res[f"loss{n}"] = np.asarray(loss)
    for k, v in flat(grads).items():
        res[f"grad{n}{k}"] = v
    for k, v in flat(stats).items():
        res[f"stats{n}{k}"] = v
    losses, (params1, stats1) = trajectory(mesh, images)
    res[f"traj{n}"] = np.asarray(losses)
    for k, v in flat(params1).items():
        res[f"params{n}{k}"] = v
# per-shard BatchNorm statistics (what a per-device BN would keep): each half alone, averaged
halves = []
for half in (images[: GROUPS * G // 2], images[GROUPS * G // 2:]):
    _, upd = net.apply(variables, half, train=True, mutable=["batch_stats"])
    halves.append(flat(upd["batch_stats"]))
for k in halves[0]:
    res[f"shardstats{k}"] = (halves[0][k] + halves[1][k]) / 2
for k, v in flat(variables["batch_stats"]).items():
    res[f"initstats{k}"] = v
# float reordering alone: the same batch with its query groups in other orders, one device
mesh1 = Mesh(np.array(jax.devices()[:1]), ("data",))
rng = np.random.default_rng(1)
for r in range(3):
    order = rng.permutation(GROUPS)
    while (order == np.arange(GROUPS)).all():
        order = rng.permutation(GROUPS)
    perm = images.reshape(GROUPS, G, *images.shape[1:])[order].reshape(images.shape)
    res[f"perm{r}"] = np.asarray(trajectory(mesh1, perm)[0])
for k, v in flat(variables["params"]).items():
    res[f"params0{k}"] = v
np.savez(out_path, **res)
"""


def _tree(arrays, prefix):
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def _rel(a, b):
    """||a - b|| / ||a|| (0 where both are 0)."""
    scale = np.linalg.norm(a)
    return float(np.linalg.norm(a - b) / scale) if scale else float(np.abs(b).max())


def test_one_and_two_devices_compute_the_same_step(tmp_path):
    """The train step sharded over two devices computes what it computes on one.

    One step, tightly: the same augmented images (bit for bit: the random draws do not
    depend on the sharding), loss (<= 1e-5 relative), gradients (<= 1e-5 relative over the
    whole gradient, <= 1e-4 per parameter tensor), BatchNorm statistics over the global batch
    (<= 1e-5; per-shard statistics would differ by about 1e-2), and parameters after the
    update. Only the order of float reductions differs (XLA reduces each device's half, then
    all-reduces): summing n terms in another order moves a result by about n * 2^-24 of the
    sum of their magnitudes, so a gradient tensor whose terms cancel (NetVLAD's centroids)
    moves more, relative to itself, than the loss.
    Adam's first update is lr * g / (|g| + eps): for an element whose gradient is near its
    own rounding noise the update's direction is that noise, so updates are compared with
    what this formula makes of the measured gradient difference, element by element.

    Several steps: the trajectories are compared with a tolerance measured in the same run,
    from float reordering alone: the one-device step on the same batch with its query groups
    in three other orders (the same mathematics, other summation orders). Reordering noise
    grows step by step (Adam amplifies it, and the triplet loss on one repeated batch falls
    towards zero, so relative differences grow), and the two-device trajectory must stay
    within 10x the largest relative spread seen so far among the reorderings (at least 1e-5).
    """
    script = tmp_path / "two.py"
    script.write_text(TWO_DEVICES)
    out_path = tmp_path / "out.npz"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(script), str(REPO / "configs" / "smoke.py"),
                           str(out_path)], env=env, capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = dict(np.load(out_path))

    # the random draws of the augmentation: identical whatever the sharding
    assert np.array_equal(r["aug1"], r["aug2"])
    assert r["loss1"] > 0 and abs(r["loss2"] - r["loss1"]) <= 1e-5 * abs(r["loss1"])

    g1, g2 = _tree(r, "grad1"), _tree(r, "grad2")
    trained = [k for k in g1 if np.abs(g1[k]).max() > 0]
    assert len(trained) >= 10  # layer3 and the head train
    flat1 = np.concatenate([g1[k].ravel() for k in trained])
    flat2 = np.concatenate([g2[k].ravel() for k in trained])
    assert _rel(flat1, flat2) <= 1e-5
    for k in trained:
        assert _rel(g1[k], g2[k]) <= 1e-4, k

    # BatchNorm: statistics of the global batch, not of each device's half
    s1, s2 = _tree(r, "stats1"), _tree(r, "stats2")
    shard, init = _tree(r, "shardstats"), _tree(r, "initstats")
    moved = [k for k in s1 if _rel(init[k], s1[k]) > 1e-3]
    assert moved  # the step updates running statistics (layer3's BatchNorms train)
    for k in s1:
        assert _rel(s1[k], s2[k]) <= 1e-5, k
    assert max(_rel(s2[k], shard[k]) for k in moved) > 1e-3  # per-shard would be caught

    # parameters after one Adam update (no weight decay in the smoke config)
    from vgjax.cli.config import load_config
    cfg = load_config(REPO / "configs" / "smoke.py")
    assert cfg.train.optimizer == "adam" and not cfg.train.weight_decay
    lr, eps = float(cfg.train.lr), 1e-8
    p0, p1, p2 = _tree(r, "params0"), _tree(r, "params1"), _tree(r, "params2")
    for k in trained:
        g = np.abs(g1[k]).astype(np.float64)
        # |d(lr g / (|g| + eps))| = lr eps |dg| / (|g| + eps)^2, plus float32 rounding of the
        # update (a few ulps of lr) and of the new parameter
        magnitude = np.maximum(np.abs(p0[k]), np.abs(p1[k])) + lr
        allowed = (2 * lr * eps * np.abs(g1[k] - g2[k]) / (g + eps) ** 2
                   + 4 * np.spacing(magnitude.astype(np.float32)))
        assert (np.abs(p1[k] - p2[k]) <= allowed).all(), k
        assert _rel(p1[k] - p0[k], -lr * np.sign(g1[k])) <= 1e-2, k  # it is Adam's step

    # several steps: within what reordering alone does to the same trajectory
    t1, t2 = r["traj1"], r["traj2"]
    assert t1[-1] < t1[0] / 10  # repeated steps on one batch lower its loss
    spread = np.max([np.abs(r[f"perm{i}"] - t1) / np.abs(t1) for i in range(3)], axis=0)
    tolerance = np.maximum(10 * np.maximum.accumulate(spread), 1e-5)
    assert (np.abs(t2 - t1) / np.abs(t1) <= tolerance).all(), (t1, t2, spread)


def test_unreadable_test_image_stops_training_before_any_work(tmp_path):
    """A truncated test query is named when the run starts, not after training."""
    from conftest import write_dataset
    from vgjax.data.pipeline import ImageError
    from vgjax.train.loop import train_and_evaluate
    root = tmp_path / "data"
    write_dataset(root, name="pitts30k", splits=("train", "val", "test"))
    query = sorted((root / "pitts30k" / "images" / "test" / "queries").iterdir())[0]
    query.write_bytes(query.read_bytes()[:-100])
    cfg = _config(root, "data.test_datasets=pitts30k")
    with pytest.raises(ImageError, match=rf"pitts30k \(test database and queries\) cannot be "
                                         rf"read: {query}: truncated"):
        train_and_evaluate(cfg, str(tmp_path / "run"))
    assert not (tmp_path / "run" / "checkpoints").exists()
    from vgjax.data.sources import open_split  # data.check_images=false: no check at all
    assert open_split(cfg.data, "pitts30k", "test")[1].check is not None
    off = _config(root, "data.test_datasets=pitts30k", "data.check_images=false")
    assert open_split(off.data, "pitts30k", "test")[1].check is None
