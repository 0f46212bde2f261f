"""Meta-training on a Ray cluster whose nodes leave and join (``soak``), against the same run
on one node measured in the same invocation.

Each schedule starts a cluster of simulated nodes on this machine (``ray.cluster_utils``, a
head without CPUs and ``nodes`` nodes of one CPU each, every address on 127.0.0.1) and a
driver (``python -m meta_train --ray-address ...``, one worker per node) of cheap steps
(HyperAdam on the quadratic). At steps drawn from the schedule's seed, a random node is
removed (one running a worker) or a node added (never fewer than one, never more than
``nodes``). Reported per
schedule: estimates per second against the one-node run, the driver's resident memory over
the run (growth from its steps 20–30% to its steps 90–100%, after the start-up's compiling
and before the final export), steps lost or duplicated (from
``metrics.jsonl``: steps ``1..N`` once each, every stream's windows once each in order), the
longest time between two steps, and for each event how long until the driver had noticed
(a removal) or the new worker had computed an estimate (an addition), in seconds and steps,
and for an addition the steps between the worker's joining and its first estimate.
A run with no new step for ``hang_after`` seconds counts as hung and is killed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pathlib
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

from meta_train.metrics_log import MetricsLog, StepRecord

CHEAP = [  # about 50 outer steps a second on 4 nodes (185 on one: an estimate per step)
    "optimizer.architecture=HyperAdam",
    "optimizer.hparams={lr: 0.001}",
    "task.name=quadratic",
    "task.family=null",
    "estimator.num_particles=16",
    "estimator.sigma=0.1",
    "estimator.window=100",
    "estimator.schedule={kind: constant, min_length: 1000, max_length: 1000}",
    "outer.learning_rate=0.05",
    "checkpoint_every=200",
]
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
LOOPBACK = {"node_ip_address": "127.0.0.1"}


def start_driver(address: str, *args: str, **popen) -> subprocess.Popen:
    """``python -m meta_train --ray-address address *args`` in a new process, which joins the
    cluster as ``ENV`` says (loopback, no token); its stdout and stderr are text pipes unless
    ``popen`` (``subprocess.Popen``'s keywords) says otherwise."""
    return subprocess.Popen(
        [sys.executable, "-m", "meta_train", "--ray-address", address, *args],
        env={**os.environ, **ENV},
        **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen},
    )


