"""CosPlace's training (`train.batching=cosplace`): its classes and groups against the
authors' rule, the CosFace loss and its gradients against a torch reference, the epoch's
batches, a run on the tiny city (group by group, the other groups' classifiers untouched),
kill + resume = the uninterrupted run bit for bit, and the one-line refusals."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from vgjax.config import ConfigError

REPO = Path(__file__).resolve().parent.parent


def _authors_rule(east, north, heading, m, alpha, n, l):
    """(class id, group id) of one image, as the CosPlace paper and code define them."""
    e, no, h = int(east // m * m), int(north // m * m), int(heading // alpha * alpha)
    return (e, no, h), (e % (m * n) // m, no % (m * n) // m, h % (alpha * l) // alpha)


def test_classes_and_groups_follow_the_authors_rule():
    from vgjax.train.cosplace import CosPlaceSettings, class_groups
    rng = np.random.default_rng(0)
    utm = rng.uniform([500000, 4000000], [500300, 4000300], (3000, 2)).round(1)
    headings = rng.uniform(0, 360, 3000).round(1)
    s = CosPlaceSettings(cell_m=20, heading_deg=60, n=3, l=2, groups=18,
                         min_images_per_class=3, classes_per_batch=2)
    g = class_groups(utm, headings, s)
    expected = {}
    for i, (e, no) in enumerate(utm):
        c, grp = _authors_rule(e, no, headings[i], 20, 60, 3, 2)
        expected.setdefault(grp, {}).setdefault(c, []).append(i)
    expected = {grp: {c: m for c, m in cl.items() if len(m) >= 3}
                for grp, cl in expected.items()}
    assert g.available_groups == len(expected) == 18 and len(g.classes) == 18
    for key, classes, class_keys in zip(g.keys, g.classes, g.class_keys):
        ref = expected[key]
        assert len(classes) == len(ref)
        for members, (col, row, sector) in zip(classes, class_keys):
            assert list(members) == ref[(col * 20, row * 20, sector * 60)]
    assert g.keys == sorted(g.keys)
    assert sum(map(len, g.classes)) + g.dropped_classes == len(
        {_authors_rule(e, no, h, 20, 60, 3, 2)[0] for (e, no), h in zip(utm, headings)})
    with pytest.raises(ValueError, match=r"18 groups hold classes .* fewer than "
                                         r"train.cosplace.groups=19$"):
        class_groups(utm, headings, CosPlaceSettings(cell_m=20, heading_deg=60, n=3, l=2,
                                                     groups=19, min_images_per_class=3))
    with pytest.raises(ValueError, match=r"need each image's heading, which 1 image"):
        class_groups(utm[:2], np.array([10.0, np.nan]), s)


def test_cosface_loss_and_gradients_equal_torch():
    import jax
    import jax.numpy as jnp
    import torch
    from vgjax.train.cosplace import cosface_loss
    rng = np.random.default_rng(1)
    desc = rng.normal(size=(6, 5)).astype(np.float32)
    w = rng.normal(size=(7, 5)).astype(np.float32)
    labels = rng.integers(0, 7, 6).astype(np.int32)
    # torch: the authors' MarginCosineProduct (s 30, m 0.4) then CrossEntropyLoss
    d_t = torch.tensor(desc, requires_grad=True)
    w_t = torch.tensor(w, requires_grad=True)
    ip = d_t @ w_t.t()
    cos = ip / torch.outer(d_t.norm(dim=1), w_t.norm(dim=1)).clamp(min=1e-8)
    one_hot = torch.zeros_like(cos).scatter_(1, torch.tensor(labels).long().view(-1, 1), 1.0)
    loss_t = torch.nn.CrossEntropyLoss()(30.0 * (cos - one_hot * 0.4),
                                         torch.tensor(labels).long())
    loss_t.backward()
    # vgjax, with two padding rows that must change nothing
    w_pad = np.concatenate([w, rng.normal(size=(2, 5)).astype(np.float32)])
    valid = jnp.arange(9) < 7
    loss, (g_d, g_w) = jax.value_and_grad(
        lambda d, ww: cosface_loss(d, ww, labels, valid, 30.0, 0.4), argnums=(0, 1))(
        jnp.asarray(desc), jnp.asarray(w_pad))
    np.testing.assert_allclose(float(loss), loss_t.item(), rtol=1e-5)
    np.testing.assert_allclose(g_d, d_t.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g_w[:7], w_t.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert not np.asarray(g_w[7:]).any()


def test_epoch_batches_shuffle_classes_and_draw_one_image_each():
    from vgjax.train.cosplace import epoch_batches
    classes = [np.arange(10 * c, 10 * c + 2 + c % 3) for c in range(10)]
    rows, labels = epoch_batches(0, 2, classes, 4, 5)
    assert rows.shape == labels.shape == (5, 4)
    for r, lab in zip(rows, labels):
        assert len(set(lab)) == 4  # distinct classes in a batch
        assert all(x in classes[c] for x, c in zip(r, lab))
    # passes of 2 batches (10 classes, 2 left over each time): steps 0-1, 2-3, 4
    for first in (0, 2):
        assert len(set(labels[first:first + 2].ravel())) == 8
    a = epoch_batches(0, 2, classes, 4, 5)
    np.testing.assert_array_equal(rows, a[0])  # (seed, epoch) only
    assert not np.array_equal(rows, epoch_batches(0, 3, classes, 4, 5)[0])


def _config(city, *overrides):
    from vgjax.cli.config import load_config
    return load_config(REPO / "configs" / "smoke.py", [
        f"data.root={city}", "data.test_datasets=pitts30k", "data.resize=(32,48)",
        "test.save_predictions=false", "train.batching=cosplace", "model.aggregation=cosplace",
        "model.cosplace.out_dim=16", "model.netvlad_init.enabled=false", "train.epochs=2",
        "train.cosplace.cell_m=20", "train.cosplace.heading_deg=90", "train.cosplace.n=2",
        "train.cosplace.l=1", "train.cosplace.groups=2",
        "train.cosplace.min_images_per_class=2", "train.cosplace.classes_per_batch=4",
        "train.cosplace.steps_per_epoch=2", "train.checkpoint_steps=1", *overrides])


def _records(run, kind):
    return [r for r in (json.loads(line) for line in
                        (Path(run) / "metrics.jsonl").read_text().splitlines())
            if r["type"] == kind]


def _aux(run, name):
    """The classifiers stored in checkpoint `name` of `run` (read without a target)."""
    import orbax.checkpoint as ocp
    with ocp.StandardCheckpointer() as ckptr:
        item = ckptr.restore((Path(run) / "checkpoints" / name / "state").resolve())
    return np.asarray(item["train_state"]["aux"]["weights"])


@pytest.fixture(scope="module")
def full_run(tiny_city, tmp_path_factory):
    """2 epochs (group 0, then group 1) of 2 steps of 4 classes, uninterrupted."""
    from vgjax.train import checkpoint, loop
    run = tmp_path_factory.mktemp("cosplace") / "full"
    saved = []
    real_save = checkpoint.save

    def keep_aux(run_dir, name, state, progress, *a, **kw):
        saved.append((name, progress.epoch, progress.round,
                      np.asarray(state.aux["weights"]).copy()))
        return real_save(run_dir, name, state, progress, *a, **kw)

    mp = pytest.MonkeyPatch()
    mp.setattr(checkpoint, "save", keep_aux)
    try:
        results = loop.train_and_evaluate(_config(tiny_city), run)
    finally:
        mp.undo()
    return run, results, saved


def test_cosplace_run_trains_the_groups_in_turn(full_run):
    run, results, saved = full_run
    assert set(results["pitts30k"]) == {"R@1", "R@5", "R@10", "R@20"}
    steps = _records(run, "step")
    assert [(r["step"], r["epoch"], r["group"]) for r in steps] == [
        (1, 0, 0), (2, 0, 0), (3, 1, 1), (4, 1, 1)]
    for r in steps:
        assert np.isfinite(r["loss"]) and r["loss"] == r["loss/cosface"] > 0
    log = (run / "train.log").read_text()
    assert "2 of 3 groups, 12/12 classes" in log and "epochs of 2 steps of 4 classes" in log
    lasts = {(e, k): w for name, e, k, w in saved if name == "last"}
    step1, epoch0, step3, end = lasts[0, 1], lasts[1, 0], lasts[1, 1], lasts[2, 0]
    assert end.shape == (2, 12, 16)  # (groups, classes of the largest group, descriptor)
    # epoch 0 trains group 0's classifier only, epoch 1 group 1's only
    assert not np.array_equal(step1[0], epoch0[0])
    np.testing.assert_array_equal(step1[1], epoch0[1])
    np.testing.assert_array_equal(epoch0[0], step3[0])
    np.testing.assert_array_equal(epoch0[0], end[0])
    assert not np.array_equal(epoch0[1], step3[1]) and not np.array_equal(step3[1], end[1])
    np.testing.assert_array_equal(_aux(run, "last"), end)  # in the checkpoint


class _Interrupt(Exception):
    pass


def test_kill_and_resume_reproduces_the_run(full_run, tiny_city, tmp_path, monkeypatch):
    from vgjax.train import checkpoint, loop
    real_save = checkpoint.save

    def save_then_stop(run_dir, name, state, progress, *a, **kw):
        out = real_save(run_dir, name, state, progress, *a, **kw)
        if (name, progress.epoch, progress.round) == ("last", 1, 1):  # inside group 1's epoch
            raise _Interrupt()
        return out

    run = tmp_path / "resumed"
    monkeypatch.setattr(checkpoint, "save", save_then_stop)
    with pytest.raises(_Interrupt):
        loop.train_and_evaluate(_config(tiny_city), run)
    monkeypatch.setattr(checkpoint, "save", real_save)
    results = loop.train_and_evaluate(_config(tiny_city), run)
    assert "Resuming from" in (run / "train.log").read_text()
    full, full_results, _ = full_run
    assert ([(r["step"], r["loss"]) for r in _records(run, "step")]
            == [(r["step"], r["loss"]) for r in _records(full, "step")])  # bit for bit
    assert results == full_results
    np.testing.assert_array_equal(_aux(run, "last"), _aux(full, "last"))


def test_recipe_has_the_published_settings_and_its_smoke_variant_passes_the_checks(
        tiny_city):
    from vgjax.cli.config import load_config
    from vgjax.models.network import descriptor_dim
    from vgjax.train.settings import TrainSettings, validate_training
    c = load_config(REPO / "configs" / "cosplace.py", [])
    t = TrainSettings.from_config(c)
    assert (t.batching, t.optimizer, t.lr, t.scheduler, t.epochs) == (
        "cosplace", "adam", 1e-5, "none", 50)
    assert (t.cosplace.cell_m, t.cosplace.heading_deg, t.cosplace.n, t.cosplace.l,
            t.cosplace.groups, t.cosplace.min_images_per_class, t.cosplace.classes_per_batch,
            t.cosplace.steps_per_epoch, t.cosplace.scale, t.cosplace.margin,
            t.cosplace.classifier_lr) == (10, 30, 5, 2, 8, 10, 32, 10000, 30, 0.4, 0.01)
    assert (c.model.backbone, c.model.trainable_from, tuple(c.data.resize),
            descriptor_dim(c.model)) == ("resnet50conv5", "layer3", (512, 512), 512)
    validate_training(load_config(REPO / "configs" / "cosplace.py:smoke",
                                  [f"data.root={tiny_city}"]))


def _one_line(e) -> str:
    text = str(e.value)
    assert "\n" not in text, text
    return text


@pytest.mark.parametrize("overrides, match", [
    (["train.cosplace.heading_deg=0"], r"^train.cosplace.heading_deg: must be a positive"),
    (["train.cosplace.groups=0"], r"^train.cosplace.groups: must be an integer >= 1"),
    (["train.cosplace.classes_per_batch=1"], r"^train.cosplace.classes_per_batch: must be >= 2"),
    (["train.cosplace.margin=-0.1"], r"^train.cosplace.margin: must be >= 0"),
    (["data.cache_decoded=host"],
     r"^data.cache_decoded: 'host': train.batching=cosplace reads its images from the files"),
    (["train.da.enabled=true", "train.da.target_dir=x"],
     r"^train.da.enabled: domain adaptation works with train.batching=triplets only"),
])
def test_config_refusals_in_one_line(overrides, match):
    from vgjax.cli.config import load_config
    with pytest.raises(ConfigError) as e:
        load_config(REPO / "configs" / "smoke.py", ["train.batching=cosplace", *overrides])
    assert re.search(match, _one_line(e)), _one_line(e)


@pytest.mark.parametrize("overrides, match", [
    (["train.cosplace.groups=4"],
     r"^data.train_dataset: .*: 3 groups hold classes of at least 2 images .* fewer than "
     r"train.cosplace.groups=4 \(train.batching=cosplace\)$"),
    (["train.cosplace.classes_per_batch=13"],
     r"^data.train_dataset: .*group \(0, \d, 0\) has 12 classes, fewer than "
     r"train.cosplace.classes_per_batch=13"),
])
def test_training_set_refusals_before_any_work(tiny_city, tmp_path, overrides, match):
    from vgjax.train import loop
    with pytest.raises(ConfigError) as e:
        loop.train_and_evaluate(_config(tiny_city, *overrides), tmp_path / "run")
    assert re.search(match, _one_line(e)), _one_line(e)
    assert not (tmp_path / "run" / "checkpoints").exists()
