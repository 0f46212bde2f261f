"""Training curves for a whole sweep × seeds, compiled once (configurations ``vmap``-ped).

    curves = run(task, make_tx, hparams, num_seeds=3, num_steps=500, eval_every=25)

``make_tx(hp)`` builds the optimizer from one configuration's hyperparameters (traced inside
the run, so use ``optax.inject_hyperparams``; ``bench.baselines.Baseline.tx`` does).
``hparams`` is a pytree whose leaves hold ``K`` configurations along their first axis: a dict
of ``[K]`` learning rates, say, or ``{"theta": theta}`` with every leaf of a learned
optimizer's meta-parameters given a leading axis of 1, so that optimizers of one architecture
share one compiled program; an empty dict runs one configuration.

A run is a sequence of calls to one compiled *chunk* of ``eval_every`` training steps (a
``lax.scan``) followed by a validation pass, so runs of any length — the budgets ``T``, ``2T``,
``4T`` of a benchmark — reuse the same compiled program. The batch of step ``t`` is drawn with
``fold_in(train_key, t)``: a longer run sees the same batches as a shorter one, then more.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import tasks
from meta_train.compile_cache import COMPILER_OPTIONS
from tasks.training import train_step


class Curves(NamedTuple):
    """Loss curves of ``K`` configurations × ``S`` seeds."""

    train: np.ndarray  # [K, S, T]: the minibatch loss at steps 0 .. T-1 (before each update)
    valid: np.ndarray  # [K, S, E + 1]: the validation loss at ``eval_steps``
    eval_steps: np.ndarray  # [E + 1]: 0, eval_every, 2·eval_every, ..., T
    seconds_per_step: float  # wall time of the compiled run ÷ (K · S · T), compile excluded

    def head(self, num_steps: int) -> Curves:
        """The curves of the first ``num_steps`` steps (a multiple of the evaluation interval):
        what a run of that length would have recorded, since batches do not depend on it."""
        evals = int(np.searchsorted(self.eval_steps, num_steps)) + 1
        if self.eval_steps[evals - 1] != num_steps:
            raise ValueError(f"{num_steps} is not an evaluation step of these curves")
        return self._replace(
            train=self.train[..., :num_steps],
            valid=self.valid[..., :evals],
            eval_steps=self.eval_steps[:evals],
        )


def concat(a: Curves, b: Curves) -> Curves:
    """The curves of ``a``'s configurations and then ``b``'s (same seeds and steps); the time
    per step is their average weighted by configurations."""
    ka, kb = len(a.train), len(b.train)
    return Curves(
        np.concatenate([a.train, b.train]),
        np.concatenate([a.valid, b.valid]),
        a.eval_steps,
        (ka * a.seconds_per_step + kb * b.seconds_per_step) / (ka + kb),
    )


def _programs(task, make_tx, eval_every, num_configs, evaluate=None):
    """The two functions a run is made of, over ``[K]`` configurations (vmapped) × ``[S]``
    seeds: ``start(hp, keys, valid) -> (carry, valid_loss)`` initializes params and state, and
    ``chunk(hp, keys, carry, step, valid) -> (carry, train_losses[K, S, eval_every],
    valid_loss[K, S])`` trains ``eval_every`` steps from ``step``.

    Seeds run one after another (``lax.map``): XLA:CPU's thread pool hung for good on a
    learned optimizer training charlstm-pydoc with seeds vmapped (jax 0.10.2)."""

    def tx_of(hp):
        return optax.with_extra_args_support(make_tx(hp))

    def valid_loss(carry, valid_batches):
        params, state = carry
        if evaluate is not None:
            params = evaluate(state, params)
        return jnp.mean(jax.vmap(lambda b: task.loss(params, b))(valid_batches))

    def start(hp, keys, valid_batches):
        def one(key):
            params = task.init(jax.random.split(key)[0])
            carry = (params, tx_of(hp).init(params))
            return carry, valid_loss(carry, valid_batches)

        return jax.lax.map(one, keys)

    def chunk(hp, keys, carry, step, valid_batches):
        tx = tx_of(hp)

        def one(args):
            key, carry = args
            train_key = jax.random.split(key)[1]
            ts = step + jnp.arange(eval_every)
            step_keys = jax.vmap(lambda t: jax.random.fold_in(train_key, t))(ts)
            carry, losses = jax.lax.scan(train_step(task, tx, evaluate), carry, step_keys)
            return carry, losses, valid_loss(carry, valid_batches)

        return jax.lax.map(one, (keys, carry))

    over_configs = lambda f, axes: jax.jit(jax.vmap(f, in_axes=axes, axis_size=num_configs))
    return over_configs(start, (0, None, None)), over_configs(chunk, (0, None, 0, None, None))


@functools.lru_cache(maxsize=32)
def _compile(task, make_tx, structure, shapes, num_seeds, eval_every, num_valid, evaluate):
    """The compiled ``start`` and ``chunk`` for one signature (the hyperparameters' tree
    ``structure`` and leaf ``shapes``, ``[K, ...]``), kept so that repeated runs (other
    budgets, seeds or values) reuse them and so that timing excludes compilation."""
    num_configs = shapes[0][0] if shapes else 1
    start_all, chunk_all = _programs(task, make_tx, eval_every, num_configs, evaluate)
    hparams = jax.tree.unflatten(
        structure, [jax.ShapeDtypeStruct(shape, jnp.float32) for shape in shapes]
    )
    keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), num_seeds))
    valid = jax.eval_shape(
        lambda: jax.vmap(lambda k: task.batch(k, "valid"))(
            jax.random.split(jax.random.key(0), num_valid)
        )
    )
    start_c = start_all.lower(hparams, keys, valid).compile(compiler_options=COMPILER_OPTIONS)
    carry = jax.eval_shape(start_all, hparams, keys, valid)[0]
    step = jax.ShapeDtypeStruct((), jnp.int32)
    chunk_c = chunk_all.lower(hparams, keys, carry, step, valid).compile(
        compiler_options=COMPILER_OPTIONS
    )
    return start_c, chunk_c


def run(
    task: tasks.Task,
    make_tx: Callable[[Any], optax.GradientTransformation],
    hparams: Any,
    num_seeds: int,
    num_steps: int,
    eval_every: int,
    seed: int = 0,
    num_valid_batches: int = 4,
    evaluate: Callable[[Any, Any], Any] | None = None,
) -> Curves:
    """Trains ``task`` with ``make_tx(hparams[k])`` (every leaf's ``k``-th entry) for every
    configuration ``k`` and seed (seeds are shared across configurations: same init and
    batches). The validation loss
    is the mean over ``num_valid_batches`` fixed batches of the ``valid`` split. Every loss
    is measured at the parameters, or at ``evaluate(opt_state, params)`` when given."""
    if num_steps % eval_every:
        raise ValueError(f"num_steps={num_steps} must be a multiple of eval_every={eval_every}")
    leaves, structure = jax.tree.flatten(hparams)
    sizes = {np.shape(v)[0] for v in leaves}
    if len(sizes) > 1:
        raise ValueError(f"hyperparameter arrays differ in length: {sizes}")
    num_configs = sizes.pop() if sizes else 1
    leaves = [jnp.asarray(v, jnp.float32) for v in leaves]
    hparams = jax.tree.unflatten(structure, leaves)
    root = jax.random.key(seed)
    keys = jax.random.split(jax.random.fold_in(root, 0), num_seeds)
    valid_batches = jax.vmap(lambda k: task.batch(k, "valid"))(
        jax.random.split(jax.random.fold_in(root, 1), num_valid_batches)
    )
    start, chunk = _compile(
        task,
        make_tx,
        structure,
        tuple(v.shape for v in leaves),
        num_seeds,
        eval_every,
        num_valid_batches,
        evaluate,
    )
    began = time.perf_counter()
    carry, valid0 = start(hparams, keys, valid_batches)
    train, valid = [], [valid0]
    for step in range(0, num_steps, eval_every):
        carry, losses, v = chunk(hparams, keys, carry, jnp.int32(step), valid_batches)
        train.append(losses)
        valid.append(v)
    train, valid = jax.block_until_ready((train, valid))
    seconds = time.perf_counter() - began
    return Curves(
        np.concatenate([np.asarray(t) for t in train], axis=-1),
        np.stack([np.asarray(v) for v in valid], axis=-1),
        np.arange(0, num_steps + 1, eval_every),
        seconds / (num_configs * num_seeds * num_steps),
    )
