"""Meta-training on Ray workers: a real local Ray instance or a head started here (loopback)."""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import jax
import numpy as np
import pytest

import lopt
import tasks
from bench.lab.perf.cluster import ENV, start_driver
from meta_train import ConfigError, build_estimator, load_config, meta_train, metrics_log

REPO = pathlib.Path(__file__).resolve().parents[2]
RAY = pathlib.Path(sys.executable).parent / "ray"
# HyperAdam on a quadratic: a log learning rate to learn, cheap to compile.
HYPER = [
    "optimizer.architecture=HyperAdam",
    "optimizer.hparams={lr: 0.001}",
    "task.name=quadratic",
    "task.family=null",
    "estimator.num_particles=4",
    "estimator.sigma=0.1",
    "estimator.window=10",
    "estimator.schedule={kind: constant, min_length: 50, max_length: 50}",
    "outer.learning_rate=0.05",
    "distributed.workers=2",
]


def _cfg(run_dir, *extra):
    return load_config(None, [*HYPER, f"run_dir={run_dir}", *extra])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_local_workers_learn(tmp_path):
    """Embedded Ray (no address): 2 workers, each sharding its particles over 2 simulated
    devices; theta stays finite and the learning rate and meta-loss improve."""
    cfg = _cfg(
        tmp_path / "run",
        "num_steps=40",
        "distributed.worker_env={XLA_FLAGS: --xla_force_host_platform_device_count=2}",
    )
    result = meta_train(cfg, verbose=False)
    records = result.history
    assert [r.step for r in records] == list(range(1, 41))
    assert {w for r in records for w in r.workers} == {0, 1}
    assert {d for r in records for d in r.devices} == {2}
    assert all(r.used >= 2 for r in records)
    # each estimate's time on its worker: within the step that waited for it (the first
    # compiles); a step of a synchronous round lasts as long as its slowest estimate
    assert all(0 < s <= r.seconds for r in records for s in r.worker_seconds)
    assert np.isfinite(result.theta["log_lr"])
    evaluate = jax.jit(
        build_estimator(
            cfg.estimator, cfg.meta_loss, tasks.get("quadratic"), lopt.HyperAdam()
        ).unroller.episode_loss,
        static_argnums=2,
    )
    before = evaluate(lopt.HyperAdam(lr=1e-3).init(None), jax.random.PRNGKey(0), 16)
    after = evaluate(result.theta, jax.random.PRNGKey(0), 16)
    assert after < before - 0.05, (before, after)
    import ray

    assert not ray.is_initialized()  # the run shut its local instance down


def test_population_slices_on_two_workers_give_the_streams_estimates(tmp_path):
    """``partition: particles``: each worker computes half the particles of both streams;
    merged, they are the estimates of one stream per worker (the same tasks, particles and
    keys) up to float summation order, and every step's work is spread over both workers.
    Episodes of random lengths make the halves count different numbers of steps."""
    import ray

    from meta_train.config import DistributedConfig
    from meta_train.distributed import ray_session

    varied = "estimator.schedule={kind: loguniform, min_length: 5, max_length: 40}"
    with ray_session(DistributedConfig(workers=2), verbose=False):  # one instance for both
        node = ray._private.worker.global_worker.node  # the local instance is on loopback
        assert node.node_ip_address == "127.0.0.1" and node.gcs_address.startswith("127.0.0.1:")
        runs = {
            p: meta_train(
                _cfg(tmp_path / p, "num_steps=4", varied, f"distributed.partition={p}"),
                verbose=False,
            )
            for p in ("streams", "particles")
        }
    streams, particles = runs["streams"].history, runs["particles"].history
    np.testing.assert_allclose(
        runs["particles"].theta["log_lr"], runs["streams"].theta["log_lr"], rtol=1e-5
    )
    for a, b in zip(streams, particles, strict=True):
        np.testing.assert_allclose(b.meta_loss, a.meta_loss, rtol=1e-5)
        assert (b.inner_steps, b.resets, b.estimates) == (
            a.inner_steps,
            a.resets,
            a.estimates,
        )
        assert sorted(a.workers) == [0, 1] and sorted(b.workers) == [0, 0, 1, 1]
        assert b.windows == [b.step - 1] * 4
    with pytest.raises(ConfigError, match="distributed.partition: must be one of"):
        _cfg(tmp_path, "distributed.partition=tensors")
    with pytest.raises(ConfigError, match="outer.max_staleness: must be 0 with"):
        _cfg(tmp_path, "distributed.partition=particles", "outer.max_staleness=1")
    with pytest.raises(ConfigError, match="estimator.num_particles: must divide evenly over"):
        _cfg(tmp_path, "distributed.partition=particles", "estimator.num_particles=3")


