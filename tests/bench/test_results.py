"""``results.json`` read into typed records and written back unchanged; files that are not
one are named in the error."""

import json
import math
import pathlib

import pytest

from bench import results

DOCS = pathlib.Path(__file__).parents[2] / "docs" / "benchmarks"
STORED = sorted(DOCS.glob("*/results.json"))
# What reports made before a field existed lack, read back at its default.
OLDER = {"workers": None, "tuning_free": [], "self_check": []}


@pytest.mark.parametrize("path", STORED, ids=[p.parent.name for p in STORED])
def test_stored_reports_read_back_to_the_same_json(path):
    d = json.loads(path.read_text())
    report = results.load(path)
    assert report.to_json() == {**OLDER, **d}
    c, b = report.candidates[0], report.comparisons[-1]
    assert report.summary[c][b].won == d["summary"][c][b]["won"]
    task = next(iter(report.tasks.values()))
    assert all(
        isinstance(v, results.Versus) for r in task.optimizers.values() for v in r.vs.values()
    )


def test_null_numbers_read_as_nan_and_write_as_null(tmp_path):
    d = json.loads(STORED[0].read_text())
    name, task = next(iter(d["tasks"].items()))
    opt = next(iter(task["optimizers"]))
    task["optimizers"][opt]["final_train"] = None  # a diverged run
    task["optimizers"][opt]["train_curve"][-1] = None
    report = results.Results.from_json(d)
    record = report.tasks[name].optimizers[opt]
    assert math.isnan(record.final("train")) and math.isnan(record.train_curve[-1])
    report.save(tmp_path / "results.json")
    assert json.loads((tmp_path / "results.json").read_text()) == {**OLDER, **d}


def test_a_file_that_is_not_a_report_is_named(tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text('{"suite": "smoke"}')
    with pytest.raises(ValueError, match="results.json is not the results.json of bench compare"):
        results.load(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not the results.json"):
        results.load(bad)
