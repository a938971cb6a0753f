"""Fuzzed command lines of every entry point, each called in-process through its `main(argv)`.

The contract every drawn command line is held to: exit status 0 with a valid result, or exit
status 2 with exactly one `error: ...` line on stderr that names an option or a file
(argparse's usage line may stand above it), and never a Python traceback. The draws mix
valid values with numbers that are negative, zero, huge or NaN, paths that do not exist,
files where folders are expected and the reverse, empty strings, unicode, missing required
options and unknown flags. Inputs are real tiny files written once per module; no example
compiles anything with JAX. Hypothesis runs derandomized (the same examples on every run).
"""
from __future__ import annotations

import importlib.util
import io
import itertools
import json
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import ml_collections
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis.control import currently_in_test_context
from hypothesis import strategies as st

from conftest import write_dataset

REPO = Path(__file__).resolve().parent.parent

FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=False,
                phases=(Phase.explicit, Phase.generate, Phase.shrink),
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.filter_too_much])


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"_fuzz_script_{name}",
                                                  REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Reached(Exception):
    """Raised by a recorder standing in for an entry point's long work."""


def call(main, argv: list[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `main(argv)`; an uncaught exception propagates."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


OPTION = re.compile(r"--[A-Za-z][\w.-]*")


def check_contract(code, err: str, argv: list[str], extra_names=(), codes=(0, 2),
                   listing=False) -> None:
    """Exit `codes`; on a non-zero status one `error:` line (after argparse's usage lines
    only) naming an option, a config field or a file of the command line. `listing`: the
    error line may be followed by indented lines, one per item it counts (the suite
    runner lists every row its checks refuse)."""
    if currently_in_test_context():  # counts shown by --hypothesis-show-statistics
        event(f"exit {code}" + (f": {err.strip().splitlines()[-1][:90]}" if code and err.strip() else ""))
    where = f"argv={argv!r}\nstderr:\n{err}"
    assert "Traceback" not in err, where
    assert code in codes, f"exit status {code!r}; {where}"
    if code == 0:
        return
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    while listing and len(lines) > 1 and lines[-1].startswith("  ") and "error:" not in lines[-1]:
        lines.pop()
    assert len(errors) == 1 and lines and lines[-1] == errors[0], where
    assert all(line.startswith(("usage:", " ")) for line in lines[:-1]), where
    line = errors[0]
    names = {a.split("=", 1)[0] for a in argv if a.startswith("-")}
    names |= {a.split("=", 1)[0][len("--config."):] for a in argv if a.startswith("--config.")}
    names |= {a for a in argv if len(a) > 1 and not a.startswith("-")}  # files, arguments
    names |= set(extra_names)
    assert OPTION.search(line) or any(n and n in line for n in names), \
        f"the error names no option or file; {where}"


# inputs shared by the entry points ------------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny real inputs: a dataset root holding pitts30k (train/val/test), a model dir
    (model.json only: the recorders stand in for reading its variables), predictions files,
    a suite, a config file that does not import, a text file and an empty folder."""
    from vgjax.cli.config import schema
    from vgjax.models.io import FORMAT, MODEL_JSON
    base = tmp_path_factory.mktemp("fuzz")
    root = base / "data"
    write_dataset(root, "pitts30k", splits=("train", "val", "test"), n_db=6, n_q=3)
    afile = base / "afile.txt"
    afile.write_text("not what was expected\n")
    empty = base / "empty"
    empty.mkdir()
    model = base / "model"
    model.mkdir()
    smoke = _config("smoke")
    (model / MODEL_JSON).write_text(json.dumps({"format": FORMAT, "model": smoke.model.to_dict(),
                                                "image_size": [48, 64]}))
    preds = {}
    for side, found in (("a", [0, 1]), ("b", [0])):
        path = base / f"run_{side}" / "predictions" / "pitts30k.npz"
        path.parent.mkdir(parents=True)
        np.savez(path, query_paths=np.array([f"/d/{side}/q{i}.jpg" for i in range(3)]),
                 db_paths=np.array([f"/d/{side}/d{j}.jpg" for j in range(4)]),
                 topk_indices=np.array([[i if i in found else 3, 3] + [-1] * 18
                                        for i in range(3)]),
                 topk_distances=np.zeros((3, 20)),
                 query_utm=np.array([(100.0 * i, 0.0) for i in range(3)]),
                 db_utm=np.array([(100.0 * j, 0.0) for j in range(3)] + [(1e5, 0.0)]),
                 recall_values=np.array([1, 2]), method=np.array("hard_resize"))
        preds[side] = path
    broken = base / "broken.py"
    broken.write_text("def get_config(:\n")
    suite = base / "suite.py"
    suite.write_text(SUITE)
    fields = sorted(_fields(schema()))
    return World(base=base, root=root, dataset=root / "pitts30k", afile=afile, empty=empty,
                model=model, preds=preds, broken=broken, suite=suite, fields=fields,
                counter=itertools.count())


class World(dict):
    """The module's inputs (short in hypothesis's reports)."""

    def __repr__(self):
        return f"World({self['base']})"


def _config(arg=None):
    from vgjax.config import load_config_file
    return load_config_file(REPO / "configs" / "default.py", arg)


def _fields(node, prefix="") -> list[str]:
    out = []
    for key, value in node.items():
        if isinstance(value, (ml_collections.ConfigDict, dict)):
            out += _fields(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


def fresh(world, name: str) -> Path:
    """A path under the module's folder that no example used (not created)."""
    return world["base"] / "fresh" / f"{name}{next(world['counter'])}"


NUMBERS = ["0", "-1", "1", "2", "3", "-3", "1.5", "-0.5", "1e30", "-1e30", "99999999999999999999",
           "nan", "NaN", "inf", "-inf", "", "x", "é", "0x10", "1_000"]


def number(data, valid: list[str]) -> str:
    if data.draw(st.integers(0, 9), label="valid number") < 7:
        return data.draw(st.sampled_from(valid))
    return data.draw(st.one_of(st.sampled_from(NUMBERS),
                               st.integers(-10**20, 10**20).map(str),
                               st.floats(allow_nan=True, allow_infinity=True).map(repr)))


def path(data, world, kinds: dict) -> str:
    """One of `kinds` (name -> valid path) or a missing path, a file, an empty folder, an
    empty string, a unicode name or a path under a file."""
    bad = {"missing": str(world["base"] / "does-not-exist" / "x"),
           "file": str(world["afile"]), "empty folder": str(world["empty"]), "empty": "",
           "unicode": str(world["base"] / "données-é-名前"),
           "under a file": str(world["afile"] / "sub")}
    choices = kinds if data.draw(st.integers(0, 9), label="valid path") < 8 else bad
    return choices[data.draw(st.sampled_from(sorted(choices)), label="path")]


def unknown_flags(data) -> list[str]:
    return data.draw(st.sampled_from([[]] * 24 + [["--bogus"], ["--help-me", "1"], ["-x"],
                                                   ["positional"]]), label="extra")


def shuffle(data, groups: list[list[str]]) -> list[str]:
    """The option groups in a drawn order, each kept or (when drawn) dropped."""
    kept = [g for g in groups if g and data.draw(st.sampled_from([True] * 15 + [False]),
                                                 label="keep")]
    order = data.draw(st.permutations(range(len(kept))), label="order")
    return [a for i in order for a in kept[i]]


# python -m vgjax.train --check ------------------------------------------------------------------

CONFIG_VALUES = ["0", "-1", "1", "2", "7", "1e30", "-1e30", "99999999999999999999", "nan", "inf",
                 "", "[]", "[1,2]", "[0]", "['a']", "[-1]", "()", "(0, 0)", "(48, 64)",
                 "(-48, 64)", "(8, 8)", "(4000, 4000)", "true", "false", "None", "é", "名前",
                 "none", "host", "device", "{}", "{'x': 1}", "{'margin': -1}", "gem", "netvlad",
                 "sgd", "asgd", "plateau", "cosine", "ivfpq", "five_crops", "brightness(0.1)",
                 "[brightness(0.1)]", "['hflip(2)']", "[nope(1)]", "val/R@5", "val/R@0",
                 "test/R@1", "pitts30k", "[pitts30k]", "[nope]", "tfds", "msls_weighted",
                 "vgg16", "efficientnet_lite0", "resnet50conv5", "imagenet", "[1.0, 0.5]",
                 "[0.0]", "bfloat16", "'quoted'", "[a,b", "(1,"]


def _misspell(data, field: str) -> str:
    i = data.draw(st.integers(0, len(field) - 1), label="at")
    how = data.draw(st.sampled_from(["drop", "double", "swap", "section", "unknown", "sub"]))
    if how == "drop":
        return field[:i] + field[i + 1:]
    if how == "double":
        return field[:i] + field[i] + field[i:]
    if how == "swap" and i + 1 < len(field):
        return field[:i] + field[i + 1] + field[i] + field[i + 2:]
    if how == "section":
        return field.split(".")[0]
    if how == "sub":
        return field + ".extra"
    return "bogus." + field


def config_override(data, world) -> str:
    field = data.draw(st.sampled_from(world["fields"] + [
        "train.optimizer_args.momentum", "train.loss_args.margin", "train.scheduler_args.patience",
        "evals.val.bogus", "evals.extra.type", "train.momentum", "train.validate_initial",
        "data.cache_decoded"]), label="field")
    if data.draw(st.integers(0, 5), label="misspelt") == 0:
        field = _misspell(data, field)
    value = data.draw(st.one_of(st.sampled_from(CONFIG_VALUES), st.sampled_from(CONFIG_VALUES),
                                st.integers(-10**20, 10**20).map(str),
                                st.floats(allow_nan=True, allow_infinity=True).map(repr),
                                st.text(max_size=6).filter(lambda s: "\x00" not in s)),
                      label="value")
    if data.draw(st.integers(0, 30), label="no =") == 0:
        return f"--config.{field}"
    return f"--config.{field}={value}"


@pytest.mark.parametrize("config", ["configs/smoke.py", "configs/default.py:smoke"])
@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_train_check_fuzz(world, config, data):
    """`python -m vgjax.train --check` with 0-3 overrides drawn from the schema (real field
    names and misspelt ones, values of the right and the wrong type, out of range, empty,
    huge, strings) on the tiny dataset: `config OK: ...` and no run folder, or one error."""
    from vgjax.cli.train import main
    workdir = fresh(world, "run")
    base = [f"--config.data.root={world['root']}", "--config.data.test_datasets=[pitts30k]"]
    overrides = [config_override(data, world) for _ in range(data.draw(st.integers(0, 3)))]
    config_path = data.draw(st.sampled_from([config] * 18 + [
        str(world["broken"]), str(world["afile"]), str(world["empty"]), "configs/nope.py",
        "configs/default.py:bogus", ""]), label="config")
    workdir_arg = data.draw(st.sampled_from([str(workdir)] * 4 + [str(world["afile"]), None]))
    groups = [["--config", config_path], ["--check"],
              ["--workdir", workdir_arg] if workdir_arg is not None else [],
              data.draw(st.sampled_from([[]] * 8 + [["--num_processes", "2"], ["--process_id",
                                                                            "-1"]]))]
    argv = shuffle(data, groups) + base + overrides + unknown_flags(data)
    if "--check" not in argv:  # without it the run would start: the fuzz checks the checks
        argv.append("--check")
    code, out, err = call(main, argv)
    check_contract(code, err, argv, extra_names=world["fields"] + ["config"])
    if code == 0:
        [line] = out.strip().splitlines()
        assert line.startswith("config OK: ") and "nothing was trained" in line, out
    assert not workdir.exists()


def test_train_check_accepts_a_good_config_and_refuses_a_missing_split(world, capsys):
    """The valid path of `--check` in plain sight, and a dataset without its val split."""
    from vgjax.cli.train import main
    base = ["--config", "configs/smoke.py", "--check", f"--config.data.root={world['root']}"]
    assert main(base + ["--config.data.test_datasets=[pitts30k]"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("config OK: configs/smoke.py: train pitts30k, test pitts30k"), out
    write_dataset(world["base"] / "other", "nosplit", splits=("test",), n_db=3, n_q=1)
    with pytest.raises(SystemExit) as e:
        main(base + [f"--config.data.root={world['base'] / 'other'}",
                     "--config.data.train_dataset=nosplit"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    check_contract(2, err, base + ["--config.data.train_dataset=nosplit"])
    assert "data.train_dataset: 'nosplit'" in err, err


# python -m vgjax.eval -------------------------------------------------------------------------

@settings(FUZZ, max_examples=30)
@given(data=st.data())
def test_eval_fuzz(world, monkeypatch, data):
    """`python -m vgjax.eval`: checkpoints, dataset folders, splits, out folders and config
    overrides. Where a command line passes every up-front check, `load_model` (reading the
    model's variables, before the evaluation run) is replaced by a recorder that reads the
    real model.json and asserts it was reached with the parsed checkpoint; the evaluation
    itself is covered by tests/test_eval_cli.py."""
    from vgjax.cli import eval as eval_cli
    from vgjax.eval import extract
    from vgjax.models.io import read_model_info
    reached = []

    def recorder(checkpoint, device_put=True):
        read_model_info(checkpoint)
        reached.append(str(checkpoint))
        raise Reached
    monkeypatch.setattr(extract, "load_model", recorder)
    out = fresh(world, "eval")
    checkpoint = path(data, world, {"model": str(world["model"]), "model2": str(world["model"])})
    datasets = [path(data, world, {"ds": str(world["dataset"]), "ds2": str(world["dataset"])})
                for _ in range(data.draw(st.sampled_from([1] * 6 + [0, 2])))]
    overrides = [data.draw(st.sampled_from([
        "--config.model.dtype=bfloat16", "--config.model.dtype=float64",
        "--config.model.backbone=vgg16", "--config.test.method=five_crops",
        "--config.test.batch_size=0", "--config.test.recall_values=[]",
        "--config.test.positive_dist=-1", "--config.data.resize=(48, 64)",
        "--config.data.source=tfds", "--config.tset.method=x", "--config.test.pca_dim=-3"]))
        for _ in range(data.draw(st.integers(0, 2)))]
    groups = [["--checkpoint", checkpoint],
              ["--datasets", *datasets] if datasets or data.draw(st.booleans()) else [],
              ["--out", data.draw(st.sampled_from([str(out)] * 3 + [str(world["afile"]),
                                                                  str(world["afile"] / "x")]))],
              ["--split", data.draw(st.sampled_from(["test", "val", "train", "TEST", ""]))],
              data.draw(st.sampled_from([[], [], ["--config", "configs/smoke.py"],
                                         ["--config", str(world["broken"])],
                                         ["--config", "configs/nope.py"]]))]
    argv = shuffle(data, groups) + overrides + unknown_flags(data)
    try:
        code, _, err = call(eval_cli.main, argv)
    except Reached:
        event("reached the recorder")
        assert reached and Path(reached[0]) == world["model"], argv
        return
    check_contract(code, err, argv)
    assert code != 0, argv  # every valid command line reaches the recorder


# python -m vgjax.describe ---------------------------------------------------------------------

@settings(FUZZ, max_examples=25)
@given(data=st.data())
def test_describe_fuzz(world, monkeypatch, data):
    """`python -m vgjax.describe`: checkpoints, image folders, output names, sizes, batch
    sizes and worker counts. Where a command line passes every up-front check, `load_model`
    (the model load before describing the images) is replaced by a recorder asserting it was
    reached with the parsed checkpoint; describing is covered by tests/test_describe.py."""
    from vgjax import describe
    reached = []

    def recorder(checkpoint, device_put=True):
        reached.append(str(checkpoint))
        raise Reached
    monkeypatch.setattr(describe, "load_model", recorder)
    out = fresh(world, "desc")
    groups = [["--checkpoint", path(data, world, {"model": str(world["model"])})],
              ["--images", path(data, world, {"images": str(world["dataset"] / "images"),
                                              "queries": str(world["dataset"] / "images" /
                                                             "test" / "queries")})],
              ["--out", data.draw(st.sampled_from([f"{out}.npy"] * 3 + [str(out), "",
                                                                      f"{out}.npz"]))],
              ["--resize", number(data, ["48"]), number(data, ["64"])]
              if data.draw(st.booleans()) else [],
              ["--batch-size", number(data, ["2", "32"])] if data.draw(st.booleans()) else [],
              ["--num-workers", number(data, ["1", "2"])] if data.draw(st.booleans()) else []]
    argv = shuffle(data, groups) + unknown_flags(data)
    try:
        code, _, err = call(describe.main, argv)
    except Reached:
        event("reached the recorder")
        assert reached and Path(reached[0]) == world["model"], argv
        return
    check_contract(code, err, argv)
    assert code != 0, argv


# python -m vgjax.eval.compare -----------------------------------------------------------------

@settings(FUZZ, max_examples=30)
@given(data=st.data())
def test_compare_fuzz(world, data):
    """`python -m vgjax.eval.compare` on real predictions files: the table, or one error."""
    from vgjax.eval.compare import main
    preds = world["preds"]
    kinds = {"A file": str(preds["a"]), "B file": str(preds["b"]),
             "A run": str(preds["a"].parents[1]), "B folder": str(preds["b"].parent)}
    count = data.draw(st.sampled_from([2] * 8 + [0, 1, 3]), label="positionals")
    positional = [path(data, world, kinds) for _ in range(count)]
    groups = [positional,
              ["--recall-values", *[number(data, ["1", "2"]) for _ in range(
                  data.draw(st.integers(0, 2)))]] if data.draw(st.booleans()) else [],
              ["--positive-dist", number(data, ["25", "50.5"])] if data.draw(st.booleans())
              else [],
              ["--alpha", number(data, ["0.05", "0.5"])] if data.draw(st.booleans()) else [],
              ["--datasets", *data.draw(st.lists(st.sampled_from(["pitts30k", "sf-xs", ""]),
                                                 max_size=2))] if data.draw(st.booleans())
              else []]
    argv = [a for g in groups for a in g] + unknown_flags(data)
    code, out, err = call(main, argv)
    check_contract(code, err, argv, extra_names=["a", "b"])
    if code == 0:
        assert "| dataset | R@N |" in out and "| pitts30k |" in out, out


# python -m vgjax.synthetic --------------------------------------------------------------------

@settings(FUZZ, max_examples=25)
@given(data=st.data())
def test_synthetic_fuzz(world, monkeypatch, data):
    """`python -m vgjax.synthetic`: `--stats-only` runs for real (the planned positions);
    without it, `generate` (the rendering) is replaced by a recorder asserting the parsed
    options reached it; rendering is covered by tests/test_synthetic.py."""
    from vgjax.synthetic import cli
    from vgjax.synthetic.specs import ALL_OUTPUTS
    reached = []

    def recorder(out, preset, seed, workers, names, overwrite, **kwargs):
        reached.append((out, preset, seed, workers, names))
        return {"datasets": {}}
    monkeypatch.setattr(cli, "generate", recorder)
    stats_only = data.draw(st.booleans(), label="stats only")
    groups = [["--out", path(data, world, {"new": str(fresh(world, "city"))})]
              if data.draw(st.integers(0, 4)) else [],
              ["--preset", data.draw(st.sampled_from(["tiny", "tiny", "nope", "", "TINY"]))]
              if data.draw(st.booleans()) else [],
              ["--seed", number(data, ["0", "7"])] if data.draw(st.booleans()) else [],
              ["--workers", number(data, ["1", "2"])] if data.draw(st.booleans()) else [],
              ["--datasets", data.draw(st.sampled_from([
                  "pitts30k", "pitts30k,sf-xs", ",".join(ALL_OUTPUTS), "", ",", "nope",
                  "pitts30k,,sf-xs", "é"]))] if data.draw(st.booleans()) else [],
              ["--stats-only"] if stats_only else [],
              data.draw(st.sampled_from([[], ["--overwrite"], ["--varied-conditions"]]))]
    argv = shuffle(data, groups) + unknown_flags(data)
    code, out, err = call(cli.main, argv)
    check_contract(code, err, argv)
    if code == 0:
        summary = json.loads(out)
        assert "datasets" in summary, out
        if "--stats-only" not in argv:
            assert reached and reached[0][0] == argv[argv.index("--out") + 1], argv


# python -m vgjax.data.inspect -----------------------------------------------------------------

@settings(FUZZ, max_examples=20)
@given(data=st.data())
def test_inspect_fuzz(world, data):
    """`python -m vgjax.data.inspect` on the tiny dataset and on wrong folders. A path that is
    not a folder, and bad options, end with status 2; a folder whose content is not a
    dataset ends with one `error:` line and exit status 1 (the status this command documents
    for what it finds wrong in a dataset)."""
    from vgjax.data.inspect import main
    groups = [[path(data, world, {"dataset": str(world["dataset"]),
                                  "dataset2": str(world["dataset"])})],
              ["--soft-dist", number(data, ["25", "30"])] if data.draw(st.booleans()) else [],
              ["--hard-dist", number(data, ["10", "5"])] if data.draw(st.booleans()) else [],
              ["--workers", number(data, ["1", "2"])] if data.draw(st.booleans()) else [],
              data.draw(st.sampled_from([[], ["--json"], ["--verify-images"]]))]
    argv = shuffle(data, groups) + unknown_flags(data)
    code, out, err = call(main, argv)
    check_contract(code, err, argv, extra_names=["dataset"], codes=(0, 1, 2))
    if code == 0:
        assert out.startswith(("dataset pitts30k", "{")), out


# python -m vgjax.data.tfds_builder ------------------------------------------------------------

@settings(FUZZ, max_examples=20)
@given(data=st.data())
def test_tfds_builder_fuzz(world, data):
    """`python -m vgjax.data.tfds_builder`: dataset folders, output folders, splits and shard
    counts; a valid command line builds the copy of the tiny dataset for real."""
    pytest.importorskip("tensorflow_datasets")
    from vgjax.data import tfds_builder
    out = fresh(world, "tfds")
    datasets = [path(data, world, {"dataset": str(world["dataset"]),
                                   "dataset2": str(world["dataset"])})
                for _ in range(data.draw(st.sampled_from([1] * 6 + [0, 2])))]
    groups = [["--dataset", *datasets] if datasets or data.draw(st.booleans()) else [],
              ["--out", data.draw(st.sampled_from([str(out)] * 3 + [str(world["afile"]), "",
                                                                  str(world["afile"] / "x")]))],
              ["--splits", *data.draw(st.lists(st.sampled_from(["test", "val", "nope"]),
                                               max_size=2))] if data.draw(st.booleans())
              else [],
              ["--num_shards", number(data, ["1", "2"])] if data.draw(st.booleans()) else [],
              ["--overwrite"] if data.draw(st.booleans()) else []]
    argv = shuffle(data, groups) + unknown_flags(data)
    code, stdout, err = call(tfds_builder.main, argv)
    check_contract(code, err, argv)
    if code == 0:
        assert "pitts30k ->" in stdout and out.is_dir(), stdout


# scripts/run_suite.py -------------------------------------------------------------------------

SUITE = '''
from vgjax.config.sweep import cell

def get_suite(arg=None):
    cells = [cell("ok"), cell("lr", **{"train.lr": 1e-4})]
    if arg == "bad":
        cells.append(cell("bad", **{"train.optimzer": "adam"}))
    return dict(name="t", title="t", config="configs/smoke.py",
                overrides={"train.epochs": 1, "data.test_datasets": ["pitts30k"]},
                cells=cells, datasets=["pitts30k"], recalls=["R@1"])
'''


@settings(FUZZ, max_examples=25)
@given(data=st.data())
def test_run_suite_fuzz(world, monkeypatch, data):
    """`scripts/run_suite.py`: suites and their variants, dataset roots, repeat counts, out
    folders and `--only` rows. Where a command line passes every check made before the first
    run, `_run` (launching a training run) is replaced by a recorder asserting the first cell
    reached it with its run folder; runs are covered by tests/test_suite.py."""
    run_suite = _script("run_suite")
    reached = []

    def recorder(cmd, folder):
        reached.append((cmd, folder))
        raise Reached
    monkeypatch.setattr(run_suite, "_run", recorder)
    out = fresh(world, "suite")
    suite = data.draw(st.sampled_from([str(world["suite"])] * 4 + [
        f"{world['suite']}:bad", str(REPO / "configs" / "suites" / "table1_baselines.py"),
        str(REPO / "configs" / "suites" / "table1_baselines.py:bogus"), str(world["broken"]),
        str(world["afile"]), str(world["empty"]), "nope.py", ""]), label="suite")
    smoke = data.draw(st.booleans(), label="smoke")
    # without --datasets-root, --smoke would render the tiny city: always give one then
    root = path(data, world, {"root": str(world["root"]), "root2": str(world["root"])})
    groups = [["--suite", suite],
              ["--datasets-root", root] if smoke or data.draw(st.integers(0, 5)) else [],
              ["--repeats", number(data, ["1", "2"])] if data.draw(st.booleans()) else [],
              ["--out", data.draw(st.sampled_from([str(out)] * 3 + [str(world["afile"]),
                                                                  ""]))],
              ["--only", *data.draw(st.lists(st.sampled_from(["ok", "lr", "nope", ""]),
                                             min_size=int(data.draw(st.integers(0, 5)) > 0),
                                             max_size=2))]
              if data.draw(st.booleans()) else [],
              ["--smoke"] if smoke else []]
    argv = shuffle(data, groups)
    if "--smoke" in argv and "--datasets-root" not in argv:
        argv += ["--datasets-root", root]
    argv += unknown_flags(data)
    try:
        code, _, err = call(run_suite.main, argv)
    except Reached:
        event("reached the recorder")
        cmd, folder = reached[0]
        assert cmd[1:3] == ["-m", "vgjax.train"] and folder.parent == Path(
            argv[argv.index("--out") + 1]) / "runs", (argv, cmd)
        return
    check_contract(code, err, argv, extra_names=["suite"], listing=True)
    assert code != 0, argv


# scripts/convert_torch_weights.py -------------------------------------------------------------

@settings(FUZZ, max_examples=15)
@given(data=st.data())
def test_convert_torch_weights_fuzz(world, data):
    """`scripts/convert_torch_weights.py`: input files, backbones, heads and image sizes; a
    valid command line converts the bundled EfficientNet-Lite0 ImageNet weights for real."""
    from vgjax.models.pretrained import locate_imagenet_weights
    convert = _script("convert_torch_weights")
    weights = str(locate_imagenet_weights("efficientnet_lite0"))
    out = fresh(world, "converted")
    groups = [["--input", path(data, world, {"weights": weights, "weights2": weights})],
              ["--output", data.draw(st.sampled_from([str(out)] * 3 + [str(world["afile"]),
                                                                  ""]))],
              ["--backbone", data.draw(st.sampled_from(["efficientnet_lite0", "vgg16", "nope",
                                                        "resnet18conv4", ""]))]
              if data.draw(st.booleans()) else [],
              ["--aggregation", data.draw(st.sampled_from(["gem", "netvlad", "nope"]))]
              if data.draw(st.booleans()) else [],
              ["--netvlad-clusters", number(data, ["8"])] if data.draw(st.booleans()) else [],
              ["--fc-output-dim", number(data, ["0", "16"])] if data.draw(st.booleans()) else [],
              ["--l2", data.draw(st.sampled_from(["none", "after_pool", "nope"]))]
              if data.draw(st.booleans()) else [],
              ["--image-size", number(data, ["96"]), number(data, ["128"])]
              if data.draw(st.booleans()) else [],
              ["--seed", number(data, ["0"])] if data.draw(st.integers(0, 3)) == 0 else []]
    argv = shuffle(data, groups) + unknown_flags(data)
    code, stdout, err = call(convert.main, argv)
    check_contract(code, err, argv)
    if code == 0:
        assert json.loads(stdout)["output"] == str(out.absolute()), stdout
