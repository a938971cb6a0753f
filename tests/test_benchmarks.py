"""Benchmark readers (`data.format`: msls, nordland, npy_gt, sped, stlucia, svox): the
synthetic city writes each layout, its reader reads it back with its protocols' ground
truth, malformed files are refused naming them, and evaluation scores each protocol."""
import json
import shutil

import ml_collections
import numpy as np
import pytest
from conftest import write_dataset

from vgjax.cli import eval as eval_cli
from vgjax.cli.config import DEFAULT_CONFIG, load_config
from vgjax.config import ConfigError
from vgjax.data.dataset import load_split
from vgjax.data.format import DatasetFormatError, parse_fields
from vgjax.data.readers import READERS, read_split, reader_name
from vgjax.data.readers.nordland import frame_numbers
from vgjax.data.settings import check_data
from vgjax.eval import Describer, recalls_from_predictions
from vgjax.eval.evaluate import evaluate, evaluate_protocols
from vgjax.eval import evaluators
from vgjax.eval.evaluators import check_entry
from vgjax.eval.recalls import correct_from_positives, recalls_from_correct
from vgjax.synthetic.cli import main as synthetic_main

FORMATS = {"npy_gt": ("npy-gt", "test"), "msls": ("msls", "val"),
           "nordland": ("nordland", "test"), "sped": ("sped", "test"),
           "stlucia": ("st_lucia", "test"), "svox": ("svox", "test")}


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """A toy @UTM pitts30k (val and test) and every benchmark `python -m vgjax.synthetic
    --format F` lays out of it (nothing rendered: the split is read where it lies)."""
    root = tmp_path_factory.mktemp("benchmarks")
    write_dataset(root, name="pitts30k", splits=("val", "test"), n_db=14, n_q=10,
                  size=(24, 32), ext=".jpg", spacing=12.0,
                  query_note=lambda j: "night" if j % 3 == 0 else "day")
    for data_format in FORMATS:
        assert synthetic_main(["--out", str(root), "--format", data_format]) == 0
    return root


@pytest.fixture(scope="module")
def cfg():
    c = load_config(str(DEFAULT_CONFIG), [])
    c.data.resize = (24, 32)
    c.data.num_workers = 1
    c.test.recall_values = (1, 3, 14)
    c.test.batch_size = 8
    return c


def _read(city, cfg, data_format):
    folder, split = FORMATS[data_format]
    return read_split(cfg.data, str(city / folder), split, data_format)


def _source(city, split="test"):
    return load_split(city / "pitts30k", split)


def _by_name(paths):
    return {p.rsplit("/", 1)[-1]: i for i, p in enumerate(paths)}


def test_registry_names_and_data_format(cfg):
    assert READERS.names() == ["folder", "sped", "stlucia", "svox", "npy_gt", "msls",
                               "nordland"]
    assert reader_name("gsv_cities(cities='X')") == "folder"   # training-only format
    assert reader_name("folder(cell_m=15)") == "folder" and reader_name("x", "msls") == "msls"
    data = ml_collections.ConfigDict(cfg.data.to_dict())
    for good in ("msls", "npy_gt", "svox", "folder(cell_m=15)", "gsv_cities"):
        data.format = good
        check_data(ml_collections.ConfigDict({"data": data}))
    for bad, words in (("nope", "or an evaluation reader: folder, sped"),
                       ("msls(x=1)", "msls has no argument 'x'")):
        data.format = bad
        with pytest.raises(ConfigError, match="data.format") as e:
            check_data(ml_collections.ConfigDict({"data": data}))
        assert words in str(e.value)
    data.format, data.source = "nordland", "tfds"
    with pytest.raises(ConfigError, match="holds @UTM folders only"):
        check_data(ml_collections.ConfigDict({"data": data}))
    c = ml_collections.ConfigDict(cfg.to_dict())
    c.evals.test.format = "msl"
    with pytest.raises(ConfigError, match=r"evals.test.format: unknown value 'msl'"):
        check_entry(c, "test")


def test_utm_benchmarks_keep_the_folder_positives(city, cfg):
    source = _source(city)
    for data_format in ("sped", "stlucia"):
        split = _read(city, cfg, data_format)
        (qs,) = split.query_sets
        assert qs.name == split.dataset and qs.protocol.rule == "UTM distance <= 25 m"
        assert qs.protocol.threshold == 25.0 and qs.protocol.queries == "all"
        assert all(np.array_equal(a, b) for a, b in zip(qs.positives, source.soft_positives))
    with pytest.raises(DatasetFormatError, match="SPED is a test set only"):
        read_split(cfg.data, str(city / "sped"), "val", "sped")


