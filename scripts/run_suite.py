"""Rerun a table of the paper (or any grid of runs) on a dataset root, with repetitions.

    python scripts/run_suite.py --suite configs/suites/table1_baselines.py \\
        --datasets-root data --repeats 2 --out results/table1 [--smoke] [--only ROW ...]

Every cell x repetition k trains in OUT/runs/<cell>-rep<k>/ (seed k) with
`python -m vgjax.train`; suites with eval rows (Table III) re-evaluate each trained model
with `python -m vgjax.eval` into OUT/runs/<row>-rep<k>/. Finished runs (results.json) are
skipped and killed ones resume from their checkpoint, so rerunning the same command
continues. Before any run the suite, its base config, its datasets (under the datasets
root) and every row's config are checked: a user error ends with one line and exit status 2.
A run that fails is recorded as failed with its error (OUT/runs/<run>/error.txt), the others
go on, and the runner, once the tables are written, names the failed runs and exits with 1.
Ctrl-C or SIGTERM stops the run in progress (it saves, as training does) and the runner
(exit 130 / 143): the same command resumes. Then OUT/<suite>.md / .csv /
.json hold the table (mean ± std over the repetitions), OUT/<suite>_paired.md every row
tested against the baseline row query by query (exact McNemar p-value per repetition) and
OUT/<suite>_*.png the plots.

`--smoke` runs every cell on the tiny synthetic city (generated into OUT/synthetic-tiny
unless --datasets-root is given, with its GSV-Cities folder when a cell trains from one) with
the config's `:smoke` variant: a whole suite in minutes on a CPU. A cell that trains from a
GSV-Cities folder under the datasets root (`data.format=gsv_cities`,
`data.train_dataset=<name>`) is refused up front when the folder is missing.
"""
from __future__ import annotations

import argparse
import datetime
import difflib
import json
import os
import platform
import shlex
import signal
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that one handler stops both."""


def _raise_on_signals() -> None:
    def handler(signum, frame):
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _stop_child(proc: subprocess.Popen, error: KeyboardInterrupt) -> str:
    """Passes the runner's signal on to its run and waits for it to save and stop; its
    stderr (with its own resume line)."""
    sig = signal.SIGTERM if isinstance(error, Terminated) else signal.SIGINT
    try:  # Ctrl-C reached the child through the process group; a signal sent to the
        proc.wait(timeout=2)  # runner alone did not
    except subprocess.TimeoutExpired:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=120)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        proc.kill()
        _, err = proc.communicate()
    return err or ""


def _run(cmd: list[str], folder: Path) -> str | None:
    """Runs `cmd` with its output in folder/run.log; the error text if it failed. On Ctrl-C
    or SIGTERM the run gets the signal too, and the KeyboardInterrupt goes on up."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "error.txt").unlink(missing_ok=True)
    provenance = {"commit": _commit(), "machine": _host(),  # the run's log names its device
                  "command": " ".join(shlex.quote(c) for c in cmd),
                  "started": datetime.datetime.now().isoformat(timespec="seconds")}
    t0 = time.perf_counter()
    with open(folder / "run.log", "a") as log:
        log.write("$ " + provenance["command"] + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.PIPE, text=True, cwd=REPO)
        try:
            _, stderr = proc.communicate()
        except KeyboardInterrupt as e:
            log.write(_stop_child(proc, e))
            raise
        log.write(stderr)
    provenance.update(seconds=round(time.perf_counter() - t0, 1), exit_status=proc.returncode)
    (folder / PROVENANCE).write_text(json.dumps(provenance, indent=1) + "\n")
    if proc.returncode == 0:
        return None
    lines = [line for line in stderr.splitlines() if line.strip()]
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


PROG = "scripts/run_suite.py"


class Refused(Exception):
    """A user error found before any run: one line (plus one per bad row), exit status 2."""


def _config_file(spec: str) -> Path:
    """The file of a suite's `config` (`x.py` or `x.py:arg`), relative to the repository."""
    text = spec.rsplit(":", 1)[0] if ".py:" in spec else spec
    return REPO / text


