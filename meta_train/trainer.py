"""The single-process meta-training loop: estimate -> learner update -> log -> checkpoint."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
import time
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import lopt
import tasks
from meta_train.checkpoint import Checkpointer
from meta_train.config import MetaTrainConfig, dump_config, load_config, to_dict
from meta_train.estimators import ESTIMATORS
from meta_train.learner import Learner, LearnerState
from meta_train.unroll import Unroller


@dataclasses.dataclass
class MetaTrainResult:
    theta: Any  # final meta-parameters
    history: list[dict[str, Any]]  # one record per outer step (this process's steps)
    run_dir: pathlib.Path
    checkpoint_dir: pathlib.Path
    export_path: pathlib.Path  # the frozen optimizer (lopt.load-able)


class TaskSource:
    """The task of each outer step: the fixed ``task.name``, or a member of ``task.family``
    resampled every ``task.resample_every`` steps from a key fixed by the seed and the period
    (so a resumed run sees the same sequence of tasks)."""

    def __init__(self, cfg: MetaTrainConfig):
        self.cfg = cfg.task
        self._key = jax.random.fold_in(jax.random.key(cfg.seed), 1)

    def period(self, step: int) -> int:
        return 0 if self.cfg.name is not None else step // self.cfg.resample_every

    def structure(self, period: int) -> Any:
        """A hashable description of the task of ``period`` (name or family config)."""
        if self.cfg.name is not None:
            return self.cfg.name
        return tasks.family(self.cfg.family).sample(jax.random.fold_in(self._key, period))

    def task(self, structure: Any) -> tasks.Task:
        if self.cfg.name is not None:
            return tasks.get(structure)
        return tasks.family(self.cfg.family).task(structure)


def build_estimator(cfg: MetaTrainConfig, task: tasks.Task, lo: lopt.LearnedOptimizer):
    e = cfg.estimator
    unroller = Unroller(task, lo, e.schedule, cfg.meta_loss, window=e.window, stagger=e.stagger)
    return ESTIMATORS[e.name](
        unroller, num_particles=e.num_particles, sigma=e.sigma, burn_in=e.burn_in
    )


class _Progress:
    """A tqdm bar on a terminal; otherwise a line every ``every`` steps."""

    def __init__(self, total: int, start: int, every: int, enabled: bool):
        self.enabled, self.every, self.total = enabled, every, total
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc="meta-train", unit="step")

    def update(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(
                meta_loss=f"{record['meta_loss']:.4f}", steps_s=f"{record['inner_steps_per_s']:.0f}"
            )
        elif record["step"] % self.every == 0 or record["step"] == self.total:
            print(
                f"step {record['step']:>6}/{self.total}  meta_loss {record['meta_loss']:.4f}  "
                f"grad_norm {record['grad_norm']:.3g}  inner steps/s {record['inner_steps_per_s']:.0f}  "
                f"task {record['task']}",
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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
    saved = to_dict(load_config(saved_path))
    current = to_dict(cfg)
    for field in (
        "num_steps",
        "run_dir",
    ):  # extending a run is allowed; the path may be spelled differently
        saved[field] = current[field]
    if saved != current:
        diff = sorted(k for k in current if saved.get(k) != current[k])
        raise ValueError(
            f"cannot resume {run_dir}: the config differs from the saved one in {diff} "
            "(only num_steps may change)"
        )


def meta_train(
    cfg: MetaTrainConfig,
    resume: bool = False,
    verbose: bool = True,
    devices: list[jax.Device] | None = None,
) -> MetaTrainResult:
    """Meta-trains ``cfg.optimizer`` for ``cfg.num_steps`` outer steps (see the README).

    Writes ``run_dir/config.yaml``, ``metrics.jsonl`` (one JSON record per step), orbax
    checkpoints under ``run_dir/checkpoints`` every ``checkpoint_every`` steps and at the end,
    and the trained optimizer as ``run_dir/optimizer.lopt``. With ``resume``, continues from
    the latest checkpoint exactly as if the run had not stopped.

    With several ``devices`` (default: all local devices) and ``estimator.num_particles``
    divisible by their number, the particle population is sharded across them
    (``Estimator.shard``) and the learner state replicated, so one process uses every chip.
    """
    run_dir = pathlib.Path(cfg.run_dir)
    ckpt = Checkpointer(run_dir / "checkpoints")
    latest = ckpt.latest_step()
    if resume and latest is None:
        raise FileNotFoundError(f"cannot resume: no checkpoint under {ckpt.directory}")
    if not resume and latest is not None:
        raise FileExistsError(
            f"{run_dir} already holds checkpoints (step {latest}); pass resume=True (--resume) "
            "or choose another run_dir"
        )
    if resume:
        _check_resumable(cfg, run_dir, latest)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, run_dir / "config.yaml")

    lo = cfg.optimizer.build()
    learner = Learner(cfg.outer)
    root = jax.random.key(cfg.seed)
    devices = list(devices or jax.local_devices())
    spread = len(devices) > 1 and cfg.estimator.num_particles % len(devices) == 0
    if len(devices) > 1 and not spread and verbose:
        print(
            f"note: {cfg.estimator.num_particles} particles do not split over {len(devices)} devices; using one"
        )
    replicated = NamedSharding(
        Mesh(np.asarray(devices if spread else devices[:1]), ("d",)), PartitionSpec()
    )
    place = lambda est, est_state: est.shard(est_state, devices) if spread else est_state
    state = jax.device_put(learner.init(lo.init(jax.random.fold_in(root, 0))), replicated)
    source = TaskSource(cfg)
    estimators: dict[Any, Any] = {}  # by task structure, so a structure compiles once

    def estimator_for(period):
        structure = source.structure(period)
        if structure not in estimators:
            estimators[structure] = build_estimator(cfg, source.task(structure), lo)
        return estimators[structure]

    def init_estimator(est, period, theta):
        return est.init(
            jax.random.key_data(jax.random.fold_in(jax.random.fold_in(root, 2), period)), theta
        )

    start, period, est, est_state = 0, None, None, None
    metrics_path = run_dir / "metrics.jsonl"
    if resume:
        # The checkpoint holds the estimator of the last step run; if that ended a period,
        # the loop starts the next structure exactly as an uninterrupted run would.
        period = source.period(latest - 1)
        est = estimator_for(period)
        template = {
            "learner": jax.eval_shape(lambda: state),
            "estimator": jax.eval_shape(
                lambda theta: init_estimator(est, period, theta), state.theta
            ),
        }
        restored, _ = ckpt.restore(latest, template)
        state = jax.device_put(LearnerState(*restored["learner"]), replicated)
        est_state = place(est, type(template["estimator"])(*restored["estimator"]))
        start = latest
        _truncate_metrics(metrics_path, latest)
    else:
        metrics_path.write_text("")

    progress = _Progress(cfg.num_steps, start, cfg.log_every, verbose)
    history = []
    step_key = jax.random.fold_in(root, 3)
    try:
        for step in range(start, cfg.num_steps):
            if source.period(step) != period:
                period = source.period(step)
                est = estimator_for(period)
                est_state = place(est, init_estimator(est, period, state.theta))
            began = time.perf_counter()
            version = int(state.version)
            key = jax.random.key_data(jax.random.fold_in(step_key, step))
            grad, est_state, m = est.estimate(state.theta, est_state, key)
            m = jax.device_get(m)
            seconds = time.perf_counter() - began
            state, lm = learner.apply(state, [(grad, version)])
            record = {
                "step": step + 1,
                "meta_loss": float(m["meta_loss"]),
                "grad_norm": float(m["grad_norm"]),
                "inner_steps": int(m["inner_steps"]),
                "inner_steps_per_s": float(m["inner_steps"]) / seconds,
                "seconds": seconds,
                "diverged": int(m["diverged"]),
                "resets": int(m["resets"]),
                "task": est.unroller.task.name,
                **lm,
            }
            history.append(record)
            with metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            progress.update(record)
            done = step + 1
            if done % cfg.checkpoint_every == 0 or done == cfg.num_steps:
                ckpt.save(done, {"learner": state, "estimator": est_state}, {"step": done})
    finally:
        progress.close()
        ckpt.close()

    losses = [json.loads(ln)["meta_loss"] for ln in metrics_path.read_text().splitlines() if ln]
    export_path = lopt.save(
        run_dir / "optimizer.lopt",
        lo,
        jax.device_get(state.theta),
        meta={
            "recipe": to_dict(cfg),
            "outer_steps": cfg.num_steps,
            "meta_loss_first10": float(np.mean(losses[:10])) if losses else None,
            "meta_loss_last10": float(np.mean(losses[-10:])) if losses else None,
        },
    )
    return MetaTrainResult(state.theta, history, run_dir, ckpt.directory, export_path)
