"""Trained optimizers shipped with the package (``lopt/pretrained/<name>.lopt``)."""

from __future__ import annotations

from importlib import resources

import optax

from lopt.frozen import Frozen, load

_SUFFIX = ".lopt"


def list_pretrained() -> list[str]:
    """Names of the shipped optimizers (empty until one has been trained and added)."""
    folder = resources.files("lopt") / "pretrained"
    if not folder.is_dir():
        return []
    return sorted(f.name[: -len(_SUFFIX)] for f in folder.iterdir() if f.name.endswith(_SUFFIX))


def load_pretrained(name: str) -> Frozen:
    """The shipped optimizer ``name`` with its metadata (training recipe, benchmark summary)."""
    available = list_pretrained()
    if name not in available:
        raise ValueError(f"no pretrained optimizer {name!r}; available: {available or 'none yet'}")
    with resources.as_file(resources.files("lopt") / "pretrained" / f"{name}{_SUFFIX}") as path:
        return load(path)


def pretrained(name: str, num_steps: int) -> optax.GradientTransformationExtraArgs:
    """The shipped optimizer ``name`` as an optax transform for a ``num_steps``-step run."""
    return load_pretrained(name).as_optax(num_steps)
