"""``sweep``: a 14-point × 3-seed Adam learning-rate sweep as one vmapped run (``bench.runner``)
relative to its 42 configurations run one at a time, and to the 42 as one vmapped run of one
seed; and the flop rate each reaches (XLA's cost analysis of one step) against this
machine's matrix-product rate.

``steps``: the time per training step (batch, gradient, update) of each optimizer on each
task of a suite, as a ratio to a reference optimizer's (by default optax Muon with cosine
decay at 0.02, untuned) timed in the same round: the median over rounds, each optimizer's
run of ``--steps`` steps compiled once beforehand (``bench.runner``, one seed, as the
benchmark runs an untuned candidate). By default the candidates are ``LearnedMuon``'s
variants at their initial values (a step's cost does not depend on theta's values).

``compare``: ``make demo``'s benchmark (tuned Adam and cosine Adam against the given
optimizers, 2 seeds) with its units run on ``--workers`` Ray workers of one core each
(``bench.parallel``), relative to the same comparison in one process.
"""

from __future__ import annotations

import functools
import os
import statistics
import time

import jax
import numpy as np
import optax

import tasks
from bench.lab.perf.timing import matmul_gflops, time_call, xla_cost


def _step_flops(task: tasks.Task, tx: optax.GradientTransformation) -> float:
    """Flops of one training step of one configuration (batch drawn, gradient, update), by
    XLA's cost analysis of the step compiled alone."""
    from tasks.training import train_step

    step = train_step(task, optax.with_extra_args_support(tx))
    params = task.init(jax.random.key(0))
    carry = (params, tx.init(params))
    return xla_cost(jax.jit(step).lower(carry, jax.random.key(1)).compile())[0]


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
            samples[name].append(time_call(f))
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
    """``make demo``'s benchmark (``bench.lab.demo.COMPARE``: tuned Adam and cosine Adam, 2
    seeds) of ``optimizers`` on ``suite``, its units run by ``workers`` Ray workers of one
    core each, relative to the same comparison in this process. Each compiles every program
    afresh: the parallel one in new worker processes first, then this process (the
    persistent compilation cache is off for both)."""
    import tempfile

    from bench import compare
    from bench.lab import demo
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


# LearnedMuon's variants timed by ``steps`` when no optimizer is given.
LEARNED_MUON = {
    "learned-muon": dict(controller_hidden=16),
    "learned-muon-hyper": dict(controller_hidden=16, hypergradient=True),
    "learned-muon-term": dict(controller_hidden=16, term="momentum"),
}


def _program(opt, num_steps: int):
    """``(make_tx, hparams, evaluate)`` of ``runner.run`` for one untuned run of ``opt``."""
    from bench import baselines, compare, protocols

    if opt.baseline is None:
        return (*compare.learned_program(opt, num_steps), None)
    baseline = opt.baseline  # at its default point, even when given by a tuned name
    hparams = protocols.search_space(baselines.untuned(baseline), "lr-grid", trials=1)
    if baseline.schedule is not None:
        hparams["num_steps"] = np.array([num_steps], np.float32)
    return baseline.tx, hparams, baseline.evaluate


def bench_steps(
    suite: str,
    optimizers: list[str] | None = None,
    reference: str = "muon-cosine-default",
    steps: int = 100,
    rounds: int = 5,
) -> list[dict]:
    """Seconds per training step of each of ``optimizers`` (specs as ``bench compare``
    takes; default ``LEARNED_MUON`` at init) on each task of ``suite``, and its ratio to
    ``reference``'s in the same round (median over ``rounds``)."""
    import lopt
    from bench import compare, runner, suites

    if optimizers:
        candidates = compare.resolve_all([reference, *optimizers])
    else:
        at_init = lambda lo: lopt.Frozen(lo, lo.init(jax.random.key(0)), {})
        learned = [
            compare.from_frozen(name, at_init(lopt.LearnedMuon(**kw)))
            for name, kw in LEARNED_MUON.items()
        ]
        candidates = [compare.resolve(reference), *learned]
    rows = []
    for entry in suites.get(suite):
        task = entry.make()
        runs = {}
        for opt in candidates:
            make_tx, hparams, evaluate = _program(opt, steps)
            run = functools.partial(
                runner.run, task, make_tx, hparams, 1, steps, steps, 0, 1, evaluate
            )
            run()  # compiled once, here
            runs[opt.name] = run
        samples = {name: [] for name in runs}
        for _ in range(rounds):
            for name, run in runs.items():
                samples[name].append(run().seconds_per_step)
        ref = samples[candidates[0].name]
        for name in runs:
            row = {
                "task": entry.name,
                "optimizer": name,
                "reference": reference,
                "ms_per_step": 1e3 * min(samples[name]),
                "ratio": statistics.median(a / b for a, b in zip(samples[name], ref, strict=True)),
            }
            rows.append(row)
            print(
                f"{entry.name:>24} {name:>22}  {row['ms_per_step']:7.3f} ms/step  "
                f"{row['ratio']:5.2f}x {reference}",
                flush=True,
            )
    return rows
