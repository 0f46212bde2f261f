"""Compare optimizers with tuned baselines on a suite: ``python -m bench compare ...``.

Every baseline (and every candidate given by a baseline name) is tuned per task by the
protocol (``bench.protocols``); learned optimizers (a ``.lopt`` file or a pretrained name)
enter with zero tuning trials, at the task's step budget. All runs of one optimizer on one
task (configurations × seeds) are a single compiled run (``bench.runner``).

Outputs in ``out``: ``results.json`` (everything, with versions and the command),
``report.md`` (tables), ``curves.png`` (loss curves per task, the tuned baselines' band over
seeds) and ``speedups.png`` (the speedup distribution per candidate).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import pathlib
import platform
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import optax

import lopt
from bench import baselines as baselines_lib
from bench import metrics, protocols, runner, suites
from bench import report as report_lib

REFERENCE_NOTE = (
    "speedup = steps the tuned baseline needs to reach the candidate's final smoothed train "
    "loss ÷ the candidate's steps (from the running minimum of the best configuration at "
    "each step); '≥' marks a baseline that never got there (a lower bound)"
)


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """A candidate or baseline: a ``Baseline`` (tuned by the protocol) or a learned optimizer
    (``learned(num_steps)`` gives its transform; zero tuning)."""

    name: str
    baseline: baselines_lib.Baseline | None = None
    learned: Callable[[int], optax.GradientTransformation] | None = None


def resolve(spec: str) -> Optimizer:
    """A baseline name, a pretrained name, or a path to a frozen ``.lopt`` file (named by its
    file name without ``.lopt``)."""
    if spec in baselines_lib.BASELINES:
        return Optimizer(spec, baseline=baselines_lib.BASELINES[spec])
    if spec in lopt.list_pretrained():
        frozen = lopt.load_pretrained(spec)
        return Optimizer(spec, learned=frozen.as_optax)
    path = pathlib.Path(spec)
    if path.exists():
        frozen = lopt.load(path)  # FrozenFileError says what is wrong with the file
        return Optimizer(path.name.removesuffix(".lopt"), learned=frozen.as_optax)
    raise ValueError(
        f"unknown optimizer {spec!r}: not a baseline {sorted(baselines_lib.BASELINES)}, "
        f"a pretrained optimizer {lopt.list_pretrained()}, or an existing .lopt file"
    )


def _summary(curves: runner.Curves, index: int) -> dict[str, Any]:
    """Final/best train and valid losses of configuration ``index`` (mean over seeds)."""
    train = metrics.ema(curves.train[index], protocols.TRAIN_EMA).mean(axis=0)
    valid = curves.valid[index].mean(axis=0)
    return {
        "final_train": float(train[-1]),
        "best_train": float(np.min(metrics.finite_or_inf(train))),
        "final_valid": float(valid[-1]),
        "best_valid": float(np.min(metrics.finite_or_inf(valid))),
        "initial_valid": float(valid[0]),
        "seconds_per_step": curves.seconds_per_step,
        "train_curve": train.tolist(),
        "valid_curve": valid.tolist(),
        "valid_band": [
            curves.valid[index].min(axis=0).tolist(),
            curves.valid[index].max(axis=0).tolist(),
        ],
    }


def _run_one(opt: Optimizer, entry: suites.Entry, task, protocol, select, seeds, trials, lr_range):
    if opt.learned is not None:
        tx = opt.learned(entry.num_steps)
        curves = runner.run(task, lambda hp: tx, {}, seeds, entry.num_steps, entry.eval_every)
        return curves, {}, 0, protocols.scores(curves, select)
    space = protocols.search_space(opt.baseline, protocol, trials, lr_range)
    curves = runner.run(task, opt.baseline.tx, space, seeds, entry.num_steps, entry.eval_every)
    tuned = protocols.choose(curves, select)
    return curves, space, tuned.best, tuned.scores


def compare(
    optimizers: Sequence[str],
    suite: str,
    baselines: Sequence[str] = ("adam",),
    protocol: str = "lr-grid",
    out: str | pathlib.Path = "reports/compare",
    seeds: int = 3,
    trials: int = 16,
    select: str = "valid",
    lr_range: tuple[float, float] | None = None,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Runs the comparison and writes the reports; returns the ``results.json`` content."""
    if protocol not in protocols.PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {list(protocols.PROTOCOLS)}")
    if select not in protocols.SELECT:
        raise ValueError(f"unknown selection {select!r}; choose from {list(protocols.SELECT)}")
    if not baselines:
        raise ValueError("give at least one baseline (e.g. --baselines adam)")
    entries = suites.get(suite)
    candidates = [resolve(o) for o in optimizers]
    names = [c.name for c in candidates]
    if len(set(names)) < len(names):
        raise ValueError(f"candidates need distinct names, got {names} (rename a .lopt file)")
    refs = [Optimizer(b, baseline=baselines_lib.get(b)) for b in baselines]
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)

    runs = [*refs, *(c for c in candidates if c not in refs)]  # a baseline is run once
    bar = _bar(len(entries) * len(runs), progress)
    results: dict[str, Any] = {}
    for entry in entries:
        task = entry.make()
        per_task: dict[str, Any] = {"num_steps": entry.num_steps, "optimizers": {}}
        tuned_curves = {}
        for opt in runs:
            bar.set_description(f"{entry.name}: {opt.name}")
            curves, space, best, scores = _run_one(
                opt, entry, task, protocol, select, seeds, trials, lr_range
            )
            record = _summary(curves, best)
            record["tuning_trials"] = len(scores) if opt.baseline else 0
            record["chosen"] = {k: float(v[best]) for k, v in space.items()}
            record["scores"] = scores.tolist()
            if opt.baseline is not None and protocol == "random-search":
                budgets = [b for b in (1, 2, 4, 8, 16, 32, 64, 128) if b <= len(scores)]
                record["budget_curve"] = {
                    str(b): list(v) for b, v in protocols.budget_curve(scores, budgets).items()
                }
            if opt in refs:
                smoothed = metrics.ema(curves.train, protocols.TRAIN_EMA).mean(axis=1)  # [K, T]
                tuned_curves[opt.name] = metrics.tuned_curve(smoothed)
            per_task["optimizers"][opt.name] = record
            bar.update(1)
        steps = np.arange(1, entry.num_steps + 1)
        for record in per_task["optimizers"].values():
            record["normalized_valid"] = float(
                metrics.normalized_loss(record["final_valid"], record["initial_valid"])
            )
            record["vs"] = {}
            for ref in refs:
                ref_record = per_task["optimizers"][ref.name]
                s = metrics.speedup(
                    record["final_train"], tuned_curves[ref.name], steps, entry.num_steps
                )
                record["vs"][ref.name] = {
                    "speedup": s.value,
                    "censored": s.censored,
                    "won": bool(
                        metrics.finite_or_inf(np.float64(record[f"final_{select}"]))
                        < metrics.finite_or_inf(np.float64(ref_record[f"final_{select}"]))
                    ),
                    "time_ratio": record["seconds_per_step"] / ref_record["seconds_per_step"],
                }
        results[entry.name] = per_task
    bar.close()

    report = {
        "command": command or "bench.compare.compare(...)",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "optax": optax.__version__,
            "numpy": np.__version__,
        },
        "device": str(jax.devices()[0]),
        "suite": suite,
        "protocol": protocol,
        "selection": select,
        "seeds": seeds,
        "trials": trials
        if protocol == "random-search"
        else len(protocols.lr_grid(*(lr_range or ()))),
        "baselines": list(baselines),
        "candidates": [c.name for c in candidates],
        "speedup_definition": REFERENCE_NOTE,
        "summary": _summarize(results, [c.name for c in candidates], list(baselines), select),
        "tasks": results,
    }
    (out / "results.json").write_text(json.dumps(report, indent=1, default=float))
    report_lib.write(report, out)
    return report


