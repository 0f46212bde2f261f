"""A compiled inner training loop: any optax transform on any task."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from tasks.base import Params, Task


class FitResult(NamedTuple):
    params: Params  # final parameters
    train_losses: jax.Array  # float32[num_steps]: the minibatch loss at each step
    eval_before: jax.Array  # scalar: mean train loss on fixed evaluation batches at init
    eval_after: jax.Array  # scalar: the same after training


def train_step(task: Task, tx: optax.GradientTransformationExtraArgs, evaluate=None):
    """One training step as a ``lax.scan`` body: ``((params, opt_state), key) ->
    ((params, opt_state), loss)`` on a fresh ``train`` batch drawn with ``key``; the loss is
    passed to ``tx.update`` as ``value``. The loss returned is the batch's loss before the
    update, at ``params`` or, with ``evaluate``, at ``evaluate(opt_state, params)`` (e.g. a
    schedule-free method's averaged point; one more forward pass)."""

    def step(carry, key):
        params, state = carry
        batch = task.batch(key, "train")
        loss, grads = jax.value_and_grad(task.loss)(params, batch)
        updates, new_state = tx.update(grads, state, params, value=loss)
        if evaluate is not None:
            loss = task.loss(evaluate(state, params), batch)
        return (optax.apply_updates(params, updates), new_state), loss

    return step


@functools.partial(jax.jit, static_argnames=("task", "tx", "num_steps", "num_eval_batches"))
def fit(
    task: Task,
    tx: optax.GradientTransformation,
    key: jax.Array,
    num_steps: int,
    num_eval_batches: int = 8,
) -> FitResult:
    """Trains ``task.init(key)`` with ``tx`` for ``num_steps`` steps in one ``lax.scan``.

    The loss is passed to ``tx.update`` as ``value`` (as ``optax`` line searches and learned
    optimizers expect). Evaluation uses ``num_eval_batches`` train batches fixed by ``key``.
    """
    tx = optax.with_extra_args_support(tx)
    init_key, eval_key, train_key = jax.random.split(key, 3)
    eval_batches = jax.vmap(lambda k: task.batch(k, "train"))(
        jax.random.split(eval_key, num_eval_batches)
    )

    def eval_loss(params):
        return jnp.mean(jax.vmap(lambda b: task.loss(params, b))(eval_batches))

    params = task.init(init_key)
    (final, _), losses = jax.lax.scan(
        train_step(task, tx), (params, tx.init(params)), jax.random.split(train_key, num_steps)
    )
    return FitResult(final, losses, eval_loss(params), eval_loss(final))
