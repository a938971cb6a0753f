"""The end-to-end demo behind `make demo`, on data the project generates itself.

1. builds the synthetic city (`demo` preset: a Pitts30k-like train/val/test set, sf-xs,
   tokyo-xs and tokyo-night-like test sets, an unlabeled night-target folder) unless it is
   already there, and checks it with `vgjax.data.inspect`;
2. two reference points on the four test sets: the recalls of a random ranking (chance) and
   a trivial baseline, raw-pixel thumbnails;
3. trains ResNet-18-conv4 + NetVLAD and + GeM from scratch (configs/demo.py); the NetVLAD
   run also tests the untrained network first: the third reference point of the table;
4. the paper's extensions on the NetVLAD model: multi-scale testing (avg of scales
   [0.667, 1, 1.5], one of the paper's Table III lists) and darkened training queries
   (brightness 0.1, the paper's Table IV) for the night queries;
5. writes the report (tables as markdown, pictures of queries with their predictions) and
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
    cfg = load_config(REPO / "configs" / "demo.py", [f"data.root={root}",
                                                      "test.save_predictions=false"])
    evaluator = evaluators.build(cfg, "test")
    evaluator.run(BASELINES.build("thumbnails"), out_dir=out)
    return json.loads(results.read_text())


def chance(root: Path) -> dict:
    """Expected recalls of a random ranking on each test set: what the recalls mean only
    above (each query's positives are every database image within 25 m, any heading)."""
    from vgjax.eval.recalls import chance_of_folder
    return {d: chance_of_folder(root / d / "images" / "test", (1, 5)) for d in DATASETS}


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
         "--config.model.aggregation=gem", "--config.model.netvlad_init.enabled=false",
         "--config.evals.untrained.when=[]"])
    run([py, "-m", "vgjax.eval", "--checkpoint", str(work / "netvlad"), "--config", args.config,
         "--datasets", *[str(root / d) for d in DATASETS], "--out", str(work / "multiscale"),
         f"--config.test.scales={SCALES}", "--config.test.multiscale_method=avg",
         "--config.test.num_pictures=8"])
    run([py, "-m", "vgjax.train", *common, "--workdir", str(work / "brightness"),
         "--config.train.query_augment=[brightness(0.1)]", "--config.evals.untrained.when=[]"])

    load = lambda p: json.loads(Path(p).read_text())
    records = [json.loads(l) for l in (work / "netvlad" / "metrics.jsonl").open()]
    untrained = next(r["results"] for r in records if r["type"] == "initial_untrained")
    report = [
        f"# vgjax demo: the synthetic city ({args.preset} preset)", "",
        table("Table I shape: test recalls (%) of the models and three reference points",
              {"chance (random ranking)": chance(root), "trivial (thumbnails)": trivial,
               "untrained NetVLAD": untrained,
               "NetVLAD": load(work / "netvlad" / "results.json"),
               "GeM": load(work / "gem" / "results.json")}),
        "",
        table("The paper's extensions on NetVLAD",
              {"NetVLAD": load(work / "netvlad" / "results.json"),
               f"+ multi-scale avg {SCALES}": load(work / "multiscale" / "results.json"),
               "+ brightness 0.1 training": load(work / "brightness" / "results.json")}),
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
