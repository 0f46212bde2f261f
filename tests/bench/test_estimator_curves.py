"""The estimators study: each estimator meta-trains until its inner-step budget is spent, and
theta is scored by meta-validation's Validator along the way."""

import math

from bench.lab.studies import estimator_curves


def test_each_estimator_spends_its_budget_and_is_scored_from_the_same_start():
    result = estimator_curves.run(
        "quadratic", budget=1200, names=["NRES", "TruncatedES"], pairs=2, window=5, eval_every=600
    )
    starts = set()
    for name, curve in result["curves"].items():
        points = curve["points"]
        assert points[0]["inner_steps"] == 0 and points[-1]["inner_steps"] >= 1200, name
        assert all(math.isfinite(p["eval_meta_loss"]) for p in points)
        starts.add(points[0]["eval_meta_loss"])
    assert len(starts) == 1  # same theta, same scoring episodes
