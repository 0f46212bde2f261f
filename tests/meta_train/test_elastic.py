"""Meta-training on a Ray cluster whose nodes leave and join: a real multi-node Ray
(``ray.cluster_utils.Cluster``, every node on 127.0.0.1), the driver a CLI subprocess."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
from test_distributed import (
    HYPER,
    NO_AUTH,
    REPO,
    _try_records,
    _windows_of_each_stream_once_in_order,
)

THREE = [*HYPER, "distributed.workers=3", "--quiet"]


@pytest.fixture(scope="module")
def cluster():
    """A head with no CPUs (so no worker shares the driver's node) and 3 nodes of 1 CPU."""
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as env:
        for name in ("RAY_AUTH_MODE", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
            env.setenv(name, NO_AUTH[name])  # the nodes' processes inherit both
        loopback = {"node_ip_address": "127.0.0.1"}
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 0, "include_dashboard": False, **loopback},
        )
        for _ in range(3):
            cluster.add_node(num_cpus=1, **loopback)
        yield cluster
        cluster.shutdown()


def _driver(cluster, run_dir, *args):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meta_train",
            "--ray-address",
            cluster.address,
            *THREE,
            f"run_dir={run_dir}",
            *args,
        ],
        cwd=REPO,
        env=NO_AUTH,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _until(condition, driver, what, timeout=120.0):
    """Polls ``condition`` until it returns something true; returns it."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert driver.poll() is None, driver.stderr.read()[-3000:]
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.01)
    return value


def _node_of(cluster, pid):
    """The worker node whose raylet started process ``pid``."""
    parent = int(
        next(
            line.split()[1]
            for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("PPid:")
        )
    )
    (node,) = [
        n for n in cluster.worker_nodes if n.all_processes["raylet"][0].process.pid == parent
    ]
    return node


def _more_records(run_dir, than):
    records = _try_records(run_dir)
    return records if len(records) > than else None


def test_a_lost_node_leaves_the_run_going_and_a_joining_node_gets_its_worker(cluster, tmp_path):
    """3 nodes × 1 worker: a node removed → the other two go on (no room to restart the
    lost worker) within 30 s; a node added → the lost worker restarts there and computes a
    stream within 3 steps of joining. Every stream's windows arrive once each, in order."""
    run_dir = tmp_path / "run"
    driver = _driver(cluster, run_dir, "num_steps=1000000")
    first = _until(lambda: _more_records(run_dir, 2), driver, "3 outer steps")[-1]
    lost = first["workers"][0]
    cluster.remove_node(_node_of(cluster, first["pids"][0]))
    removed, seen = time.monotonic(), len(_try_records(run_dir))

    def two_live():  # once there are 3
        records = [r for r in _try_records(run_dir)[seen:] if r["workers_live"] == 2]
        return records if len(records) >= 3 else None

    went_on = _until(two_live, driver, "3 steps with 2 workers")
    assert time.monotonic() - removed < 30 + 5  # the target, and the polling's slack
    assert {w for r in went_on for w in r["workers"]} == {0, 1, 2} - {lost}
    assert all(len(r["workers"]) == 3 for r in went_on)  # the lost stream goes on too
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")

    def rejoined():
        later = _try_records(run_dir)[went_on[-1]["step"] :]
        return [r for r in later if r["workers_live"] == 3]

    joined = _until(rejoined, driver, "the worker rejoining")[0]["step"]
    records = _until(
        lambda: [r for r in rejoined() if lost in r["workers"]], driver, "its first estimate"
    )
    assert records[0]["step"] - joined <= 3
    assert records[0]["worker_restarts"] >= 1
    driver.send_signal(signal.SIGINT)
    assert driver.wait(timeout=60) == 130, driver.stderr.read()[-3000:]
    records = _try_records(run_dir)
    assert [r["step"] for r in records] == list(range(1, len(records) + 1))
    _windows_of_each_stream_once_in_order(records)


