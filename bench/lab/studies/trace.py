"""One long run: the loss, the size of the weight matrices and (for a ``LearnedMuon``) the
rate at ten points — the first thing to look at when an optimizer diverges late.

    python -m bench trace --optimizer mlplopt-mix --task deepmlp-mnist1d --steps 2000
    python -m bench trace --optimizer my.lopt --task deepmlp-mnist1d --steps 2000 --set no_growth=true
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

import lopt
import tasks
from bench.compare import resolve
from lopt.learned_muon import current_rate
from meta_train.config_io import read_value
from tasks.training import train_step


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


def parser(prog: str = "python -m bench trace") -> argparse.ArgumentParser:
    """The command line of ``python -m bench trace``."""
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--optimizer", required=True, help="a .lopt file, pretrained name or import path"
    )
    parser.add_argument("--task", required=True, help="a task name or import path")
    parser.add_argument("--steps", type=int, required=True, help="a multiple of 10")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="run a .lopt file or pretrained optimizer with this architecture field changed "
        "(e.g. no_growth=true): an ablation at deployment, same theta",
    )
    return parser


def run_command(args: argparse.Namespace, cli: argparse.ArgumentParser, command: str) -> int:
    """Runs ``python -m bench trace`` with ``args`` parsed by ``cli``."""
    if args.set:
        learned = _changed(args.optimizer, args.set).as_optax
    else:
        learned = resolve(args.optimizer).learned
        if learned is None:
            raise ValueError(
                f"{args.optimizer!r} is a baseline, which has hyperparameters to tune: "
                "trace a learned optimizer, or an import path to a function "
                "num_steps -> optax transform"
            )
    rows = trace(tasks.get(args.task), learned(args.steps), args.steps, seed=args.seed)
    print(trace_markdown(rows))
    return 0


def _changed(spec: str, settings: list[str]) -> lopt.Frozen:
    """The frozen optimizer ``spec`` (a pretrained name or a .lopt file) with its
    architecture's fields changed by ``FIELD=VALUE`` settings (values read as config
    overrides are, ``meta_train.config_io.read_value``)."""
    if spec in lopt.list_pretrained():
        frozen = lopt.load_pretrained(spec)
    elif pathlib.Path(spec).exists():
        frozen = lopt.load(spec)
    else:
        raise ValueError(f"--set needs a .lopt file or a pretrained optimizer, not {spec!r}")
    fields = {f.name for f in dataclasses.fields(frozen.architecture)}
    changes = {}
    for setting in settings:
        field, eq, value = setting.partition("=")
        if not eq or field not in fields:
            raise ValueError(
                f"--set {setting!r}: expected FIELD=VALUE with FIELD one of {sorted(fields)}"
            )
        changes[field] = read_value(value, f"--set {setting}")
    architecture = dataclasses.replace(frozen.architecture, **changes)
    return dataclasses.replace(frozen, architecture=architecture)
