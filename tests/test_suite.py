"""The suite runner end to end on the tiny city: one trained cell and one whose run
crashes (the suite writes its table and exits 1 naming it); resuming skips what finished;
Ctrl-C stops the runner and its run with one line. Configs the checks refuse are refused
before any run (tests/test_cli_errors.py)."""
import json
import os
import signal
import subprocess
import time
import sys
from pathlib import Path

import pytest

from vgjax.config.sweep import Suite, cell, load_suite, override_args, product, zipped

REPO = Path(__file__).resolve().parent.parent

SUITE = '''
from vgjax.config.sweep import cell

def get_suite(arg=None):
    return dict(name="mini", title="A two-cell suite", config="configs/smoke.py",
                overrides={"train.queries_per_epoch": 16, "train.epochs": 1,
                           "data.test_datasets": ["pitts30k"],
                           "test.save_predictions": False},
                cells=[cell("ok", {"setting": "smoke"}),
                       cell("crash", {"setting": "crashing run"})],
                datasets=["pitts30k"], recalls=["R@1", "R@5"], plots=["val"])
'''


def test_sweeps():
    rows = product(("train.optimizer", ["adam", "sgd"]), ("train.lr", [1e-3, 1e-5]))
    assert [r["name"] for r in rows] == ["adam-0.001", "adam-1e-05", "sgd-0.001", "sgd-1e-05"]
    assert rows[1]["overrides"] == {"train.optimizer": "adam", "train.lr": 1e-5}
    assert rows[1]["label"] == {"optimizer": "adam", "lr": "1e-05"}
    assert len(zipped(("a.b", [1, 2]), ("a.c", ["x", "y"]))) == 2
    with pytest.raises(ValueError):
        zipped(("a.b", [1, 2]), ("a.c", ["x"]))
    assert override_args({"train.scheduler_args": {"patience": 0}, "x.y": [0.5, 1.0],
                          "z.w": True}) == ["--config.train.scheduler_args.patience=0",
                                            "--config.x.y=[0.5, 1.0]", "--config.z.w=true"]
    assert cell("a", b=1)["overrides"] == {"b": 1}


def test_reduced_suite_end_to_end_and_resume(tmp_path, tiny_city):
    root = tiny_city
    suite = tmp_path / "mini.py"
    suite.write_text(SUITE)
    out = tmp_path / "out"
    # the crash cell's run cannot open its log file: it fails after the checks
    (out / "runs" / "crash-rep0" / "train.log").mkdir(parents=True)
    cmd = [sys.executable, str(REPO / "scripts" / "run_suite.py"), "--suite", str(suite),
           "--datasets-root", str(root), "--repeats", "1", "--out", str(out), "--smoke"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert first.returncode == 1, first.stderr[-3000:]
    summary = first.stderr.strip().splitlines()[-3:]
    assert summary[0].startswith("1 run(s) failed") and "crash-rep0" in summary[1]
    assert str(out / "runs" / "crash-rep0" / "error.txt") in summary[1]
    assert summary[2].startswith("rerun the failed runs") and "run_suite.py" in summary[2]
    assert "Traceback" not in first.stderr
    table = (out / "mini.md").read_text().splitlines()
    header = next(l for l in table if l.startswith("| setting"))
    assert header == "| setting | pitts30k/R@1 | pitts30k/R@5 |"
    rows = {l.split("|")[1].strip(): [c.strip() for c in l.split("|")[2:-1]]
            for l in table if l.startswith("| ") and not l.startswith("| setting")}
    assert set(rows) == {"smoke", "crashing run", "*chance (random ranking)*"}
    from vgjax.data import format as fmt
    from vgjax.eval.recalls import chance_recalls
    test = root / "pitts30k" / "images" / "test"
    chance = chance_recalls(fmt.utm_array(fmt.list_images(test / "queries")),
                            fmt.utm_array(fmt.list_images(test / "database")), (1, 5))
    assert rows["*chance (random ranking)*"] == [f"*{chance['R@1']:.1f}*", f"*{chance['R@5']:.1f}*"]
    assert all(float(v) >= 0 for v in rows["smoke"])
    assert rows["crashing run"] == ["failed", "failed"]
    assert "train.log" in (out / "runs" / "crash-rep0" / "error.txt").read_text()
    data = json.loads((out / "mini.json").read_text())
    ok = next(r for r in data["rows"] if r["name"] == "ok")
    assert ok["runs"][0]["status"] == "done" and data["meta"]["commit"]
    assert data["chance"]["pitts30k"] == pytest.approx(chance)
    provenance = ok["runs"][0]["provenance"]
    assert provenance["commit"] and provenance["exit_status"] == 0
    assert "vgjax.train" in provenance["command"] and provenance["seconds"] > 0
    assert ok["runs"][0]["config"]["train"]["epochs"] == 1  # the run's own resolved config
    assert f"runs at commit {provenance['commit']}" in table[-1]
    assert (out / "mini.csv").exists() and (out / "mini_val.png").exists()
    paired_rows = [l for l in (out / "mini_paired.md").read_text().splitlines()
                   if l.startswith("| ") and not l.startswith("| setting")]
    # against the first row ("ok"); the failed cells have no predictions to test
    assert paired_rows == ["| crashing run | - | - |"]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert again.returncode == 1 and "1 run(s) failed" in again.stderr
    assert "[done]    ok-rep0" in again.stdout and "[train]   ok-rep0" not in again.stdout


def test_ctrl_c_stops_the_runner_and_its_run_with_one_line(tmp_path, tiny_city):
    """Ctrl-C (SIGINT to the process group) during a run: the run saves and stops, the
    runner says how to resume and exits 130, without a traceback."""
    suite = tmp_path / "one.py"
    suite.write_text(SUITE.replace('cell("crash", {"setting": "crashing run"})', ""))
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "scripts" / "run_suite.py"), "--suite", str(suite),
           "--datasets-root", str(tiny_city), "--repeats", "1", "--out", str(out), "--smoke"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        while line and not line.startswith("[train]"):
            line = proc.stdout.readline()
        assert line.startswith("[train]   ok-rep0"), line
        metrics = out / "runs" / "ok-rep0" / "metrics.jsonl"  # the run's loop has begun
        deadline = time.time() + 300
        while not metrics.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith("interrupted by SIGINT: run the same "
                                                      "command to resume"), stderr[-3000:]
    assert "Traceback" not in stderr
    log = (out / "runs" / "ok-rep0" / "run.log").read_text()  # the run's own resume line
    assert log.strip().splitlines()[-1].startswith("interrupted by SIGINT: "), log[-3000:]
    assert not (out / "mini.md").exists()


