"""The trainer end to end: determinism, exact resume, outputs, errors, and the CLI."""

import dataclasses
import errno
import inspect
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time
import types

import jax
import numpy as np
import pytest

import lopt
from meta_train import initial_theta, meta_train, metrics_log, monitor, plot
from meta_train.__main__ import main as cli_main
from meta_train.checkpoint import FILES, Checkpointer, CheckpointError
from meta_train.config_io import load_config
from meta_train.distributed import WorkerPool
from meta_train.stream import EstimateSource, InProcessSource
from meta_train.validation import Validator, held_out_tasks

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = [
    "optimizer.hparams={hidden: [2]}",
    "task.name=quadratic",
    "task.family=null",
    "estimator.num_particles=2",
    "estimator.window=5",
    "estimator.schedule={kind: loguniform, min_length: 8, max_length: 20}",
    "num_steps=6",
    "checkpoint_every=2",
]


def _cfg(run_dir, *extra):
    return load_config(None, [*TINY, f"run_dir={run_dir}", *extra])


ZEROS = metrics_log.StepRecord(
    **dict.fromkeys(metrics_log.EVERY_STEP, 0) | {"task": "t", "devices": [1]}
)  # a record to vary


def _leaves(theta):
    return [np.asarray(x) for x in jax.tree.leaves(theta)]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    cfg = _cfg(tmp_path_factory.mktemp("full"))
    return cfg, meta_train(cfg, verbose=False)


def test_outputs(full_run):
    _, result = full_run
    path = result.run_dir / "metrics.jsonl"
    records = metrics_log.read(path)
    assert [r.step for r in records] == list(range(1, 7))
    first = json.loads(path.read_text().splitlines()[0])  # in one process, not validated:
    assert records[0].workers is None and not {"workers", "valid"} & set(first)  # left out
    assert all(np.isfinite(r.meta_loss) for r in records)
    # The first step compiles the task's estimator; the later ones (same task) reuse it.
    compiling = [r.compile_seconds for r in records]
    assert compiling[0] > 0.1 and max(compiling[1:]) < 0.05 * compiling[0], compiling
    frozen = lopt.load(result.export_path)
    assert frozen.meta["recipe"]["task"]["name"] == "quadratic"
    schedule = full_run[0].estimator.schedule
    assert frozen.horizons == (schedule.min_length, schedule.max_length)
    for a, b in zip(_leaves(frozen.theta), _leaves(result.theta), strict=True):
        np.testing.assert_array_equal(a, b)
    assert (result.run_dir / "config.yaml").exists()
    start = lopt.load(result.init_path)  # the untrained theta, to benchmark the trained one by
    assert result.init_path == result.run_dir / "init.lopt" and start.meta["outer_steps"] == 0
    want = initial_theta(full_run[0].optimizer.build(), full_run[0].seed)
    for a, b in zip(_leaves(start.theta), _leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)


def test_both_estimate_sources_implement_the_protocol():
    for source in (InProcessSource, WorkerPool):
        for name, method in vars(EstimateSource).items():
            if callable(method) and not name.startswith("_"):
                assert inspect.signature(getattr(source, name)) == inspect.signature(method), (
                    source.__name__,
                    name,
                )


def test_same_seed_same_theta(full_run, tmp_path):
    _, result = full_run
    again = meta_train(_cfg(tmp_path / "again"), verbose=False)
    for a, b in zip(_leaves(result.theta), _leaves(again.theta), strict=True):
        np.testing.assert_array_equal(a, b)
    other = meta_train(_cfg(tmp_path / "other", "seed=1", "num_steps=2"), verbose=False)
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(_leaves(result.theta), _leaves(other.theta), strict=True)
    )


def test_resume_continues_exactly(full_run, tmp_path, capsys):
    _, result = full_run
    run_dir = tmp_path / "resumed"
    meta_train(_cfg(run_dir, "num_steps=4"), verbose=False)
    # Simulate a crash after step 4's checkpoint... plus a stray metrics line from a step 5
    # that was never checkpointed: it must not survive the resume.
    with (run_dir / "metrics.jsonl").open("a") as f:
        stray = dataclasses.replace(result.history[-1], step=5, meta_loss=123.0)
        f.write(stray.to_json() + "\n" + '{"step": 6, "meta_lo')
    resumed = meta_train(_cfg(run_dir.absolute() / "."), resume=True)
    assert "resumed from the checkpoint of outer step 4 of 6" in capsys.readouterr().out
    for a, b in zip(_leaves(result.theta), _leaves(resumed.theta), strict=True):
        np.testing.assert_array_equal(a, b)
    records = metrics_log.read(run_dir / "metrics.jsonl")
    assert [r.step for r in records] == list(range(1, 7)) and stray not in records


