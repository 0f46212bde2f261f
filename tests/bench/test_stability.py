"""The 4× ÷ 1× table from two compare reports; the trace of one long run."""

import jax
import optax
import pytest

import lopt
import tasks
from bench.__main__ import main
from bench.lab.studies import stability, trace


def test_ratios_per_task_and_optimizer_with_diverged_runs_as_inf(report_of):
    one = report_of({"a": {"adam": 2.0, "mine": 1.0}, "b": {"adam": 4.0, "mine": 1.0}})
    four = report_of({"a": {"adam": 1.0, "mine": 1.5}, "b": {"adam": 3.0, "mine": None}})
    assert stability.ratios(one, four) == {
        "adam": {"a": 0.5, "b": 0.75},
        "mine": {"a": 1.5, "b": float("inf")},
    }
    text = stability.markdown(one, four)
    assert "| a | 0.50 | 1.50 |" in text and "| median | 0.62 | inf |" in text
    assert "| worse at 4× | 0/2 | 2/2 |" in text


def test_reports_that_cannot_be_compared(report_of):
    with pytest.raises(ValueError, match="different metrics"):
        stability.ratios(report_of({"a": {"x": 1.0}}), report_of({"a": {"x": 1.0}}, "valid"))
    with pytest.raises(ValueError, match="no task in common"):
        stability.ratios(report_of({"a": {"x": 1.0}}), report_of({"b": {"x": 1.0}}))


def test_trace_follows_the_weight_matrices_of_one_run():
    task = tasks.get("mlp-digits")
    sgd = optax.sgd(0.1)
    growing = optax.chain(optax.add_decayed_weights(-0.5), sgd)  # a step along +p
    plain, grown = (trace.trace(task, tx, 40, points=4) for tx in (sgd, growing))
    assert [r.step for r in plain] == [10, 20, 30, 40]
    assert plain[-1].loss < plain[0].loss  # SGD learns
    sizes = [r.max_matrix_rms for r in grown]
    assert sizes == sorted(sizes) and sizes[-1] > 1.5 * plain[-1].max_matrix_rms
    with pytest.raises(ValueError, match="multiple of points"):
        trace.trace(task, sgd, 45, points=4)


def test_trace_cli_prints_the_table_with_fields_changed_and_rejects_a_baseline(tmp_path, capsys):
    lo = lopt.MLPLOpt.bare(hidden=(2,))
    path = str(lopt.save(tmp_path / "o.lopt", lo, lo.init(jax.random.key(0))))
    run = ["trace", "--task", "mlp-digits", "--steps", "10"]
    assert main([*run, "--optimizer", path, "--set", "no_growth=true"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| step | mean loss | largest weight-matrix RMS |" and len(table) == 12
    assert main([*run, "--optimizer", path, "--set", "growth=off"]) == 2
    assert "expected FIELD=VALUE with FIELD one of" in capsys.readouterr().err
    # values are read as config overrides are: 3e-2 is a number (YAML 1.2), not a string
    assert main([*run, "--optimizer", path, "--set", "step_scale=3e-2"]) == 0
    capsys.readouterr()
    assert main([*run, "--optimizer", path, "--set", "step_scale=[1,"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --set step_scale=[1,: not valid YAML")
    assert main([*run, "--optimizer", "adam"]) == 2
    assert "hyperparameters to tune" in capsys.readouterr().err
