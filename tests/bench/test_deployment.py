"""Deployment-time variants of the shipped optimizer and their table against recorded baselines."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bench.lab.studies import deployment


def _updates(make, num_steps, steps):
    """The update of a 2x3 weight at each step for a constant gradient."""
    tx = make(num_steps)
    params = {"w": jnp.ones((2, 3))}
    state = tx.init(params)
    out = []
    for _ in range(steps):
        u, state = tx.update(params, state, params, value=jnp.float32(1.0))
        out.append(u["w"])
    return np.stack(out)


@pytest.mark.filterwarnings("ignore:mlplopt-mix was meta-trained on runs")  # 8 steps
def test_variants_scale_the_shipped_update():
    v = deployment.variants()
    shipped = _updates(v["shipped"], 8, 8)
    np.testing.assert_allclose(_updates(v["x0.5"], 8, 8), 0.5 * shipped, rtol=1e-6)
    tail = _updates(v["tail"], 8, 8)  # 1 up to step 6, then 1/2: reaching 0 at step 8
    np.testing.assert_allclose(tail[:7], shipped[:7], rtol=1e-6)
    np.testing.assert_allclose(tail[7], 0.5 * shipped[7], rtol=1e-6)
    cosine = _updates(v["cosine"], 8, 8)
    factors = jax.vmap(optax.cosine_decay_schedule(1.0, 8))(jnp.arange(8))
    np.testing.assert_allclose(cosine, factors[:, None, None] * shipped, rtol=1e-5, atol=1e-9)


def test_table_counts_against_each_recorded_baseline_and_the_best(report_of):
    reference = report_of(
        {"a": {"adam": 1.0, "muon": 0.5}, "b": {"adam": 1.0, "muon": 2.0}},
        baselines=["adam", "muon"],
        margin=0.01,
    )
    results = report_of(
        {
            "a": {"adam": 9.0, "shipped": 0.9, "x2": 0.4, "tail": 0.502},
            "b": {"adam": 9.0, "shipped": 1.5, "x2": 3.0, "tail": 1.0},
        }
    )
    lines = deployment.table(reference, results).splitlines()
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in lines}
    # Per task the best baseline is 0.5 and 1.0; the best factor (shipped or x2) 0.4 and 1.5.
    # Columns: vs shipped, vs adam, vs muon, vs best.
    assert rows["shipped"].endswith("| 0 / 2 / 0 | 1 / 0 / 1 | 1 / 0 / 1 | 0 / 0 / 2 |")
    assert rows["tail"].endswith("| 2 / 0 / 0 | 1 / 1 / 0 | 1 / 1 / 0 | 0 / 2 / 0 |")  # 0.502
    assert rows["per-task best"].endswith("| 1 / 1 / 0 | 1 / 0 / 1 | 2 / 0 / 0 | 1 / 0 / 1 |")
    assert "| a | 1 | 0.5 | 0.9 | 0.4 | 0.502 | 0.4 |" in lines
    alone = deployment.table(None, results).splitlines()  # the variants against the shipped one
    assert alone[0] == "| task | shipped | x2 | tail | per-task best |"
    assert "| x2 | 1 / 0 / 1 |" in alone


def test_a_diverged_variant_loses_as_in_the_benchmark(report_of):
    results = report_of({"a": {"adam": 9.0, "shipped": 0.9, "x4": None}})
    rows = {
        r.split(" | ")[0].removeprefix("| "): r
        for r in deployment.table(None, results).splitlines()
    }
    assert rows["x4"].endswith("| 0 / 0 / 1 |")
    assert rows["per-task best"].endswith("| 0 / 1 / 0 |")  # the shipped one, not the NaN
