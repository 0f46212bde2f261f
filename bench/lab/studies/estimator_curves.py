"""NRES vs PES vs TES (and FullES) meta-training curves on the same task and inner-step budget.

    python -m bench estimators [--task mlp-digits] [--budget 60000] [--out docs/benchmarks/results]

Each estimator meta-trains the same randomly initialized ``MLPLOpt`` (nominal Adam term on)
with the same outer optimizer until it has spent ``--budget`` inner training steps (TES
spends three runs per particle per window, FullES whole episodes). Every few outer steps the
current theta is scored as meta-validation scores it (``meta_train.Validator``: 16 fixed
inits and batch orders, whole episodes of 200 steps, the same for every estimator). Writes
``estimators.json`` and ``estimators.png``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import lopt
import tasks
from meta_train import (
    ESTIMATORS,
    Learner,
    MetaLoss,
    OuterConfig,
    TruncationSchedule,
    Unroller,
    ValidationConfig,
    Validator,
)


def run(
    task_name: str,
    budget: int,
    names: list[str],
    pairs: int = 8,
    window: int = 20,
    sigma: float = 0.03,
    eval_every: int = 4000,
    seed: int = 0,
) -> dict:
    task = tasks.get(task_name)
    lo = lopt.MLPLOpt.bare(nominal=True, nominal_lr=1e-3)  # as when its figures were measured
    schedule = TruncationSchedule("loguniform", 50, 200)
    unroller = Unroller(task, lo, schedule, MetaLoss(), window=window)
    scoring = ValidationConfig(horizon=schedule.max_length, particles=16)
    evaluate = Validator(scoring, [task], lo, MetaLoss())
    theta0 = lo.init(jax.random.key(seed))
    curves = {}
    for name in names:
        est = ESTIMATORS[name](unroller, num_particles=pairs, sigma=sigma)
        learner = Learner(OuterConfig(learning_rate=3e-3))
        state = learner.init(theta0)
        est_state = est.init(jax.random.PRNGKey(seed), theta0)
        spent, step, next_eval, points = 0, 0, 0, []
        started = time.perf_counter()
        while True:
            if spent >= next_eval:
                points.append(
                    {
                        "inner_steps": spent,
                        "outer_steps": step,
                        "eval_meta_loss": evaluate(state.theta).mean,
                    }
                )
                next_eval += eval_every
            if spent >= budget:
                break
            grad, est_state, m = est.estimate(
                state.theta, est_state, jax.random.PRNGKey(10_000 + step)
            )
            state, _ = learner.apply(state, [(grad, int(state.version))])
            spent += int(m["inner_steps"])
            step += 1
        curves[name] = {"points": points, "seconds": time.perf_counter() - started}
        print(
            f"{name:>14}: eval meta-loss {points[0]['eval_meta_loss']:.4f} -> {points[-1]['eval_meta_loss']:.4f} "
            f"in {step} outer steps ({curves[name]['seconds']:.0f} s)",
            flush=True,
        )
    return {
        "task": task_name,
        "budget_inner_steps": budget,
        "pairs": pairs,
        "window": window,
        "sigma": sigma,
        "schedule": [schedule.min_length, schedule.max_length],
        "curves": curves,
    }


def plot(result: dict, path: pathlib.Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in result["curves"].items():
        pts = curve["points"]
        ax.plot(
            [p["inner_steps"] for p in pts],
            [p["eval_meta_loss"] for p in pts],
            label=name,
            marker=".",
        )
    ax.set_xlabel("inner training steps spent by the estimator")
    ax.set_ylabel("evaluation meta-loss (loss / initial loss)")
    ax.set_title(f"MLPLOpt meta-trained on {result['task']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parser(prog: str = "python -m bench estimators") -> argparse.ArgumentParser:
    """The command line of ``python -m bench estimators``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--task", default="mlp-digits", choices=tasks.names())
    parser.add_argument("--budget", type=int, default=60_000, help="inner steps per estimator")
    parser.add_argument("--estimators", default="NRES,PES,TruncatedES,FullES")
    parser.add_argument("--out", default="docs/benchmarks/results")
    return parser


def run_command(args: argparse.Namespace, cli: argparse.ArgumentParser, command: str) -> None:
    """Runs ``python -m bench estimators`` with ``args`` parsed by ``cli``; ``command`` is the
    command line as typed, for the results files."""
    names = args.estimators.split(",")
    unknown = [n for n in names if n not in ESTIMATORS]
    if unknown:
        cli.error(f"unknown --estimators {unknown}; choose from {sorted(ESTIMATORS)}")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = run(args.task, args.budget, names)
    result["command"] = command
    (out / "estimators.json").write_text(json.dumps(result, indent=2))
    plot(result, out / "estimators.png")
    print(f"wrote {out / 'estimators.json'} and {out / 'estimators.png'}")
