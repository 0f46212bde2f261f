"""``demo``: ``make demo``'s two phases (meta-training, and the benchmark of its optimizer and
initialization) from an empty compilation cache: wall seconds, and the CPU seconds the
whole machine was busy meanwhile (``/proc/stat``: run it on an otherwise idle Linux
machine) as a share of the machine's cores over that wall time. The CPU seconds over the
cores are the least wall time the same work could take; meta-training's compile seconds
(summed over workers, from ``metrics.jsonl``) are the part of it that compiling takes.
"""

from __future__ import annotations

import os
import pathlib
import time

from meta_train import metrics_log


def _busy_cpu_seconds() -> float:
    """CPU seconds the machine has been busy since boot, summed over its cores: every state
    of ``/proc/stat``'s first line but idle and iowait."""
    ticks = [int(t) for t in pathlib.Path("/proc/stat").read_text().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def bench_demo(overrides=(), command: str = "python -m bench perf demo") -> list[dict]:
    """``make demo``'s phases (``bench.lab.demo.train``, ``bench.lab.demo.benchmark`` on its first
    suite) in a temporary run directory with an empty compilation cache: a row per phase and
    one for both."""
    import tempfile

    from bench.lab import demo
    from meta_train import compile_cache, load_config

    cores = os.cpu_count() or 1
    rows = []

    def phase(name, fn):
        cpu, began = _busy_cpu_seconds(), time.perf_counter()
        out = fn()
        seconds, cpu = time.perf_counter() - began, _busy_cpu_seconds() - cpu
        rows.append({"phase": name, "seconds": seconds, "cpu_seconds": cpu})
        return out

    with tempfile.TemporaryDirectory() as d:
        compile_cache.enable(f"{d}/cache")
        cfg = load_config(demo.CONFIG, [f"run_dir={d}/run", *overrides])
        paths = phase("meta-training", lambda: demo.train(cfg))
        steps = metrics_log.read(f"{d}/run/metrics.jsonl")
        suite = demo.SUITES[0]
        out = pathlib.Path(d) / suite
        phase("benchmark", lambda: demo.benchmark(paths, suite, cfg.distributed, out, command))
    both = {k: sum(r[k] for r in rows) for k in ("seconds", "cpu_seconds")}
    rows.append({"phase": "both", **both})
    rows[0]["compile_worker_seconds"] = sum(s.compile_seconds for s in steps)
    for row in rows:
        row |= {
            "cores": cores,
            "utilization": row["cpu_seconds"] / (row["seconds"] * cores),
            "floor_seconds": row["cpu_seconds"] / cores,
        }
        print(
            f"{row['phase']:>13}: {row['seconds']:4.0f} s, {row['cpu_seconds']:5.0f} CPU-s "
            f"({row['utilization']:.0%} of {cores} cores; at 100% {row['floor_seconds']:.0f} s)",
            flush=True,
        )
    print(f"meta-training compiled for {rows[0]['compile_worker_seconds']:.0f} worker-s")
    return rows
