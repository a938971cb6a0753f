"""Rerun a table of the paper (or any grid of runs) on a dataset root, with repetitions.

    python scripts/run_suite.py --suite configs/suites/table1_baselines.py \\
        --datasets-root data --repeats 2 --out results/table1 [--smoke] [--only ROW ...]

Every cell x repetition k trains in OUT/runs/<cell>-rep<k>/ (seed k) with
`python -m vgjax.train`; suites with eval rows (Table III) re-evaluate each trained model
with `python -m vgjax.eval` into OUT/runs/<row>-rep<k>/. Finished runs (results.json) are
skipped and killed ones resume from their checkpoint, so rerunning the same command
continues. A cell whose config is refused or whose run fails is recorded as failed with
its error (OUT/runs/<run>/error.txt) and the others go on. Then OUT/<suite>.md / .csv /
.json hold the table (mean ± std over the repetitions), OUT/<suite>_paired.md every row
tested against the baseline row query by query (exact McNemar p-value per repetition) and
OUT/<suite>_*.png the plots.

`--smoke` runs every cell on the tiny synthetic city (generated into OUT/synthetic-tiny
unless --datasets-root is given) with the config's `:smoke` variant: a whole suite in
minutes on a CPU.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from vgjax.cli.config import load_config
from vgjax.config import ConfigError
from vgjax.config.sweep import Suite, load_suite, override_args, run_name
from vgjax.suite import PLOTS, PROVENANCE, aggregate, paired, read_run, write_plots, write_tables

REPO = Path(__file__).resolve().parents[1]


def _with_root(overrides: dict, root: Path) -> dict:
    """String values may name the datasets root as `{root}`."""
    return {k: v.replace("{root}", str(root.resolve())) if isinstance(v, str) else v
            for k, v in overrides.items()}


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _host() -> str:
    """e.g. 'Intel(R) Xeon(R) Processor, 2 CPU cores', without starting JAX."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPU cores"


def _machine() -> str:
    """`_host()` and JAX's backend. Starts JAX in this process: call it only once the runs
    are over, so that the runner never holds the accelerator its runs need."""
    import jax
    return f"{_host()}, JAX on {jax.default_backend()}"


