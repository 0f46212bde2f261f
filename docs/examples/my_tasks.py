"""Your own task, family, suite and optimizer, named by import path (``my_tasks:blobs``).

With this file's folder on the path (installed, the working directory, or ``PYTHONPATH``):

    python -m meta_train --config demo task.family=my_tasks:widths run_dir=runs/mine
    python -m bench compare --optimizer runs/mine/optimizer.lopt --optimizer my_tasks:sgd_cosine \\
        --suite my_tasks:suite --baselines adam,adam-cosine --out reports/mine

The tests run these steps (in-process, resumed, on 2 Ray workers, and benchmarked).
"""

import flax.linen as nn
import numpy as np
import optax

import tasks
from bench.suites import Entry


class MLP(nn.Module):
    """``x[B, 8] -> logits[B, 3]``."""

    width: int = 32

    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.gelu(nn.Dense(self.width)(x)))


def _blobs(seed: int = 0) -> tasks.data.ArrayDataset:
    """Three overlapping Gaussian blobs in 8 dimensions."""
    centers = np.random.default_rng(seed).normal(size=(3, 8))

    def split(n, split_seed):
        rng = np.random.default_rng(split_seed)
        y = rng.integers(0, 3, n)
        return (centers[y] + rng.normal(size=(n, 8))).astype(np.float32), y.astype(np.int32)

    return tasks.data.from_arrays("blobs8", {"train": split(2048, 1), "valid": split(256, 2)})


def blobs(width: int = 32) -> tasks.Task:
    """A fixed task: ``task.name=my_tasks:blobs``."""
    return tasks.classification_task(f"blobs8-mlp{width}", _blobs(), MLP(width), batch_size=32)


# A family: ``task.family=my_tasks:widths``. A member is a hashable structure drawn from a
# numpy Generator; members of one structure share shapes.
widths = tasks.TaskFamily("my-widths", lambda rng: int(rng.choice([16, 32, 64])), blobs)


def suite() -> list[Entry]:
    """A benchmark suite: ``--suite my_tasks:suite``."""
    return [Entry("blobs8-mlp32", blobs, num_steps=200, eval_every=20)]


def sgd_cosine(num_steps: int) -> optax.GradientTransformation:
    """A candidate optimizer: ``--optimizer my_tasks:sgd_cosine`` (``num_steps -> transform``)."""
    return optax.sgd(optax.cosine_decay_schedule(0.1, num_steps), momentum=0.9)
