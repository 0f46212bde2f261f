"""Tuning protocols for the baselines (Choi et al. 2019; the VeLOdrome Adam-speedup protocol).

- ``lr-grid``: a half-decade learning-rate grid plus the default learning rate (other
  hyperparameters at their defaults) × seeds, then refined around its best point
  (``refine``: quarter-decade neighbours while the best moves, then eighth-decade ones); the
  best learning rate is chosen by the final validation loss or by the smoothed final train
  loss (mean over seeds).
- ``random-search``: the defaults and ``trials − 1`` Halton points over all of an optimizer's
  hyperparameters on log scales (Choi et al. 2019), chosen the same way; quality as a function
  of the trial budget is estimated by bootstrapping subsets of the trials.

Both searches hold the default point, so a tuned baseline is never worse than its default by
the deciding metric at the tuned budget. An untuned baseline (``Baseline.tuned`` false) runs
its defaults alone under either protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import scipy.stats.qmc

from bench import metrics
from bench.baselines import Baseline
from bench.runner import Curves, concat

PROTOCOLS = ("lr-grid", "random-search")
SELECT = ("valid", "train")
# Smoothing of the minibatch train loss (an EMA with a 50-step time constant) before it is
# read, so that the noisy curve of a large learning rate does not dip below the tuned one by
# chance (docs/benchmarking.md, "Why the metrics are as they are").
TRAIN_EMA = 0.98


def lr_grid(low: float = 10**-6.5, high: float = 1.0, per_decade: int = 2) -> np.ndarray:
    """Learning rates ``10^(k / per_decade)`` from ``low`` to ``high`` inclusive (the default
    is 14 half-decade points, 3.2e-7 … 1)."""
    if not (0 < low <= high < np.inf):
        raise ValueError(f"learning-rate range needs 0 < low <= high, got {low:g} {high:g}")
    lo, hi = np.log10(low) * per_decade, np.log10(high) * per_decade
    grid = 10.0 ** (np.arange(np.ceil(lo - 1e-9), np.floor(hi + 1e-9) + 1) / per_decade)
    if not grid.size:
        raise ValueError(
            f"learning-rate range {low:g}..{high:g} holds no point of the grid "
            f"(10^(k/{per_decade})); widen it"
        )
    return grid.astype(np.float32)


def halton(num: int, dims: int, seed: int = 0) -> np.ndarray:
    """``num`` scrambled Halton points in ``[0, 1)^dims`` (``scipy.stats.qmc``)."""
    return scipy.stats.qmc.Halton(d=dims, scramble=True, rng=np.random.default_rng(seed)).random(
        num
    )


def search_space(baseline: Baseline, protocol: str, trials: int, lr_range=None, seed: int = 0):
    """The configurations ``{name: values[K]}`` that ``protocol`` starts from for ``baseline``
    (``lr-grid`` then refines them: ``refine``). The default point is always among them; an
    untuned baseline has it alone."""
    default = {"learning_rate": np.array([baseline.defaults["learning_rate"]], np.float32)}
    if not baseline.tuned:
        return default
    if protocol == "lr-grid":
        grid = lr_grid(*(baseline.lr_grid or lr_range or ()))
        return {"learning_rate": np.union1d(grid, default["learning_rate"]).astype(np.float32)}
    if protocol == "random-search":
        points = baseline.sample(halton(max(trials - 1, 1), len(baseline.space), seed))
        first = {k: np.array([baseline.defaults[k]], np.float32) for k in baseline.space}
        return {k: np.concatenate([first[k], v])[:trials] for k, v in points.items()}
    raise ValueError(f"unknown protocol {protocol!r}; choose from {list(PROTOCOLS)}")


# Points per decade of the refinement passes after a half-decade grid.
REFINE = (4, 8)


def refine(
    run: Callable[[dict[str, np.ndarray]], Curves],
    space: dict[str, np.ndarray],
    score: Callable[[Curves], np.ndarray],
    passes: Sequence[int] = REFINE,
    max_moves: int = 8,
) -> tuple[dict[str, np.ndarray], Curves]:
    """Runs the learning rates of ``space`` (``run(space) -> Curves``), then refines around
    the best by ``score`` (lower is better): for each ``n`` of ``passes`` it runs the best
    point's neighbours at ``10^(±1/n)`` not yet tried, again from the new best while the best
    moves (at most ``max_moves`` times per pass). Each new point runs by itself, so every
    refinement reuses one compiled program, the one that also times the chosen configuration
    alone (``bench.compare``). Returns every learning rate tried and its curves, in the order
    run (the grid first)."""
    lrs = np.asarray(space["learning_rate"], np.float32)
    curves = run({"learning_rate": lrs})
    for per_decade in passes:
        factor = 10.0 ** (1.0 / per_decade)
        for _ in range(max_moves):
            best = lrs[int(np.argmin(score(curves)))]
            new = [
                x
                for x in (best / factor, best * factor)
                if not np.any(np.isclose(lrs, x, rtol=1e-3))
            ]
            if not new:
                break
            for x in np.array(new, np.float32):  # one by one: a single configuration's
                curves = concat(curves, run({"learning_rate": x[None]}))  # program is reused
                lrs = np.append(lrs, x)
            if lrs[int(np.argmin(score(curves)))] == best:  # the best did not move
                break
    return {"learning_rate": lrs}, curves


def metric(curves: Curves, select: str) -> tuple[np.ndarray, np.ndarray]:
    """The deciding metric of every configuration, averaged over seeds: ``(steps[N],
    values[K, N])``; the EMA-smoothed minibatch train loss at every step (``"train"``) or the
    validation loss at the evaluation steps (``"valid"``). Diverged values are inf."""
    if select == "train":
        values = metrics.ema(curves.train, TRAIN_EMA)
        steps = np.arange(1, curves.train.shape[-1] + 1)
    elif select == "valid":
        values, steps = curves.valid, curves.eval_steps
    else:
        raise ValueError(f"unknown selection {select!r}; choose from {list(SELECT)}")
    return steps, metrics.finite_or_inf(np.mean(values, axis=1))


def scores(curves: Curves, select: str) -> np.ndarray:
    """``[K]``: the selection criterion per configuration (lower is better, diverged = inf):
    the final validation loss or the EMA-smoothed final train loss, averaged over seeds."""
    return metric(curves, select)[1][:, -1]


class Tuned(NamedTuple):
    best: int  # index of the chosen configuration
    scores: np.ndarray  # [K]


def choose(curves: Curves, select: str) -> Tuned:
    s = scores(curves, select)
    return Tuned(int(np.argmin(s)), s)


def budget_curve(
    trial_scores: np.ndarray, budgets: list[int], resamples: int = 1000, seed: int = 0
) -> dict[int, metrics.Interval]:
    """For each budget ``b``: the expected best score of ``b`` trials drawn without
    replacement from the ones run, with a 95% interval over the resamples."""
    rng = np.random.default_rng(seed)
    out = {}
    for b in budgets:
        best = np.array(
            [np.min(rng.choice(trial_scores, size=b, replace=False)) for _ in range(resamples)]
        )
        finite = np.isfinite(best)
        mean = float(np.mean(best[finite])) if finite.all() else np.inf
        low, high = np.quantile(best, [0.025, 0.975], method="nearest")  # inf-safe
        out[b] = metrics.Interval(mean, float(low), float(high))
    return out
