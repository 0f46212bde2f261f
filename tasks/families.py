"""Parametric task families: a sampled structure (frozen config) -> a `Task`.

A structure fixes every shape, so a population sampled from one config can be vmapped over
init and data keys; a meta-trainer resamples the structure between windows or per worker.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tasks.base import Task, TaskFamily
from tasks.builders import classification_task, language_model_task, quadratic_task
from tasks.data import dataset
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


FAMILIES: dict[str, TaskFamily] = {
    f.name: f
    for f in (
        TaskFamily("quadratic", _sample_quadratic, _quadratic),
        TaskFamily("image-mlp", _sample_image_mlp, _image_mlp),
        TaskFamily("image-conv", _sample_image_conv, _image_conv),
        TaskFamily("char-lm", _sample_char_lm, _char_lm),
    )
}