def test_svox_conditions_are_query_sets(city, cfg):
    split, source = _read(city, cfg, "svox"), _source(city)
    assert [qs.name for qs in split.query_sets] == [
        f"svox_{c}" for c in ("night", "overcast", "rain", "snow", "sun")]
    seen = np.concatenate([qs.queries for qs in split.query_sets])
    assert sorted(seen) == list(range(len(split.queries))) == list(range(10))
    where = _by_name(source.queries.paths)
    db_names = [p.rsplit("/", 1)[-1] for p in split.database.paths]
    src_db = [p.rsplit("/", 1)[-1] for p in source.database.paths]
    assert db_names == src_db and "/gallery/" in split.database.paths[0]
    for qs in split.query_sets:
        assert qs.protocol.queries == qs.name.split("_")[1]
        for q, positives in zip(qs.queries, qs.positives):
            j = where[split.queries.paths[q].rsplit("/", 1)[-1]]
            assert np.array_equal(positives, source.soft_positives[j])


def test_npy_gt_reads_lists_and_ground_truth(city, cfg):
    split, source = _read(city, cfg, "npy_gt"), _source(city)
    (qs,) = split.query_sets
    assert split.dataset == qs.name == "synthcity" and qs.protocol.threshold is None
    assert qs.protocol.rule == "ground truth synthcity_gt.npy"
    assert split.database.paths[0].endswith("npy-gt/ref/00000.jpg")
    assert np.isnan(split.database.utm).all()
    assert all(np.array_equal(a, b) for a, b in zip(qs.positives, source.soft_positives))
    # the folder itself, or the <folder>/<name> prefix
    same = read_split(cfg.data, str(city / "npy-gt" / "synthcity"), "test", "npy_gt")
    assert list(same.queries.paths) == list(split.queries.paths)


def _broken(city, tmp_path, folder):
    copy = tmp_path / folder
    shutil.copytree(city / folder, copy)
    return copy


def test_npy_gt_errors_name_the_file(city, cfg, tmp_path):
    root = _broken(city, tmp_path, "npy-gt")
    gt = np.load(root / "synthcity_gt.npy", allow_pickle=True)
    cases = [
        (lambda: np.save(root / "synthcity_gt.npy", gt[:-2], allow_pickle=True),
         r"synthcity_gt.npy: 8 ground-truth lists but 10 queries"),
        (lambda: np.save(root / "synthcity_gt.npy",
                         np.array([[99]] * len(gt)), allow_pickle=True),
         r"synthcity_gt.npy: entry 0 holds \[99.0\], not indices of the 14 database"),
        (lambda: (root / "synthcity_gt.npy").write_bytes(b"not an npy file"),
         r"synthcity_gt.npy: not a readable .npy file"),
        (lambda: (root / "ref" / "00003.jpg").unlink(),
         r"synthcity_dbImages.npy: 1 listed image\(s\) missing: .*ref/00003.jpg"),
        (lambda: np.save(root / "synthcity_qImages.npy", np.arange(3)),
         r"synthcity_qImages.npy: expected a 1-D array of image paths"),
    ]
    pristine = {p.name: p.read_bytes() for p in root.glob("*.npy")}
    for damage, message in cases:
        damage()
        with pytest.raises(DatasetFormatError, match=message) as e:
            read_split(cfg.data, str(root), "test", "npy_gt")
        assert "\n" not in str(e.value)
        for name, data in pristine.items():
            (root / name).write_bytes(data)
        shutil.copyfile(city / "npy-gt" / "ref" / "00003.jpg", root / "ref" / "00003.jpg")
    np.save(root / "other_val_gt.npy", gt, allow_pickle=True)
    with pytest.raises(DatasetFormatError, match="several ground truths"):
        read_split(cfg.data, str(root), "test", "npy_gt")