@contextlib.contextmanager
def simulated_cluster(nodes: int, system_config: dict | None = None) -> Iterator:
    """A Ray cluster on this machine (``ray.cluster_utils.Cluster``): a head without CPUs,
    so that no worker shares a driver's node, and ``nodes`` nodes of one CPU, all on
    127.0.0.1 without token authentication (``ENV``, which their processes inherit);
    ``system_config``: Ray's internal settings for the whole cluster."""
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    head = {"num_cpus": 0, "include_dashboard": False, **LOOPBACK}
    if system_config:
        head["_system_config"] = system_config
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        for _ in range(nodes):
            cluster.add_node(num_cpus=1, **LOOPBACK)
        yield cluster
    finally:
        cluster.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _rss_mib(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def _schedule(seed: int, steps: int, events: int, nodes: int) -> list[tuple[int, str]]:
    """``events`` (step, "remove" | "add") pairs at distinct steps in ``[steps/10, 0.8 steps)``
    (the last fifth leaves an addition's worker time to start);
    a removal when every node is up, an addition when one is left, else either."""
    rng = random.Random(seed)
    at = sorted(rng.sample(range(steps // 10, 4 * steps // 5), events))
    up, out = nodes, []
    for step in at:
        kind = "remove" if up == nodes else "add" if up == 1 else rng.choice(["remove", "add"])
        up += 1 if kind == "add" else -1
        out.append((step, kind))
    return out


def _check(records: list[StepRecord], steps: int) -> tuple[int, int]:
    """(steps lost, steps or windows duplicated) in a finished run's records."""
    seen = [r.step for r in records]
    lost = len(set(range(1, steps + 1)) - set(seen))
    duplicated = len(seen) - len(set(seen))
    for stream in {s for r in records for s in r.streams}:
        windows = [
            w for r in records for s, w in zip(r.streams, r.windows, strict=True) if s == stream
        ]
        duplicated += len(windows) - len(set(windows))
        lost += max(windows) + 1 - len(set(windows))
    return lost, duplicated


def _run(nodes: int, steps: int, plan: list[tuple[int, str]], hang_after: float, overrides) -> dict:
    """One driver on a fresh cluster of ``nodes`` nodes, following ``plan``."""
    with simulated_cluster(nodes) as cluster, tempfile.TemporaryDirectory() as tmp:
        run_dir = pathlib.Path(tmp) / "run"
        args = [*CHEAP, f"distributed.workers={nodes}", f"num_steps={steps}", *overrides]
        driver = start_driver(cluster.address, *args, f"run_dir={run_dir}", f"log_every={steps}")
        said: list[tuple[float, str]] = []  # (when, a line of the driver's): its notes
        errors: list[tuple[float, str]] = []  # drained as they come: a full pipe would block
        for stream, lines in ((driver.stdout, said), (driver.stderr, errors)):
            threading.Thread(
                target=lambda s=stream, out=lines: out.extend((time.monotonic(), x) for x in s),
                daemon=True,
            ).start()
        metrics = MetricsLog(run_dir / "metrics.jsonl")
        arrived: dict[int, float] = {}  # step -> when this process first saw it
        memory: list[tuple[int, float]] = []  # (the last step seen, MiB)
        events, todo, began = [], list(plan), time.monotonic()
        last_seen, hung, next_sample = began, False, began
        while driver.poll() is None:
            now = time.monotonic()
            records = metrics.read()
            new = [r.step for r in records if r.step not in arrived]
            arrived.update(dict.fromkeys(new, now))
            last_seen = now if new else last_seen
            if now >= next_sample and (rss := _rss_mib(driver.pid)) is not None:
                memory.append((len(arrived), rss))
                next_sample = now + 0.5
            if todo and records and records[-1].step >= todo[0][0]:
                step, kind = todo.pop(0)
                events.append(_event(cluster, kind, step, now, records[-1]))
            if now - last_seen > hang_after:
                hung = True
                driver.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        driver.wait()
        wall = time.monotonic() - began
        records = metrics.read()
        time.sleep(0.5)  # the readers' last lines
        error = "".join(line for _, line in errors).strip()
    for event in events:
        _settle(event, records, arrived, said)
    lost, duplicated = _check(records, steps) if records else (steps, 0)
    times = [arrived[s] for s in sorted(arrived)]
    early = [m for step, m in memory if 0.2 * steps <= step < 0.3 * steps]
    late = [m for step, m in memory if 0.9 * steps <= step < steps]
    return {
        "nodes": nodes,
        "steps": steps,
        "returncode": driver.returncode,
        "hung": hung,
        "error": error.splitlines()[-1] if error else "",
        "seconds": wall,
        # from the first step to the last, as this process saw them (not the start-up)
        "estimates_per_s": sum(r.estimates for r in records[1:]) / (times[-1] - times[0]),
        "steps_lost": lost,
        "steps_duplicated": duplicated,
        "longest_gap_s": max((b - a for a, b in itertools.pairwise(times)), default=0),
        "memory_mib_early": statistics.median(early) if early else None,
        "memory_mib_end": statistics.median(late) if late else None,
        "memory_growth": (statistics.median(late) / statistics.median(early) - 1)
        if early and late
        else None,
        "events": events,
    }


def _parent(pid: int) -> int | None:
    with contextlib.suppress(OSError, StopIteration):
        status = pathlib.Path(f"/proc/{pid}/status").read_text().splitlines()
        return int(next(line.split()[1] for line in status if line.startswith("PPid:")))
    return None


def _event(cluster, kind: str, step: int, now: float, last: StepRecord) -> dict:
    """Removes a random node among those running a worker of the last step (any node if
    none does), or adds one; what the driver must then react to."""
    if kind == "remove":
        nodes = sorted(cluster.worker_nodes, key=lambda n: n.node_id)
        parents = {_parent(pid): w for pid, w in zip(last.pids, last.workers, strict=True)}
        busy = [n for n in nodes if n.all_processes["raylet"][0].process.pid in parents]
        node = random.Random(step).choice(busy or nodes)
        worker = parents.get(node.all_processes["raylet"][0].process.pid)
        cluster.remove_node(node)
    else:
        worker = None
        cluster.add_node(num_cpus=1, **LOOPBACK)
    event = {"kind": kind, "at_step": last.step, "time": now, "live": last.workers_live}
    return event | ({"worker": worker} if kind == "remove" else {})


def _settle(
    event: dict,
    records: list[StepRecord],
    arrived: dict[int, float],
    said: list[tuple[float, str]],
) -> None:
    """How long after ``event`` the driver saw it. A removal: its note that the node's
    worker left, or (when Ray restarted the worker elsewhere before its next request) the
    first answer of that worker from a new process. An addition: the first step with an
    answer of a worker absent at the event, and the steps from the worker's joining (live
    workers growing) to that answer."""
    at, start = event["at_step"], event.pop("time")
    workers, pids = (
        (records[at - 1].workers, records[at - 1].pids) if at <= len(records) else ([], [])
    )
    later = records[at:]
    seen_at = None
    if event["kind"] == "remove" and event["worker"] is not None:
        k = event["worker"]
        old = {p for p, w in zip(pids, workers, strict=True) if w == k}
        note = f"Ray worker {k} left"
        left = [t for t, line in said if t >= start and line.startswith(note)]
        moved = [
            arrived[r.step]
            for r in later
            if any(w == k and p not in old for p, w in zip(r.pids, r.workers, strict=True))
        ]
        seen_at = min([*left[:1], *moved[:1]], default=None)
    elif event["kind"] == "add":
        seen = next((r for r in later if set(r.workers) - set(workers)), None)
        pairs = zip(records[at - 1 :], later, strict=False)  # (previous, record)
        joined = next((r for p, r in pairs if r.workers_live > p.workers_live), None)
        event["computing_after_join_steps"] = seen.step - joined.step if seen and joined else None
        seen_at = arrived[seen.step] if seen else None
    event["noticed_after_s"] = seen_at - start if seen_at is not None else None
    event["noticed_after_steps"] = (
        sum(start < t <= seen_at for t in arrived.values()) if seen_at is not None else None
    )


def bench_soak(
    nodes: int = 4,
    steps: int = 2000,
    events: int = 6,
    schedules: int = 1,
    seed: int = 0,
    hang_after: float = 120.0,
    overrides=(),
) -> list[dict]:
    """The reference (one node, no events), then ``schedules`` runs on ``nodes`` nodes with
    ``events`` removals and additions each (schedule seeds ``seed``, ``seed + 1``, ...)."""
    reference = _run(1, steps, [], hang_after, overrides)
    print(f"one node: {reference['estimates_per_s']:.1f} estimates/s", flush=True)
    rows = [{"schedule": "one node", **reference, "ratio_to_one_node": 1.0}]
    for k in range(schedules):
        plan = _schedule(seed + k, steps, events, nodes)
        row = _run(nodes, steps, plan, hang_after, overrides)
        row = {"schedule": seed + k, **row}
        row["ratio_to_one_node"] = row["estimates_per_s"] / reference["estimates_per_s"]
        rows.append(row)
        removals = [e["noticed_after_s"] for e in row["events"] if e["kind"] == "remove"]
        joins = [e["noticed_after_s"] for e in row["events"] if e["kind"] == "add"]
        growth = row["memory_growth"]
        print(
            f"schedule {seed + k}: exit {row['returncode']}{' HUNG' if row['hung'] else ''}, "
            f"{row['ratio_to_one_node']:.2f}x one node, lost {row['steps_lost']}, duplicated "
            f"{row['steps_duplicated']}, longest gap {row['longest_gap_s']:.1f} s, memory "
            + (f"{growth:+.1%}" if growth is not None else "n/a")
            + f"; removals noticed after {_fmt(removals)} s, new workers computing after "
            f"{_fmt(joins)} s",
            flush=True,
        )
    return rows


def _fmt(values) -> str:
    return "[" + ", ".join("-" if v is None else f"{v:.1f}" for v in values) + "]"
