"""Benchmark suites: named lists of tasks with a step budget each.

- ``smoke``: two tiny tasks, for tests.
- ``indist``: members of the ``image-mlp`` family (what the shipped and demo optimizers are
  meta-trained on), drawn with fixed keys the meta-training runs do not use.
- ``heldout``: tasks outside that family: other architectures (conv, autoencoder, linear,
  transformer and LSTM language models) and losses (regression).
- ``<suite>-4x``: the same tasks at 4× the step budget, to see behaviour beyond the
  meta-training horizon.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax

import tasks


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    make: Callable[[], tasks.Task]  # built lazily: data sets load on first use
    num_steps: int
    eval_every: int

    def scaled(self, factor: int) -> Entry:
        return dataclasses.replace(
            self, num_steps=self.num_steps * factor, eval_every=self.eval_every * factor
        )


def _fixed(name: str, num_steps: int, eval_every: int) -> Entry:
    return Entry(name, lambda: tasks.get(name), num_steps, eval_every)


def _member(family: str, index: int, num_steps: int, eval_every: int) -> Entry:
    fam = tasks.family(family)
    cfg = fam.sample(jax.random.key(10_000 + index))  # keys meta-training never draws
    return Entry(f"{family}#{index}", lambda: fam.task(cfg), num_steps, eval_every)


def _smoke():
    return [_fixed("quadratic", 40, 10), _fixed("logreg-digits", 40, 10)]


def _indist():
    return [_member("image-mlp", i, 500, 25) for i in range(6)]


def _heldout():
    return [
        _fixed(name, 500, 25)
        for name in (
            "conv-digits",
            "autoencoder-digits",
            "logreg-digits",
            "regression-synthetic",
            "transformer-pydoc",
            "charlstm-pydoc",
        )
    ]


_BASE = {"smoke": _smoke, "indist": _indist, "heldout": _heldout}
HORIZON_FACTOR = 4
SUITES = sorted([*_BASE, *(f"{name}-{HORIZON_FACTOR}x" for name in _BASE)])


def get(name: str) -> list[Entry]:
    """The entries of suite ``name`` (one of ``SUITES``)."""
    base, _, factor = name.partition("-")
    if base not in _BASE or (factor and factor != f"{HORIZON_FACTOR}x"):
        raise ValueError(f"unknown suite {name!r}; choose from {SUITES}")
    entries = _BASE[base]()
    return [e.scaled(HORIZON_FACTOR) for e in entries] if factor else entries
