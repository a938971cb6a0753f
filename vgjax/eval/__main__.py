"""`python -m vgjax.eval`: the command of `vgjax.cli.eval` (run when started, never on
import).

    python -m vgjax.eval --checkpoint RUN_OR_CKPT --datasets ROOT/NAME --out DIR
"""
import runpy

if __name__ == "__main__":
    runpy.run_module("vgjax.cli.eval", run_name="__main__", alter_sys=True)
