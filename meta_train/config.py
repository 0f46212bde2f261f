"""The meta-training configuration's schema: one frozen dataclass per section whose fields
declare what they allow (``meta_train.rules``), checked on construction; a bad value raises
:class:`ConfigError` naming the field and what is allowed.

Files and command-line overrides become these dataclasses in ``meta_train.config_io``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import lopt
import tasks
from meta_train.estimators import DIFFERENCES, ESTIMATORS
from meta_train.rules import (
    ConfigError,
    Rule,
    above,
    at_least,
    check,
    each,
    one_of,
    optional,
    setting,
    validate,
)
from meta_train.unroll import MetaLoss, TruncationSchedule
from meta_train.validation import ValidationConfig


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """The learned optimizer to meta-train.

    Attributes:
      architecture: a class of ``lopt.ARCHITECTURES``.
      hparams: its constructor's keyword arguments, e.g. ``{hidden: [8, 8], nominal: true}``.
    """

    architecture: str = setting("MLPLOpt", one_of(sorted(lopt.ARCHITECTURES)))
    hparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        validate(self)
        self.build()  # validates the hyperparameters

    def build(self) -> lopt.LearnedOptimizer:
        try:
            return lopt.ARCHITECTURES[self.architecture](**self.hparams)
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e), field="hparams") from None


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
            raise ConfigError(str(e), field=field) from None


_SCALE_RANGE = Rule(lambda v: len(v) == 2 and 0 < v[0] <= v[1], "[low, high] with 0 < low <= high")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Task augmentation, drawn afresh for every task period (``tasks.augment``): each
    parameter tensor is reparameterized ``p = s·q`` with ``s ~ LogUniform(param_scale)`` and
    the loss multiplied by ``c ~ LogUniform(loss_scale)``. ``[1, 1]`` turns either off.

    Attributes:
      param_scale: ``[low, high]`` of the per-tensor reparameterization ``s``.
      loss_scale: ``[low, high]`` of the loss multiplier ``c``.
    """

    param_scale: tuple[float, float] = setting((1.0, 1.0), _SCALE_RANGE)
    loss_scale: tuple[float, float] = setting((1.0, 1.0), _SCALE_RANGE)

    def __post_init__(self):
        validate(self)

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
    resample_every: int = setting(50, at_least(1))
    augment: AugmentConfig = AugmentConfig()

    def __post_init__(self):
        validate(self)
        check(
            (self.name is None) != (self.family is None),
            "",
            "set exactly one of name (a fixed task) and family",
        )
        if self.name is not None:
            _check_task("name", self.name, tasks.Task, tasks.get, tasks.names())
        else:
            check(bool(self.families), "family", "must name at least one family")
            for f in self.families:
                _check_task("family", f, tasks.TaskFamily, tasks.family, tasks.families())

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

    def describe(self) -> str:
        specs = (self.name,) if self.name is not None else self.families
        what = " + ".join(getattr(s, "name", s) for s in specs)  # an object by its name
        return f"{what} (augmented)" if self.augment.active else what


