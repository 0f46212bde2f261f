"""`LearnedSchedule`: a learned learning-rate schedule over a hand-designed optax direction.

The update is a base optimizer's step at unit rate, ``d_t`` (``optax.adam(1.0)``'s, Muon's,
...), times a learned step size::

    u_t = exp(a + clip(w · φ(t / T), ±SCHEDULE_BOUND)) · d_t

where ``φ`` are the 10 fraction-of-horizon features of ``lopt.features`` (``tanh(10 (t/T −
τ))`` for thresholds ``τ``), ``a = log(lr)`` at init and ``w = 0``: it starts as the base
optimizer at the constant rate ``lr``. Eleven meta-parameters, so a few minutes of
meta-training fit them; it is the schedule a per-parameter learned optimizer has to beat.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from lopt import features as F
from lopt.base import LearnedOptimizer, Theta, check_float_params, check_num_steps, check_rate
from lopt.mlp_lopt import schedule_multiplier


def _muon() -> optax.GradientTransformation:
    """optax's Muon at unit rate: non-empty 2-D leaves orthogonalized, the rest (and empty
    matrices, which its Newton-Schulz step cannot normalize) through Adam."""
    dims = optax.contrib.MuonDimensionNumbers()
    return optax.contrib.muon(
        1.0,
        muon_weight_dimension_numbers=lambda params: jax.tree.map(
            lambda p: dims if p.ndim == 2 and p.size else None, params
        ),
    )


# Base directions: each optimizer at unit learning rate (its update is the descent step).
BASES: dict[str, Callable[[], optax.GradientTransformation]] = {
    "adam": lambda: optax.adam(1.0),
    "nadamw": lambda: optax.nadamw(1.0, weight_decay=1e-4),
    "muon": _muon,
    "sgd-momentum": lambda: optax.sgd(1.0, momentum=0.9, nesterov=True),
}


class LearnedScheduleState(NamedTuple):
    count: jax.Array  # int32: updates taken
    base: optax.OptState  # the base optimizer's state


@dataclasses.dataclass(frozen=True)
class LearnedSchedule(LearnedOptimizer):
    """A learned schedule (module docstring) over ``BASES[base]``, starting at rate ``lr``.

    Non-finite gradients propagate as in the base optimizer (wrap it in
    ``optax.apply_if_finite`` to skip such steps).
    """

    base: str = "adam"
    lr: float = 1e-3

    def __post_init__(self):
        if self.base not in BASES:
            raise ValueError(
                f"LearnedSchedule.base must be one of {sorted(BASES)}, got {self.base!r}"
            )
        check_rate("LearnedSchedule", self.lr)

    def init(self, key: jax.Array) -> Theta:
        del key  # deterministic
        return {
            "log_lr": jnp.asarray(math.log(self.lr), jnp.float32),
            "schedule": jnp.zeros(len(F.FRACTION_THRESHOLDS), jnp.float32),
        }

    def as_optax(self, theta: Theta, num_steps: int) -> optax.GradientTransformationExtraArgs:
        check_num_steps(num_steps)
        base = BASES[self.base]()

        def init_fn(params):
            check_float_params(params)
            return LearnedScheduleState(jnp.zeros([], jnp.int32), base.init(params))

        def update_fn(grads, state, params=None, **extra_args):
            del extra_args
            direction, base_state = base.update(grads, state.base, params)
            rate = _rate(theta, state.count, num_steps)
            updates = jax.tree.map(lambda d, g: (rate * d).astype(g.dtype), direction, grads)
            return updates, LearnedScheduleState(optax.safe_increment(state.count), base_state)

        return optax.GradientTransformationExtraArgs(init_fn, update_fn)

    def rates(self, theta: Theta, num_steps: int) -> jax.Array:
        """``float32[num_steps]``: the learning rate at every step of a run of ``num_steps``."""
        return jax.vmap(lambda t: _rate(theta, t, num_steps))(jnp.arange(num_steps))


def _rate(theta: Theta, count: jax.Array, num_steps: int) -> jax.Array:
    """The learning rate of update ``count``: ``exp(a) · ρ(count / num_steps)``."""
    return jnp.exp(theta["log_lr"]) * schedule_multiplier(
        theta, F.global_features(count, num_steps)
    )
