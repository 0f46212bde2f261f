"""Every registered task and family member is finite at init and trainable by Adam."""

import jax
import jax.numpy as jnp
import optax
import pytest

import tasks

FAMILY_MEMBERS = [(f, seed) for f in tasks.families() for seed in (0, 1)]


def _member(family: str, seed: int) -> tasks.Task:
    fam = tasks.family(family)
    return fam.task(fam.sample(jax.random.key(seed)))


def _check_trainable(task: tasks.Task):
    result = tasks.fit(task, optax.adam(1e-3), jax.random.key(0), num_steps=200)
    before, after = result.eval_before, result.eval_after
    assert result.train_losses.shape == (200,)
    assert jnp.isfinite(before) and jnp.isfinite(after), task.name
    assert after < before, f"{task.name}: loss {before:.4f} -> {after:.4f}"
    # init_loss is a rough scale used to normalize meta-losses: within 3x of the real one.
    assert task.init_loss / 3 < before < 3 * task.init_loss, (task.name, before, task.init_loss)


@pytest.mark.parametrize("name", tasks.names())
def test_task_trains_with_adam(name):
    _check_trainable(tasks.get(name))


@pytest.mark.parametrize(("family", "seed"), FAMILY_MEMBERS)
def test_family_member_trains_with_adam(family, seed):
    _check_trainable(_member(family, seed))


def test_vmap_over_init_keys_compiles_once():
    task = tasks.get("mlp-digits")
    traces = []

    @jax.jit
    def population_loss(keys):
        traces.append(1)
        params = jax.vmap(task.init)(keys)
        batch = task.batch(jax.random.key(0))
        return jax.vmap(task.loss, in_axes=(0, None))(params, batch)

    a = population_loss(jax.random.split(jax.random.key(1), 4))
    b = population_loss(jax.random.split(jax.random.key(2), 4))
    assert len(traces) == 1
    assert a.shape == b.shape == (4,)
    assert len(set(a.tolist())) == 4  # distinct inits give distinct losses
    assert not jnp.allclose(a, b)


@pytest.mark.parametrize("name", ["mlp-digits", "charlstm-pydoc", "quadratic-noisy"])
def test_batch_under_jit(name):
    task = tasks.get(name)
    for split in ("train", "valid", "test"):
        draw = jax.jit(lambda k, split=split: task.batch(k, split))
        b1, b2 = draw(jax.random.key(0)), draw(jax.random.key(1))
        eager = task.batch(jax.random.key(0), split)
        leaves1, leaves2 = jax.tree.leaves(b1), jax.tree.leaves(b2)
        for x1, xe in zip(leaves1, jax.tree.leaves(eager), strict=True):
            assert jnp.array_equal(x1, xe)  # jit and eager draw the same batch
        assert not all(jnp.array_equal(x, y) for x, y in zip(leaves1, leaves2, strict=True))


def test_splits_differ():
    task = tasks.get("mlp-digits")
    key = jax.random.key(0)
    assert not jnp.array_equal(task.batch(key, "train")["x"], task.batch(key, "valid")["x"])


def test_family_sampling_is_deterministic_and_varied():
    fam = tasks.family("image-mlp")
    assert fam.sample(jax.random.key(3)) == fam.sample(jax.random.key(3))
    cfgs = {fam.sample(jax.random.key(i)) for i in range(20)}
    assert len(cfgs) > 10
    assert {c.dataset for c in cfgs} == {"digits", "mnist1d"}
    # raw uint32 keys work too
    assert fam.sample(jax.random.PRNGKey(3)) == fam.sample(jax.random.PRNGKey(3))


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match="unknown task 'nope'.*mlp-digits"):
        tasks.get("nope")
    with pytest.raises(ValueError, match="unknown task family 'nope'.*image-mlp"):
        tasks.family("nope")
    with pytest.raises(ValueError, match="split must be one of"):
        tasks.get("quadratic").batch(jax.random.key(0), "training")


def test_task_validates_metadata():
    task = tasks.get("quadratic")
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        task.replace(batch_size=0)
    with pytest.raises(ValueError, match="init_loss must be finite and > 0"):
        task.replace(init_loss=float("nan"))
    with pytest.raises(ValueError, match="num_steps"):
        task.replace(num_steps=-1)
