"""Place-batch training (`train.batching=places`) on the tiny synthetic city: a run end to
end from its GSV-Cities folder, kill + resume = the uninterrupted run bit for bit, the
epoch's batches, and the one-line refusals before any work."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from vgjax.config import ConfigError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gsv_city(tmp_path_factory):
    """The tiny city's GSV-Cities training folder (16 places of 4..6 images)."""
    from vgjax.synthetic.gsv import generate_gsv
    root = tmp_path_factory.mktemp("gsv")
    generate_gsv(root, "tiny", seed=0, workers=2)
    return root / "gsv-cities"


def _config(city, gsv, *overrides, path="places_smoke.py"):
    from vgjax.cli.config import load_config
    return load_config(REPO / "configs" / path, [
        f"data.root={city}", f"data.train_dataset={gsv}", "data.test_datasets=pitts30k",
        "data.resize=(32,48)", "test.save_predictions=false", "train.epochs=2",
        "train.places_per_epoch=8", "train.checkpoint_steps=1", *overrides])


def _records(run, kind):
    return [r for r in (json.loads(line) for line in
                        (Path(run) / "metrics.jsonl").read_text().splitlines())
            if r["type"] == kind]


@pytest.fixture(scope="module")
def full_run(tiny_city, gsv_city, tmp_path_factory):
    """2 epochs of 2 steps (8 of the 16 places an epoch, P = K = 4), uninterrupted."""
    from vgjax.train import loop
    run = tmp_path_factory.mktemp("places") / "full"
    results = loop.train_and_evaluate(_config(tiny_city, gsv_city), run)
    return run, results


def test_place_batch_run_end_to_end(full_run):
    run, results = full_run
    assert set(results) == {"pitts30k"} and set(results["pitts30k"]) == {"R@1", "R@5", "R@10",
                                                                         "R@20"}
    for name in ("config.json", "train.log", "metrics.jsonl", "results.json",
                 "checkpoints/last/model/model.json", "checkpoints/best/model/model.json"):
        assert (run / name).exists(), name
    steps = _records(run, "step")
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert [(r["epoch"], r["batch"]) for r in steps] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for r in steps:
        assert np.isfinite(r["loss"]) and r["loss"] == r["loss/multi_similarity"]
        # the miner keeps a subset of the 16 x 3 positive and 16 x 12 negative pairs
        assert 0 < r["pos_pairs"] <= 48 and 0 < r["neg_pairs"] <= 192
    epochs = _records(run, "epoch")
    assert [e["epoch"] for e in epochs] == [0, 1]
    for e in epochs:
        assert set(e["val"]) == {"R@1", "R@5", "R@10", "R@20"}  # validated on pitts30k
        assert e["train_loss"] == pytest.approx(np.mean([r["loss"] for r in steps
                                                         if r["epoch"] == e["epoch"]]))
    progress = json.loads((run / "checkpoints" / "last" / "progress.json").read_text())
    assert progress["epoch"] == 2 and progress["step"] == 4
    assert "epochs of 2 steps of 4 places x 4 images" in (run / "train.log").read_text()


class _Interrupt(Exception):
    pass


def test_kill_and_resume_reproduces_the_losses(full_run, tiny_city, gsv_city, tmp_path,
                                               monkeypatch):
    from vgjax.train import checkpoint, loop
    real_save = checkpoint.save

    def save_then_stop(run_dir, name, state, progress, *a, **kw):
        out = real_save(run_dir, name, state, progress, *a, **kw)
        if (name, progress.epoch, progress.round) == ("last", 0, 1):  # the first checkpoint
            raise _Interrupt()
        return out

    run = tmp_path / "resumed"
    monkeypatch.setattr(checkpoint, "save", save_then_stop)
    with pytest.raises(_Interrupt):
        loop.train_and_evaluate(_config(tiny_city, gsv_city), run)
    assert [r["step"] for r in _records(run, "step")] == [1]
    monkeypatch.setattr(checkpoint, "save", real_save)
    results = loop.train_and_evaluate(_config(tiny_city, gsv_city), run)
    assert "Resuming from" in (run / "train.log").read_text()
    full, full_results = full_run
    assert ([(r["step"], r["loss"]) for r in _records(run, "step")]
            == [(r["step"], r["loss"]) for r in _records(full, "step")])  # bit for bit
    assert ([e["val"] for e in _records(run, "epoch")]
            == [e["val"] for e in _records(full, "epoch")])
    assert results == full_results


