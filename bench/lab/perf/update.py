"""``update``: the jitted update step of each learned-optimizer architecture (randomly
initialized; cost does not depend on theta's values) on MLP-shaped parameter trees, as a
ratio to ``optax.adam``'s (median over rounds of the ratio to the faster of the Adam
samples taken just before and just after it) and to optax Muon with cosine decay's (median
over rounds of the ratio to its sample of the same round), the fastest time per step, and optimizer-state floats per parameter; and, from
XLA's cost analysis of each compiled step, its flops and bytes of memory traffic per
parameter and the floor they set: the step's flops at this machine's matrix-product rate
(measured in the same run) or its bytes at the rate Adam's step moves memory, whichever
takes longer, as a ratio to Adam's time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

import lopt
from bench.lab.perf.timing import MATRIX_AWARE, matmul_gflops, xla_cost

SIZES = {"270k": 260, "1M": 500, "4M": 1000, "16M": 2000}  # name -> width of 4 square layers


def mlp_params(width: int, layers: int = 4) -> dict:
    keys = jax.random.split(jax.random.key(0), layers)
    return {
        f"layer{i}": {"w": jax.random.normal(k, (width, width)) / width**0.5, "b": jnp.zeros(width)}
        for i, k in enumerate(keys)
    }


def num_floats(tree) -> int:
    return sum(x.size for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating))


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
    flops, nbytes = xla_cost(update)

    def run(n: int) -> float:
        nonlocal state
        start = time.perf_counter()
        for _ in range(n):
            _, state = update(grads, state, params)
        jax.block_until_ready(state)
        return (time.perf_counter() - start) / n

    run(3)  # warm up
    return _Timer(run, tx.init(params), flops, nbytes)


def bench_update(sizes: list[str], rounds: int = 7, min_seconds: float = 0.05) -> list[dict]:
    learned = {
        "MLPLOpt": lopt.MLPLOpt.bare(),
        "MLPLOpt-orth": MATRIX_AWARE,
        "VeLO": lopt.VeLO(),
        "sched-muon": lopt.LearnedSchedule(base="muon"),
        "learned-muon": lopt.LearnedMuon(controller_hidden=16),
        "learned-muon-term": lopt.LearnedMuon(controller_hidden=16, term="momentum"),
    }
    optimizers = {
        "adam": optax.adam(1e-3),
        "muon": lopt.scheduled.BASES["muon"](),  # optax Muon on 2-D weights, Adam elsewhere
        "muon-cosine": optax.contrib.muon(optax.cosine_decay_schedule(0.02, 10_000)),
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
        muon_ratios = {name: [] for name in optimizers}
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
            for name in timers:  # the Muon sample of the same round
                muon_ratios[name].append(samples[name][-1] / samples["muon-cosine"][-1])
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
                "ratio_to_muon_cosine": statistics.median(muon_ratios[name]),
                "floor_ratio_to_adam": floor / t_adam,
                "flops_per_param": timer.flops / n,
                "bytes_per_param": timer.bytes / n,
                "gflops": timer.flops / t / 1e9,
                "state_floats_per_param": num_floats(timer.state) / n,
            }
            rows.append(row)
            print(
                f"{size:>5} {name:>17}  {row['ms']:8.3f} ms  {row['ratio_to_adam']:6.2f}x adam "
                f"{row['ratio_to_muon_cosine']:6.2f}x muon-cosine "
                f"(floor {row['floor_ratio_to_adam']:5.2f}x)  {row['flops_per_param']:6.0f} "
                f"flops/param at {row['gflops']:5.1f} GFLOP/s  {row['bytes_per_param']:4.0f} "
                f"bytes/param  {row['state_floats_per_param']:4.2f} state floats/param",
                flush=True,
            )
    return rows
