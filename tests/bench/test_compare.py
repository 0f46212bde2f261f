"""``python -m bench compare``: outputs, a learned optimizer next to a tuned one, and errors."""

import json

import jax
import pytest

import lopt
from bench import ship, suites
from bench.__main__ import main


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    frozen = lopt.save(out / "init.lopt", lopt.MLPLOpt(), lopt.MLPLOpt().init(jax.random.key(0)))
    code = main(
        [
            "compare",
            "--optimizer",
            str(frozen),
            "--optimizer",
            "adam",
            "--suite",
            "smoke",
            "--baselines",
            "adam,sgd",
            "--lr-range",
            "1e-3",
            "1",
            "--seeds",
            "2",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    return out, json.loads((out / "results.json").read_text())


def test_writes_report_json_and_plots(smoke_report):
    out, report = smoke_report
    for name in ("report.md", "results.json", "curves.png", "speedups.png"):
        assert (out / name).stat().st_size > 0, name
    assert report["command"].startswith("python -m bench compare --optimizer")
    assert report["versions"]["jax"] == jax.__version__
    assert list(report["tasks"]) == [e.name for e in suites.get("smoke")]
    learned = "init"  # a file is named by its file name
    assert report["candidates"] == [learned, "adam"]
    quad = report["tasks"]["quadratic"]["optimizers"]
    assert quad[learned]["tuning_trials"] == 0 and quad[learned]["chosen"] == {}
    assert quad["adam"]["tuning_trials"] == 7 and "learning_rate" in quad["adam"]["chosen"]
    assert quad["sgd"]["vs"]["adam"]["speedup"] > 0
    for record in quad.values():
        assert len(record["valid_curve"]) == 40 // 10 + 1
    summary = report["summary"][learned]["adam"]
    assert summary["tasks"] == 2 and 0 <= summary["fraction_won"]["estimate"] <= 1
    text = (out / "report.md").read_text()
    assert f"| {learned} | adam |" in text and "| quadratic | 40 | adam | learning_rate=" in text


def test_random_search_reports_quality_against_the_trial_budget(tmp_path):
    args = ["compare", "--optimizer", "sgd", "--suite", "smoke", "--protocol", "random-search"]
    assert main([*args, "--trials", "4", "--seeds", "1", "--out", str(tmp_path), "--quiet"]) == 0
    report = json.loads((tmp_path / "results.json").read_text())
    record = report["tasks"]["quadratic"]["optimizers"]["adam"]
    assert record["tuning_trials"] == 4 and set(record["chosen"]) == {
        "learning_rate",
        "b1",
        "b2",
        "eps",
    }
    curve = record["budget_curve"]
    assert list(curve) == ["1", "2", "4"] and curve["4"][0] == pytest.approx(min(record["scores"]))
    assert curve["1"][0] >= curve["2"][0] >= curve["4"][0]
    assert "## Tuning budget" in (tmp_path / "report.md").read_text()


def test_clear_errors(tmp_path, capsys):
    run = lambda *args: main(["compare", "--quiet", "--out", str(tmp_path), *args])
    assert run("--optimizer", "adamax", "--suite", "smoke") == 2
    assert "unknown optimizer 'adamax'" in capsys.readouterr().err
    assert run("--optimizer", "adam", "--suite", "nope") == 2
    assert "unknown suite 'nope'" in capsys.readouterr().err
    assert run("--optimizer", "adam", "--suite", "smoke", "--baselines", "adam,adamax") == 2
    assert "unknown baseline 'adamax'" in capsys.readouterr().err
    bad = tmp_path / "bad.lopt"
    bad.write_bytes(b"not a zip file")
    assert run("--optimizer", str(bad), "--suite", "smoke") == 2
    assert "bad.lopt" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()  # nothing written for bad input


def test_ship_keeps_the_recipe_and_adds_the_benchmark_summary(smoke_report, tmp_path):
    out, report = smoke_report
    shipped = ship.ship("tiny", out / "init.lopt", [out / "results.json"], folder=tmp_path)
    assert shipped == tmp_path / "tiny.lopt"
    meta = lopt.load(shipped).meta
    assert meta["name"] == "tiny"
    entry = meta["benchmark"]["smoke"]
    assert entry["vs"] == report["summary"]["init"]
    assert entry["vs"]["adam"]["tasks"] == 2 and entry["command"] == report["command"]
    renamed = tmp_path / "other.lopt"
    renamed.write_bytes((out / "init.lopt").read_bytes())
    with pytest.raises(ValueError, match="has no candidate 'other'; it has \\['init', 'adam'\\]"):
        ship.ship("tiny", renamed, [out / "results.json"], folder=tmp_path)
