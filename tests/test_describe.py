"""Model directories (save/load/resolve) and the `vgjax.describe` command."""
from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest
from conftest import write_image

from vgjax.data.ops import resize

from configs.default import get_config
from vgjax import describe
from vgjax.data.pipeline import load_image
from vgjax.models.io import (
    ModelDirError,
    load_model,
    merge_pretrained,
    read_model_info,
    resolve_model_dir,
    save_model,
)
from vgjax.models.network import build_network, init_variables, make_describe_fn


@pytest.fixture(scope="module")
def small_model():
    cfg = get_config().model
    cfg.resnet_width = 4
    cfg.netvlad_clusters = 4
    variables = init_variables(cfg, jax.random.key(0), image_size=(32, 32))
    return cfg, variables


def leaves_equal(a, b):
    la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
    assert [p for p, _ in la] == [p for p, _ in lb]
    for (_, x), (_, y) in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_save_load_and_resolve(tmp_path, small_model):
    cfg, variables = small_model
    run = tmp_path / "run"
    save_model(run / "checkpoints" / "last" / "model", cfg, variables, (40, 56))
    loaded_cfg, loaded = load_model(run)  # run folder -> checkpoints/last/model
    assert loaded_cfg.to_dict() == cfg.to_dict()
    leaves_equal(loaded, variables)
    save_model(run / "checkpoints" / "best" / "model", cfg, variables, (40, 56))
    assert resolve_model_dir(run) == run / "checkpoints" / "best" / "model"
    assert resolve_model_dir(run / "checkpoints" / "last") == run / "checkpoints" / "last" / "model"
    info = read_model_info(run / "checkpoints" / "best" / "model")
    assert info["image_size"] == [40, 56] and info["descriptor_dim"] == 4 * 16
    # saving again over an existing dir replaces it
    save_model(run / "checkpoints" / "best" / "model", cfg, variables, (32, 32))
    assert read_model_info(run)["image_size"] == [32, 32]


def test_missing_or_broken_model_dirs(tmp_path, small_model):
    cfg, variables = small_model
    with pytest.raises(ModelDirError, match="no such file"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelDirError, match="not a vgjax model"):
        load_model(tmp_path / "empty")
    d = save_model(tmp_path / "m", cfg, variables)
    (d / "model.json").write_text("{not json")
    with pytest.raises(ModelDirError, match="model.json"):
        load_model(d)
    d = save_model(tmp_path / "m", cfg, variables)
    info = json.loads((d / "model.json").read_text())
    info["model"]["netvlad_clusters"] = 5  # does not match the stored variables
    (d / "model.json").write_text(json.dumps(info))
    with pytest.raises(ModelDirError, match="cannot restore variables"):
        load_model(d)
    d = save_model(tmp_path / "m2", cfg, variables)
    info["model"]["netvlad_clusters"] = 4
    info["model"]["aggregation"] = "bogus"
    (d / "model.json").write_text(json.dumps(info))
    with pytest.raises(ModelDirError, match="model.aggregation"):
        load_model(d)


def test_merge_pretrained(small_model):
    _, variables = small_model
    zeros = jax.tree_util.tree_map(np.zeros_like, variables)
    other = {"params": {"backbone": variables["params"]["backbone"],
                        "aggregation": {"centroids": np.ones((9, 9), np.float32)}},
             "batch_stats": variables["batch_stats"]}
    merged, copied = merge_pretrained(zeros, other)
    leaves_equal(merged["params"]["backbone"], variables["params"]["backbone"])
    assert not np.any(np.asarray(merged["params"]["aggregation"]["centroids"]))
    assert len(copied) == len(jax.tree_util.tree_leaves(variables["params"]["backbone"])) + \
        len(jax.tree_util.tree_leaves(variables["batch_stats"]))


