"""A run's directory: whether a run may start or resume in it, its metrics file, and the
optimizers it exports.

    run_dir/.lock               held by the one process running in it (``lock``)
    run_dir/config.yaml         the config (a resumed run may change only where it runs)
    run_dir/metrics.jsonl       one JSON record per outer step
    run_dir/checkpoints/<step>  orbax checkpoints (``meta_train.checkpoint``)
    run_dir/init.lopt           the theta the run started from, frozen (``lopt.load``)
    run_dir/optimizer.lopt      the final theta, frozen
    run_dir/best.lopt           the best theta by meta-validation, when validated
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
import socket
from collections.abc import Iterator
from typing import Any

import numpy as np

import lopt
from meta_train import metrics_log
from meta_train.checkpoint import Checkpointer
from meta_train.config import MetaTrainConfig
from meta_train.config_io import load_config, to_dict
from meta_train.validation import Best

# What a resumed run may change: how long it runs, where it writes and logs, and where its
# estimates are computed; not what it computes.
RESUMABLE_CHANGES = ("num_steps", "run_dir", "checkpoint_every", "log_every", "distributed")


def _take(run_dir: pathlib.Path):
    """``run_dir/.lock``, open and exclusively ``flock``-ed by this process (the kernel
    releases it when the process ends, however it ends: a dead run's lock never blocks);
    ``FileExistsError`` naming the holder (its PID and host) when another process has it."""
    handle = open(run_dir / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise FileExistsError(
            f"{run_dir} is in use by a run of {holder}; wait for it to end or choose another "
            "run_dir"
        ) from None
    return handle


@contextlib.contextmanager
def lock(run_dir: pathlib.Path) -> Iterator[None]:
    """Makes this process the only one running in ``run_dir`` while the block runs
    (``_take``); ``run_dir/.lock`` names it. (``flock`` is local to a host: hosts sharing the
    directory over NFS are not kept apart.)"""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = _take(run_dir)
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    handle.flush()
    try:
        yield
    finally:
        handle.close()  # releases the lock


def check(cfg: MetaTrainConfig, resume: bool, held: bool = False) -> None:
    """Raises unless a run of ``cfg`` may start (no other run in ``cfg.run_dir`` now, unless
    this process ``held`` its ``lock``; and, with ``resume`` false, no checkpoint or metrics
    of an earlier run) or resume (a checkpoint, and a config that differs from the saved one
    only in :data:`RESUMABLE_CHANGES`) in ``cfg.run_dir``."""
    run_dir = pathlib.Path(cfg.run_dir)
    if not held and (run_dir / ".lock").exists():
        _take(run_dir).close()  # raises while another run holds it
    ckpt_dir = (run_dir / "checkpoints").absolute()
    metrics = run_dir / "metrics.jsonl"
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
    if not resume and metrics.is_file() and metrics.stat().st_size:
        raise FileExistsError(
            f"{run_dir} holds the metrics of an earlier run but no checkpoint to resume from; "
            "choose another run_dir or delete it"
        )
    if resume:
        _check_resumable(cfg, run_dir, latest)


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
    for field in RESUMABLE_CHANGES:
        saved[field] = current[field]
    if saved != current:
        diff = sorted(k for k in current if saved.get(k) != current[k])
        raise ValueError(
            f"cannot resume {run_dir}: the config differs from the saved one in {diff} "
            f"(only {', '.join(RESUMABLE_CHANGES)} may change)"
        )


def metrics_path(cfg: MetaTrainConfig) -> pathlib.Path:
    return pathlib.Path(cfg.run_dir) / "metrics.jsonl"


def history(cfg: MetaTrainConfig) -> list[metrics_log.StepRecord]:
    """The records of ``metrics.jsonl``, one per outer step (``meta_train.metrics_log``)."""
    return metrics_log.read(metrics_path(cfg))


def export_init(cfg: MetaTrainConfig, theta: lopt.Theta) -> pathlib.Path:
    """Writes ``init.lopt``: the untrained ``theta`` a run starts from (the baseline its
    trained optimizer should beat), with the recipe in its metadata."""
    meta = {"recipe": to_dict(cfg), "outer_steps": 0, "note": "the theta the run started from"}
    return lopt.save(pathlib.Path(cfg.run_dir) / "init.lopt", cfg.optimizer.build(), theta, meta)


def export(
    cfg: MetaTrainConfig,
    theta: lopt.Theta,
    best: Best | None,
    records: list[metrics_log.StepRecord],
) -> tuple[pathlib.Path, pathlib.Path | None]:
    """Writes ``optimizer.lopt`` (``theta``) and, with ``best``, ``best.lopt``; each file's
    metadata holds the recipe, the horizons it was trained at, its outer steps and the mean
    meta-loss of the first and last ten of them (from ``records``, the run's whole
    ``metrics.jsonl``). Returns both paths (``None`` without best)."""

    def meta(steps: int) -> dict[str, Any]:
        losses = [r.meta_loss for r in records if r.step <= steps]
        schedule = cfg.estimator.schedule
        return {
            "recipe": to_dict(cfg),
            "horizons": [schedule.min_length, schedule.max_length],  # lopt.Frozen.horizons
            "outer_steps": steps,
            "meta_loss_first10": float(np.mean(losses[:10])) if losses else None,
            "meta_loss_last10": float(np.mean(losses[-10:])) if losses else None,
        }

    run_dir = pathlib.Path(cfg.run_dir)
    lo = cfg.optimizer.build()
    path = lopt.save(run_dir / "optimizer.lopt", lo, theta, meta=meta(cfg.num_steps))
    if best is None:
        return path, None
    best_meta = meta(best.step) | {"validation": best.meta()}
    return path, lopt.save(run_dir / "best.lopt", lo, best.theta, meta=best_meta)
