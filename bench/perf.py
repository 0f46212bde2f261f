"""Performance benchmarks. Every figure is a ratio against a reference measured in the same run.

    python -m bench perf update [--sizes 270k,1M,4M,16M] [--out perf-update.json]
    python -m bench perf unroll [--tasks mlp-digits,...] [--out perf-unroll.json]
    python -m bench perf sweep [--task mlp-digits] [--steps 200] [--out perf-sweep.json]
    python -m bench perf scaling [--workers 1,2] [--rounds 3] [--out perf-scaling.json] [overrides]
    python -m bench perf compile [--tasks mlp-digits,conv-digits] [--out perf-compile.json]
    python -m bench perf compare [--suite indist] [--optimizer X ...] [--workers 2] [--out perf-compare.json]
    python -m bench perf partition [--steps 300] [--out perf-partition.json] [overrides]
    python -m bench perf demo [--out perf-demo.json] [overrides]

``update``: the jitted update step of each learned-optimizer architecture (randomly
initialized; cost does not depend on theta's values) on MLP-shaped parameter trees, as a
ratio to ``optax.adam``'s (median over rounds of the ratio to the faster of the Adam
samples taken just before and just after it), the fastest time per step, and optimizer-state floats per parameter; and, from
XLA's cost analysis of each compiled step, its flops and bytes of memory traffic per
parameter and the floor they set: the step's flops at this machine's matrix-product rate
(measured in the same run) or its bytes at the rate Adam's step moves memory, whichever
takes longer, as a ratio to Adam's time.

``sweep``: a 14-point × 3-seed Adam learning-rate sweep as one vmapped run (``bench.runner``)
relative to its 42 configurations run one at a time, and to the 42 as one vmapped run of one
seed; and the flop rate each reaches (XLA's cost analysis of one step) against this
machine's matrix-product rate.

``scaling``: meta-training throughput (estimates/s) on 1, 2, ... Ray workers of an embedded
local Ray instance relative to 1 worker, the in-process trainer, and the learner's share of
the wall time (its update and publishing theta, while the workers wait).

``unroll``: inner steps per second of a meta-training window (an antithetic population of
8 pairs, 20 steps, one compiled ``lax.scan``) with an untrained ``MLPLOpt`` as the inner
optimizer (the per-parameter MLP alone, and the default matrix-aware configuration),
relative to the same population trained by plain SGD through the same code; and the
flops of one inner step (XLA's cost analysis) relative to SGD's.

``compare``: ``make demo``'s benchmark (tuned Adam and cosine Adam against the given
optimizers, 2 seeds) with its units run on ``--workers`` Ray workers of one core each
(``bench.parallel``), relative to the same comparison in one process.

``partition``: ``make demo``'s meta-training (its config, cut to ``--steps`` outer steps) on
its 2 Ray workers with ``distributed.partition: particles`` relative to ``streams``: wall
seconds, the workers' busy share, the compile seconds and the largest difference between
the two runs' final thetas (the estimates are the same up to float summation order). Each
run compiles afresh into a compilation cache of its own, which its workers share.

``demo``: ``make demo``'s two phases (meta-training, and the benchmark of its optimizer and
initialization) from an empty compilation cache: wall seconds, and the CPU seconds the
whole machine was busy meanwhile (``/proc/stat``: run it on an otherwise idle Linux
machine) as a share of the machine's cores over that wall time. The CPU seconds over the
cores are the least wall time the same work could take; meta-training's compile seconds
(summed over workers, from ``metrics.jsonl``) are the part of it that compiling takes.

``compile``: seconds to lower and to compile that window's program (the unit meta-training
compiles once per task structure) for MLPLOpt, plain and in the shipped matrix-aware
configuration, relative to the same program with plain SGD (median over rounds, each
compiling a fresh program; the persistent compilation cache is not used); and, for each,
the compile seconds and the window's run time with the project's XLA options
(``meta_train.compile_cache.COMPILER_OPTIONS``) relative to XLA's defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import pathlib
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lopt
import tasks
from meta_train import MetaLoss, TruncationSchedule, Unroller
from meta_train.compile_cache import COMPILER_OPTIONS

# MLPLOpt's defaults, the shipped optimizer's architecture (lopt.pretrained("mlplopt-mix")):
# orthogonalized matrix steps, a nominal Adam term, a learned schedule, no growth.
MATRIX_AWARE = lopt.MLPLOpt()
SIZES = {"270k": 260, "1M": 500, "4M": 1000, "16M": 2000}  # name -> width of 4 square layers


def mlp_params(width: int, layers: int = 4) -> dict:
    keys = jax.random.split(jax.random.key(0), layers)
    return {
        f"layer{i}": {"w": jax.random.normal(k, (width, width)) / width**0.5, "b": jnp.zeros(width)}
        for i, k in enumerate(keys)
    }


def num_floats(tree) -> int:
    return sum(x.size for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating))


def _xla_cost(compiled) -> tuple[float, float]:
    """``(flops, bytes accessed)`` of one call of a compiled program, by XLA's cost analysis."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost  # a list of one on older jax
    return cost.get("flops", 0.0), cost.get("bytes accessed", 0.0)


