"""Experiment suites: a grid of runs (cells x repetitions) described by a suite file, run
resumably, averaged into a table shaped like the paper's, with plots.

What a suite is (its file, its cells and the overrides they become) is
`vgjax.config.sweep`; `scripts/run_suite.py` runs it. This package reads what the runs
left and reports on it:

    results  each run folder's status, the rows averaged over the repetitions, every row
             tested against the baseline row query by query (paired McNemar tests)
    tables   OUT/<name>.md, .csv, .json and OUT/<name>_paired.md
    plots    OUT/<name>_<kind>.png, one function per kind in the PLOTS registry

Each run lives in `OUT/runs/<cell>-rep<k>/` (seed k); one that has `results.json` is done
and skipped, one that was killed resumes from its checkpoint. A run that fails is recorded
with its error and the table shows it as missing, never as a number.

The names of the grammar are re-exported here too, so `vgjax.suite.cell` and
`vgjax.config.sweep.cell` are the same function.
"""
from vgjax.config.sweep import (Suite, cell, load_suite, override_args, product, run_name,
                                zipped)
from vgjax.suite.plots import PLOTS, write_plots
from vgjax.suite.results import (PROVENANCE, aggregate, epoch_records, paired, read_run,
                                 run_commits)
from vgjax.suite.tables import CHANCE_LABEL, write_tables

__all__ = ["CHANCE_LABEL", "PLOTS", "PROVENANCE", "Suite", "aggregate", "cell",
           "epoch_records", "load_suite", "override_args", "paired", "product", "read_run",
           "run_commits", "run_name", "write_plots", "write_tables", "zipped"]