def test_a_node_lost_in_the_last_steps_does_not_hang_the_run(cluster, tmp_path):
    """The worker of one node is stopped (SIGSTOP) in the run's last steps, so every step
    waits for it, then its node is removed: the run finishes every step."""
    run_dir, steps = tmp_path / "run", 40
    driver = _driver(cluster, run_dir, f"num_steps={steps}")
    last = _until(lambda: _more_records(run_dir, steps - 6), driver, "the last steps")[-1]
    os.kill(last["pids"][0], signal.SIGSTOP)
    time.sleep(1.0)  # the driver now waits for the stopped worker
    waiting = len(_try_records(run_dir))
    cluster.remove_node(_node_of(cluster, last["pids"][0]))
    assert driver.wait(timeout=60) == 0, driver.stderr.read()[-3000:]
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert waiting < steps, "the run ended before the node was removed"
    assert [r["step"] for r in records] == list(range(1, steps + 1))
    assert records[-1]["workers_live"] == 2
    _windows_of_each_stream_once_in_order(records)
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")  # back to 3 for the next


def test_a_run_wanting_more_workers_than_the_cluster_holds_starts_and_grows(cluster, tmp_path):
    """4 workers wanted on 3 nodes: the run starts with the 3 the cluster has room for; the
    4th starts on a node added later and computes a stream of its own."""
    run_dir = tmp_path / "run"
    driver = _driver(cluster, run_dir, "num_steps=1000000", "distributed.workers=4")
    started = _until(lambda: _more_records(run_dir, 2), driver, "3 outer steps")
    assert {r["workers_live"] for r in started} == {3}
    assert all(len(r["workers"]) == 4 for r in started)  # 4 streams on 3 workers
    node = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    try:
        grown = _until(
            lambda: [r for r in _try_records(run_dir) if len(set(r["workers"])) == 4],
            driver,
            "a step computed by 4 workers",
        )
        assert grown[0]["workers_live"] == 4
        driver.send_signal(signal.SIGINT)
        assert driver.wait(timeout=60) == 130, driver.stderr.read()[-3000:]
    finally:
        cluster.remove_node(node)
    records = _try_records(run_dir)
    assert [r["step"] for r in records] == list(range(1, len(records) + 1))
    _windows_of_each_stream_once_in_order(records)

def test_the_death_of_the_drivers_own_node_is_one_error_line_and_the_run_resumes(tmp_path):
    """The raylet of the driver's node (the head) killed: the driver ends with one error
    line within a minute; its checkpoints resume the run on a local Ray instance."""
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as env:
        for name in ("RAY_AUTH_MODE", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
            env.setenv(name, NO_AUTH[name])
        loopback = {"node_ip_address": "127.0.0.1"}
        doomed = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 0, "include_dashboard": False, **loopback},
        )
        doomed.add_node(num_cpus=1, **loopback)
        try:
            run_dir = tmp_path / "run"
            driver = _driver(
                doomed, run_dir, "num_steps=1000000", "checkpoint_every=5", "distributed.workers=1"
            )
            _until(lambda: _more_records(run_dir, 10), driver, "10 outer steps")
            os.kill(doomed.head_node.all_processes["raylet"][0].process.pid, signal.SIGKILL)
            assert driver.wait(timeout=90) == 1
            lines = driver.stderr.read().strip().splitlines()
        finally:
            doomed.shutdown()
    assert lines == [
        "error: this driver's Ray node died (its raylet is gone), so no worker can be reached; "
        "the checkpoints are intact: continue with --resume"
    ]
    saved = max(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "meta_train",
            "--quiet",
            "--resume",
            str(run_dir),
            "distributed.address=null",
            f"num_steps={saved + 2}",
        ],
        cwd=REPO,
        env=NO_AUTH,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    records = _try_records(run_dir)
    assert [r["step"] for r in records] == list(range(1, saved + 3))
