"""Benchmark metrics over loss curves (numpy; NaN and inf count as a diverged, worst loss).

Curves have time on the last axis. A *tuned curve* is the best a tuned baseline reaches by
each budget, made monotone (``monotone``, a least-squares non-increasing fit): for a
constant-rate optimizer the best configuration at every step of one long run; for a
scheduled one the best configuration of each run whose schedule spans that budget. (A
running minimum instead reads every noise dip as progress: docs/benchmarking.md.) The speedup of a candidate inverts it
(Adam-speedup protocol):

    speedup = (steps the tuned baseline needs to reach the candidate's final loss)
              ÷ (the candidate's steps)

with the steps interpolated linearly between the budgets recorded. Beyond the recorded
budgets it is a bound: ``">="`` when the baseline never gets there (at least its largest
budget ÷ the candidate's steps), ``"<="`` when it is there already at its smallest budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import scipy.optimize
import scipy.stats


def finite_or_inf(x: np.ndarray) -> np.ndarray:
    """``x`` with NaN (diverged) replaced by +inf, so minima never pick a diverged run."""
    return np.where(np.isnan(x), np.inf, x)


def ema(x: np.ndarray, decay: float) -> np.ndarray:
    """Bias-corrected exponential moving average along the last axis."""
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    acc, norm = np.zeros(x.shape[:-1]), 0.0
    for t in range(x.shape[-1]):
        acc = decay * acc + (1 - decay) * x[..., t]
        norm = decay * norm + (1 - decay)
        out[..., t] = acc / norm
    return out


def running_min(x: np.ndarray) -> np.ndarray:
    return np.minimum.accumulate(finite_or_inf(np.asarray(x, np.float64)), axis=-1)


def monotone(x: np.ndarray) -> np.ndarray:
    """The least-squares non-increasing fit of the 1-D curve ``x`` (isotonic regression,
    ``scipy.optimize.isotonic_regression``) over its finite values; after the first
    non-finite value (a divergence) it is inf."""
    x = finite_or_inf(np.asarray(x, np.float64))
    bad = np.flatnonzero(~np.isfinite(x))
    end = bad[0] if bad.size else len(x)
    out = np.full(len(x), np.inf)
    if end:
        out[:end] = scipy.optimize.isotonic_regression(x[:end], increasing=False).x
    return out


def tuned_curve(curves: np.ndarray) -> np.ndarray:
    """``curves[K, T]`` → ``[T]``: the best configuration at each step, made monotone."""
    return monotone(np.min(finite_or_inf(curves), axis=0))


def steps_to_reach(curve: np.ndarray, steps: np.ndarray, target: float) -> float:
    """The first step at which the monotone ``curve`` (recorded at ``steps``) is ``<= target``,
    interpolated linearly between records; ``inf`` if it never is."""
    curve = running_min(curve)
    hit = np.flatnonzero(curve <= target)
    if not hit.size:
        return np.inf
    i = hit[0]
    if i == 0 or not np.isfinite(curve[i - 1]):
        return float(steps[i])
    frac = (curve[i - 1] - target) / (curve[i - 1] - curve[i])
    return float(steps[i - 1] + frac * (steps[i] - steps[i - 1]))


class Speedup(NamedTuple):
    value: float
    bound: str  # "": exact; ">=": a lower bound; "<=": an upper bound (see the module doc)


def speedup(
    candidate_final: float, baseline: np.ndarray, steps: np.ndarray, candidate_steps: int
) -> Speedup:
    """See the module docstring; ``baseline`` is a tuned curve recorded at ``steps``."""
    if not np.isfinite(candidate_final):
        return Speedup(0.0, "")  # the candidate diverged: no loss worth reaching
    needed = steps_to_reach(baseline, steps, candidate_final)
    if np.isinf(needed):
        return Speedup(float(steps[-1]) / candidate_steps, ">=")
    return Speedup(needed / candidate_steps, "<=" if needed <= steps[0] else "")


OUTCOMES = ("won", "tied", "lost")


def outcome(candidate: float, baseline: float, margin: float = 0.01, se: float = 0.0) -> str:
    """``"won"`` if the candidate's (non-negative) loss is below ``(1 − margin)`` × the
    baseline's and below it by more than ``2·se`` (the standard error of the difference,
    ``standard_error``), ``"lost"`` if above by both, else ``"tied"``; diverged is worst."""
    candidate, baseline = finite_or_inf(np.float64(candidate)), finite_or_inf(np.float64(baseline))
    if candidate == baseline:  # both diverged, or equal
        return "tied"
    if not np.isfinite(candidate + baseline):  # one diverged: that is not noise
        se = 0.0
    if candidate < (1 - margin) * baseline and baseline - candidate > 2 * se:
        return "won"
    if candidate > (1 + margin) * baseline and candidate - baseline > 2 * se:
        return "lost"
    return "tied"


def standard_error(a: np.ndarray, b: np.ndarray) -> float:
    """The standard error of ``mean(a) − mean(b)`` from per-seed values of two optimizers,
    treated as independent samples (Welch): ``√(var(a)/n_a + var(b)/n_b)`` with unbiased
    variances. Shared seeds correlate the two, so this overstates the noise: ties err on the
    safe side. A side with one value, or a non-finite one, adds nothing (with one seed each
    the margin alone decides)."""
    total = 0.0
    for x in (np.asarray(a, np.float64), np.asarray(b, np.float64)):
        if x.size > 1 and np.all(np.isfinite(x)):
            total += np.var(x, ddof=1) / x.size
    return float(np.sqrt(total))


def normalized_loss(loss: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """``loss / initial``: 1 is no progress, 0 a perfect fit; diverged runs are inf."""
    return finite_or_inf(np.asarray(loss, np.float64)) / np.asarray(initial, np.float64)


def iqm(x: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of the values."""
    return float(scipy.stats.trim_mean(np.asarray(x, np.float64), 0.25))


class Interval(NamedTuple):
    estimate: float
    low: float
    high: float


def bootstrap(
    x: np.ndarray,
    statistic: Callable[[np.ndarray], float] = iqm,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """``statistic(x)`` and its percentile-bootstrap interval over tasks (``scipy.stats``)."""
    x = np.asarray(x, np.float64)
    if x.size < 2 or np.all(x == x[0]):
        value = statistic(x)
        return Interval(value, value, value)
    res = scipy.stats.bootstrap(
        (x,),
        lambda s, axis: np.apply_along_axis(statistic, axis, s),
        confidence_level=level,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return Interval(
        statistic(x), float(res.confidence_interval.low), float(res.confidence_interval.high)
    )
