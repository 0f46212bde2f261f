"""Does training longer help? Final losses at 4× a suite's budget against 1×, and why not.

    python -m bench stability docs/benchmarks/x-heldout/results.json \\
        docs/benchmarks/x-heldout-4x/results.json

reads two ``bench compare`` reports of the same tasks (``<suite>`` and ``<suite>-4x``) and
prints, per task, each optimizer's final loss (the deciding metric) at both budgets and their
ratio 4× ÷ 1×, each baseline tuned at its own budget. Below 1: the longer run ends lower, as
it does for a stable optimizer; a final ÷ best of one noisy curve would not say that.

    python -m bench trace --optimizer mlplopt-mix --task deepmlp-mnist1d --steps 2000

follows one long run (:func:`trace`): the loss and the size of the weight matrices at ten
points, the first thing to look at when an optimizer diverges late.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import tasks
from bench.results import Results
from lopt.learned_muon import current_rate
from tasks.training import train_step


def ratios(one: Results, four: Results) -> dict[str, dict[str, float]]:
    """``{optimizer: {task: final loss at 4× ÷ final loss at 1×}}`` for the optimizers and
    tasks both reports have (a ``-4x`` suite's tasks are named like the base suite's)."""
    select = one.selection
    if four.selection != select:
        raise ValueError(f"the reports decide by different metrics: {select}, {four.selection}")
    tasks = [t for t in one.tasks if t in four.tasks]
    if not tasks:
        raise ValueError("the two reports have no task in common")
    names = [n for n in one.tasks[tasks[0]].optimizers if n in four.tasks[tasks[0]].optimizers]
    out: dict[str, dict[str, float]] = {}
    for name in names:
        out[name] = {}
        for t in tasks:
            short = one.tasks[t].optimizers[name].final(select)
            long = four.tasks[t].optimizers[name].final(select)
            out[name][t] = _ratio(long, short)
    return out


def _ratio(long: float, short: float) -> float:
    if not (np.isfinite(long) and np.isfinite(short)):
        return float("inf")  # a diverged run
    return long / short


def markdown(one: Results, four: Results) -> str:
    """The per-task table and, per optimizer, the median ratio and the tasks it got worse on."""
    r = ratios(one, four)
    names = list(r)
    tasks = list(next(iter(r.values())))
    lines = [
        "| task | " + " | ".join(f"{n} 4× ÷ 1×" for n in names) + " |",
        "| --- " * (1 + len(names)) + "|",
    ]
    for t in tasks:
        lines.append(f"| {t} | " + " | ".join(f"{r[n][t]:.2f}" for n in names) + " |")
    lines.append(
        "| median | " + " | ".join(f"{np.median(list(r[n].values())):.2f}" for n in names) + " |"
    )
    lines.append(
        "| worse at 4× | "
        + " | ".join(f"{sum(v > 1 for v in r[n].values())}/{len(tasks)}" for n in names)
        + " |"
    )
    return "\n".join(lines)


class TracePoint(NamedTuple):
    step: int  # steps taken
    loss: float  # mean minibatch loss over the steps since the previous point
    max_matrix_rms: float  # the largest RMS of a 2-D parameter (a weight matrix)
    rate: float | None  # a LearnedMuon's rate at the point (lopt.learned_muon.current_rate)


def trace(
    task: tasks.Task, tx: optax.GradientTransformation, num_steps: int, points: int = 10, seed=0
) -> list[TracePoint]:
    """Trains ``task`` with ``tx`` for ``num_steps`` steps (a multiple of ``points``) and
    records ``points`` evenly spaced :class:`TracePoint` s, the first after
    ``num_steps / points`` steps. Weight matrices that keep growing while the loss rises are
    the signature of a step with a component along the parameters (see
    ``lopt.per_param.without_growth``)."""
    if num_steps % points:
        raise ValueError(f"num_steps={num_steps} must be a multiple of points={points}")
    key = jax.random.key(seed)
    params = task.init(key)
    step = train_step(task, tx)

    @jax.jit
    def chunk(carry, keys):
        carry, losses = jax.lax.scan(step, carry, keys)
        matrices = [p for p in jax.tree.leaves(carry[0]) if p.ndim == 2]
        size = jnp.max(jnp.stack([jnp.sqrt(jnp.mean(p * p)) for p in matrices] or [jnp.zeros([])]))
        return carry, jnp.mean(losses), size, current_rate(carry[1])

    carry, out = (params, tx.init(params)), []
    keys = jax.random.split(jax.random.fold_in(key, 1), num_steps).reshape(points, -1)
    for i in range(points):
        carry, loss, size, rate = chunk(carry, keys[i])
        rate = None if rate is None else float(rate)
        out.append(TracePoint((i + 1) * num_steps // points, float(loss), float(size), rate))
    return out


def trace_markdown(rows: list[TracePoint]) -> str:
    rates = all(r.rate is not None for r in rows)
    head = "| step | mean loss | largest weight-matrix RMS |" + (" rate |" if rates else "")
    lines = [head, "| --- " * (4 if rates else 3) + "|"]
    for r in rows:
        rate = f" {r.rate:.4g} |" if rates else ""
        lines.append(f"| {r.step} | {r.loss:.4g} | {r.max_matrix_rms:.3f} |{rate}")
    return "\n".join(lines)
