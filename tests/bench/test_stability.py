"""The 4× ÷ 1× table from two compare reports."""

import pytest

from bench import stability


def _report(finals, select="train"):
    return {
        "selection": select,
        "tasks": {
            task: {"optimizers": {name: {f"final_{select}": v} for name, v in row.items()}}
            for task, row in finals.items()
        },
    }


def test_ratios_per_task_and_optimizer_with_diverged_runs_as_inf():
    one = _report({"a": {"adam": 2.0, "mine": 1.0}, "b": {"adam": 4.0, "mine": 1.0}})
    four = _report({"a": {"adam": 1.0, "mine": 1.5}, "b": {"adam": 3.0, "mine": None}})
    assert stability.ratios(one, four) == {
        "adam": {"a": 0.5, "b": 0.75},
        "mine": {"a": 1.5, "b": float("inf")},
    }
    text = stability.markdown(one, four)
    assert "| a | 0.50 | 1.50 |" in text and "| median | 0.62 | inf |" in text
    assert "| worse at 4× | 0/2 | 2/2 |" in text


def test_reports_that_cannot_be_compared():
    with pytest.raises(ValueError, match="different metrics"):
        stability.ratios(_report({"a": {"x": 1.0}}), _report({"a": {"x": 1.0}}, "valid"))
    with pytest.raises(ValueError, match="no task in common"):
        stability.ratios(_report({"a": {"x": 1.0}}), _report({"b": {"x": 1.0}}))
