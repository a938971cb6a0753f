"""`python -m vgjax.export`: hloc's feature and pairs files, read back as hloc reads them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict

import h5py
import jax
import numpy as np
import pytest
from conftest import write_image

from configs.default import get_config
from vgjax.export import cli, hloc
from vgjax.export.pairs import read_name_list, retrieval_pairs, select_names
from vgjax.models.io import save_model
from vgjax.models.network import init_variables

# image name (relative to the folder) -> (H, W)
IMAGES = {"db/a.jpg": (32, 40), "db/b.jpg": (36, 32), "db/sub/c.jpg": (32, 48),
          "db/sub/d.png": (40, 32), "query/q1.jpg": (32, 44), "query/night/q2.jpg": (34, 40),
          "e.jpg": (32, 32)}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    cfg = get_config().model
    cfg.resnet_width = 4
    cfg.netvlad_clusters = 4
    variables = init_variables(cfg, jax.random.key(0), image_size=(32, 32))
    model = save_model(root / "model", cfg, variables, (32, 32))
    folder = root / "images"
    for i, (name, size) in enumerate(IMAGES.items()):
        write_image(str(folder / name), size=size, seed=i)
    (folder / "notes.txt").write_text("not an image")
    return root, model, folder


def run_export(setup, out, *extra):
    root, model, folder = setup
    return cli.main(["hloc", "--checkpoint", str(model), "--images", str(folder),
                     "--out", str(root / out), "--num-workers", "2", *extra])


def h5_names(path):
    """hloc's `list_h5_names`: the parents of every dataset."""
    names = []
    with h5py.File(str(path), "r", libver="latest") as fd:
        fd.visititems(lambda _, obj: names.append(obj.parent.name.strip("/"))
                      if isinstance(obj, h5py.Dataset) else None)
    return sorted(set(names))


def read_pairs(path):
    """hloc's `parse_retrieval`: query -> [db, ...] in file order."""
    retrieval = defaultdict(list)
    for line in path.read_text().rstrip("\n").split("\n"):
        if line:
            q, r = line.split()
            retrieval[q].append(r)
    return dict(retrieval)


def brute_force(desc, queries, db, k, min_score):
    expected = {}
    for q in queries:
        scored = [(float(desc[q] @ desc[d]), -i, d) for i, d in enumerate(db)
                  if d != q and float(desc[q] @ desc[d]) >= min_score]
        best = [d for _, _, d in sorted(scored, reverse=True)[:k]]
        if best:
            expected[q] = best
    return expected


@pytest.fixture(scope="module")
def all_images(setup, tmp_path_factory):
    """An export with every image as query and database, K=3, hloc's min score 0."""
    assert run_export(setup, "all", "--num-matched", "3", "--batch-size", "4") == 0
    return setup[0] / "all"


