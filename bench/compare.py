"""Compare optimizers with tuned baselines on a suite: ``python -m bench compare ...``.

Every baseline (and every candidate given by a baseline name) is tuned per task by the
protocol (``bench.protocols``); the tuning-free baselines (``baselines.TUNING_FREE``) run once
per seed at their published defaults, the bar for an optimizer that needs no tuning; learned
optimizers (a ``.lopt`` file or a pretrained name) enter with zero tuning trials, at the
task's step budget ``T``. Each candidate is scored against every tuned baseline, the best
tuned one and the best tuning-free one per task, by the final smoothed train loss and by the
final validation loss; a win or a loss needs a difference beyond the margin and beyond two
standard errors over seeds (``metrics.outcome``). Baselines also run longer, so
that a candidate faster than them gets a measured speedup instead of a bound: a
constant-rate baseline once for ``K·T`` steps (read at every step), a scheduled one once per
budget ``T/K … K·T`` (powers of two) with its schedule set to that budget, each tuned. All
runs of one optimizer on one task share one compiled program (``bench.runner``).

Outputs in ``out``: ``results.json`` (everything, with versions and the command),
``report.md`` (tables), ``curves.png`` (loss curves per task, the tuned baselines' band over
seeds) and ``speedups.png`` (the speedup distribution per candidate).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import os
import pathlib
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import optax
import tqdm

import lopt
import tasks
from bench import baselines as baselines_lib
from bench import metrics, parallel, protocols, results, runner, suites
from bench import report as report_lib
from bench.results import BEST, BEST_FREE

SPEEDUP_NOTE = (
    "speedup = the budget at which the tuned baseline first reaches the candidate's final "
    "loss (its tuned curve: the best configuration at each budget, made monotone by "
    "isotonic regression, "
    "interpolated linearly between budgets) ÷ the candidate's steps; '≥' marks a baseline "
    "that never got there within its largest budget, '≤' one that was there at its smallest"
)


def fractions(max_speedup: int) -> list[float]:
    """The budgets a scheduled baseline runs, as fractions of the candidate's: the powers of
    two from ``1 / max_speedup`` to ``max_speedup`` (``[0.25, 0.5, 1, 2, 4]`` for 4)."""
    k = int(np.log2(max_speedup)) if max_speedup >= 1 else -1
    if max_speedup < 1 or 2**k != max_speedup:
        raise ValueError(f"max_speedup must be a power of two >= 1, got {max_speedup!r}")
    return [2.0**i for i in range(-k, k + 1)]


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """A candidate or baseline: a ``Baseline`` (tuned by the protocol) or an untuned
    optimizer such as a learned one (``learned(num_steps)`` gives its transform for a run of
    ``num_steps``; zero tuning trials). A learned optimizer loaded from a file also keeps its
    ``frozen`` record, so that the benchmark can pass its theta to the compiled program as an
    argument: every file of one architecture then shares one program per task."""

    name: str
    baseline: baselines_lib.Baseline | None = None
    learned: Callable[[int], optax.GradientTransformation] | None = None
    frozen: lopt.Frozen | None = None


def from_frozen(name: str, frozen: lopt.Frozen) -> Optimizer:
    """The candidate for a loaded ``.lopt`` file or pretrained optimizer."""
    return Optimizer(name, learned=frozen.as_optax, frozen=frozen)


@dataclasses.dataclass(frozen=True)
class _Architecture:
    """``hp -> architecture.as_optax(hp["theta"], num_steps)``: hashable, so that runs of one
    architecture at one horizon reuse one compiled program (``runner``)."""

    architecture: lopt.LearnedOptimizer
    num_steps: int

    def __call__(self, hp: dict[str, Any]) -> optax.GradientTransformation:
        return self.architecture.as_optax(hp["theta"], self.num_steps)


# The files a meta-training run writes: a candidate from one is named by its run's folder.
RUN_FILES = ("optimizer", "init", "best")


def learned_program(opt: Optimizer, num_steps: int) -> tuple[Callable, dict[str, Any]]:
    """``(make_tx, hparams)`` of ``runner.run`` for the learned optimizer ``opt`` run for
    ``num_steps`` steps: a frozen file's theta is an argument of the program its
    architecture shares (one configuration), any other learned optimizer a constant."""
    if opt.frozen is not None:
        opt.frozen.check_horizon(num_steps)
        theta = jax.tree.map(lambda a: a[None], opt.frozen.theta)
        return _Architecture(opt.frozen.architecture, num_steps), {"theta": theta}
    tx = opt.learned(num_steps)
    return (lambda hp: tx), {}


def resolve(spec: str, name: str | None = None) -> Optimizer:
    """A baseline name, a pretrained name, a path to a frozen ``.lopt`` file (named
    ``name``, by default its file name without ``.lopt``, and ``<folder>/optimizer`` for a
    run's ``optimizer.lopt``, ``init.lopt`` or ``best.lopt``), or an import path
    ``package.module:factory`` to a function ``num_steps -> optax transform`` (named by
    the factory)."""
    if tasks.is_import_path(spec) and not pathlib.Path(spec).exists():
        factory = tasks.from_import_path(spec, "optimizer")
        if not callable(factory):
            raise ValueError(f"optimizer {spec!r} must be a function num_steps -> optax transform")
        return Optimizer(name or spec.partition(":")[2], learned=factory)
    if spec in baselines_lib.BASELINES:
        return Optimizer(spec, baseline=baselines_lib.BASELINES[spec])
    if spec in lopt.list_pretrained():
        return from_frozen(spec, lopt.load_pretrained(spec))
    path = pathlib.Path(spec)
    if path.exists():
        frozen = lopt.load(path)  # FrozenFileError says what is wrong with the file
        stem = path.name.removesuffix(".lopt")
        if stem in RUN_FILES:  # "optimizer" alone would read as a column header
            stem = f"{path.absolute().parent.name}/{stem}"
        return from_frozen(name or stem, frozen)
    raise ValueError(
        f"unknown optimizer {spec!r}: not a baseline {sorted(baselines_lib.BASELINES)}, "
        f"a pretrained optimizer {lopt.list_pretrained()}, an existing .lopt file or an "
        "import path package.module:factory"
    )


def resolve_all(optimizers: Sequence[str | Optimizer]) -> list[Optimizer]:
    """Each candidate resolved (``resolve``), with distinct names: ``.lopt`` files of one
    file name (``runs/a/optimizer.lopt``, ``runs/b/optimizer.lopt``) are named by their
    folders (``a/optimizer``, ``b/optimizer``)."""
    candidates = [o if isinstance(o, Optimizer) else resolve(o) for o in optimizers]
    names = [c.name for c in candidates]
    for i, (spec, c) in enumerate(zip(optimizers, candidates, strict=True)):
        if names.count(c.name) > 1 and isinstance(spec, str) and pathlib.Path(spec).exists():
            path = pathlib.Path(spec)
            candidates[i] = resolve(spec, f"{path.parent.name}/{c.name}")
    names = [c.name for c in candidates]
    if len(set(names)) < len(names):
        raise ValueError(f"candidates need distinct names, got {names} (rename a .lopt file)")
    return candidates


def _record(
    curves: runner.Curves, space: dict[str, np.ndarray], select: str, default: int | None = None
) -> results.Record:
    """The record of the configuration ``protocols.choose`` picks (final/best train and valid
    losses, mean over seeds, and each seed's final losses), with the tuning record; a tuned
    baseline's configuration number ``default`` (its defaults) is recorded as ``default``."""
    tuned = protocols.choose(curves, select)
    i = tuned.best
    train = metrics.ema(curves.train[i], protocols.TRAIN_EMA).mean(axis=0)
    valid = curves.valid[i].mean(axis=0)
    finals = lambda k: results.Finals(
        metrics.ema(curves.train[k], protocols.TRAIN_EMA)[:, -1].tolist(),
        curves.valid[k][:, -1].tolist(),
    )
    return results.Record(
        final_train=float(train[-1]),
        best_train=float(np.min(metrics.finite_or_inf(train))),
        final_valid=float(valid[-1]),
        best_valid=float(np.min(metrics.finite_or_inf(valid))),
        initial_loss=float(valid[0]),
        normalized_train=float(metrics.normalized_loss(train[-1], valid[0])),
        normalized_valid=float(metrics.normalized_loss(valid[-1], valid[0])),
        seconds_per_step=curves.seconds_per_step,
        train_curve=train.tolist(),
        valid_curve=valid.tolist(),
        valid_band=[curves.valid[i].min(axis=0).tolist(), curves.valid[i].max(axis=0).tolist()],
        tuning_trials=len(tuned.scores) if default is not None else 0,
        chosen={k: float(v[i]) for k, v in space.items()},
        scores=tuned.scores.tolist(),
        finals=finals(i),
        default=finals(default) if default is not None else None,
    )


def _default_index(baseline: baselines_lib.Baseline, space: dict[str, np.ndarray]) -> int | None:
    """The configuration of ``space`` at ``baseline``'s defaults, for a tuned baseline (the
    protocols put it in every search); ``None`` for an untuned one."""
    if not baseline.tuned:
        return None
    match = np.logical_and.reduce(
        [np.isclose(v, baseline.defaults[k], rtol=1e-6) for k, v in space.items()]
    )
    return int(np.flatnonzero(match)[0])


def _tuned_curve(steps, best) -> results.TunedCurve:
    """The best loss per budget and its monotone fit (``metrics.monotone``)."""
    best = np.asarray(best)
    return results.TunedCurve(
        [float(s) for s in steps], best.tolist(), metrics.monotone(best).tolist()
    )


def _run_one(unit, spaces, select, seeds, budgets, protocol="lr-grid"):
    """One unit of the comparison's work, ``unit = (entry, opt)``: ``_run_tuned`` on the
    entry's task, built where the unit runs (a unit travels to a Ray worker whole), the
    baseline tuned from ``spaces[opt.name]`` by ``protocol``; a random search's record also
    holds its quality against the number of trials (``budget_curve``)."""
    entry, opt = unit
    task = entry.make()
    record = _run_tuned(opt, entry, task, spaces[opt.name], select, seeds, budgets, protocol)
    if opt.baseline is not None and opt.baseline.tuned and protocol == "random-search":
        scores = np.asarray(record.scores)
        sizes = [b for b in (1, 2, 4, 8, 16, 32, 64, 128) if b <= len(scores)]
        curve = {str(b): list(v) for b, v in protocols.budget_curve(scores, sizes).items()}
        record = dataclasses.replace(record, budget_curve=curve)
    return record


def _search(run, space, score, refining: bool):
    """``protocols.refine`` when ``refining`` (a tuned baseline under ``lr-grid``), else
    ``space`` run as it is; returns ``(space, curves)``."""
    return protocols.refine(run, space, score) if refining else (space, run(space))


def _run_tuned(opt, entry, task, space, select, seeds, budgets, protocol="lr-grid"):
    """Runs ``opt`` on ``entry``: its record at the entry's budget ``T`` (the configuration
    chosen there), for a baseline with its ``tuned_curve`` (the best configuration per
    budget, and its monotone fit) over ``budgets × T`` (see ``metrics``)."""
    T, every = entry.num_steps, entry.eval_every
    if opt.baseline is None:  # one untuned run
        make_tx, hparams = learned_program(opt, T)
        return _record(runner.run(task, make_tx, hparams, seeds, T, every), {}, select)
    baseline = opt.baseline
    refining = baseline.tuned and protocol == "lr-grid"
    run = functools.partial(runner.run, task, baseline.tx, evaluate=baseline.evaluate)
    if baseline.schedule is None:  # one long run, read at every step
        longest = int(budgets[-1] * T)
        space, curves = _search(
            lambda hp: run(hp, seeds, longest, every),
            space,
            lambda c: protocols.scores(c.head(T), select),
            refining,
        )
        steps, values = protocols.metric(curves, select)
        record = _record(curves.head(T), space, select, _default_index(baseline, space))
        if baseline.tuned:
            record = dataclasses.replace(
                record, seconds_per_step=_alone(run, record.chosen, seeds, T, every)
            )
        return dataclasses.replace(record, tuned_curve=_tuned_curve(steps, np.min(values, 0)))
    records = {}
    for budget in (int(f * T) for f in budgets):  # one tuned run per budget

        def run_budget(hp, budget=budget):
            num = len(next(iter(hp.values())))
            return run({**hp, "num_steps": np.full(num, budget, np.float32)}, seeds, budget, every)

        tried, curves = _search(run_budget, space, lambda c: protocols.scores(c, select), refining)
        records[budget] = _record(curves, tried, select, _default_index(baseline, tried))
    record = records[T]
    if baseline.tuned:
        alone = _alone(run, {**record.chosen, "num_steps": T}, seeds, T, every)
        record = dataclasses.replace(record, seconds_per_step=alone)
    return dataclasses.replace(
        record,
        budgets={str(b): results.Budget(r.final(select), r.chosen) for b, r in records.items()},
        tuned_curve=_tuned_curve(list(records), [r.final(select) for r in records.values()]),
    )


def _versus(record, ref, num_steps, select, margin) -> results.Versus:
    """``record`` against the baseline ``ref`` at the budget ``num_steps``: the speedup read
    from ``ref``'s tuned curve, and the outcome by each metric with the standard error of
    both records' seeds (by the deciding metric against the tuned curve's value at the
    budget, as the speedup is; by the other against ``ref``'s final loss)."""
    curve = ref.tuned_curve
    s = metrics.speedup(
        record.final(select), np.array(curve.loss), np.array(curve.steps), num_steps
    )
    outcomes = {}
    for metric in protocols.SELECT:
        target = curve.at(num_steps) if metric == select else ref.final(metric)
        se = metrics.standard_error(record.finals.of(metric), ref.finals.of(metric))
        outcomes[metric] = metrics.outcome(record.final(metric), target, margin, se)
    return results.Versus(
        speedup=s.value,
        bound=s.bound,
        outcome=outcomes[select],
        time_ratio=record.seconds_per_step / ref.seconds_per_step,
        train_outcome=outcomes["train"],
        valid_outcome=outcomes["valid"],
    )


def _score_task(entry, records, tuned, free, select, margin) -> results.TaskResult:
    """The results of one task: each optimizer's record (``records[name]``) with its outcome
    and speedup against every baseline of ``tuned`` and ``free`` (the tuning-free ones), the
    best tuned one when there are several (``BEST``) and the best tuning-free one
    (``BEST_FREE``), each the lowest loss at the task's budget."""
    T = entry.num_steps
    at_budget = lambda ref: records[ref.name].tuned_curve.at(T)
    bests = {}
    if len(tuned) > 1:  # the comparison a practitioner who tunes makes
        bests[BEST] = min(tuned, key=at_budget).name
    if free:  # the one a practitioner who tunes nothing makes
        bests[BEST_FREE] = min(free, key=at_budget).name
    scored = {}
    for name, record in records.items():
        vs = {r.name: _versus(record, records[r.name], T, select, margin) for r in (*tuned, *free)}
        vs |= {label: dataclasses.replace(vs[b], baseline=b) for label, b in bests.items()}
        scored[name] = dataclasses.replace(record, vs=vs)
    return results.TaskResult(T, scored, bests.get(BEST), bests.get(BEST_FREE))


def _self_check(per_task, tuned, margin) -> list[results.Check]:
    """Every tuned baseline and task where tuning lost to the baseline's own default (by
    ``metrics.outcome``, on either metric): the search failed to find the rate. By the
    deciding metric at the task's budget it cannot happen while the default is in the
    search; by the other metric it can (a rate chosen by train loss that overfits)."""
    checks = []
    for task, t in per_task.items():
        for ref in tuned:
            r = t.optimizers[ref.name]
            if r.default is None:
                continue
            for metric in protocols.SELECT:
                mine, default = r.finals.of(metric), r.default.of(metric)
                se = metrics.standard_error(mine, default)
                if metrics.outcome(np.mean(mine), np.mean(default), margin, se) == "lost":
                    checks.append(
                        results.Check(
                            task, ref.name, metric, float(np.mean(mine)), float(np.mean(default))
                        )
                    )
    return checks


def _length_rank(opt: Optimizer) -> int:
    """0 for a scheduled baseline (a tuned run per budget), 1 for a constant-rate one (one
    run of the longest budget), 2 for an untuned candidate (one run of the task's budget)."""
    if opt.baseline is None:
        return 2
    return 0 if opt.baseline.schedule is not None else 1


def _alone(run, chosen, seeds, num_steps, every) -> float:
    """Seconds per step of the ``chosen`` configuration run by itself, as a learned candidate
    is: a sweep's time divided by its configurations would understate what one run costs,
    since the configurations share each vectorized step. (An untuned baseline's one
    configuration already ran by itself.)"""
    hparams = {k: np.full(1, v, np.float32) for k, v in chosen.items()}
    return run(hparams, seeds, num_steps, every).seconds_per_step


def _check_budgets(entries, budgets) -> None:
    for e in entries:
        for f in budgets:
            b = f * e.num_steps
            if b != int(b) or int(b) % e.eval_every:
                raise ValueError(
                    f"{e.name}: a budget of {f:g}× its {e.num_steps} steps is not a multiple "
                    f"of its eval_every={e.eval_every}; lower max_speedup"
                )


def describe_runs(baseline: baselines_lib.Baseline, budgets: list[float]) -> str:
    """What the benchmark runs of ``baseline`` on each task, in words."""
    defaults = ", ".join(f"{k}={v:g}" for k, v in baseline.defaults.items())
    if baseline.schedule is None:
        if not baseline.tuned:
            return (
                f"constant rate at its defaults ({defaults}): one run of {budgets[-1]:g}× the "
                "task's steps, read at every step"
            )
        return (
            f"constant rate: one run of {budgets[-1]:g}× the task's steps per configuration, "
            "the best configuration read at every step"
        )
    runs = (
        f"one run per budget of {', '.join(f'{f:g}×' for f in budgets)} the task's steps, "
        "the schedule set to that budget"
    )
    if not baseline.tuned:
        return f"{baseline.schedule} schedule at its defaults ({defaults}): {runs}"
    return f"{baseline.schedule} schedule: {runs}, each tuned"


def compare(
    optimizers: Sequence[str | Optimizer],
    suite: str | Sequence[suites.Entry],
    baselines: Sequence[str] = ("adam", "adam-cosine"),
    protocol: str = "lr-grid",
    out: str | pathlib.Path = "reports/compare",
    tuning_free: Sequence[str] = baselines_lib.TUNING_FREE,
    seeds: int = 3,
    trials: int = 16,
    select: str = "train",
    lr_range: tuple[float, float] | None = None,
    max_speedup: int = 4,
    margin: float = 0.01,
    progress: bool = True,
    command: str | None = None,
    workers: int | None = None,
    address: str | None = None,
) -> results.Results:
    """Runs the comparison and writes the reports; returns the :class:`bench.results.Results`
    (``results.json`` is its ``to_json()``).

    ``optimizers`` are names for ``resolve`` or ``Optimizer`` records; ``suite`` is a suite
    name or a list of ``suites.Entry`` (reported as suite ``"custom"``). ``baselines`` are
    tuned by ``protocol``; ``tuning_free`` (untuned ``-default`` baselines; may be empty) run
    at their defaults.

    ``select`` is the deciding metric (tuning, won/tied/lost and speedups): the smoothed final
    train loss or the final validation loss. Baselines also run at longer budgets, up to
    ``max_speedup`` × the task's, so that speedups up to that factor can be measured; a
    candidate *wins* a task when its final loss is more than ``margin`` (relative) and more
    than two standard errors over seeds below the baseline's at the same budget, *loses*
    when above by both; won/tied/lost are also counted by the other metric.

    The units of work (one optimizer on one task, its tuning included) run one after another
    in this process (``workers=None``), or ``workers`` at a time on Ray workers of one core
    each (``bench.parallel``): on a local Ray instance, or on the cluster at ``address``. The results are the same either way, up to the order of
    floating-point sums in XLA's multithreaded kernels and the measured times.

    Example: tuned Adam against itself ties, at a speedup of 1::

        >>> import tempfile, tasks
        >>> from bench import compare, suites
        >>> suite = [suites.Entry("quadratic", lambda: tasks.get("quadratic"), 40, 10)]
        >>> report = compare.compare(["adam"], suite, baselines=["adam"], tuning_free=[],
        ...     seeds=1, lr_range=(1e-2, 1.0), max_speedup=1, out=tempfile.mkdtemp(),
        ...     progress=False)
        >>> s = report.summary["adam"]["adam"]
        >>> s.won, s.tied, s.lost, float(s.median_speedup.estimate)
        (0, 1, 0, 1.0)
    """
    _check_arguments(protocol, select, baselines, margin, workers, address, lr_range)
    budgets = fractions(max_speedup)
    entries = suites.get(suite) if isinstance(suite, str) else list(suite)
    candidates = resolve_all(optimizers)
    tuned = [Optimizer(b, baseline=baselines_lib.get(b)) for b in baselines]
    free = [_tuning_free(b) for b in tuning_free if b not in baselines]
    refs = [*tuned, *free]
    _check_budgets(entries, budgets)
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)

    runs = [*refs, *(c for c in candidates if c not in refs)]  # a baseline is run once
    spaces = {
        o.name: protocols.search_space(o.baseline, protocol, trials, lr_range) if o.baseline else {}
        for o in runs
    }
    run_one = functools.partial(
        _run_one, spaces=spaces, select=select, seeds=seeds, budgets=budgets, protocol=protocol
    )
    done = _run_all(run_one, entries, runs, workers, address, progress)
    per_task = {
        entry.name: _score_task(
            entry, {o.name: done[entry.name, o.name] for o in runs}, tuned, free, select, margin
        )
        for entry in entries
    }
    comparisons = [*baselines, *([BEST] if len(tuned) > 1 else []), *([BEST_FREE] if free else [])]
    report = results.Results(
        command=command or "bench.compare.compare(...)",
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        versions={
            "python": platform.python_version(),
            "jax": jax.__version__,
            "optax": optax.__version__,
            "numpy": np.__version__,
        },
        device=str(jax.devices()[0]),
        workers=workers,
        suite=suite if isinstance(suite, str) else "custom",
        protocol=protocol,
        selection=select,
        seeds=seeds,
        trials=trials if protocol == "random-search" else len(protocols.lr_grid(*(lr_range or ()))),
        max_speedup=max_speedup,
        margin=margin,
        baselines=list(baselines),
        tuning_free=[f.name for f in free],
        comparisons=comparisons,
        runs={r.name: describe_runs(r.baseline, budgets) for r in refs},
        candidates=[c.name for c in candidates],
        speedup_definition=SPEEDUP_NOTE,
        summary=_summarize(per_task, [c.name for c in candidates], comparisons),
        tasks=per_task,
        self_check=_self_check(per_task, tuned, margin),
    )
    report.save(out / "results.json")
    report_lib.write(report, out)
    return report


def _tuning_free(name: str) -> Optimizer:
    """The tuning-free baseline ``name``: an untuned ``-default`` baseline."""
    baseline = baselines_lib.get(name)
    if baseline.tuned:
        raise ValueError(
            f"tuning-free baseline {name!r} has a search space; give an untuned one, e.g. "
            f"{name}-default"
        )
    return Optimizer(name, baseline=baseline)


def _check_arguments(protocol, select, baselines, margin, workers, address, lr_range) -> None:
    """Raises ``ValueError`` for an argument of :func:`compare` it cannot run with, before any
    run starts."""
    if protocol not in protocols.PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {list(protocols.PROTOCOLS)}")
    if select not in protocols.SELECT:
        raise ValueError(f"unknown selection {select!r}; choose from {list(protocols.SELECT)}")
    if not baselines:
        raise ValueError("give at least one baseline (e.g. --baselines adam)")
    if not 0 <= margin < 1:
        raise ValueError(f"margin must be in [0, 1), got {margin!r}")
    cpus = os.cpu_count() or 1
    if workers is not None and (workers < 1 or (address is None and workers > cpus)):
        raise ValueError(
            f"workers must be None (tasks in this process) or from 1 to this machine's {cpus} "
            f"CPUs (any number >= 1 on a cluster address), got {workers!r}"
        )
    if protocol == "lr-grid":
        protocols.lr_grid(*(lr_range or ()))  # an invalid range raises here


def _run_all(run_one, entries, runs, workers, address, progress) -> dict[tuple[str, str], Any]:
    """``{(task, optimizer): run_one((entry, opt))}`` for every entry and optimizer of
    ``runs``: one after another here (``workers=None``), or on whichever of ``workers`` Ray
    workers is free (``bench.parallel``), with progress on stderr: a bar on a terminal,
    else a line per finished unit (a log file gets lines, not a bar redrawn in place).

    Longest first (scheduled baselines run every budget, constant ones the longest, the
    candidates one), so that the last units to start are short. Optimizer-major, so that on
    Ray workers the second file of an architecture reaches a task after the first one's
    program is in the persistent compilation cache."""
    units = [(entry, opt) for opt in sorted(runs, key=_length_rank) for entry in entries]
    lines = progress and not sys.stderr.isatty()
    bar = tqdm.tqdm(total=len(units), unit="run", file=sys.stderr, disable=not progress or lines)
    began = time.perf_counter()

    def one_by_one():
        for i, (entry, opt) in enumerate(units):
            bar.set_description(f"{entry.name}: {opt.name}")
            yield i, run_one((entry, opt))

    if workers is None:
        finished = one_by_one()
    else:  # in the order they finish
        bar.set_description(f"on {workers} Ray workers")
        finished = parallel.imap_unordered(run_one, units, workers, address)
    done = {}
    with bar:
        for i, record in finished:
            entry, opt = units[i]
            done[entry.name, opt.name] = record
            bar.update(1)
            if lines:
                elapsed = time.perf_counter() - began
                print(
                    f"{len(done)}/{len(units)} runs done, {elapsed:.0f} s: {entry.name}: {opt.name}",
                    file=sys.stderr,
                    flush=True,
                )
    return done


def _summarize(per_task, candidates, comparisons) -> dict[str, dict[str, results.Summary]]:
    """Per candidate and comparison: won/tied/lost (by the deciding metric, and by each) and
    bootstrap intervals over tasks."""

    def counts(outcomes):
        return results.Counts(*(outcomes.count(o) for o in metrics.OUTCOMES))

    summary = {}
    for c in candidates:
        records = [t.optimizers[c] for t in per_task.values()]
        normalized = np.array([r.normalized_train for r in records])
        summary[c] = {}
        for b in comparisons:
            rows = [r.vs[b] for r in records]
            speedups = np.array([v.speedup for v in rows])
            outcomes = [v.outcome for v in rows]
            summary[c][b] = results.Summary(
                tasks=len(rows),
                won=outcomes.count("won"),
                tied=outcomes.count("tied"),
                lost=outcomes.count("lost"),
                fraction_won=metrics.bootstrap(
                    np.array([o == "won" for o in outcomes], float), np.mean
                ),
                median_speedup=metrics.bootstrap(speedups, np.median),
                iqm_speedup=metrics.bootstrap(speedups, metrics.iqm),
                bounds=sum(bool(v.bound) for v in rows),
                iqm_normalized_train=metrics.bootstrap(normalized, metrics.iqm),
                median_time_ratio=float(np.median([v.time_ratio for v in rows])),
                train=counts([v.train_outcome for v in rows]),
                valid=counts([v.valid_outcome for v in rows]),
            )
    return summary
