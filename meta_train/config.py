"""The meta-training configuration's schema: one frozen dataclass per section, validated on
construction; a bad value raises :class:`ConfigError` naming the field and what is allowed.

Files and command-line overrides become these dataclasses in ``meta_train.config_io``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import lopt
import tasks
from meta_train.estimators import DIFFERENCES, ESTIMATORS
from meta_train.unroll import MetaLoss, TruncationSchedule
from meta_train.validation import ValidationConfig


class ConfigError(ValueError):
    """An invalid configuration; the message names the field."""


def check(cond: bool, field: str, message: str) -> None:
    """Raises :class:`ConfigError` ``field: message`` unless ``cond``."""
    if not cond:
        raise ConfigError(f"{field}: {message}")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """The learned optimizer to meta-train.

    Attributes:
      architecture: a class of ``lopt.ARCHITECTURES`` (``MLPLOpt``, ``VeLO``, ``HyperAdam``,
        ``LearnedSchedule``).
      hparams: its constructor's keyword arguments, e.g. ``{hidden: [8, 8], nominal: true}``.
    """

    architecture: str = "MLPLOpt"
    hparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        check(
            self.architecture in lopt.ARCHITECTURES,
            "optimizer.architecture",
            f"must be one of {sorted(lopt.ARCHITECTURES)}, got {self.architecture!r}",
        )
        self.build()  # validates the hyperparameters

    def build(self) -> lopt.LearnedOptimizer:
        try:
            return lopt.ARCHITECTURES[self.architecture](**self.hparams)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"optimizer.hparams: {e}") from None


def _check_task(field: str, spec, kind: type, build, built_in: list[str]) -> None:
    """``spec`` is a ``kind`` object, the label of one in a saved config
    (``tasks.label``), a built-in name, or an import path to what ``build`` accepts (built
    here, so that a typo fails before any worker starts)."""
    if isinstance(spec, kind) or tasks.is_object_label(spec):
        return
    check(
        isinstance(spec, str) and (spec in built_in or tasks.is_import_path(spec)),
        field,
        f"must be one of {built_in} or an import path package.module:attribute, got {spec!r}",
    )
    if tasks.is_import_path(spec):
        try:
            build(spec)
        except ValueError as e:
            raise ConfigError(f"{field}: {e}") from None


def _check_range(field: str, value: tuple[float, float]) -> None:
    check(
        len(value) == 2 and 0 < value[0] <= value[1],
        field,
        f"must be [low, high] with 0 < low <= high, got {list(value)}",
    )


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Task augmentation, drawn afresh for every task period (``tasks.augment``): each
    parameter tensor is reparameterized ``p = s·q`` with ``s ~ LogUniform(param_scale)`` and
    the loss multiplied by ``c ~ LogUniform(loss_scale)``. ``[1, 1]`` turns either off.

    Attributes:
      param_scale: ``[low, high]`` of the per-tensor reparameterization ``s``.
      loss_scale: ``[low, high]`` of the loss multiplier ``c``.
    """

    param_scale: tuple[float, float] = (1.0, 1.0)
    loss_scale: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self):
        _check_range("task.augment.param_scale", self.param_scale)
        _check_range("task.augment.loss_scale", self.loss_scale)

    @property
    def active(self) -> bool:
        return self.param_scale != (1.0, 1.0) or self.loss_scale != (1.0, 1.0)


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """What to meta-train on: a fixed task (``name``), or members of ``family`` (one family
    or a list, a uniform mixture) whose structure is resampled every ``resample_every``
    outer steps; ``augment`` optionally transforms each period's task.

    Attributes:
      name: a fixed task: a built-in name (``tasks.names()``) or an import path
        ``package.module:factory``; ``null`` when ``family`` is set. From Python, also a
        ``tasks.Task`` (``MetaTrainConfig.with_task``).
      family: a family (``tasks.families()`` or an import path), or a list of them sampled
        uniformly; ``null`` when ``name`` is set. From Python, also ``tasks.TaskFamily``
        objects.
      resample_every: outer steps per task period (one structure, one augmentation draw).
      augment: the per-period augmentation.
    """

    name: str | tasks.Task | None = None
    family: str | tasks.TaskFamily | tuple[str | tasks.TaskFamily, ...] | None = None
    resample_every: int = 50
    augment: AugmentConfig = AugmentConfig()

    def __post_init__(self):
        check(
            (self.name is None) != (self.family is None),
            "task",
            "set exactly one of task.name (a fixed task) and task.family",
        )
        if self.name is not None:
            _check_task("task.name", self.name, tasks.Task, tasks.get, tasks.names())
        else:
            check(bool(self.families), "task.family", "must name at least one family")
            for f in self.families:
                _check_task("task.family", f, tasks.TaskFamily, tasks.family, tasks.families())
        check(
            self.resample_every >= 1,
            "task.resample_every",
            f"must be >= 1, got {self.resample_every}",
        )

    @property
    def resamples(self) -> bool:
        """Whether the task changes every ``resample_every`` outer steps (a family, or an
        augmented task) rather than staying one fixed task."""
        return self.name is None or self.augment.active

    @property
    def families(self) -> tuple[str | tasks.TaskFamily, ...]:
        """The families sampled from (empty for a fixed task)."""
        if self.family is None:
            return ()
        return (self.family,) if not isinstance(self.family, tuple) else self.family

    def check_buildable(self) -> None:
        """Raises ``ConfigError`` if a task or family was a Python object when the config was
        saved (``tasks.label``): nothing but that object can stand for it."""
        specs = [("task.name", self.name)] if self.name is not None else []
        for field, spec in [*specs, *(("task.family", f) for f in self.families)]:
            if tasks.is_object_label(spec):
                kind = "Task" if field == "task.name" else "TaskFamily"
                raise ConfigError(
                    f"{field}: {spec} was given as a {kind} object in Python, and a saved "
                    "config cannot rebuild it: pass the same object again "
                    "(MetaTrainConfig.with_task), or name it by an import path "
                    "package.module:attribute so that any process can"
                )

    def describe(self) -> str:
        specs = (self.name,) if self.name is not None else self.families
        what = " + ".join(getattr(s, "name", s) for s in specs)  # an object by its name
        return f"{what} (augmented)" if self.augment.active else what


