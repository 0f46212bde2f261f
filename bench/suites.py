"""Benchmark suites: named lists of tasks with a step budget each.

``python -m bench.suites`` prints every built-in suite's tasks as the Markdown table in
``docs/benchmarks/suites.md`` (a test checks that the two agree).

- ``smoke``: two tiny tasks, for tests.
- ``indist``: ten members of the ``image-mlp`` family (what the demo optimizer is
  meta-trained on), drawn with fixed keys the meta-training runs do not use.
- ``heldout``: ten tasks outside that family: other architectures (conv, autoencoder,
  linear, a deep narrow GELU MLP, transformer and LSTM language models), noisy regression
  (a shallow and a deep tanh MLP) and noisy labels.
- ``<suite>-4x``: the same tasks at 4× the step budget, to see behaviour beyond the
  meta-training horizon.

Both suites are chosen so that they do not saturate: on every task tuned Adam's final
smoothed train loss stays above 5% of the loss at initialization at the suite's budget (the
table and the command that measures it are in ``docs/benchmarks``). A task that a tuned
baseline fits to ~0 cannot tell optimizers apart: both losses are 0 for any practical
purpose. That is why ``indist`` keeps only the family's MNIST-1D members (its digits members
reach 0.01–3% of their initial loss in 500 steps), and ``heldout`` uses noisy regression,
noisy labels and MNIST-1D where the zoo's digits logistic regression and noiseless
regression reach 1% and 3.5%. A task whose loss is flat for most of the budget cannot give
a speedup either (the noisy quadratic at batch size 1), so none is included
(``docs/benchmarks/suites.md`` has the measurements).
"""

from __future__ import annotations

import dataclasses
import functools
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


def members(
    family: str, count: int, keep=None, num_steps: int = 500, eval_every: int = 25
) -> list[Entry]:
    """The first ``count`` members drawn with keys 10 000, 10 001, … (keys meta-training
    never draws) whose structure ``keep(cfg)`` accepts (all by default), named
    ``<family>#<key − 10 000>``."""
    fam, entries = tasks.family(family), []
    for index in range(10_000):
        cfg = fam.sample(jax.random.key(10_000 + index))
        if keep is None or keep(cfg):
            task = functools.partial(fam.task, cfg)
            entries.append(Entry(f"{family}#{index}", task, num_steps, eval_every))
        if len(entries) == count:
            return entries
    raise ValueError(f"{family}: fewer than {count} members pass the filter")


def _smoke():
    return [_fixed("quadratic", 40, 10), _fixed("logreg-digits", 40, 10)]


def _indist():
    return members("image-mlp", 10, lambda cfg: cfg.dataset == "mnist1d")


def _heldout():
    return [
        _fixed(name, 500, 25)
        for name in (
            "conv-digits",
            "autoencoder-digits",
            "logreg-mnist1d",
            "deepmlp-mnist1d",
            "mlp-digits-noisy",
            "mlp-blobs",
            "regression-noisy",
            "deepmlp-regression",
            "transformer-pydoc",
            "charlstm-pydoc",
        )
    ]


_BASE = {"smoke": _smoke, "indist": _indist, "heldout": _heldout}
HORIZON_FACTOR = 4
SUITES = sorted([*_BASE, *(f"{name}-{HORIZON_FACTOR}x" for name in _BASE)])


def get(name: str) -> list[Entry]:
    """The entries of suite ``name``: one of ``SUITES``, or an import path
    ``package.module:attribute`` to a list of ``Entry`` or a function of no arguments
    returning one."""
    if tasks.is_import_path(name):
        entries = tasks.from_import_path(name, "suite")
        entries = entries() if callable(entries) else entries
        if not (
            isinstance(entries, list | tuple)
            and entries
            and all(isinstance(e, Entry) for e in entries)
        ):
            raise ValueError(f"suite {name!r} must be a non-empty list of bench.suites.Entry")
        return list(entries)
    base, _, factor = name.partition("-")
    if base not in _BASE or (factor and factor != f"{HORIZON_FACTOR}x"):
        raise ValueError(
            f"unknown suite {name!r}; choose from {SUITES} or give an import path "
            "package.module:attribute"
        )
    entries = _BASE[base]()
    return [e.scaled(HORIZON_FACTOR) for e in entries] if factor else entries


MARKDOWN_HEADER = "| suite | tasks | steps | evaluated every |\n| --- | --- | --- | --- |"


def markdown() -> str:
    """A Markdown table of the built-in base suites (the ``-4x`` ones: 4× the steps)."""
    rows = [MARKDOWN_HEADER]
    for name, make in _BASE.items():
        entries = make()
        ((steps, every),) = {(e.num_steps, e.eval_every) for e in entries}  # one per suite
        names = ", ".join(f"`{e.name}`" for e in entries)
        rows.append(f"| `{name}` | {names} | {steps} | {every} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