def test_epoch_batches_are_seeded_places_of_k_distinct_images():
    from vgjax.train.places_loop import epoch_batches
    members = [np.arange(10 * p, 10 * p + 4 + p % 3) for p in range(10)]  # 4..6 images each
    label = np.concatenate([np.full(len(m), p) for p, m in enumerate(members)])
    a = epoch_batches(0, 3, members, 4, 3)
    assert a.shape == (2, 12)  # 10 places: 2 batches of 4, 2 places left out
    np.testing.assert_array_equal(a, epoch_batches(0, 3, members, 4, 3))  # (seed, epoch) only
    assert not np.array_equal(a, epoch_batches(0, 4, members, 4, 3))
    assert not np.array_equal(a, epoch_batches(1, 3, members, 4, 3))
    flat = np.concatenate(members)
    for batch in a:
        places = label[np.searchsorted(flat, batch)].reshape(4, 3)
        assert (places == places[:, :1]).all() and len(set(places[:, 0])) == 4
        assert len(set(batch)) == 12  # without replacement
    assert epoch_batches(0, 3, members, 4, 3, places_per_epoch=5).shape == (1, 12)


def _one_line(e) -> str:
    text = str(e.value)
    assert "\n" not in text, text
    return text


@pytest.mark.parametrize("overrides, path, match", [
    (["train.loss=triplet"], "places_smoke.py",
     r"^train.loss: 'triplet' is a triplet loss.*batch loss: multi_similarity, contrastive, "
     r"supcon, circle$"),
    (["train.loss=multi_similarity", "train.loss_args={}"], "smoke.py",
     r"^train.loss: 'multi_similarity' is a batch loss.*triplet loss: triplet, sare_ind, "
     r"sare_joint$"),
    (["train.places_per_batch=1"], "places_smoke.py", r"^train.places_per_batch: must be >= 2"),
    (["train.images_per_place=1"], "places_smoke.py", r"^train.images_per_place: must be >= 2"),
    (["train.batching=pairs"], "places_smoke.py",
     r"^train.batching: unknown value 'pairs' \(accepted: triplets, places, cosplace\)"),
    (["train.miner=hardest"], "places_smoke.py",
     r"^train.miner: unknown value 'hardest' \(accepted: none, multi_similarity\)"),
    (["data.cache_decoded=host"], "places_smoke.py",
     r"^data.cache_decoded: 'host': train.batching=places reads its images from the files"),
    (["train.loss_args={'margin': 0.1}"], "places_smoke.py",
     r"^train.loss: multi_similarity has no argument 'margin'"),
])
def test_config_refusals_in_one_line(overrides, path, match):
    from vgjax.cli.config import load_config
    with pytest.raises(ConfigError) as e:
        load_config(REPO / "configs" / path, overrides)
    assert re.search(match, _one_line(e)), _one_line(e)


@pytest.mark.parametrize("overrides, match", [
    (["train.places_per_batch=17"],   # the folder has 16 places
     r"^train.places_per_batch: 17 places a batch, but .*: 16 places"),
    (["train.images_per_place=5"],    # some places have 4 images
     r"^data.train_dataset: .* has 4 image\(s\), fewer than min_images=5 .*"
     r"train.images_per_place=5\)$"),
    (["data.format=gsv_cities(min_images=2)"],
     r"^data.format: .*min_images=2 is below train.images_per_place=4"),
    (["train.places_per_epoch=3"], r"^train.places_per_epoch: 3: expected 0 \(all\) or 4"),
])
def test_training_set_refusals_before_any_work(tiny_city, gsv_city, tmp_path, overrides,
                                               match):
    from vgjax.train import loop
    with pytest.raises(ConfigError) as e:
        loop.train_and_evaluate(_config(tiny_city, gsv_city, *overrides), tmp_path / "run")
    assert re.search(match, _one_line(e)), _one_line(e)
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
