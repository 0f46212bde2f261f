import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tasks
from tasks import augment


@pytest.fixture(scope="module")
def base():
    return tasks.get("mlp-digits")


def test_reparameterize_keeps_the_function_at_init_but_changes_geometry(base):
    wrapped = augment.reparameterize(base, jax.random.key(7), 0.01, 100.0)
    key, bkey = jax.random.key(0), jax.random.key(1)
    p0, q0 = base.init(key), wrapped.init(key)
    batch = base.batch(bkey)
    np.testing.assert_allclose(wrapped.loss(q0, batch), base.loss(p0, batch), rtol=1e-5)

    # q = p / s per tensor, and dL/dq = s * dL/dp: one scale per tensor in both relations.
    gp, gq = jax.grad(base.loss)(p0, batch), jax.grad(wrapped.loss)(q0, batch)
    scales = []
    for p, q, a, b in zip(*map(jax.tree.leaves, (p0, q0, gp, gq)), strict=True):
        s = float(b.ravel()[jnp.argmax(jnp.abs(a))] / a.ravel()[jnp.argmax(jnp.abs(a))])
        np.testing.assert_allclose(b, s * a, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(p, s * q, rtol=1e-5)
        scales.append(s)
    assert min(scales) < 0.5 and max(scales) > 2.0  # the scales really differ per tensor

    # So one SGD step from the same function lands on different functions.
    sgd = lambda loss, x: jax.tree.map(lambda v, g: v - 0.1 * g, x, jax.grad(loss)(x, batch))
    assert (
        abs(
            float(base.loss(sgd(base.loss, p0), batch) - wrapped.loss(sgd(wrapped.loss, q0), batch))
        )
        > 1e-3
    )


def test_reparameterize_validates_range(base):
    with pytest.raises(ValueError, match="min_scale"):
        augment.reparameterize(base, jax.random.key(0), 2.0, 1.0)


def test_scale_loss(base):
    scaled = augment.scale_loss(base, 10.0)
    p, b = base.init(jax.random.key(0)), base.batch(jax.random.key(1))
    np.testing.assert_allclose(scaled.loss(p, b), 10 * base.loss(p, b), rtol=1e-6)
    assert scaled.init_loss == pytest.approx(10 * base.init_loss)
    with pytest.raises(ValueError, match="factor"):
        augment.scale_loss(base, 0.0)


def test_with_batch_size(base):
    small = augment.with_batch_size(base, 4)
    assert small.batch(jax.random.key(0))["x"].shape[0] == 4
    with pytest.raises(ValueError, match="batch_size"):
        augment.with_batch_size(base, 0)


def test_gradient_noise_changes_gradients_not_values():
    quad = tasks.get("quadratic")
    noisy = augment.add_gradient_noise(quad, stddev=0.5)
    p = quad.init(jax.random.key(0))
    batch = noisy.batch(jax.random.key(1))
    np.testing.assert_allclose(noisy.loss(p, batch), quad.loss(p, batch["data"]), rtol=1e-6)
    diff = jax.grad(noisy.loss)(p, batch)["x"] - jax.grad(quad.loss)(p, batch["data"])["x"]
    assert 0.3 < float(jnp.std(diff)) < 0.7
