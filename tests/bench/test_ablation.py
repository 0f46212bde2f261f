"""``bench ablation`` reads each candidate's outcomes out of a stored comparison."""

import pathlib

import pytest

from bench.__main__ import main
from bench.results import BEST, load
from bench.studies import ablation

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
