"""Table I: the baselines, ResNet-18-conv4 + NetVLAD and + GeM, Adam 1e-5 (paper setting;
the city and demo variants keep their own backbone and learning rate, which the title
names), R@1 / R@5 on the four test sets."""
from configs.suites.common import DATASETS, backbone, base, overrides
from vgjax.config.sweep import cell


def get_suite(arg=None):
    return dict(
        name="table1_baselines", title=f"Table I: baselines ({backbone(arg)})",
        config=base(arg), overrides=overrides(arg, before_training=True),
        cells=[cell("netvlad", {"aggregation": "NetVLAD"}),
               cell("gem", {"aggregation": "GeM"}, **{"model.aggregation": "gem",
                                                      "model.netvlad_init.enabled": False})],
        datasets=DATASETS, recalls=["R@1", "R@5"], plots=["val"])