def test_describe_cli_matches_python_api(tmp_path, small_model, capsys):
    cfg, variables = small_model
    model_dir = save_model(tmp_path / "model", cfg, variables, (32, 48))
    folder = tmp_path / "imgs"
    names = ["b.png", "a.png", os.path.join("sub", "c.png"), os.path.join("sub", "d.jpg"),
             "e.png"]
    for i, n in enumerate(names):
        write_image(str(folder / n), size=(30 + i, 40), seed=i)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out" / "desc.npy"
    assert describe.main(["--checkpoint", str(model_dir), "--images", str(folder),
                          "--out", str(out), "--batch-size", "2", "--num-workers", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 5 and report["descriptor_dim"] == 64
    desc = np.load(out)
    paths = (tmp_path / "out" / "desc_paths.txt").read_text().splitlines()
    assert paths == sorted(paths) and len(paths) == 5 and desc.dtype == np.float32
    assert [os.path.relpath(p, folder) for p in paths] == sorted(names)
    # the evaluation path of the reference: full decode, float bilinear resize
    images = np.stack([resize(load_image(p), (32, 48)) for p in paths])
    expected = make_describe_fn(build_network(cfg))(variables, images)
    np.testing.assert_allclose(desc, np.asarray(expected), rtol=1e-5, atol=1e-6)
    # --resize overrides the stored size
    assert describe.main(["--checkpoint", str(model_dir), "--images", str(folder / "sub"),
                          "--out", str(tmp_path / "small.npy"), "--resize", "33", "47"]) == 0
    sub = (tmp_path / "small_paths.txt").read_text().splitlines()
    assert sub == [p for p in paths if os.sep + "sub" + os.sep in p]
    images = np.stack([resize(load_image(p), (33, 47)) for p in sub])
    expected = make_describe_fn(build_network(cfg))(variables, images)
    np.testing.assert_allclose(np.load(tmp_path / "small.npy"), np.asarray(expected),
                               rtol=1e-5, atol=1e-6)


def test_describe_errors(tmp_path, small_model, capsys):
    cfg, variables = small_model
    model_dir = save_model(tmp_path / "model", cfg, variables, (32, 48))
    (tmp_path / "empty").mkdir()
    assert describe.main(["--checkpoint", str(model_dir), "--images", str(tmp_path / "empty"),
                          "--out", str(tmp_path / "x.npy")]) == 2
    assert "no .jpg" in capsys.readouterr().err
    assert describe.main(["--checkpoint", str(model_dir), "--images", str(tmp_path / "nope"),
                          "--out", str(tmp_path / "x.npy")]) == 2
    assert "nope: not a folder" in capsys.readouterr().err
    with pytest.raises(ModelDirError):  # what main reports, as the API raises it
        describe.describe_folder(tmp_path / "empty", tmp_path, None, 4, 1)
    assert describe.main(["--checkpoint", str(tmp_path / "empty"), "--images", str(tmp_path),
                          "--out", str(tmp_path / "x.npy")]) == 2
    assert "empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        describe.main(["--checkpoint", str(model_dir), "--images", str(tmp_path),
                       "--out", str(tmp_path / "x.txt")])
    # found before the model is loaded: an --out under a file, a --resize the backbone
    # cannot describe, a truncated image
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        write_image(str(photos / f"{i}.jpg"), (32, 48), seed=i)
    with pytest.raises(SystemExit) as e:
        describe.main(["--checkpoint", str(model_dir), "--images", str(photos),
                       "--out", str(photos / "0.jpg" / "x.npy")])
    assert e.value.code == 2 and "cannot create its folder" in capsys.readouterr().err
    assert describe.main(["--checkpoint", str(model_dir), "--images", str(photos),
                          "--resize", "8", "8", "--out", str(tmp_path / "x.npy")]) == 2
    assert "--resize: a 8x8 image is too small" in capsys.readouterr().err
    cut = photos / "1.jpg"
    cut.write_bytes(cut.read_bytes()[:-50])
    assert describe.main(["--checkpoint", str(model_dir), "--images", str(photos),
                          "--out", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{cut}: truncated" in err[0]
    assert not (tmp_path / "x.npy").exists()
