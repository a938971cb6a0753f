"""The end-to-end demo behind `make demo`, on data the project generates itself.

1. builds the synthetic city (`demo` preset: a Pitts30k-like train/val/test set, sf-xs,
   tokyo-xs and tokyo-night-like test sets) unless it is already there as this version of
   the generator renders it (each folder's city.json), and checks it with
   `vgjax.data.inspect`;
2. two reference points on the four test sets: the recalls of a random ranking (chance) and
   a trivial baseline, raw-pixel thumbnails;
3. trains ImageNet-pretrained EfficientNet-Lite0 + NetVLAD and + GeM (configs/demo.py); each
   run first tests its pretrained network off the shelf, the third reference point (for
   NetVLAD with its k-means-initialised head);
4. tests each trained model against the thumbnails and its network before training query by
   query (`vgjax.eval.compare`: exact McNemar p-values) and says on which test sets it is
   clearly better than both;
5. the paper's night extension on the NetVLAD model: darkened training queries (brightness
   0.1, the paper's Table IV), paired against NetVLAD (domain adaptation, the paper's Table
   V, and multi-scale testing, its Table III, do not fit the demo's time: their suites,
   `configs/suites/table5_domain_adaptation.py:demo` and
   `configs/suites/table3_multiscale.py:demo`, run them on the same recipe);
6. writes the report, `report.md` (tables) and `report.json` (per test set and model the
   recalls; every paired test with its p-value), pictures of queries with their
   predictions, and says where they are.

Every step is one of the documented commands, printed before it runs; the three trainings
run side by side (each one's output in WORKDIR/<run>.log beside its folder): one alone
leaves a core idle much of the time, and each gives the same results either way. Rerunning
skips finished steps (each run folder resumes or is complete).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

DATASETS = ("pitts30k", "sf-xs", "tokyo-xs", "tokyo-night")
RECALLS = ("R@1", "R@5")
MODELS = {"netvlad": "NetVLAD", "gem": "GeM"}  # run folder -> label
EXTENSIONS = {"brightness": "+ brightness 0.1"}
PICTURES = 8  # queries drawn beside their top 5 by NetVLAD's final test
BEFORE = "before_training"  # the evals entry of configs/demo.py run before training
ALPHA = 0.05
STATUS_EVERY = 60  # seconds between the status lines of runs side by side


def run(cmd: list[str]) -> None:
    print("\n$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    start, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(cmd, check=True, cwd=REPO)
    print(f"  ({time.perf_counter() - start:.0f} s, {_children_cpu() - cpu:.0f} CPU s)",
          flush=True)


def run_side_by_side(cmds: dict[str, list[str]], work: Path, meanwhile=None):
    """Runs the commands of `cmds` ({name: command}) at the same time, each one's output in
    WORK/<name>.log. One training alone leaves a core idle for much of its time (decoding,
    search, Python between the steps); side by side they keep both cores busy. Each run's
    results do not depend on what runs beside it (the same computations, bit for bit). When
    one fails, the others finish (their folders stay resumable) and the failure is raised.
    `meanwhile()`, if given, runs here once they have started; returns what it returns."""
    work.mkdir(parents=True, exist_ok=True)
    start, cpu = time.perf_counter(), _children_cpu()
    procs = {}
    for name, cmd in cmds.items():
        log = work / f"{name}.log"
        print("\n$ " + " ".join(shlex.quote(c) for c in cmd) + f"  > {log}", flush=True)
        with log.open("w") as out:
            procs[name] = (subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT),
                           log)
    print(f"  ({len(cmds)} runs side by side; every {STATUS_EVERY} s the last line each "
          "logged)", flush=True)
    result = meanwhile() if meanwhile is not None else None
    failed, running, shown, next_status = [], dict(procs), {}, STATUS_EVERY
    while running:
        time.sleep(1)
        elapsed = time.perf_counter() - start
        for name, (proc, log) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            if proc.returncode != 0:
                failed.append(name)
                tail = log.read_text(errors="replace").splitlines()[-15:]
                print(f"\n{name} failed (exit status {proc.returncode}); the end of {log}:\n"
                      + "\n".join(tail), flush=True)
            else:
                print(f"  {name} finished ({elapsed:.0f} s)", flush=True)
        if running and elapsed >= next_status:
            next_status += STATUS_EVERY
            for name, (_, log) in running.items():
                line = _last_line(log)
                if line and shown.get(name) != line:
                    shown[name] = line
                    print(f"  [{elapsed:.0f} s] {name}: {line[:110]}", flush=True)
    print(f"  ({time.perf_counter() - start:.0f} s, {_children_cpu() - cpu:.0f} CPU s)",
          flush=True)
    if failed:
        raise subprocess.CalledProcessError(procs[failed[0]][0].returncode,
                                            cmds[failed[0]])
    return result


def _last_line(log: Path) -> str:
    """The last log line of a run ('INFO:vgjax.train:' dropped), '' if none yet."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - 4096))
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].split(":", 2)[-1].strip() if lines else ""


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def trivial_baseline(root: Path, out: Path) -> dict:
    """Raw-pixel thumbnails through the same evaluator as the trained models."""
    results = out / "results.json"
    if results.exists():
        return json.loads(results.read_text())
    print("\n# trivial baseline: raw-pixel 12x16 thumbnails, exact search", flush=True)
    from vgjax.cli.config import load_config
    from vgjax.eval import evaluators
    from vgjax.eval.baselines import BASELINES
    cfg = load_config(REPO / "configs" / "demo.py", [f"data.root={root}"])
    evaluator = evaluators.build(cfg, "test")
    evaluator.run(BASELINES.build("thumbnails"), out_dir=out)
    return json.loads(results.read_text())