class _Timer(NamedTuple):
    run: Callable[[int], float]  # n -> seconds per step, over n steps
    state: optax.OptState  # a fresh state, for its size
    flops: float  # per step, by XLA's cost analysis
    bytes: float  # memory read and written per step, likewise


def _timer(tx: optax.GradientTransformation, params, grads) -> _Timer:
    """Times one update step (state carried over, buffers donated)."""
    step = jax.jit(lambda g, s, p: tx.update(g, s, p, value=jnp.float32(1.0)), donate_argnums=1)
    state = jax.tree.map(jnp.copy, tx.init(params))  # distinct buffers, donatable
    update = step.lower(grads, state, params).compile()  # compiled once, timed and analysed
    flops, nbytes = _xla_cost(update)

    def run(n: int) -> float:
        nonlocal state
        start = time.perf_counter()
        for _ in range(n):
            _, state = update(grads, state, params)
        jax.block_until_ready(state)
        return (time.perf_counter() - start) / n

    run(3)  # warm up
    return _Timer(run, tx.init(params), flops, nbytes)


def matmul_gflops(size: int = 1024, rounds: int = 5) -> float:
    """This machine's float32 matrix-product rate in GFLOP/s (the fastest of ``rounds``
    products of two ``size × size`` matrices): no computation here runs faster."""
    x = jax.random.normal(jax.random.key(0), (size, size))
    product = jax.jit(lambda a: a @ a)
    jax.block_until_ready(product(x))
    return 2 * size**3 / min(_seconds(product, x) for _ in range(rounds)) / 1e9


def bench_update(sizes: list[str], rounds: int = 7, min_seconds: float = 0.05) -> list[dict]:
    learned = {
        "MLPLOpt": lopt.MLPLOpt.bare(),
        "MLPLOpt-orth": MATRIX_AWARE,
        "VeLO": lopt.VeLO(),
        "sched-muon": lopt.LearnedSchedule(base="muon"),
    }
    optimizers = {
        "adam": optax.adam(1e-3),
        "muon": lopt.scheduled.BASES["muon"](),  # optax Muon on 2-D weights, Adam elsewhere
        **{name: lo.as_optax(lo.init(jax.random.key(0)), 10_000) for name, lo in learned.items()},
    }
    peak = matmul_gflops()
    print(f"matrix products: {peak:.0f} GFLOP/s (this machine's measured peak)", flush=True)
    rows = []
    for size in sizes:
        params = mlp_params(SIZES[size])
        grads = jax.tree.map(lambda p: 0.01 * jnp.ones_like(p), params)
        n = num_floats(params)
        timers = {name: _timer(tx, params, grads) for name, tx in optimizers.items()}
        adam = timers["adam"]
        steps = max(3, int(min_seconds / adam.run(3)))  # so that Adam's sample takes min_seconds
        samples = {name: [] for name in optimizers}
        ratios = {name: [] for name in optimizers}
        for _ in range(rounds):
            # Adam samples between all the others; each optimizer's time is a ratio to the
            # faster of the Adam samples on either side. Adam's step is short and
            # memory-bound, and what ran just before it (another optimizer's matrix
            # products) can slow it by tens of percent.
            before = adam.run(steps)
            for name, timer in timers.items():
                samples[name].append(timer.run(steps))
                after = adam.run(steps)
                ratios[name].append(samples[name][-1] / min(before, after))
                before = after
        t_adam = min(samples["adam"])
        for name, timer in timers.items():
            t = min(samples[name])
            # The shortest the step could take: its arithmetic at the matrix-product rate, or
            # its memory traffic at the rate Adam's step moves memory, whichever is longer.
            floor = max(timer.flops / (peak * 1e9), timer.bytes / adam.bytes * t_adam)
            row = {
                "size": size,
                "params": n,
                "optimizer": name,
                "ms": 1e3 * t,
                "ratio_to_adam": statistics.median(ratios[name]),
                "floor_ratio_to_adam": floor / t_adam,
                "flops_per_param": timer.flops / n,
                "bytes_per_param": timer.bytes / n,
                "gflops": timer.flops / t / 1e9,
                "state_floats_per_param": num_floats(timer.state) / n,
            }
            rows.append(row)
            print(
                f"{size:>5} {name:>12}  {row['ms']:8.3f} ms  {row['ratio_to_adam']:6.2f}x adam "
                f"(floor {row['floor_ratio_to_adam']:5.2f}x)  {row['flops_per_param']:6.0f} "
                f"flops/param at {row['gflops']:5.1f} GFLOP/s  {row['bytes_per_param']:4.0f} "
                f"bytes/param  {row['state_floats_per_param']:4.2f} state floats/param",
                flush=True,
            )
    return rows


