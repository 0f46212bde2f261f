"""Randomly initialized learned optimizers train a flax model through a plain optax loop."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
import pytest

import lopt


class _MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.tanh(nn.Dense(16)(x)))


def _train(tx, steps=150):
    model = _MLP()
    x = jax.random.normal(jax.random.key(0), (64, 4))
    y = jnp.sin(x.sum(-1, keepdims=True))
    params = model.init(jax.random.key(1), x)["params"]
    loss_fn = lambda p: jnp.mean((model.apply({"params": p}, x) - y) ** 2)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state, loss

    state, losses = tx.init(params), []
    for _ in range(steps):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    return losses, params


@pytest.mark.parametrize(
    "lo",
    [
        lopt.MLPLOpt.bare(),
        lopt.MLPLOpt.bare(nominal=True),
        lopt.MLPLOpt(),
        lopt.VeLO(),
    ],
    ids=["mlp-bare", "mlp-bare-nominal", "mlp", "velo"],
)
def test_random_learned_optimizer_trains_without_nan(lo):
    tx = lo.as_optax(lo.init(jax.random.key(0)), num_steps=150)
    losses, params = _train(tx)
    assert all(jnp.isfinite(jnp.asarray(losses)))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(params))
    if lo.name == "MLPLOpt" and lo.nominal:  # starts as (orthogonalized) Adam: must progress
        assert losses[-1] < 0.9 * losses[0]