def _run(cmd: list[str], folder: Path) -> str | None:
    """Runs `cmd` with its output in folder/run.log; the error text if it failed."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "error.txt").unlink(missing_ok=True)
    provenance = {"commit": _commit(), "machine": _host(),  # the run's log names its device
                  "command": " ".join(shlex.quote(c) for c in cmd),
                  "started": datetime.datetime.now().isoformat(timespec="seconds")}
    t0 = time.perf_counter()
    with open(folder / "run.log", "a") as log:
        log.write("$ " + provenance["command"] + "\n")
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.PIPE, text=True, cwd=REPO)
        log.write(proc.stderr)
    provenance.update(seconds=round(time.perf_counter() - t0, 1), exit_status=proc.returncode)
    (folder / PROVENANCE).write_text(json.dumps(provenance, indent=1) + "\n")
    if proc.returncode == 0:
        return None
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    message = (errors or lines or [f"exit status {proc.returncode}"])[-1]
    (folder / "error.txt").write_text(message + "\n")
    return message


def chance_levels(root: Path, suite: Suite, positive_dist: float) -> dict:
    """{dataset: recalls of a random ranking} on the test split of each dataset under `root`
    that is there (a missing one is the failed cells' business)."""
    from vgjax.eval.recalls import chance_of_folder

    ns = [int(r.split("@", 1)[1]) for r in suite.recalls if r.startswith("R@")]
    folders = {ds: root / ds / "images" / "test" for ds in suite.datasets}
    return {ds: chance_of_folder(f, ns, positive_dist) for ds, f in folders.items()
            if all((f / role).is_dir() for role in ("database", "queries"))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="scripts/run_suite.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", required=True, type=Path)
    p.add_argument("--datasets-root", type=Path, default=None,
                   help="folder holding <dataset>/images/...; with --smoke default: the tiny city")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--smoke", action="store_true", help="tiny city, short schedule")
    p.add_argument("--only", nargs="+", default=None, metavar="ROW",
                   help="only these cells (names as in the table)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats {args.repeats}: must be >= 1")
    try:
        suite = load_suite(args.suite)
        for kind in suite.plots:  # a misspelt plot kind fails now, not after every run
            PLOTS.get(kind)
    except ConfigError as e:
        p.error(f"suite {args.suite}: {e}" if "suite" not in str(e) else str(e))
    out = args.out
    root = args.datasets_root
    if root is None:
        if not args.smoke:
            p.error("--datasets-root is required (without --smoke)")
        root = out / "synthetic-tiny"
        if not (root / "pitts30k" / "images").is_dir():
            subprocess.run([sys.executable, "-m", "vgjax.synthetic", "--out", str(root),
                            "--preset", "tiny"], check=True, stdout=subprocess.DEVNULL)
    if not root.is_dir():
        p.error(f"--datasets-root {root}: not a folder")
    names = [c["name"] for c in suite.cells]
    if args.only:
        unknown = [n for n in args.only if n not in names]
        if unknown:
            p.error(f"--only: unknown cell(s) {unknown} (cells: {', '.join(names)})")
    config = f"{REPO / suite.config}:smoke" if args.smoke else str(REPO / suite.config)
    runs = out / "runs"
    common = {"data.root": str(root.resolve()), **suite.overrides}
    start = time.perf_counter()
    py = sys.executable
    for c in suite.cells:
        if args.only and c["name"] not in args.only:
            continue
        for k in range(args.repeats):
            folder = runs / run_name(c["name"], k)
            overrides = override_args({**common, **_with_root(c["overrides"], root),
                                       "seed": k})
            state = read_run(folder)["status"]
            if state == "done":
                print(f"[done]    {folder.name}", flush=True)
            else:
                try:  # a refused config fails the cell now, not after the others
                    load_config(config, overrides)
                    error = None
                except ConfigError as e:
                    error = f"error: {e}"
                    folder.mkdir(parents=True, exist_ok=True)
                    (folder / "error.txt").write_text(error + "\n")
                if error is None:
                    t0 = time.perf_counter()
                    print(f"[train]   {folder.name} ...", flush=True)
                    error = _run([py, "-m", "vgjax.train", "--config", config, "--workdir",
                                  str(folder), *overrides], folder)
                    print(f"          {'failed: ' + error if error else 'done'} "
                          f"({time.perf_counter() - t0:.0f} s)", flush=True)
                else:
                    print(f"[failed]  {folder.name}: {error}", flush=True)
            for e in suite.evals:
                eval_folder = runs / run_name(e["name"] if len(suite.cells) == 1
                                              else f"{c['name']}-{e['name']}", k)
                if read_run(eval_folder)["status"] == "done":
                    continue
                if read_run(folder)["status"] != "done":
                    eval_folder.mkdir(parents=True, exist_ok=True)
                    (eval_folder / "error.txt").write_text(
                        f"error: the model of {folder.name} did not finish\n")
                    continue
                print(f"[eval]    {eval_folder.name} ...", flush=True)
                err = _run([py, "-m", "vgjax.eval", "--checkpoint", str(folder),
                            "--config", config, "--out", str(eval_folder),
                            "--datasets", *[str(root / d) for d in suite.datasets],
                            *override_args({**{f: v for f, v in common.items()
                                               if f.split(".")[0] in ("data", "test")},
                                            **e["overrides"]})], eval_folder)
                if err:
                    print(f"          failed: {err}", flush=True)
    rows = aggregate(suite, runs, args.repeats)
    meta = {"command": "python " + " ".join(shlex.quote(a) for a in
                                            ["scripts/run_suite.py", *(argv or sys.argv[1:])]),
            "machine": _machine(), "date": datetime.date.today().isoformat(),
            "commit": _commit(), "datasets_root": str(root),
            "note": "synthetic city, tiny preset (--smoke)" if args.smoke else "",
            "seconds": round(time.perf_counter() - start, 1)}
    out.mkdir(parents=True, exist_ok=True)
    positive_dist = 25.0
    try:
        positive_dist = float(load_config(config, override_args(common)).test.positive_dist)
        chance = chance_levels(root, suite, positive_dist)
    except (ConfigError, ValueError) as e:  # unreadable names: the cells say so
        print(f"no chance row: {e}", flush=True)
        chance = None
    try:
        tests = paired(suite, runs, args.repeats, positive_dist)
    except ValueError as e:  # predictions that cannot be paired: say why, keep the table
        print(f"no paired tests: {e}", flush=True)
        tests = None
    write_tables(suite, rows, out, args.repeats, meta, chance, tests)
    plots = write_plots(suite, rows, runs, out)
    print((out / f"{suite.name}.md").read_text())
    extra = [out / f"{suite.name}_paired.md"] if tests is not None else []
    print("wrote", out / f"{suite.name}.md", out / f"{suite.name}.csv",
          out / f"{suite.name}.json", *extra, *plots)
    return 0


if __name__ == "__main__":
    sys.exit(main())