def _check_datasets(suite: Suite, root: Path) -> None:
    """Every column's dataset is a folder under the datasets root, or the suite is refused
    naming it and the datasets that are there."""
    missing = [d for d in suite.datasets if not (root / d / "images").is_dir()]
    if not missing:
        return
    present = sorted(x.name for x in root.iterdir() if (x / "images").is_dir())
    hints = []
    for d in missing:
        close = difflib.get_close_matches(d, present, n=1)
        hints.append(f"{d!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise Refused(f"suite {suite.name}: datasets {', '.join(hints)} not found under "
                  f"--datasets-root {root} (<dataset>/images there: "
                  f"{', '.join(present) or 'none'})")


def _gsv_folders(cells: list[dict], root: Path) -> dict[str, Path]:
    """{cell: folder} of the cells that train from a GSV-Cities folder (`data.format` =
    gsv_cities) named under the datasets root (`data.train_dataset` a bare name)."""
    out = {}
    for c in cells:
        o = c["overrides"]
        name = str(o.get("data.train_dataset", ""))
        if str(o.get("data.format", "")).startswith("gsv_cities") and name \
                and len(Path(name).parts) == 1:
            out[c["name"]] = root / name
    return out


def _check_gsv_folders(suite: Suite, cells: list[dict], root: Path) -> None:
    """A cell's GSV-Cities folder is there, or the suite is refused naming it and the
    command that renders the synthetic city's."""
    missing = {n: f for n, f in _gsv_folders(cells, root).items()
               if not (f / "Dataframes").is_dir()}
    if missing:
        folder = sorted(set(missing.values()))[0]
        raise Refused(f"suite {suite.name}: cells {', '.join(missing)} train from the "
                      f"GSV-Cities folder {folder}, which is not there (for the synthetic "
                      f"city: python -m vgjax.synthetic --out {root} --preset <tiny|demo> "
                      "--format gsv_cities)")


def _check_rows(suite: Suite, config: str, common: dict, root: Path, cells: list[dict]) -> None:
    """Every cell's config and every eval row's overrides pass the checks, or the suite is
    refused listing each bad row: a typo in the last cell costs no run of the first."""
    rows = [(c["name"], _cell_overrides(common, c, root, seed=0)) for c in cells]
    rows += [(e["name"], _eval_overrides(common, e)) for e in suite.evals]
    bad = []
    for name, overrides in rows:
        try:
            load_config(config, overrides)
        except (ConfigError, ValueError) as e:
            bad.append(f"  {name}: {str(e).splitlines()[0] if str(e) else repr(e)}")
    if bad:
        raise Refused(f"suite {suite.name}: {len(bad)} row(s) with a config the checks "
                      "refuse, nothing was run:\n" + "\n".join(bad))


def _cell_overrides(common: dict, c: dict, root: Path, seed: int) -> list[str]:
    return override_args({**common, **_with_root(c["overrides"], root), "seed": seed})


def _eval_overrides(common: dict, e: dict) -> list[str]:
    return override_args({**{f: v for f, v in common.items()
                             if f.split(".")[0] in ("data", "test")}, **e["overrides"]})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
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
        return _main(args, argv)
    except Refused as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        sig = signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT
        print(f"interrupted by {sig.name}: run the same command to resume (finished runs "
              "are skipped, an interrupted one resumes from its checkpoint)",
              file=sys.stderr, flush=True)
        return 128 + int(sig)


