"""The results of a comparison (``bench.compare``) as typed records, and ``results.json``.

    Results
      .summary[candidate][baseline]  Summary    over tasks: won/tied/lost, bootstrap intervals
      .tasks[task]                   TaskResult
        .optimizers[name]            Record     one optimizer on one task
          .vs[baseline]              Versus     its outcome and speedup against that baseline
      .self_check                    [Check]    tuned baselines worse than their own default

``Results.to_json()`` is the content of ``results.json``: strict JSON (NaN and infinities as
``null``); the optional parts of a record (``OPTIONAL``) are left out when absent. ``load(path)`` reads a file back (``null``
numbers as NaN).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from typing import Any

import numpy as np

from bench.metrics import Interval

# Each task is also scored against the tuned baseline whose loss at the task's budget is the
# lowest (with several), and against the lowest of the tuning-free ones.
BEST = "best tuned"
BEST_FREE = "best tuning-free"

OPTIONAL = {"omit_if_none": True}  # a field's metadata: left out of the JSON when None


def _optional():
    return dataclasses.field(default=None, metadata=OPTIONAL)


@dataclasses.dataclass(frozen=True)
class Versus:
    """One optimizer against one baseline on one task."""

    speedup: float  # the budget the baseline needs for the optimizer's final loss ÷ T
    bound: str  # "": measured; ">=" / "<=": a bound (``metrics.Speedup``)
    outcome: str  # by the deciding metric: "won" | "tied" | "lost" (``metrics.OUTCOMES``)
    time_ratio: float  # seconds per step ÷ the baseline's, each run by itself
    baseline: str | None = _optional()  # against the best of several: which it was
    train_outcome: str | None = _optional()  # by the final smoothed train loss
    valid_outcome: str | None = _optional()  # by the final validation loss


@dataclasses.dataclass(frozen=True)
class Finals:
    """Per seed, the final smoothed train loss and the final validation loss of one
    configuration."""

    train: list[float]
    valid: list[float]

    def of(self, metric: str) -> list[float]:
        return self.train if metric == "train" else self.valid


@dataclasses.dataclass(frozen=True)
class TunedCurve:
    """A baseline's best loss per budget (``steps``) and its monotone fit (``loss``)."""

    steps: list[float]
    best: list[float]
    loss: list[float]

    def at(self, step: int) -> float:
        """The fit's value at ``step`` (the last budget at or before it; inf before the first)."""
        i = int(np.searchsorted(self.steps, step, side="right")) - 1
        return self.loss[i] if i >= 0 else math.inf


@dataclasses.dataclass(frozen=True)
class Budget:
    """A scheduled baseline tuned at one budget: its loss and chosen configuration."""

    loss: float
    chosen: dict[str, float]


@dataclasses.dataclass(frozen=True)
class Record:
    """One optimizer on one task: losses of its chosen configuration (mean over seeds; train
    losses EMA-smoothed), its curves, its tuning, and how it fares against each baseline."""

    final_train: float
    best_train: float
    final_valid: float
    best_valid: float
    initial_loss: float  # the validation loss at initialization
    normalized_train: float  # final_train ÷ initial_loss
    normalized_valid: float
    seconds_per_step: float  # the chosen configuration run by itself, compilation excluded
    train_curve: list[float]  # [T]
    valid_curve: list[float]  # [T / eval_every + 1]
    valid_band: list[list[float]]  # [min, max] over seeds of the validation curve
    tuning_trials: int  # 0 for an untuned candidate
    chosen: dict[str, float]  # the chosen hyperparameters ({} untuned)
    scores: list[float]  # every configuration's score by the deciding metric
    finals: Finals | None = _optional()  # per seed: what the standard errors come from
    default: Finals | None = _optional()  # a tuned baseline: its default configuration's
    budgets: dict[str, Budget] | None = _optional()  # a scheduled baseline: tuned per budget
    budget_curve: dict[str, list[float]] | None = _optional()  # random search: per trials
    tuned_curve: TunedCurve | None = _optional()  # a baseline: what speedups are read from
    vs: dict[str, Versus] = dataclasses.field(default_factory=dict)

    def final(self, select: str) -> float:
        """The final loss by the deciding metric ``select`` ("train" or "valid")."""
        return self.final_train if select == "train" else self.final_valid


@dataclasses.dataclass(frozen=True)
class TaskResult:
    num_steps: int  # the task's budget T
    optimizers: dict[str, Record]
    best_baseline: str | None = _optional()  # with several tuned baselines: the lowest at T
    best_tuning_free: str | None = _optional()  # of the tuning-free baselines: the lowest at T


@dataclasses.dataclass(frozen=True)
class Counts:
    won: int
    tied: int
    lost: int


@dataclasses.dataclass(frozen=True)
class Check:
    """A tuned baseline whose final loss by ``metric`` is above its own default's by more than
    the margin and 2 standard errors (``metrics.outcome``): tuning that missed."""

    task: str
    baseline: str
    metric: str  # "train" or "valid"
    tuned: float
    default: float


