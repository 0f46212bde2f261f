"""``bench ablation`` reads each candidate's outcomes out of a stored comparison."""

import pathlib

import pytest

from bench.__main__ import main
from bench.lab.studies import ablation
from bench.results import BEST, load

STORED = pathlib.Path(__file__).parents[2] / "docs/benchmarks/learned-muon-heldout/results.json"


def test_rows_agree_with_the_comparisons_own_summary(capsys):
    results = load(STORED)
    for c in results.candidates:
        for against in ("muon-cosine", BEST):
            summary = results.summary[c][against]
            assert ablation.counts(results, c, against, "train") == (
                summary.train.won,
                summary.train.tied,
                summary.train.lost,
            )
            assert ablation.counts(results, c, against, "valid") == (
                summary.valid.won,
                summary.valid.tied,
                summary.valid.lost,
            )
    assert main(["ablation", str(STORED), "--against", "muon-cosine-default,best tuned"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 + len(results.candidates)
    assert lines[2].startswith("| b-e0/optimizer | 2/6/2 · 1/7/2 | 0/5/5 · 2/5/3 |")


def test_an_unknown_comparison_is_named(capsys):
    with pytest.raises(SystemExit):
        main(["ablation", str(STORED), "--against", "muon-cosine-defualt"])
    assert "['muon-cosine-defualt'] were not in this comparison" in capsys.readouterr().err


def test_the_per_task_table_marks_each_candidates_outcome(capsys):
    results = load(STORED)
    argv = ["ablation", str(STORED), "--against", "muon-cosine-default", "--per-task"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = lines[lines.index("") + 3 :]
    assert len(rows) == len(results.tasks)
    task = "deepmlp-mnist1d"
    (row,) = [r for r in rows if r.startswith(f"| {task} |")]
    cells = row.strip("| ").split(" | ")[1:]
    record = results.tasks[task].optimizers
    assert cells[0] == f"{record['muon-cosine-default'].final_train:.4g}"
    for cell, c in zip(cells[1:], results.candidates, strict=True):
        outcome = record[c].vs["muon-cosine-default"].train_outcome
        assert cell.endswith(
            {"won": " +", "lost": " −"}.get(outcome, f"{record[c].final_train:.4g}")
        )
    with pytest.raises(SystemExit):
        main(["ablation", str(STORED), "--against", "best tuned", "--per-task"])