def _summarize(results, candidates, baselines, select) -> dict[str, Any]:
    summary = {}
    for c in candidates:
        summary[c] = {}
        for b in baselines:
            rows = [t["optimizers"][c]["vs"][b] for t in results.values()]
            speedups = np.array([r["speedup"] for r in rows])
            won = np.array([r["won"] for r in rows], np.float64)
            normalized = np.array(
                [t["optimizers"][c]["normalized_valid"] for t in results.values()]
            )
            summary[c][b] = {
                "tasks": len(rows),
                "won": int(won.sum()),
                "fraction_won": metrics.bootstrap(won, np.mean)._asdict(),
                "median_speedup": metrics.bootstrap(speedups, np.median)._asdict(),
                "iqm_speedup": metrics.bootstrap(speedups, metrics.iqm)._asdict(),
                "censored": int(sum(r["censored"] for r in rows)),
                "iqm_normalized_valid": metrics.bootstrap(normalized, metrics.iqm)._asdict(),
                "median_time_ratio": float(np.median([r["time_ratio"] for r in rows])),
                "won_by": f"lower final {select} loss than the tuned baseline",
            }
    return summary


class _NoBar:
    def set_description(self, _):
        pass

    def update(self, _):
        pass

    def close(self):
        pass


def _bar(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="run", file=sys.stderr)
