"""What every performance benchmark shares: timing a call, XLA's cost analysis of a compiled
program, this machine's matrix-product rate, and the matrix-aware optimizer measured.
"""

from __future__ import annotations

import statistics
import time

import jax

import lopt

# MLPLOpt's defaults, the shipped optimizer's architecture (lopt.pretrained("mlplopt-mix")):
# orthogonalized matrix steps, a nominal Adam term, a learned schedule, no growth.
MATRIX_AWARE = lopt.MLPLOpt()


def xla_cost(compiled) -> tuple[float, float]:
    """``(flops, bytes accessed)`` of one call of a compiled program, by XLA's cost analysis."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost  # a list of one on older jax
    return cost.get("flops", 0.0), cost.get("bytes accessed", 0.0)


def matmul_gflops(size: int = 1024, rounds: int = 5) -> float:
    """This machine's float32 matrix-product rate in GFLOP/s (the fastest of ``rounds``
    products of two ``size × size`` matrices): no computation here runs faster."""
    x = jax.random.normal(jax.random.key(0), (size, size))
    product = jax.jit(lambda a: a @ a)
    jax.block_until_ready(product(x))
    return 2 * size**3 / min(time_call(product, x) for _ in range(rounds)) / 1e9


def per_round(a: list[float], b: list[float]) -> float:
    """Median over rounds of the per-round ratio ``a / b``."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def time_call(f, *args) -> float:
    """Seconds of one call of ``f(*args)``, until its results are ready."""
    start = time.perf_counter()
    jax.block_until_ready(f(*args))
    return time.perf_counter() - start
