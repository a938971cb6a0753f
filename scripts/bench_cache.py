"""One training epoch with data.cache_decoded = none vs device (and host), same data, same
seed, one process: the epoch times and whether the losses are identical.

    python scripts/bench_cache.py [--root data/synthetic-demo] [--config configs/demo.py]
        [--modes none device] [--queries 304] [--out runs/bench-cache]

Each mode trains one epoch from the same initial weights into OUT/<mode>/ (a fresh folder),
then the final test runs on pitts30k only. Prints one JSON object: per mode the epoch time
(training rounds + validation, from metrics.jsonl), the time of the train steps and of the
mining rounds' cache descriptors (from train.log), and whether every mode's step losses equal
the first mode's.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    from vgjax.cli.config import load_config
    from vgjax.train.loop import train_and_evaluate

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default="data/synthetic-demo")
    p.add_argument("--config", default="configs/demo.py")
    p.add_argument("--modes", nargs="+", default=["none", "device"])
    p.add_argument("--queries", type=int, default=304)
    p.add_argument("--out", default="runs/bench-cache")
    args = p.parse_args(argv)
    out = Path(args.out)
    report, losses = {}, {}
    for mode in args.modes:
        run = out / mode
        shutil.rmtree(run, ignore_errors=True)
        cfg = load_config(REPO / args.config, [
            f"data.root={args.root}", f"data.cache_decoded={mode}", "train.epochs=1",
            f"train.queries_per_epoch={args.queries}", "data.test_datasets=[pitts30k]",
            "evals.val.when=[epoch]", "test.save_predictions=false"]
            + (["evals.untrained.when=[]"] if "untrained" in load_config(
                REPO / args.config).evals else []))
        start = time.perf_counter()
        train_and_evaluate(cfg, run)
        total = time.perf_counter() - start
        records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
        losses[mode] = [r["loss"] for r in records if r["type"] == "step"]
        epoch = next(r for r in records if r["type"] == "epoch")
        log = (run / "train.log").read_text()
        steps = [float(m) for m in re.findall(r"steps ([\d.]+) s", log)]
        cache = [float(m) for m in re.findall(r"images ([\d.]+) s, mining", log)]
        report[mode] = {"epoch_s": round(epoch["epoch_time_s"], 2),
                        "train_steps_s": round(sum(steps), 2),
                        "cache_descriptors_s": round(sum(cache), 2),
                        "whole_run_s": round(total, 1), "steps": len(losses[mode])}
    first = args.modes[0]
    report["losses_identical"] = all(losses[m] == losses[first] for m in args.modes)
    report["config"], report["root"] = args.config, args.root
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
