"""`python -m vgjax.eval`: config overrides, outputs (results.json, predictions/*.npz)."""
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import write_dataset

from vgjax.eval import Describer, recalls_from_predictions
from vgjax.cli import eval as cli

PROJ = jnp.asarray(np.random.default_rng(0).standard_normal((8 * 8 * 3, 16)), jnp.float32)


@jax.jit
def standin(images):
    x = images.astype(jnp.float32) / 255.0 if images.dtype == jnp.uint8 else images
    x = jax.image.resize(x, (images.shape[0], 8, 8, 3), "linear")
    d = x.reshape(x.shape[0], -1) @ PROJ
    return d / jnp.linalg.norm(d, axis=1, keepdims=True)


def test_eval_options_parse_to_typed_config():
    args, cfg, model_overrides, keys = cli.parse_args([
        "--checkpoint", "m", "--datasets", "a", "b", "--out", "o",
        "--config.test.method=five_crops", "--config.test.scales=[0.5,1,1.5]",
        "--config.test.recall_values=1,5", "--config.test.multiscale_database=true",
        "--config.test.positive_dist=30", "--config.data.resize=(24,32)",
        "--config.model.dtype=bfloat16"])
    assert args.datasets == ["a", "b"] and args.split == "test"
    assert cfg.test.method == "five_crops" and list(cfg.test.scales) == [0.5, 1.0, 1.5]
    assert list(cfg.test.recall_values) == [1, 5] and cfg.test.multiscale_database is True
    assert cfg.test.positive_dist == 30.0 and tuple(cfg.data.resize) == (24, 32)
    assert model_overrides == {"dtype": "bfloat16"}
    assert "data.resize" in keys


def _toy_datasets(root):
    a = write_dataset(root, name="alpha", splits=("test",), n_db=10, n_q=4)
    b = write_dataset(root, name="beta", splits=("test",), n_db=8, n_q=3)
    return a, b


def _check_outputs(out, names, k):
    results = json.loads((out / "results.json").read_text())
    assert set(results) == set(names)  # exactly one entry per dataset
    domains = json.loads((out / "results_domains.json").read_text())
    assert set(domains) == set(names) and all(set(d) == {"day"} for d in domains.values())
    for name in names:
        assert list(results[name]) == ["R@1", "R@5", "R@10", "R@20", "protocol"]
        assert results[name]["protocol"] == {"dataset": name, "split": "test", "threshold": 25.0,
                                            "rule": "UTM distance <= 25 m", "queries": "all"}
        with np.load(out / "predictions" / f"{name}.npz", allow_pickle=False) as z:
            for key in ["query_paths", "db_paths", "topk_indices", "topk_distances",
                        "query_utm", "db_utm"]:
                assert key in z.files
            assert z["query_paths"].dtype.kind == "U" and z["db_paths"].dtype.kind == "U"
            assert z["topk_indices"].shape == z["topk_distances"].shape == (len(z["query_paths"]), k)
            assert z["topk_indices"].max() < len(z["db_paths"])
        again = recalls_from_predictions(out / "predictions" / f"{name}.npz", (1, 5, 10, 20), 25.0)
        recalls = {k: v for k, v in results[name].items() if k != "protocol"}
        assert again == pytest.approx(recalls, abs=1e-3)
    return results


def test_cli_writes_results_with_standin(tmp_path, monkeypatch, capsys):
    a, b = _toy_datasets(tmp_path / "data")
    monkeypatch.setattr(Describer, "from_checkpoint", classmethod(
        lambda cls, path, overrides=None: (Describer(standin), ml_collections.ConfigDict(
            {"backbone": "resnet18conv4"}), (24, 32))))
    out = tmp_path / "out"
    with pytest.raises(cli.UsageError, match=r"test.scales=\[0.5, 1.0\] \(scale 0.5 of "
                                         r"data.resize=\(24, 32\)\): a 12x16 image is too small "
                                         r"for resnet18conv4"):  # before any image is read
        cli.run(["--checkpoint", "unused", "--datasets", str(a), "--out", str(out),
                 "--config.test.scales=[0.5,1]"])
    results = cli.run(["--checkpoint", "unused", "--datasets", str(a), str(b), "--out", str(out),
                       "--config.test.method=nearest_crop", "--config.test.num_pictures=1",
                       "--config.data.num_workers=2"])
    _check_outputs(out, ["alpha", "beta"], 20)
    printed = capsys.readouterr().out
    assert "alpha/day" in printed and "R@20" in printed
    # each dataset's chance level (a random ranking's recalls) is printed and saved
    from vgjax.data import format as fmt
    from vgjax.eval.recalls import chance_recalls
    info = json.loads((out / "eval_info.json").read_text())
    for name, root in (("alpha", a), ("beta", b)):
        utm = lambda role, root=root: fmt.utm_array(fmt.list_images(root / "images" / "test" / role))
        expected = chance_recalls(utm("queries"), utm("database"), (1, 5, 10, 20))
        assert info["datasets"][name]["chance"] == pytest.approx(expected)
        line = next(l for l in printed.splitlines() if l.startswith(f"{name} (chance)"))
        numbers, protocol = line.split("  [")
        assert protocol == f"{name}/test: queries all, UTM distance <= 25 m]"
        assert [float(x) for x in numbers.split()[3:]] == pytest.approx(
            [round(expected[k], 1) for k in ("R@1", "R@5", "R@10", "R@20")], abs=0.051)
    assert results["alpha"]["R@1"] == pytest.approx(
        json.loads((out / "results.json").read_text())["alpha"]["R@1"])
    assert (out / "recall_curve.png").is_file()
    assert len(list((out / "pictures" / "alpha").glob("*.png"))) == 1


