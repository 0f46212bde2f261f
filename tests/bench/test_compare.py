"""``python -m bench compare``: outputs, a learned optimizer next to a tuned one, speedups
with a known answer, and errors."""

import dataclasses
import json
import shlex

import jax
import numpy as np
import optax
import pytest

import lopt
import tasks
from bench import compare, results, suites
from bench.__main__ import TOOLS, main
from bench.lab import ship


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    lo = lopt.MLPLOpt.bare()
    frozen = lopt.save(out / "start.lopt", lo, lo.init(jax.random.key(0)))
    runs = []  # (task, {hyperparameter: values}, num_steps) of every benchmark run

    def recording_run(task, make_tx, hparams, num_seeds, num_steps, *args, **kwargs):
        runs.append((task.name, {k: np.asarray(v).tolist() for k, v in hparams.items()}, num_steps))
        return run(task, make_tx, hparams, num_seeds, num_steps, *args, **kwargs)

    run = compare.runner.run
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compare.runner, "run", recording_run)
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
                "adam,adam-cosine",
                "--tuning-free",
                "muon-cosine-default",
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
    return out, json.loads((out / "results.json").read_text()), runs


def _reject(token):
    raise ValueError(f"results.json holds {token}, which strict JSON parsers reject")


def test_writes_report_json_and_plots(smoke_report):
    out, report, _ = smoke_report
    json.loads((out / "results.json").read_text(), parse_constant=_reject)  # strict JSON
    assert results.load(out / "results.json").to_json() == report  # read back as written
    for name in ("report.md", "results.json", "curves.png", "speedups.png"):
        assert (out / name).stat().st_size > 0, name
    assert report["command"].startswith("python -m bench compare --optimizer")
    assert report["versions"]["jax"] == jax.__version__
    assert list(report["tasks"]) == [e.name for e in suites.get("smoke")]
    assert report["tuning_free"] == ["muon-cosine-default"] and report["self_check"] == []
    learned = "start"  # a file is named by its file name
    assert report["candidates"] == [learned, "adam"]
    assert report["selection"] == "train" and report["max_speedup"] == 4
    quad = report["tasks"]["quadratic"]["optimizers"]
    assert quad[learned]["tuning_trials"] == 0 and quad[learned]["chosen"] == {}
    # Tuned: the 7 half-decade rates 1e-3 … 1 (the default 1e-3 among them), then refined.
    adam = quad["adam"]
    assert adam["tuning_trials"] == len(adam["scores"]) > 7 and "learning_rate" in adam["chosen"]
    assert adam["default"]["train"][0] >= min(adam["finals"]["train"]) - 1e-9
    # Tuning-free: one configuration, the published default, no search.
    free = quad["muon-cosine-default"]
    assert free["tuning_trials"] == 0 and free["chosen"] == {"learning_rate": pytest.approx(0.02)}
    assert len(free["scores"]) == 1 and "default" not in free
    assert list(free["budgets"]) == ["10", "20", "40", "80", "160"]
    for record in quad.values():
        assert len(record["valid_curve"]) == 40 // 10 + 1 and len(record["train_curve"]) == 40
        assert record["vs"]["adam"]["outcome"] in ("won", "tied", "lost")
    # A constant-rate baseline's tuned curve is read at every step of one 4× run...
    assert quad["adam"]["tuned_curve"]["steps"] == list(range(1, 161))
    # ...a scheduled one's at the five budgets it ran, each tuned, the 1× one reported.
    cosine = quad["adam-cosine"]
    assert cosine["tuned_curve"]["steps"] == [10, 20, 40, 80, 160]
    assert list(cosine["budgets"]) == ["10", "20", "40", "80", "160"]
    assert cosine["budgets"]["40"]["chosen"] == cosine["chosen"]
    assert cosine["budgets"]["40"]["loss"] == pytest.approx(cosine["final_train"])
    assert np.all(np.diff(cosine["tuned_curve"]["loss"]) <= 0)
    # A baseline against itself: tied, and its speedup is 1.
    assert quad["adam"]["vs"]["adam"] == pytest.approx(
        {
            "speedup": 1.0,
            "bound": "",
            "outcome": "tied",
            "time_ratio": 1.0,
            "train_outcome": "tied",
            "valid_outcome": "tied",
        },
        abs=0.03,
    )
    summary = report["summary"][learned]["adam"]
    assert summary["tasks"] == 2 and summary["won"] + summary["tied"] + summary["lost"] == 2
    assert 0 <= summary["fraction_won"]["estimate"] <= 1
    assert summary["train"] == {k: summary[k] for k in ("won", "tied", "lost")}  # deciding
    assert sum(summary["valid"].values()) == 2
    text = (out / "report.md").read_text()
    assert f"| {learned} | tuned adam |" in text and f"| {learned} | best tuning-free |" in text
    assert "| quadratic | 40 | adam | learning_rate=" in text
    assert "| quadratic | 40 | muon-cosine-default | learning_rate=0.02 (default) |" in text
    assert "Self-check — every tuned baseline against its own default" in text
    assert "all hold" in text and "Final validation loss" in text
    assert "one run per budget of 0.25×, 0.5×, 1×, 2×, 4×" in text
    assert "- `adam-cosine`: median speedup 1.00, range 1.00–1.00" in text  # calibration