@dataclasses.dataclass(frozen=True)
class _SGD(lopt.LearnedOptimizer):
    """Plain SGD as a 'learned optimizer' (theta = log learning rate): the unroll reference."""

    def init(self, key):
        return {"log_lr": jnp.log(jnp.float32(0.1))}

    def as_optax(self, theta, num_steps):
        return optax.with_extra_args_support(optax.sgd(jnp.exp(theta["log_lr"])))


def bench_unroll(
    task_names: list[str], rounds: int = 7, pairs: int = 8, window: int = 20
) -> list[dict]:
    schedule = TruncationSchedule("constant", 10_000, 10_000)  # no resets inside the timing
    optimizers = {"sgd": _SGD(), "MLPLOpt": lopt.MLPLOpt.bare(), "MLPLOpt-orth": MATRIX_AWARE}
    steps = 2 * pairs * window
    rows = []
    for name in task_names:
        task = tasks.get(name)
        runners, flops = {}, {}
        for label, lo in optimizers.items():
            unroller = Unroller(task, lo, schedule, MetaLoss(), window=window)
            theta = lo.init(jax.random.key(0))
            thetas = jax.tree.map(lambda x: jnp.broadcast_to(x, (2, pairs, *x.shape)), theta)
            pop = jax.jit(unroller.init)(jax.random.PRNGKey(0), thetas)
            unroll = (
                jax.jit(unroller.unroll)
                .lower(thetas, pop)
                .compile(compiler_options=COMPILER_OPTIONS)
            )
            flops[label] = _xla_cost(unroll)[0]
            jax.block_until_ready(unroll(thetas, pop))
            runners[label] = functools.partial(_seconds, unroll, thetas, pop)
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
                "cost_ratio_to_sgd": _per_round(samples[label], samples["sgd"]),
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
    schedule = TruncationSchedule("constant", 10_000, 10_000)
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
                unroller = Unroller(task, lo, schedule, MetaLoss(), window=window)  # fresh
                theta = lo.init(jax.random.key(0))
                thetas = jax.tree.map(lambda x: jnp.broadcast_to(x, (2, pairs, *x.shape)), theta)
                pop = jax.jit(unroller.init)(jax.random.PRNGKey(0), thetas)
                began = time.perf_counter()
                lowered = jax.jit(unroller.unroll).lower(thetas, pop)
                lowered_at = time.perf_counter()
                unroll = lowered.compile(compiler_options=levels[level])
                seconds["lower"].append(lowered_at - began)
                seconds["compile"].append(time.perf_counter() - lowered_at)
                jax.block_until_ready(unroll(thetas, pop))
                seconds["run"].append(min(_seconds(unroll, thetas, pop) for _ in range(5)))
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
                "compile_ratio_to_xla_default": _per_round(m["compile"], d["compile"]),
                "run_ratio_to_xla_default": _per_round(m["run"], d["run"]),
                "total_ratio_to_sgd": _per_round(
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


def _per_round(a: list[float], b: list[float]) -> float:
    """Median over rounds of the per-round ratio ``a / b``."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def _seconds(f, *args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(f(*args))
    return time.perf_counter() - start


def _throughput(cfg, warmup: int) -> dict:
    """Estimates/s and the learner's share of the wall time of one run, after ``warmup``
    steps (compiles, worker start-up)."""
    import tempfile

    from meta_train import meta_train

    with tempfile.TemporaryDirectory() as run_dir:
        cfg = dataclasses.replace(cfg, run_dir=run_dir)
        records = meta_train(cfg, verbose=False).history[warmup:]
    seconds = sum(r["seconds"] for r in records)
    return {
        "estimates_per_s": sum(r["estimates"] for r in records) / seconds,
        "learner_share": sum(r["learner_seconds"] for r in records) / seconds,
        "stale": sum(r["stale"] for r in records),
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
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)
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


def _step_flops(task: tasks.Task, tx: optax.GradientTransformation) -> float:
    """Flops of one training step of one configuration (batch drawn, gradient, update), by
    XLA's cost analysis of the step compiled alone."""
    from tasks.training import train_step

    step = train_step(task, optax.with_extra_args_support(tx))
    params = task.init(jax.random.key(0))
    carry = (params, tx.init(params))
    return _xla_cost(jax.jit(step).lower(carry, jax.random.key(1)).compile())[0]


def bench_sweep(task_name: str = "mlp-digits", steps: int = 200, rounds: int = 3) -> list[dict]:
    """A 14-point learning-rate grid × 3 seeds of Adam: one vmapped run (``bench.runner``;
    the seeds one after another inside it) against the 42 configurations run one at a time
    through the same compiled code for a single configuration, and against the 42 as one
    vmapped run of 42 configurations × 1 seed. Each is compiled before timing; each round
    times all three. From XLA's cost analysis of one training step, the flop rate each
    reached against this machine's matrix-product rate: the sweep's speedup cannot exceed
    that rate ÷ the one-at-a-time rate."""
    from bench import baselines, protocols, runner

    task, adam = tasks.get(task_name), baselines.get("adam")
    grid, seeds = protocols.lr_grid(), 3
    configs = len(grid) * seeds

    def sweep():
        runner.run(task, adam.tx, {"learning_rate": grid}, seeds, steps, eval_every=steps)

    def all_vmapped():
        lrs = np.tile(grid, seeds)
        runner.run(task, adam.tx, {"learning_rate": lrs}, 1, steps, eval_every=steps)

    def one_by_one():
        for lr in grid:
            for seed in range(seeds):
                runner.run(task, adam.tx, {"learning_rate": lr[None]}, 1, steps, steps, seed=seed)

    runs = {"one_by_one": one_by_one, "vmapped": sweep, "all_vmapped": all_vmapped}
    for f in runs.values():
        f()  # compile
    step_flops = _step_flops(task, adam.tx({"learning_rate": grid[0]}))
    peak = matmul_gflops()
    samples = {name: [] for name in runs}
    for _ in range(rounds):
        for name, f in runs.items():
            samples[name].append(_seconds(f))
    best = {name: min(v) for name, v in samples.items()}
    rate = {name: configs * steps * step_flops / t / 1e9 for name, t in best.items()}
    one = samples["one_by_one"]
    row = {
        "task": task_name,
        "configurations": configs,
        "steps": steps,
        **{f"{name}_seconds": t for name, t in best.items()},
        "speedup": statistics.median(a / b for a, b in zip(one, samples["vmapped"], strict=True)),
        "all_vmapped_speedup": statistics.median(
            a / b for a, b in zip(one, samples["all_vmapped"], strict=True)
        ),
        "flops_per_configuration_step": step_flops,
        **{f"{name}_gflops": r for name, r in rate.items()},
        "matmul_gflops": peak,
        "speedup_ceiling": peak / rate["one_by_one"],
    }
    print(
        f"{task_name}: {len(grid)} learning rates x {seeds} seeds x {steps} steps: vmapped "
        f"{best['vmapped']:.3f} s, one by one {best['one_by_one']:.3f} s: "
        f"{row['speedup']:.2f}x faster ({row['all_vmapped_speedup']:.2f}x with the seeds "
        f"vmapped too); {rate['one_by_one']:.1f}, {rate['vmapped']:.1f} and "
        f"{rate['all_vmapped']:.1f} GFLOP/s against {peak:.0f} for matrix products: a "
        f"ceiling of {row['speedup_ceiling']:.0f}x",
        flush=True,
    )
    return [row]


def bench_compare(suite: str, optimizers: list[str], workers: int) -> list[dict]:
    """``make demo``'s benchmark (``bench.demo.COMPARE``: tuned Adam and cosine Adam, 2
    seeds) of ``optimizers`` on ``suite``, its units run by ``workers`` Ray workers of one
    core each, relative to the same comparison in this process. Each compiles every program
    afresh: the parallel one in new worker processes first, then this process (the
    persistent compilation cache is off for both)."""
    import tempfile

    from bench import compare, demo
    from meta_train import compile_cache

    os.environ.pop(compile_cache.ENV, None)  # workers inherit nothing to read back

    def seconds(n):
        out = tempfile.mkdtemp(prefix="lopt-perf-compare-")
        start = time.perf_counter()
        compare.compare(optimizers, suite, out=out, progress=False, workers=n, **demo.COMPARE)
        return time.perf_counter() - start

    parallel = seconds(workers)
    serial = seconds(None)
    row = {
        "suite": suite,
        "optimizers": optimizers,
        "workers": workers,
        "parallel_seconds": parallel,
        "serial_seconds": serial,
        "speedup": serial / parallel,
    }
    print(
        f"{suite}: {', '.join(optimizers)} against {', '.join(demo.BASELINES)}: "
        f"{workers} Ray workers {parallel:.0f} s, this process {serial:.0f} s, "
        f"{serial / parallel:.2f}x faster",
        flush=True,
    )
    return [row]


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
        busy = sum(sum(r["worker_seconds"]) for r in records)
        rows.append(
            {
                "partition": partition,
                "steps": steps,
                "seconds": seconds,
                "ratio_to_streams": seconds / runs["streams"][0],
                "workers_busy": busy
                / (cfg.distributed.workers * sum(r["seconds"] for r in records)),
                "compile_seconds": sum(r["compile_seconds"] for r in records),
                "final_meta_loss": records[-1]["meta_loss"],
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


def _busy_cpu_seconds() -> float:
    """CPU seconds the machine has been busy since boot, summed over its cores: every state
    of ``/proc/stat``'s first line but idle and iowait."""
    ticks = [int(t) for t in pathlib.Path("/proc/stat").read_text().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def bench_demo(overrides=(), command: str = "python -m bench perf demo") -> list[dict]:
    """``make demo``'s phases (``bench.demo.train``, ``bench.demo.benchmark`` on its first
    suite) in a temporary run directory with an empty compilation cache: a row per phase and
    one for both."""
    import tempfile

    from bench import demo
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
        with open(f"{d}/run/metrics.jsonl") as f:
            steps = [json.loads(line) for line in f]
        suite = demo.SUITES[0]
        out = pathlib.Path(d) / suite
        phase("benchmark", lambda: demo.benchmark(paths, suite, cfg.distributed, out, command))
    both = {k: sum(r[k] for r in rows) for k in ("seconds", "cpu_seconds")}
    rows.append({"phase": "both", **both})
    rows[0]["compile_worker_seconds"] = sum(s["compile_seconds"] for s in steps)
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


def parser(prog: str = "python -m bench perf") -> argparse.ArgumentParser:
    """The command line of ``python -m bench perf``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_update = sub.add_parser("update", help="learned-optimizer update cost relative to Adam")
    p_update.add_argument(
        "--sizes", default=",".join(SIZES), help=f"comma-separated, of {list(SIZES)}"
    )
    p_update.add_argument("--rounds", type=int, default=7)
    p_update.add_argument("--out", default="perf-update.json")
    p_unroll = sub.add_parser("unroll", help="meta-training unroll throughput relative to SGD")
    p_unroll.add_argument(
        "--tasks", default="mlp-digits,mlp-mnist1d,autoencoder-digits,conv-digits"
    )
    p_unroll.add_argument("--rounds", type=int, default=7)
    p_unroll.add_argument("--out", default="perf-unroll.json")
    p_sweep = sub.add_parser("sweep", help="vmapped lr sweep relative to one run at a time")
    p_sweep.add_argument("--task", default="mlp-digits")
    p_sweep.add_argument("--steps", type=int, default=200)
    p_sweep.add_argument("--rounds", type=int, default=3)
    p_sweep.add_argument("--out", default="perf-sweep.json")
    p_scaling = sub.add_parser("scaling", help="meta-training throughput on 1, 2, ... Ray workers")
    p_scaling.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p_scaling.add_argument("--rounds", type=int, default=3)
    p_scaling.add_argument("--steps", type=int, default=100, help="timed outer steps per run")
    p_scaling.add_argument("--warmup", type=int, default=20, help="untimed first steps")
    p_scaling.add_argument("--out", default="perf-scaling.json")
    p_scaling.add_argument("overrides", nargs="*", help="meta_train config overrides")
    p_compile = sub.add_parser("compile", help="seconds to compile a meta-training window")
    p_compile.add_argument("--tasks", default="mlp-digits,conv-digits")
    p_compile.add_argument("--rounds", type=int, default=3)
    p_compile.add_argument("--out", default="perf-compile.json")
    p_compare = sub.add_parser(
        "compare", help="make demo's benchmark on Ray workers relative to in-process"
    )
    p_compare.add_argument("--suite", default="indist")
    p_compare.add_argument(
        "--optimizer",
        action="append",
        help="a .lopt file or pretrained name (repeatable; default: mlplopt-mix)",
    )
    p_compare.add_argument("--workers", type=int, default=2)
    p_compare.add_argument("--out", default="perf-compare.json")
    p_partition = sub.add_parser(
        "partition", help="the demo's meta-training split by particles relative to by streams"
    )
    p_partition.add_argument("--steps", type=int, default=300)
    p_partition.add_argument("--out", default="perf-partition.json")
    p_partition.add_argument("overrides", nargs="*", help="meta_train config overrides")
    p_demo = sub.add_parser("demo", help="make demo's wall time against its CPU time, per phase")
    p_demo.add_argument("--out", default="perf-demo.json")
    p_demo.add_argument("overrides", nargs="*", help="meta_train config overrides")
    return parser


def run_command(args: argparse.Namespace, cli: argparse.ArgumentParser, command: str) -> None:
    """Runs ``python -m bench perf`` with ``args`` parsed by ``cli``; ``command`` is the
    command line as typed, for the results files."""

    if args.command == "update":
        sizes = args.sizes.split(",")
        unknown = [s for s in sizes if s not in SIZES]
        if unknown:
            cli.error(f"unknown --sizes {unknown}; choose from {list(SIZES)}")
        rows = bench_update(sizes, rounds=args.rounds)
    elif args.command == "sweep":
        if args.task not in tasks.names():
            cli.error(f"unknown --task {args.task!r}; choose from {tasks.names()}")
        rows = bench_sweep(args.task, args.steps, args.rounds)
    elif args.command == "scaling":
        try:
            workers = [int(k) for k in args.workers.split(",")]
        except ValueError:
            cli.error(f"--workers must be comma-separated integers, got {args.workers!r}")
        if min(workers) < 1:
            cli.error(f"--workers must be >= 1, got {args.workers!r}")
        rows = bench_scaling(workers, args.rounds, args.steps, args.warmup, args.overrides)
    elif args.command == "compare":
        rows = bench_compare(args.suite, args.optimizer or ["mlplopt-mix"], args.workers)
    elif args.command == "partition":
        rows = bench_partition(args.steps, args.overrides)
    elif args.command == "demo":
        if not pathlib.Path("/proc/stat").exists():
            cli.error("perf demo reads the machine's CPU time from /proc/stat (Linux only)")
        rows = bench_demo(args.overrides, command)
    else:
        names = args.tasks.split(",")
        unknown = [n for n in names if n not in tasks.names()]
        if unknown:
            cli.error(f"unknown --tasks {unknown}; choose from {tasks.names()}")
        run = bench_unroll if args.command == "unroll" else bench_compile
        rows = run(names, rounds=args.rounds)
    report = {
        "benchmark": args.command,
        "command": command,
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "machine": platform.processor() or platform.machine(),
        "rows": rows,
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":  # the older form, python -m bench.perf
    from bench.__main__ import main

    sys.exit(main(["perf", *sys.argv[1:]]))