@dataclasses.dataclass(frozen=True)
class EstimatorConfig:
    """The meta-gradient estimator and its population (see ``meta_train.estimators``).

    Attributes:
      name: one of ``meta_train.ESTIMATORS`` (``NRES``, ``PES``, ``TruncatedES``,
        ``FullES``, ``TruncatedBPTT``).
      num_particles: the population: antithetic pairs for the ES estimators.
      sigma: the standard deviation of the perturbations of theta.
      window: inner steps per particle per estimate (one truncation).
      schedule: the episode lengths (the horizons each inner optimizer is told).
      stagger: cut each particle's first episode at a random point, so that particles sit at
        decorrelated points of their episodes.
      burn_in: windows run under the unperturbed theta before the first estimate.
      difference: ``value`` (the antithetic loss differences) or ``sign`` (only the sign of
        each step's difference).
    """

    name: str = "NRES"
    num_particles: int = 8
    sigma: float = 0.01
    window: int = 20
    schedule: TruncationSchedule = TruncationSchedule()
    stagger: bool = True
    burn_in: int = 0
    difference: str = "value"

    def __post_init__(self):
        check(
            self.name in ESTIMATORS,
            "estimator.name",
            f"must be one of {list(ESTIMATORS)}, got {self.name!r}",
        )
        check(
            self.num_particles >= 1,
            "estimator.num_particles",
            f"must be >= 1, got {self.num_particles}",
        )
        check(self.sigma > 0, "estimator.sigma", f"must be > 0, got {self.sigma}")
        check(self.window >= 1, "estimator.window", f"must be >= 1, got {self.window}")
        check(self.burn_in >= 0, "estimator.burn_in", f"must be >= 0, got {self.burn_in}")
        check(
            self.difference in DIFFERENCES,
            "estimator.difference",
            f"must be one of {list(DIFFERENCES)}, got {self.difference!r}",
        )


