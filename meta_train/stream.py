"""A stream of meta-gradient estimates: the unit of work of the trainer and of each Ray worker.

A stream owns an estimator over the configured task (a fixed task, or a member of a family or
of a mixture of families, resampled every ``task.resample_every`` windows and optionally
augmented) and produces one estimate per window at whatever theta it is given. Everything
random is a function of ``(seed, stream, window)``, so a restarted worker re-creates the same
task sequence, and an estimate lost in flight is recomputed for the same window.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Hashable, Sequence
from typing import Any, Protocol

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import lopt
import tasks
from meta_train import compile_cache, estimators
from meta_train.config import EstimatorConfig, MetaTrainConfig, OptimizerConfig, TaskConfig
from meta_train.estimators import ESTIMATORS, ESState
from meta_train.unroll import MetaLoss, Unroller
from meta_train.watchdog import Watchdog

_MAX_ESTIMATORS = 8  # compiled estimators kept per stream (one per task structure)


@dataclasses.dataclass(frozen=True)
class StreamSpec:
    """The sections of a run's config that its estimate streams compute from; a Ray worker
    builds its stream from one."""

    optimizer: OptimizerConfig
    task: TaskConfig
    estimator: EstimatorConfig
    meta_loss: MetaLoss
    seed: int

    @classmethod
    def of(cls, cfg: MetaTrainConfig) -> StreamSpec:
        return cls(cfg.optimizer, cfg.task, cfg.estimator, cfg.meta_loss, cfg.seed)


def build_estimator(
    e: EstimatorConfig,
    meta_loss: MetaLoss,
    task: tasks.Task,
    lo: lopt.LearnedOptimizer,
    parts: int = 1,
):
    """The estimator ``e`` names, over truncated unrolls of ``lo`` on ``task``, computing
    its population in ``parts`` slices."""
    unroller = Unroller(task, lo, e.schedule, meta_loss, window=e.window, stagger=e.stagger)
    return ESTIMATORS[e.name](
        unroller,
        num_particles=e.num_particles,
        sigma=e.sigma,
        burn_in=e.burn_in,
        difference=e.difference,
        parts=parts,
    )


class TaskSource:
    """The task of each window of stream ``stream``: the fixed ``task.name``, or a member of
    ``task.family`` (a uniformly drawn one of a list) resampled every ``task.resample_every``
    windows, then augmented per ``task.augment``; every draw is a function of the seed, the
    stream and the period."""

    def __init__(self, cfg: TaskConfig, seed: int, stream: int = 0):
        self.cfg = cfg
        self._key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 1), stream)

    def period(self, window: int) -> int:
        if not self.cfg.resamples:
            return 0
        return window // self.cfg.resample_every

    def structure(self, period: int) -> Hashable:
        """A hashable description of the task of ``period``: ``(family or task name, family
        config or None, augmentation (param-scale key, loss factor) or None)``."""
        key = jax.random.fold_in(self._key, period)
        family_key, member_key, param_key, loss_key = jax.random.split(key, 4)
        if self.cfg.name is not None:
            base = (self.cfg.name, None)
        else:
            families = self.cfg.families
            name = families[int(jax.random.randint(family_key, (), 0, len(families)))]
            base = (name, tasks.family(name).sample(member_key))
        aug = self.cfg.augment
        if not aug.active:
            return (*base, None)
        lo, hi = np.log(aug.loss_scale)
        factor = float(np.exp(jax.random.uniform(loss_key, (), minval=lo, maxval=hi)))
        return (*base, (int(jax.random.randint(param_key, (), 0, 2**31 - 1)), factor))

    def task(self, structure: Hashable) -> tasks.Task:
        name, member, augmentation = structure
        task = tasks.get(name) if member is None else tasks.family(name).task(member)
        if augmentation is not None:
            param_seed, factor = augmentation
            lo, hi = self.cfg.augment.param_scale
            task = tasks.augment.reparameterize(task, jax.random.key(param_seed), lo, hi)
            task = tasks.augment.scale_loss(task, factor)
        return task


@dataclasses.dataclass(frozen=True, kw_only=True)
class EstimateMetrics:
    """What computing one estimate found and took: the scalars a step's
    :class:`~meta_train.metrics_log.StepRecord` sums or averages over its estimates."""

    meta_loss: float  # the mean meta-loss of the population's windows
    grad_norm: float  # the norm of the estimate
    inner_steps: int  # inner training steps taken (all particles and antithetic copies)
    diverged: int  # episodes ended by a non-finite or exploding loss
    resets: int  # particles started on a new episode
    ended: int  # episodes that reached their length
    seconds: float  # wall time of the computation
    compile_seconds: float  # of those, obtaining compiled programs
    task: str  # the task structure the window trained
    devices: int  # local devices the particles were sharded over
    # Set by the Ray worker that computed it:
    worker: int | None = None
    stream: int | None = None
    window: int | None = None
    host: str | None = None
    pid: int | None = None
    # A merged estimate's slices, each computed on its own (``partition: particles``):
    parts: tuple[EstimateMetrics, ...] = ()


@dataclasses.dataclass
class Estimate:
    """One meta-gradient estimate: ``grad`` (shaped like theta) computed at theta ``version``,
    and its ``metrics``."""

    grad: lopt.Theta
    version: int
    metrics: EstimateMetrics


_MERGED = ("meta_loss", "inner_steps", "diverged", "resets", "ended")  # estimators.merge's


def merge(parts: Sequence[Estimate]) -> Estimate:
    """One stream's estimate from its population's slices, all computed at one version
    (:func:`meta_train.estimators.merge`). Its metrics keep the slices' own, as ``parts``;
    its ``seconds`` are the slowest slice's."""
    grad, merged = estimators.merge(
        [(p.grad, {k: getattr(p.metrics, k) for k in _MERGED}) for p in parts]
    )
    ms = [p.metrics for p in parts]
    return Estimate(
        grad,
        parts[0].version,
        EstimateMetrics(
            **merged,
            seconds=max(m.seconds for m in ms),
            compile_seconds=sum(m.compile_seconds for m in ms),
            task=ms[0].task,
            devices=sum(m.devices for m in ms),
            parts=tuple(ms),
        ),
    )


