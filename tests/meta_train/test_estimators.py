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
from meta_train.estimators import NRES, PES, FullES, TruncatedBPTT, TruncatedES
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
