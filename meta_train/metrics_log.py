"""``run_dir/metrics.jsonl``: one JSON line per outer step, a :class:`StepRecord`; the one
writer (:func:`append`) and the one reader (:class:`MetricsLog`, :func:`read`), which reads a
file a run may still be writing: a last line without its newline is not a record yet.
``python -m meta_train.reference metrics > docs/metrics.md`` lists the fields for the docs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any


def _field(doc: str, *, always: bool = False) -> Any:
    """A record field documented by ``doc``: in every record (``always``) or else ``None``
    when the run has nothing to say there, and then absent from the line."""
    if always:
        return dataclasses.field(metadata={"doc": doc})
    return dataclasses.field(default=None, metadata={"doc": doc})


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepRecord:
    """What one outer step did. The first group of fields is in every record; the rest only
    in runs with Ray workers, with validation (on the steps it scores), after a resume, or
    when the run looks stuck."""

    step: int = _field("the outer step (1, 2, …).", always=True)
    meta_loss: float = _field("the mean meta-loss of the step's estimates.", always=True)
    grad_norm: float = _field("the mean norm of the step's meta-gradient estimates.", always=True)
    inner_steps: int = _field(
        "inner training steps the step's estimates took (all particles and copies).", always=True
    )
    inner_steps_per_s: float = _field("`inner_steps` ÷ `seconds`.", always=True)
    seconds: float = _field(
        "wall time of the step, from collecting its estimates to publishing the new theta.",
        always=True,
    )
    compile_seconds: float = _field(
        "of the estimates' time, the part spent obtaining compiled programs (tracing, "
        "lowering, compiling or reading the cache), summed over the processes.",
        always=True,
    )
    estimates: int = _field(
        "estimates the step received, stale ones included (`used`: those averaged).", always=True
    )
    diverged: int = _field("episodes ended by a non-finite or exploding loss.", always=True)
    resets: int = _field("particles started on a new episode.", always=True)
    ended: int = _field("episodes that reached their length.", always=True)
    task: str = _field("the task structures of the step's estimates, comma-separated.", always=True)
    devices: list[int] = _field(
        "per estimate, the local devices its particles were sharded over.", always=True
    )
    learner_seconds: float = _field(
        "the learner's update and the publishing of theta.", always=True
    )
    used: int = _field("estimates the learner averaged (fresh enough).", always=True)
    stale: int = _field(
        "estimates dropped as more than `outer.max_staleness` versions old.", always=True
    )
    staleness: int = _field("the most versions any of the step's estimates lagged.", always=True)
    skipped_nonfinite: int = _field(
        "1 when the averaged estimate was not finite and the update skipped.", always=True
    )
    # With Ray workers:
    workers: list[int] | None = _field("(Ray workers) per answer, the worker that computed it.")
    streams: list[int] | None = _field("(Ray workers) per answer, its stream.")
    windows: list[int] | None = _field("(Ray workers) per answer, its window of that stream.")
    pids: list[int] | None = _field("(Ray workers) per answer, the worker's process ID.")
    contributors: int | None = _field("(Ray workers) distinct workers that answered.")
    worker_seconds: list[float] | None = _field(
        "(Ray workers) per answer, its compute time on the worker."
    )
    workers_live: int | None = _field("(Ray workers) workers alive after the step.")
    worker_restarts: int | None = _field("(Ray workers) worker restarts so far.")
    lost_requests: int | None = _field(
        "(Ray workers) requests lost with a worker and sent again, so far."
    )
    precompiled: int | None = _field("(Ray workers) task periods compiled ahead, so far.")
    # With validation, on the steps it scores:
    valid: float | None = _field("(validation) the score of this step's theta (lower is better).")
    valid_tasks: dict[str, float] | None = _field("(validation) the score per held-out task.")
    valid_best: float | None = _field(
        "(validation) the best score so far, the initial theta's included."
    )
    valid_best_step: int | None = _field(
        "(validation) the step of that best score (0: the initial theta)."
    )
    valid_seconds: float | None = _field("(validation) the time the scoring took.")
    valid_initial: float | None = _field(
        "(validation) on the first record of a run, the initial theta's score."
    )
    # On the first record after a resume:
    resumed: bool | None = _field("true: the run resumed from its checkpoint of the step before.")
    # When the run looks stuck:
    warning: str | None = _field(
        "why the run may have stopped learning (episodes diverging, zero estimates)."
    )

    def __post_init__(self):
        absent = [f for f in EVERY_STEP if getattr(self, f) is None]
        if absent:
            raise ValueError(f"a step record needs {absent} (in every record)")

    def to_json(self) -> str:
        """The record as one JSON object, without its absent (``None``) fields."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return json.dumps({k: v for k, v in fields.items() if v is not None})

    @classmethod
    def from_json(cls, line: str | bytes) -> StepRecord:
        """The record of one JSON line; a field that is not a :class:`StepRecord` field, or
        a missing one of those in every record, is a ``ValueError`` naming them."""
        fields = json.loads(line)
        if not isinstance(fields, dict):
            raise ValueError(f"a JSON object was expected, not {type(fields).__name__}")
        unknown = sorted(set(fields) - set(FIELDS))
        missing = [f for f in EVERY_STEP if f not in fields]
        if unknown or missing:
            raise ValueError(f"unknown fields {unknown}, missing fields {missing}")
        return cls(**fields)


FIELDS: dict[str, str] = {f.name: f.metadata["doc"] for f in dataclasses.fields(StepRecord)}
EVERY_STEP = tuple(
    f.name for f in dataclasses.fields(StepRecord) if f.default is dataclasses.MISSING
)


class MetricsLog:
    """The records of the metrics file at ``path``, read incrementally: each :meth:`read`
    returns every complete record so far, reading only what was added since the last call.
    A missing file has no records; a last line without its newline (being written, or cut
    short by a crash) is skipped until it is complete; any other line that is not a
    :class:`StepRecord` is an error naming the file and line."""

    def __init__(self, path: str | os.PathLike):
        self.path, self.offset = pathlib.Path(path), 0
        self.records: list[StepRecord] = []

    def read(self) -> list[StepRecord]:
        try:
            f = self.path.open("rb")
        except FileNotFoundError:
            return self.records
        with f:
            f.seek(self.offset)
            for line in f:
                if not line.endswith(b"\n"):
                    break
                try:
                    record = StepRecord.from_json(line)
                except ValueError as e:  # json.JSONDecodeError is one
                    where = f"{self.path}, line {len(self.records) + 1}"
                    raise ValueError(f"{where}: not a metrics record ({e})") from None
                self.records.append(record)
                self.offset += len(line)
        return self.records


def read(path: str | os.PathLike) -> list[StepRecord]:
    """The complete records of the metrics file at ``path`` (:class:`MetricsLog`)."""
    return MetricsLog(path).read()


def append(path: str | os.PathLike, record: StepRecord) -> None:
    """Appends ``record`` as one line."""
    with open(path, "a") as f:
        f.write(record.to_json() + "\n")


def truncate(path: str | os.PathLike, last_step: int) -> None:
    """Keeps the complete records up to ``last_step`` (those after it were written after
    the checkpoint a run resumes from, a line cut short by a crash among them)."""
    path = pathlib.Path(path)
    if path.exists():
        kept = [r for r in read(path) if r.step <= last_step]
        path.write_text("".join(r.to_json() + "\n" for r in kept))