def test_a_baselines_time_per_step_is_its_chosen_configuration_run_alone(smoke_report):
    _, report, runs = smoke_report
    for task, t in report["tasks"].items():
        for name in ("adam", "adam-cosine"):
            chosen = t["optimizers"][name]["chosen"]
            if name == "adam-cosine":
                chosen = {**chosen, "num_steps": t["num_steps"]}
            alone = {k: [pytest.approx(v)] for k, v in chosen.items()}
            assert (task, alone, t["num_steps"]) in runs, (task, name)


def test_a_tuning_free_baseline_runs_once_per_seed_at_its_default(smoke_report):
    _, report, runs = smoke_report
    for task, t in report["tasks"].items():
        mine = [(hp, steps) for name, hp, steps in runs if name == task and "num_steps" in hp]
        free = [(hp, steps) for hp, steps in mine if hp["learning_rate"] == [pytest.approx(0.02)]]
        # one configuration per budget (its schedule set to it), which also gives its time
        budgets = [t["num_steps"] * f for f in (0.25, 0.5, 1, 2, 4)]
        assert sorted(steps for _, steps in free) == budgets
        assert all(hp["num_steps"] == [steps] for hp, steps in free)


def test_the_self_check_lists_a_tuned_baseline_worse_than_its_default(smoke_report):
    report = results.Results.from_json(smoke_report[1])
    tuned = [compare.Optimizer(b, baseline=compare.baselines_lib.get(b)) for b in report.baselines]
    assert compare._self_check(report.tasks, tuned, report.margin) == []
    task = report.tasks["quadratic"]
    adam = task.optimizers["adam"]
    worse = results.Finals([2.0, 2.1], [1.0, 1.1])  # tuned: train 2.05, valid 1.05
    default = results.Finals([2.0, 2.1], [0.5, 0.6])  # its default: same train, valid 0.55
    rigged = dataclasses.replace(adam, finals=worse, default=default)
    tasks_ = {"quadratic": dataclasses.replace(task, optimizers={"adam": rigged})}
    assert compare._self_check(tasks_, tuned[:1], report.margin) == [
        results.Check("quadratic", "adam", "valid", pytest.approx(1.05), pytest.approx(0.55))
    ]


def test_each_task_names_its_best_tuned_and_best_tuning_free_baseline(smoke_report):
    out, report, _ = smoke_report
    report = results.Results.from_json(report)
    assert report.comparisons == ["adam", "adam-cosine", compare.BEST, compare.BEST_FREE]
    for task in report.tasks.values():
        at_budget = {b: task.optimizers[b].tuned_curve.at(task.num_steps) for b in report.baselines}
        best = min(at_budget, key=at_budget.get)
        assert task.best_baseline == best
        for record in task.optimizers.values():
            assert record.vs[compare.BEST] == dataclasses.replace(record.vs[best], baseline=best)
        free = "muon-cosine-default"  # the only tuning-free baseline run
        assert task.best_tuning_free == free
        assert task.optimizers["start"].vs[compare.BEST_FREE].baseline == free
    assert report.summary["start"][compare.BEST].tasks == 2
    text = (out / "report.md").read_text()
    assert f"| start | {compare.BEST} |" in text and "`best tuned`: per task" in text