@dataclasses.dataclass(frozen=True)
class OuterConfig:
    """The outer optimizer (optax Adam after global-norm clipping) and the learner's rules.

    Attributes:
      learning_rate: Adam's learning rate on theta.
      clip_norm: the global norm each meta-gradient estimate is clipped to.
      b1: Adam's first-moment decay.
      b2: Adam's second-moment decay.
      max_staleness: estimates computed at a theta more than this many versions old are
        dropped (asynchronous workers).
    """

    learning_rate: float = 3e-3
    clip_norm: float = 1.0
    b1: float = 0.9
    b2: float = 0.999
    max_staleness: int = 0

    def __post_init__(self):
        check(
            self.learning_rate > 0, "outer.learning_rate", f"must be > 0, got {self.learning_rate}"
        )
        check(self.clip_norm > 0, "outer.clip_norm", f"must be > 0, got {self.clip_norm}")
        check(0 <= self.b1 < 1, "outer.b1", f"must be in [0, 1), got {self.b1}")
        check(0 <= self.b2 < 1, "outer.b2", f"must be in [0, 1), got {self.b2}")
        check(
            self.max_staleness >= 0,
            "outer.max_staleness",
            f"must be >= 0, got {self.max_staleness}",
        )


PARTITIONS = ("streams", "particles")


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """Where estimates are computed: in this process (``workers: null``, the default) or by
    ``workers`` Ray actors (``meta_train.distributed``). With ``partition: streams`` each
    worker runs its own estimate stream; with ``particles`` every stream's population is
    split evenly over the workers, each computing its slice of every stream, so a step's
    work is balanced whatever the cost of each stream's task (the estimates are those of
    ``streams`` up to float summation order; synchronous steps only).

    ``address`` is ``null`` for a local Ray instance sized to this machine, started and shut
    down by the run, or the address of an existing cluster (``"auto"``, ``"host:6379"``).
    Each outer step averages ``estimates_per_step`` estimates (default: ``workers``) that are
    at most ``outer.max_staleness`` theta versions old. A worker that dies is restarted; the
    run stops if one fails ``max_worker_failures`` times in a row. With ``pin_cpus``, a
    worker without GPUs or custom resources runs on ``cpus_per_worker`` cores of its host
    that no other worker holds (XLA would otherwise spread every worker over all cores).
    With ``precompile``, when the workers are CPU-only processes of a local Ray instance
    and the task changes every period, a low-priority process compiles the streams' coming
    periods while the workers run the current one (``meta_train.distributed.Precompiler``),
    so a worker entering a period reads its programs from the persistent compilation
    cache instead of compiling them while the other workers wait.

    Attributes:
      workers: Ray workers; ``null`` computes estimates in this process.
      address: ``null`` (a local Ray instance), ``auto`` or ``host:port`` of a cluster.
      cpus_per_worker: CPUs Ray reserves for each worker.
      gpus_per_worker: GPUs Ray reserves for each worker.
      resources_per_worker: custom Ray resources per worker, e.g. ``{TPU: 4}``.
      worker_env: environment variables of the workers, e.g. ``{PYTHONPATH: ...}``.
      estimates_per_step: estimates averaged per outer step (default: ``workers``); with
        ``partition: particles``, the number of streams.
      partition: ``streams`` (a stream per worker) or ``particles`` (a slice of every
        stream's population per worker).
      pin_cpus: pin each CPU-only worker to its own ``cpus_per_worker`` cores.
      precompile: compile each task period ahead in a low-priority process (local CPU-only
        workers with the compilation cache on).
      max_worker_failures: consecutive failures of one worker that stop the run.
      startup_timeout: seconds to wait for the workers to be placed and start.
    """

    workers: int | None = None
    address: str | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    resources_per_worker: Mapping[str, float] = dataclasses.field(default_factory=dict)
    worker_env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    estimates_per_step: int | None = None
    partition: str = "streams"
    pin_cpus: bool = True
    precompile: bool = True
    max_worker_failures: int = 3
    startup_timeout: float = 300.0

    def __post_init__(self):
        if self.workers is None:
            check(
                self.address is None,
                "distributed.address",
                "needs distributed.workers (>= 1); null workers computes estimates in this process",
            )
        else:
            check(
                self.workers >= 1,
                "distributed.workers",
                f"must be >= 1 (or null to compute estimates in this process), got {self.workers}",
            )
        check(
            self.address is None or bool(self.address.strip()),
            "distributed.address",
            "must be null (a local Ray instance), 'auto' or host:port, got an empty string",
        )
        check(
            self.cpus_per_worker > 0,
            "distributed.cpus_per_worker",
            f"must be > 0, got {self.cpus_per_worker}",
        )
        check(
            self.gpus_per_worker >= 0,
            "distributed.gpus_per_worker",
            f"must be >= 0, got {self.gpus_per_worker}",
        )
        for name, amount in self.resources_per_worker.items():
            check(
                isinstance(amount, int | float) and amount > 0,
                f"distributed.resources_per_worker.{name}",
                f"must be a number > 0, got {amount!r}",
            )
        for name, value in self.worker_env.items():
            check(
                isinstance(value, str),
                f"distributed.worker_env.{name}",
                f"must be a string, got {value!r}",
            )
        check(
            self.estimates_per_step is None or self.estimates_per_step >= 1,
            "distributed.estimates_per_step",
            f"must be >= 1 (or null for one per worker), got {self.estimates_per_step}",
        )
        check(
            self.partition in PARTITIONS,
            "distributed.partition",
            f"must be one of {list(PARTITIONS)}, got {self.partition!r}",
        )
        check(
            self.max_worker_failures >= 1,
            "distributed.max_worker_failures",
            f"must be >= 1, got {self.max_worker_failures}",
        )
        check(
            self.startup_timeout > 0,
            "distributed.startup_timeout",
            f"must be > 0, got {self.startup_timeout}",
        )


