"""The command line: `python -m vgjax.synthetic --out DIR [--preset P] [--seed S] ...`
(`python -m vgjax.data.synthetic` is the same). Prints the build's summary as JSON on
stdout and, on stderr, a table of each split: database images, queries, positives per query
(25 m) and the recalls of a random ranking. `--stats-only` prints that table (and its JSON)
from the planned positions alone, rendering nothing.

`--format gsv_cities` writes, instead of the standard folders, the training district as a
GSV-Cities-format folder `<out>/gsv-cities/` (`Dataframes/SynthCity.csv` and
`Images/SynthCity/`, several views per place; see `vgjax.synthetic.gsv`) and prints its
summary; run the command again without it for the evaluation datasets.

`--format msls|nordland|npy_gt|sped|stlucia|svox` writes a benchmark's layout instead
(`vgjax.synthetic.benchmarks`): the split of pitts30k it needs (val for msls, test for the
others) is read from `<out>/pitts30k/images/<split>` if it is there, else rendered first into
a temporary folder inside `<out>`; the benchmark goes to `<out>/<its folder>` and the command
prints its summary."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from vgjax.synthetic.benchmarks import FOLDERS, SOURCE_SPLIT, WRITERS, write_benchmark
from vgjax.synthetic.build import generate
from vgjax.synthetic.gsv import generate_gsv, plan_gsv
from vgjax.synthetic.specs import ALL_OUTPUTS, PRESETS
from vgjax.synthetic.stats import plan_stats, stats_table


def _out_problem(out: Path) -> str | None:
    """Why the datasets root `out` cannot be written (a file, under a file, a folder this
    user cannot write in), or None."""
    if out.exists():
        if not out.is_dir():
            return "is a file, not a folder"
        folder = out
    else:
        folder = out.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            return f"{folder} is a file, not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write in {folder} (permission denied)"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vgjax.synthetic",
        description="A synthetic city: place-recognition datasets in the standard folder "
        "format, built offline.",
    )
    parser.add_argument(
        "--out", help="datasets root; <out>/<name>/images/... is written"
    )
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    parser.add_argument(
        "--datasets",
        default=None,
        help=f"comma-separated subset of {','.join(ALL_OUTPUTS)} (default: all; "
        "--format standard only)",
    )
    parser.add_argument(
        "--format",
        default="standard",
        choices=("standard", "gsv_cities", *WRITERS.names()),
        help="standard: the @UTM dataset folders; gsv_cities: instead, the training district "
        "as <out>/gsv-cities/{Dataframes,Images} (places of several views each); msls, "
        "nordland, npy_gt, sped, stlucia, svox: a pitts30k split laid out as that benchmark "
        "(docs/DATASETS.md)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing <name>/images folders"
    )
    parser.add_argument(
        "--varied-conditions",
        action="store_true",
        help="render queries and target images under other conditions than the database "
        "(sun position, overcast, exposure, the season of their time stamp)",
    )
    parser.add_argument(
        "--stats-only",
        action="store_true",
        help="render nothing: print each split's database and query counts, positives per "
        "query and a random ranking's recalls, from the planned positions",
    )
    args = parser.parse_args(argv)
    if args.format != "standard" and args.datasets is not None:
        parser.error(f"--datasets applies to --format standard only ({args.format} writes "
                     "one dataset of its own)")
    if args.format in WRITERS and args.stats_only:
        parser.error(f"--stats-only applies to --format standard and gsv_cities, not "
                     f"{args.format}")
    names = tuple(n for n in (args.datasets or ",".join(ALL_OUTPUTS)).split(",") if n)
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers {args.workers}: expected at least 1")
    if args.seed < 0:
        parser.error(f"--seed {args.seed}: expected a non-negative integer")
    bad = [n for n in names if n not in ALL_OUTPUTS]
    if bad:
        parser.error(f"--datasets: unknown {bad}; expected names among {', '.join(ALL_OUTPUTS)}")
    if args.stats_only and args.format == "gsv_cities":
        rows, _ = plan_gsv(".", args.preset, args.seed)
        per_place = [sum(r["place_id"] == p for r in rows) for p in {r["place_id"] for r in rows}]
        print(json.dumps({"preset": args.preset, "seed": args.seed, "format": "gsv_cities",
                          "places": len(per_place), "images": len(rows),
                          "views_per_place": [min(per_place), max(per_place)]}, indent=2))
        return 0
    if args.stats_only:
        stats = plan_stats(args.preset, args.seed, names)
        print(stats_table(stats), file=sys.stderr)
        print(json.dumps({"preset": args.preset, "seed": args.seed, "datasets": stats}, indent=2))
        return 0
    if not args.out:
        parser.error("--out is required (unless --stats-only)")
    problem = _out_problem(Path(args.out))
    if problem:  # before rendering anything
        print(f"{parser.prog}: error: --out {args.out}: {problem}", file=sys.stderr)
        return 2
    try:
        if args.format in WRITERS:
            print(json.dumps(_benchmark(args), indent=2))
            return 0
        if args.format == "gsv_cities":
            summary = generate_gsv(args.out, args.preset, args.seed, args.workers,
                                   args.overwrite, progress=True,
                                   varied_conditions=args.varied_conditions or None)
            print(json.dumps(summary, indent=2))
            return 0
        summary = generate(
            args.out,
            args.preset,
            args.seed,
            args.workers,
            names,
            args.overwrite,
            progress=True,
            varied_conditions=args.varied_conditions or None,
        )
    except FileExistsError as e:
        parser.error(str(e))
    except OSError as e:  # e.g. a full disk or a read-only file system while writing
        print(f"{parser.prog}: error: --out {args.out}: {e}", file=sys.stderr)
        return 2
    if summary["datasets"]:
        print(stats_table(summary["datasets"]), file=sys.stderr)
    print(json.dumps(summary, indent=2))
    return 0


BENCHMARK_SOURCE = "pitts30k"


def _benchmark(args) -> dict:
    """Writes `--format`'s benchmark from pitts30k's split (read if present, else rendered
    into a temporary folder inside --out)."""
    out = Path(args.out)
    target = out / FOLDERS[args.format]
    if target.exists() and not args.overwrite:  # before rendering anything
        raise FileExistsError(f"{target} already exists; pass --overwrite to replace it")
    split = SOURCE_SPLIT.get(args.format, "test")
    source = out / BENCHMARK_SOURCE / "images" / split
    if source.is_dir():
        summary = write_benchmark(args.format, source, out, args.overwrite)
        rendered = 0
    else:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out, prefix=".render-") as tmp:
            built = generate(tmp, args.preset, args.seed, args.workers, (BENCHMARK_SOURCE,),
                             progress=sys.stderr.isatty(),
                             varied_conditions=args.varied_conditions or None)
            summary = write_benchmark(args.format, Path(tmp) / BENCHMARK_SOURCE / "images"
                                      / split, out, args.overwrite)
            rendered = built["rendered"]
    return {"preset": args.preset, "seed": args.seed, "out": str(out), "format": args.format,
            "source": f"{BENCHMARK_SOURCE}/{split}", "rendered": rendered,
            FOLDERS[args.format]: summary}