def test_a_candidate_twice_as_fast_as_the_baseline_has_speedup_two(tmp_path):
    """½x² under gradient descent: x_t = (1 − η)^t x_0. SGD at its default η = 0.1 (the
    untuned baseline ``sgd-default``) reaches the loss ½·0.9^(2t) at step t; a fixed
    η' = 0.19 has 1 − η' = 0.9², so it reaches at step T the loss the baseline needs 2T steps
    for. The validation loss (no smoothing, a noiseless problem) is read at multiples of 10."""
    task = tasks.quadratic_task("line", dim=1, condition=1.0, noise=0.0)
    entries = [suites.Entry("line", lambda: task, num_steps=40, eval_every=10)]
    fast = compare.Optimizer("sgd-0.19", learned=lambda num_steps: optax.sgd(0.19))
    slow = compare.Optimizer("sgd-slow", learned=lambda num_steps: optax.sgd(1 - 0.9**0.5))
    report = compare.compare(
        [fast, slow],
        entries,
        baselines=("sgd-default",),
        out=tmp_path,
        seeds=1,
        select="valid",
        progress=False,
        tuning_free=(),
    )
    vs = report.tasks["line"].optimizers["sgd-0.19"].vs["sgd-default"]
    assert vs.speedup == pytest.approx(2.0, rel=1e-3) and vs.bound == ""
    assert vs.outcome == "won" and report.suite == "custom"
    # 1 − η = 0.9^½: half as fast as the baseline.
    vs = report.tasks["line"].optimizers["sgd-slow"].vs["sgd-default"]
    assert vs.speedup == pytest.approx(0.5, rel=1e-3) and vs.outcome == "lost"


def test_files_of_one_architecture_share_one_program_and_match_their_transforms(tmp_path):
    """Theta is an argument of the benchmark's program, not a constant in it: two files of
    one architecture compile once per task, and each trains as its own transform does."""
    lo = lopt.MLPLOpt.bare()
    paths = [
        str(lopt.save(tmp_path / f"{i}.lopt", lo, lo.init(jax.random.key(i)))) for i in range(2)
    ]
    task = tasks.quadratic_task("bowl", dim=4, condition=10.0, noise=0.0)
    entries = [suites.Entry("bowl", lambda: task, num_steps=20, eval_every=10)]
    before = compare.runner._compile.cache_info()
    report = compare.compare(
        paths,
        entries,
        baselines=("sgd",),
        out=tmp_path,
        seeds=1,
        progress=False,
        select="valid",
        lr_range=(1e-2, 0.1),
        max_speedup=1,
        tuning_free=(),
    )
    after = compare.runner._compile.cache_info()
    # sgd's grid, one configuration alone (its refinement's points and the chosen one's
    # timing), and one program for both files
    assert after.misses - before.misses == 3
    for path, name in zip(paths, ("0", "1"), strict=True):
        tx = lopt.load(path).as_optax(20)
        alone = compare.runner.run(task, lambda hp, tx=tx: tx, {}, 1, 20, 10)
        record = report.tasks["bowl"].optimizers[name]
        assert record.final_valid == pytest.approx(float(alone.valid[0, 0, -1]), rel=1e-5)
    finals = [report.tasks["bowl"].optimizers[n].final_valid for n in ("0", "1")]
    assert finals[0] != finals[1]  # two thetas, one program


