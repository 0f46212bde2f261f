"""`HyperAdam`: Adam whose hyperparameters are the meta-parameters -- the sanity check of
meta-training (its best learning rate can be found by a grid search and compared)."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import optax

from lopt.base import (
    LearnedOptimizer,
    Theta,
    check_float_params,
    check_num_steps,
    check_positive,
)


@dataclasses.dataclass(frozen=True)
class HyperAdam(LearnedOptimizer):
    """``optax.adam`` (non-finite gradients propagate exactly as there: wrap it in
    ``optax.apply_if_finite`` to skip such steps) with ``theta = {"log_lr"}`` (plus ``"logit_b1"``, ``"logit_b2"`` with
    ``learn_betas``): ``lr = exp(log_lr)``, ``b = sigmoid(logit_b)``.

    Attributes:
      lr, b1, b2: initial learning rate and decay rates (fixed decays unless learn_betas).
      eps: Adam's epsilon.
      learn_betas: make ``b1`` and ``b2`` meta-parameters too.
    """

    lr: float = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    learn_betas: bool = False

    def __post_init__(self):
        check_positive("HyperAdam", lr=self.lr)
        for field in ("b1", "b2"):
            if not 0 < getattr(self, field) < 1:
                raise ValueError(
                    f"HyperAdam.{field} must be in (0, 1), got {getattr(self, field)!r}"
                )
        if not self.eps >= 0:
            raise ValueError(f"HyperAdam.eps must be >= 0, got {self.eps!r}")

    def init(self, key: jax.Array) -> Theta:
        del key  # deterministic
        theta = {"log_lr": jnp.asarray(math.log(self.lr), jnp.float32)}
        if self.learn_betas:
            logit = lambda b: jnp.asarray(math.log(b / (1 - b)), jnp.float32)
            theta |= {"logit_b1": logit(self.b1), "logit_b2": logit(self.b2)}
        return theta

    def as_optax(self, theta: Theta, num_steps: int) -> optax.GradientTransformationExtraArgs:
        check_num_steps(num_steps)  # Adam ignores the horizon
        if self.learn_betas:
            b1, b2 = jax.nn.sigmoid(theta["logit_b1"]), jax.nn.sigmoid(theta["logit_b2"])
        else:
            b1, b2 = self.b1, self.b2
        adam = optax.scale_by_adam(b1=b1, b2=b2, eps=self.eps)
        lr = jnp.exp(theta["log_lr"])

        def update_fn(grads, state, params=None, **extra_args):
            del extra_args
            updates, state = adam.update(grads, state, params)
            # Updates keep the gradients' dtype (learned betas would promote bfloat16 to float32).
            return jax.tree.map(lambda u, g: (-lr * u).astype(g.dtype), updates, grads), state

        def init_fn(params):
            check_float_params(params)
            return adam.init(params)

        return optax.GradientTransformationExtraArgs(init_fn, update_fn)