def _damage(checkpoint: pathlib.Path) -> None:
    for f in (checkpoint / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def test_a_damaged_newest_checkpoint_is_set_aside_and_the_one_before_resumed(full_run, tmp_path):
    _, result = full_run
    run_dir = tmp_path / "damaged"
    meta_train(_cfg(run_dir), verbose=False)  # checkpoints at steps 2, 4, 6
    _damage(run_dir / "checkpoints" / "6")
    with pytest.warns(UserWarning, match=r"checkpoint 6 cannot be restored .* from checkpoint 4"):
        resumed = meta_train(_cfg(run_dir), resume=True, verbose=False)
    for a, b in zip(_leaves(result.theta), _leaves(resumed.theta), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [r.step for r in resumed.history] == [5, 6]
    assert (run_dir / "checkpoints-damaged" / "6").is_dir()
    _damage(run_dir / "checkpoints" / "6")  # the same step, damaged again
    with pytest.warns(UserWarning, match=r"moved it to .*checkpoints-damaged/6\.1 "):
        meta_train(_cfg(run_dir), resume=True, verbose=False)
    for step in ("2", "4", "6"):
        _damage(run_dir / "checkpoints" / step)
    with pytest.raises(CheckpointError, match="no checkpoint .* can be restored .*step 2"):
        meta_train(_cfg(run_dir), resume=True, verbose=False)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["2", "4", "6"]


def test_the_cli_reports_damaged_checkpoints_in_one_line_each(tmp_path):
    """No library noise around what matters: a damaged file is found by the checkpoint's
    manifest before orbax reads it (orbax's failing reads left callbacks that printed
    "Event loop is closed" tracebacks at exit), and the warning is one line."""
    run_dir = tmp_path / "run"
    meta_train(_cfg(run_dir), verbose=False)  # checkpoints at steps 2, 4, 6
    resume = [sys.executable, "-m", "meta_train", "--quiet", "--resume", str(run_dir)]
    run = lambda: subprocess.run(resume, cwd=REPO, capture_output=True, text=True, timeout=300)
    _damage(run_dir / "checkpoints" / "6")
    out = run()
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(
        r"warning: checkpoint 6 cannot be restored \(ValueError: file state/\S+ changed since "
        r"it was saved \(checksum mismatch\)\); moved it to \S+ and resumed from checkpoint 4",
        out.stderr.strip(),
    ), out.stderr
    for step in ("2", "4", "6"):
        _damage(run_dir / "checkpoints" / step)
    out = run()
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no checkpoint under "), out.stderr


def test_changed_checkpoint_arrays_are_found_and_the_one_before_resumed(full_run, tmp_path):
    """Arrays that changed after saving while the files stay well-formed (bit-rot in the
    data, a stray write; here checkpoint 6's arrays replaced by checkpoint 4's): the file
    manifest no longer matches, and without one (as in checkpoints written before
    manifests) the checksum saved with the metadata does not, so checkpoint 6 is set aside
    like any damage and the run resumes from 4, to the uninterrupted run's theta. (Without
    either, checkpoint 6 restored silently with step 4's theta.)"""
    _, result = full_run
    run_dir = tmp_path / "rot"
    meta_train(_cfg(run_dir), verbose=False)  # checkpoints at steps 2, 4, 6
    ckpts = run_dir / "checkpoints"
    shutil.rmtree(ckpts / "6" / "state")
    shutil.copytree(ckpts / "4" / "state", ckpts / "6" / "state")
    with pytest.warns(UserWarning, match=r"file state/.* changed since it was saved"):
        meta_train(_cfg(run_dir, "num_steps=6"), resume=True, verbose=False)
    shutil.rmtree(ckpts / "6" / "state")  # the same again, without 6's manifest
    shutil.copytree(ckpts / "4" / "state", ckpts / "6" / "state")
    (ckpts / "6" / FILES).unlink()
    with pytest.warns(
        UserWarning, match=r"checkpoint 6 cannot be restored \(.*arrays changed.*checkpoint 4"
    ):
        resumed = meta_train(_cfg(run_dir), resume=True, verbose=False)
    assert [r.step for r in resumed.history] == [5, 6]
    for a, b in zip(_leaves(result.theta), _leaves(resumed.theta), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("estimator.sigma=10", r"of \d+ inner episodes in steps 1-20 diverged"),
        ("outer.learning_rate=10", r"the estimate was zero on \d+ of 20 steps \d+-\d+"),
    ],
)
def test_runs_that_stop_learning_are_reported(tmp_path, override, message):
    with pytest.warns(RuntimeWarning, match=message):
        result = meta_train(
            _cfg(tmp_path, override, "num_steps=24", "checkpoint_every=24"), verbose=False
        )
    warned = [r for r in result.history if r.warning is not None]
    assert len(warned) == 1 and re.search(message, warned[0].warning), warned


def test_the_watch_ignores_rare_divergence_and_fresh_populations():
    """FullES ends every episode in every window (ended = N, resets = 0): one divergence in
    20 steps is no trend there, nor two of two episodes ended at long horizons."""
    record = lambda step, **kw: dataclasses.replace(ZEROS, step=step, grad_norm=1.0, **kw)
    watch = monitor.Watch()
    healthy = [record(t, diverged=int(t == 5), ended=16) for t in range(1, 41)]
    assert all(watch.check(r) is None for r in healthy)
    watch = monitor.Watch()
    rare = [record(t, diverged=int(t in (3, 9)), ended=int(t in (3, 9))) for t in range(1, 41)]
    assert all(watch.check(r) is None for r in rare)
    watch = monitor.Watch()
    most = [record(t, diverged=3, ended=4) for t in range(1, 21)]
    assert [watch.check(r) is not None for r in most] == [False] * 19 + [True]


def test_resume_errors(full_run, tmp_path):
    _, result = full_run
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        meta_train(_cfg(tmp_path / "empty"), resume=True, verbose=False)
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        meta_train(_cfg(result.run_dir), verbose=False)
    with pytest.raises(ValueError, match=r"differs from the saved one in \['estimator'\]"):
        meta_train(_cfg(result.run_dir, "estimator.sigma=0.5"), resume=True, verbose=False)
    with pytest.raises(ValueError, match="num_steps=3: it is already at step 6"):
        meta_train(_cfg(result.run_dir, "num_steps=3"), resume=True, verbose=False)
    earlier = tmp_path / "no-checkpoints"
    earlier.mkdir()
    (earlier / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(FileExistsError, match="metrics of an earlier run but no checkpoint"):
        meta_train(_cfg(earlier), verbose=False)
    assert (earlier / "metrics.jsonl").read_text() == '{"step": 1}\n'


def test_cli_runs_the_smoke_config_and_reads_the_compilation_cache_back(tmp_path):
    cache = tmp_path / "cache"
    run = lambda *args: subprocess.run(
        [sys.executable, "-m", "meta_train", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "LOPT_COMPILATION_CACHE": str(cache)},
    )
    ok = run("--config", "smoke", f"run_dir={tmp_path / 'smoke'}", "num_steps=2")
    assert ok.returncode == 0, ok.stderr
    assert "step      2/2" in ok.stdout and (tmp_path / "smoke" / "optimizer.lopt").exists()
    assert re.search(
        r"meta_loss -?[\d.]+ \(mean of 2\) .* 0:\d\d:\d\d elapsed, 0:00:00 left", ok.stdout
    )
    # What it compiled (in at least 0.5 s) is in the persistent cache, and a second run reads
    # it back rather than compiling and writing it again.
    written = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert written
    again = run("--config", "smoke", f"run_dir={tmp_path / 'again'}", "num_steps=2")
    assert again.returncode == 0
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir() if p.name in written} == written


def _running(run_dir: pathlib.Path) -> subprocess.Popen:
    """A long ``python -m meta_train`` run in ``run_dir`` (checkpoints every 2 steps), once it
    has logged 3 steps."""
    overrides = [*TINY, "num_steps=100000", "checkpoint_every=2", f"run_dir={run_dir}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "meta_train", "--quiet", *overrides],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics, deadline = run_dir / "metrics.jsonl", time.monotonic() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    return proc


def test_a_run_directory_has_one_writer_and_a_dead_writer_never_blocks(tmp_path, capsys):
    """A second driver, fresh or resuming, is refused while a run holds the directory, with
    one line naming the holder; the first run goes on untouched; once it is killed
    (SIGKILL: no clean-up), the directory resumes."""
    run_dir = tmp_path / "run"
    proc = _running(run_dir)
    metrics = run_dir / "metrics.jsonl"
    config = (run_dir / "config.yaml").read_text()
    holder = f"is in use by a run of pid {proc.pid} on "
    assert cli_main(["--quiet", *TINY, "seed=1", f"run_dir={run_dir}"]) == 2
    assert holder in capsys.readouterr().err
    assert cli_main(["--quiet", "--resume", str(run_dir)]) == 2
    assert holder in capsys.readouterr().err
    assert proc.poll() is None and (run_dir / "config.yaml").read_text() == config
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    steps = [r.step for r in metrics_log.read(metrics)]
    assert steps == list(range(1, len(steps) + 1))  # one writer: no interleaving
    saved = max(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())
    resumed = meta_train(
        load_config(run_dir / "config.yaml", [f"num_steps={saved + 2}"]),
        resume=True,
        verbose=False,
    )
    assert [r.step for r in resumed.history] == [saved + 1, saved + 2]


def test_ctrl_c_prints_one_line_naming_the_checkpoint_to_resume_from(tmp_path):
    run_dir = tmp_path / "run"
    proc = _running(run_dir)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()  # no traceback, even when it interrupts a save
    assert len(lines) == 1 and re.fullmatch(
        rf"interrupted; the newest checkpoint is of step \d+: resume with "
        rf"python -m meta_train --resume {re.escape(str(run_dir))}",
        lines[0],
    ), err


def test_cli_reports_bad_configs_and_run_dirs_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOPT_COMPILATION_CACHE", "off")  # leave this process's JAX alone

    def run(*args):
        code = cli_main(list(args))
        return code, capsys.readouterr().err

    code, err = run("--config", "smoke", f"run_dir={tmp_path / 'bad'}", "estimator.window=0")
    assert code == 2 and "estimator.window: must be >= 1, got 0" in err
    # a malformed YAML value: one line naming the override; overrides after a flag too
    code, err = run("--config", "smoke", "--quiet", "optimizer.hparams={hidden: [4,")
    assert code == 2 and err.strip().splitlines() == [
        "error: optimizer.hparams={hidden: [4,: not valid YAML/JSON at line 1, column 13: "
        "expected the node content, but found '<stream end>'"
    ]
    code, err = run("--resume", str(tmp_path / "nowhere"))
    assert code == 2 and "cannot read config file" in err
    code, err = run("--config", "smoke", f"run_dir={tmp_path / 'w'}", "--workers", "500")
    assert code == 2 and "500 workers x 1.0 CPUs need 500" in err
    assert not (tmp_path / "w").exists()  # rejected before anything is written
    (tmp_path / "a-file").write_text("")
    code, err = run("--config", "smoke", f"run_dir={tmp_path / 'a-file' / 'run'}")
    assert code == 2, err
    assert err.strip().splitlines() == [
        f"error: cannot write the run: Not a directory ({tmp_path / 'a-file' / 'run'})"
    ]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 200 kB tmpfs; needs a mount (root in a container)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)], capture_output=True
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mount.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_is_one_error_line(tiny_disk):
    """The smoke run's first checkpoint does not fit in 200 kB."""
    disk = tiny_disk
    run = subprocess.run(
        [sys.executable, "-m", "meta_train", "--config", "smoke", f"run_dir={disk / 'run'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 2
    # One error line, checked before orbax starts a write it cannot finish (whose background
    # threads would print tracebacks of their own).
    error = re.compile(
        r"error: cannot write the run: no space left on the device to write checkpoint \d+ "
        r"\(\d+ bytes needed, \d+ free\); the earlier ones are intact: free space, then "
        rf"--resume \({re.escape(str(disk / 'run' / 'checkpoints'))}\)"
    )
    assert [line for line in run.stderr.splitlines() if error.fullmatch(line)], run.stderr
    assert "Traceback" not in run.stderr and "ERROR:absl" not in run.stderr, run.stderr


def test_a_disk_that_fills_while_writing_keeps_the_earlier_checkpoints(tiny_disk, monkeypatch):
    """Past the free-space check (another process filling the disk), orbax's failure is the
    same ENOSPC error and the checkpoint before it still restores."""
    ckpt = Checkpointer(tiny_disk / "checkpoints")
    noise = np.random.default_rng(0).standard_normal(100_000).astype(np.float32)
    small, large = {"x": noise[:1000]}, {"x": noise}  # incompressible: orbax compresses
    ckpt.save(1, small, {"step": 1})
    monkeypatch.setattr(shutil, "disk_usage", lambda _: types.SimpleNamespace(free=1 << 40))
    with pytest.raises(OSError, match="checkpoint 2 .the disk filled while writing.") as e:
        ckpt.save(2, large, {"step": 2})
    assert e.value.errno == errno.ENOSPC
    state, meta = ckpt.restore(1, small)
    assert meta == {"step": 1} and np.array_equal(state["x"], small["x"])
    ckpt.close()


def test_family_structures_resample_and_resume_across_them(tmp_path):
    """Task structures change every `resample_every` steps; burn-in and the validation
    meta-loss run; resuming from a checkpoint at a structure boundary (step 2) matches the
    full run (inside a structure is test_resume_continues_exactly). Meta-validation scores
    theta every 2 steps, exports the best theta, and its record survives the resume."""
    family = [
        "task.name=null",
        "task.family=quadratic",
        "task.resample_every=2",
        "num_steps=4",
        "checkpoint_every=3",
        "estimator.burn_in=1",
        "meta_loss.split=valid",
        "validation={every: 2, members: 2, horizon: 10, particles: 2}",
    ]
    full = meta_train(_cfg(tmp_path / "full", *family), verbose=False)
    names = [r.task for r in full.history]
    assert names[0] == names[1] and names[2] == names[3] and names[1] != names[2], names
    assert all(np.isfinite(r.meta_loss) for r in full.history)
    assert [r.step for r in full.history if r.valid is not None] == [2, 4]

    cfg = _cfg(tmp_path / "full", *family)
    lo = cfg.optimizer.build()
    held_out = held_out_tasks(None, ("quadratic",), 2)
    assert len({t.name for t in held_out}) == 2
    validate = Validator(cfg.validation, held_out, lo, cfg.meta_loss)
    scores = {0: validate(initial_theta(lo, cfg.seed)).mean}
    # The initial theta's score is in the run's first record (and in its plot).
    np.testing.assert_allclose(full.history[0].valid_initial, scores[0], rtol=1e-6)
    assert full.history[1].valid_initial is None
    scores |= {r.step: r.valid for r in full.history if r.valid is not None}
    best_step = min(scores, key=scores.get)
    best = lopt.load(full.best_path)
    assert best.meta["validation"]["step"] == best_step
    np.testing.assert_allclose(best.meta["validation"]["score"], scores[best_step], rtol=1e-6)
    np.testing.assert_allclose(validate(best.theta).mean, scores[best_step], rtol=1e-6)
    if best_step == 4:
        for a, b in zip(_leaves(full.theta), _leaves(best.theta), strict=True):
            np.testing.assert_array_equal(a, b)

    run_dir = tmp_path / "part"
    meta_train(_cfg(run_dir, *family, "num_steps=2"), verbose=False)
    resumed = meta_train(_cfg(run_dir, *family), resume=True, verbose=False)
    for a, b in zip(_leaves(full.theta), _leaves(resumed.theta), strict=True):
        np.testing.assert_array_equal(a, b)
    assert lopt.load(resumed.best_path).meta["validation"] == best.meta["validation"]
    # The records say where the run resumed; the plot marks it and the task changes.
    assert [r.resumed for r in resumed.history] == [True, None]
    assert resumed.history[0].valid_initial is None  # scored before the interruption
    assert plot.main([str(run_dir)]) == 0 and (run_dir / "metrics.png").stat().st_size > 10_000


def test_plot_of_a_run(full_run, tmp_path, capsys):
    _, result = full_run
    assert plot.main([str(result.run_dir), "--window", "3"]) == 0
    png = result.run_dir / "metrics.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert plot._running_mean(np.array([1.0, 3.0, 5.0, 7.0]), 2).tolist() == [1, 2, 4, 6]
    assert plot.main([str(tmp_path / "nowhere")]) == 2
    assert "no such file; is" in capsys.readouterr().err
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "meta_lo')  # cut off mid-line
    assert plot.main([str(tmp_path)]) == 2
    assert "holds no records yet" in capsys.readouterr().err


def test_the_progress_line_says_how_many_workers_are_live_and_how_busy_they_were(capsys):
    """Over the line's steps: the workers' computing seconds ÷ (workers × the steps' seconds);
    nothing of the kind for a run without workers."""
    record = dataclasses.replace(ZEROS, grad_norm=1.0, task="t", inner_steps_per_s=1, seconds=1)
    progress = monitor.Progress(total=2, start=0, every=2, enabled=True)
    for step in (1, 2):  # worker 0 computes the whole step, worker 1 half of it
        workers = {"worker_seconds": [1.0, 0.5], "workers": [1, 0], "workers_live": 2}
        progress.update(dataclasses.replace(record, step=step, **workers))
    assert "workers 2, busy 75%" in capsys.readouterr().out
    progress = monitor.Progress(total=2, start=0, every=2, enabled=True)
    for step in (1, 2):
        progress.update(dataclasses.replace(record, step=step))
    line = capsys.readouterr().out
    assert "step      2/2" in line and "busy" not in line
