"""`Task` (an inner problem as pure functions plus metadata) and `TaskFamily`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Params = Any  # a pytree of float arrays
Batch = Any  # a pytree of arrays
SPLITS = ("train", "valid", "test")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Task:
    """An inner optimization problem.

    All functions are pure and jit-able; ``batch_fn`` draws from in-memory arrays by random
    index, so a whole training loop (or a population of them under ``vmap``) compiles into one
    XLA program.

    Attributes:
      name: unique, human-readable identifier.
      init_fn: ``key -> params``.
      batch_fn: ``(key, split, batch_size) -> batch``; ``split`` and ``batch_size`` are static.
      loss_fn: ``(params, batch) -> (loss, aux)`` with a scalar loss and a dict of scalar
        diagnostics (e.g. ``{"accuracy": ...}``).
      batch_size: examples per batch.
      init_loss: rough loss at initialization; meta-losses divide by it so that tasks of
        different scales can be mixed.
      num_steps: suggested training budget in steps.
    """

    name: str
    init_fn: Callable[[jax.Array], Params]
    batch_fn: Callable[[jax.Array, str, int], Batch]
    loss_fn: Callable[[Params, Batch], tuple[jax.Array, dict[str, jax.Array]]]
    batch_size: int
    init_loss: float
    num_steps: int

    def __repr__(self) -> str:  # not the dataset its functions close over
        return f"Task({self.name!r})"

    def __post_init__(self):
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueError(
                f"{self.name}: batch_size must be an integer >= 1, got {self.batch_size!r}"
            )
        if not (math.isfinite(self.init_loss) and self.init_loss > 0):
            raise ValueError(
                f"{self.name}: init_loss must be finite and > 0, got {self.init_loss!r}"
            )
        if not (isinstance(self.num_steps, int) and self.num_steps >= 1):
            raise ValueError(
                f"{self.name}: num_steps must be an integer >= 1, got {self.num_steps!r}"
            )

    def init(self, key: jax.Array) -> Params:
        return self.init_fn(key)

    def batch(self, key: jax.Array, split: str = "train") -> Batch:
        check_split(split)
        return self.batch_fn(key, split, self.batch_size)

    def loss(self, params: Params, batch: Batch) -> jax.Array:
        return self.loss_fn(params, batch)[0]

    def loss_and_aux(self, params: Params, batch: Batch) -> tuple[jax.Array, dict[str, jax.Array]]:
        return self.loss_fn(params, batch)

    def replace(self, **changes) -> Task:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def numpy_rng(key: jax.Array) -> np.random.Generator:
    """A numpy generator seeded by a JAX key (typed or raw ``uint32[2]``), for host-side sampling."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.random.default_rng(np.asarray(key, np.uint32).reshape(-1).tolist())


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class TaskFamily:
    """A distribution over tasks.

    ``sample(key)`` draws a structure (a frozen config dataclass: widths, depth, activation,
    dataset, batch size...) on the host; ``task(cfg)`` builds it. Tasks of one structure share
    shapes, so a population of them can be vmapped over init and data keys.

    Attributes:
      name: family name.
      sample_fn: ``numpy.random.Generator -> cfg``.
      task_fn: ``cfg -> Task``.
    """

    name: str
    sample_fn: Callable[[np.random.Generator], Any]
    task_fn: Callable[[Any], Task]

    def sample(self, key: jax.Array) -> Any:
        return self.sample_fn(numpy_rng(key))

    def task(self, cfg: Any) -> Task:
        return self.task_fn(cfg)

    def __repr__(self) -> str:
        return f"TaskFamily({self.name!r})"
