"""Hand-designed baselines from optax, each with an explicit hyperparameter search space.

Every baseline is built through ``optax.inject_hyperparams``, so its hyperparameters are
arrays in the optimizer state and a whole sweep can be ``vmap``-ped (``bench.runner``).
Search spaces are log-uniform in the value (``"log"``) or in one minus it (``"log1m"``, for
momentum-like ``β`` close to 1), as in Choi et al. (2019).

A *scheduled* baseline (``adam-cosine``, ``sf-adamw``, ...) multiplies its learning rate
by an optax schedule of the fraction of the run done, ``count / num_steps``; its budget
``num_steps`` is one of its hyperparameters, so a tuned schedule is tuned for one budget and
runs of several budgets share one compiled program.

Every baseline ``X`` also has its *tuning-free* variant ``X-default``: ``X`` at its published
defaults, one run per seed and no search (``untuned``). ``TUNING_FREE`` is what a user who
tunes nothing runs; ``STRONG`` is what a practitioner who tunes runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


class Range(NamedTuple):
    """A search range: ``low``–``high`` on a log scale of the value (``"log"``) or of one
    minus the value (``"log1m"``, so ``Range(0.9, 0.999, "log1m")`` spans ``1 − β``)."""

    low: float
    high: float
    scale: str = "log"

    def __call__(self, u: np.ndarray) -> np.ndarray:
        """The values at quantiles ``u ∈ [0, 1]``."""
        if self.scale == "log":
            return np.exp(np.log(self.low) + u * (np.log(self.high) - np.log(self.low)))
        lo, hi = np.log(1 - self.high), np.log(1 - self.low)
        return 1 - np.exp(lo + u * (hi - lo))


def scale_by_adam_atan2(
    b1: float = 0.9, b2: float = 0.999, a: float = 1.27, b: float = 1.0
) -> optax.GradientTransformation:
    """Adam-atan2 (Everett et al. 2024): Adam's ``m̂ / (√v̂ + ε)`` replaced by
    ``a · atan2(m̂, b · √v̂)``, which needs no ε, is invariant to the gradient's scale and is
    bounded by ``a·π/2``. ``a ≈ 4/π`` matches Adam for ``|m̂| ≈ √v̂``."""

    def init_fn(params):
        zeros = optax.tree.zeros_like(params)
        return optax.ScaleByAdamState(jnp.zeros([], jnp.int32), zeros, zeros)

    def update_fn(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        mu_hat = optax.tree.bias_correction(mu, b1, count)
        nu_hat = optax.tree.bias_correction(nu, b2, count)
        updates = jax.tree.map(lambda m, v: a * jnp.arctan2(m, b * jnp.sqrt(v)), mu_hat, nu_hat)
        return updates, optax.ScaleByAdamState(count, mu, nu)

    return optax.GradientTransformation(init_fn, update_fn)


def adam_atan2(
    learning_rate: float, b1: float = 0.9, b2: float = 0.999, weight_decay: float = 0.0
) -> optax.GradientTransformation:
    """Adam-atan2 with decoupled weight decay, as an optax transform."""
    return optax.chain(
        scale_by_adam_atan2(b1, b2),
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_learning_rate(learning_rate),
    )


def _momentum(learning_rate: float, momentum: float = 0.9) -> optax.GradientTransformation:
    return optax.sgd(learning_rate, momentum=momentum, nesterov=True)


def _schedule_free_point(state: Any, params: Any) -> Any:
    """The averaged point ``x`` at which schedule-free AdamW is evaluated, from the state of
    ``Baseline.tx`` (``optax.inject_hyperparams`` keeps the optimizer's own state inside)."""
    return optax.contrib.schedule_free_eval_params(state.inner_state, params)


# Learning-rate multipliers as functions of the fraction of the run done (1 at the peak).
SCHEDULES: dict[str, optax.Schedule] = {
    "cosine": optax.cosine_decay_schedule(1.0, decay_steps=1),
    "warmup-cosine": optax.warmup_cosine_decay_schedule(
        0.0, 1.0, warmup_steps=0.05, decay_steps=1.0
    ),
    "warmup": optax.warmup_constant_schedule(0.0, 1.0, warmup_steps=0.05),
}


@dataclasses.dataclass(frozen=True)
class Baseline:
    """An optax optimizer ``factory(**hparams)``, its ``defaults`` and the ``space`` that a
    random search samples (hyperparameters outside ``space`` stay at their defaults).

    With a ``schedule`` (a key of ``SCHEDULES``) the learning rate at update ``count`` is
    ``learning_rate · SCHEDULES[schedule](count / num_steps)``, and ``num_steps`` (the run's
    budget) is a required hyperparameter.

    ``lr_grid`` is the ``(low, high)`` range of learning rates that the ``lr-grid`` protocol
    tries for this baseline whatever range it is given (for a learning rate that multiplies
    an estimated step, as Prodigy's and DoG's do). An empty ``space`` means *untuned*: the
    defaults alone, whatever the protocol. ``evaluate(opt_state, params)`` gives the point at
    which losses are measured when it is not ``params`` (schedule-free methods: the averaged
    iterate)."""

    name: str
    factory: Callable[..., optax.GradientTransformation]
    defaults: Mapping[str, float]
    space: Mapping[str, Range]
    schedule: str | None = None
    lr_grid: tuple[float, float] | None = None
    evaluate: Callable[[Any, Any], Any] | None = None

    def __post_init__(self):
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise ValueError(
                f"{self.name}: unknown schedule {self.schedule!r}; choose from {sorted(SCHEDULES)}"
            )

    @property
    def tuned(self) -> bool:
        """Whether the protocols search its hyperparameters (else: its defaults alone)."""
        return bool(self.space)

    def tx(self, hparams: Mapping[str, Any]) -> optax.GradientTransformation:
        """The optimizer at ``hparams`` (scalars or traced arrays) over the defaults."""
        hparams = {**self.defaults, **hparams}
        if self.schedule is None:
            return optax.inject_hyperparams(self.factory)(**hparams)
        if "num_steps" not in hparams:
            raise ValueError(
                f"baseline {self.name!r} decays its learning rate over the run: give its "
                "budget as hparams['num_steps']"
            )
        peak, budget = hparams.pop("learning_rate"), hparams.pop("num_steps")
        shape = SCHEDULES[self.schedule]
        return optax.inject_hyperparams(self.factory)(
            learning_rate=lambda count: peak * shape(count / budget), **hparams
        )

    def sample(self, u: np.ndarray) -> dict[str, np.ndarray]:
        """Hyperparameters at quantiles ``u[n, len(space)]`` (e.g. Halton points)."""
        return {k: r(u[:, i]).astype(np.float32) for i, (k, r) in enumerate(self.space.items())}


LR = Range(1e-5, 1.0)
BETA1 = Range(0.0, 0.999, "log1m")
BETA2 = Range(0.9, 0.9999, "log1m")
EPS = Range(1e-10, 1e-3)
DECAY = Range(1e-5, 1.0)

BASELINES: dict[str, Baseline] = {
    b.name: b
    for b in (
        Baseline("sgd", optax.sgd, {"learning_rate": 0.1}, {"learning_rate": Range(1e-4, 10.0)}),
        Baseline(
            "momentum",
            _momentum,
            {"learning_rate": 0.01, "momentum": 0.9},
            {"learning_rate": Range(1e-4, 10.0), "momentum": Range(0.0, 0.999, "log1m")},
        ),
        Baseline(
            "adam",
            optax.adam,
            {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8},
            {"learning_rate": LR, "b1": BETA1, "b2": BETA2, "eps": EPS},
        ),
        Baseline(
            "adamw",
            optax.adamw,
            {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 1e-4},
            {"learning_rate": LR, "b1": BETA1, "b2": BETA2, "eps": EPS, "weight_decay": DECAY},
        ),
        Baseline(
            "nadamw",
            optax.nadamw,
            {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 1e-4},
            {"learning_rate": LR, "b1": BETA1, "b2": BETA2, "eps": EPS, "weight_decay": DECAY},
        ),
        Baseline(
            "adam-cosine",
            optax.adam,
            {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8},
            {"learning_rate": LR, "b1": BETA1, "b2": BETA2, "eps": EPS},
            schedule="cosine",
        ),
        # AlgoPerf's baseline search space (warmup 5%, cosine to 0, β₂ = 0.999), with the
        # learning-rate range widened a decade upwards: small problems take larger rates;
        # over AdamW, and over NAdamW, AlgoPerf's baseline optimizer.
        *(
            Baseline(
                f"{name}-warmup-cosine",
                factory,
                {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 1e-4},
                {
                    "learning_rate": Range(1e-4, 1e-1),
                    "b1": Range(0.9, 0.996, "log1m"),
                    "weight_decay": Range(5e-3, 1.0),
                },
                schedule="warmup-cosine",
            )
            for name, factory in (("adamw", optax.adamw), ("nadamw", optax.nadamw))
        ),
        # Schedule-free AdamW (Defazio et al. 2024): 5% warmup, no decay; every loss is
        # measured at the averaged point. Its averaging weights and its step read the
        # warmup at the same update index (optax's own schedule argument reads the
        # weights one update ahead).
        Baseline(
            "sf-adamw",
            optax.contrib.schedule_free_adamw,
            {"learning_rate": 2.5e-3, "b1": 0.9, "b2": 0.999, "weight_decay": 0.0},
            {"learning_rate": LR, "b1": BETA1, "b2": BETA2, "weight_decay": DECAY},
            schedule="warmup",
            evaluate=_schedule_free_point,
        ),
        # Muon: Newton-Schulz orthogonalized Nesterov momentum on 2-D weights, Adam (at the
        # same rate) on every other leaf.
        *(
            Baseline(
                name,
                optax.contrib.muon,
                {"learning_rate": 0.02, "beta": 0.95},
                {"learning_rate": LR, "beta": BETA1},
                schedule=schedule,
            )
            for name, schedule in (("muon", None), ("muon-cosine", "cosine"))
        ),
        # Learning-rate-free methods: the learning rate multiplies the step they estimate,
        # searched over 0.1 … 10 around its default 1; Prodigy and D-Adaptation also with
        # cosine decay, as their authors run them.
        *(
            Baseline(
                name,
                factory,
                {"learning_rate": 1.0},
                {"learning_rate": Range(0.1, 10.0)},
                schedule=schedule,
                lr_grid=(0.1, 10.0),
            )
            for name, factory, schedule in (
                ("prodigy", optax.contrib.prodigy, None),
                ("prodigy-cosine", optax.contrib.prodigy, "cosine"),
                ("dadapt-adamw", optax.contrib.dadapt_adamw, None),
                ("dadapt-adamw-cosine", optax.contrib.dadapt_adamw, "cosine"),
                ("dog", optax.contrib.dog, None),
            )
        ),
        Baseline(
            "adam-atan2",
            adam_atan2,
            {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "weight_decay": 0.0},
            {"learning_rate": LR, "b1": BETA1, "b2": BETA2, "weight_decay": DECAY},
        ),
        Baseline(
            "lion",
            optax.lion,
            {"learning_rate": 1e-4, "b1": 0.9, "b2": 0.99, "weight_decay": 1e-3},
            {
                "learning_rate": Range(1e-6, 0.1),
                "b1": BETA1,
                "b2": Range(0.9, 0.9999, "log1m"),
                "weight_decay": DECAY,
            },
        ),
        Baseline(
            "adafactor",
            optax.adafactor,
            {"learning_rate": 1e-2},
            {"learning_rate": Range(1e-5, 1.0)},
        ),
    )
}


def untuned(baseline: Baseline) -> Baseline:
    """``baseline`` at its defaults, one run per seed, no search: ``<name>-default``."""
    return dataclasses.replace(baseline, name=f"{baseline.name}-default", space={}, lr_grid=None)


BASELINES |= {u.name: u for u in map(untuned, list(BASELINES.values()))}

# What `bench compare` tunes by default: constant and cosine-decayed Adam (the references),
# and what practitioners run in 2026, tuned cosine Muon and schedule-free AdamW.
STRONG = ("adam", "adam-cosine", "muon-cosine", "sf-adamw")
# What `bench compare` also runs once per seed at the published defaults: what a user who
# tunes nothing gets (Muon at 0.02, schedule-free AdamW at 0.0025, Adam and AlgoPerf's NAdamW
# at 1e-3, the learning-rate-free methods at 1).
TUNING_FREE = (
    "adam-default",
    "nadamw-warmup-cosine-default",
    "sf-adamw-default",
    "muon-cosine-default",
    "prodigy-cosine-default",
    "dadapt-adamw-cosine-default",
    "dog-default",
)


def get(name: str) -> Baseline:
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}")
    return BASELINES[name]
