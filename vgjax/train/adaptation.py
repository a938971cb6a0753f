"""Unsupervised domain adaptation (the paper's section IV-D): a domain classifier behind a
gradient-reversal layer, trained on the backbone features of source images (the step's
training queries) and unlabeled target images (e.g. night photos), one target image per
query in every step.

The classifier's parameters live beside the network's in the train state, under
`params["domain"]`; model dirs (what evaluation loads) hold the network alone. The loss
term `domain` (registered with the other loss terms) is the classifier's cross-entropy;
through the reversal layer its gradient pushes the backbone towards features the classifier
cannot tell apart. Lambda is constant or Ganin's schedule 2 / (1 + exp(-10 p)) - 1 over the
training progress p = step / ramp_steps.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from vgjax.models.domain import DOMAIN_CLASSIFIERS
from vgjax.models.grl import ganin_lambda, gradient_reversal
from vgjax.registry import Registry
from vgjax.train.losses import LOSS_TERMS, StepOutputs

DOMAIN = "domain"  # key of the classifier's parameters in the train state's params
LAMBDA_SCHEDULES = Registry("train.da.schedule", fixed=("progress",))
LAMBDA_SCHEDULES.register("constant")(lambda progress: jnp.ones_like(progress))
LAMBDA_SCHEDULES.register("ganin")(lambda progress: ganin_lambda(progress))


@dataclasses.dataclass(frozen=True)
class DomainAdaptation:
    """The classifier, its reversal strength and how lambda grows."""
    classifier: nn.Module
    lambda_max: float = 1.0
    schedule: str = "constant"
    ramp_steps: int = 1

    @classmethod
    def from_config(cls, da_cfg, steps_per_epoch: int) -> DomainAdaptation:
        return cls(classifier=DOMAIN_CLASSIFIERS.build(da_cfg.classifier),
                   lambda_max=float(da_cfg.grl_lambda),
                   schedule=LAMBDA_SCHEDULES.check(da_cfg.schedule).name,
                   ramp_steps=max(1, int(da_cfg.ramp_epochs) * int(steps_per_epoch)))

    def init(self, key, feature_shape) -> dict:
        """Parameters for local features of shape (N, h, w, C)."""
        return self.classifier.init(key, jnp.zeros(feature_shape, jnp.float32))["params"]

    def lambda_at(self, step) -> jax.Array:
        progress = jnp.asarray(step, jnp.float32) / self.ramp_steps
        return self.lambda_max * LAMBDA_SCHEDULES.get(self.schedule)(progress=progress)

    def outputs(self, params, source_features, target_features, step) -> dict:
        """The `extra` arrays of the step's outputs: logits (S + T, 2) of the reversed
        features, labels (0 = source, 1 = target) and lambda."""
        lam = self.lambda_at(step)
        feats = jnp.concatenate([source_features.astype(jnp.float32),
                                 target_features.astype(jnp.float32)], axis=0)
        logits = self.classifier.apply({"params": params}, gradient_reversal(feats, lam))
        labels = jnp.concatenate([jnp.zeros(len(source_features), jnp.int32),
                                  jnp.ones(len(target_features), jnp.int32)])
        return {"domain_logits": logits, "domain_labels": labels, "grl_lambda": lam}


@LOSS_TERMS.register("domain")
def domain(outputs: StepOutputs):
    """Cross-entropy of the domain classifier; reports its accuracy and lambda too."""
    logits, labels = outputs.extra["domain_logits"], outputs.extra["domain_labels"]
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
    return loss, {"domain_acc": accuracy, "grl_lambda": outputs.extra["grl_lambda"]}


def network_variables(variables: dict) -> dict:
    """`{'params', 'batch_stats'}` without the domain classifier: what a model dir holds."""
    params = {k: v for k, v in variables["params"].items() if k != DOMAIN}
    return {"params": params, "batch_stats": variables["batch_stats"]}