@pytest.mark.parametrize("variant", ["paper", "city", "demo"])
def test_every_shipped_suite_cell_validates(variant):
    """Each cell of each table's suite is a config the checks accept (no run)."""
    from vgjax.cli.config import load_config
    for path in sorted((REPO / "configs" / "suites").glob("table*.py")):
        suite = load_suite(Path(f"{path}:{variant}"))
        for c in suite.cells:
            overrides = {**suite.overrides, **c["overrides"]}
            overrides = {k: v.replace("{root}", "/data") if isinstance(v, str) else v
                         for k, v in overrides.items()}
            load_config(REPO / suite.config, override_args(overrides))
        for e in suite.evals:
            load_config(REPO / suite.config, override_args(e["overrides"]))


def test_plots_of_every_kind(tmp_path):
    """Brightness rows with a baseline row, multi-scale rows, lr / val curves from runs."""
    from vgjax.suite import write_plots
    suite = Suite.from_dict(dict(name="t", title="t", config="c.py", datasets=["d"],
                                 recalls=["R@1"], plots=["brightness", "multiscale", "val", "lr"],
                                 cells=[cell("netvlad", {"brightness": "baseline"}),
                                        cell("b0.1", {"brightness": "0.1"}),
                                        cell("b0.3", {"brightness": "0.3"})]))
    value = lambda m: {"d/R@1": {"mean": m, "std": 0.0, "n": 1}}
    rows = [{"name": n, "label": c["label"], "values": value(m), "runs": []}
            for n, c, m in zip(["netvlad", "b0.1", "b0.3"], suite.cells, [10.0, 12.0, 11.0])]
    run = tmp_path / "runs" / "netvlad-rep0"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(
        {"type": "epoch", "epoch": e, "lr": 1e-3 / (e + 1), "metrics": {"val/R@5": 50.0 + e}})
        + "\n" for e in range(3)))
    written = write_plots(suite, rows, tmp_path / "runs", tmp_path)
    assert sorted(p.name for p in written) == ["t_brightness.png", "t_lr.png",
                                               "t_multiscale.png", "t_val.png"]


