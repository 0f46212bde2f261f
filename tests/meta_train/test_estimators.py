"""Gradient estimators against known answers.

Two inner problems, both run through the real unroll machinery:

* *Memoryless*: a quadratic task ``½ Σ h_i x_i²`` whose "optimizer" jumps to its
  meta-parameters every step (``x ← θ``), so the per-step loss after step 0 is ``½ Σ h_i θ_i²``
  and the smoothed gradient of the mean per-step meta-loss over an episode of ``T`` steps is
  exactly ``(T − 1)/T · h ⊙ θ / init_loss`` (Gaussian smoothing of a quadratic only adds a
  constant). Each window's loss depends only on that window's θ, so PES's accumulated noise
  is pure variance there: its variance grows with the window index while NRES's does not.
* *Long memory*: Adam with a meta-learned log learning rate on a quadratic, where a window's
  loss depends on the θ of every earlier window. The reference is a high-precision pathwise
  estimate: the mean over ε of exact full-episode BPTT gradients at θ + ε. TES ignores that
  dependence and is biased.

Estimators are run step-locked (``stagger=False``) with ``T = K · W``, so K consecutive
windows form one episode; a "round" (the mean of its K window estimates) is one independent
sample of the episode-level estimate.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt
import tasks
from meta_train.estimators import NRES, PES, FullES, TruncatedBPTT, TruncatedES, merge
from meta_train.unroll import MetaLoss, TruncationSchedule, Unroller

W, K = 5, 6
T = W * K
ROUNDS = 40


@dataclasses.dataclass(frozen=True)
class Jump(lopt.LearnedOptimizer):
    """Test-only: the update moves ``params["x"]`` to ``theta["target"]``."""

    dim: int = 8

    def init(self, key):
        return {"target": jnp.linspace(-0.5, 0.5, self.dim)}

    def as_optax(self, theta, num_steps):
        def update(grads, state, params=None, **extra):
            return {"x": theta["target"] - params["x"]}, state

        return optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update)


def _unroller(task, lo, window):
    schedule = TruncationSchedule("constant", T, T)
    return Unroller(task, lo, schedule, MetaLoss(clip=10.0), window=window, stagger=False)


def _rounds(est, theta, rounds=ROUNDS):
    """Window estimates, flattened: float[rounds, K, dim]."""
    state = est.init(jax.random.PRNGKey(0), theta)
    out = np.zeros((rounds, K, sum(x.size for x in jax.tree.leaves(theta))))
    for r in range(rounds):
        for k in range(K):
            g, state, _ = est.estimate(theta, state, jax.random.PRNGKey(1 + r * K + k))
            out[r, k] = np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)])
    return out


def _agrees(samples, expected, n_se=3.0):
    """Every coordinate's sample mean is within n_se standard errors of `expected`."""
    mean = samples.mean(0)
    se = samples.std(0, ddof=1) / np.sqrt(len(samples))
    return np.all(np.abs(mean - expected) <= n_se * se), mean, se


@pytest.fixture(scope="module")
def memoryless():
    task = tasks.quadratic_task("q", dim=8, condition=10.0)
    lo = Jump(dim=8)
    theta = lo.init(None)
    h = np.logspace(0.0, -1.0, 8)
    exact = (T - 1) / T * h * np.asarray(theta["target"]) / task.init_loss
    return task, lo, theta, exact


@pytest.mark.parametrize("cls", [NRES, PES])
def test_online_es_is_unbiased_on_the_memoryless_problem(memoryless, cls):
    task, lo, theta, exact = memoryless
    samples = _rounds(cls(_unroller(task, lo, W), num_particles=8, sigma=0.05), theta)
    ok, mean, se = _agrees(samples.mean(1), exact)
    assert ok, (cls.__name__, mean, exact, se)


def test_full_es_is_unbiased_on_the_memoryless_problem(memoryless):
    task, lo, theta, exact = memoryless
    est = FullES(_unroller(task, lo, W), num_particles=8, sigma=0.05)
    state = est.init(None, theta)
    samples = np.stack(
        [est.estimate(theta, state, jax.random.PRNGKey(i))[0]["target"] for i in range(ROUNDS)]
    )
    ok, mean, se = _agrees(samples, exact)
    assert ok, (mean, exact, se)


def test_sign_differences_point_along_the_smoothed_gradient(memoryless):
    """Here ``L⁺ − L⁻ = 2 ε·g`` exactly (g = h ⊙ θ / init_loss), so with sign-only differences
    the round mean is ``Σ_i sign(ε_i·g) ε_i (T − 1)/T / (2σ²N)`` (step 0's losses tie), whose
    expectation is ``√(2/π) (T − 1)/(2σT) · g/|g|``: a unit step along the gradient."""
    task, lo, theta, exact = memoryless
    sigma = 0.05
    est = NRES(_unroller(task, lo, W), num_particles=8, sigma=sigma, difference="sign")
    expected = np.sqrt(2 / np.pi) * (T - 1) / (2 * sigma * T) * exact / np.linalg.norm(exact)
    ok, mean, se = _agrees(_rounds(est, theta).mean(1), expected)
    assert ok, (mean, expected, se)
    with pytest.raises(ValueError, match="difference must be one of"):
        NRES(_unroller(task, lo, W), difference="magnitude")


