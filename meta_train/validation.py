"""Meta-validation: the score of theta on members of its training families that the run never
draws (for a fixed task: on that task itself, so not held out).

Every ``validation.every`` outer steps the trainer scores theta on ``validation.members``
members of each training family (drawn with keys the task source never uses, and not
augmented), or on the fixed task itself: the mean per-step meta-loss of whole episodes of
``validation.horizon`` steps from ``validation.particles`` fixed inits and batch orders
(:meth:`meta_train.Unroller.episode_loss`). The inits are the same at every step, so scores at
different steps differ only through theta; lower is better. The trainer exports the best
theta by this score as ``best.lopt``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import numpy as np

import lopt
import tasks
from meta_train.compile_cache import COMPILER_OPTIONS
from meta_train.rules import at_least, setting, validate
from meta_train.unroll import MetaLoss, TruncationSchedule, Unroller

_MEMBER_KEY = 20_000  # member i of a family is family.sample(key(20000 + i))
_EPISODE_KEY = 7


@dataclasses.dataclass(frozen=True)
class ValidationConfig:
    """Meta-validation (see the module docstring); ``every: 0`` turns it off.

    Attributes:
      every: outer steps between scores (0: none); theta is also scored at the start and
        the end.
      members: held-out members scored per training family.
      horizon: the length of each scored episode (inner steps).
      particles: fixed inits and batch orders per member.
    """

    every: int = setting(0, at_least(0))
    members: int = setting(2, at_least(1))
    horizon: int = setting(300, at_least(1))
    particles: int = setting(4, at_least(1))

    def __post_init__(self):
        validate(self)

    @property
    def active(self) -> bool:
        return self.every > 0


def held_out_tasks(name: str | None, families: tuple[str, ...], members: int) -> list[tasks.Task]:
    """The fixed task ``name``, or ``members`` members of each of ``families``."""
    if name is not None:
        return [tasks.get(name)]
    out = []
    for f in families:
        fam = tasks.family(f)
        out += [fam.task(fam.sample(jax.random.key(_MEMBER_KEY + i))) for i in range(members)]
    return out


@dataclasses.dataclass(frozen=True)
class Score:
    """A validation score: ``mean`` over tasks of each task's mean per-step meta-loss."""

    mean: float
    tasks: dict[str, float]


class Validator:
    """Scores theta on the ``held_out`` tasks (see :func:`held_out_tasks`); one compiled
    episode per task, compiled on first use."""

    def __init__(
        self,
        cfg: ValidationConfig,
        held_out: list[tasks.Task],
        lo: lopt.LearnedOptimizer,
        meta_loss: MetaLoss,
    ):
        schedule = TruncationSchedule("constant", cfg.horizon, cfg.horizon)
        names = [t.name for t in held_out]
        names = [n if names.count(n) == 1 else f"{n}#{i}" for i, n in enumerate(names)]
        self._episodes = {
            name: jax.jit(
                functools.partial(
                    Unroller(t, lo, schedule, meta_loss, window=cfg.horizon).episode_loss,
                    num_particles=cfg.particles,
                ),
                compiler_options=COMPILER_OPTIONS,
            )
            for name, t in zip(names, held_out, strict=True)
        }
        self._key = jax.random.PRNGKey(_EPISODE_KEY)

    def __call__(self, theta: lopt.Theta) -> Score:
        scores = {name: float(ep(theta, self._key)) for name, ep in self._episodes.items()}
        return Score(float(np.mean(list(scores.values()))), scores)


@dataclasses.dataclass
class Best:
    """The best theta by meta-validation so far: found at outer ``step`` (0: the initial
    theta) with ``score``."""

    step: int
    score: Score
    theta: lopt.Theta

    def meta(self) -> dict[str, Any]:
        return {"step": self.step, "score": self.score.mean, "tasks": self.score.tasks}

    def offer(self, step: int, score: Score, theta: lopt.Theta) -> Best:
        return Best(step, score, theta) if score.mean < self.score.mean else self