def test_cli_bad_input_names_the_problem(tmp_path, capsys):
    code = cli.main(["--checkpoint", "x", "--datasets", str(tmp_path / "missing"),
                     "--out", str(tmp_path / "o")])
    assert code == 2
    assert "missing" in capsys.readouterr().err
    code = cli.main(["--checkpoint", "x", "--datasets", str(tmp_path), "--out", str(tmp_path / "o"),
                     "--config.test.methd=x"])
    assert code == 2
    assert "--config.test.methd" in capsys.readouterr().err
    code = cli.main(["--checkpoint", "x", "--datasets", str(tmp_path), "--out", str(tmp_path / "o"),
                     "--config.test.batch_size=big"])
    assert code == 2
    assert "--config.test.batch_size" in capsys.readouterr().err


def test_cli_with_a_saved_model(tmp_path):
    from vgjax.models.io import save_model
    from vgjax.models.network import init_variables

    model_cfg = ml_collections.ConfigDict({
        "backbone": "resnet18conv4", "resnet_width": 4, "aggregation": "gem",
        "netvlad_clusters": 4, "gem_p": 3.0, "gem_eps": 1e-6, "l2": "before_pool",
        "fc_output_dim": 0, "trainable_from": "layer3", "freeze_frozen_bn_stats": False,
        "dtype": "float32"})
    variables = init_variables(model_cfg, jax.random.PRNGKey(0), (32, 32))
    save_model(tmp_path / "model", model_cfg, variables, image_size=(24, 32))
    a = write_dataset(tmp_path / "data", name="alpha", splits=("test",), n_db=10, n_q=4)
    out = tmp_path / "out"
    code = cli.main(["--checkpoint", str(tmp_path / "model"), "--datasets", str(a),
                     "--out", str(out), "--config.data.num_workers=2",
                     "--config.test.recall_values=[1,5,10,20]"])
    assert code == 0
    _check_outputs(out, ["alpha"], 20)
    info = json.loads((out / "eval_info.json").read_text())
    assert info["datasets"]["alpha"]["descriptor_dim"] == 16  # 4 * 4 channels after layer3
    assert info["config"]["data"]["resize"] == [24, 32]  # the size saved with the model
    code = cli.main(["--checkpoint", str(tmp_path / "model"), "--datasets", str(a),
                     "--out", str(out), "--config.model.backbone=resnet50conv4"])
    assert code == 2  # the architecture comes from the checkpoint
    code = cli.main(["--checkpoint", str(tmp_path / "model"), "--datasets", str(a),
                     "--out", str(tmp_path / "bf16"), "--config.model.dtype=bfloat16",
                     "--config.data.num_workers=2"])
    assert code == 0
    info = json.loads((tmp_path / "bf16" / "eval_info.json").read_text())
    assert info["model"]["dtype"] == "bfloat16"
    _check_outputs(tmp_path / "bf16", ["alpha"], 20)


def test_truncated_query_is_found_before_the_database_is_described(tmp_path, monkeypatch,
                                                                 capsys):
    a, _ = _toy_datasets(tmp_path / "data")
    query = sorted((a / "images" / "test" / "queries").iterdir())[-1]
    query.write_bytes(query.read_bytes()[:-100])
    calls = []

    def counting(images):
        calls.append(len(images))
        return standin(images)

    monkeypatch.setattr(Describer, "from_checkpoint", classmethod(
        lambda cls, path, overrides=None: (Describer(counting), ml_collections.ConfigDict(
            {"backbone": "resnet18conv4"}), (24, 32))))
    code = cli.main(["--checkpoint", "unused", "--datasets", str(a), "--out",
                     str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and calls == [] and len(err) == 1, err
    assert err[0].startswith("error: 1 of the 14 images of alpha (test database and queries) "
                             f"cannot be read: {query}: truncated or damaged")