def test_pes_variance_grows_with_windows_and_nres_does_not(memoryless):
    task, lo, theta, _ = memoryless
    unroller = _unroller(task, lo, W)
    # Total variance (trace) of the window estimate at each window index k = 1..K.
    nres = _rounds(NRES(unroller, num_particles=8, sigma=0.05), theta).var(0).sum(-1)
    pes = _rounds(PES(unroller, num_particles=8, sigma=0.05), theta).var(0).sum(-1)
    # Window 1 includes the θ-independent first step, so compare against window 2.
    assert pes[-1] / pes[1] > 2.0, pes  # ξ holds K vs 2 windows of noise: ~K/2 = 3x
    assert nres[-1] / nres[1] < 1.4, nres  # the same ε every window: flat
    assert pes[-1] > 2.0 * nres[-1]


@pytest.fixture(scope="module")
def long_memory():
    task = tasks.quadratic_task("q", dim=8, condition=10.0)
    lo = lopt.HyperAdam(lr=0.03)
    theta = lo.init(None)
    sigma = 0.1
    # Reference: E_ε[∇ J(θ + ε)] from exact BPTT through whole fresh episodes.
    bptt = TruncatedBPTT(_unroller(task, lo, T), num_particles=128)
    refs = []
    for i in range(48):
        shifted = {
            "log_lr": theta["log_lr"] + sigma * jax.random.normal(jax.random.PRNGKey(10_000 + i))
        }
        state = bptt.init(jax.random.PRNGKey(i), shifted)
        refs.append(float(bptt.estimate(shifted, state, None)[0]["log_lr"]))
    refs = np.asarray(refs)
    return task, lo, theta, sigma, refs.mean(), refs.std(ddof=1) / np.sqrt(len(refs))


@pytest.mark.parametrize("cls", [NRES, PES, FullES])
def test_unbiased_estimators_match_the_pathwise_reference(long_memory, cls):
    task, lo, theta, sigma, ref, ref_se = long_memory
    est = cls(_unroller(task, lo, W), num_particles=32, sigma=sigma)
    if cls is FullES:
        state = est.init(None, theta)
        samples = np.array(
            [
                float(est.estimate(theta, state, jax.random.PRNGKey(i))[0]["log_lr"])
                for i in range(ROUNDS)
            ]
        )
    else:
        samples = _rounds(est, theta)[:, :, 0].mean(1)
    mean, se = samples.mean(), samples.std(ddof=1) / np.sqrt(len(samples))
    assert abs(mean - ref) <= 3 * np.hypot(se, ref_se), (cls.__name__, mean, se, ref, ref_se)


def test_truncated_es_has_short_horizon_bias(long_memory):
    task, lo, theta, sigma, ref, ref_se = long_memory
    samples = _rounds(TruncatedES(_unroller(task, lo, W), num_particles=32, sigma=sigma), theta)
    mean = samples[:, :, 0].mean()
    se = samples[:, :, 0].mean(1).std(ddof=1) / np.sqrt(ROUNDS)
    # Raising the learning rate helps every later window; TES sees only the current one.
    assert ref < 0 and abs(mean) < 0.5 * abs(ref), (mean, ref)
    assert abs(mean - ref) > 10 * np.hypot(se, ref_se)


@pytest.mark.parametrize("cls", [NRES, PES, TruncatedES, FullES, TruncatedBPTT])
def test_slices_of_the_population_merge_to_its_estimate(cls):
    """``parts=2``: each call computes half the particles (the same ones, with the same keys,
    as the whole population's); ``merge`` weighs the halves by their counted steps. Short
    staggered episodes make the halves count different numbers of steps."""
    lo = lopt.MLPLOpt.bare(hidden=(2,))
    schedule = TruncationSchedule("loguniform", 3, 20)
    unroller = Unroller(tasks.get("quadratic"), lo, schedule, MetaLoss(), window=6)
    theta = lo.init(jax.random.key(0))
    whole = cls(unroller, num_particles=4, sigma=0.05)
    halves = cls(unroller, num_particles=4, sigma=0.05, parts=2)
    parts = [jnp.int32(k) for k in range(2)]
    state = whole.init(jax.random.PRNGKey(1), theta)
    states = [halves.init(jax.random.PRNGKey(1), theta, k) for k in parts]
    counts = set()
    for window in range(4):
        key = jax.random.PRNGKey(10 + window)
        grad, state, m = jax.device_get(whole.estimate(theta, state, key))
        results = [halves.estimate(theta, s, key, k) for s, k in zip(states, parts, strict=True)]
        states = [s for _, s, _ in results]
        merged, mm = merge([jax.device_get((g, m)) for g, _, m in results])
        counts.add(tuple(int(m["inner_steps"]) for _, _, m in results))
        for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(merged), strict=True):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(mm["meta_loss"], m["meta_loss"], rtol=1e-5)
        np.testing.assert_allclose(mm["grad_norm"], m["grad_norm"], rtol=1e-5)
        for k in ("inner_steps", "diverged", "resets", "ended"):
            assert mm[k] == m[k], k
    assert any(a != b for a, b in counts)  # the weighting was exercised
    with pytest.raises(ValueError, match="parts must be >= 1 and divide num_particles=4"):
        cls(unroller, num_particles=4, parts=3)
