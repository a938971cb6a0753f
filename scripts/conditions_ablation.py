"""What varied query capture conditions (`python -m vgjax.synthetic --varied-conditions`) do
to the demo's reference points and models: for each part of the conditions (all of them,
the season only, the light only: sun position and overcast, the exposure only) a copy of
the demo city whose database images are hard links to ROOT's and whose queries and target
images are rendered again under those conditions; on it the thumbnails baseline and the
demo's NetVLAD run (configs/demo.py, which tests the untrained network first). Prints a
table of R@1 / R@5 per dataset, the first row being ROOT itself.

    python scripts/conditions_ablation.py --root data/synthetic-demo --out runs/conditions
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from vgjax.synthetic import Conditions
from vgjax.synthetic.build import render_views
from vgjax.synthetic.specs import NIGHT_SUBSET
from vgjax.synthetic.views import plan

REPO = Path(__file__).resolve().parents[1]

PARTS = {  # which fields of the drawn conditions a variant keeps
    "all": lambda c: c,
    "season": lambda c: Conditions(season=c.season),
    "light": lambda c: Conditions(c.sun_azimuth, c.overcast),
    "exposure": lambda c: Conditions(exposure=c.exposure),
}


def build_variant(root: Path, out: Path, part: str, preset: str, workers: int) -> None:
    """`out`: `root`'s database images hard-linked, its queries rendered under `part`."""
    if (out / ".complete").exists():
        return
    views = plan(out, preset, 0, ("pitts30k", "sf-xs", "tokyo-xs", "night-target"), True)
    todo = []
    for splits in views.values():
        for vs in splits.values():
            for v in vs:
                Path(v.path).parent.mkdir(parents=True, exist_ok=True)
                if Path(v.path).parent.name == "database":
                    if not Path(v.path).exists():
                        os.link(root / Path(v.path).relative_to(out), v.path)
                else:
                    todo.append(dataclasses.replace(v, conditions=PARTS[part](v.conditions)))
    render_views(todo, preset, 0, workers)
    night, source = NIGHT_SUBSET
    for v in views[source]["test"]:
        role = Path(v.path).parent.name
        if role == "database" or v.time_of_day == "night":
            dst = out / night / "images" / "test" / role / Path(v.path).name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                os.link(v.path, dst)
    (out / ".complete").touch()


def evaluate(root: Path, work: Path) -> dict:
    """Thumbnails, the untrained and the trained NetVLAD of configs/demo.py on `root`."""
    import demo

    thumbs = demo.trivial_baseline(root, work / "trivial")
    subprocess.run([sys.executable, "-m", "vgjax.train", "--config", "configs/demo.py",
                    f"--config.data.root={root}", "--workdir", str(work / "netvlad")],
                   check=True, cwd=REPO)
    records = [json.loads(line) for line in (work / "netvlad" / "metrics.jsonl").open()]
    untrained = next(r["results"] for r in records if r["type"] == "initial_untrained")
    trained = json.loads((work / "netvlad" / "results.json").read_text())
    return {"thumbnails": thumbs, "untrained NetVLAD": untrained, "NetVLAD": trained}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="data/synthetic-demo", help="a built demo city")
    parser.add_argument("--out", default="runs/conditions")
    parser.add_argument("--preset", default="demo", help="the preset ROOT was built with")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    root, out = Path(args.root).resolve(), Path(args.out).resolve()
    rows = {"none (ROOT)": evaluate(root, out / "none")}
    for part in args.parts:
        city = out / f"city-{part}"
        build_variant(root, city, part, args.preset, args.workers)
        rows[part] = evaluate(city, out / part)
    import demo

    models = list(next(iter(rows.values())))
    head = ["conditions"] + [f"{m} {d} R@1/R@5" for m in models for d in demo.DATASETS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, results in rows.items():
        cells = [f"{results[m][d]['R@1']:.1f} / {results[m][d]['R@5']:.1f}"
                 for m in models for d in demo.DATASETS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (out / "conditions.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
