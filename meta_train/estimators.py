"""Meta-gradient estimators over truncated unrolls.

Every estimator has the same interface::

    est_state = est.init(key, theta)
    grad, est_state, metrics = est.estimate(theta, est_state, key)

``grad`` is shaped like ``theta``; ``metrics`` is a dict of scalars. ``estimate`` is one
compiled function per estimator (the whole window is a ``lax.scan``). An estimator built
with ``parts=K`` computes one ``K``-th of the population per call, the slice ``part`` (a
traced integer argument of ``init`` and ``estimate``, so every slice runs one program), and
:func:`merge` makes the estimate of the whole population from the ``K`` slices' results.

With ``N`` antithetic pairs, ``ε_i ~ N(0, σ² I)`` over theta, per-step meta-losses
``L^±_{i,t}`` and a mask ``m_{i,t}`` of the steps that belong to running episodes, the ES
estimators return

    ĝ = Σ_i Σ_t m_{i,t} · w_i · (L⁺_{i,t} − L⁻_{i,t}) / (2σ² · Σ_{i,t} m_{i,t})

with ``w_i = ε_i`` (NRES, TES, FullES) or ``w_i = ξ_i``, the perturbations accumulated over the
episode so far (PES). All of them target the gradient of the Gaussian-smoothed mean per-step
meta-loss; TES and TruncatedBPTT ignore θ's influence on a window's starting state and are
biased by it (short-horizon bias).

Keys are raw ``uint32[2]`` keys (``jax.random.PRNGKey``). Example: the gradient of the
smoothed meta-loss with respect to Adam's log learning rate, on the noisy quadratic::

    >>> import jax, lopt, tasks
    >>> from meta_train import NRES, MetaLoss, TruncationSchedule, Unroller
    >>> unroller = Unroller(tasks.get("quadratic"), lopt.HyperAdam(),
    ...                     TruncationSchedule("constant", 40, 40), MetaLoss(), window=10)
    >>> nres = NRES(unroller, num_particles=4, sigma=0.1)
    >>> theta = lopt.HyperAdam(lr=1e-2).init(None)  # {"log_lr": log(0.01)}
    >>> state = nres.init(jax.random.PRNGKey(1), theta)
    >>> grad, state, metrics = nres.estimate(theta, state, jax.random.PRNGKey(2))
    >>> bool(grad["log_lr"] < 0)  # a larger rate lowers the loss of 40 steps
    True
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lopt import Theta
from meta_train.compile_cache import COMPILER_OPTIONS
from meta_train.unroll import Population, Unroller, UnrollOutput

DIFFERENCES = ("value", "sign")
# Each estimator's init and estimate: one compiled program per estimator (its `self`).
_jit_method = functools.partial(jax.jit, static_argnums=0, compiler_options=COMPILER_OPTIONS)


def all_finite(tree: Theta) -> jax.Array:
    """Whether every entry of every leaf of ``tree`` is finite (a scalar bool)."""
    return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _broadcast(theta: Theta, *axes: int) -> Theta:
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (*axes, *x.shape)), theta)


def _antithetic(theta: Theta, eps: Theta) -> Theta:
    """``[2, N]`` meta-parameters ``θ + ε_i`` and ``θ − ε_i`` from ``eps`` of shape ``[N, ...]``."""
    return jax.tree.map(lambda t, e: jnp.stack([t + e, t - e]), theta, eps)


def _where_particles(mask: jax.Array, a: Theta, b: Theta) -> Theta:
    """Per particle (leading axis ``N``): ``a`` where ``mask[N]``, else ``b``."""
    return jax.tree.map(
        lambda x, y: jnp.where(mask.reshape((-1,) + (1,) * (x.ndim - 1)), x, y), a, b
    )


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of ``values[W, S, N]`` over the steps where ``mask[W, N]``, and over copies."""
    m = jnp.broadcast_to(mask[:, None, :], values.shape).astype(values.dtype)
    return jnp.sum(values * m) / jnp.maximum(jnp.sum(m), 1.0)


