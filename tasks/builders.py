"""Functions that build a :class:`~tasks.base.Task` from a dataset and a flax model.

These are the public way to make a task from your own data::

    ds = tasks.data.from_npz("my.npz")
    task = tasks.classification_task("my-mlp", ds, tasks.models.MLP((64,), ds.num_classes))
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from tasks.base import Task
from tasks.data import ArrayDataset, TextDataset


def _flax_init(model: nn.Module, example: jax.Array):
    return lambda key: model.init(key, example)["params"]


def _xent_and_accuracy(logits: jax.Array, labels: jax.Array):
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    accuracy = (logits.argmax(-1) == labels).mean()
    return loss, {"accuracy": accuracy}


def _array_task(name, dataset, model, loss_fn, init_loss, batch_size, num_steps) -> Task:
    """The task of ``model`` on an array dataset, its parameters initialized on one zero
    input: the shared assembly of the classification, regression and autoencoder tasks."""
    return Task(
        name=name,
        init_fn=_flax_init(model, jnp.zeros((1, *dataset.input_shape))),
        batch_fn=dataset.sample,
        loss_fn=loss_fn,
        batch_size=batch_size,
        init_loss=init_loss,
        num_steps=num_steps,
    )


def classification_task(
    name: str,
    dataset: ArrayDataset,
    model: nn.Module,
    *,
    batch_size: int = 32,
    num_steps: int = 1000,
) -> Task:
    """Softmax cross-entropy of ``model(x)`` (logits ``[B, num_classes]``) against labels ``y[B]``.

    ``init_loss`` is ``ln(num_classes)``, the loss of a uniform prediction.
    """
    if dataset.num_classes is None:
        raise ValueError(
            f"{name}: dataset {dataset.name!r} has real-valued targets; use regression_task"
        )

    def loss_fn(params, batch):
        return _xent_and_accuracy(model.apply({"params": params}, batch["x"]), batch["y"])

    return _array_task(
        name, dataset, model, loss_fn, math.log(dataset.num_classes), batch_size, num_steps
    )


def regression_task(
    name: str,
    dataset: ArrayDataset,
    model: nn.Module,
    *,
    batch_size: int = 32,
    num_steps: int = 1000,
) -> Task:
    """Mean squared error of ``model(x)[:, 0]`` against ``y[B]``; ``init_loss`` = mean(y²) on train."""
    if dataset.num_classes is not None:
        raise ValueError(
            f"{name}: dataset {dataset.name!r} has class labels; use classification_task"
        )

    def loss_fn(params, batch):
        pred = model.apply({"params": params}, batch["x"])[:, 0]
        return jnp.mean((pred - batch["y"]) ** 2), {}

    y = np.asarray(dataset.splits["train"][1])
    return _array_task(name, dataset, model, loss_fn, float(np.mean(y**2)), batch_size, num_steps)


def autoencoder_task(
    name: str,
    dataset: ArrayDataset,
    model: nn.Module,
    *,
    batch_size: int = 32,
    num_steps: int = 1000,
) -> Task:
    """Mean squared reconstruction error of ``model(x)`` (shaped like ``x``, in [0, 1]).

    ``init_loss`` is the error of predicting 0.5 everywhere (a sigmoid output at init).
    """

    def loss_fn(params, batch):
        return jnp.mean((model.apply({"params": params}, batch["x"]) - batch["x"]) ** 2), {}

    x = np.asarray(dataset.splits["train"][0])
    return _array_task(
        name, dataset, model, loss_fn, float(np.mean((x - 0.5) ** 2)), batch_size, num_steps
    )


def language_model_task(
    name: str,
    dataset: TextDataset,
    model: nn.Module,
    *,
    seq_len: int = 32,
    batch_size: int = 16,
    num_steps: int = 2000,
) -> Task:
    """Next-token cross-entropy of ``model(tokens[B, T])`` (logits ``[B, T, vocab]``), averaged
    over batch and positions; ``init_loss`` = ``ln(vocab_size)``."""

    def batch_fn(key, split, batch_size):
        return dataset.sample(key, split, batch_size, seq_len)

    def loss_fn(params, batch):
        return _xent_and_accuracy(model.apply({"params": params}, batch["x"]), batch["y"])

    return Task(
        name=name,
        init_fn=_flax_init(model, jnp.zeros((1, seq_len), jnp.int32)),
        batch_fn=batch_fn,
        loss_fn=loss_fn,
        batch_size=batch_size,
        init_loss=math.log(dataset.vocab_size),
        num_steps=num_steps,
    )


def quadratic_task(
    name: str = "quadratic",
    *,
    dim: int = 32,
    condition: float = 100.0,
    noise: float = 0.0,
    batch_size: int = 1,
    num_steps: int = 500,
) -> Task:
    """The noisy quadratic model (Zhang et al. 2019).

    ``params = {"x": float32[dim]}`` starts at ``N(0, I)``; curvatures ``h_i`` are log-spaced
    from 1 down to ``1/condition``. A batch is a target ``c ~ N(0, noise² / batch_size · I)``
    and the loss is ``½ Σ_i h_i (x_i − c_i)²``, so gradient noise shrinks with batch size.
    ``init_loss`` is its expectation at init: ``½ Σ h_i (1 + noise² / batch_size)``.
    """
    if dim < 1 or condition < 1 or noise < 0:
        raise ValueError(f"{name}: need dim >= 1, condition >= 1, noise >= 0")
    h = jnp.asarray(np.logspace(0.0, -np.log10(condition), dim), jnp.float32)

    def init_fn(key):
        return {"x": jax.random.normal(key, (dim,))}

    def batch_fn(key, split, batch_size):
        del split  # every split draws from the same noise distribution
        return {"c": noise / math.sqrt(batch_size) * jax.random.normal(key, (dim,))}

    def loss_fn(params, batch):
        return 0.5 * jnp.sum(h * (params["x"] - batch["c"]) ** 2), {}

    return Task(
        name=name,
        init_fn=init_fn,
        batch_fn=batch_fn,
        loss_fn=loss_fn,
        batch_size=batch_size,
        init_loss=float(0.5 * np.sum(np.asarray(h)) * (1 + noise**2 / batch_size)),
        num_steps=num_steps,
    )