def test_features_file_is_what_hloc_reads(all_images, setup, capsys):
    _, _, folder = setup
    names = h5_names(all_images / "global-feats.h5")
    assert names == sorted(IMAGES)  # nested groups, '/' kept, no other files
    with h5py.File(str(all_images / "global-feats.h5"), "r", libver="latest") as fd:
        for name, (h, w) in IMAGES.items():
            desc = fd[name]["global_descriptor"].__array__()
            size = fd[name]["image_size"].__array__()
            assert desc.dtype == np.float32 and desc.shape == (64,)
            np.testing.assert_allclose(np.linalg.norm(desc), 1.0, rtol=1e-5)
            assert size.dtype == np.int64 and size.tolist() == [w, h]
        assert isinstance(fd["db"]["sub"], h5py.Group)
    # the same descriptors as `export npy` (= vgjax.describe) gives for the folder
    out = all_images / "desc.npy"
    capsys.readouterr()
    assert cli.main(["npy", "--checkpoint", str(setup[1]), "--images", str(folder),
                     "--out", str(out), "--num-workers", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == len(IMAGES)
    paths = (all_images / "desc_paths.txt").read_text().splitlines()
    with h5py.File(str(all_images / "global-feats.h5"), "r") as fd:
        stored = np.stack([fd[os.path.relpath(p, folder)]["global_descriptor"][()]
                           for p in paths])
    np.testing.assert_allclose(stored, np.load(out), rtol=1e-6, atol=1e-7)


def test_pairs_are_the_brute_force_top_k(all_images):
    with h5py.File(str(all_images / "global-feats.h5"), "r") as fd:
        desc = {n: fd[n]["global_descriptor"][()] for n in IMAGES}
    pairs = read_pairs(all_images / "pairs-from-retrieval.txt")
    names = sorted(IMAGES)
    expected = brute_force(desc, names, names, 3, 0.0)
    assert pairs == expected
    assert all(q not in dbs for q, dbs in pairs.items())
    assert not (all_images / "pairs-from-retrieval.txt").read_text().endswith("\n")


def test_prefixes_half_precision_and_no_min_score(setup):
    root = setup[0]
    assert run_export(setup, "prefixed", "--num-matched", "10", "--query-prefix", "query/",
                      "e.jpg", "--db-prefix", "db/", "--as-half", "--min-score=-inf") == 0
    with h5py.File(str(root / "prefixed" / "global-feats.h5"), "r") as fd:
        assert sorted(h5_names(root / "prefixed" / "global-feats.h5")) == sorted(IMAGES)
        desc = {n: fd[n]["global_descriptor"][()] for n in IMAGES}
    assert all(d.dtype == np.float16 for d in desc.values())
    desc = {n: d.astype(np.float32) for n, d in desc.items()}
    queries = ["e.jpg", "query/night/q2.jpg", "query/q1.jpg"]
    db = [n for n in sorted(IMAGES) if n.startswith("db/")]
    pairs = read_pairs(root / "prefixed" / "pairs-from-retrieval.txt")
    assert pairs == brute_force(desc, queries, db, 10, -np.inf)
    assert all(len(v) == len(db) for v in pairs.values())  # K above the database: all of it


def test_bad_input_is_one_line_before_extraction(setup, capsys, monkeypatch):
    root, model, folder = setup

    def no_extraction(*args, **kwargs):
        raise AssertionError("extraction started")

    monkeypatch.setattr(hloc, "describe_paths", no_extraction)
    (root / "empty").mkdir(exist_ok=True)
    cases = [
        (["--checkpoint", str(root / "nowhere"), "--images", str(folder)], "--checkpoint"),
        (["--checkpoint", str(model), "--images", str(root / "empty")], "no .jpg"),
        (["--checkpoint", str(model), "--images", str(folder), "--query-prefix", "x/"],
         "--query-prefix x/"),
        (["--checkpoint", str(model), "--images", str(folder), "--resize", "8", "8"],
         "--resize"),
    ]
    for args, what in cases:
        assert cli.main(["hloc", *args, "--out", str(root / "bad")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and what in err[0], err
    for args, what in [(["--num-matched", "0"], "--num-matched must be >= 1"),
                       (["--db-list", str(root / "none.txt")], "none.txt: no such file")]:
        with pytest.raises(SystemExit) as e:
            cli.main(["hloc", "--checkpoint", str(model), "--images", str(folder),
                      "--out", str(root / "bad"), *args])
        assert e.value.code == 2 and what in capsys.readouterr().err
    assert not (root / "bad" / "global-feats.h5").exists()
    assert cli.main(["tar"]) == 2 and "unknown format 'tar'" in capsys.readouterr().err
    # the real command: exit code 2 and one line
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "vgjax.export", "hloc", "--checkpoint",
                           str(root / "nowhere"), "--images", str(folder), "--out",
                           str(root / "bad")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: --checkpoint {root / 'nowhere'}: no such file or directory"]


def test_name_selection_and_lists(tmp_path):
    names = ["db/a.jpg", "db/b.jpg", "q/1.jpg"]
    assert select_names(names, ["db/"], None, "db") == ["db/a.jpg", "db/b.jpg"]
    assert select_names(names, ["q/", "db/b"], None, "query") == ["db/b.jpg", "q/1.jpg"]
    assert select_names(names, None, None, "db") == names
    listing = tmp_path / "queries.txt"
    listing.write_text("# queries\n\nq/1.jpg PINHOLE 32 32 1 16 16\ndb/a.jpg\n")
    assert select_names(names, None, read_name_list(listing), "query") == ["q/1.jpg", "db/a.jpg"]
    with pytest.raises(ValueError, match="--db-list: q/2.jpg not among"):
        select_names(names, None, ["q/2.jpg"], "db")
    with pytest.raises(ValueError, match="--query-prefix z: no image name"):
        select_names(names, ["z"], None, "query")


def test_retrieval_pairs_rules():
    desc = np.array([[1, 0], [0.8, 0.6], [0, 1], [-1, 0]], np.float32)
    names = ["a", "b", "c", "d"]
    # self excluded, negatives dropped at min score 0, best first
    assert retrieval_pairs(desc, desc, names, names, 2) == [
        ("a", "b"), ("a", "c"), ("b", "a"), ("b", "c"), ("c", "b"), ("c", "a"),
        ("d", "c")]
    assert retrieval_pairs(desc[3:], desc, names[3:], names, 5, None) == [
        ("d", "c"), ("d", "b"), ("d", "a")]