@dataclasses.dataclass(frozen=True)
class MetaTrainConfig:
    """A whole meta-training run.

    Attributes:
      optimizer: what is meta-trained.
      task: what it is meta-trained on.
      estimator: how the meta-gradient is estimated.
      meta_loss: what each inner step contributes to the meta-objective.
      outer: how theta is updated from the estimates.
      distributed: where the estimates are computed.
      validation: meta-validation and the choice of ``best.lopt``.
      num_steps: outer steps.
      seed: seeds theta's initialization and every task and perturbation draw.
      run_dir: where the config, metrics, checkpoints and exported optimizers go.
      checkpoint_every: outer steps between checkpoints (and one at the end).
      log_every: outer steps between progress lines when not on a terminal.
    """

    optimizer: OptimizerConfig = OptimizerConfig()
    task: TaskConfig = TaskConfig(family="image-mlp")
    estimator: EstimatorConfig = EstimatorConfig()
    meta_loss: MetaLoss = MetaLoss()
    outer: OuterConfig = OuterConfig()
    distributed: DistributedConfig = DistributedConfig()
    validation: ValidationConfig = ValidationConfig()
    num_steps: int = 100
    seed: int = 0
    run_dir: str = "runs/meta-train"
    checkpoint_every: int = 25
    log_every: int = 10

    def with_task(self, task: str | tasks.Task | tasks.TaskFamily) -> MetaTrainConfig:
        """This config meta-training on ``task``: a fixed task (a ``tasks.Task`` or a task
        name or import path), or a ``tasks.TaskFamily``. The rest of ``self.task``
        (resampling, augmentation) is kept. A run given an object resumes only from Python,
        given the same object again."""
        family = isinstance(task, tasks.TaskFamily)
        section = dataclasses.replace(
            self.task, name=None if family else task, family=task if family else None
        )
        return dataclasses.replace(self, task=section)

    def __post_init__(self):
        check(self.num_steps >= 1, "num_steps", f"must be >= 1, got {self.num_steps}")
        check(
            self.checkpoint_every >= 1,
            "checkpoint_every",
            f"must be >= 1, got {self.checkpoint_every}",
        )
        check(self.log_every >= 1, "log_every", f"must be >= 1, got {self.log_every}")
        check(
            self.outer.max_staleness < self.num_steps,
            "outer.max_staleness",
            f"must be < num_steps ({self.num_steps}), got {self.outer.max_staleness}",
        )
        d = self.distributed
        if d.partition == "particles" and d.workers is not None:
            check(
                self.outer.max_staleness == 0,
                "outer.max_staleness",
                f"must be 0 with distributed.partition: particles, got {self.outer.max_staleness}",
            )
            check(
                self.estimator.num_particles % d.workers == 0,
                "estimator.num_particles",
                f"must divide evenly over the {d.workers} workers with distributed.partition: "
                f"particles, got {self.estimator.num_particles}",
            )
