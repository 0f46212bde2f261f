"""``python -m bench perf steps``: per-task time per step against a reference in one run."""

import math

from bench.lab.perf.benchmarking import bench_steps


def test_steps_rows_per_task_and_optimizer_with_the_reference_at_one():
    rows = bench_steps(
        "smoke", ["adam-default"], reference="muon-cosine-default", steps=5, rounds=2
    )
    assert [(r["task"], r["optimizer"]) for r in rows] == [
        (task, name)
        for task in ("quadratic", "logreg-digits")
        for name in ("muon-cosine-default", "adam-default")
    ]
    for r in rows:
        assert r["reference"] == "muon-cosine-default"
        assert math.isfinite(r["ratio"]) and r["ratio"] > 0 and r["ms_per_step"] > 0
        if r["optimizer"] == "muon-cosine-default":
            assert r["ratio"] == 1.0