@dataclasses.dataclass(frozen=True)
class Summary:
    """One candidate against one baseline over the suite's tasks (95% bootstrap intervals);
    ``won``/``tied``/``lost`` by the deciding metric, ``train`` and ``valid`` by each."""

    tasks: int
    won: int
    tied: int
    lost: int
    fraction_won: Interval
    median_speedup: Interval
    iqm_speedup: Interval
    bounds: int  # speedups that are bounds
    iqm_normalized_train: Interval
    median_time_ratio: float
    train: Counts | None = _optional()
    valid: Counts | None = _optional()


@dataclasses.dataclass(frozen=True)
class Results:
    """Everything a comparison produced, with what ran and on what."""

    command: str
    date: str
    versions: dict[str, str]
    device: str
    suite: str
    protocol: str
    selection: str  # the deciding metric: "train" or "valid"
    seeds: int
    trials: int
    max_speedup: int
    margin: float
    baselines: list[str]
    comparisons: list[str]  # the tuned baselines, "best tuned" of several, "best tuning-free"
    runs: dict[str, str]  # what ran of each baseline, in words
    candidates: list[str]
    speedup_definition: str
    summary: dict[str, dict[str, Summary]]
    tasks: dict[str, TaskResult]
    workers: int | None = None  # units run at a time, on one core each (None: one process)
    tuning_free: list[str] = dataclasses.field(default_factory=list)  # run at their defaults
    self_check: list[Check] = dataclasses.field(default_factory=list)  # empty: tuning held

    def to_json(self) -> dict[str, Any]:
        """The content of ``results.json``."""
        return plain(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Results:
        return cls(
            **{
                **d,
                "summary": {
                    c: {b: _summary(s) for b, s in per.items()} for c, per in d["summary"].items()
                },
                "tasks": {
                    name: TaskResult(
                        t["num_steps"],
                        {n: _record(r) for n, r in t["optimizers"].items()},
                        t.get("best_baseline"),
                        t.get("best_tuning_free"),
                    )
                    for name, t in d["tasks"].items()
                },
                "self_check": [Check(**c) for c in d.get("self_check", [])],
            }
        )

    def save(self, path: str | os.PathLike) -> None:
        text = json.dumps(self.to_json(), indent=1, allow_nan=False)
        pathlib.Path(path).write_text(text)


def load(path: str | os.PathLike) -> Results:
    """Reads a ``results.json``; ``ValueError`` names the file when it is not one."""
    try:
        return Results.from_json(json.loads(pathlib.Path(path).read_text()))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not the results.json of bench compare: {e!r}") from None


def plain(value: Any) -> Any:
    """``value`` as JSON-ready Python: records as dicts (``OPTIONAL`` fields at ``None`` left out),
    intervals as ``{"estimate", "low", "high"}``, numpy values as Python numbers, NaN and
    infinities as ``None`` (which strict JSON parsers accept)."""
    if isinstance(value, Interval):
        return plain(value._asdict())
    if dataclasses.is_dataclass(value):
        return {
            f.name: plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (f.metadata.get("omit_if_none") and getattr(value, f.name) is None)
        }
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _num(x: float | None) -> float:
    return math.nan if x is None else x


def _nums(xs: list[float | None]) -> list[float]:
    return [_num(x) for x in xs]


def _interval(d: dict[str, float | None]) -> Interval:
    return Interval(*(_num(d[k]) for k in Interval._fields))


def _summary(d: dict[str, Any]) -> Summary:
    intervals = ("fraction_won", "median_speedup", "iqm_speedup", "iqm_normalized_train")
    s = {k: _interval(v) if k in intervals else v for k, v in d.items()}
    for metric in ("train", "valid"):
        if metric in d:
            s[metric] = Counts(**d[metric])
    return Summary(**s)


def _record(d: dict[str, Any]) -> Record:
    floats = {f.name for f in dataclasses.fields(Record) if f.type == "float"}
    r = {k: _num(v) if k in floats else v for k, v in d.items()}
    r["train_curve"], r["valid_curve"] = _nums(d["train_curve"]), _nums(d["valid_curve"])
    r["valid_band"] = [_nums(b) for b in d["valid_band"]]
    r["scores"] = _nums(d["scores"])
    for part in ("finals", "default"):
        if part in d:
            r[part] = Finals(_nums(d[part]["train"]), _nums(d[part]["valid"]))
    if "budgets" in d:
        r["budgets"] = {k: Budget(_num(b["loss"]), b["chosen"]) for k, b in d["budgets"].items()}
    if "tuned_curve" in d:
        c = d["tuned_curve"]
        r["tuned_curve"] = TunedCurve(c["steps"], _nums(c["best"]), _nums(c["loss"]))
    r["vs"] = {
        b: Versus(**{**v, "speedup": _num(v["speedup"]), "time_ratio": _num(v["time_ratio"])})
        for b, v in d["vs"].items()
    }
    return Record(**r)
