"""The watchdog: a stalled computation (no CPU used) is reported, busy work never is, and a
meta-training run whose computation wedges ends with one line and resumes from its
checkpoint."""

import os
import pathlib
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from meta_train import metrics_log
from meta_train.watchdog import Watchdog, cpu_seconds

REPO = pathlib.Path(__file__).resolve().parents[2]


def _watch(cpu, seconds: float, stall_timeout: float = 0.3):
    """Runs a ``seconds``-long watched block with CPU time read from ``cpu``; the reports."""
    reports = []
    with Watchdog(stall_timeout, lambda *r: reports.append(r), poll=0.02, cpu=cpu) as dog:
        with dog.watch("the work"):
            time.sleep(seconds)
    return reports


def test_a_watched_computation_that_uses_no_cpu_is_reported_once():
    reports = _watch(cpu=lambda: 0.0, seconds=1.0)
    assert len(reports) == 1
    label, seconds = reports[0]
    assert label == "the work" and 0.3 <= seconds < 0.5


def test_busy_or_unwatched_work_is_never_reported():
    began = time.monotonic()
    assert _watch(cpu=lambda: time.monotonic() - began, seconds=1.0) == []  # one core busy
    assert _watch(cpu=lambda: 0.1 * (time.monotonic() - began), seconds=1.0) == []  # 10%
    reports = []
    with Watchdog(0.1, lambda *r: reports.append(r), poll=0.02, cpu=lambda: 0.0) as dog:
        with dog.watch("short"):
            time.sleep(0.05)
        time.sleep(0.5)  # idle, but nothing is watched
    assert reports == []


def test_real_cpu_time_keeps_a_busy_computation_alive():
    reports = []
    with Watchdog(0.3, lambda *r: reports.append(r), poll=0.02) as dog:
        with dog.watch("a busy loop"):
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                sum(range(1000))
    assert reports == [] and cpu_seconds() > 0
    with pytest.raises(ValueError, match="stall_timeout and poll must be > 0"):
        Watchdog(0, print)


# A task whose loss passes through a host callback that, from its BLOCK_AFTER-th call on,
# waits forever: the computation stops at 0% CPU, as a wedged XLA runtime does.
WEDGE = """
import os, threading
import jax
import tasks

_calls, _never = [0], threading.Event()


def _gate(loss):
    _calls[0] += 1
    if os.environ.get("BLOCK_AFTER") and _calls[0] >= int(os.environ["BLOCK_AFTER"]):
        _never.wait()
    return loss


def wedge():
    base = tasks.quadratic_task("wedge", dim=4, condition=10.0)

    def loss_fn(params, batch):
        loss, aux = base.loss_fn(params, batch)
        shape = jax.ShapeDtypeStruct(loss.shape, loss.dtype)
        gate = jax.pure_callback(
            _gate, shape, jax.lax.stop_gradient(loss), vmap_method="expand_dims"
        )
        return loss + 0.0 * gate, aux  # the gate's value is never differentiated

    return tasks.Task("wedge", base.init_fn, base.batch_fn, loss_fn, base.batch_size,
                      base.init_loss, base.num_steps)
"""


# A tiny meta-training run on that task, its watchdog at 2 s.
WEDGE_RUN = [
    "task.name=wedge_task:wedge",
    "task.family=null",
    "optimizer.hparams={hidden: [2]}",
    "estimator.num_particles=2",
    "estimator.window=5",
    "estimator.schedule={kind: constant, min_length: 20, max_length: 20}",
    "distributed.stall_timeout=2",
]


def test_a_wedged_run_stops_with_one_line_and_resumes_from_its_checkpoint(tmp_path):
    (tmp_path / "wedge_task.py").write_text(textwrap.dedent(WEDGE))
    run_dir = tmp_path / "run"
    config = [*WEDGE_RUN, "num_steps=12", "checkpoint_every=1"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "LOPT_COMPILATION_CACHE": "off",
    }
    run = lambda *args, **extra: subprocess.run(
        [sys.executable, "-m", "meta_train", "--quiet", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, **extra},
    )
    began = time.monotonic()
    wedged = run(*config, f"run_dir={run_dir}", BLOCK_AFTER="40")
    assert wedged.returncode == 3, wedged.stderr
    lines = wedged.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: meta-training stalled: the estimate")
    step = int(lines[0].split("outer step ")[1].split()[0])
    assert 2 <= step <= 12 and "(wedge)" in lines[0] and f"--resume {run_dir}" in lines[0]
    done = [r.step for r in metrics_log.read(run_dir / "metrics.jsonl")]
    assert done == list(range(1, step))
    assert time.monotonic() - began < 120
    resumed = run("--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    done = [r.step for r in metrics_log.read(run_dir / "metrics.jsonl")]
    assert done == list(range(1, 13))


def test_the_watchdog_thread_ends_with_its_block():
    before = threading.active_count()
    with Watchdog(1.0, print, poll=0.01):
        assert threading.active_count() == before + 1
    assert threading.active_count() == before


def test_a_wedged_ray_worker_is_restarted_and_the_run_goes_on(tmp_path, monkeypatch):
    """Each worker process wedges on its 40th loss evaluation; its watchdog ends it, Ray
    restarts it, and the run finishes every step once."""
    from meta_train import load_config, meta_train

    (tmp_path / "wedge_task.py").write_text(textwrap.dedent(WEDGE))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    cfg = load_config(
        None,
        [
            *WEDGE_RUN,
            "num_steps=8",
            "distributed.workers=1",
            "distributed.precompile=false",
            f"distributed.worker_env={{BLOCK_AFTER: '40', PYTHONPATH: '{path}'}}",
            f"run_dir={tmp_path / 'run'}",
        ],
    )
    result = meta_train(cfg, verbose=False)
    assert [r.step for r in result.history] == list(range(1, 9))
    assert result.history[-1].worker_restarts >= 1


def test_the_program_on_which_xla_wedged_runs():
    """The task period on which XLA's CPU runtime wedged: char-lm's lstm32-t16-b32 under the
    schedule-muon recipe mixed with image-mlp, from window 175 of the in-process stream.
    With XLA's concurrency-optimized scheduler on (jaxlib 0.10.2) its first windows stalled
    in 5 of 5 runs; ``import meta_train`` turns it off. Should it stall here, the watchdog
    ends this test process (a crashed test, never a hung suite)."""
    from meta_train import environment, initial_theta, load_config
    from meta_train.stream import EstimateStream, StreamSpec

    assert f"{environment.SCHEDULER_FLAG}=false" in os.environ["XLA_FLAGS"]
    cfg = load_config(
        "schedule-muon",
        [
            "task.family=[image-mlp, char-lm]",
            "task.resample_every=25",
            "estimator.sigma=0.05",
            "estimator.schedule.min_length=200",
            "estimator.schedule.max_length=2000",
            "meta_loss.kind=linear",
        ],
    )
    stream = EstimateStream(StreamSpec.of(cfg))
    assert stream.task_name(175) == "char-lm/lstm32-t16-b32"
    theta = initial_theta(cfg.optimizer.build(), cfg.seed)

    def stalled(label, seconds):
        print(f"XLA wedged: {label} used no CPU for {seconds:.0f} s", file=sys.stderr, flush=True)
        os._exit(1)

    with Watchdog(30, stalled) as dog:
        for window in range(175, 178):
            with dog.watch(f"window {window}"):
                _, metrics = stream.estimate(theta, window)
            assert metrics.inner_steps > 0 and np.isfinite(metrics.meta_loss)
