"""`python -m vgjax.train --config configs/<x>.py --workdir RUN [--config.<a.b>=<value> ...]`

Running again with the same --workdir resumes from its last checkpoint. Multi-host: call
with `--distributed` on every host (jax.distributed.initialize reads the cluster from the
environment).
"""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    from vgjax.config import ConfigError, load_config, split_argv, validate_training
    overrides, rest = split_argv(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m vgjax.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="configs/<name>.py")
    parser.add_argument("--workdir", required=True, help="run folder (created; resumed if present)")
    parser.add_argument("--distributed", action="store_true",
                        help="call jax.distributed.initialize() first (multi-host)")
    args = parser.parse_args(rest)
    try:
        config = load_config(args.config, overrides)
        validate_training(config)
    except ConfigError as e:
        parser.error(str(e))
    if args.distributed:
        import jax
        jax.distributed.initialize()
    from vgjax.data.format import DatasetFormatError
    from vgjax.data.pipeline import ImageError
    from vgjax.models.io import ModelDirError
    from vgjax.train.loop import NonFiniteLossError, train_and_evaluate
    try:
        results = train_and_evaluate(config, args.workdir)
    except (DatasetFormatError, ImageError, ModelDirError, NonFiniteLossError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, recalls in results.items():
        print(name, " ".join(f"{k}: {v:.1f}" for k, v in recalls.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