@dataclasses.dataclass(frozen=True)
class EstimatorConfig:
    """The meta-gradient estimator and its population (see ``meta_train.estimators``).

    Attributes:
      name: an estimator of ``meta_train.ESTIMATORS``.
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

    name: str = setting("NRES", one_of(ESTIMATORS))
    num_particles: int = setting(8, at_least(1))
    sigma: float = setting(0.01, above(0))
    window: int = setting(20, at_least(1))
    schedule: TruncationSchedule = TruncationSchedule()
    stagger: bool = True
    burn_in: int = setting(0, at_least(0))
    difference: str = setting("value", one_of(DIFFERENCES))

    def __post_init__(self):
        validate(self)


_DECAY = Rule(lambda b: 0 <= b < 1, "in [0, 1)")


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

    learning_rate: float = setting(3e-3, above(0))
    clip_norm: float = setting(1.0, above(0))
    b1: float = setting(0.9, _DECAY)
    b2: float = setting(0.999, _DECAY)
    max_staleness: int = setting(0, at_least(0))

    def __post_init__(self):
        validate(self)


PARTITIONS = ("streams", "particles")


def _is_address(address: str) -> bool:
    if address == "auto" or "://" in address:  # ray:// (Ray Client)
        return True
    _, sep, port = address.rpartition(":")
    return bool(sep) and port.isdigit()


_ADDRESS = Rule(
    lambda a: isinstance(a, str) and _is_address(a),
    "'auto' or host:port such as 10.0.0.1:6379",
)
_POSITIVE_NUMBER = Rule(
    lambda v: isinstance(v, int | float) and not isinstance(v, bool) and v > 0, "a number > 0"
)


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """Where estimates are computed: in this process (``workers: null``, the default) or by
    up to ``workers`` Ray actors (``meta_train.distributed``). Each outer step averages
    ``estimates_per_step`` estimates at most ``outer.max_staleness`` theta versions old. A
    worker that dies or loses its node leaves, its work going to the others, and joins again
    when Ray has restarted it (on a node that joins, say).

    Attributes:
      workers: Ray workers wanted; ``null`` computes estimates in this process.
      min_workers: the fewest live workers the run goes on with.
      address: ``null`` (a local Ray instance sized to this machine, started and shut down by
        the run), ``auto`` or ``host:port`` of an existing cluster.
      cpus_per_worker: CPUs Ray reserves for each worker.
      gpus_per_worker: GPUs Ray reserves for each worker.
      resources_per_worker: custom Ray resources per worker, e.g. ``{TPU: 4}``.
      worker_env: environment variables of the workers, e.g. ``{PYTHONPATH: ...}``.
      estimates_per_step: estimates averaged per outer step (default: ``workers``); with
        ``partition: particles``, the number of streams.
      partition: ``streams`` (a stream per worker) or ``particles`` (every stream's
        population split evenly over the workers, so a step's work is balanced whatever
        each task costs; the same estimates up to float summation order; synchronous only).
      pin_cpus: run each worker without GPUs or custom resources on ``cpus_per_worker``
        cores of its own (XLA would otherwise spread every worker over all cores).
      precompile: when the workers are CPU-only processes of a local Ray instance and the
        task changes every period, compile the coming periods in a low-priority process
        (``meta_train.distributed.Precompiler``), so a worker entering a period reads its
        programs from the persistent compilation cache.
      max_worker_failures: consecutive failures after which a worker is retired (not
        restarted again).
      startup_timeout: seconds to wait at the start for ``min_workers`` workers (and for
        every one the cluster has room for), and later, with fewer than ``min_workers``
        live, for one to come back before the run stops.
      stall_timeout: seconds an estimate may go with its process using (almost) no CPU
        before it counts as wedged (``meta_train.watchdog``): in this process the run stops
        with one line and its checkpoints intact for ``--resume``; a worker exits and is
        restarted as after a crash. Compiling and computing use CPU, so slow work never
        trips it.
    """

    workers: int | None = setting(
        None, optional(at_least(1), "to compute estimates in this process")
    )
    min_workers: int = setting(1, at_least(1))
    address: str | None = setting(None, optional(_ADDRESS, "for a local Ray instance"))
    cpus_per_worker: float = setting(1.0, above(0))
    gpus_per_worker: float = setting(0.0, at_least(0))
    resources_per_worker: Mapping[str, float] = setting({}, each(_POSITIVE_NUMBER))
    worker_env: Mapping[str, str] = setting(
        {}, each(Rule(lambda v: isinstance(v, str), "a string"))
    )
    estimates_per_step: int | None = setting(None, optional(at_least(1), "for one per worker"))
    partition: str = setting("streams", one_of(PARTITIONS))
    pin_cpus: bool = True
    precompile: bool = True
    max_worker_failures: int = setting(3, at_least(1))
    startup_timeout: float = setting(300.0, above(0))
    stall_timeout: float = setting(120.0, above(0))

    def __post_init__(self):
        validate(self)
        check(
            self.address is None or self.workers is not None,
            "address",
            "needs workers (>= 1); null workers computes estimates in this process",
        )
        check(
            self.workers is None or self.min_workers <= self.workers,
            "min_workers",
            f"must be <= distributed.workers ({self.workers}), got {self.min_workers}",
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
    num_steps: int = setting(100, at_least(1))
    seed: int = 0
    run_dir: str = "runs/meta-train"
    checkpoint_every: int = setting(25, at_least(1))
    log_every: int = setting(10, at_least(1))

    def with_task(self, task: str | tasks.Task | tasks.TaskFamily) -> MetaTrainConfig:
        """This config meta-training on ``task``: a fixed task (a ``tasks.Task`` or a task
        name or import path), or a ``tasks.TaskFamily``. The rest of ``self.task``
        (resampling, augmentation) is kept. A run given an object resumes only from Python,
        given the same object again."""
        family = isinstance(task, tasks.TaskFamily)
        try:
            section = dataclasses.replace(
                self.task, name=None if family else task, family=task if family else None
            )
        except ConfigError as e:
            raise e.within("task") from None
        return dataclasses.replace(self, task=section)

    def __post_init__(self):
        validate(self)
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

    def check_buildable(self) -> None:
        """Raises ``ConfigError`` if a task or family was a Python object when the config was
        saved (``tasks.label``): nothing but that object can stand for it."""
        task = self.task
        specs = [("task.name", task.name)] if task.name is not None else []
        for field, spec in [*specs, *(("task.family", f) for f in task.families)]:
            if tasks.is_object_label(spec):
                kind = "Task" if field == "task.name" else "TaskFamily"
                raise ConfigError(
                    f"{spec} was given as a {kind} object in Python, and a saved config cannot "
                    "rebuild it: pass the same object again (MetaTrainConfig.with_task), or "
                    "name it by an import path package.module:attribute so that any process can",
                    field,
                )
