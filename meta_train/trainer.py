"""The meta-training loop: collect estimates -> learner update -> log -> checkpoint."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import pathlib
import sys
import time
import warnings
from typing import Any

import jax
import numpy as np

import lopt
from meta_train.checkpoint import Checkpointer
from meta_train.config import MetaTrainConfig, dump_config, load_config, to_dict
from meta_train.distributed import WorkerPool, ray_session
from meta_train.estimators import ESState
from meta_train.learner import Learner, LearnerState
from meta_train.stream import Estimate, EstimateStream
from meta_train.validation import Score, Validator, held_out_tasks


@dataclasses.dataclass
class MetaTrainResult:
    theta: Any  # final meta-parameters
    history: list[dict[str, Any]]  # one record per outer step (this process's steps)
    run_dir: pathlib.Path
    checkpoint_dir: pathlib.Path
    export_path: pathlib.Path  # the frozen optimizer (lopt.load-able)
    best_path: pathlib.Path | None = None  # the best theta by meta-validation, if validated


@dataclasses.dataclass
class Best:
    """The best theta by meta-validation so far: found at outer ``step`` (0: the initial
    theta) with ``score``."""

    step: int
    score: Score
    theta: Any

    def meta(self) -> dict[str, Any]:
        return {"step": self.step, "score": self.score.mean, "tasks": self.score.tasks}

    def offer(self, step: int, score: Score, theta: Any) -> Best:
        return Best(step, score, theta) if score.mean < self.score.mean else self


class _InProcess:
    """One estimate per outer step, computed here at the current theta (synchronous), so a
    run is deterministic and its checkpoint holds the estimator state for exact resume."""

    def __init__(self, cfg: MetaTrainConfig, devices: list[jax.Device] | None, verbose: bool):
        self.stream = EstimateStream(cfg, stream=0, devices=devices)
        self.window = 0
        local = len(devices or jax.local_devices())
        if local > 1 and len(self.stream.devices) == 1 and verbose:
            print(
                f"note: {cfg.estimator.num_particles} particles do not split over {local} "
                "devices; using one"
            )
        self._theta, self._version = None, 0

    def template(self, step: int, theta: Any) -> dict[str, Any]:
        return {"estimator": self.stream.state_template(step - 1, theta)}

    def restore(self, step: int, tree: dict[str, Any], meta: dict[str, Any]) -> None:
        # The state of the last window run; if that ended a period, the next estimate starts
        # the next structure exactly as an uninterrupted run would.
        self.stream.restore(step - 1, ESState(*tree["estimator"]))
        self.window = step

    def checkpoint(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"estimator": self.stream.state}, {}

    def publish(self, theta: Any, version: int) -> None:
        self._theta, self._version = theta, version

    def collect(self) -> list[Estimate]:
        grad, metrics = self.stream.estimate(self._theta, self.window)
        self.window += 1
        return [Estimate(grad, self._version, metrics)]

    def info(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


class _Distributed:
    """Estimates from Ray workers (:class:`~meta_train.distributed.WorkerPool`); the
    checkpoint holds each worker's count of completed windows."""

    def __init__(self, cfg: MetaTrainConfig, verbose: bool):
        self.pool = WorkerPool(cfg, verbose)

    def template(self, step: int, theta: Any) -> dict[str, Any]:
        return {}

    def restore(self, step: int, tree: dict[str, Any], meta: dict[str, Any]) -> None:
        self.pool.restore(meta["windows"])

    def checkpoint(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {}, {"windows": list(self.pool.windows)}

    def publish(self, theta: Any, version: int) -> None:
        self.pool.publish(theta, version)

    def collect(self) -> list[Estimate]:
        return self.pool.collect()

    def info(self) -> dict[str, Any]:
        return {"worker_restarts": self.pool.restarts, "lost_requests": self.pool.lost}

    def close(self) -> None:
        self.pool.close()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class _Progress:
    """A tqdm bar on a terminal; otherwise a line every ``every`` steps with the mean
    meta-loss of those steps (one step's value jumps with its task), the time elapsed, the
    time left at the rate so far, and the seconds those steps' estimates spent compiling."""

    def __init__(self, total: int, start: int, every: int, enabled: bool):
        self.enabled, self.every, self.total, self.start = enabled, every, total, start
        self.began = time.monotonic()
        self.recent: collections.deque = collections.deque(maxlen=every)
        self.compiling: collections.deque = collections.deque(maxlen=every)
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc="meta-train", unit="step")

    def update(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.recent.append(record["meta_loss"])
        self.compiling.append(record["compile_seconds"])
        mean = float(np.mean(self.recent))
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(
                meta_loss=f"{mean:.4f}", steps_s=f"{record['inner_steps_per_s']:.0f}"
            )
        elif record["step"] % self.every == 0 or record["step"] == self.total:
            elapsed = time.monotonic() - self.began
            left = elapsed / (record["step"] - self.start) * (self.total - record["step"])
            compiled = sum(self.compiling)
            print(
                f"step {record['step']:>6}/{self.total}  meta_loss {mean:.4f} (mean of "
                f"{len(self.recent)})  grad_norm {record['grad_norm']:.3g}  inner steps/s "
                f"{record['inner_steps_per_s']:.0f}  {_clock(elapsed)} elapsed, "
                f"{_clock(left)} left  task {record['task']}"
                + (f"  (compiling: {compiled:.0f} s)" if compiled >= 0.5 else ""),
                flush=True,
            )
        if "valid" in record:
            self.note(
                f"step {record['step']:>6}/{self.total}  validation {record['valid']:.4f}  "
                f"(best {record['valid_best']:.4f} at step {record['valid_best_step']})"
            )

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


class _Watch:
    """Warns when, over the last ``span`` outer steps, most episodes diverged or nearly every
    estimate was zero (meta-training that has stopped learning); then stays quiet for
    another ``span`` steps."""

    def __init__(self, span: int = 20):
        self.span = span
        self.records: collections.deque = collections.deque(maxlen=span)
        self.quiet_until = 0

    def check(self, record: dict[str, Any]) -> str | None:
        self.records.append(record)
        if len(self.records) < self.span or record["step"] < self.quiet_until:
            return None
        steps = f"steps {self.records[0]['step']}-{record['step']}"
        diverged = sum(r["diverged"] for r in self.records)
        ended = sum(r["ended"] for r in self.records)
        zero = sum(r["grad_norm"] == 0 for r in self.records)
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
            self.quiet_until = record["step"] + self.span
        return message


def _truncate_metrics(path: pathlib.Path, last_step: int) -> None:
    """Drops records after ``last_step`` (written after the checkpoint a run resumes from)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by the crash
            continue
        if record.get("step", last_step + 1) <= last_step:
            kept.append(line)
    path.write_text("".join(line + "\n" for line in kept))


def _check_resumable(cfg: MetaTrainConfig, run_dir: pathlib.Path, latest: int) -> None:
    if cfg.num_steps < latest:
        raise ValueError(
            f"cannot resume {run_dir} with num_steps={cfg.num_steps}: it is already at step {latest}"
        )
    saved_path = run_dir / "config.yaml"
    if not saved_path.exists():
        return
    saved, current = to_dict(load_config(saved_path)), to_dict(cfg)
    if (saved["distributed"]["workers"] is None) != (cfg.distributed.workers is None):
        raise ValueError(
            f"cannot resume {run_dir}: it ran "
            + ("in one process" if saved["distributed"]["workers"] is None else "on Ray workers")
            + " and the checkpoints differ; keep distributed.workers "
            + ("null" if saved["distributed"]["workers"] is None else "set")
        )
    # A run may be extended, moved, logged differently, and resumed on another cluster or
    # number of workers; what it computes may not change.
    free = ("num_steps", "run_dir", "checkpoint_every", "log_every", "distributed")
    for field in free:
        saved[field] = current[field]
    if saved != current:
        diff = sorted(k for k in current if saved.get(k) != current[k])
        raise ValueError(
            f"cannot resume {run_dir}: the config differs from the saved one in {diff} "
            f"(only {', '.join(free)} may change)"
        )


def _record(step: int, estimates: list[Estimate], seconds: float, **extra: Any) -> dict[str, Any]:
    """The metrics line of one outer step from the estimates it received."""
    ms = [e.metrics for e in estimates]
    inner = sum(m["inner_steps"] for m in ms)
    record = {
        "step": step,
        "meta_loss": float(np.mean([m["meta_loss"] for m in ms])),
        "grad_norm": float(np.mean([m["grad_norm"] for m in ms])),
        "inner_steps": inner,
        "inner_steps_per_s": inner / seconds,
        "seconds": seconds,
        # compiling done for this step's estimates, summed over the processes computing them
        "compile_seconds": sum(m["compile_seconds"] for m in ms),
        "estimates": len(ms),
        "diverged": sum(m["diverged"] for m in ms),
        "resets": sum(m["resets"] for m in ms),
        "ended": sum(m["ended"] for m in ms),
        "task": ",".join(sorted({m["task"] for m in ms})),
        "devices": [m["devices"] for m in ms],
    }
    if "worker" in ms[0]:
        for field in ("worker", "window", "pid"):  # per estimate: who computed which window
            record[field + "s"] = [m[field] for m in ms]
    return {**record, **extra}


def initial_theta(lo: lopt.LearnedOptimizer, seed: int) -> Any:
    """The meta-parameters a run with ``seed`` starts ``lo`` from."""
    return lo.init(jax.random.fold_in(jax.random.key(seed), 0))


def meta_train(
    cfg: MetaTrainConfig,
    resume: bool = False,
    verbose: bool = True,
    devices: list[jax.Device] | None = None,
) -> MetaTrainResult:
    """Meta-trains ``cfg.optimizer`` for ``cfg.num_steps`` outer steps (see the README).

    Writes ``run_dir/config.yaml``, ``metrics.jsonl`` (one JSON record per step), orbax
    checkpoints under ``run_dir/checkpoints`` every ``checkpoint_every`` steps and at the end,
    and the trained optimizer as ``run_dir/optimizer.lopt``. With ``validation.every`` > 0,
    theta is scored on held-out tasks every that many steps and at the end
    (``meta_train.validation``; records gain ``valid``, ``valid_tasks``, ``valid_best``) and
    the best theta by that score, the initial one included, is written as
    ``run_dir/best.lopt``. With ``resume``, continues from the newest checkpoint that
    restores; a damaged newer one is moved to ``checkpoints-damaged/`` with a warning.

    With ``distributed.workers`` null, estimates are computed in this process, one per step,
    over ``devices`` (default: all local devices; the particle population is sharded across
    them when ``estimator.num_particles`` divides evenly), and a resumed run continues
    exactly as if it had not stopped. Otherwise Ray workers compute them
    (``meta_train.distributed``): a local Ray instance, or the cluster at
    ``distributed.address``; a resumed run continues the step count and each worker's task
    sequence with fresh particle populations.
    """
    cfg.task.check_buildable()
    run_dir = pathlib.Path(cfg.run_dir)
    ckpt_dir = (run_dir / "checkpoints").absolute()
    metrics_path = run_dir / "metrics.jsonl"
    latest = None
    if ckpt_dir.is_dir():
        ckpt = Checkpointer(ckpt_dir)
        latest = ckpt.latest_step()
        ckpt.close()
    if resume and latest is None:
        raise FileNotFoundError(f"cannot resume: no checkpoint under {ckpt_dir}")
    if not resume and latest is not None:
        raise FileExistsError(
            f"{run_dir} already holds checkpoints (step {latest}); pass resume=True (--resume) "
            "or choose another run_dir"
        )
    if not resume and metrics_path.is_file() and metrics_path.stat().st_size:
        raise FileExistsError(
            f"{run_dir} holds the metrics of an earlier run but no checkpoint to resume from; "
            "choose another run_dir or delete it"
        )
    if resume:
        _check_resumable(cfg, run_dir, latest)
    session = (
        contextlib.nullcontext()
        if cfg.distributed.workers is None
        else ray_session(cfg.distributed, verbose)
    )
    with session:  # Ray is up (or the run is in-process): nothing is written before this
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / "config.yaml")
        ckpt = Checkpointer(ckpt_dir)
        try:
            theta, best, first = _run(cfg, ckpt, resume, verbose, devices)
        finally:
            ckpt.close()
    history = [json.loads(ln) for ln in metrics_path.read_text().splitlines() if ln]

    def meta(steps: int) -> dict[str, Any]:
        losses = [r["meta_loss"] for r in history if r["step"] <= steps]
        schedule = cfg.estimator.schedule
        return {
            "recipe": to_dict(cfg),
            "horizons": [schedule.min_length, schedule.max_length],  # lopt.Frozen.horizons
            "outer_steps": steps,
            "meta_loss_first10": float(np.mean(losses[:10])) if losses else None,
            "meta_loss_last10": float(np.mean(losses[-10:])) if losses else None,
        }

    lo = cfg.optimizer.build()
    export_path = lopt.save(run_dir / "optimizer.lopt", lo, theta, meta=meta(cfg.num_steps))
    best_path = None
    if best is not None:
        best_meta = meta(best.step) | {"validation": best.meta()}
        best_path = lopt.save(run_dir / "best.lopt", lo, best.theta, meta=best_meta)
    return MetaTrainResult(
        theta,
        [r for r in history if r["step"] > first],
        run_dir,
        ckpt_dir,
        export_path,
        best_path,
    )


def _run(
    cfg: MetaTrainConfig,
    ckpt: Checkpointer,
    resume: bool,
    verbose: bool,
    devices: list[jax.Device] | None,
) -> tuple[Any, Best | None, int]:
    """The outer loop from the newest intact checkpoint (with ``resume``) or the start; returns the final theta, the best one by meta-validation (``None`` without
    validation) and the step it started from."""
    learner = Learner(cfg.outer)
    if cfg.distributed.workers is None:
        source = _InProcess(cfg, devices, verbose)
        place = lambda state: jax.device_put(state, source.stream.replicated)
    else:
        source = _Distributed(cfg, verbose)
        place = lambda state: state
    state = place(learner.init(initial_theta(cfg.optimizer.build(), cfg.seed)))
    validate = None
    if cfg.validation.active:
        held_out = held_out_tasks(cfg.task.name, cfg.task.families, cfg.validation.members)
        validate = Validator(cfg.validation, held_out, cfg.optimizer.build(), cfg.meta_loss)
    metrics_path = pathlib.Path(cfg.run_dir) / "metrics.jsonl"
    start, best = 0, None
    if resume:
        learner_shapes = jax.eval_shape(lambda: state)

        def template(step: int) -> dict[str, Any]:
            shapes = {"learner": learner_shapes, **source.template(step, state.theta)}
            return shapes | ({"best": learner_shapes.theta} if validate is not None else {})

        start, restored, meta = ckpt.restore_newest(template)
        state = place(LearnerState(*restored["learner"]))
        source.restore(start, restored, meta)
        if validate is not None and "best" in meta:
            found = meta["best"]
            best = Best(found["step"], Score(found["score"], found["tasks"]), restored["best"])
        _truncate_metrics(metrics_path, start)
    else:
        metrics_path.write_text("")
    if validate is not None and best is None:  # the starting theta is the first candidate
        best = Best(start, validate(state.theta), jax.device_get(state.theta))

    progress = _Progress(cfg.num_steps, start, cfg.log_every, verbose)
    watch = _Watch()
    if best is not None and start == 0:
        progress.note(f"validation of the initial theta: {best.score.mean:.4f}")
    try:
        source.publish(state.theta, int(state.version))
        for step in range(start, cfg.num_steps):
            began = time.perf_counter()
            estimates = source.collect()
            learning = time.perf_counter()
            state, lm = learner.apply(state, [(e.grad, e.version) for e in estimates])
            source.publish(state.theta, int(state.version))
            done = time.perf_counter()
            record = _record(
                step + 1,
                estimates,
                done - began,
                learner_seconds=done - learning,
                **lm,
                **source.info(),
            )
            last = step + 1 == cfg.num_steps
            if validate is not None and ((step + 1) % cfg.validation.every == 0 or last):
                score = validate(state.theta)
                best = best.offer(step + 1, score, jax.device_get(state.theta))
                record |= {
                    "valid": score.mean,
                    "valid_tasks": score.tasks,
                    "valid_best": best.score.mean,
                    "valid_best_step": best.step,
                    "valid_seconds": time.perf_counter() - done,
                }
            if (warning := watch.check(record)) is not None:
                record["warning"] = warning
                warnings.warn(f"meta-training: {warning}", RuntimeWarning, stacklevel=2)
            with metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            progress.update(record)
            if (step + 1) % cfg.checkpoint_every == 0 or last:
                tree, meta = source.checkpoint()
                if best is not None:
                    tree, meta = tree | {"best": best.theta}, meta | {"best": best.meta()}
                ckpt.save(step + 1, {"learner": state, **tree}, {"step": step + 1, **meta})
    finally:
        progress.close()
        source.close()
    return jax.device_get(state.theta), best, start
