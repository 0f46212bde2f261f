"""Training curves for a whole sweep × seeds as one compiled run (configurations ``vmap``-ped).

    curves = run(task, make_tx, hparams, num_seeds=3, num_steps=500, eval_every=25)

``make_tx(hp)`` builds the optimizer from a dict of scalar hyperparameters (traced inside the
run, so use ``optax.inject_hyperparams``; ``bench.baselines.Baseline.tx`` does). ``hparams``
maps each name to an array of ``K`` values; an empty dict runs one configuration (e.g. a
learned optimizer, which has no hyperparameters to tune).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import tasks
from tasks.training import train_step


class Curves(NamedTuple):
    """Loss curves of ``K`` configurations × ``S`` seeds."""

    train: np.ndarray  # [K, S, T]: the minibatch loss at steps 0 .. T-1 (before each update)
    valid: np.ndarray  # [K, S, E + 1]: the validation loss at ``eval_steps``
    eval_steps: np.ndarray  # [E + 1]: 0, eval_every, 2·eval_every, ..., T
    seconds_per_step: float  # wall time of the compiled run ÷ (K · S · T), compile excluded


@functools.partial(
    jax.jit, static_argnames=("task", "make_tx", "num_configs", "num_steps", "eval_every")
)
def _curves(task, make_tx, hparams, keys, num_configs, num_steps, eval_every, valid_batches):
    def one(hp, key):
        tx = optax.with_extra_args_support(make_tx(hp))
        init_key, train_key = jax.random.split(key)

        def valid_loss(params):
            return jnp.mean(jax.vmap(lambda b: task.loss(params, b))(valid_batches))

        step = train_step(task, tx)

        def chunk(carry, keys):
            carry, losses = jax.lax.scan(step, carry, keys)
            return carry, (losses, valid_loss(carry[0]))

        params = task.init(init_key)
        keys = jax.random.split(train_key, num_steps).reshape(-1, eval_every, *train_key.shape)
        _, (train, valid) = jax.lax.scan(chunk, (params, tx.init(params)), keys)
        return train.reshape(-1), jnp.concatenate([valid_loss(params)[None], valid])

    # Seeds run one after another (configurations stay vmapped): XLA:CPU's thread pool hung
    # for good on a learned optimizer training charlstm-pydoc with seeds vmapped (jax 0.10.2).
    def over_seeds(hp, keys):
        return jax.lax.map(lambda key: one(hp, key), keys)

    return jax.vmap(over_seeds, in_axes=(0, None), axis_size=num_configs)(hparams, keys)


@functools.lru_cache(maxsize=16)
def _compile(task, make_tx, names, num_configs, num_seeds, num_steps, eval_every, num_valid):
    """The compiled sweep for one signature, kept so that repeated runs (other seeds, other
    values) reuse it and so that timing excludes compilation."""
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
    keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), num_seeds))
    valid = jax.eval_shape(
        lambda: jax.vmap(lambda k: task.batch(k, "valid"))(
            jax.random.split(jax.random.key(0), num_valid)
        )
    )
    hparams = {n: f32(num_configs) for n in names}
    return _curves.lower(
        task, make_tx, hparams, keys, num_configs, num_steps, eval_every, valid
    ).compile()


def run(
    task: tasks.Task,
    make_tx: Callable[[Mapping[str, Any]], optax.GradientTransformation],
    hparams: Mapping[str, np.ndarray],
    num_seeds: int,
    num_steps: int,
    eval_every: int,
    seed: int = 0,
    num_valid_batches: int = 4,
) -> Curves:
    """Trains ``task`` with ``make_tx(hparams[k])`` for every configuration ``k`` and seed
    (seeds are shared across configurations: same init and batches). The validation loss
    is the mean over ``num_valid_batches`` fixed batches of the ``valid`` split."""
    if num_steps % eval_every:
        raise ValueError(f"num_steps={num_steps} must be a multiple of eval_every={eval_every}")
    sizes = {np.shape(v)[0] for v in hparams.values()}
    if len(sizes) > 1:
        raise ValueError(f"hyperparameter arrays differ in length: {sizes}")
    num_configs = sizes.pop() if sizes else 1
    hparams = {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}
    root = jax.random.key(seed)
    keys = jax.random.split(jax.random.fold_in(root, 0), num_seeds)
    valid_batches = jax.vmap(lambda k: task.batch(k, "valid"))(
        jax.random.split(jax.random.fold_in(root, 1), num_valid_batches)
    )
    compiled = _compile(
        task,
        make_tx,
        tuple(hparams),
        num_configs,
        num_seeds,
        num_steps,
        eval_every,
        num_valid_batches,
    )
    began = time.perf_counter()
    train, valid = jax.block_until_ready(compiled(hparams, keys, valid_batches))
    seconds = time.perf_counter() - began
    return Curves(
        np.asarray(train),
        np.asarray(valid),
        np.arange(0, num_steps + 1, eval_every),
        seconds / (num_configs * num_seeds * num_steps),
    )
