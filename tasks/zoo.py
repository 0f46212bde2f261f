"""The built-in fixed tasks, by name."""

from __future__ import annotations

from collections.abc import Callable

from tasks.base import Task
from tasks.builders import (
    autoencoder_task,
    classification_task,
    language_model_task,
    quadratic_task,
    regression_task,
)
from tasks.data import dataset
from tasks.models import MLP, Autoencoder, CharLSTM, ConvNet, Transformer


def _pydoc_lm(name, model_fn):
    ds = dataset("pydoc")
    return language_model_task(name, ds, model_fn(ds.vocab_size), seq_len=32, batch_size=16)


TASKS: dict[str, Callable[[], Task]] = {
    "quadratic": lambda: quadratic_task("quadratic", dim=32, condition=100.0),
    "quadratic-noisy": lambda: quadratic_task(
        "quadratic-noisy", dim=32, condition=100.0, noise=1.0
    ),
    "regression-synthetic": lambda: regression_task(
        "regression-synthetic", dataset("regression"), MLP((32,), 1, "tanh")
    ),
    "mlp-blobs": lambda: classification_task("mlp-blobs", dataset("blobs"), MLP((32,), 4)),
    "logreg-digits": lambda: classification_task(
        "logreg-digits", dataset("digits"), MLP((), 10), num_steps=500
    ),
    "mlp-digits": lambda: classification_task("mlp-digits", dataset("digits"), MLP((32,), 10)),
    "mlp-mnist1d": lambda: classification_task(
        "mlp-mnist1d", dataset("mnist1d"), MLP((64, 64), 10), batch_size=64, num_steps=2000
    ),
    "logreg-mnist1d": lambda: classification_task(
        "logreg-mnist1d", dataset("mnist1d"), MLP((), 10), num_steps=500
    ),
    "deepmlp-mnist1d": lambda: classification_task(
        "deepmlp-mnist1d", dataset("mnist1d"), MLP((32,) * 6, 10, "gelu")
    ),
    "mlp-digits-noisy": lambda: classification_task(
        "mlp-digits-noisy", dataset("digits-noisy"), MLP((64,), 10)
    ),
    "regression-noisy": lambda: regression_task(
        "regression-noisy", dataset("regression-noisy"), MLP((64,), 1, "tanh")
    ),
    "deepmlp-regression": lambda: regression_task(
        "deepmlp-regression", dataset("regression-noisy"), MLP((32,) * 4, 1, "tanh")
    ),
    "conv-digits": lambda: classification_task(
        "conv-digits", dataset("digits"), ConvNet((8, 16), 10)
    ),
    "autoencoder-digits": lambda: autoencoder_task(
        "autoencoder-digits", dataset("digits"), Autoencoder((32,), 8)
    ),
    "charlstm-pydoc": lambda: _pydoc_lm("charlstm-pydoc", lambda v: CharLSTM(v, 32, 64)),
    "transformer-pydoc": lambda: _pydoc_lm(
        "transformer-pydoc", lambda v: Transformer(v, max_len=32, d_model=32, heads=2, layers=2)
    ),
}