def test_msls_official_rule_and_subset(city, cfg):
    split = _read(city, cfg, "msls")
    official, subset = split.query_sets
    assert (official.name, subset.name) == ("msls", "msls_subset")
    assert official.protocol.rule == "UTM distance <= 25 m"
    assert subset.protocol.rule == "ground truth msls_val_pIdx.npy"
    assert subset.protocol.queries == f"{len(subset)} of msls_val_qIdx.npy"
    source = _source(city, "val")
    # panoramas (one database image in 7 and one query in 5, per city) are left out
    assert len(split.database) < len(source.database) and len(split.queries) < 10
    assert all("/images/" in p and p.endswith(".jpg") for p in split.database.paths)
    cities = np.array([p.split("/train_val/")[1].split("/")[0] for p in split.database.paths])
    for q, positives in zip(official.queries, official.positives):
        assert len(positives) > 0   # the official evaluation scores queries with a positive
        city_q = split.queries.paths[q].split("/train_val/")[1].split("/")[0]
        assert (cities[positives] == city_q).all()
        d = np.linalg.norm(split.database.utm[positives] - split.queries.utm[q], axis=1)
        assert (d <= 25.0).all()
    row = {int(q): i for i, q in enumerate(official.queries)}
    assert set(subset.queries.tolist()) <= set(row) and len(subset) > 0
    for q, positives in zip(subset.queries, subset.positives):
        assert np.array_equal(positives, official.positives[row[int(q)]])


def test_msls_errors_name_the_file(city, cfg, tmp_path):
    root = _broken(city, tmp_path, "msls")
    with pytest.raises(DatasetFormatError, match="reads the val split"):
        read_split(cfg.data, str(root), "test", "msls")
    p_idx = np.load(root / "msls_val_pIdx.npy", allow_pickle=True)
    np.save(root / "msls_val_pIdx.npy", p_idx[:-1], allow_pickle=True)
    with pytest.raises(DatasetFormatError, match=r"msls_val_pIdx.npy: \d+ ground-truth lists "
                                                 r"but \d+ queries in msls_val_qIdx.npy"):
        read_split(cfg.data, str(root), "val", "msls")
    (root / "msls_val_pIdx.npy").unlink()
    with pytest.raises(DatasetFormatError, match=r"msls_val_pIdx.npy does not exist"):
        read_split(cfg.data, str(root), "val", "msls")
    for f in root.glob("msls_val_*.npy"):
        f.unlink()
    assert [qs.name for qs in read_split(cfg.data, str(root), "val", "msls").query_sets] == [
        "msls"]   # without the lists, the official protocol alone
    query = root / "train_val" / "sf" / "query"
    next((query / "images").iterdir()).unlink()
    with pytest.raises(DatasetFormatError, match=r"sf/query/postprocessed.csv: 1 listed "
                                                 r"image\(s\) missing"):
        read_split(cfg.data, str(root), "val", "msls")
    (query / "raw.csv").unlink()
    with pytest.raises(DatasetFormatError, match=r"sf/query/raw.csv does not exist"):
        read_split(cfg.data, str(root), "val", "msls")


def test_nordland_frame_tolerances(city, cfg, tmp_path):
    split = _read(city, cfg, "nordland")
    tol1, tol10 = split.query_sets
    assert (tol1.name, tol10.name) == ("nordland_tol1", "nordland_tol10")
    assert (tol1.protocol.threshold, tol10.protocol.rule) == (1.0, "frame tolerance 10")
    db_frames, q_frames = frame_numbers(split.database.paths), frame_numbers(split.queries.paths)
    assert list(db_frames) == list(range(14))
    for q, (a, b) in enumerate(zip(tol1.positives, tol10.positives)):
        assert set(a) <= set(b)
        assert sorted(db_frames[a]) == [f for f in range(14) if abs(f - q_frames[q]) <= 1]
        assert sorted(db_frames[b]) == [f for f in range(14) if abs(f - q_frames[q]) <= 10]
    root = _broken(city, tmp_path, "nordland")
    first = sorted((root / "images" / "test" / "queries").iterdir())[0]
    fields = parse_fields(first)
    first.rename(first.with_name(first.name.replace(f"@{fields['pano_id']}@", "@x7@", 1)))
    with pytest.raises(DatasetFormatError, match=r"no frame number in the file name's seventh "
                                                 r"field \(pano_id\), found 'x7'"):
        read_split(cfg.data, str(root), "test", "nordland")


