"""The task zoo: inner problems for training and meta-training optimizers.

import tasks
task = tasks.get("mlp-digits")            # tasks.names() lists them
params = task.init(key)
batch = task.batch(key, "train")          # jit-able; also "valid", "test"
loss = task.loss(params, batch)
fam = tasks.family("image-mlp")           # tasks.families() lists them
task = fam.task(fam.sample(key))
"""

from tasks import augment, data, models
from tasks.base import Task, TaskFamily
from tasks.builders import (
    autoencoder_task,
    classification_task,
    language_model_task,
    quadratic_task,
    regression_task,
)
from tasks.families import FAMILIES
from tasks.training import FitResult, fit
from tasks.zoo import TASKS, dataset


def names() -> list[str]:
    """Names of the built-in fixed tasks."""
    return sorted(TASKS)


def get(name: str) -> Task:
    """A built-in fixed task by name."""
    try:
        build = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose from {names()}") from None
    return build()


def families() -> list[str]:
    """Names of the built-in task families."""
    return sorted(FAMILIES)


def family(name: str) -> TaskFamily:
    """A built-in task family by name."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown task family {name!r}; choose from {families()}") from None


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
    "get",
    "language_model_task",
    "models",
    "names",
    "quadratic_task",
    "regression_task",
]
