"""Evaluate a saved model on one or more datasets.

    python -m vgjax.eval --checkpoint RUN_OR_CKPT --datasets ROOT/NAME [ROOT/NAME2 ...] \\
        --out DIR [--split test] [--config FILE] [--config.test.method=five_crops ...]

`--config.<section>.<field>=<value>` overrides a field of the config (configs/default.py
unless `--config FILE`), parsed and type-checked by `vgjax.config` like every other command.
`--config.model.dtype=bfloat16` changes the loaded model's compute dtype; the architecture
itself always comes from the checkpoint. `data.resize` defaults to the size saved with the
model.

Writes DIR/results.json ({"<dataset>": {"R@1": .., "R@5": .., "R@10": .., "R@20": ..}}),
DIR/results_domains.json ({"<dataset>": {"<domain>": {"R@1": ..}}}, domains from the
file-name note field), DIR/predictions/<dataset>.npz, DIR/recall_curve.png and
DIR/eval_info.json (timings, sizes, config). With `--config.data.source=tfds`, `--datasets`
names copies in `data.tfds_dir`. With `--config.data.format=F` (msls, nordland, npy_gt, sped,
stlucia, svox; docs/DATASETS.md), each dataset is read as that benchmark, every file of it
checked before the model loads, and each of its protocols is a result of its own; every
printed recall line and results.json entry names its protocol.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from vgjax import quiet_library_logs
from vgjax.cli.config import DEFAULT_CONFIG, load_config
from vgjax.config import ConfigError, split_argv
from vgjax.data import dataset as ds
from vgjax.data.format import DatasetFormatError
from vgjax.data.pipeline import ImageError
from vgjax.data.readers import reader_name
from vgjax.data.sources import SOURCES, open_split
from vgjax.eval import evaluators
from vgjax.eval.extract import Describer
from vgjax.eval.settings import check_pca
from vgjax.eval.report import format_table
from vgjax.models.io import ModelDirError
from vgjax.models.network import descriptor_dim

log = logging.getLogger("vgjax.eval")


class UsageError(ValueError):
    """A bad command-line option; the message names it."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m vgjax.eval", description=__doc__.split("\n\n")[0],
        epilog="Config overrides: --config.<section>.<field>=<value> (see configs/default.py).")
    p.add_argument("--checkpoint", required=True,
                   help="model dir, training run folder or checkpoint folder")
    p.add_argument("--datasets", required=True, nargs="+", metavar="ROOT/NAME",
                   help="dataset folders (<root>/<name> with images/<split>/...)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="config file with get_config()")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars (they show only when stderr is a terminal)")
    return p


def parse_args(argv: list[str]):
    """(args, config, model_overrides, overridden field names) from a command line."""
    overrides, rest = split_argv(argv)
    args = build_parser().parse_args(rest)
    cfg = load_config(args.config, overrides)
    keys = [o[len("--config."):].split("=", 1)[0] for o in overrides]
    model_overrides = {}
    for key in keys:
        if key.startswith("model."):
            node = cfg.model
            for part in key[len("model."):].split("."):
                node = node[part]
            model_overrides[key[len("model."):]] = node
    return args, cfg, model_overrides, set(keys)


def run(argv: list[str]) -> dict:
    """Runs the evaluation (the `test` entry of the config's evaluators, on `--datasets`
    and `--split`); returns the results.json content."""
    args, cfg, model_overrides, overridden = parse_args(argv)
    names = [ds.dataset_name(d) for d in args.datasets]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"--datasets: several folders are named {dupes}; results are keyed "
                         "by folder name")
    if not all(args.datasets):
        raise UsageError("--datasets: an empty folder name")
    opened = {}
    if SOURCES.get(cfg.data.source).folders:
        data_format = cfg.evals.test.get("format", "") if "test" in cfg.evals else ""
        for d in args.datasets:
            try:  # read each benchmark and its ground truth before loading the model
                if reader_name(cfg.data.format, data_format) == "folder":
                    ds.split_folder(d, args.split)
                else:
                    opened[d] = open_split(cfg.data, d, args.split, data_format)
            except DatasetFormatError as e:
                raise UsageError(f"--datasets {d}: {e}") from None
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file in the way, no permission
        raise UsageError(f"--out {out}: cannot create the folder ({e.strerror or e})") from None

    try:
        describer, model_cfg, image_size = Describer.from_checkpoint(args.checkpoint,
                                                                     model_overrides)
    except ModelDirError as e:  # an unreadable model dir
        raise UsageError(f"--checkpoint {e}") from None
    except ValueError as e:  # a bad model override
        raise UsageError(str(e)) from None
    if cfg.test.pca_dim > 0:
        check_pca(cfg.test, descriptor_dim(model_cfg))
    if "data.resize" not in overridden:
        cfg.data.resize = image_size  # the size the model was trained for
    log.info("model input size (H, W) = %s", tuple(cfg.data.resize))
    try:
        evaluators.check_image_sizes(cfg, model_cfg.backbone, cfg.data.resize, ["test"])
    except ValueError as e:
        raise UsageError(str(e)) from None
    evaluator = evaluators.build(cfg, "test", datasets=args.datasets, split=args.split)
    for d, split_and_reader in opened.items():
        evaluator.adopt(d, split_and_reader)
    for d in args.datasets:
        log.info("%s", evaluator.open(d)[0].summary())
    results = evaluator.run(describer, out_dir=out, progress=args.progress)
    rows, counts = evaluator.table(results)
    print(format_table(rows, counts, title=f"{args.split} recalls (%), method "
                                           f"{evaluator.settings.method}, {args.checkpoint}; "
                                           "(chance): a random ranking's",
                       protocols=evaluator.protocols(results)))
    info = {"checkpoint": str(args.checkpoint), "split": args.split,
            "datasets": {r.name: {"queries": r.num_queries, "database": r.num_database,
                                  "model_dim": r.model_dim, "descriptor_dim": r.descriptor_dim,
                                  "timings": r.timings, "domain_counts": r.domain_counts,
                                  "chance": r.chance,
                                  "protocol": r.protocol.to_dict() if r.protocol else None}
                         for r in results},
            "config": json.loads(cfg.to_json()), "model": json.loads(model_cfg.to_json())}
    (out / "eval_info.json").write_text(json.dumps(info, indent=2) + "\n")
    for r in results:
        dims = (f"{r.model_dim} -> PCA {r.descriptor_dim}" if r.descriptor_dim != r.model_dim
                else f"{r.descriptor_dim}")
        print(f"{r.name}: descriptors {dims}; database {r.timings['database_s']:.1f} s "
              f"({r.timings['database_img_per_s']:.0f} img/s), queries "
              f"{r.timings['queries_s']:.1f} s, search {r.timings['search_s']:.2f} s")
    return json.loads((out / "results.json").read_text())


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    quiet_library_logs()
    try:
        run(sys.argv[1:] if argv is None else argv)
    except (UsageError, ConfigError, DatasetFormatError, ImageError, ValueError,
            OSError) as e:  # ValueError: options only evaluate() can check
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written for the datasets not finished",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
