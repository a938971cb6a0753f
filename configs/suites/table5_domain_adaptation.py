"""Table V: baseline vs unsupervised domain adaptation (gradient reversal + a domain
classifier on backbone features), R@1 / R@5 on the four test sets.

The target set is `{root}/night-target/images`: on the synthetic city, unlabeled night
views of another part of the tokyo district, never used for testing (the honest setting).
The paper adapted to tokyo-night's own test queries (transductive); to rerun that, set
train.da.target_dir to `<root>/tokyo-night/images/test/queries` (vgjax logs the run as
transductive).
"""
from configs.suites.common import DATASETS, base, overrides
from vgjax.config.sweep import cell

DA = {"train.da.enabled": True, "train.da.target_dir": "{root}/night-target/images",
      "train.da.schedule": "ganin", "train.da.ramp_epochs": 3, "train.da.grl_lambda": 0.1,
      "train.da.classifier": "mlp(hidden=256, layers=2)"}


def get_suite(arg=None):
    return dict(name="table5_domain_adaptation",
                title="Table V: domain adaptation towards night images",
                config=base(arg), overrides=overrides(arg),
                cells=[cell("netvlad", {"model": "baseline"}),
                       cell("domain-adaptation", {"model": "domain adaptation"}, **DA)],
                datasets=DATASETS, recalls=["R@1", "R@5"], plots=["val"],
                notes=__doc__.split("\n\n", 1)[1].strip())
