"""The task zoo: inner problems for training and meta-training optimizers.

import tasks
task = tasks.get("mlp-digits")            # tasks.names() lists them
params = task.init(key)
batch = task.batch(key, "train")          # jit-able; also "valid", "test"
loss = task.loss(params, batch)
fam = tasks.family("image-mlp")           # tasks.families() lists them
task = fam.task(fam.sample(key))
"""

import importlib

from tasks import augment, data, models
from tasks.base import Task, TaskFamily
from tasks.builders import (
    autoencoder_task,
    classification_task,
    language_model_task,
    quadratic_task,
    regression_task,
)
from tasks.data import dataset
from tasks.families import FAMILIES
from tasks.training import FitResult, fit
from tasks.zoo import TASKS


def names() -> list[str]:
    """Names of the built-in fixed tasks."""
    return sorted(TASKS)


def is_import_path(name: str) -> bool:
    """Whether ``name`` is an import path ``package.module:attribute`` (not a built-in name)."""
    return ":" in name


def from_import_path(path: str, what: str):
    """The attribute at import path ``package.module:attribute``; a ``ValueError`` naming
    ``what`` if it cannot be imported. (The module must be importable in every process that
    rebuilds it: installed, in the working directory or on ``PYTHONPATH``.)"""
    module, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{what} {path!r}: cannot import it ({e})") from None


def label(spec: str | Task | TaskFamily) -> str:
    """How a task or family is written in a saved config: its name or import path, or for
    an object given in Python its ``repr`` (``Task('name')``), which no process can rebuild."""
    return spec if isinstance(spec, str) else repr(spec)


def is_object_label(spec: str) -> bool:
    """Whether ``spec`` is the ``label`` of a ``Task`` or ``TaskFamily`` object."""
    return isinstance(spec, str) and spec.startswith(("Task(", "TaskFamily("))


def _imported(path: str, kind: type, what: str):
    """The ``kind`` at an import path: the attribute itself, or what calling it with no
    arguments returns."""
    obj = from_import_path(path, what)
    obj = obj if isinstance(obj, kind) else obj() if callable(obj) else obj
    if not isinstance(obj, kind):
        raise ValueError(
            f"{what} {path!r} is a {type(obj).__name__}, not a {kind.__name__} "
            f"(or a function of no arguments returning one)"
        )
    return obj


def get(name: str | Task) -> Task:
    """A fixed task: a built-in name (``names()``) or an import path
    ``package.module:factory`` to a ``Task`` or a function of no arguments returning one,
    so that every process (a Ray worker, a resumed run) rebuilds it from the name alone. A
    ``Task`` is returned as it is."""
    if isinstance(name, Task):
        return name
    if is_import_path(name):
        return _imported(name, Task, "task")
    try:
        build = TASKS[name]
    except KeyError:
        raise ValueError(
            f"unknown task {name!r}; choose from {names()} or give an import path "
            "package.module:factory"
        ) from None
    return build()


def families() -> list[str]:
    """Names of the built-in task families."""
    return sorted(FAMILIES)


def family(name: str | TaskFamily) -> TaskFamily:
    """A task family: a built-in name (``families()``) or an import path
    ``package.module:attribute`` to a ``TaskFamily`` or a function of no arguments
    returning one. A ``TaskFamily`` is returned as it is."""
    if isinstance(name, TaskFamily):
        return name
    if is_import_path(name):
        return _imported(name, TaskFamily, "task family")
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(
            f"unknown task family {name!r}; choose from {families()} or give an import path "
            "package.module:attribute"
        ) from None


__all__ = [
    "FitResult",
    "Task",
    "TaskFamily",
    "augment",
    "autoencoder_task",
    "classification_task",
    "data",
    "dataset",
    "families",
    "family",
    "fit",
    "from_import_path",
    "get",
    "is_import_path",
    "is_object_label",
    "label",
    "language_model_task",
    "models",
    "names",
    "quadratic_task",
    "regression_task",
]
