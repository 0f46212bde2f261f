"""The learner: applies averaged meta-gradient estimates with an optax outer optimizer."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

import lopt
from meta_train.config import OuterConfig
from meta_train.estimators import all_finite


class LearnerState(NamedTuple):
    theta: lopt.Theta
    opt_state: Any
    version: jax.Array  # int32: number of updates applied to theta


@dataclasses.dataclass(frozen=True, eq=False)
class Learner:
    """``optax.chain(clip_by_global_norm, adam)`` over theta, with a version counter.

    ``apply`` averages the estimates that are at most ``max_staleness`` versions old (older
    ones are dropped and counted) and skips the update if the average is not finite.
    """

    config: OuterConfig

    @property
    def tx(self) -> optax.GradientTransformation:
        c = self.config
        return optax.chain(
            optax.clip_by_global_norm(c.clip_norm), optax.adam(c.learning_rate, b1=c.b1, b2=c.b2)
        )

    def init(self, theta: lopt.Theta) -> LearnerState:
        return LearnerState(theta, self.tx.init(theta), jnp.zeros([], jnp.int32))

    @functools.partial(jax.jit, static_argnums=0)
    def _update(self, state: LearnerState, grad: lopt.Theta) -> tuple[LearnerState, jax.Array]:
        finite = all_finite(grad)
        updates, opt_state = self.tx.update(grad, state.opt_state, state.theta)
        new = LearnerState(optax.apply_updates(state.theta, updates), opt_state, state.version + 1)
        return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state), finite

    def apply(
        self, state: LearnerState, estimates: Sequence[tuple[lopt.Theta, int]]
    ) -> tuple[LearnerState, dict[str, float]]:
        """``estimates``: ``(grad, version of theta it was computed at)`` pairs."""
        version = int(state.version)
        fresh = [g for g, v in estimates if version - v <= self.config.max_staleness]
        metrics = {
            "used": len(fresh),
            "stale": len(estimates) - len(fresh),
            "staleness": max((version - v for _, v in estimates), default=0),
            "skipped_nonfinite": 0,
        }
        if not fresh:
            return state, metrics
        grad = jax.tree.map(lambda *gs: sum(gs) / len(gs), *fresh)
        state, finite = self._update(state, grad)
        metrics["skipped_nonfinite"] = int(not finite)
        return state, metrics


def initial_theta(lo: lopt.LearnedOptimizer, seed: int) -> lopt.Theta:
    """The meta-parameters a run with ``seed`` starts ``lo`` from."""
    return lo.init(jax.random.fold_in(jax.random.key(seed), 0))
