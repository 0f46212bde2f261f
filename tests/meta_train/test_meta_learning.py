"""Meta-training does what it should on problems with a known best answer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt
import tasks
from meta_train import NRES, Learner, MetaLoss, OuterConfig, TruncationSchedule, Unroller


def _train(est, learner, theta, steps, seed=0):
    state = learner.init(theta)
    est_state = est.init(jax.random.PRNGKey(seed), theta)
    history = []
    for i in range(steps):
        grad, est_state, m = est.estimate(state.theta, est_state, jax.random.PRNGKey(1000 + i))
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grad))
        state, _ = learner.apply(state, [(grad, int(state.version))])
        history.append(jax.device_get(m))
    return state.theta, history


def test_nres_finds_the_grid_search_learning_rate():
    """HyperAdam's log learning rate, meta-trained by NRES, lands within 2x of the best
    learning rate of a quarter-decade grid at the same horizon."""
    horizon = 50
    lo = lopt.HyperAdam(lr=1e-3)
    unroller = Unroller(
        tasks.get("mlp-digits"),
        lo,
        TruncationSchedule("constant", horizon, horizon),
        MetaLoss(),
        window=10,
    )
    evaluate = jax.jit(unroller.episode_loss, static_argnums=2)
    grid = np.logspace(-3.5, 0, 15)
    losses = [
        float(evaluate({"log_lr": jnp.log(jnp.float32(lr))}, jax.random.PRNGKey(0), 32))
        for lr in grid
    ]
    best = grid[int(np.argmin(losses))]
    assert 1e-3 < best < 0.3  # an interior optimum, so the comparison means something

    theta, _ = _train(
        NRES(unroller, num_particles=8, sigma=0.1),
        Learner(OuterConfig(learning_rate=0.05)),
        lo.init(None),
        200,
    )
    learned = float(jnp.exp(theta["log_lr"]))
    assert best / 2 < learned < best * 2, (learned, best)


def test_meta_loss_is_bounded_by_its_floor_and_clip():
    losses = jnp.array([0.0, 1e-6, 0.5, 3.0, jnp.inf, jnp.nan])
    value, diverged = MetaLoss("log", clip=2.0, floor=1e-2)(losses, 1.0)
    np.testing.assert_allclose(value, np.log([1e-2, 1e-2, 0.5, 2.0, 2.0, 2.0]), rtol=1e-6)
    assert diverged.tolist() == [False, False, False, True, True, True]
    value, _ = MetaLoss("linear", clip=4.0, floor=0.1)(losses * 2.0, 2.0)
    np.testing.assert_allclose(value, [0.1, 0.1, 0.5, 3.0, 4.0, 4.0], rtol=1e-6)
    with pytest.raises(ValueError, match=r"floor: must be in \(0, 1\), got 0.0"):
        MetaLoss(floor=0.0)


def test_a_diverging_episode_scores_the_clipped_value_for_the_steps_it_did_not_run():
    """Adam at 1e4 leaves the quadratic's basin at its first update: step 0 scores log 1 = 0,
    step 1 diverges, and the 18 steps never run count at log(clip), as step 1 does."""
    lo = lopt.HyperAdam()
    unroller = Unroller(
        tasks.get("quadratic"), lo, TruncationSchedule("constant", 20, 20), MetaLoss("log"), 20
    )
    score = jax.jit(unroller.episode_loss, static_argnums=2)
    at = lambda lr: float(score({"log_lr": jnp.log(jnp.float32(lr))}, jax.random.PRNGKey(0), 2))
    diverging, stable = at(1e4), at(1e-2)
    assert diverging == pytest.approx(19 / 20 * np.log(2.0), abs=0.03)
    assert stable < 0 < diverging


def test_end_power_weighs_each_step_by_its_fraction_of_the_episode():
    """With ``end_power`` k, step t of T contributes (k + 1)(t/T)^k times its value; the
    weights average about 1, and a diverged episode's lost steps count at the largest one."""
    lo, theta = lopt.HyperAdam(), {"log_lr": jnp.log(jnp.float32(1e-2))}
    schedule = TruncationSchedule("constant", 20, 20)
    values = {}
    for k in (0.0, 2.0):
        unroller = Unroller(tasks.get("quadratic"), lo, schedule, MetaLoss(end_power=k), 20, False)
        thetas = jax.tree.map(lambda x: jnp.broadcast_to(x, (1, 3, *x.shape)), theta)
        _, out = unroller.unroll(thetas, unroller.init(jax.random.PRNGKey(0), thetas))
        values[k] = np.asarray(out.values[:, 0])  # [W = T, N]
    weights = 3.0 * (np.arange(1, 21) / 20) ** 2
    np.testing.assert_allclose(values[2.0], values[0.0] * weights[:, None], rtol=1e-5)
    assert weights.mean() == pytest.approx(1.0, abs=0.08)
    diverging = Unroller(
        tasks.get("quadratic"), lo, schedule, MetaLoss("log", end_power=2.0), 20, False
    )
    score = jax.jit(diverging.episode_loss, static_argnums=2)
    lost = float(score({"log_lr": jnp.log(jnp.float32(1e4))}, jax.random.PRNGKey(0), 2))
    assert lost == pytest.approx(np.log(2.0) * (weights[1] + 18 * 3.0) / 20, abs=0.05)
    with pytest.raises(ValueError, match=r"end_power: must be >= 0"):
        MetaLoss(end_power=-1.0)


def test_diverging_inner_runs_never_poison_meta_training():
    """A perturbation scale that makes many inner runs blow up: every estimate stays finite,
    divergences are counted, and theta stays finite."""
    lo = lopt.MLPLOpt.bare(hidden=(4,), step_scale=1.0)
    unroller = Unroller(
        tasks.get("mlp-digits"), lo, TruncationSchedule("loguniform", 10, 30), MetaLoss(), window=10
    )
    theta, history = _train(
        NRES(unroller, num_particles=4, sigma=3.0),
        Learner(OuterConfig()),
        lo.init(jax.random.key(0)),
        6,
    )
    assert sum(int(m["diverged"]) for m in history) > 0
    assert all(np.isfinite(float(m["meta_loss"])) for m in history)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(theta))


def test_nres_meta_training_improves_mlplopt_on_an_image_mlp_member():
    """Smoke version of the reported run: a few dozen NRES steps lower MLPLOpt's meta-loss,
    measured on fixed evaluation episodes, below that of its initialization."""
    fam = tasks.family("image-mlp")
    task = fam.task(fam.sample(jax.random.key(0)))
    lo = lopt.MLPLOpt.bare(hidden=(4, 4), nominal=True, nominal_lr=1e-3)
    unroller = Unroller(task, lo, TruncationSchedule("loguniform", 20, 60), MetaLoss(), window=10)
    theta0 = lo.init(jax.random.key(0))
    theta, _ = _train(
        NRES(unroller, num_particles=8, sigma=0.03),
        Learner(OuterConfig(learning_rate=1e-2)),
        theta0,
        40,
    )
    evaluate = jax.jit(unroller.episode_loss, static_argnums=2)
    before = float(evaluate(theta0, jax.random.PRNGKey(7), 16))
    after = float(evaluate(theta, jax.random.PRNGKey(7), 16))
    print(f"eval meta-loss before {before:.4f} after {after:.4f}")
    assert after < before, (before, after)
