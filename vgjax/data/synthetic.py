"""`python -m vgjax.data.synthetic`: the synthetic city's command under its old name, the same
as `python -m vgjax.synthetic` (the package it runs when started, and never on import).

    python -m vgjax.data.synthetic --out data --preset demo
"""
import runpy

if __name__ == "__main__":
    runpy.run_module("vgjax.synthetic", run_name="__main__", alter_sys=True)