def es_gradient(weights: Theta, out: UnrollOutput, sigma: float, sign: bool = False) -> Theta:
    """The ES formula of the module docstring; ``weights`` has leading axis ``N``. With
    ``sign``, each step's difference ``L⁺ − L⁻`` is replaced by its sign (VeLO's bounded
    variant): every step of every pair then weighs the same, whatever its task's loss scale,
    and the result is a descent direction, no longer an estimate of the gradient's size."""
    mask = out.mask.astype(jnp.float32)  # [W, N]
    diff = out.values[:, 0] - out.values[:, 1]  # [W, N]
    diff = (jnp.sign(diff) if sign else diff) * mask
    coef = jnp.sum(diff, axis=0) / (2.0 * sigma**2 * jnp.maximum(jnp.sum(mask), 1.0))  # [N]
    return jax.tree.map(lambda w: jnp.tensordot(coef, w, axes=1), weights)


def _metrics(out: UnrollOutput, grad: Theta, copies: int) -> dict[str, jax.Array]:
    return {
        "meta_loss": _masked_mean(out.values, out.mask),
        "grad_norm": optax.tree.norm(grad),
        "inner_steps": jnp.sum(out.mask) * copies,
        "diverged": out.diverged,
        "resets": out.resets,
        "ended": out.ended,
    }


def merge(results: Sequence[tuple[Theta, dict[str, Any]]]) -> tuple[Theta, dict[str, Any]]:
    """The ``(grad, metrics)`` of a whole population from those of its slices (``parts``).

    Every estimator's gradient and meta-loss are means over the counted inner steps, so with
    ``n_k`` the ``inner_steps`` of slice ``k``, the whole population's are
    ``Σ_k n_k · x_k / Σ_k n_k``: the estimate of one call with ``parts=1`` up to float
    summation order (TruncatedBPTT zeroes a non-finite gradient slice by slice). The
    counters are summed and ``grad_norm`` is recomputed. On the host (NumPy).
    """
    grads, metrics = zip(*results, strict=True)
    counts = np.array([m["inner_steps"] for m in metrics], np.float64)
    weights = counts / max(counts.sum(), 1.0)
    weigh = lambda *xs: np.tensordot(weights, np.asarray(xs, np.float64), axes=1)
    grad = jax.tree.map(lambda *gs: weigh(*gs).astype(gs[0].dtype), *grads)
    merged = {k: sum(m[k] for m in metrics) for k in ("inner_steps", "diverged", "resets", "ended")}
    merged["meta_loss"] = float(weigh(*(m["meta_loss"] for m in metrics)))
    merged["grad_norm"] = float(np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(grad))))
    if "nonfinite_grad" in metrics[0]:
        merged["nonfinite_grad"] = max(m["nonfinite_grad"] for m in metrics)
    return grad, merged


class ESState(NamedTuple):
    pop: Population
    noise: Theta  # NRES: noise keys uint32[N, 2]; PES: ξ_i (leading axis N); others: ()


