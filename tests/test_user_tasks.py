"""A user's own task, family, suite and optimizer (docs/examples/my_tasks.py), named by import
path: resolved, meta-trained in-process, resumed and benchmarked (on 2 Ray workers:
tests/meta_train/test_distributed.py); given as objects from Python."""

import dataclasses
import pathlib

import pytest

import tasks
from bench import compare
from meta_train import ConfigError, load_config, meta_train

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "docs" / "examples"
HYPER = [
    "optimizer.architecture=HyperAdam",
    "optimizer.hparams={lr: 0.001}",
    "estimator.num_particles=4",
    "estimator.window=5",
    "estimator.schedule={kind: constant, min_length: 20, max_length: 20}",
    "checkpoint_every=2",
]


@pytest.fixture(autouse=True)
def on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))


def test_import_paths_resolve_and_bad_ones_say_why():
    task = tasks.get("my_tasks:blobs")
    assert task.name == "blobs8-mlp32"
    assert tasks.family("my_tasks:widths").name == "my-widths"
    for name, message in (
        ("nowhere_mod:x", "task 'nowhere_mod:x': cannot import it .*No module named"),
        ("my_tasks:nope", "task 'my_tasks:nope': cannot import it .*has no attribute 'nope'"),
        ("my_tasks:MLP", "task 'my_tasks:MLP' is a MLP, not a Task"),
    ):
        with pytest.raises(ValueError, match=message):
            tasks.get(name)
    with pytest.raises(ValueError, match="'my_tasks:blobs' is a Task, not a TaskFamily"):
        tasks.family("my_tasks:blobs")
    with pytest.raises(ConfigError, match="task.name: task 'my_tasks:nope': cannot import"):
        load_config(None, ["task.name=my_tasks:nope", "task.family=null"])
    with pytest.raises(ConfigError, match="task.family: task family 'x.y:z': cannot import"):
        load_config(None, ["task.family=[image-mlp, 'x.y:z']"])


def test_meta_trains_resumes_and_benchmarks(tmp_path):
    run_dir = tmp_path / "mine"
    cfg = lambda *extra: load_config(
        None, [*HYPER, "task.family=my_tasks:widths", f"run_dir={run_dir}", *extra]
    )
    meta_train(cfg("num_steps=2"), verbose=False)
    # A new process rebuilds the family from the config's name alone.
    saved = (run_dir / "config.yaml").read_text()
    assert "my_tasks:widths" in saved
    resumed = meta_train(cfg("num_steps=4"), resume=True, verbose=False)
    assert [r.step for r in resumed.history] == [3, 4]
    assert all(r.task.startswith("blobs8-mlp") for r in resumed.history)
    with pytest.warns(UserWarning, match="runs of 20-20 steps; num_steps=200 is outside them"):
        report = compare.compare(
            [str(resumed.export_path), "my_tasks:sgd_cosine"],
            "my_tasks:suite",
            ["adam"],
            "lr-grid",
            tmp_path / "report",
            seeds=1,
            lr_range=(1e-3, 1e-1),
            max_speedup=1,
            progress=False,
            tuning_free=("muon-cosine-default",),
        )
    assert report.suite == "my_tasks:suite"
    # A run's optimizer.lopt is named by its run folder.
    assert report.candidates == [f"{resumed.export_path.parent.name}/optimizer", "sgd_cosine"]
    record = report.tasks["blobs8-mlp32"].optimizers["sgd_cosine"]
    assert record.final_train < 0.9 * record.initial_loss  # it trained the user's model


def test_task_and_family_objects_meta_train_from_python_and_resume_only_from_python(tmp_path):
    import my_tasks

    task, family = tasks.get("my_tasks:blobs"), my_tasks.widths
    assert repr(task) == "Task('blobs8-mlp32')"  # not the data its functions hold
    base = load_config(None, [*HYPER, f"run_dir={tmp_path / 'fixed'}", "num_steps=2"])
    fixed = base.with_task(task)
    assert fixed.task.name is task and fixed.task.family is None
    assert fixed.task.describe() == "blobs8-mlp32"
    result = meta_train(fixed, verbose=False)
    assert {r.task for r in result.history} == {"blobs8-mlp32"}
    saved = load_config(tmp_path / "fixed" / "config.yaml")  # what a new process would read
    assert saved.task.name == "Task('blobs8-mlp32')"
    with pytest.raises(ConfigError, match=r"task.name: Task\('blobs8-mlp32'\) was given as a Task"):
        meta_train(dataclasses.replace(saved, num_steps=4), resume=True, verbose=False)
    resumed = meta_train(dataclasses.replace(fixed, num_steps=4), resume=True, verbose=False)
    assert [r.step for r in resumed.history] == [3, 4]
    mixed = base.with_task(family)
    assert mixed.task.family is family and mixed.task.name is None
    result = meta_train(dataclasses.replace(mixed, run_dir=str(tmp_path / "fam")), verbose=False)
    assert all(r.task.startswith("blobs8-mlp") for r in result.history)
