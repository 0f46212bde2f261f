"""The exported transforms behave as optax transforms for every architecture."""

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt

LOSS = jnp.float32(2.0)
AS_OPTAX = {
    "hyper-adam",
    "schedule-muon",
    "learned-muon",
}  # their optax base's semantics for bad gradients


def odd_params():
    """Mixed ranks, containers and dtypes, including a zero-size and a bfloat16 leaf."""
    k = jax.random.split(jax.random.key(1), 5)
    return {
        "scalar": jnp.asarray(0.5),
        "vector": jax.random.normal(k[0], (7,)),
        "matrix": jax.random.normal(k[1], (5, 3)),
        "conv": jax.random.normal(k[2], (3, 3, 2, 4)),
        "empty": jnp.zeros((0, 4)),
        "half": [jax.random.normal(k[3], (6,)).astype(jnp.bfloat16)],
        "nested": ({"w": jax.random.normal(k[4], (2, 1))},),
    }


def grads_like(params, seed=2):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return treedef.unflatten(
        [jax.random.normal(k, p.shape, p.dtype) for k, p in zip(keys, leaves, strict=True)]
    )


def _finite(tree):
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree))


def _run(tx, params, grads_seq, values=None):
    """Applies tx for each gradient in grads_seq; returns the list of updates and the state."""
    update = jax.jit(tx.update)
    state, out = tx.init(params), []
    for i, g in enumerate(grads_seq):
        u, state = update(g, state, params, value=LOSS if values is None else values[i])
        params = optax.apply_updates(params, u)
        out.append(u)
    return out, state, params


def test_odd_pytree_shapes_and_dtypes(arch):
    name, _, _, tx = arch
    params = odd_params()
    updates, state, new_params = _run(tx, params, [grads_like(params, s) for s in range(3)])
    for u in updates:
        assert jax.tree.structure(u) == jax.tree.structure(params)
        for ul, pl in zip(jax.tree.leaves(u), jax.tree.leaves(params), strict=True):
            assert ul.shape == pl.shape and ul.dtype == pl.dtype
        assert _finite(u)
    assert jax.tree.structure(new_params) == jax.tree.structure(params)
    moved = jnp.abs(new_params["matrix"] - params["matrix"]).max()
    assert moved > 0, f"{name} did not move the parameters"
    if name not in AS_OPTAX:  # learned-optimizer memory is float32 whatever the params' dtype
        assert all(x.dtype in (jnp.float32, jnp.int32) for x in jax.tree.leaves(state))


def test_deterministic(arch):
    _, _, _, tx = arch
    params = odd_params()
    grads = [grads_like(params, s) for s in range(2)]
    a, _, _ = _run(tx, params, grads)
    b, _, _ = _run(tx, params, grads)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_vmap_matches_per_member(arch):
    _, _, _, tx = arch
    params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    pop = jax.tree.map(lambda p: jnp.stack([p, 2 * p]), params)
    grads = jax.tree.map(
        lambda p: jnp.stack([jnp.full_like(p, 0.1), jnp.full_like(p, -0.3)]), params
    )

    def step(g, p):
        return tx.update(g, tx.init(p), p, value=LOSS)[0]

    batched = jax.jit(jax.vmap(step))(grads, pop)
    for i in range(2):
        member = lambda tree, i=i: jax.tree.map(lambda leaf: leaf[i], tree)
        single = step(member(grads), member(pop))
        for b, s in zip(jax.tree.leaves(batched), jax.tree.leaves(single), strict=True):
            np.testing.assert_allclose(b[i], s, rtol=1e-5, atol=1e-9)


def test_inside_optax_wrappers(arch):
    _, _, _, tx = arch
    params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    g = grads_like(params)

    chained = optax.chain(optax.clip_by_global_norm(1.0), tx)
    u, _ = jax.jit(chained.update)(g, chained.init(params), params, value=LOSS)
    assert _finite(u)

    multi = optax.MultiSteps(tx, every_k_schedule=2)
    state = multi.init(params)
    u1, state = multi.update(g, state, params, value=LOSS)
    u2, state = multi.update(g, state, params, value=LOSS)
    assert all(bool(jnp.all(x == 0)) for x in jax.tree.leaves(u1))  # accumulating
    assert _finite(u2) and any(bool(jnp.any(x != 0)) for x in jax.tree.leaves(u2))

    guarded = optax.apply_if_finite(tx, max_consecutive_errors=3)
    state = guarded.init(params)
    bad = jax.tree.map(lambda x: x.at[0].set(jnp.nan), g)
    u, state = guarded.update(bad, state, params, value=LOSS)
    assert all(bool(jnp.all(x == 0)) for x in jax.tree.leaves(u))
    assert int(state.notfinite_count) == 1