@dataclasses.dataclass(frozen=True, eq=False)
class _Estimator:
    """Shared configuration. ``num_particles`` is N (pairs for the ES estimators), computed
    ``N / parts`` at a time (see the module docstring)."""

    unroller: Unroller
    num_particles: int = 8
    sigma: float = 0.01
    # Windows run under the unperturbed θ at init, so that particle states come from the
    # current θ. The rest of each first episode is then perturbed: a transient bias until
    # every particle has started a fresh episode.
    burn_in: int = 0
    # "value": the loss differences of the module docstring; "sign": only their signs
    # (``es_gradient``). Ignored by TruncatedBPTT.
    difference: str = "value"
    parts: int = 1

    def __post_init__(self):
        if self.difference not in DIFFERENCES:
            raise ValueError(f"difference must be one of {DIFFERENCES}, got {self.difference!r}")
        if not self.num_particles >= 1:
            raise ValueError(f"num_particles must be >= 1, got {self.num_particles}")
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")
        if not self.burn_in >= 0:
            raise ValueError(f"burn_in must be >= 0, got {self.burn_in}")
        if not (self.parts >= 1 and self.num_particles % self.parts == 0):
            raise ValueError(
                f"parts must be >= 1 and divide num_particles={self.num_particles}, got {self.parts}"
            )

    @property
    def local(self) -> int:
        """The particles of one part (one call of ``estimate``)."""
        return self.num_particles // self.parts

    @property
    def name(self) -> str:
        return type(self).__name__

    def shard(self, state: ESState, devices: Sequence[jax.Device] | None = None) -> ESState:
        """``state`` with its particle axis split across ``devices`` (default: every local
        device), so that ``estimate`` runs each device's particles there; the estimate is
        the same up to float summation order. A part's particles must divide evenly."""
        devices = list(devices or jax.local_devices())
        if self.local % len(devices):
            raise ValueError(
                f"num_particles={self.num_particles} ({self.local} per part) does not split "
                f"evenly over {len(devices)} devices"
            )
        mesh = Mesh(np.asarray(devices), ("particles",))
        on = lambda axis: NamedSharding(mesh, PartitionSpec(*[None] * axis, "particles"))
        put = lambda tree, axis: jax.tree.map(lambda x: jax.device_put(x, on(axis)), tree)
        pop = state.pop._replace(
            params=put(state.pop.params, 1), opt_state=put(state.pop.opt_state, 1)
        )  # [S, N, ...]
        pop = pop._replace(
            **{f: put(getattr(pop, f), 0) for f in ("step", "length", "key", "done")}
        )
        return ESState(pop, put(state.noise, 0))

    def _split(self, key: jax.Array, part) -> jax.Array:
        """``part``'s particles' keys of ``split(key, N)``: ``uint32[N / parts, 2]``."""
        keys = jax.random.split(key, self.num_particles)
        return jax.lax.dynamic_slice_in_dim(keys, part * self.local, self.local)

    def _noise(self, theta: Theta, key: jax.Array, part) -> Theta:
        """``ε_i ~ N(0, σ² I)`` for each of ``part``'s particles: leading axis ``N / parts``."""
        return self._noise_from_keys(theta, self._split(key, part))

    def _noise_from_keys(self, theta: Theta, keys: jax.Array) -> Theta:
        return jax.vmap(lambda k: optax.tree.scale(self.sigma, optax.tree.random_like(k, theta)))(
            keys
        )

    def _init_population(self, key: jax.Array, theta: Theta, copies: int, part) -> Population:
        thetas = _broadcast(theta, copies, self.local)
        pop = self.unroller.init(key, thetas, self.num_particles, part * self.local)
        for _ in range(self.burn_in):
            pop, _ = self.unroller.unroll(thetas, pop)
        return pop


@dataclasses.dataclass(frozen=True, eq=False)
class NRES(_Estimator):
    """Noise-reuse ES (Li et al. 2023): each particle draws ε once per episode and reuses it in
    every window of that episode. The state keeps each particle's noise *key* and regenerates
    ε every window, so its memory is two integers per particle, not a copy of theta."""

    @_jit_method
    def init(self, key: jax.Array, theta: Theta, part=0) -> ESState:
        pop_key, noise_key = jax.random.split(key)
        keys = self._split(noise_key, part)
        return ESState(self._init_population(pop_key, theta, 2, part), keys)

    @_jit_method
    def estimate(self, theta: Theta, state: ESState, key: jax.Array, part=0):
        # Particles whose episode ended start a new one in this window, with new noise.
        fresh = self._split(key, part)
        keys = _where_particles(state.pop.done, fresh, state.noise)
        eps = self._noise_from_keys(theta, keys)
        pop, out = self.unroller.unroll(_antithetic(theta, eps), state.pop)
        grad = es_gradient(eps, out, self.sigma, self.difference == "sign")
        return grad, ESState(pop, keys), _metrics(out, grad, 2)


@dataclasses.dataclass(frozen=True, eq=False)
class PES(_Estimator):
    """Persistent ES (Vicol et al. 2021): a fresh ε each window; ξ accumulates the
    perturbations since the episode started and weights the window's loss difference."""

    @_jit_method
    def init(self, key: jax.Array, theta: Theta, part=0) -> ESState:
        xi = _broadcast(jax.tree.map(jnp.zeros_like, theta), self.local)
        return ESState(self._init_population(key, theta, 2, part), xi)

    @_jit_method
    def estimate(self, theta: Theta, state: ESState, key: jax.Array, part=0):
        eps = self._noise(theta, key, part)
        zeros = jax.tree.map(jnp.zeros_like, state.noise)
        xi = jax.tree.map(jnp.add, _where_particles(state.pop.done, zeros, state.noise), eps)
        pop, out = self.unroller.unroll(_antithetic(theta, eps), state.pop)
        grad = es_gradient(xi, out, self.sigma, self.difference == "sign")
        return grad, ESState(pop, xi), _metrics(out, grad, 2)