def test_random_search_reports_quality_against_the_trial_budget(tmp_path, capsys):
    args = ["compare", "--optimizer", "sgd", "--suite", "smoke", "--protocol", "random-search"]
    args += ["--baselines", "adam", "--tuning-free", "none", "--max-speedup", "1"]
    assert main([*args, "--trials", "4", "--seeds", "1", "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "tasks (by valid loss " in out
    # Not a terminal: a line per finished run (2 optimizers x 2 tasks), no redrawn bar.
    done = [line for line in err.splitlines() if " runs done, " in line]
    assert [line.split(" ")[0] for line in done] == ["1/4", "2/4", "3/4", "4/4"] and "\r" not in err
    assert "speedups not measured (--max-speedup 1)" in out and "median speedup" not in out
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


def test_two_files_of_one_name_are_named_by_their_folders(tmp_path):
    lo = lopt.MLPLOpt()
    paths = [
        str(lopt.save(tmp_path / run / "optimizer.lopt", lo, lo.init(jax.random.key(i))))
        for i, run in enumerate(("a", "b"))
    ]
    with pytest.raises(ValueError, match="distinct names"):
        compare.resolve_all([paths[0], paths[0]])
    assert [c.name for c in compare.resolve_all([*paths, "adam"])] == [
        "a/optimizer",
        "b/optimizer",
        "adam",
    ]


@pytest.mark.parametrize(
    "argv0, prog", [("/venv/bin/lopt-bench", "lopt-bench"), ("x/__main__.py", "python -m bench")]
)
def test_help_names_the_command_that_ran(monkeypatch, capsys, argv0, prog):
    monkeypatch.setattr("sys.argv", [argv0])
    with pytest.raises(SystemExit):
        main(["--help"])
    assert capsys.readouterr().out.startswith(f"usage: {prog} ")
    for tool in TOOLS:  # each parsed by its own module, named as it was run
        with pytest.raises(SystemExit):
            main([tool, "--help"])
        assert capsys.readouterr().out.startswith(f"usage: {prog} {tool} ")


def test_tasks_on_two_ray_workers_give_the_results_of_one_process(smoke_report, tmp_path):
    """The recorded command again with ``--workers 2``: each unit on a Ray worker of one
    core (a real local Ray instance), with the same tuning, curves and outcomes; an error in
    a unit is raised as it was raised there."""
    from meta_train.config import DistributedConfig
    from meta_train.distributed import ray_session

    _, serial, _ = smoke_report
    argv = shlex.split(serial["command"])[3:]  # after "python -m bench"
    argv[argv.index("--out") + 1] = str(tmp_path)

    def unbuildable():
        raise ValueError("this task cannot be built")

    with ray_session(DistributedConfig(workers=2), verbose=False):  # one instance for both
        assert main([*argv, "--workers", "2"]) == 0
        with pytest.raises(ValueError, match="^this task cannot be built$"):
            compare.compare(
                ["adam"],
                [suites.Entry("bad", unbuildable, 40, 10)],
                baselines=["adam"],
                tuning_free=(),
                lr_range=(1e-2, 1.0),
                out=tmp_path / "bad",
                progress=False,
                workers=2,
            )
    parallel = json.loads((tmp_path / "results.json").read_text())
    assert (serial["workers"], parallel["workers"]) == (None, 2)
    assert list(parallel["tasks"]) == list(serial["tasks"])  # the suite's order
    for name, task in serial["tasks"].items():
        for opt, one in task["optimizers"].items():
            two = parallel["tasks"][name]["optimizers"][opt]
            assert two["chosen"] == one["chosen"]
            np.testing.assert_allclose(two["train_curve"], one["train_curve"], rtol=1e-5)
            assert {b: v["outcome"] for b, v in two["vs"].items()} == {
                b: v["outcome"] for b, v in one["vs"].items()
            }


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
    assert run("--optimizer", "adam", "--suite", "smoke", "--workers", "0") == 2
    assert "workers must be None (tasks in this process) or from 1" in capsys.readouterr().err
    assert (
        run("--optimizer", "adam", "--suite", "smoke", "--workers", "1", "--ray-address", "x") == 2
    )
    assert "must be 'auto' or host:port" in capsys.readouterr().err
    out = tmp_path / "never"
    assert (
        main(
            [
                "compare",
                "--optimizer",
                "adam",
                "--suite",
                "smoke",
                "--out",
                str(out),
                "--lr-range",
                "0.4",
                "0.5",
            ]
        )
        == 2
    )
    assert "holds no point of the grid" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists() and not out.exists()  # nothing written


def test_ship_keeps_the_recipe_and_adds_the_benchmark_summary(smoke_report, tmp_path):
    out, report, _ = smoke_report
    shipped = ship.ship("tiny", out / "start.lopt", [out / "results.json"], folder=tmp_path)
    assert shipped == tmp_path / "tiny.lopt"
    meta = lopt.load(shipped).meta
    assert meta["name"] == "tiny"
    entry = meta["benchmark"]["smoke"]
    assert entry["vs"] == report["summary"]["start"]
    assert entry["vs"]["adam"]["tasks"] == 2 and entry["command"] == report["command"]
    renamed = tmp_path / "other.lopt"
    renamed.write_bytes((out / "start.lopt").read_bytes())
    with pytest.raises(ValueError, match="has no candidate 'other'; it has \\['start', 'adam'\\]"):
        ship.ship("tiny", renamed, [out / "results.json"], folder=tmp_path)


def test_demo_summary_has_a_row_per_candidate_and_comparison(smoke_report):
    from bench.lab import demo

    report = results.Results.from_json(smoke_report[1])
    # The smoke report's candidates are "start" and "adam"; the demo's are "trained", "init".
    as_demo = {"trained": "adam", "init": "start"}
    report = dataclasses.replace(
        report,
        summary={**report.summary, **{k: report.summary[v] for k, v in as_demo.items()}},
        tasks={
            name: dataclasses.replace(
                t, optimizers={**t.optimizers, **{k: t.optimizers[v] for k, v in as_demo.items()}}
            )
            for name, t in report.tasks.items()
        },
    )
    rows = demo.summary_table({"smoke": report}).splitlines()[2:]
    assert [r.split(" | ")[1:3] for r in rows] == [
        [c, b]
        for c in demo.CANDIDATES
        for b in ("tuned adam", "tuned adam-cosine", compare.BEST, compare.BEST_FREE)
    ]