def test_flax_nnx_optimizer(arch):
    _, _, _, tx = arch
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    x, y = jnp.ones((4, 3)), jnp.zeros((4, 2))
    loss_fn = lambda m: jnp.mean((m(x) - y) ** 2)
    before = model.kernel[...].copy()
    traces = []

    @nnx.jit
    def step(model, optimizer):
        traces.append(1)
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads, value=loss)

    for _ in range(3):
        step(model, optimizer)
    assert len(traces) == 1  # the state keeps its structure: one compile
    assert jnp.all(jnp.isfinite(model.kernel[...]))
    assert not jnp.array_equal(before, model.kernel[...])


def test_nonfinite_gradients_skip_the_step(arch):
    name, _, _, tx = arch
    params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    g = grads_like(params)
    bad = {"w": g["w"].at[1, 2].set(jnp.nan).at[0, 0].set(jnp.inf), "b": g["b"]}
    if name in AS_OPTAX:  # exactly their optax base: NaN propagates (documented; see the
        updates, _, _ = _run(tx, params, [g, bad])  # apply_if_finite test for the remedy)
        assert not _finite(updates[1]["w"])
        return
    updates, state, new_params = _run(tx, params, [g, bad, g], values=[LOSS, jnp.nan, LOSS])
    assert _finite(new_params) and _finite(state)
    assert all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(updates[1]))  # skipped whole
    assert int(state.nonfinite) == 1 and int(state.count) == 2  # counted, not taken
    # Exactly as if the bad step had never happened.
    ref, ref_state, _ = _run(tx, params, [g, g], values=[LOSS, LOSS])
    for x, y in zip(jax.tree.leaves(updates[2]), jax.tree.leaves(ref[1]), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6)
    memory = lambda s: jax.tree.leaves((s.momenta, s.rms))
    for x, y in zip(memory(state), memory(ref_state), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6)


def test_huge_and_tiny_finite_gradients_keep_everything_finite(arch):
    name, _, _, tx = arch
    if name in AS_OPTAX:
        return
    params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    g = grads_like(params)
    huge = jax.tree.map(lambda x: 1e30 * x, g)  # squares past float32: the step is skipped
    updates, state, new_params = _run(tx, params, [g, huge, g])
    assert _finite(updates) and _finite(new_params) and _finite(state)
    assert int(state.nonfinite) == 1
    assert all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(updates[1]))
    tiny = jax.tree.map(lambda x: 1e-30 * x, g)
    updates, state, _ = _run(tx, params, [tiny, tiny])
    assert _finite(updates) and _finite(state) and int(state.nonfinite) == 0
    assert max(float(jnp.max(jnp.abs(u))) for u in jax.tree.leaves(updates)) < 1.0


def test_missing_arguments_are_clear_errors():
    params = {"w": jnp.ones(3)}
    g = {"w": jnp.ones(3)}
    mlp = lopt.MLPLOpt()
    tx = mlp.as_optax(mlp.init(jax.random.key(0)), 10)
    with pytest.raises(ValueError, match=r"MLPLOpt needs `params`"):
        tx.update(g, tx.init(params))
    velo = lopt.VeLO(lstm_hidden=4, bank_size=2)
    tx = velo.as_optax(velo.init(jax.random.key(0)), 10)
    with pytest.raises(ValueError, match=r"VeLO needs `value`.*value=loss"):
        tx.update(g, tx.init(params), params)


