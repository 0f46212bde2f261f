"""The `LearnedOptimizer` interface and checks shared by every architecture."""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

Theta = Any  # meta-parameters: a pytree of float32 arrays


@dataclasses.dataclass(frozen=True)
class LearnedOptimizer(abc.ABC):
    """An optimizer architecture: hyperparameters only, immutable.

    ``init(key)`` draws meta-parameters ``theta``; ``as_optax(theta, num_steps)`` turns them
    into the optax transform that meta-training unrolls and users train with -- one code path.
    Subclasses are frozen dataclasses whose fields are JSON-serializable hyperparameters
    (that is how frozen-optimizer files describe them).
    """

    @abc.abstractmethod
    def init(self, key: jax.Array) -> Theta:
        """Meta-parameters for this architecture (a pytree of float32 arrays)."""

    @abc.abstractmethod
    def as_optax(self, theta: Theta, num_steps: int) -> optax.GradientTransformationExtraArgs:
        """The optimizer for a training run of ``num_steps`` steps (the horizon it plans for)."""

    @property
    def name(self) -> str:
        return type(self).__name__

    def hparams(self) -> dict[str, Any]:
        """Hyperparameters as a JSON-serializable dict; ``type(self)(**hparams)`` rebuilds it."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def check_positive(owner: str, **values) -> None:
    for field, v in values.items():
        if not v > 0:
            raise ValueError(f"{owner}.{field} must be > 0, got {v!r}")


def check_rate(owner: str, lr: float) -> None:
    """``lr`` must be a finite number > 0 (``owner.lr`` named otherwise)."""
    if not (isinstance(lr, int | float) and 0 < lr < math.inf):
        raise ValueError(f"{owner}.lr must be a finite number > 0, got {lr!r}")


def check_counts(owner: str, **values) -> None:
    """Each value must be an integer >= 1 (not a bool)."""
    for field, v in values.items():
        if isinstance(v, bool) or not (isinstance(v, int) and v >= 1):
            raise ValueError(f"{owner}.{field} must be an integer >= 1, got {v!r}")


def check_widths(owner: str, **values) -> tuple[int, ...]:
    """Each value must be a sequence of positive integers; returns the (single) one as a tuple."""
    ((field, widths),) = values.items()
    widths = tuple(widths)
    if not all(isinstance(w, int) and w >= 1 for w in widths):
        raise ValueError(f"{owner}.{field} must be positive integers, got {widths!r}")
    return widths


MAX_NUM_STEPS = 2**31 - 1  # the optimizers' step counters are int32


def check_num_steps(num_steps: int | jax.Array) -> None:
    """A Python/NumPy integer must be in ``[1, MAX_NUM_STEPS]``; a JAX integer scalar
    (possibly traced, e.g. one horizon per particle of a vmapped population) is checked for
    dtype and shape only."""
    if isinstance(num_steps, bool) or not jnp.issubdtype(jnp.result_type(num_steps), jnp.integer):
        raise ValueError(f"num_steps (the training horizon) must be an integer, got {num_steps!r}")
    if jnp.ndim(num_steps) != 0:
        raise ValueError(f"num_steps must be a scalar, got shape {jnp.shape(num_steps)}")
    if isinstance(num_steps, int | np.integer) and not 1 <= num_steps <= MAX_NUM_STEPS:
        raise ValueError(
            f"num_steps (the training horizon) must be from 1 to {MAX_NUM_STEPS} (steps are "
            f"counted in int32), got {num_steps!r}"
        )


def check_float_params(tree: Any, what: str = "params") -> None:
    """Raises ``TypeError`` naming every leaf that is not a floating-point array."""
    bad = [
        f"{jax.tree_util.keystr(path)} ({jnp.result_type(leaf)})"
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating)
    ]
    if bad:
        raise TypeError(
            f"learned optimizers update floating-point {what} only; these leaves are not: "
            + ", ".join(bad)
            + ". Exclude them, e.g. with optax.masked or optax.partition."
        )


def require(value: Any, arg: str, owner: str) -> None:
    if value is None:
        hint = {
            "params": "update(grads, state, params, ...)",
            "value": "update(grads, state, params, value=loss)",
        }[arg]
        raise ValueError(f"{owner} needs `{arg}` at every step: call {hint}")
