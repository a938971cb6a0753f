"""The end-to-end demo behind `make demo`, on data the project generates itself.

1. builds the synthetic city (`demo` preset: a Pitts30k-like train/val/test set, sf-xs,
   tokyo-xs and tokyo-night-like test sets, an unlabeled night-target folder) unless it is
   already there, and checks it with `vgjax.data.inspect`;
2. two reference points on the four test sets: the recalls of a random ranking (chance) and
   a trivial baseline, raw-pixel thumbnails;
3. trains ResNet-18-conv4 + NetVLAD and + GeM from scratch (configs/demo.py); each run
   also tests its untrained network first: the last reference point of the table;
4. tests each trained model against the thumbnails and its untrained network query by query
   (`vgjax.eval.compare`: exact McNemar p-values) and says on which test sets it is clearly
   better than both;
5. the paper's extensions on the NetVLAD model: multi-scale testing (avg of scales
   [0.667, 1, 1.5], one of the paper's Table III lists) and darkened training queries
   (brightness 0.1, the paper's Table IV) for the night queries;
6. writes the report (tables as markdown, pictures of queries with their predictions) and
   says where it is.

Every step is one of the documented commands, printed before it runs; rerunning skips
finished steps (each run folder resumes or is complete).
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATASETS = ("pitts30k", "sf-xs", "tokyo-xs", "tokyo-night")
RECALLS = ("R@1", "R@5")
SCALES = "[0.667,1.0,1.5]"
MODELS = {"netvlad": "NetVLAD", "gem": "GeM"}  # run folder -> label
ALPHA = 0.05


def run(cmd: list[str]) -> None:
    print("\n$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)


def trivial_baseline(root: Path, out: Path) -> dict:
    """Raw-pixel thumbnails through the same evaluator as the trained models."""
    results = out / "results.json"
    if results.exists():
        return json.loads(results.read_text())
    print("\n# trivial baseline: raw-pixel 12x16 thumbnails, exact search", flush=True)
    from vgjax.checks import load_config
    from vgjax.eval import evaluators
    from vgjax.eval.baselines import BASELINES
    cfg = load_config(REPO / "configs" / "demo.py", [f"data.root={root}"])
    evaluator = evaluators.build(cfg, "test")
    evaluator.run(BASELINES.build("thumbnails"), out_dir=out)
    return json.loads(results.read_text())


def chance(root: Path) -> dict:
    """Expected recalls of a random ranking on each test set: what the recalls mean only
    above (each query's positives are every database image within 25 m, any heading)."""
    from vgjax.eval.recalls import chance_of_folder
    return {d: chance_of_folder(root / d / "images" / "test", (1, 5)) for d in DATASETS}


def untrained_results(run: Path) -> dict:
    """The test recalls of a run's network before training (`evals.untrained`)."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    return next(r["results"] for r in records if r["type"] == "initial_untrained")


def paired_table(title: str, pairs: dict[str, tuple[Path, Path]]) -> tuple[list[str], dict]:
    """Rows = datasets, columns = pairs x recalls: A's recall minus B's on the same queries
    and its exact McNemar p-value (`python -m vgjax.eval.compare`), bold where A is clearly
    better (p < ALPHA), italic where it is clearly worse. Returns the lines and
    {pair: {dataset: A clearly better at every recall}}."""
    from vgjax.eval.compare import compare
    ns = [int(r[2:]) for r in RECALLS]
    cells = {d: [] for d in DATASETS}
    wins = {label: {d: True for d in DATASETS} for label in pairs}
    try:
        for label, (a, b) in pairs.items():
            for r in compare(a, b, ns, datasets=DATASETS):
                verdict = r.verdict(ALPHA)
                wins[label][r.dataset] &= verdict == "A"
                text = f"{r.difference:+.1f} (p {r.p_value:.2g})"
                marked = {"A": f"**{text}**", "B": f"*{text}*"}.get(verdict, text)
                cells[r.dataset].append(marked)
    except (ValueError, FileNotFoundError) as e:  # e.g. the work dir of an older demo
        return [f"(no paired tests: {e}; rerun the demo in a new --workdir)"], {}
    head = "| dataset | " + " | ".join(f"{c} {r}" for c in pairs for r in RECALLS) + " |"
    lines = [f"### {title}", "", head, "|" + "---|" * (1 + len(pairs) * len(RECALLS))]
    lines += [f"| {d} | " + " | ".join(cells[d]) + " |" for d in DATASETS]
    return lines, wins


def paired_tests(work: Path) -> list[str]:
    """Each trained model against the thumbnails and its own untrained network, query by
    query; ends with the verdict per model: where it is clearly better than both."""
    refs = {m: {f"{label} - thumbnails": (work / m, work / "trivial"),
                f"{label} - untrained": (work / m, work / m / "before" / "untrained")}
            for m, label in MODELS.items()}
    pairs = {column: pair for m in MODELS for column, pair in refs[m].items()}
    lines, wins = paired_table(
        f"Paired tests: is the trained model clearly better? (difference in recall points, "
        f"exact McNemar p-value on the queries one finds and the other misses; bold: clearly "
        f"better, italic: clearly worse, p < {ALPHA})", pairs)
    if not wins:
        return lines
    lines.append("")
    for m, label in MODELS.items():
        yes = [d for d in DATASETS if all(wins[c][d] for c in refs[m])]
        no = [d for d in DATASETS if d not in yes]
        lines.append(f"{label} beats both the thumbnails and its untrained network at "
                     f"{' and '.join(RECALLS)} (p < {ALPHA}) on: {', '.join(yes) or 'none'}"
                     + (f"; not on: {', '.join(no)}." if no else "."))
    return lines


def table(title: str, columns: dict[str, dict], datasets=DATASETS, recalls=RECALLS) -> str:
    """Rows = datasets, columns = models x recalls (the paper's Table I shape)."""
    head = "| dataset | " + " | ".join(f"{m} {r}" for m in columns for r in recalls) + " |"
    lines = [f"### {title}", "", head, "|" + "---|" * (1 + len(columns) * len(recalls))]
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
    if not all((root / d / "images").is_dir() for d in (*DATASETS, "night-target")):
        run([py, "-m", "vgjax.synthetic", "--out", str(root), "--preset", args.preset,
             "--overwrite"])
    run([py, "-m", "vgjax.data.inspect", str(root / "pitts30k")])
    trivial = trivial_baseline(root, work / "trivial")
    common = ["--config", args.config, f"--config.data.root={root}"]
    run([py, "-m", "vgjax.train", *common, "--workdir", str(work / "netvlad")])
    run([py, "-m", "vgjax.train", *common, "--workdir", str(work / "gem"),
         "--config.model.aggregation=gem", "--config.model.netvlad_init.enabled=false"])
    run([py, "-m", "vgjax.eval", "--checkpoint", str(work / "netvlad"), "--config", args.config,
         "--datasets", *[str(root / d) for d in DATASETS], "--out", str(work / "multiscale"),
         f"--config.test.scales={SCALES}", "--config.test.multiscale_method=avg",
         "--config.test.num_pictures=8"])
    run([py, "-m", "vgjax.train", *common, "--workdir", str(work / "brightness"),
         "--config.train.query_augment=[brightness(0.1)]", "--config.evals.untrained.when=[]"])

    load = lambda p: json.loads(Path(p).read_text())
    untrained = {m: untrained_results(work / m) for m in MODELS}
    report = [
        f"# vgjax demo: the synthetic city ({args.preset} preset)", "",
        table("Table I shape: test recalls (%) of the models and four reference points",
              {"chance (random ranking)": chance(root), "trivial (thumbnails)": trivial,
               "untrained NetVLAD": untrained["netvlad"], "untrained GeM": untrained["gem"],
               "NetVLAD": load(work / "netvlad" / "results.json"),
               "GeM": load(work / "gem" / "results.json")}),
        "", *paired_tests(work), "",
        table("The paper's extensions on NetVLAD",
              {"NetVLAD": load(work / "netvlad" / "results.json"),
               f"+ multi-scale avg {SCALES}": load(work / "multiscale" / "results.json"),
               "+ brightness 0.1 training": load(work / "brightness" / "results.json")}),
        "", *paired_table(
            f"The extensions' effects, paired (points of recall against NetVLAD, p-value; "
            f"bold: a clear gain, italic: a clear loss, p < {ALPHA})",
            {"multi-scale - NetVLAD": (work / "multiscale", work / "netvlad"),
             "brightness - NetVLAD": (work / "brightness", work / "netvlad")})[0],
        "", "Per query domain (tokyo-xs: day / sunset / night):", "",
        table("NetVLAD, tokyo-xs per domain",
              {"NetVLAD": load(work / "netvlad" / "results_domains.json")["tokyo-xs"],
               "+ brightness 0.1": load(work / "brightness" / "results_domains.json")["tokyo-xs"]},
              datasets=("day", "sunset", "night")),
        "", f"Pictures of queries beside their top-5: {work / 'multiscale' / 'pictures'}",
        f"Run folders (train.log, metrics.jsonl, lr.png, checkpoints/): "
        f"{work / 'netvlad'}, {work / 'gem'}, {work / 'brightness'}",
    ]
    text = "\n".join(report) + "\n"
    (work / "report.md").write_text(text)
    print("\n" + text)
    print(f"demo finished in {time.perf_counter() - start:.0f} s; report: {work / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