class EstimateStream:
    """Estimates for windows ``0, 1, 2, ...`` of stream ``stream``, or of slice ``part`` of
    its population when ``parts > 1`` (``merge`` the slices' estimates).

    The particle population (or slice) is sharded over ``devices`` (default: every local
    device) when it divides evenly over them, so one stream uses every chip of its host; the
    estimate is the same as on one device up to float summation order. Estimators are
    cached by task structure, so each structure compiles once; every slice of a structure
    runs the same program (from the persistent compilation cache, if another process
    compiled it first).
    """

    def __init__(
        self,
        spec: StreamSpec,
        stream: int = 0,
        devices: Sequence[jax.Device] | None = None,
        part: int = 0,
        parts: int = 1,
    ):
        self.spec = spec
        self.stream, self.parts = stream, parts
        self.part = np.int32(part)  # traced by the estimator: one program for every slice
        self.lo = spec.optimizer.build()
        self.source = TaskSource(spec.task, spec.seed, stream)
        root = jax.random.key(spec.seed)
        self._init_key = jax.random.fold_in(jax.random.fold_in(root, 2), stream)
        self._step_key = jax.random.fold_in(jax.random.fold_in(root, 3), stream)
        devices = list(devices or jax.local_devices())
        local = spec.estimator.num_particles // parts
        self.devices = devices if local % len(devices) == 0 else devices[:1]
        self.replicated = NamedSharding(Mesh(np.asarray(self.devices), ("d",)), PartitionSpec())
        self._estimators: dict[Any, Any] = {}
        self.period: int | None = None
        self.estimator = None
        self.state: ESState | None = None  # the estimator state after the last window run
        self.next_window: int | None = None  # the window that state continues into

    def _build(self, structure: Hashable):
        """A new estimator over the task of ``structure`` (``TaskSource.structure``)."""
        task, spec = self.source.task(structure), self.spec
        return build_estimator(spec.estimator, spec.meta_loss, task, self.lo, self.parts)

    def _estimator_for(self, period: int):
        structure = self.source.structure(period)
        if structure not in self._estimators:
            if len(self._estimators) >= _MAX_ESTIMATORS:  # augmented ones never repeat
                del self._estimators[next(iter(self._estimators))]  # the oldest
            self._estimators[structure] = self._build(structure)
        return self._estimators[structure]

    def _place(self, state: ESState, estimator) -> ESState:
        """Shards ``state``, or commits it to the one device, as ``estimate`` returns it (a
        state placed differently from the one returned would compile ``estimate`` again)."""
        if len(self.devices) > 1:
            return estimator.shard(state, self.devices)
        return jax.device_put(state, self.replicated)

    def _fresh_state(self, period: int, theta: lopt.Theta, estimator) -> ESState:
        key = jax.random.key_data(jax.random.fold_in(self._init_key, period))
        return self._place(estimator.init(key, theta, self.part), estimator)

    def _key(self, window: int) -> jax.Array:
        return jax.random.key_data(jax.random.fold_in(self._step_key, window))

    def prepare(self, window: int, theta: lopt.Theta) -> None:
        """Compiles the programs of ``window``'s task period without running a window: into
        the persistent compilation cache, for another process whose stream of the same spec
        and index will run them (``meta_train.distributed.Precompiler``). ``theta`` (host
        arrays, as a worker receives them) gives the shapes."""
        period = self.source.period(window)
        estimator = self._build(self.source.structure(period))
        theta = jax.device_put(theta, self.replicated)
        state = self._fresh_state(period, theta, estimator)
        type(estimator).estimate.lower(
            estimator, theta, state, self._key(window), self.part
        ).compile()

    def state_template(self, window: int, theta: lopt.Theta) -> ESState:
        """The shapes of the state after ``window`` (for restoring a checkpoint)."""
        est = self._estimator_for(self.source.period(window))
        key = jax.random.key_data(self._init_key)
        # init is a jitted method with compiler options, which a nested jit (jax.eval_shape)
        # rejects; its own eval_shape takes `self` explicitly.
        return type(est).init.eval_shape(est, key, theta, self.part)

    def restore(self, window: int, state: ESState) -> None:
        """Continues from ``state``, the state after window ``window`` ran."""
        self.period = self.source.period(window)
        self.estimator = self._estimator_for(self.period)
        self.state = self._place(state, self.estimator)
        self.next_window = window + 1

    def task_name(self, window: int) -> str:
        """The name of the task that window ``window`` trains."""
        return self._estimator_for(self.source.period(window)).unroller.task.name

    def estimate(self, theta: lopt.Theta, window: int) -> tuple[lopt.Theta, EstimateMetrics]:
        """The estimate of window ``window`` at ``theta``: ``(grad, metrics)`` on the host.

        Entering a new period, or any window but the one after the last it ran (the first
        window of a restarted worker or of a stream moved to another worker), builds that
        period's estimator and starts a fresh population.
        """
        began, compiled = time.perf_counter(), compile_cache.seconds_compiling()
        theta = jax.device_put(theta, self.replicated)
        period = self.source.period(window)
        if period != self.period or window != self.next_window:
            self.period = period
            self.estimator = self._estimator_for(period)
            self.state = self._fresh_state(period, theta, self.estimator)
        key = self._key(window)
        grad, self.state, m = self.estimator.estimate(theta, self.state, key, self.part)
        self.next_window = window + 1
        grad, m = jax.device_get((grad, m))
        return grad, EstimateMetrics(
            meta_loss=float(m["meta_loss"]),
            grad_norm=float(m["grad_norm"]),
            inner_steps=int(m["inner_steps"]),
            diverged=int(m["diverged"]),
            resets=int(m["resets"]),
            ended=int(m["ended"]),
            seconds=time.perf_counter() - began,
            compile_seconds=compile_cache.seconds_compiling() - compiled,
            task=self.estimator.unroller.task.name,
            devices=len(self.devices),
        )


