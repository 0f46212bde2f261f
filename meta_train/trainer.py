"""The meta-training loop: collect estimates -> learner update -> log -> checkpoint.

Its parts live beside it: where estimates come from (``meta_train.stream.EstimateSource``:
in this process or from Ray workers), the learner (``meta_train.learner``), the run
directory (``meta_train.run_dir``), what a run reports (``meta_train.monitor``) and
meta-validation (``meta_train.validation``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import pathlib
import sys
import time
import warnings
from typing import Any

import jax

import lopt
from meta_train import metrics_log
from meta_train import run_dir as run_dir_lib
from meta_train.checkpoint import Checkpointer
from meta_train.config import MetaTrainConfig
from meta_train.config_io import dump_config
from meta_train.distributed import WorkerPool, ray_session
from meta_train.learner import Learner, LearnerState, initial_theta
from meta_train.metrics_log import StepRecord
from meta_train.monitor import Progress, Watch, step_record
from meta_train.stream import EstimateSource, InProcessSource, StreamSpec
from meta_train.validation import Best, Score, Validator, held_out_tasks
from meta_train.watchdog import Watchdog


@dataclasses.dataclass
class MetaTrainResult:
    theta: lopt.Theta  # final meta-parameters
    history: list[StepRecord]  # one per outer step (this process's steps)
    run_dir: pathlib.Path
    checkpoint_dir: pathlib.Path
    export_path: pathlib.Path  # the frozen optimizer (lopt.load-able)
    init_path: pathlib.Path  # the theta it started from, frozen
    best_path: pathlib.Path | None = None  # the best theta by meta-validation, if validated


def meta_train(
    cfg: MetaTrainConfig,
    resume: bool = False,
    verbose: bool = True,
    devices: list[jax.Device] | None = None,
) -> MetaTrainResult:
    """Meta-trains ``cfg.optimizer`` for ``cfg.num_steps`` outer steps (docs/meta_training.md).

    Writes ``run_dir/config.yaml``, ``metrics.jsonl`` (one JSON record per step), orbax
    checkpoints under ``run_dir/checkpoints`` every ``checkpoint_every`` steps and at the end,
    the theta it starts from as ``run_dir/init.lopt`` and the trained optimizer as
    ``run_dir/optimizer.lopt``. With ``validation.every`` > 0,
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

    A computation of this process that stalls (``meta_train.watchdog``: no CPU used for
    ``distributed.stall_timeout`` seconds, as when XLA's CPU runtime wedges) ends the
    process with exit status 3 and one line on stderr; its checkpoints are intact.

    Args:
      cfg: the run (``meta_train.load_config``).
      resume: continue the run in ``cfg.run_dir`` from its newest intact checkpoint.
      verbose: print progress.
      devices: the local devices of an in-process run.

    Returns:
      A :class:`MetaTrainResult`: the final theta, this process's metrics records, and the
      paths written.

    Example: Adam's log learning rate, meta-trained in this process for 3 outer steps::

        >>> import tempfile, lopt
        >>> from meta_train import load_config, meta_train
        >>> cfg = load_config(None, [
        ...     "optimizer.architecture=HyperAdam", "optimizer.hparams={lr: 0.01}",
        ...     "task.name=quadratic", "task.family=null", "estimator.window=10",
        ...     "estimator.schedule={kind: constant, min_length: 40, max_length: 40}",
        ...     "num_steps=3", f"run_dir={tempfile.mkdtemp()}/run"])
        >>> result = meta_train(cfg, verbose=False)
        >>> [r.step for r in result.history]
        [1, 2, 3]
        >>> lopt.load(result.export_path).meta["outer_steps"]
        3
    """
    cfg.check_buildable()
    run_dir_lib.check(cfg, resume)
    run_dir = pathlib.Path(cfg.run_dir)
    ckpt_dir = (run_dir / "checkpoints").absolute()
    in_process = cfg.distributed.workers is None
    spec = StreamSpec.of(cfg)
    session = contextlib.nullcontext() if in_process else ray_session(cfg.distributed, verbose)
    watchdog = Watchdog(cfg.distributed.stall_timeout, functools.partial(_stalled, run_dir))
    # Ray is up (or the run is in-process): nothing is written before. Then this process
    # holds the run directory, and checks it again (another run may have begun meanwhile).
    with session, run_dir_lib.lock(run_dir), watchdog:
        run_dir_lib.check(cfg, resume, held=True)
        dump_config(cfg, run_dir / "config.yaml")
        with (
            contextlib.closing(Checkpointer(ckpt_dir)) as ckpt,
            contextlib.closing(
                InProcessSource(spec, devices, verbose, watchdog)
                if in_process
                else WorkerPool(
                    spec, cfg.distributed, cfg.outer.max_staleness, verbose, cfg.num_steps
                )
            ) as source,
        ):
            theta, best, first = _run(cfg, source, ckpt, resume, verbose, watchdog)
    records = run_dir_lib.history(cfg)
    export_path, best_path = run_dir_lib.export(cfg, theta, best, records)
    history = [r for r in records if r.step > first]
    init_path = run_dir / "init.lopt"
    return MetaTrainResult(theta, history, run_dir, ckpt_dir, export_path, init_path, best_path)


def _stalled(run_dir: pathlib.Path, label: str, seconds: float) -> None:
    """The watchdog's report: one line, then the process ends (its stalled thread cannot be
    woken); every checkpoint was written before the stall and is intact."""
    print(
        f"error: meta-training stalled: {label} has used no CPU for {seconds:.0f} s (XLA's "
        "CPU runtime wedged; see meta_train.watchdog). Its checkpoints are intact: resume "
        f"with python -m meta_train --resume {run_dir}",
        file=sys.stderr,
        flush=True,
    )
    os._exit(3)


def _run(
    cfg: MetaTrainConfig,
    source: EstimateSource,
    ckpt: Checkpointer,
    resume: bool,
    verbose: bool,
    watchdog: Watchdog,
) -> tuple[lopt.Theta, Best | None, int]:
    """The outer loop from the newest intact checkpoint (with ``resume``) or the start;
    returns the final theta, the best one by meta-validation (``None`` without validation)
    and the step it started from. Meta-validation runs under ``watchdog`` (estimates computed
    in this process run under it in the source)."""
    learner = Learner(cfg.outer)
    theta0 = initial_theta(cfg.optimizer.build(), cfg.seed)
    if not (pathlib.Path(cfg.run_dir) / "init.lopt").exists():  # a resumed run has it
        run_dir_lib.export_init(cfg, theta0)
    state = source.place(learner.init(theta0))
    validate = None
    if cfg.validation.active:
        held_out = held_out_tasks(cfg.task.name, cfg.task.families, cfg.validation.members)
        validate = Validator(cfg.validation, held_out, cfg.optimizer.build(), cfg.meta_loss)
    metrics = run_dir_lib.metrics_path(cfg)
    start, best = 0, None
    if resume:
        start, state, best = _restore(ckpt, source, state, validate is not None)
        state = source.place(state)
        metrics_log.truncate(metrics, start)
    else:
        metrics.write_text("")
    progress, watch = Progress(cfg.num_steps, start, cfg.log_every, verbose), Watch()
    opening = {"resumed": True} if resume else {}  # fields of this process's first record
    if resume:
        progress.note(f"resumed from the checkpoint of outer step {start} of {cfg.num_steps}")
    if validate is not None and best is None:  # the starting theta is the first candidate
        with watchdog.watch("meta-validation of the initial theta"):
            best = Best(start, validate(state.theta), jax.device_get(state.theta))
        progress.note(f"validation of the initial theta: {best.score.mean:.4f}")
        opening["valid_initial"] = best.score.mean
    try:
        source.publish(state.theta, int(state.version))
        for step in range(start + 1, cfg.num_steps + 1):
            began = time.perf_counter()
            estimates = source.collect()
            learning = time.perf_counter()
            state, learned = learner.apply(state, [(e.grad, e.version) for e in estimates])
            source.publish(state.theta, int(state.version))
            done = time.perf_counter()
            extra = {"learner_seconds": done - learning, **learned, **source.info()}
            if step == start + 1:
                extra |= opening
            record = step_record(step, estimates, done - began, **extra)
            last = step == cfg.num_steps
            if validate is not None and (step % cfg.validation.every == 0 or last):
                with watchdog.watch(f"meta-validation after outer step {step}"):
                    best, valid = _validate(validate, best, step, state.theta)
                record = dataclasses.replace(record, **valid)
            if (warning := watch.check(record)) is not None:
                record = dataclasses.replace(record, warning=warning)
                warnings.warn(f"meta-training: {warning}", RuntimeWarning, stacklevel=2)
            metrics_log.append(metrics, record)
            progress.update(record)
            if step % cfg.checkpoint_every == 0 or last:
                _save(ckpt, step, state, source, best)
    finally:
        progress.close()
    return jax.device_get(state.theta), best, start


def _restore(
    ckpt: Checkpointer, source: EstimateSource, state: LearnerState, validated: bool
) -> tuple[int, LearnerState, Best | None]:
    """The newest intact checkpoint's step, learner state and best theta (when
    ``validated`` and saved); ``source`` continues from it. ``state`` gives the shapes."""
    learner_shapes = jax.eval_shape(lambda: state)

    def template(step: int) -> dict[str, Any]:
        shapes = {"learner": learner_shapes, **source.template(step, state.theta)}
        return shapes | ({"best": learner_shapes.theta} if validated else {})

    start, restored, meta = ckpt.restore_newest(template)
    source.restore(start, restored, meta)
    best = None
    if validated and "best" in meta:
        found = meta["best"]
        best = Best(found["step"], Score(found["score"], found["tasks"]), restored["best"])
    return start, LearnerState(*restored["learner"]), best


def _validate(validate: Validator, best: Best, step: int, theta: lopt.Theta) -> tuple[Best, dict]:
    """Scores ``theta`` at ``step``: the best theta so far and the record's fields."""
    began = time.perf_counter()
    score = validate(theta)
    best = best.offer(step, score, jax.device_get(theta))
    return best, {
        "valid": score.mean,
        "valid_tasks": score.tasks,
        "valid_best": best.score.mean,
        "valid_best_step": best.step,
        "valid_seconds": time.perf_counter() - began,
    }


def _save(
    ckpt: Checkpointer, step: int, state: LearnerState, source: EstimateSource, best: Best | None
) -> None:
    """Checkpoints the learner, the source and the best theta after outer ``step``."""
    arrays, meta = source.checkpoint()
    if best is not None:
        arrays, meta = arrays | {"best": best.theta}, meta | {"best": best.meta()}
    ckpt.save(step, {"learner": state, **arrays}, {"step": step, **meta})