def _describe(images):
    """Raw pixels of a 4x4 grid of the image, L2-normalised: no model, no compilation."""
    x = np.asarray(images, np.float32)
    b, h, w, _ = x.shape
    d = x[:, :: max(h // 4, 1), :: max(w // 4, 1)].reshape(b, -1)
    return d / np.linalg.norm(d, axis=1, keepdims=True).clip(1e-6)


def test_evaluate_scores_each_protocol(city, cfg, tmp_path):
    split = _read(city, cfg, "nordland")
    with pytest.raises(ValueError, match="2 protocols"):
        evaluate(split, _describe, cfg.test, cfg.data)
    tol1, tol10 = evaluate_protocols(split, _describe, cfg.test, cfg.data, out_dir=tmp_path)
    assert (tol1.name, tol10.name) == ("nordland_tol1", "nordland_tol10")
    assert np.array_equal(tol1.topk_indices, tol10.topk_indices)   # one search for both
    for result, qs in zip((tol1, tol10), split.query_sets):
        assert result.protocol == qs.protocol
        expected = correct_from_positives(result.topk_indices, qs.positives)
        assert np.array_equal(result.correct, expected)
        assert result.recalls == recalls_from_correct(expected, (1, 3, 14))
        assert result.recalls["R@14"] == 100.0   # every frame has a positive in range
        again = recalls_from_predictions(tmp_path / "predictions" / f"{result.name}.npz",
                                         (1, 3, 14), positive_dist=1e9)
        assert again == pytest.approx(result.recalls)
    assert all(tol10.recalls[k] >= tol1.recalls[k] for k in tol1.recalls)
    # the @UTM folder keeps its rule and numbers; its result records it
    (folder,) = evaluate_protocols(_source(city), _describe, cfg.test, cfg.data)
    assert folder.protocol.rule == "UTM distance <= 25 m" and folder.name == "pitts30k"


def test_eval_cli_reports_protocols(city, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(Describer, "from_checkpoint", classmethod(
        lambda cls, path, overrides=None: (Describer(_describe), ml_collections.ConfigDict(
            {"backbone": "resnet18conv4"}), (24, 32))))
    out = tmp_path / "out"
    args = ["--checkpoint", "unused", "--out", str(out), "--config.data.num_workers=1",
            "--config.test.recall_values=1,5", "--split", "val",
            "--config.data.format=msls"]
    broken = _broken(city, tmp_path, "msls")
    (broken / "msls_val_qIdx.npy").unlink()
    with pytest.raises(eval_cli.UsageError, match=r"--datasets .*msls: .*msls_val_qIdx.npy "
                                                  r"does not exist"):
        eval_cli.run([*args, "--datasets", str(broken)])   # before the model loads
    results = eval_cli.run([*args, "--datasets", str(city / "msls")])
    assert set(results) == {"msls", "msls_subset"}
    assert results["msls"]["protocol"]["rule"] == "UTM distance <= 25 m"
    assert results["msls_subset"]["protocol"] == {
        "dataset": "msls", "split": "val", "rule": "ground truth msls_val_pIdx.npy",
        "threshold": None, "queries": results["msls_subset"]["protocol"]["queries"]}
    printed = capsys.readouterr().out
    for name in ("msls", "msls_subset"):
        line = next(l for l in printed.splitlines() if l.startswith(f"{name} "))
        assert line.endswith("]") and "msls/val: queries" in line
    info = json.loads((out / "eval_info.json").read_text())
    assert info["datasets"]["msls_subset"]["protocol"]["threshold"] is None


def test_metrics_of_a_benchmark_with_several_protocols(city, cfg):
    c = ml_collections.ConfigDict(cfg.to_dict())
    c.evals.val.format = "msls"
    c.evals.val.datasets = [str(city / "msls")]
    e = evaluators.build(c, "val")
    assert e.data_format == "msls"
    results = e.run(_describe)
    metrics = e.metrics(results)
    assert [r.name for r in results] == ["msls", "msls_subset"]
    assert metrics["val/R@1"] == metrics["val/msls/R@1"] == results[0].recalls["R@1"]
    assert metrics["val/msls_subset/R@3"] == results[1].recalls["R@3"]


def test_single_protocol_without_coordinates_draws_pictures(city, cfg, tmp_path):
    split = _read(city, cfg, "npy_gt")
    test = ml_collections.ConfigDict(cfg.test.to_dict())
    test.num_pictures, test.pictures_topk = 1, 2
    result = evaluate(split, _describe, test, cfg.data, out_dir=tmp_path)
    assert result.name == "synthcity" and result.protocol.rule.endswith("synthcity_gt.npy")
    assert len(list((tmp_path / "pictures" / "synthcity").glob("query_*.png"))) == 1
    assert result.domain_recalls == {}   # the lists' own file names carry no note


def test_synthetic_format_refusals(city, capsys):
    for argv, words in ((["--format", "sped"], "sped already exists; pass --overwrite"),
                        (["--format", "msls", "--datasets", "pitts30k"],
                         "--datasets applies to --format standard only"),
                        (["--format", "nordland", "--stats-only"],
                         "--stats-only applies to --format standard and gsv_cities")):
        with pytest.raises(SystemExit) as e:
            synthetic_main(["--out", str(city), *argv])
        assert e.value.code == 2 and words in capsys.readouterr().err