def test_non_float_leaves_are_named(arch):
    _, _, _, tx = arch
    with pytest.raises(TypeError, match=r"\['step'\] \(int32\)"):
        tx.init({"w": jnp.ones(3), "step": jnp.zeros((), jnp.int32)})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: lopt.MLPLOpt(hidden=(0,)), "MLPLOpt.hidden"),
        (lambda: lopt.MLPLOpt(step_scale=-1.0), "MLPLOpt.step_scale must be > 0"),
        (lambda: lopt.MLPLOpt(step_mode="rms"), "MLPLOpt.step_mode must be one of"),
        (lambda: lopt.VeLO(step_mode="rms"), "VeLO.step_mode must be one of"),
        (lambda: lopt.VeLO(bank_size=0), "VeLO.bank_size must be an integer >= 1"),
        (lambda: lopt.MLPLOpt(ns_steps=0), "MLPLOpt.ns_steps must be an integer >= 1"),
        (lambda: lopt.HyperAdam(b1=1.5), r"HyperAdam.b1 must be in \(0, 1\)"),
        (lambda: lopt.HyperAdam(lr=0.0), "HyperAdam.lr must be > 0"),
        (lambda: lopt.LearnedMuon(term="before"), "LearnedMuon.term must be one of"),
        (lambda: lopt.LearnedMuon(controller_hidden=-1), "LearnedMuon.controller_hidden"),
        (lambda: lopt.LearnedMuon(lr=float("nan")), "LearnedMuon.lr must be a finite"),
        (lambda: lopt.LearnedMuon(max_log_rate=0.0), r"LearnedMuon.max_log_rate must be in"),
    ],
)
def test_bad_hyperparameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_horizon(arch):
    _, lo, theta, _ = arch
    with pytest.raises(ValueError, match="num_steps"):
        lo.as_optax(theta, num_steps=0)
    # beyond the int32 step counter: refused where it is given, not at the first update
    with pytest.raises(ValueError, match=r"must be from 1 to 2147483647 .* got 2147483648"):
        lo.as_optax(theta, num_steps=2**31)


def test_velo_paper_sizes():
    paper = lopt.VeLO.paper()
    assert (paper.lstm_hidden, paper.bank_size) == (512, 256)
    n = sum(x.size for x in jax.tree.leaves(jax.eval_shape(paper.init, jax.random.key(0))))
    assert n > 1_000_000  # the paper's ~2.3M with its larger feature set


def test_learned_schedule_starts_as_its_base_at_a_constant_rate_then_follows_its_schedule():
    params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    grads = [grads_like(params, seed) for seed in range(3)]
    lo = lopt.LearnedSchedule(base="muon", lr=0.02)
    theta = lo.init(None)
    ours, _, _ = _run(lo.as_optax(theta, 100), params, grads)
    ref, _, _ = _run(optax.with_extra_args_support(optax.contrib.muon(0.02)), params, grads)
    for u, v in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(lo.rates(theta, 100), 0.02, rtol=1e-6)
    # A schedule w: every update is the base's times exp(a + w · φ(t/T)), t = 0, 1, 2.
    w = jnp.linspace(-1.0, 1.0, 10)
    scheduled, _, _ = _run(lo.as_optax({**theta, "schedule": w}, 100), params, grads)
    rates = lo.rates({**theta, "schedule": w}, 100)
    frac = lambda t: jnp.tanh(10 * (t / 100 - jnp.asarray(lopt.features.FRACTION_THRESHOLDS)))
    np.testing.assert_allclose(
        rates[:3], [0.02 * jnp.exp(w @ frac(t)) for t in range(3)], rtol=1e-5
    )
    for t in range(3):
        for u, v in zip(jax.tree.leaves(scheduled[t]), jax.tree.leaves(ref[t]), strict=True):
            np.testing.assert_allclose(u, v * rates[t] / 0.02, rtol=1e-4, atol=1e-8)
    with pytest.raises(ValueError, match="LearnedSchedule.base must be one of"):
        lopt.LearnedSchedule(base="shampoo")


@pytest.mark.parametrize("learn_betas", [False, True])
def test_hyper_adam_matches_optax_adam(learn_betas):
    lo = lopt.HyperAdam(lr=3e-3, b1=0.8, b2=0.99, learn_betas=learn_betas)
    tx = lo.as_optax(lo.init(jax.random.key(0)), num_steps=10)
    ref = optax.adam(3e-3, b1=0.8, b2=0.99)
    params = jax.tree.map(lambda p: p.astype(jnp.float32), odd_params())
    grads = [grads_like(params, s) for s in range(4)]
    ours, _, _ = _run(tx, params, grads)
    theirs, _, _ = _run(ref, params, grads)
    for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-9)
    # Updates keep a bfloat16 parameter's dtype, as optax.adam's do.
    half = {"h": jnp.ones(3, jnp.bfloat16)}
    u, _ = tx.update(half, tx.init(half), half)
    assert u["h"].dtype == jnp.bfloat16


