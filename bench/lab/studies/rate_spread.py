"""Members of the meta-training families, as a suite: where each one's tuned Muon-cosine rate
lies against Muon's usual 0.02 says which way a training period pushes a learned rate.

    python -m bench compare --optimizer muon-cosine-default \\
        --suite bench.lab.studies.rate_spread:members --baselines muon-cosine --tuning-free none \\
        --seeds 1 --lr-range 1e-3 1 --max-speedup 1 --workers 2 --out runs/cmp/rate-spread

Members are drawn with the suites' keys (10 000 + i), which meta-training never draws.

    python -m bench.lab.studies.rate_spread runs/cmp/rate-spread/results.json \
        docs/benchmarks/learned-muon-wide-full-heldout/results.json

tests whether a task's structure predicts its rate (:func:`structure_fit`): the tuned
Muon-cosine rate ÷ 0.02 of the training families' members (the first report) fitted as
``log2 factor = a + b · log2 (number of orthogonalized matrices)``, and that fit's
prediction for the tasks of the second report against their tuned rates.
"""

from __future__ import annotations

import sys

import jax
import numpy as np

from bench import results, suites
from bench.suites import members as _members

FAMILIES = ("image-mlp", "quadratic", "deep-mlp", "markov-lm")


def members(count: int = 5):
    """The first ``count`` members of each of ``FAMILIES``, 500 steps each."""
    return [entry for family in FAMILIES for entry in _members(family, count)]


def _matrices(entry: suites.Entry) -> int:
    """How many of the task's parameters Muon orthogonalizes (non-empty 2-D leaves)."""
    params = entry.make().init(jax.random.key(0))
    return sum(x.ndim == 2 and x.size > 0 for x in jax.tree.leaves(params))


def _factors(report: results.Results, entries: dict[str, suites.Entry], baseline: str):
    """``{task: (matrices, tuned rate ÷ 0.02)}`` for the tasks of ``report`` with matrices."""
    out = {}
    for name, task in report.tasks.items():
        count = _matrices(entries[name])
        if count:
            out[name] = (count, task.optimizers[baseline].chosen["learning_rate"] / 0.02)
    return out


def structure_fit(train: results.Results, held: results.Results, baseline: str = "muon-cosine"):
    """Fits ``log2 factor = a + b · log2 matrices`` on ``train`` (a report of ``members()``,
    quadratics excluded: no matrix) and prints the fit, its correlation, and per task of
    ``held`` (a ``heldout`` report) the tuned and predicted factors; returns the correlation
    of the two on ``held``."""
    fitted = _factors(train, {e.name: e for e in members()}, baseline)
    x, y = np.log2(list(fitted.values())).T
    b, a = np.polyfit(x, y, 1)
    print(
        f"fit on {len(x)} training members: log2 factor = {a:.2f} {b:+.2f} log2 matrices "
        f"(correlation {np.corrcoef(x, y)[0, 1]:.2f})"
    )
    tested = _factors(held, {e.name: e for e in suites.get("heldout")}, baseline)
    predicted, tuned = [], []
    for name, (count, factor) in tested.items():
        predicted.append(a + b * np.log2(count))
        tuned.append(np.log2(factor))
        print(
            f"{name:>24}  {count:3d} matrices  tuned ×{factor:5.2f}  predicted ×{2 ** predicted[-1]:5.2f}"
        )
    corr = float(np.corrcoef(predicted, tuned)[0, 1])
    print(f"correlation of predicted and tuned log factors on {len(tested)} tasks: {corr:.2f}")
    return corr


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m bench.lab.studies.rate_spread TRAIN_RESULTS HELDOUT_RESULTS")
    structure_fit(results.load(sys.argv[1]), results.load(sys.argv[2]))
