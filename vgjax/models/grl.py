"""The gradient-reversal layer of Ganin & Lempitsky (2015), for domain adaptation.

Identity on the way forward; on the way back the gradient is multiplied by -lambda, so
that minimising a domain classifier's loss behind it pushes the features before it towards
what the classifier cannot tell apart. `lambda_` may be a traced scalar: a schedule can
change it every step without recompiling.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.custom_vjp
def gradient_reversal(x, lambda_):
    """x unchanged; d/dx of anything after it is multiplied by -lambda_."""
    return x


def _forward(x, lambda_):
    return x, lambda_


def _backward(lambda_, g):
    return (jax.tree.map(lambda t: -lambda_ * t, g), jnp.zeros_like(lambda_))


gradient_reversal.defvjp(_forward, _backward)


def ganin_lambda(progress, gamma: float = 10.0):
    """Ganin's schedule 2 / (1 + exp(-gamma p)) - 1: 0 at p = 0, close to 1 at p = 1."""
    p = jnp.clip(jnp.asarray(progress, jnp.float32), 0.0, 1.0)
    return 2.0 / (1.0 + jnp.exp(-gamma * p)) - 1.0