def _one_update(lo, theta, params, grads, num_steps=100, count=0):
    tx = lo.as_optax(theta, num_steps)
    state = tx.init(params)
    update = jax.jit(tx.update)
    for _ in range(count + 1):
        u, state = update(grads, state, params)
    return u


def test_learned_schedule_starts_as_the_identity_and_scales_the_whole_step():
    params, grads = (
        {"w": jnp.linspace(-1, 1, 6).reshape(2, 3)},
        {"w": jnp.arange(6.0).reshape(2, 3)},
    )
    plain = lopt.MLPLOpt.bare(nominal=True)
    scheduled = lopt.MLPLOpt.bare(nominal=True, schedule=True)
    theta = scheduled.init(jax.random.key(0))
    assert set(theta) == {*plain.init(jax.random.key(0)), "schedule"}
    base = {k: v for k, v in theta.items() if k != "schedule"}
    u0 = _one_update(plain, base, params, grads, count=30)
    np.testing.assert_allclose(_one_update(scheduled, theta, params, grads, count=30)["w"], u0["w"])
    # Weights w on the fraction features: the step is multiplied by exp(w · φ(t/T)).
    w = jnp.linspace(-1.0, 0.5, 10)
    count, T = 30, 100
    phi = jnp.tanh(10 * ((count + 1) / T - jnp.asarray(lopt.features.FRACTION_THRESHOLDS)))
    u = _one_update(scheduled, {**theta, "schedule": w}, params, grads, T, count)
    np.testing.assert_allclose(u["w"], jnp.exp(w @ phi) * u0["w"], rtol=1e-5)


def test_orthogonal_step_is_muons_orthogonalization_of_each_weight_matrix_step():
    k = jax.random.split(jax.random.key(4), 4)
    params = {
        "wide": jax.random.normal(k[0], (4, 12)),
        "tall": jax.random.normal(k[1], (12, 4)),
        "bias": jax.random.normal(k[2], (5,)),
        "Embed_0": {"embedding": jax.random.normal(k[3], (7, 4))},  # flax nn.Embed's name
    }
    grads = grads_like(params)
    absolute = lopt.MLPLOpt(step_mode="absolute")
    theta = absolute.init(jax.random.key(0))
    u_abs = _one_update(absolute, theta, params, grads, count=3)
    lo = lopt.MLPLOpt()  # the default step mode: orthogonal, step_scale 0.02
    u = _one_update(lo, theta, params, grads, count=3)
    # Not weight matrices: a bias and an embedding table take the absolute step.
    np.testing.assert_allclose(u["bias"], u_abs["bias"])
    np.testing.assert_allclose(u["Embed_0"]["embedding"], u_abs["Embed_0"]["embedding"])
    ns = optax.contrib._muon.orthogonalize_via_newton_schulz
    coeffs = jnp.asarray(lopt.per_param.NS_COEFFS)
    for name, width in (("wide", 3.0**0.5), ("tall", 1.0)):  # √max(1, fan_out / fan_in)
        np.testing.assert_allclose(u[name], 0.02 * width * ns(u_abs[name], coeffs), atol=1e-7)
        # Newton-Schulz leaves every singular value within about [0.5, 1.5].
        sv = jnp.linalg.svd(u[name] / (0.02 * width), compute_uv=False)
        assert 0.4 < float(sv.min()) and float(sv.max()) < 1.6
    # Fewer iterations: optax's orthogonalization with as many.
    u3 = _one_update(lopt.MLPLOpt(ns_steps=3), theta, params, grads, count=3)
    np.testing.assert_allclose(u3["tall"], 0.02 * ns(u_abs["tall"], coeffs, 3), atol=1e-7)
    # VeLO's step (no nominal term) is orthogonalized the same way, at step_scale · exp(ℓ).
    velo = lopt.VeLO(lstm_hidden=8, bank_size=3, step_scale=0.02, step_mode="orthogonal")
    tx = velo.as_optax(velo.init(jax.random.key(0)), 100)
    u, _ = jax.jit(tx.update)(grads, tx.init(params), params, value=jnp.float32(1.0))
    sv = jnp.linalg.svd(u["tall"] / 0.02, compute_uv=False)
    assert 0.4 < float(sv.min()) and float(sv.max()) < 1.6
    # A zero step stays exactly zero (no 0/0).
    control = lopt.per_param.TensorControl([], jnp.asarray(0.02), jnp.asarray(0.01))
    zero = jnp.zeros((4, 12))
    step = lopt.per_param.tensor_step(zero, zero, control, "orthogonal", stats=None)
    assert bool(jnp.all(step == 0))


