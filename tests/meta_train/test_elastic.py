"""Meta-training on a Ray cluster whose nodes leave and join: a real multi-node Ray
(``ray.cluster_utils.Cluster``, every node on 127.0.0.1), the driver a CLI subprocess."""

import os
import pathlib
import signal
import subprocess
import time

import pytest
from test_distributed import (
    HYPER,
    REPO,
    _records,
    _windows_of_each_stream_once_in_order,
)

from bench.lab.perf.cluster import simulated_cluster, start_driver
from meta_train.checkpoint import FILES, _check_manifest

THREE = [*HYPER, "distributed.workers=3", "--quiet"]


@pytest.fixture(scope="module")
def cluster():
    """A head with no CPUs and 3 nodes of 1 CPU, on loopback."""
    with simulated_cluster(3) as cluster:
        yield cluster


def _driver(cluster, run_dir, *args):
    return start_driver(
        cluster.address, *THREE, f"run_dir={run_dir}", *args, cwd=REPO, stdout=subprocess.DEVNULL
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
    records = _records(run_dir)
    return records if len(records) > than else None


def test_a_run_goes_on_as_nodes_leave_and_join(cluster, tmp_path):
    """4 workers wanted on 3 nodes of 1 CPU: the run starts with the 3 the cluster has room
    for; a 4th node → the 4th worker computes; a node removed → the other 3 go on within
    30 s, its stream with them (no room to restart it); a node added → the lost worker
    restarts there and computes within 3 steps of joining. Every stream's windows arrive
    once each, in order."""
    run_dir = tmp_path / "run"
    driver = _driver(cluster, run_dir, "num_steps=1000000", "distributed.workers=4")

    def steps_where(condition, after=0):  # once there are 3
        found = [r for r in _records(run_dir)[after:] if condition(r)]
        return found if len(found) >= 3 else None

    started = _until(lambda: _more_records(run_dir, 2), driver, "3 outer steps")
    assert {r.workers_live for r in started} == {3}
    assert all(len(r.workers) == 4 for r in started)  # 4 streams on 3 workers
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    grown = _until(lambda: steps_where(lambda r: len(set(r.workers)) == 4), driver, "4")
    lost = grown[-1].workers[0]
    cluster.remove_node(_node_of(cluster, grown[-1].pids[0]))
    removed, seen = time.monotonic(), len(_records(run_dir))
    went_on = _until(lambda: steps_where(lambda r: r.workers_live == 3, seen), driver, "3 live")
    assert time.monotonic() - removed < 30 + 5  # the target, and the polling's slack
    assert {w for r in went_on for w in r.workers} == {0, 1, 2, 3} - {lost}
    assert all(len(r.workers) == 4 for r in went_on)  # the lost stream goes on too
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    back = went_on[-1].step
    joined = _until(
        lambda: steps_where(lambda r: r.workers_live == 4, back), driver, "the rejoining"
    )[0].step
    computing = _until(
        lambda: steps_where(lambda r: lost in r.workers, back), driver, "its estimate"
    )
    assert computing[0].step - joined <= 3
    assert computing[0].worker_restarts >= 1
    driver.send_signal(signal.SIGINT)
    assert driver.wait(timeout=60) == 130, driver.stderr.read()[-3000:]
    records = _records(run_dir)
    assert [r.step for r in records] == list(range(1, len(records) + 1))
    _windows_of_each_stream_once_in_order(records)


def test_a_node_lost_in_the_last_steps_does_not_hang_the_run(cluster, tmp_path):
    """The worker of one node is stopped (SIGSTOP) in the run's last steps, so every step
    waits for it, then its node is removed: the run finishes every step."""
    run_dir, steps = tmp_path / "run", 40
    driver = _driver(cluster, run_dir, f"num_steps={steps}")
    last = _until(lambda: _more_records(run_dir, steps - 6), driver, "the last steps")[-1]
    os.kill(last.pids[0], signal.SIGSTOP)
    time.sleep(1.0)  # the driver now waits for the stopped worker
    waiting = len(_records(run_dir))
    cluster.remove_node(_node_of(cluster, last.pids[0]))
    assert driver.wait(timeout=60) == 0, driver.stderr.read()[-3000:]
    records = _records(run_dir)
    assert waiting < steps, "the run ended before the node was removed"
    assert [r.step for r in records] == list(range(1, steps + 1))
    assert records[-1].workers_live == 2
    _windows_of_each_stream_once_in_order(records)


def test_the_death_of_the_drivers_own_node_is_one_error_line(tmp_path):
    """The raylet of the driver's node (the head) killed: the driver ends with one error
    line within 90 s, its checkpoints intact (a killed driver's resume is
    test_distributed's)."""
    fast = {"health_check_period_ms": 1000, "health_check_failure_threshold": 2}
    with simulated_cluster(1, system_config=fast) as doomed:  # a dead node seen in ~2 s
        run_dir = tmp_path / "run"
        driver = _driver(
            doomed, run_dir, "num_steps=1000000", "checkpoint_every=5", "distributed.workers=1"
        )
        _until(lambda: _more_records(run_dir, 10), driver, "10 outer steps")
        os.kill(doomed.head_node.all_processes["raylet"][0].process.pid, signal.SIGKILL)
        assert driver.wait(timeout=90) == 1
        lines = driver.stderr.read().strip().splitlines()
    assert lines == [
        "error: this driver's Ray node died (its raylet is gone), so no worker can be reached; "
        "the checkpoints are intact: continue with --resume"
    ]
    saved = [p for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()]
    assert saved
    for checkpoint in saved:  # every file as orbax wrote it: what --resume reads
        assert (checkpoint / FILES).exists()
        _check_manifest(checkpoint)
