"""What a run reports as it goes: each outer step's metrics record, the progress display,
and the watch that warns when meta-training has stopped learning."""

from __future__ import annotations

import collections
import sys
import time
from typing import Any

import numpy as np

from meta_train.metrics_log import StepRecord
from meta_train.stream import Estimate


def step_record(step: int, estimates: list[Estimate], seconds: float, **extra: Any) -> StepRecord:
    """The record of one outer step from the estimates it received; ``extra`` sets the
    fields the estimates do not hold (the learner's and the source's)."""
    ms = [e.metrics for e in estimates]
    inner = sum(m.inner_steps for m in ms)
    computed = [part for m in ms for part in m.parts or (m,)]  # merged slices' own
    if computed[0].worker is not None:  # per answer: who computed what, and how long it took
        extra |= {
            "workers": [m.worker for m in computed],
            "streams": [m.stream for m in computed],
            "windows": [m.window for m in computed],
            "pids": [m.pid for m in computed],
            "contributors": len({m.worker for m in computed}),
            "worker_seconds": [m.seconds for m in computed],
        }
    return StepRecord(
        step=step,
        meta_loss=float(np.mean([m.meta_loss for m in ms])),
        grad_norm=float(np.mean([m.grad_norm for m in ms])),
        inner_steps=inner,
        inner_steps_per_s=inner / seconds,
        seconds=seconds,
        # compiling done for this step's estimates, summed over the processes computing them
        compile_seconds=sum(m.compile_seconds for m in ms),
        estimates=len(ms),
        diverged=sum(m.diverged for m in ms),
        resets=sum(m.resets for m in ms),
        ended=sum(m.ended for m in ms),
        task=",".join(sorted({m.task for m in ms})),
        devices=[m.devices for m in ms],
        **extra,
    )


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class Progress:
    """A tqdm bar on a terminal; otherwise a line every ``every`` steps with the mean
    meta-loss of those steps (one step's value jumps with its task), the time elapsed, the
    time left at the rate so far, the seconds those steps' estimates spent compiling and,
    with Ray workers, how many are live and the share of those steps' time the workers were
    computing (the rest they waited: for each other in synchronous rounds, for the
    learner)."""

    def __init__(self, total: int, start: int, every: int, enabled: bool):
        self.enabled, self.every, self.total, self.start = enabled, every, total, start
        self.began = time.monotonic()
        self.recent: collections.deque = collections.deque(maxlen=every)
        self.compiling: collections.deque = collections.deque(maxlen=every)
        self.working: collections.deque = collections.deque(maxlen=every)  # (busy, seconds, ids)
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc="meta-train", unit="step")

    def update(self, record: StepRecord) -> None:
        if not self.enabled:
            return
        self.recent.append(record.meta_loss)
        self.compiling.append(record.compile_seconds)
        if record.worker_seconds is not None:
            self.working.append((sum(record.worker_seconds), record.seconds, set(record.workers)))
        mean = float(np.mean(self.recent))
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(meta_loss=f"{mean:.4f}", steps_s=f"{record.inner_steps_per_s:.0f}")
        elif record.step % self.every == 0 or record.step == self.total:
            elapsed = time.monotonic() - self.began
            left = elapsed / (record.step - self.start) * (self.total - record.step)
            compiled = sum(self.compiling)
            print(
                f"step {record.step:>6}/{self.total}  meta_loss {mean:.4f} (mean of "
                f"{len(self.recent)})  grad_norm {record.grad_norm:.3g}  inner steps/s "
                f"{record.inner_steps_per_s:.0f}  {_clock(elapsed)} elapsed, "
                f"{_clock(left)} left  task {record.task}"
                + (f"  (compiling: {compiled:.0f} s)" if compiled >= 0.5 else "")
                + (f"  workers {record.workers_live}" if record.workers_live is not None else "")
                + self._busy(),
                flush=True,
            )
        if record.valid is not None:
            self.note(
                f"step {record.step:>6}/{self.total}  validation {record.valid:.4f}  "
                f"(best {record.valid_best:.4f} at step {record.valid_best_step})"
            )

    def _busy(self) -> str:
        """``, busy P%``: the workers' computing time over the recent steps ÷ (workers seen ×
        those steps' time); empty without workers."""
        if not self.working:
            return ""
        busy, seconds, ids = zip(*self.working, strict=True)
        return f", busy {sum(busy) / (len(set().union(*ids)) * sum(seconds)):.0%}"

    def note(self, line: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


MIN_DIVERGED = 3  # fewer diverged episodes in a stretch are not a trend


class Watch:
    """Warns when, over the last ``span`` outer steps, most episodes diverged or nearly every
    estimate was zero (meta-training that has stopped learning); then stays quiet for
    another ``span`` steps."""

    def __init__(self, span: int = 20):
        self.span = span
        self.records: collections.deque = collections.deque(maxlen=span)
        self.quiet_until = 0

    def check(self, record: StepRecord) -> str | None:
        self.records.append(record)
        if len(self.records) < self.span or record.step < self.quiet_until:
            return None
        steps = f"steps {self.records[0].step}-{record.step}"
        diverged = sum(r.diverged for r in self.records)
        ended = sum(r.ended for r in self.records)
        zero = sum(r.grad_norm == 0 for r in self.records)
        message = None
        if diverged >= MIN_DIVERGED and diverged > ended / 2:
            message = (
                f"{diverged} of {ended} inner episodes in {steps} diverged (a loss above "
                "meta_loss.clip x its initial loss, or non-finite): estimator.sigma or "
                "outer.learning_rate may be too large"
            )
        elif zero >= 0.9 * self.span:
            message = (
                f"the estimate was zero on {zero} of {self.span} {steps}: theta may have left "
                "the region where perturbations change the loss (outer.learning_rate too large?)"
            )
        if message is not None:
            self.quiet_until = record.step + self.span
        return message
