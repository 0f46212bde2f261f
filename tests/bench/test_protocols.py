"""Baselines, Halton sampling, the runner, and the lr-grid protocol on a solvable problem."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats.qmc

import tasks
from bench import baselines, protocols, runner


def test_lr_grid_is_half_decades():
    grid = protocols.lr_grid()
    assert len(grid) == 14 and grid[0] == pytest.approx(10**-6.5) and grid[-1] == 1.0
    np.testing.assert_allclose(np.diff(np.log10(grid)), 0.5, rtol=1e-5)
    assert len(protocols.lr_grid(1e-3, 1e-1)) == 5
    for low, high in ((1.0, 1e-3), (0.0, 1.0), (1e-3, float("inf"))):
        with pytest.raises(ValueError, match="range needs 0 < low <= high"):
            protocols.lr_grid(low, high)
    with pytest.raises(ValueError, match="holds no point of the grid"):
        protocols.lr_grid(0.4, 0.5)


def test_halton_points_are_stratified_and_beat_random_sampling():
    u = protocols.halton(64, 3, seed=1)
    assert u.shape == (64, 3) and np.all((u >= 0) & (u < 1))
    # Base 2 in the first dimension: the first 16 points fill all 16 sixteenths;
    # base 3 in the second: the first 9 points fill all 9 ninths.
    assert sorted(np.floor(u[:16, 0] * 16).astype(int)) == list(range(16))
    assert sorted(np.floor(u[:9, 1] * 9).astype(int)) == list(range(9))
    rand = np.random.default_rng(0).random((64, 3))
    assert scipy.stats.qmc.discrepancy(u) < scipy.stats.qmc.discrepancy(rand)


def test_search_spaces_are_sampled_on_their_scales():
    adam = baselines.get("adam")
    hp = adam.sample(protocols.halton(256, len(adam.space)))
    assert set(hp) == {"learning_rate", "b1", "b2", "eps"}
    assert 1e-5 <= hp["learning_rate"].min() and hp["learning_rate"].max() <= 1.0
    assert 0.0 <= hp["b1"].min() and hp["b1"].max() <= 0.999
    # log-uniform: about half the learning rates below the geometric midpoint 10^-2.5
    assert np.mean(hp["learning_rate"] < 10**-2.5) == pytest.approx(0.5, abs=0.05)
    # log1m: about half of 1 - b2 below sqrt(0.1 * 1e-4)
    assert np.mean(1 - hp["b2"] < np.sqrt(0.1 * 1e-4)) == pytest.approx(0.5, abs=0.05)
    with pytest.raises(ValueError, match="unknown baseline 'adamax'"):
        baselines.get("adamax")


def test_adam_atan2_matches_its_formula_and_is_scale_invariant():
    tx = baselines.scale_by_adam_atan2(b1=0.9, b2=0.99)
    grads = [jnp.array([0.5, -2.0, 1e-12]), jnp.array([0.1, -1.0, 0.0])]
    state, m, v = tx.init(grads[0]), np.zeros(3), np.zeros(3)
    for t, g in enumerate(grads, start=1):
        update, state = tx.update(g, state)
        m, v = 0.9 * m + 0.1 * np.asarray(g), 0.99 * v + 0.01 * np.asarray(g) ** 2
        expected = 1.27 * np.arctan2(m / (1 - 0.9**t), np.sqrt(v / (1 - 0.99**t)))
        np.testing.assert_allclose(update, expected, rtol=1e-5, atol=1e-7)
    big, _ = tx.update(1e6 * grads[0], tx.init(grads[0]))
    small, _ = tx.update(grads[0], tx.init(grads[0]))
    np.testing.assert_allclose(big, small, rtol=1e-5)


def test_every_baseline_runs_as_a_vmapped_sweep():
    task = tasks.get("quadratic")
    for b in filter(lambda b: b.tuned, baselines.BASELINES.values()):  # and so each default
        hp = b.sample(protocols.halton(2, len(b.space)))
        if b.schedule:
            hp["num_steps"] = np.array([4.0, 8.0], np.float32)
        curves = runner.run(
            task, b.tx, hp, num_seeds=1, num_steps=4, eval_every=2, evaluate=b.evaluate
        )
        assert curves.train.shape == (2, 1, 4) and curves.valid.shape == (2, 1, 3), b.name
        assert np.all(np.isfinite(curves.train[:, :, 0])), b.name


def _schedule_free_adamw(schedule):
    """optax's schedule-free AdamW with ``schedule`` evaluated at each update's index for both
    its averaging weights and its base step. (``optax.contrib.schedule_free_adamw`` reads the
    weights' schedule at the update's index + 1, since its step count starts at 1; the
    benchmark injects one rate per update, used for both.)"""
    base = optax.chain(
        optax.scale_by_rms(decay=0.999, eps=1e-8, eps_in_sqrt=False, bias_correction=True),
        optax.scale_by_learning_rate(schedule),
    )
    return optax.contrib.schedule_free(base, learning_rate=lambda c: schedule(c - 1), b1=0.9)


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("adam-cosine", lambda lr, T: optax.adam(optax.cosine_decay_schedule(lr, T))),
        (
            "adamw-warmup-cosine",
            lambda lr, T: optax.adamw(
                optax.warmup_cosine_decay_schedule(0.0, lr, T // 20, T), weight_decay=1e-4
            ),
        ),
        (
            "nadamw-warmup-cosine",
            lambda lr, T: optax.nadamw(
                optax.warmup_cosine_decay_schedule(0.0, lr, T // 20, T), weight_decay=1e-4
            ),
        ),
        ("muon-cosine", lambda lr, T: optax.contrib.muon(optax.cosine_decay_schedule(lr, T))),
        (
            "sf-adamw",
            lambda lr, T: _schedule_free_adamw(optax.warmup_constant_schedule(0, lr, T // 20)),
        ),
    ],
)
def test_scheduled_baselines_match_optax_with_the_schedule_set_to_the_budget(name, reference):
    baseline, lr, budget = baselines.get(name), 0.1, 40
    tx = baseline.tx({"learning_rate": lr, "num_steps": budget})
    ref = reference(lr, budget)
    # A 2-D leaf (Muon orthogonalizes it) and a 1-D one (Adam in Muon).
    params = {"w": jnp.array([1.0, -2.0, 3.0]), "m": jnp.arange(6.0).reshape(2, 3) / 6}
    state, ref_state = tx.init(params), ref.init(params)
    update, ref_update = jax.jit(tx.update), jax.jit(ref.update)  # one compile, not op by op
    for t in range(budget + 2):
        grads = jax.tree.map(lambda p, t=t: jnp.sin(p + t), params)
        u, state = update(grads, state, params)
        v, ref_state = ref_update(grads, ref_state, params)
        for k in params:
            np.testing.assert_allclose(u[k], v[k], rtol=1e-4, atol=1e-6, err_msg=k)
        params = optax.apply_updates(params, u)
    with pytest.raises(ValueError, match="give its budget as hparams\\['num_steps'\\]"):
        baseline.tx({"learning_rate": lr})


def test_schedule_free_losses_are_measured_at_the_averaged_point():
    """The runner's batches (step t: ``fold_in(train_key, t)``) replayed by hand: its train
    and validation losses are those of ``schedule_free_eval_params``, not of the gradient
    point, which differ here by far more than the tolerance."""
    task, sf = tasks.get("logreg-digits"), baselines.get("sf-adamw")
    lr, steps = 0.05, 10
    hp = {"learning_rate": np.array([lr], np.float32), "num_steps": np.array([steps], np.float32)}
    curves = runner.run(task, sf.tx, hp, 1, steps, steps, evaluate=sf.evaluate)
    root = jax.random.key(0)
    key = jax.random.split(jax.random.fold_in(root, 0), 1)[0]
    init_key, train_key = jax.random.split(key)
    tx = sf.tx({"learning_rate": lr, "num_steps": steps})
    params = task.init(init_key)
    state = tx.init(params)
    at_x, at_y = [], []
    for t in range(steps):
        batch = task.batch(jax.random.fold_in(train_key, t), "train")
        at_x.append(
            task.loss(optax.contrib.schedule_free_eval_params(state.inner_state, params), batch)
        )
        at_y.append(task.loss(params, batch))
        u, state = tx.update(jax.grad(task.loss)(params, batch), state, params)
        params = optax.apply_updates(params, u)
    np.testing.assert_allclose(curves.train[0, 0], at_x, rtol=1e-4)
    assert np.max(np.abs(np.asarray(at_x) - np.asarray(at_y))[1:]) > 1e-2
    valid = jax.vmap(lambda k: task.batch(k, "valid"))(
        jax.random.split(jax.random.fold_in(root, 1), 4)
    )
    x = optax.contrib.schedule_free_eval_params(state.inner_state, params)
    expected = np.mean(jax.vmap(lambda batch: task.loss(x, batch))(valid))
    np.testing.assert_allclose(curves.valid[0, 0, -1], expected, rtol=1e-4)


def test_a_longer_run_starts_as_the_shorter_one():
    """Batches depend on the step, not on the run's length: a benchmark reads budget T off
    a run of 4T steps."""
    task, adam = tasks.get("logreg-digits"), baselines.get("adam")
    hp = {"learning_rate": np.array([1e-2, 1e-1], np.float32)}
    short = runner.run(task, adam.tx, hp, num_seeds=2, num_steps=10, eval_every=5)
    long = runner.run(task, adam.tx, hp, num_seeds=2, num_steps=20, eval_every=5)
    head = long.head(10)
    np.testing.assert_allclose(head.train, short.train, rtol=1e-5)
    np.testing.assert_allclose(head.valid, short.valid, rtol=1e-5)
    np.testing.assert_array_equal(head.eval_steps, short.eval_steps)
    with pytest.raises(ValueError, match="not an evaluation step"):
        long.head(12)


def test_a_sweep_is_the_same_as_its_configurations_run_alone():
    task = tasks.get("logreg-digits")
    adam = baselines.get("adam")
    lrs = np.array([1e-3, 1e-2, 1e-1], np.float32)
    sweep = runner.run(
        task, adam.tx, {"learning_rate": lrs}, num_seeds=2, num_steps=10, eval_every=5
    )
    alone = runner.run(
        task, adam.tx, {"learning_rate": lrs[1:2]}, num_seeds=2, num_steps=10, eval_every=5
    )
    np.testing.assert_allclose(sweep.train[1], alone.train[0], rtol=1e-5)
    np.testing.assert_allclose(sweep.valid[1], alone.valid[0], rtol=1e-5)
    # ...and as optax.adam in a plain Python loop (same init and batches).
    key = jax.random.split(jax.random.fold_in(jax.random.key(0), 0), 2)[0]
    init_key, train_key = jax.random.split(key)
    params, tx = task.init(init_key), optax.adam(1e-2)
    state = tx.init(params)

    @jax.jit
    def step(params, state, k):
        loss, grads = jax.value_and_grad(task.loss)(params, task.batch(k, "train"))
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    for t in range(10):  # step t's batch is drawn with fold_in(train_key, t)
        params, state, loss = step(params, state, jax.random.fold_in(train_key, t))
        assert float(loss) == pytest.approx(float(sweep.train[1, 0, t]), rel=1e-4)
    with pytest.raises(ValueError, match="must be a multiple of eval_every"):
        runner.run(task, adam.tx, {}, num_seeds=1, num_steps=10, eval_every=3)


def test_lr_grid_picks_the_analytically_best_step_size_on_a_quadratic():
    """Loss ½·h·x² with h = 2 under SGD: x_T = (1 − ηh)^T x_0, so the final loss is smallest
    for the grid step size with the smallest |1 − ηh| (0.316; 1/h = 0.5 is off the grid)."""
    task = tasks.augment.scale_loss(tasks.quadratic_task(dim=1, condition=1.0, noise=0.0), 2.0)
    space = protocols.search_space(baselines.get("sgd"), "lr-grid", trials=0)
    curves = runner.run(
        task, baselines.get("sgd").tx, space, num_seeds=2, num_steps=20, eval_every=5
    )
    analytic = int(np.argmin(np.abs(1 - 2.0 * space["learning_rate"])))
    assert space["learning_rate"][analytic] == pytest.approx(10**-0.5)
    for select in protocols.SELECT:
        assert protocols.choose(curves, select).best == analytic


def test_every_search_holds_the_default_and_an_untuned_baseline_runs_it_alone():
    muon = baselines.get("muon-cosine")
    grid = protocols.search_space(muon, "lr-grid", trials=0, lr_range=(1e-4, 1.0))
    assert len(grid["learning_rate"]) == 10 and np.isclose(grid["learning_rate"], 0.02).any()
    adam = baselines.get("adam")
    trials = protocols.search_space(adam, "random-search", trials=5)
    assert {k: v[0] for k, v in trials.items()} == pytest.approx(adam.defaults)
    assert all(len(v) == 5 for v in trials.values())
    for name in baselines.TUNING_FREE:
        free = baselines.get(name)
        assert not free.tuned and name.endswith("-default"), name
        assert free.defaults == baselines.get(name.removesuffix("-default")).defaults
        for protocol in protocols.PROTOCOLS:
            space = protocols.search_space(free, protocol, trials=16, lr_range=(1e-4, 1.0))
            assert list(space) == ["learning_rate"], name
            np.testing.assert_allclose(space["learning_rate"], [free.defaults["learning_rate"]])
    assert baselines.get("muon-cosine-default").defaults["learning_rate"] == 0.02
    assert baselines.get("sf-adamw-default").defaults["learning_rate"] == 0.0025


def test_refinement_finds_the_best_rate_between_grid_points():
    """½·h·x² with h = 2 under SGD for 20 steps: x_T = (1 − 2η)^T x_0, best at η = 0.5, which
    lies between the half-decade points 0.316 and 1. The grid picks 0.316 (|1 − 2η| = 0.37);
    quarter-decade refinement moves to 0.562 (0.12), and its eighth-decade neighbours 0.422
    (0.16) and 0.75 (0.5) do not beat it: the best within 10^(1/8) of the optimum."""
    task = tasks.augment.scale_loss(tasks.quadratic_task(dim=1, condition=1.0, noise=0.0), 2.0)
    sgd = baselines.get("sgd")
    run = lambda hp: runner.run(task, sgd.tx, hp, num_seeds=1, num_steps=20, eval_every=5)
    score = lambda c: protocols.scores(c, "valid")
    grid = {"learning_rate": protocols.lr_grid(1e-2, 1.0)}
    tried, curves = protocols.refine(run, grid, score)
    lrs = tried["learning_rate"]
    assert len(lrs) == len(curves.valid) == 5 + 2 + 2  # grid, a quarter-decade pair, an eighth
    np.testing.assert_allclose(lrs[:5], grid["learning_rate"])
    best = lrs[protocols.choose(curves, "valid").best]
    assert best == pytest.approx(10**-0.25, rel=1e-5)
    assert abs(np.log10(best / 0.5)) < 1 / 8
    # Every point's curves are those of a run of it alone.
    alone = run({"learning_rate": lrs[-2:]})
    np.testing.assert_allclose(curves.valid[-2:], alone.valid, rtol=1e-6)


def test_budget_curve_improves_with_the_budget():
    scores = np.random.default_rng(0).random(16)
    curve = protocols.budget_curve(scores, [1, 4, 16])
    assert curve[1].estimate > curve[4].estimate > curve[16].estimate == pytest.approx(scores.min())
    assert curve[1].estimate == pytest.approx(scores.mean(), abs=0.03)
