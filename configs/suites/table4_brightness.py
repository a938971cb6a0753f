"""Table IV: training queries darkened by torchvision's adjust_brightness with a fixed
factor, R@1/5/10/20 on the night test set (tokyo-night). The first row is the baseline."""
from configs.suites.common import base, overrides
from vgjax.config.sweep import cell

FACTORS = [0.05, 0.08, 0.10, 0.12, 0.15, 0.20, 0.30, 0.50]


def get_suite(arg=None):
    cells = [cell("netvlad", {"brightness": "baseline"})]
    cells += [cell(f"brightness{f:g}", {"brightness": f"{f:g}"},
                   **{"train.query_augment": [f"brightness({f:g})"]}) for f in FACTORS]
    return dict(name="table4_brightness",
                title="Table IV: darkened training queries, tested on tokyo-night",
                config=base(arg), overrides=overrides(arg), cells=cells, datasets=["tokyo-night"],
                recalls=["R@1", "R@5", "R@10", "R@20"], plots=["brightness", "val"])
