"""`python -m vgjax.train --config configs/<x>.py --workdir RUN [--config.<a.b>=<value> ...]`

`--check` loads the config and runs every check training runs before any work (the
datasets' split folders included), prints `config OK: ...` and exits, training nothing and
creating no run folder (`--workdir` is then optional). Running again with the same --workdir resumes from its last checkpoint. Multi-host: call
with `--distributed` on every host, with the same --workdir on a shared file system
(jax.distributed.initialize reads the cluster from the environment, e.g. SLURM, or from
--coordinator_address, --num_processes and --process_id).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax

from vgjax.cli.config import load_config
from vgjax.train.settings import validate_training
from vgjax.config import ConfigError, split_argv
from vgjax.data.format import DatasetFormatError
from vgjax.data.pipeline import ImageError
from vgjax.models.io import ModelDirError
from vgjax.train.interrupt import TrainingInterrupted, exit_now, raise_on_sigterm
from vgjax.train.loop import train_and_evaluate
from vgjax.train.step import NonFiniteLossError


def _report_check(parser, args, config) -> int:
    """`--check`: the config passed every check; one line saying what would run."""
    if args.workdir and Path(args.workdir).exists() and not Path(args.workdir).is_dir():
        parser.error(f"--workdir {args.workdir}: is a file, not a folder")
    data, model = config.data, config.model
    h, w = data.resize
    tests = ", ".join(data.test_datasets) or "none"
    print(f"config OK: {args.config}: train {data.train_dataset}, test {tests} "
          f"(data.root {data.root}); {model.backbone} + {model.aggregation}, {h}x{w}; "
          f"{config.train.epochs} epoch(s) at most; nothing was trained")
    return 0


def main(argv=None) -> int:
    raise_on_sigterm()
    overrides, rest = split_argv(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m vgjax.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="configs/<name>.py")
    parser.add_argument("--workdir", help="run folder (created; resumed if present); "
                        "required unless --check")
    parser.add_argument("--check", action="store_true",
                        help="check the config and the datasets' folders, print 'config OK' "
                             "and exit without training")
    parser.add_argument("--distributed", action="store_true",
                        help="call jax.distributed.initialize() first (multi-host)")
    parser.add_argument("--coordinator_address", default=None,
                        help="with --distributed: HOST:PORT of process 0 (default: from the "
                             "cluster environment)")
    parser.add_argument("--num_processes", type=int, default=None,
                        help="with --distributed: number of processes")
    parser.add_argument("--process_id", type=int, default=None,
                        help="with --distributed: this process's index (0 writes the files)")
    args = parser.parse_args(rest)
    if not args.workdir and not args.check:
        parser.error("the following arguments are required: --workdir (unless --check)")
    try:
        config = load_config(args.config, overrides)
        validate_training(config)
    except ConfigError as e:
        parser.error(str(e))
    explicit = {k: v for k, v in (("coordinator_address", args.coordinator_address),
                                  ("num_processes", args.num_processes),
                                  ("process_id", args.process_id)) if v is not None}
    if explicit and not args.distributed:
        parser.error(f"--{next(iter(explicit))} needs --distributed")
    if args.check:
        return _report_check(parser, args, config)
    if args.distributed:
        jax.distributed.initialize(**explicit)
    try:
        results = train_and_evaluate(config, args.workdir)
    except TrainingInterrupted as e:
        print(e, file=sys.stderr)
        return e.exit_code
    except (DatasetFormatError, ImageError, ModelDirError, NonFiniteLossError, ConfigError,
            ValueError, OSError) as e:  # ValueError: e.g. a checkpoint of another run;
        print(f"error: {e}", file=sys.stderr)  # OSError: a full disk, a read-only folder
        return 2
    for name, recalls in results.items():
        print(name, " ".join(f"{k}: {v:.1f}" for k, v in recalls.items()))
    return 0


if __name__ == "__main__":
    code = main()
    # interrupted by a signal (saved and reported), or a process of a multi-host run that
    # stopped on an error: nothing left to tear down, and a teardown that waits for the
    # other processes (jax.distributed's shutdown barrier, orbax's threads) could hang
    if code >= 128 or (code and "--distributed" in sys.argv):
        exit_now(code)
    sys.exit(code)