def chance(root: Path) -> dict:
    """Expected recalls of a random ranking on each test set: what the recalls mean only
    above (each query's positives are the database images within 25 m, any heading)."""
    from vgjax.eval.recalls import chance_of_folder
    return {d: chance_of_folder(root / d / "images" / "test", (1, 5)) for d in DATASETS}


def before_training(run: Path) -> dict:
    """The test recalls of a run's network before training (`evals.before_training`: the
    pretrained network off the shelf, its NetVLAD head k-means-initialised)."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    return next(r["results"] for r in records if r["type"] == f"initial_{BEFORE}")


def paired(pairs: dict[str, tuple[str, str]], folders: dict[str, Path],
           datasets=DATASETS) -> list[dict]:
    """Each (A, B) of `pairs` compared query by query (`python -m vgjax.eval.compare`): one
    record per column, dataset and recall: A's recall minus B's, the discordant queries, the
    exact McNemar p-value and the verdict ('A' / 'B' clearly better at ALPHA, '=' not clear)."""
    from vgjax.eval.compare import compare
    ns = [int(r[2:]) for r in RECALLS]
    out = []
    for column, (a, b) in pairs.items():
        for r in compare(folders[a], folders[b], ns, datasets=datasets):
            out.append({"column": column, "a": a, "b": b, "dataset": r.dataset,
                        "recall": f"R@{r.n}", "queries": r.queries,
                        "recall_a": round(r.recall_a, 2), "recall_b": round(r.recall_b, 2),
                        "difference": round(r.difference, 2), "only_a": r.only_a,
                        "only_b": r.only_b, "p_value": r.p_value,
                        "verdict": r.verdict(ALPHA)})
    return out


def paired_lines(title: str, records: list[dict], datasets=DATASETS) -> list[str]:
    """Rows = datasets, columns = comparisons x recalls: the difference and its p-value, bold
    where A is clearly better (p < ALPHA), italic where it is clearly worse."""
    columns = list(dict.fromkeys(r["column"] for r in records))
    cell = {(r["column"], r["dataset"], r["recall"]): r for r in records}
    head = "| dataset | " + " | ".join(f"{c} {r}" for c in columns for r in RECALLS) + " |"
    lines = [f"#### {title}", "", head, "|" + "---|" * (1 + len(columns) * len(RECALLS))]
    for d in datasets:
        cells = []
        for c in columns:
            for rec in RECALLS:
                r = cell.get((c, d, rec))
                if r is None:
                    cells.append("-")
                    continue
                text = f"{r['difference']:+.1f} (p {r['p_value']:.2g})"
                cells.append({"A": f"**{text}**", "B": f"*{text}*"}.get(r["verdict"], text))
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return lines


def beats(records: list[dict], a: str, refs: list[str], datasets=DATASETS) -> list[str]:
    """The datasets on which `a` is clearly better than every one of `refs` at every recall."""
    return [d for d in datasets
            if all(any(r["a"] == a and r["b"] == b and r["dataset"] == d
                       and r["recall"] == rec and r["verdict"] == "A" for r in records)
                   for b in refs for rec in RECALLS)]


def table(title: str, columns: dict[str, dict], datasets=DATASETS, recalls=RECALLS) -> str:
    """Rows = datasets, columns = models x recalls (the paper's Table I shape)."""
    head = "| dataset | " + " | ".join(f"{m} {r}" for m in columns for r in recalls) + " |"
    lines = [f"#### {title}", "", head, "|" + "---|" * (1 + len(columns) * len(recalls))]
    for d in datasets:
        cells = [f"{columns[m][d][r]:.1f}" if d in columns[m] else "-"
                 for m in columns for r in recalls]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/synthetic-demo")
    parser.add_argument("--workdir", default="runs/demo")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--config", default="configs/demo.py")
    args = parser.parse_args()
    py = sys.executable
    start = time.perf_counter()
    root, work = Path(args.root), Path(args.workdir)
    # JAX's persistent compilation cache, shared by the demo's runs (and inherited by their
    # processes): a function another run (or an earlier `make demo`) compiled is loaded, not
    # compiled again. The same executables, so the same results.
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str((work / "xla_cache").resolve()))
    from vgjax.synthetic.build import is_current
    stale = is_current(root, args.preset, datasets=DATASETS)
    if stale:  # missing, or rendered by another preset, seed or version of the renderer
        print(f"{root}: (re)building {', '.join(stale)}", flush=True)
        run([py, "-m", "vgjax.synthetic", "--out", str(root), "--preset", args.preset,
             "--datasets", ",".join(stale), "--overwrite"])
    run([py, "-m", "vgjax.data.inspect", str(root / "pitts30k")])
    common = ["--config", args.config, f"--config.data.root={root}"]
    trivial = run_side_by_side({
        # pictures of the final test only; no validation before training (no result depends
        # on it: the best epoch is picked among the trained ones)
        "netvlad": [py, "-m", "vgjax.train", *common, "--workdir", str(work / "netvlad"),
                    f"--config.test.num_pictures={PICTURES}",
                    f"--config.evals.{BEFORE}.num_pictures=0", "--config.evals.val.when=[epoch]"],
        "gem": [py, "-m", "vgjax.train", *common, "--workdir", str(work / "gem"),
                "--config.model.aggregation=gem", "--config.model.netvlad_init.enabled=false",
                "--config.evals.val.when=[epoch]"],
        # the same pretrained network as NetVLAD's before training: no `before` evaluations
        "brightness": [py, "-m", "vgjax.train", *common, "--workdir", str(work / "brightness"),
                       "--config.train.query_augment=[brightness(0.1)]",
                       f"--config.evals.{BEFORE}.when=[]", "--config.evals.val.when=[epoch]"],
    }, work, meanwhile=lambda: trivial_baseline(root, work / "trivial"))

    write_report(root, work, args.preset, args.config, trivial)
    print(f"demo finished in {time.perf_counter() - start:.0f} s; report: {work / 'report.md'}"
          f" and {work / 'report.json'}")
    return 0