# Runs against the head go through the CLI in subprocesses with token authentication off on
# both sides: whether `ray start` turns it on depends on whether this machine already has a
# token, and Ray reads the mode once per process (see docs/meta_training.md on token authentication).
# Every node stays on loopback (without the second variable Ray binds the machine's address).
NO_AUTH = {**os.environ, **ENV}


def _driver(head, *args, **popen):
    return start_driver(
        head, "--quiet", *HYPER, *args, **{"cwd": REPO, "stdout": subprocess.DEVNULL, **popen}
    )


@pytest.fixture(scope="module")
def head():
    """A Ray head on 127.0.0.1 with 2 CPUs; its address.

    Its processes are stopped by their temp directory, not by ``ray stop``, which would stop
    every Ray instance on the machine (a meta-training run beside the tests, say)."""
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths hold it
    port = _free_port()
    subprocess.run(
        [
            str(RAY),
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
        env=NO_AUTH,
    )
    yield f"127.0.0.1:{port}"
    for sig, wait in (("TERM", 3), ("KILL", 0)):
        subprocess.run(["pkill", f"-{sig}", "-f", temp], check=False)
        deadline = time.time() + wait
        while time.time() < deadline and _running(temp):
            time.sleep(0.2)
    shutil.rmtree(temp, ignore_errors=True)


def _running(pattern: str) -> bool:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode == 0


def _wait_for(condition, driver, what, timeout=300):
    deadline = time.time() + timeout
    while not condition():
        assert driver.poll() is None, driver.stderr.read()[-3000:]
        assert time.time() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.02)


def _records(run_dir):
    """The complete records so far (none before the file exists; not a half-written line)."""
    return metrics_log.read(pathlib.Path(run_dir) / "metrics.jsonl")


def _windows_of_each_stream_once_in_order(records):
    """Every stream's windows reached the learner exactly once each, in order: a lost request
    was sent again and nothing was counted twice."""
    for stream in {s for r in records for s in r.streams}:
        windows = [
            w for r in records for s, w in zip(r.streams, r.windows, strict=True) if s == stream
        ]
        assert windows == list(range(len(windows))), stream


def test_a_killed_worker_leaves_its_stream_to_the_other_and_rejoins(head, tmp_path):
    """The run goes on while Ray restarts the killed worker (its stream on the other one, if
    a request was lost), which then computes a stream again; Ctrl-C ends the run."""
    run_dir = tmp_path / "run"
    driver = _driver(head, f"run_dir={run_dir}", "num_steps=1000000")
    _wait_for(lambda: len(_records(run_dir)) >= 3, driver, "3 outer steps")
    killed = _records(run_dir)[-1]
    os.kill(killed.pids[0], signal.SIGKILL)

    def rejoined():
        return [r for r in _records(run_dir) if r.worker_restarts]

    _wait_for(lambda: len(rejoined()) >= 3, driver, "3 steps after a restart")
    driver.send_signal(signal.SIGINT)
    assert driver.wait(timeout=60) == 130
    records = _records(run_dir)
    assert [r.step for r in records] == list(range(1, len(records) + 1))
    after = rejoined()[-1]
    assert after.workers_live == 2 and sorted(after.workers) == [0, 1]
    assert killed.pids[0] not in after.pids  # replaced by a new process
    _windows_of_each_stream_once_in_order(records)
    assert all(np.isfinite(r.meta_loss) for r in records)


