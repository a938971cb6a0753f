"""`python -m vgjax.train --config configs/<x>.py --workdir RUN [--config.<a.b>=<value> ...]`

Running again with the same --workdir resumes from its last checkpoint. Multi-host: call
with `--distributed` on every host, with the same --workdir on a shared file system
(jax.distributed.initialize reads the cluster from the environment, e.g. SLURM, or from
--coordinator_address, --num_processes and --process_id).
"""
from __future__ import annotations

import argparse
import sys

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


def main(argv=None) -> int:
    raise_on_sigterm()
    overrides, rest = split_argv(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m vgjax.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="configs/<name>.py")
    parser.add_argument("--workdir", required=True, help="run folder (created; resumed if present)")
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
