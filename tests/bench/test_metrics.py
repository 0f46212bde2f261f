"""Benchmark metrics on synthetic curves with known answers."""

import numpy as np
import pytest

from bench import metrics


def test_speedup_inverts_the_tuned_curve():
    steps = np.arange(1, 101)
    baseline = 1.0 / steps  # reaches loss 1/s at step s
    # A candidate that ends (after 25 steps) at the loss the baseline reaches at step 50.
    s = metrics.speedup(1.0 / 50, baseline, steps, candidate_steps=25)
    assert s == metrics.Speedup(pytest.approx(2.0), "")
    # Half way between two records is interpolated linearly.
    assert metrics.steps_to_reach(baseline, steps, (1 / 50 + 1 / 51) / 2) == pytest.approx(50.5)
    # Slower than the baseline: a speedup below 1.
    assert metrics.speedup(1.0 / 10, baseline, steps, 100).value == pytest.approx(0.1)
    # Better than the baseline ever gets: a lower bound (its budget / the candidate's steps).
    assert metrics.speedup(1e-3, baseline, steps, 50) == metrics.Speedup(2.0, ">=")
    # Worse than the baseline at its smallest budget: an upper bound.
    budgets, tuned = np.array([25.0, 50, 100, 200]), np.array([0.4, 0.2, 0.1, 0.05])
    assert metrics.speedup(0.5, tuned, budgets, 100) == metrics.Speedup(0.25, "<=")
    # Between two budgets of a scheduled baseline: linear interpolation.
    assert metrics.speedup(0.075, tuned, budgets, 100) == metrics.Speedup(1.5, "")
    # A diverged candidate gets no speedup.
    assert metrics.speedup(np.nan, baseline, steps, 50) == metrics.Speedup(0.0, "")


def test_outcome_needs_a_margin_to_win_or_lose():
    assert metrics.outcome(0.98, 1.0) == "won"
    assert metrics.outcome(0.995, 1.0) == "tied" and metrics.outcome(1.005, 1.0) == "tied"
    assert metrics.outcome(1.02, 1.0) == "lost"
    assert metrics.outcome(0.995, 1.0, margin=0.0) == "won"
    assert metrics.outcome(np.nan, 1.0) == "lost" and metrics.outcome(1.0, np.inf) == "won"
    assert metrics.outcome(np.nan, np.nan) == "tied"


def test_a_difference_inside_two_standard_errors_is_a_tie():
    """Seeds 1.00 ± 0.05 against 1.10 ± 0.05 (3 each): the difference 0.10 is 10% (beyond the
    1% margin) and its standard error √(0.05²/3 + 0.05²/3) = 0.0408, so 2 SE = 0.0816: lost.
    With the spread doubled, 2 SE = 0.163 > 0.10: tied."""
    a, b = np.array([0.95, 1.0, 1.05]), np.array([1.05, 1.10, 1.15])
    se = metrics.standard_error(b, a)
    assert se == pytest.approx(np.sqrt(2 * 0.05**2 / 3))
    assert metrics.outcome(b.mean(), a.mean(), se=se) == "lost"
    assert metrics.outcome(a.mean(), b.mean(), se=se) == "won"
    wide = np.array([0.9, 1.0, 1.1]), np.array([1.0, 1.1, 1.2])
    se = metrics.standard_error(*wide)
    assert se == pytest.approx(np.sqrt(2 * 0.1**2 / 3))
    assert metrics.outcome(wide[0].mean(), wide[1].mean(), se=se) == "tied"
    # Both rules must hold: 5% apart but 0.5 SE is a tie; 0.5% apart, SE 0 is a tie too.
    assert metrics.outcome(0.95, 1.0, se=0.1) == "tied"
    assert metrics.outcome(0.995, 1.0, se=0.0) == "tied"
    # One seed each: no standard error, the margin alone decides. Diverged seeds add none.
    assert metrics.standard_error([1.0], [2.0]) == 0.0
    assert metrics.standard_error([1.0, np.nan], [2.0, 2.2]) == pytest.approx(0.1)
    assert metrics.outcome(np.inf, 1.0, se=np.inf) == "lost"  # divergence is not noise


def test_tuned_curve_is_the_monotone_fit_of_the_best_over_the_sweep_and_ignores_divergence():
    curves = np.array([[3.0, 2.0, 2.5, 1.0], [2.5, np.nan, np.nan, np.nan], [4.0, 1.5, 3.0, 3.0]])
    # best per step: 2.5, 1.5, 2.5, 1.0; the bump is averaged away, not taken as progress.
    np.testing.assert_allclose(metrics.tuned_curve(curves), [2.5, 2.0, 2.0, 1.0])
    np.testing.assert_array_equal(metrics.monotone([3.0, 2.0, np.nan, 1.0]), [3, 2, np.inf, np.inf])
    # Noise around a flat curve is not progress: the fit is flat, so the same curve read
    # at its end needs (nearly) all of its steps.
    flat = 1.0 + 0.01 * np.random.default_rng(0).standard_normal(400)
    fit = metrics.monotone(flat)
    steps = np.arange(1, 401)
    assert metrics.steps_to_reach(metrics.running_min(flat), steps, fit[-1]) < 50
    assert metrics.steps_to_reach(fit, steps, fit[-1]) > 200


def test_normalized_loss_iqm_and_bootstrap():
    assert metrics.normalized_loss(0.5, 2.0) == 0.25
    assert metrics.normalized_loss(np.nan, 2.0) == np.inf
    x = np.array([100.0, 1.0, 2.0, 3.0, 4.0, -100.0, 2.5, 3.5])
    assert metrics.iqm(x) == pytest.approx(np.mean([2.0, 2.5, 3.0, 3.5]))  # middle 50%
    ci = metrics.bootstrap(np.arange(20.0), np.mean)
    assert ci.estimate == pytest.approx(9.5) and ci.low < 9.5 < ci.high
    sem = np.std(np.arange(20.0)) / np.sqrt(20)
    assert (ci.high - ci.low) / 2 == pytest.approx(1.96 * sem, rel=0.2)
    assert metrics.bootstrap(np.ones(5)) == metrics.Interval(1.0, 1.0, 1.0)


def test_ema_is_bias_corrected():
    np.testing.assert_allclose(metrics.ema(np.full((2, 5), 3.0), 0.9), 3.0)
    np.testing.assert_allclose(metrics.ema(np.array([0.0, 1.0]), 0.5), [0.0, 2 / 3])
