import jax
import numpy as np

import tasks
from meta_train import load_config
from meta_train.stream import TaskSource


def _source(overrides, stream=0):
    cfg = load_config(None, overrides)
    return TaskSource(cfg.task, cfg.seed, stream)


def test_a_mixture_draws_every_family_reproducibly_per_stream():
    mix = ["task.family=[image-mlp, quadratic]", "task.resample_every=5"]
    source = _source(mix)
    structures = [source.structure(p) for p in range(12)]
    assert {s[0] for s in structures} == {"image-mlp", "quadratic"}
    assert all(s[2] is None for s in structures)  # no augmentation configured
    assert structures == [_source(mix).structure(p) for p in range(12)]
    assert structures != [_source(mix, stream=1).structure(p) for p in range(12)]
    assert [source.period(w) for w in (0, 4, 5, 11)] == [0, 0, 1, 2]


def test_augmented_task_is_the_same_function_with_scaled_loss():
    source = _source(
        [
            "task.family=null",
            "task.name=quadratic",
            "task.augment={param_scale: [0.5, 2], loss_scale: [0.1, 10]}",
        ]
    )
    assert source.period(60) == 1  # a fixed task is still re-augmented every period
    structure = source.structure(3)
    name, member, (_, factor) = structure
    assert (name, member) == ("quadratic", None) and 0.1 <= factor <= 10
    base, augmented = tasks.get("quadratic"), source.task(structure)
    key, batch_key = jax.random.key(0), jax.random.key(1)
    batch = base.batch(batch_key, "train")
    q = augmented.init(key)
    p = base.init(key)
    # p = s·q per tensor with s in [0.5, 2]: the same point, a loss scaled by the factor
    scale = np.asarray(p["x"] / q["x"])
    assert np.allclose(scale, scale[0], rtol=1e-5) and 0.5 <= scale[0] <= 2
    np.testing.assert_allclose(augmented.loss(q, batch), factor * base.loss(p, batch), rtol=1e-5)
    assert augmented.init_loss == base.init_loss * factor
