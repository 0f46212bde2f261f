"""``unroll``: inner steps per second of a meta-training window (an antithetic population of
8 pairs, 20 steps, one compiled ``lax.scan``) with an untrained ``MLPLOpt`` as the inner
optimizer (the per-parameter MLP alone, and the default matrix-aware configuration),
relative to the same population trained by plain SGD through the same code; and the
flops of one inner step (XLA's cost analysis) relative to SGD's.

``compile``: seconds to lower and to compile that window's program (the unit meta-training
compiles once per task structure) for MLPLOpt, plain and in the shipped matrix-aware
configuration, relative to the same program with plain SGD (median over rounds, each
compiling a fresh program; the persistent compilation cache is not used); and, for each,
the compile seconds and the window's run time with the project's XLA options
(``meta_train.compile_cache.COMPILER_OPTIONS``) relative to XLA's defaults.

``scaling``: meta-training throughput (estimates/s) on 1, 2, ... Ray workers of an embedded
local Ray instance relative to 1 worker, the in-process trainer, and the learner's share of
the wall time (its update and publishing theta, while the workers wait).

``partition``: ``make demo``'s meta-training (its config, cut to ``--steps`` outer steps) on
its 2 Ray workers with ``distributed.partition: particles`` relative to ``streams``: wall
seconds, the workers' busy share, the compile seconds and the largest difference between
the two runs' final thetas (the estimates are the same up to float summation order). Each
run compiles afresh into a compilation cache of its own, which its workers share.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lopt
import tasks
from bench.lab.perf.timing import MATRIX_AWARE, per_round, time_call, xla_cost
from meta_train import MetaLoss, TruncationSchedule, Unroller
from meta_train.compile_cache import COMPILER_OPTIONS


@dataclasses.dataclass(frozen=True)
class _SGD(lopt.LearnedOptimizer):
    """Plain SGD as a 'learned optimizer' (theta = log learning rate): the unroll reference."""

    def init(self, key):
        return {"log_lr": jnp.log(jnp.float32(0.1))}

    def as_optax(self, theta, num_steps):
        return optax.with_extra_args_support(optax.sgd(jnp.exp(theta["log_lr"])))


def _window(task: tasks.Task, lo: lopt.LearnedOptimizer, pairs: int, window: int):
    """A meta-training window to time: the ``Unroller`` of ``window`` steps (no resets inside
    it), ``pairs`` antithetic pairs of ``lo``'s initial theta ``[2, pairs, ...]``, and the
    population they start."""
    schedule = TruncationSchedule("constant", 10_000, 10_000)
    unroller = Unroller(task, lo, schedule, MetaLoss(), window=window)
    theta = lo.init(jax.random.key(0))
    thetas = jax.tree.map(lambda x: jnp.broadcast_to(x, (2, pairs, *x.shape)), theta)
    return unroller, thetas, jax.jit(unroller.init)(jax.random.PRNGKey(0), thetas)


def bench_unroll(
    task_names: list[str], rounds: int = 7, pairs: int = 8, window: int = 20
) -> list[dict]:
    optimizers = {"sgd": _SGD(), "MLPLOpt": lopt.MLPLOpt.bare(), "MLPLOpt-orth": MATRIX_AWARE}
    steps = 2 * pairs * window
    rows = []
    for name in task_names:
        task = tasks.get(name)
        runners, flops = {}, {}
        for label, lo in optimizers.items():
            unroller, thetas, pop = _window(task, lo, pairs, window)
            unroll = (
                jax.jit(unroller.unroll)
                .lower(thetas, pop)
                .compile(compiler_options=COMPILER_OPTIONS)
            )
            flops[label] = xla_cost(unroll)[0]
            jax.block_until_ready(unroll(thetas, pop))
            runners[label] = functools.partial(time_call, unroll, thetas, pop)
        samples = {label: [] for label in runners}
        for _ in range(rounds):
            for label, run in runners.items():
                samples[label].append(run())
        for label in optimizers:
            row = {
                "task": name,
                "optimizer": label,
                "inner_steps_per_window": steps,
                "steps_per_s": steps / min(samples[label]),
                "cost_ratio_to_sgd": per_round(samples[label], samples["sgd"]),
                # XLA's cost analysis counts a loop's body once: a ratio of one step's work.
                "flops_ratio_to_sgd": flops[label] / flops["sgd"],
            }
            rows.append(row)
            print(
                f"{name:<20} {label:<13} {row['steps_per_s']:9.0f} steps/s  cost "
                f"{row['cost_ratio_to_sgd']:5.2f}x SGD  flops per step "
                f"{row['flops_ratio_to_sgd']:5.2f}x SGD's",
                flush=True,
            )
    return rows


def bench_compile(task_names: list[str], rounds: int = 3, pairs: int = 8, window: int = 20):
    optimizers = {"sgd": _SGD(), "MLPLOpt": lopt.MLPLOpt.bare(), "MLPLOpt-orthogonal": MATRIX_AWARE}
    levels = {"xla-default": None, "lopt": COMPILER_OPTIONS}
    rows = []
    for name in task_names:
        task = tasks.get(name)
        runs = {
            (o, lv): {"lower": [], "compile": [], "run": []} for o in optimizers for lv in levels
        }
        for _ in range(rounds):
            for (label, level), seconds in runs.items():
                lo = optimizers[label]
                unroller, thetas, pop = _window(task, lo, pairs, window)  # a fresh program
                began = time.perf_counter()
                lowered = jax.jit(unroller.unroll).lower(thetas, pop)
                lowered_at = time.perf_counter()
                unroll = lowered.compile(compiler_options=levels[level])
                seconds["lower"].append(lowered_at - began)
                seconds["compile"].append(time.perf_counter() - lowered_at)
                jax.block_until_ready(unroll(thetas, pop))
                seconds["run"].append(min(time_call(unroll, thetas, pop) for _ in range(5)))
        for label in optimizers:
            m, d = runs[(label, "lopt")], runs[(label, "xla-default")]
            ref = runs[("sgd", "lopt")]
            row = {
                "task": name,
                "optimizer": label,
                "lower_s": statistics.median(m["lower"]),
                "compile_s": statistics.median(m["compile"]),
                "window_ms": 1e3 * statistics.median(m["run"]),
                "xla_default_compile_s": statistics.median(d["compile"]),
                "xla_default_window_ms": 1e3 * statistics.median(d["run"]),
                "compile_ratio_to_xla_default": per_round(m["compile"], d["compile"]),
                "run_ratio_to_xla_default": per_round(m["run"], d["run"]),
                "total_ratio_to_sgd": per_round(
                    [a + b for a, b in zip(m["lower"], m["compile"], strict=True)],
                    [a + b for a, b in zip(ref["lower"], ref["compile"], strict=True)],
                ),
            }
            rows.append(row)
            print(
                f"{name:<14} {label:<19} lower {row['lower_s']:5.2f} s  compile "
                f"{row['compile_s']:6.2f} s ({row['compile_ratio_to_xla_default']:4.2f}x XLA's "
                f"default level)  window {row['window_ms']:6.1f} ms "
                f"({row['run_ratio_to_xla_default']:4.2f}x)  {row['total_ratio_to_sgd']:5.2f}x SGD",
                flush=True,
            )
    return rows


def _throughput(cfg, warmup: int) -> dict:
    """Estimates/s and the learner's share of the wall time of one run, after ``warmup``
    steps (compiles, worker start-up)."""
    import tempfile

    from meta_train import meta_train

    with tempfile.TemporaryDirectory() as run_dir:
        cfg = dataclasses.replace(cfg, run_dir=run_dir)
        records = meta_train(cfg, verbose=False).history[warmup:]
    seconds = sum(r.seconds for r in records)
    return {
        "estimates_per_s": sum(r.estimates for r in records) / seconds,
        "learner_share": sum(r.learner_seconds for r in records) / seconds,
        "stale": sum(r.stale for r in records),
    }


def bench_scaling(
    workers: list[int], rounds: int = 3, steps: int = 100, warmup: int = 20, overrides=()
) -> list[dict]:
    """Meta-training throughput on k Ray workers (an embedded Ray instance kept up across
    runs) relative to 1 worker, each round running every k back to back; and the
    in-process trainer (no Ray, all cores) as a second reference."""
    import logging

    import ray

    from meta_train import load_config

    base = [
        "optimizer.hparams={hidden: [4, 4]}",
        "task.name=mlp-digits",
        "task.family=null",
        "estimator.num_particles=8",
        "estimator.window=20",
        "estimator.schedule={kind: loguniform, min_length: 100, max_length: 1000}",
        f"num_steps={warmup + steps}",
        f"checkpoint_every={warmup + steps}",
        *overrides,
    ]
    configs = {0: load_config(None, base)}
    configs.update({k: load_config(None, [*base, f"distributed.workers={k}"]) for k in workers})
    samples: dict[int, list[dict]] = {k: [] for k in configs}
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # stay on loopback
    ray.init(
        address="local",
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        logging_level=logging.WARNING,
        _node_ip_address="127.0.0.1",
    )
    try:
        for r in range(rounds):
            for k, cfg in configs.items():
                samples[k].append(_throughput(cfg, warmup))
                label = f"{k} worker(s)" if k else "in-process"
                print(
                    f"round {r + 1}/{rounds}  {label:<12} "
                    f"{samples[k][-1]['estimates_per_s']:7.1f} estimates/s  learner "
                    f"{100 * samples[k][-1]['learner_share']:4.1f}% of wall time",
                    flush=True,
                )
    finally:
        ray.shutdown()
    rate = lambda k: [x["estimates_per_s"] for x in samples[k]]
    rows = []
    for k in configs:
        rows.append(
            {
                "workers": k or "in-process",
                "estimates_per_s": statistics.median(rate(k)),
                "speedup_vs_1_worker": statistics.median(
                    a / b for a, b in zip(rate(k), rate(min(workers)), strict=True)
                ),
                "ratio_to_in_process": statistics.median(
                    a / b for a, b in zip(rate(k), rate(0), strict=True)
                ),
                "learner_share": statistics.median(x["learner_share"] for x in samples[k]),
                "stale_estimates": sum(x["stale"] for x in samples[k]),
            }
        )
    for row in rows:
        print(
            f"{row['workers']!s:>10}: {row['estimates_per_s']:7.1f} estimates/s  "
            f"{row['speedup_vs_1_worker']:4.2f}x 1 worker  "
            f"{row['ratio_to_in_process']:4.2f}x in-process  "
            f"learner {100 * row['learner_share']:4.1f}% of wall time"
        )
    return rows


def bench_partition(steps: int = 300, overrides=()) -> list[dict]:
    """The demo's meta-training for ``steps`` outer steps with each ``distributed.partition``
    (see the module docstring), ``particles`` first; one embedded Ray instance for both."""
    import tempfile

    from meta_train import compile_cache, load_config, meta_train
    from meta_train.distributed import ray_session

    base = ["distributed.partition=streams", f"num_steps={steps}", f"checkpoint_every={steps}"]
    cfg = load_config("demo", [*base, *overrides])
    runs = {}
    with ray_session(cfg.distributed, verbose=False), tempfile.TemporaryDirectory() as d:
        for partition in ("particles", "streams"):
            compile_cache.enable(f"{d}/{partition}/cache")  # empty: every run compiles
            part = dataclasses.replace(cfg.distributed, partition=partition)
            run = dataclasses.replace(cfg, distributed=part, run_dir=f"{d}/{partition}/run")
            start = time.perf_counter()
            result = meta_train(run, verbose=False)
            runs[partition] = (time.perf_counter() - start, result)
    rows = []
    for partition, (seconds, result) in runs.items():
        records = result.history
        busy = sum(sum(r.worker_seconds) for r in records)
        rows.append(
            {
                "partition": partition,
                "steps": steps,
                "seconds": seconds,
                "ratio_to_streams": seconds / runs["streams"][0],
                "workers_busy": busy / (cfg.distributed.workers * sum(r.seconds for r in records)),
                "compile_seconds": sum(r.compile_seconds for r in records),
                "final_meta_loss": records[-1].meta_loss,
            }
        )
    thetas = [jax.tree.leaves(result.theta) for _, result in runs.values()]
    gap = max(float(np.max(np.abs(a - b))) for a, b in zip(*thetas, strict=True))
    for row in rows:
        row["max_theta_difference"] = gap
        print(
            f"{row['partition']:>9}: {row['seconds']:6.0f} s ({row['ratio_to_streams']:.2f}x "
            f"streams), workers busy {row['workers_busy']:.0%}, compiling "
            f"{row['compile_seconds']:.0f} worker-s; final thetas differ by <= {gap:.2g}",
            flush=True,
        )
    return rows
