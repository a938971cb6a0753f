"""`python -m vgjax.train`: the command of `vgjax.cli.train` (run when started, never on
import).

    python -m vgjax.train --config configs/<x>.py --workdir RUN [--config.<a.b>=<value> ...]
"""
import runpy

if __name__ == "__main__":
    runpy.run_module("vgjax.cli.train", run_name="__main__", alter_sys=True)