def test_killed_driver_resumes_from_its_checkpoint(head, tmp_path):
    """Asynchronous mode (one estimate per step, staleness up to 1)."""
    run_dir = tmp_path / "run"
    asynchronous = ["distributed.estimates_per_step=1", "outer.max_staleness=1"]
    driver = _driver(
        head, *asynchronous, f"run_dir={run_dir}", "num_steps=100000", "checkpoint_every=2"
    )
    checkpoints = run_dir / "checkpoints"
    steps = lambda: (
        [int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()]
        if checkpoints.exists()
        else []
    )
    _wait_for(lambda: max(steps(), default=0) >= 4, driver, "checkpoint at step >= 4")
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    latest = max(steps())
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "meta_train",
            "--quiet",
            "--resume",
            str(run_dir),
            "--ray-address",
            head,
            f"num_steps={latest + 4}",
        ],
        cwd=REPO,
        env=NO_AUTH,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    records = _records(run_dir)
    assert [r.step for r in records] == list(range(1, latest + 5))
    # Every step applied at least one estimate; older ones were dropped and counted.
    assert all(r.used >= 1 and r.used + r.stale == r.estimates for r in records)
    assert np.isfinite(lopt.load(run_dir / "optimizer.lopt").theta["log_lr"])


def test_a_local_run_beside_a_running_cluster_rebuilds_a_user_task_on_its_workers(
    head, tmp_path, monkeypatch
):
    """With no address, a run starts a Ray instance of its own rather than joining the
    cluster `ray start` left running on this machine; its workers rebuild a user's task
    (docs/examples/my_tasks.py) from its import path, the module on PYTHONPATH."""
    examples = REPO / "docs" / "examples"
    monkeypatch.syspath_prepend(str(examples))
    cfg = _cfg(
        tmp_path / "run",
        "task.name=my_tasks:blobs",
        "num_steps=2",
        f"distributed.worker_env={{PYTHONPATH: {examples}}}",
    )
    result = meta_train(cfg, verbose=False)
    assert [r.step for r in result.history] == [1, 2]
    assert {w for r in result.history for w in r.workers} == {0, 1}
    assert {r.task for r in result.history} == {"blobs8-mlp32"}
    assert lopt.load(result.export_path).meta["recipe"]["task"]["name"] == "my_tasks:blobs"


