"""`LearnedMuon` starts exactly at optax's Muon with cosine decay; each learned part moves it."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt
from lopt import features as F
from lopt.learned_muon import (
    TERMS,
    RateState,
    current_rate,
    distance_features,
    hyper_cosine,
    init_path,
    update_path,
)

T = 50


def _params():
    """An embedding, two dense layers with biases: what optax's Muon splits between
    orthogonalized (every 2-D leaf, the embedding too) and NAdam."""
    k = jax.random.split(jax.random.key(0), 5)
    return {
        "embed": {"embedding": jax.random.normal(k[0], (11, 6))},
        "hidden": {"kernel": 0.3 * jax.random.normal(k[1], (6, 9)), "bias": jnp.zeros(9)},
        "out": {"kernel": 0.3 * jax.random.normal(k[2], (9, 3)), "bias": jnp.zeros(3)},
    }


def _loss(p, tokens, targets):
    h = jax.nn.gelu(p["embed"]["embedding"][tokens] @ p["hidden"]["kernel"] + p["hidden"]["bias"])
    logits = h @ p["out"]["kernel"] + p["out"]["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


def _train(tx, steps=T):
    """``steps`` jitted steps on fixed batches; the final params and every update."""

    @jax.jit
    def step(params, state, t):
        key = jax.random.fold_in(jax.random.key(1), t)
        tokens = jax.random.randint(key, (16,), 0, 11)
        loss, grads = jax.value_and_grad(_loss)(params, tokens, tokens % 3)
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state, updates

    params, state, updates = _params(), tx.init(_params()), []
    for t in range(steps):
        params, state, u = step(params, state, t)
        updates.append(u)
    return params, updates


@pytest.fixture(scope="module")
def reference():
    return _train(
        optax.with_extra_args_support(optax.contrib.muon(optax.cosine_decay_schedule(0.02, T)))
    )


@pytest.mark.parametrize(
    "lo",
    [
        lopt.LearnedMuon(),
        *(lopt.LearnedMuon(controller_hidden=8, term=t) for t in TERMS[1:]),
        lopt.LearnedMuon(controller_hidden=8, distance=True),
        lopt.LearnedMuon(hypergradient=True),
    ],
    ids=lambda lo: (
        f"controller{lo.controller_hidden}-{lo.term}-distance{lo.distance:d}"
        f"-hyper{lo.hypergradient:d}"
    ),
)
def test_starts_exactly_at_optax_muon_with_cosine_decay(lo, reference):
    params, updates = _train(lo.as_optax(lo.init(jax.random.key(3)), T))
    ref_params, ref_updates = reference
    for ours, theirs in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)
    last = lambda us: jax.tree.leaves(us[-2])  # the step before the last (the last is 0)
    for ours, theirs in zip(last(updates), last(ref_updates), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-9)


@functools.cache
def _compiled_updates(lo, steps):
    """``(theta, values) -> the first `steps` updates`` of ``lo``, compiled once per
    architecture (theta and the losses are arguments)."""

    @jax.jit
    def updates(theta, values):
        tx = lo.as_optax(theta, 10)
        params = _params()
        grads = jax.tree.map(lambda p: 0.1 * jnp.cos(jnp.arange(p.size).reshape(p.shape)), params)
        state, out = tx.init(params), []
        for t in range(steps):
            u, state = tx.update(grads, state, params, value=values[t])
            out.append(u)
        return out

    return updates


def _first_updates(lo, theta, steps=3, values=(2.0, 1.5, 1.0)):
    return _compiled_updates(lo, steps)(theta, jnp.asarray(values, jnp.float32))


def test_the_schedule_and_the_controller_scale_the_whole_step():
    lo = lopt.LearnedMuon(controller_hidden=4)
    theta = lo.init(jax.random.key(0))
    base = _first_updates(lo, theta)
    # A schedule w multiplies update t by exp(w · φ(t/T)).
    w = jnp.linspace(-1.0, 1.0, 10)
    scheduled = _first_updates(lo, {**theta, "schedule": w})
    for t in range(3):
        phi = jnp.tanh(10 * (t / 10 - jnp.asarray(F.FRACTION_THRESHOLDS)))
        for u, v in zip(jax.tree.leaves(scheduled[t]), jax.tree.leaves(base[t]), strict=True):
            np.testing.assert_allclose(u, jnp.exp(w @ phi) * v, rtol=1e-5, atol=1e-9)
    # A saturated controller output is the bound: exactly 8× (max_log_rate = log 8).
    for bias, factor in ((50.0, 8.0), (-50.0, 1 / 8)):
        controller = {
            **theta["controller"],
            "out": {"w": theta["controller"]["out"]["w"], "b": jnp.float32(bias)},
        }
        fast = _first_updates(lo, {**theta, "controller": controller})
        for u, v in zip(jax.tree.leaves(fast[1]), jax.tree.leaves(base[1]), strict=True):
            np.testing.assert_allclose(u, factor * v, rtol=1e-5, atol=1e-9)


def test_the_controller_reads_the_loss():
    lo = lopt.LearnedMuon(controller_hidden=4)
    theta = lo.init(jax.random.key(0))
    out = {"w": jnp.ones(4), "b": jnp.float32(0.0)}
    theta = {**theta, "controller": {**theta["controller"], "out": out}}
    falling = _first_updates(lo, theta, values=(2.0, 1.0, 0.5))
    rising = _first_updates(lo, theta, values=(2.0, 3.0, 4.0))
    k = lambda us: np.asarray(us[2]["out"]["kernel"])
    assert not np.allclose(k(falling), k(rising))  # same gradients: only the loss differs
    # Both runs start from the same loss: their first updates are equal.
    np.testing.assert_array_equal(falling[0]["out"]["kernel"], rising[0]["out"]["kernel"])


def test_the_path_features_are_distance_over_steps():
    """A straight path: efficiency 1 and tanh(¼ log t); steps that cancel: 0 and about -1; a
    non-finite step leaves the path as it was."""
    params = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(4)}
    step = jax.tree.map(lambda p: jnp.full_like(p, 0.1), params)
    back = jax.tree.map(jnp.negative, step)
    start = init_path(params)
    np.testing.assert_array_equal(distance_features(start), [0.0, 0.0])
    straight = zigzag = start
    for t in range(16):
        straight = update_path(straight, step)
        zigzag = update_path(zigzag, back if t % 2 else step)
    np.testing.assert_allclose(distance_features(straight), [1.0, np.tanh(np.log(16) / 4)], 1e-5)
    efficiency, dog = distance_features(zigzag)
    assert efficiency < 1e-6 and dog < -0.99
    poisoned = update_path(straight, jax.tree.map(lambda s: s * jnp.nan, step))
    for a, b in zip(jax.tree.leaves(poisoned), jax.tree.leaves(straight), strict=True):
        np.testing.assert_array_equal(a, b)


def test_with_distance_the_controller_reads_the_path():
    """Same losses, gradients that keep or flip their sign: the same rate without the path
    features, different rates with them."""

    def rate_after(lo, flip):
        @jax.jit
        def rate(theta):
            tx = lo.as_optax(theta, 10)
            params = _params()
            grads = jax.tree.map(
                lambda p: 0.1 * jnp.cos(jnp.arange(p.size).reshape(p.shape)), params
            )
            state = tx.init(params)
            for t in range(4):
                sign = -1.0 if flip and t % 2 else 1.0
                g = jax.tree.map(lambda x, s=sign: s * x, grads)
                _, state = tx.update(g, state, params, value=jnp.float32(2.0 - 0.1 * t))
            return current_rate(state)

        theta = lo.init(jax.random.key(0))
        out = {"w": jnp.ones(4), "b": jnp.float32(0.0)}
        return float(rate({**theta, "controller": {**theta["controller"], "out": out}}))

    blind = lopt.LearnedMuon(controller_hidden=4)
    assert rate_after(blind, flip=False) == rate_after(blind, flip=True)
    seeing = lopt.LearnedMuon(controller_hidden=4, distance=True)
    assert rate_after(seeing, flip=False) != rate_after(seeing, flip=True)
    with pytest.raises(ValueError, match="distance feeds the controller"):
        lopt.LearnedMuon(distance=True)


def _hyper_log_rate(lr, gain=1.0, target=0.0, steps=40):
    """``h`` after ``steps`` deterministic steps toward a fixed 8×8 target (and 3 biases)."""
    goal = jax.random.normal(jax.random.key(0), (8, 8))
    loss = lambda p: 0.5 * jnp.sum((p["w"] - goal) ** 2) + 0.5 * jnp.sum((p["b"] - 1.0) ** 2)
    lo = lopt.LearnedMuon(lr=lr, schedule=False, hypergradient=True)
    hyper = {"gain": jnp.float32(gain), "target": jnp.float32(target)}

    @jax.jit  # one compiled loop: op by op, the 40 steps took seconds each call
    def log_rate(theta):
        tx = lo.as_optax(theta, steps)

        def step(_, carry):
            params, state = carry
            updates, state = tx.update(jax.grad(loss)(params), state, params)
            return optax.apply_updates(params, updates), state

        params = {"w": jnp.zeros((8, 8)), "b": jnp.zeros(3)}
        _, state = jax.lax.fori_loop(0, steps, step, (params, tx.init(params)))
        (rate_state,) = [
            x
            for x in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, RateState))
            if isinstance(x, RateState)
        ]
        return rate_state.hyper.log_rate

    return float(log_rate({**lo.init(jax.random.key(0)), "hyper": hyper}))


def test_the_hypergradient_shortens_overshooting_steps_and_lengthens_short_ones():
    """Steps that overshoot the target leave gradients against the last direction (the
    log-rate falls); steps far too short leave them along it (it rises, to its bound)."""
    assert _hyper_log_rate(5.0) < -1.0
    assert _hyper_log_rate(1e-3) == pytest.approx(math.log(8))
    assert _hyper_log_rate(1e-3, gain=0.0, target=0.5) == 0.0  # no gain: exactly Muon's rate
    # A target cosine above what the run sees lowers the rate.
    assert _hyper_log_rate(1e-3, target=1.5) < 0


def test_the_hypergradient_cosine_is_over_the_whole_tree_and_finite():
    a = {"w": jnp.ones((2, 2)), "b": jnp.ones(3)}
    np.testing.assert_allclose(hyper_cosine(a, jax.tree.map(lambda x: -2 * x, a)), -1.0, 1e-6)
    zero = jax.tree.map(jnp.zeros_like, a)
    assert float(hyper_cosine(a, zero)) == 0.0
    assert float(hyper_cosine(jax.tree.map(lambda x: x * jnp.nan, a), a)) == 0.0


@pytest.mark.parametrize("term", TERMS[1:])
def test_the_learned_term_changes_only_the_orthogonalized_leaves(term):
    lo = lopt.LearnedMuon(term=term)
    theta = lo.init(jax.random.key(0))
    mlp = theta["term"]["mlp"]
    last = {"w": jnp.full_like(mlp[-1]["w"], 0.5), "b": mlp[-1]["b"] + 0.1}
    moved = {**theta, "term": {**theta["term"], "mlp": [*mlp[:-1], last]}}
    before, after = _first_updates(lo, theta)[0], _first_updates(lo, moved)[0]
    for path in (("out", "bias"), ("hidden", "bias")):  # NAdam's leaves: untouched
        a, b = before, after
        for key in path:
            a, b = a[key], b[key]
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(before["out"]["kernel"], after["out"]["kernel"])


def test_value_is_required_with_a_controller_and_the_file_round_trips(tmp_path):
    lo = lopt.LearnedMuon(controller_hidden=4, term="step")
    theta = lo.init(jax.random.key(0))
    tx = lo.as_optax(theta, 10)
    params = {"w": jnp.ones((3, 2))}
    with pytest.raises(ValueError, match=r"LearnedMuon needs `value`"):
        tx.update(params, tx.init(params), params)
    lopt.save(tmp_path / "m.lopt", lo, theta)
    frozen = lopt.load(tmp_path / "m.lopt")
    assert frozen.architecture == lo
    a = _first_updates(lo, theta)
    b = _first_updates(frozen.architecture, frozen.theta)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert math.isclose(lo.max_log_rate, math.log(8))


@pytest.mark.parametrize("hidden", [0, 4])
def test_state_has_no_empty_arrays_and_exposes_the_rate(hidden):
    """Orbax cannot checkpoint zero-size arrays: without a controller the carry is ``()``.
    The rate of the last update is readable through wrappers."""
    lo = lopt.LearnedMuon(controller_hidden=hidden)
    tx = optax.MultiSteps(lo.as_optax(lo.init(jax.random.key(0)), 10), every_k_schedule=1)
    params = _params()
    state = tx.init(params)
    assert all(x.size > 0 for x in jax.tree.leaves(state))
    assert float(current_rate(state)) == 0.0
    _, state = tx.update(params, state, params, value=jnp.float32(1.0))
    assert float(current_rate(state)) == pytest.approx(0.02)  # cos(0) = 1, multipliers 1
    assert current_rate(optax.adam(1e-3).init(params)) is None
