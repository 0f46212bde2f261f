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


def test_a_lab_command_reports_a_bad_name_in_one_line(capsys, tmp_path):
    """Every lab command's unknown names and bad files end as one ``error:`` line, exit 2."""
    from bench.__main__ import main

    assert main(["perf", "steps", "--suite", "nosuch", "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown suite 'nosuch'")
    assert main(["stability", str(tmp_path / "none.json"), str(tmp_path / "none.json")]) == 2
    assert capsys.readouterr().err.startswith("error: [Errno 2] No such file")
