"""The shared feature code against the math it implements."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lopt
from lopt import features as F


def _accumulate(gs):
    acc = F.init_accumulators(gs[0])
    for g in gs:
        acc = F.update_accumulators(acc, g)
    return acc


def test_accumulators_match_optax_adam_moments():
    gs = [jax.random.normal(jax.random.key(i), (4, 3)) for i in range(5)]
    acc = _accumulate(gs)
    adam = optax.scale_by_adam(b1=F.MOMENTUM_DECAYS[0], b2=F.RMS_DECAY)
    state = adam.init(gs[0])
    for g in gs:
        _, state = adam.update(g, state)
    np.testing.assert_allclose(acc.momenta[0], state.mu, rtol=1e-6)
    np.testing.assert_allclose(acc.rms, state.nu, rtol=1e-6)
    assert acc.momenta.shape == (len(F.MOMENTUM_DECAYS), 4, 3)


def test_factored_second_moment_is_exact_for_rank_one_gradients():
    a, b = jnp.array([1.0, 2.0, 0.5]), jnp.array([3.0, 0.1, 1.0, 2.0])
    g = jnp.outer(a, b)  # g² = outer(a², b²): rank one, so the factorization is exact
    acc = _accumulate([g])
    count = jnp.asarray(1)
    feats = dict(
        zip(
            F.FEATURE_NAMES,
            F.parameter_features(acc, g, g, count, F.tensor_stats(acc, g, count)),
            strict=True,
        )
    )
    np.testing.assert_allclose(feats["g/sqrt(v_factored)"], feats["g/sqrt(v)"], rtol=1e-5)
    np.testing.assert_allclose(
        jnp.abs(feats["g/sqrt(v)"]), 1.0, rtol=1e-5
    )  # |g|/sqrt(g²) at step 1


def test_factors_are_means_of_the_second_moment_over_the_last_two_axes():
    g = jax.random.normal(jax.random.key(0), (3, 3, 2, 5))  # a conv kernel
    acc, count = _accumulate([g, 2 * g]), jnp.asarray(2)
    stats = F.tensor_stats(acc, g, count)
    v = acc.rms / (1 - F.RMS_DECAY**2)
    assert stats.row.shape == (3, 3, 2) and stats.col.shape == (3, 3, 5)
    np.testing.assert_allclose(stats.row, v.mean(-1), rtol=1e-5)
    np.testing.assert_allclose(stats.col, v.mean(-2), rtol=1e-5)
    np.testing.assert_allclose(stats.mean_v, v.mean(), rtol=1e-5)
    assert F.tensor_stats(acc, g[0, 0, 0], count).row.shape == (0,)  # vectors: not factored


def test_features_are_invariant_to_loss_scale():
    p = jax.random.normal(jax.random.key(9), (6, 5))
    gs = [jax.random.normal(jax.random.key(i), (6, 5)) for i in range(4)]

    def feats(scale):
        g = [scale * x for x in gs]
        acc, count = _accumulate(g), jnp.asarray(len(g))
        return F.parameter_features(acc, g[-1], p, count, F.tensor_stats(acc, p, count))

    for name, a, b in zip(F.FEATURE_NAMES, feats(1.0), feats(1000.0), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=name)
        assert float(jnp.abs(a).max()) <= F.FEATURE_CLIP


def test_learned_updates_are_invariant_to_loss_scale():
    lo = lopt.MLPLOpt(hidden=(4, 4))
    tx = lo.as_optax(lo.init(jax.random.key(0)), num_steps=50)
    params = {"w": jax.random.normal(jax.random.key(1), (4, 3))}
    g = {"w": jax.random.normal(jax.random.key(2), (4, 3))}
    u1, _ = tx.update(g, tx.init(params), params)
    u2, _ = tx.update(jax.tree.map(lambda x: 1e3 * x, g), tx.init(params), params)
    np.testing.assert_allclose(u1["w"], u2["w"], rtol=1e-4)


def test_time_and_loss_features():
    start = F.global_features(jnp.asarray(0), 100)
    end = F.global_features(jnp.asarray(100), 100)
    assert start.shape == (F.NUM_GLOBAL_FEATURES,)
    n_time = len(F.TIME_SCALES)
    assert jnp.all(start[:n_time] == 0) and jnp.all(end[:n_time] > 0)
    assert jnp.all(start[n_time:] < 0) and jnp.all(
        end[n_time:] > 0
    )  # before / past every threshold

    state = F.init_loss_state()
    assert jnp.all(F.loss_features(state, jnp.float32(5.0)) == 0)  # nothing to compare with yet
    state = F.update_loss_state(state, jnp.float32(5.0))
    assert jnp.all(F.loss_features(state, jnp.float32(2.5)) < 0)  # loss fell
    unchanged = F.update_loss_state(state, jnp.float32(jnp.nan))
    np.testing.assert_array_equal(unchanged.ema, state.ema)
    assert jnp.all(jnp.isfinite(F.loss_features(state, jnp.float32(jnp.inf))))
