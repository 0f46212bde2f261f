"""``run_dir/metrics.jsonl``: one JSON record per outer step. Its fields (``FIELDS``), the one
writer (:func:`append`) and the one reader (:class:`MetricsLog`, :func:`read`), which reads a
file a run may still be writing: a last line without its newline is not a record yet.
``python -m meta_train.reference metrics > docs/metrics.md`` lists the fields for the docs.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

# Every field a record may hold, and what it means. The first group is in every record.
FIELDS: dict[str, str] = {
    "step": "the outer step (1, 2, …).",
    "meta_loss": "the mean meta-loss of the step's estimates.",
    "grad_norm": "the mean norm of the step's meta-gradient estimates.",
    "inner_steps": "inner training steps the step's estimates took (all particles and copies).",
    "inner_steps_per_s": "`inner_steps` ÷ `seconds`.",
    "seconds": "wall time of the step, from collecting its estimates to publishing the new theta.",
    "compile_seconds": "of the estimates' time, the part spent obtaining compiled programs "
    "(tracing, lowering, compiling or reading the cache), summed over the processes.",
    "estimates": "estimates averaged into the step.",
    "diverged": "episodes ended by a non-finite or exploding loss.",
    "resets": "particles started on a new episode.",
    "ended": "episodes that reached their length.",
    "task": "the task structures of the step's estimates, comma-separated.",
    "devices": "per estimate, the local devices its particles were sharded over.",
    "learner_seconds": "the learner's update and the publishing of theta.",
    "used": "estimates the learner averaged (fresh enough).",
    "stale": "estimates dropped as more than `outer.max_staleness` versions old.",
    "staleness": "the most versions any of the step's estimates lagged.",
    "skipped_nonfinite": "1 when the averaged estimate was not finite and the update skipped.",
    # With Ray workers:
    "workers": "(Ray workers) per answer, the worker that computed it.",
    "streams": "(Ray workers) per answer, its stream.",
    "windows": "(Ray workers) per answer, its window of that stream.",
    "pids": "(Ray workers) per answer, the worker's process ID.",
    "contributors": "(Ray workers) distinct workers that answered.",
    "worker_seconds": "(Ray workers) per answer, its compute time on the worker.",
    "workers_live": "(Ray workers) workers alive after the step.",
    "worker_restarts": "(Ray workers) worker restarts so far.",
    "lost_requests": "(Ray workers) requests lost with a worker and sent again, so far.",
    "precompiled": "(Ray workers) task periods compiled ahead, so far.",
    # With validation, on the steps it scores:
    "valid": "(validation) the score of this step's theta (lower is better).",
    "valid_tasks": "(validation) the score per held-out task.",
    "valid_best": "(validation) the best score so far, the initial theta's included.",
    "valid_best_step": "(validation) the step of that best score (0: the initial theta).",
    "valid_seconds": "(validation) the time the scoring took.",
    "valid_initial": "(validation) on the first record of a run, the initial theta's score.",
    # On the first record after a resume:
    "resumed": "true: the run resumed from its checkpoint of the step before.",
    # When the run looks stuck:
    "warning": "why the run may have stopped learning (episodes diverging, zero estimates).",
}
EVERY_STEP = tuple(FIELDS)[: tuple(FIELDS).index("workers")]


class MetricsLog:
    """The records of the metrics file at ``path``, read incrementally: each :meth:`read`
    returns every complete record so far, reading only what was added since the last call.
    A missing file has no records; a last line without its newline (being written, or cut
    short by a crash) is skipped until it is complete; any other line that is not a JSON
    object is an error naming the file and line."""

    def __init__(self, path: str | os.PathLike):
        self.path, self.offset, self.records = pathlib.Path(path), 0, []

    def read(self) -> list[dict[str, Any]]:
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
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    where = f"{self.path}, line {len(self.records) + 1}"
                    raise ValueError(f"{where}: not a metrics record ({e})") from None
                self.records.append(record)
                self.offset += len(line)
        return self.records


def read(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The complete records of the metrics file at ``path`` (:class:`MetricsLog`)."""
    return MetricsLog(path).read()


def append(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Appends ``record`` as one line; a field outside ``FIELDS`` or a missing one of
    ``EVERY_STEP`` is an error (the schema is what the docs list)."""
    unknown = sorted(set(record) - set(FIELDS))
    missing = [f for f in EVERY_STEP if f not in record]
    if unknown or missing:
        raise ValueError(
            f"metrics record of step {record.get('step')}: undocumented fields {unknown}, "
            f"missing fields {missing} (meta_train.metrics_log.FIELDS)"
        )
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def truncate(path: str | os.PathLike, last_step: int) -> None:
    """Keeps the complete records up to ``last_step`` (those after it were written after
    the checkpoint a run resumes from, a line cut short by a crash among them)."""
    path = pathlib.Path(path)
    if path.exists():
        kept = [r for r in read(path) if r["step"] <= last_step]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))