def test_clear_errors(head, tmp_path):
    with pytest.raises(ConfigError, match=r"distributed.workers: must be >= 1 .*got 0"):
        _cfg(tmp_path, "distributed.workers=0")
    with pytest.raises(ConfigError, match="distributed.address: needs workers"):
        _cfg(tmp_path, "distributed.workers=null", f"distributed.address={head}")
    with pytest.raises(ConfigError, match=r"outer.max_staleness: must be < num_steps \(5\)"):
        _cfg(tmp_path, "num_steps=5", "outer.max_staleness=5")
    with pytest.raises(ConfigError, match=r"distributed.min_workers: must be <= .* \(2\), got 3"):
        _cfg(tmp_path, "distributed.min_workers=3")
    with pytest.raises(ConfigError, match="distributed.estimates_per_step: must be >= 1"):
        _cfg(tmp_path, "distributed.estimates_per_step=0")
    with pytest.raises(ConfigError, match="need 2000 CPUs but this machine has"):
        meta_train(
            _cfg(tmp_path / "big", "distributed.workers=1000", "distributed.cpus_per_worker=2")
        )
    with pytest.raises(ConnectionError, match=r"cannot reach a Ray head at 127.0.0.1:\d+"):
        meta_train(_cfg(tmp_path / "nohead", f"distributed.address=127.0.0.1:{_free_port()}"))
    with pytest.raises(ConfigError, match="must be 'auto' or host:port"):
        meta_train(_cfg(tmp_path / "badaddr", "distributed.address=nonsense"))
    local = tmp_path / "in-process"
    meta_train(_cfg(local, "distributed.workers=null", "num_steps=1"), verbose=False)
    with pytest.raises(ValueError, match="it ran in one process .* keep distributed.workers null"):
        meta_train(_cfg(local, "num_steps=2"), resume=True, verbose=False)
    # Workers that fail in their constructor, or that the cluster cannot place.
    broken = _driver(
        head, f"run_dir={tmp_path / 'broken'}", "distributed.worker_env={JAX_PLATFORMS: tpu}"
    )
    assert broken.wait(timeout=300) == 1
    assert (
        "error: a Ray worker could not start: " in (err := broken.stderr.read()) and "libtpu" in err
    )
    unplaced = _driver(
        head,
        f"run_dir={tmp_path / 'nogpu'}",
        "distributed.gpus_per_worker=1",
        "distributed.startup_timeout=3",
    )
    assert unplaced.wait(timeout=300) == 1
    assert (
        "0 of 2 workers started within 3 s (distributed.min_workers: 1); each needs 1 CPUs, 1 GPUs"
        in (unplaced.stderr.read())
    )


def test_cpu_pinning_takes_free_slots(tmp_path):
    """Each pin takes a core no other holder has; a released slot is taken again."""
    script = textwrap.dedent(
        f"""
        import os, pathlib
        from meta_train.distributed import pin_to_free_cores
        slots = pathlib.Path({str(tmp_path)!r})
        every = os.sched_getaffinity(0)
        n = len(every)

        def pin():  # as a fresh worker process would: from every core
            os.sched_setaffinity(0, every)
            return pin_to_free_cores(1, slots)

        held = [pin() for _ in range(n)]
        assert len({{c for cores, _ in held for c in cores}}) == n
        assert os.sched_getaffinity(0) == set(held[-1][0])
        assert pin() is None  # every slot is taken
        held[0][1].close()  # a worker that dies releases its slot
        assert pin()[0] == held[0][0]
        print("OK")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and out.stdout.strip() == "OK", out.stderr[-2000:]


def test_a_killed_driver_leaves_no_process_of_its_local_ray_instance():
    """SIGKILL leaves ray.shutdown() no chance: the raylet's agents used to outlive the
    driver, reparented to init. meta_train.reaper stops them; a driver that ends normally
    is left alone."""
    from meta_train.reaper import members

    script = textwrap.dedent(
        """
        import pathlib, sys, time
        import ray
        from meta_train.config import DistributedConfig
        from meta_train.distributed import ray_session

        with ray_session(DistributedConfig(workers=1), verbose=False):
            (node,) = ray.nodes()
            print(pathlib.Path(node["RayletSocketName"]).parent.parent, flush=True)
            print(ray.get(ray.remote(lambda: "worker up").remote()), flush=True)
            if sys.argv[1] == "wait":
                time.sleep(600)
        """
    )

    def driver(mode):
        return subprocess.Popen(
            [sys.executable, "-c", script, mode], cwd=REPO, stdout=subprocess.PIPE, text=True
        )

    def gone(session, deadline=30.0):
        end = time.monotonic() + deadline
        while members(session) and time.monotonic() < end:
            time.sleep(0.5)
        return members(session)

    proc = driver("wait")
    session = proc.stdout.readline().strip()
    assert proc.stdout.readline().strip() == "worker up"
    assert len(members(session)) > 3  # GCS, raylet, agents, a worker, the driver
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert gone(session) == []
    proc = driver("exit")
    session = proc.stdout.readline().strip()
    assert proc.stdout.readline().strip() == "worker up"
    assert proc.wait(timeout=60) == 0
    assert gone(session) == []
