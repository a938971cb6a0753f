"""User errors in the command-line entry points end with one line naming the file or option
and exit status 2, without a traceback and before any long work: the suite runner, the
paired comparison, the synthetic city, the dataset inspector, the TFDS builder and the
weights converter."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import write_dataset

REPO = Path(__file__).resolve().parent.parent


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"_script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _error_lines(err: str) -> list[str]:
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.strip()]


# scripts/run_suite.py -----------------------------------------------------------------------

SUITE = '''
from vgjax.config.sweep import cell

def get_suite(arg=None):
    cells = [cell("ok")]
    if arg == "typos":   # the second and third cells are refused, and the eval row
        cells += [cell("typo", **{{"train.optimzer": "adam"}}),
                  cell("bad", **{{"train.optimizer": "rmsprop"}})]
    return dict(name="t", title="t",
                config="configs/nope.py" if arg == "noconfig" else "configs/smoke.py",
                overrides={{"train.epochs": 1, "data.test_datasets": ["pitts30k"]}},
                cells=cells, datasets={datasets}, recalls=["R@1"],
                evals=[cell("e", **{{"test.positive_dist": -1}})] if arg == "typos" else [])
'''


def test_run_suite_refuses_user_errors_before_any_run(tmp_path, capsys):
    """An unknown suite variant, a misspelt dataset column, a missing base config and bad
    cells (all of them listed, the first cell not run) end with exit status 2."""
    run_suite = _script("run_suite")
    root = tmp_path / "data"
    write_dataset(root, "pitts30k", splits=("train", "val", "test"))
    (root / "tokyo-xs" / "images").mkdir(parents=True)
    out = tmp_path / "out"

    def run(suite, *extra):
        code = run_suite.main(["--suite", str(suite), "--datasets-root", str(root),
                               "--repeats", "1", "--out", str(out), *extra])
        err = capsys.readouterr().err
        assert not out.exists()  # nothing ran, nothing was written
        return code, _error_lines(err)

    code, lines = run(REPO / "configs" / "suites" / "table1_baselines.py:bogus")
    assert code == 2 and len(lines) == 1, lines
    assert "table1_baselines.py:bogus" in lines[0] and "expected one of paper" in lines[0]

    suite = tmp_path / "s.py"
    suite.write_text(SUITE.format(datasets='["pitts30k", "tokyo_xs"]'))
    code, lines = run(suite)
    assert code == 2 and len(lines) == 1, lines
    assert "'tokyo_xs' (did you mean 'tokyo-xs'?)" in lines[0]
    assert "pitts30k, tokyo-xs" in lines[0] and str(root) in lines[0]

    suite.write_text(SUITE.format(datasets='["pitts30k"]'))
    code, lines = run(f"{suite}:noconfig")
    assert code == 2 and len(lines) == 1 and "configs/nope.py: no such file" in lines[0], lines

    code, lines = run(f"{suite}:typos")
    assert code == 2, lines
    assert "3 row(s) with a config the checks refuse, nothing was run" in lines[0]
    assert lines[1].startswith("  typo: ") and "train.optimzer" in lines[1]
    assert lines[2].startswith("  bad: ") and "rmsprop" in lines[2]
    assert lines[3].startswith("  e: ") and "positive_dist" in lines[3]
    assert len(lines) == 4, lines


# python -m vgjax.eval.compare ---------------------------------------------------------------

NAMES = ["a/x.jpg", "b/x.jpg", "c/y.jpg", "z.jpg"]  # two files named x.jpg


def _predictions(path: Path, root: str, queries: list[str], found: set):
    """A predictions file whose queries are `root/queries/<name>`; query NAMES[c] is at
    x = 100 c beside database image c, and is found at rank 1 iff its row is in `found`."""
    n = len(NAMES)
    where = [NAMES.index(q) if q in NAMES else n for q in queries]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, query_paths=np.array([f"{root}/queries/{q}" for q in queries]),
             db_paths=np.array([f"{root}/database/d{j}.jpg" for j in range(n + 1)]),
             topk_indices=np.array([[c if i in found else n] for i, c in enumerate(where)],
                                   np.int64),
             topk_distances=np.zeros((len(queries), 1)),
             query_utm=np.array([(100.0 * c, 0.0) for c in where]),
             db_utm=np.array([(100.0 * j, 0.0) for j in range(n)] + [(1e5, 0.0)]),
             recall_values=np.array([1]), method=np.array("hard_resize"))


def test_compare_reads_only_predictions_and_pairs_queries_by_relative_path(tmp_path, capsys):
    from vgjax.eval.compare import main
    # the same queries (two files named x.jpg in different subfolders) under two roots
    names = NAMES
    a, b = tmp_path / "a" / "city.npz", tmp_path / "b" / "city.npz"
    _predictions(a, "/data1/city/images/test", names, {0, 1, 2, 3})
    _predictions(b, "/mnt/copy/city/images/test", names[::-1], {0})  # B lists them reversed
    assert main([str(a), str(b), "--recall-values", "1"]) == 0
    table = capsys.readouterr().out
    # B finds only its first query, z.jpg (A's query 3): A finds 3 more
    assert "| city | R@1 | 4 | 100.0 | 25.0 | +75.0 | 3 | 0 |" in table, table

    other = tmp_path / "c" / "city.npz"  # genuinely different queries: refused, one line
    _predictions(other, "/data1/city/images/test", ["a/x.jpg", "b/x.jpg", "c/y.jpg", "w.jpg"],
                 set())
    assert main([str(a), str(other)]) == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert "do not hold the same queries" in line and "z.jpg is only in A" in line

    for name, data in (("empty", b""), ("truncated", a.read_bytes()[:200])):
        bad = tmp_path / name / "city.npz"
        bad.parent.mkdir()
        bad.write_bytes(data)
        assert main([str(a), str(bad)]) == 2
        [line] = _error_lines(capsys.readouterr().err)
        assert line.startswith(f"error: {bad}: not a predictions file"), line


# python -m vgjax.synthetic ------------------------------------------------------------------

def test_synthetic_out_must_be_a_writable_folder(tmp_path, capsys, monkeypatch):
    from vgjax.synthetic import cli
    monkeypatch.setattr(cli, "generate", lambda *a, **k: pytest.fail("rendered"))
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out, expected in ((afile, "is a file, not a folder"),
                          (afile / "sub", f"{afile} is a file, not a folder")):
        assert cli.main(["--out", str(out)]) == 2
        [line] = _error_lines(capsys.readouterr().err)
        assert line.startswith(f"python -m vgjax.synthetic: error: --out {out}: ") and \
            expected in line, line
    # a folder this user cannot write in (faked: the tests may run as root)
    monkeypatch.setattr(cli.os, "access", lambda path, mode: False)
    assert cli.main(["--out", str(tmp_path / "new" / "city")]) == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert f"cannot write in {tmp_path}" in line, line


# python -m vgjax.data.inspect ---------------------------------------------------------------

def test_inspect_refuses_bad_workers_and_distances(tmp_path, capsys):
    from vgjax.data.inspect import main
    ds = write_dataset(tmp_path, "toy", splits=("test",))
    for argv, expected in (
            (["--workers", "0", "--verify-images"], "--workers 0: expected at least 1"),
            (["--soft-dist", "-5"], "--soft-dist -5: expected a positive distance"),
            (["--hard-dist", "0"], "--hard-dist 0: expected a positive distance"),
            (["--soft-dist", "nan"], "--soft-dist nan: expected a positive distance"),
            (["--soft-dist", "5"], "--hard-dist 10 > --soft-dist 5")):
        with pytest.raises(SystemExit) as e:
            main([str(ds), *argv])
        assert e.value.code == 2
        err = _error_lines(capsys.readouterr().err)
        assert err[-1] == f"python -m vgjax.data.inspect: error: {expected}" or \
            err[-1].startswith(f"python -m vgjax.data.inspect: error: {expected}"), err
    assert main([str(ds), "--soft-dist", "5", "--hard-dist", "5", "--workers", "1",
                 "--verify-images"]) == 0


# python -m vgjax.data.tfds_builder ----------------------------------------------------------

def test_tfds_builder_refuses_a_bad_shard_count_before_work(tmp_path, capsys):
    from vgjax.data import tfds_builder
    ds = write_dataset(tmp_path, "toy", splits=("test",))
    for shards in ("-3", "0"):
        with pytest.raises(SystemExit) as e:
            tfds_builder.main(["--dataset", str(ds), "--out", str(tmp_path / "tfds"),
                               "--num_shards", shards])
        assert e.value.code == 2
        err = _error_lines(capsys.readouterr().err)
        assert err[-1].endswith(f"error: --num_shards {shards}: expected at least 1"), err
        assert not (tmp_path / "tfds").exists()


# scripts/convert_torch_weights.py -----------------------------------------------------------

def test_convert_torch_weights_needs_no_torch_and_refuses_bad_input(tmp_path):
    """Run with torch made unimportable: a real checkpoint converts, a file that is not one
    and image sizes the backbone cannot take end with one line naming them."""
    from vgjax.models.pretrained import locate_imagenet_weights
    weights = locate_imagenet_weights("efficientnet_lite0")
    notes = tmp_path / "notes.pth"
    notes.write_text("not a checkpoint\n")

    def convert(*argv):
        code = ("import runpy, sys; sys.modules['torch'] = None; "
                f"sys.argv = ['convert_torch_weights.py', *{list(map(str, argv))!r}]; "
                "runpy.run_path('scripts/convert_torch_weights.py', run_name='__main__')")
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                              text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        return proc.returncode, _error_lines(proc.stderr), proc.stdout

    rc, err, _ = convert("--input", notes, "--output", tmp_path / "m1")
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"error: --input {notes}: "), err
    assert "weights_only" not in err[0]
    rc, err, _ = convert("--input", weights, "--output", tmp_path / "m2", "--image-size", "0",
                         "64")
    assert rc == 2 and err == ["error: --image-size 0 64: expected positive sizes"], err
    rc, err, _ = convert("--input", weights, "--output", tmp_path / "m3", "--backbone", "vgg16",
                         "--image-size", "8", "8")
    assert rc == 2 and len(err) == 1 and "too small for --backbone vgg16" in err[0], err
    rc, err, out = convert("--input", weights, "--output", tmp_path / "m4", "--image-size",
                           "96", "128")
    assert rc == 0, err
    assert json.loads(out)["backbone"] == "efficientnet_lite0"
    assert not (tmp_path / "m1").exists() and not (tmp_path / "m3").exists()