class EstimateSource(Protocol):
    """Where the trainer's estimates come from: :class:`InProcessSource` (here, one per
    step) or :class:`~meta_train.distributed.WorkerPool` (Ray workers).

    A step is ``publish(theta, version)`` then ``collect()``; a checkpoint holds the
    learner's state and the source's ``checkpoint()`` (arrays, JSON metadata), restored by
    ``restore(step, arrays, metadata)`` into arrays shaped like ``template(step, theta)``.
    """

    def place(self, tree: Any) -> Any:
        """``tree`` (the learner's state) on the devices the estimates are computed on."""

    def template(self, step: int, theta: lopt.Theta) -> dict[str, Any]:
        """The shapes of the arrays ``checkpoint()`` saved after outer step ``step``."""

    def restore(self, step: int, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        """Continues after outer step ``step`` from what ``checkpoint()`` returned then."""

    def checkpoint(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(arrays, metadata)`` to save with the learner's state."""

    def publish(self, theta: lopt.Theta, version: int) -> None:
        """Makes ``theta`` (the learner's ``version``) the one new estimates are computed at."""

    def collect(self) -> list[Estimate]:
        """The estimates of one outer step."""

    def info(self) -> dict[str, Any]:
        """Counters for the step's metrics record."""

    def close(self) -> None:
        """Releases what the source holds (workers, devices)."""


class InProcessSource:
    """One estimate per outer step, computed in this process at the published theta
    (synchronous), so a run is deterministic and its checkpoint holds the estimator state
    for an exact resume; each under ``watchdog`` when given. Implements
    :class:`EstimateSource`."""

    def __init__(
        self,
        spec: StreamSpec,
        devices: Sequence[jax.Device] | None,
        verbose: bool = True,
        watchdog: Watchdog | None = None,
    ):
        self.stream = EstimateStream(spec, stream=0, devices=devices)
        self.watchdog = watchdog
        self.window = 0
        local = len(devices or jax.local_devices())
        if local > 1 and len(self.stream.devices) == 1 and verbose:
            print(
                f"note: {spec.estimator.num_particles} particles do not split over {local} "
                "devices; using one"
            )
        self._theta, self._version = None, 0

    def place(self, tree: Any) -> Any:
        return jax.device_put(tree, self.stream.replicated)

    def template(self, step: int, theta: lopt.Theta) -> dict[str, Any]:
        return {"estimator": self.stream.state_template(step - 1, theta)}

    def restore(self, step: int, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        # The state of the last window run; if that ended a period, the next estimate starts
        # the next structure exactly as an uninterrupted run would.
        self.stream.restore(step - 1, ESState(*arrays["estimator"]))
        self.window = step

    def checkpoint(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"estimator": self.stream.state}, {}

    def publish(self, theta: lopt.Theta, version: int) -> None:
        self._theta, self._version = theta, version

    def collect(self) -> list[Estimate]:
        watch = contextlib.nullcontext()
        if self.watchdog is not None:
            task = self.stream.task_name(self.window)
            watch = self.watchdog.watch(f"the estimate of outer step {self.window + 1} ({task})")
        with watch:
            grad, metrics = self.stream.estimate(self._theta, self.window)
        self.window += 1
        return [Estimate(grad, self._version, metrics)]

    def info(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass
