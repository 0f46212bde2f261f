"""Parametric task families: a sampled structure (frozen config) -> a `Task`.

A structure fixes every shape, so a population sampled from one config can be vmapped over
init and data keys; a meta-trainer resamples the structure between windows or per worker.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from tasks.base import Task, TaskFamily
from tasks.builders import (
    classification_task,
    language_model_task,
    quadratic_task,
    regression_task,
)
from tasks.data import (
    dataset,
    markov_text,
    synthetic_classification,
    synthetic_regression,
    with_label_noise,
)
from tasks.models import ACTIVATIONS, MLP, CharLSTM, ConvNet, Transformer

_ACTS = ("relu", "tanh", "gelu", "silu")
assert set(_ACTS) <= set(ACTIVATIONS)


def _choice(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


@dataclasses.dataclass(frozen=True)
class QuadraticConfig:
    dim: int
    condition: float
    noise: float


def _sample_quadratic(rng):
    return QuadraticConfig(
        dim=_choice(rng, (8, 16, 32, 64)),
        condition=float(10 ** rng.uniform(0.0, 4.0)),
        noise=_choice(rng, (0.0, 0.1, 1.0)),
    )


def _quadratic(cfg: QuadraticConfig) -> Task:
    name = f"quadratic/d{cfg.dim}-k{cfg.condition:.3g}-n{cfg.noise:g}"
    return quadratic_task(name, dim=cfg.dim, condition=cfg.condition, noise=cfg.noise)


@dataclasses.dataclass(frozen=True)
class ImageMLPConfig:
    dataset: str  # "digits" | "mnist1d"
    hidden: tuple[int, ...]
    activation: str
    batch_size: int


def _sample_image_mlp(rng):
    depth = int(rng.integers(1, 4))
    return ImageMLPConfig(
        dataset=_choice(rng, ("digits", "mnist1d")),
        hidden=tuple(_choice(rng, (16, 32, 64, 128)) for _ in range(depth)),
        activation=_choice(rng, _ACTS),
        batch_size=_choice(rng, (16, 32, 64, 128)),
    )


def _image_mlp(cfg: ImageMLPConfig) -> Task:
    widths = "x".join(map(str, cfg.hidden))
    name = f"image-mlp/{cfg.dataset}-{widths}-{cfg.activation}-b{cfg.batch_size}"
    model = MLP(cfg.hidden, 10, cfg.activation)
    return classification_task(name, dataset(cfg.dataset), model, batch_size=cfg.batch_size)


@dataclasses.dataclass(frozen=True)
class ImageConvConfig:
    channels: tuple[int, ...]
    activation: str
    batch_size: int


def _sample_image_conv(rng):
    depth = int(rng.integers(1, 4))
    return ImageConvConfig(
        channels=tuple(_choice(rng, (4, 8, 16, 32)) for _ in range(depth)),
        activation=_choice(rng, _ACTS),
        batch_size=_choice(rng, (16, 32, 64)),
    )


def _image_conv(cfg: ImageConvConfig) -> Task:
    name = (
        f"image-conv/digits-{'x'.join(map(str, cfg.channels))}-{cfg.activation}-b{cfg.batch_size}"
    )
    model = ConvNet(cfg.channels, 10, cfg.activation)
    return classification_task(name, dataset("digits"), model, batch_size=cfg.batch_size)


@dataclasses.dataclass(frozen=True)
class CharLMConfig:
    model: str  # "lstm" | "transformer"
    width: int
    seq_len: int
    batch_size: int


def _sample_char_lm(rng):
    return CharLMConfig(
        model=_choice(rng, ("lstm", "transformer")),
        width=_choice(rng, (16, 32, 64)),
        seq_len=_choice(rng, (16, 32)),
        batch_size=_choice(rng, (8, 16, 32)),
    )


def _char_lm(cfg: CharLMConfig) -> Task:
    ds = dataset("pydoc")
    if cfg.model == "lstm":
        model = CharLSTM(ds.vocab_size, embed=cfg.width, hidden=cfg.width)
    elif cfg.model == "transformer":
        model = Transformer(
            ds.vocab_size, max_len=cfg.seq_len, d_model=cfg.width, heads=2, layers=2
        )
    else:
        raise ValueError(f"CharLMConfig.model must be 'lstm' or 'transformer', got {cfg.model!r}")
    name = f"char-lm/{cfg.model}{cfg.width}-t{cfg.seq_len}-b{cfg.batch_size}"
    return language_model_task(name, ds, model, seq_len=cfg.seq_len, batch_size=cfg.batch_size)


@dataclasses.dataclass(frozen=True)
class DeepMLPConfig:
    problem: str  # "regression" (noise = target noise std) | "classification" (label noise)
    dim: int
    noise: float
    data_seed: int
    width: int
    depth: int
    activation: str
    batch_size: int


def _sample_deep_mlp(rng):
    problem = _choice(rng, ("regression", "classification"))
    noises = (0.1, 0.3, 1.0) if problem == "regression" else (0.0, 0.1, 0.3)
    return DeepMLPConfig(
        problem=problem,
        dim=_choice(rng, (8, 24, 48)),
        noise=_choice(rng, noises),
        data_seed=int(rng.integers(1, 9)),
        width=_choice(rng, (8, 16, 24, 48)),
        depth=int(rng.integers(3, 9)),
        activation=_choice(rng, ("gelu", "tanh", "silu", "elu")),
        batch_size=_choice(rng, (16, 32, 64, 128)),
    )


@functools.cache
def _deep_mlp_data(problem: str, dim: int, noise: float, seed: int):
    if problem == "regression":
        return synthetic_regression(num_examples=4096, dim=dim, noise=noise, seed=seed)
    blobs = synthetic_classification(num_examples=4096, dim=dim, num_classes=8, seed=seed)
    return with_label_noise(blobs, noise, seed=seed)


def _deep_mlp(cfg: DeepMLPConfig) -> Task:
    name = (
        f"deep-mlp/{cfg.problem[:5]}{cfg.dim}-n{cfg.noise:g}-s{cfg.data_seed}-"
        f"{cfg.width}x{cfg.depth}-{cfg.activation}-b{cfg.batch_size}"
    )
    data = _deep_mlp_data(cfg.problem, cfg.dim, cfg.noise, cfg.data_seed)
    build = regression_task if cfg.problem == "regression" else classification_task
    out = 1 if cfg.problem == "regression" else data.num_classes
    model = MLP((cfg.width,) * cfg.depth, out, cfg.activation)
    return build(name, data, model, batch_size=cfg.batch_size)


@dataclasses.dataclass(frozen=True)
class MarkovLMConfig:
    model: str  # "transformer" | "lstm"
    width: int
    layers: int  # transformer blocks (1 for an LSTM)
    vocab_size: int
    order: int
    concentration: float
    data_seed: int
    seq_len: int
    batch_size: int


def _sample_markov_lm(rng):
    model = _choice(rng, ("transformer", "transformer", "lstm"))  # attention 2 : 1
    return MarkovLMConfig(
        model=model,
        width=_choice(rng, (16, 24, 48)),
        layers=int(rng.integers(1, 4)) if model == "transformer" else 1,
        vocab_size=_choice(rng, (8, 16, 32)),
        order=int(rng.integers(1, 3)),
        concentration=_choice(rng, (0.1, 0.3, 1.0)),
        data_seed=int(rng.integers(1, 9)),
        seq_len=_choice(rng, (16, 24)),
        batch_size=_choice(rng, (8, 16, 32)),
    )


_markov_data = functools.cache(markov_text)


def _markov_lm(cfg: MarkovLMConfig) -> Task:
    data = _markov_data(cfg.vocab_size, cfg.order, cfg.concentration, seed=cfg.data_seed)
    if cfg.model == "lstm":
        model = CharLSTM(data.vocab_size, embed=cfg.width, hidden=cfg.width)
    else:
        model = Transformer(
            data.vocab_size, max_len=cfg.seq_len, d_model=cfg.width, heads=2, layers=cfg.layers
        )
    name = f"markov-lm/{data.name[7:]}-{cfg.model}{cfg.width}x{cfg.layers}-t{cfg.seq_len}-b{cfg.batch_size}"
    return language_model_task(name, data, model, seq_len=cfg.seq_len, batch_size=cfg.batch_size)


FAMILIES: dict[str, TaskFamily] = {
    f.name: f
    for f in (
        TaskFamily("quadratic", _sample_quadratic, _quadratic),
        TaskFamily("image-mlp", _sample_image_mlp, _image_mlp),
        TaskFamily("image-conv", _sample_image_conv, _image_conv),
        TaskFamily("char-lm", _sample_char_lm, _char_lm),
        TaskFamily("deep-mlp", _sample_deep_mlp, _deep_mlp),
        TaskFamily("markov-lm", _sample_markov_lm, _markov_lm),
    )
}