def test_suite_package_names_and_plot_kinds(tmp_path):
    """`vgjax.suite` re-exports the grammar of `vgjax.config.sweep`; plot kinds come from its
    registry, and an unknown one is refused naming the suite and the kinds."""
    from vgjax import suite as package
    from vgjax.config import ConfigError
    assert (package.cell, package.Suite, package.override_args, package.load_suite) == (
        cell, Suite, override_args, load_suite)
    assert list(package.PLOTS) == ["val", "lr", "brightness", "multiscale"]
    suite = Suite.from_dict(dict(name="t", title="t", config="c.py", datasets=["d"],
                                 recalls=["R@1"], plots=["bightness"], cells=[cell("a")]))
    with pytest.raises(ConfigError, match=r"suite t: plots: unknown value 'bightness' "
                                          r"\(accepted: val, lr, brightness, multiscale\); "
                                          r"did you mean 'brightness'\?"):
        package.write_plots(suite, [], tmp_path / "runs", tmp_path)
    # run_suite.py refuses it before any run starts
    bad = tmp_path / "bad.py"
    bad.write_text("from vgjax.config.sweep import cell\n\ndef get_suite(arg=None):\n"
                   "    return dict(name='t', title='t', config='configs/smoke.py', "
                   "datasets=['pitts30k'], recalls=['R@1'], plots=['bightness'], "
                   "cells=[cell('a')])\n")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "run_suite.py"), "--suite",
                           str(bad), "--smoke", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "did you mean 'brightness'" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_multiscale_plot_of_methods_and_scale_lists(tmp_path):
    from vgjax.suite import write_plots
    labels = [("baseline", "-"), ("avg", "[1, 2]"), ("max", "[1, 2]"), ("avg", "[1, 3]")]
    suite = Suite.from_dict(dict(name="m", title="m", config="c.py", datasets=["a", "b"],
                                 recalls=["R@1", "R@5"], plots=["multiscale"],
                                 cells=[cell("baseline", {"method": "baseline",
                                                          "resolutions": "-"})]))
    rows = [{"name": f"{m}{r}", "label": {"method": m, "resolutions": r}, "runs": [],
             "values": {f"{d}/{k}": {"mean": 10.0 + i, "std": 0.0, "n": 1}
                        for d in ["a", "b"] for k in ["R@1", "R@5"]}}
            for i, (m, r) in enumerate(labels)]
    rows[2]["values"]["b/R@5"] = None  # a failed cell leaves a gap, not a zero
    [path] = write_plots(suite, rows, tmp_path / "runs", tmp_path)
    assert path.name == "m_multiscale.png" and path.stat().st_size > 10_000


def _predictions(folder: Path, found: set, queries: int = 30):
    """predictions/city.npz where query i (at x = 100 i) is found at rank 1 iff i in
    `found` (database image i is its only positive; image `queries` is far away)."""
    import numpy as np
    folder.mkdir(parents=True, exist_ok=True)
    top = [[i if i in found else queries] for i in range(queries)]
    np.savez(folder / "city.npz", query_paths=np.array([f"q{i}.jpg" for i in range(queries)]),
             db_paths=np.array([f"d{j}.jpg" for j in range(queries + 1)]),
             topk_indices=np.array(top, np.int64), topk_distances=np.zeros((queries, 1)),
             query_utm=np.array([(100.0 * i, 0.0) for i in range(queries)]),
             db_utm=np.array([(100.0 * j, 0.0) for j in range(queries)] + [(1e5, 0.0)]),
             recall_values=np.array([1]), method=np.array("hard_resize"))


def test_paired_tests_against_the_baseline_row(tmp_path):
    from vgjax.config import ConfigError
    from vgjax.eval.compare import mcnemar_p
    from vgjax.suite import aggregate, paired, write_tables

    spec = dict(name="pairs", title="Pairs", config="configs/smoke.py",
                cells=[cell("base", {"model": "baseline"}), cell("better", {"model": "better"}),
                       cell("mixed", {"model": "mixed"}), cell("broken", {"model": "broken"})],
                datasets=["city"], recalls=["R@1"])
    with pytest.raises(ConfigError, match="baseline 'nope' is not a row"):
        Suite.from_dict({**spec, "baseline": "nope"})
    assert paired(Suite.from_dict({**spec, "baseline": None}), tmp_path, 2) is None
    suite = Suite.from_dict(spec)   # the baseline is the first row
    runs = tmp_path / "runs"
    for k in range(2):
        _predictions(runs / f"base-rep{k}" / "predictions", set(range(5)))
        _predictions(runs / f"better-rep{k}" / "predictions", set(range(25)))  # +20 queries
        # rep 0 clearly better, rep 1 worse: no clear verdict
        _predictions(runs / f"mixed-rep{k}" / "predictions",
                     set(range(25)) if k == 0 else set())
    tests = paired(suite, runs, 2)
    assert tests["baseline"] == "base" and [r["name"] for r in tests["rows"]] == [
        "better", "mixed", "broken"]
    better, mixed, broken = (r["cells"]["city/R@1"] for r in tests["rows"])
    assert [(x["rep"], x["only_row"], x["only_baseline"], x["clear"]) for x in better] == [
        (0, 20, 0, 1), (1, 20, 0, 1)]
    assert better[0]["p"] == pytest.approx(mcnemar_p(20, 0))
    assert better[0]["difference"] == pytest.approx(100 * 20 / 30)
    assert [(x["only_row"], x["only_baseline"], x["clear"]) for x in mixed] == [
        (20, 0, 0), (0, 5, 0)]
    assert broken == []   # no predictions: no test, never a number
    write_tables(suite, aggregate(suite, runs, 2), tmp_path, 2, {"command": "x"}, None, tests)
    lines = (tmp_path / "pairs_paired.md").read_text().splitlines()
    p20 = f"{mcnemar_p(20, 0):.2g}"
    assert "| better | **+66.7 (p " + p20 + " / " + p20 + ")** |" in lines
    p5 = f"{mcnemar_p(0, 5):.2g}"
    assert f"| mixed | +25.0 (p {p20} / {p5}) |" in lines
    assert "| broken | - |" in lines
    assert json.loads((tmp_path / "pairs.json").read_text())["paired"]["rows"][0]["name"] == \
        "better"
