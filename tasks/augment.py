"""Task augmentations: wrappers that return a new :class:`~tasks.base.Task`.

They change what an optimizer sees without changing what is being learned, which is how a
learned optimizer is taught invariances (to parameter scale, loss scale, gradient noise).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from tasks.base import Task, numpy_rng


def reparameterize(
    task: Task, key: jax.Array, min_scale: float = 0.1, max_scale: float = 10.0
) -> Task:
    """Per-tensor reparameterization ``p = s · q`` with ``s ~ LogUniform[min_scale, max_scale]``.

    The optimizer trains ``q``. The new task's init is ``q₀ = p₀ / s`` and its loss is
    ``L(s · q)``, so the function at init is unchanged, but ``∂L/∂q = s · ∂L/∂p``: the
    curvature seen by the optimizer is scaled by ``s²`` per tensor. One scale per leaf,
    fixed by ``key``.
    """
    if not 0 < min_scale <= max_scale:
        raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
    shapes = jax.eval_shape(task.init_fn, jax.random.key(0))
    leaves, treedef = jax.tree.flatten(shapes)
    log_s = numpy_rng(key).uniform(np.log(min_scale), np.log(max_scale), size=len(leaves))
    scales = jax.tree.unflatten(treedef, [np.float32(np.exp(v)) for v in log_s])

    def init_fn(k):
        return jax.tree.map(lambda p, s: p / s, task.init_fn(k), scales)

    def loss_fn(q, batch):
        return task.loss_fn(jax.tree.map(lambda x, s: x * s, q, scales), batch)

    return task.replace(name=f"{task.name}+reparam", init_fn=init_fn, loss_fn=loss_fn)


def scale_loss(task: Task, factor: float) -> Task:
    """Multiplies the loss (and so every gradient) by ``factor > 0``."""
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be finite and > 0, got {factor}")

    def loss_fn(params, batch):
        loss, aux = task.loss_fn(params, batch)
        return loss * factor, aux

    return task.replace(
        name=f"{task.name}+lossx{factor:g}", loss_fn=loss_fn, init_loss=task.init_loss * factor
    )


def with_batch_size(task: Task, batch_size: int) -> Task:
    """The same task with ``batch_size`` examples per batch (smaller batches: noisier gradients)."""
    return task.replace(name=f"{task.name}+b{batch_size}", batch_size=batch_size)


def add_gradient_noise(task: Task, stddev: float) -> Task:
    """Adds ``N(0, stddev²)`` to every gradient coordinate without changing loss values.

    The batch carries a noise key; the loss adds ``⟨p, n⟩ − stop_gradient(⟨p, n⟩)``, which is
    zero in value and ``n`` in gradient.
    """
    if not stddev >= 0:
        raise ValueError(f"stddev must be >= 0, got {stddev}")

    def batch_fn(key, split, batch_size):
        data_key, noise_key = jax.random.split(key)
        return {"data": task.batch_fn(data_key, split, batch_size), "noise_key": noise_key}

    def loss_fn(params, batch):
        loss, aux = task.loss_fn(params, batch["data"])
        leaves = jax.tree.leaves(params)
        keys = jax.random.split(batch["noise_key"], len(leaves))
        dot = sum(
            jnp.vdot(p, stddev * jax.random.normal(k, p.shape, p.dtype))
            for p, k in zip(leaves, keys, strict=True)
        )
        return loss + dot - jax.lax.stop_gradient(dot), aux

    return task.replace(name=f"{task.name}+gnoise{stddev:g}", batch_fn=batch_fn, loss_fn=loss_fn)