def test_a_label_function_sends_chosen_leaves_to_adamw_through_optax_partition():
    k = jax.random.split(jax.random.key(5), 2)
    params = {"w": jax.random.normal(k[0], (6, 4)), "b": jax.random.normal(k[1], (4,))}
    grads = grads_like(params)
    lo = lopt.MLPLOpt()
    learned = lo.as_optax(lo.init(jax.random.key(0)), 100)
    adamw = optax.adamw(1e-3, weight_decay=0.1)
    tx = optax.partition(
        {"learned": learned, "adamw": adamw},
        lambda tree: jax.tree.map(lambda p: "learned" if p.ndim == 2 else "adamw", tree),
    )
    u, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    u_w, _ = learned.update({"w": grads["w"]}, learned.init({"w": params["w"]}), {"w": params["w"]})
    u_b, _ = adamw.update({"b": grads["b"]}, adamw.init({"b": params["b"]}), {"b": params["b"]})
    np.testing.assert_allclose(u["w"], u_w["w"], rtol=1e-5, atol=1e-7)  # jit vs eager
    np.testing.assert_allclose(u["b"], u_b["b"], rtol=1e-6)


def test_normalized_step_has_unit_rms_per_tensor_and_param_rms_follows_reparameterization():
    k = jax.random.split(jax.random.key(3), 2)
    params = {"a": jax.random.normal(k[0], (8, 4)), "b": 0.01 * jax.random.normal(k[1], (5,))}
    grads = grads_like(params)
    lo = lopt.MLPLOpt.bare(step_mode="normalized")
    u = _one_update(lo, lo.init(jax.random.key(0)), params, grads, count=3)
    for x in jax.tree.leaves(u):
        assert float(jnp.sqrt(jnp.mean(x * x))) == pytest.approx(0.01, rel=1e-4)
    # The same loss written in p' = c·p: parameters c times larger, gradients c times
    # smaller. Every feature is unchanged, and a param_rms step is c times larger.
    lo = lopt.MLPLOpt.bare(step_mode="param_rms")
    theta = lo.init(jax.random.key(0))
    c = 100.0
    big = jax.tree.map(lambda p: c * p, params)
    small_g = jax.tree.map(lambda g: g / c, grads)
    u1 = _one_update(lo, theta, params, grads, count=3)
    u2 = _one_update(lo, theta, big, small_g, count=3)
    for x, y in zip(jax.tree.leaves(u1), jax.tree.leaves(u2), strict=True):
        np.testing.assert_allclose(y, c * x, rtol=1e-3)


def test_no_growth_removes_only_the_learned_terms_component_that_grows_the_norm():
    k = jax.random.split(jax.random.key(6), 3)
    p = jax.random.normal(k[0], (5, 7))
    growing = -p + 0.3 * jax.random.normal(k[1], (5, 7))  # the step −u grows ‖p‖
    kept = lopt.per_param.without_growth(growing, p)
    assert float(jnp.sum(growing * p)) < -1.0
    assert float(jnp.sum(kept * p)) == pytest.approx(0.0, abs=1e-4)
    np.testing.assert_allclose(  # only the component along p changed
        kept - growing, (kept - growing).ravel() @ p.ravel() / jnp.sum(p * p) * p, atol=1e-6
    )
    shrinking = 0.5 * p + jax.random.normal(k[2], (5, 7))
    assert float(jnp.sum(shrinking * p)) > 0
    np.testing.assert_array_equal(lopt.per_param.without_growth(shrinking, p), shrinking)
    np.testing.assert_array_equal(lopt.per_param.without_growth(growing, 0 * p), growing)
    # Through the transform: a large random learned term grows some tensor without the
    # option and none with it (no nominal term: the whole step is learned).
    params = {"w": p, "b": jnp.ones(6)}
    grads = grads_like(params)
    inner = {}
    for no_growth in (False, True):
        lo = lopt.MLPLOpt.bare(out_init_scale=3.0, no_growth=no_growth)
        u = _one_update(lo, lo.init(jax.random.key(3)), params, grads, count=3)
        inner[no_growth] = [
            float(jnp.sum(x * y))
            for x, y in zip(jax.tree.leaves(u), jax.tree.leaves(params), strict=True)
        ]
    assert max(inner[False]) > 1e-3
    assert max(inner[True]) <= 1e-6