def write_report(root: Path, work: Path, preset: str, config: str, trivial: dict) -> str:
    """The report of the finished runs in `work`: report.md and report.json; returns the text."""
    load = lambda p: json.loads(Path(p).read_text())
    folders = {"thumbnails": work / "trivial"}
    recalls = {"chance (random ranking)": chance(root), "thumbnails": trivial}
    for m, label in MODELS.items():
        folders[f"{label} before training"] = work / m / "before" / BEFORE
        recalls[f"{label} before training"] = before_training(work / m)
    for m, label in MODELS.items():
        folders[label] = work / m
        recalls[label] = load(work / m / "results.json")
    for folder, label in EXTENSIONS.items():
        folders[label] = work / folder
        recalls[label] = load(work / folder / "results.json")
    main_pairs = {f"{label} - {ref}": (label, f"{label} before training" if ref ==
                                       "before training" else ref)
                  for label in MODELS.values() for ref in ("thumbnails", "before training")}
    ext_pairs = {f"{label} - NetVLAD": (label, "NetVLAD") for label in EXTENSIONS.values()}
    main_records, ext_records = paired(main_pairs, folders), paired(ext_pairs, folders)
    verdicts = {label: beats(main_records, label, ["thumbnails", f"{label} before training"])
                for label in MODELS.values()}
    domains = {label: load(work / folder / "results_domains.json")["tokyo-xs"]
               for folder, label in (("netvlad", "NetVLAD"),
                                     ("brightness", EXTENSIONS["brightness"]))}

    def verdict_line(label):
        yes = verdicts[label]
        no = [d for d in DATASETS if d not in yes]
        return (f"{label} beats both the thumbnails and its network before training at "
                f"{' and '.join(RECALLS)} (p < {ALPHA}) on: {', '.join(yes) or 'none'}"
                + (f"; not on: {', '.join(no)}." if no else "."))

    report = [
        f"# vgjax demo: the synthetic city ({preset} preset)", "",
        table("Test recalls (%) of the models and three reference points "
              "(chance, thumbnails, the pretrained network before training)",
              {m: recalls[m] for m in recalls if m not in EXTENSIONS.values()}),
        "", *paired_lines(
            "Paired tests: is the trained model clearly better? (difference in recall points, "
            "exact McNemar p-value on the queries one finds and the other misses; bold: clearly "
            f"better, italic: clearly worse, p < {ALPHA})", main_records), "",
        *[verdict_line(label) for label in MODELS.values()], "",
        table("The paper's night extension on NetVLAD",
              {"NetVLAD": recalls["NetVLAD"], **{label: recalls[label]
                                                 for label in EXTENSIONS.values()}}),
        "", *paired_lines(
            f"The extension's effect, paired (points of recall against NetVLAD, p-value; "
            f"bold: a clear gain, italic: a clear loss, p < {ALPHA})", ext_records),
        "", "Per query domain (tokyo-xs: day / sunset / night):", "",
        table("NetVLAD, tokyo-xs per domain", domains, datasets=("day", "sunset", "night")),
        "", f"Pictures of queries beside their top-5: {work / 'netvlad' / 'pictures'}",
        f"Run folders (train.log, metrics.jsonl, lr.png, checkpoints/): "
        f"{work / 'netvlad'}, {work / 'gem'}, {work / 'brightness'}",
    ]
    text = "\n".join(report) + "\n"
    (work / "report.md").write_text(text)
    (work / "report.json").write_text(json.dumps({
        "preset": preset, "config": config,
        "protocol": {"positives": "database images within 25 m of the query",
                     "recalls": list(RECALLS), "paired_test": "exact two-sided McNemar",
                     "alpha": ALPHA},
        "recalls": recalls, "paired": main_records + ext_records,
        "clearly_better_than_both_references": verdicts,
        "tokyo_xs_domains": domains}, indent=1) + "\n")
    print("\n" + text)
    return text


if __name__ == "__main__":
    sys.exit(main())
