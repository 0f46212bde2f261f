"""Truncated unrolls of a population of inner training runs.

A population has ``N`` particles. Each particle is one inner training episode of a task,
run under ``S`` versions of the meta-parameters at once (``S = 2`` for an antithetic pair
``θ ± ε``, ``3`` for TES's ``θ + ε, θ − ε, θ``, ``1`` for BPTT). The ``S`` copies share the
particle's episode: its init key, episode length, step counter and every batch (common random
numbers), so their losses differ only through the meta-parameters.

``Unroller.unroll(thetas, pop)`` runs ``W`` inner steps for all ``S × N`` runs as one
``lax.scan`` over a doubly vmapped step; batches are drawn inside the compiled code. A particle
whose episode ends (its length reached, or a non-finite or exploding loss in any copy) stops
for the rest of the window and is reset -- new init, new length from the truncation schedule
-- at the start of the next window, so an episode is never split across perturbations.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

import lopt
import tasks
from meta_train.rules import Rule, above, at_least, check, one_of, setting, validate


def _swap01(tree):
    """Swaps the two leading axes of every leaf: ``[S, N, ...] <-> [N, S, ...]``."""
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), tree)


@dataclasses.dataclass(frozen=True)
class TruncationSchedule:
    """Episode lengths: ``constant`` (always ``max_length``) or ``loguniform`` in
    ``[min_length, max_length]``.

    Attributes:
      kind: ``constant`` (always ``max_length``) or ``loguniform``.
      min_length: the shortest episode (inner steps).
      max_length: the longest episode (inner steps), ``>= min_length``.
    """

    kind: str = setting("loguniform", one_of(("constant", "loguniform")))
    min_length: int = setting(100, at_least(1))
    max_length: int = setting(1000, at_least(1))

    def __post_init__(self):
        validate(self)
        check(
            self.min_length <= self.max_length,
            "max_length",
            f"must be >= min_length ({self.min_length}), got {self.max_length}",
        )

    def sample(self, key: jax.Array) -> jax.Array:
        """An int32 episode length (traced)."""
        if self.kind == "constant":
            return jnp.asarray(self.max_length, jnp.int32)
        lo, hi = math.log(self.min_length), math.log(self.max_length + 1)
        return jnp.minimum(
            jnp.exp(jax.random.uniform(key, (), minval=lo, maxval=hi)).astype(jnp.int32),
            self.max_length,
        )


@dataclasses.dataclass(frozen=True)
class MetaLoss:
    """Per-step meta-loss from an inner loss, normalized so tasks of different scales mix.

    With ``r = loss / init_loss`` clipped into ``[floor, clip]``: ``linear`` is ``r``, ``log``
    is ``log r``. A loss that is non-finite or above ``clip × init_loss`` counts as
    divergence: it contributes the clipped value and ends the particle's episode, so a
    diverging run never sends NaN or unbounded values into an estimate. The ``floor`` bounds
    what a task that memorizes (``loss → 0``) can contribute: below it, steps of ``θ ± ε``
    no longer differ, where ``log r`` would grow without bound.
    ``split`` picks the batch: ``train`` (the step's own minibatch loss, before the update:
    free) or ``valid`` (a fresh validation batch after the update: one more forward pass).
    ``end_power`` ``k`` weights step ``t`` of an episode of ``T`` steps by
    ``(k + 1) · (t / T)^k`` (mean about 1 over an episode): ``0`` weighs every step alike
    (the area under the loss curve), larger ``k`` moves the objective toward the final loss,
    which is what benchmarks judge (``t / T`` is known in every truncation window).

    Attributes:
      kind: ``linear`` (``r``) or ``log`` (``log r``).
      clip: the ratio above which a step counts as diverged.
      floor: the smallest ratio counted.
      split: the batch of each step's loss: ``train`` (its own) or ``valid`` (a fresh one).
      end_power: step ``t`` of ``T`` weighs ``(k + 1) · (t / T)^k``; 0 weighs all alike.
    """

    kind: str = setting("linear", one_of(("linear", "log")))
    clip: float = setting(2.0, above(1))
    floor: float = setting(1e-8, Rule(lambda f: 0 < f < 1, "in (0, 1)"))
    split: str = setting("train", one_of(("train", "valid")))
    end_power: float = setting(0.0, at_least(0))

    def __post_init__(self):
        validate(self)

    def weight(self, step: jax.Array, length: jax.Array) -> jax.Array:
        """The weight of (1-based) step ``step`` of an episode of ``length`` steps."""
        if self.end_power == 0:
            return jnp.ones(jnp.shape(step), jnp.float32)
        fraction = step.astype(jnp.float32) / jnp.maximum(length, 1).astype(jnp.float32)
        return (self.end_power + 1) * fraction**self.end_power

    def __call__(self, loss: jax.Array, init_loss: float) -> tuple[jax.Array, jax.Array]:
        """(meta-loss value, diverged flag)."""
        ratio = loss / init_loss
        diverged = jnp.logical_not(jnp.isfinite(ratio)) | (ratio > self.clip)
        ratio = jnp.maximum(jnp.where(diverged, self.clip, ratio), self.floor)
        value = jnp.log(ratio) if self.kind == "log" else ratio
        return value, diverged


class Population(NamedTuple):
    """``N`` particles × ``S`` copies. Leading axes: ``[S, N]`` for ``params`` and
    ``opt_state``, ``[N]`` for the rest. Keys are raw ``uint32[N, 2]``."""

    params: Any
    opt_state: Any
    step: jax.Array  # int32[N]: steps taken in the current episode
    length: jax.Array  # int32[N]: the episode's length (its optimizer's horizon)
    key: jax.Array  # uint32[N, 2]: the episode's key (init, then one batch per step)
    done: jax.Array  # bool[N]: episode over; reset at the start of the next window


class UnrollOutput(NamedTuple):
    values: jax.Array  # float32[W, S, N] per-step meta-losses
    mask: jax.Array  # bool[W, N]: the step belongs to a running episode
    diverged: jax.Array  # int32: episodes ended by divergence in this window
    resets: jax.Array  # int32: particles reset at the start of this window
    ended: jax.Array  # int32: episodes that ended in this window (length reached or diverged)


@dataclasses.dataclass(frozen=True, eq=False)
class Unroller:
    """Truncated unrolls of ``task`` trained by ``lo`` (see the module docstring).

    ``thetas`` passed to its methods are meta-parameter pytrees with leading axes ``[S, N]``;
    ``episode_loss`` takes one theta. Keys are raw ``uint32[2]`` keys.

    Args:
      task: the inner problem.
      lo: the learned optimizer whose meta-parameters the thetas are.
      schedule: the episode lengths (each inner optimizer is told its episode's length).
      meta_loss: what each inner step contributes to the meta-objective.
      window: inner steps per ``unroll`` (one truncation).
      stagger: cut each particle's first episode at a random point.

    Example: a whole episode's mean meta-loss at two learning rates of Adam::

        >>> import jax, lopt, tasks
        >>> from meta_train import MetaLoss, TruncationSchedule, Unroller
        >>> u = Unroller(tasks.get("quadratic"), lopt.HyperAdam(),
        ...              TruncationSchedule("constant", 40, 40), MetaLoss(), window=10)
        >>> slow, fast = (lopt.HyperAdam(lr=lr).init(None) for lr in (1e-2, 1e-1))
        >>> key = jax.random.PRNGKey(3)
        >>> bool(u.episode_loss(fast, key, 4) < u.episode_loss(slow, key, 4))
        True
    """

    task: tasks.Task
    lo: lopt.LearnedOptimizer
    schedule: TruncationSchedule
    meta_loss: MetaLoss
    window: int
    stagger: bool = True

    def __post_init__(self):
        if not self.window >= 1:
            raise ValueError(f"window must be >= 1, got {self.window}")

    def _fresh(self, thetas_s, key):
        """A new episode for one particle: ``S`` copies of the same init, fresh optimizer states."""
        init_key, length_key, next_key = jax.random.split(key, 3)
        length = self.schedule.sample(length_key)
        params = self.task.init(init_key)

        def opt_init(theta):
            return self.lo.as_optax(theta, num_steps=length).init(params)

        opt_state = jax.vmap(opt_init)(thetas_s)
        copies = jax.tree.leaves(thetas_s)[0].shape[0]
        params_s = jax.tree.map(lambda p: jnp.broadcast_to(p, (copies, *p.shape)), params)
        return params_s, opt_state, length, next_key

    def _fresh_all(self, thetas, keys):
        """``_fresh`` for every particle, in the population's ``[S, N]`` layout."""
        params, opt_state, length, next_key = jax.vmap(self._fresh)(_swap01(thetas), keys)
        return _swap01(params), _swap01(opt_state), length, next_key

    def _reset(self, thetas, pop: Population) -> Population:
        """Starts a new episode for every particle whose episode is done."""
        params, opt_state, length, key = self._fresh_all(thetas, pop.key)
        pick = lambda new, old: jnp.where(
            pop.done.reshape((1, -1) + (1,) * (new.ndim - 2)), new, old
        )
        return Population(
            params=jax.tree.map(pick, params, pop.params),
            opt_state=jax.tree.map(pick, opt_state, pop.opt_state),
            step=jnp.where(pop.done, 0, pop.step),
            length=jnp.where(pop.done, length, pop.length),
            key=jnp.where(pop.done[:, None], key, pop.key),
            done=jnp.zeros_like(pop.done),
        )

    def init(self, key: jax.Array, thetas, total: int | None = None, start=0) -> Population:
        """Fresh episodes for all particles. With ``stagger``, each particle's first episode is
        cut to a uniform random length, so later windows are at decorrelated points of their
        episodes (particles are step-unlocked). The cut also shortens that first episode's
        horizon (its optimizer's ``num_steps``), possibly below ``schedule.min_length``.

        The ``N`` particles of ``thetas`` can be particles ``start .. start + N - 1`` of a
        population of ``total`` (``start`` may be traced): they are then exactly those
        particles of ``init(key, thetas_of_total)``."""
        n = jax.tree.leaves(thetas)[0].shape[1]
        total = total or n
        keys = jax.random.split(key, total + 1)  # [cut key, one per particle]
        mine = lambda x: jax.lax.dynamic_slice_in_dim(x, start, n)
        params, opt_state, length, key = self._fresh_all(thetas, mine(keys[1:]))
        if self.stagger:  # randint draws element by element: the others' bounds do not matter
            bound = jax.lax.dynamic_update_slice(jnp.ones(total, jnp.int32), length + 1, (start,))
            length = jnp.minimum(length, mine(jax.random.randint(keys[0], (total,), 1, bound)))
        return Population(
            params, opt_state, jnp.zeros(n, jnp.int32), length, key, jnp.zeros(n, bool)
        )

    def _inner_step(self, theta, params, opt_state, key, length):
        """One training step of one run; returns new params, state and the meta-loss input."""
        batch = self.task.batch(key, "train")
        loss, grads = jax.value_and_grad(self.task.loss)(params, batch)
        tx = self.lo.as_optax(theta, num_steps=length)
        updates, opt_state = tx.update(grads, opt_state, params, value=loss)
        new_params = optax.apply_updates(params, updates)
        if self.meta_loss.split == "valid":
            loss = self.task.loss(new_params, self.task.batch(jax.random.fold_in(key, 1), "valid"))
        return new_params, opt_state, loss

    def unroll(self, thetas, pop: Population) -> tuple[Population, UnrollOutput]:
        """Resets finished particles, then runs ``window`` steps (see the module docstring)."""
        resets = jnp.sum(pop.done.astype(jnp.int32))
        pop = self._reset(thetas, pop)
        # vmap over copies (shared batch key and length), then over particles.
        step_fn = jax.vmap(self._inner_step, in_axes=(0, 0, 0, None, None))
        step_fn = jax.vmap(step_fn, in_axes=(1, 1, 1, 0, 0), out_axes=(1, 1, 1))

        def body(pop: Population, _):
            active = jnp.logical_not(pop.done)
            batch_keys = jax.vmap(jax.random.fold_in)(pop.key, pop.step)
            params, opt_state, loss = step_fn(
                thetas, pop.params, pop.opt_state, batch_keys, pop.length
            )
            value, diverged = self.meta_loss(loss, self.task.init_loss)
            value = value * self.meta_loss.weight(pop.step + 1, pop.length)
            keep = lambda new, old: jnp.where(
                active.reshape((1, -1) + (1,) * (new.ndim - 2)), new, old
            )
            step = pop.step + active.astype(jnp.int32)
            pair_diverged = jnp.any(diverged, axis=0) & active
            pop = Population(
                params=jax.tree.map(keep, params, pop.params),
                opt_state=jax.tree.map(keep, opt_state, pop.opt_state),
                step=step,
                length=pop.length,
                key=pop.key,
                done=pop.done | pair_diverged | (step >= pop.length),
            )
            return pop, (value, active, pair_diverged)

        pop, (values, mask, diverged) = jax.lax.scan(body, pop, length=self.window)
        count = lambda x: jnp.sum(x.astype(jnp.int32))
        return pop, UnrollOutput(values, mask, count(diverged), resets, count(pop.done))

    def episode_loss(self, theta, key: jax.Array, num_particles: int) -> jax.Array:
        """Mean per-step meta-loss of ``theta`` over whole fresh episodes of ``num_particles``
        particles (lengths from the schedule; the scan covers the longest). The steps an
        episode did not run because it diverged count at the clipped value times the largest
        weight, so a diverging theta never scores better than one that stays finite. For
        evaluation."""
        whole = dataclasses.replace(self, window=self.schedule.max_length, stagger=False)
        thetas = jax.tree.map(lambda x: jnp.broadcast_to(x, (1, num_particles, *x.shape)), theta)
        pop, out = whole.unroll(thetas, whole.init(key, thetas))
        mask = out.mask.astype(out.values.dtype)
        lost = pop.length - jnp.sum(out.mask, axis=0)  # [N]: steps not run after divergence
        clipped = self.meta_loss(jnp.inf, 1.0)[0] * (self.meta_loss.end_power + 1)
        total = jnp.sum(out.values[:, 0] * mask) + clipped * jnp.sum(lost)
        return total / jnp.maximum(jnp.sum(pop.length), 1)