def _main(args, argv) -> int:
    try:
        suite = load_suite(args.suite)
        for kind in suite.plots:  # a misspelt plot kind fails now, not after every run
            PLOTS.get(kind)
    except ConfigError as e:
        raise Refused(f"suite {args.suite}: {e}" if "suite" not in str(e) else str(e))
    if not _config_file(suite.config).is_file():
        raise Refused(f"suite {suite.name}: config {suite.config}: no such file (in {REPO})")
    out = args.out
    root = args.datasets_root
    if root is None:
        if not args.smoke:
            raise Refused("--datasets-root is required (without --smoke)")
        root = out / "synthetic-tiny"
        if not (root / "pitts30k" / "images").is_dir():
            subprocess.run([sys.executable, "-m", "vgjax.synthetic", "--out", str(root),
                            "--preset", "tiny"], check=True, stdout=subprocess.DEVNULL)
        if any(not (f / "Dataframes").is_dir() for f in _gsv_folders(suite.cells, root).values()):
            # the tiny city's GSV-Cities folder, for the cells that train from one
            subprocess.run([sys.executable, "-m", "vgjax.synthetic", "--out", str(root),
                            "--preset", "tiny", "--format", "gsv_cities"], check=True,
                           stdout=subprocess.DEVNULL)
    if not root.is_dir():
        raise Refused(f"--datasets-root {root}: not a folder")
    _check_datasets(suite, root)
    names = [c["name"] for c in suite.cells]
    if args.only:
        unknown = [n for n in args.only if n not in names]
        if unknown:
            raise Refused(f"--only: unknown cell(s) {unknown} (cells: {', '.join(names)})")
    config = f"{REPO / suite.config}:smoke" if args.smoke else str(REPO / suite.config)
    runs = out / "runs"
    common = {"data.root": str(root.resolve()), **suite.overrides}
    cells = [c for c in suite.cells if not args.only or c["name"] in args.only]
    _check_gsv_folders(suite, cells, root)
    _check_rows(suite, config, common, root, cells)
    start = time.perf_counter()
    py = sys.executable
    failed = []  # (run folder, error)
    for c in cells:
        for k in range(args.repeats):
            folder = runs / run_name(c["name"], k)
            overrides = _cell_overrides(common, c, root, seed=k)
            state = read_run(folder)["status"]
            if state == "done":
                print(f"[done]    {folder.name}", flush=True)
            else:
                t0 = time.perf_counter()
                print(f"[train]   {folder.name} ...", flush=True)
                error = _run([py, "-m", "vgjax.train", "--config", config, "--workdir",
                              str(folder), *overrides], folder)
                print(f"          {'failed: ' + error if error else 'done'} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
                if error:
                    failed.append((folder, error))
            for e in suite.evals:
                eval_folder = runs / run_name(e["name"] if len(suite.cells) == 1
                                              else f"{c['name']}-{e['name']}", k)
                if read_run(eval_folder)["status"] == "done":
                    continue
                if read_run(folder)["status"] != "done":
                    eval_folder.mkdir(parents=True, exist_ok=True)
                    error = f"error: the model of {folder.name} did not finish"
                    (eval_folder / "error.txt").write_text(error + "\n")
                    failed.append((eval_folder, error))
                    continue
                print(f"[eval]    {eval_folder.name} ...", flush=True)
                err = _run([py, "-m", "vgjax.eval", "--checkpoint", str(folder),
                            "--config", config, "--out", str(eval_folder),
                            "--datasets", *[str(root / d) for d in suite.datasets],
                            *_eval_overrides(common, e)], eval_folder)
                if err:
                    print(f"          failed: {err}", flush=True)
                    failed.append((eval_folder, err))
    rows = aggregate(suite, runs, args.repeats)
    command = "python " + " ".join(shlex.quote(a) for a in
                                   ["scripts/run_suite.py", *(argv or sys.argv[1:])])
    meta = {"command": command,
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
    if failed:
        lines = [f"{len(failed)} run(s) failed (their cells read 'failed' in the table):"]
        lines += [f"  {f.name}: {err.removeprefix('error: ')} (see {f / 'error.txt'}, "
                  f"{f / 'run.log'})" if (f / "run.log").exists() else
                  f"  {f.name}: {err.removeprefix('error: ')} (see {f / 'error.txt'})"
                  for f, err in failed]
        lines.append(f"rerun the failed runs (finished ones are skipped): {command}")
        print("\n".join(lines), file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    _raise_on_signals()
    sys.exit(main())