@dataclasses.dataclass(frozen=True, eq=False)
class TruncatedES(_Estimator):
    """Truncated ES: each window, θ ± ε (fresh ε) are unrolled from copies of one shared
    unperturbed state, which then advances under θ (three runs per particle)."""

    @_jit_method
    def init(self, key: jax.Array, theta: Theta, part=0) -> ESState:
        return ESState(self._init_population(key, theta, 1, part), ())

    @_jit_method
    def estimate(self, theta: Theta, state: ESState, key: jax.Array, part=0):
        eps = self._noise(theta, key, part)
        thetas = jax.tree.map(
            lambda t, e: jnp.stack([t + e, t - e, jnp.broadcast_to(t, e.shape)]), theta, eps
        )
        copies3 = lambda x: jnp.concatenate([x, x, x])  # [1, N] -> [3, N]
        pop = state.pop._replace(
            params=jax.tree.map(copies3, state.pop.params),
            opt_state=jax.tree.map(copies3, state.pop.opt_state),
        )
        pop, out = self.unroller.unroll(thetas, pop)
        grad = es_gradient(eps, out, self.sigma, self.difference == "sign")
        center = pop._replace(
            params=jax.tree.map(lambda x: x[2:], pop.params),
            opt_state=jax.tree.map(lambda x: x[2:], pop.opt_state),
        )
        return grad, ESState(center, ()), _metrics(out, grad, 3)


@dataclasses.dataclass(frozen=True, eq=False)
class FullES(_Estimator):
    """ES over whole episodes: every estimate starts fresh episodes for all particles and
    runs them to the end (``unroller.window`` is ignored; the scan is the longest possible
    episode, with steps past each particle's length masked)."""

    @_jit_method
    def init(self, key: jax.Array, theta: Theta, part=0) -> ESState:
        del key, theta, part
        return ESState((), ())

    @_jit_method
    def estimate(self, theta: Theta, state: ESState, key: jax.Array, part=0):
        pop_key, noise_key = jax.random.split(key)
        eps = self._noise(theta, noise_key, part)
        whole = dataclasses.replace(
            self.unroller, window=self.unroller.schedule.max_length, stagger=False
        )
        thetas = _antithetic(theta, eps)
        pop = whole.init(pop_key, thetas, self.num_particles, part * self.local)
        _, out = whole.unroll(thetas, pop)
        grad = es_gradient(eps, out, self.sigma, self.difference == "sign")
        return grad, state, _metrics(out, grad, 2)


@dataclasses.dataclass(frozen=True, eq=False)
class TruncatedBPTT(_Estimator):
    """Backpropagation through each window (the start state held constant): the gradient of
    the window's mean meta-loss. Needs a differentiable task; ``sigma`` is unused. A
    non-finite gradient (a diverging run) is replaced by zeros and counted in ``metrics``."""

    @_jit_method
    def init(self, key: jax.Array, theta: Theta, part=0) -> ESState:
        return ESState(self._init_population(key, theta, 1, part), ())

    @_jit_method
    def estimate(self, theta: Theta, state: ESState, key: jax.Array, part=0):
        del key, part
        pop0 = jax.lax.stop_gradient(state.pop)

        def window_loss(th):
            pop, out = self.unroller.unroll(_broadcast(th, 1, self.local), pop0)
            return _masked_mean(out.values, out.mask), (pop, out)

        grad, (pop, out) = jax.grad(window_loss, has_aux=True)(theta)
        finite = all_finite(grad)
        grad = jax.tree.map(lambda g: jnp.where(finite, g, 0.0), grad)
        metrics = _metrics(out, grad, 1) | {"nonfinite_grad": 1 - finite.astype(jnp.int32)}
        return grad, ESState(pop, ()), metrics


ESTIMATORS: dict[str, type[_Estimator]] = {
    cls.__name__: cls for cls in (NRES, PES, TruncatedES, FullES, TruncatedBPTT)
}
