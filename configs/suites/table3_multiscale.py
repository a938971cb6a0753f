"""Table III: multi-scale testing, avg / sum / max / min over the paper's scale lists,
evaluated on one trained model per repetition (no retraining per row); R@1/5/10/20.
The baseline row is the single-scale test of the same models."""
from configs.suites.common import DATASETS, base, overrides
from vgjax.config.sweep import cell

SCALES = {"5": [0.526, 0.588, 1.0, 1.7, 1.9], "3": [0.526, 1.0, 1.7],
          "3b": [0.667, 1.0, 1.5]}


def get_suite(arg=None):
    evals = [cell("baseline", {"method": "baseline", "resolutions": "-"},
                  **{"test.scales": [1.0]})]
    evals += [cell(f"{m}-{k}", {"method": m, "resolutions": str(s)},
                   **{"test.scales": s, "test.multiscale_method": m})
              for k, s in SCALES.items() for m in ("avg", "sum", "max", "min")]
    return dict(name="table3_multiscale", title="Table III: multi-scale testing",
                config=base(arg), overrides=overrides(arg), cells=[cell("netvlad", {"model": "NetVLAD"})],
                evals=evals, datasets=DATASETS, recalls=["R@1", "R@5", "R@10", "R@20"],
                plots=["multiscale"])
